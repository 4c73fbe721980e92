//! Threshold recommendation: replays traces at one disk size over a grid of high/low
//! thresholds with one policy and picks the pair that pulls the fewest bytes without a failed
//! pull (ties: the higher hit rate, then more headroom — the lower high threshold).

use serde::Serialize;

use super::compare::{self, NamedTrace};
use crate::gc::GcPolicy;

#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub high: u8,
    pub low: u8,
    pub bytes_pulled: u64,
    pub hit_rate: f64,
    pub failed_pulls: u64,
    pub gc_runs: u64,
}

/// The grid: high thresholds from 70 % in steps of 5 up to `max_high`, each with lows 2, 5,
/// 10 and 20 points below.
pub fn grid(max_high: u8) -> Vec<(u8, u8)> {
    let mut out = Vec::new();
    let mut high = 70u8;
    while high <= max_high.min(99) {
        for gap in [2u8, 5, 10, 20] {
            out.push((high, high - gap));
        }
        high += 5;
    }
    out
}

/// Every grid point's results, best first.
pub fn rank(
    traces: &[NamedTrace],
    disk: u64,
    policy: &str,
    base: &GcPolicy,
    gc_period_secs: u64,
    max_high: u8,
    workers: usize,
) -> Result<Vec<Candidate>, String> {
    let mut out = Vec::new();
    for (high, low) in grid(max_high) {
        let p = GcPolicy {
            high_threshold_percent: high,
            low_threshold_percent: low,
            ..base.clone()
        };
        let runs = compare::run_all(traces, &[disk], &[policy], &p, gc_period_secs, workers)?;
        let mut c = Candidate {
            high,
            low,
            bytes_pulled: 0,
            hit_rate: 0.0,
            failed_pulls: 0,
            gc_runs: 0,
        };
        let (mut hits, mut requests) = (0u64, 0u64);
        for r in &runs {
            c.bytes_pulled += r.result.bytes_pulled;
            c.failed_pulls += r.result.failed_pulls;
            c.gc_runs += r.result.gc_runs;
            hits += r.result.hits;
            requests += r.result.requests;
        }
        c.hit_rate = hits as f64 / requests.max(1) as f64;
        out.push(c);
    }
    out.sort_by(|a, b| {
        (a.failed_pulls > 0)
            .cmp(&(b.failed_pulls > 0))
            .then(a.bytes_pulled.cmp(&b.bytes_pulled))
            .then(b.hit_rate.total_cmp(&a.hit_rate))
            .then(a.high.cmp(&b.high))
            .then(b.low.cmp(&a.low))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Trace;

    #[test]
    fn the_grid_stays_under_the_cap_and_below_each_high() {
        let g = grid(85);
        assert_eq!(g.len(), 16);
        assert!(g.iter().all(|&(h, l)| h <= 85 && l < h));
        assert_eq!(g[0], (70, 68));
    }

    #[test]
    fn a_tiny_trace_prefers_thresholds_that_keep_what_comes_back() {
        // Disk 100, GC every 100 s: A (40) and B (40) come back, C (10) comes once. With a
        // high threshold of 95 % nothing is ever removed: 90 bytes, each image pulled once. At
        // 70 % A or B must go when B arrives (80 %) and is pulled again later.
        let t = Trace::parse(
            r#"{"t": 0, "image": "A", "layers": [["a", 40]]}
{"t": 200, "image": "B", "layers": [["b", 40]]}
{"t": 400, "image": "C", "layers": [["c", 10]]}
{"t": 600, "image": "A"}
{"t": 800, "image": "B"}
{"t": 1000, "image": "A"}"#,
        )
        .unwrap();
        let traces = [NamedTrace {
            kind: "t".into(),
            seed: 0,
            trace: t,
        }];
        let base = GcPolicy {
            min_age_secs: 0,
            ..GcPolicy::named("learned", &GcPolicy::default()).unwrap()
        };
        let ranked = rank(&traces, 100, "learned", &base, 100, 95, 1).unwrap();
        assert_eq!(ranked.len(), 24);
        let best = &ranked[0];
        // 90 bytes are unavoidable (each image once); at 95 % nothing else must go.
        assert_eq!(
            (best.bytes_pulled, best.failed_pulls),
            (90, 0),
            "{ranked:?}"
        );
        // And some low threshold does force a re-pull, so the ranking is not flat.
        assert!(ranked.iter().any(|c| c.bytes_pulled > 90), "{ranked:?}");
    }
}
