//! kubelet's AtomicWriter: a volume's files live in a timestamped directory `..TIMESTAMP`, the
//! `..data` symlink points at it, and each visible name is a symlink through `..data`. An update
//! writes a new timestamped directory and swaps `..data` with one rename, so a reader sees the
//! old set or the new set, never a mix.

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::VolumeError;

/// One file of the payload: relative path → (content, mode).
pub type Payload = BTreeMap<String, (Vec<u8>, u32)>;

/// Refuses paths a hostile key could use to escape the volume (as kube's validatePath).
pub fn check_path(volume: &str, p: &str) -> Result<(), VolumeError> {
    let bad = |why: &str| VolumeError::Invalid {
        volume: volume.to_string(),
        message: format!("path {p:?} {why}"),
    };
    if p.is_empty() {
        return Err(bad("is empty"));
    }
    if p.len() > 4096 {
        return Err(bad("is too long"));
    }
    let path = Path::new(p);
    if path.is_absolute() {
        return Err(bad("must be relative"));
    }
    for c in path.components() {
        match c {
            Component::Normal(s) if s.to_string_lossy().starts_with("..") => {
                return Err(bad("must not start with '..'"))
            }
            Component::Normal(_) => {}
            _ => return Err(bad("must not contain '..' or '.'")),
        }
    }
    Ok(())
}

/// Writes `payload` into `dir` atomically; returns whether anything changed.
pub fn write(volume: &str, dir: &Path, payload: &Payload) -> Result<bool, VolumeError> {
    for p in payload.keys() {
        check_path(volume, p)?;
    }
    let io = |what: &str, path: &Path, e: std::io::Error| VolumeError::Io {
        volume: volume.to_string(),
        what: format!("{what} {}", path.display()),
        source: e,
    };
    std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    let data_link = dir.join("..data");
    if let Ok(current) = std::fs::read_link(&data_link) {
        if same_payload(&dir.join(&current), payload) {
            return Ok(false);
        }
    }
    let stamp = chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let ts_dir = dir.join(&stamp);
    std::fs::create_dir(&ts_dir).map_err(|e| io("creating", &ts_dir, e))?;
    for (rel, (content, mode)) in payload {
        let path = ts_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
        }
        std::fs::write(&path, content).map_err(|e| io("writing", &path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
            .map_err(|e| io("chmod", &path, e))?;
    }
    let old = std::fs::read_link(&data_link).ok();
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    symlink(&stamp, &tmp_link).map_err(|e| io("linking", &tmp_link, e))?;
    std::fs::rename(&tmp_link, &data_link).map_err(|e| io("swapping", &data_link, e))?;
    // Visible names: the first path component of each payload entry, through ..data.
    let mut tops: Vec<String> = payload
        .keys()
        .filter_map(|k| k.split('/').next().map(str::to_string))
        .collect();
    tops.dedup();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(PathBuf::from("..data").join(top), &link)
                .map_err(|e| io("linking", &link, e))?;
        }
    }
    // Names no longer in the payload go, and so does the previous timestamped directory.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.starts_with("..") && !tops.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(old) = old.filter(|o| o != Path::new(&stamp)) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

fn same_payload(ts_dir: &Path, payload: &Payload) -> bool {
    let mut count = 0;
    fn walk(base: &Path, dir: &Path, n: &mut usize, payload: &Payload) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if !walk(base, &p, n, payload) {
                    return false;
                }
                continue;
            }
            let rel = p
                .strip_prefix(base)
                .unwrap_or(&p)
                .to_string_lossy()
                .to_string();
            let Some((content, mode)) = payload.get(&rel) else {
                return false;
            };
            let Ok(meta) = std::fs::metadata(&p) else {
                return false;
            };
            if meta.permissions().mode() & 0o7777 != *mode {
                return false;
            }
            match std::fs::read(&p) {
                Ok(c) if &c == content => *n += 1,
                _ => return false,
            }
        }
        true
    }
    walk(ts_dir, ts_dir, &mut count, payload) && count == payload.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_atomically_and_removes_old_names() {
        let d = tempfile::tempdir().unwrap();
        let mut p = Payload::new();
        p.insert("a".into(), (b"1".to_vec(), 0o644));
        p.insert("sub/b".into(), (b"2".to_vec(), 0o600));
        assert!(write("v", d.path(), &p).unwrap());
        assert_eq!(std::fs::read(d.path().join("a")).unwrap(), b"1");
        assert_eq!(std::fs::read(d.path().join("sub/b")).unwrap(), b"2");
        assert!(
            !write("v", d.path(), &p).unwrap(),
            "unchanged payload is a no-op"
        );
        p.remove("a");
        p.insert("sub/b".into(), (b"3".to_vec(), 0o600));
        assert!(write("v", d.path(), &p).unwrap());
        assert!(std::fs::symlink_metadata(d.path().join("a")).is_err());
        assert_eq!(std::fs::read(d.path().join("sub/b")).unwrap(), b"3");
        let stamps = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.starts_with("..") && n != "..data"
            })
            .count();
        assert_eq!(stamps, 1, "the old timestamped dir is gone");
    }

    #[test]
    fn hostile_keys_are_refused() {
        for p in ["../x", "/etc/passwd", "a/../../b", "..data", ""] {
            assert!(check_path("v", p).is_err(), "{p}");
        }
        assert!(check_path("v", "ok/file.txt").is_ok());
    }
}
