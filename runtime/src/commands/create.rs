//! `create`: validate the bundle, compile seccomp, build the container with libcontainer; on
//! any failure remove what was made (state dir, cgroup, processes, pid file).

use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::Spec;

use super::absolute;
use crate::cli::{CreateArgs, Global};
use crate::container::{self, check_id, ensure_root, Handle, PeaRecord, RECORD_FILE};
use crate::error::{Result, RuntimeError};
use crate::executor::{PeaExecutor, SeccompOrder};
use crate::seccomp;
use crate::validate::{self, HostLimits};

pub fn run(g: &Global, a: CreateArgs) -> Result<i32> {
    create(g, &a, true)?;
    Ok(0)
}

/// A created container, with the pty master when pea holds the terminal itself (foreground
/// `run` of a process.terminal container without --console-socket).
#[derive(Debug)]
pub struct Created {
    pub handle: Handle,
    pub pty: Option<std::os::fd::OwnedFd>,
}

/// The executor for a spec: seccomp compiled here, in the runtime, before anything forks. With
/// `noNewPrivileges` true the filter goes in right before execve; otherwise before the
/// capability drop, as runc does (see `crate::executor`). A profile that denies a syscall the
/// runtime still makes after installing it is refused here, naming the syscall.
pub fn executor_for(spec: &Spec, no_new_privs: Option<bool>) -> Result<PeaExecutor> {
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(PeaExecutor::default());
    };
    let compiled = seccomp::compile(profile)?;
    if !compiled.unknown_names.is_empty() {
        tracing::debug!(names = ?compiled.unknown_names, "seccomp: skipping syscalls unknown on x86_64");
    }
    let order = if no_new_privs == Some(true) {
        SeccompOrder::BeforeExec
    } else {
        SeccompOrder::BeforeCapabilityDrop
    };
    seccomp::check_runtime_path(profile, order)?;
    Ok(PeaExecutor {
        seccomp: Some(compiled),
        order,
    })
}

/// Creates the container; `detach` false means a foreground `run`.
pub fn create(g: &Global, a: &CreateArgs, detach: bool) -> Result<Created> {
    check_id(&a.id)?;
    ensure_root(&g.root)?;
    let dir = g.root.join(&a.id);
    if dir.exists() {
        return Err(RuntimeError::Exists(a.id.clone()));
    }
    let bundle = std::fs::canonicalize(&a.bundle).map_err(|e| RuntimeError::Bundle {
        path: a.bundle.clone(),
        reason: e.to_string(),
    })?;
    let spec = validate::load_spec(&bundle)?;
    validate::check_spec(&bundle, &spec, &HostLimits::probe())?;
    let process = spec.process().as_ref().expect("checked by check_spec");
    if process.terminal() == Some(true) && a.console_socket.is_none() && detach {
        return Err(RuntimeError::Usage(
            "process.terminal is true: --console-socket is required to hand the pty over when \
             the container is detached (create, run --detach)"
                .into(),
        ));
    }
    // Foreground run with a terminal: pea receives the pty master and relays it.
    let own_console = if process.terminal() == Some(true) && a.console_socket.is_none() && !detach {
        Some(crate::tty::ConsoleListener::new()?)
    } else {
        None
    };
    let executor = executor_for(&spec, process.no_new_privileges())?;
    let console = match &own_console {
        Some(l) => Some(l.path()),
        None => a.console_socket.as_deref().map(absolute),
    };
    let pid_file = a.pid_file.as_deref().map(absolute);

    let log_start = crate::logging::log_offset(g.log.as_deref());
    let span = tracing::info_span!("create", id = %a.id);
    let _e = span.enter();
    let built = ContainerBuilder::new(a.id.clone(), SyscallType::default())
        .with_executor(executor)
        .with_root_path(&g.root)
        .and_then(|b| {
            b.with_console_socket(console.as_ref())
                .with_preserved_fds(a.preserve_fds)
                .validate_id()?
                .as_init(&bundle)
                .with_systemd(false)
                .with_detach(detach || console.is_some())
                .with_no_pivot(a.no_pivot)
                .build()
        });
    let c = match built {
        Ok(c) => c,
        Err(e) => {
            if !matches!(e, libcontainer::error::LibcontainerError::Exist) {
                cleanup_failed(&dir, &a.id);
            }
            let err = RuntimeError::Libcontainer {
                id: a.id.clone(),
                op: "create",
                source: Box::new(e),
            };
            // The container processes log the real cause (errno, path) before libcontainer
            // flattens it; surface it in the one-line error containerd and podman show.
            if let Some(cause) = g
                .log
                .as_deref()
                .and_then(|l| crate::logging::first_error_since(l, log_start))
            {
                return Err(RuntimeError::Other(format!(
                    "{}: cause: {cause}",
                    crate::error::chain(&err)
                )));
            }
            return Err(err);
        }
    };
    let handle = Handle {
        c,
        root: dir.clone(),
    };
    let pty = match own_console.as_ref().map(|l| l.receive_master()) {
        None => None,
        Some(Ok(fd)) => Some(fd),
        Some(Err(e)) => {
            let mut h = handle;
            let _ = crate::commands::delete::delete(&mut h, true);
            cleanup_failed(&dir, &a.id);
            return Err(e);
        }
    };
    let ro_cgroups = crate::cgroup_mount::readonly_cgroup_mounts(&spec);
    let finish = || -> Result<()> {
        let pid = handle.c.pid().map(|p| p.as_raw());
        if let Some(pid) = pid {
            crate::cgroup_mount::make_readonly(pid, &ro_cgroups)?;
        }
        let rec = PeaRecord {
            version: 1,
            init_start_time: pid.and_then(container::start_time),
        };
        container::write_atomic(
            &dir.join(RECORD_FILE),
            &serde_json::to_vec(&rec).expect("plain struct"),
        )?;
        if let (Some(path), Some(pid)) = (&pid_file, pid) {
            container::write_atomic(path, pid.to_string().as_bytes())?;
        }
        Ok(())
    };
    if let Err(e) = finish() {
        let mut h = handle;
        let _ = h.signal(libc::SIGKILL, true);
        if let Some(pid) = h.c.pid() {
            container::wait_gone(pid.as_raw(), std::time::Duration::from_secs(5));
        }
        let _ = h.c.refresh_status();
        let _ = h.c.delete(true);
        cleanup_failed(&dir, &a.id);
        return Err(e);
    }
    Ok(Created { handle, pty })
}

/// libcontainer removes its cgroup and state dir on a failed build; make sure of it.
fn cleanup_failed(dir: &Path, id: &str) {
    let loaded = dir
        .join("state.json")
        .exists()
        .then(|| libcontainer::container::Container::load(dir.to_path_buf()));
    if let Some(Ok(mut c)) = loaded {
        if let Some(pid) = c.pid() {
            // SAFETY: kill with integer arguments.
            unsafe { libc::kill(pid.as_raw(), libc::SIGKILL) };
            container::wait_gone(pid.as_raw(), std::time::Duration::from_secs(5));
        }
        let _ = c.refresh_status();
        if let Err(e) = c.delete(true) {
            tracing::warn!(id, error = %e, "cleanup after failed create");
        }
    }
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            tracing::warn!(id, dir = %dir.display(), error = %e, "removing state dir after failed create");
        }
    }
    remove_default_cgroup(id);
}

/// The cgroup libcontainer uses when the spec has no cgroupsPath, in every v1 hierarchy.
fn remove_default_cgroup(id: &str) {
    let name = format!(":youki:{id}");
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let p: PathBuf = e.path().join(&name);
            if p.is_dir() {
                let _ = std::fs::remove_dir(&p);
            }
        }
    }
}
