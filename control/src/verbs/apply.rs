//! Server-side apply (PATCH with application/apply-patch+yaml): merges the applied
//! configuration into the live object, tracks field ownership per manager in
//! `metadata.managedFields`, reports conflicts with other managers (409) unless `force=true`,
//! and removes fields this manager applied before but no longer applies. Creates the object when
//! it does not exist; an apply to `status` changes only status. Bodies must be JSON (kubectl
//! sends JSON); YAML text is refused clearly.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::admission::{self, Operation};
use crate::api::{Ctx, Reply};
use crate::managed::{self, Entry, FieldPath};
use crate::objects;
use crate::status::ApiError;
use crate::verbs::create::{prepare_new, with_warnings};
use crate::verbs::{strategic, update, validate};

fn display(path: &FieldPath) -> String {
    path.iter()
        .filter(|s| s.as_str() != ".")
        .map(|s| match s.strip_prefix("f:") {
            Some(f) => format!(".{f}"),
            None => format!("[{}]", s.trim_start_matches("k:")),
        })
        .collect()
}

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let name = ctx.name()?;
    let status_only = match ctx.info.subresource.as_deref() {
        None => false,
        Some("status") => true,
        Some(other) => {
            return Err(ApiError::NotImplemented(format!(
                "server-side apply to the {other} subresource is not implemented"
            )))
        }
    };
    let manager = ctx
        .query
        .get("fieldManager")
        .ok_or_else(|| ApiError::BadRequest("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into()))?
        .to_string();
    let force = ctx.query.flag("force");
    let applied: Value = serde_json::from_slice(&ctx.body).map_err(|e| {
        ApiError::UnsupportedMediaType(format!(
            "apply bodies must be JSON-compatible YAML (JSON); YAML text is not implemented: {e}"
        ))
    })?;
    if !applied.is_object() {
        return Err(ApiError::BadRequest(
            "the applied configuration must be an object".into(),
        ));
    }
    if objects::name_of(&applied) != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the applied object ({}) does not match the name on the URL ({name})",
            objects::name_of(&applied)
        )));
    }
    let applied_paths = if status_only {
        managed::status_paths(&applied)
    } else {
        managed::paths_of(&applied)
    };
    let subresource = if status_only { "status" } else { "" }.to_string();
    let now = objects::rfc3339(ctx.now());
    let api_version = ctx.def.api_version();
    let mine = |fields: BTreeSet<FieldPath>| Entry {
        manager: manager.clone(),
        operation: "Apply".into(),
        subresource: subresource.clone(),
        api_version: api_version.clone(),
        time: now.clone(),
        fields,
    };
    // A manager is identified by name and operation: kubectl's Apply and its Updates differ.
    let is_mine =
        |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == subresource;
    for attempt in 0..5 {
        let (current, rev) = match ctx.current(name).await {
            Ok(c) => c,
            Err(ApiError::NotFound { .. }) if !status_only => {
                let mut obj = applied.clone();
                prepare_new(ctx, &mut obj)?;
                crate::service_alloc::prepare_new(ctx.api, ctx.def.kind, &mut obj)?;
                if ctx.def.kind == "PersistentVolumeClaim" {
                    crate::storage::admit_claim(ctx.api, &mut obj).await?;
                }
                crate::serviceaccount::admission::admit(ctx, &mut obj).await?;
                crate::limitranger::admit_new(ctx, &mut obj).await?;
                crate::priority::admit_new(ctx, &mut obj).await?;
                crate::ingressclass::admit_new(ctx, &mut obj).await?;
                crate::inuse_protection::admit_new(ctx, &mut obj);
                let admitted = admission::mutate(ctx, Operation::Create, None, &mut obj).await?;
                let warnings = validate(ctx, &mut obj)?;
                crate::rbac::escalation::admit(ctx, None, &obj)?;
                managed::write(&mut obj, &[mine(applied_paths.clone())]);
                if let Some(ns) = ctx.namespace() {
                    crate::verbs::create::check_namespace(ctx, ns).await?;
                }
                let checked = admission::validate(ctx, Operation::Create, None, &obj).await?;
                crate::quota_admission::admit_new(ctx, &obj).await?;
                let warnings = [warnings, admitted, checked].concat();
                if ctx.dry_run() {
                    if ctx.def.kind == "Service" {
                        crate::portalloc::check_taken(ctx.api.store.as_ref(), None, &obj).await?;
                    }
                    return Ok(with_warnings(ctx.render_one(obj, 201), warnings));
                }
                let held =
                    crate::service_alloc::allocate_new(ctx.api, ctx.def.kind, &mut obj).await?;
                let created = ctx
                    .api
                    .store
                    .create(&ctx.key(name), objects::encode(&obj))
                    .await;
                if created.is_err() {
                    held.release(ctx.api.store.as_ref(), &obj).await;
                }
                match created {
                    Ok(kv) => {
                        objects::set_resource_version(&mut obj, kv.mod_revision);
                        return Ok(with_warnings(ctx.render_one(obj, 201), warnings));
                    }
                    Err(pea_control_store::StoreError::AlreadyExists { .. }) if attempt < 4 => {
                        continue
                    }
                    Err(e) => return Err(ctx.store_err(name)(e)),
                }
            }
            Err(e) => return Err(e),
        };
        let mut entries = managed::read(&current);
        // Conflicts: fields another manager owns, applied here with a different value.
        let mut conflicts = Vec::new();
        for e in entries.iter().filter(|e| !is_mine(e)) {
            for p in e.fields.intersection(&applied_paths) {
                if p.last().map(String::as_str) == Some(".") {
                    continue;
                }
                if managed::value_at(&current, p) != managed::value_at(&applied, p) {
                    conflicts.push((e.manager.clone(), p.clone()));
                }
            }
        }
        if !conflicts.is_empty() && !force {
            let detail: Vec<String> = conflicts
                .iter()
                .map(|(m, p)| format!("conflict with \"{m}\": {}", display(p)))
                .collect();
            return Err(ApiError::Conflict {
                group: ctx.def.group.into(),
                resource: ctx.def.plural.into(),
                name: name.into(),
                reason: format!(
                    "Apply failed with {} conflict{}: {}",
                    conflicts.len(),
                    if conflicts.len() == 1 { "" } else { "s" },
                    detail.join("\n")
                ),
            });
        }
        let previous: BTreeSet<FieldPath> = entries
            .iter()
            .filter(|e| is_mine(e))
            .flat_map(|e| e.fields.iter().cloned())
            .collect();
        for e in entries.iter_mut().filter(|e| !is_mine(e)) {
            // Forced (or equal-valued) fields now belong to this manager alone when forced.
            if force {
                e.fields.retain(|p| !applied_paths.contains(p));
            }
        }
        let others: BTreeSet<FieldPath> = entries
            .iter()
            .filter(|e| !is_mine(e))
            .flat_map(|e| e.fields.iter().cloned())
            .collect();
        let mut merged = strategic::apply(&current, &applied)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        // Fields this manager stopped applying, owned by nobody else, are removed (deepest first).
        let mut dropped: Vec<&FieldPath> = previous
            .iter()
            .filter(|p| !applied_paths.contains(*p) && !others.contains(*p))
            .collect();
        dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in dropped {
            managed::remove_at(&mut merged, p);
        }
        entries.retain(|e| !is_mine(e));
        entries.push(mine(applied_paths.clone()));
        managed::write(&mut merged, &entries);
        match update::write(ctx, name, current, rev, merged, None).await {
            Ok((obj, warnings)) => return Ok(with_warnings(ctx.render_one(obj, 200), warnings)),
            Err(ApiError::Conflict { reason, .. })
                if reason.contains("has been modified") && attempt < 4 =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::Conflict {
        group: ctx.def.group.into(),
        resource: ctx.def.plural.into(),
        name: name.into(),
        reason: "the object kept changing during apply; try again".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_paths_read_like_kubernetes() {
        let p: FieldPath = vec![
            "f:spec".into(),
            "f:containers".into(),
            "k:{\"name\":\"c\"}".into(),
            "f:image".into(),
        ];
        assert_eq!(display(&p), ".spec.containers[{\"name\":\"c\"}].image");
    }
}
