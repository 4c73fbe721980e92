//! The labels and annotations kubelet puts on CRI sandboxes and containers; they are how a
//! restarted kubelet finds what it runs (and how `kubectl logs` finds a container's log).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Marks sandboxes and containers a kubelet made (vs. ones a user made with crictl).
pub const MANAGED: &str = "io.kubernetes.kubelet.managed";
/// kubelet's "init" / "regular" container kind (shown by crictl, used for ordering on adopt).
pub const CONTAINER_TYPE: &str = "io.kubernetes.container.type";

pub const HASH: &str = "io.kubernetes.container.hash";
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
pub const GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";

/// The pod's identity labels, on its sandbox and every container.
pub fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let m = &pod.metadata;
    [
        (POD_NAME, m.name.clone().unwrap_or_default()),
        (POD_NAMESPACE, m.namespace.clone().unwrap_or_default()),
        (POD_UID, m.uid.clone().unwrap_or_default()),
        (MANAGED, "true".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub fn uid_filter(uid: &str) -> HashMap<String, String> {
    [(POD_UID.to_string(), uid.to_string())].into()
}
