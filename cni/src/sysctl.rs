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
