//! PodSandboxStatus: state, IPs, namespace modes; with `verbose`, the record as JSON in `info`.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::records::{SandboxRecord, SandboxState};
use crate::sandbox::namespace_mode;
use crate::Shim;

impl SandboxRecord {
    pub fn cri_state(&self) -> cri::PodSandboxState {
        match self.state {
            SandboxState::Ready => cri::PodSandboxState::SandboxReady,
            SandboxState::NotReady => cri::PodSandboxState::SandboxNotready,
        }
    }
}

impl Shim {
    /// A Ready sandbox whose pause process is gone is reported NotReady (the kubelet then
    /// recreates the pod), without changing the record: StopPodSandbox still has work to do.
    pub fn effective_state(&self, rec: &SandboxRecord) -> cri::PodSandboxState {
        match (rec.state, rec.pause_pid) {
            (SandboxState::Ready, Some(pid))
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() =>
            {
                cri::PodSandboxState::SandboxNotready
            }
            _ => rec.cri_state(),
        }
    }

    pub async fn pod_sandbox_status(
        &self,
        r: cri::PodSandboxStatusRequest,
    ) -> Result<cri::PodSandboxStatusResponse, ShimError> {
        let rec = self.sandbox(&r.pod_sandbox_id)?;
        let mut ips = rec.ips.iter();
        let network = ips.next().map(|ip| cri::PodSandboxNetworkStatus {
            ip: ip.clone(),
            additional_ips: ips.map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
        });
        let mut info = HashMap::new();
        if r.verbose {
            info.insert(
                "info".into(),
                serde_json::json!({
                    "pid": rec.pause_pid,
                    "netnsPath": rec.netns,
                    "cgroupParent": rec.cgroup_parent,
                    "network": rec.network,
                    "config": rec.config,
                })
                .to_string(),
            );
        }
        Ok(cri::PodSandboxStatusResponse {
            status: Some(cri::PodSandboxStatus {
                id: rec.id.clone(),
                metadata: rec.config.metadata.clone(),
                state: self.effective_state(&rec) as i32,
                created_at: rec.created_at_ns,
                network: Some(network.unwrap_or_default()),
                linux: Some(cri::LinuxPodSandboxStatus {
                    namespaces: Some(cri::Namespace {
                        options: Some(namespace_mode(&rec.config)),
                    }),
                }),
                labels: rec.config.labels.clone(),
                annotations: rec.config.annotations.clone(),
                runtime_handler: rec.runtime_handler.clone(),
            }),
            info,
            containers_statuses: Vec::new(),
            timestamp: crate::records::now_ns(),
        })
    }
}
