//! Pull mode, the member's side: Karmada's karmada-agent. It runs next to a member whose
//! `Cluster` has `spec.syncMode: Pull`, dials out to the federation API (pea-federation never
//! dials the member) and:
//!
//! - checks its Cluster at start (or, with `register`, creates/updates it as Pull): wrong
//!   federation credentials, an unknown cluster or a Push cluster end the agent with an error
//!   naming them;
//! - renews the `coordination.k8s.io/v1` Lease `karmada-cluster/<cluster>` every
//!   `lease_duration × renew_fraction` (Karmada: 40 s and 0.25) — pea-federation reports the
//!   cluster not Ready (ClusterStatusUnknown) once the lease is older than its grace period;
//! - every `status_interval` probes the member's `/readyz` and lists its Nodes and Pods into the
//!   Cluster's Ready condition and `status.resourceSummary` (what pea-federation does itself for
//!   a Push cluster, with the same code);
//! - watches the Works in `karmada-es-<cluster>` and the member's objects they made, and on each
//!   event applies every Work's manifests that differ from the member's object (the same
//!   server-side apply as push mode, [`crate::apply`]: drift is corrected as its watch event
//!   arrives), deletes a deleted Work's objects before releasing its finalizer and objects whose
//!   Work is gone, and reports `status.manifestStatuses` (the member object's status, which
//!   pea-federation sums) and the `Applied` condition (False naming the member and the field the
//!   member refused; the other Works converge regardless).
//!
//! Each event makes a pass over all of the cluster's Works, one at a time (an agent serves one
//! member; the number of Works is the number of templates placed there).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::sync::mpsc::{self, UnboundedSender};
use tracing::{debug, info, warn};

use crate::apply::{apply_object, delete_object, ensure_namespace, str_at};
use crate::cache::{self, KindKey, Msg, Watch};
use crate::members::{self, Health, LEASE_NAMESPACE};
use crate::reconcile::template_uid;
use crate::work::{execution_namespace, WORK_FINALIZER};
use crate::{kinds, render, Error, TEMPLATE_UID_LABEL};

/// Field manager of the agent's writes to the federation API (its Cluster and Lease).
pub const AGENT_FIELD_MANAGER: &str = "pea-federation-agent";

/// The agent's settings (flags of `pea-federation agent`, named after karmada-agent's).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The Cluster this agent serves.
    pub cluster_name: String,
    /// Create the Cluster (or set it to Pull) instead of requiring `pea federation join`.
    pub register: bool,
    /// The member's API endpoint written into the Cluster on register (informational in pull
    /// mode: nobody dials it).
    pub endpoint: Option<String>,
    /// The lease's duration (Karmada's --cluster-lease-duration, 40 s).
    pub lease_duration: Duration,
    /// Renewal every `lease_duration × renew_fraction` (Karmada's
    /// --cluster-lease-renew-interval-fraction, 0.25).
    pub renew_fraction: f64,
    /// Time between Ready/resourceSummary reports (Karmada's --cluster-status-update-frequency).
    pub status_interval: Duration,
    /// Bound of each request to the member.
    pub member_timeout: Duration,
    /// A full pass over the Works this often even without events (the safety net).
    pub resync: Duration,
}

impl AgentConfig {
    pub fn new(cluster_name: &str) -> Self {
        Self {
            cluster_name: cluster_name.into(),
            register: false,
            endpoint: None,
            lease_duration: Duration::from_secs(40),
            renew_fraction: 0.25,
            status_interval: Duration::from_secs(10),
            member_timeout: Duration::from_secs(5),
            resync: Duration::from_secs(60),
        }
    }
}

fn now(precision: k8s_openapi::chrono::SecondsFormat) -> String {
    k8s_openapi::chrono::Utc::now().to_rfc3339_opts(precision, true)
}

/// Runs the agent until its task is dropped; returns early only for what it cannot work with
/// (wrong federation credentials, an unknown or Push cluster).
pub async fn run(
    fed: Client,
    fed_kubeconfig: &str,
    member: Client,
    member_watch: Client,
    config: AgentConfig,
) -> Result<(), Error> {
    let cluster_uid = check_cluster(&fed, fed_kubeconfig, &config).await?;
    let name = config.cluster_name.clone();
    info!(cluster = %name, "agent started (pull mode)");
    let lease = AbortOnDrop(tokio::spawn(renew_lease(
        fed.clone(),
        name.clone(),
        cluster_uid,
        config.clone(),
    )));
    let status = AbortOnDrop(tokio::spawn(report_status(
        fed.clone(),
        member.clone(),
        config.clone(),
    )));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let ns = execution_namespace(&name);
    let works = cache::watch(
        Api::namespaced_with(fed.clone(), &ns, &kinds::work()),
        kinds::work(),
        None,
        tx.clone(),
        |_| Some(Msg::Policies),
        Some(Msg::Policies),
    );
    let mut w = Worker {
        fed,
        member,
        member_watch,
        name,
        ns,
        tx,
        works,
        kinds: HashMap::new(),
    };
    let mut full = tokio::time::interval(config.resync.max(Duration::from_millis(100)));
    full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            m = rx.recv() => if m.is_none() { break },
            _ = full.tick() => {}
        }
        while rx.try_recv().is_ok() {}
        if w.works.cache.ready() {
            w.pass().await;
        }
    }
    drop((lease, status));
    Ok(())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The Cluster this agent serves, checked (or registered): its uid, for the lease's owner.
async fn check_cluster(fed: &Client, kubeconfig: &str, c: &AgentConfig) -> Result<String, Error> {
    let name = &c.cluster_name;
    let api: Api<DynamicObject> = Api::all_with(fed.clone(), &kinds::cluster());
    let refused = |s: &kube::core::ErrorResponse| Error::FederationCredentials {
        kubeconfig: kubeconfig.to_string(),
        message: format!("get Cluster {name}: {} {}", s.code, s.message),
    };
    let existing = match api.get_opt(name).await {
        Ok(c) => c,
        Err(kube::Error::Api(s)) if s.code == 401 || s.code == 403 => return Err(refused(&s)),
        Err(e) => {
            return Err(Error::api(
                format!("federation API ({kubeconfig}): get Cluster {name}"),
                e,
            ))
        }
    };
    if !c.register {
        let Some(cl) = existing else {
            return Err(Error::UnknownCluster { name: name.clone() });
        };
        let mode = cl.data["spec"]["syncMode"].as_str().unwrap_or("Push");
        if mode != "Pull" {
            return Err(Error::NotPullMode {
                name: name.clone(),
                mode: mode.to_string(),
            });
        }
        return Ok(cl.metadata.uid.unwrap_or_default());
    }
    let mut spec = json!({"syncMode": "Pull"});
    if let Some(ep) = &c.endpoint {
        spec["apiEndpoint"] = json!(ep);
    }
    let cluster = json!({"apiVersion": "cluster.karmada.io/v1alpha1", "kind": "Cluster",
        "metadata": {"name": name}, "spec": spec});
    let pp = PatchParams::apply(AGENT_FIELD_MANAGER).force();
    match api.patch(name, &pp, &Patch::Apply(&cluster)).await {
        Ok(o) => {
            info!(cluster = %name, "registered (syncMode Pull)");
            Ok(o.metadata.uid.unwrap_or_default())
        }
        Err(kube::Error::Api(s)) if s.code == 401 || s.code == 403 => Err(refused(&s)),
        Err(e) => Err(Error::api(format!("register Cluster {name}"), e)),
    }
}

/// Renews the cluster's Lease forever (creating it the first time).
async fn renew_lease(fed: Client, name: String, cluster_uid: String, c: AgentConfig) {
    let leases: Api<DynamicObject> = Api::namespaced_with(
        fed,
        LEASE_NAMESPACE,
        &ApiResource::erase::<k8s_openapi::api::coordination::v1::Lease>(&()),
    );
    let seconds = c.lease_duration.as_secs_f64().ceil().max(1.0) as i64;
    let every = c
        .lease_duration
        .mul_f64(c.renew_fraction.clamp(0.01, 1.0))
        .max(Duration::from_millis(100));
    loop {
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": LEASE_NAMESPACE,
                "ownerReferences": [{"apiVersion": "cluster.karmada.io/v1alpha1", "kind": "Cluster",
                    "name": name, "uid": cluster_uid}]},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": seconds,
                "renewTime": now(k8s_openapi::chrono::SecondsFormat::Micros)}});
        let pp = PatchParams::apply(AGENT_FIELD_MANAGER).force();
        match leases.patch(&name, &pp, &Patch::Apply(&lease)).await {
            Ok(_) => debug!(cluster = %name, "lease renewed"),
            Err(e) => warn!(cluster = %name, "lease {LEASE_NAMESPACE}/{name} not renewed: {e}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Writes the Cluster's Ready condition and resource summary when they change, forever.
async fn report_status(fed: Client, member: Client, c: AgentConfig) {
    let name = c.cluster_name.as_str();
    let api: Api<DynamicObject> = Api::all_with(fed, &kinds::cluster());
    loop {
        let health = members::probe(&member, name, c.member_timeout).await;
        let summary = match health {
            Health::Ready => members::collect_summary(&member, name).await,
            _ => None,
        };
        let (status, reason, message) = match &health {
            Health::Ready => (
                "True",
                "ClusterReady".to_string(),
                format!("member {name}: /readyz ok (reported by its agent)"),
            ),
            Health::NotReady { reason, message } => ("False", reason.clone(), message.clone()),
        };
        match api.get(name).await {
            Ok(cl) => {
                let old = &cl.data["status"]["conditions"][0];
                let mut patch = json!({});
                if old["status"] != status
                    || old["reason"] != reason.as_str()
                    || old["message"] != message.as_str()
                {
                    let since = if old["status"] == status {
                        old["lastTransitionTime"].clone()
                    } else {
                        json!(now(k8s_openapi::chrono::SecondsFormat::Secs))
                    };
                    patch["conditions"] = json!([{"type": "Ready", "status": status,
                        "reason": reason, "message": message, "lastTransitionTime": since}]);
                    info!(cluster = name, status, %reason, "member health reported");
                }
                if let Some(s) = summary.map(|s| s.to_json()) {
                    if cl.data["status"]["resourceSummary"] != s {
                        patch["resourceSummary"] = s;
                    }
                }
                if patch.as_object().is_some_and(|p| !p.is_empty()) {
                    if let Err(e) = api
                        .patch_status(
                            name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"status": patch})),
                        )
                        .await
                    {
                        warn!(cluster = name, "cluster status not written: {e}");
                    }
                }
            }
            Err(e) => warn!(cluster = name, "cluster status not read: {e}"),
        }
        tokio::time::sleep(c.status_interval).await;
    }
}

/// The Work side of the agent.
struct Worker {
    fed: Client,
    member: Client,
    member_watch: Client,
    name: String,
    /// The execution namespace on the federation API.
    ns: String,
    tx: UnboundedSender<Msg>,
    works: Watch,
    /// Kinds the Works name, resolved on the member, with the watch of the member's objects.
    kinds: HashMap<KindKey, (ApiResource, Watch)>,
}

fn has_finalizer(v: &Value) -> bool {
    v["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == WORK_FINALIZER))
}

impl Worker {
    /// The member's resource for a manifest's kind, and a watch of its labelled objects (drift
    /// and status changes wake the agent).
    async fn resolve(&mut self, m: &Value) -> Result<ApiResource, String> {
        let api_version = m["apiVersion"].as_str().unwrap_or_default();
        let kind = m["kind"].as_str().unwrap_or_default();
        let key = (api_version.to_string(), kind.to_string());
        if let Some((ar, _)) = self.kinds.get(&key) {
            return Ok(ar.clone());
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, _) = kube::discovery::pinned_kind(&self.member, &gvk)
            .await
            .map_err(|e| {
                format!(
                    "member {}: {kind} {api_version} is not served: {e}",
                    self.name
                )
            })?;
        let watch = cache::watch(
            Api::all_with(self.member_watch.clone(), &ar),
            ar.clone(),
            Some(TEMPLATE_UID_LABEL),
            self.tx.clone(),
            |_| Some(Msg::Policies),
            None,
        );
        info!(cluster = %self.name, %api_version, %kind, "watching member objects");
        self.kinds.insert(key, (ar.clone(), watch));
        Ok(ar)
    }

    /// The member's object a manifest names: from the watch cache once listed, else read.
    async fn live(&self, ar: &ApiResource, m: &Value) -> Result<Option<Value>, String> {
        let ns = m["metadata"]["namespace"].as_str();
        let name = str_at(m, "/metadata/name");
        let key = (ar.api_version.clone(), ar.kind.clone());
        if let Some((_, w)) = self.kinds.get(&key).filter(|(_, w)| w.cache.ready()) {
            return Ok(w.cache.get(ns, name));
        }
        crate::apply::api_for(&self.member, ar, ns)
            .get_opt(name)
            .await
            .map(|o| o.and_then(|o| serde_json::to_value(o).ok()))
            .map_err(|e| format!("member {}: get {}: {e}", self.name, render::identity(m)))
    }

    async fn pass(&mut self) {
        let works = self.works.cache.values();
        let uids: HashSet<String> = works.iter().map(|w| template_uid(w).to_string()).collect();
        for w in &works {
            self.sync_work(w).await;
        }
        self.remove_orphans(&uids).await;
    }

    fn works_api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.fed.clone(), &self.ns, &kinds::work())
    }

    /// Sets the Work's finalizers (on its resourceVersion: a conflict is retried on its next
    /// event).
    async fn set_finalizers(&self, w: &Value, finalizers: Vec<Value>) -> bool {
        let patch = json!({"metadata": {"finalizers": finalizers,
            "resourceVersion": w["metadata"]["resourceVersion"]}});
        match self
            .works_api()
            .patch(
                str_at(w, "/metadata/name"),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => true,
            Err(e) => {
                debug!(
                    work = str_at(w, "/metadata/name"),
                    "finalizers not set (retried on the next event): {e}"
                );
                false
            }
        }
    }

    fn manifests(w: &Value) -> Vec<Value> {
        w["spec"]["workload"]["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn sync_work(&mut self, w: &Value) {
        let work = str_at(w, "/metadata/name").to_string();
        let manifests = Self::manifests(w);
        if w["metadata"]["deletionTimestamp"].is_string() {
            if !has_finalizer(w) {
                return;
            }
            let mut gone = true;
            for m in &manifests {
                let Ok(ar) = self.resolve(m).await else {
                    continue; // a kind the member does not serve holds no object
                };
                match self.live(&ar, m).await {
                    // Only what this Work made (another object of that name is not ours).
                    Ok(Some(l)) if template_uid(&l) == template_uid(m) => {
                        match delete_object(&self.member, &ar, &l).await {
                            Ok(()) => {
                                info!(cluster = %self.name, object = %render::identity(&l), "member object deleted")
                            }
                            Err(e) => {
                                gone = false;
                                warn!(cluster = %self.name, object = %render::identity(&l), "member object not deleted: {e}");
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        gone = false;
                        warn!(cluster = %self.name, %work, "{e}");
                    }
                }
            }
            if gone {
                let rest: Vec<Value> = w["metadata"]["finalizers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|f| *f != WORK_FINALIZER)
                    .cloned()
                    .collect();
                self.set_finalizers(w, rest).await;
            }
            return;
        }
        if !has_finalizer(w) {
            let mut f: Vec<Value> = w["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            f.push(json!(WORK_FINALIZER));
            // The new resourceVersion's event brings the Work back here.
            self.set_finalizers(w, f).await;
            return;
        }
        let mut errors: Vec<String> = Vec::new();
        let mut statuses: Vec<Value> = Vec::new();
        for (i, m) in manifests.iter().enumerate() {
            let api_version = m["apiVersion"].as_str().unwrap_or_default();
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let mut ms = json!({"identifier": {"ordinal": i, "group": group, "version": version,
                "kind": m["kind"], "name": m["metadata"]["name"]}});
            if let Some(ns) = m["metadata"]["namespace"].as_str() {
                ms["identifier"]["namespace"] = json!(ns);
            }
            match self.converge(m).await {
                Ok(status) => {
                    ms["health"] = json!("Healthy");
                    if let Some(s) = status {
                        ms["status"] = s;
                    }
                }
                Err(e) => {
                    ms["health"] = json!("Unknown");
                    errors.push(e);
                }
            }
            statuses.push(ms);
        }
        let (status, reason, message) = if errors.is_empty() {
            (
                "True",
                "AppliedSuccessful",
                "Manifest has been successfully applied".to_string(),
            )
        } else {
            (
                "False",
                "AppliedFailed",
                format!(
                    "failed to apply {} of {} manifests: {}",
                    errors.len(),
                    manifests.len(),
                    errors.join("; ")
                ),
            )
        };
        let old = &w["status"]["conditions"][0];
        let statuses = Value::Array(statuses);
        if old["status"] == status
            && old["reason"] == reason
            && old["message"] == message.as_str()
            && w["status"]["manifestStatuses"] == statuses
        {
            return;
        }
        let since = if old["status"] == status {
            old["lastTransitionTime"].clone()
        } else {
            json!(now(k8s_openapi::chrono::SecondsFormat::Secs))
        };
        let patch = json!({"status": {"conditions": [{"type": "Applied", "status": status,
            "reason": reason, "message": message, "lastTransitionTime": since}],
            "manifestStatuses": statuses}});
        if let Err(e) = self
            .works_api()
            .patch_status(&work, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            warn!(cluster = %self.name, %work, "work status not written: {e}");
        }
    }

    /// Applies one manifest when the member's object differs from it; the object's status.
    async fn converge(&mut self, m: &Value) -> Result<Option<Value>, String> {
        let ar = self.resolve(m).await?;
        let live = self.live(&ar, m).await?;
        if let Some(l) = live.filter(|l| render::contained(m, l)) {
            return Ok(l.get("status").cloned());
        }
        if let Some(ns) = m["metadata"]["namespace"].as_str() {
            ensure_namespace(&self.member, ns)
                .await
                .map_err(|e| format!("member {}: namespace {ns}: {e}", self.name))?;
        }
        let v = apply_object(&self.member, &ar, &self.name, m).await?;
        info!(cluster = %self.name, object = %render::identity(m), "applied");
        let status = v.get("status").cloned();
        let key = (ar.api_version.clone(), ar.kind.clone());
        if let Some((_, w)) = self.kinds.get(&key) {
            w.cache.insert(v);
        }
        Ok(status)
    }

    /// Deletes member objects the federation labelled whose Work is gone (deleted while the
    /// agent was away, or its finalizer removed by hand).
    async fn remove_orphans(&self, uids: &HashSet<String>) {
        for (ar, w) in self.kinds.values() {
            if !w.cache.ready() {
                continue;
            }
            for o in w.cache.values_where(|o| {
                !uids.contains(template_uid(o)) && !o["metadata"]["deletionTimestamp"].is_string()
            }) {
                match delete_object(&self.member, ar, &o).await {
                    Ok(()) => {
                        info!(cluster = %self.name, object = %render::identity(&o), "member object of a gone Work deleted")
                    }
                    Err(e) => {
                        warn!(cluster = %self.name, object = %render::identity(&o), "member object not deleted: {e}")
                    }
                }
            }
        }
    }
}
