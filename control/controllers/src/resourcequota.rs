//! The resourcequota controller (kube's `pkg/controller/resourcequota`): every quota's
//! `status.hard` mirrors its `spec.hard`, and `status.used` is recalculated from the stored
//! objects — on a period, when a quota is created or its spec changes, and when an object it
//! may count is deleted or a pod finishes (what frees quota; admission charges what takes
//! it). The usage rules are the API server's ([`crate::quota`]). Status is written with the
//! quota's resourceVersion, so a charge admission made meanwhile is not overwritten: the
//! conflict makes the next pass read it again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use tokio::sync::Notify;

use crate::informer::{Change, Informer};
use crate::quota::{self, GroupResource, Qty, Usage};
use crate::{Clock, Informers};

/// Full recalculation period (kube's --resource-quota-sync-period is 5 min; pea's is
/// shorter because its objects have no informer-driven incremental updates here).
pub const PERIOD: Duration = Duration::from_secs(30);
/// Changes arriving together are handled by one pass.
const SETTLE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("listing {resource} in {namespace}: {source}")]
    List {
        resource: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("discovering {group}: {source}")]
    Discover {
        group: String,
        #[source]
        source: kube::Error,
    },
    #[error("resource {0} is not served")]
    NotServed(String),
    #[error("updating status of quota {key}: {source}")]
    Status {
        key: String,
        #[source]
        source: kube::Error,
    },
}

pub struct ResourceQuotaController {
    client: Client,
    clock: Clock,
    quotas: Arc<Informer<ResourceQuota>>,
    dirty: Arc<Notify>,
}

impl std::fmt::Debug for ResourceQuotaController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceQuotaController")
            .finish_non_exhaustive()
    }
}

impl ResourceQuotaController {
    pub fn register(informers: &Informers, client: Client, clock: Clock) -> Arc<Self> {
        let dirty = Arc::new(Notify::new());
        let quotas = Informer::new(Api::<ResourceQuota>::all(client.clone()));
        let d = dirty.clone();
        quotas.add_handler(move |c| {
            let wake = match c {
                Change::Added(_) => true,
                Change::Updated { old, new } => {
                    old.spec != new.spec
                        || new.status.as_ref().and_then(|s| s.hard.as_ref())
                            != new.spec.as_ref().and_then(|s| s.hard.as_ref())
                }
                Change::Deleted(_) => false,
            };
            if wake {
                d.notify_one();
            }
        });
        let d = dirty.clone();
        informers.pods.add_handler(move |c| {
            let finished = |p: &k8s_openapi::api::core::v1::Pod| {
                matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            };
            match c {
                Change::Deleted(_) => d.notify_one(),
                Change::Updated { old, new } if !finished(old) && finished(new) => d.notify_one(),
                _ => {}
            }
        });
        let d = dirty.clone();
        informers.services.add_handler(move |c| {
            if matches!(c, Change::Deleted(_)) {
                d.notify_one();
            }
        });
        let d = dirty.clone();
        informers.persistentvolumeclaims.add_handler(move |c| {
            if matches!(c, Change::Deleted(_)) {
                d.notify_one();
            }
        });
        Arc::new(Self {
            client,
            clock,
            quotas,
            dirty,
        })
    }

    pub async fn run(self: Arc<Self>) {
        let informer = tokio::spawn(self.quotas.clone().run());
        self.quotas.cache().wait_synced().await;
        loop {
            self.sync_all().await;
            tokio::select! {
                _ = self.dirty.notified() => tokio::time::sleep(SETTLE).await,
                _ = tokio::time::sleep(PERIOD) => {}
            }
            if informer.is_finished() {
                tracing::warn!("resourcequota informer stopped");
                return;
            }
        }
    }

    async fn sync_all(&self) {
        let mut resources: BTreeMap<(String, String), ApiResource> = BTreeMap::new();
        for q in self.quotas.cache().list() {
            let key = format!("{}/{}", q.namespace().unwrap_or_default(), q.name_any());
            let span = tracing::debug_span!("resourcequota", quota = %key);
            let _g = span.enter();
            if let Err(e) = self.sync(&q, &mut resources).await {
                tracing::warn!(quota = %key, error = %e, "quota sync failed");
            }
        }
    }

    /// Recalculates one quota and writes its status if it changed.
    async fn sync(
        &self,
        q: &ResourceQuota,
        resources: &mut BTreeMap<(String, String), ApiResource>,
    ) -> Result<(), QuotaError> {
        let ns = q.namespace().unwrap_or_default();
        let json = serde_json::to_value(q).unwrap_or(Value::Null);
        let hard = quota::resource_list(json.pointer("/spec/hard"));
        let mut used: Usage = hard.keys().map(|k| (k.clone(), Qty::ZERO)).collect();
        for (group, plural) in counted_resources(&hard) {
            let gr = GroupResource {
                group: &group,
                plural: &plural,
            };
            let objects = self.list(&group, &plural, &ns, resources).await?;
            let now = std::time::SystemTime::from(self.clock.now());
            for obj in &objects {
                if !quota::matches(&json, &hard, gr, obj) {
                    continue;
                }
                let u = quota::usage::usage(gr, obj, now);
                let counted: Usage = u
                    .into_iter()
                    .filter(|(k, _)| hard.contains_key(k) && quota::usage::covers(gr, k))
                    .collect();
                quota::usage::add_into(&mut used, &counted);
            }
        }
        let same = |a: Option<&Value>, b: &Usage| {
            let a = quota::resource_list(a);
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| ka == kb && va.nano == vb.nano)
        };
        if same(json.pointer("/status/hard"), &hard) && same(json.pointer("/status/used"), &used) {
            return Ok(());
        }
        let mut next = q.clone();
        let status: k8s_openapi::api::core::v1::ResourceQuotaStatus =
            serde_json::from_value(serde_json::json!({
                "hard": quota::resource_list_json(&hard),
                "used": quota::resource_list_json(&used),
            }))
            .unwrap_or_default();
        next.status = Some(status);
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), &ns);
        let body = serde_json::to_vec(&next).unwrap_or_default();
        match api
            .replace_status(&q.name_any(), &PostParams::default(), body)
            .await
        {
            Ok(_) => {
                tracing::debug!(used = %quota::pretty(&used), "quota status written");
                Ok(())
            }
            // Admission charged meanwhile: the informer brings the new version, and the next
            // pass recalculates from it.
            Err(e) if crate::is_conflict(&e) => {
                self.dirty.notify_one();
                Ok(())
            }
            Err(source) => Err(QuotaError::Status {
                key: format!("{ns}/{}", q.name_any()),
                source,
            }),
        }
    }

    /// The objects of one resource in `ns`, as JSON.
    async fn list(
        &self,
        group: &str,
        plural: &str,
        ns: &str,
        resources: &mut BTreeMap<(String, String), ApiResource>,
    ) -> Result<Vec<Value>, QuotaError> {
        let key = (group.to_string(), plural.to_string());
        if !resources.contains_key(&key) {
            let g = kube::discovery::group(&self.client, group)
                .await
                .map_err(|source| QuotaError::Discover {
                    group: group.to_string(),
                    source,
                })?;
            for (ar, _) in g.recommended_resources() {
                resources.insert((group.to_string(), ar.plural.clone()), ar);
            }
        }
        let ar = resources
            .get(&key)
            .ok_or_else(|| QuotaError::NotServed(format!("{plural}.{group}")))?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, ar);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|source| QuotaError::List {
                resource: plural.to_string(),
                namespace: ns.to_string(),
                source,
            })?;
        Ok(list
            .items
            .iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect())
    }
}

/// The (group, plural) resources whose objects a quota limiting `hard` must count.
pub fn counted_resources(hard: &Usage) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |g: &str, p: &str| {
        if !out.iter().any(|(og, op)| og == g && op == p) {
            out.push((g.to_string(), p.to_string()));
        }
    };
    for name in hard.keys() {
        for core in ["pods", "services", "persistentvolumeclaims"] {
            let gr = GroupResource {
                group: "",
                plural: core,
            };
            if quota::usage::covers(gr, name) {
                add("", core);
            }
        }
        match name.as_str() {
            "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => add("", name),
            _ => {}
        }
        if let Some(r) = name.strip_prefix("count/") {
            match r.split_once('.') {
                Some((plural, group)) => add(group, plural),
                None => add("", r),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_names_select_the_resources_to_count() {
        let hard: Usage = [
            "pods",
            "requests.cpu",
            "services.nodeports",
            "requests.storage",
            "count/deployments.apps",
            "configmaps",
            "count/secrets",
        ]
        .iter()
        .map(|k| (k.to_string(), Qty::ZERO))
        .collect();
        let got: Vec<String> = counted_resources(&hard)
            .into_iter()
            .map(|(g, p)| format!("{p}.{g}"))
            .collect();
        assert_eq!(
            got,
            [
                "configmaps.",
                "deployments.apps",
                "secrets.",
                "pods.",
                "persistentvolumeclaims.",
                "services.",
            ]
        );
    }
}
