//! The node: registration (capacity, allocatable, addresses, nodeInfo), its status every
//! nodeStatusUpdateFrequency (Ready from the runtime's CRI Status; Memory/Disk/PID pressure from
//! the eviction thresholds), and its Lease in kube-node-lease renewed every 10 s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;

use crate::eviction::Threshold;
use crate::pods::Shared;

/// Facts of the machine the node reports.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpus: u64,
    pub memory: u64,
    pub storage: u64,
    pub machine_id: String,
    pub boot_id: String,
    pub kernel: String,
    pub os_image: String,
}

impl Machine {
    pub fn read(root_dir: &std::path::Path) -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let storage = nix::sys::statvfs::statvfs(root_dir)
            .map(|s| s.blocks() * s.fragment_size())
            .unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            memory: meminfo("MemTotal").unwrap_or(0),
            storage,
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().to_string())
                .unwrap_or_default(),
            os_image,
        }
    }
}

/// A /proc/meminfo field in bytes.
pub fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

fn q(v: impl ToString) -> Quantity {
    Quantity(v.to_string())
}

fn reserved(map: &BTreeMap<String, String>, key: &str) -> u64 {
    map.get(key)
        .and_then(|v| {
            if key == "cpu" {
                crate::quantity::parse(v).map(|x| (x * 1000.0) as u64)
            } else {
                crate::quantity::parse_bytes(v)
            }
        })
        .unwrap_or(0)
}

pub fn capacity(
    s: &Shared,
    m: &Machine,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let cap: BTreeMap<String, Quantity> = [
        ("cpu", q(m.cpus)),
        ("memory", q(format!("{}Ki", m.memory / 1024))),
        ("pods", q(s.cfg.max_pods)),
        ("ephemeral-storage", q(format!("{}Ki", m.storage / 1024))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // Allocatable = capacity - kubeReserved - systemReserved - the hard eviction threshold.
    let res = |k: &str| reserved(&s.cfg.kube_reserved, k) + reserved(&s.cfg.system_reserved, k);
    let evict_mem = s
        .cfg
        .eviction_hard
        .get("memory.available")
        .and_then(|v| Threshold::parse("memory.available", v).ok())
        .map_or(0, |t| t.min_available(m.memory));
    let cpu_m = (m.cpus * 1000).saturating_sub(res("cpu"));
    let mem = m.memory.saturating_sub(res("memory") + evict_mem);
    let alloc: BTreeMap<String, Quantity> = [
        ("cpu", q(format!("{cpu_m}m"))),
        ("memory", q(format!("{}Ki", mem / 1024))),
        ("pods", q(s.cfg.max_pods)),
        (
            "ephemeral-storage",
            q(format!(
                "{}Ki",
                m.storage.saturating_sub(res("ephemeral-storage")) / 1024
            )),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    (cap, alloc)
}

/// Registers the node (create, or adopt the existing object as kubelet does).
pub async fn register(s: &Arc<Shared>, m: &Machine) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(s.client.clone());
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", s.cfg.node_name.clone()),
        ("kubernetes.io/os", "linux".into()),
        ("kubernetes.io/arch", "amd64".into()),
        ("beta.kubernetes.io/os", "linux".into()),
        ("beta.kubernetes.io/arch", "amd64".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    labels.extend(s.cfg.node_labels.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(s.cfg.node_name.clone()),
            labels: Some(labels.clone()),
            annotations: Some(
                [("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string())].into(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: s.cfg.pod_cidr.clone(),
            pod_cidrs: s.cfg.pod_cidr.clone().map(|c| vec![c]),
            taints: (!s.cfg.register_with_taints.is_empty())
                .then(|| s.cfg.register_with_taints.clone()),
            ..Default::default()
        }),
        status: Some(status(s, m, None).await),
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {
            s.events.node(
                &s.cfg.node_name,
                false,
                "RegisteredNode",
                format!(
                    "Node {} event: Registered Node {} in Controller",
                    s.cfg.node_name, s.cfg.node_name
                ),
            );
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = serde_json::json!({"metadata": {"labels": labels}});
            api.patch(
                &s.cfg.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn cond(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    old: Option<&NodeStatus>,
) -> NodeCondition {
    let status = if ok { "True" } else { "False" };
    let now = Time(chrono::Utc::now());
    let transition = old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now),
        last_transition_time: Some(transition),
    }
}

/// The pressure conditions the eviction manager decided (memory, disk, pid).
pub fn pressure(s: &Shared) -> (bool, bool, bool) {
    let p = *s.pressure.read().expect("pressure");
    (p.memory, p.disk, p.pid)
}

/// kubelet's maxWaitForContainerRuntime.
const RUNTIME_DOWN_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// The runtime's last answered CRI Status.
#[derive(Debug, Clone)]
pub struct RuntimeStatus {
    pub at: std::time::Instant,
    pub runtime_ok: bool,
    pub net_ok: bool,
    pub why: String,
}

pub async fn status(s: &Shared, m: &Machine, old: Option<&NodeStatus>) -> NodeStatus {
    let (capacity, allocatable) = capacity(s, m);
    let mut cri = s.cri.clone();
    let (runtime_ok, net_ok, why) = match cri
        .runtime
        .status(cri::StatusRequest { verbose: false })
        .await
    {
        Ok(r) => {
            let conds = r
                .into_inner()
                .status
                .map(|st| st.conditions)
                .unwrap_or_default();
            let get = |t: &str| conds.iter().find(|c| c.r#type == t);
            let rt = get("RuntimeReady");
            let net = get("NetworkReady");
            let why = [rt, net]
                .iter()
                .flatten()
                .filter(|c| !c.status)
                .map(|c| format!("{}: {} {}", c.r#type, c.reason, c.message))
                .collect::<Vec<_>>()
                .join("; ");
            let seen = (
                rt.is_some_and(|c| c.status),
                net.is_some_and(|c| c.status),
                why,
            );
            *s.last_runtime_status.lock().expect("runtime status") = Some(RuntimeStatus {
                at: std::time::Instant::now(),
                runtime_ok: seen.0,
                net_ok: seen.1,
                why: seen.2.clone(),
            });
            seen
        }
        // kubelet's updateRuntimeUp keeps its last state when Status fails, and its runtime
        // state reports "container runtime is down" only once the last good sync is older
        // than maxWaitForContainerRuntime (30 s): a runtime restarting (a crash, an upgrade)
        // does not flip the node NotReady and so does not taint it NoExecute.
        Err(e) => match s
            .last_runtime_status
            .lock()
            .expect("runtime status")
            .as_ref()
        {
            Some(last) if last.at.elapsed() < RUNTIME_DOWN_AFTER => {
                (last.runtime_ok, last.net_ok, last.why.clone())
            }
            _ => (
                false,
                false,
                format!("container runtime is down: {}", e.message()),
            ),
        },
    };
    let (mem, disk, pid) = pressure(s);
    let ready = runtime_ok && net_ok;
    let version = cri
        .runtime
        .version(cri::VersionRequest {
            version: "v1".into(),
        })
        .await
        .map(|v| {
            let v = v.into_inner();
            format!("{}://{}", v.runtime_name, v.runtime_version)
        })
        .unwrap_or_default();
    let mut addresses = Vec::new();
    for ip in &s.host_ips {
        addresses.push(NodeAddress {
            type_: "InternalIP".into(),
            address: ip.clone(),
        });
    }
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: s.cfg.node_name.clone(),
    });
    let mut images = Vec::new();
    if let Ok(list) = cri
        .images
        .list_images(cri::ListImagesRequest { filter: None })
        .await
    {
        let mut list = list.into_inner().images;
        list.sort_by_key(|i| std::cmp::Reverse(i.size));
        for img in list.into_iter().take(50) {
            let mut names = img.repo_tags.clone();
            names.extend(img.repo_digests.clone());
            images.push(k8s_openapi::api::core::v1::ContainerImage {
                names: Some(names),
                size_bytes: Some(img.size as i64),
            });
        }
    }
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        conditions: Some(vec![
            cond(
                "MemoryPressure",
                mem,
                if mem {
                    "KubeletHasInsufficientMemory"
                } else {
                    "KubeletHasSufficientMemory"
                },
                if mem {
                    "kubelet has insufficient memory available"
                } else {
                    "kubelet has sufficient memory available"
                },
                old,
            ),
            cond(
                "DiskPressure",
                disk,
                if disk {
                    "KubeletHasDiskPressure"
                } else {
                    "KubeletHasNoDiskPressure"
                },
                if disk {
                    "kubelet has disk pressure"
                } else {
                    "kubelet has no disk pressure"
                },
                old,
            ),
            cond(
                "PIDPressure",
                pid,
                if pid {
                    "KubeletHasInsufficientPID"
                } else {
                    "KubeletHasSufficientPID"
                },
                if pid {
                    "kubelet has insufficient PID available"
                } else {
                    "kubelet has sufficient PID available"
                },
                old,
            ),
            cond(
                "Ready",
                ready,
                if ready {
                    "KubeletReady"
                } else {
                    "KubeletNotReady"
                },
                &if ready {
                    "kubelet is posting ready status".to_string()
                } else {
                    format!("container runtime not ready: {why}")
                },
                old,
            ),
        ]),
        addresses: Some(addresses),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: s.cfg.port as i32,
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            boot_id: m.boot_id.clone(),
            container_runtime_version: version,
            kernel_version: m.kernel.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: crate::KUBELET_VERSION.into(),
            machine_id: m.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: m.os_image.clone(),
            system_uuid: m.machine_id.clone(),
        }),
        images: Some(images),
        ..Default::default()
    }
}

/// Writes the node's status every nodeStatusUpdateFrequency, forever.
pub async fn status_loop(s: Arc<Shared>, m: Machine) {
    let api: Api<Node> = Api::all(s.client.clone());
    let mut last: Option<NodeStatus> = None;
    loop {
        let st = status(&s, &m, last.as_ref()).await;
        let body = serde_json::json!({"status": st});
        match api
            .patch_status(
                &s.cfg.node_name,
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await
        {
            Ok(_) => last = Some(st),
            Err(kube::Error::Api(e)) if e.code == 404 => {
                // Someone deleted our Node: register again, as kubelet does.
                if let Err(e) = register(&s, &m).await {
                    tracing::warn!(error = %e, "re-registering the node");
                }
            }
            Err(e) => tracing::warn!(error = %e, "updating node status"),
        }
        tokio::time::sleep(s.cfg.node_status_update_frequency).await;
    }
}

/// Renews the node's Lease every quarter of its duration (10 s for the default 40 s).
pub async fn lease_loop(s: Arc<Shared>) {
    let api: Api<Lease> = Api::namespaced(s.client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(s.client.clone());
    let duration = s.cfg.node_lease_duration_seconds as i32;
    let period = Duration::from_secs((duration as u64 / 4).max(1));
    loop {
        let now = MicroTime(chrono::Utc::now());
        let owner = nodes
            .get_opt(&s.cfg.node_name)
            .await
            .ok()
            .flatten()
            .map(|n| OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: s.cfg.node_name.clone(),
                uid: n.metadata.uid.unwrap_or_default(),
                ..Default::default()
            });
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(s.cfg.node_name.clone()),
                namespace: Some("kube-node-lease".into()),
                owner_references: owner.map(|o| vec![o]),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(s.cfg.node_name.clone()),
                lease_duration_seconds: Some(duration),
                renew_time: Some(now),
                ..Default::default()
            }),
        };
        let r = match api.get_opt(&s.cfg.node_name).await {
            Ok(Some(mut cur)) => {
                cur.spec = lease.spec.clone();
                api.replace(&s.cfg.node_name, &PostParams::default(), &cur)
                    .await
                    .map(|_| ())
            }
            Ok(None) => api.create(&PostParams::default(), &lease).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "renewing the node lease");
        }
        tokio::time::sleep(period).await;
    }
}
