//! Go's `time.ParseDuration`, which kubelet, containerd and kube-proxy flags and config files
//! use for every duration ("10s", "1m30s", "1.5h", "500ms", "0"): an optional sign, then one
//! or more decimal numbers each with a unit (ns, us, µs, μs, ms, s, m, h). A negative
//! duration is refused (a `std::time::Duration` cannot hold one, and no setting that takes a
//! duration here means anything by it); "-0" is zero, as in Go. The error messages are Go's.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("time: invalid duration {0:?}")]
    Invalid(String),
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("time: unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
    #[error("duration {0:?} is negative")]
    Negative(String),
}

/// Nanoseconds per unit.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Go's largest duration (an int64 of nanoseconds, about 292 years).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses `input` as Go's time.ParseDuration does.
pub fn parse(input: &str) -> Result<Duration, ParseError> {
    let invalid = || ParseError::Invalid(input.to_string());
    let (negative, mut s) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = digits(s);
        let int_part = &s[..int_len];
        s = &s[int_len..];
        let mut frac = "";
        if let Some(rest) = s.strip_prefix('.') {
            let n = digits(rest);
            frac = &rest[..n];
            s = &rest[n..];
        }
        if int_part.is_empty() && frac.is_empty() {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        if unit.is_empty() {
            return Err(ParseError::MissingUnit(input.to_string()));
        }
        let scale = unit_nanos(unit).ok_or_else(|| ParseError::UnknownUnit {
            unit: unit.to_string(),
            input: input.to_string(),
        })?;
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut nanos = int.checked_mul(scale).ok_or_else(invalid)?;
        // The fraction, truncated to what nanoseconds hold (Go drops the digits beyond).
        let (mut f, mut pow) = (0u128, 1u128);
        for d in frac.bytes().take(30) {
            f = f * 10 + u128::from(d - b'0');
            pow *= 10;
        }
        nanos += f * scale / pow;
        total = total.checked_add(nanos).ok_or_else(invalid)?;
        if total > MAX_NANOS {
            return Err(invalid());
        }
    }
    if negative && total > 0 {
        return Err(ParseError::Negative(input.to_string()));
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let ok = |s: &str| parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("-0"), Duration::ZERO);
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("+10s"), Duration::from_secs(10));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h2m3.5s"), Duration::from_millis(3_723_500));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("3us"), Duration::from_micros(3));
        assert_eq!(ok("3µs"), Duration::from_micros(3));
        assert_eq!(ok("3μs"), Duration::from_micros(3));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("0.000000001s"), Duration::from_nanos(1));
        assert_eq!(ok("2562047h"), Duration::from_secs(2_562_047 * 3600));
    }

    #[test]
    fn bad_durations_get_gos_messages() {
        let err = |s: &str| parse(s).unwrap_err().to_string();
        assert_eq!(err(""), "time: invalid duration \"\"");
        assert_eq!(err("10"), "time: missing unit in duration \"10\"");
        assert_eq!(err("5x"), "time: unknown unit \"x\" in duration \"5x\"");
        assert_eq!(
            err("1h 2m"),
            "time: unknown unit \"h \" in duration \"1h 2m\""
        );
        assert_eq!(err("s"), "time: invalid duration \"s\"");
        assert_eq!(err("."), "time: invalid duration \".\"");
        assert_eq!(err("-"), "time: invalid duration \"-\"");
        assert_eq!(err("-1s"), "duration \"-1s\" is negative");
        // Beyond Go's int64 nanoseconds.
        assert_eq!(err("2562048h"), "time: invalid duration \"2562048h\"");
        assert_eq!(
            err("99999999999999999999999999999999999999999h"),
            "time: invalid duration \"99999999999999999999999999999999999999999h\""
        );
    }
}
