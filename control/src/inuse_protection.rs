//! kube-apiserver's StorageObjectInUseProtection admission: a new PersistentVolumeClaim gets
//! the `kubernetes.io/pvc-protection` finalizer and a new PersistentVolume the
//! `kubernetes.io/pv-protection` one, so deleting either while it is in use leaves it
//! Terminating until the pvc-protection / pv-protection controllers remove them.

use serde_json::{json, Value};

use crate::api::Ctx;

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// Adds the kind's protection finalizer to a new claim or volume (once).
pub fn admit_new(ctx: &Ctx<'_>, obj: &mut Value) {
    let finalizer = match ctx.def.kind {
        "PersistentVolumeClaim" => PVC_PROTECTION,
        "PersistentVolume" => PV_PROTECTION,
        _ => return,
    };
    add_finalizer(obj, finalizer);
}

fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut() {
        if !list.iter().any(|f| f == finalizer) {
            list.push(json!(finalizer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_finalizer_once_beside_others() {
        let mut claim = json!({"metadata": {"name": "c", "finalizers": ["example.com/keep"]}});
        add_finalizer(&mut claim, PVC_PROTECTION);
        add_finalizer(&mut claim, PVC_PROTECTION);
        assert_eq!(
            claim["metadata"]["finalizers"],
            json!(["example.com/keep", PVC_PROTECTION])
        );
    }
}
