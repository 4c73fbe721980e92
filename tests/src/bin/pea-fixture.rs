//! pea-fixture: builds the test fixtures from the command line — an OCI bundle (for the main job
//! and for trying a runtime by hand) or images in an OCI layout.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use oci_spec::runtime::LinuxNamespaceType;
use pea_tests::fixtures::bundle::set_namespace;
use pea_tests::fixtures::busybox::build_busybox_image;
use pea_tests::fixtures::hostile::{build_hostile_images, HostileSpec};
use pea_tests::fixtures::multilayer::{build_multilayer_image, MultiLayerSpec};
use pea_tests::fixtures::pause::build_pause_image;
use pea_tests::fixtures::programs::build_programs_image;
use pea_tests::fixtures::{BundleBuilder, OciLayout, Rootfs};

#[derive(Parser)]
#[command(about = "Build pea's test fixtures: OCI bundles and images")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Busybox,
    Pause,
    Multilayer,
    Hostile,
    /// Host programs (`--bin`) with the shared libraries they load.
    Programs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write an OCI bundle (rootfs + config.json) running ARGS in busybox.
    Bundle {
        dir: PathBuf,
        #[arg(long, default_value = "default")]
        variant: String,
        #[arg(long, default_value = "pea")]
        hostname: String,
        /// Put the static pause program at /pause too.
        #[arg(long)]
        with_pause: bool,
        /// Join this network namespace (e.g. /run/netns/NAME) instead of making a new one.
        #[arg(long)]
        netns: Option<String>,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Add an image to an OCI layout directory.
    Image {
        kind: Kind,
        #[arg(long)]
        layout: PathBuf,
        #[arg(long, default_value = "latest")]
        tag: String,
        /// Multilayer: size of each large file in MiB.
        #[arg(long, default_value_t = 1)]
        file_mib: u64,
        /// Multilayer: large files per layer.
        #[arg(long, default_value_t = 1)]
        files_per_layer: usize,
        /// Hostile: the absolute directory escapes aim at.
        #[arg(long, default_value = "/tmp/pea-hostile-target")]
        outside: PathBuf,
        /// Programs: a binary to put at /usr/local/bin (repeatable).
        #[arg(long = "bin")]
        bins: Vec<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Bundle {
            dir,
            variant,
            hostname,
            with_pause,
            netns,
            args,
        } => {
            let rootfs = if with_pause {
                Rootfs::BusyboxWithPause
            } else {
                Rootfs::Busybox { variant }
            };
            let mut b = BundleBuilder::new(&dir, rootfs).hostname(hostname);
            if !args.is_empty() {
                b = b.args(args);
            }
            let mut bundle = b.build().context("building the bundle")?;
            if let Some(path) = netns {
                set_namespace(&mut bundle.spec, LinuxNamespaceType::Network, Some(path));
                bundle.save().context("writing config.json")?;
            }
            println!("{}", bundle.dir.display());
        }
        Cmd::Image {
            kind,
            layout,
            tag,
            file_mib,
            files_per_layer,
            outside,
            bins,
        } => {
            let layout = OciLayout::create(&layout)?;
            let infos = match kind {
                Kind::Busybox => vec![build_busybox_image(&layout, &tag)?],
                Kind::Pause => vec![build_pause_image(&layout, &tag)?],
                Kind::Programs => vec![build_programs_image(&layout, &tag, &bins)?],
                Kind::Multilayer => {
                    let spec = MultiLayerSpec {
                        file_size: file_mib << 20,
                        files_per_layer,
                        ..Default::default()
                    };
                    vec![build_multilayer_image(&layout, &tag, &spec)?.0]
                }
                Kind::Hostile => {
                    let spec = HostileSpec {
                        outside,
                        bomb_bytes: 1 << 30,
                    };
                    build_hostile_images(&layout, &spec)?
                        .into_iter()
                        .map(|(_, i)| i)
                        .collect()
                }
            };
            for i in infos {
                println!("{} {}", i.tag, i.manifest_digest);
            }
        }
    }
    Ok(())
}
