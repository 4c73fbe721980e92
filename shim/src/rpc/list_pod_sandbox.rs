//! ListPodSandbox with CRI's filters: id (or unique prefix), state, label selector.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use crate::error::ShimError;
use crate::Shim;

/// Every selector pair is present in `labels`.
pub fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl Shim {
    pub async fn list_pod_sandbox(
        &self,
        r: cri::ListPodSandboxRequest,
    ) -> Result<cri::ListPodSandboxResponse, ShimError> {
        let f = r.filter.unwrap_or_default();
        let mut items: Vec<cri::PodSandbox> = self
            .sandboxes()
            .into_iter()
            .filter(|s| f.id.is_empty() || s.id.starts_with(&f.id))
            .map(|s| {
                let state = self.effective_state(&s);
                (s, state)
            })
            .filter(|(_, state)| f.state.as_ref().is_none_or(|v| v.state == *state as i32))
            .filter(|(s, _)| labels_match(&f.label_selector, &s.config.labels))
            .map(|(s, state)| cri::PodSandbox {
                id: s.id.clone(),
                metadata: s.config.metadata.clone(),
                state: state as i32,
                created_at: s.created_at_ns,
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
                runtime_handler: s.runtime_handler.clone(),
            })
            .collect();
        items.sort_by_key(|s| s.created_at);
        Ok(cri::ListPodSandboxResponse { items })
    }
}
