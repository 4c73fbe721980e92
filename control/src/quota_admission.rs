//! kube-apiserver's ResourceQuota admission (the last validating plugin): a new object (or an
//! update of a Service or claim that uses more) is refused when it would take a quota of its
//! namespace past `status.hard`, and otherwise charged to `status.used` before it is stored. Each charge is a compare-and-swap on the
//! quota's revision, re-checked on conflict, so concurrent creates cannot overshoot; the
//! resourcequota controller recalculates usage from the stored objects later (a create that
//! fails after its charge is corrected there, as in kube).

use pea_controllers::quota::{self, Decision, GroupResource, Usage};
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
        Some(ns) => admit(ctx.api, ctx.def, ns, None, obj, ctx.dry_run()).await,
        None => Ok(()),
    }
}

/// Quota admission of an update (not of subresources): kube's Service and
/// PersistentVolumeClaim evaluators charge what the update adds (a Service turned NodePort or
/// LoadBalancer, a claim's storage request raised); other kinds are charged on create only.
pub async fn admit_update(ctx: &Ctx<'_>, old: &Value, obj: &Value) -> Result<(), ApiError> {
    let charged_on_update = matches!(
        (ctx.def.group, ctx.def.plural),
        ("", "services") | ("", "persistentvolumeclaims")
    );
    match ctx.namespace() {
        Some(ns) if charged_on_update && ctx.info.subresource.is_none() => {
            admit(ctx.api, ctx.def, ns, Some(old), obj, ctx.dry_run()).await
        }
        _ => Ok(()),
    }
}

/// kube's `SubtractWithNonNegativeResult`: what `new` uses beyond `old`, only what grew.
fn growth(new: &Usage, old: &Usage) -> Usage {
    new.iter()
        .filter_map(|(k, v)| {
            let before = old.get(k).map_or(0, |q| q.nano);
            (v.nano > before).then(|| {
                (
                    k.clone(),
                    quota::Qty {
                        nano: v.nano - before,
                        binary: v.binary,
                    },
                )
            })
        })
        .collect()
}

/// Checks and charges the quotas of `ns` for `obj` of `def` (new, or replacing `old`: then
/// only the growth is charged); with `dry_run` it only checks. Quotas come from admission's
/// cache; each charge is a compare-and-swap against the revision the quota was read at, and a
/// conflict re-reads it from the store.
pub async fn admit(
    api: &Api,
    def: &ResourceDef,
    ns: &str,
    old: Option<&Value>,
    obj: &Value,
    dry_run: bool,
) -> Result<(), ApiError> {
    let Some(quotas) = api.resources.find("", "v1", PLURAL) else {
        return Ok(());
    };
    let cached = api
        .informers
        .resource_quotas
        .list(api.store.as_ref(), &quotas.prefix(Some(ns)))
        .await?;
    if cached.is_empty() {
        return Ok(());
    }
    let gr = GroupResource {
        group: def.group,
        plural: def.plural,
    };
    let now = (api.clock)();
    let mut delta = quota::usage::usage(gr, obj, now);
    if let Some(old) = old {
        delta = growth(&delta, &quota::usage::usage(gr, old, now));
        if delta.is_empty() {
            return Ok(());
        }
    }
    let name = objects::name_of(obj).to_string();
    let refuse = |message: String| ApiError::Forbidden {
        group: def.group.into(),
        resource: def.plural.into(),
        name: name.clone(),
        message,
    };
    // Check every quota before charging any, so a refusal by one charges none.
    let mut charges = Vec::new();
    for c in &cached {
        match quota::check(&c.obj, gr, obj, &delta) {
            Decision::NotMatched | Decision::Admit(None) => {}
            Decision::Refuse(m) => return Err(refuse(m)),
            Decision::Admit(Some(used)) => {
                charges.push((c.key.clone(), c.obj.clone(), c.rev, used))
            }
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
                Ok(kv) => {
                    api.informers.resource_quotas.observe(&kv);
                    break;
                }
                Err(pea_control_store::StoreError::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                    attempt += 1;
                    // Someone else charged (or the controller recalculated), or the cache was
                    // behind: check again against the stored quota.
                    let (kv, _) = api
                        .store
                        .get(&key)
                        .await
                        .map_err(|e| ApiError::from_store(e, "", PLURAL, ""))?;
                    let Some(kv) = kv else { break };
                    api.informers.resource_quotas.observe(&kv);
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
