//! bench-images: pull + unpack of a ~128 MiB three-layer image from a local docker-registry,
//! cold (empty store) and warm (a second image sharing the two base layers), side by side:
//! pea vs `skopeo copy` + `umoci unpack` vs `tar -xzf` of the same layer blobs (the floor: no
//! network, no verification, whiteouts ignored). Prints medians and ratios to tar.
//!
//!     cargo run --release -p pea-tests --bin bench-images -- --runs 5

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use clap::Parser;
use pea_images::{NoProgress, StoreOptions};
use pea_tests::bench::{table, Samples};
use pea_tests::fixtures::layer::PseudoRandom;
use pea_tests::fixtures::layout::ImageDefaults;
use pea_tests::fixtures::multilayer::{build_multilayer_image, MultiLayerSpec};
use pea_tests::fixtures::{OciLayout, Registry};
use pea_tests::images::{client_config, open_store_with};

#[derive(Debug, Parser)]
struct Args {
    /// Measured runs per subject.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Size of each big file (3 layers × 3 files).
    #[arg(long, default_value_t = 14 << 20)]
    file_size: u64,
    /// Where to work (a directory on the disk under test).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn timed(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed())
}

fn rm(p: &Path) {
    let _ = std::fs::remove_dir_all(p);
}

/// Peak RSS of this process since the last reset, in KiB.
fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let work = match &args.dir {
        Some(d) => tempfile::Builder::new()
            .prefix("bench-images-")
            .tempdir_in(d)?,
        None => tempfile::Builder::new()
            .prefix("bench-images-")
            .tempdir_in("/var/tmp")?,
    };
    let w = work.path();
    eprintln!("building the images in {} …", w.display());
    let layout = OciLayout::create(&w.join("layout"))?;
    let spec = MultiLayerSpec {
        file_size: args.file_size,
        files_per_layer: 3,
        level: 6,
        seed: 1,
    };
    let (cold, _) = build_multilayer_image(&layout, "cold", &spec)?;
    let mut top = layout.layer_writer(6)?;
    for i in 0..3 {
        top.file_from_reader(
            &format!("data/warm-{i}.bin"),
            0o644,
            args.file_size,
            PseudoRandom::new(9000 + i),
        )?;
    }
    let top = layout.commit_layer(top.finish()?)?;
    let warm_layers = [cold.layers[0].clone(), cold.layers[1].clone(), top.clone()];
    layout.add_image("warm", &warm_layers, &ImageDefaults::default())?;
    let cold_bytes: u64 = cold.layers.iter().map(|l| l.size).sum();
    let cold_unpacked: u64 = cold.layers.iter().map(|l| l.uncompressed_size).sum();
    eprintln!(
        "cold image: {} layers, {:.1} MiB compressed, {:.1} MiB tar; warm adds {:.1} MiB",
        cold.layers.len(),
        cold_bytes as f64 / 1048576.0,
        cold_unpacked as f64 / 1048576.0,
        top.size as f64 / 1048576.0
    );
    let registry = Registry::start()?;
    registry.push(&layout.skopeo_ref("cold"), "bench:cold")?;
    registry.push(&layout.skopeo_ref("warm"), "bench:warm")?;
    let host = registry.host();

    let subjects = [
        "pea",
        "pea (no syncfs)",
        "skopeo copy + umoci unpack",
        "tar -xzf",
    ];
    let mut cold_s: Vec<Samples> = subjects.iter().map(|s| Samples::new(*s)).collect();
    let mut warm_s: Vec<Samples> = subjects.iter().map(|s| Samples::new(*s)).collect();
    let mut pea_peak = 0;

    for round in 0..=args.runs {
        let measured = round > 0; // round 0 warms caches and binaries
                                  // pea, with and without the durability sync.
        for (idx, durable) in [(0usize, true), (1, false)] {
            let root = w.join("pea-store");
            rm(&root);
            let store = open_store_with(
                &root,
                client_config(std::slice::from_ref(&host)),
                StoreOptions {
                    durable,
                    ..Default::default()
                },
                std::sync::Arc::new(pea_images::clock::SystemClock),
            );
            reset_peak_rss();
            let c = timed(|| {
                store.pull(&format!("{host}/bench:cold"), &NoProgress)?;
                Ok(())
            })?;
            let wt = timed(|| {
                let r = store.pull(&format!("{host}/bench:warm"), &NoProgress)?;
                ensure!(
                    r.downloaded_bytes == top.size,
                    "warm pull downloaded {}",
                    r.downloaded_bytes
                );
                Ok(())
            })?;
            pea_peak = pea_peak.max(peak_rss_kib().unwrap_or(0));
            if measured {
                cold_s[idx].push(c);
                warm_s[idx].push(wt);
            }
            rm(&root);
        }
        // skopeo + umoci: the OCI layout keeps blobs between the two copies, so warm skips the
        // shared ones; umoci always unpacks every layer.
        {
            let oci = w.join("skopeo-oci");
            let (b1, b2) = (w.join("umoci-cold"), w.join("umoci-warm"));
            for p in [&oci, &b1, &b2] {
                rm(p);
            }
            let copy = |tag: &str| {
                run(Command::new("skopeo").args([
                    "--insecure-policy",
                    "copy",
                    "--quiet",
                    "--src-tls-verify=false",
                    &format!("docker://{host}/bench:{tag}"),
                    &format!("oci:{}:{tag}", oci.display()),
                ]))
            };
            let unpack = |tag: &str, dest: &Path| {
                run(Command::new("umoci")
                    .args(["unpack", "--image"])
                    .arg(format!("{}:{tag}", oci.display()))
                    .arg(dest))
            };
            let c = timed(|| {
                copy("cold")?;
                unpack("cold", &b1)
            })?;
            let wt = timed(|| {
                copy("warm")?;
                unpack("warm", &b2)
            })?;
            if measured {
                cold_s[2].push(c);
                warm_s[2].push(wt);
            }
            for p in [&oci, &b1, &b2] {
                rm(p);
            }
        }
        // tar -xzf of the blobs already on disk: the floor.
        {
            let dest = w.join("tar-out");
            rm(&dest);
            std::fs::create_dir_all(&dest)?;
            let c = timed(|| {
                for l in &cold.layers {
                    run(Command::new("tar")
                        .arg("-xzf")
                        .arg(&l.path)
                        .arg("-C")
                        .arg(&dest))?;
                }
                Ok(())
            })?;
            let wt = timed(|| {
                run(Command::new("tar")
                    .arg("-xzf")
                    .arg(&top.path)
                    .arg("-C")
                    .arg(&dest))
            })?;
            if measured {
                cold_s[3].push(c);
                warm_s[3].push(wt);
            }
            rm(&dest);
        }
        if measured {
            eprintln!("round {round}/{} done", args.runs);
        }
    }
    cold_s[0].peak_rss_kib = Some(pea_peak);
    cold_s[0].note = Some("registry → verified snapshots, fsync + syncfs".into());
    cold_s[1].note = Some("same, no syncfs before publishing".into());
    cold_s[2].note = Some("registry → OCI layout → rootfs".into());
    cold_s[3].note = Some("local blobs, no network or verification".into());
    warm_s[0].note = Some("two base snapshots reused".into());
    warm_s[2].note = Some("shared blobs skipped, all layers unpacked".into());
    warm_s[3].note = Some("top layer only".into());
    println!(
        "{}",
        table(
            &format!(
                "Cold pull + unpack, {:.0} MiB in 3 layers (local registry)",
                cold_bytes as f64 / 1048576.0
            ),
            &cold_s,
            "tar -xzf"
        )
    );
    println!(
        "{}",
        table(
            "Warm pull + unpack (2 of 3 layers shared)",
            &warm_s,
            "tar -xzf"
        )
    );
    Ok(())
}
