//! Node lifecycle, PodDisruptionBudgets and the eviction subresource against a real
//! pea-control with the real kubectl 1.32: `kubectl cordon|uncordon|drain`, a budget that
//! holds a drain back until the replacement pods are ready, and a node whose Lease stops
//! being renewed going Unknown, tainted, and losing its pods to another node.
//!
//! There is no kubelet: the test plays "hollow kubelets" (as kubemark does) for the nodes it
//! says are alive — renewing their kube-node-lease Leases, posting Ready, making the pods
//! bound to them Running and Ready, and finishing the graceful deletion of their pods.
//! pea-scheduler and pea-controllers run in the test process as API clients.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::chrono::{SecondsFormat, Utc};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use pea_controllers::ControllersConfig;
use pea_tests::control::{Backend, ControlPlane};
use serde_json::json;

/// Bound of every wait in this file; generous because the machine has 2 shared cores.
const WAIT: Duration = Duration::from_secs(60);

/// The control plane, the scheduler and the controllers (on their own runtime, stopped on
/// drop), the test's client and the hollow kubelets.
struct Cluster {
    _cp: ControlPlane,
    rt: tokio::runtime::Runtime,
    client: Client,
    k: pea_tests::control::Kubectl,
    /// Nodes whose hollow kubelet is running.
    alive: Arc<Mutex<BTreeSet<String>>>,
}

impl Cluster {
    fn start(controllers: ControllersConfig) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let cp = ControlPlane::start(Backend::Embedded).expect("pea-control");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt
            .block_on(pea_controllers::client_from_kubeconfig(&cp.kubeconfig))
            .expect("client");
        let c1 = client.clone();
        rt.spawn(async move {
            let cfg = pea_scheduler::SchedulerConfig {
                leader_elect: false,
                ..Default::default()
            };
            if let Err(e) = pea_scheduler::run(c1, cfg).await {
                panic!("scheduler stopped: {e}");
            }
        });
        let kubeconfig = cp.kubeconfig.clone();
        rt.spawn(async move {
            // Each controller as its own ServiceAccount, as pea-control runs them.
            let clients = pea_controllers::clients_from_kubeconfig(&kubeconfig, true)
                .await
                .expect("clients");
            if let Err(e) = pea_controllers::run(clients, controllers).await {
                panic!("controllers stopped: {e}");
            }
        });
        let alive = Arc::new(Mutex::new(BTreeSet::new()));
        rt.spawn(hollow_kubelets(client.clone(), alive.clone()));
        let k = cp.kubectl();
        Self {
            _cp: cp,
            rt,
            client,
            k,
            alive,
        }
    }

    /// Registers a node (4 cpu, 8Gi, 110 pods) and starts its hollow kubelet.
    fn add_node(&self, name: &str) {
        self.k.ok_stdin(
            &["create", "-f", "-"],
            &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}}}\n"),
        );
        self.set_alive(name, true);
        eventually(&format!("node {name} ready"), || {
            (self.ready(name).as_deref() == Some("True")).then_some(())
        });
    }

    fn set_alive(&self, name: &str, alive: bool) {
        let mut a = self.alive.lock().unwrap();
        if alive {
            a.insert(name.to_string());
        } else {
            a.remove(name);
        }
    }

    fn node(&self, name: &str) -> Node {
        let api: Api<Node> = Api::all(self.client.clone());
        self.rt.block_on(api.get(name)).expect("get node")
    }

    fn ready(&self, name: &str) -> Option<String> {
        let n = self.node(name);
        let c = n.status?.conditions?;
        c.into_iter().find(|c| c.type_ == "Ready").map(|c| c.status)
    }

    fn taints(&self, name: &str) -> BTreeSet<String> {
        self.node(name)
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .into_iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect()
    }

    /// Pods matching `selector` that are not being deleted.
    fn pods(&self, selector: &str) -> Vec<Pod> {
        self.all_pods(selector)
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    fn all_pods(&self, selector: &str) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        self.rt
            .block_on(api.list(&ListParams::default().labels(selector)))
            .expect("list pods")
            .items
    }

    fn pdb(&self, name: &str) -> PodDisruptionBudget {
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), "default");
        self.rt.block_on(api.get(name)).expect("get pdb")
    }

    /// Waits for `n` ready pods of `selector`, all on `node`.
    fn ready_pods_on(&self, selector: &str, n: usize, node: &str) -> Vec<Pod> {
        eventually(&format!("{n} ready pods {selector} on {node}"), || {
            let pods = self.pods(selector);
            (pods.len() == n && pods.iter().all(|p| is_ready(p) && node_of(p) == node))
                .then_some(pods)
        })
    }
}

fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Polls `f` until it returns Some, for at most [`WAIT`].
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The hollow kubelets of the nodes in `alive`, every 300 ms: renew the node's Lease, post
/// Ready when it is not, make its pods Running and Ready, and finish its pods' graceful
/// deletions (as a kubelet does once the containers stopped).
async fn hollow_kubelets(client: Client, alive: Arc<Mutex<BTreeSet<String>>>) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let mut ip = 0u32;
    loop {
        let names: Vec<String> = alive.lock().unwrap().iter().cloned().collect();
        let now = Utc::now();
        let secs = now.to_rfc3339_opts(SecondsFormat::Secs, true);
        let micros = now.to_rfc3339_opts(SecondsFormat::Micros, true);
        for n in &names {
            let renew = json!({"spec": {"holderIdentity": n, "leaseDurationSeconds": 40,
                "renewTime": micros}});
            match leases
                .patch(n, &PatchParams::default(), &Patch::Merge(&renew))
                .await
            {
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    let lease: Lease = serde_json::from_value(json!({
                        "metadata": {"name": n, "namespace": "kube-node-lease"},
                        "spec": renew["spec"]}))
                    .unwrap();
                    let _ = leases.create(&PostParams::default(), &lease).await;
                }
                _ => {}
            }
            let ready = match nodes.get(n).await {
                Ok(node) => node
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True"),
                Err(_) => continue,
            };
            if !ready {
                let status = json!({"status": {
                    "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                    "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": secs, "lastTransitionTime": secs}]}});
                let _ = nodes
                    .patch_status(n, &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            }
        }
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for p in list.items {
                let node = node_of(&p);
                if !names.contains(&node) {
                    continue;
                }
                let ns = p.namespace().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                if p.metadata.deletion_timestamp.is_some() {
                    let _ = api
                        .delete(&p.name_any(), &DeleteParams::default().grace_period(0))
                        .await;
                } else if !is_ready(&p) {
                    ip += 1;
                    let addr = format!("10.244.{}.{}", ip / 250 % 250, ip % 250 + 1);
                    let patch = json!({"status": {"phase": "Running", "podIP": addr,
                        "podIPs": [{"ip": addr}],
                        "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": secs},
                            {"type": "ContainersReady", "status": "True", "lastTransitionTime": secs}]}});
                    let _ = api
                        .patch_status(
                            &p.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn controllers(list: &str, grace_secs: u64) -> ControllersConfig {
    let mut c = ControllersConfig::default();
    c.set_controllers(list);
    c.leader_elect = false;
    c.node_lifecycle.node_monitor_period_secs = 1;
    c.node_lifecycle.node_monitor_grace_period_secs = grace_secs;
    c
}

const WEB: &str = r#"apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: 'busybox:1'}]
"#;

#[test]
fn drain_evicts_through_the_disruption_budget_and_cordon_taints() {
    let c = Cluster::start(controllers(
        "replicaset,disruption,nodelifecycle,taint-eviction-controller",
        40,
    ));
    c.add_node("n1");
    c.k.ok_stdin(&["create", "-f", "-"], WEB);
    c.k.ok(&[
        "create",
        "poddisruptionbudget",
        "web",
        "--selector=app=web",
        "--min-available=2",
    ]);
    c.ready_pods_on("app=web", 3, "n1");
    let status = eventually("pdb status", || {
        let s = c.pdb("web").status?;
        (s.current_healthy == 3).then_some(s)
    });
    assert_eq!(
        (
            status.desired_healthy,
            status.expected_pods,
            status.disruptions_allowed
        ),
        (2, 3, 1)
    );
    assert_eq!(status.observed_generation, Some(1));
    let cond = &status.conditions.unwrap()[0];
    assert_eq!(
        (
            cond.type_.as_str(),
            cond.status.as_str(),
            cond.reason.as_str()
        ),
        ("DisruptionAllowed", "True", "SufficientPods")
    );
    let table = c.k.ok(&["get", "pdb", "web"]);
    assert!(
        table.contains("MIN AVAILABLE") && table.contains("ALLOWED DISRUPTIONS"),
        "{table}"
    );

    // cordon → spec.unschedulable and the unschedulable NoSchedule taint; uncordon undoes it.
    c.add_node("n2");
    c.k.ok(&["cordon", "n2"]);
    eventually("unschedulable taint on n2", || {
        c.taints("n2")
            .contains("node.kubernetes.io/unschedulable:NoSchedule")
            .then_some(())
    });
    let nodes = c.k.ok(&["get", "nodes"]);
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    c.k.ok(&["uncordon", "n2"]);
    eventually("no taint on n2", || c.taints("n2").is_empty().then_some(()));

    // drain n1: one eviction at a time, each waiting for its replacement to be ready on n2.
    let out = c.k.run(&[
        "drain",
        "n1",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=50s",
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "drain failed: {text}");
    assert!(text.contains("node/n1 drained"), "{text}");
    assert!(text.contains("evicting pod default/web-"), "{text}");
    assert!(
        text.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "the budget never held the drain back: {text}"
    );
    c.ready_pods_on("app=web", 3, "n2");
    assert!(c
        .taints("n1")
        .contains("node.kubernetes.io/unschedulable:NoSchedule"));

    // A budget that allows nothing: drain gives up at its timeout and the pods stay.
    c.k.ok(&["uncordon", "n1"]);
    c.k.ok(&["delete", "pdb", "web"]);
    c.k.ok(&[
        "create",
        "poddisruptionbudget",
        "strict",
        "--selector=app=web",
        "--max-unavailable=0",
    ]);
    eventually("strict pdb computed", || {
        let s = c.pdb("strict").status?;
        (s.expected_pods == 3 && s.desired_healthy == 3 && s.current_healthy == 3).then_some(())
    });
    let out = c.k.run(&[
        "drain",
        "n2",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=7s",
    ]);
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "drain past a closed budget succeeded"
    );
    assert!(
        text.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{text}"
    );
    assert_eq!(c.pods("app=web").len(), 3);
    assert!(c.pods("app=web").iter().all(|p| node_of(p) == "n2"));

    // The raw subresource: a 429 Status with kube's cause, and policy/v1beta1 accepted.
    let pod = c.pods("app=web")[0].name_any();
    let body = json!({"apiVersion": "policy/v1beta1", "kind": "Eviction",
        "metadata": {"name": pod, "namespace": "default"}});
    let out = c.k.stdin_output(
        &[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/{pod}/eviction"),
            "-f",
            "-",
        ],
        &body.to_string(),
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{err}"
    );
    c.k.ok(&["delete", "pdb", "strict"]);
    let out = c.k.stdin_output(
        &[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/{pod}/eviction"),
            "-f",
            "-",
        ],
        &body.to_string(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"status\":\"Success\""));
    eventually("the evicted pod is gone", || {
        c.all_pods("app=web")
            .iter()
            .all(|p| p.name_any() != pod)
            .then_some(())
    });
}

#[test]
fn a_silent_node_goes_unknown_and_its_pods_move_after_their_toleration() {
    let c = Cluster::start(controllers(
        "replicaset,nodelifecycle,taint-eviction-controller",
        3,
    ));
    c.add_node("n1");
    c.k.ok_stdin(
        &["create", "-f", "-"],
        r#"apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      containers: [{name: c, image: 'busybox:1'}]
"#,
    );
    let first = c.ready_pods_on("app=api", 2, "n1");
    // DefaultTolerationSeconds added the not-ready toleration the template lacks, and kept
    // the template's own unreachable one.
    let tolerations = first[0].spec.as_ref().unwrap().tolerations.clone().unwrap();
    let summary: BTreeSet<String> = tolerations
        .iter()
        .map(|t| {
            format!(
                "{}={}",
                t.key.clone().unwrap_or_default(),
                t.toleration_seconds.unwrap_or(-1)
            )
        })
        .collect();
    assert_eq!(
        summary,
        BTreeSet::from([
            "node.kubernetes.io/not-ready=300".to_string(),
            "node.kubernetes.io/unreachable=2".to_string()
        ])
    );
    c.add_node("n2");

    // n1's kubelet goes quiet: no more Lease renewals or status.
    c.set_alive("n1", false);
    eventually("n1 Unknown", || {
        (c.ready("n1").as_deref() == Some("Unknown")).then_some(())
    });
    // Ready, which the hollow kubelet posted, is now Unknown for want of heartbeats; the
    // pressure conditions it never posted are added as never updated.
    let conditions = c.node("n1").status.unwrap().conditions.unwrap();
    let summary: BTreeSet<String> = conditions
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {}",
                c.type_,
                c.status,
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        summary,
        BTreeSet::from([
            "Ready Unknown NodeStatusUnknown Kubelet stopped posting node status.".to_string(),
            "MemoryPressure Unknown NodeStatusNeverUpdated Kubelet never posted node status."
                .to_string(),
            "DiskPressure Unknown NodeStatusNeverUpdated Kubelet never posted node status."
                .to_string(),
            "PIDPressure Unknown NodeStatusNeverUpdated Kubelet never posted node status."
                .to_string(),
        ])
    );
    eventually("unreachable taints on n1", || {
        let t = c.taints("n1");
        (t.contains("node.kubernetes.io/unreachable:NoSchedule")
            && t.contains("node.kubernetes.io/unreachable:NoExecute"))
        .then_some(())
    });
    // The old pods are marked not ready, then deleted after their 2 s, and the ReplicaSet's
    // replacements land on n2.
    c.ready_pods_on("app=api", 2, "n2");
    for p in c.all_pods("app=api") {
        if node_of(&p) == "n1" {
            assert!(p.metadata.deletion_timestamp.is_some(), "{}", p.name_any());
            let conds = p.status.unwrap().conditions.unwrap();
            assert!(conds
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "False"));
            assert!(conds
                .iter()
                .any(|c| c.type_ == "DisruptionTarget" && c.status == "True"));
        }
    }
    assert!(first.iter().all(|p| c
        .pods("app=api")
        .iter()
        .all(|q| q.name_any() != p.name_any())));

    // The kubelet comes back: Ready again, taints gone, and its stuck pods finished.
    c.set_alive("n1", true);
    eventually("n1 ready and untainted", || {
        (c.ready("n1").as_deref() == Some("True") && c.taints("n1").is_empty()).then_some(())
    });
    eventually("old pods gone", || {
        c.all_pods("app=api")
            .iter()
            .all(|p| node_of(p) == "n2")
            .then_some(())
    });
}
