//! Node-level reclaim before any pod is evicted (kubelet's buildSignalToNodeReclaimFuncs):
//! for disk signals, dead containers and unused images are removed through the kubelet's own
//! container and image GC. With a dedicated image filesystem, nodefs has nothing to reclaim
//! this way (its pods' logs and volumes go with the pods); imagefs does.

use std::sync::Arc;

use super::Signal;
use crate::gc::{self, ImageGcPolicy, ImageRecords};
use crate::pods::Shared;

/// Whether `signal` has node-level reclaim functions.
pub fn has_reclaim(signal: Signal, dedicated_imagefs: bool) -> bool {
    match signal {
        Signal::MemoryAvailable | Signal::AllocatableMemoryAvailable | Signal::PidAvailable => {
            false
        }
        Signal::NodefsAvailable | Signal::NodefsInodesFree => !dedicated_imagefs,
        // containerfs reclaims as imagefs: dead containers, then unused images.
        Signal::ImagefsAvailable
        | Signal::ImagefsInodesFree
        | Signal::ContainerfsAvailable
        | Signal::ContainerfsInodesFree => true,
    }
}

/// kubelet's DeleteAllUnusedContainers then DeleteUnusedImages. Errors are logged and
/// reported as node events; eviction goes on whatever they freed.
pub async fn run(s: &Shared, records: &Arc<tokio::sync::Mutex<ImageRecords>>) {
    match gc::delete_all_unused_containers(s).await {
        Ok(n) => tracing::info!(removed = n, "eviction manager: removed dead containers"),
        Err(e) => tracing::warn!(error = %e, "eviction manager: removing dead containers"),
    }
    let policy = ImageGcPolicy::of(&s.cfg);
    let mut records = records.lock().await;
    match gc::collect_images(s, &policy, &mut records, Some(u64::MAX)).await {
        Ok(Some((_, freed))) => {
            tracing::info!(freed, "eviction manager: removed unused images")
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "eviction manager: removing unused images");
            s.events.node(&s.cfg.node_name, true, "ImageGCFailed", e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reclaim_follows_kubelets_filesystem_split() {
        assert!(has_reclaim(Signal::NodefsAvailable, false));
        assert!(!has_reclaim(Signal::NodefsAvailable, true));
        assert!(has_reclaim(Signal::ImagefsInodesFree, true));
        assert!(!has_reclaim(Signal::MemoryAvailable, false));
        assert!(!has_reclaim(Signal::PidAvailable, true));
    }
}
