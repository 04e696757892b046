//! Narrowing a compare down to the key ranges that differ, without moving rows (as data-diff
//! does): both databases count and checksum the rows of the same key ranges
//! ([`SnapshotReader::checksum_ranges`]); ranges whose (count, checksum) pairs are equal hold the
//! same rows and are done; a range that differs is cut again
//! ([`SnapshotReader::split_range`]) until it holds at most [`READ_ROWS`] rows on either side,
//! and only those ranges are read row by row.
//!
//! Checksums are compared only when both readers name the same checksum dialect for the plan's
//! reads, the plan compares the table's whole key, and no column needs converting; otherwise the
//! compare reads every row as it always did.

use sluice_connector::{
    Connector, ConnectorError, KeyRange, RangeChecksum, Result, SnapshotReader,
};
use sluice_model::Value;
use tokio_util::sync::CancellationToken;

use crate::plan::{CompareTablePlan, reader};

/// Parts the whole key range is first cut into.
pub(crate) const FIRST_PARTS: usize = 32;
/// Parts a differing range is cut into.
pub(crate) const BISECT_PARTS: usize = 16;
/// A differing range holding at most this many rows on each side is read row by row.
pub(crate) const READ_ROWS: u64 = 2_000;

/// What the checksums of a table found.
#[derive(Debug, Default)]
pub(crate) struct Narrowed {
    /// Rows at the source, counted in the database.
    pub(crate) source_rows: u64,
    /// Rows at the target, counted in the database.
    pub(crate) target_rows: u64,
    /// The sum of the source's range checksums.
    pub(crate) source_sum: i128,
    /// The sum of the target's range checksums.
    pub(crate) target_sum: i128,
    /// The ranges that differ, in key order; the rows outside them are equal.
    pub(crate) differing: Vec<KeyRange>,
}

/// The checksum dialect both sides share for `plan`, when the compare can push checksums down.
pub(crate) fn shared_dialect(
    source: &dyn Connector,
    target: &dyn Connector,
    plan: &CompareTablePlan,
) -> Option<String> {
    if !plan.whole_key || plan.target_as_source.iter().any(Option::is_some) {
        return None;
    }
    let s = source
        .snapshot_reader()?
        .checksum_dialect(&plan.source_read)?;
    let t = target
        .snapshot_reader()?
        .checksum_dialect(&plan.target_read)?;
    (s == t).then_some(s)
}

/// One step of the narrowing.
enum Step {
    /// Checksum the parts of the range cut at the keys.
    Check(KeyRange, Vec<Vec<Value>>),
    /// The range differs and is small enough to read.
    Read(KeyRange),
}

/// Checksums both sides range by range and returns the ranges that differ.
pub(crate) async fn narrow(
    source: &dyn Connector,
    target: &dyn Connector,
    plan: &CompareTablePlan,
    cancel: &CancellationToken,
) -> Result<Narrowed> {
    let s = reader(source)?;
    let t = reader(target)?;
    let mut cuts = s
        .split_range(&plan.source_read, &KeyRange::all(), FIRST_PARTS)
        .await
        .map_err(|e| e.context("source"))?;
    if cuts.is_empty() {
        cuts = t
            .split_range(&plan.target_read, &KeyRange::all(), FIRST_PARTS)
            .await
            .map_err(|e| e.context("target"))?;
    }
    let mut narrowed = Narrowed::default();
    let mut first = true;
    // A stack holding the steps of later keys below those of earlier ones, so ranges to read
    // come out in key order.
    let mut steps = vec![Step::Check(KeyRange::all(), cuts)];
    while let Some(step) = steps.pop() {
        if cancel.is_cancelled() {
            return Err(ConnectorError::cancelled());
        }
        let (range, cuts) = match step {
            Step::Read(range) => {
                narrowed.differing.push(range);
                continue;
            }
            Step::Check(range, cuts) => (range, cuts),
        };
        let (a, b) = tokio::try_join!(
            async {
                s.checksum_ranges(&plan.source_read, &range, &cuts)
                    .await
                    .map_err(|e| e.context("source"))
            },
            async {
                t.checksum_ranges(&plan.target_read, &range, &cuts)
                    .await
                    .map_err(|e| e.context("target"))
            }
        )?;
        let parts = range.split_at(&cuts);
        if a.len() != parts.len() || b.len() != parts.len() {
            return Err(ConnectorError::internal(format!(
                "{} key ranges checksummed, {} and {} checksums answered",
                parts.len(),
                a.len(),
                b.len()
            )));
        }
        if first {
            first = false;
            narrowed.source_rows = a.iter().map(|c| c.rows).sum();
            narrowed.target_rows = b.iter().map(|c| c.rows).sum();
            narrowed.source_sum = a.iter().fold(0, |sum, c| sum.wrapping_add(c.checksum));
            narrowed.target_sum = b.iter().fold(0, |sum, c| sum.wrapping_add(c.checksum));
        }
        let mut next = Vec::new();
        for ((part, x), y) in parts.into_iter().zip(a).zip(b) {
            if x == y {
                continue;
            }
            next.push(refine(s, t, plan, part, x, y).await?);
        }
        steps.extend(next.into_iter().rev());
    }
    Ok(narrowed)
}

/// What to do with a range whose checksums differ: read it when small, else cut it at keys of
/// the side holding more of its rows.
async fn refine(
    s: &dyn SnapshotReader,
    t: &dyn SnapshotReader,
    plan: &CompareTablePlan,
    range: KeyRange,
    x: RangeChecksum,
    y: RangeChecksum,
) -> Result<Step> {
    if x.rows.max(y.rows) <= READ_ROWS {
        return Ok(Step::Read(range));
    }
    let cuts = if x.rows >= y.rows {
        s.split_range(&plan.source_read, &range, BISECT_PARTS)
            .await
            .map_err(|e| e.context("source"))?
    } else {
        t.split_range(&plan.target_read, &range, BISECT_PARTS)
            .await
            .map_err(|e| e.context("target"))?
    };
    Ok(if cuts.is_empty() {
        Step::Read(range)
    } else {
        Step::Check(range, cuts)
    })
}
