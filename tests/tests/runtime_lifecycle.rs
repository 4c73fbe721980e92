//! pea-runtime verbs for real, as root: create/start/state/kill/delete, run (exit codes,
//! detach, keep, signal forwarding), exec (args, env, cwd, user, process file, detach, pid
//! file), ps, pause/resume, update, events, features, spec, list, logging.

use std::path::Path;
use std::time::Duration;

use pea_tests::fixtures::{Bundle, BundleBuilder};
use pea_tests::privileged::require_root;
use pea_tests::runtime_cli::{
    assert_no_leftovers, processes_with, unique_id, unique_sleep, Runtime,
};

fn bundle(dir: &Path, args: &[&str]) -> Bundle {
    BundleBuilder::busybox(dir)
        .args(args.iter().copied())
        .build()
        .expect("bundle")
}

fn b(bundle: &Bundle) -> String {
    bundle.dir.display().to_string()
}

#[test]
fn create_start_state_kill_delete() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let bun = bundle(tmp.path(), &["sleep", &marker]);
    let id = unique_id("life");
    let pid_file = tmp.path().join("pid");
    rt.run([
        "create",
        "--bundle",
        &b(&bun),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ])
    .ok();
    let st = rt.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["bundle"], b(&bun).as_str());
    assert_eq!(st["rootfs"], bun.rootfs.display().to_string().as_str());
    assert!(st["created"].as_str().unwrap().ends_with('Z'));
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string()
    );
    // Not started yet: the user process has not run.
    assert!(processes_with(&marker).is_empty());

    rt.run(["start", &id]).ok();
    assert_eq!(rt.status(&id), "running");
    assert!(!processes_with(&marker).is_empty());
    rt.run(["start", &id]).fails_with("running");

    rt.run(["delete", &id]).fails_with("not stopped");
    rt.run(["kill", &id, "KILL"]).ok();
    rt.wait_status(&id, "stopped", Duration::from_secs(5));
    assert_eq!(rt.state(&id)["pid"], 0);
    rt.run(["kill", &id]).fails_with("not running");
    rt.run(["delete", &id]).ok();
    rt.run(["state", &id]).fails_with("does not exist");
    assert_no_leftovers(&rt, &id, Some(&marker));
}

#[test]
fn delete_of_a_created_container_kills_its_init() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let bun = bundle(tmp.path(), &["true"]);
    let id = unique_id("created");
    rt.run(["create", "--bundle", &b(&bun), &id]).ok();
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    rt.run(["delete", &id]).ok();
    // Dead: gone, or a zombie waiting for whoever adopted it (this sandbox's pid 1 does not reap).
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(
        st.is_empty() || st.contains("State:\tZ"),
        "init {pid} still alive after delete: {st}"
    );
    assert_no_leftovers(&rt, &id, None);
}

#[test]
fn run_reports_exit_codes_like_runc() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    for (args, want, out) in [
        (vec!["sh", "-c", "echo out; exit 42"], 42, "out"),
        // pid 1 of a pid namespace cannot SIGKILL itself: a child shell's death is the code
        (vec!["sh", "-c", "sh -c 'kill -9 $$'; exit $?"], 137, ""),
        (vec!["true"], 0, ""),
    ] {
        let dir = tmp.path().join(format!("b{want}"));
        let bun = bundle(&dir, &args);
        let id = unique_id("exit");
        let o = rt.run(["run", "--bundle", &b(&bun), &id]);
        assert_eq!(o.code, Some(want), "{args:?}: {}", o.stderr);
        assert!(o.stdout.contains(out));
        assert_no_leftovers(&rt, &id, None);
    }
}

#[test]
fn run_detach_and_keep() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let bun = bundle(&tmp.path().join("d"), &["sleep", &marker]);
    let id = unique_id("detach");
    rt.run(["run", "--detach", "--bundle", &b(&bun), &id]).ok();
    assert_eq!(rt.status(&id), "running");
    rt.run(["delete", "--force", &id]).ok();
    assert_no_leftovers(&rt, &id, Some(&marker));

    let bun = bundle(&tmp.path().join("k"), &["sh", "-c", "exit 3"]);
    let id = unique_id("keep");
    let o = rt.run(["run", "--keep", "--bundle", &b(&bun), &id]);
    assert_eq!(o.code, Some(3), "{}", o.stderr);
    assert_eq!(rt.status(&id), "stopped");
    rt.run(["delete", &id]).ok();
    assert_no_leftovers(&rt, &id, None);
}

#[test]
fn run_forwards_signals_to_the_container() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let bun = bundle(
        tmp.path(),
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 21' TERM; while true; do sleep 0.05; done",
        ],
    );
    let id = unique_id("fwd");
    let mut cmd = rt.command(["run", "--bundle", &b(&bun), &id]);
    let out = tempfile::NamedTempFile::new().unwrap();
    cmd.stdout(out.reopen().unwrap())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    // Wait until it runs, then signal the runtime process (not the container).
    let start = std::time::Instant::now();
    while !rt.ids().contains(&id) || rt.status(&id) != "running" {
        assert!(start.elapsed() < Duration::from_secs(10), "never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let status = sigterm_and_wait(&mut child, "run");
    assert_eq!(status.code(), Some(21));
    assert!(std::fs::read_to_string(out.path())
        .unwrap()
        .contains("got-term"));
    assert_no_leftovers(&rt, &id, None);
}

#[test]
fn kill_accepts_names_numbers_and_all() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let bun = bundle(
        tmp.path(),
        &[
            "sh",
            "-c",
            &format!(
                "trap 'touch /tmp/usr1' USR1; sleep {marker}1 & sleep {marker}2 & while true; do sleep 0.05; done"
            ),
        ],
    );
    let id = unique_id("kill");
    rt.run(["run", "-d", "--bundle", &b(&bun), &id]).ok();
    std::thread::sleep(Duration::from_millis(200));
    rt.run(["kill", &id, "SIGUSR1"]).ok();
    let flag = bun.rootfs.join("tmp/usr1");
    let start = std::time::Instant::now();
    while !flag.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "USR1 not delivered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A non-fatal signal leaves the container running (libcontainer's kill would say stopped).
    assert_eq!(rt.status(&id), "running");
    rt.run(["kill", &id, "NOSUCHSIG"])
        .fails_with("unknown signal");
    assert!(processes_with(&format!("{marker}1")).len() >= 2); // the sleep and its sh
    rt.run(["kill", "--all", &id, "9"]).ok();
    rt.wait_status(&id, "stopped", Duration::from_secs(5));
    rt.run(["delete", &id]).ok();
    assert_no_leftovers(&rt, &id, Some(&marker));
}

#[test]
fn exec_runs_with_overrides_and_reports_exit_codes() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let bun = bundle(tmp.path(), &["sleep", &marker]);
    let id = unique_id("exec");
    rt.run(["run", "-d", "--bundle", &b(&bun), &id]).ok();

    let o = rt
        .run([
            "exec",
            "--env",
            "FOO=bar",
            "--cwd",
            "/tmp",
            "--user",
            "1000:1001",
            "-g",
            "2000",
            &id,
            "sh",
            "-c",
            "echo $FOO; pwd; id -u; id -g; id -G",
        ])
        .ok();
    assert_eq!(o.stdout, "bar\n/tmp\n1000\n1001\n1001 2000\n");

    let o = rt.run(["exec", &id, "sh", "-c", "exit 5"]);
    assert_eq!(o.code, Some(5));
    rt.run(["exec", &id, "nonexistent-binary"])
        .fails_with("executable file not found");

    // --process: used as-is
    let proc_file = tmp.path().join("process.json");
    std::fs::write(
        &proc_file,
        serde_json::json!({
            "args": ["sh", "-c", "echo from-process-file $X"],
            "env": ["PATH=/bin", "X=42"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0}
        })
        .to_string(),
    )
    .unwrap();
    let o = rt
        .run(["exec", "--process", proc_file.to_str().unwrap(), &id])
        .ok();
    assert_eq!(o.stdout.trim(), "from-process-file 42");

    // --detach --pid-file
    let pid_file = tmp.path().join("exec.pid");
    rt.run([
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        &format!("{marker}9"),
    ])
    .ok();
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(processes_with(&format!("{marker}9")).contains(&pid));
    // ps sees both processes
    let o = rt.run(["ps", "--format", "json", &id]).ok();
    let pids: Vec<i32> = serde_json::from_str(&o.stdout).unwrap();
    assert!(pids.contains(&pid), "{pids:?}");
    assert_eq!(pids.len(), 2, "{pids:?}");
    let o = rt.run(["ps", &id]).ok();
    assert!(o.stdout.starts_with("UID"), "{}", o.stdout);
    assert!(o.stdout.contains(&marker));

    rt.run(["delete", "--force", &id]).ok();
    assert_no_leftovers(&rt, &id, Some(&marker));
    rt.run(["exec", &id, "true"]).fails_with("does not exist");
}

fn cgroup_file(id: &str, ctrl: &str, file: &str) -> String {
    std::fs::read_to_string(format!("/sys/fs/cgroup/{ctrl}/:youki:{id}/{file}"))
        .unwrap_or_else(|e| panic!("{ctrl}/{file}: {e}"))
        .trim()
        .to_string()
}

#[test]
fn pause_resume_update_events() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let bun = bundle(tmp.path(), &["sleep", &marker]);
    let id = unique_id("pru");
    rt.run(["run", "-d", "--bundle", &b(&bun), &id]).ok();

    rt.run(["pause", &id]).ok();
    assert_eq!(rt.status(&id), "paused");
    assert_eq!(cgroup_file(&id, "freezer", "freezer.state"), "FROZEN");
    rt.run(["exec", &id, "true"]).fails_with("paused");
    rt.run(["pause", &id]).fails_with("paused");
    rt.run(["resume", &id]).ok();
    assert_eq!(rt.status(&id), "running");
    assert_eq!(cgroup_file(&id, "freezer", "freezer.state"), "THAWED");
    rt.run(["resume", &id]).fails_with("running");

    rt.run_stdin(
        ["update", "--resources", "-", &id],
        br#"{"memory":{"limit":67108864},"pids":{"limit":50},"cpu":{"quota":50000,"period":100000}}"#,
    )
    .ok();
    assert_eq!(
        cgroup_file(&id, "memory", "memory.limit_in_bytes"),
        "67108864"
    );
    assert_eq!(cgroup_file(&id, "pids", "pids.max"), "50");
    assert_eq!(cgroup_file(&id, "cpu", "cpu.cfs_quota_us"), "50000");
    rt.run(["update", "--pids-limit", "77", &id]).ok();
    assert_eq!(cgroup_file(&id, "pids", "pids.max"), "77");
    rt.run_stdin(["update", "--resources", "-", &id], b"{not json")
        .fails_with("invalid LinuxResources JSON");

    let o = rt.run(["events", "--stats", &id]).ok();
    let ev: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], id.as_str());
    assert!(ev["data"]["pids"]["current"].as_u64().unwrap() >= 1);
    assert_eq!(ev["data"]["pids"]["limit"], 77);
    assert_eq!(
        ev["data"]["memory"]["usage"]["limit"].as_u64(),
        Some(67108864)
    );

    let o = rt.run(["list"]).ok();
    assert!(o.stdout.starts_with("ID"));
    assert!(o.stdout.contains(&id));
    let o = rt.run(["list", "--format", "json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v[0]["id"], id.as_str());
    assert_eq!(v[0]["status"], "running");
    let o = rt.run(["list", "-q"]).ok();
    assert_eq!(o.stdout.trim(), id);

    rt.run(["delete", "--force", &id]).ok();
    assert_no_leftovers(&rt, &id, Some(&marker));
    rt.run(["delete", "--force", &id]).ok();
    rt.run(["delete", &id]).fails_with("does not exist");
}

#[test]
fn features_spec_and_global_flags() {
    require_root();
    let rt = Runtime::pea();
    let o = rt.run(["features"]).ok();
    let f: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    assert_eq!(f["linux"]["cgroup"]["systemd"], false);
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&"time".into()));

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    rt.run(["spec", "--bundle", dir]).ok();
    let spec: oci_spec::runtime::Spec =
        oci_spec::runtime::Spec::load(tmp.path().join("config.json")).unwrap();
    assert!(spec.process().is_some());
    rt.run(["spec", "--bundle", dir]).fails_with("exists");

    rt.run(["--systemd-cgroup", "list"])
        .fails_with("systemd cgroup management is not available");
    rt.run(["--log-format", "yaml", "list"])
        .fails_with("invalid value");

    // --log with json: failures land as {"level":"error","msg":...} lines (what containerd reads).
    let log = tmp.path().join("log.json");
    rt.run([
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nope",
    ])
    .fails_with("does not exist");
    let text = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(last["msg"].as_str().unwrap().contains("does not exist"));
    assert!(last["time"].is_string());
}

#[test]
fn run_reports_128_plus_signal_when_the_init_is_killed() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let bun = bundle(tmp.path(), &["sleep", &marker]);
    let id = unique_id("sig");
    let mut cmd = rt.command(["run", "--bundle", &b(&bun), &id]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let start = std::time::Instant::now();
    while processes_with(&marker).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    rt.run(["kill", &id, "KILL"]).ok();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("run did not exit after its init was killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(137));
    assert_no_leftovers(&rt, &id, Some(&marker));
}

#[test]
fn delete_force_of_a_paused_container() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let bun = bundle(tmp.path(), &["sleep", &marker]);
    let id = unique_id("paused");
    rt.run(["run", "-d", "--bundle", &b(&bun), &id]).ok();
    rt.run(["pause", &id]).ok();
    rt.run(["delete", &id]).fails_with("not stopped: paused");
    rt.run(["delete", "--force", &id]).ok();
    assert_no_leftovers(&rt, &id, Some(&marker));
}

#[test]
fn preserve_fds_passes_extra_fds_to_the_container() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let bun = bundle(tmp.path(), &["sh", "-c", "echo preserved-fd >&3"]);
    let id = unique_id("pfd");
    let out = tmp.path().join("fd3.txt");
    // The shell opens fd 3 and the runtime inherits it (no unsafe pre_exec in this crate).
    let script = format!(
        "exec 3>{}; exec {} --root {} run --preserve-fds 1 --bundle {} {}",
        out.display(),
        rt.bin.display(),
        rt.root.display(),
        b(&bun),
        id
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", &script]);
    let o = pea_tests::runtime_cli::run_with_timeout(cmd, None, Duration::from_secs(30));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "preserved-fd\n");
    // Without --preserve-fds the fd is closed before exec.
    let script = script.replace("--preserve-fds 1 ", "");
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", &script]);
    let o = pea_tests::runtime_cli::run_with_timeout(cmd, None, Duration::from_secs(30));
    assert_ne!(o.code, Some(0), "fd 3 leaked into the container");
    assert_no_leftovers(&rt, &id, None);
}

#[test]
fn events_streams_stats_until_the_container_stops() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let bun = bundle(tmp.path(), &["sleep", "1"]);
    let id = unique_id("events");
    rt.run(["run", "-d", "--bundle", &b(&bun), &id]).ok();
    let o = rt.run(["events", "--interval", "200ms", &id]).ok();
    let lines: Vec<serde_json::Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("event json"))
        .collect();
    assert!(lines.len() >= 2, "{}", o.stdout);
    assert!(lines
        .iter()
        .all(|e| e["type"] == "stats" && e["id"] == id.as_str()));
    rt.run(["events", "--interval", "nope", &id])
        .fails_with("--interval");
    rt.run(["delete", &id]).ok();
    assert_no_leftovers(&rt, &id, None);
}

#[test]
/// An exec joins the container's user namespace (libcontainer patched, PEA-PATCH.md): it sees
/// the container's mapping and is root there, not the host's root.
fn exec_into_a_user_namespace_container_runs_in_its_user_namespace() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let mut bun = bundle(tmp.path(), &["sleep", &marker]);
    let mut linux = bun.spec.linux().clone().unwrap();
    let mut ns = linux.namespaces().clone().unwrap();
    ns.push(
        oci_spec::runtime::LinuxNamespaceBuilder::default()
            .typ(oci_spec::runtime::LinuxNamespaceType::User)
            .build()
            .unwrap(),
    );
    linux.set_namespaces(Some(ns));
    let map = oci_spec::runtime::LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(100000u32)
        .size(65536u32)
        .build()
        .unwrap();
    linux.set_uid_mappings(Some(vec![map]));
    linux.set_gid_mappings(Some(vec![map]));
    bun.spec.set_linux(Some(linux));
    let mounts = bun
        .spec
        .mounts()
        .clone()
        .unwrap()
        .into_iter()
        .filter(|m| m.typ().as_deref() != Some("cgroup"))
        .collect();
    bun.spec.set_mounts(Some(mounts));
    bun.save().unwrap();
    let id = unique_id("userns");
    rt.run(["run", "-d", "--bundle", &b(&bun), &id]).ok();
    let out = rt
        .run(["exec", &id, "sh", "-c", "id -u; cat /proc/self/uid_map"])
        .ok();
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(words, ["0", "0", "100000", "65536"], "{}", out.stdout);
    rt.run(["delete", "--force", &id]).ok();
    assert_no_leftovers(&rt, &id, Some(&marker));
}

#[test]
fn hooks_run_with_the_container_state() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let mut bun = bundle(&tmp.path().join("b"), &["true"]);
    let out = tmp.path().join("hooks");
    std::fs::create_dir_all(&out).unwrap();
    let hook = |name: &str| {
        oci_spec::runtime::HookBuilder::default()
            .path("/bin/sh")
            .args(vec![
                "sh".to_string(),
                "-c".to_string(),
                format!("cat > {}/{name}.json", out.display()),
            ])
            .build()
            .unwrap()
    };
    bun.spec.set_hooks(Some(
        oci_spec::runtime::HooksBuilder::default()
            .create_runtime(vec![hook("createRuntime")])
            .poststart(vec![hook("poststart")])
            .poststop(vec![hook("poststop")])
            .build()
            .unwrap(),
    ));
    bun.save().unwrap();
    let id = unique_id("hooks");
    rt.run(["run", "--bundle", &b(&bun), &id]).ok();
    for name in ["createRuntime", "poststart", "poststop"] {
        let text = std::fs::read_to_string(out.join(format!("{name}.json")))
            .unwrap_or_else(|e| panic!("{name} hook did not run: {e}"));
        let st: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(st["id"], id.as_str(), "{name}: {text}");
        assert_eq!(st["bundle"], b(&bun).as_str(), "{name}: {text}");
    }
    assert_no_leftovers(&rt, &id, None);
}

#[test]
fn exec_forwards_signals_and_reports_the_exit_code() {
    require_root();
    let rt = Runtime::pea();
    let tmp = tempfile::tempdir().unwrap();
    let marker = unique_sleep();
    let bun = bundle(tmp.path(), &["sleep", &marker]);
    let id = unique_id("execsig");
    rt.run(["run", "-d", "--bundle", &b(&bun), &id]).ok();
    let mut cmd = rt.command([
        "exec",
        &id,
        "sh",
        "-c",
        "trap 'exit 9' TERM; touch /tmp/exec-ready; while true; do sleep 0.05; done",
    ]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let ready = bun.rootfs.join("tmp/exec-ready");
    let start = std::time::Instant::now();
    while !ready.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "exec never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = sigterm_and_wait(&mut child, "exec");
    assert_eq!(status.code(), Some(9));
    assert_eq!(rt.status(&id), "running");
    rt.run(["delete", "--force", &id]).ok();
    assert_no_leftovers(&rt, &id, Some(&marker));
}

/// Sends SIGTERM to `child` (a foreground pea-runtime) and waits at most 10 s for it to exit.
fn sigterm_and_wait(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
