//! The protobuf form of the OpenAPI v2 document (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`,
//! gnostic's `openapi.v2.Document`), which is what client-go's discovery — and so kubectl —
//! asks for. Encoded from the JSON document of `openapi_v2.rs`, covering every construct that
//! document uses; vendor extensions (`x-…`), defaults, enums and examples travel as YAML text
//! (JSON is YAML), as kube-openapi writes them.

use serde_json::{Map, Value};

/// A protobuf message being written.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn str(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn opt_str(&mut self, field: u32, v: Option<&Value>) {
        if let Some(s) = v.and_then(Value::as_str) {
            self.str(field, s);
        }
    }

    fn strs(&mut self, field: u32, v: Option<&Value>) {
        for s in v.and_then(Value::as_array).into_iter().flatten() {
            if let Some(s) = s.as_str() {
                self.bytes(field, s.as_bytes());
            }
        }
    }

    fn bool(&mut self, field: u32, v: Option<&Value>) {
        if v.and_then(Value::as_bool) == Some(true) {
            self.key(field, 0);
            self.varint(1);
        }
    }

    fn int(&mut self, field: u32, v: Option<&Value>) {
        if let Some(n) = v.and_then(Value::as_i64) {
            self.key(field, 0);
            self.varint(n as u64);
        }
    }

    fn double(&mut self, field: u32, v: Option<&Value>) {
        if let Some(n) = v.and_then(Value::as_f64) {
            self.key(field, 1);
            self.0.extend_from_slice(&n.to_le_bytes());
        }
    }

    fn msg(&mut self, field: u32, m: Msg) {
        self.bytes(field, &m.0);
    }
}

/// gnostic `Any`: the value as YAML text.
fn any(v: &Value) -> Msg {
    let mut m = Msg::default();
    m.bytes(2, serde_json::to_string(v).unwrap_or_default().as_bytes());
    m
}

/// `NamedAny` entries for every `x-…` key.
fn vendor_extensions(m: &mut Msg, field: u32, obj: &Map<String, Value>) {
    for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Msg::default();
        named.str(1, k);
        named.msg(2, any(v));
        m.msg(field, named);
    }
}

fn schema(v: &Value) -> Msg {
    let mut m = Msg::default();
    let Some(o) = v.as_object() else {
        return m;
    };
    m.opt_str(1, o.get("$ref"));
    m.opt_str(2, o.get("format"));
    m.opt_str(3, o.get("title"));
    m.opt_str(4, o.get("description"));
    if let Some(d) = o.get("default") {
        m.msg(5, any(d));
    }
    m.double(6, o.get("multipleOf"));
    m.double(7, o.get("maximum"));
    m.bool(8, o.get("exclusiveMaximum"));
    m.double(9, o.get("minimum"));
    m.bool(10, o.get("exclusiveMinimum"));
    m.int(11, o.get("maxLength"));
    m.int(12, o.get("minLength"));
    m.opt_str(13, o.get("pattern"));
    m.int(14, o.get("maxItems"));
    m.int(15, o.get("minItems"));
    m.bool(16, o.get("uniqueItems"));
    m.int(17, o.get("maxProperties"));
    m.int(18, o.get("minProperties"));
    m.strs(19, o.get("required"));
    for e in o
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.msg(20, any(e));
    }
    match o.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut ap = Msg::default();
            ap.key(2, 0);
            ap.varint(u64::from(*b));
            m.msg(21, ap);
        }
        Some(s @ Value::Object(_)) => {
            let mut ap = Msg::default();
            ap.msg(1, schema(s));
            m.msg(21, ap);
        }
        _ => {}
    }
    match o.get("type") {
        Some(Value::String(t)) => {
            let mut ti = Msg::default();
            ti.str(1, t);
            m.msg(22, ti);
        }
        Some(t @ Value::Array(_)) => {
            let mut ti = Msg::default();
            ti.strs(1, Some(t));
            m.msg(22, ti);
        }
        _ => {}
    }
    if let Some(items) = o.get("items") {
        let mut ii = Msg::default();
        match items {
            Value::Array(a) => a.iter().for_each(|s| ii.msg(1, schema(s))),
            s => ii.msg(1, schema(s)),
        }
        m.msg(23, ii);
    }
    for s in o
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.msg(24, schema(s));
    }
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        let mut p = Msg::default();
        for (name, s) in props {
            let mut named = Msg::default();
            named.str(1, name);
            named.msg(2, schema(s));
            p.msg(1, named);
        }
        m.msg(25, p);
    }
    m.opt_str(26, o.get("discriminator"));
    m.bool(27, o.get("readOnly"));
    if let Some(e) = o.get("example") {
        m.msg(30, any(e));
    }
    vendor_extensions(&mut m, 31, o);
    m
}

/// `ParametersItem` → `Parameter` (body, or a query/path sub-schema).
fn parameter(p: &Value) -> Msg {
    let mut param = Msg::default();
    match p["in"].as_str() {
        Some("body") => {
            let mut b = Msg::default();
            b.opt_str(1, p.get("description"));
            b.opt_str(2, p.get("name"));
            b.opt_str(3, p.get("in"));
            b.bool(4, p.get("required"));
            if let Some(s) = p.get("schema") {
                b.msg(5, schema(s));
            }
            param.msg(1, b);
        }
        Some(location) => {
            // Query and path sub-schemas share their first fields; type and uniqueItems differ.
            let (oneof, type_field, unique_field) = match location {
                "path" => (4, 5, 19),
                _ => (3, 6, 20),
            };
            let mut s = Msg::default();
            s.bool(1, p.get("required"));
            s.opt_str(2, p.get("in"));
            s.opt_str(3, p.get("description"));
            s.opt_str(4, p.get("name"));
            s.opt_str(type_field, p.get("type"));
            s.bool(unique_field, p.get("uniqueItems"));
            let mut nb = Msg::default();
            nb.msg(oneof, s);
            param.msg(2, nb);
        }
        None => {}
    }
    let mut item = Msg::default();
    item.msg(1, param);
    item
}

fn operation(op: &Value) -> Msg {
    let mut m = Msg::default();
    m.opt_str(5, op.get("operationId"));
    m.strs(6, op.get("produces"));
    m.strs(7, op.get("consumes"));
    for p in op["parameters"].as_array().into_iter().flatten() {
        m.msg(8, parameter(p));
    }
    let mut responses = Msg::default();
    for (code, r) in op["responses"].as_object().into_iter().flatten() {
        let mut resp = Msg::default();
        resp.opt_str(1, r.get("description"));
        if let Some(s) = r.get("schema") {
            let mut si = Msg::default();
            si.msg(1, schema(s));
            resp.msg(2, si);
        }
        let mut value = Msg::default();
        value.msg(1, resp);
        let mut named = Msg::default();
        named.str(1, code);
        named.msg(2, value);
        responses.msg(1, named);
    }
    m.msg(9, responses);
    m.strs(10, op.get("schemes"));
    if let Some(o) = op.as_object() {
        vendor_extensions(&mut m, 13, o);
    }
    m
}

fn path_item(item: &Value) -> Msg {
    let mut m = Msg::default();
    for (verb, field) in [
        ("get", 2),
        ("put", 3),
        ("post", 4),
        ("delete", 5),
        ("patch", 8),
    ] {
        if let Some(op) = item.get(verb) {
            m.msg(field, operation(op));
        }
    }
    for p in item["parameters"].as_array().into_iter().flatten() {
        m.msg(9, parameter(p));
    }
    m
}

/// Encodes the JSON v2 document as gnostic's `openapi.v2.Document`.
pub fn encode(doc: &Value) -> Vec<u8> {
    let mut d = Msg::default();
    d.opt_str(1, doc.get("swagger"));
    let mut info = Msg::default();
    info.opt_str(1, doc.pointer("/info/title"));
    info.opt_str(2, doc.pointer("/info/version"));
    d.msg(2, info);
    let mut paths = Msg::default();
    for (p, item) in doc["paths"].as_object().into_iter().flatten() {
        let mut named = Msg::default();
        named.str(1, p);
        named.msg(2, path_item(item));
        paths.msg(2, named);
    }
    d.msg(8, paths);
    let mut defs = Msg::default();
    for (name, s) in doc["definitions"].as_object().into_iter().flatten() {
        let mut named = Msg::default();
        named.str(1, name);
        named.msg(2, schema(s));
        defs.msg(1, named);
    }
    d.msg(9, defs);
    for req in doc["security"].as_array().into_iter().flatten() {
        let mut r = Msg::default();
        for (name, scopes) in req.as_object().into_iter().flatten() {
            let mut arr = Msg::default();
            arr.strs(1, Some(scopes));
            let mut named = Msg::default();
            named.str(1, name);
            named.msg(2, arr);
            r.msg(1, named);
        }
        d.msg(12, r);
    }
    let mut sec = Msg::default();
    for (name, s) in doc["securityDefinitions"].as_object().into_iter().flatten() {
        let mut key = Msg::default();
        key.opt_str(1, s.get("type"));
        key.opt_str(2, s.get("name"));
        key.opt_str(3, s.get("in"));
        key.opt_str(4, s.get("description"));
        let mut item = Msg::default();
        item.msg(2, key);
        let mut named = Msg::default();
        named.str(1, name);
        named.msg(2, item);
        sec.msg(1, named);
    }
    d.msg(13, sec);
    d.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_fields_use_gnostic_numbers() {
        // type → field 22 (TypeItem{value: "string"}): key 22<<3|2 = 0xb2 0x01.
        assert_eq!(
            schema(&json!({"type": "string"})).0,
            b"\xb2\x01\x08\x0a\x06string".to_vec()
        );
        // $ref → field 1; uniqueItems → field 16 varint.
        assert_eq!(
            schema(&json!({"$ref": "#/definitions/X", "uniqueItems": true})).0,
            [b"\x0a\x0f#/definitions/X".as_slice(), b"\x80\x01\x01"].concat()
        );
        // x-… → vendor_extension 31 as NamedAny{name, Any{yaml}}.
        let ext = schema(&json!({"x-k": 1})).0;
        assert_eq!(&ext[..2], b"\xfa\x01");
        assert!(ext.ends_with(b"\x12\x01\x31"), "{ext:?}");
    }
}
