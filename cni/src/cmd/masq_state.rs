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
    let (batch, families) = plan(r);
    let digest = crate::masq::digest(&batch);
    let marker = store.dir().join(MASQ_MARKER);
    let io = |source| IpamError::Io {
        path: marker.clone(),
        source,
    };
    let recorded = std::fs::read(&marker).ok();
    if recorded.as_deref() == Some(digest.as_bytes()) {
        match missing_family(&r.name, &families) {
            Ok(None) => return Ok(()),
            Ok(Some(_)) => {
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
    crate::masq::install(&r.name, &batch, &families)?;
    crate::ipam::atomic_write(&marker, digest.as_bytes()).map_err(io)?;
    Ok(())
}

/// The batch that installs the network's masquerade rule for this config, and the families it
/// covers (`true`: IPv6).
fn plan(r: &crate::config::Resolved) -> (serde_json::Value, Vec<bool>) {
    let (v4, v6) = (r.subnets_v4(), r.subnets_v6());
    let mut families = Vec::new();
    if let Some(c) = r.cluster_cidr.filter(|_| !v4.is_empty()) {
        families.push(crate::masq::Family::V4(&v4, c));
    }
    if let Some(c) = r.cluster_cidr6.filter(|_| !v6.is_empty()) {
        families.push(crate::masq::Family::V6(&v6, c));
    }
    (
        crate::masq::batch(&r.name, &families),
        crate::masq::families_of(&families),
    )
}

/// The first family (`"ip"`, `"ip6"`) whose table is missing, asked from the kernel.
fn missing_family(
    network: &str,
    families: &[bool],
) -> Result<Option<&'static str>, crate::masq::MasqError> {
    for v6 in families {
        if !crate::masq::table_exists(network, *v6)? {
            return Ok(Some(if *v6 { "ip6" } else { "ip" }));
        }
    }
    Ok(None)
}

/// CHECK's question: `None` when the installed rule is the one this config makes (the marker's
/// digest) and its tables exist, else what is wrong. No `nft` run.
pub(crate) fn verify(
    store: &crate::ipam::Store,
    r: &crate::config::Resolved,
) -> Result<Option<String>, CmdError> {
    let (batch, families) = plan(r);
    if let Some(family) = missing_family(&r.name, &families)? {
        return Ok(Some(format!(
            "{family} masquerade rule of network {} is missing",
            r.name
        )));
    }
    let recorded = std::fs::read(store.dir().join(MASQ_MARKER)).ok();
    if recorded.as_deref() != Some(crate::masq::digest(&batch).as_bytes()) {
        return Ok(Some(format!(
            "masquerade rule of network {} was not installed from this config",
            r.name
        )));
    }
    Ok(None)
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
