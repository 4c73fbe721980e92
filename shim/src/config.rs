//! pea-shim's configuration: one struct with containerd-like defaults. The binary fills it from
//! flags; a JSON file (`--config`) may set any field, unknown fields refused.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where pea-shim keeps things and which programs it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ShimConfig {
    /// The CRI socket (mode 0600).
    pub socket: PathBuf,
    /// Persistent data: the image store (`images/`), containers' writable layers, CNI cache.
    pub root: PathBuf,
    /// Runtime state: sandbox and container records, bundles, pinned network namespaces.
    pub state: PathBuf,
    /// pea-runtime, or any runc-compatible binary.
    pub runtime: PathBuf,
    /// The runtime's own state dir (`--root`).
    pub runtime_root: PathBuf,
    /// pea-monitor, the per-container I/O and exit monitor.
    pub monitor: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    /// containerd-style `hosts.toml` directory for registry mirrors.
    pub registry_config: Option<PathBuf>,
    /// Registries (`host[:port]`) reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// The image every sandbox runs; pinned (never garbage-collected).
    pub pause_image: String,
    /// Where the streaming server (exec/attach/port-forward) listens.
    pub stream_address: SocketAddr,
    /// Prometheus `/metrics`, when set (loopback unless the operator says otherwise).
    pub metrics_address: Option<SocketAddr>,
    /// Where seccomp `Localhost` profiles are resolved (kubelet's `<root-dir>/seccomp`).
    pub seccomp_profile_root: PathBuf,
    /// The shim's own image GC policy (`kubelet`, `layer-aware`, `size-aware`, `gdsf`,
    /// `learned`), or `none`: the kubelet's GC over CRI alone removes images.
    pub image_gc_policy: String,
    pub image_gc_high_threshold_percent: u8,
    pub image_gc_low_threshold_percent: u8,
    /// Go duration ("2m"): how long an image is known before GC may remove it.
    pub image_minimum_gc_age: String,
    /// Go duration ("5m"): how often the shim's GC runs.
    pub image_gc_period: String,
    /// Appends the node's image use (pulls with their layers, container starts and stops) here
    /// as JSON lines, the trace format `pea-image simulate --recording FILE` replays.
    pub image_use_recording: Option<PathBuf>,
}

impl Default for ShimConfig {
    fn default() -> Self {
        Self {
            socket: "/run/pea/pea-shim.sock".into(),
            root: "/var/lib/pea/shim".into(),
            state: "/run/pea/shim".into(),
            runtime: "pea-runtime".into(),
            runtime_root: "/run/pea/runtime".into(),
            monitor: "pea-monitor".into(),
            cni_conf_dir: "/etc/cni/net.d".into(),
            cni_bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
            registry_config: None,
            insecure_registries: Vec::new(),
            pause_image: "registry.k8s.io/pause:3.10".into(),
            stream_address: "127.0.0.1:0".parse().expect("literal address"),
            metrics_address: None,
            seccomp_profile_root: "/var/lib/kubelet/seccomp".into(),
            // The kubelet's defaults (imageGCHigh/LowThresholdPercent, imageMinimumGCAge).
            image_gc_policy: crate::image_gc::NO_POLICY.into(),
            image_gc_high_threshold_percent: 85,
            image_gc_low_threshold_percent: 80,
            image_minimum_gc_age: "2m".into(),
            image_gc_period: "5m".into(),
            image_use_recording: None,
        }
    }
}

impl ShimConfig {
    pub fn images_root(&self) -> PathBuf {
        self.root.join("images")
    }

    /// A container's writable layer (`upper/`, `work/`).
    pub fn container_layer_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    pub fn cni_cache_dir(&self) -> PathBuf {
        self.root.join("cni-cache")
    }

    pub fn sandboxes_dir(&self) -> PathBuf {
        self.state.join("sandboxes")
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.state.join("containers")
    }

    pub fn netns_dir(&self) -> PathBuf {
        self.state.join("netns")
    }

    /// A container's (or sandbox's) OCI bundle.
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.state.join("bundles").join(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_and_defaults_fill_the_rest() {
        let c: ShimConfig = serde_json::from_str(r#"{"pauseImage":"x/pause:1"}"#).unwrap();
        assert_eq!(c.pause_image, "x/pause:1");
        assert_eq!(c.socket, PathBuf::from("/run/pea/pea-shim.sock"));
        let e = serde_json::from_str::<ShimConfig>(r#"{"sockett":"/x"}"#).unwrap_err();
        assert!(e.to_string().contains("sockett"), "{e}");
    }
}
