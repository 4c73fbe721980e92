//! The nftables ruleset, shaped like kube-proxy's nftables mode (one table per family):
//!
//! ```text
//! nat-prerouting / nat-output ──▶ services: daddr . proto . dport vmap @service-ips
//!                                           nodeport addresses: proto . dport vmap @service-nodeports
//!   service-ips ─▶ service-<h>-ns/svc/tcp/p   (cluster policy: masquerade off-cluster sources,
//!               │                              affinity sets, a random endpoint: see balance_rules)
//!               ├▶ local-<h>-...               (Local policy: local endpoints only)
//!               └▶ external-<h>-...            (NodePort, externalIPs, LB IPs: masquerade unless Local)
//!   without session affinity: dnat to numgen random mod 720720 map @endpoints-<h>-... (a data
//!     map of random-number ranges → endpoint address . port: an endpoint change is elements only)
//!   with session affinity: endpoint-<h>-...__ip/port chains (affinity update, DNAT)
//! filter-input/forward/output ─▶ service-endpoints-check / nodeport-endpoints-check:
//!   no-endpoint-* maps: reject (no endpoints at all) or drop (no local endpoints for Local)
//! filter-prerouting-pre-dnat / filter-output ─▶ firewall-check: daddr . proto . dport
//!   vmap @firewall-ips ─▶ firewall-<h>-... (loadBalancerSourceRanges: other sources dropped)
//! nat-postrouting ─▶ hairpin (DNATed, source == endpoint: @hairpin) marks; masquerading:
//!   packets carrying MASQ_MARK are masqueraded
//! ```
//!
//! Everything one Service contributes is its [`ServiceRules`]: its chains, affinity sets and map
//! elements. A sync rewrites the [`ServiceRules`] that changed (see `transaction`).

use std::{collections::BTreeMap, fmt::Write as _, net::IpAddr};

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::model::{cluster_endpoints, usable, Endpoint, Family, ServicePort};

/// Every table pea-proxy makes has this name (`ip pea-proxy`, `ip6 pea-proxy`).
pub const TABLE: &str = "pea-proxy";
/// The masquerade bit: kube-proxy's default (`--masquerade-bit 14`). pea-cni's masquerade table
/// (`pea-cni-<network>`) matches on addresses and sets no mark, so the two never disagree: a
/// packet this table DNATs to a pod is inside the cluster CIDR and pea-cni's rule skips it.
pub const MASQ_MARK: u32 = 0x4000;

pub const MAP_SERVICE_IPS: &str = "service-ips";
pub const MAP_SERVICE_NODEPORTS: &str = "service-nodeports";
pub const MAP_NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const MAP_NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
/// LoadBalancer IP . proto . port → the Service's firewall chain (kube-proxy's `firewall-ips`).
pub const MAP_FIREWALL_IPS: &str = "firewall-ips";
pub const SET_CLUSTER_IPS: &str = "cluster-ips";
pub const SET_NODEPORT_IPS: &str = "nodeport-ips";
/// `endpoint IP . endpoint IP`: a DNATed packet whose source is its own endpoint (a pod reaching
/// itself through its Service) is masqueraded, as kube-proxy's per-endpoint
/// `ip saddr <endpoint> jump mark-for-masquerade` does.
pub const SET_HAIRPIN: &str = "hairpin";
/// The range of the random number that picks an endpoint in a data map: lcm(1..=16), so up to
/// 16 endpoints each get exactly 1/n, and more get 1/n within n/720720.
pub const NUMGEN_MOD: u32 = 720_720;

/// The table's shared maps and sets, in declaration order.
pub const SHARED: [&str; 8] = [
    MAP_SERVICE_IPS,
    MAP_SERVICE_NODEPORTS,
    MAP_NO_ENDPOINT_SERVICES,
    MAP_NO_ENDPOINT_NODEPORTS,
    MAP_FIREWALL_IPS,
    SET_CLUSTER_IPS,
    SET_NODEPORT_IPS,
    SET_HAIRPIN,
];

/// `map` or `set`: what kind of object the shared `name` is.
pub fn shared_kind(name: &str) -> &'static str {
    match name {
        SET_CLUSTER_IPS | SET_NODEPORT_IPS | SET_HAIRPIN => "set",
        _ => "map",
    }
}

/// The declaration (`type … ;`) of the shared map or set `name`: written when the table is
/// made, and again with `elements = { … }` to add elements (nft 1.0.6 loads every set's
/// elements before an `add element`, which at 10 000 data maps takes seconds; a declaration
/// with elements does not).
pub fn shared_decl(family: Family, name: &str) -> String {
    let addr = family.addr_type();
    match name {
        SET_CLUSTER_IPS | SET_NODEPORT_IPS => format!("type {addr} ;"),
        SET_HAIRPIN => format!("type {addr} . {addr} ;"),
        MAP_SERVICE_NODEPORTS | MAP_NO_ENDPOINT_NODEPORTS => {
            "type inet_proto . inet_service : verdict ;".into()
        }
        _ => format!("type {addr} . inet_proto . inet_service : verdict ;"),
    }
}

/// What the generator needs besides the services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FamilyConfig {
    /// `--cluster-cidr` of this family: traffic to a ClusterIP from outside it is masqueraded.
    pub cluster_cidrs: Vec<IpNet>,
    /// `None`: NodePorts on every local address (`fib daddr type local`, loopback excluded);
    /// `Some(ips)`: only on these addresses (`--nodeport-addresses`).
    pub nodeport_ips: Option<Vec<IpAddr>>,
    /// This node's addresses of the family (kube-proxy's node IP): a loadBalancerSourceRanges
    /// entry that contains one also lets in the LoadBalancer IPs as sources.
    pub node_ips: Vec<IpAddr>,
    /// This node's `topology.kubernetes.io/zone` label: cluster-policy traffic goes to the
    /// endpoints hinted for it when every ready endpoint has hints (kube-proxy's topology).
    pub zone: Option<String>,
}

impl Family {
    /// nft's family and payload keyword.
    pub fn nft(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
    fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }
    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1",
        }
    }
}

/// A chain and its rules (each rule is the text after `add rule <family> pea-proxy <chain>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub rules: Vec<String>,
}

/// A map or set element: `key` (and `value` for maps), as nft text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Element {
    pub map: &'static str,
    pub key: String,
    pub value: Option<String>,
}

/// One endpoint's share of a data map: random numbers `lo..=hi` go to `ip`:`port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MapRange {
    pub lo: u32,
    pub hi: u32,
    pub ip: IpAddr,
    pub port: u16,
}

/// A Service port's endpoints as a data map (`numgen random mod NUMGEN_MOD` → address . port),
/// which its chain DNATs through. Changing endpoints changes only these elements: no rule, no
/// verdict, so the kernel does not re-validate the table and the change can go by netlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataMap {
    pub name: String,
    /// `tcp`, `udp` or `sctp` (the map's `typeof` port).
    pub proto: &'static str,
    pub ranges: Vec<MapRange>,
}

/// Everything one Service puts into one family's table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRules {
    /// Affinity sets: name and timeout in seconds.
    pub sets: Vec<(String, u32)>,
    /// Endpoint data maps (ports without session affinity). Created before the chains.
    pub maps: Vec<DataMap>,
    /// Endpoint chains come before the chains that jump to them.
    pub chains: Vec<Chain>,
    pub elements: Vec<Element>,
    /// UDP destinations and the endpoints behind them, for the conntrack flush.
    pub udp: Vec<UdpTarget>,
    /// Service ports with Local traffic policy and no local endpoints (a kube-proxy metric).
    pub no_local_endpoints: usize,
}

/// A UDP service destination and its endpoint addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpDest {
    Ip(IpAddr, u16),
    NodePort(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpTarget {
    pub dest: UdpDest,
    pub endpoints: Vec<IpAddr>,
}

/// kube-proxy's chain-name hash: the first 8 base32 characters of sha256(`parts`), so names stay
/// unique whatever the readable suffix holds.
fn hash(parts: &[&str]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    let bits = u64::from_be_bytes([0, 0, 0, d[0], d[1], d[2], d[3], d[4]]);
    (0..8)
        .map(|i| ALPHABET[((bits >> (35 - 5 * i)) & 31) as usize] as char)
        .collect()
}

/// An endpoint as it appears in names: IPv6 colons become dashes (nft identifiers cannot hold
/// colons).
fn endpoint_label(ep: &Endpoint) -> String {
    format!("{}/{}", ep.ip.to_string().replace(':', "-"), ep.port)
}

fn fmt_ip(ip: &IpAddr) -> String {
    ip.to_string()
}

/// `ip:port` for dnat: `[v6]:port` in the ip6 family.
fn fmt_ip_port(ip: &IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Chain names of one service port.
struct Names {
    key: String,
    hash: String,
}

impl Names {
    fn new(sp: &ServicePort) -> Self {
        let key = sp.key();
        Names {
            hash: hash(&[&key]),
            key,
        }
    }
    fn cluster(&self) -> String {
        format!("service-{}-{}", self.hash, self.key)
    }
    fn local(&self) -> String {
        format!("local-{}-{}", self.hash, self.key)
    }
    fn external(&self) -> String {
        format!("external-{}-{}", self.hash, self.key)
    }
    fn firewall(&self) -> String {
        format!("firewall-{}-{}", self.hash, self.key)
    }
    fn cluster_map(&self) -> String {
        format!("endpoints-{}-{}", self.hash, self.key)
    }
    fn local_map(&self) -> String {
        format!("local-endpoints-{}-{}", self.hash, self.key)
    }
    fn endpoint(&self, ep: &Endpoint) -> String {
        let label = endpoint_label(ep);
        format!(
            "endpoint-{}-{}__{label}",
            hash(&[&self.key, &label]),
            self.key
        )
    }
    /// The timeout is part of the name: a changed timeout is a new set (nft cannot change a
    /// set's timeout in place).
    fn affinity(&self, ep: &Endpoint, timeout: u32) -> String {
        let label = endpoint_label(ep);
        format!(
            "affinity-{}-{}__{label}",
            hash(&[&self.key, &label, &timeout.to_string()]),
            self.key
        )
    }
}

/// The rules of every port of one Service, in one family. Addresses of the other family are
/// ignored (a dual-stack Service contributes to both tables).
pub fn service_rules(family: Family, cfg: &FamilyConfig, ports: &[ServicePort]) -> ServiceRules {
    let mut out = ServiceRules::default();
    for sp in ports {
        port_rules(family, cfg, sp, &mut out);
    }
    out
}

fn port_rules(family: Family, cfg: &FamilyConfig, sp: &ServicePort, out: &mut ServiceRules) {
    let f = family.nft();
    let in_family = |ips: &[IpAddr]| -> Vec<IpAddr> {
        ips.iter()
            .filter(|ip| Family::of(ip) == family)
            .copied()
            .collect()
    };
    let cluster_ips = in_family(&sp.cluster_ips);
    let external_ips: Vec<IpAddr> = in_family(&sp.external_ips)
        .into_iter()
        .chain(in_family(&sp.load_balancer_ips))
        .collect();
    let endpoints: Vec<Endpoint> = sp
        .endpoints
        .iter()
        .filter(|e| Family::of(&e.ip) == family)
        .cloned()
        .collect();
    // A service port exists in a family's table when it has an address there, or a NodePort
    // and endpoints of that family.
    if cluster_ips.is_empty() && external_ips.is_empty() && endpoints.is_empty() {
        return;
    }
    let names = Names::new(sp);
    let proto = sp.protocol.nft();
    let cluster_eps = cluster_endpoints(&endpoints, cfg.zone.as_deref());
    let local_eps = usable(&endpoints, true);
    let has_endpoints = !cluster_eps.is_empty();
    let has_internal = if sp.internal_local {
        !local_eps.is_empty()
    } else {
        has_endpoints
    };
    let has_external = if sp.external_local {
        !local_eps.is_empty()
    } else {
        has_endpoints
    };
    let has_external_dests = !external_ips.is_empty() || sp.node_port.is_some();
    if (sp.internal_local && !has_internal)
        || (sp.external_local && has_external_dests && !has_external)
    {
        out.no_local_endpoints += 1;
    }
    // Without any endpoint: reject (the client learns at once); with endpoints elsewhere but
    // none local under a Local policy: drop, as kube-proxy.
    let no_endpoint_verdict = if has_endpoints {
        "drop".to_string()
    } else {
        "goto reject-chain".to_string()
    };

    let cluster_chain = names.cluster();
    let local_chain = names.local();
    let external_chain = names.external();
    let need_local = (sp.internal_local || sp.external_local) && !local_eps.is_empty();

    // Endpoint chains for every endpoint either policy chain uses.
    let mut used: Vec<&Endpoint> = cluster_eps.clone();
    if need_local {
        for e in &local_eps {
            if !used.contains(e) {
                used.push(e);
            }
        }
    }
    for ep in &used {
        out.elements.push(Element {
            map: SET_HAIRPIN,
            key: hairpin_key(&ep.ip),
            value: None,
        });
    }
    // Session affinity needs a rule per endpoint (the `update` of its set), so those ports keep
    // kube-proxy's endpoint chains; the others pick an endpoint from a data map.
    if let Some(t) = sp.affinity_timeout {
        for ep in &used {
            let set = names.affinity(ep, t);
            out.sets.push((set.clone(), t));
            out.chains.push(Chain {
                name: names.endpoint(ep),
                rules: vec![
                    format!("update @{set} {{ {f} saddr }}"),
                    format!(
                        "meta l4proto {proto} dnat to {}",
                        fmt_ip_port(&ep.ip, ep.port)
                    ),
                ],
            });
        }
    }

    let balance = |eps: &[&Endpoint], map: String, out: &mut ServiceRules| -> Vec<String> {
        let Some(t) = sp.affinity_timeout else {
            let rule = format!(
                "meta l4proto {proto} dnat {f} to numgen random mod {NUMGEN_MOD} map @{map}"
            );
            out.maps.push(DataMap {
                name: map,
                proto,
                ranges: map_ranges(eps),
            });
            return vec![rule];
        };
        let mut rules = Vec::new();
        for ep in eps {
            rules.push(format!(
                "{f} saddr @{} goto {}",
                names.affinity(ep, t),
                names.endpoint(ep)
            ));
        }
        rules.extend(balance_rules(eps.iter().map(|ep| names.endpoint(ep))));
        rules
    };

    if has_endpoints {
        let mut rules = Vec::new();
        for cidr in &cfg.cluster_cidrs {
            for ip in &cluster_ips {
                rules.push(format!(
                    "{f} daddr {} {proto} dport {} {f} saddr != {cidr} jump mark-for-masquerade",
                    fmt_ip(ip),
                    sp.port
                ));
            }
        }
        rules.extend(balance(&cluster_eps, names.cluster_map(), out));
        out.chains.push(Chain {
            name: cluster_chain.clone(),
            rules,
        });
    }
    if need_local {
        let rules = balance(&local_eps, names.local_map(), out);
        out.chains.push(Chain {
            name: local_chain.clone(),
            rules,
        });
    }
    if has_external && has_external_dests {
        let mut rules = Vec::new();
        if sp.external_local {
            if has_endpoints {
                // Pods and the node itself reaching an external address go by the cluster
                // policy (kube-proxy's short-circuit): they would otherwise be dropped when no
                // endpoint is local.
                for cidr in &cfg.cluster_cidrs {
                    rules.push(format!("{f} saddr {cidr} goto {cluster_chain}"));
                }
                rules.push("fib saddr type local jump mark-for-masquerade".into());
                rules.push(format!("fib saddr type local goto {cluster_chain}"));
            }
            rules.push(format!("goto {local_chain}"));
        } else {
            rules.push("jump mark-for-masquerade".into());
            rules.push(format!("goto {cluster_chain}"));
        }
        out.chains.push(Chain {
            name: external_chain.clone(),
            rules,
        });
    }

    let internal_target = if sp.internal_local {
        &local_chain
    } else {
        &cluster_chain
    };
    for ip in &cluster_ips {
        let key = format!("{} . {proto} . {}", fmt_ip(ip), sp.port);
        out.elements.push(Element {
            map: SET_CLUSTER_IPS,
            key: fmt_ip(ip),
            value: None,
        });
        out.elements.push(if has_internal {
            Element {
                map: MAP_SERVICE_IPS,
                key,
                value: Some(format!("goto {internal_target}")),
            }
        } else {
            Element {
                map: MAP_NO_ENDPOINT_SERVICES,
                key,
                value: Some(no_endpoint_verdict.clone()),
            }
        });
    }
    for ip in &external_ips {
        let key = format!("{} . {proto} . {}", fmt_ip(ip), sp.port);
        out.elements.push(if has_external {
            Element {
                map: MAP_SERVICE_IPS,
                key,
                value: Some(format!("goto {external_chain}")),
            }
        } else {
            Element {
                map: MAP_NO_ENDPOINT_SERVICES,
                key,
                value: Some(no_endpoint_verdict.clone()),
            }
        });
    }
    firewall_rules(family, cfg, sp, &names, out);
    if let Some(np) = sp.node_port {
        let key = format!("{proto} . {np}");
        out.elements.push(if has_external {
            Element {
                map: MAP_SERVICE_NODEPORTS,
                key,
                value: Some(format!("goto {external_chain}")),
            }
        } else {
            Element {
                map: MAP_NO_ENDPOINT_NODEPORTS,
                key,
                value: Some(no_endpoint_verdict.clone()),
            }
        });
    }
    if sp.protocol == crate::model::Protocol::Udp {
        let eps: Vec<IpAddr> = endpoints.iter().map(|e| e.ip).collect();
        for ip in cluster_ips.iter().chain(&external_ips) {
            out.udp.push(UdpTarget {
                dest: UdpDest::Ip(*ip, sp.port),
                endpoints: eps.clone(),
            });
        }
        if let Some(np) = sp.node_port {
            out.udp.push(UdpTarget {
                dest: UdpDest::NodePort(np),
                endpoints: eps,
            });
        }
    }
}

/// The key of an endpoint's hairpin element.
pub fn hairpin_key(ip: &IpAddr) -> String {
    format!("{ip} . {ip}")
}

/// `endpoints` as shares of `0..NUMGEN_MOD`: endpoint k gets `[k*M/n, (k+1)*M/n - 1]`. More
/// endpoints than numbers cannot happen in practice (a Service's slices hold far fewer); the
/// surplus would get no share.
pub fn map_ranges(endpoints: &[&Endpoint]) -> Vec<MapRange> {
    let m = u64::from(NUMGEN_MOD);
    let n = endpoints.len().min(NUMGEN_MOD as usize) as u64;
    endpoints
        .iter()
        .take(n as usize)
        .enumerate()
        .map(|(k, ep)| {
            let k = k as u64;
            MapRange {
                lo: (k * m / n) as u32,
                hi: ((k + 1) * m / n - 1) as u32,
                ip: ep.ip,
                port: ep.port,
            }
        })
        .collect()
}

/// Up to this many endpoints a session-affinity Service chain picks one with a cascade of
/// rules, above it with one `numgen ... vmap` (see [`balance_rules`]).
pub const CASCADE_MAX_ENDPOINTS: usize = 16;

/// The rules that send a new connection to one of `endpoints` (chain names) at random, each
/// with the same chance: session-affinity ports only (the others use a data map, see
/// [`DataMap`]).
///
/// Up to [`CASCADE_MAX_ENDPOINTS`]: a cascade, as kube-proxy's iptables mode does with
/// `statistic`: rule i (of n) takes the connection with chance 1/(n-i), the last one takes the
/// rest. Above it: one `numgen random mod n vmap { ... }`, kube-proxy's nftables form. The
/// cascade is the common case because each inline vmap is an anonymous set, and the kernel
/// makes every new anonymous set by scanning the table's sets for a free `__map%d` name and
/// finds named sets by walking a list: with a vmap in each of 10 000 Service chains a full sync
/// took 18.6 s in the kernel, with the cascade 3.2 s (same ruleset otherwise; the measurements
/// are in the README's bench-proxy section). A new connection evaluates at most 16 short rules.
pub fn balance_rules(endpoints: impl ExactSizeIterator<Item = String>) -> Vec<String> {
    let n = endpoints.len();
    if n > CASCADE_MAX_ENDPOINTS {
        let arms: Vec<String> = endpoints
            .enumerate()
            .map(|(i, chain)| format!("{i} : goto {chain}"))
            .collect();
        return vec![format!(
            "numgen random mod {n} vmap {{ {} }}",
            arms.join(", ")
        )];
    }
    endpoints
        .enumerate()
        .map(|(i, chain)| match n - i {
            1 => format!("goto {chain}"),
            left => format!("numgen random mod {left} == 0 goto {chain}"),
        })
        .collect()
}

/// loadBalancerSourceRanges, as kube-proxy: new connections to the Service's LoadBalancer IPs
/// (not its externalIPs or NodePorts) from outside the ranges are dropped before DNAT. Ranges of
/// the other family only: everything to the IP is dropped (never open by omission). When a
/// range contains the node's IP, the LoadBalancer IPs themselves are allowed too: a VIP-like
/// load balancer often puts its VIP on the node, and then the node's own requests to it loop
/// back with the VIP as source (kube-proxy's `allowFromNode`).
fn firewall_rules(
    family: Family,
    cfg: &FamilyConfig,
    sp: &ServicePort,
    names: &Names,
    out: &mut ServiceRules,
) {
    let Some(ranges) = &sp.source_ranges else {
        return;
    };
    let f = family.nft();
    let lb_ips: Vec<&IpAddr> = sp
        .load_balancer_ips
        .iter()
        .filter(|ip| Family::of(ip) == family)
        .collect();
    if lb_ips.is_empty() {
        return;
    }
    let in_family: Vec<&IpNet> = ranges
        .iter()
        .filter(|n| {
            matches!(
                (n, family),
                (IpNet::V4(_), Family::V4) | (IpNet::V6(_), Family::V6)
            )
        })
        .collect();
    let allow_from_node = in_family
        .iter()
        .any(|n| cfg.node_ips.iter().any(|ip| n.contains(ip)));
    let mut ranges: Vec<String> = in_family.iter().map(ToString::to_string).collect();
    if allow_from_node {
        ranges.extend(lb_ips.iter().map(|ip| fmt_ip(ip)));
    }
    let rule = if ranges.is_empty() {
        "drop".to_string()
    } else {
        format!("{f} saddr != {{ {} }} drop", ranges.join(", "))
    };
    let chain = names.firewall();
    out.chains.push(Chain {
        name: chain.clone(),
        rules: vec![rule],
    });
    for ip in lb_ips {
        out.elements.push(Element {
            map: MAP_FIREWALL_IPS,
            key: format!("{} . {} . {}", fmt_ip(ip), sp.protocol.nft(), sp.port),
            value: Some(format!("goto {chain}")),
        });
    }
}

/// The fixed part of a family's table: base chains, helper chains, maps and sets, and their
/// rules. Written as `add` commands (idempotent), each chain's rules after a `flush`.
pub fn base(family: Family, cfg: &FamilyConfig) -> String {
    let f = family.nft();
    let t = format!("{f} {TABLE}");
    let mut s = String::new();
    let _ = writeln!(s, "add table {t} {{ comment \"rules for pea-proxy\" ; }}");
    for (name, hook) in [
        (
            "filter-prerouting-pre-dnat",
            "type filter hook prerouting priority -110",
        ),
        ("filter-input", "type filter hook input priority -110"),
        ("filter-forward", "type filter hook forward priority -110"),
        ("filter-output", "type filter hook output priority -110"),
        (
            "filter-output-post-dnat",
            "type filter hook output priority -90",
        ),
        ("nat-prerouting", "type nat hook prerouting priority -100"),
        ("nat-output", "type nat hook output priority -100"),
        ("nat-postrouting", "type nat hook postrouting priority 100"),
    ] {
        let _ = writeln!(s, "add chain {t} {name} {{ {hook} ; policy accept ; }}");
    }
    for name in [
        "mark-for-masquerade",
        "masquerading",
        "services",
        "service-endpoints-check",
        "nodeport-endpoints-check",
        "reject-chain",
        "cluster-ips-check",
        "firewall-check",
    ] {
        let _ = writeln!(s, "add chain {t} {name}");
    }
    for name in SHARED {
        let _ = writeln!(
            s,
            "add {} {t} {name} {{ {} }}",
            shared_kind(name),
            shared_decl(family, name)
        );
    }
    let nodeport_match = match &cfg.nodeport_ips {
        None => format!(
            "fib daddr type local {f} daddr != {} meta l4proto . th dport",
            family.loopback()
        ),
        Some(_) => format!("{f} daddr @{SET_NODEPORT_IPS} meta l4proto . th dport"),
    };
    let rules: [(&str, Vec<String>); 11] = [
        (
            "filter-input",
            vec![
                "ct state new jump nodeport-endpoints-check".into(),
                "ct state new jump service-endpoints-check".into(),
            ],
        ),
        (
            "filter-forward",
            vec![
                "ct state new jump service-endpoints-check".into(),
                "ct state new jump cluster-ips-check".into(),
            ],
        ),
        (
            "filter-output",
            vec![
                "ct state new jump service-endpoints-check".into(),
                "ct state new jump firewall-check".into(),
            ],
        ),
        (
            "filter-output-post-dnat",
            vec!["ct state new jump cluster-ips-check".into()],
        ),
        ("nat-prerouting", vec!["jump services".into()]),
        ("nat-output", vec!["jump services".into()]),
        (
            "nat-postrouting",
            vec![
                // After DNAT the destination is the endpoint: source == destination is a pod
                // that reached itself through a Service.
                format!(
                    "ct status dnat {f} saddr . {f} daddr @{SET_HAIRPIN} jump mark-for-masquerade"
                ),
                "jump masquerading".into(),
            ],
        ),
        (
            "mark-for-masquerade",
            vec![format!("meta mark set meta mark | {MASQ_MARK:#x}")],
        ),
        (
            "masquerading",
            vec![
                format!("meta mark & {MASQ_MARK:#x} == 0 return"),
                format!("meta mark set meta mark ^ {MASQ_MARK:#x}"),
                "masquerade fully-random".into(),
            ],
        ),
        (
            "services",
            vec![
                format!("{f} daddr . meta l4proto . th dport vmap @{MAP_SERVICE_IPS}"),
                format!("{nodeport_match} vmap @{MAP_SERVICE_NODEPORTS}"),
            ],
        ),
        (
            "service-endpoints-check",
            vec![format!(
                "{f} daddr . meta l4proto . th dport vmap @{MAP_NO_ENDPOINT_SERVICES}"
            )],
        ),
    ];
    let more: [(&str, Vec<String>); 5] = [
        (
            "filter-prerouting-pre-dnat",
            vec!["ct state new jump firewall-check".into()],
        ),
        (
            "firewall-check",
            vec![format!(
                "{f} daddr . meta l4proto . th dport vmap @{MAP_FIREWALL_IPS}"
            )],
        ),
        (
            "nodeport-endpoints-check",
            vec![format!(
                "{nodeport_match} vmap @{MAP_NO_ENDPOINT_NODEPORTS}"
            )],
        ),
        (
            "reject-chain",
            vec![
                "meta l4proto tcp reject with tcp reset".into(),
                "reject".into(),
            ],
        ),
        (
            "cluster-ips-check",
            vec![format!(
                "{f} daddr @{SET_CLUSTER_IPS} reject comment \"no such port on a ClusterIP\""
            )],
        ),
    ];
    for (chain, rules) in rules.iter().chain(more.iter()) {
        let _ = writeln!(s, "flush chain {t} {chain}");
        for r in rules {
            let _ = writeln!(s, "add rule {t} {chain} {r}");
        }
    }
    s
}

/// The nodeport-ips set's elements.
pub fn nodeport_ip_elements(family: Family, cfg: &FamilyConfig) -> Vec<Element> {
    cfg.nodeport_ips
        .iter()
        .flatten()
        .filter(|ip| Family::of(ip) == family)
        .map(|ip| Element {
            map: SET_NODEPORT_IPS,
            key: fmt_ip(ip),
            value: None,
        })
        .collect()
}

/// Merges the elements of every Service: the first Service (in key order) to claim a map key
/// keeps it; a later claim is reported (two Services with one externalIP and port, or one
/// NodePort) and left out, so one bad object cannot break the transaction of all.
pub fn merge_elements<'a>(
    all: impl Iterator<Item = (&'a str, &'a ServiceRules)>,
    conflicts: &mut Vec<String>,
) -> BTreeMap<(&'static str, String), Option<String>> {
    let mut out: BTreeMap<(&'static str, String), Option<String>> = BTreeMap::new();
    let mut owner: BTreeMap<(&'static str, String), &str> = BTreeMap::new();
    for (svc, rules) in all {
        for e in &rules.elements {
            let k = (e.map, e.key.clone());
            match owner.get(&k) {
                Some(o) if *o != svc && e.value.is_some() => conflicts.push(format!(
                    "service {svc}: {} {} is already used by service {o}; left out",
                    e.map, e.key
                )),
                Some(_) => {}
                None => {
                    owner.insert(k.clone(), svc);
                    out.insert(k, e.value.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_base32() {
        let h = hash(&["ns1/svc1/tcp/p80"]);
        assert_eq!(h.len(), 8);
        assert!(h
            .chars()
            .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
        assert_eq!(h, hash(&["ns1/svc1/tcp/p80"]));
        assert_ne!(h, hash(&["ns1/svc1/tcp/p81"]));
    }

    fn chains(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("ep{i}")).collect()
    }

    #[test]
    fn balance_is_a_cascade_with_equal_chances_up_to_the_limit() {
        assert_eq!(balance_rules(chains(1).into_iter()), ["goto ep0"]);
        assert_eq!(
            balance_rules(chains(3).into_iter()),
            [
                "numgen random mod 3 == 0 goto ep0",
                "numgen random mod 2 == 0 goto ep1",
                "goto ep2"
            ]
        );
        for n in 1..=CASCADE_MAX_ENDPOINTS {
            let rules = balance_rules(chains(n).into_iter());
            assert_eq!(rules.len(), n);
            // Rule i takes 1/mod_i of what reaches it; every endpoint must get exactly 1/n.
            let mut reaching = 1.0_f64;
            for (i, r) in rules.iter().enumerate() {
                let m: f64 = match r.strip_prefix("numgen random mod ") {
                    Some(rest) => rest.split(' ').next().unwrap().parse().unwrap(),
                    None => 1.0,
                };
                assert!(r.ends_with(&format!("goto ep{i}")), "{r}");
                let p = reaching / m;
                assert!((p - 1.0 / n as f64).abs() < 1e-12, "n={n} rule {i}: {p}");
                reaching -= p;
            }
            assert!(reaching.abs() < 1e-12);
        }
    }

    #[test]
    fn balance_over_many_endpoints_is_one_vmap() {
        let n = CASCADE_MAX_ENDPOINTS + 1;
        let rules = balance_rules(chains(n).into_iter());
        assert_eq!(rules.len(), 1);
        assert!(
            rules[0].starts_with(&format!("numgen random mod {n} vmap {{ 0 : goto ep0, ")),
            "{}",
            rules[0]
        );
        assert!(rules[0].ends_with(&format!("{} : goto ep{} }}", n - 1, n - 1)));
    }
}
