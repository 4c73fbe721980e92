//! CRI → OCI: the one place where a sandbox or container config becomes an OCI runtime spec.
//! Pure functions (no I/O except reading the image's /etc/passwd and /etc/group under the
//! rootfs, a Localhost seccomp profile, the host device nodes a config names and a few facts
//! about the shim's own process), tested against golden files.
//!
//! The translation follows containerd 1.7's CRI plugin (`sandbox_run_linux.go`,
//! `container_create_linux.go` and the `pkg/oci` spec options):
//!
//! ```text
//! default spec   runc-like: pid ipc uts mount net namespaces, /proc /dev /dev/pts /dev/shm
//!                /dev/mqueue /sys(ro) /sys/fs/cgroup(ro), containerd's masked and readonly
//!                paths, its 14 default capabilities, a deny-all device cgroup plus the
//!                standard allow-list, no rlimits (the process inherits the shim's)
//! sandbox        + pause's entrypoint/cmd/env, hostname, read-only rootfs, the pinned netns,
//!                host modes drop namespaces, sysctls, run-as user, seccomp, cpu shares 2,
//!                oom_score_adj -998 (clamped), the sandbox annotations
//! container      + Kubernetes' command/args rules, env, cwd, user from the image's passwd,
//!                joins the pause's NET/IPC/UTS (and PID) through /proc/<pid>/ns/*, mounts,
//!                pod files, devices, capabilities, privileged, seccomp, resources, annotations
//! ```
//!
//! Host facts (the capability bounding set, the lowest oom_score_adj the shim may give, the
//! hostname, the devices under /dev) come through [`Host`], probed for the real entry points
//! and fixed in the golden tests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use k8s_cri::v1 as cri;
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxDevice, LinuxNamespace, LinuxNamespaceType, LinuxResources,
    ProcessBuilder, RootBuilder, Spec, UserBuilder,
};

mod defaults;
mod devices;
mod mounts;
mod resources;
mod seccomp_default;
mod security;
mod user;

#[cfg(test)]
mod tests;

pub use resources::container_resources;
pub use seccomp_default::{runtime_default_profile, runtime_default_profile_for};
pub use security::capability_bit;

/// Why a config could not be translated; each names the CRI field.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
    #[error("{field}: {detail}")]
    Unsupported { field: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub(crate) fn invalid(field: impl Into<String>, detail: impl Into<String>) -> OciError {
    OciError::Invalid {
        field: field.into(),
        detail: detail.into(),
    }
}

pub(crate) fn unsupported(field: impl Into<String>, detail: impl Into<String>) -> OciError {
    OciError::Unsupported {
        field: field.into(),
        detail: detail.into(),
    }
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
    move |source| OciError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Files the shim makes per sandbox and bind-mounts into every container of the pod.
#[derive(Debug, Clone, Default)]
pub struct PodFiles {
    pub resolv_conf: Option<PathBuf>,
    pub hostname: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    /// The pod's /dev/shm (a tmpfs the shim mounted), unless the pod shares the host's IPC.
    pub shm: Option<PathBuf>,
}

/// Everything the pause container's spec depends on.
#[derive(Debug, Clone)]
pub struct SandboxSpecInput<'a> {
    pub id: &'a str,
    pub config: &'a cri::PodSandboxConfig,
    /// The pause image's config (entrypoint/cmd/env).
    pub image: &'a ImageConfiguration,
    /// The mounted rootfs (read-only in the spec).
    pub rootfs: &'a Path,
    /// The pinned network namespace; None for host-network pods.
    pub netns: Option<&'a Path>,
    /// The pod's pinned user namespace (crate::userns, mode POD); None in the host's.
    pub userns: Option<&'a Path>,
    /// cgroupfs path for the pause container (`<pod cgroup parent>/<id>`).
    pub cgroups_path: String,
    pub files: &'a PodFiles,
    /// Where `Localhost` seccomp profiles are resolved from.
    pub seccomp_profile_root: &'a Path,
}

/// Everything a container's spec depends on.
#[derive(Debug, Clone)]
pub struct ContainerSpecInput<'a> {
    pub id: &'a str,
    /// The pod sandbox's id (the `io.kubernetes.cri.sandbox-id` annotation).
    pub sandbox_id: &'a str,
    pub config: &'a cri::ContainerConfig,
    pub sandbox: &'a cri::PodSandboxConfig,
    pub image: &'a ImageConfiguration,
    pub rootfs: &'a Path,
    /// The pause container's init: the container joins its NET, IPC and UTS namespaces (and
    /// PID when the pod shares it) through /proc/<pid>/ns/*.
    pub sandbox_pid: i32,
    /// The init pid of the container named by `namespace_options.target_id`, when the
    /// container's PID namespace mode is TARGET.
    pub target_pid: Option<i32>,
    /// cgroupfs path for the container (`<pod cgroup parent>/<id>`).
    pub cgroups_path: String,
    pub files: &'a PodFiles,
    pub seccomp_profile_root: &'a Path,
}

/// The pause container's spec.
pub fn sandbox_spec(input: &SandboxSpecInput<'_>) -> Result<Spec, OciError> {
    sandbox_spec_on(input, &Host::probe())
}

/// A container's spec.
pub fn container_spec(input: &ContainerSpecInput<'_>) -> Result<Spec, OciError> {
    container_spec_on(input, &Host::probe())
}

/// What the translation needs to know about the node and the shim's own process.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// The node's hostname: the HOSTNAME env of containers in host-network pods.
    pub hostname: String,
    /// The capability bounding set the runtime inherits from the shim: "ALL" and privileged
    /// mean these, and an explicit add of anything else is refused.
    pub bounding: HashSet<Capability>,
    /// The lowest oom_score_adj the runtime may set (the shim's own, when it cannot lower it:
    /// containerd's restrict_oom_score_adj); None when any value is allowed.
    pub oom_score_adj_floor: Option<i32>,
    /// The host's devices for privileged containers; None reads /dev when needed.
    pub devices: Option<Vec<LinuxDevice>>,
}

impl Host {
    pub(crate) fn probe() -> Host {
        static FIXED: OnceLock<(HashSet<Capability>, Option<i32>)> = OnceLock::new();
        let (bounding, floor) = FIXED.get_or_init(|| {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let mask = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            };
            let bounding = match mask("CapBnd:") {
                Some(m) => security::caps_in_mask(m),
                None => security::all_caps(),
            };
            let eff = mask("CapEff:").unwrap_or(0);
            let floor = if eff & (1 << security::CAP_SYS_RESOURCE_BIT) == 0 {
                std::fs::read_to_string("/proc/self/oom_score_adj")
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
            } else {
                None
            };
            (bounding, floor)
        });
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        Host {
            hostname,
            bounding: bounding.clone(),
            oom_score_adj_floor: *floor,
            devices: None,
        }
    }

    /// `adj` raised to the floor, with a log line when it had to be.
    fn clamp_oom_score_adj(&self, adj: i32, id: &str) -> i32 {
        match self.oom_score_adj_floor {
            Some(floor) if adj < floor => {
                tracing::info!(
                    id,
                    requested = adj,
                    used = floor,
                    "oom_score_adj raised to the shim's own: lowering it needs CAP_SYS_RESOURCE"
                );
                floor
            }
            _ => adj,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Annotations (containerd's pkg/cri/annotations)

const ANN_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
const ANN_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
const ANN_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
const ANN_SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
const ANN_SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
const ANN_SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
const ANN_SANDBOX_LOG_DIR: &str = "io.kubernetes.cri.sandbox-log-directory";
const ANN_IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
const ANN_SANDBOX_CPU_PERIOD: &str = "io.kubernetes.cri.sandbox-cpu-period";
const ANN_SANDBOX_CPU_QUOTA: &str = "io.kubernetes.cri.sandbox-cpu-quota";
const ANN_SANDBOX_CPU_SHARES: &str = "io.kubernetes.cri.sandbox-cpu-shares";
const ANN_SANDBOX_MEMORY: &str = "io.kubernetes.cri.sandbox-memory";

/// containerd's default oom_score_adj for the pause container.
const SANDBOX_OOM_SCORE_ADJ: i32 = -998;
/// containerd's cpu shares for the pause container.
const SANDBOX_CPU_SHARES: u64 = 2;

fn sandbox_annotations(id: &str, config: &cri::PodSandboxConfig) -> HashMap<String, String> {
    let meta = config.metadata.clone().unwrap_or_default();
    HashMap::from([
        (ANN_SANDBOX_ID.to_string(), id.to_string()),
        (ANN_SANDBOX_NAME.to_string(), meta.name),
        (ANN_SANDBOX_NAMESPACE.to_string(), meta.namespace),
        (ANN_SANDBOX_UID.to_string(), meta.uid),
    ])
}

// ---------------------------------------------------------------------------------------------
// Namespaces

fn ns_mode(mode: i32) -> cri::NamespaceMode {
    cri::NamespaceMode::try_from(mode).unwrap_or(cri::NamespaceMode::Pod)
}

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path);
    ns
}

/// linux.uidMappings/gidMappings of a user-namespace pod: its one range (the namespace is
/// joined by path, so these describe it rather than make it, as containerd writes them).
fn set_id_mappings(
    linux: &mut oci_spec::runtime::Linux,
    m: &crate::userns::PodMapping,
) -> Result<(), OciError> {
    let range = |host: u32| {
        oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(host)
            .size(m.length)
            .build()
            .map_err(|e| {
                invalid(
                    "linux.security_context.namespace_options.userns_options",
                    e.to_string(),
                )
            })
    };
    linux.set_uid_mappings(Some(vec![range(m.uid_host)?]));
    linux.set_gid_mappings(Some(vec![range(m.gid_host)?]));
    Ok(())
}

/// `/proc/<pid>/ns/<name>`.
fn proc_ns(pid: i32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/{name}"))
}

// ---------------------------------------------------------------------------------------------
// Environment

/// Sets `entry` ("KEY=value") in `env`, replacing an entry with the same key in place (so the
/// order is the order keys first appeared; the last value wins).
fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
    let pos = env
        .iter()
        .position(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key);
    match pos {
        Some(i) => env[i] = entry,
        None => env.push(entry),
    }
}

const DEFAULT_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// True when `p` is absolute and has no `..` components.
fn is_clean_absolute(p: &str) -> bool {
    let path = Path::new(p);
    path.is_absolute() && !path.components().any(|c| c == Component::ParentDir)
}

// ---------------------------------------------------------------------------------------------
// The sandbox

pub(crate) fn sandbox_spec_on(input: &SandboxSpecInput<'_>, host: &Host) -> Result<Spec, OciError> {
    let config = input.config;
    let linux = config.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let nso = sc.namespace_options.clone().unwrap_or_default();
    let host_net = ns_mode(nso.network) == cri::NamespaceMode::Node;
    let host_pid = ns_mode(nso.pid) == cri::NamespaceMode::Node;
    let host_ipc = ns_mode(nso.ipc) == cri::NamespaceMode::Node;
    let image = input.image.config().clone().unwrap_or_default();

    // Process: the pause image's entrypoint and cmd, env and working dir.
    let mut args: Vec<String> = image.entrypoint().clone().unwrap_or_default();
    args.extend(image.cmd().clone().unwrap_or_default());
    if args.is_empty() {
        return Err(invalid(
            "image.config",
            "the sandbox image has no entrypoint or cmd",
        ));
    }
    let mut env = Vec::new();
    for e in image.env().iter().flatten() {
        set_env(&mut env, e.clone());
    }
    let cwd = image
        .working_dir()
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());

    if sc.run_as_group.is_some() && sc.run_as_user.is_none() {
        return Err(invalid(
            "linux.security_context.run_as_group",
            "set without run_as_user",
        ));
    }
    let user_str = match (&sc.run_as_user, &sc.run_as_group) {
        (Some(u), Some(g)) => Some((
            user::id_str(u.value, "linux.security_context.run_as_user")?,
            Some(user::id_str(
                g.value,
                "linux.security_context.run_as_group",
            )?),
        )),
        (Some(u), None) => Some((
            user::id_str(u.value, "linux.security_context.run_as_user")?,
            None,
        )),
        _ => None,
    };
    let resolved = user::resolve(
        input.rootfs,
        user_str.as_ref().map(|(u, g)| (u.as_str(), g.as_deref())),
        "linux.security_context.run_as_user",
    )?;
    let mut gids = vec![resolved.gid];
    for (i, g) in sc.supplemental_groups.iter().enumerate() {
        let g = user::id(
            *g,
            &format!("linux.security_context.supplemental_groups[{i}]"),
        )?;
        if !gids.contains(&g) {
            gids.push(g);
        }
    }
    let oci_user = UserBuilder::default()
        .uid(resolved.uid)
        .gid(resolved.gid)
        .additional_gids(gids)
        .build()
        .map_err(|e| invalid("linux.security_context", e.to_string()))?;

    security::check_apparmor(sc.apparmor.as_ref(), "", "linux.security_context")?;
    #[allow(deprecated)]
    let legacy_seccomp = sc.seccomp_profile_path.clone();
    let caps = defaults::default_caps();
    let seccomp = if sc.privileged {
        None
    } else {
        security::seccomp_profile(
            sc.seccomp.as_ref(),
            &legacy_seccomp,
            "linux.security_context",
            input.seccomp_profile_root,
            &caps,
        )?
    };

    let process = ProcessBuilder::default()
        .terminal(false)
        .user(oci_user)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(security::caps_struct(&caps, &HashSet::new()))
        .no_new_privileges(true)
        .oom_score_adj(host.clamp_oom_score_adj(SANDBOX_OOM_SCORE_ADJ, input.id))
        .build()
        .map_err(|e| invalid("sandbox", e.to_string()))?;
    let mut process = process;
    // No rlimits: the process inherits the runtime's (containerd drops the default spec's).
    process.set_rlimits(None);

    // Namespaces: the pinned netns, new ones unless the pod shares the host's.
    let mut namespaces = Vec::new();
    if !host_pid {
        namespaces.push(namespace(LinuxNamespaceType::Pid, None));
    }
    if !host_ipc {
        namespaces.push(namespace(LinuxNamespaceType::Ipc, None));
    }
    if !host_net {
        namespaces.push(namespace(LinuxNamespaceType::Uts, None));
    }
    namespaces.push(namespace(LinuxNamespaceType::Mount, None));
    if !host_net {
        namespaces.push(namespace(
            LinuxNamespaceType::Network,
            input.netns.map(Path::to_path_buf),
        ));
    }
    let userns = crate::userns::mapping(config).zip(input.userns.map(Path::to_path_buf));
    if let Some((_, path)) = &userns {
        namespaces.insert(0, namespace(LinuxNamespaceType::User, Some(path.clone())));
    }

    // Mounts: the defaults, /dev/shm from the pod's shm (the host's with host IPC), read-only.
    let shm_source = if host_ipc {
        Some(PathBuf::from("/dev/shm"))
    } else {
        input.files.shm.clone()
    };
    let mut mount_list = defaults::default_mounts(false);
    if let Some(src) = shm_source {
        mount_list.retain(|m| m.destination() != Path::new("/dev/shm"));
        mount_list.push(mounts::bind(
            &src,
            "/dev/shm",
            &["rbind", "ro", "nosuid", "nodev", "noexec"],
        ));
    }

    let sysctls = resources::sandbox_sysctls(&linux.sysctls, host_net, host_ipc)?;

    let mut res = LinuxResources::default();
    res.set_devices(Some(defaults::default_device_rules()));
    res.set_cpu(Some(resources::cpu_with_shares(SANDBOX_CPU_SHARES)));

    let mut annotations = sandbox_annotations(input.id, config);
    annotations.insert(ANN_CONTAINER_TYPE.into(), "sandbox".into());
    annotations.insert(ANN_SANDBOX_LOG_DIR.into(), config.log_directory.clone());
    if let Some(r) = &linux.resources {
        for (key, value) in [
            (ANN_SANDBOX_CPU_PERIOD, r.cpu_period),
            (ANN_SANDBOX_CPU_QUOTA, r.cpu_quota),
            (ANN_SANDBOX_CPU_SHARES, r.cpu_shares),
            (ANN_SANDBOX_MEMORY, r.memory_limit_in_bytes),
        ] {
            annotations.insert(key.to_string(), value.to_string());
        }
    }

    let oci_linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&input.cgroups_path))
        .resources(res)
        .masked_paths(defaults::masked_paths())
        .readonly_paths(defaults::readonly_paths())
        .sysctl(sysctls)
        .build()
        .map_err(|e| invalid("linux", e.to_string()))?;
    let mut oci_linux = oci_linux;
    oci_linux.set_seccomp(seccomp);
    if let Some((m, _)) = &userns {
        set_id_mappings(&mut oci_linux, m)?;
    }

    let mut spec = base_spec();
    spec.set_root(Some(root(input.rootfs, true)?));
    spec.set_process(Some(process));
    spec.set_mounts(Some(mount_list));
    if !host_net && !config.hostname.is_empty() {
        spec.set_hostname(Some(config.hostname.clone()));
    }
    spec.set_annotations(Some(annotations));
    spec.set_linux(Some(oci_linux));
    Ok(spec)
}

/// An empty spec of this crate's OCI version, every optional part unset.
fn base_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_version(oci_spec::runtime::VERSION.to_string());
    spec.set_hostname(None);
    spec.set_mounts(None);
    spec.set_annotations(None);
    spec.set_process(None);
    spec.set_linux(None);
    spec.set_root(None);
    spec
}

fn root(path: &Path, readonly: bool) -> Result<oci_spec::runtime::Root, OciError> {
    RootBuilder::default()
        .path(path)
        .readonly(readonly)
        .build()
        .map_err(|e| invalid("rootfs", e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// A container

/// Kubernetes' rules: `command` replaces the image's entrypoint and drops its cmd; `args`
/// replaces the cmd.
fn container_args(
    config: &cri::ContainerConfig,
    image: &oci_spec::image::Config,
) -> Result<Vec<String>, OciError> {
    let mut args = if config.command.is_empty() {
        image.entrypoint().clone().unwrap_or_default()
    } else {
        config.command.clone()
    };
    if !config.args.is_empty() {
        args.extend(config.args.iter().cloned());
    } else if config.command.is_empty() {
        args.extend(image.cmd().clone().unwrap_or_default());
    }
    if args.is_empty() {
        return Err(invalid(
            "command",
            "no command specified: neither the config nor the image has an entrypoint or cmd",
        ));
    }
    Ok(args)
}

pub(crate) fn container_spec_on(
    input: &ContainerSpecInput<'_>,
    host: &Host,
) -> Result<Spec, OciError> {
    let config = input.config;
    let linux = config.linux.clone().unwrap_or_default();
    let sc = linux.security_context.clone().unwrap_or_default();
    let sb_linux = input.sandbox.linux.clone().unwrap_or_default();
    let sb_sc = sb_linux.security_context.clone().unwrap_or_default();
    let sb_ns = sb_sc.namespace_options.clone().unwrap_or_default();
    let c_ns = sc.namespace_options.clone().unwrap_or_default();
    let host_net = ns_mode(sb_ns.network) == cri::NamespaceMode::Node;
    let host_ipc = ns_mode(sb_ns.ipc) == cri::NamespaceMode::Node;
    let image = input.image.config().clone().unwrap_or_default();
    let privileged = sc.privileged;
    if privileged && !sb_sc.privileged {
        return Err(invalid(
            "linux.security_context.privileged",
            "a privileged container needs a privileged sandbox (the sandbox config's \
             linux.security_context.privileged is false)",
        ));
    }

    // Process.
    let args = container_args(config, &image)?;
    let hostname = if input.sandbox.hostname.is_empty() {
        host.hostname.clone()
    } else {
        input.sandbox.hostname.clone()
    };
    let mut env = vec![DEFAULT_PATH_ENV.to_string()];
    set_env(&mut env, format!("HOSTNAME={hostname}"));
    for e in image.env().iter().flatten() {
        set_env(&mut env, e.clone());
    }
    for (i, kv) in config.envs.iter().enumerate() {
        if kv.key.is_empty() || kv.key.contains('=') {
            return Err(invalid(
                format!("envs[{i}].key"),
                format!("{:?} is not a variable name", kv.key),
            ));
        }
        set_env(&mut env, format!("{}={}", kv.key, kv.value));
    }
    let cwd = if !config.working_dir.is_empty() {
        config.working_dir.clone()
    } else {
        image
            .working_dir()
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    };
    if !Path::new(&cwd).is_absolute() {
        return Err(invalid(
            "working_dir",
            format!("{cwd:?} is not an absolute path"),
        ));
    }

    let oci_user = user::container_user(input.rootfs, &sc, image.user().as_deref())?;

    // Capabilities, seccomp, AppArmor.
    #[allow(deprecated)]
    let legacy_apparmor = sc.apparmor_profile.clone();
    #[allow(deprecated)]
    let legacy_seccomp = sc.seccomp_profile_path.clone();
    security::check_apparmor(
        sc.apparmor.as_ref(),
        &legacy_apparmor,
        "linux.security_context",
    )?;
    let (caps, ambient) = if privileged {
        (host.bounding.clone(), HashSet::new())
    } else {
        security::container_caps(sc.capabilities.as_ref(), &host.bounding)?
    };
    let seccomp = if privileged {
        None
    } else {
        security::seccomp_profile(
            sc.seccomp.as_ref(),
            &legacy_seccomp,
            "linux.security_context",
            input.seccomp_profile_root,
            &caps,
        )?
    };

    let mut process = ProcessBuilder::default()
        .terminal(config.tty)
        .user(oci_user)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(security::caps_struct(&caps, &ambient))
        .no_new_privileges(sc.no_new_privs)
        .build()
        .map_err(|e| invalid("config", e.to_string()))?;
    process.set_rlimits(None);
    if let Some(r) = &linux.resources {
        let adj = i32::try_from(r.oom_score_adj)
            .ok()
            .filter(|a| (-1000..=1000).contains(a))
            .ok_or_else(|| {
                invalid(
                    "linux.resources.oom_score_adj",
                    format!("{} is outside -1000..=1000", r.oom_score_adj),
                )
            })?;
        process.set_oom_score_adj(Some(host.clamp_oom_score_adj(adj, input.id)));
    }

    // Namespaces: the pause's NET, IPC and UTS, PID as the config says, an own mount ns.
    let pid_ns = match ns_mode(c_ns.pid) {
        cri::NamespaceMode::Node => None,
        cri::NamespaceMode::Container => Some(namespace(LinuxNamespaceType::Pid, None)),
        cri::NamespaceMode::Pod => {
            if ns_mode(sb_ns.pid) == cri::NamespaceMode::Node {
                None
            } else {
                Some(namespace(
                    LinuxNamespaceType::Pid,
                    Some(proc_ns(input.sandbox_pid, "pid")),
                ))
            }
        }
        cri::NamespaceMode::Target => {
            let pid = input.target_pid.ok_or_else(|| {
                invalid(
                    "linux.security_context.namespace_options.target_id",
                    format!(
                        "PID namespace mode TARGET names container {:?}, which is not running",
                        c_ns.target_id
                    ),
                )
            })?;
            Some(namespace(
                LinuxNamespaceType::Pid,
                Some(proc_ns(pid, "pid")),
            ))
        }
    };
    let mut namespaces = Vec::new();
    namespaces.extend(pid_ns);
    if !host_ipc {
        namespaces.push(namespace(
            LinuxNamespaceType::Ipc,
            Some(proc_ns(input.sandbox_pid, "ipc")),
        ));
    }
    if !host_net {
        namespaces.push(namespace(
            LinuxNamespaceType::Uts,
            Some(proc_ns(input.sandbox_pid, "uts")),
        ));
    }
    namespaces.push(namespace(LinuxNamespaceType::Mount, None));
    if !host_net {
        namespaces.push(namespace(
            LinuxNamespaceType::Network,
            Some(proc_ns(input.sandbox_pid, "net")),
        ));
    }
    // A user-namespace pod's containers join the pause container's user namespace.
    let userns = crate::userns::mapping(input.sandbox);
    if userns.is_some() {
        namespaces.insert(
            0,
            namespace(
                LinuxNamespaceType::User,
                Some(proc_ns(input.sandbox_pid, "user")),
            ),
        );
    }

    // Mounts and devices.
    let mounted = mounts::container_mounts(config, input.files, host_ipc, privileged)?;
    let (mut devices, mut device_rules) = if privileged {
        let all = match &host.devices {
            Some(d) => d.clone(),
            None => devices::host_devices()?,
        };
        (all, vec![defaults::allow_all_devices()])
    } else {
        (Vec::new(), defaults::default_device_rules())
    };
    devices::add_cri_devices(&config.devices, &mut devices, &mut device_rules, privileged)?;

    // Resources.
    let mut res = match &linux.resources {
        Some(r) => resources::container_resources(r)?,
        None => LinuxResources::default(),
    };
    res.set_devices(Some(device_rules));

    let (masked, readonly) = if privileged {
        (Vec::new(), Vec::new())
    } else {
        (sc.masked_paths.clone(), sc.readonly_paths.clone())
    };

    let mut oci_linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&input.cgroups_path))
        .resources(res)
        .masked_paths(masked)
        .readonly_paths(readonly)
        .build()
        .map_err(|e| invalid("linux", e.to_string()))?;
    oci_linux.set_devices((!devices.is_empty()).then_some(devices));
    oci_linux.set_seccomp(seccomp);
    if let Some(m) = &userns {
        set_id_mappings(&mut oci_linux, m)?;
    }
    oci_linux.set_rootfs_propagation(mounted.rootfs_propagation);

    // Annotations: the config's, then ours (which a config cannot override).
    let mut annotations: HashMap<String, String> = config
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.extend(sandbox_annotations(input.sandbox_id, input.sandbox));
    let meta = config.metadata.clone().unwrap_or_default();
    let image_spec = config.image.clone().unwrap_or_default();
    let image_name = if image_spec.user_specified_image.is_empty() {
        image_spec.image
    } else {
        image_spec.user_specified_image
    };
    annotations.insert(ANN_CONTAINER_TYPE.into(), "container".into());
    annotations.insert(ANN_CONTAINER_NAME.into(), meta.name);
    annotations.insert(ANN_IMAGE_NAME.into(), image_name);

    let mut spec = base_spec();
    spec.set_root(Some(root(input.rootfs, sc.readonly_rootfs)?));
    spec.set_process(Some(process));
    spec.set_mounts(Some(mounted.mounts));
    spec.set_annotations(Some(annotations));
    spec.set_linux(Some(oci_linux));
    Ok(spec)
}

/// The spec as pretty JSON with every object's keys sorted and every capability set sorted:
/// the same spec always renders the same text (golden files, diffs in logs).
pub fn canonical_json(spec: &Spec) -> String {
    fn sort(v: serde_json::Value, in_caps: bool) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let sorted: BTreeMap<String, serde_json::Value> = m
                    .into_iter()
                    .map(|(k, v)| {
                        let caps = k == "capabilities";
                        (k, sort(v, in_caps || caps))
                    })
                    .collect();
                serde_json::Value::Object(sorted.into_iter().collect())
            }
            serde_json::Value::Array(a) => {
                let mut a: Vec<_> = a.into_iter().map(|v| sort(v, in_caps)).collect();
                if in_caps {
                    a.sort_by_key(|v| v.as_str().map(str::to_string));
                }
                serde_json::Value::Array(a)
            }
            other => other,
        }
    }
    let value = serde_json::to_value(spec).unwrap_or(serde_json::Value::Null);
    let mut s = serde_json::to_string_pretty(&sort(value, false)).unwrap_or_default();
    s.push('\n');
    s
}
