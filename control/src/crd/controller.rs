//! The CRD controller (kube-apiextensions' naming, establishing and finalizing controllers in
//! one pass): accepts each CRD's names unless another CRD (older first) or a built-in holds
//! them, sets NamesAccepted/Established/Terminating and storedVersions, rebuilds the live table
//! of served custom resources, and deletes a deleted CRD's objects before the CRD itself.
//!
//! A pass runs at startup, after every CRD write (before the reply, so the next request sees
//! the change) and periodically (changes written by another server on the same etcd).

use std::sync::Arc;

use serde_json::{json, Value};

use super::{columns, scale::ScalePaths, schema::Schema, CustomResource, Table};
use crate::api::Api;
use crate::objects;
use crate::resources::ResourceDef;

/// The store prefix of CustomResourceDefinitions.
pub fn prefix() -> String {
    format!("/registry/{}/customresourcedefinitions/", super::GROUP)
}

/// kube's version priority (`version.CompareKubeAwareVersionStrings`): GA > beta > alpha,
/// higher numbers first, non-kube-like names last in alphabetical order.
fn version_rank(v: &str) -> (u8, u64, u64, String) {
    let parse = || -> Option<(u8, u64, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, u64::MAX - major, 0));
        }
        for (tag, rank) in [("beta", 1u8), ("alpha", 2u8)] {
            if let Some(n) = tail.strip_prefix(tag) {
                let minor: u64 = n.parse().ok()?;
                return Some((rank, u64::MAX - major, u64::MAX - minor));
            }
        }
        None
    };
    match parse() {
        Some((a, b, c)) => (a, b, c, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

fn cond(t: &str, status: bool, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": t, "status": if status { "True" } else { "False" }, "reason": reason,
        "message": message, "lastTransitionTime": now})
}

/// Keeps a condition's transition time when its status did not change.
fn merge_conditions(old: Option<&Value>, mut new: Vec<Value>) -> Vec<Value> {
    let old = old.and_then(Value::as_array).cloned().unwrap_or_default();
    for c in &mut new {
        if let Some(prev) = old.iter().find(|o| o["type"] == c["type"]) {
            if prev["status"] == c["status"] {
                c["lastTransitionTime"] = prev["lastTransitionTime"].clone();
            }
        }
    }
    new
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Why `crd`'s names cannot be accepted, given the names already taken in its group.
fn name_conflict(api: &Api, crd: &Value, taken: &[(String, String)]) -> Option<String> {
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    let n = &crd["spec"]["names"];
    let get = |k: &str| n.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let plural = get("plural");
    let kind = get("kind");
    let in_use = |name: &str| taken.iter().any(|(g, t)| g == group && t == name);
    if in_use(&plural) {
        return Some(format!("{plural:?} is already in use"));
    }
    if in_use(&get("singular")) {
        return Some(format!("{:?} is already in use", get("singular")));
    }
    for short in str_list(n.get("shortNames")) {
        if in_use(&short) {
            return Some(format!("{short:?} is already in use"));
        }
    }
    if in_use(&format!("kind:{kind}")) || in_use(&format!("kind:{}", get("listKind"))) {
        return Some(format!("{kind:?} is already in use"));
    }
    // pea dispatches defaulting, validation and allocation on kind names: a custom kind
    // spelled like a built-in one is refused rather than half treated as the built-in.
    if api
        .resources
        .all()
        .iter()
        .any(|d| d.kind == kind || d.list_kind() == kind)
    {
        return Some(format!("{kind:?} is the kind of a built-in resource"));
    }
    None
}

fn claim(crd: &Value, taken: &mut Vec<(String, String)>) {
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let n = &crd["spec"]["names"];
    let mut names = vec![];
    for k in ["plural", "singular"] {
        names.push(n.get(k).and_then(Value::as_str).unwrap_or("").to_string());
    }
    names.extend(str_list(n.get("shortNames")));
    for k in ["kind", "listKind"] {
        names.push(format!(
            "kind:{}",
            n.get(k).and_then(Value::as_str).unwrap_or("")
        ));
    }
    for name in names.into_iter().filter(|n| !n.is_empty() && n != "kind:") {
        taken.push((group.clone(), name));
    }
}

/// The served versions of an established CRD as resource definitions, preferred first.
fn build_defs(
    api: &Api,
    crd: &Value,
    revision: i64,
) -> Result<(Vec<ResourceDef>, Option<ResourceDef>), String> {
    let reg = &api.resources.custom;
    let spec = &crd["spec"];
    let get = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or("");
    let i = |s: &str| reg.intern(s).map_err(|e| e.to_string());
    let group = i(get("/spec/group"))?;
    let kind = i(get("/spec/names/kind"))?;
    let plural = i(get("/spec/names/plural"))?;
    let singular = i(get("/spec/names/singular"))?;
    let short = reg
        .intern_list(&str_list(spec.pointer("/names/shortNames")))
        .map_err(|e| e.to_string())?;
    let categories = reg
        .intern_list(&str_list(spec.pointer("/names/categories")))
        .map_err(|e| e.to_string())?;
    let namespaced = get("/spec/scope") == "Namespaced";
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage = versions
        .iter()
        .find(|v| v["storage"] == true)
        .and_then(|v| v["name"].as_str())
        .ok_or("no storage version")?;
    let storage_version = i(storage)?;
    let mut defs = Vec::new();
    let mut stored = None;
    let crd_name = objects::name_of(crd).to_string();
    for (n, v) in versions.iter().enumerate() {
        let name = v["name"].as_str().unwrap_or("");
        let at = format!("spec.versions[{n}]");
        let raw = v
            .pointer("/schema/openAPIV3Schema")
            .cloned()
            .unwrap_or(json!({}));
        let schema = Schema::compile(&raw, &format!("{at}.schema.openAPIV3Schema"))
            .map_err(|c| format!("{}: {}", c[0].0, c[0].1))?;
        let cols = columns::compile(
            v.get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]),
            &format!("{at}.additionalPrinterColumns"),
        )
        .map_err(|c| format!("{}: {}", c[0].0, c[0].1))?;
        let scale = match v.pointer("/subresources/scale") {
            Some(s) => {
                Some(ScalePaths::parse(s, &at).map_err(|c| format!("{}: {}", c[0].0, c[0].1))?)
            }
            None => None,
        };
        let mut subs = Vec::new();
        if v.pointer("/subresources/status").is_some() {
            subs.push("status".to_string());
        }
        if scale.is_some() {
            subs.push("scale".to_string());
        }
        let subresources = reg.intern_list(&subs).map_err(|e| e.to_string())?;
        let has_defaults = schema.has_defaults();
        let has_rules = super::rules::any(&schema);
        let def = ResourceDef {
            group,
            version: i(name)?,
            kind,
            plural,
            singular,
            namespaced,
            short_names: short,
            categories,
            subresources,
            validate: super::untyped,
            schema: |g| g.subschema_for::<Value>(),
            custom: Some(Arc::new(CustomResource {
                crd_name: crd_name.clone(),
                storage_version,
                schema,
                raw_schema: raw,
                columns: cols,
                scale,
                has_defaults,
                has_rules,
                revision,
                conversion: super::conversion::Webhook::of(spec),
            })),
        };
        if name == storage {
            stored = Some(def.clone());
        }
        if v["served"] == true {
            defs.push(def);
        }
    }
    defs.sort_by_key(|d| version_rank(d.version));
    Ok((defs, stored))
}

/// One controller pass; errors are logged (the next pass retries).
pub async fn reconcile(api: &Arc<Api>) {
    let _pass = api.resources.custom.reconcile.lock().await;
    let page = match api.store.list(&prefix(), &Default::default()).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "crd controller: listing CustomResourceDefinitions failed");
            return;
        }
    };
    let mut crds: Vec<(String, Value, i64)> = Vec::new();
    for kv in &page.items {
        match objects::decode(kv) {
            Ok(v) => crds.push((kv.key.clone(), v, kv.mod_revision)),
            Err(e) => tracing::warn!(key = %kv.key, error = %e, "crd controller: undecodable CRD"),
        }
    }
    // Nothing changed since the table was built (the periodic pass, mostly): keep it, without
    // recompiling every schema.
    let mut listed: Vec<(String, i64)> = crds.iter().map(|(k, _, r)| (k.clone(), *r)).collect();
    listed.sort();
    let terminating = crds
        .iter()
        .any(|(_, v, _)| v.pointer("/metadata/deletionTimestamp").is_some());
    if !terminating && api.resources.custom.snapshot().built_from == listed {
        return;
    }
    // Older CRDs keep their names when a newer one asks for the same.
    crds.sort_by(|a, b| {
        let t = |v: &Value| {
            objects::meta_str(v, "creationTimestamp")
                .unwrap_or("")
                .to_string()
        };
        t(&a.1).cmp(&t(&b.1)).then(a.0.cmp(&b.0))
    });
    let now = objects::rfc3339((api.clock)());
    let mut taken: Vec<(String, String)> = Vec::new();
    // Built-in resources' names in their groups are taken.
    for d in api.resources.all() {
        for n in [d.plural, d.singular].iter().chain(d.short_names) {
            taken.push((d.group.to_string(), n.to_string()));
        }
        taken.push((d.group.to_string(), format!("kind:{}", d.kind)));
    }
    let mut table = Table::default();
    for (key, crd, rev) in &mut crds {
        let terminating = crd.pointer("/metadata/deletionTimestamp").is_some();
        let conflict = if terminating {
            None
        } else {
            name_conflict(api, crd, &taken)
        };
        let names_accepted = cond(
            "NamesAccepted",
            true,
            "NoConflicts",
            "no conflicts found",
            &now,
        );
        let mut conditions = Vec::new();
        let mut status = crd.get("status").cloned().unwrap_or(json!({}));
        let mut serve = false;
        if terminating {
            conditions.push(names_accepted.clone());
            conditions.push(cond(
                "Established",
                false,
                "Terminating",
                "the CustomResourceDefinition is being deleted",
                &now,
            ));
            conditions.push(cond(
                "Terminating",
                true,
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
                &now,
            ));
            claim(crd, &mut taken);
        } else if let Some(why) = &conflict {
            conditions.push(cond("NamesAccepted", false, "NameConflict", why, &now));
            conditions.push(cond(
                "Established",
                false,
                "NotAccepted",
                "not all names are accepted",
                &now,
            ));
        } else {
            claim(crd, &mut taken);
            conditions.push(names_accepted.clone());
            conditions.push(cond(
                "Established",
                true,
                "InitialNamesAccepted",
                "the initial names have been accepted",
                &now,
            ));
            status["acceptedNames"] = crd["spec"]["names"].clone();
            serve = true;
        }
        status["conditions"] = json!(merge_conditions(status.get("conditions"), conditions));
        if serve {
            let storage = crd["spec"]["versions"]
                .as_array()
                .and_then(|vs| vs.iter().find(|v| v["storage"] == true))
                .and_then(|v| v["name"].as_str())
                .unwrap_or("")
                .to_string();
            let mut stored = str_list(status.get("storedVersions"));
            if !storage.is_empty() && !stored.contains(&storage) {
                stored.push(storage);
            }
            status["storedVersions"] = json!(stored);
        }
        if crd.get("status") != Some(&status) {
            crd["status"] = status;
            match api.store.update(key, objects::encode(crd), *rev).await {
                Ok(kv) => *rev = kv.mod_revision,
                Err(e) => {
                    tracing::debug!(key = %key, error = %e, "crd controller: status write lost a race; next pass retries")
                }
            }
        }
        if serve {
            match build_defs(api, crd, *rev) {
                Ok((served, stored)) => {
                    table.served.extend(served);
                    table.stored.extend(stored);
                }
                Err(e) => {
                    tracing::warn!(crd = %objects::name_of(crd), error = %e, "crd controller: not serving")
                }
            }
        } else if terminating {
            if let Ok((_, Some(stored))) = build_defs(api, crd, *rev) {
                start_cleanup(api, crd.clone(), stored);
            }
        }
        table.built_from.push((key.clone(), *rev));
    }
    table.built_from.sort();
    let before = api.resources.custom.snapshot();
    if before.built_from != table.built_from || before.served.len() != table.served.len() {
        api.resources.custom.replace(table);
        if let Ok(mut cache) = api.openapi_cache.lock() {
            cache.clear();
        }
    }
}

/// Deletes a terminating CRD's objects, then the CRD (its finalizer done), in the background.
fn start_cleanup(api: &Arc<Api>, crd: Value, stored: ResourceDef) {
    let name = objects::name_of(&crd).to_string();
    {
        let mut cleaning = api
            .resources
            .custom
            .cleaning
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !cleaning.insert(name.clone()) {
            return;
        }
    }
    let api = api.clone();
    tokio::spawn(async move {
        let done = cleanup(&api, &name, &stored).await;
        api.resources
            .custom
            .cleaning
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name);
        if done {
            reconcile(&api).await;
        }
    });
}

/// Bounded rounds of deleting every stored object, then the finalizer; true when the CRD went.
async fn cleanup(api: &Arc<Api>, name: &str, stored: &ResourceDef) -> bool {
    let objects_prefix = stored.prefix(None);
    for _ in 0..100 {
        let page = match api.store.list(&objects_prefix, &Default::default()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(crd = name, error = %e, "crd cleanup: listing objects failed");
                return false;
            }
        };
        if page.items.is_empty() {
            break;
        }
        for kv in page.items {
            if let Err(e) = api.store.delete(&kv.key, Some(kv.mod_revision)).await {
                tracing::debug!(key = %kv.key, error = %e, "crd cleanup: delete raced; retrying");
            }
        }
    }
    let key = format!("{}{name}", prefix());
    let Ok((Some(kv), _)) = api.store.get(&key).await else {
        return true;
    };
    let Ok(mut crd) = objects::decode(&kv) else {
        return false;
    };
    let remaining: Vec<Value> = crd
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter(|x| *x != super::CLEANUP_FINALIZER)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let result = if remaining.is_empty() {
        api.store
            .delete(&key, Some(kv.mod_revision))
            .await
            .map(|_| ())
    } else {
        crd["metadata"]["finalizers"] = json!(remaining);
        api.store
            .update(&key, objects::encode(&crd), kv.mod_revision)
            .await
            .map(|_| ())
    };
    if let Err(e) = &result {
        tracing::warn!(crd = name, error = %e, "crd cleanup: removing the finalizer failed");
    }
    tracing::info!(crd = name, "custom resources deleted with their definition");
    result.is_ok()
}

/// Reconciles every `interval` until the server stops (picks up CRD changes made through
/// another server on the same store).
pub async fn run_periodically(
    api: Arc<Api>,
    interval: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        reconcile(&api).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_kube() {
        let mut v = vec!["v1beta1", "foo", "v2alpha1", "v1", "v2", "v10beta3"];
        v.sort_by_key(|x| version_rank(x));
        assert_eq!(v, ["v2", "v1", "v10beta3", "v1beta1", "v2alpha1", "foo"]);
    }
}
