//! Watch-fed caches of the objects admission reads on every write (kube's shared informers
//! behind its admission plugins): Namespaces, ServiceAccounts, ResourceQuotas, LimitRanges,
//! PriorityClasses, the two webhook configuration kinds and ValidatingAdmissionPolicies with
//! their bindings. Each is listed once, then kept by
//! the shared watch source of [`crate::watch_cache`] (events decoded once for all watchers).
//!
//! Read-your-writes: a write this server makes to one of these kinds is re-read into its cache
//! before the reply goes out ([`Informers::written`], as the RBAC index does), and quota
//! charges are applied from the store's answer ([`Informer::observe`]), so a client that
//! creates a quota, a LimitRange or a webhook configuration and then a pod sees it applied.
//! A cache that has not listed yet answers nothing: the lookups then read the store, and the
//! server does not accept requests before [`Informers::sync`] listed them all (readiness).
//! A name missing from a cache is looked up in the store too (kube's live lookup), so an object
//! another writer just created is not missed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pea_control_store::{EventKind, KeyValue, Revision, Store, StoreError};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::api::Api;
use crate::objects;
use crate::resources::Resources;
use crate::status::ApiError;

/// One cached object.
#[derive(Debug)]
pub struct Cached {
    pub key: String,
    /// Its mod revision (what a compare-and-swap on it expects).
    pub rev: Revision,
    /// The object, resourceVersion set.
    pub obj: Value,
}

#[derive(Debug, Default)]
struct Entries {
    objects: BTreeMap<String, Arc<Cached>>,
    /// Keys known deleted and the revision they were known deleted at, so a late event from
    /// before the deletion does not bring them back.
    tombstones: HashMap<String, Revision>,
}

impl Entries {
    fn known(&self, key: &str) -> Revision {
        let live = self.objects.get(key).map_or(0, |c| c.rev);
        live.max(self.tombstones.get(key).copied().unwrap_or(0))
    }

    /// Applies what the store said about `key` at `rev` (its value, or that it is gone) unless
    /// something newer is known.
    fn apply(&mut self, key: &str, rev: Revision, obj: Option<Value>) {
        if rev <= self.known(key) {
            return;
        }
        match obj {
            Some(obj) => {
                self.tombstones.remove(key);
                let cached = Cached {
                    key: key.to_string(),
                    rev,
                    obj,
                };
                self.objects.insert(key.to_string(), Arc::new(cached));
            }
            None => {
                self.objects.remove(key);
                self.tombstones.insert(key.to_string(), rev);
            }
        }
    }
}

/// The cache of one resource.
#[derive(Debug)]
pub struct Informer {
    group: &'static str,
    plural: &'static str,
    /// Where the resource lives in the store (all namespaces).
    prefix: String,
    entries: RwLock<Entries>,
    synced: AtomicBool,
}

fn decoded(kv: &KeyValue) -> Option<Value> {
    match objects::decode(kv) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(key = %kv.key, error = %e, "cached object is not JSON; skipped");
            None
        }
    }
}

impl Informer {
    fn new(resources: &Resources, group: &'static str, plural: &'static str) -> Arc<Self> {
        let prefix = resources
            .find(group, "v1", plural)
            .map(|d| d.prefix(None))
            .unwrap_or_default();
        Arc::new(Self {
            group,
            plural,
            prefix,
            entries: Default::default(),
            synced: AtomicBool::new(false),
        })
    }

    /// Whether the first list completed.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn store_err(&self, e: StoreError) -> ApiError {
        ApiError::from_store(e, self.group, self.plural, "")
    }

    fn entries(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, key: &str, rev: Revision, obj: Option<Value>) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(key, rev, obj);
    }

    /// The objects whose keys start with `prefix` (the resource's prefix, or one namespace's),
    /// in key order.
    pub async fn list(
        &self,
        store: &dyn Store,
        prefix: &str,
    ) -> Result<Vec<Arc<Cached>>, ApiError> {
        if self.synced() {
            let entries = self.entries();
            return Ok(entries
                .objects
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, c)| c.clone())
                .collect());
        }
        let page = store
            .list(prefix, &Default::default())
            .await
            .map_err(|e| self.store_err(e))?;
        Ok(page
            .items
            .iter()
            .filter_map(|kv| {
                let obj = decoded(kv)?;
                Some(Arc::new(Cached {
                    key: kv.key.clone(),
                    rev: kv.mod_revision,
                    obj,
                }))
            })
            .collect())
    }

    /// The object at `key`: from the cache, or from the store when the cache does not have it.
    pub async fn get(&self, store: &dyn Store, key: &str) -> Result<Option<Arc<Cached>>, ApiError> {
        if self.synced() {
            if let Some(c) = self.entries().objects.get(key) {
                return Ok(Some(c.clone()));
            }
        }
        let (kv, _) = store.get(key).await.map_err(|e| self.store_err(e))?;
        Ok(kv.and_then(|kv| {
            let obj = decoded(&kv)?;
            let c = Arc::new(Cached {
                key: kv.key.clone(),
                rev: kv.mod_revision,
                obj: obj.clone(),
            });
            self.apply(&kv.key, kv.mod_revision, Some(obj));
            Some(c)
        }))
    }

    /// A write of `kv` this server just made (e.g. a quota charge).
    pub fn observe(&self, kv: &KeyValue) {
        if let Some(obj) = decoded(kv) {
            self.apply(&kv.key, kv.mod_revision, Some(obj));
        }
    }

    /// Re-reads `key` after this server wrote it.
    async fn sync_key(&self, store: &dyn Store, key: &str) {
        match store.get(key).await {
            Ok((Some(kv), _)) => self.observe(&kv),
            Ok((None, rev)) => self.apply(key, rev, None),
            Err(e) => tracing::warn!(%key, error = %e, "re-reading a cached object failed"),
        }
    }

    /// Lists everything and reconciles the cache with it; returns the list's revision.
    async fn resync(&self, store: &dyn Store) -> Result<Revision, StoreError> {
        let list = store.list(&self.prefix, &Default::default()).await?;
        let rev = list.revision;
        {
            let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<String> = entries
                .objects
                .keys()
                .filter(|k| {
                    list.items
                        .binary_search_by(|kv| kv.key.as_str().cmp(k))
                        .is_err()
                })
                .cloned()
                .collect();
            for key in gone {
                entries.apply(&key, rev, None);
            }
            for kv in &list.items {
                if kv.mod_revision > entries.known(&kv.key) {
                    if let Some(obj) = decoded(kv) {
                        entries.apply(&kv.key, kv.mod_revision, Some(obj));
                    }
                }
            }
            entries.tombstones.retain(|_, r| *r > rev);
        }
        self.synced.store(true, Ordering::Release);
        Ok(rev)
    }

    /// Keeps the cache current from the shared watch source until `stop`; re-lists when the
    /// source cannot serve from `after`, lags or ends.
    async fn run(
        self: Arc<Self>,
        api: Arc<Api>,
        mut after: Revision,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            if let Some((backlog, mut rx)) = api
                .watch_cache
                .subscribe(&api.store, &self.prefix, after)
                .await
            {
                for d in backlog {
                    self.apply_event(&d);
                }
                loop {
                    let ev = tokio::select! {
                        _ = stop.changed() => return,
                        ev = rx.recv() => ev,
                    };
                    match ev {
                        Ok(d) => self.apply_event(&d),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::info!(
                                resource = self.plural,
                                missed = n,
                                "admission cache lagged; re-listing"
                            );
                            break;
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            match self.resync(api.store.as_ref()).await {
                Ok(r) => after = r,
                Err(e) => {
                    tracing::warn!(resource = self.plural, error = %e, "admission cache re-list failed")
                }
            }
        }
    }

    fn apply_event(&self, d: &crate::watch_cache::Decoded) {
        let obj = (d.kind == EventKind::Put).then(|| d.obj.clone());
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.apply(&d.key, d.rev, obj);
        if !entries.tombstones.is_empty() {
            entries.tombstones.retain(|_, r| *r > d.rev);
        }
    }
}

/// The caches admission reads.
#[derive(Debug)]
pub struct Informers {
    pub namespaces: Arc<Informer>,
    pub service_accounts: Arc<Informer>,
    pub resource_quotas: Arc<Informer>,
    pub limit_ranges: Arc<Informer>,
    pub priority_classes: Arc<Informer>,
    pub mutating_webhooks: Arc<Informer>,
    pub validating_webhooks: Arc<Informer>,
    pub validating_policies: Arc<Informer>,
    pub validating_policy_bindings: Arc<Informer>,
}

impl Informers {
    pub fn new(resources: &Resources) -> Self {
        use super::policy;
        let hooks = super::webhooks::GROUP;
        Self {
            namespaces: Informer::new(resources, "", "namespaces"),
            service_accounts: Informer::new(resources, "", "serviceaccounts"),
            resource_quotas: Informer::new(resources, "", "resourcequotas"),
            limit_ranges: Informer::new(resources, "", "limitranges"),
            priority_classes: Informer::new(resources, "scheduling.k8s.io", "priorityclasses"),
            mutating_webhooks: Informer::new(resources, hooks, super::webhooks::MUTATING),
            validating_webhooks: Informer::new(resources, hooks, super::webhooks::VALIDATING),
            validating_policies: Informer::new(resources, policy::GROUP, policy::POLICIES),
            validating_policy_bindings: Informer::new(resources, policy::GROUP, policy::BINDINGS),
        }
    }

    fn all(&self) -> [&Arc<Informer>; 9] {
        [
            &self.namespaces,
            &self.service_accounts,
            &self.resource_quotas,
            &self.limit_ranges,
            &self.priority_classes,
            &self.mutating_webhooks,
            &self.validating_webhooks,
            &self.validating_policies,
            &self.validating_policy_bindings,
        ]
    }

    /// Whether every cache has listed (the server's readiness for admission).
    pub fn synced(&self) -> bool {
        self.all().iter().all(|i| i.synced())
    }

    /// Lists every cache, then keeps each current from the watch until `stop`.
    pub async fn start(api: &Arc<Api>, stop: watch::Receiver<bool>) -> Result<(), StoreError> {
        for informer in api.informers.all() {
            if informer.prefix.is_empty() {
                continue;
            }
            let rev = informer.resync(api.store.as_ref()).await?;
            tokio::spawn(informer.clone().run(api.clone(), rev, stop.clone()));
        }
        Ok(())
    }

    /// Every cached object of the resource `group`/`plural`, in key order (name order for the
    /// cluster-scoped admission configuration kinds): what admission reads on every request,
    /// from the cache once synced, never the store. Empty when the resource is not served.
    pub async fn list_all(
        &self,
        store: &dyn Store,
        group: &str,
        plural: &str,
    ) -> Result<Vec<Arc<Cached>>, ApiError> {
        let informer = self
            .all()
            .into_iter()
            .find(|i| i.group == group && i.plural == plural && !i.prefix.is_empty());
        match informer {
            Some(i) => i.list(store, &i.prefix).await,
            None => Ok(Vec::new()),
        }
    }

    fn find(&self, prefix: &str) -> Option<&Arc<Informer>> {
        self.all()
            .into_iter()
            .find(|i| !i.prefix.is_empty() && i.prefix == prefix)
    }

    /// Whether the resource stored under `prefix` is cached.
    pub fn caches(&self, prefix: &str) -> bool {
        self.find(prefix).is_some()
    }

    /// After this server wrote `key` of the resource stored under `prefix` (`None`: several
    /// objects, e.g. a deletecollection): its cache catches up before the reply.
    pub async fn written(&self, store: &dyn Store, prefix: &str, key: Option<&str>) {
        let Some(informer) = self.find(prefix) else {
            return;
        };
        if !informer.synced() {
            return;
        }
        match key {
            Some(k) => informer.sync_key(store, k).await,
            None => {
                if let Err(e) = informer.resync(store).await {
                    tracing::warn!(resource = informer.plural, error = %e, "re-listing an admission cache failed");
                }
            }
        }
    }
}
