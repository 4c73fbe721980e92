//! `pea-image pull REF…`: progress bars per layer (indicatif), a summary line per image.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pea_images::{Digest, LayerAction, PullObserver, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image references (`busybox`, `registry.k8s.io/pause:3.10`, `host/repo@sha256:…`).
    #[arg(required = true)]
    pub images: Vec<String>,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl PullObserver for Bars {
    fn layer_started(&self, layer: &Digest, size: u64, resumed_from: u64) {
        let bar = self.multi.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:20} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(format!("{:.19}", layer.hex()));
        if resumed_from > 0 && resumed_from < size {
            bar.println(format!(
                "{:.12}: resuming at {resumed_from} bytes",
                layer.hex()
            ));
        }
        self.bars.lock().expect("bars").insert(layer.clone(), bar);
    }

    fn layer_progress(&self, layer: &Digest, bytes: u64) {
        if let Some(b) = self.bars.lock().expect("bars").get(layer) {
            b.set_position(bytes);
        }
    }

    fn layer_done(&self, layer: &Digest, action: &LayerAction) {
        let bars = self.bars.lock().expect("bars");
        match bars.get(layer) {
            Some(b) => b.finish_with_message(format!("{:.12} done", layer.hex())),
            None if *action == LayerAction::Reused => {
                let _ = self
                    .multi
                    .println(format!("{:.12}: already present", layer.hex()));
            }
            None => {}
        }
    }
}

pub fn run(store: &Store, args: &Args) -> anyhow::Result<()> {
    for image in &args.images {
        let multi = MultiProgress::with_draw_target(if args.quiet || args.json {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        let bars = Bars {
            multi,
            bars: Mutex::new(HashMap::new()),
        };
        let report = store.pull(image, &bars)?;
        if args.json {
            let layers: Vec<_> = report
                .layers
                .iter()
                .map(|(d, a)| {
                    let (action, bytes, resumed) = match a {
                        LayerAction::Reused => ("reused", 0, 0),
                        LayerAction::FromLocalBlob => ("local-blob", 0, 0),
                        LayerAction::Downloaded { bytes, resumed_from } => {
                            ("downloaded", *bytes, *resumed_from)
                        }
                    };
                    serde_json::json!({"digest": d, "action": action, "bytes": bytes, "resumed_from": resumed})
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "reference": report.reference, "id": report.image_id,
                    "manifest": report.manifest_digest,
                    "downloaded_bytes": report.downloaded_bytes, "layers": layers,
                })
            );
        } else {
            println!(
                "{} {} ({} downloaded)",
                report.reference,
                report.image_id,
                crate::human(report.downloaded_bytes)
            );
        }
        for n in &report.notes {
            eprintln!("note: {n}");
        }
    }
    Ok(())
}
