//! Eviction thresholds (`evictionHard`): signal names and values as kubelet parses them, and
//! the eviction manager's admission rule for new pods while the node is under pressure.

use k8s_openapi::api::core::v1::Pod;

pub mod manager;

use crate::podconfig::qos::{self, Qos};

/// A signal kubelet knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    MemoryAvailable,
    NodefsAvailable,
    NodefsInodesFree,
    ImagefsAvailable,
    ImagefsInodesFree,
    PidAvailable,
}

/// Below what a signal must not fall: an absolute quantity or a percentage of capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Quantity(u64),
    Percent(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Value,
}

impl Threshold {
    pub fn parse(signal: &str, value: &str) -> Result<Self, String> {
        let signal = match signal {
            "memory.available" => Signal::MemoryAvailable,
            "nodefs.available" => Signal::NodefsAvailable,
            "nodefs.inodesFree" => Signal::NodefsInodesFree,
            "imagefs.available" => Signal::ImagefsAvailable,
            "imagefs.inodesFree" => Signal::ImagefsInodesFree,
            "pid.available" => Signal::PidAvailable,
            other => return Err(format!("unknown eviction signal {other:?}")),
        };
        let value = if let Some(p) = value.strip_suffix('%') {
            let p: f64 = p
                .parse()
                .map_err(|_| format!("{value:?} is not a percentage"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("{value:?}: a percentage is between 0% and 100%"));
            }
            Value::Percent(p)
        } else {
            Value::Quantity(
                crate::quantity::parse_bytes(value)
                    .ok_or_else(|| format!("{value:?} is not a quantity (e.g. 100Mi, 10%)"))?,
            )
        };
        Ok(Self { signal, value })
    }

    /// The amount below which the signal is crossed, for a resource of `capacity`.
    pub fn min_available(&self, capacity: u64) -> u64 {
        match self.value {
            Value::Quantity(q) => q,
            Value::Percent(p) => (capacity as f64 * p / 100.0) as u64,
        }
    }
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
        assert!(Threshold::parse("memory.free", "1Gi").is_err());
        assert!(Threshold::parse("memory.available", "110%").is_err());
    }
}
