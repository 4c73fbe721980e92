//! The node's pod cgroups, as kubelet's cgroupfs driver lays them out: `<cgroupRoot>/kubepods`
//! holds Guaranteed pods, `kubepods/burstable` and `kubepods/besteffort` the others, and each
//! pod gets `pod<uid>` with its pod-level cpu and memory limits. The runtime puts containers
//! under the pod's cgroup (CRI's cgroup_parent). Works on cgroup v1 (this host: hybrid) and v2.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use libcgroups::common::{CgroupManager, CgroupSetup, ControllerOpt};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
};

use crate::podconfig::qos::{self, Qos};
use crate::quantity;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {message}")]
    Cgroup { path: String, message: String },
}

fn err(path: &str, e: impl std::fmt::Display) -> CgroupError {
    CgroupError::Cgroup {
        path: path.to_string(),
        message: e.to_string(),
    }
}

/// Where the QoS cgroups are (cgroupfs paths, relative to each hierarchy's root).
#[derive(Debug, Clone)]
pub struct Layout {
    pub kubepods: String,
    pub enabled: bool,
}

impl Layout {
    pub fn new(cgroup_root: &str, per_qos: bool) -> Self {
        let root = cgroup_root.trim_end_matches('/');
        Self {
            kubepods: format!("{root}/kubepods"),
            enabled: per_qos,
        }
    }

    /// The pod's cgroup (its CRI cgroup_parent).
    pub fn pod_cgroup(&self, pod: &Pod) -> String {
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        match qos::of(pod) {
            Qos::Guaranteed => format!("{}/pod{uid}", self.kubepods),
            Qos::Burstable => format!("{}/burstable/pod{uid}", self.kubepods),
            Qos::BestEffort => format!("{}/besteffort/pod{uid}", self.kubepods),
        }
    }

    /// Creates kubepods and its QoS children (idempotent).
    pub fn ensure_qos(&self) -> Result<(), CgroupError> {
        if !self.enabled {
            return Ok(());
        }
        for p in [
            self.kubepods.clone(),
            format!("{}/burstable", self.kubepods),
            format!("{}/besteffort", self.kubepods),
        ] {
            create(&p)?;
        }
        // BestEffort pods get the least CPU under contention (kubelet: shares 2).
        apply(
            &format!("{}/besteffort", self.kubepods),
            Some(2),
            None,
            None,
            None,
        )?;
        Ok(())
    }

    /// Creates the pod's cgroup with its pod-level limits; returns its path.
    pub fn ensure_pod(&self, pod: &Pod) -> Result<String, CgroupError> {
        let path = self.pod_cgroup(pod);
        if !self.enabled {
            return Ok(path);
        }
        self.ensure_qos()?;
        create(&path)?;
        let (shares, quota, memory) = pod_limits(pod);
        apply(&path, Some(shares), quota, memory, None)?;
        Ok(path)
    }

    /// Removes the pod's cgroup (after its containers are gone; the runtime removed theirs).
    pub fn remove_pod(&self, pod: &Pod) -> Result<(), CgroupError> {
        if !self.enabled {
            return Ok(());
        }
        remove(&self.pod_cgroup(pod))
    }

    /// Removes the cgroup of pod `uid` whatever its QoS class was (an orphan's: no Pod object).
    pub fn remove_pod_uid(&self, uid: &str) -> Result<(), CgroupError> {
        if !self.enabled {
            return Ok(());
        }
        for qos in ["", "/burstable", "/besteffort"] {
            let p = format!("{}{qos}/pod{uid}", self.kubepods);
            if exists(&p) {
                remove(&p)?;
            }
        }
        Ok(())
    }

    /// Removes the QoS cgroups when no pod cgroup is left (a kubelet test's cleanup).
    pub fn remove_qos(&self) -> Result<(), CgroupError> {
        for p in [
            format!("{}/burstable", self.kubepods),
            format!("{}/besteffort", self.kubepods),
            self.kubepods.clone(),
        ] {
            remove(&p)?;
        }
        Ok(())
    }
}

/// What the pods' cgroup (kubepods) is limited to: kubelet's node allocatable as its
/// `enforceNodeAllocatableCgroups` computes it for that cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodsLimit {
    pub cpu_shares: u64,
    pub memory: u64,
    pub pids: Option<u64>,
}

/// kubelet's MilliCPUToShares: 1024 shares a core, between 2 and 262144.
pub fn milli_cpu_to_shares(milli: u64) -> u64 {
    (milli * 1024 / 1000).clamp(2, 262_144)
}

/// The kubepods limits for a node of `cpu_millis`, `memory` bytes and `pids` (the kernel's
/// limit), as kubelet: with `enforceNodeAllocatable` naming `pods` (and cgroupsPerQOS),
/// capacity − kubeReserved − systemReserved, never below 0 — the hard eviction threshold is
/// *not* subtracted (that is getNodeAllocatableInternalAbsolute; only the Node's reported
/// allocatable takes it off) — and otherwise the capacity itself, as kubelet still writes the
/// cgroup then so its default cpu shares do not starve the pods.
pub fn pods_limit(
    cpu_millis: u64,
    memory: u64,
    pids: Option<u64>,
    reserved: impl Fn(&str) -> u64,
    enforce_pods: bool,
) -> PodsLimit {
    let less = |cap: u64, key: &str| {
        if enforce_pods {
            cap.saturating_sub(reserved(key))
        } else {
            cap
        }
    };
    PodsLimit {
        cpu_shares: milli_cpu_to_shares(less(cpu_millis, "cpu")),
        memory: less(memory, "memory"),
        pids: pids.map(|p| less(p, "pid")),
    }
}

impl Layout {
    /// Writes `limit` on kubepods (kubelet's enforceNodeAllocatableCgroups). Fails while the
    /// pods already use more memory than the new limit allows (the kernel refuses it);
    /// kubelet then retries every minute until evictions bring the usage down.
    pub fn enforce_pods_limit(&self, limit: PodsLimit) -> Result<(), CgroupError> {
        if !self.enabled {
            return Ok(());
        }
        apply(
            &self.kubepods,
            Some(limit.cpu_shares),
            None,
            Some(i64::try_from(limit.memory).unwrap_or(i64::MAX)),
            limit.pids.map(|p| i64::try_from(p).unwrap_or(i64::MAX)),
        )
    }
}

/// Pod-level cpu shares (from requests), cfs quota (when every container has a cpu limit) and
/// memory limit (when every container has one), as kubelet's `ResourceConfigForPod`.
pub fn pod_limits(pod: &Pod) -> (u64, Option<i64>, Option<i64>) {
    let Some(spec) = pod.spec.as_ref() else {
        return (2, None, None);
    };
    let mut req_cpu = 0u64;
    let mut lim_cpu = Some(0u64);
    let mut lim_mem = Some(0u64);
    for c in &spec.containers {
        let r = c.resources.as_ref();
        let get = |which: Option<
            &std::collections::BTreeMap<
                String,
                k8s_openapi::apimachinery::pkg::api::resource::Quantity,
            >,
        >,
                   k: &str| { which.and_then(|m| m.get(k)).cloned() };
        let lim = r.and_then(|r| r.limits.as_ref());
        let req = r.and_then(|r| r.requests.as_ref());
        let lc = get(lim, "cpu").and_then(|q| quantity::millicores(&q));
        let lm = get(lim, "memory").and_then(|q| quantity::bytes(&q));
        req_cpu += get(req, "cpu")
            .and_then(|q| quantity::millicores(&q))
            .or(lc)
            .unwrap_or(0);
        lim_cpu = lim_cpu.zip(lc).map(|(a, b)| a + b);
        lim_mem = lim_mem.zip(lm).map(|(a, b)| a + b);
    }
    let shares = (req_cpu * 1024 / 1000).max(2);
    let quota = lim_cpu
        .filter(|m| *m > 0)
        .map(|m| (m * 100_000 / 1000).max(1000) as i64);
    (shares, quota, lim_mem.filter(|m| *m > 0).map(|m| m as i64))
}

fn setup() -> Result<CgroupSetup, CgroupError> {
    libcgroups::common::get_cgroup_setup().map_err(|e| err("/", e))
}

fn v1_mounts() -> Vec<PathBuf> {
    use libcgroups::v1::ControllerType as C;
    [
        C::Cpu,
        C::CpuAcct,
        C::CpuSet,
        C::Devices,
        C::Memory,
        C::Pids,
        C::Blkio,
        C::Freezer,
        C::HugeTlb,
    ]
    .iter()
    .filter_map(|c| libcgroups::v1::util::get_subsystem_mount_point(c).ok())
    .collect()
}

fn rel(path: &str) -> &Path {
    Path::new(path.trim_start_matches('/'))
}

fn create(path: &str) -> Result<(), CgroupError> {
    match setup()? {
        CgroupSetup::Unified => {
            let root = Path::new(libcgroups::common::DEFAULT_CGROUP_ROOT);
            // Controllers must be enabled in every ancestor's subtree_control (v2 rule).
            let mut cur = root.to_path_buf();
            for comp in rel(path).components() {
                let _ = std::fs::write(cur.join("cgroup.subtree_control"), "+cpu +memory +pids");
                cur.push(comp);
                if !cur.exists() {
                    std::fs::create_dir(&cur).map_err(|e| err(path, e))?;
                }
            }
        }
        _ => {
            for mount in v1_mounts() {
                let dir = mount.join(rel(path));
                if dir.exists() {
                    continue;
                }
                std::fs::create_dir_all(&dir).map_err(|e| err(path, e))?;
                // cpuset children start empty; a pod cgroup inherits its parent's sets.
                if mount.ends_with("cpuset") {
                    inherit_cpuset(&mount, rel(path)).map_err(|e| err(path, e))?;
                }
            }
        }
    }
    Ok(())
}

fn inherit_cpuset(mount: &Path, path: &Path) -> std::io::Result<()> {
    let mut cur = mount.to_path_buf();
    for comp in path.components() {
        let parent = cur.clone();
        cur.push(comp);
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let mine = std::fs::read_to_string(cur.join(f)).unwrap_or_default();
            if mine.trim().is_empty() {
                let theirs = std::fs::read_to_string(parent.join(f))?;
                std::fs::write(cur.join(f), theirs.trim())?;
            }
        }
    }
    Ok(())
}

fn manager(path: &str) -> Result<libcgroups::common::AnyCgroupManager, CgroupError> {
    Ok(match setup()? {
        CgroupSetup::Unified => libcgroups::v2::manager::Manager::new(
            libcgroups::common::DEFAULT_CGROUP_ROOT.into(),
            rel(path).to_path_buf(),
        )
        .map_err(|e| err(path, e))?
        .any(),
        _ => libcgroups::v1::Manager::new(Path::new(path))
            .map_err(|e| err(path, e))?
            .any(),
    })
}

fn apply(
    path: &str,
    shares: Option<u64>,
    quota: Option<i64>,
    memory: Option<i64>,
    pids: Option<i64>,
) -> Result<(), CgroupError> {
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(s) = shares {
        cpu = cpu.shares(s);
    }
    if let Some(q) = quota {
        cpu = cpu.quota(q).period(100_000u64);
    }
    let mut res = LinuxResourcesBuilder::default().cpu(cpu.build().map_err(|e| err(path, e))?);
    if let Some(m) = memory {
        res = res.memory(
            LinuxMemoryBuilder::default()
                .limit(m)
                .build()
                .map_err(|e| err(path, e))?,
        );
    }
    if let Some(p) = pids {
        res = res.pids(
            LinuxPidsBuilder::default()
                .limit(p)
                .build()
                .map_err(|e| err(path, e))?,
        );
    }
    let res = res.build().map_err(|e| err(path, e))?;
    let opt = ControllerOpt {
        resources: &res,
        freezer_state: None,
        oom_score_adj: None,
        disable_oom_killer: false,
    };
    manager(path)?.apply(&opt).map_err(|e| err(path, e))
}

fn exists(path: &str) -> bool {
    match setup() {
        Ok(CgroupSetup::Unified) => Path::new(libcgroups::common::DEFAULT_CGROUP_ROOT)
            .join(rel(path))
            .exists(),
        _ => v1_mounts().iter().any(|m| m.join(rel(path)).exists()),
    }
}

/// The v1 hierarchies without controllers (`name=systemd`, a hybrid host's cgroup2 at
/// `unified`): runc's cgroupfs driver makes a container's ancestors there too, which the
/// controller-based manager does not know about.
fn controllerless_mounts() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dir, fstype, opts) = (f.get(1)?, f.get(2)?, f.get(3)?);
            let named = *fstype == "cgroup" && opts.split(',').any(|o| o.starts_with("name="));
            (named || *fstype == "cgroup2").then(|| PathBuf::from(dir))
        })
        .collect()
}

fn remove(path: &str) -> Result<(), CgroupError> {
    if !matches!(setup()?, CgroupSetup::Unified) {
        // Empty by now (the runtime removed its containers); a non-empty one (other pods
        // below a QoS cgroup) stays, as rmdir refuses it.
        for m in controllerless_mounts() {
            let _ = std::fs::remove_dir(m.join(rel(path)));
        }
    }
    let m = manager(path)?;
    // A cgroup that still has children (other pods) stays: rmdir fails with EBUSY.
    match m.remove() {
        Ok(()) => Ok(()),
        Err(e) => {
            let msg = e.to_string();
            if msg.contains("Device or resource busy") || msg.contains("EBUSY") {
                Ok(())
            } else {
                Err(err(path, msg))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_limits_sum_containers() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"uid": "u"},
            "spec": {"containers": [
                {"name": "a", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "1", "memory": "64Mi"}}}
            ]}
        }))
        .unwrap();
        let (shares, quota, mem) = pod_limits(&pod);
        assert_eq!(shares, 768);
        assert_eq!(quota, Some(150_000));
        assert_eq!(mem, Some(128 << 20));
        let l = Layout::new("/", true);
        assert_eq!(l.pod_cgroup(&pod), "/kubepods/burstable/podu");
    }

    #[test]
    fn the_pods_cgroup_gets_node_allocatable_without_the_eviction_threshold() {
        let reserved = |k: &str| match k {
            "cpu" => 500,
            "memory" => 1 << 30,
            "pid" => 1000,
            _ => 0,
        };
        let l = pods_limit(4000, 8 << 30, Some(32768), reserved, true);
        assert_eq!(
            l,
            PodsLimit {
                cpu_shares: 3584,
                memory: 7 << 30,
                pids: Some(31768)
            }
        );
        // Without `pods` enforced: the capacity (kubelet still writes the cgroup).
        let l = pods_limit(4000, 8 << 30, None, reserved, false);
        assert_eq!((l.cpu_shares, l.memory, l.pids), (4096, 8 << 30, None));
        // Reserving more than there is: 0, not a wrap (and shares at kubelet's minimum 2).
        let l = pods_limit(100, 1 << 20, None, |_| u64::MAX, true);
        assert_eq!((l.cpu_shares, l.memory), (2, 0));
    }
}
