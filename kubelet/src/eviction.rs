//! Eviction thresholds (`evictionHard`): signal names and values as kubelet parses them.

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

#[cfg(test)]
mod tests {
    use super::*;

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
