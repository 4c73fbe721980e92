//! The controller's pass: members' health → policies → for each selected kind, every template's
//! placement, the rendered object applied to each member (server-side apply, only when the member's
//! object differs: drift is corrected here), member objects of gone templates deleted, then status
//! back — the ResourceBinding per template and the summed workload status on the template.
//!
//! One member's failure (unreachable, refused credentials, an override its API server rejects)
//! becomes that member's entry in the binding's status, a condition and an Event naming the member
//! and the field; the other members are synced in the same pass regardless.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use crate::events::Recorder;
use crate::members::{Health, Members};
use crate::overrides::OverridePolicy;
use crate::placement::{self, Candidate};
use crate::policy::{self, Policy, TemplateRef};
use crate::render;
use crate::{kinds, Config, Error, FIELD_MANAGER, FINALIZER, TEMPLATE_UID_LABEL};

/// Runs passes until the task is dropped; a failed pass is logged and retried at the next resync.
pub async fn run(fed: Client, config: Config) -> Result<(), Error> {
    let mut c = Controller {
        fed,
        config,
        members: Members::default(),
        events: Recorder::default(),
        kinds: HashMap::new(),
        last_binding: HashMap::new(),
    };
    loop {
        let started = Instant::now();
        if let Err(e) = c.pass().await {
            warn!("federation pass failed: {e}");
        }
        debug!(elapsed = ?started.elapsed(), "federation pass");
        let rest = c.config.resync.saturating_sub(started.elapsed());
        tokio::time::sleep(rest.max(Duration::from_millis(50))).await;
    }
}

struct Controller {
    fed: Client,
    config: Config,
    members: Members,
    events: Recorder,
    /// Discovered template kinds: (apiVersion, kind) → resource and whether namespaced.
    kinds: HashMap<(String, String), (ApiResource, bool)>,
    /// Last binding spec and status written per template uid (written again only on change).
    last_binding: HashMap<String, (Value, Value)>,
}

/// What one member reported for one template in a pass.
#[derive(Debug, Clone, Default)]
struct MemberOutcome {
    /// `Some(error)` when the object could not be applied.
    error: Option<String>,
    /// The member object's status, when it exists.
    status: Option<Value>,
}

/// One template's plan for this pass.
struct Plan<'t> {
    template: &'t Value,
    uid: String,
    /// Per member: the rendered object, or why it could not be rendered.
    wants: BTreeMap<String, Result<Value, String>>,
    decision: placement::Decision,
    policy: String,
    schedule_error: Option<String>,
}

async fn list(client: &Client, ar: &ApiResource) -> Result<Vec<Value>, kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let items = api.list(&ListParams::default()).await?.items;
    Ok(items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .map(|mut v| {
            v["apiVersion"] = json!(ar.api_version);
            v["kind"] = json!(ar.kind);
            v
        })
        .collect())
}

fn str_at<'v>(v: &'v Value, ptr: &str) -> &'v str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(v["metadata"]["labels"].clone()).unwrap_or_default()
}

fn has_finalizer(v: &Value) -> bool {
    v["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

fn api_for(client: &Client, ar: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

fn now() -> String {
    k8s_openapi::chrono::Utc::now().to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true)
}

/// The workload status fields summed across members.
const SUMMED: &[&str] = &[
    "replicas",
    "readyReplicas",
    "availableReplicas",
    "updatedReplicas",
];

impl Controller {
    async fn pass(&mut self) -> Result<(), Error> {
        let clusters = list(&self.fed, &kinds::cluster())
            .await
            .map_err(|e| Error::api("list clusters", e))?;
        self.members
            .refresh(&self.fed, &clusters, self.config.member_timeout)
            .await;
        for c in &clusters {
            self.cluster_status(c).await;
        }
        let policies = self.policies().await?;
        let overrides = self.overrides().await?;
        let gvks: BTreeSet<(String, String)> = policies
            .iter()
            .flat_map(|p| &p.spec.resource_selectors)
            .map(|s| (s.api_version.clone(), s.kind.clone()))
            .collect();
        for (api_version, kind) in gvks {
            if let Err(e) = self
                .sync_kind(&api_version, &kind, &policies, &overrides)
                .await
            {
                warn!(%api_version, %kind, "sync failed: {e}");
            }
        }
        Ok(())
    }

    /// Writes the Cluster's Ready condition when it changed, with an Event on each transition.
    async fn cluster_status(&mut self, c: &Value) {
        let name = str_at(c, "/metadata/name");
        let Some(m) = self.members.by_name.get(name) else {
            return;
        };
        let (status, reason, message) = match &m.health {
            Health::Ready => (
                "True",
                "ClusterReady".to_string(),
                format!("member {name}: /readyz ok"),
            ),
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
        let api: Api<DynamicObject> = Api::all_with(self.fed.clone(), &kinds::cluster());
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            warn!(cluster = name, "cluster status not written: {e}");
        }
        info!(cluster = name, status, %reason, "member health");
        let normal = status == "True";
        self.events
            .record(&self.fed, c, normal, &reason, "ready", &message)
            .await;
    }

    async fn policies(&self) -> Result<Vec<Policy>, Error> {
        let mut out = Vec::new();
        for (ar, namespaced) in [
            (kinds::propagation_policy(), true),
            (kinds::cluster_propagation_policy(), false),
        ] {
            let items = list(&self.fed, &ar)
                .await
                .map_err(|e| Error::api(format!("list {}", ar.plural), e))?;
            for p in items {
                match serde_json::from_value(p["spec"].clone()) {
                    Ok(spec) => out.push(Policy {
                        namespace: namespaced
                            .then(|| str_at(&p, "/metadata/namespace").to_string()),
                        name: str_at(&p, "/metadata/name").to_string(),
                        spec,
                    }),
                    Err(e) => warn!(
                        policy = str_at(&p, "/metadata/name"),
                        "policy ignored: spec: {e}"
                    ),
                }
            }
        }
        Ok(out)
    }

    async fn overrides(&mut self) -> Result<Vec<OverridePolicy>, Error> {
        let items = list(&self.fed, &kinds::override_policy())
            .await
            .map_err(|e| Error::api("list overridepolicies", e))?;
        let mut out = Vec::new();
        for p in items {
            match serde_json::from_value(p["spec"].clone()) {
                Ok(spec) => out.push(OverridePolicy {
                    namespace: str_at(&p, "/metadata/namespace").to_string(),
                    name: str_at(&p, "/metadata/name").to_string(),
                    spec,
                }),
                Err(e) => {
                    let msg = format!(
                        "OverridePolicy {}/{}: spec: {e}",
                        str_at(&p, "/metadata/namespace"),
                        str_at(&p, "/metadata/name")
                    );
                    self.events
                        .record(&self.fed, &p, false, "InvalidOverridePolicy", "spec", &msg)
                        .await;
                }
            }
        }
        Ok(out)
    }

    async fn resolve(
        &mut self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, bool), Error> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(r) = self.kinds.get(&key) {
            return Ok(r.clone());
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, caps) = kube::discovery::pinned_kind(&self.fed, &gvk)
            .await
            .map_err(|e| Error::api(format!("discover {api_version} {kind}"), e))?;
        let r = (ar, caps.scope == kube::discovery::Scope::Namespaced);
        self.kinds.insert(key, r.clone());
        Ok(r)
    }

    fn candidates(&self) -> Vec<Candidate<'_>> {
        let mut v: Vec<Candidate<'_>> = self
            .members
            .by_name
            .values()
            .map(|m| Candidate {
                name: &m.name,
                labels: &m.labels,
                schedulable: m
                    .not_ready_since
                    .is_none_or(|t| t.elapsed() < self.config.failover_toleration),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(b.name));
        v
    }

    async fn sync_kind(
        &mut self,
        api_version: &str,
        kind: &str,
        policies: &[Policy],
        overrides: &[OverridePolicy],
    ) -> Result<(), Error> {
        let (ar, namespaced) = self.resolve(api_version, kind).await?;
        let templates = list(&self.fed, &ar)
            .await
            .map_err(|e| Error::api(format!("list {}", ar.plural), e))?;
        let all_uids: HashSet<String> = templates
            .iter()
            .map(|t| str_at(t, "/metadata/uid").to_string())
            .collect();
        let mut plans: Vec<Plan<'_>> = Vec::new();
        // Templates whose member objects go: being deleted with our finalizer.
        let mut deleting: Vec<&Value> = Vec::new();
        let mut notes: Vec<(&Value, bool, &str, String, String)> = Vec::new();
        for t in &templates {
            let uid = str_at(t, "/metadata/uid").to_string();
            if t["metadata"]["deletionTimestamp"].is_string() {
                if has_finalizer(t) {
                    deleting.push(t);
                }
                continue;
            }
            let labels = labels_of(t);
            let ns = t["metadata"]["namespace"].as_str();
            let tref = TemplateRef {
                api_version,
                kind,
                namespace: ns,
                name: str_at(t, "/metadata/name"),
                labels: &labels,
            };
            let Some((policy, others)) = policy::winner(policies, &tref) else {
                continue;
            };
            if !others.is_empty() {
                let msg = format!(
                    "{} wins over {} (Karmada's priority: namespaced first, then spec.priority, then name > labelSelector > kind match)",
                    policy::display(policy),
                    others.join(", ")
                );
                notes.push((t, true, "PolicyConflict", "policy".into(), msg));
            }
            let replicas = t["spec"]["replicas"].as_i64();
            let candidates = self.candidates();
            let mut plan = Plan {
                template: t,
                uid,
                wants: BTreeMap::new(),
                decision: BTreeMap::new(),
                policy: policy::display(policy),
                schedule_error: None,
            };
            match placement::place(&policy.spec.placement, &candidates, replicas) {
                Err(e) => plan.schedule_error = Some(format!("{}: {e}", plan.policy)),
                Ok(decision) => {
                    let mut ops: Vec<(u8, &OverridePolicy)> = overrides
                        .iter()
                        .filter(|o| Some(o.namespace.as_str()) == ns || !namespaced)
                        .filter_map(|o| {
                            if o.spec.resource_selectors.is_empty() {
                                return Some((0, o));
                            }
                            policy::implicit_priority(&o.spec.resource_selectors, None, &tref)
                                .map(|p| (p, o))
                        })
                        .collect();
                    // Less specific first, so the most specific override is applied last and wins.
                    ops.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.name.cmp(&b.1.name)));
                    let ops: Vec<&OverridePolicy> = ops.into_iter().map(|(_, o)| o).collect();
                    for (member, share) in &decision {
                        let labels = self
                            .members
                            .by_name
                            .get(member)
                            .map(|m| m.labels.clone())
                            .unwrap_or_default();
                        plan.wants.insert(
                            member.clone(),
                            render::render(t, *share, &ops, member, &labels),
                        );
                    }
                    plan.decision = decision;
                }
            }
            plans.push(plan);
        }
        for (t, normal, reason, topic, msg) in notes {
            self.events
                .record(&self.fed, t, normal, reason, &topic, &msg)
                .await;
        }

        // Finalizers first, so a template deleted from now on waits for its member objects.
        for p in &plans {
            if !has_finalizer(p.template) {
                let mut f: Vec<Value> = p.template["metadata"]["finalizers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                f.push(json!(FINALIZER));
                let patch = json!({"metadata": {"finalizers": f, "resourceVersion": p.template["metadata"]["resourceVersion"]}});
                let api = api_for(&self.fed, &ar, p.template["metadata"]["namespace"].as_str());
                if let Err(e) = api
                    .patch(
                        str_at(p.template, "/metadata/name"),
                        &PatchParams::default(),
                        &Patch::Merge(patch),
                    )
                    .await
                {
                    debug!(template = %render::identity(p.template), "finalizer not added (retried next pass): {e}");
                }
            }
        }

        // Per member: what it should hold, and which template uids must be gone from it.
        let deleting_uids: HashSet<String> = deleting
            .iter()
            .map(|t| str_at(t, "/metadata/uid").to_string())
            .collect();
        let mut jobs = Vec::new();
        for m in self.members.by_name.values() {
            let mut wants: Vec<(String, Value)> = Vec::new();
            let mut errors: Vec<(String, String)> = Vec::new();
            let mut placed: HashSet<String> = HashSet::new();
            let mut untouched: HashSet<String> = HashSet::new();
            for p in &plans {
                if p.schedule_error.is_some() {
                    untouched.insert(p.uid.clone());
                    continue;
                }
                match p.wants.get(&m.name) {
                    Some(Ok(v)) => {
                        placed.insert(p.uid.clone());
                        wants.push((p.uid.clone(), v.clone()));
                    }
                    Some(Err(e)) => {
                        placed.insert(p.uid.clone());
                        errors.push((p.uid.clone(), format!("member {}: {e}", m.name)));
                    }
                    None => {}
                }
            }
            // Templates no policy selects keep whatever members hold (as Karmada does when a
            // policy goes); only deleted templates and moved placements remove member objects.
            for t in &templates {
                let uid = str_at(t, "/metadata/uid");
                if !deleting_uids.contains(uid) && !plans.iter().any(|p| p.uid == uid) {
                    untouched.insert(uid.to_string());
                }
            }
            let client = m.client.clone().filter(|_| m.health == Health::Ready);
            let not_ready = match &m.health {
                Health::Ready => String::new(),
                Health::NotReady { message, .. } => message.clone(),
            };
            let job = sync_member(
                m.name.clone(),
                client,
                not_ready,
                ar.clone(),
                namespaced,
                wants,
                errors,
                placed,
                untouched,
                all_uids.clone(),
            );
            jobs.push(job);
        }
        let results = futures_util::future::join_all(jobs).await;
        let mut outcomes: HashMap<String, BTreeMap<String, MemberOutcome>> = HashMap::new();
        let mut remaining: HashSet<String> = HashSet::new();
        let mut blocked: HashSet<String> = HashSet::new();
        for (member, r) in results {
            for (uid, o) in r.outcomes {
                outcomes.entry(uid).or_default().insert(member.clone(), o);
            }
            remaining.extend(r.remaining);
            if r.unreachable {
                if let Some(m) = self.members.by_name.get(&member) {
                    if m.not_ready_since
                        .is_none_or(|t| t.elapsed() < self.config.failover_toleration)
                    {
                        blocked.insert(member.clone());
                    }
                }
            }
        }

        for p in &plans {
            let per_member = outcomes.remove(&p.uid).unwrap_or_default();
            self.report(&ar, p, &per_member).await;
        }
        for t in deleting {
            let uid = str_at(t, "/metadata/uid");
            if remaining.contains(uid) || !blocked.is_empty() {
                debug!(template = %render::identity(t), ?blocked, "waiting for member objects to go");
                continue;
            }
            self.finish_deletion(&ar, t).await;
        }
        Ok(())
    }

    /// Writes the ResourceBinding, the summed status on the template, and Events for failures.
    async fn report(
        &mut self,
        ar: &ApiResource,
        p: &Plan<'_>,
        per_member: &BTreeMap<String, MemberOutcome>,
    ) {
        let t = p.template;
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
        // The template's status: workload replica counts summed across members.
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
        // Cluster-scoped templates would need a ClusterResourceBinding (not built).
        let Some(ns) = t["metadata"]["namespace"].as_str() else {
            return;
        };
        let name = format!(
            "{}-{}",
            str_at(t, "/metadata/name"),
            str_at(t, "/kind").to_lowercase()
        );
        let clusters: Vec<Value> = p
            .decision
            .iter()
            .map(|(n, r)| match r {
                Some(r) => json!({"name": n, "replicas": r}),
                None => json!({"name": n}),
            })
            .collect();
        let spec = json!({
            "resource": {"apiVersion": t["apiVersion"], "kind": t["kind"], "namespace": ns,
                "name": t["metadata"]["name"], "uid": p.uid},
            "replicas": t["spec"]["replicas"],
            "propagationPolicy": p.policy,
            "clusters": clusters,
        });
        let aggregated: Vec<Value> = per_member
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
        let last = self.last_binding.get(&p.uid);
        let rbs: Api<DynamicObject> =
            Api::namespaced_with(self.fed.clone(), ns, &kinds::resource_binding());
        if last.is_none_or(|(s, _)| *s != spec) {
            let rb = json!({"apiVersion": "work.karmada.io/v1alpha1", "kind": "ResourceBinding",
                "metadata": {"name": name, "namespace": ns}, "spec": spec});
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
        if last.is_none_or(|(s, st)| *s != spec || *st != status) {
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
        self.last_binding.insert(p.uid.clone(), (spec, status));
    }

    /// Member objects are gone: drop the binding and the finalizer so the template goes.
    async fn finish_deletion(&mut self, ar: &ApiResource, t: &Value) {
        let uid = str_at(t, "/metadata/uid").to_string();
        if let Some(ns) = t["metadata"]["namespace"].as_str() {
            let name = format!(
                "{}-{}",
                str_at(t, "/metadata/name"),
                str_at(t, "/kind").to_lowercase()
            );
            let rbs: Api<DynamicObject> =
                Api::namespaced_with(self.fed.clone(), ns, &kinds::resource_binding());
            match rbs.delete(&name, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(kube::core::ErrorResponse { code: 404, .. })) => {}
                Err(e) => warn!(binding = %name, "binding not deleted: {e}"),
            }
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
                self.last_binding.remove(&uid);
            }
            Err(e) => {
                debug!(template = %render::identity(t), "finalizer not removed (retried): {e}")
            }
        }
    }
}

/// What a member's sync produced.
struct MemberResult {
    outcomes: HashMap<String, MemberOutcome>,
    /// Template uids that still have objects in this member after the pass.
    remaining: HashSet<String>,
    /// The member could not be listed (its objects are unknown).
    unreachable: bool,
}

/// Brings one member in line: applies what differs, deletes objects of templates that are gone
/// or placed elsewhere, and reports each placed template's outcome and live status.
#[allow(clippy::too_many_arguments)]
async fn sync_member(
    member: String,
    client: Option<Client>,
    not_ready: String,
    ar: ApiResource,
    namespaced: bool,
    wants: Vec<(String, Value)>,
    errors: Vec<(String, String)>,
    placed: HashSet<String>,
    untouched: HashSet<String>,
    all_uids: HashSet<String>,
) -> (String, MemberResult) {
    let mut r = MemberResult {
        outcomes: HashMap::new(),
        remaining: HashSet::new(),
        unreachable: false,
    };
    for (uid, e) in errors {
        r.outcomes.insert(
            uid,
            MemberOutcome {
                error: Some(e),
                status: None,
            },
        );
    }
    let fail_all = |r: &mut MemberResult, msg: String| {
        for (uid, _) in &wants {
            r.outcomes.insert(
                uid.clone(),
                MemberOutcome {
                    error: Some(msg.clone()),
                    status: None,
                },
            );
        }
    };
    let Some(client) = client else {
        r.unreachable = true;
        fail_all(&mut r, format!("member {member} is not Ready: {not_ready}"));
        return (member, r);
    };
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let live = match all
        .list(&ListParams::default().labels(TEMPLATE_UID_LABEL))
        .await
    {
        Ok(l) => l.items,
        Err(e) => {
            r.unreachable = true;
            fail_all(&mut r, format!("member {member}: list {}: {e}", ar.plural));
            return (member, r);
        }
    };
    let key = |ns: Option<&str>, name: &str| format!("{}/{name}", ns.unwrap_or(""));
    let mut live_by_key: HashMap<String, Value> = HashMap::new();
    for o in live {
        let v = serde_json::to_value(&o).unwrap_or_default();
        let uid = o
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(TEMPLATE_UID_LABEL))
            .cloned()
            .unwrap_or_default();
        let keep = placed.contains(&uid)
            || untouched.contains(&uid)
            || (!all_uids.contains(&uid) && uid.is_empty());
        if !keep {
            // The template is gone, being deleted, or placed elsewhere now.
            let api = api_for(&client, &ar, o.metadata.namespace.as_deref());
            let name = o.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {
                    info!(member = %member, object = %render::identity(&v), "member object deleted")
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    warn!(member = %member, object = %render::identity(&v), "member object not deleted: {e}");
                    r.remaining.insert(uid);
                }
            }
            continue;
        }
        r.remaining.insert(uid);
        live_by_key.insert(
            key(
                o.metadata.namespace.as_deref(),
                o.metadata.name.as_deref().unwrap_or(""),
            ),
            v,
        );
    }
    let mut namespaces_ok: HashSet<String> = HashSet::new();
    for (uid, want) in wants {
        let ns = want["metadata"]["namespace"].as_str().map(str::to_string);
        let name = str_at(&want, "/metadata/name").to_string();
        let live = live_by_key.get(&key(ns.as_deref(), &name));
        if let Some(l) = live {
            if render::contained(&want, l) {
                r.outcomes.insert(
                    uid,
                    MemberOutcome {
                        error: None,
                        status: l.get("status").cloned(),
                    },
                );
                continue;
            }
        }
        if let (true, Some(ns)) = (namespaced, ns.as_deref()) {
            if !namespaces_ok.contains(ns) {
                if let Err(e) = ensure_namespace(&client, ns).await {
                    r.outcomes.insert(
                        uid,
                        MemberOutcome {
                            error: Some(format!("member {member}: namespace {ns}: {e}")),
                            status: None,
                        },
                    );
                    continue;
                }
                namespaces_ok.insert(ns.to_string());
            }
        }
        let api = api_for(&client, &ar, ns.as_deref());
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch(&name, &pp, &Patch::Apply(&want)).await {
            Ok(o) => {
                debug!(member = %member, object = %render::identity(&want), "applied");
                let v = serde_json::to_value(&o).unwrap_or_default();
                r.remaining.insert(uid.clone());
                r.outcomes.insert(
                    uid,
                    MemberOutcome {
                        error: None,
                        status: v.get("status").cloned(),
                    },
                );
            }
            Err(e) => {
                let msg = match e {
                    kube::Error::Api(s) => {
                        format!("member {member}: {} {}: {}", s.code, s.reason, s.message)
                    }
                    e => format!("member {member}: apply {}: {e}", render::identity(&want)),
                };
                r.outcomes.insert(
                    uid,
                    MemberOutcome {
                        error: Some(msg),
                        status: None,
                    },
                );
            }
        }
    }
    (member, r)
}

/// Creates the namespace a namespaced object needs in the member, if it is missing.
async fn ensure_namespace(client: &Client, ns: &str) -> Result<(), kube::Error> {
    use k8s_openapi::api::core::v1::Namespace;
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(ns).await?.is_some() {
        return Ok(());
    }
    let obj: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
    match api.create(&Default::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
