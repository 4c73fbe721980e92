//! Keeps the [`Snapshot`] current: kube-rs reflectors over Namespaces, Services and
//! EndpointSlices (list+watch with backoff, against any API server), and one task that rebuilds
//! the snapshot after each burst of changes. Until all three have listed once the snapshot says
//! `synced: false` and cluster names get SERVFAIL.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, reflector, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cluster::Snapshot;
use crate::handler::State;

/// Which watcher an event came from.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Namespaces = 0,
    Services = 1,
    Slices = 2,
}

fn now_serial() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or_default()
}

/// Runs until the watch streams end (never, in practice: the watchers retry with backoff).
/// `synced` turns true once the first full snapshot is in place.
pub async fn run(client: Client, state: Arc<State>, synced: watch::Sender<bool>) {
    let (namespaces, ns_writer) = reflector::store::<Namespace>();
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let cfg = watcher::Config::default();
    type Tagged = futures_util::future::Ready<(Kind, bool, Option<String>)>;
    fn tag<K>(kind: Kind) -> impl FnMut(Result<Event<K>, watcher::Error>) -> Tagged {
        move |ev| {
            futures_util::future::ready(match ev {
                Ok(Event::InitDone) => (kind, true, None),
                Ok(_) => (kind, false, None),
                Err(e) => (kind, false, Some(e.to_string())),
            })
        }
    }
    let ns_stream = reflector(
        ns_writer,
        watcher(Api::<Namespace>::all(client.clone()), cfg.clone()).default_backoff(),
    )
    .then(tag(Kind::Namespaces));
    let svc_stream = reflector(
        svc_writer,
        watcher(Api::<Service>::all(client.clone()), cfg.clone()).default_backoff(),
    )
    .then(tag(Kind::Services));
    let slice_stream = reflector(
        slice_writer,
        watcher(Api::<EndpointSlice>::all(client), cfg).default_backoff(),
    )
    .then(tag(Kind::Slices));
    let mut events = futures_util::stream::select_all([
        ns_stream.boxed(),
        svc_stream.boxed(),
        slice_stream.boxed(),
    ]);

    let mut listed = [false; 3];
    while let Some(first) = events.next().await {
        let mut note = |(kind, init_done, err): (Kind, bool, Option<String>)| {
            if init_done {
                listed[kind as usize] = true;
            }
            if let Some(e) = err {
                warn!(watcher = ?kind, error = %e, "watch failed; retrying with backoff");
            }
        };
        note(first);
        // Coalesce a burst (an initial list, a rollout) into one rebuild.
        while let Some(Some(ev)) = events.next().now_or_never() {
            note(ev);
        }
        let all_listed = listed.iter().all(|l| *l);
        if !all_listed {
            continue;
        }
        rebuild(&state, &namespaces, &services, &slices);
        if !*synced.borrow() {
            info!(
                services = services.len(),
                endpointslices = slices.len(),
                "cluster state synced"
            );
            let _ = synced.send(true);
        }
    }
}

fn rebuild(
    state: &State,
    namespaces: &Store<Namespace>,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
) {
    let (ns, svcs, eps) = (namespaces.state(), services.state(), slices.state());
    let snap = Snapshot::build(
        ns.iter().map(|a| a.as_ref()),
        svcs.iter().map(|a| a.as_ref()),
        eps.iter().map(|a| a.as_ref()),
        now_serial(),
        true,
    );
    state.set_snapshot(snap);
    state
        .metrics
        .snapshot_rebuilds
        .fetch_add(1, Ordering::Relaxed);
}
