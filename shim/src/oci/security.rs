//! Capabilities, seccomp and AppArmor from a CRI security context.

use std::collections::HashSet;
use std::path::{Component, Path};

use k8s_cri::v1 as cri;
use oci_spec::runtime::{Capability, LinuxCapabilities, LinuxSeccomp};

use super::{invalid, io_error, seccomp_default, unsupported, OciError};

/// Capability names in kernel bit order (capability.h), CAP_ prefix dropped.
const CAP_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

pub(super) const CAP_SYS_RESOURCE_BIT: u32 = 24;

/// `NAME`, `CAP_NAME`, any case → the capability.
pub(super) fn parse_cap(name: &str) -> Option<Capability> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if !CAP_NAMES.contains(&bare) {
        return None;
    }
    serde_json::from_value(serde_json::Value::String(format!("CAP_{bare}"))).ok()
}

/// The kernel bit number of a capability named `NAME` or `CAP_NAME` (any case).
pub fn capability_bit(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAP_NAMES.iter().position(|n| *n == bare).map(|i| i as u32)
}

/// Every capability this crate knows.
pub(super) fn all_caps() -> HashSet<Capability> {
    CAP_NAMES.iter().filter_map(|n| parse_cap(n)).collect()
}

/// The capabilities whose bits are set in a /proc/<pid>/status Cap* mask.
pub(super) fn caps_in_mask(mask: u64) -> HashSet<Capability> {
    CAP_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .filter_map(|(_, n)| parse_cap(n))
        .collect()
}

/// containerd's sets: `caps` in bounding, effective and permitted; `ambient` also in
/// inheritable and ambient (and in the other three).
pub(super) fn caps_struct(
    caps: &HashSet<Capability>,
    ambient: &HashSet<Capability>,
) -> LinuxCapabilities {
    let all: HashSet<Capability> = caps.union(ambient).copied().collect();
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(all.clone()));
    c.set_effective(Some(all.clone()));
    c.set_permitted(Some(all));
    c.set_inheritable((!ambient.is_empty()).then(|| ambient.clone()));
    c.set_ambient((!ambient.is_empty()).then(|| ambient.clone()));
    c
}

/// containerd's WithCapabilities: add "ALL", then drop "ALL", then the named adds, then the
/// named drops; ambient adds on top. "ALL" means the host's bounding set; a named cap outside
/// it cannot be granted and is refused.
pub(super) fn container_caps(
    spec: Option<&cri::Capability>,
    bounding: &HashSet<Capability>,
) -> Result<(HashSet<Capability>, HashSet<Capability>), OciError> {
    let mut caps: HashSet<Capability> = super::defaults::default_caps()
        .intersection(bounding)
        .copied()
        .collect();
    let Some(spec) = spec else {
        return Ok((caps, HashSet::new()));
    };
    const F: &str = "linux.security_context.capabilities";
    let is_all = |s: &String| s.eq_ignore_ascii_case("ALL");
    let named = |list: &[String], field: &str, grant: bool| -> Result<Vec<Capability>, OciError> {
        let mut out = Vec::new();
        for (i, name) in list.iter().enumerate() {
            if is_all(name) {
                continue;
            }
            let cap = parse_cap(name).ok_or_else(|| {
                invalid(
                    format!("{F}.{field}[{i}]"),
                    format!("unknown capability {name:?}"),
                )
            })?;
            if grant && !bounding.contains(&cap) {
                return Err(unsupported(
                    format!("{F}.{field}[{i}]"),
                    format!(
                        "{name} is not in the runtime's capability bounding set on this host, \
                         so it cannot be granted"
                    ),
                ));
            }
            out.push(cap);
        }
        Ok(out)
    };
    let add = named(&spec.add_capabilities, "add_capabilities", true)?;
    let drop = named(&spec.drop_capabilities, "drop_capabilities", false)?;
    if spec.add_ambient_capabilities.iter().any(is_all) {
        let i = spec
            .add_ambient_capabilities
            .iter()
            .position(is_all)
            .unwrap_or_default();
        return Err(invalid(
            format!("{F}.add_ambient_capabilities[{i}]"),
            "\"ALL\" is not allowed for ambient capabilities",
        ));
    }
    let ambient: HashSet<Capability> = named(
        &spec.add_ambient_capabilities,
        "add_ambient_capabilities",
        true,
    )?
    .into_iter()
    .collect();

    if spec.add_capabilities.iter().any(is_all) {
        caps = bounding.clone();
    }
    if spec.drop_capabilities.iter().any(is_all) {
        caps.clear();
    }
    caps.extend(add);
    for d in drop {
        caps.remove(&d);
    }
    Ok((caps, ambient))
}

/// The deprecated string forms: "", "runtime/default", "docker/default", "unconfined",
/// "localhost/<path>".
fn legacy_profile(path: &str, field: &str) -> Result<Option<cri::SecurityProfile>, OciError> {
    use cri::security_profile::ProfileType;
    let profile = |t: ProfileType, r: &str| cri::SecurityProfile {
        profile_type: t as i32,
        localhost_ref: r.to_string(),
    };
    Ok(match path {
        "" => None,
        "runtime/default" | "docker/default" => Some(profile(ProfileType::RuntimeDefault, "")),
        "unconfined" => Some(profile(ProfileType::Unconfined, "")),
        other => match other.strip_prefix("localhost/") {
            Some(r) => Some(profile(ProfileType::Localhost, r)),
            None => {
                return Err(invalid(
                    field,
                    format!(
                        "{other:?} is not a profile (runtime/default, docker/default, \
                         unconfined or localhost/<path>)"
                    ),
                ))
            }
        },
    })
}

/// The seccomp filter for a security context (`field` is its path: "linux.security_context");
/// None means unconfined, which is also what no profile at all means (as containerd's
/// default `unset_seccomp_profile`).
pub(super) fn seccomp_profile(
    profile: Option<&cri::SecurityProfile>,
    legacy_path: &str,
    field: &str,
    profile_root: &Path,
    caps: &HashSet<Capability>,
) -> Result<Option<LinuxSeccomp>, OciError> {
    use cri::security_profile::ProfileType;
    let (profile, pfield) = match profile {
        Some(p) => (Some(p.clone()), format!("{field}.seccomp")),
        None => {
            let f = format!("{field}.seccomp_profile_path");
            (legacy_profile(legacy_path, &f)?, f)
        }
    };
    let Some(profile) = profile else {
        return Ok(None);
    };
    let typ = ProfileType::try_from(profile.profile_type).map_err(|_| {
        invalid(
            format!("{pfield}.profile_type"),
            format!("unknown profile type {}", profile.profile_type),
        )
    })?;
    if typ != ProfileType::Localhost && !profile.localhost_ref.is_empty() {
        return Err(invalid(
            format!("{pfield}.localhost_ref"),
            "set, but the profile type is not Localhost",
        ));
    }
    match typ {
        ProfileType::Unconfined => Ok(None),
        ProfileType::RuntimeDefault => Ok(Some(seccomp_default::runtime_default_profile_for(caps))),
        ProfileType::Localhost => load_localhost(
            &profile.localhost_ref,
            &format!("{pfield}.localhost_ref"),
            profile_root,
        )
        .map(Some),
    }
}

/// A profile file on the node: an absolute path as the kubelet sends it, or one relative to
/// the shim's profile root; `..` is refused either way.
fn load_localhost(reference: &str, field: &str, root: &Path) -> Result<LinuxSeccomp, OciError> {
    if reference.is_empty() {
        return Err(invalid(field, "empty; a Localhost profile needs a path"));
    }
    let rel = Path::new(reference);
    if rel.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(
            field,
            format!("{reference:?} has a '..' component"),
        ));
    }
    let path = if rel.is_absolute() {
        rel.to_path_buf()
    } else {
        root.join(rel)
    };
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    let mut value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| invalid(field, format!("{}: not JSON: {e}", path.display())))?;
    docker_compat(&mut value);
    serde_json::from_value(value).map_err(|e| {
        invalid(
            field,
            format!("{}: not a seccomp profile: {e}", path.display()),
        )
    })
}

/// Docker-format profiles: `archMap` instead of `architectures`, `name` instead of `names`.
fn docker_compat(v: &mut serde_json::Value) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    if !obj.contains_key("architectures") {
        if let Some(map) = obj.remove("archMap") {
            let mut arches = Vec::new();
            for entry in map.as_array().into_iter().flatten() {
                if let Some(a) = entry.get("architecture") {
                    arches.push(a.clone());
                }
                for s in entry
                    .get("subArchitectures")
                    .and_then(|s| s.as_array())
                    .into_iter()
                    .flatten()
                {
                    arches.push(s.clone());
                }
            }
            obj.insert("architectures".into(), serde_json::Value::Array(arches));
        }
    } else {
        obj.remove("archMap");
    }
    for rule in obj
        .get_mut("syscalls")
        .and_then(|s| s.as_array_mut())
        .into_iter()
        .flatten()
    {
        if let Some(r) = rule.as_object_mut() {
            if !r.contains_key("names") {
                if let Some(name) = r.remove("name") {
                    r.insert("names".into(), serde_json::Value::Array(vec![name]));
                }
            }
        }
    }
}

/// This host has no AppArmor: asking for a specific profile is an error, runtime/default and
/// unconfined mean nothing to do.
pub(super) fn check_apparmor(
    profile: Option<&cri::SecurityProfile>,
    legacy: &str,
    field: &str,
) -> Result<(), OciError> {
    use cri::security_profile::ProfileType;
    if let Some(p) = profile {
        if p.profile_type == ProfileType::Localhost as i32 {
            return Err(unsupported(
                format!("{field}.apparmor"),
                format!(
                    "AppArmor profile {:?} requested, but this host has no AppArmor",
                    p.localhost_ref
                ),
            ));
        }
        return Ok(());
    }
    match legacy {
        "" | "runtime/default" | "unconfined" => Ok(()),
        other => Err(unsupported(
            format!("{field}.apparmor_profile"),
            format!("AppArmor profile {other:?} requested, but this host has no AppArmor"),
        )),
    }
}
