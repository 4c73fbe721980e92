//! Network-namespace lab for networking tests: nodes, pods and underlays are namespaces the test
//! creates (named `pea-<role>-<random>`), wired by veths and bridges inside them. Nothing here
//! touches the root network namespace. Every namespace is an RAII guard: dropping it kills what
//! runs inside and deletes it, which also removes its links, addresses, routes and nft tables.

use std::{
    fs::File,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Command, Output},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use nix::sched::CloneFlags;

/// A random lowercase hex suffix (from the kernel's CSPRNG).
pub fn random_suffix(n_bytes: usize) -> String {
    let mut b = vec![0u8; n_bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("reading /dev/urandom");
    hex::encode(b)
}

/// Runs a program and fails with its stderr when it exits non-zero.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// A named network namespace owned by the test.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `pea-<role>-<random>` with its loopback up.
    pub fn new(role: &str) -> Result<Self> {
        crate::privileged::require_root();
        let name = format!("pea-{role}-{}", random_suffix(3));
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n <ns> args...`
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip -j -n <ns> args...` parsed.
    pub fn ip_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = vec!["-j", "-n", &self.name];
        all.extend_from_slice(args);
        let out = run("ip", &all)?;
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Array(vec![]));
        }
        serde_json::from_slice(&out.stdout).context("ip -j output")
    }

    /// Runs a command inside the namespace (`ip netns exec`); returns its output whatever the
    /// exit status.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        Command::new("ip")
            .args(&all)
            .output()
            .with_context(|| format!("ip netns exec {} {}", self.name, args.join(" ")))
    }

    /// Link names in the namespace.
    pub fn links(&self) -> Result<Vec<String>> {
        Ok(self
            .ip_json(&["link", "show"])?
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l["ifname"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// IPv4 addresses (`a.b.c.d/len`) of `dev`.
    pub fn addrs(&self, dev: &str) -> Result<Vec<String>> {
        let v = self.ip_json(&["-4", "addr", "show", "dev", dev])?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| {
                Some(format!(
                    "{}/{}",
                    a["local"].as_str()?,
                    a["prefixlen"].as_u64()?
                ))
            })
            .collect())
    }

    /// Destinations of the IPv4 routes out of `dev`, sorted; empty while `dev` does not exist.
    pub fn routes_on(&self, dev: &str) -> Result<Vec<String>> {
        if !self.links()?.iter().any(|l| l == dev) {
            return Ok(Vec::new());
        }
        let v = self.ip_json(&["-4", "route", "show", "dev", dev])?;
        let mut r: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["dst"].as_str().map(String::from))
            .collect();
        r.sort();
        Ok(r)
    }

    /// The tables of the nftables ruleset in this namespace, as `family name`.
    pub fn nft_tables(&self) -> Result<Vec<String>> {
        let out = self.exec(&["nft", "-j", "list", "tables"])?;
        if !out.status.success() {
            bail!("nft list tables: {}", String::from_utf8_lossy(&out.stderr));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| {
                let t = o.get("table")?;
                Some(format!("{} {}", t["family"].as_str()?, t["name"].as_str()?))
            })
            .collect())
    }

    /// Number of rules in the namespace's whole nftables ruleset.
    pub fn nft_rule_count(&self) -> Result<usize> {
        let out = self.exec(&["nft", "-j", "list", "ruleset"])?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o.get("rule").is_some())
            .count())
    }

    /// One ICMP echo from this namespace (busybox ping), true on a reply.
    pub fn ping(&self, ip: &str) -> Result<bool> {
        let out = self.exec(&["/bin/busybox", "ping", "-c", "1", "-W", "2", ip])?;
        Ok(out.status.success())
    }

    /// Runs `f` on a fresh thread that has entered this namespace.
    pub fn spawn_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<JoinHandle<Result<T>>> {
        let file = File::open(self.path()).with_context(|| format!("opening {}", self.name))?;
        Ok(std::thread::spawn(move || {
            // setns(CLONE_NEWNET) switches only this thread; it ends with the closure.
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).context("setns")?;
            f()
        }))
    }

    /// Runs `f` inside the namespace and waits for it.
    pub fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.spawn_in(f)?
            .join()
            .map_err(|_| anyhow::anyhow!("thread in {} panicked", self.name))?
    }

    /// Starts a TCP echo server in the namespace on `0.0.0.0:port`.
    pub fn tcp_echo_server(&self, port: u16) -> Result<EchoServer> {
        self.tcp_server(port, Serve::Once)
    }

    /// Starts a TCP server that answers every connection with the peer's IP address (what
    /// source address arrived here, e.g. after masquerade), followed by the bytes it received.
    pub fn tcp_whoami_server(&self, port: u16) -> Result<EchoServer> {
        self.tcp_server(port, Serve::Whoami)
    }

    /// Starts a TCP echo server that keeps each connection open, echoing everything until the
    /// client closes it (idle for at most 60 s): for a connection that must survive an event.
    pub fn tcp_stream_echo_server(&self, port: u16) -> Result<EchoServer> {
        self.tcp_server(port, Serve::Stream)
    }

    /// Opens a TCP connection from this namespace (the socket stays in it) to a
    /// [`Netns::tcp_stream_echo_server`].
    pub fn tcp_connect(&self, addr: SocketAddr) -> Result<EchoConn> {
        self.run_in(move || {
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                .with_context(|| format!("connect {addr}"))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            Ok(EchoConn(s))
        })
    }

    /// `dev`'s ifindex and MAC: what tells a link apart from a recreated one of the same name.
    pub fn link_identity(&self, dev: &str) -> Result<(u64, String)> {
        let d = self.ip_json(&["link", "show", "dev", dev])?;
        Ok((
            d[0]["ifindex"].as_u64().context("ifindex")?,
            d[0]["address"].as_str().context("address")?.to_string(),
        ))
    }

    fn tcp_server(&self, port: u16, mode: Serve) -> Result<EchoServer> {
        let whoami = mode == Serve::Whoami;
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stop2 = stop.clone();
        let handle = self.spawn_in(move || {
            let l = TcpListener::bind(("0.0.0.0", port)).context("bind echo server")?;
            l.set_nonblocking(true)?;
            let _ = ready_tx.send(());
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) if mode == Serve::Stream => {
                        s.set_nonblocking(false)?;
                        s.set_read_timeout(Some(Duration::from_secs(60)))?;
                        let mut buf = [0u8; 4096];
                        while let Ok(n @ 1..) = s.read(&mut buf) {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                    Ok((mut s, peer)) => {
                        s.set_nonblocking(false)?;
                        s.set_read_timeout(Some(Duration::from_secs(5)))?;
                        let mut buf = [0u8; 4096];
                        if let Ok(n) = s.read(&mut buf) {
                            if whoami {
                                let _ = s.write_all(format!("{} ", peer.ip()).as_bytes());
                            }
                            let _ = s.write_all(&buf[..n]);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })?;
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .context("echo server did not start")?;
        Ok(EchoServer {
            stop,
            handle: Some(handle),
        })
    }

    /// Connects from this namespace to `addr`, sends `msg`, returns all that came back before
    /// the server closed the connection.
    pub fn tcp_echo(&self, addr: SocketAddr, msg: &[u8]) -> Result<Vec<u8>> {
        let msg = msg.to_vec();
        self.run_in(move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                .with_context(|| format!("connect {addr}"))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.write_all(&msg)?;
            let mut got = Vec::new();
            s.read_to_end(&mut got)
                .with_context(|| format!("echo from {addr}"))?;
            Ok(got)
        })
    }

    /// Kills every process still running in the namespace.
    pub fn kill_all(&self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(p) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_all();
        // A namespace whose last process just died can briefly refuse deletion; retry.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ok = Command::new("ip")
                .args(["netns", "del", &self.name])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok || !self.path().exists() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// An open connection to a stream echo server.
#[derive(Debug)]
pub struct EchoConn(TcpStream);

impl EchoConn {
    /// Sends `msg` and reads back as many bytes.
    pub fn echo(&mut self, msg: &[u8]) -> Result<Vec<u8>> {
        self.0.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        self.0.read_exact(&mut got).context("echo")?;
        Ok(got)
    }
}

/// How a test TCP server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serve {
    /// One read, echoed, then close.
    Once,
    /// The peer's address, then one read echoed, then close.
    Whoami,
    /// Echo until the client closes.
    Stream,
}

/// A running echo server; stops on drop.
#[derive(Debug)]
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<()>>>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Creates a veth pair `a_if` in `a` and `b_if` in `b`.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if f()? {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
