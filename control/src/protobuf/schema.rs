//! Field tables and the table-driven decoder. Each table lists a message's fields by their
//! generated.proto number with the JSON name and how the value maps to JSON. Go's marshaller
//! writes every non-pointer field (empty strings, zero numbers, false), so the table also says
//! whether a zero value is kept (pointer or non-`omitempty` fields) or dropped (`omitempty`), so
//! the result is the JSON the same object would have been sent as.

use base64::Engine;
use serde_json::{json, Map, Value};

use super::wire::{Reader, Wire};
use super::ProtoError;

#[derive(Debug, Clone, Copy)]
pub(super) enum F {
    /// String, dropped when empty (`omitempty`).
    Str,
    /// String kept even when empty (a `*string`).
    StrP,
    /// Integer, dropped when zero.
    Int,
    /// Integer kept when zero (a pointer, or a field without `omitempty`).
    IntP,
    /// Bool, dropped when false.
    Bool,
    /// Bool kept when false (a `*bool`).
    BoolP,
    RepStr,
    /// Repeated integers, packed or not.
    RepInt,
    MapStr,
    /// map<string, bytes> → base64 strings.
    MapBytes,
    /// bytes → a base64 string, dropped when empty.
    Bytes,
    /// map<string, Quantity> → quantity strings.
    MapQty,
    Msg(&'static Schema),
    RepMsg(&'static Schema),
    /// An embedded Go struct whose fields JSON inlines into the parent (e.g. ProbeHandler).
    Inline(&'static Schema),
    /// meta/v1 Time → RFC 3339, or null for the zero time (as Go marshals it).
    Time,
    /// meta/v1 MicroTime → RFC 3339 with microseconds, or null for the zero time.
    MicroTime,
    /// resource.Quantity → its canonical string ("0" for the zero quantity).
    Qty,
    /// intstr.IntOrString → a number or a string.
    IntOrStr,
    /// meta/v1 FieldsV1 → the JSON it carries.
    FieldsV1,
    /// A field we know by name but do not decode: refused by name.
    No,
}

#[derive(Debug)]
pub(super) struct Schema {
    pub(super) name: &'static str,
    pub(super) fields: &'static [(u64, &'static str, F)],
}

fn string(b: &[u8], pos: usize) -> Result<String, ProtoError> {
    String::from_utf8(b.to_vec()).map_err(|_| ProtoError::Malformed(pos))
}

fn refuse(message: &'static str, field: u64) -> ProtoError {
    ProtoError::UnsupportedField {
        message,
        field,
        name: "",
    }
}

/// A map entry: key (1) and value (2), the value decoded as `kind`.
fn entry(b: &[u8], kind: F) -> Result<(String, Value), ProtoError> {
    let mut r = Reader::new(b);
    let (mut k, mut v) = (String::new(), None);
    while let Some((f, w)) = r.next("map entry")? {
        match (f, w, kind) {
            (1, Wire::Len(s), _) => k = string(s, r.pos)?,
            (2, Wire::Len(s), F::MapBytes) => {
                v = Some(json!(base64::engine::general_purpose::STANDARD.encode(s)))
            }
            (2, Wire::Len(s), F::MapQty) => v = Some(quantity(s)?),
            (2, Wire::Len(s), _) => v = Some(json!(string(s, r.pos)?)),
            (field, _, _) => return Err(refuse("map entry", field)),
        }
    }
    let empty = match kind {
        F::MapQty => json!("0"),
        _ => json!(""),
    };
    Ok((k, v.unwrap_or(empty)))
}

fn time(b: &[u8], micro: bool) -> Result<Value, ProtoError> {
    let mut r = Reader::new(b);
    let (mut secs, mut nanos) = (0i64, 0i64);
    while let Some((f, w)) = r.next("Time")? {
        match (f, w) {
            (1, Wire::Varint(v)) => secs = v as i64,
            (2, Wire::Varint(v)) => nanos = v as i64,
            (field, _) => return Err(refuse("Time", field)),
        }
    }
    if secs == 0 && nanos == 0 {
        return Ok(Value::Null);
    }
    let bad = || ProtoError::BadValue {
        message: "Time",
        detail: format!("{secs} s {nanos} ns is not a representable time"),
    };
    // Time carries whole seconds in JSON; MicroTime microseconds.
    let nanos = if micro {
        u32::try_from(nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)
            .ok_or_else(bad)?
    } else {
        0
    };
    let t = k8s_openapi::chrono::DateTime::from_timestamp(secs, nanos).ok_or_else(bad)?;
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(json!(t.format(format).to_string()))
}

fn quantity(b: &[u8]) -> Result<Value, ProtoError> {
    let mut r = Reader::new(b);
    let mut s = String::new();
    while let Some((f, w)) = r.next("Quantity")? {
        match (f, w) {
            (1, Wire::Len(v)) => s = string(v, r.pos)?,
            (field, _) => return Err(refuse("Quantity", field)),
        }
    }
    if s.is_empty() {
        s = "0".into();
    }
    Ok(json!(s))
}

fn int_or_string(b: &[u8]) -> Result<Value, ProtoError> {
    let mut r = Reader::new(b);
    let (mut ty, mut int, mut s) = (0u64, 0i64, String::new());
    while let Some((f, w)) = r.next("IntOrString")? {
        match (f, w) {
            (1, Wire::Varint(v)) => ty = v,
            (2, Wire::Varint(v)) => int = i64::from(v as i32),
            (3, Wire::Len(v)) => s = string(v, r.pos)?,
            (field, _) => return Err(refuse("IntOrString", field)),
        }
    }
    match ty {
        0 => Ok(json!(int)),
        1 => Ok(json!(s)),
        other => Err(ProtoError::BadValue {
            message: "IntOrString",
            detail: format!("type {other} is neither 0 (int) nor 1 (string)"),
        }),
    }
}

fn fields_v1(b: &[u8]) -> Result<Value, ProtoError> {
    let mut r = Reader::new(b);
    let mut v = json!({});
    while let Some((f, w)) = r.next("FieldsV1")? {
        match (f, w) {
            (1, Wire::Len(raw)) => {
                v = serde_json::from_slice(raw).map_err(|e| ProtoError::BadValue {
                    message: "FieldsV1",
                    detail: format!("raw is not JSON: {e}"),
                })?
            }
            (field, _) => return Err(refuse("FieldsV1", field)),
        }
    }
    Ok(v)
}

/// Puts `err` under `seg` in the JSON path of where decoding failed.
fn within(err: ProtoError, seg: String) -> ProtoError {
    match err {
        ProtoError::At { path, inner } => {
            let sep = if path.starts_with('[') { "" } else { "." };
            ProtoError::At {
                path: format!("{seg}{sep}{path}"),
                inner,
            }
        }
        other => ProtoError::At {
            path: seg,
            inner: Box::new(other),
        },
    }
}

fn push(out: &mut Map<String, Value>, name: &str, v: Value) {
    if let Value::Array(a) = out.entry(name).or_insert_with(|| json!([])) {
        a.push(v);
    }
}

/// Decodes one message into JSON by its table.
pub(super) fn message(b: &[u8], schema: &'static Schema) -> Result<Value, ProtoError> {
    let mut out = Map::new();
    decode_into(b, schema, &mut out)?;
    Ok(Value::Object(out))
}

fn decode_into(
    b: &[u8],
    schema: &'static Schema,
    out: &mut Map<String, Value>,
) -> Result<(), ProtoError> {
    let mut r = Reader::new(b);
    while let Some((field, w)) = r.next(schema.name)? {
        let Some(&(_, name, kind)) = schema.fields.iter().find(|(n, _, _)| *n == field) else {
            return Err(refuse(schema.name, field));
        };
        let wrong = |wire: u8| ProtoError::WireType {
            message: schema.name,
            field,
            wire,
        };
        match (kind, w) {
            (F::No, _) => {
                return Err(ProtoError::UnsupportedField {
                    message: schema.name,
                    field,
                    name,
                })
            }
            (F::Str | F::StrP, Wire::Len(s)) => {
                if !s.is_empty() || matches!(kind, F::StrP) {
                    out.insert(name.into(), json!(string(s, r.pos)?));
                }
            }
            (F::Int | F::IntP, Wire::Varint(v)) => {
                if v != 0 || matches!(kind, F::IntP) {
                    out.insert(name.into(), json!(v as i64));
                }
            }
            (F::Bool | F::BoolP, Wire::Varint(v)) => {
                if v != 0 || matches!(kind, F::BoolP) {
                    out.insert(name.into(), json!(v != 0));
                }
            }
            (F::Bytes, Wire::Len(s)) => {
                if !s.is_empty() {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(s);
                    out.insert(name.into(), json!(b64));
                }
            }
            (F::RepStr, Wire::Len(s)) => push(out, name, json!(string(s, r.pos)?)),
            (F::RepInt, Wire::Varint(v)) => push(out, name, json!(v as i64)),
            (F::RepInt, Wire::Len(packed)) => {
                let mut p = Reader::new(packed);
                while !p.at_end() {
                    let v = p.varint()?;
                    push(out, name, json!(v as i64));
                }
            }
            (F::MapStr | F::MapBytes | F::MapQty, Wire::Len(b)) => {
                let (k, v) = entry(b, kind).map_err(|e| within(e, name.into()))?;
                if let Value::Object(m) = out.entry(name).or_insert_with(|| json!({})) {
                    m.insert(k, v);
                }
            }
            (F::Msg(s), Wire::Len(b)) => {
                let v = message(b, s).map_err(|e| within(e, name.into()))?;
                out.insert(name.into(), v);
            }
            (F::RepMsg(s), Wire::Len(b)) => {
                let i = out.get(name).and_then(Value::as_array).map_or(0, Vec::len);
                let v = message(b, s).map_err(|e| within(e, format!("{name}[{i}]")))?;
                push(out, name, v)
            }
            (F::Inline(s), Wire::Len(b)) => decode_into(b, s, out)?,
            (F::Time | F::MicroTime | F::Qty | F::IntOrStr | F::FieldsV1, Wire::Len(b)) => {
                let v = match kind {
                    F::Time | F::MicroTime => time(b, matches!(kind, F::MicroTime)),
                    F::Qty => quantity(b),
                    F::IntOrStr => int_or_string(b),
                    _ => fields_v1(b),
                }
                .map_err(|e| within(e, name.into()))?;
                out.insert(name.into(), v);
            }
            (_, Wire::Varint(_)) => return Err(wrong(0)),
            (_, Wire::Len(_)) => return Err(wrong(2)),
        }
    }
    Ok(())
}
