//! The MariaDB dialect as data: quoting, the native type table (native → [`DataType`]), the DDL
//! table ([`DataType`] → native), and exact value conversions both ways.
//!
//! # Types
//!
//! | native (information_schema `DATA_TYPE`) | [`DataType`] |
//! |---|---|
//! | `tinyint(1)` (`BOOLEAN`) | `bool` |
//! | other `tinyint`, `smallint` | `int16` (`smallint unsigned` → `int32`) |
//! | `mediumint`, `int` | `int32` (`int unsigned` → `int64`) |
//! | `bigint` | `int64` (`bigint unsigned` → `decimal(20,0)`, exact) |
//! | `float` / `double` | `float32` / `float64` |
//! | `decimal(p,s)` | `decimal(p,s)` |
//! | `char(n)`, `varchar(n)` | `varchar(n)` |
//! | `tinytext` … `longtext` | `text` (`json` when a `json_valid` CHECK guards it) |
//! | `varbinary(n)`, `tinyblob` … `longblob` | `bytes` |
//! | `date`, `time`, `datetime` | `date`, `time`, `timestamp` |
//! | `timestamp` | `timestamptz` (sessions run in UTC) |
//! | `uuid`, `binary(16) COMMENT 'sluice:uuid'` | `uuid` |
//!
//! Anything else (`enum`, `set`, `bit`, `year`, `binary(n)`, spatial types …) is refused with an
//! error naming table, column and native type.
//!
//! Types without a faithful MariaDB type are created with a column comment `sluice:<type>` that
//! introspection honours, so that a created table reads back as exactly the types it was made from:
//! `timestamptz` → `DATETIME(6) COMMENT 'sluice:timestamptz'` (a UTC instant; `TIMESTAMP` only
//! reaches 2038), `numeric` and decimals beyond `DECIMAL(65,38)` → `LONGTEXT` holding canonical
//! decimal text, a `text` key column → `VARCHAR(768)` (a `LONGTEXT` cannot be a primary key and a
//! prefix index would not be unique; longer key values are refused, never cut), a `bytes` key column
//! → `VARBINARY(3072)` likewise, and `uuid` → `BINARY(16) COMMENT 'sluice:uuid'`: MariaDB's own
//! `UUID` type refuses values whose variant and version bits it finds inconsistent (such as
//! `01234567-89ab-cdef-0123-456789abcdef`), which sluice must carry all the same. Text columns sluice creates use `utf8mb4_nopad_bin`, so keys are
//! unique and ordered bytewise exactly as [`Value::cmp_key`] orders them.

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use sluice_connector::ConnectorError;
use sluice_model::condition::SqlDialect;
use sluice_model::{Condition, DataType, Decimal, TableRef, Value};

/// A row filter as MariaDB reads it: the condition parsed in MariaDB's dialect and rendered back;
/// refused when it is not one safe expression there.
pub(crate) fn filter_sql(filter: &Condition) -> Result<Cow<'_, str>, ConnectorError> {
    Ok(filter.sql(SqlDialect::Mariadb)?)
}

/// Prefix of the column comments that record a sluice type.
pub const MARKER_PREFIX: &str = "sluice:";
/// The collation of every text column sluice creates: bytewise and without pad-space equality.
pub const TEXT_COLLATION: &str = "utf8mb4_nopad_bin";
/// Longest text key sluice creates (768 × 4 bytes = InnoDB's 3072-byte key limit).
pub const TEXT_KEY_CHARS: u32 = 768;
/// Longest binary key sluice creates.
pub const BYTES_KEY_LEN: u32 = 3072;
/// Largest `DECIMAL` MariaDB has.
pub const MAX_DECIMAL: (u16, u16) = (65, 38);
/// Bytes of a row a created table may spend on `VARCHAR` columns (MariaDB's limit is 65,535 for
/// all columns together); longer declared lengths are stored as `LONGTEXT` with a marker.
const VARCHAR_ROW_BUDGET: u64 = 60_000;

/// Quotes an identifier with backticks.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A string literal (backslashes and quotes escaped, as MariaDB reads them by default).
pub fn quote_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The database a table lives in: its own schema, or the location's database.
pub fn database_of<'a>(table: &'a TableRef, default: &'a str) -> &'a str {
    table.schema.as_ref().map_or(default, |s| s.as_str())
}

/// `` `db`.`table` ``.
pub fn quote_table(table: &TableRef, default_db: &str) -> String {
    format!(
        "{}.{}",
        quote_ident(database_of(table, default_db)),
        quote_ident(table.name.as_str())
    )
}

/// `` `db`.`name` `` for a table next to `table` in the same database.
pub fn quote_sibling(table: &TableRef, default_db: &str, name: &str) -> String {
    format!(
        "{}.{}",
        quote_ident(database_of(table, default_db)),
        quote_ident(name)
    )
}

/// How a column stores its values, which decides how they are written and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// An integer type.
    Int {
        /// Whether it is `UNSIGNED`.
        unsigned: bool,
    },
    /// `FLOAT`.
    Float,
    /// `DOUBLE`.
    Double,
    /// `DECIMAL`.
    Decimal,
    /// Character data (`char`, `varchar`, the `text` family).
    Text {
        /// `CHAR(n)`, which drops trailing blanks.
        fixed: bool,
    },
    /// Binary data (`varbinary`, the `blob` family).
    Bytes,
    /// `DATE`.
    Date,
    /// `TIME`.
    Time,
    /// `DATETIME`.
    DateTime,
    /// `TIMESTAMP` (an instant, shown in the session's zone, here UTC).
    Timestamp,
    /// A UUID: MariaDB's `UUID` type (as text), or `BINARY(16)` marked `sluice:uuid` (raw bytes).
    Uuid {
        /// Whether it is the 16 raw bytes of `BINARY(16)`.
        binary: bool,
    },
}

/// How a native type maps to a [`DataType`].
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Always this type.
    Fixed(DataType),
    /// Signed and unsigned variants differ.
    Signed {
        signed: DataType,
        unsigned: DataType,
    },
    /// `tinyint(1)` is a boolean, any other `tinyint` a small integer.
    TinyInt,
    /// `decimal(p,s)`.
    Decimal,
    /// `varchar(n)` with the declared length.
    Varchar,
}

/// The native type table: information_schema `DATA_TYPE` → storage and mapping.
const NATIVE_TYPES: &[(&str, Storage, Rule)] = &[
    ("tinyint", Storage::Int { unsigned: false }, Rule::TinyInt),
    (
        "smallint",
        Storage::Int { unsigned: false },
        Rule::Signed {
            signed: DataType::Int16,
            unsigned: DataType::Int32,
        },
    ),
    (
        "mediumint",
        Storage::Int { unsigned: false },
        Rule::Fixed(DataType::Int32),
    ),
    (
        "int",
        Storage::Int { unsigned: false },
        Rule::Signed {
            signed: DataType::Int32,
            unsigned: DataType::Int64,
        },
    ),
    (
        "bigint",
        Storage::Int { unsigned: false },
        Rule::Signed {
            signed: DataType::Int64,
            unsigned: DataType::Decimal {
                precision: 20,
                scale: 0,
            },
        },
    ),
    ("float", Storage::Float, Rule::Fixed(DataType::Float32)),
    ("double", Storage::Double, Rule::Fixed(DataType::Float64)),
    ("decimal", Storage::Decimal, Rule::Decimal),
    ("char", Storage::Text { fixed: true }, Rule::Varchar),
    ("varchar", Storage::Text { fixed: false }, Rule::Varchar),
    (
        "tinytext",
        Storage::Text { fixed: false },
        Rule::Fixed(DataType::Text),
    ),
    (
        "text",
        Storage::Text { fixed: false },
        Rule::Fixed(DataType::Text),
    ),
    (
        "mediumtext",
        Storage::Text { fixed: false },
        Rule::Fixed(DataType::Text),
    ),
    (
        "longtext",
        Storage::Text { fixed: false },
        Rule::Fixed(DataType::Text),
    ),
    ("varbinary", Storage::Bytes, Rule::Fixed(DataType::Bytes)),
    ("tinyblob", Storage::Bytes, Rule::Fixed(DataType::Bytes)),
    ("blob", Storage::Bytes, Rule::Fixed(DataType::Bytes)),
    ("mediumblob", Storage::Bytes, Rule::Fixed(DataType::Bytes)),
    ("longblob", Storage::Bytes, Rule::Fixed(DataType::Bytes)),
    ("date", Storage::Date, Rule::Fixed(DataType::Date)),
    ("time", Storage::Time, Rule::Fixed(DataType::Time)),
    (
        "datetime",
        Storage::DateTime,
        Rule::Fixed(DataType::Timestamp),
    ),
    (
        "timestamp",
        Storage::Timestamp,
        Rule::Fixed(DataType::TimestampTz),
    ),
    (
        "uuid",
        Storage::Uuid { binary: false },
        Rule::Fixed(DataType::Uuid),
    ),
];

/// Whether a marker comment may declare a type.
type MarkerCheck = fn(DataType) -> bool;

/// Which sluice types a marker comment may declare on which storage.
const MARKED_TYPES: &[(Storage, MarkerCheck)] = &[
    (Storage::DateTime, |t| t == DataType::TimestampTz),
    (Storage::Text { fixed: false }, |t| {
        matches!(
            t,
            DataType::Numeric | DataType::Decimal { .. } | DataType::Varchar(_) | DataType::Text
        )
    }),
    (Storage::Bytes, |t| t == DataType::Bytes),
];

/// What information_schema says about one column.
#[derive(Debug, Clone, Default)]
pub struct NativeColumn {
    /// Column name.
    pub name: String,
    /// `DATA_TYPE`, lowercase (`varchar`).
    pub data_type: String,
    /// `COLUMN_TYPE` (`varchar(64)`, `int(10) unsigned`).
    pub column_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// `CHARACTER_MAXIMUM_LENGTH`.
    pub max_chars: Option<u64>,
    /// `CHARACTER_OCTET_LENGTH`.
    pub max_bytes: Option<u64>,
    /// `NUMERIC_PRECISION`.
    pub precision: Option<u64>,
    /// `NUMERIC_SCALE`.
    pub scale: Option<u64>,
    /// `CHARACTER_SET_NAME`.
    pub charset: Option<String>,
    /// `COLUMN_COMMENT`.
    pub comment: String,
    /// Whether a `json_valid(col)` CHECK guards the column.
    pub is_json: bool,
    /// Whether the column is generated (not writable).
    pub generated: bool,
    /// Whether an insert may leave it out (default, NULL allowed, auto-increment or generated).
    pub optional: bool,
    /// Position in the primary key, from 1.
    pub key_position: Option<u32>,
}

/// A mapped column: its sluice type and how it stores values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    /// The sluice type.
    pub data_type: DataType,
    /// The storage.
    pub storage: Storage,
    /// Longest value in characters, for character columns.
    pub max_chars: Option<u64>,
    /// Longest value in bytes, for character and binary columns.
    pub max_bytes: Option<u64>,
}

impl NativeColumn {
    /// The sluice type and storage of the column; `Err` with the reason when it has none.
    pub fn codec(&self) -> Result<Codec, String> {
        let unknown = || format!("native type {} has no sluice type", self.column_type);
        if self.data_type == "binary" {
            // BINARY(n) pads values with zero bytes; only sluice's UUID columns are exact.
            return if self.column_type == "binary(16)" && self.marker() == Some(DataType::Uuid) {
                Ok(Codec {
                    data_type: DataType::Uuid,
                    storage: Storage::Uuid { binary: true },
                    max_chars: None,
                    max_bytes: None,
                })
            } else {
                Err(unknown())
            };
        }
        let &(_, storage, rule) = NATIVE_TYPES
            .iter()
            .find(|(name, _, _)| *name == self.data_type)
            .ok_or_else(unknown)?;
        let unsigned = self.column_type.contains("unsigned");
        let storage = match storage {
            Storage::Int { .. } => Storage::Int { unsigned },
            s => s,
        };
        let mut data_type = match rule {
            Rule::Fixed(t) => t,
            Rule::Signed {
                signed,
                unsigned: u,
            } => {
                if unsigned {
                    u
                } else {
                    signed
                }
            }
            Rule::TinyInt => {
                if self.column_type.starts_with("tinyint(1)") && !unsigned {
                    DataType::Bool
                } else {
                    DataType::Int16
                }
            }
            Rule::Decimal => {
                let p = self.precision.ok_or_else(unknown)?;
                let s = self.scale.unwrap_or(0);
                DataType::decimal(p as u16, s as u16).map_err(|e| e.to_string())?
            }
            Rule::Varchar => {
                let n = self.max_chars.ok_or_else(unknown)?;
                DataType::varchar(n as u32).map_err(|e| e.to_string())?
            }
        };
        if let Storage::Text { .. } = storage {
            match self.charset.as_deref() {
                Some("utf8mb4" | "utf8mb3" | "utf8" | "ascii") | None => {}
                Some(other) => {
                    return Err(format!(
                        "native type {} uses character set {other}; sluice reads and writes utf8 text only",
                        self.column_type
                    ));
                }
            }
            if self.is_json && data_type == DataType::Text {
                data_type = DataType::Json;
            }
        }
        if let Some(marked) = self.marker() {
            let allowed = MARKED_TYPES.iter().any(|(s, ok)| {
                let same_storage = match (s, storage) {
                    (Storage::Text { .. }, Storage::Text { fixed }) => !fixed,
                    (a, b) => *a == b,
                };
                same_storage && ok(marked)
            });
            if allowed {
                data_type = marked;
            }
        }
        Ok(Codec {
            data_type,
            storage,
            max_chars: match storage {
                Storage::Text { .. } => self.max_chars,
                _ => None,
            },
            max_bytes: match storage {
                Storage::Text { .. } => self.max_bytes.or(self.max_chars.map(|n| n * 4)),
                Storage::Bytes => self.max_bytes.or(self.max_chars),
                _ => None,
            },
        })
    }

    /// The type a `sluice:<type>` comment declares, if any.
    fn marker(&self) -> Option<DataType> {
        self.comment
            .strip_prefix(MARKER_PREFIX)
            .and_then(|t| t.parse::<DataType>().ok())
    }
}

/// A column as sluice creates it: the type declaration and the marker comment, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDdl {
    /// `VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin`.
    pub decl: String,
    /// `'sluice:<type>'`, quoted.
    pub comment: Option<String>,
}

/// The column definition sluice creates for a column of `ty` (without name and nullability).
/// `in_key` columns must be indexable; `varchar_budget` is what is left of the row's bytes.
pub fn column_ddl(
    ty: DataType,
    in_key: bool,
    varchar_budget: &mut u64,
) -> Result<ColumnDdl, String> {
    let text = |decl: &str| format!("{decl} CHARACTER SET utf8mb4 COLLATE {TEXT_COLLATION}");
    let plain = |decl: &str| ColumnDdl {
        decl: decl.to_owned(),
        comment: None,
    };
    let marked = |decl: String, ty: DataType| ColumnDdl {
        decl,
        comment: Some(quote_literal(&format!("{MARKER_PREFIX}{ty}"))),
    };
    Ok(match ty {
        DataType::Bool => plain("TINYINT(1)"),
        DataType::Int16 => plain("SMALLINT"),
        DataType::Int32 => plain("INT"),
        DataType::Int64 => plain("BIGINT"),
        DataType::Float32 => plain("FLOAT"),
        DataType::Float64 => plain("DOUBLE"),
        DataType::Decimal { precision, scale }
            if precision <= MAX_DECIMAL.0 && scale <= MAX_DECIMAL.1 =>
        {
            plain(&format!("DECIMAL({precision},{scale})"))
        }
        DataType::Numeric | DataType::Decimal { .. } => {
            if in_key {
                return Err(format!(
                    "a {ty} key column has no exact MariaDB type (DECIMAL stops at 65 digits); \
                     declare the key as decimal(p,s) with p <= 65 and s <= 38"
                ));
            }
            marked(text("LONGTEXT"), ty)
        }
        DataType::Varchar(n) => {
            let bytes = u64::from(n) * 4 + 2;
            if in_key || bytes <= *varchar_budget {
                *varchar_budget = varchar_budget.saturating_sub(bytes);
                plain(&text(&format!("VARCHAR({n})")))
            } else {
                marked(text("LONGTEXT"), ty)
            }
        }
        DataType::Text if in_key => {
            *varchar_budget = varchar_budget.saturating_sub(u64::from(TEXT_KEY_CHARS) * 4 + 2);
            marked(text(&format!("VARCHAR({TEXT_KEY_CHARS})")), ty)
        }
        DataType::Text => plain(&text("LONGTEXT")),
        DataType::Bytes if in_key => {
            *varchar_budget = varchar_budget.saturating_sub(u64::from(BYTES_KEY_LEN) + 2);
            marked(format!("VARBINARY({BYTES_KEY_LEN})"), ty)
        }
        DataType::Bytes => plain("LONGBLOB"),
        DataType::Date => plain("DATE"),
        DataType::Time => plain("TIME(6)"),
        DataType::Timestamp => plain("DATETIME(6)"),
        DataType::TimestampTz => marked("DATETIME(6)".into(), ty),
        DataType::Json if in_key => {
            return Err("a json column cannot be part of a MariaDB key".into());
        }
        DataType::Json => plain("JSON"),
        DataType::Uuid => marked("BINARY(16)".into(), ty),
    })
}

/// A fresh budget for [`column_ddl`].
pub fn varchar_budget() -> u64 {
    VARCHAR_ROW_BUDGET
}

/// Whether values of `source` may be written into a column of `target` (each value is still
/// checked to fit).
pub fn accepts(target: DataType, source: DataType) -> bool {
    use DataType as T;
    let exact = |t: DataType| {
        matches!(
            t,
            T::Int16 | T::Int32 | T::Int64 | T::Numeric | T::Decimal { .. }
        )
    };
    let texty = |t: DataType| matches!(t, T::Text | T::Varchar(_) | T::Json);
    match (target, source) {
        (a, b) if a == b => true,
        (a, b) if exact(a) && exact(b) => true,
        (T::Float32 | T::Float64, T::Float32 | T::Float64) => true,
        (a, b) if texty(a) && texty(b) => true,
        (a, T::Uuid) if a.is_text() => true,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Writing values

/// One value ready to be written: validated against its column and in the form MariaDB reads.
#[derive(Debug, Clone, Copy)]
pub enum Field<'a> {
    /// NULL.
    Null,
    /// A signed integer.
    Int(i64),
    /// A double (a float32 widened exactly).
    Double(f64),
    /// Decimal digits (canonical text).
    Digits(&'a str),
    /// Text or bytes, written as they are (escaped in TSV).
    Raw(&'a [u8]),
    /// A date.
    Date(NaiveDate),
    /// A time of day.
    Time(NaiveTime),
    /// A date and time.
    DateTime(NaiveDateTime),
    /// A UUID, written in its hyphenated form.
    Uuid(uuid::Uuid),
}

const MIN_YEAR: i32 = 1000;
const MAX_YEAR: i32 = 9999;

fn check_micros(nanos: u32) -> Result<(), String> {
    if !nanos.is_multiple_of(1000) || nanos >= 1_000_000_000 {
        Err("has a fraction of a second finer than a microsecond (MariaDB keeps 6 digits)".into())
    } else {
        Ok(())
    }
}

fn check_year(year: i32) -> Result<(), String> {
    if (MIN_YEAR..=MAX_YEAR).contains(&year) {
        Ok(())
    } else {
        Err(format!(
            "year {year} is outside {MIN_YEAR}..={MAX_YEAR}, the range MariaDB dates hold"
        ))
    }
}

fn int_range(ty: DataType) -> Option<(i64, i64)> {
    match ty {
        DataType::Int16 => Some((i64::from(i16::MIN), i64::from(i16::MAX))),
        DataType::Int32 => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
        DataType::Int64 => Some((i64::MIN, i64::MAX)),
        _ => None,
    }
}

/// The smallest and largest instants a `TIMESTAMP` column holds.
fn timestamp_range() -> (NaiveDateTime, NaiveDateTime) {
    let lo = NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 1))
        .expect("valid");
    let hi = NaiveDate::from_ymd_opt(2038, 1, 19)
        .and_then(|d| d.and_hms_micro_opt(3, 14, 7, 999_999))
        .expect("valid");
    (lo, hi)
}

/// Checks `value` against its target column and returns what to write; `Err` says why the value
/// cannot be stored exactly (never rounded, truncated or converted silently).
pub fn to_field<'a>(value: &'a Value, codec: &Codec) -> Result<Field<'a>, String> {
    use DataType as T;
    let ty = codec.data_type;
    let mismatch = || format!("a {} value cannot be stored in a {ty} column", kind(value));
    let exact_int = |i: i64| -> Result<Field<'a>, String> {
        match ty {
            T::Int16 | T::Int32 | T::Int64 => {
                let (lo, hi) = int_range(ty).expect("integer types have a range");
                if i < lo || i > hi {
                    return Err(format!("{i} is out of range for {ty}"));
                }
                Ok(Field::Int(i))
            }
            T::Numeric => Ok(Field::Int(i)),
            T::Decimal { precision, scale } => {
                if Decimal::from_i64(i).fits(precision, scale) {
                    Ok(Field::Int(i))
                } else {
                    Err(format!("{i} does not fit {ty}"))
                }
            }
            _ => Err(mismatch()),
        }
    };
    if let Storage::Int { unsigned: true } = codec.storage {
        let negative = match value {
            Value::Int16(v) => *v < 0,
            Value::Int32(v) => *v < 0,
            Value::Int64(v) => *v < 0,
            Value::Decimal(d) => d.is_negative(),
            _ => false,
        };
        if negative {
            return Err("a negative number cannot be stored in an unsigned column".into());
        }
    }
    match value {
        Value::Null => Ok(Field::Null),
        Value::Bool(b) if ty == T::Bool => Ok(Field::Int(i64::from(*b))),
        Value::Int16(v) => exact_int(i64::from(*v)),
        Value::Int32(v) => exact_int(i64::from(*v)),
        Value::Int64(v) => exact_int(*v),
        Value::Decimal(d) => match ty {
            T::Numeric => Ok(Field::Digits(d.as_str())),
            T::Decimal { precision, scale } => {
                if d.fits(precision, scale) {
                    Ok(Field::Digits(d.as_str()))
                } else {
                    Err(format!("{d} does not fit {ty} without rounding"))
                }
            }
            T::Int16 | T::Int32 | T::Int64 => match d.to_i64() {
                Some(i) => exact_int(i),
                None => Err(format!("{d} is not a {ty}")),
            },
            _ => Err(mismatch()),
        },
        Value::Float32(f) => float(f64::from(*f), ty).ok_or_else(mismatch)?,
        Value::Float64(f) => {
            if ty == T::Float32 && f64::from(*f as f32) != *f && f.is_finite() {
                return Err(format!("{f} is not exactly a float32"));
            }
            float(*f, ty).ok_or_else(mismatch)?
        }
        Value::Text(s) | Value::Json(s) if ty.is_text() || ty == T::Json => {
            text(s.as_bytes(), s, codec)
        }
        Value::Uuid(u) if ty == T::Uuid => match codec.storage {
            Storage::Uuid { binary: true } => Ok(Field::Raw(u.as_bytes())),
            _ => Ok(Field::Uuid(*u)),
        },
        Value::Uuid(u) if ty.is_text() => Ok(Field::Uuid(*u)),
        Value::Bytes(b) if ty == T::Bytes => {
            if let Some(max) = codec.max_bytes
                && b.len() as u64 > max
            {
                return Err(format!(
                    "{} bytes are longer than the column's {max}",
                    b.len()
                ));
            }
            Ok(Field::Raw(b))
        }
        Value::Date(d) if ty == T::Date => {
            check_year(d.year())?;
            Ok(Field::Date(*d))
        }
        Value::Time(t) if ty == T::Time => {
            check_micros(t.nanosecond())?;
            Ok(Field::Time(*t))
        }
        Value::Timestamp(ts) if ty == T::Timestamp => {
            check_year(ts.year())?;
            check_micros(ts.nanosecond())?;
            Ok(Field::DateTime(*ts))
        }
        Value::TimestampTz(ts) if ty == T::TimestampTz => {
            let naive = ts.naive_utc();
            check_year(naive.year())?;
            check_micros(naive.nanosecond())?;
            if codec.storage == Storage::Timestamp {
                let (lo, hi) = timestamp_range();
                if naive < lo || naive > hi {
                    return Err(format!(
                        "{} is outside the range of a MariaDB TIMESTAMP column ({lo}..{hi} UTC)",
                        ts.to_rfc3339()
                    ));
                }
            }
            Ok(Field::DateTime(naive))
        }
        _ => Err(mismatch()),
    }
}

fn float<'a>(f: f64, ty: DataType) -> Option<Result<Field<'a>, String>> {
    if !matches!(ty, DataType::Float32 | DataType::Float64) {
        return None;
    }
    if !f.is_finite() {
        return Some(Err(format!(
            "{f} cannot be stored: MariaDB has no NaN or infinity"
        )));
    }
    Some(Ok(Field::Double(f)))
}

fn text<'a>(bytes: &'a [u8], s: &str, codec: &Codec) -> Result<Field<'a>, String> {
    if let Some(max) = codec.max_bytes
        && bytes.len() as u64 > max
    {
        return Err(format!(
            "{} bytes are longer than the column's {max}",
            bytes.len()
        ));
    }
    let limit = match codec.data_type {
        DataType::Varchar(n) => Some(u64::from(n)),
        _ => None,
    };
    for max in [limit, codec.max_chars].into_iter().flatten() {
        if bytes.len() as u64 > max {
            let chars = s.chars().count() as u64;
            if chars > max {
                return Err(format!("{chars} characters are longer than {max}"));
            }
        }
    }
    if codec.storage == (Storage::Text { fixed: true }) && s.ends_with(' ') {
        return Err("a CHAR column would drop the value's trailing blanks".into());
    }
    Ok(Field::Raw(bytes))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Int16(_) => "int16",
        Value::Int32(_) => "int32",
        Value::Int64(_) => "int64",
        Value::Float32(_) => "float32",
        Value::Float64(_) => "float64",
        Value::Decimal(_) => "decimal",
        Value::Text(_) => "text",
        Value::Bytes(_) => "bytes",
        Value::Date(_) => "date",
        Value::Time(_) => "time",
        Value::Timestamp(_) => "timestamp",
        Value::TimestampTz(_) => "timestamptz",
        Value::Json(_) => "json",
        Value::Uuid(_) => "uuid",
    }
}

/// Appends `bytes` to a `LOAD DATA` field: backslash, tab, newline, carriage return and NUL escaped.
fn put_escaped(out: &mut BytesMut, bytes: &[u8]) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            0 => b"\\0",
            _ => continue,
        };
        out.put_slice(&bytes[start..i]);
        out.put_slice(escaped);
        start = i + 1;
    }
    out.put_slice(&bytes[start..]);
}

fn put_date(out: &mut BytesMut, d: NaiveDate) {
    let _ = write!(out, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day());
}

fn put_time(out: &mut BytesMut, t: NaiveTime) {
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}.{:06}",
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 1000
    );
}

/// Appends one field in `LOAD DATA` text form (`\N` for NULL).
pub fn put_tsv(out: &mut BytesMut, field: Field<'_>) {
    match field {
        Field::Null => out.put_slice(b"\\N"),
        Field::Int(i) => {
            let _ = write!(out, "{i}");
        }
        // `{:e}` prints the fewest digits that read back as the same double.
        Field::Double(f) => {
            let _ = write!(out, "{f:e}");
        }
        Field::Digits(d) => out.put_slice(d.as_bytes()),
        Field::Raw(b) => put_escaped(out, b),
        Field::Date(d) => put_date(out, d),
        Field::Time(t) => put_time(out, t),
        Field::DateTime(ts) => {
            put_date(out, ts.date());
            out.put_u8(b' ');
            put_time(out, ts.time());
        }
        Field::Uuid(u) => {
            let mut buf = uuid::Uuid::encode_buffer();
            out.put_slice(u.hyphenated().encode_lower(&mut buf).as_bytes());
        }
    }
}

/// The field as a statement parameter (for the INSERT fallback and bounds).
pub fn to_param(field: Field<'_>) -> mysql_async::Value {
    use mysql_async::Value as M;
    let date = |d: NaiveDate, t: NaiveTime| {
        M::Date(
            d.year() as u16,
            d.month() as u8,
            d.day() as u8,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
            t.nanosecond() / 1000,
        )
    };
    match field {
        Field::Null => M::NULL,
        Field::Int(i) => M::Int(i),
        Field::Double(f) => M::Double(f),
        Field::Digits(d) => M::Bytes(d.as_bytes().to_vec()),
        Field::Raw(b) => M::Bytes(b.to_vec()),
        Field::Date(d) => date(d, NaiveTime::MIN),
        Field::Time(t) => M::Time(
            false,
            0,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
            t.nanosecond() / 1000,
        ),
        Field::DateTime(ts) => date(ts.date(), ts.time()),
        Field::Uuid(u) => M::Bytes(u.hyphenated().to_string().into_bytes()),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading values

/// Converts a value read over the binary protocol into the requested type, exactly; `Err` says
/// why it cannot be.
pub fn decode(raw: mysql_async::Value, ty: DataType) -> Result<Value, String> {
    use DataType as T;
    use mysql_async::Value as M;
    let mismatch = |what: &str| format!("a MariaDB {what} value cannot be read as {ty}");
    match raw {
        M::NULL => Ok(Value::Null),
        M::Int(i) => from_int(i128::from(i), ty).ok_or_else(|| mismatch("integer"))?,
        M::UInt(u) => from_int(i128::from(u), ty).ok_or_else(|| mismatch("integer"))?,
        M::Float(f) => match ty {
            T::Float32 => Ok(Value::Float32(f)),
            T::Float64 => Ok(Value::Float64(f64::from(f))),
            _ => Err(mismatch("float")),
        },
        M::Double(f) => match ty {
            T::Float64 => Ok(Value::Float64(f)),
            T::Float32 if f64::from(f as f32) == f => Ok(Value::Float32(f as f32)),
            T::Float32 => Err(format!("{f} is not exactly a float32")),
            _ => Err(mismatch("double")),
        },
        M::Bytes(bytes) => from_bytes(bytes, ty),
        M::Date(y, mo, d, h, mi, s, us) => {
            if y == 0 || mo == 0 || d == 0 {
                return Err("is a zero date, which is no date at all".into());
            }
            let date = NaiveDate::from_ymd_opt(i32::from(y), u32::from(mo), u32::from(d))
                .ok_or_else(|| format!("{y:04}-{mo:02}-{d:02} is not a valid date"))?;
            let time = NaiveTime::from_hms_micro_opt(u32::from(h), u32::from(mi), u32::from(s), us)
                .ok_or_else(|| "has an invalid time of day".to_string())?;
            match ty {
                T::Date if time == NaiveTime::MIN => Ok(Value::Date(date)),
                T::Date => Err("has a time of day, so it is not a date".into()),
                T::Timestamp => Ok(Value::Timestamp(date.and_time(time))),
                T::TimestampTz => Ok(Value::TimestampTz(
                    DateTime::<Utc>::from_naive_utc_and_offset(date.and_time(time), Utc),
                )),
                _ => Err(mismatch("date")),
            }
        }
        M::Time(negative, days, h, mi, s, us) => {
            if ty != T::Time {
                return Err(mismatch("time"));
            }
            if negative || days > 0 {
                return Err("is a duration outside 00:00:00..24:00:00, not a time of day".into());
            }
            NaiveTime::from_hms_micro_opt(u32::from(h), u32::from(mi), u32::from(s), us)
                .map(Value::Time)
                .ok_or_else(|| "is not a valid time of day".into())
        }
    }
}

fn from_int(i: i128, ty: DataType) -> Option<Result<Value, String>> {
    use DataType as T;
    let out_of_range = || Err(format!("{i} is out of range for {ty}"));
    Some(match ty {
        T::Bool => match i {
            0 => Ok(Value::Bool(false)),
            1 => Ok(Value::Bool(true)),
            _ => Err(format!("{i} is not a boolean (0 or 1)")),
        },
        T::Int16 => i16::try_from(i)
            .map(Value::Int16)
            .or_else(|_| out_of_range()),
        T::Int32 => i32::try_from(i)
            .map(Value::Int32)
            .or_else(|_| out_of_range()),
        T::Int64 => i64::try_from(i)
            .map(Value::Int64)
            .or_else(|_| out_of_range()),
        T::Numeric | T::Decimal { .. } => {
            let d = Decimal::parse(&i.to_string()).expect("integers are decimals");
            check_decimal(d, ty)
        }
        _ => return None,
    })
}

fn check_decimal(d: Decimal, ty: DataType) -> Result<Value, String> {
    match ty {
        DataType::Decimal { precision, scale } if !d.fits(precision, scale) => {
            Err(format!("{d} does not fit {ty}"))
        }
        _ => Ok(Value::Decimal(d)),
    }
}

fn from_bytes(bytes: Vec<u8>, ty: DataType) -> Result<Value, String> {
    use DataType as T;
    let utf8 = |bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| "is not valid UTF-8 text".to_string())
    };
    match ty {
        T::Bytes => Ok(Value::Bytes(bytes)),
        T::Text => Ok(Value::Text(utf8(bytes)?)),
        T::Varchar(n) => {
            let s = utf8(bytes)?;
            if s.len() > n as usize && s.chars().count() > n as usize {
                return Err(format!("is longer than {n} characters"));
            }
            Ok(Value::Text(s))
        }
        T::Json => Ok(Value::Json(utf8(bytes)?)),
        T::Numeric | T::Decimal { .. } | T::Int16 | T::Int32 | T::Int64 => {
            let s = utf8(bytes)?;
            let d = Decimal::parse(&s).map_err(|_| "is not a decimal number".to_string())?;
            match ty {
                T::Numeric | T::Decimal { .. } => check_decimal(d, ty),
                _ => match d.to_i64() {
                    Some(i) => from_int(i128::from(i), ty).expect("integer types convert"),
                    None => Err(format!("{d} is not a {ty}")),
                },
            }
        }
        T::Uuid if bytes.len() == 16 => uuid::Uuid::from_slice(&bytes)
            .map(Value::Uuid)
            .map_err(|_| "is not a UUID".into()),
        T::Uuid => {
            let s = utf8(bytes)?;
            uuid::Uuid::parse_str(&s)
                .map(Value::Uuid)
                .map_err(|_| "is not a UUID".into())
        }
        _ => Err(format!(
            "MariaDB text or binary data cannot be read as {ty}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(data_type: &str, column_type: &str) -> NativeColumn {
        NativeColumn {
            name: "c".into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            nullable: true,
            ..NativeColumn::default()
        }
    }

    #[test]
    fn native_types_map_exactly() {
        let ty = |n: NativeColumn| n.codec().map(|c| c.data_type);
        assert_eq!(ty(native("tinyint", "tinyint(1)")), Ok(DataType::Bool));
        assert_eq!(ty(native("tinyint", "tinyint(4)")), Ok(DataType::Int16));
        assert_eq!(ty(native("int", "int(10) unsigned")), Ok(DataType::Int64));
        assert_eq!(
            ty(native("bigint", "bigint(20) unsigned")),
            Ok(DataType::Decimal {
                precision: 20,
                scale: 0
            })
        );
        let mut dt = native("datetime", "datetime(6)");
        dt.comment = "sluice:timestamptz".into();
        assert_eq!(ty(dt), Ok(DataType::TimestampTz));
        let mut lt = native("longtext", "longtext");
        lt.comment = "sluice:decimal(100,50)".into();
        assert_eq!(
            ty(lt.clone()),
            Ok(DataType::Decimal {
                precision: 100,
                scale: 50
            })
        );
        lt.comment = "just a comment".into();
        lt.is_json = true;
        assert_eq!(ty(lt), Ok(DataType::Json));
        let mut dt = native("date", "date");
        dt.comment = "sluice:timestamptz".into();
        assert_eq!(
            ty(dt),
            Ok(DataType::Date),
            "a marker on the wrong storage is ignored"
        );
        let err = native("enum", "enum('a','b')").codec().unwrap_err();
        assert!(err.contains("enum('a','b')"), "{err}");
        let mut latin = native("varchar", "varchar(5)");
        latin.max_chars = Some(5);
        latin.charset = Some("latin1".into());
        assert!(latin.codec().is_err());
    }

    #[test]
    fn ddl_is_exact() {
        let mut budget = varchar_budget();
        let ddl = |ty, key, b: &mut u64| column_ddl(ty, key, b).unwrap();
        let tz = ddl(DataType::TimestampTz, false, &mut budget);
        assert_eq!(
            (tz.decl.as_str(), tz.comment.as_deref()),
            ("DATETIME(6)", Some("'sluice:timestamptz'"))
        );
        let numeric = ddl(DataType::Numeric, false, &mut budget);
        assert_eq!(
            (numeric.decl.as_str(), numeric.comment.as_deref()),
            (
                "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin",
                Some("'sluice:numeric'")
            )
        );
        assert_eq!(
            ddl(
                DataType::Decimal {
                    precision: 65,
                    scale: 30
                },
                false,
                &mut budget
            )
            .decl,
            "DECIMAL(65,30)"
        );
        assert!(
            ddl(DataType::Text, true, &mut budget)
                .decl
                .starts_with("VARCHAR(768)")
        );
        assert!(column_ddl(DataType::Numeric, true, &mut budget).is_err());
        let mut small = 100;
        assert!(
            ddl(DataType::Varchar(64), false, &mut small)
                .decl
                .starts_with("LONGTEXT")
        );
        let mut uuid = native("binary", "binary(16)");
        uuid.comment = "sluice:uuid".into();
        assert_eq!(uuid.codec().map(|c| c.data_type), Ok(DataType::Uuid));
    }

    #[test]
    fn tsv_escapes_and_formats() {
        let mut out = BytesMut::new();
        put_tsv(&mut out, Field::Raw(b"a\tb\nc\\d\0e\rf"));
        assert_eq!(&out[..], b"a\\tb\\nc\\\\d\\0e\\rf");
        out.clear();
        put_tsv(&mut out, Field::Double(f64::from(f32::MAX)));
        let back: f64 = std::str::from_utf8(&out).unwrap().parse().unwrap();
        assert_eq!(back as f32, f32::MAX);
        assert!(back <= f64::from(f32::MAX));
    }

    #[test]
    fn values_are_checked_never_altered() {
        let codec = |data_type| Codec {
            data_type,
            storage: Storage::Text { fixed: false },
            max_chars: None,
            max_bytes: None,
        };
        let date = Value::Date(NaiveDate::from_ymd_opt(999, 12, 31).unwrap());
        let mut c = codec(DataType::Date);
        c.storage = Storage::Date;
        assert!(to_field(&date, &c).unwrap_err().contains("999"));
        let d = Value::Decimal(Decimal::parse("1.234").unwrap());
        let c = codec(DataType::Decimal {
            precision: 12,
            scale: 2,
        });
        assert!(to_field(&d, &c).is_err());
        let long = Value::Text("é".repeat(5));
        assert!(to_field(&long, &codec(DataType::Varchar(4))).is_err());
        assert!(to_field(&long, &codec(DataType::Varchar(5))).is_ok());
        assert!(to_field(&Value::Float64(f64::NAN), &codec(DataType::Float64)).is_err());
        assert!(to_field(&Value::Int64(70000), &codec(DataType::Int16)).is_err());
    }

    #[test]
    fn decoding_is_exact() {
        use mysql_async::Value as M;
        assert_eq!(
            decode(M::Bytes(b"12.50".to_vec()), DataType::Numeric),
            Ok(Value::Decimal(Decimal::parse("12.5").unwrap()))
        );
        assert!(decode(M::Date(0, 0, 0, 0, 0, 0, 0), DataType::Date).is_err());
        assert!(decode(M::Int(2), DataType::Bool).is_err());
        assert!(decode(M::Time(true, 0, 1, 0, 0, 0), DataType::Time).is_err());
        assert!(decode(M::Bytes("ééé".into()), DataType::Varchar(2)).is_err());
        assert_eq!(
            decode(M::Date(2024, 1, 2, 3, 4, 5, 6), DataType::TimestampTz)
                .unwrap()
                .to_string(),
            "2024-01-02T03:04:05.000006+00:00"
        );
    }
}

/// Which server a `VERSION()` string comes from (`Class_Flavor`): MariaDB says so in its version
/// (`10.11.6-MariaDB-0+deb12u1`), MySQL does not.
pub fn flavor(version: &str) -> &'static str {
    if version.to_ascii_lowercase().contains("mariadb") {
        "mariadb"
    } else {
        "mysql"
    }
}

#[cfg(test)]
mod flavor_tests {
    #[test]
    fn mariadb_names_itself_in_its_version() {
        assert_eq!(super::flavor("10.11.6-MariaDB-0+deb12u1"), "mariadb");
        assert_eq!(super::flavor("8.0.36"), "mysql");
    }
}

/// The session settings of a checksum: timestamps in UTC, so a `TIMESTAMP` column's text form
/// depends on the value alone.
pub const CHECKSUM_SETTINGS: &str = "SET time_zone = '+00:00'";

/// The name of the row checksum, part of every checksum dialect: the sum of the first 64 bits of
/// `MD5(CONCAT_WS(',', CAST(QUOTE(column) AS BINARY)…))` over the rows. `QUOTE` spells NULL as
/// `NULL` and every value as a quoted literal (so NULL, `''` and `'NULL'` all differ), keeping a
/// decimal's scale; the binary cast joins columns of different collations (which `CONCAT_WS`
/// refuses to mix) as their bytes.
pub const CHECKSUM_NAME: &str = "mariadb/md5(concat_ws(quote))/v2";

/// The per-row hash of `columns` (already quoted), an unsigned 64-bit integer.
pub fn row_hash_sql(columns: &[String]) -> String {
    let quoted: Vec<String> = columns
        .iter()
        .map(|c| format!("CAST(QUOTE({c}) AS BINARY)"))
        .collect();
    format!(
        "CAST(CONV(LEFT(MD5(CONCAT_WS(',', {})), 16), 16, 10) AS UNSIGNED)",
        quoted.join(", ")
    )
}
