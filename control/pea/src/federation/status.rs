//! `pea federation status`: members and bindings as the federation API reports them.

use std::path::Path;

use anyhow::Result;

use super::kubectl;

pub fn status(kubeconfig: &Path) -> Result<()> {
    print!(
        "{}",
        kubectl(
            kubeconfig,
            &["get", "clusters.cluster.karmada.io", "-o", "wide"],
            None
        )?
    );
    print!(
        "{}",
        kubectl(
            kubeconfig,
            &["get", "resourcebindings.work.karmada.io", "-A"],
            None
        )?
    );
    Ok(())
}
