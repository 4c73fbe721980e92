//! kube-apiserver's ResourceQuota admission (the last validating plugin): a new object is
//! refused when it would take a quota of its namespace past `status.hard`, and otherwise
//! charged to `status.used` before it is stored. Each charge is a compare-and-swap on the
//! quota's revision, re-checked on conflict, so concurrent creates cannot overshoot; the
//! resourcequota controller recalculates usage from the stored objects later (a create that
//! fails after its charge is corrected there, as in kube).

use pea_controllers::quota::{self, Decision, GroupResource};
use serde_json::Value;

use crate::api::{Api, Ctx};
use crate::objects;
use crate::resources::ResourceDef;
use crate::status::ApiError;

const PLURAL: &str = "resourcequotas";
/// Conflicts tolerated per quota before the request gives up (kube retries its batch too).
const MAX_ATTEMPTS: usize = 32;

/// Quota admission of a create request (namespaced resources only).
pub async fn admit_new(ctx: &Ctx<'_>, obj: &Value) -> Result<(), ApiError> {
    match ctx.namespace() {
        Some(ns) => admit(ctx.api, ctx.def, ns, obj, ctx.dry_run()).await,
        None => Ok(()),
    }
}

/// Checks and charges the quotas of `ns` for the new object `obj` of `def`; with `dry_run`
/// it only checks.
pub async fn admit(
    api: &Api,
    def: &ResourceDef,
    ns: &str,
    obj: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let Some(quotas) = api.resources.find("", "v1", PLURAL) else {
        return Ok(());
    };
    let page = api
        .store
        .list(&quotas.prefix(Some(ns)), &Default::default())
        .await
        .map_err(|e| ApiError::from_store(e, "", PLURAL, ""))?;
    if page.items.is_empty() {
        return Ok(());
    }
    let gr = GroupResource {
        group: def.group,
        plural: def.plural,
    };
    let now = (api.clock)();
    let delta = quota::usage::usage(gr, obj, now);
    let name = objects::name_of(obj).to_string();
    let refuse = |message: String| ApiError::Forbidden {
        group: def.group.into(),
        resource: def.plural.into(),
        name: name.clone(),
        message,
    };
    // Check every quota before charging any, so a refusal by one charges none.
    let mut charges = Vec::new();
    for kv in &page.items {
        let q = objects::decode(kv)?;
        match quota::check(&q, gr, obj, &delta) {
            Decision::NotMatched | Decision::Admit(None) => {}
            Decision::Refuse(m) => return Err(refuse(m)),
            Decision::Admit(Some(used)) => charges.push((kv.key.clone(), q, kv.mod_revision, used)),
        }
    }
    if dry_run {
        return Ok(());
    }
    for (key, mut q, mut rev, mut used) in charges {
        let mut attempt = 0;
        loop {
            q["status"]["used"] = quota::resource_list_json(&used);
            match api.store.update(&key, objects::encode(&q), rev).await {
                Ok(_) => break,
                Err(pea_control_store::StoreError::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                    attempt += 1;
                    // Someone else charged (or the controller recalculated): check again.
                    let (kv, _) = api
                        .store
                        .get(&key)
                        .await
                        .map_err(|e| ApiError::from_store(e, "", PLURAL, ""))?;
                    let Some(kv) = kv else { break };
                    q = objects::decode(&kv)?;
                    rev = kv.mod_revision;
                    match quota::check(&q, gr, obj, &delta) {
                        Decision::NotMatched | Decision::Admit(None) => break,
                        Decision::Refuse(m) => return Err(refuse(m)),
                        Decision::Admit(Some(u)) => used = u,
                    }
                }
                Err(e) => {
                    let qname = objects::name_of(&q).to_string();
                    return Err(ApiError::from_store(e, "", PLURAL, &qname));
                }
            }
        }
        tracing::debug!(%key, object = %name, "charged quota");
    }
    Ok(())
}

/// kube's ResourceQuota strategy: a new quota starts without status (the controller fills
/// it), and a quota's spec is checked as kube's `ValidateResourceQuota`.
pub fn prepare_new(obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
}
