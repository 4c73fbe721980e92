//! `update`: apply new cgroup resources (`--resources -` JSON, then individual flags on top).

use std::io::Read;

use libcgroups::common::{CgroupManager, ControllerOpt};
use libcontainer::container::ContainerStatus;
use oci_spec::runtime::{LinuxPids, LinuxResources};

use crate::cli::{Global, UpdateArgs};
use crate::container::Handle;
use crate::error::{Result, RuntimeError};

pub fn run(g: &Global, a: UpdateArgs) -> Result<i32> {
    let h = Handle::load(&g.root, &a.id)?;
    h.require(
        "update",
        &[
            ContainerStatus::Created,
            ContainerStatus::Running,
            ContainerStatus::Paused,
        ],
    )?;
    let mut res: LinuxResources = match &a.resources {
        None => LinuxResources::default(),
        Some(p) => {
            let mut text = String::new();
            if p.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(RuntimeError::io("<stdin>"))?;
            } else {
                text = std::fs::read_to_string(p).map_err(RuntimeError::io(p))?;
            }
            serde_json::from_str(&text).map_err(|e| {
                RuntimeError::Usage(format!("--resources: invalid LinuxResources JSON: {e}"))
            })?
        }
    };
    if a.memory.is_some() || a.memory_swap.is_some() || a.memory_reservation.is_some() {
        let mut m = res.memory().unwrap_or_default();
        if let Some(v) = a.memory {
            m.set_limit(Some(v));
        }
        if let Some(v) = a.memory_swap {
            m.set_swap(Some(v));
        }
        if let Some(v) = a.memory_reservation {
            m.set_reservation(Some(v));
        }
        res.set_memory(Some(m));
    }
    if a.cpu_shares.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_period.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
    {
        let mut c = res.cpu().clone().unwrap_or_default();
        if let Some(v) = a.cpu_shares {
            c.set_shares(Some(v));
        }
        if let Some(v) = a.cpu_quota {
            c.set_quota(Some(v));
        }
        if let Some(v) = a.cpu_period {
            c.set_period(Some(v));
        }
        if let Some(v) = &a.cpuset_cpus {
            c.set_cpus(Some(v.clone()));
        }
        if let Some(v) = &a.cpuset_mems {
            c.set_mems(Some(v.clone()));
        }
        res.set_cpu(Some(c));
    }
    if let Some(v) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(v);
        res.set_pids(Some(p));
    }
    if res
        .hugepage_limits()
        .as_ref()
        .is_some_and(|h| !h.is_empty())
        && !std::path::Path::new("/sys/fs/cgroup/hugetlb").exists()
        && !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        return Err(RuntimeError::Usage(
            "hugepageLimits: this host has no cgroup v1 hugetlb controller".into(),
        ));
    }
    let cm = h.cgroup_manager()?;
    cm.apply(&ControllerOpt {
        resources: &res,
        disable_oom_killer: false,
        oom_score_adj: None,
        freezer_state: None,
    })
    .map_err(|e| h.cgroup_err(format!("applying resources: {e}")))?;
    Ok(0)
}
