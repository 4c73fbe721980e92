//! The pure arithmetic of the Deployment controller (kube's `pkg/controller/deployment/util`):
//! surge/unavailable resolution with kube's rounding, the pod-template hash, revisions,
//! proportional scaling and the rollout conditions. No I/O here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations kube does not copy onto its ReplicaSets.
const SKIP_COPY: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

// Condition reasons, as kube spells them.
pub const NEW_RS_REASON: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
pub const RS_UPDATED_REASON: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
pub const PAUSED_REASON: &str = "DeploymentPaused";
pub const RESUMED_REASON: &str = "DeploymentResumed";
pub const FAILED_RS_CREATE_REASON: &str = "ReplicaSetCreateError";
pub const MIN_AVAILABLE_REASON: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE_REASON: &str = "MinimumReplicasUnavailable";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeploymentUtilError {
    #[error("invalid value for IntOrString: invalid type: string is not a percentage: {0:?}")]
    NotPercent(String),
}

/// kube's GetScaledValueFromIntOrPercent: an int as is, or `pct%` of `total`, rounded up or
/// down.
pub fn scaled_value(
    v: &IntOrString,
    total: i32,
    round_up: bool,
) -> Result<i32, DeploymentUtilError> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| DeploymentUtilError::NotPercent(s.clone()))?;
            let num = pct * i64::from(total);
            let v = if round_up {
                (num + 99).div_euclid(100)
            } else {
                num.div_euclid(100)
            };
            Ok(v as i32)
        }
    }
}

/// kube's ResolveFenceposts: surge rounds up, unavailable rounds down, and both zero becomes
/// one unavailable so a rollout can progress.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), DeploymentUtilError> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_status(
    rs: &ReplicaSet,
    f: impl Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>,
) -> i32 {
    rs.status.as_ref().and_then(f).unwrap_or(0)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs_status(rs, |s| s.available_replicas)
}

pub fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    // Defaults (25%/25%) are applied by the API server; absent here means 25% as well.
    let quarter = IntOrString::String("25%".into());
    let surge = ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&quarter);
    let unavail = ru
        .and_then(|r| r.max_unavailable.as_ref())
        .unwrap_or(&quarter);
    // Validation rejects malformed values; a bad one behaves as 0 rather than wedging the sync.
    resolve_fenceposts(Some(surge), Some(unavail), replicas(d)).unwrap_or((0, 1))
}

/// kube's MaxUnavailable: 0 for Recreate or no replicas, never above the replica count.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

/// kube's NewRSNewReplicas: how many replicas the new ReplicaSet may have now.
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let max_total = replicas(d) + max_surge(d);
    if current >= max_total {
        return rs_replicas(new_rs);
    }
    let up = (max_total - current).min(replicas(d) - rs_replicas(new_rs));
    rs_replicas(new_rs) + up
}

/// FNV-1a, 32 bits.
pub fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// kube's rand.SafeEncodeString: maps each byte into an alphabet without vowels (no words)
/// and without look-alike characters.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The pod-template-hash: kube's ComputeHash shape (FNV-32a over the template, then the
/// collision count as 8 little-endian bytes, the decimal sum safe-encoded). kube feeds the
/// template through Go's spew printer; we feed its JSON, so the values differ from kube's for
/// the same template, but they are stable, and unique per template in the same way.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut data = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&(c as u32).to_le_bytes());
        data.extend_from_slice(&b);
    }
    safe_encode(&fnv32a(&data).to_string())
}

/// Template equality ignoring the pod-template-hash label (kube's EqualIgnoreHash; nil and
/// empty label maps are equal as in apimachinery's semantic equality).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let norm = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        let meta = t.metadata.get_or_insert_with(Default::default);
        if let Some(l) = meta.labels.as_mut() {
            l.remove(HASH_LABEL);
            if l.is_empty() {
                meta.labels = None;
            }
        }
        if meta.annotations.as_ref().is_some_and(|a| a.is_empty()) {
            meta.annotations = None;
        }
        serde_json::to_value(t).unwrap_or_default()
    };
    norm(a) == norm(b)
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn max_revision(all: &[&ReplicaSet]) -> i64 {
    all.iter().map(|rs| revision(rs)).max().unwrap_or(0)
}

fn annotation_i32(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse().ok())
}

/// kube's SetReplicasAnnotations; true when something changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if a.get(k) != Some(&v) {
            a.insert(k.to_string(), v);
            changed = true;
        }
    }
    changed
}

/// kube's SetNewReplicaSetAnnotations: copies the Deployment's annotations, raises the
/// revision (keeping the old one in revision-history) and, for a new set, the replica
/// annotations. True when something changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let from: BTreeMap<String, String> = d.metadata.annotations.clone().unwrap_or_default();
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in &from {
        if SKIP_COPY.contains(&k.as_str()) {
            continue;
        }
        if a.get(k) != Some(v) {
            a.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    let old: Option<i64> = a.get(REVISION).and_then(|v| v.parse().ok());
    if old.is_none_or(|o| o < new_revision) {
        a.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let (Some(o), true) = (old, exists) {
            let hist = match a.get(REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{o}"),
                _ => o.to_string(),
            };
            a.insert(REVISION_HISTORY.into(), hist);
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

/// kube's IsSaturated: the new set has all replicas, says so, and all are available.
pub fn is_saturated(d: &Deployment, rs: &ReplicaSet) -> bool {
    rs_replicas(rs) == replicas(d)
        && annotation_i32(rs, DESIRED_REPLICAS) == Some(replicas(d))
        && rs_available(rs) == replicas(d)
}

/// The share of a scaling of `to_add` replicas that falls to `rs` (kube's getProportion with
/// getReplicaSetFraction; `added` is what earlier sets already took).
pub fn proportion(d: &Deployment, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = {
        if replicas(d) == 0 {
            -rs_replicas(rs)
        } else {
            let deployment_replicas = replicas(d) + max_surge(d);
            let annotated = annotation_i32(rs, MAX_REPLICAS).unwrap_or_else(|| {
                d.status
                    .as_ref()
                    .map(|s| s.replicas.unwrap_or(0))
                    .unwrap_or(0)
            });
            if annotated == 0 {
                0
            } else {
                let size = f64::from(rs_replicas(rs)) * f64::from(deployment_replicas)
                    / f64::from(annotated);
                // Go's math.Round: half away from zero, as f64::round.
                size.round() as i32 - rs_replicas(rs)
            }
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// The new replica counts of `sets` (active sets, any order) after a proportional scaling of
/// the Deployment (kube's scale() for RollingUpdate); returns (index, new replicas) per set.
pub fn proportional_scale(d: &Deployment, sets: &[&ReplicaSet]) -> Vec<(usize, i32)> {
    let allowed = if replicas(d) > 0 {
        replicas(d) + max_surge(d)
    } else {
        0
    };
    let current: i32 = sets.iter().map(|rs| rs_replicas(rs)).sum();
    let to_add = allowed - current;
    let mut order: Vec<usize> = (0..sets.len()).collect();
    let created = |i: usize| sets[i].metadata.creation_timestamp.as_ref().map(|t| t.0);
    if to_add > 0 {
        // ReplicaSetsBySizeNewer: larger first, then newer first.
        order.sort_by(|&a, &b| {
            rs_replicas(sets[b])
                .cmp(&rs_replicas(sets[a]))
                .then(created(b).cmp(&created(a)))
        });
    } else {
        // ReplicaSetsBySizeOlder: larger first, then older first.
        order.sort_by(|&a, &b| {
            rs_replicas(sets[b])
                .cmp(&rs_replicas(sets[a]))
                .then(created(a).cmp(&created(b)))
        });
    }
    let mut added = 0;
    let mut out: Vec<(usize, i32)> = Vec::new();
    for &i in &order {
        let p = if to_add != 0 {
            proportion(d, sets[i], to_add, added)
        } else {
            0
        };
        added += p;
        out.push((i, rs_replicas(sets[i]) + p));
    }
    if let Some(first) = out.first_mut() {
        if to_add != 0 {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    out
}

pub fn condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// kube's SetDeploymentCondition: same status and reason is no change; same status keeps the
/// transition time.
pub fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conds = s.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

pub fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = s.conditions.as_mut() {
        c.retain(|x| x.type_ != type_);
    }
}

pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    // kube: MaxInt32 means "no deadline".
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

/// kube's DeploymentComplete.
pub fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = replicas(d);
    s.updated_replicas.unwrap_or(0) == r
        && s.replicas.unwrap_or(0) == r
        && s.available_replicas.unwrap_or(0) == r
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// kube's DeploymentProgressing: any step forward since the last recorded status.
pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_old = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new_old < old_old
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

/// kube's DeploymentTimedOut.
pub fn deployment_timed_out(d: &Deployment, s: &DeploymentStatus, now: DateTime<Utc>) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = condition(s, "Progressing") else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE_REASON) => false,
        Some(TIMED_OUT_REASON) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0 + chrono::Duration::seconds(deadline.into()) < now),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, RollingUpdateDeployment,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn percent_rounding_as_kube() {
        // 25% of 10 = 2.5: surge rounds up to 3, unavailable down to 2.
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 10),
            Ok((3, 2))
        );
        // 25% of 3 = 0.75: 1 surge, 0 unavailable.
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 3),
            Ok((1, 0))
        );
        // Both zero: one unavailable so the rollout can move.
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&pct("10%")), 5),
            Ok((0, 1))
        );
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(2)), Some(&IntOrString::Int(1)), 5),
            Ok((2, 1))
        );
        assert_eq!(scaled_value(&pct("100%"), 7, false), Ok(7));
        assert_eq!(scaled_value(&pct("33%"), 10, true), Ok(4));
        assert_eq!(scaled_value(&pct("33%"), 10, false), Ok(3));
        assert!(scaled_value(&pct("3x"), 10, true).is_err());
    }

    fn deployment(replicas: i32, surge: IntOrString, unavail: IntOrString) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavail),
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn rs(name: &str, replicas: i32, annotations: &[(&str, &str)], created: i64) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                creation_timestamp: Some(Time(
                    DateTime::from_timestamp(1_700_000_000 + created, 0).unwrap(),
                )),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn max_unavailable_is_capped_and_zero_for_recreate() {
        let d = deployment(2, IntOrString::Int(0), IntOrString::Int(5));
        assert_eq!(max_unavailable(&d), 2);
        let mut r = deployment(4, IntOrString::Int(1), IntOrString::Int(1));
        r.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        assert_eq!((max_unavailable(&r), max_surge(&r)), (0, 0));
        let z = deployment(0, IntOrString::Int(1), IntOrString::Int(1));
        assert_eq!(max_unavailable(&z), 0);
    }

    #[test]
    fn new_replica_set_grows_within_the_surge() {
        // 10 replicas, surge 3 (25% up): old has 10, new 0 → new may have 3.
        let d = deployment(10, pct("25%"), pct("25%"));
        let old = rs("old", 10, &[], 0);
        let new = rs("new", 0, &[], 1);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 3);
        // Total already at 13: no growth.
        let new3 = rs("new", 3, &[], 1);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new3], &new3), 3);
        // Old down to 5, new at 3: room for 5 more, but never above 10.
        let old5 = rs("old", 5, &[], 0);
        assert_eq!(new_rs_new_replicas(&d, &[&old5, &new3], &new3), 8);
        let old0 = rs("old", 0, &[], 0);
        let new9 = rs("new", 9, &[], 1);
        assert_eq!(new_rs_new_replicas(&d, &[&old0, &new9], &new9), 10);
    }

    #[test]
    fn hash_is_fnv32a_safe_encoded() {
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
        assert_eq!(fnv32a(b"foobar"), 0xbf9c_f968);
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        let t = PodTemplateSpec::default();
        let h = compute_hash(&t, None);
        assert_eq!(h, safe_encode(&fnv32a(b"{}").to_string()));
        assert_ne!(
            h,
            compute_hash(&t, Some(1)),
            "the collision count changes the hash"
        );
        let mut data = b"{}".to_vec();
        data.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            compute_hash(&t, Some(1)),
            safe_encode(&fnv32a(&data).to_string())
        );
    }

    #[test]
    fn equality_ignores_the_hash_label() {
        let mut a = PodTemplateSpec::default();
        let mut b = PodTemplateSpec::default();
        a.metadata = Some(ObjectMeta {
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        });
        b.metadata = Some(ObjectMeta {
            labels: Some(
                [
                    ("app".to_string(), "web".to_string()),
                    (HASH_LABEL.to_string(), "abc".to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        });
        assert!(equal_ignore_hash(&a, &b));
        b.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("x".into(), "y".into());
        assert!(!equal_ignore_hash(&a, &b));
    }

    #[test]
    fn revisions_move_to_history() {
        let d = deployment(3, pct("25%"), pct("25%"));
        let mut old = rs("old", 0, &[(REVISION, "1")], 0);
        assert!(set_new_rs_annotations(&d, &mut old, 3, true));
        let a = old.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[REVISION], "3");
        assert_eq!(a[REVISION_HISTORY], "1");
        assert!(!set_new_rs_annotations(&d, &mut old, 3, true), "idempotent");
        let mut fresh = rs("new", 0, &[], 0);
        set_new_rs_annotations(&d, &mut fresh, 1, false);
        let a = fresh.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            (
                a[REVISION].as_str(),
                a[DESIRED_REPLICAS].as_str(),
                a[MAX_REPLICAS].as_str()
            ),
            ("1", "3", "4")
        );
    }

    #[test]
    fn proportional_scaling_as_kube() {
        // A rollout in progress: 10 replicas, surge 3 → sets annotated max 13 hold 8 and 5.
        // Scaling the Deployment to 20 (max 20 + 5 = 25) adds 12: 8*25/13 = 15.38 → 15 (+7),
        // 5*25/13 = 9.6 → 10 (+5).
        let mut d = deployment(20, pct("25%"), pct("25%"));
        let a = rs("a", 8, &[(MAX_REPLICAS, "13")], 0);
        let b = rs("b", 5, &[(MAX_REPLICAS, "13")], 1);
        let mut out = proportional_scale(&d, &[&a, &b]);
        out.sort();
        assert_eq!(out, vec![(0, 15), (1, 10)]);
        // Scaling down to 5 (max 5 + 2 = 7) removes 6: 8*7/13 = 4.3 → 4 (−4), 5*7/13 = 2.7
        // → 3 (−2).
        d.spec.as_mut().unwrap().replicas = Some(5);
        let mut out = proportional_scale(&d, &[&a, &b]);
        out.sort();
        assert_eq!(out, vec![(0, 4), (1, 3)]);
        // Leftovers go to the largest set: 3 sets of 1, scaled from max 3 to 4 (+1 each is
        // 1*4/3 = 1.33 → 1, +0), so the one extra lands on the first (newest on ties).
        d.spec.as_mut().unwrap().replicas = Some(4);
        d.spec
            .as_mut()
            .unwrap()
            .strategy
            .as_mut()
            .unwrap()
            .rolling_update = Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(0)),
            max_unavailable: Some(IntOrString::Int(1)),
        });
        let x = rs("x", 1, &[(MAX_REPLICAS, "3")], 0);
        let y = rs("y", 1, &[(MAX_REPLICAS, "3")], 1);
        let z = rs("z", 1, &[(MAX_REPLICAS, "3")], 2);
        let mut out = proportional_scale(&d, &[&x, &y, &z]);
        out.sort();
        assert_eq!(out, vec![(0, 1), (1, 1), (2, 2)]);
    }

    #[test]
    fn conditions_keep_transition_time_on_same_status() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let t1 = t0 + chrono::Duration::seconds(5);
        let mut s = DeploymentStatus::default();
        set_condition(
            &mut s,
            new_condition("Progressing", "True", NEW_RS_REASON, "a".into(), t0),
        );
        set_condition(
            &mut s,
            new_condition("Progressing", "True", RS_UPDATED_REASON, "b".into(), t1),
        );
        let c = condition(&s, "Progressing").unwrap();
        assert_eq!(c.reason.as_deref(), Some(RS_UPDATED_REASON));
        assert_eq!(c.last_transition_time, Some(Time(t0)));
        assert_eq!(c.last_update_time, Some(Time(t1)));
    }

    #[test]
    fn timed_out_after_the_deadline_since_last_progress() {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut d = deployment(1, pct("25%"), pct("25%"));
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(600);
        let mut s = DeploymentStatus::default();
        set_condition(
            &mut s,
            new_condition("Progressing", "True", RS_UPDATED_REASON, "x".into(), t0),
        );
        assert!(!deployment_timed_out(
            &d,
            &s,
            t0 + chrono::Duration::seconds(600)
        ));
        assert!(deployment_timed_out(
            &d,
            &s,
            t0 + chrono::Duration::seconds(601)
        ));
    }
}
