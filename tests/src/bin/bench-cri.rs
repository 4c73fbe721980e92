//! bench-cri: pea-shim + pea-runtime against containerd 1.6 (Debian's, with its CRI plugin) +
//! runc, side by side in one run, both driven through the same CRI client
//! (`pea_tests::cri_client`) with the same pod and container configs.
//!
//! Each runtime runs in a network namespace made here (its "node"), pulls the same images (same
//! digests, pushed from one OCI layout) from its own docker-registry on that node's 127.0.0.1,
//! and wires pods with a one-plugin CNI conflist of the same shape (bridge `cni0`, gateway, no
//! masquerade, host-local /24): containerd with Debian's reference `bridge` + `host-local`
//! (plus the `loopback` plugin it runs itself), pea-shim with pea-cni; a third subject runs
//! pea-shim with containerd's exact plugins, to separate the runtime's share from the CNI
//! plugin's.
//!
//! Measured (medians, p90 and ratios through `pea_tests::bench`; nothing asserted):
//! - cold pod start: RunPodSandbox + CreateContainer + StartContainer of one busybox container,
//!   images already pulled (and each of the three calls alone);
//! - pod teardown: StopPodSandbox + RemovePodSandbox (the container exits on SIGTERM at once;
//!   containerd SIGKILLs it, pea sends SIGTERM first);
//! - `--concurrent` pods started at once (wall time), and torn down at once;
//! - memory of the processes each runtime keeps per running pod (pea: pea-monitor per container +
//!   pause; containerd: containerd-shim-runc-v2 + pause), as VmRSS and as Pss/USS from
//!   /proc/<pid>/smaps_rollup while the concurrent pods run.
//!
//! Every loop is bounded in count and in time (`--time-limit`); every CRI call has a timeout.
//! Everything is removed on exit, failures included (Drop guards): pods, containers, netns,
//! cgroups, mounts, registries, the daemons.
//!
//! Run (as root): `cargo build --release -p pea-shim -p pea-monitor -p pea-runtime -p pea-cni
//! -p pea-tests --bin bench-cri && target/release/bench-cri [--runs 50] [--concurrent 50]`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use k8s_cri::v1 as cri;
use pea_tests::bench::{fmt_duration, table, Samples};
use pea_tests::containerd_cri::{bounded, bridge_plugin, pids_where, Containerd, Images, PodSpec};
use pea_tests::cri_client::{connect, Cri};
use pea_tests::netlab::random_suffix;
use pea_tests::privileged::require_root;
use pea_tests::shim_node::{container_pid, ShimNode};
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// Cold start + teardown cycles per subject (50: the whole bench takes about a minute here).
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Pods started at once in the concurrency scenario (and measured for memory).
    #[arg(long, default_value_t = 50)]
    concurrent: usize,
    /// Rounds of the concurrency scenario per subject.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Skip the third subject (pea-shim with containerd's bridge + host-local plugins).
    #[arg(long)]
    no_same_cni: bool,
    /// pea-shim with debug logging (as the tests run it), to find where its time goes.
    #[arg(long)]
    shim_debug: bool,
    /// Also run this pea-shim binary (e.g. a copy built before a change) as one more subject,
    /// interleaved with the others: before/after in the same run, under the same load.
    #[arg(long)]
    baseline_shim: Option<PathBuf>,
    /// The baseline subject's pea-runtime (with --baseline-shim; default: the current one).
    #[arg(long, requires = "baseline_shim")]
    baseline_runtime: Option<PathBuf>,
    /// The baseline subject's pea-monitor (with --baseline-shim; default: the current one).
    #[arg(long, requires = "baseline_shim")]
    baseline_monitor: Option<PathBuf>,
    /// Give up (with what was measured so far) after this many seconds.
    #[arg(long, default_value_t = 900)]
    time_limit: u64,
}

const CONTAINERD: &str = "containerd + runc";
const PEA: &str = "pea-shim + pea-runtime";
const PEA_BRIDGE: &str = "pea-shim + pea-runtime, bridge + host-local";
const PEA_BASELINE: &str = "pea-shim (--baseline-shim) + pea-runtime";
/// Exits at once on SIGTERM (a shell as PID 1 with a trap; `wait` is interrupted by it). A
/// SIGTERM before the trap is set is lost (PID 1 ignores signals it has no handler for), and the
/// stop then waits out its grace period: "ready" in the log says the trap is set.
const SCRIPT: &str = "trap 'exit 0' TERM; echo ready; sleep 3600 & wait";

/// The binaries of the `--baseline-shim` subject.
struct Baseline {
    shim: PathBuf,
    runtime: Option<PathBuf>,
    monitor: Option<PathBuf>,
}

/// The runtime under test.
enum Backend {
    Pea(Box<ShimNode>),
    Containerd(Box<Containerd>),
}

struct Subject {
    label: &'static str,
    backend: Backend,
    spec: PodSpec,
}

impl Subject {
    fn socket(&self) -> PathBuf {
        match &self.backend {
            Backend::Pea(n) => n.socket.clone(),
            Backend::Containerd(c) => c.socket.clone(),
        }
    }

    /// The pids of the processes the runtime keeps per pod, by kind.
    fn per_pod_processes(&self) -> BTreeMap<&'static str, Vec<i32>> {
        let mut m = BTreeMap::new();
        let cg = format!("/{}/", self.spec.cgroup_root);
        m.insert(
            "pause",
            pids_where(|pid, comm, _| comm == "pause" && in_cgroup(pid, &cg)),
        );
        match &self.backend {
            Backend::Pea(n) => {
                let dir = n.dir.path().display().to_string();
                // By its arguments, not its name: a baseline's monitor may be a copy under
                // another file name (its comm), and pea-runtime never gets `--exit-file`.
                m.insert(
                    "pea-monitor",
                    pids_where(|_, _, cmd| cmd.contains(" --exit-file ") && cmd.contains(&dir)),
                );
            }
            Backend::Containerd(c) => {
                m.insert("containerd-shim-runc-v2", c.shims());
            }
        }
        m
    }

    /// The node-wide daemon (not per pod).
    fn daemon_pid(&self) -> Option<i32> {
        match &self.backend {
            Backend::Pea(n) => n.shim_pid().map(|p| p as i32),
            Backend::Containerd(c) => c.pid(),
        }
    }
}

fn pea_subject(
    label: &'static str,
    images: &Images,
    same_cni: bool,
    debug: bool,
    baseline: Option<&Baseline>,
) -> Result<Subject> {
    let mut node = ShimNode::new()?;
    let (busybox, pause) = images.push(&node.registry)?;
    node.pause = pause.clone();
    node.log_filter = if debug {
        "pea_shim=debug,info".into()
    } else {
        "warn".into()
    };
    let plugin = if same_cni {
        bridge_plugin("10.233.8.0/24", &node.ipam_data_dir())
    } else {
        let subnet = if baseline.is_some() {
            "10.233.9.0/24"
        } else {
            "10.233.7.0/24"
        };
        json!({"type": "pea-cni", "bridge": "cni0", "isGateway": true, "ipMasq": false,
               "ipam": {"type": "host-local", "subnet": subnet,
                        "dataDir": node.ipam_data_dir()}})
    };
    node.set_cni_plugins("bench", vec![plugin])?;
    match baseline {
        // ShimNode starts what PEA_SHIM (PEA_RUNTIME, PEA_MONITOR) names; still one thread
        // here, so the swap is seen by nobody else.
        Some(b) => {
            let swaps = [
                ("PEA_SHIM", Some(&b.shim)),
                ("PEA_RUNTIME", b.runtime.as_ref()),
                ("PEA_MONITOR", b.monitor.as_ref()),
            ];
            let before: Vec<_> = swaps
                .iter()
                .map(|(var, _)| (*var, std::env::var_os(var)))
                .collect();
            for (var, path) in swaps {
                if let Some(p) = path {
                    std::env::set_var(var, p);
                }
            }
            let started = node.start_shim();
            for (var, was) in before {
                match was {
                    Some(v) => std::env::set_var(var, v),
                    None => std::env::remove_var(var),
                }
            }
            started?;
        }
        None => node.start_shim()?,
    }
    let spec = PodSpec {
        busybox,
        pause,
        logs: node.path("logs"),
        cgroup_root: node.cgroup_root.clone(),
    };
    Ok(Subject {
        label,
        backend: Backend::Pea(Box::new(node)),
        spec,
    })
}

/// Whether an ELF64 executable has no program interpreter (PT_INTERP), i.e. is static.
fn is_static(path: &Path) -> bool {
    let Ok(b) = std::fs::read(path) else {
        return false;
    };
    let u = |at: usize, n: usize| -> Option<u64> {
        let s = b.get(at..at + n)?;
        Some(
            s.iter()
                .rev()
                .fold(0u64, |acc, x| (acc << 8) | u64::from(*x)),
        )
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u(0x20, 8), u(0x36, 2), u(0x38, 2)) else {
        return false;
    };
    !(0..phnum).any(|i| u((phoff + i * phentsize) as usize, 4) == Some(3))
}

fn in_cgroup(pid: i32, needle: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|c| c.lines().any(|l| l.contains(needle)))
}

/// VmRSS, Pss and USS (Private_Clean + Private_Dirty) of one process, in KiB.
#[derive(Debug, Default, Clone, Copy)]
struct Mem {
    rss: u64,
    pss: u64,
    uss: u64,
}

impl std::ops::AddAssign for Mem {
    fn add_assign(&mut self, o: Mem) {
        self.rss += o.rss;
        self.pss += o.pss;
        self.uss += o.uss;
    }
}

fn kib_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mem_of(pid: i32) -> Mem {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    Mem {
        rss: kib_field(&status, "VmRSS:"),
        pss: kib_field(&rollup, "Pss:"),
        uss: kib_field(&rollup, "Private_Clean:") + kib_field(&rollup, "Private_Dirty:"),
    }
}

fn mib(kib: f64) -> String {
    if kib >= 1024.0 {
        format!("{:.2} MiB", kib / 1024.0)
    } else {
        format!("{kib:.0} KiB")
    }
}

/// A pod the bench started.
#[derive(Debug, Clone)]
struct Pod {
    id: String,
    cgroup_parent: String,
    /// The container's CRI log.
    log: PathBuf,
}

/// Waits (untimed, up to 10 s) until the pod's container has set its SIGTERM trap, so a
/// teardown right after a fast start measures the teardown, not a lost signal's grace period.
async fn wait_ready(pod: &Pod) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::fs::read_to_string(&pod.log).is_ok_and(|l| l.contains(" F ready")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "pod {}: no \"ready\" in {} after 10 s",
        pod.id,
        pod.log.display()
    );
}

fn pod_config(spec: &PodSpec, name: &str) -> Result<cri::PodSandboxConfig> {
    let uid = format!("uid-{name}-{}", random_suffix(3));
    let logs = spec.logs.join(&uid);
    // The kubelet makes the pod's log dir and each container's.
    std::fs::create_dir_all(logs.join("app"))?;
    Ok(cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid,
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.display().to_string(),
        dns_config: Some(cri::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("/{}/{name}-{}", spec.cgroup_root, random_suffix(3)),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(container_pid()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        labels: [("app".to_string(), name.to_string())].into(),
        ..Default::default()
    })
}

fn container_config(spec: &PodSpec) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: spec.busybox.clone(),
            ..Default::default()
        }),
        command: vec!["/bin/sh".into(), "-c".into(), SCRIPT.into()],
        log_path: "app/0.log".into(),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(container_pid()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The three calls of a pod start, as named in the per-RPC table.
const START_RPCS: [&str; 3] = ["RunPodSandbox", "CreateContainer", "StartContainer"];

/// RunPodSandbox + CreateContainer + StartContainer; the time covers the three calls only, and
/// each call's own time is returned too (in `START_RPCS` order).
async fn start_pod(
    c: &mut Cri,
    spec: &PodSpec,
    name: &str,
) -> Result<(Pod, Duration, [Duration; 3])> {
    let config = pod_config(spec, name)?;
    let cgroup_parent = config
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    let t0 = Instant::now();
    let id = bounded(
        "RunPodSandbox",
        c.runtime.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        }),
    )
    .await?
    .pod_sandbox_id;
    let mut rpcs = [t0.elapsed(), Duration::ZERO, Duration::ZERO];
    let pod = Pod {
        id,
        cgroup_parent,
        log: PathBuf::from(&config.log_directory).join("app/0.log"),
    };
    let started = async {
        let t = Instant::now();
        let cid = bounded(
            "CreateContainer",
            c.runtime.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.id.clone(),
                config: Some(container_config(spec)),
                sandbox_config: Some(config),
            }),
        )
        .await?
        .container_id;
        rpcs[1] = t.elapsed();
        let t = Instant::now();
        bounded(
            "StartContainer",
            c.runtime
                .start_container(cri::StartContainerRequest { container_id: cid }),
        )
        .await?;
        rpcs[2] = t.elapsed();
        anyhow::Ok(())
    }
    .await;
    let took = t0.elapsed();
    if let Err(e) = started {
        // Leave nothing: the pod goes, then the error is reported.
        let _ = teardown_pod(c, &pod).await;
        return Err(e);
    }
    Ok((pod, took, rpcs))
}

/// StopPodSandbox + RemovePodSandbox, timed; then (untimed) the pod cgroup parent goes, as the
/// kubelet removes it.
async fn teardown_pod(c: &mut Cri, pod: &Pod) -> Result<Duration> {
    let t0 = Instant::now();
    bounded(
        "StopPodSandbox",
        c.runtime.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        }),
    )
    .await?;
    bounded(
        "RemovePodSandbox",
        c.runtime.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        }),
    )
    .await?;
    let took = t0.elapsed();
    remove_cgroup_parent(&pod.cgroup_parent);
    Ok(took)
}

fn remove_cgroup_parent(parent: &str) {
    let rel = parent.trim_start_matches('/');
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_dir(h.path().join(rel));
    }
}

async fn pull(c: &mut Cri, image: &str) -> Result<()> {
    bounded(
        "PullImage",
        c.images.pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    )
    .await
    .with_context(|| format!("pulling {image}"))?;
    Ok(())
}

/// Waits until the runtime reports RuntimeReady and NetworkReady.
async fn ready(c: &mut Cri, label: &str) -> Result<()> {
    let start = Instant::now();
    loop {
        let s = bounded(
            "Status",
            c.runtime.status(cri::StatusRequest { verbose: false }),
        )
        .await?;
        let conds = s.status.map(|s| s.conditions).unwrap_or_default();
        if conds.len() >= 2 && conds.iter().all(|c| c.status) {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("{label} not ready after 30 s: {conds:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Per subject: samples for each scenario, and memory per pod.
struct Results {
    start: Samples,
    /// The cold starts' calls, one by one (`START_RPCS` order).
    rpcs: [Samples; 3],
    teardown: Samples,
    conc_start: Samples,
    conc_teardown: Samples,
    memory: Option<MemReport>,
}

struct MemReport {
    pods: usize,
    /// Per kind: process count and summed memory.
    kinds: BTreeMap<&'static str, (usize, Mem)>,
    daemon: Mem,
}

/// Starts `n` pods at once, measures memory while they run (when asked), then removes them all
/// at once. Returns (start wall, teardown wall, memory); pods that started are always removed.
async fn concurrent_round(
    s: &Subject,
    c: &Cri,
    n: usize,
    round: usize,
    measure: bool,
) -> Result<(Duration, Duration, Option<MemReport>)> {
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut c = c.clone();
            let spec = s.spec.clone();
            tokio::spawn(async move { start_pod(&mut c, &spec, &format!("conc{round}-{i}")).await })
        })
        .collect();
    let mut pods = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok((p, ..))) => pods.push(p),
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let start_wall = t0.elapsed();
    for p in &pods {
        wait_ready(p).await;
    }
    let memory = if measure && errors.is_empty() {
        // Let the last containers finish exec'ing before reading their memory.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut kinds = BTreeMap::new();
        for (kind, pids) in s.per_pod_processes() {
            let mut sum = Mem::default();
            for p in &pids {
                sum += mem_of(*p);
            }
            kinds.insert(kind, (pids.len(), sum));
        }
        Some(MemReport {
            pods: pods.len(),
            kinds,
            daemon: s.daemon_pid().map(mem_of).unwrap_or_default(),
        })
    } else {
        None
    };
    let t1 = Instant::now();
    let tasks: Vec<_> = pods
        .into_iter()
        .map(|p| {
            let mut c = c.clone();
            tokio::spawn(async move { teardown_pod(&mut c, &p).await })
        })
        .collect();
    for t in tasks {
        match t.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => errors.push(format!("teardown: {e:#}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let teardown_wall = t1.elapsed();
    if !errors.is_empty() {
        bail!(
            "{}: {} of {n} concurrent pods failed: {}",
            s.label,
            errors.len(),
            errors[0]
        );
    }
    Ok((start_wall, teardown_wall, memory))
}

async fn measure(subjects: &[Subject], args: &Args, deadline: Instant) -> Result<Vec<Results>> {
    let mut clients = Vec::new();
    for s in subjects {
        let mut c = connect(&s.socket()).await?;
        ready(&mut c, s.label).await?;
        pull(&mut c, &s.spec.busybox).await?;
        pull(&mut c, &s.spec.pause).await?;
        clients.push(c);
    }
    let mut results: Vec<Results> = subjects
        .iter()
        .map(|s| Results {
            start: Samples::new(s.label),
            rpcs: std::array::from_fn(|_| Samples::new(s.label)),
            teardown: Samples::new(s.label),
            conc_start: Samples::new(s.label),
            conc_teardown: Samples::new(s.label),
            memory: None,
        })
        .collect();
    // Warm-up (page cache, the bridge, first-pod work), untimed.
    for (s, c) in subjects.iter().zip(clients.iter_mut()) {
        for i in 0..2 {
            let (p, ..) = start_pod(c, &s.spec, &format!("warm-{i}")).await?;
            wait_ready(&p).await;
            teardown_pod(c, &p).await?;
        }
    }
    eprintln!("cold start + teardown, {} runs…", args.runs);
    // Interleaved, so drift in the machine's load hits every subject alike.
    'runs: for i in 0..args.runs {
        for (k, (s, c)) in subjects.iter().zip(clients.iter_mut()).enumerate() {
            if Instant::now() > deadline {
                break 'runs;
            }
            let (p, took, rpcs) = start_pod(c, &s.spec, &format!("cold-{i}")).await?;
            results[k].start.push(took);
            for (samples, d) in results[k].rpcs.iter_mut().zip(rpcs) {
                samples.push(d);
            }
            wait_ready(&p).await;
            let took = teardown_pod(c, &p).await?;
            results[k].teardown.push(took);
        }
    }
    eprintln!("{} pods at once, {} rounds…", args.concurrent, args.rounds);
    'rounds: for r in 0..args.rounds {
        for (k, (s, c)) in subjects.iter().zip(clients.iter()).enumerate() {
            if Instant::now() > deadline {
                break 'rounds;
            }
            let (st, td, mem) = concurrent_round(s, c, args.concurrent, r, r == 0).await?;
            results[k].conc_start.push(st);
            results[k].conc_teardown.push(td);
            if mem.is_some() {
                results[k].memory = mem;
            }
        }
    }
    Ok(results)
}

fn print_memory(subjects: &[Subject], results: &[Results]) {
    println!("### Memory of the processes kept per running pod\n");
    println!(
        "Measured with every pod of the concurrency scenario running. VmRSS counts every resident \
         page, shared ones (libc, the binary's text) in full in each process; Pss divides shared \
         pages among the processes mapping them; USS is the process's private pages only.\n"
    );
    println!("| subject | pods | processes per pod | VmRSS per pod | Pss per pod | USS per pod |");
    println!("|---|---|---|---|---|---|");
    for (s, r) in subjects.iter().zip(results) {
        let Some(m) = &r.memory else {
            println!("| {} | – | – | – | – | – |", s.label);
            continue;
        };
        let mut total = Mem::default();
        let mut kinds = Vec::new();
        for (kind, (count, sum)) in &m.kinds {
            total += *sum;
            kinds.push(format!(
                "{kind} ×{:.1}",
                *count as f64 / m.pods.max(1) as f64
            ));
        }
        let per = |v: u64| mib(v as f64 / m.pods.max(1) as f64);
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            s.label,
            m.pods,
            kinds.join(" + "),
            per(total.rss),
            per(total.pss),
            per(total.uss)
        );
    }
    println!("\n| process | subject | count | VmRSS each | Pss each | USS each |");
    println!("|---|---|---|---|---|---|");
    for (s, r) in subjects.iter().zip(results) {
        let Some(m) = &r.memory else { continue };
        for (kind, (count, sum)) in &m.kinds {
            let each = |v: u64| mib(v as f64 / (*count).max(1) as f64);
            println!(
                "| {kind} | {} | {count} | {} | {} | {} |",
                s.label,
                each(sum.rss),
                each(sum.pss),
                each(sum.uss)
            );
        }
        let daemon = match s.backend {
            Backend::Pea(_) => "pea-shim (node-wide)",
            Backend::Containerd(_) => "containerd (node-wide)",
        };
        println!(
            "| {daemon} | {} | 1 | {} | {} | {} |",
            s.label,
            mib(m.daemon.rss as f64),
            mib(m.daemon.pss as f64),
            mib(m.daemon.uss as f64)
        );
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    require_root();
    let deadline = Instant::now() + Duration::from_secs(args.time_limit);
    let began = Instant::now();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let ctd_version = Command::new("containerd")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let runc_version = Command::new("runc")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default();

    // pea-monitor as shipped: the static build (see shim/monitor/Cargo.toml), when it exists.
    if std::env::var_os("PEA_MONITOR").is_none() {
        let exe = std::env::current_exe()?;
        if let Some(target) = exe.parent().and_then(Path::parent) {
            let profile = exe.parent().and_then(Path::file_name).unwrap_or_default();
            let stat = target
                .join("x86_64-unknown-linux-gnu")
                .join(profile)
                .join("pea-monitor");
            if stat.is_file() {
                std::env::set_var("PEA_MONITOR", &stat);
            }
        }
    }
    let monitor = pea_tests::bins::workspace_binary("pea-monitor", "PEA_MONITOR");
    let monitor_kind = if is_static(&monitor) {
        "static"
    } else {
        "dynamic"
    };
    eprintln!("setting up the nodes (registries, daemons)…");
    // Drop order on any exit (reverse of creation): containerd, then the pea nodes.
    let images = Images::build()?;
    let mut subjects = vec![pea_subject(PEA, &images, false, args.shim_debug, None)?];
    if let Some(path) = &args.baseline_shim {
        let baseline = Baseline {
            shim: path.clone(),
            runtime: args.baseline_runtime.clone(),
            monitor: args.baseline_monitor.clone(),
        };
        subjects.push(pea_subject(
            PEA_BASELINE,
            &images,
            false,
            args.shim_debug,
            Some(&baseline),
        )?);
    }
    if !args.no_same_cni {
        subjects.push(pea_subject(
            PEA_BRIDGE,
            &images,
            true,
            args.shim_debug,
            None,
        )?);
    }
    let ctd = Containerd::start(&images, None)?;
    let spec = ctd.spec.clone();
    subjects.push(Subject {
        label: CONTAINERD,
        backend: Backend::Containerd(Box::new(ctd)),
        spec,
    });
    eprintln!("set up in {:.1} s", began.elapsed().as_secs_f64());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = rt.block_on(measure(&subjects, &args, deadline));
    drop(rt);
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            for s in &subjects {
                if let Backend::Pea(n) = &s.backend {
                    let log = n.log();
                    let lines: Vec<&str> = log.lines().collect();
                    eprintln!(
                        "--- {} log tail:\n{}",
                        s.label,
                        lines[lines.len().saturating_sub(20)..].join("\n")
                    );
                }
                if let Backend::Containerd(c) = &s.backend {
                    eprintln!("--- containerd log tail:\n{}", c.log_tail());
                }
            }
            return Err(e);
        }
    };

    println!("## pea-shim + pea-runtime vs containerd 1.6 + runc (`bench-cri`)\n");
    println!(
        "{date}, load average at start {}; {ctd_version}; {runc_version}; one busybox container per pod; \
         pea-shim logging at {}; {} ({monitor_kind}).\n",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        if args.shim_debug { "debug" } else { "warn" },
        monitor.display()
    );
    let pick =
        |f: fn(&Results) -> &Samples| results.iter().map(|r| f(r).clone()).collect::<Vec<_>>();
    let pick_rpc = |i: usize| {
        results
            .iter()
            .map(|r| r.rpcs[i].clone())
            .collect::<Vec<_>>()
    };
    print!(
        "{}",
        table(
            "Cold pod start: RunPodSandbox + CreateContainer + StartContainer",
            &pick(|r| &r.start),
            CONTAINERD
        )
    );
    println!();
    for (i, rpc) in START_RPCS.iter().enumerate() {
        print!(
            "{}",
            table(
                &format!("Cold pod start, {rpc} alone"),
                &pick_rpc(i),
                CONTAINERD
            )
        );
        println!();
    }
    print!(
        "{}",
        table(
            "Pod teardown: StopPodSandbox + RemovePodSandbox",
            &pick(|r| &r.teardown),
            CONTAINERD
        )
    );
    println!();
    print!(
        "{}",
        table(
            &format!("{} pods started at once (wall time)", args.concurrent),
            &pick(|r| &r.conc_start),
            CONTAINERD
        )
    );
    println!();
    print!(
        "{}",
        table(
            &format!("{} pods torn down at once (wall time)", args.concurrent),
            &pick(|r| &r.conc_teardown),
            CONTAINERD
        )
    );
    println!();
    print_memory(&subjects, &results);
    if Instant::now() > deadline {
        println!("\n(time limit reached: fewer samples than asked)");
    }
    eprintln!(
        "measured in {:.1} s; cleaning up…",
        began.elapsed().as_secs_f64()
    );
    let mut leftovers = Vec::new();
    while let Some(s) = subjects.pop() {
        match s.backend {
            Backend::Pea(mut node) => {
                node.teardown()?;
                leftovers.extend(
                    node.leftovers()
                        .into_iter()
                        .map(|l| format!("{}: {l}", s.label)),
                );
            }
            Backend::Containerd(c) => drop(c),
        }
    }
    if !leftovers.is_empty() {
        eprintln!("pea left behind: {leftovers:?}");
    }
    eprintln!("done in {}", fmt_duration(began.elapsed()));
    Ok(())
}
