//! PodDisruptionBudget status (kube's `pkg/controller/disruption`): for every policy/v1 PDB,
//! the pods its selector picks, how many of them are healthy (Ready, not being deleted, not
//! just evicted), how many must be, and so how many disruptions the eviction subresource may
//! allow now.
//!
//! ```text
//!   pods + PDBs (informers) ─▶ queue of "ns/name" ─▶ sync:
//!      expectedPods / desiredHealthy ◀─ minAvailable int: (len(pods), n)
//!                                    ◀─ minAvailable % / maxUnavailable: the owners' scale
//!                                       (ReplicaSet, Deployment through its ReplicaSet,
//!                                        StatefulSet, ReplicationController), rounded up
//!      currentHealthy = Ready pods not deleting and not in disruptedPods (< 2 min old)
//!      disruptionsAllowed = max(0, currentHealthy - desiredHealthy), 0 when no pods expected
//!      ─▶ PUT status (resourceVersion precondition) with the DisruptionAllowed condition
//! ```
//!
//! A pod the scale lookup cannot place (no controller, or an unknown one) makes the sync fail
//! and, like kube's failSafe, sets disruptionsAllowed to 0 with DisruptionAllowed=False
//! SyncFailed. Entries of `disruptedPods` are dropped when the pod is gone, deleting, or
//! older than 2 minutes (kube's DeletionTimeout); the PDB is looked at again when the
//! oldest one expires. Not done: the DisruptionTarget pod condition cleanup, events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};

use crate::informer::{Cache, Change, Informer};
use crate::podutil::{controller_of, is_ready, selector_matches};
use crate::queue::{run_workers, Queue, Requeue};
use crate::{is_not_found, key, split_key, Clock, Informers};

/// How long an eviction's entry in `disruptedPods` keeps its pod out of the healthy count
/// (kube's DeletionTimeout).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
/// Every budget is looked at again this often, so a scale change of an owner (which the
/// controller does not watch) reaches percentage budgets.
const RESYNC: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DisruptionError {
    #[error("found no controllers for pod {0:?}")]
    NoController(String),
    #[error("invalid {field} {value:?} of PodDisruptionBudget {pdb}")]
    BadValue {
        pdb: String,
        field: &'static str,
        value: String,
    },
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("writing status of PodDisruptionBudget {key}: {source}")]
    Write {
        key: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// What a budget's status should say, before the comparison with what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed {
    pub expected_pods: i32,
    pub desired_healthy: i32,
    pub current_healthy: i32,
    pub disruptions_allowed: i32,
    pub disrupted_pods: BTreeMap<String, Time>,
}

pub struct DisruptionController {
    client: Client,
    clock: Clock,
    queue: Arc<Queue>,
    pdb_informer: Arc<Informer<PodDisruptionBudget>>,
    pdbs: Arc<Cache<PodDisruptionBudget>>,
    pods: Arc<Cache<Pod>>,
    replicasets: Arc<Cache<ReplicaSet>>,
    deployments: Arc<Cache<Deployment>>,
}

impl std::fmt::Debug for DisruptionController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DisruptionController")
            .finish_non_exhaustive()
    }
}

/// The budgets in `pdbs` that select `pod` (a nil selector selects nothing, `{}` everything,
/// as kube's LabelSelectorAsSelector).
fn budgets_selecting(pdbs: &Cache<PodDisruptionBudget>, pod: &Pod) -> Vec<String> {
    let ns = pod.namespace().unwrap_or_default();
    pdbs.list_namespace(&ns)
        .into_iter()
        .filter(|pdb| {
            pdb.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|sel| selector_matches(sel, pod.labels()))
        })
        .map(|pdb| key(&ns, &pdb.name_any()))
        .collect()
}

impl DisruptionController {
    pub fn register(informers: &Informers, client: Client, clock: Clock) -> Arc<Self> {
        let queue = Queue::new();
        let pdb_informer: Arc<Informer<PodDisruptionBudget>> =
            Informer::new(Api::all(client.clone()));
        let pdbs = pdb_informer.cache();
        {
            let q = queue.clone();
            pdb_informer.add_handler(move |c| {
                let o = match c {
                    Change::Added(o) | Change::Deleted(o) => o,
                    Change::Updated { new, .. } => new,
                };
                q.add(key(&o.namespace().unwrap_or_default(), &o.name_any()));
            });
        }
        {
            let q = queue.clone();
            let pdbs = pdbs.clone();
            informers.pods.add_handler(move |c| {
                let pods: Vec<&Arc<Pod>> = match c {
                    Change::Added(p) | Change::Deleted(p) => vec![p],
                    Change::Updated { old, new } => vec![old, new],
                };
                for p in pods {
                    for k in budgets_selecting(&pdbs, p) {
                        q.add(k);
                    }
                }
            });
        }
        // Read from their caches only: no-op handlers have the informers started.
        informers.replicasets.add_handler(|_| {});
        informers.deployments.add_handler(|_| {});
        Arc::new(Self {
            client,
            clock,
            queue,
            pdb_informer,
            pdbs,
            pods: informers.pods.cache(),
            replicasets: informers.replicasets.cache(),
            deployments: informers.deployments.cache(),
        })
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        let informer = tokio::spawn(self.pdb_informer.clone().run());
        self.pdbs.wait_synced().await;
        self.pods.wait_synced().await;
        self.replicasets.wait_synced().await;
        self.deployments.wait_synced().await;
        let resync = {
            let me = self.clone();
            tokio::spawn(async move {
                loop {
                    for pdb in me.pdbs.list() {
                        me.queue
                            .add(key(&pdb.namespace().unwrap_or_default(), &pdb.name_any()));
                    }
                    tokio::time::sleep(RESYNC).await;
                }
            })
        };
        let me = self.clone();
        run_workers(self.queue.clone(), workers, "disruption", move |k| {
            let me = me.clone();
            async move { me.sync(&k).await }
        })
        .await;
        informer.abort();
        resync.abort();
    }

    async fn sync(&self, k: &str) -> Result<Requeue, DisruptionError> {
        let (ns, name) = split_key(k);
        let Some(pdb) = self.pdbs.get(ns, name) else {
            return Ok(Requeue(None));
        };
        let pods: Vec<Arc<Pod>> = match pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) {
            Some(sel) => self
                .pods
                .list_namespace(ns)
                .into_iter()
                .filter(|p| selector_matches(sel, p.labels()))
                .collect(),
            None => Vec::new(),
        };
        let now = self.clock.now();
        let computed = match self.compute(&pdb, &pods, now).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(pdb = %k, error = %e, "cannot compute PodDisruptionBudget status; allowing no disruptions");
                let mut status = pdb.status.clone().unwrap_or_default();
                status.disruptions_allowed = 0;
                set_condition(&mut status, false, "SyncFailed", &e.to_string(), now);
                self.write(&pdb, status).await?;
                return Err(e);
            }
        };
        let recheck = computed
            .disrupted_pods
            .values()
            .map(|t| t.0 + DELETION_TIMEOUT)
            .min()
            .map(|due| (due - now).to_std().unwrap_or_default() + Duration::from_secs(1));
        if let Some(status) = new_status(&pdb, &computed, now) {
            self.write(&pdb, status).await?;
        }
        Ok(Requeue(recheck))
    }

    async fn write(
        &self,
        pdb: &PodDisruptionBudget,
        status: PodDisruptionBudgetStatus,
    ) -> Result<(), DisruptionError> {
        let ns = pdb.namespace().unwrap_or_default();
        let mut updated = pdb.clone();
        updated.status = Some(status);
        let body = serde_json::to_vec(&updated).unwrap_or_default();
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), &ns);
        match api
            .replace_status(&pdb.name_any(), &PostParams::default(), body)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(source) => Err(DisruptionError::Write {
                key: key(&ns, &pdb.name_any()),
                source: Box::new(source),
            }),
        }
    }

    /// kube's getExpectedPodCount + buildDisruptedPodMap + countHealthyPods.
    async fn compute(
        &self,
        pdb: &PodDisruptionBudget,
        pods: &[Arc<Pod>],
        now: DateTime<Utc>,
    ) -> Result<Computed, DisruptionError> {
        let spec = pdb.spec.clone().unwrap_or_default();
        let pdb_key = key(&pdb.namespace().unwrap_or_default(), &pdb.name_any());
        let (expected_pods, desired_healthy) = if let Some(max) = &spec.max_unavailable {
            let expected = self.expected_scale(pods).await?;
            let max = scaled(max, expected, &pdb_key, "maxUnavailable")?;
            (expected, (expected - max).max(0))
        } else if let Some(min) = &spec.min_available {
            match min {
                IntOrString::Int(n) => (pods.len() as i32, *n),
                IntOrString::String(_) => {
                    let expected = self.expected_scale(pods).await?;
                    (expected, scaled(min, expected, &pdb_key, "minAvailable")?)
                }
            }
        } else {
            (0, 0)
        };
        let previous = pdb
            .status
            .as_ref()
            .and_then(|s| s.disrupted_pods.clone())
            .unwrap_or_default();
        let disrupted_pods = still_disrupted(&previous, pods, now);
        let current_healthy = healthy(pods, &disrupted_pods, now);
        let disruptions_allowed = if expected_pods <= 0 {
            0
        } else {
            (current_healthy - desired_healthy).max(0)
        };
        Ok(Computed {
            expected_pods,
            desired_healthy,
            current_healthy,
            disruptions_allowed,
            disrupted_pods,
        })
    }

    /// kube's getExpectedScale: the sum of the scales of the controllers of `pods`, each
    /// counted once (a Deployment once however many of its ReplicaSets own pods). Pods
    /// without a controller are left out (kube warns with an UnmanagedPods event).
    async fn expected_scale(&self, pods: &[Arc<Pod>]) -> Result<i32, DisruptionError> {
        // owner uid → top controller uid, and top controller uid → scale.
        let mut top: HashMap<String, String> = HashMap::new();
        let mut scales: HashMap<String, i32> = HashMap::new();
        for pod in pods {
            let Some(owner) = controller_of(&pod.metadata) else {
                continue;
            };
            if top.contains_key(&owner.uid) {
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            let found = self
                .scale_of(&ns, &owner.kind, &owner.name, &owner.uid)
                .await?;
            let Some((uid, scale)) = found else {
                return Err(DisruptionError::NoController(pod.name_any()));
            };
            top.insert(owner.uid.clone(), uid.clone());
            scales.insert(uid, scale);
        }
        Ok(scales.values().sum())
    }

    /// The (uid, scale) of the top controller behind a pod's controller reference: a
    /// ReplicaSet's Deployment if it has one, else the ReplicaSet; a StatefulSet; a
    /// ReplicationController. `None` when the reference names nothing we know.
    async fn scale_of(
        &self,
        ns: &str,
        kind: &str,
        name: &str,
        uid: &str,
    ) -> Result<Option<(String, i32)>, DisruptionError> {
        let read = |what: String| {
            move |source| DisruptionError::Read {
                what,
                source: Box::new(source),
            }
        };
        match kind {
            "ReplicaSet" => {
                let Some(rs) = self
                    .replicasets
                    .get(ns, name)
                    .filter(|r| r.uid().as_deref() == Some(uid))
                else {
                    return Ok(None);
                };
                if let Some(d_ref) = controller_of(&rs.metadata).filter(|r| r.kind == "Deployment")
                {
                    if let Some(d) = self
                        .deployments
                        .get(ns, &d_ref.name)
                        .filter(|d| d.uid().as_deref() == Some(d_ref.uid.as_str()))
                    {
                        let scale = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                        return Ok(Some((d_ref.uid.clone(), scale)));
                    }
                }
                let scale = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Ok(Some((uid.to_string(), scale)))
            }
            "StatefulSet" => {
                let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
                match api
                    .get_opt(name)
                    .await
                    .map_err(read(format!("statefulset {ns}/{name}")))?
                {
                    Some(s) if s.uid().as_deref() == Some(uid) => Ok(Some((
                        uid.to_string(),
                        s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    ))),
                    _ => Ok(None),
                }
            }
            "ReplicationController" => {
                let api: Api<ReplicationController> = Api::namespaced(self.client.clone(), ns);
                match api.get_opt(name).await {
                    Ok(Some(rc)) if rc.uid().as_deref() == Some(uid) => Ok(Some((
                        uid.to_string(),
                        rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    ))),
                    // A server that does not serve ReplicationControllers has none.
                    Ok(_) => Ok(None),
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(read(format!("replicationcontroller {ns}/{name}"))(e)),
                }
            }
            _ => Ok(None),
        }
    }
}

/// intstr.GetScaledValueFromIntOrPercent with rounding up.
pub fn scaled(
    v: &IntOrString,
    total: i32,
    pdb: &str,
    field: &'static str,
) -> Result<i32, DisruptionError> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let bad = || DisruptionError::BadValue {
                pdb: pdb.to_string(),
                field,
                value: s.clone(),
            };
            let pct: i64 = s
                .strip_suffix('%')
                .ok_or_else(bad)?
                .parse()
                .map_err(|_| bad())?;
            Ok(((pct * i64::from(total) + 99) / 100) as i32)
        }
    }
}

/// kube's buildDisruptedPodMap: entries for pods that still exist, are not being deleted and
/// whose eviction is less than [`DELETION_TIMEOUT`] old.
pub fn still_disrupted(
    previous: &BTreeMap<String, Time>,
    pods: &[Arc<Pod>],
    now: DateTime<Utc>,
) -> BTreeMap<String, Time> {
    let mut out = BTreeMap::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.name_any();
        if let Some(t) = previous.get(&name) {
            if t.0 + DELETION_TIMEOUT >= now {
                out.insert(name, t.clone());
            }
        }
    }
    out
}

/// kube's countHealthyPods.
pub fn healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>, now: DateTime<Utc>) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            disrupted
                .get(&p.name_any())
                .is_none_or(|t| t.0 + DELETION_TIMEOUT <= now)
        })
        .filter(|p| is_ready(p))
        .count() as i32
}

/// apimeta.SetStatusCondition for DisruptionAllowed: the transition time moves only when the
/// status flips.
fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    allowed: bool,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) {
    let s = if allowed { "True" } else { "False" };
    let observed = status.observed_generation;
    let list = status.conditions.get_or_insert_with(Vec::new);
    match list.iter_mut().find(|c| c.type_ == "DisruptionAllowed") {
        Some(c) => {
            if c.status != s {
                c.last_transition_time = Time(now);
            }
            c.status = s.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = observed;
        }
        None => list.push(Condition {
            type_: "DisruptionAllowed".into(),
            status: s.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: observed,
            last_transition_time: Time(now),
        }),
    }
}

/// kube's updatePdbStatus: the status to write, or `None` when it already says all this
/// (pdbhelper.ConditionsAreUpToDate included).
pub fn new_status(
    pdb: &PodDisruptionBudget,
    c: &Computed,
    now: DateTime<Utc>,
) -> Option<PodDisruptionBudgetStatus> {
    let generation = pdb.metadata.generation;
    let old = pdb.status.clone().unwrap_or_default();
    let cond = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed");
    let conditions_ok = cond.is_some_and(|cond| {
        if c.disruptions_allowed > 0 {
            cond.status == "True" && cond.reason == "SufficientPods"
        } else {
            cond.status == "False" && cond.reason == "InsufficientPods"
        }
    });
    let old_disrupted = old.disrupted_pods.clone().unwrap_or_default();
    if old.current_healthy == c.current_healthy
        && old.desired_healthy == c.desired_healthy
        && old.expected_pods == c.expected_pods
        && old.disruptions_allowed == c.disruptions_allowed
        && old_disrupted == c.disrupted_pods
        && old.observed_generation == generation
        && conditions_ok
    {
        return None;
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: c.current_healthy,
        desired_healthy: c.desired_healthy,
        expected_pods: c.expected_pods,
        disruptions_allowed: c.disruptions_allowed,
        disrupted_pods: Some(c.disrupted_pods.clone()),
        observed_generation: generation,
        conditions: old.conditions.clone(),
    };
    if c.disruptions_allowed > 0 {
        set_condition(&mut status, true, "SufficientPods", "", now);
    } else {
        set_condition(&mut status, false, "InsufficientPods", "", now);
    }
    Some(status)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(name: &str, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn percentages_round_up_and_bad_values_are_named() {
        let p = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled(&p("50%"), 3, "d/p", "minAvailable").unwrap(), 2);
        assert_eq!(scaled(&p("34%"), 3, "d/p", "minAvailable").unwrap(), 2);
        assert_eq!(scaled(&p("100%"), 7, "d/p", "minAvailable").unwrap(), 7);
        assert_eq!(scaled(&p("0%"), 7, "d/p", "minAvailable").unwrap(), 0);
        assert_eq!(scaled(&IntOrString::Int(4), 7, "d/p", "x").unwrap(), 4);
        let e = scaled(&p("half"), 3, "d/p", "maxUnavailable").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid maxUnavailable \"half\" of PodDisruptionBudget d/p"
        );
    }

    #[test]
    fn healthy_counts_ready_pods_not_deleting_and_not_just_evicted() {
        let mut deleting = (*pod("c", true)).clone();
        deleting.metadata.deletion_timestamp = Some(Time(at(0)));
        let pods = vec![
            pod("a", true),
            pod("b", true),
            Arc::new(deleting),
            pod("d", false),
            pod("e", true),
        ];
        let mut disrupted = BTreeMap::new();
        disrupted.insert("b".to_string(), Time(at(0)));
        disrupted.insert("gone".to_string(), Time(at(0)));
        disrupted.insert("e".to_string(), Time(at(-200)));
        let now = at(10);
        let kept = still_disrupted(&disrupted, &pods, now);
        // "gone" no longer exists, "e" is older than the deletion timeout.
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(healthy(&pods, &kept, now), 2); // a and e
        assert_eq!(healthy(&pods, &BTreeMap::new(), now), 3);
    }

    #[test]
    fn status_is_written_only_when_it_changes_with_kube_conditions() {
        let mut pdb = PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: Some(IntOrString::Int(2)),
                ..Default::default()
            }),
            status: None,
        };
        let c = Computed {
            expected_pods: 3,
            desired_healthy: 2,
            current_healthy: 3,
            disruptions_allowed: 1,
            disrupted_pods: BTreeMap::new(),
        };
        let s = new_status(&pdb, &c, at(0)).expect("first write");
        assert_eq!(s.observed_generation, Some(2));
        let cond = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (
                cond.type_.as_str(),
                cond.status.as_str(),
                cond.reason.as_str()
            ),
            ("DisruptionAllowed", "True", "SufficientPods")
        );
        pdb.status = Some(s);
        assert!(new_status(&pdb, &c, at(5)).is_none());
        let none_left = Computed {
            current_healthy: 2,
            disruptions_allowed: 0,
            ..c
        };
        let s = new_status(&pdb, &none_left, at(7)).expect("changed");
        let cond = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("False", "InsufficientPods")
        );
        assert_eq!(cond.last_transition_time, Time(at(7)));
        assert_eq!(s.disruptions_allowed, 0);
    }
}
