//! Garbage collection run inside the server: ownerReference cascades after a delete
//! (Background deletes dependents whose owners are all gone and unlinks the rest, Orphan strips
//! the reference, Foreground deletes dependents — unlinking those with other live owners —
//! before the owner) and namespace termination (everything in it, then the namespace).
//! Runs as background tasks right after the request; whatever they leave (a failure, a restart
//! in the middle, dependents held by finalizers) is finished by the periodic sweep in
//! `gc_sweep.rs`.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::api::Api;
use crate::objects;
use crate::resources::ResourceDef;

pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
pub const ORPHAN_FINALIZER: &str = "orphan";

/// How dependents are treated when their owner goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// Every object (def, key, object, revision) listing `uid` among its ownerReferences.
pub(crate) async fn dependents(
    api: &Api,
    uid: &str,
    namespace: Option<&str>,
) -> Vec<(ResourceDef, String, Value, i64)> {
    let mut out = Vec::new();
    for def in api.resources.all_with_custom() {
        if namespace.is_some() && !def.namespaced {
            continue;
        }
        let Ok(page) = api
            .store
            .list(&def.prefix(namespace), &Default::default())
            .await
        else {
            continue;
        };
        for kv in page.items {
            let Ok(obj) = objects::decode(&kv) else {
                continue;
            };
            let owned = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid));
            if owned {
                out.push((def.clone(), kv.key, obj, kv.mod_revision));
            }
        }
    }
    out
}

/// Deletes one dependent (and, through its own cascade, its dependents).
pub(crate) async fn delete_dependent(
    api: &Arc<Api>,
    def: &ResourceDef,
    key: &str,
    obj: Value,
    rev: i64,
) {
    let has_finalizers = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if has_finalizers {
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            let mut o = obj;
            o["metadata"]["deletionTimestamp"] = json!(objects::rfc3339((api.clock)()));
            if let Err(e) = api.store.update(key, objects::encode(&o), rev).await {
                tracing::warn!(key, error = %e, "marking dependent for deletion failed");
            }
        }
        return;
    }
    match api.store.delete(key, Some(rev)).await {
        Ok(_) => spawn_cascade(api.clone(), def.clone(), obj, Propagation::Background),
        Err(e) => tracing::warn!(key, error = %e, "deleting dependent failed"),
    }
}

/// Deletes a dependent that blocks a foreground deletion in the foreground too (as kube's GC
/// does), so its own blocking dependents go before it and it goes before its owner.
pub(crate) async fn delete_dependent_foreground(
    api: &Arc<Api>,
    def: &ResourceDef,
    key: &str,
    obj: Value,
    rev: i64,
) {
    let mut o = obj;
    o["metadata"]["deletionTimestamp"] = json!(objects::rfc3339((api.clock)()));
    o["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    let fins = o["metadata"]
        .as_object_mut()
        .map(|m| m.entry("finalizers").or_insert_with(|| json!([])));
    if let Some(Value::Array(f)) = fins {
        if !f.iter().any(|x| x == FOREGROUND_FINALIZER) {
            f.push(json!(FOREGROUND_FINALIZER));
        }
    }
    match api.store.update(key, objects::encode(&o), rev).await {
        Ok(_) => spawn_foreground(api.clone(), def.clone(), key.to_string(), o),
        Err(e) => {
            tracing::warn!(key, error = %e, "marking dependent for foreground deletion failed")
        }
    }
}

/// After `owner` left the store: cascades to its dependents per `policy`.
pub fn spawn_cascade(api: Arc<Api>, def: ResourceDef, owner: Value, policy: Propagation) {
    let Some(uid) = objects::meta_str(&owner, "uid").map(str::to_string) else {
        return;
    };
    let ns = if def.namespaced {
        objects::meta_str(&owner, "namespace").map(str::to_string)
    } else {
        None
    };
    tokio::spawn(async move {
        crate::service_alloc::release_for(api.store.as_ref(), def.kind, &owner).await;
        let mut owners = std::collections::HashMap::new();
        for (d, key, mut obj, rev) in dependents(&api, &uid, ns.as_deref()).await {
            match policy {
                Propagation::Orphan => {
                    if let Some(refs) = obj
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        refs.retain(|r| r["uid"] != uid.as_str());
                        if refs.is_empty() {
                            if let Some(m) = obj["metadata"].as_object_mut() {
                                m.remove("ownerReferences");
                            }
                        }
                    }
                    if let Err(e) = api.store.update(&key, objects::encode(&obj), rev).await {
                        tracing::warn!(key, error = %e, "orphaning dependent failed");
                    }
                }
                // Deleted only once every owner is gone; beside live owners just unlinked.
                _ => {
                    crate::gc_sweep::resolve_dependent(&api, &d, &key, &obj, rev, &mut owners)
                        .await;
                }
            }
        }
    });
}

/// Foreground deletion: dependents go first, then the owner's finalizer is removed.
pub fn spawn_foreground(api: Arc<Api>, def: ResourceDef, key: String, owner: Value) {
    let Some(uid) = objects::meta_str(&owner, "uid").map(str::to_string) else {
        return;
    };
    let ns = if def.namespaced {
        objects::meta_str(&owner, "namespace").map(str::to_string)
    } else {
        None
    };
    tokio::spawn(async move {
        for _ in 0..600 {
            let deps = dependents(&api, &uid, ns.as_deref()).await;
            let blocked = deps.iter().any(|(_, _, obj, _)| blocks(obj, &uid));
            let mut owners = std::collections::HashMap::new();
            for (d, k, obj, rev) in deps {
                if obj.pointer("/metadata/deletionTimestamp").is_some() {
                    continue;
                }
                // Kept (unlinked) when another owner is live.
                if crate::gc_sweep::unlink_if_owned_elsewhere(
                    &api,
                    &d,
                    &k,
                    &obj,
                    rev,
                    &uid,
                    &mut owners,
                )
                .await
                {
                    continue;
                }
                if blocks(&obj, &uid) {
                    delete_dependent_foreground(&api, &d, &k, obj, rev).await;
                } else {
                    delete_dependent(&api, &d, &k, obj, rev).await;
                }
            }
            if !blocked {
                // Drop our finalizer; the owner goes once no other finalizer remains.
                remove_finalizer(&api, &def, &key, FOREGROUND_FINALIZER).await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // Dependents still held by their own finalizers: the periodic sweep finishes this.
    });
}

/// Whether `dependent` holds up the foreground deletion of owner `uid`: only references with
/// `blockOwnerDeletion: true` do, as in kube's garbage collector.
pub(crate) fn blocks(dependent: &Value, uid: &str) -> bool {
    dependent
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r["uid"] == uid && r["blockOwnerDeletion"] == json!(true))
        })
}

/// Orphan deletion: dependents lose their reference to the owner, then the owner's `orphan`
/// finalizer is removed (so a restart in between resumes instead of deleting dependents).
pub fn spawn_orphan(api: Arc<Api>, def: ResourceDef, key: String, owner: Value) {
    let Some(uid) = objects::meta_str(&owner, "uid").map(str::to_string) else {
        return;
    };
    let ns = if def.namespaced {
        objects::meta_str(&owner, "namespace").map(str::to_string)
    } else {
        None
    };
    tokio::spawn(async move {
        let mut ok = true;
        for (_, k, obj, rev) in dependents(&api, &uid, ns.as_deref()).await {
            ok &= unlink(&api, &k, obj, rev, &[uid.as_str()]).await;
        }
        if ok {
            remove_finalizer(&api, &def, &key, ORPHAN_FINALIZER).await;
        }
    });
}

/// Removes the references to `uids` from a dependent's ownerReferences; false if the write
/// failed (it is retried by the next sweep).
pub(crate) async fn unlink(api: &Api, key: &str, mut obj: Value, rev: i64, uids: &[&str]) -> bool {
    if let Some(refs) = obj
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        refs.retain(|r| !uids.iter().any(|u| r["uid"] == *u));
        if refs.is_empty() {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("ownerReferences");
            }
        }
    }
    match api.store.update(key, objects::encode(&obj), rev).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(key, error = %e, "removing owner references failed");
            false
        }
    }
}

/// Removes `finalizer` from the object at `key`; deletes it when it was being deleted and no
/// finalizer remains (then cascades in background, as after any delete).
pub(crate) async fn remove_finalizer(
    api: &Arc<Api>,
    def: &ResourceDef,
    key: &str,
    finalizer: &str,
) {
    for _ in 0..10 {
        let Ok((Some(kv), _)) = api.store.get(key).await else {
            return;
        };
        let Ok(mut obj) = objects::decode(&kv) else {
            return;
        };
        if let Some(f) = obj
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            f.retain(|x| x != finalizer);
        }
        // A pod in graceful deletion still waits for its kubelet.
        let done = obj.pointer("/metadata/deletionTimestamp").is_some()
            && obj
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                == 0
            && obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(|f| f.is_empty());
        let r = if done {
            let r = api
                .store
                .delete(key, Some(kv.mod_revision))
                .await
                .map(|_| ());
            if r.is_ok() {
                spawn_cascade(api.clone(), def.clone(), obj, Propagation::Background);
            }
            r
        } else {
            api.store
                .update(key, objects::encode(&obj), kv.mod_revision)
                .await
                .map(|_| ())
        };
        if r.is_ok() {
            return;
        }
    }
}

/// Namespace termination: deletes every object in the namespace, then the namespace.
pub fn spawn_namespace_cleanup(api: Arc<Api>, ns: String) {
    tokio::spawn(async move {
        for _ in 0..600 {
            if namespace_pass(&api, &ns).await == 0 {
                delete_namespace(&api, &ns).await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // Contents still held by finalizers: the periodic sweep finishes this.
    });
}

/// One round of deleting a terminating namespace's contents; returns how many objects were
/// still there at the start of the round.
pub(crate) async fn namespace_pass(api: &Arc<Api>, ns: &str) -> usize {
    let mut remaining = 0;
    for def in api
        .resources
        .all_with_custom()
        .into_iter()
        .filter(|d| d.namespaced)
    {
        let Ok(page) = api
            .store
            .list(&def.prefix(Some(ns)), &Default::default())
            .await
        else {
            remaining += 1;
            continue;
        };
        for kv in page.items {
            remaining += 1;
            let Ok(obj) = objects::decode(&kv) else {
                continue;
            };
            let has_finalizers = obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            if has_finalizers {
                if obj.pointer("/metadata/deletionTimestamp").is_none() {
                    let mut o = obj;
                    o["metadata"]["deletionTimestamp"] = json!(objects::rfc3339((api.clock)()));
                    let _ = api
                        .store
                        .update(&kv.key, objects::encode(&o), kv.mod_revision)
                        .await;
                }
                continue;
            }
            if api
                .store
                .delete(&kv.key, Some(kv.mod_revision))
                .await
                .is_ok()
            {
                crate::service_alloc::release_for(api.store.as_ref(), def.kind, &obj).await;
            }
        }
    }
    remaining
}

/// The spec finalizer the namespace controller's content deletion (ours: [`namespace_pass`])
/// stands for.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

/// Whether a terminating namespace may leave the store: no `spec.finalizers` (other systems'
/// content cleanup) and no `metadata.finalizers` left, as in kube.
pub(crate) fn namespace_finalized(ns: &Value) -> bool {
    ["/spec/finalizers", "/metadata/finalizers"]
        .iter()
        .all(|p| {
            ns.pointer(p)
                .and_then(Value::as_array)
                .is_none_or(|f| f.is_empty())
        })
}

/// Finishes a terminating namespace whose contents are gone: drops the `kubernetes` spec
/// finalizer (what kube's namespace controller does through `namespaces/finalize`), then deletes
/// the namespace once no other finalizer holds it.
pub(crate) async fn delete_namespace(api: &Api, ns: &str) {
    let Some(def) = api.resources.find("", "v1", "namespaces") else {
        return;
    };
    let key = def.key(None, ns);
    for _ in 0..10 {
        let Ok((Some(kv), _)) = api.store.get(&key).await else {
            return;
        };
        let Ok(mut obj) = objects::decode(&kv) else {
            return;
        };
        let mut changed = false;
        if let Some(f) = obj
            .pointer_mut("/spec/finalizers")
            .and_then(Value::as_array_mut)
        {
            let before = f.len();
            f.retain(|x| x != NAMESPACE_FINALIZER);
            changed = f.len() != before;
        }
        let r = if namespace_finalized(&obj) {
            api.store
                .delete(&key, Some(kv.mod_revision))
                .await
                .map(|_| ())
        } else if changed {
            tracing::info!(namespace = %ns, "namespace contents deleted; other finalizers remain");
            api.store
                .update(&key, objects::encode(&obj), kv.mod_revision)
                .await
                .map(|_| ())
        } else {
            return;
        };
        match r {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(namespace = %ns, error = %e, "finishing terminated namespace failed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_wait_for_spec_and_metadata_finalizers() {
        assert!(namespace_finalized(&json!({"metadata": {"name": "a"}})));
        assert!(namespace_finalized(
            &json!({"metadata": {"finalizers": []}, "spec": {"finalizers": []}})
        ));
        assert!(!namespace_finalized(
            &json!({"spec": {"finalizers": ["kubernetes"]}})
        ));
        assert!(!namespace_finalized(
            &json!({"metadata": {"finalizers": ["example.com/x"]}})
        ));
    }
}
