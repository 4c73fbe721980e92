//! The static subnet registry: one JSON file per node in a directory all nodes share, shaped
//! like the parts of a Node object flannel uses (`podCIDR` and flannel's annotations), so the
//! cluster-API source (kube_source.rs) reads and writes the same fields on real Node objects.

use std::{collections::BTreeMap, net::Ipv4Addr, path::Path};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub const ANN_BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
pub const ANN_BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
pub const ANN_PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
pub const ANN_KUBE_SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";
/// The record format version (static registry files carry it).
pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("node record {path} is invalid: {why}")]
    Invalid { path: String, why: String },
}

/// One node's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    pub version: u32,
    pub name: String,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Ipv4Net,
    pub annotations: BTreeMap<String, String>,
}

/// flannel's vxlan backend-data annotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendData {
    #[serde(rename = "VNI")]
    pub vni: u32,
    #[serde(rename = "VtepMAC")]
    pub vtep_mac: String,
}

/// What the agent needs to know about a remote node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub subnet: Ipv4Net,
    pub public_ip: Ipv4Addr,
    pub vtep_mac: Vec<u8>,
    pub vni: u32,
}

impl NodeRecord {
    pub fn new(name: &str, subnet: Ipv4Net, public_ip: Ipv4Addr, vni: u32, mac: &str) -> Self {
        let data = serde_json::to_string(&BackendData {
            vni,
            vtep_mac: mac.into(),
        })
        .expect("backend data serialises");
        NodeRecord {
            version: RECORD_VERSION,
            name: name.into(),
            pod_cidr: subnet,
            annotations: BTreeMap::from([
                (ANN_BACKEND_TYPE.into(), "vxlan".into()),
                (ANN_BACKEND_DATA.into(), data),
                (ANN_PUBLIC_IP.into(), public_ip.to_string()),
                (ANN_KUBE_SUBNET_MANAGER.into(), "true".into()),
            ]),
        }
    }

    /// The peer this record describes, validated.
    pub fn peer(&self) -> Result<Peer, String> {
        if self.annotations.get(ANN_BACKEND_TYPE).map(String::as_str) != Some("vxlan") {
            return Err(format!("{ANN_BACKEND_TYPE} is not \"vxlan\""));
        }
        let data: BackendData = serde_json::from_str(
            self.annotations
                .get(ANN_BACKEND_DATA)
                .ok_or_else(|| format!("{ANN_BACKEND_DATA} is missing"))?,
        )
        .map_err(|e| format!("{ANN_BACKEND_DATA}: {e}"))?;
        let public_ip = self
            .annotations
            .get(ANN_PUBLIC_IP)
            .ok_or_else(|| format!("{ANN_PUBLIC_IP} is missing"))?
            .parse()
            .map_err(|e| format!("{ANN_PUBLIC_IP}: {e}"))?;
        let vtep_mac = crate::link::parse_mac(&data.vtep_mac)
            .ok_or_else(|| format!("VtepMAC {:?} is not a MAC address", data.vtep_mac))?;
        Ok(Peer {
            name: self.name.clone(),
            subnet: self.pod_cidr.trunc(),
            public_ip,
            vtep_mac,
            vni: data.vni,
        })
    }
}

/// Publishes `rec` as `<dir>/<name>.json` (atomically).
pub fn publish(dir: &Path, rec: &NodeRecord) -> Result<(), RegistryError> {
    let path = dir.join(format!("{}.json", rec.name));
    let io = |source| RegistryError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let body = serde_json::to_vec_pretty(rec).expect("record serialises");
    crate::ipam::atomic_write(&path, &body).map_err(io)
}

/// Reads every record in `dir`. Records that do not parse are reported, not fatal: one bad
/// node must not cut the others off. A missing directory is an error, not "no nodes": the agent
/// publishes into it at start, so its absence means the shared directory went away (an unmounted
/// share), and withdrawing every route then would cut the node off.
pub fn read_all(dir: &Path) -> Result<(Vec<NodeRecord>, Vec<RegistryError>), RegistryError> {
    let mut recs = Vec::new();
    let mut bad = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|source| RegistryError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let shown = path.display().to_string();
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<NodeRecord>(&bytes) {
                Ok(r) if r.version == RECORD_VERSION => recs.push(r),
                Ok(r) => bad.push(RegistryError::Invalid {
                    path: shown,
                    why: format!("unknown version {}", r.version),
                }),
                Err(e) => bad.push(RegistryError::Invalid {
                    path: shown,
                    why: e.to_string(),
                }),
            },
            // Removed between listing and reading: the node just went.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => bad.push(RegistryError::Io {
                path: shown,
                source,
            }),
        }
    }
    recs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((recs, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_flannel_annotations() {
        let d = tempfile::tempdir().unwrap();
        let rec = NodeRecord::new(
            "n1",
            "10.244.1.0/24".parse().unwrap(),
            "192.168.50.1".parse().unwrap(),
            1,
            "0a:58:0a:f4:01:00",
        );
        publish(d.path(), &rec).unwrap();
        std::fs::write(d.path().join("broken.json"), b"{").unwrap();
        let (recs, bad) = read_all(d.path()).unwrap();
        assert_eq!(recs, vec![rec.clone()]);
        assert_eq!(bad.len(), 1);
        assert_eq!(
            rec.annotations[ANN_BACKEND_DATA],
            r#"{"VNI":1,"VtepMAC":"0a:58:0a:f4:01:00"}"#
        );
        let p = rec.peer().unwrap();
        assert_eq!(p.public_ip, "192.168.50.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(p.vtep_mac, vec![0x0a, 0x58, 0x0a, 0xf4, 1, 0]);
    }

    #[test]
    fn a_missing_registry_is_an_error_not_an_empty_cluster() {
        let d = tempfile::tempdir().unwrap();
        let gone = d.path().join("unmounted");
        let e = read_all(&gone).unwrap_err();
        assert!(e.to_string().contains("unmounted"), "{e}");
    }
}
