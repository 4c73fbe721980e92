//! DNS fixtures: pea-dns as a process, unbound serving a static zone (an upstream for pea-dns's
//! forwarding and the anchor of bench-dns), and `dig` with its answer parsed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bins::workspace_binary;
use crate::fixtures::registry::free_port;
use crate::privileged::require_program;

/// Stops a child: SIGTERM, a short wait, then SIGKILL; always reaped.
fn stop(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A UDP+TCP port pair free a moment ago on 127.0.0.1.
pub fn free_dns_port() -> Result<u16> {
    for _ in 0..20 {
        let port = free_port()?;
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both TCP and UDP on 127.0.0.1")
}

/// One HTTP/1.0 GET on loopback; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A running pea-dns process.
#[derive(Debug)]
pub struct PeaDns {
    child: Child,
    pub dns: SocketAddr,
    pub http: SocketAddr,
}

impl PeaDns {
    /// Starts pea-dns on free loopback ports and waits (bounded) until /ready says it synced.
    pub fn start(
        kubeconfig: &Path,
        upstream_resolv_conf: Option<&Path>,
        extra: &[&str],
    ) -> Result<Self> {
        let bin = workspace_binary("pea-dns", "PEA_DNS");
        let mut last = None;
        for _ in 0..3 {
            let dns = SocketAddr::from(([127, 0, 0, 1], free_dns_port()?));
            let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let mut cmd = Command::new(&bin);
            cmd.arg("--kubeconfig")
                .arg(kubeconfig)
                .arg("--listen")
                .arg(dns.to_string())
                .arg("--http-listen")
                .arg(http.to_string())
                .args(extra)
                .stdin(Stdio::null());
            if let Some(r) = upstream_resolv_conf {
                cmd.arg("--upstream-resolv-conf").arg(r);
            }
            let child = cmd
                .spawn()
                .with_context(|| format!("spawn {}", bin.display()))?;
            let mut me = Self { child, dns, http };
            match me.wait_ready(Duration::from_secs(20)) {
                Ok(()) => return Ok(me),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried"))
    }

    fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("pea-dns exited early: {status}");
            }
            if let Ok((200, _)) = http_get(self.http, "/ready") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("pea-dns not ready within {within:?}")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PeaDns {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// unbound answering `zone` from `records` (lines of zone data) on `addr`, everything else in
/// the zone NXDOMAIN (`local-zone: static`). Never recurses: tests have no internet.
#[derive(Debug)]
pub struct Unbound {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Unbound {
    pub fn start(addr: SocketAddr, zone: &str, records: &[String], threads: usize) -> Result<Self> {
        let bin = require_program("unbound");
        let dir = tempfile::Builder::new().prefix("pea-unbound-").tempdir()?;
        let mut conf = format!(
            "server:\n  interface: {ip}@{port}\n  port: {port}\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 0\n  num-threads: {threads}\n  do-ip6: no\n  interface-automatic: no\n  access-control: 127.0.0.0/8 allow\n  module-config: \"iterator\"\n  so-reuseport: {reuse}\n  local-zone: \"{zone}.\" static\n",
            ip = addr.ip(),
            port = addr.port(),
            dir = dir.path().display(),
            // Several threads share the port through SO_REUSEPORT; one thread needs no sharing,
            // so a second server on the same address fails instead of splitting the queries.
            reuse = if threads > 1 { "yes" } else { "no" },
        );
        for r in records {
            conf.push_str(&format!("  local-data: \"{r}\"\n"));
        }
        conf.push_str("remote-control:\n  control-enable: no\n");
        let path = dir.path().join("unbound.conf");
        std::fs::write(&path, conf)?;
        let child = Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("spawn unbound")?;
        let mut me = Self {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = me.child.try_wait()? {
                bail!("unbound exited: {status}");
            }
            if dig(addr, &[&format!("{zone}."), "SOA"]).is_ok_and(|d| d.status == "NOERROR") {
                return Ok(me);
            }
            if Instant::now() > deadline {
                bail!("unbound on {addr} did not answer within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A parsed `dig` answer.
#[derive(Debug, Clone, Default)]
pub struct Dig {
    pub status: String,
    /// Header flags: qr, aa, rd, ra, tc.
    pub flags: Vec<String>,
    /// Answer records as (name, ttl, type, rdata).
    pub answer: Vec<(String, u32, String, String)>,
    pub authority: Vec<(String, u32, String, String)>,
    pub additional: Vec<(String, u32, String, String)>,
    pub raw: String,
}

impl Dig {
    /// The rdata of every answer record of `rtype`.
    pub fn rdata(&self, rtype: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .answer
            .iter()
            .filter(|r| r.2 == rtype)
            .map(|r| r.3.clone())
            .collect();
        v.sort();
        v
    }

    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
}

/// Runs `dig @addr -p port <args>` (one try, 2 s) and parses its answer.
pub fn dig(addr: SocketAddr, args: &[&str]) -> Result<Dig> {
    let out = Command::new(require_program("dig"))
        .arg(format!("@{}", addr.ip()))
        .arg("-p")
        .arg(addr.port().to_string())
        .args(["+tries=1", "+time=2", "+nocookie"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run dig")?;
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "dig {args:?} failed: {raw}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_dig(&raw)
}

fn parse_dig(raw: &str) -> Result<Dig> {
    let mut d = Dig {
        raw: raw.to_string(),
        ..Dig::default()
    };
    let mut section = "";
    for line in raw.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            d.status = rest.split(',').next().unwrap_or_default().to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags: ") {
            d.flags = rest
                .split(';')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect();
        } else if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
        } else if line.starts_with(";; ADDITIONAL SECTION") {
            section = "additional";
        } else if line.starts_with(';') || line.trim().is_empty() {
            if line.trim().is_empty() {
                section = "";
            }
        } else {
            let mut parts = line.split_whitespace();
            let name = parts.next().unwrap_or_default().to_string();
            let ttl = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
            let _class = parts.next();
            let rtype = parts.next().unwrap_or_default().to_string();
            let rdata = parts.collect::<Vec<_>>().join(" ");
            let rec = (name, ttl, rtype, rdata);
            match section {
                "answer" => d.answer.push(rec),
                "authority" => d.authority.push(rec),
                "additional" => d.additional.push(rec),
                _ => {}
            }
        }
    }
    if d.status.is_empty() {
        bail!("no DNS answer in dig output: {raw}");
    }
    Ok(d)
}

/// Writes a resolv.conf naming `server` (port 53 is implied, as in every resolv.conf).
pub fn resolv_conf(dir: &Path, server: std::net::IpAddr) -> Result<PathBuf> {
    let p = dir.join("resolv.conf");
    std::fs::write(&p, format!("nameserver {server}\noptions ndots:1\n"))?;
    Ok(p)
}

/// A loopback address other programs are unlikely to use, distinct per call in this process, for
/// a resolver on port 53 (resolv.conf cannot name another port).
pub fn spare_loopback_ip() -> std::net::IpAddr {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pid = std::process::id();
    std::net::IpAddr::from([
        127,
        53 + (n % 64) as u8,
        ((pid >> 8) & 0xff) as u8,
        (pid & 0xff).max(2) as u8,
    ])
}
