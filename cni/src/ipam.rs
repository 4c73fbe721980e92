//! host-local style IPAM: one lease file per allocated address under
//! `<dataDir>/<network>/`, all changes made while holding an exclusive `flock` on
//! `<dataDir>/<network>/lock`.
//!
//! ```text
//! <dataDir>/<network>/lock               flock target (never removed)
//! <dataDir>/<network>/last_reserved_ip   where the round-robin search of range set 0 resumes
//! <dataDir>/<network>/last_reserved_ip.1 … of range set 1 (and so on)
//! <dataDir>/<network>/10.244.1.7         {"version":1,"containerID":"…","ifname":"eth0"}
//! <dataDir>/<network>/fd00:44:1::7       the same for an IPv6 lease
//! ```
//! Lease files in host-local's own format (`<containerID>\r\n<ifname>`, or only the container id
//! from older host-local) are read too, so pea-cni can share host-local's default data dir. A
//! file named by an address that is in neither format is skipped with a warning (one bad file
//! must not block the whole network) but its address still counts as taken.
//! An attachment holds one lease per range set (host-local's dual-stack model: one IPv4 and one
//! IPv6 set give a pod one address of each family).
//! Crash safety: lease files are written as temp + fsync + rename (the round-robin hint is
//! overwritten in place: it is only a hint), and temps are only created while the lock is held, so a
//! temp seen by a lock holder is debris of a crashed holder and is removed.
//! A crash after a lease is written but before ADD finished leaves a lease whose owner the runtime
//! still knows (it retries ADD, which reuses it, or calls DEL) or GC reclaims it.
//! Concurrent ADDs serialise on the lock, so one address is never handed out twice.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

const LOCK_FILE: &str = "lock";
const LAST_RESERVED: &str = "last_reserved_ip";
const TEMP_PREFIX: &str = ".tmp-";
const LEASE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("lease directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("locking {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("no free address in {ranges} of network {network} ({used} leased)")]
    Exhausted {
        network: String,
        ranges: String,
        used: usize,
    },
    #[error("requested address {ip} is not available: {why}")]
    Unavailable { ip: IpAddr, why: String },
    #[error("releasing the leases of {container_id}/{ifname}: {}", join(errors))]
    Release {
        container_id: String,
        ifname: String,
        errors: Vec<IpamError>,
    },
}

fn join(errors: &[IpamError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> IpamError + '_ {
    move |source| IpamError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One allocated address and its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    #[serde(skip)]
    pub ip: Option<IpAddr>,
    pub version: u32,
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Empty for a lease file of older host-local, which recorded only the container id.
    pub ifname: String,
}

impl Lease {
    /// Whether this lease belongs to the attachment `(container_id, ifname)` (a lease that does
    /// not record its interface belongs to every interface of its container, as in host-local).
    pub fn owned_by(&self, container_id: &str, ifname: &str) -> bool {
        self.container_id == container_id && (self.ifname == ifname || self.ifname.is_empty())
    }

    /// Decodes a lease file: pea-cni's JSON, or host-local's `<containerID>\r\n<ifname>`.
    fn parse(bytes: &[u8]) -> Result<Lease, String> {
        if bytes.first() == Some(&b'{') {
            let lease: Lease = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            if lease.version != LEASE_VERSION {
                return Err(format!("unknown lease version {}", lease.version));
            }
            return Ok(lease);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "neither JSON nor text".to_string())?;
        let mut lines = text.lines().map(str::trim);
        let id = lines.next().unwrap_or_default();
        let ifname = lines.next().unwrap_or_default();
        let token = |s: &str| !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if id.is_empty() || !token(id) || !token(ifname) || lines.any(|l| !l.is_empty()) {
            return Err("neither pea-cni's JSON nor host-local's format".into());
        }
        Ok(Lease {
            ip: None,
            version: LEASE_VERSION,
            container_id: id.into(),
            ifname: ifname.into(),
        })
    }
}

/// The lease directory of one network.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    network: String,
}

/// A [`Store`] with its lock held; dropping it releases the lock.
#[derive(Debug)]
pub struct Locked<'a> {
    store: &'a Store,
    _lock: Flock<File>,
}

impl Store {
    /// `network` must already be validated (it becomes a directory name).
    pub fn new(data_dir: &Path, network: &str) -> Self {
        Store {
            dir: data_dir.join(network),
            network: network.into(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (0700) and takes the exclusive lock, waiting for other holders.
    pub fn lock(&self) -> Result<Locked<'_>, IpamError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err(&self.dir))?;
        self.lock_dir()
    }

    /// Takes the lock if the network's directory exists; `None` for a network that never
    /// leased anything here (DEL, GC and STATUS then leave no directory or lock file behind).
    pub fn lock_existing(&self) -> Result<Option<Locked<'_>>, IpamError> {
        match fs::metadata(&self.dir) {
            Ok(_) => self.lock_dir().map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&self.dir)(e)),
        }
    }

    fn lock_dir(&self) -> Result<Locked<'_>, IpamError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, source)| IpamError::Lock { path, source })?;
        let locked = Locked {
            store: self,
            _lock: lock,
        };
        locked.remove_stale_temps()?;
        Ok(locked)
    }
}

impl Locked<'_> {
    fn remove_stale_temps(&self) -> Result<(), IpamError> {
        for entry in fs::read_dir(&self.store.dir).map_err(io_err(&self.store.dir))? {
            let entry = entry.map_err(io_err(&self.store.dir))?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Every lease file: the leases that parse, sorted by address, and the addresses of those
    /// that do not (skipped with a warning; their addresses stay taken).
    fn scan(&self) -> Result<(Vec<Lease>, Vec<IpAddr>), IpamError> {
        let dir = &self.store.dir;
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let Ok(ip) = entry.file_name().to_string_lossy().parse::<IpAddr>() else {
                continue;
            };
            let path = entry.path();
            let parsed = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| Lease::parse(&b));
            match parsed {
                Ok(mut lease) => {
                    lease.ip = Some(ip);
                    out.push(lease);
                }
                Err(why) => {
                    tracing::warn!(path = %path.display(), %why, "skipping a lease file that cannot be read; its address stays taken");
                    unreadable.push(ip);
                }
            }
        }
        out.sort_by_key(|l| l.ip);
        Ok((out, unreadable))
    }

    /// Every lease that can be read, sorted by address (see [`Locked::scan`]).
    pub fn leases(&self) -> Result<Vec<Lease>, IpamError> {
        Ok(self.scan()?.0)
    }

    /// Every leased address, including those of unreadable lease files.
    pub fn taken(&self) -> Result<Vec<IpAddr>, IpamError> {
        let (leases, unreadable) = self.scan()?;
        Ok(leases
            .iter()
            .filter_map(|l| l.ip)
            .chain(unreadable)
            .collect())
    }

    /// Whether no address is leased at all (unreadable lease files count as leased).
    pub fn is_empty(&self) -> Result<bool, IpamError> {
        let (leases, unreadable) = self.scan()?;
        Ok(leases.is_empty() && unreadable.is_empty())
    }

    /// The addresses leased to `(container_id, ifname)`, sorted.
    pub fn find(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, IpamError> {
        Ok(self
            .leases()?
            .into_iter()
            .filter(|l| l.owned_by(container_id, ifname))
            .filter_map(|l| l.ip)
            .collect())
    }

    /// Allocates an address from range set `set` (its ranges are tried in order, each
    /// `start..=end` of one family, skipping `reserved`), or returns the one the same attachment
    /// already holds in that set, so a retried ADD gets the same address.
    pub fn allocate(
        &self,
        container_id: &str,
        ifname: &str,
        set: usize,
        ranges: &[(IpAddr, IpAddr)],
        reserved: &[IpAddr],
    ) -> Result<IpAddr, IpamError> {
        let (leases, unreadable) = self.scan()?;
        let in_set = |ip: &IpAddr| ranges.iter().any(|(s, e)| in_range(*ip, *s, *e));
        if let Some(ip) = leases
            .iter()
            .filter(|l| l.owned_by(container_id, ifname))
            .filter_map(|l| l.ip)
            .find(|ip| in_set(ip))
        {
            return Ok(ip);
        }
        let taken: std::collections::HashSet<IpAddr> = leases
            .iter()
            .filter_map(|l| l.ip)
            .chain(unreadable.iter().copied())
            .collect();
        let last = self.last_reserved(set);
        let found = ranges.iter().find_map(|(start, end)| {
            let (s, e) = (to_u128(*start), to_u128(*end));
            let v6 = start.is_ipv6();
            // Round robin from after the last reservation, like host-local, so a released address
            // is not handed to the next pod at once (stale ARP/conntrack entries of the old pod).
            let first = match last.filter(|l| in_range(*l, *start, *end)).map(to_u128) {
                Some(l) if l < e => l + 1,
                _ => s,
            };
            let span = e - s + 1;
            // Among taken+reserved+1 consecutive candidates one is free if any is: this bounds
            // the search in huge (IPv6) ranges.
            let tries = span.min((taken.len() + reserved.len() + 1) as u128);
            (0..tries)
                .map(|i| from_u128(s + (first - s + i) % span, v6))
                .find(|c| !taken.contains(c) && !reserved.contains(c))
        });
        let ip = found.ok_or_else(|| IpamError::Exhausted {
            network: self.store.network.clone(),
            ranges: ranges
                .iter()
                .map(|(s, e)| format!("{s}-{e}"))
                .collect::<Vec<_>>()
                .join(", "),
            used: taken.len(),
        })?;
        self.write_lease(ip, container_id, ifname)?;
        // The round-robin position is a hint: overwritten in place without fsync (a torn or lost
        // hint only moves where the next search starts; it is validated when read).
        let lr = self.store.dir.join(hint_file(set));
        write_hint(&lr, ip).map_err(io_err(&lr))?;
        Ok(ip)
    }

    /// Leases exactly `ip`, a static address the runtime asked for (the `ips` capability,
    /// `args.cni.ips` or `CNI_ARGS` `IP=`); the caller has checked it lies in a range.
    /// Idempotent for the same attachment.
    pub fn allocate_requested(
        &self,
        container_id: &str,
        ifname: &str,
        ip: IpAddr,
        reserved: &[IpAddr],
    ) -> Result<IpAddr, IpamError> {
        let unavailable = |why: String| Err(IpamError::Unavailable { ip, why });
        if reserved.contains(&ip) {
            return unavailable("it is a gateway address".into());
        }
        let (leases, unreadable) = self.scan()?;
        if let Some(l) = leases.iter().find(|l| l.ip == Some(ip)) {
            if l.owned_by(container_id, ifname) {
                return Ok(ip);
            }
            return unavailable(format!("leased to {}/{}", l.container_id, l.ifname));
        }
        if unreadable.contains(&ip) {
            return unavailable("its lease file cannot be read".into());
        }
        self.write_lease(ip, container_id, ifname)?;
        Ok(ip)
    }

    fn write_lease(&self, ip: IpAddr, container_id: &str, ifname: &str) -> Result<(), IpamError> {
        let lease = Lease {
            ip: None,
            version: LEASE_VERSION,
            container_id: container_id.into(),
            ifname: ifname.into(),
        };
        let path = self.store.dir.join(ip.to_string());
        let body = serde_json::to_vec(&lease).expect("lease serialises");
        atomic_write_nodirsync(&path, &body).map_err(io_err(&path))
    }

    fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        fs::read_to_string(self.store.dir.join(hint_file(set)))
            .ok()?
            .trim()
            .parse::<IpAddr>()
            .ok()
    }

    /// Releases every lease of `(container_id, ifname)`; returns the freed addresses. One lease
    /// that cannot be removed does not stop the others: all failures are reported together.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, IpamError> {
        let mut freed = Vec::new();
        let mut errors = Vec::new();
        for l in self.leases()? {
            if l.owned_by(container_id, ifname) {
                if let Some(ip) = l.ip {
                    match self.release_ip(ip) {
                        Ok(()) => freed.push(ip),
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(freed)
        } else {
            Err(IpamError::Release {
                container_id: container_id.into(),
                ifname: ifname.into(),
                errors,
            })
        }
    }

    /// Removes the lease file of `ip` (absent is fine).
    pub fn release_ip(&self, ip: IpAddr) -> Result<(), IpamError> {
        let path = self.store.dir.join(ip.to_string());
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }
}

/// The round-robin hint of range set `set` (set 0 keeps host-local's file name).
fn hint_file(set: usize) -> String {
    match set {
        0 => LAST_RESERVED.to_string(),
        n => format!("{LAST_RESERVED}.{n}"),
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(n: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    }
}

/// Whether `ip` is in `start..=end` (same family).
pub fn in_range(ip: IpAddr, start: IpAddr, end: IpAddr) -> bool {
    ip.is_ipv6() == start.is_ipv6() && (to_u128(start)..=to_u128(end)).contains(&to_u128(ip))
}

/// The number of addresses in `start..=end`.
pub fn range_size(start: IpAddr, end: IpAddr) -> u128 {
    to_u128(end)
        .saturating_sub(to_u128(start))
        .saturating_add(1)
}

/// Overwrites the hint in place at a fixed width (the longest IPv6 text): no truncation,
/// because ext4 flushes data on truncate-then-write (auto_da_alloc), which would cost a disk
/// round trip per ADD.
fn write_hint(path: &Path, ip: IpAddr) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all_at(format!("{:<39}\n", ip.to_string()).as_bytes(), 0)
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_via_temp(path, bytes, true)
}

/// Like [`atomic_write`] but without syncing the directory: the file's contents are durable
/// before it appears under its name, and a crash may lose the name itself. Used for lease files,
/// which die with the pods on a power loss anyway (the runtime's GC then reclaims them).
pub fn atomic_write_nodirsync(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_via_temp(path, bytes, false)
}

fn write_via_temp(path: &Path, bytes: &[u8], sync_dir: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!("{TEMP_PREFIX}{name}.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename itself is durable only once the directory is synced.
        if sync_dir {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn r(a: &str, b: &str) -> [(IpAddr, IpAddr); 1] {
        [(ip(a), ip(b))]
    }

    #[test]
    fn allocates_round_robin_and_reuses_for_same_attachment() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path(), "net");
        let l = store.lock().unwrap();
        let gw = [ip("10.0.0.1")];
        let a = l
            .allocate("c1", "eth0", 0, &r("10.0.0.1", "10.0.0.3"), &gw)
            .unwrap();
        assert_eq!(a, ip("10.0.0.2"));
        assert_eq!(
            l.allocate("c1", "eth0", 0, &r("10.0.0.1", "10.0.0.3"), &gw)
                .unwrap(),
            a
        );
        let b = l
            .allocate("c2", "eth0", 0, &r("10.0.0.1", "10.0.0.3"), &gw)
            .unwrap();
        assert_eq!(b, ip("10.0.0.3"));
        let e = l
            .allocate("c3", "eth0", 0, &r("10.0.0.1", "10.0.0.3"), &gw)
            .unwrap_err();
        assert!(matches!(e, IpamError::Exhausted { used: 2, .. }), "{e}");
        assert_eq!(l.release("c1", "eth0").unwrap(), vec![a]);
        assert!(l.release("c1", "eth0").unwrap().is_empty());
        assert_eq!(l.find("c2", "eth0").unwrap(), vec![b]);
        // After .3, the search wraps round to .2 (the gateway .1 is reserved).
        assert_eq!(
            l.allocate("c3", "eth0", 0, &r("10.0.0.1", "10.0.0.3"), &gw)
                .unwrap(),
            a
        );
    }

    #[test]
    fn stale_temps_are_removed_and_corrupt_leases_skipped_but_stay_taken() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path(), "net");
        drop(store.lock().unwrap());
        fs::write(store.dir().join(".tmp-10.0.0.5.999"), b"half").unwrap();
        let l = store.lock().unwrap();
        assert!(!store.dir().join(".tmp-10.0.0.5.999").exists());
        let ok = l.allocate("c1", "eth0", 0, &r("10.0.0.2", "10.0.0.2"), &[]);
        assert_eq!(ok.unwrap(), ip("10.0.0.2"));
        // Garbage, and a lease of a future version: skipped, the rest of the network works.
        fs::write(store.dir().join("10.0.0.9"), b"{").unwrap();
        fs::write(
            store.dir().join("10.0.0.8"),
            br#"{"version":9,"containerID":"x","ifname":"eth0"}"#,
        )
        .unwrap();
        let leases = l.leases().unwrap();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].ip, Some(ip("10.0.0.2")));
        assert_eq!(l.find("c1", "eth0").unwrap(), vec![ip("10.0.0.2")]);
        // Their addresses are never handed out again, nor counted free.
        let e = l
            .allocate("c2", "eth0", 0, &r("10.0.0.8", "10.0.0.9"), &[])
            .unwrap_err();
        assert!(matches!(e, IpamError::Exhausted { .. }), "{e}");
        let e = l
            .allocate_requested("c2", "eth0", ip("10.0.0.9"), &[])
            .unwrap_err();
        assert!(matches!(e, IpamError::Unavailable { .. }), "{e}");
        assert_eq!(l.release("c1", "eth0").unwrap(), vec![ip("10.0.0.2")]);
        assert!(!l.is_empty().unwrap(), "unreadable files still count");
        assert!(store.dir().join("10.0.0.9").exists());
    }

    #[test]
    fn host_local_lease_files_are_read() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path(), "net");
        let l = store.lock().unwrap();
        // Current host-local: id CRLF ifname; older host-local: the id alone.
        fs::write(store.dir().join("10.0.0.5"), b"abc123\r\neth1").unwrap();
        fs::write(store.dir().join("10.0.0.6"), b"old456").unwrap();
        let leases = l.leases().unwrap();
        assert_eq!(leases.len(), 2);
        assert_eq!(
            (leases[0].container_id.as_str(), leases[0].ifname.as_str()),
            ("abc123", "eth1")
        );
        assert_eq!(l.find("abc123", "eth1").unwrap(), vec![ip("10.0.0.5")]);
        assert!(l.find("abc123", "eth0").unwrap().is_empty());
        // A lease without an interface belongs to every interface of its container.
        assert_eq!(l.find("old456", "eth0").unwrap(), vec![ip("10.0.0.6")]);
        assert_eq!(l.release("abc123", "eth1").unwrap(), vec![ip("10.0.0.5")]);
        assert_eq!(l.release("old456", "net1").unwrap(), vec![ip("10.0.0.6")]);
        assert!(l.is_empty().unwrap());
    }

    #[test]
    fn lock_existing_creates_nothing_for_an_unused_network() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path(), "never");
        assert!(store.lock_existing().unwrap().is_none());
        assert!(!store.dir().exists());
        drop(store.lock().unwrap());
        assert!(store.lock_existing().unwrap().is_some());
    }

    #[test]
    fn concurrent_allocations_never_collide() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().to_path_buf();
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    // A Store per thread opens its own lock file description, as separate
                    // processes would; flock excludes them from each other.
                    let store = Store::new(&path, "net");
                    let l = store.lock().unwrap();
                    l.allocate(
                        &format!("c{i}"),
                        "eth0",
                        0,
                        &r("10.0.0.1", "10.0.0.254"),
                        &[],
                    )
                    .unwrap()
                })
            })
            .collect();
        let mut got: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 16);
    }

    #[test]
    fn dual_stack_sets_give_one_address_each_and_round_robin_separately() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::new(d.path(), "net");
        let l = store.lock().unwrap();
        let v4 = r("10.0.0.1", "10.0.0.254");
        // A /64: the search must not walk the whole range.
        let v6 = r("fd00::1", "fd00::ffff:ffff:ffff:fffe");
        let gw = [ip("10.0.0.1"), ip("fd00::1")];
        let a4 = l.allocate("c1", "eth0", 0, &v4, &gw).unwrap();
        let a6 = l.allocate("c1", "eth0", 1, &v6, &gw).unwrap();
        assert_eq!((a4, a6), (ip("10.0.0.2"), ip("fd00::2")));
        // Retried ADD: the same address per set.
        assert_eq!(l.allocate("c1", "eth0", 1, &v6, &gw).unwrap(), a6);
        assert_eq!(l.allocate("c1", "eth0", 0, &v4, &gw).unwrap(), a4);
        assert_eq!(l.find("c1", "eth0").unwrap(), vec![a4, a6]);
        assert_eq!(
            l.allocate("c2", "eth0", 1, &v6, &gw).unwrap(),
            ip("fd00::3")
        );
        assert!(store.dir().join("fd00::3").is_file());
        assert!(store.dir().join("last_reserved_ip.1").is_file());
        assert_eq!(l.release("c1", "eth0").unwrap(), vec![a4, a6]);
        // A set of two ranges: the second is used once the first is full.
        let set = [
            (ip("10.1.0.2"), ip("10.1.0.2")),
            (ip("10.1.1.2"), ip("10.1.1.3")),
        ];
        assert_eq!(
            l.allocate("x", "eth0", 2, &set, &[]).unwrap(),
            ip("10.1.0.2")
        );
        assert_eq!(
            l.allocate("y", "eth0", 2, &set, &[]).unwrap(),
            ip("10.1.1.2")
        );
        assert_eq!(range_size(ip("fd00::"), ip("fd00::ffff")), 0x10000);
    }
}
