//! CustomResourceDefinition objects as kube-apiserver's apiextensions strategy treats them:
//! defaults (`listKind`, `singular`, conversion `None`), the finalizer and empty status of a new
//! CRD, and `ValidateCustomResourceDefinition`'s rules with its wording.

use serde_json::{json, Value};

use super::schema::{is_dns1123_label, is_dns1123_subdomain, Cause, Schema};
use super::{CLEANUP_FINALIZER, MAX_CRDS};
use crate::api::Api;
use crate::status::ApiError;

/// kube's defaults for a CRD (`SetDefaults_CustomResourceDefinition`).
pub fn default(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(kind) = kind.filter(|k| !k.is_empty()) {
            if names
                .get("listKind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                names.insert("listKind".into(), json!(format!("{kind}List")));
            }
            if names
                .get("singular")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                names.insert("singular".into(), json!(kind.to_lowercase()));
            }
        }
    }
    let conversion = spec.entry("conversion").or_insert_with(|| json!({}));
    if let Some(c) = conversion.as_object_mut() {
        c.entry("strategy").or_insert_with(|| json!("None"));
    }
}

/// A new CRD: the cleanup finalizer (its objects go before it does) and kube's empty status,
/// which the controller fills.
pub fn prepare_new(obj: &mut Value) {
    let meta = obj.get_mut("metadata").and_then(Value::as_object_mut);
    if let Some(meta) = meta {
        let fin = meta.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = fin.as_array_mut() {
            if !list.iter().any(|f| f == CLEANUP_FINALIZER) {
                list.push(json!(CLEANUP_FINALIZER));
            }
        }
    }
    obj["status"] = json!({"conditions": [], "acceptedNames": {"plural": "", "kind": ""},
        "storedVersions": []});
}

/// Refuses a CRD beyond [`MAX_CRDS`].
pub async fn check_count(api: &Api) -> Result<(), ApiError> {
    let prefix = super::controller::prefix();
    let page = api
        .store
        .list(&prefix, &Default::default())
        .await
        .map_err(|e| ApiError::from_store(e, super::GROUP, "customresourcedefinitions", ""))?;
    if page.items.len() >= MAX_CRDS {
        return Err(ApiError::Forbidden {
            group: super::GROUP.into(),
            resource: "customresourcedefinitions".into(),
            name: String::new(),
            message: format!(
                "this server holds at most {MAX_CRDS} CustomResourceDefinitions; delete one first"
            ),
        });
    }
    Ok(())
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// kube's `IsDNS1035Label`-like check for plural, singular and short names (lowercase RFC 1123
/// labels, as kube validates them).
fn label_cause(field: &str, value: &str, out: &mut Vec<Cause>) {
    if !is_dns1123_label(value) {
        out.push((
            field.into(),
            format!("Invalid value: {value:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
        ));
    }
}

fn kind_cause(field: &str, value: &str, out: &mut Vec<Cause>) {
    let lower = value.to_lowercase();
    let ok = is_dns1123_label(&lower) && lower.starts_with(|c: char| c.is_ascii_lowercase());
    if !ok {
        out.push((
            field.into(),
            format!("Invalid value: {value:?}: may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?"),
        ));
    }
}

/// `ValidateCustomResourceDefinition` (the parts pea serves); an empty list means valid.
pub fn check(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let group = s(obj, "/spec/group");
    let plural = s(obj, "/spec/names/plural");
    let name = crate::objects::name_of(obj);
    if group.is_empty() {
        out.push(("spec.group".into(), "Required value".into()));
    } else if !is_dns1123_subdomain(group) {
        out.push(("spec.group".into(), format!("Invalid value: {group:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")));
    } else if !group.contains('.') {
        out.push((
            "spec.group".into(),
            format!("Invalid value: {group:?}: should be a domain with at least one dot"),
        ));
    } else if group.ends_with(".k8s.io")
        || group.ends_with(".kubernetes.io")
        || group == "k8s.io"
        || group == "kubernetes.io"
    {
        // kube asks for an approval annotation for these; pea serves its own built-ins there.
        out.push((
            "spec.group".into(),
            format!("Invalid value: {group:?}: groups under k8s.io and kubernetes.io are reserved for built-in resources"),
        ));
    }
    if name != format!("{plural}.{group}") {
        out.push((
            "metadata.name".into(),
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    match s(obj, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        "" => out.push(("spec.scope".into(), "Required value".into())),
        other => out.push((
            "spec.scope".into(),
            format!("Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""),
        )),
    }
    for (field, value) in [
        ("plural", plural),
        ("singular", s(obj, "/spec/names/singular")),
    ] {
        if value.is_empty() {
            out.push((format!("spec.names.{field}"), "Required value".into()));
        } else {
            label_cause(&format!("spec.names.{field}"), value, &mut out);
        }
    }
    for field in ["kind", "listKind"] {
        let value = s(obj, &format!("/spec/names/{field}"));
        if value.is_empty() {
            out.push((format!("spec.names.{field}"), "Required value".into()));
        } else {
            kind_cause(&format!("spec.names.{field}"), value, &mut out);
        }
    }
    if s(obj, "/spec/names/kind") == s(obj, "/spec/names/listKind") && !plural.is_empty() {
        out.push((
            "spec.names.listKind".into(),
            "Invalid value: kind and listKind may not be the same or parsing become ambiguous"
                .into(),
        ));
    }
    for list in ["shortNames", "categories"] {
        if let Some(items) = obj
            .pointer(&format!("/spec/names/{list}"))
            .and_then(Value::as_array)
        {
            if items.len() > 64 {
                out.push((
                    format!("spec.names.{list}"),
                    "Too many: must have at most 64 items".into(),
                ));
                continue;
            }
            for (i, v) in items.iter().enumerate() {
                label_cause(
                    &format!("spec.names.{list}[{i}]"),
                    v.as_str().unwrap_or(""),
                    &mut out,
                );
            }
        }
    }
    conversion(obj, &mut out);
    versions(obj, &mut out);
    out
}

/// kube's conversion rules: a webhook exactly when the strategy is `Webhook`, reached by an
/// https URL or a Service, speaking a ConversionReview version pea speaks (v1).
fn conversion(obj: &Value, out: &mut Vec<Cause>) {
    let webhook = obj
        .pointer("/spec/conversion/webhook")
        .filter(|w| !w.is_null());
    match s(obj, "/spec/conversion/strategy") {
        "None" | "" => {
            if webhook.is_some() {
                out.push((
                    "spec.conversion.webhook".into(),
                    "Forbidden: should not be set when strategy is not set to Webhook".into(),
                ));
            }
        }
        "Webhook" => {
            let Some(w) = webhook else {
                out.push((
                    "spec.conversion.webhook".into(),
                    "Required value: must be set when strategy is set to Webhook".into(),
                ));
                return;
            };
            webhook_client_config(w.get("clientConfig"), out);
            let versions: Vec<&str> = w
                .get("conversionReviewVersions")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let field = "spec.conversion.webhook.conversionReviewVersions";
            if versions.is_empty() {
                out.push((field.into(), "Required value".into()));
            } else if !versions.iter().any(|v| *v == "v1" || *v == "v1beta1") {
                out.push((
                    field.into(),
                    format!(
                        "Invalid value: {}: must include at least one of v1, v1beta1",
                        json!(versions)
                    ),
                ));
            } else if !versions.contains(&"v1") {
                out.push((
                    field.into(),
                    "Unsupported value: pea-control sends ConversionReview v1 only; list \"v1\""
                        .into(),
                ));
            }
        }
        other => out.push((
            "spec.conversion.strategy".into(),
            format!("Unsupported value: {other:?}: supported values: \"None\", \"Webhook\""),
        )),
    }
}

fn webhook_client_config(cc: Option<&Value>, out: &mut Vec<Cause>) {
    let at = "spec.conversion.webhook.clientConfig";
    let Some(cc) = cc.filter(|c| c.is_object()) else {
        out.push((at.into(), "Required value".into()));
        return;
    };
    let url = cc.get("url").and_then(Value::as_str);
    let service = cc.get("service").filter(|s| s.is_object());
    match (url, service) {
        (Some(_), Some(_)) | (None, None) => out.push((
            at.into(),
            "Required value: exactly one of url or service is required".into(),
        )),
        (Some(u), None) => {
            if !u.starts_with("https://") {
                out.push((
                    format!("{at}.url"),
                    format!("Invalid value: {u:?}: 'https' is the only allowed URL scheme"),
                ));
            } else if u.parse::<hyper::Uri>().is_err() || u.contains('#') {
                out.push((
                    format!("{at}.url"),
                    format!("Invalid value: {u:?}: must be a valid URL without fragment"),
                ));
            }
        }
        (None, Some(svc)) => {
            for f in ["name", "namespace"] {
                if svc.get(f).and_then(Value::as_str).unwrap_or("").is_empty() {
                    out.push((
                        format!("{at}.service.{f}"),
                        "Required value: service {f} is required".replace("{f}", f),
                    ));
                }
            }
            if let Some(p) = svc.get("port").and_then(Value::as_i64) {
                if !(1..=65535).contains(&p) {
                    out.push((
                        format!("{at}.service.port"),
                        format!("Invalid value: {p}: port is not valid: must be between 1 and 65535, inclusive"),
                    ));
                }
            }
        }
    }
    if let Some(ca) = cc.get("caBundle") {
        if let Err(e) = crate::admission::client::decode_ca_bundle(Some(ca)) {
            out.push((format!("{at}.caBundle"), format!("Invalid value: {e}")));
        }
    }
}

fn versions(obj: &Value, out: &mut Vec<Cause>) {
    let Some(versions) = obj.pointer("/spec/versions").and_then(Value::as_array) else {
        out.push((
            "spec.versions".into(),
            "Invalid value: null: must have exactly one version marked as storage version".into(),
        ));
        return;
    };
    if versions.is_empty() {
        out.push((
            "spec.versions".into(),
            "Invalid value: []: must have exactly one version marked as storage version".into(),
        ));
        return;
    }
    if versions.len() > 32 {
        out.push((
            "spec.versions".into(),
            "Too many: must have at most 32 items".into(),
        ));
        return;
    }
    let storage = versions.iter().filter(|v| v["storage"] == true).count();
    if storage != 1 {
        out.push((
            "spec.versions".into(),
            format!(
                "Invalid value: {}: must have exactly one version marked as storage version",
                storage
            ),
        ));
    }
    if !versions.iter().any(|v| v["served"] == true) {
        out.push((
            "spec.versions".into(),
            "Invalid value: must have at least one version marked as served".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, v) in versions.iter().enumerate() {
        let at = format!("spec.versions[{i}]");
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            out.push((format!("{at}.name"), "Required value".into()));
        } else if !is_dns1123_label(name) || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            out.push((format!("{at}.name"), format!("Invalid value: {name:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")));
        } else if !seen.insert(name) {
            out.push((
                "spec.versions".into(),
                format!("Invalid value: {name:?}: must contain unique version names"),
            ));
        }
        match v.pointer("/schema/openAPIV3Schema") {
            None => out.push((
                format!("{at}.schema.openAPIV3Schema"),
                "Required value: schemas are required".into(),
            )),
            Some(raw) => {
                if let Err(causes) = Schema::compile(raw, &format!("{at}.schema.openAPIV3Schema")) {
                    out.extend(causes);
                }
            }
        }
        if let Some(cols) = v.get("additionalPrinterColumns").and_then(Value::as_array) {
            if let Err(c) = super::columns::compile(cols, &format!("{at}.additionalPrinterColumns"))
            {
                out.extend(c);
            }
        }
        if let Some(scale) = v.pointer("/subresources/scale") {
            if let Err(c) =
                super::scale::ScalePaths::parse(scale, &format!("{at}.subresources.scale"))
            {
                out.extend(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        let mut c = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"]},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
        default(&mut c);
        c
    }

    #[test]
    fn a_good_crd_passes_and_is_defaulted() {
        let c = crd();
        assert_eq!(check(&c), Vec::<Cause>::new());
        assert_eq!(c["spec"]["names"]["listKind"], "CronTabList");
        assert_eq!(c["spec"]["names"]["singular"], "crontab");
        assert_eq!(c["spec"]["conversion"]["strategy"], "None");
    }

    #[test]
    fn kube_rules_refuse_bad_crds() {
        let mut c = crd();
        c["metadata"]["name"] = json!("crontab.stable.example.com");
        c["spec"]["versions"][0]["storage"] = json!(false);
        c["spec"]["group"] = json!("stable.example.com");
        let all: Vec<String> = check(&c)
            .into_iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect();
        assert!(all.contains(&"metadata.name: Invalid value: \"crontab.stable.example.com\": must be spec.names.plural+\".\"+spec.group".to_string()), "{all:?}");
        assert!(
            all.iter()
                .any(|m| m.contains("must have exactly one version marked as storage version")),
            "{all:?}"
        );
        let mut c = crd();
        c["spec"]["group"] = json!("nodot");
        c["metadata"]["name"] = json!("crontabs.nodot");
        assert_eq!(
            check(&c)[0].1,
            "Invalid value: \"nodot\": should be a domain with at least one dot"
        );
        let mut c = crd();
        c["spec"]["versions"][0]
            .as_object_mut()
            .unwrap()
            .remove("schema");
        assert_eq!(check(&c)[0].1, "Required value: schemas are required");
    }
}
