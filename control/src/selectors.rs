//! Label selectors (equality and set-based) and field selectors, parsed once per request and
//! matched against stored JSON.

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("unable to parse requirement {requirement:?}: {reason}")]
    Label { requirement: String, reason: String },
    #[error("invalid field selector {selector:?}: {reason}")]
    Field { selector: String, reason: String },
    #[error("field label not supported: {field}")]
    UnsupportedField { field: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<(String, Op)>,
}

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// A label key: optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
pub fn valid_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    prefix.is_none_or(crate::validation::is_dns_subdomain)
        && valid_label_value(name)
        && !name.is_empty()
}

/// A label value: empty, or at most 63 alphanumerics, '-', '_', '.', starting and ending alphanumeric.
pub fn valid_label_value(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.ends_with(|c: char| c.is_ascii_alphanumeric())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for raw in split_top(s) {
            let r = raw.trim();
            if r.is_empty() {
                if s.trim().is_empty() {
                    continue;
                }
                return Err(SelectorError::Label {
                    requirement: raw.into(),
                    reason: "empty requirement".into(),
                });
            }
            let bad = |reason: &str| SelectorError::Label {
                requirement: r.to_string(),
                reason: reason.to_string(),
            };
            let set = |rest: &str| -> Result<Vec<String>, SelectorError> {
                let inner = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|x| x.strip_suffix(')'))
                    .ok_or_else(|| bad("set must be in parentheses"))?;
                let vals: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
                if vals.iter().any(|v| !valid_label_value(v)) {
                    return Err(bad("invalid label value in set"));
                }
                Ok(vals)
            };
            let (key, op) = if let Some(k) = r.strip_prefix('!') {
                (k.trim().to_string(), Op::NotExists)
            } else if let Some((k, v)) = r.split_once("!=") {
                (k.trim().to_string(), Op::NotEq(v.trim().to_string()))
            } else if let Some((k, v)) = r.split_once("==") {
                (k.trim().to_string(), Op::Eq(v.trim().to_string()))
            } else if let Some((k, v)) = r.split_once('=') {
                (k.trim().to_string(), Op::Eq(v.trim().to_string()))
            } else if let Some((k, rest)) = r.split_once(" notin ") {
                (k.trim().to_string(), Op::NotIn(set(rest)?))
            } else if let Some((k, rest)) = r.split_once(" in ") {
                (k.trim().to_string(), Op::In(set(rest)?))
            } else if r.contains(['(', ')', ' ', '<', '>']) {
                return Err(bad("unsupported operator"));
            } else {
                (r.to_string(), Op::Exists)
            };
            if !valid_label_key(&key) {
                return Err(bad("invalid label key"));
            }
            if let Op::Eq(v) | Op::NotEq(v) = &op {
                if !valid_label_value(v) {
                    return Err(bad("invalid label value"));
                }
            }
            reqs.push((key, op));
        }
        Ok(Self { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Matches against an object's `metadata.labels`.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|(k, op)| match op {
            Op::Eq(v) => get(k) == Some(v.as_str()),
            Op::NotEq(v) => get(k) != Some(v.as_str()),
            Op::In(vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Op::NotIn(vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            Op::Exists => get(k).is_some(),
            Op::NotExists => get(k).is_none(),
        })
    }
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

/// Fields a kind may be selected by, besides `metadata.name` and `metadata.namespace`.
fn kind_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "status.phase",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Secret" => &["type"],
        "Node" => &["spec.unschedulable"],
        "Namespace" => &["status.phase"],
        "ReplicaSet" | "Job" => &["status.replicas", "status.successful"],
        "ReplicationController" => &["status.replicas"],
        _ => &[],
    }
}

impl FieldSelector {
    pub fn parse(s: &str, kind: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for raw in s.split(',') {
            let r = raw.trim();
            if r.is_empty() {
                continue;
            }
            let (field, eq, value) = if let Some((f, v)) = r.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = r.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = r.split_once('=') {
                (f, true, v)
            } else {
                return Err(SelectorError::Field {
                    selector: s.into(),
                    reason: format!("{r:?} has no operator"),
                });
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace")
                && !kind_fields(kind).contains(&field)
            {
                return Err(SelectorError::UnsupportedField {
                    field: field.into(),
                });
            }
            reqs.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(Self { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(field, eq, want)| {
            // An Event's `source` is its source component, else its reporting controller
            // (kube's EventToSelectableFields).
            if field == "source" {
                let text = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("");
                let have = match text("/source/component") {
                    "" => text("/reportingComponent"),
                    c => c,
                };
                return (have == want) == *eq;
            }
            let pointer = format!("/{}", field.replace('.', "/"));
            let have = match obj.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                // kube compares the Go field's value, so an absent bool is "false" and an
                // absent count "0".
                _ => match field.as_str() {
                    "spec.unschedulable" | "spec.hostNetwork" => "false".into(),
                    "status.replicas" | "status.successful" => "0".into(),
                    _ => String::new(),
                },
            };
            (have == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "d", "labels": labels}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn an_events_source_is_its_component_else_its_reporting_controller() {
        let m = |s: &str, ev: &Value| FieldSelector::parse(s, "Event").unwrap().matches(ev);
        let old = json!({"source": {"component": "kubelet", "host": "n1"}});
        let new = json!({"source": {}, "reportingComponent": "default-scheduler"});
        assert!(m("source=kubelet", &old) && !m("source=kubelet", &new));
        assert!(m("source=default-scheduler", &new) && m("source!=kubelet", &new));
    }

    #[test]
    fn equality_and_set_based_labels() {
        let p = pod(json!({"app": "web", "tier": "front"}));
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&p);
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("app in (web, db)"));
        assert!(!m("app notin (web,db)"));
        assert!(m("env notin (prod)"));
        assert!(m("!env"));
        assert!(!m("!app"));
        assert!(m(""));
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a=b=c").is_err());
        assert!(LabelSelector::parse("-bad-=x").is_err());
        assert!(LabelSelector::parse("app,,x").is_err());
    }

    #[test]
    fn field_selectors_check_supported_fields() {
        let p = pod(json!({}));
        let m = |s: &str| FieldSelector::parse(s, "Pod").unwrap().matches(&p);
        assert!(m("metadata.name=p,spec.nodeName=n1"));
        assert!(m("status.phase!=Pending"));
        assert!(!m("spec.nodeName=n2"));
        assert!(m("spec.nodeName!="));
        assert!(m("spec.hostNetwork=false"));
        // Absent bools and counts compare as Go's zero values.
        let node = json!({"metadata": {"name": "n1"}, "spec": {}});
        let n = |s: &str| FieldSelector::parse(s, "Node").unwrap().matches(&node);
        assert!(n("spec.unschedulable=false"));
        assert!(!n("spec.unschedulable=true"));
        let rs = json!({"metadata": {"name": "r"}, "status": {}});
        assert!(FieldSelector::parse("status.replicas=0", "ReplicaSet")
            .unwrap()
            .matches(&rs));
        assert_eq!(
            FieldSelector::parse("spec.foo=1", "Pod"),
            Err(SelectorError::UnsupportedField {
                field: "spec.foo".into()
            })
        );
    }
}
