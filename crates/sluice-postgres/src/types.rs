//! PostgreSQL dialect facts: identifier and literal quoting, native type ↔ [`DataType`] (a table of
//! data, [`NATIVE_TYPES`]), the DDL type of each data type, and typed literals for statements that
//! take no parameters (COPY).
//!
//! Native types are spelled the way `format_type()` spells them (`numeric(12,2)`, `character
//! varying(64)`, `timestamp(3) with time zone`); introspection reports that spelling as a column's
//! `native_type`, and the raw COPY format names columns by it.
//!
//! Decisions worth knowing:
//! * `character(n)` (`bpchar`) maps to `varchar(n)`: values are read exactly as PostgreSQL returns
//!   them, blank-padded to `n` characters; written values are padded by PostgreSQL.
//! * `json` and `jsonb` both map to `json`; created tables use `jsonb`.
//! * Types with no row here (arrays, `timetz`, `interval`, geometry, enums, …) are an error naming the
//!   table, column and native type, never text by accident.
//! * Dates and timestamps before year 1 (BC) and ±infinity cannot be carried: reading one is a
//!   `Data` error, and so is writing a date before year 1.

use std::borrow::Cow;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use sluice_connector::ConnectorError;
use sluice_model::condition::SqlDialect;
use sluice_model::{Condition, DataType, SchemaName, TableRef, Value};

/// A row filter as PostgreSQL reads it: the condition parsed in PostgreSQL's dialect and rendered
/// back; refused when it is not one safe expression there.
pub(crate) fn filter_sql(filter: &Condition) -> Result<Cow<'_, str>, ConnectorError> {
    Ok(filter.sql(SqlDialect::Postgresql)?)
}

/// Quotes an identifier: `"name"`, with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quotes a string literal. Text with a backslash uses the `E'…'` form with backslashes doubled,
/// so the literal means the same whatever `standard_conforming_strings` is.
pub fn quote_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    if text.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The schema a table lives in: its own, or the location's default.
pub fn schema_of<'a>(table: &'a TableRef, default_schema: &'a SchemaName) -> &'a str {
    table.schema.as_ref().unwrap_or(default_schema).as_str()
}

/// Quotes a table reference, always schema-qualified: `"schema"."name"`.
pub fn quote_table(table: &TableRef, default_schema: &SchemaName) -> String {
    format!(
        "{}.{}",
        quote_ident(schema_of(table, default_schema)),
        quote_ident(table.name.as_str())
    )
}

/// How values of a native type travel in binary COPY (the type's `send`/`recv` format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// 1 byte, 0 or 1.
    Bool,
    /// Big-endian `i16`.
    Int2,
    /// Big-endian `i32`.
    Int4,
    /// Big-endian `i64`.
    Int8,
    /// Big-endian IEEE 754 single.
    Float4,
    /// Big-endian IEEE 754 double.
    Float8,
    /// `ndigits, weight, sign, dscale` and base-10000 digits.
    Numeric,
    /// UTF-8 text (`text`, `varchar`, `bpchar`).
    Text,
    /// The bytes.
    Bytea,
    /// `i32` days since 2000-01-01.
    Date,
    /// `i64` microseconds since midnight.
    Time,
    /// `i64` microseconds since 2000-01-01 00:00:00.
    Timestamp,
    /// `i64` microseconds since 2000-01-01 00:00:00 UTC.
    TimestampTz,
    /// UTF-8 JSON text.
    Json,
    /// A version byte (1) and UTF-8 JSON text.
    Jsonb,
    /// 16 bytes.
    Uuid,
}

/// How a native type's arguments (`(n)`, `(p,s)`) are read.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// Arguments, if any, do not change the data type (`time(3)` is a `time`).
    Plain(DataType),
    /// `(n)` gives `varchar(n)`; without it, `text`.
    Chars,
    /// `(p[,s])` gives `decimal(p,s)`; without it, `numeric`.
    Decimal,
}

/// One row of the type table.
#[derive(Debug, Clone, Copy)]
pub struct NativeType {
    /// The base name as `format_type()` writes it, arguments removed.
    pub name: &'static str,
    /// How its arguments are read.
    pub shape: Shape,
    /// How its values travel.
    pub wire: Wire,
}

const fn native(name: &'static str, shape: Shape, wire: Wire) -> NativeType {
    NativeType { name, shape, wire }
}

/// The type table: every native type sluice carries, by `format_type()` base name.
pub const NATIVE_TYPES: &[NativeType] = &[
    native("boolean", Shape::Plain(DataType::Bool), Wire::Bool),
    native("smallint", Shape::Plain(DataType::Int16), Wire::Int2),
    native("integer", Shape::Plain(DataType::Int32), Wire::Int4),
    native("bigint", Shape::Plain(DataType::Int64), Wire::Int8),
    native("real", Shape::Plain(DataType::Float32), Wire::Float4),
    native(
        "double precision",
        Shape::Plain(DataType::Float64),
        Wire::Float8,
    ),
    native("numeric", Shape::Decimal, Wire::Numeric),
    native("text", Shape::Plain(DataType::Text), Wire::Text),
    native("character varying", Shape::Chars, Wire::Text),
    native("character", Shape::Chars, Wire::Text),
    native("bpchar", Shape::Chars, Wire::Text),
    native("bytea", Shape::Plain(DataType::Bytes), Wire::Bytea),
    native("date", Shape::Plain(DataType::Date), Wire::Date),
    native(
        "time without time zone",
        Shape::Plain(DataType::Time),
        Wire::Time,
    ),
    native(
        "timestamp without time zone",
        Shape::Plain(DataType::Timestamp),
        Wire::Timestamp,
    ),
    native(
        "timestamp with time zone",
        Shape::Plain(DataType::TimestampTz),
        Wire::TimestampTz,
    ),
    native("json", Shape::Plain(DataType::Json), Wire::Json),
    native("jsonb", Shape::Plain(DataType::Json), Wire::Jsonb),
    native("uuid", Shape::Plain(DataType::Uuid), Wire::Uuid),
];

/// A native type understood: how its values travel, its natural data type, and what limits it puts
/// on values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgType {
    /// How values travel.
    pub wire: Wire,
    /// The data type values read as unless another is asked for.
    pub data_type: DataType,
    /// Fractional-second digits kept by `time(p)`/`timestamp(p)` (6 without a precision).
    pub fraction_digits: u8,
}

/// Reads a `format_type()` spelling; `None` for types sluice does not carry.
pub fn pg_type(native_type: &str) -> Option<PgType> {
    let text = native_type.trim();
    if text.ends_with(']') {
        return None; // arrays
    }
    let (base, args) = match text.find('(') {
        Some(open) => {
            let close = open + text[open..].find(')')?;
            let args: Option<Vec<u32>> = text[open + 1..close]
                .split(',')
                .map(|a| a.trim().parse().ok())
                .collect();
            let base = format!("{}{}", &text[..open], &text[close + 1..]);
            (base, Some(args?))
        }
        None => (text.to_owned(), None),
    };
    let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
    let row = NATIVE_TYPES.iter().find(|t| t.name == base)?;
    let to_u16 = |n: u32| u16::try_from(n).ok();
    let data_type = match (row.shape, args.as_deref()) {
        (Shape::Plain(ty), _) => ty,
        (Shape::Chars, None) => DataType::Text,
        (Shape::Chars, Some([n])) => DataType::varchar(*n).ok()?,
        (Shape::Decimal, None) => DataType::Numeric,
        (Shape::Decimal, Some([p])) => DataType::decimal(to_u16(*p)?, 0).ok()?,
        (Shape::Decimal, Some([p, s])) => DataType::decimal(to_u16(*p)?, to_u16(*s)?).ok()?,
        _ => return None,
    };
    let fraction_digits = match (row.wire, args.as_deref()) {
        (Wire::Time | Wire::Timestamp | Wire::TimestampTz, Some([p])) if *p < 6 => *p as u8,
        _ => 6,
    };
    Some(PgType {
        wire: row.wire,
        data_type,
        fraction_digits,
    })
}

/// The type sluice gives a column of `ty` when it creates a table, spelled as `format_type()`
/// spells it.
pub fn ddl_type(ty: DataType) -> String {
    match ty {
        DataType::Bool => "boolean".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Numeric => "numeric".into(),
        DataType::Decimal { precision, scale } => format!("numeric({precision},{scale})"),
        DataType::Text => "text".into(),
        DataType::Varchar(n) => format!("character varying({n})"),
        DataType::Bytes => "bytea".into(),
        DataType::Date => "date".into(),
        DataType::Time => "time without time zone".into(),
        DataType::Timestamp => "timestamp without time zone".into(),
        DataType::TimestampTz => "timestamp with time zone".into(),
        DataType::Json => "jsonb".into(),
        DataType::Uuid => "uuid".into(),
    }
}

/// The name of the raw encoding of rows of these native types, in order.
pub fn raw_format_name<'a>(native_types: impl IntoIterator<Item = &'a str>) -> String {
    let types: Vec<&str> = native_types.into_iter().collect();
    format!("postgresql-binary-copy:{}", types.join(","))
}

/// `YYYY-MM-DD`, for literals.
fn date_text(d: &NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn time_text(t: &NaiveTime) -> String {
    t.format("%H:%M:%S%.6f").to_string()
}

fn timestamp_text(ts: &NaiveDateTime) -> String {
    ts.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// `150::bigint`; negative numbers quoted (`'-5'::bigint`) so that the cast applies to the whole
/// number (`-9223372036854775808::bigint` would cast the positive part first and overflow).
fn number(negative: bool, v: &impl std::fmt::Display, cast: &str) -> String {
    if negative {
        format!("'{v}'::{cast}")
    } else {
        format!("{v}::{cast}")
    }
}

/// The settings a checksum session runs with, so that every column's text form (the canonical
/// form a row checksum hashes) depends on the value alone: timestamps with time zone in UTC, ISO
/// dates and intervals, shortest exact floats, hex bytea. And the plan: the planner guesses a
/// group per key for the part number a checksum groups by (at most 33 parts), and would sort
/// every row to disk before aggregating; without sorts it aggregates in a hash table. JIT
/// compiling costs more than it saves on one pass over the rows.
pub const CHECKSUM_SETTINGS: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
     SET IntervalStyle = 'iso_8601'; SET extra_float_digits = 1; SET bytea_output = 'hex'; \
     SET enable_sort = off; SET jit = off";

/// The name of the row checksum, part of every checksum dialect: the sum over the rows of
/// `hash_record_extended(ROW(terms…), 0)` (PostgreSQL 14 and later), where each column's term
/// is the column itself when its type's hash tells apart exactly the values sluice tells apart
/// (see [`row_hash_term`]), else its text form in the "C" collation. The per-type extended
/// hashes are the ones hash partitioning keeps stable across versions.
pub const CHECKSUM_NAME: &str = "postgresql/hash_record_extended/v2";

/// The term a column contributes to the row hash. A type's own hash is used when equal hashes
/// mean equal values as sluice reads them: integers, floats read as wide a float (the hash makes
/// -0 and 0 equal, and every NaN, as sluice's row compare does), numerics read as decimals
/// (`1.0` and `1.00`, equal to both), bytes, dates, times, timestamps, uuids, and jsonb read as
/// JSON (its hash goes by value: keys in any order, numbers by value, as sluice's canonical JSON
/// does). Text is hashed byte by byte in the "C" collation, so a case-insensitive collation
/// cannot make `a` and `A` equal. Everything else, json among it (kept as written), is hashed as
/// its text form, which tells apart at least what sluice tells apart.
pub fn row_hash_term(quoted: &str, native_type: &str, data_type: DataType) -> String {
    use DataType as D;
    let Some(wire) = pg_type(native_type).map(|t| t.wire) else {
        return format!("{quoted}::text COLLATE \"C\"");
    };
    match (wire, data_type) {
        (Wire::Text, D::Text | D::Varchar(_)) => format!("{quoted} COLLATE \"C\""),
        (Wire::Bool, D::Bool)
        | (Wire::Int2 | Wire::Int4 | Wire::Int8, D::Int16 | D::Int32 | D::Int64)
        | (Wire::Float4, D::Float32 | D::Float64)
        | (Wire::Float8, D::Float64)
        | (Wire::Numeric, D::Numeric | D::Decimal { .. })
        | (Wire::Bytea, D::Bytes)
        | (Wire::Date, D::Date)
        | (Wire::Time, D::Time)
        | (Wire::Timestamp, D::Timestamp)
        | (Wire::TimestampTz, D::TimestampTz)
        | (Wire::Uuid, D::Uuid)
        | (Wire::Jsonb, D::Json) => quoted.to_owned(),
        _ => format!("{quoted}::text COLLATE \"C\""),
    }
}

/// The per-row hash of the terms [`row_hash_term`] made.
pub fn row_hash_sql(terms: &[String]) -> String {
    format!("hash_record_extended(ROW({}), 0)", terms.join(", "))
}

/// Whether PostgreSQL orders keys of this type the way [`Value::cmp_key`] does (text with
/// `COLLATE "C"`), so that a key range means the same rows to both.
pub fn orderable_key(ty: DataType) -> bool {
    !matches!(ty, DataType::Float32 | DataType::Float64 | DataType::Json)
}

/// A typed SQL literal of `value` (of data type `ty`), for statements that take no parameters.
/// Never built from user SQL; text is quoted by [`quote_literal`].
/// Text and decimals are cast to `text` and `numeric`, never to a length or precision that would
/// cut or round them.
pub fn literal(value: &Value, ty: DataType) -> String {
    let cast = match ty {
        DataType::Varchar(_) => "text".to_owned(),
        DataType::Decimal { .. } => "numeric".to_owned(),
        other => ddl_type(other),
    };
    match value {
        Value::Null => format!("NULL::{cast}"),
        Value::Bool(b) => format!("{b}"),
        Value::Int16(v) => number(*v < 0, v, &cast),
        Value::Int32(v) => number(*v < 0, v, &cast),
        Value::Int64(v) => number(*v < 0, v, &cast),
        Value::Float32(v) => format!("'{v}'::{cast}"),
        Value::Float64(v) => format!("'{v}'::{cast}"),
        Value::Decimal(d) => number(d.is_negative(), d, &cast),
        Value::Text(s) => format!("{}::{cast}", quote_literal(s)),
        Value::Json(s) => format!("{}::{cast}", quote_literal(s)),
        Value::Bytes(b) => {
            let mut hex = String::with_capacity(b.len() * 2);
            for byte in b {
                hex.push_str(&format!("{byte:02x}"));
            }
            format!("decode('{hex}', 'hex')")
        }
        Value::Date(d) => format!("'{}'::date", date_text(d)),
        Value::Time(t) => format!("'{}'::time", time_text(t)),
        Value::Timestamp(ts) => format!("'{}'::timestamp", timestamp_text(ts)),
        Value::TimestampTz(ts) => format!("'{}+00'::timestamptz", timestamp_text(&ts.naive_utc())),
        Value::Uuid(u) => format!("'{u}'::uuid"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident(r#"a "b""#), r#""a ""b""""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b"), r"E'a\\b'");
    }

    #[test]
    fn format_type_spellings_map() {
        let cases = [
            ("boolean", DataType::Bool),
            ("smallint", DataType::Int16),
            ("integer", DataType::Int32),
            ("bigint", DataType::Int64),
            ("real", DataType::Float32),
            ("double precision", DataType::Float64),
            ("numeric", DataType::Numeric),
            (
                "numeric(12,2)",
                DataType::Decimal {
                    precision: 12,
                    scale: 2,
                },
            ),
            (
                "numeric(7)",
                DataType::Decimal {
                    precision: 7,
                    scale: 0,
                },
            ),
            ("text", DataType::Text),
            ("character varying(64)", DataType::Varchar(64)),
            ("character varying", DataType::Text),
            ("character(3)", DataType::Varchar(3)),
            ("bpchar", DataType::Text),
            ("bytea", DataType::Bytes),
            ("date", DataType::Date),
            ("time without time zone", DataType::Time),
            ("time(3) without time zone", DataType::Time),
            ("timestamp without time zone", DataType::Timestamp),
            ("timestamp(0) with time zone", DataType::TimestampTz),
            ("json", DataType::Json),
            ("jsonb", DataType::Json),
            ("uuid", DataType::Uuid),
        ];
        for (native, want) in cases {
            assert_eq!(pg_type(native).map(|t| t.data_type), Some(want), "{native}");
        }
        assert_eq!(
            pg_type("timestamp(3) without time zone")
                .unwrap()
                .fraction_digits,
            3
        );
        for unmapped in [
            "integer[]",
            "interval",
            "time with time zone",
            "point",
            "public.citext",
        ] {
            assert!(pg_type(unmapped).is_none(), "{unmapped}");
        }
    }

    #[test]
    fn ddl_types_read_back_as_themselves() {
        for ty in DataType::representatives() {
            assert_eq!(
                pg_type(&ddl_type(ty)).map(|t| t.data_type),
                Some(ty),
                "{ty}"
            );
        }
    }

    #[test]
    fn literals_are_typed() {
        assert_eq!(literal(&Value::Int64(150), DataType::Int64), "150::bigint");
        let d = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        assert_eq!(
            literal(&Value::Date(d), DataType::Date),
            "'2024-01-01'::date"
        );
        assert_eq!(
            literal(&Value::Text("o'k".into()), DataType::Text),
            "'o''k'::text"
        );
        assert_eq!(
            literal(
                &Value::TimestampTz(d.and_hms_opt(0, 0, 1).unwrap().and_utc()),
                DataType::TimestampTz
            ),
            "'2024-01-01 00:00:01.000000+00'::timestamptz"
        );
    }
}
