//! Node lifecycle (kube's `pkg/controller/nodelifecycle`): notices nodes whose kubelet went
//! quiet and marks them so the scheduler avoids them and the taint eviction controller
//! ([`crate::tainteviction`]) moves their pods away.
//!
//! ```text
//!   every node-monitor-period, per Node:
//!     heartbeat = newest of (Ready condition's lastHeartbeatTime changing, kube-node-lease
//!                 Lease renewTime advancing), as this controller observed them
//!     now > heartbeat + node-monitor-grace-period (node-startup-grace-period while the node
//!     never posted Ready) ─▶ Ready, MemoryPressure, DiskPressure, PIDPressure = Unknown
//!                           "NodeStatusUnknown" / "Kubelet stopped posting node status."
//!     Ready went True → not True ─▶ NodeNotReady event, every pod's Ready condition False
//!     Ready False   ─▶ node.kubernetes.io/not-ready:NoExecute    (rate limited per zone)
//!     Ready Unknown ─▶ node.kubernetes.io/unreachable:NoExecute  (rate limited per zone)
//!     Ready True    ─▶ both NoExecute taints removed
//!   on every Node change (kube's TaintNodesByCondition):
//!     NoSchedule taints follow the conditions: not-ready / unreachable (Ready False /
//!     Unknown), memory-, disk-, pid-pressure, network-unavailable, and spec.unschedulable
//!     (`kubectl cordon`) ─▶ node.kubernetes.io/unschedulable:NoSchedule
//! ```
//!
//! Zones (`topology.kubernetes.io/zone`, with region) follow kube's disruption states: a zone
//! whose nodes are all not ready is in full disruption, one with more than 2 and at least 55 %
//! not ready in partial disruption (no NoExecute tainting below 50 nodes, 0.01/s above);
//! when every zone is fully disrupted the controller assumes its own connectivity is at fault,
//! adds no NoExecute taints and removes those it had added.
//! Taint writes are JSON patches that test the node's resourceVersion, so a concurrent change
//! (a kubelet status update, a cordon) wins and the controller looks again on its next pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;
use serde_json::json;

use crate::events::{reference, Recorder};
use crate::informer::{Cache, Change, Informer};
use crate::podutil::node_name;
use crate::queue::{run_workers, Queue, Requeue};
use crate::{is_not_found, Clock, Informers};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// kube-controller-manager's node lifecycle flags (JSON: camelCase).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct NodeLifecycleConfig {
    /// How often node health is looked at (--node-monitor-period, 5 s).
    pub node_monitor_period_secs: u64,
    /// How long a node may go without a heartbeat before it is Unknown
    /// (--node-monitor-grace-period, 40 s).
    pub node_monitor_grace_period_secs: u64,
    /// The same for a node that never posted a Ready condition (--node-startup-grace-period).
    pub node_startup_grace_period_secs: u64,
    /// NoExecute taints added per second per healthy zone (--node-eviction-rate, 0.1).
    pub node_eviction_rate: f64,
    /// The same in a partially disrupted zone of a large cluster (--secondary-node-eviction-rate).
    pub secondary_node_eviction_rate: f64,
    /// Partially disrupted zones of clusters up to this size get no NoExecute taints.
    pub large_cluster_size_threshold: usize,
    /// The share of not-ready nodes that makes a zone partially disrupted.
    pub unhealthy_zone_threshold: f64,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        Self {
            node_monitor_period_secs: 5,
            node_monitor_grace_period_secs: 40,
            node_startup_grace_period_secs: 60,
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            large_cluster_size_threshold: 50,
            unhealthy_zone_threshold: 0.55,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeLifecycleError {
    #[error("writing node {node}: {source}")]
    Node {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("marking pod {pod} not ready: {source}")]
    Pod {
        pod: String,
        #[source]
        source: kube::Error,
    },
}

/// What the controller last observed of one node (kube's nodeHealthData).
#[derive(Debug, Clone)]
struct Health {
    probe: DateTime<Utc>,
    /// The Ready condition's lastHeartbeatTime and status as last seen.
    heartbeat: Option<Time>,
    ready_seen: bool,
    lease_renew: Option<MicroTime>,
}

/// The disruption state of one zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// A token bucket of burst 1 (kube's evictionLimiterBurst), refilled at `rate` per second.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: DateTime<Utc>,
}

impl Bucket {
    fn take(&mut self, rate: f64, now: DateTime<Utc>) -> bool {
        if rate <= 0.0 {
            self.at = now;
            return false;
        }
        let elapsed = (now - self.at).num_milliseconds().max(0) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate).min(1.0);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct NodeLifecycleController {
    client: Client,
    clock: Clock,
    config: NodeLifecycleConfig,
    recorder: Recorder,
    nodes: Arc<Cache<Node>>,
    pods: Arc<Cache<Pod>>,
    lease_informer: Arc<Informer<Lease>>,
    leases: Arc<Cache<Lease>>,
    /// Nodes whose NoSchedule taints may be out of date.
    no_schedule: Arc<Queue>,
    health: Mutex<HashMap<String, Health>>,
    /// Nodes waiting for a NoExecute taint, by zone, in arrival order.
    pending: Mutex<BTreeMap<String, Vec<String>>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Nodes whose pods could not all be marked not ready yet (kube's needsRetry).
    retry_mark: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for NodeLifecycleController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLifecycleController")
            .finish_non_exhaustive()
    }
}

fn condition<'a>(node: &'a Node, ty: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == ty))
}

/// The node's Ready status: "True", "False", "Unknown", or None before the first report.
pub fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// kube's zone key: region and zone labels, joined.
pub fn zone_of(node: &Node) -> String {
    let l = node.labels();
    let region = l
        .get("topology.kubernetes.io/region")
        .or_else(|| l.get("failure-domain.beta.kubernetes.io/region"))
        .cloned()
        .unwrap_or_default();
    let zone = l
        .get("topology.kubernetes.io/zone")
        .or_else(|| l.get("failure-domain.beta.kubernetes.io/zone"))
        .cloned()
        .unwrap_or_default();
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\0:{zone}")
    }
}

/// kube's ComputeZoneState from the Ready statuses of a zone's nodes.
pub fn zone_state(ready: &[Option<&str>], unhealthy_threshold: f64) -> ZoneState {
    let not_ready = ready.iter().filter(|r| **r != Some("True")).count();
    let total = ready.len();
    if total > 0 && not_ready == total {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / total as f64 >= unhealthy_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// The NoSchedule taints a node's conditions and cordon call for (kube's
/// nodeConditionToTaintKeyStatusMap plus the unschedulable taint).
pub fn no_schedule_keys(node: &Node) -> Vec<&'static str> {
    let mut keys = Vec::new();
    match ready_status(node) {
        Some("False") => keys.push(NOT_READY),
        Some("Unknown") => keys.push(UNREACHABLE),
        _ => {}
    }
    for (ty, key) in [
        ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
        ("DiskPressure", "node.kubernetes.io/disk-pressure"),
        (
            "NetworkUnavailable",
            "node.kubernetes.io/network-unavailable",
        ),
        ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    ] {
        if condition(node, ty).is_some_and(|c| c.status == "True") {
            keys.push(key);
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        keys.push(UNSCHEDULABLE);
    }
    keys
}

/// Every NoSchedule key this controller manages.
const MANAGED_NO_SCHEDULE: [&str; 7] = [
    NOT_READY,
    UNREACHABLE,
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/network-unavailable",
    "node.kubernetes.io/pid-pressure",
    UNSCHEDULABLE,
];

fn taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    taints(node)
        .iter()
        .any(|t| t.key == key && t.effect == effect)
}

/// The taint list with `remove` (key, effect) pairs dropped and `add` appended where absent.
pub fn swapped(current: &[Taint], add: &[Taint], remove: &[(&str, &str)]) -> Vec<Taint> {
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !remove.iter().any(|(k, e)| t.key == *k && t.effect == *e))
        .cloned()
        .collect();
    for a in add {
        if !out.iter().any(|t| t.key == a.key && t.effect == a.effect) {
            out.push(a.clone());
        }
    }
    out
}

fn taint(key: &str, effect: &str, added: Option<DateTime<Utc>>) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        value: None,
        time_added: added.map(Time),
    }
}

impl NodeLifecycleController {
    pub fn register(
        informers: &Informers,
        client: Client,
        clock: Clock,
        config: NodeLifecycleConfig,
        recorder: Recorder,
    ) -> Arc<Self> {
        let no_schedule = Queue::new();
        {
            let q = no_schedule.clone();
            informers.nodes.add_handler(move |c| match c {
                Change::Added(n) | Change::Updated { new: n, .. } => q.add(n.name_any()),
                Change::Deleted(_) => {}
            });
        }
        informers.pods.add_handler(|_| {});
        let lease_informer: Arc<Informer<Lease>> =
            Informer::new(Api::namespaced(client.clone(), LEASE_NAMESPACE));
        lease_informer.add_handler(|_| {});
        Arc::new(Self {
            client,
            clock,
            config,
            recorder,
            nodes: informers.nodes.cache(),
            pods: informers.pods.cache(),
            leases: lease_informer.cache(),
            lease_informer,
            no_schedule,
            health: Mutex::new(HashMap::new()),
            pending: Mutex::new(BTreeMap::new()),
            buckets: Mutex::new(HashMap::new()),
            retry_mark: Mutex::new(HashSet::new()),
        })
    }

    pub async fn run(self: Arc<Self>, workers: usize) {
        let leases = tokio::spawn(self.lease_informer.clone().run());
        self.nodes.wait_synced().await;
        self.pods.wait_synced().await;
        self.leases.wait_synced().await;
        let me = self.clone();
        let taints = tokio::spawn(run_workers(
            self.no_schedule.clone(),
            workers,
            "nodelifecycle",
            move |name| {
                let me = me.clone();
                async move { me.sync_no_schedule(&name).await }
            },
        ));
        let period = Duration::from_millis((self.config.node_monitor_period_secs * 1000).max(100));
        loop {
            self.monitor().await;
            self.no_execute_pass().await;
            tokio::time::sleep(period).await;
            if taints.is_finished() {
                break;
            }
        }
        leases.abort();
    }

    /// kube's doNoScheduleTaintingPass for one node.
    async fn sync_no_schedule(&self, name: &str) -> Result<Requeue, NodeLifecycleError> {
        let Some(node) = self.nodes.get("", name) else {
            return Ok(Requeue(None));
        };
        let want = no_schedule_keys(&node);
        let current = taints(&node);
        let add: Vec<Taint> = want
            .iter()
            .filter(|k| {
                !current
                    .iter()
                    .any(|t| t.key == **k && t.effect == "NoSchedule")
            })
            .map(|k| taint(k, "NoSchedule", None))
            .collect();
        let remove: Vec<(&str, &str)> = MANAGED_NO_SCHEDULE
            .iter()
            .filter(|k| !want.contains(k))
            .filter(|k| has_taint(&node, k, "NoSchedule"))
            .map(|k| (*k, "NoSchedule"))
            .collect();
        if add.is_empty() && remove.is_empty() {
            return Ok(Requeue(None));
        }
        self.write_taints(&node, swapped(&current, &add, &remove))
            .await
            .map(|_| Requeue(None))
    }

    /// Replaces the node's taints if it is still the version the cache saw.
    async fn write_taints(&self, node: &Node, list: Vec<Taint>) -> Result<(), NodeLifecycleError> {
        let name = node.name_any();
        let mut ops = vec![json!({"op": "test", "path": "/metadata/resourceVersion",
            "value": node.resource_version().unwrap_or_default()})];
        if node.spec.is_none() {
            ops.push(json!({"op": "add", "path": "/spec", "value": {"taints": list}}));
        } else {
            ops.push(json!({"op": "add", "path": "/spec/taints", "value": list}));
        }
        let patch: json_patch::Patch =
            serde_json::from_value(json!(ops)).expect("a JSON patch of known shape");
        let api: Api<Node> = Api::all(self.client.clone());
        match api
            .patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => {
                tracing::info!(node = %name, taints = ?list.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>(), "node taints updated");
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(source) => Err(NodeLifecycleError::Node { node: name, source }),
        }
    }

    /// kube's monitorNodeHealth: one pass over every node.
    async fn monitor(&self) {
        let nodes = self.nodes.list();
        {
            let names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
            self.health
                .lock()
                .expect("health lock")
                .retain(|n, _| names.contains(n));
            for list in self.pending.lock().expect("pending lock").values_mut() {
                list.retain(|n| names.contains(n));
            }
        }
        for node in &nodes {
            let name = node.name_any();
            let (observed, node) = match self.update_health(node).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "updating node health failed; will retry");
                    continue;
                }
            };
            let current = ready_status(&node).map(str::to_string);
            if current.is_none() {
                continue;
            }
            self.process_taint_eviction(&node, current.as_deref()).await;
            let became_not_ready =
                current.as_deref() != Some("True") && observed.as_deref() == Some("True");
            let retry = current.as_deref() != Some("True")
                && self.retry_mark.lock().expect("retry lock").contains(&name);
            if became_not_ready {
                self.recorder.normal(
                    reference(&node),
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
            }
            if became_not_ready || retry {
                let ok = self.mark_pods_not_ready(&name).await;
                let mut r = self.retry_mark.lock().expect("retry lock");
                if ok {
                    r.remove(&name);
                } else {
                    r.insert(name.clone());
                }
            }
        }
        self.handle_disruption(&nodes).await;
    }

    /// kube's tryUpdateNodeHealth: the Ready status observed before this pass, and the node
    /// as it is after it (its conditions set Unknown when its heartbeat is too old).
    async fn update_health(
        &self,
        node: &Arc<Node>,
    ) -> Result<(Option<String>, Node), NodeLifecycleError> {
        let name = node.name_any();
        let now = self.clock.now();
        let created = node
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0);
        let ready = condition(node, "Ready");
        let observed = ready.map(|c| c.status.clone());
        let grace = if ready.is_some() {
            self.config.node_monitor_grace_period_secs
        } else {
            self.config.node_startup_grace_period_secs
        };
        let lease = self.leases.get(LEASE_NAMESPACE, &name);
        let renew = lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.clone());
        let probe = {
            let mut health = self.health.lock().expect("health lock");
            let heartbeat = ready.and_then(|c| c.last_heartbeat_time.clone());
            let h = health.entry(name.clone()).or_insert_with(|| Health {
                // A node first seen without a Ready condition counts from its creation.
                probe: if ready.is_some() { now } else { created },
                heartbeat: heartbeat.clone(),
                ready_seen: ready.is_some(),
                lease_renew: None,
            });
            if ready.is_some() && (!h.ready_seen || h.heartbeat != heartbeat) {
                h.probe = now;
            }
            h.ready_seen = ready.is_some();
            h.heartbeat = heartbeat;
            if renew.is_some()
                && (h.lease_renew.is_none()
                    || h.lease_renew.as_ref().map(|t| t.0) < renew.as_ref().map(|t| t.0))
            {
                h.lease_renew = renew;
                h.probe = now;
            }
            h.probe
        };
        let mut node = (**node).clone();
        if now <= probe + chrono::Duration::seconds(grace as i64) {
            return Ok((observed, node));
        }
        let status = node.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        let mut changed = false;
        for ty in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            match conditions.iter_mut().find(|c| c.type_ == ty) {
                None => {
                    conditions.push(NodeCondition {
                        type_: ty.into(),
                        status: "Unknown".into(),
                        reason: Some("NodeStatusNeverUpdated".into()),
                        message: Some("Kubelet never posted node status.".into()),
                        last_heartbeat_time: Some(Time(created)),
                        last_transition_time: Some(Time(now)),
                    });
                    changed = true;
                }
                Some(c) if c.status != "Unknown" => {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(Time(now));
                    changed = true;
                }
                Some(_) => {}
            }
        }
        if !changed {
            return Ok((observed, node));
        }
        let api: Api<Node> = Api::all(self.client.clone());
        let body = serde_json::to_vec(&node).unwrap_or_default();
        match api
            .replace_status(&name, &PostParams::default(), body)
            .await
        {
            Ok(n) => {
                tracing::info!(node = %name, grace_secs = grace, "node stopped posting status; conditions set Unknown");
                Ok((observed, n))
            }
            Err(e) if is_not_found(&e) => Ok((observed, node)),
            Err(source) => Err(NodeLifecycleError::Node { node: name, source }),
        }
    }

    /// kube's MarkPodsNotReady: the Ready condition of every pod on the node turns False.
    /// Whether every pod was handled.
    async fn mark_pods_not_ready(&self, node: &str) -> bool {
        let now = self.clock.now();
        let mut ok = true;
        for pod in self.pods.list() {
            if node_name(&pod) != node {
                continue;
            }
            let mut pod = (*pod).clone();
            let Some(cond) = pod
                .status
                .as_mut()
                .and_then(|s| s.conditions.as_mut())
                .and_then(|c| c.iter_mut().find(|c| c.type_ == "Ready"))
            else {
                continue;
            };
            if cond.status == "False" {
                continue;
            }
            *cond = PodCondition {
                status: "False".into(),
                last_transition_time: Some(Time(now)),
                ..cond.clone()
            };
            let ns = pod.namespace().unwrap_or_default();
            let name = pod.name_any();
            self.recorder
                .warning(reference(&pod), "NodeNotReady", "Node is not ready".into());
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let body = serde_json::to_vec(&pod).unwrap_or_default();
            match api
                .replace_status(&name, &PostParams::default(), body)
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(source) => {
                    let e = NodeLifecycleError::Pod {
                        pod: format!("{ns}/{name}"),
                        source,
                    };
                    tracing::warn!(error = %e, "will retry");
                    ok = false;
                }
            }
        }
        ok
    }

    /// kube's processTaintBaseEviction: a swap between the two NoExecute taints is immediate,
    /// a first one waits for its zone's rate limiter, a Ready node loses both.
    async fn process_taint_eviction(&self, node: &Node, ready: Option<&str>) {
        let name = node.name_any();
        let (want, other) = match ready {
            Some("False") => (NOT_READY, UNREACHABLE),
            Some("Unknown") => (UNREACHABLE, NOT_READY),
            _ => {
                self.forget_pending(&name);
                if has_taint(node, NOT_READY, "NoExecute")
                    || has_taint(node, UNREACHABLE, "NoExecute")
                {
                    let list = swapped(
                        &taints(node),
                        &[],
                        &[(NOT_READY, "NoExecute"), (UNREACHABLE, "NoExecute")],
                    );
                    if let Err(e) = self.write_taints(node, list).await {
                        tracing::warn!(error = %e, "removing NoExecute taints failed; will retry");
                    }
                }
                return;
            }
        };
        if has_taint(node, want, "NoExecute") {
            return;
        }
        if has_taint(node, other, "NoExecute") {
            let list = swapped(
                &taints(node),
                &[taint(want, "NoExecute", Some(self.clock.now()))],
                &[(other, "NoExecute")],
            );
            if let Err(e) = self.write_taints(node, list).await {
                tracing::warn!(error = %e, "swapping NoExecute taints failed; will retry");
            }
            return;
        }
        let mut pending = self.pending.lock().expect("pending lock");
        let list = pending.entry(zone_of(node)).or_default();
        if !list.contains(&name) {
            list.push(name);
        }
    }

    fn forget_pending(&self, name: &str) {
        for list in self.pending.lock().expect("pending lock").values_mut() {
            list.retain(|n| n != name);
        }
    }

    /// Zone states decide each zone's tainting rate; when every zone is fully disrupted no
    /// node is tainted and the NoExecute taints go (kube's handleDisruption).
    async fn handle_disruption(&self, nodes: &[Arc<Node>]) {
        let states = self.zone_states(nodes);
        let all_full =
            !states.is_empty() && states.values().all(|s| *s == ZoneState::FullDisruption);
        if !all_full {
            return;
        }
        self.pending.lock().expect("pending lock").clear();
        for node in nodes {
            if has_taint(node, NOT_READY, "NoExecute") || has_taint(node, UNREACHABLE, "NoExecute")
            {
                tracing::info!(node = %node.name_any(), "every zone is fully disrupted; removing NoExecute taints");
                let list = swapped(
                    &taints(node),
                    &[],
                    &[(NOT_READY, "NoExecute"), (UNREACHABLE, "NoExecute")],
                );
                if let Err(e) = self.write_taints(node, list).await {
                    tracing::warn!(error = %e, "removing NoExecute taints failed; will retry");
                }
            }
        }
    }

    fn zone_states(&self, nodes: &[Arc<Node>]) -> BTreeMap<String, ZoneState> {
        let mut by_zone: BTreeMap<String, Vec<Option<&str>>> = BTreeMap::new();
        for n in nodes {
            by_zone.entry(zone_of(n)).or_default().push(ready_status(n));
        }
        by_zone
            .into_iter()
            .map(|(z, r)| (z, zone_state(&r, self.config.unhealthy_zone_threshold)))
            .collect()
    }

    /// kube's doNoExecuteTaintingPass: pending nodes get their NoExecute taint as each zone's
    /// rate allows.
    async fn no_execute_pass(&self) {
        let nodes = self.nodes.list();
        let states = self.zone_states(&nodes);
        if !states.is_empty() && states.values().all(|s| *s == ZoneState::FullDisruption) {
            return;
        }
        let now = self.clock.now();
        let zones: Vec<String> = self
            .pending
            .lock()
            .expect("pending lock")
            .keys()
            .cloned()
            .collect();
        for zone in zones {
            let rate = match states.get(&zone).copied().unwrap_or(ZoneState::Normal) {
                ZoneState::Normal | ZoneState::FullDisruption => self.config.node_eviction_rate,
                ZoneState::PartialDisruption => {
                    if nodes.len() <= self.config.large_cluster_size_threshold {
                        0.0
                    } else {
                        self.config.secondary_node_eviction_rate
                    }
                }
            };
            loop {
                let next = self
                    .pending
                    .lock()
                    .expect("pending lock")
                    .get(&zone)
                    .and_then(|l| l.first().cloned());
                let Some(name) = next else {
                    break;
                };
                // A node that is Ready again (or gone) leaves the queue without a token.
                let Some(node) = self.nodes.get("", &name) else {
                    self.forget_pending(&name);
                    continue;
                };
                let (want, other) = match ready_status(&node) {
                    Some("False") => (NOT_READY, UNREACHABLE),
                    Some("Unknown") => (UNREACHABLE, NOT_READY),
                    _ => {
                        self.forget_pending(&name);
                        continue;
                    }
                };
                let allowed = self
                    .buckets
                    .lock()
                    .expect("bucket lock")
                    .entry(zone.clone())
                    .or_insert(Bucket {
                        tokens: 1.0,
                        at: now,
                    })
                    .take(rate, now);
                if !allowed {
                    break;
                }
                self.forget_pending(&name);
                let list = swapped(
                    &taints(&node),
                    &[taint(want, "NoExecute", Some(now))],
                    &[(other, "NoExecute")],
                );
                if let Err(e) = self.write_taints(&node, list).await {
                    // A conflict means the node changed: the next pass looks at it again.
                    tracing::warn!(error = %e, "adding a NoExecute taint failed; will retry");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn node(ready: Option<&str>, unschedulable: bool) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                unschedulable: Some(unschedulable),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: ready.map(|r| {
                    vec![
                        NodeCondition {
                            type_: "Ready".into(),
                            status: r.into(),
                            ..Default::default()
                        },
                        NodeCondition {
                            type_: "DiskPressure".into(),
                            status: "True".into(),
                            ..Default::default()
                        },
                    ]
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn no_schedule_taints_follow_conditions_and_cordon() {
        assert_eq!(
            no_schedule_keys(&node(Some("True"), false)),
            ["node.kubernetes.io/disk-pressure"]
        );
        assert_eq!(
            no_schedule_keys(&node(Some("Unknown"), true)),
            [
                UNREACHABLE,
                "node.kubernetes.io/disk-pressure",
                UNSCHEDULABLE
            ]
        );
        assert_eq!(no_schedule_keys(&node(Some("False"), false))[0], NOT_READY);
        assert!(no_schedule_keys(&node(None, false)).is_empty());
    }

    #[test]
    fn swapping_keeps_other_taints_and_adds_once() {
        let user = taint("dedicated", "NoSchedule", None);
        let cur = vec![user.clone(), taint(NOT_READY, "NoExecute", None)];
        let out = swapped(
            &cur,
            &[taint(UNREACHABLE, "NoExecute", None)],
            &[(NOT_READY, "NoExecute")],
        );
        assert_eq!(
            out.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
            ["dedicated", UNREACHABLE]
        );
        let again = swapped(&out, &[taint(UNREACHABLE, "NoExecute", None)], &[]);
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn zone_states_as_kube_computes_them() {
        let t = Some("True");
        let u = Some("Unknown");
        assert_eq!(zone_state(&[t, u], 0.55), ZoneState::Normal);
        assert_eq!(zone_state(&[u, u], 0.55), ZoneState::FullDisruption);
        assert_eq!(zone_state(&[None], 0.55), ZoneState::FullDisruption);
        // More than 2 and at least 55 % not ready.
        assert_eq!(
            zone_state(&[u, u, u, t], 0.55),
            ZoneState::PartialDisruption
        );
        assert_eq!(zone_state(&[u, u, t, t], 0.55), ZoneState::Normal);
    }

    #[test]
    fn the_bucket_allows_a_burst_of_one_then_the_rate() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut b = Bucket {
            tokens: 1.0,
            at: t0,
        };
        assert!(b.take(0.1, t0));
        assert!(!b.take(0.1, t0 + chrono::Duration::seconds(5)));
        assert!(b.take(0.1, t0 + chrono::Duration::seconds(10)));
        assert!(!b.take(0.0, t0 + chrono::Duration::seconds(100)));
    }

    #[test]
    fn zones_come_from_topology_labels() {
        let mut n = node(Some("True"), false);
        assert_eq!(zone_of(&n), "");
        n.metadata.labels = Some(
            [("topology.kubernetes.io/zone".to_string(), "a".to_string())]
                .into_iter()
                .collect(),
        );
        assert_eq!(zone_of(&n), ":\0:a");
    }
}
