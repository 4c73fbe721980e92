//! The network configuration pea-cni reads on stdin, and its resolution against the node's
//! subnet file (written by `pea-flanneld`, in flannel's subnet.env format).
//!
//! Top-level unknown keys are tolerated (runtimes add `args`, `runtimeConfig`, `prevResult`, and
//! conflists carry other plugins' keys); every key pea-cni reads is type-checked and validated.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
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
    #[error("{0:?} (a bridge plugin key) is not supported by pea-cni")]
    Unsupported(&'static str),
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
            ConfigError::IpamType(_) | ConfigError::Unsupported(_) => spec::code::UNSUPPORTED_FIELD,
            ConfigError::Invalid(_) => spec::code::INVALID_CONFIG,
            ConfigError::SubnetFile { .. } => spec::code::TRY_AGAIN_LATER,
        }
    }
}

/// A host-local style range (IPv4 or IPv6).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeConf {
    pub subnet: Option<IpNet>,
    pub range_start: Option<IpAddr>,
    pub range_end: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
}

/// A route handed to the pod.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RouteConf {
    pub dst: IpNet,
    #[serde(default)]
    pub gw: Option<IpAddr>,
}

/// The `ipam` section: host-local's keys (`subnet` or `ranges`, `routes`, `dataDir`).
/// `ranges` is a list of range sets: the pod gets one address from each set (a set's ranges are
/// tried in order and share one family), so `[[v4 range], [v6 range]]` makes it dual-stack.
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
    /// host-local's `resolvConf`: a resolv.conf whose nameservers, domain, search and options
    /// become the result's DNS (unless the top-level `dns` says otherwise).
    pub resolv_conf: Option<PathBuf>,
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
    /// Give the bridge each range's gateway address. It also decides the pod's routes when IPAM
    /// lists none: a default route per family via the gateway with it, no route at all without
    /// it (as the reference bridge plugin).
    #[serde(default = "yes")]
    pub is_gateway: bool,
    /// The reference bridge plugin's key (flannel's stock delegate sets it): implies `isGateway`
    /// and adds a default route per family via the gateway even when `ipam.routes` lists others.
    #[serde(default)]
    pub is_default_gateway: bool,
    /// Masquerade traffic leaving the cluster CIDR. Default as flannel's CNI plugin delegates it:
    /// the opposite of the subnet file's FLANNEL_IPMASQ (true there means the node agent
    /// masquerades already), or true without a subnet file.
    pub ip_masq: Option<bool>,
    /// The whole pod network (all nodes); traffic to it is never masqueraded.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<Ipv4Net>,
    /// The whole IPv6 pod network (flannel's IPv6Network); default: the node's IPv6 subnets.
    #[serde(rename = "ipv6ClusterCIDR")]
    pub ipv6_cluster_cidr: Option<Ipv6Net>,
    /// Flannel-style subnet.env; used when the ipam section names no subnet.
    pub subnet_file: Option<PathBuf>,
    /// Turn on bridge-nf-call-iptables in the node's namespace (needs the br_netfilter module).
    #[serde(default = "yes")]
    pub br_netfilter: bool,
    #[serde(default)]
    pub ipam: IpamConf,
    /// The spec's `dns` key: copied into the ADD result, as the bridge plugin does.
    #[serde(default)]
    pub dns: spec::Dns,
    pub prev_result: Option<serde_json::Value>,
    /// Bridge plugin features pea-cni does not implement: refused (code 2) when set to anything
    /// but their defaults, so a conflist written for the bridge plugin never silently loses them.
    #[serde(default)]
    pub vlan: u32,
    #[serde(default)]
    pub vlan_trunk: Vec<serde_json::Value>,
    #[serde(default)]
    pub promisc_mode: bool,
    #[serde(default)]
    pub macspoofchk: bool,
    #[serde(default)]
    pub disable_container_interface: bool,
    #[serde(default)]
    pub port_isolation: bool,
    /// Capability arguments from the runtime (`ips`, `mac`; others such as `portMappings` are
    /// for other plugins and ignored).
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    /// The conventions' `args.cni` (`ips`, `mac`).
    #[serde(default)]
    pub args: ConfArgs,
    /// GC's list (spec 1.1). Outer `None`: the key is absent; inner `None`: `null`, which is what
    /// a Go runtime sends for an empty (nil) list.
    #[serde(
        rename = "cni.dev/valid-attachments",
        default,
        deserialize_with = "present"
    )]
    pub valid_attachments: Option<Option<Vec<Attachment>>>,
    /// The same list under the name a draft of spec 1.1 used; libcni injects both keys.
    #[serde(rename = "cni.dev/attachments", default, deserialize_with = "present")]
    pub attachments: Option<Option<Vec<Attachment>>>,
}

/// `runtimeConfig` keys pea-cni honours (capabilities `ips` and `mac`, as host-local and bridge).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

/// The config's `args` object; pea-cni reads `args.cni`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfArgs {
    #[serde(default)]
    pub cni: RuntimeConfig,
}

/// Marks a key as present even when its value is `null` (serde's `default` covers absence).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
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
    /// One address per set; every range of a set has the set's family.
    pub range_sets: Vec<Vec<Range>>,
    /// Present when some range set is IPv4 (resp. IPv6).
    pub cluster_cidr: Option<Ipv4Net>,
    pub cluster_cidr6: Option<Ipv6Net>,
    pub routes: Vec<RouteConf>,
    pub data_dir: PathBuf,
    /// The result's DNS: the config's `dns`, else what `ipam.resolvConf` says.
    pub dns: spec::Dns,
}

/// One resolved range: the subnet, its gateway and the leasable span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    pub gateway: IpAddr,
    pub start: IpAddr,
    pub end: IpAddr,
}

impl Resolved {
    /// Every range, set after set.
    pub fn ranges(&self) -> impl Iterator<Item = &Range> {
        self.range_sets.iter().flatten()
    }

    /// The subnets of one family.
    pub fn subnets_v4(&self) -> Vec<Ipv4Net> {
        self.ranges()
            .filter_map(|r| match r.subnet {
                IpNet::V4(n) => Some(n),
                IpNet::V6(_) => None,
            })
            .collect()
    }

    pub fn subnets_v6(&self) -> Vec<Ipv6Net> {
        self.ranges()
            .filter_map(|r| match r.subnet {
                IpNet::V6(n) => Some(n),
                IpNet::V4(_) => None,
            })
            .collect()
    }

    /// The gateway pod routes of `family_v6` use: the first range's of that family.
    pub fn gateway_of(&self, v6: bool) -> Option<IpAddr> {
        self.ranges()
            .find(|r| r.subnet.addr().is_ipv6() == v6)
            .map(|r| r.gateway)
    }
}

/// Resolves one range: defaults (first host as gateway, all hosts leasable) and checks.
fn resolve_range(
    range: &RangeConf,
    subnet: IpNet,
    default_gw: Option<IpAddr>,
) -> Result<Range, ConfigError> {
    let invalid = |m: String| ConfigError::Invalid(m);
    let subnet = subnet.trunc();
    let (first, last): (IpAddr, IpAddr) = match subnet {
        IpNet::V4(n) => {
            if n.prefix_len() > 30 {
                return Err(invalid(format!(
                    "ipam subnet {subnet} is too small (need /30 or larger)"
                )));
            }
            (
                Ipv4Addr::from(u32::from(n.network()) + 1).into(),
                Ipv4Addr::from(u32::from(n.broadcast()) - 1).into(),
            )
        }
        IpNet::V6(n) => {
            if n.prefix_len() > 126 || n.prefix_len() < 8 {
                return Err(invalid(format!(
                    "ipam subnet {subnet}: an IPv6 subnet must be /8 to /126"
                )));
            }
            // The subnet-router anycast (network) address and the all-ones address stay free.
            (
                Ipv6Addr::from(u128::from(n.network()) + 1).into(),
                Ipv6Addr::from(u128::from(n.broadcast()) - 1).into(),
            )
        }
    };
    let in_hosts = |ip: IpAddr| crate::ipam::in_range(ip, first, last);
    let gateway = range.gateway.or(default_gw).unwrap_or(first);
    if !in_hosts(gateway) {
        return Err(invalid(format!(
            "gateway {gateway} is not a host address of {subnet}"
        )));
    }
    let start = range.range_start.unwrap_or(first);
    let end = range.range_end.unwrap_or(last);
    if !in_hosts(start) || !in_hosts(end) || !crate::ipam::in_range(end, start, last) {
        return Err(invalid(format!(
            "range {start}-{end} is not an ordered host range inside {subnet}"
        )));
    }
    Ok(Range {
        subnet,
        gateway,
        start,
        end,
    })
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

    /// GC's still-valid attachments: `cni.dev/valid-attachments`, else the draft name
    /// `cni.dev/attachments`; `null` is an empty list. `None` when neither key is there.
    pub fn gc_valid_attachments(&self) -> Option<Vec<Attachment>> {
        self.valid_attachments
            .clone()
            .or_else(|| self.attachments.clone())
            .map(Option::unwrap_or_default)
    }

    /// Static addresses asked for, as host-local gathers them: `CNI_ARGS` `IP=` (comma
    /// separated), `args.cni.ips` and `runtimeConfig.ips` (each "a.b.c.d" or "a.b.c.d/len").
    pub fn requested_ips(&self, cni_args_ip: Option<&str>) -> Result<Vec<IpAddr>, ConfigError> {
        let mut out: Vec<IpAddr> = Vec::new();
        let from_env = cni_args_ip.into_iter().flat_map(|v| v.split(','));
        let all = from_env.chain(
            self.args
                .cni
                .ips
                .iter()
                .chain(&self.runtime_config.ips)
                .map(String::as_str),
        );
        for raw in all.map(str::trim).filter(|s| !s.is_empty()) {
            let ip = raw
                .split_once('/')
                .map_or(raw, |(a, _)| a)
                .parse::<IpAddr>()
                .map_err(|_| {
                    ConfigError::Invalid(format!("requested IP {raw:?} is not an IP address"))
                })?;
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
        Ok(out)
    }

    /// The pod interface's MAC address asked for (bridge's precedence: `runtimeConfig.mac`,
    /// then `args.cni.mac`, then `CNI_ARGS` `MAC=`); must be a unicast, non-zero address.
    pub fn requested_mac(
        &self,
        cni_args_mac: Option<&str>,
    ) -> Result<Option<Vec<u8>>, ConfigError> {
        let Some(raw) = self
            .runtime_config
            .mac
            .as_deref()
            .or(self.args.cni.mac.as_deref())
            .or(cni_args_mac)
            .filter(|m| !m.is_empty())
        else {
            return Ok(None);
        };
        match crate::link::parse_mac(raw) {
            Some(m) if m.len() == 6 && m[0] & 1 == 0 && m.iter().any(|b| *b != 0) => Ok(Some(m)),
            _ => Err(ConfigError::Invalid(format!(
                "requested MAC {raw:?} is not a unicast Ethernet address"
            ))),
        }
    }

    /// The lease directory root: `ipam.dataDir` (absolute, no `..`), or host-local's default.
    pub fn data_dir(&self) -> Result<PathBuf, ConfigError> {
        match &self.ipam.data_dir {
            None => Ok(PathBuf::from(DEFAULT_DATA_DIR)),
            Some(d)
                if d.is_absolute()
                    && !d
                        .components()
                        .any(|c| matches!(c, std::path::Component::ParentDir)) =>
            {
                Ok(d.clone())
            }
            Some(d) => Err(ConfigError::Invalid(format!(
                "ipam.dataDir {d:?} must be an absolute path without \"..\""
            ))),
        }
    }

    /// Applies defaults and the subnet file, and validates the result.
    pub fn resolve(&self) -> Result<Resolved, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        validate_network_name(&self.name).map_err(invalid)?;
        validate_ifname(&self.bridge).map_err(|e| invalid(format!("bridge: {e}")))?;
        let unsupported = [
            ("vlan", self.vlan != 0),
            ("vlanTrunk", !self.vlan_trunk.is_empty()),
            ("promiscMode", self.promisc_mode),
            ("macspoofchk", self.macspoofchk),
            (
                "disableContainerInterface",
                self.disable_container_interface,
            ),
            ("portIsolation", self.port_isolation),
        ];
        if let Some((key, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(ConfigError::Unsupported(key));
        }
        if let Some(kind) = &self.ipam.kind {
            if !kind.is_empty() && kind != "host-local" && kind != "pea-host-local" {
                return Err(ConfigError::IpamType(kind.clone()));
            }
        }
        let mut sets: Vec<Vec<RangeConf>> = self.ipam.ranges.clone();
        if self.ipam.range.subnet.is_some() {
            if !sets.is_empty() {
                return Err(invalid(
                    "ipam: set either \"subnet\" or \"ranges\", not both".into(),
                ));
            }
            sets.push(vec![self.ipam.range.clone()]);
        }
        if sets.iter().any(Vec::is_empty) {
            return Err(invalid("ipam: a range set is empty".into()));
        }
        let senv = match &self.subnet_file {
            Some(path) if sets.is_empty() => Some(read_subnet_file(path)?),
            _ => None,
        };
        let mut range_sets = Vec::new();
        match &senv {
            Some(e) => range_sets.push(vec![resolve_range(
                &self.ipam.range,
                IpNet::V4(e.subnet.trunc()),
                Some(e.subnet.addr().into()),
            )?]),
            None if sets.is_empty() => {
                return Err(invalid(
                    "no subnet: set ipam.subnet (or ipam.ranges) or subnetFile".into(),
                ))
            }
            None => {
                for (i, set) in sets.iter().enumerate() {
                    let mut out = Vec::new();
                    for rc in set {
                        let subnet = rc.subnet.ok_or_else(|| {
                            invalid(format!("ipam: a range in set {i} has no subnet"))
                        })?;
                        out.push(resolve_range(rc, subnet, None)?);
                    }
                    let v6 = out[0].subnet.addr().is_ipv6();
                    if out.iter().any(|r| r.subnet.addr().is_ipv6() != v6) {
                        return Err(invalid(format!(
                            "ipam: range set {i} mixes IPv4 and IPv6 (one family per set)"
                        )));
                    }
                    range_sets.push(out);
                }
            }
        }
        let all: Vec<&Range> = range_sets.iter().flatten().collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                if crate::ipam::in_range(b.start, a.start, a.end)
                    || crate::ipam::in_range(a.start, b.start, b.end)
                {
                    return Err(invalid(format!(
                        "ipam: ranges {}-{} and {}-{} overlap",
                        a.start, a.end, b.start, b.end
                    )));
                }
            }
        }
        let mtu = match (self.mtu, &senv) {
            (Some(m), _) => m,
            (None, Some(e)) => e.mtu,
            (None, None) => 1500,
        };
        if !(576..=65535).contains(&mtu) {
            return Err(invalid(format!("mtu {mtu} is out of range 576..=65535")));
        }
        let subnets4: Vec<Ipv4Net> = all
            .iter()
            .filter_map(|r| match r.subnet {
                IpNet::V4(n) => Some(n),
                IpNet::V6(_) => None,
            })
            .collect();
        let subnets6: Vec<Ipv6Net> = all
            .iter()
            .filter_map(|r| match r.subnet {
                IpNet::V6(n) => Some(n),
                IpNet::V4(_) => None,
            })
            .collect();
        let cluster_cidr = match (self.cluster_cidr, &senv, subnets4.first()) {
            (_, _, None) => None,
            (Some(c), _, _) => Some(c.trunc()),
            (None, Some(e), _) => Some(e.network.trunc()),
            (None, None, Some(s)) if subnets4.len() == 1 => Some(*s),
            (None, None, Some(_)) => {
                return Err(invalid(
                    "clusterCIDR is required with more than one IPv4 range".into(),
                ))
            }
        };
        let cluster_cidr6 = match (self.ipv6_cluster_cidr, subnets6.first()) {
            (_, None) => None,
            (Some(c), _) => Some(c.trunc()),
            (None, Some(s)) if subnets6.len() == 1 => Some(*s),
            (None, Some(_)) => {
                return Err(invalid(
                    "ipv6ClusterCIDR is required with more than one IPv6 range".into(),
                ))
            }
        };
        if let Some(c) = cluster_cidr {
            if let Some(s) = subnets4.iter().find(|s| !c.contains(*s)) {
                return Err(invalid(format!(
                    "clusterCIDR {c} does not contain the node subnet {s}"
                )));
            }
        }
        if let Some(c) = cluster_cidr6 {
            if let Some(s) = subnets6.iter().find(|s| !c.contains(*s)) {
                return Err(invalid(format!(
                    "ipv6ClusterCIDR {c} does not contain the node subnet {s}"
                )));
            }
        }
        let ip_masq = self
            .ip_masq
            .unwrap_or_else(|| senv.as_ref().map(|e| !e.ipmasq).unwrap_or(true));
        for rt in &self.ipam.routes {
            if let Some(gw) = rt.gw {
                if gw.is_ipv6() != rt.dst.addr().is_ipv6() {
                    return Err(invalid(format!(
                        "route to {} via {gw}: the address families differ",
                        rt.dst
                    )));
                }
            }
        }
        // Default: a default route per family the pod has an address of. With isDefaultGateway
        // (as the bridge plugin) the default routes come on top of the configured ones.
        let mut defaults = Vec::new();
        if !subnets4.is_empty() {
            defaults.push(RouteConf {
                dst: "0.0.0.0/0".parse().expect("literal"),
                gw: None,
            });
        }
        if !subnets6.is_empty() {
            defaults.push(RouteConf {
                dst: "::/0".parse().expect("literal"),
                gw: None,
            });
        }
        // Without isGateway the bridge has no address to route through: like the reference
        // bridge plugin, the pod then gets only the routes IPAM lists.
        let is_gateway = self.is_gateway || self.is_default_gateway;
        let routes = if self.ipam.routes.is_empty() {
            if is_gateway {
                defaults
            } else {
                Vec::new()
            }
        } else if self.is_default_gateway {
            let mut v = self.ipam.routes.clone();
            for d in defaults {
                match self.ipam.routes.iter().find(|r| r.dst == d.dst) {
                    Some(RouteConf { gw: Some(gw), .. }) => {
                        return Err(invalid(format!(
                            "isDefaultGateway conflicts with ipam route {} via {gw}",
                            d.dst
                        )))
                    }
                    Some(_) => {}
                    None => v.push(d),
                }
            }
            v
        } else {
            self.ipam.routes.clone()
        };
        Ok(Resolved {
            cni_version: self.cni_version.clone(),
            name: self.name.clone(),
            bridge: self.bridge.clone(),
            mtu,
            hairpin: self.hairpin_mode,
            is_gateway,
            ip_masq,
            br_netfilter: self.br_netfilter,
            range_sets,
            cluster_cidr,
            cluster_cidr6,
            routes,
            data_dir: self.data_dir()?,
            dns: self.result_dns()?,
        })
    }

    /// The DNS of the result: the config's `dns` when it says anything (the bridge plugin's
    /// precedence), else `ipam.resolvConf` parsed as host-local does.
    fn result_dns(&self) -> Result<spec::Dns, ConfigError> {
        if self.dns != spec::Dns::default() {
            return Ok(self.dns.clone());
        }
        match &self.ipam.resolv_conf {
            None => Ok(spec::Dns::default()),
            Some(path) => std::fs::read_to_string(path)
                .map(|text| parse_resolv_conf(&text))
                .map_err(|e| {
                    ConfigError::Invalid(format!("ipam.resolvConf {}: {e}", path.display()))
                }),
        }
    }
}

/// The parts of a resolv.conf a CNI result carries: `nameserver`, `domain`, `search`, `options`.
fn parse_resolv_conf(text: &str) -> spec::Dns {
    let mut dns = spec::Dns::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.nameservers.extend(words.next().map(String::from)),
            Some("domain") => dns.domain = words.next().map(String::from),
            Some("search") => dns.search = words.map(String::from).collect(),
            Some("options") => dns.options.extend(words.map(String::from)),
            _ => {}
        }
    }
    dns
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
        let range = &r.range_sets[0][0];
        assert_eq!(range.gateway, Ipv4Addr::new(10, 9, 1, 1));
        assert_eq!(range.start, Ipv4Addr::new(10, 9, 1, 1));
        assert_eq!(range.end, Ipv4Addr::new(10, 9, 1, 254));
        assert_eq!(r.bridge, "cni0");
        assert_eq!(r.mtu, 1500);
        assert!(r.hairpin && r.is_gateway && r.ip_masq);
        assert_eq!(r.routes.len(), 1);
    }

    #[test]
    fn without_is_gateway_the_pod_gets_only_ipam_routes() {
        let r = conf(
            r#"{"cniVersion":"1.1.0","name":"n","isGateway":false,"ipam":{"subnet":"10.9.1.0/24"}}"#,
        )
        .resolve()
        .unwrap();
        assert!(!r.is_gateway);
        assert!(r.routes.is_empty(), "{:?}", r.routes);
        let r = conf(
            r#"{"cniVersion":"1.1.0","name":"n","isGateway":false,
            "ipam":{"subnet":"10.9.1.0/24","routes":[{"dst":"0.0.0.0/0","gw":"10.9.1.254"}]}}"#,
        )
        .resolve()
        .unwrap();
        assert_eq!(r.routes.len(), 1);
    }

    #[test]
    fn dns_comes_from_the_config_else_from_resolv_conf() {
        let r = conf(
            r#"{"cniVersion":"1.1.0","name":"n","ipam":{"subnet":"10.9.1.0/24"},
            "dns":{"nameservers":["10.96.0.10"],"search":["svc.cluster.local"],"options":["ndots:5"]}}"#,
        )
        .resolve()
        .unwrap();
        assert_eq!(r.dns.nameservers, ["10.96.0.10"]);
        assert_eq!(r.dns.search, ["svc.cluster.local"]);
        assert_eq!(r.dns.options, ["ndots:5"]);
        let dir = tempfile::tempdir().unwrap();
        let rc = dir.path().join("resolv.conf");
        std::fs::write(
            &rc,
            "# comment\nnameserver 10.0.0.53\nnameserver 10.0.0.54 ; x\ndomain example.org\nsearch a.example b.example\noptions ndots:2 edns0\n",
        )
        .unwrap();
        let json = format!(
            r#"{{"cniVersion":"1.1.0","name":"n","ipam":{{"subnet":"10.9.1.0/24","resolvConf":"{}"}}}}"#,
            rc.display()
        );
        let r = conf(&json).resolve().unwrap();
        assert_eq!(r.dns.nameservers, ["10.0.0.53", "10.0.0.54"]);
        assert_eq!(r.dns.domain.as_deref(), Some("example.org"));
        assert_eq!(r.dns.search, ["a.example", "b.example"]);
        assert_eq!(r.dns.options, ["ndots:2", "edns0"]);
        let missing = r#"{"cniVersion":"1.1.0","name":"n","ipam":{"subnet":"10.9.1.0/24","resolvConf":"/nonexistent/resolv.conf"}}"#;
        let e = conf(missing).resolve().unwrap_err();
        assert!(e.to_string().contains("resolvConf"), "{e}");
        // Nothing configured: an empty DNS section.
        let r = conf(r#"{"cniVersion":"1.1.0","name":"n","ipam":{"subnet":"10.9.1.0/24"}}"#)
            .resolve()
            .unwrap();
        assert_eq!(r.dns, spec::Dns::default());
    }

    #[test]
    fn host_local_ranges_form_accepted() {
        let r = conf(r#"{"cniVersion":"1.0.0","name":"n","type":"pea-cni","ipam":{"type":"host-local","ranges":[[{"subnet":"10.9.2.0/24","rangeStart":"10.9.2.10","rangeEnd":"10.9.2.20"}]]}}"#)
            .resolve()
            .unwrap();
        assert_eq!(r.range_sets[0][0].start, Ipv4Addr::new(10, 9, 2, 10));
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
        assert_eq!(r.range_sets[0][0].subnet.to_string(), "10.244.3.0/24");
        assert_eq!(r.range_sets[0][0].gateway, Ipv4Addr::new(10, 244, 3, 1));
        assert_eq!(r.mtu, 1450);
        assert_eq!(r.cluster_cidr.unwrap().to_string(), "10.244.0.0/16");
        // FLANNEL_IPMASQ=false: the agent does not masquerade, so the plugin does (flannel's
        // delegation); =true: the agent does, so the plugin must not.
        assert!(r.ip_masq);
        std::fs::write(
            &p,
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
        )
        .unwrap();
        assert!(!conf(&json).resolve().unwrap().ip_masq);
        let missing = r#"{"cniVersion":"1.1.0","name":"n","subnetFile":"/nonexistent/subnet.env"}"#;
        assert_eq!(
            conf(missing).resolve().unwrap_err().code(),
            spec::code::TRY_AGAIN_LATER
        );
    }

    #[test]
    fn dual_stack_range_sets_resolve() {
        let r = conf(r#"{"cniVersion":"1.1.0","name":"n","clusterCIDR":"10.9.0.0/16","ipv6ClusterCIDR":"fd00:9::/32","ipam":{"ranges":[
            [{"subnet":"10.9.3.0/24"}],
            [{"subnet":"fd00:9:3::/64","gateway":"fd00:9:3::1"}]]}}"#)
        .resolve()
        .unwrap();
        assert_eq!(r.range_sets.len(), 2);
        let v6 = &r.range_sets[1][0];
        assert_eq!(v6.start.to_string(), "fd00:9:3::1");
        assert_eq!(v6.end.to_string(), "fd00:9:3:0:ffff:ffff:ffff:fffe");
        assert_eq!(r.gateway_of(true).unwrap().to_string(), "fd00:9:3::1");
        assert_eq!(r.cluster_cidr6.unwrap().to_string(), "fd00:9::/32");
        let dsts: Vec<String> = r.routes.iter().map(|x| x.dst.to_string()).collect();
        assert_eq!(dsts, ["0.0.0.0/0", "::/0"]);
        // IPv6 only: no IPv4 cluster CIDR, only a v6 default route.
        let r = conf(
            r#"{"cniVersion":"1.1.0","name":"n","ipam":{"ranges":[[{"subnet":"fd00:9:4::/64"}]]}}"#,
        )
        .resolve()
        .unwrap();
        assert!(r.cluster_cidr.is_none());
        assert_eq!(r.routes.len(), 1);
    }

    #[test]
    fn flannel_bridge_delegate_keys_work() {
        // What flannel's CNI plugin hands the bridge plugin (stock delegate: hairpinMode,
        // isDefaultGateway; routes to the cluster network from host-local).
        let r = conf(
            r#"{"cniVersion":"0.3.1","name":"cbr0","type":"pea-cni","mtu":1450,
            "hairpinMode":true,"ipMasq":false,"isGateway":false,"isDefaultGateway":true,
            "ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.3.0/24"}]],
                    "routes":[{"dst":"10.244.0.0/16"}]}}"#,
        )
        .resolve()
        .unwrap();
        assert!(r.is_gateway && r.hairpin && !r.ip_masq);
        assert_eq!(r.mtu, 1450);
        let dsts: Vec<String> = r.routes.iter().map(|x| x.dst.to_string()).collect();
        assert_eq!(dsts, ["10.244.0.0/16", "0.0.0.0/0"]);
        // Without isDefaultGateway the configured routes are all the pod gets (host-local).
        let r = conf(
            r#"{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"10.244.3.0/24",
            "routes":[{"dst":"10.244.0.0/16"}]}}"#,
        )
        .resolve()
        .unwrap();
        assert_eq!(r.routes.len(), 1);
        // A default route via another gateway contradicts isDefaultGateway.
        let e = conf(
            r#"{"cniVersion":"1.0.0","name":"n","isDefaultGateway":true,
            "ipam":{"subnet":"10.244.3.0/24","routes":[{"dst":"0.0.0.0/0","gw":"10.244.3.9"}]}}"#,
        )
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("isDefaultGateway"), "{e}");
    }

    #[test]
    fn static_ip_and_mac_requests_parse_and_bad_ones_are_named() {
        let c = conf(
            r#"{"cniVersion":"1.1.0","name":"n",
            "runtimeConfig":{"ips":["10.9.1.7/24","fd00::7"],"mac":"0a:58:0a:09:01:07",
                             "portMappings":[{"hostPort":80,"containerPort":80}]},
            "args":{"cni":{"ips":["10.9.1.7"],"mac":"0a:58:00:00:00:01"}}}"#,
        );
        let ips = c.requested_ips(Some("10.9.1.8,10.9.1.7")).unwrap();
        let want: Vec<IpAddr> = ["10.9.1.8", "10.9.1.7", "fd00::7"]
            .iter()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(ips, want);
        // runtimeConfig wins over args.cni and CNI_ARGS, as in the bridge plugin.
        assert_eq!(
            c.requested_mac(Some("0a:58:00:00:00:02")).unwrap().unwrap(),
            vec![0x0a, 0x58, 0x0a, 0x09, 0x01, 0x07]
        );
        let none = conf(r#"{"cniVersion":"1.1.0","name":"n"}"#);
        assert!(none.requested_ips(None).unwrap().is_empty());
        assert!(none.requested_mac(None).unwrap().is_none());
        let e = none.requested_ips(Some("10.9.1.x")).unwrap_err();
        assert_eq!(e.code(), spec::code::INVALID_CONFIG);
        for bad in [
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "zz",
            "0a:58:0a:09:01",
        ] {
            let e = none.requested_mac(Some(bad)).unwrap_err();
            assert!(e.to_string().contains("MAC"), "{bad}: {e}");
        }
    }

    #[test]
    fn bridge_features_pea_lacks_are_refused_not_dropped() {
        for extra in [
            r#""vlan":100"#,
            r#""vlanTrunk":[{"id":101}]"#,
            r#""promiscMode":true"#,
            r#""macspoofchk":true"#,
            r#""disableContainerInterface":true"#,
            r#""portIsolation":true"#,
        ] {
            let e = conf(&format!(
                r#"{{"cniVersion":"1.0.0","name":"n",{extra},"ipam":{{"subnet":"10.9.1.0/24"}}}}"#
            ))
            .resolve()
            .unwrap_err();
            assert_eq!(e.code(), spec::code::UNSUPPORTED_FIELD, "{extra}: {e}");
        }
        // Their defaults, and keys with no effect here (forceAddress), are fine.
        conf(
            r#"{"cniVersion":"1.0.0","name":"n","vlan":0,"promiscMode":false,
            "forceAddress":true,"ipam":{"subnet":"10.9.1.0/24"}}"#,
        )
        .resolve()
        .unwrap();
    }

    #[test]
    fn gc_lists_under_both_names_and_null_is_empty() {
        let att = |json: &str| conf(json).gc_valid_attachments();
        let one = att(r#"{"cniVersion":"1.1.0","name":"n",
            "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#)
        .unwrap();
        assert_eq!(one[0].container_id, "c1");
        let draft = att(r#"{"cniVersion":"1.1.0","name":"n",
            "cni.dev/attachments":[{"containerID":"c2","ifname":"eth0"}]}"#)
        .unwrap();
        assert_eq!(draft[0].container_id, "c2");
        let null = att(r#"{"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":null}"#);
        assert_eq!(null, Some(vec![]));
        assert_eq!(att(r#"{"cniVersion":"1.1.0","name":"n"}"#), None);
    }

    #[test]
    fn data_dir_must_be_absolute_without_dotdot() {
        let dir = |d: &str| {
            conf(&format!(
                r#"{{"cniVersion":"1.1.0","name":"n","ipam":{{"subnet":"10.9.1.0/24","dataDir":"{d}"}}}}"#
            ))
            .resolve()
            .map(|r| r.data_dir)
        };
        assert_eq!(dir("/var/lib/x").unwrap(), PathBuf::from("/var/lib/x"));
        for bad in ["leases", "/var/lib/../../etc", "../x"] {
            let e = dir(bad).unwrap_err();
            assert_eq!(e.code(), spec::code::INVALID_CONFIG, "{bad}");
            assert!(e.to_string().contains("dataDir"), "{e}");
        }
        let r = conf(r#"{"cniVersion":"1.1.0","name":"n","ipam":{"subnet":"10.9.1.0/24"}}"#)
            .resolve()
            .unwrap();
        assert_eq!(r.data_dir, PathBuf::from("/var/lib/cni/networks"));
    }

    #[test]
    fn bad_range_sets_named() {
        let bad = |ipam: &str| {
            conf(&format!(
                r#"{{"cniVersion":"1.1.0","name":"n","ipam":{ipam}}}"#
            ))
            .resolve()
            .unwrap_err()
            .to_string()
        };
        let e = bad(r#"{"ranges":[[{"subnet":"10.9.3.0/24"},{"subnet":"fd00::/64"}]]}"#);
        assert!(e.contains("mixes IPv4 and IPv6"), "{e}");
        let e = bad(r#"{"ranges":[[{"subnet":"10.9.3.0/24"}],[{"subnet":"10.9.3.0/25"}]]}"#);
        assert!(e.contains("overlap"), "{e}");
        let e = bad(r#"{"ranges":[[{"subnet":"fd00::/127"}]]}"#);
        assert!(e.contains("/126"), "{e}");
        let e = bad(r#"{"ranges":[[{"subnet":"fd00::/64","gateway":"fd01::1"}]]}"#);
        assert!(e.contains("gateway fd01::1"), "{e}");
        let e = bad(r#"{"ranges":[[]]}"#);
        assert!(e.contains("empty"), "{e}");
        let e = bad(r#"{"subnet":"10.9.3.0/24","ranges":[[{"subnet":"10.9.4.0/24"}]]}"#);
        assert!(e.contains("not both"), "{e}");
        let e = bad(r#"{"ranges":[[{"subnet":"fd00:1::/64"}],[{"subnet":"fd00:2::/64"}]]}"#);
        assert!(e.contains("ipv6ClusterCIDR is required"), "{e}");
    }
}
