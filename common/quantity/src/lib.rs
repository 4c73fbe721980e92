//! Kubernetes resource quantities ("100m", "1.5Gi", "2e3") as the integers every pea component
//! compares (scheduler, kubelet, controllers, federation, dashboard): `value` (rounded up, as
//! apimachinery's `Quantity.Value`) and `milli_value` (`Quantity.MilliValue`). Exact decimal
//! arithmetic, no floats, so "0.1" is exactly 100m and "1.1" is exactly 1100m.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum QuantityError {
    #[error("quantity {0:?} is not a valid quantity")]
    Invalid(String),
}

/// A parsed quantity: `digits / 10^frac` scaled by `10^exp10 * 2^exp2`, with a sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    negative: bool,
    digits: u128,
    frac: u32,
    exp10: i32,
    exp2: u32,
}

fn parse(s: &str) -> Result<Parsed, QuantityError> {
    let bad = || QuantityError::Invalid(s.to_string());
    let t = s.trim();
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(bad());
    }
    let mut digits: u128 = 0;
    let mut frac = 0u32;
    let mut after_dot = false;
    for c in num.chars() {
        if c == '.' {
            after_dot = true;
            continue;
        }
        // Digits past what u128 holds are beyond any resource size; refuse rather than wrap.
        digits = digits
            .checked_mul(10)
            .and_then(|d| d.checked_add(u128::from(c as u8 - b'0')))
            .ok_or_else(bad)?;
        if after_dot {
            frac += 1;
        }
    }
    let (exp10, exp2) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.starts_with(['e', 'E']) => (e[1..].parse::<i32>().map_err(|_| bad())?, 0),
        _ => return Err(bad()),
    };
    Ok(Parsed {
        negative,
        digits,
        frac,
        exp10,
        exp2,
    })
}

/// `q * 10^scale`, rounded up (away from zero for positives, as apimachinery's `ScaledValue`
/// rounds up), saturating at the i64 range.
fn scaled(s: &str, scale: i32) -> Result<i64, QuantityError> {
    let p = parse(s)?;
    let exp10 = p.exp10 + scale - p.frac as i32;
    let mut num: u128 = p.digits;
    let sat = |neg: bool| if neg { i64::MIN } else { i64::MAX };
    if p.exp2 > 0 {
        num = match num.checked_mul(1u128 << p.exp2) {
            Some(n) => n,
            None => return Ok(sat(p.negative)),
        };
    }
    let magnitude: u128 = if exp10 >= 0 {
        match 10u128
            .checked_pow(exp10 as u32)
            .and_then(|m| num.checked_mul(m))
        {
            Some(n) => n,
            None => return Ok(sat(p.negative)),
        }
    } else {
        let div = match 10u128.checked_pow((-exp10) as u32) {
            Some(d) => d,
            // A tiny fraction: ceil is 1 for a positive value, 0 otherwise.
            None => return Ok(i64::from(num != 0 && !p.negative)),
        };
        let (q, r) = (num / div, num % div);
        // Round up for positive values, toward zero for negative ones (ceil in both cases).
        if r != 0 && !p.negative {
            q + 1
        } else {
            q
        }
    };
    if magnitude > i64::MAX as u128 {
        return Ok(sat(p.negative));
    }
    let m = magnitude as i64;
    Ok(if p.negative { -m } else { m })
}

/// `Quantity.Value()`: whole units, rounded up.
pub fn value(s: &str) -> Result<i64, QuantityError> {
    scaled(s, 0)
}

/// `Quantity.MilliValue()`: thousandths, rounded up.
pub fn milli_value(s: &str) -> Result<i64, QuantityError> {
    scaled(s, 3)
}

/// The quantity as an exact count of nano-units (`1` = 10⁻⁹ units; fractions of a nano-unit round
/// up, as kube rounds quantities up), for sums and comparisons that must not lose precision
/// (QoS, quota, LimitRange); `Ok(None)` past the i128 range.
pub fn nano_units(s: &str) -> Result<Option<i128>, QuantityError> {
    let p = parse(s)?;
    let Some(num) = i128::try_from(p.digits)
        .ok()
        .and_then(|d| d.checked_mul(1i128.checked_shl(p.exp2)?))
    else {
        return Ok(None);
    };
    let scale = p.exp10 + 9 - p.frac as i32;
    let v = if scale >= 0 {
        match 10i128
            .checked_pow(scale as u32)
            .and_then(|m| num.checked_mul(m))
        {
            Some(v) => v,
            None => return Ok(None),
        }
    } else {
        match 10i128.checked_pow((-scale) as u32) {
            Some(d) => num / d + i128::from(num % d != 0),
            None => i128::from(num != 0),
        }
    };
    Ok(Some(if p.negative { -v } else { v }))
}

/// Whether the quantity is written in binary SI (`Ki`, `Mi`, ...), the format kube keeps when
/// it adds quantities and prints the sum.
pub fn is_binary_si(s: &str) -> bool {
    s.trim().ends_with('i')
}

/// The quantity as a float, for display and ratios (dashboards, downward-API divisors): exact
/// parsing, one rounding at the end. Never use it for what the scheduler or a cgroup compares.
pub fn as_f64(s: &str) -> Result<f64, QuantityError> {
    let p = parse(s)?;
    let v = p.digits as f64 * 10f64.powi(p.exp10 - p.frac as i32) * 2f64.powi(p.exp2 as i32);
    Ok(if p.negative { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_up_like_apimachinery() {
        assert_eq!(milli_value("100m"), Ok(100));
        assert_eq!(milli_value("1"), Ok(1000));
        assert_eq!(milli_value("0.1"), Ok(100));
        assert_eq!(milli_value("1.5"), Ok(1500));
        assert_eq!(
            milli_value("1u"),
            Ok(1),
            "a micro-cpu rounds up to one milli"
        );
        assert_eq!(value("128Mi"), Ok(128 << 20));
        assert_eq!(value("1Gi"), Ok(1 << 30));
        assert_eq!(value("1.5Gi"), Ok(3 << 29));
        assert_eq!(value("1k"), Ok(1000));
        assert_eq!(value("2e3"), Ok(2000));
        assert_eq!(value("1E3"), Ok(1000));
        assert_eq!(value("500m"), Ok(1), "half a unit rounds up");
        assert_eq!(value("110"), Ok(110));
        assert_eq!(value("-1"), Ok(-1));
        assert_eq!(value("8Ei"), Ok(i64::MAX), "saturates");
    }

    #[test]
    fn nano_units_are_exact() {
        assert_eq!(nano_units("500m"), Ok(Some(500_000_000)));
        assert_eq!(nano_units("0.5"), Ok(Some(500_000_000)));
        assert_eq!(nano_units("1.5Ki"), Ok(Some(1536 * 1_000_000_000)));
        assert_eq!(nano_units("1e3"), Ok(Some(1_000_000_000_000)));
        assert_eq!(
            nano_units("0.0000000001"),
            Ok(Some(1)),
            "below a nano rounds up"
        );
        assert_eq!(nano_units("-2"), Ok(Some(-2_000_000_000)));
        assert_eq!(nano_units("1e40"), Ok(None));
        assert!(nano_units("1x").is_err());
        assert!(is_binary_si("2Gi") && !is_binary_si("2G"));
    }

    #[test]
    fn floats_for_display() {
        assert_eq!(as_f64("123456n"), Ok(0.000123456));
        assert_eq!(as_f64("64Mi"), Ok(67108864.0));
        assert_eq!(as_f64("-1.5k"), Ok(-1500.0));
        assert!(as_f64("1x").is_err());
    }

    #[test]
    fn garbage_is_refused() {
        for s in ["", "abc", "1.2.3", "1Zi", ".", "1e", "--1"] {
            assert!(value(s).is_err(), "{s:?} parsed");
        }
    }
}
