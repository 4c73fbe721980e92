//! gRPC probes as kubelet's prober (`pkg/probe/grpc`): grpc.health.v1.Health/Check over
//! plaintext HTTP/2 to the pod IP, the probe's `service` as the request's service name,
//! `User-Agent: kube-probe/1.32`; SERVING is success, anything else a failure worded as
//! kubelet words it.

use std::time::Duration;

use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::Outcome;

pub async fn probe(host: &str, port: u16, service: &str, timeout: Duration) -> Outcome {
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let endpoint = match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent("kube-probe/1.32")
            .expect("a static user agent is a valid header"),
        Err(e) => {
            return Outcome::Failure(format!(
                "error: failed to connect service at \"{addr}\": {e}"
            ))
        }
    };
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Err(_) => {
            return Outcome::Failure(format!(
            "timeout: failed to connect service \"{addr}\" within {}s: context deadline exceeded",
            timeout.as_secs()
        ))
        }
        Ok(Err(e)) => {
            return Outcome::Failure(format!(
                "error: failed to connect service at \"{addr}\": {}",
                source_chain(&e)
            ))
        }
        Ok(Ok(c)) => c,
    };
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    let answer = tokio::time::timeout(timeout, HealthClient::new(channel).check(request)).await;
    match answer {
        Err(_) => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {}s",
            timeout.as_secs()
        )),
        Ok(Err(s)) => Outcome::Failure(match s.code() {
            tonic::Code::Unimplemented => format!(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                s.message()
            ),
            tonic::Code::DeadlineExceeded => format!(
                "timeout: health rpc did not complete within {}s",
                timeout.as_secs()
            ),
            code => format!(
                "error: health rpc probe failed: rpc error: code = {code:?} desc = {}",
                s.message()
            ),
        }),
        Ok(Ok(r)) => {
            let status = r.into_inner().status;
            if status == ServingStatus::Serving as i32 {
                Outcome::Success
            } else {
                let name = ServingStatus::try_from(status)
                    .map(|s| s.as_str_name().to_string())
                    .unwrap_or_else(|_| status.to_string());
                Outcome::Failure(format!("service unhealthy (responded with \"{name}\")"))
            }
        }
    }
}

/// tonic's transport errors say "transport error" and keep the cause underneath.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serving_not_serving_unknown_service_and_no_server() {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("ready", tonic_health::ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("draining", tonic_health::ServingStatus::NotServing)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream_of(listener)),
        );
        let t = Duration::from_secs(2);
        // "" is the server's overall health, SERVING by default in tonic-health.
        assert_eq!(probe("127.0.0.1", port, "", t).await, Outcome::Success);
        assert_eq!(probe("127.0.0.1", port, "ready", t).await, Outcome::Success);
        assert_eq!(
            probe("127.0.0.1", port, "draining", t).await,
            Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        let Outcome::Failure(e) = probe("127.0.0.1", port, "nope", t).await else {
            panic!("an unknown service is not serving")
        };
        assert!(
            e.starts_with("error: health rpc probe failed: rpc error: code = NotFound"),
            "{e}"
        );
        server.abort();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        let Outcome::Failure(e) = probe("127.0.0.1", closed_port, "", t).await else {
            panic!("nothing listens")
        };
        assert!(
            e.starts_with(&format!(
                "error: failed to connect service at \"127.0.0.1:{closed_port}\""
            )),
            "{e}"
        );
    }

    fn tokio_stream_of(
        l: tokio::net::TcpListener,
    ) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
        futures_util::stream::unfold(l, |l| async move {
            let r = l.accept().await.map(|(s, _)| s);
            Some((r, l))
        })
    }
}
