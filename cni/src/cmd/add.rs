//! ADD: lease an address, plug a veth between the node bridge and the pod, configure the pod side.
//!
//! Steps, each undone in reverse if a later one fails:
//! leases, one per range set (IPAM, under the network lock; masquerade rules with the first
//! lease) → bridge and gateway addresses → veth pair (peer created directly in the pod's
//! namespace) → bridge port, hairpin → addresses, routes inside the pod.

use std::net::IpAddr;

use super::CmdError;
use crate::{
    config::{ConfigError, NetConf, Resolved},
    env::CniEnv,
    ipam::Store,
    link,
    netns::{self, Netns},
    spec::{AddResult, Dns, Interface, IpConfig, Route},
    sysctl,
};

/// The `CNI_ARGS` keys ADD understands (static IP/MAC, and the pod identity runtimes send).
const KNOWN_ARGS: &[&str] = &[
    "IP",
    "MAC",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

pub(super) async fn run(env: &CniEnv, conf: &NetConf) -> Result<String, CmdError> {
    env.check_args(KNOWN_ARGS)?;
    let r = conf.resolve()?;
    let prev = match &conf.prev_result {
        Some(v) => Some(
            serde_json::from_value::<AddResult>(v.clone())
                .map_err(|e| CmdError::PrevResult(e.to_string()))?,
        ),
        None => None,
    };
    // Static requests (capabilities `ips`/`mac`, `args.cni`, CNI_ARGS IP=/MAC=): at most one
    // address per range set, each inside one of the network's ranges.
    let mac = conf.requested_mac(env.arg("MAC"))?;
    let mut wanted: Vec<Option<IpAddr>> = vec![None; r.range_sets.len()];
    for ip in conf.requested_ips(env.arg("IP"))? {
        let set = r
            .range_sets
            .iter()
            .position(|set| {
                set.iter()
                    .any(|x| crate::ipam::in_range(ip, x.start, x.end))
            })
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "requested IP {ip} is in none of network {}'s ranges",
                    r.name
                ))
            })?;
        if let Some(other) = wanted[set].replace(ip) {
            return Err(ConfigError::Invalid(format!(
                "requested IPs {other} and {ip} are in the same range set (one address per set)"
            ))
            .into());
        }
    }
    let pod_ns = Netns::open(std::path::Path::new(&env.netns))?;
    pod_ns.ensure_not_own()?;
    let store = Store::new(&r.data_dir, &r.name);
    let ips = {
        let lock = store.lock()?;
        let gateways: Vec<IpAddr> = r.ranges().map(|x| x.gateway).collect();
        let mut ips = Vec::new();
        for (i, set) in r.range_sets.iter().enumerate() {
            let spans: Vec<(IpAddr, IpAddr)> = set.iter().map(|x| (x.start, x.end)).collect();
            let leased = match wanted[i] {
                Some(ip) => lock.allocate_requested(&env.container_id, &env.ifname, ip, &gateways),
                None => lock.allocate(&env.container_id, &env.ifname, i, &spans, &gateways),
            };
            match leased {
                Ok(ip) => ips.push(ip),
                Err(e) => {
                    drop(lock);
                    return Err(rollback_lease(e.into(), &store, env, &r));
                }
            }
        }
        if r.ip_masq {
            if let Err(e) = super::masq_state::ensure(&store, &r) {
                drop(lock);
                return Err(rollback_lease(e, &store, env, &r));
            }
        }
        ips
    };
    tracing::debug!(?ips, "leased");
    match plumb(env, &r, &pod_ns, &ips, mac.as_deref()).await {
        Ok(mut result) => {
            if let Some(prev) = prev {
                result = merge(prev, result);
            }
            Ok(serde_json::to_string(&result.for_version(&r.cni_version))
                .expect("result serialises"))
        }
        Err(e) => {
            let host = link::host_veth_name(&env.container_id, &env.ifname);
            let mut undo = Vec::new();
            if let Ok(h) = netns::netlink_here() {
                if let Err(u) = link::delete(&h, &host).await {
                    undo.push(u.to_string());
                }
            }
            match rollback_lease(e, &store, env, &r) {
                CmdError::RolledBack(e, u2) => {
                    undo.push(u2);
                    Err(CmdError::RolledBack(e, undo.join("; ")))
                }
                e if undo.is_empty() => Err(e),
                e => Err(CmdError::RolledBack(Box::new(e), undo.join("; "))),
            }
        }
    }
}

/// Gives the lease back after a failed ADD; returns the original error, with any undo failure.
fn rollback_lease(e: CmdError, store: &Store, env: &CniEnv, r: &Resolved) -> CmdError {
    let undo = (|| -> Result<(), CmdError> {
        let lock = store.lock()?;
        lock.release(&env.container_id, &env.ifname)?;
        super::masq_state::release_if_unused(store, &lock, &r.name, false)
    })();
    match undo {
        Ok(()) => e,
        Err(u) => CmdError::RolledBack(Box::new(e), u.to_string()),
    }
}

async fn plumb(
    env: &CniEnv,
    r: &Resolved,
    pod_ns: &Netns,
    ips: &[IpAddr],
    mac: Option<&[u8]>,
) -> Result<AddResult, CmdError> {
    let h = netns::netlink_here()?;
    let has_v4 = r.gateway_of(false).is_some();
    let has_v6 = r.gateway_of(true).is_some();
    if r.is_gateway && has_v4 {
        sysctl::ensure("net.ipv4.ip_forward", "1")?;
    }
    if r.is_gateway && has_v6 {
        sysctl::ensure("net.ipv6.conf.all.forwarding", "1")?;
    }
    if r.br_netfilter && !sysctl::ensure("net.bridge.bridge-nf-call-iptables", "1")? {
        tracing::warn!("br_netfilter is not loaded: bridged pod traffic bypasses iptables/nftables (modprobe br_netfilter)");
    }
    if r.br_netfilter && has_v6 {
        sysctl::ensure("net.bridge.bridge-nf-call-ip6tables", "1")?;
    }
    let bridge_idx = link::ensure_bridge(&h, &r.bridge, r.mtu).await?;
    if r.is_gateway {
        for range in r.ranges() {
            let prefix = range.subnet.prefix_len();
            link::ensure_addr(&h, bridge_idx, &r.bridge, range.gateway, prefix).await?;
        }
    }
    // Each leased address with the range it came from (prefix length and gateway).
    let mut placed = Vec::new();
    for ip in ips {
        let range = r
            .ranges()
            .find(|x| crate::ipam::in_range(*ip, x.start, x.end))
            .expect("leased from one of the ranges");
        placed.push((*ip, range));
    }
    let host = link::host_veth_name(&env.container_id, &env.ifname);
    // A retried ADD (libcni retries after errors) starts from a clean slate for this attachment.
    link::delete(&h, &host).await?;
    let host_idx = link::create_veth(&h, &host, &env.ifname, r.mtu, pod_ns, mac).await?;
    let alias = link::host_veth_alias(&r.name, &env.container_id, &env.ifname);
    link::attach_to_bridge(&h, &host, host_idx, bridge_idx, r.hairpin, &alias).await?;

    let ph = pod_ns.netlink()?;
    let pod_link = link::get(&ph, &env.ifname)
        .await?
        .ok_or_else(|| link::LinkError::NotFound {
            name: format!("{} in {}", env.ifname, env.netns),
        })?;
    let pod_idx = pod_link.header.index;
    link::up(&ph, &env.ifname, pod_idx).await?;
    for (ip, range) in &placed {
        link::ensure_addr(&ph, pod_idx, &env.ifname, *ip, range.subnet.prefix_len()).await?;
    }
    let mut routes = Vec::new();
    for rt in &r.routes {
        let v6 = rt.dst.addr().is_ipv6();
        let gw = rt.gw.or_else(|| r.gateway_of(v6).filter(|_| r.is_gateway));
        link::add_route_any(&ph, pod_idx, &env.ifname, rt.dst, gw).await?;
        routes.push(Route {
            dst: rt.dst.to_string(),
            gw: gw.map(|g| g.to_string()),
        });
    }

    // The bridge's MAC follows its ports, so read both links after the port is attached.
    let bridge = link::get(&h, &r.bridge).await?;
    let host_link = link::get(&h, &host).await?;
    let with_mtu = crate::spec::version_at_least(&r.cni_version, "1.1.0");
    let mtu = with_mtu.then_some(r.mtu);
    Ok(AddResult {
        cni_version: r.cni_version.clone(),
        interfaces: vec![
            Interface {
                name: r.bridge.clone(),
                mac: bridge.as_ref().map(link::mac_of).unwrap_or_default(),
                mtu,
                sandbox: String::new(),
            },
            Interface {
                name: host,
                mac: host_link.as_ref().map(link::mac_of).unwrap_or_default(),
                mtu,
                sandbox: String::new(),
            },
            Interface {
                name: env.ifname.clone(),
                mac: link::mac_of(&pod_link),
                mtu,
                sandbox: env.netns.clone(),
            },
        ],
        ips: placed
            .iter()
            .map(|(ip, range)| IpConfig {
                version: None,
                address: format!("{ip}/{}", range.subnet.prefix_len()),
                gateway: r.is_gateway.then(|| range.gateway.to_string()),
                interface: Some(2),
            })
            .collect(),
        routes,
        dns: r.dns.clone(),
    })
}

/// Appends this plugin's result to the previous plugin's, re-indexing our interfaces.
fn merge(mut prev: AddResult, ours: AddResult) -> AddResult {
    let offset = prev.interfaces.len();
    prev.interfaces.extend(ours.interfaces);
    prev.ips.extend(ours.ips.into_iter().map(|mut ip| {
        ip.interface = ip.interface.map(|i| i + offset);
        ip
    }));
    prev.routes.extend(ours.routes);
    // The config's DNS wins over a previous plugin's, as in the bridge plugin.
    if ours.dns != Dns::default() {
        prev.dns = ours.dns;
    }
    prev
}
