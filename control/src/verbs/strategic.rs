//! Strategic merge patch (application/strategic-merge-patch+json), as kubectl sends it for
//! built-in kinds: maps merge recursively, `null` deletes, lists with a merge key merge element
//! by element, other lists are replaced. Directives: `$patch` (replace, delete, merge),
//! `$retainKeys`, `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>`.
//!
//! The merge keys come from Kubernetes' Go struct tags (`patchMergeKey`), keyed by field name
//! and, where one name has two keys, by the parent field.

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StrategicError {
    #[error("strategic merge patch must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("unknown patch directive {directive:?} at {path}")]
    UnknownDirective { directive: String, path: String },
    #[error("list element at {path} lacks its merge key {key:?}")]
    MissingMergeKey { path: String, key: String },
}

/// How a list field merges.
#[derive(Debug, PartialEq, Eq)]
enum ListStrategy {
    Key(&'static str),
    /// A list of scalars merged as a set (e.g. finalizers).
    PrimitiveSet,
    Replace,
}

fn strategy(parent: &str, field: &str) -> ListStrategy {
    use ListStrategy::*;
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
        | "secrets"
        // Mutating/ValidatingWebhookConfiguration.webhooks.
        | "webhooks" => Key("name"),
        "ports"
            if matches!(
                parent,
                "containers" | "initContainers" | "ephemeralContainers"
            ) =>
        {
            Key("containerPort")
        }
        // ServiceSpec.ports; Endpoints' and EndpointSlice's ports are atomic lists.
        "ports" if parent == "spec" => Key("port"),
        // NodeStatus.addresses (EndpointSubset.addresses is atomic).
        "addresses" if parent == "status" => Key("type"),
        "podIPs" | "hostIPs" => Key("ip"),
        "volumeMounts" => Key("mountPath"),
        "volumeDevices" => Key("devicePath"),
        "hostAliases" => Key("ip"),
        "conditions" => Key("type"),
        "ownerReferences" => Key("uid"),
        "topologySpreadConstraints" => Key("topologyKey"),
        "finalizers" => PrimitiveSet,
        _ => Replace,
    }
}

/// The merge key of list `field` under `parent`, if the list merges element by element.
pub fn merge_key(parent: &str, field: &str) -> Option<&'static str> {
    match strategy(parent, field) {
        ListStrategy::Key(k) => Some(k),
        _ => None,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Applies `patch` to `original`.
pub fn apply(original: &Value, patch: &Value) -> Result<Value, StrategicError> {
    if !patch.is_object() {
        return Err(StrategicError::NotAnObject(type_name(patch)));
    }
    let mut out = original.clone();
    merge_map(&mut out, patch, "", "")?;
    Ok(out)
}

fn merge_map(
    target: &mut Value,
    patch: &Value,
    parent: &str,
    path: &str,
) -> Result<(), StrategicError> {
    let Some(pm) = patch.as_object() else {
        return Ok(());
    };
    match pm.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut clean = pm.clone();
            clean.remove("$patch");
            *target = Value::Object(clean);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(StrategicError::UnknownDirective {
                directive: other.into(),
                path: path.into(),
            })
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, pv) in pm {
        let here = format!("{path}.{k}");
        if k == "$patch" || k == "$retainKeys" {
            continue;
        }
        if let Some(list) = k.strip_prefix("$setElementOrder/") {
            if let Some(order) = pv.as_array() {
                orders.push((list.to_string(), order.clone()));
            }
            continue;
        }
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(t), Some(del)) = (
                target.get_mut(list).and_then(Value::as_array_mut),
                pv.as_array(),
            ) {
                t.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            return Err(StrategicError::UnknownDirective {
                directive: k.clone(),
                path: path.into(),
            });
        }
        let tm = target.as_object_mut().expect("made an object above");
        // `null` and `{"$patch": "delete"}` both remove the field.
        if pv.is_null() || pv.get("$patch").and_then(Value::as_str) == Some("delete") {
            tm.remove(k);
            continue;
        }
        match (tm.get_mut(k), pv) {
            (Some(tv @ Value::Object(_)), Value::Object(_)) => merge_map(tv, pv, k, &here)?,
            (Some(Value::Array(tl)), Value::Array(pl)) => {
                let merged = merge_list(std::mem::take(tl), pl, parent, k, &here)?;
                tm.insert(k.clone(), Value::Array(merged));
            }
            (None, Value::Object(_)) => {
                let mut fresh = Value::Object(Map::new());
                merge_map(&mut fresh, pv, k, &here)?;
                tm.insert(k.clone(), fresh);
            }
            (None, Value::Array(pl)) => {
                let merged = merge_list(Vec::new(), pl, parent, k, &here)?;
                tm.insert(k.clone(), Value::Array(merged));
            }
            _ => {
                tm.insert(k.clone(), pv.clone());
            }
        }
    }
    if let Some(keep) = pm.get("$retainKeys").and_then(Value::as_array) {
        if let Some(tm) = target.as_object_mut() {
            tm.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
        }
    }
    for (list, order) in orders {
        if let Some(items) = target.get_mut(&list).and_then(Value::as_array_mut) {
            let key = match strategy(parent, &list) {
                ListStrategy::Key(k) => Some(k),
                _ => None,
            };
            reorder(items, &order, key);
        }
    }
    Ok(())
}

/// Sorts `items` so those named in `order` come first, in that order (stable for the rest).
fn reorder(items: &mut [Value], order: &[Value], key: Option<&str>) {
    let pos = |v: &Value| {
        let id = match key {
            Some(k) => v.get(k),
            None => Some(v),
        };
        order
            .iter()
            .position(|o| match key {
                Some(k) => o.get(k) == id,
                None => Some(o) == id,
            })
            .unwrap_or(usize::MAX)
    };
    items.sort_by_key(pos);
}

fn merge_list(
    mut target: Vec<Value>,
    patch: &[Value],
    parent: &str,
    field: &str,
    path: &str,
) -> Result<Vec<Value>, StrategicError> {
    // A `{"$patch": "replace"}` element replaces the whole list with the other elements.
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|e| e.get("$patch").is_none())
            .cloned()
            .collect());
    }
    match strategy(parent, field) {
        ListStrategy::Replace => Ok(patch.to_vec()),
        ListStrategy::PrimitiveSet => {
            for p in patch {
                if !target.contains(p) {
                    target.push(p.clone());
                }
            }
            Ok(target)
        }
        ListStrategy::Key(key) => {
            for p in patch {
                let Some(id) = p.get(key) else {
                    return Err(StrategicError::MissingMergeKey {
                        path: path.into(),
                        key: key.into(),
                    });
                };
                let found = target.iter().position(|t| t.get(key) == Some(id));
                let delete = p.get("$patch").and_then(Value::as_str) == Some("delete");
                match (found, delete) {
                    (Some(i), true) => {
                        target.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => merge_map(&mut target[i], p, field, path)?,
                    (None, false) => {
                        let mut fresh = Value::Object(Map::new());
                        merge_map(&mut fresh, p, field, path)?;
                        target.push(fresh);
                    }
                }
            }
            Ok(target)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_merge_and_null_deletes() {
        let o = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let r = apply(&o, &json!({"metadata": {"labels": {"a": null, "c": "3"}}})).unwrap();
        assert_eq!(r, json!({"metadata": {"labels": {"b": "2", "c": "3"}}}));
    }

    #[test]
    fn containers_merge_by_name_and_delete_directive() {
        let o = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}});
        let p = json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "x:2"}, {"name": "c", "$patch": "delete"}]}});
        let r = apply(&o, &p).unwrap();
        assert_eq!(
            r["spec"]["containers"],
            json!([{"name": "b", "image": "y:1"}, {"name": "a", "image": "x:2"}])
        );
        let r = apply(
            &o,
            &json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}),
        )
        .unwrap();
        assert_eq!(
            r["spec"]["containers"],
            json!([{"name": "a", "image": "x:1"}])
        );
    }

    #[test]
    fn container_ports_merge_by_container_port() {
        let o = json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "http"}]}]}});
        let p = json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}]}]}});
        let r = apply(&o, &p).unwrap();
        assert_eq!(
            r["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}])
        );
    }

    #[test]
    fn merge_keys_follow_kubernetes_struct_tags() {
        // Node addresses merge by type, pod IPs by ip.
        let node = json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}]}});
        let r = apply(
            &node,
            &json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}}),
        )
        .unwrap();
        assert_eq!(
            r["status"]["addresses"],
            json!([{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n1"}])
        );
        let pod =
            json!({"status": {"podIPs": [{"ip": "10.1.0.5"}], "hostIPs": [{"ip": "10.0.0.1"}]}});
        let r = apply(
            &pod,
            &json!({"status": {"podIPs": [{"ip": "fd00::5"}], "hostIPs": [{"ip": "10.0.0.1"}]}}),
        )
        .unwrap();
        assert_eq!(
            r["status"]["podIPs"],
            json!([{"ip": "10.1.0.5"}, {"ip": "fd00::5"}])
        );
        assert_eq!(r["status"]["hostIPs"], json!([{"ip": "10.0.0.1"}]));
        // EndpointSlice ports (no `port` needed) and Endpoints subsets are replaced whole.
        let slice = json!({"ports": [{"name": "http", "port": 80}]});
        let r = apply(&slice, &json!({"ports": [{"name": "all"}]})).unwrap();
        assert_eq!(r["ports"], json!([{"name": "all"}]));
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]});
        let r = apply(
            &ep,
            &json!({"subsets": [{"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 81}]}]}),
        )
        .unwrap();
        assert_eq!(
            r["subsets"],
            json!([{"addresses": [{"ip": "10.0.0.2"}], "ports": [{"port": 81}]}])
        );
        // Service ports still merge by port.
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}]}});
        let r = apply(
            &svc,
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
        )
        .unwrap();
        assert_eq!(
            r["spec"]["ports"],
            json!([{"port": 80, "name": "http", "targetPort": 8080}])
        );
    }

    #[test]
    fn delete_directive_on_a_map_removes_the_field() {
        let o = json!({"spec": {"selector": {"a": "1"}, "x": 1}});
        let r = apply(&o, &json!({"spec": {"selector": {"$patch": "delete"}}})).unwrap();
        assert_eq!(r, json!({"spec": {"x": 1}}));
    }

    #[test]
    fn replace_retain_keys_and_primitive_lists() {
        let o = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}, "args": ["a"]},
            "metadata": {"finalizers": ["x", "y"]}});
        let p = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}, "args": ["b"]},
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"], "finalizers": ["z"]}});
        let r = apply(&o, &p).unwrap();
        assert_eq!(r["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(r["spec"]["args"], json!(["b"]));
        assert_eq!(r["metadata"]["finalizers"], json!(["y", "z"]));
        let r = apply(&o, &json!({"spec": {"$patch": "replace", "x": 1}})).unwrap();
        assert_eq!(r["spec"], json!({"x": 1}));
        assert!(apply(&o, &json!([1])).is_err());
        assert!(apply(&o, &json!({"spec": {"$bogus": 1}})).is_err());
    }
}
