//! What the node remembers about image and layer use, for the policies that learn from it
//! ([`super::Order::Gdsf`], [`super::Order::Learned`]).
//!
//! The same [`Stats`] are kept per image (by id) and per layer (by its store key, the ChainID):
//! a layer is used whenever a container starts from any image holding it, so a dependency layer
//! that every new CI commit or release tag shares keeps its value after the images that held it
//! are gone. Entries outlive removal so a re-pull finds its past. Node-wide: the GDSF inflation
//! value `L` and how long removed images had been idle (the horizon the learned policy looks
//! ahead). Memory is bounded: at most [`IMAGES_KEPT`] images and [`LAYERS_KEPT`] layers (the
//! least recently used tenth is forgotten when over) and [`GAPS_KEPT`] gaps each.
//!
//! Take-over (the superseded signal): an image is *taken over* when a newer image of its
//! repository (first used after it) that holds at least half of its layers starts after the
//! image's last use — a new release tag or CI commit rolled out over it. A second newer image
//! makes it taken over by two generations (no longer the previous tag a rollback would go
//! back to). The image's next use ends the take-over and is remembered as a return, so the
//! learned policy can tell from this node's own history how often taken-over images come back
//! ([`super::learned`]). Only what a node knows is used: the repository an image was pulled
//! as, the layers (ChainIDs) it held at its last start, and start times.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::{Plan, Reason};

/// Gaps kept per entry.
pub const GAPS_KEPT: usize = 32;
/// Images remembered (present or not).
pub const IMAGES_KEPT: usize = 4096;
/// Layers remembered (present or not).
pub const LAYERS_KEPT: usize = 16384;
/// The learned policy's horizon before any removal was seen, seconds.
pub const DEFAULT_HORIZON_SECS: f64 = 3600.0;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    pub uses: u64,
    pub last_use: u64,
    /// Seconds between consecutive uses, oldest first.
    pub gaps: VecDeque<u64>,
    /// Seconds between the first and second use.
    pub first_gap: Option<u64>,
    /// Uses since it was last pulled (GDSF's in-cache frequency).
    pub uses_since_pull: u64,
    /// The node's inflation value at the last use (GDSF's recency).
    pub inflation_at_use: f64,
    /// Images: the repository it was pulled as (tag and digest stripped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Images: the layers it held at its last use.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    /// When it was first used (images: their age order within a repository).
    pub first_use: u64,
    /// Images: when a newer image of its repository took it over (see the module doc);
    /// cleared by its next use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken_over_at: Option<u64>,
    /// Images: how many newer images took it over since its last use, at most
    /// [`GENERATIONS`] (a rollback goes to the previous tag, seldom to older ones).
    #[serde(skip_serializing_if = "is_zero")]
    pub generations: u8,
    /// Images: the last image that took it over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken_over_by: Option<String>,
    /// Images: for each use that ended a take-over, seconds since the use before it and the
    /// generations it had been taken over by.
    #[serde(skip_serializing_if = "VecDeque::is_empty")]
    pub returns: VecDeque<(u64, u8)>,
}

/// Take-over generations told apart (taken over once, or by two or more newer images).
pub const GENERATIONS: u8 = 2;

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl Stats {
    fn used(&mut self, now: u64, inflation: f64) {
        if self.uses > 0 {
            let gap = now.saturating_sub(self.last_use);
            self.first_gap.get_or_insert(gap);
            self.gaps.push_back(gap);
            if self.gaps.len() > GAPS_KEPT {
                self.gaps.pop_front();
            }
        } else {
            self.first_use = now;
        }
        self.uses += 1;
        self.uses_since_pull += 1;
        self.last_use = now;
        self.inflation_at_use = inflation;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct History {
    pub images: HashMap<String, Stats>,
    pub layers: HashMap<String, Stats>,
    /// GDSF's `L`: the priority of the last removal under disk pressure.
    pub inflation: f64,
    /// Moving average of how long removed images had been idle, seconds.
    pub evicted_idle_secs: Option<f64>,
    /// Repository → images remembered with it (rebuilt from `images` when stale).
    #[serde(skip)]
    by_repository: Option<HashMap<String, Vec<String>>>,
}

/// The repository a reference names: `registry/path/name:tag@digest` without tag and digest.
/// None for an image id (`sha256:<hex>`), which names no repository.
pub fn repository_of(reference: &str) -> Option<&str> {
    let name = reference.split('@').next().unwrap_or("");
    if let Some((algorithm, _)) = name.split_once(':') {
        if matches!(algorithm, "sha256" | "sha384" | "sha512") {
            return None;
        }
    }
    let end = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => i,
        _ => name.len(),
    };
    (end > 0).then(|| &name[..end])
}

impl History {
    /// An image was pulled as a reference of `repository`; `fetched` are the layers that were
    /// not on the node.
    pub fn record_pull<'a>(
        &mut self,
        image: &str,
        repository: Option<&str>,
        fetched: impl IntoIterator<Item = &'a str>,
    ) {
        let s = self.images.entry(image.to_string()).or_default();
        s.uses_since_pull = 0;
        if let Some(repo) = repository {
            if s.repository.as_deref() != Some(repo) {
                s.repository = Some(repo.to_string());
                self.by_repository = None;
            }
        }
        for l in fetched {
            self.layers
                .entry(l.to_string())
                .or_default()
                .uses_since_pull = 0;
        }
        self.bound();
    }

    /// A container started from `image`, which holds `layers`, at `now`: a use of the image
    /// and of each layer; it ends the image's take-over, if any, and takes over the older
    /// images of its repository (first used before it), idle since before now, that it holds
    /// at least half the layers of.
    ///
    /// Cost: O(L) for its L layers plus, for an image with a repository, O(1) for each
    /// remembered image of the repository and O(L') for each one it may take over (L' its
    /// layer count).
    pub fn record_use<'a>(
        &mut self,
        image: &str,
        layers: impl IntoIterator<Item = &'a str>,
        now: u64,
    ) {
        let l = self.inflation;
        let mut held: Vec<&str> = layers.into_iter().collect();
        held.sort_unstable();
        held.dedup();
        for layer in &held {
            self.layers
                .entry(layer.to_string())
                .or_default()
                .used(now, l);
        }
        let s = self.images.entry(image.to_string()).or_default();
        if s.taken_over_at.take().is_some() {
            s.returns
                .push_back((now.saturating_sub(s.last_use), s.generations));
            if s.returns.len() > GAPS_KEPT {
                s.returns.pop_front();
            }
            s.generations = 0;
            s.taken_over_by = None;
        }
        s.used(now, l);
        let first_use = s.first_use;
        if s.layers.len() != held.len() || s.layers.iter().zip(&held).any(|(a, b)| a != b) {
            s.layers = held.iter().map(|l| l.to_string()).collect();
        }
        if let Some(repo) = s.repository.clone() {
            let held: HashSet<&str> = held.into_iter().collect();
            let index = self
                .by_repository
                .get_or_insert_with(|| index(&self.images));
            for other in index.get(&repo).into_iter().flatten() {
                if other == image {
                    continue;
                }
                let Some(o) = self.images.get_mut(other) else {
                    continue;
                };
                // Only a newer image takes over (a rollback to an older tag does not make
                // the newer one superseded: the next release builds on it), once per image.
                if o.first_use >= first_use
                    || o.last_use >= now
                    || o.layers.is_empty()
                    || o.taken_over_by.as_deref() == Some(image)
                    || o.generations >= GENERATIONS
                {
                    continue;
                }
                let shared = o
                    .layers
                    .iter()
                    .filter(|l| held.contains(l.as_str()))
                    .count();
                if 2 * shared >= o.layers.len() {
                    o.taken_over_at.get_or_insert(now);
                    o.generations += 1;
                    o.taken_over_by = Some(image.to_string());
                }
            }
        }
        self.bound();
    }

    /// Learns from a GC run's removals: GDSF's `L` becomes the highest priority removed under
    /// disk pressure, and the learned policy's horizon follows the removed images' idle time.
    pub fn record_gc(&mut self, plan: &Plan, now: u64) {
        for r in &plan.removals {
            if r.reason != Reason::DiskPressure {
                continue;
            }
            if let Some(p) = r.gdsf_priority {
                self.inflation = self.inflation.max(p);
            }
            if let Some(s) = self.images.get(&r.id) {
                let idle = now.saturating_sub(s.last_use) as f64;
                self.evicted_idle_secs = Some(match self.evicted_idle_secs {
                    None => idle,
                    Some(avg) => 0.8 * avg + 0.2 * idle,
                });
            }
        }
    }

    /// How far ahead the learned policy asks "will it be used again": the idle time at which
    /// this node's cache currently lets images go, bounded to [5 min, 7 days].
    pub fn horizon_secs(&self) -> f64 {
        self.evicted_idle_secs
            .unwrap_or(DEFAULT_HORIZON_SECS)
            .clamp(300.0, 7.0 * 86400.0)
    }

    /// Forgets the least recently used tenth once over a bound (amortised O(1) per use).
    fn bound(&mut self) {
        if forget_oldest(&mut self.images, IMAGES_KEPT) {
            self.by_repository = None;
        }
        forget_oldest(&mut self.layers, LAYERS_KEPT);
    }
}

fn index(images: &HashMap<String, Stats>) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (id, s) in images {
        if let Some(r) = &s.repository {
            out.entry(r.clone()).or_default().push(id.clone());
        }
    }
    out
}

/// Whether it forgot anything.
fn forget_oldest(m: &mut HashMap<String, Stats>, keep: usize) -> bool {
    if m.len() <= keep {
        return false;
    }
    let mut by_age: Vec<(u64, String)> = m.iter().map(|(k, s)| (s.last_use, k.clone())).collect();
    by_age.sort();
    let drop = m.len() - keep * 9 / 10;
    for (_, k) in by_age.into_iter().take(drop) {
        m.remove(&k);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_record_gaps_per_image_and_layer_and_pulls_reset_the_in_cache_count() {
        let mut h = History::default();
        h.record_pull("a", None, ["base", "a1"]);
        h.record_use("a", ["base", "a1"], 10);
        h.record_use("a", ["base", "a1"], 40);
        h.record_pull("b", None, ["b1"]);
        h.record_use("b", ["base", "b1"], 100);
        let a = &h.images["a"];
        assert_eq!((a.uses, a.uses_since_pull), (2, 2));
        assert_eq!(a.gaps, [30]);
        let base = &h.layers["base"];
        assert_eq!((base.uses, base.uses_since_pull), (3, 3));
        assert_eq!(base.gaps, [30, 60]);
        assert_eq!(base.first_gap, Some(30));
        h.record_pull("a", None, ["a1"]);
        assert_eq!(h.images["a"].uses_since_pull, 0);
        assert_eq!(h.layers["a1"].uses_since_pull, 0);
        assert_eq!(h.layers["base"].uses_since_pull, 3);
    }

    #[test]
    fn memory_is_bounded() {
        let mut h = History::default();
        for i in 0..(IMAGES_KEPT as u64 + 10) {
            let name = format!("i{i}");
            h.record_use(&name, [name.as_str()], i);
        }
        assert!(h.images.len() <= IMAGES_KEPT && h.images.len() >= IMAGES_KEPT * 9 / 10);
        assert!(!h.images.contains_key("i0"));
        assert!(h.images.contains_key(&format!("i{}", IMAGES_KEPT + 9)));
        assert_eq!(h.layers.len(), IMAGES_KEPT + 10);
    }

    #[test]
    fn repositories_come_from_references_not_ids() {
        assert_eq!(
            repository_of("registry.local:5000/team/app:1.2@sha256:ab"),
            Some("registry.local:5000/team/app")
        );
        assert_eq!(
            repository_of("localhost:5000/app"),
            Some("localhost:5000/app")
        );
        assert_eq!(repository_of("svc3:r2"), Some("svc3"));
        assert_eq!(repository_of("nginx"), Some("nginx"));
        assert_eq!(repository_of("sha256:0123abcd"), None);
        assert_eq!(repository_of(""), None);
    }

    #[test]
    fn a_newer_image_of_the_repository_takes_over_older_ones_once_per_image() {
        let mut h = History::default();
        let pull_and_use = |h: &mut History, image: &str, layers: &[&str], t: u64| {
            h.record_pull(image, repository_of(image), layers.iter().copied());
            h.record_use(image, layers.iter().copied(), t);
        };
        pull_and_use(&mut h, "app:1", &["os", "rt", "deps0", "app1"], 0);
        h.record_use("app:1", ["os", "rt", "deps0", "app1"], 10);
        // Same layers, another repository: never taken over by app's tags.
        pull_and_use(&mut h, "mirror:1", &["os", "rt", "deps0", "app1"], 20);
        // Same repository, one layer of four in common with app:2: not most of its layers.
        pull_and_use(&mut h, "app:debug", &["os", "dbg1", "dbg2", "dbg3"], 30);
        pull_and_use(&mut h, "app:2", &["os", "rt", "deps0", "app2"], 100);
        let s = |h: &History, i: &str| {
            let s = &h.images[i];
            (s.taken_over_at, s.generations, s.taken_over_by.clone())
        };
        assert_eq!(s(&h, "app:1"), (Some(100), 1, Some("app:2".into())));
        assert_eq!(s(&h, "mirror:1"), (None, 0, None));
        assert_eq!(s(&h, "app:debug"), (None, 0, None));
        // A second replica of app:2 is the same take-over.
        h.record_use("app:2", ["os", "rt", "deps0", "app2"], 110);
        assert_eq!(s(&h, "app:1").1, 1);
        // app:3 shares os and rt (half) with both: app:2 taken over once, app:1 twice (still
        // since 100).
        pull_and_use(&mut h, "app:3", &["os", "rt", "deps1", "app3"], 200);
        assert_eq!(s(&h, "app:2"), (Some(200), 1, Some("app:3".into())));
        assert_eq!(s(&h, "app:1"), (Some(100), 2, Some("app:3".into())));
        // Rollback to app:2: its take-over ends as a return (idle 300 - 110, taken over once);
        // the newer app:3 is not taken over by an older image.
        h.record_use("app:2", ["os", "rt", "deps0", "app2"], 300);
        assert_eq!(s(&h, "app:2"), (None, 0, None));
        assert_eq!(h.images["app:2"].returns, [(190, 1)]);
        assert_eq!(s(&h, "app:3"), (None, 0, None));
        // The index survives a round trip through the history file.
        let mut back: History = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        back.record_use("app:3", ["os", "rt", "deps1", "app3"], 400);
        assert_eq!(back.images["app:2"].taken_over_at, Some(400));
    }
}
