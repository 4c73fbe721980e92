//! pea-monitor: the tiny process that owns one container's I/O and exit, so the container keeps
//! running, keeps logging and has its exit code recorded while pea-shim is stopped, killed (-9)
//! or upgraded (podman's conmon plays this part; containerd uses a ~14 MiB shim per pod).
//!
//! # Why a process per container, and why this small
//! The shim is a tokio gRPC server that must be restartable at any moment. Whoever holds the
//! read ends of a container's stdout/stderr pipes and is its parent (to reap it and learn its exit
//! status) must outlive the shim, so it cannot be the shim. One monitor per container, made a
//! *child subreaper*, becomes the container init's parent as soon as the runtime's `create`
//! exits. The per-pod budget is 1 MiB of resident memory for pause plus monitors, so the monitor
//! is std + nix only, single-threaded, one poll(2) loop, no allocation per record, JSON by hand.
//!
//! # The contract with the shim
//! `pea-monitor --runtime PATH [--runtime-root DIR] --id ID --bundle DIR --exit-file PATH
//! [--log PATH] [--runtime-log PATH] [--attach-socket PATH] [--stdin open|once]
//! [--console-socket PATH] [--mode create|run]` (also `--flag=value`), spawned with stdin
//! `/dev/null`,
//! stdout a pipe (the *report channel*), stderr the shim's log, in its own process group.
//!
//! 1. It detaches: own session (or the process group the shim gave it), child subreaper, every
//!    inherited fd above 2 closed, cwd `/`. SIGCHLD, SIGUSR1, SIGHUP and SIGINT are blocked and
//!    read from a signalfd (blocked, not ignored: ignored dispositions would survive exec into
//!    the container); SIGPIPE is ignored (std does that); SIGTERM/SIGKILL end it. No PDEATHSIG.
//! 2. It opens the CRI log (`--log`, O_APPEND|O_CREAT, 0640; the directory must exist), then runs
//!    `RUNTIME [--root DIR] --log RUNTIME_LOG --log-format json create --bundle DIR
//!    --pid-file DIR/init.pid ID` (RUNTIME_LOG defaults to `DIR/runtime.log`; with `--mode run`
//!    the verb is `run --detach`, which creates and starts the container in one runtime
//!    process: pea-shim's StartContainer uses it) with stdin
//!    `/dev/null` and stdout/stderr the write ends of two fresh pipes, whose copies it then drops.
//! 3. It writes exactly one line on the report channel and closes it: `{"pid":N}` (N from the pid
//!    file) once `create` succeeded, or `{"error":"..."}` and exit 1 on any failure before that.
//!    A failed `create` is reported with the last `"level":"error"` message the runtime logged
//!    during this call (or its exit status); the monitor then reaps what died and removes the log
//!    file if it created it, so nothing is left behind (the runtime removes its own state).
//! 4. It pumps both pipes into the log as CRI records ([`framing`]): `<RFC3339Nano UTC> <stdout|
//!    stderr> <F|P> <content>`; lines over 16 KiB are split into `P` records and a last `F`.
//!    Without `--log` the output is drained and discarded. SIGUSR1 reopens the log path
//!    (ReopenContainerLog after the kubelet renamed the file).
//! 5. It reaps every child. When the init (pid N) is reaped its status is recorded (exit code,
//!    or 128 + signal); output is still collected until both pipes are at EOF, but at most
//!    [`monitor::DRAIN_AFTER_EXIT`] (another process may hold them), then the exit file is written
//!    atomically ([`exit_file`]) and the monitor exits 0. The init dying before `start` (a
//!    `delete` of a created container kills it) is an exit like any other.
//!
//! 6. With `--attach-socket` it serves attach clients there ([`attach`]): live output, and the
//!    container's stdin when `--stdin` gave it a pipe (otherwise its stdin is `/dev/null`). The
//!    socket is removed when the monitor exits.
//!
//! 7. With `--console-socket PATH` (a tty container: process.terminal) it listens there and
//!    passes `--console-socket PATH` to `create`; the runtime sends the pty master ([`console`]),
//!    which becomes the container's one output stream (logged and attached as `stdout`) and
//!    where attach clients' stdin goes (with `--stdin`). The runtime's own stdio stays the
//!    pipes. A `create` that succeeds without sending a master is a failure.
//!
//! Apart from `run --detach` it never starts, kills or deletes the container: the shim runs
//! those verbs itself. Once the
//! pid was reported, a failure (the exit file cannot be written) goes to stderr with exit 1.
//!
//! # Memory, and what the shim ships
//! Measured here (release profile, runtime pea-runtime, a busybox container running after it
//! wrote 10 lines; VmRSS/RssAnon/RssFile from /proc/PID/status, Pss from smaps_rollup; three runs):
//!
//! | build | VmRSS | RssAnon | RssFile | Pss |
//! |---|---|---|---|---|
//! | dynamic (glibc shared) | 2 088–2 160 kB | 164 kB | 1 924–1 996 kB | 681–698 kB |
//! | static (`+crt-static`) | 1 428–1 496 kB | 120–128 kB | 1 304–1 368 kB | 1 424–1 492 kB |
//!
//! After 5.6 MiB of output (a 1.3 MB line, then 100 000 lines) the static monitor is at 1 480 kB
//! (RssAnon 176 kB): the heap stays bounded (one 32 KiB read buffer, at most 16 KiB pending per
//! stream, batches flushed at 32 KiB). The file-backed part is almost the whole mapped image: the
//! kernel maps cached pages 64 KiB around each fault, so every touched region brings its
//! neighbours; for the dynamic build that includes libc.so and ld.so (shared with every process,
//! hence its low Pss), for the static one ~700 KiB of glibc (stdio, gettext, iconv and the static
//! dlopen machinery that glibc's own internals pull in) plus Rust's std. The static pea-pause
//! measures 1 208 kB the same way.
//!
//! The attach socket (below) costs no measurable resident memory: static release builds side
//! by side, same container, runc: before attach support 1 432–1 492 kB VmRSS; with it, no
//! socket 1 432–1 472 kB, with `--attach-socket --stdin open` and a client that typed a byte
//! 1 444–1 480 kB (RssAnon 124–140 kB in every case; two runs each, 2026-12-06).
//!
//! **The shim ships the static build** (lowest VmRSS, no loader work at each start, nothing to
//! resolve at run time), built as pea-pause is:
//! `RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p pea-monitor --target
//! x86_64-unknown-linux-gnu`. The monitor does no NSS lookups and no dlopen, so static glibc is
//! safe. Its file-backed pages are shared by every monitor on the node (Pss per monitor falls
//! towards RssAnon as containers are added); adding `-C opt-level=z -C panic=abort` to RUSTFLAGS
//! saves another ~80 kB.
//!
//! # Spawning
//! The runtime is started with fork+exec rather than posix_spawn (see `monitor::spawn_create`):
//! glibc's posix_spawn leaves its internal signals 32 and 33 ignored in the child, and an ignored
//! disposition survives exec into the container. The shim should spawn the monitor the same way
//! (std's `Command` does fork+exec once `gid` is set; `.gid(getgid())` is a no-op), or the
//! container inherits those two ignored signals through the monitor.

pub mod args;
pub mod attach;
pub mod console;
pub mod error;
pub mod exit_file;
pub mod framing;
pub mod json;
pub mod log;
pub mod monitor;
pub mod report;

pub use args::Config;
pub use error::MonitorError;
pub use monitor::run;
pub use report::Reporter;
