//! Finding a pod's sandbox and containers in the runtime by the labels the kubelet puts on them
//! (`io.kubernetes.pod.{name,namespace,uid}`, `io.kubernetes.container.name`), as the kubelet's
//! runtime cache does.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use super::cri_connect::CriHandle;
use super::ServerError;

pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// A pod as the runtime knows it.
#[derive(Debug, Clone)]
pub struct RuntimePod {
    pub sandbox: cri::PodSandbox,
    /// Its containers, newest first.
    pub containers: Vec<cri::Container>,
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The newest sandbox of `namespace/name` (of `uid` when known; a ready one preferred) and its
/// containers; `PodNotFound` when the runtime has none.
pub async fn find_pod(
    cri: &CriHandle,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<RuntimePod, ServerError> {
    let mut selector = vec![(POD_NAMESPACE, namespace), (POD_NAME, name)];
    if let Some(uid) = uid {
        selector.push((POD_UID, uid));
    }
    let mut sandboxes = cri
        .runtime
        .clone()
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: labels(&selector),
                ..Default::default()
            }),
        })
        .await
        .map_err(|s| ServerError::cri("ListPodSandbox", s))?
        .into_inner()
        .items;
    // Ready first, then newest.
    sandboxes.sort_by_key(|s| {
        (
            s.state != cri::PodSandboxState::SandboxReady as i32,
            std::cmp::Reverse(s.created_at),
        )
    });
    let sandbox = sandboxes
        .into_iter()
        .next()
        .ok_or_else(|| ServerError::PodNotFound(format!("{namespace}/{name}")))?;
    let mut containers = cri
        .runtime
        .clone()
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: sandbox.id.clone(),
                ..Default::default()
            }),
        })
        .await
        .map_err(|s| ServerError::cri("ListContainers", s))?
        .into_inner()
        .containers;
    containers
        .sort_by_key(|c| std::cmp::Reverse((c.metadata.as_ref().map(|m| m.attempt), c.created_at)));
    Ok(RuntimePod {
        sandbox,
        containers,
    })
}

impl RuntimePod {
    /// The containers named `name` (the CRI name, else the kubelet's label), newest first.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a cri::Container> + 'a {
        self.containers.iter().filter(move |c| {
            c.metadata.as_ref().map(|m| m.name.as_str()) == Some(name)
                || c.labels.get(CONTAINER_NAME).map(String::as_str) == Some(name)
        })
    }

    /// The current container `name` (`previous`: the one before it), as the kubelet picks
    /// for logs.
    pub fn container<'a>(
        &'a self,
        name: &'a str,
        previous: bool,
    ) -> Result<&'a cri::Container, ServerError> {
        let pod = self
            .sandbox
            .metadata
            .as_ref()
            .map(|m| format!("{}/{}", m.namespace, m.name))
            .unwrap_or_default();
        let mut all = self.named(name);
        let current = all.next().ok_or_else(|| {
            ServerError::BadRequest(format!(
                "container {name:?} in pod {pod:?} is not available"
            ))
        })?;
        if !previous {
            return Ok(current);
        }
        all.next().ok_or_else(|| {
            ServerError::BadRequest(format!(
                "previous terminated container {name:?} in pod {pod:?} not found"
            ))
        })
    }

    /// The current running container `name` (exec and attach need one).
    pub fn running<'a>(&'a self, name: &'a str) -> Result<&'a cri::Container, ServerError> {
        let c = self.container(name, false)?;
        if c.state != cri::ContainerState::ContainerRunning as i32 {
            return Err(ServerError::BadRequest(format!(
                "container {name:?} is not running (state {})",
                cri::ContainerState::try_from(c.state)
                    .map(|s| s.as_str_name())
                    .unwrap_or("unknown")
            )));
        }
        Ok(c)
    }
}
