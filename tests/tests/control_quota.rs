//! Namespace policy against a real pea-control with the real kubectl 1.32: PriorityClasses
//! and Priority admission, ResourceQuota admission with the resourcequota controller,
//! LimitRanger. No kubelet is needed: the test plays the hollow kubelet where a pod must
//! finish.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use pea_controllers::ControllersConfig;
use pea_tests::control::{Backend, ControlPlane, Kubectl};
use serde_json::json;

/// Bound of every wait; generous because the machine has 2 shared cores.
const WAIT: Duration = Duration::from_secs(60);

/// pea-control, optionally the named controllers on their own runtime, and a client.
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
    fn start(controllers: Option<&str>) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let cp = ControlPlane::start(Backend::Embedded).expect("pea-control");
        let controllers = controllers.map(|names| {
            let crt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("controllers runtime");
            let mut config = ControllersConfig::default();
            config.set_controllers(names);
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
            crt
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
            controllers,
            rt,
            client,
            k,
        }
    }

    fn apply(&self, manifest: serde_json::Value) -> String {
        self.k
            .ok_stdin(&["apply", "-f", "-"], &manifest.to_string())
    }

    fn create_fails(&self, manifest: serde_json::Value) -> String {
        self.k
            .fails_stdin(&["create", "-f", "-"], &manifest.to_string())
    }

    fn jsonpath(&self, args: &[&str], path: &str) -> String {
        let arg = format!("jsonpath={path}");
        let mut all = args.to_vec();
        all.extend(["-o", arg.as_str()]);
        self.k.ok(&all)
    }

    /// Polls `f` until it holds, at most [`WAIT`].
    fn until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn pod(name: &str, ns: &str, resources: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]}})
}

#[test]
fn priority_classes_resolve_into_pod_priority() {
    let t = Test::start(None);
    let classes = t.k.ok(&["get", "priorityclasses"]);
    assert!(
        classes.contains("system-node-critical") && classes.contains("2000001000"),
        "{classes}"
    );
    assert!(classes.contains("system-cluster-critical"), "{classes}");
    // kubectl sends these as protobuf.
    t.k.ok(&[
        "create",
        "priorityclass",
        "high",
        "--value=1000",
        "--description=batch",
    ]);
    t.k.ok(&[
        "create",
        "priorityclass",
        "fallback",
        "--value=10",
        "--global-default",
    ]);
    let second = t.k.fails(&[
        "create",
        "priorityclass",
        "other",
        "--value=5",
        "--global-default",
    ]);
    assert!(
        second.contains(
            "PriorityClass fallback is already marked as default. Only one default can exist"
        ),
        "{second}"
    );
    let reserved =
        t.k.fails(&["create", "priorityclass", "system-mine", "--value=5"]);
    assert!(
        reserved.contains("reserved for system use only"),
        "{reserved}"
    );
    let too_high =
        t.k.fails(&["create", "priorityclass", "huge", "--value=1000000001"]);
    assert!(
        too_high.contains("maximum allowed value of a user defined priority is 1000000000"),
        "{too_high}"
    );

    let mut p = pod("classy", "default", json!({}));
    p["spec"]["priorityClassName"] = json!("high");
    t.apply(p);
    assert_eq!(
        t.jsonpath(
            &["get", "pod", "classy"],
            "{.spec.priority} {.spec.preemptionPolicy}"
        ),
        "1000 PreemptLowerPriority"
    );
    t.apply(pod("plain", "default", json!({})));
    assert_eq!(
        t.jsonpath(
            &["get", "pod", "plain"],
            "{.spec.priority} {.spec.priorityClassName}"
        ),
        "10 fallback"
    );
    let mut unknown = pod("lost", "default", json!({}));
    unknown["spec"]["priorityClassName"] = json!("nope");
    let err = t.create_fails(unknown);
    assert!(
        err.contains("no PriorityClass with name nope was found"),
        "{err}"
    );
    let mut claims = pod("claims", "default", json!({}));
    claims["spec"]["priorityClassName"] = json!("high");
    claims["spec"]["priority"] = json!(5);
    let err = t.create_fails(claims);
    assert!(
        err.contains("the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000"),
        "{err}"
    );
    // A class's value is fixed; the system classes stay.
    let err = t.k.fails(&[
        "patch",
        "priorityclass",
        "high",
        "--type=merge",
        "-p",
        r#"{"value": 7}"#,
    ]);
    assert!(err.contains("may not be changed in an update"), "{err}");
    let err =
        t.k.fails(&["delete", "priorityclass", "system-node-critical"]);
    assert!(
        err.contains("this is a system priority class and cannot be deleted"),
        "{err}"
    );
    // A pod keeps its priority through a label change.
    t.k.ok(&["label", "pod", "classy", "tier=batch"]);
    assert_eq!(
        t.jsonpath(&["get", "pod", "classy"], "{.spec.priority}"),
        "1000"
    );
}

#[test]
fn resource_quotas_refuse_charge_and_recalculate() {
    let t = Test::start(Some("resourcequota"));
    // kubectl sends this as protobuf.
    t.k.ok(&[
        "create",
        "quota",
        "q",
        // services=2: the namespace already holds the API server's `kubernetes` Service.
        "--hard=pods=2,requests.cpu=2,limits.cpu=4,services=2,requests.storage=1Gi,count/configmaps=4",
    ]);
    t.until("the quota's status", || {
        t.jsonpath(&["get", "quota", "q"], "{.status.used.pods}") == "0"
    });
    assert_eq!(
        t.jsonpath(&["get", "quota", "q"], "{.status.hard.pods}"),
        "2"
    );
    // Quota'd cpu must be set by every container (kube's backward-compatible rule).
    let err = t.create_fails(pod("bare", "default", json!({})));
    assert!(
        err.contains("pods \"bare\" is forbidden: failed quota: q: must specify limits.cpu for: c; requests.cpu for: c"),
        "{err}"
    );
    let sized = json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}});
    t.apply(pod("a", "default", sized.clone()));
    t.apply(pod("b", "default", sized.clone()));
    assert_eq!(
        t.jsonpath(
            &["get", "quota", "q"],
            "{.status.used.pods} {.status.used.requests\\.cpu} {.status.used.limits\\.cpu}"
        ),
        "2 1 2"
    );
    let err = t.create_fails(pod("c", "default", sized.clone()));
    assert!(
        err.contains("exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"),
        "{err}"
    );
    let describe = t.k.ok(&["describe", "quota", "q"]);
    assert!(
        describe
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["pods", "2", "2"]),
        "{describe}"
    );
    // A finished pod frees its share; a deleted one too (the controller recalculates).
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(t.client.clone(), "default");
    t.rt.block_on(pods.patch_status(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    ))
    .expect("pod a succeeded");
    t.until("pod a's share freed", || {
        t.jsonpath(&["get", "quota", "q"], "{.status.used.pods}") == "1"
    });
    t.apply(pod("c", "default", sized));
    t.k.ok(&["delete", "pod", "b", "--grace-period=0", "--force"]);
    t.until("pod b's share freed", || {
        t.jsonpath(&["get", "quota", "q"], "{.status.used.pods}") == "1"
    });
    // Services and storage.
    t.k.ok(&["create", "service", "clusterip", "s1", "--tcp=80:80"]);
    let err =
        t.k.fails(&["create", "service", "clusterip", "s2", "--tcp=80:80"]);
    assert!(
        err.contains(
            "exceeded quota: q, requested: services=1, used: services=2, limited: services=2"
        ),
        "{err}"
    );
    let claim = |name: &str, size: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "none",
                "resources": {"requests": {"storage": size}}}})
    };
    let err = t.create_fails(claim("big", "2Gi"));
    assert!(
        err.contains("exceeded quota: q, requested: requests.storage=2Gi, used: requests.storage=0, limited: requests.storage=1Gi"),
        "{err}"
    );
    t.apply(claim("small", "512Mi"));
    assert_eq!(
        t.jsonpath(&["get", "quota", "q"], "{.status.used.requests\\.storage}"),
        "512Mi"
    );
    // Concurrent creates cannot overshoot: 8 configmaps at once against a limit of 4
    // (kube-root-ca.crt is not there: no root-ca publisher runs here).
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let created = t.rt.block_on(async {
        let tries = (0..8).map(|i| {
            let cms = cms.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": format!("cm{i}")}, "data": {"i": i.to_string()}}),
                )
                .expect("configmap");
                cms.create(&PostParams::default(), &cm).await
            }
        });
        futures_util::future::join_all(tries).await
    });
    let ok = created.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 4, "{created:?}");
    for r in created.iter().filter_map(|r| r.as_ref().err()) {
        assert!(r.to_string().contains("exceeded quota: q"), "{r}");
    }
    assert_eq!(
        t.jsonpath(&["get", "quota", "q"], "{.status.used.count/configmaps}"),
        "4"
    );
}

#[test]
fn scoped_quotas_select_pods_by_class() {
    let t = Test::start(Some("resourcequota"));
    t.k.ok(&["create", "namespace", "scoped"]);
    t.apply(json!({"apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "besteffort", "namespace": "scoped"},
        "spec": {"hard": {"pods": "1"}, "scopes": ["BestEffort"]}}));
    let err = t.create_fails(json!({"apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "bad", "namespace": "scoped"},
        "spec": {"hard": {"requests.cpu": "1"}, "scopes": ["BestEffort"]}}));
    assert!(
        err.contains("unsupported scope applied to resource"),
        "{err}"
    );
    t.until("the scoped quota's status", || {
        t.jsonpath(
            &["get", "quota", "besteffort", "-n", "scoped"],
            "{.status.used.pods}",
        ) == "0"
    });
    t.apply(pod("be1", "scoped", json!({})));
    let err = t.create_fails(pod("be2", "scoped", json!({})));
    assert!(
        err.contains(
            "exceeded quota: besteffort, requested: pods=1, used: pods=1, limited: pods=1"
        ),
        "{err}"
    );
    // Not BestEffort: the scope does not select it.
    t.apply(pod("burst", "scoped", json!({"requests": {"cpu": "100m"}})));
}

#[test]
fn limit_ranges_default_and_bound_containers_and_claims() {
    let t = Test::start(None);
    t.apply(
        json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr"},
        "spec": {"limits": [
            {"type": "Container", "max": {"cpu": "1"}, "defaultRequest": {"cpu": "100m"},
             "min": {"memory": "4Mi"}, "default": {"memory": "64Mi"}},
            {"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}}]}}),
    );
    // kube's defaulting of the range itself: default from max, defaultRequest from default.
    assert_eq!(
        t.jsonpath(
            &["get", "limits", "lr"],
            "{.spec.limits[0].default.cpu} {.spec.limits[0].defaultRequest.memory}"
        ),
        "1 64Mi"
    );
    t.apply(pod("defaulted", "default", json!({})));
    assert_eq!(
        t.jsonpath(&["get", "pod", "defaulted"], "{.spec.containers[0].resources.requests.cpu} {.spec.containers[0].resources.limits.cpu} {.spec.containers[0].resources.limits.memory} {.status.qosClass}"),
        "100m 1 64Mi Burstable"
    );
    let note = t.jsonpath(
        &["get", "pod", "defaulted"],
        "{.metadata.annotations.kubernetes\\.io/limit-ranger}",
    );
    assert!(note.starts_with("LimitRanger plugin set:"), "{note}");
    let err = t.create_fails(pod("big", "default", json!({"limits": {"cpu": "2"}})));
    assert!(
        err.contains(
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
        ),
        "{err}"
    );
    let err = t.create_fails(pod(
        "tiny",
        "default",
        json!({"requests": {"memory": "1Mi"}}),
    ));
    assert!(
        err.contains("minimum memory usage per Container is 4Mi, but request is 1Mi"),
        "{err}"
    );
    let err = t.create_fails(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "huge"}, "spec": {"accessModes": ["ReadWriteOnce"],
            "storageClassName": "none", "resources": {"requests": {"storage": "2Gi"}}}}));
    assert!(
        err.contains("maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 2Gi"),
        "{err}"
    );
    let err = t.create_fails(
        json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "bad"},
        "spec": {"limits": [{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}}),
    );
    assert!(
        err.contains("min value 2 is greater than max value 1"),
        "{err}"
    );
    let listed = t.k.ok(&["get", "limitranges"]);
    assert!(listed.contains("lr"), "{listed}");
}

#[test]
fn claims_in_use_stay_until_their_pods_are_gone() {
    let t = Test::start(Some("pvc-protection"));
    t.apply(
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "none",
            "resources": {"requests": {"storage": "1Gi"}}}}),
    );
    assert_eq!(
        t.jsonpath(&["get", "pvc", "data"], "{.metadata.finalizers}"),
        r#"["kubernetes.io/pvc-protection"]"#
    );
    let mut user = pod("user", "default", json!({}));
    user["spec"]["volumes"] =
        json!([{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]);
    t.apply(user);
    t.k.ok(&["delete", "pvc", "data", "--wait=false"]);
    // Held while the (Pending, so not terminated) pod uses it; the controller had time to look.
    std::thread::sleep(Duration::from_secs(2));
    let held = t.jsonpath(
        &["get", "pvc", "data"],
        "{.metadata.deletionTimestamp} {.metadata.finalizers}",
    );
    assert!(
        held.contains("kubernetes.io/pvc-protection") && !held.starts_with(' '),
        "{held}"
    );
    t.k.ok(&["delete", "pod", "user", "--grace-period=0", "--force"]);
    t.until("the claim released", || {
        !t.k.run(&["get", "pvc", "data"]).status.success()
    });
    // A volume is protected while Bound only: an Available one goes at once.
    t.apply(
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/tmp/pea-never-mounted"}}}),
    );
    assert_eq!(
        t.jsonpath(&["get", "pv", "pv1"], "{.metadata.finalizers}"),
        r#"["kubernetes.io/pv-protection"]"#
    );
    t.k.ok(&["delete", "pv", "pv1", "--wait=false"]);
    t.until("the unbound volume deleted", || {
        !t.k.run(&["get", "pv", "pv1"]).status.success()
    });
}

#[test]
fn quota_charges_updates_that_use_more() {
    let t = Test::start(Some("resourcequota"));
    t.k.ok(&[
        "create",
        "quota",
        "q",
        "--hard=services.nodeports=1,services.loadbalancers=0,requests.storage=1Gi",
    ]);
    t.until("the quota's status", || {
        t.jsonpath(
            &["get", "quota", "q"],
            "{.status.used.services\\.nodeports}",
        ) == "0"
    });
    // A ClusterIP Service costs no node port; turning it into a NodePort one does.
    t.k.ok(&["create", "service", "clusterip", "s1", "--tcp=80:80"]);
    t.k.ok(&[
        "patch",
        "service",
        "s1",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]);
    assert_eq!(
        t.jsonpath(
            &["get", "quota", "q"],
            "{.status.used.services\\.nodeports}"
        ),
        "1"
    );
    t.k.ok(&["create", "service", "clusterip", "s2", "--tcp=80:80"]);
    let err = t.k.fails(&[
        "patch",
        "service",
        "s2",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]);
    assert!(
        err.contains(r#"services "s2" is forbidden: exceeded quota: q, requested: services.nodeports=1, used: services.nodeports=1, limited: services.nodeports=1"#),
        "{err}"
    );
    let err = t.k.fails(&[
        "patch",
        "service",
        "s2",
        "-p",
        r#"{"spec":{"type":"LoadBalancer"}}"#,
    ]);
    assert!(
        err.contains("exceeded quota: q") && err.contains("services.loadbalancers=1"),
        "{err}"
    );
    assert_eq!(
        t.jsonpath(&["get", "service", "s2"], "{.spec.type}"),
        "ClusterIP"
    );
    // An update that uses no more is not charged (a label on the NodePort Service).
    t.k.ok(&["label", "service", "s1", "tier=web"]);
    assert_eq!(
        t.jsonpath(
            &["get", "quota", "q"],
            "{.status.used.services\\.nodeports}"
        ),
        "1"
    );
    // A claim's storage request raised past the quota is refused; within it, charged.
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "none",
            "resources": {"requests": {"storage": "256Mi"}}}});
    t.apply(claim);
    let raise = |size: &str| {
        t.k.run(&[
            "patch",
            "pvc",
            "data",
            "-p",
            &format!(r#"{{"spec":{{"resources":{{"requests":{{"storage":"{size}"}}}}}}}}"#),
        ])
    };
    let out = raise("2Gi");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "raised past the quota");
    assert!(
        err.contains("exceeded quota: q, requested: requests.storage=")
            && err.contains("used: requests.storage=256Mi, limited: requests.storage=1Gi"),
        "{err}"
    );
    assert!(raise("512Mi").status.success());
    assert_eq!(
        t.jsonpath(&["get", "quota", "q"], "{.status.used.requests\\.storage}"),
        "512Mi"
    );
}
