//! The DaemonSet controller's kube details, against a real pea-control driven by the real
//! kubectl 1.32 (the controller as its own ServiceAccount, hollow Nodes, the test playing the
//! kubelet where a pod must fail): the `pod-template-generation` label, kube's
//! failedPodsBackoff (1 s doubling, on the controllers' clock, which the test injects and
//! moves), and the adoption of orphaned pods and ControllerRevisions.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::chrono::{self, DateTime, Utc};
use pea_controllers::{Clock, ControllersConfig};
use pea_tests::control::{Backend, ControlPlane, Kubectl};
use serde_json::Value;

/// Bound of every wait; generous because the machine has 2 shared cores.
const WAIT: Duration = Duration::from_secs(40);

const DAEMONSET: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec:\n      containers: [{name: c, image: 'busybox:1'}]\n";

/// The DaemonSet controller on its own runtime with `clock`; stopped on drop.
struct Controllers(Option<tokio::runtime::Runtime>);

impl Controllers {
    fn start(cp: &ControlPlane, clock: Clock) -> Self {
        Self::start_these(cp, clock, "daemonset")
    }

    /// The controllers `names` (kube's `--controllers` syntax).
    fn start_these(cp: &ControlPlane, clock: Clock, names: &'static str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("controllers runtime");
        let kubeconfig = cp.kubeconfig.clone();
        rt.spawn(async move {
            let clients = pea_controllers::clients_from_kubeconfig(&kubeconfig, true)
                .await
                .expect("clients");
            let mut config = ControllersConfig {
                leader_elect: false,
                ..Default::default()
            };
            config.set_controllers(names);
            if let Err(e) = pea_controllers::run_with_clock(clients, config, clock).await {
                panic!("controllers stopped: {e}");
            }
        });
        Self(Some(rt))
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// A clock that stands still until the test moves it.
#[derive(Clone)]
struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Utc::now())))
    }

    fn clock(&self) -> Clock {
        let t = self.0.clone();
        Clock::new(move || *t.lock().unwrap())
    }

    fn advance(&self, ms: i64) {
        *self.0.lock().unwrap() += chrono::Duration::milliseconds(ms);
    }
}

fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn json(k: &Kubectl, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&k.ok(&a)).expect("kubectl json")
}

/// The live (not terminating) agent pods.
fn pods(k: &Kubectl) -> Vec<Value> {
    json(k, &["get", "pods", "-l", "app=agent"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .cloned()
        .collect()
}

fn name(v: &Value) -> String {
    v["metadata"]["name"].as_str().unwrap().to_string()
}

fn controller_uid(v: &Value) -> Option<String> {
    v["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .map(|r| r["uid"].as_str().unwrap().to_string())
}

/// The messages of the set's FailedDaemonPod events.
fn failed_events(k: &Kubectl) -> Vec<String> {
    json(
        k,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=agent,reason=FailedDaemonPod",
        ],
    )["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The hollow kubelet reports the pod's containers failed.
fn fail(k: &Kubectl, pod: &str) {
    k.ok(&[
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Failed","reason":"Error"}}"#,
    ]);
}

/// The one live pod once it is not `previous`.
fn next_pod(k: &Kubectl, previous: &str) -> String {
    eventually(&format!("a pod replacing {previous}"), || {
        let p = pods(k);
        (p.len() == 1 && name(&p[0]) != previous).then(|| name(&p[0]))
    })
}

/// `pod` is still there, failed, for `secs` of real time (the controller re-checks it every
/// backoff step meanwhile).
fn stays(k: &Kubectl, pod: &str, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        let p = pods(k);
        assert!(
            p.len() == 1 && name(&p[0]) == pod,
            "{pod} was replaced within its backoff: {:?}",
            p.iter().map(name).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn daemon_pods_carry_the_template_generation_and_failed_ones_back_off() {
    let cp = ControlPlane::start(Backend::Embedded).expect("pea-control");
    let k = cp.kubectl();
    let clock = ManualClock::new();
    let _c = Controllers::start(&cp, clock.clock());
    k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n",
    );
    k.ok_stdin(&["create", "-f", "-"], DAEMONSET);
    let first = eventually("the daemon pod", || {
        let p = pods(&k);
        (p.len() == 1).then(|| p[0].clone())
    });
    assert_eq!(first["metadata"]["labels"]["pod-template-generation"], "1");
    assert!(first["metadata"]["labels"]["controller-revision-hash"].is_string());
    let first = name(&first);

    // A failed pod is deleted at once (no backoff yet), with kube's warning, and replaced.
    fail(&k, &first);
    let second = next_pod(&k, &first);
    let want = format!("Found failed daemon pod default/{first} on node n1, will try to kill it");
    eventually("the FailedDaemonPod event", || {
        failed_events(&k).contains(&want).then_some(())
    });

    // The next failure on that node waits 1 s of the controllers' clock, which stands still.
    fail(&k, &second);
    stays(&k, &second, 3);
    clock.advance(1000);
    let third = next_pod(&k, &second);
    eventually("the second FailedDaemonPod event", || {
        (failed_events(&k).len() == 2).then_some(())
    });

    // Then 2 s: 1.5 s is not enough, 2 s is.
    fail(&k, &third);
    clock.advance(1500);
    stays(&k, &third, 3);
    clock.advance(500);
    let fourth = next_pod(&k, &third);

    // A template change: generation 2, and the rollout replaces the (unavailable) pod with
    // one labelled so.
    k.ok(&["set", "image", "daemonset/agent", "c=busybox:2"]);
    let rolled = eventually("the generation-2 pod", || {
        let p = pods(&k);
        (p.len() == 1 && name(&p[0]) != fourth).then(|| p[0].clone())
    });
    assert_eq!(rolled["metadata"]["labels"]["pod-template-generation"], "2");
    assert_eq!(rolled["spec"]["containers"][0]["image"], "busybox:2");
}

#[test]
fn a_new_daemonset_adopts_the_orphaned_pods_and_revision_of_an_earlier_one() {
    let cp = ControlPlane::start(Backend::Embedded).expect("pea-control");
    let k = cp.kubectl();
    let _c = Controllers::start(&cp, pea_controllers::system_clock());
    for n in ["n1", "n2"] {
        k.ok_stdin(
            &["create", "-f", "-"],
            &format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {n}}}\n"),
        );
    }
    k.ok_stdin(&["create", "-f", "-"], DAEMONSET);
    let mut before = eventually("two daemon pods", || {
        let p = pods(&k);
        (p.len() == 2).then(|| p.iter().map(name).collect::<Vec<_>>())
    });
    before.sort();
    let revisions = |k: &Kubectl| -> Vec<Value> {
        json(k, &["get", "controllerrevisions", "-l", "app=agent"])["items"]
            .as_array()
            .unwrap()
            .clone()
    };
    let revision = eventually("the revision", || {
        let r = revisions(&k);
        (r.len() == 1).then(|| name(&r[0]))
    });

    // Deleted with its dependents orphaned: pods and revision stay, without an owner.
    k.ok(&["delete", "daemonset", "agent", "--cascade=orphan"]);
    eventually("orphaned pods and revision", || {
        (pods(&k).iter().all(|p| controller_uid(p).is_none())
            && revisions(&k).iter().all(|r| controller_uid(r).is_none()))
        .then_some(())
    });

    // The same set again: it adopts both pods and the revision instead of making new ones.
    k.ok_stdin(&["create", "-f", "-"], DAEMONSET);
    let uid = k.ok(&[
        "get",
        "daemonset",
        "agent",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    eventually("the pods and the revision adopted", || {
        (pods(&k)
            .iter()
            .all(|p| controller_uid(p).as_deref() == Some(&uid))
            && revisions(&k)
                .iter()
                .all(|r| controller_uid(r).as_deref() == Some(&uid)))
        .then_some(())
    });
    eventually("the status counting the adopted pods", || {
        let s = json(&k, &["get", "daemonset", "agent"])["status"].clone();
        (s["currentNumberScheduled"] == 2 && s["updatedNumberScheduled"] == 2).then_some(())
    });
    let mut after: Vec<String> = pods(&k).iter().map(name).collect();
    after.sort();
    assert_eq!(after, before, "no new pods");
    let revs = revisions(&k);
    assert_eq!(revs.len(), 1);
    assert_eq!(name(&revs[0]), revision);

    // A pod relabelled out of the selector is released, and its node gets a new pod.
    k.ok(&["label", "pod", &before[0], "app=other", "--overwrite"]);
    eventually("the relabelled pod released and replaced", || {
        let released = json(&k, &["get", "pod", &before[0]]);
        (controller_uid(&released).is_none() && pods(&k).len() == 2).then_some(())
    });
}

/// The messages of the set's events with `reason`.
fn events_of(k: &Kubectl, reason: &str) -> Vec<String> {
    json(
        k,
        &[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name=agent,reason={reason}"),
        ],
    )["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn daemon_pods_are_created_through_real_pod_control_in_slow_start_batches() {
    let cp = ControlPlane::start(Backend::Embedded).expect("pea-control");
    let k = cp.kubectl();
    let _c = Controllers::start_these(&cp, ManualClock::new().clock(), "daemonset,resourcequota");
    // Room for two pods on five nodes: the first batch (1) and half the second (2) succeed,
    // the failing batch ends the sync.
    k.ok(&["create", "quota", "q", "--hard=pods=2"]);
    eventually("the quota's status", || {
        (json(&k, &["get", "quota", "q"])["status"]["hard"]["pods"] == "2").then_some(())
    });
    for n in 1..=5 {
        k.ok_stdin(
            &["create", "-f", "-"],
            &format!("apiVersion: v1\nkind: Node\nmetadata: {{name: n{n}}}\n"),
        );
    }
    k.ok_stdin(&["create", "-f", "-"], DAEMONSET);
    let failed = eventually("a FailedCreate event", || {
        let f = events_of(&k, "FailedCreate");
        (!f.is_empty()).then_some(f)
    });
    assert!(
        failed[0].starts_with("Error creating: pods \"agent-")
            && failed[0]
                .contains("exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"),
        "{failed:?}"
    );
    assert_eq!(pods(&k).len(), 2);
    // Each created pod has its own SuccessfulCreate, named as created.
    let mut names: Vec<String> = pods(&k).iter().map(name).collect();
    names.sort();
    let mut created: Vec<String> = events_of(&k, "SuccessfulCreate")
        .iter()
        .filter_map(|m| m.strip_prefix("Created pod: ").map(str::to_string))
        .collect();
    created.sort();
    assert_eq!(created, names);
    // Room for all: the rest are created on the next syncs, one event each.
    k.ok(&[
        "patch",
        "quota",
        "q",
        "--type=merge",
        "-p",
        r#"{"spec":{"hard":{"pods":"5"}}}"#,
    ]);
    eventually("a pod on every node", || {
        (pods(&k).len() == 5).then_some(())
    });
    eventually("five SuccessfulCreate events", || {
        (events_of(&k, "SuccessfulCreate").len() == 5).then_some(())
    });
}
