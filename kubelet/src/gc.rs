//! Garbage collection of dead containers and unused images, as kubelet's container GC
//! (kuberuntime_gc.go) and image GC manager (image_gc_manager.go) do it over CRI.
//!
//! The choice of what to remove is pure ([`dead_containers_to_remove`], [`ImageRecords::select`])
//! so it is tested without a runtime; [`run`] feeds it from CRI on kubelet's periods.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use tokio::sync::watch;

use crate::labels;
use crate::pods::Shared;

/// kubelet's ContainerGCPolicy (flags --minimum-container-ttl-duration,
/// --maximum-dead-containers-per-container, --maximum-dead-containers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerGcPolicy {
    /// Dead containers younger than this are kept.
    pub min_age: Duration,
    /// Dead containers kept per (pod, container name); negative: no limit.
    pub max_per_pod_container: i32,
    /// Dead containers kept on the node; negative: no limit.
    pub max_containers: i32,
}

impl Default for ContainerGcPolicy {
    fn default() -> Self {
        Self {
            min_age: Duration::ZERO,
            max_per_pod_container: 1,
            max_containers: -1,
        }
    }
}

/// A container that is not running (exited, or created and never started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadContainer {
    pub id: String,
    pub pod_uid: String,
    pub name: String,
    /// CRI's created_at (nanoseconds since the epoch).
    pub created_at: i64,
}

/// The ids of the dead containers to remove, oldest first within each step, as kubelet's
/// evictContainers: all dead containers of pods this kubelet no longer runs; then per (pod,
/// container name) all but the newest `max_per_pod_container`; then, above `max_containers`,
/// the limit spread evenly over the (pod, container) units — but never the newest dead
/// container of a pod still running (its log backs `kubectl logs --previous` and its exit
/// code the restart decision).
pub fn dead_containers_to_remove(
    dead: &[DeadContainer],
    live_pods: &HashSet<String>,
    policy: &ContainerGcPolicy,
    now_nanos: i64,
) -> Vec<String> {
    let min_age = policy.min_age.as_nanos() as i64;
    let mut units: BTreeMap<(&str, &str), Vec<&DeadContainer>> = BTreeMap::new();
    for c in dead {
        if now_nanos.saturating_sub(c.created_at) < min_age {
            continue;
        }
        units
            .entry((c.pod_uid.as_str(), c.name.as_str()))
            .or_default()
            .push(c);
    }
    let mut remove: Vec<String> = Vec::new();
    units.retain(|(uid, _), cs| {
        if live_pods.contains(*uid) {
            return true;
        }
        cs.sort_by_key(|c| c.created_at);
        remove.extend(cs.iter().map(|c| c.id.clone()));
        false
    });
    // Newest first in every unit.
    for cs in units.values_mut() {
        cs.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    }
    let trim = |units: &mut BTreeMap<(&str, &str), Vec<&DeadContainer>>,
                keep: usize,
                remove: &mut Vec<String>| {
        for cs in units.values_mut() {
            if cs.len() > keep {
                let extra = cs.split_off(keep);
                remove.extend(extra.iter().rev().map(|c| c.id.clone()));
            }
        }
    };
    if policy.max_per_pod_container >= 0 {
        // Never below one: the newest dead one of a running pod stays.
        trim(
            &mut units,
            (policy.max_per_pod_container as usize).max(1),
            &mut remove,
        );
    }
    if policy.max_containers >= 0 && !units.is_empty() {
        // kubelet spreads the node-wide limit evenly over the (pod, container) units. Its last
        // step (removing the oldest node-wide while still above the limit) would only take a
        // unit's newest, which stays here, so it has nothing to do.
        let max = policy.max_containers as usize;
        let total: usize = units.values().map(Vec::len).sum();
        if total > max {
            let per_unit = (max / units.len()).max(1);
            trim(&mut units, per_unit, &mut remove);
        }
    }
    remove
}

/// kubelet's ImageGCPolicy (imageGCHigh/LowThresholdPercent, imageMinimumGCAge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGcPolicy {
    pub high_threshold_percent: u8,
    pub low_threshold_percent: u8,
    pub min_age: Duration,
}

impl ImageGcPolicy {
    /// kubelet: `imageGCHighThresholdPercent: 100` turns the periodic image GC off (and with it
    /// imageMaximumGCAge), leaving images to someone else, e.g. `pea-shim --image-gc-policy`.
    /// The eviction manager's DeleteUnusedImages still runs.
    pub fn periodic_gc_disabled(&self) -> bool {
        self.high_threshold_percent >= 100
    }

    pub fn of(cfg: &crate::config::Config) -> Self {
        Self {
            high_threshold_percent: cfg.image_gc_high_threshold_percent,
            low_threshold_percent: cfg.image_gc_low_threshold_percent,
            min_age: cfg.image_minimum_gc_age,
        }
    }
}

/// What the image GC knows of one image across rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ImageRecord {
    first_detected: Instant,
    last_used: Instant,
    size: u64,
    pinned: bool,
}

/// An image as CRI lists it, reduced to what GC needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedImage {
    pub id: String,
    /// Tags and digests: how containers may name it.
    pub refs: Vec<String>,
    pub size: u64,
    pub pinned: bool,
}

/// The image GC's memory: when each image was first seen and last used by a container.
#[derive(Debug, Default)]
pub struct ImageRecords {
    records: HashMap<String, ImageRecord>,
}

impl ImageRecords {
    /// Records the images present now; `in_use` holds the image ids and refs containers use.
    /// Images gone from the runtime are forgotten.
    pub fn detect(&mut self, images: &[ListedImage], in_use: &HashSet<String>, now: Instant) {
        let present: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        self.records.retain(|id, _| present.contains(id.as_str()));
        for img in images {
            let r = self.records.entry(img.id.clone()).or_insert(ImageRecord {
                first_detected: now,
                last_used: now,
                size: img.size,
                pinned: img.pinned,
            });
            r.size = img.size;
            r.pinned = img.pinned;
            if in_use.contains(&img.id) || img.refs.iter().any(|r| in_use.contains(r)) {
                r.last_used = now;
            }
        }
    }

    /// The images to remove to free `bytes`: unused (by `in_use`), not pinned, detected at
    /// least `min_age` ago, least recently used first. Returns them and the bytes they free.
    pub fn select(
        &self,
        bytes: u64,
        images: &[ListedImage],
        in_use: &HashSet<String>,
        min_age: Duration,
        now: Instant,
    ) -> (Vec<String>, u64) {
        let mut candidates: Vec<(&String, &ImageRecord)> = images
            .iter()
            .filter(|i| !in_use.contains(&i.id) && !i.refs.iter().any(|r| in_use.contains(r)))
            .filter_map(|i| self.records.get_key_value(&i.id))
            .filter(|(_, r)| {
                !r.pinned && now.saturating_duration_since(r.first_detected) >= min_age
            })
            .collect();
        candidates.sort_by_key(|(_, r)| r.last_used);
        let mut freed = 0u64;
        let mut out = Vec::new();
        for (id, r) in candidates {
            if freed >= bytes {
                break;
            }
            out.push(id.clone());
            freed += r.size;
        }
        (out, freed)
    }
}

/// How many bytes to free so usage falls to the low threshold, or None below the high one
/// (kubelet: usage = 100 - available*100/capacity, compared with >=).
pub fn bytes_to_free(policy: &ImageGcPolicy, capacity: u64, available: u64) -> Option<u64> {
    if capacity == 0 {
        return None;
    }
    let usage = 100 - (available as u128 * 100 / capacity as u128) as u64;
    if usage < policy.high_threshold_percent as u64 {
        return None;
    }
    let target_available = capacity as u128 * (100 - policy.low_threshold_percent as u128) / 100;
    Some((target_available as u64).saturating_sub(available))
}

/// The periods of both collectors (kubelet: ContainerGCPeriod 1 min, ImageGCPeriod 5 min).
#[derive(Debug, Clone, Copy)]
pub struct Periods {
    pub containers: Duration,
    pub images: Duration,
}

impl Default for Periods {
    fn default() -> Self {
        Self {
            containers: Duration::from_secs(60),
            images: Duration::from_secs(300),
        }
    }
}

/// Runs both collectors until the process ends. Waits for the first full pod list so pods the
/// API still has are not taken for deleted ones.
pub async fn run(
    s: Arc<Shared>,
    mut synced: watch::Receiver<bool>,
    periods: Periods,
    records: Arc<tokio::sync::Mutex<ImageRecords>>,
) {
    if synced.wait_for(|v| *v).await.is_err() {
        return;
    }
    let policy = ImageGcPolicy::of(&s.cfg);
    let images_enabled = !policy.periodic_gc_disabled();
    if !images_enabled {
        tracing::info!(
            "imageGCHighThresholdPercent is 100: periodic image garbage collection disabled"
        );
    }
    let mut containers_tick = tokio::time::interval(periods.containers);
    let mut images_tick = tokio::time::interval(periods.images);
    containers_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    images_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = containers_tick.tick() => {
                if let Err(e) = collect_containers(&s, &ContainerGcPolicy::default()).await {
                    tracing::warn!(error = %e, "container garbage collection");
                }
            }
            _ = images_tick.tick(), if images_enabled => {
                let mut records = records.lock().await;
                match collect_images(&s, &policy, &mut records, None).await {
                    Ok(Some((wanted, freed))) if freed < wanted => s.events.node(
                        &s.cfg.node_name,
                        true,
                        "FreeDiskSpaceFailed",
                        format!("Failed to garbage collect required amount of images. Attempted to free {wanted} bytes, but only found {freed} bytes eligible to free."),
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "image garbage collection");
                        s.events.node(&s.cfg.node_name, true, "ImageGCFailed", e);
                    }
                }
            }
        }
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// One container GC round: lists the kubelet's containers and removes what the policy says.
pub async fn collect_containers(s: &Shared, policy: &ContainerGcPolicy) -> Result<usize, String> {
    let live: HashSet<String> = s.pods.read().expect("pods").keys().cloned().collect();
    collect_containers_of(s, policy, &live).await
}

/// kubelet's DeleteAllUnusedContainers (the eviction manager's node-level reclaim): as a GC
/// round, but the dead containers of pods that finished (Succeeded, Failed — evicted ones
/// too) go as well, not only those of pods gone from the API.
pub async fn delete_all_unused_containers(s: &Shared) -> Result<usize, String> {
    let live: HashSet<String> = s
        .pods
        .read()
        .expect("pods")
        .iter()
        .filter(|(_, p)| {
            !matches!(
                p.status.as_ref().and_then(|st| st.phase.as_deref()),
                Some("Succeeded") | Some("Failed")
            )
        })
        .map(|(uid, _)| uid.clone())
        .collect();
    collect_containers_of(s, &ContainerGcPolicy::default(), &live).await
}

/// Removes the dead containers the policy picks, `live` being the pods whose newest dead
/// container per name is kept.
async fn collect_containers_of(
    s: &Shared,
    policy: &ContainerGcPolicy,
    live: &HashSet<String>,
) -> Result<usize, String> {
    let mut cri = s.cri.clone();
    let list = cri
        .runtime
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .map_err(|e| format!("listing containers: {}", e.message()))?
        .into_inner()
        .containers;
    let dead: Vec<DeadContainer> = list
        .into_iter()
        .filter(|c| c.state != cri::ContainerState::ContainerRunning as i32)
        .filter(|c| c.labels.get(labels::MANAGED).map(String::as_str) == Some("true"))
        .filter_map(|c| {
            Some(DeadContainer {
                pod_uid: c.labels.get(labels::POD_UID)?.clone(),
                name: c.labels.get(labels::CONTAINER_NAME)?.clone(),
                id: c.id,
                created_at: c.created_at,
            })
        })
        .collect();
    let remove = dead_containers_to_remove(&dead, live, policy, now_nanos());
    let mut removed = 0;
    for id in remove {
        match cri
            .runtime
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
        {
            Ok(_) => {
                tracing::info!(container = %id, "removed a dead container");
                removed += 1;
            }
            Err(e) => {
                tracing::warn!(container = %id, error = %e.message(), "removing a dead container")
            }
        }
    }
    Ok(removed)
}

/// Capacity and available bytes of the filesystem holding `path`.
fn fs_space(path: &str) -> Result<(u64, u64), String> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| format!("statvfs {path}: {e}"))?;
    let frag = st.fragment_size() as u64;
    Ok((
        st.blocks() as u64 * frag,
        st.blocks_available() as u64 * frag,
    ))
}

/// One image GC round. Returns (bytes wanted, bytes freed) when usage was above the high
/// threshold, None below it. With `want` (the eviction manager's DeleteUnusedImages:
/// `u64::MAX`) that many bytes are freed whatever the thresholds say.
pub async fn collect_images(
    s: &Shared,
    policy: &ImageGcPolicy,
    records: &mut ImageRecords,
    want: Option<u64>,
) -> Result<Option<(u64, u64)>, String> {
    let mut cri = s.cri.clone();
    let fs = cri
        .images
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .map_err(|e| format!("ImageFsInfo: {}", e.message()))?
        .into_inner();
    let mount = fs
        .image_filesystems
        .first()
        .and_then(|u| u.fs_id.as_ref())
        .map(|f| f.mountpoint.clone())
        .filter(|m| !m.is_empty())
        .ok_or("ImageFsInfo names no image filesystem mountpoint")?;
    let (capacity, available) = fs_space(&mount)?;
    let images: Vec<ListedImage> = cri
        .images
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .map_err(|e| format!("listing images: {}", e.message()))?
        .into_inner()
        .images
        .into_iter()
        .map(|i| ListedImage {
            refs: i
                .repo_tags
                .iter()
                .chain(i.repo_digests.iter())
                .cloned()
                .collect(),
            id: i.id,
            size: i.size,
            pinned: i.pinned,
        })
        .collect();
    let mut in_use: HashSet<String> = HashSet::new();
    for c in cri
        .runtime
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .map_err(|e| format!("listing containers: {}", e.message()))?
        .into_inner()
        .containers
    {
        in_use.insert(c.image_ref);
        if let Some(spec) = c.image {
            in_use.insert(spec.image);
        }
    }
    let now = Instant::now();
    records.detect(&images, &in_use, now);
    let Some(wanted) = want.or_else(|| bytes_to_free(policy, capacity, available)) else {
        return Ok(None);
    };
    tracing::info!(
        capacity,
        available,
        wanted,
        "image filesystem above the high threshold"
    );
    let (ids, _) = records.select(wanted, &images, &in_use, policy.min_age, now);
    let mut freed = 0u64;
    let mut errors = Vec::new();
    for id in ids {
        let size = images.iter().find(|i| i.id == id).map_or(0, |i| i.size);
        match cri
            .images
            .remove_image(cri::RemoveImageRequest {
                image: Some(cri::ImageSpec {
                    image: id.clone(),
                    ..Default::default()
                }),
            })
            .await
        {
            Ok(_) => {
                tracing::info!(image = %id, size, "removed an unused image");
                freed += size;
            }
            Err(e) => errors.push(format!("removing image {id}: {}", e.message())),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(Some((wanted, freed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(id: &str, uid: &str, name: &str, t: i64) -> DeadContainer {
        DeadContainer {
            id: id.into(),
            pod_uid: uid.into(),
            name: name.into(),
            created_at: t,
        }
    }

    fn live(uids: &[&str]) -> HashSet<String> {
        uids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_the_newest_dead_container_per_pod_container() {
        let d = [
            dead("a1", "p", "app", 1),
            dead("a3", "p", "app", 3),
            dead("a2", "p", "app", 2),
            dead("s1", "p", "side", 1),
        ];
        let r = dead_containers_to_remove(&d, &live(&["p"]), &ContainerGcPolicy::default(), 10);
        assert_eq!(r, ["a1", "a2"]);
    }

    #[test]
    fn removes_every_container_of_deleted_pods() {
        let d = [dead("x2", "gone", "app", 2), dead("x1", "gone", "app", 1)];
        let r = dead_containers_to_remove(&d, &live(&["p"]), &ContainerGcPolicy::default(), 10);
        assert_eq!(r, ["x1", "x2"]);
    }

    #[test]
    fn young_containers_are_kept_by_min_age() {
        let d = [dead("a1", "gone", "app", 1), dead("a2", "gone", "app", 9)];
        let policy = ContainerGcPolicy {
            min_age: Duration::from_nanos(5),
            ..Default::default()
        };
        assert_eq!(
            dead_containers_to_remove(&d, &live(&[]), &policy, 10),
            ["a1"]
        );
    }

    #[test]
    fn max_containers_removes_oldest_but_not_a_running_pods_newest() {
        let d = [
            dead("a1", "p", "app", 1),
            dead("a2", "p", "app", 2),
            dead("b1", "q", "app", 3),
            dead("b2", "q", "app", 4),
        ];
        let policy = ContainerGcPolicy {
            min_age: Duration::ZERO,
            max_per_pod_container: -1,
            max_containers: 1,
        };
        let r = dead_containers_to_remove(&d, &live(&["p", "q"]), &policy, 10);
        // Two units, one newest each stays even though max is 1.
        assert_eq!(r, ["a1", "b1"]);
        // A limit of 3 over two units keeps one each (kubelet's integer division).
        let d = [
            dead("a1", "p", "app", 1),
            dead("a2", "p", "app", 2),
            dead("a3", "p", "app", 5),
            dead("b1", "q", "app", 3),
        ];
        let policy = ContainerGcPolicy {
            max_containers: 3,
            ..policy
        };
        let r = dead_containers_to_remove(&d, &live(&["p", "q"]), &policy, 10);
        assert_eq!(r, ["a1", "a2"]);
        // Under the limit nothing goes.
        let policy = ContainerGcPolicy {
            max_containers: 4,
            ..policy
        };
        assert!(dead_containers_to_remove(&d, &live(&["p", "q"]), &policy, 10).is_empty());
    }

    fn img(id: &str, tag: &str, size: u64, pinned: bool) -> ListedImage {
        ListedImage {
            id: id.into(),
            refs: vec![tag.into()],
            size,
            pinned,
        }
    }

    #[test]
    fn high_threshold_100_disables_periodic_image_gc() {
        let p = |high| ImageGcPolicy {
            high_threshold_percent: high,
            low_threshold_percent: 80,
            min_age: Duration::ZERO,
        };
        assert!(p(100).periodic_gc_disabled());
        assert!(!p(99).periodic_gc_disabled());
        assert!(!p(85).periodic_gc_disabled());
    }

    #[test]
    fn thresholds_decide_how_much_to_free() {
        let p = ImageGcPolicy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::ZERO,
        };
        assert_eq!(bytes_to_free(&p, 1000, 200), None); // 80 % used
        assert_eq!(bytes_to_free(&p, 1000, 150), Some(50)); // 85 %: down to 80 %
        assert_eq!(bytes_to_free(&p, 0, 0), None);
    }

    #[test]
    fn image_selection_is_lru_unused_unpinned_and_old_enough() {
        let t0 = Instant::now();
        let images = [
            img("sha256:old", "old:1", 10, false),
            img("sha256:newer", "newer:1", 10, false),
            img("sha256:used", "used:1", 10, false),
            img("sha256:pause", "pause:3", 10, true),
        ];
        let mut r = ImageRecords::default();
        let used_all: HashSet<String> = ["old:1".to_string(), "newer:1".to_string()].into();
        r.detect(&images, &used_all, t0);
        // "newer" was used more recently than "old".
        r.detect(
            &images,
            &["newer:1".to_string()].into(),
            t0 + Duration::from_secs(5),
        );
        let in_use: HashSet<String> = ["used:1".to_string()].into();
        let now = t0 + Duration::from_secs(10);
        let (ids, freed) = r.select(1000, &images, &in_use, Duration::ZERO, now);
        assert_eq!(ids, ["sha256:old", "sha256:newer"]);
        assert_eq!(freed, 20);
        let (ids, _) = r.select(5, &images, &in_use, Duration::ZERO, now);
        assert_eq!(ids, ["sha256:old"]);
        let (ids, _) = r.select(1000, &images, &in_use, Duration::from_secs(60), now);
        assert!(ids.is_empty(), "younger than imageMinimumGCAge: {ids:?}");
    }
}
