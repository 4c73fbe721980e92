//! `pea-image recommend`: suggests high/low GC thresholds for a trace (or a node's recording)
//! and a disk size — the pair with which the policy pulls the fewest bytes without a failed
//! pull, from a grid capped at `--max-high` (room for what else shares the disk).

use pea_images::gc::GcPolicy;
use pea_images::sim::recommend;

use crate::simulate::{base_policy, parse_disks, traces, TraceArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub traces: TraceArgs,
    /// Disk for images, GiB.
    #[arg(long)]
    pub disk_gib: f64,
    /// The policy to tune.
    #[arg(long, default_value = "learned")]
    pub policy: String,
    /// Highest high threshold to consider, percent.
    #[arg(long, default_value_t = 90)]
    pub max_high: u8,
    #[arg(long, default_value_t = 120)]
    pub min_age: u64,
    /// Seconds between periodic GC runs.
    #[arg(long, default_value_t = 300)]
    pub gc_period: u64,
    /// Candidates shown.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        (70..=99).contains(&args.max_high),
        "--max-high {}: want 70 to 99",
        args.max_high
    );
    let traces = traces(&args.traces)?;
    let disk = parse_disks(&[args.disk_gib])?[0];
    let base = base_policy(85, 80, args.min_age, None)?;
    let base = GcPolicy::named(&args.policy, &base)
        .ok_or_else(|| anyhow::anyhow!("--policy {:?} is not a known policy", args.policy))?;
    let ranked = recommend::rank(
        &traces,
        disk,
        &args.policy,
        &base,
        args.gc_period,
        args.max_high,
        args.jobs,
    )
    .map_err(anyhow::Error::msg)?;
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    // The kubelet's defaults with the same policy, for comparison.
    let default = ranked.iter().find(|c| c.high == 85 && c.low == 80);
    println!(
        "| high | low | pulled | hit rate | failed pulls | GC runs |\n|---|---|---|---|---|---|"
    );
    for c in ranked.iter().take(args.top).chain(default) {
        println!(
            "| {}% | {}% | {:.2} GiB | {:.1} % | {} | {} |",
            c.high,
            c.low,
            gib(c.bytes_pulled),
            c.hit_rate * 100.0,
            c.failed_pulls,
            c.gc_runs
        );
    }
    let best = &ranked[0];
    if best.failed_pulls > 0 {
        println!("\nno thresholds avoid failed pulls at {:.1} GiB: the disk is too small for what runs at once", args.disk_gib);
    } else {
        println!(
            "\nrecommended for {} at {:.1} GiB: high {}%, low {}% (last row: 85%/80% for comparison)",
            args.policy, args.disk_gib, best.high, best.low
        );
    }
    Ok(())
}
