//! The network configuration pea-cni reads on stdin, and its resolution against the node's
//! subnet file (written by `pea-flanneld`, in flannel's subnet.env format).
//!
//! Top-level unknown keys are tolerated (runtimes add `args`, `runtimeConfig`, `prevResult`, and
//! conflists carry other plugins' keys); every key pea-cni reads is type-checked and validated.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::{env::validate_ifname, flannel::subnet_env::SubnetEnv, spec};

/// Where leases live when the config does not say (host-local's default).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("network config is not valid JSON: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("cniVersion {0:?} is not supported (supported: {list})", list = spec::SUPPORTED_VERSIONS.join(", "))]
    Version(String),
    #[error("invalid network config: {0}")]
    Invalid(String),
    #[error("ipam type {0:?} is not supported: pea-cni has built-in host-local IPAM only")]
    IpamType(String),
    #[error("reading subnet file {path}: {source}")]
    SubnetFile {
        path: PathBuf,
        #[source]
        source: crate::flannel::subnet_env::SubnetEnvError,
    },
}

impl ConfigError {
    /// The CNI error code for this failure.
    pub fn code(&self) -> u32 {
        match self {
            ConfigError::Decode(_) => spec::code::DECODE_FAILURE,
            ConfigError::Version(_) => spec::code::INCOMPATIBLE_VERSION,
            ConfigError::IpamType(_) => spec::code::UNSUPPORTED_FIELD,
            ConfigError::Invalid(_) => spec::code::INVALID_CONFIG,
            ConfigError::SubnetFile { .. } => spec::code::TRY_AGAIN_LATER,
        }
    }
}

/// A host-local style range.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeConf {
    pub subnet: Option<Ipv4Net>,
    pub range_start: Option<Ipv4Addr>,
    pub range_end: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
}

/// A route handed to the pod.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RouteConf {
    pub dst: Ipv4Net,
    #[serde(default)]
    pub gw: Option<Ipv4Addr>,
}

/// The `ipam` section: host-local's keys (`subnet` or `ranges`, `routes`, `dataDir`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamConf {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(flatten)]
    pub range: RangeConf,
    #[serde(default)]
    pub ranges: Vec<Vec<RangeConf>>,
    #[serde(default)]
    pub routes: Vec<RouteConf>,
    pub data_dir: Option<PathBuf>,
}

/// A valid attachment listed in a GC request.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

fn yes() -> bool {
    true
}

/// The plugin's configuration as given.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default = "default_bridge")]
    pub bridge: String,
    pub mtu: Option<u32>,
    #[serde(default = "yes")]
    pub hairpin_mode: bool,
    #[serde(default = "yes")]
    pub is_gateway: bool,
    /// Masquerade traffic leaving the cluster CIDR. Default: subnet file's FLANNEL_IPMASQ, or true.
    pub ip_masq: Option<bool>,
    /// The whole pod network (all nodes); traffic to it is never masqueraded.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<Ipv4Net>,
    /// Flannel-style subnet.env; used when the ipam section names no subnet.
    pub subnet_file: Option<PathBuf>,
    /// Turn on bridge-nf-call-iptables in the node's namespace (needs the br_netfilter module).
    #[serde(default = "yes")]
    pub br_netfilter: bool,
    #[serde(default)]
    pub ipam: IpamConf,
    pub prev_result: Option<serde_json::Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
}

fn default_bridge() -> String {
    "cni0".into()
}

/// Everything the verbs need, after defaults, the subnet file and validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub cni_version: String,
    pub name: String,
    pub bridge: String,
    pub mtu: u32,
    pub hairpin: bool,
    pub is_gateway: bool,
    pub ip_masq: bool,
    pub br_netfilter: bool,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub range_start: Ipv4Addr,
    pub range_end: Ipv4Addr,
    pub cluster_cidr: Ipv4Net,
    pub routes: Vec<RouteConf>,
    pub data_dir: PathBuf,
}

impl NetConf {
    /// Decodes stdin bytes and checks the version.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let conf: NetConf = serde_json::from_slice(bytes).map_err(ConfigError::Decode)?;
        if !spec::is_supported(&conf.cni_version) {
            return Err(ConfigError::Version(conf.cni_version));
        }
        Ok(conf)
    }

    /// Applies defaults and the subnet file, and validates the result.
    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        validate_network_name(&self.name).map_err(invalid)?;
        validate_ifname(&self.bridge).map_err(|e| invalid(format!("bridge: {e}")))?;
        if let Some(kind) = &self.ipam.kind {
            if !kind.is_empty() && kind != "host-local" && kind != "pea-host-local" {
                return Err(ConfigError::IpamType(kind.clone()));
            }
        }
        let mut range = self.ipam.range.clone();
        match self.ipam.ranges.as_slice() {
            [] => {}
            [set] if set.len() == 1 && range.subnet.is_none() => range = set[0].clone(),
            _ => {
                return Err(invalid(
                    "ipam: only one range is implemented (one \"subnet\" or ranges: [[{...}]])"
                        .into(),
                ))
            }
        }
        let senv = match &self.subnet_file {
            Some(path) if range.subnet.is_none() => Some(read_subnet_file(path)?),
            _ => None,
        };
        let subnet = match (range.subnet, &senv) {
            (Some(s), _) => s.trunc(),
            (None, Some(e)) => e.subnet.trunc(),
            (None, None) => {
                return Err(invalid(
                    "no subnet: set ipam.subnet (or ipam.ranges) or subnetFile".into(),
                ))
            }
        };
        if subnet.prefix_len() > 30 {
            return Err(invalid(format!(
                "ipam subnet {subnet} is too small (need /30 or larger)"
            )));
        }
        let first = u32::from(subnet.network()) + 1;
        let last = u32::from(subnet.broadcast()) - 1;
        let in_hosts = |ip: Ipv4Addr| (first..=last).contains(&u32::from(ip));
        let gateway = match (range.gateway, &senv) {
            (Some(g), _) => g,
            (None, Some(e)) => e.subnet.addr(),
            (None, None) => Ipv4Addr::from(first),
        };
        if !in_hosts(gateway) {
            return Err(invalid(format!(
                "gateway {gateway} is not a host address of {subnet}"
            )));
        }
        let range_start = range.range_start.unwrap_or(Ipv4Addr::from(first));
        let range_end = range.range_end.unwrap_or(Ipv4Addr::from(last));
        if !in_hosts(range_start) || !in_hosts(range_end) || range_start > range_end {
            return Err(invalid(format!(
                "range {range_start}-{range_end} is not an ordered host range inside {subnet}"
            )));
        }
        let mtu = match (self.mtu, &senv) {
            (Some(m), _) => m,
            (None, Some(e)) => e.mtu,
            (None, None) => 1500,
        };
        if !(576..=65535).contains(&mtu) {
            return Err(invalid(format!("mtu {mtu} is out of range 576..=65535")));
        }
        let cluster_cidr = match (self.cluster_cidr, &senv) {
            (Some(c), _) => c.trunc(),
            (None, Some(e)) => e.network.trunc(),
            (None, None) => subnet,
        };
        if !cluster_cidr.contains(&subnet) {
            return Err(invalid(format!(
                "clusterCIDR {cluster_cidr} does not contain the node subnet {subnet}"
            )));
        }
        let ip_masq = self
            .ip_masq
            .unwrap_or_else(|| senv.as_ref().map(|e| e.ipmasq).unwrap_or(true));
        let routes = if self.ipam.routes.is_empty() {
            vec![RouteConf {
                dst: "0.0.0.0/0".parse().expect("literal"),
                gw: None,
            }]
        } else {
            self.ipam.routes.clone()
        };
        Ok(Resolved {
            cni_version: self.cni_version.clone(),
            name: self.name.clone(),
            bridge: self.bridge.clone(),
            mtu,
            hairpin: self.hairpin_mode,
            is_gateway: self.is_gateway,
            ip_masq,
            br_netfilter: self.br_netfilter,
            subnet,
            gateway,
            range_start,
            range_end,
            cluster_cidr,
            routes,
            data_dir: self
                .ipam
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        })
    }
}

fn read_subnet_file(path: &Path) -> Result<SubnetEnv, ConfigError> {
    SubnetEnv::read(path).map_err(|source| ConfigError::SubnetFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Network names become directory names: the spec's charset, no path tricks.
pub fn validate_network_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "network name {name:?} must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 128 bytes)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(json: &str) -> NetConf {
        NetConf::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn defaults_fill_in() {
        let r = conf(
            r#"{"cniVersion":"1.1.0","name":"n","type":"pea-cni","ipam":{"subnet":"10.9.1.0/24"}}"#,
        )
        .resolve()
        .unwrap();
        assert_eq!(r.gateway, Ipv4Addr::new(10, 9, 1, 1));
        assert_eq!(r.range_start, Ipv4Addr::new(10, 9, 1, 1));
        assert_eq!(r.range_end, Ipv4Addr::new(10, 9, 1, 254));
        assert_eq!(r.bridge, "cni0");
        assert_eq!(r.mtu, 1500);
        assert!(r.hairpin && r.is_gateway && r.ip_masq);
        assert_eq!(r.routes.len(), 1);
    }

    #[test]
    fn host_local_ranges_form_accepted() {
        let r = conf(r#"{"cniVersion":"1.0.0","name":"n","type":"pea-cni","ipam":{"type":"host-local","ranges":[[{"subnet":"10.9.2.0/24","rangeStart":"10.9.2.10","rangeEnd":"10.9.2.20"}]]}}"#)
            .resolve()
            .unwrap();
        assert_eq!(r.range_start, Ipv4Addr::new(10, 9, 2, 10));
    }

    #[test]
    fn bad_inputs_named() {
        let e = NetConf::parse(br#"{"cniVersion":"0.2.0","name":"n"}"#).unwrap_err();
        assert_eq!(e.code(), spec::code::INCOMPATIBLE_VERSION);
        let e = conf(r#"{"cniVersion":"1.0.0","name":"../x","ipam":{"subnet":"10.0.0.0/24"}}"#)
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("network name"), "{e}");
        let e = conf(r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"dhcp"}}"#)
            .resolve()
            .unwrap_err();
        assert_eq!(e.code(), spec::code::UNSUPPORTED_FIELD);
        let e = conf(r#"{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"10.0.0.0/24","gateway":"10.0.1.1"}}"#)
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("gateway 10.0.1.1"), "{e}");
        let e = conf(r#"{"cniVersion":"1.0.0","name":"n","clusterCIDR":"10.1.0.0/16","ipam":{"subnet":"10.0.0.0/24"}}"#)
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("clusterCIDR"), "{e}");
        let e = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","mtu":"x"}"#).unwrap_err();
        assert_eq!(e.code(), spec::code::DECODE_FAILURE);
    }

    #[test]
    fn subnet_file_supplies_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("subnet.env");
        std::fs::write(
            &p,
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
        )
        .unwrap();
        let json = format!(
            r#"{{"cniVersion":"1.1.0","name":"n","subnetFile":"{}"}}"#,
            p.display()
        );
        let r = conf(&json).resolve().unwrap();
        assert_eq!(r.subnet.to_string(), "10.244.3.0/24");
        assert_eq!(r.gateway, Ipv4Addr::new(10, 244, 3, 1));
        assert_eq!(r.mtu, 1450);
        assert_eq!(r.cluster_cidr.to_string(), "10.244.0.0/16");
        assert!(!r.ip_masq);
        let missing = r#"{"cniVersion":"1.1.0","name":"n","subnetFile":"/nonexistent/subnet.env"}"#;
        assert_eq!(
            conf(missing).resolve().unwrap_err().code(),
            spec::code::TRY_AGAIN_LATER
        );
    }
}
