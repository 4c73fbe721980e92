//! Status back to the federation API after a turn: per template its ResourceBinding (or, for a
//! cluster-scoped template, its ClusterResourceBinding — Karmada's names, `<name>-<kind>`) with
//! the placement and each member's status, the workload replica counts summed onto the
//! template's own status, and Events naming the member and field of each failure.

use std::collections::BTreeMap;

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client};
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use crate::controller::Controller;
use crate::reconcile::{api_for, str_at, MemberOutcome, Plan};
use crate::{kinds, render, FIELD_MANAGER, FINALIZER};

/// The workload status fields summed across members.
const SUMMED: &[&str] = &[
    "replicas",
    "readyReplicas",
    "availableReplicas",
    "updatedReplicas",
];

fn now() -> String {
    k8s_openapi::chrono::Utc::now().to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true)
}

/// The binding's name, its API and kind: a ResourceBinding in the template's namespace, or a
/// ClusterResourceBinding for a cluster-scoped template.
pub(crate) fn binding_of(fed: &Client, t: &Value) -> (String, Api<DynamicObject>, &'static str) {
    let name = format!(
        "{}-{}",
        str_at(t, "/metadata/name"),
        str_at(t, "/kind").to_lowercase()
    );
    match t["metadata"]["namespace"].as_str() {
        Some(ns) => (
            name,
            Api::namespaced_with(fed.clone(), ns, &kinds::resource_binding()),
            "ResourceBinding",
        ),
        None => (
            name,
            Api::all_with(fed.clone(), &kinds::cluster_resource_binding()),
            "ClusterResourceBinding",
        ),
    }
}

impl Controller {
    /// Writes the ResourceBinding, the summed status on the template, and Events for failures.
    pub(crate) async fn report(
        &self,
        ar: &ApiResource,
        p: &Plan<'_>,
        per_member: &BTreeMap<String, MemberOutcome>,
    ) {
        let t = p.template;
        if let Some(e) = &p.schedule_error {
            self.events
                .record(&self.fed, t, false, "ScheduleFailed", "placement", e)
                .await;
        } else {
            self.events.clear(&p.uid, "ScheduleFailed", "placement");
        }
        let mut failures = Vec::new();
        for (member, o) in per_member {
            match &o.error {
                Some(e) => {
                    failures.push(e.clone());
                    self.events
                        .record(&self.fed, t, false, "ApplyFailed", member, e)
                        .await;
                }
                None => self.events.clear(&p.uid, "ApplyFailed", member),
            }
        }
        // The template's status: workload replica counts summed across members.
        if t["status"].is_object() || t["spec"]["replicas"].is_i64() {
            let mut sum = serde_json::Map::new();
            for f in SUMMED {
                let n: i64 = per_member
                    .values()
                    .filter_map(|o| o.status.as_ref())
                    .filter_map(|s| s[*f].as_i64())
                    .sum();
                sum.insert(f.to_string(), json!(n));
            }
            sum.insert(
                "observedGeneration".into(),
                t["metadata"]["generation"].clone(),
            );
            let changed = sum.iter().any(|(k, v)| {
                t["status"][k] != *v && !(v == &json!(0) && t["status"][k].is_null())
            });
            if changed {
                let api = api_for(&self.fed, ar, t["metadata"]["namespace"].as_str());
                let patch = json!({"status": Value::Object(sum)});
                if let Err(e) = api
                    .patch_status(
                        str_at(t, "/metadata/name"),
                        &PatchParams::default(),
                        &Patch::Merge(patch),
                    )
                    .await
                {
                    debug!(template = %render::identity(t), "status not written: {e}");
                }
            }
        }
        let ns = t["metadata"]["namespace"].as_str();
        let (name, rbs, binding_kind) = binding_of(&self.fed, t);
        let clusters: Vec<Value> = p
            .decision
            .iter()
            .map(|(n, r)| match r {
                Some(r) => json!({"name": n, "replicas": r}),
                None => json!({"name": n}),
            })
            .collect();
        let mut resource = json!({"apiVersion": t["apiVersion"], "kind": t["kind"],
            "name": t["metadata"]["name"], "uid": p.uid});
        if let Some(ns) = ns {
            resource["namespace"] = json!(ns);
        }
        let spec = json!({
            "resource": resource,
            "replicas": t["spec"]["replicas"],
            "propagationPolicy": p.policy,
            "clusters": clusters,
        });
        let aggregated: Vec<Value> = per_member
            .iter()
            .map(|(n, o)| {
                let mut e = json!({"clusterName": n, "applied": o.error.is_none()});
                if let Some(err) = &o.error {
                    e["appliedMessage"] = json!(err);
                }
                if let Some(s) = &o.status {
                    e["status"] = s.clone();
                }
                e
            })
            .collect();
        let scheduled = match &p.schedule_error {
            None => json!({"type": "Scheduled", "status": "True", "reason": "Success",
                "message": format!("placed by {}", p.policy)}),
            Some(e) => {
                json!({"type": "Scheduled", "status": "False", "reason": "SchedulerError", "message": e})
            }
        };
        let applied = if failures.is_empty() && p.schedule_error.is_none() {
            json!({"type": "FullyApplied", "status": "True", "reason": "FullyAppliedSuccess",
                "message": "applied to every member of the placement"})
        } else {
            json!({"type": "FullyApplied", "status": "False", "reason": "FullyAppliedFailed",
                "message": failures.join("; ")})
        };
        let status = json!({"conditions": [scheduled, applied], "aggregatedStatus": aggregated});
        let last = self
            .last_binding
            .lock()
            .expect("binding lock")
            .get(&p.uid)
            .cloned();
        if last.as_ref().is_none_or(|(s, _)| *s != spec) {
            let mut meta = json!({"name": name});
            if let Some(ns) = ns {
                meta["namespace"] = json!(ns);
            }
            let rb = json!({"apiVersion": "work.karmada.io/v1alpha1", "kind": binding_kind,
                "metadata": meta, "spec": spec});
            if let Err(e) = rbs
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(rb),
                )
                .await
            {
                warn!(binding = %name, "binding not written: {e}");
                return;
            }
        }
        if last.is_none_or(|(s, st)| s != spec || st != status) {
            // Conditions keep their transition time only in spirit: each write stamps "now".
            let mut st = status.clone();
            for c in st["conditions"].as_array_mut().into_iter().flatten() {
                c["lastTransitionTime"] = json!(now());
            }
            if let Err(e) = rbs
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": st})),
                )
                .await
            {
                warn!(binding = %name, "binding status not written: {e}");
                return;
            }
        }
        self.last_binding
            .lock()
            .expect("binding lock")
            .insert(p.uid.clone(), (spec, status));
    }

    /// Member objects are gone: drop the binding and the finalizer so the template goes.
    pub(crate) async fn finish_deletion(&self, ar: &ApiResource, t: &Value) {
        let uid = str_at(t, "/metadata/uid").to_string();
        let (name, rbs, _) = binding_of(&self.fed, t);
        match rbs.delete(&name, &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(kube::core::ErrorResponse { code: 404, .. })) => {}
            Err(e) => warn!(binding = %name, "binding not deleted: {e}"),
        }
        let f: Vec<Value> = t["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|x| *x != FINALIZER)
            .cloned()
            .collect();
        let patch = json!({"metadata": {"finalizers": f, "resourceVersion": t["metadata"]["resourceVersion"]}});
        let api = api_for(&self.fed, ar, t["metadata"]["namespace"].as_str());
        match api
            .patch(
                str_at(t, "/metadata/name"),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => {
                info!(template = %render::identity(t), "member objects deleted; template released");
                self.last_binding.lock().expect("binding lock").remove(&uid);
            }
            Err(e) => {
                debug!(template = %render::identity(t), "finalizer not removed (retried): {e}")
            }
        }
    }
}
