//! Connector capability traits: what sluice needs from a database, one trait per capability.
//!
//! A connector is found by its location class and offers a subset of the capabilities below;
//! [`Connector`] says which through [`Capabilities`] and hands out each capability as a trait object.
//! The engine sees only these traits, never a driver.
//!
//! | trait | capability |
//! |---|---|
//! | [`Connector`] | class, capabilities, a cheap side-effect-free `test()` |
//! | [`Introspector`] | tables, columns, primary keys, native type → [`DataType`](sluice_model::DataType) |
//! | [`SnapshotReader`] | a consistent stream of [`RowBatch`]es of one table |
//! | [`BatchWriter`] | load batches into a table by a [`WriteStrategy`], atomically |
//! | [`ChangeReader`] | a source's changes from its log ([`change`]) |
//! | [`ChangeWriter`] | apply batches of changes with their checkpoint, atomically ([`change`]) |
//!
//! Every statement a reader or writer runs is also available as a plan ([`PlannedStatement`]) built
//! by the same code, so a dry run shows exactly what a real run executes.
//!
//! With the `test-kit` feature the crate also provides [`kit`], the conformance suite every
//! connector crate runs against a real database, and [`kit::memory`], an in-memory connector.
#![deny(missing_docs)]

pub mod change;
pub mod error;
#[cfg(feature = "test-kit")]
pub mod kit;

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::Serialize;
use sluice_model::definition::LocationClass;
use sluice_model::{
    BatchLimits, ColumnDef, Condition, Position, RowBatch, SchemaName, TableRef, TableSchema, Value,
};

pub use change::{
    ApplySummary, CaptureLag, CaptureRequest, CaptureStart, CaptureTable, ChangeApplier,
    ChangeReader, ChangeStream, ChangeWriter, IntegrateBatch, IntegrateRequest, IntegrateTable,
    OpenTransaction, PartialUpdate, TableChanges, checkpoint_from_stored, stored_checkpoint,
};
pub use error::{ConnectorError, ErrorKind, Result};

/// A location property a connector understands, e.g. `Database_Name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PropertySpec {
    /// The property name, as HVR spells it.
    pub name: &'static str,
    /// Whether a location of the class must set it.
    pub required: bool,
    /// What it means.
    pub description: &'static str,
    /// Whether it says where credentials are sent (host, port, user, database, TLS mode): a
    /// location edit that changes such a property drops a stored password the edit does not
    /// supply again, so it is never sent to a place its owner did not choose.
    pub endpoint: bool,
}

/// What a connector can do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Lists tables and describes their columns ([`Introspector`]).
    pub introspect: bool,
    /// Streams table contents ([`SnapshotReader`]).
    pub snapshot: bool,
    /// Loads batches into tables ([`BatchWriter`]).
    pub batch_write: bool,
    /// Supports [`WriteStrategy::StagingSwap`].
    pub staging_swap: bool,
    /// Supports [`WriteStrategy::Upsert`] and [`TableWriter::delete_batch`].
    pub upsert: bool,
    /// Captures changes from its log ([`ChangeReader`]).
    pub capture: bool,
    /// Applies captured changes ([`ChangeWriter`]).
    pub integrate: bool,
    /// One write transaction at a time per database (SQLite: one writer per file). A run
    /// writes such a target's tables one after another: a second writer would wait for the first
    /// only as long as the busy timeout, and a row-wise table's read of the target would block
    /// the other table's commit.
    pub single_writer: bool,
}

/// What `Connector::test` found out about the database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TestReport {
    /// Discovered properties, e.g. `Class_Version` → `3.46.0`.
    pub discovered_props: BTreeMap<String, String>,
}

/// A database connection of one location class, and the entry point to its capabilities.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The class this connector serves.
    fn class(&self) -> LocationClass;

    /// What this connector can do.
    fn capabilities(&self) -> Capabilities;

    /// Checks that the database can be reached and used, changing nothing. Cheap: one connection
    /// and one trivial query.
    async fn test(&self) -> Result<TestReport>;

    /// Table and column discovery, when supported.
    fn introspector(&self) -> Option<&dyn Introspector> {
        None
    }

    /// Snapshot reads, when supported.
    fn snapshot_reader(&self) -> Option<&dyn SnapshotReader> {
        None
    }

    /// Batch writes, when supported.
    fn batch_writer(&self) -> Option<&dyn BatchWriter> {
        None
    }

    /// Change capture, when supported.
    fn change_reader(&self) -> Option<&dyn ChangeReader> {
        None
    }

    /// Change integration, when supported.
    fn change_writer(&self) -> Option<&dyn ChangeWriter> {
        None
    }
}

/// Discovers tables and their columns.
///
/// Contract: native types map to [`DataType`](sluice_model::DataType) through the connector's type
/// table (`types.rs`); a column of a type with no mapping is reported as an error naming table,
/// column and native type, never silently coerced. Primary key columns come in key order.
#[async_trait]
pub trait Introspector: Send + Sync {
    /// Tables in `schema` (or the default schema), sorted by name.
    async fn list_tables(&self, schema: Option<&SchemaName>) -> Result<Vec<TableRef>>;

    /// The columns and primary key of `table`; `Ok(None)` when it does not exist.
    async fn table_schema(&self, table: &TableRef) -> Result<Option<TableSchema>>;

    /// The schemas the location's credentials may use (PostgreSQL schemas with `USAGE`, the
    /// MariaDB databases the user has a privilege on, SQLite's attached databases), sorted by
    /// name, leaving out the engine's own catalogs.
    async fn list_schemas(&self) -> Result<Vec<SchemaName>>;

    /// The schema tables without one live in (the configured schema or database, `main`);
    /// `None` when the connection's default has no name sluice can carry.
    fn default_schema(&self) -> Option<SchemaName>;
}

/// What to read from one table.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    /// The table.
    pub table: TableRef,
    /// Columns to read, in output order, with the type each value must have.
    pub columns: Vec<ColumnDef>,
    /// Indexes into `columns` of the key columns (for error messages and ordering).
    pub key: Vec<usize>,
    /// Deliver rows ordered by `key` ascending in [`Value::cmp_key`](sluice_model::Value::cmp_key)
    /// order (bytewise for text).
    pub ordered: bool,
    /// Only rows matching this condition.
    pub filter: Option<Condition>,
    /// Only rows whose column is beyond a value (incremental refresh), in addition to `filter`.
    pub lower_bound: Option<LowerBound>,
    /// Only rows whose key lies in this range, in addition to `filter`. Only readers that name a
    /// [`SnapshotReader::checksum_dialect`] for the request honour it; the others refuse it.
    pub key_range: Option<KeyRange>,
    /// Size of the batches to deliver.
    pub limits: BatchLimits,
}

/// Restricts a read to rows whose `column` is greater than (or equal to) `value`.
///
/// The connector binds the value as a parameter or renders it as a typed literal with its own
/// quoting (PostgreSQL's COPY takes no parameters); it never comes from user SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct LowerBound {
    /// Index into [`ReadRequest::columns`].
    pub column: usize,
    /// The bound, of the column's requested type.
    pub value: Value,
    /// `>=` when true, `>` when false.
    pub inclusive: bool,
}

/// A range of keys: the rows whose key (the request's key columns, compared in
/// [`Value::cmp_key`](sluice_model::Value::cmp_key) order, column by column) is greater than
/// `after` and at most `through`; `None` leaves that end open.
///
/// The connector renders the bounds as typed literals or parameters with its own quoting; they
/// are values read from the database, never user SQL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyRange {
    /// The greatest key below the range (exclusive), one value per key column.
    pub after: Option<Vec<Value>>,
    /// The greatest key in the range (inclusive), one value per key column.
    pub through: Option<Vec<Value>>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        KeyRange::default()
    }

    /// The parts of this range cut at each of `cuts` (ascending keys inside the range): the
    /// first ends at `cuts[0]`, the last starts after the last cut.
    pub fn split_at(&self, cuts: &[Vec<Value>]) -> Vec<KeyRange> {
        let mut parts = Vec::with_capacity(cuts.len() + 1);
        let mut after = self.after.clone();
        for cut in cuts {
            parts.push(KeyRange {
                after,
                through: Some(cut.clone()),
            });
            after = Some(cut.clone());
        }
        parts.push(KeyRange {
            after,
            through: self.through.clone(),
        });
        parts
    }
}

/// The row count and the checksum of the rows of one key range, computed in the database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeChecksum {
    /// Rows in the range.
    pub rows: u64,
    /// The sum of a 64-bit hash of every row's canonical form (order-independent); only
    /// comparable with a checksum of the same [`SnapshotReader::checksum_dialect`].
    pub checksum: i128,
}

/// A raw encoded row stream, for copying between two databases of the same family without decoding.
pub struct RawSnapshot {
    /// Chunks of the encoding named by [`SnapshotReader::raw_format`].
    pub chunks: BoxStream<'static, Result<Bytes>>,
}

/// A snapshot being read.
pub struct Snapshot {
    /// The rows, in batches of at most `limits` each. No empty batches are sent.
    pub batches: BoxStream<'static, Result<RowBatch>>,
    /// Where the snapshot sits in the change history, when the connector knows.
    pub position: Option<Position>,
}

/// Reads the contents of tables.
///
/// Contract: the stream is one consistent snapshot of the table (one read transaction); every value
/// conforms to its requested column type or the stream ends with a `Data` error naming table,
/// column and key; batches respect the requested limits; dropping the stream stops the read and
/// releases the transaction.
#[async_trait]
pub trait SnapshotReader: Send + Sync {
    /// The statements `read` runs for `request`; fails when the request cannot be read (a filter
    /// that is not one expression in the connector's dialect).
    fn plan_read(&self, request: &ReadRequest) -> Result<Vec<PlannedStatement>>;

    /// Starts reading.
    async fn read(&self, request: ReadRequest) -> Result<Snapshot>;

    /// Rows in `table` matching `filter`.
    async fn count_rows(&self, table: &TableRef, filter: Option<&Condition>) -> Result<u64>;

    /// The greatest non-NULL value of `column` among the rows of `table` matching `filter`, as a
    /// value of `column.data_type`; `None` when there is none.
    async fn max_value(
        &self,
        table: &TableRef,
        column: &ColumnDef,
        filter: Option<&Condition>,
    ) -> Result<Option<Value>> {
        let _ = (table, column, filter);
        Err(ConnectorError::unsupported(
            "this location cannot report a column's greatest value",
        ))
    }

    /// The raw encoding `read_raw` would produce for `request`, when this reader can produce one.
    ///
    /// The string names the encoding and everything a writer must match to take the bytes as they
    /// are (for PostgreSQL binary COPY: the wire type of every column, in order). The engine pipes
    /// raw bytes only when reader and writer name exactly the same format and no value needs
    /// converting.
    fn raw_format(&self, request: &ReadRequest) -> Option<String> {
        let _ = request;
        None
    }

    /// Starts a raw read of `request` (same rows as `read`, undecoded).
    async fn read_raw(&self, request: ReadRequest) -> Result<RawSnapshot> {
        let _ = request;
        Err(ConnectorError::unsupported("this location has no raw read"))
    }

    /// The checksum dialect of `request`'s rows, when this reader can checksum key ranges in the
    /// database ([`SnapshotReader::checksum_ranges`]); `None` when it cannot (no key, a key
    /// column that may be NULL or whose type has no exact order, a column type it cannot put in
    /// canonical form).
    ///
    /// The string names the hash, the canonical form of every column (so it includes each
    /// column's native type) and the order of keys. Two readers' checksums are compared only when
    /// they name exactly the same dialect: then equal rows checksum equal. Unequal rows checksum
    /// unequal except for hash collisions (64 bits per row); a caller that finds two ranges'
    /// checksums different reads their rows to tell how.
    fn checksum_dialect(&self, request: &ReadRequest) -> Option<String> {
        let _ = request;
        None
    }

    /// Row count and checksum of each part of `range` cut at `cuts` (ascending keys inside the
    /// range), among the rows `request` reads (its filter and key range apply too): one
    /// [`RangeChecksum`] per [`KeyRange::split_at`] part, in order. One consistent snapshot.
    async fn checksum_ranges(
        &self,
        request: &ReadRequest,
        range: &KeyRange,
        cuts: &[Vec<Value>],
    ) -> Result<Vec<RangeChecksum>> {
        let _ = (request, range, cuts);
        Err(ConnectorError::unsupported(
            "this location cannot checksum key ranges",
        ))
    }

    /// Up to `parts - 1` ascending keys inside `range` that cut the rows `request` reads there
    /// into about `parts` parts of similar size (for an integer key: evenly between its least and
    /// greatest value); fewer, or none, when the range holds too few keys to cut.
    async fn split_range(
        &self,
        request: &ReadRequest,
        range: &KeyRange,
        parts: usize,
    ) -> Result<Vec<Vec<Value>>> {
        let _ = (request, range, parts);
        Err(ConnectorError::unsupported(
            "this location cannot split key ranges",
        ))
    }

    /// Takes a snapshot of the whole database that several reads can share
    /// ([`SnapshotReader::read_shared`]), so that they see exactly the same data however long
    /// apart they start; `None` when this location cannot share one. The snapshot lasts until the
    /// returned handle is dropped.
    async fn share_snapshot(&self) -> Result<Option<Box<dyn SharedSnapshot>>> {
        Ok(None)
    }

    /// [`SnapshotReader::read`] in `snapshot`, a snapshot this reader shared. Readers that share
    /// none read as `read` does.
    async fn read_shared(
        &self,
        request: ReadRequest,
        snapshot: &dyn SharedSnapshot,
    ) -> Result<Snapshot> {
        let _ = snapshot;
        self.read(request).await
    }
}

/// A snapshot held open by [`SnapshotReader::share_snapshot`] for reads to share; dropping it
/// releases it (reads that already started in it keep their view).
pub trait SharedSnapshot: Send + Sync {
    /// The database's name for the snapshot (PostgreSQL: what `pg_export_snapshot()` answered).
    fn id(&self) -> &str;
}

pub use sluice_model::refresh::WriteStrategy;

/// What to write into one table.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    /// The target table.
    pub table: TableRef,
    /// Columns written, in the order values arrive, with their target types.
    pub columns: Vec<ColumnDef>,
    /// Indexes into `columns` of the key columns (primary key of a created table; error messages).
    pub key: Vec<usize>,
    /// How existing contents are replaced.
    pub strategy: WriteStrategy,
    /// Create the table from `columns` when it does not exist.
    pub create_if_missing: bool,
    /// Replace only the target rows matching this condition; others are kept.
    pub filter: Option<Condition>,
}

/// How often a planned statement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Repeat {
    /// Once.
    Once,
    /// Once for every row, with the row's values bound to its parameters.
    PerRow,
}

/// One statement of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedStatement {
    /// The SQL, with parameters as placeholders and no secrets.
    pub sql: String,
    /// How often it runs.
    pub repeat: Repeat,
}

impl PlannedStatement {
    /// A statement run once.
    pub fn once(sql: impl Into<String>) -> Self {
        PlannedStatement {
            sql: sql.into(),
            repeat: Repeat::Once,
        }
    }

    /// A statement run once per row.
    pub fn per_row(sql: impl Into<String>) -> Self {
        PlannedStatement {
            sql: sql.into(),
            repeat: Repeat::PerRow,
        }
    }
}

/// What a finished write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriteSummary {
    /// Rows written.
    pub rows: u64,
    /// Whether the table was created.
    pub created: bool,
}

/// Loads rows into tables.
///
/// Contract: a write is atomic. Until [`TableWriter::commit`] returns, readers of the target see
/// its old contents; if anything fails, or the writer is rolled back or dropped, the target is left
/// exactly as it was. Running the same request again produces the same result (idempotent on
/// retry). Values arrive in `columns` order and conform to their types.
#[async_trait]
pub trait BatchWriter: Send + Sync {
    /// The statements `open`, `write_batch` and `commit` run for `request`, given the target as it
    /// is now. Changes nothing.
    async fn plan_write(&self, request: &WriteRequest) -> Result<Vec<PlannedStatement>>;

    /// Starts a write; checks the target against `request` before changing anything.
    async fn open(&self, request: WriteRequest) -> Result<Box<dyn TableWriter>>;
}

/// A write in progress. Dropping it without `commit` rolls it back.
#[async_trait]
pub trait TableWriter: Send {
    /// Writes one batch.
    async fn write_batch(&mut self, batch: RowBatch) -> Result<()>;

    /// Deletes the target rows whose key equals a row of `keys` (one column per key column of the
    /// request, in key order). Only for [`WriteStrategy::Upsert`]; keys that match nothing are fine.
    async fn delete_batch(&mut self, keys: RowBatch) -> Result<()> {
        let _ = keys;
        Err(ConnectorError::unsupported(
            "deleting rows needs the upsert strategy",
        ))
    }

    /// The raw encoding this writer accepts through `write_raw`, in the same spelling as
    /// [`SnapshotReader::raw_format`]; `None` when it takes none.
    fn raw_format(&self) -> Option<String> {
        None
    }

    /// Writes a chunk of raw encoded rows (see [`SnapshotReader::raw_format`]). Chunks arrive in
    /// order and may split rows anywhere; a writer given raw chunks gets no `write_batch` calls.
    async fn write_raw(&mut self, chunk: Bytes) -> Result<()> {
        let _ = chunk;
        Err(ConnectorError::unsupported("this writer takes no raw rows"))
    }

    /// Makes everything written visible, atomically.
    async fn commit(self: Box<Self>) -> Result<WriteSummary>;

    /// Abandons the write; the target stays as it was.
    async fn rollback(self: Box<Self>) -> Result<()>;
}
