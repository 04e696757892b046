//! Channel status: per table, the rows at source and target now, and the last refresh and compare
//! with their results. Counting talks to both databases; one that cannot be reached shows as an error
//! on its tables rather than failing the whole status.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_connector::ErrorKind;
use sluice_model::{
    ChannelName, EventId, EventState, EventType, HubName, LocationName, ResultName, TableName,
};
use sluice_repo::EventResult;

use crate::jobs::chain;
use crate::{HubService, Result};

/// The last run of a kind (refresh or compare) on a table.
#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    /// Its event.
    pub event: EventId,
    /// The event's state.
    pub state: EventState,
    /// The table's `Table_State` (`DONE`, `DONE/IDENTICAL`, `FAILED`, …).
    pub table_state: String,
    /// When the event finished.
    pub finished: Option<DateTime<Utc>>,
    /// Rows read at the source.
    pub source_rows: Option<u64>,
    /// Seconds spent on the table.
    pub seconds: Option<f64>,
    /// Row-wise differences (only on source, only on target, differ), for a row-wise compare.
    pub differences: Option<(u64, u64, u64)>,
    /// Why it failed.
    pub error: Option<String>,
}

/// One table of a channel, now.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    /// The channel's name for the table.
    pub table: TableName,
    /// The source location.
    pub source: LocationName,
    /// The target location.
    pub target: LocationName,
    /// Rows at the source (matching the refresh condition), if counted.
    pub source_rows: Option<u64>,
    /// Why the source could not be counted.
    pub source_error: Option<String>,
    /// Rows at the target, if counted; `None` with no error when the table does not exist yet.
    pub target_rows: Option<u64>,
    /// Why the target could not be counted.
    pub target_error: Option<String>,
    /// The last refresh that reached this table.
    pub last_refresh: Option<LastRun>,
    /// The last compare that reached this table.
    pub last_compare: Option<LastRun>,
}

fn last_run(record: &sluice_repo::EventRecord, results: &[EventResult]) -> LastRun {
    let get = |name: ResultName| {
        results
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.value.clone())
    };
    let number = |name: ResultName| get(name).and_then(|v| v.parse::<u64>().ok());
    let differences = match (
        number(ResultName::RowsOnlyOnSource),
        number(ResultName::RowsOnlyOnTarget),
        number(ResultName::RowsWhichDiffer),
    ) {
        (Some(a), Some(b), Some(c)) => Some((a, b, c)),
        _ => None,
    };
    LastRun {
        event: record.id,
        state: record.state,
        table_state: get(ResultName::TableState).unwrap_or_default(),
        finished: record.finish,
        source_rows: number(ResultName::SourceRowsUsed),
        seconds: get(ResultName::TableDuration).and_then(|v| v.parse().ok()),
        differences,
        error: get(ResultName::TableError),
    }
}

impl HubService {
    /// Per-table status of `channel` between `source` and `target` (defaults as for a refresh).
    pub async fn status(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        source: Option<&LocationName>,
        target: Option<&LocationName>,
    ) -> Result<Vec<TableStatus>> {
        let r = self
            .resolve(hub, channel, source, target, &[], false)
            .await?;
        let refreshes = self
            .repo()
            .latest_table_results(hub, channel, EventType::Refresh)
            .await?;
        let compares = self
            .repo()
            .latest_table_results(hub, channel, EventType::Compare)
            .await?;
        let connectors = self.connectors(&r);
        let mut out = Vec::with_capacity(r.specs.len());
        for spec in &r.specs {
            let (mut source_rows, mut source_error, mut target_rows, mut target_error) =
                (None, None, None, None);
            match &connectors {
                Ok((s, t)) => {
                    match s.snapshot_reader() {
                        Some(reader) => match reader
                            .count_rows(&spec.source, spec.source_filter.as_ref())
                            .await
                        {
                            Ok(n) => source_rows = Some(n),
                            Err(e) => source_error = Some(chain(&e)),
                        },
                        None => source_error = Some("the source cannot be read".into()),
                    }
                    match t.snapshot_reader() {
                        Some(reader) => match reader
                            .count_rows(&spec.target, spec.target_filter.as_ref())
                            .await
                        {
                            Ok(n) => target_rows = Some(n),
                            Err(e) if e.kind() == ErrorKind::NotFound => {}
                            Err(e) => target_error = Some(chain(&e)),
                        },
                        None => target_error = Some("the target cannot be read".into()),
                    }
                }
                Err(e) => {
                    source_error = Some(chain(e));
                    target_error = Some(chain(e));
                }
            }
            out.push(TableStatus {
                table: spec.name.clone(),
                source: r.source.name.clone(),
                target: r.target.name.clone(),
                source_rows,
                source_error,
                target_rows,
                target_error,
                last_refresh: refreshes.get(&spec.name).map(|(e, res)| last_run(e, res)),
                last_compare: compares.get(&spec.name).map(|(e, res)| last_run(e, res)),
            });
        }
        Ok(out)
    }
}
