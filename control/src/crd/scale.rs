//! The scale subresource of a custom resource: an autoscaling/v1 Scale read from and written to
//! the paths the CRD names (`specReplicasPath`, `statusReplicasPath`, `labelSelectorPath`).

use serde_json::{json, Value};

use super::schema::Cause;

#[derive(Debug, Clone)]
pub struct ScalePaths {
    spec: Vec<String>,
    status: Vec<String>,
    selector: Option<Vec<String>>,
}

fn parse_path(p: &str, field: &str, roots: &[&str], out: &mut Vec<Cause>) -> Vec<String> {
    let parts: Vec<String> = p
        .strip_prefix('.')
        .unwrap_or("")
        .split('.')
        .map(str::to_string)
        .collect();
    let ok = p.starts_with('.')
        && parts.len() >= 2
        && roots.contains(&parts[0].as_str())
        && parts
            .iter()
            .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if !ok {
        let want = roots
            .iter()
            .map(|r| format!(".{r}"))
            .collect::<Vec<_>>()
            .join(" or ");
        out.push((
            field.into(),
            format!("Invalid value: {p:?}: should be a json path under {want}"),
        ));
    }
    parts
}

impl ScalePaths {
    pub fn parse(raw: &Value, at: &str) -> Result<ScalePaths, Vec<Cause>> {
        let mut causes = Vec::new();
        let get = |k: &str| raw.get(k).and_then(Value::as_str);
        let spec = match get("specReplicasPath") {
            Some(p) => parse_path(p, &format!("{at}.specReplicasPath"), &["spec"], &mut causes),
            None => {
                causes.push((format!("{at}.specReplicasPath"), "Required value".into()));
                Vec::new()
            }
        };
        let status = match get("statusReplicasPath") {
            Some(p) => parse_path(
                p,
                &format!("{at}.statusReplicasPath"),
                &["status"],
                &mut causes,
            ),
            None => {
                causes.push((format!("{at}.statusReplicasPath"), "Required value".into()));
                Vec::new()
            }
        };
        let selector = get("labelSelectorPath").map(|p| {
            parse_path(
                p,
                &format!("{at}.labelSelectorPath"),
                &["spec", "status"],
                &mut causes,
            )
        });
        if causes.is_empty() {
            Ok(ScalePaths {
                spec,
                status,
                selector,
            })
        } else {
            Err(causes)
        }
    }

    fn read<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
        path.iter().try_fold(obj, |cur, p| cur.get(p.as_str()))
    }

    /// The Scale view of `obj`.
    pub fn view(&self, obj: &Value) -> Value {
        let meta = &obj["metadata"];
        let selector = self
            .selector
            .as_ref()
            .and_then(|p| Self::read(obj, p))
            .and_then(Value::as_str)
            .unwrap_or("");
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": Self::read(obj, &self.spec).cloned().unwrap_or(json!(0))},
            "status": {
                "replicas": Self::read(obj, &self.status).cloned().unwrap_or(json!(0)),
                "selector": selector,
            },
        })
    }

    /// Writes `replicas` at the spec path, creating objects on the way.
    pub fn set_replicas(&self, obj: &mut Value, replicas: i64) {
        let mut cur = obj;
        for (i, p) in self.spec.iter().enumerate() {
            if !cur.is_object() {
                *cur = json!({});
            }
            let last = i + 1 == self.spec.len();
            let m = cur.as_object_mut().expect("made an object above");
            if last {
                m.insert(p.clone(), json!(replicas));
                return;
            }
            cur = m.entry(p.clone()).or_insert_with(|| json!({}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_reads_and_writes_the_named_paths() {
        let p = ScalePaths::parse(
            &json!({"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.ready",
                "labelSelectorPath": ".status.selector"}),
            "s",
        )
        .unwrap();
        let mut obj = json!({"metadata": {"name": "a"}, "spec": {"size": 2},
            "status": {"ready": 1, "selector": "app=a"}});
        let v = p.view(&obj);
        assert_eq!(v["spec"]["replicas"], 2);
        assert_eq!(v["status"]["replicas"], 1);
        assert_eq!(v["status"]["selector"], "app=a");
        p.set_replicas(&mut obj, 5);
        assert_eq!(obj["spec"]["size"], 5);
        let e = ScalePaths::parse(&json!({"specReplicasPath": "spec.size"}), "s").unwrap_err();
        assert_eq!(e.len(), 2);
    }
}
