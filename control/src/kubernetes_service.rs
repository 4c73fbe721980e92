//! The `default/kubernetes` Service, as kube-apiserver's bootstrap controller keeps it: the first
//! address of the service range, port 443 (`https`) to the API server's secure port, and an
//! Endpoints + EndpointSlice listing every live API server's advertise address, so in-cluster
//! clients (`KUBERNETES_SERVICE_HOST`, `kubernetes.default.svc`) reach the API.
//!
//! Several API servers may share one etcd, so the endpoints come from "master leases" as in
//! kube's lease reconciler: each server refreshes `/registry/masterleases/<ip>` (its expiry, in
//! the record) every [`INTERVAL`]; records past their expiry are dropped, and the endpoints are
//! the rest. A server without a usable advertise address (listening on loopback or a wildcard
//! without `--advertise-address`) keeps the Service but adds no endpoint: a loopback address
//! means nothing inside a pod.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, UNIX_EPOCH};

use pea_control_store::StoreError;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::Api;
use crate::objects;
use crate::status::ApiError;

pub const NAMESPACE: &str = "default";
pub const NAME: &str = "kubernetes";
/// kube's `--master-lease-ttl`-style lifetime of one server's record.
const LEASE_TTL: Duration = Duration::from_secs(15);
/// kube-apiserver reconciles the Service and its endpoints every 10 s.
pub const INTERVAL: Duration = Duration::from_secs(10);
const LEASE_PREFIX: &str = "/registry/masterleases/";
/// The Endpoints object is written here; the EndpointSlice mirroring controller must not copy it.
const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";

/// What this server publishes.
#[derive(Debug, Clone, Copy)]
pub struct Publish {
    /// The address other nodes and pods reach this server at; `None` publishes no endpoint.
    pub advertise: Option<Ipv4Addr>,
    /// The secure port (the Service's targetPort and the endpoints' port).
    pub port: u16,
}

impl Publish {
    /// kube-apiserver's `--advertise-address`, else the listen address when pods can reach it.
    pub fn new(advertise: Option<IpAddr>, listen: std::net::SocketAddr) -> Self {
        let usable = |ip: IpAddr| match ip {
            IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() => Some(v4),
            _ => None,
        };
        Self {
            advertise: advertise.or(Some(listen.ip())).and_then(usable),
            port: listen.port(),
        }
    }
}

/// One reconcile: the Service, this server's lease, and the endpoints from the live leases.
pub async fn reconcile(api: &Api, publish: Publish) -> Result<(), ApiError> {
    ensure_service(api, publish.port).await?;
    let now = unix_now(api);
    if let Some(ip) = publish.advertise {
        write_lease(api, ip, now + LEASE_TTL.as_secs()).await?;
    }
    let live = live_leases(api, now).await?;
    ensure_endpoints(api, &live, publish.port).await
}

/// Reconciles every [`INTERVAL`] until `stop`; then gives this server's lease back so its
/// address leaves the endpoints at once (kube's RemoveEndpoints on shutdown).
pub async fn run(api: std::sync::Arc<Api>, publish: Publish, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = stop.changed() => break,
        }
        if let Err(e) = reconcile(&api, publish).await {
            tracing::warn!(error = %e, "reconciling the default/kubernetes service");
        }
    }
    if let Some(ip) = publish.advertise {
        let _ = api.store.delete(&lease_key(ip), None).await;
        let live = live_leases(&api, unix_now(&api)).await.unwrap_or_default();
        if let Err(e) = ensure_endpoints(&api, &live, publish.port).await {
            tracing::warn!(error = %e, "removing this server from default/kubernetes");
        }
    }
}

fn unix_now(api: &Api) -> u64 {
    (api.clock)()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn lease_key(ip: Ipv4Addr) -> String {
    format!("{LEASE_PREFIX}{ip}")
}

async fn write_lease(api: &Api, ip: Ipv4Addr, expires: u64) -> Result<(), ApiError> {
    let key = lease_key(ip);
    let value = expires.to_string().into_bytes();
    let err = |e: StoreError| ApiError::Internal(format!("writing {key}: {e}"));
    match api.store.get(&key).await.map_err(err)? {
        (Some(kv), _) => api.store.update(&key, value, kv.mod_revision).await,
        (None, _) => api.store.create(&key, value).await,
    }
    .map(|_| ())
    .or_else(|e| match e {
        // Another writer of the same address (a restart racing its predecessor): theirs stands
        // for this round.
        StoreError::Conflict { .. } | StoreError::AlreadyExists { .. } => Ok(()),
        e => Err(err(e)),
    })
}

/// The addresses whose lease has not expired, sorted; expired records are deleted.
async fn live_leases(api: &Api, now: u64) -> Result<Vec<Ipv4Addr>, ApiError> {
    let page = api
        .store
        .list(LEASE_PREFIX, &Default::default())
        .await
        .map_err(|e| ApiError::Internal(format!("listing {LEASE_PREFIX}: {e}")))?;
    let mut live = Vec::new();
    for kv in page.items {
        let ip = kv.key[LEASE_PREFIX.len()..].parse::<Ipv4Addr>();
        let expires = std::str::from_utf8(&kv.value)
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        match (ip, expires) {
            (Ok(ip), Some(t)) if t > now => live.push(ip),
            _ => {
                let _ = api.store.delete(&kv.key, Some(kv.mod_revision)).await;
            }
        }
    }
    live.sort();
    live.dedup();
    Ok(live)
}

fn service_ports(port: u16) -> Value {
    json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}])
}

/// Creates the Service at the range's first address, or puts its ports and type back.
async fn ensure_service(api: &Api, port: u16) -> Result<(), ApiError> {
    let def = api
        .resources
        .find("", "v1", "services")
        .ok_or_else(|| ApiError::Internal("services not served".into()))?;
    let key = def.key(Some(NAMESPACE), NAME);
    let err = |e: StoreError| ApiError::from_store(e, "", "services", NAME);
    if let (Some(kv), _) = api.store.get(&key).await.map_err(err)? {
        let mut svc = objects::decode(&kv)?;
        if svc["spec"]["ports"] == service_ports(port) && svc["spec"]["type"] == "ClusterIP" {
            return Ok(());
        }
        svc["spec"]["ports"] = service_ports(port);
        svc["spec"]["type"] = json!("ClusterIP");
        return match api
            .store
            .update(&key, objects::encode(&svc), kv.mod_revision)
            .await
        {
            // Someone else wrote it meanwhile: the next round looks again.
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(err(e)),
        };
    }
    let ip = api.service_cidr.first_host();
    let mut svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
            "uid": objects::new_uid(),
            "creationTimestamp": objects::rfc3339((api.clock)()),
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip.to_string(), "clusterIPs": [ip.to_string()],
            "ports": service_ports(port), "sessionAffinity": "None"},
    });
    crate::defaults::apply("Service", &mut svc);
    let held = crate::service_alloc::allocate_new(api, "Service", &mut svc).await?;
    match api.store.create(&key, objects::encode(&svc)).await {
        Ok(_) => Ok(()),
        Err(e) => {
            held.release(api.store.as_ref(), &svc).await;
            match e {
                StoreError::AlreadyExists { .. } => Ok(()),
                e => Err(err(e)),
            }
        }
    }
}

/// Writes the Endpoints and the EndpointSlice so they list exactly `live` on `port`.
async fn ensure_endpoints(api: &Api, live: &[Ipv4Addr], port: u16) -> Result<(), ApiError> {
    let mut endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {SKIP_MIRROR: "true"}},
    });
    // No address: no subset at all, as kube writes it.
    if !live.is_empty() {
        endpoints["subsets"] = json!([{
            "addresses": live.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>(),
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }]);
    }
    put(api, "", "v1", "endpoints", endpoints, &["subsets"]).await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": "IPv4",
        "endpoints": live.iter().map(|ip| json!({
            "addresses": [ip.to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
        })).collect::<Vec<_>>(),
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    put(
        api,
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        slice,
        &["addressType", "endpoints", "ports"],
    )
    .await
}

/// Creates `obj` in the default namespace, or sets its `fields` where they differ.
async fn put(
    api: &Api,
    group: &str,
    version: &str,
    plural: &str,
    mut obj: Value,
    fields: &[&str],
) -> Result<(), ApiError> {
    let def = api
        .resources
        .find(group, version, plural)
        .ok_or_else(|| ApiError::Internal(format!("{plural} not served")))?;
    let key = def.key(Some(NAMESPACE), NAME);
    let err = |e: StoreError| ApiError::from_store(e, group, plural, NAME);
    let result = match api.store.get(&key).await.map_err(err)? {
        (None, _) => {
            obj["metadata"]["uid"] = json!(objects::new_uid());
            obj["metadata"]["creationTimestamp"] = json!(objects::rfc3339((api.clock)()));
            api.store.create(&key, objects::encode(&obj)).await
        }
        (Some(kv), _) => {
            let mut existing = objects::decode(&kv)?;
            if fields.iter().all(|f| existing.get(*f) == obj.get(*f)) {
                return Ok(());
            }
            for f in fields {
                match obj.get_mut(*f) {
                    Some(v) => existing[*f] = v.take(),
                    None => {
                        if let Some(m) = existing.as_object_mut() {
                            m.remove(*f);
                        }
                    }
                }
            }
            api.store
                .update(&key, objects::encode(&existing), kv.mod_revision)
                .await
        }
    };
    match result {
        // A concurrent writer (another API server): the next round converges.
        Ok(_) | Err(StoreError::AlreadyExists { .. }) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// The names in-cluster clients reach the API by: the Service's IP, `kubernetes`,
/// `kubernetes.default`, `kubernetes.default.svc` and `kubernetes.default.svc.cluster.local`
/// (kube-apiserver's own alternate names; kubeadm adds the cluster domain's form the same way).
pub fn serving_names(service_cidr: &crate::ipalloc::ServiceCidr) -> Vec<String> {
    vec![
        service_cidr.first_host().to_string(),
        NAME.to_string(),
        format!("{NAME}.{NAMESPACE}"),
        format!("{NAME}.{NAMESPACE}.svc"),
        format!("{NAME}.{NAMESPACE}.svc.cluster.local"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertise_address_needs_to_be_reachable_from_pods() {
        let listen = |s: &str| s.parse().unwrap();
        let p = Publish::new(None, listen("10.0.0.2:6443"));
        assert_eq!(p.advertise, Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(p.port, 6443);
        assert_eq!(Publish::new(None, listen("127.0.0.1:6443")).advertise, None);
        assert_eq!(Publish::new(None, listen("0.0.0.0:6443")).advertise, None);
        let given = Some("192.168.1.5".parse().unwrap());
        assert_eq!(
            Publish::new(given, listen("0.0.0.0:443")).advertise,
            Some(Ipv4Addr::new(192, 168, 1, 5))
        );
    }
}
