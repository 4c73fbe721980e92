//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), which kubectl's typed
//! clients send for `kubectl create namespace|configmap|secret|serviceaccount`. The envelope is
//! `k8s\0` plus a `runtime.Unknown` whose `raw` field holds the object. Objects are decoded with
//! explicit field tables (Kubernetes' generated.proto numbering) into the same JSON the API
//! stores; a kind without a table, or a field the table lacks, is refused with a clear error,
//! never dropped.

use base64::Engine;
use serde_json::{json, Map, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("protobuf body does not start with the k8s\\0 envelope magic")]
    Magic,
    #[error("truncated or malformed protobuf at byte {0}")]
    Malformed(usize),
    #[error("protobuf bodies of kind {kind:?} are not implemented (send JSON, e.g. `kubectl create ... --dry-run=client -o yaml | kubectl apply -f -`)")]
    UnsupportedKind { kind: String },
    #[error("protobuf field {field} of {message} is not implemented (send JSON)")]
    UnsupportedField { message: &'static str, field: u64 },
    #[error("protobuf field {field} of {message} has the wrong wire type {wire}")]
    WireType {
        message: &'static str,
        field: u64,
        wire: u8,
    },
}

#[derive(Debug, Clone, Copy)]
enum F {
    Str,
    Int,
    Bool,
    Msg(&'static Schema),
    MapStr,
    MapBytes,
    RepStr,
    RepMsg(&'static Schema),
    Time,
}

#[derive(Debug)]
struct Schema {
    name: &'static str,
    fields: &'static [(u64, &'static str, F)],
}

static OWNER_REF: Schema = Schema {
    name: "OwnerReference",
    fields: &[
        (1, "kind", F::Str),
        (3, "name", F::Str),
        (4, "uid", F::Str),
        (5, "apiVersion", F::Str),
        (6, "controller", F::Bool),
        (7, "blockOwnerDeletion", F::Bool),
    ],
};
static OBJECT_META: Schema = Schema {
    name: "ObjectMeta",
    fields: &[
        (1, "name", F::Str),
        (2, "generateName", F::Str),
        (3, "namespace", F::Str),
        (4, "selfLink", F::Str),
        (5, "uid", F::Str),
        (6, "resourceVersion", F::Str),
        (7, "generation", F::Int),
        (8, "creationTimestamp", F::Time),
        (9, "deletionTimestamp", F::Time),
        (10, "deletionGracePeriodSeconds", F::Int),
        (11, "labels", F::MapStr),
        (12, "annotations", F::MapStr),
        (13, "ownerReferences", F::RepMsg(&OWNER_REF)),
        (14, "finalizers", F::RepStr),
    ],
};
static NAMESPACE_SPEC: Schema = Schema {
    name: "NamespaceSpec",
    fields: &[(1, "finalizers", F::RepStr)],
};
static NAMESPACE_STATUS: Schema = Schema {
    name: "NamespaceStatus",
    fields: &[(1, "phase", F::Str)],
};
static NAMESPACE: Schema = Schema {
    name: "Namespace",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "spec", F::Msg(&NAMESPACE_SPEC)),
        (3, "status", F::Msg(&NAMESPACE_STATUS)),
    ],
};
static CONFIG_MAP: Schema = Schema {
    name: "ConfigMap",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "data", F::MapStr),
        (3, "binaryData", F::MapBytes),
        (4, "immutable", F::Bool),
    ],
};
static SECRET: Schema = Schema {
    name: "Secret",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "data", F::MapBytes),
        (3, "type", F::Str),
        (4, "stringData", F::MapStr),
        (5, "immutable", F::Bool),
    ],
};
static OBJECT_REF: Schema = Schema {
    name: "ObjectReference",
    fields: &[
        (1, "kind", F::Str),
        (2, "namespace", F::Str),
        (3, "name", F::Str),
        (4, "uid", F::Str),
        (5, "apiVersion", F::Str),
        (6, "resourceVersion", F::Str),
        (7, "fieldPath", F::Str),
    ],
};
static LOCAL_OBJECT_REF: Schema = Schema {
    name: "LocalObjectReference",
    fields: &[(1, "name", F::Str)],
};
static SERVICE_ACCOUNT: Schema = Schema {
    name: "ServiceAccount",
    fields: &[
        (1, "metadata", F::Msg(&OBJECT_META)),
        (2, "secrets", F::RepMsg(&OBJECT_REF)),
        (3, "imagePullSecrets", F::RepMsg(&LOCAL_OBJECT_REF)),
        (4, "automountServiceAccountToken", F::Bool),
    ],
};
static TYPE_META: Schema = Schema {
    name: "TypeMeta",
    fields: &[(1, "apiVersion", F::Str), (2, "kind", F::Str)],
};

/// One decoded wire field.
enum Wire<'a> {
    Varint(u64),
    Len(&'a [u8]),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(ProtoError::Malformed(self.pos))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ProtoError::Malformed(self.pos))
    }

    /// The next (field number, value), or None at the end.
    fn next(&mut self, message: &'static str) -> Result<Option<(u64, Wire<'a>)>, ProtoError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let (field, wire) = (tag >> 3, (tag & 7) as u8);
        let value = match wire {
            0 => Wire::Varint(self.varint()?),
            2 => {
                let len =
                    usize::try_from(self.varint()?).map_err(|_| ProtoError::Malformed(self.pos))?;
                let end = self
                    .pos
                    .checked_add(len)
                    .filter(|e| *e <= self.buf.len())
                    .ok_or(ProtoError::Malformed(self.pos))?;
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Wire::Len(s)
            }
            _ => {
                return Err(ProtoError::WireType {
                    message,
                    field,
                    wire,
                })
            }
        };
        Ok(Some((field, value)))
    }
}

fn string(b: &[u8], pos: usize) -> Result<String, ProtoError> {
    String::from_utf8(b.to_vec()).map_err(|_| ProtoError::Malformed(pos))
}

/// A map entry: key (1) and value (2).
fn entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), ProtoError> {
    let mut r = Reader { buf: b, pos: 0 };
    let (mut k, mut v) = (String::new(), json!(""));
    while let Some((f, w)) = r.next("map entry")? {
        match (f, w) {
            (1, Wire::Len(s)) => k = string(s, r.pos)?,
            (2, Wire::Len(s)) if bytes_value => {
                v = json!(base64::engine::general_purpose::STANDARD.encode(s))
            }
            (2, Wire::Len(s)) => v = json!(string(s, r.pos)?),
            (field, _) => {
                return Err(ProtoError::UnsupportedField {
                    message: "map entry",
                    field,
                })
            }
        }
    }
    Ok((k, v))
}

fn time(b: &[u8]) -> Result<Value, ProtoError> {
    let mut r = Reader { buf: b, pos: 0 };
    let mut secs = 0i64;
    while let Some((f, w)) = r.next("Time")? {
        match (f, w) {
            (1, Wire::Varint(v)) => secs = v as i64,
            (2, Wire::Varint(_)) => {}
            (field, _) => {
                return Err(ProtoError::UnsupportedField {
                    message: "Time",
                    field,
                })
            }
        }
    }
    if secs <= 0 {
        return Ok(Value::Null);
    }
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
    Ok(json!(crate::objects::rfc3339(t)))
}

fn message(b: &[u8], schema: &'static Schema) -> Result<Value, ProtoError> {
    let mut r = Reader { buf: b, pos: 0 };
    let mut out = Map::new();
    while let Some((field, w)) = r.next(schema.name)? {
        let Some((_, name, kind)) = schema.fields.iter().find(|(n, _, _)| *n == field) else {
            return Err(ProtoError::UnsupportedField {
                message: schema.name,
                field,
            });
        };
        let bad = || ProtoError::WireType {
            message: schema.name,
            field,
            wire: 0,
        };
        let name = name.to_string();
        match (kind, w) {
            // Go's marshaller writes empty strings, zero numbers and zero times; JSON omits them.
            (F::Str, Wire::Len(s)) => {
                if !s.is_empty() {
                    out.insert(name, json!(string(s, r.pos)?));
                }
            }
            (F::Int, Wire::Varint(v)) => {
                if v != 0 {
                    out.insert(name, json!(v as i64));
                }
            }
            (F::Bool, Wire::Varint(v)) => {
                out.insert(name, json!(v != 0));
            }
            (F::Msg(s), Wire::Len(b)) => {
                out.insert(name, message(b, s)?);
            }
            (F::Time, Wire::Len(b)) => {
                let t = time(b)?;
                if !t.is_null() {
                    out.insert(name, t);
                }
            }
            (F::MapStr | F::MapBytes, Wire::Len(b)) => {
                let (k, v) = entry(b, matches!(kind, F::MapBytes))?;
                if let Value::Object(m) = out.entry(name).or_insert_with(|| json!({})) {
                    m.insert(k, v);
                }
            }
            (F::RepStr, Wire::Len(s)) => {
                let v = json!(string(s, r.pos)?);
                if let Value::Array(a) = out.entry(name).or_insert_with(|| json!([])) {
                    a.push(v);
                }
            }
            (F::RepMsg(s), Wire::Len(b)) => {
                let v = message(b, s)?;
                if let Value::Array(a) = out.entry(name).or_insert_with(|| json!([])) {
                    a.push(v);
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a `k8s\0`-enveloped protobuf body into the object's JSON.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let rest = body.strip_prefix(b"k8s\0").ok_or(ProtoError::Magic)?;
    let mut r = Reader { buf: rest, pos: 0 };
    let (mut type_meta, mut raw) = (Value::Null, None);
    while let Some((field, w)) = r.next("Unknown")? {
        match (field, w) {
            (1, Wire::Len(b)) => type_meta = message(b, &TYPE_META)?,
            (2, Wire::Len(b)) => raw = Some(b),
            (3 | 4, _) => {}
            (field, _) => {
                return Err(ProtoError::UnsupportedField {
                    message: "Unknown",
                    field,
                })
            }
        }
    }
    let kind = type_meta["kind"].as_str().unwrap_or("").to_string();
    let schema: &'static Schema = match kind.as_str() {
        "Namespace" => &NAMESPACE,
        "ConfigMap" => &CONFIG_MAP,
        "Secret" => &SECRET,
        "ServiceAccount" => &SERVICE_ACCOUNT,
        _ => return Err(ProtoError::UnsupportedKind { kind }),
    };
    let mut obj = message(raw.unwrap_or_default(), schema)?;
    obj["apiVersion"] = type_meta["apiVersion"].clone();
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
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
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &tm), field(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "labels": {"app": "web"}}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn refuses_unknown_kinds_fields_and_garbage() {
        let tm = [field(1, b"apps/v1"), field(2, b"Deployment")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &tm)].concat();
        assert_eq!(
            decode(&body),
            Err(ProtoError::UnsupportedKind {
                kind: "Deployment".into()
            })
        );
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &tm), field(2, &field(9, b"x"))].concat();
        assert!(matches!(
            decode(&body),
            Err(ProtoError::UnsupportedField { field: 9, .. })
        ));
        assert_eq!(decode(b"nope"), Err(ProtoError::Magic));
        assert!(matches!(
            decode(b"k8s\0\x0a\xff"),
            Err(ProtoError::Malformed(_))
        ));
    }
}
