//! Watch-fed caches: one kube-rs `watcher` (list, then watch, relisting with its default backoff
//! after an error) per resource, a map of the objects it has seen, and a message to the
//! controller's queue for every change, so the controller reacts to events instead of polling.
//!
//! A relist (`Init` … `InitDone`) replaces the map at once and reports the objects that vanished
//! while the watch was down as well as every listed one, so nothing is missed across a gap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures_util::StreamExt;
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

use crate::members::Member;

/// `(apiVersion, kind)` of a template kind.
pub type KindKey = (String, String);

/// What the controller's queue carries.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A template (by uid) of `kind` or one of its member objects changed.
    Template { kind: KindKey, uid: String },
    /// A (Cluster)PropagationPolicy or (Cluster)OverridePolicy changed.
    Policies,
    /// A Cluster changed: probe the members now.
    Clusters,
    /// The members as the latest health probe saw them.
    Members(Vec<Member>),
}

/// The objects a watch has seen, by `namespace/name`, without their managedFields.
#[derive(Debug, Default)]
pub struct Cache {
    map: RwLock<HashMap<String, Value>>,
    ready: AtomicBool,
}

fn key_of(v: &Value) -> String {
    format!(
        "{}/{}",
        v["metadata"]["namespace"].as_str().unwrap_or_default(),
        v["metadata"]["name"].as_str().unwrap_or_default()
    )
}

impl Cache {
    pub fn values(&self) -> Vec<Value> {
        self.map
            .read()
            .expect("cache lock")
            .values()
            .cloned()
            .collect()
    }

    /// The objects `keep` accepts; only those are cloned (a turn about a few templates should
    /// not copy every object of every member).
    pub fn values_where(&self, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.map
            .read()
            .expect("cache lock")
            .values()
            .filter(|v| keep(v))
            .cloned()
            .collect()
    }

    /// `f` of every object, without cloning the objects.
    pub fn map_values<T>(&self, f: impl Fn(&Value) -> T) -> Vec<T> {
        self.map
            .read()
            .expect("cache lock")
            .values()
            .map(f)
            .collect()
    }

    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Value> {
        let key = format!("{}/{name}", namespace.unwrap_or_default());
        self.map.read().expect("cache lock").get(&key).cloned()
    }

    /// Whether the first complete list has been loaded.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Records an object the controller just wrote (the watch will confirm or supersede it).
    pub fn insert(&self, v: Value) {
        let v = slim(v);
        self.map.write().expect("cache lock").insert(key_of(&v), v);
    }

    fn remove(&self, v: &Value) {
        self.map.write().expect("cache lock").remove(&key_of(v));
    }
}

/// The object without managedFields (the largest part of most objects, never read here).
fn slim(mut v: Value) -> Value {
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    v
}

fn to_value(o: DynamicObject, ar: &ApiResource) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    v["apiVersion"] = json!(ar.api_version);
    v["kind"] = json!(ar.kind);
    slim(v)
}

/// A running watch; dropping it stops the watch.
#[derive(Debug)]
pub struct Watch {
    pub cache: Arc<Cache>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watches `api` (objects with `labels`, when given) into a cache; `to_msg` turns a changed
/// object into the message queued for it, and `on_sync` is queued after each complete list.
pub fn watch(
    api: Api<DynamicObject>,
    ar: ApiResource,
    labels: Option<&str>,
    tx: UnboundedSender<Msg>,
    to_msg: impl Fn(&Value) -> Option<Msg> + Send + 'static,
    on_sync: Option<Msg>,
) -> Watch {
    let cache = Arc::new(Cache::default());
    let mut config = watcher::Config::default();
    if let Some(l) = labels {
        config = config.labels(l);
    }
    let c = cache.clone();
    let task = tokio::spawn(async move {
        let send = |m: Option<Msg>| {
            if let Some(m) = m {
                let _ = tx.send(m);
            }
        };
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        let mut fresh: Option<HashMap<String, Value>> = None;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Apply(o)) => {
                    // Into the cache before the message: the controller reads the cache when
                    // the message arrives, and with the message first it could miss the object
                    // (a policy missed so was never loaded, and nothing propagated).
                    let v = to_value(o, &ar);
                    let m = to_msg(&v);
                    c.insert(v);
                    send(m);
                }
                Ok(Event::Delete(o)) => {
                    let v = to_value(o, &ar);
                    c.remove(&v);
                    send(to_msg(&v));
                }
                Ok(Event::Init) => fresh = Some(HashMap::new()),
                Ok(Event::InitApply(o)) => {
                    let v = to_value(o, &ar);
                    fresh.get_or_insert_default().insert(key_of(&v), v);
                }
                Ok(Event::InitDone) => {
                    let new = fresh.take().unwrap_or_default();
                    let old = std::mem::replace(&mut *c.map.write().expect("cache lock"), new);
                    c.ready.store(true, Ordering::Release);
                    let map = c.map.read().expect("cache lock").clone();
                    for (k, v) in &old {
                        if !map.contains_key(k) {
                            send(to_msg(v));
                        }
                    }
                    for v in map.values() {
                        send(to_msg(v));
                    }
                    send(on_sync.clone());
                }
                // kube-rs relists after its backoff; said at warn so a watch that never
                // lists (a kind not served, refused credentials) is visible in the log.
                Err(e) => warn!(resource = %ar.plural, "watch: {e}"),
            }
        }
    });
    Watch { cache, task }
}
