//! The process user: CRI run_as_user / run_as_group / run_as_username or the image's `User`
//! ("uid", "uid:gid", "name", "name:group"), resolved against the rootfs's /etc/passwd and
//! /etc/group, with the supplemental groups containerd gives (the user's groups from
//! /etc/group under the Merge policy, then the config's).

use std::path::{Component, Path, PathBuf};

use k8s_cri::v1 as cri;
use oci_spec::runtime::{User, UserBuilder};

use super::{invalid, io_error, OciError};

/// One /etc/passwd line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

/// One /etc/group line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Resolved {
    pub uid: u32,
    pub gid: u32,
    /// The user's name when /etc/passwd knows it (or it was given by name).
    pub name: Option<String>,
}

/// A CRI id (int64) as a uid/gid.
pub(super) fn id(v: i64, field: &str) -> Result<u32, OciError> {
    u32::try_from(v).map_err(|_| invalid(field, format!("{v} is not a valid id (0..=4294967295)")))
}

pub(super) fn id_str(v: i64, field: &str) -> Result<String, OciError> {
    id(v, field).map(|v| v.to_string())
}

/// `path` (absolute, inside the container) resolved under `root` the way the container would
/// see it: symlinks followed relative to `root`, `..` never climbing above it.
pub(super) fn path_in_root(root: &Path, path: &str) -> Result<Option<PathBuf>, OciError> {
    let mut pending: Vec<String> = components(path);
    pending.reverse();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate: PathBuf = root.join(
            resolved
                .iter()
                .chain(std::iter::once(&part))
                .collect::<PathBuf>(),
        );
        match std::fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(OciError::Io {
                        path: candidate,
                        source: std::io::Error::from_raw_os_error(nix::libc::ELOOP),
                    });
                }
                let target = std::fs::read_link(&candidate).map_err(io_error(&candidate))?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved.clear();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            Ok(_) => resolved.push(part),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&candidate)(e)),
        }
    }
    Ok(Some(root.join(resolved.iter().collect::<PathBuf>())))
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            _ => None,
        })
        .collect()
}

/// The lines of a file in the rootfs; none when it does not exist.
fn read_lines(root: &Path, path: &str) -> Result<Vec<String>, OciError> {
    let Some(p) = path_in_root(root, path)? else {
        return Ok(Vec::new());
    };
    match std::fs::read_to_string(&p) {
        Ok(s) => Ok(s.lines().map(str::to_string).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_error(&p)(e)),
    }
}

fn passwd(root: &Path) -> Result<Vec<PasswdEntry>, OciError> {
    Ok(read_lines(root, "/etc/passwd")?
        .iter()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
            })
        })
        .collect())
}

fn groups(root: &Path) -> Result<Vec<GroupEntry>, OciError> {
    Ok(read_lines(root, "/etc/group")?
        .iter()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect())
}

/// Resolves `user[:group]` (each numeric or a name); `None` is root. A numeric uid unknown to
/// /etc/passwd gets gid 0 (as containerd's WithUserID); a name that is not there is an error
/// naming `field`.
pub(super) fn resolve(
    root: &Path,
    spec: Option<(&str, Option<&str>)>,
    field: &str,
) -> Result<Resolved, OciError> {
    let (user, group) = spec.unwrap_or(("0", None));
    let users = passwd(root)?;
    let mut resolved = match user.parse::<u32>() {
        Ok(uid) => {
            let entry = users.iter().find(|u| u.uid == uid);
            Resolved {
                uid,
                gid: entry.map_or(0, |e| e.gid),
                name: entry.map(|e| e.name.clone()),
            }
        }
        Err(_) => {
            if user.is_empty() {
                return Err(invalid(field, "empty user name"));
            }
            let entry = users.iter().find(|u| u.name == user).ok_or_else(|| {
                invalid(
                    field,
                    format!("user {user:?} not found in the image's /etc/passwd"),
                )
            })?;
            Resolved {
                uid: entry.uid,
                gid: entry.gid,
                name: Some(entry.name.clone()),
            }
        }
    };
    if let Some(group) = group {
        resolved.gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                groups(root)?
                    .iter()
                    .find(|g| g.name == group)
                    .ok_or_else(|| {
                        invalid(
                            field,
                            format!("group {group:?} not found in the image's /etc/group"),
                        )
                    })?
                    .gid
            }
        };
    }
    Ok(resolved)
}

/// The groups /etc/group lists `name` as a member of (not the group named like the user).
fn member_gids(root: &Path, name: &str) -> Result<Vec<u32>, OciError> {
    Ok(groups(root)?
        .into_iter()
        .filter(|g| g.name != name && g.members.iter().any(|m| m == name))
        .map(|g| g.gid)
        .collect())
}

/// The container's process user.
pub(super) fn container_user(
    root: &Path,
    sc: &cri::LinuxContainerSecurityContext,
    image_user: Option<&str>,
) -> Result<User, OciError> {
    const SC: &str = "linux.security_context";
    let has_user = sc.run_as_user.is_some() || !sc.run_as_username.is_empty();
    if sc.run_as_group.is_some() && !has_user {
        return Err(invalid(
            format!("{SC}.run_as_group"),
            "set without run_as_user or run_as_username",
        ));
    }
    if sc.run_as_user.is_some() && !sc.run_as_username.is_empty() {
        return Err(invalid(
            format!("{SC}.run_as_username"),
            "set together with run_as_user; only one may be given",
        ));
    }
    let group = sc
        .run_as_group
        .as_ref()
        .map(|g| id_str(g.value, &format!("{SC}.run_as_group")))
        .transpose()?;
    let (user, group, field) = if !sc.run_as_username.is_empty() {
        (
            sc.run_as_username.clone(),
            group,
            format!("{SC}.run_as_username"),
        )
    } else if let Some(u) = &sc.run_as_user {
        (
            id_str(u.value, &format!("{SC}.run_as_user"))?,
            group,
            format!("{SC}.run_as_user"),
        )
    } else if let Some(img) = image_user.filter(|u| !u.is_empty()) {
        let (u, g) = match img.split_once(':') {
            Some((u, g)) => (u.to_string(), Some(g.to_string())),
            None => (img.to_string(), None),
        };
        (u, g, "image.config.user".to_string())
    } else {
        ("0".to_string(), None, format!("{SC}.run_as_user"))
    };
    let resolved = resolve(root, Some((&user, group.as_deref())), &field)?;

    // Supplemental groups: the primary gid first, then (Merge) the user's groups from
    // /etc/group, then the config's.
    let mut gids = vec![resolved.gid];
    let policy =
        cri::SupplementalGroupsPolicy::try_from(sc.supplemental_groups_policy).map_err(|_| {
            invalid(
                format!("{SC}.supplemental_groups_policy"),
                format!("unknown policy {}", sc.supplemental_groups_policy),
            )
        })?;
    if policy == cri::SupplementalGroupsPolicy::Merge {
        if let Some(name) = resolved.name.as_deref() {
            for g in member_gids(root, name)? {
                if !gids.contains(&g) {
                    gids.push(g);
                }
            }
        }
    }
    for (i, g) in sc.supplemental_groups.iter().enumerate() {
        let g = id(*g, &format!("{SC}.supplemental_groups[{i}]"))?;
        if !gids.contains(&g) {
            gids.push(g);
        }
    }
    UserBuilder::default()
        .uid(resolved.uid)
        .gid(resolved.gid)
        .additional_gids(gids)
        .build()
        .map_err(|e| invalid(SC, e.to_string()))
}
