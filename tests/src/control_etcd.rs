//! A real etcd for tests and benchmarks: Debian's `etcd` started on free 127.0.0.1 ports with a
//! temporary data dir, stopped (and its dir removed) when the fixture drops.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running etcd.
#[derive(Debug)]
pub struct Etcd {
    child: Child,
    client_url: String,
    _data: tempfile::TempDir,
}

pub use crate::fixtures::registry::free_port;

impl Etcd {
    /// Starts etcd and waits until `/health` says it is healthy (at most 30 s). The ports are
    /// probed free and then handed to etcd, so another process (a parallel test) can take one in
    /// between: an etcd that exits at once is started again on new ports, up to three times.
    pub fn start() -> Result<Self> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once() {
                Ok(e) => return Ok(e),
                Err(e) if e.to_string().starts_with("etcd exited early") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("three attempts"))
    }

    fn start_once() -> Result<Self> {
        let etcd = crate::privileged::require_program("etcd");
        let data = tempfile::Builder::new().prefix("pea-etcd-").tempdir()?;
        let (client, peer) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(data.path().join("etcd.log"))?;
        let child = Command::new(etcd)
            .arg("--name=pea-test")
            .arg(format!("--data-dir={}", data.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=pea-test={peer_url}"))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn etcd")?;
        let mut me = Self {
            child,
            client_url,
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = me.child.try_wait()? {
                let log =
                    std::fs::read_to_string(me._data.path().join("etcd.log")).unwrap_or_default();
                bail!("etcd exited early with {status}: {log}");
            }
            if healthy(client) {
                return Ok(me);
            }
            if Instant::now() > deadline {
                bail!("etcd on {} not healthy after 30 s", me.client_url);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.client_url
    }
}

fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
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
