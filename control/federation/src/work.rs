//! Pull mode, the federation's side: a `Cluster` with `spec.syncMode: Pull` is never dialled.
//! What push mode would apply to it is written instead as Karmada's `Work`
//! (work.karmada.io/v1alpha1) in the cluster's execution namespace `karmada-es-<cluster>` on the
//! federation API — one Work per template, `spec.workload.manifests` holding the rendered object
//! (the same rendering, overrides and share as push mode) — and the cluster's agent (see
//! [`crate::agent`]) applies it and reports `status.manifestStatuses` and the `Applied`
//! condition, which become the member's outcome here exactly as a push member's object would.
//!
//! A Work of a template that is gone or placed elsewhere is deleted; the agent's finalizer keeps
//! it until the member object is gone, so a deleted template waits for its pull members as it
//! does for push members.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::DynamicObject;
use kube::{Api, Client};
use serde_json::{json, Value};
use tracing::{debug, warn};

use crate::apply::{ensure_namespace, str_at};
use crate::cache::{Cache, Msg};
use crate::reconcile::{failed, template_uid, MemberJob, MemberOutcome, MemberResult};
use crate::{kinds, FIELD_MANAGER, MANAGED_LABEL, TEMPLATE_UID_LABEL};

/// Finalizer the agent puts on a Work before applying it (Karmada's execution controller's).
pub const WORK_FINALIZER: &str = "karmada.io/execution-controller";

/// Where a Pull member's agent works on the federation API: the Works of `member`.
pub(crate) struct PullTarget {
    pub fed: Client,
    pub works: Arc<Cache>,
}

/// Karmada's execution namespace of a member.
pub fn execution_namespace(cluster: &str) -> String {
    format!("karmada-es-{cluster}")
}

/// The Work's name for a rendered object: `kind.namespace.name` (lowercased kind; a namespace
/// and a kind hold no dots, so names of different templates cannot meet).
pub fn work_name(obj: &Value) -> String {
    let kind = obj["kind"].as_str().unwrap_or_default().to_lowercase();
    let name = str_at(obj, "/metadata/name");
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind}.{ns}.{name}"),
        None => format!("{kind}.{name}"),
    }
}

/// The Work of one rendered object for `cluster`.
pub fn work_for(cluster: &str, obj: &Value) -> Value {
    json!({
        "apiVersion": "work.karmada.io/v1alpha1",
        "kind": "Work",
        "metadata": {
            "name": work_name(obj),
            "namespace": execution_namespace(cluster),
            "labels": {MANAGED_LABEL: "true", TEMPLATE_UID_LABEL: template_uid(obj)},
        },
        "spec": {"workload": {"manifests": [obj]}},
    })
}

/// The `(apiVersion, kind)` of a Work's first manifest.
fn manifest_kind(w: &Value) -> (&str, &str) {
    let m = &w["spec"]["workload"]["manifests"][0];
    (
        m["apiVersion"].as_str().unwrap_or_default(),
        m["kind"].as_str().unwrap_or_default(),
    )
}

/// A Work's event, as the controller's queue takes it: its template's.
pub(crate) fn template_msg(w: &Value) -> Option<Msg> {
    let (api_version, kind) = manifest_kind(w);
    Some(Msg::Template {
        kind: (api_version.to_string(), kind.to_string()),
        uid: w["metadata"]["labels"][TEMPLATE_UID_LABEL]
            .as_str()?
            .to_string(),
    })
}

/// What the agent reported in a Work's status: its Applied condition (False: the error, naming
/// the member and the field) and the member object's status. A Work the agent has not looked at
/// yet is neither failed nor reporting.
pub(crate) fn outcome_of(w: &Value) -> MemberOutcome {
    let applied = w["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Applied"));
    let error = applied
        .filter(|c| c["status"] == "False")
        .map(|c| c["message"].as_str().unwrap_or_default().to_string());
    MemberOutcome {
        error,
        status: w["status"]["manifestStatuses"][0]
            .get("status")
            .filter(|s| s.is_object())
            .cloned(),
    }
}

/// One Pull member's share of a turn: its Works brought in line with the placement (written
/// when the rendered object differs from what the Work holds, deleted when the template is gone
/// or placed elsewhere), and each placed template's outcome read from its Work's status.
pub(crate) async fn sync_pull_member(
    job: MemberJob<'_>,
    pull: PullTarget,
) -> (String, MemberResult) {
    let MemberJob {
        member,
        not_ready,
        ar,
        labels,
        wants,
        placed,
        untouched,
        all_uids,
        only,
        ..
    } = job;
    if !pull.works.ready() {
        let msg = format!("member {member}: its Works are still being listed");
        return (member, MemberResult::unreachable(&wants, &msg));
    }
    let mut r = MemberResult {
        outcomes: HashMap::new(),
        remaining: HashSet::new(),
        unreachable: false,
    };
    let ready = not_ready.is_empty();
    // While the member is not Ready its Works are still written (the federation API is up;
    // the agent catches up when it returns), but what they report is not counted and the
    // member is treated as unreachable (the caller decides whether a deleted template waits).
    r.unreachable = !ready;
    let ns = execution_namespace(&member);
    let works: Api<DynamicObject> = Api::namespaced_with(pull.fed.clone(), &ns, &kinds::work());
    let live = pull.works.values_where(|w| {
        w["metadata"]["namespace"] == ns.as_str()
            && manifest_kind(w) == (ar.api_version.as_str(), ar.kind.as_str())
            && only.is_none_or(|s| s.contains(template_uid(w)))
    });
    let mut live_by_name: HashMap<String, Value> = HashMap::new();
    for w in live {
        let uid = template_uid(&w).to_string();
        let keep = placed.contains(&uid)
            || untouched.contains(&uid)
            || (!all_uids.contains(&uid) && uid.is_empty());
        if ready {
            // Until its agent removes the finalizer, a deleted Work's object is still there.
            r.remaining.insert(uid.clone());
        }
        if keep {
            live_by_name.insert(str_at(&w, "/metadata/name").to_string(), w);
            continue;
        }
        if w["metadata"]["deletionTimestamp"].is_string() {
            continue;
        }
        match works
            .delete(str_at(&w, "/metadata/name"), &DeleteParams::background())
            .await
        {
            Ok(_) => debug!(member = %member, work = str_at(&w, "/metadata/name"), "work deleted"),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                r.remaining.remove(&uid);
            }
            Err(e) => {
                warn!(member = %member, work = str_at(&w, "/metadata/name"), "work not deleted: {e}")
            }
        }
    }
    let mut namespace_made = false;
    for w in wants {
        let uid = w.uid.to_string();
        let obj = match w.render(&member, &labels) {
            Ok(v) => v,
            Err(e) => {
                r.outcomes.insert(uid, failed(e));
                continue;
            }
        };
        let name = work_name(&obj);
        let existing = live_by_name.get(&name);
        let current = match existing {
            Some(e) if e["spec"]["workload"]["manifests"] == json!([obj]) => Some(e.clone()),
            _ => {
                if !namespace_made {
                    if let Err(e) = ensure_namespace(&pull.fed, &ns).await {
                        r.outcomes.insert(
                            uid,
                            failed(format!(
                                "member {member}: namespace {ns} on the federation API: {e}"
                            )),
                        );
                        continue;
                    }
                    namespace_made = true;
                }
                let pp = PatchParams::apply(FIELD_MANAGER).force();
                match works
                    .patch(&name, &pp, &Patch::Apply(work_for(&member, &obj)))
                    .await
                {
                    Ok(o) => {
                        debug!(member = %member, work = %name, "work written");
                        let v = serde_json::to_value(o).unwrap_or_default();
                        pull.works.insert(v.clone());
                        Some(v)
                    }
                    Err(e) => {
                        r.outcomes.insert(
                            uid,
                            failed(format!(
                                "member {member}: Work {ns}/{name} not written: {e}"
                            )),
                        );
                        continue;
                    }
                }
            }
        };
        if ready {
            r.remaining.insert(uid.clone());
        }
        let outcome = if !ready {
            failed(format!("member {member} is not Ready: {not_ready}"))
        } else {
            current.as_ref().map(outcome_of).unwrap_or_default()
        };
        r.outcomes.insert(uid, outcome);
    }
    (member, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn works_are_named_by_kind_namespace_and_name_and_report_what_the_agent_said() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default",
                "labels": {TEMPLATE_UID_LABEL: "u1"}}});
        let w = work_for("m2", &obj);
        assert_eq!(w["metadata"]["name"], "deployment.default.web");
        assert_eq!(w["metadata"]["namespace"], "karmada-es-m2");
        assert_eq!(w["metadata"]["labels"][TEMPLATE_UID_LABEL], "u1");
        assert_eq!(w["spec"]["workload"]["manifests"][0], obj);
        match template_msg(&w) {
            Some(Msg::Template { kind, uid }) => {
                assert_eq!(kind, ("apps/v1".to_string(), "Deployment".to_string()));
                assert_eq!(uid, "u1");
            }
            other => panic!("{other:?}"),
        }
        let pending = outcome_of(&w);
        assert!(pending.error.is_none() && pending.status.is_none());
        let mut refused = w.clone();
        refused["status"] = json!({"conditions": [{"type": "Applied", "status": "False",
            "reason": "AppliedFailed", "message": "member m2: 422 Invalid: spec.replicas"}]});
        assert_eq!(
            outcome_of(&refused).error.as_deref(),
            Some("member m2: 422 Invalid: spec.replicas")
        );
        let mut done = w;
        done["status"] = json!({"conditions": [{"type": "Applied", "status": "True"}],
            "manifestStatuses": [{"status": {"readyReplicas": 1}}]});
        let o = outcome_of(&done);
        assert!(o.error.is_none());
        assert_eq!(o.status, Some(json!({"readyReplicas": 1})));
        assert_eq!(
            work_name(&json!({"kind": "ClusterRole", "metadata": {"name": "a.b"}})),
            "clusterrole.a.b"
        );
    }
}
