//! kube's ControllerRefManager (`pkg/controller/controller_ref_manager.go`) for any namespaced
//! kind: which objects an owner keeps, adopts (an orphan its selector matches) or releases
//! (its own that the selector stopped matching), and the adopting and releasing patches.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::podutil::{self, controller_of};

/// What an owner does with one object (kube's ClaimObject).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Controlled by the owner and selected: keep it.
    Owned,
    /// An orphan the owner selects: adopt it, then keep it.
    Adopt,
    /// Controlled by the owner but no longer selected: release it.
    Release,
    /// Someone else's, or not to be touched.
    Ignore,
}

/// kube's ClaimObject decision for `obj` against an owner with `owner_uid`; `selected` is
/// whether the owner's selector matches the object's labels.
pub fn decide(
    obj: &ObjectMeta,
    owner: &ObjectMeta,
    selected: impl Fn(&BTreeMap<String, String>) -> bool,
) -> Claim {
    let owner_deleting = owner.deletion_timestamp.is_some();
    match controller_of(obj) {
        Some(r) if Some(&r.uid) != owner.uid.as_ref() => Claim::Ignore,
        Some(_) if selected(podutil::labels(obj)) => Claim::Owned,
        // Owned but no longer selected: released, unless the owner is going away.
        Some(_) if owner_deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner_deleting
            || obj.deletion_timestamp.is_some()
            || obj.namespace != owner.namespace =>
        {
            Claim::Ignore
        }
        None if selected(podutil::labels(obj)) => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// Adds `controller` to `obj`'s ownerReferences (a JSON patch that fails if the object or its
/// references changed since it was read).
pub async fn adopt<K>(api: &Api<K>, obj: &K, controller: OwnerReference) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut refs = obj.meta().owner_references.clone().unwrap_or_default();
    refs.push(controller);
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(podutil::owner_patch(obj.meta(), refs)),
    )
    .await
}

/// Removes the reference to `owner_uid` from `obj`'s ownerReferences.
pub async fn release<K>(api: &Api<K>, obj: &K, owner_uid: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let refs: Vec<OwnerReference> = obj
        .meta()
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner_uid)
        .cloned()
        .collect();
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(podutil::owner_patch(obj.meta(), refs)),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ns: &str, owner: Option<&str>, app: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some("x".into()),
            namespace: Some(ns.into()),
            uid: Some(format!("uid-{app}")),
            labels: Some([("app".to_string(), app.to_string())].into()),
            owner_references: owner.map(|uid| {
                vec![OwnerReference {
                    uid: uid.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn follows_kube_claim_object() {
        let owner = ObjectMeta {
            namespace: Some("ns".into()),
            uid: Some("me".into()),
            ..Default::default()
        };
        let sel = |l: &BTreeMap<String, String>| l.get("app").map(String::as_str) == Some("a");
        assert_eq!(
            decide(&meta("ns", Some("me"), "a"), &owner, sel),
            Claim::Owned
        );
        assert_eq!(
            decide(&meta("ns", Some("me"), "b"), &owner, sel),
            Claim::Release
        );
        assert_eq!(
            decide(&meta("ns", Some("you"), "a"), &owner, sel),
            Claim::Ignore
        );
        assert_eq!(decide(&meta("ns", None, "a"), &owner, sel), Claim::Adopt);
        assert_eq!(decide(&meta("ns", None, "b"), &owner, sel), Claim::Ignore);
        assert_eq!(
            decide(&meta("other", None, "a"), &owner, sel),
            Claim::Ignore
        );
        let mut going = meta("ns", None, "a");
        going.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            chrono::Utc::now(),
        ));
        assert_eq!(decide(&going, &owner, sel), Claim::Ignore);
        let mut deleting_owner = owner.clone();
        deleting_owner.deletion_timestamp = going.deletion_timestamp.clone();
        assert_eq!(
            decide(&meta("ns", None, "a"), &deleting_owner, sel),
            Claim::Ignore
        );
        assert_eq!(
            decide(&meta("ns", Some("me"), "b"), &deleting_owner, sel),
            Claim::Ignore
        );
    }
}
