//! The webhook dispatcher (kube's `admission/plugin/webhook/{mutating,validating}`): reads the
//! Mutating/ValidatingWebhookConfigurations, picks the webhooks whose rules, matchPolicy,
//! namespaceSelector and objectSelector select the request, calls them with an AdmissionReview
//! (mutating ones in order, applying their JSONPatches and re-invoking `IfNeeded` ones once;
//! validating ones in parallel), and turns their answers into denials, warnings, or — when a
//! call fails — kube's `failed calling webhook` error unless `failurePolicy: Ignore`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tracing::Instrument;

use super::client::{self, Endpoint};
use super::review::{self, Answer};
use super::rules::{any_rule_matches, Target};
use super::Attributes;
use crate::api::Api;
use crate::objects;
use crate::status::{ApiError, BackendFailure};

pub const GROUP: &str = "admissionregistration.k8s.io";
pub const MUTATING: &str = "mutatingwebhookconfigurations";
pub const VALIDATING: &str = "validatingwebhookconfigurations";

/// kube's default `timeoutSeconds`.
const DEFAULT_TIMEOUT_SECS: u64 = 10;

/// One webhook of a configuration.
#[derive(Debug, Clone)]
struct Hook {
    name: String,
    spec: Value,
}

impl Hook {
    fn field(&self, f: &str) -> Option<&str> {
        self.spec.get(f).and_then(Value::as_str)
    }

    fn ignores_failures(&self) -> bool {
        self.field("failurePolicy") == Some("Ignore")
    }

    fn timeout(&self) -> Duration {
        let secs = self
            .spec
            .get("timeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_TIMEOUT_SECS)
            .clamp(1, 30);
        Duration::from_secs(secs)
    }
}

/// Every webhook of every configuration of `plural`, configurations in name order (as kube
/// sorts them), webhooks in their listed order.
async fn load(api: &Api, plural: &str) -> Result<Vec<Hook>, ApiError> {
    let configs = api
        .informers
        .list_all(api.store.as_ref(), GROUP, plural)
        .await?;
    Ok(configs
        .iter()
        .flat_map(|c| {
            c.obj
                .get("webhooks")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .map(|spec| Hook {
            name: spec
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            spec,
        })
        .collect())
}

/// The labels namespaceSelector looks at, read once per request.
#[derive(Default)]
struct NamespaceLabels {
    read: Option<Value>,
}

impl NamespaceLabels {
    async fn of(&mut self, api: &Api, ns: &str) -> Result<&Value, ApiError> {
        if self.read.is_none() {
            // Not there (yet): no labels; the create itself fails later.
            let labels = super::pod_security::namespace_labels(api, ns)
                .await?
                .unwrap_or(Value::Null);
            self.read = Some(labels);
        }
        Ok(self.read.get_or_insert(Value::Null))
    }
}

fn selector_matches(sel: Option<&Value>, labels: Option<&Value>) -> bool {
    match sel {
        None | Some(Value::Null) => true,
        Some(s) => crate::semantic::selects(s, labels),
    }
}

fn labels_of(obj: Option<&Value>) -> Option<&Value> {
    obj.and_then(|o| o.pointer("/metadata/labels"))
}

/// The group/version/resource the webhook's rules select the request at, if any: the request's
/// own, or under matchPolicy Equivalent another served version of the same resource.
fn matched_target<'a>(api: &'a Api, hook: &Hook, attrs: &'a Attributes<'_>) -> Option<Target<'a>> {
    let rules = hook.spec.get("rules").unwrap_or(&Value::Null);
    let own = Target {
        group: &attrs.group,
        version: &attrs.version,
        resource: &attrs.resource,
    };
    if any_rule_matches(rules, attrs, &own) {
        return Some(own);
    }
    if hook.field("matchPolicy") == Some("Exact") {
        return None;
    }
    api.resources
        .all()
        .iter()
        .filter(|d| {
            d.group == attrs.group && d.plural == attrs.resource && d.version != attrs.version
        })
        .map(|d| Target {
            group: d.group,
            version: d.version,
            resource: d.plural,
        })
        .find(|t| any_rule_matches(rules, attrs, t))
}

/// Whether the selectors let the webhook see this request.
async fn selected(
    api: &Api,
    hook: &Hook,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: Option<&Value>,
    ns: &mut NamespaceLabels,
) -> Result<bool, ApiError> {
    let object_sel = hook.spec.get("objectSelector");
    // kube: the object or the old object may match (a DELETE has only the old one).
    let object_ok = selector_matches(object_sel, labels_of(obj))
        || (old.is_some() && selector_matches(object_sel, labels_of(old)));
    if !object_ok {
        return Ok(false);
    }
    let ns_sel = hook.spec.get("namespaceSelector");
    if attrs.group.is_empty() && attrs.resource == "namespaces" {
        // A namespace is selected by its own labels.
        let own = labels_of(obj).or(labels_of(old));
        return Ok(selector_matches(ns_sel, own));
    }
    if attrs.namespace.is_empty() {
        return Ok(true);
    }
    let labels = ns.of(api, &attrs.namespace).await?;
    Ok(selector_matches(ns_sel, Some(labels)))
}

/// A call that failed (subject to failurePolicy), in kube's words after the webhook's name.
struct Failed(String);

/// Where the webhook is: its URL, or its Service's ClusterIP (kube-apiserver's default
/// service resolver, which dials the ClusterIP — reachable when the API server's host routes
/// Service IPs, e.g. runs pea-proxy). `cc` is a `clientConfig` (admission and conversion
/// webhooks share its shape); errors are what kube prints after `failed to call webhook: `.
pub(crate) async fn endpoint(api: &Api, cc: &Value, timeout: Duration) -> Result<Endpoint, String> {
    let query = format!("timeout={}s", timeout.as_secs());
    if let Some(url) = cc.get("url").and_then(Value::as_str) {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("invalid url {url:?}: {e}"))?;
        let host = uri
            .host()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let path = match uri.query() {
            Some(q) => format!("{}?{q}&{query}", uri.path()),
            None => format!("{}?{query}", uri.path()),
        };
        let shown = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("https"),
            uri.authority().map(|a| a.as_str()).unwrap_or(""),
            path
        );
        return Ok(Endpoint {
            server_name: host.clone(),
            host,
            port: uri.port_u16().unwrap_or(443),
            path,
            url: shown,
        });
    }
    let svc = cc.get("service").unwrap_or(&Value::Null);
    let name = svc.get("name").and_then(Value::as_str).unwrap_or("");
    let ns = svc.get("namespace").and_then(Value::as_str).unwrap_or("");
    let port = svc
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(443);
    let path = svc.get("path").and_then(Value::as_str).unwrap_or("/");
    let url = format!("https://{name}.{ns}.svc:{port}{path}?{query}");
    let fail = |why: String| format!("Post {url:?}: {why}");
    let def = api
        .resources
        .find("", "v1", "services")
        .ok_or_else(|| fail("services are not served".into()))?;
    let (kv, _) = api
        .store
        .get(&def.key(Some(ns), name))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let service = kv
        .ok_or_else(|| fail(format!("service \"{name}\" not found")))
        .and_then(|kv| objects::decode(&kv).map_err(|e| fail(e.to_string())))?;
    let ip = service
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .ok_or_else(|| fail(format!("service {ns}/{name} has no cluster IP")))?;
    Ok(Endpoint {
        host: ip.to_string(),
        port,
        server_name: format!("{name}.{ns}.svc"),
        path: format!("{path}?{query}"),
        url,
    })
}

/// `obj` as the webhook's matched version shows it (only HorizontalPodAutoscaler is served in
/// two versions: stored as v2, converted for a webhook that asked for v1).
fn to_version(obj: &Value, attrs: &Attributes<'_>, version: &str) -> Value {
    if version == attrs.version || attrs.resource != "horizontalpodautoscalers" {
        return obj.clone();
    }
    crate::hpa_conversion::v2_to_v1(obj)
}

/// The patched view back in the request's version.
fn from_version(view: Value, attrs: &Attributes<'_>, version: &str) -> Result<Value, String> {
    if version == attrs.version || attrs.resource != "horizontalpodautoscalers" {
        return Ok(view);
    }
    crate::hpa_conversion::v1_to_v2(&view)
}

/// Calls one webhook with the request; `Err(Failed)` when the call itself did not work.
async fn call(
    api: &Api,
    hook: &Hook,
    attrs: &Attributes<'_>,
    target: &Target<'_>,
    old: Option<&Value>,
    obj: Option<&Value>,
) -> Result<Answer, Failed> {
    let timeout = hook.timeout();
    let cc = hook.spec.get("clientConfig").unwrap_or(&Value::Null);
    let to = endpoint(api, cc, timeout)
        .await
        .map_err(|e| Failed(format!("failed to call webhook: {e}")))?;
    let ca = client::decode_ca_bundle(hook.spec.pointer("/clientConfig/caBundle"))
        .map_err(|e| Failed(format!("failed to call webhook: {e}")))?;
    let uid = objects::new_uid();
    let kind = if target.version == attrs.version {
        (
            attrs.kind.0.as_str(),
            attrs.kind.1.as_str(),
            attrs.kind.2.as_str(),
        )
    } else {
        (attrs.kind.0.as_str(), target.version, attrs.kind.2.as_str())
    };
    let old_view = old.map(|o| to_version(o, attrs, target.version));
    let obj_view = obj.map(|o| to_version(o, attrs, target.version));
    let body = review::request(
        &uid,
        attrs,
        target,
        kind,
        old_view.as_ref(),
        obj_view.as_ref(),
    );
    let span = tracing::debug_span!("webhook", name = %hook.name, uid = %uid, url = %to.url);
    let (code, answer) = client::post(&to, &ca, objects::encode(&body), timeout)
        .instrument(span)
        .await
        .map_err(|e| Failed(format!("failed to call webhook: {e}")))?;
    if code != 200 {
        let text = String::from_utf8_lossy(&answer[..answer.len().min(512)]).to_string();
        return Err(Failed(format!(
            "failed to call webhook: the server responded with the status code {code}: {}",
            text.trim_end()
        )));
    }
    let parsed = review::parse(&answer, &uid).map_err(Failed)?;
    for (k, v) in &parsed.audit_annotations {
        tracing::info!(webhook = %hook.name, key = %format!("{}/{k}", hook.name), value = %v, "webhook audit annotation");
    }
    Ok(parsed)
}

/// kube's `failed calling webhook` internal error (failurePolicy Fail).
fn call_failed(hook: &Hook, why: &str, attrs: &Attributes<'_>) -> ApiError {
    let text = format!("failed calling webhook {:?}: {why}", hook.name);
    ApiError::Backend(Box::new(BackendFailure {
        code: 500,
        reason: "InternalError",
        message: format!("Internal error occurred: {text}"),
        server_message: text,
        resource: attrs.resource.clone(),
        name: attrs.name.clone(),
    }))
}

/// A webhook's refusal, with its status code (at least 400) and message (kube's `ToStatusErr`).
fn denied(hook: &Hook, status: &Value, attrs: &Attributes<'_>) -> ApiError {
    let code = status
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400 && *c < 600)
        .unwrap_or(400);
    let by = format!("admission webhook {:?} denied the request", hook.name);
    let message = status.get("message").and_then(Value::as_str).unwrap_or("");
    let reason = status.get("reason").and_then(Value::as_str).unwrap_or("");
    let text = if !message.is_empty() {
        format!("{by}: {message}")
    } else if !reason.is_empty() {
        format!("{by}: {reason}")
    } else {
        format!("{by} without explanation")
    };
    ApiError::Backend(Box::new(BackendFailure {
        code,
        reason: known_reason(reason),
        message: text.clone(),
        server_message: text,
        resource: attrs.resource.clone(),
        name: attrs.name.clone(),
    }))
}

/// The webhook's Status reason when it is one of kube's (the wire value is kept as is).
fn known_reason(reason: &str) -> &'static str {
    const KNOWN: [&str; 16] = [
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "Timeout",
        "TooManyRequests",
        "BadRequest",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
    ];
    KNOWN.iter().find(|k| **k == reason).copied().unwrap_or("")
}

/// Refuses a dry run to a webhook that has side effects (kube: sideEffects other than None or
/// NoneOnDryRun).
fn check_dry_run(hook: &Hook, attrs: &Attributes<'_>) -> Result<(), ApiError> {
    if attrs.dry_run && !matches!(hook.field("sideEffects"), Some("None" | "NoneOnDryRun")) {
        return Err(ApiError::BadRequest(format!(
            "admission webhook {:?} does not support dry run",
            hook.name
        )));
    }
    Ok(())
}

/// The mutating webhooks for a write of `obj`, which their patches change.
pub async fn mutate(
    api: &Arc<Api>,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: &mut Value,
) -> Result<Vec<String>, ApiError> {
    let hooks = load(api, MUTATING).await?;
    if hooks.is_empty() {
        return Ok(Vec::new());
    }
    let mut ns = NamespaceLabels::default();
    let mut warnings = Vec::new();
    // The object after each webhook that ran, for reinvocation.
    let mut ran: Vec<(usize, Value)> = Vec::new();
    for (i, hook) in hooks.iter().enumerate() {
        if run_mutating(api, hook, attrs, old, obj, &mut ns, &mut warnings).await? {
            ran.push((i, obj.clone()));
        }
    }
    // reinvocationPolicy IfNeeded: once more for a webhook whose output a later one changed.
    let again: Vec<usize> = ran
        .iter()
        .filter(|(i, after)| {
            hooks[*i].field("reinvocationPolicy") == Some("IfNeeded") && after != &*obj
        })
        .map(|(i, _)| *i)
        .collect();
    for i in again {
        run_mutating(api, &hooks[i], attrs, old, obj, &mut ns, &mut warnings).await?;
    }
    Ok(warnings)
}

/// Runs one mutating webhook if it selects the request; returns whether it was called.
async fn run_mutating(
    api: &Api,
    hook: &Hook,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: &mut Value,
    ns: &mut NamespaceLabels,
    warnings: &mut Vec<String>,
) -> Result<bool, ApiError> {
    let Some(target) = matched_target(api, hook, attrs) else {
        return Ok(false);
    };
    if !selected(api, hook, attrs, old, Some(obj), ns).await?
        || !super::policy::conditions::webhook_matches(
            &api.authz,
            &hook.spec,
            attrs,
            old,
            Some(obj),
        )?
    {
        return Ok(false);
    }
    check_dry_run(hook, attrs)?;
    let answer = match call(api, hook, attrs, &target, old, Some(obj)).await {
        Ok(a) => a,
        Err(Failed(why)) if hook.ignores_failures() => {
            tracing::warn!(webhook = %hook.name, error = %why, "failed calling webhook, failing open");
            return Ok(true);
        }
        Err(Failed(why)) => return Err(call_failed(hook, &why, attrs)),
    };
    warnings.extend(answer.warnings.iter().cloned());
    if !answer.allowed {
        return Err(denied(hook, &answer.status, attrs));
    }
    let Some(patch) = answer.patch else {
        return Ok(true);
    };
    let patched = apply(obj, &patch, attrs, target.version);
    match patched {
        Ok(p) => *obj = p,
        Err(why) if hook.ignores_failures() => {
            tracing::warn!(webhook = %hook.name, error = %why, "webhook patch not applied, failing open");
        }
        Err(why) => return Err(call_failed(hook, &why, attrs)),
    }
    Ok(true)
}

/// Applies a webhook's JSONPatch to `obj` (in the webhook's version); the object must keep
/// its name, namespace and kind.
fn apply(
    obj: &Value,
    patch: &[u8],
    attrs: &Attributes<'_>,
    version: &str,
) -> Result<Value, String> {
    let view = to_version(obj, attrs, version);
    let patched = crate::verbs::patch::apply_patch("application/json-patch+json", &view, patch)
        .map_err(|e| format!("JSONPatch: {e}"))?;
    let patched = from_version(patched, attrs, version)?;
    for field in [
        "/metadata/name",
        "/metadata/namespace",
        "/kind",
        "/apiVersion",
    ] {
        if patched.pointer(field) != obj.pointer(field) {
            return Err(format!(
                "the patch changed {field}, which webhooks may not change"
            ));
        }
    }
    Ok(patched)
}

/// Mutating webhooks for a request without an object to change (DELETE, CONNECT): they may
/// deny; a patch is an error, as in kube.
pub async fn call_mutating_read_only(
    api: &Arc<Api>,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    let hooks = load(api, MUTATING).await?;
    let mut ns = NamespaceLabels::default();
    let mut warnings = Vec::new();
    for hook in &hooks {
        let Some(target) = matched_target(api, hook, attrs) else {
            continue;
        };
        if !selected(api, hook, attrs, old, obj, &mut ns).await?
            || !super::policy::conditions::webhook_matches(&api.authz, &hook.spec, attrs, old, obj)?
        {
            continue;
        }
        check_dry_run(hook, attrs)?;
        let answer = match call(api, hook, attrs, &target, old, obj).await {
            Ok(a) => a,
            Err(Failed(why)) if hook.ignores_failures() => {
                tracing::warn!(webhook = %hook.name, error = %why, "failed calling webhook, failing open");
                continue;
            }
            Err(Failed(why)) => return Err(call_failed(hook, &why, attrs)),
        };
        warnings.extend(answer.warnings.iter().cloned());
        if !answer.allowed {
            return Err(denied(hook, &answer.status, attrs));
        }
        if answer.patch.is_some() {
            return Err(call_failed(
                hook,
                &format!(
                    "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
                    hook.name
                ),
                attrs,
            ));
        }
    }
    Ok(warnings)
}

/// The validating webhooks, called in parallel; the first refusal (in configuration order)
/// wins.
pub async fn validate(
    api: &Arc<Api>,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    let hooks = load(api, VALIDATING).await?;
    if hooks.is_empty() {
        return Ok(Vec::new());
    }
    let mut ns = NamespaceLabels::default();
    let mut chosen = Vec::new();
    for hook in &hooks {
        let Some(target) = matched_target(api, hook, attrs) else {
            continue;
        };
        if selected(api, hook, attrs, old, obj, &mut ns).await?
            && super::policy::conditions::webhook_matches(&api.authz, &hook.spec, attrs, old, obj)?
        {
            check_dry_run(hook, attrs)?;
            chosen.push((hook, target));
        }
    }
    let calls = chosen
        .iter()
        .map(|(hook, target)| call(api, hook, attrs, target, old, obj));
    let answers = futures_util::future::join_all(calls).await;
    let mut warnings = Vec::new();
    let mut first_error = None;
    for ((hook, _), answer) in chosen.iter().zip(answers) {
        let err = match answer {
            Ok(a) => {
                warnings.extend(a.warnings.iter().cloned());
                if a.allowed {
                    continue;
                }
                denied(hook, &a.status, attrs)
            }
            Err(Failed(why)) if hook.ignores_failures() => {
                tracing::warn!(webhook = %hook.name, error = %why, "failed calling webhook, failing open");
                continue;
            }
            Err(Failed(why)) => call_failed(hook, &why, attrs),
        };
        first_error.get_or_insert(err);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(warnings),
    }
}
