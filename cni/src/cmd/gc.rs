//! GC (spec 1.1): release every lease, and the host veth, of attachments not listed in
//! `cni.dev/valid-attachments` (or `cni.dev/attachments`, the draft name libcni also sends);
//! also remove host veths on the bridge that this network made (tagged
//! `pea-cni/<network>/…` in their interface alias) but that own no lease any more (debris of a
//! crash between veth creation and rollback). GC is per network, as the spec says: veths of
//! other networks sharing the bridge, and untagged ones, are left alone.
//! Every step runs even when an earlier one failed; the failures are reported together.

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
    let data_dir = conf.data_dir()?;
    let h = netns::netlink_here()?;
    let store = Store::new(&data_dir, &conf.name);
    let mut errors: Vec<CmdError> = Vec::new();
    let lock = match store.lock_existing() {
        Ok(l) => l,
        Err(e) => {
            errors.push(e.into());
            None
        }
    };
    let mut owned_veths = HashSet::new();
    let leases = match lock.as_ref().map(|l| l.leases()).transpose() {
        Ok(l) => l.unwrap_or_default(),
        Err(e) => {
            errors.push(e.into());
            Vec::new()
        }
    };
    for lease in leases {
        let veth = link::host_veth_name(&lease.container_id, &lease.ifname);
        // A lease that records no interface (older host-local) belongs to every interface of
        // its container.
        if valid
            .iter()
            .any(|a| lease.owned_by(&a.container_id, &a.ifname))
        {
            owned_veths.insert(veth);
            continue;
        }
        if let Err(e) = link::delete(&h, &veth).await {
            errors.push(e.into());
        }
        if let (Some(ip), Some(lock)) = (lease.ip, lock.as_ref()) {
            match lock.release_ip(ip) {
                Ok(()) => tracing::info!(%ip, container = %lease.container_id, "gc released lease"),
                Err(e) => errors.push(e.into()),
            }
        }
    }
    for a in valid {
        owned_veths.insert(link::host_veth_name(&a.container_id, &a.ifname));
    }
    if let Err(e) = sweep_orphans(&h, conf, &owned_veths).await {
        errors.push(e);
    }
    if let Some(lock) = &lock {
        if let Err(e) = super::masq_state::release_if_unused(&store, lock, &conf.name, true) {
            errors.push(e);
        }
    }
    CmdError::all(errors)
}

/// Deletes the veths on the bridge tagged with this network that no valid attachment owns.
async fn sweep_orphans(
    h: &rtnetlink::Handle,
    conf: &NetConf,
    owned: &HashSet<String>,
) -> Result<(), CmdError> {
    let Some(bridge) = link::get(h, &conf.bridge).await? else {
        return Ok(());
    };
    let prefix = link::alias_prefix(&conf.name);
    let mut errors: Vec<CmdError> = Vec::new();
    for l in link::list(h).await? {
        let Some(name) = link::name_of(&l) else {
            continue;
        };
        let ours = link::alias_of(&l).is_some_and(|a| a.starts_with(&prefix));
        if link::controller_of(&l) == Some(bridge.header.index)
            && link::is_host_veth_name(name)
            && ours
            && !owned.contains(name)
        {
            let name = name.to_string();
            match link::delete(h, &name).await {
                Ok(_) => tracing::info!(veth = %name, "gc removed orphan veth"),
                Err(e) => errors.push(e.into()),
            }
        }
    }
    CmdError::all(errors)
}
