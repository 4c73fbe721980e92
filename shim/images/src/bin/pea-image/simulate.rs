//! `pea-image simulate`: replays traces (generated kinds × seeds, a trace file, or a node's
//! recording) against GC policies at several disk sizes; prints a table per trace kind and
//! writes SVG plots (bytes pulled vs disk, hit rate vs disk, bytes pulled over time).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use pea_images::gc::GcPolicy;
use pea_images::sim::compare::{self, NamedTrace};
use pea_images::sim::generate::{zipf, TraceKind};
use pea_images::sim::{self, recording, svg, Trace};

/// Which traces to replay (shared with `recommend`).
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// A JSON-lines trace (format in pea_images::sim) instead of generated ones.
    #[arg(long, conflicts_with = "recording")]
    pub trace: Option<PathBuf>,
    /// A node's recording (format in pea_images::sim::recording) instead of generated traces.
    #[arg(long)]
    pub recording: Option<PathBuf>,
    /// Generated trace kinds, comma separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = TraceKind::ALL.to_vec())]
    pub kinds: Vec<TraceKind>,
    /// Seeds of the generated traces, comma separated (results are summed over seeds).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 2, 3])]
    pub seeds: Vec<u64>,
    /// Container starts per generated trace.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Zipf kind: number of images.
    #[arg(long, default_value_t = 300)]
    pub images: usize,
    /// Zipf kind: exponent of image popularity.
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Zipf kind: mean seconds between container starts.
    #[arg(long, default_value_t = 30.0)]
    pub interarrival: f64,
    /// Zipf kind: mean seconds a container runs.
    #[arg(long, default_value_t = 900.0)]
    pub duration: f64,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub traces: TraceArgs,
    /// Write the first trace here (JSON lines).
    #[arg(long)]
    pub write_trace: Option<PathBuf>,
    /// Disk sizes in GiB, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![5.0, 7.5, 10.0, 12.5, 15.0, 20.0])]
    pub disk_gib: Vec<f64>,
    /// Policies, comma separated: kubelet, layer-aware, size-aware, gdsf, learned.
    #[arg(long, value_delimiter = ',', default_values_t = sim::POLICIES.map(String::from).to_vec())]
    pub policies: Vec<String>,
    /// The policy the others are compared with.
    #[arg(long, default_value = "kubelet")]
    pub baseline: String,
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
    /// Write SVG plots into this directory (`<kind>-pulled.svg`, `<kind>-hit-rate.svg`,
    /// `<kind>-timeline.svg`).
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Disk size (GiB) of the pulls-over-time plot; the smallest simulated one by default.
    #[arg(long)]
    pub timeline_disk_gib: Option<f64>,
    /// Simulations run at once.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Print every run as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

fn read(p: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
}

/// The traces `args` asks for.
pub fn traces(args: &TraceArgs) -> anyhow::Result<Vec<NamedTrace>> {
    if let Some(p) = &args.trace {
        let trace = Trace::parse(&read(p)?).with_context(|| p.display().to_string())?;
        return Ok(vec![NamedTrace {
            kind: p.display().to_string(),
            seed: 0,
            trace,
        }]);
    }
    if let Some(p) = &args.recording {
        let trace = recording::load(&read(p)?).with_context(|| p.display().to_string())?;
        return Ok(vec![NamedTrace {
            kind: p.display().to_string(),
            seed: 0,
            trace,
        }]);
    }
    anyhow::ensure!(!args.seeds.is_empty(), "--seeds: give at least one seed");
    anyhow::ensure!(args.events > 0, "--events must be positive");
    let mut out = Vec::new();
    for kind in &args.kinds {
        for &seed in &args.seeds {
            let trace = match kind {
                TraceKind::Zipf => zipf::generate(&zipf::GenSpec {
                    images: args.images,
                    events: args.events,
                    zipf_s: args.zipf,
                    mean_interarrival_secs: args.interarrival,
                    mean_duration_secs: args.duration,
                    seed,
                    ..Default::default()
                }),
                k => k.generate(seed, args.events),
            };
            out.push(NamedTrace {
                kind: kind.name().to_string(),
                seed,
                trace,
            });
        }
    }
    Ok(out)
}

/// The GC policy the flags describe (thresholds and ages shared by every named policy).
pub fn base_policy(
    high: u8,
    low: u8,
    min_age: u64,
    max_age: Option<u64>,
) -> anyhow::Result<GcPolicy> {
    let base = GcPolicy {
        high_threshold_percent: high,
        low_threshold_percent: low,
        min_age_secs: min_age,
        max_age_secs: max_age,
        ..GcPolicy::default()
    };
    base.validate()?;
    Ok(base)
}

pub fn parse_disks(gib: &[f64]) -> anyhow::Result<Vec<u64>> {
    anyhow::ensure!(!gib.is_empty(), "--disk-gib: give at least one size");
    gib.iter()
        .map(|&g| {
            anyhow::ensure!(
                g.is_finite() && g > 0.0,
                "--disk-gib {g}: want a positive size"
            );
            Ok((g * (1u64 << 30) as f64) as u64)
        })
        .collect()
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let traces = traces(&args.traces)?;
    if let Some(p) = &args.write_trace {
        std::fs::write(p, traces[0].trace.to_jsonl())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let base = base_policy(args.high, args.low, args.min_age, args.max_age)?;
    let disks = parse_disks(&args.disk_gib)?;
    let policies: Vec<&str> = args.policies.iter().map(String::as_str).collect();
    anyhow::ensure!(
        policies.contains(&args.baseline.as_str()),
        "--baseline {:?} is not among --policies",
        args.baseline
    );
    let runs = compare::run_all(&traces, &disks, &policies, &base, args.gc_period, args.jobs)
        .map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    }
    let cells = compare::cells(&runs, &args.baseline);
    let mut kinds: Vec<&str> = Vec::new();
    for t in &traces {
        if !kinds.contains(&t.kind.as_str()) {
            kinds.push(&t.kind);
        }
    }
    for kind in &kinds {
        let of_kind: Vec<&NamedTrace> = traces.iter().filter(|t| t.kind == *kind).collect();
        let kind_cells: Vec<compare::Cell> =
            cells.iter().filter(|c| c.kind == *kind).cloned().collect();
        if !args.json {
            let t = &of_kind[0].trace;
            let distinct: u64 = t.layer_sizes.values().sum();
            println!(
                "## {kind}: {} seed(s); seed {}: {} events, {} images, {} distinct layers ({:.1} GiB)\n",
                of_kind.len(),
                of_kind[0].seed,
                t.events.len(),
                t.images.len(),
                t.layer_sizes.len(),
                distinct as f64 / (1u64 << 30) as f64
            );
            println!("{}", compare::table(&kind_cells, &args.baseline));
        }
        if let Some(dir) = &args.plots {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let slug: String = kind
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            let seeds = of_kind.len();
            let gc = format!("GC {}%→{}%, {seeds} seed(s)", args.high, args.low);
            let write = |name: String, body: String| -> anyhow::Result<()> {
                let p = dir.join(name);
                std::fs::write(&p, body).with_context(|| format!("writing {}", p.display()))?;
                eprintln!("plot written to {}", p.display());
                Ok(())
            };
            write(
                format!("{slug}-pulled.svg"),
                svg::plot_cells(
                    &kind_cells,
                    svg::Measure::PulledGib,
                    &format!("{kind}: bytes pulled per seed vs disk ({gc})"),
                ),
            )?;
            write(
                format!("{slug}-hit-rate.svg"),
                svg::plot_cells(
                    &kind_cells,
                    svg::Measure::HitRatePercent,
                    &format!("{kind}: hit rate vs disk ({gc})"),
                ),
            )?;
            let disk = match args.timeline_disk_gib {
                Some(g) => parse_disks(&[g])?[0],
                None => *disks.iter().min().expect("non-empty"),
            };
            let first_seed = of_kind[0].seed;
            let series: Vec<&sim::SimResult> = runs
                .iter()
                .filter(|r| r.kind == *kind && r.seed == first_seed && r.result.disk_bytes == disk)
                .map(|r| &r.result)
                .collect();
            write(
                format!("{slug}-timeline.svg"),
                svg::plot_timeline(
                    &series,
                    &format!(
                        "{kind} seed {first_seed}: bytes pulled over time at {:.1} GiB",
                        disk as f64 / (1u64 << 30) as f64
                    ),
                ),
            )?;
        }
    }
    Ok(())
}
