//! `pea federation unjoin`: removes a member's Cluster, its Secret and (pull mode) its lease.

use std::path::Path;

use anyhow::Result;

use super::{check_name, kubectl, SECRETS_NAMESPACE};

pub fn unjoin(name: &str, kubeconfig: &Path) -> Result<()> {
    check_name(name)?;
    kubectl(
        kubeconfig,
        &["delete", "clusters.cluster.karmada.io", name],
        None,
    )?;
    // A Push cluster's credentials Secret or a Pull cluster's agent Lease, whichever it has.
    for kind in ["secret", "lease"] {
        kubectl(
            kubeconfig,
            &[
                "delete",
                kind,
                "-n",
                SECRETS_NAMESPACE,
                name,
                "--ignore-not-found",
            ],
            None,
        )?;
    }
    println!("cluster {name} unjoined (objects already propagated to it were left there)");
    Ok(())
}
