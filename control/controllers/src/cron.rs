//! Cron schedules as kube's CronJob controller reads them (robfig/cron v3's `ParseStandard`): five
//! fields — minute, hour, day of month, month, day of week — each `*`, `?`, a number or name,
//! a range `a-b`, a step `x/n` (`N/n` meaning `N-max/n`) or a comma list of those; the
//! descriptors `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`
//! and `@every <duration>`; and a `TZ=`/`CRON_TZ=` prefix naming an IANA zone. Day of month and
//! day of week combine as cron does: when either is unrestricted (`*` or `?`) both must match,
//! otherwise either may. Day of week runs 0–6 (Sunday is 0; 7 is out of range, as in robfig).
//!
//! Times are found in a zone's wall clock: a time that a DST jump skips never fires, one that a
//! fall-back repeats fires at both instants (robfig does the same).

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Set in a field's bits when the field was `*` or `?` (the day matching rule needs it).
const STAR: u64 = 1 << 63;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Fields as bit sets (bit n set when value n matches).
    Spec {
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
        /// The zone a `TZ=`/`CRON_TZ=` prefix named.
        zone: Option<Tz>,
    },
    /// `@every <duration>`: robfig's ConstantDelaySchedule (whole seconds, at least one).
    Every { secs: i64, zone: Option<Tz> },
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// An IANA zone by name, as Go's time.LoadLocation finds it (case-sensitive; "" and "UTC" are
/// UTC). "Local" is refused: kube requires an explicit zone.
pub fn load_zone(name: &str) -> Result<Tz, String> {
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    if name == "Local" {
        return Err("unknown time zone Local".into());
    }
    name.parse::<Tz>()
        .map_err(|_| format!("unknown time zone {name}"))
}

fn must_parse_int(s: &str) -> Result<u32, String> {
    let n: i64 = s.parse().map_err(|_| {
        format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
    })?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {s}"));
    }
    u32::try_from(n).map_err(|_| format!("failed to parse int from {s}: value out of range"))
}

fn int_or_name(s: &str, b: &Bounds) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(b.min + i as u32);
    }
    must_parse_int(s)
}

/// One comma-separated part of a field (robfig's getRange).
fn range_bits(expr: &str, b: &Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut extra);
    if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (start, end, extra) = (b.min, b.max, STAR);
    } else {
        start = int_or_name(low_and_high[0], b)?;
        end = match low_and_high.len() {
            1 => start,
            2 => int_or_name(low_and_high[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        extra = 0;
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = must_parse_int(range_and_step[1])?;
            // "N/step" means "N-max/step".
            if single {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    let mut bits = extra;
    let mut v = start;
    while v <= end {
        bits |= 1 << v;
        v += step;
    }
    Ok(bits)
}

fn field_bits(field: &str, b: &Bounds) -> Result<u64, String> {
    field
        .split(',')
        .try_fold(0, |acc, part| Ok(acc | range_bits(part, b)?))
}

/// Go's time.ParseDuration for the units a schedule would use (h, m, s, ms, us, µs, ns).
fn parse_go_duration(s: &str) -> Result<f64, String> {
    let bad = || format!("time: invalid duration {s:?}");
    if s == "0" {
        return Ok(0.0);
    }
    let mut rest = s;
    let mut total = 0.0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration {s:?}"))?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            u => return Err(format!("time: unknown unit {u:?} in duration {s:?}")),
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

impl Schedule {
    /// Parses a schedule with robfig's messages ("expected exactly 5 fields, found 6: …").
    pub fn parse(spec: &str) -> Result<Self, String> {
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        let mut spec = spec;
        let mut zone = None;
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let eq = spec.find('=').unwrap_or(0);
            let sp = spec.find(' ').unwrap_or(spec.len());
            let name = &spec[eq + 1..sp];
            zone = Some(load_zone(name).map_err(|e| format!("provided bad location {name}: {e}"))?);
            spec = spec[sp..].trim();
        }
        if spec.starts_with('@') {
            let simple = |s: &str| {
                let mut parsed = Self::parse(s)?;
                if let Schedule::Spec { zone: z, .. } = &mut parsed {
                    *z = zone;
                }
                Ok(parsed)
            };
            return match spec {
                "@yearly" | "@annually" => simple("0 0 1 1 *"),
                "@monthly" => simple("0 0 1 * *"),
                "@weekly" => simple("0 0 * * 0"),
                "@daily" | "@midnight" => simple("0 0 * * *"),
                "@hourly" => simple("0 * * * *"),
                _ => match spec.strip_prefix("@every ") {
                    Some(d) => {
                        let secs = parse_go_duration(d)
                            .map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
                        Ok(Schedule::Every {
                            secs: (secs.trunc() as i64).max(1),
                            zone,
                        })
                    }
                    None => Err(format!("unrecognized descriptor: {spec}")),
                },
            };
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            ));
        }
        Ok(Schedule::Spec {
            minute: field_bits(fields[0], &MINUTES)?,
            hour: field_bits(fields[1], &HOURS)?,
            dom: field_bits(fields[2], &DOM)?,
            month: field_bits(fields[3], &MONTHS)?,
            dow: field_bits(fields[4], &DOW)?,
            zone,
        })
    }

    /// The zone a `TZ=` prefix named, if any.
    pub fn zone(&self) -> Option<Tz> {
        match self {
            Schedule::Spec { zone, .. } | Schedule::Every { zone, .. } => *zone,
        }
    }

    /// The first activation strictly after `after`, in the schedule's own zone, else `zone`
    /// (or the process's local zone, as kube-controller-manager's time.Local); `None` when there
    /// is none within five years (e.g. `0 0 30 2 *`).
    pub fn next(&self, after: DateTime<Utc>, zone: Option<Tz>) -> Option<DateTime<Utc>> {
        match self.zone().or(zone) {
            Some(tz) => self.next_in(after, &tz),
            None => self.next_in(after, &chrono::Local),
        }
    }

    pub fn next_in<Z: TimeZone>(&self, after: DateTime<Utc>, zone: &Z) -> Option<DateTime<Utc>> {
        let (minute, hour, dom, month, dow) = match *self {
            Schedule::Every { secs, .. } => {
                let whole = after.with_nanosecond(0)?;
                return Some(whole + Duration::seconds(secs));
            }
            Schedule::Spec {
                minute,
                hour,
                dom,
                month,
                dow,
                ..
            } => (minute, hour, dom, month, dow),
        };
        let local = after.with_timezone(zone).naive_local();
        let year_limit = local.year() + 5;
        // A day early: a fall-back hour can put a later instant at an earlier wall time.
        let mut date: NaiveDate = local.date().pred_opt()?;
        let bit = |set: u64, v: u32| set & (1 << v) != 0;
        while date.year() <= year_limit {
            let dom_match = bit(dom, date.day());
            let dow_match = bit(dow, date.weekday().num_days_from_sunday());
            let day_match = if dom & STAR != 0 || dow & STAR != 0 {
                dom_match && dow_match
            } else {
                dom_match || dow_match
            };
            if bit(month, date.month()) && day_match {
                let mut best: Option<DateTime<Utc>> = None;
                for h in (0..24).filter(|h| bit(hour, *h)) {
                    for m in (0..60).filter(|m| bit(minute, *m)) {
                        let wall = date.and_hms_opt(h, m, 0)?;
                        let instants = match zone.from_local_datetime(&wall) {
                            LocalResult::Single(t) => vec![t],
                            LocalResult::Ambiguous(a, b) => vec![a, b],
                            LocalResult::None => vec![],
                        };
                        for t in instants {
                            let t = t.with_timezone(&Utc);
                            if t > after && best.is_none_or(|b| t < b) {
                                best = Some(t);
                            }
                        }
                    }
                }
                if best.is_some() {
                    return best;
                }
            }
            date = date.succ_opt()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(spec: &str, after: &str) -> String {
        Schedule::parse(spec)
            .unwrap()
            .next(utc(after), Some(Tz::UTC))
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "none".into())
    }

    #[test]
    fn parses_what_robfig_parses_and_refuses_the_rest() {
        for ok in [
            "* * * * *",
            "*/5 * * * *",
            "0 0 1 jan mon",
            "0 0 1 JAN-MAR ?",
            "0-30/10 1,2 * * 6",
            "5/15 * * * *",
            "@hourly",
            "@every 1h30m",
            "TZ=UTC 0 * * * *",
            "CRON_TZ=Europe/Paris @daily",
        ] {
            assert!(Schedule::parse(ok).is_ok(), "{ok}");
        }
        let err = |s: &str| Schedule::parse(s).unwrap_err();
        assert_eq!(err(""), "empty spec string");
        assert_eq!(
            err("* * * * * *"),
            "expected exactly 5 fields, found 6: [* * * * * *]"
        );
        assert_eq!(
            err("61 * * * *"),
            "end of range (61) above maximum (59): 61"
        );
        assert_eq!(
            err("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(err("* * * * 7"), "end of range (7) above maximum (6): 7");
        assert_eq!(
            err("5-1 * * * *"),
            "beginning of range (5) beyond end of range (1): 5-1"
        );
        assert_eq!(
            err("*/0 * * * *"),
            "step of range should be a positive number: */0"
        );
        assert_eq!(err("1-2-3 * * * *"), "too many hyphens: 1-2-3");
        assert_eq!(err("@sometimes"), "unrecognized descriptor: @sometimes");
        assert!(err("x * * * *").starts_with("failed to parse int from x"));
        assert!(err("TZ=Mars/Olympus * * * * *").starts_with("provided bad location Mars/Olympus"));
    }

    #[test]
    fn steps_ranges_and_names_give_the_expected_bits() {
        let Schedule::Spec {
            minute, month, dow, ..
        } = Schedule::parse("5/15 * * jan,mar-apr sat").unwrap()
        else {
            panic!()
        };
        assert_eq!(minute, (1 << 5) | (1 << 20) | (1 << 35) | (1 << 50));
        assert_eq!(month, (1 << 1) | (1 << 3) | (1 << 4));
        assert_eq!(dow, 1 << 6);
        // "*" keeps the star bit, "*/2" drops it, "*/1" keeps it.
        let Schedule::Spec { hour, dom, .. } = Schedule::parse("0 */2 */1 * *").unwrap() else {
            panic!()
        };
        assert_eq!(hour & STAR, 0);
        assert_ne!(dom & STAR, 0);
    }

    #[test]
    fn next_activation_by_hand() {
        assert_eq!(
            next("* * * * *", "2024-03-01T10:00:00Z"),
            "2024-03-01T10:01:00+00:00"
        );
        assert_eq!(
            next("* * * * *", "2024-03-01T09:59:59.500Z"),
            "2024-03-01T10:00:00+00:00"
        );
        assert_eq!(
            next("*/15 * * * *", "2024-03-01T10:07:00Z"),
            "2024-03-01T10:15:00+00:00"
        );
        assert_eq!(
            next("@hourly", "2024-03-01T23:30:00Z"),
            "2024-03-02T00:00:00+00:00"
        );
        // 2024 is a leap year: Feb 29 exists.
        assert_eq!(
            next("0 12 29 2 *", "2023-03-01T00:00:00Z"),
            "2024-02-29T12:00:00+00:00"
        );
        // 2024-03-01 is a Friday: the next Monday 09:00 is March 4.
        assert_eq!(
            next("0 9 * * mon", "2024-03-01T10:00:00Z"),
            "2024-03-04T09:00:00+00:00"
        );
        // Both days restricted: the 15th OR a Monday, whichever comes first.
        assert_eq!(
            next("0 0 15 * 1", "2024-03-05T00:00:00Z"),
            "2024-03-11T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 15 * 1", "2024-03-12T00:00:00Z"),
            "2024-03-15T00:00:00+00:00"
        );
        // Day of month restricted, day of week "*": only the 15th.
        assert_eq!(
            next("0 0 15 * *", "2024-03-05T00:00:00Z"),
            "2024-03-15T00:00:00+00:00"
        );
        assert_eq!(
            next("@yearly", "2024-03-05T00:00:00Z"),
            "2025-01-01T00:00:00+00:00"
        );
        // Never (Feb 30).
        assert_eq!(next("0 0 30 2 *", "2024-03-05T00:00:00Z"), "none");
        // @every drops the fraction of a second, then adds the delay.
        assert_eq!(
            next("@every 90s", "2024-03-01T10:00:00.700Z"),
            "2024-03-01T10:01:30+00:00"
        );
    }

    #[test]
    fn zones_follow_the_wall_clock_across_dst() {
        let ny: Tz = load_zone("America/New_York").unwrap();
        let s = Schedule::parse("0 9 * * *").unwrap();
        // 09:00 EST is 14:00Z; after the March 10 2024 spring-forward 09:00 EDT is 13:00Z.
        assert_eq!(
            s.next(utc("2024-03-09T15:00:00Z"), Some(ny)).unwrap(),
            utc("2024-03-10T13:00:00Z")
        );
        // 02:30 does not exist on 2024-03-10 in New York: that day is skipped.
        let gap = Schedule::parse("30 2 * * *").unwrap();
        assert_eq!(
            gap.next(utc("2024-03-10T05:00:00Z"), Some(ny)).unwrap(),
            utc("2024-03-11T06:30:00Z")
        );
        // 01:30 happens twice on 2024-11-03 (EDT 05:30Z, then EST 06:30Z): both fire.
        let twice = Schedule::parse("30 1 * * *").unwrap();
        let first = twice.next(utc("2024-11-03T04:00:00Z"), Some(ny)).unwrap();
        assert_eq!(first, utc("2024-11-03T05:30:00Z"));
        assert_eq!(
            twice.next(first, Some(ny)).unwrap(),
            utc("2024-11-03T06:30:00Z")
        );
        // A TZ= prefix wins over the zone passed in.
        let tokyo = Schedule::parse("TZ=Asia/Tokyo 0 0 * * *").unwrap();
        assert_eq!(
            tokyo.next(utc("2024-03-01T16:00:00Z"), Some(ny)).unwrap(),
            utc("2024-03-02T15:00:00Z")
        );
        assert!(load_zone("Local").is_err());
        assert!(
            load_zone("europe/paris").is_err(),
            "names are case-sensitive"
        );
        assert_eq!(load_zone("").unwrap(), Tz::UTC);
    }
}
