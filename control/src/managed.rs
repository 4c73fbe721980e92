//! Field ownership for server-side apply: the set of fields a manager set, in Kubernetes'
//! `FieldsV1` form (`f:<field>`, `k:{"<key>":<value>}` for list items merged by key, `.` for
//! the item itself), stored in `metadata.managedFields`.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::verbs::strategic::merge_key;

/// A path to one owned field, e.g. `["f:spec", "f:replicas"]`.
pub type FieldPath = Vec<String>;

/// Every owned path of `obj` (an applied configuration or an object).
pub fn paths_of(obj: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            match k.as_str() {
                "apiVersion" | "kind" | "status" => {}
                "metadata" => {
                    for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
                        if let Some(x) = v.get(field) {
                            walk(
                                x,
                                "metadata",
                                field,
                                vec!["f:metadata".into(), format!("f:{field}")],
                                &mut out,
                            );
                        }
                    }
                }
                _ => walk(v, "", k, vec![format!("f:{k}")], &mut out),
            }
        }
    }
    out
}

fn item_key(key: &str, item: &Value) -> Option<String> {
    item.get(key).map(|id| format!("k:{}", json!({ key: id })))
}

fn walk(v: &Value, parent: &str, field: &str, path: FieldPath, out: &mut BTreeSet<FieldPath>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(format!("f:{k}"));
                walk(child, field, k, p, out);
            }
        }
        Value::Array(items) if !items.is_empty() => match merge_key(parent, field) {
            Some(key) => {
                for item in items {
                    let Some(id) = item_key(key, item) else {
                        out.insert(path.clone());
                        continue;
                    };
                    let mut p = path.clone();
                    p.push(id);
                    let mut dot = p.clone();
                    dot.push(".".into());
                    out.insert(dot);
                    if let Some(m) = item.as_object() {
                        for (k, child) in m {
                            let mut c = p.clone();
                            c.push(format!("f:{k}"));
                            walk(child, field, k, c, out);
                        }
                    }
                }
            }
            None => {
                out.insert(path);
            }
        },
        _ => {
            out.insert(path);
        }
    }
}

/// Every owned path under `status` (what an apply to the status subresource owns).
pub fn status_paths(obj: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    if let Some(st) = obj.get("status") {
        walk(st, "", "status", vec!["f:status".into()], &mut out);
    }
    out
}

/// The value at `path` in `obj` (`.` names the list item itself).
pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        if seg == "." {
            return Some(cur);
        }
        cur = step(cur, seg)?;
    }
    Some(cur)
}

fn step<'a>(cur: &'a Value, seg: &str) -> Option<&'a Value> {
    if let Some(f) = seg.strip_prefix("f:") {
        return cur.get(f);
    }
    let want: Value = serde_json::from_str(seg.strip_prefix("k:")?).ok()?;
    let (k, id) = want.as_object()?.iter().next()?;
    cur.as_array()?.iter().find(|item| item.get(k) == Some(id))
}

/// Removes the field or list item at `path` from `obj`.
pub fn remove_at(obj: &mut Value, path: &[String]) {
    let path: Vec<&String> = path.iter().filter(|s| s.as_str() != ".").collect();
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parents {
        let next = if let Some(f) = seg.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            let Some(want) = seg
                .strip_prefix("k:")
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
            else {
                return;
            };
            let Some((k, id)) = want
                .as_object()
                .and_then(|m| m.iter().next())
                .map(|(k, v)| (k.clone(), v.clone()))
            else {
                return;
            };
            cur.as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| i.get(&k) == Some(&id)))
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(want) = last
        .strip_prefix("k:")
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
    {
        if let (Some((k, id)), Some(a)) = (
            want.as_object().and_then(|m| m.iter().next()),
            cur.as_array_mut(),
        ) {
            a.retain(|i| i.get(k) != Some(id));
        }
    }
}

/// Encodes paths as a FieldsV1 object.
pub fn to_fields_v1(paths: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut cur = &mut root;
        for seg in p {
            let next = cur.entry(seg.clone()).or_insert_with(|| json!({}));
            cur = next.as_object_mut().expect("fields are objects");
        }
    }
    Value::Object(root)
}

/// Decodes a FieldsV1 object into leaf paths.
pub fn from_fields_v1(v: &Value) -> BTreeSet<FieldPath> {
    fn rec(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    rec(child, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    rec(v, &mut Vec::new(), &mut out);
    out
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    /// "" for the main resource, "status" for the status subresource.
    pub subresource: String,
    pub api_version: String,
    pub time: String,
    pub fields: BTreeSet<FieldPath>,
}

pub fn read(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or("").into(),
                    operation: e["operation"].as_str().unwrap_or("Update").into(),
                    subresource: e["subresource"].as_str().unwrap_or("").into(),
                    api_version: e["apiVersion"].as_str().unwrap_or("").into(),
                    time: e["time"].as_str().unwrap_or("").into(),
                    fields: from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn write(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields)});
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(m) = obj["metadata"].as_object_mut() {
        if list.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Records a non-apply write by `manager`: the fields it changed become its own.
pub fn record_update(
    current: &Value,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    time: &str,
) {
    let mut entries = read(current);
    let changed: BTreeSet<FieldPath> = paths_of(new)
        .into_iter()
        .filter(|p| value_at(new, p) != value_at(current, p))
        .collect();
    if changed.is_empty() {
        write(new, &entries);
        return;
    }
    for e in &mut entries {
        if !(e.manager == manager && e.operation == "Update" && e.subresource.is_empty()) {
            e.fields.retain(|p| !changed.contains(p));
        }
    }
    match entries
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Update")
    {
        Some(e) => {
            e.fields.extend(changed);
            e.time = time.into();
        }
        None => entries.push(Entry {
            manager: manager.into(),
            operation: "Update".into(),
            subresource: String::new(),
            api_version: api_version.into(),
            time: time.into(),
            fields: changed,
        }),
    }
    write(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_use_merge_keys_and_round_trip_through_fields_v1() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "1"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "x", "args": ["1"]}]}}}});
        let p = paths_of(&obj);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(p.contains(&s(&["f:metadata", "f:labels", "f:a"])));
        assert!(p.contains(&s(&["f:spec", "f:replicas"])));
        assert!(p.contains(&s(&[
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            "k:{\"name\":\"c\"}",
            "f:image"
        ])));
        assert!(p.contains(&s(&[
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            "k:{\"name\":\"c\"}",
            "f:args"
        ])));
        assert_eq!(from_fields_v1(&to_fields_v1(&p)), p);
        assert_eq!(
            value_at(
                &obj,
                &s(&[
                    "f:spec",
                    "f:template",
                    "f:spec",
                    "f:containers",
                    "k:{\"name\":\"c\"}",
                    "f:image"
                ])
            ),
            Some(&json!("x"))
        );
        let mut o = obj.clone();
        remove_at(
            &mut o,
            &s(&[
                "f:spec",
                "f:template",
                "f:spec",
                "f:containers",
                "k:{\"name\":\"c\"}",
                ".",
            ]),
        );
        assert_eq!(o["spec"]["template"]["spec"]["containers"], json!([]));
    }
}
