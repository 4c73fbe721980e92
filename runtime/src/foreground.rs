//! Foreground waiting for `run` and `exec`: never lose a fast child's exit, forward signals.
//!
//! `block_all` runs before the container is built, while the process is single-threaded, so a
//! SIGCHLD or SIGTERM that arrives at any point stays pending instead of being discarded (the
//! youki 0.7.0 hang). The wait itself does not depend on SIGCHLD delivery at all: a pidfd
//! becomes readable when the process exits, and a signalfd hands us the signals to forward.
//! The executor unblocks the mask in the container process before execve.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Result, RuntimeError};

/// Blocks every signal in the calling thread (and in everything it forks from now on).
pub fn block_all() {
    // SAFETY: sigset_t is plain data set up by sigfillset; pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn os_err(what: &str) -> RuntimeError {
    RuntimeError::Other(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// The exit code runc reports: the code, or 128+signal.
fn code_of(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// Reaps `pid` if it has exited; also reaps other exited children (e.g. re-parented ones).
fn reap(pid: i32) -> Option<i32> {
    let mut result = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes into our status int.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r <= 0 {
            break;
        }
        if r == pid {
            result = Some(code_of(status));
        }
    }
    result
}

fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: writing from a live buffer of the given length.
        let n = unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

/// Reads once from `from` and copies to `to`; false on EOF or error.
fn pump(from: i32, to: i32) -> bool {
    let mut buf = [0u8; 8192];
    // SAFETY: reading into a live buffer of the given length.
    let n = unsafe { libc::read(from, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    if n <= 0 {
        return n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR);
    }
    write_all(to, &buf[..n as usize]);
    true
}

/// Copies whatever the pty still holds after the process exited.
fn drain(master: i32) {
    // SAFETY: fcntl on an fd we own (borrowed for the call).
    unsafe {
        let fl = libc::fcntl(master, libc::F_GETFL);
        libc::fcntl(master, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    while pump(master, 1) {}
}

/// Waits for `pid` (a child of ours) to exit while forwarding signals to it; returns its code.
/// With `pty`, relays stdin to it and it to stdout. Signals must already be blocked.
pub fn wait(pid: i32, pty: Option<i32>) -> Result<i32> {
    // SAFETY: sigset_t set up by sigfillset; signalfd returns a new fd or -1.
    let sfd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC)
    };
    if sfd < 0 {
        return Err(os_err("signalfd"));
    }
    // SAFETY: sfd is a fresh fd owned by nobody else.
    let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
    // SAFETY: pidfd_open takes integers and returns a new fd or -1.
    let pfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    let pfd = if pfd >= 0 {
        // SAFETY: fresh fd owned by nobody else.
        Some(unsafe { OwnedFd::from_raw_fd(pfd) })
    } else {
        None // already reaped by nobody yet it's gone? fall back to waitpid below
    };
    let _raw = pty.map(|m| {
        crate::tty::copy_winsize(m);
        crate::tty::RawStdin::enable()
    });
    let mut stdin_open = pty.is_some();
    let mut master_open = pty.is_some();
    loop {
        if let Some(code) = reap(pid) {
            if let Some(m) = pty {
                drain(m);
            }
            return Ok(code);
        }
        let mut fds = [
            libc::pollfd {
                fd: sfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pfd.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if stdin_open { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if master_open { pty.unwrap_or(-1) } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: four valid pollfds (a negative fd is ignored by poll).
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 4, if pfd.is_some() { -1 } else { 100 }) };
        if rc < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(os_err("poll"));
        }
        if fds[0].revents & libc::POLLIN != 0 {
            // SAFETY: signalfd_siginfo is plain data; read fills at most its size.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            // SAFETY: reading into our own struct of the right size.
            let n = unsafe {
                libc::read(
                    sfd.as_raw_fd(),
                    &mut info as *mut _ as *mut libc::c_void,
                    std::mem::size_of::<libc::signalfd_siginfo>(),
                )
            };
            if n == std::mem::size_of::<libc::signalfd_siginfo>() as isize {
                let sig = info.ssi_signo as i32;
                match sig {
                    libc::SIGWINCH => {
                        if let Some(m) = pty {
                            crate::tty::copy_winsize(m);
                        }
                    }
                    libc::SIGCHLD | libc::SIGURG => {}
                    _ => {
                        tracing::debug!(pid, sig, "forwarding signal");
                        // SAFETY: kill with integer arguments.
                        unsafe { libc::kill(pid, sig) };
                    }
                }
            }
        }
        if let Some(m) = pty {
            if fds[2].revents != 0 && !pump(0, m) {
                stdin_open = false;
            }
            if fds[3].revents != 0 && !pump(m, 1) {
                master_open = false;
            }
        }
    }
}
