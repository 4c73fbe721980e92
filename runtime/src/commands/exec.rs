//! `exec`: run another process in a running container, with runc's semantics: the new process
//! starts from the container's `process` (user, rlimits, capabilities, env) with the command
//! line overrides on top, or runs a `--process` file as-is; the container's seccomp profile
//! applies to it too.

use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::ContainerStatus;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::{Capability, Process};

use super::absolute;
use crate::cli::{ExecArgs, Global};
use crate::container::{self, Handle};
use crate::error::{Result, RuntimeError};
use crate::{foreground, validate};

pub fn run(g: &Global, a: ExecArgs) -> Result<i32> {
    let h = Handle::load(&g.root, &a.id)?;
    match h.status() {
        ContainerStatus::Running => {}
        ContainerStatus::Paused if a.ignore_paused => {}
        ContainerStatus::Paused => {
            return Err(RuntimeError::Other(
                "cannot exec in a paused container (use --ignore-paused to override)".into(),
            ))
        }
        s => {
            return Err(RuntimeError::Other(format!(
                "cannot exec in a {} container",
                container::status_name(s)
            )))
        }
    }
    let bundle = h.c.bundle().clone();
    let spec = validate::load_spec(&bundle)?;
    let rootfs = validate::rootfs_path(&bundle, &spec)?;
    let process = match &a.process {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(RuntimeError::io(p))?;
            serde_json::from_str::<Process>(&text)
                .map_err(|e| RuntimeError::Usage(format!("--process {}: {e}", p.display())))?
        }
        None => process_from_args(&a, spec.process().clone().unwrap_or_default(), &rootfs)?,
    };
    if process.args().as_ref().is_none_or(|v| v.is_empty()) {
        return Err(RuntimeError::Usage(
            "exec needs a command (or --process with args)".into(),
        ));
    }
    let terminal = process.terminal() == Some(true);
    if terminal && a.console_socket.is_none() && a.detach {
        return Err(RuntimeError::Usage(
            "exec --tty --detach needs --console-socket to hand the pty to".into(),
        ));
    }
    // Foreground exec with a terminal: pea receives the pty master and relays it.
    let own_console = if terminal && a.console_socket.is_none() {
        Some(crate::tty::ConsoleListener::new()?)
    } else {
        None
    };
    let executor = super::create::executor_for(&spec, process.no_new_privileges())?;
    // libcontainer reads the process from a file; keep it in the container's state dir.
    let proc_file = h.root.join(format!(
        "exec-{}-{}.json",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    container::write_atomic(
        &proc_file,
        &serde_json::to_vec(&process).expect("process serialises"),
    )?;
    let detach = a.detach;
    if !detach {
        foreground::block_all();
    }
    let console = match &own_console {
        Some(l) => Some(l.path()),
        None => a.console_socket.as_deref().map(absolute),
    };
    let span = tracing::info_span!("exec", id = %a.id);
    let _e = span.enter();
    let built = ContainerBuilder::new(a.id.clone(), SyscallType::default())
        .with_executor(executor)
        .with_root_path(&g.root)
        .and_then(|b| {
            b.with_console_socket(console.as_ref())
                .with_preserved_fds(a.preserve_fds)
                .validate_id()?
                .as_tenant()
                .with_process(Some(&proc_file))
                .with_detach(detach || console.is_some())
                .with_ignore_paused(a.ignore_paused)
                .with_sub_cgroup(a.cgroup.clone())
                .build()
        });
    let _ = std::fs::remove_file(&proc_file);
    let pid = built.map_err(RuntimeError::lc(&a.id, "exec in"))?.as_raw();
    if let Some(p) = &a.pid_file {
        container::write_atomic(&absolute(p), pid.to_string().as_bytes())?;
    }
    let pty = match &own_console {
        Some(l) => Some(l.receive_master()?),
        None => None,
    };
    if detach {
        return Ok(0);
    }
    foreground::wait(pid, pty.as_ref().map(std::os::fd::AsRawFd::as_raw_fd))
}

/// The container's process with the command-line overrides applied.
fn process_from_args(a: &ExecArgs, mut p: Process, rootfs: &Path) -> Result<Process> {
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    if let Some(cwd) = &a.cwd {
        if !cwd.is_absolute() {
            return Err(RuntimeError::Usage(format!(
                "--cwd {}: must be absolute",
                cwd.display()
            )));
        }
        p.set_cwd(cwd.clone());
    }
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &a.env {
        if !kv.contains('=') {
            return Err(RuntimeError::Usage(format!("--env {kv:?}: want KEY=VALUE")));
        }
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(u) = &a.user {
        let (uid, gid) = parse_user(u, rootfs)?;
        let mut user = p.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        p.set_user(user);
    }
    if !a.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(user);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            let canonical = if name.to_ascii_uppercase().starts_with("CAP_") {
                name.to_ascii_uppercase()
            } else {
                format!("CAP_{}", name.to_ascii_uppercase())
            };
            let cap: Capability = serde_json::from_value(serde_json::Value::String(canonical))
                .map_err(|_| RuntimeError::Usage(format!("--cap {name}: unknown capability")))?;
            for set in [
                caps.bounding().clone(),
                caps.effective().clone(),
                caps.permitted().clone(),
            ]
            .iter()
            .enumerate()
            {
                let mut s = set.1.clone().unwrap_or_default();
                s.insert(cap);
                match set.0 {
                    0 => caps.set_bounding(Some(s)),
                    1 => caps.set_effective(Some(s)),
                    _ => caps.set_permitted(Some(s)),
                };
            }
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// "uid[:gid]", each numeric or a name from the container's /etc/passwd and /etc/group.
fn parse_user(u: &str, rootfs: &Path) -> Result<(u32, u32)> {
    let (user, group) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(rootfs.join(file)).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[0] == name).then(|| {
                (
                    f[2].parse().unwrap_or(0),
                    f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0),
                )
            })
        })
    };
    let (uid, mut gid) = match user.parse::<u32>() {
        Ok(n) => (n, 0),
        Err(_) => lookup("etc/passwd", user).ok_or_else(|| {
            RuntimeError::Usage(format!(
                "--user {u}: no user {user:?} in the container's /etc/passwd"
            ))
        })?,
    };
    if let Some(g) = group {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup("etc/group", g).map(|(id, _)| id).ok_or_else(|| {
                RuntimeError::Usage(format!(
                    "--user {u}: no group {g:?} in the container's /etc/group"
                ))
            })?,
        };
    }
    Ok((uid, gid))
}
