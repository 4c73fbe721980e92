//! Comparing policies over several traces (kinds × seeds) and disk sizes: one [`SimResult`]
//! per run, then per (trace kind, disk, policy) cell the sum over seeds and how many seeds
//! beat the baseline policy on every measure.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{policy, simulate, SimConfig, SimResult, Trace, POLICIES};
use crate::gc::GcPolicy;

/// One named trace (e.g. `ci` seed 3).
#[derive(Debug, Clone)]
pub struct NamedTrace {
    pub kind: String,
    pub seed: u64,
    pub trace: Trace,
}

/// Bytes any policy must pull: every layer the trace starts, once.
pub fn compulsory_bytes(trace: &Trace) -> u64 {
    let mut layers = std::collections::HashSet::new();
    for e in &trace.events {
        for (l, _) in &trace.images[&e.image] {
            layers.insert(l.as_str());
        }
    }
    layers.iter().map(|l| trace.layer_sizes[*l]).sum()
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub kind: String,
    pub seed: u64,
    pub compulsory_bytes: u64,
    #[serde(flatten)]
    pub result: SimResult,
}

/// Results over seeds for one (kind, disk, policy).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cell {
    pub kind: String,
    pub disk_bytes: u64,
    pub policy: String,
    pub seeds: u64,
    pub requests: u64,
    pub hits: u64,
    pub bytes_pulled: u64,
    /// Bytes every policy must pull (each started layer once), summed over seeds.
    pub compulsory_bytes: u64,
    pub failed_pulls: u64,
    pub evictions: u64,
    pub gc_runs: u64,
    pub gc_max_micros: u64,
    pub gc_total_micros: u64,
    /// Seeds on which this policy pulled fewer bytes than the baseline (or both pulled only
    /// the compulsory bytes), failed no pull and hit at least as often (the baseline: 0).
    pub seeds_beating_baseline: u64,
    /// Bytes pulled relative to the baseline's over the same seeds.
    pub pulled_vs_baseline: f64,
    pub hit_rate_vs_baseline: f64,
}

impl Cell {
    pub fn hit_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.hits as f64 / self.requests as f64
        }
    }
}

/// Runs every policy at every disk size on every trace, `workers` runs at a time.
pub fn run_all(
    traces: &[NamedTrace],
    disks: &[u64],
    policies: &[&str],
    base: &GcPolicy,
    gc_period_secs: u64,
    workers: usize,
) -> Result<Vec<Run>, String> {
    let mut jobs = Vec::new();
    for (ti, _) in traces.iter().enumerate() {
        for name in policies {
            let p = policy(name, base).ok_or_else(|| {
                format!("unknown policy {name:?} (known: {})", POLICIES.join(", "))
            })?;
            for &disk in disks {
                jobs.push((ti, name.to_string(), p.clone(), disk));
            }
        }
    }
    let compulsory: Vec<u64> = traces.iter().map(|t| compulsory_bytes(&t.trace)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out = std::sync::Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((ti, name, p, disk)) = jobs.get(j) else {
                    break;
                };
                let cfg = SimConfig {
                    disk_bytes: *disk,
                    other_used: 0,
                    gc_period_secs,
                    policy: p.clone(),
                };
                let t = &traces[*ti];
                let result = simulate(&t.trace, &cfg, name);
                out.lock().expect("no panics while held")[j] = Some(Run {
                    kind: t.kind.clone(),
                    seed: t.seed,
                    compulsory_bytes: compulsory[*ti],
                    result,
                });
            });
        }
    });
    Ok(out
        .into_inner()
        .expect("workers done")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect())
}

/// Sums runs per (kind, disk, policy), in first-seen order, compared with `baseline`.
pub fn cells(runs: &[Run], baseline: &str) -> Vec<Cell> {
    let mut order: Vec<(String, u64, String)> = Vec::new();
    let mut by: BTreeMap<(String, u64, String), Cell> = BTreeMap::new();
    let mut base: BTreeMap<(String, u64, u64), &SimResult> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.result.policy == baseline) {
        base.insert((r.kind.clone(), r.seed, r.result.disk_bytes), &r.result);
    }
    for r in runs {
        let key = (r.kind.clone(), r.result.disk_bytes, r.result.policy.clone());
        let c = by.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            Cell {
                kind: r.kind.clone(),
                disk_bytes: r.result.disk_bytes,
                policy: r.result.policy.clone(),
                ..Default::default()
            }
        });
        let x = &r.result;
        c.seeds += 1;
        c.requests += x.requests;
        c.hits += x.hits;
        c.bytes_pulled += x.bytes_pulled;
        c.compulsory_bytes += r.compulsory_bytes;
        c.failed_pulls += x.failed_pulls;
        c.evictions += x.evictions;
        c.gc_runs += x.gc_runs;
        c.gc_max_micros = c.gc_max_micros.max(x.gc_max_micros);
        c.gc_total_micros += x.gc_total_micros;
        if let Some(b) = base.get(&(r.kind.clone(), r.seed, x.disk_bytes)) {
            let at_floor = x.bytes_pulled == r.compulsory_bytes && b.bytes_pulled == x.bytes_pulled;
            if x.policy != baseline
                && (x.bytes_pulled < b.bytes_pulled || at_floor)
                && x.failed_pulls == 0
                && x.hits >= b.hits
            {
                c.seeds_beating_baseline += 1;
            }
        }
    }
    let mut out: Vec<Cell> = order
        .into_iter()
        .map(|k| by.remove(&k).expect("inserted"))
        .collect();
    let base_cells: BTreeMap<(String, u64), (u64, f64)> = out
        .iter()
        .filter(|c| c.policy == baseline)
        .map(|c| {
            (
                (c.kind.clone(), c.disk_bytes),
                (c.bytes_pulled, c.hit_rate()),
            )
        })
        .collect();
    for c in &mut out {
        if let Some((pulled, hit)) = base_cells.get(&(c.kind.clone(), c.disk_bytes)) {
            c.pulled_vs_baseline = c.bytes_pulled as f64 / (*pulled).max(1) as f64;
            c.hit_rate_vs_baseline = c.hit_rate() - hit;
        }
    }
    out
}

/// A Markdown table of cells; bytes are means per seed. "floor": the compulsory bytes (each
/// started layer once); "seeds better": seeds on which the policy pulled fewer bytes than the
/// baseline (or both only the floor) with no failed pull and no fewer hits.
pub fn table(cells: &[Cell], baseline: &str) -> String {
    let gib = |b: f64| b / (1u64 << 30) as f64;
    let mut s = format!(
        "| trace | disk | policy | pulled (GiB/seed) | vs {baseline} | floor | hit rate | failed pulls | seeds better | GC max |\n|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for c in cells {
        let n = c.seeds.max(1) as f64;
        let better = if c.policy == baseline {
            "–".to_string()
        } else {
            format!("{}/{}", c.seeds_beating_baseline, c.seeds)
        };
        s.push_str(&format!(
            "| {} | {:.1} GiB | {} | {:.1} | {:.3}× | {:.1} | {:.1} % | {} | {} | {:.2} ms |\n",
            c.kind,
            gib(c.disk_bytes as f64),
            c.policy,
            gib(c.bytes_pulled as f64 / n),
            c.pulled_vs_baseline,
            gib(c.compulsory_bytes as f64 / n),
            c.hit_rate() * 100.0,
            c.failed_pulls,
            better,
            c.gc_max_micros as f64 / 1000.0,
        ));
    }
    s
}
