//! The VXLAN device and the per-peer programming flannel's vxlan backend does:
//!
//! ```text
//! neighbour  <peer subnet network addr> lladdr <peer VTEP MAC> dev flannel.1 permanent
//! fdb        <peer VTEP MAC> dev flannel.1 dst <peer public IP> self permanent
//! route      <peer subnet> via <peer subnet network addr> dev flannel.1 onlink
//! ```
//! Learning is off, so the kernel only ever uses these entries.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::{
    packet_route::{
        address::AddressAttribute,
        link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage},
        neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
        },
        AddressFamily,
    },
    Handle, LinkVxlan,
};

use super::{config::VxlanConfig, registry::Peer};
use crate::link::{self, LinkError};

#[derive(Debug, thiserror::Error)]
pub enum VxlanError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("{op} on {device}: {source}")]
    Netlink {
        op: String,
        device: String,
        #[source]
        source: rtnetlink::Error,
    },
}

fn nl(op: impl Into<String>, device: &str) -> impl FnOnce(rtnetlink::Error) -> VxlanError + '_ {
    let op = op.into();
    move |source| VxlanError::Netlink {
        op,
        device: device.to_string(),
        source,
    }
}

/// The device as set up.
#[derive(Debug, Clone)]
pub struct Device {
    pub name: String,
    pub index: u32,
    pub mac: String,
    pub mtu: u32,
}

/// Whether an existing link already is the device we want (so a restart keeps it).
fn matches(m: &LinkMessage, cfg: &VxlanConfig, uplink: u32, local: Ipv4Addr, mtu: u32) -> bool {
    let mut kind_ok = false;
    let mut data: &[InfoVxlan] = &[];
    for a in &m.attributes {
        if let LinkAttribute::LinkInfo(infos) = a {
            for i in infos {
                match i {
                    LinkInfo::Kind(InfoKind::Vxlan) => kind_ok = true,
                    LinkInfo::Data(InfoData::Vxlan(d)) => data = d,
                    _ => {}
                }
            }
        }
    }
    kind_ok
        && link::mtu_of(m) == Some(mtu)
        && data.contains(&InfoVxlan::Id(cfg.vni))
        && data.contains(&InfoVxlan::Port(cfg.port))
        && data.contains(&InfoVxlan::Local(local))
        && data.contains(&InfoVxlan::Link(uplink))
        && data.contains(&InfoVxlan::Learning(false))
}

/// Creates the VXLAN device (or keeps a matching one), with `addr/32` on it, up.
pub async fn ensure_device(
    h: &Handle,
    cfg: &VxlanConfig,
    uplink: u32,
    local: Ipv4Addr,
    mtu: u32,
    addr: Ipv4Addr,
) -> Result<Device, VxlanError> {
    let name = cfg.device.as_str();
    match link::get(h, name).await? {
        Some(m) if matches(&m, cfg, uplink, local, mtu) => {}
        existing => {
            if existing.is_some() {
                tracing::warn!(
                    device = name,
                    "existing device differs from the config; recreating it"
                );
                link::delete(h, name).await?;
            }
            // An explicit MAC: one the kernel picks at random is replaced by udev right
            // after creation on systemd hosts (MACAddressPolicy=persistent), after this agent
            // read and published it, and every peer then sends to a MAC nobody has (flannel
            // sets its VTEP MAC for the same reason). Derived from the node's address, it is
            // the same after a re-creation, so peers' FDB entries stay right.
            let msg = LinkVxlan::new(name, cfg.vni)
                .address(vtep_mac(local).to_vec())
                .dev(uplink)
                .port(cfg.port)
                .local(local)
                .learning(false)
                .mtu(mtu)
                .up()
                .build();
            h.link()
                .add(msg)
                .execute()
                .await
                .map_err(nl("creating vxlan device", name))?;
        }
    }
    let m = link::get(h, name)
        .await?
        .ok_or_else(|| LinkError::NotFound { name: name.into() })?;
    link::ensure_addr(h, m.header.index, name, addr, 32).await?;
    // A node whose subnet changed between runs keeps exactly one address on the device.
    let stale: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(m.header.index)
        .execute()
        .try_collect::<Vec<_>>()
        .await
        .map_err(nl("listing addresses", name))?
        .into_iter()
        .filter(|a| a.header.index == m.header.index)
        .filter(|a| {
            a.attributes
                .iter()
                .any(|at| matches!(at, AddressAttribute::Address(IpAddr::V4(v4)) if *v4 != addr))
        })
        .collect();
    for a in stale {
        h.address()
            .del(a)
            .execute()
            .await
            .map_err(nl("removing a stale address", name))?;
    }
    link::up(h, name, m.header.index).await?;
    Ok(Device {
        name: name.into(),
        index: m.header.index,
        mac: link::mac_of(&m),
        mtu,
    })
}

/// The VTEP MAC of the node at `local`: locally administered, unicast, unique per node address.
pub fn vtep_mac(local: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = local.octets();
    [0x0e, 0x70, a, b, c, d]
}

/// Programs neighbour, FDB entry and route for `peer` (replace: idempotent, no disruption).
pub async fn program_peer(h: &Handle, dev: &Device, peer: &Peer) -> Result<(), VxlanError> {
    let gw = peer.subnet.network();
    h.neighbours()
        .add(dev.index, IpAddr::V4(gw))
        .link_layer_address(&peer.vtep_mac)
        .replace()
        .execute()
        .await
        .map_err(nl(
            format!("adding neighbour {gw} of node {}", peer.name),
            &dev.name,
        ))?;
    h.neighbours()
        .add_bridge(dev.index, &peer.vtep_mac)
        .destination(IpAddr::V4(peer.public_ip))
        .flags(NeighbourFlags::Own)
        .replace()
        .execute()
        .await
        .map_err(nl(
            format!("adding fdb entry of node {}", peer.name),
            &dev.name,
        ))?;
    link::add_route(h, dev.index, &dev.name, peer.subnet, Some(gw), true).await?;
    Ok(())
}

/// Routes to remote subnets currently programmed on the device: (subnet, gateway).
pub async fn programmed(
    h: &Handle,
    dev: &Device,
    network: Ipv4Net,
) -> Result<Vec<(Ipv4Net, Ipv4Addr)>, VxlanError> {
    Ok(link::routes_via(h, dev.index)
        .await?
        .into_iter()
        .filter_map(|(dst, gw)| Some((dst, gw?)))
        .filter(|(dst, _)| network.contains(dst))
        .collect())
}

async fn neighbours(
    h: &Handle,
    dev: &Device,
    family: AddressFamily,
) -> Result<Vec<NeighbourMessage>, VxlanError> {
    let all: Vec<NeighbourMessage> = h
        .neighbours()
        .get()
        .set_address_family(family)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing neighbours", &dev.name))?;
    Ok(all
        .into_iter()
        .filter(|n| n.header.ifindex == dev.index)
        .collect())
}

fn lladdr(n: &NeighbourMessage) -> Option<&[u8]> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(m) => Some(m.as_slice()),
        _ => None,
    })
}

/// Withdraws a remote subnet's route; its neighbour and FDB entries go with the next
/// [`sweep_stale`].
pub async fn withdraw(h: &Handle, dev: &Device, subnet: Ipv4Net) -> Result<(), VxlanError> {
    link::del_route(h, dev.index, subnet).await?;
    Ok(())
}

fn permanent(n: &NeighbourMessage) -> bool {
    n.header.state == NeighbourState::Permanent
}

/// The IPv4 destination of a neighbour entry, or of an FDB entry (whose NDA_DST the parser
/// leaves as raw bytes, the message's family being AF_BRIDGE).
fn destination(n: &NeighbourMessage) -> Option<Ipv4Addr> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
            <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
        }
        _ => None,
    })
}

/// Makes the device's permanent neighbour and FDB entries exactly those of `peers`: a neighbour
/// entry per peer gateway with the peer's VTEP MAC, an FDB entry per VTEP MAC pointing at the
/// peer's public IP. Anything else — a peer that left, a VTEP MAC or public IP that changed — is
/// deleted. Returns the entries that could not be deleted (the others are still swept); `Err`
/// only when the entries cannot even be listed.
pub async fn sweep_stale(
    h: &Handle,
    dev: &Device,
    peers: &[&Peer],
) -> Result<Vec<String>, VxlanError> {
    let mut failed = Vec::new();
    for n in neighbours(h, dev, AddressFamily::Inet).await? {
        let (Some(dst), Some(mac)) = (destination(&n), lladdr(&n)) else {
            continue;
        };
        let wanted = peers
            .iter()
            .any(|p| p.subnet.network() == dst && p.vtep_mac == mac);
        if permanent(&n) && !wanted {
            match h.neighbours().del(n).execute().await {
                Ok(()) => tracing::info!(%dst, "removed a stale neighbour entry"),
                Err(e) => failed.push(format!("deleting neighbour {dst}: {e}")),
            }
        }
    }
    for n in neighbours(h, dev, AddressFamily::Bridge).await? {
        let Some(mac) = lladdr(&n).map(<[u8]>::to_vec) else {
            continue;
        };
        // Only unicast entries are per-peer (an all-zeros or multicast entry would be a
        // flooding default someone else set up).
        if mac.len() != 6 || mac[0] & 1 == 1 || mac.iter().all(|b| *b == 0) {
            continue;
        }
        let dst = destination(&n);
        let wanted = peers
            .iter()
            .any(|p| p.vtep_mac == mac && dst == Some(p.public_ip));
        if permanent(&n) && !wanted {
            let shown = link::format_mac(&mac);
            match h.neighbours().del(n).execute().await {
                Ok(()) => tracing::info!(mac = %shown, ?dst, "removed a stale fdb entry"),
                Err(e) => failed.push(format!("deleting fdb entry {shown}: {e}")),
            }
        }
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtep_macs_are_local_unicast_and_per_address() {
        let m = vtep_mac(Ipv4Addr::new(10, 77, 0, 12));
        assert_eq!(m, [0x0e, 0x70, 10, 77, 0, 12]);
        assert_eq!(m[0] & 0x02, 0x02, "locally administered");
        assert_eq!(m[0] & 0x01, 0, "unicast");
        assert_ne!(m, vtep_mac(Ipv4Addr::new(10, 77, 0, 11)));
    }

    #[test]
    fn fdb_destinations_are_read_from_raw_bytes_too() {
        let mut n = NeighbourMessage::default();
        n.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Other(
                vec![192, 168, 61, 3],
            )));
        assert_eq!(destination(&n), Some(Ipv4Addr::new(192, 168, 61, 3)));
        let mut n = NeighbourMessage::default();
        n.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                Ipv4Addr::new(10, 244, 3, 0),
            )));
        assert_eq!(destination(&n), Some(Ipv4Addr::new(10, 244, 3, 0)));
    }
}
