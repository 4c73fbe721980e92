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
//! KUBE-SEP chain, the old one deleted); one Service removed, and one Service's endpoints going
//! to zero (iptables: KUBE-SERVICES in full without it, its KUBE-SVC / KUBE-SEP chains deleted,
//! and for the endpoints going to zero its REJECT rule in the filter table's KUBE-SERVICES, as
//! kube-proxy's partial sync writes them; each put back untimed before the next). A sync counts as done when it returns: nft or the kernel
//! has acknowledged the whole transaction, so the rules are in the kernel; iptables-restore
//! likewise. Medians and ratios through `pea_tests::bench`; nothing asserted.
//!
//! First-packet latency (`--first-packet-rounds`, see [`first_packet`]), what a user sees: from
//! the write of an EndpointSlice to the API until a connection to its Service's ClusterIP
//! succeeds through the new rules, at `--first-packet-services` Services; twice per round: a
//! Service's first endpoints, and an endpoint change (the endpoint replaced). pea-proxy (the
//! binary, watching a real pea-control) against the same change carried by a minimal
//! kube-proxy iptables-mode path (a watch of the same API server, kube-proxy's rules for the
//! Service, one `iptables-restore --noflush`) — kube-proxy itself is not installable here (no
//! container registry, not in Debian), so the anchor is kube-proxy's event-to-rules path with
//! none of its bookkeeping: a lower bound for kube-proxy.
//!
//! Run: `cargo run --release -p pea-tests --bin bench-proxy -- [--runs 5] [--changes 20] [--first-packet-rounds 10] [--first-packet-services 100]`

use std::{
    fmt::Write as _,
    io::Write as _,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
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
    /// First-packet rounds per subject (0 skips the first-packet latency).
    #[arg(long, default_value_t = 10)]
    first_packet_rounds: usize,
    /// Services (with an endpoint each) in the API and in both proxies' rules before the
    /// first-packet rounds.
    #[arg(long, default_value_t = 100)]
    first_packet_services: usize,
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
    change_with(i, &eps)
}

/// Service `i` gone.
fn gone(i: usize) -> Change {
    Change {
        key: ServiceKey {
            namespace: "bench".into(),
            name: format!("svc-{i}"),
        },
        service: None,
        slices: Vec::new(),
    }
}

/// Service `i` with the endpoints `eps` (see [`endpoint_ip`]).
fn change_with(i: usize, eps: &[usize]) -> Change {
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
        node_ips: Vec::new(),
        nodeport_primary: false,
        zone: None,
        families: vec![Family::V4],
        nft: Nft::default(),
        conntrack: None,
        netlink_elements: true,
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
    kp_services_rules_but(out, svcs, None);
}

/// The KUBE-SERVICES chain's rules, without Service `skip`'s.
fn kp_services_rules_but(out: &mut String, svcs: &[KpService], skip: Option<usize>) {
    for (_, s) in svcs.iter().enumerate().filter(|(i, _)| Some(*i) != skip) {
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

/// kube-proxy's partial sync after Service `i` went (`reject` false) or lost every endpoint
/// (`reject`: its ClusterIP port rejects, in the filter table's KUBE-SERVICES): KUBE-SERVICES
/// without its rule, its KUBE-SVC and KUBE-SEP chains deleted.
fn kp_without(svcs: &[KpService], i: usize, reject: bool) -> String {
    let mut out = String::new();
    out.push_str(
        KP_FILTER
            .strip_suffix("COMMIT\n")
            .expect("ends with COMMIT"),
    );
    let s = &svcs[i];
    if reject {
        let _ = writeln!(out, "-A KUBE-SERVICES -m comment --comment \"{} has no endpoints\" -m tcp -p tcp -d {} --dport 80 -j REJECT --reject-with icmp-port-unreachable", s.name, s.ip);
    }
    out.push_str("COMMIT\n*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n");
    let _ = writeln!(out, ":{} - [0:0]", s.svc_chain);
    for (c, _) in &s.eps {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    out.push_str("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n");
    kp_services_rules_but(&mut out, svcs, Some(i));
    let _ = writeln!(out, "-X {}", s.svc_chain);
    for (c, _) in &s.eps {
        let _ = writeln!(out, "-X {c}");
    }
    out.push_str("COMMIT\n");
    out
}

/// kube-proxy's partial sync after Service `i` (back with its endpoints) came.
fn kp_back(svcs: &[KpService], i: usize) -> String {
    let mut out = String::new();
    out.push_str(KP_FILTER);
    out.push_str("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n");
    let s = &svcs[i];
    let _ = writeln!(out, ":{} - [0:0]", s.svc_chain);
    for (c, _) in &s.eps {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    out.push_str("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n");
    kp_services_rules(&mut out, svcs);
    kp_service_chains(&mut out, s);
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

/// What one subject's runs at one size measured: full syncs, and at the largest size the
/// incremental cases.
struct Measured {
    full: Samples,
    change: Option<Samples>,
    removal: Option<Samples>,
    to_zero: Option<Samples>,
}

impl Measured {
    /// The incremental samples of the last run, [endpoint change, removal, endpoints to zero],
    /// labelled `"{subject}, {what} at {size}"`.
    fn set_incremental(&mut self, subject: &str, size: usize, inc: [Vec<Duration>; 3]) {
        let [c, r, z] = inc;
        let samples = |what: &str, d| {
            let mut s = Samples::new(format!("{subject}, {what} at {size}"));
            s.durations = d;
            Some(s)
        };
        self.change = samples("1 endpoint change", c);
        self.removal = samples("1 Service removed", r);
        self.to_zero = samples("1 Service's endpoints to zero", z);
    }
}

/// The Service an incremental sample `k` changes (spread over the table, the same for both
/// subjects).
fn pick(k: usize, size: usize) -> usize {
    (k * 7919) % size
}

/// pea-proxy: full syncs into fresh namespaces, then endpoint changes, Service removals and
/// endpoints going to zero at the last size.
fn bench_pea(size: usize, runs: usize, changes: usize) -> Result<Measured> {
    let mut full = Samples::new(format!("pea-proxy (nft), {size} services"));
    let mut m = Measured {
        full: Samples::new(""),
        change: None,
        removal: None,
        to_zero: None,
    };
    for run in 0..runs {
        let ns = Netns::new("bench")?;
        let last = run + 1 == runs && changes > 0;
        let (d, inc) = ns.run_in(move || {
            let all: Vec<Change> = (0..size).map(|i| change(i, [0, 1])).collect();
            let mut p = proxier();
            let t = Instant::now();
            p.sync(&all, false)?;
            let d = t.elapsed();
            let mut inc = [Vec::new(), Vec::new(), Vec::new()];
            if last {
                for k in 0..changes {
                    let i = pick(k, size);
                    // The second endpoint replaced (1 → 2 or 3: every timed sync is a real
                    // change; with 1 → 1 half of them changed nothing).
                    let c = change(i, [0, if k % 2 == 0 { 2 } else { 3 }]);
                    let one = vec![c];
                    let t = Instant::now();
                    p.sync(&one, false)?;
                    inc[0].push(t.elapsed());
                    // Put it back for the next round (untimed).
                    p.sync(&[change(i, [0, 1])], false)?;
                }
                for k in 0..changes {
                    let i = pick(k, size);
                    let t = Instant::now();
                    p.sync(&[gone(i)], false)?;
                    inc[1].push(t.elapsed());
                    p.sync(&[change(i, [0, 1])], false)?;
                    let t = Instant::now();
                    p.sync(&[change_with(i, &[])], false)?;
                    inc[2].push(t.elapsed());
                    p.sync(&[change(i, [0, 1])], false)?;
                }
            }
            Ok::<_, anyhow::Error>((d, inc))
        })?;
        full.push(d);
        if last {
            m.set_incremental("pea-proxy (nft + netlink)", size, inc);
        }
    }
    m.full = full;
    Ok(m)
}

fn bench_iptables(
    program: &'static str,
    label: &str,
    size: usize,
    runs: usize,
    changes: usize,
) -> Result<Measured> {
    let mut full = Samples::new(format!("{label}, {size} services"));
    let mut m = Measured {
        full: Samples::new(""),
        change: None,
        removal: None,
        to_zero: None,
    };
    for run in 0..runs {
        let ns = Netns::new("bench")?;
        let last = run + 1 == runs && changes > 0;
        let (d, inc) = ns.run_in(move || {
            let t = Instant::now();
            let svcs: Vec<KpService> = (0..size).map(|i| kp_service(i, [0, 1])).collect();
            restore(program, &kp_full(&svcs))?;
            let d = t.elapsed();
            let mut inc = [Vec::new(), Vec::new(), Vec::new()];
            if last {
                let mut svcs = svcs;
                for k in 0..changes {
                    let i = pick(k, size);
                    let t = Instant::now();
                    let gone = svcs[i].eps[1].0.clone();
                    svcs[i] = kp_service(i, [0, 2]);
                    restore(program, &kp_partial(&svcs, i, &gone))?;
                    inc[0].push(t.elapsed());
                    let gone = svcs[i].eps[1].0.clone();
                    svcs[i] = kp_service(i, [0, 1]);
                    restore(program, &kp_partial(&svcs, i, &gone))?;
                }
                for k in 0..changes {
                    let i = pick(k, size);
                    for (reject, slot) in [(false, 1), (true, 2)] {
                        let t = Instant::now();
                        restore(program, &kp_without(&svcs, i, reject))?;
                        inc[slot].push(t.elapsed());
                        restore(program, &kp_back(&svcs, i))?;
                    }
                }
            }
            Ok::<_, anyhow::Error>((d, inc))
        })?;
        full.push(d);
        if last {
            m.set_incremental(label, size, inc);
        }
    }
    m.full = full;
    Ok(m)
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
        let pea = bench_pea(size, args.runs, changes)?;
        let ipt = bench_iptables(
            "iptables-restore",
            "iptables-restore (nft backend)",
            size,
            args.runs,
            changes,
        )?;
        let mut rows = vec![pea.full, ipt.full];
        if legacy {
            let l = bench_iptables(
                "iptables-legacy-restore",
                "iptables-legacy-restore",
                size,
                args.runs,
                0,
            )?;
            rows.push(l.full);
        }
        out.push_str(&table(
            &format!("full sync, {size} services × 2 endpoints"),
            &rows,
            &anchor,
        ));
        out.push('\n');
        for (what, p, i) in [
            ("one endpoint change", pea.change, ipt.change),
            ("one Service removed", pea.removal, ipt.removal),
            (
                "one Service's endpoints going to zero",
                pea.to_zero,
                ipt.to_zero,
            ),
        ] {
            if let (Some(p), Some(i)) = (p, i) {
                let anchor = i.subject.clone();
                let ratio = match (p.median(), i.median()) {
                    (Some(a), Some(b)) if !b.is_zero() => {
                        format!("\nmedian ratio {:.5}\n", a.as_secs_f64() / b.as_secs_f64())
                    }
                    _ => String::new(),
                };
                out.push_str(&table(
                    &format!("{what} at {size} services"),
                    &[p, i],
                    &anchor,
                ));
                out.push_str(&ratio);
                out.push('\n');
            }
        }
        println!("{out}");
        out.clear();
    }
    if args.first_packet_rounds > 0 {
        let n = args.first_packet_services;
        let r = first_packet::run(args.first_packet_rounds, n)?;
        let anchor_name = r.anchor_first.subject.clone();
        println!(
            "{}",
            table(
                &format!("first packet at {n} Services: a Service's first EndpointSlice written → first connection through its ClusterIP"),
                &[r.pea_first, r.anchor_first],
                &anchor_name,
            )
        );
        let anchor_name = r.anchor_change.subject.clone();
        println!(
            "{}",
            table(
                &format!("endpoint change at {n} Services: EndpointSlice update written → first connection to the new endpoint"),
                &[r.pea_change, r.anchor_change],
                &anchor_name,
            )
        );
    }
    Ok(())
}

/// kube-proxy's nat rules after Service `changed` got its first or new endpoints, as its
/// partial sync writes them: KUBE-SERVICES in full, the Service's chains (re)written, the
/// endpoint chains in `gone` flushed and deleted.
fn kp_changed(svcs: &[KpService], changed: usize, gone: &[String]) -> String {
    let mut out = String::new();
    out.push_str(
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n",
    );
    let s = &svcs[changed];
    let _ = writeln!(out, ":{} - [0:0]", s.svc_chain);
    for (c, _) in &s.eps {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    for g in gone {
        let _ = writeln!(out, ":{g} - [0:0]");
    }
    kp_services_rules(&mut out, svcs);
    kp_service_chains(&mut out, s);
    for g in gone {
        let _ = writeln!(out, "-X {g}");
    }
    out.push_str("COMMIT\n");
    out
}

mod first_packet {
    //! Two node namespaces: `pea` runs pea-control (on its loopback) and the pea-proxy binary;
    //! `anchor` gets kube-proxy's iptables rules from a watcher in this process. Each has the
    //! ClusterIP range routed locally (`local 10.96.0.0/12 dev lo`: a connection to a ClusterIP
    //! without rules is refused at once, so probing costs no timeouts), a backend listening on
    //! 10.244.0.2:8080 and a dead endpoint address, 10.244.0.3, where nothing listens (refused
    //! at once too).
    //!
    //! Before the rounds both proxies hold `services` Services with one endpoint each: for
    //! pea-proxy real Services and EndpointSlices in the API (written before it starts, so its
    //! first sync holds them all), for the anchor the same number of Services in its rules (the
    //! KUBE-SERVICES it rewrites on every change grows with them).
    //!
    //! Per round and subject, with a thread in the node connecting to the Service's ClusterIP in
    //! a loop (an unwanted answer is retried after 100 µs, at most 60 s):
    //! - first endpoints: a Service is created and left to settle, then its EndpointSlice (the
    //!   backend) is written; the time from just before the write to the first accepted
    //!   connection is the sample;
    //! - endpoint change: the slice is switched to the dead address (untimed, until connections
    //!   are refused), then back to the backend; the time from just before that update to the
    //!   first accepted connection is the sample. For pea-proxy this is an element-only change
    //!   (its netlink path); for the anchor a partial sync (KUBE-SERVICES, the Service's
    //!   chains, the old endpoint chain deleted).

    use std::{
        collections::BTreeMap,
        net::{SocketAddr, TcpListener, TcpStream},
        process::{Child, Command, Stdio},
        sync::{
            atomic::{AtomicBool, Ordering},
            Arc, Mutex,
        },
        time::{Duration, Instant},
    };

    use anyhow::{bail, Context, Result};
    use futures_util::StreamExt;
    use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
    use kube::{
        api::{Patch, PatchParams, PostParams},
        runtime::{watcher, WatchStreamExt},
        Api, Client,
    };
    use pea_tests::{
        bench::Samples,
        bins::workspace_binary,
        control::{Backend, ControlPlane},
        netlab::Netns,
    };
    use serde_json::json;

    use super::{kp_changed, kp_hash, KpService, CLUSTER_CIDR};

    const BACKEND: &str = "10.244.0.2";
    /// An endpoint address on the node where nothing listens.
    const DEAD: &str = "10.244.0.3";
    const ANCHOR_LABEL: &str = "bench-anchor";

    struct Proc(Child);
    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Loopback-routed ClusterIPs, the backend and dead addresses and a listener on the backend.
    fn node(role: &str, stop: Arc<AtomicBool>) -> Result<Netns> {
        let ns = Netns::new(role)?;
        // On loopback: the host has no dummy link module.
        for ip in [BACKEND, DEAD] {
            ns.ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"])?;
        }
        ns.ip(&["route", "add", "local", "10.96.0.0/12", "dev", "lo"])?;
        let (tx, rx) = std::sync::mpsc::channel();
        ns.spawn_in(move || {
            let l = TcpListener::bind((BACKEND, 8080))?;
            l.set_nonblocking(true)?;
            let _ = tx.send(());
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            Ok(())
        })?;
        rx.recv_timeout(Duration::from_secs(5))
            .context("backend did not start")?;
        Ok(ns)
    }

    /// Connects from `ns` to `addr` until a connection is accepted (`accepted`) or refused
    /// (`!accepted`); the instant it was, or an error after `limit`.
    fn probe(
        ns: &Netns,
        addr: SocketAddr,
        accepted: bool,
        limit: Duration,
    ) -> Result<std::thread::JoinHandle<Result<Instant>>> {
        ns.spawn_in(move || {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                let ok = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
                if ok == accepted {
                    return Ok(Instant::now());
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            let want = if accepted { "accepted" } else { "refused" };
            bail!("no connection to {addr} {want} within {limit:?}")
        })
    }

    fn join(h: std::thread::JoinHandle<Result<Instant>>) -> Result<Instant> {
        h.join().map_err(|_| anyhow::anyhow!("probe panicked"))?
    }

    fn service(name: &str, anchor: bool) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default",
                "labels": {ANCHOR_LABEL: anchor.to_string()}},
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
        }))
        .expect("service")
    }

    fn endpoints(ip: &str) -> serde_json::Value {
        json!([{"addresses": [ip], "conditions": {"ready": true}}])
    }

    fn slice(name: &str, anchor: bool, ip: &str) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-1"), "namespace": "default",
                "labels": {"kubernetes.io/service-name": name, ANCHOR_LABEL: anchor.to_string()}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints(ip)
        }))
        .expect("slice")
    }

    /// The anchor's proxy: on each slice labelled for it, kube-proxy's rules for the Service
    /// (first endpoints, or new ones replacing the old) with one `iptables-restore --noflush`
    /// in the anchor node. `svcs` starts with the background Services.
    async fn anchor_proxy(
        client: Client,
        netns: String,
        ips: Arc<Mutex<BTreeMap<String, String>>>,
        mut svcs: Vec<KpService>,
    ) {
        let slices: Api<EndpointSlice> = Api::namespaced(client, "default");
        let cfg = watcher::Config::default().labels(&format!("{ANCHOR_LABEL}=true"));
        let mut stream = watcher(slices, cfg).applied_objects().boxed();
        while let Some(ev) = stream.next().await {
            let Ok(slice) = ev else { continue };
            let Some(svc) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .cloned()
            else {
                continue;
            };
            let Some(ip) = ips.lock().expect("ips").get(&svc).cloned() else {
                continue;
            };
            let name = format!("default/{svc}:http");
            let eps: Vec<(String, String)> = slice
                .endpoints
                .iter()
                .filter_map(|e| e.addresses.first().cloned())
                .map(|ep| (kp_hash("KUBE-SEP-", &format!("{name}tcp{ep}:8080")), ep))
                .collect();
            let new = KpService {
                svc_chain: kp_hash("KUBE-SVC-", &format!("{name}tcp")),
                name,
                ip,
                eps,
            };
            let input = match svcs.iter().position(|s| s.name == new.name) {
                Some(i) => {
                    let gone: Vec<String> = svcs[i]
                        .eps
                        .iter()
                        .filter(|(c, _)| !new.eps.iter().any(|(n, _)| n == c))
                        .map(|(c, _)| c.clone())
                        .collect();
                    svcs[i] = new;
                    kp_changed(&svcs, i, &gone)
                }
                None => {
                    svcs.push(new);
                    kp_changed(&svcs, svcs.len() - 1, &[])
                }
            };
            let netns = netns.clone();
            let r = tokio::task::spawn_blocking(move || super::restore_in(&netns, &input)).await;
            if let Ok(Err(e)) = r {
                eprintln!("bench-proxy: anchor iptables-restore: {e:#}");
            }
        }
    }

    /// The samples of both measurements.
    pub struct Results {
        pub pea_first: Samples,
        pub anchor_first: Samples,
        pub pea_change: Samples,
        pub anchor_change: Samples,
    }

    /// Writes `n` Services with one EndpointSlice each (the backend) for pea-proxy; the
    /// ClusterIP of the last.
    async fn background(client: Client, n: usize) -> Result<Option<String>> {
        let results: Vec<Result<String>> = futures_util::stream::iter(0..n)
            .map(|i| {
                let c = client.clone();
                async move {
                    let name = format!("bg-{i}");
                    let svc = Api::<Service>::namespaced(c.clone(), "default")
                        .create(&PostParams::default(), &service(&name, false))
                        .await
                        .with_context(|| format!("creating Service {name}"))?;
                    Api::<EndpointSlice>::namespaced(c, "default")
                        .create(&PostParams::default(), &slice(&name, false, BACKEND))
                        .await
                        .with_context(|| format!("creating the EndpointSlice of {name}"))?;
                    svc.spec
                        .and_then(|s| s.cluster_ip)
                        .context("no clusterIP allocated")
                }
            })
            .buffered(16)
            .collect()
            .await;
        let mut last = None;
        for r in results {
            last = Some(r?);
        }
        Ok(last)
    }

    /// The anchor's background Services: `n` as [`super::kp_service`] makes them, with
    /// ClusterIPs outside the API's range (10.96.0.0/12) so none shadows a round's Service.
    fn anchor_background(n: usize) -> Vec<KpService> {
        (0..n)
            .map(|i| {
                let mut s = super::kp_service(i, [0, 1]);
                s.ip = format!("10.112.{}.{}", i / 250, i % 250 + 1);
                s
            })
            .collect()
    }

    /// Runs `rounds` rounds at `services` background Services.
    pub fn run(rounds: usize, services: usize) -> Result<Results> {
        let stop = Arc::new(AtomicBool::new(false));
        let pea_ns = node("fppea", stop.clone())?;
        let anchor_ns = node("fpkp", stop.clone())?;
        let result = (|| -> Result<Results> {
            // kube-proxy's hooks in the anchor node (what it ensures at start), then its rules
            // for the background Services.
            super::restore_in(
                &anchor_ns.name,
                "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\nCOMMIT\n",
            )?;
            let anchor_svcs = anchor_background(services);
            if services > 0 {
                super::restore_in(&anchor_ns.name, &super::kp_full(&anchor_svcs))?;
            }
            let data = tempfile::tempdir()?;
            let data_dir = data.path().join("control");
            let cp = pea_ns.run_in(move || {
                ControlPlane::start_with(Backend::Embedded, move |c| c.data_dir = data_dir)
            })?;
            let kubeconfig = cp.kubeconfig.clone();
            // Everything that opens sockets runs on the server's runtime workers, which live in
            // the `pea` namespace with it (a future given to block_on would run on this thread,
            // in the root namespace).
            let client = cp.block_on(async move {
                tokio::spawn(async move { client_for(&kubeconfig).await })
                    .await
                    .expect("client task")
            })?;
            let t = Instant::now();
            let c = client.clone();
            let last = cp.block_on(async move {
                tokio::spawn(background(c, services))
                    .await
                    .expect("background task")
            })?;
            eprintln!(
                "bench-proxy: {services} background Services written in {:?}",
                t.elapsed()
            );
            let proxy = Proc(
                Command::new("ip")
                    .args(["netns", "exec", &pea_ns.name])
                    .arg(workspace_binary("pea-proxy", "PEA_PROXY_BIN"))
                    .arg("--kubeconfig")
                    .arg(&cp.kubeconfig)
                    .args([
                        "--hostname-override",
                        "fpnode",
                        "--cluster-cidr",
                        CLUSTER_CIDR,
                    ])
                    // No periodic full resync in the middle of a measurement.
                    .args(["--min-sync-period", "0s", "--sync-period", "1h"])
                    .args(["--ip-family", "IPv4"])
                    .args(["--metrics-bind-address", "0", "--healthz-bind-address", "0"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting pea-proxy")?,
            );
            if let Some(ip) = last {
                // pea-proxy's first sync holds every background Service.
                let t = Instant::now();
                let addr: SocketAddr = format!("{ip}:80").parse()?;
                join(probe(&pea_ns, addr, true, Duration::from_secs(900))?)?;
                eprintln!(
                    "bench-proxy: pea-proxy serves the background Services after {:?}",
                    t.elapsed()
                );
            }
            let ips = Arc::new(Mutex::new(BTreeMap::new()));
            // The JoinHandle is what is wanted: the watcher task runs on the server's runtime.
            #[allow(clippy::async_yields_async)]
            let watcher = {
                let (c, n, i) = (client.clone(), anchor_ns.name.clone(), ips.clone());
                cp.block_on(async move { tokio::spawn(anchor_proxy(c, n, i, anchor_svcs)) })
            };
            let mut r = Results {
                pea_first: Samples::new("pea-proxy (binary, watch → nft)"),
                anchor_first: Samples::new(
                    "kube-proxy iptables path (watch → iptables-restore), lower bound",
                ),
                pea_change: Samples::new("pea-proxy (binary, watch → netlink elements)"),
                anchor_change: Samples::new(
                    "kube-proxy iptables path (watch → iptables-restore), lower bound",
                ),
            };
            // A Service's first endpoints are a structural change (nft -f, whose cache load
            // grows with the table): seconds at 10 000 Services in a debug build.
            let limit = Duration::from_secs(60);
            for round in 0..rounds {
                for (anchor_side, ns) in [(false, &pea_ns), (true, &anchor_ns)] {
                    let name = format!("fp-{}-{round}", if anchor_side { "kp" } else { "pea" });
                    let c = client.clone();
                    let svc = service(&name, anchor_side);
                    let ip = cp.block_on(async move {
                        tokio::spawn(async move {
                            Api::<Service>::namespaced(c, "default")
                                .create(&PostParams::default(), &svc)
                                .await
                        })
                        .await
                        .expect("create task")
                    })?;
                    let ip = ip
                        .spec
                        .and_then(|s| s.cluster_ip)
                        .context("no clusterIP allocated")?;
                    ips.lock().expect("ips").insert(name.clone(), ip.clone());
                    // Let the Service (without endpoints) settle in both proxies.
                    std::thread::sleep(Duration::from_millis(700));
                    let addr: SocketAddr = format!("{ip}:80").parse()?;
                    // First endpoints.
                    let prober = probe(ns, addr, true, limit)?;
                    let c = client.clone();
                    let sl = slice(&name, anchor_side, BACKEND);
                    let t0 = Instant::now();
                    cp.block_on(async move {
                        tokio::spawn(async move {
                            Api::<EndpointSlice>::namespaced(c, "default")
                                .create(&PostParams::default(), &sl)
                                .await
                        })
                        .await
                        .expect("create task")
                    })?;
                    let subject = if anchor_side { "anchor" } else { "pea-proxy" };
                    let d = join(prober)
                        .with_context(|| format!("{subject}, first endpoints of {name}"))?
                        .saturating_duration_since(t0);
                    if anchor_side {
                        r.anchor_first.push(d);
                    } else {
                        r.pea_first.push(d);
                    }
                    // Endpoint change: to the dead address (untimed), then back.
                    for (to, timed) in [(DEAD, false), (BACKEND, true)] {
                        let prober = probe(ns, addr, timed, limit)?;
                        let c = client.clone();
                        let slice_name = format!("{name}-1");
                        let patch = json!({"endpoints": endpoints(to)});
                        let t0 = Instant::now();
                        cp.block_on(async move {
                            tokio::spawn(async move {
                                Api::<EndpointSlice>::namespaced(c, "default")
                                    .patch(
                                        &slice_name,
                                        &PatchParams::default(),
                                        &Patch::Merge(&patch),
                                    )
                                    .await
                            })
                            .await
                            .expect("patch task")
                        })?;
                        let d = join(prober)
                            .with_context(|| format!("{subject}, {name}'s endpoint to {to}"))?
                            .saturating_duration_since(t0);
                        if !timed {
                            continue;
                        }
                        if anchor_side {
                            r.anchor_change.push(d);
                        } else {
                            r.pea_change.push(d);
                        }
                    }
                }
                eprintln!("bench-proxy: first packet round {}/{rounds}", round + 1);
            }
            watcher.abort();
            drop(proxy);
            drop(cp);
            drop(data);
            Ok(r)
        })();
        stop.store(true, Ordering::Relaxed);
        result
    }

    async fn client_for(kubeconfig: &std::path::Path) -> Result<Client> {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        Ok(Client::try_from(cfg)?)
    }
}

/// `iptables-restore --noflush` run inside the named network namespace.
fn restore_in(netns: &str, input: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "iptables-restore",
            "--noflush",
            "-w",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running iptables-restore")?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "iptables-restore in {netns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
