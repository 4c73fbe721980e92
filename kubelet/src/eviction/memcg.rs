//! Memory threshold notifications from the kernel (kubelet's `kernelMemcgNotification`): on
//! cgroup v1 an eventfd is registered through `cgroup.event_control` on a memory cgroup's
//! `memory.usage_in_bytes` at the usage where the signal's threshold is crossed, so the
//! eviction manager synchronizes the moment it is crossed instead of at its next
//! housekeeping round. As kubelet: one notifier per memory threshold (hard and soft),
//! `memory.available` on the root memory cgroup, `allocatableMemory.available` on the pods'
//! cgroup; the usage to watch is capacity − threshold + inactive file pages (the working set
//! at the threshold), re-armed from fresh figures at most every 10 s.
//!
//! cgroup v2 has no usage thresholds (no `cgroup.event_control`): kubelet creates a disabled
//! notifier there (kubernetes#106331) and the memory signals are observed each round only;
//! pea-kubelet does the same and says so once at start.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::sync::mpsc;

use super::{Configured, Signal};

/// kubelet's notifierRefreshInterval: thresholds are re-armed at most this often.
pub const REFRESH: Duration = Duration::from_secs(10);

/// What a notifier is set against: the watched cgroup's usage and working set, and the
/// capacity its signal is observed against (MemTotal for the node, the kubepods limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub usage: u64,
    pub working_set: u64,
    pub capacity: u64,
}

/// The usage at which `t` is crossed: capacity − threshold + inactive file (usage − working
/// set), kubelet's memcgThreshold.
pub fn usage_threshold(t: &Configured, f: Figures) -> u64 {
    f.capacity
        .saturating_sub(t.threshold.min_available(f.capacity))
        .saturating_add(f.usage.saturating_sub(f.working_set))
}

/// One memory threshold's notifier.
#[derive(Debug)]
pub struct Notifier {
    pub threshold: Configured,
    /// The cgroupfs path watched ("/" for the node, kubepods for allocatable).
    pub cgroup: String,
    dir: PathBuf,
    watch: Option<Watch>,
}

/// The eventfd a thread blocks on (tokio's AsyncFd would need `unsafe` to register it, which
/// this crate forbids), and the flag that tells the thread to end.
#[derive(Debug)]
struct Watch {
    efd: Arc<EventFd>,
    stop: Arc<AtomicBool>,
}

impl Watch {
    /// Ends the thread: the flag, then a write to wake its read. The eventfd closes with the
    /// thread's handle, which unregisters the threshold.
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.efd.write(1);
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some(w) = self.watch.take() {
            w.stop();
        }
    }
}

/// kubelet's Description: "hard allocatable memory eviction threshold".
pub fn description(t: &Configured) -> String {
    format!(
        "{}{}memory eviction threshold",
        if t.is_hard() { "hard " } else { "soft " },
        if t.signal() == Signal::AllocatableMemoryAvailable {
            "allocatable "
        } else {
            ""
        }
    )
}

/// Whether this host's memory controller is the unified (v2) one.
fn unified() -> bool {
    matches!(
        libcgroups::common::get_cgroup_setup(),
        Ok(libcgroups::common::CgroupSetup::Unified)
    )
}

/// The notifiers for the memory thresholds in `thresholds` (none on cgroup v2, none without a
/// v1 memory hierarchy). `kubepods` is the pods' cgroup, None without QoS cgroups.
pub fn notifiers(thresholds: &[Configured], kubepods: Option<&str>) -> Vec<Notifier> {
    if unified() {
        tracing::info!(
            "kernelMemcgNotification: cgroup v2 has no memory usage thresholds \
             (cgroup.event_control); as kubelet, memory signals are observed each \
             housekeeping round only"
        );
        return Vec::new();
    }
    let mount = match libcgroups::v1::util::get_subsystem_mount_point(
        &libcgroups::v1::ControllerType::Memory,
    ) {
        Ok(m) => m,
        Err(e) => {
            tracing::info!(error = %e, "eviction manager: failed to create memory threshold notifier: memory cgroup mount point not found");
            return Vec::new();
        }
    };
    thresholds
        .iter()
        .filter_map(|t| {
            let cgroup = match t.signal() {
                Signal::MemoryAvailable => "/".to_string(),
                Signal::AllocatableMemoryAvailable => kubepods?.to_string(),
                _ => return None,
            };
            let dir = mount.join(cgroup.trim_start_matches('/'));
            tracing::info!(notifier = %description(t), cgroup = %cgroup, "eviction manager: created memoryThresholdNotifier");
            Some(Notifier {
                threshold: t.clone(),
                cgroup,
                dir,
                watch: None,
            })
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Notifier {
    /// Re-arms the notifier at the usage matching its threshold for `f`; a crossing sends
    /// kubelet's "eviction manager: … crossed" message on `tx`.
    pub fn update(&mut self, f: Figures, tx: &mpsc::Sender<String>) -> Result<u64, NotifierError> {
        if let Some(w) = self.watch.take() {
            w.stop();
        }
        let at = usage_threshold(&self.threshold, f);
        let io = |path: PathBuf| move |source| NotifierError::Io { path, source };
        let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC).map_err(|e| {
            NotifierError::Io {
                path: "eventfd".into(),
                source: e.into(),
            }
        })?;
        let usage_path = self.dir.join("memory.usage_in_bytes");
        let usage = File::open(&usage_path).map_err(io(usage_path.clone()))?;
        let control_path = self.dir.join("cgroup.event_control");
        let mut control = OpenOptions::new()
            .write(true)
            .open(&control_path)
            .map_err(io(control_path.clone()))?;
        // "<eventfd> <fd of memory.usage_in_bytes> <threshold>"; both files may be closed
        // once registered (the kernel holds its own references), as kubelet does.
        control
            .write_all(format!("{} {} {at}", efd.as_raw_fd(), usage.as_raw_fd()).as_bytes())
            .map_err(io(control_path.clone()))?;
        let efd = Arc::new(efd);
        let stop = Arc::new(AtomicBool::new(false));
        let message = format!("eviction manager: {} crossed", description(&self.threshold));
        let tx = tx.clone();
        tracing::debug!(notifier = %description(&self.threshold), usage_threshold = at, "eviction manager: setting notifier");
        let (thread_efd, thread_stop) = (efd.clone(), stop.clone());
        std::thread::Builder::new()
            .name("memcg-notifier".into())
            .spawn(move || loop {
                match thread_efd.read() {
                    Ok(_) if thread_stop.load(Ordering::SeqCst) => return,
                    Ok(_) => {
                        if tx.blocking_send(message.clone()).is_err() {
                            return;
                        }
                    }
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        tracing::info!(error = %e, "eviction manager: error reading memcg events");
                        return;
                    }
                }
            })
            .map_err(io("memcg-notifier thread".into()))?;
        self.watch = Some(Watch { efd, stop });
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_to_watch_is_where_the_working_set_meets_the_threshold() {
        let t = super::super::parse_config(
            &[("memory.available".to_string(), "100Mi".to_string())].into(),
            &Default::default(),
            &Default::default(),
            &Default::default(),
        )
        .unwrap()
        .remove(0);
        let f = Figures {
            usage: 300 << 20,
            working_set: 250 << 20,
            capacity: 1 << 30,
        };
        // 1Gi − 100Mi + 50Mi of inactive file.
        assert_eq!(usage_threshold(&t, f), (1024 - 100 + 50) << 20);
        assert_eq!(description(&t), "hard memory eviction threshold");
        let a = super::super::add_allocatable_thresholds(vec![t], &["pods".into()]);
        assert_eq!(
            description(&a[1]),
            "hard allocatable memory eviction threshold"
        );
    }
}
