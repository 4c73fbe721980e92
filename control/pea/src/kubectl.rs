//! kubectl, the one way the pea CLI talks to an API server: with an explicit kubeconfig (never
//! `$KUBECONFIG`), optionally inside a node's network namespace (`ip netns exec`), optionally
//! with `stdin` piped in (`apply -f -`); stdout, or a failure carrying kubectl's stderr.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// kubectl against `kubeconfig` from this namespace.
pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Result<String> {
    kubectl_in(None, kubeconfig, args, stdin)
}

/// kubectl against `kubeconfig` inside the named network namespace `netns` (or this one).
pub fn kubectl_in(
    netns: Option<&str>,
    kubeconfig: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String> {
    use std::io::Write;
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "kubectl"]);
            c
        }
        None => Command::new("kubectl"),
    };
    // A discovery cache of our own: kubectl would otherwise write under $HOME/.kube.
    let cache = std::env::temp_dir().join(format!("pea-kubectl-cache-{}", std::process::id()));
    c.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(&cache)
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().context("running kubectl")?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .context("writing to kubectl's stdin")?;
    }
    let out = child.wait_with_output().context("waiting for kubectl");
    let _ = std::fs::remove_dir_all(&cache);
    let out = out?;
    if !out.status.success() {
        bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
