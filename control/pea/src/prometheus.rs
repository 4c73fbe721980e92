//! The cluster's Prometheus scrape configuration: every component's `/metrics` on the underlay
//! (pea-control's on node 0, each node's pea-shim, pea-kubelet, pea-proxy and pea-flanneld, pea-dns and
//! pea-ingress on node 0). The targets live in the node namespaces, so the Prometheus that uses
//! this file runs in the cluster namespace (`ip netns exec pea-C prometheus ...`), which holds the
//! underlay bridge and reaches every node's address; the root namespace needs no route.
//!
//! Credentials: a client certificate for `pea:prometheus` in group `system:monitoring` (kube's
//! bootstrap ClusterRole of that name allows `/metrics` on the API server; pea-kubelet lets the
//! group read its `/metrics`). The API server's certificate is checked against the cluster CA;
//! the kubelets' serving certificates are self-signed (as a kubelet makes them without
//! serverTLSBootstrap), so their scrape skips verification, as kube-prometheus does by default.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use base64::Engine;

use crate::cluster::{Cluster, API_PORT};
use crate::proc::run;

/// Metrics ports, each the upstream component's default port.
pub const KUBELET_PORT: u16 = 10250;
/// pea-shim's (containerd serves its metrics wherever configured; 9464 is pea-shim's example).
pub const SHIM_METRICS_PORT: u16 = 9464;
pub const PROXY_METRICS_PORT: u16 = 10249;
pub const DNS_METRICS_PORT: u16 = 9153;
pub const FLANNELD_METRICS_PORT: u16 = 10259;
pub const INGRESS_METRICS_PORT: u16 = 10254;

pub const USER: &str = "pea:prometheus";
pub const GROUP: &str = "system:monitoring";

fn dir(c: &Cluster) -> PathBuf {
    c.state_dir().join("prometheus")
}

pub fn config_file(c: &Cluster) -> PathBuf {
    c.state_dir().join("prometheus.yml")
}

/// Issues the scrape identity (once) and writes `<state>/prometheus.yml`.
pub fn write(c: &Cluster) -> Result<()> {
    let d = dir(c);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    let kc = d.join("kubeconfig");
    run(
        &c.binary("pea-control").display().to_string(),
        &[
            "kubeconfig",
            "--data-dir",
            &c.control_dir().display().to_string(),
            "--user",
            USER,
            "--group",
            GROUP,
            "--server",
            &c.api_url(),
            "--out",
            &kc.display().to_string(),
        ],
    )?;
    let text = std::fs::read_to_string(&kc)?;
    for (field, file) in [
        ("certificate-authority-data", "ca.crt"),
        ("client-certificate-data", "client.crt"),
        ("client-key-data", "client.key"),
    ] {
        let b64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{field}:")))
            .with_context(|| format!("{field} missing in {}", kc.display()))?
            .trim();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .with_context(|| format!("{field} in {}", kc.display()))?;
        crate::up::write_private(&d.join(file), &String::from_utf8_lossy(&pem))?;
    }
    crate::up::write_private(&config_file(c), &render(c, "15s")?)?;
    Ok(())
}

/// The scrape configuration with `interval` (a Prometheus duration such as 1s or 15s).
pub fn render(c: &Cluster, interval: &str) -> Result<String> {
    let ok = interval.len() >= 2
        && interval.len() <= 8
        && interval.ends_with(['s', 'm'])
        && interval[..interval.len() - 1]
            .chars()
            .all(|ch| ch.is_ascii_digit())
        && !interval.starts_with('0');
    if !ok {
        bail!("--scrape-interval {interval:?}: want a whole number of seconds or minutes, like 15s or 1m");
    }
    if c.nodes == 0 {
        bail!("cluster {} is not up", c.name);
    }
    let d = dir(c);
    let f = |n: &str| d.join(n).display().to_string();
    let client_tls = format!(
        "cert_file: {}, key_file: {}",
        f("client.crt"),
        f("client.key")
    );
    let nodes = |port: u16| -> String {
        (0..c.nodes)
            .map(|i| {
                format!(
                    "  - {{targets: ['{}:{port}'], labels: {{node: {}}}}}",
                    c.node_ip(i),
                    c.node_name(i)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let node0 = |port: u16| {
        format!(
            "  - {{targets: ['{}:{port}'], labels: {{node: {}}}}}",
            c.node_ip(0),
            c.node_name(0)
        )
    };
    let mut out = vec![
        format!(
            "# Prometheus scrape configuration for pea cluster {} (written by pea up).",
            c.name
        ),
        "# Run Prometheus in the cluster namespace, where the underlay reaches every node:".into(),
        format!(
            "#   ip netns exec {} prometheus --config.file={} --web.listen-address=127.0.0.1:9090",
            c.netns(None),
            config_file(c).display()
        ),
        "global:".into(),
        format!("  scrape_interval: {interval}"),
        format!("  scrape_timeout: {interval}"),
        "scrape_configs:".into(),
    ];
    let jobs = [
        (
            "apiserver",
            Some(format!("{{ca_file: {}, {client_tls}}}", f("ca.crt"))),
            node0(API_PORT),
        ),
        (
            "kubelet",
            Some(format!("{{insecure_skip_verify: true, {client_tls}}}")),
            nodes(KUBELET_PORT),
        ),
        ("shim", None, nodes(SHIM_METRICS_PORT)),
        ("kube-proxy", None, nodes(PROXY_METRICS_PORT)),
        ("flanneld", None, nodes(FLANNELD_METRICS_PORT)),
        ("dns", None, node0(DNS_METRICS_PORT)),
        ("ingress", None, node0(INGRESS_METRICS_PORT)),
    ];
    for (job, tls, targets) in jobs {
        out.push(format!("- job_name: {job}"));
        if let Some(tls) = tls {
            out.push("  scheme: https".into());
            out.push(format!("  tls_config: {tls}"));
        }
        out.push("  static_configs:".into());
        out.push(targets);
    }
    Ok(out.join("\n") + "\n")
}

/// `pea prometheus-config`: the configuration for a cluster that is up.
pub fn print(c: &Cluster, interval: &str) -> Result<()> {
    if !dir(c).join("client.key").exists() {
        bail!(
            "cluster {} has no Prometheus credentials under {} (is it up?)",
            c.name,
            dir(c).display()
        );
    }
    print!("{}", render(c, interval)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_component_is_a_job_and_bad_intervals_are_named() {
        let c = Cluster {
            name: "demo".into(),
            nodes: 2,
            bin: "/usr/bin".into(),
        };
        let text = render(&c, "5s").unwrap();
        for want in [
            "  scrape_interval: 5s",
            "- job_name: apiserver\n  scheme: https\n  tls_config: {ca_file: /var/lib/pea/clusters/demo/prometheus/ca.crt,",
            "  - {targets: ['172.30.0.10:6443'], labels: {node: demo-0}}",
            "  - {targets: ['172.30.0.11:10250'], labels: {node: demo-1}}",
            "- job_name: kube-proxy\n  static_configs:\n  - {targets: ['172.30.0.10:10249']",
            "  - {targets: ['172.30.0.11:10259'], labels: {node: demo-1}}",
            "- job_name: shim\n  static_configs:\n  - {targets: ['172.30.0.10:9464']",
            "- job_name: dns\n  static_configs:\n  - {targets: ['172.30.0.10:9153']",
            "- job_name: ingress\n  static_configs:\n  - {targets: ['172.30.0.10:10254']",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        for bad in ["", "0s", "1x", "s", "15", "1.5s", "99999999s"] {
            let e = render(&c, bad).unwrap_err().to_string();
            assert!(e.contains(&format!("--scrape-interval {bad:?}")), "{e}");
        }
    }
}
