//! `pea-image list`: one line per image name.

use pea_images::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON records.
    #[arg(long)]
    pub json: bool,
}

pub fn run(store: &Store, args: &Args) -> anyhow::Result<()> {
    let images = store.list()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&images)?);
        return Ok(());
    }
    println!("{:<60} {:<19} {:>10} {:>6}", "NAME", "ID", "SIZE", "PINNED");
    for img in &images {
        let size = store.image_size(img)?;
        for name in &img.names {
            println!(
                "{:<60} {:<19} {:>10} {:>6}",
                name,
                &img.id.hex()[..12],
                crate::human(size),
                if img.pinned { "yes" } else { "" }
            );
        }
    }
    Ok(())
}
