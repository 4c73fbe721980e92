//! Where to fetch a registry's content from: mirrors then the upstream, configured like
//! containerd's `hosts.toml` (`<hosts_dir>/<registry>/hosts.toml`, falling back to
//! `<hosts_dir>/_default/hosts.toml`):
//!
//! ```toml
//! server = "https://registry.k8s.io"
//! [host."http://127.0.0.1:5000"]
//!   capabilities = ["pull", "resolve"]
//! ```
//!
//! Hosts are tried in file order, the `server` last. Plain HTTP is used only where the
//! configuration says so: an explicit `http://` URL in hosts.toml, or a registry listed as
//! insecure (whose default endpoint then becomes `http://<registry>`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: host {url:?} must be an http:// or https:// URL")]
    Scheme { path: PathBuf, url: String },
    #[error(
        "{path}: {key} is not implemented yet (pea verifies TLS against the Web PKI roots only)"
    )]
    NotImplemented { path: PathBuf, key: String },
    #[error("{path}: unknown capability {capability:?} (pull, resolve, push)")]
    Capability { path: PathBuf, capability: String },
}

/// One place a registry's API is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port]`.
    pub base: String,
    /// Path prefix of the API, `/v2` unless `override_path` gave the full path.
    pub api_path: String,
    /// The registry this endpoint serves (the reference's host), sent as `ns` to mirrors.
    pub registry: String,
    pub mirror: bool,
    pub resolve: bool,
    pub pull: bool,
    pub headers: Vec<(String, String)>,
}

impl Endpoint {
    /// `host[:port]` of the endpoint (credentials and tokens are kept per host).
    pub fn host(&self) -> &str {
        self.base
            .split_once("://")
            .map(|(_, h)| h)
            .unwrap_or(&self.base)
    }

    pub fn url(&self, rest: &str) -> String {
        let mut u = format!("{}{}{rest}", self.base, self.api_path);
        if self.mirror {
            u.push_str(if u.contains('?') { "&ns=" } else { "?ns=" });
            u.push_str(&self.registry);
        }
        u
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    server: Option<String>,
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    skip_verify: Option<bool>,
    #[serde(default)]
    ca: Option<toml::Value>,
    #[serde(default)]
    header: BTreeMap<String, toml::Value>,
    #[serde(default)]
    host: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostEntry {
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    skip_verify: Option<bool>,
    #[serde(default)]
    override_path: bool,
    #[serde(default)]
    ca: Option<toml::Value>,
    #[serde(default)]
    client: Option<toml::Value>,
    #[serde(default)]
    header: BTreeMap<String, toml::Value>,
}

/// The endpoints for `registry`, mirrors first.
pub fn endpoints(
    hosts_dir: Option<&Path>,
    registry: &str,
    insecure: &[String],
) -> Result<Vec<Endpoint>, HostsError> {
    let is_insecure = insecure.iter().any(|h| h == registry);
    let default_server = || {
        let host = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        format!("{}://{host}", if is_insecure { "http" } else { "https" })
    };
    let file = hosts_dir.and_then(|d| {
        [
            d.join(registry.replace(':', "_")),
            d.join(registry),
            d.join("_default"),
        ]
        .into_iter()
        .map(|p| p.join("hosts.toml"))
        .find(|p| p.exists())
    });
    let Some(path) = file else {
        return Ok(vec![Endpoint {
            base: default_server(),
            api_path: "/v2".into(),
            registry: registry.into(),
            mirror: false,
            resolve: true,
            pull: true,
            headers: Vec::new(),
        }]);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| HostsError::Read {
        path: path.clone(),
        source,
    })?;
    let parsed: HostsFile = toml::from_str(&text).map_err(|source| HostsError::Parse {
        path: path.clone(),
        source,
    })?;
    let unsupported = |key: &str| HostsError::NotImplemented {
        path: path.clone(),
        key: key.into(),
    };
    if parsed.skip_verify == Some(true) {
        return Err(unsupported("skip_verify"));
    }
    if parsed.ca.is_some() {
        return Err(unsupported("ca"));
    }
    let mut out = Vec::new();
    for (url, value) in &parsed.host {
        let entry: HostEntry = value
            .clone()
            .try_into()
            .map_err(|source| HostsError::Parse {
                path: path.clone(),
                source,
            })?;
        if entry.skip_verify == Some(true) && url.starts_with("https://") {
            return Err(unsupported(&format!("skip_verify for {url}")));
        }
        if entry.ca.is_some() {
            return Err(unsupported(&format!("ca for {url}")));
        }
        if entry.client.is_some() {
            return Err(unsupported(&format!("client certificates for {url}")));
        }
        out.push(endpoint(
            &path,
            url,
            registry,
            true,
            entry.capabilities.as_deref(),
            entry.override_path,
            &entry.header,
        )?);
    }
    let server = parsed.server.clone().unwrap_or_else(default_server);
    out.push(endpoint(
        &path,
        &server,
        registry,
        false,
        parsed.capabilities.as_deref(),
        false,
        &parsed.header,
    )?);
    Ok(out)
}

fn endpoint(
    path: &Path,
    url: &str,
    registry: &str,
    mirror: bool,
    caps: Option<&[String]>,
    override_path: bool,
    header: &BTreeMap<String, toml::Value>,
) -> Result<Endpoint, HostsError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| HostsError::Scheme {
        path: path.into(),
        url: url.into(),
    })?;
    if scheme != "http" && scheme != "https" {
        return Err(HostsError::Scheme {
            path: path.into(),
            url: url.into(),
        });
    }
    let (host, url_path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/').to_string()),
        None => (rest, String::new()),
    };
    let api_path = if override_path {
        url_path
    } else {
        format!("{url_path}/v2")
    };
    let caps: Vec<String> = caps
        .map(|c| c.to_vec())
        .unwrap_or_else(|| vec!["pull".into(), "resolve".into(), "push".into()]);
    for c in &caps {
        if !matches!(c.as_str(), "pull" | "resolve" | "push") {
            return Err(HostsError::Capability {
                path: path.into(),
                capability: c.clone(),
            });
        }
    }
    let headers = header
        .iter()
        .flat_map(|(k, v)| match v {
            toml::Value::String(s) => vec![(k.clone(), s.clone())],
            toml::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(|s| (k.clone(), s.to_string())))
                .collect(),
            other => vec![(k.clone(), format!("{other:?}"))],
        })
        .collect();
    Ok(Endpoint {
        base: format!("{scheme}://{host}"),
        api_path,
        registry: registry.into(),
        // The upstream server is not a mirror even when it is listed under another name.
        mirror: mirror && host != registry,
        resolve: caps.iter().any(|c| c == "resolve"),
        pull: caps.iter().any(|c| c == "pull"),
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_https_upstream_and_docker_hub_is_registry_1() {
        let e = endpoints(None, "docker.io", &[]).unwrap();
        assert_eq!(
            e[0].url("/library/busybox/manifests/latest"),
            "https://registry-1.docker.io/v2/library/busybox/manifests/latest"
        );
        let e = endpoints(None, "127.0.0.1:5000", &["127.0.0.1:5000".into()]).unwrap();
        assert_eq!(e[0].base, "http://127.0.0.1:5000");
    }

    #[test]
    fn hosts_toml_lists_mirrors_in_order_then_the_server() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("registry.k8s.io")).unwrap();
        std::fs::write(
            dir.path().join("registry.k8s.io/hosts.toml"),
            r#"server = "https://registry.k8s.io"
[host."http://127.0.0.1:1"]
  capabilities = ["pull", "resolve"]
[host."http://127.0.0.1:2/prefix"]
  capabilities = ["pull"]
  [host."http://127.0.0.1:2/prefix".header]
    x-pea = "1"
"#,
        )
        .unwrap();
        let e = endpoints(Some(dir.path()), "registry.k8s.io", &[]).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0].url("/pause/manifests/3.10"),
            "http://127.0.0.1:1/v2/pause/manifests/3.10?ns=registry.k8s.io"
        );
        assert!(e[0].resolve && !e[1].resolve && e[1].pull);
        assert_eq!(e[1].api_path, "/prefix/v2");
        assert_eq!(e[1].headers, vec![("x-pea".to_string(), "1".to_string())]);
        assert_eq!(e[2].base, "https://registry.k8s.io");
        assert!(!e[2].mirror);
    }

    #[test]
    fn bad_hosts_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("_default")).unwrap();
        std::fs::write(
            dir.path().join("_default/hosts.toml"),
            "[host.\"ftp://x\"]\n",
        )
        .unwrap();
        let e = endpoints(Some(dir.path()), "a.io", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("hosts.toml") && e.contains("ftp://x"), "{e}");
    }
}
