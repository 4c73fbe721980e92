//! CHECK: verify the attachment is still as ADD left it (lease, pod interface and address, host
//! veth on the bridge, masquerade rule: its tables exist and were installed from this config).

use std::net::IpAddr;

use super::CmdError;
use crate::{
    config::NetConf,
    env::CniEnv,
    ipam::Store,
    link,
    netns::{self, Netns},
    spec::AddResult,
};

pub(super) async fn run(env: &CniEnv, conf: &NetConf) -> Result<(), CmdError> {
    let r = conf.resolve()?;
    let prev: AddResult = serde_json::from_value(
        conf.prev_result
            .clone()
            .ok_or_else(|| CmdError::PrevResult("CHECK needs prevResult".into()))?,
    )
    .map_err(|e| CmdError::PrevResult(e.to_string()))?;
    let fail = |m: String| CmdError::Check(m);
    let want_if = prev
        .interfaces
        .iter()
        .position(|i| i.name == env.ifname && !i.sandbox.is_empty())
        .ok_or_else(|| {
            fail(format!(
                "prevResult has no interface {} in a sandbox",
                env.ifname
            ))
        })?;
    // Our addresses: those on the interface that fall in one of our ranges (a chained plugin
    // may add others).
    let mut want_ips: Vec<IpAddr> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(want_if))
        .filter_map(|ip| ip.address.split('/').next()?.parse().ok())
        .filter(|ip| {
            r.ranges()
                .any(|x| crate::ipam::in_range(*ip, x.start, x.end))
        })
        .collect();
    want_ips.sort();
    if want_ips.len() != r.range_sets.len() {
        return Err(fail(format!(
            "prevResult has {} address(es) of this network for {}, expected one per range set ({})",
            want_ips.len(),
            env.ifname,
            r.range_sets.len()
        )));
    }

    let store = Store::new(&r.data_dir, &r.name);
    let leased = store.lock()?.find(&env.container_id, &env.ifname)?;
    if leased != want_ips {
        return Err(fail(format!(
            "leases of {}/{} are {leased:?}, prevResult says {want_ips:?}",
            env.container_id, env.ifname
        )));
    }

    let h = netns::netlink_here()?;
    let bridge = link::get(&h, &r.bridge)
        .await?
        .ok_or_else(|| fail(format!("bridge {} is missing", r.bridge)))?;
    let host = link::host_veth_name(&env.container_id, &env.ifname);
    let host_link = link::get(&h, &host)
        .await?
        .ok_or_else(|| fail(format!("host veth {host} is missing")))?;
    if link::controller_of(&host_link) != Some(bridge.header.index) {
        return Err(fail(format!(
            "host veth {host} is not attached to {}",
            r.bridge
        )));
    }

    let pod_ns = Netns::open(std::path::Path::new(&env.netns))?;
    let ph = pod_ns.netlink()?;
    let pod_link = link::get(&ph, &env.ifname)
        .await?
        .ok_or_else(|| fail(format!("{} is missing in {}", env.ifname, env.netns)))?;
    let want_mac = &prev.interfaces[want_if].mac;
    if !want_mac.is_empty() && link::mac_of(&pod_link) != *want_mac {
        return Err(fail(format!(
            "{} has MAC {}, prevResult says {want_mac}",
            env.ifname,
            link::mac_of(&pod_link)
        )));
    }
    let addrs = link::addrs_any(&ph, pod_link.header.index).await?;
    for want_ip in &want_ips {
        if !addrs.iter().any(|(a, _)| a == want_ip) {
            return Err(fail(format!("{} does not have {want_ip}", env.ifname)));
        }
    }
    if r.ip_masq {
        if let Some(why) = super::masq_state::verify(&store, &r)? {
            return Err(fail(why));
        }
    }
    Ok(())
}
