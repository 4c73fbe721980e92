//! httpGet probes over HTTP and HTTPS as kubelet's prober (`pkg/probe/http`): a GET with
//! `User-Agent: kube-probe/1.32` and `Accept: */*` unless the probe's headers say otherwise, no
//! keep-alive, TLS without certificate verification, redirects followed up to 10 times while
//! they stay on the same host (a redirect elsewhere ends the probe with its 3xx, a success),
//! and 200–399 counted as success.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

use super::Outcome;

/// Go's http.Client stops after this many redirects.
const MAX_REDIRECTS: usize = 10;
/// The most of a response head read (status line and headers).
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with '/'.
    pub path: String,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

impl Url {
    pub fn new(https: bool, host: &str, port: u16, path: &str) -> Self {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Self {
            https,
            host: host.trim_start_matches('[').trim_end_matches(']').into(),
            port,
            path,
        }
    }

    /// Resolves a `Location` header against this URL (absolute, scheme-relative or path).
    pub fn join(&self, location: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(r) = location.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = location.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = location.strip_prefix("//") {
            (self.https, r)
        } else if location.starts_with('/') {
            return Ok(Url::new(self.https, &self.host, self.port, location));
        } else {
            // Relative to the current path's directory.
            let dir = self.path.split('?').next().unwrap_or("/");
            let dir = &dir[..dir.rfind('/').map_or(0, |i| i + 1)];
            return Ok(Url::new(
                self.https,
                &self.host,
                self.port,
                &format!("{dir}{location}"),
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("bad redirect location {location:?}"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p
                    .parse()
                    .map_err(|_| format!("bad port in redirect location {location:?}"))?,
                None => default_port,
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse()
                        .map_err(|_| format!("bad port in redirect location {location:?}"))?,
                ),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("redirect location {location:?} has no host"));
        }
        Ok(Url::new(https, &host, port, path))
    }
}

/// The part of a response a probe looks at.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    code: u16,
    location: Option<String>,
}

/// Runs an httpGet probe; `timeout` bounds the whole exchange, redirects included.
pub async fn probe(url: Url, headers: &[(String, String)], timeout: Duration) -> Outcome {
    let first = url.to_string();
    match tokio::time::timeout(timeout, follow(url, headers)).await {
        Err(_) => Outcome::Failure(format!(
            "Get \"{first}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
        Ok(Err((at, e))) => Outcome::Failure(format!("Get \"{at}\": {e}")),
        Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
        Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
    }
}

async fn follow(url: Url, headers: &[(String, String)]) -> Result<u16, (String, String)> {
    let original_host = url.host.clone();
    let mut url = url;
    for _ in 0..=MAX_REDIRECTS {
        let head = get(&url, headers).await.map_err(|e| (url.to_string(), e))?;
        let redirect = matches!(head.code, 301 | 302 | 303 | 307 | 308);
        let Some(location) = head.location.filter(|_| redirect) else {
            return Ok(head.code);
        };
        let next = url.join(&location).map_err(|e| (url.to_string(), e))?;
        if next.host != original_host {
            // kubelet does not follow redirects off the probed host: the 3xx stands
            // (a success with a "Probe terminated redirects" warning).
            tracing::debug!(from = %url, to = %next, "probe redirect to another host not followed");
            return Ok(head.code);
        }
        url = next;
    }
    Err((
        url.to_string(),
        format!("stopped after {MAX_REDIRECTS} redirects"),
    ))
}

async fn get(url: &Url, headers: &[(String, String)]) -> Result<Head, String> {
    let addr = if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: connect: {e}"))?;
    let request = request_text(url, headers);
    if url.https {
        let name = ServerName::try_from(url.host.clone())
            .map_err(|e| format!("bad TLS server name {:?}: {e}", url.host))?;
        let tls = tokio_rustls::TlsConnector::from(insecure_tls_config())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        exchange(tls, &request).await
    } else {
        exchange(tcp, &request).await
    }
}

fn request_text(url: &Url, headers: &[(String, String)]) -> String {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut text = format!("GET {} HTTP/1.1\r\n", url.path);
    if !has("host") {
        let host = if url.host.contains(':') {
            format!("[{}]", url.host)
        } else {
            url.host.clone()
        };
        text.push_str(&format!("Host: {host}:{}\r\n", url.port));
    }
    if !has("user-agent") {
        text.push_str("User-Agent: kube-probe/1.32\r\n");
    }
    if !has("accept") {
        text.push_str("Accept: */*\r\n");
    }
    for (n, v) in headers {
        text.push_str(&format!("{n}: {v}\r\n"));
    }
    text.push_str("Connection: close\r\n\r\n");
    text
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &str,
) -> Result<Head, String> {
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > MAX_HEAD {
            return Err(format!("response head larger than {MAX_HEAD} bytes"));
        }
        let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_head(&buf)
}

fn parse_head(buf: &[u8]) -> Result<Head, String> {
    let text = String::from_utf8_lossy(buf);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status
        .strip_prefix("HTTP/")
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..600).contains(c))
        .ok_or_else(|| "malformed HTTP response".to_string())?;
    let location = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.trim().to_string());
    Ok(Head { code, location })
}

/// kubelet's probe transport sets InsecureSkipVerify: any certificate is accepted, while the
/// handshake signatures are still checked against the certificate presented.
fn insecure_tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(
                    pea_insecure_tls::AnyServerCertificate::new(provider),
                ))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_locations_resolve_like_a_browser() {
        let u = Url::new(false, "10.0.0.5", 8080, "/a/b?x=1");
        assert_eq!(u.to_string(), "http://10.0.0.5:8080/a/b?x=1");
        assert_eq!(
            u.join("/c").unwrap(),
            Url::new(false, "10.0.0.5", 8080, "/c")
        );
        assert_eq!(u.join("c").unwrap().path, "/a/c");
        assert_eq!(
            u.join("https://10.0.0.5:8443/h").unwrap(),
            Url::new(true, "10.0.0.5", 8443, "/h")
        );
        assert_eq!(u.join("http://example.test").unwrap().port, 80);
        assert_eq!(u.join("https://[fd00::1]/").unwrap().host, "fd00::1");
        assert!(u.join("http://:80/").is_err());
        assert!(u.join("http://h:notaport/").is_err());
        let v6 = Url::new(true, "fd00::1", 443, "healthz");
        assert_eq!(v6.to_string(), "https://[fd00::1]:443/healthz");
    }

    #[test]
    fn request_has_kubelets_headers_unless_the_probe_sets_them() {
        let u = Url::new(false, "10.0.0.5", 80, "/");
        let r = request_text(&u, &[]);
        assert!(
            r.starts_with("GET / HTTP/1.1\r\nHost: 10.0.0.5:80\r\n"),
            "{r}"
        );
        assert!(r.contains("User-Agent: kube-probe/1.32\r\n"));
        assert!(r.contains("Accept: */*\r\n"));
        let r = request_text(
            &u,
            &[
                ("Host".into(), "web.example".into()),
                ("Accept".into(), "application/json".into()),
            ],
        );
        assert!(!r.contains("10.0.0.5"), "{r}");
        assert!(
            r.contains("Host: web.example\r\n") && !r.contains("*/*"),
            "{r}"
        );
        assert!(r.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn heads_parse_or_fail_clearly() {
        let h = parse_head(b"HTTP/1.1 302 Found\r\nlocation: /x\r\n\r\nbody").unwrap();
        assert_eq!(
            h,
            Head {
                code: 302,
                location: Some("/x".into())
            }
        );
        assert_eq!(
            parse_head(b"HTTP/1.0 204 No Content\r\n\r\n").unwrap().code,
            204
        );
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 99999 x\r\n\r\n").is_err());
    }

    /// One connection per request on loopback, answered from `answers` by path.
    async fn serve(answers: Vec<(&'static str, String)>) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            for _ in 0..32 {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let resp = answers
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map(|(_, r)| r.clone())
                    .unwrap_or_else(|| "HTTP/1.1 404 Not Found\r\n\r\n".into());
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        port
    }

    #[tokio::test]
    async fn statuses_and_redirects_as_kubelet() {
        let port = serve(vec![
            ("/ok", "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".into()),
            (
                "/moved",
                "HTTP/1.1 301 Moved\r\nLocation: /ok\r\n\r\n".into(),
            ),
            (
                "/away",
                "HTTP/1.1 302 Found\r\nLocation: http://192.0.2.1:1/x\r\n\r\n".into(),
            ),
            (
                "/loop",
                "HTTP/1.1 302 Found\r\nLocation: /loop\r\n\r\n".into(),
            ),
            ("/bad", "HTTP/1.1 500 Internal Server Error\r\n\r\n".into()),
            (
                "/bounce-bad",
                "HTTP/1.1 307 Temporary\r\nLocation: /bad\r\n\r\n".into(),
            ),
        ])
        .await;
        let t = Duration::from_secs(2);
        let u = |p: &str| Url::new(false, "127.0.0.1", port, p);
        assert_eq!(probe(u("/ok"), &[], t).await, Outcome::Success);
        assert_eq!(probe(u("/moved"), &[], t).await, Outcome::Success);
        // Off-host redirects are not followed: the 302 itself is the (successful) answer.
        assert_eq!(probe(u("/away"), &[], t).await, Outcome::Success);
        assert_eq!(
            probe(u("/bad"), &[], t).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        assert_eq!(
            probe(u("/bounce-bad"), &[], t).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        assert_eq!(
            probe(u("/loop"), &[], t).await,
            Outcome::Failure(format!(
                "Get \"http://127.0.0.1:{port}/loop\": stopped after 10 redirects"
            ))
        );
        let Outcome::Failure(e) = probe(u("/missing"), &[], t).await else {
            panic!("404 is a failure")
        };
        assert_eq!(e, "HTTP probe failed with statuscode: 404");
    }
}
