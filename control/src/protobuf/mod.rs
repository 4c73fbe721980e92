//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), which client-go's typed
//! clients send: kubectl for `kubectl create namespace|configmap|secret|serviceaccount|
//! deployment|job|cronjob|service|ingress`, `create job --from`, `debug --copy-to`; kubelets and
//! controllers for Node, Lease, Event, EndpointSlice and the rest. The envelope is `k8s\0` plus
//! a `runtime.Unknown` whose `raw` field holds the object. Objects are decoded with explicit
//! field tables (Kubernetes' generated.proto numbering) into the same JSON the API stores; a
//! kind without a table, or a field the table lacks, is refused with a clear error, never
//! dropped.

mod apps;
mod authentication;
mod autoscaling;
mod batch;
mod certificates;
mod coordination;
mod core;
mod discovery;
mod events;
mod meta;
mod networking;
mod pod;
mod policy;
mod quota;
mod rbac;
mod schema;
mod storage;
mod wire;

use serde_json::{json, Value};

use schema::{message, Schema};
use wire::{Reader, Wire};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("protobuf body does not start with the k8s\\0 envelope magic")]
    Magic,
    #[error("truncated or malformed protobuf at byte {0}")]
    Malformed(usize),
    #[error("protobuf bodies of kind {kind:?} ({api_version}) are not implemented (send JSON, e.g. `kubectl create ... --dry-run=client -o yaml | kubectl apply -f -`)")]
    UnsupportedKind { api_version: String, kind: String },
    #[error("protobuf field {field}{} of {message} is not implemented (send JSON)", if name.is_empty() { String::new() } else { format!(" ({name})") })]
    UnsupportedField {
        message: &'static str,
        field: u64,
        name: &'static str,
    },
    #[error("protobuf field {field} of {message} has the wrong wire type {wire}")]
    WireType {
        message: &'static str,
        field: u64,
        wire: u8,
    },
    #[error("protobuf {message}: {detail}")]
    BadValue {
        message: &'static str,
        detail: String,
    },
    /// An error inside a nested message, with the JSON path to it.
    #[error("{path}: {inner}")]
    At {
        path: String,
        inner: Box<ProtoError>,
    },
}

impl ProtoError {
    /// Whether the body was readable but asks for something not implemented (415), as
    /// opposed to being broken (400).
    pub fn is_unsupported(&self) -> bool {
        match self {
            ProtoError::At { inner, .. } => inner.is_unsupported(),
            e => matches!(
                e,
                ProtoError::UnsupportedKind { .. } | ProtoError::UnsupportedField { .. }
            ),
        }
    }

    /// The error without its path.
    #[cfg(test)]
    fn root(&self) -> &ProtoError {
        match self {
            ProtoError::At { inner, .. } => inner.root(),
            e => e,
        }
    }
}

/// The table for a group-version and kind.
fn schema_for(api_version: &str, kind: &str) -> Option<&'static Schema> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => &core::NAMESPACE,
        ("v1", "ConfigMap") => &core::CONFIG_MAP,
        ("v1", "Secret") => &core::SECRET,
        ("v1", "ServiceAccount") => &core::SERVICE_ACCOUNT,
        ("v1", "Service") => &core::SERVICE,
        ("v1", "Pod") => &core::POD,
        ("v1", "Binding") => &core::BINDING,
        ("v1", "Node") => &core::NODE,
        ("v1", "Endpoints") => &core::ENDPOINTS,
        ("v1", "Event") => &core::EVENT,
        ("events.k8s.io/v1", "Event") => &events::EVENT,
        ("v1", "PersistentVolume") => &storage::PERSISTENT_VOLUME,
        ("v1", "PersistentVolumeClaim") => &storage::PERSISTENT_VOLUME_CLAIM,
        ("storage.k8s.io/v1", "StorageClass") => &storage::STORAGE_CLASS,
        ("v1", "ResourceQuota") => &quota::RESOURCE_QUOTA,
        ("v1", "LimitRange") => &quota::LIMIT_RANGE,
        ("scheduling.k8s.io/v1", "PriorityClass") => &quota::PRIORITY_CLASS,
        ("coordination.k8s.io/v1", "Lease") => &coordination::LEASE,
        ("discovery.k8s.io/v1", "EndpointSlice") => &discovery::ENDPOINT_SLICE,
        ("apps/v1", "Deployment") => &apps::DEPLOYMENT,
        ("apps/v1", "ReplicaSet") => &apps::REPLICA_SET,
        ("apps/v1", "StatefulSet") => &apps::STATEFUL_SET,
        ("apps/v1", "DaemonSet") => &apps::DAEMON_SET,
        ("autoscaling/v2", "HorizontalPodAutoscaler") => &autoscaling::HORIZONTAL_POD_AUTOSCALER,
        ("autoscaling/v1", "HorizontalPodAutoscaler") => &autoscaling::HORIZONTAL_POD_AUTOSCALER_V1,
        ("autoscaling/v1", "Scale") => &autoscaling::SCALE,
        ("batch/v1", "Job") => &batch::JOB,
        ("batch/v1", "CronJob") => &batch::CRON_JOB,
        ("certificates.k8s.io/v1", "CertificateSigningRequest") => {
            &certificates::CERTIFICATE_SIGNING_REQUEST
        }
        ("networking.k8s.io/v1", "Ingress") => &networking::INGRESS,
        ("networking.k8s.io/v1", "IngressClass") => &networking::INGRESS_CLASS,
        ("policy/v1", "PodDisruptionBudget") => &policy::POD_DISRUPTION_BUDGET,
        ("policy/v1" | "policy/v1beta1", "Eviction") => &policy::EVICTION,
        ("rbac.authorization.k8s.io/v1", "Role") => &rbac::ROLE,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => &rbac::CLUSTER_ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => {
            &rbac::ROLE_BINDING
        }
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => &rbac::SELF_SUBJECT_ACCESS_REVIEW,
        ("authorization.k8s.io/v1", "SubjectAccessReview" | "LocalSubjectAccessReview") => {
            &rbac::SUBJECT_ACCESS_REVIEW
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => &rbac::SELF_SUBJECT_RULES_REVIEW,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => &rbac::SELF_SUBJECT_REVIEW,
        ("authentication.k8s.io/v1", "TokenRequest") => &authentication::TOKEN_REQUEST,
        _ => return None,
    })
}

/// Splits a `k8s\0` envelope into (apiVersion, kind, raw object bytes).
fn envelope(body: &[u8]) -> Result<(String, String, &[u8]), ProtoError> {
    let rest = body.strip_prefix(b"k8s\0").ok_or(ProtoError::Magic)?;
    let mut r = Reader::new(rest);
    let (mut type_meta, mut raw) = (Value::Null, None);
    while let Some((field, w)) = r.next("Unknown")? {
        match (field, w) {
            (1, Wire::Len(b)) => type_meta = message(b, &meta::TYPE_META)?,
            (2, Wire::Len(b)) => raw = Some(b),
            // contentEncoding: kubectl sends none; anything else (gzip) would be misread.
            (3, Wire::Len(b)) if !b.is_empty() => {
                return Err(ProtoError::BadValue {
                    message: "Unknown",
                    detail: format!(
                        "contentEncoding {:?} is not supported",
                        String::from_utf8_lossy(b)
                    ),
                })
            }
            (3 | 4, Wire::Len(_)) => {}
            (field, _) => {
                return Err(ProtoError::UnsupportedField {
                    message: "Unknown",
                    field,
                    name: "",
                })
            }
        }
    }
    let api_version = type_meta["apiVersion"].as_str().unwrap_or("").to_string();
    let kind = type_meta["kind"].as_str().unwrap_or("").to_string();
    Ok((api_version, kind, raw.unwrap_or_default()))
}

/// Decodes a `k8s\0`-enveloped protobuf body into the object's JSON.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let (api_version, kind, raw) = envelope(body)?;
    let Some(schema) = schema_for(&api_version, &kind) else {
        return Err(ProtoError::UnsupportedKind { api_version, kind });
    };
    let mut obj = message(raw, schema)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

/// Decodes a protobuf DeleteOptions body. Typed clients label it with their own group-version
/// (DeleteOptions is registered in every one), so only the kind is checked.
pub fn decode_delete_options(body: &[u8]) -> Result<Value, ProtoError> {
    let (api_version, kind, raw) = envelope(body)?;
    if kind != "DeleteOptions" {
        return Err(ProtoError::UnsupportedKind { api_version, kind });
    }
    let mut obj = message(raw, &meta::DELETE_OPTIONS)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    /// A length-delimited field.
    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        [
            varint((n << 3) | 2),
            varint(payload.len() as u64),
            payload.to_vec(),
        ]
        .concat()
    }

    /// A varint field.
    fn num(n: u64, v: u64) -> Vec<u8> {
        [varint(n << 3), varint(v)].concat()
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let tm = [field(1, api_version.as_bytes()), field(2, kind.as_bytes())].concat();
        [b"k8s\0".to_vec(), field(1, &tm), field(2, raw)].concat()
    }

    #[test]
    fn decodes_a_configmap_envelope() {
        let meta = [
            field(1, b"cm"),
            field(11, &[field(1, b"app"), field(2, b"web")].concat()),
        ]
        .concat();
        let raw = [
            field(1, &meta),
            field(2, &[field(1, b"k"), field(2, b"v")].concat()),
        ]
        .concat();
        let v = decode(&envelope("v1", "ConfigMap", &raw)).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "labels": {"app": "web"}}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn decodes_special_types_and_zero_values_as_go_json_would() {
        // IntOrString: type 0 → number, type 1 → string; Quantity → string ("0" when empty);
        // Time → RFC 3339, the zero time → null; int32 -1 travels as a 10-byte varint.
        let port_int = [num(1, 0), num(2, 8080), field(3, b"")].concat();
        let port_str = [num(1, 1), num(2, 0), field(3, b"http")].concat();
        let svc_spec = [
            field(
                1,
                &[field(1, b"a"), num(3, 80), field(4, &port_int), num(5, 0)].concat(),
            ),
            field(
                1,
                &[field(1, b"b"), num(3, 81), field(4, &port_str)].concat(),
            ),
            field(3, b"None"),
            num(13, 0),
            num(20, 0),
        ]
        .concat();
        let meta = [
            field(1, b"s"),
            field(8, &num(1, 0)),
            field(9, &[num(1, 1_700_000_000), num(2, 5)].concat()),
            num(10, u64::MAX),
        ]
        .concat();
        let raw = [field(1, &meta), field(2, &svc_spec), field(3, b"")].concat();
        let v = decode(&envelope("v1", "Service", &raw)).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "s", "creationTimestamp": null,
                    "deletionTimestamp": "2023-11-14T22:13:20Z", "deletionGracePeriodSeconds": -1},
                // nodePort 0 and publishNotReadyAddresses false are omitempty; the pointer
                // allocateLoadBalancerNodePorts keeps its explicit false.
                "spec": {"ports": [{"name": "a", "port": 80, "targetPort": 8080},
                                   {"name": "b", "port": 81, "targetPort": "http"}],
                         "clusterIP": "None", "allocateLoadBalancerNodePorts": false},
                "status": {}})
        );
        let resources = [
            field(
                1,
                &[field(1, b"cpu"), field(2, &field(1, b"500m"))].concat(),
            ),
            field(2, &[field(1, b"memory"), field(2, b"")].concat()),
        ]
        .concat();
        let container = [
            field(1, b"c"),
            field(8, &resources),
            num(16, 0),
            field(
                10,
                &[field(1, &field(3, &field(1, &port_int))), num(4, 7)].concat(),
            ),
        ]
        .concat();
        let spec = [
            field(2, &container),
            field(14, &[num(4, 5), num(4, 6), field(4, &[7, 8])].concat()),
        ]
        .concat();
        let raw = [field(1, &field(1, b"p")), field(2, &spec)].concat();
        let v = decode(&envelope("v1", "Pod", &raw)).unwrap();
        assert_eq!(
            v["spec"],
            json!({"containers": [{"name": "c",
                "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "0"}},
                "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 7}}],
                "securityContext": {"supplementalGroups": [5, 6, 7, 8]}})
        );
    }

    #[test]
    fn decodes_micro_times_and_kinds_client_go_components_send() {
        // A node heartbeat Lease: MicroTime keeps microseconds; pointer zeros stay.
        let spec = [
            field(1, b"node-a"),
            num(2, 40),
            field(4, &[num(1, 1_700_000_000), num(2, 123_456_789)].concat()),
            num(5, 0),
        ]
        .concat();
        let raw = [field(1, &field(1, b"node-a")), field(2, &spec)].concat();
        let v = decode(&envelope("coordination.k8s.io/v1", "Lease", &raw)).unwrap();
        assert_eq!(
            v["spec"],
            json!({"holderIdentity": "node-a", "leaseDurationSeconds": 40,
                   "renewTime": "2023-11-14T22:13:20.123456Z", "leaseTransitions": 0})
        );
        // A Node's status: quantities, the capitalised kubelet Port, a "" runtime handler.
        let status = [
            field(1, &[field(1, b"cpu"), field(2, &field(1, b"2"))].concat()),
            field(6, &field(1, &num(1, 10250))),
            field(12, &field(1, b"")),
        ]
        .concat();
        let raw = [field(1, &field(1, b"n")), field(3, &status)].concat();
        let v = decode(&envelope("v1", "Node", &raw)).unwrap();
        assert_eq!(
            v["status"],
            json!({"capacity": {"cpu": "2"}, "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                   "runtimeHandlers": [{"name": ""}]})
        );
        let bad = [
            field(1, &field(1, b"x")),
            field(2, &field(4, &num(2, 2_000_000_000))),
        ]
        .concat();
        let err = decode(&envelope("coordination.k8s.io/v1", "Lease", &bad)).unwrap_err();
        assert!(
            matches!(
                err.root(),
                ProtoError::BadValue {
                    message: "Time",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().starts_with("spec.renewTime: "), "{err}");
    }

    #[test]
    fn decodes_storage_kinds() {
        let qty = |q: &[u8]| field(1, q);
        let storage = |q: &[u8]| field(1, &[field(1, b"storage"), field(2, &qty(q))].concat());
        // A claim as client-go sends it: a pointer class "" (no class) is kept.
        let spec = [
            field(1, b"ReadWriteOnce"),
            field(
                2,
                &field(2, &[field(1, b"storage"), field(2, &qty(b"1Gi"))].concat()),
            ),
            field(5, b""),
            field(6, b"Filesystem"),
        ]
        .concat();
        let raw = [
            field(1, &field(1, b"data")),
            field(2, &spec),
            field(3, &field(1, b"Pending")),
        ]
        .concat();
        let v = decode(&envelope("v1", "PersistentVolumeClaim", &raw)).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                    "storageClassName": "", "volumeMode": "Filesystem"},
                "status": {"phase": "Pending"}})
        );
        // A volume: the inlined source, a claimRef and node affinity.
        let requirement = [
            field(1, b"kubernetes.io/hostname"),
            field(2, b"In"),
            field(3, b"n1"),
        ]
        .concat();
        // nodeSelectorTerms[0].matchExpressions[0]
        let affinity = field(1, &field(1, &requirement));
        let spec = [
            storage(b"5Gi"),
            field(
                2,
                &field(
                    3,
                    &[field(1, b"/d"), field(2, b"DirectoryOrCreate")].concat(),
                ),
            ),
            field(3, b"ReadWriteOnce"),
            field(4, &[field(2, b"default"), field(3, b"data")].concat()),
            field(5, b"Delete"),
            field(9, &field(1, &affinity)),
        ]
        .concat();
        let raw = [field(1, &field(1, b"pv1")), field(2, &spec)].concat();
        let v = decode(&envelope("v1", "PersistentVolume", &raw)).unwrap();
        assert_eq!(
            v["spec"],
            json!({"capacity": {"storage": "5Gi"},
                "hostPath": {"path": "/d", "type": "DirectoryOrCreate"},
                "accessModes": ["ReadWriteOnce"], "claimRef": {"namespace": "default", "name": "data"},
                "persistentVolumeReclaimPolicy": "Delete",
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}})
        );
        // A class; a volume plugin pea does not mount is refused by name.
        let raw = [
            field(1, &field(1, b"fast")),
            field(2, b"pea.dev/local-path"),
            num(6, 0),
            field(7, b"WaitForFirstConsumer"),
        ]
        .concat();
        let v = decode(&envelope("storage.k8s.io/v1", "StorageClass", &raw)).unwrap();
        assert_eq!(v["provisioner"], "pea.dev/local-path");
        assert_eq!(v["allowVolumeExpansion"], false);
        assert_eq!(v["volumeBindingMode"], "WaitForFirstConsumer");
        let raw = [
            field(1, &field(1, b"pv2")),
            field(2, &field(2, &field(22, b""))),
        ]
        .concat();
        let err = decode(&envelope("v1", "PersistentVolume", &raw)).unwrap_err();
        assert!(
            err.is_unsupported() && err.to_string().contains("csi"),
            "{err}"
        );
    }

    #[test]
    fn decodes_delete_options_and_bindings() {
        let opts = [
            num(1, 0),
            field(2, &field(1, b"uid-1")),
            field(4, b"Foreground"),
            field(5, b"All"),
        ]
        .concat();
        let v = decode_delete_options(&envelope("apps/v1", "DeleteOptions", &opts)).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                   "preconditions": {"uid": "uid-1"}, "propagationPolicy": "Foreground",
                   "dryRun": ["All"]})
        );
        assert!(matches!(
            decode_delete_options(&envelope("v1", "Pod", &[])),
            Err(ProtoError::UnsupportedKind { .. })
        ));
        let raw = [
            field(1, &field(1, b"p")),
            field(2, &[field(1, b"Node"), field(3, b"n1")].concat()),
        ]
        .concat();
        let v = decode(&envelope("v1", "Binding", &raw)).unwrap();
        assert_eq!(v["target"], json!({"kind": "Node", "name": "n1"}));
    }

    #[test]
    fn hostile_bytes_give_errors_never_panics() {
        let container = [
            field(1, b"c"),
            field(6, &[num(3, 80), field(4, b"TCP")].concat()),
        ]
        .concat();
        let tpl = [
            field(1, &field(11, &[field(1, b"a"), field(2, b"b")].concat())),
            field(2, &field(2, &container)),
        ]
        .concat();
        let good = envelope(
            "apps/v1",
            "Deployment",
            &field(2, &[num(1, 3), field(3, &tpl)].concat()),
        );
        assert!(decode(&good).is_ok());
        // Every truncation, and every single-byte corruption, decodes or fails cleanly.
        for n in 0..good.len() {
            let _ = decode(&good[..n]);
        }
        for i in 4..good.len() {
            for b in [0x00, 0x07, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = decode(&bad);
            }
        }
        // An over-long varint and a length past the end.
        assert!(matches!(
            decode(&[b"k8s\0".as_slice(), &[0x08], &[0xff; 11]].concat()),
            Err(ProtoError::Malformed(_))
        ));
        assert!(matches!(
            decode(&[b"k8s\0".as_slice(), &[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f]].concat()),
            Err(ProtoError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_unknown_kinds_fields_and_garbage() {
        let body = envelope("extensions/v1beta1", "Deployment", &[]);
        assert_eq!(
            decode(&body),
            Err(ProtoError::UnsupportedKind {
                api_version: "extensions/v1beta1".into(),
                kind: "Deployment".into()
            })
        );
        let body = envelope("v1", "ConfigMap", &field(9, b"x"));
        assert!(matches!(
            decode(&body),
            Err(ProtoError::UnsupportedField { field: 9, .. })
        ));
        // Deep inside a Deployment: an unknown Container field, and a known one we refuse.
        let deploy = |container: &[u8]| {
            let tpl = field(2, &field(2, container));
            envelope("apps/v1", "Deployment", &field(2, &field(3, &tpl)))
        };
        let err = decode(&deploy(&[field(1, b"c"), field(99, b"x")].concat())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.template.spec.containers[0]: protobuf field 99 of Container is not implemented (send JSON)"
        );
        assert!(err.is_unsupported());
        let err = decode(&deploy(&field(25, b""))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.template.spec.containers[0]: protobuf field 25 (restartPolicyRules) of Container is not implemented (send JSON)"
        );
        let err = decode(&deploy(&num(1, 3))).unwrap_err();
        assert!(matches!(err.root(), ProtoError::WireType { field: 1, .. }));
        assert!(!err.is_unsupported());
        assert_eq!(decode(b"nope"), Err(ProtoError::Magic));
        assert!(matches!(
            decode(b"k8s\0\x0a\xff"),
            Err(ProtoError::Malformed(_))
        ));
        let bad_ios = envelope("v1", "Service", &field(2, &field(1, &field(4, &num(1, 7)))));
        let err = decode(&bad_ios).unwrap_err();
        assert_eq!(err.to_string(), "spec.ports[0].targetPort: protobuf IntOrString: type 7 is neither 0 (int) nor 1 (string)");
    }
}
