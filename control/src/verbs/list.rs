//! LIST: a page of objects at one revision, filtered by label and field selectors.

use base64::Engine;
use pea_control_store::{ListOptions, StoreError};
use serde_json::{json, Value};

use crate::api::{Ctx, Reply};
use crate::objects;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::table;

/// The selectors of a list or watch request.
pub fn selectors(ctx: &Ctx<'_>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("invalid labelSelector: {e}")))?;
    let fields = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or(""), ctx.def.kind)
        .map_err(|e| ApiError::BadRequest(format!("invalid fieldSelector: {e}")))?;
    Ok((labels, fields))
}

/// Parses a resourceVersion parameter ("" and "0" mean none).
pub fn parse_rv(s: Option<&str>) -> Result<Option<i64>, ApiError> {
    match s {
        None | Some("0") => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest(format!("invalid resource version {v:?}"))),
    }
}

fn encode_continue(rv: i64, last_key: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": last_key}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str, prefix: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::BadRequest(format!("continue key is not valid: {token:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v["rv"].as_i64().filter(|r| *r > 0).ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?.to_string();
    // The key must stay inside the listed prefix: a token cannot read another resource.
    if !start.starts_with(prefix) {
        return Err(bad());
    }
    Ok((rv, start))
}

/// Largest page read from the store in one call.
const STORE_CHUNK: usize = 1000;

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let (labels, fields) = selectors(ctx)?;
    let prefix = ctx.def.prefix(ctx.namespace());
    let limit = match ctx.query.get("limit") {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::BadRequest(format!("invalid limit {l:?}")))?,
        )
        .filter(|l| *l > 0),
        None => None,
    };
    let (mut revision, mut start_after) = match ctx.query.get("continue") {
        Some(token) => {
            let (rv, start) = decode_continue(token, &prefix)?;
            (Some(rv), Some(start))
        }
        None => {
            let rv = parse_rv(ctx.query.get("resourceVersion"))?;
            // Only an Exact match reads the past; NotOlderThan (the default) reads the newest.
            let exact = ctx.query.get("resourceVersionMatch") == Some("Exact");
            (rv.filter(|_| exact), None)
        }
    };
    let mut items = Vec::new();
    let mut list_rv;
    let mut cont = None;
    loop {
        // Read the store in bounded chunks at one revision, whatever the client's limit.
        let want = Some(
            limit
                .map(|l| l - items.len())
                .unwrap_or(STORE_CHUNK)
                .min(STORE_CHUNK),
        );
        let page = ctx
            .api
            .store
            .list(&prefix, &ListOptions { revision, limit: want, start_after: start_after.clone() })
            .await
            .map_err(|e| match e {
                StoreError::Compacted { .. } if ctx.query.get("continue").is_some() => ApiError::Gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                ),
                e => ApiError::from_store(e, ctx.def.group, ctx.def.plural, ""),
            })?;
        list_rv = page.revision;
        revision = Some(page.revision);
        let last = page.items.last().map(|k| k.key.clone());
        let mut decoded = Vec::with_capacity(page.items.len());
        for kv in &page.items {
            decoded.push(objects::decode(kv)?);
        }
        // Custom objects read at another version than stored (one conversion review a page).
        crate::crd::read_view(ctx.api, ctx.def, &mut decoded).await?;
        for obj in decoded {
            if labels.matches(&obj) && fields.matches(&obj) {
                items.push(obj);
            }
        }
        match (page.more, last) {
            (true, Some(last)) => {
                if limit.is_some_and(|l| items.len() >= l) {
                    cont = Some(encode_continue(page.revision, &last));
                    break;
                }
                start_after = Some(last);
            }
            _ => break,
        }
    }
    if table::wants_table(ctx.accept) {
        let include = ctx.query.get("includeObject").unwrap_or("Metadata");
        return Ok(Reply::json(
            200,
            table::table_for(
                ctx.def,
                &items,
                Some(list_rv.to_string()),
                cont,
                ctx.now(),
                include,
            ),
        ));
    }
    Ok(Reply::json(
        200,
        objects::list_object(
            &ctx.def.api_version(),
            &ctx.def.list_kind(),
            items,
            list_rv,
            cont,
        ),
    ))
}
