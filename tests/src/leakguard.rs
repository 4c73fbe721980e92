//! The leak guard: a snapshot of what tests could leave on the machine — mounts, cgroups,
//! network namespaces, links in the root namespace, nftables tables, processes of the programs
//! tests start — taken before the suite and compared after it. Anything new is a leak.
//!
//! The suite script (tests/scripts/test.sh) runs `pea-leakguard snapshot` before `cargo test` and
//! `pea-leakguard check` after; the check fails the run when something is left.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Programs whose processes tests start; a new one alive after the suite is a leak.
pub const WATCHED_PROGRAMS: &[&str] = &[
    "pea-",
    "docker-registry",
    "registry",
    "etcd",
    "runc",
    "crun",
    "containerd",
    "conmon",
    "podman",
    "skopeo",
    "umoci",
    "busybox",
    "sleep",
    "sh",
    "pause",
    "nc",
    "socat",
];

/// What the machine holds, in comparable strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub mounts: BTreeSet<String>,
    pub cgroups: BTreeSet<String>,
    pub netns: BTreeSet<String>,
    pub links: BTreeSet<String>,
    pub nft_tables: BTreeSet<String>,
    pub processes: BTreeSet<String>,
}

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeakGuardError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("running {program}: {detail}")]
    Command { program: String, detail: String },
}

fn read(path: &str) -> Result<String, LeakGuardError> {
    std::fs::read_to_string(path).map_err(|source| LeakGuardError::Read {
        path: path.into(),
        source,
    })
}

/// Decodes the octal escapes (`\040` for space) of /proc/self/mountinfo.
fn unescape_mount(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `mountpoint (fstype)` for every mount in this process's mount namespace.
pub fn mounts() -> Result<BTreeSet<String>, LeakGuardError> {
    Ok(parse_mountinfo(&read("/proc/self/mountinfo")?))
}

/// iproute2 bind-mounts /run/netns onto itself (shared) the first time `ip netns add` runs and
/// keeps it for good, by design: bookkeeping, not a leaked namespace. The namespaces themselves
/// (nsfs mounts at /run/netns/NAME) are still counted.
const PERSISTENT_MOUNTS: &[&str] = &["/run/netns"];

fn parse_mountinfo(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let mountpoint = fields.get(4)?;
            if PERSISTENT_MOUNTS.contains(mountpoint) {
                return None;
            }
            let sep = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(sep + 1)?;
            Some(format!("{} ({fstype})", unescape_mount(mountpoint)))
        })
        .collect()
}

/// Every cgroup directory under /sys/fs/cgroup, as `hierarchy/path`.
pub fn cgroups() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let root = Path::new("/sys/fs/cgroup");
    let Ok(hierarchies) = std::fs::read_dir(root) else {
        return out;
    };
    for h in hierarchies.flatten() {
        // cpu,cpuacct style symlinks point at hierarchies we already walk.
        if h.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk_dirs(&h.path(), root, 0, &mut out);
        }
    }
    out
}

fn walk_dirs(dir: &Path, root: &Path, depth: usize, out: &mut BTreeSet<String>) {
    if depth > 12 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            let p = e.path();
            if let Ok(rel) = p.strip_prefix(root) {
                out.insert(rel.display().to_string());
            }
            walk_dirs(&p, root, depth + 1, out);
        }
    }
}

/// Named network namespaces (`ip netns` keeps them in /run/netns).
pub fn netns() -> BTreeSet<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Network links of this process's network namespace.
pub fn links() -> BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// nftables tables of this network namespace as `family name`, from `nft -j` (never text).
pub fn nft_tables() -> Result<BTreeSet<String>, LeakGuardError> {
    let out = Command::new("nft")
        .args(["-j", "list", "tables"])
        .output()
        .map_err(|e| LeakGuardError::Command {
            program: "nft".into(),
            detail: format!("{e} (install nftables: tests/scripts/prereqs.sh)"),
        })?;
    if !out.status.success() {
        return Err(LeakGuardError::Command {
            program: "nft -j list tables".into(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(parse_nft_tables(&out.stdout))
}

fn parse_nft_tables(json: &[u8]) -> BTreeSet<String> {
    let v: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| {
            let t = item.get("table")?;
            Some(format!("{} {}", t["family"].as_str()?, t["name"].as_str()?))
        })
        .collect()
}

/// The parent of `pid` from /proc/PID/stat (fields after the parenthesised comm, which may hold
/// spaces: state, then ppid).
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `pid comm` of live processes running a watched program, excluding this process's ancestry.
pub fn processes() -> BTreeSet<String> {
    let mut ancestry = BTreeSet::new();
    let mut pid = std::process::id();
    while pid > 1 && ancestry.insert(pid) {
        pid = parent_pid(pid).unwrap_or(1);
    }
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if ancestry.contains(&pid) {
            continue;
        }
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        if is_orphaned_zombie(pid) {
            continue;
        }
        let comm = comm.trim();
        let watched = WATCHED_PROGRAMS.iter().any(|w| {
            if w.ends_with('-') {
                comm.starts_with(w)
            } else {
                comm == *w
            }
        });
        if watched {
            out.insert(format!("{pid} {comm}"));
        }
    }
    out
}

/// A zombie re-parented to PID 1 holds nothing but its pid, and only PID 1 can reap it: in
/// sandboxes whose init never reaps, counting it would blame the suite for the host's init.
fn is_orphaned_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    matches!((fields.next(), fields.next()), (Some("Z"), Some("1")))
}

impl Snapshot {
    /// Takes a snapshot of the machine as seen from this process.
    pub fn take() -> Result<Self, LeakGuardError> {
        Ok(Self {
            mounts: mounts()?,
            cgroups: cgroups(),
            netns: netns(),
            links: links(),
            nft_tables: nft_tables()?,
            processes: processes(),
        })
    }

    /// What `after` holds that `self` did not, one line per item; empty when nothing leaked.
    pub fn leaks_in(&self, after: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        let mut diff = |kind: &str, before: &BTreeSet<String>, now: &BTreeSet<String>| {
            out.extend(now.difference(before).map(|x| format!("{kind}: {x}")));
        };
        diff("mount", &self.mounts, &after.mounts);
        diff("cgroup", &self.cgroups, &after.cgroups);
        diff("network namespace", &self.netns, &after.netns);
        diff("link", &self.links, &after.links);
        diff("nftables table", &self.nft_tables, &after.nft_tables);
        diff("process", &self.processes, &after.processes);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_give_mountpoint_and_type() {
        let text = "36 35 98:0 /mnt1 /mnt\\040point rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:5 / /proc rw shared:2 - proc proc rw\n\
                    42 27 254:0 /run/netns /run/netns rw shared:1 - ext4 /dev/vda rw\n\
                    43 42 0:4 net:[4026532] /run/netns/pea-x rw shared:9 - nsfs nsfs rw\n";
        let m = parse_mountinfo(text);
        assert!(!m.contains("/run/netns (ext4)"), "{m:?}");
        assert!(m.contains("/run/netns/pea-x (nsfs)"), "{m:?}");
        assert!(m.contains("/mnt point (ext3)"), "{m:?}");
        assert!(m.contains("/proc (proc)"));
    }

    #[test]
    fn nft_json_tables_are_read_structurally() {
        let json = br#"{"nftables":[{"metainfo":{"version":"1.0.6"}},{"table":{"family":"inet","name":"pea-test","handle":3}}]}"#;
        assert_eq!(
            parse_nft_tables(json),
            BTreeSet::from(["inet pea-test".to_string()])
        );
    }

    #[test]
    fn only_additions_are_leaks() {
        let before = Snapshot {
            netns: ["a".into(), "gone".into()].into(),
            ..Default::default()
        };
        let after = Snapshot {
            netns: ["a".into(), "new".into()].into(),
            mounts: ["/x (tmpfs)".into()].into(),
            ..Default::default()
        };
        assert_eq!(
            before.leaks_in(&after),
            ["mount: /x (tmpfs)", "network namespace: new"]
        );
        assert!(after.leaks_in(&after).is_empty());
    }
}
