//! Eviction thresholds (`evictionHard`, `evictionSoft` with `evictionSoftGracePeriod`,
//! `evictionMinimumReclaim`): signal names and values as kubelet parses them (its
//! `ParseThresholdConfig`, same refusals, `allocatableMemory.available` derived from a hard
//! `memory.available` when node allocatable is enforced on pods), and the eviction manager's
//! admission rule for new pods while the node is under pressure.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

pub mod candidates;
pub mod local_storage;
pub mod manager;
pub mod memcg;
pub mod observe;
pub mod rank;
pub mod reclaim;
pub mod state;
pub mod usage;

use crate::podconfig::qos::{self, Qos};

/// A signal kubelet knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    MemoryAvailable,
    /// The pods' cgroup (kubepods) against its limit, node allocatable (kubelet's
    /// SignalAllocatableMemoryAvailable).
    AllocatableMemoryAvailable,
    NodefsAvailable,
    NodefsInodesFree,
    ImagefsAvailable,
    ImagefsInodesFree,
    /// The filesystem of the containers' writable layers (kubelet 1.32's split image
    /// filesystem signals): observed and thresholded as nodefs or imagefs, see
    /// [`containerfs_thresholds`].
    ContainerfsAvailable,
    ContainerfsInodesFree,
    PidAvailable,
}

impl Signal {
    pub fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "memory.available" => Signal::MemoryAvailable,
            "allocatableMemory.available" => Signal::AllocatableMemoryAvailable,
            "nodefs.available" => Signal::NodefsAvailable,
            "nodefs.inodesFree" => Signal::NodefsInodesFree,
            "imagefs.available" => Signal::ImagefsAvailable,
            "imagefs.inodesFree" => Signal::ImagefsInodesFree,
            "containerfs.available" => Signal::ContainerfsAvailable,
            "containerfs.inodesFree" => Signal::ContainerfsInodesFree,
            "pid.available" => Signal::PidAvailable,
            // kubelet's unsupportedEvictionSignal.
            other => return Err(format!("unsupported eviction signal {other}")),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::AllocatableMemoryAvailable => "allocatableMemory.available",
            Signal::NodefsAvailable => "nodefs.available",
            Signal::NodefsInodesFree => "nodefs.inodesFree",
            Signal::ImagefsAvailable => "imagefs.available",
            Signal::ImagefsInodesFree => "imagefs.inodesFree",
            Signal::ContainerfsAvailable => "containerfs.available",
            Signal::ContainerfsInodesFree => "containerfs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    /// kubelet's signalToResource: what its eviction messages say the node was low on.
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable | Signal::AllocatableMemoryAvailable => "memory",
            Signal::NodefsAvailable | Signal::ImagefsAvailable | Signal::ContainerfsAvailable => {
                "ephemeral-storage"
            }
            Signal::NodefsInodesFree
            | Signal::ImagefsInodesFree
            | Signal::ContainerfsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    /// kubelet's signalToNodeCondition.
    pub fn condition(self) -> Condition {
        match self {
            Signal::MemoryAvailable | Signal::AllocatableMemoryAvailable => Condition::Memory,
            Signal::PidAvailable => Condition::Pid,
            _ => Condition::Disk,
        }
    }

    /// Counted in bytes (printed as binary-SI quantities) or in items (inodes, pids).
    pub fn is_bytes(self) -> bool {
        matches!(
            self,
            Signal::MemoryAvailable
                | Signal::AllocatableMemoryAvailable
                | Signal::NodefsAvailable
                | Signal::ImagefsAvailable
                | Signal::ContainerfsAvailable
        )
    }

    /// A memory signal (ranked by working sets, acted on first: kubelet's byEvictionPriority).
    pub fn is_memory(self) -> bool {
        matches!(
            self,
            Signal::MemoryAvailable | Signal::AllocatableMemoryAvailable
        )
    }
}

/// The node conditions eviction signals drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    Memory,
    Disk,
    Pid,
}

/// Below what a signal must not fall: an absolute quantity or a percentage of capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Quantity(u64),
    Percent(f64),
}

impl Value {
    /// The amount it stands for, for a resource of `capacity`.
    pub fn amount(&self, capacity: u64) -> u64 {
        match *self {
            Value::Quantity(q) => q,
            Value::Percent(p) => (capacity as f64 * p / 100.0) as u64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Value,
}

impl Threshold {
    /// One `signal: value` statement as kubelet's parseThresholdStatement reads it.
    pub fn parse(signal: &str, value: &str) -> Result<Self, String> {
        let signal = Signal::parse(signal)?;
        let name = signal.name();
        let value = if let Some(p) = value.strip_suffix('%') {
            let p: f64 = p
                .parse()
                .map_err(|_| format!("{value:?} is not a percentage"))?;
            if p < 0.0 {
                return Err(format!(
                    "eviction percentage threshold {name} must be >= 0%: {value}"
                ));
            }
            if p > 100.0 {
                return Err(format!(
                    "eviction percentage threshold {name} must be <= 100%: {value}"
                ));
            }
            Value::Percent(p)
        } else {
            let q = crate::quantity::parse(value)
                .ok_or_else(|| format!("{value:?} is not a quantity (e.g. 100Mi, 10%)"))?;
            if q <= 0.0 {
                return Err(format!(
                    "eviction threshold {name} must be positive: {value}"
                ));
            }
            Value::Quantity(q.ceil() as u64)
        };
        Ok(Self { signal, value })
    }

    /// The amount below which the signal is crossed, for a resource of `capacity`.
    pub fn min_available(&self, capacity: u64) -> u64 {
        self.value.amount(capacity)
    }
}

/// A configured threshold: hard (no grace period) or soft, with its minimum reclaim.
#[derive(Debug, Clone, PartialEq)]
pub struct Configured {
    pub threshold: Threshold,
    /// The value as written (kubelet's messages print a quantity as given).
    pub written: String,
    /// None: a hard threshold (evictionHard); Some: soft, crossed for this long before acting.
    pub grace: Option<Duration>,
    pub min_reclaim: Option<Value>,
}

impl Configured {
    pub fn is_hard(&self) -> bool {
        self.grace.is_none()
    }
    pub fn signal(&self) -> Signal {
        self.threshold.signal
    }
}

/// The eviction settings of the kubelet config, as kubelet's ParseThresholdConfig combines
/// them: hard thresholds, soft ones (each must have its grace period), minimum reclaims.
pub fn parse_config(
    hard: &BTreeMap<String, String>,
    soft: &BTreeMap<String, String>,
    soft_grace: &BTreeMap<String, String>,
    min_reclaim: &BTreeMap<String, String>,
) -> Result<Vec<Configured>, String> {
    let mut graces = BTreeMap::new();
    for (signal, v) in soft_grace {
        let s = Signal::parse(signal)?;
        let d = crate::config::parse_duration(v).map_err(|_| {
            format!("invalid eviction grace period specified: {v}, must be a positive value")
        })?;
        graces.insert(s, d);
    }
    let mut reclaims = BTreeMap::new();
    for (signal, v) in min_reclaim {
        let s = Signal::parse(signal)?;
        let value = if let Some(p) = v.strip_suffix('%') {
            let p: f64 = p
                .parse()
                .map_err(|_| format!("{v:?} is not a percentage"))?;
            if p <= 0.0 {
                return Err(format!(
                    "eviction percentage minimum reclaim {signal} must be positive: {v}"
                ));
            }
            Value::Percent(p)
        } else {
            let q = crate::quantity::parse(v)
                .ok_or_else(|| format!("{v:?} is not a quantity (e.g. 100Mi, 10%)"))?;
            if q < 0.0 {
                return Err(format!(
                    "negative eviction minimum reclaim specified for {signal}"
                ));
            }
            Value::Quantity(q.ceil() as u64)
        };
        reclaims.insert(s, value);
    }
    let mut out = Vec::new();
    for (signal, v) in hard {
        let threshold = Threshold::parse(signal, v)?;
        out.push(Configured {
            threshold,
            written: v.clone(),
            grace: None,
            min_reclaim: reclaims.get(&threshold.signal).copied(),
        });
    }
    for (signal, v) in soft {
        let threshold = Threshold::parse(signal, v)?;
        let grace = graces.get(&threshold.signal).copied().ok_or_else(|| {
            format!(
                "grace period must be specified for the soft eviction threshold {}",
                threshold.signal.name()
            )
        })?;
        out.push(Configured {
            threshold,
            written: v.clone(),
            grace: Some(grace),
            min_reclaim: reclaims.get(&threshold.signal).copied(),
        });
    }
    Ok(out)
}

/// kubelet's NodeAllocatableEnforcementKey: `enforceNodeAllocatable` naming it limits the pods'
/// cgroup to node allocatable, and the eviction manager watches that cgroup too.
pub const ENFORCE_PODS: &str = "pods";

/// kubelet's addAllocatableThresholds: with `pods` in enforceNodeAllocatable every hard
/// `memory.available` threshold is copied to `allocatableMemory.available` (same value and
/// minimum reclaim), appended after the configured ones.
pub fn add_allocatable_thresholds(
    mut thresholds: Vec<Configured>,
    enforce_node_allocatable: &[String],
) -> Vec<Configured> {
    if !enforce_node_allocatable.iter().any(|k| k == ENFORCE_PODS) {
        return thresholds;
    }
    let extra: Vec<Configured> = thresholds
        .iter()
        .filter(|t| t.signal() == Signal::MemoryAvailable && t.is_hard())
        .map(|t| Configured {
            threshold: Threshold {
                signal: Signal::AllocatableMemoryAvailable,
                value: t.threshold.value,
            },
            ..t.clone()
        })
        .collect();
    thresholds.extend(extra);
    thresholds
}

/// kubelet's UpdateContainerFsThresholds, run once the filesystems are known: containerfs
/// thresholds are never taken as written — a configured one is dropped with kubelet's
/// complaint — but copied (hard and soft, with their grace periods and minimum reclaims) from
/// nodefs when the containers' writable layers share the node's filesystem, or from imagefs
/// when a dedicated image filesystem holds them. (A split image filesystem, containers on
/// nodefs and images apart, takes nodefs too; neither pea-shim nor containerd 1.6 reports
/// one.) kubelet also appends empty thresholds when the source has none; such a threshold is
/// never met, so none is appended here. Returns the thresholds and the complaints.
pub fn containerfs_thresholds(
    thresholds: Vec<Configured>,
    dedicated_imagefs: bool,
) -> (Vec<Configured>, Vec<String>) {
    let mut complaints = Vec::new();
    let mut out: Vec<Configured> = Vec::new();
    for t in thresholds {
        if matches!(
            t.signal(),
            Signal::ContainerfsAvailable | Signal::ContainerfsInodesFree
        ) {
            complaints.push(format!(
                "found {} for {} eviction. ignoring",
                t.signal().name(),
                if t.is_hard() { "hard" } else { "soft" }
            ));
        } else {
            out.push(t);
        }
    }
    let (bytes, inodes) = if dedicated_imagefs {
        (Signal::ImagefsAvailable, Signal::ImagefsInodesFree)
    } else {
        (Signal::NodefsAvailable, Signal::NodefsInodesFree)
    };
    let copies: Vec<Configured> = out
        .iter()
        .filter_map(|t| {
            let signal = match t.signal() {
                s if s == bytes => Signal::ContainerfsAvailable,
                s if s == inodes => Signal::ContainerfsInodesFree,
                _ => return None,
            };
            let mut c = t.clone();
            c.threshold.signal = signal;
            Some(c)
        })
        .collect();
    out.extend(copies);
    (out, complaints)
}

/// The node's pressure conditions (what `node::pressure` observes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

/// kubelet's eviction reason: on evicted pods and on pods refused while under pressure.
pub const REASON: &str = "Evicted";

const MEMORY_PRESSURE_TAINT: &str = "node.kubernetes.io/memory-pressure";

/// kubelet's eviction-manager admission (Admit): with no pressure every pod is admitted;
/// under memory pressure alone, all but BestEffort pods (and BestEffort ones tolerating the
/// memory-pressure taint); under disk or PID pressure none. Refusal: the reason and message
/// kubelet gives ("The node had condition: [MemoryPressure]. ").
pub fn admit(pod: &Pod, p: Pressure) -> Result<(), (&'static str, String)> {
    let mut conds = Vec::new();
    if p.memory {
        conds.push("MemoryPressure");
    }
    if p.disk {
        conds.push("DiskPressure");
    }
    if p.pid {
        conds.push("PIDPressure");
    }
    if conds.is_empty() {
        return Ok(());
    }
    if !p.disk && !p.pid {
        if qos::of(pod) != Qos::BestEffort {
            return Ok(());
        }
        let tolerates = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_ref())
            .is_some_and(|ts| {
                ts.iter().any(|t| {
                    let key_ok = match t.key.as_deref() {
                        None | Some("") => t.operator.as_deref() == Some("Exists"),
                        Some(k) => k == MEMORY_PRESSURE_TAINT,
                    };
                    let effect_ok =
                        matches!(t.effect.as_deref(), None | Some("") | Some("NoSchedule"));
                    key_ok && effect_ok
                })
            });
        if tolerates {
            return Ok(());
        }
    }
    Err((
        REASON,
        format!("The node had condition: [{}]. ", conds.join(" ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(requests: Option<&str>, toleration: Option<&str>) -> Pod {
        let mut c = serde_json::json!({"name": "c", "image": "x"});
        if let Some(r) = requests {
            c["resources"] = serde_json::json!({"requests": {"memory": r}});
        }
        let mut spec = serde_json::json!({"containers": [c]});
        if let Some(k) = toleration {
            spec["tolerations"] =
                serde_json::json!([{"key": k, "operator": "Exists", "effect": "NoSchedule"}]);
        }
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn admission_under_pressure_follows_kubelet() {
        let mem = Pressure {
            memory: true,
            ..Default::default()
        };
        let disk = Pressure {
            disk: true,
            ..Default::default()
        };
        let best_effort = pod(None, None);
        let burstable = pod(Some("10Mi"), None);
        assert!(admit(&best_effort, Pressure::default()).is_ok());
        assert_eq!(
            admit(&best_effort, mem),
            Err((
                REASON,
                "The node had condition: [MemoryPressure]. ".to_string()
            ))
        );
        assert!(admit(&burstable, mem).is_ok());
        assert!(admit(&pod(None, Some(MEMORY_PRESSURE_TAINT)), mem).is_ok());
        assert!(admit(&pod(None, Some("other")), mem).is_err());
        assert_eq!(
            admit(&burstable, disk),
            Err((
                REASON,
                "The node had condition: [DiskPressure]. ".to_string()
            ))
        );
    }

    #[test]
    fn thresholds_parse() {
        let t = Threshold::parse("memory.available", "100Mi").unwrap();
        assert_eq!(t.value, Value::Quantity(100 << 20));
        let t = Threshold::parse("nodefs.available", "10%").unwrap();
        assert_eq!(t.min_available(1000), 100);
        assert_eq!(
            Threshold::parse("memory.free", "1Gi").unwrap_err(),
            "unsupported eviction signal memory.free"
        );
        assert_eq!(
            Threshold::parse("memory.available", "110%").unwrap_err(),
            "eviction percentage threshold memory.available must be <= 100%: 110%"
        );
        assert_eq!(
            Threshold::parse("pid.available", "0").unwrap_err(),
            "eviction threshold pid.available must be positive: 0"
        );
    }

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn allocatable_memory_copies_hard_memory_thresholds_when_pods_are_enforced() {
        let none = BTreeMap::new();
        let t = parse_config(
            &map(&[("memory.available", "100Mi"), ("nodefs.available", "10%")]),
            &map(&[("memory.available", "200Mi")]),
            &map(&[("memory.available", "30s")]),
            &map(&[("memory.available", "50Mi")]),
        )
        .unwrap();
        let with = add_allocatable_thresholds(t.clone(), &["pods".to_string()]);
        assert_eq!(with.len(), 4);
        let a = &with[3];
        assert_eq!(a.signal(), Signal::AllocatableMemoryAvailable);
        assert!(a.is_hard(), "only the hard memory threshold is copied");
        assert_eq!(a.threshold.value, Value::Quantity(100 << 20));
        assert_eq!(a.min_reclaim, Some(Value::Quantity(50 << 20)));
        assert_eq!(a.written, "100Mi");
        assert_eq!(
            add_allocatable_thresholds(t.clone(), &["none".to_string()]).len(),
            3
        );
        assert_eq!(add_allocatable_thresholds(t, &[]).len(), 3);
        assert_eq!(
            Signal::parse("allocatableMemory.available")
                .unwrap()
                .resource(),
            "memory"
        );
        assert!(parse_config(&none, &none, &none, &none).unwrap().is_empty());
    }

    #[test]
    fn containerfs_thresholds_follow_nodefs_or_imagefs_never_their_own() {
        let none = BTreeMap::new();
        let t = parse_config(
            &map(&[
                ("nodefs.available", "10%"),
                ("nodefs.inodesFree", "5%"),
                ("imagefs.available", "15%"),
                ("containerfs.available", "100%"),
            ]),
            &map(&[("nodefs.available", "20%")]),
            &map(&[("nodefs.available", "1m")]),
            &none,
        )
        .unwrap();
        // One filesystem: containerfs is nodefs (hard, soft with its grace, inodes).
        let (one, complaints) = containerfs_thresholds(t.clone(), false);
        assert_eq!(
            complaints,
            ["found containerfs.available for hard eviction. ignoring"]
        );
        let c: Vec<_> = one
            .iter()
            .filter(|t| t.signal().name().starts_with("containerfs"))
            .map(|t| (t.signal().name(), t.written.as_str(), t.grace))
            .collect();
        assert_eq!(
            c,
            [
                ("containerfs.available", "10%", None),
                ("containerfs.inodesFree", "5%", None),
                (
                    "containerfs.available",
                    "20%",
                    Some(Duration::from_secs(60))
                ),
            ]
        );
        // A dedicated image filesystem holding the containers: containerfs is imagefs.
        let (dedicated, _) = containerfs_thresholds(t, true);
        let c: Vec<_> = dedicated
            .iter()
            .filter(|t| t.signal().name().starts_with("containerfs"))
            .map(|t| (t.signal().name(), t.written.as_str()))
            .collect();
        assert_eq!(c, [("containerfs.available", "15%")]);
        assert_eq!(Signal::ContainerfsInodesFree.resource(), "inodes");
        assert_eq!(Signal::ContainerfsAvailable.condition(), Condition::Disk);
        assert_eq!(
            Threshold::parse("containerfs.available", "110%").unwrap_err(),
            "eviction percentage threshold containerfs.available must be <= 100%: 110%"
        );
    }

    #[test]
    fn config_combines_hard_soft_grace_and_reclaim_as_kubelet() {
        let none = BTreeMap::new();
        let all = parse_config(
            &map(&[("nodefs.available", "1Gi")]),
            &map(&[("memory.available", "200Mi")]),
            &map(&[("memory.available", "1m30s")]),
            &map(&[("nodefs.available", "500Mi"), ("memory.available", "5%")]),
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[0].is_hard());
        assert_eq!(all[0].min_reclaim, Some(Value::Quantity(500 << 20)));
        assert_eq!(all[1].grace, Some(Duration::from_secs(90)));
        assert_eq!(all[1].min_reclaim, Some(Value::Percent(5.0)));
        assert_eq!(
            parse_config(&none, &map(&[("memory.available", "1Gi")]), &none, &none).unwrap_err(),
            "grace period must be specified for the soft eviction threshold memory.available"
        );
        assert_eq!(
            parse_config(&none, &none, &map(&[("disk.free", "1m")]), &none).unwrap_err(),
            "unsupported eviction signal disk.free"
        );
        assert_eq!(
            parse_config(&none, &none, &none, &map(&[("pid.available", "0%")])).unwrap_err(),
            "eviction percentage minimum reclaim pid.available must be positive: 0%"
        );
    }
}
