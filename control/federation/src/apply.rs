//! Writes to a member cluster, shared by push mode (pea-federation dials the member, see
//! [`crate::reconcile`]) and pull mode (the member's agent, see [`crate::agent`]): the same
//! server-side apply with the same field manager, the same namespace creation and deletion, and
//! the same error text naming the member and the field its API server refused.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::{render, FIELD_MANAGER};

pub(crate) fn str_at<'v>(v: &'v Value, ptr: &str) -> &'v str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

pub(crate) fn api_for(client: &Client, ar: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// Server-side applies the rendered `want` to the member (forcing: the federation owns the fields
/// it sets); the object as the member now holds it, or an error naming the member and, for a
/// refusal, the API server's message (which names the field).
pub(crate) async fn apply_object(
    client: &Client,
    ar: &ApiResource,
    member: &str,
    want: &Value,
) -> Result<Value, String> {
    let api = api_for(client, ar, want["metadata"]["namespace"].as_str());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch(str_at(want, "/metadata/name"), &pp, &Patch::Apply(want))
        .await
    {
        Ok(o) => {
            let mut v = serde_json::to_value(&o).unwrap_or_default();
            v["apiVersion"] = json!(ar.api_version);
            v["kind"] = json!(ar.kind);
            Ok(v)
        }
        Err(kube::Error::Api(s)) => Err(format!(
            "member {member}: {} {}: {}",
            s.code, s.reason, s.message
        )),
        Err(e) => Err(format!(
            "member {member}: apply {}: {e}",
            render::identity(want)
        )),
    }
}

/// Deletes a member object (in the background, as kubectl does); a missing one is gone already.
pub(crate) async fn delete_object(
    client: &Client,
    ar: &ApiResource,
    v: &Value,
) -> Result<(), kube::Error> {
    let api = api_for(client, ar, v["metadata"]["namespace"].as_str());
    match api
        .delete(str_at(v, "/metadata/name"), &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the namespace a namespaced object needs, if it is missing.
pub(crate) async fn ensure_namespace(client: &Client, ns: &str) -> Result<(), kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(ns).await?.is_some() {
        return Ok(());
    }
    let obj: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
    match api.create(&Default::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
