//! Status back to the federation API after a turn: per template its ResourceBinding (or, for a
//! cluster-scoped template, its ClusterResourceBinding — Karmada's names, `<name>-<kind>`) with
//! the placement and each member's status, the workload replica counts summed onto the
//! template's own status, and Events naming the member and field of each failure.
//!
//! These writes go to the federation API from a task of their own (the [`Reporter`]), not from
//! the turn: a turn hands over what it saw and goes on to the next queued templates, so new
//! templates reach the members without waiting behind the status writes of earlier ones (up to
//! three writes per template, against one apply per member). Reports queued for the same
//! template while earlier ones are written are coalesced: only the latest is written.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::stream::{FuturesUnordered, StreamExt};

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{debug, info, warn};

use crate::events::Recorder;
use crate::reconcile::{api_for, str_at, MemberOutcome};
use crate::{kinds, render, FIELD_MANAGER, FINALIZER};

/// A digest of `v` to tell whether it changed (serde_json's maps are ordered, so equal values
/// serialize alike).
fn digest(v: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    h.finish()
}

/// Federation writes in flight at once.
const IN_FLIGHT: usize = 16;

/// The workload status fields summed across members.
const SUMMED: &[&str] = &[
    "replicas",
    "readyReplicas",
    "availableReplicas",
    "updatedReplicas",
];

fn now() -> String {
    k8s_openapi::chrono::Utc::now().to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true)
}

/// The binding's name, its API and kind: a ResourceBinding in the template's namespace, or a
/// ClusterResourceBinding for a cluster-scoped template.
pub(crate) fn binding_of(fed: &Client, t: &Value) -> (String, Api<DynamicObject>, &'static str) {
    let name = format!(
        "{}-{}",
        str_at(t, "/metadata/name"),
        str_at(t, "/kind").to_lowercase()
    );
    match t["metadata"]["namespace"].as_str() {
        Some(ns) => (
            name,
            Api::namespaced_with(fed.clone(), ns, &kinds::resource_binding()),
            "ResourceBinding",
        ),
        None => (
            name,
            Api::all_with(fed.clone(), &kinds::cluster_resource_binding()),
            "ClusterResourceBinding",
        ),
    }
}

/// What a turn hands to the [`Reporter`] for one template.
#[derive(Debug, Clone)]
pub(crate) enum Job {
    /// The template's binding, summed status and failure Events.
    Status(Report),
    /// The member objects are gone: drop the binding and the finalizer so the template goes.
    Release { ar: ApiResource, template: Value },
}

/// One template's outcome of a turn, owned (the turn has moved on when it is written).
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub ar: ApiResource,
    pub template: Value,
    pub uid: String,
    pub decision: crate::placement::Decision,
    pub policy: String,
    pub schedule_error: Option<String>,
    pub per_member: BTreeMap<String, MemberOutcome>,
}

impl Job {
    fn uid(&self) -> &str {
        match self {
            Job::Status(r) => &r.uid,
            Job::Release { template, .. } => str_at(template, "/metadata/uid"),
        }
    }
}

/// Jobs waiting to be written: the latest per template, oldest template first (a report
/// superseded while it waited is never written; a release supersedes a pending report).
#[derive(Default)]
struct Pending {
    order: VecDeque<String>,
    latest: HashMap<String, Job>,
}

impl Pending {
    fn push(&mut self, j: Job) {
        let uid = j.uid().to_string();
        if self.latest.insert(uid.clone(), j).is_none() {
            self.order.push_back(uid);
        }
    }

    /// The oldest job whose template is not `busy` (one write per template at a time, so they
    /// land in order).
    fn take(&mut self, busy: &HashSet<String>) -> Option<Job> {
        let i = self.order.iter().position(|u| !busy.contains(u))?;
        let uid = self.order.remove(i)?;
        self.latest.remove(&uid)
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// Writes the reports of turns to the federation API.
pub(crate) struct Reporter {
    fed: Client,
    events: Arc<Recorder>,
    /// Last binding spec and status written per template uid (written again only on change).
    /// Kept as digests: the status holds every member's status, so the values themselves would
    /// be templates × members of memory.
    last_binding: Mutex<HashMap<String, (u64, u64)>>,
}

impl Reporter {
    pub fn new(fed: Client, events: Arc<Recorder>) -> Self {
        Self {
            fed,
            events,
            last_binding: Mutex::new(HashMap::new()),
        }
    }

    /// Writes jobs as they come until every sender is gone, up to [`IN_FLIGHT`] templates at
    /// once; a job queued for a template while an earlier one is pending replaces it.
    pub async fn run(self: Arc<Self>, mut rx: UnboundedReceiver<Job>) {
        let mut pending = Pending::default();
        let mut busy: HashSet<String> = HashSet::new();
        let mut running = FuturesUnordered::new();
        let mut open = true;
        loop {
            while busy.len() < IN_FLIGHT {
                let Some(j) = pending.take(&busy) else { break };
                let uid = j.uid().to_string();
                busy.insert(uid.clone());
                let me = self.clone();
                running.push(async move {
                    match j {
                        Job::Status(r) => me.report(&r).await,
                        Job::Release { ar, template } => me.finish_deletion(&ar, &template).await,
                    }
                    uid
                });
            }
            if !open && running.is_empty() && pending.is_empty() {
                return;
            }
            tokio::select! {
                j = rx.recv(), if open => match j {
                    Some(j) => {
                        pending.push(j);
                        while let Ok(j) = rx.try_recv() {
                            pending.push(j);
                        }
                    }
                    None => open = false,
                },
                Some(uid) = running.next(), if !running.is_empty() => {
                    busy.remove(&uid);
                }
            }
        }
    }

    /// Writes the ResourceBinding, the summed status on the template, and Events for failures.
    async fn report(&self, p: &Report) {
        let (ar, t, per_member) = (&p.ar, &p.template, &p.per_member);
        if let Some(e) = &p.schedule_error {
            self.events
                .record(&self.fed, t, false, "ScheduleFailed", "placement", e)
                .await;
        } else {
            self.events.clear(&p.uid, "ScheduleFailed", "placement");
        }
        let mut failures = Vec::new();
        for (member, o) in per_member {
            match &o.error {
                Some(e) => {
                    failures.push(e.clone());
                    self.events
                        .record(&self.fed, t, false, "ApplyFailed", member, e)
                        .await;
                }
                None => self.events.clear(&p.uid, "ApplyFailed", member),
            }
        }
        // The template's status and its binding are written side by side (neither reads the
        // other), so a template's report costs one federation round trip, not three in a row.
        futures_util::future::join(
            self.write_template_status(ar, t, per_member),
            self.write_binding(p, &failures),
        )
        .await;
    }

    /// The workload replica counts summed across members onto the template's status (written
    /// only when they changed).
    async fn write_template_status(
        &self,
        ar: &ApiResource,
        t: &Value,
        per_member: &BTreeMap<String, MemberOutcome>,
    ) {
        if t["status"].is_object() || t["spec"]["replicas"].is_i64() {
            let mut sum = serde_json::Map::new();
            for f in SUMMED {
                let n: i64 = per_member
                    .values()
                    .filter_map(|o| o.status.as_ref())
                    .filter_map(|s| s[*f].as_i64())
                    .sum();
                sum.insert(f.to_string(), json!(n));
            }
            sum.insert(
                "observedGeneration".into(),
                t["metadata"]["generation"].clone(),
            );
            let changed = sum.iter().any(|(k, v)| {
                t["status"][k] != *v && !(v == &json!(0) && t["status"][k].is_null())
            });
            if changed {
                let api = api_for(&self.fed, ar, t["metadata"]["namespace"].as_str());
                let patch = json!({"status": Value::Object(sum)});
                if let Err(e) = api
                    .patch_status(
                        str_at(t, "/metadata/name"),
                        &PatchParams::default(),
                        &Patch::Merge(patch),
                    )
                    .await
                {
                    debug!(template = %render::identity(t), "status not written: {e}");
                }
            }
        }
    }

    /// The (Cluster)ResourceBinding: its spec (placement) and status (per member outcome and
    /// status, conditions), each written only when it changed.
    async fn write_binding(&self, p: &Report, failures: &[String]) {
        let t = &p.template;
        let ns = t["metadata"]["namespace"].as_str();
        let (name, rbs, binding_kind) = binding_of(&self.fed, t);
        let clusters: Vec<Value> = p
            .decision
            .iter()
            .map(|(n, r)| match r {
                Some(r) => json!({"name": n, "replicas": r}),
                None => json!({"name": n}),
            })
            .collect();
        let mut resource = json!({"apiVersion": t["apiVersion"], "kind": t["kind"],
            "name": t["metadata"]["name"], "uid": p.uid});
        if let Some(ns) = ns {
            resource["namespace"] = json!(ns);
        }
        let spec = json!({
            "resource": resource,
            "replicas": t["spec"]["replicas"],
            "propagationPolicy": p.policy,
            "clusters": clusters,
        });
        let aggregated: Vec<Value> = p
            .per_member
            .iter()
            .map(|(n, o)| {
                let mut e = json!({"clusterName": n, "applied": o.error.is_none()});
                if let Some(err) = &o.error {
                    e["appliedMessage"] = json!(err);
                }
                if let Some(s) = &o.status {
                    e["status"] = s.clone();
                }
                e
            })
            .collect();
        let scheduled = match &p.schedule_error {
            None => json!({"type": "Scheduled", "status": "True", "reason": "Success",
                "message": format!("placed by {}", p.policy)}),
            Some(e) => {
                json!({"type": "Scheduled", "status": "False", "reason": "SchedulerError", "message": e})
            }
        };
        let applied = if failures.is_empty() && p.schedule_error.is_none() {
            json!({"type": "FullyApplied", "status": "True", "reason": "FullyAppliedSuccess",
                "message": "applied to every member of the placement"})
        } else {
            json!({"type": "FullyApplied", "status": "False", "reason": "FullyAppliedFailed",
                "message": failures.join("; ")})
        };
        let status = json!({"conditions": [scheduled, applied], "aggregatedStatus": aggregated});
        let (spec_digest, status_digest) = (digest(&spec), digest(&status));
        let last = self
            .last_binding
            .lock()
            .expect("binding lock")
            .get(&p.uid)
            .cloned();
        if last.is_none_or(|(s, _)| s != spec_digest) {
            let mut meta = json!({"name": name});
            if let Some(ns) = ns {
                meta["namespace"] = json!(ns);
            }
            let rb = json!({"apiVersion": "work.karmada.io/v1alpha1", "kind": binding_kind,
                "metadata": meta, "spec": spec});
            if let Err(e) = rbs
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(rb),
                )
                .await
            {
                warn!(binding = %name, "binding not written: {e}");
                return;
            }
        }
        if last.is_none_or(|(s, st)| s != spec_digest || st != status_digest) {
            // Conditions keep their transition time only in spirit: each write stamps "now".
            let mut st = status.clone();
            for c in st["conditions"].as_array_mut().into_iter().flatten() {
                c["lastTransitionTime"] = json!(now());
            }
            if let Err(e) = rbs
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": st})),
                )
                .await
            {
                warn!(binding = %name, "binding status not written: {e}");
                return;
            }
        }
        self.last_binding
            .lock()
            .expect("binding lock")
            .insert(p.uid.clone(), (spec_digest, status_digest));
    }

    /// Member objects are gone: drop the binding and the finalizer so the template goes.
    async fn finish_deletion(&self, ar: &ApiResource, t: &Value) {
        let uid = str_at(t, "/metadata/uid").to_string();
        let (name, rbs, _) = binding_of(&self.fed, t);
        match rbs.delete(&name, &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(kube::core::ErrorResponse { code: 404, .. })) => {}
            Err(e) => warn!(binding = %name, "binding not deleted: {e}"),
        }
        let f: Vec<Value> = t["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|x| *x != FINALIZER)
            .cloned()
            .collect();
        let patch = json!({"metadata": {"finalizers": f, "resourceVersion": t["metadata"]["resourceVersion"]}});
        let api = api_for(&self.fed, ar, t["metadata"]["namespace"].as_str());
        match api
            .patch(
                str_at(t, "/metadata/name"),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => {
                info!(template = %render::identity(t), "member objects deleted; template released");
                self.last_binding.lock().expect("binding lock").remove(&uid);
            }
            Err(e) => {
                debug!(template = %render::identity(t), "finalizer not removed (retried): {e}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(uid: &str, policy: &str) -> Job {
        Job::Status(Report {
            ar: kinds::cluster(),
            template: json!({"metadata": {"uid": uid}}),
            uid: uid.into(),
            decision: BTreeMap::new(),
            policy: policy.into(),
            schedule_error: None,
            per_member: BTreeMap::new(),
        })
    }

    fn describe(j: &Job) -> String {
        match j {
            Job::Status(r) => format!("{}:{}", r.uid, r.policy),
            Job::Release { template, .. } => {
                format!("{}:release", str_at(template, "/metadata/uid"))
            }
        }
    }

    #[test]
    fn only_the_latest_job_per_template_is_written_oldest_first_one_at_a_time() {
        let mut q = Pending::default();
        for j in [
            status("a", "1"),
            status("b", "1"),
            status("a", "2"),
            status("c", "1"),
            Job::Release {
                ar: kinds::cluster(),
                template: json!({"metadata": {"uid": "c"}}),
            },
            status("b", "2"),
            status("a", "3"),
        ] {
            q.push(j);
        }
        let none = HashSet::new();
        let a_busy = HashSet::from(["a".to_string()]);
        // "a" is being written: "b" goes first, then "a" waits its turn.
        assert_eq!(
            q.take(&a_busy).as_ref().map(describe).as_deref(),
            Some("b:2")
        );
        assert!(q.take(&HashSet::from(["a".into(), "c".into()])).is_none());
        assert_eq!(q.take(&none).as_ref().map(describe).as_deref(), Some("a:3"));
        assert_eq!(
            q.take(&none).as_ref().map(describe).as_deref(),
            Some("c:release")
        );
        assert!(q.is_empty() && q.take(&none).is_none());
    }
}
