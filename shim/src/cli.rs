//! pea-shim's binary edge as a library: its flags, and serving CRI until told to stop. Shared by
//! the `pea-shim` binary and `pea-agent` (a node's programs in one process, as k3s's agent), so
//! both parse the same flags and behave the same.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::net::UnixListener;

use crate::{server, Shim, ShimConfig};

#[derive(Debug, Parser)]
#[command(name = "pea-shim", version, about = "CRI v1 runtime and image service")]
pub struct Args {
    /// JSON config (ShimConfig's fields, camelCase); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The CRI socket (mode 0600).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Persistent data: images, writable layers, CNI cache.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Runtime state: records, bundles, network namespaces.
    #[arg(long)]
    state: Option<PathBuf>,
    /// pea-runtime, or any runc-compatible binary.
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// The OCI runtime's state dir (its --root).
    #[arg(long)]
    runtime_root: Option<PathBuf>,
    /// pea-monitor.
    #[arg(long)]
    monitor: Option<PathBuf>,
    #[arg(long)]
    cni_conf_dir: Option<PathBuf>,
    /// CNI plugin directories (repeat, or colon-separated).
    #[arg(long, value_delimiter = ':')]
    cni_bin_dir: Vec<PathBuf>,
    /// containerd-style hosts.toml directory (registry mirrors).
    #[arg(long)]
    registry_config: Option<PathBuf>,
    /// A registry (host[:port]) reached over plain HTTP; repeatable.
    #[arg(long)]
    insecure_registry: Vec<String>,
    #[arg(long)]
    pause_image: Option<String>,
    /// Streaming server address (exec/attach/port-forward).
    #[arg(long)]
    stream_address: Option<SocketAddr>,
    /// Serve Prometheus /metrics here (e.g. 127.0.0.1:9464).
    #[arg(long)]
    metrics_address: Option<SocketAddr>,
    #[arg(long)]
    seccomp_profile_root: Option<PathBuf>,
    /// The shim's own image GC: none (default; the kubelet's GC over CRI decides), kubelet,
    /// layer-aware, size-aware, gdsf or learned. Pair a policy with the kubelet's
    /// imageGCHighThresholdPercent: 100 (kubelet image GC off).
    #[arg(long)]
    image_gc_policy: Option<String>,
    /// Disk usage (%) of the image filesystem at which the shim's GC starts (default 85).
    #[arg(long)]
    image_gc_high_threshold_percent: Option<u8>,
    /// Disk usage (%) the shim's GC frees down to (default 80).
    #[arg(long)]
    image_gc_low_threshold_percent: Option<u8>,
    /// How long an image is known before the shim's GC may remove it (Go duration, default 2m).
    #[arg(long)]
    image_minimum_gc_age: Option<String>,
    /// How often the shim's GC runs (Go duration, default 5m).
    #[arg(long)]
    image_gc_period: Option<String>,
    /// Append image pulls and container starts/stops to FILE (JSON lines, created 0600), to
    /// replay this node's own use with `pea-image simulate --recording FILE`.
    #[arg(long, value_name = "FILE")]
    image_use_recording: Option<PathBuf>,
}

/// The shim's configuration from its flags (and `--config`), checked before anything starts.
pub fn config(a: Args) -> anyhow::Result<ShimConfig> {
    let mut c = match &a.config {
        Some(p) => serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{}", p.display()))?,
        None => ShimConfig::default(),
    };
    macro_rules! set {
        ($($f:ident),*) => { $(if let Some(v) = a.$f { c.$f = v; })* };
    }
    set!(
        socket,
        root,
        state,
        runtime,
        runtime_root,
        monitor,
        cni_conf_dir,
        pause_image,
        stream_address,
        seccomp_profile_root,
        image_gc_policy,
        image_gc_high_threshold_percent,
        image_gc_low_threshold_percent,
        image_minimum_gc_age,
        image_gc_period
    );
    if a.registry_config.is_some() {
        c.registry_config = a.registry_config;
    }
    if a.metrics_address.is_some() {
        c.metrics_address = a.metrics_address;
    }
    if a.image_use_recording.is_some() {
        c.image_use_recording = a.image_use_recording;
    }
    if !a.cni_bin_dir.is_empty() {
        c.cni_bin_dirs = a.cni_bin_dir;
    }
    if !a.insecure_registry.is_empty() {
        c.insecure_registries = a.insecure_registry;
    }
    // Sibling binaries by default, so a build tree or an install dir works without flags.
    let here = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from));
    for (field, name) in [
        (&mut c.runtime, "pea-runtime"),
        (&mut c.monitor, "pea-monitor"),
    ] {
        if field.as_os_str() == name {
            if let Some(p) = here.as_ref().map(|h| h.join(name)).filter(|p| p.is_file()) {
                *field = p;
            }
        }
    }
    // Refused before anything starts, with the flag named.
    crate::image_gc::ImageGc::from_config(&c)?;
    Ok(c)
}

/// The shim with its state opened and its socket bound: CRI clients may connect from here on
/// (their calls wait until [`Bound::serve`] runs).
#[derive(Debug)]
pub struct Bound {
    shim: Arc<Shim>,
    listener: UnixListener,
    socket: PathBuf,
}

/// Opens the shim's state and binds its socket. Call inside a tokio runtime.
pub fn bind(cfg: ShimConfig) -> anyhow::Result<Bound> {
    let socket = cfg.socket.clone();
    let shim = Arc::new(Shim::open(cfg).context("opening pea-shim's state")?);
    let listener = server::bind(&socket)?;
    Ok(Bound {
        shim,
        listener,
        socket,
    })
}

impl Bound {
    /// Serves CRI until `stop` completes; the socket is removed on the way out.
    pub async fn serve(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(socket = %self.socket.display(), "pea-shim serving CRI v1");
        let shutdown = async move {
            stop.await;
            tracing::info!("shutting down; containers keep running under their monitors");
        };
        server::serve(self.shim, self.listener, shutdown).await?;
        let _ = std::fs::remove_file(&self.socket);
        Ok(())
    }
}
