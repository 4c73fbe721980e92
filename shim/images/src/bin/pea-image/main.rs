//! pea-image: pull, list, inspect, remove, prune, gc, simulate and recommend — thin wiring around the
//! pea-images library, one file per verb.

mod gc;
mod inspect;
mod list;
mod prune;
mod pull;
mod recommend;
mod remove;
mod simulate;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use pea_images::auth::Credentials;
use pea_images::unpack::UnpackOptions;
use pea_images::{Client, ClientConfig, Store, StoreOptions};

#[derive(Debug, Parser)]
#[command(
    name = "pea-image",
    about = "pea's image store: pull, list, inspect, remove, prune, gc, simulate, recommend"
)]
struct Cli {
    /// Store directory.
    #[arg(long, global = true, default_value = "/var/lib/pea/images")]
    root: PathBuf,
    #[command(flatten)]
    net: NetArgs,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Args)]
struct NetArgs {
    /// containerd-style hosts directory (`<dir>/<registry>/hosts.toml`) for mirrors.
    #[arg(long, global = true)]
    hosts_dir: Option<PathBuf>,
    /// A registry (`host[:port]`) reached over plain HTTP; repeatable.
    #[arg(long, global = true)]
    insecure: Vec<String>,
    /// Credentials as `host=user:password`; repeatable.
    #[arg(long, global = true)]
    creds: Vec<String>,
    /// Per-layer download limit in bytes per second.
    #[arg(long, global = true)]
    limit_rate: Option<u64>,
    /// Layers downloaded and unpacked at once.
    #[arg(long, global = true, default_value_t = 3)]
    parallel: usize,
    /// Create device nodes found in layers (as root).
    #[arg(long, global = true)]
    allow_devices: bool,
    /// Skip the syncfs before a snapshot is published.
    #[arg(long, global = true)]
    no_sync: bool,
}

#[derive(Debug, Subcommand)]
enum Verb {
    Pull(pull::Args),
    List(list::Args),
    Inspect(inspect::Args),
    Remove(remove::Args),
    Prune(prune::Args),
    Gc(gc::Args),
    Simulate(simulate::Args),
    Recommend(recommend::Args),
}

fn open(cli: &Cli) -> anyhow::Result<Store> {
    let mut cfg = ClientConfig {
        hosts_dir: cli.net.hosts_dir.clone(),
        insecure: cli.net.insecure.clone(),
        rate_limit: cli.net.limit_rate,
        ..Default::default()
    };
    for c in &cli.net.creds {
        let (host, rest) = c
            .split_once('=')
            .with_context(|| format!("--creds {c:?}: want host=user:password"))?;
        let creds = Credentials::parse(rest)
            .with_context(|| format!("--creds for {host}: want user:password"))?;
        cfg.credentials.insert(host.to_string(), creds);
    }
    let opts = StoreOptions {
        unpack: UnpackOptions {
            allow_devices: cli.net.allow_devices,
            ..Default::default()
        },
        parallel_layers: cli.net.parallel,
        durable: !cli.net.no_sync,
        ..Default::default()
    };
    let (store, repair) = Store::open(&cli.root, Client::new(cfg), opts)
        .with_context(|| format!("opening the store at {}", cli.root.display()))?;
    for p in &repair.removed_unpacks {
        eprintln!("repair: removed interrupted unpack {}", p.display());
    }
    for (p, n) in &repair.kept_partials {
        eprintln!(
            "repair: keeping partial download {} ({n} bytes) to resume",
            p.display()
        );
    }
    Ok(store)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PEA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match &cli.verb {
        Verb::Simulate(a) => simulate::run(a),
        Verb::Recommend(a) => recommend::run(a),
        verb => open(&cli).and_then(|store| match verb {
            Verb::Pull(a) => pull::run(&store, a),
            Verb::List(a) => list::run(&store, a),
            Verb::Inspect(a) => inspect::run(&store, a),
            Verb::Remove(a) => remove::run(&store, a),
            Verb::Prune(a) => prune::run(&store, a),
            Verb::Gc(a) => gc::run(&store, a),
            Verb::Simulate(_) | Verb::Recommend(_) => unreachable!("handled above"),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pea-image: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Bytes in binary units for people.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", b / 1_048_576.0),
        _ => format!("{:.2} GiB", b / 1_073_741_824.0),
    }
}
