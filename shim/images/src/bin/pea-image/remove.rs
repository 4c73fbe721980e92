//! `pea-image remove IMAGE…`: removes images and the content only they used.

use pea_images::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub fn run(store: &Store, args: &Args) -> anyhow::Result<()> {
    for key in &args.images {
        let (img, pruned) = store.remove(key)?;
        println!(
            "removed {} ({}); freed {} in {} snapshots and {} blobs",
            img.id,
            img.names.iter().cloned().collect::<Vec<_>>().join(", "),
            crate::human(pruned.bytes),
            pruned.snapshots,
            pruned.blobs
        );
    }
    Ok(())
}
