//! The OpenAPI v2 (swagger 2.0) document at `/openapi/v2`, as JSON: `definitions` converted
//! from the same k8s-openapi schemas as the v3 documents (`openapi.rs`), tagged with
//! `x-kubernetes-group-version-kind`, and paths in v2 shape; or, for clients that ask for it
//! (client-go's discovery, so kubectl), the same document as protobuf (`openapi_v2_pb.rs`).
//! Anything else gets 406.

use k8s_openapi::schemars::{generate::SchemaSettings, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::resources::{ResourceDef, Resources};
use crate::status::ApiError;

pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The Content-Type answered with it: kube-openapi's spelling without `@`, which Go's
/// mime.ParseMediaType (client-go) accepts.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The form a client gets the document in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Protobuf,
}

/// Picks the form by the Accept header, in the client's order (JSON when it takes anything);
/// 406 naming what is served otherwise.
pub fn negotiate(accept: &str) -> Result<Format, ApiError> {
    let types: Vec<&str> = accept
        .split(',')
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .filter(|t| !t.is_empty())
        .collect();
    if types.is_empty() {
        return Ok(Format::Json);
    }
    for t in &types {
        match *t {
            "application/json" | "application/*" | "*/*" => return Ok(Format::Json),
            t if t == PROTOBUF || t == PROTOBUF_CONTENT_TYPE => return Ok(Format::Protobuf),
            _ => {}
        }
    }
    Err(ApiError::NotAcceptable(format!(
        "/openapi/v2 is served as application/json or {PROTOBUF}; asked for: {accept}"
    )))
}

/// Rewrites an OpenAPI 3.0 schema into swagger 2.0 terms, in place.
fn to_v2(v: &mut Value) {
    match v {
        Value::Object(m) => {
            // A lone allOf wrapper around a reference (schemars' way to add a description).
            if let Some(Value::Array(all)) = m.get("allOf") {
                if all.len() == 1 {
                    if let Some(r) = all[0].get("$ref").cloned() {
                        m.remove("allOf");
                        m.insert("$ref".into(), r);
                    }
                }
            }
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/components/schemas/") {
                    *r = format!("#/definitions/{name}");
                }
            }
            m.remove("nullable");
            if m.get("x-kubernetes-int-or-string") == Some(&json!(true)) && !m.contains_key("type")
            {
                m.insert("type".into(), json!("string"));
                m.insert("format".into(), json!("int-or-string"));
            }
            // v2 has no anyOf/oneOf: kube writes int-or-string as a formatted string.
            for key in ["anyOf", "oneOf"] {
                if let Some(alts) = m.remove(key) {
                    let types: Vec<&str> = alts
                        .as_array()
                        .map(|a| a.iter().filter_map(|s| s["type"].as_str()).collect())
                        .unwrap_or_default();
                    if types.contains(&"integer") && types.contains(&"string") {
                        m.insert("type".into(), json!("string"));
                        m.insert("format".into(), json!("int-or-string"));
                    }
                }
            }
            for (_, child) in m.iter_mut() {
                to_v2(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(to_v2),
        _ => {}
    }
}

fn gvk(def: &ResourceDef) -> Value {
    json!([{"group": def.group, "version": def.version, "kind": def.kind}])
}

fn operation(def: &ResourceDef, action: &str, id: &str, write: bool, schema_ref: &str) -> Value {
    let query = |name: &str, description: &str| json!({"name": name, "in": "query", "type": "string", "uniqueItems": true, "description": description});
    let mut params = Vec::new();
    if write {
        params.push(query(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
        ));
        params.push(query("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."));
        params.push(query("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn (default) or Strict."));
        if action != "delete" {
            params.push(json!({"name": "body", "in": "body", "required": true, "schema": {"$ref": schema_ref}}));
        }
    }
    json!({
        "operationId": id,
        "consumes": ["*/*"],
        "produces": ["application/json"],
        "schemes": ["https"],
        "parameters": params,
        "responses": {"200": {"description": "OK", "schema": {"$ref": schema_ref}}, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(def)[0],
    })
}

/// The whole v2 document (every served group-version in one).
pub fn document(r: &Resources) -> Value {
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
    let mut names = Vec::new();
    for d in r.all() {
        let reference = (d.schema)(&mut generator);
        if let Some(name) = reference
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|s| s.rsplit('/').next())
        {
            names.push((d, name.to_string()));
        }
    }
    let mut definitions: Map<String, Value> = generator.take_definitions(true);
    let mut paths = Map::new();
    for (d, name) in &names {
        if let Some(s) = definitions.get_mut(name).and_then(Value::as_object_mut) {
            s.insert("x-kubernetes-group-version-kind".into(), gvk(d));
        }
        let schema_ref = format!("#/definitions/{name}");
        let base = if d.group.is_empty() {
            format!("/api/{}", d.version)
        } else {
            format!("/apis/{}/{}", d.group, d.version)
        };
        let coll = if d.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", d.plural)
        } else {
            format!("{base}/{}", d.plural)
        };
        let kind = d.kind;
        let mut ns_params = Vec::new();
        if d.namespaced {
            ns_params.push(json!({"name": "namespace", "in": "path", "required": true, "type": "string", "uniqueItems": true, "description": "object name and auth scope, such as for teams and projects"}));
        }
        let mut name_params = ns_params.clone();
        name_params.push(json!({"name": "name", "in": "path", "required": true, "type": "string", "uniqueItems": true, "description": format!("name of the {kind}")}));
        paths.insert(
            coll.clone(),
            json!({
                "parameters": ns_params,
                "get": operation(d, "list", &format!("list{kind}"), false, &schema_ref),
                "post": operation(d, "post", &format!("create{kind}"), true, &schema_ref),
            }),
        );
        paths.insert(
            format!("{coll}/{{name}}"),
            json!({
                "parameters": name_params,
                "get": operation(d, "get", &format!("read{kind}"), false, &schema_ref),
                "put": operation(d, "put", &format!("replace{kind}"), true, &schema_ref),
                "patch": operation(d, "patch", &format!("patch{kind}"), true, &schema_ref),
                "delete": operation(d, "delete", &format!("delete{kind}"), true, &schema_ref),
            }),
        );
    }
    let mut definitions = Value::Object(definitions);
    to_v2(&mut definitions);
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0-pea"},
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header", "description": "Bearer Token authentication"}},
        "security": [{"BearerToken": []}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(v: &Value, pred: &dyn Fn(&str, &Value) -> bool, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    if k == "properties" {
                        // Property names are not keywords: JSONSchemaProps (the CRD schema
                        // type) has properties named `$ref` and `$schema`, as in kube's document.
                        if let Some(props) = c.as_object() {
                            props.values().for_each(|p| find(p, pred, out));
                        }
                        continue;
                    }
                    if pred(k, c) {
                        out.push(format!("{k}: {c}"));
                    }
                    find(c, pred, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|c| find(c, pred, out)),
            _ => {}
        }
    }

    #[test]
    fn v2_document_is_swagger_2_with_tagged_definitions() {
        let doc = document(&Resources::builtin());
        assert_eq!(doc["swagger"], "2.0");
        let defs = &doc["definitions"];
        let deploy = &defs["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deploy["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        assert_eq!(
            defs["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"][0]["version"],
            "v1"
        );
        assert!(defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"].is_object());
        assert_eq!(
            defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
            "int-or-string"
        );
        let mut bad = Vec::new();
        find(
            &doc,
            &|k, v| {
                matches!(k, "nullable" | "anyOf" | "oneOf")
                    || (k == "$ref" && !v.as_str().unwrap_or("").starts_with("#/definitions/"))
            },
            &mut bad,
        );
        assert!(
            bad.is_empty(),
            "not swagger 2.0: {:?}",
            &bad[..bad.len().min(5)]
        );
        // Every reference resolves.
        let mut refs = Vec::new();
        find(&doc, &|k, _| k == "$ref", &mut refs);
        for r in refs {
            let name = r
                .trim_start_matches("$ref: \"#/definitions/")
                .trim_end_matches('"');
            assert!(defs.get(name).is_some(), "dangling {r}");
        }
        let post = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        assert!(post["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["in"] == "body"));
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate("").unwrap(), Format::Json);
        assert_eq!(negotiate("application/json, */*").unwrap(), Format::Json);
        assert_eq!(negotiate("application/json;q=0.9").unwrap(), Format::Json);
        assert_eq!(negotiate(PROTOBUF).unwrap(), Format::Protobuf);
        assert_eq!(
            negotiate(&format!("{PROTOBUF}, application/json")).unwrap(),
            Format::Protobuf
        );
        let e = negotiate("text/html").unwrap_err();
        assert_eq!(e.code(), 406);
        assert!(e.to_string().contains("application/json or"), "{e}");
    }
}
