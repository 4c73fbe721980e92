//! Defaulting for new objects: the fields kube-apiserver fills in that clients rely on.

use serde_json::{json, Value};

fn set_if_absent(obj: &mut Value, pointer: &str, value: Value) {
    if obj.pointer(pointer).is_some() {
        return;
    }
    let mut cur = obj;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        if i == parts.len() - 1 {
            map.insert(p.to_string(), value);
            return;
        }
        cur = map.entry(p.to_string()).or_insert_with(|| json!({}));
    }
}

fn default_containers(spec: &mut Value) {
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                let latest = pulls_latest(image);
                set_if_absent(
                    c,
                    "/imagePullPolicy",
                    json!(if latest { "Always" } else { "IfNotPresent" }),
                );
                set_if_absent(c, "/terminationMessagePath", json!("/dev/termination-log"));
                set_if_absent(c, "/terminationMessagePolicy", json!("File"));
                set_if_absent(c, "/resources", json!({}));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        set_if_absent(p, "/protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// kube-apiserver's rule: no tag and no digest, or the tag `latest`, means pull `Always`. The
/// tag is looked for after the last `/`, so a registry port (`host:5000/app`) is not a tag.
fn pulls_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => true,
        Some((_, tag)) => tag == "latest",
    }
}

fn default_pod_spec(spec: &mut Value) {
    set_if_absent(spec, "/restartPolicy", json!("Always"));
    set_if_absent(spec, "/dnsPolicy", json!("ClusterFirst"));
    set_if_absent(spec, "/terminationGracePeriodSeconds", json!(30));
    set_if_absent(spec, "/schedulerName", json!("default-scheduler"));
    set_if_absent(spec, "/securityContext", json!({}));
    set_if_absent(spec, "/enableServiceLinks", json!(true));
    default_containers(spec);
}

/// Fills defaults into a new object of `kind`.
pub fn apply(kind: &str, obj: &mut Value) {
    match kind {
        "Namespace" => set_if_absent(obj, "/status/phase", json!("Active")),
        "Pod" => set_if_absent(obj, "/status/phase", json!("Pending")),
        // kube's PV and PVC strategies (PrepareForCreate): a new volume or claim is Pending
        // until the binder looks at it.
        "PersistentVolume" | "PersistentVolumeClaim" => {
            set_if_absent(obj, "/status/phase", json!("Pending"))
        }
        "ResourceQuota" => crate::quota_admission::prepare_new(obj),
        _ => {}
    }
    apply_to_spec(kind, obj);
    if kind == "Pod" {
        default_toleration_seconds(obj);
        // Computed from the defaulted spec, whatever the client sent (kube's PrepareForCreate).
        let class = crate::qos::pod_qos_class(obj);
        if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
            status.insert("qosClass".into(), json!(class));
        }
    }
}

/// How long a new pod tolerates its node being not-ready or unreachable before the taint
/// eviction deletes it (kube-apiserver's DefaultTolerationSeconds admission, 300 s).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// kube-apiserver's DefaultTolerationSeconds admission on pod create: a pod that does not
/// already tolerate the NoExecute `node.kubernetes.io/not-ready` / `unreachable` taints gets
/// tolerations for them of [`DEFAULT_TOLERATION_SECONDS`]. A toleration with an empty key
/// (tolerates every key) or an empty effect counts as tolerating, as kube's check does.
fn default_toleration_seconds(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    if !list.is_array() {
        return;
    }
    let Some(list) = list.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let e = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        });
        if !tolerated {
            list.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}),
            );
        }
    }
}

/// A Pod's (not a template's) containers request what they limit unless they say otherwise
/// (kube's SetDefaults_Pod).
fn default_requests_to_limits(spec: &mut Value) {
    for list in ["containers", "initContainers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(resources) = c.get_mut("resources").and_then(Value::as_object_mut) else {
                continue;
            };
            let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
                continue;
            };
            let requests = resources.entry("requests").or_insert_with(|| json!({}));
            if let Some(requests) = requests.as_object_mut() {
                for (k, v) in limits {
                    requests.entry(k).or_insert(v);
                }
            }
        }
    }
}

/// Fills the defaults of the object's desired state, as kube-apiserver does on every write
/// (updates and patches too, so a field a client dropped comes back instead of flapping).
pub fn apply_to_spec(kind: &str, obj: &mut Value) {
    match kind {
        "RoleBinding" | "ClusterRoleBinding" => crate::rbac::default_subjects(obj),
        "PriorityClass" => crate::priority::default_class(obj),
        "LimitRange" => crate::limitranger::default_ranges(obj),
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            crate::admission::config::apply_defaults(kind, obj)
        }
        "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding" => {
            crate::admission::policy::apply_defaults(kind, obj)
        }
        "Namespace" => set_if_absent(obj, "/spec/finalizers", json!(["kubernetes"])),
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
                default_requests_to_limits(spec);
            }
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            if kind != "DaemonSet" && kind != "Job" {
                set_if_absent(obj, "/spec/replicas", json!(1));
            }
            match kind {
                "StatefulSet" => {
                    set_if_absent(obj, "/spec/podManagementPolicy", json!("OrderedReady"));
                    set_if_absent(
                        obj,
                        "/spec/updateStrategy",
                        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                    );
                    set_if_absent(obj, "/spec/revisionHistoryLimit", json!(10));
                    set_if_absent(
                        obj,
                        "/spec/persistentVolumeClaimRetentionPolicy",
                        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                    );
                }
                "DaemonSet" => {
                    set_if_absent(
                        obj,
                        "/spec/updateStrategy",
                        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
                    );
                    set_if_absent(obj, "/spec/revisionHistoryLimit", json!(10));
                }
                "Job" => default_job(obj),
                _ => {}
            }
            if kind == "Deployment" {
                set_if_absent(obj, "/spec/revisionHistoryLimit", json!(10));
                set_if_absent(obj, "/spec/progressDeadlineSeconds", json!(600));
                set_if_absent(
                    obj,
                    "/spec/strategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
                );
            }
            if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
                default_pod_spec(spec);
            }
        }
        "ReplicationController" => default_replication_controller(obj),
        "CronJob" => {
            set_if_absent(obj, "/spec/concurrencyPolicy", json!("Allow"));
            set_if_absent(obj, "/spec/suspend", json!(false));
            set_if_absent(obj, "/spec/successfulJobsHistoryLimit", json!(3));
            set_if_absent(obj, "/spec/failedJobsHistoryLimit", json!(1));
            if let Some(spec) = obj.pointer_mut("/spec/jobTemplate/spec/template/spec") {
                default_pod_spec(spec);
            }
        }
        "Service" => {
            set_if_absent(obj, "/spec/type", json!("ClusterIP"));
            set_if_absent(obj, "/spec/sessionAffinity", json!("None"));
            if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports {
                    set_if_absent(p, "/protocol", json!("TCP"));
                    // Not an object (e.g. `ports: [1]`): validation refuses it later.
                    if let Some(p) = p.as_object_mut() {
                        if !p.contains_key("targetPort") {
                            let port = p.get("port").cloned().unwrap_or(json!(0));
                            p.insert("targetPort".into(), port);
                        }
                    }
                }
            }
        }
        "Secret" => {
            set_if_absent(obj, "/type", json!("Opaque"));
            fold_string_data(obj);
        }
        "PersistentVolume" => {
            // A manually created volume is kept when released (SetDefaults_PersistentVolume);
            // dynamic provisioners set Delete themselves.
            set_if_absent(obj, "/spec/persistentVolumeReclaimPolicy", json!("Retain"));
            set_if_absent(obj, "/spec/volumeMode", json!("Filesystem"));
            if let Some(host_path) = obj.pointer_mut("/spec/hostPath") {
                set_if_absent(host_path, "/type", json!(""));
            }
        }
        "PersistentVolumeClaim" => set_if_absent(obj, "/spec/volumeMode", json!("Filesystem")),
        "StorageClass" => {
            set_if_absent(obj, "/reclaimPolicy", json!("Delete"));
            set_if_absent(obj, "/volumeBindingMode", json!("Immediate"));
        }
        _ => {}
    }
}

/// Job defaults as batch/v1's defaulting and the Job strategy's create preparation set them:
/// counts, backoff, completion mode, and unless `manualSelector` is true, the selector and
/// template labels derived from the Job's uid and name.
fn default_job(obj: &mut Value) {
    let spec_has = |obj: &Value, f: &str| obj.pointer(&format!("/spec/{f}")).is_some();
    if !spec_has(obj, "completions") && !spec_has(obj, "parallelism") {
        set_if_absent(obj, "/spec/completions", json!(1));
    }
    set_if_absent(obj, "/spec/parallelism", json!(1));
    // batch/v1: per-index backoff alone decides unless a global limit is given too.
    let backoff = if spec_has(obj, "backoffLimitPerIndex") {
        i32::MAX
    } else {
        6
    };
    set_if_absent(obj, "/spec/backoffLimit", json!(backoff));
    set_if_absent(obj, "/spec/completionMode", json!("NonIndexed"));
    set_if_absent(obj, "/spec/suspend", json!(false));
    let replacement = if spec_has(obj, "podFailurePolicy") {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set_if_absent(obj, "/spec/podReplacementPolicy", json!(replacement));
    // batch/v1's SetDefaults_PodFailurePolicyOnPodConditionsPattern.
    let rules = obj.pointer_mut("/spec/podFailurePolicy/rules");
    for rule in rules.and_then(Value::as_array_mut).into_iter().flatten() {
        let patterns = rule
            .get_mut("onPodConditions")
            .and_then(Value::as_array_mut);
        for p in patterns
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            p.entry("status").or_insert_with(|| json!("True"));
        }
    }
    if obj.pointer("/spec/manualSelector") == Some(&json!(true)) {
        return;
    }
    let (Some(uid), Some(name)) = (
        obj.pointer("/metadata/uid").cloned(),
        obj.pointer("/metadata/name").cloned(),
    ) else {
        return;
    };
    for (key, value) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        set_if_absent(obj, "/spec/template/metadata/labels", json!({}));
        if let Some(labels) = obj
            .pointer_mut("/spec/template/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.entry(key).or_insert_with(|| value.clone());
        }
    }
    set_if_absent(
        obj,
        "/spec/selector",
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
}

/// Moves a Secret's write-only `stringData` into `data` (base64), as kube-apiserver does on
/// every write; `stringData` wins over `data` for the same key and is never stored.
pub fn fold_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(string_data) = obj.as_object_mut().and_then(|m| m.remove("stringData")) else {
        return;
    };
    let Some(entries) = string_data.as_object() else {
        return;
    };
    if entries.is_empty() {
        return;
    }
    let data = obj
        .as_object_mut()
        .map(|m| m.entry("data").or_insert_with(|| json!({})));
    if let Some(Value::Object(d)) = data {
        for (k, v) in entries {
            let text = v.as_str().unwrap_or_default();
            d.insert(
                k.clone(),
                json!(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
}

/// Whether `kind` tracks `metadata.generation` (objects with a spec users change).
pub fn has_generation(kind: &str) -> bool {
    !matches!(
        kind,
        "ConfigMap"
            | "Secret"
            | "Event"
            | "Endpoints"
            | "EndpointSlice"
            | "ServiceAccount"
            | "Lease"
            | "Namespace"
            | "Node"
            | "PersistentVolume"
            | "PersistentVolumeClaim"
            | "StorageClass"
            | "PriorityClass"
            | "ResourceQuota"
            | "LimitRange"
    )
}

/// kube's SetDefaults_ReplicationController: the selector and the object's labels default to
/// the template's labels, replicas to 1; the template's pod spec as a pod's.
fn default_replication_controller(obj: &mut Value) {
    let tpl_labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    if let Some(labels) = tpl_labels {
        let empty =
            |v: Option<&Value>| v.is_none_or(|v| v.as_object().is_none_or(|m| m.is_empty()));
        if empty(obj.pointer("/spec/selector")) {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("selector".into(), labels.clone());
            }
        }
        if empty(obj.pointer("/metadata/labels")) {
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("labels".into(), labels);
            }
        }
    }
    set_if_absent(obj, "/spec/replicas", json!(1));
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        default_pod_spec(spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_request_what_they_limit_and_get_their_qos_class() {
        let limits = json!({"cpu": "250m", "memory": "64Mi"});
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "busybox:1", "resources": {"limits": limits}}]},
            "status": {"qosClass": "BestEffort"}});
        apply("Pod", &mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"],
            limits
        );
        assert_eq!(
            pod["status"]["qosClass"], "Guaranteed",
            "computed, not taken"
        );
        assert_eq!(pod["status"]["phase"], "Pending");
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "busybox:1"}]}});
        apply("Pod", &mut pod);
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
        // Templates keep what they say: kube defaults requests only on Pods.
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "busybox:1", "resources": {"limits": limits}}]}}}});
        apply("Deployment", &mut d);
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert!(c["resources"].get("requests").is_none(), "{c}");
    }

    #[test]
    fn secret_string_data_folds_into_data() {
        let mut s = json!({"data": {"a": "eA=="}, "stringData": {"b": "hunter2", "a": "y"}});
        apply("Secret", &mut s);
        assert_eq!(
            s,
            json!({"type": "Opaque", "data": {"a": "eQ==", "b": "aHVudGVyMg=="}})
        );
    }

    #[test]
    fn latest_means_no_tag_no_digest_or_the_latest_tag() {
        for (image, always) in [
            ("busybox", true),
            ("busybox:latest", true),
            ("busybox:1.36", false),
            ("localhost:5000/busybox", true),
            ("localhost:5000/busybox:1", false),
            ("busybox@sha256:abcd", false),
        ] {
            assert_eq!(pulls_latest(image), always, "{image}");
        }
    }

    #[test]
    fn job_gets_counts_and_a_selector_from_its_uid_unless_manual() {
        let mut j = json!({"metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
        apply("Job", &mut j);
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["parallelism"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u-1"
        );
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"]["job-name"],
            "pi"
        );
        assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");

        let mut parallel = json!({"metadata": {"name": "p", "uid": "u"},
            "spec": {"parallelism": 3, "manualSelector": true, "selector": {"matchLabels": {"a": "b"}}}});
        apply("Job", &mut parallel);
        assert!(parallel["spec"].get("completions").is_none());
        assert_eq!(
            parallel["spec"]["selector"],
            json!({"matchLabels": {"a": "b"}})
        );
        assert!(parallel["spec"].get("template").is_none());

        let mut per_index = json!({"metadata": {"name": "x", "uid": "u"},
            "spec": {"completionMode": "Indexed", "completions": 2, "backoffLimitPerIndex": 1}});
        apply("Job", &mut per_index);
        assert_eq!(per_index["spec"]["backoffLimit"], i32::MAX);
    }

    #[test]
    fn pods_get_default_not_ready_and_unreachable_tolerations() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "i:1"}]}});
        apply("Pod", &mut pod);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300}
            ])
        );
        // A pod's own toleration wins (here: 5 s for unreachable); an empty key tolerates all.
        let own = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": 5});
        let mut pod = json!({"spec": {"containers": [], "tolerations": [own.clone()]}});
        apply("Pod", &mut pod);
        let t = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0], own);
        assert_eq!(t[1]["key"], "node.kubernetes.io/not-ready");
        let mut all = json!({"spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}});
        apply("Pod", &mut all);
        assert_eq!(all["spec"]["tolerations"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn pod_defaults_fill_only_missing_fields() {
        let mut p = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}, {"name": "d", "image": "x"}]}});
        apply("Pod", &mut p);
        assert_eq!(p["spec"]["restartPolicy"], "Never");
        assert_eq!(p["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(
            p["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(p["spec"]["containers"][1]["imagePullPolicy"], "Always");
        assert_eq!(p["status"]["phase"], "Pending");
    }
}
