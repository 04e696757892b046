//! The PostgreSQL binary COPY decoder (sluice-postgres `copy`): header, row frames and field
//! values, driven the way the snapshot reader drives them.
//!
//! Input: one byte giving the number of columns (1 + byte % 6), one byte per column choosing its
//! type from `COLUMNS`, then the bytes of a COPY stream. Never a panic, and no allocation beyond a
//! small multiple of the input (libFuzzer's `-malloc_limit_mb` and `-rss_limit_mb` watch that).
//! A frame that parses as a whole is `Incomplete` when cut short, so reading a stream chunk by
//! chunk sees the rows reading it whole does. A value decoded in its native type encodes back, and
//! decoding that encoding gives the same value.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice_model::{DataType, Value};
use sluice_postgres::copy::{
    Frame, ReadColumn, WriteColumn, encode_value, parse_header, parse_row,
};
use sluice_postgres::types::{PgType, Wire, pg_type};

/// Column kinds: a native type as the catalog spells it, and the data type a read asks for (the
/// native one when `None`; another one makes the decoder convert, as for a cross-engine refresh).
const COLUMNS: &[(&str, Option<DataType>)] = &[
    ("boolean", None),
    ("smallint", None),
    ("integer", None),
    ("bigint", None),
    ("real", None),
    ("double precision", None),
    ("numeric", None),
    ("numeric(10,2)", None),
    ("text", None),
    ("character varying(5)", None),
    ("bytea", None),
    ("date", None),
    ("time(3) without time zone", None),
    ("timestamp without time zone", None),
    ("timestamp with time zone", None),
    ("json", None),
    ("jsonb", None),
    ("uuid", None),
    ("integer", Some(DataType::Int16)),
    ("bigint", Some(DataType::Int32)),
    (
        "bigint",
        Some(DataType::Decimal {
            precision: 5,
            scale: 0,
        }),
    ),
    ("bigint", Some(DataType::Float64)),
    ("integer", Some(DataType::Float32)),
    ("numeric", Some(DataType::Int64)),
    (
        "numeric",
        Some(DataType::Decimal {
            precision: 4,
            scale: 2,
        }),
    ),
    ("double precision", Some(DataType::Float32)),
    ("real", Some(DataType::Float64)),
    ("json", Some(DataType::Text)),
    ("text", Some(DataType::Varchar(3))),
    ("jsonb", Some(DataType::Varchar(10))),
];

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let width = 1 + usize::from(count % 6);
    if rest.len() < width {
        return;
    }
    let (kinds, stream) = rest.split_at(width);
    let columns: Vec<(ReadColumn, PgType)> = kinds
        .iter()
        .map(|&k| {
            let (native, asked) = COLUMNS[usize::from(k) % COLUMNS.len()];
            let pg = pg_type(native).expect("a native type sluice carries");
            let data_type = asked.unwrap_or(pg.data_type);
            let read = ReadColumn {
                wire: pg.wire,
                data_type,
                convert: data_type != pg.data_type,
            };
            (read, pg)
        })
        .collect();

    let Ok(Some(header)) = parse_header(stream) else {
        return;
    };
    assert_eq!(parse_header(&stream[..header - 1]), Ok(None));

    let mut fields = Vec::with_capacity(width);
    let mut again = Vec::with_capacity(width);
    let mut scratch = String::new();
    let mut pos = header;
    loop {
        let rest = &stream[pos..];
        match parse_row(rest, width, &mut fields) {
            Ok(Frame::Row(n)) => {
                for cut in [0, 1, 2, n / 2, n - 1] {
                    if cut < n {
                        assert_eq!(
                            parse_row(&rest[..cut], width, &mut again),
                            Ok(Frame::Incomplete),
                            "a row of {n} bytes cut at {cut}"
                        );
                    }
                }
                assert_eq!(parse_row(&rest[..n], width, &mut again), Ok(Frame::Row(n)));
                assert_eq!(again, fields);
                for (field, (read, pg)) in fields.iter().zip(&columns) {
                    let field = field.map(|(s, e)| &rest[s..e]);
                    if let Ok(value) = read.decode(field, &mut scratch) {
                        assert!(
                            value.conforms_to(read.data_type),
                            "{} is not a {}",
                            short(&value),
                            read.data_type
                        );
                        if !read.convert {
                            round_trip(read, pg, &value, &mut scratch);
                        }
                    }
                }
                pos += n;
            }
            Ok(Frame::End) | Ok(Frame::Incomplete) | Err(_) => break,
        }
    }
});

/// Encodes `value` (read by `read` in its native type) for the same wire type and reads it back.
/// The encoder refuses only what PostgreSQL cannot hold: text with NUL, and numerics with more
/// than 131072 digits before the point or 16383 after it (a stream may carry more than PostgreSQL
/// itself would send).
fn round_trip(read: &ReadColumn, pg: &PgType, value: &Value, scratch: &mut String) {
    let refused = match value {
        Value::Text(s) => s.contains('\0'),
        Value::Decimal(d) => d.integer_digits() > 131_072 || d.scale() > 16_383,
        _ => false,
    };
    // The widest type of the wire, so that no length or precision limit applies.
    let data_type = match read.wire {
        Wire::Text => DataType::Text,
        Wire::Numeric => DataType::Numeric,
        _ => pg.data_type,
    };
    let write = WriteColumn {
        wire: read.wire,
        data_type,
        fraction_digits: 6,
    };
    let encode = |v: &Value| {
        let mut out = BytesMut::new();
        encode_value(v, &write, &mut out, &mut Vec::new()).map(|()| out)
    };
    let bytes = match encode(value) {
        Ok(bytes) => {
            assert!(!refused, "{} should be refused", short(value));
            bytes
        }
        Err(e) => {
            assert!(
                refused,
                "{} read as {:?} does not encode: {e}",
                short(value),
                read.wire
            );
            return;
        }
    };
    let len = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let field = (len >= 0).then(|| &bytes[4..]);
    let back = read
        .decode(field, scratch)
        .unwrap_or_else(|e| panic!("the encoding of {} does not decode: {e}", short(value)));
    assert!(
        encode(&back).is_ok_and(|again| again == bytes),
        "{} changed in a round trip",
        short(value)
    );
    if !matches!(value, Value::Float32(_) | Value::Float64(_)) {
        assert!(
            &back == value,
            "{} read back as {}",
            short(value),
            short(&back)
        );
    }
}

/// A value for a message, cut short.
fn short(v: &Value) -> String {
    let text = format!("{v:?}");
    match text.char_indices().nth(120) {
        Some((at, _)) => format!("{}… ({} bytes)", &text[..at], text.len()),
        None => text,
    }
}
