//! pea-controllers against a real pea-control, driven by the real kubectl 1.32. There is no
//! kubelet: the test plays a "hollow kubelet" and writes pod status (Running, an IP, Ready)
//! through the API when it wants a pod to be ready, so rollouts move at the pace the test sets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::chrono::SubsecRound;
use kube::api::{ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use kube::{Api, Client, ResourceExt};
use pea_controllers::ControllersConfig;
use pea_tests::control::{Backend, ControlPlane};
use serde_json::json;

/// Bound of every wait in this file; generous because the machine has 2 shared cores.
const WAIT: Duration = Duration::from_secs(60);

/// Controllers on their own runtime; stopped on drop (the runtime's tasks are cancelled).
pub(super) struct Controllers {
    rt: Option<tokio::runtime::Runtime>,
}

impl Controllers {
    pub(super) fn start(cp: &ControlPlane, config: ControllersConfig) -> Self {
        // RUST_LOG=pea_controllers=debug shows what the controllers did, per test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("controllers runtime");
        let kubeconfig = cp.kubeconfig.clone();
        rt.spawn(async move {
            // Each controller as its own ServiceAccount, as pea-control runs them.
            let clients = pea_controllers::clients_from_kubeconfig(&kubeconfig, true)
                .await
                .expect("clients");
            if let Err(e) = pea_controllers::run(clients, config).await {
                panic!("controllers stopped: {e}");
            }
        });
        Self { rt: Some(rt) }
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// The test's own API client, on its own runtime.
pub(super) struct Test {
    pub(super) cp: ControlPlane,
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) client: Client,
    pub(super) k: pea_tests::control::Kubectl,
    ip: AtomicU32,
}

impl Test {
    pub(super) fn start() -> Self {
        let cp = ControlPlane::start(Backend::Embedded).expect("pea-control");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("test runtime");
        let client = rt
            .block_on(pea_controllers::client_from_kubeconfig(&cp.kubeconfig))
            .expect("client");
        let k = cp.kubectl();
        Self {
            cp,
            rt,
            client,
            k,
            ip: AtomicU32::new(1),
        }
    }

    pub(super) fn pods(&self, selector: &str) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        self.rt
            .block_on(api.list(&ListParams::default().labels(selector)))
            .expect("list pods")
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    fn replicasets(&self, selector: &str) -> Vec<ReplicaSet> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), "default");
        self.rt
            .block_on(api.list(&ListParams::default().labels(selector)))
            .expect("list replicasets")
            .items
    }

    fn replicaset(&self, name: &str) -> ReplicaSet {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), "default");
        self.rt.block_on(api.get(name)).expect("get replicaset")
    }

    fn deployment(&self, name: &str) -> Deployment {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), "default");
        self.rt.block_on(api.get(name)).expect("get deployment")
    }

    /// The hollow kubelet: marks a pod Running with an IP and Ready now.
    fn make_ready(&self, pod: &Pod) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        let n = self.ip.fetch_add(1, Ordering::SeqCst);
        let ip = format!("10.244.{}.{}", n / 250, n % 250 + 1);
        let now = k8s_openapi::chrono::Utc::now()
            .to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true);
        let patch = json!({"status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            ],
        }});
        match self.rt.block_on(api.patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )) {
            Ok(_) => {}
            // The controller may have deleted it meanwhile.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => panic!("marking {} ready: {e}", pod.name_any()),
        }
    }

    /// A hollow kubelet that keeps making every pod matching `selector` ready until the
    /// returned guard is dropped.
    fn hollow_kubelet(&self, selector: &str) -> Hollow {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        let selector = selector.to_string();
        let task = self.rt.spawn(async move {
            let mut n = 10_000u32;
            loop {
                if let Ok(list) = api.list(&ListParams::default().labels(&selector)).await {
                    for p in list.items.iter().filter(|p| !is_ready(p)) {
                        n += 1;
                        let ip = format!("10.245.{}.{}", n / 250 % 250, n % 250 + 1);
                        let now = k8s_openapi::chrono::Utc::now()
                            .to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true);
                        let patch = json!({"status": {
                            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                        }});
                        let _ = api
                            .patch_status(&p.name_any(), &PatchParams::default(), &Patch::Merge(patch))
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Hollow(task)
    }

    fn make_not_ready(&self, pod: &Pod) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        let now = k8s_openapi::chrono::Utc::now()
            .to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true);
        let patch = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": now},
        ]}});
        self.rt
            .block_on(api.patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            ))
            .expect("mark not ready");
    }

    fn make_all_ready(&self, selector: &str) {
        for p in self.pods(selector) {
            if !is_ready(&p) {
                self.make_ready(&p);
            }
        }
    }
}

/// A child process killed (and reaped) if the test fails before waiting for it.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Stops its hollow kubelet task when dropped.
struct Hollow(tokio::task::JoinHandle<()>);

impl Drop for Hollow {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Polls `f` until it returns Some, for at most [`WAIT`].
pub(super) fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(super) fn config(controllers: &str) -> ControllersConfig {
    let mut c = ControllersConfig::default();
    c.set_controllers(controllers);
    c
}

fn image_of(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

#[test]
fn replicaset_creates_adopts_releases_and_reports_status() {
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("replicaset"));
    // An orphan that matches: adopted, so only two more pods are created.
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: stray\n  labels: {app: cache, tier: be}\nspec:\n  containers:\n  - name: c\n    image: busybox\n",
    );
    t.k.ok_stdin(
        &["create", "-f", "-"],
        r#"apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: cache}
spec:
  replicas: 3
  selector:
    matchLabels: {app: cache}
    matchExpressions:
    - {key: tier, operator: In, values: [be, fe]}
  template:
    metadata:
      labels: {app: cache, tier: be}
    spec:
      containers:
      - name: c
        image: busybox
"#,
    );
    let pods = eventually("three pods", || {
        let p = t.pods("app=cache");
        (p.len() == 3).then_some(p)
    });
    let rs_uid = t.replicaset("cache").uid().unwrap();
    for p in &pods {
        let r = p.owner_references();
        assert_eq!(r.len(), 1, "{:?}", p.metadata);
        assert_eq!(
            (r[0].uid.as_str(), r[0].controller),
            (rs_uid.as_str(), Some(true))
        );
        if p.name_any() != "stray" {
            assert!(p.name_any().starts_with("cache-"), "{}", p.name_any());
        }
    }
    assert!(
        pods.iter().any(|p| p.name_any() == "stray"),
        "the orphan was adopted"
    );

    // Status follows readiness.
    for p in &pods {
        t.make_ready(p);
    }
    eventually("status with 3 available", || {
        let rs = &t.replicaset("cache");
        let s = rs.status.clone()?;
        (s.replicas == 3
            && s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.fully_labeled_replicas == Some(3)
            && s.observed_generation == rs.metadata.generation)
            .then_some(())
    });

    // A pod whose labels stop matching is released and replaced.
    t.k.ok(&["label", "pod", "stray", "tier=db", "--overwrite"]);
    eventually("stray released and replaced", || {
        let stray = t
            .pods("app=cache")
            .into_iter()
            .find(|p| p.name_any() == "stray")?;
        let matching = t.pods("app=cache,tier in (be,fe)");
        (stray.owner_references().is_empty() && matching.len() == 3).then_some(())
    });

    // Scale down deletes not-ready pods before ready ones.
    let fresh: Vec<Pod> = t
        .pods("app=cache,tier in (be,fe)")
        .into_iter()
        .filter(|p| !is_ready(p))
        .collect();
    assert_eq!(fresh.len(), 1, "the replacement is the only not-ready pod");
    t.k.ok(&["scale", "rs", "cache", "--replicas=2"]);
    eventually("scaled to 2", || {
        let p = t.pods("app=cache,tier in (be,fe)");
        (p.len() == 2).then_some(())
    });
    assert!(
        t.pods("app=cache,tier in (be,fe)").iter().all(is_ready),
        "the not-ready pod went first"
    );
    // Deleting the ReplicaSet cascades to its pods (the API server's garbage collector), not
    // to the released one.
    t.k.ok(&["delete", "rs", "cache"]);
    eventually("pods gone", || {
        (t.pods("app=cache").len() == 1).then_some(())
    });
}

#[test]
fn deployment_create_scale_rolling_update_history_and_undo() {
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("replicaset,deployment"));
    t.k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1",
        "--replicas=4",
    ]);
    eventually("a replicaset with 4 pods", || {
        let rs = t.replicasets("app=web");
        let pods = t.pods("app=web");
        (rs.len() == 1 && pods.len() == 4).then_some(())
    });
    let rs = t.replicasets("app=web").remove(0);
    let hash = rs.labels()["pod-template-hash"].clone();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(rs.annotations()["deployment.kubernetes.io/revision"], "1");
    for p in t.pods("app=web") {
        assert_eq!(p.labels()["pod-template-hash"], hash);
        assert!(p.name_any().starts_with(&format!("web-{hash}-")));
    }
    t.make_all_ready("app=web");
    eventually("deployment available", || {
        let d = t.deployment("web");
        let s = d.status?;
        let avail = s.conditions?.into_iter().find(|c| c.type_ == "Available")?;
        (s.available_replicas == Some(4) && avail.status == "True").then_some(())
    });
    let out =
        t.k.ok(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    // kubectl describe lists the controllers' events.
    eventually("scaling event in describe", || {
        let out = t.k.ok(&["describe", "deployment", "web"]);
        (out.contains("ScalingReplicaSet")
            && out.contains(&format!("Scaled up replica set web-{hash} from 0 to 4")))
        .then_some(())
    });
    eventually("pod creation events in describe", || {
        let out = t.k.ok(&["describe", "rs", &format!("web-{hash}")]);
        (out.contains("SuccessfulCreate") && out.contains("Created pod: web-")).then_some(())
    });

    // Scale up and down through kubectl.
    t.k.ok(&["scale", "deployment", "web", "--replicas=6"]);
    eventually("6 pods", || (t.pods("app=web").len() == 6).then_some(()));
    t.make_all_ready("app=web");
    t.k.ok(&["scale", "deployment", "web", "--replicas=4"]);
    eventually("4 pods", || (t.pods("app=web").len() == 4).then_some(()));
    t.make_all_ready("app=web");

    // A rolling update with maxSurge 1, maxUnavailable 1, stepped by the test's readiness.
    t.k.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"strategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":1}}}}"#,
    ]);
    let mut status = KillOnDrop(Some(t.k.spawn(&[
        "rollout",
        "status",
        "deployment/web",
        "--timeout=120s",
    ])));
    t.k.ok(&["set", "image", "deployment/web", "busybox=busybox:2"]);
    let deadline = Instant::now() + WAIT * 2;
    let mut max_sum = 0;
    let mut min_ready = i32::MAX;
    let mut steps = 0;
    loop {
        assert!(Instant::now() < deadline, "rolling update did not finish");
        let sets = t.replicasets("app=web");
        let sum: i32 = sets.iter().map(rs_replicas).sum();
        let pods = t.pods("app=web");
        let ready = pods.iter().filter(|p| is_ready(p)).count() as i32;
        max_sum = max_sum.max(sum);
        min_ready = min_ready.min(ready);
        assert!(sum <= 5, "replicas over all sets {sum} > 4 + maxSurge 1");
        assert!(ready >= 3, "{ready} ready pods < 4 - maxUnavailable 1");
        let d = t.deployment("web");
        let s = d.status.clone().unwrap_or_default();
        let new_pods_all_ready = pods.iter().all(|p| {
            p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("busybox:2")
                && is_ready(p)
        });
        if s.updated_replicas == Some(4)
            && s.available_replicas == Some(4)
            && s.replicas == Some(4)
            && pods.len() == 4
            && new_pods_all_ready
        {
            break;
        }
        // One step: the hollow kubelet brings up every pod that exists now.
        for p in pods.iter().filter(|p| !is_ready(p)) {
            t.make_ready(p);
            steps += 1;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(steps >= 4, "every new pod was made ready by the test");
    eprintln!("rolling update: max replicas over sets {max_sum}, min ready {min_ready}");
    let out = status.0.take().unwrap().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "rollout status: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("successfully rolled out"));
    eventually("old set scaled to 0", || {
        let sets = t.replicasets("app=web");
        (sets.len() == 2 && sets.iter().map(rs_replicas).sum::<i32>() == 4).then_some(())
    });

    // History lists both revisions; undo brings the first template back as revision 3.
    let hist = t.k.ok(&["rollout", "history", "deployment/web"]);
    assert!(hist.contains("1 ") && hist.contains("2 "), "{hist}");
    t.k.ok(&["rollout", "undo", "deployment/web"]);
    assert_eq!(image_of(&t.deployment("web")), "busybox:1");
    eventually("the first set is the new one again", || {
        t.make_all_ready("app=web");
        let sets = t.replicasets("app=web");
        let first = sets.iter().find(|rs| rs.name_any() == rs_name(&hash))?;
        (first
            .annotations()
            .get("deployment.kubernetes.io/revision")?
            == "3"
            && rs_replicas(first) == 4
            && sets.len() == 2)
            .then_some(())
    });
    let hist = t.k.ok(&["rollout", "history", "deployment/web"]);
    assert!(hist.contains("2 ") && hist.contains("3 "), "{hist}");
    // rollout status waits while the hollow kubelet brings up what the rollout still creates.
    let kubelet = t.hollow_kubelet("app=web");
    let out =
        t.k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    drop(kubelet);
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(
        t.deployment("web").annotations()["deployment.kubernetes.io/revision"],
        "3"
    );

    // Pause: a template change makes no new set; resume rolls it out; restart makes another.
    t.k.ok(&["rollout", "pause", "deployment/web"]);
    t.k.ok(&["set", "image", "deployment/web", "busybox=busybox:3"]);
    eventually("paused condition", || {
        let d = t.deployment("web");
        let c = d
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Progressing")?;
        (c.reason.as_deref() == Some("DeploymentPaused")).then_some(())
    });
    assert_eq!(t.replicasets("app=web").len(), 2, "no new set while paused");
    t.k.ok(&["rollout", "resume", "deployment/web"]);
    eventually("busybox:3 rolled out", || {
        t.make_all_ready("app=web");
        let pods = t.pods("app=web");
        (pods.len() == 4
            && pods.iter().all(|p| {
                is_ready(p)
                    && p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("busybox:3")
            }))
        .then_some(())
    });
    t.k.ok(&["rollout", "restart", "deployment/web"]);
    eventually("restarted: a fourth set holds every pod", || {
        t.make_all_ready("app=web");
        let sets = t.replicasets("app=web");
        let full: Vec<_> = sets.iter().filter(|rs| rs_replicas(rs) == 4).collect();
        (sets.len() == 4
            && full.len() == 1
            && full[0].annotations()["deployment.kubernetes.io/revision"] == "5")
            .then_some(())
    });
    let _kubelet = t.hollow_kubelet("app=web");
    let out =
        t.k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
}

fn rs_name(hash: &str) -> String {
    format!("web-{hash}")
}

#[test]
fn revision_history_limit_and_recreate() {
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("replicaset,deployment"));
    t.k.ok_stdin(
        &["create", "-f", "-"],
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: rec}
spec:
  replicas: 2
  revisionHistoryLimit: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: rec}}
  template:
    metadata: {labels: {app: rec}}
    spec:
      containers:
      - {name: c, image: "busybox:1"}
"#,
    );
    eventually("2 pods", || (t.pods("app=rec").len() == 2).then_some(()));
    t.make_all_ready("app=rec");
    for v in 2..=4 {
        t.k.ok(&["set", "image", "deployment/rec", &format!("c=busybox:{v}")]);
        // Recreate: the old pods go before any new one exists.
        eventually("recreated", || {
            let pods = t.pods("app=rec");
            let imgs: BTreeSet<String> = pods
                .iter()
                .map(|p| {
                    p.spec.as_ref().unwrap().containers[0]
                        .image
                        .clone()
                        .unwrap()
                })
                .collect();
            assert!(
                imgs.len() <= 1,
                "old and new pods together under Recreate: {imgs:?}"
            );
            t.make_all_ready("app=rec");
            (pods.len() == 2 && imgs.contains(&format!("busybox:{v}")) && pods.iter().all(is_ready))
                .then_some(())
        });
    }
    // History limit 1: the new set plus one old.
    eventually("old sets cleaned up", || {
        (t.replicasets("app=rec").len() == 2).then_some(())
    });
}

#[test]
fn concurrent_scale_changes_never_over_create() {
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("replicaset,deployment"));
    // Count every pod ever created, from a watch that starts before anything exists.
    let created: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let watch = {
        let created = created.clone();
        let api: Api<Pod> = Api::namespaced(t.client.clone(), "default");
        t.rt.spawn(async move {
            let mut s = api
                .watch(&WatchParams::default().labels("app=burst"), "0")
                .await
                .expect("watch")
                .boxed();
            while let Some(ev) = s.next().await {
                if let Ok(WatchEvent::Added(p)) = ev {
                    created.lock().unwrap().insert(p.uid().unwrap());
                }
            }
        })
    };
    t.k.ok(&[
        "create",
        "deployment",
        "burst",
        "--image=busybox",
        "--replicas=0",
    ]);
    // 100 concurrent +1 changes of the scale subresource, each a read-modify-write retried
    // on conflict: the replica count only grows, ending at exactly 100.
    let api: Api<Deployment> = Api::namespaced(t.client.clone(), "default");
    t.rt.block_on(async {
        let tasks = (0..100).map(|_| {
            let api = api.clone();
            async move {
                loop {
                    let scale = api.get_scale("burst").await.expect("get scale");
                    let n = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                    let body = json!({
                        "apiVersion": "autoscaling/v1", "kind": "Scale",
                        "metadata": {"name": "burst", "namespace": "default",
                                     "resourceVersion": scale.metadata.resource_version},
                        "spec": {"replicas": n + 1},
                    });
                    match api
                        .replace_scale(
                            "burst",
                            &Default::default(),
                            serde_json::to_vec(&body).unwrap(),
                        )
                        .await
                    {
                        Ok(_) => return,
                        Err(kube::Error::Api(s)) if s.code == 409 => continue,
                        Err(e) => panic!("scale: {e}"),
                    }
                }
            }
        });
        futures_util::future::join_all(tasks).await;
    });
    assert_eq!(
        t.deployment("burst").spec.unwrap().replicas,
        Some(100),
        "every increment landed"
    );
    eventually("100 pods", || {
        (t.pods("app=burst").len() == 100).then_some(())
    });
    // Let any over-creation surface before counting.
    std::thread::sleep(Duration::from_secs(2));
    let n = created.lock().unwrap().len();
    watch.abort();
    let d = t.deployment("burst");
    let surge = 25; // 25% of 100, rounded up
    eprintln!("pods ever created: {n}");
    assert!(n <= 100 + surge, "{n} pods created for 100 replicas");
    assert_eq!(
        n, 100,
        "no rollout happened, so no pod beyond the 100 asked for"
    );
    assert_eq!(t.pods("app=burst").len(), 100);
    assert_eq!(d.status.unwrap().replicas, Some(100));
}

#[test]
fn node_ipam_gives_unique_pod_cidrs_and_recovers_them() {
    let t = Test::start();
    let node = |name: &str| format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n");
    let cidr_of = |name: &str| -> Option<String> {
        let api: Api<Node> = Api::all(t.client.clone());
        t.rt.block_on(api.get(name)).ok()?.spec?.pod_cidr
    };
    // A node that already has a CIDR before the controller starts: recovered, not reused.
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: pre\nspec:\n  podCIDR: 10.244.0.0/24\n  podCIDRs: [10.244.0.0/24]\n",
    );
    let mut cidrs = BTreeMap::new();
    {
        let _c = Controllers::start(&t.cp, config("nodeipam"));
        for n in ["n1", "n2", "n3"] {
            t.k.ok_stdin(&["create", "-f", "-"], &node(n));
        }
        for n in ["n1", "n2", "n3"] {
            cidrs.insert(n.to_string(), eventually("pod cidr", || cidr_of(n)));
        }
    }
    // Restarted controllers recover n1..n3 and give n4 a fifth subnet.
    let _c = Controllers::start(&t.cp, config("nodeipam"));
    t.k.ok_stdin(&["create", "-f", "-"], &node("n4"));
    cidrs.insert("n4".into(), eventually("pod cidr", || cidr_of("n4")));
    cidrs.insert("pre".into(), cidr_of("pre").unwrap());
    let unique: BTreeSet<&String> = cidrs.values().collect();
    assert_eq!(unique.len(), 5, "{cidrs:?}");
    for c in cidrs.values() {
        let net: ipnet::Ipv4Net = c.parse().unwrap();
        assert_eq!(net.prefix_len(), 24);
        assert!(
            "10.244.0.0/16"
                .parse::<ipnet::Ipv4Net>()
                .unwrap()
                .contains(&net),
            "{c}"
        );
    }
    let list =
        t.k.ok(&["get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDR}"]);
    assert_eq!(list.split_whitespace().count(), 5, "{list}");
}

#[test]
fn endpoints_and_slices_follow_pod_readiness() {
    let t = Test::start();
    let _c = Controllers::start(
        &t.cp,
        config("replicaset,deployment,endpoint,endpointslice"),
    );
    t.k.ok_stdin(
        &["create", "-f", "-"],
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 3
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: c
        image: busybox
        ports:
        - {name: http, containerPort: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: api, labels: {team: a}}
spec:
  selector: {app: api}
  ports:
  - {name: web, port: 80, targetPort: http}
"#,
    );
    eventually("3 pods", || (t.pods("app=api").len() == 3).then_some(()));
    let slices = |t: &Test| -> Vec<EndpointSlice> {
        let api: Api<EndpointSlice> = Api::namespaced(t.client.clone(), "default");
        t.rt.block_on(api.list(&ListParams::default().labels("kubernetes.io/service-name=api")))
            .unwrap()
            .items
    };
    let endpoints = |t: &Test| -> Option<Endpoints> {
        let api: Api<Endpoints> = Api::namespaced(t.client.clone(), "default");
        t.rt.block_on(api.get("api")).ok()
    };
    // Not ready yet: pods without IPs are not endpoints at all.
    let pods = t.pods("app=api");
    t.make_ready(&pods[0]);
    t.make_ready(&pods[1]);
    t.make_ready(&pods[2]);
    t.make_not_ready(&pods[2]);
    eventually("slice with 2 ready, 1 not ready", || {
        let s = slices(&t);
        if s.len() != 1 {
            return None;
        }
        let s = &s[0];
        let eps = s.endpoints.clone();
        let ready = eps
            .iter()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .count();
        let port = s.ports.as_ref()?.first()?.port;
        (eps.len() == 3 && ready == 2 && port == Some(8080)).then_some(())
    });
    let s = &slices(&t)[0];
    assert_eq!(s.address_type, "IPv4");
    let l = s.labels();
    assert_eq!(
        l["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(l["team"], "a");
    assert_eq!(s.owner_references()[0].kind, "Service");
    eventually("endpoints with 2 addresses and 1 not ready", || {
        let e = endpoints(&t)?;
        let ss = e.subsets?;
        let addrs: usize = ss
            .iter()
            .map(|s| s.addresses.as_ref().map_or(0, |a| a.len()))
            .sum();
        let nr: usize = ss
            .iter()
            .map(|s| s.not_ready_addresses.as_ref().map_or(0, |a| a.len()))
            .sum();
        let port = ss[0].ports.as_ref()?[0].port;
        (addrs == 2 && nr == 1 && port == 8080).then_some(())
    });
    t.make_ready(&pods[2]);
    eventually("3 ready", || {
        let s = slices(&t);
        let ready = s
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .count();
        (ready == 3).then_some(())
    });
    // A terminating pod (bound to a node, so deletion is graceful and it stays): ready false,
    // serving true, terminating true in the slice; gone from Endpoints.
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bound\n  labels: {app: api}\nspec:\n  nodeName: n1\n  containers:\n  - name: c\n    image: busybox\n    ports: [{name: http, containerPort: 8080}]\n",
    );
    let bound = t
        .pods("app=api")
        .into_iter()
        .find(|p| p.name_any() == "bound")
        .unwrap();
    t.make_ready(&bound);
    let bound_endpoint = |t: &Test| {
        slices(t)
            .into_iter()
            .flat_map(|s| s.endpoints)
            .find(|e| e.target_ref.as_ref().and_then(|r| r.name.as_deref()) == Some("bound"))
    };
    eventually("bound pod listed ready", || {
        let c = bound_endpoint(&t)?.conditions?;
        (c.ready == Some(true)).then_some(())
    });
    t.k.ok(&["delete", "pod", "bound", "--wait=false"]);
    eventually(
        "bound pod terminating in the slice, gone from endpoints",
        || {
            let c = bound_endpoint(&t)?.conditions?;
            let e = endpoints(&t)?;
            let listed = e.subsets.iter().flatten().any(|s| {
                s.addresses
                    .iter()
                    .chain(s.not_ready_addresses.iter())
                    .flatten()
                    .any(|a| a.target_ref.as_ref().and_then(|r| r.name.as_deref()) == Some("bound"))
            });
            (c.ready == Some(false)
                && c.serving == Some(true)
                && c.terminating == Some(true)
                && !listed)
                .then_some(())
        },
    );
    t.k.ok(&["delete", "pod", "bound", "--grace-period=0", "--force"]);
    eventually("bound pod gone from the slice", || {
        bound_endpoint(&t).is_none().then_some(())
    });

    // Scale to 0: the slice stays as an empty placeholder, Endpoints has no subsets.
    t.k.ok(&["scale", "deployment", "api", "--replicas=0"]);
    eventually("no endpoints", || {
        let s = slices(&t);
        let e = endpoints(&t)?;
        (s.len() == 1
            && s[0].endpoints.is_empty()
            && e.subsets.as_ref().is_none_or(|s| s.is_empty()))
        .then_some(())
    });
    // Deleting the service removes its Endpoints (slices go with it by owner reference).
    t.k.ok(&["delete", "service", "api"]);
    eventually("endpoints gone", || endpoints(&t).is_none().then_some(()));
}

#[test]
fn many_endpoints_are_packed_100_per_slice() {
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("replicaset,endpointslice"));
    t.k.ok_stdin(
        &["create", "-f", "-"],
        r#"apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: big}
spec:
  replicas: 150
  selector: {matchLabels: {app: big}}
  template:
    metadata: {labels: {app: big}}
    spec:
      containers:
      - {name: c, image: busybox}
---
apiVersion: v1
kind: Service
metadata: {name: big}
spec:
  clusterIP: None
  selector: {app: big}
"#,
    );
    eventually("150 pods", || {
        (t.pods("app=big").len() == 150).then_some(())
    });
    t.make_all_ready("app=big");
    let api: Api<EndpointSlice> = Api::namespaced(t.client.clone(), "default");
    let sizes = eventually("150 endpoints in 2 slices", || {
        let s = t
            .rt
            .block_on(api.list(&ListParams::default().labels("kubernetes.io/service-name=big")))
            .unwrap()
            .items;
        let mut sizes: Vec<usize> = s.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        (sizes.iter().sum::<usize>() == 150).then_some(sizes)
    });
    assert_eq!(sizes, [50, 100]);
}

#[test]
fn only_the_lease_holder_runs_controllers_and_a_standby_takes_over() {
    let t = Test::start();
    let instance = |id: &str| {
        let mut c = config("replicaset");
        c.leader_election.identity = Some(id.into());
        c.leader_election.lease_duration_secs = 4;
        c.leader_election.renew_deadline_secs = 3;
        c.leader_election.retry_period_secs = 1;
        c
    };
    let holder = || -> Option<String> {
        let api: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(t.client.clone(), "kube-system");
        t.rt.block_on(api.get("kube-controller-manager"))
            .ok()?
            .spec?
            .holder_identity
    };
    let a = Controllers::start(&t.cp, instance("a"));
    eventually("a leads", || {
        (holder().as_deref() == Some("a")).then_some(())
    });
    let _b = Controllers::start(&t.cp, instance("b"));
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: le}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: le}}\n  template:\n    metadata: {labels: {app: le}}\n    spec:\n      containers: [{name: c, image: busybox}]\n",
    );
    eventually("1 pod", || (t.pods("app=le").len() == 1).then_some(()));
    // While a renews, b never takes the lease (several lease durations).
    for _ in 0..10 {
        assert_eq!(holder().as_deref(), Some("a"), "b took a live lease");
        std::thread::sleep(Duration::from_millis(1000));
    }
    drop(a);
    t.k.ok(&["scale", "rs", "le", "--replicas=3"]);
    eventually("b leads and scales", || {
        (holder().as_deref() == Some("b") && t.pods("app=le").len() == 3).then_some(())
    });
    let api: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(t.client.clone(), "kube-system");
    let lease = t.rt.block_on(api.get("kube-controller-manager")).unwrap();
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
}

#[test]
fn namespaces_get_a_default_serviceaccount_and_the_root_ca() {
    let t = Test::start();
    let mut c = config("serviceaccount,root-ca-cert-publisher,podgc");
    let pem = pea_controllers::ca_pem_from_kubeconfig(&t.cp.kubeconfig).expect("ca in kubeconfig");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    c.root_ca_pem = Some(pem.clone());
    let _c = Controllers::start(&t.cp, c);
    t.k.ok(&["create", "namespace", "team-a"]);
    let ca_of = |ns: &str| -> Option<String> {
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(t.client.clone(), ns);
        t.rt.block_on(api.get("kube-root-ca.crt"))
            .ok()?
            .data?
            .get("ca.crt")
            .cloned()
    };
    let sa = |ns: &str| {
        t.k.run(&["-n", ns, "get", "serviceaccount", "default"])
            .status
            .success()
    };
    for ns in ["default", "kube-system", "team-a"] {
        eventually("default serviceaccount", || sa(ns).then_some(()));
        assert_eq!(eventually("root ca configmap", || ca_of(ns)), pem);
    }
    // Deleted or changed: put back.
    t.k.ok(&["-n", "team-a", "delete", "serviceaccount", "default"]);
    t.k.ok(&["-n", "team-a", "delete", "configmap", "kube-root-ca.crt"]);
    eventually("serviceaccount recreated", || sa("team-a").then_some(()));
    eventually("configmap recreated", || {
        (ca_of("team-a")? == pem).then_some(())
    });
    t.k.ok(&[
        "-n",
        "team-a",
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":"tampered"}}"#,
    ]);
    eventually("configmap restored", || {
        (ca_of("team-a")? == pem).then_some(())
    });

    // Pod GC: a pod bound to a node that does not exist is deleted (first sweep after 20 s);
    // a pod on an existing node stays.
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Node\nmetadata: {name: real}\n",
    );
    for (name, node) in [("orphan", "ghost"), ("kept", "real")] {
        t.k.ok_stdin(
            &["create", "-f", "-"],
            &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: gc}}\nspec:\n  nodeName: {node}\n  containers: [{{name: c, image: busybox}}]\n"),
        );
    }
    eventually("orphan collected", || {
        let names: Vec<String> = t.pods("app=gc").iter().map(|p| p.name_any()).collect();
        (names == ["kept"]).then_some(())
    });
}

#[test]
fn jobs_run_to_completion_or_fail_past_the_backoff_limit() {
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("job"));
    let api: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    // The hollow kubelet finishes a pod: Succeeded or Failed.
    let finish = |p: &Pod, phase: &str| {
        t.rt.block_on(api.patch_status(
            &p.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": phase}})),
        ))
        .expect("finish pod");
    };
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: work}\nspec:\n  completions: 3\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    );
    let running = |t: &Test| -> Vec<Pod> {
        t.pods("job-name=work")
            .into_iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.phase.as_deref())
                    .unwrap_or("Pending")
                    == "Pending"
            })
            .collect()
    };
    let mut finished = 0;
    let mut max_running = 0;
    while finished < 3 {
        let r = eventually("a running pod", || {
            let r = running(&t);
            (!r.is_empty()).then_some(r)
        });
        max_running = max_running.max(r.len());
        assert!(r.len() <= 2, "parallelism 2, {} running", r.len());
        finish(&r[0], "Succeeded");
        finished += 1;
        // Wait until the controller saw it before looking for the next.
        eventually("succeeded counted", || {
            let api: Api<Job> = Api::namespaced(t.client.clone(), "default");
            let s = t.rt.block_on(api.get("work")).ok()?.status?;
            (s.succeeded == Some(finished)).then_some(())
        });
    }
    assert_eq!(max_running, 2);
    t.k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/work",
        "--timeout=60s",
    ]);
    assert_eq!(
        t.pods("job-name=work").len(),
        3,
        "no pod beyond the 3 completions"
    );

    // backoffLimit 1: the second failure fails the Job.
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: flaky}\nspec:\n  backoffLimit: 1\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    );
    for _ in 0..2 {
        let p = eventually("a pod to fail", || {
            t.pods("job-name=flaky").into_iter().find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.phase.as_deref())
                    .unwrap_or("Pending")
                    == "Pending"
            })
        });
        finish(&p, "Failed");
    }
    t.k.ok(&[
        "wait",
        "--for=condition=failed",
        "job/flaky",
        "--timeout=60s",
    ]);
    let api: Api<Job> = Api::namespaced(t.client.clone(), "default");
    let s = t.rt.block_on(api.get("flaky")).unwrap().status.unwrap();
    let failed = s
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(s.failed, Some(2));
}

impl Test {
    pub(super) fn job(&self, name: &str) -> Job {
        let api: Api<Job> = Api::namespaced(self.client.clone(), "default");
        self.rt.block_on(api.get(name)).expect("get job")
    }

    /// The Job's pods still running (Pending as far as the hollow kubelet is concerned).
    pub(super) fn unfinished(&self, job: &str) -> Vec<Pod> {
        self.pods(&format!("job-name={job}"))
            .into_iter()
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .collect()
    }

    /// The hollow kubelet finishes a pod: `phase`, and every container terminated with
    /// `exit_code` at `finished_at`, plus `conditions`.
    pub(super) fn finish_pod(
        &self,
        pod: &Pod,
        phase: &str,
        exit_code: i32,
        finished_at: k8s_openapi::chrono::DateTime<k8s_openapi::chrono::Utc>,
        conditions: serde_json::Value,
    ) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        let at = finished_at.to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true);
        let statuses: Vec<serde_json::Value> = pod
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .map(|c| {
                json!({"name": c.name, "image": c.image, "imageID": "", "ready": false,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": exit_code, "finishedAt": at}}})
            })
            .collect();
        self.rt
            .block_on(api.patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {
                    "phase": phase, "containerStatuses": statuses, "conditions": conditions,
                }})),
            ))
            .expect("finish pod");
    }
}

pub(super) fn condition_of(job: &Job, type_: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

pub(super) fn index_of(p: &Pod) -> String {
    p.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"].clone()
}

#[test]
fn indexed_jobs_run_each_index_once_and_complete_when_all_succeeded() {
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("job"));
    let now = k8s_openapi::chrono::Utc::now;
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: idx}\nspec:\n  completions: 3\n  parallelism: 2\n  completionMode: Indexed\n  template:\n    spec:\n      subdomain: workers\n      restartPolicy: Never\n      containers: [{name: main, image: busybox}, {name: side, image: busybox}]\n",
    );
    let first = eventually("pods for indexes 0 and 1", || {
        let mut p = t.unfinished("idx");
        p.sort_by_key(index_of);
        (p.len() == 2).then_some(p)
    });
    for (i, p) in first.iter().enumerate() {
        let name = p.name_any();
        assert!(name.starts_with(&format!("idx-{i}-")), "{name}");
        assert_eq!(index_of(p), i.to_string());
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(
            labels["batch.kubernetes.io/job-completion-index"],
            i.to_string()
        );
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("idx-{i}").as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("workers"));
        for c in &spec.containers {
            let env = c.env.as_ref().unwrap();
            let e = env
                .iter()
                .find(|e| e.name == "JOB_COMPLETION_INDEX")
                .unwrap();
            let path = &e
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path;
            assert_eq!(
                path,
                "metadata.labels['batch.kubernetes.io/job-completion-index']"
            );
        }
    }
    // Index 1 succeeds: index 2 is the next (lowest missing) index.
    t.finish_pod(&first[1], "Succeeded", 0, now(), json!([]));
    let second = eventually("a pod for index 2", || {
        t.unfinished("idx").into_iter().find(|p| index_of(p) == "2")
    });
    eventually("completedIndexes 1", || {
        let s = t.job("idx").status?;
        (s.completed_indexes.as_deref() == Some("1") && s.succeeded == Some(1)).then_some(())
    });
    // A second pod for index 0 (as a lost creation or a restore would leave): the ready one is
    // kept and the copy deleted.
    t.make_ready(&first[0]);
    let mut copy = first[0].clone();
    copy.metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some("idx-0-copy".into()),
        labels: copy.metadata.labels.clone(),
        annotations: copy.metadata.annotations.clone(),
        owner_references: copy.metadata.owner_references.clone(),
        ..Default::default()
    };
    copy.status = None;
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    t.rt.block_on(pods.create(&Default::default(), &copy))
        .expect("create a duplicate of index 0");
    eventually("the duplicate deleted", || {
        let names: Vec<String> = t.unfinished("idx").iter().map(|p| p.name_any()).collect();
        (!names.contains(&"idx-0-copy".to_string()) && names.contains(&first[0].name_any()))
            .then_some(())
    });
    t.finish_pod(&first[0], "Succeeded", 0, now(), json!([]));
    eventually("completedIndexes 0,1", || {
        let s = t.job("idx").status?;
        (s.completed_indexes.as_deref() == Some("0,1")).then_some(())
    });
    assert!(
        condition_of(&t.job("idx"), "Complete").is_none(),
        "index 2 has not succeeded yet"
    );
    t.finish_pod(&second, "Succeeded", 0, now(), json!([]));
    t.k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/idx",
        "--timeout=60s",
    ]);
    let s = t.job("idx").status.unwrap();
    assert_eq!(s.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(s.succeeded, Some(3));
    let row = t.k.ok(&["get", "job", "idx", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[..3], ["idx", "Complete", "3/3"], "{row}");
    assert_eq!(t.pods("job-name=idx").len(), 3, "one pod per index");
}

#[test]
fn pod_failure_policy_ignores_disruptions_and_fails_the_job_on_exit_code_42() {
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("job"));
    let now = k8s_openapi::chrono::Utc::now;
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: pfp}\nspec:\n  backoffLimit: 0\n  podFailurePolicy:\n    rules:\n    - action: Ignore\n      onPodConditions: [{type: DisruptionTarget}]\n    - action: FailJob\n      onExitCodes: {containerName: main, operator: In, values: [42]}\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: main, image: busybox}]\n",
    );
    // The API refuses what the controller cannot honour, as kube-apiserver does.
    let err = t.k.fails_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: pfp-bad}\nspec:\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes: {operator: In, values: [42]}\n  template:\n    spec:\n      restartPolicy: OnFailure\n      containers: [{name: main, image: busybox}]\n",
    );
    assert!(
        err.contains("spec.template.spec.restartPolicy: Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified"),
        "{err}"
    );
    let err = t.k.fails_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: per-index}\nspec:\n  completions: 2\n  backoffLimitPerIndex: 1\n  podFailurePolicy:\n    rules:\n    - action: FailIndex\n      onExitCodes: {operator: In, values: [42]}\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: main, image: busybox}]\n",
    );
    assert!(
        err.contains(
            "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode"
        ),
        "{err}"
    );
    let err = t.k.fails_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: fail-index}\nspec:\n  podFailurePolicy:\n    rules:\n    - action: FailIndex\n      onExitCodes: {operator: In, values: [42]}\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: main, image: busybox}]\n",
    );
    assert!(
        err.contains("spec.podFailurePolicy.rules[0].action: Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set"),
        "{err}"
    );
    let job = t.job("pfp");
    let rules = &job
        .spec
        .as_ref()
        .unwrap()
        .pod_failure_policy
        .as_ref()
        .unwrap()
        .rules;
    assert_eq!(
        rules[0].on_pod_conditions.as_ref().unwrap()[0].status,
        "True",
        "status defaults to True"
    );
    let p1 = eventually("the first pod", || t.unfinished("pfp").into_iter().next());
    // A disruption: ignored, so backoffLimit 0 is not exceeded, and the pod is replaced (after
    // the backoff delay, which ignored failures still move as in kube since 1.28).
    t.finish_pod(
        &p1,
        "Failed",
        137,
        now(),
        json!([{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}]),
    );
    let p2 = eventually("a replacement pod", || {
        t.unfinished("pfp")
            .into_iter()
            .find(|p| p.name_any() != p1.name_any())
    });
    let job = t.job("pfp");
    assert!(
        condition_of(&job, "Failed").is_none(),
        "the disruption is ignored"
    );
    assert_eq!(job.status.unwrap().failed, None, "not counted");
    // Exit code 42 in container main: FailJob.
    t.finish_pod(&p2, "Failed", 42, now(), json!([]));
    t.k.ok(&["wait", "--for=condition=failed", "job/pfp", "--timeout=60s"]);
    let job = t.job("pfp");
    let want = format!(
        "Container main for pod default/{} failed with exit code 42 matching FailJob rule at index 1",
        p2.name_any()
    );
    assert_eq!(
        condition_of(&job, "Failed"),
        Some(("PodFailurePolicy".to_string(), want.clone()))
    );
    assert_eq!(
        condition_of(&job, "FailureTarget"),
        Some(("PodFailurePolicy".to_string(), want))
    );
    assert_eq!(job.status.unwrap().failed, Some(1));
}

#[test]
fn success_policy_completes_an_indexed_job_early_and_removes_the_rest() {
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("job"));
    let now = k8s_openapi::chrono::Utc::now;
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: leader}\nspec:\n  completions: 4\n  parallelism: 4\n  completionMode: Indexed\n  successPolicy:\n    rules:\n    - succeededIndexes: \"0\"\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    );
    let pods = eventually("4 pods", || {
        let p = t.unfinished("leader");
        (p.len() == 4).then_some(p)
    });
    // Index 3 succeeding does not meet the rule.
    let by_index = |i: &str| pods.iter().find(|p| index_of(p) == i).unwrap();
    t.finish_pod(by_index("3"), "Succeeded", 0, now(), json!([]));
    eventually("completedIndexes 3", || {
        let s = t.job("leader").status?;
        (s.completed_indexes.as_deref() == Some("3")).then_some(())
    });
    assert!(condition_of(&t.job("leader"), "SuccessCriteriaMet").is_none());
    t.finish_pod(by_index("0"), "Succeeded", 0, now(), json!([]));
    t.k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/leader",
        "--timeout=60s",
    ]);
    let job = t.job("leader");
    let want = Some((
        "SuccessPolicy".to_string(),
        "Matched rules at index 0".to_string(),
    ));
    assert_eq!(condition_of(&job, "SuccessCriteriaMet"), want);
    assert_eq!(condition_of(&job, "Complete"), want);
    let s = job.status.unwrap();
    assert_eq!(s.completed_indexes.as_deref(), Some("0,3"));
    assert!(s.completion_time.is_some());
    assert!(t.unfinished("leader").is_empty(), "indexes 1 and 2 removed");
}

#[test]
fn failed_pods_are_replaced_after_the_backoff_delay_and_restarts_count() {
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("job"));
    let now = k8s_openapi::chrono::Utc::now;
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: slow}\nspec:\n  backoffLimit: 5\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    );
    let p1 = eventually("the first pod", || t.unfinished("slow").into_iter().next());
    let failed_at = now();
    t.finish_pod(&p1, "Failed", 1, failed_at, json!([]));
    eventually("failure counted", || {
        (t.job("slow").status?.failed == Some(1)).then_some(())
    });
    // kube's first delay is 10 s after the failure: no replacement for the next 5 s.
    let quiet = Instant::now() + Duration::from_secs(5);
    while Instant::now() < quiet {
        assert!(
            t.unfinished("slow").is_empty(),
            "replaced within the 10 s backoff"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let p2 = eventually("the replacement after the delay", || {
        t.unfinished("slow").into_iter().next()
    });
    let created = p2.metadata.creation_timestamp.as_ref().unwrap().0;
    assert!(
        created >= failed_at.trunc_subsecs(0) + k8s_openapi::chrono::Duration::seconds(10),
        "created at {created}, failed at {failed_at}"
    );

    // OnFailure: two container restarts reach backoffLimit 2.
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: restarts}\nspec:\n  backoffLimit: 2\n  template:\n    spec:\n      restartPolicy: OnFailure\n      containers: [{name: c, image: busybox}]\n",
    );
    let p = eventually("the pod", || t.unfinished("restarts").into_iter().next());
    let api: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    let restarted = |n: i32| {
        json!({"status": {"phase": "Running", "containerStatuses": [{
            "name": "c", "image": "busybox", "imageID": "", "ready": true, "restartCount": n,
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}})
    };
    t.rt.block_on(api.patch_status(
        &p.name_any(),
        &PatchParams::default(),
        &Patch::Merge(restarted(1)),
    ))
    .expect("one restart");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        condition_of(&t.job("restarts"), "Failed").is_none(),
        "1 restart < 2"
    );
    t.rt.block_on(api.patch_status(
        &p.name_any(),
        &PatchParams::default(),
        &Patch::Merge(restarted(2)),
    ))
    .expect("two restarts");
    t.k.ok(&[
        "wait",
        "--for=condition=failed",
        "job/restarts",
        "--timeout=60s",
    ]);
    assert_eq!(
        condition_of(&t.job("restarts"), "Failed").map(|c| c.0),
        Some("BackoffLimitExceeded".to_string())
    );
    let left = t.unfinished("restarts");
    assert!(left.is_empty(), "the restarting pod deleted: {left:?}");
}

#[test]
fn pod_replacement_policy_failed_waits_for_terminating_pods() {
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("job"));
    let job = |name: &str, policy: &str| {
        format!("apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  podReplacementPolicy: {policy}\n  template:\n    spec:\n      nodeName: ghost\n      restartPolicy: Never\n      containers: [{{name: c, image: busybox}}]\n")
    };
    // Bound to a node, a deleted pod stays terminating until its kubelet (none here) is done.
    t.k.ok_stdin(&["create", "-f", "-"], &job("patient", "Failed"));
    t.k.ok_stdin(&["create", "-f", "-"], &job("eager", "TerminatingOrFailed"));
    let p1 = eventually("the patient pod", || {
        t.unfinished("patient").into_iter().next()
    });
    let e1 = eventually("the eager pod", || t.unfinished("eager").into_iter().next());
    for p in [&p1, &e1] {
        t.k.ok(&["delete", "pod", &p.name_any(), "--wait=false"]);
    }
    eventually("the eager pod replaced while terminating", || {
        t.unfinished("eager")
            .into_iter()
            .find(|p| p.name_any() != e1.name_any())
    });
    eventually("terminating counted", || {
        (t.job("patient").status?.terminating == Some(1)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        t.unfinished("patient").is_empty(),
        "podReplacementPolicy Failed: no replacement while the pod terminates"
    );
    // The kubelet reports it failed (a minute ago: no backoff left): now it is replaced.
    let long_ago = k8s_openapi::chrono::Utc::now() - k8s_openapi::chrono::Duration::seconds(60);
    t.finish_pod(&p1, "Failed", 1, long_ago, json!([]));
    eventually("the patient pod replaced once failed", || {
        t.unfinished("patient").into_iter().next()
    });
    eventually("failed 1, terminating 0", || {
        let s = t.job("patient").status?;
        (s.failed == Some(1) && s.terminating == Some(0)).then_some(())
    });
}

#[test]
fn jobs_adopt_matching_orphans_and_release_pods_that_stop_matching() {
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("job"));
    // An orphan with the labels the Job will select, made before the Job.
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: stray, labels: {app: crew}}\nspec:\n  restartPolicy: Never\n  containers: [{name: c, image: busybox}]\n",
    );
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: crew}\nspec:\n  manualSelector: true\n  selector: {matchLabels: {app: crew}}\n  completions: 4\n  parallelism: 2\n  template:\n    metadata: {labels: {app: crew}}\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    );
    let uid = t.job("crew").metadata.uid.unwrap();
    let owned_by_job = |p: &Pod| {
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.controller == Some(true) && r.uid == uid)
    };
    eventually("the orphan adopted", || {
        let p = t.pods("app=crew");
        p.iter()
            .any(|p| p.name_any() == "stray" && owned_by_job(p))
            .then_some(())
    });
    // Parallelism 2 counts the adopted pod: one more created, not two.
    let pods = eventually("two active pods", || {
        let p = t.pods("app=crew");
        (p.len() == 2 && t.job("crew").status?.active == Some(2)).then_some(p)
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(t.pods("app=crew").len(), 2, "no third pod: {pods:?}");
    // The adopted pod's labels change: released, and replaced.
    t.k.ok(&["label", "pod", "stray", "app=gone", "--overwrite"]);
    eventually("stray released", || {
        let p = t.pods("app=gone").into_iter().next()?;
        (!owned_by_job(&p)).then_some(())
    });
    eventually("a replacement", || {
        let p = t.pods("app=crew");
        (p.len() == 2 && p.iter().all(owned_by_job)).then_some(())
    });
}

#[test]
fn daemonset_runs_one_pod_per_eligible_node_and_rolls_updates() {
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("daemonset"));
    for (n, taint) in [("n1", ""), ("n2", ""), ("n3", "dedicated")] {
        let spec = if taint.is_empty() {
            String::new()
        } else {
            format!("spec:\n  taints: [{{key: {taint}, effect: NoSchedule}}]\n")
        };
        t.k.ok_stdin(
            &["create", "-f", "-"],
            &format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {n}}}\n{spec}"),
        );
    }
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec:\n      containers: [{name: c, image: 'busybox:1'}]\n",
    );
    let nodes_of = |t: &Test| -> Vec<String> {
        let mut v: Vec<String> = t
            .pods("app=agent")
            .iter()
            .map(|p| {
                p.spec
                    .as_ref()
                    .unwrap()
                    .affinity
                    .as_ref()
                    .unwrap()
                    .node_affinity
                    .as_ref()
                    .unwrap()
                    .required_during_scheduling_ignored_during_execution
                    .as_ref()
                    .unwrap()
                    .node_selector_terms[0]
                    .match_fields
                    .as_ref()
                    .unwrap()[0]
                    .values
                    .as_ref()
                    .unwrap()[0]
                    .clone()
            })
            .collect();
        v.sort();
        v
    };
    eventually("pods on n1 and n2, not on the tainted n3", || {
        (nodes_of(&t) == ["n1", "n2"]).then_some(())
    });
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Node\nmetadata: {name: n4}\n",
    );
    t.k.ok(&["delete", "node", "n2"]);
    eventually("pods follow the nodes", || {
        (nodes_of(&t) == ["n1", "n4"]).then_some(())
    });
    t.make_all_ready("app=agent");
    eventually("status", || {
        let api: Api<k8s_openapi::api::apps::v1::DaemonSet> =
            Api::namespaced(t.client.clone(), "default");
        let s = t.rt.block_on(api.get("agent")).ok()?.status?;
        (s.desired_number_scheduled == 2
            && s.current_number_scheduled == 2
            && s.number_ready == 2
            && s.updated_number_scheduled == Some(2))
        .then_some(())
    });
    // A template change rolls node by node (maxUnavailable 1): never both nodes without an
    // available pod of either version.
    t.k.ok(&["set", "image", "daemonset/agent", "c=busybox:2"]);
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "rollout did not finish");
        let pods = t.pods("app=agent");
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        assert!(ready >= 1, "both daemon pods down at once");
        let new_ready = pods
            .iter()
            .filter(|p| {
                is_ready(p)
                    && p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("busybox:2")
            })
            .count();
        if new_ready == 2 && pods.len() == 2 {
            break;
        }
        for p in pods.iter().filter(|p| !is_ready(p)) {
            t.make_ready(p);
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let out =
        t.k.ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
}

#[test]
fn a_rollout_resumes_after_pea_control_and_the_controllers_restart() {
    let mut t = Test::start();
    let c = Controllers::start(&t.cp, config("replicaset,deployment"));
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: resume}\nspec:\n  replicas: 3\n  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n  selector: {matchLabels: {app: resume}}\n  template:\n    metadata: {labels: {app: resume}}\n    spec:\n      containers: [{name: c, image: 'busybox:1'}]\n",
    );
    eventually("3 pods", || (t.pods("app=resume").len() == 3).then_some(()));
    t.make_all_ready("app=resume");
    eventually("available", || {
        (t.deployment("resume").status?.available_replicas == Some(3)).then_some(())
    });
    t.k.ok(&["set", "image", "deployment/resume", "c=busybox:2"]);
    // Mid-rollout: the surge pod of the new set exists and is not ready.
    eventually("one new pod", || {
        let new: Vec<Pod> = t
            .pods("app=resume")
            .into_iter()
            .filter(|p| {
                p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("busybox:2")
            })
            .collect();
        (new.len() == 1 && !is_ready(&new[0])).then_some(())
    });
    drop(c);
    t.cp.restart().expect("restart pea-control");
    t.client =
        t.rt.block_on(pea_controllers::client_from_kubeconfig(&t.cp.kubeconfig))
            .expect("client");
    t.k = t.cp.kubectl();
    let _c = Controllers::start(&t.cp, config("replicaset,deployment"));
    let _kubelet = t.hollow_kubelet("app=resume");
    let out =
        t.k.ok(&["rollout", "status", "deployment/resume", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    eventually("3 new pods only", || {
        let pods = t.pods("app=resume");
        (pods.len() == 3
            && pods.iter().all(|p| {
                p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("busybox:2")
            }))
        .then_some(())
    });
    assert_eq!(t.replicasets("app=resume").len(), 2);
}

#[test]
fn finished_jobs_are_deleted_after_their_ttl() {
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("job,ttl-after-finished"));
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: brief}\nspec:\n  ttlSecondsAfterFinished: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n",
    );
    let pod = eventually("the job's pod", || {
        t.pods("job-name=brief").into_iter().next()
    });
    let api: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    t.rt.block_on(api.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    ))
    .expect("finish pod");
    t.k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/brief",
        "--timeout=60s",
    ]);
    eventually("job and its pod deleted", || {
        let gone = !t.k.run(&["get", "job", "brief"]).status.success();
        (gone && t.pods("job-name=brief").is_empty()).then_some(())
    });
}

#[test]
fn replicationcontroller_is_served_scaled_described_and_adopts() {
    use k8s_openapi::api::core::v1::ReplicationController;
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("replicationcontroller"));
    // kube's validation: the selector must match the template's labels.
    let err = t.k.fails_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: bad}\nspec:\n  selector: {app: other}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: busybox}]\n",
    );
    assert!(
        err.contains("`selector` does not match template `labels`"),
        "{err}"
    );
    // An orphan that matches is adopted.
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: stray\n  labels: {app: web}\nspec:\n  containers:\n  - name: c\n    image: busybox\n",
    );
    // No selector, labels or replicas: kube defaults them from the template.
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: web}\nspec:\n  replicas: 3\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: c, image: busybox}]\n",
    );
    let api: Api<ReplicationController> = Api::namespaced(t.client.clone(), "default");
    let rc = t.rt.block_on(api.get("web")).expect("get rc");
    let want: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
    assert_eq!(rc.spec.as_ref().unwrap().selector.as_ref(), Some(&want));
    assert_eq!(rc.metadata.labels.as_ref(), Some(&want));
    let pods = eventually("three pods", || {
        let p = t.pods("app=web");
        (p.len() == 3).then_some(p)
    });
    for p in &pods {
        let r = p.owner_references();
        assert_eq!(r.len(), 1, "{:?}", p.metadata);
        assert_eq!(
            (
                r[0].api_version.as_str(),
                r[0].kind.as_str(),
                r[0].uid.as_str()
            ),
            ("v1", "ReplicationController", rc.uid().unwrap().as_str())
        );
    }
    assert!(pods.iter().any(|p| p.name_any() == "stray"), "adopted");
    t.make_all_ready("app=web");
    eventually("status with 3 ready and available", || {
        let s = t.rt.block_on(api.get("web")).ok()?.status?;
        (s.replicas == 3 && s.ready_replicas == Some(3) && s.available_replicas == Some(3))
            .then_some(())
    });
    let out = t.k.ok(&["get", "rc", "-o", "wide"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ],
        "{out}"
    );
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        (row[0], row[1], row[2], row[3], row[7]),
        ("web", "3", "3", "3", "app=web"),
        "{out}"
    );
    t.k.ok(&["scale", "rc", "web", "--replicas=1"]);
    eventually("scaled to 1", || {
        (t.pods("app=web").len() == 1).then_some(())
    });
    eventually("status 1", || {
        (t.rt.block_on(api.get("web")).ok()?.status?.replicas == 1).then_some(())
    });
    let out = t.k.ok(&["describe", "rc", "web"]);
    for want in [
        "Selector:     app=web",
        "Replicas:     1 current / 1 desired",
        "Pods Status:  1 Running",
        "SuccessfulCreate",
        "SuccessfulDelete",
    ] {
        assert!(out.contains(want), "{want:?} missing in:\n{out}");
    }
    t.k.ok(&["delete", "rc", "web"]);
    eventually("pods gone with it", || {
        t.pods("app=web").is_empty().then_some(())
    });
}

/// Pods of the `agent` DaemonSet with their image, per node.
fn daemon_images(t: &Test) -> Vec<(String, String, bool)> {
    let mut v: Vec<(String, String, bool)> = t
        .pods("app=agent")
        .iter()
        .map(|p| {
            let spec = p.spec.as_ref().unwrap();
            let node = spec
                .affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .and_then(|s| s.node_selector_terms[0].match_fields.as_ref())
                .and_then(|f| f[0].values.as_ref())
                .map(|v| v[0].clone())
                .unwrap_or_default();
            (
                node,
                spec.containers[0].image.clone().unwrap_or_default(),
                is_ready(p),
            )
        })
        .collect();
    v.sort();
    v
}

/// The `agent` DaemonSet's ControllerRevisions: (revision, hash label, image).
fn daemon_revisions(t: &Test) -> Vec<(i64, String, String)> {
    let api: Api<k8s_openapi::api::apps::v1::ControllerRevision> =
        Api::namespaced(t.client.clone(), "default");
    let mut v: Vec<(i64, String, String)> =
        t.rt.block_on(api.list(&ListParams::default().labels("app=agent")))
            .expect("list revisions")
            .items
            .into_iter()
            .map(|r| {
                let image = r
                    .data
                    .as_ref()
                    .and_then(|d| {
                        d.0.pointer("/spec/template/spec/containers/0/image")
                            .and_then(|i| i.as_str())
                            .map(String::from)
                    })
                    .unwrap_or_default();
                (
                    r.revision,
                    r.labels()
                        .get("controller-revision-hash")
                        .cloned()
                        .unwrap_or_default(),
                    image,
                )
            })
            .collect();
    v.sort();
    v
}

/// Makes the agent's pods ready one poll at a time until every node runs `image` ready,
/// checking after each poll that `check(pods)` holds; returns the most pods seen at once.
fn roll_daemon(t: &Test, image: &str, check: impl Fn(&[(String, String, bool)])) -> usize {
    let deadline = Instant::now() + WAIT;
    let mut most = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "rollout to {image} did not finish"
        );
        let pods = daemon_images(t);
        check(&pods);
        most = most.max(pods.len());
        if pods.len() == 3 && pods.iter().all(|(_, i, r)| i == image && *r) {
            return most;
        }
        for p in t.pods("app=agent").iter().filter(|p| !is_ready(p)) {
            t.make_ready(p);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn daemonset_revisions_surge_rollout_history_undo_and_on_delete() {
    let t = Test::start();
    let _c = Controllers::start(&t.cp, config("daemonset"));
    for n in ["n1", "n2", "n3"] {
        t.k.ok_stdin(
            &["create", "-f", "-"],
            &format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {n}}}\n"),
        );
    }
    t.k.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec:\n      containers: [{name: c, image: 'busybox:1'}]\n",
    );
    roll_daemon(&t, "busybox:1", |_| {});
    let revs = daemon_revisions(&t);
    assert_eq!(revs.len(), 1, "{revs:?}");
    assert_eq!((revs[0].0, revs[0].2.as_str()), (1, "busybox:1"));
    for p in t.pods("app=agent") {
        assert_eq!(
            p.labels().get("controller-revision-hash"),
            Some(&revs[0].1),
            "pods carry their revision's hash"
        );
    }
    // maxSurge 1, maxUnavailable 0: a new pod starts beside an old one, the old one goes once
    // the new one is available, so every node keeps a ready pod and at most 4 pods exist.
    t.k.ok(&["set", "image", "daemonset/agent", "c=busybox:2"]);
    let most = roll_daemon(&t, "busybox:2", |pods| {
        let nodes_ready: BTreeSet<&str> = pods
            .iter()
            .filter(|(_, _, r)| *r)
            .map(|(n, _, _)| n.as_str())
            .collect();
        assert_eq!(nodes_ready.len(), 3, "a node lost its ready pod: {pods:?}");
        assert!(pods.len() <= 4, "more than maxSurge extra pods: {pods:?}");
    });
    assert_eq!(most, 4, "the rollout surged");
    let out =
        t.k.ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let revs = daemon_revisions(&t);
    assert_eq!(
        revs.iter().map(|r| (r.0, r.2.as_str())).collect::<Vec<_>>(),
        [(1, "busybox:1"), (2, "busybox:2")]
    );
    let out = t.k.ok(&["rollout", "history", "daemonset/agent"]);
    let numbers: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(numbers, ["1", "2"], "{out}");
    let out =
        t.k.ok(&["rollout", "history", "daemonset/agent", "--revision=1"]);
    assert!(out.contains("busybox:1"), "{out}");

    // Undo: kubectl patches the template back from revision 1, which becomes revision 3.
    let out = t.k.ok(&["rollout", "undo", "daemonset/agent"]);
    assert!(out.contains("rolled back"), "{out}");
    roll_daemon(&t, "busybox:1", |_| {});
    eventually("revision 1 renumbered 3", || {
        let revs = daemon_revisions(&t);
        (revs.iter().map(|r| (r.0, r.2.as_str())).collect::<Vec<_>>()
            == [(2, "busybox:2"), (3, "busybox:1")])
        .then_some(())
    });

    // OnDelete: a new template waits until a pod is deleted by hand; revisionHistoryLimit 0
    // prunes the revision no pod uses any more.
    t.k.ok(&[
        "patch",
        "daemonset/agent",
        "--type=merge",
        "-p",
        r#"{"spec":{"revisionHistoryLimit":0,"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}"#,
    ]);
    t.k.ok(&["set", "image", "daemonset/agent", "c=busybox:3"]);
    eventually("a revision for busybox:3, the unused one pruned", || {
        let revs = daemon_revisions(&t);
        (revs.iter().map(|r| (r.0, r.2.as_str())).collect::<Vec<_>>()
            == [(3, "busybox:1"), (4, "busybox:3")])
        .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        daemon_images(&t).iter().all(|(_, i, _)| i == "busybox:1"),
        "OnDelete leaves running pods alone"
    );
    let victim = t.pods("app=agent").remove(0);
    t.k.ok(&["delete", "pod", &victim.name_any(), "--wait=false"]);
    eventually("the replacement runs the new template", || {
        let pods = daemon_images(&t);
        (pods.len() == 3 && pods.iter().filter(|(_, i, _)| i == "busybox:3").count() == 1)
            .then_some(())
    });
    let err =
        t.k.fails(&["rollout", "status", "daemonset/agent", "--timeout=5s"]);
    assert!(err.contains("only available for RollingUpdate"), "{err}");
}
