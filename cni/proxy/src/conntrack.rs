//! Flushing conntrack entries of UDP flows whose endpoint went (kube-proxy does the same): UDP
//! has no connection to break, so without this a client keeps sending to a removed endpoint
//! for as long as it keeps the flow alive. Uses the `conntrack` tool (Debian `conntrack`).

use std::{net::IpAddr, process::Command};

use crate::ruleset::UdpDest;

#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("running conntrack {args}: {source}")]
    Spawn {
        args: String,
        #[source]
        source: std::io::Error,
    },
    #[error("conntrack {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
}

/// Deletes UDP entries to `dest` that were DNATed to `endpoint` (or every entry to `dest`
/// when `endpoint` is `None`, for a service that just got its first endpoint).
pub fn flush(
    program: &str,
    dest: &UdpDest,
    endpoint: Option<IpAddr>,
) -> Result<(), ConntrackError> {
    let mut args: Vec<String> = vec!["-D".into(), "-p".into(), "udp".into()];
    match dest {
        UdpDest::Ip(ip, port) => {
            args.extend([
                "-f".into(),
                if ip.is_ipv4() {
                    "ipv4".into()
                } else {
                    "ipv6".into()
                },
                "--orig-dst".into(),
                ip.to_string(),
                "--orig-port-dst".into(),
                port.to_string(),
            ]);
            if let Some(ep) = endpoint {
                args.extend(["--dst-nat".into(), ep.to_string()]);
            }
        }
        UdpDest::NodePort(port) => {
            let Some(ep) = endpoint else {
                return Ok(());
            };
            args.extend([
                "-f".into(),
                if ep.is_ipv4() {
                    "ipv4".into()
                } else {
                    "ipv6".into()
                },
                "--orig-port-dst".into(),
                port.to_string(),
                "--dst-nat".into(),
                ep.to_string(),
            ]);
        }
    }
    let joined = args.join(" ");
    let out = Command::new(program)
        .args(&args)
        .output()
        .map_err(|source| ConntrackError::Spawn {
            args: joined.clone(),
            source,
        })?;
    // Exit status 1 with "0 flow entries" means nothing matched: not an error.
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !stderr.contains("0 flow entries") {
        return Err(ConntrackError::Failed {
            args: joined,
            stderr: stderr.trim().to_string(),
        });
    }
    Ok(())
}

/// `conntrack` on PATH, if installed.
pub fn program() -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("conntrack"))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}
