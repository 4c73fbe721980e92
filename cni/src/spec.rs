//! CNI wire types: versions, the result of ADD, and the error object with the spec's codes.
//!
//! Errors are converted to the wire at exactly one place ([`CniError`]), which the binary prints
//! on stdout before exiting non-zero, as the CNI spec asks.

use serde::{Deserialize, Serialize};

/// The newest spec version this plugin implements.
pub const CURRENT_VERSION: &str = "1.1.0";
/// Every config version the plugin accepts. 0.3.x and 0.4.0 are kept because many runtimes and
/// conflists still send them (flannel's stock `10-flannel.conflist` says 0.3.1); their results
/// have the same shape (`ips[].version`). 0.1.0/0.2.0 (the `ip4`/`ip6` result) are not.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The oldest config version that has each verb (CHECK came with 0.4.0, STATUS and GC with 1.1.0).
pub fn min_version_of(verb: crate::env::Command) -> &'static str {
    use crate::env::Command;
    match verb {
        Command::Check => "0.4.0",
        Command::Status | Command::Gc => "1.1.0",
        Command::Add | Command::Del | Command::Version => "0.3.0",
    }
}

/// Well-known error codes (CNI spec, "Error" section).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    /// libcni's `ErrInvalidNetNS` (its skel refuses the plugin's own namespace with it).
    pub const INVALID_NETNS: u32 = 8;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// Plugin-specific code (>= 100): the node's address range has no free address left.
    pub const RANGE_EXHAUSTED: u32 = 100;
    /// Plugin-specific code: a netlink or nftables operation on the node failed.
    pub const NETWORK_SETUP: u32 = 101;
    /// Plugin-specific code: a requested static address (`ips`, `IP=`) is leased to another
    /// attachment or is a gateway.
    pub const REQUESTED_IP_UNAVAILABLE: u32 = 103;
}

/// The error object a plugin prints on failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            cni_version: CURRENT_VERSION.into(),
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }
}

/// Whether `v` is a version this plugin accepts.
pub fn is_supported(v: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&v)
}

/// Compares dotted versions numerically ("1.1.0" >= "1.0.0").
pub fn version_at_least(v: &str, min: &str) -> bool {
    let parse = |s: &str| -> Vec<u32> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(v) >= parse(min)
}

/// The VERSION verb's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionInfo {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(rename = "supportedVersions")]
    pub supported_versions: Vec<String>,
}

/// An interface in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// An IP configuration in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Only in results of spec versions before 1.0.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// DNS settings in a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The success result of ADD (and the `prevResult` of later plugins in a chain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

impl AddResult {
    /// Renders the result for the config's version (pre-1.0 results carry `ips[].version`).
    pub fn for_version(mut self, version: &str) -> Self {
        let old = !version_at_least(version, "1.0.0");
        for ip in &mut self.ips {
            ip.version = if old {
                Some(if ip.address.contains(':') { "6" } else { "4" }.into())
            } else {
                None
            };
        }
        self.cni_version = version.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("1.1.0", "1.0.0"));
        assert!(version_at_least("1.10.0", "1.9.0"));
        assert!(!version_at_least("0.4.0", "1.0.0"));
    }

    #[test]
    fn old_results_carry_ip_version() {
        let r = AddResult {
            cni_version: "1.1.0".into(),
            interfaces: vec![],
            ips: vec![IpConfig {
                version: None,
                address: "10.1.0.2/24".into(),
                gateway: None,
                interface: Some(1),
            }],
            routes: vec![],
            dns: Dns::default(),
        };
        let old = serde_json::to_value(r.clone().for_version("0.4.0")).unwrap();
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["cniVersion"], "0.4.0");
        let new = serde_json::to_value(r.for_version("1.0.0")).unwrap();
        assert!(new["ips"][0].get("version").is_none());
    }

    #[test]
    fn error_object_has_spec_fields() {
        let e = CniError::new(code::INVALID_ENV, "missing CNI_NETNS", "");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["code"], 4);
        assert_eq!(v["msg"], "missing CNI_NETNS");
        assert!(v.get("details").is_none());
    }
}
