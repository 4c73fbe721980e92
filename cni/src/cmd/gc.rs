//! GC (spec 1.1): release every lease, and the host veth, of attachments not listed in
//! `cni.dev/valid-attachments` (or `cni.dev/attachments`, the draft name libcni also sends);
//! also remove host veths on the bridge that pea-cni made but that
//! own no lease any more (debris of a crash between veth creation and rollback).

use std::collections::HashSet;

use super::CmdError;
use crate::{
    config::{validate_network_name, ConfigError, NetConf},
    ipam::Store,
    link, netns,
};

pub(super) async fn run(conf: &NetConf) -> Result<(), CmdError> {
    validate_network_name(&conf.name).map_err(ConfigError::Invalid)?;
    // An absent list is refused rather than read as "nothing is valid" (that would release
    // every pod's address); `null` is an empty list (a Go runtime's nil slice).
    let valid = &conf.gc_valid_attachments().ok_or_else(|| {
        CmdError::Usage("GC needs \"cni.dev/valid-attachments\" in the config".into())
    })?;
    let keep: HashSet<(&str, &str)> = valid
        .iter()
        .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
        .collect();
    let data_dir = conf.data_dir()?;
    let h = netns::netlink_here()?;
    let store = Store::new(&data_dir, &conf.name);
    let lock = store.lock()?;
    let mut owned_veths = HashSet::new();
    for lease in lock.leases()? {
        let veth = link::host_veth_name(&lease.container_id, &lease.ifname);
        if keep.contains(&(lease.container_id.as_str(), lease.ifname.as_str())) {
            owned_veths.insert(veth);
            continue;
        }
        link::delete(&h, &veth).await?;
        if let Some(ip) = lease.ip {
            lock.release_ip(ip)?;
            tracing::info!(%ip, container = %lease.container_id, "gc released lease");
        }
    }
    for a in valid {
        owned_veths.insert(link::host_veth_name(&a.container_id, &a.ifname));
    }
    if let Some(bridge) = link::get(&h, &conf.bridge).await? {
        for l in link::list(&h).await? {
            let Some(name) = link::name_of(&l) else {
                continue;
            };
            if link::controller_of(&l) == Some(bridge.header.index)
                && link::is_host_veth_name(name)
                && !owned_veths.contains(name)
            {
                let name = name.to_string();
                link::delete(&h, &name).await?;
                tracing::info!(veth = %name, "gc removed orphan veth");
            }
        }
    }
    super::masq_state::release_if_unused(&store, &lock, &conf.name, true)
}
