//! A tty container's terminal (`--console-socket`): the runtime, following runc's contract,
//! connects to the socket we listen on during `create` and sends the pty master with
//! SCM_RIGHTS. The master is then the container's one output stream (logged as `stdout`, as
//! CRI logs a tty) and where attach clients' stdin goes. rustix gives the fd passing as a safe
//! call (the workspace forbids `unsafe`).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// How long a runtime that connected may take to send the master.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The listening console socket, removed on drop.
#[derive(Debug)]
pub struct Console {
    listener: UnixListener,
    path: PathBuf,
}

impl Console {
    /// Binds `path` (a stale socket is replaced), mode 0600, non-blocking.
    pub fn bind(path: &Path) -> io::Result<Self> {
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(io::Error::other(format!(
                "console socket path longer than {MAX_SOCKET_PATH} bytes"
            )));
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The pty master, non-blocking, once the runtime connected; `None` while nobody has.
    pub fn receive(&self) -> io::Result<Option<OwnedFd>> {
        let conn = match self.listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        // The runtime sends right after connecting; a bounded blocking read keeps this simple.
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(SEND_TIMEOUT))?;
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut buf = [0u8; 256];
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        rustix::net::recvmsg(&conn, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
        let master = control.drain().find_map(|m| match m {
            RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        });
        let Some(master) = master else {
            return Err(io::Error::other(
                "the runtime sent no pty master over the console socket",
            ));
        };
        let flags = OFlag::from_bits_truncate(fcntl(master.as_raw_fd(), FcntlArg::F_GETFL)?);
        fcntl(
            master.as_raw_fd(),
            FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK),
        )?;
        Ok(Some(master))
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

    use super::*;

    #[test]
    fn receives_the_fd_a_peer_sends_and_nothing_before() {
        let dir = tempfile::tempdir().unwrap();
        let c = Console::bind(&dir.path().join("c.sock")).unwrap();
        assert!(c.receive().unwrap().is_none(), "nobody connected yet");
        let (r, _w) = nix::unistd::pipe().unwrap();
        let peer = UnixStream::connect(c.path()).unwrap();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = [r.as_fd()];
        assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
        rustix::net::sendmsg(
            &peer,
            &[io::IoSlice::new(b"m")],
            &mut control,
            SendFlags::empty(),
        )
        .unwrap();
        let got = c.receive().unwrap().expect("an fd");
        let flags = OFlag::from_bits_truncate(fcntl(got.as_raw_fd(), FcntlArg::F_GETFL).unwrap());
        assert!(flags.contains(OFlag::O_NONBLOCK));
        let path = c.path().to_path_buf();
        drop(c);
        assert!(!path.exists(), "socket removed on drop");
    }

    #[test]
    fn a_peer_that_sends_no_fd_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let c = Console::bind(&dir.path().join("c.sock")).unwrap();
        let mut peer = UnixStream::connect(c.path()).unwrap();
        std::io::Write::write_all(&mut peer, b"x").unwrap();
        let e = c.receive().unwrap_err();
        assert!(e.to_string().contains("no pty master"), "{e}");
        let long = dir.path().join("x".repeat(120));
        assert!(Console::bind(&long).is_err());
    }
}
