//! Running a refresh: for each table, read batches from the source, map them, write them to the
//! target in one atomic write, and report progress. A failure or a cancellation rolls the write
//! back before the table's report is returned, so a report that says FAILED or CANCELED means the
//! target is as it was. A commit that has begun is never interrupted by the cancel token: the
//! table ends DONE (or FAILED, when the commit itself fails).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Serialize;
use sluice_connector::{Connector, ConnectorError, ErrorKind, TableWriter, WriteStrategy};
use sluice_model::{Condition, RowBatch, TableName, describe_key};
use tokio_util::sync::CancellationToken;

use crate::EngineError;
use crate::map::MapError;
use crate::merge::{KeyedRows, compare_keys, rows_equal};
use crate::plan::{PlannedApply, RefreshOptions, RefreshTablePlan, RowwiseApply, reader, writer};
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
    /// What the rows written did to the target, for a refresh that changes rows in place
    /// (row-wise, incremental); `None` when the table was replaced whole.
    pub changes: Option<RowChanges>,
    /// Why it failed.
    pub error: Option<EngineError>,
    /// Per slice of a sliced read, in slice order; empty when the table was read whole.
    pub slices: Vec<SliceReport>,
}

/// What a refresh that changes rows in place did to the target table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RowChanges {
    /// A row-wise refresh: each row's fate, from the merge.
    Merged {
        /// Rows only in the source, inserted.
        inserted: u64,
        /// Rows in both whose values differed, updated.
        updated: u64,
        /// Rows only in the target, deleted.
        deleted: u64,
    },
    /// An incremental refresh: rows written by upsert, which inserts or updates by key (telling
    /// the two apart would mean reading the target's keys).
    Upserted {
        /// Rows upserted.
        upserted: u64,
    },
}

/// What one slice of a table's read did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SliceReport {
    /// The slice's label.
    pub label: String,
    /// Rows read.
    pub rows: u64,
    /// Whether the slice was read to its end.
    pub done: bool,
}

/// Asked around each table's commit, so that a cancel and a commit are decided in one place (the
/// caller's record of the run, which other processes see too).
///
/// [`CommitGate::begin`] is asked right before the table's write commits, after every row is
/// written. `true` lets the commit run and tells the caller that from now on the table may end up
/// committed, so a cancel must be refused as too late; `false` (a cancel recorded elsewhere that
/// has not reached the cancel token yet) abandons the table as cancelled and fires the run's
/// cancel token. [`CommitGate::end`] follows every commit `begin` let run, with whether the table
/// committed (a commit that fails rolls back). Neither is called for a table that never reached
/// its commit.
pub trait CommitGate: Send + Sync {
    /// Whether `table` may commit now; `true` records that its commit begins.
    fn begin(&self, table: &TableName) -> BoxFuture<'static, bool>;
    /// How the commit of `table` ended.
    fn end(&self, table: &TableName, committed: bool) -> BoxFuture<'static, ()>;
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
    run_refresh_gated(source, target, plans, options, progress, cancel, None).await
}

/// [`run_refresh`] asking `gate` before each table commits.
pub async fn run_refresh_gated(
    source: Arc<dyn Connector>,
    target: Arc<dyn Connector>,
    plans: Vec<RefreshTablePlan>,
    options: RefreshOptions,
    progress: ProgressSink,
    cancel: CancellationToken,
    gate: Option<Arc<dyn CommitGate>>,
) -> Vec<RefreshReport> {
    let parallel = tables_at_once(target.as_ref(), options.parallel);
    let tables = plans.into_iter().map(|plan| {
        let (source, target) = (Arc::clone(&source), Arc::clone(&target));
        let (progress, cancel) = (progress.clone(), cancel.clone());
        let gate = gate.clone();
        async move {
            let stop = Stop {
                cancel: &cancel,
                gate: gate.as_ref(),
            };
            let report = refresh_table(
                source.as_ref(),
                target.as_ref(),
                &plan,
                &options,
                &progress,
                &stop,
            )
            .await;
            progress.send(Progress::Finished {
                table: plan.name.clone(),
                ok: report.state == RefreshState::Done,
                rows: report.source_rows,
                seconds: report.duration.as_secs_f64(),
            });
            report
        }
    });
    futures::stream::iter(tables)
        .buffered(parallel)
        .collect()
        .await
}

/// How many tables of a run are refreshed at once into `target`: `parallel`, but one at a time
/// into a database that has one writer ([`Capabilities::single_writer`]).
///
/// [`Capabilities::single_writer`]: sluice_connector::Capabilities::single_writer
pub fn tables_at_once(target: &dyn Connector, parallel: usize) -> usize {
    match target.capabilities().single_writer {
        true => 1,
        false => parallel.max(1),
    }
}

/// When a table must stop: its run's cancel token, and the gate asked around its commit.
struct Stop<'a> {
    cancel: &'a CancellationToken,
    gate: Option<&'a Arc<dyn CommitGate>>,
}

impl Stop<'_> {
    /// Commits `write` unless the run was cancelled or the gate refuses; a refused write is
    /// rolled back and answers `Cancelled`.
    async fn commit(
        &self,
        table: &TableName,
        write: Box<dyn TableWriter>,
    ) -> Result<sluice_connector::WriteSummary, ConnectorError> {
        if self.cancel.is_cancelled() {
            return Err(rolled_back(write, ConnectorError::cancelled()).await);
        }
        let Some(gate) = self.gate else {
            return write.commit().await;
        };
        if !gate.begin(table).await {
            self.cancel.cancel();
            return Err(rolled_back(write, ConnectorError::cancelled()).await);
        }
        let outcome = write.commit().await;
        gate.end(table, outcome.is_ok()).await;
        outcome
    }
}

struct Moved {
    rows: u64,
    bytes: u64,
    written: u64,
    created: bool,
    changes: Option<RowChanges>,
    slices: Vec<SliceReport>,
}

async fn refresh_table(
    source: &dyn Connector,
    target: &dyn Connector,
    plan: &RefreshTablePlan,
    options: &RefreshOptions,
    progress: &ProgressSink,
    stop: &Stop<'_>,
) -> RefreshReport {
    let started = Instant::now();
    // An incremental read's bound is not a filter the count could take: its total stays unknown
    // rather than counting the whole table.
    let total_rows = if options.count_first && plan.read.lower_bound.is_none() {
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
        changes: None,
        slices: Vec::new(),
    };
    let outcome = match &plan.apply {
        PlannedApply::Load => copy(source, target, plan, progress, stop, &mut moved).await,
        PlannedApply::Rowwise { target_read, apply } => {
            rowwise(
                source,
                target,
                plan,
                target_read,
                *apply,
                progress,
                stop,
                &mut moved,
            )
            .await
        }
    };
    if outcome.is_ok()
        && matches!(plan.apply, PlannedApply::Load)
        && plan.write.strategy == WriteStrategy::Upsert
    {
        moved.changes = Some(RowChanges::Upserted {
            upserted: moved.written,
        });
    }
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
        // A table that did not commit changed nothing.
        changes: moved.changes.filter(|_| state == RefreshState::Done),
        error,
        slices: moved.slices,
    }
}

async fn copy(
    source: &dyn Connector,
    target: &dyn Connector,
    plan: &RefreshTablePlan,
    progress: &ProgressSink,
    stop: &Stop<'_>,
    moved: &mut Moved,
) -> Result<(), ConnectorError> {
    let cancel = stop.cancel;
    if cancel.is_cancelled() {
        return Err(ConnectorError::cancelled());
    }
    let mut write = writer(target)?.open(plan.write.clone()).await?;
    let source_reader = reader(source)?;
    if let Some(slices) = &plan.slices {
        return copy_sliced(source_reader, write, plan, slices, progress, stop, moved).await;
    }
    if plan.mapping.is_identity()
        && let Some(format) = write.raw_format()
        && source_reader.raw_format(&plan.read).as_ref() == Some(&format)
    {
        return copy_raw(source_reader, write, plan, progress, stop, moved).await;
    }
    let snapshot = match source_reader.read(plan.read.clone()).await {
        Ok(snapshot) => snapshot,
        Err(error) => return abandon(write, error).await,
    };
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
        let mapped = match map_batch(plan, batch) {
            Ok(mapped) => mapped,
            Err(error) => return abandon(write, error).await,
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
    let summary = stop.commit(&plan.name, write).await?;
    moved.written = summary.rows;
    moved.created = summary.created;
    Ok(())
}

/// Pipes the source's raw encoding into the target untouched: both ends speak the same format
/// and no value needs converting, so nothing is decoded.
async fn copy_raw(
    source: &dyn sluice_connector::SnapshotReader,
    mut write: Box<dyn TableWriter>,
    plan: &RefreshTablePlan,
    progress: &ProgressSink,
    stop: &Stop<'_>,
    moved: &mut Moved,
) -> Result<(), ConnectorError> {
    let cancel = stop.cancel;
    let raw = match source.read_raw(plan.read.clone()).await {
        Ok(raw) => raw,
        Err(error) => return abandon(write, error).await,
    };
    let mut chunks = raw.chunks;
    let mut last_report = Instant::now();
    loop {
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => return abandon(write, ConnectorError::cancelled()).await,
            next = chunks.next() => next,
        };
        let chunk = match next {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(error)) => return abandon(write, error.context("reading the source")).await,
        };
        moved.bytes += chunk.len() as u64;
        if let Err(error) = write.write_raw(chunk).await {
            return abandon(write, error).await;
        }
        if last_report.elapsed() >= Duration::from_millis(200) {
            last_report = Instant::now();
            progress.send(Progress::Advanced {
                table: plan.name.clone(),
                rows: moved.rows,
                bytes: moved.bytes,
            });
        }
    }
    let summary = stop.commit(&plan.name, write).await?;
    moved.rows = summary.rows;
    moved.written = summary.rows;
    moved.created = summary.created;
    Ok(())
}

/// What a slice's read hands to the write.
enum SliceMessage {
    Batch(usize, RowBatch),
    Done(usize),
    Failed(usize, ConnectorError),
}

/// Reads the slices of a table, up to `slices.parallel` at once and all in one shared snapshot
/// when the source can share one, into the table's one write: the write commits once, after
/// every slice was read to its end, so the table is replaced atomically (a failed or cancelled
/// slice rolls everything back).
async fn copy_sliced(
    source: &dyn sluice_connector::SnapshotReader,
    mut write: Box<dyn TableWriter>,
    plan: &RefreshTablePlan,
    slices: &crate::plan::Slices,
    progress: &ProgressSink,
    stop: &Stop<'_>,
    moved: &mut Moved,
) -> Result<(), ConnectorError> {
    let cancel = stop.cancel;
    let shared = match source.share_snapshot().await {
        Ok(shared) => shared,
        Err(error) => return abandon(write, error.context("sharing a snapshot")).await,
    };
    moved.slices = slices
        .filters
        .iter()
        .map(|(label, _)| SliceReport {
            label: label.clone(),
            rows: 0,
            done: false,
        })
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel::<SliceMessage>(2 * slices.parallel.max(1));
    let shared = shared.as_deref();
    let filters: Vec<Condition> = slices.filters.iter().map(|(_, f)| f.clone()).collect();
    let reads = futures::stream::iter(filters.into_iter().enumerate())
        .map(move |(i, filter)| {
            let tx = tx.clone();
            let mut request = plan.read.clone();
            request.filter = Some(filter);
            async move {
                let snapshot = match shared {
                    Some(shared) => source.read_shared(request, shared).await,
                    None => source.read(request).await,
                };
                let mut batches = match snapshot {
                    Ok(snapshot) => snapshot.batches,
                    Err(error) => {
                        let _ = tx.send(SliceMessage::Failed(i, error)).await;
                        return;
                    }
                };
                while let Some(next) = batches.next().await {
                    let message = match next {
                        Ok(batch) => SliceMessage::Batch(i, batch),
                        Err(error) => SliceMessage::Failed(i, error),
                    };
                    let failed = matches!(message, SliceMessage::Failed(..));
                    if tx.send(message).await.is_err() || failed {
                        return;
                    }
                }
                let _ = tx.send(SliceMessage::Done(i)).await;
            }
        })
        .buffer_unordered(slices.parallel.max(1))
        .collect::<()>();
    // Each slice ends with one `Done` or `Failed` (the senders live on in `reads` until the
    // join ends, so the channel does not close first).
    let write_all = async {
        // Owned here, so that a write that stops early drops it and the reads stop too.
        let mut rx = rx;
        let mut finished = 0;
        while finished < moved.slices.len() {
            let message = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(ConnectorError::cancelled()),
                message = rx.recv() => message,
            };
            match message {
                None => return Ok(()),
                Some(SliceMessage::Batch(i, batch)) => {
                    moved.rows += batch.len() as u64;
                    moved.bytes += batch.byte_size() as u64;
                    moved.slices[i].rows += batch.len() as u64;
                    write.write_batch(map_batch(plan, batch)?).await?;
                    progress.send(Progress::Advanced {
                        table: plan.name.clone(),
                        rows: moved.rows,
                        bytes: moved.bytes,
                    });
                }
                Some(SliceMessage::Done(i)) => {
                    moved.slices[i].done = true;
                    finished += 1;
                }
                Some(SliceMessage::Failed(i, error)) => {
                    return Err(error.context(format!(
                        "reading slice {} of the source",
                        moved.slices[i].label
                    )));
                }
            }
        }
        Ok(())
    };
    let ((), outcome) = futures::join!(reads, write_all);
    if let Err(error) = outcome {
        return abandon(write, error).await;
    }
    if let Some(slice) = moved.slices.iter().find(|s| !s.done) {
        let error =
            ConnectorError::internal(format!("slice {} was not read to its end", slice.label));
        return abandon(write, error).await;
    }
    let summary = stop.commit(&plan.name, write).await?;
    moved.written = summary.rows;
    moved.created = summary.created;
    Ok(())
}

/// Maps a source batch to target columns, naming the row and column of a value that does not fit.
fn map_batch(plan: &RefreshTablePlan, batch: RowBatch) -> Result<RowBatch, ConnectorError> {
    plan.mapping.apply(batch).map_err(
        |MapError {
             row,
             column,
             reason,
         }| {
            ConnectorError::data(format!(
                "target table {} row {} column {}: {reason}",
                plan.write.table,
                describe_key(&plan.read.columns, &plan.read.key, &row),
                plan.write.columns[column].name
            ))
        },
    )
}

/// A row-wise refresh: merge the source (mapped to target types) and the target by key, both
/// ordered, and write only what differs: rows only on the source and differing rows as upserts,
/// rows only on the target as deletes, all in one atomic write.
#[allow(clippy::too_many_arguments)]
async fn rowwise(
    source: &dyn Connector,
    target: &dyn Connector,
    plan: &RefreshTablePlan,
    target_read: &sluice_connector::ReadRequest,
    apply: RowwiseApply,
    progress: &ProgressSink,
    stop: &Stop<'_>,
    moved: &mut Moved,
) -> Result<(), ConnectorError> {
    let cancel = stop.cancel;
    if cancel.is_cancelled() {
        return Err(ConnectorError::cancelled());
    }
    let source_rows = reader(source)?.read(plan.read.clone()).await?.batches;
    let target_rows = reader(target)?.read(target_read.clone()).await?.batches;
    let mut write = writer(target)?.open(plan.write.clone()).await?;
    let outcome = rowwise_merge(
        plan,
        target_read,
        apply,
        source_rows,
        target_rows,
        write.as_mut(),
        progress,
        cancel,
        moved,
    )
    .await;
    if let Err(error) = outcome {
        return abandon(write, error).await;
    }
    let summary = stop.commit(&plan.name, write).await?;
    moved.created = summary.created;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn rowwise_merge(
    plan: &RefreshTablePlan,
    target_read: &sluice_connector::ReadRequest,
    apply: RowwiseApply,
    source_rows: futures::stream::BoxStream<'static, Result<RowBatch, ConnectorError>>,
    target_rows: futures::stream::BoxStream<'static, Result<RowBatch, ConnectorError>>,
    write: &mut dyn TableWriter,
    progress: &ProgressSink,
    cancel: &CancellationToken,
    moved: &mut Moved,
) -> Result<(), ConnectorError> {
    use std::cmp::Ordering;
    let key = plan.write.key.clone();
    let width = plan.write.columns.len();
    let limits = plan.read.limits;
    // Source rows arrive in source batches; map each to target columns before merging.
    let mapped = source_rows.map(|batch| batch.and_then(|b| map_batch(plan, b)));
    let mut s = KeyedRows::new(Box::pin(mapped), key.clone(), "source");
    let mut t = KeyedRows::new(target_rows, key.clone(), "target");
    let mut puts = RowBatch::new(width, limits);
    let mut deletes = RowBatch::new(key.len(), limits);
    let mut scratch = (Vec::new(), Vec::new());
    s.advance(cancel, &plan.write.columns).await?;
    t.advance(cancel, &target_read.columns).await?;
    let mut since_progress = 0u64;
    let (mut inserted, mut updated, mut deleted) = (0u64, 0u64, 0u64);
    loop {
        let order = match (s.row(), t.row()) {
            (Some(a), Some(b)) => compare_keys(&key, a, b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => break,
        };
        match order {
            Ordering::Less => {
                if apply.puts() {
                    put(&mut puts, s.row(), write, moved).await?;
                    inserted += 1;
                }
                s.advance(cancel, &plan.write.columns).await?;
            }
            Ordering::Greater => {
                if apply.deletes()
                    && let Some(row) = t.row()
                {
                    if deletes.is_full() {
                        write.delete_batch(deletes.take()).await?;
                    }
                    deletes
                        .push_row(key.iter().map(|&k| row[k].clone()))
                        .map_err(|e| ConnectorError::internal(e.to_string()))?;
                    deleted += 1;
                }
                t.advance(cancel, &target_read.columns).await?;
            }
            Ordering::Equal => {
                let same = match (s.row(), t.row()) {
                    (Some(a), Some(b)) => rows_equal(a, b, &mut scratch),
                    _ => false,
                };
                if !same && apply.puts() {
                    put(&mut puts, s.row(), write, moved).await?;
                    updated += 1;
                }
                s.advance(cancel, &plan.write.columns).await?;
                t.advance(cancel, &target_read.columns).await?;
            }
        }
        since_progress += 1;
        if since_progress >= 10_000 {
            since_progress = 0;
            moved.rows = s.rows;
            moved.bytes = s.bytes + t.bytes;
            progress.send(Progress::Advanced {
                table: plan.name.clone(),
                rows: moved.rows,
                bytes: moved.bytes,
            });
        }
    }
    if !puts.is_empty() {
        write.write_batch(puts).await?;
    }
    if !deletes.is_empty() {
        write.delete_batch(deletes).await?;
    }
    moved.changes = Some(RowChanges::Merged {
        inserted,
        updated,
        deleted,
    });
    moved.rows = s.rows;
    moved.bytes = s.bytes + t.bytes;
    Ok(())
}

async fn put(
    puts: &mut RowBatch,
    row: Option<&[sluice_model::Value]>,
    write: &mut dyn TableWriter,
    moved: &mut Moved,
) -> Result<(), ConnectorError> {
    let Some(row) = row else { return Ok(()) };
    if puts.is_full() {
        write.write_batch(puts.take()).await?;
    }
    puts.push_row(row.iter().cloned())
        .map_err(|e| ConnectorError::internal(e.to_string()))?;
    moved.written += 1;
    Ok(())
}

/// Rolls the write back, then returns `error`.
async fn abandon(write: Box<dyn TableWriter>, error: ConnectorError) -> Result<(), ConnectorError> {
    Err(rolled_back(write, error).await)
}

/// Rolls the write back and hands back `error`.
async fn rolled_back(write: Box<dyn TableWriter>, error: ConnectorError) -> ConnectorError {
    // The rollback's own failure matters less than why we are rolling back; the writer's contract
    // (dropping rolls back) still holds if it fails.
    let _ = write.rollback().await;
    error
}

#[cfg(test)]
mod at_once_tests {
    use super::tables_at_once;
    use sluice_connector::kit::memory::MemoryConnector;

    #[test]
    fn tables_run_in_parallel_unless_the_target_has_one_writer() {
        let memory = MemoryConnector::new();
        assert_eq!(tables_at_once(&memory, 4), 4);
        assert_eq!(tables_at_once(&memory, 0), 1);
        // SQLite's single writer is checked in the service's and the CLI's tests, on real files.
    }
}
