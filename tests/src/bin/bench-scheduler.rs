//! bench-scheduler: a scheduler_perf-like run of pea-scheduler on pea-control's embedded store:
//! N hollow Nodes (scheduler_perf's node template: 4 cpu, 32Gi, 110 pods), then M pods
//! (100m cpu, 500Mi each) created at the API by concurrent clients while the scheduler (in
//! this process, its own runtime, a kube client over HTTPS like any other) binds them.
//! Two phases per round: a backlog of M pods created before the scheduler starts (scheduling +
//! binding throughput), then M more created while it runs (pods bound per second and time
//! from create to bound, p50/p99, seen on a watch),
//! median over rounds. Then a Deployment of `--deployment-replicas` (1000) is applied
//! (server-side apply) with the deployment and replicaset controllers running as their own
//! ServiceAccounts, timed from apply to the last of its pods bound. Each round starts a fresh
//! server and scheduler. Last, a round of its own on `--anti-nodes` (500) nodes: as many pods,
//! each with a required anti-affinity to the others on `kubernetes.io/hostname` (so one per
//! node, the last with one feasible node left), from scheduler start to the last bound.
//! The scheduler authenticates as `system:kube-scheduler` (a certificate pea-control issues, as
//! the in-process scheduler does) and goes through RBAC like any component.
//!
//! The anchor is kube-scheduler's published scheduler_perf SchedulingBasic threshold
//! (680–810 pods/s at 5000 nodes): an upstream figure on upstream hardware, NOT measured here.
//!
//! Usage: bench-scheduler [--nodes 500] [--pods 1000] [--rounds 3] [--clients 16]
//!        [--deployment-replicas 1000] [--anti-nodes 500] [--scheduler-as-admin]
//!        (issue-sized: --nodes 5000 --pods 10000 --rounds 1 --timeout-secs 600)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use http_body_util::BodyExt;
use pea_tests::bench::{fmt_duration, quantile};
use pea_tests::control::{Backend, ControlPlane};
use pea_tests::control_client::{tls_connector, ApiClient};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
struct Args {
    /// Hollow nodes.
    #[arg(long, default_value_t = 500)]
    nodes: usize,
    /// Pods to schedule (measured).
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Rounds, each on a fresh server and scheduler.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent API clients creating nodes and pods.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Give up a round after this long.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Replicas of the Deployment applied after the streaming phase (0: skip).
    #[arg(long, default_value_t = 1000)]
    deployment_replicas: usize,
    /// Nodes (and pods) of the anti-affinity round (0: skip).
    #[arg(long, default_value_t = 500)]
    anti_nodes: usize,
    /// Run the scheduler as the admin (system:masters: RBAC is not consulted) instead of
    /// `system:kube-scheduler`, to measure what its own identity costs.
    #[arg(long)]
    scheduler_as_admin: bool,
}

/// One round's result.
#[derive(Debug)]
struct Round {
    /// Backlog phase: pods bound, and time from scheduler start to the last of them bound.
    backlog_bound: usize,
    backlog_elapsed: Duration,
    /// CPU time this whole process (server, scheduler, driver) used over the backlog phase.
    backlog_cpu: Duration,
    bound: usize,
    /// First create sent → last pod seen bound.
    elapsed: Duration,
    /// First create sent → last create answered.
    create_elapsed: Duration,
    to_bound: Vec<Duration>,
    /// Deployment: apply → last pod bound, and apply → each pod bound.
    deploy: Option<(usize, Duration, Vec<Duration>)>,
}

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})
}

fn node_status() -> Value {
    let r = json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
    json!({"status": {"capacity": r, "allocatable": r, "conditions": [{"type": "Ready", "status": "True",
        "reason": "KubeletReady", "message": "hollow", "lastHeartbeatTime": "2026-01-01T00:00:00Z",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
}

fn pod_spec() -> Value {
    json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
        "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]})
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "sched"}},
        "spec": pod_spec()})
}

/// scheduler_perf's anti-affinity pod: required anti-affinity to its own kind per hostname.
fn anti_pod(name: &str) -> Value {
    let mut spec = pod_spec();
    spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"bench": "anti"}}, "topologyKey": "kubernetes.io/hostname"}]}});
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "anti"}},
        "spec": spec})
}

fn deployment(replicas: usize) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bench"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"bench": "deploy"}},
            "template": {"metadata": {"labels": {"bench": "deploy"}}, "spec": pod_spec()}}})
}

/// When each pod was sent, by name, shared by the clients that create them.
type SentTimes = Arc<Mutex<HashMap<String, Instant>>>;

/// Runs `ops` (index → (method, path, content type, body)) over `clients` connections.
async fn fan_out(
    cp: &ControlPlane,
    clients: usize,
    ops: usize,
    op: impl Fn(usize) -> (&'static str, String, &'static str, Vec<u8>) + Send + Sync + 'static,
    sent: Option<(&'static str, SentTimes)>,
) -> Result<()> {
    let connector = tls_connector(&cp.running().pki.ca.cert_pem)?;
    let token = cp.running().admin_token.clone();
    let op = Arc::new(op);
    let mut tasks = Vec::new();
    for c in 0..clients.max(1) {
        let mut client = ApiClient::connect(cp.addr, &connector, &token).await?;
        let (op, sent) = (op.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while i < ops {
                let (method, path, ctype, body) = op(i);
                if let Some((prefix, s)) = &sent {
                    s.lock()
                        .unwrap()
                        .insert(format!("{prefix}{i}"), Instant::now());
                }
                let (code, resp) = client.call_typed(method, &path, ctype, Some(body)).await?;
                if !(200..300).contains(&code) {
                    bail!("{method} {path}: {code} {}", String::from_utf8_lossy(&resp));
                }
                i += clients;
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Pods seen bound (first time each shows a nodeName), by name, with when.
type BoundTimes = Arc<Mutex<HashMap<String, Instant>>>;

/// A watch on the default namespace's pods matching `selector`, recording each binding;
/// ends when `want` pods were seen bound or the server ends the watch.
async fn watch_bound(
    cp: &ControlPlane,
    selector: &str,
    want: usize,
    timeout: Duration,
) -> Result<(BoundTimes, tokio::task::JoinHandle<()>)> {
    let connector = tls_connector(&cp.running().pki.ca.cert_pem)?;
    let token = cp.running().admin_token.clone();
    let mut c = ApiClient::connect(cp.addr, &connector, &token).await?;
    let (_, body) = c
        .call("GET", "/api/v1/namespaces/default/pods?limit=1", None)
        .await?;
    let rv = serde_json::from_slice::<Value>(&body)?["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let bound: BoundTimes = Arc::default();
    let mut w = ApiClient::connect(cp.addr, &connector, &token).await?;
    let resp = w
        .send(
            "GET",
            &format!(
                "/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&labelSelector={}&timeoutSeconds={}",
                selector.replace('=', "%3D"),
                timeout.as_secs() + 60
            ),
            None,
        )
        .await?;
    let watch_bound = bound.clone();
    let watcher = tokio::spawn(async move {
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        while watch_bound.lock().unwrap().len() < want {
            let Some(Ok(frame)) = body.frame().await else {
                break;
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let now = Instant::now();
            buf.extend_from_slice(&data);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let obj = &ev["object"];
                if obj["spec"]["nodeName"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty())
                {
                    if let Some(name) = obj["metadata"]["name"].as_str() {
                        watch_bound
                            .lock()
                            .unwrap()
                            .entry(name.to_string())
                            .or_insert(now);
                    }
                }
            }
        }
    });
    // Let the watch be registered before anything it should see happens.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok((bound, watcher))
}

/// How many bound pods' names start with `prefix`, and when the last of them was bound.
fn count_bound(bound: &BoundTimes, prefix: &str) -> (usize, Option<Instant>) {
    let b = bound.lock().unwrap();
    let times: Vec<Instant> = b
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, t)| *t)
        .collect();
    (times.len(), times.into_iter().max())
}

/// Waits (bounded by `deadline`) until `want` pods named `prefix*` are bound.
async fn wait_bound(bound: &BoundTimes, prefix: &str, want: usize, deadline: Instant) {
    while count_bound(bound, prefix).0 < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `n` hollow Nodes (created, then their status written, as a kubelet would).
async fn hollow_nodes(cp: &ControlPlane, clients: usize, n: usize) -> Result<()> {
    fan_out(
        cp,
        clients,
        n,
        |i| {
            (
                "POST",
                "/api/v1/nodes".into(),
                "application/json",
                node(&format!("n-{i}")).to_string().into_bytes(),
            )
        },
        None,
    )
    .await?;
    fan_out(
        cp,
        clients,
        n,
        |i| {
            (
                "PATCH",
                format!("/api/v1/nodes/n-{i}/status"),
                "application/merge-patch+json",
                node_status().to_string().into_bytes(),
            )
        },
        None,
    )
    .await
}

/// Starts the scheduler on `rt` as pea-control's in-process one runs: `system:kube-scheduler`.
async fn start_scheduler(
    cp: &ControlPlane,
    rt: &tokio::runtime::Handle,
    as_admin: bool,
) -> Result<()> {
    let kubeconfig = if as_admin {
        cp.kubeconfig.clone()
    } else {
        cp.running()
            .component_kubeconfig("scheduler.kubeconfig", "system:kube-scheduler", &[])?
    };
    let client = pea_scheduler::client_from_kubeconfig(&kubeconfig).await?;
    let config = pea_scheduler::SchedulerConfig {
        leader_elect: false,
        ..Default::default()
    };
    rt.spawn(async move {
        if let Err(e) = pea_scheduler::run(client, config).await {
            eprintln!("scheduler: {e}");
        }
    });
    Ok(())
}

/// Starts the deployment and replicaset controllers on `rt` as pea-control's in-process
/// manager runs them: `system:kube-controller-manager`, each controller as its ServiceAccount.
async fn start_controllers(cp: &ControlPlane, rt: &tokio::runtime::Handle) -> Result<()> {
    let kubeconfig = cp.running().component_kubeconfig(
        "controller-manager.kubeconfig",
        "system:kube-controller-manager",
        &[],
    )?;
    let clients = pea_controllers::clients_from_kubeconfig(&kubeconfig, true).await?;
    let mut config = pea_controllers::ControllersConfig {
        leader_elect: false,
        ..Default::default()
    };
    config.set_controllers("deployment,replicaset");
    rt.spawn(async move {
        if let Err(e) = pea_controllers::run(clients, config).await {
            eprintln!("controllers: {e}");
        }
    });
    Ok(())
}

/// A fresh runtime for components (the scheduler, the controllers), as separate processes.
fn component_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Named so a profile tells the components from the server and the driver.
        .thread_name("components")
        .enable_all()
        .build()?)
}

/// One round: a fresh server (its own runtime), the scheduler and controllers on another
/// runtime, the driver on `rt`. Runtimes are made and dropped here, outside any async context.
fn round(rt: &tokio::runtime::Runtime, args: &Args, r: usize) -> Result<Round> {
    let cp = ControlPlane::start(Backend::Embedded).context("start pea-control")?;
    let components = component_runtime()?;
    let res = rt.block_on(drive(&cp, components.handle(), args, r));
    // Stop the components before the server so they do not log a storm of watch errors.
    components.shutdown_timeout(Duration::from_secs(5));
    drop(cp);
    res
}

async fn drive(
    cp: &ControlPlane,
    components: &tokio::runtime::Handle,
    args: &Args,
    r: usize,
) -> Result<Round> {
    let t = Instant::now();
    hollow_nodes(cp, args.clients, args.nodes).await?;
    eprintln!(
        "round {r}: {} hollow nodes in {}",
        args.nodes,
        fmt_duration(t.elapsed())
    );

    // Backlog: pods waiting before the scheduler starts, so the first phase measures
    // scheduling + binding without the create rate in the way.
    fan_out(
        cp,
        args.clients,
        args.pods,
        |i| {
            (
                "POST",
                "/api/v1/namespaces/default/pods".into(),
                "application/json",
                pod(&format!("b-{i}")).to_string().into_bytes(),
            )
        },
        None,
    )
    .await?;

    let timeout = Duration::from_secs(args.timeout_secs);
    let (bound, watcher) = watch_bound(cp, "bench=sched", 2 * args.pods, 2 * timeout).await?;

    // The scheduler starts (lists, syncs, then works through the backlog).
    let sched_started = Instant::now();
    let cpu_started = process_cpu();
    start_scheduler(cp, components, args.scheduler_as_admin).await?;
    wait_bound(&bound, "b-", args.pods, Instant::now() + timeout).await;
    let backlog_cpu = process_cpu().saturating_sub(cpu_started);
    let (backlog_bound, backlog_last) = count_bound(&bound, "b-");
    let backlog_elapsed = backlog_last
        .unwrap_or(sched_started)
        .saturating_duration_since(sched_started);
    eprintln!(
        "round {r}: backlog of {backlog_bound} pods bound {} after the scheduler started ({} CPU)",
        fmt_duration(backlog_elapsed),
        fmt_duration(backlog_cpu)
    );

    // Streaming: pods created while the scheduler runs; time from create to bound.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    fan_out(
        cp,
        args.clients,
        args.pods,
        |i| {
            (
                "POST",
                "/api/v1/namespaces/default/pods".into(),
                "application/json",
                pod(&format!("p-{i}")).to_string().into_bytes(),
            )
        },
        Some(("p-", sent.clone())),
    )
    .await?;
    let create_elapsed = started.elapsed();
    let _ = tokio::time::timeout(timeout, watcher).await;
    let (n, last) = count_bound(&bound, "p-");
    let sent = sent.lock().unwrap().clone();
    let to_bound: Vec<Duration> = bound
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("p-"))
        .filter_map(|(name, at)| sent.get(name).map(|s| at.saturating_duration_since(*s)))
        .collect();

    let deploy = if args.deployment_replicas > 0 {
        Some(deploy_phase(cp, components, args, r).await?)
    } else {
        None
    };
    Ok(Round {
        backlog_bound,
        backlog_elapsed,
        backlog_cpu,
        bound: n,
        elapsed: last.unwrap_or(started).saturating_duration_since(started),
        create_elapsed,
        to_bound,
        deploy,
    })
}

/// The controllers start (and sync) first; then one server-side apply of the Deployment, and
/// the time from it to each of its pods bound (the deployment controller makes the
/// ReplicaSet, the replicaset controller the pods, 500 per sync as kube's burst, the scheduler
/// binds them).
async fn deploy_phase(
    cp: &ControlPlane,
    components: &tokio::runtime::Handle,
    args: &Args,
    r: usize,
) -> Result<(usize, Duration, Vec<Duration>)> {
    let timeout = Duration::from_secs(args.timeout_secs);
    start_controllers(cp, components).await?;
    // Give the controllers their tokens and informers before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let want = args.deployment_replicas;
    let (bound, watcher) = watch_bound(cp, "bench=deploy", want, timeout).await?;
    let connector = tls_connector(&cp.running().pki.ca.cert_pem)?;
    let mut c = ApiClient::connect(cp.addr, &connector, &cp.running().admin_token).await?;
    let applied = Instant::now();
    let (code, body) = c
        .call_typed(
            "PATCH",
            "/apis/apps/v1/namespaces/default/deployments/bench?fieldManager=bench-scheduler",
            "application/apply-patch+yaml",
            Some(deployment(want).to_string().into_bytes()),
        )
        .await?;
    if !(200..300).contains(&code) {
        bail!(
            "apply of the Deployment: {code} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let _ = tokio::time::timeout(timeout, watcher).await;
    let (n, last) = count_bound(&bound, "bench-");
    let to_bound: Vec<Duration> = bound
        .lock()
        .unwrap()
        .values()
        .map(|at| at.saturating_duration_since(applied))
        .collect();
    let elapsed = last.unwrap_or(applied).saturating_duration_since(applied);
    eprintln!(
        "round {r}: Deployment of {want}: {n} pods bound {} after the apply",
        fmt_duration(elapsed)
    );
    Ok((n, elapsed, to_bound))
}

/// The anti-affinity round: `--anti-nodes` nodes, as many pods each anti-affine to the others
/// per hostname, created before the scheduler starts; scheduler start → last bound.
fn anti_round(rt: &tokio::runtime::Runtime, args: &Args) -> Result<(usize, Duration)> {
    let cp = ControlPlane::start(Backend::Embedded).context("start pea-control")?;
    let components = component_runtime()?;
    let res = rt.block_on(async {
        let n = args.anti_nodes;
        hollow_nodes(&cp, args.clients, n).await?;
        fan_out(
            &cp,
            args.clients,
            n,
            |i| {
                (
                    "POST",
                    "/api/v1/namespaces/default/pods".into(),
                    "application/json",
                    anti_pod(&format!("a-{i}")).to_string().into_bytes(),
                )
            },
            None,
        )
        .await?;
        let timeout = Duration::from_secs(args.timeout_secs);
        let (bound, watcher) = watch_bound(&cp, "bench=anti", n, timeout).await?;
        let started = Instant::now();
        start_scheduler(&cp, components.handle(), args.scheduler_as_admin).await?;
        let _ = tokio::time::timeout(timeout, watcher).await;
        let (bound_n, last) = count_bound(&bound, "a-");
        // One pod per node, as the anti-affinity requires.
        let nodes: std::collections::HashSet<String> = {
            let connector = tls_connector(&cp.running().pki.ca.cert_pem)?;
            let mut c =
                ApiClient::connect(cp.addr, &connector, &cp.running().admin_token).await?;
            let (_, body) = c
                .call(
                    "GET",
                    "/api/v1/namespaces/default/pods?labelSelector=bench%3Danti",
                    None,
                )
                .await?;
            let list: Value = serde_json::from_slice(&body)?;
            list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
                .collect()
        };
        if nodes.len() != bound_n {
            bail!(
                "anti-affinity broken: {bound_n} pods bound on {} distinct nodes",
                nodes.len()
            );
        }
        let elapsed = last.unwrap_or(started).saturating_duration_since(started);
        eprintln!(
            "anti-affinity: {bound_n}/{n} pods bound on distinct nodes {} after the scheduler started",
            fmt_duration(elapsed)
        );
        Ok((bound_n, elapsed))
    });
    components.shutdown_timeout(Duration::from_secs(5));
    drop(cp);
    res
}

/// CPU time (user + system) this process has used so far, all threads.
fn process_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
            };
            tv(u.user_time()) + tv(u.system_time())
        })
        .unwrap_or_default()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("driver")
        .enable_all()
        .build()?;
    let mut rounds = Vec::new();
    for r in 0..args.rounds.max(1) {
        let res = round(&rt, &args, r)?;
        eprintln!(
            "round {r}: {}/{} bound in {} ({:.0} pods/s; creates took {})",
            res.bound,
            args.pods,
            fmt_duration(res.elapsed),
            res.bound as f64 / res.elapsed.as_secs_f64().max(1e-9),
            fmt_duration(res.create_elapsed)
        );
        rounds.push(res);
    }
    let backlog_rates: Vec<f64> = rounds
        .iter()
        .map(|r| r.backlog_bound as f64 / r.backlog_elapsed.as_secs_f64().max(1e-9))
        .collect();
    let rates: Vec<f64> = rounds
        .iter()
        .map(|r| r.bound as f64 / r.elapsed.as_secs_f64().max(1e-9))
        .collect();
    // What one backlog pod costs in CPU: less dependent on who else shares the machine than
    // the rate (contention still inflates it somewhat).
    let cpu_per_pod: Vec<f64> = rounds
        .iter()
        .map(|r| r.backlog_cpu.as_secs_f64() / r.backlog_bound.max(1) as f64)
        .collect();
    let create_rates: Vec<f64> = rounds
        .iter()
        .map(|r| args.pods as f64 / r.create_elapsed.as_secs_f64().max(1e-9))
        .collect();
    let p = |q: f64| -> Vec<f64> {
        rounds
            .iter()
            .filter_map(|r| quantile(&r.to_bound, q))
            .map(|d| d.as_secs_f64())
            .collect()
    };
    let all_bound = rounds
        .iter()
        .all(|r| r.bound == args.pods && r.backlog_bound == args.pods);
    println!(
        "### bench-scheduler: {} hollow nodes, {} pods (100m/500Mi), {} round(s), {} clients, embedded store\n",
        args.nodes, args.pods, args.rounds, args.clients
    );
    println!("| subject | backlog pods/s | CPU per backlog pod | streaming pods/s | create → bound p50 | p99 | pod creates/s | note |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| pea-scheduler ({}) + pea-control | {:.0} | {} | {:.0} | {} | {} | {:.0} | {} |",
        if args.scheduler_as_admin {
            "as admin, system:masters"
        } else {
            "as system:kube-scheduler"
        },
        median(backlog_rates),
        fmt_duration(Duration::from_secs_f64(median(cpu_per_pod))),
        median(rates),
        fmt_duration(Duration::from_secs_f64(median(p(0.5)))),
        fmt_duration(Duration::from_secs_f64(median(p(0.99)))),
        median(create_rates),
        if all_bound {
            "all pods bound"
        } else {
            "NOT all pods bound within the timeout"
        }
    );
    println!(
        "| kube-scheduler SchedulingBasic (anchor) | 680–810 | – | – | – | – | – | upstream scheduler_perf threshold at 5000 nodes: a published figure, not measured here |"
    );
    println!(
        "\nbacklog: {} pods created before the scheduler starts, pods / (last bound − scheduler start, incl. its initial list); CPU per backlog pod: user + system time of this whole process (server, scheduler, driver) over that phase / pods; streaming: {} more created by {} clients while it runs, pods / (last bound − first create); medians over rounds.",
        args.pods, args.pods, args.clients
    );
    let mut all_bound = all_bound;
    let deploys: Vec<&(usize, Duration, Vec<Duration>)> =
        rounds.iter().filter_map(|r| r.deploy.as_ref()).collect();
    let anti = if args.anti_nodes > 0 {
        Some(anti_round(&rt, &args)?)
    } else {
        None
    };
    if !deploys.is_empty() || anti.is_some() {
        println!(
            "
| scenario | pods bound | start → all bound | pods/s | p50 | p99 |"
        );
        println!("|---|---|---|---|---|---|");
    }
    if !deploys.is_empty() {
        let want = args.deployment_replicas;
        all_bound &= deploys.iter().all(|d| d.0 == want);
        let secs = median(deploys.iter().map(|d| d.1.as_secs_f64()).collect());
        let q = |q: f64| {
            fmt_duration(Duration::from_secs_f64(median(
                deploys
                    .iter()
                    .filter_map(|d| quantile(&d.2, q))
                    .map(|d| d.as_secs_f64())
                    .collect(),
            )))
        };
        println!(
            "| Deployment of {want} replicas, {} hollow nodes: server-side apply → every pod bound (deployment + replicaset controllers as their ServiceAccounts) | {} | {} | {:.0} | {} | {} |",
            args.nodes,
            deploys.iter().map(|d| d.0).min().unwrap_or(0),
            fmt_duration(Duration::from_secs_f64(secs)),
            want as f64 / secs.max(1e-9),
            q(0.5),
            q(0.99)
        );
    }
    if let Some((n, elapsed)) = anti {
        all_bound &= n == args.anti_nodes;
        println!(
            "| required pod anti-affinity per hostname, {} nodes, {} pods (one per node): scheduler start → last bound | {n} | {} | {:.0} | – | – |",
            args.anti_nodes,
            args.anti_nodes,
            fmt_duration(elapsed),
            n as f64 / elapsed.as_secs_f64().max(1e-9)
        );
    }
    if !all_bound {
        bail!("some pods were not bound within {} s", args.timeout_secs);
    }
    Ok(())
}
