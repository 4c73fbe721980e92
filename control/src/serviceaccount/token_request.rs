//! POST serviceaccounts/NAME/token: an authentication.k8s.io/v1 TokenRequest, answered with a
//! signed token as kube's `registry/core/serviceaccount/storage/token.go` does: audiences
//! default to the API audiences, expirationSeconds to 3600 (at least 600, capped by
//! `--service-account-max-token-expiration`), and a bound Pod, Secret or Node must exist (with
//! the given uid); a pod's node is embedded too.

use std::time::UNIX_EPOCH;

use serde_json::{json, Value};

use super::claims::{Claims, Private, Ref};
use super::{get_core, ServiceAccounts};
use crate::api::{Ctx, Reply};
use crate::objects;
use crate::status::ApiError;

const GROUP: &str = "authentication.k8s.io";
const MIN_EXPIRATION: i64 = 600;
const DEFAULT_EXPIRATION: i64 = 3600;
/// kube's validation bound: `1 << 32` seconds.
const MAX_EXPIRATION: i64 = 1 << 32;

fn invalid(name: &str, field: &str, msg: &str) -> ApiError {
    ApiError::Invalid {
        group: GROUP.into(),
        kind: "TokenRequest".into(),
        name: name.into(),
        causes: vec![(field.into(), msg.into())],
    }
}

fn ref_of(obj: &Value) -> Ref {
    Ref {
        name: objects::meta_str(obj, "name").unwrap_or("").to_string(),
        uid: objects::meta_str(obj, "uid").unwrap_or("").to_string(),
    }
}

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let sa_name = ctx.name()?.to_string();
    let ns = ctx
        .namespace()
        .ok_or_else(|| ApiError::BadRequest("a TokenRequest needs a namespace".into()))?
        .to_string();
    let issuer = ctx.api.service_accounts.as_deref().ok_or_else(|| {
        ApiError::NotImplemented("service-account tokens: no signing key is configured".into())
    })?;
    let mut req = crate::verbs::body_object(ctx)?;
    match (
        req.get("apiVersion").and_then(Value::as_str),
        req.get("kind").and_then(Value::as_str),
    ) {
        (None | Some("authentication.k8s.io/v1"), None | Some("TokenRequest")) => {}
        (v, k) => {
            return Err(ApiError::BadRequest(format!(
                "the body of serviceaccounts/token must be an authentication.k8s.io/v1 TokenRequest, not {} {}",
                v.unwrap_or(""),
                k.unwrap_or("")
            )))
        }
    }
    let (sa, _) = ctx.current(&sa_name).await?;
    let spec = req.get("spec").cloned().unwrap_or_else(|| json!({}));
    let audiences: Vec<String> = match spec.get("audiences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(&sa_name, "spec.audiences", "must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid(&sa_name, "spec.audiences", "must be a list")),
    };
    let audiences = if audiences.is_empty() {
        issuer.api_audiences.clone()
    } else {
        audiences
    };
    let mut expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| invalid(&sa_name, "spec.expirationSeconds", "must be an integer"))?,
    };
    if expiration < MIN_EXPIRATION {
        return Err(invalid(
            &sa_name,
            "spec.expirationSeconds",
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > MAX_EXPIRATION {
        return Err(invalid(
            &sa_name,
            "spec.expirationSeconds",
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if let Some(max) = issuer.max_expiration_secs {
        expiration = expiration.min(max as i64);
    }
    let mut private = Private {
        namespace: ns.clone(),
        serviceaccount: ref_of(&sa),
        pod: None,
        secret: None,
        node: None,
    };
    let bound = spec.get("boundObjectRef").filter(|v| !v.is_null());
    if let Some(bound) = bound {
        bind(ctx.api, &ns, &sa_name, bound, &mut private).await?;
    }
    let now = ctx
        .now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let claims = Claims {
        iss: issuer.issuer.clone(),
        sub: format!("{}{ns}:{sa_name}", crate::auth::SERVICE_ACCOUNT_PREFIX),
        aud: audiences.clone(),
        exp: now + expiration,
        iat: now,
        nbf: now,
        jti: objects::new_uid(),
        kubernetes: private,
    };
    let token = issue(issuer, &claims)?;
    tracing::info!(namespace = %ns, serviceaccount = %sa_name, jti = %claims.jti, exp = claims.exp, "issued a service-account token");
    let mut spec = spec;
    spec["audiences"] = json!(audiences);
    spec["expirationSeconds"] = json!(expiration);
    if spec.get("boundObjectRef").is_some_and(Value::is_null) {
        spec.as_object_mut().map(|s| s.remove("boundObjectRef"));
    }
    let expires = UNIX_EPOCH + std::time::Duration::from_secs(claims.exp.max(0) as u64);
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    req["kind"] = json!("TokenRequest");
    req["metadata"] = json!({
        "name": sa_name,
        "namespace": ns,
        "creationTimestamp": objects::rfc3339(ctx.now()),
    });
    req["spec"] = spec;
    req["status"] = json!({"token": token, "expirationTimestamp": objects::rfc3339(expires)});
    Ok(Reply::json(201, req))
}

/// For the node authorizer: the node of the pod a TokenRequest binds its token to, when that
/// pod runs as the requested service account (a node may only ask for those tokens).
pub async fn bound_pod_node(ctx: &Ctx<'_>) -> Option<String> {
    let req = crate::verbs::body_object(ctx).ok()?;
    let bound = req.pointer("/spec/boundObjectRef")?;
    if bound.get("kind").and_then(Value::as_str) != Some("Pod") {
        return None;
    }
    let name = bound.get("name").and_then(Value::as_str)?;
    let pod = get_core(ctx.api, "pods", ctx.namespace(), name)
        .await
        .ok()??;
    let sa = pod
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)?;
    if Some(sa) != ctx.info.name.as_deref() {
        return None;
    }
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Signs `claims` with the server's key.
pub fn issue(issuer: &ServiceAccounts, claims: &Claims) -> Result<String, ApiError> {
    super::jwt::sign(&issuer.signing, claims)
        .map_err(|e| ApiError::Internal(format!("signing a service-account token: {e}")))
}

/// Resolves `boundObjectRef` (Pod, Secret or Node) into the private claims.
async fn bind(
    api: &crate::api::Api,
    ns: &str,
    sa_name: &str,
    bound: &Value,
    private: &mut Private,
) -> Result<(), ApiError> {
    let s = |k: &str| bound.get(k).and_then(Value::as_str).unwrap_or("");
    let (api_version, kind, name, uid) = (s("apiVersion"), s("kind"), s("name"), s("uid"));
    if !matches!(api_version, "" | "v1") {
        return Err(ApiError::BadRequest(format!(
            "cannot bind token for serviceaccount {sa_name:?} to object of kind {kind} in group version {api_version}"
        )));
    }
    if name.is_empty() {
        return Err(invalid(
            sa_name,
            "spec.boundObjectRef.name",
            "Required value",
        ));
    }
    let not_found = |plural: &str| ApiError::NotFound {
        group: String::new(),
        resource: plural.into(),
        name: name.into(),
    };
    let obj = match kind {
        "Pod" => {
            let pod = get_core(api, "pods", Some(ns), name)
                .await?
                .ok_or_else(|| not_found("pods"))?;
            let pod_sa = pod
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if pod_sa != sa_name {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name."
                )));
            }
            // kube embeds the pod's node (ServiceAccountTokenPodNodeInfo) when it exists.
            if let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str) {
                if let Ok(Some(n)) = get_core(api, "nodes", None, node).await {
                    private.node = Some(ref_of(&n));
                }
            }
            private.pod = Some(ref_of(&pod));
            pod
        }
        "Secret" => {
            let secret = get_core(api, "secrets", Some(ns), name)
                .await?
                .ok_or_else(|| not_found("secrets"))?;
            private.secret = Some(ref_of(&secret));
            secret
        }
        "Node" => {
            let node = get_core(api, "nodes", None, name)
                .await?
                .ok_or_else(|| not_found("nodes"))?;
            private.node = Some(ref_of(&node));
            node
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "cannot bind token for serviceaccount {sa_name:?} to object of kind {other:?}"
            )))
        }
    };
    let actual = objects::meta_str(&obj, "uid").unwrap_or("");
    if !uid.is_empty() && uid != actual {
        return Err(ApiError::Conflict {
            group: String::new(),
            resource: kind.into(),
            name: name.into(),
            reason: format!("the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"),
        });
    }
    Ok(())
}
