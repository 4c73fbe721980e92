//! OverridePolicy: per-member changes to a rendered object, in Karmada's order — image,
//! command, args, labels, annotations, then plaintext JSON patches. Errors name the policy's
//! field that could not be applied.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::policy::{ClusterAffinity, ResourceSelector};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OverrideSpec {
    #[serde(default)]
    pub resource_selectors: Vec<ResourceSelector>,
    #[serde(default)]
    pub override_rules: Vec<OverrideRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OverrideRule {
    #[serde(default)]
    pub target_cluster: Option<ClusterAffinity>,
    #[serde(default)]
    pub overriders: Overriders,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Overriders {
    #[serde(default)]
    pub image_overrider: Vec<ImageOverrider>,
    #[serde(default)]
    pub command_overrider: Vec<CommandOverrider>,
    #[serde(default)]
    pub args_overrider: Vec<CommandOverrider>,
    #[serde(default)]
    pub labels_overrider: Vec<MapOverrider>,
    #[serde(default)]
    pub annotations_overrider: Vec<MapOverrider>,
    #[serde(default)]
    pub plaintext: Vec<PlaintextOverrider>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageOverrider {
    /// `Registry`, `Repository` or `Tag`.
    pub component: String,
    /// `add`, `remove` or `replace`.
    pub operator: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandOverrider {
    pub container_name: String,
    pub operator: String,
    #[serde(default)]
    pub value: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MapOverrider {
    pub operator: String,
    #[serde(default)]
    pub value: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PlaintextOverrider {
    pub path: String,
    pub operator: String,
    #[serde(default)]
    pub value: Option<Value>,
}

/// An OverridePolicy (or, with an empty namespace, a ClusterOverridePolicy) as the renderer
/// uses it.
#[derive(Debug, Clone)]
pub struct OverridePolicy {
    pub namespace: String,
    pub name: String,
    pub spec: OverrideSpec,
}

impl OverridePolicy {
    /// `OverridePolicy ns/name` or `ClusterOverridePolicy name`.
    pub fn display(&self) -> String {
        if self.namespace.is_empty() {
            format!("ClusterOverridePolicy {}", self.name)
        } else {
            format!("OverridePolicy {}/{}", self.namespace, self.name)
        }
    }
}

/// Applies every rule of `policy` that targets member `cluster` to `obj`.
pub fn apply(
    policy: &OverridePolicy,
    cluster: &str,
    cluster_labels: &BTreeMap<String, String>,
    obj: &mut Value,
) -> Result<(), String> {
    for (i, rule) in policy.spec.override_rules.iter().enumerate() {
        if !rule
            .target_cluster
            .as_ref()
            .is_none_or(|t| t.matches(cluster, cluster_labels))
        {
            continue;
        }
        let at = |f: &str, j: usize| {
            format!(
                "{} spec.overrideRules[{i}].overriders.{f}[{j}]",
                policy.display()
            )
        };
        let o = &rule.overriders;
        for (j, im) in o.image_overrider.iter().enumerate() {
            for c in containers(obj) {
                let image = c["image"].as_str().unwrap_or_default().to_string();
                c["image"] = json!(override_image(&image, im)
                    .map_err(|e| format!("{}: {e}", at("imageOverrider", j)))?);
            }
        }
        for (field, list, name) in [
            ("command", &o.command_overrider, "commandOverrider"),
            ("args", &o.args_overrider, "argsOverrider"),
        ] {
            for (j, co) in list.iter().enumerate() {
                let c = containers(obj)
                    .into_iter()
                    .find(|c| c["name"] == co.container_name.as_str())
                    .ok_or_else(|| {
                        format!("{}: no container {:?}", at(name, j), co.container_name)
                    })?;
                let mut cur: Vec<String> =
                    serde_json::from_value(c[field].clone()).unwrap_or_default();
                match co.operator.as_str() {
                    "add" => cur.extend(co.value.iter().cloned()),
                    "remove" => cur.retain(|a| !co.value.contains(a)),
                    op => {
                        return Err(format!(
                            "{}: operator {op:?} is not add or remove",
                            at(name, j)
                        ))
                    }
                }
                c[field] = json!(cur);
            }
        }
        for (field, list, name) in [
            ("labels", &o.labels_overrider, "labelsOverrider"),
            (
                "annotations",
                &o.annotations_overrider,
                "annotationsOverrider",
            ),
        ] {
            for (j, mo) in list.iter().enumerate() {
                let meta = &mut obj["metadata"];
                if !meta[field].is_object() {
                    meta[field] = json!({});
                }
                let map = meta[field].as_object_mut().expect("object");
                for (k, v) in &mo.value {
                    match mo.operator.as_str() {
                        "add" | "replace" => {
                            map.insert(k.clone(), json!(v));
                        }
                        "remove" => {
                            map.remove(k);
                        }
                        op => {
                            return Err(format!(
                                "{}: operator {op:?} is not add, remove or replace",
                                at(name, j)
                            ))
                        }
                    }
                }
            }
        }
        if !o.plaintext.is_empty() {
            let ops: Vec<Value> = o
                .plaintext
                .iter()
                .map(|p| {
                    let mut op = json!({"op": p.operator, "path": p.path});
                    if let Some(v) = &p.value {
                        op["value"] = v.clone();
                    }
                    op
                })
                .collect();
            let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
                .map_err(|e| format!("{}: {e}", at("plaintext", 0)))?;
            json_patch::patch(obj, &patch).map_err(|e| format!("{}: {e}", at("plaintext", 0)))?;
        }
    }
    Ok(())
}

/// The containers (and init containers) of a workload or pod.
fn containers(obj: &mut Value) -> Vec<&mut Value> {
    let spec = if obj["spec"]["template"]["spec"].is_object() {
        &mut obj["spec"]["template"]["spec"]
    } else if obj["kind"] == "CronJob" {
        &mut obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    } else {
        &mut obj["spec"]
    };
    let Some(spec) = spec.as_object_mut() else {
        return Vec::new();
    };
    spec.iter_mut()
        .filter(|(k, _)| *k == "containers" || *k == "initContainers")
        .filter_map(|(_, v)| v.as_array_mut())
        .flatten()
        .collect()
}

/// `registry/repository:tag` with one component changed.
fn override_image(image: &str, o: &ImageOverrider) -> Result<String, String> {
    let (mut registry, rest) = match image.split_once('/') {
        Some((r, rest)) if r.contains(['.', ':']) || r == "localhost" => (r.to_string(), rest),
        _ => (String::new(), image),
    };
    let (mut repo, mut tag) = match rest.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
        _ => (rest.to_string(), String::new()),
    };
    let part = match o.component.as_str() {
        "Registry" => &mut registry,
        "Repository" => &mut repo,
        "Tag" => &mut tag,
        c => {
            return Err(format!(
                "component {c:?} is not Registry, Repository or Tag"
            ))
        }
    };
    match o.operator.as_str() {
        "replace" => *part = o.value.clone(),
        "add" => part.push_str(&o.value),
        "remove" => part.clear(),
        op => return Err(format!("operator {op:?} is not add, remove or replace")),
    }
    let mut out = String::new();
    if !registry.is_empty() {
        out.push_str(&registry);
        out.push('/');
    }
    out.push_str(&repo);
    if !tag.is_empty() {
        out.push(':');
        out.push_str(&tag);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_components() {
        let o = |c: &str, op: &str, v: &str| ImageOverrider {
            component: c.into(),
            operator: op.into(),
            value: v.into(),
        };
        assert_eq!(
            override_image("127.0.0.1:5000/busybox:1", &o("Tag", "replace", "2")).unwrap(),
            "127.0.0.1:5000/busybox:2"
        );
        assert_eq!(
            override_image("busybox", &o("Registry", "replace", "r.io")).unwrap(),
            "r.io/busybox"
        );
        assert_eq!(
            override_image("r.io/a/b:1", &o("Registry", "remove", "")).unwrap(),
            "a/b:1"
        );
        assert!(override_image("a", &o("Digest", "replace", "x")).is_err());
    }

    #[test]
    fn rules_target_members_and_errors_name_the_field() {
        let p = OverridePolicy {
            namespace: "default".into(),
            name: "op".into(),
            spec: serde_json::from_value(json!({"overrideRules": [
                {"targetCluster": {"clusterNames": ["m2"]}, "overriders": {
                    "imageOverrider": [{"component": "Tag", "operator": "replace", "value": "v2"}],
                    "argsOverrider": [{"containerName": "c", "operator": "add", "value": ["-x"]}],
                    "labelsOverrider": [{"operator": "add", "value": {"site": "b"}}],
                    "plaintext": [{"path": "/spec/minReadySeconds", "operator": "add", "value": 3}]}}]}))
            .unwrap(),
        };
        let base = json!({"kind": "Deployment", "metadata": {"name": "w"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:v1"}]}}}});
        let mut a = base.clone();
        apply(&p, "m1", &BTreeMap::new(), &mut a).unwrap();
        assert_eq!(a, base);
        apply(&p, "m2", &BTreeMap::new(), &mut a).unwrap();
        assert_eq!(
            a["spec"]["template"]["spec"]["containers"][0]["image"],
            "busybox:v2"
        );
        assert_eq!(
            a["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["-x"])
        );
        assert_eq!(a["metadata"]["labels"]["site"], "b");
        assert_eq!(a["spec"]["minReadySeconds"], 3);
        let bad = OverridePolicy {
            spec: serde_json::from_value(json!({"overrideRules": [{"overriders": {
                "plaintext": [{"path": "/spec/nothere/x", "operator": "replace", "value": 1}]}}]}))
            .unwrap(),
            ..p
        };
        let e = apply(&bad, "m1", &BTreeMap::new(), &mut base.clone()).unwrap_err();
        assert!(
            e.contains("OverridePolicy default/op spec.overrideRules[0].overriders.plaintext"),
            "{e}"
        );
    }
}
