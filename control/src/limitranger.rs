//! LimitRanges and kube-apiserver's LimitRanger admission plugin: on pod create, containers
//! get the `default` limits and `defaultRequest` requests of the namespace's Container
//! ranges (and kube's `kubernetes.io/limit-ranger` annotation), then containers, pods and
//! claims are held to min, max and maxLimitRequestRatio with kube's messages
//! (`maximum cpu usage per Container is 1, but limit is 2`). As kube, pod updates are not
//! looked at (containers' resources cannot change); claims are, on create and update.

use std::collections::BTreeMap;

use pea_controllers::quota::usage::{pod_resources, Usage};
use pea_controllers::quota::{resource_list, Qty};
use serde_json::{json, Value};

use crate::api::{Api, Ctx};
use crate::objects;
use crate::semantic::Cause;
use crate::status::ApiError;

const PLURAL: &str = "limitranges";
const KINDS: [&str; 3] = ["Container", "Pod", "PersistentVolumeClaim"];

/// kube's `SetDefaults_LimitRangeItem` for Container items: `default` from `max`,
/// `defaultRequest` from `default`, then from `min`.
pub fn default_ranges(obj: &mut Value) {
    let Some(items) = obj
        .pointer_mut("/spec/limits")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for item in items.iter_mut() {
        if item["type"].as_str() != Some("Container") {
            continue;
        }
        let from = |item: &Value, f: &str| item[f].as_object().cloned().unwrap_or_default();
        let (max, min) = (from(item, "max"), from(item, "min"));
        let mut default = from(item, "default");
        for (k, v) in max {
            default.entry(k).or_insert(v);
        }
        let mut default_request = from(item, "defaultRequest");
        for (k, v) in default
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(min)
        {
            default_request.entry(k).or_insert(v);
        }
        if !default.is_empty() {
            item["default"] = Value::Object(default);
        }
        if !default_request.is_empty() {
            item["defaultRequest"] = Value::Object(default_request);
        }
    }
}

/// kube's `ValidateLimitRange`.
pub fn check(obj: &Value, out: &mut Vec<Cause>) {
    let items = obj
        .pointer("/spec/limits")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, item) in items.iter().enumerate() {
        let at = format!("spec.limits[{i}]");
        let kind = item["type"].as_str().unwrap_or("");
        if !KINDS.contains(&kind) {
            out.push((
                format!("{at}.type"),
                format!("Unsupported value: {kind:?}: supported values: \"Container\", \"Pod\", \"PersistentVolumeClaim\""),
            ));
            continue;
        }
        let mut lists: BTreeMap<&str, Usage> = BTreeMap::new();
        for f in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            for (k, v) in item[f].as_object().into_iter().flatten() {
                match Qty::from_json(v) {
                    Some(q) if q.nano >= 0 => {}
                    _ => out.push((
                        format!("{at}.{f}[{k}]"),
                        format!("Invalid value: {v}: must be a non-negative quantity"),
                    )),
                }
            }
            lists.insert(f, resource_list(item.get(f)));
        }
        if kind == "Pod" {
            for f in ["default", "defaultRequest"] {
                if !lists[f].is_empty() {
                    out.push((
                        format!("{at}.{f}"),
                        "Forbidden: may not be specified when `type` is 'Pod'".into(),
                    ));
                }
            }
        }
        let mut order = |lo: &str, hi: &str, text: &dyn Fn(Qty, Qty) -> String| {
            for (k, l) in &lists[lo] {
                if let Some(h) = lists[hi].get(k) {
                    if l.nano > h.nano {
                        out.push((
                            format!("{at}.{lo}[{k}]"),
                            format!("Invalid value: \"{l}\": {}", text(*l, *h)),
                        ));
                    }
                }
            }
        };
        order("min", "max", &|l, h| {
            format!("min value {l} is greater than max value {h}")
        });
        order("defaultRequest", "default", &|l, h| {
            format!("default request value {l} is greater than default limit value {h}")
        });
        order("min", "defaultRequest", &|l, h| {
            format!("min value {l} is greater than default request value {h}")
        });
        order("default", "max", &|l, h| {
            format!("default value {l} is greater than max value {h}")
        });
        for (k, r) in &lists["maxLimitRequestRatio"] {
            if r.nano < 1_000_000_000 {
                out.push((
                    format!("{at}.maxLimitRequestRatio[{k}]"),
                    format!("Invalid value: \"{r}\": ratio {r} is less than 1"),
                ));
            }
        }
    }
}

/// The namespace's LimitRanges.
async fn ranges(api: &Api, ns: &str) -> Result<Vec<Value>, ApiError> {
    let Some(def) = api.resources.find("", "v1", PLURAL) else {
        return Ok(Vec::new());
    };
    let cached = api
        .informers
        .limit_ranges
        .list(api.store.as_ref(), &def.prefix(Some(ns)))
        .await?;
    Ok(cached.iter().map(|c| c.obj.clone()).collect())
}

/// The items of one type across the ranges.
fn items<'a>(ranges: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    ranges
        .iter()
        .flat_map(|r| {
            r.pointer("/spec/limits")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter(move |i| i["type"].as_str() == Some(kind))
}

/// LimitRanger on create: pods and claims.
pub async fn admit_new(ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    match ctx.namespace() {
        Some(ns) => admit(ctx.api, ctx.def.kind, ns, obj).await,
        None => Ok(()),
    }
}

/// LimitRanger on update: claims only (a pod's containers cannot change), never on
/// subresources.
pub async fn admit_update(ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    match ctx.namespace() {
        Some(ns) if ctx.def.kind == "PersistentVolumeClaim" && ctx.info.subresource.is_none() => {
            admit(ctx.api, ctx.def.kind, ns, obj).await
        }
        _ => Ok(()),
    }
}

/// LimitRanger on a new pod (`pods`) or a claim (`persistentvolumeclaims`, create and update).
pub async fn admit(api: &Api, kind: &str, ns: &str, obj: &mut Value) -> Result<(), ApiError> {
    if !matches!(kind, "Pod" | "PersistentVolumeClaim") {
        return Ok(());
    }
    let ranges = ranges(api, ns).await?;
    if ranges.is_empty() {
        return Ok(());
    }
    let errors = if kind == "Pod" {
        apply_defaults(&ranges, obj);
        validate_pod(&ranges, obj)
    } else {
        validate_claim(&ranges, obj)
    };
    if errors.is_empty() {
        return Ok(());
    }
    // utilerrors.NewAggregate: one error alone, else "[a, b]".
    let message = if errors.len() == 1 {
        errors[0].clone()
    } else {
        format!("[{}]", errors.join(", "))
    };
    Err(ApiError::Forbidden {
        group: String::new(),
        resource: if kind == "Pod" {
            "pods"
        } else {
            "persistentvolumeclaims"
        }
        .into(),
        name: objects::name_of(obj).to_string(),
        message,
    })
}

/// kube's `defaultContainerResourceRequirements` + `mergePodResourceRequirements`: what a
/// container leaves unset comes from the first Container range that sets it.
pub fn apply_defaults(ranges: &[Value], pod: &mut Value) {
    let mut limits = serde_json::Map::new();
    let mut requests = serde_json::Map::new();
    for item in items(ranges, "Container") {
        for (k, v) in item["default"].as_object().into_iter().flatten() {
            limits.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in item["defaultRequest"].as_object().into_iter().flatten() {
            requests.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if limits.is_empty() && requests.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    for list in ["initContainers", "containers"] {
        let Some(cs) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in cs {
            let name = c["name"].as_str().unwrap_or("").to_string();
            for (field, defaults, word) in [
                ("requests", &requests, "request"),
                ("limits", &limits, "limit"),
            ] {
                let mut set = Vec::new();
                for (k, v) in defaults {
                    let present = c
                        .pointer(&format!("/resources/{field}/{k}"))
                        .is_some_and(|x| !x.is_null());
                    if !present {
                        if !c["resources"].is_object() {
                            c["resources"] = json!({});
                        }
                        if !c["resources"][field].is_object() {
                            c["resources"][field] = json!({});
                        }
                        c["resources"][field][k] = v.clone();
                        set.push(k.clone());
                    }
                }
                if !set.is_empty() {
                    notes.push(format!(
                        "{} {word} for {} {name}",
                        set.join(", "),
                        if list == "containers" {
                            "container"
                        } else {
                            "init container"
                        }
                    ));
                }
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    if !pod["metadata"]["annotations"].is_object() {
        pod["metadata"]["annotations"] = json!({});
    }
    pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] =
        json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    // The QoS class was computed before admission; the new requests and limits change it.
    let class = crate::qos::pod_qos_class(pod);
    if let Some(status) = pod.get_mut("status").and_then(Value::as_object_mut) {
        status.insert("qosClass".into(), json!(class));
    }
}

fn min_constraint(
    kind: &str,
    r: &str,
    enforced: Qty,
    req: Option<Qty>,
    lim: Option<Qty>,
) -> Option<String> {
    let Some(req) = req else {
        return Some(format!(
            "minimum {r} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if req.nano < enforced.nano {
        return Some(format!(
            "minimum {r} usage per {kind} is {enforced}, but request is {req}"
        ));
    }
    match lim {
        Some(lim) if lim.nano < enforced.nano => Some(format!(
            "minimum {r} usage per {kind} is {enforced}, but limit is {lim}"
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    r: &str,
    enforced: Qty,
    req: Option<Qty>,
    lim: Option<Qty>,
) -> Option<String> {
    let Some(lim) = lim else {
        return Some(format!(
            "maximum {r} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if lim.nano > enforced.nano {
        return Some(format!(
            "maximum {r} usage per {kind} is {enforced}, but limit is {lim}"
        ));
    }
    match req {
        Some(req) if req.nano > enforced.nano => Some(format!(
            "maximum {r} usage per {kind} is {enforced}, but request is {req}"
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    r: &str,
    enforced: Qty,
    req: Option<Qty>,
    lim: Option<Qty>,
) -> Option<String> {
    let req = req.filter(|q| q.nano != 0);
    let lim = lim.filter(|q| q.nano != 0);
    let Some(req) = req else {
        return Some(format!("{r} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"));
    };
    let Some(lim) = lim else {
        return Some(format!("{r} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"));
    };
    let observed = lim.nano as f64 / req.nano as f64;
    let allowed = enforced.nano as f64 / 1e9;
    (observed > allowed).then(|| {
        format!("{r} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}")
    })
}

/// Checks one set of requests and limits against one range item.
fn constrain(item: &Value, kind: &str, requests: &Usage, limits: &Usage, out: &mut Vec<String>) {
    for (k, enforced) in resource_list(item.get("min")) {
        out.extend(min_constraint(
            kind,
            &k,
            enforced,
            requests.get(&k).copied(),
            limits.get(&k).copied(),
        ));
    }
    for (k, enforced) in resource_list(item.get("max")) {
        out.extend(max_constraint(
            kind,
            &k,
            enforced,
            requests.get(&k).copied(),
            limits.get(&k).copied(),
        ));
    }
    for (k, enforced) in resource_list(item.get("maxLimitRequestRatio")) {
        out.extend(ratio_constraint(
            kind,
            &k,
            enforced,
            requests.get(&k).copied(),
            limits.get(&k).copied(),
        ));
    }
}

/// kube's `PodValidateLimitFunc`: every container against Container items, the pod's
/// effective requests and limits against Pod items.
pub fn validate_pod(ranges: &[Value], pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for item in items(ranges, "Container") {
        for list in ["initContainers", "containers"] {
            for c in pod["spec"][list].as_array().into_iter().flatten() {
                let requests = resource_list(c.pointer("/resources/requests"));
                let limits = resource_list(c.pointer("/resources/limits"));
                constrain(item, "Container", &requests, &limits, &mut out);
            }
        }
    }
    let requests = pod_resources(pod, "requests");
    let limits = pod_resources(pod, "limits");
    for item in items(ranges, "Pod") {
        constrain(item, "Pod", &requests, &limits, &mut out);
    }
    out
}

/// kube's `PersistentVolumeClaimValidateLimitFunc`: min and max of the requested storage.
pub fn validate_claim(ranges: &[Value], claim: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let requests = resource_list(claim.pointer("/spec/resources/requests"));
    let kind = "PersistentVolumeClaim";
    for item in items(ranges, kind) {
        for (k, enforced) in resource_list(item.get("min")) {
            out.extend(min_constraint(
                kind,
                &k,
                enforced,
                requests.get(&k).copied(),
                None,
            ));
        }
        for (k, enforced) in resource_list(item.get("max")) {
            out.extend(match requests.get(&k) {
                None => Some(format!(
                    "maximum {k} usage per {kind} is {enforced}.  No request is specified"
                )),
                Some(req) if req.nano > enforced.nano => Some(format!(
                    "maximum {k} usage per {kind} is {enforced}, but request is {req}"
                )),
                Some(_) => None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Value {
        let mut r = json!({"spec": {"limits": limits}});
        default_ranges(&mut r);
        r
    }

    #[test]
    fn defaults_fill_containers_and_max_refuses() {
        let r = [range(
            json!([{"type": "Container", "max": {"cpu": "1"}, "defaultRequest": {"cpu": "100m"}}]),
        )];
        assert_eq!(r[0]["spec"]["limits"][0]["default"], json!({"cpu": "1"}));
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}, "status": {}});
        apply_defaults(&r, &mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}})
        );
        assert_eq!(
            pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
            "LimitRanger plugin set: cpu request for container c; cpu limit for container c"
        );
        assert_eq!(pod["status"]["qosClass"], "Burstable");
        assert!(validate_pod(&r, &pod).is_empty());
        let big = json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "2"}}}]}});
        assert_eq!(
            validate_pod(&r, &big),
            ["maximum cpu usage per Container is 1, but limit is 2"]
        );
    }

    #[test]
    fn min_ratio_pod_and_claim_messages() {
        let r = [range(json!([
            {"type": "Container", "min": {"memory": "64Mi"}, "maxLimitRequestRatio": {"memory": "2"}},
            {"type": "Pod", "max": {"memory": "1Gi"}},
            {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "2Gi"}}]))];
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"memory": "32Mi"}, "limits": {"memory": "128Mi"}}}]}});
        assert_eq!(
            validate_pod(&r, &pod),
            [
                "minimum memory usage per Container is 64Mi, but request is 32Mi",
                "memory max limit to request ratio per Container is 2, but provided ratio is 4.000000",
            ]
        );
        let claim = json!({"spec": {"resources": {"requests": {"storage": "3Gi"}}}});
        assert_eq!(
            validate_claim(&r, &claim),
            ["maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 3Gi"]
        );
        let mut causes = Vec::new();
        check(
            &json!({"spec": {"limits": [{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}, {"type": "Pod", "default": {"cpu": "1"}}]}}),
            &mut causes,
        );
        let text: Vec<String> = causes
            .into_iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect();
        assert_eq!(
            text,
            [
                "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1",
                "spec.limits[1].default: Forbidden: may not be specified when `type` is 'Pod'",
            ]
        );
    }
}
