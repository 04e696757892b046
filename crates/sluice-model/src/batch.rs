//! Bounded batches of rows: the unit that travels from a reader through the engine to a writer.
//!
//! **Why row-major.** Every engine sluice talks to produces and consumes rows: SQLite steps a
//! statement row by row and binds one row per insert, PostgreSQL's binary COPY frames tuples, MariaDB
//! returns rows and `LOAD DATA` reads lines. A column-major batch would need a transpose on both ends
//! of every hop and buys nothing without a columnar consumer. The values of all rows sit in one flat
//! `Vec`, so a batch costs one allocation rather than one per row, and a row is a slice.
//!
//! **Why bounded.** Memory must depend on the batch size, never on the table size: a batch refuses
//! rows beyond its row limit, reports when it reaches its byte limit, and readers hand it on then.

use crate::value::Value;

/// The most a batch may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Rows per batch.
    pub max_rows: usize,
    /// Approximate bytes of values per batch (see [`Value::byte_size`]).
    pub max_bytes: usize,
}

impl BatchLimits {
    /// The default limits: 10,000 rows or 16 MiB, whichever comes first.
    pub const DEFAULT: BatchLimits = BatchLimits {
        max_rows: 10_000,
        max_bytes: 16 << 20,
    };

    /// Limits with `max_rows` rows and the default byte limit.
    pub fn rows(max_rows: usize) -> Self {
        BatchLimits {
            max_rows: max_rows.max(1),
            ..Self::DEFAULT
        }
    }
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A row that did not fit its batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The row has the wrong number of values.
    #[error("row has {got} values, the batch has {width} columns")]
    Width {
        /// Values given.
        got: usize,
        /// Columns of the batch.
        width: usize,
    },
    /// The batch is already full.
    #[error("batch is full ({rows} rows)")]
    Full {
        /// Rows in the batch.
        rows: usize,
    },
}

/// A bounded, row-major batch of rows with a fixed number of columns.
#[derive(Debug, Clone, PartialEq)]
pub struct RowBatch {
    width: usize,
    values: Vec<Value>,
    byte_size: usize,
    limits: BatchLimits,
}

impl RowBatch {
    /// An empty batch of `width` columns.
    pub fn new(width: usize, limits: BatchLimits) -> Self {
        let reserve = limits.max_rows.min(4096) * width;
        RowBatch {
            width,
            values: Vec::with_capacity(reserve),
            byte_size: 0,
            limits,
        }
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.width).unwrap_or(0)
    }

    /// Whether the batch holds no rows.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Approximate bytes of the values held.
    pub fn byte_size(&self) -> usize {
        self.byte_size
    }

    /// The limits this batch was made with.
    pub fn limits(&self) -> BatchLimits {
        self.limits
    }

    /// Whether the batch has reached its row or byte limit and should be handed on.
    pub fn is_full(&self) -> bool {
        self.len() >= self.limits.max_rows || self.byte_size >= self.limits.max_bytes
    }

    /// Appends one row. Fails, leaving the batch as it was, when the row has the wrong width or the
    /// batch is already full.
    pub fn push_row(&mut self, row: impl IntoIterator<Item = Value>) -> Result<(), BatchError> {
        if self.is_full() {
            return Err(BatchError::Full { rows: self.len() });
        }
        let start = self.values.len();
        let mut added = 0usize;
        for value in row {
            added += value.byte_size();
            self.values.push(value);
        }
        let got = self.values.len() - start;
        if got != self.width {
            self.values.truncate(start);
            return Err(BatchError::Width {
                got,
                width: self.width,
            });
        }
        self.byte_size += added;
        Ok(())
    }

    /// The row at `index`.
    pub fn row(&self, index: usize) -> &[Value] {
        &self.values[index * self.width..(index + 1) * self.width]
    }

    /// The rows in order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[Value]> + '_ {
        // `chunks_exact` of width 0 panics; a zero-width batch has no rows to show.
        let width = self.width.max(1);
        self.values.chunks_exact(width)
    }

    /// Mutable access to the rows, for in-place type mapping.
    pub fn rows_mut(&mut self) -> impl Iterator<Item = &mut [Value]> + '_ {
        let width = self.width.max(1);
        self.values.chunks_exact_mut(width)
    }

    /// Takes the values out, leaving an empty batch with the same limits.
    pub fn take(&mut self) -> RowBatch {
        let taken = RowBatch {
            width: self.width,
            values: std::mem::take(&mut self.values),
            byte_size: self.byte_size,
            limits: self.limits,
        };
        self.byte_size = 0;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_slices_of_one_vec() {
        let mut batch = RowBatch::new(2, BatchLimits::rows(3));
        batch
            .push_row([Value::Int64(1), Value::Text("a".into())])
            .unwrap();
        batch.push_row([Value::Int64(2), Value::Null]).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.row(1), &[Value::Int64(2), Value::Null]);
        assert_eq!(batch.rows().count(), 2);
        assert_eq!(batch.byte_size(), 8 + 1 + 8 + 1);
    }

    #[test]
    fn bounded_by_rows() {
        let mut batch = RowBatch::new(1, BatchLimits::rows(2));
        batch.push_row([Value::Int64(1)]).unwrap();
        assert!(!batch.is_full());
        batch.push_row([Value::Int64(2)]).unwrap();
        assert!(batch.is_full());
        assert_eq!(
            batch.push_row([Value::Int64(3)]),
            Err(BatchError::Full { rows: 2 })
        );
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn bounded_by_bytes() {
        let limits = BatchLimits {
            max_rows: 100,
            max_bytes: 10,
        };
        let mut batch = RowBatch::new(1, limits);
        batch.push_row([Value::Text("0123456789".into())]).unwrap();
        assert!(batch.is_full());
    }

    #[test]
    fn wrong_width_leaves_batch_unchanged() {
        let mut batch = RowBatch::new(2, BatchLimits::DEFAULT);
        assert_eq!(
            batch.push_row([Value::Int64(1)]),
            Err(BatchError::Width { got: 1, width: 2 })
        );
        assert!(batch.is_empty());
        assert_eq!(batch.byte_size(), 0);
    }

    #[test]
    fn take_leaves_an_empty_batch() {
        let mut batch = RowBatch::new(1, BatchLimits::rows(1));
        batch.push_row([Value::Bool(true)]).unwrap();
        let taken = batch.take();
        assert_eq!(taken.len(), 1);
        assert!(batch.is_empty());
        batch.push_row([Value::Bool(false)]).unwrap();
    }
}
