//! `pea up --etcd --nodes 1`: pea-control's store on a real 3-member etcd cluster (Debian's
//! etcd, in node 0's namespace on its loopback) — the members form one cluster, the API's
//! objects are etcd keys, a write still succeeds with one member killed (quorum 2 of 3) — and
//! `pea down` removes the members and their data with the rest of the cluster.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use pea_tests::cluster::{
    down_leaves_nothing, pea, pids, require_cluster_programs, supervisor_held, Down, Kubectl,
};
use pea_tests::leakguard::Snapshot;
use pea_tests::netlab::random_suffix;
use pea_tests::privileged::require_root;
use serde_json::Value;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: 172.30.0.1:5000/library/busybox:v1
        command: ["/bin/sh", "-c", "exec sleep 3600"]
"#;

/// A POST to etcd's JSON gateway of the member on `port`, from node 0's namespace.
fn etcd_post(name: &str, port: u16, path: &str, body: &str) -> Option<Value> {
    let out = Command::new("timeout")
        .args(["10", "ip", "netns", "exec", &format!("pea-{name}-0")])
        .args(["busybox", "wget", "-q", "-O", "-", "--post-data", body])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .stdin(Stdio::null())
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Every key in the etcd cluster, read through the member on `port`.
fn etcd_keys(name: &str, port: u16) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    // key "\0" with range_end "\0": every key.
    etcd_post(
        name,
        port,
        "/v3/kv/range",
        r#"{"key": "AA==", "range_end": "AA==", "keys_only": true}"#,
    )
    .and_then(|v| v["kvs"].as_array().cloned())
    .unwrap_or_default()
    .iter()
    .filter_map(|kv| b64.decode(kv["key"].as_str()?).ok())
    .map(|k| String::from_utf8_lossy(&k).into_owned())
    .collect()
}

fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn pea_up_etcd_keeps_the_cluster_in_a_three_member_etcd_and_down_removes_it() {
    require_root();
    require_cluster_programs(&["etcd"]);
    let name = format!("e{}", random_suffix(3));
    let before = Snapshot::take().expect("snapshot");
    let guard = Down(name.clone());
    let out = pea(&["up", "--etcd", "--nodes", "1", "--name", &name]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pea up --etcd failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("etcd: 3 members") && stdout.contains("store: etcd"),
        "{stdout}"
    );
    let kubeconfig = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pea up: export KUBECONFIG="))
        .expect("pea up prints the KUBECONFIG")
        .to_string();
    let k = Kubectl::new(kubeconfig.into());

    // One etcd cluster of three members, each answering.
    let list = etcd_post(&name, 2379, "/v3/cluster/member/list", "{}").expect("member list");
    let mut members: Vec<String> = list["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    members.sort();
    assert_eq!(members, ["etcd-0", "etcd-1", "etcd-2"], "{list}");

    // The API's objects live in etcd: the Deployment is a key there, its pod runs.
    let applied = k.run(&["apply", "-f", "-"], Some(DEPLOYMENT));
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let running = wait_for(Duration::from_secs(60), || {
        let out = k.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ]);
        (out.trim() == "Running").then_some(())
    });
    assert!(
        running.is_some(),
        "{}",
        k.ok(&["get", "pods", "-o", "wide"])
    );
    let keys = etcd_keys(&name, 22379);
    assert!(
        keys.iter()
            .any(|k| k.contains("deployments") && k.ends_with("/default/web")),
        "no Deployment key among {} etcd keys: {:?}",
        keys.len(),
        keys.iter().take(20).collect::<Vec<_>>()
    );

    // Quorum: with one member killed, writes still succeed.
    let run_dir = PathBuf::from("/run/pea").join(&name);
    let victim: u32 = std::fs::read_to_string(run_dir.join("etcd-2.pid"))
        .expect("etcd-2's pid file")
        .trim()
        .parse()
        .expect("pid");
    // pea supervise held meanwhile, or it would start the member again at once.
    let wrote = supervisor_held(&name, || {
        let _ = Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status();
        wait_for(Duration::from_secs(20), || {
            k.run(
                &["create", "configmap", "after-kill", "--from-literal=a=b"],
                None,
            )
            .status
            .success()
            .then_some(())
        })
    });
    assert!(wrote.is_some(), "a write with 2 of 3 etcd members");
    assert!(etcd_keys(&name, 2379)
        .iter()
        .any(|k| k.contains("configmaps") && k.ends_with("/default/after-kill")));

    // pea down: members, data and everything else gone (no etcd member either).
    down_leaves_nothing(&name, &before, guard, &pids(&run_dir));
    let etcds: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("etcd ") && c.contains(&format!("/clusters/{name}/")))
        .collect();
    assert!(etcds.is_empty(), "etcd members left: {etcds:?}");
}
