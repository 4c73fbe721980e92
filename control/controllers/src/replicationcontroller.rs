//! The ReplicationController manager (kube's `pkg/controller/replication`): the ReplicaSet
//! controller's code ([`crate::replicaset::ReplicaController`]) over core/v1
//! ReplicationControllers, whose selector is a plain label map and whose status has the
//! ReplicaSet's fields.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSetStatus;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};

use crate::informer::Informer;
use crate::replicaset::{ReplicaController, Replicated};
use crate::Informers;

/// kube-controller-manager's `replicationcontroller` controller.
pub type ReplicationManager = ReplicaController<ReplicationController>;

impl Replicated for ReplicationController {
    const QUEUE: &'static str = "replicationmanager";

    fn informer(informers: &Informers) -> &Arc<Informer<Self>> {
        &informers.replicationcontrollers
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    /// An equality selector; an empty or missing one selects nothing here (the API server
    /// defaults it to the template's labels and refuses an empty one).
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        match self.spec.as_ref().and_then(|s| s.selector.as_ref()) {
            Some(sel) if !sel.is_empty() => crate::podutil::map_selector_matches(sel, labels),
            _ => false,
        }
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }

    /// The same JSON fields (conditions too), so a serde round trip converts.
    fn replica_status(&self) -> Option<ReplicaSetStatus> {
        let status = self.status.as_ref()?;
        serde_json::to_value(status)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ReplicationControllerSpec, ReplicationControllerStatus};

    use super::*;

    fn rc(selector: &[(&str, &str)]) -> ReplicationController {
        ReplicationController {
            spec: Some(ReplicationControllerSpec {
                selector: Some(
                    selector
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            }),
            status: Some(ReplicationControllerStatus {
                replicas: 3,
                ready_replicas: Some(2),
                observed_generation: Some(4),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn equality_selector_and_status_in_replicaset_form() {
        let labels: BTreeMap<String, String> = [("app", "web"), ("tier", "fe")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(rc(&[("app", "web")]).selects(&labels));
        assert!(!rc(&[("app", "db")]).selects(&labels));
        assert!(
            !rc(&[]).selects(&labels),
            "an empty selector adopts nothing"
        );
        let s = rc(&[]).replica_status().unwrap();
        assert_eq!(
            (s.replicas, s.ready_replicas, s.observed_generation),
            (3, Some(2), Some(4))
        );
        assert_eq!(rc(&[]).replicas(), 1, "replicas default to 1");
    }
}
