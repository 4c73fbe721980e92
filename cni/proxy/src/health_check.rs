//! Health check node ports, as kube-proxy's ServiceHealthServer: a LoadBalancer Service with
//! `externalTrafficPolicy: Local` gets `spec.healthCheckNodePort`, and every node answers HTTP
//! there — 200 when it has a ready local endpoint of the Service (and the proxy is healthy),
//! 503 otherwise — so a cloud load balancer sends traffic only to nodes that keep it local.
//! The body and headers are kube-proxy's. Listeners are opened on the node's IPs (kube-proxy's
//! nftables default, `--nodeport-addresses primary`) and closed when the Service goes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, Request, Response, StatusCode};

use crate::metrics::Metrics;
use crate::model::{ServiceKey, ServicePort};

/// A Service's health check port and its local ready endpoints (distinct IP:port across its
/// ports, as kube-proxy's LocalReadyEndpoints counts them); `None` without one.
pub fn entry(ports: &[ServicePort]) -> Option<(u16, usize)> {
    let port = ports.iter().find_map(|p| p.health_check_node_port)?;
    let local: BTreeSet<(IpAddr, u16)> = ports
        .iter()
        .flat_map(|p| p.endpoints.iter())
        .filter(|e| e.local && e.ready)
        .map(|e| (e.ip, e.port))
        .collect();
    Some((port, local.len()))
}

#[derive(Debug)]
struct Server {
    state: Arc<Mutex<(ServiceKey, usize)>>,
    ips: Vec<IpAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The open health check listeners, reconciled after every sync.
#[derive(Debug)]
pub struct HealthServers {
    metrics: Metrics,
    servers: BTreeMap<u16, Server>,
    /// Ports whose bind failed, so the warning is logged once, not every sync.
    failed: BTreeSet<u16>,
}

impl HealthServers {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics,
            servers: BTreeMap::new(),
            failed: BTreeSet::new(),
        }
    }

    /// The ports listened on now.
    pub fn ports(&self) -> Vec<u16> {
        self.servers.keys().copied().collect()
    }

    /// Opens, updates and closes listeners so that exactly `wanted` is served on `ips`.
    pub fn sync(&mut self, wanted: &BTreeMap<u16, (ServiceKey, usize)>, ips: &[IpAddr]) {
        // One listener per address: a node may list an address twice (several links).
        let ips: Vec<IpAddr> = ips
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let ips = ips.as_slice();
        self.servers
            .retain(|port, s| wanted.contains_key(port) && s.ips == ips);
        self.failed.retain(|p| wanted.contains_key(p));
        for (port, (key, count)) in wanted {
            if let Some(s) = self.servers.get(port) {
                *s.state.lock().expect("health state") = (key.clone(), *count);
                continue;
            }
            if ips.is_empty() {
                if self.failed.insert(*port) {
                    tracing::warn!(service = %key, port, "no node IP to serve the health check node port on");
                }
                continue;
            }
            let state = Arc::new(Mutex::new((key.clone(), *count)));
            let mut tasks = Vec::new();
            let mut error = None;
            for ip in ips {
                match listen(SocketAddr::new(*ip, *port)) {
                    Ok(l) => {
                        tasks.push(tokio::spawn(serve(l, state.clone(), self.metrics.clone())))
                    }
                    Err(e) => error = Some((*ip, e)),
                }
            }
            let server = Server {
                state,
                ips: ips.to_vec(),
                tasks,
            };
            match error {
                // All or nothing: a partial set is closed and tried again next sync.
                Some((ip, e)) => {
                    drop(server);
                    if self.failed.insert(*port) {
                        tracing::warn!(service = %key, "health check node port {ip}:{port}: {e}; retried every sync");
                    }
                }
                None => {
                    self.failed.remove(port);
                    tracing::info!(service = %key, port, "serving the health check node port");
                    self.servers.insert(*port, server);
                }
            }
        }
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As every server (and kube-proxy's): connections of an earlier listener in TIME_WAIT on
    // this address must not keep the port from being served again.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<Mutex<(ServiceKey, usize)>>,
    metrics: Metrics,
) {
    pea_http_serve::serve_http(listener, move |_req: &Request<Incoming>| {
        let (key, count) = state.lock().expect("health state").clone();
        respond(&key, count, metrics.healthy())
    })
    .await
}

/// kube-proxy's answer, headers and body alike.
fn respond(key: &ServiceKey, count: usize, proxy_healthy: bool) -> Response<Full<Bytes>> {
    let body = format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {},\n\t\t\"name\": {}\n\t}},\n\t\"localEndpoints\": {count},\n\t\"serviceProxyHealthy\": {proxy_healthy}\n}}",
        serde_json::Value::from(key.namespace.as_str()),
        serde_json::Value::from(key.name.as_str()),
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = if count > 0 && proxy_healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let h = r.headers_mut();
    h.insert("content-type", "application/json".parse().expect("header"));
    h.insert("x-content-type-options", "nosniff".parse().expect("header"));
    h.insert(
        "x-load-balancing-endpoint-weight",
        count.to_string().parse().expect("header"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_kube_proxys() {
        let key = ServiceKey {
            namespace: "ns".into(),
            name: "web".into(),
        };
        let r = respond(&key, 2, true);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-load-balancing-endpoint-weight"], "2");
        let body: serde_json::Value = {
            use http_body_util::BodyExt;
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let b = rt.block_on(r.into_body().collect()).unwrap();
            serde_json::from_slice(&b.to_bytes()).unwrap()
        };
        assert_eq!(
            body,
            serde_json::json!({"service": {"namespace": "ns", "name": "web"},
                "localEndpoints": 2, "serviceProxyHealthy": true})
        );
        assert_eq!(
            respond(&key, 0, true).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            respond(&key, 3, false).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
