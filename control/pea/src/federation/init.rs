//! `pea federation init`: the CRDs and the credentials namespace on the federation API.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{kubectl, CRDS, SECRETS_NAMESPACE};

pub fn init(kubeconfig: &Path) -> Result<()> {
    kubectl(kubeconfig, &["apply", "-f", "-"], Some(CRDS))?;
    let ns = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{{\"name\":\"{SECRETS_NAMESPACE}\"}}}}"
    );
    kubectl(kubeconfig, &["apply", "-f", "-"], Some(&ns))?;
    // The kinds are served once the CRDs are established; wait (bounded) so the next verb works.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match kubectl(
            kubeconfig,
            &["get", "clusters.cluster.karmada.io", "-o", "name"],
            None,
        ) {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => {
                bail!("federation kinds not served after 30 s: {e:#}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    println!("federation API ready: kinds installed, member credentials go to namespace {SECRETS_NAMESPACE}");
    println!("next: pea-federation --kubeconfig {} ; pea federation join NAME --kubeconfig {} --cluster-kubeconfig MEMBER", kubeconfig.display(), kubeconfig.display());
    Ok(())
}
