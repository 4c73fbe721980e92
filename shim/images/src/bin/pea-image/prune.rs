//! `pea-image prune`: removes snapshots and blobs no image references.

use pea_images::Store;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(store: &Store, _args: &Args) -> anyhow::Result<()> {
    let r = store.prune()?;
    println!(
        "pruned {} snapshots and {} blobs ({})",
        r.snapshots,
        r.blobs,
        crate::human(r.bytes)
    );
    Ok(())
}
