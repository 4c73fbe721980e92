//! Mutating/ValidatingWebhookConfiguration: kube's defaults (`SetDefaults_*Webhook`) and
//! validation (`ValidateMutatingWebhookConfiguration` for admissionregistration.k8s.io/v1).

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::semantic::Cause;

/// Whether `kind` is one of the webhook configuration kinds.
pub fn is_webhook_configuration(kind: &str) -> bool {
    matches!(
        kind,
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"
    )
}

/// kube's defaults for each webhook.
pub fn apply_defaults(kind: &str, obj: &mut Value) {
    let mutating = kind == "MutatingWebhookConfiguration";
    let Some(hooks) = obj.get_mut("webhooks").and_then(Value::as_array_mut) else {
        return;
    };
    for h in hooks.iter_mut().filter_map(Value::as_object_mut) {
        h.entry("failurePolicy").or_insert_with(|| json!("Fail"));
        h.entry("matchPolicy")
            .or_insert_with(|| json!("Equivalent"));
        h.entry("namespaceSelector").or_insert_with(|| json!({}));
        h.entry("objectSelector").or_insert_with(|| json!({}));
        h.entry("timeoutSeconds").or_insert_with(|| json!(10));
        if mutating {
            h.entry("reinvocationPolicy")
                .or_insert_with(|| json!("Never"));
        }
        if let Some(rules) = h.get_mut("rules").and_then(Value::as_array_mut) {
            for r in rules.iter_mut().filter_map(Value::as_object_mut) {
                r.entry("scope").or_insert_with(|| json!("*"));
            }
        }
        if let Some(svc) = h
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            svc.entry("port").or_insert_with(|| json!(443));
        }
    }
}

fn unsupported(value: &str, supported: &[&str]) -> String {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "Unsupported value: {value:?}: supported values: {}",
        list.join(", ")
    )
}

/// Every problem of a webhook configuration (empty when valid).
pub fn validate(kind: &str, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let mutating = kind == "MutatingWebhookConfiguration";
    let hooks = obj
        .get("webhooks")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut names = HashSet::new();
    for (i, h) in hooks.iter().enumerate() {
        let at = |f: &str| format!("webhooks[{i}].{f}");
        let s = |f: &str| h.get(f).and_then(Value::as_str);
        let name = s("name").unwrap_or("");
        if name.is_empty() {
            out.push((at("name"), "Required value".into()));
        } else if !crate::validation::is_dns_subdomain(name) {
            out.push((at("name"), format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")));
        } else if name.split('.').count() < 3 {
            out.push((at("name"), format!("Invalid value: {name:?}: should be a domain with at least three segments separated by dots")));
        } else if !names.insert(name) {
            out.push((at("name"), format!("Duplicate value: {name:?}")));
        }
        match s("sideEffects") {
            None => out.push((
                at("sideEffects"),
                "Required value: must specify one of None, NoneOnDryRun".into(),
            )),
            Some("None" | "NoneOnDryRun") => {}
            Some(v) => out.push((at("sideEffects"), unsupported(v, &["None", "NoneOnDryRun"]))),
        }
        let versions: Vec<&str> = h
            .get("admissionReviewVersions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if versions.is_empty() {
            out.push((
                at("admissionReviewVersions"),
                "Required value: must specify one of v1, v1beta1".into(),
            ));
        } else if !versions.contains(&"v1") {
            // pea speaks AdmissionReview v1 only; kube would also accept v1beta1.
            out.push((
                at("admissionReviewVersions"),
                format!("Invalid value: {versions:?}: must include v1 (pea sends admission.k8s.io/v1 AdmissionReview only)"),
            ));
        }
        if let Some(t) = h.get("timeoutSeconds").filter(|t| !t.is_null()) {
            if !t.as_i64().is_some_and(|t| (1..=30).contains(&t)) {
                out.push((
                    at("timeoutSeconds"),
                    format!(
                        "Invalid value: {t}: the timeout value must be between 1 and 30 seconds"
                    ),
                ));
            }
        }
        if let Some(v) = s("failurePolicy") {
            if !matches!(v, "Fail" | "Ignore") {
                out.push((at("failurePolicy"), unsupported(v, &["Fail", "Ignore"])));
            }
        }
        if let Some(v) = s("matchPolicy") {
            if !matches!(v, "Equivalent" | "Exact") {
                out.push((at("matchPolicy"), unsupported(v, &["Equivalent", "Exact"])));
            }
        }
        if mutating {
            if let Some(v) = s("reinvocationPolicy") {
                if !matches!(v, "IfNeeded" | "Never") {
                    out.push((
                        at("reinvocationPolicy"),
                        unsupported(v, &["IfNeeded", "Never"]),
                    ));
                }
            }
        }
        super::policy::conditions::compile(
            h.get("matchConditions"),
            &at("matchConditions"),
            super::policy::conditions::WEBHOOK_VARS,
            &mut out,
        );
        client_config(h.get("clientConfig"), &at("clientConfig"), &mut out);
        for (j, r) in h
            .get("rules")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            rule(r, &at(&format!("rules[{j}]")), &mut out);
        }
    }
    out
}

fn client_config(cc: Option<&Value>, at: &str, out: &mut Vec<Cause>) {
    let url = cc.and_then(|c| c.get("url")).and_then(Value::as_str);
    let service = cc.and_then(|c| c.get("service")).filter(|s| !s.is_null());
    match (url, service) {
        (Some(_), Some(_)) => out.push((
            at.into(),
            "Required value: exactly one of url or service is required".into(),
        )),
        (None, None) => out.push((
            at.into(),
            "Required value: exactly one of url or service is required".into(),
        )),
        (Some(u), None) => {
            let field = format!("{at}.url");
            match u.parse::<hyper::Uri>() {
                Err(e) => out.push((
                    field,
                    format!("Invalid value: {u:?}: host must be specified: {e}"),
                )),
                Ok(uri) => {
                    if uri.scheme_str() != Some("https") {
                        out.push((
                            field,
                            format!("Invalid value: {u:?}: 'https' is the only allowed URL scheme"),
                        ));
                    } else if uri.host().is_none_or(str::is_empty) {
                        out.push((
                            field,
                            format!("Invalid value: {u:?}: host must be specified"),
                        ));
                    } else if u.contains('#') {
                        out.push((
                            field,
                            format!("Invalid value: {u:?}: fragments are not permitted in the URL"),
                        ));
                    } else if uri.query().is_some() {
                        out.push((field, format!("Invalid value: {u:?}: query parameters are not permitted in the URL")));
                    } else if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                        out.push((field, format!("Invalid value: {u:?}: user information is not permitted in the URL")));
                    }
                }
            }
        }
        (None, Some(s)) => {
            for f in ["name", "namespace"] {
                if s.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                    out.push((
                        format!("{at}.service.{f}"),
                        "Required value: service name is required".replace("name", f),
                    ));
                }
            }
            if let Some(p) = s.get("port").filter(|p| !p.is_null()) {
                if !p.as_i64().is_some_and(|p| (1..=65535).contains(&p)) {
                    out.push((format!("{at}.service.port"), format!("Invalid value: {p}: port is not valid: must be between 1 and 65535, inclusive")));
                }
            }
            if let Some(path) = s.get("path").and_then(Value::as_str) {
                if !path.starts_with('/') {
                    out.push((
                        format!("{at}.service.path"),
                        format!("Invalid value: {path:?}: must start with a '/'"),
                    ));
                }
            }
        }
    }
    if let Some(b) = cc.and_then(|c| c.get("caBundle")) {
        if let Err(e) = super::client::decode_ca_bundle(Some(b)) {
            out.push((format!("{at}.caBundle"), format!("Invalid value: {e}")));
        }
    }
}

fn rule(r: &Value, at: &str, out: &mut Vec<Cause>) {
    let list = |f: &str| -> Vec<&str> {
        r.get(f)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let ops = list("operations");
    if ops.is_empty() {
        out.push((format!("{at}.operations"), "Required value".into()));
    }
    for (k, op) in ops.iter().enumerate() {
        if !matches!(*op, "*" | "CREATE" | "UPDATE" | "DELETE" | "CONNECT") {
            out.push((
                format!("{at}.operations[{k}]"),
                unsupported(op, &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"]),
            ));
        }
    }
    if ops.len() > 1 && ops.contains(&"*") {
        out.push((
            format!("{at}.operations"),
            format!("Invalid value: {ops:?}: if '*' is present, must not specify other operations"),
        ));
    }
    for f in ["apiGroups", "apiVersions"] {
        let l = list(f);
        if l.is_empty() {
            out.push((format!("{at}.{f}"), "Required value".into()));
        }
        if l.len() > 1 && l.contains(&"*") {
            out.push((
                format!("{at}.{f}"),
                format!("Invalid value: {l:?}: if '*' is present, must not specify other {f}"),
            ));
        }
    }
    let res = list("resources");
    if res.is_empty() {
        out.push((format!("{at}.resources"), "Required value".into()));
    }
    for (k, x) in res.iter().enumerate() {
        if x.is_empty() {
            out.push((format!("{at}.resources[{k}]"), "Required value".into()));
        } else if x.split('/').count() > 2 {
            out.push((
                format!("{at}.resources[{k}]"),
                format!(
                    "Invalid value: {x:?}: must be in the form resource or resource/subresource"
                ),
            ));
        }
    }
    if let Some(sc) = r.get("scope").and_then(Value::as_str) {
        if !matches!(sc, "*" | "Cluster" | "Namespaced") {
            out.push((
                format!("{at}.scope"),
                unsupported(sc, &["*", "Cluster", "Namespaced"]),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hook: Value) -> Value {
        json!({"metadata": {"name": "c"}, "webhooks": [hook]})
    }

    fn good() -> Value {
        json!({"name": "deny.pea.test", "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": "https://127.0.0.1:8443/validate"},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                "resources": ["configmaps"]}]})
    }

    fn problems(hook: Value) -> Vec<String> {
        validate("ValidatingWebhookConfiguration", &config(hook))
            .into_iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect()
    }

    #[test]
    fn a_complete_webhook_is_valid_and_defaulted() {
        assert!(problems(good()).is_empty(), "{:?}", problems(good()));
        let mut c = config(good());
        apply_defaults("MutatingWebhookConfiguration", &mut c);
        let h = &c["webhooks"][0];
        assert_eq!(h["failurePolicy"], "Fail");
        assert_eq!(h["matchPolicy"], "Equivalent");
        assert_eq!(h["timeoutSeconds"], 10);
        assert_eq!(h["reinvocationPolicy"], "Never");
        assert_eq!(h["rules"][0]["scope"], "*");
    }

    #[test]
    fn kube_refusals() {
        let with = |f: &str, v: Value| {
            let mut h = good();
            h[f] = v;
            problems(h)
        };
        assert_eq!(
            with("sideEffects", json!("Some")),
            vec![
                r#"webhooks[0].sideEffects: Unsupported value: "Some": supported values: "None", "NoneOnDryRun""#
            ]
        );
        let mut h = good();
        h.as_object_mut().unwrap().remove("sideEffects");
        assert_eq!(
            problems(h),
            vec!["webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun"]
        );
        assert!(with("timeoutSeconds", json!(31))[0]
            .ends_with("the timeout value must be between 1 and 30 seconds"));
        assert!(with("timeoutSeconds", json!(0))[0].contains("between 1 and 30"));
        assert!(with("admissionReviewVersions", json!(["v1beta1"]))[0].contains("must include v1"));
        assert!(
            with("clientConfig", json!({"url": "http://127.0.0.1/x"}))[0]
                .ends_with("'https' is the only allowed URL scheme")
        );
        assert!(with(
            "clientConfig",
            json!({"url": "https://a/x", "service": {"name": "s", "namespace": "n"}})
        )[0]
        .ends_with("exactly one of url or service is required"));
        assert!(with("name", json!("short.name"))[0].contains("at least three segments"));
        let twice = json!({"metadata": {"name": "c"}, "webhooks": [good(), good()]});
        let p = validate("ValidatingWebhookConfiguration", &twice);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "webhooks[1].name");
        assert!(p[0].1.starts_with("Duplicate value"));
    }
}
