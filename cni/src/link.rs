//! Link, address and route operations over rtnetlink: the node bridge, the pod's veth pair and
//! the addresses and routes inside the pod.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
};

use futures_util::TryStreamExt;
use rtnetlink::{
    packet_route::{
        address::AddressAttribute,
        link::{LinkAttribute, LinkFlags, LinkMessage},
        route::RouteScope,
    },
    Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{op} {name}: {source}")]
    Netlink {
        op: &'static str,
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("interface {name} already exists in {netns}")]
    Exists { name: String, netns: String },
    #[error("link {name} not found")]
    NotFound { name: String },
    #[error("{name} exists but is not a bridge")]
    NotBridge { name: String },
    #[error("route to {dst} via {gw}: the address families differ")]
    RouteFamily { dst: String, gw: String },
}

fn nl<'a>(op: &'static str, name: &'a str) -> impl FnOnce(rtnetlink::Error) -> LinkError + 'a {
    move |source| LinkError::Netlink {
        op,
        name: name.to_string(),
        source,
    }
}

/// The errno of a netlink error reply, if it is one.
pub fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().raw_os_error(),
        _ => None,
    }
}

/// The host-side veth name of an attachment: stable, so DEL finds it without the pod's namespace.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    // FNV-1a, 64 bit: tiny, deterministic, and 44 bits (11 hex digits) make collisions negligible
    // for the pods of one node.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([0]).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("veth{:011x}", h & 0xfff_ffff_ffff)
}

/// Whether `name` looks like a host veth made by [`host_veth_name`].
pub fn is_host_veth_name(name: &str) -> bool {
    name.len() == 15
        && name.starts_with("veth")
        && name[4..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// The tag every host veth carries in its interface alias (IFLA_IFALIAS):
/// `pea-cni/<network>/<containerID>/<ifname>`, cut to the kernel's 255 bytes. GC sweeps only
/// veths tagged with its own network (network names have no `/`, so the prefix is exact).
pub fn host_veth_alias(network: &str, container_id: &str, ifname: &str) -> String {
    let mut a = format!("{}{container_id}/{ifname}", alias_prefix(network));
    if a.len() > 255 {
        let mut cut = 255;
        while !a.is_char_boundary(cut) {
            cut -= 1;
        }
        a.truncate(cut);
    }
    a
}

/// The start of the alias of every host veth of `network`.
pub fn alias_prefix(network: &str) -> String {
    format!("pea-cni/{network}/")
}

/// Looks a link up by name.
pub async fn get(h: &Handle, name: &str) -> Result<Option<LinkMessage>, LinkError> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(m) => Ok(m),
        Err(e) if errno(&e) == Some(libc_enodev()) => Ok(None),
        Err(e) => Err(nl("looking up link", name)(e)),
    }
}

const fn libc_enodev() -> i32 {
    19
}
const EEXIST: i32 = 17;
const EADDRNOTAVAIL: i32 = 99;
const ESRCH: i32 = 3;

/// Every link in the namespace.
pub async fn list(h: &Handle) -> Result<Vec<LinkMessage>, LinkError> {
    h.link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing links", "*"))
}

pub fn name_of(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

pub fn mac_of(m: &LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(mac) => Some(format_mac(mac)),
            _ => None,
        })
        .unwrap_or_default()
}

pub fn mtu_of(m: &LinkMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(v) => Some(*v),
        _ => None,
    })
}

pub fn alias_of(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(s) => Some(s.as_str()),
        _ => None,
    })
}

pub fn controller_of(m: &LinkMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(v) => Some(*v),
        _ => None,
    })
}

pub fn is_bridge(m: &LinkMessage) -> bool {
    use rtnetlink::packet_route::link::{InfoKind, LinkInfo};
    m.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    })
}

pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Option<Vec<u8>> {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    (v.len() == 6).then_some(v)
}

/// Makes sure the bridge exists, is up and has `mtu`; returns its index.
pub async fn ensure_bridge(h: &Handle, name: &str, mtu: u32) -> Result<u32, LinkError> {
    let existing = match get(h, name).await? {
        Some(m) => m,
        None => {
            match h
                .link()
                .add(LinkBridge::new(name).mtu(mtu).build())
                .execute()
                .await
            {
                Ok(()) => {}
                // A concurrent ADD made it first.
                Err(e) if errno(&e) == Some(EEXIST) => {}
                Err(e) => return Err(nl("creating bridge", name)(e)),
            }
            get(h, name)
                .await?
                .ok_or_else(|| LinkError::NotFound { name: name.into() })?
        }
    };
    if !is_bridge(&existing) {
        return Err(LinkError::NotBridge { name: name.into() });
    }
    let idx = existing.header.index;
    let up = existing.header.flags.contains(LinkFlags::Up);
    if !up || mtu_of(&existing) != Some(mtu) {
        h.link()
            .change(LinkUnspec::new_with_index(idx).mtu(mtu).up().build())
            .execute()
            .await
            .map_err(nl("bringing up bridge", name))?;
    }
    Ok(idx)
}

/// Adds `ip/prefix` to link `idx` unless it is there. IPv6 addresses skip duplicate address
/// detection (the node owns the subnet), so they are usable at once instead of tentative.
pub async fn ensure_addr(
    h: &Handle,
    idx: u32,
    name: &str,
    ip: impl Into<IpAddr>,
    prefix: u8,
) -> Result<(), LinkError> {
    let ip = ip.into();
    let mut req = h.address().add(idx, ip, prefix);
    if ip.is_ipv6() {
        use rtnetlink::packet_route::address::AddressHeaderFlags;
        req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
    }
    match req.execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
        Err(e) => Err(nl("adding address to", name)(e)),
    }
}

/// The IPv4 addresses (with prefix) on link `idx`.
pub async fn addrs(h: &Handle, idx: u32) -> Result<Vec<(Ipv4Addr, u8)>, LinkError> {
    let msgs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(idx)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing addresses of", &idx.to_string()))?;
    Ok(msgs
        .iter()
        .filter(|m| m.header.index == idx)
        .flat_map(|m| {
            m.attributes.iter().filter_map(move |a| match a {
                AddressAttribute::Address(std::net::IpAddr::V4(v4)) => {
                    Some((*v4, m.header.prefix_len))
                }
                _ => None,
            })
        })
        .collect())
}

/// The addresses (with prefix) of both families on link `idx`.
pub async fn addrs_any(h: &Handle, idx: u32) -> Result<Vec<(IpAddr, u8)>, LinkError> {
    let msgs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(idx)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing addresses of", &idx.to_string()))?;
    Ok(msgs
        .iter()
        .filter(|m| m.header.index == idx)
        .flat_map(|m| {
            m.attributes.iter().filter_map(move |a| match a {
                AddressAttribute::Address(ip) => Some((*ip, m.header.prefix_len)),
                _ => None,
            })
        })
        .collect())
}

/// Creates a veth pair: `host` in this namespace, `peer` directly inside the namespace `netns_fd`
/// under its final name, both with `mtu`. Fails with [`LinkError::Exists`] when `peer` is taken
/// there.
pub async fn create_veth(
    h: &Handle,
    host: &str,
    peer: &str,
    mtu: u32,
    netns: &crate::netns::Netns,
    peer_mac: Option<&[u8]>,
) -> Result<u32, LinkError> {
    use rtnetlink::packet_route::link::{InfoData, InfoVeth};
    let mut peer_b = LinkUnspec::new_with_name(peer)
        .mtu(mtu)
        .setns_by_fd(netns.file.as_raw_fd());
    if let Some(mac) = peer_mac {
        peer_b = peer_b.address(mac.to_vec());
    }
    let peer_msg = peer_b.build();
    let mut msg = LinkVeth::new(host, peer).mtu(mtu).build();
    for a in &mut msg.attributes {
        if let LinkAttribute::LinkInfo(infos) = a {
            for i in infos.iter_mut() {
                if let rtnetlink::packet_route::link::LinkInfo::Data(d) = i {
                    *d = InfoData::Veth(InfoVeth::Peer(peer_msg.clone()));
                }
            }
        }
    }
    match h.link().add(msg).execute().await {
        Ok(()) => {}
        Err(e) if errno(&e) == Some(EEXIST) => {
            return Err(LinkError::Exists {
                name: format!("{host} or {peer}"),
                netns: netns.path.display().to_string(),
            })
        }
        Err(e) => return Err(nl("creating veth", host)(e)),
    }
    Ok(get(h, host)
        .await?
        .ok_or_else(|| LinkError::NotFound { name: host.into() })?
        .header
        .index)
}

/// Enslaves `idx` to `bridge_idx`, tags it with `alias` (see [`host_veth_alias`]), sets hairpin
/// mode and brings it up. The tag goes in the same request as the port change: no extra round
/// trip, and a veth is never on the bridge untagged.
pub async fn attach_to_bridge(
    h: &Handle,
    name: &str,
    idx: u32,
    bridge_idx: u32,
    hairpin: bool,
    alias: &str,
) -> Result<(), LinkError> {
    let mut msg = LinkUnspec::new_with_index(idx)
        .controller(bridge_idx)
        .up()
        .build();
    msg.attributes.push(LinkAttribute::IfAlias(alias.into()));
    h.link()
        .change(msg)
        .execute()
        .await
        .map_err(nl("attaching to bridge", name))?;
    if hairpin {
        h.link()
            .change(LinkBridgePort::new(idx).hairpin(true).build())
            .execute()
            .await
            .map_err(nl("setting hairpin mode on", name))?;
    }
    Ok(())
}

/// Brings link `idx` up.
pub async fn up(h: &Handle, name: &str, idx: u32) -> Result<(), LinkError> {
    h.link()
        .change(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(nl("bringing up", name))
}

/// Deletes the link called `name`; `Ok(false)` when it did not exist.
pub async fn delete(h: &Handle, name: &str) -> Result<bool, LinkError> {
    let Some(m) = get(h, name).await? else {
        return Ok(false);
    };
    match h.link().del(m.header.index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(libc_enodev()) => Ok(false),
        Err(e) => Err(nl("deleting link", name)(e)),
    }
}

/// Adds a route to `dst` via `gw` (or on-link when `gw` is None) out of `idx`.
pub async fn add_route(
    h: &Handle,
    idx: u32,
    name: &str,
    dst: ipnet::Ipv4Net,
    gw: Option<Ipv4Addr>,
    onlink: bool,
) -> Result<(), LinkError> {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst.network(), dst.prefix_len())
        .output_interface(idx);
    match gw {
        Some(g) => b = b.gateway(g),
        None => b = b.scope(RouteScope::Link),
    }
    if onlink {
        b = b.onlink();
    }
    match h.route().add(b.build()).replace().execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
        Err(e) => Err(nl("adding route to", &format!("{dst} on {name}"))(e)),
    }
}

/// Adds a route of either family to `dst` via `gw` (or on-link) out of `idx`.
pub async fn add_route_any(
    h: &Handle,
    idx: u32,
    name: &str,
    dst: ipnet::IpNet,
    gw: Option<IpAddr>,
) -> Result<(), LinkError> {
    let msg = match (dst, gw) {
        (ipnet::IpNet::V4(d), None) => return add_route(h, idx, name, d, None, false).await,
        (ipnet::IpNet::V4(d), Some(IpAddr::V4(g))) => {
            return add_route(h, idx, name, d, Some(g), false).await
        }
        (ipnet::IpNet::V6(d), g) => {
            let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(d.network(), d.prefix_len())
                .output_interface(idx);
            match g {
                Some(IpAddr::V6(g)) => b = b.gateway(g),
                None => b = b.scope(RouteScope::Link),
                Some(g @ IpAddr::V4(_)) => {
                    return Err(LinkError::RouteFamily {
                        dst: dst.to_string(),
                        gw: g.to_string(),
                    })
                }
            }
            b.build()
        }
        (ipnet::IpNet::V4(_), Some(g @ IpAddr::V6(_))) => {
            return Err(LinkError::RouteFamily {
                dst: dst.to_string(),
                gw: g.to_string(),
            })
        }
    };
    match h.route().add(msg).replace().execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
        Err(e) => Err(nl("adding route to", &format!("{dst} on {name}"))(e)),
    }
}

/// Deletes the route to `dst` out of `idx` (absent is fine).
pub async fn del_route(h: &Handle, idx: u32, dst: ipnet::Ipv4Net) -> Result<(), LinkError> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst.network(), dst.prefix_len())
        .output_interface(idx)
        .build();
    match h.route().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(ESRCH) | Some(EADDRNOTAVAIL)) => Ok(()),
        Err(e) => Err(nl("deleting route to", &dst.to_string())(e)),
    }
}

/// The IPv4 routes of the main table.
async fn main_routes_v4(
    h: &Handle,
) -> Result<Vec<rtnetlink::packet_route::route::RouteMessage>, LinkError> {
    use rtnetlink::packet_route::route::RouteHeader;
    let msgs: Vec<_> = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing routes", "*"))?;
    Ok(msgs
        .into_iter()
        .filter(|m| m.header.table == RouteHeader::RT_TABLE_MAIN)
        .collect())
}

/// A route's output interface.
fn oif_of(m: &rtnetlink::packet_route::route::RouteMessage) -> Option<u32> {
    use rtnetlink::packet_route::route::RouteAttribute;
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

/// IPv4 routes whose output interface is `idx`: (destination, gateway).
pub async fn routes_via(
    h: &Handle,
    idx: u32,
) -> Result<Vec<(ipnet::Ipv4Net, Option<Ipv4Addr>)>, LinkError> {
    use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
    let mut out = Vec::new();
    for m in main_routes_v4(h).await? {
        if oif_of(&m) != Some(idx) {
            continue;
        }
        let dst = m
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(v)) => Some(*v),
                _ => None,
            })
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let gw = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(RouteAddress::Inet(v)) => Some(*v),
            _ => None,
        });
        if let Ok(net) = ipnet::Ipv4Net::new(dst, m.header.destination_prefix_length) {
            out.push((net, gw));
        }
    }
    Ok(out)
}

/// The output interface of the main table's IPv4 default route (the lowest metric when there
/// are several), if there is one.
pub async fn default_route_oif(h: &Handle) -> Result<Option<u32>, LinkError> {
    use rtnetlink::packet_route::route::RouteAttribute;
    Ok(main_routes_v4(h)
        .await?
        .iter()
        .filter(|m| m.header.destination_prefix_length == 0)
        .filter_map(|m| {
            let oif = oif_of(m)?;
            let metric = m
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Priority(p) => Some(*p),
                    _ => None,
                })
                .unwrap_or(0);
            Some((metric, oif))
        })
        .min()
        .map(|(_, oif)| oif))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_are_stable_valid_and_distinct() {
        let a = host_veth_name("abc", "eth0");
        assert_eq!(a, host_veth_name("abc", "eth0"));
        assert_ne!(a, host_veth_name("abc", "eth1"));
        assert_ne!(a, host_veth_name("abd", "eth0"));
        assert_eq!(a.len(), 15);
        assert!(is_host_veth_name(&a));
        assert!(!is_host_veth_name("veth0"));
        assert!(crate::env::validate_ifname(&a).is_ok());
    }

    #[test]
    fn aliases_name_the_network_and_fit_the_kernel_limit() {
        let a = host_veth_alias("podnet", "abc", "eth0");
        assert_eq!(a, "pea-cni/podnet/abc/eth0");
        assert!(a.starts_with(&alias_prefix("podnet")));
        assert!(!a.starts_with(&alias_prefix("pod")));
        let long = host_veth_alias(&"n".repeat(128), &"c".repeat(200), "eth0");
        assert_eq!(long.len(), 255);
        assert!(long.starts_with(&alias_prefix(&"n".repeat(128))));
    }

    #[test]
    fn macs_round_trip() {
        let m = parse_mac("0a:58:0A:f4:01:02").unwrap();
        assert_eq!(format_mac(&m), "0a:58:0a:f4:01:02");
        assert!(parse_mac("0a:58").is_none());
    }
}
