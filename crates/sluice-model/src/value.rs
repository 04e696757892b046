//! One column value of one row.
//!
//! Readers produce values that conform to the column's [`DataType`] (or `Null`); writers receive
//! values of the target column's type. Two engine-independent views of a value live here: a total
//! order for key merges ([`Value::cmp_key`]) and a canonical byte encoding for checksums
//! ([`Value::encode_canonical`]) under which equal data from different engines encodes identically
//! (an `int32` 5 and an `int64` 5 and a `decimal` 5 are the same number).

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use uuid::Uuid;

use crate::data_type::DataType;
use crate::decimal::Decimal;

/// One value of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 16-bit integer.
    Int16(i16),
    /// A 32-bit integer.
    Int32(i32),
    /// A 64-bit integer.
    Int64(i64),
    /// A single-precision float.
    Float32(f32),
    /// A double-precision float.
    Float64(f64),
    /// An exact decimal.
    Decimal(Decimal),
    /// Text (`Text` and `Varchar` columns).
    Text(String),
    /// Binary data.
    Bytes(Vec<u8>),
    /// A calendar date.
    Date(NaiveDate),
    /// A time of day.
    Time(NaiveTime),
    /// A date and time without zone.
    Timestamp(NaiveDateTime),
    /// An instant, in UTC.
    TimestampTz(DateTime<Utc>),
    /// A JSON document, as text.
    Json(String),
    /// A UUID.
    Uuid(Uuid),
}

/// Families of values that compare and hash alike across engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Null,
    Bool,
    Exact,
    Float,
    Text,
    Bytes,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Json,
    Uuid,
}

impl Value {
    fn family(&self) -> Family {
        match self {
            Value::Null => Family::Null,
            Value::Bool(_) => Family::Bool,
            Value::Int16(_) | Value::Int32(_) | Value::Int64(_) | Value::Decimal(_) => {
                Family::Exact
            }
            Value::Float32(_) | Value::Float64(_) => Family::Float,
            Value::Text(_) => Family::Text,
            Value::Bytes(_) => Family::Bytes,
            Value::Date(_) => Family::Date,
            Value::Time(_) => Family::Time,
            Value::Timestamp(_) => Family::Timestamp,
            Value::TimestampTz(_) => Family::TimestampTz,
            Value::Json(_) => Family::Json,
            Value::Uuid(_) => Family::Uuid,
        }
    }

    /// Whether this is `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int16(v) => Some(i64::from(v)),
            Value::Int32(v) => Some(i64::from(v)),
            Value::Int64(v) => Some(v),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float32(v) => Some(f64::from(v)),
            Value::Float64(v) => Some(v),
            _ => None,
        }
    }

    /// Approximate memory the value holds, for batch byte limits and progress.
    pub fn byte_size(&self) -> usize {
        match self {
            Value::Null => 1,
            Value::Bool(_) => 1,
            Value::Int16(_) => 2,
            Value::Int32(_) | Value::Float32(_) | Value::Date(_) => 4,
            Value::Int64(_) | Value::Float64(_) | Value::Time(_) => 8,
            Value::Timestamp(_) | Value::TimestampTz(_) => 12,
            Value::Uuid(_) => 16,
            Value::Decimal(d) => d.as_str().len(),
            Value::Text(s) | Value::Json(s) => s.len(),
            Value::Bytes(b) => b.len(),
        }
    }

    /// A total order used to merge key-ordered streams from different engines. Integers and
    /// decimals compare as numbers, text and bytes bytewise (SQL `BINARY`/`C` collation), NULL first.
    pub fn cmp_key(&self, other: &Value) -> Ordering {
        let (fa, fb) = (self.family(), other.family());
        if fa != fb {
            return fa.cmp(&fb);
        }
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Decimal(a), Value::Decimal(b)) => a.cmp(b),
            (Value::Decimal(a), b) => a.cmp(&Decimal::from_i64(b.as_i64().unwrap_or_default())),
            (a, Value::Decimal(b)) => Decimal::from_i64(a.as_i64().unwrap_or_default()).cmp(b),
            (a, b) if fa == Family::Exact => a.as_i64().cmp(&b.as_i64()),
            (a, b) if fa == Family::Float => {
                let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
                x.total_cmp(&y)
            }
            (Value::Text(a), Value::Text(b)) | (Value::Json(a), Value::Json(b)) => {
                a.as_bytes().cmp(b.as_bytes())
            }
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            (Value::Date(a), Value::Date(b)) => a.cmp(b),
            (Value::Time(a), Value::Time(b)) => a.cmp(b),
            (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
            (Value::TimestampTz(a), Value::TimestampTz(b)) => a.cmp(b),
            (Value::Uuid(a), Value::Uuid(b)) => a.cmp(b),
            _ => Ordering::Equal,
        }
    }

    /// Appends an engine-independent encoding of the value to `out`: equal data encodes to equal
    /// bytes whatever engine it came from, and the encoding is prefix-free so that a row's values can
    /// simply be concatenated. JSON is canonicalised (keys sorted, no blanks).
    pub fn encode_canonical(&self, out: &mut Vec<u8>) {
        fn bytes_with_len(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
            out.push(tag);
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        match self {
            Value::Null => out.push(b'N'),
            Value::Bool(b) => out.extend_from_slice(&[b'B', u8::from(*b)]),
            Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => {
                let v = self.as_i64().expect("integer variants have an i64 view");
                bytes_with_len(out, b'n', v.to_string().as_bytes());
            }
            Value::Decimal(d) => bytes_with_len(out, b'n', d.as_str().as_bytes()),
            Value::Float32(_) | Value::Float64(_) => {
                let mut v = self.as_f64().expect("float variants have an f64 view");
                if v == 0.0 {
                    v = 0.0; // -0.0 == 0.0
                }
                if v.is_nan() {
                    v = f64::NAN;
                }
                out.push(b'f');
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            Value::Text(s) => bytes_with_len(out, b't', s.as_bytes()),
            Value::Bytes(b) => bytes_with_len(out, b'x', b),
            Value::Date(d) => {
                out.push(b'D');
                out.extend_from_slice(&d.num_days_from_ce().to_le_bytes());
            }
            Value::Time(t) => {
                out.push(b'T');
                out.extend_from_slice(&t.num_seconds_from_midnight().to_le_bytes());
                out.extend_from_slice(&t.nanosecond().to_le_bytes());
            }
            Value::Timestamp(ts) => {
                let utc = ts.and_utc();
                out.push(b'S');
                out.extend_from_slice(&utc.timestamp().to_le_bytes());
                out.extend_from_slice(&utc.timestamp_subsec_nanos().to_le_bytes());
            }
            Value::TimestampTz(ts) => {
                out.push(b'Z');
                out.extend_from_slice(&ts.timestamp().to_le_bytes());
                out.extend_from_slice(&ts.timestamp_subsec_nanos().to_le_bytes());
            }
            Value::Json(text) => {
                // Tag, then a placeholder length patched once the canonical text is written.
                out.push(b'j');
                let len_at = out.len();
                out.extend_from_slice(&[0u8; 8]);
                match crate::json::canonicalize(text, out) {
                    Ok(()) => {
                        let len = (out.len() - len_at - 8) as u64;
                        out[len_at..len_at + 8].copy_from_slice(&len.to_le_bytes());
                    }
                    Err(()) => {
                        out.truncate(len_at - 1);
                        bytes_with_len(out, b'J', text.as_bytes());
                    }
                }
            }
            Value::Uuid(u) => {
                out.push(b'u');
                out.extend_from_slice(u.as_bytes());
            }
        }
    }

    /// Whether the value may be stored in a column of `ty` as it is.
    pub fn conforms_to(&self, ty: DataType) -> bool {
        matches!(
            (self, ty),
            (Value::Null, _)
                | (Value::Bool(_), DataType::Bool)
                | (Value::Int16(_), DataType::Int16)
                | (Value::Int32(_), DataType::Int32)
                | (Value::Int64(_), DataType::Int64)
                | (Value::Float32(_), DataType::Float32)
                | (Value::Float64(_), DataType::Float64)
                | (
                    Value::Decimal(_),
                    DataType::Decimal { .. } | DataType::Numeric
                )
                | (Value::Text(_), DataType::Text | DataType::Varchar(_))
                | (Value::Bytes(_), DataType::Bytes)
                | (Value::Date(_), DataType::Date)
                | (Value::Time(_), DataType::Time)
                | (Value::Timestamp(_), DataType::Timestamp)
                | (Value::TimestampTz(_), DataType::TimestampTz)
                | (Value::Json(_), DataType::Json)
                | (Value::Uuid(_), DataType::Uuid)
        )
    }
}

/// Values serialize to plain JSON: numbers as numbers (decimals as strings, so no digit is lost),
/// bytes as `\\x`-prefixed hex, dates and times as ISO-8601 text, JSON documents embedded.
impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int16(v) => s.serialize_i16(*v),
            Value::Int32(v) => s.serialize_i32(*v),
            Value::Int64(v) => s.serialize_i64(*v),
            Value::Float32(v) if v.is_finite() => s.serialize_f32(*v),
            Value::Float64(v) if v.is_finite() => s.serialize_f64(*v),
            Value::Float32(v) => s.collect_str(v),
            Value::Float64(v) => s.collect_str(v),
            Value::Decimal(d) => s.serialize_str(d.as_str()),
            Value::Text(t) => s.serialize_str(t),
            Value::Bytes(b) => {
                let mut hex = String::with_capacity(2 + b.len() * 2);
                hex.push_str("\\x");
                for byte in b {
                    hex.push_str(&format!("{byte:02x}"));
                }
                s.serialize_str(&hex)
            }
            Value::Date(d) => s.collect_str(d),
            Value::Time(t) => s.collect_str(t),
            Value::Timestamp(ts) => s.collect_str(&ts.format("%Y-%m-%dT%H:%M:%S%.f")),
            Value::TimestampTz(ts) => {
                s.serialize_str(&ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            }
            Value::Json(text) => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(doc) => doc.serialize(s),
                Err(_) => s.serialize_str(text),
            },
            Value::Uuid(u) => s.collect_str(u),
        }
    }
}

/// Shows a value the way a person reads it in a key list or an error message; text is quoted.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int16(v) => write!(f, "{v}"),
            Value::Int32(v) => write!(f, "{v}"),
            Value::Int64(v) => write!(f, "{v}"),
            Value::Float32(v) => write!(f, "{v}"),
            Value::Float64(v) => write!(f, "{v}"),
            Value::Decimal(d) => write!(f, "{d}"),
            Value::Text(s) | Value::Json(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => {
                f.write_str("0x")?;
                for byte in b.iter().take(32) {
                    write!(f, "{byte:02x}")?;
                }
                if b.len() > 32 {
                    f.write_str("…")?;
                }
                Ok(())
            }
            Value::Date(d) => write!(f, "{d}"),
            Value::Time(t) => write!(f, "{t}"),
            Value::Timestamp(ts) => write!(f, "{ts}"),
            Value::TimestampTz(ts) => write!(f, "{}", ts.to_rfc3339()),
            Value::Uuid(u) => write!(f, "{u}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        v.encode_canonical(&mut out);
        out
    }

    #[test]
    fn integers_and_decimals_are_one_family() {
        let five = [
            Value::Int16(5),
            Value::Int32(5),
            Value::Int64(5),
            Value::Decimal(Decimal::parse("5.000").unwrap()),
        ];
        for a in &five {
            for b in &five {
                assert_eq!(enc(a), enc(b));
                assert_eq!(a.cmp_key(b), Ordering::Equal);
            }
        }
        assert_ne!(enc(&Value::Int64(5)), enc(&Value::Text("5".into())));
        assert_eq!(
            Value::Int32(-3).cmp_key(&Value::Decimal(Decimal::parse("-2.5").unwrap())),
            Ordering::Less
        );
    }

    #[test]
    fn json_is_canonical_for_hashing() {
        let a = Value::Json(r#"{"b": [1, 2], "a": {"y": null, "x": "é"}}"#.into());
        let b = Value::Json(r#"{"a":{"x":"é","y":null},"b":[1,2]}"#.into());
        assert_eq!(enc(&a), enc(&b));
        assert_ne!(enc(&a), enc(&Value::Json(r#"{"a":1}"#.into())));
    }

    #[test]
    fn encoding_is_prefix_free() {
        // ("ab","c") and ("a","bc") must not collide when concatenated.
        let mut x = enc(&Value::Text("ab".into()));
        x.extend(enc(&Value::Text("c".into())));
        let mut y = enc(&Value::Text("a".into()));
        y.extend(enc(&Value::Text("bc".into())));
        assert_ne!(x, y);
        assert_ne!(enc(&Value::Null), enc(&Value::Text(String::new())));
    }

    #[test]
    fn text_orders_bytewise_and_null_first() {
        let mut values = vec![
            Value::Text("b".into()),
            Value::Text("B".into()),
            Value::Null,
            Value::Text("é".into()),
            Value::Text("a".into()),
        ];
        values.sort_by(|a, b| a.cmp_key(b));
        assert_eq!(
            values,
            vec![
                Value::Null,
                Value::Text("B".into()),
                Value::Text("a".into()),
                Value::Text("b".into()),
                Value::Text("é".into()),
            ]
        );
    }

    #[test]
    fn serializes_to_plain_json() {
        let values = vec![
            Value::Null,
            Value::Int32(5),
            Value::Decimal(Decimal::parse("12.50").unwrap()),
            Value::Bytes(vec![1, 255]),
            Value::Json(r#"{"a":[1]}"#.into()),
            Value::Text("é".into()),
        ];
        assert_eq!(
            serde_json::to_string(&values).unwrap(),
            r#"[null,5,"12.5","\\x01ff",{"a":[1]},"é"]"#
        );
    }

    #[test]
    fn negative_zero_hashes_like_zero() {
        assert_eq!(enc(&Value::Float64(-0.0)), enc(&Value::Float64(0.0)));
        assert_eq!(enc(&Value::Float32(1.5)), enc(&Value::Float64(1.5)));
    }
}
