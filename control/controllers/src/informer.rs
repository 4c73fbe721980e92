//! Shared informers: one list+watch per resource type (kube-rs `watcher` with its default
//! backoff), a cache indexed by namespace, and change handlers called after the cache has been
//! updated — client-go's SharedIndexInformer with add/update/delete handlers.
//!
//! A relist (the watcher's `Init` … `InitDone`) is turned back into per-object changes by
//! comparing with the cache, so handlers see `Deleted` for objects that vanished while the watch
//! was down, as client-go's `DeletedFinalStateUnknown` path does.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};

use futures_util::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// What happened to one object, as seen by the informer.
#[derive(Debug)]
pub enum Change<K> {
    Added(Arc<K>),
    Updated { old: Arc<K>, new: Arc<K> },
    Deleted(Arc<K>),
}

type Handler<K> = Arc<dyn Fn(&Change<K>) + Send + Sync>;

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub type Key = (String, String);

/// The cache half of an informer: a read-only view controllers list and get from.
#[derive(Debug)]
pub struct Cache<K> {
    map: RwLock<BTreeMap<Key, Arc<K>>>,
    ready: watch::Sender<bool>,
}

impl<K> Cache<K> {
    fn new() -> Self {
        Self {
            map: RwLock::new(BTreeMap::new()),
            ready: watch::channel(false).0,
        }
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.map
            .read()
            .expect("cache lock")
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Every object in `namespace`.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let map = self.map.read().expect("cache lock");
        map.range((namespace.to_string(), String::new())..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.map
            .read()
            .expect("cache lock")
            .values()
            .cloned()
            .collect()
    }

    /// Whether the first complete list has been loaded.
    pub fn is_synced(&self) -> bool {
        *self.ready.borrow()
    }

    /// Resolves once the first complete list has been loaded.
    pub async fn wait_synced(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    #[cfg(test)]
    pub fn insert_for_test(&self, namespace: &str, name: &str, obj: K) {
        self.map
            .write()
            .expect("cache lock")
            .insert((namespace.to_string(), name.to_string()), Arc::new(obj));
    }
}

#[cfg(test)]
impl<K> Cache<K> {
    pub fn new_for_test() -> Arc<Self> {
        Arc::new(Self::new())
    }
}

/// One resource type's informer. Register handlers, then [`Informer::start`].
pub struct Informer<K> {
    api: Api<K>,
    cache: Arc<Cache<K>>,
    handlers: Mutex<Vec<Handler<K>>>,
}

impl<K> Debug for Informer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informer")
            .field(
                "handlers",
                &self.handlers.lock().map(|h| h.len()).unwrap_or(0),
            )
            .finish()
    }
}

fn key_of<K: Resource>(o: &K) -> Key {
    (o.namespace().unwrap_or_default(), o.name_any())
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new(api: Api<K>) -> Arc<Self> {
        Arc::new(Self {
            api,
            cache: Arc::new(Cache::new()),
            handlers: Mutex::new(Vec::new()),
        })
    }

    pub fn cache(&self) -> Arc<Cache<K>> {
        self.cache.clone()
    }

    pub fn add_handler(&self, h: impl Fn(&Change<K>) + Send + Sync + 'static) {
        self.handlers.lock().expect("handlers").push(Arc::new(h));
    }

    pub fn has_handlers(&self) -> bool {
        !self.handlers.lock().expect("handlers").is_empty()
    }

    /// Runs the list+watch loop until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        let handlers: Vec<Handler<K>> = self.handlers.lock().expect("handlers").clone();
        let emit = |c: Change<K>| {
            for h in &handlers {
                h(&c);
            }
        };
        let stream =
            watcher::watcher(self.api.clone(), watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut relist: Vec<K> = Vec::new();
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
                    continue;
                }
            };
            match ev {
                Event::Apply(o) => {
                    let key = key_of(&o);
                    let new = Arc::new(o);
                    let old = self
                        .cache
                        .map
                        .write()
                        .expect("cache lock")
                        .insert(key, new.clone());
                    emit(match old {
                        Some(old) => Change::Updated { old, new },
                        None => Change::Added(new),
                    });
                }
                Event::Delete(o) => {
                    let key = key_of(&o);
                    self.cache.map.write().expect("cache lock").remove(&key);
                    emit(Change::Deleted(Arc::new(o)));
                }
                Event::Init => relist.clear(),
                Event::InitApply(o) => relist.push(o),
                Event::InitDone => {
                    let fresh: BTreeMap<Key, Arc<K>> = relist
                        .drain(..)
                        .map(|o| (key_of(&o), Arc::new(o)))
                        .collect();
                    let old = std::mem::replace(
                        &mut *self.cache.map.write().expect("cache lock"),
                        fresh.clone(),
                    );
                    self.cache.ready.send_replace(true);
                    let seen: HashSet<&Key> = fresh.keys().collect();
                    for (k, new) in &fresh {
                        match old.get(k) {
                            None => emit(Change::Added(new.clone())),
                            // A relist repeats unchanged objects: only real changes are news.
                            Some(o) if o.resource_version() != new.resource_version() => {
                                emit(Change::Updated {
                                    old: o.clone(),
                                    new: new.clone(),
                                })
                            }
                            Some(_) => {}
                        }
                    }
                    for (k, o) in old {
                        if !seen.contains(&k) {
                            emit(Change::Deleted(o));
                        }
                    }
                }
            }
        }
    }
}
