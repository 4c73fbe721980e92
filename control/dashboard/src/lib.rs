//! pea-dashboard: a web UI for a Kubernetes cluster.
//!
//! A client of the Kubernetes API only (it never links the API server or its store): pages are
//! rendered on the server from what the API answers, with a thin script layer
//! (`assets/app.js`: live pages through [`live`]'s watch-driven stream, followed logs from
//! [`follow`], the namespace filter; `assets/term.js`: the [`exec`] terminal).
//! Nothing is fetched from elsewhere: the script and the style sheet are compiled into the binary.
//!
//! Every request to the API is made as the logged-in user: the login page takes a bearer token,
//! which is kept server-side in a session (the browser holds only a random session id in an
//! HttpOnly, Secure, SameSite=Strict cookie), or, under pea-control, uses the client
//! certificate the browser presented ([`cert_login`]); the API server's authorizer decides what
//! the user may see and do, and its refusals (403) are shown as such. Writes are POST forms carrying the
//! session's CSRF token; responses carry a strict Content-Security-Policy (no inline script);
//! every object field is HTML-escaped ([`html::esc`]).
//!
//! [`Dashboard::handle`] serves one request; `pea-control` mounts it at `/dashboard/` of its own
//! HTTPS listener, and the `pea-dashboard` binary serves it alone ([`serve`]).

pub mod api;
pub mod cert_login;
mod drain;
mod exec;
mod follow;
pub mod html;
mod live;
mod metrics;
mod sse;
mod views;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{Request, Response, StatusCode};

use crate::api::Api;
pub use crate::cert_login::{ClientCertUser, ConnectAs};
use crate::html::esc;

/// Response bodies.
pub type Body = BoxBody<Bytes, Infallible>;

const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");
const TERM_JS: &str = include_str!("../assets/term.js");

/// The Content-Security-Policy of every response: only our own script and style sheet, no
/// inline script or style, no framing, forms post only to us.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const SESSION_COOKIE: &str = "pea_session";
const LOGIN_COOKIE: &str = "pea_login";
/// Sessions end this long after login.
const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// At most this many live sessions (the oldest are dropped first).
const MAX_SESSIONS: usize = 10_000;
/// Largest form body accepted.
pub const MAX_FORM: usize = 3 * 1024 * 1024;

/// At most this many streams (live pages, followed logs, terminals) per session at once.
pub const MAX_STREAMS_PER_SESSION: usize = 8;

/// One logged-in browser.
struct Session {
    api: Api,
    /// The same user's client without a read timeout, for watches, logs and terminals.
    streams_api: Api,
    csrf: String,
    created: Instant,
    /// Set to true on logout: every stream of the session ends.
    ended: tokio::sync::watch::Sender<bool>,
    /// Streams open now (see [`StreamSlot`]).
    streams: AtomicUsize,
    /// CPU/memory samples of the nodes and pods this session looked at.
    samples: Mutex<metrics::History>,
    /// Node drains started in this session.
    drains: drain::Drains,
    /// For a certificate login: the certificate every request of the session must come with.
    cert_user: Option<ClientCertUser>,
}

impl Session {
    fn new(api: Api, streams_api: Api, cert_user: Option<ClientCertUser>) -> Self {
        Session {
            api,
            streams_api,
            cert_user,
            csrf: random_hex(32),
            created: Instant::now(),
            ended: tokio::sync::watch::channel(false).0,
            streams: AtomicUsize::new(0),
            samples: Mutex::new(metrics::History::default()),
            drains: Mutex::new(HashMap::new()),
        }
    }

    /// One of the session's [`MAX_STREAMS_PER_SESSION`] stream slots, if one is free.
    fn open_stream(self: &Arc<Self>) -> Option<StreamSlot> {
        self.streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_STREAMS_PER_SESSION).then_some(n + 1)
            })
            .ok()?;
        Some(StreamSlot {
            session: self.clone(),
        })
    }
}

/// A long-lived response (a live page, a followed log, a terminal) holding one of its
/// session's stream slots until dropped.
struct StreamSlot {
    session: Arc<Session>,
}

impl StreamSlot {
    /// How long the session has left: no stream outlives it.
    fn remaining(&self) -> Duration {
        SESSION_LIFETIME.saturating_sub(self.session.created.elapsed())
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.session.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The dashboard: how to reach the API server, and the sessions.
pub struct Dashboard {
    /// Cluster URL and trust only: credentials are always the session's own.
    base: kube::Config,
    prefix: String,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Certificate login, when the server in front verifies client certificates (pea-control).
    cert_login: Option<ConnectAs>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("cluster_url", &self.base.cluster_url)
            .field("prefix", &self.prefix)
            .field("cert_login", &self.cert_login.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: std::path::PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
}

impl Dashboard {
    /// A dashboard for the cluster `config` points at, served under `prefix` (e.g. "/dashboard").
    /// The credentials in `config` are dropped: the dashboard acts only as its users.
    pub fn new(mut config: kube::Config, prefix: &str) -> Self {
        config.auth_info = kube::config::AuthInfo::default();
        config.headers.clear();
        config.read_timeout = Some(Duration::from_secs(30));
        Self {
            base: config,
            prefix: prefix.trim_end_matches('/').to_string(),
            sessions: Mutex::new(HashMap::new()),
            cert_login: None,
        }
    }

    /// Offers "Log in with certificate" to browsers whose client certificate the server in
    /// front verified (it puts a [`ClientCertUser`] into the request's extensions); such a
    /// session's requests go over `connect`, authenticated as that user.
    pub fn with_certificate_login(mut self, connect: ConnectAs) -> Self {
        self.cert_login = Some(connect);
        self
    }

    /// The cluster (URL, CA, TLS server name) of a kubeconfig's current context.
    pub async fn from_kubeconfig(path: &std::path::Path, prefix: &str) -> Result<Self, Error> {
        let kerr = |source| Error::Kubeconfig {
            path: path.to_path_buf(),
            source,
        };
        let kc = kube::config::Kubeconfig::read_from(path).map_err(kerr)?;
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(kerr)?;
        Ok(Self::new(cfg, prefix))
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A client that authenticates with `token` only. Without a read timeout for streams
    /// (watches, followed logs, terminals), which are quiet as long as nothing happens.
    fn client_for(&self, token: &str, streaming: bool) -> Result<kube::Client, String> {
        let mut cfg = self.base.clone();
        if streaming {
            cfg.read_timeout = None;
        }
        cfg.auth_info.token = Some(secrecy::SecretString::from(token.to_string()));
        kube::Client::try_from(cfg).map_err(|e| e.to_string())
    }

    fn session(&self, req: &Request<Bytes>) -> Option<Arc<Session>> {
        let id = cookie(req, SESSION_COOKIE)?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let s = sessions.get(&id)?.clone();
        if s.created.elapsed() > SESSION_LIFETIME {
            sessions.remove(&id);
            return None;
        }
        // A certificate session is only good with that certificate on the connection.
        if let Some(user) = &s.cert_user {
            if req.extensions().get::<ClientCertUser>() != Some(user) {
                tracing::info!("a certificate session's cookie came without its certificate");
                return None;
            }
        }
        Some(s)
    }

    fn add_session(&self, session: Session) -> String {
        let id = random_hex(32);
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.created.elapsed() <= SESSION_LIFETIME);
        while sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => sessions.remove(&k),
                None => break,
            };
        }
        sessions.insert(id.clone(), Arc::new(session));
        id
    }

    fn cookie_header(&self, name: &str, value: &str, max_age: Option<u64>) -> String {
        let path = if self.prefix.is_empty() {
            "/"
        } else {
            &self.prefix
        };
        let age = max_age
            .map(|a| format!("; Max-Age={a}"))
            .unwrap_or_default();
        format!("{name}={value}; Path={path}; HttpOnly; Secure; SameSite=Strict{age}")
    }

    /// Serves one request (its path starts with the prefix) and adds the security headers.
    pub async fn handle(&self, req: Request<Bytes>) -> Response<Body> {
        let mut resp = self.route(req).await;
        let h = resp.headers_mut();
        for (k, v) in [
            ("content-security-policy", CSP),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("cache-control", "no-store"),
        ] {
            if let Ok(v) = v.parse() {
                h.insert(k, v);
            }
        }
        resp
    }

    async fn route(&self, mut req: Request<Bytes>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let Some(rest) = path.strip_prefix(&self.prefix) else {
            return plain(404, "not found");
        };
        if rest.is_empty() {
            return redirect(&format!("{}/", self.prefix));
        }
        let post = req.method() == hyper::Method::POST;
        if !post && req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
            return plain(405, "method not allowed");
        }
        match rest {
            "/static/app.js" => return asset("text/javascript; charset=utf-8", APP_JS),
            "/static/style.css" => return asset("text/css; charset=utf-8", STYLE_CSS),
            "/static/term.js" => return asset("text/javascript; charset=utf-8", TERM_JS),
            "/login" if post => return self.login(&req).await,
            "/login" => return self.login_page(&req, None, 200),
            _ => {}
        }
        let Some(session) = self.session(&req) else {
            if post {
                return plain(401, "not logged in");
            }
            return redirect(&format!("{}/login", self.prefix));
        };
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let form: HashMap<String, String> = if post {
            if req.body().len() > MAX_FORM {
                return plain(413, "form too large");
            }
            form_urlencoded::parse(req.body()).into_owned().collect()
        } else {
            HashMap::new()
        };
        if post {
            let sent = form.get("csrf").map(String::as_str).unwrap_or("");
            if !constant_time_eq(sent.as_bytes(), session.csrf.as_bytes()) {
                tracing::info!(path = %path, "refused a POST without the session's CSRF token");
                return plain(
                    403,
                    "CSRF token missing or wrong: reload the page and try again",
                );
            }
            if rest == "/logout" {
                if let Some(id) = cookie(&req, SESSION_COOKIE) {
                    let gone = self
                        .sessions
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    if let Some(s) = gone {
                        // Ends the session's live pages, followed logs and terminals.
                        s.ended.send_replace(true);
                    }
                }
                let mut r = redirect(&format!("{}/login", self.prefix));
                if let Ok(v) = self.cookie_header(SESSION_COOKIE, "", Some(0)).parse() {
                    r.headers_mut().append("set-cookie", v);
                }
                return r;
            }
        }
        let segments: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        if !post {
            if let Some(r) = self.stream(&mut req, &session, &segs, &query) {
                return r;
            }
        }
        let ctx = views::Ctx {
            base: &self.prefix,
            api: &session.api,
            csrf: &session.csrf,
            samples: &session.samples,
            drains: &session.drains,
            path: rest.to_string(),
            query,
            form,
            fragment: req.headers().contains_key("x-pea-fragment"),
        };
        let out = if post {
            views::post(&ctx, &segs).await
        } else {
            views::get(&ctx, &segs).await
        };
        match out {
            views::Out::Page(p) => {
                let html = if ctx.fragment {
                    p.body
                } else {
                    views::layout(&ctx, &p).await
                };
                html_response(p.status, html)
            }
            views::Out::Redirect(to) => redirect(&to),
            views::Out::Text(code, t) => plain(code, &t),
        }
    }

    /// The long-lived GETs: a live page (`/live?page=…`), a followed log (`…/pods/NAME/follow`),
    /// a terminal (`…/pods/NAME/exec`, a WebSocket). None: an ordinary page.
    fn stream(
        &self,
        req: &mut Request<Bytes>,
        session: &Arc<Session>,
        segs: &[&str],
        query: &HashMap<String, String>,
    ) -> Option<Response<Body>> {
        let is_stream = matches!(
            segs,
            ["live"] | ["ns", _, "pods", _, "follow"] | ["ns", _, "pods", _, "exec"]
        );
        if !is_stream {
            return None;
        }
        let Some(slot) = session.open_stream() else {
            return Some(plain(
                429,
                "too many live streams for this session: close other dashboard tabs",
            ));
        };
        Some(match segs {
            ["ns", ns, "pods", pod, "follow"] => follow::stream(slot, ns, pod, query),
            ["ns", ns, "pods", pod, _] => exec::upgrade(req, slot, &session.csrf, ns, pod, query),
            _ => live::stream(
                &self.prefix,
                slot,
                query.get("page").map(String::as_str).unwrap_or("/"),
            ),
        })
    }

    fn login_page(&self, req: &Request<Bytes>, error: Option<&str>, status: u16) -> Response<Body> {
        let nonce = random_hex(16);
        let err = error
            .map(|e| format!("<p class=\"error\" id=\"login-error\">{}</p>", esc(e)))
            .unwrap_or_default();
        let p = esc(&self.prefix);
        let cert = match (&self.cert_login, req.extensions().get::<ClientCertUser>()) {
            (Some(_), Some(user)) => format!(
                "<form method=\"post\" action=\"{p}/login\" id=\"cert-login-form\"><input type=\"hidden\" name=\"csrf\" value=\"{nonce}\"><input type=\"hidden\" name=\"method\" value=\"certificate\"><button type=\"submit\" id=\"cert-login\">Log in with certificate <span id=\"cert-subject\">{}</span></button></form><p class=\"muted\">Your browser presented this client certificate, issued by the cluster CA; the API server decides what its user may see and do.</p>",
                esc(&user.subject())
            ),
            (Some(_), None) => "<p class=\"muted\" id=\"cert-login-none\">No client certificate was presented. To log in with one, import a certificate issued by the cluster CA into the browser (e.g. from <code>pea-control kubeconfig --user NAME --group GROUP</code>) and reload.</p>".to_string(),
            (None, _) => "<p class=\"muted\" id=\"cert-login-unavailable\">Client-certificate login is not available here: this standalone pea-dashboard serves plain HTTP, where browsers present no certificate. It is on the dashboard pea-control serves over its own TLS (<code>https://ADDRESS/dashboard/</code>).</p>".to_string(),
        };
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Log in · pea dashboard</title><link rel=\"stylesheet\" href=\"{p}/static/style.css\"></head><body class=\"login\"><main><h1><span class=\"brand\">pea</span> dashboard</h1>{err}{cert}<form method=\"post\" action=\"{p}/login\" id=\"login-form\"><input type=\"hidden\" name=\"csrf\" value=\"{nonce}\"><label for=\"token\">Bearer token</label><input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\" required autofocus><button type=\"submit\" id=\"login\">Log in</button></form><p class=\"muted\">Every request is made with this token: the API server decides what you may see and do. pea-control's admin token is the first field of <code>tokens.csv</code> in its data dir.</p></main></body></html>",
        );
        let mut r = html_response(status, body);
        if let Ok(v) = self.cookie_header(LOGIN_COOKIE, &nonce, Some(600)).parse() {
            r.headers_mut().append("set-cookie", v);
        }
        r
    }

    async fn login(&self, req: &Request<Bytes>) -> Response<Body> {
        let form: HashMap<String, String> =
            form_urlencoded::parse(req.body()).into_owned().collect();
        let sent = form.get("csrf").map(String::as_str).unwrap_or("");
        let expected = cookie(req, LOGIN_COOKIE).unwrap_or_default();
        if expected.is_empty() || !constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
            return self.login_page(req, Some("The login form expired: try again."), 403);
        }
        let (api, streams, cert_user) =
            if form.get("method").map(String::as_str) == Some("certificate") {
                // The identity comes from the TLS handshake (pea-control's extension), never from
                // the form.
                let (Some(connect), Some(user)) =
                    (&self.cert_login, req.extensions().get::<ClientCertUser>())
                else {
                    return self.login_page(
                        req,
                        Some("No verified client certificate came with this request."),
                        401,
                    );
                };
                (
                    Api {
                        client: cert_login::client(connect.clone(), user.clone(), false),
                    },
                    Api {
                        client: cert_login::client(connect.clone(), user.clone(), true),
                    },
                    Some(user.clone()),
                )
            } else {
                let token = form.get("token").map(|t| t.trim()).unwrap_or("");
                if token.is_empty()
                    || token.len() > 4096
                    || !token.bytes().all(|b| b.is_ascii_graphic())
                {
                    return self.login_page(req, Some("Enter a bearer token."), 400);
                }
                match (self.client_for(token, false), self.client_for(token, true)) {
                    (Ok(c), Ok(s)) => (Api { client: c }, Api { client: s }, None),
                    (Err(e), _) | (_, Err(e)) => {
                        return self.login_page(
                            req,
                            Some(&format!("Cannot reach the API server: {e}")),
                            502,
                        )
                    }
                }
            };
        // The API server tells whether the credentials are known: 401 is a wrong token; anything
        // it answers otherwise (even 403 for a user who may not read discovery) is a valid one.
        match api.get("/api").await {
            Ok(_) => {}
            Err(e) if e.code == 401 => {
                return self.login_page(
                    req,
                    Some("The API server did not accept this token (401 Unauthorized)."),
                    401,
                )
            }
            Err(e) if e.code == 403 => {}
            Err(e) => {
                return self.login_page(req, Some(&format!("The API server answered {e}")), 502)
            }
        }
        let how = if cert_user.is_some() {
            "certificate"
        } else {
            "token"
        };
        let id = self.add_session(Session::new(api, streams, cert_user));
        tracing::info!(method = how, "dashboard login");
        let mut r = redirect(&format!("{}/", self.prefix));
        for c in [
            self.cookie_header(SESSION_COOKIE, &id, None),
            self.cookie_header(LOGIN_COOKIE, "", Some(0)),
        ] {
            if let Ok(v) = c.parse() {
                r.headers_mut().append("set-cookie", v);
            }
        }
        r
    }
}

fn cookie(req: &Request<Bytes>, name: &str) -> Option<String> {
    for h in req.headers().get_all("cookie") {
        let Ok(h) = h.to_str() else { continue };
        for part in h.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                if k == name && !v.is_empty() {
                    return Some(v.to_string());
                }
            }
        }
    }
    None
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the OS random source");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn response(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert("content-type", v);
    }
    r
}

fn html_response(code: u16, body: String) -> Response<Body> {
    response(code, "text/html; charset=utf-8", body)
}

fn plain(code: u16, text: &str) -> Response<Body> {
    response(code, "text/plain; charset=utf-8", text.to_string())
}

fn asset(content_type: &str, text: &'static str) -> Response<Body> {
    response(200, content_type, Bytes::from_static(text.as_bytes()))
}

fn redirect(to: &str) -> Response<Body> {
    let mut r = response(303, "text/plain; charset=utf-8", "");
    if let Ok(v) = to.parse() {
        r.headers_mut().insert("location", v);
    }
    r
}

/// Serves the dashboard alone on `listener` (plain HTTP/1.1; meant for loopback) until the
/// future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, dashboard: Arc<Dashboard>) {
    use hyper_util::rt::TokioIo;
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let d = dashboard.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let d = d.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let limited = http_body_util::Limited::new(body, MAX_FORM);
                    let bytes = match limited.collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(_) => return Ok::<_, Infallible>(plain(413, "body too large")),
                    };
                    Ok(d.handle(Request::from_parts(parts, bytes)).await)
                }
            });
            // Upgrades: the terminal's WebSocket.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades()
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_csrf() {
        let req = Request::builder()
            .header("cookie", "a=1; pea_session=abc; b=2")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(cookie(&req, "pea_session").as_deref(), Some("abc"));
        assert_eq!(cookie(&req, "nope"), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"", b""), "an empty token never matches");
        assert_eq!(random_hex(16).len(), 32);
        assert_eq!(percent_decode("a%20b%2F"), "a b/");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
