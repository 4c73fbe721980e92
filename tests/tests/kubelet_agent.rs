//! pea-agent as a program: the node's programs in one process stop together — on SIGTERM with
//! status 0, or when one of them fails, with a non-zero status naming it — and the shim removes
//! its socket either way. Run inside a network namespace the test makes (pea-proxy would program
//! nftables there, and the shim's streaming server listens there).
//!
//! A whole node on pea-agent (kubelet, shim, flanneld, proxy against a real API server) is what
//! `cluster_up`, `cluster_resilience` and `cluster_prometheus` run.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pea_tests::bins::workspace_binary;
use pea_tests::netlab::Netns;
use pea_tests::privileged::require_root;

/// `pea-agent` in `ns` with a shim rooted in `dir`, plus `extra` agent flags.
fn agent(ns: &Netns, dir: &Path, extra: &[&str]) -> Child {
    let shim = |k: &str, v: &Path| format!("--shim-arg={k}={}", v.display());
    std::fs::create_dir_all(dir.join("net.d")).unwrap();
    Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(workspace_binary("pea-agent", "PEA_AGENT"))
        .arg(shim("socket", &dir.join("cri.sock")))
        .arg(shim("root", &dir.join("root")))
        .arg(shim("state", &dir.join("state")))
        .arg(shim("runtime-root", &dir.join("runtime")))
        .arg(shim("cni-conf-dir", &dir.join("net.d")))
        .arg(shim(
            "runtime",
            &workspace_binary("pea-runtime", "PEA_RUNTIME"),
        ))
        .arg(shim(
            "monitor",
            &workspace_binary("pea-monitor", "PEA_MONITOR"),
        ))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting pea-agent")
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Waits (at most `limit`) for the agent to exit; its status and stderr. Killed if it does not.
fn finish(mut child: Child, limit: Duration) -> (Option<i32>, String) {
    let mut status = None;
    wait_for(limit, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    (
        status.and(out.status.code()),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sigterm_stops_every_component_with_status_zero_and_the_shim_removes_its_socket() {
    require_root();
    let ns = Netns::new("agent").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let child = agent(&ns, dir.path(), &["--disable", "kubelet,flanneld,proxy"]);
    let socket = dir.path().join("cri.sock");
    let up = wait_for(Duration::from_secs(20), || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    // `ip netns exec` execs the agent: the child's pid is the agent's.
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let (status, err) = finish(child, Duration::from_secs(20));
    assert!(up, "the shim's socket never answered:\n{err}");
    assert_eq!(status, Some(0), "{err}");
    assert!(!socket.exists(), "the socket is left behind:\n{err}");
}

#[test]
fn a_failing_component_stops_the_agent_naming_it_and_the_others_stop_cleanly() {
    require_root();
    let ns = Netns::new("agent").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.kubeconfig");
    let child = agent(
        &ns,
        dir.path(),
        &[
            "--disable",
            "kubelet,flanneld",
            &format!("--proxy-arg=kubeconfig={}", missing.display()),
            "--proxy-arg=hostname-override=n1",
            "--proxy-arg=metrics-bind-address=0",
            "--proxy-arg=healthz-bind-address=0",
        ],
    );
    let (status, err) = finish(child, Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s != 0),
        "a failed pea-proxy must fail the agent: {status:?}\n{err}"
    );
    assert!(
        err.contains("pea-proxy") && err.contains("no-such.kubeconfig"),
        "the error names the component and its cause:\n{err}"
    );
    assert!(
        !dir.path().join("cri.sock").exists(),
        "the shim was not stopped cleanly (socket left):\n{err}"
    );
}

#[test]
fn bad_flags_of_a_component_are_refused_before_anything_starts() {
    require_root();
    let ns = Netns::new("agent").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let child = agent(
        &ns,
        dir.path(),
        &[
            "--disable",
            "flanneld,proxy",
            "--kubelet-arg=no-such-flag=1",
        ],
    );
    let (status, err) = finish(child, Duration::from_secs(20));
    assert!(status.is_some_and(|s| s != 0), "{status:?}\n{err}");
    assert!(
        err.contains("pea-kubelet (given with --kubelet-arg)") && err.contains("no-such-flag"),
        "{err}"
    );
    // Refused while planning: the shim never opened its state or socket.
    assert!(!dir.path().join("cri.sock").exists(), "{err}");
    assert!(!dir.path().join("state").exists(), "{err}");
}
