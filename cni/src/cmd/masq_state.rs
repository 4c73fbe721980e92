//! The per-network masquerade rule's lifetime, tied to the network's leases: installed with the
//! first lease, removed with the last. A marker file in the lease directory records that it is
//! (being) installed and the digest of the rule batch it was installed from, so steady-state ADDs
//! and DELs do not spawn `nft`:
//!
//! ```text
//!   no marker ──ADD──▶ marker "installing" ──nft ok──▶ marker <digest>
//!        ▲                    │ (killed here: DEL/GC still see a marker and remove the table)
//!        └──── last lease goes (DEL, GC): table and marker removed
//! ```
//! Every ADD recomputes the digest from its config and asks the kernel (one netlink request, see
//! [`crate::masq::table_exists`]) whether the tables are there; a changed subnet or cluster
//! CIDR, or a table someone flushed away (`nft flush ruleset`), is reinstalled at once.

use super::CmdError;
use crate::ipam::IpamError;

/// Marker file in a network's lease directory: present while its masquerade rule is installed.
pub(crate) const MASQ_MARKER: &str = "masq-installed";
/// What the marker holds while the batch is being applied (never a digest).
const INSTALLING: &[u8] = b"installing";

/// Installs the network's masquerade rule unless the marker holds this config's digest and the
/// tables exist. Call with the network's lease lock held.
pub(crate) fn ensure(
    store: &crate::ipam::Store,
    r: &crate::config::Resolved,
) -> Result<(), CmdError> {
    let (v4, v6) = (r.subnets_v4(), r.subnets_v6());
    let mut families = Vec::new();
    if let Some(c) = r.cluster_cidr.filter(|_| !v4.is_empty()) {
        families.push(crate::masq::Family::V4(&v4, c));
    }
    if let Some(c) = r.cluster_cidr6.filter(|_| !v6.is_empty()) {
        families.push(crate::masq::Family::V6(&v6, c));
    }
    let batch = crate::masq::batch(&r.name, &families);
    let digest = crate::masq::digest(&batch);
    let marker = store.dir().join(MASQ_MARKER);
    let io = |source| IpamError::Io {
        path: marker.clone(),
        source,
    };
    let recorded = std::fs::read(&marker).ok();
    if recorded.as_deref() == Some(digest.as_bytes()) {
        let present = crate::masq::families_of(&families).into_iter().try_fold(
            true,
            |all, v6| -> Result<bool, crate::masq::MasqError> {
                Ok(all && crate::masq::table_exists(&r.name, v6)?)
            },
        );
        match present {
            Ok(true) => return Ok(()),
            Ok(false) => {
                tracing::warn!(network = %r.name, "masquerade table is gone; reinstalling it")
            }
            Err(e) => tracing::debug!("cannot ask for the masquerade table ({e}); reinstalling it"),
        }
    } else if recorded.is_some() {
        tracing::info!(network = %r.name, "masquerade rule changed (or an install was cut short); reinstalling it");
    }
    // The marker goes first: an ADD killed after nft ran but before the digest was written
    // leaves a marked table, which DEL removes with the last lease.
    crate::ipam::atomic_write(&marker, INSTALLING).map_err(io)?;
    crate::masq::install(&batch)?;
    crate::ipam::atomic_write(&marker, digest.as_bytes()).map_err(io)?;
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
