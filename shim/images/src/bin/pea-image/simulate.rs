//! `pea-image simulate`: replays a trace (or a generated Zipf trace) against GC policies at
//! several disk sizes; prints a table and writes an SVG plot of bytes pulled vs disk size.

use std::path::PathBuf;

use anyhow::Context as _;
use pea_images::gc::GcPolicy;
use pea_images::sim::{self, generate, svg, Trace};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A JSON-lines trace (format in pea_images::sim); without it a trace is generated.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Write the (generated) trace here.
    #[arg(long)]
    pub write_trace: Option<PathBuf>,
    /// Generated trace: number of images.
    #[arg(long, default_value_t = 300)]
    pub images: usize,
    /// Generated trace: number of container starts.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Generated trace: Zipf exponent of image popularity.
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Generated trace: mean seconds between container starts.
    #[arg(long, default_value_t = 30.0)]
    pub interarrival: f64,
    /// Generated trace: mean seconds a container runs.
    #[arg(long, default_value_t = 900.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Disk sizes in GiB, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![5.0, 7.5, 10.0, 12.5, 15.0, 20.0])]
    pub disk_gib: Vec<f64>,
    /// Policies, comma separated: kubelet, layer-aware, size-aware.
    #[arg(long, value_delimiter = ',', default_values_t = sim::POLICIES.map(String::from).to_vec())]
    pub policies: Vec<String>,
    #[arg(long, default_value_t = 85)]
    pub high: u8,
    #[arg(long, default_value_t = 80)]
    pub low: u8,
    #[arg(long, default_value_t = 120)]
    pub min_age: u64,
    #[arg(long)]
    pub max_age: Option<u64>,
    /// Seconds between periodic GC runs.
    #[arg(long, default_value_t = 300)]
    pub gc_period: u64,
    /// Write the plot here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Print results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let trace = match &args.trace {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Trace::parse(&text).with_context(|| p.display().to_string())?
        }
        None => generate::generate(&generate::GenSpec {
            images: args.images,
            events: args.events,
            zipf_s: args.zipf,
            mean_interarrival_secs: args.interarrival,
            mean_duration_secs: args.duration,
            seed: args.seed,
            ..Default::default()
        }),
    };
    if let Some(p) = &args.write_trace {
        std::fs::write(p, trace.to_jsonl()).with_context(|| format!("writing {}", p.display()))?;
    }
    let base = GcPolicy {
        high_threshold_percent: args.high,
        low_threshold_percent: args.low,
        min_age_secs: args.min_age,
        max_age_secs: args.max_age,
        ..GcPolicy::default()
    };
    base.validate()?;
    let disks: Vec<u64> = args
        .disk_gib
        .iter()
        .map(|g| (g * (1u64 << 30) as f64) as u64)
        .collect();
    let policies: Vec<&str> = args.policies.iter().map(String::as_str).collect();
    let results =
        sim::sweep(&trace, &disks, &policies, &base, args.gc_period).map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        let distinct: u64 = trace.layer_sizes.values().sum();
        println!(
            "{} events, {} images, {} distinct layers ({:.1} GiB)\n",
            trace.events.len(),
            trace.images.len(),
            trace.layer_sizes.len(),
            distinct as f64 / (1u64 << 30) as f64
        );
        print!("{}", sim::report(&results));
    }
    if let Some(p) = &args.svg {
        let title = format!(
            "Bytes pulled vs disk size ({} events, GC {}%→{}%)",
            trace.events.len(),
            args.high,
            args.low
        );
        std::fs::write(p, svg::plot(&results, &title))
            .with_context(|| format!("writing {}", p.display()))?;
        eprintln!("plot written to {}", p.display());
    }
    Ok(())
}
