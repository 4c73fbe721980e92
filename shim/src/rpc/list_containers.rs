//! ListContainers with CRI's filters: id (or prefix), state, sandbox id, label selector.

use k8s_cri::v1 as cri;

use super::list_pod_sandbox::labels_match;
use crate::error::ShimError;
use crate::Shim;

impl Shim {
    pub async fn list_containers(
        &self,
        r: cri::ListContainersRequest,
    ) -> Result<cri::ListContainersResponse, ShimError> {
        let f = r.filter.unwrap_or_default();
        let mut containers: Vec<cri::Container> = self
            .containers()
            .into_iter()
            .filter(|c| f.id.is_empty() || c.id.starts_with(&f.id))
            .filter(|c| f.pod_sandbox_id.is_empty() || c.sandbox_id.starts_with(&f.pod_sandbox_id))
            .filter(|c| {
                f.state
                    .as_ref()
                    .is_none_or(|v| v.state == c.state.to_cri() as i32)
            })
            .filter(|c| labels_match(&f.label_selector, &c.config.labels))
            .map(|c| cri::Container {
                id: c.id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.config.metadata.clone(),
                image: Some(c.cri_image_spec()),
                image_ref: c.image_id.clone(),
                state: c.state.to_cri() as i32,
                created_at: c.created_at_ns,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
                image_id: c.image_id.clone(),
            })
            .collect();
        containers.sort_by_key(|c| c.created_at);
        Ok(cri::ListContainersResponse { containers })
    }
}
