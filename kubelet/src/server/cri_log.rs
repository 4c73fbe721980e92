//! The CRI container log format and how the kubelet turns it back into a log stream (kubelet's
//! `kuberuntime/logs`): each file line is `TIMESTAMP STREAM TAG MESSAGE`, TAG `F` for a full line
//! or `P` for part of a longer one continued on the next record. Options: since (skip older
//! records), timestamps (prefix each output line, not each partial record), limitBytes (cut the
//! output there), tail (start N file lines from the end).

use std::io::{Read, Seek, SeekFrom};

use chrono::{DateTime, FixedOffset, Utc};

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub timestamp: DateTime<FixedOffset>,
    pub stream: &'a str,
    pub partial: bool,
    /// The message; a full record keeps its newline, a partial one loses it.
    pub message: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("timestamp is not found")]
    NoTimestamp,
    #[error("unexpected timestamp format {0:?}")]
    Timestamp(String),
    #[error("stream type is not found")]
    NoStream,
    #[error("unexpected stream type {0:?}")]
    Stream(String),
    #[error("log tag is not found")]
    NoTag,
}

fn split_space(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|c| *c == b' ')?;
    Some((&b[..i], &b[i + 1..]))
}

/// Parses one file line (with its newline, if it had one).
pub fn parse(line: &[u8]) -> Result<Record<'_>, ParseError> {
    let (ts, rest) = split_space(line).ok_or(ParseError::NoTimestamp)?;
    let ts = std::str::from_utf8(ts)
        .map_err(|_| ParseError::Timestamp(String::from_utf8_lossy(ts).into_owned()))?;
    let timestamp =
        DateTime::parse_from_rfc3339(ts).map_err(|_| ParseError::Timestamp(ts.to_string()))?;
    let (stream, rest) = split_space(rest).ok_or(ParseError::NoStream)?;
    let stream = match stream {
        b"stdout" => "stdout",
        b"stderr" => "stderr",
        other => return Err(ParseError::Stream(String::from_utf8_lossy(other).into())),
    };
    let (tag, mut message) = split_space(rest).ok_or(ParseError::NoTag)?;
    // Tags may grow `:`-separated fields; the first says partial or full.
    let partial = tag.split(|c| *c == b':').next() == Some(b"P");
    if partial && message.last() == Some(&b'\n') {
        message = &message[..message.len() - 1];
    }
    Ok(Record {
        timestamp,
        stream,
        partial,
        message,
    })
}

/// Go's RFC3339Nano: nanoseconds with trailing zeros dropped, the record's own offset.
pub fn format_timestamp(t: &DateTime<FixedOffset>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    let frac = if nanos == 0 {
        String::new()
    } else {
        let s = format!(".{nanos:09}");
        s.trim_end_matches('0').to_string()
    };
    let offset = t.offset().local_minus_utc();
    let zone = if offset == 0 {
        "Z".to_string()
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let a = offset.abs();
        format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
    };
    format!("{base}{frac}{zone}")
}

/// Turns records into output bytes under the options, as kubelet's `logWriter`.
#[derive(Debug)]
pub struct Decoder {
    since: Option<DateTime<Utc>>,
    timestamps: bool,
    /// Bytes still allowed (`None`: unlimited).
    remain: Option<u64>,
    /// The previous record ended its line (the next one gets a timestamp prefix).
    at_line_start: bool,
}

/// What the caller does after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    More,
    /// limitBytes reached: stop reading.
    Done,
}

impl Decoder {
    pub fn new(since: Option<DateTime<Utc>>, timestamps: bool, limit_bytes: Option<u64>) -> Self {
        Self {
            since,
            timestamps,
            remain: limit_bytes,
            at_line_start: true,
        }
    }

    /// Decodes one file line into `out`. Unparsable lines are skipped (and reported through
    /// the return value's error) as the kubelet logs and skips them.
    pub fn line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<Flow, ParseError> {
        if self.remain == Some(0) {
            return Ok(Flow::Done);
        }
        let rec = parse(line)?;
        let add_prefix = self.at_line_start;
        self.at_line_start = !rec.partial;
        if self
            .since
            .is_some_and(|since| rec.timestamp.with_timezone(&Utc) < since)
        {
            return Ok(Flow::More);
        }
        let start = out.len();
        if self.timestamps && add_prefix {
            out.extend_from_slice(format_timestamp(&rec.timestamp).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(rec.message);
        if let Some(remain) = self.remain.as_mut() {
            let written = (out.len() - start) as u64;
            if written >= *remain {
                out.truncate(start + *remain as usize);
                *remain = 0;
                return Ok(Flow::Done);
            }
            *remain -= written;
        }
        Ok(Flow::More)
    }
}

/// The offset `tail` file lines before the end (kubelet's `findTailLineStartIndex`).
pub fn tail_start<F: Read + Seek>(f: &mut F, tail: u64) -> std::io::Result<u64> {
    const BLOCK: u64 = 64 * 1024;
    let size = f.seek(SeekFrom::End(0))?;
    let mut count = 0u64;
    let mut left = size;
    let mut buf = Vec::new();
    let mut right = size;
    while right > 0 && count <= tail {
        left = right.saturating_sub(BLOCK);
        buf = vec![0u8; (right - left) as usize];
        f.seek(SeekFrom::Start(left))?;
        f.read_exact(&mut buf)?;
        count += buf.iter().filter(|c| **c == b'\n').count() as u64;
        right = left;
    }
    let mut rest: &[u8] = &buf;
    while count > tail {
        let idx = rest
            .iter()
            .position(|c| *c == b'\n')
            .map_or(rest.len(), |i| i + 1);
        rest = &rest[idx..];
        left += idx as u64;
        count -= 1;
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    const LOG: &str = "2016-10-06T00:17:09.669794202Z stdout P part one \n\
        2016-10-06T00:17:09.669794203Z stdout F and two\n\
        2016-10-06T00:17:10.000000000Z stderr F err line\n\
        2016-10-06T00:17:11.5+02:00 stdout F third\n";

    fn decode(d: &mut Decoder, text: &str) -> String {
        let mut out = Vec::new();
        for line in text.split_inclusive('\n') {
            if d.line(line.as_bytes(), &mut out).unwrap() == Flow::Done {
                break;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn partial_records_join_and_timestamps_prefix_lines() {
        assert_eq!(
            decode(&mut Decoder::new(None, false, None), LOG),
            "part one and two\nerr line\nthird\n"
        );
        assert_eq!(
            decode(&mut Decoder::new(None, true, None), LOG),
            "2016-10-06T00:17:09.669794202Z part one and two\n\
             2016-10-06T00:17:10Z err line\n\
             2016-10-06T00:17:11.5+02:00 third\n"
        );
    }

    #[test]
    fn since_and_limit_bytes_cut_the_output() {
        let since = DateTime::parse_from_rfc3339("2016-10-06T00:17:10Z")
            .unwrap()
            .with_timezone(&Utc);
        // third is at 00:17:11.5+02:00, i.e. before since in UTC.
        assert_eq!(
            decode(&mut Decoder::new(Some(since), false, None), LOG),
            "err line\n"
        );
        assert_eq!(
            decode(&mut Decoder::new(None, false, Some(12)), LOG),
            "part one and"
        );
        assert_eq!(
            decode(&mut Decoder::new(None, false, Some(17)), LOG),
            "part one and two\n"
        );
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(parse(b"nospace"), Err(ParseError::NoTimestamp));
        assert!(matches!(
            parse(b"yesterday stdout F x"),
            Err(ParseError::Timestamp(_))
        ));
        assert_eq!(
            parse(b"2016-10-06T00:17:09Z stdin F x"),
            Err(ParseError::Stream("stdin".into()))
        );
        assert_eq!(
            parse(b"2016-10-06T00:17:09Z stdout"),
            Err(ParseError::NoStream)
        );
        assert_eq!(
            parse(b"2016-10-06T00:17:09Z stdout F"),
            Err(ParseError::NoTag)
        );
        // An empty full line is a record with just a newline.
        assert_eq!(
            parse(b"2016-10-06T00:17:09Z stdout F \n").unwrap().message,
            b"\n"
        );
    }

    #[test]
    fn tail_counts_file_lines_from_the_end() {
        let text = b"a\nb\nc\nd\n".to_vec();
        let mut f = Cursor::new(text.clone());
        assert_eq!(tail_start(&mut f, 2).unwrap(), 4);
        assert_eq!(tail_start(&mut f, 0).unwrap(), 8);
        assert_eq!(tail_start(&mut f, 10).unwrap(), 0);
        assert_eq!(tail_start(&mut Cursor::new(Vec::new()), 3).unwrap(), 0);
        // Across block boundaries.
        let big: Vec<u8> = (0..100_000)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let start = tail_start(&mut Cursor::new(big.clone()), 3).unwrap() as usize;
        assert_eq!(&big[start..], b"99997\n99998\n99999\n");
    }
}
