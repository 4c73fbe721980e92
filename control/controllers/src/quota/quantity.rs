//! Resource quantities for quota and LimitRange arithmetic: exact nano-unit counts that keep
//! the format of the first quantity added (apimachinery's `Quantity.Add`), printed the way
//! `Quantity.String` canonicalises them (`1500m`, `2`, `128Mi`, `1k`).

use std::fmt;

/// A quantity: a count of nano-units (`1` = 10⁻⁹) and whether it prints in binary SI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Qty {
    pub nano: i128,
    pub binary: bool,
}

const NANO: i128 = 1_000_000_000;

impl Qty {
    pub const ZERO: Qty = Qty {
        nano: 0,
        binary: false,
    };

    /// Parses `500m`, `0.5`, `1Gi`, `1e3`, `2Ki`; `None` for what is not a quantity.
    pub fn parse(q: &str) -> Option<Qty> {
        let q = q.trim();
        let split = q
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(q.len());
        let (number, suffix) = q.split_at(split);
        let (exp10, shift) = match suffix {
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
            s if s.starts_with(['e', 'E']) => (s[1..].parse::<i32>().ok()?, 0),
            _ => return None,
        };
        let nano = decimal_nano(number, exp10)?.checked_mul(1i128 << shift)?;
        Some(Qty {
            nano,
            binary: shift > 0,
        })
    }

    /// Parses a JSON quantity (a string, or a number as some clients send).
    pub fn from_json(v: &serde_json::Value) -> Option<Qty> {
        match v {
            serde_json::Value::String(s) => Qty::parse(s),
            serde_json::Value::Number(n) => Qty::parse(&n.to_string()),
            _ => None,
        }
    }

    /// The value rounded up to whole units (Go's `Quantity.Value`).
    pub fn value(self) -> i128 {
        self.nano.div_euclid(NANO) + i128::from(self.nano.rem_euclid(NANO) != 0)
    }
}

/// `digits[.digits] × 10^exp10` in nano-units; fractions below a nano-unit round up, as
/// Kubernetes rounds quantities up.
fn decimal_nano(number: &str, exp10: i32) -> Option<i128> {
    let (negative, number) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return None;
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let scale = exp10 + 9 - frac.len() as i32;
    let v = if scale >= 0 {
        mantissa.checked_mul(10i128.checked_pow(scale as u32)?)?
    } else {
        let d = 10i128.checked_pow((-scale) as u32)?;
        mantissa / d + i128::from(mantissa % d != 0)
    };
    Some(if negative { -v } else { v })
}

/// `self + other` in `self`'s format (a zero takes the other's, as an empty sum does).
impl std::ops::Add for Qty {
    type Output = Qty;

    fn add(self, other: Qty) -> Qty {
        Qty {
            nano: self.nano.saturating_add(other.nano),
            binary: if self.nano == 0 && !self.binary {
                other.binary
            } else {
                self.binary
            },
        }
    }
}

impl fmt::Display for Qty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sign, abs) = if self.nano < 0 {
            ("-", -self.nano)
        } else {
            ("", self.nano)
        };
        if abs == 0 {
            return f.write_str("0");
        }
        // Binary SI only for whole values of at least 1Ki (CanonicalizeBytes), else decimal.
        if self.binary && abs % NANO == 0 && abs / NANO >= 1024 {
            let mut units = abs / NANO;
            let mut suffix = 0;
            while units % 1024 == 0 && suffix < 6 {
                units /= 1024;
                suffix += 1;
            }
            let s = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][suffix];
            return write!(f, "{sign}{units}{s}");
        }
        // Decimal SI: the largest exponent (a multiple of 3) that keeps the mantissa whole.
        let mut mantissa = abs;
        let mut exp = -9;
        while exp < 18 && mantissa % 1000 == 0 {
            mantissa /= 1000;
            exp += 3;
        }
        let s = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            _ => "E",
        };
        write!(f, "{sign}{mantissa}{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Qty::parse(s).unwrap().to_string()
    }

    #[test]
    fn prints_as_apimachinery_canonicalises() {
        assert_eq!(canon("1000m"), "1");
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("1500"), "1500");
        assert_eq!(canon("2000"), "2k");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("1536Mi"), "1536Mi");
        assert_eq!(canon("512"), "512");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("1e3"), "1k");
        assert!(Qty::parse("1x").is_none());
        assert!(Qty::parse("").is_none());
    }

    #[test]
    fn sums_keep_the_first_format() {
        let a = Qty::parse("128Mi").unwrap();
        let b = Qty::parse("128Mi").unwrap();
        assert_eq!((a + b).to_string(), "256Mi");
        assert_eq!((Qty::ZERO + a).to_string(), "128Mi");
        let c = Qty::parse("250m").unwrap();
        assert_eq!((c + c + c + c).to_string(), "1");
        assert_eq!(Qty::parse("1500m").unwrap().value(), 2);
    }
}
