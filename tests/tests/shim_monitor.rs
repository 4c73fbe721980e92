//! pea-monitor for real, as root: it runs `pea-runtime create` (and runc's), reports the pid on
//! its report pipe, writes the container's stdout/stderr as CRI log records, follows SIGUSR1 to
//! a new log file, survives its parent and report pipe going away, and writes the exit file.
//! Every test starts the container itself (`runtime start`), as the shim does, and a guard
//! force-deletes the container and kills the monitor even when the test fails.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pea_tests::fixtures::{Bundle, BundleBuilder};
use pea_tests::privileged::{require_program, require_root};
use pea_tests::runtime_cli::{
    assert_no_leftovers, pea_monitor_binary, processes_with, unique_id, unique_sleep, Runtime,
};
use serde_json::Value;

/// Bound on every wait (container start, report line, exit file, monitor exit).
const WAIT: Duration = Duration::from_secs(30);

/// One container under a monitor; Drop deletes the container and kills the monitor.
struct Monitored {
    rt: Runtime,
    id: String,
    bundle: Bundle,
    dir: PathBuf,
    log: PathBuf,
    exit_file: PathBuf,
    /// Set when the monitor is our child (not when it was started through a vanished parent).
    child: Option<Child>,
    /// The monitor's pid.
    pid: i32,
    /// More flags for the monitor (`--mode run`).
    extra: Vec<String>,
}

impl Monitored {
    /// Builds a busybox bundle running `args` in `tmp` with runtime `rt`.
    fn prepare(rt: Runtime, tmp: &Path, args: &[&str]) -> Self {
        let dir = tmp.to_path_buf();
        let bundle = BundleBuilder::busybox(&dir.join("bundle"))
            .args(args.iter().copied())
            .build()
            .expect("bundle");
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        Self {
            rt,
            id: unique_id("mon"),
            bundle,
            log: logs.join("0.log"),
            exit_file: dir.join("exit.json"),
            dir,
            child: None,
            pid: 0,
            extra: Vec::new(),
        }
    }

    /// The monitor's command line, per the contract.
    fn args(&self) -> Vec<String> {
        let s = |p: &Path| p.display().to_string();
        vec![
            "--runtime".into(),
            s(&self.rt.bin),
            "--runtime-root".into(),
            s(&self.rt.root),
            "--id".into(),
            self.id.clone(),
            "--bundle".into(),
            s(&self.bundle.dir),
            "--exit-file".into(),
            s(&self.exit_file),
            format!("--log={}", s(&self.log)),
        ]
        .into_iter()
        .chain(self.extra.iter().cloned())
        .collect()
    }

    /// Spawns the monitor as the shim does and returns its report line, parsed.
    fn spawn(&mut self) -> Value {
        let mut cmd = Command::new(pea_monitor_binary());
        cmd.args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(self.stderr_file())
            .process_group(0)
            // fork+exec, not posix_spawn (which leaves glibc's signals 32 and 33 ignored in the
            // child, and the container would inherit that): as pea-monitor spawns the runtime.
            .gid(nix::unistd::getgid().as_raw());
        let mut child = cmd.spawn().expect("spawn pea-monitor");
        self.pid = child.id() as i32;
        let stdout = child.stdout.take().expect("report pipe");
        self.child = Some(child);
        let line = read_to_eof(stdout, WAIT);
        assert_eq!(
            line.matches('\n').count(),
            1,
            "one report line, got {line:?}"
        );
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("report {line:?}: {e}"))
    }

    fn stderr_file(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("monitor.stderr"))
            .unwrap()
    }

    fn monitor_stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("monitor.stderr")).unwrap_or_default()
    }

    /// Spawns and expects `{"pid":N}` with N the runtime's init pid.
    fn spawn_created(&mut self) -> i64 {
        let report = self.spawn();
        let pid = report["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("expected a pid, got {report}: {}", self.monitor_stderr()));
        assert_eq!(self.rt.state(&self.id)["status"], "created");
        assert_eq!(self.rt.state(&self.id)["pid"].as_i64(), Some(pid));
        pid
    }

    fn start(&self) {
        self.rt.run(["start", self.id.as_str()]).ok();
    }

    /// Waits for the exit file and returns it parsed.
    fn exit_record(&self) -> Value {
        let text = wait_for(WAIT, "the exit file", || {
            std::fs::read_to_string(&self.exit_file).ok()
        });
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("exit file {text:?}: {e}"))
    }

    /// Waits for the monitor (our child) to exit and returns its exit code.
    fn monitor_exit_code(&mut self) -> Option<i32> {
        let child = self.child.as_mut().expect("monitor is our child");
        wait_for(WAIT, "the monitor to exit", || child.try_wait().unwrap()).code()
    }

    /// The CRI records in `path`.
    fn records(path: &Path) -> Vec<Record> {
        std::fs::read(path)
            .unwrap_or_default()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(Record::parse)
            .collect()
    }

    /// Waits until `path` holds a record of `stream` with `content`.
    fn wait_record(path: &Path, stream: &str, content: &str) {
        wait_for(
            WAIT,
            &format!("{stream} {content:?} in {}", path.display()),
            || {
                Self::records(path)
                    .iter()
                    .any(|r| r.stream == stream && r.content == content.as_bytes())
                    .then_some(())
            },
        );
    }
}

impl Drop for Monitored {
    fn drop(&mut self) {
        // The container first: its monitor then sees the init die and exits by itself.
        let mut cmd = self.rt.command(["delete", "--force", self.id.as_str()]);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let _ = cmd.status();
        if self.pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

/// One line of a CRI log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    time: String,
    stream: String,
    tag: char,
    content: Vec<u8>,
}

impl Record {
    fn parse(line: &[u8]) -> Self {
        let text = String::from_utf8_lossy(line);
        let mut parts = line.splitn(4, |&b| b == b' ');
        let mut field = || String::from_utf8(parts.next().unwrap_or_default().to_vec()).unwrap();
        let (time, stream, tag) = (field(), field(), field());
        let content = parts
            .next()
            .unwrap_or_else(|| panic!("short record {text:?}"));
        assert!(is_rfc3339_nano_utc(&time), "timestamp {time:?} in {text:?}");
        assert!(stream == "stdout" || stream == "stderr", "{text:?}");
        assert!(tag == "F" || tag == "P", "{text:?}");
        Self {
            time,
            stream,
            tag: tag.chars().next().unwrap(),
            content: content.to_vec(),
        }
    }
}

/// `2026-12-06T04:05:06.123456789Z`.
fn is_rfc3339_nano_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 30
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..29)
        && b[29] == b'Z'
}

/// Records of one stream as (tag, content) pairs.
fn stream(records: &[Record], name: &str) -> Vec<(char, String)> {
    records
        .iter()
        .filter(|r| r.stream == name)
        .map(|r| (r.tag, String::from_utf8_lossy(&r.content).into_owned()))
        .collect()
}

fn full(s: &str) -> (char, String) {
    ('F', s.to_string())
}

/// Reads `r` to EOF in a thread; panics after `timeout`.
fn read_to_eof(mut r: impl Read + Send + 'static, timeout: Duration) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("no EOF on the report pipe within {timeout:?}"))
}

/// Polls `f` until it returns Some, for at most `timeout`.
fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is gone or a zombie (its parent may be a pid 1 that does not reap).
fn dead(pid: i32) -> bool {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    st.is_empty() || st.contains("State:\tZ")
}

fn assert_exit(rec: &Value, code: i64, signal: i64) {
    assert_eq!(rec["version"], 1, "{rec}");
    assert_eq!(rec["exit_code"].as_i64(), Some(code), "{rec}");
    assert_eq!(rec["signal"].as_i64(), Some(signal), "{rec}");
    let started = rec["started_at_ns"].as_u64().expect("started_at_ns");
    let finished = rec["finished_at_ns"].as_u64().expect("finished_at_ns");
    assert!(started > 0 && started <= finished, "{rec}");
}

#[test]
fn logs_both_streams_and_records_the_exit_code() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Monitored::prepare(
        Runtime::pea(),
        tmp.path(),
        &[
            "sh",
            "-c",
            "echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 3",
        ],
    );
    m.spawn_created();
    // Created, not started: the monitor waits; nothing ran yet.
    assert!(Monitored::records(&m.log).is_empty());
    m.start();
    assert_exit(&m.exit_record(), 3, 0);
    assert_eq!(m.monitor_exit_code(), Some(0), "{}", m.monitor_stderr());
    let recs = Monitored::records(&m.log);
    assert_eq!(stream(&recs, "stdout"), vec![full("out1"), full("out2")]);
    assert_eq!(stream(&recs, "stderr"), vec![full("err1"), full("err2")]);
    // The runtime logged to its default place, BUNDLE/runtime.log.
    assert!(m.bundle.dir.join("runtime.log").exists());
    m.rt.run(["delete", m.id.as_str()]).ok();
    assert_no_leftovers(&m.rt, &m.id, Some(&m.id));
}

#[test]
fn a_long_line_becomes_partial_records_that_reassemble() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    // 38 893 bytes of distinct content on one line, then a short one.
    let mut m = Monitored::prepare(
        Runtime::pea(),
        tmp.path(),
        &["sh", "-c", "seq 1 8000 | tr '\\n' ,; echo; echo short"],
    );
    m.spawn_created();
    m.start();
    assert_exit(&m.exit_record(), 0, 0);
    let want: String = (1..=8000).map(|i| format!("{i},")).collect();
    assert!(want.len() > 2 * 16 * 1024);
    let out = stream(&Monitored::records(&m.log), "stdout");
    let tags: String = out.iter().map(|r| r.0).collect();
    assert_eq!(
        tags,
        "PPFF",
        "{:?}",
        out.iter().map(|r| r.1.len()).collect::<Vec<_>>()
    );
    assert_eq!(out[0].1.len(), 16 * 1024);
    assert_eq!(out[1].1.len(), 16 * 1024);
    assert_eq!(format!("{}{}{}", out[0].1, out[1].1, out[2].1), want);
    assert_eq!(out[3], full("short"));
}

#[test]
fn a_last_line_without_newline_is_a_full_record() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Monitored::prepare(
        Runtime::pea(),
        tmp.path(),
        &["sh", "-c", "printf 'a\\nb'; printf 'c\\nd' >&2"],
    );
    m.spawn_created();
    m.start();
    assert_exit(&m.exit_record(), 0, 0);
    let recs = Monitored::records(&m.log);
    assert_eq!(stream(&recs, "stdout"), vec![full("a"), full("b")]);
    assert_eq!(stream(&recs, "stderr"), vec![full("c"), full("d")]);
}

#[test]
fn sigkill_of_the_container_is_exit_137_signal_9() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let mut m = Monitored::prepare(Runtime::pea(), tmp.path(), &["sleep", &marker]);
    m.spawn_created();
    m.start();
    m.rt.run(["kill", m.id.as_str(), "KILL"]).ok();
    assert_exit(&m.exit_record(), 137, 9);
    assert_eq!(m.monitor_exit_code(), Some(0), "{}", m.monitor_stderr());
    m.rt.run(["delete", m.id.as_str()]).ok();
    assert_no_leftovers(&m.rt, &m.id, Some(&marker));
}

#[test]
fn deleting_a_created_container_is_an_exit_like_any_other() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let mut m = Monitored::prepare(Runtime::pea(), tmp.path(), &["sleep", &marker]);
    m.spawn_created();
    m.rt.run(["delete", "--force", m.id.as_str()]).ok();
    assert_exit(&m.exit_record(), 137, 9);
    assert_eq!(m.monitor_exit_code(), Some(0), "{}", m.monitor_stderr());
    assert_no_leftovers(&m.rt, &m.id, Some(&marker));
}

/// `--mode run` (pea-shim's StartContainer): one `run --detach` creates and starts the
/// container; the monitor reports its init, logs it and records its exit as after `create`.
#[test]
fn run_mode_starts_the_container_in_one_runtime_call_and_records_its_exit() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let script = format!("echo started; exec sleep {marker}");
    let mut m = Monitored::prepare(Runtime::pea(), tmp.path(), &["sh", "-c", &script]);
    m.extra = vec!["--mode".into(), "run".into()];
    let report = m.spawn();
    let pid = report["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("expected a pid, got {report}: {}", m.monitor_stderr()));
    assert_eq!(m.rt.state(&m.id)["status"], "running");
    assert_eq!(m.rt.state(&m.id)["pid"].as_i64(), Some(pid));
    Monitored::wait_record(&m.log, "stdout", "started");
    m.rt.run(["kill", m.id.as_str(), "KILL"]).ok();
    assert_exit(&m.exit_record(), 137, 9);
    assert_eq!(m.monitor_exit_code(), Some(0), "{}", m.monitor_stderr());
    m.rt.run(["delete", m.id.as_str()]).ok();
    assert_no_leftovers(&m.rt, &m.id, Some(&marker));
}

#[test]
fn a_failed_run_reports_the_cause_and_leaves_nothing() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Monitored::prepare(Runtime::pea(), tmp.path(), &["/no/such/program"]);
    m.extra = vec!["--mode".into(), "run".into()];
    let report = m.spawn();
    let err = report["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error, got {report}"));
    assert!(
        err.contains(&m.id) && err.contains("runtime run failed"),
        "{err}"
    );
    assert_eq!(m.monitor_exit_code(), Some(1));
    assert!(!m.exit_file.exists());
    assert!(!m.log.exists(), "the log the monitor created was left");
    assert_no_leftovers(&m.rt, &m.id, Some(&m.id));
}

#[test]
fn a_failed_create_reports_the_cause_and_leaves_nothing() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let mut m = Monitored::prepare(Runtime::pea(), tmp.path(), &["sleep", &marker]);
    std::fs::rename(&m.bundle.rootfs, tmp.path().join("moved-away")).unwrap();
    let report = m.spawn();
    let err = report["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error, got {report}"));
    assert!(
        err.contains(&m.id) && err.contains("rootfs") && err.contains("No such file"),
        "{err}"
    );
    assert_eq!(m.monitor_exit_code(), Some(1));
    assert!(!m.exit_file.exists());
    assert!(!m.log.exists(), "the log the monitor created was left");
    // No state dir, cgroup or process (the monitor's command line names the id).
    assert_no_leftovers(&m.rt, &m.id, Some(&m.id));
    assert!(processes_with(&marker).is_empty());
}

#[test]
fn a_log_directory_that_does_not_exist_is_reported_before_create() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Monitored::prepare(Runtime::pea(), tmp.path(), &["true"]);
    m.log = tmp.path().join("absent/0.log");
    let report = m.spawn();
    let err = report["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("opening log") && err.contains("absent/0.log"),
        "{report}"
    );
    assert_eq!(m.monitor_exit_code(), Some(1));
    assert!(m.rt.ids().is_empty(), "no container was created");
}

#[test]
fn sigusr1_after_a_rename_reopens_the_log() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let script = "echo before; while [ ! -e /go ]; do sleep 0.02; done; echo after; echo more >&2";
    let mut m = Monitored::prepare(Runtime::pea(), tmp.path(), &["sh", "-c", script]);
    m.spawn_created();
    m.start();
    Monitored::wait_record(&m.log, "stdout", "before");
    let rotated = m.log.with_extension("log.1");
    std::fs::rename(&m.log, &rotated).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(m.pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    // The reopen creates the file at the path: then the container may go on.
    wait_for(WAIT, "the reopened log", || m.log.exists().then_some(()));
    std::fs::write(m.bundle.rootfs.join("go"), b"").unwrap();
    assert_exit(&m.exit_record(), 0, 0);
    let old = Monitored::records(&rotated);
    let new = Monitored::records(&m.log);
    assert_eq!(stream(&old, "stdout"), vec![full("before")]);
    assert!(stream(&old, "stderr").is_empty());
    assert_eq!(stream(&new, "stdout"), vec![full("after")]);
    assert_eq!(stream(&new, "stderr"), vec![full("more")]);
}

#[test]
fn the_monitor_outlives_its_parent_and_report_pipe() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let script = "echo one; while [ ! -e /go ]; do sleep 0.02; done; echo two; exit 7";
    let mut m = Monitored::prepare(Runtime::pea(), tmp.path(), &["sh", "-c", script]);
    // A parent shell starts the monitor in the background and exits at once; the test drops the
    // read end of the report pipe before the monitor can write its report.
    let pid_file = tmp.path().join("monitor.pid");
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("\"$@\" & echo $! > \"$PEA_PID_FILE\"")
        .arg("sh")
        .arg(pea_monitor_binary())
        .args(m.args())
        .env("PEA_PID_FILE", &pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(m.stderr_file())
        .process_group(0);
    let mut parent = sh.spawn().expect("spawn sh");
    drop(parent.stdout.take());
    let status = wait_for(WAIT, "the parent shell", || parent.try_wait().unwrap());
    assert!(status.success());
    m.pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(WAIT, "the container to be created", || {
        m.rt.run(["state", m.id.as_str()]).success().then_some(())
    });
    m.rt.wait_status(&m.id, "created", WAIT);
    assert!(
        !dead(m.pid),
        "the monitor died with its report pipe: {}",
        m.monitor_stderr()
    );
    m.start();
    Monitored::wait_record(&m.log, "stdout", "one");
    std::fs::write(m.bundle.rootfs.join("go"), b"").unwrap();
    Monitored::wait_record(&m.log, "stdout", "two");
    assert_exit(&m.exit_record(), 7, 0);
    wait_for(WAIT, "the orphaned monitor to exit", || {
        dead(m.pid).then_some(())
    });
}

#[test]
fn the_monitor_keeps_only_the_fds_it_needs_and_passes_on_no_signal_mask() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let mut m = Monitored::prepare(Runtime::pea(), tmp.path(), &["sleep", &marker]);
    let init = m.spawn_created();
    m.start();
    let snapshot = |pid: i64| -> Vec<(i32, String)> {
        let mut v: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            // An fd closed between the listing and the readlink (the process is still
            // settling) is simply not there.
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().parse().unwrap();
                Some((n, std::fs::read_link(e.path()).ok()?.display().to_string()))
            })
            .collect();
        v.sort();
        v
    };
    // The table once it holds still: two reads 20 ms apart agree (at most 2 s).
    let fds = |pid: i64| -> Vec<(i32, String)> {
        let mut last = snapshot(pid);
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let now = snapshot(pid);
            if now == last {
                break;
            }
            last = now;
        }
        last
    };
    let mon = fds(m.pid as i64);
    let names: Vec<&str> = mon.iter().map(|(_, t)| t.as_str()).collect();
    // stdin and the closed report channel are /dev/null; stderr is the shim's log (here a file).
    assert_eq!(names[..2], ["/dev/null", "/dev/null"], "{mon:?}");
    assert!(names[2].ends_with("monitor.stderr"), "{mon:?}");
    let mut rest: Vec<&str> = names[3..]
        .iter()
        .map(|t| {
            if t.starts_with("pipe:") {
                "pipe"
            } else if t.ends_with("/logs/0.log") {
                "log"
            } else {
                t
            }
        })
        .collect();
    rest.sort();
    assert_eq!(
        rest,
        ["anon_inode:[signalfd]", "log", "pipe", "pipe"],
        "{mon:?}"
    );
    // The container: /dev/null and the two pipes, nothing of the monitor's.
    let ctr = fds(init);
    let names: Vec<&str> = ctr.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(names.len(), 3, "{ctr:?}");
    assert_eq!(names[0], "/dev/null");
    assert!(
        names[1].starts_with("pipe:") && names[2].starts_with("pipe:"),
        "{ctr:?}"
    );
    assert!(mon.iter().any(|(_, t)| t == names[1]) && mon.iter().any(|(_, t)| t == names[2]));
    // The signals the monitor blocks reach the container neither blocked nor ignored: nothing is
    // blocked, and what is ignored is only what this test process passed down (cargo starts it
    // with posix_spawn, which leaves glibc's signal 32 ignored; no one in the chain can undo it).
    let mask = |pid: &str, key: &str| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap()
            .to_string();
        u64::from_str_radix(line[key.len()..].trim(), 16).unwrap()
    };
    let init_s = init.to_string();
    assert_eq!(mask(&init_s, "SigBlk:"), 0);
    let ignored = mask(&init_s, "SigIgn:");
    assert_eq!(
        ignored & !mask("self", "SigIgn:"),
        0,
        "ignored: {ignored:x}"
    );
    let bit = |s: nix::sys::signal::Signal| 1u64 << (s as i32 - 1);
    use nix::sys::signal::Signal::{SIGCHLD, SIGHUP, SIGINT, SIGUSR1};
    assert_eq!(
        ignored & (bit(SIGCHLD) | bit(SIGHUP) | bit(SIGINT) | bit(SIGUSR1)),
        0
    );
    // The monitor runs in its own process group, as a child subreaper.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", m.pid)).unwrap();
    let after_comm: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    assert_eq!(after_comm[2], m.pid.to_string(), "pgrp: {stat}");
    m.rt.run(["kill", m.id.as_str(), "KILL"]).ok();
    assert_exit(&m.exit_record(), 137, 9);
}

#[test]
fn runc_works_too() {
    require_root();
    let runc = require_program("runc");
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Monitored::prepare(
        Runtime::new(runc),
        tmp.path(),
        &["sh", "-c", "echo hi; echo oops >&2; exit 2"],
    );
    m.spawn_created();
    m.start();
    assert_exit(&m.exit_record(), 2, 0);
    assert_eq!(m.monitor_exit_code(), Some(0), "{}", m.monitor_stderr());
    let recs = Monitored::records(&m.log);
    assert_eq!(stream(&recs, "stdout"), vec![full("hi")]);
    assert_eq!(stream(&recs, "stderr"), vec![full("oops")]);
    m.rt.run(["delete", m.id.as_str()]).ok();
    assert_no_leftovers(&m.rt, &m.id, Some(&m.id));
}

#[test]
fn a_failed_runc_create_reports_its_logged_error() {
    require_root();
    let runc = require_program("runc");
    let tmp = tempfile::tempdir().unwrap();
    let mut m = Monitored::prepare(Runtime::new(runc), tmp.path(), &["true"]);
    std::fs::rename(&m.bundle.rootfs, tmp.path().join("moved-away")).unwrap();
    let report = m.spawn();
    let err = report["error"].as_str().unwrap_or_default();
    // runc's own logged message (it starts "runc create failed"), not just an exit status.
    assert!(
        err.contains("runtime create failed: runc create failed") && err.contains("rootfs"),
        "{report}"
    );
    assert_eq!(m.monitor_exit_code(), Some(1));
    assert_no_leftovers(&m.rt, &m.id, Some(&m.id));
}
