//! ClusterRole aggregation, as kube's clusterrole-aggregation controller: a ClusterRole with an
//! `aggregationRule` gets, as its `rules`, the rules of every other ClusterRole one of its
//! selectors matches (roles by name, each rule once). Runs once at start (so `admin`, `edit`
//! and `view` are complete before the first request) and then whenever a ClusterRole changes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::Api;
use crate::objects;
use crate::rbac::index::Snapshot;
use crate::rbac::rules::Rule;
use crate::rbac::GROUP;

/// The rules each aggregated ClusterRole should have, where they differ from what it has.
pub fn pending(snap: &Snapshot) -> Vec<(String, Vec<Rule>)> {
    let mut out = Vec::new();
    let mut all: Vec<_> = snap.cluster_roles().collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    for role in &all {
        let Some(selectors) = &role.selectors else {
            continue;
        };
        let mut rules: Vec<Rule> = Vec::new();
        for source in &all {
            if source.name == role.name {
                continue;
            }
            if !selectors
                .iter()
                .any(|sel| crate::semantic::selects(sel, source.labels.as_ref()))
            {
                continue;
            }
            for r in source.rules.iter() {
                if !rules.contains(r) {
                    rules.push(r.clone());
                }
            }
        }
        if rules.as_slice() != &*role.rules {
            out.push((role.name.clone(), rules));
        }
    }
    out
}

/// Writes every pending aggregation; returns how many roles were updated.
pub async fn aggregate_once(api: &Api) -> usize {
    let mut written = 0;
    for (name, rules) in pending(&api.authz.rbac.snapshot()) {
        let key = format!("/registry/{GROUP}/clusterroles/{name}");
        for _ in 0..5 {
            let Ok((Some(kv), _)) = api.store.get(&key).await else {
                break;
            };
            let Ok(mut obj) = objects::decode(&kv) else {
                break;
            };
            if obj.pointer("/aggregationRule").is_none_or(Value::is_null) {
                break;
            }
            obj["rules"] = json!(rules);
            match api
                .store
                .update(&key, objects::encode(&obj), kv.mod_revision)
                .await
            {
                Ok(_) => {
                    tracing::debug!(clusterrole = %name, rules = rules.len(), "aggregated");
                    written += 1;
                    break;
                }
                Err(pea_control_store::StoreError::Conflict { .. }) => continue,
                Err(e) => {
                    tracing::warn!(clusterrole = %name, error = %e, "aggregating failed");
                    break;
                }
            }
        }
        api.authz.rbac.sync_key(api.store.as_ref(), &key).await;
    }
    written
}

/// Aggregates after every ClusterRole change until `stop`.
pub async fn run(api: Arc<Api>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = api.authz.rbac.cluster_roles_changed.notified() => {}
        }
        // Let a burst of changes settle into one pass.
        tokio::time::sleep(Duration::from_millis(20)).await;
        aggregate_once(&api).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::index::RbacIndex;

    #[tokio::test]
    async fn aggregated_roles_collect_matching_rules_once() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn pea_control_store::Store> = Arc::new(
            pea_control_store::sqlite::SqliteStore::open(dir.path().join("s.db")).unwrap(),
        );
        let put = |name: &str, obj: Value| {
            let store = store.clone();
            let key = format!("/registry/{GROUP}/clusterroles/{name}");
            async move {
                store
                    .create(&key, serde_json::to_vec(&obj).unwrap())
                    .await
                    .unwrap()
            }
        };
        put("agg", json!({"metadata": {"name": "agg"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "true"}}, {"matchExpressions": [{"key": "y", "operator": "Exists"}]}]}})).await;
        put(
            "b",
            json!({"metadata": {"name": "b", "labels": {"x": "true"}},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        )
        .await;
        put("a", json!({"metadata": {"name": "a", "labels": {"y": "1"}},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]})).await;
        put(
            "c",
            json!({"metadata": {"name": "c", "labels": {"x": "false"}},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]}),
        )
        .await;
        let index = RbacIndex::default();
        index.resync(store.as_ref()).await.unwrap();
        let p = pending(&index.snapshot());
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "agg");
        // Sources by name (a before b), each rule once.
        assert_eq!(
            p[0].1,
            [
                Rule::resource(&["get"], &[""], &["pods"]),
                Rule::resource(&["list"], &[""], &["secrets"])
            ]
        );
    }
}
