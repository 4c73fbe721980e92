//! RuntimeConfig: the cgroup driver (cgroupfs: pea writes cgroup paths itself, no systemd), and
//! UpdateRuntimeConfig: the node's pod CIDR, which pea's CNI takes from its own config.

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn runtime_config(
        &self,
        _r: cri::RuntimeConfigRequest,
    ) -> Result<cri::RuntimeConfigResponse, ShimError> {
        Ok(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        })
    }

    pub async fn update_runtime_config(
        &self,
        r: cri::UpdateRuntimeConfigRequest,
    ) -> Result<cri::UpdateRuntimeConfigResponse, ShimError> {
        // containerd only templates a CNI config from the pod CIDR when configured to; pea-cni
        // reads its subnet from pea-flanneld's subnet.env, so the CIDR is logged, not applied.
        if let Some(cidr) = r
            .runtime_config
            .as_ref()
            .and_then(|c| c.network_config.as_ref())
            .map(|n| n.pod_cidr.as_str())
            .filter(|c| !c.is_empty())
        {
            tracing::info!(
                pod_cidr = cidr,
                "node pod CIDR (pea-cni takes its subnet from pea-flanneld)"
            );
        }
        Ok(cri::UpdateRuntimeConfigResponse {})
    }
}
