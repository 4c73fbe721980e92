//! The terminal of a tty exec: the runtime (runc's `--console-socket` contract) connects to a
//! unix socket we listen on and sends the pty master with SCM_RIGHTS; we then read and write
//! the master without blocking and resize it with TIOCSWINSZ. rustix gives both as safe calls
//! (this crate forbids `unsafe`).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::net::UnixListener;

/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// A console socket, removed on drop.
#[derive(Debug)]
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn bind(path: &Path) -> io::Result<Self> {
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(io::Error::other(format!(
                "{}: console socket path longer than {MAX_SOCKET_PATH} bytes",
                path.display()
            )));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Self {
            path: path.to_path_buf(),
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the runtime to connect and send the pty master.
    pub async fn receive_master(&self) -> io::Result<Pty> {
        let (conn, _) = self.listener.accept().await?;
        loop {
            conn.readable().await?;
            let got = conn.try_io(tokio::io::Interest::READABLE, || {
                let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                let mut control = RecvAncillaryBuffer::new(&mut space);
                let mut buf = [0u8; 256];
                let mut iov = [io::IoSliceMut::new(&mut buf)];
                rustix::net::recvmsg(
                    &conn,
                    &mut iov,
                    &mut control,
                    RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
                )
                .map_err(io::Error::from)?;
                let fd = control.drain().find_map(|m| match m {
                    RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
                    _ => None,
                });
                Ok(fd)
            });
            match got {
                Ok(Some(fd)) => return Pty::new(fd),
                Ok(None) => {
                    return Err(io::Error::other(
                        "the runtime sent no pty master over the console socket",
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A pty master, non-blocking, as two registered fds (a dup each): one to read what the
/// terminal prints, one to type into it and resize it.
#[derive(Debug)]
pub struct Pty {
    pub output: PtyOutput,
    pub input: PtyInput,
}

impl Pty {
    fn new(fd: OwnedFd) -> io::Result<Self> {
        let raw = fd.as_raw_fd();
        let flags = OFlag::from_bits_truncate(fcntl(raw, FcntlArg::F_GETFL)?);
        fcntl(raw, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        let dup = fd.try_clone()?;
        // tokio's pipe ends are plain non-blocking fds driven by epoll; "unchecked" skips only
        // the is-it-a-FIFO test, which a pty master is not.
        Ok(Self {
            output: PtyOutput(pipe::Receiver::from_owned_fd_unchecked(fd)?),
            input: PtyInput(pipe::Sender::from_owned_fd_unchecked(dup)?),
        })
    }
}

#[derive(Debug)]
pub struct PtyOutput(pipe::Receiver);

impl PtyOutput {
    /// Reads what the terminal printed; 0 at its end (the kernel says EIO once every slave
    /// fd is closed, i.e. the process and its children are gone).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf).await {
            Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => Ok(0),
            r => r,
        }
    }
}

#[derive(Debug)]
pub struct PtyInput(pipe::Sender);

impl PtyInput {
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data).await
    }

    /// TIOCSWINSZ: the process sees SIGWINCH and the new size.
    pub fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        set_size(self.0.as_fd(), width, height)
    }
}

/// Resizes a tty container's terminal from outside: its init's stdin is the pty slave, which
/// takes TIOCSWINSZ as well as the master does (pea-monitor holds the master).
pub fn resize_container_terminal(init_pid: i32, size: &TerminalSize) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        // Opening a terminal must not make it the shim's controlling terminal.
        .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
        .open(format!("/proc/{init_pid}/fd/0"))?;
    if !rustix::termios::isatty(&slave) {
        return Err(io::Error::other(format!(
            "process {init_pid}'s stdin is not a terminal"
        )));
    }
    set_size(slave.as_fd(), size.width, size.height)
}

/// TIOCSWINSZ on either end of a pty.
fn set_size(fd: std::os::fd::BorrowedFd<'_>, width: u16, height: u16) -> io::Result<()> {
    rustix::termios::tcsetwinsize(
        fd,
        rustix::termios::Winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .map_err(io::Error::from)
}

/// A resize message on channel 4: `{"Width":W,"Height":H}` (kubectl's TerminalSize).
#[derive(Debug, serde::Deserialize, PartialEq, Eq)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

impl TerminalSize {
    pub fn parse(data: &[u8]) -> Option<Self> {
        serde_json::from_slice(data).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_messages_parse_as_kubectl_sends_them() {
        assert_eq!(
            TerminalSize::parse(br#"{"Width":120,"Height":40}"#),
            Some(TerminalSize {
                width: 120,
                height: 40
            })
        );
        assert_eq!(TerminalSize::parse(b"{\"Width\":-1}"), None);
        assert_eq!(TerminalSize::parse(b"junk"), None);
    }
}
