//! Helpers for the image tests: a store wired to a local registry, overlay mounts of pulled
//! images, pushing an index by hand (skopeo pushes one platform), and an auth token server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pea_images::clock::{Clock, SystemClock};
use pea_images::rootfs::{mount_rootfs, Rootfs};
use pea_images::{Client, ClientConfig, Store, StoreOptions};

pub mod flaky_proxy;
pub mod token_server;

/// A client that reaches `insecure` registries over plain HTTP, with short backoff for tests.
pub fn client_config(insecure: &[String]) -> ClientConfig {
    ClientConfig {
        insecure: insecure.to_vec(),
        backoff: Duration::from_millis(20),
        retries: 3,
        ..Default::default()
    }
}

/// Opens a store at `root`.
pub fn open_store(root: &Path, cfg: ClientConfig) -> Store {
    open_store_with(root, cfg, StoreOptions::default(), Arc::new(SystemClock))
}

pub fn open_store_with(
    root: &Path,
    cfg: ClientConfig,
    opts: StoreOptions,
    clock: Arc<dyn Clock>,
) -> Store {
    Store::open_with_clock(root, Client::new(cfg), opts, clock)
        .expect("open store")
        .0
}

/// Mounts image `key` from `store` under `dir` (`dir/rootfs`, upper and work beside it).
pub fn mount_image(store: &Store, key: &str, dir: &Path) -> Rootfs {
    mount_rootfs(store, key, &dir.join("state"), &dir.join("rootfs")).expect("mount rootfs")
}

/// An OCI index JSON for `(manifest digest, size, architecture)` entries, all linux.
pub fn index_json(entries: &[(&str, u64, &str)]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(d, s, arch)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": d, "size": s,
                "platform": {"architecture": arch, "os": "linux"}
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests
    }))
    .expect("json")
}

/// PUTs a manifest to an anonymous registry; returns the HTTP status.
pub fn put_manifest(
    addr: SocketAddr,
    repo: &str,
    tag: &str,
    media_type: &str,
    body: &[u8],
) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "PUT /v2/{repo}/manifests/{tag} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: {media_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {head}")))
}

/// The registry's on-disk file holding blob `digest` (for corruption tests).
pub fn registry_blob_file(storage: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// Every file name under `dir` (recursively), for "nothing was written here" checks.
pub fn list_tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            out.push(e.path());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Pushes `src` to `registry` as `repo_tag` with skopeo, authenticating as `creds` (`user:pass`).
pub fn push_with_creds(host: &str, src: &str, repo_tag: &str, creds: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--preserve-digests",
            "--dest-creds",
            creds,
            src,
        ])
        .arg(format!("docker://{host}/{repo_tag}"))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "skopeo copy {src}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// An htpasswd file with one bcrypt entry.
pub fn write_htpasswd(path: &Path, user: &str, password: &str) -> anyhow::Result<()> {
    let hash = bcrypt::hash(password, 5)?;
    std::fs::write(path, format!("{user}:{hash}\n"))?;
    Ok(())
}

/// A loopback port nothing listens on (bound, then released).
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
