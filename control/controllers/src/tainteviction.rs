//! Taint-based eviction (kube's `pkg/controller/tainteviction`, the NoExecuteTaintManager):
//! pods bound to a node with NoExecute taints they do not tolerate are deleted; pods that
//! tolerate them only for `tolerationSeconds` are deleted that long after the eviction clock
//! started (the smallest of their matching tolerations' seconds counts; a matching toleration
//! without seconds tolerates forever).
//!
//! ```text
//!   Node / Pod changes ─▶ queue of node names ─▶ sync(node):
//!     NoExecute taints of the node ─▶ per pod on it (not already deleting):
//!        a taint no toleration matches        ─▶ delete now
//!        all tolerated, min tolerationSeconds ─▶ delete at start + min (requeue until then)
//!        all tolerated forever                ─▶ nothing
//! ```
//!
//! The clock starts at the newest `timeAdded` of the node's NoExecute taints (the node
//! lifecycle controller stamps them), or the pod's creation if later; so unlike kube's
//! in-memory timers a controller restart does not restart the countdown. A deletion first
//! adds the pod's `DisruptionTarget` condition (DeletionByTaintManager), records a
//! TaintManagerEviction event, then deletes with the pod's own grace period.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::daemonset::tolerates;
use crate::events::{reference, Recorder};
use crate::informer::{Cache, Change};
use crate::podutil::node_name;
use crate::queue::{run_workers, Queue, Requeue};
use crate::{is_not_found, Clock, Informers};

#[derive(Debug, thiserror::Error)]
pub enum TaintEvictionError {
    #[error("deleting pod {pod}: {source}")]
    Delete {
        pod: String,
        #[source]
        source: kube::Error,
    },
}

/// What to do with one pod on a tainted node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every NoExecute taint is tolerated forever (or there is none).
    Keep,
    /// Delete now: a taint is not tolerated, or the toleration ran out.
    Delete,
    /// Delete at this time.
    DeleteAt(DateTime<Utc>),
}

fn no_execute(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|t| {
            t.iter()
                .filter(|t| t.effect == "NoExecute")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// kube's GetMatchingTolerations + getMinTolerationTime + the start of the eviction clock.
pub fn verdict(taints: &[Taint], pod: &Pod, now: DateTime<Utc>) -> Verdict {
    if taints.is_empty() {
        return Verdict::Keep;
    }
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut used: Vec<&Toleration> = Vec::new();
    for t in taints {
        match tolerations.iter().find(|tol| tolerates(tol, t)) {
            Some(tol) => used.push(tol),
            None => return Verdict::Delete,
        }
    }
    let mut min: Option<i64> = None;
    for tol in used {
        if let Some(s) = tol.toleration_seconds {
            if s <= 0 {
                return Verdict::Delete;
            }
            min = Some(min.map_or(s, |m| m.min(s)));
        }
    }
    let Some(secs) = min else {
        return Verdict::Keep;
    };
    let tainted_at = taints
        .iter()
        .filter_map(|t| t.time_added.as_ref().map(|t| t.0))
        .max()
        .unwrap_or(now);
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(tainted_at, |t| t.0);
    let due = tainted_at.max(created) + chrono::Duration::seconds(secs);
    if due <= now {
        Verdict::Delete
    } else {
        Verdict::DeleteAt(due)
    }
}

pub struct TaintEvictionController {
    client: Client,
    clock: Clock,
    recorder: Recorder,
    queue: Arc<Queue>,
    nodes: Arc<Cache<Node>>,
    pods: Arc<Cache<Pod>>,
}

impl std::fmt::Debug for TaintEvictionController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaintEvictionController")
            .finish_non_exhaustive()
    }
}

impl TaintEvictionController {
    pub fn register(
        informers: &Informers,
        client: Client,
        clock: Clock,
        recorder: Recorder,
    ) -> Arc<Self> {
        let queue = Queue::new();
        {
            let q = queue.clone();
            informers.nodes.add_handler(move |c| match c {
                Change::Added(n) => {
                    if !no_execute(n).is_empty() {
                        q.add(n.name_any());
                    }
                }
                Change::Updated { old, new } => {
                    if no_execute(old) != no_execute(new) {
                        q.add(new.name_any());
                    }
                }
                Change::Deleted(_) => {}
            });
        }
        {
            let q = queue.clone();
            informers.pods.add_handler(move |c| {
                let pod = match c {
                    Change::Added(p) => p,
                    // Tolerations may change on update (additions only) and binding sets
                    // the node.
                    Change::Updated { new, .. } => new,
                    Change::Deleted(_) => return,
                };
                let node = node_name(pod);
                if !node.is_empty() && pod.metadata.deletion_timestamp.is_none() {
                    q.add(node.to_string());
                }
            });
        }
        Arc::new(Self {
            client,
            clock,
            recorder,
            queue,
            nodes: informers.nodes.cache(),
            pods: informers.pods.cache(),
        })
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        self.nodes.wait_synced().await;
        self.pods.wait_synced().await;
        for node in self.nodes.list() {
            if !no_execute(&node).is_empty() {
                self.queue.add(node.name_any());
            }
        }
        let me = self.clone();
        run_workers(self.queue.clone(), workers, "taint-eviction", move |node| {
            let me = me.clone();
            async move { me.sync(&node).await }
        })
        .await;
    }

    async fn sync(&self, node_name_: &str) -> Result<Requeue, TaintEvictionError> {
        let Some(node) = self.nodes.get("", node_name_) else {
            return Ok(Requeue(None));
        };
        let taints = no_execute(&node);
        if taints.is_empty() {
            return Ok(Requeue(None));
        }
        let now = self.clock.now();
        let mut next: Option<DateTime<Utc>> = None;
        for pod in self.pods.list() {
            if node_name(&pod) != node_name_ || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match verdict(&taints, &pod, now) {
                Verdict::Keep => {}
                Verdict::DeleteAt(t) => next = Some(next.map_or(t, |n| n.min(t))),
                Verdict::Delete => self.evict(&pod).await?,
            }
        }
        Ok(Requeue(next.map(|t| {
            (t - now).to_std().unwrap_or_default() + Duration::from_millis(100)
        })))
    }

    async fn evict(&self, pod: &Pod) -> Result<(), TaintEvictionError> {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        tracing::info!(pod = %format!("{ns}/{name}"), node = %node_name(pod), "deleting pod for a NoExecute taint");
        self.recorder.normal(
            reference(pod),
            "TaintManagerEviction",
            format!("Marking for deletion Pod {ns}/{name}"),
        );
        // kube's addConditionAndDeletePod: say why before the pod goes (best effort: the
        // delete is what matters).
        let cond = PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByTaintManager".into()),
            message: Some("Taint manager: deleting due to NoExecute taint".into()),
            last_transition_time: Some(Time(self.clock.now())),
            ..Default::default()
        };
        let mut conditions: Vec<PodCondition> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(cond);
        let patch = json!({"status": {"conditions": conditions}});
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(error = %e, "setting DisruptionTarget failed; deleting anyway");
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(source) => Err(TaintEvictionError::Delete {
                pod: format!("{ns}/{name}"),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn pod(tolerations: Vec<Toleration>, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                creation_timestamp: Some(Time(at(created))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn tol(key: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            value: None,
        }
    }

    fn unreachable(added: i64) -> Taint {
        Taint {
            key: "node.kubernetes.io/unreachable".into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Some(Time(at(added))),
        }
    }

    #[test]
    fn untolerated_taints_evict_now_tolerated_ones_after_the_smallest_seconds() {
        let taints = [unreachable(100)];
        assert_eq!(verdict(&taints, &pod(vec![], 0), at(101)), Verdict::Delete);
        let p = pod(
            vec![
                tol("node.kubernetes.io/unreachable", Some(30)),
                tol("node.kubernetes.io/not-ready", Some(5)),
            ],
            0,
        );
        assert_eq!(verdict(&taints, &p, at(101)), Verdict::DeleteAt(at(130)));
        assert_eq!(verdict(&taints, &p, at(130)), Verdict::Delete);
        // Tolerated forever.
        let forever = pod(vec![tol("node.kubernetes.io/unreachable", None)], 0);
        assert_eq!(verdict(&taints, &forever, at(10_000)), Verdict::Keep);
        // A pod created after the taint counts from its creation.
        let late = pod(vec![tol("node.kubernetes.io/unreachable", Some(30))], 200);
        assert_eq!(verdict(&taints, &late, at(201)), Verdict::DeleteAt(at(230)));
        // Zero or negative seconds: at once.
        let zero = pod(vec![tol("node.kubernetes.io/unreachable", Some(0))], 0);
        assert_eq!(verdict(&taints, &zero, at(101)), Verdict::Delete);
        assert_eq!(verdict(&[], &pod(vec![], 0), at(1)), Verdict::Keep);
    }

    #[test]
    fn every_taint_must_be_tolerated() {
        let taints = [
            unreachable(0),
            Taint {
                key: "dedicated".into(),
                effect: "NoExecute".into(),
                value: Some("gpu".into()),
                time_added: None,
            },
        ];
        let p = pod(vec![tol("node.kubernetes.io/unreachable", Some(30))], 0);
        assert_eq!(verdict(&taints, &p, at(1)), Verdict::Delete);
        let all = pod(
            vec![Toleration {
                operator: Some("Exists".into()),
                ..Default::default()
            }],
            0,
        );
        assert_eq!(verdict(&taints, &all, at(1)), Verdict::Keep);
    }
}
