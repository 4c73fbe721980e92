//! This node as its Node object describes it: the node IPs (kube-proxy reads them from the
//! Node when `--bind-address` is not given) and the `topology.kubernetes.io/zone` label that
//! topology-aware routing compares with EndpointSlice hints.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;

/// kube's `LabelTopologyZone`.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// What the proxy uses of its Node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// At most one address per family, the first family listed first (kube's
    /// `GetNodeHostIPs`: InternalIP addresses, then ExternalIP ones).
    pub ips: Vec<IpAddr>,
    pub zone: Option<String>,
}

impl NodeInfo {
    pub fn of(node: &Node) -> Self {
        let addresses: Vec<(&str, IpAddr)> = node
            .status
            .iter()
            .flat_map(|s| s.addresses.iter().flatten())
            .filter_map(|a| Some((a.type_.as_str(), a.address.parse::<IpAddr>().ok()?)))
            .filter(|(_, ip)| !ip.is_unspecified() && !ip.is_loopback())
            .collect();
        let mut ordered: Vec<IpAddr> = Vec::new();
        for kind in ["InternalIP", "ExternalIP"] {
            ordered.extend(
                addresses
                    .iter()
                    .filter(|(t, _)| *t == kind)
                    .map(|(_, ip)| *ip),
            );
        }
        let mut ips: Vec<IpAddr> = Vec::new();
        for ip in ordered {
            if !ips.iter().any(|have| have.is_ipv4() == ip.is_ipv4()) {
                ips.push(ip);
            }
        }
        let zone = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ZONE_LABEL))
            .filter(|z| !z.is_empty())
            .cloned();
        NodeInfo { ips, zone }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn internal_ip_first_one_per_family_and_the_zone_label() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {ZONE_LABEL: "zone-a"}},
            "status": {"addresses": [
                {"type": "Hostname", "address": "n1"},
                {"type": "ExternalIP", "address": "203.0.113.7"},
                {"type": "InternalIP", "address": "fd00::1"},
                {"type": "InternalIP", "address": "192.168.60.1"},
                {"type": "InternalIP", "address": "192.168.60.9"},
                {"type": "ExternalIP", "address": "2001:db8::7"},
            ]}
        }))
        .unwrap();
        let info = NodeInfo::of(&node);
        assert_eq!(
            info.ips,
            [
                "fd00::1".parse::<IpAddr>().unwrap(),
                "192.168.60.1".parse().unwrap()
            ]
        );
        assert_eq!(info.zone.as_deref(), Some("zone-a"));
        let bare: Node = serde_json::from_value(json!({"metadata": {"name": "n2"},
            "status": {"addresses": [{"type": "ExternalIP", "address": "203.0.113.8"}]}}))
        .unwrap();
        let info = NodeInfo::of(&bare);
        assert_eq!(info.ips, ["203.0.113.8".parse::<IpAddr>().unwrap()]);
        assert_eq!(info.zone, None);
    }
}
