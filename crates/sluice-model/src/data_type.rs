//! The engine-neutral column data type.
//!
//! Every connector maps its native types to and from [`DataType`]; the maps are data tables in each
//! connector's `types.rs`. The spelling used in definitions files (`int64`, `decimal(12,2)`,
//! `varchar(64)`) is parsed here, with a table of accepted aliases.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Largest decimal precision accepted (PostgreSQL's NUMERIC limit).
pub const MAX_DECIMAL_PRECISION: u16 = 1000;
/// Largest declared `varchar` length accepted.
pub const MAX_VARCHAR_LEN: u32 = 10_485_760;

/// The data type of a column, independent of any database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// true / false.
    Bool,
    /// 16-bit signed integer.
    Int16,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// IEEE 754 single precision.
    Float32,
    /// IEEE 754 double precision.
    Float64,
    /// Exact decimal of unconstrained precision and scale (PostgreSQL `numeric`, SQLite `NUMERIC`).
    Numeric,
    /// Exact decimal with `precision` significant digits, `scale` of them after the point.
    Decimal {
        /// Total significant digits (1..=1000).
        precision: u16,
        /// Digits after the decimal point (0..=precision).
        scale: u16,
    },
    /// Text of unbounded length.
    Text,
    /// Text of at most this many characters.
    Varchar(u32),
    /// Binary data.
    Bytes,
    /// Calendar date.
    Date,
    /// Time of day without zone.
    Time,
    /// Date and time without zone.
    Timestamp,
    /// An instant in time (stored as UTC).
    TimestampTz,
    /// A JSON document.
    Json,
    /// A 128-bit UUID.
    Uuid,
}

/// A type name that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct DataTypeError {
    reason: String,
}

impl DataTypeError {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// The shape of arguments a type name takes.
#[derive(Clone, Copy)]
enum Args {
    None,
    /// `decimal`, `decimal(p)`, `decimal(p,s)`.
    PrecisionScale,
    /// `varchar(n)`.
    Length,
}

/// Accepted spellings (lowercase) → the type they stand for. The first entry for each type is the
/// canonical spelling that `Display` writes.
const TYPE_NAMES: &[(&str, Args, DataType)] = &[
    ("bool", Args::None, DataType::Bool),
    ("boolean", Args::None, DataType::Bool),
    ("int16", Args::None, DataType::Int16),
    ("smallint", Args::None, DataType::Int16),
    ("int32", Args::None, DataType::Int32),
    ("int", Args::None, DataType::Int32),
    ("integer", Args::None, DataType::Int32),
    ("int64", Args::None, DataType::Int64),
    ("bigint", Args::None, DataType::Int64),
    ("float32", Args::None, DataType::Float32),
    ("real", Args::None, DataType::Float32),
    ("float64", Args::None, DataType::Float64),
    ("double", Args::None, DataType::Float64),
    ("float", Args::None, DataType::Float64),
    ("numeric", Args::PrecisionScale, DataType::Numeric),
    (
        "decimal",
        Args::PrecisionScale,
        DataType::Decimal {
            precision: 0,
            scale: 0,
        },
    ),
    ("text", Args::None, DataType::Text),
    ("string", Args::None, DataType::Text),
    ("varchar", Args::Length, DataType::Varchar(0)),
    ("bytes", Args::None, DataType::Bytes),
    ("binary", Args::None, DataType::Bytes),
    ("blob", Args::None, DataType::Bytes),
    ("bytea", Args::None, DataType::Bytes),
    ("date", Args::None, DataType::Date),
    ("time", Args::None, DataType::Time),
    ("timestamp", Args::None, DataType::Timestamp),
    ("datetime", Args::None, DataType::Timestamp),
    ("timestamptz", Args::None, DataType::TimestampTz),
    ("json", Args::None, DataType::Json),
    ("jsonb", Args::None, DataType::Json),
    ("uuid", Args::None, DataType::Uuid),
];

impl DataType {
    /// Builds a decimal type after checking precision and scale.
    pub fn decimal(precision: u16, scale: u16) -> Result<Self, DataTypeError> {
        if precision == 0 || precision > MAX_DECIMAL_PRECISION {
            return Err(DataTypeError::new(format!(
                "decimal precision {precision} is outside 1..={MAX_DECIMAL_PRECISION}"
            )));
        }
        if scale > precision {
            return Err(DataTypeError::new(format!(
                "decimal scale {scale} exceeds its precision {precision}"
            )));
        }
        Ok(DataType::Decimal { precision, scale })
    }

    /// Builds a varchar type after checking its length.
    pub fn varchar(len: u32) -> Result<Self, DataTypeError> {
        if len == 0 || len > MAX_VARCHAR_LEN {
            return Err(DataTypeError::new(format!(
                "varchar length {len} is outside 1..={MAX_VARCHAR_LEN}"
            )));
        }
        Ok(DataType::Varchar(len))
    }

    /// Every type with representative arguments: what the conformance kit round-trips.
    pub fn representatives() -> Vec<DataType> {
        vec![
            DataType::Bool,
            DataType::Int16,
            DataType::Int32,
            DataType::Int64,
            DataType::Float32,
            DataType::Float64,
            DataType::Numeric,
            DataType::Decimal {
                precision: 12,
                scale: 2,
            },
            DataType::Decimal {
                precision: 38,
                scale: 10,
            },
            DataType::Text,
            DataType::Varchar(64),
            DataType::Bytes,
            DataType::Date,
            DataType::Time,
            DataType::Timestamp,
            DataType::TimestampTz,
            DataType::Json,
            DataType::Uuid,
        ]
    }

    /// Whether values of this type are text (`Text` or `Varchar`).
    pub fn is_text(self) -> bool {
        matches!(self, DataType::Text | DataType::Varchar(_))
    }

    /// Whether values of this type are decimals (`Numeric` or `Decimal`).
    pub fn is_decimal(self) -> bool {
        matches!(self, DataType::Numeric | DataType::Decimal { .. })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            DataType::Varchar(n) => write!(f, "varchar({n})"),
            other => {
                let name = TYPE_NAMES
                    .iter()
                    .find(|(_, _, t)| t == other)
                    .map(|(name, _, _)| *name)
                    .expect("every argument-free type has a TYPE_NAMES entry");
                f.write_str(name)
            }
        }
    }
}

impl FromStr for DataType {
    type Err = DataTypeError;

    fn from_str(text: &str) -> Result<Self, DataTypeError> {
        let compact: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        let (head, args) = match compact.find('(') {
            Some(open) => {
                let Some(inner) = compact[open + 1..].strip_suffix(')') else {
                    return Err(DataTypeError::new(format!(
                        "unbalanced parentheses in data type {text:?}"
                    )));
                };
                (&compact[..open], Some(inner))
            }
            None => (compact.as_str(), None),
        };
        let Some((_, shape, ty)) = TYPE_NAMES.iter().find(|(name, _, _)| *name == head) else {
            return Err(DataTypeError::new(format!("unknown data type {text:?}")));
        };
        let numbers = |inner: &str| -> Result<Vec<u32>, DataTypeError> {
            inner
                .split(',')
                .map(|part| {
                    part.parse::<u32>().map_err(|_| {
                        DataTypeError::new(format!("bad argument {part:?} in data type {text:?}"))
                    })
                })
                .collect()
        };
        match (shape, args) {
            (Args::None, None) => Ok(*ty),
            (Args::None, Some(_)) => Err(DataTypeError::new(format!(
                "data type {head:?} takes no arguments, got {text:?}"
            ))),
            (Args::PrecisionScale, None) => Ok(DataType::Numeric),
            (Args::PrecisionScale, Some(inner)) => {
                let nums = numbers(inner)?;
                let to_u16 = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
                match nums.as_slice() {
                    [p] => DataType::decimal(to_u16(*p), 0),
                    [p, s] => DataType::decimal(to_u16(*p), to_u16(*s)),
                    _ => Err(DataTypeError::new(format!(
                        "data type {text:?} takes (precision) or (precision,scale)"
                    ))),
                }
            }
            (Args::Length, None) => Err(DataTypeError::new(format!(
                "data type {text:?} needs a length, e.g. varchar(64)"
            ))),
            (Args::Length, Some(inner)) => match numbers(inner)?.as_slice() {
                [n] => DataType::varchar(*n),
                _ => Err(DataTypeError::new(format!(
                    "data type {text:?} takes one length"
                ))),
            },
        }
    }
}

impl Serialize for DataType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DataType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_round_trip() {
        for ty in DataType::representatives() {
            let text = ty.to_string();
            assert_eq!(text.parse::<DataType>().unwrap(), ty, "{text}");
        }
    }

    #[test]
    fn aliases_and_spacing() {
        assert_eq!("BIGINT".parse::<DataType>().unwrap(), DataType::Int64);
        assert_eq!(
            "Numeric( 12 , 2 )".parse::<DataType>().unwrap(),
            DataType::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(
            "decimal(5)".parse::<DataType>().unwrap(),
            DataType::Decimal {
                precision: 5,
                scale: 0
            }
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = "inte".parse::<DataType>().unwrap_err();
        assert_eq!(err.to_string(), "unknown data type \"inte\"");
        assert_eq!("decimal".parse::<DataType>().unwrap(), DataType::Numeric);
        assert_eq!(DataType::Numeric.to_string(), "numeric");
        assert!("decimal(3,4)".parse::<DataType>().is_err());
        assert!("decimal(1001)".parse::<DataType>().is_err());
        assert!("varchar(0)".parse::<DataType>().is_err());
        assert!("int(4)".parse::<DataType>().is_err());
        assert!("varchar(10".parse::<DataType>().is_err());
    }
}
