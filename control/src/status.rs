//! API errors and their one translation to the wire: a Kubernetes `Status` JSON body.

use pea_control_store::StoreError;
use serde_json::{json, Value};

/// A kubelet's error answer, worded as kube-apiserver words it.
#[derive(Debug)]
pub struct BackendFailure {
    pub code: u16,
    pub reason: &'static str,
    /// kube's message for the code.
    pub message: String,
    /// The kubelet's own text.
    pub server_message: String,
    pub resource: String,
    pub name: String,
}

/// Every way a request can fail. Each variant names what failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        group: String,
        resource: String,
        name: String,
    },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        group: String,
        resource: String,
        name: String,
    },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {reason}")]
    Conflict {
        group: String,
        resource: String,
        name: String,
        reason: String,
    },
    #[error("{kind} \"{name}\" is invalid: {}", causes.iter().map(|(f, m)| format!("{f}: {m}")).collect::<Vec<_>>().join(", "))]
    Invalid {
        group: String,
        kind: String,
        name: String,
        causes: Vec<(String, String)>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Gone(String),
    #[error("Unauthorized")]
    Unauthorized,
    /// kube's `NewForbidden`: `pods "web" is forbidden: <message>` (`forbidden: <message>`
    /// for a path that is not a resource). `message` is, for authorization refusals, kube's
    /// `User "x" cannot list resource "pods" ...` ([`crate::authz::Attributes::forbidden`]).
    #[error("{}", forbidden_text(group, resource, name, message))]
    Forbidden {
        group: String,
        resource: String,
        name: String,
        message: String,
    },
    /// An object a policy protects (kube-apiserver's admission plugins), e.g. the namespaces
    /// every cluster has.
    #[error("{resource} \"{name}\" is forbidden: {reason}")]
    ForbiddenObject {
        group: String,
        resource: String,
        name: String,
        reason: String,
    },
    #[error("Too large resource version: {requested}, current resource version: {current}")]
    TooLargeResourceVersion { requested: i64, current: i64 },
    #[error("the server does not allow this method on the requested resource: {0}")]
    MethodNotAllowed(String),
    #[error("not implemented: {0}")]
    NotImplemented(String),
    #[error("the body of the request was in an unknown format: {0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the server could not find the requested resource: {path}")]
    NoRoute { path: String },
    #[error("internal error: {0}")]
    Internal(String),
    /// A kubelet answered a relayed request with an error (kube's GenericHttpResponseChecker):
    /// `message` is already in kube's words, `server_message` the kubelet's own text.
    #[error("{}", .0.message)]
    Backend(Box<BackendFailure>),
    /// The kubelet could not be reached (connect, TLS, or the request itself failed).
    #[error("error dialing backend: {0}")]
    BackendUnreachable(String),
    /// 429: try again later (an eviction a PodDisruptionBudget does not allow yet); `causes`
    /// are (reason, message) pairs, e.g. ("DisruptionBudget", "The disruption budget ...").
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_seconds: u32,
        causes: Vec<(String, String)>,
    },
}

/// The message of kube's `NewForbidden(groupResource, name, err)`.
fn forbidden_text(group: &str, resource: &str, name: &str, message: &str) -> String {
    if group.is_empty() && resource.is_empty() {
        return format!("forbidden: {message}");
    }
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    if name.is_empty() {
        format!("{qualified} is forbidden: {message}")
    } else {
        format!("{qualified} {name:?} is forbidden: {message}")
    }
}

impl ApiError {
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute { .. } => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Gone(_) => 410,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden { .. } | ApiError::ForbiddenObject { .. } => 403,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::NotImplemented(_) => 501,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::NotAcceptable(_) => 406,
            ApiError::TooLarge { .. } => 413,
            ApiError::Internal(_) => 500,
            ApiError::TooLargeResourceVersion { .. } => 504,
            ApiError::Backend(b) => b.code,
            ApiError::BackendUnreachable(_) => 500,
            ApiError::TooManyRequests { .. } => 429,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Gone(_) => "Expired",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden { .. } | ApiError::ForbiddenObject { .. } => "Forbidden",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::NotImplemented(_) => "NotImplemented",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::TooLarge { .. } => "RequestEntityTooLarge",
            ApiError::Internal(_) => "InternalError",
            ApiError::TooLargeResourceVersion { .. } => "Timeout",
            ApiError::Backend(b) => b.reason,
            ApiError::BackendUnreachable(_) => "InternalError",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
        }
    }

    /// The `Status` object clients decode.
    pub fn to_status(&self) -> Value {
        let details = match self {
            ApiError::NotFound {
                group,
                resource,
                name,
            }
            | ApiError::AlreadyExists {
                group,
                resource,
                name,
            }
            | ApiError::Conflict {
                group,
                resource,
                name,
                ..
            }
            | ApiError::ForbiddenObject {
                group,
                resource,
                name,
                ..
            } => {
                json!({"name": name, "group": group, "kind": resource})
            }
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => json!({
                "name": name, "group": group, "kind": kind,
                "causes": causes.iter().map(|(f, m)| json!({
                    "reason": "FieldValueInvalid", "message": m, "field": f
                })).collect::<Vec<_>>(),
            }),
            ApiError::Forbidden {
                group,
                resource,
                name,
                ..
            } => {
                // Go leaves empty StatusDetails fields out.
                let mut d = serde_json::Map::new();
                for (k, v) in [("name", name), ("group", group), ("kind", resource)] {
                    if !v.is_empty() {
                        d.insert(k.into(), json!(v));
                    }
                }
                Value::Object(d)
            }
            ApiError::Backend(b) => json!({"name": b.name, "group": "", "kind": b.resource,
                "causes": [{"message": b.server_message}]}),
            ApiError::TooManyRequests {
                retry_after_seconds,
                causes,
                ..
            } => {
                let mut d = json!({"causes": causes.iter().map(|(r, m)| json!({
                    "reason": r, "message": m
                })).collect::<Vec<_>>()});
                // kube's NewTooManyRequests leaves retryAfterSeconds out when it is 0.
                if *retry_after_seconds > 0 {
                    d["retryAfterSeconds"] = json!(retry_after_seconds);
                }
                d
            }
            _ => Value::Null,
        };
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        if !details.is_null() {
            status["details"] = details;
        }
        status
    }

    /// A kubelet's error answer to a relayed request, as kube's GenericHttpResponseChecker words
    /// it: 400 and 500 carry the kubelet's text, others kube's generic message for the code.
    pub fn from_backend(code: u16, body: String, resource: &str, name: &str) -> Self {
        match code {
            400 => return ApiError::BadRequest(body),
            500 => return ApiError::Internal(body),
            _ => {}
        }
        let (reason, message) = match code {
            409 => ("Conflict", "the server reported a conflict".to_string()),
            404 => ("NotFound", "the server could not find the requested resource".into()),
            401 => ("Unauthorized", "the server has asked for the client to provide credentials".into()),
            403 => ("Forbidden", body.clone()),
            405 | 406 => ("MethodNotAllowed", "the server does not allow this method on the requested resource".into()),
            422 => ("Invalid", "the server rejected our request due to an error in our request".into()),
            503 => ("ServiceUnavailable", "the server is currently unable to handle the request".into()),
            c if c >= 500 => ("InternalError", format!("an error on the server ({body:?}) has prevented the request from succeeding")),
            c => ("", format!("the server responded with the status code {c} but did not return more information")),
        };
        ApiError::Backend(Box::new(BackendFailure {
            code,
            reason,
            message: format!("{message} ( {resource} {name})"),
            server_message: body,
            resource: resource.into(),
            name: name.into(),
        }))
    }

    /// Maps a store error for an object of `resource`.
    pub fn from_store(err: StoreError, group: &str, resource: &str, name: &str) -> Self {
        let (group, resource, name) = (group.to_string(), resource.to_string(), name.to_string());
        match err {
            StoreError::AlreadyExists { .. } => ApiError::AlreadyExists { group, resource, name },
            StoreError::NotFound { .. } => ApiError::NotFound { group, resource, name },
            StoreError::Conflict { .. } => ApiError::Conflict {
                group,
                resource,
                name,
                reason: "the object has been modified; please apply your changes to the latest version and try again".into(),
            },
            StoreError::Compacted { requested, .. } => {
                ApiError::Gone(format!("too old resource version: {requested}"))
            }
            StoreError::FutureRevision { requested, current } => {
                ApiError::TooLargeResourceVersion { requested, current }
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}
