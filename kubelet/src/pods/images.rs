//! Image pulls for a container (kubelet's `EnsureImageExists`): imagePullPolicy, credentials
//! from imagePullSecrets, serialized pulls, and the reasons kubelet reports on failure.

use base64::Engine;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::Api;

use super::Shared;

/// A failed pull as the container's waiting state shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PullError {
    pub reason: &'static str,
    pub message: String,
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent` (the API server's default).
pub fn pull_policy(c: &Container) -> String {
    if let Some(p) = c.image_pull_policy.clone().filter(|p| !p.is_empty()) {
        return p;
    }
    let image = c.image.as_deref().unwrap_or("");
    let name = image.split('@').next().unwrap_or("");
    let last = name.rsplit('/').next().unwrap_or("");
    match last.split_once(':') {
        _ if image.contains('@') => "IfNotPresent".into(),
        Some((_, "latest")) | None => "Always".into(),
        Some(_) => "IfNotPresent".into(),
    }
}

/// The registry host of an image reference (docker.io when the first part is not a host).
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".into(),
    }
}

/// Credentials for `image` from docker config secrets (kubernetes.io/dockerconfigjson or
/// kubernetes.io/dockercfg), matched by registry host as kubelet's keyring does.
pub fn auth_from_secrets(image: &str, secrets: &[Secret]) -> Option<cri::AuthConfig> {
    let host = registry_host(image);
    for s in secrets {
        let data = s.data.as_ref()?;
        let (json, nested) = if let Some(d) = data.get(".dockerconfigjson") {
            (d, true)
        } else if let Some(d) = data.get(".dockercfg") {
            (d, false)
        } else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&json.0) else {
            continue;
        };
        let auths = if nested {
            v.get("auths").cloned()
        } else {
            Some(v)
        };
        let Some(serde_json::Value::Object(auths)) = auths else {
            continue;
        };
        for (key, entry) in auths {
            let key_host = key
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or("")
                .to_string();
            let key_host = if key_host == "index.docker.io" {
                "docker.io".into()
            } else {
                key_host
            };
            if key_host != host {
                continue;
            }
            let str_of = |k: &str| {
                entry
                    .get(k)
                    .and_then(|x| x.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            let (mut user, mut pass) = (str_of("username"), str_of("password"));
            let auth = str_of("auth");
            if user.is_empty() && !auth.is_empty() {
                if let Ok(dec) = base64::engine::general_purpose::STANDARD.decode(&auth) {
                    if let Some((u, p)) = String::from_utf8_lossy(&dec).split_once(':') {
                        user = u.to_string();
                        pass = p.to_string();
                    }
                }
            }
            return Some(cri::AuthConfig {
                username: user,
                password: pass,
                server_address: host,
                ..Default::default()
            });
        }
    }
    None
}

impl Shared {
    /// Makes sure the container's image is present; returns the image reference to run.
    pub async fn ensure_image(
        &self,
        pod: &Pod,
        c: &Container,
        in_backoff: bool,
    ) -> Result<String, PullError> {
        let image = c.image.clone().unwrap_or_default();
        if image.is_empty() || image.contains(char::is_whitespace) {
            return Err(PullError {
                reason: "InvalidImageName",
                message: format!(
                    "Failed to apply default image tag {image:?}: invalid reference format"
                ),
            });
        }
        let policy = pull_policy(c);
        let mut cri = self.cri.clone();
        let present = cri
            .images
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().image);
        if let Some(img) = &present {
            if policy != "Always" {
                return Ok(img.id.clone());
            }
        }
        if policy == "Never" {
            return Err(PullError {
                reason: "ErrImageNeverPull",
                message: format!(
                    "Container image {image:?} is not present with pull policy of Never"
                ),
            });
        }
        if in_backoff {
            return Err(PullError {
                reason: "ImagePullBackOff",
                message: format!("Back-off pulling image {image:?}"),
            });
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let mut secrets = Vec::new();
        for r in pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .into_iter()
            .flatten()
        {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
            match api.get_opt(&r.name).await {
                Ok(Some(s)) => secrets.push(s),
                Ok(None) => self.events.pod(
                    pod,
                    true,
                    "FailedToRetrieveImagePullSecret",
                    format!("Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.", r.name),
                ),
                Err(e) => tracing::warn!(error = %e, secret = r.name, "reading image pull secret"),
            }
        }
        let auth = auth_from_secrets(&image, &secrets);
        let _serial = if self.cfg.serialize_image_pulls {
            Some(self.pulls.lock().await)
        } else {
            None
        };
        self.events
            .pod(pod, false, "Pulling", format!("Pulling image {image:?}"));
        let started = std::time::Instant::now();
        match cri
            .images
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                auth,
                sandbox_config: None,
            })
            .await
        {
            Ok(r) => {
                self.events.pod(
                    pod,
                    false,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {:.3}s",
                        started.elapsed().as_secs_f64()
                    ),
                );
                Ok(r.into_inner().image_ref)
            }
            Err(s) => {
                let message = format!("Failed to pull image {image:?}: {}", s.message());
                self.events.pod(pod, true, "Failed", message.clone());
                Err(PullError {
                    reason: "ErrImagePull",
                    message,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(image: &str, policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn policies_and_hosts() {
        assert_eq!(pull_policy(&c("busybox", None)), "Always");
        assert_eq!(pull_policy(&c("busybox:latest", None)), "Always");
        assert_eq!(
            pull_policy(&c("127.0.0.1:5000/busybox:v1", None)),
            "IfNotPresent"
        );
        assert_eq!(pull_policy(&c("127.0.0.1:5000/busybox", None)), "Always");
        assert_eq!(pull_policy(&c("busybox:v1", Some("Never"))), "Never");
        assert_eq!(registry_host("127.0.0.1:5000/a/b:v1"), "127.0.0.1:5000");
        assert_eq!(registry_host("library/busybox"), "docker.io");
        assert_eq!(registry_host("quay.io/x/y"), "quay.io");
    }

    #[test]
    fn docker_config_secrets() {
        let s: Secret = serde_json::from_value(serde_json::json!({
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(
                r#"{"auths":{"https://127.0.0.1:5000":{"auth":"YWxpY2U6czNjcmV0"}}}"#)}
        }))
        .unwrap();
        let a = auth_from_secrets("127.0.0.1:5000/x:v1", std::slice::from_ref(&s)).unwrap();
        assert_eq!(
            (a.username.as_str(), a.password.as_str()),
            ("alice", "s3cret")
        );
        assert!(auth_from_secrets("quay.io/x:v1", &[s]).is_none());
    }
}
