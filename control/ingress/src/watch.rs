//! Keeps the routing table and certificates current: kube-rs reflectors over IngressClasses,
//! Ingresses, Services, EndpointSlices and Secrets; after each burst of changes the table is
//! rebuilt and swapped, new problems are logged once each (and posted as Warning Events on their
//! Ingress), and `status.loadBalancer` of our
//! Ingresses is written when it differs from the published address.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, reflector, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::routes::{Objects, Table};
use crate::state::{Certs, State};
use crate::tls::certified_key;

/// What the watcher needs to know beyond the objects.
#[derive(Debug, Clone)]
pub struct Settings {
    pub class: String,
    /// Written to `status.loadBalancer.ingress` (an IP, else a hostname); `None` writes nothing.
    pub publish_address: Option<String>,
}

struct Stores {
    classes: Store<IngressClass>,
    ingresses: Store<Ingress>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    secrets: Store<Secret>,
}

fn tagged<K: Send + 'static>(
    s: impl futures_util::Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    kind: &'static str,
) -> futures_util::stream::BoxStream<'static, (&'static str, bool, Option<String>)> {
    s.map(move |ev| match ev {
        Ok(Event::InitDone) => (kind, true, None),
        Ok(_) => (kind, false, None),
        Err(e) => (kind, false, Some(e.to_string())),
    })
    .boxed()
}

pub async fn run(
    client: Client,
    state: Arc<State>,
    settings: Settings,
    synced: watch::Sender<bool>,
) {
    let cfg = watcher::Config::default();
    let (classes, w1) = reflector::store::<IngressClass>();
    let (ingresses, w2) = reflector::store::<Ingress>();
    let (services, w3) = reflector::store::<Service>();
    let (slices, w4) = reflector::store::<EndpointSlice>();
    let (secrets, w5) = reflector::store::<Secret>();
    let c = &client;
    // API servers before networking.k8s.io/v1 IngressClass (kube < 1.19) do not serve it: probe
    // once and fall back to matching the class name.
    let classes_served = match Api::<IngressClass>::all(c.clone())
        .list(&kube::api::ListParams::default().limit(1))
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 404 => {
            info!("the API server does not serve networking.k8s.io/v1 IngressClass; Ingresses are matched by class name only");
            false
        }
        _ => true,
    };
    let mut streams = vec![
        tagged(
            reflector(
                w1,
                watcher(Api::<IngressClass>::all(c.clone()), cfg.clone()).default_backoff(),
            ),
            "ingressclasses",
        ),
        tagged(
            reflector(
                w2,
                watcher(Api::<Ingress>::all(c.clone()), cfg.clone()).default_backoff(),
            ),
            "ingresses",
        ),
        tagged(
            reflector(
                w3,
                watcher(Api::<Service>::all(c.clone()), cfg.clone()).default_backoff(),
            ),
            "services",
        ),
        tagged(
            reflector(
                w4,
                watcher(Api::<EndpointSlice>::all(c.clone()), cfg.clone()).default_backoff(),
            ),
            "endpointslices",
        ),
        tagged(
            reflector(
                w5,
                // Only TLS Secrets: the others are none of our business.
                watcher(
                    Api::<Secret>::all(c.clone()),
                    cfg.clone().fields("type=kubernetes.io/tls"),
                )
                .default_backoff(),
            ),
            "secrets",
        ),
    ];
    let mut wanted = streams.len();
    if !classes_served {
        drop(streams.remove(0));
        wanted -= 1;
    }
    let mut events = futures_util::stream::select_all(streams);
    let stores = Stores {
        classes,
        ingresses,
        services,
        slices,
        secrets,
    };
    let mut listed: HashSet<&'static str> = HashSet::new();
    let mut reported: HashSet<String> = HashSet::new();
    while let Some(first) = events.next().await {
        let mut note = |(kind, done, err): (&'static str, bool, Option<String>)| {
            if done {
                listed.insert(kind);
            }
            if let Some(e) = err {
                warn!(watcher = kind, error = %e, "watch failed; retrying with backoff");
            }
        };
        note(first);
        while let Some(Some(ev)) = events.next().now_or_never() {
            note(ev);
        }
        if listed.len() < wanted {
            continue;
        }
        let (table, certs) = build(&stores, &settings.class, classes_served);
        let now: HashSet<String> = table.problems.iter().cloned().collect();
        for p in now.difference(&reported) {
            warn!(problem = %p, "ingress configuration problem; the rest keeps working");
            crate::events::post(&client, &stores.ingresses, p).await;
        }
        reported = now;
        let ours = table.ingresses.clone();
        state.replace(table, certs);
        if !*synced.borrow() {
            info!(ingresses = ours.len(), "routes synced");
            let _ = synced.send(true);
        }
        if let Some(addr) = &settings.publish_address {
            write_status(&client, &stores.ingresses, &ours, addr).await;
        }
    }
}

fn build(s: &Stores, class: &str, classes_served: bool) -> (Table, Certs) {
    let (classes, ingresses, services, slices, secrets) = (
        s.classes.state(),
        s.ingresses.state(),
        s.services.state(),
        s.slices.state(),
        s.secrets.state(),
    );
    let mut table = Table::build(&Objects {
        class,
        classes: classes_served.then(|| classes.iter().map(|a| a.as_ref()).collect()),
        ingresses: ingresses.iter().map(|a| a.as_ref()).collect(),
        services: services.iter().map(|a| a.as_ref()).collect(),
        slices: slices.iter().map(|a| a.as_ref()).collect(),
    });
    let mut certs = Certs::default();
    for t in table.tls.clone() {
        let secret = secrets.iter().find(|s| {
            s.metadata.namespace.as_deref() == Some(&t.namespace)
                && s.metadata.name.as_deref() == Some(&t.secret)
        });
        let Some(secret) = secret else {
            table.problems.push(format!(
                "ingress {}/{}: tls secret {}/{} for host {} not found; HTTPS for that host has no certificate",
                t.namespace, t.ingress, t.namespace, t.secret, t.host
            ));
            continue;
        };
        let data = secret.data.clone().unwrap_or_default();
        let (Some(crt), Some(key)) = (data.get("tls.crt"), data.get("tls.key")) else {
            table.problems.push(format!(
                "ingress {}/{}: tls secret {}/{} lacks tls.crt or tls.key",
                t.namespace, t.ingress, t.namespace, t.secret
            ));
            continue;
        };
        match certified_key(&crt.0, &key.0) {
            Ok(ck) => {
                certs
                    .by_host
                    .entry(t.host.to_ascii_lowercase())
                    .or_insert_with(|| Arc::new(ck));
            }
            Err(e) => table.problems.push(format!(
                "ingress {}/{}: tls secret {}/{}: {e}",
                t.namespace, t.ingress, t.namespace, t.secret
            )),
        }
    }
    (table, certs)
}

/// Sets `status.loadBalancer.ingress` of our Ingresses to the published address where it differs.
async fn write_status(
    client: &Client,
    store: &Store<Ingress>,
    ours: &[(String, String)],
    addr: &str,
) {
    let entry = if addr.parse::<std::net::IpAddr>().is_ok() {
        json!({"ip": addr})
    } else {
        json!({"hostname": addr})
    };
    for (ns, name) in ours {
        let Some(ing) = store.get(&reflector::ObjectRef::new(name).within(ns)) else {
            continue;
        };
        let current = ing
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|v| serde_json::to_value(v).unwrap_or_default());
        if current == Some(json!([entry.clone()])) {
            continue;
        }
        let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
        let patch = json!({"status": {"loadBalancer": {"ingress": [entry.clone()]}}});
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            warn!(ingress = %format!("{ns}/{name}"), error = %e, "write ingress status");
        }
    }
}
