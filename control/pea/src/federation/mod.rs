//! `pea federation init|join|unjoin|status`: the federation API is a pea-control instance; these
//! verbs install pea-federation's CRDs there and register member clusters, through kubectl only
//! (pea links no pea crate). The controller itself is the `pea-federation` program.

mod init;
mod join;
mod status;
mod unjoin;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Subcommand;

pub use init::init;
pub use join::join;
pub use status::status;
pub use unjoin::unjoin;

/// The CRDs (one source: the pea-federation crate's manifest, read at build time).
pub const CRDS: &str = include_str!("../../../federation/crds/federation.yaml");
/// Where member credentials live on the federation API (Karmada's namespace for them).
pub const SECRETS_NAMESPACE: &str = "karmada-cluster";

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Installs the federation kinds (Cluster, PropagationPolicy, ClusterPropagationPolicy,
    /// OverridePolicy, ResourceBinding) into a pea-control serving as the federation API.
    Init {
        /// Kubeconfig of the federation API.
        #[arg(long)]
        kubeconfig: PathBuf,
    },
    /// Registers a member cluster. Push (the default): its kubeconfig goes into a Secret, a
    /// Cluster object points at it and pea-federation dials it. Pull: only the Cluster; the
    /// member's agent (`pea-federation agent`) dials out and applies what is assigned to it.
    Join {
        /// The member's name (a DNS label).
        name: String,
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Kubeconfig of the member cluster (its current context is used); required for Push.
        #[arg(long)]
        cluster_kubeconfig: Option<PathBuf>,
        /// Push (pea-federation dials the member) or Pull (the member's agent dials out).
        #[arg(long, default_value = "Push", value_parser = ["Push", "Pull"])]
        sync_mode: String,
        /// The member's API endpoint as the federation controller reaches it (default: the
        /// server of the member kubeconfig).
        #[arg(long)]
        endpoint: Option<String>,
        /// Labels of the Cluster (KEY=VALUE), for placement by label selector.
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Removes a member: its Cluster and Secret (objects already in the member stay).
    Unjoin {
        name: String,
        #[arg(long)]
        kubeconfig: PathBuf,
    },
    /// Members with their Ready condition, and every template's binding.
    Status {
        #[arg(long)]
        kubeconfig: PathBuf,
    },
}

pub fn run(verb: Verb) -> Result<()> {
    match verb {
        Verb::Init { kubeconfig } => init(&kubeconfig),
        Verb::Join {
            name,
            kubeconfig,
            cluster_kubeconfig,
            sync_mode,
            endpoint,
            labels,
        } => join(&join::Options {
            name,
            kubeconfig,
            cluster_kubeconfig,
            pull: sync_mode == "Pull",
            endpoint,
            labels,
        }),
        Verb::Unjoin { name, kubeconfig } => unjoin(&name, &kubeconfig),
        Verb::Status { kubeconfig } => status(&kubeconfig),
    }
}

pub use crate::kubectl::kubectl;

/// A DNS-1123 label (Cluster and Secret names).
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "member name {name:?} is not a DNS label (lowercase letters, digits, '-', at most 63)"
        );
    }
    Ok(())
}
