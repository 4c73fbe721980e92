//! DEL: release everything ADD made for one attachment. Idempotent, and complete when the pod's
//! namespace is already gone: the host veth has a name derived from the attachment (deleting it
//! deletes its peer), the lease is found by owner, and masquerade is per network, not per pod.
//! DEL does not need the subnet file either, so it still works after the node agent has gone.
//! Each step runs even when an earlier one failed (the spec asks DEL to release as much as it
//! can); the failures are reported together at the end. A network that never leased anything
//! here is left without a lease directory.

use super::CmdError;
use crate::{
    config::{validate_network_name, ConfigError, NetConf},
    env::CniEnv,
    ipam::Store,
    link, netns,
};

pub(super) async fn run(env: &CniEnv, conf: &NetConf) -> Result<(), CmdError> {
    validate_network_name(&conf.name).map_err(ConfigError::Invalid)?;
    let data_dir = conf.data_dir()?;
    let mut errors: Vec<CmdError> = Vec::new();
    let host = link::host_veth_name(&env.container_id, &env.ifname);
    match netns::netlink_here() {
        Ok(h) => match link::delete(&h, &host).await {
            Ok(removed) => tracing::debug!(removed, veth = %host, "host veth"),
            Err(e) => errors.push(e.into()),
        },
        Err(e) => errors.push(e.into()),
    }
    let store = Store::new(&data_dir, &conf.name);
    match store.lock_existing() {
        Ok(Some(lock)) => {
            match lock.release(&env.container_id, &env.ifname) {
                Ok(freed) => tracing::debug!(?freed, "released"),
                Err(e) => errors.push(e.into()),
            }
            if let Err(e) = super::masq_state::release_if_unused(&store, &lock, &conf.name, false) {
                errors.push(e);
            }
        }
        Ok(None) => tracing::debug!("no lease directory: nothing was leased"),
        Err(e) => errors.push(e.into()),
    }
    CmdError::all(errors)
}
