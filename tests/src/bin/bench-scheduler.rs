//! bench-scheduler: a scheduler_perf-like run of pea-scheduler on pea-control's embedded store:
//! N hollow Nodes (scheduler_perf's node template: 4 cpu, 32Gi, 110 pods), then M pods
//! (100m cpu, 500Mi each) created at the API by concurrent clients while the scheduler (in
//! this process, its own runtime, a kube client over HTTPS like any other) binds them.
//! Two phases per round: a backlog of M pods created before the scheduler starts (scheduling +
//! binding throughput), then M more created while it runs (pods bound per second and time
//! from create to bound, p50/p99, seen on a watch),
//! median over rounds. Each round starts a fresh server and scheduler. Bounded in time.
//!
//! The anchor is kube-scheduler's published scheduler_perf SchedulingBasic threshold
//! (680–810 pods/s at 5000 nodes): an upstream figure on upstream hardware, NOT measured here.
//!
//! Usage: bench-scheduler [--nodes 500] [--pods 1000] [--rounds 3] [--clients 16]
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
}

/// One round's result.
#[derive(Debug)]
struct Round {
    /// Backlog phase: pods bound, and time from scheduler start to the last of them bound.
    backlog_bound: usize,
    backlog_elapsed: Duration,
    bound: usize,
    /// First create sent → last pod seen bound.
    elapsed: Duration,
    /// First create sent → last create answered.
    create_elapsed: Duration,
    to_bound: Vec<Duration>,
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

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "sched"}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]}})
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

/// One round: a fresh server (its own runtime), the scheduler on another runtime, the driver
/// on `rt`. Runtimes are made and dropped here, outside any async context.
fn round(rt: &tokio::runtime::Runtime, args: &Args, r: usize) -> Result<Round> {
    let cp = ControlPlane::start(Backend::Embedded).context("start pea-control")?;
    // The scheduler on its own runtime, as a separate component would be.
    let sched_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let res = rt.block_on(drive(&cp, sched_rt.handle(), args, r));
    // Stop the scheduler before the server so it does not log a storm of watch errors.
    sched_rt.shutdown_timeout(Duration::from_secs(5));
    drop(cp);
    res
}

async fn drive(
    cp: &ControlPlane,
    sched: &tokio::runtime::Handle,
    args: &Args,
    r: usize,
) -> Result<Round> {
    let t = Instant::now();
    fan_out(
        cp,
        args.clients,
        args.nodes,
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
        args.clients,
        args.nodes,
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
    .await?;
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

    // One watch sees every binding (first time a pod shows a nodeName).
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut w = ApiClient::connect(cp.addr, &connector, &token).await?;
    let resp = w
        .send(
            "GET",
            &format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}&labelSelector=bench%3Dsched&timeoutSeconds={}", 2 * args.timeout_secs + 60),
            None,
        )
        .await?;
    let want = 2 * args.pods;
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
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The scheduler starts (lists, syncs, then works through the backlog).
    let sched_started = Instant::now();
    let client = pea_scheduler::client_from_kubeconfig(&cp.kubeconfig).await?;
    let config = pea_scheduler::SchedulerConfig {
        leader_elect: false,
        ..Default::default()
    };
    sched.spawn(async move {
        if let Err(e) = pea_scheduler::run(client, config).await {
            eprintln!("scheduler: {e}");
        }
    });
    let count = |prefix: &str| -> (usize, Option<Instant>) {
        let b = bound.lock().unwrap();
        let times: Vec<Instant> = b
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, t)| *t)
            .collect();
        (times.len(), times.into_iter().max())
    };
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    while count("b-").0 < args.pods && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (backlog_bound, backlog_last) = count("b-");
    let backlog_elapsed = backlog_last
        .unwrap_or(sched_started)
        .saturating_duration_since(sched_started);
    eprintln!(
        "round {r}: backlog of {backlog_bound} pods bound {} after the scheduler started",
        fmt_duration(backlog_elapsed)
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
    let _ = tokio::time::timeout(Duration::from_secs(args.timeout_secs), watcher).await;
    let (n, last) = count("p-");
    let sent = sent.lock().unwrap().clone();
    let to_bound: Vec<Duration> = bound
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("p-"))
        .filter_map(|(name, at)| sent.get(name).map(|s| at.saturating_duration_since(*s)))
        .collect();
    Ok(Round {
        backlog_bound,
        backlog_elapsed,
        bound: n,
        elapsed: last.unwrap_or(started).saturating_duration_since(started),
        create_elapsed,
        to_bound,
    })
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
    println!("| subject | backlog pods/s | streaming pods/s | create → bound p50 | p99 | pod creates/s | note |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| pea-scheduler + pea-control | {:.0} | {:.0} | {} | {} | {:.0} | {} |",
        median(backlog_rates),
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
        "| kube-scheduler SchedulingBasic (anchor) | 680–810 | – | – | – | – | upstream scheduler_perf threshold at 5000 nodes: a published figure, not measured here |"
    );
    println!(
        "\nbacklog: {} pods created before the scheduler starts, pods / (last bound − scheduler start, incl. its initial list); streaming: {} more created by {} clients while it runs, pods / (last bound − first create); medians over rounds.",
        args.pods, args.pods, args.clients
    );
    if !all_bound {
        bail!("some pods were not bound within {} s", args.timeout_secs);
    }
    Ok(())
}
