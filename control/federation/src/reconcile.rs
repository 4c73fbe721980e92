//! One turn for one kind: the queued templates' placement, the rendered object applied to each
//! member (server-side apply, only when the member's object differs: drift is corrected here),
//! member objects of gone or moved templates deleted, then status back — the (Cluster)
//! ResourceBinding per template and the summed workload status on the template (see
//! [`crate::report`]).
//!
//! Templates come from the kind's watch cache and member objects from each member's watch cache
//! (a member whose cache is still loading is listed directly). Members are worked on
//! concurrently, and within a member up to [`PER_MEMBER`] writes are in flight.
//!
//! One member's failure (unreachable, refused credentials, an override its API server rejects)
//! becomes that member's entry in the binding's status, a condition and an Event naming the member
//! and the field; the other members are synced in the same turn regardless.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client};
use serde_json::{json, Value};
use tracing::{debug, info, warn};

pub(crate) use crate::apply::{api_for, str_at};
use crate::apply::{apply_object, delete_object, ensure_namespace};
use crate::cache::{Cache, KindKey};
use crate::controller::Controller;
use crate::members::Health;
use crate::overrides::OverridePolicy;
use crate::placement::{self, Candidate};
use crate::policy::{self, TemplateRef};
use crate::report::{Job, Report};
use crate::{capacity, render};
use crate::{Error, FINALIZER, TEMPLATE_UID_LABEL};

/// Writes in flight per member, and template status reports in flight, per turn.
pub const PER_MEMBER: usize = 16;

/// What one member reported for one template in a turn.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemberOutcome {
    /// `Some(error)` when the object could not be applied.
    pub error: Option<String>,
    /// The member object's status, when it exists.
    pub status: Option<Value>,
}

/// One template's plan for this turn.
pub(crate) struct Plan<'t> {
    pub template: &'t Value,
    pub uid: String,
    /// The overrides that apply, least specific first.
    pub ops: Vec<&'t OverridePolicy>,
    pub decision: placement::Decision,
    pub policy: String,
    pub schedule_error: Option<String>,
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(v["metadata"]["labels"].clone()).unwrap_or_default()
}

fn has_finalizer(v: &Value) -> bool {
    v["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// The overrides that apply to `t`, least specific first so the most specific is applied last
/// and wins: ClusterOverridePolicies before OverridePolicies (Karmada's order), each by implicit
/// priority (no selector, kind, labels, name) and then name.
fn overrides_for<'o>(
    overrides: &'o [OverridePolicy],
    tref: &TemplateRef<'_>,
) -> Vec<&'o OverridePolicy> {
    let mut ops: Vec<(bool, u8, &OverridePolicy)> = overrides
        .iter()
        .filter(|o| o.namespace.is_empty() || Some(o.namespace.as_str()) == tref.namespace)
        .filter_map(|o| {
            let namespaced = !o.namespace.is_empty();
            if o.spec.resource_selectors.is_empty() {
                return Some((namespaced, 0, o));
            }
            policy::implicit_priority(&o.spec.resource_selectors, None, tref)
                .map(|p| (namespaced, p, o))
        })
        .collect();
    ops.sort_by(|a, b| (a.0, a.1, &a.2.name).cmp(&(b.0, b.1, &b.2.name)));
    ops.into_iter().map(|(_, _, o)| o).collect()
}

impl Controller {
    /// The template's last division (member → replicas), as the binding's spec.clusters hold
    /// it: from what this controller last decided, else (after a restart) read from the binding.
    async fn previous_division(&self, t: &Value, uid: &str) -> Option<BTreeMap<String, i64>> {
        let known = self
            .divisions
            .lock()
            .expect("division lock")
            .get(uid)
            .cloned();
        if known.is_some() {
            return known;
        }
        let (name, api, _) = crate::report::binding_of(&self.fed, t);
        let rb = api.get_opt(&name).await.ok().flatten()?;
        let rb = serde_json::to_value(rb).ok()?;
        if rb["spec"]["resource"]["uid"] != uid {
            return None;
        }
        Some(
            rb["spec"]["clusters"]
                .as_array()?
                .iter()
                .filter_map(|c| Some((c["name"].as_str()?.to_string(), c["replicas"].as_i64()?)))
                .collect(),
        )
    }

    /// Adds the cleanup finalizer to a template (on its resourceVersion: a conflict is retried
    /// on the template's next event).
    async fn add_finalizer(&self, ar: &ApiResource, t: &Value) {
        let mut f: Vec<Value> = t["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        f.push(json!(FINALIZER));
        let patch = json!({"metadata": {"finalizers": f, "resourceVersion": t["metadata"]["resourceVersion"]}});
        let api = api_for(&self.fed, ar, t["metadata"]["namespace"].as_str());
        if let Err(e) = api
            .patch(
                str_at(t, "/metadata/name"),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            debug!(template = %render::identity(t), "finalizer not added (retried on the next event): {e}");
        }
    }

    fn candidates(&self) -> Vec<Candidate<'_>> {
        let mut v: Vec<Candidate<'_>> = self
            .members
            .by_name
            .values()
            .map(|m| Candidate {
                name: &m.name,
                labels: &m.labels,
                taints: &m.taints,
                schedulable: self.schedulable(m),
                region: &m.region,
                zones: &m.zones,
                summary: m.summary.as_ref(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(b.name));
        v
    }

    /// Reconciles the templates of `key` whose uid is in `only` (all of them for `None`).
    pub(crate) async fn sync_kind(
        &self,
        key: &KindKey,
        only: Option<&HashSet<String>>,
    ) -> Result<(), Error> {
        let Some(kind) = self.kinds.get(key) else {
            return Ok(());
        };
        let (api_version, kind_name) = (key.0.as_str(), key.1.as_str());
        let (ar, namespaced) = (&kind.ar, kind.namespaced);
        if !kind.templates.cache.ready() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let wanted = |uid: &str| only.is_none_or(|s| s.contains(uid));
        let cache = &kind.templates.cache;
        let all_uids: HashSet<String> = cache
            .map_values(|t| str_at(t, "/metadata/uid").to_string())
            .into_iter()
            .collect();
        let templates = cache.values_where(|t| wanted(str_at(t, "/metadata/uid")));
        let mut plans: Vec<Plan<'_>> = Vec::new();
        // Templates whose member objects go: being deleted with our finalizer.
        let mut deleting: Vec<&Value> = Vec::new();
        // Templates no policy selects keep whatever members hold (as Karmada does when a
        // policy goes); only deleted templates and moved placements remove member objects.
        let mut untouched: HashSet<String> = HashSet::new();
        let mut notes: Vec<(&Value, String)> = Vec::new();
        let candidates = self.candidates();
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
                kind: kind_name,
                namespace: ns,
                name: str_at(t, "/metadata/name"),
                labels: &labels,
            };
            let Some((policy, others)) = policy::winner(&self.policies, &tref) else {
                untouched.insert(uid);
                continue;
            };
            if !others.is_empty() {
                notes.push((t, format!(
                    "{} wins over {} (Karmada's priority: namespaced first, then spec.priority, then name > labelSelector > kind match)",
                    policy::display(policy),
                    others.join(", ")
                )));
            }
            let replicas = t["spec"]["replicas"].as_i64();
            let mut plan = Plan {
                template: t,
                uid,
                ops: Vec::new(),
                decision: BTreeMap::new(),
                policy: policy::display(policy),
                schedule_error: None,
            };
            // Division by capacity needs the pod's requests and the previous division.
            let by_capacity = placement::divides_by_capacity(&policy.spec.placement);
            let (requirements, previous) = if by_capacity {
                (
                    capacity::replica_requirements(t),
                    self.previous_division(t, &plan.uid).await,
                )
            } else {
                (None, None)
            };
            let request = placement::Request {
                replicas,
                requirements: requirements.as_ref(),
                previous: previous.as_ref(),
            };
            match placement::place(&policy.spec.placement, &candidates, &request) {
                Err(e) => {
                    plan.schedule_error = Some(format!("{}: {e}", plan.policy));
                    // The binding keeps the division the members still hold.
                    plan.decision = previous
                        .into_iter()
                        .flatten()
                        .map(|(m, r)| (m, Some(r)))
                        .collect();
                }
                Ok(decision) => {
                    if by_capacity {
                        let division = decision
                            .iter()
                            .filter_map(|(m, r)| Some((m.clone(), (*r)?)))
                            .collect();
                        self.divisions
                            .lock()
                            .expect("division lock")
                            .insert(plan.uid.clone(), division);
                    }
                    // Rendered per member when its turn comes, not here: a turn over every
                    // template would otherwise hold templates × members objects at once.
                    plan.ops = overrides_for(&self.overrides, &tref);
                    plan.decision = decision;
                }
            }
            plans.push(plan);
        }
        // Nothing to do when every queued template is one no policy selects.
        if plans.is_empty()
            && deleting.is_empty()
            && only.is_some_and(|s| s.iter().all(|u| untouched.contains(u)))
        {
            return Ok(());
        }
        for (t, msg) in notes {
            self.events
                .record(&self.fed, t, true, "PolicyConflict", "policy", &msg)
                .await;
        }

        let placed_at = started.elapsed();
        // Finalizers, so a template deleted from now on waits for its member objects; written
        // while the members are synced rather than before (one federation round trip less on
        // the way to the members). A template deleted before its finalizer lands leaves nothing
        // behind either: its Delete event queues its uid, and that turn deletes the member
        // objects carrying it (see `sync_member`).
        // (The futures are made before they are streamed: a stream of closures over borrowed
        // plans, held across the await below, is not provably Send.)
        let adds: Vec<_> = plans
            .iter()
            .filter(|p| !has_finalizer(p.template))
            .map(|p| self.add_finalizer(ar, p.template))
            .collect();
        let finalizers = stream::iter(adds)
            .buffer_unordered(PER_MEMBER)
            .collect::<Vec<()>>();

        // A template that cannot be placed keeps what members hold until it can.
        for p in plans.iter().filter(|p| p.schedule_error.is_some()) {
            untouched.insert(p.uid.clone());
        }
        // Per member: what it should hold, and which template uids must be gone from it.
        let mut jobs = Vec::new();
        for m in self.members.by_name.values() {
            let mut wants: Vec<Want<'_>> = Vec::new();
            let mut placed: HashSet<String> = HashSet::new();
            for p in plans.iter().filter(|p| p.schedule_error.is_none()) {
                if let Some(share) = p.decision.get(&m.name) {
                    placed.insert(p.uid.clone());
                    wants.push(Want {
                        uid: &p.uid,
                        template: p.template,
                        share: *share,
                        ops: &p.ops,
                    });
                }
            }
            let client = m.client.clone().filter(|_| m.health == Health::Ready);
            let not_ready = match &m.health {
                Health::Ready => String::new(),
                Health::NotReady { message, .. } => message.clone(),
            };
            jobs.push(sync_member(MemberJob {
                member: m.name.clone(),
                client,
                cache: self.member_cache(&m.name, key),
                not_ready,
                ar: ar.clone(),
                namespaced,
                labels: m.labels.clone(),
                wants,
                placed,
                untouched: &untouched,
                all_uids: &all_uids,
                only,
                pull: m.pull.then(|| crate::work::PullTarget {
                    fed: self.fed.clone(),
                    works: self.works.cache.clone(),
                }),
            }));
        }
        let (_, results) =
            futures_util::future::join(finalizers, futures_util::future::join_all(jobs)).await;
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
                    if self.schedulable(m) {
                        blocked.insert(member.clone());
                    }
                }
            }
        }

        debug!(kind = %kind_name, templates = plans.len(), placed = ?placed_at, synced = ?started.elapsed(), "members synced");
        // Status goes back from the reporter's task; this turn is done with the members.
        for p in plans {
            let report = Report {
                ar: ar.clone(),
                template: p.template.clone(),
                per_member: outcomes.remove(&p.uid).unwrap_or_default(),
                uid: p.uid,
                decision: p.decision,
                policy: p.policy,
                schedule_error: p.schedule_error,
            };
            let _ = self.reports.send(Job::Status(report));
        }
        for t in deleting {
            let uid = str_at(t, "/metadata/uid");
            if remaining.contains(uid) || !blocked.is_empty() {
                debug!(template = %render::identity(t), ?blocked, "waiting for member objects to go");
                continue;
            }
            self.divisions.lock().expect("division lock").remove(uid);
            let _ = self.reports.send(Job::Release {
                ar: ar.clone(),
                template: t.clone(),
            });
        }
        Ok(())
    }
}

/// What a member's sync produced.
pub(crate) struct MemberResult {
    pub(crate) outcomes: HashMap<String, MemberOutcome>,
    /// Template uids that still have objects in this member after the turn.
    pub(crate) remaining: HashSet<String>,
    /// The member could not be listed (its objects are unknown).
    pub(crate) unreachable: bool,
}

impl MemberResult {
    /// The member could not be reached or listed: every wanted template failed with `msg`.
    pub(crate) fn unreachable(wants: &[Want<'_>], msg: &str) -> Self {
        MemberResult {
            outcomes: wants
                .iter()
                .map(|w| (w.uid.to_string(), failed(msg.to_string())))
                .collect(),
            remaining: HashSet::new(),
            unreachable: true,
        }
    }
}

/// One member's share of a turn.
pub(crate) struct MemberJob<'a> {
    pub(crate) member: String,
    pub(crate) client: Option<Client>,
    /// The member's watch cache of this kind (listed directly while it is loading).
    pub(crate) cache: Option<Arc<Cache>>,
    pub(crate) not_ready: String,
    pub(crate) ar: ApiResource,
    pub(crate) namespaced: bool,
    /// The member's labels (overrides may name them).
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) wants: Vec<Want<'a>>,
    /// Template uids placed on this member.
    pub(crate) placed: HashSet<String>,
    /// Template uids whose member objects stay as they are.
    pub(crate) untouched: &'a HashSet<String>,
    pub(crate) all_uids: &'a HashSet<String>,
    /// The uids this turn is about (`None`: all).
    pub(crate) only: Option<&'a HashSet<String>>,
    /// A Pull member: its Works on the federation API are written instead (see [`crate::work`]).
    pub(crate) pull: Option<crate::work::PullTarget>,
}

/// A template placed on a member, rendered for it only when the member's job looks at it.
pub(crate) struct Want<'a> {
    pub(crate) uid: &'a str,
    pub(crate) template: &'a Value,
    pub(crate) share: Option<i64>,
    pub(crate) ops: &'a [&'a OverridePolicy],
}

impl Want<'_> {
    pub(crate) fn render(
        &self,
        member: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Value, String> {
        render::render(self.template, self.share, self.ops, member, labels)
            .map_err(|e| format!("member {member}: {e}"))
    }
}

/// The template uid a member object's label names ("" when it has none).
pub(crate) fn template_uid(v: &Value) -> &str {
    v["metadata"]["labels"][TEMPLATE_UID_LABEL]
        .as_str()
        .unwrap_or_default()
}

pub(crate) fn failed(msg: String) -> MemberOutcome {
    MemberOutcome {
        error: Some(msg),
        status: None,
    }
}

/// Brings one member in line: applies what differs, deletes objects of templates that are gone
/// or placed elsewhere, and reports each placed template's outcome and live status.
async fn sync_member(mut job: MemberJob<'_>) -> (String, MemberResult) {
    if let Some(pull) = job.pull.take() {
        return crate::work::sync_pull_member(job, pull).await;
    }
    let MemberJob {
        member,
        client,
        cache,
        not_ready,
        ar,
        namespaced,
        labels,
        wants,
        placed,
        untouched,
        all_uids,
        only,
        pull: _,
    } = job;
    let started = std::time::Instant::now();
    let Some(client) = client else {
        let msg = format!("member {member} is not Ready: {not_ready}");
        return (member, MemberResult::unreachable(&wants, &msg));
    };
    let mut r = MemberResult {
        outcomes: HashMap::new(),
        remaining: HashSet::new(),
        unreachable: false,
    };
    let live: Vec<Value> = match cache.as_ref().filter(|c| c.ready()) {
        Some(c) => c.values_where(|v| only.is_none_or(|s| s.contains(template_uid(v)))),
        None => {
            let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            match all
                .list(&ListParams::default().labels(TEMPLATE_UID_LABEL))
                .await
            {
                Ok(l) => l
                    .items
                    .into_iter()
                    .filter_map(|o| serde_json::to_value(o).ok())
                    .collect(),
                Err(e) => {
                    let msg = format!("member {member}: list {}: {e}", ar.plural);
                    return (member, MemberResult::unreachable(&wants, &msg));
                }
            }
        }
    };
    let key = |ns: Option<&str>, name: &str| format!("{}/{name}", ns.unwrap_or(""));
    let mut live_by_key: HashMap<String, Value> = HashMap::new();
    let mut doomed: Vec<(String, Value)> = Vec::new();
    for v in live {
        let uid = template_uid(&v).to_string();
        if only.is_some_and(|s| !s.contains(&uid)) {
            continue;
        }
        let keep = placed.contains(&uid)
            || untouched.contains(&uid)
            || (!all_uids.contains(&uid) && uid.is_empty());
        if !keep {
            // The template is gone, being deleted, or placed elsewhere now.
            doomed.push((uid, v));
            continue;
        }
        r.remaining.insert(uid);
        let k = key(
            v["metadata"]["namespace"].as_str(),
            str_at(&v, "/metadata/name"),
        );
        live_by_key.insert(k, v);
    }
    let deletions = stream::iter(doomed)
        .map(|(uid, v)| {
            let client = &client;
            let ar = &ar;
            let member = &member;
            async move {
                match delete_object(client, ar, &v).await {
                    Ok(()) => {
                        info!(member = %member, object = %render::identity(&v), "member object deleted");
                        None
                    }
                    Err(e) => {
                        warn!(member = %member, object = %render::identity(&v), "member object not deleted: {e}");
                        Some(uid)
                    }
                }
            }
        })
        .buffer_unordered(PER_MEMBER)
        .collect::<Vec<_>>()
        .await;
    r.remaining.extend(deletions.into_iter().flatten());

    // What differs from the member's object (each rendered, compared and dropped: only the
    // writes in flight hold a rendered object); namespaces it needs first.
    let mut to_apply: Vec<Want<'_>> = Vec::new();
    let mut needed: HashSet<String> = HashSet::new();
    for w in wants {
        let want = match w.render(&member, &labels) {
            Ok(v) => v,
            Err(e) => {
                r.outcomes.insert(w.uid.to_string(), failed(e));
                continue;
            }
        };
        let ns = want["metadata"]["namespace"].as_str();
        let live = live_by_key.get(&key(ns, str_at(&want, "/metadata/name")));
        if let Some(l) = live.filter(|l| render::contained(&want, l)) {
            r.outcomes.insert(
                w.uid.to_string(),
                MemberOutcome {
                    error: None,
                    status: l.get("status").cloned(),
                },
            );
            continue;
        }
        needed.extend(ns.map(str::to_string));
        to_apply.push(w);
    }
    let mut bad_ns: HashMap<String, String> = HashMap::new();
    if namespaced {
        for ns in &needed {
            if let Err(e) = ensure_namespace(&client, ns).await {
                bad_ns.insert(
                    ns.to_string(),
                    format!("member {member}: namespace {ns}: {e}"),
                );
            }
        }
    }
    // The futures are made first and streamed after (see the finalizers in `sync_kind`); each
    // renders its object only when it runs, so at most PER_MEMBER are held at once.
    let target = Target {
        client: &client,
        ar: &ar,
        member: &member,
        labels: &labels,
        cache: cache.as_deref(),
        bad_ns: &bad_ns,
    };
    let writes: Vec<_> = to_apply.into_iter().map(|w| target.apply(w)).collect();
    let applies = stream::iter(writes)
        .buffer_unordered(PER_MEMBER)
        .collect::<Vec<_>>()
        .await;
    debug!(member = %member, applied = applies.len(), elapsed = ?started.elapsed(), "member synced");
    for (uid, exists, outcome) in applies {
        if exists {
            r.remaining.insert(uid.clone());
        }
        r.outcomes.insert(uid, outcome);
    }
    (member, r)
}

/// Where a member's writes go, for [`Target::apply`].
struct Target<'a> {
    client: &'a Client,
    ar: &'a ApiResource,
    member: &'a str,
    labels: &'a BTreeMap<String, String>,
    cache: Option<&'a Cache>,
    /// Namespaces that could not be made, with the error.
    bad_ns: &'a HashMap<String, String>,
}

impl Target<'_> {
    /// Renders `w` and server-side applies it; (uid, whether the object exists now, outcome).
    async fn apply(&self, w: Want<'_>) -> (String, bool, MemberOutcome) {
        let (ar, member) = (self.ar, self.member);
        let uid = w.uid.to_string();
        let want = match w.render(member, self.labels) {
            Ok(v) => v,
            Err(e) => return (uid, false, failed(e)),
        };
        let ns = want["metadata"]["namespace"].as_str();
        if let Some(e) = ns.and_then(|ns| self.bad_ns.get(ns)) {
            return (uid, false, failed(e.clone()));
        }
        match apply_object(self.client, ar, member, &want).await {
            Ok(v) => {
                debug!(member = %member, object = %render::identity(&want), "applied");
                let status = v.get("status").cloned();
                if let Some(c) = self.cache {
                    c.insert(v);
                }
                (
                    uid,
                    true,
                    MemberOutcome {
                        error: None,
                        status,
                    },
                )
            }
            Err(msg) => (uid, false, failed(msg)),
        }
    }
}
