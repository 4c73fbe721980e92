//! Keeps the node graph current, as kube's graph populator: pods and persistent volumes are
//! listed at start and followed through a store watch (re-listed when it ends); a pod or volume this server writes is re-read into the
//! graph before the reply goes out, so binding a pod authorizes its node's next request.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use pea_control_store::{EventKind, Revision, Store, StoreError};
use tokio::sync::watch;

use super::graph::{Graph, POD_PREFIX, PV_PREFIX};
use crate::api::Api;

/// The graph, shared by the authorizer (reads) and its populator (writes).
#[derive(Debug, Default)]
pub struct NodeGraph {
    graph: RwLock<Graph>,
}

impl NodeGraph {
    pub fn read(&self) -> RwLockReadGuard<'_, Graph> {
        self.graph.read().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, key: &str, rev: Revision, obj: Option<&serde_json::Value>) {
        let mut g = self.graph.write().unwrap_or_else(|p| p.into_inner());
        g.apply(key, rev, obj);
        g.forget_before(rev);
    }

    /// Whether `key` is a pod's or a persistent volume's (what the graph follows).
    pub fn follows(key: &str) -> bool {
        key.starts_with(POD_PREFIX) || key.starts_with(PV_PREFIX)
    }

    /// Re-reads one pod or volume this server just wrote.
    pub async fn sync_key(&self, store: &dyn Store, key: &str) {
        match store.get(key).await {
            Ok((Some(kv), _)) => match crate::objects::decode(&kv) {
                Ok(obj) => self.apply(key, kv.mod_revision, Some(&obj)),
                Err(e) => tracing::warn!(%key, error = %e, "node graph: object is not JSON"),
            },
            Ok((None, rev)) => self.apply(key, rev, None),
            Err(e) => tracing::warn!(%key, error = %e, "node graph: re-reading failed"),
        }
    }

    /// Lists everything under `prefix` and reconciles the graph with it; returns the list's
    /// revision.
    pub async fn resync(&self, store: &dyn Store, prefix: &str) -> Result<Revision, StoreError> {
        let list = store.list(prefix, &Default::default()).await?;
        let rev = list.revision;
        let mut g = self.graph.write().unwrap_or_else(|p| p.into_inner());
        let listed: std::collections::HashSet<&str> =
            list.items.iter().map(|kv| kv.key.as_str()).collect();
        for key in g.keys(prefix) {
            if !listed.contains(key.as_str()) {
                g.apply(&key, rev, None);
            }
        }
        for kv in &list.items {
            match crate::objects::decode(kv) {
                Ok(obj) => {
                    g.apply(&kv.key, kv.mod_revision, Some(&obj));
                }
                Err(e) => {
                    tracing::warn!(key = %kv.key, error = %e, "node graph: object is not JSON")
                }
            }
        }
        g.forget_before(rev);
        Ok(rev)
    }

    /// Lists pods and volumes, then follows both until `stop`.
    pub async fn start(api: &Arc<Api>, stop: watch::Receiver<bool>) -> Result<(), StoreError> {
        for prefix in [POD_PREFIX, PV_PREFIX] {
            let rev = api.authz.nodes.resync(api.store.as_ref(), prefix).await?;
            tokio::spawn(follow(api.clone(), prefix, rev, stop.clone()));
        }
        Ok(())
    }
}

/// Follows `prefix` with a store watch of its own (not the shared watch cache: starting that
/// cache for pods at boot would change which old resourceVersions clients' watches can resume
/// from); re-lists when the watch fails or ends (compaction).
async fn follow(
    api: Arc<Api>,
    prefix: &'static str,
    mut after: Revision,
    mut stop: watch::Receiver<bool>,
) {
    let graph = &api.authz.nodes;
    loop {
        match api.store.watch(prefix, after).await {
            Ok(mut w) => loop {
                let ev = tokio::select! {
                    _ = stop.changed() => return,
                    ev = w.next() => ev,
                };
                match ev {
                    Some(Ok(ev)) => {
                        let rev = ev.revision();
                        let obj = match ev.kind {
                            EventKind::Put => match crate::objects::decode(&ev.kv) {
                                Ok(o) => Some(o),
                                Err(e) => {
                                    tracing::warn!(key = %ev.kv.key, error = %e, "node graph: object is not JSON");
                                    continue;
                                }
                            },
                            _ => None,
                        };
                        graph.apply(&ev.kv.key, rev, obj.as_ref());
                        after = rev;
                    }
                    Some(Err(e)) => {
                        tracing::info!(%prefix, error = %e, "node graph watch ended; re-listing");
                        break;
                    }
                    None => break,
                }
            },
            Err(e) => tracing::warn!(%prefix, error = %e, "node graph watch failed; re-listing"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        match graph.resync(api.store.as_ref(), prefix).await {
            Ok(r) => after = r,
            Err(e) => tracing::warn!(%prefix, error = %e, "node graph re-list failed"),
        }
    }
}
