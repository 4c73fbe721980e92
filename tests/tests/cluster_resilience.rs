//! The cluster's resilience on one real `pea up --nodes 3` cluster, in phases (each failure
//! names its phase), under a bounded client loop through the Service's ClusterIP from node 0's
//! namespace (pea-proxy's DNAT, then VXLAN to the other nodes' pods):
//!
//! 1. kill -9 of node 1's pea-agent (its pea-shim, pea-kubelet, pea-flanneld and pea-proxy at
//!    once: one process, as k3s's agent), 2. of pea-control: every request during the outage and
//!    after the restart is answered (the data path needs none of them), node 1's pod answers
//!    while its agent is dead, and after the restart the state reconciles (node Ready with a new
//!    heartbeat, the shim serves `kubectl exec` into the old container, flanneld keeps its
//!    subnet) with nothing lost: the same pods, UIDs, nodes, IPs and container IDs, no container
//!    restarted.
//!    `pea supervise` (started by `pea up`) starts a dead component again as `pea up` started
//!    it; the test holds it (SIGSTOP) for the 5 s outage and checks that it restarts the
//!    component once let go (SIGCONT).
//! 3. a rolling update of the Deployment loses no request: maxSurge 1 / maxUnavailable 0, a
//!    readiness probe and minReadySeconds, so a new pod gets traffic only once it serves, and a
//!    preStop sleep so an old pod keeps serving while its deletion reaches every node's proxy
//!    (kube sends SIGTERM right after the preStop hook, not after the endpoint removal).
//! 4. a node dies (every process in its namespace or pod cgroups killed, the namespace deleted):
//!    its pods are on the other nodes after node-monitor-grace-period (pea-control's default
//!    40 s) + the pods' own tolerationSeconds (5 s here instead of the admission default 300 s
//!    for not-ready/unreachable), and the Service answers from them only.
//!
//! Then `pea down` leaves nothing (the leak guard, as cluster_up).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pea_tests::bins::workspace_binary;
use pea_tests::cluster::{
    down_leaves_nothing, pids, require_cluster_programs, supervisor_held, up, Down, Kubectl,
};
use pea_tests::leakguard::Snapshot;
use pea_tests::netlab::random_suffix;
use pea_tests::privileged::require_root;
use serde_json::Value;

const NODES: usize = 3;
/// How long a killed component stays dead while the client loop runs.
const OUTAGE: Duration = Duration::from_secs(5);

const WORKLOAD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  minReadySeconds: 2
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 10
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              labelSelector: {matchLabels: {app: web}}
              topologyKey: kubernetes.io/hostname
      tolerations:
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      containers:
      - name: web
        image: 172.30.0.1:5000/library/busybox:v1
        command: ["/bin/sh", "-c", "echo hello from $(hostname) > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
        env: [{name: VERSION, value: "1"}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
        lifecycle: {preStop: {exec: {command: ["sleep", "5"]}}}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeSelector: {kubernetes.io/hostname: NODE0}
  containers:
  - {name: client, image: 172.30.0.1:5000/library/busybox:v1, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

/// What must not change when a component is killed and restarted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PodState {
    name: String,
    uid: String,
    node: String,
    ip: String,
    container_id: String,
    restarts: i64,
}

/// The app=web pods: those not being deleted, and how many are being deleted.
fn web_pods(k: &Kubectl) -> (Vec<(PodState, bool)>, usize) {
    let v: Value =
        serde_json::from_str(&k.ok(&["get", "pods", "-l", "app=web", "-o", "json"])).unwrap();
    let items = v["items"].as_array().cloned().unwrap_or_default();
    let deleting = items
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_string())
        .count();
    let live = items
        .iter()
        .filter(|p| !p["metadata"]["deletionTimestamp"].is_string())
        .map(|p| {
            let cs = &p["status"]["containerStatuses"][0];
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let s = |v: &Value| v.as_str().unwrap_or("").to_string();
            (
                PodState {
                    name: s(&p["metadata"]["name"]),
                    uid: s(&p["metadata"]["uid"]),
                    node: s(&p["spec"]["nodeName"]),
                    ip: s(&p["status"]["podIP"]),
                    container_id: s(&cs["containerID"]),
                    restarts: cs["restartCount"].as_i64().unwrap_or(-1),
                },
                ready && p["status"]["phase"] == "Running",
            )
        })
        .collect();
    (live, deleting)
}

/// Polls `f` every 500 ms for at most `limit`; the time it took, or `None`.
fn wait(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    None
}

/// Three ready pods and nothing else: the Deployment's rollout is complete and no pod is
/// being deleted.
fn settled(k: &Kubectl) -> Option<Vec<PodState>> {
    let v: Value = serde_json::from_slice(
        &k.run(&["get", "deployment", "web", "-o", "json"], None)
            .stdout,
    )
    .ok()?;
    let st = &v["status"];
    let done = st["observedGeneration"].as_i64() >= v["metadata"]["generation"].as_i64()
        && st["updatedReplicas"] == 3
        && st["availableReplicas"] == 3
        && st["replicas"] == 3;
    let (pods, deleting) = web_pods(k);
    (done && deleting == 0 && pods.len() == 3 && pods.iter().all(|p| p.1)).then(|| {
        let mut v: Vec<PodState> = pods.into_iter().map(|p| p.0).collect();
        v.sort();
        v
    })
}

/// One answer of the client loop: when (since the loop started) and from which pod, or the
/// failure.
#[derive(Debug, Clone)]
struct Answer {
    at: Duration,
    from: Result<String, String>,
}

/// A bounded client loop: `busybox wget` of `url` from network namespace file `netns` (the
/// client pod's: a node's own namespace has no route to Service IPs) every 100 ms (each
/// request at most 5 s), for at most 10 minutes or 5000 requests.
struct Client {
    start: Instant,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Answer>>,
}

impl Client {
    fn start(netns: &str, url: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let (netns, url, flag) = (netns.to_string(), url.to_string(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !flag.load(Ordering::Relaxed)
                && start.elapsed() < Duration::from_secs(600)
                && answers.len() < 5000
            {
                let out = Command::new("timeout")
                    .args(["5", "nsenter", &format!("--net={netns}"), "busybox", "wget"])
                    .args(["-q", "-O", "-", &url])
                    .stdin(Stdio::null())
                    .output();
                let from = match out {
                    Ok(o) if o.status.success() => {
                        let page = String::from_utf8_lossy(&o.stdout);
                        match page.trim().strip_prefix("hello from ") {
                            Some(pod) => Ok(pod.to_string()),
                            None => Err(format!("unexpected page {page:?}")),
                        }
                    }
                    Ok(o) => Err(format!(
                        "{}: {}",
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim()
                    )),
                    Err(e) => Err(e.to_string()),
                };
                answers.push(Answer {
                    at: start.elapsed(),
                    from,
                });
                std::thread::sleep(Duration::from_millis(100));
            }
            answers
        });
        Self {
            start,
            stop,
            handle,
        }
    }

    /// Time since the loop started (to mark events in its answers).
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Stops the loop; asserts every request was answered (and that there were at least
    /// `min` of them); returns the answers.
    fn finish(self, phase: &str, min: usize) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        let answers = self.handle.join().expect("client loop");
        let failed: Vec<&Answer> = answers.iter().filter(|a| a.from.is_err()).collect();
        assert!(
            failed.is_empty(),
            "{phase}: {} of {} requests through the Service failed: {failed:#?}",
            failed.len(),
            answers.len()
        );
        assert!(
            answers.len() >= min,
            "{phase}: only {} requests in the client loop",
            answers.len()
        );
        eprintln!(
            "{phase}: {} requests through the Service over {:.1} s, all answered",
            answers.len(),
            answers.last().map_or(0.0, |a| a.at.as_secs_f64())
        );
        answers
    }
}

/// A process `pea up` started, which `pea supervise` starts again when it dies.
struct Started {
    pid: u32,
    log: PathBuf,
    pid_file: PathBuf,
    supervisor_log: PathBuf,
}

impl Started {
    /// The service `what` (its pid-file name) of cluster `name`.
    fn read(name: &str, what: &str) -> Self {
        let pid_file = PathBuf::from(format!("/run/pea/{name}/{what}.pid"));
        let logs = PathBuf::from(format!("/var/lib/pea/clusters/{name}/logs"));
        Self {
            pid: read_pid(&pid_file),
            log: logs.join(format!("{what}.log")),
            pid_file,
            supervisor_log: logs.join("supervise.log"),
        }
    }

    /// kill -9, waiting (at most 10 s) until it is gone.
    fn kill9(&self, phase: &str) {
        kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL)
            .unwrap_or_else(|e| panic!("{phase}: kill -9 {}: {e}", self.pid));
        assert!(
            wait(Duration::from_secs(10), || !alive(self.pid)).is_some(),
            "{phase}: pid {} still alive after SIGKILL",
            self.pid
        );
    }

    /// Waits (at most 10 s) for `pea supervise` to have started it again: a new live pid.
    fn restarted(&self, phase: &str) {
        let again = wait(Duration::from_secs(10), || {
            let p = read_pid(&self.pid_file);
            p != self.pid && alive(p)
        });
        assert!(
            again.is_some(),
            "{phase}: pea supervise did not start pid {} again; its log ends:\n{}",
            self.pid,
            tail(&self.supervisor_log, 10)
        );
    }
}

fn read_pid(pid_file: &Path) -> u32 {
    std::fs::read_to_string(pid_file)
        .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()))
        .trim()
        .parse()
        .unwrap()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// The node's Ready condition: (status, lastHeartbeatTime).
fn node_ready(k: &Kubectl, node: &str) -> (String, String) {
    let out = k.run(&["get", "node", node, "-o", "json"], None);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["lastHeartbeatTime"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_default()
}

/// The network namespace file of pod `pod`'s sandbox on node `node` (pea-shim pins them in
/// its state dir by sandbox id; pea-crictl shows the id's first 13 characters).
fn pod_netns(name: &str, node: usize, pod: &str) -> Option<String> {
    let sock = format!("unix:///run/pea/{name}/{name}-{node}/cri.sock");
    let out = Command::new(workspace_binary("pea-crictl", "PEA_CRICTL"))
        .args(["-r", &sock, "pods"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && f[1] == pod && f[3] == "SANDBOX_READY")?[0]
        .to_string();
    let dir = format!("/var/lib/pea/clusters/{name}/{name}-{node}/state/netns");
    std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path().display().to_string())
        .find(|p| p.rsplit('/').next().is_some_and(|f| f.starts_with(&id)))
}

/// Every process of a node: in its network namespace or in its pods' cgroups.
fn node_processes(name: &str, node: usize) -> Vec<u32> {
    let ino = std::fs::metadata(format!("/run/netns/pea-{name}-{node}"))
        .expect("node namespace")
        .ino();
    let cg = format!("/pea-{name}-{node}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == ino)
                || std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|s| {
                    s.lines().any(|l| {
                        let p = l.splitn(3, ':').nth(2).unwrap_or("");
                        p == cg || p.starts_with(&format!("{cg}/"))
                    })
                })
        })
        .collect()
}

/// One kill -9 phase: the component dead for OUTAGE under the client loop (`outage` runs at
/// its start), restarted, then `reconciled` must hold within 60 s with the client still
/// answered throughout, and the pods exactly as before.
fn kill_phase(
    phase: &str,
    c: &Ctx,
    (what, node): (&str, usize),
    outage: impl FnOnce(),
    mut reconciled: impl FnMut() -> bool,
) {
    let before = settled(&c.k).unwrap_or_else(|| panic!("{phase}: the workload is not settled"));
    let victim = Started::read(&c.name, what);
    let client = Client::start(&c.client_ns, &c.url);
    std::thread::sleep(Duration::from_secs(1));
    // The supervisor held for the outage; let go, it starts the component again.
    let (dead_from, dead_to) = supervisor_held(&c.name, || {
        victim.kill9(phase);
        let dead_from = client.now();
        outage();
        std::thread::sleep(OUTAGE.saturating_sub(client.now() - dead_from));
        (dead_from, client.now())
    });
    victim.restarted(phase);
    let took = wait(Duration::from_secs(60), &mut reconciled);
    // A few more seconds of client loop: a restarted component that tears down state it
    // finds (rules, routes, containers) does so in its first moments.
    std::thread::sleep(Duration::from_secs(3));
    let answers = client.finish(phase, 30);
    assert!(
        took.is_some(),
        "{phase}: not reconciled 60 s after the restart; its log ends:\n{}",
        tail(&victim.log, 20)
    );
    let node_pod = before
        .iter()
        .find(|p| p.node == format!("{}-{node}", c.name))
        .map(|p| p.name.clone());
    if let Some(pod) = node_pod {
        assert!(
            answers
                .iter()
                .any(|a| a.at >= dead_from && a.at <= dead_to && a.from.as_ref() == Ok(&pod)),
            "{phase}: {pod} on the node never answered while {what} was dead: {answers:?}"
        );
    }
    // Readiness may be re-probed after a restart: settled again, within 30 s.
    let mut after = None;
    wait(Duration::from_secs(30), || {
        after = settled(&c.k);
        after.is_some()
    });
    assert_eq!(
        after.as_ref(),
        Some(&before),
        "{phase}: the pods changed (lost, moved or restarted) after the restart"
    );
    eprintln!(
        "{phase}: reconciled {:.1} s after the restart, the same {} pods",
        took.unwrap().as_secs_f64(),
        before.len()
    );
}

fn tail(p: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let l: Vec<&str> = s.lines().collect();
    l[l.len().saturating_sub(n)..].join("\n")
}

struct Ctx {
    name: String,
    k: Kubectl,
    client_ns: String,
    url: String,
}

#[test]
fn a_pea_up_cluster_survives_killed_components_a_rolling_update_and_a_dead_node() {
    require_root();
    require_cluster_programs(&[]);
    let t0 = Instant::now();
    let name = format!("r{}", random_suffix(3));
    let before = Snapshot::take().expect("snapshot");
    let guard = Down(name.clone());
    let kubeconfig = up(&name, NODES);
    eprintln!(
        "pea up --nodes {NODES}: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let k = Kubectl::new(kubeconfig);
    let workload = WORKLOAD.replace("NODE0", &format!("{name}-0"));
    let applied = k.run(&["apply", "-f", "-"], Some(&workload));
    assert!(
        applied.status.success(),
        "setup: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let mut pods = Vec::new();
    wait(Duration::from_secs(120), || match settled(&k) {
        Some(p) => {
            pods = p;
            true
        }
        None => false,
    });
    let nodes: BTreeSet<&str> = pods.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(
        nodes.len(),
        NODES,
        "setup: three ready pods, one per node: {pods:?}\n{}",
        k.ok(&["get", "pods", "-o", "wide"])
    );
    let ip = k.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let mut client_ns = None;
    wait(Duration::from_secs(60), || {
        client_ns = pod_netns(&name, 0, "client");
        client_ns.is_some()
    });
    let c = Ctx {
        client_ns: client_ns.expect("setup: the client pod's sandbox on node 0"),
        url: format!("http://{}:80/", ip.trim()),
        name: name.clone(),
        k,
    };
    let node1 = format!("{name}-1");

    // 1. The node's agent: its kubelet's heartbeat resumes (a newer one than the last before
    // the kill), the kubelet reaches the old containers through the restarted shim, flanneld
    // keeps its lease and the overlay; the containers stay.
    let pod1 = settled(&c.k)
        .unwrap()
        .into_iter()
        .find(|p| p.node == node1)
        .unwrap()
        .name;
    let hb = std::cell::RefCell::new(String::new());
    let subnet_file = format!("/var/lib/pea/clusters/{name}/{node1}/subnet.env");
    let subnet = std::fs::read_to_string(&subnet_file).expect("subnet.env");
    let agent_log = PathBuf::from(format!(
        "/var/lib/pea/clusters/{name}/logs/{node1}-agent.log"
    ));
    let log_len = std::cell::Cell::new(0);
    kill_phase(
        "pea-agent kill -9",
        &c,
        (&format!("{node1}-agent"), 1),
        || {
            *hb.borrow_mut() = node_ready(&c.k, &node1).1;
            log_len.set(std::fs::metadata(&agent_log).map_or(0, |m| m.len()));
        },
        || {
            let (st, now) = node_ready(&c.k, &node1);
            if st != "True" || now == *hb.borrow() {
                return false;
            }
            // Restarted and through its start: it logged again and rewrote the same lease.
            if std::fs::metadata(&agent_log).map_or(0, |m| m.len()) <= log_len.get()
                || std::fs::read_to_string(&subnet_file).ok().as_ref() != Some(&subnet)
            {
                return false;
            }
            let out =
                c.k.run(&["exec", &pod1, "--", "cat", "/tmp/index.html"], None);
            String::from_utf8_lossy(&out.stdout).trim() == format!("hello from {pod1}")
        },
    );

    // 2. pea-control: the API answers again and every node is Ready.
    kill_phase(
        "pea-control kill -9",
        &c,
        ("control", 0),
        || {},
        || {
            (0..NODES).all(|i| node_ready(&c.k, &format!("{name}-{i}")).0 == "True")
                && c.k.run(&["get", "--raw", "/readyz"], None).status.success()
        },
    );

    // 3. A rolling update under the client loop.
    let phase = "rolling update";
    let old = settled(&c.k).expect("rolling update: settled before");
    let client = Client::start(&c.client_ns, &c.url);
    std::thread::sleep(Duration::from_secs(1));
    c.k.ok(&["set", "env", "deployment/web", "VERSION=2"]);
    let mut new = Vec::new();
    let took = wait(Duration::from_secs(180), || match settled(&c.k) {
        Some(p) if p.iter().all(|p| old.iter().all(|o| o.uid != p.uid)) => {
            new = p;
            true
        }
        _ => false,
    });
    std::thread::sleep(Duration::from_secs(2));
    let answers = client.finish(phase, 50);
    let took = took.unwrap_or_else(|| {
        panic!(
            "{phase}: not complete after 180 s:\n{}",
            c.k.ok(&["get", "pods", "-o", "wide"])
        )
    });
    let served: BTreeSet<&str> = answers
        .iter()
        .filter_map(|a| a.from.as_deref().ok())
        .collect();
    assert!(
        new.iter().all(|p| served.contains(p.name.as_str()))
            && old.iter().any(|p| served.contains(p.name.as_str())),
        "{phase}: answers from old and every new pod: served {served:?}, new {new:?}"
    );
    eprintln!("{phase}: 3 pods replaced in {:.1} s", took.as_secs_f64());

    // 4. A node dies.
    let phase = "node death";
    let nodes_with_pods: BTreeSet<String> = new.iter().map(|p| p.node.clone()).collect();
    let dead = (1..NODES)
        .rev()
        .find(|i| nodes_with_pods.contains(&format!("{name}-{i}")))
        .unwrap_or_else(|| panic!("{phase}: no pod outside node 0: {new:?}"));
    let dead_node = format!("{name}-{dead}");
    let procs = node_processes(&name, dead);
    // Its agent, and its pod's pause and web processes with their monitors.
    assert!(
        procs.len() >= 3,
        "{phase}: processes of {dead_node}: {procs:?}"
    );
    // The supervisor held while the node dies, so it never starts the agent again inside the
    // dying namespace; afterwards it leaves a service whose namespace is gone alone.
    let died = Instant::now();
    let del = supervisor_held(&name, || {
        for &p in &procs {
            let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
        }
        assert!(
            wait(Duration::from_secs(10), || procs.iter().all(|&p| !alive(p))).is_some(),
            "{phase}: processes of {dead_node} still alive after SIGKILL"
        );
        Command::new("ip")
            .args(["netns", "del", &format!("pea-{name}-{dead}")])
            .output()
            .unwrap()
    });
    assert!(del.status.success(), "{phase}: ip netns del: {del:?}");
    let mut moved = Vec::new();
    let took = wait(Duration::from_secs(150), || {
        let (pods, _) = web_pods(&c.k);
        let ok = pods.len() == 3 && pods.iter().all(|(p, ready)| *ready && p.node != dead_node);
        if ok {
            moved = pods.into_iter().map(|p| p.0).collect();
        }
        ok
    })
    .unwrap_or_else(|| {
        panic!(
            "{phase}: {dead_node}'s pods not on the other nodes {:.0} s after it died:\n{}\n{}",
            died.elapsed().as_secs_f64(),
            c.k.ok(&["get", "pods", "-o", "wide"]),
            c.k.ok(&["get", "nodes", "-o", "wide"])
        )
    });
    let (st, _) = node_ready(&c.k, &dead_node);
    assert_ne!(st, "True", "{phase}: {dead_node} still Ready");
    eprintln!(
        "{phase}: {dead_node}'s pod on the other nodes {:.1} s after it died (grace 40 s + tolerationSeconds 5)",
        took.as_secs_f64()
    );
    // The Service now answers from the moved pods only, every request.
    let client = Client::start(&c.client_ns, &c.url);
    std::thread::sleep(Duration::from_secs(6));
    let answers = client.finish(phase, 20);
    let names: BTreeSet<&str> = moved.iter().map(|p| p.name.as_str()).collect();
    assert!(
        answers
            .iter()
            .all(|a| names.contains(a.from.as_deref().unwrap())),
        "{phase}: answers from pods not running: {answers:?} (running {names:?})"
    );

    let started = pids(&PathBuf::from("/run/pea").join(&name));
    down_leaves_nothing(&name, &before, guard, &started);
    eprintln!(
        "cluster_resilience: {:.1} s in all",
        t0.elapsed().as_secs_f64()
    );
}
