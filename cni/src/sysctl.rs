//! Per-namespace sysctls the node needs. `/proc/sys/net` shows the namespace of the process that
//! opens it, so these act on the namespace the plugin runs in (the node's).

use std::{io, path::Path};

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("setting {key}={value}: {source}")]
    Write {
        key: String,
        value: String,
        #[source]
        source: io::Error,
    },
}

/// Sets `key` (a path under /proc/sys) to `value` unless it already has it.
/// Returns `Ok(false)` when the key does not exist (e.g. a module is not loaded).
pub fn ensure(key: &str, value: &str) -> Result<bool, SysctlError> {
    let path = Path::new("/proc/sys").join(key.replace('.', "/"));
    match std::fs::read_to_string(&path) {
        Ok(cur) if cur.trim() == value => return Ok(true),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(_) => {}
    }
    std::fs::write(&path, value).map_err(|source| SysctlError::Write {
        key: key.into(),
        value: value.into(),
        source,
    })?;
    Ok(true)
}

/// Loads the br_netfilter module (`modprobe br_netfilter`) unless its sysctls are already there;
/// a failure is a warning (pea-cni then warns on every ADD that bridged traffic bypasses
/// netfilter). Loading a module changes no address, route or rule of any namespace.
pub fn load_br_netfilter() {
    load_module_unless(
        Path::new("/proc/sys/net/bridge"),
        "modprobe",
        "br_netfilter",
    );
}

/// Runs `<modprobe> <module>` unless `present` exists; whether it ran and succeeded.
fn load_module_unless(present: &Path, modprobe: &str, module: &str) -> bool {
    if present.exists() {
        return false;
    }
    match std::process::Command::new(modprobe).arg(module).output() {
        Ok(out) if out.status.success() => {
            tracing::info!(module, "loaded kernel module");
            true
        }
        Ok(out) => {
            tracing::warn!(
                module,
                "{modprobe} {module} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            tracing::warn!(module, "running {modprobe} {module}: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_is_loaded_only_when_its_sysctls_are_missing() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("calls");
        let fake = d.path().join("modprobe");
        std::fs::write(
            &fake,
            format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let fake = fake.to_str().unwrap();
        let sysctls = d.path().join("bridge");
        assert!(load_module_unless(&sysctls, fake, "br_netfilter"));
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "br_netfilter\n");
        std::fs::create_dir(&sysctls).unwrap();
        assert!(!load_module_unless(&sysctls, fake, "br_netfilter"));
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "br_netfilter\n");
        // A modprobe that is not there is a warning, not a panic.
        assert!(!load_module_unless(
            &d.path().join("absent"),
            "/nonexistent/modprobe",
            "br_netfilter"
        ));
    }
}
