//! Wiring: bind the DNS sockets (UDP and TCP on one port) and the HTTP listener, start the
//! watchers and hickory-server, and hand back the addresses and a shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use kube::Client;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::forward::Forwarder;
use crate::handler::{Handler, State};
use crate::lookup::Zone;
use crate::metrics::Metrics;
use crate::Error;

/// How long an idle TCP connection is kept (CoreDNS's default read timeout is 10 s).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// pea-dns's settings (one per flag of the binary).
#[derive(Debug, Clone)]
pub struct Config {
    /// UDP and TCP address to serve DNS on.
    pub listen: SocketAddr,
    /// `/metrics`, `/health`, `/ready`; `None` serves none.
    pub http_listen: Option<SocketAddr>,
    pub cluster_domain: String,
    /// TTL of cluster records (CoreDNS's kubernetes `ttl`).
    pub ttl: u32,
    /// Resolvers for everything outside the cluster zone; `None` refuses such questions.
    pub upstream_resolv_conf: Option<PathBuf>,
    /// UDP sockets sharing the port (SO_REUSEPORT), each with its own receive loop.
    pub udp_sockets: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 53)),
            http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9153))),
            cluster_domain: "cluster.local".into(),
            ttl: 5,
            upstream_resolv_conf: None,
            udp_sockets: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// A serving pea-dns.
pub struct Running {
    pub dns_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    pub state: Arc<State>,
    pub synced: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
    udp_stop: Arc<AtomicBool>,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
    server: Option<Server<Handler>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("dns_addr", &self.dns_addr)
            .field("http_addr", &self.http_addr)
            .finish()
    }
}

/// One UDP socket with SO_REUSEPORT, so several receive loops share the port (the kernel spreads
/// datagrams over them by flow hash; only sockets of the same user may join, as CoreDNS's
/// `reuseport`). Blocking: each is read by its own thread (see [`crate::udp`]).
fn udp_reuseport(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use nix::sys::socket::{
        bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
    };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    // Room for bursts: the default 208 KiB drops under load before the loops catch up.
    let _ = setsockopt(&fd, sockopt::RcvBuf, &(4 << 20));
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )?;
    Ok(std::net::UdpSocket::from(fd))
}

/// Binds `udp_sockets` UDP sockets and a TCP listener on the same port; with port 0 the first
/// UDP socket picks it and the rest follow, retried a few times in case another program holds
/// that port for TCP.
async fn bind_dns(
    listen: SocketAddr,
    udp_sockets: usize,
) -> Result<(Vec<std::net::UdpSocket>, TcpListener), Error> {
    let bind_err = |addr: SocketAddr| move |source| Error::Bind { addr, source };
    for _ in 0..16 {
        let first = udp_reuseport(listen).map_err(bind_err(listen))?;
        let addr = first.local_addr().map_err(bind_err(listen))?;
        let mut udp = vec![first];
        for _ in 1..udp_sockets.max(1) {
            udp.push(udp_reuseport(addr).map_err(bind_err(addr))?);
        }
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if listen.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(Error::Bind { addr, source: e }),
        }
    }
    Err(Error::Bind {
        addr: listen,
        source: std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "no port free for both UDP and TCP",
        ),
    })
}

pub async fn start(config: Config, client: Client) -> Result<Running, Error> {
    let zone = Zone::new(&config.cluster_domain, config.ttl).map_err(|e| Error::Domain {
        domain: config.cluster_domain.clone(),
        message: e.to_string(),
    })?;
    let forwarder = match &config.upstream_resolv_conf {
        Some(path) => Some(Forwarder::from_resolv_conf(path)?),
        None => None,
    };
    let (udp, tcp) = bind_dns(config.listen, config.udp_sockets).await?;
    let dns_addr = udp[0].local_addr().map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    let http = match config.http_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?,
        ),
        None => None,
    };
    let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
    let metrics = Metrics::new(&format!("dns://{dns_addr}"), &zone.origin.to_ascii());
    let state = Arc::new(State::new(zone, forwarder, metrics));
    let (synced_tx, synced) = watch::channel(false);
    let mut tasks = vec![tokio::spawn(crate::watch::run(
        client,
        state.clone(),
        synced_tx,
    ))];
    if let Some(l) = http {
        tasks.push(tokio::spawn(crate::http::serve(
            l,
            state.clone(),
            synced.clone(),
        )));
    }
    let handler = Handler {
        state: state.clone(),
    };
    let udp_stop = Arc::new(AtomicBool::new(false));
    let udp_threads = crate::udp::spawn(
        udp,
        handler.clone(),
        tokio::runtime::Handle::current(),
        udp_stop.clone(),
    )
    .map_err(|source| Error::Bind {
        addr: dns_addr,
        source,
    })?;
    let mut server = Server::new(handler);
    server.register_listener(tcp, TCP_IDLE, 64 * 1024);
    info!(%dns_addr, ?http_addr, domain = %config.cluster_domain,
        upstream = ?state.forwarder.as_ref().map(|f| &f.servers), "pea-dns serving");
    Ok(Running {
        dns_addr,
        http_addr,
        state,
        synced,
        tasks,
        udp_stop,
        udp_threads,
        server: Some(server),
    })
}

impl Running {
    /// Resolves once the cluster state has been listed (or never, if the API is unreachable).
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Runs until the DNS server stops (an unrecoverable socket error).
    pub async fn wait(&mut self) -> Result<(), Error> {
        if let Some(server) = self.server.as_mut() {
            server
                .block_until_done()
                .await
                .map_err(|e| Error::Serve(e.to_string()))?;
        }
        Ok(())
    }

    pub async fn shutdown(mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.shutdown_gracefully().await;
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.udp_stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut self.udp_threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(server) = self.server.as_ref() {
            server.shutdown_token().cancel();
        }
        for t in &self.tasks {
            t.abort();
        }
        self.udp_stop.store(true, Ordering::Relaxed);
    }
}
