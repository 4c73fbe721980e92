//! Status: RuntimeReady, and NetworkReady while a valid CNI configuration exists (containerd's
//! rule: pods cannot get a network before one is installed).

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use crate::cni::NetworkList;
use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn status(&self, r: cri::StatusRequest) -> Result<cri::StatusResponse, ShimError> {
        let runtime_ok = self.cfg.runtime.is_file() || which(&self.cfg.runtime);
        let runtime = cri::RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: runtime_ok,
            reason: if runtime_ok { "" } else { "RuntimeMissing" }.into(),
            message: if runtime_ok {
                String::new()
            } else {
                format!("OCI runtime {} not found", self.cfg.runtime.display())
            },
        };
        let net = NetworkList::load_default(&self.cfg.cni_conf_dir);
        let network = cri::RuntimeCondition {
            r#type: "NetworkReady".into(),
            status: net.is_ok(),
            reason: if net.is_ok() {
                ""
            } else {
                "NetworkPluginNotReady"
            }
            .into(),
            message: match &net {
                Ok(_) => String::new(),
                Err(e) => format!("Network plugin returns error: cni plugin not initialized: {e}"),
            },
        };
        let mut info = HashMap::new();
        if r.verbose {
            let cfg = serde_json::json!({
                "runtime": self.cfg.runtime,
                "cniConfDir": self.cfg.cni_conf_dir,
                "cniBinDirs": self.cfg.cni_bin_dirs,
                "pauseImage": self.cfg.pause_image,
                "network": net.as_ref().ok().map(|n| &n.name),
            });
            info.insert("config".into(), cfg.to_string());
        }
        Ok(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![runtime, network],
            }),
            info,
            runtime_handlers: vec![cri::RuntimeHandler {
                name: String::new(),
                features: Some(cri::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: true,
                    user_namespaces: true,
                }),
            }],
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: true,
            }),
        })
    }
}

/// Whether `p` (a bare name) is on PATH.
fn which(p: &std::path::Path) -> bool {
    if p.components().count() != 1 {
        return false;
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
        .unwrap_or(false)
}
