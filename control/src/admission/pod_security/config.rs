//! The PodSecurity plugin's configuration (kube's `PodSecurityConfiguration`,
//! pod-security.admission.config.k8s.io/v1), given in the `--admission-control-config-file`
//! AdmissionConfiguration: the policy of namespaces without labels (`defaults`) and the
//! requests never evaluated (`exemptions`: usernames, runtimeClasses, namespaces). Checked as
//! kube's `ValidatePodSecurityConfiguration`.

use serde_json::{Map, Value};

use super::{LevelVersion, Policy, LEVELS, MODES};

/// The apiVersions kube accepts for it.
const API_VERSIONS: [&str; 3] = [
    "pod-security.admission.config.k8s.io/v1",
    "pod-security.admission.config.k8s.io/v1beta1",
    "pod-security.admission.config.k8s.io/v1alpha1",
];
const KIND: &str = "PodSecurityConfiguration";

/// Defaults and exemptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSecurityConfig {
    /// The level and version per mode where a namespace has no label for it.
    pub defaults: Policy,
    pub exempt_usernames: Vec<String>,
    pub exempt_runtime_classes: Vec<String>,
    pub exempt_namespaces: Vec<String>,
}

impl Default for PodSecurityConfig {
    /// kube's defaults: privileged:latest for every mode, nothing exempt.
    fn default() -> Self {
        let privileged = || LevelVersion {
            level: "privileged",
            version: "latest".into(),
        };
        Self {
            defaults: Policy {
                enforce: privileged(),
                audit: privileged(),
                warn: privileged(),
            },
            exempt_usernames: Vec::new(),
            exempt_runtime_classes: Vec::new(),
            exempt_namespaces: Vec::new(),
        }
    }
}

impl PodSecurityConfig {
    pub fn exempt_namespace(&self, ns: &str) -> bool {
        !ns.is_empty() && self.exempt_namespaces.iter().any(|n| n == ns)
    }

    pub fn exempt_user(&self, user: &str) -> bool {
        !user.is_empty() && self.exempt_usernames.iter().any(|u| u == user)
    }

    /// Whether a pod spec's `runtimeClassName` is exempt.
    pub fn exempt_runtime_class(&self, spec: &Value) -> bool {
        spec.get("runtimeClassName")
            .and_then(Value::as_str)
            .is_some_and(|rc| !rc.is_empty() && self.exempt_runtime_classes.iter().any(|c| c == rc))
    }

    /// Reads the plugin's `configuration` object; the error lists every problem in kube's
    /// field-error words.
    pub fn parse(v: &Value) -> Result<Self, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("expected a {KIND} object, got {v}"))?;
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        if !API_VERSIONS.contains(&api_version) || kind != KIND {
            return Err(format!(
                "expected apiVersion {:?} and kind {KIND:?}, got apiVersion {api_version:?} and kind {kind:?}",
                API_VERSIONS[0]
            ));
        }
        let mut errors = Vec::new();
        unknown_fields(
            obj,
            "",
            &["apiVersion", "kind", "defaults", "exemptions"],
            &mut errors,
        );
        let empty = Map::new();
        let section = |name: &str, errors: &mut Vec<String>| -> Map<String, Value> {
            match obj.get(name) {
                None | Some(Value::Null) => empty.clone(),
                Some(Value::Object(m)) => m.clone(),
                Some(other) => {
                    errors.push(format!("{name}: Invalid value: {other}: must be an object"));
                    empty.clone()
                }
            }
        };
        let defaults = section("defaults", &mut errors);
        let exemptions = section("exemptions", &mut errors);
        let mut config = Self::default();
        let default_fields: Vec<String> = MODES
            .iter()
            .flat_map(|m| [m.to_string(), format!("{m}-version")])
            .collect();
        let default_refs: Vec<&str> = default_fields.iter().map(String::as_str).collect();
        unknown_fields(&defaults, "defaults.", &default_refs, &mut errors);
        for (mode, slot) in MODES.iter().zip([
            &mut config.defaults.enforce,
            &mut config.defaults.audit,
            &mut config.defaults.warn,
        ]) {
            if let Some(level) = string_field(&defaults, "defaults.", mode, &mut errors) {
                match LEVELS.iter().find(|l| **l == level) {
                    Some(l) => slot.level = l,
                    None => errors.push(format!(
                        "defaults.{mode}: Invalid value: {level:?}: must be one of privileged, baseline, restricted"
                    )),
                }
            }
            let vfield = format!("{mode}-version");
            if let Some(version) = string_field(&defaults, "defaults.", &vfield, &mut errors) {
                if super::valid_version(&version) {
                    slot.version = version;
                } else {
                    errors.push(format!(
                        "defaults.{vfield}: Invalid value: {version:?}: must be \"latest\" or \"v1.x\""
                    ));
                }
            }
        }
        unknown_fields(
            &exemptions,
            "exemptions.",
            &["usernames", "runtimeClasses", "namespaces"],
            &mut errors,
        );
        config.exempt_namespaces = names(&exemptions, "namespaces", &mut errors, |ns| {
            crate::validation::name_problem("Namespace", ns)
        });
        config.exempt_runtime_classes = names(&exemptions, "runtimeClasses", &mut errors, |rc| {
            crate::validation::name_problem("RuntimeClass", rc)
        });
        config.exempt_usernames = names(&exemptions, "usernames", &mut errors, |_| None);
        match errors.len() {
            0 => Ok(config),
            1 => Err(errors.remove(0)),
            _ => Err(format!("[{}]", errors.join(", "))),
        }
    }
}

fn unknown_fields(obj: &Map<String, Value>, at: &str, known: &[&str], errors: &mut Vec<String>) {
    for k in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        errors.push(format!("{at}{k}: Invalid value: unknown field {k:?}"));
    }
}

fn string_field(
    obj: &Map<String, Value>,
    at: &str,
    name: &str,
    errors: &mut Vec<String>,
) -> Option<String> {
    match obj.get(name) {
        None | Some(Value::Null) => None,
        // An empty value means the default, as kube's defaulting does.
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errors.push(format!(
                "{at}{name}: Invalid value: {other}: must be a string"
            ));
            None
        }
    }
}

/// One exemption list: each entry valid (`problem` says why not) and given once.
fn names(
    exemptions: &Map<String, Value>,
    field: &str,
    errors: &mut Vec<String>,
    problem: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let items = match exemptions.get(field) {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(a)) => a,
        Some(other) => {
            errors.push(format!(
                "exemptions.{field}: Invalid value: {other}: must be a list of strings"
            ));
            return Vec::new();
        }
    };
    let mut out: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("exemptions.{field}[{i}]");
        let Some(s) = item.as_str() else {
            errors.push(format!("{at}: Invalid value: {item}: must be a string"));
            continue;
        };
        if s.is_empty() {
            errors.push(format!("{at}: Required value"));
        } else if let Some(p) = problem(s) {
            errors.push(format!("{at}: Invalid value: {s:?}: {p}"));
        } else if out.iter().any(|o| o == s) {
            errors.push(format!("{at}: Duplicate value: {s:?}"));
        } else {
            out.push(s.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(defaults: Value, exemptions: Value) -> Value {
        json!({"apiVersion": "pod-security.admission.config.k8s.io/v1",
            "kind": "PodSecurityConfiguration", "defaults": defaults, "exemptions": exemptions})
    }

    #[test]
    fn a_complete_configuration_is_read() {
        let c = PodSecurityConfig::parse(&config(
            json!({"enforce": "baseline", "enforce-version": "v1.30", "warn": "restricted"}),
            json!({"usernames": ["admin"], "runtimeClasses": ["kata"], "namespaces": ["kube-system"]}),
        ))
        .unwrap();
        assert_eq!(c.defaults.enforce.to_string(), "baseline:v1.30");
        assert_eq!(c.defaults.audit.to_string(), "privileged:latest");
        assert_eq!(c.defaults.warn.to_string(), "restricted:latest");
        assert!(c.exempt_user("admin") && !c.exempt_user("bob"));
        assert!(c.exempt_namespace("kube-system") && !c.exempt_namespace("default"));
        assert!(c.exempt_runtime_class(&json!({"runtimeClassName": "kata"})));
        assert!(!c.exempt_runtime_class(&json!({})));
    }

    #[test]
    fn kube_refusals() {
        let err = PodSecurityConfig::parse(&config(
            json!({"enforce": "strict", "audit-version": "1.30"}),
            json!({"namespaces": ["Bad_NS", "ok", "ok"], "usernames": [""]}),
        ))
        .unwrap_err();
        assert!(err.starts_with('['), "{err}");
        assert!(err.contains(r#"defaults.enforce: Invalid value: "strict": must be one of privileged, baseline, restricted"#), "{err}");
        assert!(
            err.contains(
                r#"defaults.audit-version: Invalid value: "1.30": must be "latest" or "v1.x""#
            ),
            "{err}"
        );
        assert!(
            err.contains(r#"exemptions.namespaces[0]: Invalid value: "Bad_NS""#),
            "{err}"
        );
        assert!(
            err.contains(r#"exemptions.namespaces[2]: Duplicate value: "ok""#),
            "{err}"
        );
        assert!(
            err.contains("exemptions.usernames[0]: Required value"),
            "{err}"
        );
        let wrong_kind = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert!(PodSecurityConfig::parse(&wrong_kind)
            .unwrap_err()
            .contains("expected apiVersion \"pod-security.admission.config.k8s.io/v1\""));
        let typo = config(json!({}), json!({"namespace": ["x"]}));
        assert!(PodSecurityConfig::parse(&typo)
            .unwrap_err()
            .contains("exemptions.namespace: Invalid value: unknown field"));
    }
}
