//! Change capture and integration: the two capabilities behind an activated channel.
//!
//! A [`ChangeReader`] turns a source's log into [`CaptureMessage`]s; a [`ChangeWriter`] applies
//! coalesced batches of them to a target, storing a [`Checkpoint`] in the same target transaction.
//! The engine connects the two and acknowledges a position to the source only once every target
//! made it durable, so a restart at any point neither loses nor repeats a change.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_model::{
    CaptureMessage, Checkpoint, ColumnDef, Position, RowBatch, RowChange, TableRef, TransactionId,
    Value,
};

use crate::{ConnectorError, Result, SharedSnapshot};

/// What a capture covers: its name and its tables.
#[derive(Debug, Clone)]
pub struct CaptureRequest {
    /// The name of what capture creates at the source (PostgreSQL: the publication and the
    /// replication slot), unique per hub, channel and location. Lowercase letters, digits and
    /// `_`, at most 63 bytes; the caller builds it.
    pub name: String,
    /// The source tables, each with the columns it has now.
    pub tables: Vec<CaptureTable>,
}

/// One source table of a capture.
#[derive(Debug, Clone)]
pub struct CaptureTable {
    /// The table.
    pub table: TableRef,
    /// Its columns as introspected when capture was set up.
    pub columns: Vec<ColumnDef>,
}

/// What [`ChangeReader::create_capture`] made.
pub struct CaptureStart {
    /// The position changes stream from: every transaction committed after it is captured, none
    /// before it.
    pub position: Position,
    /// A snapshot of the source exactly at `position`, for the initial load, held until dropped;
    /// `None` when the source cannot export one (then no initial load can be handed over).
    pub snapshot: Option<Box<dyn SharedSnapshot>>,
}

/// How far behind a capture is, as the source sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CaptureLag {
    /// Bytes of log between the source's current position and the capture's acknowledged one
    /// (PostgreSQL: `pg_current_wal_lsn() - confirmed_flush_lsn`).
    pub bytes: u64,
    /// Whether the capture is connected right now.
    pub active: bool,
}

/// Reads a source's changes.
///
/// Contract:
/// - [`ChangeReader::check_capture`] finds every reason capture of the request cannot work (log
///   level, privileges, a table without a key or full row logging), all at once, changing nothing.
/// - [`ChangeReader::create_capture`] creates what capture needs, idempotently: when it exists
///   already it is dropped and created again (the old position is lost; the caller reloads).
/// - [`ChangeReader::drop_capture`] removes everything `create_capture` made; nothing there is
///   not an error.
/// - A [`ChangeStream`] sends every transaction committed after the last acknowledged position
///   (possibly again some that were sent but never acknowledged), in commit order, and never a
///   change of a table outside the request. Unchanged values the source does not log are marked
///   (`RowChange::unchanged`), never invented.
#[async_trait]
pub trait ChangeReader: Send + Sync {
    /// Checks that capture of `request` can work; changes nothing.
    async fn check_capture(&self, request: &CaptureRequest) -> Result<()>;

    /// Creates what capture needs and returns where it starts.
    async fn create_capture(&self, request: &CaptureRequest) -> Result<CaptureStart>;

    /// Removes what [`ChangeReader::create_capture`] made for `name`.
    async fn drop_capture(&self, name: &str) -> Result<()>;

    /// Whether what `create_capture` makes for `name` exists.
    async fn capture_exists(&self, name: &str) -> Result<bool>;

    /// Starts streaming changes after the last acknowledged position.
    async fn open_capture(&self, request: &CaptureRequest) -> Result<Box<dyn ChangeStream>>;

    /// How far behind the capture called `name` is; `None` when it does not exist.
    async fn capture_lag(&self, name: &str) -> Result<Option<CaptureLag>>;

    /// The source's log position now: every transaction committed before the call commits at or
    /// before it (by [`Position::cmp_same`]), so a capture whose stream has been acknowledged up
    /// to this position has passed all of them. Changes no data; it may write a marker to the log
    /// after the position (PostgreSQL: a heartbeat message) so that an idle capture passes it at
    /// once. Used to wait for a channel to catch up (online compare, CDC-backed syncs).
    async fn current_position(&self) -> Result<Position>;
}

/// A stream of changes being read.
#[async_trait]
pub trait ChangeStream: Send {
    /// The next message; waits until there is one. Sends [`CaptureMessage::Idle`] at least every
    /// few seconds when there is nothing else, so a caller can acknowledge and measure lag.
    async fn next(&mut self) -> Result<CaptureMessage>;

    /// Tells the source that everything up to `position` (a `Commit`'s `ack` or an `Idle`'s
    /// position) is durable at every target, so it may discard its log up to there.
    fn ack(&mut self, position: &Position) -> Result<()>;

    /// Stops the stream cleanly.
    async fn close(self: Box<Self>) -> Result<()>;
}

/// A transaction being read from a source's log, handed on in [`CaptureMessage::Changes`] parts
/// of at most `max_changes` changes or about `max_bytes` bytes, as every [`ChangeStream`] sends
/// them.
#[derive(Debug)]
pub struct OpenTransaction {
    /// The transaction.
    pub id: TransactionId,
    /// Changes so far.
    pub count: u64,
    part: Vec<RowChange>,
    part_first: u64,
    part_bytes: usize,
}

impl OpenTransaction {
    /// A transaction with no changes yet.
    pub fn new(id: TransactionId) -> OpenTransaction {
        OpenTransaction {
            id,
            count: 0,
            part: Vec::new(),
            part_first: 0,
            part_bytes: 0,
        }
    }

    /// Adds `change`; returns the part it filled, when it reached `max_changes` (at least one)
    /// or `max_bytes`.
    pub fn push(
        &mut self,
        change: RowChange,
        max_changes: usize,
        max_bytes: usize,
    ) -> Option<CaptureMessage> {
        self.part_bytes += change.byte_size();
        self.part.push(change);
        self.count += 1;
        if self.part.len() >= max_changes.max(1) || self.part_bytes >= max_bytes {
            self.take_part()
        } else {
            None
        }
    }

    /// The changes added since the last part, as the next part; `None` when there are none.
    pub fn take_part(&mut self) -> Option<CaptureMessage> {
        if self.part.is_empty() {
            return None;
        }
        let changes = std::mem::take(&mut self.part);
        let first_index = self.part_first;
        self.part_first = self.count;
        self.part_bytes = 0;
        Some(CaptureMessage::Changes {
            transaction: self.id.clone(),
            first_index,
            changes,
        })
    }
}

/// What an integrate writes into: its name and its target tables.
#[derive(Debug, Clone)]
pub struct IntegrateRequest {
    /// The name the checkpoint is stored under in the target, unique per hub, channel, source and
    /// target location.
    pub name: String,
    /// The target tables.
    pub tables: Vec<IntegrateTable>,
}

/// One target table of an integrate.
#[derive(Debug, Clone)]
pub struct IntegrateTable {
    /// The table, which exists.
    pub table: TableRef,
    /// The columns written, in the order values arrive, with their target types.
    pub columns: Vec<ColumnDef>,
    /// Indexes into `columns` of the key columns.
    pub key: Vec<usize>,
}

/// The changes of one table in one batch, coalesced per key: a key occurs at most once among
/// `upserts`, `updates` and `deletes`, so their order does not matter.
#[derive(Debug, Clone)]
pub struct TableChanges {
    /// Index into [`IntegrateRequest::tables`].
    pub table: usize,
    /// Empty the table before anything else of this batch.
    pub truncate: bool,
    /// Keys (the key columns only, in key order) whose rows are removed.
    pub deletes: RowBatch,
    /// Whole rows (all columns) inserted or replacing the row of the same key.
    pub upserts: RowBatch,
    /// Rows of which only some columns changed; the others keep their target values.
    pub updates: Vec<PartialUpdate>,
}

impl TableChanges {
    /// Checks that the rows and keys have the widths of `table` (the columns written and the
    /// key), naming the table otherwise.
    pub fn check_shape(&self, table: &IntegrateTable) -> Result<()> {
        let (name, width, key_width) = (&table.table, table.columns.len(), table.key.len());
        if !self.upserts.is_empty() && self.upserts.width() != width {
            return Err(ConnectorError::internal(format!(
                "rows of {} values for {name} of {width} columns",
                self.upserts.width()
            )));
        }
        if !self.deletes.is_empty() && self.deletes.width() != key_width {
            return Err(ConnectorError::internal(format!(
                "keys of {} values for {name} keyed on {key_width} columns",
                self.deletes.width()
            )));
        }
        Ok(())
    }
}

/// A checkpoint as every connector stores it in its checkpoint table: the position as JSON and
/// the count of applied changes (`None`: the whole transaction).
pub fn stored_checkpoint(checkpoint: &Checkpoint) -> Result<(String, Option<i64>)> {
    let position = serde_json::to_string(&checkpoint.transaction).map_err(|e| {
        ConnectorError::internal("a position could not be stored as JSON").with_source(e)
    })?;
    let applied = checkpoint
        .applied
        .map(|n| {
            i64::try_from(n)
                .map_err(|_| ConnectorError::data(format!("{n} applied changes cannot be stored")))
        })
        .transpose()?;
    Ok((position, applied))
}

/// The checkpoint stored under `name` as [`stored_checkpoint`] wrote it.
pub fn checkpoint_from_stored(
    name: &str,
    position: &str,
    applied: Option<i64>,
) -> Result<Checkpoint> {
    let transaction: Position = serde_json::from_str(position).map_err(|e| {
        ConnectorError::data(format!("the stored checkpoint of {name} is not a position"))
            .with_source(e)
    })?;
    let applied = applied
        .map(|n| {
            u64::try_from(n).map_err(|_| {
                ConnectorError::data(format!(
                    "the stored checkpoint of {name} counts {n} applied changes"
                ))
            })
        })
        .transpose()?;
    Ok(Checkpoint {
        transaction,
        applied,
    })
}

/// An update of some columns of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialUpdate {
    /// All columns; only the key columns and those in `set` are meaningful.
    pub row: Vec<Value>,
    /// Indexes of the columns to set.
    pub set: Vec<usize>,
}

/// One target transaction's worth of changes.
#[derive(Debug, Clone)]
pub struct IntegrateBatch {
    /// Per table, its changes (tables without changes left out).
    pub tables: Vec<TableChanges>,
    /// Where the batch ends; stored in the same transaction.
    pub checkpoint: Checkpoint,
}

/// What an applied batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ApplySummary {
    /// Rows inserted or replaced.
    pub upserted: u64,
    /// Rows updated in part.
    pub updated: u64,
    /// Rows deleted.
    pub deleted: u64,
    /// Tables truncated.
    pub truncated: u64,
    /// When the target committed.
    pub committed_at: Option<DateTime<Utc>>,
}

/// Applies changes to a target.
///
/// Contract: [`ChangeApplier::apply`] is atomic: the batch's changes and its checkpoint become
/// visible together in one target transaction, or nothing changes. The checkpoint read by
/// [`ChangeWriter::open_integrate`] is the last one committed.
#[async_trait]
pub trait ChangeWriter: Send + Sync {
    /// Starts integrating into `request`'s tables: creates the checkpoint table when missing and
    /// reads the stored checkpoint.
    async fn open_integrate(&self, request: IntegrateRequest) -> Result<Box<dyn ChangeApplier>>;

    /// The checkpoint stored under `name`, if any; changes nothing.
    async fn read_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>>;

    /// Removes the checkpoint stored under `name` (and the checkpoint table when it is then
    /// empty); nothing there is not an error.
    async fn drop_integrate(&self, name: &str) -> Result<()>;
}

/// An integrate in progress.
#[async_trait]
pub trait ChangeApplier: Send {
    /// The checkpoint stored when the applier was opened or last applied.
    fn checkpoint(&self) -> Option<&Checkpoint>;

    /// Applies `batch` and stores its checkpoint, in one transaction.
    async fn apply(&mut self, batch: &IntegrateBatch) -> Result<ApplySummary>;

    /// Adds `column` (nullable) to the table at `table` in the request and to the columns
    /// written; rows then carry one more value, last.
    async fn add_column(&mut self, table: usize, column: ColumnDef) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_as_stored() {
        let checkpoint = Checkpoint {
            transaction: Position::Binlog {
                file: "mariadb-bin.000012".into(),
                offset: 4,
            },
            applied: Some(3),
        };
        let (text, applied) = stored_checkpoint(&checkpoint).unwrap_or_default();
        assert_eq!(
            checkpoint_from_stored("x", &text, applied).ok(),
            Some(checkpoint)
        );
        assert!(checkpoint_from_stored("x", "not json", None).is_err());
        assert!(checkpoint_from_stored("x", &text, Some(-1)).is_err());
        assert!(
            stored_checkpoint(&Checkpoint {
                transaction: Position::Lsn { lsn: 1 },
                applied: Some(u64::MAX),
            })
            .is_err()
        );
    }
}
