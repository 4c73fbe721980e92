//! bench-federation: templates applied to the federation API → objects in every member, and →
//! status summed back, as p50/p99; RSS of the pea-federation process (run as its own program).
//!
//! Scaled down from the 100 members × 50 hollow nodes × 1 000 Deployments (which do not
//! fit this 2-core machine beside the other work): `--members` pea-control instances in this
//! process, each with the deployment and replicaset controllers and a hollow kubelet, and
//! `--deployments` Deployments divided evenly across all members (one replica per member). The
//! anchor is Karmada's published 100-cluster report; it is not measured here.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use pea_tests::bench::{fmt_duration, quantile};
use pea_tests::bins::workspace_binary;
use pea_tests::federation::{path, Federation, Member};
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 5)]
    members: usize,
    #[arg(long, default_value_t = 100)]
    deployments: usize,
    /// pea-federation's --resync-seconds.
    #[arg(long, default_value_t = 1.0)]
    resync_seconds: f64,
    /// Bound of the whole measurement.
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
}

/// The pea-federation process, killed on drop.
struct Controller(std::process::Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let fed = Federation::plane();
    let members: Vec<Member> = (0..args.members)
        .map(|i| Member::start(&format!("m{i}"), dir.path()))
        .collect();
    for m in &members {
        fed.join(m, &[]);
    }
    let child = Command::new(workspace_binary("pea-federation", "PEA_FEDERATION"))
        .args(["--kubeconfig", path(&fed.cp.kubeconfig)])
        .args(["--resync-seconds", &args.resync_seconds.to_string()])
        .env("RUST_LOG", "pea_federation=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("start pea-federation")?;
    let ctl = Controller(child);
    let pid = ctl.0.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let fed_client: Client =
        rt.block_on(pea_federation::client_from_kubeconfig(&fed.cp.kubeconfig))?;
    let member_clients: Vec<Client> = members
        .iter()
        .map(|m| rt.block_on(pea_federation::client_from_kubeconfig(&m.cp.kubeconfig)))
        .collect::<Result<_, _>>()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = fed.k.ok(&["get", "clusters"]);
        if out.lines().filter(|l| l.contains(" True ")).count() == members.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!("members not Ready after 60 s:\n{out}");
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
    let rss_idle = rss_kib(pid, "VmRSS:");

    let deployments: Api<Deployment> = Api::namespaced(fed_client.clone(), "default");
    let mut applied: BTreeMap<String, Instant> = BTreeMap::new();
    let started = Instant::now();
    for i in 0..args.deployments {
        let name = format!("bench-{i:04}");
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": members.len(), "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "registry.local/busybox:1"}]}}}}))?;
        rt.block_on(deployments.create(&PostParams::default(), &d))?;
        applied.insert(name, Instant::now());
    }
    let apply_all = started.elapsed();
    let mut placed: BTreeMap<String, Duration> = BTreeMap::new();
    let mut summed: BTreeMap<String, Duration> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
    let mut peak_rss = 0;
    while (placed.len() < applied.len() || summed.len() < applied.len())
        && Instant::now() < deadline
    {
        let now = Instant::now();
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for c in &member_clients {
            let api: Api<Deployment> = Api::namespaced(c.clone(), "default");
            for d in rt.block_on(api.list(&ListParams::default()))?.items {
                *count
                    .entry(d.metadata.name.unwrap_or_default())
                    .or_default() += 1;
            }
        }
        for (name, n) in count {
            if n == members.len() && !placed.contains_key(&name) {
                if let Some(t0) = applied.get(&name) {
                    placed.insert(name, now - *t0);
                }
            }
        }
        for d in rt.block_on(deployments.list(&ListParams::default()))?.items {
            let name = d.metadata.name.unwrap_or_default();
            let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            if ready as usize == members.len() && !summed.contains_key(&name) {
                if let Some(t0) = applied.get(&name) {
                    summed.insert(name, now - *t0);
                }
            }
        }
        peak_rss = peak_rss.max(rss_kib(pid, "VmRSS:").unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    let hwm = rss_kib(pid, "VmHWM:");
    let show = |v: &BTreeMap<String, Duration>, q: f64| {
        let mut s: Vec<Duration> = v.values().copied().collect();
        s.sort();
        quantile(&s, q)
            .map(fmt_duration)
            .unwrap_or_else(|| "–".into())
    };
    println!(
        "### bench-federation: {} members (pea-control + deployment/replicaset controllers + hollow kubelet, in this process), {} Deployments divided 1 per member, resync {} s\n",
        members.len(),
        applied.len(),
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
        "| template apply → readyReplicas summed on the federation | {}/{} | {} | {} |",
        summed.len(),
        applied.len(),
        show(&summed, 0.5),
        show(&summed, 0.99)
    );
    println!(
        "\ncreating the {} templates took {}; pea-federation RSS: {:.1} MiB idle with members joined, {:.1} MiB peak sampled, VmHWM {:.1} MiB",
        applied.len(),
        fmt_duration(apply_all),
        rss_idle.unwrap_or(0) as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        hwm.unwrap_or(0) as f64 / 1024.0
    );
    println!("anchor: Karmada's published 100-cluster test (not measured here); target p99 ≤ 2 s, federation plane ≤ 200 MiB. Member RSS is not separable here (members run in this process).");
    drop(ctl);
    drop(members);
    Ok(())
}
