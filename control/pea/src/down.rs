//! `pea down`: the node agents first (so nothing restarts pods), then every other process `up`
//! started and any left in the cluster's namespaces or cgroups (containers, monitors), mounts
//! under its dirs (the pods' root filesystems and namespace pins), the namespaces (their links
//! and nft tables go with them), the pods' cgroups, the state dirs.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::cluster::Cluster;
use crate::proc::{self, run};

pub fn down(c: &Cluster) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("pea down removes network namespaces and mounts: run it as root");
    }
    if c.nodes == 0
        && !c.state_dir().exists()
        && !c.run_dir().exists()
        && !c.netns_file(None).exists()
    {
        println!("pea down: no cluster {}", c.name);
        return Ok(());
    }
    println!(
        "pea down: removing cluster {} ({} node(s))",
        c.name, c.nodes
    );
    down_quiet(c)?;
    println!("pea down: cluster {} removed", c.name);
    Ok(())
}

/// Everything, best effort per part; fails at the end naming what is still there.
pub fn down_quiet(c: &Cluster) -> Result<()> {
    let pids = |names: &[String]| -> Vec<u32> {
        names
            .iter()
            .filter_map(|s| proc::read_pid(&c.pid_file(s)))
            .filter(|&p| proc::alive(p))
            .collect()
    };
    let nodes: Vec<usize> = (0..c.nodes).collect();
    let t = std::time::Instant::now();
    let say = |what: &str| println!("pea down: {what} ({:.1} s)", t.elapsed().as_secs_f64());
    // The supervisor first, so nothing is started again; then the node agents (kubelet and
    // shim stop together), so nothing starts pods again.
    proc::stop(
        &pids(&[crate::supervise::SERVICE.to_string()]),
        Duration::from_secs(5),
    );
    // The cluster is going away: its containers then get SIGKILL rather than each waiting out
    // its stop grace (a PID 1 ignoring SIGTERM); their mounts, namespaces and cgroups are
    // removed below with the nodes'.
    let agents: Vec<String> = nodes
        .iter()
        .map(|&i| format!("{}-agent", c.node_name(i)))
        .collect();
    proc::stop(&pids(&agents), Duration::from_secs(5));
    say("node agents stopped");
    for pid in stray_processes(c, &[]) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    proc::stop(&pids(&c.services()), Duration::from_secs(5));
    // Containers, monitors and anything else still inside the cluster's namespaces or cgroups.
    let mut inodes = Vec::new();
    for n in std::iter::once(None).chain(nodes.iter().map(|&i| Some(i))) {
        if let Ok(m) = std::fs::metadata(c.netns_file(n)) {
            inodes.push(m.ino());
        }
    }
    let stray = stray_processes(c, &inodes);
    say("services stopped");
    proc::stop(&stray, Duration::from_secs(2));
    unmount_under(&[c.state_dir(), c.run_dir()]);
    for n in nodes.iter().map(|&i| Some(i)).chain(std::iter::once(None)) {
        if c.netns_file(n).exists() {
            let _ = run("ip", &["netns", "del", &c.netns(n)]);
        }
    }
    say("mounts and namespaces removed");
    for &i in &nodes {
        remove_cgroups(&c.cgroup_root(i));
    }
    for d in [c.state_dir(), c.run_dir()] {
        if d.exists() {
            std::fs::remove_dir_all(&d)
                .map_err(|e| anyhow::anyhow!("removing {}: {e}", d.display()))?;
        }
    }
    let mut left = Vec::new();
    for n in std::iter::once(None).chain(nodes.iter().map(|&i| Some(i))) {
        if c.netns_file(n).exists() {
            left.push(c.netns_file(n).display().to_string());
        }
    }
    if !left.is_empty() {
        bail!("still there after pea down: {}", left.join(", "));
    }
    Ok(())
}

fn stray_processes(c: &Cluster, netns_inodes: &[u64]) -> Vec<u32> {
    let me = std::process::id();
    let roots: Vec<String> = (0..c.nodes)
        .map(|i| format!("/{}", c.cgroup_root(i)))
        .collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            let in_ns = std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| netns_inodes.contains(&m.ino()));
            let in_cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|cg| {
                cg.lines().any(|l| {
                    let path = l.splitn(3, ':').nth(2).unwrap_or("");
                    roots
                        .iter()
                        .any(|r| path == r || path.starts_with(&format!("{r}/")))
                })
            });
            in_ns || in_cg
        })
        .collect()
}

fn unmount_under(dirs: &[std::path::PathBuf]) {
    for _ in 0..3 {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<String> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(unescape))
            .filter(|p| dirs.iter().any(|d| Path::new(p).starts_with(d)))
            .collect();
        if points.is_empty() {
            return;
        }
        // Deepest first.
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn remove_cgroups(root: &str) {
    let Ok(hier) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hier.flatten() {
        let top = h.path().join(root);
        if top.is_dir() {
            remove_tree(&top);
        }
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
