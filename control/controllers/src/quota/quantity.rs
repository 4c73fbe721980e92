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
        Some(Qty {
            nano: pea_quantity::nano_units(q).ok().flatten()?,
            binary: pea_quantity::is_binary_si(q),
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
