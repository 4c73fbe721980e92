//! The learned policy's estimate: how likely is an image or a layer, idle for `a` seconds, to
//! be used again within the horizon `T` (see [`History::horizon_secs`])?
//!
//! Images and layers are estimated alike, each against its own kind. From the entry's own gaps
//! between uses: of the gaps longer than `a`, the share that ended
//! by `a + T` — the empirical hazard. Images with little history borrow from the node: a prior
//! from every remembered image's gaps, with images still idle counted as censored (they have
//! waited at least their idle time — so one-shot CI images teach the node that a first use is
//! often the last). Two priors: after a first use (first gaps; images used once are censored)
//! and after later uses. The blend is `(events + m·prior) / (at risk + m)` with `m` =
//! [`PRIOR_WEIGHT`] pseudo-observations.
//!
//! Taken-over images (a newer image of the repository rolled out over them, see
//! [`History::record_use`]) are estimated apart: from the node's returns of taken-over images
//! (rollbacks), with every image still taken over censored at its idle time — so a node whose
//! superseded tags never come back learns that they will not. They leave the priors of the
//! others at the moment they were taken over (censored there): an old tag idle for days says
//! nothing about how long the current tag of a quiet service waits between restarts. A layer
//! whose every remembered holder was taken over is needed again only if one of them returns:
//! its probability is the highest of theirs.

use std::collections::HashMap;

use super::history::{History, Stats};

/// Pseudo-observations the node-wide prior counts for in each image's estimate.
pub const PRIOR_WEIGHT: f64 = 2.0;
/// Prior before the node has seen any gap: a coin flip.
const BLANK_PRIOR: f64 = 0.5;

/// Completed gaps and censored idle times, sorted, for counting with binary search.
#[derive(Debug, Default)]
struct Pool {
    complete: Vec<f64>,
    censored: Vec<f64>,
}

impl Pool {
    fn sort(&mut self) {
        self.complete.sort_by(f64::total_cmp);
        self.censored.sort_by(f64::total_cmp);
    }

    /// P(gap ≤ a + T | gap > a); censored times inside the window count half at risk.
    fn hazard(&self, a: f64, t: f64) -> f64 {
        self.hazard_or(a, t, BLANK_PRIOR)
    }

    /// [`Pool::hazard`], `fallback` when nothing is at risk past `a`.
    fn hazard_or(&self, a: f64, t: f64, fallback: f64) -> f64 {
        let above = |v: &[f64], x: f64| v.len() - v.partition_point(|&g| g <= x);
        let events = (above(&self.complete, a) - above(&self.complete, a + t)) as f64;
        let risk_complete = above(&self.complete, a) as f64;
        let cens_after = above(&self.censored, a + t) as f64;
        let cens_inside = (above(&self.censored, a) as f64) - cens_after;
        let risk = risk_complete + cens_after + 0.5 * cens_inside;
        if risk <= 0.0 {
            fallback
        } else {
            events / risk
        }
    }
}

/// The node's history prepared for one GC run.
#[derive(Debug)]
pub struct Model<'h> {
    pub images: Estimator<'h>,
    pub layers: Estimator<'h>,
    /// Layers whose every remembered holder was taken over: those holders.
    taken_over_layers: HashMap<&'h str, Vec<&'h str>>,
}

impl<'h> Model<'h> {
    /// O(G log G + R) for G remembered gaps and R remembered image→layer references.
    pub fn new(history: &'h History, now: u64) -> Self {
        let horizon = history.horizon_secs();
        // Per layer: its remembered holders while all are taken over (None once one is not),
        // and the latest take-over among them.
        let mut over: HashMap<&str, Option<(u64, Vec<&str>)>> = HashMap::new();
        for (id, s) in &history.images {
            for l in &s.layers {
                let e = over
                    .entry(l.as_str())
                    .or_insert_with(|| Some((0, Vec::new())));
                match (e.as_mut(), s.taken_over_at) {
                    (Some((at, holders)), Some(t)) => {
                        *at = (*at).max(t);
                        holders.push(id.as_str());
                    }
                    _ => *e = None,
                }
            }
        }
        let layer_over: HashMap<&str, (u64, usize)> = over
            .iter()
            .filter_map(|(l, o)| o.as_ref().map(|(at, _)| (*l, (*at, 0))))
            .collect();
        let image_over: HashMap<&str, (u64, usize)> = history
            .images
            .iter()
            .filter_map(|(id, s)| {
                s.taken_over_at
                    .map(|t| (id.as_str(), (t, class(s.generations))))
            })
            .collect();
        Self {
            images: Estimator::new(&history.images, &image_over, now, horizon),
            layers: Estimator::new(&history.layers, &layer_over, now, horizon),
            taken_over_layers: over
                .into_iter()
                .filter_map(|(l, o)| o.map(|(_, holders)| (l, holders)))
                .collect(),
        }
    }

    /// The probability that the layer `key` is used again within the horizon; `last_used`:
    /// the latest use its present holders record.
    pub fn layer_reuse_probability(&self, key: &str, last_used: u64) -> f64 {
        match self.taken_over_layers.get(key) {
            Some(holders) => holders
                .iter()
                .map(|h| self.images.reuse_probability(h, 0))
                .fold(0.0, f64::max),
            None => self.layers.reuse_probability(key, last_used),
        }
    }
}

/// Estimates for one kind of entry (images or layers).
#[derive(Debug)]
pub struct Estimator<'h> {
    stats: &'h HashMap<String, Stats>,
    now: u64,
    horizon: f64,
    after_first: Pool,
    after_later: Pool,
    /// Per take-over class (once, or by two generations or more): returns of taken-over
    /// entries (complete) and the idle time of those still taken over.
    taken_over: [Pool; 2],
    /// Per class, of the taken-over spells seen, the share that ended in a return (the
    /// taken-over prior where nothing is at risk).
    return_share: [f64; 2],
    /// Keys taken over now ([`History::record_use`]) and their class.
    over: HashMap<&'h str, (u64, usize)>,
}

/// The take-over class of an image taken over by `generations` newer images.
fn class(generations: u8) -> usize {
    usize::from(generations >= 2)
}

impl<'h> Estimator<'h> {
    fn new(
        stats: &'h HashMap<String, Stats>,
        over: &HashMap<&str, (u64, usize)>,
        now: u64,
        horizon: f64,
    ) -> Self {
        let mut after_first = Pool::default();
        let mut after_later = Pool::default();
        let mut taken_over: [Pool; 2] = Default::default();
        let mut over_keys = HashMap::new();
        for (key, s) in stats {
            for &(g, gen) in &s.returns {
                taken_over[class(gen)].complete.push(g as f64);
            }
            let mut idle = now.saturating_sub(s.last_use) as f64;
            if let Some(&(at, c)) = over.get(key.as_str()) {
                over_keys.insert(key.as_str(), (at, c));
                taken_over[c].censored.push(idle);
                // Censored for the other priors when it was taken over.
                idle = at.saturating_sub(s.last_use) as f64;
            }
            if let Some(g) = s.first_gap {
                after_first.complete.push(g as f64);
            }
            // The deque's first gap is the first gap while fewer than GAPS_KEPT were kept.
            let skip = usize::from(s.gaps.len() as u64 + 1 == s.uses);
            after_later
                .complete
                .extend(s.gaps.iter().skip(skip).map(|&g| g as f64));
            match s.uses {
                0 => {}
                1 => after_first.censored.push(idle),
                _ => after_later.censored.push(idle),
            }
        }
        after_first.sort();
        after_later.sort();
        let return_share = taken_over.each_mut().map(|p| {
            p.sort();
            let returns = p.complete.len() as f64;
            let spells = returns + p.censored.len() as f64;
            if spells > 0.0 {
                returns / spells
            } else {
                BLANK_PRIOR
            }
        });
        Self {
            stats,
            now,
            horizon,
            after_first,
            after_later,
            taken_over,
            return_share,
            over: over_keys,
        }
    }

    /// Whether `key` is taken over now.
    pub fn taken_over(&self, key: &str) -> bool {
        self.over.contains_key(key)
    }

    pub fn horizon_secs(&self) -> f64 {
        self.horizon
    }

    /// The probability that `key` is used again within the horizon; `last_used` is the
    /// caller's record (the history's may be older when containers ran through GC runs).
    pub fn reuse_probability(&self, key: &str, last_used: u64) -> f64 {
        let stats = self.stats.get(key);
        let last = stats.map(|s| s.last_use).unwrap_or(0).max(last_used);
        let a = self.now.saturating_sub(last) as f64;
        let t = self.horizon;
        if let Some(&(_, c)) = self.over.get(key) {
            let prior = self.taken_over[c].hazard_or(a, t, self.return_share[c]);
            let (events, risk) = stats
                .map(|s| {
                    let gaps = s.returns.iter().filter(|r| class(r.1) == c).map(|r| r.0);
                    counts(gaps, a, t)
                })
                .unwrap_or((0.0, 0.0));
            return (events + PRIOR_WEIGHT * prior) / (risk + PRIOR_WEIGHT);
        }
        let uses = stats.map(|s| s.uses).unwrap_or(0);
        let prior = if uses <= 1 {
            self.after_first.hazard(a, t)
        } else {
            self.after_later.hazard(a, t)
        };
        let (events, risk) = stats
            .map(|s| counts(s.gaps.iter().copied(), a, t))
            .unwrap_or((0.0, 0.0));
        (events + PRIOR_WEIGHT * prior) / (risk + PRIOR_WEIGHT)
    }
}

/// Of `gaps` longer than `a`, how many ended by `a + t`, and how many there are.
fn counts(gaps: impl Iterator<Item = u64>, a: f64, t: f64) -> (f64, f64) {
    let mut events = 0.0;
    let mut risk = 0.0;
    for g in gaps {
        let g = g as f64;
        if g > a {
            risk += 1.0;
            if g <= a + t {
                events += 1.0;
            }
        }
    }
    (events, risk)
}

#[cfg(test)]
mod tests {
    use super::super::history::repository_of;
    use super::*;

    #[test]
    fn a_regular_image_is_likely_back_and_a_one_shot_image_is_not() {
        let mut h = History::default();
        // "svc" is used every 100 s; 50 one-shot images were used once, long ago.
        for k in 0..20 {
            h.record_use("svc", ["svc-l"], k * 100);
        }
        for i in 0..50 {
            let name = format!("ci-{i}");
            h.record_use(&name, [name.as_str()], i);
        }
        h.record_use("new-ci", ["new-ci"], 1950);
        let m = Model::new(&h, 2000);
        assert_eq!(m.images.horizon_secs(), 3600.0);
        // svc, idle 100 s: none of its own gaps (all 100 s) is above 100, and neither is any
        // gap in the later-use prior, so the blank prior (0.5) decides.
        let svc = m.images.reuse_probability("svc", 0);
        assert_eq!(svc, 0.5);
        // new-ci, idle 50 s: the first-use prior has svc's first gap (100 s, back within the
        // hour) and 50 one-shot images idle ~2000 s (censored inside the window, half at risk
        // each): 1 / 26, blended with no own gaps.
        let ci = m.images.reuse_probability("new-ci", 0);
        assert!((ci - 1.0 / 26.0).abs() < 1e-9, "{ci}");
        h.record_use("svc", ["svc-l"], 2050);
        let m = Model::new(&h, 2060);
        // Now idle 10 s with 20 gaps above 10 s, all within the hour: 20 / 20, prior 1.
        assert_eq!(m.images.reuse_probability("svc", 0), 1.0);
        assert!(m.images.reuse_probability("new-ci", 0) < 0.01);
        // Layers are estimated from their own uses.
        assert_eq!(m.layers.reuse_probability("svc-l", 0), 1.0);
    }

    #[test]
    fn hazard_counts_the_window_and_censoring() {
        let p = Pool {
            complete: vec![10.0, 20.0, 30.0, 1000.0],
            censored: vec![5.0, 5000.0],
        };
        // a = 15, t = 20: complete above 15: 20, 30, 1000 (3 at risk), events 20, 30 (2);
        // censored above 35: 5000 (1 at risk). 2 / 4.
        assert_eq!(p.hazard(15.0, 20.0), 0.5);
    }

    #[test]
    fn taken_over_tags_are_estimated_apart_and_leave_the_current_tag_alone() {
        let build = |with_repository: bool| {
            let mut h = History::default();
            for (t, image, layers) in [
                (0, "app:1", ["base", "a1"]),
                (100, "app:2", ["base", "a2"]),
                (200, "app:3", ["base", "a3"]),
            ] {
                let repo = with_repository.then_some("app");
                h.record_pull(image, repo, layers);
                h.record_use(image, layers, t);
            }
            h
        };
        let h = build(true);
        assert_eq!(h.images["app:1"].generations, 2);
        assert_eq!(h.images["app:2"].generations, 1);
        let m = Model::new(&h, 1000);
        // Taken over once: app:2 alone in its class, censored at its idle 800, no return
        // seen: nothing at risk past 800, so the share of returns, 0 of 1, decides.
        assert_eq!(m.images.reuse_probability("app:2", 0), 0.0);
        assert_eq!(m.images.reuse_probability("app:1", 0), 0.0);
        // app:3, idle 800 after one use: the first-use prior holds app:1 and app:2 censored
        // where they were taken over (idle 100 each), so nothing is at risk past 800 and the
        // blank prior stands: 0.5.
        assert_eq!(m.images.reuse_probability("app:3", 0), 0.5);
        // Layers held only by taken-over tags are worth their holders' best; the shared base
        // (held by app:3) and a3 are estimated as layers: nothing at risk past 800, 0.5.
        assert_eq!(m.layer_reuse_probability("a1", 0), 0.0);
        assert_eq!(m.layer_reuse_probability("a2", 0), 0.0);
        assert_eq!(m.layer_reuse_probability("a3", 0), 0.5);
        assert_eq!(m.layer_reuse_probability("base", 0), 0.5);
        // Without repositories the old tags' idle times (900, 1000) sit in the window after
        // app:3's 800, half at risk each with no return: app:3 looks gone (0), like them.
        let blind = build(false);
        let m = Model::new(&blind, 1000);
        assert_eq!(m.images.reuse_probability("app:3", 0), 0.0);
        assert_eq!(m.layer_reuse_probability("a3", 0), 0.0);
    }

    #[test]
    fn a_node_that_saw_rollbacks_expects_them() {
        let mut h = History::default();
        for (t, image, layers) in [
            (0, "a:1", ["a-base", "a1"]),
            (100, "a:2", ["a-base", "a2"]),
            (1100, "a:1", ["a-base", "a1"]),
            (2000, "b:1", ["b-base", "b1"]),
            (2100, "b:2", ["b-base", "b2"]),
        ] {
            h.record_pull(image, repository_of(image), layers);
            h.record_use(image, layers, t);
        }
        // a:1 came back 1100 s after its last use (a rollback); b:1 is taken over now.
        assert_eq!(h.images["a:1"].returns, [(1100, 1)]);
        let m = Model::new(&h, 2200);
        // b:1, idle 200, taken over once: its class has the return (1100, above 200 and
        // within 200 + 3600) and b:1 itself censored at 200 (not above): 1 / 1.
        assert_eq!(m.images.reuse_probability("b:1", 0), 1.0);
        assert!(m.images.taken_over("b:1") && !m.images.taken_over("a:1"));
    }
}
