//! bench-cluster: a whole `pea up` cluster, timed and weighed (issue 15's benchmark).
//!
//! Per run: `pea up --nodes N` until every node is Ready *and* cluster DNS answers — a query for
//! `kubernetes.default.svc.cluster.local` from inside node 1's network namespace to the clusterDNS
//! IP (through node 1's pea-proxy to pea-dns), measured from the spawn of
//! `pea up`; then a Deployment of `--replicas` busybox pods (the fixture image up.sh
//! uses, no probes: Ready = container started), timed from `kubectl apply` to
//! `kubectl rollout status` returning (all replicas updated and available); then the resident
//! memory of the control plane and of one node's agents with those pods running; then the
//! Deployment is moved onto node 1 alone (a nodeSelector) and that node's agents are weighed
//! again with every replica on it; then `pea down`. Medians over runs.
//!
//! Memory is the sum of VmRSS (what k3s's published figures count) and of Pss (shared pages
//! split between the processes sharing them) from /proc. What each row sums is printed beside
//! it. The anchor, k3s (server ≈ 1.6 GB, agent ≈ 275 MB RSS), is a published figure and is NOT
//! measured here: k3s is not installed on this machine and no registry is reachable. Nothing is
//! asserted; the machine's load (`uptime`) is printed before and after.
//!
//! `pea up`'s own per-step timings (it prints one line per step) are collected too and printed
//! as a profile: median seconds per step.
//!
//! Run (as root): `cargo build --release --bins && target/release/bench-cluster [--runs 3]
//! [--nodes 3] [--replicas 30]` (`pea` and the programs it starts are found beside the bench,
//! or from `$PEA_CLI` and `$PEA_BIN_DIR`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use pea_tests::bench::{fmt_duration, quantile};
use pea_tests::cluster::{pea, Down, Kubectl};
use pea_tests::netlab::random_suffix;
use pea_tests::privileged::{require_program, require_root};

/// The clusterDNS IP `pea up` gives kube-dns.
const CLUSTER_DNS: &str = "10.96.0.10";
/// The `kubernetes` Service's address (the service range's first).
const KUBERNETES_SERVICE: &str = "10.96.0.1";
/// The fixture image `pea up` pushes to its registry (up.sh's workload image).
const IMAGE: &str = "172.30.0.1:5000/library/busybox:v1";
/// k3s's published figures (not measured here).
const K3S_SERVER_MIB: f64 = 1.6 * 1000.0 * 1000.0 * 1000.0 / 1048576.0;
const K3S_AGENT_MIB: f64 = 275.0 * 1000.0 * 1000.0 / 1048576.0;

#[derive(Debug, Parser)]
struct Args {
    /// Runs (`pea up` … `pea down` each).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Replicas of the timed Deployment.
    #[arg(long, default_value_t = 30)]
    replicas: usize,
    /// Bound on each wait (DNS answering, the rollout).
    #[arg(long, default_value_t = 180)]
    timeout_seconds: u64,
}

/// Memory of a set of processes.
#[derive(Debug, Default, Clone, Copy)]
struct Mem {
    rss_kib: u64,
    pss_kib: u64,
    processes: usize,
}

#[derive(Debug, Default)]
struct Run {
    up: Duration,
    up_dns: Duration,
    deploy: Duration,
    control: Mem,
    control_addons: Mem,
    agents_spread: Mem,
    agents_spread_monitors: Mem,
    pods_on_node_spread: usize,
    agents_all: Mem,
    agents_all_monitors: Mem,
    pods_on_node_all: usize,
    steps: Vec<(String, f64)>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    require_root();
    for p in [
        "kubectl",
        "dig",
        "docker-registry",
        "skopeo",
        "nsenter",
        "setsid",
    ] {
        require_program(p);
    }
    if args.nodes < 2 {
        bail!(
            "--nodes {}: the bench weighs node 1's agents, so at least 2",
            args.nodes
        );
    }
    let load_before = uptime();
    eprintln!("bench-cluster: load before: {load_before}");
    let mut runs = Vec::new();
    for r in 0..args.runs {
        eprintln!("bench-cluster: run {}/{}", r + 1, args.runs);
        runs.push(one_run(&args)?);
    }
    let load_after = uptime();
    print_report(&args, &runs, &load_before, &load_after);
    Ok(())
}

fn one_run(args: &Args) -> Result<Run> {
    // Names are unique per process: other clusters (tests) may be up beside this one.
    let name = format!("bc{}", random_suffix(3));
    let guard = Down(name.clone());
    let mut run = Run::default();

    let start = Instant::now();
    let out = pea(&["up", "--nodes", &args.nodes.to_string(), "--name", &name]);
    run.up = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "pea up failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    run.steps = step_times(&stdout, &name);
    let node1_ns = format!("pea-{name}-1");
    let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
    loop {
        if dns_answers(&node1_ns) {
            break;
        }
        if Instant::now() > deadline {
            bail!("cluster DNS at {CLUSTER_DNS} not answering from {node1_ns}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    run.up_dns = start.elapsed();
    eprintln!(
        "bench-cluster: pea up {:.2} s, DNS answering at {:.2} s",
        run.up.as_secs_f64(),
        run.up_dns.as_secs_f64()
    );
    let kubeconfig: PathBuf = stdout
        .lines()
        .find_map(|l| l.strip_prefix("pea up: export KUBECONFIG="))
        .context("pea up printed no KUBECONFIG")?
        .into();
    let k = Kubectl::new(kubeconfig);

    let start = Instant::now();
    apply(&k, &deployment(args.replicas, None))?;
    rollout(&k, args.timeout_seconds)?;
    run.deploy = start.elapsed();
    eprintln!(
        "bench-cluster: {} replicas Ready in {:.2} s",
        args.replicas,
        run.deploy.as_secs_f64()
    );
    let run_dir = PathBuf::from("/run/pea").join(&name);
    let node1 = format!("{name}-1");
    let node1_dir = PathBuf::from("/var/lib/pea/clusters")
        .join(&name)
        .join(&node1);
    run.control = mem(&pid_files(&run_dir, &["control"]));
    run.control_addons = mem(&[
        pid_files(&run_dir, &["control"]),
        pea_tests::cluster::programs_in_node(
            &format!("{name}-0"),
            &["/usr/local/bin/pea-dns", "/usr/local/bin/pea-ingress"],
        ),
    ]
    .concat());
    // pea-agent: the node's pea-shim, pea-kubelet, pea-flanneld and pea-proxy in one process.
    let agents = |n: &str| pid_files(&run_dir, &[format!("{n}-agent")]);
    run.agents_spread = mem(&agents(&node1));
    run.agents_spread_monitors = mem(&[agents(&node1), monitors(&node1_dir)].concat());
    run.pods_on_node_spread = pods_on(&k, &node1)?;

    // Every replica on node 1: the agents' weight with all of them.
    apply(&k, &deployment(args.replicas, Some(&node1)))?;
    rollout(&k, args.timeout_seconds)?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
    // The rollout returns once the new pods are available; the old ones may still be going.
    while pods_on(&k, &node1)? < args.replicas || total_pods(&k)? > args.replicas {
        if Instant::now() > deadline {
            bail!("the old replicas did not leave the other nodes");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    run.agents_all = mem(&agents(&node1));
    run.agents_all_monitors = mem(&[agents(&node1), monitors(&node1_dir)].concat());
    run.pods_on_node_all = pods_on(&k, &node1)?;

    let out = pea(&["down", "--name", &name]);
    if !out.status.success() {
        bail!("pea down failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::mem::forget(guard);
    Ok(run)
}

/// A query for `kubernetes.default` sent from inside `netns` to the clusterDNS IP, answered with
/// the `kubernetes` Service's address: the whole path a pod's lookup takes (node 1's pea-proxy,
/// pea-dns, the API's Service).
fn dns_answers(netns: &str) -> bool {
    let Ok(out) = Command::new("timeout")
        .args(["3", "ip", "netns", "exec", netns])
        .args(["dig", "+time=1", "+tries=1", "+short"])
        .arg(format!("@{CLUSTER_DNS}"))
        .args(["kubernetes.default.svc.cluster.local", "A"])
        .stdin(Stdio::null())
        .output()
    else {
        return false;
    };
    out.status.success()
        && String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == KUBERNETES_SERVICE)
}

fn deployment(replicas: usize, node: Option<&str>) -> String {
    let selector = node
        .map(|n| format!("      nodeSelector: {{kubernetes.io/hostname: {n}}}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: bench}}\nspec:\n  replicas: {replicas}\n\
         \x20 selector: {{matchLabels: {{app: bench}}}}\n  template:\n    metadata: {{labels: {{app: bench}}}}\n\
         \x20   spec:\n{selector}      terminationGracePeriodSeconds: 1\n      containers:\n\
         \x20     - name: httpd\n        image: {IMAGE}\n        command: [sh, -c, 'exec httpd -f -p 8080 -h /etc']\n"
    )
}

fn apply(k: &Kubectl, manifest: &str) -> Result<()> {
    let out = k.run(&["apply", "-f", "-"], Some(manifest));
    if !out.status.success() {
        bail!("kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// `kubectl rollout status` (a watch: it returns when every replica is updated and available).
fn rollout(k: &Kubectl, timeout_seconds: u64) -> Result<()> {
    let out = Command::new("kubectl")
        .args(["rollout", "status", "deployment/bench"])
        .arg(format!("--timeout={timeout_seconds}s"))
        .env("KUBECONFIG", &k.kubeconfig)
        .env("HOME", k.home.path())
        .stdin(Stdio::null())
        .output()
        .context("kubectl rollout status")?;
    if !out.status.success() {
        bail!(
            "kubectl rollout status: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&k.run(&["get", "pods", "-o", "wide"], None).stdout)
        );
    }
    Ok(())
}

fn pod_nodes(k: &Kubectl) -> Result<Vec<String>> {
    let out = k.run(
        &[
            "get",
            "pods",
            "-l",
            "app=bench",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}{\"\\n\"}{end}",
        ],
        None,
    );
    if !out.status.success() {
        bail!("kubectl get pods: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

fn pods_on(k: &Kubectl, node: &str) -> Result<usize> {
    Ok(pod_nodes(k)?.iter().filter(|n| *n == node).count())
}

fn total_pods(k: &Kubectl) -> Result<usize> {
    Ok(pod_nodes(k)?.len())
}

/// The pids in `run_dir/<name>.pid` for each name.
fn pid_files<S: AsRef<str>>(run_dir: &Path, names: &[S]) -> Vec<u32> {
    names
        .iter()
        .filter_map(|n| {
            std::fs::read_to_string(run_dir.join(format!("{}.pid", n.as_ref())))
                .ok()?
                .trim()
                .parse()
                .ok()
        })
        .collect()
}

/// Every process id in /proc.
fn processes() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
}

/// The node's pea-monitor processes (one per container): their command line names the node's
/// runtime root under its state dir.
fn monitors(node_dir: &Path) -> Vec<u32> {
    let runtime_root = node_dir.join("runtime").display().to_string();
    processes()
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let argv: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            argv.first()
                .is_some_and(|a0| String::from_utf8_lossy(a0).ends_with("pea-monitor"))
                && argv.contains(&runtime_root.as_bytes())
        })
        .collect()
}

fn mem(pids: &[u32]) -> Mem {
    let mut m = Mem::default();
    for pid in pids {
        let Some(rss) = status_kib(&format!("/proc/{pid}/status"), "VmRSS:") else {
            continue;
        };
        m.rss_kib += rss;
        m.pss_kib += status_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:").unwrap_or(0);
        m.processes += 1;
    }
    m
}

fn status_kib(file: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `pea up`'s step lines ("pea up: STEP" … "pea up:   (1.2 s)"), the cluster's name replaced by
/// C so runs line up.
fn step_times(stdout: &str, name: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("pea up: ") else {
            continue;
        };
        if let Some(t) = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(" s)"))
        {
            if let (Some(step), Ok(secs)) = (current.take(), t.parse::<f64>()) {
                out.push((step, secs));
            }
        } else if !rest.starts_with("export ") && !rest.starts_with("cluster ") {
            current = Some(rest.replace(name, "C"));
        }
    }
    out
}

fn uptime() -> String {
    Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("uptime: {e}"))
}

fn median_f(v: impl Iterator<Item = f64>) -> f64 {
    let mut s: Vec<f64> = v.collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

fn print_report(args: &Args, runs: &[Run], load_before: &str, load_after: &str) {
    let durs = |f: fn(&Run) -> Duration| runs.iter().map(f).collect::<Vec<_>>();
    let row = |what: &str, d: Vec<Duration>, target: &str| {
        format!(
            "| {what} | {} | {} | {} | {} | {target} | {} |",
            d.len(),
            quantile(&d, 0.5).map(fmt_duration).unwrap_or_default(),
            quantile(&d, 0.0).map(fmt_duration).unwrap_or_default(),
            quantile(&d, 1.0).map(fmt_duration).unwrap_or_default(),
            d.iter()
                .map(|x| format!("{:.2}", x.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    println!(
        "### bench-cluster: pea up --nodes {}, a {}-replica Deployment, memory ({} runs)\n",
        args.nodes,
        args.replicas,
        runs.len()
    );
    println!("load before: `{load_before}`; after: `{load_after}`\n");
    println!("| measure | n | median | min | max | target | each run (s) |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "{}",
        row(
            &format!(
                "`pea up --nodes {}` → all nodes Ready (pea up exits)",
                args.nodes
            ),
            durs(|r| r.up),
            "–"
        )
    );
    println!(
        "{}",
        row(
            &format!(
                "`pea up --nodes {}` → all nodes Ready and cluster DNS answering kubernetes.default from node 1",
                args.nodes
            ),
            durs(|r| r.up_dns),
            "≤ 10 s"
        )
    );
    println!(
        "{}",
        row(
            &format!(
                "{}-replica Deployment: apply → all Ready (`kubectl rollout status`)",
                args.replicas
            ),
            durs(|r| r.deploy),
            "–"
        )
    );
    println!(
        "\nk3s figures are published ones, NOT measured here (k3s is not installed on this machine); \
         memory medians over runs, RSS counts shared pages once per process, PSS splits them.\n"
    );
    println!("| subject | what is summed | RSS (median) | PSS (median) | k3s anchor RSS (published, not measured) | RSS ratio to anchor | target |");
    println!("|---|---|---|---|---|---|---|");
    let mrow = |subject: &str,
                what: String,
                f: &dyn Fn(&Run) -> Mem,
                anchor: f64,
                anchor_name: &str,
                target: &str| {
        let rss = median_f(runs.iter().map(|r| f(r).rss_kib as f64));
        let pss = median_f(runs.iter().map(|r| f(r).pss_kib as f64));
        println!(
            "| {subject} | {what} | {} | {} | {anchor_name} ≈ {:.0} MiB | {:.3}× | {target} |",
            mib(rss),
            mib(pss),
            anchor,
            rss / 1024.0 / anchor
        );
    };
    mrow(
        "control plane",
        "pea-control (API server, scheduler, controllers, embedded store)".into(),
        &|r| r.control,
        K3S_SERVER_MIB,
        "server 1.6 GB",
        "≤ 100 MiB",
    );
    mrow(
        "control plane + add-ons",
        "pea-control + pea-dns + pea-ingress (node 0)".into(),
        &|r| r.control_addons,
        K3S_SERVER_MIB,
        "server 1.6 GB",
        "–",
    );
    let pods = |f: fn(&Run) -> usize| median_f(runs.iter().map(|r| f(r) as f64));
    let monitor_count =
        |f: fn(&Run) -> Mem| median_f(runs.iter().map(|r| f(r).processes as f64)) - 1.0;
    mrow(
        "one node's agents, pods spread",
        format!(
            "node 1's pea-agent (pea-shim + pea-kubelet + pea-flanneld + pea-proxy; {:.0} of the {} pods on it)",
            pods(|r| r.pods_on_node_spread),
            args.replicas
        ),
        &|r| r.agents_spread,
        K3S_AGENT_MIB,
        "agent 275 MB",
        "–",
    );
    mrow(
        "… + per-container monitors",
        format!(
            "the above + node 1's {:.0} pea-monitor processes",
            monitor_count(|r| r.agents_spread_monitors)
        ),
        &|r| r.agents_spread_monitors,
        K3S_AGENT_MIB,
        "agent 275 MB",
        "–",
    );
    mrow(
        &format!("one node's agents, {} pods on it", args.replicas),
        format!(
            "node 1's pea-agent (pea-shim + pea-kubelet + pea-flanneld + pea-proxy; {:.0} pods on it)",
            pods(|r| r.pods_on_node_all)
        ),
        &|r| r.agents_all,
        K3S_AGENT_MIB,
        "agent 275 MB",
        "≤ 40 MiB",
    );
    mrow(
        "… + per-container monitors",
        format!(
            "the above + node 1's {:.0} pea-monitor processes",
            monitor_count(|r| r.agents_all_monitors)
        ),
        &|r| r.agents_all_monitors,
        K3S_AGENT_MIB,
        "agent 275 MB",
        "–",
    );

    // Per-step profile: steps in the order of the first run, median over runs.
    let mut by_step: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in runs {
        for (s, t) in &r.steps {
            by_step.entry(s).or_default().push(*t);
        }
    }
    println!(
        "\n`pea up` per step (its own printed timings, median of {} runs):\n",
        runs.len()
    );
    println!("| step | median |");
    println!("|---|---|");
    if let Some(first) = runs.first() {
        for (s, _) in &first.steps {
            let v = &by_step[s.as_str()];
            println!("| {s} | {:.2} s |", median_f(v.iter().copied()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_lines_pair_with_their_times() {
        let out = "pea up: checking programs\npea up:   (0.1 s)\npea up: node x7-0: namespace pea-x7-0\n\
                   pea up:   (0.3 s)\npea up: done\npea up: cluster x7 with 1 node(s) Ready in 1.0 s\n\
                   pea up: export KUBECONFIG=/k\n";
        assert_eq!(
            step_times(out, "x7"),
            vec![
                ("checking programs".to_string(), 0.1),
                ("node C-0: namespace pea-C-0".to_string(), 0.3)
            ]
        );
    }
}
