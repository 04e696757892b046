//! Decoding binary log row images into [`Value`]s of the same types the snapshot reader produces.
//!
//! mysql_common parses a row event's images into `BinlogValue`s, one per column present in the
//! image. This module turns them into the driver [`mysql_async::Value`]s a binary-protocol
//! `SELECT` of the column would have returned (a `TIMESTAMP` as a UTC date and time, an unsigned
//! integer as unsigned, a `BINARY(16)` UUID with its 16 bytes) and decodes those with
//! [`crate::types::decode`], so that a captured value and a snapshot-read value of one column are
//! always equal. It also reads the two MariaDB events mysql_common does not know (GTID 162).

use chrono::{DateTime, Datelike, Timelike};
use mysql_async::Value as M;
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;

use crate::types::{Codec, Storage, decode};
use sluice_model::Value;

/// MariaDB's GTID event (the start of an event group).
pub(crate) const MARIADB_GTID_EVENT: u8 = 162;

/// Flag of a GTID event whose group is one statement outside any transaction (DDL).
const FL_STANDALONE: u8 = 1;

/// A MariaDB GTID event's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MariadbGtid {
    /// Sequence number.
    pub seq_no: u64,
    /// Replication domain.
    pub domain_id: u32,
    /// Whether the group is a single statement outside a transaction (DDL).
    pub standalone: bool,
}

impl MariadbGtid {
    /// Reads the post-header of a GTID event (checksum already cut off).
    pub fn parse(data: &[u8]) -> Option<Self> {
        let seq_no = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
        let domain_id = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
        let flags = *data.get(12)?;
        Some(MariadbGtid {
            seq_no,
            domain_id,
            standalone: flags & FL_STANDALONE != 0,
        })
    }

    /// `domain-server-seq`, as MariaDB writes a GTID.
    pub fn render(&self, server_id: u32) -> String {
        format!("{}-{}-{}", self.domain_id, server_id, self.seq_no)
    }
}

/// One column's value in a row image: present (with its value) or left out of the image.
pub(crate) type Cell = Option<Value>;

/// Bits of an integer column type, for reading a value logged as signed as unsigned.
fn int_bits(ty: ColumnType) -> Option<u32> {
    match ty {
        ColumnType::MYSQL_TYPE_TINY => Some(8),
        ColumnType::MYSQL_TYPE_SHORT => Some(16),
        ColumnType::MYSQL_TYPE_INT24 => Some(24),
        ColumnType::MYSQL_TYPE_LONG => Some(32),
        ColumnType::MYSQL_TYPE_LONGLONG => Some(64),
        _ => None,
    }
}

/// A UTC date and time as the driver returns a `TIMESTAMP` read in a UTC session.
fn utc_date(seconds: i64, micros: u32) -> Result<M, String> {
    if seconds == 0 && micros == 0 {
        return Err("is a zero date, which is no date at all".into());
    }
    let at = DateTime::from_timestamp(seconds, micros * 1000)
        .ok_or_else(|| format!("{seconds}.{micros:06} is not a valid timestamp"))?;
    let n = at.naive_utc();
    Ok(M::Date(
        n.year() as u16,
        n.month() as u8,
        n.day() as u8,
        n.hour() as u8,
        n.minute() as u8,
        n.second() as u8,
        n.nanosecond() / 1000,
    ))
}

/// The driver value a binary-protocol read of the column would give for a logged value.
pub(crate) fn driver_value(
    value: BinlogValue<'_>,
    column_type: ColumnType,
    codec: &Codec,
) -> Result<M, String> {
    let value = match value {
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(_) | BinlogValue::JsonDiff(_) => {
            return Err("is a MySQL binary JSON value, which MariaDB does not log".into());
        }
    };
    Ok(match (value, codec.storage) {
        (M::NULL, _) => M::NULL,
        // Integers are logged without their signedness (no row metadata): reinterpret.
        // A signed MEDIUMINT's sign is not extended by the parser.
        (M::Int(i), Storage::Int { unsigned: false })
            if column_type == ColumnType::MYSQL_TYPE_INT24 && i >= 1 << 23 =>
        {
            M::Int(i - (1 << 24))
        }
        (M::Int(i), Storage::Int { unsigned: true }) if i < 0 => match int_bits(column_type) {
            Some(64) => M::UInt(i as u64),
            Some(bits) => M::Int(i + (1i64 << bits)),
            None => M::Int(i),
        },
        // TIMESTAMP2 is logged as "seconds[.micros]" since the epoch, TIMESTAMP as seconds.
        (M::Bytes(b), Storage::Timestamp) => {
            let text = String::from_utf8(b).map_err(|_| "is not a timestamp".to_string())?;
            let (s, us) = text.split_once('.').unwrap_or((text.as_str(), "0"));
            let seconds: i64 = s
                .parse()
                .map_err(|_| format!("{text} is not a timestamp"))?;
            let digits = format!("{us:0<6}");
            let micros: u32 = digits
                .get(..6)
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| format!("{text} is not a timestamp"))?;
            utc_date(seconds, micros)?
        }
        (M::Int(seconds), Storage::Timestamp) => utc_date(seconds, 0)?,
        // BINARY(n) drops trailing zero bytes in the log; the column holds them.
        (M::Bytes(mut b), Storage::Uuid { binary: true }) if b.len() < 16 => {
            b.resize(16, 0);
            M::Bytes(b)
        }
        (v, _) => v,
    })
}

/// Decodes one logged value into a value of the column's type.
pub(crate) fn decode_cell(
    value: BinlogValue<'_>,
    column_type: ColumnType,
    codec: &Codec,
) -> Result<Value, String> {
    decode(driver_value(value, column_type, codec)?, codec.data_type)
}

/// The cells of a row image: `present[i]` says whether column `i` is in the image (the event's
/// column bitmap); the image holds the present columns' values in column order.
pub(crate) fn image_cells(
    mut row: BinlogRow,
    present: &[bool],
    column_types: &[ColumnType],
    codecs: &[Codec],
    mut describe: impl FnMut(usize) -> String,
) -> Result<Vec<Cell>, String> {
    let mut cells = Vec::with_capacity(present.len());
    let mut slot = 0usize;
    for (i, &here) in present.iter().enumerate() {
        if !here {
            cells.push(None);
            continue;
        }
        let value = row
            .take(slot)
            .ok_or_else(|| format!("the row image lacks {}", describe(i)))?;
        slot += 1;
        let (Some(ty), Some(codec)) = (column_types.get(i), codecs.get(i)) else {
            // A column beyond the ones known (dropped since): ignored by the caller.
            cells.push(None);
            continue;
        };
        let decoded = decode_cell(value, *ty, codec)
            .map_err(|reason| format!("{}: {reason}", describe(i)))?;
        cells.push(Some(decoded));
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use sluice_model::DataType;

    fn codec(data_type: DataType, storage: Storage) -> Codec {
        Codec {
            data_type,
            storage,
            max_chars: None,
            max_bytes: None,
        }
    }

    #[test]
    fn unsigned_integers_logged_as_signed_read_back_unsigned() {
        let c = codec(DataType::Int32, Storage::Int { unsigned: true });
        let v = decode_cell(
            BinlogValue::Value(M::Int(-56)),
            ColumnType::MYSQL_TYPE_TINY,
            &c,
        );
        assert_eq!(v, Ok(Value::Int32(200)));
        let big = codec(
            DataType::Decimal {
                precision: 20,
                scale: 0,
            },
            Storage::Int { unsigned: true },
        );
        let v = decode_cell(
            BinlogValue::Value(M::Int(-1)),
            ColumnType::MYSQL_TYPE_LONGLONG,
            &big,
        )
        .unwrap();
        assert_eq!(v.to_string(), "18446744073709551615");
    }

    #[test]
    fn timestamps_are_utc_instants() {
        let c = codec(DataType::TimestampTz, Storage::Timestamp);
        let v = decode_cell(
            BinlogValue::Value(M::Bytes(b"86400.5".to_vec())),
            ColumnType::MYSQL_TYPE_TIMESTAMP2,
            &c,
        )
        .unwrap();
        assert_eq!(
            v,
            Value::TimestampTz(DateTime::from_timestamp(86400, 500_000_000).unwrap())
        );
        assert!(
            decode_cell(
                BinlogValue::Value(M::Bytes(b"0".to_vec())),
                ColumnType::MYSQL_TYPE_TIMESTAMP2,
                &c
            )
            .is_err()
        );
    }

    #[test]
    fn gtid_events_parse() {
        let mut data = 42u64.to_le_bytes().to_vec();
        data.extend(7u32.to_le_bytes());
        data.push(1);
        let g = MariadbGtid::parse(&data).unwrap();
        assert_eq!((g.seq_no, g.domain_id, g.standalone), (42, 7, true));
        assert_eq!(g.render(3), "7-3-42");
        assert!(MariadbGtid::parse(&data[..5]).is_none());
    }
}
