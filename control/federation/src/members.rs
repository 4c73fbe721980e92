//! Member clusters: a client per `Cluster` built from its Secret, and its health from `/readyz`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client};
use serde_json::Value;

use crate::capacity::{self, Summary};
use crate::Error;

/// A member's health as the last probe saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ready,
    /// Not Ready: the reason (a Kubernetes condition reason) and a message naming the member.
    NotReady {
        reason: String,
        message: String,
    },
}

/// One member as the controller knows it.
#[derive(Clone)]
pub struct Member {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The Cluster's spec.taints (placement keeps templates off members whose taints the
    /// policy does not tolerate).
    pub taints: Vec<crate::policy::Taint>,
    /// For requests: connect, read and write bounded by the member timeout.
    pub client: Option<Client>,
    /// For watches: only the connect is bounded (a quiet watch must not time out).
    pub watch_client: Option<Client>,
    pub health: Health,
    /// Since when the member has been not Ready (cleared when it is Ready again).
    pub not_ready_since: Option<Instant>,
    /// apiEndpoint + Secret resourceVersion the client was built from.
    pub fingerprint: String,
    /// The Cluster's spec.region ("" when unset).
    pub region: String,
    /// The Cluster's spec.zones, or its single spec.zone.
    pub zones: Vec<String>,
    /// Karmada's status.resourceSummary, from the member's Nodes and Pods (None until the
    /// first collection succeeds).
    pub summary: Option<Summary>,
    /// When the summary was last collected.
    pub summary_at: Option<Instant>,
    /// `spec.syncMode: Pull`: never dialled; its agent applies the Works written for it, and
    /// its health is its agent's lease and report.
    pub pull: bool,
}

impl Member {
    /// A member not probed yet: no client, no labels, no summary.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            client: None,
            watch_client: None,
            health: Health::Ready,
            not_ready_since: None,
            fingerprint: String::new(),
            region: String::new(),
            zones: Vec::new(),
            summary: None,
            summary_at: None,
            pull: false,
        }
    }
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.name)
            .field("health", &self.health)
            .field("has_client", &self.client.is_some())
            .finish()
    }
}

/// The members, refreshed from the `Cluster` objects by the health probe.
#[derive(Debug, Default, Clone)]
pub struct Members {
    pub by_name: HashMap<String, Member>,
}

fn not_ready(reason: &str, message: String) -> Health {
    Health::NotReady {
        reason: reason.into(),
        message,
    }
}

/// A client from a kubeconfig, optionally pointed at `endpoint`, with `timeout` on connect and
/// reads (so an unreachable member fails fast instead of holding up a pass).
pub async fn client_from(
    kc: Kubeconfig,
    endpoint: Option<&str>,
    timeout: Option<Duration>,
    watch: bool,
    what: &str,
) -> Result<Client, Error> {
    let kerr = |message: String| Error::Kubeconfig {
        what: what.to_string(),
        message,
    };
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| kerr(e.to_string()))?;
    if let Some(ep) = endpoint {
        cfg.cluster_url = ep
            .parse()
            .map_err(|e| kerr(format!("spec.apiEndpoint {ep:?}: {e}")))?;
    }
    if let Some(t) = timeout {
        cfg.connect_timeout = Some(t);
        if !watch {
            cfg.read_timeout = Some(t);
            cfg.write_timeout = Some(t);
        }
    }
    Client::try_from(cfg).map_err(|e| kerr(e.to_string()))
}

/// Builds the member's client from its Secret: key `kubeconfig`, or Karmada's `token` and
/// `caBundle` (PEM).
async fn member_client(
    fed: &Client,
    name: &str,
    spec: &Value,
    timeout: Duration,
) -> Result<(Client, Client, String), Health> {
    let endpoint = spec["apiEndpoint"].as_str().unwrap_or_default();
    let ns = spec["secretRef"]["namespace"].as_str().unwrap_or_default();
    let sname = spec["secretRef"]["name"].as_str().unwrap_or_default();
    // The CRD requires neither (a Pull cluster has none); Push needs both.
    if endpoint.is_empty() || ns.is_empty() || sname.is_empty() {
        return Err(not_ready(
            "ClusterCredentialsMissing",
            format!("member {name}: spec.apiEndpoint and spec.secretRef (namespace, name) are required for spec.syncMode Push"),
        ));
    }
    let secrets: Api<Secret> = Api::namespaced(fed.clone(), ns);
    let secret = secrets.get(sname).await.map_err(|e| {
        not_ready(
            "ClusterCredentialsMissing",
            format!("member {name}: spec.secretRef {ns}/{sname}: {e}"),
        )
    })?;
    let data = secret.data.unwrap_or_default();
    let text = |k: &str| {
        data.get(k)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    let bad = |m: String| {
        not_ready(
            "ClusterCredentialsInvalid",
            format!("member {name}: secret {ns}/{sname}: {m}"),
        )
    };
    let kc = if let Some(kc) = text("kubeconfig") {
        Kubeconfig::from_yaml(&kc).map_err(|e| bad(format!("key kubeconfig: {e}")))?
    } else if let (Some(token), Some(ca)) = (text("token"), text("caBundle")) {
        let ca64 = base64::engine::general_purpose::STANDARD.encode(ca.as_bytes());
        let yaml = serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": endpoint, "certificate-authority-data": ca64}}],
            "users": [{"name": name, "user": {"token": token.trim()}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        });
        Kubeconfig::from_yaml(&yaml.to_string()).map_err(|e| bad(e.to_string()))?
    } else {
        return Err(bad(
            "has neither key kubeconfig nor keys token and caBundle".into(),
        ));
    };
    let client = client_from(kc.clone(), Some(endpoint), Some(timeout), false, name)
        .await
        .map_err(|e| bad(e.to_string()))?;
    let watch_client = client_from(kc, Some(endpoint), Some(timeout), true, name)
        .await
        .map_err(|e| bad(e.to_string()))?;
    let fingerprint = format!(
        "{endpoint}|{}",
        secret.metadata.resource_version.unwrap_or_default()
    );
    Ok((client, watch_client, fingerprint))
}

/// Where a Pull cluster's agent renews its lease (Karmada's namespace for it).
pub const LEASE_NAMESPACE: &str = "karmada-cluster";

/// Karmada's reason when a Pull cluster's agent stopped renewing its lease.
pub const STATUS_UNKNOWN: &str = "ClusterStatusUnknown";

/// A Pull cluster's health: Unknown (Karmada's ClusterStatusUnknown) when its agent's lease is
/// missing or older than `grace`, else the Ready condition its agent reported.
async fn pull_health(fed: &Client, name: &str, cluster: &Value, grace: Duration) -> Health {
    use k8s_openapi::api::coordination::v1::Lease;
    let leases: Api<Lease> = Api::namespaced(fed.clone(), LEASE_NAMESPACE);
    let at = format!("lease {LEASE_NAMESPACE}/{name}");
    let renewed = match leases.get_opt(name).await {
        Ok(Some(l)) => l.spec.and_then(|s| s.renew_time).map(|t| t.0),
        Ok(None) => {
            return not_ready(
                STATUS_UNKNOWN,
                format!("member {name}: no {at}: its agent (pull mode) has not started"),
            )
        }
        Err(e) => return not_ready(STATUS_UNKNOWN, format!("member {name}: {at}: {e}")),
    };
    // The message names the renewal time, not the age: it must not change on every probe (the
    // condition is written only when it changes).
    match renewed {
        Some(t) if (k8s_openapi::chrono::Utc::now() - t).to_std().unwrap_or_default() <= grace => {}
        Some(t) => {
            return not_ready(
                STATUS_UNKNOWN,
                format!(
                    "member {name}: its agent stopped renewing {at} (last renewed {}, grace period {}s): cluster status unknown",
                    t.to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true),
                    grace.as_secs_f64()
                ),
            )
        }
        None => {
            return not_ready(
                STATUS_UNKNOWN,
                format!("member {name}: {at} has no spec.renewTime"),
            )
        }
    }
    let cond = &cluster["status"]["conditions"][0];
    match (cond["status"].as_str(), cond["reason"].as_str()) {
        (Some("True"), _) => Health::Ready,
        (Some(_), Some(reason)) if reason != STATUS_UNKNOWN => not_ready(
            reason,
            cond["message"].as_str().unwrap_or_default().to_string(),
        ),
        // Not ClusterStatusUnknown: that reason is the one pea-federation writes itself, and
        // the agent's own report is on its way.
        _ => not_ready(
            "ClusterNotReady",
            format!("member {name}: its agent renews {at} but has not reported Ready yet"),
        ),
    }
}

/// GET /readyz on the member; 401/403 say the credentials are wrong.
pub(crate) async fn probe(client: &Client, name: &str, timeout: Duration) -> Health {
    let req = http::Request::get("/readyz")
        .body(Vec::new())
        .expect("static request");
    match tokio::time::timeout(timeout, client.request_text(req)).await {
        Ok(Ok(body)) if body.trim() == "ok" || body.contains("readyz check passed") => {
            Health::Ready
        }
        Ok(Ok(body)) => not_ready(
            "ClusterNotReady",
            format!(
                "member {name}: /readyz answered {:?}",
                body.chars().take(200).collect::<String>()
            ),
        ),
        Ok(Err(kube::Error::Api(s))) if s.code == 401 || s.code == 403 => not_ready(
            "ClusterCredentialsInvalid",
            format!(
                "member {name}: /readyz refused the credentials of spec.secretRef ({} {})",
                s.code, s.message
            ),
        ),
        Ok(Err(e)) => not_ready(
            "ClusterNotReachable",
            format!("member {name}: /readyz: {e}"),
        ),
        Err(_) => not_ready(
            "ClusterNotReachable",
            format!("member {name}: /readyz did not answer within {timeout:?}"),
        ),
    }
}

/// Lists the member's Nodes and Pods into Karmada's resource summary; `None` (the old summary is
/// kept) when either list fails.
pub(crate) async fn collect_summary(client: &Client, name: &str) -> Option<Summary> {
    let nodes: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<Node>(&()));
    let pods: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<Pod>(&()));
    let lp = ListParams::default();
    let (n, p) = futures_util::join!(nodes.list(&lp), pods.list(&lp));
    let values = |l: kube::core::ObjectList<DynamicObject>| -> Vec<Value> {
        l.items
            .into_iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect()
    };
    match (n, p) {
        (Ok(n), Ok(p)) => Some(capacity::summarize(&values(n), &values(p))),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(cluster = %name, "resource summary not collected (nodes and pods): {e}");
            None
        }
    }
}

impl Members {
    /// Refreshes every member from the `Cluster` objects: (re)builds clients whose endpoint or
    /// Secret changed, probes all members concurrently, forgets removed ones.
    pub async fn refresh(
        &mut self,
        fed: &Client,
        clusters: &[Value],
        timeout: Duration,
        summary_interval: Duration,
        lease_grace: Duration,
    ) {
        let names: Vec<String> = clusters
            .iter()
            .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        self.by_name.retain(|n, _| names.contains(n));
        let probes = clusters.iter().map(|c| {
            let name = c["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let prev = self.by_name.get(&name).map(|m| {
                (
                    m.client.clone(),
                    m.watch_client.clone(),
                    m.fingerprint.clone(),
                )
            });
            let summary_due = self
                .by_name
                .get(&name)
                .and_then(|m| m.summary_at)
                .is_none_or(|t| t.elapsed() >= summary_interval);
            async move {
                let spec = &c["spec"];
                let mut summary = None;
                let (clients, fp, health) = if spec["syncMode"] == "Pull" {
                    let health = pull_health(fed, &name, c, lease_grace).await;
                    if health == Health::Ready {
                        summary = Summary::from_json(&c["status"]["resourceSummary"]);
                    }
                    (None, "pull".to_string(), health)
                } else {
                    match member_client(fed, &name, spec, timeout).await {
                        Ok((fresh, fresh_watch, fp)) => {
                            // Keep the old clients (and their connections) while nothing changed.
                            let (client, watch_client) = match prev {
                                Some((Some(old), Some(old_watch), old_fp)) if old_fp == fp => {
                                    (old, old_watch)
                                }
                                _ => (fresh, fresh_watch),
                            };
                            let health = probe(&client, &name, timeout).await;
                            if health == Health::Ready && summary_due {
                                summary = collect_summary(&client, &name).await;
                            }
                            (Some((client, watch_client)), fp, health)
                        }
                        Err(h) => (None, String::new(), h),
                    }
                };
                (name, clients, fp, health, summary)
            }
        });
        let results = futures_util::future::join_all(probes).await;
        for (c, (name, clients, fingerprint, health, summary)) in clusters.iter().zip(results) {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(c["metadata"]["labels"].clone()).unwrap_or_default();
            let m = self
                .by_name
                .entry(name.clone())
                .or_insert_with(|| Member::new(&name));
            m.labels = labels;
            m.pull = c["spec"]["syncMode"] == "Pull";
            m.region = c["spec"]["region"].as_str().unwrap_or_default().to_string();
            m.zones = match (c["spec"]["zones"].as_array(), c["spec"]["zone"].as_str()) {
                (Some(zs), _) => zs
                    .iter()
                    .filter_map(|z| z.as_str().map(str::to_string))
                    .collect(),
                (None, Some(z)) => vec![z.to_string()],
                (None, None) => Vec::new(),
            };
            if let Some(s) = summary {
                m.summary = Some(s);
                m.summary_at = Some(Instant::now());
            }
            m.taints = match serde_json::from_value(c["spec"]["taints"].clone()) {
                Ok(t) => t,
                Err(e) if !c["spec"]["taints"].is_null() => {
                    tracing::warn!(cluster = %name, "spec.taints ignored: {e}");
                    Vec::new()
                }
                Err(_) => Vec::new(),
            };
            m.client = clients.as_ref().map(|c| c.0.clone());
            m.watch_client = clients.map(|c| c.1);
            m.fingerprint = fingerprint;
            if health == Health::Ready {
                m.not_ready_since = None;
            } else if m.not_ready_since.is_none() {
                m.not_ready_since = Some(Instant::now());
            }
            m.health = health;
        }
    }
}
