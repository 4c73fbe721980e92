//! OpenAPI v3 for custom resources: each served version's schema as a component named like
//! kube's (`com.example.stable.v1.CronTab`), tagged with its group-version-kind, with
//! `metadata` pointing at ObjectMeta, so `kubectl explain crontab.spec` works.

use serde_json::{json, Value};

use crate::resources::ResourceDef;

/// kube's component name: the group reversed, then version and kind.
pub fn schema_name(d: &ResourceDef) -> String {
    let mut parts: Vec<&str> = d.group.split('.').collect();
    parts.reverse();
    format!("{}.{}.{}", parts.join("."), d.version, d.kind)
}

/// The component schema of `d` (a custom resource), `meta_ref` being ObjectMeta's `$ref`.
pub fn schema(d: &ResourceDef, meta_ref: &str) -> Option<Value> {
    let custom = d.custom.as_ref()?;
    let mut s = super::schema::published(&custom.raw_schema, meta_ref);
    s["x-kubernetes-group-version-kind"] =
        json!([{"group": d.group, "version": d.version, "kind": d.kind}]);
    Some(s)
}

/// A hash for the `/openapi/v3` index that changes whenever a CRD of `group` changes (kubectl
/// caches documents by it).
pub fn hash(defs: &[ResourceDef]) -> String {
    let sum: i64 = defs
        .iter()
        .filter_map(|d| d.custom.as_ref())
        .map(|c| c.revision)
        .fold(0i64, |a, r| a.wrapping_mul(31).wrapping_add(r));
    format!("{sum:X}")
}
