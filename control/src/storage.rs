//! The storage kinds' server-side rules: PersistentVolume, PersistentVolumeClaim and StorageClass
//! validation as kube-apiserver's pkg/apis/{core,storage}/validation checks them, and the
//! DefaultStorageClass admission plugin (a claim that names no class gets the default one).

use serde_json::{json, Value};

use crate::semantic::Cause;

/// The annotation that marks a StorageClass as the cluster default (and its beta spelling).
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

const ACCESS_MODES: [&str; 4] = [
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

/// PersistentVolumeSpec fields that are not the volume source.
const PV_SPEC_FIELDS: [&str; 9] = [
    "capacity",
    "accessModes",
    "claimRef",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "mountOptions",
    "volumeMode",
    "nodeAffinity",
    "volumeAttributesClassName",
];

fn supported(value: &str, values: &[&str]) -> String {
    let list: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!(
        "Unsupported value: {value:?}: supported values: {}",
        list.join(", ")
    )
}

fn str_at<'a>(obj: &'a Value, ptr: &str) -> Option<&'a str> {
    obj.pointer(ptr).and_then(Value::as_str)
}

/// Every semantic problem of a storage object (empty when valid; other kinds are valid here).
pub fn check(kind: &str, obj: &Value, out: &mut Vec<Cause>) {
    match kind {
        "PersistentVolume" => persistent_volume(obj, out),
        "PersistentVolumeClaim" => claim_spec(obj.get("spec"), "spec", out),
        "StorageClass" => storage_class(obj, out),
        _ => {}
    }
}

fn access_modes(modes: Option<&Value>, at: &str, required: &str, out: &mut Vec<Cause>) {
    let modes = modes
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if modes.is_empty() {
        out.push((format!("{at}.accessModes"), required.into()));
    }
    for m in modes {
        let m = m.as_str().unwrap_or_default();
        if !ACCESS_MODES.contains(&m) {
            out.push((format!("{at}.accessModes"), supported(m, &ACCESS_MODES)));
        }
    }
    if modes.len() > 1 && modes.iter().any(|m| m == "ReadWriteOncePod") {
        out.push((
            format!("{at}.accessModes"),
            "Forbidden: may not use ReadWriteOncePod with other access modes".into(),
        ));
    }
}

fn volume_mode(spec: &Value, at: &str, out: &mut Vec<Cause>) {
    if let Some(m) = str_at(spec, "/volumeMode") {
        if !matches!(m, "Block" | "Filesystem") {
            out.push((
                format!("{at}.volumeMode"),
                supported(m, &["Block", "Filesystem"]),
            ));
        }
    }
}

fn class_name(spec: &Value, at: &str, out: &mut Vec<Cause>) {
    if let Some(c) = str_at(spec, "/storageClassName").filter(|c| !c.is_empty()) {
        if !crate::validation::is_dns_subdomain(c) {
            out.push((format!("{at}.storageClassName"), format!("Invalid value: {c:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")));
        }
    }
}

fn persistent_volume(obj: &Value, out: &mut Vec<Cause>) {
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    access_modes(spec.get("accessModes"), "spec", "Required value", out);
    match spec.get("capacity").and_then(Value::as_object) {
        None => out.push(("spec.capacity".into(), "Required value".into())),
        Some(c) if c.is_empty() => out.push(("spec.capacity".into(), "Required value".into())),
        Some(c) => {
            for (name, q) in c {
                if name != "storage" {
                    out.push(("spec.capacity".into(), supported(name, &["storage"])));
                    continue;
                }
                quantity(q, "spec.capacity[storage]", out);
            }
        }
    }
    if let Some(p) = str_at(&spec, "/persistentVolumeReclaimPolicy") {
        let policies = ["Delete", "Recycle", "Retain"];
        if !policies.contains(&p) {
            out.push((
                "spec.persistentVolumeReclaimPolicy".into(),
                supported(p, &policies),
            ));
        }
    }
    class_name(&spec, "spec", out);
    volume_mode(&spec, "spec", out);
    let sources: Vec<&String> = spec
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| !PV_SPEC_FIELDS.contains(&k.as_str()) && !v.is_null())
        .map(|(k, _)| k)
        .collect();
    match sources.as_slice() {
        [] => out.push((
            "spec".into(),
            "Required value: must specify a volume type".into(),
        )),
        [_] => {}
        [_, rest @ ..] => {
            for k in rest {
                out.push((
                    format!("spec.{k}"),
                    "Forbidden: may not specify more than 1 volume type".into(),
                ));
            }
        }
    }
    for source in ["hostPath", "local"] {
        if spec.get(source).is_some()
            && str_at(&spec, &format!("/{source}/path"))
                .unwrap_or("")
                .is_empty()
        {
            out.push((format!("spec.{source}.path"), "Required value".into()));
        }
    }
    if let Some(t) = str_at(&spec, "/hostPath/type") {
        let types = [
            "",
            "BlockDevice",
            "CharDevice",
            "Directory",
            "DirectoryOrCreate",
            "File",
            "FileOrCreate",
            "Socket",
        ];
        if !types.contains(&t) {
            out.push(("spec.hostPath.type".into(), supported(t, &types)));
        }
    }
    match spec.get("nodeAffinity") {
        Some(a) if !a.is_null() => {
            let terms = a
                .pointer("/required/nodeSelectorTerms")
                .and_then(Value::as_array);
            if a.get("required").is_some() && terms.is_none_or(|t| t.is_empty()) {
                out.push((
                    "spec.nodeAffinity.required.nodeSelectorTerms".into(),
                    "Required value: must have at least one node selector term".into(),
                ));
            }
        }
        _ if spec.get("local").is_some() => out.push((
            "spec.nodeAffinity".into(),
            "Required value: Local volume requires node affinity".into(),
        )),
        _ => {}
    }
}

fn quantity(q: &Value, at: &str, out: &mut Vec<Cause>) {
    match q.as_str().and_then(crate::qos::nano_units) {
        None => out.push((at.into(), format!("Invalid value: {q}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))),
        Some(n) if n < 0 => out.push((at.into(), format!("Invalid value: {q}: must be greater than or equal to 0"))),
        Some(_) => {}
    }
}

/// A claim's spec (also a StatefulSet's volumeClaimTemplates' specs).
pub fn claim_spec(spec: Option<&Value>, at: &str, out: &mut Vec<Cause>) {
    let spec = spec.cloned().unwrap_or(json!({}));
    access_modes(
        spec.get("accessModes"),
        at,
        "Required value: at least 1 access mode is required",
        out,
    );
    let field = format!("{at}.resources[storage]");
    match spec.pointer("/resources/requests/storage") {
        None => out.push((field, "Required value".into())),
        Some(q) => match q.as_str().and_then(crate::qos::nano_units) {
            Some(n) if n <= 0 => out.push((
                field,
                format!("Invalid value: {q}: must be greater than zero"),
            )),
            _ => quantity(q, &field, out),
        },
    }
    class_name(&spec, at, out);
    volume_mode(&spec, at, out);
}

fn storage_class(obj: &Value, out: &mut Vec<Cause>) {
    if str_at(obj, "/provisioner").unwrap_or("").is_empty() {
        out.push(("provisioner".into(), "Required value".into()));
    }
    if let Some(p) = str_at(obj, "/reclaimPolicy") {
        if !matches!(p, "Delete" | "Retain") {
            out.push(("reclaimPolicy".into(), supported(p, &["Delete", "Retain"])));
        }
    }
    if let Some(m) = str_at(obj, "/volumeBindingMode") {
        if !matches!(m, "Immediate" | "WaitForFirstConsumer") {
            out.push((
                "volumeBindingMode".into(),
                supported(m, &["Immediate", "WaitForFirstConsumer"]),
            ));
        }
    }
}

/// Fields an update may not change.
pub fn check_update(kind: &str, old: &Value, new: &Value, out: &mut Vec<Cause>) {
    match kind {
        "StorageClass" => {
            for f in ["parameters", "provisioner", "reclaimPolicy"] {
                if old.get(f) != new.get(f) {
                    out.push((
                        f.into(),
                        format!("Forbidden: updates to {f} are forbidden."),
                    ));
                }
            }
            if old.get("volumeBindingMode") != new.get("volumeBindingMode") {
                let v = new.get("volumeBindingMode").cloned().unwrap_or(Value::Null);
                out.push((
                    "volumeBindingMode".into(),
                    format!("Invalid value: {v}: field is immutable"),
                ));
            }
        }
        "PersistentVolumeClaim" => {
            // Only the requested size may change (expansion), and the binder fills volumeName
            // once (ValidatePersistentVolumeClaimUpdate).
            let strip = |o: &Value, keep_name: bool| {
                let mut s = o.get("spec").cloned().unwrap_or(json!({}));
                if let Some(m) = s.as_object_mut() {
                    if let Some(r) = m.get_mut("resources").and_then(Value::as_object_mut) {
                        r.remove("requests");
                    }
                    m.remove("volumeAttributesClassName");
                    if !keep_name {
                        m.remove("volumeName");
                    }
                }
                s
            };
            let was_unbound = str_at(old, "/spec/volumeName").unwrap_or("").is_empty();
            if strip(old, !was_unbound) != strip(new, !was_unbound) {
                out.push(("spec".into(), "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".into()));
            }
        }
        "PersistentVolume" => {
            let source = |o: &Value| -> Value {
                let mut s = o.get("spec").cloned().unwrap_or(json!({}));
                if let Some(m) = s.as_object_mut() {
                    m.retain(|k, _| !PV_SPEC_FIELDS.contains(&k.as_str()));
                }
                s
            };
            if source(old) != source(new) {
                out.push((
                    "spec.persistentvolumesource".into(),
                    "Forbidden: spec.persistentvolumesource is immutable after creation".into(),
                ));
            }
            for f in ["volumeMode", "nodeAffinity"] {
                let ptr = format!("/spec/{f}");
                if old.pointer(&ptr).is_some() && old.pointer(&ptr) != new.pointer(&ptr) {
                    let v = new.pointer(&ptr).cloned().unwrap_or(Value::Null);
                    out.push((
                        format!("spec.{f}"),
                        format!("Invalid value: {v}: field is immutable"),
                    ));
                }
            }
        }
        _ => {}
    }
}

/// Whether a StorageClass carries the default-class annotation.
pub fn is_default_class(class: &Value) -> bool {
    [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
        .iter()
        .any(|a| {
            class
                .pointer("/metadata/annotations")
                .and_then(|m| m.get(*a))
                .and_then(Value::as_str)
                == Some("true")
        })
}

/// The default class among `classes`: of several, the newest (then the name first in order),
/// as kube's `GetDefaultClass` picks since 1.26.
pub fn default_class(classes: &[Value]) -> Option<&Value> {
    classes
        .iter()
        .filter(|c| is_default_class(c))
        .max_by(|a, b| {
            let ts = |c: &Value| {
                str_at(c, "/metadata/creationTimestamp")
                    .unwrap_or_default()
                    .to_string()
            };
            let name = |c: &Value| str_at(c, "/metadata/name").unwrap_or_default().to_string();
            ts(a).cmp(&ts(b)).then_with(|| name(b).cmp(&name(a)))
        })
}

/// DefaultStorageClass admission: a new claim without `storageClassName` (absent, not "") gets
/// the default class's name, when there is one.
pub async fn admit_claim(
    api: &crate::api::Api,
    obj: &mut Value,
) -> Result<(), crate::status::ApiError> {
    if obj
        .pointer("/spec/storageClassName")
        .is_some_and(|c| !c.is_null())
    {
        return Ok(());
    }
    // The beta annotation names a class too (kube honours it instead of the field).
    if obj
        .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .is_some()
    {
        return Ok(());
    }
    let Some(def) = api.resources.find("storage.k8s.io", "v1", "storageclasses") else {
        return Ok(());
    };
    let prefix = def.prefix(None);
    let page = api
        .store
        .list(&prefix, &Default::default())
        .await
        .map_err(|e| {
            crate::status::ApiError::from_store(e, "storage.k8s.io", "storageclasses", "")
        })?;
    let classes: Vec<Value> = page
        .items
        .iter()
        .filter_map(|kv| crate::objects::decode(kv).ok())
        .collect();
    if let Some(name) = default_class(&classes).and_then(|c| str_at(c, "/metadata/name")) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("storageClassName".into(), json!(name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(kind: &str, obj: Value) -> Vec<String> {
        let mut out = Vec::new();
        check(kind, &obj, &mut out);
        out.into_iter().map(|(f, m)| format!("{f}: {m}")).collect()
    }

    #[test]
    fn persistent_volumes_need_capacity_modes_and_one_source() {
        assert_eq!(
            causes("PersistentVolume", json!({"spec": {}})),
            [
                "spec.accessModes: Required value",
                "spec.capacity: Required value",
                "spec: Required value: must specify a volume type",
            ]
        );
        let ok = json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/data", "type": ""}, "persistentVolumeReclaimPolicy": "Retain"}});
        assert!(causes("PersistentVolume", ok).is_empty());
        let two = json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["RWO"],
            "hostPath": {"path": "/a"}, "nfs": {"server": "s", "path": "/b"}}});
        assert_eq!(
            causes("PersistentVolume", two),
            [
                "spec.accessModes: Unsupported value: \"RWO\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
                "spec.nfs: Forbidden: may not specify more than 1 volume type",
            ]
        );
        let local = json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "local": {"path": "/mnt/disk"}}});
        assert_eq!(
            causes("PersistentVolume", local),
            ["spec.nodeAffinity: Required value: Local volume requires node affinity"]
        );
    }

    #[test]
    fn claims_need_modes_and_a_positive_size() {
        assert_eq!(
            causes("PersistentVolumeClaim", json!({"spec": {}})),
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value",
            ]
        );
        let zero = json!({"spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "0"}}, "volumeMode": "Raw"}});
        assert_eq!(
            causes("PersistentVolumeClaim", zero),
            [
                "spec.resources[storage]: Invalid value: \"0\": must be greater than zero",
                "spec.volumeMode: Unsupported value: \"Raw\": supported values: \"Block\", \"Filesystem\"",
            ]
        );
    }

    #[test]
    fn storage_classes_need_a_provisioner_and_keep_it() {
        assert_eq!(
            causes("StorageClass", json!({"volumeBindingMode": "Later"})),
            [
                "provisioner: Required value",
                "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"",
            ]
        );
        let mut out = Vec::new();
        check_update(
            "StorageClass",
            &json!({"provisioner": "a", "volumeBindingMode": "Immediate"}),
            &json!({"provisioner": "b", "volumeBindingMode": "Immediate"}),
            &mut out,
        );
        assert_eq!(out[0].1, "Forbidden: updates to provisioner are forbidden.");
    }

    #[test]
    fn claim_updates_may_only_bind_and_resize() {
        let old = json!({"spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "x"}});
        let mut bound = old.clone();
        bound["spec"]["volumeName"] = json!("pv-1");
        bound["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        let mut out = Vec::new();
        check_update("PersistentVolumeClaim", &old, &bound, &mut out);
        assert!(out.is_empty(), "{out:?}");
        let mut rebound = bound.clone();
        rebound["spec"]["volumeName"] = json!("pv-2");
        check_update("PersistentVolumeClaim", &bound, &rebound, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn the_newest_default_class_wins() {
        let class = |name: &str, ts: &str, default: bool| {
            json!({"metadata": {"name": name, "creationTimestamp": ts,
                "annotations": {DEFAULT_CLASS_ANNOTATION: default.to_string()}}})
        };
        let classes = [
            class("old", "2024-01-01T00:00:00Z", true),
            class("new", "2025-01-01T00:00:00Z", true),
            class("newest-not-default", "2026-01-01T00:00:00Z", false),
        ];
        assert_eq!(default_class(&classes).unwrap()["metadata"]["name"], "new");
        assert!(default_class(&classes[2..]).is_none());
    }
}
