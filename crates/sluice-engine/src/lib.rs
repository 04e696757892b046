//! The engine: refresh and compare runners over connector traits.
//!
//! It sees the model and the connector traits only (never the repository, HTTP or the event hub)
//! and reports progress on a channel it is handed. A job goes through two steps:
//!
//! 1. **plan** ([`plan::plan_refresh`], [`plan::plan_compare`]): resolve every table against both
//!    locations as they are now: columns, key, type mapping, and the exact statements each side will
//!    run. Any problem stops the job here, before anything changed. A dry run stops here too and shows
//!    the statements.
//! 2. **run** ([`refresh::run_refresh`], [`compare::run_compare`]): rows travel source connector →
//!    engine ([`map`]) → target connector in bounded batches; each table's write is atomic.
#![deny(missing_docs)]

mod checksum;
pub mod compare;
pub mod map;
mod merge;
pub mod online;
pub mod plan;
pub mod progress;
pub mod refresh;
pub mod replicate;

use sluice_connector::{ConnectorError, ErrorKind};
use sluice_model::TableName;

pub use compare::{CompareOptions, CompareReport, CompareState, RowDiff, run_compare};
pub use online::{KeyRows, OnlineOptions, Settled, read_keys, settle, sort_keys};
pub use plan::{
    CompareTablePlan, Granularity, RefreshOptions, RefreshTablePlan, Slices, TableSpec,
    plan_compare, plan_refresh,
};
pub use progress::{Progress, ProgressSink};
pub use refresh::{
    CommitGate, RefreshReport, RefreshState, RowChanges, SliceReport, run_refresh,
    run_refresh_gated, tables_at_once,
};
pub use replicate::{
    ApplyLimits, CapturedChanges, OpCounts, ReplicatedTable, ReplicationError, ReplicationEvent,
    ReplicationPlan, ReplicationTarget, run_replication,
};

/// An error in the work on one table.
#[derive(Debug, thiserror::Error)]
#[error("table {table}")]
pub struct EngineError {
    /// The channel's name for the table.
    pub table: TableName,
    /// What went wrong.
    #[source]
    pub source: ConnectorError,
}

impl EngineError {
    /// Wraps a connector error for `table`.
    pub fn table(table: &TableName, source: ConnectorError) -> Self {
        EngineError {
            table: table.clone(),
            source,
        }
    }

    /// The kind of the underlying error.
    pub fn kind(&self) -> ErrorKind {
        self.source.kind()
    }
}
