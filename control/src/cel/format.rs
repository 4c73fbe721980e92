//! kube's CEL format library (k8s.io/apiserver/pkg/cel/library/format.go, kube 1.32):
//! `format.named(name)` → `optional<Format>`, one constructor per format
//! (`format.dns1123Label()`, ...) and `Format.validate(string)` → `optional<list<string>>`:
//! `optional.none()` when the string is valid, else kube's validation messages
//! (k8s.io/apimachinery/pkg/util/validation wording, double spaces included).

use std::sync::{Arc, OnceLock};

use cel::extractors::This;
use cel::objects::{Opaque, OptionalValue};
use cel::{ExecutionError, FunctionContext, ResolveResult, Value};
use regex::Regex;

/// A named format (kube's `apiservercel.Format`); two are equal when their names are.
#[derive(Debug, Clone, Copy)]
pub struct Format {
    /// The name `format.named` takes.
    pub key: &'static str,
    validate: fn(&str) -> Vec<String>,
}

impl PartialEq for Format {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Format {}

impl Opaque for Format {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.NamedFormat"
    }
}

/// kube's `ConstantFormats`, in its order.
pub const FORMATS: &[Format] = &[
    Format {
        key: "dns1123Label",
        validate: |s| dns1123_label(s),
    },
    Format {
        key: "dns1123Subdomain",
        validate: |s| dns1123_subdomain(s),
    },
    Format {
        key: "dns1035Label",
        validate: |s| dns1035_label(s),
    },
    Format {
        key: "qualifiedName",
        validate: qualified_name,
    },
    Format {
        key: "dns1123LabelPrefix",
        validate: |s| dns1123_label(&mask_trailing_dash(s)),
    },
    Format {
        key: "dns1123SubdomainPrefix",
        validate: |s| dns1123_subdomain(&mask_trailing_dash(s)),
    },
    Format {
        key: "dns1035LabelPrefix",
        validate: |s| dns1035_label(&mask_trailing_dash(s)),
    },
    Format {
        key: "labelValue",
        validate: label_value,
    },
    Format {
        key: "uri",
        validate: |s| one_if(super::urls::parse(s).is_err(), "invalid URI"),
    },
    Format {
        key: "uuid",
        validate: |s| {
            one_if(
                !re(&UUID, UUID_FMT).is_match(s),
                "does not match the UUID format",
            )
        },
    },
    Format {
        key: "byte",
        validate: |s| {
            use base64::Engine;
            let bad = base64::engine::general_purpose::STANDARD.decode(s).is_err();
            one_if(bad, "invalid base64")
        },
    },
    Format {
        key: "date",
        validate: |s| one_if(!is_date(s), "invalid date"),
    },
    Format {
        key: "datetime",
        validate: |s| one_if(!is_datetime(s), "invalid datetime"),
    },
];

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const UUID_FMT: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

static DNS1123_LABEL: OnceLock<Regex> = OnceLock::new();
static DNS1123_SUBDOMAIN: OnceLock<Regex> = OnceLock::new();
static DNS1035_LABEL: OnceLock<Regex> = OnceLock::new();
static QUALIFIED_NAME: OnceLock<Regex> = OnceLock::new();
static LABEL_VALUE: OnceLock<Regex> = OnceLock::new();
static UUID: OnceLock<Regex> = OnceLock::new();

/// `fmt` anchored, compiled once (the patterns are constants: a failure is a programming
/// error the unit tests catch).
fn re(cell: &'static OnceLock<Regex>, fmt: &str) -> &'static Regex {
    cell.get_or_init(|| {
        let anchored = if fmt.starts_with('^') {
            fmt.to_string()
        } else {
            format!("^(?:{fmt})$")
        };
        Regex::new(&anchored).expect("constant pattern")
    })
}

fn subdomain_fmt() -> String {
    format!("{DNS1123_LABEL_FMT}(\\.{DNS1123_LABEL_FMT})*")
}

fn label_value_fmt() -> String {
    format!("({QUALIFIED_NAME_FMT})?")
}

fn one_if(bad: bool, msg: &str) -> Vec<String> {
    if bad {
        vec![msg.to_string()]
    } else {
        Vec::new()
    }
}

/// apimachinery's `RegexError`.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

fn max_len(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// apimachinery's `maskTrailingDash` (for generateName prefixes), quirk included: a
/// trailing dash and the character before it become one `a`.
fn mask_trailing_dash(s: &str) -> String {
    if s.len() > 1 && s.ends_with('-') {
        let cut = s.len() - 2;
        let cut = (0..=cut)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}a", &s[..cut])
    } else {
        s.to_string()
    }
}

pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len(63));
    }
    if !re(&DNS1123_LABEL, DNS1123_LABEL_FMT).is_match(s) {
        if re(&DNS1123_SUBDOMAIN, &subdomain_fmt()).is_match(s) {
            errs.push("must not contain dots".into());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len(253));
    }
    let fmt = subdomain_fmt();
    if !re(&DNS1123_SUBDOMAIN, &fmt).is_match(s) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_MSG, &fmt, &["example.com"]));
    }
    errs
}

pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len(63));
    }
    if !re(&DNS1035_LABEL, DNS1035_LABEL_FMT).is_match(s) {
        errs.push(regex_error(
            DNS1035_LABEL_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// apimachinery's `IsQualifiedName` (`[prefix/]name`).
pub fn qualified_name(s: &str) -> Vec<String> {
    let examples = ["MyName", "my.name", "123-abc"];
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &examples)
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len(63)));
    }
    if !re(&QUALIFIED_NAME, QUALIFIED_NAME_FMT).is_match(name) {
        errs.push(format!(
            "name part {}",
            regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &examples)
        ));
    }
    errs
}

pub fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len(63));
    }
    let fmt = label_value_fmt();
    if !re(&LABEL_VALUE, &fmt).is_match(s) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            &fmt,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Go's `time.Parse("2006-01-02", s)`: four-digit year, two-digit month and day, a real day.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) {
        return false;
    }
    if !digits(5..7) || !digits(8..10) {
        return false;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(0);
    k8s_openapi::chrono::NaiveDate::from_ymd_opt(n(0..4) as i32, n(5..7), n(8..10)).is_some()
}

/// Go's `time.Parse(time.RFC3339, s)`: a date, `T`, a time with optional fraction, and `Z`
/// or a numeric offset (upper-case `T` and `Z` only, as Go's layout).
fn is_datetime(s: &str) -> bool {
    s.len() > 10
        && is_date(&s[..10])
        && s.as_bytes()[10] == b'T'
        && !s.contains(['t', 'z', ' '])
        && k8s_openapi::chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

fn format_of(ftx: &FunctionContext, v: &Value) -> Result<Format, ExecutionError> {
    match v {
        Value::Opaque(o) => o.downcast_ref::<Format>().copied(),
        _ => None,
    }
    .ok_or_else(|| ftx.error(format!("no such overload: {}({v:?})", ftx.name)))
}

fn optional(v: Option<Value>) -> Value {
    Value::Opaque(Arc::new(match v {
        Some(v) => OptionalValue::of(v),
        None => OptionalValue::none(),
    }))
}

/// `format.named(name)`: the format, or `optional.none()` for a name kube does not know.
pub fn named(This(name): This<Arc<String>>) -> Value {
    optional(
        FORMATS
            .iter()
            .find(|f| f.key == name.as_str())
            .map(|f| Value::Opaque(Arc::new(*f))),
    )
}

/// `format.<name>()`: one constructor per format.
pub fn constructor(key: &'static str) -> impl Fn() -> ResolveResult + Send + Sync + 'static {
    move || {
        FORMATS
            .iter()
            .find(|f| f.key == key)
            .map(|f| Value::Opaque(Arc::new(*f)))
            .ok_or_else(|| ExecutionError::function_error(key, "unknown format"))
    }
}

/// `Format.validate(s)`: `optional.none()` when valid, else the messages.
pub fn validate(ftx: &FunctionContext, This(f): This<Value>, s: Arc<String>) -> ResolveResult {
    let f = format_of(ftx, &f)?;
    let errs = (f.validate)(&s);
    Ok(optional((!errs.is_empty()).then(|| {
        Value::List(Arc::new(
            errs.into_iter()
                .map(|e| Value::String(Arc::new(e)))
                .collect(),
        ))
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_messages() {
        assert!(dns1123_label("my-name").is_empty());
        assert_eq!(dns1123_label("a.b"), ["must not contain dots"]);
        assert_eq!(
            dns1123_label("My_Name"),
            ["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]
        );
        assert_eq!(dns1123_label(&"a".repeat(64)), [max_len(63)]);
        assert!(dns1123_subdomain("example.com").is_empty());
        assert_eq!(dns1035_label("1abc").len(), 1);
        assert!(dns1035_label("abc-1").is_empty());
        assert!(qualified_name("example.com/MyName").is_empty());
        assert_eq!(qualified_name("/x"), ["prefix part must be non-empty"]);
        assert!(qualified_name("a/b/c")[0].starts_with("a qualified name must consist"));
        assert!(label_value("").is_empty());
        assert!(label_value("my_value").is_empty());
        assert_eq!(label_value("-x").len(), 1);
        // Prefixes may end with a dash (generateName).
        let prefix = FORMATS
            .iter()
            .find(|f| f.key == "dns1123LabelPrefix")
            .unwrap();
        assert!((prefix.validate)("web-").is_empty());
        assert!(!dns1123_label("web-").is_empty());
        assert!(is_date("2024-02-29") && !is_date("2023-02-29") && !is_date("2024-2-01"));
        assert!(is_datetime("2024-02-29T10:00:00.5+01:00") && is_datetime("2024-02-29T10:00:00Z"));
        assert!(!is_datetime("2024-02-29 10:00:00Z") && !is_datetime("2024-02-29t10:00:00z"));
        for f in FORMATS {
            // Every pattern compiles (a panic here is a bad constant).
            let _ = (f.validate)("x");
        }
    }
}
