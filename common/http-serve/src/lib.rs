//! The small plain-HTTP/1.1 servers pea's components run beside their real work: pea-proxy's
//! `/metrics`, `/healthz` and health check node ports, the standalone controllers' `/metrics`.
//! Each answers every request with one synchronous function; a slow or silent client is cut
//! after 10 s of header reading, so it cannot hold a connection task forever.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Answers every HTTP/1.1 connection on `listener` with `answer`, until the task is dropped.
pub async fn serve_http<F>(listener: tokio::net::TcpListener, answer: F)
where
    F: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let r = answer(&req);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            let _ = conn.await;
        });
    }
}
