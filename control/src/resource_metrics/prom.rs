//! Just enough of the Prometheus text exposition format to read a kubelet's
//! `/metrics/resource`: `name{label="value",...} value [timestamp_ms]` lines, comments and
//! blank lines skipped, label values unescaped (`\\`, `\"`, `\n`). Only the series a caller asks
//! for are kept; anything malformed is an error naming the line.

/// One sample of a wanted series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the epoch, when the line carries one.
    pub timestamp_ms: Option<i64>,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("metrics text line {line}: {what}")]
pub struct ParseError {
    pub line: usize,
    pub what: String,
}

/// The samples of the series named in `wanted`, in text order.
pub fn parse(text: &str, wanted: &[&str]) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |what: &str| ParseError {
            line: i + 1,
            what: what.to_string(),
        };
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .ok_or_else(|| err("a sample needs a value"))?;
        let name = &line[..name_end];
        if !wanted.contains(&name) {
            continue;
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end + 1..]).map_err(|w| err(&w))?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value = fields
            .next()
            .ok_or_else(|| err("missing value"))
            .and_then(|v| parse_value(v).ok_or_else(|| err(&format!("bad value {v:?}"))))?;
        let timestamp_ms = match fields.next() {
            Some(t) => Some(
                t.parse::<i64>()
                    .map_err(|_| err(&format!("bad timestamp {t:?}")))?,
            ),
            None => None,
        };
        if fields.next().is_some() {
            return Err(err("trailing text after the timestamp"));
        }
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
            timestamp_ms,
        });
    }
    Ok(out)
}

/// Go's `strconv.ParseFloat` spellings Prometheus uses besides plain numbers.
fn parse_value(v: &str) -> Option<f64> {
    match v {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => v.parse().ok(),
    }
}

type Labels = Vec<(String, String)>;

/// Parses `k="v",...}` and returns the labels and what follows the closing brace.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err("unterminated label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kubelet_resource_metrics_lines() {
        let text = "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time\n\
            # TYPE node_cpu_usage_seconds_total counter\n\
            node_cpu_usage_seconds_total 357.35 1700000000123\n\
            node_memory_working_set_bytes 1.492779008e+09 1700000000123\n\
            container_cpu_usage_seconds_total{container=\"app\",namespace=\"d\\\"q\",pod=\"web\"} 0.5 1700000000000\n\
            container_start_time_seconds{container=\"a,b\",namespace=\"x\",pod=\"p\"} 1.7e9\n\
            resource_scrape_error 0\n\n";
        let s = parse(
            text,
            &[
                "node_cpu_usage_seconds_total",
                "node_memory_working_set_bytes",
                "container_cpu_usage_seconds_total",
                "container_start_time_seconds",
            ],
        )
        .unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].value, 357.35);
        assert_eq!(s[0].timestamp_ms, Some(1_700_000_000_123));
        assert_eq!(s[1].value, 1_492_779_008.0);
        assert_eq!(s[2].label("namespace"), Some("d\"q"));
        assert_eq!(s[2].label("container"), Some("app"));
        assert_eq!(s[3].label("container"), Some("a,b"));
        assert_eq!(s[3].timestamp_ms, None);
    }

    #[test]
    fn malformed_lines_name_their_number() {
        let wanted = ["m"];
        assert_eq!(parse("m{a=\"x\"}\n", &wanted).unwrap_err().line, 1);
        assert!(parse("\nm{a=x} 1\n", &wanted)
            .unwrap_err()
            .what
            .contains("quoted"));
        assert!(parse("m{a=\"x} 1\n", &wanted).is_err());
        assert!(parse("m 1 notatime\n", &wanted).is_err());
        assert!(parse("m one\n", &wanted).is_err());
        // Unwanted series are not even looked at.
        assert!(parse("other{{{ garbage\n", &wanted).unwrap().is_empty());
        assert!(parse("m NaN\n", &wanted).unwrap()[0].value.is_nan());
    }
}
