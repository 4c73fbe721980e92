//! kube-apiserver's `--admission-control-config-file`: an AdmissionConfiguration
//! (apiserver.config.k8s.io/v1, YAML or JSON) giving admission plugins their configuration,
//! inline (`configuration`) or in a file of its own (`path`, relative to this file). pea reads
//! the PodSecurity plugin's; a configuration for a plugin pea does not have is logged and
//! ignored, as kube ignores configurations of plugins that are not enabled.

use std::path::Path;

use serde_json::Value;

use super::pod_security::config::PodSecurityConfig;

const API_VERSIONS: [&str; 2] = ["apiserver.config.k8s.io/v1", "apiserver.k8s.io/v1alpha1"];
const KIND: &str = "AdmissionConfiguration";
/// Larger configuration files are refused (kube's are a few KiB).
const MAX_BYTES: u64 = 1 << 20;

/// What the admission plugins were configured with.
#[derive(Debug, Clone, Default)]
pub struct AdmissionSettings {
    pub pod_security: PodSecurityConfig,
}

fn read_document(path: &Path) -> Result<Value, String> {
    let unreadable = |e: String| {
        format!(
            "unable to read admission control configuration from {:?} [{e}]",
            path.display().to_string()
        )
    };
    let size = std::fs::metadata(path)
        .map_err(|e| unreadable(e.to_string()))?
        .len();
    if size > MAX_BYTES {
        return Err(unreadable(format!(
            "{size} bytes is larger than the {MAX_BYTES} bytes allowed"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
    // JSON is YAML; serde_yaml reads both.
    serde_yaml::from_str::<Value>(&text).map_err(|e| unreadable(e.to_string()))
}

/// Reads and checks the file; the error says which file and field is wrong.
pub fn load(path: &Path) -> Result<AdmissionSettings, String> {
    let doc = read_document(path)?;
    let at = path.display().to_string();
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    if !API_VERSIONS.contains(&api_version) || kind != KIND {
        return Err(format!(
            "{at:?}: expected apiVersion {:?} and kind {KIND:?}, got apiVersion {api_version:?} and kind {kind:?}",
            API_VERSIONS[0]
        ));
    }
    let plugins = match doc.get("plugins") {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(p)) => p,
        Some(other) => return Err(format!("{at:?}: plugins: must be a list, got {other}")),
    };
    let mut settings = AdmissionSettings::default();
    let mut seen: Vec<&str> = Vec::new();
    for (i, p) in plugins.iter().enumerate() {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            return Err(format!("{at:?}: plugins[{i}].name: Required value"));
        }
        if seen.contains(&name) {
            return Err(format!(
                "{at:?}: plugins[{i}].name: Duplicate value: {name:?}"
            ));
        }
        seen.push(name);
        let inline = p.get("configuration").filter(|c| !c.is_null());
        let configuration = match (inline, p.get("path").and_then(Value::as_str)) {
            (Some(c), None) => c.clone(),
            (None, Some(file)) => {
                let file = path.parent().unwrap_or(Path::new(".")).join(file);
                read_document(&file)?
            }
            (None, None) => Value::Null,
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{at:?}: plugins[{i}]: configuration and path are mutually exclusive"
                ))
            }
        };
        match name {
            "PodSecurity" => {
                if configuration.is_null() {
                    continue;
                }
                settings.pod_security = PodSecurityConfig::parse(&configuration).map_err(|e| {
                    format!("{at:?}: couldn't init admission plugin \"PodSecurity\": {e}")
                })?;
            }
            other => tracing::warn!(
                plugin = other,
                file = %at,
                "admission plugin configuration ignored: pea has no such configurable plugin"
            ),
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn inline_and_path_configurations_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let inline = write(
            dir.path(),
            "inline.yaml",
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: PodSecurity\n  configuration:\n    apiVersion: pod-security.admission.config.k8s.io/v1\n    kind: PodSecurityConfiguration\n    defaults: {enforce: baseline}\n    exemptions: {namespaces: [kube-system]}\n- name: EventRateLimit\n  path: ignored.yaml\n",
        );
        write(dir.path(), "ignored.yaml", "{}");
        let s = load(&inline).unwrap();
        assert_eq!(s.pod_security.defaults.enforce.level, "baseline");
        assert!(s.pod_security.exempt_namespace("kube-system"));
        write(
            dir.path(),
            "psa.json",
            r#"{"apiVersion": "pod-security.admission.config.k8s.io/v1", "kind": "PodSecurityConfiguration", "exemptions": {"usernames": ["ops"]}}"#,
        );
        let by_path = write(
            dir.path(),
            "by-path.yaml",
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: PodSecurity\n  path: psa.json\n",
        );
        assert!(load(&by_path).unwrap().pod_security.exempt_user("ops"));
    }

    #[test]
    fn bad_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.yaml");
        assert!(load(&missing)
            .unwrap_err()
            .starts_with("unable to read admission control configuration from"));
        let wrong = write(
            dir.path(),
            "wrong.yaml",
            "apiVersion: v1\nkind: ConfigMap\n",
        );
        assert!(load(&wrong).unwrap_err().contains("kind \"ConfigMap\""));
        let bad = write(
            dir.path(),
            "bad.yaml",
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: PodSecurity\n  configuration:\n    apiVersion: pod-security.admission.config.k8s.io/v1\n    kind: PodSecurityConfiguration\n    defaults: {enforce: strict}\n",
        );
        let err = load(&bad).unwrap_err();
        assert!(err.contains("couldn't init admission plugin \"PodSecurity\": defaults.enforce: Invalid value: \"strict\""), "{err}");
    }
}
