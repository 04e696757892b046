//! A position in a location's change stream: where a snapshot was taken, where capture resumes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A point in a database's change history.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Position {
    /// A PostgreSQL log sequence number.
    Lsn {
        /// The LSN as a 64-bit number.
        lsn: u64,
    },
    /// A MariaDB binary log file and offset.
    Binlog {
        /// Binary log file name.
        file: String,
        /// Byte offset in that file.
        offset: u64,
    },
    /// A sequence number in a change table (trigger-based capture, e.g. SQLite).
    Sequence {
        /// The last sequence number included.
        seq: u64,
    },
}

impl Position {
    /// Orders two positions of the same kind (of one source's log); `None` for different kinds
    /// or binary log positions in files of different names that do not sort by number.
    pub fn cmp_same(&self, other: &Position) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Position::Lsn { lsn: a }, Position::Lsn { lsn: b }) => Some(a.cmp(b)),
            (Position::Sequence { seq: a }, Position::Sequence { seq: b }) => Some(a.cmp(b)),
            (
                Position::Binlog {
                    file: fa,
                    offset: a,
                },
                Position::Binlog {
                    file: fb,
                    offset: b,
                },
            ) => Some(
                binlog_number(fa)
                    .zip(binlog_number(fb))
                    .map(|(x, y)| x.cmp(&y))
                    .unwrap_or_else(|| fa.cmp(fb))
                    .then(a.cmp(b)),
            ),
            _ => None,
        }
    }
}

impl Position {
    /// The position just before this one: what an initial load taken exactly at this position
    /// covers (a transaction committing at this very position is not in it).
    pub fn before(&self) -> Position {
        match self {
            Position::Lsn { lsn } => Position::Lsn {
                lsn: lsn.saturating_sub(1),
            },
            Position::Sequence { seq } => Position::Sequence {
                seq: seq.saturating_sub(1),
            },
            Position::Binlog { file, offset } => Position::Binlog {
                file: file.clone(),
                offset: offset.saturating_sub(1),
            },
        }
    }
}

/// The sequence number of a binary log file name (`mariadb-bin.000012` → 12).
fn binlog_number(file: &str) -> Option<u64> {
    file.rsplit('.').next()?.parse().ok()
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Lsn { lsn } => write!(f, "{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF),
            Position::Binlog { file, offset } => write!(f, "{file}:{offset}"),
            Position::Sequence { seq } => write!(f, "seq {seq}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_one_kind_order() {
        use std::cmp::Ordering;
        let lsn = |lsn| Position::Lsn { lsn };
        assert_eq!(lsn(1).cmp_same(&lsn(2)), Some(Ordering::Less));
        let bin = |file: &str, offset| Position::Binlog {
            file: file.into(),
            offset,
        };
        assert_eq!(
            bin("b.000009", 900).cmp_same(&bin("b.000010", 4)),
            Some(Ordering::Less)
        );
        assert_eq!(lsn(1).cmp_same(&Position::Sequence { seq: 1 }), None);
    }

    #[test]
    fn lsn_displays_like_postgres() {
        assert_eq!(Position::Lsn { lsn: 0x1_0000_00A0 }.to_string(), "1/A0");
    }
}
