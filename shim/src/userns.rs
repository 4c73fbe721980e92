//! User namespaces (`namespace_options.userns_options`, what the kubelet sends for
//! `hostUsers: false`). The mappings are checked first: a malformed request gets InvalidArgument
//! naming what is wrong. A pod with mode POD then gets:
//! - its own user namespace with the kubelet's one range, and a network namespace *owned by
//!   it*, both made by one `unshare --user --net` child and pinned with bind mounts (the child
//!   then exits). The network namespace has to belong to the pod's user namespace: a process
//!   in that user namespace cannot `setns` into one the host owns (EPERM), and sysfs cannot be
//!   mounted for it either.
//! - the pause container and every container join both by path (linux.namespaces `user`,
//!   with linux.uidMappings/gidMappings for the record); pea-runtime's exec joins it too.
//! - a rootfs mounted from idmapped image layers (`pea-runtime idmap-mount`): overlayfs itself
//!   cannot be idmapped (mount_setattr(MOUNT_ATTR_IDMAP) = EINVAL on kernel 6.18) and an
//!   idmapped upper makes it read-only (EOVERFLOW for the mounter), so the layers are mapped
//!   and the upper directory belongs to the pod's root, as containerd 2 does.
//!
//! Volumes are bind mounts as they are: files the pod's root writes there belong to its host
//! uid. CRI mounts that ask for their own idmapping (`uid_mappings`) are refused.
//! Mode NODE (the default) needs nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::sandbox::namespace_mode;

const FIELD: &str = "linux.security_context.namespace_options.userns_options";

/// The size of the one range the kubelet gives each pod (`userNsLength`), in both uids and gids.
pub const KUBELET_RANGE: u32 = 65_536;

/// The host ids a POD-mode pod's one range starts at (container ids 0..length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodMapping {
    pub uid_host: u32,
    pub gid_host: u32,
    pub length: u32,
}

/// The mapping of a pod that passed [`check`], if it asks for its own user namespace.
pub fn mapping(config: &cri::PodSandboxConfig) -> Option<PodMapping> {
    let u = namespace_mode(config).userns_options?;
    if u.mode != cri::NamespaceMode::Pod as i32 {
        return None;
    }
    let (uid, gid) = (u.uids.first()?, u.gids.first()?);
    Some(PodMapping {
        uid_host: uid.host_id,
        gid_host: gid.host_id,
        length: uid.length,
    })
}

/// Checks a pod's user-namespace request: none or NODE without mappings is `None`, a
/// well-formed POD request its mapping, anything else InvalidArgument naming the field.
pub fn check(config: &cri::PodSandboxConfig) -> Result<Option<PodMapping>, ShimError> {
    let Some(u) = namespace_mode(config).userns_options else {
        return Ok(None);
    };
    match cri::NamespaceMode::try_from(u.mode) {
        Ok(cri::NamespaceMode::Node) => {
            if !u.uids.is_empty() || !u.gids.is_empty() {
                return Err(ShimError::invalid(format!(
                    "{FIELD}: mode NODE runs in the host's user namespace and takes no uid/gid \
                     mappings ({} uid, {} gid given)",
                    u.uids.len(),
                    u.gids.len()
                )));
            }
            Ok(None)
        }
        Ok(cri::NamespaceMode::Pod) => {
            let ns = namespace_mode(config);
            for (what, mode) in [("network", ns.network), ("pid", ns.pid), ("ipc", ns.ipc)] {
                if mode == cri::NamespaceMode::Node as i32 {
                    return Err(ShimError::invalid(format!(
                        "{FIELD}: mode POD cannot be combined with the host's {what} namespace \
                         (the kubelet refuses hostUsers: false with hostNetwork, hostPID or \
                         hostIPC)"
                    )));
                }
            }
            check_mappings("uids", &u.uids)?;
            check_mappings("gids", &u.gids)?;
            Ok(mapping(config))
        }
        _ => Err(ShimError::invalid(format!(
            "{FIELD}.mode {}: only POD and NODE are defined for user namespaces",
            u.mode
        ))),
    }
}

/// What the kubelet sends: one range mapping container id 0 to a host range of 65536 ids that
/// does not include the host's root, without overflow. Several ranges are refused, and named
/// overlapping first because that is the more serious mistake.
fn check_mappings(kind: &str, maps: &[cri::IdMapping]) -> Result<(), ShimError> {
    let field = format!("{FIELD}.{kind}");
    if maps.is_empty() {
        return Err(ShimError::invalid(format!(
            "{field}: mode POD needs a mapping (none given)"
        )));
    }
    for (i, a) in maps.iter().enumerate() {
        if a.length == 0 {
            return Err(ShimError::invalid(format!("{field}[{i}]: length 0")));
        }
        for (kind_of_id, start) in [("host_id", a.host_id), ("container_id", a.container_id)] {
            if start.checked_add(a.length - 1).is_none() {
                return Err(ShimError::invalid(format!(
                    "{field}[{i}]: {kind_of_id} {start} + length {} passes the largest id",
                    a.length
                )));
            }
        }
        for (j, b) in maps.iter().enumerate().skip(i + 1) {
            for (which, x, y) in [
                ("host", a.host_id, b.host_id),
                ("container", a.container_id, b.container_id),
            ] {
                if x < y.saturating_add(b.length) && y < x.saturating_add(a.length) {
                    return Err(ShimError::invalid(format!(
                        "{field}[{i}] and [{j}]: {which} ranges overlap ({x}+{} and {y}+{})",
                        a.length, b.length
                    )));
                }
            }
        }
    }
    if maps.len() != 1 {
        return Err(ShimError::invalid(format!(
            "{field}: {} ranges given; one range of {KUBELET_RANGE} ids is supported (what the \
             kubelet sends)",
            maps.len()
        )));
    }
    let m = &maps[0];
    if m.container_id != 0 || m.length != KUBELET_RANGE {
        return Err(ShimError::invalid(format!(
            "{field}[0]: container_id {} length {}; the range must map container ids \
             0..{KUBELET_RANGE} (what the kubelet sends)",
            m.container_id, m.length
        )));
    }
    if m.host_id < KUBELET_RANGE {
        return Err(ShimError::invalid(format!(
            "{field}[0]: host_id {} maps host ids below {KUBELET_RANGE}, including the host's \
             system ids, into the pod",
            m.host_id
        )));
    }
    Ok(())
}

/// How long the `unshare` child may take to enter its new namespaces.
const UNSHARE_WAIT: Duration = Duration::from_secs(5);

/// Makes the pod's user namespace with mapping `m` and a network namespace owned by it, pinned
/// at `user_pin` and `net_pin` (bind mounts, as the shim pins every network namespace), with
/// `lo` up. A short-lived `unshare --user --net` child makes both (the shim itself is
/// multi-threaded and may not `unshare(CLONE_NEWUSER)`); the shim writes its maps as root in
/// the parent namespace, pins both and ends it. On failure nothing is left.
pub fn create_pinned(m: &PodMapping, user_pin: &Path, net_pin: &Path) -> Result<(), ShimError> {
    let made = make_pinned(m, user_pin, net_pin);
    if made.is_err() {
        let _ = crate::netns::remove(net_pin);
        let _ = crate::netns::remove(user_pin);
    }
    made
}

fn make_pinned(m: &PodMapping, user_pin: &Path, net_pin: &Path) -> Result<(), ShimError> {
    for pin in [user_pin, net_pin] {
        let dir = pin.parent().expect("a pin path has a parent");
        std::fs::create_dir_all(dir).map_err(ShimError::io(dir))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(pin)
            .map_err(ShimError::io(pin))?;
    }
    let mut child = std::process::Command::new("unshare")
        .args(["--user", "--net", "--", "sleep", "60"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| ShimError::Internal(format!("user namespace: running unshare: {e}")))?;
    let pinned = pin_child(&mut child, m, user_pin, net_pin);
    let _ = child.kill();
    let _ = child.wait();
    pinned
}

fn pin_child(
    child: &mut std::process::Child,
    m: &PodMapping,
    user_pin: &Path,
    net_pin: &Path,
) -> Result<(), ShimError> {
    let proc = PathBuf::from(format!("/proc/{}", child.id()));
    let ours =
        std::fs::read_link("/proc/self/ns/user").map_err(ShimError::io("/proc/self/ns/user"))?;
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return Err(ShimError::Internal(format!(
                "user namespace: unshare --user --net exited ({status}): {}",
                err.trim()
            )));
        }
        // The child has its own user namespace once the link differs from ours; the network
        // namespace comes from the same unshare(2) call.
        if std::fs::read_link(proc.join("ns/user")).is_ok_and(|l| l != ours) {
            break;
        }
        if started.elapsed() > UNSHARE_WAIT {
            return Err(ShimError::Internal(format!(
                "user namespace: unshare did not enter its namespaces in {} s",
                UNSHARE_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for (file, host) in [("uid_map", m.uid_host), ("gid_map", m.gid_host)] {
        let path = proc.join(file);
        std::fs::write(&path, format!("0 {host} {}\n", m.length)).map_err(ShimError::io(&path))?;
    }
    for (ns, pin) in [("ns/user", user_pin), ("ns/net", net_pin)] {
        nix::mount::mount(
            Some(&proc.join(ns)),
            pin,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            ShimError::Internal(format!(
                "pinning {} at {}: {e}",
                proc.join(ns).display(),
                pin.display()
            ))
        })?;
    }
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", net_pin.display()))
        .args(["ip", "link", "set", "lo", "up"])
        .output()
        .map_err(|e| ShimError::Internal(format!("nsenter ip link set lo up: {e}")))?;
    if !out.status.success() {
        return Err(ShimError::Internal(format!(
            "ip link set lo up in {}: {}",
            net_pin.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Makes an idmapped mount of `layer` at `at` with the ids of the user namespace pinned at
/// `userns`, through `pea-runtime idmap-mount` (the syscalls need `unsafe`, which the shim
/// does not use).
pub fn idmap_layer(runtime: &Path, userns: &Path, layer: &Path, at: &Path) -> Result<(), String> {
    let out = std::process::Command::new(runtime)
        .arg("idmap-mount")
        .arg("--userns")
        .arg(userns)
        .arg(layer)
        .arg(at)
        .output()
        .map_err(|e| format!("running {} idmap-mount: {e}", runtime.display()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{} idmap-mount: {}",
        runtime.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(host_id: u32, container_id: u32, length: u32) -> cri::IdMapping {
        cri::IdMapping {
            host_id,
            container_id,
            length,
        }
    }

    fn pod(
        mode: Option<i32>,
        uids: Vec<cri::IdMapping>,
        gids: Vec<cri::IdMapping>,
    ) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        userns_options: mode.map(|mode| cri::UserNamespace { mode, uids, gids }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const POD: i32 = cri::NamespaceMode::Pod as i32;
    const NODE: i32 = cri::NamespaceMode::Node as i32;

    fn invalid(c: &cri::PodSandboxConfig, needle: &str) {
        let e = check(c).unwrap_err();
        assert!(matches!(e, ShimError::InvalidArgument(_)), "{e}");
        assert!(e.to_string().contains(needle), "{needle:?} not in: {e}");
    }

    #[test]
    fn node_mode_passes_and_takes_no_mappings() {
        assert_eq!(check(&pod(None, vec![], vec![])).unwrap(), None);
        assert_eq!(check(&pod(Some(NODE), vec![], vec![])).unwrap(), None);
        invalid(
            &pod(Some(NODE), vec![map(65_536, 0, 65_536)], vec![]),
            "mode NODE",
        );
    }

    #[test]
    fn what_the_kubelet_sends_is_the_pods_mapping() {
        let k = vec![map(131_072, 0, 65_536)];
        assert_eq!(
            check(&pod(Some(POD), k.clone(), vec![map(196_608, 0, 65_536)])).unwrap(),
            Some(PodMapping {
                uid_host: 131_072,
                gid_host: 196_608,
                length: 65_536
            })
        );
        let mut host_net = pod(Some(POD), k.clone(), k);
        let ns = host_net
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap();
        ns.namespace_options.as_mut().unwrap().network = NODE;
        invalid(&host_net, "host's network namespace");
    }

    #[test]
    fn bad_mappings_are_invalid_naming_the_field() {
        let k = vec![map(131_072, 0, 65_536)];
        invalid(&pod(Some(POD), vec![], k.clone()), "uids: mode POD needs");
        invalid(&pod(Some(POD), k.clone(), vec![]), "gids: mode POD needs");
        invalid(
            &pod(
                Some(POD),
                vec![map(131_072, 0, 65_536), map(150_000, 70_000, 10)],
                k.clone(),
            ),
            "host ranges overlap",
        );
        invalid(
            &pod(
                Some(POD),
                vec![map(131_072, 0, 65_536), map(300_000, 10, 10)],
                k.clone(),
            ),
            "container ranges overlap",
        );
        invalid(
            &pod(
                Some(POD),
                vec![map(131_072, 0, 1000), map(300_000, 1000, 10)],
                k.clone(),
            ),
            "2 ranges given",
        );
        invalid(
            &pod(Some(POD), vec![map(131_072, 0, 1000)], k.clone()),
            "length 1000",
        );
        invalid(
            &pod(Some(POD), vec![map(131_072, 1, 65_536)], k.clone()),
            "container_id 1",
        );
        invalid(
            &pod(Some(POD), k.clone(), vec![map(0, 0, 65_536)]),
            "gids[0]: host_id 0",
        );
        invalid(
            &pod(Some(POD), vec![map(u32::MAX - 10, 0, 65_536)], k.clone()),
            "passes",
        );
        invalid(
            &pod(Some(POD), vec![map(131_072, 0, 0)], k.clone()),
            "length 0",
        );
        invalid(
            &pod(Some(cri::NamespaceMode::Container as i32), vec![], vec![]),
            "mode 1",
        );
    }
}
