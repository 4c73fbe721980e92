//! The libcontainer executor: the last code that runs in the container process before execve.
//!
//! libcontainer calls `validate` and `setup_envs` before it reports "init ready" (errors reach
//! `create` synchronously), and `exec` after capabilities, uid/gid and fds are final. Here the
//! signal state inherited from the runtime (the blocked mask `run` sets up, Rust's
//! SIGPIPE=ignore) is undone, and the seccomp filter goes in, at one of two moments:
//!
//! - `noNewPrivileges: true` — last, right before execve ([`SeccompOrder::BeforeExec`], crun's
//!   order): no_new_privs lets an unprivileged process install a filter, and only `execve` runs
//!   under it, so a profile may deny anything the set-up path needs.
//! - `noNewPrivileges` false or unset — before the capability drop
//!   ([`SeccompOrder::BeforeCapabilityDrop`], runc's and youki's order): without no_new_privs the
//!   kernel wants CAP_SYS_ADMIN, which the container may not keep. libcontainer 0.7.0 drops
//!   capabilities before any executor hook, so pea carries a one-hook patch of it
//!   (`runtime/vendor/libcontainer/PEA-PATCH.md`): `before_capability_drop` runs with the full
//!   capability set. Letting pea do the final capability drop itself after `exec` begins would
//!   need libcontainer to skip its own drop, a larger patch; rewriting the bundle's config with
//!   extra capabilities would change what hooks and `state` see. The rest of libcontainer's
//!   set-up path then runs under the filter; [`crate::seccomp::AFTER_FILTER_BEFORE_DROP`] lists
//!   those syscalls, and `create` refuses a profile that denies one of them, naming it.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use oci_spec::runtime::Spec;

use crate::seccomp::{self, CompiledSeccomp};

/// When the seccomp filter goes in (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeccompOrder {
    /// `noNewPrivileges: true`: set no_new_privs, install right before execve.
    #[default]
    BeforeExec,
    /// `noNewPrivileges` false or unset: install while CAP_SYS_ADMIN is still held.
    BeforeCapabilityDrop,
}

/// Runs `process.args` like runc: PATH lookup in the container's env, then seccomp, then execve.
#[derive(Debug, Clone, Default)]
pub struct PeaExecutor {
    pub seccomp: Option<CompiledSeccomp>,
    pub order: SeccompOrder,
}

fn is_executable(p: &Path) -> bool {
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Resolves argv[0] the way execvp does, with `path_env` as PATH.
fn resolve(arg0: &str, path_env: Option<&str>) -> Result<PathBuf, String> {
    if arg0.is_empty() {
        return Err("process.args[0] is empty".into());
    }
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        return match p.metadata() {
            Err(e) => Err(format!("exec: \"{arg0}\": {e}")),
            Ok(_) if !is_executable(&p) => Err(format!("exec: \"{arg0}\": permission denied")),
            Ok(_) => Ok(p),
        };
    }
    let path = path_env.unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(arg0))
        .find(|p| is_executable(p))
        .ok_or_else(|| format!("exec: \"{arg0}\": executable file not found in $PATH"))
}

fn spec_args(spec: &Spec) -> Option<&Vec<String>> {
    spec.process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .filter(|a| !a.is_empty())
}

impl Executor for PeaExecutor {
    fn before_capability_drop(&self, _spec: &Spec) -> Result<(), ExecutorError> {
        match &self.seccomp {
            Some(filters) if self.order == SeccompOrder::BeforeCapabilityDrop => {
                seccomp::install(filters, false).map_err(|e| ExecutorError::Other(e.to_string()))
            }
            _ => Ok(()),
        }
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let args = spec_args(spec).ok_or_else(|| {
            ExecutorValidationError::ArgValidationError("process.args must not be empty".into())
        })?;
        let path_env = spec
            .process()
            .as_ref()
            .and_then(|p| p.env().as_ref())
            .and_then(|env| env.iter().rev().find_map(|e| e.strip_prefix("PATH=")));
        resolve(&args[0], path_env)
            .map(|_| ())
            .map_err(ExecutorValidationError::ArgValidationError)
    }

    fn setup_envs(&self, envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        // Same as libcontainer's default: the container env replaces the runtime's.
        for (k, _) in std::env::vars_os() {
            std::env::remove_var(k);
        }
        for (k, v) in envs {
            std::env::set_var(k, v);
        }
        Ok(())
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let args = spec_args(spec).ok_or(ExecutorError::InvalidArg)?;
        // Everything that allocates happens before the filter goes in.
        let path_env = std::env::var("PATH").ok();
        let path = resolve(&args[0], path_env.as_deref()).map_err(ExecutorError::Other)?;
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|e| ExecutorError::Other(e.to_string()))?;
        let argv: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|e| ExecutorError::Other(format!("process.args: {e}")))?;
        let envp: Vec<CString> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect();
        let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_p.push(std::ptr::null());
        let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
        envp_p.push(std::ptr::null());

        reset_signals();
        match &self.seccomp {
            Some(filters) if self.order == SeccompOrder::BeforeExec => {
                seccomp::install(filters, true).map_err(|e| ExecutorError::Other(e.to_string()))?
            }
            _ => {}
        }
        // SAFETY: every pointer is a live NUL-terminated string and both arrays end with NULL.
        unsafe { libc::execve(cpath.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
        Err(ExecutorError::Execution(Box::new(std::io::Error::other(
            format!(
                "exec {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ),
        ))))
    }
}

/// Undoes the signal state the runtime's caller and the runtime left: the mask survives
/// execve, and so does SIG_IGN. Every signal goes back to its default, so an ignored signal of
/// whoever started the runtime (glibc's posix_spawn leaves its reserved real-time signals 32
/// and 33 ignored; `nohup` leaves SIGHUP) never reaches the container.
pub fn reset_signals() {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the calls only take pointers to
    // it and integer arguments. Setting SIG_DFL installs no handler code.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..=libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_like_execvp() {
        assert_eq!(
            resolve("sh", Some("/nonexistent:/bin")).unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert!(resolve("definitely-not-here", Some("/bin"))
            .unwrap_err()
            .contains("executable file not found in $PATH"));
        assert!(resolve("/nonexistent/x", None)
            .unwrap_err()
            .contains("/nonexistent/x"));
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(resolve(f.path().to_str().unwrap(), None)
            .unwrap_err()
            .contains("permission denied"));
        assert!(resolve("", None).is_err());
    }
}
