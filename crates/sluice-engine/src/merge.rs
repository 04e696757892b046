//! Merging two key-ordered row streams: the row-wise compare and the row-wise refresh walk both
//! sides in key order with [`KeyedRows`], which also checks that keys strictly increase (a duplicate
//! key or a collation sorting differently from bytewise order fails the merge instead of producing
//! wrong results).

use futures::StreamExt;
use sluice_connector::ConnectorError;
use sluice_model::{RowBatch, describe_key};
use tokio_util::sync::CancellationToken;

/// The order of two rows by the columns at `key`, in [`Value::cmp_key`](sluice_model::Value::cmp_key) order.
pub(crate) fn compare_keys(
    key: &[usize],
    a: &[sluice_model::Value],
    b: &[sluice_model::Value],
) -> std::cmp::Ordering {
    key.iter()
        .map(|&k| a[k].cmp_key(&b[k]))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// Whether two rows hold the same values, by their engine-independent encoding.
pub(crate) fn rows_equal(
    a: &[sluice_model::Value],
    b: &[sluice_model::Value],
    scratch: &mut (Vec<u8>, Vec<u8>),
) -> bool {
    a.iter().zip(b).all(|(x, y)| {
        scratch.0.clear();
        scratch.1.clear();
        x.encode_canonical(&mut scratch.0);
        y.encode_canonical(&mut scratch.1);
        scratch.0 == scratch.1
    })
}

/// Rows of a key-ordered stream, one at a time, checking that keys strictly increase.
pub(crate) struct KeyedRows<'a> {
    batches: futures::stream::BoxStream<'a, Result<RowBatch, ConnectorError>>,
    batch: Option<RowBatch>,
    index: usize,
    started: bool,
    key: Vec<usize>,
    side: &'static str,
    /// Rows passed so far.
    pub(crate) rows: u64,
    /// Bytes of the batches received so far.
    pub(crate) bytes: u64,
}

impl<'a> KeyedRows<'a> {
    pub(crate) fn new(
        batches: futures::stream::BoxStream<'a, Result<RowBatch, ConnectorError>>,
        key: Vec<usize>,
        side: &'static str,
    ) -> Self {
        KeyedRows {
            batches,
            batch: None,
            index: 0,
            started: false,
            key,
            side,
            rows: 0,
            bytes: 0,
        }
    }

    pub(crate) fn row(&self) -> Option<&[sluice_model::Value]> {
        self.batch.as_ref().map(|b| b.row(self.index))
    }

    pub(crate) async fn advance(
        &mut self,
        cancel: &CancellationToken,
        columns: &[sluice_model::ColumnDef],
    ) -> Result<(), ConnectorError> {
        let previous: Option<Vec<sluice_model::Value>> = self
            .row()
            .map(|r| self.key.iter().map(|&k| r[k].clone()).collect());
        if self.started {
            self.index += 1;
        }
        self.started = true;
        loop {
            if let Some(batch) = &self.batch
                && self.index < batch.len()
            {
                let row = batch.row(self.index);
                if let Some(previous) = &previous {
                    let ordered = self
                        .key
                        .iter()
                        .zip(previous)
                        .map(|(&k, p)| p.cmp_key(&row[k]))
                        .find(|o| o.is_ne())
                        == Some(std::cmp::Ordering::Less);
                    if !ordered {
                        return Err(ConnectorError::data(format!(
                            "{} rows are not in strictly increasing key order at key {} (a duplicate key, \
                             or a collation that sorts differently from bytewise order)",
                            self.side,
                            describe_key(columns, &self.key, row)
                        )));
                    }
                }
                self.rows += 1;
                return Ok(());
            }
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(ConnectorError::cancelled()),
                next = self.batches.next() => next,
            };
            match next {
                None => {
                    self.batch = None;
                    return Ok(());
                }
                Some(batch) => {
                    let batch = batch.map_err(|e| e.context(self.side))?;
                    self.bytes += batch.byte_size() as u64;
                    self.batch = Some(batch);
                    self.index = 0;
                }
            }
        }
    }
}
