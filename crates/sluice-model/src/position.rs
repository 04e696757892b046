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
    fn lsn_displays_like_postgres() {
        assert_eq!(Position::Lsn { lsn: 0x1_0000_00A0 }.to_string(), "1/A0");
    }
}
