//! Cluster observability and logs on one `pea up --nodes 2`:
//! - Debian's Prometheus, run in the cluster's namespace (the underlay reaches every node) with
//!   the scrape configuration `pea prometheus-config` prints, a 1 s interval and its own temp
//!   storage: every target (pea-control, each node's pea-shim, pea-kubelet, pea-proxy and pea-flanneld,
//!   pea-dns, pea-ingress) is up, and the key series are there through its HTTP API — API request
//!   latency, kubelet pod start latency, CRI operation latency, proxy sync latency.
//! - `pea logs --selector app=tick --since 5m`: both pods' lines (one pod per node) in one stream,
//!   ordered by time, each prefixed `[pod/container]`.
//!
//! Prometheus is stopped and `pea down` leaves nothing behind.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pea_tests::cluster::{pea, require_cluster_programs, up, wget_in_cluster, Down, Kubectl};
use pea_tests::leakguard::Snapshot;
use pea_tests::netlab::random_suffix;
use pea_tests::privileged::require_root;
use serde_json::Value;

const TICKERS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: tick}
spec:
  replicas: 2
  selector: {matchLabels: {app: tick}}
  template:
    metadata: {labels: {app: tick}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: tick}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: tick
        image: 172.30.0.1:5000/library/busybox:v1
        command: ["/bin/sh", "-c", "i=0; while [ $i -lt 600 ]; do echo tick $i $(hostname); i=$((i+1)); sleep 0.2; done; sleep 3600"]
"#;

/// Stops Prometheus when dropped.
struct Prometheus(Child);
impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The sum of an instant query's sample values, if it answers.
fn query_sum(name: &str, q: &str) -> Option<(usize, f64)> {
    let body = wget_in_cluster(
        name,
        &format!("http://127.0.0.1:9090/api/v1/query?query={}", encode(q)),
    )?;
    let v: Value = serde_json::from_str(&body).ok()?;
    let r = v["data"]["result"].as_array()?;
    let sum = r
        .iter()
        .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
        .sum();
    Some((r.len(), sum))
}

#[test]
fn prometheus_scrapes_every_component_and_pea_logs_merges_pods_across_nodes() {
    require_root();
    require_cluster_programs(&["prometheus"]);
    let name = format!("t{}", random_suffix(3));
    let before = Snapshot::take().expect("snapshot");
    let guard = Down(name.clone());
    let k = Kubectl::new(up(&name, 2));
    let applied = k.run(&["apply", "-f", "-"], Some(TICKERS));
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );

    // Prometheus with the cluster's scrape configuration, 1 s interval.
    let bad = pea(&[
        "prometheus-config",
        "--name",
        &name,
        "--scrape-interval",
        "1x",
    ]);
    assert!(
        !bad.status.success()
            && String::from_utf8_lossy(&bad.stderr).contains("--scrape-interval \"1x\""),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let cfg = pea(&[
        "prometheus-config",
        "--name",
        &name,
        "--scrape-interval",
        "1s",
    ]);
    assert!(
        cfg.status.success(),
        "{}",
        String::from_utf8_lossy(&cfg.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg_file = dir.path().join("prometheus.yml");
    std::fs::write(&cfg_file, &cfg.stdout).unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let mut prom = Prometheus(
        Command::new("ip")
            .args(["netns", "exec", &format!("pea-{name}"), "prometheus"])
            .arg(format!("--config.file={}", cfg_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:9090")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting prometheus"),
    );

    // Every target up (bounded).
    let mut targets = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(st)) = prom.0.try_wait() {
            panic!(
                "prometheus exited ({st}):\n{}",
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
            );
        }
        if let Some(body) = wget_in_cluster(&name, "http://127.0.0.1:9090/api/v1/targets") {
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            targets = v["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    (
                        t["labels"]["job"].as_str().unwrap_or("").to_string(),
                        t["scrapeUrl"].as_str().unwrap_or("").to_string(),
                        t["health"].as_str().unwrap_or("").to_string(),
                        t["lastError"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect::<Vec<_>>();
            if targets.len() == 11 && targets.iter().all(|t| t.2 == "up") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        targets.len() == 11 && targets.iter().all(|t| t.2 == "up"),
        "11 targets up (apiserver, 2 shims, 2 kubelets, 2 proxies, 2 flanneld, dns, ingress): {targets:#?}\n{}",
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
    );
    for job in [
        "apiserver",
        "shim",
        "kubelet",
        "kube-proxy",
        "flanneld",
        "dns",
        "ingress",
    ] {
        assert!(
            targets.iter().any(|t| t.0 == job),
            "job {job}: {targets:#?}"
        );
    }

    // The key series: (query, at least this many series, the values' sum at least).
    let wanted: [(&str, usize, f64); 8] = [
        ("sum(apiserver_request_duration_seconds_count)", 1, 10.0),
        ("kubelet_pod_start_duration_seconds_count", 2, 2.0),
        (
            "kubelet_runtime_operations_duration_seconds_count{operation_type=\"run_podsandbox\"}",
            2,
            2.0,
        ),
        ("kubeproxy_sync_proxy_rules_duration_seconds_count", 2, 2.0),
        (
            "sum by (node) (pea_shim_rpc_duration_seconds_count)",
            2,
            2.0,
        ),
        ("pea_flanneld_reconciles_total{result=\"success\"}", 2, 2.0),
        ("count({job=\"dns\"})", 1, 1.0),
        ("pea_ingress_requests_total", 5, 0.0),
    ];
    for (q, series, at_least) in wanted {
        let mut got = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            got = query_sum(&name, q);
            if got.is_some_and(|(n, s)| n >= series && s >= at_least) {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        assert!(
            got.is_some_and(|(n, s)| n >= series && s >= at_least),
            "{q}: want >= {series} series summing to >= {at_least}, got {got:?}"
        );
    }
    drop(prom);

    // pea logs: both pods (one per node) in one stream, by time.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut text = String::new();
    let mut prefixes = std::collections::BTreeSet::new();
    while Instant::now() < deadline {
        let out = pea(&[
            "logs",
            "--name",
            &name,
            "--selector",
            "app=tick",
            "--since",
            "5m",
            "--timestamps",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text = String::from_utf8_lossy(&out.stdout).into_owned();
        prefixes = text
            .lines()
            .filter_map(|l| Some(l.strip_prefix('[')?.split_once(']')?.0.to_string()))
            .collect();
        if prefixes.len() == 2 && text.lines().count() >= 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(prefixes.len(), 2, "lines of two pods:\n{text}");
    let mut last = String::new();
    for l in text.lines() {
        // `[pod/tick] TIME tick N pod`: the prefix names the pod that printed the line.
        let (prefix, rest) = l[1..].split_once("] ").expect(l);
        let (pod, ctr) = prefix.split_once('/').expect(l);
        assert_eq!(ctr, "tick", "{l}");
        let mut words = rest.split(' ');
        let time = words.next().unwrap();
        assert_eq!(words.next(), Some("tick"), "{l}");
        words.next();
        assert_eq!(words.next(), Some(pod), "{l}");
        // Ordered by time (same-second lines compare by their padded fraction).
        let key = |t: &str| {
            let t = t.trim_end_matches('Z');
            let (s, f) = t.split_once('.').unwrap_or((t, ""));
            format!("{s}.{f:0<9}")
        };
        assert!(key(time) >= last, "out of order at {l}:\n{text}");
        last = key(time);
    }
    // Without --timestamps: the prefix, then the container's own line.
    let out = pea(&["logs", "--name", &name, "-l", "app=tick"]);
    let plain = String::from_utf8_lossy(&out.stdout);
    assert!(
        plain.lines().all(|l| l.contains("] tick ")),
        "{}",
        &plain[..plain.len().min(500)]
    );
    let bad = pea(&["logs", "--name", &name, "--since", "5 minutes"]);
    assert!(
        !bad.status.success()
            && String::from_utf8_lossy(&bad.stderr).contains("--since \"5 minutes\""),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let bad = pea(&["logs", "--name", &name, "-n", "../x"]);
    assert!(
        !bad.status.success()
            && String::from_utf8_lossy(&bad.stderr).contains("--namespace \"../x\""),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let down = pea(&["down", "--name", &name]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    std::mem::forget(guard);
    let after = Snapshot::take().expect("snapshot");
    let tag = format!("pea-{name}");
    let leaks: Vec<String> = before
        .leaks_in(&after)
        .into_iter()
        .filter(|l| l.contains(&tag) || l.contains(&format!("/clusters/{name}")))
        .collect();
    assert!(leaks.is_empty(), "left after pea down: {leaks:#?}");
}
