//! flannel's `subnet.env`: the node's pod subnet handed from the agent to the CNI plugin.
//!
//! ```text
//! FLANNEL_NETWORK=10.244.0.0/16
//! FLANNEL_SUBNET=10.244.1.1/24
//! FLANNEL_MTU=1450
//! FLANNEL_IPMASQ=true
//! ```
//! `FLANNEL_SUBNET` is the gateway address with the subnet's prefix, as flannel writes it.

use std::path::Path;

use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum SubnetEnvError {
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    #[error("line {line}: {why}")]
    Syntax { line: usize, why: String },
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The contents of subnet.env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetEnv {
    pub network: Ipv4Net,
    /// The node's subnet; `addr()` is the gateway (first host address).
    pub subnet: Ipv4Net,
    pub mtu: u32,
    pub ipmasq: bool,
}

impl SubnetEnv {
    pub fn parse(text: &str) -> Result<Self, SubnetEnvError> {
        let (mut network, mut subnet, mut mtu, mut ipmasq) = (None, None, None, None);
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |why: String| SubnetEnvError::Syntax { line: i + 1, why };
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| syntax(format!("{line:?} is not KEY=VALUE")))?;
            match k {
                "FLANNEL_NETWORK" => {
                    network = Some(
                        v.parse()
                            .map_err(|e| syntax(format!("FLANNEL_NETWORK {v:?}: {e}")))?,
                    )
                }
                "FLANNEL_SUBNET" => {
                    subnet = Some(
                        v.parse()
                            .map_err(|e| syntax(format!("FLANNEL_SUBNET {v:?}: {e}")))?,
                    )
                }
                "FLANNEL_MTU" => {
                    mtu = Some(
                        v.parse()
                            .map_err(|e| syntax(format!("FLANNEL_MTU {v:?}: {e}")))?,
                    )
                }
                "FLANNEL_IPMASQ" => {
                    ipmasq = Some(
                        v.parse()
                            .map_err(|e| syntax(format!("FLANNEL_IPMASQ {v:?}: {e}")))?,
                    )
                }
                _ => {} // flannel also writes FLANNEL_IPV6_*; not used here
            }
        }
        Ok(SubnetEnv {
            network: network.ok_or(SubnetEnvError::Missing("FLANNEL_NETWORK"))?,
            subnet: subnet.ok_or(SubnetEnvError::Missing("FLANNEL_SUBNET"))?,
            mtu: mtu.ok_or(SubnetEnvError::Missing("FLANNEL_MTU"))?,
            ipmasq: ipmasq.unwrap_or(false),
        })
    }

    pub fn read(path: &Path) -> Result<Self, SubnetEnvError> {
        Self::parse(&std::fs::read_to_string(path).map_err(SubnetEnvError::Read)?)
    }

    pub fn render(&self) -> String {
        format!(
            "FLANNEL_NETWORK={}\nFLANNEL_SUBNET={}\nFLANNEL_MTU={}\nFLANNEL_IPMASQ={}\n",
            self.network, self.subnet, self.mtu, self.ipmasq
        )
    }

    /// Writes atomically (temp + fsync + rename) so the plugin never reads half a file.
    pub fn write(&self, path: &Path) -> Result<(), SubnetEnvError> {
        let werr = |source| SubnetEnvError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(werr)?;
        }
        crate::ipam::atomic_write(path, self.render().as_bytes()).map_err(werr)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = SubnetEnv {
            network: "10.244.0.0/16".parse().unwrap(),
            subnet: "10.244.1.1/24".parse().unwrap(),
            mtu: 1450,
            ipmasq: true,
        };
        assert_eq!(SubnetEnv::parse(&e.render()).unwrap(), e);
        assert!(e.render().contains("FLANNEL_SUBNET=10.244.1.1/24\n"));
    }

    #[test]
    fn errors_name_the_key() {
        let e = SubnetEnv::parse("FLANNEL_NETWORK=10.0.0.0/8\nFLANNEL_SUBNET=x\n").unwrap_err();
        assert!(e.to_string().contains("FLANNEL_SUBNET"), "{e}");
        let e = SubnetEnv::parse("FLANNEL_NETWORK=10.0.0.0/8\n").unwrap_err();
        assert_eq!(e.to_string(), "FLANNEL_SUBNET is missing");
    }
}
