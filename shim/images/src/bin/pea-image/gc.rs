//! `pea-image gc`: one image GC run with a named policy (`layer-aware` unless `--policy`).

use pea_images::gc::{GcPolicy, POLICY_NAMES};
use pea_images::store::DiskSource;
use pea_images::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// kubelet, layer-aware, size-aware, gdsf or learned (the last two read the store's use
    /// history, `<root>/gc-history.json`).
    #[arg(long, default_value = "layer-aware")]
    pub policy: String,
    #[arg(long, default_value_t = 85)]
    pub high: u8,
    #[arg(long, default_value_t = 80)]
    pub low: u8,
    /// Minimum age in seconds before disk pressure may remove an image.
    #[arg(long, default_value_t = 120)]
    pub min_age: u64,
    /// Remove unused images not used for this many seconds.
    #[arg(long)]
    pub max_age: Option<u64>,
    /// Treat the store as living on a disk of this many bytes (instead of statvfs).
    #[arg(long)]
    pub capacity: Option<u64>,
    /// Images in use (never removed); repeatable.
    #[arg(long)]
    pub in_use: Vec<String>,
    /// Show the plan without removing anything.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(store: &Store, args: &Args) -> anyhow::Result<()> {
    let base = GcPolicy {
        high_threshold_percent: args.high,
        low_threshold_percent: args.low,
        min_age_secs: args.min_age,
        max_age_secs: args.max_age,
        ..GcPolicy::default()
    };
    let policy = GcPolicy::named(&args.policy, &base).ok_or_else(|| {
        anyhow::anyhow!(
            "--policy {:?}: want one of {}",
            args.policy,
            POLICY_NAMES.join(", ")
        )
    })?;
    policy.validate()?;
    let disk = match args.capacity {
        Some(capacity) => DiskSource::Fixed {
            capacity,
            other_used: 0,
        },
        None => DiskSource::Filesystem,
    };
    if args.dry_run {
        let plan = store.plan_gc(&policy, disk, &args.in_use)?;
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(());
    }
    let report = store.gc(&policy, disk, &args.in_use)?;
    println!("{}", serde_json::to_string_pretty(&report.plan)?);
    Ok(())
}
