//! `pea federation join`: a member's kubeconfig as a Secret and a Cluster (push mode) naming it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::json;

use super::{check_name, kubectl, SECRETS_NAMESPACE};

#[derive(Debug)]
pub struct Options {
    pub name: String,
    pub kubeconfig: PathBuf,
    pub cluster_kubeconfig: PathBuf,
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
    // A self-contained kubeconfig (certificates inline), checked against the member first.
    let raw = kubectl(
        &o.cluster_kubeconfig,
        &["config", "view", "--minify", "--flatten"],
        None,
    )?;
    kubectl(&o.cluster_kubeconfig, &["get", "--raw", "/readyz"], None).with_context(|| {
        format!(
            "member {}: its API is not ready through {}",
            o.name,
            o.cluster_kubeconfig.display()
        )
    })?;
    let endpoint = match &o.endpoint {
        Some(e) => e.clone(),
        None => member_server(&o.cluster_kubeconfig)?,
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
