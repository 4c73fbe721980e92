//! linux.resources from CRI LinuxContainerResources (containerd's WithResources), and the
//! sandbox's sysctls.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use super::{invalid, unsupported, OciError};

pub(super) fn cpu_with_shares(shares: u64) -> LinuxCpu {
    let mut cpu = LinuxCpu::default();
    cpu.set_shares(Some(shares));
    cpu
}

fn non_negative(v: i64, field: &str) -> Result<i64, OciError> {
    if v < 0 {
        return Err(invalid(
            format!("linux.resources.{field}"),
            format!("{v} is negative"),
        ));
    }
    Ok(v)
}

/// "2MB", "1GB", "64KB": a number and a binary unit prefix, as the hugetlb control files name
/// page sizes.
fn valid_page_size(s: &str) -> bool {
    let Some(num) = ["KB", "MB", "GB", "TB", "PB"]
        .iter()
        .find_map(|u| s.strip_suffix(u))
    else {
        return false;
    };
    !num.is_empty() && num.chars().all(|c| c.is_ascii_digit())
}

/// The container's resources (zero means unset, as in the CRI). A memory limit without a swap
/// limit also caps swap at the same value (containerd, on hosts with swap accounting: this
/// host's memory cgroup has memsw), so a container cannot swap by default.
pub fn container_resources(r: &cri::LinuxContainerResources) -> Result<LinuxResources, OciError> {
    let mut res = LinuxResources::default();

    let mut cpu = LinuxCpu::default();
    let mut any_cpu = false;
    if non_negative(r.cpu_period, "cpu_period")? != 0 {
        cpu.set_period(Some(r.cpu_period as u64));
        any_cpu = true;
    }
    if r.cpu_quota != 0 {
        if r.cpu_quota < -1 {
            return Err(invalid(
                "linux.resources.cpu_quota",
                format!(
                    "{} is negative (only -1, unlimited, is allowed)",
                    r.cpu_quota
                ),
            ));
        }
        cpu.set_quota(Some(r.cpu_quota));
        any_cpu = true;
    }
    if non_negative(r.cpu_shares, "cpu_shares")? != 0 {
        cpu.set_shares(Some(r.cpu_shares as u64));
        any_cpu = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
        any_cpu = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
        any_cpu = true;
    }
    if any_cpu {
        res.set_cpu(Some(cpu));
    }

    let mut mem = LinuxMemory::default();
    let mut any_mem = false;
    let limit = non_negative(r.memory_limit_in_bytes, "memory_limit_in_bytes")?;
    let swap = r.memory_swap_limit_in_bytes;
    if swap < -1 {
        return Err(invalid(
            "linux.resources.memory_swap_limit_in_bytes",
            format!("{swap} is negative (only -1, unlimited, is allowed)"),
        ));
    }
    if limit != 0 {
        mem.set_limit(Some(limit));
        if swap == 0 {
            mem.set_swap(Some(limit));
        }
        any_mem = true;
    }
    if swap != 0 {
        if limit != 0 && swap != -1 && swap < limit {
            return Err(invalid(
                "linux.resources.memory_swap_limit_in_bytes",
                format!("{swap} is below the memory limit {limit} (it counts memory plus swap)"),
            ));
        }
        mem.set_swap(Some(swap));
        any_mem = true;
    }
    if any_mem {
        res.set_memory(Some(mem));
    }

    if !r.hugepage_limits.is_empty() {
        let mut limits = Vec::new();
        for (i, h) in r.hugepage_limits.iter().enumerate() {
            if !valid_page_size(&h.page_size) {
                return Err(invalid(
                    format!("linux.resources.hugepage_limits[{i}].page_size"),
                    format!("{:?} is not a page size like 2MB or 1GB", h.page_size),
                ));
            }
            let mut l = LinuxHugepageLimit::default();
            l.set_page_size(h.page_size.clone());
            l.set_limit(h.limit as i64);
            limits.push(l);
        }
        res.set_hugepage_limits(Some(limits));
    }

    if !r.unified.is_empty() {
        for key in r.unified.keys() {
            if key.is_empty() || key.contains('/') || !key.contains('.') {
                return Err(invalid(
                    format!("linux.resources.unified[{key:?}]"),
                    "not a cgroup v2 control file name",
                ));
            }
        }
        res.set_unified(Some(r.unified.clone().into_iter().collect()));
    }
    Ok(res)
}

/// Which namespace a sysctl lives in; None for the node-wide ones no container may set.
fn sysctl_namespace(key: &str) -> Option<&'static str> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if key.starts_with("net.") {
        Some("network")
    } else if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some("ipc")
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some("uts")
    } else {
        None
    }
}

/// kubelet's conversion: a name whose first separator is '/' uses '/' for '.' and vice versa.
fn normalize_sysctl(key: &str) -> String {
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => key
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

/// The pod's sysctls, each checked to live in a namespace the pod owns (net.* needs its own
/// network namespace, kernel.shm*/msg*/sem and fs.mqueue.* its own IPC).
pub(super) fn sandbox_sysctls(
    sysctls: &HashMap<String, String>,
    host_net: bool,
    host_ipc: bool,
) -> Result<HashMap<String, String>, OciError> {
    let mut out = HashMap::new();
    for (key, value) in sysctls {
        let field = format!("linux.sysctls[{key:?}]");
        let name = normalize_sysctl(key);
        match sysctl_namespace(&name) {
            None => {
                return Err(unsupported(
                    field,
                    "not a namespaced sysctl; it would change the whole node",
                ))
            }
            Some("network") | Some("uts") if host_net => {
                return Err(invalid(
                    field,
                    "the pod uses the host's network namespace, so it cannot set this sysctl",
                ))
            }
            Some("ipc") if host_ipc => {
                return Err(invalid(
                    field,
                    "the pod uses the host's IPC namespace, so it cannot set this sysctl",
                ))
            }
            Some(_) => {}
        }
        out.insert(name, value.clone());
    }
    Ok(out)
}
