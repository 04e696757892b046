//! Captured changes: what a capture reads from a source's log and an integrate applies to a target.
//!
//! A source's log is a sequence of committed transactions, each a list of [`RowChange`]s. A capture
//! hands them on as [`CaptureMessage`]s: a transaction may arrive in several parts (so a huge source
//! transaction never has to fit in memory), always in commit order. Every part names its
//! transaction by the transaction's commit [`Position`], and the index of its first change within
//! it, so a target can record exactly how far it got ([`Checkpoint`]) and a restart neither repeats
//! nor skips a change.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::position::Position;
use crate::schema::{ColumnDef, TableRef};
use crate::value::Value;

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    /// A row was added.
    Insert,
    /// A row was changed (possibly its key).
    Update,
    /// A row was removed.
    Delete,
    /// The table was emptied.
    Truncate,
}

impl ChangeOp {
    /// The lowercase word: `insert`, `update`, `delete`, `truncate`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Insert => "insert",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
            ChangeOp::Truncate => "truncate",
        }
    }
}

impl fmt::Display for ChangeOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One captured change of one row (or, for [`ChangeOp::Truncate`], of a whole table).
///
/// Row images are in the source table's column order as last announced by
/// [`CaptureMessage::Relation`]. Values conform to the announced column types.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    /// The source table.
    pub table: TableRef,
    /// What happened.
    pub op: ChangeOp,
    /// The row before the change, when the source sent it: for deletes and for updates that
    /// changed the key, or every update of a table logging whole old rows. When
    /// [`RowChange::before_is_key`] holds only the key columns carry values (the others are
    /// `Null`).
    pub before: Option<Vec<Value>>,
    /// Whether `before` holds only the key columns.
    pub before_is_key: bool,
    /// The row after the change (inserts and updates).
    pub after: Option<Vec<Value>>,
    /// Indexes of the columns of `after` the source did not send because they did not change
    /// (PostgreSQL's unchanged TOAST values): their entries in `after` are `Null` placeholders
    /// that must never be written; the target keeps its value.
    pub unchanged: Vec<usize>,
}

impl RowChange {
    /// Approximate bytes of values the change carries.
    pub fn byte_size(&self) -> usize {
        let image = |v: &Option<Vec<Value>>| {
            v.as_ref()
                .map(|r| r.iter().map(Value::byte_size).sum::<usize>())
                .unwrap_or(0)
        };
        64 + image(&self.before) + image(&self.after)
    }
}

/// A source transaction as a capture knows it from its first message on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TransactionId {
    /// Where the transaction commits in the source's log; increases from one transaction to the
    /// next in the order they are sent.
    pub commit: Position,
    /// When it committed at the source.
    pub commit_time: DateTime<Utc>,
}

/// What a capture sends, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum CaptureMessage {
    /// A table's columns, sent before its first change and again whenever they change at the
    /// source (a column added, dropped or retyped).
    Relation {
        /// The source table.
        table: TableRef,
        /// Its columns in row-image order.
        columns: Vec<ColumnDef>,
        /// Indexes into `columns` of the columns that identify a row (primary key or replica
        /// identity).
        key: Vec<usize>,
    },
    /// Changes of one transaction, in the order they happened; a transaction's changes may come
    /// in several such parts, numbered consecutively from 0 by `first_index`.
    Changes {
        /// The transaction.
        transaction: TransactionId,
        /// Index within the transaction of the first change of this part.
        first_index: u64,
        /// The changes.
        changes: Vec<RowChange>,
    },
    /// The transaction has sent all its changes.
    Commit {
        /// The transaction.
        transaction: TransactionId,
        /// The position to acknowledge once the transaction is durable everywhere (PostgreSQL:
        /// the end of the commit record).
        ack: Position,
        /// How many changes the transaction had.
        change_count: u64,
    },
    /// Nothing to send up to `position` (an idle source, transactions on other tables, a
    /// heartbeat): once everything sent before is durable, `position` may be acknowledged.
    Idle {
        /// The source's log position.
        position: Position,
        /// The source's clock at that point, when it said.
        at: Option<DateTime<Utc>>,
    },
}

/// How far a target has applied a source's changes, stored in the target in the same transaction
/// as the changes themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last transaction applied, wholly or in part.
    pub transaction: Position,
    /// `None`: all of it; `Some(n)`: its first `n` changes.
    pub applied: Option<u64>,
}

impl Checkpoint {
    /// A checkpoint at `position` with everything up to it applied (an initial load's point).
    pub fn at(position: Position) -> Self {
        Checkpoint {
            transaction: position,
            applied: None,
        }
    }

    /// How many leading changes of the transaction at `commit`, starting at change index `first`
    /// with `count` changes, are already applied and must be skipped; `count` when all are.
    pub fn skip(&self, commit: &Position, first: u64, count: u64) -> u64 {
        match commit.cmp_same(&self.transaction) {
            Some(Ordering::Less) => count,
            Some(Ordering::Equal) => match self.applied {
                None => count,
                Some(n) => n.saturating_sub(first).min(count),
            },
            // A later transaction, or a position of another kind (the checkpoint is of another
            // source): nothing applied.
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lsn(lsn: u64) -> Position {
        Position::Lsn { lsn }
    }

    #[test]
    fn skip_counts_what_a_checkpoint_covers() {
        let whole = Checkpoint::at(lsn(100));
        assert_eq!(whole.skip(&lsn(50), 0, 3), 3);
        assert_eq!(whole.skip(&lsn(100), 0, 3), 3);
        assert_eq!(whole.skip(&lsn(101), 0, 3), 0);
        let part = Checkpoint {
            transaction: lsn(100),
            applied: Some(5),
        };
        assert_eq!(part.skip(&lsn(100), 0, 3), 3);
        assert_eq!(part.skip(&lsn(100), 3, 4), 2);
        assert_eq!(part.skip(&lsn(100), 5, 4), 0);
        assert_eq!(part.skip(&lsn(101), 0, 4), 0);
    }
}
