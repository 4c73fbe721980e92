//! What the kubelet eviction tests (tests/tests/kubelet_eviction*.rs) share on top of
//! [`KubeletNode`]: the node's config with its eviction settings replaced, node and pod
//! conditions, waiting for the node or for pods to fail, and pods made of shell scripts.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kubelet_node::{tail, KubeletNode};

/// The node's kubelet config with its `evictionHard:` line dropped and `extra` (YAML lines)
/// appended (kubelet: a given evictionHard replaces all the defaults).
pub fn set_config(n: &KubeletNode, extra: &str) {
    let cfg = std::fs::read_to_string(&n.kubelet_config).expect("kubelet config");
    let mut cfg: String = cfg
        .lines()
        .filter(|l| !l.starts_with("evictionHard:"))
        .map(|l| format!("{l}\n"))
        .collect();
    cfg.push_str(extra);
    std::fs::write(&n.kubelet_config, cfg).expect("kubelet config");
}

/// The condition of type `t` of a node or pod object.
pub fn condition<'a>(v: &'a Value, t: &str) -> Option<&'a Value> {
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

/// The status ("True", "False") of condition `t`.
pub fn status<'a>(v: &'a Value, t: &str) -> Option<&'a str> {
    condition(v, t).and_then(|c| c["status"].as_str())
}

/// Polls the node until `pred` holds (panics with the kubelet's log after `timeout`).
pub fn wait_node(n: &KubeletNode, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) {
    let start = Instant::now();
    loop {
        let node = n.get_json(&["node", &n.name]);
        if node.as_ref().is_some_and(&pred) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "node never {what}: {node:?}\n{}",
            tail(&n.kubelet_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Polls until every pod in `names` is Failed (at most 50 s); returns them in that order and
/// whether the node showed condition `pressure` (if given) meanwhile.
pub fn wait_failed(n: &KubeletNode, names: &[&str], pressure: Option<&str>) -> (Vec<Value>, bool) {
    let start = Instant::now();
    let mut saw_pressure = false;
    loop {
        if let (Some(p), Some(node)) = (pressure, n.get_json(&["node", &n.name])) {
            saw_pressure |= status(&node, p) == Some("True");
        }
        let pods: Vec<Value> = names
            .iter()
            .map(|p| n.get_json(&["pod", p]).expect("pod"))
            .collect();
        if pods.iter().all(|p| p["status"]["phase"] == "Failed") {
            return (pods, saw_pressure);
        }
        assert!(
            start.elapsed() < Duration::from_secs(50),
            "not all evicted: {:?}\n{}",
            pods.iter()
                .map(|p| (
                    &p["metadata"]["name"],
                    &p["status"]["phase"],
                    &p["status"]["message"]
                ))
                .collect::<Vec<_>>(),
            tail(&n.kubelet_log(), 60)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// One container running `script`, with an optional ephemeral-storage limit and YAML mounts.
pub fn container(
    name: &str,
    image: &str,
    script: &str,
    limit: Option<&str>,
    mounts: &str,
) -> String {
    let mut c =
        format!("  - name: {name}\n    image: {image}\n    command: [sh, -c, \"{script}\"]\n");
    if let Some(l) = limit {
        c.push_str(&format!(
            "    resources: {{limits: {{ephemeral-storage: {l}}}}}\n"
        ));
    }
    c.push_str(mounts);
    c
}

/// A pod bound to the node with `containers` (from [`container`]) and `extra` spec lines.
pub fn pod(n: &KubeletNode, name: &str, containers: &[String], extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  nodeName: {}\n  automountServiceAccountToken: false\n  containers:\n{}{extra}",
        n.name,
        containers.concat()
    )
}

/// A pod whose one container `app` runs `script` (the node's image), `extra` spec lines after.
pub fn script_pod(n: &KubeletNode, name: &str, script: &str, extra: &str) -> String {
    pod(
        n,
        name,
        &[container("app", &n.image, script, None, "")],
        extra,
    )
}

/// The host's MemTotal in bytes.
pub fn mem_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("MemTotal")
        * 1024
}

/// A file of the node's kubepods cgroup, trimmed: from the v1 hierarchy `controller` (e.g.
/// "memory"), or from the unified hierarchy on a cgroup v2 host.
pub fn kubepods_file(n: &KubeletNode, controller: &str, file: &str) -> Option<String> {
    let rel = format!("{}/kubepods/{file}", n.node.cgroup_root);
    [
        format!("/sys/fs/cgroup/{controller}/{rel}"),
        format!("/sys/fs/cgroup/{rel}"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim().to_string())
}

/// The kubepods memory limit in bytes (v1 memory.limit_in_bytes, v2 memory.max), once written.
pub fn kubepods_memory_limit(n: &KubeletNode) -> Option<u64> {
    kubepods_file(n, "memory", "memory.limit_in_bytes")
        .or_else(|| kubepods_file(n, "memory", "memory.max"))
        .and_then(|v| v.parse().ok())
}

/// Whether this host's cgroups are the unified (v2) hierarchy only.
pub fn cgroup_v2_only() -> bool {
    !std::path::Path::new("/sys/fs/cgroup/memory").exists()
        && std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}
