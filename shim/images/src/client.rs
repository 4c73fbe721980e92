//! A small streaming client for the OCI distribution API: manifests and blobs over HTTP(S),
//! auth challenges answered, transient failures retried with backoff, mirrors tried in order
//! with fallback, interrupted blob bodies resumed with `Range`.
//!
//! Blobs are never buffered whole: [`BlobStream`] is a `Read` that reconnects from the byte it
//! reached when a body breaks, so the caller (hash → gunzip → untar) sees one continuous stream.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use ureq::http::Response;
use ureq::Body;

use crate::auth::{self, Challenge, Credentials};
use crate::digest::Digest;
use crate::hosts::{self, Endpoint, HostsError};
use crate::manifest;
use crate::reference::Reference;

/// Largest manifest or config accepted (containerd uses the same bound for manifests).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Hosts(#[from] HostsError),
    #[error("{url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("{url}: registry answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: not found (404): {body}")]
    NotFound { url: String, body: String },
    #[error("{url}: unauthorized: {detail}")]
    Unauthorized { url: String, detail: String },
    #[error("{url}: size mismatch: {what} is {got} bytes, the manifest declares {want}")]
    SizeMismatch {
        url: String,
        what: String,
        got: u64,
        want: u64,
    },
    #[error("{url}: {what} digest mismatch: got {got}, want {want}")]
    DigestMismatch {
        url: String,
        what: String,
        got: Digest,
        want: Digest,
    },
    #[error("{reference}: every endpoint failed: {}", .errors.join("; "))]
    AllEndpointsFailed {
        reference: String,
        errors: Vec<String>,
    },
    #[error(
        "{reference}: no endpoint of {registry} may {capability} (check hosts.toml capabilities)"
    )]
    NoEndpoint {
        reference: String,
        registry: String,
        capability: &'static str,
    },
}

impl RegistryError {
    fn retryable(&self) -> bool {
        match self {
            RegistryError::Transport { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// How the client reaches registries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// containerd-style `hosts.toml` directory (`<dir>/<registry>/hosts.toml`).
    pub hosts_dir: Option<PathBuf>,
    /// Registries (`host[:port]`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Credentials per `host[:port]` (of the endpoint actually contacted).
    pub credentials: HashMap<String, Credentials>,
    /// Attempts after the first for transient failures.
    pub retries: u32,
    /// First backoff delay, doubled per attempt.
    pub backoff: Duration,
    /// Per-blob download limit in bytes per second.
    pub rate_limit: Option<u64>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            hosts_dir: None,
            insecure: Vec::new(),
            credentials: HashMap::new(),
            retries: 4,
            backoff: Duration::from_millis(100),
            rate_limit: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// A registry client; share one per process (it caches tokens).
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    cfg: ClientConfig,
    tokens: Mutex<HashMap<(String, String), String>>,
}

/// A manifest fetched for a reference, and the endpoints to fetch its blobs from (the one that
/// answered first).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub endpoints: Vec<Endpoint>,
    pub bytes: Vec<u8>,
    pub content_type: String,
    pub digest: Digest,
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(cfg.connect_timeout))
            .timeout_recv_response(Some(cfg.read_timeout))
            .timeout_recv_body(None)
            .timeout_per_read(Some(cfg.read_timeout))
            .user_agent(concat!("pea-images/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            agent,
            cfg,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// Endpoints for `registry`, mirrors first.
    pub fn endpoints(&self, registry: &str) -> Result<Vec<Endpoint>, RegistryError> {
        Ok(hosts::endpoints(
            self.cfg.hosts_dir.as_deref(),
            registry,
            &self.cfg.insecure,
        )?)
    }

    /// Fetches the manifest `reference` names, trying each resolving endpoint in turn.
    pub fn resolve(&self, reference: &Reference) -> Result<Resolved, RegistryError> {
        let all = self.endpoints(&reference.registry)?;
        let resolvers: Vec<&Endpoint> = all
            .iter()
            .filter(|e| e.resolve || reference.digest.is_some() && e.pull)
            .collect();
        if resolvers.is_empty() {
            return Err(RegistryError::NoEndpoint {
                reference: reference.to_string(),
                registry: reference.registry.clone(),
                capability: "resolve",
            });
        }
        let mut errors = Vec::new();
        for ep in resolvers {
            match self.fetch_manifest(ep, &reference.repository, &reference.object()) {
                Ok((bytes, content_type)) => {
                    let digest = Digest::of(&bytes);
                    if let Some(want) = &reference.digest {
                        if &digest != want {
                            errors.push(format!(
                                "{}: manifest digest {digest}, want {want}",
                                ep.base
                            ));
                            continue;
                        }
                    }
                    // Blobs come from this endpoint first, then the others that may pull.
                    let mut endpoints = vec![ep.clone()];
                    endpoints.extend(all.iter().filter(|e| *e != ep && e.pull).cloned());
                    info!(reference = %reference, endpoint = %ep.base, %digest, "resolved");
                    return Ok(Resolved {
                        endpoints,
                        bytes,
                        content_type,
                        digest,
                    });
                }
                Err(e) => {
                    warn!(reference = %reference, endpoint = %ep.base, error = %e, "endpoint failed, trying the next");
                    errors.push(e.to_string());
                }
            }
        }
        Err(RegistryError::AllEndpointsFailed {
            reference: reference.to_string(),
            errors,
        })
    }

    /// Fetches the manifest `object` (tag or digest) of `repository` from `ep`.
    pub fn fetch_manifest(
        &self,
        ep: &Endpoint,
        repository: &str,
        object: &str,
    ) -> Result<(Vec<u8>, String), RegistryError> {
        let url = ep.url(&format!("/{repository}/manifests/{object}"));
        let resp = self.send(ep, repository, &url, Some(manifest::ACCEPT), 0)?;
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = read_limited(&url, resp, MAX_MANIFEST_BYTES, "manifest")?;
        Ok((bytes, content_type))
    }

    /// Fetches a small blob (a config, a child manifest) whole, verifying size and digest.
    pub fn fetch_verified(
        &self,
        endpoints: &[Endpoint],
        repository: &str,
        kind: &str,
        digest: &Digest,
        size: u64,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        if size > limit {
            return Err(RegistryError::SizeMismatch {
                url: repository.into(),
                what: kind.into(),
                got: size,
                want: limit,
            });
        }
        let mut errors = Vec::new();
        for ep in endpoints {
            let path = if kind == "manifest" {
                "manifests"
            } else {
                "blobs"
            };
            let url = ep.url(&format!("/{repository}/{path}/{digest}"));
            let accept = (kind == "manifest").then_some(manifest::ACCEPT);
            let bytes = match self
                .send(ep, repository, &url, accept, 0)
                .and_then(|r| read_limited(&url, r, limit, kind))
            {
                Ok(b) => b,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            if bytes.len() as u64 != size {
                return Err(RegistryError::SizeMismatch {
                    url,
                    what: kind.into(),
                    got: bytes.len() as u64,
                    want: size,
                });
            }
            let got = Digest::of(&bytes);
            if &got != digest {
                return Err(RegistryError::DigestMismatch {
                    url,
                    what: kind.into(),
                    got,
                    want: digest.clone(),
                });
            }
            return Ok(bytes);
        }
        Err(RegistryError::AllEndpointsFailed {
            reference: format!("{repository}@{digest}"),
            errors,
        })
    }

    /// Opens blob `digest` of `size` bytes at byte `offset` (resuming a partial download).
    pub fn open_blob<'a>(
        &'a self,
        endpoints: &'a [Endpoint],
        repository: &'a str,
        digest: &'a Digest,
        size: u64,
        offset: u64,
    ) -> Result<BlobStream<'a>, RegistryError> {
        let mut s = BlobStream {
            client: self,
            endpoints,
            endpoint: 0,
            repository,
            digest,
            size,
            pos: offset,
            body: None,
            url: String::new(),
            failures: 0,
            started: Instant::now(),
            start_pos: offset,
        };
        if offset < size {
            s.connect()?;
        }
        Ok(s)
    }

    /// One request with auth and retries. `range_from > 0` asks for the bytes from there on.
    fn send(
        &self,
        ep: &Endpoint,
        repository: &str,
        url: &str,
        accept: Option<&str>,
        range_from: u64,
    ) -> Result<Response<Body>, RegistryError> {
        let mut attempt = 0;
        loop {
            match self.send_once(ep, repository, url, accept, range_from) {
                Err(e) if e.retryable() && attempt < self.cfg.retries => {
                    let delay = self.cfg.backoff * 2u32.pow(attempt);
                    debug!(%url, error = %e, ?delay, "retrying");
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn send_once(
        &self,
        ep: &Endpoint,
        repository: &str,
        url: &str,
        accept: Option<&str>,
        range_from: u64,
    ) -> Result<Response<Body>, RegistryError> {
        let scope = auth::pull_scope(repository);
        let host = ep.host().to_string();
        let mut authorization = self.cached_authorization(&host, &scope);
        let mut answered_challenge = false;
        loop {
            let mut req = self.agent.get(url);
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            if range_from > 0 {
                req = req.header("Range", format!("bytes={range_from}-"));
            }
            for (k, v) in &ep.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            if let Some(a) = &authorization {
                req = req.header("Authorization", a.as_str());
            }
            let resp = req.call().map_err(|e| RegistryError::Transport {
                url: url.into(),
                detail: e.to_string(),
            })?;
            let status = resp.status().as_u16();
            match status {
                200..=299 => return Ok(resp),
                401 if !answered_challenge => {
                    let header = resp
                        .headers()
                        .get("www-authenticate")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    authorization = Some(self.answer_challenge(url, &host, &scope, &header)?);
                    answered_challenge = true;
                }
                401 | 403 => {
                    let body = error_body(resp);
                    return Err(RegistryError::Unauthorized {
                        url: url.into(),
                        detail: if self.cfg.credentials.contains_key(&host) {
                            format!("credentials for {host} were refused: {body}")
                        } else {
                            format!("no credentials configured for {host}: {body}")
                        },
                    });
                }
                404 => {
                    return Err(RegistryError::NotFound {
                        url: url.into(),
                        body: error_body(resp),
                    })
                }
                _ => {
                    return Err(RegistryError::Status {
                        url: url.into(),
                        status,
                        body: error_body(resp),
                    })
                }
            }
        }
    }

    fn cached_authorization(&self, host: &str, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().expect("token cache lock");
        tokens.get(&(host.to_string(), scope.to_string())).cloned()
    }

    /// Turns a 401 challenge into an Authorization header value (and caches it).
    fn answer_challenge(
        &self,
        url: &str,
        host: &str,
        scope: &str,
        header: &str,
    ) -> Result<String, RegistryError> {
        let creds = self.cfg.credentials.get(host);
        let unauthorized = |detail: String| RegistryError::Unauthorized {
            url: url.into(),
            detail,
        };
        let value = match auth::parse_challenge(header) {
            Some(Challenge::Basic) => creds
                .ok_or_else(|| {
                    unauthorized(format!(
                        "{host} wants Basic credentials and none are configured"
                    ))
                })?
                .basic_header(),
            Some(Challenge::Bearer {
                realm,
                service,
                scope: challenge_scope,
            }) => {
                let scope = challenge_scope.unwrap_or_else(|| scope.to_string());
                let mut token_url = format!(
                    "{realm}{}scope={}",
                    if realm.contains('?') { "&" } else { "?" },
                    auth::query_escape(&scope)
                );
                if let Some(s) = service {
                    token_url.push_str(&format!("&service={}", auth::query_escape(&s)));
                }
                let mut req = self.agent.get(&token_url);
                if let Some(c) = creds {
                    req = req.header("Authorization", c.basic_header());
                }
                let resp = req.call().map_err(|e| RegistryError::Transport {
                    url: token_url.clone(),
                    detail: format!("token request: {e}"),
                })?;
                if !resp.status().is_success() {
                    let status = resp.status().as_u16();
                    return Err(unauthorized(format!(
                        "token server {realm} answered {status} ({}): {}",
                        if creds.is_some() {
                            "credentials refused"
                        } else {
                            "no credentials configured"
                        },
                        error_body(resp)
                    )));
                }
                let body = read_limited(&token_url, resp, 1 << 20, "token")?;
                let token = serde_json::from_slice::<auth::TokenResponse>(&body)
                    .ok()
                    .and_then(auth::TokenResponse::into_token)
                    .ok_or_else(|| unauthorized(format!("token server {realm} sent no token")))?;
                format!("Bearer {token}")
            }
            None => return Err(unauthorized(format!("unsupported challenge {header:?}"))),
        };
        self.tokens
            .lock()
            .expect("token cache lock")
            .insert((host.to_string(), scope.to_string()), value.clone());
        Ok(value)
    }
}

fn error_body(resp: Response<Body>) -> String {
    let mut body = resp.into_body();
    let text = body
        .with_config()
        .limit(4096)
        .read_to_string()
        .unwrap_or_default();
    text.trim().chars().take(300).collect()
}

fn read_limited(
    url: &str,
    resp: Response<Body>,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    resp.into_body()
        .into_reader()
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| RegistryError::Transport {
            url: url.into(),
            detail: format!("reading {what}: {e}"),
        })?;
    if out.len() as u64 > limit {
        return Err(RegistryError::SizeMismatch {
            url: url.into(),
            what: format!("{what} (over the limit)"),
            got: out.len() as u64,
            want: limit,
        });
    }
    Ok(out)
}

/// A blob body that survives broken connections: on an error or an early end it reconnects
/// from the current byte with `Range` (backing off, bounded by the retry count), and it refuses
/// to deliver more bytes than the manifest declared.
pub struct BlobStream<'a> {
    client: &'a Client,
    endpoints: &'a [Endpoint],
    endpoint: usize,
    repository: &'a str,
    digest: &'a Digest,
    size: u64,
    pos: u64,
    body: Option<ureq::BodyReader<'static>>,
    url: String,
    failures: u32,
    started: Instant,
    start_pos: u64,
}

impl std::fmt::Debug for BlobStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("digest", self.digest)
            .field("pos", &self.pos)
            .field("size", &self.size)
            .finish()
    }
}

impl BlobStream<'_> {
    /// Bytes delivered so far, counting a resumed prefix.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn connect(&mut self) -> Result<(), RegistryError> {
        let mut errors = Vec::new();
        let n = self.endpoints.len();
        for i in 0..n {
            let idx = (self.endpoint + i) % n;
            let ep = &self.endpoints[idx];
            let url = ep.url(&format!("/{}/blobs/{}", self.repository, self.digest));
            match self.client.send(ep, self.repository, &url, None, self.pos) {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let len = resp
                        .headers()
                        .get("content-length")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let mut skip = 0;
                    let expected_len = if status == 206 || self.pos == 0 {
                        self.size - self.pos
                    } else {
                        // The server ignored Range: read from the start and drop the prefix.
                        skip = self.pos;
                        self.size
                    };
                    if let Some(len) = len {
                        if len != expected_len {
                            return Err(RegistryError::SizeMismatch {
                                url,
                                what: format!("blob {}", self.digest),
                                got: len + (self.size - expected_len),
                                want: self.size,
                            });
                        }
                    }
                    let mut body = resp.into_body().into_reader();
                    if skip > 0 {
                        io::copy(&mut (&mut body).take(skip), &mut io::sink()).map_err(|e| {
                            RegistryError::Transport {
                                url: url.clone(),
                                detail: e.to_string(),
                            }
                        })?;
                    }
                    if self.pos > 0 {
                        info!(digest = %self.digest, offset = self.pos, "resuming blob");
                    }
                    self.endpoint = idx;
                    self.url = url;
                    self.body = Some(body);
                    return Ok(());
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.len() == 1 {
            return Err(errors.pop().expect("one error"));
        }
        Err(RegistryError::AllEndpointsFailed {
            reference: format!("{}@{}", self.repository, self.digest),
            errors: errors.iter().map(|e| e.to_string()).collect(),
        })
    }

    fn throttle(&self) {
        if let Some(rate) = self.client.cfg.rate_limit.filter(|r| *r > 0) {
            let done = (self.pos - self.start_pos) as f64;
            let due = Duration::from_secs_f64(done / rate as f64);
            let elapsed = self.started.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
    }
}

impl Read for BlobStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size {
            // Anything past the declared size means the blob is not what the manifest says.
            if let Some(body) = self.body.as_mut() {
                let mut probe = [0u8; 1];
                if body.read(&mut probe).unwrap_or(0) > 0 {
                    return Err(io::Error::other(RegistryError::SizeMismatch {
                        url: self.url.clone(),
                        what: format!("blob {}", self.digest),
                        got: self.size + 1,
                        want: self.size,
                    }));
                }
                self.body = None;
            }
            return Ok(0);
        }
        self.throttle();
        let want = buf.len().min((self.size - self.pos) as usize);
        loop {
            if self.body.is_none() {
                self.connect().map_err(io::Error::other)?;
            }
            let body = self.body.as_mut().expect("connected");
            let result = body.read(&mut buf[..want]);
            match result {
                Ok(n) if n > 0 => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                other => {
                    let detail = match other {
                        Ok(_) => format!("body ended at byte {} of {}", self.pos, self.size),
                        Err(e) => e.to_string(),
                    };
                    self.body = None;
                    if self.failures >= self.client.cfg.retries {
                        return Err(io::Error::other(RegistryError::Transport {
                            url: self.url.clone(),
                            detail: format!(
                                "blob truncated: {detail} (gave up after {} retries)",
                                self.failures
                            ),
                        }));
                    }
                    let delay = self.client.cfg.backoff * 2u32.pow(self.failures);
                    self.failures += 1;
                    warn!(digest = %self.digest, pos = self.pos, %detail, "blob body broke, resuming");
                    std::thread::sleep(delay);
                }
            }
        }
    }
}
