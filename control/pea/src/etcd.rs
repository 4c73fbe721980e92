//! `pea up --etcd`: pea-control's store on a real 3-member etcd cluster instead of its embedded
//! one. The members run in node 0's network namespace (the control plane's) on its loopback,
//! on the ports of etcd's own local-cluster Procfile (clients 2379, 22379, 32379; peers 12380,
//! 22380, 32380): reachable by pea-control there and by nothing else. Their data lives under
//! the cluster's state dir, so `pea down` removes members and data with the rest.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::cluster::Cluster;
use crate::proc::{self, run, spawn, wait_for};

/// (member name, client port, peer port).
pub const MEMBERS: [(&str, u16, u16); 3] = [
    ("etcd-0", 2379, 12380),
    ("etcd-1", 22379, 22380),
    ("etcd-2", 32379, 32380),
];

/// Where the members keep their data; its existence marks a cluster made with `--etcd`.
pub fn dir(c: &Cluster) -> PathBuf {
    c.state_dir().join("etcd")
}

pub fn used(c: &Cluster) -> bool {
    dir(c).is_dir()
}

/// kube-apiserver's `--etcd-servers` form: every member's client URL, comma-separated.
pub fn endpoints() -> String {
    MEMBERS
        .iter()
        .map(|(_, client, _)| format!("http://127.0.0.1:{client}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A member's `/health` as seen from node 0's namespace.
fn healthy(c: &Cluster, client_port: u16) -> bool {
    run(
        "ip",
        &[
            "netns",
            "exec",
            &c.netns(Some(0)),
            // Not busybox wget: Debian 12's static busybox 1.35 segfaults on `wget -T`.
            "curl",
            "-sS",
            "-m",
            "2",
            &format!("http://127.0.0.1:{client_port}/health"),
        ],
    )
    .is_ok_and(|out| out.contains("\"health\":\"true\""))
}

/// Starts the three members and waits until each reports healthy (a quorum formed).
pub fn start(c: &Cluster) -> Result<()> {
    if run("sh", &["-c", "command -v etcd"]).is_err() {
        bail!("etcd is not installed (Debian's etcd-server; tests/scripts/prereqs.sh installs it)");
    }
    let initial: Vec<String> = MEMBERS
        .iter()
        .map(|(name, _, peer)| format!("{name}=http://127.0.0.1:{peer}"))
        .collect();
    let initial = initial.join(",");
    std::fs::create_dir_all(dir(c))?;
    for (name, client, peer) in MEMBERS {
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        spawn(
            Some(&c.netns_file(Some(0))),
            None,
            &[
                "etcd".into(),
                format!("--name={name}"),
                format!("--data-dir={}", dir(c).join(name).display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster={initial}"),
                format!("--initial-cluster-token=pea-{}", c.name),
                "--initial-cluster-state=new".into(),
                "--logger=zap".into(),
                "--log-level=warn".into(),
            ],
            &[],
            &c.log_file(name),
            &c.pid_file(name),
        )?;
    }
    for (name, client, _) in MEMBERS {
        if !wait_for(Duration::from_secs(30), || healthy(c, client)) {
            bail!(
                "etcd member {name} not healthy on 127.0.0.1:{client} after 30 s: {}",
                proc::tail(&c.log_file(name), 10)
            );
        }
    }
    Ok(())
}
