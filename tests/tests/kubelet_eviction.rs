//! pea-kubelet's eviction manager admission on one real node (pea-shim, pea-control, kubectl):
//! with evictionHard memory.available at 100 % the node is always under memory pressure
//! (MemAvailable is below MemTotal on any host) without touching the host's memory, so the
//! node reports MemoryPressure, a BestEffort pod is refused (Failed, reason Evicted) and a
//! Burstable pod runs — until the eviction manager's next pass (every 10 s) finds memory.available
//! still below the threshold and evicts it: containers stopped, Failed, reason Evicted, kubelet's
//! message naming the container that uses more than it requests, and the DisruptionTarget
//! condition kubelet 1.32 sets (reason TerminationByKubelet).

use std::time::{Duration, Instant};

use pea_tests::eviction_node::{set_config, status};
use pea_tests::kubelet_node::KubeletNode;

#[test]
fn under_memory_pressure_best_effort_pods_are_refused_and_running_pods_evicted() {
    let mut n = KubeletNode::new("node-ev").expect("node");
    // Only memory.available (kubelet: a set evictionHard replaces all defaults).
    set_config(&n, "evictionHard:\n  memory.available: \"100%\"\n");
    n.start_kubelet().expect("kubelet");
    let start = Instant::now();
    loop {
        let node = n.get_json(&["node", &n.name]);
        if let Some(node) = &node {
            if status(node, "Ready") == Some("True") {
                assert_eq!(status(node, "MemoryPressure"), Some("True"), "{node}");
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node not Ready: {node:?}\n{}",
            pea_tests::kubelet_node::tail(&n.kubelet_log(), 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The scheduler would keep a BestEffort pod off a memory-pressure node: bind it directly.
    let pod = |name: &str, resources: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\n\
             spec:\n  nodeName: {}\n  containers:\n  - name: app\n    image: {}\n    \
             command: [sleep, '300']\n{resources}",
            n.name, n.image
        )
    };
    n.apply(&pod("besteffort", ""));
    n.apply(&pod(
        "burstable",
        "    resources: {requests: {memory: 1Ki}}\n",
    ));
    let p = n.wait_pod("besteffort", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Failed"
    });
    assert_eq!(p["status"]["reason"], "Evicted", "{p}");
    assert_eq!(
        p["status"]["message"], "The node had condition: [MemoryPressure]. ",
        "{p}"
    );
    assert!(
        n.events("besteffort").iter().any(|(r, _)| r == "Evicted"),
        "{:?}",
        n.events("besteffort")
    );
    n.wait_pod("burstable", Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Running"
    });
    // Running pods are evicted while the signal stays crossed: one per monitoring interval.
    let p = n.wait_pod("burstable", Duration::from_secs(40), |p| {
        p["status"]["phase"] == "Failed"
    });
    assert_eq!(p["status"]["reason"], "Evicted", "{}", p["status"]);
    let msg = p["status"]["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with("The node was low on resource: memory. Threshold quantity: ")
            && msg.contains(", available: ")
            && msg.ends_with(", request is 1Ki, has larger consumption of memory. ")
            && msg.contains("Container app was using "),
        "{msg}"
    );
    assert!(
        p["status"]["containerStatuses"][0]["state"]["terminated"].is_object(),
        "{}",
        p["status"]
    );
    let ev = n.events("burstable");
    assert!(ev.iter().any(|(r, m)| r == "Evicted" && m == msg), "{ev:?}");
    // kubelet 1.32 (PodDisruptionConditions): the DisruptionTarget condition, with the message.
    let dt = p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionTarget"))
        .unwrap_or_else(|| panic!("no DisruptionTarget: {}", p["status"]));
    assert_eq!(dt["status"], "True", "{dt}");
    assert_eq!(dt["reason"], "TerminationByKubelet", "{dt}");
    assert_eq!(dt["message"], msg, "{dt}");
}
