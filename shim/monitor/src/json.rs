//! The little JSON the monitor speaks, by hand (no serde: resident size): quoting strings for the
//! report line and the exit file, and reading `level`/`msg` out of the runtime's JSON log lines
//! (`{"level":"error","msg":"...","time":"..."}`, as runc and pea-runtime write them).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// `s` as a JSON string literal, quotes included.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `msg` of the last `"level":"error"` line of `log` after byte `offset` (what this create
/// appended), if any.
pub fn last_runtime_error(log: &Path, offset: u64) -> Option<String> {
    let mut f = std::fs::File::open(log).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    // A runtime log is small; the cap keeps a runaway one from costing memory here.
    let reader = BufReader::new(f.take(4 << 20));
    let mut last = None;
    for line in reader.split(b'\n').map_while(Result::ok) {
        let Ok(line) = std::str::from_utf8(&line) else {
            continue;
        };
        if let Some(msg) = error_message(line) {
            last = Some(msg);
        }
    }
    last
}

/// `msg` of one log line when its `level` is `error`.
pub fn error_message(line: &str) -> Option<String> {
    let fields = string_fields(line)?;
    let level = fields.iter().find(|(k, _)| k == "level")?;
    if level.1.as_deref() != Some("error") {
        return None;
    }
    fields.into_iter().find(|(k, _)| k == "msg")?.1
}

/// The members of a JSON object: key and, for string values, the value (other values are
/// skipped and give `None`). `None` when `text` is not one JSON object.
pub fn string_fields(text: &str) -> Option<Vec<(String, Option<String>)>> {
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
    };
    p.ws();
    p.eat(b'{')?;
    let mut fields = Vec::new();
    p.ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            let key = p.string()?;
            p.ws();
            p.eat(b':')?;
            p.ws();
            let value = if p.peek() == Some(b'"') {
                Some(p.string()?)
            } else {
                p.skip_value(0)?;
                None
            };
            fields.push((key, value));
            p.ws();
            match p.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    p.ws();
    (p.i == p.b.len()).then_some(fields)
}

/// Nesting beyond this is not a log line: refuse rather than recurse deeply.
const MAX_DEPTH: usize = 32;

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn string(&mut self) -> Option<String> {
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            let start = self.i;
            while !matches!(self.peek()?, b'"' | b'\\') {
                self.i += 1;
            }
            // The input is a &str and we stop only at ASCII bytes: this slice is valid UTF-8.
            out.push_str(std::str::from_utf8(&self.b[start..self.i]).ok()?);
            if self.next()? == b'"' {
                return Some(out);
            }
            let c = match self.next()? {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => self.unicode_escape()?,
                _ => return None,
            };
            out.push(c);
        }
    }

    /// After `\u`: one code unit, or a surrogate pair (a lone surrogate becomes U+FFFD).
    fn unicode_escape(&mut self) -> Option<char> {
        let hi = self.hex4()?;
        if !(0xd800..0xdc00).contains(&hi) {
            return Some(char::from_u32(hi).unwrap_or('\u{fffd}'));
        }
        if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
            return Some('\u{fffd}');
        }
        self.i += 2;
        let lo = self.hex4()?;
        if !(0xdc00..0xe000).contains(&lo) {
            return Some('\u{fffd}');
        }
        char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = std::str::from_utf8(self.b.get(self.i..self.i + 4)?).ok()?;
        let v = u32::from_str_radix(digits, 16).ok()?;
        self.i += 4;
        Some(v)
    }

    /// Skips any value (the parts of a log line the monitor does not read).
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(drop),
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                self.ws();
                if self.peek() == Some(close) {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    if open == b'{' {
                        self.string()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                    }
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        c if c == close => return Some(()),
                        _ => return None,
                    }
                }
            }
            _ => {
                // Numbers, true, false, null.
                let start = self.i;
                while matches!(
                    self.peek(),
                    Some(b'0'..=b'9' | b'a'..=b'z' | b'+' | b'-' | b'.' | b'E')
                ) {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_what_json_needs_quoted() {
        assert_eq!(quote("plain"), "\"plain\"");
        assert_eq!(
            quote("a \"b\" \\ c\nd\u{1}é"),
            "\"a \\\"b\\\" \\\\ c\\nd\\u0001é\""
        );
    }

    #[test]
    fn reads_error_lines_as_runc_and_pea_runtime_write_them() {
        let line = r#"{"level":"error","msg":"container \"c1\": bundle /x: No such file \u00e9 \ud83d\ude00","time":"2026-12-06T04:05:06Z"}"#;
        assert_eq!(
            error_message(line).as_deref(),
            Some("container \"c1\": bundle /x: No such file é 😀")
        );
        assert_eq!(error_message(r#"{"level":"info","msg":"fine"}"#), None);
        // Other value kinds are skipped; key order does not matter.
        assert_eq!(
            error_message(r#" {"n": -1.5e3, "ok": true, "x": null, "o": {"a": [1, {"b": "]"}]}, "msg": "m", "level": "error"} "#)
                .as_deref(),
            Some("m")
        );
    }

    #[test]
    fn refuses_what_is_not_one_object() {
        for bad in [
            "",
            "time=\"t\" level=error msg=\"text\"",
            r#"{"level":"error","msg":"unterminated}"#,
            r#"{"level":"error","msg":"m"} trailing"#,
            r#"{"a":}"#,
            r#"{"a":"\x"}"#,
            &format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100)),
        ] {
            assert_eq!(string_fields(bad), None, "{bad}");
        }
        assert_eq!(string_fields("{}"), Some(vec![]));
    }

    #[test]
    fn finds_the_last_error_after_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runtime.log");
        let old = "{\"level\":\"error\",\"msg\":\"old\"}\n";
        std::fs::write(
            &log,
            format!(
                "{old}{{\"level\":\"info\",\"msg\":\"i\"}}\n{{\"level\":\"error\",\"msg\":\"first\"}}\nnot json\n{{\"level\":\"error\",\"msg\":\"last\"}}\n"
            ),
        )
        .unwrap();
        assert_eq!(
            last_runtime_error(&log, old.len() as u64).as_deref(),
            Some("last")
        );
        let len = std::fs::metadata(&log).unwrap().len();
        assert_eq!(last_runtime_error(&log, len), None);
        assert_eq!(last_runtime_error(&dir.path().join("absent"), 0), None);
    }
}
