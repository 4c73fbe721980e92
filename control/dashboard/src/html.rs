//! HTML building blocks. Every string that comes from the cluster or the request goes through
//! [`esc`] (text and attribute values) or [`seg`] (URL path segments and query values) before it
//! is written into a page; nothing else makes HTML out of object fields.

use std::fmt::Write;

use serde_json::Value;

/// Escapes text for an HTML text node or a double-quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a URL path segment or query value (everything but unreserved characters).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A string field of a JSON object by JSON pointer, or "".
pub fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Any scalar field rendered as text ("" when absent).
pub fn text(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(x)) => x.clone(),
        Some(other) => other.to_string(),
    }
}

pub fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// "3d", "5h", "12m", "40s" since an RFC 3339 timestamp; "" when absent or unparsable.
pub fn age(ts: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else {
        return String::new();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A table: escaped headers, rows of already-built cell HTML.
pub fn table(headers: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"muted\">{}</p>", esc(empty));
    }
    let mut out = String::from("<table><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{c}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// Key/value pairs as a definition list; values are escaped here.
pub fn dl(pairs: &[(&str, String)]) -> String {
    let mut out = String::from("<dl class=\"kv\">");
    for (k, v) in pairs {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    out.push_str("</dl>");
    out
}

/// A string map (labels, annotations, selectors) as escaped chips.
pub fn chips(map: Option<&Value>) -> String {
    let Some(Value::Object(m)) = map else {
        return "<span class=\"muted\">none</span>".into();
    };
    if m.is_empty() {
        return "<span class=\"muted\">none</span>".into();
    }
    let mut out = String::new();
    for (k, v) in m {
        let v = v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        let _ = write!(out, "<span class=\"chip\">{}={}</span> ", esc(k), esc(&v));
    }
    out
}

/// A link with an escaped label; `href` must be built from [`seg`]-encoded parts.
pub fn link(href: &str, label: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(href), esc(label))
}

/// A status word with a colour class chosen from a fixed set.
pub fn badge(word: &str) -> String {
    let class = match word {
        "Running" | "True" | "Ready" | "Succeeded" | "Complete" | "Active" | "Normal" => "ok",
        "Pending" | "Unknown" | "ContainerCreating" | "Terminating" | "SchedulingDisabled" => {
            "warn"
        }
        "Failed" | "False" | "NotReady" | "Warning" | "CrashLoopBackOff" | "Error" => "bad",
        _ => "plain",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(word))
}

/// A plain horizontal SVG bar chart: (label, value) pairs (no inline styles, CSP-friendly).
pub fn bars(items: &[(String, i64)]) -> String {
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let row = 22;
    let height = row * items.len().max(1) + 4;
    let mut out = format!(
        "<svg class=\"bars\" viewBox=\"0 0 420 {height}\" width=\"420\" height=\"{height}\" role=\"img\">"
    );
    for (i, (label, v)) in items.iter().enumerate() {
        let y = i * row + 2;
        let w = (*v as f64 / max as f64 * 260.0).round() as i64;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{}\" class=\"bl\">{}</text><rect x=\"110\" y=\"{}\" width=\"{}\" height=\"16\" class=\"b-{}\"></rect><text x=\"{}\" y=\"{}\" class=\"bv\">{}</text>",
            y + 13,
            esc(label),
            y,
            w.max(1),
            esc(&label.to_ascii_lowercase()),
            115 + w,
            y + 13,
            v
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert(\"x\")</script>&'"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
        assert_eq!(seg("a b/c?d"), "a%20b%2Fc%3Fd");
        assert_eq!(seg("web-1.x_y~"), "web-1.x_y~");
    }

    #[test]
    fn chips_escape_keys_and_values() {
        let v = serde_json::json!({"a\"b": "<img src=x onerror=alert(1)>"});
        let h = chips(Some(&v));
        assert!(!h.contains("<img"), "{h}");
        assert!(h.contains("&lt;img src=x onerror=alert(1)&gt;"), "{h}");
    }

    #[test]
    fn ages() {
        assert_eq!(age("not a time"), "");
        let t = (chrono::Utc::now() - chrono::Duration::hours(50)).to_rfc3339();
        assert_eq!(age(&t), "2d");
    }
}
