//! The members' health: every `resync` (and at once when a Cluster changes) each member's
//! `/readyz` is probed concurrently, the Cluster's `Ready` condition written when it changed
//! (Karmada's reasons: ClusterReady, ClusterNotReady, ClusterNotReachable, plus
//! ClusterCredentials* for a Secret that is missing or refused), and the members handed to the
//! controller's queue. Runs as its own task so an unreachable member never holds up propagation.

use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::core::DynamicObject;
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::cache::{Cache, Msg};
use crate::events::Recorder;
use crate::members::{Health, Members, STATUS_UNKNOWN};
use crate::{kinds, Config};

/// Probes members until the queue is gone.
pub async fn run(
    fed: Client,
    clusters: Arc<Cache>,
    config: Config,
    events: Arc<Recorder>,
    tx: UnboundedSender<Msg>,
    wake: Arc<Notify>,
) {
    let mut members = Members::default();
    loop {
        if clusters.ready() {
            let cs = clusters.values();
            members
                .refresh(
                    &fed,
                    &cs,
                    config.member_timeout,
                    config.summary_interval,
                    config.lease_grace,
                )
                .await;
            for c in &cs {
                cluster_status(&fed, &members, &events, c).await;
            }
            if tx
                .send(Msg::Members(members.by_name.values().cloned().collect()))
                .is_err()
            {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(config.resync) => {}
            _ = wake.notified() => {}
        }
    }
}

fn now() -> String {
    k8s_openapi::chrono::Utc::now().to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true)
}

/// Writes the Cluster's resource summary and Ready condition when they changed, with an Event
/// on each transition.
async fn cluster_status(fed: &Client, members: &Members, events: &Recorder, c: &Value) {
    let name = c["metadata"]["name"].as_str().unwrap_or_default();
    let Some(m) = members.by_name.get(name) else {
        return;
    };
    let api: Api<DynamicObject> = Api::all_with(fed.clone(), &kinds::cluster());
    // A Pull cluster's agent writes its summary and Ready condition; pea-federation writes only
    // what the agent cannot say: that its lease ran out (Karmada's cluster controller does the
    // same).
    let lease_expired =
        matches!(&m.health, Health::NotReady { reason, .. } if reason == STATUS_UNKNOWN);
    if m.pull && !lease_expired {
        return;
    }
    if let Some(s) = m.summary.as_ref().filter(|_| !m.pull) {
        let summary = s.to_json();
        if c["status"]["resourceSummary"] != summary {
            let patch = json!({"status": {"resourceSummary": summary}});
            if let Err(e) = api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                warn!(cluster = name, "cluster resource summary not written: {e}");
            }
        }
    }
    let (status, reason, message) = match &m.health {
        Health::Ready => (
            "True",
            "ClusterReady".to_string(),
            format!("member {name}: /readyz ok"),
        ),
        // Karmada's cluster controller says Unknown when a Pull cluster's lease ran out.
        Health::NotReady { reason, message } if reason == STATUS_UNKNOWN => {
            ("Unknown", reason.clone(), message.clone())
        }
        Health::NotReady { reason, message } => ("False", reason.clone(), message.clone()),
    };
    let old = &c["status"]["conditions"][0];
    if old["status"] == status
        && old["reason"] == reason.as_str()
        && old["message"] == message.as_str()
    {
        return;
    }
    let since = if old["status"] == status {
        old["lastTransitionTime"].clone()
    } else {
        json!(now())
    };
    let patch = json!({"status": {"conditions": [{
        "type": "Ready", "status": status, "reason": reason, "message": message,
        "lastTransitionTime": since,
    }]}});
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        warn!(cluster = name, "cluster status not written: {e}");
    }
    info!(cluster = name, status, %reason, "member health");
    events
        .record(fed, c, status == "True", &reason, "ready", &message)
        .await;
}
