//! The controller: watches feed one queue keyed by template (kind + uid); each turn takes every
//! key queued so far and reconciles just those templates (see [`crate::reconcile`]), with the
//! members worked on concurrently.
//!
//! What is watched: on the federation API the Clusters, the four policy kinds, the templates
//! of every kind a policy selects and the Works written for Pull members (their agents' status
//! reports are their templates' events); in each Ready Push member, its objects of those kinds
//! that carry the template label. A template event reconciles that template; a member object event (drift,
//! a status change, a deletion) reconciles the template it belongs to, which also sums the status
//! back; a policy event or a change in members' health or labels reconciles every template. A
//! full pass every `full_resync` is the safety net.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::cache::{self, Cache, KindKey, Msg, Watch};
use crate::capacity::Summary;
use crate::events::Recorder;
use crate::members::{Health, Member, Members};
use crate::overrides::OverridePolicy;
use crate::policy::{Policy, Taint};
use crate::report::{self, Reporter};
use crate::{health, kinds, placement, Config, Error, TEMPLATE_UID_LABEL};

/// Most keys taken from the queue in one turn (the rest wait for the next turn).
const MAX_BATCH: usize = 100_000;

/// A template kind the policies select: its resource, scope and the watch of its templates.
pub(crate) struct Kind {
    pub ar: ApiResource,
    pub namespaced: bool,
    pub templates: Watch,
}

pub(crate) struct Controller {
    pub fed: Client,
    pub config: Config,
    pub members: Members,
    pub events: Arc<Recorder>,
    tx: UnboundedSender<Msg>,
    pub policies: Vec<Policy>,
    pub overrides: Vec<OverridePolicy>,
    policy_watches: Vec<(ApiResource, Watch)>,
    pub kinds: BTreeMap<KindKey, Kind>,
    /// Per (member, kind): the watch of the member's objects, and the fingerprint of the member
    /// client it was started with.
    pub member_watches: HashMap<(String, KindKey), (String, Watch)>,
    /// Where a turn's outcome goes to be written to the federation API (its own task).
    pub reports: UnboundedSender<report::Job>,
    /// The last division of each Divided template (uid → member → replicas), as handed to the
    /// members; the binding holds the same once its report is written.
    pub divisions: Mutex<HashMap<String, BTreeMap<String, i64>>>,
    /// What placement saw of each member at the last turn.
    last_view: HashMap<String, PlacementView>,
    /// The Works on the federation API (what Pull members' agents apply), for every member.
    pub works: Watch,
}

/// The keys of one turn.
#[derive(Default)]
struct Batch {
    all: bool,
    policies: bool,
    clusters: bool,
    members: Option<Vec<Member>>,
    templates: HashMap<KindKey, HashSet<String>>,
}

impl Batch {
    fn add(&mut self, m: Msg) {
        match m {
            Msg::Template { kind, uid } => {
                self.templates.entry(kind).or_default().insert(uid);
            }
            Msg::Policies => self.policies = true,
            Msg::Clusters => self.clusters = true,
            Msg::Members(m) => self.members = Some(m),
        }
    }
}

/// Runs until the task is dropped.
pub async fn run(fed: Client, config: Config) -> Result<(), Error> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let events = Arc::new(Recorder::default());
    let fed_watch = |ar: ApiResource, m: Msg| {
        let api: Api<DynamicObject> = Api::all_with(fed.clone(), &ar);
        let on_change = m.clone();
        cache::watch(
            api,
            ar,
            None,
            tx.clone(),
            move |_| Some(on_change.clone()),
            Some(m),
        )
    };
    let clusters = fed_watch(kinds::cluster(), Msg::Clusters);
    let policy_watches: Vec<(ApiResource, Watch)> = [
        kinds::propagation_policy(),
        kinds::cluster_propagation_policy(),
        kinds::override_policy(),
        kinds::cluster_override_policy(),
    ]
    .into_iter()
    .map(|ar| (ar.clone(), fed_watch(ar, Msg::Policies)))
    .collect();
    // A Work's event (its agent reported status, or it went) is its template's event.
    let works = cache::watch(
        Api::all_with(fed.clone(), &kinds::work()),
        kinds::work(),
        Some(TEMPLATE_UID_LABEL),
        tx.clone(),
        crate::work::template_msg,
        None,
    );
    let wake = Arc::new(Notify::new());
    let probe = tokio::spawn(health::run(
        fed.clone(),
        clusters.cache.clone(),
        config.clone(),
        events.clone(),
        tx.clone(),
        wake.clone(),
    ));
    let _probe = AbortOnDrop(probe);
    let (reports, report_rx) = mpsc::unbounded_channel();
    let reporter = Arc::new(Reporter::new(fed.clone(), events.clone()));
    let _reporter = AbortOnDrop(tokio::spawn(reporter.run(report_rx)));
    let mut c = Controller {
        fed,
        config: config.clone(),
        members: Members::default(),
        events,
        tx,
        policies: Vec::new(),
        overrides: Vec::new(),
        policy_watches,
        kinds: BTreeMap::new(),
        member_watches: HashMap::new(),
        reports,
        divisions: Mutex::new(HashMap::new()),
        last_view: HashMap::new(),
        works,
    };
    // An interval must not be zero; a tenth of a second is as often as a full pass makes sense.
    let mut full = tokio::time::interval(config.full_resync.max(Duration::from_millis(100)));
    full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut batch = Batch::default();
        tokio::select! {
            m = rx.recv() => match m {
                Some(m) => batch.add(m),
                None => return Ok(()),
            },
            _ = full.tick() => batch.all = true,
        }
        let mut n = 1;
        while n < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.add(m),
                Err(_) => break,
            }
            n += 1;
        }
        if batch.clusters {
            wake.notify_one();
        }
        let started = std::time::Instant::now();
        c.turn(batch).await;
        debug!(keys = n, elapsed = ?started.elapsed(), "federation turn");
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What about a member makes every template's placement worth recomputing. Its resource
/// summary (which changes with every pod, at most every `summary_interval`) counts only while a
/// policy divides replicas by capacity: otherwise no placement reads it, and a pass over every
/// template on each change would be members × templates of work for nothing.
type PlacementView = (
    bool,
    bool,
    BTreeMap<String, String>,
    Vec<Taint>,
    String,
    (String, Vec<String>),
    Option<Summary>,
);

fn placement_view(m: &Member, schedulable: bool, by_capacity: bool) -> PlacementView {
    (
        m.health == Health::Ready,
        schedulable,
        m.labels.clone(),
        m.taints.clone(),
        m.fingerprint.clone(),
        (m.region.clone(), m.zones.clone()),
        m.summary.clone().filter(|_| by_capacity),
    )
}

impl Controller {
    /// False when the member has been not Ready for longer than the failover toleration.
    pub fn schedulable(&self, m: &Member) -> bool {
        m.not_ready_since
            .is_none_or(|t| t.elapsed() < self.config.failover_toleration)
    }

    async fn turn(&mut self, mut batch: Batch) {
        if let Some(new) = batch.members.take() {
            let became_ready: HashSet<String> = new
                .iter()
                .filter(|m| {
                    m.health == Health::Ready
                        && self
                            .members
                            .by_name
                            .get(&m.name)
                            .is_some_and(|o| o.health != Health::Ready)
                })
                .map(|m| m.name.clone())
                .collect();
            self.members.by_name = new.into_iter().map(|m| (m.name.clone(), m)).collect();
            self.ensure_member_watches(&became_ready);
        }
        // Compared with the view of the last turn: schedulability also changes with time alone
        // (the failover toleration running out).
        let by_capacity = self
            .policies
            .iter()
            .any(|p| placement::divides_by_capacity(&p.spec.placement));
        let view: HashMap<String, PlacementView> = self
            .members
            .by_name
            .values()
            .map(|m| {
                (
                    m.name.clone(),
                    placement_view(m, self.schedulable(m), by_capacity),
                )
            })
            .collect();
        if view != self.last_view {
            batch.all = true;
            self.last_view = view;
        }
        // A full pass reloads the policies too (the safety net under their watch events).
        if batch.policies || batch.all {
            if self.load_policies().await && batch.policies {
                batch.all = true;
            }
            self.ensure_kinds().await;
            self.ensure_member_watches(&HashSet::new());
        }
        let keys: Vec<KindKey> = self.kinds.keys().cloned().collect();
        for k in keys {
            let filter = if batch.all {
                None
            } else {
                match batch.templates.remove(&k) {
                    Some(s) => Some(s),
                    None => continue,
                }
            };
            if let Err(e) = self.sync_kind(&k, filter.as_ref()).await {
                warn!(api_version = %k.0, kind = %k.1, "sync failed: {e}");
            }
        }
    }

    /// Reads the policies from their caches; false while any cache is still loading.
    async fn load_policies(&mut self) -> bool {
        let loading: Vec<&str> = self
            .policy_watches
            .iter()
            .filter(|(_, w)| !w.cache.ready())
            .map(|(ar, _)| ar.plural.as_str())
            .collect();
        if !loading.is_empty() {
            debug!(?loading, "policies not loaded: caches still listing");
            return false;
        }
        let mut policies = Vec::new();
        let mut overrides = Vec::new();
        for (ar, w) in &self.policy_watches {
            let cluster_scoped = ar.kind.starts_with("Cluster");
            for p in w.cache.values() {
                let name = p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let namespace = p["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if ar.kind.ends_with("PropagationPolicy") {
                    match serde_json::from_value(p["spec"].clone()) {
                        Ok(spec) => policies.push(Policy {
                            namespace: (!cluster_scoped).then_some(namespace),
                            name,
                            spec,
                        }),
                        Err(e) => warn!(policy = %name, "policy ignored: spec: {e}"),
                    }
                    continue;
                }
                match serde_json::from_value(p["spec"].clone()) {
                    Ok(spec) => overrides.push(OverridePolicy {
                        namespace,
                        name,
                        spec,
                    }),
                    Err(e) => {
                        let who = OverridePolicy {
                            namespace,
                            name,
                            spec: serde_json::from_value(serde_json::json!({}))
                                .expect("empty spec"),
                        }
                        .display();
                        let msg = format!("{who}: spec: {e}");
                        self.events
                            .record(&self.fed, &p, false, "InvalidOverridePolicy", "spec", &msg)
                            .await;
                    }
                }
            }
        }
        info!(
            propagation = policies.len(),
            overrides = overrides.len(),
            "policies loaded"
        );
        self.policies = policies;
        self.overrides = overrides;
        true
    }

    /// Starts a template watch for every kind a policy selects (discovered on the federation
    /// API); kinds no policy selects any more keep theirs, so their member objects are still
    /// cleaned up when templates go.
    async fn ensure_kinds(&mut self) {
        let wanted: HashSet<KindKey> = self
            .policies
            .iter()
            .flat_map(|p| &p.spec.resource_selectors)
            .map(|s| (s.api_version.clone(), s.kind.clone()))
            .collect();
        for key in wanted {
            if self.kinds.contains_key(&key) {
                continue;
            }
            let (api_version, kind) = &key;
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let gvk = GroupVersionKind::gvk(group, version, kind);
            let (ar, caps) = match kube::discovery::pinned_kind(&self.fed, &gvk).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(%api_version, %kind, "kind not served by the federation API (retried when policies change): {e}");
                    continue;
                }
            };
            let k = key.clone();
            let templates = cache::watch(
                Api::all_with(self.fed.clone(), &ar),
                ar.clone(),
                None,
                self.tx.clone(),
                move |v| {
                    Some(Msg::Template {
                        kind: k.clone(),
                        uid: v["metadata"]["uid"].as_str()?.to_string(),
                    })
                },
                None,
            );
            info!(%api_version, %kind, "watching templates");
            self.kinds.insert(
                key,
                Kind {
                    ar,
                    namespaced: caps.scope == kube::discovery::Scope::Namespaced,
                    templates,
                },
            );
        }
    }

    /// One watch per (Ready member, kind) over the member's labelled objects; restarted when the
    /// member's client changes or it becomes Ready again (a fresh list, nothing stale), dropped
    /// while the member is not Ready or when it goes.
    fn ensure_member_watches(&mut self, restart: &HashSet<String>) {
        self.member_watches.retain(|(m, _), (fp, _)| {
            self.members.by_name.get(m).is_some_and(|mm| {
                mm.fingerprint == *fp && mm.health == Health::Ready && !restart.contains(m)
            })
        });
        for m in self.members.by_name.values() {
            let Some(client) = m.watch_client.clone() else {
                continue;
            };
            if m.health != Health::Ready {
                continue;
            }
            for (key, kind) in &self.kinds {
                let id = (m.name.clone(), key.clone());
                if self.member_watches.contains_key(&id) {
                    continue;
                }
                let k = key.clone();
                let w = cache::watch(
                    Api::all_with(client.clone(), &kind.ar),
                    kind.ar.clone(),
                    Some(TEMPLATE_UID_LABEL),
                    self.tx.clone(),
                    move |v| {
                        Some(Msg::Template {
                            kind: k.clone(),
                            uid: v["metadata"]["labels"][TEMPLATE_UID_LABEL]
                                .as_str()?
                                .to_string(),
                        })
                    },
                    None,
                );
                self.member_watches.insert(id, (m.fingerprint.clone(), w));
            }
        }
    }

    /// The member's cache of `kind` objects, once its first list is complete.
    pub fn member_cache(&self, member: &str, kind: &KindKey) -> Option<Arc<Cache>> {
        self.member_watches
            .get(&(member.to_string(), kind.clone()))
            .map(|(_, w)| w.cache.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(cpu_allocated: i64) -> Member {
        let mut m = Member::new("m1");
        m.fingerprint = "fp".into();
        m.summary = Some(Summary {
            allocatable: BTreeMap::from([("cpu".into(), 8000)]),
            allocated: BTreeMap::from([("cpu".into(), cpu_allocated)]),
            allocating: BTreeMap::new(),
        });
        m
    }

    #[test]
    fn a_new_resource_summary_replaces_placements_only_when_a_policy_divides_by_capacity() {
        let (before, after) = (member(100), member(200));
        assert_eq!(
            placement_view(&before, true, false),
            placement_view(&after, true, false),
            "no policy reads the summary: a pod more in a member is no reason for a full pass"
        );
        assert_ne!(
            placement_view(&before, true, true),
            placement_view(&after, true, true)
        );
        let mut unready = member(100);
        unready.health = Health::NotReady {
            reason: "ClusterNotReachable".into(),
            message: "m1: unreachable".into(),
        };
        assert_ne!(
            placement_view(&before, true, false),
            placement_view(&unready, true, false)
        );
    }
}
