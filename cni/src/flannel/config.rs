//! The agent's configuration file (JSON).

use std::{net::Ipv4Addr, path::PathBuf};

use ipnet::Ipv4Net;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum AgentConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid agent config: {0}")]
    Invalid(String),
}

/// Where the node's subnet lease comes from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum SubnetSource {
    /// A fixed subnet, published to a directory all nodes share (one file per node, shaped like
    /// the Node object fields flannel uses: `podCIDR` and its annotations).
    Static {
        subnet: Ipv4Net,
        registry_dir: PathBuf,
    },
    /// The Node's `spec.podCIDR` from the cluster API (flannel's `--kube-subnet-mgr`); the node
    /// publishes its annotations on its Node and learns the others by watching all Nodes. With
    /// no kubeconfig, the in-cluster config or `$KUBECONFIG` is used.
    Kubernetes {
        #[serde(default)]
        kubeconfig: Option<PathBuf>,
    },
}

fn default_vni() -> u32 {
    1
}
fn default_port() -> u16 {
    8472
}
fn default_device() -> String {
    "flannel.1".into()
}
fn default_subnet_file() -> PathBuf {
    "/run/flannel/subnet.env".into()
}
fn default_resync() -> u64 {
    1000
}
/// VXLAN backend settings (flannel's defaults).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VxlanConfig {
    #[serde(default = "default_vni")]
    pub vni: u32,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_device")]
    pub device: String,
}

impl Default for VxlanConfig {
    fn default() -> Self {
        VxlanConfig {
            vni: default_vni(),
            port: default_port(),
            device: default_device(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfig {
    /// The cluster's pod network (all nodes' subnets).
    pub network: Ipv4Net,
    /// This node's name (also `--node-name` / `NODE_NAME` in pea-flanneld).
    #[serde(default)]
    pub node_name: String,
    /// The uplink the overlay runs over: an interface name or one of its IPv4 addresses
    /// (flannel's `--iface`; also pea-flanneld's flag). Default: the interface of the IPv4
    /// default route, as flannel picks it.
    #[serde(default)]
    pub iface: Option<String>,
    /// The address other nodes reach this one at; default: the uplink's first IPv4 address.
    #[serde(default, rename = "publicIP")]
    pub public_ip: Option<Ipv4Addr>,
    /// Required unless pea-flanneld gets `--kube-subnet-mgr`.
    #[serde(default)]
    pub subnet_source: Option<SubnetSource>,
    #[serde(default)]
    pub vxlan: VxlanConfig,
    #[serde(default = "default_subnet_file")]
    pub subnet_file: PathBuf,
    /// flanneld's `--ip-masq`: the agent itself masquerades pod traffic leaving the network and
    /// says so with FLANNEL_IPMASQ=true, which tells the CNI plugin not to. pea-flanneld does not
    /// implement agent-side masquerade (true is refused): it writes FLANNEL_IPMASQ=false and
    /// pea-cni masquerades per node, as flannel's plugin makes the bridge plugin do.
    #[serde(default)]
    pub ip_masq: bool,
    /// How often the registry is re-read, in milliseconds.
    #[serde(default = "default_resync")]
    pub resync_millis: u64,
}

impl AgentConfig {
    /// Reads and validates.
    pub fn load(path: &std::path::Path) -> Result<Self, AgentConfigError> {
        let c = Self::read(path)?;
        c.validate()?;
        Ok(c)
    }

    /// Reads without validating (for callers that apply command-line overrides first).
    pub fn read(path: &std::path::Path) -> Result<Self, AgentConfigError> {
        let bytes = std::fs::read(path).map_err(|source| AgentConfigError::Read {
            path: path.into(),
            source,
        })?;
        let c: AgentConfig =
            serde_json::from_slice(&bytes).map_err(|source| AgentConfigError::Parse {
                path: path.into(),
                source,
            })?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), AgentConfigError> {
        let inv = |m: String| Err(AgentConfigError::Invalid(m));
        if self.node_name.is_empty() {
            return inv("nodeName is missing (config, --node-name or NODE_NAME)".into());
        }
        crate::config::validate_network_name(&self.node_name)
            .map_err(|e| AgentConfigError::Invalid(format!("nodeName: {e}")))?;
        if let Some(iface) = &self.iface {
            if iface.parse::<Ipv4Addr>().is_err() {
                crate::env::validate_ifname(iface).map_err(|e| {
                    AgentConfigError::Invalid(format!(
                        "iface: {e} (give an interface name or an IPv4 address)"
                    ))
                })?;
            }
        }
        crate::env::validate_ifname(&self.vxlan.device)
            .map_err(|e| AgentConfigError::Invalid(format!("vxlan.device: {e}")))?;
        if self.vxlan.vni == 0 || self.vxlan.vni >= 1 << 24 {
            return inv(format!("vxlan.vni {} is not in 1..2^24", self.vxlan.vni));
        }
        if let Some(SubnetSource::Static { subnet, .. }) = &self.subnet_source {
            if !self.network.contains(subnet) || subnet.prefix_len() > 30 {
                return inv(format!(
                    "subnet {subnet} must be a /30 or larger inside network {}",
                    self.network
                ));
            }
        }
        if self.subnet_source.is_none() {
            return inv("subnetSource is missing (config, or --kube-subnet-mgr)".into());
        }
        if self.ip_masq {
            return inv(
                "ipMasq: masquerading in the agent (flanneld --ip-masq) is not implemented; \
                 leave it false and pea-cni masquerades pod traffic (its ipMasq key)"
                    .into(),
            );
        }
        if self.resync_millis == 0 {
            return inv("resyncMillis must be > 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_config_with_defaults() {
        let c: AgentConfig = serde_json::from_str(
            r#"{"network":"10.244.0.0/16","nodeName":"n1","iface":"eth0",
                "subnetSource":{"static":{"subnet":"10.244.1.0/24","registryDir":"/tmp/r"}}}"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.vxlan, VxlanConfig::default());
        assert_eq!(c.vxlan.port, 8472);
        assert_eq!(c.vxlan.vni, 1);
        assert!(
            !c.ip_masq,
            "FLANNEL_IPMASQ=false unless the agent masquerades"
        );
    }

    #[test]
    fn agent_side_masquerade_is_refused_as_not_implemented() {
        let c: AgentConfig = serde_json::from_str(
            r#"{"network":"10.244.0.0/16","nodeName":"n1","iface":"eth0","ipMasq":true,
                "subnetSource":{"static":{"subnet":"10.244.1.0/24","registryDir":"/tmp/r"}}}"#,
        )
        .unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("not implemented"), "{e}");
    }

    #[test]
    fn bad_configs_named() {
        let e = serde_json::from_str::<AgentConfig>(
            r#"{"network":"10.244.0.0/16","nodeName":"n1","iface":"eth0","bogus":1,
                "subnetSource":{"static":{"subnet":"10.244.1.0/24","registryDir":"/tmp/r"}}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let c: AgentConfig = serde_json::from_str(
            r#"{"network":"10.244.0.0/16","nodeName":"n1","iface":"eth0",
                "subnetSource":{"static":{"subnet":"10.99.1.0/24","registryDir":"/tmp/r"}}}"#,
        )
        .unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("10.99.1.0/24"));
        let c: AgentConfig = serde_json::from_str(
            r#"{"network":"10.244.0.0/16","nodeName":"n1","iface":"eth0/x",
                "subnetSource":{"static":{"subnet":"10.244.1.0/24","registryDir":"/tmp/r"}}}"#,
        )
        .unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("iface"), "{e}");
    }

    #[test]
    fn iface_is_optional_and_may_be_an_address() {
        for iface in [None, Some("10.77.0.11"), Some("eth1")] {
            let mut v = serde_json::json!({"network": "10.244.0.0/16", "nodeName": "n1",
                "subnetSource": {"kubernetes": {}}});
            if let Some(i) = iface {
                v["iface"] = i.into();
            }
            let c: AgentConfig = serde_json::from_value(v).unwrap();
            c.validate().unwrap();
            assert_eq!(c.iface.as_deref(), iface);
        }
    }

    #[test]
    fn kubernetes_source_and_missing_pieces() {
        let c: AgentConfig = serde_json::from_str(
            r#"{"network":"10.244.0.0/16","nodeName":"n1","iface":"eth0",
                "subnetSource":{"kubernetes":{"kubeconfig":"/etc/k.conf"}}}"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.subnet_source,
            Some(SubnetSource::Kubernetes {
                kubeconfig: Some("/etc/k.conf".into())
            })
        );
        let mut c: AgentConfig =
            serde_json::from_str(r#"{"network":"10.244.0.0/16","iface":"eth0"}"#).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("nodeName is missing"), "{e}");
        c.node_name = "n1".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("subnetSource is missing"), "{e}");
    }
}
