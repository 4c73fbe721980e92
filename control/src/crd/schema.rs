//! Structural schemas (a CRD version's `openAPIV3Schema`): compiled once per CRD change into a
//! tree the request path walks to default, prune and validate custom objects, with kube's
//! wording (`spec.replicas in body should be less than or equal to 10`).
//!
//! Compilation bounds what a hostile schema can cost: nesting depth, node count, enum values
//! and regex size are capped, and every pattern is compiled by the `regex` crate, whose
//! matching time is linear in the input (no backtracking blow-ups).

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// How deep schema nodes may nest (`properties`/`items`/`additionalProperties` steps).
pub const MAX_DEPTH: usize = 32;
/// How many schema nodes one version's schema may have.
pub const MAX_NODES: usize = 4096;
/// How many enum values one version's schema may list in all.
pub const MAX_ENUM_VALUES: usize = 2048;
/// The longest accepted `pattern`.
pub const MAX_PATTERN_LEN: usize = 1024;
/// The compiled size one pattern may take (the `regex` crate's size limit).
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// A (field path, message) pair, as `ApiError::Invalid` carries them.
pub type Cause = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl Type {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "object" => Type::Object,
            "array" => Type::Array,
            "string" => Type::String,
            "integer" => Type::Integer,
            "number" => Type::Number,
            "boolean" => Type::Boolean,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Type::Object => "object",
            Type::Array => "array",
            Type::String => "string",
            Type::Integer => "integer",
            Type::Number => "number",
            Type::Boolean => "boolean",
        }
    }
}

/// One compiled schema node.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub ty: Option<Type>,
    pub description: Option<String>,
    pub properties: BTreeMap<String, Schema>,
    /// `additionalProperties` as a schema (a map's values).
    pub additional: Option<Box<Schema>>,
    pub items: Option<Box<Schema>>,
    pub required: Vec<String>,
    pub enumeration: Vec<Value>,
    pub pattern: Option<(String, regex::Regex)>,
    pub format: Option<String>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: bool,
    pub exclusive_maximum: bool,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub min_properties: Option<u64>,
    pub max_properties: Option<u64>,
    pub nullable: bool,
    pub default: Option<Value>,
    pub int_or_string: bool,
    pub preserve_unknown: bool,
    pub embedded_resource: bool,
    /// `x-kubernetes-validations`, compiled.
    pub rules: Vec<super::rules::Rule>,
    /// `allOf`, `anyOf`, `oneOf` and `not`: value validations only (kube's structural rules
    /// forbid types, defaults and extensions inside them), checked after this node's own.
    pub all_of: Vec<Schema>,
    pub any_of: Vec<Schema>,
    pub one_of: Vec<Schema>,
    pub not: Option<Box<Schema>>,
}

/// Where a node sits: in the structural tree, or inside a value validation (`allOf`, `anyOf`,
/// `oneOf`, `not`), where kube lets only validation keywords appear.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Root,
    Structural,
    /// Inside a value validation; `types_allowed` for the `anyOf: [{type: integer}, {type:
    /// string}]` kube accepts under `x-kubernetes-int-or-string`.
    Nested {
        types_allowed: bool,
    },
}

/// What compiling counts, to bound the whole schema.
#[derive(Default)]
struct Budget {
    nodes: usize,
    enum_values: usize,
    rules: usize,
}

const KNOWN_KEYS: &[&str] = &[
    "type",
    "description",
    "properties",
    "additionalProperties",
    "items",
    "required",
    "enum",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "nullable",
    "default",
    "title",
    "example",
    "externalDocs",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
    "uniqueItems",
    "multipleOf",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
];

impl Schema {
    /// Compiles `openAPIV3Schema` at `path` (e.g.
    /// `spec.versions[0].schema.openAPIV3Schema`); every problem is a cause under that path.
    pub fn compile(raw: &Value, path: &str) -> Result<Schema, Vec<Cause>> {
        let mut causes = Vec::new();
        let mut budget = Budget::default();
        let schema = compile_node(raw, path, 0, Place::Root, &mut budget, &mut causes);
        if raw.get("type").and_then(Value::as_str) != Some("object") && causes.is_empty() {
            causes.push((
                format!("{path}.type"),
                "Unsupported value: \"\": supported values: \"object\"".into(),
            ));
        }
        if causes.is_empty() {
            Ok(schema)
        } else {
            Err(causes)
        }
    }

    /// Whether any node below carries a `default` (reads of stored objects default only then).
    pub fn has_defaults(&self) -> bool {
        self.default.is_some()
            || self.properties.values().any(Schema::has_defaults)
            || self.additional.as_deref().is_some_and(Schema::has_defaults)
            || self.items.as_deref().is_some_and(Schema::has_defaults)
    }

    /// The node at a dotted path of property names (`spec.replicas`), for `kubectl explain`
    /// style lookups and scale paths.
    pub fn at(&self, path: &[&str]) -> Option<&Schema> {
        let mut cur = self;
        for p in path {
            cur = cur.properties.get(*p)?;
        }
        Some(cur)
    }
}

fn compile_node(
    raw: &Value,
    path: &str,
    depth: usize,
    place: Place,
    budget: &mut Budget,
    causes: &mut Vec<Cause>,
) -> Schema {
    let root = place == Place::Root;
    let nested = matches!(place, Place::Nested { .. });
    let child_place = if nested { place } else { Place::Structural };
    let mut s = Schema::default();
    budget.nodes += 1;
    if budget.nodes > MAX_NODES {
        if budget.nodes == MAX_NODES + 1 {
            causes.push((
                path.into(),
                format!("Too many: the schema has more than {MAX_NODES} nodes"),
            ));
        }
        return s;
    }
    if depth > MAX_DEPTH {
        causes.push((
            path.into(),
            format!("Too deep: the schema nests more than {MAX_DEPTH} levels"),
        ));
        return s;
    }
    let Some(m) = raw.as_object() else {
        causes.push((path.into(), "Invalid value: must be an object".into()));
        return s;
    };
    for k in m.keys() {
        if !KNOWN_KEYS.contains(&k.as_str()) {
            causes.push((
                format!("{path}.{k}"),
                "Forbidden: unknown schema keyword".into(),
            ));
        }
    }
    if let Place::Nested { types_allowed } = place {
        forbid_generics(m, path, types_allowed, causes);
    }
    for k in ["uniqueItems", "multipleOf"] {
        if m.contains_key(k) {
            causes.push((
                format!("{path}.{k}"),
                format!("Forbidden: {k} is not implemented in pea-control"),
            ));
        }
    }
    if let Some(raw_rules) = m.get("x-kubernetes-validations") {
        s.rules = super::rules::compile(raw_rules, path, &mut budget.rules, causes);
    }
    let flag = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
    s.int_or_string = flag("x-kubernetes-int-or-string");
    s.preserve_unknown = flag("x-kubernetes-preserve-unknown-fields");
    s.embedded_resource = flag("x-kubernetes-embedded-resource");
    s.nullable = flag("nullable");
    s.exclusive_minimum = flag("exclusiveMinimum");
    s.exclusive_maximum = flag("exclusiveMaximum");
    s.description = m
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string);
    match m.get("type").and_then(Value::as_str) {
        Some(t) => match Type::parse(t) {
            Some(t) => s.ty = Some(t),
            None => causes.push((
                format!("{path}.type"),
                format!("Unsupported value: {t:?}: supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""),
            )),
        },
        None if s.int_or_string || s.preserve_unknown || nested => {}
        None => causes.push((
            format!("{path}.type"),
            "Required value: must not be empty for specified object fields".into(),
        )),
    }
    if s.int_or_string && s.ty.is_some() {
        causes.push((
            format!("{path}.type"),
            "Invalid value: x-kubernetes-int-or-string must not be combined with a type".into(),
        ));
    }
    if s.embedded_resource && s.ty != Some(Type::Object) {
        causes.push((
            format!("{path}.type"),
            "Required value: must be object if x-kubernetes-embedded-resource is true".into(),
        ));
    }
    let num = |k: &str| m.get(k).and_then(Value::as_f64);
    let count = |k: &str| m.get(k).and_then(Value::as_u64);
    s.minimum = num("minimum");
    s.maximum = num("maximum");
    s.min_length = count("minLength");
    s.max_length = count("maxLength");
    s.min_items = count("minItems");
    s.max_items = count("maxItems");
    s.min_properties = count("minProperties");
    s.max_properties = count("maxProperties");
    s.format = m.get("format").and_then(Value::as_str).map(str::to_string);
    s.default = m.get("default").cloned();
    if let Some(r) = m.get("required").and_then(Value::as_array) {
        s.required = r
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
    }
    if let Some(e) = m.get("enum").and_then(Value::as_array) {
        budget.enum_values += e.len();
        if budget.enum_values > MAX_ENUM_VALUES {
            causes.push((
                format!("{path}.enum"),
                format!("Too many: the schema lists more than {MAX_ENUM_VALUES} enum values"),
            ));
        } else {
            s.enumeration = e.clone();
        }
    }
    if let Some(p) = m.get("pattern").and_then(Value::as_str) {
        if p.len() > MAX_PATTERN_LEN {
            causes.push((
                format!("{path}.pattern"),
                format!("Too long: may not be more than {MAX_PATTERN_LEN} bytes"),
            ));
        } else {
            match regex::RegexBuilder::new(p)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
            {
                Ok(re) => s.pattern = Some((p.to_string(), re)),
                Err(e) => causes.push((
                    format!("{path}.pattern"),
                    format!("Invalid value: {p:?}: must be a valid regular expression: {e}"),
                )),
            }
        }
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            let child = compile_node(
                sub,
                &format!("{path}.properties[{name}]"),
                depth + 1,
                child_place,
                budget,
                causes,
            );
            s.properties.insert(name.clone(), child);
        }
    }
    match m.get("additionalProperties") {
        Some(Value::Bool(false)) | None => {}
        Some(Value::Bool(true)) => s.preserve_unknown = true,
        Some(sub) => {
            if !s.properties.is_empty() {
                causes.push((
                    format!("{path}.additionalProperties"),
                    "Forbidden: additionalProperties and properties are mutual exclusive".into(),
                ));
            }
            s.additional = Some(Box::new(compile_node(
                sub,
                &format!("{path}.additionalProperties"),
                depth + 1,
                child_place,
                budget,
                causes,
            )));
        }
    }
    if let Some(sub) = m.get("items") {
        s.items = Some(Box::new(compile_node(
            sub,
            &format!("{path}.items"),
            depth + 1,
            child_place,
            budget,
            causes,
        )));
    } else if s.ty == Some(Type::Array) && !nested {
        causes.push((
            format!("{path}.items"),
            "Required value: must be specified".into(),
        ));
    }
    if root {
        // kube: the root's metadata may only restrict name and generateName.
        if let Some(meta) = s.properties.get("metadata") {
            if meta
                .properties
                .keys()
                .any(|k| k != "name" && k != "generateName")
            {
                causes.push((
                    format!("{path}.properties[metadata]"),
                    "Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified".into(),
                ));
            }
        }
    }
    compile_compositions(&mut s, m, path, depth, place, budget, causes);
    if let Some(d) = s.default.as_ref().filter(|_| !nested) {
        let mut probe = d.clone();
        let mut bad = Vec::new();
        validate_node(&s, &mut probe, &format!("{path}.default"), &mut bad);
        for (f, msg) in bad {
            causes.push((f, msg));
        }
    }
    s
}

/// kube's `validateNestedValueValidation`: inside `allOf`/`anyOf`/`oneOf`/`not` only value
/// validations may appear, so the structural part alone decides types, defaults and pruning.
fn forbid_generics(
    m: &serde_json::Map<String, Value>,
    path: &str,
    types_allowed: bool,
    causes: &mut Vec<Cause>,
) {
    let mut forbid = |k: &str, why: &str| {
        causes.push((format!("{path}.{k}"), format!("Forbidden: {why}")));
    };
    let set = |k: &str| m.contains_key(k);
    let truthy = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
    let non_empty_str = |k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if non_empty_str("type") && !types_allowed {
        forbid("type", "must be empty to be structural");
    }
    if set("additionalProperties") {
        forbid("additionalProperties", "must be undefined to be structural");
    }
    if set("default") {
        forbid("default", "must be undefined to be structural");
    }
    if non_empty_str("title") {
        forbid("title", "must be empty to be structural");
    }
    if non_empty_str("description") {
        forbid("description", "must be empty to be structural");
    }
    if truthy("nullable") {
        forbid("nullable", "must be false to be structural");
    }
    if set("x-kubernetes-preserve-unknown-fields") {
        forbid(
            "x-kubernetes-preserve-unknown-fields",
            "must be undefined to be structural",
        );
    }
    for k in [
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
    ] {
        if truthy(k) {
            forbid(k, "must be false to be structural");
        }
    }
    if m.get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        forbid(
            "x-kubernetes-list-map-keys",
            "must be empty to be structural",
        );
    }
    for k in ["x-kubernetes-list-type", "x-kubernetes-map-type"] {
        if set(k) {
            forbid(k, "must be undefined to be structural");
        }
    }
    if m.get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        forbid("x-kubernetes-validations", "must be empty to be structural");
    }
}

/// Compiles `allOf`, `anyOf`, `oneOf` and `not` of node `s`, and checks kube's structural
/// completeness: every property or items they name must be specified structurally too.
fn compile_compositions(
    s: &mut Schema,
    m: &serde_json::Map<String, Value>,
    path: &str,
    depth: usize,
    place: Place,
    budget: &mut Budget,
    causes: &mut Vec<Cause>,
) {
    let nested = matches!(place, Place::Nested { .. });
    // Types inside anyOf only where kube allows them: under x-kubernetes-int-or-string.
    let types_allowed = match place {
        Place::Nested { types_allowed } => types_allowed,
        _ => s.int_or_string,
    };
    let list = |key: &str, types_allowed: bool, budget: &mut Budget, causes: &mut Vec<Cause>| {
        let Some(raw) = m.get(key) else {
            return Vec::new();
        };
        let Some(items) = raw.as_array() else {
            causes.push((
                format!("{path}.{key}"),
                "Invalid value: must be an array".into(),
            ));
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .map(|(i, sub)| {
                compile_node(
                    sub,
                    &format!("{path}.{key}[{i}]"),
                    depth + 1,
                    Place::Nested { types_allowed },
                    budget,
                    causes,
                )
            })
            .collect()
    };
    s.all_of = list("allOf", types_allowed, budget, causes);
    s.any_of = list("anyOf", types_allowed, budget, causes);
    s.one_of = list("oneOf", false, budget, causes);
    if let Some(sub) = m.get("not") {
        s.not = Some(Box::new(compile_node(
            sub,
            &format!("{path}.not"),
            depth + 1,
            Place::Nested {
                types_allowed: false,
            },
            budget,
            causes,
        )));
    }
    if nested {
        return;
    }
    let subs = [
        ("allOf", &s.all_of),
        ("anyOf", &s.any_of),
        ("oneOf", &s.one_of),
    ];
    for (key, list) in subs {
        for (i, v) in list.iter().enumerate() {
            completeness(s, v, path, &format!("{path}.{key}[{i}]"), causes);
        }
    }
    if let Some(v) = &s.not {
        completeness(s, v, path, &format!("{path}.not"), causes);
    }
}

/// kube's `validateNestedValueValidationCompleteness`.
fn completeness(s: &Schema, v: &Schema, spath: &str, vpath: &str, causes: &mut Vec<Cause>) {
    for (k, vf) in &v.properties {
        let sp = format!("{spath}.properties[{k}]");
        let vp = format!("{vpath}.properties[{k}]");
        match (s.properties.get(k), s.additional.as_deref()) {
            (Some(sf), _) => completeness(sf, vf, &sp, &vp, causes),
            (None, Some(add)) => completeness(
                add,
                vf,
                &format!("{spath}.additionalProperties"),
                &vp,
                causes,
            ),
            (None, None) => {
                causes.push((sp, format!("Required value: because it is defined in {vp}")))
            }
        }
    }
    if let Some(vi) = &v.items {
        match &s.items {
            Some(si) => completeness(
                si,
                vi,
                &format!("{spath}.items"),
                &format!("{vpath}.items"),
                causes,
            ),
            None => causes.push((
                format!("{spath}.items"),
                format!("Required value: because it is defined in {vpath}.items"),
            )),
        }
    }
    for (key, list) in [
        ("allOf", &v.all_of),
        ("anyOf", &v.any_of),
        ("oneOf", &v.one_of),
    ] {
        for (i, sub) in list.iter().enumerate() {
            completeness(s, sub, spath, &format!("{vpath}.{key}[{i}]"), causes);
        }
    }
    if let Some(sub) = &v.not {
        completeness(s, sub, spath, &format!("{vpath}.not"), causes);
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Fills absent fields that have a `default`, top-down (a default inside an absent object
/// applies only once that object exists, as in kube).
pub fn apply_defaults(s: &Schema, v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (name, sub) in &s.properties {
                if !m.contains_key(name) {
                    if let Some(d) = &sub.default {
                        m.insert(name.clone(), d.clone());
                    }
                }
                if let Some(child) = m.get_mut(name) {
                    apply_defaults(sub, child);
                }
            }
            if let Some(add) = &s.additional {
                for child in m.values_mut() {
                    apply_defaults(add, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(it) = &s.items {
                for child in items {
                    apply_defaults(it, child);
                }
            }
        }
        _ => {}
    }
}

/// Drops fields the schema does not specify (unless it preserves unknown fields there);
/// returns their paths (`spec.bogus`, `spec.list[0].x`). At the root, apiVersion, kind and
/// metadata are always kept; an embedded resource keeps its own.
pub fn prune(s: &Schema, v: &mut Value, path: &str, root: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if s.preserve_unknown && s.properties.is_empty() && s.additional.is_none() {
                return;
            }
            let keep_meta = root || s.embedded_resource;
            let mut drop = Vec::new();
            for (k, child) in m.iter_mut() {
                if keep_meta && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(sub) = s.properties.get(k) {
                    prune(sub, child, &join(path, k), false, out);
                } else if let Some(add) = &s.additional {
                    prune(add, child, &join(path, k), false, out);
                } else if !s.preserve_unknown {
                    drop.push(k.clone());
                }
            }
            for k in drop {
                m.remove(&k);
                out.push(join(path, &k));
            }
        }
        Value::Array(items) => {
            if let Some(it) = &s.items {
                for (n, child) in items.iter_mut().enumerate() {
                    prune(it, child, &format!("{path}[{n}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

/// Validates `v` against `s`; causes name kube's field paths.
pub fn validate(s: &Schema, v: &mut Value, causes: &mut Vec<Cause>) {
    validate_node(s, v, "", causes)
}

fn validate_node(s: &Schema, v: &mut Value, path: &str, causes: &mut Vec<Cause>) {
    let shown = if path.is_empty() { "<root>" } else { path };
    let field = path.to_string();
    if v.is_null() {
        if !s.nullable && s.ty.is_some() && !path.is_empty() {
            causes.push((
                field,
                format!(
                    "Invalid value: \"null\": {shown} in body must be of type {}: \"null\"",
                    s.ty.map(Type::name).unwrap_or("")
                ),
            ));
        }
        return;
    }
    let actual = type_of(v);
    if s.int_or_string {
        if !matches!(actual, "integer" | "string") {
            causes.push((
                field,
                format!("Invalid value: {}: {shown} in body must be of type integer-or-string: {actual:?}", render(v)),
            ));
            return;
        }
    } else if let Some(t) = s.ty {
        let ok = match t {
            Type::Number => matches!(actual, "integer" | "number"),
            t => t.name() == actual,
        };
        if !ok {
            causes.push((
                field,
                format!(
                    "Invalid value: {actual:?}: {shown} in body must be of type {}: {actual:?}",
                    t.name()
                ),
            ));
            return;
        }
    }
    if !s.enumeration.is_empty() && !s.enumeration.contains(v) {
        let supported: Vec<String> = s.enumeration.iter().map(render).collect();
        causes.push((
            field.clone(),
            format!(
                "Unsupported value: {}: supported values: {}",
                render(v),
                supported.join(", ")
            ),
        ));
    }
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(max) = s.maximum {
                if s.exclusive_maximum && x >= max {
                    causes.push((
                        field.clone(),
                        format!(
                            "Invalid value: {n}: {shown} in body should be less than {}",
                            num(max)
                        ),
                    ));
                } else if x > max {
                    causes.push((field.clone(), format!("Invalid value: {n}: {shown} in body should be less than or equal to {}", num(max))));
                }
            }
            if let Some(min) = s.minimum {
                if s.exclusive_minimum && x <= min {
                    causes.push((
                        field.clone(),
                        format!(
                            "Invalid value: {n}: {shown} in body should be greater than {}",
                            num(min)
                        ),
                    ));
                } else if x < min {
                    causes.push((field.clone(), format!("Invalid value: {n}: {shown} in body should be greater than or equal to {}", num(min))));
                }
            }
        }
        Value::String(text) => {
            let len = text.chars().count() as u64;
            if let Some(max) = s.max_length {
                if len > max {
                    causes.push((
                        field.clone(),
                        format!("Too long: may not be more than {max} bytes"),
                    ));
                }
            }
            if let Some(min) = s.min_length {
                if len < min {
                    causes.push((field.clone(), format!("Invalid value: {text:?}: {shown} in body should be at least {min} chars long")));
                }
            }
            if let Some((p, re)) = &s.pattern {
                if !re.is_match(text) {
                    causes.push((
                        field.clone(),
                        format!("Invalid value: {text:?}: {shown} in body should match '{p}'"),
                    ));
                }
            }
            if let Some(f) = &s.format {
                if !format_ok(f, text) {
                    causes.push((field.clone(), format!("Invalid value: {text:?}: {shown} in body must be of type {f}: {text:?}")));
                }
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(max) = s.max_items {
                if n > max {
                    causes.push((
                        field.clone(),
                        format!("Too many: {n}: must have at most {max} items"),
                    ));
                }
            }
            if let Some(min) = s.min_items {
                if n < min {
                    causes.push((
                        field.clone(),
                        format!(
                            "Invalid value: {n}: {shown} in body should have at least {min} items"
                        ),
                    ));
                }
            }
            if let Some(it) = &s.items {
                for (i, child) in items.iter_mut().enumerate() {
                    validate_node(it, child, &format!("{path}[{i}]"), causes);
                }
            }
        }
        Value::Object(m) => {
            let n = m.len() as u64;
            if let Some(max) = s.max_properties {
                if n > max {
                    causes.push((
                        field.clone(),
                        format!("Too many: {n}: must have at most {max} items"),
                    ));
                }
            }
            if let Some(min) = s.min_properties {
                if n < min {
                    causes.push((field.clone(), format!("Invalid value: {n}: {shown} in body should have at least {min} properties")));
                }
            }
            for r in &s.required {
                if !m.contains_key(r) {
                    causes.push((join(path, r), "Required value".into()));
                }
            }
            if s.embedded_resource {
                for r in ["apiVersion", "kind"] {
                    if m.get(r).and_then(Value::as_str).is_none_or(str::is_empty) {
                        causes.push((join(path, r), "Required value: must not be empty".into()));
                    }
                }
            }
            for (k, child) in m.iter_mut() {
                let sub = s.properties.get(k).or(s.additional.as_deref());
                if let Some(sub) = sub {
                    validate_node(sub, child, &join(path, k), causes);
                }
            }
        }
        _ => {}
    }
    validate_compositions(s, v, path, causes);
}

/// The failed alternative that came closest: one whose type matched, then the fewest causes.
fn closest(results: Vec<Vec<Cause>>) -> Option<Vec<Cause>> {
    results.into_iter().min_by_key(|r| {
        let wrong_type = r.iter().any(|(_, m)| m.contains(" must be of type "));
        (wrong_type, r.len())
    })
}

/// `allOf`, `anyOf`, `oneOf` and `not`, with go-openapi's wording as kube reports it
/// (`"spec.port" must validate at least one schema (anyOf)`), followed, for a failed `anyOf`
/// or `oneOf`, by the closest alternative's own causes.
fn validate_compositions(s: &Schema, v: &mut Value, path: &str, causes: &mut Vec<Cause>) {
    if s.all_of.is_empty() && s.any_of.is_empty() && s.one_of.is_empty() && s.not.is_none() {
        return;
    }
    let shown = if path.is_empty() { "<root>" } else { path };
    let failed = |msg: &str| {
        (
            path.to_string(),
            format!("Invalid value: \"\": \"{shown}\" {msg}"),
        )
    };
    let trial = |sub: &Schema, v: &mut Value| {
        let mut out = Vec::new();
        validate_node(sub, v, path, &mut out);
        out
    };
    let mut all = Vec::new();
    for sub in &s.all_of {
        all.extend(trial(sub, v));
    }
    if !all.is_empty() {
        causes.push(failed("must validate all the schemas (allOf)"));
        causes.extend(all);
    }
    if !s.any_of.is_empty() {
        let results: Vec<Vec<Cause>> = s.any_of.iter().map(|sub| trial(sub, v)).collect();
        if results.iter().all(|r| !r.is_empty()) {
            causes.push(failed("must validate at least one schema (anyOf)"));
            if let Some(best) = closest(results) {
                causes.extend(best);
            }
        }
    }
    if !s.one_of.is_empty() {
        let results: Vec<Vec<Cause>> = s.one_of.iter().map(|sub| trial(sub, v)).collect();
        let passed = results.iter().filter(|r| r.is_empty()).count();
        if passed != 1 {
            causes.push(failed("must validate one and only one schema (oneOf)"));
            if passed == 0 {
                if let Some(best) = closest(results) {
                    causes.extend(best);
                }
            }
        }
    }
    if let Some(sub) = &s.not {
        if trial(sub, v).is_empty() {
            causes.push(failed("must not validate the schema (not)"));
        }
    }
}

/// 10 rather than 10.0 in messages, like Go's %v of a float64 holding an integer.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The formats kube checks (others are accepted as free text, as kube does for unknown ones).
fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" | "datetime" => crate::objects::parse_time(s).is_some(),
        "date" => {
            let b = s.as_bytes();
            b.len() == 10
                && b[4] == b'-'
                && b[7] == b'-'
                && s[..4].parse::<u32>().is_ok()
                && s[5..7].parse::<u32>().is_ok_and(|m| (1..=12).contains(&m))
                && s[8..10].parse::<u32>().is_ok_and(|d| (1..=31).contains(&d))
        }
        "int32" => s.parse::<i32>().is_ok(),
        "int64" => s.parse::<i64>().is_ok(),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, n)| {
            ip.parse::<std::net::IpAddr>().is_ok() && n.parse::<u8>().is_ok()
        }),
        "uuid" => {
            s.len() == 36
                && s.chars().enumerate().all(|(i, c)| {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        }
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "hostname" => {
            crate::validation::name_problem("Namespace", s).is_none() || is_dns1123_subdomain(s)
        }
        "email" => s
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && b.contains('.')),
        _ => true,
    }
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A minimal OpenAPI v3 rendering of the compiled tree is not needed: the raw schema is
/// published as given. This helper wraps a raw version schema for `kubectl explain` with the
/// object metadata reference kube adds.
pub fn published(raw: &Value, meta_ref: &str) -> Value {
    let mut out = raw.clone();
    let props = out
        .as_object_mut()
        .map(|m| m.entry("properties").or_insert_with(|| json!({})));
    if let Some(Value::Object(p)) = props {
        p.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
        p.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
        p.insert(
            "metadata".into(),
            json!({"allOf": [{"$ref": meta_ref}], "description": "Standard object's metadata."}),
        );
    }
    strip_extensions(&mut out);
    out
}

/// Drops keywords kubectl does not read that a client could use to bloat the document.
fn strip_extensions(v: &mut Value) {
    if let Value::Object(m) = v {
        m.remove("x-kubernetes-validations");
        for (_, child) in m.iter_mut() {
            strip_extensions(child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crontab() -> Schema {
        Schema::compile(
            &json!({"type": "object", "properties": {
                "spec": {"type": "object", "required": ["cronSpec"], "properties": {
                    "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                    "image": {"type": "string", "maxLength": 20},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                    "mode": {"type": "string", "enum": ["Fast", "Slow"], "default": "Slow"},
                    "port": {"x-kubernetes-int-or-string": true},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "when": {"type": "string", "format": "date-time"},
                    "items": {"type": "array", "maxItems": 2, "items": {"type": "object",
                        "properties": {"name": {"type": "string", "default": "x"}}}},
                }},
                "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
            }}),
            "openAPIV3Schema",
        )
        .unwrap()
    }

    fn check(obj: Value) -> Vec<Cause> {
        let s = crontab();
        let mut v = obj;
        apply_defaults(&s, &mut v);
        let mut out = Vec::new();
        validate(&s, &mut v, &mut out);
        out
    }

    #[test]
    fn validation_speaks_kube() {
        let c = check(json!({"spec": {"cronSpec": "* * * * */5", "replicas": 20}}));
        assert_eq!(
            c,
            vec![(
                "spec.replicas".to_string(),
                "Invalid value: 20: spec.replicas in body should be less than or equal to 10"
                    .to_string()
            )]
        );
        let c = check(
            json!({"spec": {"cronSpec": "nope", "replicas": "3", "mode": "Medium",
            "image": "a-very-long-image-name-indeed", "port": 1.5, "when": "yesterday",
            "items": [{}, {}, {}]}}),
        );
        let text: Vec<String> = c.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let all = text.join("\n");
        assert!(all.contains("spec.cronSpec: Invalid value: \"nope\": spec.cronSpec in body should match '^(\\d+|\\*)"), "{all}");
        assert!(all.contains("spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""), "{all}");
        assert!(
            all.contains(
                "spec.mode: Unsupported value: \"Medium\": supported values: \"Fast\", \"Slow\""
            ),
            "{all}"
        );
        assert!(
            all.contains("spec.image: Too long: may not be more than 20 bytes"),
            "{all}"
        );
        assert!(all.contains("spec.port: Invalid value: 1.5: spec.port in body must be of type integer-or-string"), "{all}");
        assert!(all.contains("spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time"), "{all}");
        assert!(
            all.contains("spec.items: Too many: 3: must have at most 2 items"),
            "{all}"
        );
        assert_eq!(
            check(json!({"spec": {}})),
            vec![("spec.cronSpec".into(), "Required value".into())]
        );
        assert!(check(
            json!({"spec": {"cronSpec": "*/1 * * * *", "port": "http", "labels": {"a": "b"}}})
        )
        .is_empty());
    }

    #[test]
    fn defaults_fill_absent_fields_top_down() {
        let s = crontab();
        let mut v = json!({"spec": {"cronSpec": "* * * * *", "items": [{}]}});
        apply_defaults(&s, &mut v);
        assert_eq!(v["spec"]["replicas"], 1);
        assert_eq!(v["spec"]["mode"], "Slow");
        assert_eq!(v["spec"]["items"][0]["name"], "x");
        let mut bare = json!({});
        apply_defaults(&s, &mut bare);
        assert_eq!(bare, json!({}), "no spec: nothing below it is defaulted");
    }

    #[test]
    fn pruning_drops_unknown_fields_and_keeps_preserved_ones() {
        let s = crontab();
        let mut v = json!({"apiVersion": "x/v1", "kind": "CronTab", "metadata": {"name": "a"},
            "spec": {"cronSpec": "*", "bogus": 1, "extra": {"anything": {"goes": true}},
                "labels": {"k": "v"}, "items": [{"name": "n", "zzz": 2}]},
            "top": true});
        let mut out = Vec::new();
        prune(&s, &mut v, "", true, &mut out);
        out.sort();
        assert_eq!(out, vec!["spec.bogus", "spec.items[0].zzz", "top"]);
        assert_eq!(v["spec"]["extra"]["anything"]["goes"], true);
        assert_eq!(v["metadata"]["name"], "a");
    }

    #[test]
    fn compositions_validate_values() {
        let s = Schema::compile(
            &json!({"type": "object", "properties": {
                "port": {"x-kubernetes-int-or-string": true,
                    "anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^[a-z]+$"}]},
                "size": {"type": "object", "properties": {
                    "gb": {"type": "integer"}, "tb": {"type": "integer"}},
                    "oneOf": [{"required": ["gb"]}, {"required": ["tb"]}]},
                "name": {"type": "string", "allOf": [{"minLength": 2}, {"maxLength": 4}],
                    "not": {"enum": ["root"]}},
            }}),
            "s",
        )
        .unwrap();
        let run = |v: Value| {
            let mut v = v;
            let mut out = Vec::new();
            validate(&s, &mut v, &mut out);
            out.into_iter()
                .map(|(f, m)| format!("{f}: {m}"))
                .collect::<Vec<_>>()
        };
        assert!(run(json!({"port": 8080, "size": {"gb": 1}, "name": "web"})).is_empty());
        assert!(run(json!({"port": "http"})).is_empty());
        let e = run(json!({"port": "HTTP"}));
        assert_eq!(
            e[0],
            "port: Invalid value: \"\": \"port\" must validate at least one schema (anyOf)"
        );
        assert!(
            e[1].contains("port in body should match '^[a-z]+$'"),
            "{e:?}"
        );
        let e = run(json!({"size": {"gb": 1, "tb": 1}}));
        assert_eq!(
            e,
            vec![
                "size: Invalid value: \"\": \"size\" must validate one and only one schema (oneOf)"
            ]
        );
        let e = run(json!({"size": {}}));
        assert_eq!(
            e[0],
            "size: Invalid value: \"\": \"size\" must validate one and only one schema (oneOf)"
        );
        assert_eq!(e[1], "size.gb: Required value");
        let e = run(json!({"name": "x"}));
        assert_eq!(
            e[0],
            "name: Invalid value: \"\": \"name\" must validate all the schemas (allOf)"
        );
        assert!(
            e[1].contains("name in body should be at least 2 chars long"),
            "{e:?}"
        );
        let e = run(json!({"name": "root"}));
        assert_eq!(
            e,
            vec!["name: Invalid value: \"\": \"name\" must not validate the schema (not)"]
        );
    }

    #[test]
    fn compositions_must_stay_structural() {
        let e = Schema::compile(
            &json!({"type": "object", "properties": {
                "a": {"type": "string", "anyOf": [{"type": "string", "default": "x",
                    "description": "d", "x-kubernetes-preserve-unknown-fields": true}]},
                "b": {"type": "object", "allOf": [{"properties": {"c": {"minLength": 1}}}]},
                "d": {"type": "object", "properties": {"e": {"type": "string"}},
                    "not": {"properties": {"e": {"nullable": true, "additionalProperties": {}}}}},
            }}),
            "s",
        )
        .unwrap_err();
        let all: Vec<String> = e.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        for want in [
            "s.properties[a].anyOf[0].type: Forbidden: must be empty to be structural",
            "s.properties[a].anyOf[0].default: Forbidden: must be undefined to be structural",
            "s.properties[a].anyOf[0].description: Forbidden: must be empty to be structural",
            "s.properties[a].anyOf[0].x-kubernetes-preserve-unknown-fields: Forbidden: must be undefined to be structural",
            "s.properties[b].properties[c]: Required value: because it is defined in s.properties[b].allOf[0].properties[c]",
            "s.properties[d].not.properties[e].nullable: Forbidden: must be false to be structural",
            "s.properties[d].not.properties[e].additionalProperties: Forbidden: must be undefined to be structural",
        ] {
            assert!(all.iter().any(|m| m == want), "missing {want:?} in {all:#?}");
        }
        assert_eq!(all.len(), 7, "{all:#?}");
    }

    #[test]
    fn hostile_schemas_are_refused_with_a_reason() {
        let mut deep = json!({"type": "string"});
        for _ in 0..40 {
            deep = json!({"type": "object", "properties": {"a": deep}});
        }
        let e = Schema::compile(&deep, "s").unwrap_err();
        assert!(e[0].1.contains("nests more than 32 levels"), "{e:?}");
        let many: Vec<Value> = (0..3000).map(|i| json!(format!("v{i}"))).collect();
        let e = Schema::compile(
            &json!({"type": "object", "properties": {"a": {"type": "string", "enum": many}}}),
            "s",
        )
        .unwrap_err();
        assert!(e[0].1.contains("more than 2048 enum values"), "{e:?}");
        let e = Schema::compile(
            &json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "(a{1000}){1000}"}}}),
            "s",
        )
        .unwrap_err();
        assert!(
            e[0].1.contains("must be a valid regular expression"),
            "{e:?}"
        );
        let e = Schema::compile(
            &json!({"type": "object", "properties": {"a": {"properties": {}}}}),
            "s",
        )
        .unwrap_err();
        assert_eq!(e[0].0, "s.properties[a].type");
        let e = Schema::compile(
            &json!({"type": "object", "properties": {"a": {"type": "integer", "default": "x"}}}),
            "s",
        )
        .unwrap_err();
        assert!(e[0].1.contains("must be of type integer"), "{e:?}");
    }
}
