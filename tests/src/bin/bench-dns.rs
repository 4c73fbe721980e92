//! bench-dns: pea-dns against unbound serving the same records from a static zone, side by side
//! in one run, both on loopback, both driven by `dnsperf` (Debian) with the same query file of
//! Service names (`<svc>.bench.svc.cluster.local A`).
//!
//! Per round and subject: a throughput pass (as many queries per second as the server keeps up
//! with, `-q` outstanding) and a latency pass at a fixed rate (`-Q`) below both servers'
//! saturation, whose per-query latencies (`dnsperf -v`) give the p99. Subjects alternate within a
//! round; medians over rounds and the ratios pea-dns/unbound are printed. Nothing is asserted.
//!
//! pea-dns gets its Services from a real pea-control (embedded store) through the API, as in a
//! cluster; unbound gets the same names and addresses as `local-data`. Both run with the same
//! number of threads.
//!
//! Run: `cargo build --release -p pea-dns -p pea-tests --bin bench-dns && target/release/bench-dns [--services 1000] [--seconds 10] [--rounds 3]`

use std::net::SocketAddr;
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Parser;
use pea_tests::control::{Backend, ControlPlane};
use pea_tests::dns::{dig, free_dns_port, PeaDns, Unbound};
use pea_tests::privileged::{require_program, require_root};

#[derive(Debug, Parser)]
struct Args {
    /// Services in the cluster (and names in the query file).
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Seconds per dnsperf pass.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds (each runs every subject once per pass).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Server threads for both subjects.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Queries per second of the latency pass.
    #[arg(long, default_value_t = 20000)]
    latency_qps: u64,
    /// Queries dnsperf keeps outstanding in the throughput pass.
    #[arg(long, default_value_t = 100)]
    outstanding: u64,
}

#[derive(Debug, Default)]
struct Figures {
    qps: Vec<f64>,
    p99_us: Vec<f64>,
    p50_us: Vec<f64>,
    lost: u64,
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn dnsperf(addr: SocketAddr, file: &std::path::Path, args: &[String]) -> Result<String> {
    let out = Command::new(require_program("dnsperf"))
        .args(["-s", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .arg("-d")
        .arg(file)
        .args(args)
        .output()
        .context("run dnsperf")?;
    if !out.status.success() {
        bail!("dnsperf failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn field(out: &str, key: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn measure(args: &Args, addr: SocketAddr, file: &std::path::Path, f: &mut Figures) -> Result<()> {
    let secs = args.seconds.to_string();
    let out = dnsperf(
        addr,
        file,
        &[
            "-l".into(),
            secs.clone(),
            "-q".into(),
            args.outstanding.to_string(),
            "-c".into(),
            "4".into(),
            "-t".into(),
            "1".into(),
        ],
    )?;
    f.qps
        .push(field(&out, "Queries per second:").context("no qps in dnsperf output")?);
    f.lost += field(&out, "Queries lost:").unwrap_or(0.0) as u64;
    let out = dnsperf(
        addr,
        file,
        &[
            "-l".into(),
            secs,
            "-Q".into(),
            args.latency_qps.to_string(),
            "-c".into(),
            "4".into(),
            "-t".into(),
            "1".into(),
            "-v".into(),
        ],
    )?;
    // `> NOERROR web-1.bench.svc.cluster.local A 0.000087`
    let mut lat: Vec<f64> = out
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .collect();
    if lat.is_empty() {
        bail!("no per-query latencies in dnsperf -v output");
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize] * 1e6;
    f.p50_us.push(pick(0.5));
    f.p99_us.push(pick(0.99));
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    require_root();
    require_program("dnsperf");

    let cp = ControlPlane::start(Backend::Embedded)?;
    let kubectl = cp.kubectl();
    let mut manifest = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n");
    for i in 0..args.services {
        manifest.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: web-{i}, namespace: bench}}\nspec:\n  ports:\n  - {{name: http, port: 80}}\n"
        ));
    }
    kubectl.ok_stdin(&["apply", "-f", "-"], &manifest);
    let listing = kubectl.ok(&[
        "-n",
        "bench",
        "get",
        "svc",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.clusterIP}{\"\\n\"}{end}",
    ]);
    let services: Vec<(String, String)> = listing
        .lines()
        .filter_map(|l| {
            let (n, ip) = l.split_once(' ')?;
            Some((n.to_string(), ip.to_string()))
        })
        .collect();
    if services.len() != args.services {
        bail!(
            "{} services listed, {} created",
            services.len(),
            args.services
        );
    }

    let dir = tempfile::tempdir()?;
    let queries = dir.path().join("queries.txt");
    let mut q = String::new();
    for (name, _) in &services {
        q.push_str(&format!("{name}.bench.svc.cluster.local A\n"));
    }
    std::fs::write(&queries, q)?;

    let threads = args.threads.to_string();
    let pea = PeaDns::start(&cp.kubeconfig, None, &["--threads", &threads])?;
    let records: Vec<String> = services
        .iter()
        .map(|(n, ip)| format!("{n}.bench.svc.cluster.local. 5 IN A {ip}"))
        .collect();
    let unbound = Unbound::start(
        SocketAddr::from(([127, 0, 0, 1], free_dns_port()?)),
        "cluster.local",
        &records,
        args.threads,
    )?;
    // Both answer the same thing before anything is timed.
    for (name, ip) in services.iter().take(5) {
        let n = format!("{name}.bench.svc.cluster.local.");
        for addr in [pea.dns, unbound.addr] {
            let d = dig(addr, &[&n, "A"])?;
            if d.rdata("A") != [ip.clone()] {
                bail!("{addr} answers {n} with {:?}, want {ip}", d.rdata("A"));
            }
        }
    }

    let mut pea_f = Figures::default();
    let mut unb_f = Figures::default();
    for round in 0..args.rounds {
        eprintln!("bench-dns: round {}/{}", round + 1, args.rounds);
        // Alternate who goes first so drift in the machine's load falls on both.
        if round % 2 == 0 {
            measure(&args, pea.dns, &queries, &mut pea_f)?;
            measure(&args, unbound.addr, &queries, &mut unb_f)?;
        } else {
            measure(&args, unbound.addr, &queries, &mut unb_f)?;
            measure(&args, pea.dns, &queries, &mut pea_f)?;
        }
    }

    let (pq, uq) = (median(&pea_f.qps), median(&unb_f.qps));
    let (pp, up) = (median(&pea_f.p99_us), median(&unb_f.p99_us));
    println!(
        "### bench-dns: {} Service names (A), {} s per pass, {} rounds, {} server threads, loopback\n",
        args.services, args.seconds, args.rounds, args.threads
    );
    println!("| subject | queries/s (median) | p50 at {} q/s | p99 at {} q/s | lost | qps ratio to unbound | p99 ratio to unbound |", args.latency_qps, args.latency_qps);
    println!("|---|---|---|---|---|---|---|");
    for (name, f, qr, pr) in [
        ("pea-dns", &pea_f, pq / uq, pp / up),
        ("unbound (static zone)", &unb_f, 1.0, 1.0),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} µs | {:.0} µs | {} | {:.2}× | {:.2}× |",
            median(&f.qps),
            median(&f.p50_us),
            median(&f.p99_us),
            f.lost,
            qr,
            pr
        );
    }
    println!(
        "\nper round queries/s: pea-dns {:?}, unbound {:?}",
        pea_f.qps.iter().map(|v| v.round()).collect::<Vec<_>>(),
        unb_f.qps.iter().map(|v| v.round()).collect::<Vec<_>>()
    );
    drop(pea);
    drop(unbound);
    Ok(())
}
