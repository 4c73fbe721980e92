//! Pod volumes on the node, under `<root>/pods/<uid>/volumes/<plugin>/<name>` as kubelet lays
//! them out: emptyDir (disk, or tmpfs for medium Memory with its sizeLimit), hostPath (type
//! checked), configMap / secret / downwardAPI / projected (written atomically; secrets on tmpfs),
//! persistentVolumeClaim (the bound PersistentVolume's hostPath — created when its type is
//! DirectoryOrCreate, as the local-path provisioner's are — or local path, bind-mounted; a
//! claim that is not bound yet fails the mount, and the pod waits).
//! `setup` is idempotent and is called again on resync, which is how configMap and secret
//! updates reach running pods.

pub mod atomic;
pub mod token;

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{KeyToPath, Pod, Volume};

use crate::podconfig::env::Refs;
use crate::quantity;
use atomic::Payload;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume:?}: {message}")]
    Invalid { volume: String, message: String },
    #[error("volume {volume:?}: {message}")]
    Unsupported { volume: String, message: String },
    #[error("volume {volume:?}: {what}: {source}")]
    Io {
        volume: String,
        what: String,
        source: std::io::Error,
    },
    #[error("volume {volume:?}: configmap {name:?} not found")]
    ConfigMapMissing { volume: String, name: String },
    #[error("volume {volume:?}: secret {name:?} not found")]
    SecretMissing { volume: String, name: String },
    #[error("volume {volume:?}: key {key:?} not found in {kind} {name:?}")]
    KeyMissing {
        volume: String,
        kind: &'static str,
        name: String,
        key: String,
    },
    /// The claim cannot be mounted yet (missing, or not bound): the pod waits for it.
    #[error("volume {volume:?}: {message}")]
    ClaimPending { volume: String, message: String },
    /// The projected service-account token could not be had (TokenRequest failed).
    #[error("volume {volume:?}: {message}")]
    Token { volume: String, message: String },
    #[error("mounting tmpfs at {path}: {source}")]
    Mount { path: PathBuf, source: nix::Error },
}

/// Where one volume is on the node, and whether it must be mounted read-only whatever the
/// volumeMount says (configMap, secret, downwardAPI and projected volumes are, as in kube).
#[derive(Debug, Clone, PartialEq)]
pub struct HostVolume {
    pub path: PathBuf,
    pub read_only: bool,
}

/// Where a PersistentVolumeClaim's volume is on the node: its PersistentVolume's source.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimVolume {
    pub path: String,
    /// The hostPath type ("" when unset), or `local` for a local volume.
    pub type_: String,
}

/// The claim names the pod's volumes use.
pub fn claim_names(pod: &Pod) -> Vec<String> {
    let mut names: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Resolves a claim read from the API to its volume's path on the node (kube's
/// desired-state-of-world populator checks): the claim must be Bound to a volume this kubelet
/// can mount.
pub fn resolve_claim(
    ns: &str,
    claim: Option<&k8s_openapi::api::core::v1::PersistentVolumeClaim>,
    name: &str,
    volume: Option<&k8s_openapi::api::core::v1::PersistentVolume>,
) -> Result<ClaimVolume, String> {
    let Some(claim) = claim else {
        return Err(format!("persistentvolumeclaim {name:?} not found"));
    };
    if claim.metadata.deletion_timestamp.is_some() {
        return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
    }
    let phase = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("");
    if phase != "Bound" || volume_name.is_empty() {
        return Err(format!("PVC {ns}/{name} has non-bound phase ({phase:?}) or empty pvc.Spec.VolumeName ({volume_name:?})"));
    }
    let Some(spec) = volume.and_then(|v| v.spec.as_ref()) else {
        return Err(format!("persistentvolume {volume_name:?} not found"));
    };
    if let Some(h) = &spec.host_path {
        return Ok(ClaimVolume {
            path: h.path.clone(),
            type_: h.type_.clone().unwrap_or_default(),
        });
    }
    if let Some(l) = &spec.local {
        return Ok(ClaimVolume {
            path: l.path.clone(),
            type_: "local".into(),
        });
    }
    Err(format!("persistentvolume {volume_name:?} is not a hostPath or local volume (the only kinds pea-kubelet mounts)"))
}

/// The first claim of the pod that cannot be mounted yet, with why.
pub fn pending_claim(pod: &Pod, refs: &Refs) -> Option<String> {
    claim_names(pod)
        .into_iter()
        .find_map(|n| match refs.claims.get(&n) {
            Some(Ok(_)) => None,
            Some(Err(m)) => Some(m.clone()),
            None => Some(format!("persistentvolumeclaim {n:?} not looked up yet")),
        })
}

pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// Prepares every volume of `pod` (idempotent). On error, what this call made for this pod is
/// left for `teardown`, which the worker runs when the pod goes.
pub fn setup(
    pod: &Pod,
    refs: &Refs,
    root: &Path,
) -> Result<BTreeMap<String, HostVolume>, VolumeError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let base = pod_dir(root, &uid).join("volumes");
    let mut out = BTreeMap::new();
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        let hv = setup_one(pod, v, refs, &base)?;
        out.insert(v.name.clone(), hv);
    }
    Ok(out)
}

fn setup_one(pod: &Pod, v: &Volume, refs: &Refs, base: &Path) -> Result<HostVolume, VolumeError> {
    let name = v.name.as_str();
    let io = |what: &str, path: &Path, e: std::io::Error| VolumeError::Io {
        volume: name.to_string(),
        what: format!("{what} {}", path.display()),
        source: e,
    };
    let dir_for = |plugin: &str| base.join(format!("kubernetes.io~{plugin}")).join(name);
    if let Some(e) = &v.empty_dir {
        let dir = dir_for("empty-dir");
        std::fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
        if e.medium.as_deref() == Some("Memory") {
            let size = e
                .size_limit
                .as_ref()
                .and_then(quantity::bytes)
                .unwrap_or(refs.node_memory);
            ensure_tmpfs(&dir, size, 0o777)?;
        } else {
            set_mode(&dir, 0o777).map_err(|e| io("chmod", &dir, e))?;
        }
        return Ok(HostVolume {
            path: dir,
            read_only: false,
        });
    }
    if let Some(h) = &v.host_path {
        return host_path(name, &h.path, h.type_.as_deref().unwrap_or(""));
    }
    if let Some(c) = &v.persistent_volume_claim {
        let cv = match refs.claims.get(&c.claim_name) {
            Some(Ok(cv)) => cv,
            Some(Err(m)) => {
                return Err(VolumeError::ClaimPending {
                    volume: name.into(),
                    message: m.clone(),
                })
            }
            None => {
                return Err(VolumeError::ClaimPending {
                    volume: name.into(),
                    message: format!("persistentvolumeclaim {:?} not looked up yet", c.claim_name),
                })
            }
        };
        // A local volume's path must exist (it is a disk or directory someone prepared).
        let ty = if cv.type_ == "local" {
            "Directory"
        } else {
            cv.type_.as_str()
        };
        let mut hv = host_path(name, &cv.path, ty)?;
        hv.read_only = c.read_only.unwrap_or(false);
        return Ok(hv);
    }
    if let Some(c) = &v.config_map {
        let mut payload = Payload::new();
        let mode = c.default_mode.unwrap_or(0o644) as u32;
        match refs.configmaps.get(&c.name) {
            Some(cm) => {
                let data = configmap_data(cm);
                add_items(
                    name,
                    "configmap",
                    &c.name,
                    &data,
                    c.items.as_deref(),
                    mode,
                    &mut payload,
                )?;
            }
            None if c.optional == Some(true) => {}
            None => {
                return Err(VolumeError::ConfigMapMissing {
                    volume: name.into(),
                    name: c.name.clone(),
                })
            }
        }
        let dir = dir_for("configmap");
        atomic::write(name, &dir, &payload)?;
        return Ok(HostVolume {
            path: dir,
            read_only: true,
        });
    }
    if let Some(s) = &v.secret {
        let sname = s.secret_name.clone().unwrap_or_default();
        let mut payload = Payload::new();
        let mode = s.default_mode.unwrap_or(0o644) as u32;
        match refs.secrets.get(&sname) {
            Some(sec) => {
                let data = secret_data(sec);
                add_items(
                    name,
                    "secret",
                    &sname,
                    &data,
                    s.items.as_deref(),
                    mode,
                    &mut payload,
                )?;
            }
            None if s.optional == Some(true) => {}
            None => {
                return Err(VolumeError::SecretMissing {
                    volume: name.into(),
                    name: sname,
                })
            }
        }
        let dir = dir_for("secret");
        std::fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
        // Secrets never touch the node's disk.
        ensure_tmpfs(&dir, 0, 0o755)?;
        atomic::write(name, &dir, &payload)?;
        return Ok(HostVolume {
            path: dir,
            read_only: true,
        });
    }
    if let Some(d) = &v.downward_api {
        let mode = d.default_mode.unwrap_or(0o644) as u32;
        let mut payload = Payload::new();
        for item in d.items.iter().flatten() {
            let content = downward_item(
                pod,
                name,
                item.field_ref.as_ref(),
                item.resource_field_ref.as_ref(),
                refs,
            )?;
            payload.insert(
                item.path.clone(),
                (content.into_bytes(), item.mode.map_or(mode, |m| m as u32)),
            );
        }
        let dir = dir_for("downward-api");
        atomic::write(name, &dir, &payload)?;
        return Ok(HostVolume {
            path: dir,
            read_only: true,
        });
    }
    if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(0o644) as u32;
        let mut payload = Payload::new();
        for src in p.sources.iter().flatten() {
            if let Some(c) = &src.config_map {
                match refs.configmaps.get(&c.name) {
                    Some(cm) => add_items(
                        name,
                        "configmap",
                        &c.name,
                        &configmap_data(cm),
                        c.items.as_deref(),
                        mode,
                        &mut payload,
                    )?,
                    None if c.optional == Some(true) => {}
                    None => {
                        return Err(VolumeError::ConfigMapMissing {
                            volume: name.into(),
                            name: c.name.clone(),
                        })
                    }
                }
            }
            if let Some(s) = &src.secret {
                match refs.secrets.get(&s.name) {
                    Some(sec) => add_items(
                        name,
                        "secret",
                        &s.name,
                        &secret_data(sec),
                        s.items.as_deref(),
                        mode,
                        &mut payload,
                    )?,
                    None if s.optional == Some(true) => {}
                    None => {
                        return Err(VolumeError::SecretMissing {
                            volume: name.into(),
                            name: s.name.clone(),
                        })
                    }
                }
            }
            if let Some(d) = &src.downward_api {
                for item in d.items.iter().flatten() {
                    let content = downward_item(
                        pod,
                        name,
                        item.field_ref.as_ref(),
                        item.resource_field_ref.as_ref(),
                        refs,
                    )?;
                    payload.insert(
                        item.path.clone(),
                        (content.into_bytes(), item.mode.map_or(mode, |m| m as u32)),
                    );
                }
            }
            if let Some(t) = &src.service_account_token {
                atomic::check_path(name, &t.path)?;
                let key = token::key(
                    t.audience.as_deref().unwrap_or(""),
                    t.expiration_seconds
                        .unwrap_or(token::DEFAULT_EXPIRATION_SECONDS),
                );
                match refs.sa_tokens.get(&key) {
                    Some(Ok(tok)) => {
                        payload.insert(t.path.clone(), (tok.clone(), mode));
                    }
                    Some(Err(m)) => {
                        return Err(VolumeError::Token {
                            volume: name.into(),
                            message: m.clone(),
                        })
                    }
                    None => {
                        return Err(VolumeError::Token {
                            volume: name.into(),
                            message: "the service-account token was not requested yet".into(),
                        })
                    }
                }
            }
            if src.cluster_trust_bundle.is_some() {
                return Err(VolumeError::Unsupported {
                    volume: name.into(),
                    message: "projected clusterTrustBundle is not implemented".into(),
                });
            }
        }
        let dir = dir_for("projected");
        std::fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
        ensure_tmpfs(&dir, 0, 0o755)?;
        atomic::write(name, &dir, &payload)?;
        return Ok(HostVolume {
            path: dir,
            read_only: true,
        });
    }
    let kind = serde_json::to_value(v)
        .ok()
        .and_then(|j| {
            j.as_object()
                .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        })
        .unwrap_or_else(|| "unknown".into());
    Err(VolumeError::Unsupported {
        volume: name.into(),
        message: format!("volume type {kind:?} is not supported by pea-kubelet (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected, persistentVolumeClaim)"),
    })
}

fn configmap_data(cm: &k8s_openapi::api::core::v1::ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    data
}

fn secret_data(s: &k8s_openapi::api::core::v1::Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

fn add_items(
    volume: &str,
    kind: &'static str,
    source: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: u32,
    payload: &mut Payload,
) -> Result<(), VolumeError> {
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                let Some(content) = data.get(&it.key) else {
                    return Err(VolumeError::KeyMissing {
                        volume: volume.into(),
                        kind,
                        name: source.into(),
                        key: it.key.clone(),
                    });
                };
                atomic::check_path(volume, &it.path)?;
                payload.insert(
                    it.path.clone(),
                    (content.clone(), it.mode.map_or(mode, |m| m as u32)),
                );
            }
        }
        _ => {
            for (k, content) in data {
                atomic::check_path(volume, k)?;
                payload.insert(k.clone(), (content.clone(), mode));
            }
        }
    }
    Ok(())
}

fn downward_item(
    pod: &Pod,
    volume: &str,
    field: Option<&k8s_openapi::api::core::v1::ObjectFieldSelector>,
    res: Option<&k8s_openapi::api::core::v1::ResourceFieldSelector>,
    refs: &Refs,
) -> Result<String, VolumeError> {
    let m = &pod.metadata;
    let bad = |message: String| VolumeError::Invalid {
        volume: volume.into(),
        message,
    };
    let fmt_map = |map: Option<&BTreeMap<String, String>>| -> String {
        map.into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}\n"))
            .collect()
    };
    if let Some(f) = field {
        return Ok(match f.field_path.as_str() {
            "metadata.labels" => fmt_map(m.labels.as_ref()),
            "metadata.annotations" => fmt_map(m.annotations.as_ref()),
            "metadata.name" => m.name.clone().unwrap_or_default(),
            "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
            "metadata.uid" => m.uid.clone().unwrap_or_default(),
            p if p.starts_with("metadata.labels['") || p.starts_with("metadata.annotations['") => {
                let key = p
                    .split_once("['")
                    .and_then(|(_, r)| r.strip_suffix("']"))
                    .unwrap_or("");
                let map = if p.starts_with("metadata.labels") {
                    m.labels.as_ref()
                } else {
                    m.annotations.as_ref()
                };
                map.and_then(|x| x.get(key)).cloned().unwrap_or_default()
            }
            other => return Err(bad(format!("unsupported downward API fieldRef {other:?}"))),
        });
    }
    if let Some(r) = res {
        let cname = r.container_name.clone().unwrap_or_default();
        let c = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == cname))
            .ok_or_else(|| bad(format!("resourceFieldRef: no container {cname:?}")))?;
        let env = crate::podconfig::env::container_env(
            pod,
            &k8s_openapi::api::core::v1::Container {
                name: "downward".into(),
                resources: c.resources.clone(),
                env: Some(vec![k8s_openapi::api::core::v1::EnvVar {
                    name: "V".into(),
                    value_from: Some(k8s_openapi::api::core::v1::EnvVarSource {
                        resource_field_ref: Some(r.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            &Refs {
                services: Vec::new(),
                ..refs.clone()
            },
        )
        .map_err(|e| bad(e.to_string()))?;
        return Ok(env
            .into_iter()
            .find(|(k, _)| k == "V")
            .map(|(_, v)| v)
            .unwrap_or_default());
    }
    Err(bad(
        "a downward API item needs fieldRef or resourceFieldRef".into(),
    ))
}

/// hostPath with kube's type checks. Writable mounts of the kernel's interfaces are refused:
/// a pod writing /proc/sys or /sys would reconfigure the node.
fn host_path(volume: &str, path: &str, ty: &str) -> Result<HostVolume, VolumeError> {
    let bad = |message: String| VolumeError::Invalid {
        volume: volume.into(),
        message,
    };
    let p = Path::new(path);
    if !p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(bad(format!(
            "hostPath {path:?} must be absolute without '..'"
        )));
    }
    let io = |what: &str, e: std::io::Error| VolumeError::Io {
        volume: volume.into(),
        what: format!("{what} {path}"),
        source: e,
    };
    let meta = std::fs::metadata(p);
    match ty {
        "" => {}
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(p).map_err(|e| io("creating", e))?;
                set_mode(p, 0o755).map_err(|e| io("chmod", e))?;
            } else if !p.is_dir() {
                return Err(bad(format!(
                    "hostPath type check failed: {path} is not a directory"
                )));
            }
        }
        "Directory" => {
            if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
                return Err(bad(format!(
                    "hostPath type check failed: {path} is not a directory"
                )));
            }
        }
        "FileOrCreate" => {
            if meta.is_err() {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| io("creating", e))?;
                set_mode(p, 0o644).map_err(|e| io("chmod", e))?;
            } else if !p.is_file() {
                return Err(bad(format!(
                    "hostPath type check failed: {path} is not a file"
                )));
            }
        }
        "File" => {
            if !meta.as_ref().is_ok_and(|m| m.is_file()) {
                return Err(bad(format!(
                    "hostPath type check failed: {path} is not a file"
                )));
            }
        }
        "Socket" | "CharDevice" | "BlockDevice" => {
            let ok = meta.as_ref().is_ok_and(|m| {
                let ft = m.file_type();
                match ty {
                    "Socket" => ft.is_socket(),
                    "CharDevice" => ft.is_char_device(),
                    _ => ft.is_block_device(),
                }
            });
            if !ok {
                return Err(bad(format!(
                    "hostPath type check failed: {path} is not a {ty}"
                )));
            }
        }
        other => return Err(bad(format!("unknown hostPath type {other:?}"))),
    }
    Ok(HostVolume {
        path: p.to_path_buf(),
        read_only: false,
    })
}

/// Host paths a container may mount only read-only.
pub fn kernel_interface(path: &Path) -> bool {
    path.starts_with("/proc") || path.starts_with("/sys")
}

fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

fn is_mountpoint(p: &Path) -> bool {
    mounts_under(p).iter().any(|m| m == p)
}

/// Mount points at or under `prefix`, deepest first.
pub fn mounts_under(prefix: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(prefix))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    out.dedup();
    out
}

fn ensure_tmpfs(dir: &Path, size: u64, mode: u32) -> Result<(), VolumeError> {
    if is_mountpoint(dir) {
        return Ok(());
    }
    let mut opts = format!("mode={mode:o}");
    if size > 0 {
        opts.push_str(&format!(",size={size}"));
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|source| VolumeError::Mount {
        path: dir.to_path_buf(),
        source,
    })
}

/// Unmounts and removes everything of pod `uid` on the node.
pub fn teardown(root: &Path, uid: &str) -> Result<(), VolumeError> {
    let dir = pod_dir(root, uid);
    for m in mounts_under(&dir) {
        if let Err(source) = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
            return Err(VolumeError::Mount { path: m, source });
        }
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(VolumeError::Io {
            volume: "*".into(),
            what: format!("removing {}", dir.display()),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_types() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("new");
        let s = p.to_str().unwrap();
        assert!(host_path("v", s, "Directory").is_err());
        host_path("v", s, "DirectoryOrCreate").unwrap();
        assert!(p.is_dir());
        assert!(host_path("v", s, "File").is_err());
        let f = d.path().join("f");
        host_path("v", f.to_str().unwrap(), "FileOrCreate").unwrap();
        assert!(f.is_file());
        assert!(host_path("v", "rel/path", "").is_err());
        assert!(host_path("v", "/a/../etc", "").is_err());
        assert!(host_path("v", s, "Weird").is_err());
    }

    #[test]
    fn claims_mount_their_bound_volume_or_wait() {
        use serde_json::json;
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("storage").join("pvc-1");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [], "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "c", "readOnly": true}}]}
        }))
        .unwrap();
        let claim = |phase: &str, volume: Option<&str>| {
            serde_json::from_value::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(json!({
                "metadata": {"name": "c", "namespace": "ns"},
                "spec": {"volumeName": volume}, "status": {"phase": phase}}))
            .unwrap()
        };
        let pv: k8s_openapi::api::core::v1::PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pvc-1"},
            "spec": {"hostPath": {"path": data.to_str().unwrap(), "type": "DirectoryOrCreate"}}}))
        .unwrap();
        let pending = resolve_claim("ns", Some(&claim("Pending", None)), "c", None);
        assert_eq!(
            pending.as_ref().unwrap_err(),
            "PVC ns/c has non-bound phase (\"Pending\") or empty pvc.Spec.VolumeName (\"\")"
        );
        assert!(resolve_claim("ns", None, "c", None)
            .unwrap_err()
            .contains("not found"));
        let mut refs = Refs::default();
        refs.claims.insert("c".into(), pending);
        assert!(pending_claim(&pod, &refs).is_some());
        assert!(matches!(
            setup(&pod, &refs, d.path()),
            Err(VolumeError::ClaimPending { .. })
        ));
        let bound = resolve_claim("ns", Some(&claim("Bound", Some("pvc-1"))), "c", Some(&pv));
        refs.claims.insert("c".into(), bound);
        assert!(pending_claim(&pod, &refs).is_none());
        let vols = setup(&pod, &refs, d.path()).unwrap();
        assert_eq!(
            vols["data"],
            HostVolume {
                path: data.clone(),
                read_only: true
            }
        );
        assert!(
            data.is_dir(),
            "DirectoryOrCreate makes the provisioned directory"
        );
    }

    #[test]
    fn unknown_volume_types_are_named() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": [], "volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}}]}
        }))
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let err = setup(&pod, &Refs::default(), d.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"nfs\" is not supported"), "{err}");
    }

    #[test]
    fn configmap_items_and_modes() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u2", "labels": {"a": "b"}},
            "spec": {"containers": [], "volumes": [
                {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "k", "path": "dir/k.txt", "mode": 0o600}]}},
                {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
            ]}
        }))
        .unwrap();
        let mut refs = Refs::default();
        refs.configmaps.insert(
            "cm".into(),
            serde_json::from_value(serde_json::json!({"data": {"k": "v", "other": "x"}})).unwrap(),
        );
        let d = tempfile::tempdir().unwrap();
        let vols = setup(&pod, &refs, d.path()).unwrap();
        let cfg = &vols["cfg"];
        assert!(cfg.read_only);
        assert_eq!(
            std::fs::read_to_string(cfg.path.join("dir/k.txt")).unwrap(),
            "v"
        );
        assert!(!cfg.path.join("other").exists());
        assert_eq!(
            std::fs::read_to_string(vols["info"].path.join("labels")).unwrap(),
            "a=\"b\"\n"
        );
        teardown(d.path(), "u2").unwrap();
        assert!(!pod_dir(d.path(), "u2").exists());
    }
}
