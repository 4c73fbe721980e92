//! A shared watch source per resource: one store watch, each event decoded and serialised once,
//! fanned out to every watcher (kube-apiserver's watch cache in miniature). It keeps the most
//! recent events so a watcher starting at a recent resourceVersion replays from memory; older
//! starts, and anything the cache cannot prove complete, fall back to a direct store watch.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pea_control_store::{EventKind, Revision, Store};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::objects;

/// Events kept for replay.
const BUFFER: usize = 4096;
/// Events queued per watcher before it is cut off (it then gets a 410 and re-lists).
const FANOUT: usize = 8192;

/// One change, decoded once for all watchers.
#[derive(Debug)]
pub struct Decoded {
    pub kind: EventKind,
    pub key: String,
    pub rev: Revision,
    /// The object (for a delete: its last state) with resourceVersion set to `rev`.
    pub obj: Value,
    /// `obj` serialised.
    pub json: Bytes,
    pub prev: Option<Value>,
}

impl Decoded {
    pub fn from_event(ev: &pea_control_store::Event) -> Option<Self> {
        let mut obj: Value = serde_json::from_slice(&ev.kv.value).ok()?;
        objects::set_resource_version(&mut obj, ev.revision());
        let json = Bytes::from(serde_json::to_vec(&obj).ok()?);
        let prev = ev
            .prev
            .as_ref()
            .and_then(|p| serde_json::from_slice(&p.value).ok());
        Some(Self {
            kind: ev.kind,
            key: ev.kv.key.clone(),
            rev: ev.revision(),
            obj,
            json,
            prev,
        })
    }
}

#[derive(Debug)]
struct State {
    buffer: VecDeque<Arc<Decoded>>,
    /// Every event after this revision is in `buffer` or still to come.
    complete_after: Revision,
    /// Dropped when the source dies, which ends every subscriber's feed.
    tx: Option<broadcast::Sender<Arc<Decoded>>>,
}

#[derive(Debug)]
struct Cacher {
    state: Mutex<State>,
}

/// The watch caches of all resources.
#[derive(Debug, Default)]
pub struct WatchCache {
    cachers: Mutex<HashMap<String, Arc<Cacher>>>,
}

/// What a watcher gets: buffered events to replay, then the live feed.
pub type Subscription = (Vec<Arc<Decoded>>, broadcast::Receiver<Arc<Decoded>>);

impl WatchCache {
    async fn cacher(&self, store: &Arc<dyn Store>, prefix: &str) -> Option<Arc<Cacher>> {
        if let Some(c) = self.cachers.lock().ok()?.get(prefix) {
            if c.state.lock().ok()?.tx.is_some() {
                return Some(c.clone());
            }
        }
        let start = store.current_revision().await.ok()?;
        let mut watch = store.watch(prefix, start).await.ok()?;
        let (tx, _) = broadcast::channel(FANOUT);
        let cacher = Arc::new(Cacher {
            state: Mutex::new(State {
                buffer: VecDeque::new(),
                complete_after: start,
                tx: Some(tx),
            }),
        });
        {
            let mut map = self.cachers.lock().ok()?;
            if let Some(existing) = map.get(prefix) {
                if existing.state.lock().ok()?.tx.is_some() {
                    // Someone else started one meanwhile; ours is dropped with its store watch.
                    return Some(existing.clone());
                }
            }
            map.insert(prefix.to_string(), cacher.clone());
        }
        let pump = cacher.clone();
        tokio::spawn(async move {
            while let Some(Ok(ev)) = watch.next().await {
                let Some(d) = Decoded::from_event(&ev) else {
                    continue;
                };
                let d = Arc::new(d);
                let Ok(mut st) = pump.state.lock() else { break };
                if st.buffer.len() == BUFFER {
                    if let Some(old) = st.buffer.pop_front() {
                        st.complete_after = old.rev;
                    }
                }
                st.buffer.push_back(d.clone());
                // Sent under the lock so a subscriber sees each event exactly once.
                if let Some(tx) = &st.tx {
                    let _ = tx.send(d);
                }
            }
            // The store watch ended (compaction, lag, shutdown): later watchers start afresh.
            if let Ok(mut st) = pump.state.lock() {
                st.tx = None;
            }
        });
        Some(cacher)
    }

    /// Events of keys under `prefix` after revision `after`, if the cache can serve them all.
    pub async fn subscribe(
        &self,
        store: &Arc<dyn Store>,
        prefix: &str,
        after: Revision,
    ) -> Option<Subscription> {
        let cacher = self.cacher(store, prefix).await?;
        let st = cacher.state.lock().ok()?;
        if after < st.complete_after {
            return None;
        }
        let rx = st.tx.as_ref()?.subscribe();
        let backlog = st
            .buffer
            .iter()
            .filter(|e| e.rev > after)
            .cloned()
            .collect();
        Some((backlog, rx))
    }
}
