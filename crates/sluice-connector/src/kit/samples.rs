//! Sample values of every data type: extremes, unicode, empty values next to NULL. Dates stay within
//! years 1000–9999, the range all three engines hold.

use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
use sluice_model::{ColumnDef, DataType, Decimal, Value};

/// A short column-name suffix for a type (`decimal_12_2`).
pub fn column_suffix(ty: DataType) -> String {
    ty.to_string().replace(['(', ','], "_").replace(')', "")
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("sample dates are valid")
}

fn time(h: u32, m: u32, s: u32, micro: u32) -> NaiveTime {
    NaiveTime::from_hms_micro_opt(h, m, s, micro).expect("sample times are valid")
}

fn dec(s: &str) -> Value {
    Value::Decimal(Decimal::parse(s).expect("sample decimals are valid"))
}

/// Non-NULL sample values of `ty`.
pub fn values(ty: DataType) -> Vec<Value> {
    match ty {
        DataType::Bool => vec![Value::Bool(true), Value::Bool(false)],
        DataType::Int16 => [i16::MIN, -1, 0, i16::MAX].map(Value::Int16).to_vec(),
        DataType::Int32 => [i32::MIN, -1, 0, i32::MAX].map(Value::Int32).to_vec(),
        DataType::Int64 => [i64::MIN, -1, 0, i64::MAX].map(Value::Int64).to_vec(),
        DataType::Float32 => [0.0f32, -1.5, f32::MAX, f32::MIN_POSITIVE, f32::EPSILON]
            .map(Value::Float32)
            .to_vec(),
        DataType::Float64 => [0.1f64, -2.5e-300, f64::MAX, f64::MIN_POSITIVE, 1.0 / 3.0]
            .map(Value::Float64)
            .to_vec(),
        // Values every engine holds exactly: SQLite keeps NUMERIC as a 64-bit integer or a double.
        DataType::Numeric => vec![
            dec("0"),
            dec("-1.5"),
            dec("12345.678"),
            dec("0.0000000001"),
            dec("9007199254740993"),
        ],
        DataType::Decimal { precision, scale } => {
            let int_digits = usize::from(precision - scale);
            let frac_digits = usize::from(scale);
            let max = format!(
                "{}.{}",
                "9".repeat(int_digits.max(1)),
                "9".repeat(frac_digits)
            );
            let smallest = if scale > 0 {
                format!("0.{}1", "0".repeat(frac_digits - 1))
            } else {
                "1".to_owned()
            };
            let mut out = vec![
                dec("0"),
                dec(&max),
                dec(&format!("-{max}")),
                dec(&smallest),
                dec(&format!("-{smallest}")),
            ];
            if scale >= 2 && int_digits >= 2 {
                out.push(dec("12.50"));
            }
            out
        }
        DataType::Text => vec![
            Value::Text(String::new()),
            Value::Text("plain".into()),
            Value::Text("unicode: héllo wörld — ✓ 😀 中文 עברית ﷽".into()),
            Value::Text("quote ' double \" backslash \\ newline \n tab \t cr \r end".into()),
            Value::Text("combining: e\u{301} vs é; zero width:\u{200b}|".into()),
            Value::Text("long ".repeat(4000)),
        ],
        DataType::Varchar(n) => vec![
            Value::Text(String::new()),
            Value::Text("x".into()),
            Value::Text("é".repeat(n as usize)),
        ],
        DataType::Bytes => vec![
            Value::Bytes(Vec::new()),
            Value::Bytes(vec![0, 1, 2, 255]),
            Value::Bytes(b"nul\0inside".to_vec()),
            Value::Bytes((0..=255u8).cycle().take(3000).collect()),
        ],
        DataType::Date => vec![
            Value::Date(date(1000, 1, 1)),
            Value::Date(date(2024, 2, 29)),
            Value::Date(date(9999, 12, 31)),
        ],
        DataType::Time => vec![
            Value::Time(time(0, 0, 0, 0)),
            Value::Time(time(23, 59, 59, 999_999)),
            Value::Time(time(12, 34, 56, 500_000)),
        ],
        DataType::Timestamp => vec![
            Value::Timestamp(date(1000, 1, 1).and_time(time(0, 0, 0, 0))),
            Value::Timestamp(date(2024, 2, 29).and_time(time(12, 34, 56, 123_456))),
            Value::Timestamp(date(9999, 12, 31).and_time(time(23, 59, 59, 999_999))),
        ],
        DataType::TimestampTz => vec![
            Value::TimestampTz(Utc.timestamp_opt(0, 0).single().expect("epoch")),
            Value::TimestampTz(
                date(2024, 6, 30)
                    .and_time(time(23, 59, 59, 999_999))
                    .and_utc(),
            ),
            Value::TimestampTz(date(1000, 1, 1).and_time(time(0, 0, 0, 1)).and_utc()),
        ],
        DataType::Json => vec![
            Value::Json(r#"{"a":1,"b":[true,null,"x"]}"#.into()),
            Value::Json("[]".into()),
            Value::Json(r#""just a string""#.into()),
            Value::Json(r#"{"nested":{"é":"😀","n":-1.5}}"#.into()),
        ],
        DataType::Uuid => vec![
            Value::Uuid(uuid::Uuid::nil()),
            Value::Uuid(uuid::Uuid::from_u128(
                0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
            )),
            Value::Uuid(uuid::Uuid::max()),
        ],
    }
}

/// Rows for `columns` (first column an `int64` key): row `i` holds sample `i` of each type (cycling
/// through shorter sample lists), and a last row holds NULL in every nullable column.
pub fn rows(columns: &[ColumnDef]) -> Vec<Vec<Value>> {
    let per_column: Vec<Vec<Value>> = columns[1..].iter().map(|c| values(c.data_type)).collect();
    let n = per_column.iter().map(Vec::len).max().unwrap_or(0);
    let mut rows: Vec<Vec<Value>> = (0..n)
        .map(|i| {
            let mut row = vec![Value::Int64(i as i64 + 1)];
            row.extend(per_column.iter().map(|s| s[i % s.len()].clone()));
            row
        })
        .collect();
    let mut null_row = vec![Value::Int64(n as i64 + 1)];
    null_row.extend(columns[1..].iter().map(|_| Value::Null));
    rows.push(null_row);
    rows
}
