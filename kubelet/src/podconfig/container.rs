//! Container → ContainerConfig (kubelet's `generateContainerConfig`): command and args with
//! `$(VAR)` expansion, env, volume mounts (plus the pod's /etc/hosts and the termination-message
//! file), resources, security context, labels and the annotations a restarted kubelet reads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};
use sha2::{Digest, Sha256};

use super::{qos, sandbox::seccomp_profile};
use crate::labels;
use crate::quantity;
use crate::volumes::HostVolume;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ContainerConfigError {
    #[error("container {container:?}: volumeMount {mount:?} names no volume of the pod")]
    NoVolume { container: String, mount: String },
    #[error("container {container:?}: volumeMount {mount:?}: subPath {sub_path:?} must be relative without '..'")]
    SubPath {
        container: String,
        mount: String,
        sub_path: String,
    },
    #[error("container {container:?}: volumeMount {mount:?}: {host} is a kernel interface and may only be mounted readOnly")]
    KernelWritable {
        container: String,
        mount: String,
        host: String,
    },
    #[error("container {container:?}: creating {path}: {message}")]
    Io {
        container: String,
        path: String,
        message: String,
    },
}

/// kubelet's default masked and read-only paths (`securitycontext.DefaultMaskedPaths`).
const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A short hash of the container's spec: a changed spec (e.g. a new image) restarts it.
pub fn spec_hash(c: &Container) -> String {
    let json = serde_json::to_vec(c).unwrap_or_default();
    hex::encode(&Sha256::digest(&json)[..4])
}

#[derive(Debug)]
pub struct Input<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub init: bool,
    pub restart_count: u32,
    pub image_ref: &'a str,
    pub env: &'a [(String, String)],
    pub volumes: &'a BTreeMap<String, HostVolume>,
    /// `<root>/pods/<uid>`: etc-hosts and termination-message files live there.
    pub pod_dir: &'a Path,
    pub node_memory: u64,
}

pub fn container_config(i: &Input) -> Result<cri::ContainerConfig, ContainerConfigError> {
    let c = i.container;
    let pod = i.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let io = |path: &Path, e: std::io::Error| ContainerConfigError::Io {
        container: c.name.clone(),
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut mounts = Vec::new();
    let mut mounted_paths = Vec::new();
    for vm in c.volume_mounts.iter().flatten() {
        let Some(hv) = i.volumes.get(&vm.name) else {
            return Err(ContainerConfigError::NoVolume {
                container: c.name.clone(),
                mount: vm.name.clone(),
            });
        };
        let mut host = hv.path.clone();
        if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let sp = Path::new(sub);
            if sp.is_absolute()
                || sp
                    .components()
                    .any(|x| !matches!(x, std::path::Component::Normal(_)))
            {
                return Err(ContainerConfigError::SubPath {
                    container: c.name.clone(),
                    mount: vm.name.clone(),
                    sub_path: sub.into(),
                });
            }
            host = host.join(sp);
            if std::fs::symlink_metadata(&host).is_err() {
                std::fs::create_dir_all(&host).map_err(|e| io(&host, e))?;
            }
            // A symlink placed by the container must not lead the kubelet out of the volume.
            let real = host.canonicalize().map_err(|e| io(&host, e))?;
            let base = hv.path.canonicalize().map_err(|e| io(&hv.path, e))?;
            if !real.starts_with(&base) {
                return Err(ContainerConfigError::SubPath {
                    container: c.name.clone(),
                    mount: vm.name.clone(),
                    sub_path: sub.into(),
                });
            }
        }
        let readonly = hv.read_only || vm.read_only.unwrap_or(false);
        if !readonly && crate::volumes::kernel_interface(&host) {
            return Err(ContainerConfigError::KernelWritable {
                container: c.name.clone(),
                mount: vm.name.clone(),
                host: host.display().to_string(),
            });
        }
        let propagation = match vm.mount_propagation.as_deref() {
            Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional,
            _ => cri::MountPropagation::PropagationPrivate,
        };
        mounted_paths.push(vm.mount_path.clone());
        mounts.push(cri::Mount {
            container_path: vm.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly,
            propagation: propagation as i32,
            ..Default::default()
        });
    }
    if !spec.host_network.unwrap_or(false) && !mounted_paths.iter().any(|p| p == "/etc/hosts") {
        let hosts = i.pod_dir.join("etc-hosts");
        if hosts.exists() {
            mounts.push(cri::Mount {
                container_path: "/etc/hosts".into(),
                host_path: hosts.display().to_string(),
                ..Default::default()
            });
        }
    }
    let term_path = c
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    let term_host = termination_file(i.pod_dir, &c.name, i.restart_count);
    if let Some(parent) = term_host.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    std::fs::write(&term_host, b"").map_err(|e| io(&term_host, e))?;
    mounts.push(cri::Mount {
        container_path: term_path.clone(),
        host_path: term_host.display().to_string(),
        ..Default::default()
    });

    let expand = |v: &String| super::env::expand(v, i.env);
    let mut labels_map: HashMap<String, String> = labels::pod_labels(pod);
    labels_map.insert(labels::CONTAINER_NAME.into(), c.name.clone());
    labels_map.insert(
        labels::CONTAINER_TYPE.into(),
        if i.init { "init" } else { "regular" }.into(),
    );
    let annotations: HashMap<String, String> = [
        (labels::HASH, spec_hash(c)),
        (labels::RESTART_COUNT, i.restart_count.to_string()),
        (labels::TERMINATION_MESSAGE_PATH, term_path),
        (
            labels::TERMINATION_MESSAGE_POLICY,
            c.termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
        ),
        (
            labels::GRACE_PERIOD,
            spec.termination_grace_period_seconds
                .unwrap_or(30)
                .to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    let sc = c.security_context.clone().unwrap_or_default();
    let psc = spec.security_context.clone().unwrap_or_default();
    let privileged = sc.privileged.unwrap_or(false);
    let unmasked = sc.proc_mount.as_deref() == Some("Unmasked");
    let caps = sc.capabilities.clone().unwrap_or_default();
    let seccomp = sc
        .seccomp_profile
        .as_ref()
        .or(psc.seccomp_profile.as_ref())
        .map(seccomp_profile);
    let security_context = cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: caps.add.clone().unwrap_or_default(),
            drop_capabilities: caps.drop.clone().unwrap_or_default(),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(super::sandbox::namespace_options(pod)),
        run_as_user: sc
            .run_as_user
            .or(psc.run_as_user)
            .map(|v| cri::Int64Value { value: v }),
        run_as_group: sc
            .run_as_group
            .or(psc.run_as_group)
            .map(|v| cri::Int64Value { value: v }),
        run_as_username: String::new(),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: psc.supplemental_groups.clone().unwrap_or_default(),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths: if privileged || unmasked {
            Vec::new()
        } else {
            MASKED.iter().map(|s| s.to_string()).collect()
        },
        readonly_paths: if privileged || unmasked {
            Vec::new()
        } else {
            READONLY.iter().map(|s| s.to_string()).collect()
        },
        seccomp,
        ..Default::default()
    };
    Ok(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: i.restart_count,
        }),
        image: Some(cri::ImageSpec {
            image: i.image_ref.to_string(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: c.command.iter().flatten().map(expand).collect(),
        args: c.args.iter().flatten().map(expand).collect(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: i
            .env
            .iter()
            .map(|(k, v)| cri::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        mounts,
        labels: labels_map,
        annotations,
        log_path: format!("{}/{}.log", c.name, i.restart_count),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources(pod, c, i.node_memory)),
            security_context: Some(security_context),
        }),
        ..Default::default()
    })
}

pub fn termination_file(pod_dir: &Path, container: &str, restart: u32) -> PathBuf {
    pod_dir
        .join("containers")
        .join(container)
        .join(format!("termination-{restart}"))
}

/// cpu shares from the request (or limit), cfs quota from the limit, memory limit, and the
/// oom_score_adj of the pod's QoS class (kubelet's `GetContainerOOMScoreAdjust`).
pub fn resources(pod: &Pod, c: &Container, node_memory: u64) -> cri::LinuxContainerResources {
    let r = c.resources.as_ref();
    let lim = r.and_then(|r| r.limits.as_ref());
    let req = r.and_then(|r| r.requests.as_ref());
    let lim_cpu = lim
        .and_then(|m| m.get("cpu"))
        .and_then(quantity::millicores);
    let req_cpu = req
        .and_then(|m| m.get("cpu"))
        .and_then(quantity::millicores)
        .or(lim_cpu);
    let lim_mem = lim.and_then(|m| m.get("memory")).and_then(quantity::bytes);
    let req_mem = req
        .and_then(|m| m.get("memory"))
        .and_then(quantity::bytes)
        .or(lim_mem);
    let oom = match qos::of(pod) {
        qos::Qos::Guaranteed => -997,
        qos::Qos::BestEffort => 1000,
        qos::Qos::Burstable => {
            let req = req_mem.unwrap_or(0) as i64;
            let cap = node_memory.max(1) as i64;
            (1000 - (1000 * req) / cap).clamp(3, 999)
        }
    };
    cri::LinuxContainerResources {
        cpu_shares: req_cpu.map_or(2, |m| (m * 1024 / 1000).max(2)) as i64,
        cpu_period: lim_cpu.map_or(0, |_| 100_000),
        cpu_quota: lim_cpu.map_or(0, |m| (m * 100_000 / 1000).max(1000) as i64),
        memory_limit_in_bytes: lim_mem.unwrap_or(0) as i64,
        oom_score_adj: oom,
        ..Default::default()
    }
}

/// The pod's /etc/hosts (kubelet's `managedHostsFileContent`).
pub fn etc_hosts(pod: &Pod, pod_ips: &[String], cluster_domain: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let hostname = spec.hostname.clone().unwrap_or(name);
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in pod_ips {
        match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => out.push_str(&format!(
                "{ip}\t{hostname}.{sub}.{ns}.svc.{cluster_domain}\t{hostname}\n"
            )),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    for alias in spec.host_aliases.iter().flatten() {
        let names = alias.hostnames.clone().unwrap_or_default().join("\t");
        out.push_str(&format!(
            "\n# Entries added by HostAliases.\n{}\t{names}\n",
            alias.ip
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_translation() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [{
                "name": "c", "image": "busybox",
                "command": ["sh", "-c"], "args": ["echo $(GREETING) $$(GREETING)"],
                "resources": {"limits": {"cpu": "500m", "memory": "32Mi"}},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "cfg", "mountPath": "/cfg", "readOnly": false}],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
            }]}
        }))
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let mut vols = BTreeMap::new();
        vols.insert(
            "data".to_string(),
            HostVolume {
                path: d.path().join("data"),
                read_only: false,
            },
        );
        vols.insert(
            "cfg".to_string(),
            HostVolume {
                path: d.path().join("cfg"),
                read_only: true,
            },
        );
        let env = vec![("GREETING".to_string(), "hi".to_string())];
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let cfg = container_config(&Input {
            pod: &pod,
            container: c,
            init: false,
            restart_count: 2,
            image_ref: "sha256:abc",
            env: &env,
            volumes: &vols,
            pod_dir: d.path(),
            node_memory: 1 << 30,
        })
        .unwrap();
        assert_eq!(cfg.args, ["echo hi $(GREETING)"]);
        assert_eq!(cfg.log_path, "c/2.log");
        assert_eq!(cfg.metadata.as_ref().unwrap().attempt, 2);
        assert!(cfg
            .mounts
            .iter()
            .any(|m| m.container_path == "/cfg" && m.readonly));
        assert!(cfg
            .mounts
            .iter()
            .any(|m| m.container_path == "/dev/termination-log"));
        let l = cfg.linux.as_ref().unwrap();
        let r = l.resources.as_ref().unwrap();
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.cpu_period),
            (512, 50_000, 100_000)
        );
        assert_eq!(r.memory_limit_in_bytes, 32 << 20);
        assert_eq!(r.oom_score_adj, -997);
        let sc = l.security_context.as_ref().unwrap();
        assert!(sc.no_new_privs);
        assert_eq!(sc.capabilities.as_ref().unwrap().drop_capabilities, ["ALL"]);
        assert_eq!(cfg.labels[labels::CONTAINER_NAME], "c");
        assert_eq!(cfg.annotations[labels::RESTART_COUNT], "2");
    }

    #[test]
    fn writable_proc_sys_and_escaping_subpaths_are_refused() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": [{"name": "c", "volumeMounts": [{"name": "sys", "mountPath": "/x"}]}]}
        }))
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let mut vols = BTreeMap::new();
        vols.insert(
            "sys".to_string(),
            HostVolume {
                path: "/proc/sys".into(),
                read_only: false,
            },
        );
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let input = Input {
            pod: &pod,
            container: c,
            init: false,
            restart_count: 0,
            image_ref: "i",
            env: &[],
            volumes: &vols,
            pod_dir: d.path(),
            node_memory: 1,
        };
        assert!(matches!(
            container_config(&input),
            Err(ContainerConfigError::KernelWritable { .. })
        ));
        let mut c2 = c.clone();
        c2.volume_mounts.as_mut().unwrap()[0].sub_path = Some("../../etc".into());
        let mut vols2 = BTreeMap::new();
        vols2.insert(
            "sys".to_string(),
            HostVolume {
                path: d.path().into(),
                read_only: false,
            },
        );
        let input = Input {
            container: &c2,
            volumes: &vols2,
            ..input
        };
        assert!(matches!(
            container_config(&input),
            Err(ContainerConfigError::SubPath { .. })
        ));
    }
}
