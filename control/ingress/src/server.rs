//! Listeners: HTTP and HTTPS (SNI, ALPN h2/http1.1), each connection served by hyper-util's
//! auto builder (HTTP/1.1 with upgrades, or HTTP/2) with [`crate::proxy::handle`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use kube::Client;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

use crate::state::State;
use crate::watch::Settings;
use crate::Error;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// pea-ingress's settings (one per flag of the binary).
#[derive(Debug, Clone)]
pub struct Config {
    pub http_listen: Option<SocketAddr>,
    pub https_listen: Option<SocketAddr>,
    /// Where `/metrics` and `/healthz` are served (`None`: not served).
    pub metrics_listen: Option<SocketAddr>,
    /// The IngressClass name served (its controller must be `pea.dev/ingress`).
    pub ingress_class: String,
    pub publish_address: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 80))),
            https_listen: Some(SocketAddr::from(([127, 0, 0, 1], 443))),
            metrics_listen: None,
            ingress_class: "pea".into(),
            publish_address: None,
        }
    }
}

#[derive(Debug)]
pub struct Running {
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub state: Arc<State>,
    pub synced: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, Error> {
    match addr {
        Some(addr) => Ok(Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?,
        )),
        None => Ok(None),
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, tls: Option<TlsAcceptor>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                debug!(error = %e, "accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let https = tls.is_some();
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move {
                    let started = std::time::Instant::now();
                    let r = crate::proxy::handle(state.clone(), peer, https, req).await;
                    if let Ok(resp) = &r {
                        state
                            .metrics
                            .observe(resp.status().as_u16(), started.elapsed());
                    }
                    r
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await
                        }
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "tls handshake");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                None => {
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .await
                }
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "client connection");
            }
        });
    }
}

pub async fn start(config: Config, client: Client) -> Result<Running, Error> {
    let http = bind(config.http_listen).await?;
    let https = bind(config.https_listen).await?;
    let metrics = bind(config.metrics_listen).await?;
    let state = Arc::new(State::default());
    let (tx, synced) = watch::channel(false);
    let settings = Settings {
        class: config.ingress_class.clone(),
        publish_address: config.publish_address.clone(),
    };
    let mut tasks = vec![tokio::spawn(crate::watch::run(
        client,
        state.clone(),
        settings,
        tx,
    ))];
    let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
    let https_addr = https.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(l) = http {
        tasks.push(tokio::spawn(accept_loop(l, state.clone(), None)));
    }
    if let Some(l) = https {
        let acceptor = TlsAcceptor::from(crate::tls::server_config(state.clone()));
        tasks.push(tokio::spawn(accept_loop(l, state.clone(), Some(acceptor))));
    }
    let metrics_addr = metrics.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(l) = metrics {
        tasks.push(tokio::spawn(crate::metrics::serve(l, state.clone())));
    }
    info!(?http_addr, ?https_addr, ?metrics_addr, class = %config.ingress_class, "pea-ingress serving");
    Ok(Running {
        http_addr,
        https_addr,
        state,
        synced,
        tasks,
    })
}

impl Running {
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn shutdown(self) {}
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
