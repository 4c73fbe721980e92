//! pea-kubelet's eviction manager beyond the node-wide thresholds, on one real node (pea-shim,
//! pea-control, kubectl), without filling the host's disk or memory:
//!
//! - local ephemeral storage limits (localStorageCapacityIsolation, on by default): the
//!   kubelet's root dir is a 64 MiB tmpfs; a pod writing past its emptyDir's sizeLimit, a pod
//!   whose containers' writable layers and volumes together pass the sum of their
//!   `ephemeral-storage` limits, and a pod with one container logging past its own limit are
//!   each evicted with kubelet's message (and no DisruptionTarget condition: kubelet sets none
//!   for these), while a pod within its limits keeps running.
//! - allocatableMemory.available: kubeReserved leaves the pods 160 MiB of node allocatable
//!   (the kubepods cgroup's memory limit, as kubelet writes it), so
//!   the pods' cgroup crosses the (copied) hard memory.available threshold of 64 MiB once a pod
//!   holds ~100 MiB in a memory-backed emptyDir, while the host's own memory.available stays
//!   far above it; the node reports MemoryPressure and that pod is evicted with kubelet's
//!   memory message and the DisruptionTarget condition (reason TerminationByKubelet).

use std::time::{Duration, Instant};

use pea_tests::eviction_node::{
    condition, container, kubepods_memory_limit, mem_total, pod, set_config, status, wait_failed,
};
use pea_tests::kubelet_node::{tail, KubeletNode};
use pea_tests::tmpfs::Tmpfs;

/// Pods here get 30 s to stop: what ends them early is the eviction's own grace.
const GRACE: &str = "  terminationGracePeriodSeconds: 30\n";

#[test]
fn pods_over_their_local_storage_limits_are_evicted_with_kubelets_messages() {
    let fs = Tmpfs::new(64);
    let mut n = KubeletNode::new("node-evls").expect("node");
    n.root_dir = fs.path().to_path_buf();
    // Only a memory threshold the host never crosses: what evicts here is the limits alone.
    set_config(&n, "evictionHard: {memory.available: 1Mi}\n");
    n.start_kubelet().expect("kubelet");
    let img = n.image.clone();
    let data = "    volumeMounts: [{name: data, mountPath: /data}]\n";
    // emptyDir sizeLimit 2Mi, 4 MiB written.
    n.apply(&pod(
        &n,
        "over-emptydir",
        &[container(
            "app",
            &img,
            "dd if=/dev/zero of=/data/f bs=1M count=4; sleep 300",
            None,
            data,
        )],
        &[
            GRACE,
            "  volumes: [{name: data, emptyDir: {sizeLimit: 2Mi}}]\n",
        ]
        .concat(),
    ));
    // Two containers with 2Mi each; one fills a shared emptyDir (no sizeLimit) with 5 MiB:
    // no container is over its own limit (its logs and writable layer), the pod is over 4Mi.
    n.apply(&pod(
        &n,
        "over-pod",
        &[
            container(
                "a",
                &img,
                "dd if=/dev/zero of=/data/f bs=1M count=5; sleep 300",
                Some("2Mi"),
                data,
            ),
            container("b", &img, "sleep 300", Some("2Mi"), ""),
        ],
        &[GRACE, "  volumes: [{name: data, emptyDir: {}}]\n"].concat(),
    ));
    // A container logging ~3 MiB past its 1Mi limit, next to one with room (the pod's sum,
    // 33Mi, is not reached). The writable layer is on the runtime's filesystem, another
    // device than the root dir (a dedicated imagefs): logs are what count, as kubelet's.
    n.apply(&pod(
        &n,
        "over-container",
        &[
            container(
                "chatty",
                &img,
                "yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -c 3145728; sleep 300",
                Some("1Mi"),
                "",
            ),
            container("quiet", &img, "sleep 300", Some("32Mi"), ""),
        ],
        GRACE,
    ));
    // Within every limit: keeps running.
    n.apply(&pod(
        &n,
        "within",
        &[container(
            "app",
            &img,
            "dd if=/dev/zero of=/data/f bs=1M count=1; sleep 300",
            Some("16Mi"),
            data,
        )],
        &[
            GRACE,
            "  volumes: [{name: data, emptyDir: {sizeLimit: 8Mi}}]\n",
        ]
        .concat(),
    ));
    let (pods, _) = wait_failed(&n, &["over-emptydir", "over-pod", "over-container"], None);
    let want = [
        "Usage of EmptyDir volume \"data\" exceeds the limit \"2Mi\". ",
        "Pod ephemeral local storage usage exceeds the total limit of containers 4Mi. ",
        "Container chatty exceeded its local ephemeral storage limit \"1Mi\". ",
    ];
    for (p, msg) in pods.iter().zip(want) {
        let name = p["metadata"]["name"].as_str().unwrap_or("");
        assert_eq!(p["status"]["reason"], "Evicted", "{name}: {}", p["status"]);
        assert_eq!(p["status"]["message"], msg, "{name}: {}", p["status"]);
        assert!(
            condition(p, "DisruptionTarget").is_none(),
            "kubelet sets no DisruptionTarget for local storage evictions: {}",
            p["status"]
        );
        let ev = n.events(name);
        assert!(
            ev.iter().any(|(r, m)| r == "Evicted" && m == msg),
            "{name}: {ev:?}"
        );
        let uid = p["metadata"]["uid"].as_str().expect("uid");
        assert!(
            !n.root_dir.join("pods").join(uid).join("volumes").exists(),
            "{name}'s volumes are still on the node"
        );
    }
    let w = n.get_json(&["pod", "within"]).expect("within");
    assert_eq!(w["status"]["phase"], "Running", "{}", w["status"]);
    drop(n);
    drop(fs);
}

#[test]
fn the_pods_cgroup_over_node_allocatable_evicts_with_a_disruption_target() {
    let mut n = KubeletNode::new("node-evalloc").expect("node");
    // Node allocatable for the pods' cgroup: 160 MiB (capacity - kubeReserved); the hard
    // memory.available threshold of 64 MiB is copied to allocatableMemory.available.
    let reserved_kib = (mem_total() >> 10) - (160 << 10);
    set_config(
        &n,
        &format!(
            "evictionHard: {{memory.available: 64Mi}}\nkubeReserved: {{memory: {reserved_kib}Ki}}\n"
        ),
    );
    n.start_kubelet().expect("kubelet");
    // enforceNodeAllocatable ["pods"] (the default): kubepods is limited to node allocatable,
    // capacity − kubeReserved (the eviction threshold is not taken off the cgroup's limit).
    let want = mem_total() - (reserved_kib << 10);
    n.wait_until(
        "kubepods limited to node allocatable",
        Duration::from_secs(10),
        || kubepods_memory_limit(&n) == Some(want),
    );
    assert_eq!(want, 160 << 20);
    let img = n.image.clone();
    n.apply(&pod(
        &n,
        "bystander",
        &[container("app", &img, "sleep 300", None, "")],
        GRACE,
    ));
    n.wait_pod("bystander", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Running"
    });
    // ~110 MiB in a memory-backed emptyDir, charged to the pod's cgroup.
    n.apply(&pod(
        &n,
        "hog",
        &[container(
            "app",
            &img,
            "dd if=/dev/zero of=/m/f bs=1M count=110; sleep 300",
            None,
            "    volumeMounts: [{name: m, mountPath: /m}]\n",
        )],
        &[
            GRACE,
            "  volumes: [{name: m, emptyDir: {medium: Memory, sizeLimit: 128Mi}}]\n",
        ]
        .concat(),
    ));
    let start = Instant::now();
    let mut saw_pressure = false;
    let hog = loop {
        if let Some(node) = n.get_json(&["node", &n.name]) {
            saw_pressure |= status(&node, "MemoryPressure") == Some("True");
        }
        let p = n.get_json(&["pod", "hog"]).expect("hog");
        if p["status"]["phase"] == "Failed" {
            break p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(50),
            "hog not evicted: {}\n{}",
            p["status"],
            tail(&n.kubelet_log(), 60)
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let st = &hog["status"];
    assert_eq!(st["reason"], "Evicted", "{st}");
    let msg = st["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with(
            "The node was low on resource: memory. Threshold quantity: 64Mi, available: "
        ) && msg.contains("Container app was using ")
            && msg.ends_with(", request is 0, has larger consumption of memory. "),
        "{msg}"
    );
    let dt = condition(&hog, "DisruptionTarget").expect("DisruptionTarget condition");
    assert_eq!(dt["status"], "True", "{dt}");
    assert_eq!(dt["reason"], "TerminationByKubelet", "{dt}");
    assert_eq!(dt["message"], msg, "{dt}");
    assert!(dt["lastTransitionTime"].is_string(), "{dt}");
    // The signal was the pods' cgroup's, not the host's memory (which has far more free).
    let log = n.kubelet_log();
    assert!(
        log.lines()
            .any(|l| l.contains("evicting a pod") && l.contains("allocatableMemory.available")),
        "{}",
        tail(&log, 40)
    );
    let node = n.get_json(&["node", &n.name]).expect("node");
    assert!(
        saw_pressure || status(&node, "MemoryPressure") == Some("True"),
        "{}",
        node["status"]["conditions"]
    );
    let b = n.get_json(&["pod", "bystander"]).expect("bystander");
    assert_eq!(b["status"]["phase"], "Running", "{}", b["status"]);
}
