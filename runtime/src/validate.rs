//! Checks done on config.json before libcontainer forks anything, so bad input gets an error
//! naming the setting (libcontainer's own errors from the child processes are often just
//! "io error" or "failed syscall"), and nothing has to be rolled back.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Result, RuntimeError};

/// Loads `<bundle>/config.json` with errors naming the file and the problem.
pub fn load_spec(bundle: &Path) -> Result<Spec> {
    let config = bundle.join("config.json");
    let text = std::fs::read_to_string(&config).map_err(|e| RuntimeError::Bundle {
        path: bundle.to_path_buf(),
        reason: format!("config.json: {e}"),
    })?;
    let spec: Spec = serde_json::from_str(&text)
        .map_err(|e| RuntimeError::InvalidSpec(format!("{}: {e}", config.display())))?;
    if !spec.version().starts_with("1.") {
        return Err(RuntimeError::InvalidSpec(format!(
            "ociVersion {:?} is not supported (want 1.x)",
            spec.version()
        )));
    }
    Ok(spec)
}

/// The rootfs path of `spec`, resolved against the bundle.
pub fn rootfs_path(bundle: &Path, spec: &Spec) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| RuntimeError::InvalidSpec("root is missing".into()))?;
    let p = root.path();
    Ok(if p.is_absolute() {
        p.clone()
    } else {
        bundle.join(p)
    })
}

/// Host facts the checks compare against (injectable for unit tests).
#[derive(Debug, Clone)]
pub struct HostLimits {
    /// Capability numbers in the runtime's bounding set.
    pub bounding: HashSet<u8>,
    pub has_sys_resource: bool,
    /// The lowest oom_score_adj this process (and so the container it forks) may set without
    /// CAP_SYS_RESOURCE: the kernel's `oom_score_adj_min`, which /proc does not show.
    pub oom_score_adj: i32,
    pub cgroup_v1_controllers: HashSet<String>,
    pub blkio_weight: bool,
}

impl HostLimits {
    pub fn probe() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let bnd = status
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(u64::MAX);
        let bounding: HashSet<u8> = (0..64u8).filter(|i| bnd & (1u64 << i) != 0).collect();
        let has_sys_resource = bounding.contains(&caps::Capability::CAP_SYS_RESOURCE.index());
        let current = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let oom_score_adj = if has_sys_resource {
            current
        } else {
            oom_score_adj_floor(current)
        };
        let cgroup_v1_controllers = std::fs::read_dir("/sys/fs/cgroup")
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .flat_map(|n| n.split(',').map(str::to_string).collect::<Vec<_>>())
                    .collect()
            })
            .unwrap_or_default();
        let blkio_weight = Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists()
            || Path::new("/sys/fs/cgroup/blkio/blkio.bfq.weight").exists();
        Self {
            bounding,
            has_sys_resource,
            oom_score_adj,
            cgroup_v1_controllers,
            blkio_weight,
        }
    }
}

/// The lowest oom_score_adj the kernel lets this process set without CAP_SYS_RESOURCE
/// (`oom_score_adj_min`: 0 unless a privileged writer set a higher floor, and never above the
/// current value). Found by trying: a lower write fails with EACCES, and raising the value back
/// is always allowed. A containerd shim runs at its daemon's score + 1, yet may still set 0.
fn oom_score_adj_floor(current: i32) -> i32 {
    let path = "/proc/self/oom_score_adj";
    let try_set = |v: i32| std::fs::write(path, v.to_string()).is_ok();
    // Binary search for the lowest value in -1000..=current that the kernel accepts.
    let (mut lo, mut hi) = (-1000, current);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if try_set(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    if !try_set(current) {
        tracing::warn!(
            current,
            "could not restore oom_score_adj after probing its floor"
        );
    }
    hi
}

fn invalid(msg: String) -> RuntimeError {
    RuntimeError::InvalidSpec(msg)
}

/// Everything that can be checked without forking.
pub fn check_spec(bundle: &Path, spec: &Spec, host: &HostLimits) -> Result<()> {
    let rootfs = rootfs_path(bundle, spec)?;
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(invalid(format!(
                "root.path {} is not a directory",
                rootfs.display()
            )))
        }
        Err(e) => return Err(invalid(format!("root.path {}: {e}", rootfs.display()))),
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process is missing".into()))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid("process.args must not be empty".into()));
    }
    if !process.cwd().is_absolute() {
        return Err(invalid(format!(
            "process.cwd {} must be an absolute path",
            process.cwd().display()
        )));
    }
    check_namespaces(spec)?;
    check_mounts(&rootfs, spec)?;
    check_process_limits(spec, host)?;
    check_resources(spec, host)?;
    Ok(())
}

fn check_namespaces(spec: &Spec) -> Result<()> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let mut seen = HashSet::new();
    for ns in linux.namespaces().iter().flatten() {
        if !seen.insert(ns.typ()) {
            return Err(invalid(format!(
                "linux.namespaces: {:?} namespace listed twice",
                ns.typ()
            )));
        }
        if let Some(path) = ns.path() {
            if !path.exists() {
                return Err(invalid(format!(
                    "linux.namespaces: {:?} namespace path {} does not exist",
                    ns.typ(),
                    path.display()
                )));
            }
        }
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        && !seen.contains(&LinuxNamespaceType::Uts)
    {
        return Err(invalid(
            "hostname is set but there is no uts namespace to set it in".into(),
        ));
    }
    Ok(())
}

/// Resolves `dest` inside `rootfs` like a chroot would (absolute symlinks restart at the rootfs)
/// and fails when a `..` (from the path or a symlink target) would climb above the rootfs.
pub fn check_destination(rootfs: &Path, dest: &Path) -> std::result::Result<(), String> {
    let mut pending: Vec<PathBuf> = dest
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect();
    let mut stack: Vec<PathBuf> = Vec::new();
    let mut links = 0;
    while let Some(comp) = pending.pop() {
        if comp.as_os_str() == ".." {
            if stack.pop().is_none() {
                return Err(format!(
                    "{} escapes the rootfs through \"..\"",
                    dest.display()
                ));
            }
            continue;
        }
        let mut here = rootfs.to_path_buf();
        here.extend(&stack);
        here.push(&comp);
        match std::fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(format!("{}: too many levels of symlinks", dest.display()));
                }
                let target = std::fs::read_link(&here).map_err(|e| e.to_string())?;
                if target.is_absolute() {
                    stack.clear();
                }
                let inside: PathBuf = stack.iter().collect();
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => pending.push(PathBuf::from(n)),
                        Component::ParentDir => pending.push(PathBuf::from("..")),
                        _ => {}
                    }
                }
                // Check the climb right away so the message names the symlink.
                let mut depth = inside.components().count() as i64;
                for c in target.components() {
                    match c {
                        Component::ParentDir => depth -= 1,
                        Component::Normal(_) => depth += 1,
                        _ => {}
                    }
                    if depth < 0 && !target.is_absolute() {
                        return Err(format!(
                            "{} escapes the rootfs through symlink {} -> {}",
                            dest.display(),
                            here.strip_prefix(rootfs).unwrap_or(&here).display(),
                            target.display()
                        ));
                    }
                }
            }
            Ok(_) => stack.push(comp),
            // Not there yet: the runtime creates it, nothing further to follow.
            Err(_) => stack.push(comp),
        }
    }
    Ok(())
}

fn check_mounts(rootfs: &Path, spec: &Spec) -> Result<()> {
    for m in spec.mounts().iter().flatten() {
        let dest = m.destination();
        if !dest.is_absolute() {
            return Err(invalid(format!(
                "mount destination {} must be an absolute path",
                dest.display()
            )));
        }
        check_destination(rootfs, dest).map_err(|e| invalid(format!("mount destination {e}")))?;
        let bind = m
            .options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
            || m.typ().as_deref() == Some("bind");
        if bind {
            let src = m.source().as_ref().ok_or_else(|| {
                invalid(format!("bind mount to {} has no source", dest.display()))
            })?;
            if !src.exists() {
                return Err(invalid(format!(
                    "bind mount source {} (for {}) does not exist",
                    src.display(),
                    dest.display()
                )));
            }
        }
    }
    Ok(())
}

/// The capability's number and its spec name ("CAP_SYS_ADMIN").
fn cap_index(cap: &oci_spec::runtime::Capability) -> Option<(u8, String)> {
    let name = serde_json::to_value(cap).ok()?.as_str()?.to_string();
    let idx = name.parse::<caps::Capability>().ok()?.index();
    Some((idx, name))
}

fn check_process_limits(spec: &Spec, host: &HostLimits) -> Result<()> {
    let Some(process) = spec.process() else {
        return Ok(());
    };
    if let Some(adj) = process.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(invalid(format!(
                "process.oomScoreAdj {adj} is outside -1000..=1000"
            )));
        }
        if adj < host.oom_score_adj && !host.has_sys_resource {
            return Err(invalid(format!(
                "process.oomScoreAdj {adj}: lowering the OOM score below {} needs \
                 CAP_SYS_RESOURCE, which this host's capability bounding set lacks",
                host.oom_score_adj
            )));
        }
    }
    for rl in process.rlimits().iter().flatten() {
        let name = serde_json::to_value(rl.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{:?}", rl.typ()));
        if rl.soft() > rl.hard() {
            return Err(invalid(format!(
                "process.rlimits {name}: soft limit {} is above hard limit {}",
                rl.soft(),
                rl.hard()
            )));
        }
        if !host.has_sys_resource {
            if let Some(cur_hard) = current_hard_limit(rl.typ()) {
                if rl.hard() > cur_hard {
                    return Err(invalid(format!(
                        "process.rlimits {name}: raising the hard limit to {} (runtime's is {cur_hard}) \
                         needs CAP_SYS_RESOURCE, which this host's capability bounding set lacks",
                        rl.hard()
                    )));
                }
            }
        }
    }
    if let Some(c) = process.capabilities() {
        let sets = [
            ("bounding", c.bounding()),
            ("effective", c.effective()),
            ("permitted", c.permitted()),
            ("inheritable", c.inheritable()),
            ("ambient", c.ambient()),
        ];
        for (set, caps) in sets {
            for cap in caps.iter().flatten() {
                if let Some((i, name)) = cap_index(cap) {
                    if !host.bounding.contains(&i) {
                        return Err(invalid(format!(
                            "process.capabilities.{set}: {name} is not in the runtime's capability \
                             bounding set, so the kernel refuses it"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

fn current_hard_limit(typ: oci_spec::runtime::PosixRlimitType) -> Option<u64> {
    use oci_spec::runtime::PosixRlimitType as T;
    let res = match typ {
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitStack => libc::RLIMIT_STACK,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
    };
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit struct we own.
    let rc = unsafe { libc::getrlimit(res, &mut lim) };
    (rc == 0).then_some(lim.rlim_max)
}

fn check_resources(spec: &Spec, host: &HostLimits) -> Result<()> {
    let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) else {
        return Ok(());
    };
    let v1 = !host.cgroup_v1_controllers.is_empty();
    if !v1 {
        return Ok(());
    }
    let missing = |ctrl: &str| !host.cgroup_v1_controllers.contains(ctrl);
    if res
        .hugepage_limits()
        .as_ref()
        .is_some_and(|h| !h.is_empty())
        && missing("hugetlb")
    {
        return Err(invalid(
            "linux.resources.hugepageLimits: this host has no cgroup v1 hugetlb controller \
             (hugetlb is only on the unified cgroup2 hierarchy, which pea-runtime does not manage)"
                .into(),
        ));
    }
    if res.network().is_some() && (missing("net_cls") || missing("net_prio")) {
        return Err(invalid(
            "linux.resources.network: this host has no net_cls/net_prio cgroup controller".into(),
        ));
    }
    if let Some(b) = res.block_io() {
        if b.weight().is_some() && !host.blkio_weight {
            return Err(invalid(
                "linux.resources.blockIO.weight: this host's blkio cgroup has no weight file \
                 (no CFQ/BFQ weight support); use throttle limits instead"
                    .into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oom_floor_probe_restores_the_score() {
        let read = || {
            std::fs::read_to_string("/proc/self/oom_score_adj")
                .unwrap()
                .trim()
                .parse::<i32>()
                .unwrap()
        };
        let before = read();
        let floor = oom_score_adj_floor(before);
        assert!((-1000..=before).contains(&floor), "{floor} vs {before}");
        assert_eq!(read(), before);
    }

    #[test]
    fn destination_symlinks_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("evil")).unwrap();
        std::os::unix::fs::symlink("../run", root.join("var/ok")).unwrap();
        assert!(check_destination(root, Path::new("/var/run/x")).is_ok());
        assert!(check_destination(root, Path::new("/var/ok/x")).is_ok());
        assert!(check_destination(root, Path::new("/new/dir")).is_ok());
        let e = check_destination(root, Path::new("/evil/x")).unwrap_err();
        assert!(e.contains("symlink evil"), "{e}");
        assert!(check_destination(root, Path::new("/a/../../etc")).is_err());
    }
}
