//! Stored objects: raw JSON is the source of truth. `resourceVersion` is never stored; it is the
//! store's mod revision, written into `metadata` on every read (as kube-apiserver does on etcd).

use std::time::SystemTime;

use pea_control_store::KeyValue;
use serde_json::{json, Value};

use crate::status::ApiError;

/// Decodes a stored object and stamps its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::Internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    set_resource_version(&mut v, kv.mod_revision);
    Ok(v)
}

pub fn set_resource_version(obj: &mut Value, rev: i64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

/// Serialises an object for the store, without its resourceVersion.
pub fn encode(obj: &Value) -> Vec<u8> {
    // Copy the object only when there is a resourceVersion to leave out (never on creates).
    if obj.pointer("/metadata/resourceVersion").is_none() {
        return serde_json::to_vec(obj).unwrap_or_default();
    }
    let mut o = obj.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&o).unwrap_or_default()
}

/// Deepest nesting of arrays and objects a stored object may have: what `serde_json` (and so
/// [`decode`]) reads back, so an object that passes never makes later reads fail.
pub const MAX_DEPTH: usize = 127;

/// Whether `v` nests arrays and objects more than `max` levels deep. Iterative, so it is safe
/// on any value.
pub fn depth_exceeds(v: &Value, max: usize) -> bool {
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(m) => Box::new(m.values()),
            _ => continue,
        };
        if d + 1 > max {
            return true;
        }
        stack.extend(children.map(|c| (c, d + 1)));
    }
    false
}

/// Bytes `v` takes serialized, counted without building the string.
pub fn encoded_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub fn name_of(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// RFC 3339 UTC timestamp with second precision, as Kubernetes writes them.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    k8s_openapi::chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Parses an RFC 3339 timestamp to a system time.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let d = k8s_openapi::chrono::DateTime::parse_from_rfc3339(s).ok()?;
    let secs = u64::try_from(d.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// A random RFC 4122 version 4 UUID.
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    random_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut uid = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            uid.push('-');
        }
        uid.push(HEX[usize::from(x >> 4)] as char);
        uid.push(HEX[usize::from(x & 0x0f)] as char);
    }
    uid
}

/// Fills `buf` from the kernel's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) {
    use std::io::Read;
    // One handle for the process: opening the device per uid cost two syscalls per create.
    static URANDOM: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    if let Some(mut f) = URANDOM
        .get_or_init(|| std::fs::File::open("/dev/urandom").ok())
        .as_ref()
    {
        if f.read_exact(buf).is_ok() {
            return;
        }
    }
    // /dev/urandom always exists on Linux; never hand out predictable ids silently.
    panic!("cannot read /dev/urandom");
}

/// A random suffix for generateName (5 chars from Kubernetes' alphabet without vowels).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    random_bytes(&mut b);
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

/// A `List` envelope.
pub fn list_object(
    api_version: &str,
    list_kind: &str,
    items: Vec<Value>,
    rv: i64,
    cont: Option<String>,
) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = Value::String(c);
    }
    json!({"kind": list_kind, "apiVersion": api_version, "metadata": meta, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_distinct_version_4_uuids() {
        let (a, b) = (new_uid(), new_uid());
        assert_ne!(a, b);
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(a
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert!(groups[2].starts_with('4'), "{a}");
        assert!(matches!(&groups[3][..1], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn depth_limit_matches_what_decode_reads_back() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let ok: Value = serde_json::from_str(&nested(MAX_DEPTH)).unwrap();
        assert!(!depth_exceeds(&ok, MAX_DEPTH));
        assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH + 1)).is_err());
        let mut deeper = ok.clone();
        deeper = json!([deeper]);
        assert!(depth_exceeds(&deeper, MAX_DEPTH));
        assert!(!depth_exceeds(&json!(1), 0));
        assert!(depth_exceeds(&json!({}), 0));
        assert_eq!(
            encoded_len(&json!({"a": [1, "x"]})),
            r#"{"a":[1,"x"]}"#.len()
        );
    }

    #[test]
    fn encode_leaves_out_the_resource_version() {
        let with = json!({"metadata": {"name": "a", "resourceVersion": "7"}, "x": 1});
        let stored: Value = serde_json::from_slice(&encode(&with)).unwrap();
        assert_eq!(stored, json!({"metadata": {"name": "a"}, "x": 1}));
        let without = json!({"metadata": {"name": "a"}});
        assert_eq!(encode(&without), serde_json::to_vec(&without).unwrap());
    }
}
