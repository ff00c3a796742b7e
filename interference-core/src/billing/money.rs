//! Money as an exact integer count of billionths of the billing currency.
//!
//! Ledger lines are summed into invoices and reconciled against their formula, so
//! amounts are integers (nanos, as Google's `Money` type keeps them) and only the
//! pricing formula itself runs in floating point, rounded once per ledger line. In
//! JSON an amount is a plain number (FOCUS cost columns are decimals): nanos below
//! 2^53 (nine million currency units per line) survive the f64 round trip exactly.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOS: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    pub const fn nanos(self) -> i64 {
        self.0
    }

    /// The nearest amount to `units` currency units; None if not finite or beyond
    /// ±9 billion units.
    pub fn from_units(units: f64) -> Option<Self> {
        let nanos = (units * NANOS as f64).round();
        (nanos.is_finite() && nanos.abs() < 9.0e18).then_some(Self(nanos as i64))
    }

    pub fn units(self) -> f64 {
        self.0 as f64 / NANOS as f64
    }

    /// `self × factor`, rounded to the nearest nano (half away from zero).
    pub fn scale(self, factor: f64) -> Self {
        Self::from_units(self.units() * factor).unwrap_or(self)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn abs(self) -> Self {
        Self(self.0.saturating_abs())
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        *self = *self + rhs;
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0.saturating_sub(rhs.0))
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(self.0.saturating_neg())
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Add::add)
    }
}

/// Exact decimal: `{}` shows every significant digit (at least two decimals),
/// `{:.N}` rounds to N decimals (half away from zero).
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (digits, nanos) = match f.precision() {
            Some(p) if p < 9 => {
                let step = 10i128.pow(9 - p as u32);
                let n = self.0 as i128;
                let rounded = (n.abs() + step / 2) / step * step * n.signum();
                (p, rounded)
            }
            _ => (9, self.0 as i128),
        };
        let sign = if nanos < 0 { "-" } else { "" };
        let abs = nanos.unsigned_abs();
        let whole = abs / NANOS as u128;
        let frac = format!("{:09}", abs % NANOS as u128);
        let frac = if f.precision().is_some() {
            frac[..digits].to_string()
        } else {
            let trimmed = frac.trim_end_matches('0');
            if trimmed.len() < 2 {
                frac[..2].to_string()
            } else {
                trimmed.to_string()
            }
        };
        if frac.is_empty() {
            write!(f, "{sign}{whole}")
        } else {
            write!(f, "{sign}{whole}.{frac}")
        }
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.units())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let units = f64::deserialize(d)?;
        Money::from_units(units)
            .ok_or_else(|| serde::de::Error::custom(format!("{units} is not a usable amount")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_exact_or_rounded_on_request() {
        let m = Money::from_nanos(12_345_678);
        assert_eq!(m.to_string(), "0.012345678");
        assert_eq!(format!("{m:.4}"), "0.0123");
        assert_eq!(format!("{:.2}", Money::from_nanos(-1_005_000_000)), "-1.01");
        assert_eq!(Money::from_nanos(3 * NANOS).to_string(), "3.00");
        assert_eq!(format!("{:.0}", Money::from_nanos(2_500_000_000)), "3");
    }

    #[test]
    fn json_round_trip_is_exact() {
        for nanos in [0, 1, -1, 999_999_999, 123_456_789_012, -7_000_000_001] {
            let m = Money::from_nanos(nanos);
            let text = serde_json::to_string(&m).unwrap();
            let back: Money = serde_json::from_str(&text).unwrap();
            assert_eq!(back, m, "{text}");
        }
    }

    #[test]
    fn scaling_rounds_half_away_from_zero() {
        assert_eq!(Money::from_nanos(5).scale(0.5).nanos(), 3);
        assert_eq!(Money::from_nanos(-5).scale(0.5).nanos(), -3);
        assert_eq!(Money::from_units(f64::NAN), None);
    }
}
