//! Login with the browser's client certificate (served by pea-control only).
//!
//! pea-control's TLS listener asks every client for a certificate (optional: bearer tokens work
//! without one) and verifies an offered one against the cluster CA. For a `/dashboard/`
//! request on such a connection it hands the dashboard the certificate's user (CN) and groups
//! (O) as a [`ClientCertUser`] request extension — the browser cannot forge it: it comes from
//! the TLS handshake, never from a header or form. A certificate session then talks to the API
//! over in-process connections that pea-control authenticates as exactly that user
//! ([`ConnectAs`]), so the API server's authorizer decides every request as it would for the
//! certificate itself: no token or certificate is minted, and no impersonation right exists
//! that a bug could misuse for somebody else. Every later request of the session must arrive
//! with the same certificate, so a session cookie alone (without the browser's private key) is
//! worth nothing.
//!
//! The standalone `pea-dashboard` serves plain HTTP (no TLS, so no client certificate): its
//! login page says certificate login is not available there.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// The identity of a client certificate the TLS layer verified against the cluster CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertUser {
    /// The subject's CN.
    pub name: String,
    /// The subject's O entries.
    pub groups: Vec<String>,
}

impl ClientCertUser {
    /// `CN=alice/O=dev/O=ops`, as the login button shows it.
    pub fn subject(&self) -> String {
        let mut s = format!("CN={}", self.name);
        for g in &self.groups {
            s.push_str("/O=");
            s.push_str(g);
        }
        s
    }
}

/// Opens a connection to the API server on which every request is authenticated as the given
/// user (pea-control's `InProcess::connect_as`).
pub type ConnectAs = Arc<dyn Fn(&ClientCertUser) -> tokio::io::DuplexStream + Send + Sync>;

/// How long an ordinary (not streaming) call may wait for the answer's head.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A [`kube::Client`] whose requests go over fresh in-process connections as `user`.
/// `streaming`: no timeout (watches, followed logs, terminals stay quiet while nothing happens).
pub fn client(connect: ConnectAs, user: ClientCertUser, streaming: bool) -> kube::Client {
    kube::Client::new(
        InProcess {
            connect,
            user,
            timeout: (!streaming).then_some(CALL_TIMEOUT),
        },
        "default",
    )
}

#[derive(Clone)]
struct InProcess {
    connect: ConnectAs,
    user: ClientCertUser,
    timeout: Option<Duration>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Request<kube::client::Body>> for InProcess {
    type Response = Response<hyper::body::Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    /// One connection per request: it costs an in-memory pipe, and an upgraded request (a
    /// terminal) keeps its own.
    fn call(&mut self, mut req: Request<kube::client::Body>) -> Self::Future {
        let io = (self.connect)(&self.user);
        let timeout = self.timeout;
        Box::pin(async move {
            if !req.headers().contains_key(hyper::header::HOST) {
                req.headers_mut()
                    .insert(hyper::header::HOST, "pea-control.in-process".parse()?);
            }
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "in-process API connection ended");
                }
            });
            let answer = send.send_request(req);
            Ok(match timeout {
                Some(t) => tokio::time::timeout(t, answer)
                    .await
                    .map_err(|_| format!("the API server did not answer within {t:?}"))??,
                None => answer.await?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_names_cn_and_every_o() {
        let u = ClientCertUser {
            name: "alice".into(),
            groups: vec!["dev".into(), "ops".into()],
        };
        assert_eq!(u.subject(), "CN=alice/O=dev/O=ops");
    }
}
