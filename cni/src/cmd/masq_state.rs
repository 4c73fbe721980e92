//! The per-network masquerade rule's lifetime, tied to the network's leases: installed with the
//! first lease, removed with the last. A marker file in the lease directory records that it is
//! installed, so steady-state ADDs and DELs do not spawn `nft`.

use super::CmdError;
use crate::ipam::IpamError;

/// Marker file in a network's lease directory: present while its masquerade rule is installed.
pub(crate) const MASQ_MARKER: &str = "masq-installed";

/// Installs the network's masquerade rule if the marker says it is not there yet.
/// Call with the network's lease lock held.
pub(crate) fn ensure(
    store: &crate::ipam::Store,
    r: &crate::config::Resolved,
) -> Result<(), CmdError> {
    let marker = store.dir().join(MASQ_MARKER);
    if marker.exists() {
        return Ok(());
    }
    let (v4, v6) = (r.subnets_v4(), r.subnets_v6());
    let mut families = Vec::new();
    if let Some(c) = r.cluster_cidr.filter(|_| !v4.is_empty()) {
        families.push(crate::masq::Family::V4(&v4, c));
    }
    if let Some(c) = r.cluster_cidr6.filter(|_| !v6.is_empty()) {
        families.push(crate::masq::Family::V6(&v6, c));
    }
    crate::masq::ensure(&r.name, &families)?;
    crate::ipam::atomic_write(&marker, b"1").map_err(|source| IpamError::Io {
        path: marker.clone(),
        source,
    })?;
    Ok(())
}

/// Removes the network's masquerade rule once it has no leases left.
/// Call with the network's lease lock held. Without `even_unmarked` the marker decides (DEL's
/// cheap path); with it the table is removed whatever the marker says, which GC uses to clear a
/// table left by an ADD killed between installing it and writing the marker.
pub(crate) fn release_if_unused(
    store: &crate::ipam::Store,
    lock: &crate::ipam::Locked<'_>,
    network: &str,
    even_unmarked: bool,
) -> Result<(), CmdError> {
    let marker = store.dir().join(MASQ_MARKER);
    let marked = marker.exists();
    if (!marked && !even_unmarked) || !lock.is_empty()? {
        return Ok(());
    }
    // Unmarked and no nft: nothing can have been installed (networks without ipMasq may run on
    // nodes without nftables).
    if !marked && !crate::masq::nft_available() {
        return Ok(());
    }
    crate::masq::remove(network)?;
    if marked {
        std::fs::remove_file(&marker).map_err(|source| IpamError::Io {
            path: marker.clone(),
            source,
        })?;
    }
    Ok(())
}
