//! The scheduler's writes to the API: the binding, the PodScheduled condition (with
//! `nominatedNodeName` after a preemption), victim deletion and Events. Each is one call;
//! the loop decides when.

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod, PodCondition};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum WriteError {
    #[error("binding pod {pod} to node {node}: {source}")]
    Bind {
        pod: String,
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating the status of pod {pod}: {source}")]
    Status {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting preemption victim {pod}: {source}")]
    Evict {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("selecting node {node} for claim {claim}: {source}")]
    SelectNode {
        claim: String,
        node: String,
        #[source]
        source: kube::Error,
    },
}

impl WriteError {
    /// The API's HTTP status code, when the API answered.
    pub fn code(&self) -> Option<u16> {
        let e = match self {
            WriteError::Bind { source, .. }
            | WriteError::Status { source, .. }
            | WriteError::Evict { source, .. }
            | WriteError::SelectNode { source, .. } => source,
        };
        match e {
            kube::Error::Api(s) => Some(s.code),
            _ => None,
        }
    }
}

fn ns_name(pod: &Pod) -> (&str, &str) {
    (
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or(""),
    )
}

/// POST pods/NAME/binding (kube's DefaultBinder), with the pod's uid as a precondition.
/// Sets `volume.kubernetes.io/selected-node` on a WaitForFirstConsumer claim (VolumeBinding's
/// PreBind): its volume is then bound or provisioned on `node`.
pub async fn select_node(
    client: &kube::Client,
    ns: &str,
    claim: &str,
    node: &str,
) -> Result<(), WriteError> {
    let api: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), ns);
    let patch = json!({"metadata": {"annotations": {crate::volumes::ANN_SELECTED_NODE: node}}});
    api.patch(claim, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
        .map_err(|source| WriteError::SelectNode {
            claim: format!("{ns}/{claim}"),
            node: node.into(),
            source,
        })
}

pub async fn bind(client: &kube::Client, pod: &Pod, node: &str) -> Result<(), WriteError> {
    let (ns, name) = ns_name(pod);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..Default::default()
        },
    };
    let body = serde_json::to_vec(&binding).unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.create_subresource::<serde_json::Value>("binding", name, &PostParams::default(), body)
        .await
        .map(|_| ())
        .map_err(|source| WriteError::Bind {
            pod: format!("{ns}/{name}"),
            node: node.into(),
            source,
        })
}

/// The PodScheduled=False condition kube sets, or None when the pod already carries the
/// same status, reason and message (kube's UpdatePodCondition skips that write).
pub fn unschedulable_condition(
    pod: &Pod,
    message: &str,
    now: DateTime<Utc>,
) -> Option<PodCondition> {
    let existing = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    if let Some(c) = existing {
        if c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
        {
            return None;
        }
    }
    // The transition time changes only when the status does.
    let transition = match existing {
        Some(c) if c.status == "False" => c.last_transition_time.clone(),
        _ => None,
    }
    .unwrap_or(Time(now));
    Some(PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        message: Some(message.into()),
        last_transition_time: Some(transition),
        last_probe_time: None,
    })
}

/// Strategic-merge patch of status.conditions[type=PodScheduled] and, after a preemption,
/// status.nominatedNodeName.
pub async fn patch_status(
    client: &kube::Client,
    pod: &Pod,
    condition: Option<&PodCondition>,
    nominated: Option<&str>,
) -> Result<(), WriteError> {
    let (ns, name) = ns_name(pod);
    let mut status = serde_json::Map::new();
    if let Some(c) = condition {
        status.insert("conditions".into(), json!([c]));
    }
    if let Some(n) = nominated {
        status.insert("nominatedNodeName".into(), json!(n));
    }
    if status.is_empty() {
        return Ok(());
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Strategic(json!({"status": status})),
    )
    .await
    .map(|_| ())
    .map_err(|source| WriteError::Status {
        pod: format!("{ns}/{name}"),
        source,
    })
}

/// Deletes a preemption victim (with its own grace period), preconditioned on its uid.
pub async fn evict(client: &kube::Client, victim: &Pod) -> Result<(), WriteError> {
    let (ns, name) = ns_name(victim);
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut dp = DeleteParams::default();
    if let Some(uid) = &victim.metadata.uid {
        dp = dp.preconditions(kube::api::Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        });
    }
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(WriteError::Evict {
            pod: format!("{ns}/{name}"),
            source,
        }),
    }
}

/// A core/v1 Event about a pod, as kube-scheduler's recorder writes them (reported by
/// "default-scheduler"; pea serves core/v1 events, not events.k8s.io).
/// Who reports events: kube's reportingController and reportingInstance.
#[derive(Debug, Clone)]
pub struct Reporter {
    pub component: String,
    pub instance: String,
}

/// An events.k8s.io/v1 Event about `pod` (client-go's `tools/events` recorder, which
/// kube-scheduler uses): `regarding` is the pod as the scheduler saw it, resourceVersion
/// included, so that repeats about the same version become one series ([`crate::events`]).
pub fn pod_event(
    pod: &Pod,
    reporter: &Reporter,
    type_: &str,
    reason: &str,
    action: &str,
    note: &str,
    now: DateTime<Utc>,
) -> Event {
    let (ns, name) = ns_name(pod);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // kube's note limit (1 KiB), cut on a character boundary.
    let mut note = note.to_string();
    if note.len() > NOTE_LIMIT {
        let mut cut = NOTE_LIMIT;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{nanos:x}")),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        regarding: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..Default::default()
        }),
        reason: Some(reason.into()),
        note: Some(note),
        type_: Some(type_.into()),
        action: Some(action.into()),
        reporting_controller: Some(reporter.component.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        ..Default::default()
    }
}

/// kube's NoteLengthLimit.
const NOTE_LIMIT: usize = 1024;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn condition_is_written_only_when_it_changes() {
        let now = Utc::now();
        let fresh: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
        let c =
            unschedulable_condition(&fresh, "0/1 nodes are available: 1 Insufficient cpu.", now)
                .unwrap();
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_deref()),
            ("PodScheduled", "False", Some("Unschedulable"))
        );
        let then = now - k8s_openapi::chrono::Duration::seconds(30);
        let mut same: Pod = fresh.clone();
        same.status = Some(
            serde_json::from_value(
                json!({"conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu.",
            "lastTransitionTime": then.to_rfc3339()}]}),
            )
            .unwrap(),
        );
        assert!(unschedulable_condition(
            &same,
            "0/1 nodes are available: 1 Insufficient cpu.",
            now
        )
        .is_none());
        let changed =
            unschedulable_condition(&same, "0/2 nodes are available: 2 Insufficient cpu.", now)
                .unwrap();
        assert_eq!(
            changed.last_transition_time.map(|t| t.0.timestamp()),
            Some(then.timestamp()),
            "still False: the transition time stays"
        );
    }
}
