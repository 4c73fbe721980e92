//! The agent's life: [`Agent::start`] takes the lease, sets up the device, writes subnet.env and
//! publishes this node; [`Agent::reconcile`] (run every resync period, and on every Node change
//! in kube mode) makes the kernel's per-peer entries match the lease records: program new or
//! changed nodes, withdraw gone ones. Both subnet sources (the static registry directory and the
//! cluster's Node objects) yield the same [`NodeRecord`]s, so the reconcile is one code path.
//! Everything is derived from the records and the kernel, so restarts need no local state.

use std::{collections::BTreeMap, net::Ipv4Addr};

use ipnet::Ipv4Net;
use rtnetlink::Handle;

use super::{
    config::{AgentConfig, AgentConfigError, SubnetSource},
    kube_source::{KubeSource, KubeSourceError},
    registry::{self, NodeRecord, Peer, RegistryError},
    subnet_env::{SubnetEnv, SubnetEnvError},
    uplink::{self, UplinkError},
    vxlan::{self, Device, VxlanError},
};
use crate::{
    link::{self, LinkError},
    netns::{self, NetnsError},
    sysctl::{self, SysctlError},
};

/// VXLAN over IPv4 adds 50 bytes (outer Ethernet 14 + IP 20 + UDP 8 + VXLAN 8).
pub const VXLAN_OVERHEAD: u32 = 50;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] AgentConfigError),
    #[error(transparent)]
    Kube(#[from] KubeSourceError),
    #[error(transparent)]
    Uplink(#[from] UplinkError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Vxlan(#[from] VxlanError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("subnet file: {0}")]
    SubnetEnv(#[from] SubnetEnvError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
}

/// Where the lease records come from.
#[derive(Debug)]
enum Leases {
    Static(std::path::PathBuf),
    Kube(Box<KubeSource>),
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    pub cfg: AgentConfig,
    pub subnet: Ipv4Net,
    pub public_ip: Ipv4Addr,
    pub device: Device,
    /// This node's record, as published.
    pub record: NodeRecord,
    leases: Leases,
    h: Handle,
    /// Rejections logged last round: each is logged once, not every resync.
    last_rejected: std::sync::Mutex<Vec<String>>,
}

/// What one reconcile did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub peers: Vec<String>,
    pub withdrawn: Vec<Ipv4Net>,
    pub rejected: Vec<String>,
    /// Kernel operations that failed this round (one peer each, or the neighbour/FDB sweep):
    /// the round carried on past them; the next one retries.
    pub failed: Vec<String>,
}

impl Agent {
    /// Takes the lease, sets up the device and publishes this node. Must run in a tokio runtime.
    pub async fn start(cfg: AgentConfig) -> Result<Self, AgentError> {
        cfg.validate()?;
        let source = cfg
            .subnet_source
            .as_ref()
            .ok_or_else(|| AgentConfigError::Invalid("subnetSource is missing".into()))?;
        let (subnet, mut leases) = match source {
            SubnetSource::Static {
                subnet,
                registry_dir,
            } => (subnet.trunc(), Leases::Static(registry_dir.clone())),
            SubnetSource::Kubernetes { kubeconfig } => {
                let src = KubeSource::connect(kubeconfig.as_deref(), &cfg.node_name).await?;
                let subnet = src.wait_for_pod_cidr(cfg.network).await?;
                src.check_can_publish().await?;
                (subnet, Leases::Kube(Box::new(src)))
            }
        };
        let h = netns::netlink_here()?;
        let uplink = uplink::resolve(&h, cfg.iface.as_deref(), cfg.public_ip).await?;
        tracing::info!(uplink = %uplink.name, public_ip = %uplink.public_ip, "overlay uplink");
        let public_ip = uplink.public_ip;
        let uplink = uplink.link;
        let mtu = link::mtu_of(&uplink).unwrap_or(1500) - VXLAN_OVERHEAD;
        let device = vxlan::ensure_device(
            &h,
            &cfg.vxlan,
            uplink.header.index,
            public_ip,
            mtu,
            subnet.network(),
        )
        .await?;
        // The node routes between its bridge and the overlay.
        sysctl::ensure("net.ipv4.ip_forward", "1")?;
        // Bridged pod traffic must pass netfilter (Kubernetes Services, policies): pea-cni turns
        // bridge-nf-call-iptables on, which needs the module.
        sysctl::load_br_netfilter();
        let gateway = Ipv4Net::new(
            Ipv4Addr::from(u32::from(subnet.network()) + 1),
            subnet.prefix_len(),
        )
        .expect("prefix of a valid net");
        SubnetEnv {
            network: cfg.network,
            subnet: gateway,
            mtu,
            ipmasq: cfg.ip_masq,
        }
        .write(&cfg.subnet_file)?;
        let record = NodeRecord::new(
            &cfg.node_name,
            subnet,
            public_ip,
            cfg.vxlan.vni,
            &device.mac,
        );
        match &mut leases {
            Leases::Static(dir) => registry::publish(dir, &record)?,
            Leases::Kube(src) => {
                src.publish_retrying(&record).await?;
                src.start_watch().await?;
            }
        }
        tracing::info!(node = %cfg.node_name, %subnet, %public_ip, vtep = %device.mac, mtu, "agent started");
        Ok(Agent {
            cfg,
            subnet,
            public_ip,
            device,
            record,
            leases,
            h,
            last_rejected: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Resolves when the lease records may have changed (a Node event in kube mode; the static
    /// registry has no change signal and is re-read every resync period).
    pub async fn changed(&self) {
        match &self.leases {
            Leases::Static(_) => std::future::pending().await,
            Leases::Kube(src) => src.changed().await,
        }
    }

    /// Makes the per-peer kernel state match the lease records.
    pub async fn reconcile(&self) -> Result<Report, AgentError> {
        let mut report = Report::default();
        let records = match &self.leases {
            Leases::Static(dir) => {
                let (records, bad) = registry::read_all(dir)?;
                report.rejected.extend(bad.iter().map(ToString::to_string));
                records
            }
            Leases::Kube(src) => {
                let (records, bad) = src.read_all(&self.record).await;
                report.rejected.extend(bad);
                records
            }
        };
        let mut want: BTreeMap<Ipv4Net, Peer> = BTreeMap::new();
        for rec in records.iter().filter(|r| r.name != self.cfg.node_name) {
            let peer = match rec.peer() {
                Ok(p) => p,
                Err(why) => {
                    report.rejected.push(format!("node {}: {why}", rec.name));
                    continue;
                }
            };
            let problem = if !self.cfg.network.contains(&peer.subnet) {
                Some(format!(
                    "subnet {} is outside network {}",
                    peer.subnet, self.cfg.network
                ))
            } else if peer.subnet.contains(&self.subnet) || self.subnet.contains(&peer.subnet) {
                Some(format!(
                    "subnet {} overlaps this node's {}",
                    peer.subnet, self.subnet
                ))
            } else if peer.vni != self.cfg.vxlan.vni {
                Some(format!(
                    "VNI {} differs from ours ({})",
                    peer.vni, self.cfg.vxlan.vni
                ))
            } else {
                None
            };
            if let Some(why) = problem {
                report.rejected.push(format!("node {}: {why}", rec.name));
                continue;
            }
            want.insert(peer.subnet, peer);
        }
        // Two nodes claiming one subnet: route to neither (sending pods' traffic to the wrong VTEP
        // is worse than no route) until the conflict is gone.
        let mut claims: BTreeMap<Ipv4Net, usize> = BTreeMap::new();
        for rec in records.iter().filter(|r| r.name != self.cfg.node_name) {
            *claims.entry(rec.pod_cidr.trunc()).or_default() += 1;
        }
        want.retain(|subnet, p| {
            let n = claims.get(subnet).copied().unwrap_or(0);
            if n > 1 {
                report.rejected.push(format!(
                    "node {}: subnet {subnet} is claimed by {n} nodes",
                    p.name
                ));
            }
            n <= 1
        });
        // One peer that cannot be programmed (or withdrawn) must not cut the others off: each
        // failure is recorded and the round goes on.
        let programmed = vxlan::programmed(&self.h, &self.device, self.cfg.network).await?;
        for p in want.values() {
            if let Err(e) = vxlan::program_peer(&self.h, &self.device, p).await {
                report.failed.push(format!("node {}: {e}", p.name));
                continue;
            }
            if !programmed.iter().any(|(subnet, _)| *subnet == p.subnet) {
                tracing::info!(node = %p.name, subnet = %p.subnet, public_ip = %p.public_ip, "routed a node");
            }
            report.peers.push(p.name.clone());
        }
        for (subnet, _) in programmed {
            if !want.contains_key(&subnet) {
                if let Err(e) = vxlan::withdraw(&self.h, &self.device, subnet).await {
                    report.failed.push(format!("withdrawing {subnet}: {e}"));
                    continue;
                }
                tracing::info!(%subnet, "withdrew routes of a node that left");
                report.withdrawn.push(subnet);
            }
        }
        // Neighbour and FDB entries are reconciled as whole sets against the wanted peers, so an
        // entry of a peer whose VTEP MAC or public IP changed, or of a peer that is gone, goes.
        let wanted: Vec<&Peer> = want.values().collect();
        match vxlan::sweep_stale(&self.h, &self.device, &wanted).await {
            Ok(swept) => report.failed.extend(swept),
            Err(e) => report
                .failed
                .push(format!("sweeping neighbour/fdb entries: {e}")),
        }
        for f in &report.failed {
            tracing::error!("reconcile: {f}");
        }
        let mut last = self.last_rejected.lock().unwrap_or_else(|p| p.into_inner());
        for r in report.rejected.iter().filter(|r| !last.contains(r)) {
            tracing::warn!("{r}");
        }
        last.clone_from(&report.rejected);
        Ok(report)
    }
}
