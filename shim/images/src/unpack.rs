//! Applies one layer tar to its own snapshot directory in overlayfs format: whiteouts become
//! 0:0 character devices and opaque markers the `trusted.overlay.opaque` xattr, so the
//! snapshot chain mounts directly as overlay lower dirs.
//!
//! Hostile archives are refused, never "fixed up": absolute names, `..`, writes through a
//! symlink (any parent that is a symlink), hard links leaving the layer, device nodes unless
//! allowed, `trusted.*` xattrs, and more uncompressed bytes than the cap. The caller unpacks
//! into a temporary directory and removes it on error, so nothing partial survives.

use std::cell::Cell;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::EntryType;

pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer {layer}: {path}: {source}")]
    Io {
        layer: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("layer {layer}: reading the archive: {source}")]
    Archive { layer: String, source: io::Error },
    #[error("layer {layer}: entry {entry:?} escapes the snapshot: {reason}")]
    Escape {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("layer {layer}: entry {entry:?} is a {kind} device {major}:{minor}; device nodes are refused (set allow_devices to create them)")]
    Device {
        layer: String,
        entry: String,
        kind: &'static str,
        major: u32,
        minor: u32,
    },
    #[error("layer {layer}: uncompressed content exceeds the cap of {limit} bytes (decompression bomb?)")]
    Bomb { layer: String, limit: u64 },
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    Invalid {
        layer: String,
        entry: String,
        reason: String,
    },
}

/// What an unpack may do.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Create character/block device nodes (only effective as root; skipped with a note
    /// otherwise). Off by default: a device node in an image is a way to reach host hardware.
    pub allow_devices: bool,
    /// Uncompressed bytes one layer may expand to.
    pub max_layer_bytes: u64,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self {
            allow_devices: false,
            max_layer_bytes: 32 << 30,
        }
    }
}

/// What an unpack did.
#[derive(Debug, Clone, Default)]
pub struct UnpackStats {
    pub entries: u64,
    /// Bytes of regular file content written.
    pub file_bytes: u64,
    /// Things skipped, for the log.
    pub notes: Vec<String>,
}

/// A reader that fails once more than `limit` bytes pass.
struct Capped<R> {
    inner: R,
    left: u64,
    tripped: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.tripped.set(true);
            return Err(io::Error::other("layer exceeds its uncompressed size cap"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Applies the tar stream `reader` to `root` (an empty directory), then drains `reader` to its
/// end so a hasher wrapped around it sees every byte.
pub fn apply_layer<R: Read>(
    root: &Path,
    reader: R,
    opts: &UnpackOptions,
    layer: &str,
) -> Result<UnpackStats, UnpackError> {
    let tripped = Rc::new(Cell::new(false));
    let capped = Capped {
        inner: reader,
        left: opts.max_layer_bytes,
        tripped: tripped.clone(),
    };
    let bomb = || UnpackError::Bomb {
        layer: layer.into(),
        limit: opts.max_layer_bytes,
    };
    let mut archive = tar::Archive::new(capped);
    let mut u = Unpacker {
        root,
        layer,
        opts,
        stats: UnpackStats::default(),
        dirs: Vec::new(),
        is_root: nix::unistd::geteuid().is_root(),
        buf: vec![0u8; 256 << 10],
    };
    let result = (|| {
        let entries = archive.entries().map_err(|e| u.archive_err(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| u.archive_err(e))?;
            u.entry(&mut entry)?;
        }
        Ok(())
    })();
    if tripped.get() {
        return Err(bomb());
    }
    result?;
    // Directory times last: creating children changed them.
    for (path, mtime) in std::mem::take(&mut u.dirs).into_iter().rev() {
        set_mtime(&path, mtime).map_err(|e| u.io(&path, e))?;
    }
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| {
        if tripped.get() {
            bomb()
        } else {
            UnpackError::Archive {
                layer: layer.into(),
                source: e,
            }
        }
    })?;
    Ok(u.stats)
}

struct Unpacker<'a> {
    root: &'a Path,
    layer: &'a str,
    opts: &'a UnpackOptions,
    stats: UnpackStats,
    dirs: Vec<(PathBuf, u64)>,
    is_root: bool,
    buf: Vec<u8>,
}

fn set_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    let t = TimeSpec::new(mtime as i64, 0);
    utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}

/// Removes whatever is at `path` (not following symlinks).
fn remove_existing(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

impl Unpacker<'_> {
    fn io(&self, path: &Path, source: io::Error) -> UnpackError {
        UnpackError::Io {
            layer: self.layer.into(),
            path: path.to_path_buf(),
            source,
        }
    }

    fn archive_err(&self, source: io::Error) -> UnpackError {
        UnpackError::Archive {
            layer: self.layer.into(),
            source,
        }
    }

    fn escape(&self, entry: &str, reason: impl Into<String>) -> UnpackError {
        UnpackError::Escape {
            layer: self.layer.into(),
            entry: entry.into(),
            reason: reason.into(),
        }
    }

    /// Validates an archive name and returns it relative to the root (empty for the root).
    fn relative(&self, name: &[u8]) -> Result<PathBuf, UnpackError> {
        let shown = String::from_utf8_lossy(name).into_owned();
        let path = Path::new(OsStr::from_bytes(name));
        let mut out = PathBuf::new();
        for c in path.components() {
            match c {
                Component::Normal(n) => out.push(n),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.escape(&shown, "absolute path"))
                }
                Component::ParentDir => return Err(self.escape(&shown, "\"..\" component")),
            }
        }
        Ok(out)
    }

    /// Makes sure every parent of `rel` is a real directory inside the root (creating missing
    /// ones), so nothing is ever written through a symlink.
    fn parents(&self, rel: &Path, shown: &str) -> Result<(), UnpackError> {
        let mut cur = self.root.to_path_buf();
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        for c in parent.components() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.escape(
                        shown,
                        format!(
                            "parent {} is a symlink; writing through symlinks is refused",
                            cur.strip_prefix(self.root).unwrap_or(&cur).display()
                        ),
                    ))
                }
                Ok(_) => {
                    return Err(UnpackError::Invalid {
                        layer: self.layer.into(),
                        entry: shown.into(),
                        reason: format!(
                            "parent {} is not a directory",
                            cur.strip_prefix(self.root).unwrap_or(&cur).display()
                        ),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&cur).map_err(|e| self.io(&cur, e))?;
                }
                Err(e) => return Err(self.io(&cur, e)),
            }
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&name).into_owned();
        let rel = self.relative(&name)?;
        self.stats.entries += 1;
        if rel.as_os_str().is_empty() {
            // The root itself ("./"): the snapshot directory keeps its own metadata.
            return Ok(());
        }
        self.parents(&rel, &shown)?;
        let path = self.root.join(&rel);
        let base = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();

        if base == OPAQUE_MARKER {
            let dir = path.parent().expect("marker has a parent").to_path_buf();
            if !dir.is_dir() {
                fs::create_dir(&dir).map_err(|e| self.io(&dir, e))?;
            }
            return xattr::set(&dir, OPAQUE_XATTR, b"y").map_err(|e| self.io(&dir, e));
        }
        if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // aufs bookkeeping (.wh..wh.plnk and friends): meaningless for overlay.
                return Ok(());
            }
            let target = path.with_file_name(hidden);
            remove_existing(&target).map_err(|e| self.io(&target, e))?;
            return mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| self.io(&target, e.into()));
        }

        let header = entry.header();
        let mode = header.mode().map_err(|e| self.archive_err(e))? & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);

        match kind {
            EntryType::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        fs::remove_file(&path).map_err(|e| self.io(&path, e))?;
                        fs::create_dir(&path).map_err(|e| self.io(&path, e))?;
                    }
                    Err(_) => fs::create_dir(&path).map_err(|e| self.io(&path, e))?,
                }
                self.dirs.push((path.clone(), mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                remove_existing(&path).map_err(|e| self.io(&path, e))?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| self.io(&path, e))?;
                loop {
                    let n = match entry.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(self.archive_err(e)),
                    };
                    f.write_all(&self.buf[..n]).map_err(|e| self.io(&path, e))?;
                    self.stats.file_bytes += n as u64;
                }
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.invalid(&shown, "symlink without a target"))?
                    .into_owned();
                remove_existing(&path).map_err(|e| self.io(&path, e))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(|e| self.io(&path, e))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.invalid(&shown, "hard link without a target"))?
                    .into_owned();
                let target_rel = self.relative(&target).map_err(|e| match e {
                    UnpackError::Escape { reason, .. } => self.escape(
                        &shown,
                        format!(
                            "hard link target {:?}: {reason}",
                            String::from_utf8_lossy(&target)
                        ),
                    ),
                    other => other,
                })?;
                self.parents(&target_rel, &shown)?;
                let target_path = self.root.join(&target_rel);
                match fs::symlink_metadata(&target_path) {
                    Ok(m) if !m.is_dir() => {}
                    _ => {
                        return Err(self.invalid(
                            &shown,
                            format!(
                                "hard link target {} is not a file of this layer",
                                target_rel.display()
                            ),
                        ))
                    }
                }
                if target_path != path {
                    remove_existing(&path).map_err(|e| self.io(&path, e))?;
                    fs::hard_link(&target_path, &path).map_err(|e| self.io(&path, e))?;
                }
                // A hard link shares its target's metadata; nothing more to set.
                return Ok(());
            }
            EntryType::Char | EntryType::Block => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let kind_name = if kind == EntryType::Char {
                    "character"
                } else {
                    "block"
                };
                if !self.opts.allow_devices {
                    return Err(UnpackError::Device {
                        layer: self.layer.into(),
                        entry: shown,
                        kind: kind_name,
                        major,
                        minor,
                    });
                }
                if !self.is_root {
                    self.stats.notes.push(format!(
                        "skipped {kind_name} device {shown} ({major}:{minor}): not root"
                    ));
                    return Ok(());
                }
                remove_existing(&path).map_err(|e| self.io(&path, e))?;
                let sflag = if kind == EntryType::Char {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                let dev = nix::sys::stat::makedev(major as u64, minor as u64);
                mknod(&path, sflag, Mode::from_bits_truncate(mode), dev)
                    .map_err(|e| self.io(&path, e.into()))?;
            }
            EntryType::Fifo => {
                remove_existing(&path).map_err(|e| self.io(&path, e))?;
                nix::unistd::mkfifo(&path, Mode::from_bits_truncate(mode))
                    .map_err(|e| self.io(&path, e.into()))?;
            }
            other => {
                return Err(self.invalid(&shown, format!("unsupported tar entry type {other:?}")));
            }
        }

        let is_symlink = kind == EntryType::Symlink;
        if self.is_root {
            std::os::unix::fs::lchown(&path, Some(uid as u32), Some(gid as u32))
                .map_err(|e| self.io(&path, e))?;
        }
        if !is_symlink {
            // After chown: chown clears set-id bits.
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|e| self.io(&path, e))?;
        }
        // After chown too: chown drops security.capability.
        self.xattrs(entry, &path, &shown)?;
        if kind != EntryType::Directory {
            set_mtime(&path, mtime).map_err(|e| self.io(&path, e))?;
        }
        Ok(())
    }

    fn invalid(&self, entry: &str, reason: impl Into<String>) -> UnpackError {
        UnpackError::Invalid {
            layer: self.layer.into(),
            entry: entry.into(),
            reason: reason.into(),
        }
    }

    fn xattrs<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let Some(exts) = entry.pax_extensions().map_err(|e| self.archive_err(e))? else {
            return Ok(());
        };
        let mut attrs = Vec::new();
        for ext in exts {
            let ext = ext.map_err(|e| self.archive_err(e))?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                attrs.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
        for (name, value) in attrs {
            if name.starts_with("trusted.") {
                // trusted.overlay.* would forge whiteouts or redirects in the mounted rootfs.
                return Err(self.invalid(shown, format!("xattr {name} is refused")));
            }
            if let Err(e) = xattr::set(path, &name, &value) {
                self.stats
                    .notes
                    .push(format!("{shown}: xattr {name} not set: {e}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn header(kind: EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(mtime);
        h
    }

    #[test]
    fn whiteouts_become_overlay_markers_and_times_are_kept() {
        let root_user = nix::unistd::geteuid().is_root();
        let data = tar_of(|b| {
            let mut h = header(EntryType::Directory, 0o755, 0, 1000);
            b.append_data(&mut h, "d", io::empty()).unwrap();
            let mut h = header(EntryType::Regular, 0o640, 2, 2000);
            b.append_data(&mut h, "d/f", &b"hi"[..]).unwrap();
            let mut h = header(EntryType::Symlink, 0o777, 0, 3000);
            b.append_link(&mut h, "d/l", "/etc/shadow").unwrap();
            if root_user {
                let mut h = header(EntryType::Regular, 0o644, 0, 0);
                b.append_data(&mut h, "d/.wh.gone", io::empty()).unwrap();
                let mut h = header(EntryType::Regular, 0o644, 0, 0);
                b.append_data(&mut h, "o/.wh..wh..opq", io::empty())
                    .unwrap();
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let stats = apply_layer(dir.path(), &data[..], &UnpackOptions::default(), "t").unwrap();
        assert_eq!(stats.file_bytes, 2);
        let f = fs::metadata(dir.path().join("d/f")).unwrap();
        assert_eq!((f.mode() & 0o7777, f.mtime()), (0o640, 2000));
        assert_eq!(fs::metadata(dir.path().join("d")).unwrap().mtime(), 1000);
        // A symlink pointing anywhere is fine as long as nothing is written through it.
        assert_eq!(
            fs::read_link(dir.path().join("d/l")).unwrap(),
            Path::new("/etc/shadow")
        );
        assert_eq!(
            fs::symlink_metadata(dir.path().join("d/l"))
                .unwrap()
                .mtime(),
            3000
        );
        if root_user {
            let w = fs::symlink_metadata(dir.path().join("d/gone")).unwrap();
            assert!(w.file_type().is_char_device() && w.rdev() == 0);
            assert!(!dir.path().join("d/.wh.gone").exists());
            assert_eq!(
                xattr::get(dir.path().join("o"), OPAQUE_XATTR).unwrap(),
                Some(b"y".to_vec())
            );
        }
    }

    #[test]
    fn forged_overlay_xattrs_and_truncated_archives_are_errors() {
        let data = tar_of(|b| {
            b.append_pax_extensions([("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..])])
                .unwrap();
            let mut h = header(EntryType::Directory, 0o755, 0, 0);
            b.append_data(&mut h, "x", io::empty()).unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let e = apply_layer(dir.path(), &data[..], &UnpackOptions::default(), "t").unwrap_err();
        assert!(
            e.to_string()
                .contains("xattr trusted.overlay.opaque is refused"),
            "{e}"
        );

        let data = tar_of(|b| {
            let mut h = header(EntryType::Regular, 0o644, 4096, 0);
            b.append_data(&mut h, "big", &[7u8; 4096][..]).unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let e = apply_layer(dir.path(), &data[..1000], &UnpackOptions::default(), "t").unwrap_err();
        assert!(matches!(e, UnpackError::Archive { .. }), "{e}");
    }
}
