//! Reading `staticPodPath` as kubelet's file source (`pkg/kubelet/config/file.go`): each
//! regular file (hidden ones ignored) holds one Pod in YAML or JSON; the pod is named
//! `NAME-NODENAME`, lands in `default` unless it names a namespace, is bound to this node,
//! tolerates every NoExecute taint, and gets its UID from a hash of its manifest, the node and
//! the source — the value of `kubernetes.io/config.hash` and, on its mirror pod, of
//! `kubernetes.io/config.mirror`. (kubelet hashes with MD5 over Go's object dump; here SHA-256
//! of the JSON, cut to the same 32 hex digits: the same role, not the same digits.)

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, Toleration};
use sha2::{Digest, Sha256};

pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";
/// The most one manifest may hold (kubelet reads whole files; bounded here).
const MAX_MANIFEST: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("static pod path {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("static pod manifest {path}: {message}")]
    File { path: PathBuf, message: String },
}

/// Whether a pod came from a manifest file.
pub fn is_static(pod: &Pod) -> bool {
    annotation(pod, CONFIG_SOURCE).is_some_and(|s| s == "file")
}

/// Whether an API pod is the mirror of a static pod.
pub fn is_mirror(pod: &Pod) -> bool {
    annotation(pod, CONFIG_MIRROR).is_some()
}

pub fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The pods of every manifest in `dir`; a bad file is reported and skipped, as kubelet does.
pub fn read_dir(dir: &Path, node: &str) -> Result<(Vec<Pod>, Vec<ManifestError>), ManifestError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ManifestError::Dir {
        path: dir.into(),
        source,
    })?;
    let mut names: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.is_file()))
        .map(|e| e.path())
        .collect();
    names.sort();
    let (mut pods, mut errors) = (Vec::new(), Vec::new());
    for path in names {
        match read_file(&path, node) {
            Ok(p) => pods.push(p),
            Err(e) => errors.push(e),
        }
    }
    Ok((pods, errors))
}

pub fn read_file(path: &Path, node: &str) -> Result<Pod, ManifestError> {
    let bad = |message: String| ManifestError::File {
        path: path.into(),
        message,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| bad(e.to_string()))?
        .len();
    if len > MAX_MANIFEST {
        return Err(bad(format!("larger than {MAX_MANIFEST} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    // YAML is a superset of JSON: one parser reads both.
    let value: serde_json::Value =
        serde_yaml::from_str(&text).map_err(|e| bad(format!("not YAML or JSON: {e}")))?;
    match (value["apiVersion"].as_str(), value["kind"].as_str()) {
        (Some("v1"), Some("Pod")) => {}
        (v, k) => {
            return Err(bad(format!(
                "want apiVersion v1, kind Pod; got apiVersion {v:?}, kind {k:?}"
            )))
        }
    }
    let pod: Pod = serde_json::from_value(value).map_err(|e| bad(format!("not a Pod: {e}")))?;
    from_manifest(pod, node).map_err(bad)
}

/// kubelet's `applyDefaults` for file pods.
pub fn from_manifest(mut pod: Pod, node: &str) -> Result<Pod, String> {
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name is required")?;
    if pod.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
        return Err("spec.containers: at least one container is required".into());
    }
    let hash = {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&pod).map_err(|e| e.to_string())?);
        h.update(node.as_bytes());
        h.update(b"file");
        hex::encode(&h.finalize()[..16])
    };
    let m = &mut pod.metadata;
    m.name = Some(format!("{name}-{}", node.to_lowercase()));
    if m.namespace.as_deref().is_none_or(str::is_empty) {
        m.namespace = Some("default".into());
    }
    m.uid = Some(hash.clone());
    m.resource_version = None;
    let a = m.annotations.get_or_insert_with(Default::default);
    a.insert(CONFIG_HASH.into(), hash);
    a.insert(CONFIG_SOURCE.into(), "file".into());
    a.insert(
        CONFIG_SEEN.into(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    );
    let spec = pod.spec.as_mut().expect("checked above");
    spec.node_name = Some(node.to_string());
    let tolerate_no_execute = Toleration {
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        ..Default::default()
    };
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    if !tolerations.contains(&tolerate_no_execute) {
        tolerations.push(tolerate_no_execute);
    }
    pod.status = None;
    Ok(pod)
}

/// The config hash of a static pod (its UID).
pub fn hash(pod: &Pod) -> &str {
    annotation(pod, CONFIG_HASH).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_become_static_pods_and_bad_ones_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("web.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: busybox}]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("db.json"),
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"db","namespace":"kube-system"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "not: [a pod").unwrap();
        std::fs::write(
            dir.path().join("svc.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let (pods, errors) = read_dir(dir.path(), "Node-A").unwrap();
        let names: Vec<_> = pods
            .iter()
            .map(|p| {
                format!(
                    "{}/{}",
                    p.metadata.namespace.as_deref().unwrap(),
                    p.metadata.name.as_deref().unwrap()
                )
            })
            .collect();
        assert_eq!(names, ["kube-system/db-node-a", "default/web-node-a"]);
        let web = &pods[1];
        assert!(is_static(web) && !is_mirror(web));
        assert_eq!(web.metadata.uid.as_deref(), Some(hash(web)));
        assert_eq!(hash(web).len(), 32);
        assert_eq!(
            web.spec.as_ref().unwrap().node_name.as_deref(),
            Some("Node-A")
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].to_string().contains("svc.yaml"), "{}", errors[0]);
        assert!(errors[0].to_string().contains("kind Pod"), "{}", errors[0]);
        // The same manifest hashes the same; a change (or another node) changes the hash.
        let again = read_file(&dir.path().join("web.yaml"), "Node-A").unwrap();
        assert_eq!(hash(&again), hash(web));
        let other = read_file(&dir.path().join("web.yaml"), "node-b").unwrap();
        assert_ne!(hash(&other), hash(web));
        assert!(read_dir(&dir.path().join("missing"), "n").is_err());
        std::fs::write(
            dir.path().join("empty.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: e}\nspec: {containers: []}\n",
        )
        .unwrap();
        let e = read_file(&dir.path().join("empty.yaml"), "n").unwrap_err();
        assert!(e.to_string().contains("at least one container"), "{e}");
    }
}
