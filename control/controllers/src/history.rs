//! ControllerRevisions as kube's `pkg/controller/history` makes them: a revision holds a patch
//! that restores the owner's pod template (`{"spec":{"template":{…,"$patch":"replace"}}}`, what
//! `kubectl rollout undo` applies), a revision number, the owner's template labels plus
//! `controller.kubernetes.io/hash`, and is named `<owner>-<hash>` where the hash is FNV-32 over
//! the patch and the collision count.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{json, Value};

use crate::deployment_util::safe_encode;

/// The label carrying a revision's hash.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// Go's hash/fnv New32 (FNV-1, not FNV-1a).
pub fn fnv32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(*b);
    }
    h
}

/// kube's HashControllerRevision: FNV-32 of the raw data, then the collision count in decimal.
pub fn hash(data: &[u8], collision_count: Option<i32>) -> String {
    let mut bytes = data.to_vec();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    safe_encode(&fnv32(&bytes).to_string())
}

/// `<prefix>-<hash>`, the prefix cut so the name stays within 253 characters.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let mut p = prefix.to_string();
    if p.len() > 223 {
        p.truncate(223);
    }
    format!("{p}-{hash}")
}

/// The patch a revision stores for a pod template (keys sorted, as Go's json.Marshal of a map).
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut t {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template a revision restores, if its data is a template patch.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Value::Object(m) = &mut t {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// The raw bytes the hash is computed over.
pub fn data_bytes(rev: &ControllerRevision) -> Vec<u8> {
    rev.data
        .as_ref()
        .and_then(|d| serde_json::to_vec(&d.0).ok())
        .unwrap_or_default()
}

/// kube's EqualRevision: same data (the hash label only short-cuts a difference).
pub fn equal(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    a.data.as_ref().map(|d| &d.0) == b.data.as_ref().map(|d| &d.0)
}

/// Sorted by revision number, then name (kube's SortControllerRevisions uses creation time and
/// name as tie breakers; names are unique, which is what matters for a stable order).
pub fn sort(revs: &mut [Arc<ControllerRevision>]) {
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp)
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The revision number after the highest one (1 for the first).
pub fn next_revision(revs: &[Arc<ControllerRevision>]) -> i64 {
    revs.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// A revision of `data` numbered `revision` (name and hash label filled by [`named`]).
pub fn new_revision(data: Value, revision: i64) -> ControllerRevision {
    ControllerRevision {
        data: Some(RawExtension(data)),
        revision,
        ..Default::default()
    }
}

/// Names a revision and sets its hash label for a collision count.
pub fn named(mut rev: ControllerRevision, owner: &str, collision_count: i32) -> ControllerRevision {
    let h = hash(&data_bytes(&rev), Some(collision_count));
    rev.metadata.name = Some(revision_name(owner, &h));
    rev.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), h);
    rev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1_matches_go() {
        // Go: fnv.New32() over "" is the offset basis; over "a" is 0x050c5d7e.
        assert_eq!(fnv32(b""), 0x811c_9dc5);
        assert_eq!(fnv32(b"a"), 0x050c_5d7e);
        assert_eq!(fnv32(b"foobar"), 0x31f0_b262);
    }

    #[test]
    fn hash_changes_with_the_collision_count_and_names_are_bounded() {
        assert_ne!(hash(b"x", Some(0)), hash(b"x", Some(1)));
        // The count is written in decimal after the data: "x" + "10" == "x1" + "0".
        assert_eq!(hash(b"x", Some(10)), hash(b"x1", Some(0)));
        let long = "s".repeat(300);
        assert_eq!(revision_name(&long, "abc").len(), 223 + 4);
    }

    #[test]
    fn template_patch_round_trips() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}
        }))
        .unwrap();
        let patch = template_patch(&t);
        assert_eq!(patch["spec"]["template"]["$patch"], "replace");
        // Keys sorted: "$patch" first, as Go marshals a map.
        let raw = serde_json::to_string(&patch).unwrap();
        assert!(
            raw.starts_with(r#"{"spec":{"template":{"$patch":"replace","metadata""#),
            "{raw}"
        );
        let rev = named(new_revision(patch, 3), "db", 0);
        assert_eq!(template_of(&rev), Some(t));
        assert!(rev.metadata.name.as_deref().unwrap().starts_with("db-"));
        assert_eq!(
            rev.metadata.labels.as_ref().unwrap()[HASH_LABEL],
            rev.metadata.name.as_deref().unwrap()["db-".len()..]
        );
    }
}
