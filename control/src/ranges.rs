//! Allocation records shared by Service cluster IPs and node ports: one store key per allocated
//! item (`<prefix><item>`), created only if absent so two API servers on one etcd never hand out
//! the same item, holding its owner (`namespace/name`). Records outlive the server, so
//! allocations survive restarts on both store backends; the garbage collector's sweep frees
//! records whose owner no longer holds them (a crash between a delete and its release).

use std::collections::HashMap;

use pea_control_store::{Store, StoreError};

/// Reserves `item` for `owner`; `Ok(false)` when someone already holds it.
pub async fn reserve(
    store: &dyn Store,
    prefix: &str,
    item: &str,
    owner: &str,
) -> Result<bool, StoreError> {
    match store
        .create(&format!("{prefix}{item}"), owner.as_bytes().to_vec())
        .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Frees `item` if `owner` still holds it (compare-and-swap, so a record another Service took
/// in the meantime stays).
pub async fn release(store: &dyn Store, prefix: &str, item: &str, owner: &str) {
    let key = format!("{prefix}{item}");
    let kv = match store.get(&key).await {
        Ok((Some(kv), _)) => kv,
        Ok((None, _)) => return,
        Err(e) => {
            tracing::warn!(key, error = %e, "reading an allocation record failed");
            return;
        }
    };
    if kv.value != owner.as_bytes() {
        return;
    }
    match store.delete(&key, Some(kv.mod_revision)).await {
        Ok(_) | Err(StoreError::NotFound { .. }) | Err(StoreError::Conflict { .. }) => {}
        Err(e) => tracing::warn!(key, error = %e, "releasing an allocation record failed"),
    }
}

/// Every record under `prefix`: item → (owner, mod revision).
pub async fn held(
    store: &dyn Store,
    prefix: &str,
) -> Result<HashMap<String, (String, i64)>, StoreError> {
    let page = store.list(prefix, &Default::default()).await?;
    Ok(page
        .items
        .into_iter()
        .map(|kv| {
            (
                kv.key[prefix.len()..].to_string(),
                (
                    String::from_utf8_lossy(&kv.value).into_owned(),
                    kv.mod_revision,
                ),
            )
        })
        .collect())
}

/// The owner string of a namespaced object.
pub fn owner_of(obj: &serde_json::Value) -> String {
    format!(
        "{}/{}",
        crate::objects::meta_str(obj, "namespace").unwrap_or(""),
        crate::objects::name_of(obj)
    )
}
