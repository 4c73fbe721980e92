//! The monitor's life: detach from the shim, run the runtime's `create` (or `run --detach`,
//! `--mode run`; "Creating" below covers both) with our pipes as the
//! container's stdout/stderr, report, then pump and reap in one poll(2) loop until the init is
//! dead and its pipes are drained, and write the exit file.
//!
//! ```text
//!   Creating ──runtime exit 0, pid file read──▶ Running ──init reaped──▶ Draining ──both EOF or 2 s──▶ exit file, exit 0
//!      │                                    (init already reaped during create: straight to Draining)
//!      └──runtime failed──▶ {"error"}, exit 1
//! ```

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::args::{Config, Mode, StdinMode};
use crate::attach::{self, Attach};
use crate::console::Console;
use crate::error::MonitorError;
use crate::exit_file::{self, unix_ns, ExitRecord, ExitStatus};
use crate::framing::{rfc3339_nano, Framer};
use crate::json;
use crate::log::{warn, LogSink};
use crate::report::Reporter;

/// How long output is still collected after the init died: another process (in a shared PID
/// namespace, or a daemonised child) may hold the pipes open forever.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// One read from a pipe (a pipe holds 64 KiB; half of it per read keeps the heap small).
const READ_SIZE: usize = 32 * 1024;

/// The runtime's last stderr line kept for a failure report is cut to this many bytes.
const STDERR_TAIL: usize = 512;

/// Reaps of unknown children remembered while `create` runs (the init may die before its pid
/// is known); more than a handful would only be runtime helpers.
const EARLY_REAPS: usize = 16;

/// Runs the monitor for `cfg`, reporting on `report`. Returns after the exit file is written.
pub fn run(cfg: &Config, report: &mut Reporter) -> Result<(), MonitorError> {
    let signals = detach(&cfg.id)?;
    let log_existed = cfg.log.as_deref().is_some_and(Path::exists);
    let sink =
        LogSink::open(&cfg.id, cfg.log.as_deref()).map_err(|source| MonitorError::OpenLog {
            id: cfg.id.clone(),
            path: cfg.log.clone().unwrap_or_default(),
            source,
        })?;
    let listener = match &cfg.attach_socket {
        Some(path) => match Attach::bind(path) {
            Ok(l) => Some((l, path.clone())),
            Err(source) => {
                remove_new_log(cfg, log_existed);
                return Err(MonitorError::OpenLog {
                    id: cfg.id.clone(),
                    path: path.clone(),
                    source,
                });
            }
        },
        None => None,
    };
    let console = match &cfg.console_socket {
        Some(path) => match Console::bind(path) {
            Ok(c) => Some(c),
            Err(source) => {
                remove_new_log(cfg, log_existed);
                if let Some((_, path)) = listener {
                    let _ = std::fs::remove_file(path);
                }
                return Err(MonitorError::Console {
                    id: cfg.id.clone(),
                    path: path.clone(),
                    source,
                });
            }
        },
        None => None,
    };
    let mut monitor = match spawn_create(cfg, console.as_ref()) {
        Ok((runtime, streams, log_offset, stdin)) => Monitor {
            cfg,
            signals,
            sink,
            streams,
            console,
            attach: Attach::new(listener, stdin, cfg.stdin == Some(StdinMode::Once)),
            buf: vec![0; READ_SIZE],
            early: Vec::new(),
            runtime_stderr: Vec::new(),
            phase: Phase::Creating {
                runtime,
                log_offset,
            },
        },
        Err(e) => {
            remove_new_log(cfg, log_existed);
            if let Some((_, path)) = listener {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
    };
    let result = monitor.run(report);
    monitor.attach.close();
    if result.is_err() && !report.sent() {
        // Create failed: leave nothing behind (a zombie of the killed init, a fresh empty log).
        reap_all(|_, _| {});
        remove_new_log(cfg, log_existed);
    }
    result
}

/// Cuts the ties to the shim and prepares to reap: own session, subreaper, signals on a
/// signalfd, no inherited fds, cwd `/`.
fn detach(id: &str) -> Result<SignalFd, MonitorError> {
    let setup = |op| {
        move |source| MonitorError::Setup {
            id: id.to_string(),
            op,
            source,
        }
    };
    close_inherited_fds();
    // Fails only when we already lead a process group (the shim spawns us with
    // process_group(0)): then the shim's group signals do not reach us either.
    let _ = nix::unistd::setsid();
    nix::sys::prctl::set_child_subreaper(true).map_err(setup("becoming a child subreaper"))?;
    // Blocked and read from a signalfd, never SIG_IGN: ignored dispositions survive exec and
    // would reach the container, while std's Command clears the blocked mask in the child.
    let mut mask = SigSet::empty();
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGUSR1,
        Signal::SIGHUP,
        Signal::SIGINT,
    ] {
        mask.add(sig);
    }
    mask.thread_block().map_err(setup("blocking signals"))?;
    let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(setup("creating a signalfd"))?;
    // The monitor lives as long as the container: it must not pin the shim's cwd.
    std::env::set_current_dir("/").map_err(|_| setup("changing to /")(Errno::last()))?;
    Ok(fd)
}

/// Closes every fd above stderr: whatever the shim leaked must not live as long as the
/// container (a socket, a lock, the other end of another monitor's pipe).
fn close_inherited_fds() {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|&fd| fd > 2)
                .collect()
        })
        .unwrap_or_default();
    // The directory's own fd is in the list but already closed: EBADF, ignored.
    for fd in fds {
        let _ = nix::unistd::close(fd);
    }
}

/// Starts `runtime create` with fresh pipes as its (and the container's) stdout and stderr, and
/// stdin when the container keeps one open. Returns the runtime's pid, the read ends, the
/// runtime log's size before the call, and the (non-blocking) write end of stdin.
fn spawn_create(
    cfg: &Config,
    console: Option<&Console>,
) -> Result<(Pid, [Stream; 3], u64, Option<OwnedFd>), MonitorError> {
    let setup = |op| {
        move |source| MonitorError::Setup {
            id: cfg.id.clone(),
            op,
            source,
        }
    };
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(setup("creating pipes"))?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(setup("creating pipes"))?;
    let (stdin, stdin_w) = match cfg.stdin {
        // A tty container reads the pty: its stdin is written to the master once it arrives.
        _ if console.is_some() => (Stdio::null(), None),
        None => (Stdio::null(), None),
        Some(_) => {
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(setup("creating pipes"))?;
            nix::fcntl::fcntl(
                w.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
            )
            .map_err(setup("making stdin non-blocking"))?;
            (Stdio::from(r), Some(w))
        }
    };
    // A stale pid file from an earlier attempt must not be taken for this create's.
    let _ = std::fs::remove_file(cfg.pid_file());
    let runtime_log = cfg.runtime_log_path();
    let log_offset = std::fs::metadata(&runtime_log).map_or(0, |m| m.len());
    let mut cmd = Command::new(&cfg.runtime);
    if let Some(root) = &cfg.runtime_root {
        cmd.arg("--root").arg(root);
    }
    cmd.arg("--log")
        .arg(&runtime_log)
        .args(["--log-format", "json"]);
    match cfg.mode {
        Mode::Create => cmd.arg("create"),
        // One runtime process instead of `create` here and `start` from the shim; the init
        // still comes to us (subreaper) when the runtime exits.
        Mode::Run => cmd.args(["run", "--detach"]),
    };
    cmd.arg("--bundle")
        .arg(&cfg.bundle)
        .arg("--pid-file")
        .arg(cfg.pid_file());
    if let Some(c) = console {
        cmd.arg("--console-socket").arg(c.path());
    }
    cmd.arg(&cfg.id)
        .stdin(stdin)
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        // Setting our own gid (a no-op) makes std fork+exec instead of posix_spawn: glibc's
        // posix_spawn leaves its internal signals 32 and 33 ignored in the child, and an
        // ignored disposition survives exec into the runtime and from there into the container.
        .gid(nix::unistd::getgid().as_raw());
    let child = cmd.spawn().map_err(|source| MonitorError::Spawn {
        id: cfg.id.clone(),
        path: cfg.runtime.clone(),
        source,
    })?;
    // Dropping the command closes our copies of the write ends: EOF then means the container
    // (and everything that inherited its stdio) is done writing.
    drop(cmd);
    // The child is reaped by our own waitpid(-1) loop, never through `child`.
    let pid = Pid::from_raw(child.id() as i32);
    Ok((
        pid,
        [
            Stream::new("stdout", Some(out_r)),
            Stream::new("stderr", Some(err_r)),
            // The pty master of a tty container, once the runtime sent it.
            Stream::new("stdout", None),
        ],
        log_offset,
        stdin_w,
    ))
}

fn remove_new_log(cfg: &Config, existed: bool) {
    if let (Some(log), false) = (&cfg.log, existed) {
        let _ = std::fs::remove_file(log);
    }
}

/// One of the container's output pipes.
#[derive(Debug)]
struct Stream {
    name: &'static str,
    fd: Option<OwnedFd>,
    framer: Framer,
}

impl Stream {
    fn new(name: &'static str, fd: Option<OwnedFd>) -> Self {
        Self {
            name,
            fd,
            framer: Framer::default(),
        }
    }
}

#[derive(Debug)]
enum Phase {
    /// `runtime create` is running.
    Creating { runtime: Pid, log_offset: u64 },
    /// The container exists (created, maybe started by the shim); its init is ours to reap.
    Running { init: Pid, started_ns: u128 },
    /// The init is dead; collecting the last output.
    Draining {
        record: ExitRecord,
        deadline: Instant,
    },
}

#[derive(Debug)]
struct Monitor<'a> {
    cfg: &'a Config,
    signals: SignalFd,
    sink: LogSink,
    /// The runtime's stdout and stderr pipes (also the container's without a tty), then the
    /// pty master of a tty container.
    streams: [Stream; 3],
    /// Listening until the runtime sent a tty container's pty master.
    console: Option<Console>,
    attach: Attach,
    buf: Vec<u8>,
    /// Children reaped while creating, by pid (the init can die before the pid file is read).
    early: Vec<(Pid, ExitStatus, u128)>,
    /// The last stderr line seen while creating: the runtime's own complaint when it could not
    /// even open its log (the container's stderr pipe is the runtime's stderr).
    runtime_stderr: Vec<u8>,
    phase: Phase,
}

impl Monitor<'_> {
    fn run(&mut self, report: &mut Reporter) -> Result<(), MonitorError> {
        loop {
            let timeout = match &self.phase {
                Phase::Draining { deadline, .. } => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if self.streams.iter().all(|s| s.fd.is_none()) || left.is_zero() {
                        break;
                    }
                    // Round up: a 0 ms poll short of the deadline would spin.
                    PollTimeout::try_from(left + Duration::from_millis(1))
                        .unwrap_or(PollTimeout::MAX)
                }
                _ => PollTimeout::NONE,
            };
            let (readable, signalled, console, attach) = self.wait(timeout)?;
            for (i, ready) in readable.into_iter().enumerate() {
                if ready {
                    self.pump(i);
                }
            }
            self.attach.handle(attach);
            self.sink.flush();
            // Before signals: the runtime sends the master before its `create` exits.
            if console {
                self.receive_console()?;
            }
            if signalled {
                self.handle_signals(report)?;
            }
        }
        self.finish_streams();
        let Phase::Draining { record, .. } = &self.phase else {
            unreachable!("the loop only ends while draining")
        };
        exit_file::write(&self.cfg.exit_file, record).map_err(|source| MonitorError::ExitFile {
            id: self.cfg.id.clone(),
            path: self.cfg.exit_file.clone(),
            source,
        })
    }

    /// Polls the signalfd, the open streams, the console socket and the attach fds; returns
    /// which streams, whether signals, whether the console socket are ready, and what attach
    /// has to do.
    fn wait(
        &self,
        timeout: PollTimeout,
    ) -> Result<([bool; 3], bool, bool, attach::Ready), MonitorError> {
        let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
        let mut which = Vec::with_capacity(3);
        for (i, s) in self.streams.iter().enumerate() {
            if let Some(fd) = &s.fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        let console_at = fds.len();
        if let Some(c) = &self.console {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        let attach_at = fds.len();
        self.attach.poll_fds(&mut fds);
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(([false; 3], false, false, attach::Ready::default())),
            Err(source) => {
                return Err(MonitorError::Loop {
                    id: self.cfg.id.clone(),
                    op: "poll",
                    source,
                })
            }
        }
        let ready = |p: &PollFd| p.revents().is_some_and(|r| !r.is_empty());
        let mut readable = [false; 3];
        for (p, &i) in fds[1..console_at].iter().zip(&which) {
            readable[i] = ready(p);
        }
        let console = fds[console_at..attach_at].iter().any(ready);
        let attach = self.attach.ready(&fds[attach_at..]);
        Ok((readable, ready(&fds[0]), console, attach))
    }

    /// Takes the pty master if the runtime sent it: the third stream, and the stdin of attach
    /// clients when the container keeps one.
    fn receive_console(&mut self) -> Result<(), MonitorError> {
        let Some(console) = &self.console else {
            return Ok(());
        };
        let failed = |source| MonitorError::Console {
            id: self.cfg.id.clone(),
            path: console.path().to_path_buf(),
            source,
        };
        let master = match console.receive() {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(e) => return Err(failed(e)),
        };
        if self.cfg.stdin.is_some() {
            self.attach.set_stdin(master.try_clone().map_err(failed)?);
        }
        self.streams[2].fd = Some(master);
        // One terminal per container: later connections have nothing to give.
        self.console = None;
        Ok(())
    }

    /// One read from stream `i` into the log; EOF (or a read error) closes it.
    fn pump(&mut self, i: usize) {
        let cfg = self.cfg;
        let creating = matches!(self.phase, Phase::Creating { .. });
        let Self {
            streams,
            sink,
            buf,
            runtime_stderr,
            attach,
            ..
        } = self;
        let stream = &mut streams[i];
        let Some(fd) = &stream.fd else { return };
        let name = stream.name;
        let keep_tail = creating && name == "stderr";
        let ts = rfc3339_nano(SystemTime::now());
        let mut emit = |tag, head: &[u8], tail: &[u8]| {
            sink.record(&ts, name, tag, head, tail);
            if keep_tail && !(head.is_empty() && tail.is_empty()) {
                runtime_stderr.clear();
                runtime_stderr.extend(head.iter().chain(tail).take(STDERR_TAIL));
            }
        };
        match nix::unistd::read(fd.as_raw_fd(), buf) {
            Ok(0) => {}
            Ok(n) => {
                if !creating {
                    // The pty (stream index 2) is the tty's one output: stdout.
                    attach.broadcast(if name == "stderr" { 2 } else { 1 }, &buf[..n]);
                }
                return stream.framer.feed(&buf[..n], &mut emit);
            }
            Err(Errno::EINTR | Errno::EAGAIN) => return,
            // A pty master reads EIO once every process closed the terminal: its EOF.
            Err(Errno::EIO) if i == 2 => {}
            Err(e) => warn(&format!(
                "container {}: reading {name}: {e} (closing it)",
                cfg.id
            )),
        }
        stream.framer.finish(&mut emit);
        stream.fd = None;
    }

    /// Ends what is still open (the drain deadline passed): a pending partial line is written.
    fn finish_streams(&mut self) {
        let ts = rfc3339_nano(SystemTime::now());
        for stream in &mut self.streams {
            let name = stream.name;
            let sink = &mut self.sink;
            stream.framer.finish(&mut |tag, head: &[u8], tail: &[u8]| {
                sink.record(&ts, name, tag, head, tail)
            });
            stream.fd = None;
        }
        self.sink.flush();
    }

    fn handle_signals(&mut self, report: &mut Reporter) -> Result<(), MonitorError> {
        let mut reap = false;
        loop {
            match self.signals.read_signal() {
                Ok(Some(info)) => match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => reap = true,
                    Ok(Signal::SIGUSR1) => self.sink.reopen(),
                    // SIGHUP, SIGINT: the shim's terminal or group going away is not our end.
                    _ => {}
                },
                Ok(None) | Err(Errno::EINTR) => break,
                Err(source) => {
                    return Err(MonitorError::Loop {
                        id: self.cfg.id.clone(),
                        op: "reading signals",
                        source,
                    })
                }
            }
        }
        if !reap {
            return Ok(());
        }
        let mut exits = Vec::new();
        reap_all(|pid, status| exits.push((pid, status, unix_ns(SystemTime::now()))));
        for (pid, status, at) in exits {
            self.on_exit(pid, status, at, report)?;
        }
        Ok(())
    }

    /// A child of ours ended at `at` (unix ns).
    fn on_exit(
        &mut self,
        pid: Pid,
        status: ExitStatus,
        at: u128,
        report: &mut Reporter,
    ) -> Result<(), MonitorError> {
        match self.phase {
            Phase::Creating {
                runtime,
                log_offset,
            } if pid == runtime => self.created(status, log_offset, report),
            Phase::Creating { .. } => {
                if self.early.len() == EARLY_REAPS {
                    self.early.remove(0);
                }
                self.early.push((pid, status, at));
                Ok(())
            }
            Phase::Running { init, started_ns } if pid == init => {
                self.init_exited(status, started_ns, at);
                Ok(())
            }
            // Orphans of the container (reparented to us) and anything after the init.
            _ => Ok(()),
        }
    }

    /// The runtime's create ended with `status`.
    fn created(
        &mut self,
        status: ExitStatus,
        log_offset: u64,
        report: &mut Reporter,
    ) -> Result<(), MonitorError> {
        if status.exit_code != 0 {
            let cause = json::last_runtime_error(&self.cfg.runtime_log_path(), log_offset)
                .unwrap_or_else(|| describe_runtime_exit(status, &self.runtime_stderr));
            return Err(MonitorError::Create {
                id: self.cfg.id.clone(),
                verb: self.cfg.mode.verb(),
                cause,
            });
        }
        if self.console.is_some() {
            self.receive_console()?;
            if self.console.is_some() {
                return Err(MonitorError::Create {
                    id: self.cfg.id.clone(),
                    verb: self.cfg.mode.verb(),
                    cause: "the runtime created a tty container without sending its pty master \
                            over the console socket"
                        .into(),
                });
            }
        }
        let started_ns = unix_ns(SystemTime::now());
        let init = read_pid_file(self.cfg)?;
        report.pid(init.as_raw());
        let early = std::mem::take(&mut self.early);
        self.phase = Phase::Running { init, started_ns };
        if let Some((_, status, at)) = early.into_iter().find(|(p, ..)| *p == init) {
            self.init_exited(status, started_ns, at);
        }
        Ok(())
    }

    fn init_exited(&mut self, status: ExitStatus, started_ns: u128, at: u128) {
        self.phase = Phase::Draining {
            record: ExitRecord {
                status,
                started_at_ns: started_ns,
                finished_at_ns: at,
            },
            deadline: Instant::now() + DRAIN_AFTER_EXIT,
        };
    }
}

/// Reaps every child that has ended, calling `f` for each (we are a subreaper: the container's
/// init and its orphans come to us, and none may stay a zombie).
fn reap_all(mut f: impl FnMut(Pid, ExitStatus)) {
    loop {
        match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return,
            Ok(ws) => {
                if let (Some(pid), Some(status)) = (ws.pid(), ExitStatus::from_wait(ws)) {
                    f(pid, status);
                }
            }
            Err(Errno::EINTR) => {}
            // ECHILD: no children left.
            Err(_) => return,
        }
    }
}

/// The cause of a failed create when the runtime logged no error: its exit and the last line
/// it wrote on stderr, if any.
fn describe_runtime_exit(status: ExitStatus, stderr: &[u8]) -> String {
    let how = if status.signal != 0 {
        format!("runtime killed by signal {}", status.signal)
    } else {
        format!("runtime exited with status {}", status.exit_code)
    };
    match String::from_utf8_lossy(stderr).trim() {
        "" => format!("{how} and logged no error"),
        line => format!("{how}: {line}"),
    }
}

fn read_pid_file(cfg: &Config) -> Result<Pid, MonitorError> {
    let path = cfg.pid_file();
    let err = |reason: String| MonitorError::PidFile {
        id: cfg.id.clone(),
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(Pid::from_raw(pid)),
        _ => Err(err(format!("{:?} is not a pid", text.trim()))),
    }
}
