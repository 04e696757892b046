//! PostgreSQL's binary COPY format (`COPY … (FORMAT binary)`), both ways, written for speed: a
//! streaming row parser over the byte chunks of `COPY … TO STDOUT`, and a row encoder that appends
//! to one reusable buffer for `COPY … FROM STDIN`.
//!
//! The format (PostgreSQL manual, "COPY", Binary Format): an 11-byte signature, an `i32` flags word
//! and an `i32` header-extension length (plus the extension); then per row an `i16` field count and
//! per field an `i32` length (-1 for NULL) and that many bytes in the type's binary `send` format;
//! finally an `i16` of -1. All integers are big-endian.

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Timelike};
use sluice_model::{DataType, Decimal, Value};

use crate::types::Wire;

/// The signature that starts every binary COPY stream.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Days from 0001-01-01 (CE day 1) to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_CE_DAYS: i32 = 730_120;
/// Microseconds from the Unix epoch to 2000-01-01 00:00:00 UTC.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// Numeric sign words.
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// Appends the stream header.
pub fn write_header(out: &mut BytesMut) {
    out.put_slice(SIGNATURE);
    out.put_i32(0);
    out.put_i32(0);
}

/// Appends the stream trailer.
pub fn write_trailer(out: &mut BytesMut) {
    out.put_i16(-1);
}

/// The length of the header at the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse_header(buf: &[u8]) -> Result<Option<usize>, String> {
    if buf.len() < 19 {
        return Ok(None);
    }
    if &buf[..11] != SIGNATURE {
        return Err("the COPY stream does not start with the binary signature".into());
    }
    let extension = i32::from_be_bytes([buf[15], buf[16], buf[17], buf[18]]);
    let len = 19 + usize::try_from(extension).map_err(|_| "bad COPY header".to_owned())?;
    Ok((buf.len() >= len).then_some(len))
}

/// What the next bytes of a stream hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole row of this many bytes; its field ranges are in the `fields` given to [`parse_row`].
    Row(usize),
    /// The trailer (2 bytes).
    End,
    /// Not a whole row yet.
    Incomplete,
}

/// Parses one row at the start of `buf`, recording each field's byte range (relative to `buf`), or
/// `None` for NULL. Rows must have exactly `width` fields.
pub fn parse_row(
    buf: &[u8],
    width: usize,
    fields: &mut Vec<Option<(usize, usize)>>,
) -> Result<Frame, String> {
    if buf.len() < 2 {
        return Ok(Frame::Incomplete);
    }
    let count = i16::from_be_bytes([buf[0], buf[1]]);
    if count == -1 {
        return Ok(Frame::End);
    }
    if count as usize != width {
        return Err(format!(
            "a COPY row has {count} fields where {width} were asked for"
        ));
    }
    fields.clear();
    let mut pos = 2usize;
    for _ in 0..width {
        let Some(len_bytes) = buf.get(pos..pos + 4) else {
            return Ok(Frame::Incomplete);
        };
        let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        pos += 4;
        if len < 0 {
            fields.push(None);
        } else {
            let end = pos + len as usize;
            if end > buf.len() {
                return Ok(Frame::Incomplete);
            }
            fields.push(Some((pos, end)));
            pos = end;
        }
    }
    Ok(Frame::Row(pos))
}

fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("a field of {} bytes where {N} were expected", b.len()))
}

fn utf8(b: &[u8]) -> Result<String, String> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| "text is not valid UTF-8".to_owned())
}

/// Reads a date (days since 2000-01-01).
pub fn decode_date(days: i32) -> Result<NaiveDate, String> {
    match days {
        i32::MAX => return Err("the date is infinity, which sluice cannot carry".into()),
        i32::MIN => return Err("the date is -infinity, which sluice cannot carry".into()),
        _ => {}
    }
    let date = days
        .checked_add(PG_EPOCH_CE_DAYS)
        .and_then(NaiveDate::from_num_days_from_ce_opt)
        .ok_or_else(|| "the date is outside the range sluice can carry".to_owned())?;
    if date.year() < 1 {
        return Err("the date lies before year 1 (BC), which sluice cannot carry".into());
    }
    Ok(date)
}

/// Reads a timestamp (microseconds since 2000-01-01 00:00:00, UTC for `timestamptz`).
pub fn decode_timestamp(micros: i64) -> Result<DateTime<chrono::Utc>, String> {
    match micros {
        i64::MAX => return Err("the timestamp is infinity, which sluice cannot carry".into()),
        i64::MIN => return Err("the timestamp is -infinity, which sluice cannot carry".into()),
        _ => {}
    }
    let ts = micros
        .checked_add(PG_EPOCH_UNIX_MICROS)
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| "the timestamp is outside the range sluice can carry".to_owned())?;
    if ts.year() < 1 {
        return Err("the timestamp lies before year 1 (BC), which sluice cannot carry".into());
    }
    Ok(ts)
}

/// Reads the binary numeric format as canonical decimal text; NaN and infinities are errors.
/// `text` is scratch space, so that the decimal's own text is the only allocation.
pub fn decode_numeric(b: &[u8], text: &mut String) -> Result<Decimal, String> {
    if b.len() < 8 {
        return Err("a numeric field is too short".into());
    }
    let ndigits = u16::from_be_bytes([b[0], b[1]]) as usize;
    let weight = i16::from_be_bytes([b[2], b[3]]) as i32;
    let sign = u16::from_be_bytes([b[4], b[5]]);
    match sign {
        NUMERIC_NAN => return Err("the numeric value is NaN, which a decimal cannot hold".into()),
        NUMERIC_PINF => {
            return Err("the numeric value is Infinity, which a decimal cannot hold".into());
        }
        NUMERIC_NINF => {
            return Err("the numeric value is -Infinity, which a decimal cannot hold".into());
        }
        NUMERIC_POS | NUMERIC_NEG => {}
        other => {
            return Err(format!(
                "a numeric field has the unknown sign word {other:#x}"
            ));
        }
    }
    if b.len() != 8 + 2 * ndigits {
        return Err("a numeric field has the wrong length".into());
    }
    if ndigits == 0 {
        return Ok(Decimal::from_i64(0));
    }
    let digit = |i: i32| -> u16 {
        if i < 0 || i as usize >= ndigits {
            0
        } else {
            let at = 8 + 2 * i as usize;
            u16::from_be_bytes([b[at], b[at + 1]]).min(9999)
        }
    };
    text.clear();
    if sign == NUMERIC_NEG {
        text.push('-');
    }
    let push4 = |text: &mut String, d: u16, skip_leading: bool| {
        let digits = [d / 1000, d / 100 % 10, d / 10 % 10, d % 10];
        let mut started = !skip_leading;
        for (k, x) in digits.into_iter().enumerate() {
            if started || x != 0 || k == 3 {
                started = true;
                text.push(char::from(b'0' + x as u8));
            }
        }
    };
    if weight < 0 {
        text.push('0');
    } else {
        // The first group without leading zeros, the others padded to four digits.
        push4(text, digit(0), true);
        for i in 1..=weight {
            push4(text, digit(i), false);
        }
    }
    let last = ndigits as i32 - 1;
    if last > weight {
        text.push('.');
        for i in weight + 1..=last {
            push4(text, digit(i), false);
        }
        while text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
    }
    // Canonical already unless the server sent an unnormalised value; parse copes either way.
    Decimal::parse(text).map_err(|e| e.to_string())
}

/// The most digits a PostgreSQL numeric holds before the point (a weight of `i16::MAX` groups of
/// four) and after it (`NUMERIC_DSCALE_MAX`).
const NUMERIC_MAX_INTEGER_DIGITS: u32 = 131_072;
const NUMERIC_MAX_SCALE: u32 = 16_383;

/// Appends the binary numeric format of `d`; `groups` is scratch space. A decimal beyond
/// PostgreSQL's limits is refused (and nothing is appended).
pub fn encode_numeric(
    d: &Decimal,
    out: &mut BytesMut,
    groups: &mut Vec<u16>,
) -> Result<(), String> {
    if d.integer_digits() > NUMERIC_MAX_INTEGER_DIGITS || d.scale() > NUMERIC_MAX_SCALE {
        return Err(format!(
            "a decimal of {} digits before the point and {} after it, beyond the {NUMERIC_MAX_INTEGER_DIGITS} and {NUMERIC_MAX_SCALE} PostgreSQL holds",
            d.integer_digits(),
            d.scale()
        ));
    }
    let text = d.as_str();
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let int = if int == "0" { "" } else { int };
    groups.clear();
    // Integer digits in groups of four counted from the point; the first group may be short.
    let int_bytes = int.as_bytes();
    let mut start = 0;
    let mut size = match int_bytes.len() % 4 {
        0 => 4,
        short => short,
    };
    while start < int_bytes.len() {
        let group = int_bytes[start..start + size]
            .iter()
            .fold(0u16, |acc, &c| acc * 10 + u16::from(c - b'0'));
        groups.push(group);
        start += size;
        size = 4;
    }
    let int_groups = groups.len();
    // Fraction digits in groups of four, the last one padded with zeros.
    let frac_bytes = frac.as_bytes();
    for chunk in frac_bytes.chunks(4) {
        let mut g = 0u16;
        for k in 0..4 {
            g = g * 10 + chunk.get(k).map_or(0, |&c| u16::from(c - b'0'));
        }
        groups.push(g);
    }
    let mut weight = int_groups as i32 - 1;
    // Leading zero groups (values below 1) and trailing zero groups (integers like 10000) go.
    let lead = groups.iter().take_while(|&&g| g == 0).count();
    weight -= lead as i32;
    let end = groups.len() - groups[lead..].iter().rev().take_while(|&&g| g == 0).count();
    let digits = &groups[lead..end.max(lead)];
    let (weight, sign) = if digits.is_empty() {
        (0, NUMERIC_POS)
    } else {
        (weight, if negative { NUMERIC_NEG } else { NUMERIC_POS })
    };
    out.put_i32(8 + 2 * digits.len() as i32);
    out.put_u16(digits.len() as u16);
    out.put_i16(weight as i16);
    out.put_u16(sign);
    out.put_u16(frac.len() as u16);
    for &g in digits {
        out.put_u16(g);
    }
    Ok(())
}

/// Reads one non-NULL field of wire type `wire` as the value it natively is.
/// `scratch` is reused text space for numerics.
pub fn decode_native(wire: Wire, b: &[u8], scratch: &mut String) -> Result<Value, String> {
    Ok(match wire {
        Wire::Bool => Value::Bool(fixed::<1>(b)?[0] != 0),
        Wire::Int2 => Value::Int16(i16::from_be_bytes(fixed(b)?)),
        Wire::Int4 => Value::Int32(i32::from_be_bytes(fixed(b)?)),
        Wire::Int8 => Value::Int64(i64::from_be_bytes(fixed(b)?)),
        Wire::Float4 => Value::Float32(f32::from_be_bytes(fixed(b)?)),
        Wire::Float8 => Value::Float64(f64::from_be_bytes(fixed(b)?)),
        Wire::Numeric => Value::Decimal(decode_numeric(b, scratch)?),
        Wire::Text => Value::Text(utf8(b)?),
        Wire::Bytea => Value::Bytes(b.to_vec()),
        Wire::Date => Value::Date(decode_date(i32::from_be_bytes(fixed(b)?))?),
        Wire::Time => {
            let micros = i64::from_be_bytes(fixed(b)?);
            let time = u32::try_from(micros.div_euclid(1_000_000))
                .ok()
                .and_then(|secs| {
                    NaiveTime::from_num_seconds_from_midnight_opt(
                        secs,
                        (micros.rem_euclid(1_000_000) * 1000) as u32,
                    )
                })
                .ok_or_else(|| format!("the time of day ({micros} µs) is 24:00:00 or beyond, which sluice cannot carry"))?;
            Value::Time(time)
        }
        Wire::Timestamp => {
            Value::Timestamp(decode_timestamp(i64::from_be_bytes(fixed(b)?))?.naive_utc())
        }
        Wire::TimestampTz => Value::TimestampTz(decode_timestamp(i64::from_be_bytes(fixed(b)?))?),
        Wire::Json => Value::Json(utf8(b)?),
        Wire::Jsonb => match b.split_first() {
            Some((1, doc)) => Value::Json(utf8(doc)?),
            Some((v, _)) => return Err(format!("jsonb of unknown format version {v}")),
            None => return Err("an empty jsonb field".into()),
        },
        Wire::Uuid => Value::Uuid(uuid::Uuid::from_bytes(fixed(b)?)),
    })
}

/// Integers a double holds exactly: |i| ≤ 2^53.
const F64_EXACT_INT: i64 = 1 << 53;

fn check_decimal(d: &Decimal, ty: DataType) -> Result<(), String> {
    match ty {
        DataType::Decimal { precision, scale } if !d.fits(precision, scale) => {
            Err(format!("{d} does not fit {ty} without rounding"))
        }
        _ => Ok(()),
    }
}

fn check_chars(s: &str, ty: DataType) -> Result<(), String> {
    match ty {
        DataType::Varchar(n) if s.len() > n as usize && s.chars().count() > n as usize => {
            Err(format!(
                "text of {} characters is longer than {ty}",
                s.chars().count()
            ))
        }
        _ => Ok(()),
    }
}

/// Turns a value read natively into a value of `ty` when that is exact: wider integers, integers as
/// decimals or doubles that hold them, decimals without fraction as integers, decimals and text
/// within a narrower declared precision or length, JSON as text, single as double. Anything else
/// (or a value that would change) is refused with the reason.
pub fn convert(value: Value, ty: DataType) -> Result<Value, String> {
    let out_of_range = |v: &dyn std::fmt::Display| format!("{v} is outside the range of {ty}");
    let int = |i: i64| -> Result<Value, String> {
        Ok(match ty {
            DataType::Int16 => Value::Int16(i16::try_from(i).map_err(|_| out_of_range(&i))?),
            DataType::Int32 => Value::Int32(i32::try_from(i).map_err(|_| out_of_range(&i))?),
            DataType::Int64 => Value::Int64(i),
            DataType::Numeric | DataType::Decimal { .. } => {
                let d = Decimal::from_i64(i);
                check_decimal(&d, ty)?;
                Value::Decimal(d)
            }
            DataType::Float64 if i.abs() <= F64_EXACT_INT => Value::Float64(i as f64),
            DataType::Float32 if i.abs() <= 1 << 24 => Value::Float32(i as f32),
            _ => return Err(format!("{i} has no exact {ty} value")),
        })
    };
    match value {
        Value::Null => Ok(Value::Null),
        Value::Int16(i) => int(i64::from(i)),
        Value::Int32(i) => int(i64::from(i)),
        Value::Int64(i) => int(i),
        Value::Decimal(d) => match ty {
            DataType::Numeric | DataType::Decimal { .. } => {
                check_decimal(&d, ty)?;
                Ok(Value::Decimal(d))
            }
            DataType::Int16 | DataType::Int32 | DataType::Int64 => match d.to_i64() {
                Some(i) => int(i),
                None => Err(format!("{d} has no exact {ty} value")),
            },
            _ => Err(format!("a decimal cannot be read as {ty}")),
        },
        Value::Float32(f) if ty == DataType::Float64 => Ok(Value::Float64(f64::from(f))),
        Value::Float64(f) if ty == DataType::Float32 => {
            let narrow = f as f32;
            if f64::from(narrow) == f || f.is_nan() {
                Ok(Value::Float32(narrow))
            } else {
                Err(format!("{f} has no exact float32 value"))
            }
        }
        Value::Text(s) | Value::Json(s) if ty.is_text() => {
            check_chars(&s, ty)?;
            Ok(Value::Text(s))
        }
        other if other.conforms_to(ty) => Ok(other),
        other => Err(format!(
            "a {} value cannot be read as {ty}",
            kind_name(&other)
        )),
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Bool(_) => "boolean",
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

/// One column as the decoder reads it.
#[derive(Debug, Clone, Copy)]
pub struct ReadColumn {
    /// How values travel.
    pub wire: Wire,
    /// The type values must have.
    pub data_type: DataType,
    /// Whether values need converting or checking (the requested type is not the native one).
    pub convert: bool,
}

impl ReadColumn {
    /// Reads one field (`None` is NULL); `scratch` is reused text space.
    #[inline]
    pub fn decode(&self, field: Option<&[u8]>, scratch: &mut String) -> Result<Value, String> {
        let Some(b) = field else {
            return Ok(Value::Null);
        };
        let v = decode_native(self.wire, b, scratch)?;
        if self.convert {
            convert(v, self.data_type)
        } else {
            Ok(v)
        }
    }
}

/// One target column as the encoder writes it.
#[derive(Debug, Clone, Copy)]
pub struct WriteColumn {
    /// How values travel.
    pub wire: Wire,
    /// The target's type, for limits: `varchar(n)` length, `decimal(p,s)` fit.
    pub data_type: DataType,
    /// Fractional-second digits the target keeps.
    pub fraction_digits: u8,
}

/// Which value kinds a target wire type takes (checked before anything is written).
pub fn accepts(wire: Wire, ty: DataType) -> bool {
    use DataType as T;
    match wire {
        Wire::Bool => ty == T::Bool,
        Wire::Int2 | Wire::Int4 | Wire::Int8 => matches!(
            ty,
            T::Int16 | T::Int32 | T::Int64 | T::Numeric | T::Decimal { .. }
        ),
        Wire::Float4 | Wire::Float8 => matches!(ty, T::Float32 | T::Float64),
        Wire::Numeric => matches!(
            ty,
            T::Int16 | T::Int32 | T::Int64 | T::Numeric | T::Decimal { .. }
        ),
        Wire::Text => ty.is_text(),
        Wire::Bytea => ty == T::Bytes,
        Wire::Date => ty == T::Date,
        Wire::Time => ty == T::Time,
        Wire::Timestamp => ty == T::Timestamp,
        Wire::TimestampTz => ty == T::TimestampTz,
        Wire::Json | Wire::Jsonb => ty == T::Json,
        Wire::Uuid => ty == T::Uuid,
    }
}

fn put_len(out: &mut BytesMut, len: usize) -> Result<(), String> {
    let len = i32::try_from(len).map_err(|_| "a value larger than 2 GiB".to_owned())?;
    out.put_i32(len);
    Ok(())
}

fn sub_micro(nanos: u32) -> Result<u32, String> {
    if nanos >= 1_000_000_000 {
        return Err("a leap second, which PostgreSQL cannot hold".into());
    }
    if !nanos.is_multiple_of(1000) {
        return Err("sub-microsecond digits, which PostgreSQL would round".into());
    }
    Ok(nanos / 1000)
}

fn check_fraction(micros: i64, digits: u8) -> Result<(), String> {
    if digits < 6 && micros.rem_euclid(10i64.pow(6 - u32::from(digits))) != 0 {
        return Err(format!(
            "more fractional-second digits than the {digits} the column keeps"
        ));
    }
    Ok(())
}

fn encode_timestamp(
    ts: &chrono::NaiveDateTime,
    col: &WriteColumn,
    out: &mut BytesMut,
) -> Result<(), String> {
    if ts.year() < 1 {
        return Err("a date before year 1 (BC), which sluice does not carry".into());
    }
    let micros_part = sub_micro(ts.nanosecond())?;
    let micros =
        ts.and_utc().timestamp() * 1_000_000 + i64::from(micros_part) - PG_EPOCH_UNIX_MICROS;
    check_fraction(micros, col.fraction_digits)?;
    out.put_i32(8);
    out.put_i64(micros);
    Ok(())
}

fn int_value(v: &Value) -> Option<i64> {
    match *v {
        Value::Int16(i) => Some(i64::from(i)),
        Value::Int32(i) => Some(i64::from(i)),
        Value::Int64(i) => Some(i),
        _ => None,
    }
}

/// Appends one field: length and value in the target's wire format, after checking that the
/// target holds the value exactly. `groups` is scratch space for numerics.
pub fn encode_value(
    v: &Value,
    col: &WriteColumn,
    out: &mut BytesMut,
    groups: &mut Vec<u16>,
) -> Result<(), String> {
    let mismatch = || {
        format!(
            "a {} value cannot be stored in a {} column",
            kind_name(v),
            col.data_type
        )
    };
    match (col.wire, v) {
        (_, Value::Null) => out.put_i32(-1),
        (Wire::Bool, Value::Bool(b)) => {
            out.put_i32(1);
            out.put_u8(u8::from(*b));
        }
        (Wire::Int2 | Wire::Int4 | Wire::Int8, _) => {
            let i = match v {
                Value::Decimal(d) => d
                    .to_i64()
                    .ok_or_else(|| format!("{d} is not a whole number"))?,
                other => int_value(other).ok_or_else(mismatch)?,
            };
            let range = || format!("{i} is outside the range of {}", col.data_type);
            match col.wire {
                Wire::Int2 => {
                    out.put_i32(2);
                    out.put_i16(i16::try_from(i).map_err(|_| range())?);
                }
                Wire::Int4 => {
                    out.put_i32(4);
                    out.put_i32(i32::try_from(i).map_err(|_| range())?);
                }
                _ => {
                    out.put_i32(8);
                    out.put_i64(i);
                }
            }
        }
        (Wire::Float4, Value::Float32(f)) => {
            out.put_i32(4);
            out.put_f32(*f);
        }
        (Wire::Float4, Value::Float64(f)) => {
            let narrow = *f as f32;
            if f64::from(narrow) != *f && !f.is_nan() {
                return Err(format!("{f} has no exact float32 value"));
            }
            out.put_i32(4);
            out.put_f32(narrow);
        }
        (Wire::Float8, Value::Float64(f)) => {
            out.put_i32(8);
            out.put_f64(*f);
        }
        (Wire::Float8, Value::Float32(f)) => {
            out.put_i32(8);
            out.put_f64(f64::from(*f));
        }
        (Wire::Numeric, Value::Decimal(d)) => {
            check_decimal(d, col.data_type)?;
            encode_numeric(d, out, groups)?;
        }
        (Wire::Numeric, other) => {
            let d = Decimal::from_i64(int_value(other).ok_or_else(mismatch)?);
            check_decimal(&d, col.data_type)?;
            encode_numeric(&d, out, groups)?;
        }
        (Wire::Text, Value::Text(s)) => {
            if s.as_bytes().contains(&0) {
                return Err("text contains a NUL character, which PostgreSQL cannot store".into());
            }
            check_chars(s, col.data_type)?;
            put_len(out, s.len())?;
            out.put_slice(s.as_bytes());
        }
        (Wire::Bytea, Value::Bytes(b)) => {
            put_len(out, b.len())?;
            out.put_slice(b);
        }
        (Wire::Date, Value::Date(d)) => {
            if d.year() < 1 {
                return Err("a date before year 1 (BC), which sluice does not carry".into());
            }
            out.put_i32(4);
            out.put_i32(d.num_days_from_ce() - PG_EPOCH_CE_DAYS);
        }
        (Wire::Time, Value::Time(t)) => {
            let micros = i64::from(t.num_seconds_from_midnight()) * 1_000_000
                + i64::from(sub_micro(t.nanosecond())?);
            check_fraction(micros, col.fraction_digits)?;
            out.put_i32(8);
            out.put_i64(micros);
        }
        (Wire::Timestamp, Value::Timestamp(ts)) => encode_timestamp(ts, col, out)?,
        (Wire::TimestampTz, Value::TimestampTz(ts)) => encode_timestamp(&ts.naive_utc(), col, out)?,
        (Wire::Json, Value::Json(s)) => {
            put_len(out, s.len())?;
            out.put_slice(s.as_bytes());
        }
        (Wire::Jsonb, Value::Json(s)) => {
            put_len(out, s.len() + 1)?;
            out.put_u8(1);
            out.put_slice(s.as_bytes());
        }
        (Wire::Uuid, Value::Uuid(u)) => {
            out.put_i32(16);
            out.put_slice(u.as_bytes());
        }
        _ => return Err(mismatch()),
    }
    Ok(())
}

/// Appends one row; on failure the buffer is left as it was and the column index is returned with
/// the reason.
pub fn encode_row(
    row: &[Value],
    columns: &[WriteColumn],
    out: &mut BytesMut,
    groups: &mut Vec<u16>,
) -> Result<(), (usize, String)> {
    let start = out.len();
    out.put_i16(columns.len() as i16);
    for (i, (v, col)) in row.iter().zip(columns).enumerate() {
        if let Err(reason) = encode_value(v, col, out, groups) {
            out.truncate(start);
            return Err((i, reason));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_round_trip(text: &str) -> String {
        let d = Decimal::parse(text).unwrap();
        let mut out = BytesMut::new();
        encode_numeric(&d, &mut out, &mut Vec::new()).unwrap();
        let len = i32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - 4, "{text}");
        decode_numeric(&out[4..], &mut String::new())
            .unwrap()
            .as_str()
            .to_owned()
    }

    #[test]
    fn numerics_round_trip() {
        for text in [
            "0",
            "1",
            "-1",
            "10000",
            "-10000",
            "12345.678",
            "0.0000000001",
            "0.00001",
            "9999",
            "99999999.99999999",
            "-123456789012345678901234567890.1234567890123456789",
            "1234567890123456789012345678901234567890",
            "0.5",
            "100000000",
            "-0.0001",
        ] {
            assert_eq!(numeric_round_trip(text), text);
        }
    }

    /// A small deterministic generator (xorshift), so that codec tests cover many values without
    /// a property-testing dependency.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn many_decimals_round_trip() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut digits = |max: u64| -> String {
                let n = xorshift(&mut state) % (max + 1);
                (0..n)
                    .map(|_| char::from(b'0' + (xorshift(&mut state) % 10) as u8))
                    .collect()
            };
            let int = digits(45).trim_start_matches('0').to_owned();
            let frac = digits(30).trim_end_matches('0').to_owned();
            let int = if int.is_empty() { "0".to_owned() } else { int };
            let negative =
                xorshift(&mut state).is_multiple_of(2) && !(int == "0" && frac.is_empty());
            let text = format!(
                "{}{int}{}{frac}",
                if negative { "-" } else { "" },
                if frac.is_empty() { "" } else { "." }
            );
            assert_eq!(numeric_round_trip(&text), text);
        }
    }

    #[test]
    fn many_integers_round_trip_through_every_integer_wire() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for k in 0..20_000 {
            let i = (xorshift(&mut state) as i64) >> (k % 64);
            for (wire, ty) in [
                (Wire::Int8, DataType::Int64),
                (Wire::Numeric, DataType::Numeric),
                (Wire::Float8, DataType::Float64),
            ] {
                let col = WriteColumn {
                    wire,
                    data_type: ty,
                    fraction_digits: 6,
                };
                let mut out = BytesMut::new();
                let value = Value::Int64(i);
                let stored = match wire {
                    Wire::Float8 => {
                        encode_value(&Value::Float64(i as f64), &col, &mut out, &mut Vec::new())
                    }
                    _ => encode_value(&value, &col, &mut out, &mut Vec::new()),
                };
                stored.unwrap();
                let read = ReadColumn {
                    wire,
                    data_type: DataType::Int64,
                    convert: wire != Wire::Int8,
                };
                let back = read.decode(Some(&out[4..]), &mut String::new());
                if wire == Wire::Float8 {
                    // A double is never read as an integer: it may have been rounded already.
                    assert!(back.is_err(), "{i}");
                } else {
                    assert_eq!(back, Ok(value), "{wire:?} {i}");
                }
            }
        }
    }

    #[test]
    fn numeric_matches_postgres_bytes() {
        // SELECT numeric_send(12345.678): ndigits 3, weight 1, sign 0, dscale 3, digits 1 2345 6780.
        let d = Decimal::parse("12345.678").unwrap();
        let mut out = BytesMut::new();
        encode_numeric(&d, &mut out, &mut Vec::new()).unwrap();
        assert_eq!(
            &out[4..],
            &[0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]
        );
        // 0.00001: ndigits 1, weight -2, dscale 5, digit 1000.
        let d = Decimal::parse("0.00001").unwrap();
        let mut out = BytesMut::new();
        encode_numeric(&d, &mut out, &mut Vec::new()).unwrap();
        assert_eq!(&out[4..], &[0, 1, 0xff, 0xfe, 0, 0, 0, 5, 0x03, 0xe8]);
    }

    /// Found by the `copy_decode` fuzz target: PostgreSQL's numeric holds at most 131072 digits
    /// before the point and 16383 after it; beyond that the header's `i16` weight and `u16` scale
    /// wrapped and another number was written. Such decimals are refused now.
    #[test]
    fn numerics_beyond_postgres_limits_are_refused() {
        let col = WriteColumn {
            wire: Wire::Numeric,
            data_type: DataType::Numeric,
            fraction_digits: 6,
        };
        let encode = |text: &str| {
            let d = Decimal::parse(text).unwrap();
            let mut out = BytesMut::new();
            encode_value(&Value::Decimal(d), &col, &mut out, &mut Vec::new()).map(|()| out)
        };
        let at_limits = [
            format!("-0.{}1", "0".repeat(16_382)),
            format!("9{}", "0".repeat(131_071)),
        ];
        for text in &at_limits {
            let out = encode(text).unwrap();
            let back = decode_numeric(&out[4..], &mut String::new()).unwrap();
            assert_eq!(back.as_str(), text.as_str());
        }
        for text in [
            format!("-0.{}1", "0".repeat(16_383)),
            format!("0.{}99", "0".repeat(131_069)),
            format!("1{}", "0".repeat(131_072)),
        ] {
            assert!(encode(&text).is_err(), "{} digits", text.len());
        }
    }

    #[test]
    fn numeric_specials_are_refused() {
        for sign in [NUMERIC_NAN, NUMERIC_PINF, NUMERIC_NINF] {
            let mut b = vec![0, 0, 0, 0];
            b.extend_from_slice(&sign.to_be_bytes());
            b.extend_from_slice(&[0, 0]);
            assert!(decode_numeric(&b, &mut String::new()).is_err());
        }
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(
            decode_date(0).unwrap(),
            NaiveDate::from_ymd_opt(2000, 1, 1).unwrap()
        );
        assert!(decode_date(i32::MAX).unwrap_err().contains("infinity"));
        assert!(decode_date(-730_200).unwrap_err().contains("before year 1"));
        assert_eq!(
            decode_timestamp(1).unwrap().naive_utc().to_string(),
            "2000-01-01 00:00:00.000001"
        );
        assert!(
            decode_timestamp(i64::MIN)
                .unwrap_err()
                .contains("-infinity")
        );
        let col = WriteColumn {
            wire: Wire::Time,
            data_type: DataType::Time,
            fraction_digits: 3,
        };
        let t = NaiveTime::from_hms_micro_opt(1, 2, 3, 4).unwrap();
        assert!(
            encode_value(&Value::Time(t), &col, &mut BytesMut::new(), &mut Vec::new()).is_err()
        );
    }

    #[test]
    fn rows_parse_incrementally() {
        let mut buf = BytesMut::new();
        write_header(&mut buf);
        let cols = [
            WriteColumn {
                wire: Wire::Int8,
                data_type: DataType::Int64,
                fraction_digits: 6,
            },
            WriteColumn {
                wire: Wire::Text,
                data_type: DataType::Text,
                fraction_digits: 6,
            },
        ];
        encode_row(
            &[Value::Int64(7), Value::Text("hé".into())],
            &cols,
            &mut buf,
            &mut Vec::new(),
        )
        .unwrap();
        encode_row(
            &[Value::Int64(8), Value::Null],
            &cols,
            &mut buf,
            &mut Vec::new(),
        )
        .unwrap();
        write_trailer(&mut buf);
        let header = parse_header(&buf).unwrap().unwrap();
        let mut fields = Vec::new();
        let body = &buf[header..];
        for cut in 0..body.len() {
            let f = parse_row(&body[..cut], 2, &mut fields).unwrap();
            assert!(matches!(f, Frame::Incomplete | Frame::Row(_)), "{cut}");
        }
        let Frame::Row(n) = parse_row(body, 2, &mut fields).unwrap() else {
            panic!("a row");
        };
        let read = ReadColumn {
            wire: Wire::Text,
            data_type: DataType::Text,
            convert: false,
        };
        let (s, e) = fields[1].unwrap();
        assert_eq!(
            read.decode(Some(&body[s..e]), &mut String::new()).unwrap(),
            Value::Text("hé".into())
        );
        let Frame::Row(m) = parse_row(&body[n..], 2, &mut fields).unwrap() else {
            panic!("a row");
        };
        assert_eq!(fields[1], None);
        assert_eq!(
            parse_row(&body[n + m..], 2, &mut fields).unwrap(),
            Frame::End
        );
    }

    #[test]
    fn conversions_are_exact_or_refused() {
        assert_eq!(
            convert(Value::Int32(5), DataType::Int64),
            Ok(Value::Int64(5))
        );
        assert!(convert(Value::Int64(1 << 40), DataType::Int32).is_err());
        assert!(
            convert(
                Value::Decimal(Decimal::parse("1.5").unwrap()),
                DataType::Int64
            )
            .is_err()
        );
        assert!(
            convert(
                Value::Decimal(Decimal::parse("123.45").unwrap()),
                DataType::Decimal {
                    precision: 4,
                    scale: 2
                }
            )
            .is_err()
        );
        assert!(convert(Value::Text("abc".into()), DataType::Varchar(2)).is_err());
        assert!(convert(Value::Bool(true), DataType::Int64).is_err());
    }
}
