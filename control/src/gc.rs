//! Garbage collection run inside the server: ownerReference cascades after a delete
//! (Background deletes dependents, Orphan strips the reference, Foreground deletes dependents
//! before the owner) and namespace termination (everything in it, then the namespace).
//! Runs as background tasks; failures are logged and the object is left for a retry by the
//! next delete.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::api::Api;
use crate::objects;
use crate::resources::ResourceDef;

pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// How dependents are treated when their owner goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// Every object (def, key, object, revision) listing `uid` among its ownerReferences.
async fn dependents(
    api: &Api,
    uid: &str,
    namespace: Option<&str>,
) -> Vec<(ResourceDef, String, Value, i64)> {
    let mut out = Vec::new();
    for def in api.resources.all() {
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
async fn delete_dependent(api: &Arc<Api>, def: &ResourceDef, key: &str, obj: Value, rev: i64) {
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
                _ => delete_dependent(&api, &d, &key, obj, rev).await,
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
            if deps.is_empty() {
                break;
            }
            for (d, k, obj, rev) in deps {
                if obj.pointer("/metadata/deletionTimestamp").is_none() {
                    delete_dependent(&api, &d, &k, obj, rev).await;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // Drop our finalizer; the owner goes once no other finalizer remains.
        for _ in 0..10 {
            let Ok((Some(kv), _)) = api.store.get(&key).await else {
                return;
            };
            let Ok(mut obj) = objects::decode(&kv) else {
                return;
            };
            if let Some(f) = obj
                .pointer_mut("/metadata/finalizers")
                .and_then(Value::as_array_mut)
            {
                f.retain(|x| x != FOREGROUND_FINALIZER);
            }
            let done = obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(|f| f.is_empty());
            let r = if done {
                let r = api
                    .store
                    .delete(&key, Some(kv.mod_revision))
                    .await
                    .map(|_| ());
                if r.is_ok() {
                    crate::service_alloc::release_for(api.store.as_ref(), def.kind, &obj).await;
                }
                r
            } else {
                api.store
                    .update(&key, objects::encode(&obj), kv.mod_revision)
                    .await
                    .map(|_| ())
            };
            if r.is_ok() {
                return;
            }
        }
    });
}

/// Namespace termination: deletes every object in the namespace, then the namespace.
pub fn spawn_namespace_cleanup(api: Arc<Api>, ns: String) {
    tokio::spawn(async move {
        for _ in 0..600 {
            let mut remaining = 0;
            for def in api.resources.all().iter().filter(|d| d.namespaced) {
                let Ok(page) = api
                    .store
                    .list(&def.prefix(Some(&ns)), &Default::default())
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
                            o["metadata"]["deletionTimestamp"] =
                                json!(objects::rfc3339((api.clock)()));
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
            if remaining == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let Some(def) = api.resources.find("", "v1", "namespaces") else {
            return;
        };
        let key = def.key(None, &ns);
        if let Ok((Some(kv), _)) = api.store.get(&key).await {
            if let Err(e) = api.store.delete(&key, Some(kv.mod_revision)).await {
                tracing::warn!(namespace = %ns, error = %e, "deleting terminated namespace failed");
            }
        }
    });
}
