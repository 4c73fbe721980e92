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

use std::collections::{HashMap, VecDeque};

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
}

impl History {
    /// An image was pulled; `fetched` are the layers that were not on the node.
    pub fn record_pull<'a>(&mut self, image: &str, fetched: impl IntoIterator<Item = &'a str>) {
        self.images
            .entry(image.to_string())
            .or_default()
            .uses_since_pull = 0;
        for l in fetched {
            self.layers
                .entry(l.to_string())
                .or_default()
                .uses_since_pull = 0;
        }
        self.bound();
    }

    /// A container started from `image`, which holds `layers`, at `now`.
    pub fn record_use<'a>(
        &mut self,
        image: &str,
        layers: impl IntoIterator<Item = &'a str>,
        now: u64,
    ) {
        let l = self.inflation;
        self.images
            .entry(image.to_string())
            .or_default()
            .used(now, l);
        for layer in layers {
            self.layers
                .entry(layer.to_string())
                .or_default()
                .used(now, l);
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
        forget_oldest(&mut self.images, IMAGES_KEPT);
        forget_oldest(&mut self.layers, LAYERS_KEPT);
    }
}

fn forget_oldest(m: &mut HashMap<String, Stats>, keep: usize) {
    if m.len() <= keep {
        return;
    }
    let mut by_age: Vec<(u64, String)> = m.iter().map(|(k, s)| (s.last_use, k.clone())).collect();
    by_age.sort();
    let drop = m.len() - keep * 9 / 10;
    for (_, k) in by_age.into_iter().take(drop) {
        m.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_record_gaps_per_image_and_layer_and_pulls_reset_the_in_cache_count() {
        let mut h = History::default();
        h.record_pull("a", ["base", "a1"]);
        h.record_use("a", ["base", "a1"], 10);
        h.record_use("a", ["base", "a1"], 40);
        h.record_pull("b", ["b1"]);
        h.record_use("b", ["base", "b1"], 100);
        let a = &h.images["a"];
        assert_eq!((a.uses, a.uses_since_pull), (2, 2));
        assert_eq!(a.gaps, [30]);
        let base = &h.layers["base"];
        assert_eq!((base.uses, base.uses_since_pull), (3, 3));
        assert_eq!(base.gaps, [30, 60]);
        assert_eq!(base.first_gap, Some(30));
        h.record_pull("a", ["a1"]);
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
}
