//! OpenAPI v3 documents per group-version, built from k8s-openapi's schemas: real component
//! schemas (so `kubectl explain` works) tagged with `x-kubernetes-group-version-kind`, and paths
//! whose write operations list `fieldValidation` (kubectl then trusts server-side validation).

use std::collections::BTreeMap;

use k8s_openapi::schemars::{generate::SchemaSettings, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::resources::{ResourceDef, Resources};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The `/openapi/v3` index.
pub fn root(r: &Resources) -> Value {
    let mut paths = Map::new();
    for (g, v) in r.groups() {
        let p = gv_path(g, v);
        // A custom group-version's document changes with its CRDs: so does its hash.
        let defs = r.in_group_version(g, v);
        let hash = if defs.iter().any(|d| d.custom.is_some()) {
            crate::crd::openapi::hash(&defs)
        } else {
            env!("CARGO_PKG_VERSION").replace('.', "")
        };
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

fn gvk(def: &ResourceDef) -> Value {
    json!([{"group": def.group, "version": def.version, "kind": def.kind}])
}

fn param(name: &str, location: &str, description: &str) -> Value {
    json!({"name": name, "in": location, "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(def: &ResourceDef, action: &str, id: &str, write: bool, schema_ref: &str) -> Value {
    let mut params = Vec::new();
    if write {
        params.push(param(
            "dryRun",
            "query",
            "When present, indicates that modifications should not be persisted.",
        ));
        params.push(param("fieldManager", "query", "fieldManager is a name associated with the actor or entity that is making these changes."));
        params.push(param("fieldValidation", "query", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn (default) or Strict."));
    }
    let mut op = json!({
        "operationId": id,
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": schema_ref}}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(def)[0],
    });
    if write && action != "delete" {
        op["requestBody"] =
            json!({"content": {"*/*": {"schema": {"$ref": schema_ref}}}, "required": true});
    }
    op
}

/// The OpenAPI v3 document of one group-version (`api/v1`, `apis/apps/v1`).
pub fn document(r: &Resources, path: &str) -> Option<Value> {
    let (group, version) = r
        .groups()
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == path)?;
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
    let defs = r.in_group_version(group, version);
    let mut names = BTreeMap::new();
    let mut custom = Vec::new();
    for d in &defs {
        if d.custom.is_some() {
            let meta = generator
                .subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>();
            let meta_ref = meta
                .get("$ref")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let name = crate::crd::openapi::schema_name(d);
            custom.push((name.clone(), crate::crd::openapi::schema(d, &meta_ref)?));
            names.insert(d.kind, name);
            continue;
        }
        let reference = (d.schema)(&mut generator);
        let name = reference
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|s| s.rsplit('/').next())
            .map(str::to_string)?;
        names.insert(d.kind, name);
    }
    let mut schemas = generator.take_definitions(true);
    for (name, s) in custom {
        schemas.insert(name, s);
    }
    let mut paths = Map::new();
    let base = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    for d in &defs {
        let name = names.get(d.kind)?;
        if let Some(s) = schemas.get_mut(name).and_then(Value::as_object_mut) {
            s.insert("x-kubernetes-group-version-kind".into(), gvk(d));
        }
        let schema_ref = format!("#/components/schemas/{name}");
        let coll = if d.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", d.plural)
        } else {
            format!("{base}/{}", d.plural)
        };
        let kind = d.kind;
        paths.insert(
            coll.clone(),
            json!({
                "get": operation(d, "list", &format!("list{kind}"), false, &schema_ref),
                "post": operation(d, "post", &format!("create{kind}"), true, &schema_ref),
            }),
        );
        paths.insert(
            format!("{coll}/{{name}}"),
            json!({
                "get": operation(d, "get", &format!("read{kind}"), false, &schema_ref),
                "put": operation(d, "put", &format!("replace{kind}"), true, &schema_ref),
                "patch": operation(d, "patch", &format!("patch{kind}"), true, &schema_ref),
                "delete": operation(d, "delete", &format!("delete{kind}"), true, &schema_ref),
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0-pea"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_document_has_tagged_pod_schema_and_field_validation() {
        let r = Resources::builtin();
        let doc = document(&r, "api/v1").unwrap();
        let pod = &doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
        assert!(
            doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
                .is_object()
        );
        let post = &doc["paths"]["/api/v1/namespaces/{namespace}/pods"]["post"];
        assert!(post["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        assert!(document(&r, "apis/nope/v1").is_none());
        assert!(root(&r)["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/apis/apps/v1"));
    }
}
