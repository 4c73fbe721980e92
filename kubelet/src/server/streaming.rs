//! `/exec`, `/attach` and `/portForward`: the pod and container are found through CRI by the
//! kubelet's labels, the runtime's Exec/Attach/PortForward gives a streaming URL, and the
//! client's upgrade request is relayed to that URL unchanged; after the runtime's 101 the two
//! connections are spliced byte for byte (the kubelet's "proxy" streaming mode, so WebSocket and
//! SPDY both work, subprotocol negotiation included).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;

use super::cri_connect::CriHandle;
use super::lookup::find_pod;
use super::{Body, PodSource, ServerError};

const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Which streaming call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
    PortForward,
}

/// The stdio flags and command of an exec/attach query (`"1"` or `"true"` set a flag).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub command: Vec<String>,
    pub ports: Vec<i32>,
}

impl StreamOptions {
    pub fn from_query(kind: Kind, query: Option<&str>) -> Result<Self, ServerError> {
        let mut o = StreamOptions::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let on = matches!(v.as_ref(), "1" | "true" | "True");
            match k.as_ref() {
                "stdin" => o.stdin = on,
                "stdout" => o.stdout = on,
                "stderr" => o.stderr = on,
                "tty" => o.tty = on,
                "command" => o.command.push(v.into_owned()),
                "port" | "ports" => {
                    for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        match p.parse::<u16>() {
                            Ok(n) if n > 0 => o.ports.push(n.into()),
                            _ => {
                                return Err(ServerError::BadRequest(format!(
                                    "invalid port {p:?}: must be 1-65535"
                                )))
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        match kind {
            Kind::Exec | Kind::Attach if !(o.stdin || o.stdout || o.stderr) => {
                return Err(ServerError::BadRequest(
                    "you must specify at least 1 of stdin, stdout, stderr".into(),
                ))
            }
            Kind::Exec if o.command.is_empty() => {
                return Err(ServerError::BadRequest(
                    "you must specify a command to execute".into(),
                ))
            }
            _ => {}
        }
        // A terminal merges stderr into stdout, as the kubelet does.
        if o.tty {
            o.stderr = false;
        }
        Ok(o)
    }
}

/// Asks the runtime for the streaming URL of this request.
pub async fn streaming_url(
    cri: &CriHandle,
    pods: &dyn PodSource,
    kind: Kind,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    opts: &StreamOptions,
) -> Result<String, ServerError> {
    let uid = pods.pod(namespace, pod).and_then(|p| p.metadata.uid);
    let rp = find_pod(cri, namespace, pod, uid.as_deref()).await?;
    let mut rt = cri.runtime.clone();
    let url = match kind {
        Kind::PortForward => {
            rt.port_forward(cri::PortForwardRequest {
                pod_sandbox_id: rp.sandbox.id.clone(),
                port: opts.ports.clone(),
            })
            .await
            .map_err(|s| ServerError::cri("PortForward", s))?
            .into_inner()
            .url
        }
        Kind::Exec => {
            let c = rp.running(container.unwrap_or_default())?;
            rt.exec(cri::ExecRequest {
                container_id: c.id.clone(),
                cmd: opts.command.clone(),
                tty: opts.tty,
                stdin: opts.stdin,
                stdout: opts.stdout,
                stderr: opts.stderr,
            })
            .await
            .map_err(|s| ServerError::cri("Exec", s))?
            .into_inner()
            .url
        }
        Kind::Attach => {
            let c = rp.running(container.unwrap_or_default())?;
            rt.attach(cri::AttachRequest {
                container_id: c.id.clone(),
                stdin: opts.stdin,
                tty: opts.tty,
                stdout: opts.stdout,
                stderr: opts.stderr,
            })
            .await
            .map_err(|s| ServerError::cri("Attach", s))?
            .into_inner()
            .url
        }
    };
    Ok(url)
}

/// `http://host:port/path?query` → (host:port, path?query). Only plain HTTP: runtimes serve
/// streams on the node's loopback.
pub fn split_url(url: &str) -> Result<(String, String), ServerError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        ServerError::Internal(format!(
            "streaming URL {url:?} from the runtime: only http:// is supported"
        ))
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(ServerError::Internal(format!(
            "streaming URL {url:?} has no host"
        )));
    }
    Ok((authority.to_string(), path.to_string()))
}

/// Relays the client's request to the runtime's streaming `url`.
pub async fn proxy(
    url: &str,
    method: hyper::Method,
    headers: HeaderMap,
    client_upgrade: hyper::upgrade::OnUpgrade,
) -> Result<Response<Body>, ServerError> {
    let (authority, path) = split_url(url)?;
    let unreachable = |e: &dyn std::fmt::Display| {
        ServerError::Internal(format!("error dialing the runtime's stream {url}: {e}"))
    };
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(&authority))
        .await
        .map_err(|_| unreachable(&"timed out"))?
        .map_err(|e| unreachable(&e))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(path.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| unreachable(&e))?;
    for (k, v) in &headers {
        if !matches!(
            k.as_str(),
            "host" | "authorization" | "content-length" | "transfer-encoding" | "keep-alive"
        ) {
            req.headers_mut().append(k.clone(), v.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&authority) {
        req.headers_mut().insert(hyper::header::HOST, v);
    }
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(&e))?;
    let status = resp.status();
    let mut answer_headers = resp.headers().clone();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let backend = hyper::upgrade::on(resp);
        tokio::spawn(async move {
            match tokio::join!(backend, client_upgrade) {
                (Ok(b), Ok(c)) => {
                    let (mut b, mut c) = (TokioIo::new(b), TokioIo::new(c));
                    let r = tokio::io::copy_bidirectional(&mut c, &mut b).await;
                    tracing::debug!(result = ?r, "stream closed");
                }
                (b, c) => tracing::warn!(
                    backend = ?b.err(),
                    client = ?c.err(),
                    "stream upgrade did not complete"
                ),
            }
        });
        let mut answer = Response::new(Empty::<Bytes>::new().map_err(|n| match n {}).boxed());
        *answer.status_mut() = status;
        *answer.headers_mut() = answer_headers;
        return Ok(answer);
    }
    // No upgrade: the runtime's answer (e.g. a refused subprotocol) goes back as it is.
    for h in ["connection", "transfer-encoding", "keep-alive", "upgrade"] {
        answer_headers.remove(h);
    }
    let body = resp.into_body();
    let stream = futures_util::stream::unfold(body, |mut b| async move {
        match b.frame().await {
            Some(Ok(f)) => Some((Ok::<_, Infallible>(f), b)),
            _ => None,
        }
    });
    let mut answer = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    *answer.status_mut() = status;
    *answer.headers_mut() = answer_headers;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_queries_parse_as_the_kubelet_reads_them() {
        let o = StreamOptions::from_query(
            Kind::Exec,
            Some("command=sh&command=-c&command=echo+hi&stdin=1&stdout=true&stderr=1&tty=1"),
        )
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "echo hi"]);
        assert!(o.stdin && o.stdout && o.tty && !o.stderr);
        assert!(StreamOptions::from_query(Kind::Exec, Some("command=ls")).is_err());
        assert!(StreamOptions::from_query(Kind::Exec, Some("stdout=1")).is_err());
        assert!(StreamOptions::from_query(Kind::Attach, Some("stdout=1")).is_ok());
        let p = StreamOptions::from_query(Kind::PortForward, Some("port=80,8080")).unwrap();
        assert_eq!(p.ports, [80, 8080]);
        assert!(StreamOptions::from_query(Kind::PortForward, Some("port=70000")).is_err());
    }

    #[test]
    fn streaming_urls_split_into_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:4000/exec/abc?x=1").unwrap(),
            ("127.0.0.1:4000".into(), "/exec/abc?x=1".into())
        );
        assert!(split_url("https://127.0.0.1/x").is_err());
        assert!(split_url("http:///x").is_err());
    }
}
