//! Progress reports: the engine sends them on a channel it is handed and never waits for a reader.

use serde::Serialize;
use sluice_model::TableName;
use tokio::sync::mpsc::UnboundedSender;

/// One progress report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    /// Work on a table started.
    Started {
        /// The table.
        table: TableName,
        /// Rows expected, when counted first.
        total_rows: Option<u64>,
    },
    /// Rows and bytes handled so far (cumulative).
    Advanced {
        /// The table.
        table: TableName,
        /// Rows so far.
        rows: u64,
        /// Bytes so far.
        bytes: u64,
    },
    /// Work on a table ended.
    Finished {
        /// The table.
        table: TableName,
        /// Whether it succeeded.
        ok: bool,
        /// Rows handled.
        rows: u64,
        /// Seconds spent.
        seconds: f64,
    },
}

/// Where progress goes; sending never blocks and never fails the work.
#[derive(Debug, Clone, Default)]
pub struct ProgressSink(Option<UnboundedSender<Progress>>);

impl ProgressSink {
    /// Progress to `sender`.
    pub fn new(sender: UnboundedSender<Progress>) -> Self {
        ProgressSink(Some(sender))
    }

    /// Progress to nowhere.
    pub fn none() -> Self {
        ProgressSink(None)
    }

    /// Sends a report; a closed channel is ignored.
    pub fn send(&self, progress: Progress) {
        if let Some(sender) = &self.0 {
            let _ = sender.send(progress);
        }
    }
}
