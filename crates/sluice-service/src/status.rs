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

use sluice_model::refresh::RefreshModeKind;

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
    /// The column incremental refreshes of this table go by, when its refresh mode has one.
    pub incremental_column: Option<sluice_model::ColumnName>,
    /// The target's greatest value of the incremental column (where the next incremental
    /// refresh starts); `None` when there is no column, no target table or no row.
    pub max_incremental: Option<String>,
    /// Why the greatest incremental value could not be read.
    pub max_incremental_error: Option<String>,
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

/// The target's greatest value of `column` in the table of `spec`, as text.
async fn max_incremental_value(
    target: &dyn sluice_connector::Connector,
    spec: &sluice_engine::plan::TableSpec,
    column: &sluice_model::ColumnName,
) -> std::result::Result<Option<String>, sluice_connector::ConnectorError> {
    let (Some(introspector), Some(reader)) = (target.introspector(), target.snapshot_reader())
    else {
        return Err(sluice_connector::ConnectorError::unsupported(
            "the target cannot report a column's greatest value",
        ));
    };
    let Some(schema) = introspector.table_schema(&spec.target).await? else {
        return Ok(None);
    };
    let Some(def) = schema.column(column) else {
        return Err(sluice_connector::ConnectorError::schema(format!(
            "incremental column {column} is not in the target table"
        )));
    };
    let max = reader
        .max_value(&spec.target, def, spec.target_filter.as_ref())
        .await?;
    Ok(max.map(|v| v.to_string()))
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
            .job_store()
            .latest_table_results(hub, channel, EventType::Refresh)
            .await?;
        let compares = self
            .job_store()
            .latest_table_results(hub, channel, EventType::Compare)
            .await?;
        let connectors = self.connectors(&r);
        let mut out = Vec::with_capacity(r.specs.len());
        for spec in &r.specs {
            let (mut source_rows, mut source_error, mut target_rows, mut target_error) =
                (None, None, None, None);
            // The incremental column a refresh started now would use (the table's `Refresh`
            // actions).
            let settings = r.channel.refresh_settings(&r.target.name, &spec.name);
            let incremental_column = settings
                .incremental_column
                .filter(|_| settings.mode.is_some_and(RefreshModeKind::needs_column));
            let (mut max_incremental, mut max_incremental_error) = (None, None);
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
                    if let Some(column) = &incremental_column
                        && target_rows.is_some()
                    {
                        match max_incremental_value(t.as_ref(), spec, column).await {
                            Ok(v) => max_incremental = v,
                            Err(e) => max_incremental_error = Some(chain(&e)),
                        }
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
                incremental_column,
                max_incremental,
                max_incremental_error,
                last_refresh: refreshes.get(&spec.name).map(|(e, res)| last_run(e, res)),
                last_compare: compares.get(&spec.name).map(|(e, res)| last_run(e, res)),
            });
        }
        Ok(out)
    }
}

/// One refresh of a channel, as the dashboard charts it.
#[derive(Debug, Clone, Serialize)]
pub struct RefreshRun {
    /// Its event.
    pub event: EventId,
    /// The event's state.
    pub state: EventState,
    /// When it started.
    pub start: DateTime<Utc>,
    /// Seconds from start to finish, once finished.
    pub seconds: Option<f64>,
    /// Rows read at the source, over every table.
    pub rows: u64,
}

impl RefreshRun {
    /// Rows per second, once finished (a run under a millisecond counts as one).
    pub fn rows_per_second(&self) -> Option<f64> {
        self.seconds.map(|s| self.rows as f64 / s.max(0.001))
    }
}

/// How a channel is doing, in one word, the same on every page of the dashboard. When several
/// hold, the first of this order wins: frozen, running, failed, paused, differs, healthy, new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelHealth {
    /// Its hub is frozen: no job runs.
    Frozen,
    /// A refresh (sync) is running.
    Running,
    /// Its newest refresh failed.
    Failed,
    /// Paused: scheduled syncs do not run.
    Paused,
    /// Its newest compare, after its newest refresh, found differences.
    Differs,
    /// Its newest refresh succeeded.
    Healthy,
    /// Never refreshed yet.
    New,
}

impl ChannelHealth {
    /// Decides the state from the facts, in the order of the variants. `last_refresh` is the
    /// newest refresh's state; a cancelled one leaves the verdict to `ever_succeeded`.
    pub fn of(
        frozen: bool,
        running: bool,
        paused: bool,
        last_refresh: Option<EventState>,
        ever_succeeded: bool,
        differs: bool,
    ) -> Self {
        if frozen {
            ChannelHealth::Frozen
        } else if running || last_refresh == Some(EventState::Active) {
            ChannelHealth::Running
        } else if last_refresh == Some(EventState::Failed) {
            ChannelHealth::Failed
        } else if paused {
            ChannelHealth::Paused
        } else if differs {
            ChannelHealth::Differs
        } else if last_refresh == Some(EventState::Done) || ever_succeeded {
            ChannelHealth::Healthy
        } else {
            ChannelHealth::New
        }
    }

    /// The word shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelHealth::Frozen => "frozen",
            ChannelHealth::Running => "running",
            ChannelHealth::Failed => "failed",
            ChannelHealth::Paused => "paused",
            ChannelHealth::Differs => "differs",
            ChannelHealth::Healthy => "healthy",
            ChannelHealth::New => "new",
        }
    }

    /// What the word means, for a tooltip.
    pub fn meaning(self) -> &'static str {
        match self {
            ChannelHealth::Frozen => "the hub is frozen: no job runs until it is unfrozen",
            ChannelHealth::Running => "a sync is running now",
            ChannelHealth::Failed => "the newest sync failed",
            ChannelHealth::Paused => "paused: scheduled syncs do not run",
            ChannelHealth::Differs => {
                "the newest compare found differences between source and target"
            }
            ChannelHealth::Healthy => "the newest sync succeeded",
            ChannelHealth::New => "not synced yet",
        }
    }
}

/// A channel with what happened to it lately: the dashboard's channel list.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelOverview {
    /// The hub.
    pub hub: HubName,
    /// The channel's name.
    pub channel: ChannelName,
    /// Its description.
    pub description: String,
    /// The members of its `SOURCE` group.
    pub sources: Vec<LocationName>,
    /// The members of its `TARGET` group.
    pub targets: Vec<LocationName>,
    /// How many tables it has.
    pub table_count: usize,
    /// The state of its refresh job, when it has one.
    pub job_state: Option<String>,
    /// Its newest refresh.
    pub last_refresh: Option<RefreshRun>,
    /// When its newest successful refresh finished.
    pub last_success: Option<DateTime<Utc>>,
    /// When its newest failed refresh finished, and why.
    pub last_failure: Option<(DateTime<Utc>, String)>,
    /// Rows its newest successful refresh moved.
    pub rows_moved: Option<u64>,
    /// The channel as a connector (paused, schedule, setup and sync state), when it is one.
    pub connector: Option<crate::connectors::Connector>,
    /// How it is doing.
    pub health: ChannelHealth,
}

/// A channel's tables now and its recent refreshes: the dashboard's channel page.
#[derive(Debug, Clone)]
pub struct ChannelDetail {
    /// The hub.
    pub hub: HubName,
    /// The channel.
    pub channel: sluice_model::definition::Channel,
    /// Per-table status (counted now).
    pub tables: Vec<TableStatus>,
    /// Why the tables could not be looked at (e.g. the channel has no source yet).
    pub tables_error: Option<String>,
    /// Recent refreshes, oldest first.
    pub runs: Vec<RefreshRun>,
    /// The channel as a connector, when it is one.
    pub connector: Option<crate::connectors::Connector>,
    /// The connector's schemas and tables with their enable flags (read from the source).
    pub schema: Option<crate::connectors::SchemaConfig>,
    /// Why the schemas could not be read.
    pub schema_error: Option<String>,
}

/// How many recent refresh events the overview and the charts look at.
const RECENT_REFRESHES: usize = 500;

fn refresh_run(record: &sluice_repo::EventRecord) -> RefreshRun {
    let rows = record
        .results
        .iter()
        .filter(|r| r.name == ResultName::SourceRowsUsed)
        .filter_map(|r| r.value.parse::<u64>().ok())
        .sum();
    RefreshRun {
        event: record.id,
        state: record.state,
        start: record.start,
        seconds: record
            .finish
            .map(|f| (f - record.start).num_microseconds().unwrap_or(0) as f64 / 1e6),
        rows,
    }
}

fn failure_text(record: &sluice_repo::EventRecord) -> String {
    record
        .results
        .iter()
        .find(|r| r.name == ResultName::TableError)
        .map(|r| r.value.clone())
        .or_else(|| record.response.clone())
        .unwrap_or_else(|| "failed".to_owned())
}

impl HubService {
    async fn recent_refreshes(
        &self,
        hub: &HubName,
        channels: Vec<ChannelName>,
    ) -> Result<Vec<sluice_repo::EventRecord>> {
        Ok(self
            .job_store()
            .events(&sluice_repo::EventFilter {
                hub: Some(hub.clone()),
                channels,
                types: vec![EventType::Refresh],
                fetch_results: true,
                max_events: Some(RECENT_REFRESHES),
                ..Default::default()
            })
            .await?)
    }

    /// Every channel of `hub` (or of every hub) with its latest refreshes and job state.
    pub async fn channel_overview(&self, hub: Option<&HubName>) -> Result<Vec<ChannelOverview>> {
        let hubs = match hub {
            Some(h) => vec![self.hub(h).await?],
            None => self.hubs().await?,
        };
        let mut out = Vec::new();
        for record in hubs {
            let hub = record.hub.name;
            let frozen = record.state == sluice_model::definition::HubState::Frozen;
            let channels = self.channels(&hub).await?;
            let jobs = self.jobs(&hub).await?;
            let events = self.recent_refreshes(&hub, Vec::new()).await?;
            let compares = self
                .job_store()
                .events(&sluice_repo::EventFilter {
                    hub: Some(hub.clone()),
                    types: vec![EventType::Compare],
                    fetch_results: true,
                    max_events: Some(RECENT_REFRESHES),
                    ..Default::default()
                })
                .await?;
            let mut connectors = self.list_connectors(Some(&hub)).await?;
            for c in channels {
                let mine: Vec<_> = events
                    .iter()
                    .filter(|e| e.channel.as_ref() == Some(&c.name))
                    .collect();
                let success = mine.iter().find(|e| e.state == EventState::Done);
                let failure = mine.iter().find(|e| e.state == EventState::Failed);
                let group = |name: &str| {
                    c.loc_groups
                        .iter()
                        .find(|(g, _)| g.as_str().eq_ignore_ascii_case(name))
                        .map(|(_, m)| m.clone())
                        .unwrap_or_default()
                };
                let job_state = jobs
                    .iter()
                    .filter(|j| j.name.channel() == &c.name)
                    .max_by_key(|j| j.run_begin)
                    .map(|j| j.state.to_string());
                // A sync is a refresh: capture, integrate and compare jobs do not count.
                let syncing = jobs.iter().any(|j| {
                    j.name.channel() == &c.name
                        && j.name.job_type() == sluice_model::JobType::Refresh
                        && j.state == sluice_model::JobState::Running
                });
                let connector = connectors
                    .iter()
                    .position(|k| k.id.channel == c.name)
                    .map(|i| connectors.swap_remove(i));
                // Differences count while no refresh started after the compare.
                let differs = compares
                    .iter()
                    .find(|e| e.channel.as_ref() == Some(&c.name) && e.state == EventState::Done)
                    .is_some_and(|e| {
                        mine.first().is_none_or(|r| r.start < e.start)
                            && e.results.iter().any(|r| {
                                r.name == ResultName::TableState
                                    && r.value == sluice_model::event::table_state::DONE_DIFFERENT
                            })
                    });
                let health = ChannelHealth::of(
                    frozen,
                    syncing,
                    connector.as_ref().is_some_and(|k| k.settings.paused),
                    mine.first().map(|e| e.state),
                    success.is_some(),
                    differs,
                );
                out.push(ChannelOverview {
                    hub: hub.clone(),
                    channel: c.name.clone(),
                    description: c.description.clone(),
                    sources: group("SOURCE"),
                    targets: group("TARGET"),
                    table_count: c.tables.len(),
                    job_state,
                    last_refresh: mine.first().map(|e| refresh_run(e)),
                    last_success: success.and_then(|e| e.finish),
                    last_failure: failure.map(|e| (e.finish.unwrap_or(e.start), failure_text(e))),
                    rows_moved: success.map(|e| refresh_run(e).rows),
                    connector,
                    health,
                });
            }
        }
        Ok(out)
    }

    /// A channel's per-table status and its recent refreshes.
    pub async fn channel_detail(
        &self,
        hub: &HubName,
        channel: &ChannelName,
    ) -> Result<ChannelDetail> {
        let definition = self.channel(hub, channel).await?;
        let (tables, tables_error) = match self.status(hub, channel, None, None).await {
            Ok(t) => (t, None),
            Err(e) => (Vec::new(), Some(chain(&e))),
        };
        let mut runs: Vec<RefreshRun> = self
            .recent_refreshes(hub, vec![channel.clone()])
            .await?
            .iter()
            .map(refresh_run)
            .collect();
        runs.reverse();
        let id = crate::connectors::ConnectorId::new(hub.clone(), channel.clone());
        let connector = match self.get_connector(&id).await {
            Ok(c) => Some(c),
            Err(e) if e.kind() == crate::ServiceErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let (schema, schema_error) = match &connector {
            Some(_) => match self.connector_schema(&id).await {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(chain(&e))),
            },
            None => (None, None),
        };
        Ok(ChannelDetail {
            hub: hub.clone(),
            channel: definition,
            tables,
            tables_error,
            runs,
            connector,
            schema,
            schema_error,
        })
    }
}

/// A hub with its locations, and the names of every hub: the dashboard's hub page.
#[derive(Debug, Clone)]
pub struct HubOverview {
    /// The hub.
    pub hub: sluice_repo::HubRecord,
    /// Its locations.
    pub locations: Vec<sluice_model::definition::Location>,
    /// Every hub's name.
    pub hubs: Vec<HubName>,
}

impl HubService {
    /// A hub, its locations and the names of every hub.
    pub async fn hub_overview(&self, hub: &HubName) -> Result<HubOverview> {
        let record = self.hub(hub).await?;
        let locations = self.locations(hub).await?;
        let hubs = self.hubs().await?.into_iter().map(|h| h.hub.name).collect();
        Ok(HubOverview {
            hub: record,
            locations,
            hubs,
        })
    }

    /// The jobs of `hub` and its newest `max_events` events (newest first).
    pub async fn jobs_and_events(
        &self,
        hub: &HubName,
        max_events: usize,
    ) -> Result<(Vec<sluice_repo::JobRecord>, Vec<sluice_repo::EventRecord>)> {
        let jobs = self.jobs(hub).await?;
        let events = self
            .events(&sluice_repo::EventFilter {
                hub: Some(hub.clone()),
                max_events: Some(max_events),
                ..Default::default()
            })
            .await?;
        Ok((jobs, events))
    }

    /// One event of `hub` with its per-table results, and its log lines.
    pub async fn event_with_log(
        &self,
        hub: &HubName,
        event: EventId,
    ) -> Result<(sluice_repo::EventRecord, Vec<(DateTime<Utc>, String)>)> {
        let record = self
            .events(&sluice_repo::EventFilter {
                hub: Some(hub.clone()),
                ids: vec![event],
                fetch_results: true,
                ..Default::default()
            })
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                crate::ServiceError::not_found(format!("event {event} does not exist in hub {hub}"))
            })?;
        let log = self.event_log(event).await?;
        Ok((record, log))
    }
}

#[cfg(test)]
mod health_tests {
    use super::ChannelHealth::{self, *};
    use sluice_model::EventState;

    #[test]
    fn the_first_state_that_holds_wins() {
        let of = ChannelHealth::of;
        assert_eq!(
            of(true, true, true, Some(EventState::Failed), true, true),
            Frozen
        );
        assert_eq!(
            of(false, true, false, Some(EventState::Failed), true, false),
            Running
        );
        assert_eq!(
            of(false, false, false, Some(EventState::Active), true, false),
            Running
        );
        assert_eq!(
            of(false, false, true, Some(EventState::Failed), true, true),
            Failed
        );
        assert_eq!(
            of(false, false, true, Some(EventState::Done), true, true),
            Paused
        );
        assert_eq!(
            of(false, false, false, Some(EventState::Done), true, true),
            Differs
        );
        assert_eq!(
            of(false, false, false, Some(EventState::Done), true, false),
            Healthy
        );
        assert_eq!(of(false, false, false, None, false, false), New);
        // A cancelled refresh is neither a success nor a failure: the runs before it decide.
        assert_eq!(
            of(false, false, false, Some(EventState::Canceled), true, false),
            Healthy
        );
        assert_eq!(
            of(
                false,
                false,
                false,
                Some(EventState::Canceled),
                false,
                false
            ),
            New
        );
    }
}
