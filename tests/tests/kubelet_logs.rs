//! pea-kubelet's container log rotation on one real node (pea-shim, pea-control, kubectl 1.32):
//! with containerLogMaxSize 16Ki, containerLogMaxFiles 3 and a 1 s monitor interval, a
//! container that logs steadily has its log rotated to `0.log.<timestamp>`, older rotations
//! gzipped and trimmed to the limit, and `kubectl logs` keeps reading the current log.

use std::time::{Duration, Instant};

use pea_tests::kubelet_node::{tail, KubeletNode};

#[test]
fn a_busy_containers_log_is_rotated_compressed_and_trimmed() {
    let mut n = KubeletNode::new("node-logs").expect("node");
    let mut cfg = std::fs::read_to_string(&n.kubelet_config).expect("config");
    cfg.push_str(
        "containerLogMaxSize: 16Ki\ncontainerLogMaxFiles: 3\ncontainerLogMonitorInterval: 1s\n",
    );
    std::fs::write(&n.kubelet_config, cfg).expect("config");
    n.start_kubelet().expect("kubelet");
    let img = n.image.clone();
    // About 40 KiB/s with CRI's line prefix: a rotation every pass. Bounded: 20000 lines.
    n.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: chatty}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {img}
    command: [sh, -c, 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); echo "line $i"; usleep 1000; done; exec sleep 3600']
"#
    ));
    let p = n.wait_pod("chatty", Duration::from_secs(60), |p| {
        p["status"]["phase"] == "Running"
    });
    let uid = p["metadata"]["uid"].as_str().expect("uid").to_string();
    let dir = n
        .node
        .path("logs")
        .join(format!("default_chatty_{uid}"))
        .join("c");
    let files = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let start = Instant::now();
    loop {
        let f = files();
        // Never more than containerLogMaxFiles once a pass has trimmed (a .tmp may exist
        // for an instant while compressing).
        let gz = f.iter().filter(|n| n.ends_with(".gz")).count();
        let plain_rotated = f
            .iter()
            .filter(|n| n.starts_with("0.log.") && !n.ends_with(".gz") && !n.ends_with(".tmp"))
            .count();
        if gz >= 1 && plain_rotated == 1 && f.contains(&"0.log".to_string()) {
            assert!(
                f.iter().filter(|n| !n.ends_with(".tmp")).count() <= 3,
                "{f:?}"
            );
            // kubelet's name: <log>.YYYYMMDD-hhmmss
            let stamp = f
                .iter()
                .find(|n| n.starts_with("0.log.") && !n.ends_with(".gz"))
                .map(|n| n.trim_start_matches("0.log.").to_string())
                .unwrap_or_default();
            assert_eq!(stamp.len(), 15, "{f:?}");
            assert_eq!(&stamp[8..9], "-", "{f:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "no rotation with a gzipped older file: {f:?}\n{}",
            tail(&n.kubelet_log(), 30)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // A few more passes: the count stays trimmed.
    std::thread::sleep(Duration::from_secs(3));
    let f = files();
    assert!(
        f.iter().filter(|n| !n.ends_with(".tmp")).count() <= 3,
        "{f:?}"
    );
    // kubectl logs reads the reopened current log: recent lines, in order.
    let out = n.ok(&["logs", "chatty", "--tail", "5"]);
    let nums: Vec<u64> = out
        .lines()
        .filter_map(|l| l.strip_prefix("line ").and_then(|n| n.parse().ok()))
        .collect();
    assert!(!nums.is_empty(), "{out}");
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{out}");
    assert!(nums[0] > 100, "the current log holds recent lines: {out}");
    n.delete_all_pods();
}
