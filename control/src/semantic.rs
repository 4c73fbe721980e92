//! Semantic validation kube-apiserver applies beyond the typed schema (pkg/apis/*/validation):
//! the checks controllers and the kubelet rely on — pod containers, workload selectors matching
//! their template, replica counts, Job restart policies, CronJob schedules and Service ports.

use serde_json::Value;

use crate::validation::is_dns_label;

/// One problem: the field path and its message, as in a Status cause.
pub type Cause = (String, String);

/// Every semantic problem of `obj` of `kind` (empty when valid).
pub fn check(kind: &str, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    match kind {
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => {
            out.extend(crate::rbac::validate(kind, obj))
        }
        "Pod" => pod_spec(obj.get("spec"), "spec", &mut out),
        "CertificateSigningRequest" => out.extend(crate::certificates::csr::check(obj)),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => workload(obj, &mut out),
        "ReplicationController" => replication_controller(obj, &mut out),
        "Job" => job_spec(obj.get("spec"), "spec", &mut out),
        "CronJob" => {
            let schedule = obj.pointer("/spec/schedule").and_then(Value::as_str);
            match schedule {
                None | Some("") => out.push(("spec.schedule".into(), "Required value".into())),
                Some(s) => {
                    if let Err(e) = cron_schedule(s) {
                        out.push(("spec.schedule".into(), format!("Invalid value: {s:?}: {e}")));
                    }
                    // kube refuses a TZ prefix on create: the timeZone field says it.
                    if s.contains("TZ") {
                        out.push((
                            "spec.schedule".into(),
                            format!("Invalid value: {s:?}: cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
                        ));
                    }
                }
            }
            if let Some(tz) = obj.pointer("/spec/timeZone").and_then(Value::as_str) {
                cron_time_zone(tz, &mut out);
            }
            job_spec(
                obj.pointer("/spec/jobTemplate/spec"),
                "spec.jobTemplate.spec",
                &mut out,
            );
        }
        "Service" => service(obj, &mut out),
        // events.k8s.io/v1 writes are checked on their core form (verbs/converted.rs).
        "Event" if obj["apiVersion"] != crate::events_v1::API_VERSION => {
            out.extend(crate::events_v1::check_legacy(obj))
        }
        "HorizontalPodAutoscaler" => hpa(obj, &mut out),
        "PodDisruptionBudget" => pdb(obj, &mut out),
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            out.extend(crate::admission::config::validate(kind, obj))
        }
        "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding" => {
            out.extend(crate::admission::policy::check(kind, obj))
        }
        "PriorityClass" => crate::priority::check(obj, &mut out),
        "IngressClass" => crate::ingressclass::check(obj, &mut out),
        "ResourceQuota" => out.extend(pea_controllers::quota::validate(obj)),
        "LimitRange" => crate::limitranger::check(obj, &mut out),
        _ => crate::storage::check(kind, obj, &mut out),
    }
    out
}

/// kube's ValidatePodDisruptionBudgetSpec: one of minAvailable / maxUnavailable, each a
/// non-negative integer or a percentage of at most 100%.
fn pdb(obj: &Value, out: &mut Vec<Cause>) {
    let spec = obj.get("spec");
    let field = |f: &str| spec.and_then(|s| s.get(f)).filter(|v| !v.is_null());
    if field("minAvailable").is_some() && field("maxUnavailable").is_some() {
        out.push((
            "spec".into(),
            "Invalid value: minAvailable and maxUnavailable cannot be both set".into(),
        ));
    }
    for f in ["minAvailable", "maxUnavailable"] {
        let problem = match field(f) {
            Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n < 0) => {
                Some(format!("Invalid value: {n}: must be greater than or equal to 0"))
            }
            Some(Value::String(p)) => match p.strip_suffix('%').map(str::parse::<u32>) {
                Some(Ok(v)) if v <= 100 => None,
                Some(Ok(_)) => Some(format!("Invalid value: {p:?}: must not be greater than 100%")),
                _ => Some(format!("Invalid value: {p:?}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")),
            },
            _ => None,
        };
        if let Some(p) = problem {
            out.push((format!("spec.{f}"), p));
        }
    }
}

/// Fields an update may not change (kube's ValidatePodUpdate, ValidateDeploymentUpdate, ...).
pub fn check_update(kind: &str, old: &Value, new: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let immutable = |ptr: &str, field: &str, out: &mut Vec<Cause>| {
        if old.pointer(ptr) != new.pointer(ptr) {
            let v = new.pointer(ptr).cloned().unwrap_or(Value::Null);
            out.push((
                field.into(),
                format!("Invalid value: {v}: field is immutable"),
            ));
        }
    };
    match kind {
        "RoleBinding" | "ClusterRoleBinding" => {
            out.extend(crate::rbac::validate_update(kind, old, new))
        }
        "PriorityClass" => crate::priority::check_update(old, new, &mut out),
        "IngressClass" => crate::ingressclass::check_update(old, new, &mut out),
        "Pod" => {
            // Only images, activeDeadlineSeconds, tolerations and the grace period may change.
            let mut allowed = old.get("spec").cloned().unwrap_or(Value::Null);
            for list in ["containers", "initContainers"] {
                let news = new
                    .pointer(&format!("/spec/{list}"))
                    .and_then(Value::as_array);
                if let (Some(cs), Some(news)) =
                    (allowed.get_mut(list).and_then(Value::as_array_mut), news)
                {
                    for (c, n) in cs.iter_mut().zip(news) {
                        if let Some(img) = n.get("image") {
                            c["image"] = img.clone();
                        }
                    }
                }
            }
            for f in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
            ] {
                if let Some(m) = allowed.as_object_mut() {
                    match new.pointer(&format!("/spec/{f}")) {
                        Some(v) => m.insert(f.into(), v.clone()),
                        None => m.remove(f),
                    };
                }
            }
            // Scheduling gates may only be removed (kube's validateOnlyDeletedSchedulingGates).
            let gates = |v: &Value| -> Vec<String> {
                v.pointer("/spec/schedulingGates")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g.get("name")?.as_str().map(str::to_string))
                    .collect()
            };
            let old_gates = gates(old);
            for g in gates(new).iter().filter(|g| !old_gates.contains(g)) {
                out.push((
                    "spec.schedulingGates".into(),
                    format!(
                        "Forbidden: only deletion is allowed, but found new scheduling gate '{g}'"
                    ),
                ));
            }
            if let Some(m) = allowed.as_object_mut() {
                match new.pointer("/spec/schedulingGates") {
                    Some(v) => m.insert("schedulingGates".into(), v.clone()),
                    None => m.remove("schedulingGates"),
                };
            }
            if new.get("spec") != Some(&allowed) {
                out.push(("spec".into(), "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into()));
            }
        }
        "Deployment" | "ReplicaSet" | "DaemonSet" => {
            immutable("/spec/selector", "spec.selector", &mut out)
        }
        "StatefulSet" => {
            let strip = |o: &Value| {
                let mut s = o.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(m) = s.as_object_mut() {
                    for f in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(f);
                    }
                }
                s
            };
            if strip(old) != strip(new) {
                out.push(("spec".into(), "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".into()));
            }
        }
        "Job" => {
            immutable("/spec/selector", "spec.selector", &mut out);
            immutable("/spec/template", "spec.template", &mut out);
            immutable("/spec/completions", "spec.completions", &mut out);
            for f in [
                "completionMode",
                "podFailurePolicy",
                "backoffLimitPerIndex",
                "managedBy",
                "successPolicy",
            ] {
                immutable(&format!("/spec/{f}"), &format!("spec.{f}"), &mut out);
            }
        }
        _ => crate::storage::check_update(kind, old, new, &mut out),
    }
    out
}

fn port_range(v: Option<&Value>, field: String, out: &mut Vec<Cause>) {
    if let Some(p) = v.and_then(Value::as_i64) {
        if !(1..=65535).contains(&p) {
            out.push((
                field,
                format!("Invalid value: {p}: must be between 1 and 65535, inclusive"),
            ));
        }
    }
}

fn pod_spec(spec: Option<&Value>, at: &str, out: &mut Vec<Cause>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    if containers.is_none_or(|c| c.is_empty()) {
        out.push((format!("{at}.containers"), "Required value".into()));
    }
    let mut seen = std::collections::BTreeSet::new();
    for list in ["initContainers", "containers"] {
        let items = spec
            .and_then(|s| s.get(list))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (i, c) in items.iter().enumerate() {
            let f = format!("{at}.{list}[{i}]");
            match c.get("name").and_then(Value::as_str).unwrap_or("") {
                "" => out.push((format!("{f}.name"), "Required value".into())),
                n if !is_dns_label(n) => out.push((format!("{f}.name"), format!("Invalid value: {n:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"))),
                n if !seen.insert(n.to_string()) => {
                    out.push((format!("{f}.name"), format!("Duplicate value: {n:?}")))
                }
                _ => {}
            }
            if c.get("image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .is_empty()
            {
                out.push((format!("{f}.image"), "Required value".into()));
            }
            let ports = c.get("ports").and_then(Value::as_array);
            for (j, p) in ports.map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
                let pf = format!("{f}.ports[{j}]");
                match p.get("containerPort") {
                    None => out.push((format!("{pf}.containerPort"), "Required value".into())),
                    v => port_range(v, format!("{pf}.containerPort"), out),
                }
                port_range(p.get("hostPort"), format!("{pf}.hostPort"), out);
            }
            resources(c.get("resources"), &format!("{f}.resources"), out);
        }
    }
}

/// A container's requests and limits, as kube-apiserver's ValidateResourceRequirements checks
/// them: every value a quantity, none negative, and a request never above its limit.
fn resources(r: Option<&Value>, at: &str, out: &mut Vec<Cause>) {
    let amounts = |field: &str, out: &mut Vec<Cause>| {
        let mut found = std::collections::BTreeMap::new();
        let items = r.and_then(|r| r.get(field)).and_then(Value::as_object);
        for (name, v) in items.into_iter().flatten() {
            let f = format!("{at}.{field}[{name}]");
            match v.as_str().and_then(crate::qos::nano_units) {
                None => out.push((f, format!("Invalid value: {v}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))),
                Some(n) if n < 0 => out.push((f, format!("Invalid value: {v}: must be greater than or equal to 0"))),
                Some(n) => {
                    found.insert(name.clone(), (n, v.as_str().unwrap_or_default().to_string()));
                }
            }
        }
        found
    };
    let requests = amounts("requests", out);
    let limits = amounts("limits", out);
    for (name, (req, text)) in &requests {
        if let Some((lim, lim_text)) = limits.get(name) {
            if req > lim {
                out.push((
                    format!("{at}.requests[{name}]"),
                    format!("Invalid value: {text:?}: must be less than or equal to {name} limit of {lim_text}"),
                ));
            }
        }
    }
}

/// Whether a LabelSelector (matchLabels / matchExpressions) selects `labels`.
pub(crate) fn selects(sel: &Value, labels: Option<&Value>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let ml = sel.get("matchLabels").and_then(Value::as_object);
    if ml.is_some_and(|m| m.iter().any(|(k, v)| get(k) != v.as_str())) {
        return false;
    }
    let exprs = sel.get("matchExpressions").and_then(Value::as_array);
    exprs.map(Vec::as_slice).unwrap_or(&[]).iter().all(|e| {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match e.get("operator").and_then(Value::as_str) {
            Some("In") => get(key).is_some_and(|v| values.contains(&v)),
            Some("NotIn") => get(key).is_none_or(|v| !values.contains(&v)),
            Some("Exists") => get(key).is_some(),
            Some("DoesNotExist") => get(key).is_none(),
            _ => false,
        }
    })
}

fn workload(obj: &Value, out: &mut Vec<Cause>) {
    if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64) {
        if r < 0 {
            out.push((
                "spec.replicas".into(),
                format!("Invalid value: {r}: must be greater than or equal to 0"),
            ));
        }
    }
    let labels = obj.pointer("/spec/template/metadata/labels");
    match obj.pointer("/spec/selector") {
        None | Some(Value::Null) => out.push(("spec.selector".into(), "Required value".into())),
        Some(sel) => {
            let empty = sel
                .get("matchLabels")
                .is_none_or(|m| m.as_object().is_none_or(|m| m.is_empty()))
                && sel
                    .get("matchExpressions")
                    .is_none_or(|m| m.as_array().is_none_or(|m| m.is_empty()));
            if empty {
                out.push((
                    "spec.selector".into(),
                    "Invalid value: empty selector is invalid for this workload".into(),
                ));
            } else if !selects(sel, labels) {
                out.push((
                    "spec.template.metadata.labels".into(),
                    format!(
                        "Invalid value: {}: `selector` does not match template `labels`",
                        labels.cloned().unwrap_or(Value::Null)
                    ),
                ));
            }
        }
    }
    pod_spec(
        obj.pointer("/spec/template/spec"),
        "spec.template.spec",
        out,
    );
}

/// kube's ValidateReplicationController: the workload checks with the selector a plain label
/// map (required, non-empty, matching the template's labels) and restartPolicy Always.
fn replication_controller(obj: &Value, out: &mut Vec<Cause>) {
    let mut view = obj.clone();
    if let Some(sel) = view.pointer_mut("/spec/selector") {
        let empty = sel.as_object().is_none_or(|m| m.is_empty());
        *sel = if empty {
            Value::Null
        } else {
            serde_json::json!({ "matchLabels": sel.take() })
        };
    }
    workload(&view, out);
    let policy = obj
        .pointer("/spec/template/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always");
    if policy != "Always" {
        out.push((
            "spec.template.spec.restartPolicy".into(),
            format!("Unsupported value: {policy:?}: supported values: \"Always\""),
        ));
    }
}

fn job_spec(spec: Option<&Value>, at: &str, out: &mut Vec<Cause>) {
    for field in ["parallelism", "completions", "backoffLimit"] {
        if let Some(n) = spec.and_then(|s| s.get(field)).and_then(Value::as_i64) {
            if n < 0 {
                out.push((
                    format!("{at}.{field}"),
                    format!("Invalid value: {n}: must be greater than or equal to 0"),
                ));
            }
        }
    }
    let tpl = spec.and_then(|s| s.pointer("/template/spec"));
    let policy = tpl
        .and_then(|t| t.get("restartPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if !matches!(policy, "OnFailure" | "Never") {
        out.push((
            format!("{at}.template.spec.restartPolicy"),
            format!("Unsupported value: {policy:?}: supported values: \"OnFailure\", \"Never\""),
        ));
    }
    pod_spec(tpl, &format!("{at}.template.spec"), out);
    crate::job_validation::check(spec, at, out);
}

/// A standard 5-field cron schedule (or a `@` descriptor), as robfig/cron's ParseStandard
/// (the parser the CronJob controller runs).
pub fn cron_schedule(s: &str) -> Result<(), String> {
    pea_controllers::cron::Schedule::parse(s).map(|_| ())
}

/// kube's validateTimeZone.
fn cron_time_zone(tz: &str, out: &mut Vec<Cause>) {
    let field = "spec.timeZone".to_string();
    if tz.is_empty() {
        out.push((
            field,
            format!("Invalid value: {tz:?}: timeZone must be nil or non-empty string"),
        ));
        return;
    }
    for part in tz.split('/') {
        let valid = !part.is_empty()
            && part.len() <= 14
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'));
        if part == "." || part == ".." || part.starts_with('-') || !valid {
            out.push((
                field,
                format!("Invalid value: {tz:?}: unknown time zone {tz}"),
            ));
            return;
        }
    }
    if tz.eq_ignore_ascii_case("Local") {
        out.push((field, format!("Invalid value: {tz:?}: timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones")));
    } else if let Err(e) = pea_controllers::cron::load_zone(tz) {
        out.push((field, format!("Invalid value: {tz:?}: {e}")));
    }
}

fn hpa(obj: &Value, out: &mut Vec<Cause>) {
    for field in ["kind", "name"] {
        let v = obj.pointer(&format!("/spec/scaleTargetRef/{field}"));
        if v.and_then(Value::as_str).unwrap_or("").is_empty() {
            out.push((
                format!("spec.scaleTargetRef.{field}"),
                "Required value".into(),
            ));
        }
    }
    let min = obj.pointer("/spec/minReplicas").and_then(Value::as_i64);
    if let Some(m) = min.filter(|m| *m < 1) {
        out.push((
            "spec.minReplicas".into(),
            format!("Invalid value: {m}: must be greater than or equal to 1"),
        ));
    }
    let max = obj
        .pointer("/spec/maxReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if max < min.unwrap_or(1) {
        out.push((
            "spec.maxReplicas".into(),
            format!("Invalid value: {max}: must be greater than or equal to `minReplicas`"),
        ));
    }
}

fn service(obj: &Value, out: &mut Vec<Cause>) {
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
    let ports = ports.map(Vec::as_slice).unwrap_or(&[]);
    if ports.is_empty() && ty != "ExternalName" && !headless {
        out.push(("spec.ports".into(), "Required value".into()));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        match p.get("port") {
            None => out.push((format!("{f}.port"), "Required value".into())),
            v => port_range(v, format!("{f}.port"), out),
        }
        if p.get("targetPort").is_some_and(Value::is_i64) {
            port_range(p.get("targetPort"), format!("{f}.targetPort"), out);
        }
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            out.push((format!("{f}.name"), "Required value".into()));
        } else if !name.is_empty() && !names.insert(name.to_string()) {
            out.push((format!("{f}.name"), format!("Duplicate value: {name:?}")));
        }
    }
    source_ranges(obj, ty, out);
}

/// The annotation kube reads when `spec.loadBalancerSourceRanges` is empty.
const SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

/// kube's `ValidateService` on source ranges: only for LoadBalancer Services, each entry
/// (space padding allowed, a historical accident kube keeps) a CIDR; the legacy annotation,
/// comma-separated, when the field is empty. The field path is kube's own
/// `spec.LoadBalancerSourceRanges` (capital L), so clients see the same causes.
fn source_ranges(obj: &Value, ty: &str, out: &mut Vec<Cause>) {
    const FORBIDDEN: &str = "Forbidden: may only be used when `type` is 'LoadBalancer'";
    let invalid = |field: String, v: &str| {
        (
            field,
            format!(
                "Invalid value: {v:?}: must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
            ),
        )
    };
    let ranges = obj
        .pointer("/spec/loadBalancerSourceRanges")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !ranges.is_empty() {
        let f = "spec.LoadBalancerSourceRanges";
        if ty != "LoadBalancer" {
            out.push((f.into(), FORBIDDEN.into()));
        }
        for (i, v) in ranges.iter().enumerate() {
            let v = v.as_str().unwrap_or("").trim();
            if !is_cidr(v) {
                out.push(invalid(format!("{f}[{i}]"), v));
            }
        }
    } else if let Some(val) = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SOURCE_RANGES_ANNOTATION))
        .and_then(Value::as_str)
    {
        let f = format!("metadata.annotations[{SOURCE_RANGES_ANNOTATION}]");
        if ty != "LoadBalancer" {
            out.push((f.clone(), FORBIDDEN.into()));
        }
        let val = val.trim();
        if !val.is_empty() {
            for v in val.split(',').map(str::trim) {
                if !is_cidr(v) {
                    out.push(invalid(f.clone(), v));
                }
            }
        }
    }
}

/// `ADDRESS/PREFIX` with the prefix within the address's width (host bits may be set, as Go's
/// `ParseCIDR` allows).
fn is_cidr(s: &str) -> bool {
    let Some((addr, prefix)) = s.split_once('/') else {
        return false;
    };
    let Ok(addr) = addr.parse::<std::net::IpAddr>() else {
        return false;
    };
    let width = if addr.is_ipv4() { 32 } else { 128 };
    !prefix.is_empty()
        && prefix.len() <= 3
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && prefix.parse::<u32>().is_ok_and(|p| p <= width)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn immutable_fields_on_update() {
        let p = json!({"spec": {"nodeName": "a", "containers": [{"name": "c", "image": "i"}]}});
        let mut img = p.clone();
        img["spec"]["containers"][0]["image"] = json!("j");
        assert!(check_update("Pod", &p, &img).is_empty());
        let mut moved = p.clone();
        moved["spec"]["nodeName"] = json!("b");
        assert_eq!(check_update("Pod", &p, &moved)[0].0, "spec");
        // Scheduling gates: removing one is allowed, adding one is not.
        let mut gated = p.clone();
        gated["spec"]["schedulingGates"] = json!([{"name": "a"}, {"name": "b"}]);
        let mut fewer = gated.clone();
        fewer["spec"]["schedulingGates"] = json!([{"name": "b"}]);
        assert!(check_update("Pod", &gated, &fewer).is_empty());
        assert!(check_update("Pod", &gated, &p).is_empty());
        let added = check_update("Pod", &fewer, &gated);
        assert_eq!(added.len(), 1, "{added:?}");
        assert_eq!(added[0].0, "spec.schedulingGates");
        assert!(added[0].1.contains("new scheduling gate 'a'"), "{added:?}");
        let d = json!({"spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}}});
        let mut scaled = d.clone();
        scaled["spec"]["replicas"] = json!(3);
        assert!(check_update("Deployment", &d, &scaled).is_empty());
        assert!(check_update("StatefulSet", &d, &scaled).is_empty());
        let mut resel = d.clone();
        resel["spec"]["selector"] = json!({"matchLabels": {"a": "c"}});
        assert_eq!(check_update("Deployment", &d, &resel)[0].0, "spec.selector");
        assert_eq!(check_update("StatefulSet", &d, &resel)[0].0, "spec");
        let j = json!({"spec": {"parallelism": 1, "managedBy": "example.com/a"}});
        let mut moved = j.clone();
        moved["spec"]["managedBy"] = json!("example.com/b");
        assert_eq!(check_update("Job", &j, &moved)[0].0, "spec.managedBy");
        moved["spec"]["managedBy"] = json!("example.com/a");
        moved["spec"]["parallelism"] = json!(2);
        assert!(check_update("Job", &j, &moved).is_empty());
    }

    #[test]
    fn load_balancer_source_ranges_as_kube_validates_them() {
        let svc = |ty: &str, ranges: Value| json!({"spec": {"type": ty, "ports": [{"port": 80}], "loadBalancerSourceRanges": ranges}});
        assert!(check(
            "Service",
            &svc(
                "LoadBalancer",
                json!([" 10.0.0.0/8", "2001:db8::/32", "198.18.0.1/15"])
            )
        )
        .is_empty());
        let causes = check(
            "Service",
            &svc(
                "LoadBalancer",
                json!(["10.0.0.0/33", "nonsense", "10.0.0.1"]),
            ),
        );
        assert_eq!(
            causes.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            [
                "spec.LoadBalancerSourceRanges[0]",
                "spec.LoadBalancerSourceRanges[1]",
                "spec.LoadBalancerSourceRanges[2]"
            ]
        );
        assert_eq!(
            causes[1].1,
            "Invalid value: \"nonsense\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
        );
        let causes = check("Service", &svc("ClusterIP", json!(["10.0.0.0/8"])));
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].0, "spec.LoadBalancerSourceRanges");
        assert!(causes[0]
            .1
            .starts_with("Forbidden: may only be used when `type` is 'LoadBalancer'"));
        // The annotation, when the field is empty.
        let ann = json!({"metadata": {"annotations": {SOURCE_RANGES_ANNOTATION: "10.0.0.0/8, bad"}},
            "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        let causes = check("Service", &ann);
        assert_eq!(causes.len(), 2, "{causes:?}");
        assert_eq!(
            causes[0].0,
            format!("metadata.annotations[{SOURCE_RANGES_ANNOTATION}]")
        );
    }

    #[test]
    fn cron_schedules() {
        for ok in [
            "*/5 * * * *",
            "0 0 1 jan mon",
            "@hourly",
            "0-30/10 1,2 * * 6",
        ] {
            assert!(cron_schedule(ok).is_ok(), "{ok}");
        }
        for bad in [
            "* * * * 7",
            "garbage",
            "61 * * * *",
            "* * * * * *",
            "*/0 * * * *",
            "5-1 * * * *",
            "@sometimes",
        ] {
            assert!(cron_schedule(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cronjob_time_zones_are_explicit_iana_names_and_tz_prefixes_refused() {
        let cj = |schedule: &str, tz: Option<&str>| {
            let mut o = json!({"spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}}});
            if let Some(tz) = tz {
                o["spec"]["timeZone"] = json!(tz);
            }
            check("CronJob", &o)
        };
        assert!(cj("0 9 * * *", Some("Europe/Paris")).is_empty());
        let tz = cj("TZ=UTC 0 9 * * *", None);
        assert_eq!(tz.len(), 1);
        assert!(
            tz[0].1.contains("cannot use TZ or CRON_TZ in schedule"),
            "{tz:?}"
        );
        assert!(cj("0 9 * * *", Some("Local"))[0]
            .1
            .contains("explicit time zone"));
        assert!(cj("0 9 * * *", Some("Mars/Olympus"))[0]
            .1
            .contains("unknown time zone"));
        assert!(cj("0 9 * * *", Some("../etc"))[0].0 == "spec.timeZone");
    }

    #[test]
    fn workloads_pods_jobs_services() {
        let d = json!({"spec": {"replicas": -1, "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"x": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let fields: Vec<String> = check("Deployment", &d).into_iter().map(|c| c.0).collect();
        assert_eq!(fields, ["spec.replicas", "spec.template.metadata.labels"]);
        let ok = json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        assert!(check("Deployment", &ok).is_empty());
        let p = json!({"spec": {"containers": [{"name": "Bad_Name"}, {"name": "c", "image": "i", "ports": [{"containerPort": 70000}]}, {"name": "c", "image": "i"}]}});
        let fields: Vec<String> = check("Pod", &p).into_iter().map(|c| c.0).collect();
        assert_eq!(
            fields,
            [
                "spec.containers[0].name",
                "spec.containers[0].image",
                "spec.containers[1].ports[0].containerPort",
                "spec.containers[2].name"
            ]
        );
        assert_eq!(check("Pod", &json!({"spec": {}}))[0].0, "spec.containers");
        let r = json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {
            "requests": {"cpu": "2", "memory": "-1"}, "limits": {"cpu": "1500m", "memory": "lots"}}}]}});
        let fields: Vec<String> = check("Pod", &r).into_iter().map(|c| c.0).collect();
        assert_eq!(
            fields,
            [
                "spec.containers[0].resources.requests[memory]",
                "spec.containers[0].resources.limits[memory]",
                "spec.containers[0].resources.requests[cpu]",
            ]
        );
        let ok = json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "0.5", "memory": "2Gi"}}}]}});
        assert!(check("Pod", &ok).is_empty(), "{:?}", check("Pod", &ok));
        let j = json!({"spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}});
        assert_eq!(check("Job", &j)[0].0, "spec.template.spec.restartPolicy");
        let s = json!({"spec": {"ports": [{"port": 0}]}});
        assert_eq!(check("Service", &s)[0].0, "spec.ports[0].port");
        assert!(check("Service", &json!({"spec": {"clusterIP": "None"}})).is_empty());
        let h = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "w"}, "minReplicas": 3, "maxReplicas": 2}});
        assert_eq!(
            check("HorizontalPodAutoscaler", &h)[0].0,
            "spec.maxReplicas"
        );
        let h = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "w"}, "maxReplicas": 2}});
        assert!(check("HorizontalPodAutoscaler", &h).is_empty());
    }
}
