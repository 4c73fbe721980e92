//! Attach subscribers: a unix socket (`--attach-socket`, mode 0600) where the shim connects one
//! connection per `kubectl attach`. Wire format, monitor → client: `[stream][u32 BE length]
//! [bytes]` per read from the container (stream 1 stdout, 2 stderr; only output produced after
//! the client connected). Client → monitor: raw bytes for the container's stdin (when it was
//! created with `--stdin`); the client shutting down its write side means "this client closed
//! stdin", which closes the container's stdin for `--stdin once` (CRI's stdin_once) and is
//! forgotten for `--stdin open`.
//!
//! Memory stays bounded: at most [`MAX_CLIENTS`] subscribers, one frame buffer, at most one read
//! of pending stdin. Sends never block the monitor: a client whose socket buffer is full (it is
//! [`SEND_BUFFER`] deep, in the kernel) is dropped rather than stalling the container's output.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags};

/// Attach clients at once; more are refused (closed on accept).
pub const MAX_CLIENTS: usize = 16;

/// Kernel-side buffer asked for per client (capped by net.core.wmem_max).
pub const SEND_BUFFER: usize = 1 << 20;

/// Stdin bytes taken from a client per read.
const STDIN_CHUNK: usize = 16 * 1024;

#[derive(Debug)]
struct Client {
    stream: UnixStream,
    /// Still reading stdin from it (it has not shut down its write side).
    reading: bool,
}

/// The attach socket and its clients, plus the container's stdin when it has one.
#[derive(Debug)]
pub struct Attach {
    listener: Option<(UnixListener, PathBuf)>,
    clients: Vec<Client>,
    stdin: Option<OwnedFd>,
    stdin_once: bool,
    /// Stdin bytes read from a client, not yet written to the container.
    pending: Vec<u8>,
    frame: Vec<u8>,
}

/// Which of the attach fds `poll` found ready; indices as [`Attach::poll_fds`] pushed them.
#[derive(Debug, Default)]
pub struct Ready {
    pub listener: bool,
    pub stdin: bool,
    pub clients: Vec<(usize, PollFlags)>,
}

impl Attach {
    /// Binds `path` (a stale socket is replaced), mode 0600.
    pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        l.set_nonblocking(true)?;
        Ok(l)
    }

    pub fn new(
        listener: Option<(UnixListener, PathBuf)>,
        stdin: Option<OwnedFd>,
        once: bool,
    ) -> Self {
        Self {
            listener,
            clients: Vec::new(),
            stdin,
            stdin_once: once,
            pending: Vec::new(),
            frame: Vec::new(),
        }
    }

    /// Gives attach clients the container's stdin once it exists (a tty container's pty
    /// master arrives after `create` started).
    pub fn set_stdin(&mut self, stdin: OwnedFd) {
        self.stdin = Some(stdin);
    }

    /// Adds the fds to poll: the listener, the stdin pipe while bytes wait for it, and each
    /// client (POLLIN while its stdin is wanted; hang-ups are always reported).
    pub fn poll_fds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) {
        if let Some((l, _)) = &self.listener {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        if let (Some(w), false) = (&self.stdin, self.pending.is_empty()) {
            fds.push(PollFd::new(w.as_fd(), PollFlags::POLLOUT));
        }
        let want_stdin = self.stdin.is_some() && self.pending.is_empty();
        for c in &self.clients {
            let ev = if want_stdin && c.reading {
                PollFlags::POLLIN
            } else {
                PollFlags::empty()
            };
            fds.push(PollFd::new(c.stream.as_fd(), ev));
        }
    }

    /// Reads back what `poll_fds` pushed (starting at `fds[0]`).
    pub fn ready(&self, fds: &[PollFd]) -> Ready {
        let mut r = Ready::default();
        let mut it = fds.iter();
        let hit = |p: &PollFd| p.revents().unwrap_or(PollFlags::empty());
        if self.listener.is_some() {
            r.listener = it.next().is_some_and(|p| !hit(p).is_empty());
        }
        if self.stdin.is_some() && !self.pending.is_empty() {
            r.stdin = it.next().is_some_and(|p| !hit(p).is_empty());
        }
        for (i, p) in it.enumerate() {
            let h = hit(p);
            if !h.is_empty() {
                r.clients.push((i, h));
            }
        }
        r
    }

    pub fn handle(&mut self, ready: Ready) {
        if ready.stdin {
            self.flush_stdin();
        }
        // Highest index first so removals keep the others' indices valid.
        for (i, flags) in ready.clients.into_iter().rev() {
            self.client_event(i, flags);
        }
        if ready.listener {
            self.accept();
        }
    }

    fn accept(&mut self) {
        let Some((l, _)) = &self.listener else { return };
        while let Ok((stream, _)) = l.accept() {
            if self.clients.len() >= MAX_CLIENTS || stream.set_nonblocking(true).is_err() {
                continue; // dropped: closed
            }
            let _ = nix::sys::socket::setsockopt(
                &stream,
                nix::sys::socket::sockopt::SndBuf,
                &SEND_BUFFER,
            );
            self.clients.push(Client {
                stream,
                reading: true,
            });
        }
    }

    fn client_event(&mut self, i: usize, flags: PollFlags) {
        if flags.intersects(PollFlags::POLLIN) && self.clients[i].reading {
            let mut buf = [0u8; STDIN_CHUNK];
            match self.clients[i].stream.read(&mut buf) {
                Ok(0) => {
                    self.clients[i].reading = false;
                    if self.stdin_once {
                        self.close_stdin();
                    }
                }
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    self.flush_stdin();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.clients.swap_remove(i);
                    return;
                }
            }
        }
        if flags.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
            self.clients.swap_remove(i);
        }
    }

    fn flush_stdin(&mut self) {
        let Some(w) = &self.stdin else {
            self.pending.clear();
            return;
        };
        match nix::unistd::write(w, &self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            // EPIPE: the container closed its stdin; what clients type goes nowhere.
            Err(_) => self.close_stdin(),
        }
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
        self.pending.clear();
    }

    /// Sends one read of the container's output (`stream` 1 or 2) to every client; a client
    /// that cannot take the whole frame now is dropped.
    pub fn broadcast(&mut self, stream: u8, data: &[u8]) {
        if self.clients.is_empty() || data.is_empty() {
            return;
        }
        self.frame.clear();
        self.frame.push(stream);
        self.frame
            .extend_from_slice(&(data.len() as u32).to_be_bytes());
        self.frame.extend_from_slice(data);
        let frame = &self.frame;
        self.clients
            .retain_mut(|c| matches!(c.stream.write(frame), Ok(n) if n == frame.len()));
    }

    /// Closes every client and removes the socket (the container is gone).
    pub fn close(&mut self) {
        self.clients.clear();
        if let Some((_, path)) = self.listener.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Attach {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_get_frames_and_feed_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let l = Attach::bind(&path).unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&w),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let mut a = Attach::new(Some((l, path.clone())), Some(w), true);
        let mut client = UnixStream::connect(&path).unwrap();
        let step = |a: &mut Attach| {
            let mut fds = Vec::new();
            a.poll_fds(&mut fds);
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16)).unwrap();
            let ready = a.ready(&fds);
            drop(fds);
            a.handle(ready);
        };
        step(&mut a);
        assert_eq!(a.clients.len(), 1);
        a.broadcast(2, b"oops");
        let mut got = [0u8; 9];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"\x02\x00\x00\x00\x04oops");
        client.write_all(b"typed").unwrap();
        step(&mut a);
        let mut typed = [0u8; 5];
        nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&r), &mut typed).unwrap();
        assert_eq!(&typed, b"typed");
        // Half-close with stdin once: the container's stdin closes (EOF on the read end).
        client.shutdown(std::net::Shutdown::Write).unwrap();
        step(&mut a);
        assert!(a.stdin.is_none());
        assert_eq!(
            nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&r), &mut typed),
            Ok(0)
        );
        drop(client);
        step(&mut a);
        assert!(a.clients.is_empty(), "a client that hung up is forgotten");
        a.close();
        assert!(!path.exists());
    }
}
