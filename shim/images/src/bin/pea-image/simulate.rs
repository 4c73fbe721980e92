//! `pea-image simulate`: GC tuning simulator (see pea_images::sim).

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("simulate is not implemented yet")
}
