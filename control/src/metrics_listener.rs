//! `/metrics` and `/healthz` of `pea-control controllers` or `pea-control scheduler` running
//! alone, on the plain-HTTP address its `--metrics-bind-address` names (kube-controller-manager
//! and kube-scheduler serve them on their secure ports 10257 and 10259 behind delegated
//! authentication; pea's standalone components have no authenticator of their own, so this
//! listener is off unless asked for, and is meant for loopback or a node-local scraper, as
//! kube-proxy's `--metrics-bind-address`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

/// Binds `addr` and serves until the runtime ends: GET `/metrics` answers `render()` in the
/// Prometheus text format, `/healthz` "ok", anything else 404. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(pea_http_serve::serve_http(listener, move |req| {
        answer(req.method(), req.uri().path(), &*render)
    }));
    Ok(local)
}

fn answer(
    method: &hyper::Method,
    path: &str,
    render: &dyn Fn() -> String,
) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (method, path) {
        (&hyper::Method::GET, "/metrics") => {
            (200, "text/plain; version=0.0.4; charset=utf-8", render())
        }
        (&hyper::Method::GET, "/healthz") => (200, "text/plain; charset=utf-8", "ok".into()),
        (&hyper::Method::GET, _) => (
            404,
            "text/plain; charset=utf-8",
            "404 page not found\n".into(),
        ),
        _ => (
            405,
            "text/plain; charset=utf-8",
            "method not allowed\n".into(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
    r.headers_mut()
        .insert("content-type", ctype.parse().expect("header"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_healthz_and_nothing_else() {
        let render = || "a_total 1\n".to_string();
        let get = hyper::Method::GET;
        assert_eq!(answer(&get, "/metrics", &render).status(), 200);
        assert_eq!(answer(&get, "/healthz", &render).status(), 200);
        assert_eq!(answer(&get, "/api", &render).status(), 404);
        assert_eq!(
            answer(&hyper::Method::POST, "/metrics", &render).status(),
            405
        );
    }
}
