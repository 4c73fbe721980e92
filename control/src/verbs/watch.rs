//! WATCH: newline-delimited JSON events from a resourceVersion. Unset or "0" starts with the
//! current state as synthetic ADDED events; N streams the changes after N; a compacted N gets an
//! ERROR event with a 410 Status. Selector transitions become ADDED/DELETED like kube-apiserver.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pea_control_store::{EventKind, ListOptions, StoreError};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::api::{Ctx, Reply};
use crate::objects;
use crate::status::ApiError;
use crate::table;
use crate::verbs::list::{parse_rv, selectors};
use crate::watch_cache::Decoded;

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
    let view_def = ctx.def.clone();
    let view_needed = ctx
        .def
        .custom
        .as_ref()
        .is_some_and(|c| c.has_defaults || c.storage_version != ctx.def.version);
    let render = move |mut obj: Value| -> Value {
        crate::crd::view(&view_def, &mut obj);
        if as_table {
            let rv = objects::meta_str(&obj, "resourceVersion").map(str::to_string);
            table::table_for(&view_def, &[obj], rv, None, clock(), &include)
        } else {
            obj
        }
    };

    let (tx, rx) = mpsc::channel::<Bytes>(256);
    // Streaming lists (sendInitialEvents): the current state as ADDED events, then a BOOKMARK
    // annotated k8s.io/initial-events-end; kube-apiserver's rules for the parameters apply.
    let initial_events = ctx.query.flag("sendInitialEvents");
    if initial_events {
        if !bookmarks {
            return Err(ApiError::BadRequest(
                "sendInitialEvents requires allowWatchBookmarks=true".into(),
            ));
        }
        if ctx.query.get("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError::BadRequest(
                "sendInitialEvents requires resourceVersionMatch=NotOlderThan".into(),
            ));
        }
    }
    let requested = parse_rv(ctx.query.get("resourceVersion"))?;
    let (start, mut initial) = match requested.filter(|_| !initial_events) {
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
    // Custom objects stored in another version go through the CRD's conversion webhook.
    let converter =
        crate::crd::conversion::uses_webhook(ctx.def).then(|| (ctx.api.clone(), ctx.def.clone()));
    if let Some((api, def)) = &converter {
        crate::crd::conversion::convert(api, def, &mut initial, &api_version).await?;
    }
    // Prefer the shared watch cache; fall back to a store watch of our own.
    let resource_prefix = ctx.def.prefix(None);
    let mut source = match ctx
        .api
        .watch_cache
        .subscribe(&store, &resource_prefix, start)
        .await
    {
        Some((backlog, rx)) => Source::Cache {
            backlog: backlog.into(),
            rx,
            prefix: prefix.clone(),
        },
        None => match store.watch(&prefix, start).await {
            Ok(w) => Source::Store(w),
            Err(StoreError::Compacted { .. }) => {
                let status =
                    ApiError::Gone(format!("too old resource version: {start}")).to_status();
                let _ = tx.send(line("ERROR", status)).await;
                return Ok(Reply::Stream(rx));
            }
            Err(e) => return Err(ApiError::from_store(e, ctx.def.group, ctx.def.plural, "")),
        },
    };
    let interval = ctx.api.bookmark_interval;
    let unfiltered = labels.is_empty() && fields.is_empty();
    tokio::spawn(async move {
        for o in initial {
            if tx.send(line("ADDED", render(o))).await.is_err() {
                return;
            }
        }
        if initial_events {
            let mark = json!({"kind": kind, "apiVersion": api_version, "metadata": {
                "resourceVersion": start.to_string(),
                "annotations": {"k8s.io/initial-events-end": "true"}}});
            if tx.send(line("BOOKMARK", mark)).await.is_err() {
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
                ev = source.next() => {
                    let ev = match ev {
                        Some(Ok(ev)) => ev,
                        Some(Err(e)) => {
                            let _ = tx.send(line("ERROR", e.to_status())).await;
                            return;
                        }
                        None => return,
                    };
                    if ev.rev <= last {
                        continue;
                    }
                    last = ev.rev;
                    let now_matches = unfiltered || (labels.matches(&ev.obj) && fields.matches(&ev.obj));
                    // Without selectors every previous value matched.
                    let was_matching = ev.prev.as_ref().map(|p| unfiltered || (labels.matches(p) && fields.matches(p)));
                    let kind = match (ev.kind, was_matching, now_matches) {
                        (EventKind::Delete, Some(true), _) => "DELETED",
                        (EventKind::Delete, _, _) => continue,
                        (EventKind::Put, None | Some(false), true) => "ADDED",
                        (EventKind::Put, Some(true), true) => "MODIFIED",
                        (EventKind::Put, Some(true), false) => "DELETED",
                        (EventKind::Put, _, false) => continue,
                    };
                    // A custom resource read at another version than stored is rewritten.
                    let out = if as_table || view_needed {
                        let mut obj = [ev.obj.clone()];
                        if let Some((api, def)) = &converter {
                            let done = crate::crd::conversion::convert(api, def, &mut obj, &api_version).await;
                            if let Err(e) = done {
                                let _ = tx.send(line("ERROR", e.to_status())).await;
                                return;
                            }
                        }
                        let [obj] = obj;
                        line(kind, render(obj))
                    } else {
                        // The object was serialised once for every watcher.
                        let mut b = Vec::with_capacity(ev.json.len() + 32);
                        b.extend_from_slice(b"{\"type\":\"");
                        b.extend_from_slice(kind.as_bytes());
                        b.extend_from_slice(b"\",\"object\":");
                        b.extend_from_slice(&ev.json);
                        b.extend_from_slice(b"}\n");
                        Bytes::from(b)
                    };
                    if tx.send(out).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(Reply::Stream(rx))
}

/// Where a watch's events come from.
enum Source {
    Cache {
        backlog: VecDeque<Arc<Decoded>>,
        rx: broadcast::Receiver<Arc<Decoded>>,
        /// Only keys under this prefix (e.g. one namespace) are for this watcher.
        prefix: String,
    },
    Store(pea_control_store::Watch),
}

impl Source {
    async fn next(&mut self) -> Option<Result<Arc<Decoded>, ApiError>> {
        match self {
            Source::Cache {
                backlog,
                rx,
                prefix,
            } => loop {
                let ev = match backlog.pop_front() {
                    Some(e) => e,
                    None => match rx.recv().await {
                        Ok(e) => e,
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            return Some(Err(ApiError::Gone(
                                "watch fell behind the event stream; list again".into(),
                            )))
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                };
                if ev.key.starts_with(prefix.as_str()) {
                    return Some(Ok(ev));
                }
            },
            Source::Store(w) => loop {
                return match w.next().await? {
                    Ok(ev) => match Decoded::from_event(&ev) {
                        Some(d) => Some(Ok(Arc::new(d))),
                        None => continue,
                    },
                    Err(StoreError::Compacted { requested, .. }) => Some(Err(ApiError::Gone(
                        format!("too old resource version: {requested}"),
                    ))),
                    Err(e) => Some(Err(ApiError::Internal(e.to_string()))),
                };
            },
        }
    }
}
