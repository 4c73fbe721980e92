//! IngressClasses (networking.k8s.io/v1, cluster-scoped) and kube-apiserver's
//! DefaultIngressClass admission plugin: an Ingress created without `spec.ingressClassName`
//! (and without the legacy `kubernetes.io/ingress.class` annotation) gets the class marked with
//! `ingressclass.kubernetes.io/is-default-class: "true"`; when several are marked, the newest
//! wins (kube since 1.28; older releases refused the Ingress).

use serde_json::{json, Value};

use crate::api::{Api, Ctx};
use crate::objects;
use crate::semantic::Cause;
use crate::status::ApiError;
use crate::validation::is_dns_subdomain;

pub const GROUP: &str = "networking.k8s.io";
pub const PLURAL: &str = "ingressclasses";
/// Marks the cluster's default class (kube's `AnnotationIsDefaultIngressClass`).
pub const DEFAULT_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The class annotation Ingresses used before `spec.ingressClassName`.
pub const LEGACY_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// kube's `maxLenIngressClassController`.
const MAX_CONTROLLER_LEN: usize = 250;

/// kube's `ValidateIngressClass` (spec part; metadata is checked with every kind).
pub fn check(obj: &Value, out: &mut Vec<Cause>) {
    let controller = obj
        .pointer("/spec/controller")
        .and_then(Value::as_str)
        .unwrap_or("");
    if controller.len() > MAX_CONTROLLER_LEN {
        out.push((
            "spec.controller".into(),
            format!("Too long: may not be more than {MAX_CONTROLLER_LEN} bytes"),
        ));
    }
    if let Some(problem) = domain_prefixed_path_problem(controller) {
        out.push(("spec.controller".into(), problem));
    }
    if let Some(p) = obj.pointer("/spec/parameters").filter(|p| !p.is_null()) {
        parameters(p, out);
    }
}

/// kube's `IsDomainPrefixedPath`: `acme.io/foo`.
fn domain_prefixed_path_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("Required value".into());
    }
    let Some((host, path)) = s
        .split_once('/')
        .filter(|(h, p)| !h.is_empty() && !p.is_empty())
    else {
        return Some(format!(
            "Invalid value: {}: must be a domain-prefixed path (such as \"acme.io/foo\")",
            json!(s)
        ));
    };
    if !is_dns_subdomain(host) {
        return Some(format!("Invalid value: {}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')", json!(host)));
    }
    let path_ok = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c));
    (!path_ok).then(|| {
        format!(
            "Invalid value: {}: Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')",
            json!(path)
        )
    })
}

/// kube's `validateIngressClassParametersReference`.
fn parameters(p: &Value, out: &mut Vec<Cause>) {
    let field = |f: &str| p.get(f).and_then(Value::as_str).filter(|s| !s.is_empty());
    for f in ["kind", "name"] {
        if field(f).is_none() {
            out.push((format!("spec.parameters.{f}"), "Required value".into()));
        }
    }
    if let Some(g) = field("apiGroup") {
        if !is_dns_subdomain(g) {
            out.push((
                "spec.parameters.apiGroup".into(),
                format!("Invalid value: {}: must be a DNS-1123 subdomain", json!(g)),
            ));
        }
    }
    match (field("scope"), field("namespace")) {
        (None, None) => {}
        (None, Some(_)) => out.push((
            "spec.parameters.scope".into(),
            "Required value: `parameters.scope` must be set when `parameters.namespace` is set"
                .into(),
        )),
        (Some("Namespace"), None) => out.push((
            "spec.parameters.namespace".into(),
            "Required value: `parameters.namespace` is required when `parameters.scope` is set to \"Namespace\"".into(),
        )),
        (Some("Cluster"), Some(_)) => out.push((
            "spec.parameters.namespace".into(),
            "Forbidden: `parameters.namespace` must not be set when `parameters.scope` is set to \"Cluster\"".into(),
        )),
        (Some("Namespace" | "Cluster"), _) => {}
        (Some(other), _) => out.push((
            "spec.parameters.scope".into(),
            format!(
                "Unsupported value: {}: supported values: \"Cluster\", \"Namespace\"",
                json!(other)
            ),
        )),
    }
}

/// kube's `validateIngressClassSpecUpdate`: the controller is fixed.
pub fn check_update(old: &Value, new: &Value, out: &mut Vec<Cause>) {
    if old.pointer("/spec/controller") != new.pointer("/spec/controller") {
        let v = new
            .pointer("/spec/controller")
            .cloned()
            .unwrap_or(Value::Null);
        out.push((
            "spec.controller".into(),
            format!("Invalid value: {v}: field is immutable"),
        ));
    }
}

/// DefaultIngressClass admission on create (not on subresources).
pub async fn admit_new(ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    if ctx.def.kind != "Ingress" || ctx.def.group != GROUP || ctx.info.subresource.is_some() {
        return Ok(());
    }
    if obj
        .pointer("/spec/ingressClassName")
        .is_some_and(|v| !v.is_null())
    {
        return Ok(());
    }
    if obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(LEGACY_ANNOTATION))
    {
        return Ok(());
    }
    let all = classes(ctx.api).await?;
    if let Some(name) = default_of(&all) {
        tracing::debug!(
            ingress = objects::name_of(obj),
            class = name,
            "defaulting IngressClass"
        );
        if !obj.get("spec").is_some_and(Value::is_object) {
            obj["spec"] = json!({});
        }
        obj["spec"]["ingressClassName"] = json!(name);
    }
    Ok(())
}

/// The default class's name: of those annotated `"true"`, the newest by creation time, then
/// the greater name (kube's `getDefaultClass` ordering).
pub fn default_of(classes: &[Value]) -> Option<&str> {
    classes
        .iter()
        .filter(|c| {
            c.pointer("/metadata/annotations")
                .and_then(|a| a.get(DEFAULT_ANNOTATION))
                .and_then(Value::as_str)
                == Some("true")
        })
        .max_by(|a, b| {
            let created = |c: &Value| {
                c.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            // RFC 3339 in UTC with a fixed format sorts as text.
            (created(a), objects::name_of(a)).cmp(&(created(b), objects::name_of(b)))
        })
        .map(objects::name_of)
}

async fn classes(api: &Api) -> Result<Vec<Value>, ApiError> {
    let def = api
        .resources
        .find(GROUP, "v1", PLURAL)
        .ok_or_else(|| ApiError::Internal("ingressclasses not served".into()))?;
    let page = api
        .store
        .list(&def.prefix(None), &Default::default())
        .await
        .map_err(|e| ApiError::from_store(e, GROUP, PLURAL, ""))?;
    Ok(page
        .items
        .iter()
        .filter_map(|kv| objects::decode(kv).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(obj: Value) -> Vec<Cause> {
        let mut out = Vec::new();
        check(&obj, &mut out);
        out
    }

    #[test]
    fn controller_must_be_a_domain_prefixed_path() {
        assert!(causes(json!({"spec":{"controller":"pea.dev/ingress"}})).is_empty());
        let c = causes(json!({"spec":{}}));
        assert_eq!(
            c,
            vec![("spec.controller".to_string(), "Required value".to_string())]
        );
        let c = causes(json!({"spec":{"controller":"ingress"}}));
        assert!(c[0].1.contains("domain-prefixed path"), "{c:?}");
        let c = causes(json!({"spec":{"controller":"Pea.dev/x"}}));
        assert!(c[0].1.contains("RFC 1123"), "{c:?}");
        let c = causes(json!({"spec":{"controller":"pea.dev/a b"}}));
        assert!(c[0].1.contains("Invalid path"), "{c:?}");
        let long = format!("pea.dev/{}", "x".repeat(250));
        assert!(causes(json!({"spec":{"controller":long}}))[0]
            .1
            .starts_with("Too long"));
    }

    #[test]
    fn parameters_scope_and_namespace_agree() {
        let with = |p: Value| causes(json!({"spec":{"controller":"a.io/b","parameters":p}}));
        assert!(with(json!({"kind":"K","name":"n"})).is_empty());
        assert!(
            with(json!({"kind":"K","name":"n","scope":"Namespace","namespace":"x"})).is_empty()
        );
        assert_eq!(with(json!({"name":"n"}))[0].0, "spec.parameters.kind");
        assert_eq!(
            with(json!({"kind":"K","name":"n","scope":"Namespace"}))[0].0,
            "spec.parameters.namespace"
        );
        assert!(
            with(json!({"kind":"K","name":"n","scope":"Cluster","namespace":"x"}))[0]
                .1
                .starts_with("Forbidden")
        );
        assert!(with(json!({"kind":"K","name":"n","scope":"Node"}))[0]
            .1
            .starts_with("Unsupported value"));
    }

    #[test]
    fn controller_is_immutable() {
        let mut out = Vec::new();
        check_update(
            &json!({"spec":{"controller":"a.io/b"}}),
            &json!({"spec":{"controller":"a.io/c"}}),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert!(out[0].1.ends_with("field is immutable"));
    }

    #[test]
    fn the_newest_default_class_wins() {
        let class = |name: &str, created: &str, default: Option<&str>| {
            let mut c = json!({"metadata":{"name":name,"creationTimestamp":created}});
            if let Some(d) = default {
                c["metadata"]["annotations"] = json!({DEFAULT_ANNOTATION: d});
            }
            c
        };
        let all = vec![
            class("old", "2026-01-01T00:00:00Z", Some("true")),
            class("new", "2026-02-01T00:00:00Z", Some("true")),
            class(
                "newest-but-not-default",
                "2026-03-01T00:00:00Z",
                Some("false"),
            ),
            class("plain", "2026-03-01T00:00:00Z", None),
        ];
        assert_eq!(default_of(&all), Some("new"));
        assert_eq!(default_of(&all[2..]), None);
        let tie = vec![
            class("a", "2026-01-01T00:00:00Z", Some("true")),
            class("b", "2026-01-01T00:00:00Z", Some("true")),
        ];
        assert_eq!(default_of(&tie), Some("b"));
    }
}
