//! CRD conversion webhooks (`spec.conversion.strategy: Webhook`): custom objects are stored in
//! the storage version; a read at another served version, and a write from one, goes through
//! one ConversionReview v1 POST to the CRD's webhook (its URL or Service, verified against its
//! caBundle), as kube-apiserver's webhook converter does. Lists send their objects in one
//! review. What the webhook may change is kube's rule: everything but the object's metadata,
//! of which only labels and annotations are taken back.
//!
//! Failures are kube's: `conversion webhook for stable.example.com/v1, Kind=CronTab failed:
//! Post "https://...": ...`, a 500 whose reason is empty (kubectl prints `Error from server:`).

use std::time::Duration;

use serde_json::{json, Value};
use tracing::Instrument;

use crate::admission::client;
use crate::api::Api;
use crate::objects;
use crate::resources::ResourceDef;
use crate::status::{ApiError, BackendFailure};

/// kube calls conversion webhooks with a fixed 30 s timeout.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The most objects one review carries (a list is converted in chunks of this many).
const MAX_OBJECTS_PER_REVIEW: usize = 500;

/// A CRD's webhook: its `spec.conversion.webhook` as written.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub client_config: Value,
}

impl Webhook {
    /// The webhook of a CRD whose strategy is `Webhook`.
    pub fn of(crd_spec: &Value) -> Option<Webhook> {
        if crd_spec
            .pointer("/conversion/strategy")
            .and_then(Value::as_str)
            != Some("Webhook")
        {
            return None;
        }
        Some(Webhook {
            client_config: crd_spec
                .pointer("/conversion/webhook/clientConfig")
                .cloned()
                .unwrap_or(Value::Null),
        })
    }
}

fn failure(message: String, def: &ResourceDef, name: &str) -> ApiError {
    ApiError::Backend(Box::new(BackendFailure {
        code: 500,
        reason: "",
        server_message: message.clone(),
        message,
        resource: def.plural.to_string(),
        name: name.to_string(),
    }))
}

/// Whether objects of `def` go through a webhook to reach another version.
pub fn uses_webhook(def: &ResourceDef) -> bool {
    def.custom.as_ref().is_some_and(|c| c.conversion.is_some())
}

/// Converts every object of `objs` whose apiVersion is not `api_version` (one of `def`'s
/// CRD's versions) with the CRD's webhook. Without a webhook this does nothing: conversion
/// `None` only rewrites apiVersion ([`super::view`]).
pub async fn convert(
    api: &Api,
    def: &ResourceDef,
    objs: &mut [Value],
    api_version: &str,
) -> Result<(), ApiError> {
    let Some(hook) = def.custom.as_ref().and_then(|c| c.conversion.as_ref()) else {
        return Ok(());
    };
    let todo: Vec<usize> = (0..objs.len())
        .filter(|i| objs[*i].get("apiVersion").and_then(Value::as_str) != Some(api_version))
        .collect();
    for chunk in todo.chunks(MAX_OBJECTS_PER_REVIEW) {
        let inputs: Vec<Value> = chunk.iter().map(|i| objs[*i].clone()).collect();
        let converted = review(api, def, hook, &inputs, api_version).await?;
        for (i, out) in chunk.iter().zip(converted) {
            objs[*i] = out;
        }
    }
    Ok(())
}

/// One ConversionReview round trip for `inputs` (all non-empty, none at `api_version`).
async fn review(
    api: &Api,
    def: &ResourceDef,
    hook: &Webhook,
    inputs: &[Value],
    api_version: &str,
) -> Result<Vec<Value>, ApiError> {
    let first = &inputs[0];
    let name = objects::name_of(first).to_string();
    let gvk = format!(
        "{}, Kind={}",
        first
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or(""),
        def.kind
    );
    let failed = |why: String| {
        failure(
            format!("conversion webhook for {gvk} failed: {why}"),
            def,
            &name,
        )
    };
    let to = crate::admission::webhooks::endpoint(api, &hook.client_config, TIMEOUT)
        .await
        .map_err(&failed)?;
    let ca = client::decode_ca_bundle(hook.client_config.get("caBundle")).map_err(&failed)?;
    let uid = objects::new_uid();
    let body = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
        "request": {"uid": uid, "desiredAPIVersion": api_version, "objects": inputs}});
    let span = tracing::debug_span!("conversion webhook", crd = %def.plural, %uid, url = %to.url, objects = inputs.len());
    let (code, answer) = client::post(&to, &ca, objects::encode(&body), TIMEOUT)
        .instrument(span)
        .await
        .map_err(&failed)?;
    if code != 200 {
        let text = String::from_utf8_lossy(&answer[..answer.len().min(512)]).to_string();
        return Err(failed(format!(
            "the server responded with the status code {code}: {}",
            text.trim_end()
        )));
    }
    let answer: Value = serde_json::from_slice(&answer)
        .map_err(|e| failed(format!("the response is not a ConversionReview: {e}")))?;
    let response = answer
        .get("response")
        .filter(|r| r.is_object())
        .ok_or_else(|| failed("no response provided".into()))?;
    let got_uid = response.get("uid").and_then(Value::as_str).unwrap_or("");
    if got_uid != uid {
        return Err(failed(format!(
            "expected response uid {uid:?}, got {got_uid:?}"
        )));
    }
    if response.pointer("/result/status").and_then(Value::as_str) != Some("Success") {
        let msg = response
            .pointer("/result/message")
            .and_then(Value::as_str)
            .unwrap_or("");
        return Err(failure(
            format!("conversion webhook for {gvk} returned failure: {msg}"),
            def,
            &name,
        ));
    }
    let converted = response
        .get("convertedObjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if converted.len() != inputs.len() {
        return Err(failed(format!(
            "returned {} objects, expected {}",
            converted.len(),
            inputs.len()
        )));
    }
    let mut out = Vec::with_capacity(inputs.len());
    for (i, (input, mut c)) in inputs.iter().zip(converted).enumerate() {
        let invalid = |why: String| failed(format!("invalid converted object at index {i}: {why}"));
        let got = c.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if got != api_version {
            return Err(invalid(format!(
                "expected apiVersion {api_version:?}, got {got:?}"
            )));
        }
        let kind = c.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind != def.kind {
            return Err(invalid(format!(
                "expected kind {:?}, got {kind:?}",
                def.kind
            )));
        }
        if !c.is_object() {
            return Err(invalid("not an object".into()));
        }
        restore_meta(input, &mut c);
        out.push(c);
    }
    Ok(out)
}

/// kube's `restoreObjectMeta`: the original metadata comes back, with the labels and
/// annotations the webhook returned.
fn restore_meta(original: &Value, converted: &mut Value) {
    let mut meta = original.get("metadata").cloned().unwrap_or(json!({}));
    if let (Some(m), Some(new)) = (meta.as_object_mut(), converted.get("metadata")) {
        for f in ["labels", "annotations"] {
            match new.get(f).filter(|v| v.is_object()) {
                Some(v) => {
                    m.insert(f.into(), v.clone());
                }
                None => {
                    m.remove(f);
                }
            }
        }
    }
    converted["metadata"] = meta;
}
