//! The resources the dashboard shows and the raw calls it makes. Every call goes through the
//! logged-in user's own [`kube::Client`] (their bearer token): the API server authorizes it.

use hyper::Request;
use serde_json::Value;

/// A served resource: where it lives and what the UI calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// URL name, e.g. "deployments".
    pub plural: &'static str,
    /// "/api/v1" or "/apis/GROUP/VERSION".
    pub prefix: &'static str,
    pub namespaced: bool,
    /// The object's `kind`.
    pub kind: &'static str,
    /// Heading in lists.
    pub title: &'static str,
}

const fn k(
    plural: &'static str,
    prefix: &'static str,
    namespaced: bool,
    kind: &'static str,
    title: &'static str,
) -> Kind {
    Kind {
        plural,
        prefix,
        namespaced,
        kind,
        title,
    }
}

pub const DEPLOYMENTS: Kind = k(
    "deployments",
    "/apis/apps/v1",
    true,
    "Deployment",
    "Deployments",
);
pub const REPLICASETS: Kind = k(
    "replicasets",
    "/apis/apps/v1",
    true,
    "ReplicaSet",
    "ReplicaSets",
);
pub const STATEFULSETS: Kind = k(
    "statefulsets",
    "/apis/apps/v1",
    true,
    "StatefulSet",
    "StatefulSets",
);
pub const DAEMONSETS: Kind = k(
    "daemonsets",
    "/apis/apps/v1",
    true,
    "DaemonSet",
    "DaemonSets",
);
pub const JOBS: Kind = k("jobs", "/apis/batch/v1", true, "Job", "Jobs");
pub const CRONJOBS: Kind = k("cronjobs", "/apis/batch/v1", true, "CronJob", "CronJobs");
pub const PODS: Kind = k("pods", "/api/v1", true, "Pod", "Pods");
pub const SERVICES: Kind = k("services", "/api/v1", true, "Service", "Services");
pub const INGRESSES: Kind = k(
    "ingresses",
    "/apis/networking.k8s.io/v1",
    true,
    "Ingress",
    "Ingresses",
);
pub const ENDPOINTS: Kind = k("endpoints", "/api/v1", true, "Endpoints", "Endpoints");
pub const CONFIGMAPS: Kind = k("configmaps", "/api/v1", true, "ConfigMap", "ConfigMaps");
pub const SECRETS: Kind = k("secrets", "/api/v1", true, "Secret", "Secrets");
pub const EVENTS: Kind = k("events", "/api/v1", true, "Event", "Events");
pub const NODES: Kind = k("nodes", "/api/v1", false, "Node", "Nodes");
pub const NAMESPACES: Kind = k("namespaces", "/api/v1", false, "Namespace", "Namespaces");

/// Every kind a deep link may name.
pub const ALL: &[Kind] = &[
    DEPLOYMENTS,
    REPLICASETS,
    STATEFULSETS,
    DAEMONSETS,
    JOBS,
    CRONJOBS,
    PODS,
    SERVICES,
    INGRESSES,
    ENDPOINTS,
    CONFIGMAPS,
    SECRETS,
    EVENTS,
    NODES,
    NAMESPACES,
];

/// The workload kinds, in the order the workloads page lists them.
pub const WORKLOADS: &[Kind] = &[
    DEPLOYMENTS,
    REPLICASETS,
    STATEFULSETS,
    DAEMONSETS,
    JOBS,
    CRONJOBS,
    PODS,
];

pub fn by_plural(plural: &str) -> Option<Kind> {
    ALL.iter().copied().find(|k| k.plural == plural)
}

impl Kind {
    /// The API path of a collection (all namespaces when `ns` is None) or of one object.
    pub fn path(&self, ns: Option<&str>, name: Option<&str>) -> String {
        let mut p = self.prefix.to_string();
        if self.namespaced {
            if let Some(ns) = ns {
                p.push_str("/namespaces/");
                p.push_str(&crate::html::seg(ns));
            }
        }
        p.push('/');
        p.push_str(self.plural);
        if let Some(n) = name {
            p.push('/');
            p.push_str(&crate::html::seg(n));
        }
        p
    }

    /// The dashboard's deep link to one object.
    pub fn link(&self, base: &str, ns: &str, name: &str) -> String {
        use crate::html::seg;
        if self.namespaced {
            format!("{base}/ns/{}/{}/{}", seg(ns), self.plural, seg(name))
        } else {
            format!("{base}/{}/{}", self.plural, seg(name))
        }
    }
}

/// What the API server (or the way to it) answered instead of success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status (403 forbidden, 404, 409, 422 …); 502 when the server was not reached.
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl ApiError {
    pub fn bad_request(message: String) -> Self {
        ApiError {
            code: 400,
            reason: "BadRequest".into(),
            message,
        }
    }

    /// The way to the API server failed, or it answered nonsense.
    pub fn bad_gateway(message: String) -> Self {
        ApiError {
            code: 502,
            reason: "BadGateway".into(),
            message,
        }
    }

    /// An error answer with HTTP status `code`: its `Status` body's reason and message when it
    /// has one, else the body as text.
    pub fn from_status_body(code: u16, body: &[u8]) -> Self {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        ApiError {
            code,
            reason: text("reason").unwrap_or_default(),
            message: text("message").unwrap_or_else(|| {
                String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned()
            }),
        }
    }
}

impl From<kube::Error> for ApiError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => ApiError {
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
            },
            other => ApiError {
                code: 502,
                reason: "BadGateway".into(),
                message: other.to_string(),
            },
        }
    }
}

/// A user's view of the API: their own client.
#[derive(Clone)]
pub struct Api {
    pub client: kube::Client,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Api")
    }
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<String, ApiError> {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        b = b.header("accept", "application/json");
        let req = b.body(body).map_err(|e| ApiError {
            code: 400,
            reason: "BadRequest".into(),
            message: e.to_string(),
        })?;
        Ok(self.client.request_text(req).await?)
    }

    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        let text = self.call("GET", path, None, Vec::new()).await?;
        serde_json::from_str(&text).map_err(|e| ApiError {
            code: 502,
            reason: "BadGateway".into(),
            message: format!("the API server sent something that is not JSON: {e}"),
        })
    }

    /// The items of a list (empty when the list has none).
    pub async fn list(&self, path: &str) -> Result<Vec<Value>, ApiError> {
        let mut v = self.get(path).await?;
        Ok(match v.get_mut("items").map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        })
    }

    pub async fn text(&self, path: &str) -> Result<String, ApiError> {
        self.call("GET", path, None, Vec::new()).await
    }

    pub async fn merge_patch(&self, path: &str, patch: &Value) -> Result<(), ApiError> {
        self.call(
            "PATCH",
            path,
            Some("application/merge-patch+json"),
            patch.to_string().into_bytes(),
        )
        .await
        .map(|_| ())
    }

    /// Server-side apply of a whole object as field manager `pea-dashboard`.
    pub async fn apply(&self, path: &str, object: &Value) -> Result<(), ApiError> {
        let path = format!("{path}?fieldManager=pea-dashboard&force=true");
        self.call(
            "PATCH",
            &path,
            Some("application/apply-patch+yaml"),
            object.to_string().into_bytes(),
        )
        .await
        .map(|_| ())
    }

    /// POST of a JSON body (a subresource such as `pods/eviction`); the answer's JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Result<String, ApiError> {
        self.call(
            "POST",
            path,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Result<(), ApiError> {
        self.call(
            "DELETE",
            path,
            Some("application/json"),
            br#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#
                .to_vec(),
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            DEPLOYMENTS.path(Some("default"), Some("web")),
            "/apis/apps/v1/namespaces/default/deployments/web"
        );
        assert_eq!(PODS.path(None, None), "/api/v1/pods");
        assert_eq!(NODES.path(Some("ignored"), Some("n1")), "/api/v1/nodes/n1");
        assert_eq!(
            DEPLOYMENTS.link("/dashboard", "default", "web"),
            "/dashboard/ns/default/deployments/web"
        );
        assert_eq!(NODES.link("/dashboard", "", "n1"), "/dashboard/nodes/n1");
    }
}
