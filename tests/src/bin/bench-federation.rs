//! bench-federation: templates applied to the federation API → objects in every member, and →
//! status summed back, as p50/p99; RSS of the pea-federation process (run as its own program,
//! its log kept in a file) and of the members.
//!
//! The scale is 100 members × 50 hollow nodes × 1 000 Deployments; `--members`,
//! `--nodes-per-member` and `--deployments` scale it to what the machine holds. Members are
//! pea-control instances in this process, each with `--nodes-per-member` hollow Nodes (Ready, with
//! allocatable) and either the deployment and replicaset controllers and a hollow kubelet (pods
//! marked Ready without containers; `--workloads controllers`) or only a hollow status writer
//! that marks each Deployment ready at once (`--workloads hollow-status`, for the full scale,
//! where 100 members' controllers would not fit 2 cores). Every Deployment is Divided across all
//! members (`--replicas`, by default one per member). Times are taken from watches (one per
//! member, one on the federation) rather than by listing, so measuring adds no polling load; the
//! time from the last member reporting its share ready to the sum on the federation is what the
//! federation adds on top of the members' own work. The anchor is Karmada's published
//! 100-cluster report; it is not measured here.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Parser;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use pea_tests::bench::{fmt_duration, quantile};
use pea_tests::federation::{Federation, Member, Workloads};
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 5)]
    members: usize,
    /// Hollow Nodes created in each member (Ready, 8 CPU / 32 GiB / 110 pods allocatable).
    #[arg(long, default_value_t = 50)]
    nodes_per_member: usize,
    #[arg(long, default_value_t = 100)]
    deployments: usize,
    /// spec.replicas of each Deployment (divided across the members); default: one per member.
    #[arg(long)]
    replicas: Option<usize>,
    /// pea-federation's --resync-seconds.
    #[arg(long, default_value_t = 1.0)]
    resync_seconds: f64,
    /// Bound of the whole measurement.
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
    /// What runs the members' workloads: `controllers` (the deployment and replicaset
    /// controllers and a hollow kubelet: ReplicaSets and Pods made and marked Ready) or
    /// `hollow-status` (no controllers: each Deployment's status written as all ready at once).
    #[arg(long, default_value = "controllers")]
    workloads: String,
    /// Where pea-federation's log goes (RUST_LOG from $PEA_FEDERATION_LOG, default info).
    #[arg(long, default_value = "/tmp/bench-federation.pea-federation.log")]
    log: PathBuf,
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// First time each name was seen (per member: created; on the federation: status summed).
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// What a watch records: for each condition, the first time it held for each Deployment.
type Condition = Box<dyn Fn(&Deployment) -> bool + Send>;

/// Watches Deployments in `default` of `client`, recording the first time each of `conditions`
/// holds for each.
fn watch_deployments(
    rt: &tokio::runtime::Runtime,
    client: Client,
    conditions: Vec<Condition>,
) -> (Vec<Seen>, tokio::task::JoinHandle<()>) {
    let seen: Vec<Seen> = conditions.iter().map(|_| Seen::default()).collect();
    let s = seen.clone();
    let task = rt.spawn(async move {
        let api: Api<Deployment> = Api::namespaced(client, "default");
        let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            let now = Instant::now();
            let d = match ev {
                Ok(watcher::Event::Apply(d)) | Ok(watcher::Event::InitApply(d)) => d,
                _ => continue,
            };
            for (done, seen) in conditions.iter().zip(&s) {
                if done(&d) {
                    seen.lock().unwrap().entry(d.name_any()).or_insert(now);
                }
            }
        }
    });
    (seen, task)
}

/// All of a Deployment's replicas ready (as its own status says).
fn ready(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    d.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
        == want
}

/// Per template, the time from its apply to the last of `seen` (None until every one saw it).
fn last_of(seen: &[&Seen], applied: &BTreeMap<String, Instant>) -> BTreeMap<String, Duration> {
    let maps: Vec<_> = seen.iter().map(|s| s.lock().unwrap()).collect();
    applied
        .iter()
        .filter_map(|(name, t)| {
            let last = maps
                .iter()
                .map(|m| m.get(name).copied())
                .collect::<Option<Vec<Instant>>>()?
                .into_iter()
                .max()?;
            Some((name.clone(), last.saturating_duration_since(*t)))
        })
        .collect()
}

fn node(name: &str) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"type": "hollow"}}}))
        .expect("node")
}

fn node_status() -> serde_json::Value {
    let res = json!({"cpu": "8", "memory": "32Gi", "pods": "110"});
    json!({"status": {"capacity": res, "allocatable": res,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "hollow node", "lastHeartbeatTime": k8s_openapi::chrono::Utc::now()
                .to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true)}]}})
}

/// `n` hollow Nodes in the member behind `client`, 8 writes in flight.
async fn hollow_nodes(client: Client, n: usize) -> Result<()> {
    let api: Api<Node> = Api::all(client);
    let results: Vec<Result<()>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("hollow-{i}");
                api.create(&PostParams::default(), &node(&name)).await?;
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(node_status()))
                    .await?;
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let workloads = match args.workloads.as_str() {
        "controllers" => Workloads::Controllers,
        "hollow-status" => Workloads::HollowStatus,
        w => bail!("--workloads: {w:?} is neither controllers nor hollow-status"),
    };
    let replicas = args.replicas.unwrap_or(args.members);
    let dir = tempfile::tempdir()?;
    let me = std::process::id();
    let rss_start = status_kib(me, "VmRSS:").unwrap_or(0);
    let fed = Federation::plane();
    let rss_plane = status_kib(me, "VmRSS:").unwrap_or(0);
    let started = Instant::now();
    let members: Vec<Member> = (0..args.members)
        .map(|i| Member::start_with(&format!("m{i:03}"), dir.path(), workloads))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let member_clients: Vec<Client> = members
        .iter()
        .map(|m| rt.block_on(pea_federation::client_from_kubeconfig(&m.cp.kubeconfig)))
        .collect::<Result<_, _>>()?;
    rt.block_on(async {
        futures_util::stream::iter(member_clients.iter().cloned())
            .map(|c| hollow_nodes(c, args.nodes_per_member))
            .buffer_unordered(4)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>()
    })?;
    for m in &members {
        fed.join(m, &[]);
    }
    eprintln!(
        "{} members with {} hollow nodes each started and joined in {}",
        members.len(),
        args.nodes_per_member,
        fmt_duration(started.elapsed())
    );
    let rss_members = status_kib(me, "VmRSS:").unwrap_or(0);
    // Members joined first, then the controller (the order the standalone-binary test checks).
    let filter =
        std::env::var("PEA_FEDERATION_LOG").unwrap_or_else(|_| "pea_federation=info".into());
    let mut ctl = fed.spawn_controller(
        &args.log,
        &filter,
        &["--resync-seconds", &args.resync_seconds.to_string()],
    );
    let pid = ctl.pid();
    let fed_client: Client =
        rt.block_on(pea_federation::client_from_kubeconfig(&fed.cp.kubeconfig))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = fed.k.ok(&["get", "clusters"]);
        if out.lines().filter(|l| l.contains(" True ")).count() == members.len() {
            break;
        }
        ctl.assert_running();
        if Instant::now() > deadline {
            bail!(
                "members not Ready after 120 s (pea-federation's log: {}):\n{out}",
                args.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    fed.k.ok_stdin(
        &["apply", "-f", "-"],
        &json!({"apiVersion": "policy.karmada.io/v1alpha1", "kind": "ClusterPropagationPolicy",
            "metadata": {"name": "bench"},
            "spec": {"resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment"}],
                "placement": {"replicaScheduling": {"replicaSchedulingType": "Divided",
                    "replicaDivisionPreference": "Weighted"}}}})
        .to_string(),
    );
    let rss_idle = status_kib(pid, "VmRSS:");

    // Per member: created, and all of its share ready (the members' own controllers' work).
    let watches: Vec<(Vec<Seen>, tokio::task::JoinHandle<()>)> = member_clients
        .iter()
        .map(|c| {
            let conditions: Vec<Condition> = vec![Box::new(|_| true), Box::new(ready)];
            watch_deployments(&rt, c.clone(), conditions)
        })
        .collect();
    let want = replicas as i32;
    let summed_condition: Condition =
        Box::new(move |d| d.status.as_ref().and_then(|s| s.ready_replicas) == Some(want));
    let (summed_seen, summed_task) =
        watch_deployments(&rt, fed_client.clone(), vec![summed_condition]);
    let deployments: Api<Deployment> = Api::namespaced(fed_client.clone(), "default");
    let mut applied: BTreeMap<String, Instant> = BTreeMap::new();
    let t0 = Instant::now();
    for i in 0..args.deployments {
        let name = format!("bench-{i:04}");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "registry.local/busybox:1",
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}}))?;
        rt.block_on(deployments.create(&PostParams::default(), &d))?;
        applied.insert(name, Instant::now());
    }
    let apply_all = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
    let mut peak_rss = 0;
    let mut peak_bench = 0;
    let created: Vec<&Seen> = watches.iter().map(|(s, _)| &s[0]).collect();
    let member_ready: Vec<&Seen> = watches.iter().map(|(s, _)| &s[1]).collect();
    let (mut placed, mut ready_everywhere, mut summed);
    loop {
        placed = last_of(&created, &applied);
        ready_everywhere = last_of(&member_ready, &applied);
        summed = last_of(&[&summed_seen[0]], &applied);
        peak_rss = peak_rss.max(status_kib(pid, "VmRSS:").unwrap_or(0));
        peak_bench = peak_bench.max(status_kib(me, "VmRSS:").unwrap_or(0));
        if (placed.len() == applied.len() && summed.len() == applied.len())
            || Instant::now() > deadline
        {
            break;
        }
        ctl.assert_running();
        std::thread::sleep(Duration::from_millis(200));
    }
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    let show = |v: &BTreeMap<String, Duration>, q: f64| {
        let s: Vec<Duration> = v.values().copied().collect();
        quantile(&s, q)
            .map(fmt_duration)
            .unwrap_or_else(|| "–".into())
    };
    println!(
        "### bench-federation: {} members × {} hollow nodes (pea-control + {}, in this process), {} Deployments × {} replicas Divided across all members, pea-federation as its own process, --resync-seconds {}\n",
        members.len(),
        args.nodes_per_member,
        match workloads {
            Workloads::Controllers => "deployment/replicaset controllers + hollow kubelet",
            Workloads::HollowStatus => "hollow Deployment status, no controllers",
        },
        applied.len(),
        replicas,
        args.resync_seconds
    );
    println!("| measure | done | p50 | p99 |\n|---|---|---|---|");
    println!(
        "| template apply → object in every member | {}/{} | {} | {} |",
        placed.len(),
        applied.len(),
        show(&placed, 0.5),
        show(&placed, 0.99)
    );
    println!(
        "| template apply → ready in every member (the members' controllers) | {}/{} | {} | {} |",
        ready_everywhere.len(),
        applied.len(),
        show(&ready_everywhere, 0.5),
        show(&ready_everywhere, 0.99)
    );
    // What the federation adds on top of the members: from the last member ready to the sum.
    let summing: BTreeMap<String, Duration> = summed
        .iter()
        .filter_map(|(n, s)| Some((n.clone(), s.saturating_sub(*ready_everywhere.get(n)?))))
        .collect();
    println!(
        "| template apply → readyReplicas summed on the federation | {}/{} | {} | {} |",
        summed.len(),
        applied.len(),
        show(&summed, 0.5),
        show(&summed, 0.99)
    );
    println!(
        "| last member ready → readyReplicas summed on the federation | {}/{} | {} | {} |",
        summing.len(),
        applied.len(),
        show(&summing, 0.5),
        show(&summing, 0.99)
    );
    let per_member = rss_members.saturating_sub(rss_plane) / members.len().max(1) as u64;
    println!(
        "\ncreating the {} templates took {}; pea-federation RSS: {} idle with members joined, {} peak sampled, VmHWM {}; \
         federation API (pea-control in this process, idle, before members): {}; one member, idle with its nodes (in-process average): {}; \
         this process at the end (federation API + all members + watches): {} peak sampled",
        applied.len(),
        fmt_duration(apply_all),
        mib(rss_idle.unwrap_or(0)),
        mib(peak_rss),
        mib(hwm),
        mib(rss_plane.saturating_sub(rss_start)),
        mib(per_member),
        mib(peak_bench),
    );
    println!("anchor: Karmada's published 100-cluster test (not measured here); target p99 ≤ 2 s, federation plane ≤ 200 MiB. pea-federation's log: {}", args.log.display());
    summed_task.abort();
    for (_, t) in watches {
        t.abort();
    }
    drop(ctl);
    drop(members);
    Ok(())
}
