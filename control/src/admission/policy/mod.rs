//! ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding
//! (admissionregistration.k8s.io/v1): CEL validations run in the validating phase, after
//! Pod Security and before the validating webhooks, as kube-apiserver's plugin order has it.
//!
//! Each binding names a policy; a request is checked by every (policy, binding) pair whose
//! matchConstraints and the binding's matchResources select it. With a `paramKind`, the
//! binding's `paramRef` picks the parameter objects (by name or selector; per-namespace when
//! the kind is namespaced), and the validations run once per parameter object. Violations act
//! per `validationActions`: Deny refuses with kube's
//! `ValidatingAdmissionPolicy 'p' with binding 'b' denied request: <message>`, Warn adds a
//! warning, Audit logs. Errors follow `failurePolicy`. Policies compile once per revision
//! ([`compiled`]); `check` refuses bad objects (compile errors in kube's wording) at write.

pub mod conditions;
mod definition;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};

use self::conditions::{Condition, Decision};
use super::rules::{any_rule_matches, Target};
use super::Attributes;
use crate::api::Api;
use crate::cel::{self, cost, Program};
use crate::status::{ApiError, BackendFailure};

pub use definition::{apply_defaults, check};

pub const GROUP: &str = "admissionregistration.k8s.io";
pub const POLICIES: &str = "validatingadmissionpolicies";
pub const BINDINGS: &str = "validatingadmissionpolicybindings";
/// kube caps variables and validations at 64 each... per policy the list sizes are bounded by
/// the request size; these bound compile work.
pub const MAX_EXPRESSIONS: usize = 64;

/// One validation.
#[derive(Debug)]
struct Validation {
    program: Arc<Program>,
    message: Option<String>,
    message_expression: Option<Arc<Program>>,
    reason: String,
}

/// A compiled policy.
#[derive(Debug)]
pub struct Compiled {
    spec: Value,
    conditions: Vec<Condition>,
    variables: Vec<(String, Arc<Program>)>,
    validations: Vec<Validation>,
    /// `auditAnnotations`: key (without the policy's prefix) and value expression.
    audit_annotations: Vec<(String, Arc<Program>)>,
}

impl Compiled {
    /// Whether any expression reads `authorizer` (the variables are then bound).
    fn uses_authorizer(&self) -> bool {
        self.conditions
            .iter()
            .map(|c| &c.program)
            .chain(self.variables.iter().map(|(_, p)| p))
            .chain(self.validations.iter().map(|v| &v.program))
            .chain(
                self.validations
                    .iter()
                    .filter_map(|v| v.message_expression.as_ref()),
            )
            .chain(self.audit_annotations.iter().map(|(_, p)| p))
            .any(|p| p.uses("authorizer"))
    }
}

/// kube truncates an audit annotation value to 10 KiB.
const MAX_AUDIT_VALUE_LEN: usize = 10 * 1024;

/// Compiled policies by uid and resourceVersion: a policy compiles once per revision.
fn cache() -> &'static Mutex<HashMap<String, Arc<Compiled>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Compiled>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn compiled(policy: &Value) -> Result<Arc<Compiled>, String> {
    let meta = |f: &str| {
        policy
            .pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let key = format!(
        "{}/{}/{}",
        meta("uid"),
        meta("name"),
        meta("resourceVersion")
    );
    if let Some(c) = cache().lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let mut causes = Vec::new();
    let c = Arc::new(definition::compile_policy(policy, &mut causes));
    if let Some((f, m)) = causes.first() {
        return Err(format!("{f}: {m}"));
    }
    let mut cache = cache().lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() > 4096 {
        cache.clear();
    }
    cache.insert(key, c.clone());
    Ok(c)
}

fn selector_ok(sel: Option<&Value>, labels: Option<&Value>) -> bool {
    match sel {
        None | Some(Value::Null) => true,
        Some(s) => crate::semantic::selects(s, labels),
    }
}

fn labels(obj: Option<&Value>) -> Option<&Value> {
    obj.and_then(|o| o.pointer("/metadata/labels"))
}

/// kube's `matchResources` (policy matchConstraints or binding matchResources).
fn resources_match(
    api: &Api,
    m: &Value,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: Option<&Value>,
    ns: Option<&Value>,
) -> bool {
    let own = Target {
        group: &attrs.group,
        version: &attrs.version,
        resource: &attrs.resource,
    };
    let rules = m.get("resourceRules").unwrap_or(&Value::Null);
    let included = any_rule_matches(rules, attrs, &own)
        || (m.get("matchPolicy").and_then(Value::as_str) != Some("Exact")
            && api.resources.all().iter().any(|d| {
                d.group == attrs.group
                    && d.plural == attrs.resource
                    && d.version != attrs.version
                    && any_rule_matches(
                        rules,
                        attrs,
                        &Target {
                            group: d.group,
                            version: d.version,
                            resource: d.plural,
                        },
                    )
            }));
    if !included {
        return false;
    }
    if let Some(ex) = m.get("excludeResourceRules") {
        if any_rule_matches(ex, attrs, &own) {
            return false;
        }
    }
    let object_sel = m.get("objectSelector");
    if !(selector_ok(object_sel, labels(obj))
        || (old.is_some() && selector_ok(object_sel, labels(old))))
    {
        return false;
    }
    let ns_sel = m.get("namespaceSelector");
    if attrs.group.is_empty() && attrs.resource == "namespaces" {
        return selector_ok(ns_sel, labels(obj).or(labels(old)));
    }
    if attrs.namespace.is_empty() {
        return true;
    }
    selector_ok(ns_sel, labels(ns))
}

async fn namespace_object(api: &Api, ns: &str) -> Result<Option<Value>, ApiError> {
    if ns.is_empty() {
        return Ok(None);
    }
    let Some(def) = api.resources.find("", "v1", "namespaces") else {
        return Ok(None);
    };
    let cached = api
        .informers
        .namespaces
        .get(api.store.as_ref(), &def.key(None, ns))
        .await?;
    Ok(cached.map(|c| c.obj.clone()))
}

/// The parameter objects a binding selects; `None` when the policy takes none.
async fn params(
    api: &Api,
    policy: &Compiled,
    binding: &Value,
    attrs: &Attributes<'_>,
) -> Result<Option<Vec<Value>>, String> {
    let Some(kind) = policy.spec.get("paramKind").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let api_version = kind.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind_name = kind.get("kind").and_then(Value::as_str).unwrap_or("");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let Some(def) = api
        .resources
        .all()
        .iter()
        .find(|d| d.group == group && d.version == version && d.kind == kind_name)
        .cloned()
    else {
        return Err(format!(
            "failed to configure policy: paramKind {api_version:?}/{kind_name:?} is not served"
        ));
    };
    let Some(r) = binding.pointer("/spec/paramRef").filter(|v| !v.is_null()) else {
        return Err(
            "failed to configure binding: paramRef is required when the policy has a paramKind"
                .into(),
        );
    };
    let ns = match r.get("namespace").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => Some(n.to_string()),
        _ if def.namespaced && !attrs.namespace.is_empty() => Some(attrs.namespace.clone()),
        _ if def.namespaced => {
            return Err("failed to configure binding: paramRef.namespace must be set for a cluster-scoped request when paramKind is namespaced".into())
        }
        _ => None,
    };
    let mut found = Vec::new();
    if let Some(name) = r
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        let (kv, _) = api
            .store
            .get(&def.key(ns.as_deref(), name))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(kv) = kv {
            found.push(crate::objects::decode(&kv).map_err(|e| e.to_string())?);
        }
    } else {
        let sel = r.get("selector").cloned().unwrap_or(json!({}));
        let page = api
            .store
            .list(&def.prefix(ns.as_deref()), &Default::default())
            .await
            .map_err(|e| e.to_string())?;
        for kv in &page.items {
            let o = crate::objects::decode(kv).map_err(|e| e.to_string())?;
            if crate::semantic::selects(&sel, labels(Some(&o))) {
                found.push(o);
            }
        }
    }
    Ok(Some(found))
}

/// What one (policy, binding) pair concluded.
struct Outcome {
    denials: Vec<(String, String)>,
    warnings: Vec<String>,
    /// `auditAnnotations` that produced a non-empty string: key, value.
    audit: Vec<(String, String)>,
}

/// The validating phase's policy step: runs every binding's policy on the request.
pub async fn validate(
    api: &Arc<Api>,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    // Watch-fed caches: every admitted write asks, so this must not read the store.
    let store = api.store.as_ref();
    let bindings = api.informers.list_all(store, GROUP, BINDINGS).await?;
    if bindings.is_empty() {
        return Ok(Vec::new());
    }
    let cached_policies = api.informers.list_all(store, GROUP, POLICIES).await?;
    let policies: HashMap<&str, &Value> = cached_policies
        .iter()
        .map(|p| (crate::objects::name_of(&p.obj), &p.obj))
        .collect();
    let ns_obj = namespace_object(api, &attrs.namespace).await?;
    let request = conditions::request_value(attrs);
    let mut warnings = Vec::new();
    let mut audit = AuditAnnotations::default();
    for binding in bindings.iter().map(|c| &c.obj) {
        let bname = crate::objects::name_of(binding).to_string();
        let Some(pname) = binding.pointer("/spec/policyName").and_then(Value::as_str) else {
            continue;
        };
        let Some(policy_obj) = policies.get(pname) else {
            continue;
        };
        let fail_open = policy_obj
            .pointer("/spec/failurePolicy")
            .and_then(Value::as_str)
            == Some("Ignore");
        let deny_error =
            |msg: String| -> ApiError { refusal(pname, &bname, "Invalid", 422, &msg, attrs) };
        let policy = match compiled(policy_obj) {
            Ok(p) => p,
            Err(e) if fail_open => {
                tracing::warn!(policy = pname, error = %e, "policy does not compile, failing open");
                continue;
            }
            Err(e) => return Err(deny_error(format!("failed to compile: {e}"))),
        };
        let constraints = policy
            .spec
            .get("matchConstraints")
            .cloned()
            .unwrap_or(Value::Null);
        if !resources_match(api, &constraints, attrs, old, obj, ns_obj.as_ref()) {
            continue;
        }
        if let Some(m) = binding
            .pointer("/spec/matchResources")
            .filter(|v| !v.is_null())
        {
            let mut m = m.clone();
            if m.get("resourceRules").is_none() {
                // An empty binding matchResources matches whatever the policy matches.
                m["resourceRules"] = json!([{"apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*", "*/*"], "operations": ["*"]}]);
            }
            if !resources_match(api, &m, attrs, old, obj, ns_obj.as_ref()) {
                continue;
            }
        }
        let params = match params(api, &policy, binding, attrs).await {
            Ok(p) => p,
            Err(e) if fail_open => {
                tracing::warn!(policy = pname, binding = %bname, error = %e, "failing open");
                continue;
            }
            Err(e) => return Err(deny_error(e)),
        };
        let param_list: Vec<Option<Value>> = match params {
            None => vec![None],
            Some(found) if found.is_empty() => {
                let action = binding
                    .pointer("/spec/paramRef/parameterNotFoundAction")
                    .and_then(Value::as_str)
                    .unwrap_or("Deny");
                if action == "Allow" {
                    continue;
                }
                return Err(deny_error("failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction".into()));
            }
            Some(found) => found.into_iter().map(Some).collect(),
        };
        let actions: Vec<&str> = binding
            .pointer("/spec/validationActions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for param in param_list {
            let outcome = run(
                &policy,
                attrs,
                old,
                obj,
                &request,
                param.as_ref(),
                ns_obj.as_ref(),
                &api.authz,
            );
            let outcome = match outcome {
                Ok(o) => o,
                Err(_) if fail_open => continue,
                Err(e) => return Err(deny_error(e)),
            };
            warnings.extend(outcome.warnings);
            for (key, value) in outcome.audit {
                audit.add(format!("{pname}/{key}"), value);
            }
            for (reason, msg) in outcome.denials {
                if actions.contains(&"Warn") {
                    warnings.push(format!("Validation failed for ValidatingAdmissionPolicy '{pname}' with binding '{bname}': {msg}"));
                }
                if actions.contains(&"Audit") {
                    tracing::info!(policy = pname, binding = %bname, message = %msg, "validation.policy.admission.k8s.io/validation_failure");
                }
                if actions.contains(&"Deny") {
                    let code = match reason.as_str() {
                        "Forbidden" => 403,
                        "Unauthorized" => 401,
                        "RequestEntityTooLarge" => 413,
                        _ => 422,
                    };
                    audit.log(attrs);
                    return Err(refusal(pname, &bname, &reason, code, &msg, attrs));
                }
            }
        }
    }
    audit.log(attrs);
    Ok(warnings)
}

/// The request's audit annotations from policies: kube joins the unique values several
/// bindings produce for one key with commas. pea has no audit log: they go to the server
/// log, one line per key, with the request they annotate.
#[derive(Default)]
struct AuditAnnotations(Vec<(String, Vec<String>)>);

impl AuditAnnotations {
    fn add(&mut self, key: String, value: String) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) if !values.contains(&value) => values.push(value),
            Some(_) => {}
            None => self.0.push((key, vec![value])),
        }
    }

    fn log(&self, attrs: &Attributes<'_>) {
        for (key, values) in &self.0 {
            tracing::info!(
                user = %attrs.user.name,
                operation = ?attrs.operation,
                resource = %attrs.resource,
                namespace = %attrs.namespace,
                name = %attrs.name,
                key = %key,
                value = %values.join(","),
                "admission policy audit annotation"
            );
        }
    }
}

fn refusal(
    policy: &str,
    binding: &str,
    reason: &str,
    code: u16,
    msg: &str,
    attrs: &Attributes<'_>,
) -> ApiError {
    let text = format!(
        "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {msg}"
    );
    let reason = match reason {
        "Forbidden" => "Forbidden",
        "Unauthorized" => "Unauthorized",
        "RequestEntityTooLarge" => "RequestEntityTooLarge",
        _ => "Invalid",
    };
    ApiError::Backend(Box::new(BackendFailure {
        code,
        reason,
        message: text.clone(),
        server_message: text,
        resource: attrs.resource.clone(),
        name: attrs.name.clone(),
    }))
}

/// Evaluates one policy for one parameter object. `Err` is an evaluation error (the
/// failurePolicy decides); violations come back as denials with their reason.
// The arguments are the CEL environment kube defines for a policy (object, oldObject, request,
// params, namespaceObject, authorizer) one by one; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn run(
    policy: &Compiled,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: Option<&Value>,
    request: &Value,
    param: Option<&Value>,
    ns: Option<&Value>,
    chain: &crate::authz::Authorizer,
) -> Result<Outcome, String> {
    let null = Value::Null;
    let mut vars: Vec<(&str, cel::Value)> = vec![
        ("object", cel::to_cel(obj.unwrap_or(&null))),
        ("oldObject", cel::to_cel(old.unwrap_or(&null))),
        ("request", cel::to_cel(request)),
        ("params", cel::to_cel(param.unwrap_or(&null))),
        ("namespaceObject", cel::to_cel(ns.unwrap_or(&null))),
    ];
    if policy.uses_authorizer() {
        vars.extend(conditions::authorizer_vars(chain, attrs));
    }
    // Variables in order; each sees the ones before it.
    let mut computed: HashMap<String, cel::Value> = HashMap::new();
    let mut budget = cost::RUNTIME_BUDGET;
    for (name, program) in &policy.variables {
        let mut with = vars.clone();
        with.push(("variables", cel::Value::from(computed.clone())));
        let (r, spent) = cel::eval(program, &with, budget);
        budget = budget.saturating_sub(spent);
        let v = r.map_err(|e| format!("variable '{name}' resulted in error: {e}"))?;
        computed.insert(name.clone(), v);
    }
    vars.push(("variables", cel::Value::from(computed)));
    match conditions::evaluate(&policy.conditions, &vars) {
        Decision::Match => {}
        Decision::NoMatch => {
            return Ok(Outcome {
                denials: Vec::new(),
                warnings: Vec::new(),
                audit: Vec::new(),
            })
        }
        Decision::Error(name, e) => {
            return Err(format!("failed to evaluate match condition '{name}': {e}"))
        }
    }
    let mut denials = Vec::new();
    for v in &policy.validations {
        let (r, spent) = cel::eval(&v.program, &vars, budget);
        budget = budget.saturating_sub(spent);
        match r {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => {
                let mut msg = v
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("failed expression: {}", v.program.source));
                if let Some(me) = &v.message_expression {
                    let (r, spent) = cel::eval(me, &vars, budget);
                    budget = budget.saturating_sub(spent);
                    if let Ok(cel::Value::String(s)) = r {
                        if !s.trim().is_empty() && !s.contains('\n') {
                            msg = s.to_string();
                        }
                    }
                }
                denials.push((v.reason.clone(), msg));
            }
            Ok(other) => {
                return Err(format!(
                    "expression '{}' resulted in error: expected a bool, got {other:?}",
                    v.program.source
                ))
            }
            Err(e) => {
                return Err(format!(
                    "expression '{}' resulted in error: {e}",
                    v.program.source
                ))
            }
        }
    }
    // kube evaluates the audit annotations whatever the validations concluded.
    let mut audit = Vec::new();
    for (key, program) in &policy.audit_annotations {
        let (r, spent) = cel::eval(program, &vars, budget);
        budget = budget.saturating_sub(spent);
        match r {
            Ok(cel::Value::Null) => {}
            Ok(cel::Value::String(s)) if s.is_empty() => {}
            Ok(cel::Value::String(s)) => {
                let mut end = s.len().min(MAX_AUDIT_VALUE_LEN);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                audit.push((key.clone(), s[..end].to_string()));
            }
            Ok(other) => {
                return Err(format!(
                "valueExpression '{}' resulted in error: expected a string or null, got {other:?}",
                program.source
            ))
            }
            Err(e) => {
                return Err(format!(
                    "valueExpression '{}' resulted in error: {e}",
                    program.source
                ))
            }
        }
    }
    Ok(Outcome {
        denials,
        warnings: Vec::new(),
        audit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Operation;
    use crate::auth::User;
    use crate::authz::{Authorizer, Mode};

    fn attrs(user: &User) -> Attributes<'_> {
        Attributes {
            operation: Operation::Create,
            group: String::new(),
            version: "v1".into(),
            resource: "configmaps".into(),
            subresource: String::new(),
            kind: ("".into(), "v1".into(), "ConfigMap".into()),
            namespace: "team".into(),
            name: "cm".into(),
            user,
            dry_run: false,
            options: Value::Null,
            namespaced: true,
        }
    }

    fn policy(spec: Value) -> Compiled {
        let obj = json!({"metadata": {"name": "p", "uid": "u", "resourceVersion": "1"},
            "spec": spec});
        let mut causes = Vec::new();
        let c = definition::compile_policy(&obj, &mut causes);
        assert!(causes.is_empty(), "{causes:?}");
        c
    }

    const RULES: &str = r#"{"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
        "operations": ["CREATE"], "resources": ["configmaps"]}]}"#;

    #[test]
    fn audit_annotations_are_evaluated_and_bounded() {
        let p = policy(json!({
        "matchConstraints": serde_json::from_str::<Value>(RULES).unwrap(),
        "auditAnnotations": [
            {"key": "who", "valueExpression": "'by ' + request.userInfo.username"},
            {"key": "none", "valueExpression": "null"},
            {"key": "empty", "valueExpression": "''"},
            {"key": "big", "valueExpression": "'x'.repeat(20000)"},
        ]}));
        let user = User {
            name: "alice".into(),
            ..User::default()
        };
        let a = attrs(&user);
        let chain = Authorizer::new(Mode::default());
        let obj = json!({"metadata": {"name": "cm"}});
        let out = run(
            &p,
            &a,
            None,
            Some(&obj),
            &conditions::request_value(&a),
            None,
            None,
            &chain,
        );
        // `repeat` is not a kube function: an evaluation error fails the policy.
        assert!(
            out.is_err_and(|e| e.contains("valueExpression")),
            "an error"
        );
        let p = policy(json!({
        "matchConstraints": serde_json::from_str::<Value>(RULES).unwrap(),
        "auditAnnotations": [
            {"key": "who", "valueExpression": "'by ' + request.userInfo.username"},
            {"key": "none", "valueExpression": "null"},
            {"key": "empty", "valueExpression": "''"},
            {"key": "name", "valueExpression": "object.metadata.name + '!'"},
            {"key": "big", "valueExpression": "lists.range(3000).map(i, 'xxxx').join('')"},
        ]}));
        let out = run(
            &p,
            &a,
            None,
            Some(&obj),
            &conditions::request_value(&a),
            None,
            None,
            &chain,
        )
        .unwrap();
        assert_eq!(out.audit.len(), 3, "{:?}", out.audit);
        assert_eq!(out.audit[0], ("who".to_string(), "by alice".to_string()));
        assert_eq!(out.audit[1], ("name".to_string(), "cm!".to_string()));
        assert_eq!(out.audit[2].0, "big");
        assert_eq!(out.audit[2].1.len(), MAX_AUDIT_VALUE_LEN, "cut to 10 KiB");
        // A number is neither a string nor null.
        let p = policy(json!({
            "matchConstraints": serde_json::from_str::<Value>(RULES).unwrap(),
            "auditAnnotations": [{"key": "n", "valueExpression": "1"}]}));
        let e = run(
            &p,
            &a,
            None,
            Some(&obj),
            &conditions::request_value(&a),
            None,
            None,
            &chain,
        )
        .err()
        .unwrap();
        assert!(e.contains("expected a string or null"), "{e}");
        // Several bindings' values for one key: unique ones, joined.
        let mut all = AuditAnnotations::default();
        for v in ["a", "b", "a"] {
            all.add("p/k".into(), v.into());
        }
        assert_eq!(
            all.0,
            [("p/k".to_string(), vec!["a".to_string(), "b".to_string()])]
        );
    }

    #[test]
    fn audit_annotation_keys_are_checked() {
        for (anns, want) in [
            (
                json!([{"key": "bad key", "valueExpression": "'x'"}]),
                "spec.auditAnnotations[0].key",
            ),
            (
                json!([{"key": "k", "valueExpression": "'x'"}, {"key": "k", "valueExpression": "'y'"}]),
                "Duplicate value",
            ),
            (
                json!([{"key": "k", "valueExpression": ""}]),
                "valueExpression: Required value",
            ),
        ] {
            let obj = json!({"metadata": {"name": "p"}, "spec": {
                "matchConstraints": serde_json::from_str::<Value>(RULES).unwrap(),
                "auditAnnotations": anns}});
            let mut causes = Vec::new();
            definition::compile_policy(&obj, &mut causes);
            assert!(
                causes
                    .iter()
                    .any(|(f, m)| format!("{f}: {m}").contains(want)),
                "{want}: {causes:?}"
            );
        }
    }

    #[test]
    fn authorizer_checks_the_requester_with_the_chain() {
        let p = policy(json!({
        "matchConstraints": serde_json::from_str::<Value>(RULES).unwrap(),
        "validations": [
            {"expression": "authorizer.requestResource.check('create').allowed()", "message": "no"},
            {"expression": "authorizer.path('/healthz').check('get').allowed()"},
            {"expression": "authorizer.serviceAccount('team', 'bot').group('').resource('pods').check('get').allowed()"},
            {"expression": "size(authorizer.group('apps').resource('deployments').subresource('scale').namespace('team').name('web').check('update').reason()) >= 0 && !authorizer.path('/x').check('get').errored() && authorizer.path('/x').check('get').error() == ''"},
        ]}));
        let chain = Authorizer::new(Mode::default());
        let obj = json!({"metadata": {"name": "cm"}});
        // An admin (system:masters) may do anything; a plain user nothing (no RBAC objects).
        let admin = User {
            name: "root".into(),
            groups: vec![crate::auth::ADMIN_GROUP.into()],
            ..User::default()
        };
        let a = attrs(&admin);
        let out = run(
            &p,
            &a,
            None,
            Some(&obj),
            &conditions::request_value(&a),
            None,
            None,
            &chain,
        )
        .unwrap();
        // The service account is not an admin: only that validation fails.
        assert_eq!(out.denials.len(), 1, "{:?}", out.denials);
        assert!(
            out.denials[0].1.contains("serviceAccount"),
            "{:?}",
            out.denials
        );
        let nobody = User {
            name: "nobody".into(),
            ..User::default()
        };
        let a = attrs(&nobody);
        let out = run(
            &p,
            &a,
            None,
            Some(&obj),
            &conditions::request_value(&a),
            None,
            None,
            &chain,
        )
        .unwrap();
        assert_eq!(out.denials.len(), 3, "{:?}", out.denials);
        assert_eq!(out.denials[0].1, "no");
    }
}
