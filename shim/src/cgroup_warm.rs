//! Keeps the kernel's cgroup v1 attach path warm while pods start.
//!
//! Every write to a `cgroup.procs` or `tasks` file (the runtime's attach of a new container's
//! init) takes the global `cgroup_threadgroup_rwsem` for writing, and entering that percpu rwsem
//! from idle waits for an RCU grace period (`rcu_sync_enter`: 8–20 ms on this 2-core VM). After a
//! writer leaves, the rcu_sync stays "passed" for about one more grace period, and a writer that
//! comes meanwhile does not wait. Each pod pays that wait twice (pause and container), serially,
//! after its other work.
//!
//! So while a pod start is in flight ([`CgroupWarmer::hold`]), a thread of the shim writes its
//! own thread id into the `tasks` file of the v1 cgroup the shim is in, every [`POKE_EVERY`]: a
//! migration into the cgroup a thread is already in moves nothing and runs no controller
//! callback, but it enters the rwsem. The first poke's grace period overlaps the pod's network
//! and rootfs work; the runtime's attaches then find the grace period passed.
//!
//! Why this shape: a pid the kernel cannot find would be the safest poke, but since 6.x the
//! task is looked up before the lock is taken (measured: `ESRCH` answers in 0.1 ms, warming
//! nothing). Only the warmer's own thread is written, never the shim's pid, and the cgroup is
//! read from `/proc/self/cgroup` (the process's) before every poke: when something moves the
//! shim meanwhile, a poke racing with it can at worst leave this one thread behind until its
//! next poke follows the process. The host's cgroup layout and mount options are untouched (on
//! cgroup v2, `favordynmods` removes the wait for every writer; there the warmer is off).
//!
//! The cost: each poke holds the rwsem for writing ~0.1 ms, during which forks and exits on the
//! host wait; only while pod starts are in flight, and the runtime's own attaches do the same.
//! Best effort: with no v1 hierarchy, or after a failed poke, the warmer says so once and stops;
//! pod starts are only slower, never failed.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often the attach path is entered while a hold is active: a write 10 ms after the last
/// one still found the grace period passed here and one 20 ms after did not (it waited 8.8 ms);
/// 4 ms keeps the window open with room for a busy scheduler.
pub const POKE_EVERY: Duration = Duration::from_millis(4);

/// A hold never keeps the thread poking longer than this (a pod start's own bound is the
/// runtime's 60 s call timeout; a hold outliving it is a bug, not a reason to poke forever).
pub const MAX_HOLD: Duration = Duration::from_secs(60);

/// v1 hierarchies tried first, in this order (any one will do: the lock is global). Not
/// cpuset or memory: their attach callbacks are the heaviest, should a move ever happen.
const PREFERRED: [&str; 4] = ["pids", "freezer", "devices", "cpu"];

#[derive(Debug, Default)]
struct State {
    holders: usize,
    /// The latest moment any current hold may keep the thread poking.
    until: Option<Instant>,
    thread_running: bool,
    disabled: bool,
}

#[derive(Debug)]
struct Inner {
    /// Where the v1 hierarchies are mounted (`/sys/fs/cgroup`); `None`: inert.
    mount_root: Option<PathBuf>,
    /// Read before each poke (`/proc/self/cgroup`).
    proc_cgroup: PathBuf,
    state: Mutex<State>,
    wake: Condvar,
}

/// Shared by every RPC; cheap to clone.
#[derive(Debug, Clone)]
pub struct CgroupWarmer {
    inner: Arc<Inner>,
}

/// While alive, the attach path is kept warm.
#[derive(Debug)]
pub struct Hold {
    inner: Arc<Inner>,
}

impl CgroupWarmer {
    /// A warmer for the shim's own v1 cgroup under `/sys/fs/cgroup`; inert when it has none.
    pub fn for_self() -> Self {
        let root = Path::new("/sys/fs/cgroup");
        let found = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|t| own_tasks_file(&t, root));
        match &found {
            Some(p) => tracing::debug!(file = %p.display(), "cgroup attach warmer"),
            None => tracing::debug!("cgroup attach warmer: no cgroup v1 hierarchy; off"),
        }
        Self::new(
            found.map(|_| root.to_path_buf()),
            PathBuf::from("/proc/self/cgroup"),
        )
    }

    /// A warmer poking the `tasks` file that `proc_cgroup` (a `/proc/<pid>/cgroup` text) names
    /// under `mount_root` (`None`: inert).
    pub fn new(mount_root: Option<PathBuf>, proc_cgroup: PathBuf) -> Self {
        Self {
            inner: Arc::new(Inner {
                mount_root,
                proc_cgroup,
                state: Mutex::default(),
                wake: Condvar::new(),
            }),
        }
    }

    /// Keeps the attach path warm until the returned hold is dropped (at most [`MAX_HOLD`]).
    pub fn hold(&self) -> Hold {
        let mut st = self.inner.state.lock().expect("warmer state");
        st.holders += 1;
        let until = Instant::now() + MAX_HOLD;
        st.until = Some(st.until.map_or(until, |u| u.max(until)));
        if self.inner.mount_root.is_some() && !st.disabled && !st.thread_running {
            let inner = self.inner.clone();
            let spawned = std::thread::Builder::new()
                .name("cgroup-warm".into())
                .spawn(move || poke_loop(&inner));
            match spawned {
                Ok(_) => st.thread_running = true,
                Err(e) => tracing::debug!(error = %e, "cgroup attach warmer: no thread"),
            }
        }
        Hold {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut st = self.inner.state.lock().expect("warmer state");
        st.holders = st.holders.saturating_sub(1);
        if st.holders == 0 {
            st.until = None;
            self.inner.wake.notify_all();
        }
    }
}

/// Pokes while anyone holds (and within the holds' bound), then ends the thread.
fn poke_loop(inner: &Inner) {
    let root = inner
        .mount_root
        .as_deref()
        .expect("only spawned with a root");
    let tid = nix::unistd::gettid().to_string();
    loop {
        {
            let mut st = inner.state.lock().expect("warmer state");
            let active = st.holders > 0 && st.until.is_some_and(|u| Instant::now() < u);
            if !active || st.disabled {
                // Under the same lock as the check: a hold arriving now spawns a new thread.
                st.thread_running = false;
                return;
            }
        }
        if let Err(e) = poke(&inner.proc_cgroup, root, &tid) {
            tracing::warn!(error = %e,
                "cgroup attach warmer: writing our own thread id failed; pod starts will wait for RCU grace periods");
            let mut st = inner.state.lock().expect("warmer state");
            st.disabled = true;
            st.thread_running = false;
            return;
        }
        let st = inner.state.lock().expect("warmer state");
        if st.holders > 0 {
            // Woken early only when the last hold goes.
            let _ = inner.wake.wait_timeout(st, POKE_EVERY);
        }
    }
}

/// Moves this thread into the cgroup its process is in: nothing moves, the rwsem is entered.
fn poke(proc_cgroup: &Path, root: &Path, tid: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string(proc_cgroup)?;
    let file = own_tasks_file(&text, root).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no cgroup v1 tasks file in {}", proc_cgroup.display()),
        )
    })?;
    OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|mut f| f.write_all(tid.as_bytes()))
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))
}

/// The `tasks` file of our own cgroup in a mounted v1 hierarchy, from `/proc/self/cgroup`'s
/// text: a controller of [`PREFERRED`] first, then any other v1 hierarchy except cpuset and
/// memory. The unified (v2) hierarchy is never chosen.
pub fn own_tasks_file(proc_self_cgroup: &str, mount_root: &Path) -> Option<PathBuf> {
    let mut v1: Vec<(String, String)> = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        for c in ctrls.split(',').filter(|c| !c.is_empty()) {
            // Named hierarchies (name=systemd) are mounted under their name (systemd).
            v1.push((c.trim_start_matches("name=").to_string(), path.to_string()));
        }
    }
    let ranked = PREFERRED
        .iter()
        .filter_map(|p| v1.iter().find(|(c, _)| c == p))
        .chain(v1.iter().filter(|(c, _)| c != "cpuset" && c != "memory"));
    ranked
        .map(|(c, path)| {
            mount_root
                .join(c)
                .join(path.trim_start_matches('/'))
                .join("tasks")
        })
        .find(|f| f.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str =
        "9:name=systemd:/\n8:pids:/p\n4:memory:/m/x\n3:cpuset:/\n1:cpu:/c\n0::/u\n";

    fn tree(dirs: &[&str]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for d in dirs {
            let d = t.path().join(d);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("tasks"), "").unwrap();
        }
        t
    }

    #[test]
    fn a_preferred_v1_controller_wins() {
        let t = tree(&["memory/m/x", "pids/p", "cpu/c", "unified/u"]);
        assert_eq!(
            own_tasks_file(HYBRID, t.path()).unwrap(),
            t.path().join("pids/p/tasks")
        );
    }

    #[test]
    fn other_v1_hierarchies_but_never_memory_cpuset_or_v2() {
        let t = tree(&["memory/m/x", "cpuset", "systemd", "u"]);
        assert_eq!(
            own_tasks_file(HYBRID, t.path()).unwrap(),
            t.path().join("systemd/tasks")
        );
        let t = tree(&["memory/m/x", "cpuset", "u", "unified/u"]);
        assert_eq!(own_tasks_file(HYBRID, t.path()), None);
        assert_eq!(own_tasks_file("0::/u\n", t.path()), None);
    }

    #[test]
    fn holds_poke_the_current_cgroup_and_the_thread_ends_when_the_last_goes() {
        let t = tree(&["pids/a", "pids/b"]);
        let proc_cgroup = t.path().join("proc-cgroup");
        std::fs::write(&proc_cgroup, "8:pids:/a\n").unwrap();
        let w = CgroupWarmer::new(Some(t.path().to_path_buf()), proc_cgroup.clone());
        let wait_for = |f: &Path| {
            let waited = Instant::now();
            while std::fs::read_to_string(f).unwrap().is_empty() {
                assert!(waited.elapsed() < Duration::from_secs(10), "never poked");
                std::thread::sleep(Duration::from_millis(2));
            }
            std::fs::read_to_string(f).unwrap()
        };
        let (a, b) = (w.hold(), w.hold());
        let tid: i32 = wait_for(&t.path().join("pids/a/tasks")).parse().unwrap();
        assert_ne!(tid, std::process::id() as i32, "a thread id, not the pid");
        // The process moved: the next pokes follow it.
        std::fs::write(&proc_cgroup, "8:pids:/b\n").unwrap();
        assert_eq!(wait_for(&t.path().join("pids/b/tasks")), tid.to_string());
        drop(a);
        assert!(w.inner.state.lock().unwrap().thread_running);
        drop(b);
        let waited = Instant::now();
        while w.inner.state.lock().unwrap().thread_running {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "thread kept poking"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn a_failing_poke_disables_the_warmer() {
        let t = tempfile::tempdir().unwrap();
        let proc_cgroup = t.path().join("proc-cgroup");
        std::fs::write(&proc_cgroup, "8:pids:/gone\n").unwrap();
        let w = CgroupWarmer::new(Some(t.path().to_path_buf()), proc_cgroup);
        let h = w.hold();
        let waited = Instant::now();
        while !w.inner.state.lock().unwrap().disabled {
            assert!(waited.elapsed() < Duration::from_secs(10), "never disabled");
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(h);
        let _again = w.hold();
        assert!(!w.inner.state.lock().unwrap().thread_running);
    }

    #[test]
    fn an_inert_warmer_never_starts_a_thread() {
        let w = CgroupWarmer::new(None, PathBuf::from("/proc/self/cgroup"));
        let _h = w.hold();
        assert!(!w.inner.state.lock().unwrap().thread_running);
    }
}
