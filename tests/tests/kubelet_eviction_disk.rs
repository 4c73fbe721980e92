//! pea-kubelet's eviction manager on disk and PID signals, on one real node (pea-shim,
//! pea-control, kubectl), without filling the host's disk or process table:
//!
//! - nodefs: the kubelet's root dir is a 64 MiB tmpfs the test mounts (and unmounts after the
//!   node is gone); a pod filling its emptyDir takes nodefs.available below evictionHard, the
//!   node reports DiskPressure, the pod (the largest user of local storage) is evicted with
//!   kubelet's message, its emptyDir is released, a bystander keeps running, and DiskPressure
//!   clears once evictionPressureTransitionPeriod has passed.
//! - imagefs: with imagefs.available at 100 % (always crossed) the eviction manager first
//!   reclaims node-level resources — the dead containers of a finished pod, which ordinary
//!   container GC keeps while the pod exists — through the kubelet's container GC.
//! - pid.available: a threshold just below what is available now, crossed when a pod forks
//!   a few hundred sleeping processes (this host's pid_max is 32768, tasks number in the
//!   hundreds); the node reports PIDPressure and that pod — not the bystander — is evicted
//!   (kubelet's PID ranking: priority, then tasks in the pod cgroup), through a soft
//!   threshold's grace period and evictionMaxPodGracePeriod.

use std::time::{Duration, Instant};

use pea_tests::eviction_node::{set_config, status, wait_failed, wait_node};
use pea_tests::kubelet_node::{tail, KubeletNode};
use pea_tests::tmpfs::Tmpfs;
use serde_json::Value;

/// Polls until pod `name` is Failed, noting whether the node showed `pressure` meanwhile.
fn failed(n: &KubeletNode, name: &str, pressure: &str) -> (Value, bool) {
    let (mut pods, saw) = wait_failed(n, &[name], Some(pressure));
    (pods.remove(0), saw)
}

fn pod(n: &KubeletNode, name: &str, script: &str, extra: &str) -> String {
    pea_tests::eviction_node::script_pod(n, name, script, extra)
}

#[test]
fn nodefs_pressure_evicts_the_pod_filling_its_emptydir() {
    let fs = Tmpfs::new(64);
    let mut n = KubeletNode::new("node-evdisk").expect("node");
    n.root_dir = fs.path().to_path_buf();
    set_config(
        &n,
        "evictionHard: {nodefs.available: 24Mi}\nevictionPressureTransitionPeriod: 4s\n",
    );
    n.start_kubelet().expect("kubelet");
    wait_node(
        &n,
        "Ready without DiskPressure",
        Duration::from_secs(30),
        |v| status(v, "Ready") == Some("True") && status(v, "DiskPressure") == Some("False"),
    );
    let node = n.get_json(&["node", &n.name]).expect("node");
    assert_eq!(
        node["status"]["capacity"]["ephemeral-storage"], "65536Ki",
        "nodefs is the root dir's filesystem: {}",
        node["status"]["capacity"]
    );
    n.apply(&pod(&n, "bystander", "sleep 300", ""));
    n.wait_pod("bystander", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Running"
    });
    n.apply(&pod(
        &n,
        "filler",
        "dd if=/dev/zero of=/data/fill bs=1M count=48; sleep 300",
        "    volumeMounts: [{name: data, mountPath: /data}]\n  volumes: [{name: data, emptyDir: {}}]\n",
    ));
    // Watch both the node and the pod: DiskPressure must show while the filler is there.
    let (filler, saw_pressure) = failed(&n, "filler", "DiskPressure");
    assert_eq!(
        filler["status"]["reason"], "Evicted",
        "{}",
        filler["status"]
    );
    let msg = filler["status"]["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with(
            "The node was low on resource: ephemeral-storage. Threshold quantity: 24Mi, available: "
        ),
        "{msg}"
    );
    let ev = n.events("filler");
    assert!(ev.iter().any(|(r, m)| r == "Evicted" && m == msg), "{ev:?}");
    // The pressure is reported (it lasts at least the transition period after eviction).
    wait_node(&n, "under DiskPressure", Duration::from_secs(5), |v| {
        saw_pressure || status(v, "DiskPressure") == Some("True")
    });
    // The evicted pod's emptyDir is released, so the pressure clears after the period.
    let uid = filler["metadata"]["uid"].as_str().expect("uid");
    assert!(
        !n.root_dir.join("pods").join(uid).join("volumes").exists(),
        "the evicted pod's volumes are still on the node"
    );
    wait_node(&n, "clear of DiskPressure", Duration::from_secs(40), |v| {
        status(v, "DiskPressure") == Some("False")
    });
    let b = n.get_json(&["pod", "bystander"]).expect("bystander");
    assert_eq!(b["status"]["phase"], "Running", "{}", b["status"]);
    drop(n);
    drop(fs);
}

#[test]
fn imagefs_pressure_reclaims_dead_containers_first() {
    let mut n = KubeletNode::new("node-evimg").expect("node");
    set_config(&n, "evictionHard: {memory.available: 1Mi}\n");
    n.start_kubelet().expect("kubelet");
    n.apply(&pod(&n, "done", "true", "  restartPolicy: Never\n"));
    n.wait_pod("done", Duration::from_secs(40), |p| {
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(
        n.cri_containers("io.kubernetes.pod.name", "done").len(),
        1,
        "the finished pod keeps its container (for logs)"
    );
    // The same node under imagefs pressure (available is always below 100 % of capacity).
    n.kill_kubelet();
    set_config(&n, "evictionHard: {imagefs.available: \"100%\"}\n");
    n.start_kubelet().expect("kubelet");
    wait_node(&n, "under DiskPressure", Duration::from_secs(30), |v| {
        status(v, "DiskPressure") == Some("True")
    });
    let start = Instant::now();
    while !n
        .cri_containers("io.kubernetes.pod.name", "done")
        .is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "dead container not reclaimed: {}",
            tail(&n.kubelet_log(), 60)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The reclaim logs once its container pass returns, which can be after the test sees the
    // container gone: wait for the line (bounded) rather than read the log once.
    let start = Instant::now();
    while !n
        .kubelet_log()
        .contains("eviction manager: removed dead containers")
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the dead container went, but not through the eviction manager's reclaim: {}",
            tail(&n.kubelet_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The pod object stays (Succeeded); only its dead container was reclaimed.
    let p = n.get_json(&["pod", "done"]).expect("done");
    assert_eq!(p["status"]["phase"], "Succeeded");
}

/// (pid_max or threads-max, whichever is smaller) minus the tasks running now.
fn pids_available() -> u64 {
    let read = |p: &str| -> u64 {
        std::fs::read_to_string(p)
            .expect(p)
            .trim()
            .parse()
            .expect(p)
    };
    let max = read("/proc/sys/kernel/pid_max").min(read("/proc/sys/kernel/threads-max"));
    let loadavg = std::fs::read_to_string("/proc/loadavg").expect("loadavg");
    let tasks: u64 = loadavg
        .split_whitespace()
        .nth(3)
        .and_then(|f| f.split('/').nth(1))
        .and_then(|t| t.parse().ok())
        .expect("tasks");
    max - tasks
}

#[test]
fn pid_pressure_evicts_the_pod_with_most_tasks_after_the_soft_grace_period() {
    let mut n = KubeletNode::new("node-evpid").expect("node");
    n.start_kubelet().expect("kubelet");
    n.apply(&pod(&n, "bystander", "sleep 300", ""));
    n.wait_pod("bystander", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Running"
    });
    // Restart the kubelet with a soft threshold 300 tasks below what is available now; the
    // bystander is admitted again (no pressure yet).
    n.kill_kubelet();
    let threshold = pids_available() - 300;
    set_config(
        &n,
        &format!(
            "evictionHard: {{memory.available: 1Mi}}\nevictionSoft: {{pid.available: \"{threshold}\"}}\n\
             evictionSoftGracePeriod: {{pid.available: 2s}}\nevictionMaxPodGracePeriod: 1\n\
             evictionPressureTransitionPeriod: 4s\n"
        ),
    );
    n.start_kubelet().expect("kubelet");
    wait_node(
        &n,
        "Ready without PIDPressure",
        Duration::from_secs(30),
        |v| status(v, "Ready") == Some("True") && status(v, "PIDPressure") == Some("False"),
    );
    // 600 sleeping processes (each a few KiB of kernel memory; the pod's cgroup counts them).
    n.apply(&pod(
        &n,
        "forker",
        "i=0; while [ $i -lt 600 ]; do sleep 300 & i=$((i+1)); done; wait",
        "  terminationGracePeriodSeconds: 30\n",
    ));
    let (forker, saw_pressure) = failed(&n, "forker", "PIDPressure");
    assert_eq!(
        forker["status"]["reason"], "Evicted",
        "{}",
        forker["status"]
    );
    let msg = forker["status"]["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with("The node was low on resource: pids. Threshold quantity: ")
            && msg.ends_with(". "),
        "{msg}"
    );
    wait_node(&n, "under PIDPressure", Duration::from_secs(5), |v| {
        saw_pressure || status(v, "PIDPressure") == Some("True")
    });
    wait_node(&n, "clear of PIDPressure", Duration::from_secs(40), |v| {
        status(v, "PIDPressure") == Some("False")
    });
    let b = n.get_json(&["pod", "bystander"]).expect("bystander");
    assert_eq!(b["status"]["phase"], "Running", "{}", b["status"]);
}

#[test]
fn a_soft_threshold_without_its_grace_period_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("kubelet.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
         evictionSoft: {nodefs.available: 1Gi}\n",
    )
    .expect("config");
    let out = std::process::Command::new(pea_tests::bins::workspace_binary(
        "pea-kubelet",
        "PEA_KUBELET",
    ))
    .arg("--config")
    .arg(&cfg)
    .arg("--kubeconfig")
    .arg(dir.path().join("missing.kubeconfig"))
    .output()
    .expect("pea-kubelet");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "grace period must be specified for the soft eviction threshold nodefs.available"
        ),
        "{err}"
    );
}
