//! Image garbage collection with the kubelet's policy (`pkg/kubelet/images/image_gc_manager.go`)
//! and defaults: when disk usage reaches the high threshold (85 %), remove images until usage
//! is back at the low threshold (80 %); images in use or pinned are never removed, nor images
//! first seen less than the minimum age (2 min) ago; least recently used first, ties broken by
//! first seen; with a maximum age, unused images older than it go regardless of disk usage.
//!
//! Unlike the kubelet, which counts an image's whole size as freed, [`Accounting::Layer`]
//! counts only the layers no remaining image shares — what removal really frees — so GC does
//! not stop early after removing images whose layers stay on disk. The planner is pure (no
//! I/O, time passed in) so the store, the tests and the simulator share it.
//!
//! Beyond the kubelet's order, two policies decide per layer ([`layered`]) and read the node's
//! [`History`]: [`Order::Gdsf`] (Greedy-Dual-Size-Frequency over layers) and
//! [`Order::Learned`] (re-use probability from the gaps between uses, [`learned`]). Callers
//! keep the history: [`History::record_pull`] and [`History::record_use`] as images are pulled
//! and containers start, [`History::record_gc`] with each plan.

pub mod history;
mod layered;
pub mod learned;

use std::collections::{BTreeSet, HashMap};

pub use history::History;

use serde::{Deserialize, Serialize};

/// How freed bytes are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Accounting {
    /// The kubelet's: removing an image frees its full size.
    Image,
    /// Only layers no other remaining image uses are freed.
    Layer,
}

/// In which order eligible images are removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Least recently used first, ties by first seen (the kubelet's).
    Lru,
    /// Most freeable bytes first, ties by LRU.
    LargestFirst,
    /// Per layer, lowest Greedy-Dual-Size-Frequency priority first ([`layered`]).
    Gdsf,
    /// Per layer, least likely to be used again within the horizon first ([`learned`]).
    Learned,
}

impl Order {
    /// Whether this order decides per layer (and so needs layer accounting and a history).
    pub fn per_layer(self) -> bool {
        matches!(self, Order::Gdsf | Order::Learned)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcPolicy {
    pub high_threshold_percent: u8,
    pub low_threshold_percent: u8,
    /// Seconds an image must have been known before disk pressure may remove it.
    pub min_age_secs: u64,
    /// Unused images not used for longer than this are removed regardless of disk usage.
    pub max_age_secs: Option<u64>,
    pub accounting: Accounting,
    pub order: Order,
}

impl Default for GcPolicy {
    fn default() -> Self {
        Self {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age_secs: 120,
            max_age_secs: None,
            accounting: Accounting::Layer,
            order: Order::Lru,
        }
    }
}

/// The names [`GcPolicy::named`] knows.
pub const POLICY_NAMES: [&str; 5] = ["kubelet", "layer-aware", "size-aware", "gdsf", "learned"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("invalid GC policy: low threshold {low}% must be below high threshold {high}% and both at most 100")]
    Thresholds { low: u8, high: u8 },
    #[error("invalid GC policy: order {0:?} decides per layer and needs layer accounting")]
    PerLayerNeedsLayerAccounting(Order),
}

impl GcPolicy {
    /// The kubelet's policy exactly (whole-image accounting).
    pub fn kubelet() -> Self {
        Self {
            accounting: Accounting::Image,
            ..Self::default()
        }
    }

    /// A policy by name, with `base`'s thresholds and ages: `kubelet` (whole-image accounting,
    /// LRU), `layer-aware` (layer accounting, LRU), `size-aware` (layer accounting, most
    /// freeable first), `gdsf` and `learned` (per layer, from the history).
    pub fn named(name: &str, base: &GcPolicy) -> Option<GcPolicy> {
        let (accounting, order) = match name {
            "kubelet" => (Accounting::Image, Order::Lru),
            "layer-aware" => (Accounting::Layer, Order::Lru),
            "size-aware" => (Accounting::Layer, Order::LargestFirst),
            "gdsf" => (Accounting::Layer, Order::Gdsf),
            "learned" => (Accounting::Layer, Order::Learned),
            _ => return None,
        };
        Some(GcPolicy {
            accounting,
            order,
            ..base.clone()
        })
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.high_threshold_percent > 100
            || self.low_threshold_percent >= self.high_threshold_percent
        {
            return Err(PolicyError::Thresholds {
                low: self.low_threshold_percent,
                high: self.high_threshold_percent,
            });
        }
        if self.order.per_layer() && self.accounting != Accounting::Layer {
            return Err(PolicyError::PerLayerNeedsLayerAccounting(self.order));
        }
        Ok(())
    }
}

/// One image as GC sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// Layer keys (shared between images); sizes come from the layer table.
    pub layers: Vec<String>,
    pub first_seen: u64,
    pub last_used: u64,
    pub in_use: bool,
    pub pinned: bool,
}

/// Filesystem numbers at the start of a GC run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub capacity: u64,
    pub available: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    MaxAge,
    DiskPressure,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Removal {
    pub id: String,
    pub reason: Reason,
    /// What the policy's accounting credited for it.
    pub counted_bytes: u64,
    /// What removing it really frees.
    pub freed_bytes: u64,
    /// GDSF: the priority of the layer whose removal took this image (the new inflation value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gdsf_priority: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub removals: Vec<Removal>,
    /// Usage percent before GC.
    pub usage_percent: u64,
    /// What disk pressure asked for (0 below the high threshold).
    pub bytes_to_free: u64,
    pub freed_bytes: u64,
    /// Set when eligible images could not cover `bytes_to_free` (by the policy's count).
    pub shortfall: Option<u64>,
}

struct State<'a> {
    sizes: &'a HashMap<String, u64>,
    refs: HashMap<&'a str, usize>,
}

impl<'a> State<'a> {
    fn unique(c: &'a Candidate) -> BTreeSet<&'a str> {
        c.layers.iter().map(String::as_str).collect()
    }

    fn freeable(&self, c: &'a Candidate) -> u64 {
        Self::unique(c)
            .into_iter()
            .filter(|l| self.refs.get(l) == Some(&1))
            .map(|l| self.sizes.get(l).copied().unwrap_or(0))
            .sum()
    }

    fn total(&self, c: &'a Candidate) -> u64 {
        Self::unique(c)
            .into_iter()
            .map(|l| self.sizes.get(l).copied().unwrap_or(0))
            .sum()
    }

    fn remove(&mut self, c: &'a Candidate) -> u64 {
        let mut freed = 0;
        for l in Self::unique(c) {
            if let Some(n) = self.refs.get_mut(l) {
                *n -= 1;
                if *n == 0 {
                    freed += self.sizes.get(l).copied().unwrap_or(0);
                }
            }
        }
        freed
    }
}

/// Plans one GC run at time `now` (seconds) without history (the kubelet's orders need none).
pub fn plan(
    images: &[Candidate],
    layer_sizes: &HashMap<String, u64>,
    usage: Usage,
    policy: &GcPolicy,
    now: u64,
) -> Plan {
    plan_with_history(images, layer_sizes, usage, policy, &History::default(), now)
}

/// Plans one GC run at time `now` (seconds); the per-layer orders score images from `history`.
///
/// Cost: O(I log I + R) for the kubelet's LRU (I images, R image→layer references),
/// O(I·R) for largest-first, O((I + R) log R) plus scoring for the per-layer orders.
pub fn plan_with_history(
    images: &[Candidate],
    layer_sizes: &HashMap<String, u64>,
    usage: Usage,
    policy: &GcPolicy,
    history: &History,
    now: u64,
) -> Plan {
    let mut st = State {
        sizes: layer_sizes,
        refs: HashMap::new(),
    };
    for c in images {
        for l in State::unique(c) {
            *st.refs.entry(l).or_default() += 1;
        }
    }
    let mut out = Plan::default();
    let mut removed = vec![false; images.len()];
    let mut lru: Vec<usize> = (0..images.len()).collect();
    lru.sort_by_key(|&i| (images[i].last_used, images[i].first_seen, i));
    let protected = |c: &Candidate| c.in_use || c.pinned;

    if let Some(max_age) = policy.max_age_secs {
        for &i in &lru {
            let c = &images[i];
            if !protected(c) && now.saturating_sub(c.last_used) > max_age {
                let counted = match policy.accounting {
                    Accounting::Image => st.total(c),
                    Accounting::Layer => st.freeable(c),
                };
                let freed = st.remove(c);
                out.freed_bytes += freed;
                removed[i] = true;
                out.removals.push(Removal {
                    id: c.id.clone(),
                    reason: Reason::MaxAge,
                    counted_bytes: counted,
                    freed_bytes: freed,
                    gdsf_priority: None,
                });
            }
        }
    }

    let capacity = usage.capacity.max(1);
    let available = (usage.available + out.freed_bytes).min(capacity);
    let usage_percent = 100 - available * 100 / capacity;
    out.usage_percent = usage_percent;
    if usage_percent < policy.high_threshold_percent as u64 {
        return out;
    }
    let target = (capacity as u128 * (100 - policy.low_threshold_percent as u128) / 100) as u64;
    let bytes_to_free = target.saturating_sub(available);
    out.bytes_to_free = bytes_to_free;
    let eligible =
        |c: &Candidate| !protected(c) && now.saturating_sub(c.first_seen) >= policy.min_age_secs;
    if policy.order.per_layer() {
        // Strictly below the high threshold: usage_percent rounds available down.
        let high_available =
            (capacity as u128 * (100 - policy.high_threshold_percent as u128) / 100) as u64 + 1;
        let need = layered::Need {
            must: high_available.saturating_sub(available).min(bytes_to_free),
            may: bytes_to_free,
        };
        let (removals, whole) = layered::free(
            images,
            layer_sizes,
            &mut st.refs,
            &mut removed,
            &eligible,
            policy.order,
            history,
            need,
            now,
        );
        let freed: u64 = removals.iter().map(|r| r.freed_bytes).sum();
        out.freed_bytes += freed;
        out.removals.extend(removals);
        // Past the high threshold the per-layer orders stop on purpose (see `layered`).
        if !need.must_met(policy.order, freed, whole) {
            out.shortfall = Some(need.must - freed);
        }
        return out;
    }
    let mut counted_total = 0u64;
    loop {
        if counted_total >= bytes_to_free {
            break;
        }
        let next = match policy.order {
            Order::Lru => lru
                .iter()
                .copied()
                .find(|&i| !removed[i] && eligible(&images[i])),
            Order::LargestFirst => lru
                .iter()
                .copied()
                .filter(|&i| !removed[i] && eligible(&images[i]))
                // max_by_key keeps the last maximum; iterate reversed so ties go to the LRU.
                .rev()
                .max_by_key(|&i| st.freeable(&images[i])),
            Order::Gdsf | Order::Learned => unreachable!("per-layer orders returned above"),
        };
        let Some(i) = next else { break };
        let c = &images[i];
        let counted = match policy.accounting {
            Accounting::Image => st.total(c),
            Accounting::Layer => st.freeable(c),
        };
        let freed = st.remove(c);
        removed[i] = true;
        counted_total += counted;
        out.freed_bytes += freed;
        out.removals.push(Removal {
            id: c.id.clone(),
            reason: Reason::DiskPressure,
            counted_bytes: counted,
            freed_bytes: freed,
            gdsf_priority: None,
        });
    }
    if counted_total < bytes_to_free {
        out.shortfall = Some(bytes_to_free - counted_total);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(id: &str, layers: &[&str], first_seen: u64, last_used: u64) -> Candidate {
        Candidate {
            id: id.into(),
            layers: layers.iter().map(|s| s.to_string()).collect(),
            first_seen,
            last_used,
            in_use: false,
            pinned: false,
        }
    }

    fn sizes(v: &[(&str, u64)]) -> HashMap<String, u64> {
        v.iter().map(|(k, s)| (k.to_string(), *s)).collect()
    }

    fn ids(p: &Plan) -> Vec<&str> {
        p.removals.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn below_the_high_threshold_nothing_happens() {
        let images = [img("a", &["l1"], 0, 0)];
        let p = plan(
            &images,
            &sizes(&[("l1", 84)]),
            Usage {
                capacity: 100,
                available: 16,
            },
            &GcPolicy::default(),
            1000,
        );
        assert_eq!(p.usage_percent, 84);
        assert!(p.removals.is_empty());
    }

    #[test]
    fn lru_with_ties_by_first_seen_down_to_the_low_threshold() {
        // 90 % used; must free 10 to reach 80 %.
        let images = [
            img("newest", &["n"], 0, 50),
            img("tie-later", &["t2"], 20, 10),
            img("tie-first", &["t1"], 10, 10),
            img("oldest", &["o"], 0, 5),
        ];
        let s = sizes(&[("n", 30), ("t2", 6), ("t1", 6), ("o", 3)]);
        let p = plan(
            &images,
            &s,
            Usage {
                capacity: 100,
                available: 10,
            },
            &GcPolicy::default(),
            1000,
        );
        assert_eq!(p.bytes_to_free, 10);
        assert_eq!(ids(&p), ["oldest", "tie-first", "tie-later"]);
        assert_eq!(p.freed_bytes, 15);
        assert_eq!(p.shortfall, None);
    }

    #[test]
    fn in_use_pinned_and_young_images_are_kept() {
        let mut a = img("in-use", &["a"], 0, 0);
        a.in_use = true;
        let mut b = img("pinned", &["b"], 0, 1);
        b.pinned = true;
        let young = img("young", &["c"], 950, 2);
        let s = sizes(&[("a", 40), ("b", 40), ("c", 10)]);
        let p = plan(
            &[a, b, young],
            &s,
            Usage {
                capacity: 100,
                available: 10,
            },
            &GcPolicy::default(),
            1000,
        );
        assert!(p.removals.is_empty(), "{p:?}");
        assert_eq!(p.shortfall, Some(10));
    }

    #[test]
    fn layer_accounting_keeps_going_past_images_whose_layers_are_shared() {
        // a and b share a 40-byte base; each has 2 bytes of its own; c is 20 alone.
        let images = [
            img("a", &["base", "a1"], 0, 1),
            img("b", &["base", "b1"], 0, 2),
            img("c", &["c1"], 0, 3),
        ];
        let s = sizes(&[("base", 40), ("a1", 2), ("b1", 2), ("c1", 20)]);
        let usage = Usage {
            capacity: 100,
            available: 10,
        };
        // kubelet: a "frees" 42 ≥ 10, stops; really 2 freed, disk still at 88 %.
        let k = plan(&images, &s, usage, &GcPolicy::kubelet(), 1000);
        assert_eq!(ids(&k), ["a"]);
        assert_eq!(k.freed_bytes, 2);
        // layer-aware: a (2), then b (2 + the base 40): 44 ≥ 10.
        let l = plan(&images, &s, usage, &GcPolicy::default(), 1000);
        assert_eq!(ids(&l), ["a", "b"]);
        assert_eq!(l.freed_bytes, 44);
        // largest-first removes c alone (20) after seeing the base is shared.
        let big = GcPolicy {
            order: Order::LargestFirst,
            ..GcPolicy::default()
        };
        let g = plan(&images, &s, usage, &big, 1000);
        assert_eq!(ids(&g), ["c"]);
        assert_eq!(g.freed_bytes, 20);
    }

    #[test]
    fn max_age_removes_old_unused_images_without_disk_pressure() {
        let mut used = img("in-use-old", &["u"], 0, 0);
        used.in_use = true;
        let images = [
            img("old", &["o"], 0, 100),
            img("recent", &["r"], 0, 900),
            used,
        ];
        let s = sizes(&[("o", 1), ("r", 1), ("u", 1)]);
        let policy = GcPolicy {
            max_age_secs: Some(600),
            ..GcPolicy::default()
        };
        let p = plan(
            &images,
            &s,
            Usage {
                capacity: 100,
                available: 97,
            },
            &policy,
            1000,
        );
        assert_eq!(ids(&p), ["old"]);
        assert_eq!(p.removals[0].reason, Reason::MaxAge);
    }

    #[test]
    fn thresholds_are_validated() {
        let p = GcPolicy {
            low_threshold_percent: 90,
            ..GcPolicy::default()
        };
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("low threshold 90%"));
    }
}
