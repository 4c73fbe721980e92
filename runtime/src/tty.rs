//! Foreground terminals (`run`/`exec` with process.terminal and no --console-socket): pea
//! listens on a private console socket, libcontainer's init opens the pty inside the container
//! and sends the master over it, and `foreground::wait` relays it to our stdio.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};

use crate::error::{Result, RuntimeError};

/// A console socket in a private temp dir, removed on drop.
#[derive(Debug)]
pub struct ConsoleListener {
    dir: PathBuf,
    listener: UnixListener,
}

impl ConsoleListener {
    pub fn new() -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!(
            "pea-console-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(RuntimeError::io(&dir))?;
        let path = dir.join("console.sock");
        let listener = UnixListener::bind(&path).map_err(RuntimeError::io(&path))?;
        Ok(Self { dir, listener })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("console.sock")
    }

    /// Receives the pty master the container's init sent (it is already queued once the
    /// container is built).
    pub fn receive_master(&self) -> Result<OwnedFd> {
        let (conn, _) = self
            .listener
            .accept()
            .map_err(|e| RuntimeError::Other(format!("console socket accept: {e}")))?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<UnixAddr>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| RuntimeError::Other(format!("console socket recvmsg: {e}")))?;
        for c in msg
            .cmsgs()
            .map_err(|e| RuntimeError::Other(format!("console socket cmsgs: {e}")))?
        {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // SAFETY: the kernel just installed this fd for us; nothing else owns it.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Err(RuntimeError::Other(
            "the container sent no pty master over the console socket".into(),
        ))
    }
}

impl Drop for ConsoleListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Puts our stdin in raw mode while alive (when it is a terminal) and restores it on drop.
#[derive(Debug)]
pub struct RawStdin {
    saved: Option<libc::termios>,
}

impl RawStdin {
    pub fn enable() -> Self {
        // SAFETY: termios is plain data; tcgetattr/cfmakeraw/tcsetattr only use our struct.
        unsafe {
            if libc::isatty(0) != 1 {
                return Self { saved: None };
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return Self { saved: None };
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
            Self { saved: Some(saved) }
        }
    }
}

impl Drop for RawStdin {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            // SAFETY: restoring the attributes saved from the same fd.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
    }
}

/// Copies our terminal's window size (if stdin is one) to the pty.
pub fn copy_winsize(master: RawFd) {
    // SAFETY: winsize is plain data; TIOCGWINSZ/TIOCSWINSZ read/write exactly one winsize.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master, libc::TIOCSWINSZ, &ws);
        }
    }
}
