//! bench-kubelet: pea-kubelet on pea-shim against pea-kubelet on containerd 1.6's CRI (with
//! runc), same run, same kind of node (tests/src/kubelet_node.rs: the real pea-control, pea-cni's
//! network, a loopback registry, busybox), one node per runtime, measured one after the other.
//!
//! - create → Ready: from the moment a watch sees the pod appear in the API (ADDED) to the moment
//!   the same watch sees `Ready=True` (both read from one `kubectl get -w` stream, so its own
//!   latency cancels), for one pod at a time (`--runs`) and for `--concurrent` pods created at
//!   once (wall time from the first ADDED to the last Ready);
//! - the kubelet's RSS (VmRSS) and CPU (utime+stime over `--window` seconds, as % of one core)
//!   with 0 and with `--idle-pods` running pods.
//!
//! Pods are busybox `sleep`, BestEffort, no probes. The kubelet logs at `warn`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use pea_tests::bench::{fmt_duration, table, Samples};
use pea_tests::kubelet_node::{KubeletNode, NodeOptions, Runtime};
use pea_tests::privileged::require_root;

#[derive(Debug, Parser)]
struct Args {
    /// One-pod create → Ready cycles per runtime.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Pods created at once.
    #[arg(long, default_value_t = 30)]
    concurrent: usize,
    /// Running pods for the kubelet's steady RSS/CPU.
    #[arg(long, default_value_t = 100)]
    idle_pods: usize,
    /// Seconds over which the kubelet's CPU is measured.
    #[arg(long, default_value_t = 10)]
    window: u64,
    /// Give up (with what was measured so far) after this many seconds.
    #[arg(long, default_value_t = 900)]
    time_limit: u64,
}

const PEA: &str = "pea-kubelet + pea-shim";
const CONTAINERD: &str = "pea-kubelet + containerd 1.6 (runc)";

/// When the watch first saw each pod, and when it first saw it Ready.
#[derive(Default)]
struct Seen {
    added: HashMap<String, Instant>,
    ready: HashMap<String, Instant>,
}

/// `kubectl get pods -w` on one node, its lines timestamped by a reader thread.
struct Watch {
    child: Child,
    seen: Arc<Mutex<Seen>>,
}

impl Watch {
    fn start(n: &KubeletNode) -> Result<Self> {
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", n.node.netns.path().display()))
            .arg("kubectl")
            .arg("--kubeconfig")
            .arg(&n.admin)
            .args([
                "get",
                "pods",
                "-w",
                "-o",
                r#"jsonpath={.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}"#,
            ])
            .env("HOME", n.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("kubectl get -w")?;
        let out = child.stdout.take().expect("stdout");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let now = Instant::now();
                let mut it = line.split_whitespace();
                let Some(name) = it.next() else { continue };
                let mut s = s.lock().expect("seen");
                s.added.entry(name.to_string()).or_insert(now);
                if it.next() == Some("True") {
                    s.ready.entry(name.to_string()).or_insert(now);
                }
            }
        });
        Ok(Self { child, seen })
    }

    /// (added, ready) of `name` once it is Ready.
    fn times(&self, name: &str) -> Option<(Instant, Instant)> {
        let s = self.seen.lock().expect("seen");
        Some((*s.added.get(name)?, *s.ready.get(name)?))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pods_yaml(image: &str, names: &[String]) -> String {
    names
        .iter()
        .map(|n| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {n}}}\nspec:\n  \
                 terminationGracePeriodSeconds: 0\n  containers:\n  \
                 - {{name: c, image: {image}, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Creates `names` at once; returns (first ADDED → last Ready) once all are Ready.
fn create_and_wait(
    n: &KubeletNode,
    w: &Watch,
    names: &[String],
    limit: Duration,
) -> Result<Duration> {
    let out = n.kubectl_stdin(&["create", "-f", "-"], Some(&pods_yaml(&n.image, names)));
    if !out.status.success() {
        bail!("kubectl create: {}", String::from_utf8_lossy(&out.stderr));
    }
    let start = Instant::now();
    loop {
        let t: Option<Vec<(Instant, Instant)>> = names.iter().map(|p| w.times(p)).collect();
        if let Some(t) = t {
            let first = t.iter().map(|x| x.0).min().expect("pods");
            let last = t.iter().map(|x| x.1).max().expect("pods");
            return Ok(last.saturating_duration_since(first));
        }
        if start.elapsed() > limit {
            bail!(
                "{} pods not Ready in {limit:?}\n--- kubelet log tail:\n{}\n--- runtime:\n{}",
                names.len(),
                pea_tests::kubelet_node::tail(&n.kubelet_log(), 30),
                n.runtime_log()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn delete_and_wait(n: &KubeletNode, names: &[String]) -> Result<()> {
    let mut args = vec!["delete", "pods", "--wait=false"];
    args.extend(names.iter().map(String::as_str));
    let _ = n.kubectl(&args);
    let start = Instant::now();
    loop {
        let left = n
            .get_json(&["pods"])
            .and_then(|v| v["items"].as_array().map(Vec::len))
            .unwrap_or(usize::MAX);
        if left == 0 {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(180) {
            bail!("{left} pods still there after 180 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (VmRSS KiB, utime+stime ticks) of `pid`.
fn proc_usage(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmRSS")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the ")" that ends comm: utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    Ok((rss, ticks))
}

/// (RSS MiB at the end, CPU % of one core) of the kubelet over `window`.
fn usage_over(n: &KubeletNode, window: Duration) -> Result<(f64, f64)> {
    let pid = n.kubelet_pid().context("kubelet pid")?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    let (_, t0) = proc_usage(pid)?;
    let start = Instant::now();
    std::thread::sleep(window);
    let (rss, t1) = proc_usage(pid)?;
    let cpu = (t1 - t0) as f64 / hz / start.elapsed().as_secs_f64() * 100.0;
    Ok((rss as f64 / 1024.0, cpu))
}

struct Results {
    one: Samples,
    conc: Samples,
    idle0: (f64, f64),
    idle_n: Option<(f64, f64)>,
}

fn node(name: &str, runtime: Runtime, max_pods: usize) -> Result<KubeletNode> {
    let mut n = KubeletNode::with(
        name,
        &NodeOptions {
            runtime,
            max_pods: max_pods as u32,
            kubelet_log_filter: "warn,libcgroups=error".into(),
            shim_log_filter: "warn".into(),
            ..Default::default()
        },
    )?;
    n.start_kubelet()?;
    let start = Instant::now();
    loop {
        let ready = n.get_json(&["node", name]).is_some_and(|v| {
            v["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        });
        if ready {
            return Ok(n);
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("node {name} not Ready: {}", n.kubelet_log());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    require_root();
    let began = Instant::now();
    let deadline = began + Duration::from_secs(args.time_limit);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let max_pods = args.idle_pods.max(args.concurrent) + 10;
    eprintln!("setting up both nodes…");
    let nodes = [
        (PEA, node("bench-pea", Runtime::PeaShim, max_pods)?),
        (
            CONTAINERD,
            node("bench-ctd", Runtime::Containerd, max_pods)?,
        ),
    ];
    let watches = nodes
        .iter()
        .map(|(_, n)| Watch::start(n))
        .collect::<Result<Vec<_>>>()?;
    let mut res: Vec<Results> = nodes
        .iter()
        .map(|(l, _)| Results {
            one: Samples::new(*l),
            conc: Samples::new(*l),
            idle0: (0.0, 0.0),
            idle_n: None,
        })
        .collect();
    let window = Duration::from_secs(args.window);
    // Idle kubelets first (after the image is pulled once, as on a warm node).
    for (i, (_, n)) in nodes.iter().enumerate() {
        let warm = vec![format!("warm-{i}")];
        create_and_wait(n, &watches[i], &warm, Duration::from_secs(60))?;
        delete_and_wait(n, &warm)?;
        std::thread::sleep(Duration::from_secs(2));
        res[i].idle0 = usage_over(n, window)?;
    }
    // One pod at a time, the runtimes alternating.
    for r in 0..args.runs {
        for (i, (_, n)) in nodes.iter().enumerate() {
            let p = vec![format!("one-{r}")];
            let d = create_and_wait(n, &watches[i], &p, Duration::from_secs(60))?;
            res[i].one.push(d);
            delete_and_wait(n, &p)?;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    for (i, (_, n)) in nodes.iter().enumerate() {
        let names: Vec<String> = (0..args.concurrent).map(|k| format!("conc-{k}")).collect();
        let d = create_and_wait(n, &watches[i], &names, Duration::from_secs(180))?;
        res[i].conc.push(d);
        delete_and_wait(n, &names)?;
    }
    for (i, (_, n)) in nodes.iter().enumerate() {
        if Instant::now() > deadline {
            break;
        }
        let names: Vec<String> = (0..args.idle_pods).map(|k| format!("idle-{k}")).collect();
        create_and_wait(n, &watches[i], &names, Duration::from_secs(400))?;
        std::thread::sleep(Duration::from_secs(5));
        res[i].idle_n = Some(usage_over(n, window)?);
        delete_and_wait(n, &names)?;
    }

    println!("## pea-kubelet on pea-shim vs on containerd 1.6's CRI (`bench-kubelet`)\n");
    println!(
        "load average at start {}; busybox `sleep` pods, BestEffort, no probes; kubelet and pea-shim logging at warn; \
         nodeStatusUpdateFrequency 2s; maxPods {max_pods}.\n",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    let rows = |f: fn(&Results) -> &Samples| res.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
    print!(
        "{}",
        table(
            "One pod: create (API) → Ready=True",
            &rows(|r| &r.one),
            CONTAINERD
        )
    );
    println!();
    print!(
        "{}",
        table(
            &format!(
                "{} pods created at once: first created → last Ready",
                args.concurrent
            ),
            &rows(|r| &r.conc),
            CONTAINERD
        )
    );
    println!(
        "\n### The kubelet's own resources (VmRSS; utime+stime over {} s)\n",
        args.window
    );
    println!(
        "| subject | RSS, 0 pods | CPU, 0 pods | RSS, {n} pods | CPU, {n} pods |",
        n = args.idle_pods
    );
    println!("|---|---|---|---|---|");
    for r in &res {
        let (a, b) = r.idle_n.map_or(("–".into(), "–".into()), |(m, c)| {
            (format!("{m:.1} MiB"), format!("{c:.1} %"))
        });
        println!(
            "| {} | {:.1} MiB | {:.1} % | {a} | {b} |",
            r.one.subject, r.idle0.0, r.idle0.1
        );
    }
    if Instant::now() > deadline {
        println!("\n(time limit reached: fewer samples than asked)");
    }
    drop(watches);
    eprintln!(
        "measured in {}; cleaning up…",
        fmt_duration(began.elapsed())
    );
    drop(nodes);
    eprintln!("done in {}", fmt_duration(began.elapsed()));
    Ok(())
}
