//! The Pod Security Standards checks of kube 1.32 (`k8s.io/pod-security-admission/policy`),
//! each answering a forbidden reason and detail in kube's words, run in kube's order: the
//! baseline checks (files in name order), then at baseline the ones restricted replaces
//! (capabilities, seccomp), or at restricted the restricted checks.

use std::collections::BTreeSet;

use serde_json::Value;

/// A failed check: kube's ForbiddenReason and ForbiddenDetail.
pub type Violation = (String, String);

type Check = fn(&Value, &Value) -> Option<Violation>;

/// Checks of baseline (and restricted) that restricted does not replace.
const BASELINE: [Check; 9] = [
    app_armor,
    host_namespaces,
    host_path_volumes,
    host_ports,
    privileged,
    proc_mount,
    se_linux_options,
    sysctls,
    windows_host_process,
];
/// Baseline checks restricted replaces with stricter ones.
const BASELINE_ONLY: [Check; 2] = [capabilities_baseline, seccomp_baseline];
const RESTRICTED: [Check; 6] = [
    allow_privilege_escalation,
    capabilities_restricted,
    restricted_volumes,
    run_as_non_root,
    run_as_user,
    seccomp_restricted,
];

/// The violations of a pod's metadata and spec at `level` (`baseline` or `restricted`;
/// `privileged` allows everything).
pub fn evaluate(level: &str, meta: &Value, spec: &Value) -> Vec<Violation> {
    let checks: Vec<Check> = match level {
        "baseline" => BASELINE.iter().chain(&BASELINE_ONLY).copied().collect(),
        "restricted" => BASELINE.iter().chain(&RESTRICTED).copied().collect(),
        _ => return Vec::new(),
    };
    checks.iter().filter_map(|c| c(meta, spec)).collect()
}

/// kube's aggregate ForbiddenDetail: `reason (detail), reason (detail)`.
pub fn forbidden_detail(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|(r, d)| {
            if d.is_empty() {
                r.clone()
            } else {
                format!("{r} ({d})")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn pluralize(one: &str, many: &str, n: usize) -> String {
    if n == 1 { one } else { many }.to_string()
}

fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| format!("{:?}", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// Every container, init container and ephemeral container (kube's visitContainers).
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |f| spec.get(f).and_then(Value::as_array).into_iter().flatten())
}

fn name(c: &Value) -> String {
    c.get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn sc<'a>(c: &'a Value, field: &str) -> Option<&'a Value> {
    c.get("securityContext")
        .and_then(|s| s.get(field))
        .filter(|v| !v.is_null())
}

fn pod_sc<'a>(spec: &'a Value, field: &str) -> Option<&'a Value> {
    sc(spec, field)
}

fn is_windows(spec: &Value) -> bool {
    spec.pointer("/os/name").and_then(Value::as_str) == Some("windows")
}

fn app_armor(meta: &Value, spec: &Value) -> Option<Violation> {
    let ok = |p: &Value| {
        matches!(
            p.get("type").and_then(Value::as_str),
            Some("RuntimeDefault" | "Localhost")
        )
    };
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    if let Some(p) = pod_sc(spec, "appArmorProfile").filter(|p| !ok(p)) {
        setters.push("pod".to_string());
        values.insert(
            p.get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        );
    }
    let mut bad = Vec::new();
    for c in containers(spec) {
        if let Some(p) = sc(c, "appArmorProfile").filter(|p| !ok(p)) {
            bad.push(name(c));
            values.insert(
                p.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            );
        }
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    let mut values: Vec<String> = values.into_iter().collect();
    let mut annotations: Vec<String> = meta
        .get("annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("container.apparmor.security.beta.kubernetes.io/"))
        .filter_map(|(k, v)| {
            let v = v.as_str().unwrap_or("");
            let allowed = v.is_empty() || v == "runtime/default" || v.starts_with("localhost/");
            (!allowed).then(|| format!("{k}={v:?}"))
        })
        .collect();
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(pluralize("annotation", "annotations", annotations.len()));
        values.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    Some((
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    ))
}

fn host_namespaces(_: &Value, spec: &Value) -> Option<Violation> {
    let set: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|f| spec.get(*f).and_then(Value::as_bool) == Some(true))
        .map(|f| format!("{f}=true"))
        .collect();
    (!set.is_empty()).then(|| ("host namespaces".into(), set.join(", ")))
}

fn volumes(spec: &Value) -> impl Iterator<Item = &Value> {
    spec.get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn host_path_volumes(_: &Value, spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = volumes(spec)
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .map(name)
        .collect();
    (!bad.is_empty()).then(|| {
        (
            "hostPath volumes".into(),
            format!(
                "{} {}",
                pluralize("volume", "volumes", bad.len()),
                join_quote(&bad)
            ),
        )
    })
}

fn host_ports(_: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut ports = BTreeSet::new();
    for c in containers(spec) {
        let mut uses = false;
        for p in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(h) = p
                .get("hostPort")
                .and_then(Value::as_i64)
                .filter(|h| *h != 0)
            {
                uses = true;
                ports.insert(h.to_string());
            }
        }
        if uses {
            bad.push(name(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.into_iter().collect();
    Some((
        "hostPort".into(),
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    ))
}

fn privileged(_: &Value, spec: &Value) -> Option<Violation> {
    let bad: Vec<String> = containers(spec)
        .filter(|c| sc(c, "privileged").and_then(Value::as_bool) == Some(true))
        .map(name)
        .collect();
    (!bad.is_empty()).then(|| {
        (
            "privileged".into(),
            format!(
                "{} must not set securityContext.privileged=true",
                containers_phrase(&bad)
            ),
        )
    })
}

fn proc_mount(_: &Value, spec: &Value) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut values = BTreeSet::new();
    for c in containers(spec) {
        if let Some(p) = sc(c, "procMount")
            .and_then(Value::as_str)
            .filter(|p| *p != "Default")
        {
            bad.push(name(c));
            values.insert(p.to_string());
        }
    }
    let values: Vec<String> = values.into_iter().collect();
    (!bad.is_empty()).then(|| {
        (
            "procMount".into(),
            format!(
                "{} must not set securityContext.procMount to {}",
                containers_phrase(&bad),
                join_quote(&values)
            ),
        )
    })
}

fn se_linux_options(_: &Value, spec: &Value) -> Option<Violation> {
    const TYPES: [&str; 5] = [
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    ];
    let mut types = BTreeSet::new();
    let (mut user, mut role) = (false, false);
    let mut check = |o: &Value| {
        let mut ok = true;
        let t = o.get("type").and_then(Value::as_str).unwrap_or("");
        if !TYPES.contains(&t) {
            ok = false;
            types.insert(t.to_string());
        }
        if o.get("user")
            .and_then(Value::as_str)
            .is_some_and(|u| !u.is_empty())
        {
            ok = false;
            user = true;
        }
        if o.get("role")
            .and_then(Value::as_str)
            .is_some_and(|r| !r.is_empty())
        {
            ok = false;
            role = true;
        }
        ok
    };
    let mut setters = Vec::new();
    if pod_sc(spec, "seLinuxOptions").is_some_and(|o| !check(o)) {
        setters.push("pod".to_string());
    }
    let bad: Vec<String> = containers(spec)
        .filter(|c| sc(c, "seLinuxOptions").is_some_and(|o| !check(o)))
        .map(name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    // kube lists user and role only next to a bad type.
    let mut data = Vec::new();
    if !types.is_empty() {
        let types: Vec<String> = types.into_iter().collect();
        data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quote(&types)
        ));
        if user {
            data.push("user may not be set".into());
        }
        if role {
            data.push("role may not be set".into());
        }
    }
    Some((
        "seLinuxOptions".into(),
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    ))
}

fn sysctls(_: &Value, spec: &Value) -> Option<Violation> {
    const ALLOWED: [&str; 10] = [
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ];
    let bad: Vec<&str> = pod_sc(spec, "sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .filter(|n| !ALLOWED.contains(n))
        .collect();
    (!bad.is_empty()).then(|| ("forbidden sysctls".into(), bad.join(", ")))
}

fn windows_host_process(_: &Value, spec: &Value) -> Option<Violation> {
    let host_process = |o: Option<&Value>| {
        o.and_then(|w| w.get("hostProcess"))
            .and_then(Value::as_bool)
            == Some(true)
    };
    let mut setters = Vec::new();
    if host_process(pod_sc(spec, "windowsOptions")) {
        setters.push("pod".to_string());
    }
    let bad: Vec<String> = containers(spec)
        .filter(|c| host_process(sc(c, "windowsOptions")))
        .map(name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    (!setters.is_empty()).then(|| {
        (
            "hostProcess".into(),
            format!(
                "{} must not set securityContext.windowsOptions.hostProcess=true",
                setters.join(" and ")
            ),
        )
    })
}

fn capabilities_baseline(_: &Value, spec: &Value) -> Option<Violation> {
    const DEFAULT: [&str; 13] = [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    let mut bad = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        let added: Vec<&str> = sc(c, "capabilities")
            .and_then(|k| k.get("add"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|a| !DEFAULT.contains(a))
            .collect();
        if !added.is_empty() {
            bad.push(name(c));
            caps.extend(added.into_iter().map(str::to_string));
        }
    }
    let caps: Vec<String> = caps.into_iter().collect();
    (!bad.is_empty()).then(|| {
        (
            "non-default capabilities".into(),
            format!(
                "{} must not include {} in securityContext.capabilities.add",
                containers_phrase(&bad),
                join_quote(&caps)
            ),
        )
    })
}

fn seccomp_ok(p: &Value) -> bool {
    matches!(
        p.get("type").and_then(Value::as_str),
        Some("RuntimeDefault" | "Localhost")
    )
}

fn seccomp_type(p: &Value) -> String {
    p.get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Who set a bad seccompProfile, the bad values, and the containers that set none.
fn seccomp_setters(spec: &Value) -> (Vec<String>, Vec<String>, bool, Vec<String>) {
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    let mut pod_set = false;
    if let Some(p) = pod_sc(spec, "seccompProfile") {
        if seccomp_ok(p) {
            pod_set = true;
        } else {
            setters.push("pod".to_string());
            values.insert(seccomp_type(p));
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match sc(c, "seccompProfile") {
            Some(p) if !seccomp_ok(p) => {
                explicit.push(name(c));
                values.insert(seccomp_type(p));
            }
            Some(_) => {}
            None if !pod_set => implicit.push(name(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    (setters, values.into_iter().collect(), pod_set, implicit)
}

fn seccomp_baseline(meta: &Value, spec: &Value) -> Option<Violation> {
    let _ = meta;
    let (setters, values, _, _) = seccomp_setters(spec);
    (!setters.is_empty()).then(|| {
        (
            "seccompProfile".into(),
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&values)
            ),
        )
    })
}

fn seccomp_restricted(meta: &Value, spec: &Value) -> Option<Violation> {
    if is_windows(spec) {
        return None;
    }
    if let Some(v) = seccomp_baseline(meta, spec) {
        return Some(v);
    }
    let (_, _, _, implicit) = seccomp_setters(spec);
    (!implicit.is_empty()).then(|| {
        (
            "seccompProfile".into(),
            format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&implicit)
            ),
        )
    })
}

fn allow_privilege_escalation(_: &Value, spec: &Value) -> Option<Violation> {
    if is_windows(spec) {
        return None;
    }
    let bad: Vec<String> = containers(spec)
        .filter(|c| sc(c, "allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false))
        .map(name)
        .collect();
    (!bad.is_empty()).then(|| {
        (
            "allowPrivilegeEscalation != false".into(),
            format!(
                "{} must set securityContext.allowPrivilegeEscalation=false",
                containers_phrase(&bad)
            ),
        )
    })
}

fn capabilities_restricted(_: &Value, spec: &Value) -> Option<Violation> {
    if is_windows(spec) {
        return None;
    }
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        let Some(k) = sc(c, "capabilities") else {
            missing_drop.push(name(c));
            continue;
        };
        let list = |f: &str| -> Vec<&str> {
            k.get(f)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect()
        };
        if !list("drop").contains(&"ALL") {
            missing_drop.push(name(c));
        }
        let bad: Vec<&str> = list("add")
            .into_iter()
            .filter(|a| *a != "NET_BIND_SERVICE")
            .collect();
        if !bad.is_empty() {
            adding.push(name(c));
            caps.extend(bad.into_iter().map(str::to_string));
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        let caps: Vec<String> = caps.into_iter().collect();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&caps)
        ));
    }
    (!details.is_empty()).then(|| ("unrestricted capabilities".into(), details.join("; ")))
}

fn restricted_volumes(_: &Value, spec: &Value) -> Option<Violation> {
    const ALLOWED: [&str; 8] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in volumes(spec) {
        let source = v
            .as_object()
            .into_iter()
            .flatten()
            .find(|(k, val)| k.as_str() != "name" && !val.is_null())
            .map(|(k, _)| k.as_str())
            .unwrap_or("unknown");
        if !ALLOWED.contains(&source) {
            bad.push(name(v));
            types.insert(source.to_string());
        }
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    Some((
        "restricted volume types".into(),
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    ))
}

fn run_as_non_root(_: &Value, spec: &Value) -> Option<Violation> {
    let mut setters = Vec::new();
    let mut pod_true = false;
    match pod_sc(spec, "runAsNonRoot").and_then(Value::as_bool) {
        Some(false) => setters.push("pod".to_string()),
        Some(true) => pod_true = true,
        None => {}
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match sc(c, "runAsNonRoot").and_then(Value::as_bool) {
            Some(false) => explicit.push(name(c)),
            Some(true) => {}
            None if !pod_true => implicit.push(name(c)),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        return Some((
            "runAsNonRoot != true".into(),
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        ));
    }
    (!implicit.is_empty()).then(|| {
        (
            "runAsNonRoot != true".into(),
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicit)
            ),
        )
    })
}

fn run_as_user(_: &Value, spec: &Value) -> Option<Violation> {
    let mut setters = Vec::new();
    if pod_sc(spec, "runAsUser").and_then(Value::as_i64) == Some(0) {
        setters.push("pod".to_string());
    }
    let bad: Vec<String> = containers(spec)
        .filter(|c| sc(c, "runAsUser").and_then(Value::as_i64) == Some(0))
        .map(name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    (!setters.is_empty()).then(|| {
        (
            "runAsUser=0".into(),
            format!("{} must not set runAsUser=0", setters.join(" and ")),
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn detail(level: &str, spec: Value) -> String {
        forbidden_detail(&evaluate(level, &json!({}), &spec))
    }

    #[test]
    fn a_privileged_container_in_kube_words() {
        let spec = json!({"containers": [{"name": "c", "image": "busybox",
            "securityContext": {"privileged": true}}]});
        assert_eq!(
            detail("restricted", spec.clone()),
            "privileged (container \"c\" must not set securityContext.privileged=true), \
             allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
             seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        assert_eq!(
            detail("baseline", spec),
            "privileged (container \"c\" must not set securityContext.privileged=true)"
        );
    }

    #[test]
    fn a_compliant_pod_passes_restricted() {
        let spec = json!({"securityContext": {"runAsNonRoot": true,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}],
            "volumes": [{"name": "d", "emptyDir": {}}, {"name": "s", "secret": {"secretName": "x"}}]});
        assert_eq!(detail("restricted", spec.clone()), "");
        assert_eq!(detail("baseline", spec.clone()), "");
        assert_eq!(detail("privileged", json!({"hostNetwork": true})), "");
    }

    #[test]
    fn baseline_checks_name_what_they_found() {
        let spec = json!({"hostNetwork": true, "hostPID": true,
            "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"},
                {"name": "net.ipv4.tcp_syncookies", "value": "1"}],
                "seccompProfile": {"type": "Unconfined"}},
            "containers": [
                {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}],
                 "securityContext": {"capabilities": {"add": ["NET_ADMIN", "CHOWN"]},
                    "procMount": "Unmasked"}},
                {"name": "b", "ports": [{"containerPort": 81, "hostPort": 443}],
                 "securityContext": {"seLinuxOptions": {"type": "spc_t", "user": "u"}}}],
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}]});
        assert_eq!(
            detail("baseline", spec),
            "host namespaces (hostNetwork=true, hostPID=true), \
             hostPath volumes (volume \"h\"), \
             hostPort (containers \"a\", \"b\" use hostPorts 443, 8080), \
             procMount (container \"a\" must not set securityContext.procMount to \"Unmasked\"), \
             seLinuxOptions (container \"b\" set forbidden securityContext.seLinuxOptions: type \"spc_t\"; user may not be set), \
             forbidden sysctls (kernel.msgmax), \
             non-default capabilities (container \"a\" must not include \"NET_ADMIN\" in securityContext.capabilities.add), \
             seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")"
        );
    }

    #[test]
    fn restricted_checks_name_what_they_found() {
        let spec = json!({"securityContext": {"runAsUser": 0, "runAsNonRoot": false,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [{"name": "i", "securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["SYS_TIME"]}}}],
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": true,
                "capabilities": {"drop": ["ALL"]}, "runAsUser": 0}}],
            "volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}}]});
        assert_eq!(
            detail("restricted", spec),
            "allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"i\" must not include \"SYS_TIME\" in securityContext.capabilities.add), \
             restricted volume types (volume \"n\" uses restricted volume type \"nfs\"), \
             runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false), \
             runAsUser=0 (pod and container \"c\" must not set runAsUser=0)"
        );
    }
}
