//! `run`: create + start, then (unless --detach) wait with signals forwarded, delete unless
//! --keep, and exit with the container's code (128+signal when it was killed), as runc does.

use std::os::fd::AsRawFd;

use crate::cli::{Global, RunArgs};
use crate::error::{Result, RuntimeError};
use crate::foreground;

pub fn run(g: &Global, a: RunArgs) -> Result<i32> {
    if !a.detach {
        // Before anything forks: a fast child's SIGCHLD and an early SIGTERM stay pending.
        foreground::block_all();
    }
    let created = super::create::create(g, &a.create, a.detach)?;
    let mut h = created.handle;
    let pty = created.pty;
    if let Err(e) = h.c.start() {
        let err = RuntimeError::Libcontainer {
            id: a.create.id.clone(),
            op: "start",
            source: Box::new(e),
        };
        let _ = h.c.refresh_status();
        if let Err(d) = super::delete::delete(&mut h, true) {
            tracing::warn!(id = %a.create.id, error = %d, "cleanup after failed start");
        }
        return Err(err);
    }
    if a.detach {
        return Ok(0);
    }
    let pid =
        h.c.pid()
            .ok_or_else(|| RuntimeError::Other("container has no init pid".into()))?
            .as_raw();
    let code = foreground::wait(pid, pty.as_ref().map(|f| f.as_raw_fd()))?;
    if !a.keep {
        let _ = h.c.refresh_status();
        if let Err(e) = super::delete::delete(&mut h, true) {
            // The exit code is what the caller asked for; the cleanup problem goes to the log.
            tracing::error!(id = %a.create.id, error = %crate::error::chain(&e), "delete after run");
        }
    }
    Ok(code)
}
