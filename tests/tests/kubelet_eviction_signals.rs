//! pea-kubelet's eviction signals beyond the periodic observation, on one real node
//! (pea-shim, pea-control, kubectl), without touching the host's memory or disk:
//!
//! - kernelMemcgNotification: kubeReserved leaves the pods' cgroup (kubepods, the test node's
//!   own cgroup root) 160 MiB, the hard memory.available threshold of 100 MiB is copied to
//!   allocatableMemory.available, and the eviction manager's housekeeping period is 10
//!   minutes. A pod putting 110 MiB in a memory-backed emptyDir crosses the threshold (at a
//!   60 MiB working set, well before the pod is done writing); the
//!   kernel's memcg notification (an eventfd on the cgroup's memory.usage_in_bytes) starts a
//!   round at once and the pod is evicted — the log shows the crossing, then the eviction,
//!   with no housekeeping round between the first one and the eviction. On a cgroup v2 host
//!   kubelet has no such notification: pea-kubelet says so and the test checks that.
//! - containerfs.available / containerfs.inodesFree (kubelet 1.32): accepted in evictionHard,
//!   validated as every threshold, and — as kubelet does, the containers' writable layers
//!   being on the image filesystem — not taken as written but copied from nodefs (one
//!   filesystem, as on this test node) or imagefs (a dedicated one): a containerfs.available
//!   of 100 % (always crossed if honoured) leaves the node without DiskPressure and the
//!   kubelet logs kubelet's complaint; 101 % is refused at start.

use std::time::Duration;

use pea_tests::eviction_node::{
    cgroup_v2_only, container, kubepods_memory_limit, mem_total, pod, set_config, status,
    wait_failed, wait_node,
};
use pea_tests::kubelet_node::{tail, KubeletNode};

#[test]
fn a_memcg_notification_evicts_before_the_next_housekeeping_round() {
    let mut n = KubeletNode::new("node-evmemcg").expect("node");
    let reserved_kib = (mem_total() >> 10) - (160 << 10);
    set_config(
        &n,
        &format!(
            "evictionHard: {{memory.available: 100Mi}}\nkubeReserved: {{memory: {reserved_kib}Ki}}\n\
             kernelMemcgNotification: true\n"
        ),
    );
    // Only the first housekeeping round happens within the test.
    n.kubelet_args
        .extend(["--eviction-monitoring-period".into(), "10m".into()]);
    n.start_kubelet().expect("kubelet");
    if cgroup_v2_only() {
        n.wait_until("the v2 notice", Duration::from_secs(20), || {
            n.kubelet_log()
                .contains("cgroup v2 has no memory usage thresholds")
        });
        return;
    }
    n.wait_until("kubepods limited", Duration::from_secs(10), || {
        kubepods_memory_limit(&n) == Some(160 << 20)
    });
    // The notifier is armed by the first round (after the pods are synced).
    n.wait_until(
        "the allocatable notifier armed",
        Duration::from_secs(30),
        || {
            n.kubelet_log().lines().any(|l| {
                l.contains("eviction manager: setting notifier")
                    && l.contains("hard allocatable memory eviction threshold")
            })
        },
    );
    n.apply(&pod(
        &n,
        "hog",
        &[container(
            "app",
            &n.image,
            "dd if=/dev/zero of=/m/f bs=1M count=110; sleep 300",
            None,
            "    volumeMounts: [{name: m, mountPath: /m}]\n",
        )],
        "  terminationGracePeriodSeconds: 30\n  volumes: [{name: m, emptyDir: {medium: Memory, sizeLimit: 128Mi}}]\n",
    ));
    let (pods, _) = wait_failed(&n, &["hog"], Some("MemoryPressure"));
    let st = &pods[0]["status"];
    assert_eq!(st["reason"], "Evicted", "{st}");
    let msg = st["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with(
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: "
        ),
        "{msg}"
    );
    // The order of events in the kubelet's log: the first housekeeping round, the crossing
    // reported by the kernel, the eviction it started — and no housekeeping round between.
    let log = n.kubelet_log();
    let lines: Vec<&str> = log.lines().collect();
    let at = |what: &dyn Fn(&str) -> bool| lines.iter().position(|l| what(l));
    let crossed = at(&|l: &str| {
        l.contains("eviction manager: hard allocatable memory eviction threshold crossed")
    })
    .unwrap_or_else(|| panic!("no crossing reported:\n{}", tail(&log, 60)));
    let evicted = at(&|l: &str| l.contains("evicting a pod"))
        .unwrap_or_else(|| panic!("no eviction logged:\n{}", tail(&log, 60)));
    assert!(crossed < evicted, "{}", tail(&log, 60));
    assert!(
        lines[evicted].contains("memcg notification")
            && lines[evicted].contains("allocatableMemory.available"),
        "{}",
        lines[evicted]
    );
    let housekeeping = lines[..evicted]
        .iter()
        .filter(|l| l.contains("eviction manager: synchronize") && l.contains("housekeeping"))
        .count();
    assert_eq!(housekeeping, 1, "{}", tail(&log, 60));
}

#[test]
fn containerfs_thresholds_are_accepted_but_follow_nodefs_or_imagefs() {
    let mut n = KubeletNode::new("node-evcfs").expect("node");
    set_config(
        &n,
        "evictionHard: {memory.available: 1Mi, nodefs.available: 1Mi, imagefs.available: 1Mi, \
         containerfs.available: \"100%\", containerfs.inodesFree: \"1%\"}\n",
    );
    n.start_kubelet().expect("kubelet");
    wait_node(&n, "Ready", Duration::from_secs(30), |v| {
        status(v, "Ready") == Some("True")
    });
    let node = n.get_json(&["node", &n.name]).expect("node");
    assert_eq!(
        status(&node, "DiskPressure"),
        Some("False"),
        "containerfs.available 100% is ignored (nodefs's or imagefs's 1Mi applies): {}\n{}",
        node["status"]["conditions"],
        tail(&n.kubelet_log(), 40)
    );
    let log = n.kubelet_log();
    assert!(
        log.contains("found conflicting containerfs eviction. Ignoring.")
            && log.contains("found containerfs.available for hard eviction. ignoring")
            && log.contains("found containerfs.inodesFree for hard eviction. ignoring"),
        "{}",
        tail(&log, 40)
    );
    // Validated like any threshold: a bad value is refused at start.
    n.kill_kubelet();
    set_config(
        &n,
        "evictionHard: {memory.available: 1Mi, containerfs.available: \"101%\"}\n",
    );
    let out = std::process::Command::new(pea_tests::bins::workspace_binary(
        "pea-kubelet",
        "PEA_KUBELET",
    ))
    .arg("--config")
    .arg(&n.kubelet_config)
    .arg("--kubeconfig")
    .arg(n.dir.path().join("missing.kubeconfig"))
    .output()
    .expect("pea-kubelet");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("eviction percentage threshold containerfs.available must be <= 100%: 101%"),
        "{err}"
    );
}
