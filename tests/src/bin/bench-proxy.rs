//! bench-proxy: pea-proxy's sync against kube-proxy's iptables mode, side by side in one run.
//!
//! For N Services (ClusterIP, one TCP port, 2 ready endpoints each, a cluster CIDR so the
//! off-cluster masquerade rule is there) both subjects program a fresh network namespace made
//! here: pea-proxy through its library (`Proxier::sync`: model, ruleset generation and one
//! `nft -f -` transaction), the anchor as kube-proxy's iptables mode writes the same rules (the
//! KUBE-SERVICES / KUBE-SVC-* / KUBE-SEP-* shape with statistic-random balancing, mark-for-
//! masquerade and DNAT; generated in this process, applied with one `iptables-restore
//! --noflush`). Timed: the full sync of 1 000 and 10 000 Services from empty, and at 10 000 one
//! endpoint replaced in one Service (pea-proxy: its incremental transaction; iptables: what
//! kube-proxy's partial sync writes — KUBE-SERVICES in full, the changed KUBE-SVC chain, the new
//! KUBE-SEP chain, the old one deleted). Medians and ratios through `pea_tests::bench`; nothing
//! asserted.
//!
//! Run: `cargo run --release -p pea-tests --bin bench-proxy -- [--runs 5] [--changes 20]`

use std::{
    fmt::Write as _,
    io::Write as _,
    process::{Command, Stdio},
    sync::Arc,
    time::Instant,
};

use anyhow::{bail, Context, Result};
use clap::Parser;
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use pea_proxy::{
    model::{Family, ServiceKey},
    nft::Nft,
    proxier::{Change, Proxier, ProxyConfig},
};
use pea_tests::{
    bench::{table, Samples},
    netlab::Netns,
    privileged::{require_program, require_root},
};
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// Full syncs per subject and size.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Endpoint changes timed at the largest size.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Service counts.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    sizes: Vec<usize>,
}

const CLUSTER_CIDR: &str = "10.244.0.0/16";

fn cluster_ip(i: usize) -> String {
    format!("10.96.{}.{}", i / 250, i % 250 + 1)
}

fn endpoint_ip(i: usize, j: usize) -> String {
    // Two endpoints per service, in the cluster CIDR; `j` >= 2 names replacements.
    let n = i * 4 + j;
    format!("10.244.{}.{}", n / 250, n % 250 + 1)
}

fn change(i: usize, eps: [usize; 2]) -> Change {
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"namespace": "bench", "name": format!("svc-{i}")},
        "spec": {"clusterIP": cluster_ip(i), "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }))
    .expect("service");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"namespace": "bench", "name": format!("svc-{i}-1"),
            "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps.iter().map(|j| json!({"addresses": [endpoint_ip(i, *j)], "conditions": {"ready": true}})).collect::<Vec<_>>()
    }))
    .expect("slice");
    Change {
        key: ServiceKey {
            namespace: "bench".into(),
            name: format!("svc-{i}"),
        },
        service: Some(Arc::new(svc)),
        slices: vec![Arc::new(slice)],
    }
}

fn proxier() -> Proxier {
    Proxier::new(ProxyConfig {
        hostname: "bench".into(),
        cluster_cidrs: vec![CLUSTER_CIDR.parse().expect("cidr")],
        nodeport_cidrs: None,
        families: vec![Family::V4],
        nft: Nft::default(),
        conntrack: None,
    })
}

/// kube-proxy's chain-name hash (sha256, base32, 16 characters).
fn kp_hash(prefix: &str, s: &str) -> String {
    use sha2::Digest;
    const A: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let d = sha2::Sha256::digest(s.as_bytes());
    let mut bits: u128 = 0;
    for b in &d[..10] {
        bits = bits << 8 | u128::from(*b);
    }
    let name: String = (0..16)
        .map(|k| A[((bits >> (75 - 5 * k)) & 31) as usize] as char)
        .collect();
    format!("{prefix}{name}")
}

struct KpService {
    svc_chain: String,
    name: String,
    ip: String,
    eps: Vec<(String, String)>, // (chain, ip)
}

fn kp_service(i: usize, eps: [usize; 2]) -> KpService {
    let name = format!("bench/svc-{i}:http");
    KpService {
        svc_chain: kp_hash("KUBE-SVC-", &format!("{name}tcp")),
        eps: eps
            .iter()
            .map(|j| {
                let ip = endpoint_ip(i, *j);
                (kp_hash("KUBE-SEP-", &format!("{name}tcp{ip}:8080")), ip)
            })
            .collect(),
        ip: cluster_ip(i),
        name,
    }
}

/// The KUBE-SERVICES chain's rules (kube-proxy rewrites it on every sync).
fn kp_services_rules(out: &mut String, svcs: &[KpService]) {
    for s in svcs {
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -m comment --comment \"{} cluster IP\" -m tcp -p tcp -d {} --dport 80 -j {}",
            s.name, s.ip, s.svc_chain
        );
    }
    let _ = writeln!(out, "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS");
}

fn kp_service_chains(out: &mut String, s: &KpService) {
    let _ = writeln!(out, "-A {} -m comment --comment \"{} cluster IP\" -m tcp -p tcp -d {} --dport 80 ! -s {CLUSTER_CIDR} -j KUBE-MARK-MASQ", s.svc_chain, s.name, s.ip);
    let n = s.eps.len();
    for (k, (chain, ip)) in s.eps.iter().enumerate() {
        if k + 1 < n {
            let p = 1.0 / (n - k) as f64;
            let _ = writeln!(out, "-A {} -m comment --comment \"{} -> {ip}:8080\" -m statistic --mode random --probability {p:.10} -j {chain}", s.svc_chain, s.name);
        } else {
            let _ = writeln!(
                out,
                "-A {} -m comment --comment \"{} -> {ip}:8080\" -j {chain}",
                s.svc_chain, s.name
            );
        }
    }
    for (chain, ip) in &s.eps {
        let _ = writeln!(
            out,
            "-A {chain} -m comment --comment {} -s {ip} -j KUBE-MARK-MASQ",
            s.name
        );
        let _ = writeln!(
            out,
            "-A {chain} -m comment --comment {} -m tcp -p tcp -j DNAT --to-destination {ip}:8080",
            s.name
        );
    }
}

const KP_FILTER: &str = "*filter\n:KUBE-SERVICES - [0:0]\n:KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FORWARD - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-PROXY-FIREWALL - [0:0]\n-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n";

/// The full iptables-restore input of kube-proxy for `svcs`.
fn kp_full(svcs: &[KpService]) -> String {
    let mut out = String::with_capacity(svcs.len() * 1200);
    out.push_str(KP_FILTER);
    out.push_str("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n");
    for s in svcs {
        let _ = writeln!(out, ":{} - [0:0]", s.svc_chain);
        for (c, _) in &s.eps {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
    }
    out.push_str("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n");
    kp_services_rules(&mut out, svcs);
    for s in svcs {
        kp_service_chains(&mut out, s);
    }
    out.push_str("COMMIT\n");
    out
}

/// kube-proxy's partial sync after service `changed` lost endpoint `gone`.
fn kp_partial(svcs: &[KpService], changed: usize, gone: &str) -> String {
    let mut out = String::new();
    out.push_str(KP_FILTER);
    out.push_str("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n");
    let s = &svcs[changed];
    let _ = writeln!(out, ":{} - [0:0]", s.svc_chain);
    for (c, _) in &s.eps {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    let _ = writeln!(out, ":{gone} - [0:0]");
    out.push_str("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n");
    kp_services_rules(&mut out, svcs);
    kp_service_chains(&mut out, s);
    let _ = writeln!(out, "-X {gone}");
    out.push_str("COMMIT\n");
    out
}

fn restore(program: &str, input: &str) -> Result<()> {
    let mut child = Command::new(program)
        .args(["--noflush", "-w"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program}"))?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{program}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// pea-proxy: full syncs into fresh namespaces, then endpoint changes at the last size.
fn bench_pea(size: usize, runs: usize, changes: usize) -> Result<(Samples, Option<Samples>)> {
    let mut full = Samples::new(format!("pea-proxy (nft), {size} services"));
    let mut incr = None;
    for run in 0..runs {
        let ns = Netns::new("bench")?;
        let last = run + 1 == runs && changes > 0;
        let (d, inc) = ns.run_in(move || {
            let all: Vec<Change> = (0..size).map(|i| change(i, [0, 1])).collect();
            let mut p = proxier();
            let t = Instant::now();
            p.sync(&all, false)?;
            let d = t.elapsed();
            let mut inc = Vec::new();
            if last {
                for k in 0..changes {
                    let i = (k * 7919) % size;
                    // Alternate the second endpoint between two addresses.
                    let c = change(i, [0, if k % 2 == 0 { 2 } else { 1 }]);
                    let one = vec![c];
                    let t = Instant::now();
                    p.sync(&one, false)?;
                    inc.push(t.elapsed());
                    // Put it back for the next round (untimed).
                    p.sync(&[change(i, [0, 1])], false)?;
                }
            }
            Ok::<_, anyhow::Error>((d, inc))
        })?;
        full.push(d);
        if last {
            let mut s = Samples::new(format!("pea-proxy (nft), 1 endpoint change at {size}"));
            s.durations = inc;
            incr = Some(s);
        }
    }
    Ok((full, incr))
}

fn bench_iptables(
    program: &'static str,
    label: &str,
    size: usize,
    runs: usize,
    changes: usize,
) -> Result<(Samples, Option<Samples>)> {
    let mut full = Samples::new(format!("{label}, {size} services"));
    let mut incr = None;
    for run in 0..runs {
        let ns = Netns::new("bench")?;
        let last = run + 1 == runs && changes > 0;
        let (d, inc) = ns.run_in(move || {
            let t = Instant::now();
            let svcs: Vec<KpService> = (0..size).map(|i| kp_service(i, [0, 1])).collect();
            restore(program, &kp_full(&svcs))?;
            let d = t.elapsed();
            let mut inc = Vec::new();
            if last {
                let mut svcs = svcs;
                for k in 0..changes {
                    let i = (k * 7919) % size;
                    let t = Instant::now();
                    let gone = svcs[i].eps[1].0.clone();
                    svcs[i] = kp_service(i, [0, 2]);
                    restore(program, &kp_partial(&svcs, i, &gone))?;
                    inc.push(t.elapsed());
                    let gone = svcs[i].eps[1].0.clone();
                    svcs[i] = kp_service(i, [0, 1]);
                    restore(program, &kp_partial(&svcs, i, &gone))?;
                }
            }
            Ok::<_, anyhow::Error>((d, inc))
        })?;
        full.push(d);
        if last {
            let mut s = Samples::new(format!("{label}, 1 endpoint change at {size}"));
            s.durations = inc;
            incr = Some(s);
        }
    }
    Ok((full, incr))
}

fn main() -> Result<()> {
    require_root();
    require_program("nft");
    require_program("iptables-restore");
    let args = Args::parse();
    let legacy = pea_tests::privileged::which("iptables-legacy-restore").is_some();
    let max = args.sizes.iter().copied().max().unwrap_or(0);
    let mut out = String::new();
    for &size in &args.sizes {
        let changes = if size == max { args.changes } else { 0 };
        let anchor = format!("iptables-restore (nft backend), {size} services");
        let (pea, pea_inc) = bench_pea(size, args.runs, changes)?;
        let (ipt, ipt_inc) = bench_iptables(
            "iptables-restore",
            "iptables-restore (nft backend)",
            size,
            args.runs,
            changes,
        )?;
        let mut rows = vec![pea, ipt];
        if legacy {
            let (l, _) = bench_iptables(
                "iptables-legacy-restore",
                "iptables-legacy-restore",
                size,
                args.runs,
                0,
            )?;
            rows.push(l);
        }
        out.push_str(&table(
            &format!("full sync, {size} services × 2 endpoints"),
            &rows,
            &anchor,
        ));
        out.push('\n');
        if let (Some(p), Some(i)) = (pea_inc, ipt_inc) {
            let anchor = i.subject.clone();
            out.push_str(&table(
                &format!("one endpoint change at {size} services"),
                &[p, i],
                &anchor,
            ));
            out.push('\n');
        }
        println!("{out}");
        out.clear();
    }
    Ok(())
}
