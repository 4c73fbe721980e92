//! Kubernetes resource quantities ("100Mi", "1.5Gi", "250m", "2") as the kubelet needs them.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A quantity as a number (suffixes: Ki Mi Gi Ti Pi Ei, k M G T P E, m, exponent e/E).
pub fn parse(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * scale)
}

/// A byte quantity, rounded up as kube does for memory.
pub fn parse_bytes(s: &str) -> Option<u64> {
    parse(s).filter(|v| *v >= 0.0).map(|v| v.ceil() as u64)
}

/// CPU in millicores, rounded up.
pub fn millicores(q: &Quantity) -> Option<u64> {
    parse(&q.0)
        .filter(|v| *v >= 0.0)
        .map(|v| (v * 1000.0).ceil() as u64)
}

pub fn bytes(q: &Quantity) -> Option<u64> {
    parse_bytes(&q.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_bytes("100Mi"), Some(100 << 20));
        assert_eq!(parse_bytes("1G"), Some(1_000_000_000));
        assert_eq!(millicores(&Quantity("250m".into())), Some(250));
        assert_eq!(millicores(&Quantity("2".into())), Some(2000));
        assert_eq!(millicores(&Quantity("0.5".into())), Some(500));
        assert_eq!(parse_bytes("1e3"), Some(1000));
        assert_eq!(parse_bytes("12x"), None);
        assert_eq!(parse_bytes("-1"), None);
    }
}
