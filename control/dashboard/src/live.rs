//! Live pages: `GET /live?page=PATH` is a Server-Sent Events stream that keeps one page's main
//! part current. The server watches what the page shows, as the logged-in user (kube's
//! [`watcher`]: list, then watch from the list's resourceVersion with bookmarks, re-listing
//! when the server answers 410 Gone), and after a change (debounced) renders the page's main
//! part again and pushes it as an `event: main` whose data is the escaped HTML the page would
//! have shown on reload. The script swaps it in; nothing is polled.
//!
//! Bounds: a stream holds one of the session's stream slots ([`crate::StreamSlot`]), watches at
//! most the handful of collections its page lists, ends after [`LIVE_LIFETIME`] (the browser's
//! EventSource reconnects, re-listing) and at once on logout. A watch the API server refuses
//! (401/403) stops and says so on the page instead of retrying.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use crate::api::{self, Kind};
use crate::views::{self, Ctx, Out};
use crate::{sse, Body, StreamSlot};

/// A live stream ends after this long; the browser reconnects and the watches start over.
pub const LIVE_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Changes closer together than this are rendered once.
const DEBOUNCE: Duration = Duration::from_millis(250);
/// A comment is sent this often, so a closed connection is noticed without changes.
const PING: Duration = Duration::from_secs(15);
/// How often a drain page shows the drain's progress.
const DRAIN_TICK: Duration = Duration::from_secs(1);

/// One collection a page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub kind: Kind,
    /// None: all namespaces (or a cluster-scoped kind).
    pub ns: Option<String>,
    pub fields: Option<String>,
}

fn w(kind: Kind, ns: Option<&str>, fields: Option<String>) -> Watch {
    Watch {
        kind,
        ns: ns.filter(|_| kind.namespaced).map(str::to_string),
        fields,
    }
}

/// What the page at `segs` (with its query) lists; empty for pages that are not live (forms,
/// YAML, logs, which stream on their own).
pub fn watches(segs: &[&str], query: &HashMap<String, String>) -> Vec<Watch> {
    let ns = query
        .get("ns")
        .map(String::as_str)
        .filter(|n| !n.is_empty());
    match segs {
        [] => vec![
            w(api::NODES, None, None),
            w(api::PODS, ns, None),
            w(api::EVENTS, ns, None),
            w(api::NAMESPACES, None, None),
        ],
        ["workloads"] => {
            let only = query.get("kind").map(String::as_str).unwrap_or("");
            api::WORKLOADS
                .iter()
                .filter(|k| only.is_empty() || k.plural == only)
                .map(|k| w(*k, ns, None))
                .collect()
        }
        ["network"] => [api::SERVICES, api::INGRESSES, api::ENDPOINTS]
            .iter()
            .map(|k| w(*k, ns, None))
            .collect(),
        ["config"] => [api::CONFIGMAPS, api::SECRETS]
            .iter()
            .map(|k| w(*k, ns, None))
            .collect(),
        _ => match views::object_route(segs) {
            Some((kind, _, name, "drain")) if kind == api::NODES => {
                vec![w(api::PODS, None, Some(format!("spec.nodeName={name}")))]
            }
            Some((kind, ns, name, "")) => {
                let ns = Some(ns);
                let mut v = vec![w(kind, ns, Some(format!("metadata.name={name}")))];
                if kind == api::NODES {
                    v.push(w(api::PODS, None, Some(format!("spec.nodeName={name}"))));
                } else if kind != api::PODS {
                    // Workloads and Services list the pods they select.
                    v.push(w(api::PODS, ns, None));
                }
                if kind.namespaced {
                    v.push(w(api::EVENTS, ns, None));
                }
                v
            }
            _ => Vec::new(),
        },
    }
}

/// kube's description of a served resource, for its dynamic client.
pub fn api_resource(kind: Kind) -> ApiResource {
    let gv = kind
        .prefix
        .strip_prefix("/apis/")
        .or_else(|| kind.prefix.strip_prefix("/api/"))
        .unwrap_or("v1");
    let (group, version) = gv.split_once('/').unwrap_or(("", gv));
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: gv.into(),
        kind: kind.kind.into(),
        plural: kind.plural.into(),
    }
}

/// What a watch task tells the stream.
enum Change {
    Changed,
    /// The watch failed (`true`: refused, and stopped).
    Failed(String, bool),
}

/// The live stream of the page `page` (its path after the prefix, with its query).
pub fn stream(base: &str, slot: StreamSlot, page: &str) -> hyper::Response<Body> {
    let (path, query) = page.split_once('?').unwrap_or((page, ""));
    let query: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(crate::percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let list = watches(&segs, &query);
    if list.is_empty() {
        return crate::plain(404, "this page has no live updates");
    }
    let (tx, response) = sse::channel();
    let base = base.to_string();
    let path = path.to_string();
    let span = tracing::info_span!("live", page = %path, watches = list.len());
    tokio::spawn(run(base, slot, path, query, segments, list, tx).instrument(span));
    response
}

#[allow(clippy::too_many_arguments)]
async fn run(
    base: String,
    slot: StreamSlot,
    path: String,
    query: HashMap<String, String>,
    segments: Vec<String>,
    list: Vec<Watch>,
    tx: mpsc::Sender<bytes::Bytes>,
) {
    let (changes_tx, mut changes) = mpsc::channel::<Change>(64);
    // Dropped (aborting every watch) when this function returns.
    let mut tasks = tokio::task::JoinSet::new();
    for wt in list {
        let ar = api_resource(wt.kind);
        let client = slot.session.api.client.clone();
        let dynapi: kube::Api<DynamicObject> = match &wt.ns {
            Some(ns) => kube::Api::namespaced_with(client, ns, &ar),
            None => kube::Api::all_with(client, &ar),
        };
        let mut cfg = watcher::Config::default();
        if let Some(f) = &wt.fields {
            cfg = cfg.fields(f);
        }
        let tx = changes_tx.clone();
        let plural = wt.kind.plural;
        tasks.spawn(async move {
            let mut s = watcher(dynapi, cfg).default_backoff().boxed();
            while let Some(ev) = s.next().await {
                let msg = match ev {
                    Ok(Event::Apply(_) | Event::Delete(_) | Event::InitDone) => Change::Changed,
                    Ok(_) => continue,
                    Err(e) => {
                        let refused = refused(&e);
                        Change::Failed(format!("watching {plural}: {e}"), refused)
                    }
                };
                let stop = matches!(msg, Change::Failed(_, true));
                if tx.send(msg).await.is_err() || stop {
                    return;
                }
            }
        });
    }
    drop(changes_tx);
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let mut ended = slot.session.ended.subscribe();
    let lifetime = slot.remaining().min(LIVE_LIFETIME);
    let deadline = tokio::time::sleep(lifetime);
    tokio::pin!(deadline);
    let mut ping = tokio::time::interval(PING);
    ping.tick().await;
    // Node and pod pages chart CPU/memory: the metrics API cannot be watched, so they are
    // re-rendered (sampled) on a timer as well.
    // A drain page shows the progress of a task that is not an API object: also on a timer.
    let tick = match views::object_route(&segs) {
        Some((k, _, _, "")) if k == api::PODS || k == api::NODES => {
            Some(crate::metrics::SAMPLE_EVERY)
        }
        Some((k, _, _, "drain")) if k == api::NODES => Some(DRAIN_TICK),
        _ => None,
    };
    let sampled = tick.is_some();
    let mut sample = tokio::time::interval(tick.unwrap_or(PING));
    sample.tick().await;
    let mut render_at: Option<Instant> = None;
    let mut last = String::new();
    let _ = tx.send(bytes::Bytes::from_static(b"retry: 3000\n\n")).await;
    loop {
        let due = render_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            c = changes.recv() => match c {
                Some(Change::Changed) => {
                    render_at.get_or_insert_with(|| Instant::now() + DEBOUNCE);
                }
                // A dropped watch is resumed by kube's watcher (with backoff) and needs no word
                // on the page; a refused one has stopped, and the page says so.
                Some(Change::Failed(msg, false)) => {
                    tracing::debug!(error = %msg, "live watch interrupted; resuming");
                }
                Some(Change::Failed(msg, true)) => {
                    tracing::info!(error = %msg, "live watch refused");
                    if tx.send(sse::event("status", &format!("Not live: {msg}"))).await.is_err() {
                        break;
                    }
                }
                None => {
                    let _ = tx.send(sse::event("end", "every watch of this page was refused")).await;
                    break;
                }
            },
            _ = tokio::time::sleep_until(due), if render_at.is_some() => {
                render_at = None;
                let html = render(&base, &slot, &path, &query, &segs).await;
                let ev = if !html.is_empty() && html != last {
                    last = html;
                    sse::event("main", &last)
                } else {
                    sse::event("status", "live")
                };
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
            _ = sample.tick(), if sampled => {
                render_at.get_or_insert_with(Instant::now);
            }
            _ = ping.tick() => {
                if tx.send(sse::ping()).await.is_err() {
                    break;
                }
            }
            _ = ended.changed() => {
                let _ = tx.send(sse::event("end", "logged out")).await;
                break;
            }
            _ = &mut deadline => break,
            _ = tx.closed() => break,
        }
    }
    tasks.shutdown().await;
    tracing::debug!("live stream ended");
}

fn refused(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 401 || s.code == 403,
        _ => false,
    }
}

/// The page's main part as a reload would show it.
async fn render(
    base: &str,
    slot: &StreamSlot,
    path: &str,
    query: &HashMap<String, String>,
    segs: &[&str],
) -> String {
    let ctx = Ctx {
        base,
        api: &slot.session.api,
        csrf: &slot.session.csrf,
        samples: &slot.session.samples,
        drains: &slot.session.drains,
        path: path.to_string(),
        query: query.clone(),
        form: HashMap::new(),
        fragment: true,
    };
    match views::get(&ctx, segs).await {
        Out::Page(p) => p.body,
        Out::Redirect(_) | Out::Text(..) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pages_watch_what_they_show() {
        let wl = watches(&["workloads"], &q(&[("ns", "default")]));
        assert_eq!(wl.len(), 7);
        assert!(wl.iter().all(|w| w.ns.as_deref() == Some("default")));
        let one = watches(&["workloads"], &q(&[("kind", "pods")]));
        assert_eq!(one, vec![w(api::PODS, None, None)]);
        let node = watches(&["nodes", "n1"], &q(&[]));
        assert_eq!(
            node,
            vec![
                w(api::NODES, None, Some("metadata.name=n1".into())),
                w(api::PODS, None, Some("spec.nodeName=n1".into()))
            ]
        );
        let dep = watches(&["ns", "a", "deployments", "web"], &q(&[]));
        assert_eq!(dep.len(), 3);
        assert!(watches(&["ns", "a", "pods", "p", "yaml"], &q(&[])).is_empty());
        assert!(watches(&["ns", "a", "pods", "p", "logs"], &q(&[])).is_empty());
    }

    #[test]
    fn api_resources() {
        let d = api_resource(api::DEPLOYMENTS);
        assert_eq!((d.group.as_str(), d.version.as_str()), ("apps", "v1"));
        assert_eq!(d.api_version, "apps/v1");
        let p = api_resource(api::PODS);
        assert_eq!((p.group.as_str(), p.api_version.as_str()), ("", "v1"));
    }
}
