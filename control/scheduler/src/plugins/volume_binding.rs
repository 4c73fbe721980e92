//! VolumeBinding (kube's `volumebinding` plugin, simplified): a pod's PersistentVolumeClaims
//! decide where it can run.
//!
//! - A claim that does not exist, or is being deleted, makes the pod unschedulable.
//! - A bound claim's volume must be usable on the node (its node affinity): local and
//!   local-path volumes pin their pods to their node ("node(s) had volume node affinity
//!   conflict").
//! - An unbound claim of an Immediate class (or without a class) waits for the binder ("pod has
//!   unbound immediate PersistentVolumeClaims").
//! - An unbound claim of a WaitForFirstConsumer class fits a node where an Available volume that
//!   could be bound to it is usable, or where its class can provision (allowedTopologies; never
//!   for `kubernetes.io/no-provisioner`). When the pod is bound, the scheduler first sets
//!   `volume.kubernetes.io/selected-node` on such claims ([`claims_to_select`]): the binder then
//!   binds a volume on that node or the provisioner makes one there (kube's scheduler binds
//!   static volumes itself in PreBind and waits; here the binder does, and the kubelet waits
//!   for the claim to be bound before it mounts it).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use super::helpers::term_matches;
use crate::cache::ClusterState;
use crate::framework::{Code, CycleState, FilterPlugin, Status};
use crate::node_info::{NodeInfo, PodInfo};
use crate::volumes::{claim_class, could_bind};

pub const NAME: &str = "VolumeBinding";
pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const REASON_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const REASON_NO_PV: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

#[derive(Debug, Default)]
pub struct VolumeBinding;

/// A WaitForFirstConsumer claim still to be bound, with the volumes that could serve it.
#[derive(Debug)]
struct Delayed {
    class: Arc<StorageClass>,
    candidates: Vec<Arc<PersistentVolume>>,
}

#[derive(Debug, Default)]
struct State {
    bound: Vec<Arc<PersistentVolume>>,
    delayed: Vec<Delayed>,
}

/// The claim names a pod's volumes use (`persistentVolumeClaim`, and the `<pod>-<volume>` claims
/// of generic ephemeral volumes).
pub fn claim_names(pod: &Pod) -> Vec<(String, bool)> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some((c.claim_name.clone(), false))
            } else {
                v.ephemeral
                    .as_ref()
                    .map(|_| (format!("{pod_name}-{}", v.name), true))
            }
        })
        .collect()
}

fn volume_fits(pv: &PersistentVolume, node: &NodeInfo) -> bool {
    match pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    {
        None => true,
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, &node.name, node.labels())),
    }
}

/// Whether the class may provision on the node (its allowedTopologies, if any, match).
fn can_provision(class: &StorageClass, node: &NodeInfo) -> bool {
    if class.provisioner == NO_PROVISIONER {
        return false;
    }
    let Some(terms) = class.allowed_topologies.as_ref().filter(|t| !t.is_empty()) else {
        return true;
    };
    let labels = node.labels();
    terms.iter().any(|t| {
        t.match_label_expressions.iter().flatten().all(|r| {
            labels
                .and_then(|l| l.get(&r.key))
                .is_some_and(|v| r.values.contains(v))
        })
    })
}

fn is_delayed(class: Option<&Arc<StorageClass>>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

fn unbound(c: &PersistentVolumeClaim) -> bool {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_none_or(str::is_empty)
}

/// The unbound WaitForFirstConsumer claims of a pod (`namespace`, `name`) whose selected node
/// must be set to `node` before the pod is bound.
pub fn claims_to_select(
    pod: &PodInfo,
    cluster: &ClusterState,
    node: &str,
) -> Vec<(String, String)> {
    let ns = pod.namespace.as_str();
    claim_names(&pod.pod)
        .into_iter()
        .filter_map(|(name, _)| {
            let c = cluster.volumes.claim(ns, &name)?;
            let class = cluster.volumes.class(&claim_class(c));
            let selected = c
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::volumes::ANN_SELECTED_NODE))
                .map(String::as_str);
            (unbound(c) && is_delayed(class) && selected != Some(node))
                .then(|| (ns.to_string(), name))
        })
        .collect()
}

impl FilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, pod: &PodInfo, cluster: &ClusterState, state: &mut CycleState) -> Status {
        let names = claim_names(&pod.pod);
        if names.is_empty() {
            // kube's Skip: a pod without claims fits every node as far as volumes go.
            return Status::skip(NAME);
        }
        let reject = |msg: String| Status::new(Code::UnschedulableAndUnresolvable, NAME, msg);
        let vols = &cluster.volumes;
        let mut st = State::default();
        for (name, ephemeral) in names {
            let Some(claim) = vols.claim(&pod.namespace, &name) else {
                return reject(if ephemeral {
                    format!("waiting for ephemeral volume controller to create the persistentvolumeclaim {name:?}")
                } else {
                    format!("persistentvolumeclaim {name:?} not found")
                });
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return reject(format!("persistentvolumeclaim {name:?} is being deleted"));
            }
            if !unbound(claim) {
                let pv_name = claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .unwrap_or("");
                match vols.volume(pv_name) {
                    Some(pv) => st.bound.push(pv.clone()),
                    None => return reject(REASON_NO_PV.into()),
                }
                continue;
            }
            let class = vols.class(&claim_class(claim));
            if !is_delayed(class) {
                return reject(REASON_UNBOUND_IMMEDIATE.into());
            }
            let class = class.expect("delayed implies a class").clone();
            let candidates = vols
                .volumes()
                .filter(|v| could_bind(v, claim))
                .cloned()
                .collect();
            st.delayed.push(Delayed { class, candidates });
        }
        state.write(NAME, st);
        Status::success()
    }

    fn filter(&self, _pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Status {
        let Some(st) = state.read::<State>(NAME) else {
            return Status::success();
        };
        if st.bound.iter().any(|pv| !volume_fits(pv, node)) {
            return Status::new(
                Code::UnschedulableAndUnresolvable,
                NAME,
                REASON_NODE_CONFLICT,
            );
        }
        for d in &st.delayed {
            let static_fit = d.candidates.iter().any(|pv| volume_fits(pv, node));
            if !static_fit && !can_provision(&d.class, node) {
                return Status::new(
                    Code::UnschedulableAndUnresolvable,
                    NAME,
                    REASON_BIND_CONFLICT,
                );
            }
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testutil::{cluster, node, node_obj, pod};

    fn claim(name: &str, class: &str, volume: Option<&str>) -> PersistentVolumeClaim {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}")},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                "resources": {"requests": {"storage": "1Gi"}}, "volumeName": volume}}),
        )
        .unwrap()
    }

    fn local_pv(name: &str, class: &str, on: &str, claim: Option<&str>) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                "storageClassName": class, "local": {"path": "/mnt/x"},
                "claimRef": claim.map(|c| json!({"namespace": "default", "name": c, "uid": format!("u-{c}")})),
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [on]}]}]}}},
            "status": {"phase": if claim.is_some() { "Bound" } else { "Available" }}}))
        .unwrap()
    }

    fn class(name: &str, provisioner: &str, mode: &str) -> StorageClass {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "provisioner": provisioner,
            "volumeBindingMode": mode}),
        )
        .unwrap()
    }

    fn nodes() -> Vec<NodeInfo> {
        ["n1", "n2"]
            .iter()
            .map(|n| {
                node(
                    n,
                    json!({"metadata": {"labels": {"kubernetes.io/hostname": n}}}),
                )
            })
            .collect()
    }

    fn run(c: &ClusterState, claim: &str) -> Vec<Status> {
        let p =
            pod(json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}));
        let mut state = CycleState::default();
        let pre = VolumeBinding.pre_filter(&p, c, &mut state);
        if !pre.is_success() {
            return vec![pre];
        }
        nodes()
            .iter()
            .map(|n| VolumeBinding.filter(&p, n, &state))
            .collect()
    }

    #[test]
    fn bound_local_volumes_pin_pods_to_their_node() {
        let mut c = cluster(vec![node_obj("n1", json!({})), node_obj("n2", json!({}))]);
        c.volumes.upsert_claim(claim("data", "local", Some("pv1")));
        c.volumes
            .upsert_volume(local_pv("pv1", "local", "n2", Some("data")));
        let s = run(&c, "data");
        assert!(s[0].is_rejected() && s[0].reasons == [REASON_NODE_CONFLICT]);
        assert!(s[1].is_success());
    }

    #[test]
    fn unbound_claims_wait_or_follow_their_class() {
        let mut c = cluster(vec![]);
        assert_eq!(
            run(&c, "nope")[0].reasons,
            ["persistentvolumeclaim \"nope\" not found"]
        );
        c.volumes
            .upsert_class(class("fast", "pea.dev/local-path", "Immediate"));
        c.volumes.upsert_claim(claim("now", "fast", None));
        assert_eq!(run(&c, "now")[0].reasons, [REASON_UNBOUND_IMMEDIATE]);
        // WaitForFirstConsumer with a provisioner: every node.
        c.volumes
            .upsert_class(class("lp", "pea.dev/local-path", "WaitForFirstConsumer"));
        c.volumes.upsert_claim(claim("later", "lp", None));
        assert!(run(&c, "later").iter().all(Status::is_success));
        // Without a provisioner: only where an Available volume is.
        c.volumes
            .upsert_class(class("manual", NO_PROVISIONER, "WaitForFirstConsumer"));
        c.volumes.upsert_claim(claim("static", "manual", None));
        c.volumes
            .upsert_volume(local_pv("pv-n1", "manual", "n1", None));
        let s = run(&c, "static");
        assert!(s[0].is_success());
        assert_eq!(s[1].reasons, [REASON_BIND_CONFLICT]);
    }

    #[test]
    fn the_claims_to_annotate_are_the_unbound_delayed_ones() {
        let mut c = cluster(vec![]);
        c.volumes
            .upsert_class(class("lp", "pea.dev/local-path", "WaitForFirstConsumer"));
        c.volumes.upsert_claim(claim("a", "lp", None));
        c.volumes.upsert_claim(claim("b", "lp", Some("pv-b")));
        let p = pod(json!({"volumes": [
            {"name": "a", "persistentVolumeClaim": {"claimName": "a"}},
            {"name": "b", "persistentVolumeClaim": {"claimName": "b"}}]}));
        assert_eq!(
            claims_to_select(&p, &c, "n1"),
            [("default".to_string(), "a".to_string())]
        );
    }
}
