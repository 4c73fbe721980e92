//! A container's mounts: the defaults, the CRI mounts and the pod's files, as containerd's
//! WithMounts orders them (defaults first, minus those a supplied mount replaces; then the
//! supplied ones sorted so that parents mount before their children).

use std::path::{Component, Path, PathBuf};

use k8s_cri::v1 as cri;
use oci_spec::runtime::{Mount, MountBuilder};

use super::{defaults, invalid, is_clean_absolute, unsupported, OciError, PodFiles};

/// A bind mount.
pub(super) fn bind(source: &Path, dest: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .expect("a mount with every field set builds")
}

/// The mounts and the rootfs propagation they need.
#[derive(Debug)]
pub(super) struct Mounted {
    pub mounts: Vec<Mount>,
    pub rootfs_propagation: Option<String>,
}

/// A supplied mount before translation.
struct Supplied {
    dest: String,
    source: PathBuf,
    readonly: bool,
    rro: bool,
    propagation: cri::MountPropagation,
}

fn clean(p: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(p).components() {
        if let Component::Normal(s) = c {
            out.push(s);
        }
    }
    out
}

fn depth(p: &str) -> usize {
    clean(p).components().count()
}

pub(super) fn container_mounts(
    config: &cri::ContainerConfig,
    files: &PodFiles,
    host_ipc: bool,
    privileged: bool,
) -> Result<Mounted, OciError> {
    let readonly_rootfs = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.readonly_rootfs);

    let mut supplied = Vec::new();
    for (i, m) in config.mounts.iter().enumerate() {
        if m.host_path.is_empty() && m.image.is_some() {
            // Image volumes: not mounted (containerd's default).
            continue;
        }
        let field = |f: &str| format!("mounts[{i}].{f}");
        if !is_clean_absolute(&m.host_path) {
            return Err(invalid(
                field("host_path"),
                format!(
                    "{:?} must be an absolute path without '..' components",
                    m.host_path
                ),
            ));
        }
        if !is_clean_absolute(&m.container_path) {
            return Err(invalid(
                field("container_path"),
                format!(
                    "{:?} must be an absolute path without '..' components",
                    m.container_path
                ),
            ));
        }
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            // A plain bind here would silently drop the mapping the mount asks for.
            return Err(unsupported(
                field("uid_mappings"),
                "idmapped volume mounts are not implemented (pea-shim bind-mounts volumes as \
                 they are, also in user-namespace pods)",
            ));
        }
        let propagation = cri::MountPropagation::try_from(m.propagation).map_err(|_| {
            invalid(
                field("propagation"),
                format!("unknown propagation {}", m.propagation),
            )
        })?;
        if m.recursive_read_only {
            if !m.readonly {
                return Err(invalid(
                    field("recursive_read_only"),
                    "a recursive read-only mount must also be readonly",
                ));
            }
            if propagation != cri::MountPropagation::PropagationPrivate {
                return Err(invalid(
                    field("recursive_read_only"),
                    format!(
                        "a recursive read-only mount needs private propagation, not {}",
                        propagation.as_str_name()
                    ),
                ));
            }
        }
        // A symlinked host path mounts its target (the CRI says so); one that does not exist
        // yet is left to the runtime's error.
        let source =
            std::fs::canonicalize(&m.host_path).unwrap_or_else(|_| PathBuf::from(&m.host_path));
        supplied.push(Supplied {
            dest: m.container_path.clone(),
            source,
            readonly: m.readonly,
            rro: m.recursive_read_only,
            propagation,
        });
    }

    // The pod's files, unless a CRI mount already covers the path.
    let covered =
        |dest: &str, list: &[Supplied]| list.iter().any(|s| clean(&s.dest) == clean(dest));
    let mut extra = Vec::new();
    for (dest, src) in [
        ("/etc/hostname", &files.hostname),
        ("/etc/hosts", &files.hosts),
        ("/etc/resolv.conf", &files.resolv_conf),
    ] {
        if let Some(src) = src {
            if !covered(dest, &supplied) {
                extra.push(Supplied {
                    dest: dest.to_string(),
                    source: src.clone(),
                    readonly: readonly_rootfs,
                    rro: false,
                    propagation: cri::MountPropagation::PropagationPrivate,
                });
            }
        }
    }
    let shm = if host_ipc {
        Some(PathBuf::from("/dev/shm"))
    } else {
        files.shm.clone()
    };
    if let Some(src) = shm {
        if !covered("/dev/shm", &supplied) {
            extra.push(Supplied {
                dest: "/dev/shm".to_string(),
                source: src,
                readonly: false,
                rro: false,
                propagation: cri::MountPropagation::PropagationPrivate,
            });
        }
    }
    supplied.extend(extra);
    supplied.sort_by_key(|s| depth(&s.dest));

    // Defaults, minus what a supplied mount replaces (and everything under /dev when /dev
    // itself is supplied).
    let dev_supplied = supplied.iter().any(|s| clean(&s.dest) == Path::new("/dev"));
    let mut mounts: Vec<Mount> = defaults::default_mounts(privileged)
        .into_iter()
        .filter(|m| {
            let dest = m.destination();
            let replaced = supplied.iter().any(|s| clean(&s.dest) == *dest);
            let under_dev = dev_supplied && dest.starts_with("/dev/");
            !replaced && !under_dev
        })
        .collect();

    let mut rootfs_propagation: Option<String> = None;
    for s in supplied {
        let prop = match s.propagation {
            cri::MountPropagation::PropagationPrivate => "rprivate",
            cri::MountPropagation::PropagationHostToContainer => {
                if rootfs_propagation.as_deref() != Some("rshared") {
                    rootfs_propagation = Some("rslave".into());
                }
                "rslave"
            }
            cri::MountPropagation::PropagationBidirectional => {
                rootfs_propagation = Some("rshared".into());
                "rshared"
            }
        };
        let mode = match (s.readonly, s.rro) {
            (true, true) => "rro",
            (true, false) => "ro",
            _ => "rw",
        };
        mounts.push(bind(&s.source, &s.dest, &["rbind", prop, mode]));
    }
    Ok(Mounted {
        mounts,
        rootfs_propagation,
    })
}
