//! The report channel: the monitor's stdout, a pipe from the shim. Exactly one JSON line goes
//! over it — `{"pid":N}` once the container is created, or `{"error":"..."}` — and then it is
//! closed, so the shim's read ends at EOF and nothing later can block on a shim that is gone.

use std::os::fd::AsRawFd;

use nix::errno::Errno;

use crate::json::quote;

/// Sends the one report line; later sends are ignored.
#[derive(Debug, Default)]
pub struct Reporter {
    sent: bool,
}

impl Reporter {
    /// The container was created and its init is `pid`.
    pub fn pid(&mut self, pid: i32) {
        self.send(&format!("{{\"pid\":{pid}}}\n"));
    }

    /// The monitor gives up with `msg`.
    pub fn error(&mut self, msg: &str) {
        self.send(&format!("{{\"error\":{}}}\n", quote(msg)));
    }

    /// Whether the line went out (or was attempted: a vanished shim is not retried).
    pub fn sent(&self) -> bool {
        self.sent
    }

    fn send(&mut self, line: &str) {
        if self.sent {
            return;
        }
        self.sent = true;
        let mut rest = line.as_bytes();
        while !rest.is_empty() {
            match nix::unistd::write(std::io::stdout(), rest) {
                Ok(0) => break,
                Ok(n) => rest = &rest[n..],
                Err(Errno::EINTR) => {}
                // EPIPE: the shim is gone. SIGPIPE is ignored (Rust's runtime does that), and
                // the container must go on without it.
                Err(_) => break,
            }
        }
        close_stdout();
    }
}

/// Puts /dev/null on fd 1: the pipe closes, and fd 1 stays taken so no later file lands there.
fn close_stdout() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
}
