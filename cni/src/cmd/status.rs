//! STATUS (spec 1.1): whether ADD can succeed now: the config resolves (the node agent has
//! written the subnet file, if one is used), the lease directory is usable and has a free
//! address, and `nft` is there when masquerading.

use super::CmdError;
use crate::{
    config::{ConfigError, NetConf},
    ipam::{in_range, range_size, Store},
};

pub(super) fn run(conf: &NetConf) -> Result<(), CmdError> {
    // Not ready (50) is a missing subnet file (the node agent has not written it yet); a config
    // that can never work keeps its own code.
    let r = conf.resolve().map_err(|e| match e {
        ConfigError::SubnetFile { .. } => CmdError::Unavailable(format!("not ready: {e}")),
        e => CmdError::Config(e),
    })?;
    let store = Store::new(&r.data_dir, &r.name);
    let unusable =
        |e: crate::ipam::IpamError| CmdError::Unavailable(format!("lease store unusable: {e}"));
    // A network that never leased anything has no directory yet: STATUS does not make one.
    let lock = store.lock_existing().map_err(unusable)?;
    // ADD needs a free address in every range set (leases of any set count against each set's
    // ranges only when they fall inside them).
    let leased: Vec<std::net::IpAddr> = match &lock {
        Some(lock) => lock.taken().map_err(unusable)?,
        None => Vec::new(),
    };
    for set in &r.range_sets {
        let free = set.iter().any(|range| {
            let used = leased
                .iter()
                .filter(|ip| in_range(**ip, range.start, range.end))
                .count() as u128;
            let gw = in_range(range.gateway, range.start, range.end) as u128;
            used + gw < range_size(range.start, range.end)
        });
        if !free {
            let spans: Vec<String> = set
                .iter()
                .map(|x| format!("{}-{}", x.start, x.end))
                .collect();
            return Err(CmdError::Unavailable(format!(
                "no free address in {} ({} leased)",
                spans.join(", "),
                leased.len()
            )));
        }
    }
    if r.ip_masq && !crate::masq::nft_available() {
        return Err(CmdError::Unavailable(
            "nft is not installed (needed for ipMasq)".into(),
        ));
    }
    Ok(())
}
