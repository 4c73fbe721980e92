//! `pea federation join`: a member's kubeconfig as a Secret and a Cluster (push mode) naming it,
//! or, in pull mode, only the Cluster (its agent dials out; nobody needs its credentials).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::json;

use super::{check_name, kubectl, SECRETS_NAMESPACE};

#[derive(Debug)]
pub struct Options {
    pub name: String,
    pub kubeconfig: PathBuf,
    pub cluster_kubeconfig: Option<PathBuf>,
    /// `--sync-mode Pull`.
    pub pull: bool,
    pub endpoint: Option<String>,
    pub labels: Vec<String>,
}

fn member_server(member: &Path) -> Result<String> {
    let server = kubectl(
        member,
        &[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
        None,
    )?;
    if server.trim().is_empty() {
        bail!(
            "{}: the current context names no cluster server",
            member.display()
        );
    }
    Ok(server.trim().to_string())
}

pub fn join(o: &Options) -> Result<()> {
    check_name(&o.name)?;
    let mut labels = serde_json::Map::new();
    for l in &o.labels {
        let Some((k, v)) = l.split_once('=') else {
            bail!("--label {l:?}: expected KEY=VALUE");
        };
        labels.insert(k.to_string(), json!(v));
    }
    if o.pull {
        return join_pull(o, labels);
    }
    let Some(cluster_kubeconfig) = &o.cluster_kubeconfig else {
        bail!("member {}: --cluster-kubeconfig is required for --sync-mode Push (pea-federation dials the member with it)", o.name);
    };
    // A self-contained kubeconfig (certificates inline), checked against the member first.
    let raw = kubectl(
        cluster_kubeconfig,
        &["config", "view", "--minify", "--flatten"],
        None,
    )?;
    kubectl(cluster_kubeconfig, &["get", "--raw", "/readyz"], None).with_context(|| {
        format!(
            "member {}: its API is not ready through {}",
            o.name,
            cluster_kubeconfig.display()
        )
    })?;
    let endpoint = match &o.endpoint {
        Some(e) => e.clone(),
        None => member_server(cluster_kubeconfig)?,
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": o.name, "namespace": SECRETS_NAMESPACE},
        "data": {"kubeconfig": b64}});
    kubectl(
        &o.kubeconfig,
        &["apply", "-f", "-"],
        Some(&secret.to_string()),
    )?;
    let cluster = json!({"apiVersion": "cluster.karmada.io/v1alpha1", "kind": "Cluster",
        "metadata": {"name": o.name, "labels": labels},
        "spec": {"apiEndpoint": endpoint, "syncMode": "Push",
            "secretRef": {"namespace": SECRETS_NAMESPACE, "name": o.name}}});
    kubectl(
        &o.kubeconfig,
        &["apply", "-f", "-"],
        Some(&cluster.to_string()),
    )?;
    println!("cluster {} joined ({endpoint})", o.name);
    Ok(())
}

/// Pull mode: the Cluster only (no Secret: nothing dials the member); its endpoint, when given
/// or readable from --cluster-kubeconfig, is informational.
fn join_pull(o: &Options, labels: serde_json::Map<String, serde_json::Value>) -> Result<()> {
    let endpoint = match (&o.endpoint, &o.cluster_kubeconfig) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(kc)) => Some(member_server(kc)?),
        (None, None) => None,
    };
    let mut spec = json!({"syncMode": "Pull"});
    if let Some(e) = &endpoint {
        spec["apiEndpoint"] = json!(e);
    }
    let cluster = json!({"apiVersion": "cluster.karmada.io/v1alpha1", "kind": "Cluster",
        "metadata": {"name": o.name, "labels": labels}, "spec": spec});
    kubectl(
        &o.kubeconfig,
        &["apply", "-f", "-"],
        Some(&cluster.to_string()),
    )?;
    println!(
        "cluster {} joined (pull mode: start its agent next to it: pea-federation agent --kubeconfig FED --cluster-kubeconfig MEMBER --cluster-name {})",
        o.name, o.name
    );
    Ok(())
}
