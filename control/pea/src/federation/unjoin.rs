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
    kubectl(
        kubeconfig,
        &[
            "delete",
            "secret",
            "-n",
            SECRETS_NAMESPACE,
            name,
            "--ignore-not-found",
        ],
        None,
    )?;
    // A Pull cluster's agent lease (none for a Push cluster).
    kubectl(
        kubeconfig,
        &[
            "delete",
            "lease",
            "-n",
            SECRETS_NAMESPACE,
            name,
            "--ignore-not-found",
        ],
        None,
    )?;
    println!("cluster {name} unjoined (objects already propagated to it were left there)");
    Ok(())
}
