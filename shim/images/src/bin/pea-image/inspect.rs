//! `pea-image inspect IMAGE`: the stored record, layer sizes and snapshot paths as JSON.

use pea_images::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Name, id or id prefix.
    pub image: String,
}

pub fn run(store: &Store, args: &Args) -> anyhow::Result<()> {
    let img = store.find(&args.image)?;
    let mut layers = Vec::new();
    for l in &img.layers {
        layers.push(serde_json::json!({
            "digest": l.digest, "diff_id": l.diff_id, "chain_id": l.chain_id,
            "media_type": l.media_type, "size": l.size,
            "bytes_on_disk": store.layer_bytes(l)?,
            "snapshot": store.snapshot_fs(&l.chain_id),
        }));
    }
    let out = serde_json::json!({
        "id": img.id, "names": img.names, "manifest": img.manifest_digest,
        "index": img.index_digest, "first_seen": img.first_seen, "last_used": img.last_used,
        "pinned": img.pinned, "size": store.image_size(&img)?, "layers": layers,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
