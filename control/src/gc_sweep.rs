//! The garbage collector's sweep, like kube-controller-manager's: at startup and then
//! periodically it looks at every stored object and finishes what the in-request cascades
//! (`gc.rs`) may have left when the server stopped or a write failed:
//! - dependents whose owners are all gone (absent, or present with another uid) are deleted;
//!   references to gone owners beside live ones are removed;
//! - owners being deleted with the `foregroundDeletion` finalizer get their dependents deleted,
//!   then lose the finalizer (and go) once none with `blockOwnerDeletion` is left;
//! - owners with the `orphan` finalizer get their dependents unlinked, then lose the finalizer;
//! - terminating namespaces get their contents deleted, then go;
//! - cluster IP and node port allocation records no Service holds are freed once seen leaked
//!   in two consecutive sweeps (a record is written just before its Service).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::api::Api;
use crate::gc::{self, FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
use crate::objects;
use crate::resources::ResourceDef;

/// What one sweep did (logged; tests read it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Dependents deleted (or marked for deletion) because their owners are gone.
    pub collected: usize,
    /// Dependents whose references to gone (or orphaning) owners were removed.
    pub unlinked: usize,
    /// Owners whose foreground/orphan finalizer was processed to the end.
    pub finalized: usize,
    /// Terminating namespaces worked on.
    pub namespaces: usize,
    /// Allocation records freed.
    pub released: usize,
}

/// Sweep state kept between rounds: allocation records seen leaked last time.
#[derive(Debug, Default)]
pub struct Sweeper {
    leaked: HashSet<(String, i64)>,
}

struct Stored {
    def: ResourceDef,
    key: String,
    rev: i64,
    obj: Value,
}

fn finalizers(obj: &Value) -> Vec<&str> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn owner_refs(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Whether an owner reference resolves to a live object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    Present,
    Gone,
    /// Unknown kind, bad reference, or the store failed: never a reason to delete.
    Unknown,
}

impl Sweeper {
    /// Runs one sweep over the whole store.
    pub async fn sweep(&mut self, api: &Arc<Api>) -> SweepReport {
        let mut report = SweepReport::default();
        let mut all = Vec::new();
        for def in api.resources.all_with_custom() {
            let Ok(page) = api.store.list(&def.prefix(None), &Default::default()).await else {
                tracing::warn!(resource = def.plural, "gc sweep: listing failed");
                return report;
            };
            for kv in page.items {
                if let Ok(obj) = objects::decode(&kv) {
                    all.push(Stored {
                        def: def.clone(),
                        key: kv.key,
                        rev: kv.mod_revision,
                        obj,
                    });
                }
            }
        }
        let mut dependents: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in all.iter().enumerate() {
            for r in owner_refs(&s.obj) {
                if let Some(uid) = r.get("uid").and_then(Value::as_str) {
                    dependents.entry(uid.to_string()).or_default().push(i);
                }
            }
        }
        let mut touched: HashSet<usize> = HashSet::new();
        let mut cache: HashMap<String, Owner> = HashMap::new();
        // Owners being deleted: resume what their delete started.
        for s in all
            .iter()
            .filter(|s| s.obj.pointer("/metadata/deletionTimestamp").is_some())
        {
            let uid = objects::meta_str(&s.obj, "uid").unwrap_or("").to_string();
            let deps = dependents.get(&uid).cloned().unwrap_or_default();
            let fins = finalizers(&s.obj);
            if s.def.kind == "Namespace" {
                report.namespaces += 1;
                let ns = objects::name_of(&s.obj).to_string();
                if gc::namespace_pass(api, &ns).await == 0 {
                    gc::delete_namespace(api, &ns).await;
                }
                continue;
            }
            if fins.contains(&ORPHAN_FINALIZER) {
                let mut ok = true;
                for &d in &deps {
                    let dep = &all[d];
                    ok &= gc::unlink(api, &dep.key, dep.obj.clone(), dep.rev, &[&uid]).await;
                    touched.insert(d);
                    report.unlinked += 1;
                }
                if ok {
                    gc::remove_finalizer(api, &s.def, &s.key, ORPHAN_FINALIZER).await;
                    report.finalized += 1;
                }
            } else if fins.contains(&FOREGROUND_FINALIZER) {
                // Only dependents with blockOwnerDeletion hold the owner; all are deleted.
                if !deps.iter().any(|&d| gc::blocks(&all[d].obj, &uid)) {
                    gc::remove_finalizer(api, &s.def, &s.key, FOREGROUND_FINALIZER).await;
                    report.finalized += 1;
                }
                for &d in &deps {
                    let dep = &all[d];
                    touched.insert(d);
                    if dep.obj.pointer("/metadata/deletionTimestamp").is_none() {
                        let (def, key, obj) = (&dep.def, &dep.key, dep.obj.clone());
                        if unlink_if_owned_elsewhere(api, def, key, &obj, dep.rev, &uid, &mut cache)
                            .await
                        {
                            report.unlinked += 1;
                            continue;
                        }
                        if gc::blocks(&dep.obj, &uid) {
                            gc::delete_dependent_foreground(api, def, key, obj, dep.rev).await;
                        } else {
                            gc::delete_dependent(api, def, key, obj, dep.rev).await;
                        }
                        report.collected += 1;
                    }
                }
            }
        }
        // Dependents whose owners are gone.
        for (i, s) in all.iter().enumerate() {
            if touched.contains(&i) {
                continue;
            }
            match resolve_dependent(api, &s.def, &s.key, &s.obj, s.rev, &mut cache).await {
                Resolution::Collected => report.collected += 1,
                Resolution::Unlinked => report.unlinked += 1,
                Resolution::Kept => {}
            }
        }
        report.released = self.repair_allocations(api, &all).await;
        report
    }

    /// Frees allocation records whose owner Service does not hold them.
    async fn repair_allocations(&mut self, api: &Api, all: &[Stored]) -> usize {
        let mut holds: HashSet<(String, String)> = HashSet::new();
        for s in all.iter().filter(|s| s.def.kind == "Service") {
            let owner = crate::ranges::owner_of(&s.obj);
            if let Some(ip) = s.obj.pointer("/spec/clusterIP").and_then(Value::as_str) {
                holds.insert((owner.clone(), format!("{}{ip}", crate::ipalloc::KEY_PREFIX)));
            }
            for p in crate::portalloc::held_by(&s.obj) {
                holds.insert((
                    owner.clone(),
                    format!("{}{p}", crate::portalloc::KEY_PREFIX),
                ));
            }
        }
        let mut leaked = HashSet::new();
        let mut released = 0;
        for prefix in [crate::ipalloc::KEY_PREFIX, crate::portalloc::KEY_PREFIX] {
            let Ok(records) = crate::ranges::held(api.store.as_ref(), prefix).await else {
                continue;
            };
            for (item, (owner, rev)) in records {
                let key = format!("{prefix}{item}");
                if holds.contains(&(owner.clone(), key.clone())) {
                    continue;
                }
                if self.leaked.contains(&(key.clone(), rev)) {
                    tracing::info!(key, owner, "gc sweep: freeing a leaked allocation");
                    crate::ranges::release(api.store.as_ref(), prefix, &item, &owner).await;
                    released += 1;
                } else {
                    leaked.insert((key, rev));
                }
            }
        }
        self.leaked = leaked;
        released
    }
}

/// What [`resolve_dependent`] did with a dependent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Owners all live (or some unresolvable, or no owners): left as it is.
    Kept,
    /// Every owner is gone: deleted (or marked for deletion when it has finalizers).
    Collected,
    /// Some owners gone beside live ones: the references to the gone ones were removed.
    Unlinked,
}

/// Like kube's garbage collector, deletes a dependent only when all its owners are gone, and
/// otherwise removes just the references to the gone ones. An owner that cannot be resolved
/// (unknown kind, bad reference, store failure) keeps the dependent as it is. Shared by the
/// sweep and the in-request background cascade (`gc::spawn_cascade`).
pub(crate) async fn resolve_dependent(
    api: &Arc<Api>,
    def: &ResourceDef,
    key: &str,
    obj: &Value,
    rev: i64,
    cache: &mut HashMap<String, Owner>,
) -> Resolution {
    let refs = owner_refs(obj);
    if refs.is_empty() {
        return Resolution::Kept;
    }
    let ns = objects::meta_str(obj, "namespace").filter(|_| def.namespaced);
    let mut states = Vec::new();
    for r in &refs {
        states.push(owner_state(api, r, ns, cache).await);
    }
    if states.contains(&Owner::Unknown) || !states.contains(&Owner::Gone) {
        return Resolution::Kept;
    }
    if states.iter().all(|st| *st == Owner::Gone) {
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            return Resolution::Kept;
        }
        tracing::info!(key, "collecting a dependent of gone owners");
        gc::delete_dependent(api, def, key, obj.clone(), rev).await;
        return Resolution::Collected;
    }
    let gone: Vec<&str> = refs
        .iter()
        .zip(&states)
        .filter(|(_, st)| **st == Owner::Gone)
        .filter_map(|(r, _)| r.get("uid").and_then(Value::as_str))
        .collect();
    tracing::info!(key, "removing references to gone owners beside live ones");
    if gc::unlink(api, key, obj.clone(), rev, &gone).await {
        Resolution::Unlinked
    } else {
        Resolution::Kept
    }
}

/// For a dependent of `uid`, an owner being deleted in the foreground: like kube's garbage
/// collector, when another of its owners is live the dependent only loses its references to
/// `uid` and to gone owners, and is not deleted. Returns whether that happened.
pub(crate) async fn unlink_if_owned_elsewhere(
    api: &Arc<Api>,
    def: &ResourceDef,
    key: &str,
    obj: &Value,
    rev: i64,
    uid: &str,
    cache: &mut HashMap<String, Owner>,
) -> bool {
    let ns = objects::meta_str(obj, "namespace").filter(|_| def.namespaced);
    let mut gone = vec![uid.to_string()];
    let mut live = false;
    for r in owner_refs(obj) {
        let Some(other) = r.get("uid").and_then(Value::as_str) else {
            continue;
        };
        if other == uid {
            continue;
        }
        match owner_state(api, &r, ns, cache).await {
            Owner::Present => live = true,
            Owner::Gone => gone.push(other.to_string()),
            Owner::Unknown => {}
        }
    }
    if !live {
        return false;
    }
    tracing::info!(
        key,
        "dependent has another live owner: unlinking instead of deleting"
    );
    let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
    gc::unlink(api, key, obj.clone(), rev, &gone).await;
    true
}

/// Resolves an owner reference with a live read (the listing may be older than the owner).
async fn owner_state(
    api: &Api,
    r: &Value,
    ns: Option<&str>,
    cache: &mut HashMap<String, Owner>,
) -> Owner {
    let (Some(api_version), Some(kind), Some(name), Some(uid)) = (
        r.get("apiVersion").and_then(Value::as_str),
        r.get("kind").and_then(Value::as_str),
        r.get("name").and_then(Value::as_str),
        r.get("uid").and_then(Value::as_str),
    ) else {
        return Owner::Unknown;
    };
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let Some(def) = api
        .resources
        .all_with_custom()
        .into_iter()
        .find(|d| d.group == group && d.kind == kind)
    else {
        return Owner::Unknown;
    };
    let key = match (def.namespaced, ns) {
        (true, Some(ns)) => def.key(Some(ns), name),
        (false, _) => def.key(None, name),
        // A cluster-scoped dependent cannot name a namespaced owner.
        (true, None) => return Owner::Unknown,
    };
    let cache_key = format!("{key}#{uid}");
    if let Some(s) = cache.get(&cache_key) {
        return *s;
    }
    let state = match api.store.get(&key).await {
        Ok((None, _)) => Owner::Gone,
        Ok((Some(kv), _)) => match objects::decode(&kv) {
            Ok(o) if objects::meta_str(&o, "uid") == Some(uid) => Owner::Present,
            Ok(_) => Owner::Gone,
            Err(_) => Owner::Unknown,
        },
        Err(_) => Owner::Unknown,
    };
    cache.insert(cache_key, state);
    state
}

/// Sweeps once now, then every `every` until `stop` (a zero interval sweeps only at startup).
pub async fn run(api: Arc<Api>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut sweeper = Sweeper::default();
    loop {
        let report = sweeper.sweep(&api).await;
        if report != SweepReport::default() {
            tracing::info!(?report, "gc sweep");
        }
        if every.is_zero() {
            return;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
