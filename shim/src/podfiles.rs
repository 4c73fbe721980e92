//! The files a sandbox gives all its containers: /etc/resolv.conf from the CRI DNS config (the
//! host's when there is none), /etc/hostname, /etc/hosts, and the pod's /dev/shm (a tmpfs shared
//! by the pod's containers unless the pod uses the host's IPC namespace).

use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::ShimError;
use crate::oci::PodFiles;

/// containerd's default /dev/shm size for a pod.
const SHM_BYTES: u64 = 64 << 20;

pub fn dir_for(state: &Path, id: &str) -> PathBuf {
    state.join("pods").join(id)
}

/// The resolv.conf CRI's DNS config asks for; None means "the host's".
pub fn resolv_conf(dns: Option<&cri::DnsConfig>) -> Option<String> {
    let dns = dns?;
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return None;
    }
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for s in &dns.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Some(out)
}

fn check_dns(dns: Option<&cri::DnsConfig>) -> Result<(), ShimError> {
    let Some(dns) = dns else { return Ok(()) };
    for (i, s) in dns.servers.iter().enumerate() {
        if s.parse::<std::net::IpAddr>().is_err() {
            return Err(ShimError::invalid(format!(
                "dns_config.servers[{i}]: {s:?} is not an IP address"
            )));
        }
    }
    for (field, list) in [("searches", &dns.searches), ("options", &dns.options)] {
        for (i, v) in list.iter().enumerate() {
            if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ShimError::invalid(format!(
                    "dns_config.{field}[{i}]: {v:?} is empty or has white space"
                )));
            }
        }
    }
    Ok(())
}

/// Writes the pod's files under `dir`; on failure removes what it made.
pub fn create(
    dir: &Path,
    config: &cri::PodSandboxConfig,
    host_ipc: bool,
) -> Result<PodFiles, ShimError> {
    check_dns(config.dns_config.as_ref())?;
    if config.hostname.len() > 64 || config.hostname.contains(['/', '\n', '\0']) {
        return Err(ShimError::invalid(format!(
            "hostname: {:?} is not a valid host name",
            config.hostname
        )));
    }
    std::fs::create_dir_all(dir).map_err(ShimError::io(dir))?;
    let made = (|| -> Result<PodFiles, ShimError> {
        let resolv = dir.join("resolv.conf");
        match resolv_conf(config.dns_config.as_ref()) {
            Some(text) => std::fs::write(&resolv, text).map_err(ShimError::io(&resolv))?,
            None => {
                std::fs::copy("/etc/resolv.conf", &resolv).map_err(ShimError::io(&resolv))?;
            }
        }
        let hostname = dir.join("hostname");
        let name = if config.hostname.is_empty() {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            config.hostname.clone()
        };
        std::fs::write(&hostname, format!("{name}\n")).map_err(ShimError::io(&hostname))?;
        let hosts = dir.join("hosts");
        std::fs::write(
            &hosts,
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n",
        )
        .map_err(ShimError::io(&hosts))?;
        let shm = if host_ipc {
            None
        } else {
            let shm = dir.join("shm");
            std::fs::create_dir_all(&shm).map_err(ShimError::io(&shm))?;
            mount(
                Some("shm"),
                &shm,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some(format!("mode=1777,size={SHM_BYTES}").as_str()),
            )
            .map_err(|e| ShimError::Internal(format!("mounting {}: {e}", shm.display())))?;
            Some(shm)
        };
        Ok(PodFiles {
            resolv_conf: Some(resolv),
            hostname: Some(hostname),
            hosts: Some(hosts),
            shm,
        })
    })();
    if made.is_err() {
        let _ = remove(dir);
    }
    made
}

/// The files of an existing sandbox.
pub fn existing(dir: &Path) -> PodFiles {
    let some = |p: PathBuf| p.exists().then_some(p);
    PodFiles {
        resolv_conf: some(dir.join("resolv.conf")),
        hostname: some(dir.join("hostname")),
        hosts: some(dir.join("hosts")),
        shm: some(dir.join("shm")),
    }
}

/// Unmounts the pod's /dev/shm and removes its files; a missing dir is not an error.
pub fn remove(dir: &Path) -> Result<(), ShimError> {
    let shm = dir.join("shm");
    match umount2(&shm, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => {
            return Err(ShimError::Internal(format!(
                "unmounting {}: {e}",
                shm.display()
            )))
        }
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ShimError::io(dir)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_follows_the_dns_config() {
        assert_eq!(resolv_conf(None), None);
        let dns = cri::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns)).unwrap(),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        let bad = cri::DnsConfig {
            servers: vec!["not-an-ip".into()],
            ..Default::default()
        };
        assert!(check_dns(Some(&bad))
            .unwrap_err()
            .to_string()
            .contains("servers[0]"));
    }
}
