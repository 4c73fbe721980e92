//! Pod Security admission (kube's built-in `PodSecurity` plugin): the namespace labels
//! `pod-security.kubernetes.io/{enforce,audit,warn}` (and `-version`) pick a level —
//! privileged, baseline or restricted — per mode. Pods violating the enforce level are refused
//! in kube's words; the warn level answers `Warning` headers (`would violate PodSecurity ...`),
//! for pods and for workload pod templates; the audit level is logged (pea has no audit log;
//! the line carries kube's `pod-security.kubernetes.io/audit-violations` annotation). Labels
//! are validated on namespaces, and setting a stricter enforce level warns about the pods
//! already there. Every version maps to the latest checks (kube 1.32's).
//!
//! The `--admission-control-config-file` PodSecurity configuration ([`config`]) sets the
//! policy of modes a namespace has no label for, and exempts usernames, runtimeClasses and
//! namespaces: their requests are not evaluated at all, and a label set on an exempt
//! namespace is answered with kube's warning that it is ignored.

pub mod checks;
pub mod config;

use std::fmt;

use serde_json::Value;

use super::{Attributes, Operation};
use crate::api::Api;
use crate::objects;
use crate::semantic::Cause;
use crate::status::ApiError;

const PREFIX: &str = "pod-security.kubernetes.io/";
const MODES: [&str; 3] = ["enforce", "audit", "warn"];
const LEVELS: [&str; 3] = ["privileged", "baseline", "restricted"];
/// kube's `defaultNamespaceMaxPodsToCheck`.
const MAX_PODS_TO_CHECK: usize = 3000;

/// A level and version, printed as kube prints it (`restricted:latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelVersion {
    pub level: &'static str,
    /// `latest` or `v1.N`.
    pub version: String,
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

impl LevelVersion {
    fn rank(&self) -> usize {
        LEVELS.iter().position(|l| *l == self.level).unwrap_or(2)
    }
}

/// The policy of a namespace, one level per mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

impl Policy {
    fn fully_privileged(&self) -> bool {
        [&self.enforce, &self.audit, &self.warn]
            .iter()
            .all(|lv| lv.level == "privileged")
    }
}

fn valid_version(v: &str) -> bool {
    v == "latest"
        || v.strip_prefix("v1.").is_some_and(|m| {
            !m.is_empty()
                && m.chars().all(|c| c.is_ascii_digit())
                && (m == "0" || !m.starts_with('0'))
        })
}

/// The policy the labels ask for with kube's defaults (privileged:latest) for the rest.
pub fn policy_of(labels: Option<&Value>) -> (Policy, Vec<Cause>) {
    policy_with_defaults(labels, &config::PodSecurityConfig::default().defaults)
}

/// The policy the labels ask for (kube's `PolicyToEvaluate`), `defaults` where a mode has no
/// label: a bad level counts as restricted and a bad version as latest (failing safe), and
/// each is reported.
pub fn policy_with_defaults(labels: Option<&Value>, defaults: &Policy) -> (Policy, Vec<Cause>) {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let mut errors = Vec::new();
    let mut mode = |m: &str| {
        let default = match m {
            "enforce" => &defaults.enforce,
            "audit" => &defaults.audit,
            _ => &defaults.warn,
        };
        let key = format!("{PREFIX}{m}");
        let level = match get(&key) {
            None => default.level,
            Some(l) => {
                match LEVELS.iter().find(|x| **x == l) {
                    Some(x) => x,
                    None => {
                        errors.push((
                        format!("metadata.labels[{key}]"),
                        format!("Invalid value: {l:?}: must be one of privileged, baseline, restricted"),
                    ));
                        "restricted"
                    }
                }
            }
        };
        let vkey = format!("{key}-version");
        let version = match get(&vkey) {
            None => default.version.clone(),
            Some(v) if valid_version(v) => v.to_string(),
            Some(v) => {
                errors.push((
                    format!("metadata.labels[{vkey}]"),
                    format!("Invalid value: {v:?}: must be \"latest\" or \"v1.x\""),
                ));
                "latest".to_string()
            }
        };
        LevelVersion { level, version }
    };
    let [enforce, audit, warn] = MODES.map(&mut mode);
    (
        Policy {
            enforce,
            audit,
            warn,
        },
        errors,
    )
}

/// Workload kinds whose pod template is checked (warn and audit only, as kube).
fn template_of<'a>(kind: &str, obj: &'a Value) -> Option<&'a Value> {
    match kind {
        "Deployment"
        | "ReplicaSet"
        | "DaemonSet"
        | "StatefulSet"
        | "Job"
        | "ReplicationController" => obj.pointer("/spec/template"),
        "CronJob" => obj.pointer("/spec/jobTemplate/spec/template"),
        "PodTemplate" => obj.get("template"),
        _ => None,
    }
}

/// The PodSecurity plugin for a create or update: returns warnings, or the refusal.
pub async fn admit(
    api: &Api,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: &Value,
) -> Result<Vec<String>, ApiError> {
    if !matches!(attrs.operation, Operation::Create | Operation::Update) {
        return Ok(Vec::new());
    }
    let core = attrs.group.is_empty();
    match attrs.kind.2.as_str() {
        "Namespace" if core && attrs.subresource.is_empty() => {
            namespace(api, attrs, old, obj).await
        }
        "Pod" if core => pod(api, attrs, old, obj).await,
        kind if attrs.subresource.is_empty() => match template_of(kind, obj) {
            Some(t) => workload(api, attrs, t).await,
            None => Ok(Vec::new()),
        },
        _ => Ok(Vec::new()),
    }
}

/// The labels of namespace `ns` (from admission's namespace cache), `None` when it has none
/// or does not exist.
pub(crate) async fn namespace_labels(api: &Api, ns: &str) -> Result<Option<Value>, ApiError> {
    let Some(def) = api.resources.find("", "v1", "namespaces") else {
        return Ok(None);
    };
    let cached = api
        .informers
        .namespaces
        .get(api.store.as_ref(), &def.key(None, ns))
        .await?;
    Ok(cached.and_then(|c| c.obj.pointer("/metadata/labels").cloned()))
}

/// The policy of a namespace with these labels under the configured defaults.
fn policy_in(api: &Api, labels: Option<&Value>) -> (Policy, Vec<Cause>) {
    policy_with_defaults(labels, &api.admission.pod_security.defaults)
}

/// kube's `exemptNamespaceWarning`: labels asking for a non-privileged policy on an exempt
/// namespace are ignored, and said so.
fn exempt_namespace_warning(
    api: &Api,
    ns: &str,
    policy: &Policy,
    labels: Option<&Value>,
) -> Vec<String> {
    if policy.fully_privileged() || *policy == api.admission.pod_security.defaults {
        return Vec::new();
    }
    let has = |k: String| labels.and_then(|l| l.get(&k)).is_some();
    let parts: Vec<String> = MODES
        .iter()
        .zip([&policy.enforce, &policy.audit, &policy.warn])
        .filter(|(m, lv)| {
            lv.level != "privileged"
                && (has(format!("{PREFIX}{m}")) || has(format!("{PREFIX}{m}-version")))
        })
        .map(|(m, lv)| format!("{m}={lv}"))
        .collect();
    vec![format!(
        "namespace {ns:?} is exempt from Pod Security, and the policy ({}) will be ignored",
        parts.join(", ")
    )]
}

/// Labels on a namespace: valid on create; on update, valid if they changed; a stricter
/// enforce level warns about the pods already there.
async fn namespace(
    api: &Api,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: &Value,
) -> Result<Vec<String>, ApiError> {
    let (new_policy, new_errors) = policy_in(api, obj.pointer("/metadata/labels"));
    let exempt = api.admission.pod_security.exempt_namespace(&attrs.name);
    let invalid = |causes: Vec<Cause>| ApiError::Invalid {
        group: String::new(),
        kind: "Namespace".into(),
        name: attrs.name.clone(),
        causes,
    };
    let Some(old) = old.filter(|_| attrs.operation == Operation::Update) else {
        if !new_errors.is_empty() {
            return Err(invalid(new_errors));
        }
        if exempt {
            return Ok(exempt_namespace_warning(
                api,
                &attrs.name,
                &new_policy,
                obj.pointer("/metadata/labels"),
            ));
        }
        return Ok(Vec::new());
    };
    let (old_policy, old_errors) = policy_in(api, old.pointer("/metadata/labels"));
    if !new_errors.is_empty() && (old_errors.is_empty() || new_errors != old_errors) {
        return Err(invalid(new_errors));
    }
    let (new, was) = (&new_policy.enforce, &old_policy.enforce);
    if new == was
        || new.level == "privileged"
        || (new.version == was.version && new.rank() <= was.rank())
    {
        return Ok(Vec::new());
    }
    if exempt {
        return Ok(exempt_namespace_warning(
            api,
            &attrs.name,
            &new_policy,
            obj.pointer("/metadata/labels"),
        ));
    }
    pods_violating(api, &attrs.name, new).await
}

/// kube's `EvaluatePodsInNamespace`: one warning line per distinct set of reasons, naming the
/// first pod (by name) and how many others share it.
async fn pods_violating(
    api: &Api,
    ns: &str,
    enforce: &LevelVersion,
) -> Result<Vec<String>, ApiError> {
    let Some(def) = api.resources.find("", "v1", "pods") else {
        return Ok(Vec::new());
    };
    let opts = pea_control_store::ListOptions {
        limit: Some(MAX_PODS_TO_CHECK),
        ..Default::default()
    };
    let page = api
        .store
        .list(&def.prefix(Some(ns)), &opts)
        .await
        .map_err(|e| ApiError::from_store(e, "", "pods", ""))?;
    let mut by_reason: Vec<(String, String, usize)> = Vec::new();
    for kv in &page.items {
        let p = objects::decode(kv)?;
        let v = checks::evaluate(
            enforce.level,
            p.get("metadata").unwrap_or(&Value::Null),
            p.get("spec").unwrap_or(&Value::Null),
        );
        if v.is_empty() {
            continue;
        }
        let reasons = v
            .iter()
            .map(|(r, _)| r.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let name = objects::name_of(&p).to_string();
        match by_reason.iter_mut().find(|(r, _, _)| *r == reasons) {
            Some((_, first, n)) => {
                *n += 1;
                if name < *first {
                    *first = name;
                }
            }
            None => by_reason.push((reasons, name, 1)),
        }
    }
    let mut warnings = Vec::new();
    if page.more {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {MAX_PODS_TO_CHECK} of more existing pods"
        ));
    }
    if by_reason.is_empty() {
        return Ok(warnings);
    }
    warnings.push(format!(
        "existing pods in namespace {ns:?} violate the new PodSecurity enforce level {:?}",
        enforce.to_string()
    ));
    let mut lines: Vec<String> = by_reason
        .into_iter()
        .map(|(reasons, first, n)| match n {
            1 => format!("{first}: {reasons}"),
            2 => format!("{first} (and 1 other pod): {reasons}"),
            n => format!("{first} (and {} other pods): {reasons}", n - 1),
        })
        .collect();
    lines.sort();
    warnings.extend(lines);
    Ok(warnings)
}

/// Pod subresources PodSecurity ignores (kube's `ignoredPodSubresources`).
const IGNORED_POD_SUBRESOURCES: [&str; 8] = [
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

/// Whether a pod update changes anything the checks look at (kube allows image changes and
/// metadata-only updates without evaluating).
fn significant_update(old: &Value, new: &Value) -> bool {
    let strip = |p: &Value| {
        let mut spec = p.get("spec").cloned().unwrap_or(Value::Null);
        for list in ["containers", "initContainers"] {
            if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("image");
                }
            }
        }
        let apparmor: Vec<(String, Value)> = p
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.contains("apparmor") || k.contains("seccomp"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (spec, apparmor)
    };
    strip(old) != strip(new)
}

async fn pod(
    api: &Api,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: &Value,
) -> Result<Vec<String>, ApiError> {
    if IGNORED_POD_SUBRESOURCES.contains(&attrs.subresource.as_str()) {
        return Ok(Vec::new());
    }
    if exempt_request(api, attrs) {
        return Ok(Vec::new());
    }
    let labels = namespace_labels(api, &attrs.namespace).await?;
    let (policy, errors) = policy_in(api, labels.as_ref());
    if errors.is_empty() && policy.fully_privileged() {
        return Ok(Vec::new());
    }
    if let Some(old) = old.filter(|_| attrs.operation == Operation::Update) {
        if !significant_update(old, obj) {
            return Ok(Vec::new());
        }
    }
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if api.admission.pod_security.exempt_runtime_class(spec) {
        return Ok(Vec::new());
    }
    let enforced = checks::evaluate(policy.enforce.level, meta, spec);
    audit(attrs, &policy, meta, spec);
    if !enforced.is_empty() {
        return Err(ApiError::Forbidden {
            group: String::new(),
            resource: "pods".into(),
            name: attrs.name.clone(),
            message: format!(
                "violates PodSecurity {:?}: {}",
                policy.enforce.to_string(),
                checks::forbidden_detail(&enforced)
            ),
        });
    }
    Ok(warn(&policy, meta, spec))
}

async fn workload(
    api: &Api,
    attrs: &Attributes<'_>,
    template: &Value,
) -> Result<Vec<String>, ApiError> {
    if exempt_request(api, attrs) {
        return Ok(Vec::new());
    }
    let labels = namespace_labels(api, &attrs.namespace).await?;
    let (policy, errors) = policy_in(api, labels.as_ref());
    if errors.is_empty() && policy.warn.level == "privileged" && policy.audit.level == "privileged"
    {
        return Ok(Vec::new());
    }
    let meta = template.get("metadata").unwrap_or(&Value::Null);
    let spec = template.get("spec").unwrap_or(&Value::Null);
    if api.admission.pod_security.exempt_runtime_class(spec) {
        return Ok(Vec::new());
    }
    audit(attrs, &policy, meta, spec);
    Ok(warn(&policy, meta, spec))
}

/// kube's short-circuits before the namespace is read: exempt namespaces, then users.
fn exempt_request(api: &Api, attrs: &Attributes<'_>) -> bool {
    let config = &api.admission.pod_security;
    config.exempt_namespace(&attrs.namespace) || config.exempt_user(&attrs.user.name)
}

fn warn(policy: &Policy, meta: &Value, spec: &Value) -> Vec<String> {
    let v = checks::evaluate(policy.warn.level, meta, spec);
    if v.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "would violate PodSecurity {:?}: {}",
        policy.warn.to_string(),
        checks::forbidden_detail(&v)
    )]
}

/// The audit mode: kube records an audit annotation; pea logs it.
fn audit(attrs: &Attributes<'_>, policy: &Policy, meta: &Value, spec: &Value) {
    let v = checks::evaluate(policy.audit.level, meta, spec);
    if v.is_empty() {
        return;
    }
    tracing::info!(
        namespace = %attrs.namespace,
        name = %attrs.name,
        resource = %attrs.resource,
        user = %attrs.user.name,
        "pod-security.kubernetes.io/audit-violations" = %format!(
            "would violate PodSecurity {:?}: {}",
            policy.audit.to_string(),
            checks::forbidden_detail(&v)
        ),
        "PodSecurity audit"
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn labels_pick_levels_and_bad_values_fail_safe() {
        let (p, errs) = policy_of(None);
        assert!(p.fully_privileged() && errs.is_empty());
        let (p, errs) = policy_of(Some(&json!({
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/warn-version": "v1.30"})));
        assert!(errs.is_empty());
        assert_eq!(p.enforce.to_string(), "baseline:latest");
        assert_eq!(p.warn.to_string(), "restricted:v1.30");
        assert_eq!(p.audit.to_string(), "privileged:latest");
        let (p, errs) = policy_of(Some(&json!({
            "pod-security.kubernetes.io/enforce": "strict",
            "pod-security.kubernetes.io/audit-version": "1.30"})));
        assert_eq!(p.enforce.level, "restricted");
        assert_eq!(
            errs,
            vec![
                (
                    "metadata.labels[pod-security.kubernetes.io/enforce]".to_string(),
                    "Invalid value: \"strict\": must be one of privileged, baseline, restricted"
                        .to_string()
                ),
                (
                    "metadata.labels[pod-security.kubernetes.io/audit-version]".to_string(),
                    "Invalid value: \"1.30\": must be \"latest\" or \"v1.x\"".to_string()
                ),
            ]
        );
    }

    #[test]
    fn image_changes_are_not_significant() {
        let a = json!({"spec": {"containers": [{"name": "c", "image": "a"}]}});
        let b = json!({"spec": {"containers": [{"name": "c", "image": "b"}]}, "metadata": {"labels": {"x": "y"}}});
        assert!(!significant_update(&a, &b));
        let c = json!({"spec": {"containers": [{"name": "c", "image": "a"}], "hostPID": true}});
        assert!(significant_update(&a, &c));
    }

    #[test]
    fn templates_of_workloads() {
        let d = json!({"spec": {"template": {"spec": {}}}});
        assert!(template_of("Deployment", &d).is_some());
        let cj = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {}}}}}});
        assert!(template_of("CronJob", &cj).is_some());
        assert!(template_of("ConfigMap", &d).is_none());
    }
}
