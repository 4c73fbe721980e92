//! WATCH: newline-delimited JSON events from a resourceVersion. Unset or "0" starts with the
//! current state as synthetic ADDED events; N streams the changes after N; a compacted N gets an
//! ERROR event with a 410 Status. Selector transitions become ADDED/DELETED like kube-apiserver.

use std::time::Duration;

use bytes::Bytes;
use pea_control_store::{EventKind, ListOptions, StoreError};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::api::{Ctx, Reply};
use crate::objects;
use crate::status::ApiError;
use crate::table;
use crate::verbs::list::{parse_rv, selectors};

/// The default lifetime of a watch without timeoutSeconds.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn line(kind: &str, object: Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

pub async fn handle(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let (labels, mut fields) = selectors(ctx)?;
    // A watch of one named object is a watch with a metadata.name field selector.
    if let Some(name) = &ctx.info.name {
        fields = crate::selectors::FieldSelector::parse(
            &format!(
                "metadata.name={name}{}",
                ctx.query
                    .get("fieldSelector")
                    .map(|f| format!(",{f}"))
                    .unwrap_or_default()
            ),
            ctx.def.kind,
        )
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    let prefix = ctx.def.prefix(ctx.namespace());
    let store = ctx.api.store.clone();
    let timeout = match ctx.query.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid timeoutSeconds {t:?}")))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let as_table = table::wants_table(ctx.accept);
    let include = ctx
        .query
        .get("includeObject")
        .unwrap_or("Metadata")
        .to_string();
    let kind = ctx.def.kind;
    let api_version = ctx.def.api_version();
    let clock = ctx.api.clock.clone();
    let render = move |obj: Value| -> Value {
        if as_table {
            let rv = objects::meta_str(&obj, "resourceVersion").map(str::to_string);
            table::table(kind, &[obj], rv, None, clock(), &include)
        } else {
            obj
        }
    };

    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let (start, initial) = match parse_rv(ctx.query.get("resourceVersion"))? {
        Some(rv) => (rv, Vec::new()),
        None => {
            let page = store
                .list(&prefix, &ListOptions::default())
                .await
                .map_err(|e| ApiError::from_store(e, ctx.def.group, ctx.def.plural, ""))?;
            let mut objs = Vec::new();
            for kv in &page.items {
                let o = objects::decode(kv)?;
                if labels.matches(&o) && fields.matches(&o) {
                    objs.push(o);
                }
            }
            (page.revision, objs)
        }
    };
    let mut watch = match store.watch(&prefix, start).await {
        Ok(w) => w,
        Err(StoreError::Compacted { .. }) => {
            let status = ApiError::Gone(format!("too old resource version: {start}")).to_status();
            let _ = tx.send(line("ERROR", status)).await;
            return Ok(Reply::Stream(rx));
        }
        Err(e) => return Err(ApiError::from_store(e, ctx.def.group, ctx.def.plural, "")),
    };
    let interval = ctx.api.bookmark_interval;
    let unfiltered = labels.is_empty() && fields.is_empty();
    tokio::spawn(async move {
        for o in initial {
            if tx.send(line("ADDED", render(o))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        let mut last = start;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    let mark = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last.to_string()}});
                    if tx.send(line("BOOKMARK", mark)).await.is_err() {
                        return;
                    }
                }
                ev = watch.next() => {
                    let ev = match ev {
                        Some(Ok(ev)) => ev,
                        Some(Err(StoreError::Compacted { requested, .. })) => {
                            let status = ApiError::Gone(format!("too old resource version: {requested}")).to_status();
                            let _ = tx.send(line("ERROR", status)).await;
                            return;
                        }
                        Some(Err(e)) => {
                            let status = ApiError::Internal(e.to_string()).to_status();
                            let _ = tx.send(line("ERROR", status)).await;
                            return;
                        }
                        None => return,
                    };
                    last = ev.revision();
                    let Ok(mut obj) = serde_json::from_slice::<Value>(&ev.kv.value) else { continue };
                    objects::set_resource_version(&mut obj, ev.revision());
                    let now_matches = labels.matches(&obj) && fields.matches(&obj);
                    // Without selectors every previous value matched: skip decoding it.
                    let was_matching = match &ev.prev {
                        None => None,
                        Some(_) if unfiltered => Some(true),
                        Some(p) => serde_json::from_slice::<Value>(&p.value)
                            .ok()
                            .map(|p| labels.matches(&p) && fields.matches(&p)),
                    };
                    let kind = match (ev.kind, was_matching, now_matches) {
                        (EventKind::Delete, Some(true), _) => "DELETED",
                        (EventKind::Delete, _, _) => continue,
                        (EventKind::Put, None | Some(false), true) => "ADDED",
                        (EventKind::Put, Some(true), true) => "MODIFIED",
                        (EventKind::Put, Some(true), false) => "DELETED",
                        (EventKind::Put, _, false) => continue,
                    };
                    if tx.send(line(kind, render(obj))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(Reply::Stream(rx))
}
