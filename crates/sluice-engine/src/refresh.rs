//! Running a refresh: for each table, read batches from the source, map them, write them to the
//! target in one atomic write, and report progress. A failure or a cancellation rolls the write
//! back before the table's report is returned, so a report that says FAILED or CANCELED means the
//! target is as it was.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use sluice_connector::{Connector, ConnectorError, ErrorKind, TableWriter};
use sluice_model::{RowBatch, TableName, describe_key};
use tokio_util::sync::CancellationToken;

use crate::EngineError;
use crate::map::MapError;
use crate::plan::{RefreshOptions, RefreshTablePlan, reader, writer};
use crate::progress::{Progress, ProgressSink};

/// How a table's refresh ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefreshState {
    /// The target now holds the source's rows.
    Done,
    /// It failed; the target is as it was.
    Failed,
    /// It was cancelled; the target is as it was.
    Canceled,
}

impl RefreshState {
    /// The spelling in results and output.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshState::Done => "DONE",
            RefreshState::Failed => "FAILED",
            RefreshState::Canceled => "CANCELED",
        }
    }
}

/// What a table's refresh did.
#[derive(Debug)]
pub struct RefreshReport {
    /// The channel's name for the table.
    pub name: TableName,
    /// How it ended.
    pub state: RefreshState,
    /// Rows read from the source.
    pub source_rows: u64,
    /// Rows written to the target.
    pub target_rows: u64,
    /// Bytes of row data moved.
    pub bytes: u64,
    /// Time spent on the table.
    pub duration: Duration,
    /// Whether the target table was created.
    pub created: bool,
    /// Why it failed.
    pub error: Option<EngineError>,
}

/// Refreshes the planned tables one after another. A table that fails does not stop the others; each
/// is atomic on its own.
pub async fn run_refresh(
    source: Arc<dyn Connector>,
    target: Arc<dyn Connector>,
    plans: Vec<RefreshTablePlan>,
    options: RefreshOptions,
    progress: ProgressSink,
    cancel: CancellationToken,
) -> Vec<RefreshReport> {
    let mut reports = Vec::with_capacity(plans.len());
    for plan in plans {
        let report = refresh_table(
            source.as_ref(),
            target.as_ref(),
            &plan,
            &options,
            &progress,
            &cancel,
        )
        .await;
        progress.send(Progress::Finished {
            table: plan.name.clone(),
            ok: report.state == RefreshState::Done,
            rows: report.source_rows,
            seconds: report.duration.as_secs_f64(),
        });
        reports.push(report);
    }
    reports
}

struct Moved {
    rows: u64,
    bytes: u64,
    written: u64,
    created: bool,
}

async fn refresh_table(
    source: &dyn Connector,
    target: &dyn Connector,
    plan: &RefreshTablePlan,
    options: &RefreshOptions,
    progress: &ProgressSink,
    cancel: &CancellationToken,
) -> RefreshReport {
    let started = Instant::now();
    let total_rows = if options.count_first {
        match reader(source) {
            Ok(r) => r
                .count_rows(&plan.read.table, plan.read.filter.as_ref())
                .await
                .ok(),
            Err(_) => None,
        }
    } else {
        None
    };
    progress.send(Progress::Started {
        table: plan.name.clone(),
        total_rows,
    });
    let mut moved = Moved {
        rows: 0,
        bytes: 0,
        written: 0,
        created: false,
    };
    let outcome = copy(source, target, plan, progress, cancel, &mut moved).await;
    let (state, error) = match outcome {
        Ok(()) => (RefreshState::Done, None),
        Err(error) if error.kind() == ErrorKind::Cancelled => (
            RefreshState::Canceled,
            Some(EngineError::table(&plan.name, error)),
        ),
        Err(error) => (
            RefreshState::Failed,
            Some(EngineError::table(&plan.name, error)),
        ),
    };
    RefreshReport {
        name: plan.name.clone(),
        state,
        source_rows: moved.rows,
        target_rows: moved.written,
        bytes: moved.bytes,
        duration: started.elapsed(),
        created: moved.created,
        error,
    }
}

async fn copy(
    source: &dyn Connector,
    target: &dyn Connector,
    plan: &RefreshTablePlan,
    progress: &ProgressSink,
    cancel: &CancellationToken,
    moved: &mut Moved,
) -> Result<(), ConnectorError> {
    if cancel.is_cancelled() {
        return Err(ConnectorError::cancelled());
    }
    let snapshot = reader(source)?.read(plan.read.clone()).await?;
    let mut write = writer(target)?.open(plan.write.clone()).await?;
    let mut batches = snapshot.batches;
    loop {
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => return abandon(write, ConnectorError::cancelled()).await,
            next = batches.next() => next,
        };
        let batch: RowBatch = match next {
            None => break,
            Some(Ok(batch)) => batch,
            Some(Err(error)) => return abandon(write, error.context("reading the source")).await,
        };
        moved.rows += batch.len() as u64;
        moved.bytes += batch.byte_size() as u64;
        let mapped = match plan.mapping.apply(batch) {
            Ok(mapped) => mapped,
            Err(MapError {
                row,
                column,
                reason,
            }) => {
                let message = format!(
                    "target table {} row {} column {}: {reason}",
                    plan.write.table,
                    describe_key(&plan.read.columns, &plan.read.key, &row),
                    plan.write.columns[column].name
                );
                return abandon(write, ConnectorError::data(message)).await;
            }
        };
        if let Err(error) = write.write_batch(mapped).await {
            return abandon(write, error).await;
        }
        progress.send(Progress::Advanced {
            table: plan.name.clone(),
            rows: moved.rows,
            bytes: moved.bytes,
        });
    }
    if cancel.is_cancelled() {
        return abandon(write, ConnectorError::cancelled()).await;
    }
    let summary = write.commit().await?;
    moved.written = summary.rows;
    moved.created = summary.created;
    Ok(())
}

/// Rolls the write back, then returns `error`.
async fn abandon(write: Box<dyn TableWriter>, error: ConnectorError) -> Result<(), ConnectorError> {
    // The rollback's own failure matters less than why we are rolling back; the writer's contract
    // (dropping rolls back) still holds if it fails.
    let _ = write.rollback().await;
    Err(error)
}
