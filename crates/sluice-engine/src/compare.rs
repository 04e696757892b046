//! Running a compare.
//!
//! * **Bulk**: both tables are read in any order; each side's rows are counted and each row hashed
//!   (xxh3-128 of its engine-independent encoding, [`Value::encode_canonical`]) and the hashes summed.
//!   A sum does not depend on row order and, unlike XOR, does not let duplicate rows cancel out.
//! * **Row-wise**: both tables are read ordered by key and merged; every key is only on the source,
//!   only on the target, or on both with equal or differing values. Counts are exact; the keys listed
//!   are capped. Each side must arrive in strictly increasing key order; anything else (a collation
//!   that sorts differently, a duplicate key) fails the compare rather than reporting wrong rows.
//!
//! With [`CompareOptions::pushdown`] (the default), when both locations checksum key ranges in
//! the same dialect, either granularity first narrows the table to the key ranges whose row
//! counts or checksums differ, computed in the databases ([`crate::checksum`]), and merges only
//! those ranges' rows by key as row-wise does: identical tables move no rows, and the counts and
//! keys of a row-wise diff are the same as reading every row. A bulk compare reports the
//! databases' counts and the sums of their checksums, and is identical when the narrowed ranges
//! hold no difference.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;
use sluice_connector::{Connector, ConnectorError, ErrorKind, ReadRequest, Result};
use sluice_model::{RowBatch, TableName, Value};
use tokio_util::sync::CancellationToken;

use crate::EngineError;
use crate::merge::{KeyedRows, compare_keys, rows_equal};
use crate::plan::{CompareTablePlan, Granularity, reader};
use crate::progress::{Progress, ProgressSink};

/// How a table's compare ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompareState {
    /// Both sides hold the same rows.
    Identical,
    /// The sides differ.
    Different,
    /// The compare failed.
    Failed,
    /// The compare was cancelled.
    Canceled,
}

impl CompareState {
    /// The spelling in output.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareState::Identical => "IDENTICAL",
            CompareState::Different => "DIFFERENT",
            CompareState::Failed => "FAILED",
            CompareState::Canceled => "CANCELED",
        }
    }
}

/// Rows found on one side only or differing, with counts and the first keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RowDiff {
    /// Rows only in the source.
    pub only_on_source: u64,
    /// Rows only in the target.
    pub only_on_target: u64,
    /// Rows in both with different values.
    pub differ: u64,
    /// The first keys only in the source.
    pub only_on_source_keys: Vec<Vec<Value>>,
    /// The first keys only in the target.
    pub only_on_target_keys: Vec<Vec<Value>>,
    /// The first keys that differ.
    pub differ_keys: Vec<Vec<Value>>,
}

impl RowDiff {
    /// Whether no difference was found.
    pub fn is_empty(&self) -> bool {
        self.only_on_source == 0 && self.only_on_target == 0 && self.differ == 0
    }
}

/// What a table's compare found.
#[derive(Debug)]
pub struct CompareReport {
    /// The channel's name for the table.
    pub name: TableName,
    /// How it ended.
    pub state: CompareState,
    /// Rows read at the source.
    pub source_rows: u64,
    /// Rows read at the target.
    pub target_rows: u64,
    /// Bytes of row data compared.
    pub bytes: u64,
    /// Time spent.
    pub duration: Duration,
    /// Bulk checksums (source, target) as hex, when bulk.
    pub checksums: Option<(String, String)>,
    /// Row-wise differences, when row-wise.
    pub diff: Option<RowDiff>,
    /// Why it failed.
    pub error: Option<EngineError>,
}

/// Options of a compare run.
#[derive(Debug, Clone, Copy)]
pub struct CompareOptions {
    /// Bulk or row-wise.
    pub granularity: Granularity,
    /// How many keys of each kind a row-wise diff lists.
    pub max_listed: usize,
    /// Narrow the compare with checksums computed in the databases when both sides can
    /// ([`crate::checksum`]); `false` reads every row.
    pub pushdown: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            granularity: Granularity::Bulk,
            max_listed: 100,
            pushdown: true,
        }
    }
}

/// Compares the planned tables one after another.
pub async fn run_compare(
    source: Arc<dyn Connector>,
    target: Arc<dyn Connector>,
    plans: Vec<CompareTablePlan>,
    options: CompareOptions,
    progress: ProgressSink,
    cancel: CancellationToken,
) -> Vec<CompareReport> {
    let mut reports = Vec::with_capacity(plans.len());
    for plan in plans {
        progress.send(Progress::Started {
            table: plan.name.clone(),
            total_rows: None,
        });
        let started = Instant::now();
        let mut report = CompareReport {
            name: plan.name.clone(),
            state: CompareState::Failed,
            source_rows: 0,
            target_rows: 0,
            bytes: 0,
            duration: Duration::ZERO,
            checksums: None,
            diff: None,
            error: None,
        };
        let pushdown = options
            .pushdown
            .then(|| crate::checksum::shared_dialect(source.as_ref(), target.as_ref(), &plan))
            .flatten();
        let outcome = match options.granularity {
            _ if pushdown.is_some() => {
                narrowed(
                    source.as_ref(),
                    target.as_ref(),
                    &plan,
                    &options,
                    &progress,
                    &cancel,
                    &mut report,
                )
                .await
            }
            Granularity::Bulk => {
                bulk(
                    source.as_ref(),
                    target.as_ref(),
                    &plan,
                    &progress,
                    &cancel,
                    &mut report,
                )
                .await
            }
            Granularity::Rowwise => {
                rowwise(
                    source.as_ref(),
                    target.as_ref(),
                    &plan,
                    &options,
                    &progress,
                    &cancel,
                    &mut report,
                )
                .await
            }
        };
        match outcome {
            Ok(identical) => {
                report.state = if identical {
                    CompareState::Identical
                } else {
                    CompareState::Different
                };
            }
            Err(error) => {
                report.state = if error.kind() == ErrorKind::Cancelled {
                    CompareState::Canceled
                } else {
                    CompareState::Failed
                };
                report.error = Some(EngineError::table(&plan.name, error));
            }
        }
        report.duration = started.elapsed();
        progress.send(Progress::Finished {
            table: plan.name.clone(),
            ok: report.error.is_none(),
            rows: report.source_rows,
            seconds: report.duration.as_secs_f64(),
        });
        reports.push(report);
    }
    reports
}

pub(crate) async fn open(
    c: &dyn Connector,
    request: &ReadRequest,
    side: &str,
) -> Result<BoxStream<'static, Result<RowBatch>>> {
    let snapshot = reader(c)?
        .read(request.clone())
        .await
        .map_err(|e| e.context(side))?;
    Ok(snapshot.batches)
}

/// The target's rows with values converted to the source's column types where the two differ.
pub(crate) async fn open_target(
    c: &dyn Connector,
    plan: &CompareTablePlan,
    read: &ReadRequest,
) -> Result<BoxStream<'static, Result<RowBatch>>> {
    let batches = open(c, read, "target").await?;
    if plan.target_as_source.iter().all(Option::is_none) {
        return Ok(batches);
    }
    let conversions = plan.target_as_source.clone();
    Ok(Box::pin(batches.map(move |batch| {
        batch.map(|mut batch| {
            for row in batch.rows_mut() {
                for (value, to) in row.iter_mut().zip(&conversions) {
                    if let Some(to) = to
                        && let Ok(converted) = crate::map::convert(value.clone(), *to)
                    {
                        *value = converted;
                    }
                }
            }
            batch
        })
    })))
}

/// Count, hash sum and bytes of one side.
struct Digest {
    rows: u64,
    sum: u128,
    bytes: u64,
}

async fn digest(
    mut batches: BoxStream<'static, Result<RowBatch>>,
    side: &str,
    report_progress: Option<(&ProgressSink, &TableName)>,
    cancel: &CancellationToken,
) -> Result<Digest> {
    let mut d = Digest {
        rows: 0,
        sum: 0,
        bytes: 0,
    };
    let mut buffer = Vec::with_capacity(256);
    loop {
        let next = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(ConnectorError::cancelled()),
            next = batches.next() => next,
        };
        let Some(batch) = next else { break };
        let batch = batch.map_err(|e| e.context(side))?;
        for row in batch.rows() {
            buffer.clear();
            for value in row {
                value.encode_canonical(&mut buffer);
            }
            d.sum = d.sum.wrapping_add(xxhash_rust::xxh3::xxh3_128(&buffer));
        }
        d.rows += batch.len() as u64;
        d.bytes += batch.byte_size() as u64;
        if let Some((progress, table)) = report_progress {
            progress.send(Progress::Advanced {
                table: table.clone(),
                rows: d.rows,
                bytes: d.bytes,
            });
        }
    }
    Ok(d)
}

async fn bulk(
    source: &dyn Connector,
    target: &dyn Connector,
    plan: &CompareTablePlan,
    progress: &ProgressSink,
    cancel: &CancellationToken,
    report: &mut CompareReport,
) -> Result<bool> {
    let s = open(source, &plan.source_read, "source").await?;
    let t = open_target(target, plan, &plan.target_read).await?;
    let (s, t) = tokio::try_join!(
        digest(s, "source", Some((progress, &plan.name)), cancel),
        digest(t, "target", None, cancel)
    )?;
    report.source_rows = s.rows;
    report.target_rows = t.rows;
    report.bytes = s.bytes + t.bytes;
    report.checksums = Some((format!("{:032x}", s.sum), format!("{:032x}", t.sum)));
    Ok(s.rows == t.rows && s.sum == t.sum)
}

async fn rowwise(
    source: &dyn Connector,
    target: &dyn Connector,
    plan: &CompareTablePlan,
    options: &CompareOptions,
    progress: &ProgressSink,
    cancel: &CancellationToken,
    report: &mut CompareReport,
) -> Result<bool> {
    let mut diff = RowDiff::default();
    let merged = merge(
        source,
        target,
        plan,
        &plan.source_read,
        &plan.target_read,
        options,
        progress,
        cancel,
        &mut diff,
    )
    .await?;
    report.source_rows = merged.source_rows;
    report.target_rows = merged.target_rows;
    report.bytes = merged.bytes;
    let identical = diff.is_empty();
    report.diff = Some(diff);
    Ok(identical)
}

/// Narrows the table with the databases' checksums, then merges the rows of the ranges that
/// differ. A bulk compare reports the databases' counts and checksum sums; a row-wise one the
/// exact differences.
async fn narrowed(
    source: &dyn Connector,
    target: &dyn Connector,
    plan: &CompareTablePlan,
    options: &CompareOptions,
    progress: &ProgressSink,
    cancel: &CancellationToken,
    report: &mut CompareReport,
) -> Result<bool> {
    let narrowed = crate::checksum::narrow(source, target, plan, cancel).await?;
    progress.send(Progress::Advanced {
        table: plan.name.clone(),
        rows: narrowed.source_rows,
        bytes: 0,
    });
    let mut diff = RowDiff::default();
    let mut bytes = 0;
    for range in &narrowed.differing {
        let mut source_read = plan.source_read.clone();
        let mut target_read = plan.target_read.clone();
        for read in [&mut source_read, &mut target_read] {
            read.ordered = true;
            read.key_range = Some(range.clone());
        }
        let merged = merge(
            source,
            target,
            plan,
            &source_read,
            &target_read,
            options,
            &ProgressSink::none(),
            cancel,
            &mut diff,
        )
        .await?;
        bytes += merged.bytes;
    }
    report.source_rows = narrowed.source_rows;
    report.target_rows = narrowed.target_rows;
    report.bytes = bytes;
    let identical = diff.is_empty();
    match options.granularity {
        Granularity::Bulk => {
            report.checksums = Some((
                format!("{:032x}", narrowed.source_sum as u128),
                format!("{:032x}", narrowed.target_sum as u128),
            ));
        }
        Granularity::Rowwise => report.diff = Some(diff),
    }
    Ok(identical)
}

/// What merging two reads passed.
struct Merged {
    source_rows: u64,
    target_rows: u64,
    bytes: u64,
}

/// Merges the rows of two key-ordered reads, adding what differs to `diff`.
#[allow(clippy::too_many_arguments)]
async fn merge(
    source: &dyn Connector,
    target: &dyn Connector,
    plan: &CompareTablePlan,
    source_read: &ReadRequest,
    target_read: &ReadRequest,
    options: &CompareOptions,
    progress: &ProgressSink,
    cancel: &CancellationToken,
    diff: &mut RowDiff,
) -> Result<Merged> {
    let key = source_read.key.clone();
    let mut s = KeyedRows::new(
        open(source, source_read, "source").await?,
        key.clone(),
        "source",
    );
    let mut t = KeyedRows::new(
        open_target(target, plan, target_read).await?,
        key.clone(),
        "target",
    );
    let key_of = |row: &[Value]| key.iter().map(|&k| row[k].clone()).collect::<Vec<_>>();
    let mut scratch = (Vec::new(), Vec::new());
    s.advance(cancel, &source_read.columns).await?;
    t.advance(cancel, &target_read.columns).await?;
    let mut since_progress = 0u64;
    loop {
        let order = match (s.row(), t.row()) {
            (Some(a), Some(b)) => compare_keys(&key, a, b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => break,
        };
        match order {
            Ordering::Less => {
                diff.only_on_source += 1;
                if diff.only_on_source_keys.len() < options.max_listed
                    && let Some(row) = s.row()
                {
                    diff.only_on_source_keys.push(key_of(row));
                }
                s.advance(cancel, &source_read.columns).await?;
            }
            Ordering::Greater => {
                diff.only_on_target += 1;
                if diff.only_on_target_keys.len() < options.max_listed
                    && let Some(row) = t.row()
                {
                    diff.only_on_target_keys.push(key_of(row));
                }
                t.advance(cancel, &target_read.columns).await?;
            }
            Ordering::Equal => {
                if let (Some(a), Some(b)) = (s.row(), t.row())
                    && !rows_equal(a, b, &mut scratch)
                {
                    diff.differ += 1;
                    if diff.differ_keys.len() < options.max_listed {
                        diff.differ_keys.push(key_of(a));
                    }
                }
                s.advance(cancel, &source_read.columns).await?;
                t.advance(cancel, &target_read.columns).await?;
            }
        }
        since_progress += 1;
        if since_progress >= 10_000 {
            since_progress = 0;
            progress.send(Progress::Advanced {
                table: plan.name.clone(),
                rows: s.rows,
                bytes: s.bytes,
            });
        }
    }
    Ok(Merged {
        source_rows: s.rows,
        target_rows: t.rows,
        bytes: s.bytes + t.bytes,
    })
}
