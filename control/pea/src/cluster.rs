//! Names, addresses and paths of one cluster, derived from its name alone so `down` and `status`
//! find everything `up` made.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The underlay: a bridge in the cluster namespace; node i is UNDERLAY.(10+i).
pub const UNDERLAY: &str = "172.30.0";
pub const BRIDGE: &str = "under0";
pub const API_PORT: u16 = 6443;
pub const REGISTRY_PORT: u16 = 5000;
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
pub const CLUSTER_DNS: &str = "10.96.0.10";
pub const MAX_NODES: usize = 20;

pub struct Cluster {
    pub name: String,
    pub nodes: usize,
    /// Where the pea binaries are (beside this one, or $PEA_BIN_DIR).
    pub bin: PathBuf,
}

impl Cluster {
    pub fn new(name: &str, nodes: usize) -> Result<Self> {
        check_name(name)?;
        if nodes == 0 || nodes > MAX_NODES {
            bail!("--nodes {nodes}: must be between 1 and {MAX_NODES}");
        }
        Ok(Self {
            name: name.into(),
            nodes,
            bin: bin_dir()?,
        })
    }

    /// A cluster as `up` left it: the node count is whatever node namespaces or state dirs exist.
    pub fn existing(name: &str) -> Result<Self> {
        check_name(name)?;
        let mut c = Self {
            name: name.into(),
            nodes: 0,
            bin: bin_dir()?,
        };
        c.nodes = (0..MAX_NODES)
            .rev()
            .find(|&i| Path::new(&c.netns_file(Some(i))).exists() || c.node_dir(i).exists())
            .map_or(0, |i| i + 1);
        Ok(c)
    }

    pub fn node_name(&self, i: usize) -> String {
        format!("{}-{i}", self.name)
    }
    /// `None`: the cluster namespace (underlay bridge, registry); `Some(i)`: node i.
    pub fn netns(&self, node: Option<usize>) -> String {
        match node {
            None => format!("pea-{}", self.name),
            Some(i) => format!("pea-{}-{i}", self.name),
        }
    }
    pub fn netns_file(&self, node: Option<usize>) -> PathBuf {
        PathBuf::from("/run/netns").join(self.netns(node))
    }
    pub fn node_ip(&self, i: usize) -> String {
        format!("{UNDERLAY}.{}", 10 + i)
    }
    pub fn bridge_ip(&self) -> String {
        format!("{UNDERLAY}.1")
    }
    pub fn registry(&self) -> String {
        format!("{}:{REGISTRY_PORT}", self.bridge_ip())
    }
    pub fn api_url(&self) -> String {
        format!("https://{}:{API_PORT}", self.node_ip(0))
    }
    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from("/var/lib/pea/clusters").join(&self.name)
    }
    pub fn run_dir(&self) -> PathBuf {
        PathBuf::from("/run/pea").join(&self.name)
    }
    /// Node i's UTS namespace (a bind mount of nsfs; its hostname is the node's name).
    pub fn uts_file(&self, i: usize) -> PathBuf {
        self.run_dir().join(format!("{}.uts", self.node_name(i)))
    }
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.state_dir().join(self.node_name(i))
    }
    /// The pods' cgroup parent of node i (kubelet cgroupRoot), in every hierarchy.
    pub fn cgroup_root(&self, i: usize) -> String {
        format!("pea-{}-{i}", self.name)
    }
    pub fn control_dir(&self) -> PathBuf {
        self.state_dir().join("control")
    }
    /// The admin kubeconfig for the host: the API through the loopback forwarder.
    pub fn host_kubeconfig(&self) -> PathBuf {
        self.state_dir().join("admin.kubeconfig")
    }
    pub fn pid_file(&self, what: &str) -> PathBuf {
        self.run_dir().join(format!("{what}.pid"))
    }
    pub fn log_file(&self, what: &str) -> PathBuf {
        self.state_dir().join("logs").join(format!("{what}.log"))
    }
    pub fn shim_socket(&self, i: usize) -> PathBuf {
        self.run_dir().join(self.node_name(i)).join("cri.sock")
    }
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }
    /// The processes `up` starts, by pid-file name.
    pub fn services(&self) -> Vec<String> {
        let mut v = vec![
            crate::supervise::SERVICE.to_string(),
            "registry".into(),
            "control".into(),
            "forward".into(),
        ];
        if crate::etcd::used(self) {
            v.extend(crate::etcd::MEMBERS.iter().map(|(m, _, _)| m.to_string()));
        }
        for i in 0..self.nodes {
            v.push(format!("{}-agent", self.node_name(i)));
        }
        v
    }
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 10
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok {
        bail!("cluster name {name:?}: must be 1-10 lowercase letters and digits, starting with a letter");
    }
    Ok(())
}

fn bin_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("PEA_BIN_DIR") {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe().context("finding the pea binary's directory")?;
    Ok(exe
        .parent()
        .context("pea binary has no directory")?
        .to_path_buf())
}
