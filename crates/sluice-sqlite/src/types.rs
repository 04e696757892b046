//! SQLite dialect facts: identifier quoting, declared type ↔ [`DataType`], and how values are
//! stored and read back exactly.
//!
//! SQLite stores every value as NULL, INTEGER (64-bit), REAL (double), TEXT or BLOB; a column's
//! declared type only gives it an *affinity* (SQLite manual, "Datatypes In SQLite" §3.1), found by
//! substring: `INT` → INTEGER, `CHAR`/`CLOB`/`TEXT` → TEXT, `BLOB` or none → BLOB,
//! `REAL`/`FLOA`/`DOUB` → REAL, anything else → NUMERIC. NUMERIC affinity turns numeric-looking text
//! into INTEGER or REAL and keeps only 15 significant digits of it, so the declared types sluice
//! creates are chosen by the affinity they give:
//!
//! * `decimal(p,s)` with p ≤ 15 → `DECIMAL(p,s)` (NUMERIC; every such value survives a double, and
//!   SQL on the column compares numbers); p > 15 → `DECIMAL_TEXT(p,s)` (TEXT; exact digits).
//! * `numeric` → `NUMERIC`; a value is written only if it survives SQLite's integer or double exactly,
//!   otherwise the write fails naming table, column and key.
//! * `json` → `JSON_TEXT` (TEXT): NUMERIC affinity would turn the document `1.0` into the integer 1.
//! * dates and times are ISO-8601 text (`2024-02-29 12:34:56.123456`, `+00:00` for instants), which
//!   sorts chronologically and is what SQLite's date functions read.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use sluice_connector::ConnectorError;
use sluice_model::condition::SqlDialect;
use sluice_model::{Condition, DataType, Decimal, TableRef, Value};

/// A row filter as SQLite reads it: the condition parsed in SQLite's dialect and rendered back;
/// refused when it is not one safe expression there.
pub(crate) fn filter_sql(filter: &Condition) -> Result<Cow<'_, str>, ConnectorError> {
    Ok(filter.sql(SqlDialect::Sqlite)?)
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

/// Quotes a string literal: `'text'`, with embedded quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Quotes a table reference: `"schema"."name"` or `"name"`.
pub fn quote_table(table: &TableRef) -> String {
    match &table.schema {
        Some(schema) => format!(
            "{}.{}",
            quote_ident(schema.as_str()),
            quote_ident(table.name.as_str())
        ),
        None => quote_ident(table.name.as_str()),
    }
}

/// The schema qualifier for catalog queries (`"main"` by default).
pub fn quote_schema(table: &TableRef) -> String {
    quote_ident(table.schema.as_ref().map_or("main", |s| s.as_str()))
}

/// How a declared type's arguments are read.
#[derive(Clone, Copy)]
enum Shape {
    /// The type ignores arguments.
    Plain(DataType),
    /// `(n)` gives a varchar length; without it, text.
    Chars,
    /// `(p[,s])` gives a decimal; without it, unconstrained numeric.
    Decimal,
    /// `(p[,s])` gives a decimal stored as text.
    DecimalText,
}

/// Declared type base names (uppercase, arguments removed) → data type.
const DECLARED: &[(&str, Shape)] = &[
    ("BOOLEAN", Shape::Plain(DataType::Bool)),
    ("BOOL", Shape::Plain(DataType::Bool)),
    ("TINYINT", Shape::Plain(DataType::Int16)),
    ("SMALLINT", Shape::Plain(DataType::Int16)),
    ("INT2", Shape::Plain(DataType::Int16)),
    ("INT", Shape::Plain(DataType::Int32)),
    ("INT4", Shape::Plain(DataType::Int32)),
    ("MEDIUMINT", Shape::Plain(DataType::Int32)),
    ("INTEGER", Shape::Plain(DataType::Int64)),
    ("BIGINT", Shape::Plain(DataType::Int64)),
    ("INT8", Shape::Plain(DataType::Int64)),
    ("UNSIGNED BIG INT", Shape::Plain(DataType::Int64)),
    ("FLOAT4", Shape::Plain(DataType::Float32)),
    ("REAL", Shape::Plain(DataType::Float64)),
    ("DOUBLE", Shape::Plain(DataType::Float64)),
    ("DOUBLE PRECISION", Shape::Plain(DataType::Float64)),
    ("FLOAT", Shape::Plain(DataType::Float64)),
    ("FLOAT8", Shape::Plain(DataType::Float64)),
    ("DECIMAL", Shape::Decimal),
    ("NUMERIC", Shape::Decimal),
    ("DECIMAL_TEXT", Shape::DecimalText),
    ("TEXT", Shape::Plain(DataType::Text)),
    ("CLOB", Shape::Plain(DataType::Text)),
    ("STRING", Shape::Plain(DataType::Text)),
    ("CHAR", Shape::Chars),
    ("CHARACTER", Shape::Chars),
    ("VARCHAR", Shape::Chars),
    ("NCHAR", Shape::Chars),
    ("NVARCHAR", Shape::Chars),
    ("VARYING CHARACTER", Shape::Chars),
    ("CHARACTER VARYING", Shape::Chars),
    ("NATIVE CHARACTER", Shape::Chars),
    ("BLOB", Shape::Plain(DataType::Bytes)),
    ("BYTEA", Shape::Plain(DataType::Bytes)),
    ("BINARY", Shape::Plain(DataType::Bytes)),
    ("VARBINARY", Shape::Plain(DataType::Bytes)),
    ("DATE", Shape::Plain(DataType::Date)),
    ("TIME", Shape::Plain(DataType::Time)),
    ("DATETIME", Shape::Plain(DataType::Timestamp)),
    ("TIMESTAMP", Shape::Plain(DataType::Timestamp)),
    ("TIMESTAMPTZ", Shape::Plain(DataType::TimestampTz)),
    (
        "TIMESTAMP WITH TIME ZONE",
        Shape::Plain(DataType::TimestampTz),
    ),
    ("JSON", Shape::Plain(DataType::Json)),
    ("JSONB", Shape::Plain(DataType::Json)),
    ("JSON_TEXT", Shape::Plain(DataType::Json)),
    ("UUID", Shape::Plain(DataType::Uuid)),
];

/// Where SQLite keeps a column's values, which decides how sluice binds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// TEXT affinity: decimals are written as their exact digits.
    Text,
    /// INTEGER, REAL or NUMERIC affinity: decimals are written as a 64-bit integer or a double,
    /// and only if that holds them exactly.
    Number,
    /// BLOB affinity (or none): values are stored as given.
    Any,
}

/// SQLite's affinity rule (manual §3.1), by substring of the declared type.
pub fn storage_of(declared: &str) -> Storage {
    let upper = declared.to_ascii_uppercase();
    if upper.contains("INT") {
        Storage::Number
    } else if upper.contains("CHAR") || upper.contains("CLOB") || upper.contains("TEXT") {
        Storage::Text
    } else if upper.contains("BLOB") || upper.trim().is_empty() {
        Storage::Any
    } else {
        Storage::Number
    }
}

/// The data type of a column declared as `declared`; untyped columns read as text.
/// Returns `None` for declared types sluice does not know (the caller names the column).
pub fn data_type_of(declared: &str) -> Option<DataType> {
    let upper = declared.trim().to_ascii_uppercase();
    if upper.is_empty() {
        return Some(DataType::Text);
    }
    let (base, args) = match upper.find('(') {
        Some(open) => {
            let inner = upper[open + 1..].trim_end().strip_suffix(')')?;
            let args: Option<Vec<u32>> = inner.split(',').map(|a| a.trim().parse().ok()).collect();
            (upper[..open].trim(), Some(args?))
        }
        None => (upper.as_str(), None),
    };
    let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
    let (_, shape) = DECLARED.iter().find(|(name, _)| *name == base)?;
    let to_u16 = |n: u32| u16::try_from(n).ok();
    match (shape, args.as_deref()) {
        (Shape::Plain(ty), _) => Some(*ty),
        (Shape::Chars, None) => Some(DataType::Text),
        (Shape::Chars, Some([n])) => DataType::varchar(*n).ok(),
        (Shape::Decimal | Shape::DecimalText, None) => Some(DataType::Numeric),
        (Shape::Decimal | Shape::DecimalText, Some([p])) => DataType::decimal(to_u16(*p)?, 0).ok(),
        (Shape::Decimal | Shape::DecimalText, Some([p, s])) => {
            DataType::decimal(to_u16(*p)?, to_u16(*s)?).ok()
        }
        _ => None,
    }
}

/// The largest decimal precision stored with NUMERIC affinity; wider decimals are stored as text.
pub const MAX_NUMERIC_AFFINITY_PRECISION: u16 = 15;

/// The declared type sluice gives a column of `ty` when it creates a table.
pub fn declared_type(ty: DataType) -> String {
    match ty {
        DataType::Bool => "BOOLEAN".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "INTEGER".into(),
        DataType::Float32 => "FLOAT4".into(),
        DataType::Float64 => "REAL".into(),
        // An unconstrained decimal may have any number of digits: keep them as text.
        DataType::Numeric => "DECIMAL_TEXT".into(),
        DataType::Decimal { precision, scale } if precision <= MAX_NUMERIC_AFFINITY_PRECISION => {
            format!("DECIMAL({precision},{scale})")
        }
        DataType::Decimal { precision, scale } => format!("DECIMAL_TEXT({precision},{scale})"),
        DataType::Text => "TEXT".into(),
        DataType::Varchar(n) => format!("VARCHAR({n})"),
        DataType::Bytes => "BLOB".into(),
        DataType::Date => "DATE".into(),
        DataType::Time => "TIME".into(),
        DataType::Timestamp => "DATETIME".into(),
        DataType::TimestampTz => "TIMESTAMPTZ".into(),
        DataType::Json => "JSON_TEXT".into(),
        DataType::Uuid => "UUID".into(),
    }
}

fn storage_class(v: &ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "INTEGER",
        ValueRef::Real(_) => "REAL",
        ValueRef::Text(_) => "TEXT",
        ValueRef::Blob(_) => "BLOB",
    }
}

fn text_of<'a>(v: &ValueRef<'a>) -> Option<&'a str> {
    match *v {
        ValueRef::Text(t) => std::str::from_utf8(t).ok(),
        _ => None,
    }
}

/// Integers a double holds exactly: |i| ≤ 2^53.
const F64_EXACT_INT: i64 = 1 << 53;

/// Reads a value of a column with no declared type, which SQLite lets hold any kind of value: it is
/// read as text, so only text may be in it; anything else would change kind on the way (an integer
/// would arrive as text), so it is refused with advice.
pub fn decode_untyped(v: ValueRef<'_>, ty: DataType) -> Result<Value, String> {
    match v {
        ValueRef::Null | ValueRef::Text(_) => decode(v, ty),
        _ if ty != DataType::Text => decode(v, ty),
        other => Err(format!(
            "the column has no declared type and holds a {} value; declare the column's type in the \
             channel (cols) so it is carried as that type",
            storage_class(&other)
        )),
    }
}

/// Reads a stored value as `ty`. The error explains why it cannot be read (without the value).
pub fn decode(v: ValueRef<'_>, ty: DataType) -> Result<Value, String> {
    let wrong = || format!("a {} value cannot be read as {ty}", storage_class(&v));
    if let ValueRef::Null = v {
        return Ok(Value::Null);
    }
    let int_in = |lo: i64, hi: i64| -> Result<i64, String> {
        let i = match v {
            ValueRef::Integer(i) => i,
            ValueRef::Real(r) if r.fract() == 0.0 && r.abs() < 9.2e18 => r as i64,
            ValueRef::Text(_) => text_of(&v)
                .and_then(|t| t.trim().parse::<i64>().ok())
                .ok_or_else(wrong)?,
            _ => return Err(wrong()),
        };
        if i < lo || i > hi {
            return Err(format!("{i} is outside the range of {ty}"));
        }
        Ok(i)
    };
    Ok(match ty {
        DataType::Bool => match v {
            ValueRef::Integer(0) => Value::Bool(false),
            ValueRef::Integer(1) => Value::Bool(true),
            ValueRef::Text(_) => match text_of(&v)
                .map(|t| t.trim().to_ascii_lowercase())
                .as_deref()
            {
                Some("true" | "t" | "1") => Value::Bool(true),
                Some("false" | "f" | "0") => Value::Bool(false),
                _ => return Err(wrong()),
            },
            ValueRef::Integer(i) => return Err(format!("{i} is not a boolean (0 or 1)")),
            _ => return Err(wrong()),
        },
        DataType::Int16 => Value::Int16(int_in(i16::MIN.into(), i16::MAX.into())? as i16),
        DataType::Int32 => Value::Int32(int_in(i32::MIN.into(), i32::MAX.into())? as i32),
        DataType::Int64 => Value::Int64(int_in(i64::MIN, i64::MAX)?),
        DataType::Float32 | DataType::Float64 => {
            let f = match v {
                ValueRef::Real(r) => r,
                ValueRef::Integer(i) if i.abs() <= F64_EXACT_INT => i as f64,
                ValueRef::Integer(i) => return Err(format!("{i} has no exact {ty} value")),
                ValueRef::Text(_) => text_of(&v)
                    .and_then(|t| t.trim().parse::<f64>().ok())
                    .ok_or_else(wrong)?,
                _ => return Err(wrong()),
            };
            if ty == DataType::Float32 {
                let narrow = f as f32;
                if f64::from(narrow) != f && !f.is_nan() {
                    return Err(format!("{f} has no exact float32 value"));
                }
                Value::Float32(narrow)
            } else {
                Value::Float64(f)
            }
        }
        DataType::Numeric | DataType::Decimal { .. } => Value::Decimal(match v {
            ValueRef::Integer(i) => Decimal::from_i64(i),
            ValueRef::Real(r) => {
                Decimal::from_f64(r).ok_or_else(|| format!("{r} is not a number"))?
            }
            ValueRef::Text(_) => text_of(&v)
                .and_then(|t| Decimal::parse(t).ok())
                .ok_or_else(wrong)?,
            _ => return Err(wrong()),
        }),
        DataType::Text | DataType::Varchar(_) => Value::Text(match v {
            ValueRef::Text(t) => String::from_utf8(t.to_vec())
                .map_err(|_| "a TEXT value is not valid UTF-8".to_owned())?,
            ValueRef::Integer(i) => i.to_string(),
            ValueRef::Real(r) => r.to_string(),
            ValueRef::Blob(_) => return Err(wrong()),
            ValueRef::Null => unreachable!("NULL returned above"),
        }),
        DataType::Bytes => Value::Bytes(match v {
            ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
            _ => return Err(wrong()),
        }),
        DataType::Date => Value::Date(
            text_of(&v)
                .and_then(parse_date)
                .ok_or_else(|| not_iso(&v, ty))?,
        ),
        DataType::Time => Value::Time(
            text_of(&v)
                .and_then(parse_time)
                .ok_or_else(|| not_iso(&v, ty))?,
        ),
        DataType::Timestamp => Value::Timestamp(
            text_of(&v)
                .and_then(parse_timestamp)
                .ok_or_else(|| not_iso(&v, ty))?,
        ),
        DataType::TimestampTz => Value::TimestampTz(
            text_of(&v)
                .and_then(parse_timestamptz)
                .ok_or_else(|| not_iso(&v, ty))?,
        ),
        DataType::Json => Value::Json(match v {
            ValueRef::Text(_) => text_of(&v).ok_or_else(wrong)?.to_owned(),
            ValueRef::Integer(i) => i.to_string(),
            ValueRef::Real(r) => r.to_string(),
            _ => return Err(wrong()),
        }),
        DataType::Uuid => Value::Uuid(match v {
            ValueRef::Blob(b) => uuid::Uuid::from_slice(b).map_err(|_| wrong())?,
            ValueRef::Text(_) => text_of(&v)
                .and_then(|t| uuid::Uuid::parse_str(t.trim()).ok())
                .ok_or_else(wrong)?,
            _ => return Err(wrong()),
        }),
    })
}

fn not_iso(v: &ValueRef<'_>, ty: DataType) -> String {
    match v {
        ValueRef::Text(_) => format!("text is not an ISO-8601 {ty}"),
        _ => format!(
            "a {} value cannot be read as {ty} (sluice reads ISO-8601 text)",
            storage_class(v)
        ),
    }
}

/// Reads `n` ASCII digits at `at`.
fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let part = b.get(at..at + n)?;
    part.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// `YYYY-MM-DD` at the start of `b`.
fn date_prefix(b: &[u8]) -> Option<NaiveDate> {
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(b, 0, 4)? as i32, digits(b, 5, 2)?, digits(b, 8, 2)?)
}

/// `HH:MM:SS[.f{1,9}]` at the start of `b`; returns the time and the bytes used.
fn time_prefix(b: &[u8]) -> Option<(NaiveTime, usize)> {
    if b.get(2) != Some(&b':') || b.get(5) != Some(&b':') {
        return None;
    }
    let (h, m, sec) = (digits(b, 0, 2)?, digits(b, 3, 2)?, digits(b, 6, 2)?);
    let mut used = 8;
    let mut nanos = 0u32;
    if b.get(8) == Some(&b'.') {
        let n = b[9..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        nanos = digits(b, 9, n)? * 10u32.pow(9 - n as u32);
        used = 9 + n;
    }
    Some((NaiveTime::from_hms_nano_opt(h, m, sec, nanos)?, used))
}

/// The common spelling `YYYY-MM-DD[ T]HH:MM:SS[.f]`; returns the value and the bytes used.
fn timestamp_prefix(b: &[u8]) -> Option<(NaiveDateTime, usize)> {
    let date = date_prefix(b)?;
    if !matches!(b.get(10), Some(b' ' | b'T')) {
        return None;
    }
    let (time, used) = time_prefix(&b[11..])?;
    Some((date.and_time(time), 11 + used))
}

/// Whether a fraction of a second has more than 9 digits (nanoseconds), which chrono would drop.
fn fraction_too_long(t: &str) -> bool {
    t.split('.')
        .skip(1)
        .any(|after| after.bytes().take_while(u8::is_ascii_digit).count() > 9)
}

fn parse_date(t: &str) -> Option<NaiveDate> {
    let t = t.trim();
    if t.len() == 10
        && let Some(d) = date_prefix(t.as_bytes())
    {
        return Some(d);
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()
}

fn parse_time(t: &str) -> Option<NaiveTime> {
    let t = t.trim();
    if fraction_too_long(t) {
        return None;
    }
    if let Some((time, used)) = time_prefix(t.as_bytes())
        && used == t.len()
    {
        return Some(time);
    }
    NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
        .ok()
}

fn parse_timestamp(t: &str) -> Option<NaiveDateTime> {
    let t = t.trim();
    if fraction_too_long(t) {
        return None;
    }
    if let Some((ts, used)) = timestamp_prefix(t.as_bytes())
        && used == t.len()
    {
        return Some(ts);
    }
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
    .or_else(|| parse_date(t).map(|d| d.and_time(NaiveTime::MIN)))
}

fn parse_timestamptz(t: &str) -> Option<DateTime<Utc>> {
    let t = t.trim();
    if fraction_too_long(t) {
        return None;
    }
    // The fast path: a timestamp then `Z`, `+HH:MM` or `-HH:MM`.
    if let Some((ts, used)) = timestamp_prefix(t.as_bytes()) {
        let zone = &t.as_bytes()[used..];
        let offset_secs = match zone {
            [] | [b'Z'] => Some(0i64),
            [sign @ (b'+' | b'-'), ..] if zone.len() == 6 && zone[3] == b':' => {
                let secs = i64::from(digits(zone, 1, 2)? * 3600 + digits(zone, 4, 2)? * 60);
                Some(if *sign == b'+' { secs } else { -secs })
            }
            _ => None,
        };
        if let Some(offset) = offset_secs {
            return Some((ts - chrono::TimeDelta::seconds(offset)).and_utc());
        }
    }
    // With a zone: `Z`, `+02:00`, `+0200`; without one, the text is taken as UTC.
    let with_zone = t.replace(' ', "T");
    DateTime::parse_from_rfc3339(&with_zone)
        .ok()
        .or_else(|| DateTime::parse_from_str(&with_zone, "%Y-%m-%dT%H:%M:%S%.f%z").ok())
        .map(|d| d.with_timezone(&Utc))
        .or_else(|| parse_timestamp(t).map(|n| n.and_utc()))
}

fn push_digits(out: &mut String, value: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut v = value;
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.push_str(std::str::from_utf8(&buf[..width]).expect("ASCII digits"));
}

/// The fraction of a second as `.ffffff` (or `.fffffffff` when needed); nothing when zero.
fn push_fraction(out: &mut String, nanos: u32) {
    if nanos == 0 {
        return;
    }
    out.push('.');
    if nanos.is_multiple_of(1000) {
        push_digits(out, nanos / 1000, 6);
    } else {
        push_digits(out, nanos, 9);
    }
}

fn push_time(out: &mut String, t: &NaiveTime) {
    push_digits(out, t.hour(), 2);
    out.push(':');
    push_digits(out, t.minute(), 2);
    out.push(':');
    push_digits(out, t.second(), 2);
    push_fraction(out, t.nanosecond());
}

fn push_date(out: &mut String, d: &NaiveDate) {
    match u32::try_from(d.year()) {
        Ok(year) if year <= 9999 => push_digits(out, year, 4),
        // Years outside 0–9999 keep chrono's spelling (a sign, more digits).
        _ => out.push_str(&d.format("%Y").to_string()),
    }
    out.push('-');
    push_digits(out, d.month(), 2);
    out.push('-');
    push_digits(out, d.day(), 2);
}

/// `YYYY-MM-DD`.
pub fn format_date(d: &NaiveDate) -> String {
    let mut out = String::with_capacity(10);
    push_date(&mut out, d);
    out
}

/// `HH:MM:SS[.ffffff]`.
pub fn format_time(t: &NaiveTime) -> String {
    let mut out = String::with_capacity(15);
    push_time(&mut out, t);
    out
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]`.
pub fn format_timestamp(ts: &NaiveDateTime) -> String {
    let mut out = String::with_capacity(32);
    push_date(&mut out, &ts.date());
    out.push(' ');
    push_time(&mut out, &ts.time());
    out
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]+00:00`.
pub fn format_timestamptz(ts: &DateTime<Utc>) -> String {
    let mut out = format_timestamp(&ts.naive_utc());
    out.push_str("+00:00");
    out
}

/// Whether the decimal `d` survives SQLite's INTEGER or REAL storage exactly, and how to bind it.
fn decimal_as_number(d: &Decimal) -> Option<SqlValue> {
    if let Some(i) = d.to_i64() {
        return Some(SqlValue::Integer(i));
    }
    let f = d.to_f64();
    // Up to 15 significant digits survive a double and its shortest printing, as long as the value
    // is within the normal range (tiny values lose digits or underflow); otherwise, check.
    let normal = if f == 0.0 {
        d.significant_digits() == 0
    } else {
        f.abs() >= f64::MIN_POSITIVE * 1e16
    };
    let exact = if d.significant_digits() <= 15 && normal && f.is_finite() {
        true
    } else {
        Decimal::from_f64(f).as_ref() == Some(d)
    };
    exact.then_some(SqlValue::Real(f))
}

/// SQLite stores NaN as NULL.
const NAN_REFUSED: &str = "SQLite cannot store NaN (it would become NULL)";

/// Whether SQLite's NUMERIC affinity would turn `text` into a number that reads back as different
/// text. SQLite converts text that is a well-formed integer or real literal, surrounding blanks
/// allowed (manual, "Datatypes In SQLite" §3); an integer reads back without leading zeros or sign,
/// a real as its shortest form.
fn numeric_affinity_changes(text: &str) -> bool {
    let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let well_formed = !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && exponent.is_none_or(|e| {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        });
    if !well_formed {
        return false;
    }
    let reads_back = match t.parse::<i64>() {
        Ok(i) if !mantissa.contains('.') && exponent.is_none() => i.to_string(),
        _ => match t.parse::<f64>() {
            // An integral real is stored as an integer when it fits.
            Ok(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => (f as i64).to_string(),
            Ok(f) => f.to_string(),
            Err(_) => return true,
        },
    };
    reads_back != text
}

/// The SQLite value to bind for `value` in a column stored as `storage`. Fails when the column
/// cannot hold the value exactly.
pub fn encode(value: &Value, storage: Storage) -> Result<ToSqlOutput<'_>, String> {
    use ToSqlOutput::{Borrowed, Owned};
    Ok(match value {
        Value::Null => Borrowed(ValueRef::Null),
        Value::Bool(b) => Owned(SqlValue::Integer(i64::from(*b))),
        Value::Int16(i) => Owned(SqlValue::Integer(i64::from(*i))),
        Value::Int32(i) => Owned(SqlValue::Integer(i64::from(*i))),
        Value::Int64(i) => Owned(SqlValue::Integer(*i)),
        Value::Float32(f) if f.is_nan() => return Err(NAN_REFUSED.into()),
        Value::Float64(f) if f.is_nan() => return Err(NAN_REFUSED.into()),
        Value::Float32(f) => Owned(SqlValue::Real(f64::from(*f))),
        Value::Float64(f) => Owned(SqlValue::Real(*f)),
        Value::Decimal(d) => match storage {
            Storage::Text | Storage::Any => Borrowed(ValueRef::Text(d.as_str().as_bytes())),
            Storage::Number => Owned(decimal_as_number(d).ok_or_else(|| {
                format!(
                    "the decimal has {} digits, more than SQLite keeps in a number column; declare the \
                     column DECIMAL_TEXT(p,s) (or decimal(p,s) with p > 15) to store it exactly",
                    d.significant_digits()
                )
            })?),
        },
        Value::Text(s) | Value::Json(s) if storage == Storage::Number && numeric_affinity_changes(s) => {
            return Err("the column has numeric affinity, so SQLite would store this text as a number and \
                        change it; declare the column TEXT"
                .into());
        }
        Value::Text(s) | Value::Json(s) => Borrowed(ValueRef::Text(s.as_bytes())),
        Value::Bytes(b) => Borrowed(ValueRef::Blob(b)),
        Value::Date(d) => Owned(SqlValue::Text(format_date(d))),
        Value::Time(t) => Owned(SqlValue::Text(format_time(t))),
        Value::Timestamp(ts) => Owned(SqlValue::Text(format_timestamp(ts))),
        Value::TimestampTz(ts) => Owned(SqlValue::Text(format_timestamptz(ts))),
        Value::Uuid(u) => Owned(SqlValue::Text(u.hyphenated().to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_created_type_introspects_back() {
        for ty in DataType::representatives() {
            assert_eq!(data_type_of(&declared_type(ty)), Some(ty), "{ty}");
        }
    }

    #[test]
    fn declared_types_from_the_wild() {
        assert_eq!(data_type_of("integer"), Some(DataType::Int64));
        assert_eq!(
            data_type_of("VARCHAR ( 255 )"),
            Some(DataType::Varchar(255))
        );
        assert_eq!(
            data_type_of("character varying(10)"),
            Some(DataType::Varchar(10))
        );
        assert_eq!(data_type_of("nvarchar"), Some(DataType::Text));
        assert_eq!(data_type_of(""), Some(DataType::Text));
        assert_eq!(data_type_of("numeric"), Some(DataType::Numeric));
        assert_eq!(
            data_type_of("NUMERIC(10, 3)"),
            Some(DataType::Decimal {
                precision: 10,
                scale: 3
            })
        );
        assert_eq!(data_type_of("GEOMETRY"), None);
        assert_eq!(data_type_of("VARCHAR(x)"), None);
    }

    #[test]
    fn affinity_follows_sqlite_rules() {
        assert_eq!(storage_of("DECIMAL_TEXT(38,10)"), Storage::Text);
        assert_eq!(storage_of("DECIMAL(12,2)"), Storage::Number);
        assert_eq!(storage_of("JSON_TEXT"), Storage::Text);
        assert_eq!(storage_of("POINT"), Storage::Number); // contains INT
        assert_eq!(storage_of(""), Storage::Any);
    }

    #[test]
    fn wide_decimals_are_refused_by_number_columns() {
        let wide = Value::Decimal(Decimal::parse("12345678901234567890.123").unwrap());
        let err = encode(&wide, Storage::Number).unwrap_err();
        assert!(err.contains("23 digits"), "{err}");
        assert!(encode(&wide, Storage::Text).is_ok());
        let float_exact = Value::Decimal(Decimal::parse("0.30000000000000004").unwrap());
        assert!(encode(&float_exact, Storage::Number).is_ok());
    }

    #[test]
    fn timestamps_read_common_spellings() {
        let want = NaiveDate::from_ymd_opt(2024, 2, 29)
            .unwrap()
            .and_hms_micro_opt(12, 34, 56, 500_000)
            .unwrap();
        assert_eq!(parse_timestamp("2024-02-29 12:34:56.5"), Some(want));
        assert_eq!(parse_timestamp("2024-02-29T12:34:56.500000"), Some(want));
        let tz = parse_timestamptz("2024-02-29 14:34:56.5+02:00").unwrap();
        assert_eq!(tz.naive_utc(), want);
        assert_eq!(
            parse_timestamptz("2024-02-29T12:34:56.5Z")
                .unwrap()
                .naive_utc(),
            want
        );
        assert_eq!(
            parse_timestamptz("2024-02-29 12:34:56.5")
                .unwrap()
                .naive_utc(),
            want
        );
        assert_eq!(format_timestamptz(&tz), "2024-02-29 12:34:56.500000+00:00");
        assert_eq!(
            parse_timestamptz("2024-02-29 14:34:56.5-02:00")
                .unwrap()
                .naive_utc(),
            want + chrono::TimeDelta::hours(4)
        );
        assert_eq!(
            parse_timestamptz("2024-02-29T12:34:56+0000")
                .unwrap()
                .naive_utc(),
            want.with_nanosecond(0).unwrap()
        );
        assert_eq!(parse_time("07:08:09.000000123").unwrap().nanosecond(), 123);
        assert_eq!(
            format_time(&NaiveTime::from_hms_nano_opt(7, 8, 9, 123).unwrap()),
            "07:08:09.000000123"
        );
        assert_eq!(
            format_date(&NaiveDate::from_ymd_opt(999, 1, 2).unwrap()),
            "0999-01-02"
        );
        assert!(parse_date("2024-02-30").is_none());
        assert!(parse_timestamp("2024-02-29 25:00:00").is_none());
        // Hand-written and chrono's readings agree on what both accept.
        for text in [
            "2024-02-29 12:34:56",
            "1000-01-01T00:00:00.000001",
            "9999-12-31 23:59:59.999999999",
        ] {
            let fast = timestamp_prefix(text.as_bytes()).unwrap().0;
            let slow =
                NaiveDateTime::parse_from_str(&text.replace('T', " "), "%Y-%m-%d %H:%M:%S%.f")
                    .unwrap();
            assert_eq!(fast, slow, "{text}");
        }
    }

    #[test]
    fn text_that_numeric_affinity_would_change_is_refused() {
        for changed in [
            "007",
            "1e3",
            "12345678901234567890",
            "1.50",
            " 5",
            "+5",
            "-0",
            "0.10",
            "5.0",
        ] {
            assert!(numeric_affinity_changes(changed), "{changed:?}");
            assert!(
                encode(&Value::Text(changed.into()), Storage::Number).is_err(),
                "{changed:?}"
            );
            assert!(encode(&Value::Text(changed.into()), Storage::Text).is_ok());
        }
        for kept in [
            "7", "-12", "1.5", "0.1", "abc", "12a", "", "1e", "0x10", "1.5.1", "- 1",
        ] {
            assert!(!numeric_affinity_changes(kept), "{kept:?}");
        }
        assert!(encode(&Value::Json("1.0".into()), Storage::Number).is_err());
        assert!(encode(&Value::Json(r#"{"a":1}"#.into()), Storage::Number).is_ok());
    }

    #[test]
    fn nan_tiny_decimals_and_long_fractions_are_refused() {
        assert!(
            encode(&Value::Float64(f64::NAN), Storage::Number)
                .unwrap_err()
                .contains("NaN")
        );
        assert!(encode(&Value::Float32(f32::NAN), Storage::Number).is_err());
        assert!(encode(&Value::Float64(f64::INFINITY), Storage::Number).is_ok());
        for tiny in ["1e-400", "1.23456789012345e-318"] {
            let d = Value::Decimal(Decimal::parse(tiny).unwrap());
            assert!(encode(&d, Storage::Number).is_err(), "{tiny}");
        }
        assert!(
            encode(
                &Value::Decimal(Decimal::parse("1.5e-300").unwrap()),
                Storage::Number
            )
            .is_ok()
        );
        assert!(parse_timestamp("2024-01-01 00:00:00.12345678999").is_none());
        assert!(parse_timestamptz("2024-01-01T00:00:00.1234567890Z").is_none());
        assert!(parse_time("00:00:00.1234567891").is_none());
        assert!(parse_timestamp("2024-01-01 00:00:00.123456789").is_some());
    }

    #[test]
    fn untyped_columns_are_read_strictly() {
        assert_eq!(
            decode_untyped(ValueRef::Text(b"x"), DataType::Text).unwrap(),
            Value::Text("x".into())
        );
        assert!(
            decode_untyped(ValueRef::Integer(5), DataType::Text)
                .unwrap_err()
                .contains("declare")
        );
        assert!(decode_untyped(ValueRef::Blob(b"ABC"), DataType::Text).is_err());
        assert_eq!(
            decode_untyped(ValueRef::Integer(5), DataType::Int64).unwrap(),
            Value::Int64(5)
        );
        assert!(
            decode(ValueRef::Blob(b"ABC"), DataType::Text).is_err(),
            "a blob is never read as text"
        );
    }

    #[test]
    fn decode_refuses_lossy_reads() {
        assert!(decode(ValueRef::Integer(70000), DataType::Int16).is_err());
        assert!(decode(ValueRef::Real(0.1), DataType::Float32).is_err());
        assert!(decode(ValueRef::Integer(2), DataType::Bool).is_err());
        assert!(decode(ValueRef::Text(b"abc"), DataType::Int64).is_err());
        assert_eq!(
            decode(ValueRef::Real(5.0), DataType::Int64).unwrap(),
            Value::Int64(5)
        );
        assert_eq!(
            decode(
                ValueRef::Real(12.5),
                DataType::Decimal {
                    precision: 12,
                    scale: 2
                }
            )
            .unwrap(),
            Value::Decimal(Decimal::parse("12.50").unwrap())
        );
    }
}
