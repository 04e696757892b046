//! Exact decimal numbers of any precision.
//!
//! A [`Decimal`] keeps its digits as canonical text: an optional `-`, the integer digits without
//! leading zeros (`0` when there are none), and a fraction without trailing zeros. `12.50` and `12.5`
//! are the same value and the same text, so equality and hashing are exact and cheap, and no digit is
//! ever lost to binary floating point (PostgreSQL NUMERIC goes up to 1000 digits; `rust_decimal` would
//! stop at 28).

use std::cmp::Ordering;
use std::fmt;

/// An exact decimal number stored as canonical text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    text: Box<str>,
}

/// Text that is not a decimal number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a decimal number")]
pub struct DecimalError {
    input: String,
}

impl Decimal {
    /// Parses `[+-]digits[.digits][e[+-]digits]`, with surrounding blanks allowed.
    pub fn parse(input: &str) -> Result<Self, DecimalError> {
        if is_canonical(input) {
            return Ok(Decimal { text: input.into() });
        }
        let err = || DecimalError {
            input: input.to_owned(),
        };
        let s = input.trim();
        let (negative, s) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exponent) = match s.find(['e', 'E']) {
            Some(at) => {
                let exp: i64 = s[at + 1..].parse().map_err(|_| err())?;
                if exp.abs() > 4000 {
                    return Err(err());
                }
                (&s[..at], exp)
            }
            None => (s, 0),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err());
        }
        if !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return Err(err());
        }
        // Digits with the point after `point` of them; the exponent moves the point.
        let digits: String = format!("{int_part}{frac_part}");
        let point = int_part.len() as i64 + exponent;
        Ok(Self::from_digits(negative, &digits, point))
    }

    /// Builds the canonical form from a digit string and the position of the decimal point in it
    /// (which may lie outside the string).
    fn from_digits(negative: bool, digits: &str, point: i64) -> Self {
        let len = digits.len() as i64;
        let int_digits: String = if point <= 0 {
            String::new()
        } else if point >= len {
            let mut s = digits.to_owned();
            s.extend(std::iter::repeat_n('0', (point - len) as usize));
            s
        } else {
            digits[..point as usize].to_owned()
        };
        let frac_digits: String = if point >= len {
            String::new()
        } else if point <= 0 {
            let mut s: String = std::iter::repeat_n('0', (-point) as usize).collect();
            s.push_str(digits);
            s
        } else {
            digits[point as usize..].to_owned()
        };
        let int_trimmed = int_digits.trim_start_matches('0');
        let frac_trimmed = frac_digits.trim_end_matches('0');
        let is_zero = int_trimmed.is_empty() && frac_trimmed.is_empty();
        let mut text = String::with_capacity(int_trimmed.len() + frac_trimmed.len() + 3);
        if negative && !is_zero {
            text.push('-');
        }
        text.push_str(if int_trimmed.is_empty() {
            "0"
        } else {
            int_trimmed
        });
        if !frac_trimmed.is_empty() {
            text.push('.');
            text.push_str(frac_trimmed);
        }
        Decimal {
            text: text.into_boxed_str(),
        }
    }

    /// The decimal equal to an integer.
    pub fn from_i64(value: i64) -> Self {
        Decimal {
            text: value.to_string().into_boxed_str(),
        }
    }

    /// The decimal equal to the shortest text that reads back as `value`; `None` for NaN and
    /// infinities.
    pub fn from_f64(value: f64) -> Option<Self> {
        if !value.is_finite() {
            return None;
        }
        // Rust prints finite floats without an exponent and with the fewest digits that round-trip.
        Self::parse(&value.to_string()).ok()
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.text.starts_with('-')
    }

    fn parts(&self) -> (&str, &str) {
        let unsigned = self.text.trim_start_matches('-');
        unsigned.split_once('.').unwrap_or((unsigned, ""))
    }

    /// Digits after the point (canonical, so without trailing zeros).
    pub fn scale(&self) -> u32 {
        self.parts().1.len() as u32
    }

    /// Significant digits before the point (0 for values between -1 and 1).
    pub fn integer_digits(&self) -> u32 {
        let int = self.parts().0;
        if int == "0" { 0 } else { int.len() as u32 }
    }

    /// Significant digits: all digits but leading zeros (`0.0120` → 2, `120` → 3, `0` → 0).
    pub fn significant_digits(&self) -> u32 {
        let (int, frac) = self.parts();
        if int == "0" {
            frac.trim_start_matches('0').len() as u32
        } else {
            (int.len() + frac.len()) as u32
        }
    }

    /// Whether the value fits a `decimal(precision, scale)` column without rounding.
    pub fn fits(&self, precision: u16, scale: u16) -> bool {
        self.scale() <= u32::from(scale)
            && self.integer_digits() <= u32::from(precision.saturating_sub(scale))
    }

    /// The text with exactly `scale` digits after the point (padded with zeros); `None` when the
    /// value has more fraction digits than that.
    pub fn to_string_scaled(&self, scale: u16) -> Option<String> {
        let have = self.scale();
        if have > u32::from(scale) {
            return None;
        }
        let mut s = self.text.to_string();
        if scale > 0 {
            if have == 0 {
                s.push('.');
            }
            s.extend(std::iter::repeat_n('0', (u32::from(scale) - have) as usize));
        }
        Some(s)
    }

    /// The value as an integer when it has no fraction and fits in 64 bits.
    pub fn to_i64(&self) -> Option<i64> {
        if self.scale() != 0 {
            return None;
        }
        self.text.parse().ok()
    }

    /// The nearest double (may round).
    pub fn to_f64(&self) -> f64 {
        self.text.parse().unwrap_or(f64::NAN)
    }
}

/// Whether `s` is already in canonical form (the common case for text from databases), so that
/// parsing can copy it as it is.
pub(crate) fn is_canonical(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let (int, frac) = match digits.iter().position(|&c| c == b'.') {
        Some(p) => (&digits[..p], Some(&digits[p + 1..])),
        None => (digits, None),
    };
    let int_ok =
        !int.is_empty() && int.iter().all(u8::is_ascii_digit) && (int.len() == 1 || int[0] != b'0');
    let frac_ok = match frac {
        None => true,
        Some(f) => !f.is_empty() && f.iter().all(u8::is_ascii_digit) && f.last() != Some(&b'0'),
    };
    // "-0" and "-0.0…" are not canonical: zero has no sign.
    let negative_zero = b.first() == Some(&b'-') && int == b"0" && frac.is_none();
    int_ok && frac_ok && !negative_zero
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.is_negative(), other.is_negative()) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (negative, _) => {
                let (ai, af) = self.parts();
                let (bi, bf) = other.parts();
                let magnitude = ai
                    .len()
                    .cmp(&bi.len())
                    .then_with(|| ai.cmp(bi))
                    .then_with(|| af.cmp(bf));
                if negative {
                    magnitude.reverse()
                } else {
                    magnitude
                }
            }
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({})", self.text)
    }
}

impl std::str::FromStr for Decimal {
    type Err = DecimalError;
    fn from_str(s: &str) -> Result<Self, DecimalError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn canonical_form() {
        assert_eq!(d("0012.3400").as_str(), "12.34");
        assert_eq!(d("-0.000").as_str(), "0");
        assert_eq!(d("+.5").as_str(), "0.5");
        assert_eq!(d("5.").as_str(), "5");
        assert_eq!(d("1.5e3").as_str(), "1500");
        assert_eq!(d("-15e-4").as_str(), "-0.0015");
        assert_eq!(
            d("123456789012345678901234567890.123456789").as_str(),
            "123456789012345678901234567890.123456789"
        );
        for bad in ["", "-", ".", "1.2.3", "abc", "1e", "1e99999", "0x10", "١٢"] {
            assert!(Decimal::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn canonical_input_is_recognised() {
        for canon in ["0", "12.5", "-12.5", "0.001", "100", "-1"] {
            assert!(is_canonical(canon), "{canon}");
            assert_eq!(d(canon).as_str(), canon);
        }
        for not in [
            "012", "12.50", "-0", "1.", ".5", "+1", "1e3", "", "-", "1.2.3", "12 ",
        ] {
            assert!(!is_canonical(not), "{not}");
        }
    }

    #[test]
    fn fits_and_scaling() {
        assert!(d("9999999999.99").fits(12, 2));
        assert!(!d("99999999999.99").fits(12, 2));
        assert_eq!(d("0.0120").significant_digits(), 2);
        assert_eq!(d("-120").significant_digits(), 3);
        assert_eq!(d("10.5").significant_digits(), 3);
        assert_eq!(d("0").significant_digits(), 0);
        assert!(!d("1.234").fits(12, 2));
        assert!(d("0.5").fits(1, 1));
        assert_eq!(d("12.5").to_string_scaled(2).unwrap(), "12.50");
        assert_eq!(d("12").to_string_scaled(2).unwrap(), "12.00");
        assert_eq!(d("12").to_string_scaled(0).unwrap(), "12");
        assert!(d("1.234").to_string_scaled(2).is_none());
    }

    #[test]
    fn from_f64_is_shortest_round_trip() {
        assert_eq!(Decimal::from_f64(12.5).unwrap().as_str(), "12.5");
        assert_eq!(Decimal::from_f64(0.1).unwrap().as_str(), "0.1");
        assert_eq!(
            Decimal::from_f64(-1e21).unwrap().as_str(),
            "-1000000000000000000000"
        );
        assert!(Decimal::from_f64(f64::NAN).is_none());
    }

    proptest! {
        #[test]
        fn order_matches_numeric_order(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000,
                                       sa in 0u32..6, sb in 0u32..6) {
            let da = Decimal::parse(&format!("{}e-{}", a, sa)).unwrap();
            let db = Decimal::parse(&format!("{}e-{}", b, sb)).unwrap();
            // Compare exactly with integers scaled to a common exponent.
            let (x, y) = (i128::from(a) * 10i128.pow(6 - sa), i128::from(b) * 10i128.pow(6 - sb));
            prop_assert_eq!(da.cmp(&db), x.cmp(&y));
            prop_assert_eq!(da == db, x == y);
        }

        #[test]
        fn canonical_text_reparses_to_itself(int in "-?[0-9]{1,40}", frac in "[0-9]{0,20}") {
            let value = Decimal::parse(&format!("{int}.{frac}")).unwrap();
            prop_assert_eq!(Decimal::parse(value.as_str()).unwrap(), value);
        }
    }
}
