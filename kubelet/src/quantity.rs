//! Kubernetes resource quantities ("100Mi", "1.5Gi", "250m", "2") as the kubelet needs them, on
//! the workspace's exact parser (common/quantity): "1.1" CPU is 1100m, never 1101m from a float.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A quantity as a number, for ratios and comparisons (QoS, downward-API divisors, thresholds).
pub fn parse(s: &str) -> Option<f64> {
    pea_quantity::as_f64(s).ok()
}

/// A byte quantity, rounded up as kube's `Quantity.Value` does; negative quantities refused.
pub fn parse_bytes(s: &str) -> Option<u64> {
    pea_quantity::value(s)
        .ok()
        .and_then(|v| u64::try_from(v).ok())
}

/// CPU in millicores, rounded up as kube's `Quantity.MilliValue`; negative quantities refused.
pub fn millicores(q: &Quantity) -> Option<u64> {
    pea_quantity::milli_value(&q.0)
        .ok()
        .and_then(|v| u64::try_from(v).ok())
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
        assert_eq!(millicores(&Quantity("1.1".into())), Some(1100));
        assert_eq!(parse_bytes("1e3"), Some(1000));
        assert_eq!(parse_bytes("12x"), None);
        assert_eq!(parse_bytes("-1"), None);
        assert_eq!(parse("1.5Gi"), Some(1.5 * (1u64 << 30) as f64));
    }
}
