//! The kubelet's config file: `KubeletConfiguration` (kubelet.config.k8s.io/v1beta1) with the
//! fields that apply to pea-kubelet and kubelet's own defaults. Unknown fields are refused, so a
//! typo is an error rather than a silently ignored setting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading kubelet config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kubelet config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("kubelet config: {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// `authentication.x509.clientCAFile` and friends (only the parts pea-kubelet uses).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authentication {
    #[serde(default)]
    pub x509: X509,
    #[serde(default)]
    pub anonymous: Enabled,
    #[serde(default)]
    pub webhook: Enabled,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct X509 {
    #[serde(default, rename = "clientCAFile")]
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Enabled {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub cache_ttl: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authorization {
    /// `AlwaysAllow` or `Webhook`; pea-kubelet allows admins and the API server's client only.
    #[serde(default)]
    pub mode: Option<String>,
}

/// The file's shape. Durations are Go duration strings ("10s", "1m30s"), as kubelet's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletConfiguration {
    pub kind: Option<String>,
    pub api_version: Option<String>,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub read_only_port: Option<u16>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    pub rotate_certificates: Option<bool>,
    #[serde(rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: Option<bool>,
    pub authentication: Option<Authentication>,
    pub authorization: Option<Authorization>,
    pub cgroup_root: Option<String>,
    pub cgroup_driver: Option<String>,
    #[serde(rename = "cgroupsPerQOS")]
    pub cgroups_per_qos: Option<bool>,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Option<Vec<String>>,
    pub cluster_domain: Option<String>,
    pub resolv_conf: Option<PathBuf>,
    pub eviction_hard: Option<BTreeMap<String, String>>,
    pub eviction_soft: Option<BTreeMap<String, String>>,
    pub eviction_soft_grace_period: Option<BTreeMap<String, String>>,
    pub eviction_minimum_reclaim: Option<BTreeMap<String, String>>,
    pub eviction_max_pod_grace_period: Option<i32>,
    pub eviction_pressure_transition_period: Option<String>,
    #[serde(rename = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: Option<u8>,
    #[serde(rename = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: Option<u8>,
    #[serde(rename = "imageMinimumGCAge")]
    pub image_minimum_gc_age: Option<String>,
    pub max_pods: Option<u32>,
    pub pods_per_core: Option<u32>,
    pub static_pod_path: Option<PathBuf>,
    pub file_check_frequency: Option<String>,
    pub sync_frequency: Option<String>,
    pub node_status_update_frequency: Option<String>,
    pub node_status_report_frequency: Option<String>,
    pub node_lease_duration_seconds: Option<u32>,
    pub serialize_image_pulls: Option<bool>,
    pub max_parallel_image_pulls: Option<u32>,
    pub container_runtime_endpoint: Option<String>,
    pub image_service_endpoint: Option<String>,
    pub pod_logs_dir: Option<PathBuf>,
    pub container_log_max_size: Option<String>,
    pub container_log_max_files: Option<u32>,
    pub container_log_monitor_interval: Option<String>,
    pub container_log_max_workers: Option<u32>,
    pub runtime_request_timeout: Option<String>,
    pub fail_swap_on: Option<bool>,
    pub hairpin_mode: Option<String>,
    pub register_node: Option<bool>,
    pub register_with_taints: Option<Vec<k8s_openapi::api::core::v1::Taint>>,
    pub node_labels: Option<BTreeMap<String, String>>,
    pub system_reserved: Option<BTreeMap<String, String>>,
    pub kube_reserved: Option<BTreeMap<String, String>>,
    pub enforce_node_allocatable: Option<Vec<String>>,
    pub local_storage_capacity_isolation: Option<bool>,
    pub kernel_memcg_notification: Option<bool>,
    pub healthz_bind_address: Option<String>,
    pub healthz_port: Option<u16>,
    pub feature_gates: Option<BTreeMap<String, bool>>,
}

/// The resolved configuration every part of the kubelet reads.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    pub node_ip: Option<std::net::IpAddr>,
    pub kubeconfig: PathBuf,
    pub root_dir: PathBuf,
    pub address: String,
    pub port: u16,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    /// rotateCertificates (false): renew the client certificate through CSRs before it expires
    /// ([`crate::certificate::client`]).
    pub rotate_certificates: bool,
    /// serverTLSBootstrap (false): the serving certificate from the `kubelet-serving` signer
    /// ([`crate::certificate::serving`]) instead of tlsCertFile or a self-signed one.
    pub server_tls_bootstrap: bool,
    pub client_ca_file: Option<PathBuf>,
    pub cgroup_root: String,
    pub cgroups_per_qos: bool,
    pub pod_cidr: Option<String>,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub resolv_conf: PathBuf,
    pub eviction_hard: BTreeMap<String, String>,
    /// Soft thresholds (evictionSoft), each with its evictionSoftGracePeriod.
    pub eviction_soft: BTreeMap<String, String>,
    pub eviction_soft_grace_period: BTreeMap<String, String>,
    pub eviction_minimum_reclaim: BTreeMap<String, String>,
    /// Longest grace (seconds) a soft eviction gives a pod (evictionMaxPodGracePeriod, 0).
    pub eviction_max_pod_grace_period: i32,
    /// How long a pressure condition stays after its signal clears (5m).
    pub eviction_pressure_transition_period: Duration,
    pub image_gc_high_threshold_percent: u8,
    pub image_gc_low_threshold_percent: u8,
    pub image_minimum_gc_age: Duration,
    pub max_pods: u32,
    pub static_pod_path: Option<PathBuf>,
    pub file_check_frequency: Duration,
    pub sync_frequency: Duration,
    pub node_status_update_frequency: Duration,
    pub node_lease_duration_seconds: u32,
    pub serialize_image_pulls: bool,
    pub container_runtime_endpoint: String,
    pub image_service_endpoint: String,
    pub pod_logs_dir: PathBuf,
    pub runtime_request_timeout: Duration,
    /// Rotate a container's log above this many bytes (containerLogMaxSize, 10Mi).
    pub container_log_max_size: u64,
    /// Log files kept per container, the current one included (containerLogMaxFiles, 5).
    pub container_log_max_files: u32,
    pub container_log_monitor_interval: Duration,
    pub container_log_max_workers: u32,
    pub register_node: bool,
    pub register_with_taints: Vec<k8s_openapi::api::core::v1::Taint>,
    pub node_labels: BTreeMap<String, String>,
    pub system_reserved: BTreeMap<String, String>,
    pub kube_reserved: BTreeMap<String, String>,
    /// enforceNodeAllocatable (["pods"]): with `pods`, the eviction manager also watches the
    /// pods' cgroup against node allocatable (allocatableMemory.available).
    pub enforce_node_allocatable: Vec<String>,
    /// localStorageCapacityIsolation (true): pods over their ephemeral-storage limits or an
    /// emptyDir over its sizeLimit are evicted.
    pub local_storage_capacity_isolation: bool,
    /// kernelMemcgNotification (false): on cgroup v1 the kernel reports memory threshold
    /// crossings at once (eviction/memcg.rs); cgroup v2 has no such notification.
    pub kernel_memcg_notification: bool,
    /// How often the eviction manager observes the signals (kubelet's fixed 10 s
    /// housekeeping; pea's --eviction-monitoring-period flag changes it, not the file).
    pub eviction_monitoring_period: Duration,
    pub healthz_port: u16,
    pub healthz_bind_address: String,
    /// How often dead containers and unused images are collected (kubelet's fixed
    /// ContainerGCPeriod 1 min and ImageGCPeriod 5 min; pea's --container-gc-period and
    /// --image-gc-period flags shorten them, not the config file).
    pub gc_periods: crate::gc::Periods,
}

impl Config {
    /// Defaults as kubelet's (v1beta1 defaults), for node `node_name`.
    pub fn defaults(node_name: &str, kubeconfig: &Path) -> Self {
        Self {
            node_name: node_name.to_string(),
            node_ip: None,
            kubeconfig: kubeconfig.to_path_buf(),
            root_dir: PathBuf::from("/var/lib/pea/kubelet"),
            // Empty: the node's InternalIP (what the API server dials), not every address.
            address: String::new(),
            port: 10250,
            tls_cert_file: None,
            tls_private_key_file: None,
            rotate_certificates: false,
            server_tls_bootstrap: false,
            client_ca_file: None,
            cgroup_root: "/".into(),
            cgroups_per_qos: true,
            pod_cidr: None,
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            eviction_hard: [
                ("memory.available", "100Mi"),
                ("nodefs.available", "10%"),
                ("imagefs.available", "15%"),
                ("nodefs.inodesFree", "5%"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            eviction_soft: BTreeMap::new(),
            eviction_soft_grace_period: BTreeMap::new(),
            eviction_minimum_reclaim: BTreeMap::new(),
            eviction_max_pod_grace_period: 0,
            eviction_pressure_transition_period: Duration::from_secs(300),
            image_gc_high_threshold_percent: 85,
            image_gc_low_threshold_percent: 80,
            image_minimum_gc_age: Duration::from_secs(120),
            max_pods: 110,
            static_pod_path: None,
            file_check_frequency: Duration::from_secs(20),
            sync_frequency: Duration::from_secs(60),
            node_status_update_frequency: Duration::from_secs(10),
            node_lease_duration_seconds: 40,
            serialize_image_pulls: true,
            container_runtime_endpoint: "unix:///run/pea/pea-shim.sock".into(),
            image_service_endpoint: String::new(),
            pod_logs_dir: PathBuf::from("/var/log/pods"),
            runtime_request_timeout: Duration::from_secs(120),
            container_log_max_size: 10 << 20,
            container_log_max_files: 5,
            container_log_monitor_interval: Duration::from_secs(10),
            container_log_max_workers: 1,
            register_node: true,
            register_with_taints: Vec::new(),
            node_labels: BTreeMap::new(),
            system_reserved: BTreeMap::new(),
            kube_reserved: BTreeMap::new(),
            enforce_node_allocatable: vec![crate::eviction::ENFORCE_PODS.to_string()],
            local_storage_capacity_isolation: true,
            kernel_memcg_notification: false,
            eviction_monitoring_period: crate::eviction::manager::MONITORING_PERIOD,
            healthz_port: 10248,
            healthz_bind_address: "127.0.0.1".into(),
            gc_periods: crate::gc::Periods::default(),
        }
    }

    /// Applies a config file (JSON or YAML) over `self`.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.apply_text(&text, path)
    }

    pub fn apply_text(&mut self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let file: KubeletConfiguration =
            parse_document(text).map_err(|message| ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            })?;
        // A refused file leaves the configuration as it was.
        let mut next = self.clone();
        next.apply(file)?;
        *self = next;
        Ok(())
    }

    pub fn apply(&mut self, f: KubeletConfiguration) -> Result<(), ConfigError> {
        if let Some(k) = f.kind.as_deref().filter(|k| *k != "KubeletConfiguration") {
            return Err(invalid("kind", format!("{k:?}: want KubeletConfiguration")));
        }
        if let Some(v) = f
            .api_version
            .as_deref()
            .filter(|v| *v != "kubelet.config.k8s.io/v1beta1")
        {
            return Err(invalid(
                "apiVersion",
                format!("{v:?}: want kubelet.config.k8s.io/v1beta1"),
            ));
        }
        if let Some(d) = f.cgroup_driver.as_deref().filter(|d| *d != "cgroupfs") {
            return Err(invalid(
                "cgroupDriver",
                format!("{d:?} is not supported: pea-kubelet manages cgroups with cgroupfs"),
            ));
        }
        if f.read_only_port.is_some_and(|p| p != 0) {
            return Err(invalid(
                "readOnlyPort",
                "the unauthenticated read-only port is not implemented (use 0)".into(),
            ));
        }
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = f.$field { self.$field = v; } )* };
        }
        macro_rules! dur {
            ($($field:ident: $name:literal),*) => { $(
                if let Some(v) = f.$field.as_deref() {
                    self.$field = parse_duration(v).map_err(|e| invalid($name, e.to_string()))?;
                }
            )* };
        }
        set!(
            address,
            port,
            cgroup_root,
            cgroups_per_qos,
            cluster_dns,
            cluster_domain,
            resolv_conf,
            image_gc_high_threshold_percent,
            image_gc_low_threshold_percent,
            max_pods,
            node_lease_duration_seconds,
            serialize_image_pulls,
            container_runtime_endpoint,
            pod_logs_dir,
            register_node,
            register_with_taints,
            node_labels,
            system_reserved,
            kube_reserved,
            enforce_node_allocatable,
            local_storage_capacity_isolation,
            kernel_memcg_notification,
            healthz_port,
            healthz_bind_address,
            eviction_soft,
            eviction_soft_grace_period,
            eviction_minimum_reclaim,
            eviction_max_pod_grace_period
        );
        dur!(
            image_minimum_gc_age: "imageMinimumGCAge",
            file_check_frequency: "fileCheckFrequency",
            sync_frequency: "syncFrequency",
            node_status_update_frequency: "nodeStatusUpdateFrequency",
            runtime_request_timeout: "runtimeRequestTimeout",
            container_log_monitor_interval: "containerLogMonitorInterval",
            eviction_pressure_transition_period: "evictionPressureTransitionPeriod"
        );
        set!(container_log_max_files, container_log_max_workers);
        set!(rotate_certificates, server_tls_bootstrap);
        if let Some(v) = f.container_log_max_size.as_deref() {
            self.container_log_max_size = crate::quantity::parse_bytes(v)
                .filter(|b| *b > 0)
                .ok_or_else(|| {
                    invalid(
                        "containerLogMaxSize",
                        format!("{v:?} is not a positive quantity"),
                    )
                })?;
        }
        if let Some(e) = f.eviction_hard {
            // As kubelet: a partial map replaces the defaults only for the signals it names
            // when it is given at all (kubelet replaces the whole map; so do we).
            self.eviction_hard = e;
        }
        if let Some(v) = f.image_service_endpoint {
            self.image_service_endpoint = v;
        }
        self.pod_cidr = f.pod_cidr.or(self.pod_cidr.take());
        self.static_pod_path = f.static_pod_path.or(self.static_pod_path.take());
        self.tls_cert_file = f.tls_cert_file.or(self.tls_cert_file.take());
        self.tls_private_key_file = f.tls_private_key_file.or(self.tls_private_key_file.take());
        if let Some(ca) = f.authentication.and_then(|a| a.x509.client_ca_file) {
            self.client_ca_file = Some(ca);
        }
        self.validate()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server_tls_bootstrap && self.tls_cert_file.is_some() {
            return Err(invalid(
                "serverTLSBootstrap",
                "the serving certificate comes from a CSR: tlsCertFile and tlsPrivateKeyFile must be unset".into(),
            ));
        }
        if self.image_gc_low_threshold_percent >= self.image_gc_high_threshold_percent
            || self.image_gc_high_threshold_percent > 100
        {
            return Err(invalid(
                "imageGCHighThresholdPercent",
                format!(
                    "low {} must be below high {} (at most 100)",
                    self.image_gc_low_threshold_percent, self.image_gc_high_threshold_percent
                ),
            ));
        }
        if self.container_log_max_files < 2 {
            return Err(invalid(
                "containerLogMaxFiles",
                format!("{} must be at least 2", self.container_log_max_files),
            ));
        }
        if self.container_log_max_workers == 0 || self.container_log_monitor_interval.is_zero() {
            return Err(invalid(
                "containerLogMaxWorkers",
                "containerLogMaxWorkers and containerLogMonitorInterval must be positive".into(),
            ));
        }
        if self.max_pods == 0 {
            return Err(invalid("maxPods", "must be positive".into()));
        }
        if !self.cgroup_root.starts_with('/') || self.cgroup_root.split('/').any(|c| c == "..") {
            return Err(invalid(
                "cgroupRoot",
                format!("{:?} must be an absolute cgroup path", self.cgroup_root),
            ));
        }
        crate::eviction::parse_config(
            &self.eviction_hard,
            &self.eviction_soft,
            &self.eviction_soft_grace_period,
            &self.eviction_minimum_reclaim,
        )
        .map_err(|m| invalid("eviction", m))?;
        if self.eviction_max_pod_grace_period < 0 {
            return Err(invalid(
                "evictionMaxPodGracePeriod",
                format!(
                    "{} must not be negative",
                    self.eviction_max_pod_grace_period
                ),
            ));
        }
        // kubelet's ValidateKubeletConfiguration for enforceNodeAllocatable.
        for k in &self.enforce_node_allocatable {
            if !matches!(
                k.as_str(),
                "pods"
                    | "system-reserved"
                    | "kube-reserved"
                    | "system-reserved-compressible"
                    | "kube-reserved-compressible"
                    | "none"
            ) {
                return Err(invalid(
                    "enforceNodeAllocatable",
                    format!("invalid option {k:?} specified for enforceNodeAllocatable (--enforce-node-allocatable) setting. Valid options are \"pods\", \"system-reserved\", \"kube-reserved\", \"system-reserved-compressible\", \"kube-reserved-compressible\" or \"none\""),
                ));
            }
            if k == "none" && self.enforce_node_allocatable.len() > 1 {
                return Err(invalid(
                    "enforceNodeAllocatable",
                    "enforceNodeAllocatable (--enforce-node-allocatable) may not contain additional enforcements when \"none\" is specified".into(),
                ));
            }
        }
        for ip in &self.cluster_dns {
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| invalid("clusterDNS", format!("{ip:?} is not an IP address")))?;
        }
        Ok(())
    }
}

impl Config {
    /// The eviction thresholds (validated when the config was applied).
    pub fn eviction_thresholds(&self) -> Vec<crate::eviction::Configured> {
        let configured = crate::eviction::parse_config(
            &self.eviction_hard,
            &self.eviction_soft,
            &self.eviction_soft_grace_period,
            &self.eviction_minimum_reclaim,
        )
        .unwrap_or_default();
        crate::eviction::add_allocatable_thresholds(configured, &self.enforce_node_allocatable)
    }
}

fn invalid(field: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { field, message }
}

/// JSON, or the YAML subset kubelet config files use (kube's own YAML parser via serde_json
/// through kube's re-export would pull serde_yaml; kube-client already depends on it).
fn parse_document<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| e.to_string());
    }
    serde_yaml::from_str(text).map_err(|e| e.to_string())
}

/// Go's `time.ParseDuration`, as kubelet reads every duration (the shared pea-godur crate,
/// which pea-shim and pea-proxy use too).
pub use pea_godur::parse as parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_refuses_unknown_fields() {
        let mut c = Config::defaults("n1", Path::new("k"));
        c.apply_text(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS: [10.96.0.10]\nmaxPods: 30\nnodeStatusUpdateFrequency: 4s\nevictionHard:\n  memory.available: 1Gi\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        assert_eq!(c.cluster_dns, ["10.96.0.10"]);
        assert_eq!(c.max_pods, 30);
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(4));
        assert_eq!(c.eviction_hard.len(), 1);
        let err = c
            .apply_text("maxPod: 3\n", Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `maxPod`"), "{err}");
        let err = c
            .apply_text("cgroupDriver: systemd\n", Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cgroupDriver"), "{err}");
        let err = c
            .apply_text(
                "imageGCHighThresholdPercent: 50\nimageGCLowThresholdPercent: 60\n",
                Path::new("c.yaml"),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("low 60 must be below high 50"), "{err}");
        let err = c
            .apply_text("evictionHard: {memory.available: lots}\n", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("eviction"), "{err}");
        // kubelet refuses a soft threshold without its grace period.
        let err = c
            .apply_text("evictionSoft: {memory.available: 1Gi}\n", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "grace period must be specified for the soft eviction threshold memory.available"
            ),
            "{err}"
        );
        c.apply_text(
            "evictionSoft: {memory.available: 1Gi}\nevictionSoftGracePeriod: {memory.available: 1m}\n\
             evictionMaxPodGracePeriod: 30\nevictionPressureTransitionPeriod: 30s\n\
             evictionMinimumReclaim: {memory.available: 100Mi}\n",
            Path::new("c"),
        )
        .unwrap();
        // The hard memory.available threshold, the soft one, and (enforceNodeAllocatable
        // ["pods"] by default) the hard one copied to allocatableMemory.available.
        let t = c.eviction_thresholds();
        assert_eq!(t.len(), 3);
        assert_eq!(
            t[2].signal(),
            crate::eviction::Signal::AllocatableMemoryAvailable
        );
        let mut none = c.clone();
        none.apply_text(
            "enforceNodeAllocatable: [none]\nlocalStorageCapacityIsolation: false\n",
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(none.eviction_thresholds().len(), 2);
        assert!(!none.local_storage_capacity_isolation && c.local_storage_capacity_isolation);
        let err = none
            .apply_text("enforceNodeAllocatable: [none, pods]\n", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("may not contain additional enforcements"),
            "{err}"
        );
        let err = none
            .apply_text("enforceNodeAllocatable: [podz]\n", Path::new("c"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid option \"podz\""), "{err}");
        assert_eq!(c.eviction_max_pod_grace_period, 30);
        assert_eq!(
            c.eviction_pressure_transition_period,
            Duration::from_secs(30)
        );
    }
}
