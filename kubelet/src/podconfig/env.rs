//! A container's environment as kubelet builds it (`kubelet_pods.go makeEnvironmentVariables`):
//! service links first, then envFrom, then env in order with `$(VAR)` expansion against what is
//! already defined; valueFrom reads the pod's fields, its resources, configmaps and secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};

use crate::quantity;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnvError {
    #[error("configmap {0:?} not found")]
    ConfigMapMissing(String),
    #[error("secret {0:?} not found")]
    SecretMissing(String),
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyMissing {
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("env {name}: unsupported fieldRef {path:?}")]
    FieldPath { name: String, path: String },
    #[error("env {name}: unsupported resourceFieldRef {resource:?}")]
    Resource { name: String, resource: String },
    #[error("env {name}: secret key {key} is not valid UTF-8")]
    NotUtf8 { name: String, key: String },
}

/// What valueFrom and envFrom may read, fetched by the pod worker before the container starts.
#[derive(Debug, Default, Clone)]
pub struct Refs {
    pub configmaps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
    /// Services of the pod's namespace (and `kubernetes` of `default`), for service links.
    pub services: Vec<Service>,
    pub pod_ips: Vec<String>,
    pub host_ips: Vec<String>,
    /// The node's allocatable cpu (millicores) and memory (bytes): limits default to them.
    pub node_cpu_millis: u64,
    pub node_memory: u64,
    /// The pod's PersistentVolumeClaims (by claim name) resolved to their bound volume's path
    /// on this node, or why they cannot be mounted yet (not found, not bound).
    pub claims: BTreeMap<String, Result<crate::volumes::ClaimVolume, String>>,
    /// The pod's projected service-account tokens by `volumes::token::key`, or why not.
    pub sa_tokens: BTreeMap<String, Result<Vec<u8>, String>>,
}

/// Names of configmaps and secrets the pod's env, envFrom and volumes reference.
pub fn referenced(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return (cms, secrets);
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in containers {
        for e in c.env.iter().flatten() {
            if let Some(vf) = &e.value_from {
                if let Some(r) = &vf.config_map_key_ref {
                    cms.push(r.name.clone());
                }
                if let Some(r) = &vf.secret_key_ref {
                    secrets.push(r.name.clone());
                }
            }
        }
        for ef in c.env_from.iter().flatten() {
            if let Some(r) = &ef.config_map_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &ef.secret_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.config_map {
            cms.push(c.name.clone());
        }
        if let Some(s) = &v.secret {
            secrets.extend(s.secret_name.clone());
        }
        if let Some(p) = &v.projected {
            for src in p.sources.iter().flatten() {
                if let Some(c) = &src.config_map {
                    cms.push(c.name.clone());
                }
                if let Some(s) = &src.secret {
                    secrets.push(s.name.clone());
                }
            }
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

pub fn container_env(
    pod: &Pod,
    c: &Container,
    refs: &Refs,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = vars.iter_mut().find(|(n, _)| *n == k) {
            slot.1 = v;
        } else {
            vars.push((k, v));
        }
    };
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    for (k, v) in service_env(&refs.services, &ns, links) {
        set(&mut vars, k, v);
    }
    for ef in c.env_from.iter().flatten() {
        let prefix = ef.prefix.clone().unwrap_or_default();
        if let Some(r) = &ef.config_map_ref {
            match refs.configmaps.get(&r.name) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        set(&mut vars, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::ConfigMapMissing(r.name.clone())),
            }
        }
        if let Some(r) = &ef.secret_ref {
            match refs.secrets.get(&r.name) {
                Some(s) => {
                    for (k, v) in s.data.iter().flatten() {
                        let v = String::from_utf8(v.0.clone()).map_err(|_| EnvError::NotUtf8 {
                            name: r.name.clone(),
                            key: k.clone(),
                        })?;
                        set(&mut vars, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(EnvError::SecretMissing(r.name.clone())),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => Some(expand(v, &vars)),
            (None, Some(vf)) => {
                if let Some(f) = &vf.field_ref {
                    Some(
                        field(pod, &f.field_path, refs).ok_or_else(|| EnvError::FieldPath {
                            name: e.name.clone(),
                            path: f.field_path.clone(),
                        })?,
                    )
                } else if let Some(r) = &vf.resource_field_ref {
                    Some(resource(pod, c, r, refs).ok_or_else(|| EnvError::Resource {
                        name: e.name.clone(),
                        resource: r.resource.clone(),
                    })?)
                } else if let Some(r) = &vf.config_map_key_ref {
                    match refs.configmaps.get(&r.name) {
                        Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                            Some(v) => Some(v.clone()),
                            None if r.optional == Some(true) => None,
                            None => {
                                return Err(EnvError::KeyMissing {
                                    kind: "configmap",
                                    namespace: ns.clone(),
                                    name: r.name.clone(),
                                    key: r.key.clone(),
                                })
                            }
                        },
                        None if r.optional == Some(true) => None,
                        None => return Err(EnvError::ConfigMapMissing(r.name.clone())),
                    }
                } else if let Some(r) = &vf.secret_key_ref {
                    match refs.secrets.get(&r.name) {
                        Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                            Some(v) => Some(String::from_utf8(v.0.clone()).map_err(|_| {
                                EnvError::NotUtf8 {
                                    name: r.name.clone(),
                                    key: r.key.clone(),
                                }
                            })?),
                            None if r.optional == Some(true) => None,
                            None => {
                                return Err(EnvError::KeyMissing {
                                    kind: "secret",
                                    namespace: ns.clone(),
                                    name: r.name.clone(),
                                    key: r.key.clone(),
                                })
                            }
                        },
                        None if r.optional == Some(true) => None,
                        None => return Err(EnvError::SecretMissing(r.name.clone())),
                    }
                } else {
                    None
                }
            }
            (None, None) => Some(String::new()),
        };
        if let Some(v) = value {
            set(&mut vars, e.name.clone(), v);
        }
    }
    Ok(vars)
}

/// `$(VAR)` → VAR's value when defined (else left as is); `$$` → `$`, as kube's expansion.
pub fn expand(input: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let b = input.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = input[i + 2..].find(')') {
                    let name = &input[i + 2..i + 2 + end];
                    match vars.iter().rev().find(|(n, _)| n == name) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&input[i..i + 3 + end]),
                    }
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = input[i..].chars().next().expect("char");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn field(pod: &Pod, path: &str, refs: &Refs) -> Option<String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_key = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?
            .strip_suffix("']")
            .map(str::to_string)
    };
    Some(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => refs.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => refs.pod_ips.join(","),
        "status.hostIP" => refs.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => refs.host_ips.join(","),
        _ => {
            if let Some(k) = map_key("metadata.labels['") {
                return Some(m.labels.as_ref()?.get(&k).cloned().unwrap_or_default());
            }
            if let Some(k) = map_key("metadata.annotations['") {
                return Some(m.annotations.as_ref()?.get(&k).cloned().unwrap_or_default());
            }
            return None;
        }
    })
}

fn resource(
    _pod: &Pod,
    c: &Container,
    r: &k8s_openapi::api::core::v1::ResourceFieldSelector,
    refs: &Refs,
) -> Option<String> {
    let res = c.resources.as_ref();
    let (kind, name) = r.resource.split_once('.')?;
    let map = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return None,
    };
    let divisor = r
        .divisor
        .as_ref()
        .and_then(|d| quantity::parse(&d.0))
        .filter(|d| *d > 0.0);
    let value = match name {
        "cpu" => {
            let millis = map
                .and_then(|m| m.get("cpu"))
                .and_then(quantity::millicores)
                .unwrap_or(if kind == "limits" {
                    refs.node_cpu_millis
                } else {
                    0
                });
            // CPU is rounded up to whole divisors (default 1 core), as kube's ExtractContainerResourceValue.
            let d = divisor.unwrap_or(1.0);
            ((millis as f64 / 1000.0) / d).ceil()
        }
        "memory" | "ephemeral-storage" => {
            let bytes = map
                .and_then(|m| m.get(name))
                .and_then(quantity::bytes)
                .unwrap_or(if kind == "limits" && name == "memory" {
                    refs.node_memory
                } else {
                    0
                });
            (bytes as f64 / divisor.unwrap_or(1.0)).ceil()
        }
        _ => return None,
    };
    Some(format!("{}", value as u64))
}

/// The docker-links style variables kubelet injects for every service of the namespace (with
/// links on) and always for `kubernetes` in `default`.
pub fn service_env(services: &[Service], ns: &str, links: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chosen: Vec<&Service> = services
        .iter()
        .filter(|s| {
            let sns = s.metadata.namespace.as_deref().unwrap_or("");
            let name = s.metadata.name.as_deref().unwrap_or("");
            (links && sns == ns) || (sns == "default" && name == "kubernetes")
        })
        .collect();
    chosen.sort_by_key(|s| s.metadata.name.clone());
    for s in chosen {
        let Some(spec) = s.spec.as_ref() else {
            continue;
        };
        let ip = spec.cluster_ip.as_deref().unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = s
            .metadata
            .name
            .as_deref()
            .unwrap_or("")
            .to_uppercase()
            .replace('-', "_");
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else {
            continue;
        };
        out.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!(
                        "{name}_SERVICE_PORT_{}",
                        pn.to_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                ));
            }
        }
        let proto0 = first.protocol.as_deref().unwrap_or("TCP").to_lowercase();
        out.push((
            format!("{name}_PORT"),
            format!("{proto0}://{ip}:{}", first.port),
        ));
        for p in &ports {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            let prefix = format!("{name}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((
                prefix.clone(),
                format!("{}://{ip}:{}", proto.to_lowercase(), p.port),
            ));
            out.push((format!("{prefix}_PROTO"), proto.to_lowercase()));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": containers}
        }))
        .unwrap()
    }

    #[test]
    fn values_refs_and_expansion() {
        let p = pod(serde_json::json!([{
            "name": "c",
            "resources": {"limits": {"memory": "64Mi"}},
            "env": [
                {"name": "A", "value": "x"},
                {"name": "B", "value": "$(A)-$(NOPE)-$$(A)"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
                {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}}
            ]
        }]));
        let mut refs = Refs {
            pod_ips: vec!["10.1.0.5".into()],
            node_cpu_millis: 2000,
            ..Default::default()
        };
        refs.configmaps.insert(
            "cm".into(),
            serde_json::from_value(serde_json::json!({"data": {"k": "v"}})).unwrap(),
        );
        refs.secrets.insert(
            "s".into(),
            serde_json::from_value(serde_json::json!({"data": {"pw": "aHVudGVyMg=="}})).unwrap(),
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let env: BTreeMap<_, _> = container_env(&p, c, &refs).unwrap().into_iter().collect();
        assert_eq!(env["B"], "x-$(NOPE)-$(A)");
        assert_eq!(env["POD"], "p");
        assert_eq!(env["APP"], "web");
        assert_eq!(env["IP"], "10.1.0.5");
        assert_eq!(env["MEM"], "64");
        assert_eq!(env["CPU"], "2");
        assert_eq!(env["K"], "v");
        assert_eq!(env["S"], "hunter2");
        refs.configmaps.clear();
        assert_eq!(
            container_env(&p, c, &refs).unwrap_err(),
            EnvError::ConfigMapMissing("cm".into())
        );
    }

    #[test]
    fn service_links() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "my-db", "namespace": "ns"},
            "spec": {"clusterIP": "10.96.0.7", "ports": [{"name": "sql", "port": 5432, "protocol": "TCP"}]}
        }))
        .unwrap();
        let env: BTreeMap<_, _> = service_env(std::slice::from_ref(&svc), "ns", true)
            .into_iter()
            .collect();
        assert_eq!(env["MY_DB_SERVICE_HOST"], "10.96.0.7");
        assert_eq!(env["MY_DB_SERVICE_PORT_SQL"], "5432");
        assert_eq!(env["MY_DB_PORT"], "tcp://10.96.0.7:5432");
        assert_eq!(env["MY_DB_PORT_5432_TCP_ADDR"], "10.96.0.7");
        assert!(service_env(&[svc], "ns", false).is_empty());
    }
}
