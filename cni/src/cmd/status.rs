//! STATUS (spec 1.1): whether ADD can succeed now: the config resolves (the node agent has
//! written the subnet file, if one is used), the lease directory is usable and has a free
//! address, and `nft` is there when masquerading.

use super::CmdError;
use crate::{config::NetConf, ipam::Store};

pub(super) fn run(conf: &NetConf) -> Result<(), CmdError> {
    let r = conf
        .resolve()
        .map_err(|e| CmdError::Unavailable(format!("not ready: {e}")))?;
    let store = Store::new(&r.data_dir, &r.name);
    let lock = store
        .lock()
        .map_err(|e| CmdError::Unavailable(format!("lease store unusable: {e}")))?;
    let used = lock
        .leases()
        .map_err(|e| CmdError::Unavailable(format!("lease store unusable: {e}")))?
        .len();
    let size = (u32::from(r.range_end) - u32::from(r.range_start) + 1) as usize;
    let gw_in_range = (r.range_start..=r.range_end).contains(&r.gateway) as usize;
    if used + gw_in_range >= size {
        return Err(CmdError::Unavailable(format!(
            "no free address in {}-{} ({used} leased)",
            r.range_start, r.range_end
        )));
    }
    if r.ip_masq && !crate::masq::nft_available() {
        return Err(CmdError::Unavailable(
            "nft is not installed (needed for ipMasq)".into(),
        ));
    }
    Ok(())
}
