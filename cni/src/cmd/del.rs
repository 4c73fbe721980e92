//! DEL: release everything ADD made for one attachment. Idempotent, and complete when the pod's
//! namespace is already gone: the host veth has a name derived from the attachment (deleting it
//! deletes its peer), the lease is found by owner, and masquerade is per network, not per pod.
//! DEL does not need the subnet file either, so it still works after the node agent has gone.

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
    let h = netns::netlink_here()?;
    let host = link::host_veth_name(&env.container_id, &env.ifname);
    let removed = link::delete(&h, &host).await?;
    let store = Store::new(&data_dir, &conf.name);
    let lock = store.lock()?;
    let freed = lock.release(&env.container_id, &env.ifname)?;
    super::masq_state::release_if_unused(&store, &lock, &conf.name, false)?;
    tracing::debug!(removed, ?freed, "deleted");
    Ok(())
}
