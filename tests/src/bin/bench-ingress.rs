//! bench-ingress: `wrk` (Debian) through pea-ingress and through nginx (Debian) with the same
//! route (one host, `/` Prefix) to the same two HTTP backends on loopback, side by side in one
//! run: requests/s and p99 latency, medians over rounds, ratios pea-ingress/nginx. nginx proxies
//! with HTTP/1.1 keep-alive to its upstreams (as pea-ingress does) and as many workers as
//! pea-ingress has threads. Nothing is asserted.
//!
//! Run: `cargo build --release -p pea-ingress && cargo build -p pea-tests --bin bench-ingress &&
//! PEA_INGRESS=target/release/pea-ingress target/debug/bench-ingress [--seconds 5] [--rounds 3]`

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use pea_tests::control::{Backend, ControlPlane};
use pea_tests::dns::http_get;
use pea_tests::fixtures::registry::free_port;
use pea_tests::ingress::{Backends, PeaIngress};
use pea_tests::privileged::{require_program, require_root};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Proxy threads (pea-ingress) and workers (nginx).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// wrk connections.
    #[arg(long, default_value_t = 50)]
    connections: usize,
}

struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master takes its workers down too; SIGKILL would orphan them.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx(backends: &[SocketAddr], workers: usize) -> Result<Nginx> {
    let bin = require_program("nginx");
    let dir = tempfile::Builder::new().prefix("pea-nginx-").tempdir()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let ups: String = backends
        .iter()
        .map(|b| format!("    server {b};\n"))
        .collect();
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  upstream up {{\n{ups}    keepalive 128;\n  }}\n  server {{\n    listen {addr};\n    server_name bench.example;\n    location / {{\n      proxy_pass http://up;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      proxy_set_header X-Forwarded-Proto $scheme;\n      proxy_set_header X-Forwarded-Host $host;\n    }}\n  }}\n}}\n",
        d = dir.path().display()
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf)?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir.path())
        .stdin(Stdio::null())
        .spawn()
        .context("spawn nginx")?;
    let mut n = Nginx {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(s) = n.child.try_wait()? {
            bail!("nginx exited: {s}");
        }
        if http_get(addr, "/").is_ok() {
            return Ok(n);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nginx did not answer on {addr}")
}

/// (requests/s, p99 in µs)
fn wrk(addr: SocketAddr, args: &Args) -> Result<(f64, f64)> {
    let out = Command::new(require_program("wrk"))
        .args([
            "-t2",
            &format!("-c{}", args.connections),
            &format!("-d{}s", args.seconds),
            "--latency",
            "-H",
            "Host: bench.example",
            &format!("http://{addr}/"),
        ])
        .output()
        .context("run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output: {text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(str::trim)
        .with_context(|| format!("no 99% in wrk output: {text}"))?;
    let us = if let Some(v) = p99.strip_suffix("us") {
        v.parse::<f64>()?
    } else if let Some(v) = p99.strip_suffix("ms") {
        v.parse::<f64>()? * 1e3
    } else if let Some(v) = p99.strip_suffix('s') {
        v.parse::<f64>()? * 1e6
    } else {
        bail!("p99 {p99:?}")
    };
    if text.contains("Non-2xx") {
        bail!("errors in wrk run: {text}");
    }
    Ok((rps, us))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    let args = Args::parse();
    require_root();
    let cp = ControlPlane::start(Backend::Embedded)?;
    let port = free_port()?;
    let backends = Backends::start(&[
        ("one", SocketAddr::from(([127, 0, 0, 2], port))),
        ("two", SocketAddr::from(([127, 0, 0, 3], port))),
    ])?;
    cp.kubectl().ok_stdin(
        &["apply", "-f", "-"],
        &format!("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: pea}}\nspec: {{controller: pea.dev/ingress}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\nspec:\n  ports:\n  - {{name: http, port: 80}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-x\n  namespace: default\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports:\n- {{name: http, port: {port}, protocol: TCP}}\nendpoints:\n- addresses: [127.0.0.2]\n- addresses: [127.0.0.3]\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web, namespace: default}}\nspec:\n  ingressClassName: pea\n  rules:\n  - host: bench.example\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"),
    );
    let dir = tempfile::tempdir()?;
    let threads = args.threads.to_string();
    let pea = PeaIngress::start(&cp.kubeconfig, dir.path(), &["--threads", &threads])?;
    let ngx = nginx(&backends.addrs, args.threads)?;
    let (mut p_rps, mut p_p99, mut n_rps, mut n_p99) = (vec![], vec![], vec![], vec![]);
    for round in 0..args.rounds {
        eprintln!("bench-ingress: round {}/{}", round + 1, args.rounds);
        let order: [bool; 2] = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_pea in order {
            let (rps, p99) = wrk(if is_pea { pea.http } else { ngx.addr }, &args)?;
            if is_pea {
                p_rps.push(rps);
                p_p99.push(p99);
            } else {
                n_rps.push(rps);
                n_p99.push(p99);
            }
        }
    }
    println!(
        "### bench-ingress: wrk -t2 -c{} -d{}s, one host, two backends, {} proxy threads/workers, loopback\n",
        args.connections, args.seconds, args.threads
    );
    println!("| subject | requests/s (median) | p99 (median) | rps ratio to nginx | p99 ratio to nginx |\n|---|---|---|---|---|");
    let (pr, pp, nr, np) = (
        median(&p_rps),
        median(&p_p99),
        median(&n_rps),
        median(&n_p99),
    );
    println!(
        "| pea-ingress | {pr:.0} | {pp:.0} µs | {:.2}× | {:.2}× |",
        pr / nr,
        pp / np
    );
    println!("| nginx 1.22 | {nr:.0} | {np:.0} µs | 1.00× | 1.00× |");
    println!("\nper round requests/s: pea-ingress {p_rps:?}, nginx {n_rps:?}");
    Ok(())
}
