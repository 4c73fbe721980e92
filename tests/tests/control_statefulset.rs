//! The StatefulSet and CronJob controllers against a real pea-control, driven by the real kubectl
//! 1.32. As in control_controllers.rs there is no kubelet: the test plays a hollow kubelet that
//! writes pod status (Running, Ready, Succeeded) through the API when it wants a pod to move on.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use pea_controllers::ControllersConfig;
use pea_tests::control::{Backend, ControlPlane, Kubectl};
use serde_json::json;

/// Bound of every wait; generous because the machine has 2 shared cores.
const WAIT: Duration = Duration::from_secs(60);

/// pea-control, the named controllers on their own runtime, and the test's client.
struct Test {
    _cp: ControlPlane,
    controllers: Option<tokio::runtime::Runtime>,
    rt: tokio::runtime::Runtime,
    client: Client,
    k: Kubectl,
}

impl Drop for Test {
    fn drop(&mut self) {
        if let Some(rt) = self.controllers.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Test {
    fn start(controllers: &str) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let cp = ControlPlane::start(Backend::Embedded).expect("pea-control");
        let crt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("controllers runtime");
        let mut config = ControllersConfig::default();
        config.set_controllers(controllers);
        config.leader_elect = false;
        let kubeconfig = cp.kubeconfig.clone();
        crt.spawn(async move {
            // Each controller as its own ServiceAccount, as pea-control runs them.
            let clients = pea_controllers::clients_from_kubeconfig(&kubeconfig, true)
                .await
                .expect("clients");
            if let Err(e) = pea_controllers::run(clients, config).await {
                panic!("controllers stopped: {e}");
            }
        });
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
            _cp: cp,
            controllers: Some(crt),
            rt,
            client,
            k,
        }
    }

    fn pods(&self) -> BTreeMap<String, Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        self.rt
            .block_on(api.list(&ListParams::default()))
            .expect("list pods")
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| (p.name_any(), p))
            .collect()
    }

    fn sts(&self, name: &str) -> StatefulSet {
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), "default");
        self.rt.block_on(api.get(name)).expect("get statefulset")
    }

    /// The hollow kubelet: `phase` (and Ready when Running) on one pod.
    fn set_phase(&self, pod: &str, phase: &str) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        let now = k8s_openapi::chrono::Utc::now()
            .to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true);
        let ready = if phase == "Running" { "True" } else { "False" };
        let patch = json!({"status": {"phase": phase, "podIP": "10.244.0.9",
            "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": now}]}});
        match self
            .rt
            .block_on(api.patch_status(pod, &PatchParams::default(), &Patch::Merge(patch)))
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => panic!("pod {pod} {phase}: {e}"),
        }
    }

    /// Makes every pod whose name starts with `prefix` Running and Ready.
    fn ready_all(&self, prefix: &str) {
        for (n, p) in self.pods() {
            if n.starts_with(prefix) && !is_ready(&p) {
                self.set_phase(&n, "Running");
            }
        }
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn image(p: &Pod) -> String {
    p.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

/// Polls `f` until it returns Some, for at most `bound`.
fn within<T>(bound: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    within(WAIT, what, f)
}

const WEB: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  replicas: 3
  serviceName: web-headless
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: "busybox:1"}]
"#;

const CLAIMS: &str = r#"  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Mi}}
"#;

#[test]
fn statefulset_orders_pods_rolls_with_a_partition_and_keeps_claims() {
    let t = Test::start("statefulset");
    // Each pod gets a PersistentVolumeClaim per template (pea-control serves them).
    let with_claims =
        t.k.ok(&["api-resources", "--api-group="])
            .lines()
            .any(|l| l.starts_with("persistentvolumeclaims"));
    assert!(with_claims, "pea-control serves persistentvolumeclaims");
    let manifest = format!("{WEB}{CLAIMS}");
    t.k.ok_stdin(&["create", "-f", "-"], &manifest);

    // OrderedReady: web-1 only after web-0 is Running and Ready, web-2 after web-1.
    for n in 0..3 {
        let name = format!("web-{n}");
        eventually(&format!("{name} created"), || {
            t.pods().get(&name).map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(700));
        let pods = t.pods();
        assert!(
            !pods.contains_key(&format!("web-{}", n + 1)),
            "web-{} created before {name} was ready",
            n + 1
        );
        t.set_phase(&name, "Running");
    }
    let pods = t.pods();
    let p2 = &pods["web-2"];
    let spec = p2.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-2"));
    assert_eq!(spec.subdomain.as_deref(), Some("web-headless"));
    assert_eq!(p2.labels()["statefulset.kubernetes.io/pod-name"], "web-2");
    assert_eq!(p2.labels()["apps.kubernetes.io/pod-index"], "2");
    let out =
        t.k.ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    let st = t.sts("web").status.unwrap();
    let rev1 = st.update_revision.clone().unwrap();
    assert_eq!(st.current_revision.as_deref(), Some(rev1.as_str()));
    assert_eq!(
        (
            st.replicas,
            st.ready_replicas,
            st.current_replicas,
            st.updated_replicas
        ),
        (3, Some(3), Some(3), Some(3))
    );
    assert_eq!(st.collision_count, Some(0));
    assert_eq!(p2.labels()["controller-revision-hash"], rev1);
    let revs = t.k.ok(&["get", "controllerrevisions", "-o", "name"]);
    assert_eq!(revs.trim(), format!("controllerrevision.apps/{rev1}"));

    let claim_uid = |name: &str| -> String {
        t.k.ok(&["get", "pvc", name, "-o", "jsonpath={.metadata.uid}"])
    };
    let claims_before = if with_claims {
        let uids: Vec<String> = (0..3)
            .map(|n| claim_uid(&format!("data-web-{n}")))
            .collect();
        let vol = p2.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0].clone();
        assert_eq!(vol.name, "data");
        assert_eq!(
            vol.persistent_volume_claim.unwrap().claim_name,
            "data-web-2"
        );
        uids
    } else {
        Vec::new()
    };

    // Rolling update with partition 1: web-2 then web-1 get busybox:2, web-0 stays.
    t.k.ok(&[
        "patch",
        "statefulset",
        "web",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":1}}}}"#,
    ]);
    t.k.ok(&["set", "image", "statefulset/web", "c=busybox:2"]);
    let mut saw_order_violation = false;
    eventually("web-1 and web-2 updated", || {
        t.ready_all("web-");
        let pods = t.pods();
        let new = |n: &str| pods.get(n).map(image).as_deref() == Some("busybox:2");
        if new("web-1") && !new("web-2") {
            saw_order_violation = true;
        }
        (new("web-1")
            && new("web-2")
            && pods.get("web-1").is_some_and(is_ready)
            && pods.get("web-2").is_some_and(is_ready))
        .then_some(())
    });
    assert!(!saw_order_violation, "web-1 was updated before web-2");
    t.ready_all("web-");
    let out =
        t.k.ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    assert!(
        out.contains("partitioned roll out complete: 2 new pods have been updated"),
        "{out}"
    );
    assert_eq!(
        image(&t.pods()["web-0"]),
        "busybox:1",
        "below the partition"
    );
    let st = t.sts("web").status.unwrap();
    assert_eq!(st.current_revision.as_deref(), Some(rev1.as_str()));
    assert_ne!(st.update_revision.as_deref(), Some(rev1.as_str()));

    // Partition 0: web-0 follows and the update revision becomes the current one.
    t.k.ok(&[
        "patch",
        "statefulset",
        "web",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    eventually("web-0 updated and the rollout complete", || {
        t.ready_all("web-");
        let st = t.sts("web").status?;
        (image(t.pods().get("web-0")?) == "busybox:2"
            && st.current_revision == st.update_revision
            && st.ready_replicas == Some(3))
        .then_some(())
    });
    let history = t.k.ok(&["rollout", "history", "statefulset/web"]);
    assert!(history.contains("REVISION"), "{history}");
    let numbers: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(numbers, ["1", "2"], "{history}");
    let rev2 =
        t.k.ok(&["rollout", "history", "statefulset/web", "--revision=2"]);
    assert!(rev2.contains("busybox:2"), "{rev2}");

    // Undo: back to busybox:1, which becomes revision 3 (the same ControllerRevision).
    t.k.ok(&["rollout", "undo", "statefulset/web"]);
    eventually("rolled back to busybox:1", || {
        t.ready_all("web-");
        let pods = t.pods();
        let st = t.sts("web").status?;
        ((0..3).all(|n| pods.get(&format!("web-{n}")).map(image).as_deref() == Some("busybox:1"))
            && st.current_revision.as_deref() == Some(rev1.as_str())
            && st.update_revision.as_deref() == Some(rev1.as_str()))
        .then_some(())
    });
    let history = t.k.ok(&["rollout", "history", "statefulset/web"]);
    let numbers: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(numbers, ["2", "3"], "{history}");

    // A deleted pod comes back under the same name, with the same claim.
    let old_uid = t.pods()["web-1"].metadata.uid.clone();
    t.k.ok(&["delete", "pod", "web-1", "--wait=false"]);
    eventually("web-1 recreated", || {
        t.ready_all("web-");
        let p = t.pods().get("web-1").cloned()?;
        (p.metadata.uid != old_uid).then_some(())
    });
    if with_claims {
        assert_eq!(
            claim_uid("data-web-1"),
            claims_before[1],
            "the claim survived"
        );
    }

    // Scale down: web-2 goes before web-1; claims stay (Retain).
    t.k.ok(&["scale", "statefulset/web", "--replicas=1"]);
    let mut early = false;
    eventually("scaled down to web-0", || {
        let pods = t.pods();
        if !pods.contains_key("web-1") && pods.contains_key("web-2") {
            early = true;
        }
        (pods.contains_key("web-0") && !pods.contains_key("web-1") && !pods.contains_key("web-2"))
            .then_some(())
    });
    assert!(!early, "web-1 was removed while web-2 still ran");
    if with_claims {
        assert_eq!(claim_uid("data-web-2"), claims_before[2]);
    }
    let st = t.sts("web").status.unwrap();
    assert_eq!((st.replicas, st.ready_replicas), (1, Some(1)));

    // Parallel with ordinals.start 5: all pods at once, nobody ready.
    t.k.ok_stdin(
        &["create", "-f", "-"],
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {name: par}
spec:
  replicas: 3
  podManagementPolicy: Parallel
  ordinals: {start: 5}
  serviceName: par
  selector: {matchLabels: {app: par}}
  template:
    metadata: {labels: {app: par}}
    spec:
      containers: [{name: c, image: busybox}]
"#,
    );
    eventually("par-5..7 created together", || {
        let pods = t.pods();
        (["par-5", "par-6", "par-7"]
            .iter()
            .all(|n| pods.contains_key(*n)))
        .then_some(())
    });
    assert!(!t.pods().contains_key("par-0"));
}

#[test]
fn cronjob_starts_jobs_on_schedule_and_tracks_them() {
    let t = Test::start("cronjob,job");
    t.k.ok_stdin(
        &["create", "-f", "-"],
        r#"apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "* * * * *"
  suspend: true
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: c, image: busybox}]
"#,
    );
    let created = k8s_openapi::chrono::Utc::now();
    // The time zone must be an explicit IANA name, and a TZ prefix is kube's error too.
    let err = t.k.fails(&[
        "patch",
        "cronjob",
        "tick",
        "-p",
        r#"{"spec":{"timeZone":"Mars/Olympus"}}"#,
    ]);
    assert!(err.contains("spec.timeZone"), "{err}");
    let err = t.k.fails(&[
        "patch",
        "cronjob",
        "tick",
        "-p",
        r#"{"spec":{"schedule":"TZ=UTC * * * * *"}}"#,
    ]);
    assert!(
        err.contains("cannot use TZ or CRON_TZ in schedule"),
        "{err}"
    );

    // As if the controller had been down for three minutes: the last run was 3 minutes ago.
    let minute = |t: k8s_openapi::chrono::DateTime<k8s_openapi::chrono::Utc>| t.timestamp() / 60;
    let last =
        k8s_openapi::chrono::DateTime::from_timestamp((minute(created) - 3) * 60, 0).unwrap();
    t.k.ok(&[
        "patch",
        "cronjob",
        "tick",
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({"status": {"lastScheduleTime": last.to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true)}}).to_string(),
    ]);
    t.k.ok(&[
        "patch",
        "cronjob",
        "tick",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    // Only the most recent missed minute runs, at once.
    let jobs_api: Api<Job> = Api::namespaced(t.client.clone(), "default");
    let jobs = || -> Vec<Job> {
        t.rt.block_on(jobs_api.list(&ListParams::default()))
            .expect("list jobs")
            .items
    };
    let first = within(Duration::from_secs(20), "the missed run's Job", || {
        jobs().into_iter().next()
    });
    let n: i64 = first
        .name_any()
        .strip_prefix("tick-")
        .unwrap()
        .parse()
        .unwrap();
    let now = minute(k8s_openapi::chrono::Utc::now());
    assert!(
        (minute(created)..=now).contains(&n),
        "{} is not a minute between creation and now",
        first.name_any()
    );
    assert_eq!(jobs().len(), 1, "only the most recent missed time runs");
    assert_eq!(
        first.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        k8s_openapi::chrono::DateTime::from_timestamp(n * 60, 0)
            .unwrap()
            .to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true)
    );
    let cj_api: Api<CronJob> = Api::namespaced(t.client.clone(), "default");
    let st = eventually("status.active", || {
        let s = t.rt.block_on(cj_api.get("tick")).ok()?.status?;
        (s.active.as_ref()?.len() == 1).then_some(s)
    });
    assert_eq!(st.last_schedule_time.unwrap().0.timestamp(), n * 60);

    // The hollow kubelet finishes the Job's pod: the Job completes and leaves status.active.
    let pod = eventually("the job's pod", || {
        t.pods()
            .into_values()
            .find(|p| p.labels().get("job-name") == Some(&first.name_any()))
    });
    t.set_phase(&pod.name_any(), "Succeeded");
    let st = eventually("the run completed", || {
        let s = t.rt.block_on(cj_api.get("tick")).ok()?.status?;
        (s.active.is_none() && s.last_successful_time.is_some()).then_some(s)
    });
    assert!(st.last_successful_time.is_some());
    let events = t.k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=tick",
    ]);
    assert!(events.contains("SuccessfulCreate"), "{events}");
    assert!(events.contains("SawCompletedJob"), "{events}");

    // The next minute's run starts on its own (the controller wakes itself up), and with
    // successfulJobsHistoryLimit 1 the first Job goes once the second succeeds.
    let second = within(Duration::from_secs(75), "the next minute's Job", || {
        jobs()
            .into_iter()
            .find(|j| j.name_any() != first.name_any())
    });
    let m: i64 = second
        .name_any()
        .strip_prefix("tick-")
        .unwrap()
        .parse()
        .unwrap();
    assert!(m > n, "{} after {}", second.name_any(), first.name_any());
    let pod = eventually("the second job's pod", || {
        t.pods()
            .into_values()
            .find(|p| p.labels().get("job-name") == Some(&second.name_any()))
    });
    t.set_phase(&pod.name_any(), "Succeeded");
    eventually("the first Job deleted by the history limit", || {
        let names: Vec<String> = jobs().iter().map(|j| j.name_any()).collect();
        (!names.contains(&first.name_any()) && names.contains(&second.name_any())).then_some(())
    });
}
