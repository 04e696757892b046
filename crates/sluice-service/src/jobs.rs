//! Refresh and compare jobs: resolve the channel into table specs, claim the job (one run per
//! channel/source/target), plan against both databases, run, and record per-table results and log
//! lines as each table finishes.
//!
//! Bad input (an unknown channel, table or location) is refused before anything is recorded. Once the
//! job is claimed, every outcome, including a pre-flight failure such as a vanished source table,
//! ends its event as DONE, FAILED or CANCELED.
//!
//! Cancel and commit: the repository records when each table's commit begins (the commit gate,
//! `RepositoryGate`), in the same transaction on the job's row that a cancel takes, whichever
//! process the cancel comes through. A cancel before any commit ends the event CANCELED and every
//! target table is as it was; a cancel while a table commits is refused as too late and the run
//! ends DONE or FAILED; a cancel between tables of a multi-table refresh (one committed, the next
//! not yet committing) stops the run before its next commit and ends the event FAILED, naming the
//! committed tables: CANCELED always means nothing was committed. A local cancel (Ctrl-C) ends a
//! run the same way.
//!
//! A run whose process stops (a kill, a crash) is ended by any live process once its heartbeat is
//! `STALE_AFTER` old ([`HubService::reap_orphaned_jobs`]): its event FAILED, its job freed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sluice_connector::{Connector, PlannedStatement, WriteStrategy};
use sluice_engine::plan::{RefreshMode, RowwiseApply, Slices, plan_compare_table};
use sluice_engine::{
    CommitGate, CompareOptions, CompareState, CompareTablePlan, EngineError, Granularity, Progress,
    ProgressSink, RefreshOptions, RefreshState, RefreshTablePlan, RowChanges, RowDiff, TableSpec,
    plan_compare, plan_refresh, run_compare, run_refresh_gated,
};
use sluice_model::condition::SqlDialect;
use sluice_model::definition::{
    ActionKind, ActionType, Channel, Location, LocationClass, physical_table,
};
use sluice_model::event::table_state;
use sluice_model::refresh::RefreshModeKind;
use sluice_model::{
    BatchLimits, ChannelName, ColumnName, Condition, EventId, EventState, EventType, HubName,
    JobName, LocationName, ResultName, SchemaName, TableName,
};
use sluice_repo::{EventResult, NewEvent, RepoErrorKind};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{CANCEL_WATCH, HEARTBEAT, HubService, Result, STALE_AFTER, ServiceError};

/// A refresh request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshCommand {
    /// The hub.
    pub hub: HubName,
    /// The channel.
    pub channel: ChannelName,
    /// The source location; default: the channel's one Capture location.
    pub source: Option<LocationName>,
    /// The target location; default: the channel's one Integrate location.
    pub target: Option<LocationName>,
    /// Tables to refresh; empty means all.
    pub tables: Vec<TableName>,
    /// How the target is replaced; default `truncate_load`.
    pub strategy: Option<WriteStrategy>,
    /// Rows per batch; default 10,000.
    pub batch_rows: Option<usize>,
    /// Count source rows first, for progress fractions.
    pub count_first: bool,
    /// Overrides of the tables' refresh modes (`Refresh` actions).
    pub mode: ModeOverride,
    /// Tables refreshed at the same time, and slices of a sliced table read at the same time;
    /// default 1 table and [`crate::slicing::DEFAULT_SLICE_PARALLEL`] slices.
    pub parallel: Option<usize>,
    /// Tables read in slices (HVR's `slicing`).
    #[serde(default)]
    pub slicing: std::collections::BTreeMap<TableName, crate::slicing::Slicing>,
}

/// A run's overrides of what `Refresh` actions say; unset fields keep each table's own.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModeOverride {
    /// `full_replace`, `incremental`, `smart_sync` or `rowwise`.
    pub mode: Option<RefreshModeKind>,
    /// The incremental column.
    pub incremental_column: Option<ColumnName>,
    /// Days of overlap for date incremental columns.
    pub date_buffer_days: Option<u32>,
    /// Which row-wise changes to apply.
    pub apply: Option<RowwiseApply>,
}

/// The refresh mode and strategy of one table: its `Refresh` actions on the target, then the run's
/// overrides.
pub(crate) fn table_mode(
    channel: &Channel,
    target: &LocationName,
    table: &TableName,
    cmd: &RefreshCommand,
) -> Result<(RefreshMode, Option<WriteStrategy>)> {
    let settings = channel.refresh_settings(target, table);
    let o = &cmd.mode;
    let column = o.incremental_column.clone().or(settings.incremental_column);
    let buffer = o
        .date_buffer_days
        .or(settings.date_buffer_days)
        .unwrap_or(0);
    let apply = o.apply.or(settings.apply).unwrap_or_default();
    let need_column = |name: &str| {
        column.clone().ok_or_else(|| {
            ServiceError::invalid(format!(
                "table {table}: a {name} refresh needs an incremental column (Refresh IncrementalColumn, or --incremental-column)"
            ))
        })
    };
    let mode = match o.mode.or(settings.mode) {
        None | Some(RefreshModeKind::FullReplace) => RefreshMode::FullReplace,
        Some(RefreshModeKind::Incremental) => RefreshMode::Incremental {
            column: need_column("incremental")?,
            date_buffer_days: buffer,
        },
        Some(RefreshModeKind::SmartSync) => RefreshMode::SmartSync {
            column: need_column("smart_sync")?,
            date_buffer_days: buffer,
        },
        Some(RefreshModeKind::Rowwise) => RefreshMode::Rowwise { apply },
    };
    Ok((mode, cmd.strategy.or(settings.strategy)))
}

/// A compare request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompareCommand {
    /// The hub.
    pub hub: HubName,
    /// The channel.
    pub channel: ChannelName,
    /// The source location; default: the channel's one Capture location.
    pub source: Option<LocationName>,
    /// The target location; default: the channel's one Integrate location.
    pub target: Option<LocationName>,
    /// Tables to compare; empty means all.
    pub tables: Vec<TableName>,
    /// Bulk (counts + checksums) or row-wise.
    pub granularity: Granularity,
    /// Keys listed per kind of difference.
    pub max_listed: usize,
    /// Narrow the compare with checksums computed in the databases where both locations can
    /// (sluice's `pushdown`, default on); `false` reads every row.
    #[serde(default = "pushdown_default")]
    pub pushdown: bool,
    /// Tables compared in slices (HVR's `slicing`).
    #[serde(default)]
    pub slicing: std::collections::BTreeMap<TableName, crate::slicing::Slicing>,
    /// Compare online (HVR's `online_compare`): the channel is activated and replicating, and
    /// differences whose changes are in flight are settled rather than reported
    /// ([`crate::online`]). Row-wise only.
    #[serde(default)]
    pub online: Option<crate::online::OnlineCompare>,
}

fn pushdown_default() -> bool {
    true
}

/// One table of a plan (what a dry run shows).
#[derive(Debug, Clone, Serialize)]
pub struct PlannedTable {
    /// The channel's name for the table.
    pub table: TableName,
    /// The table at the source.
    pub source_table: String,
    /// The table at the target.
    pub target_table: String,
    /// What the job does with the table, in words (refresh mode and bounds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The statements the source runs.
    pub source_statements: Vec<PlannedStatement>,
    /// The statements the target runs.
    pub target_statements: Vec<PlannedStatement>,
}

/// What a job would do.
#[derive(Debug, Clone, Serialize)]
pub struct JobPlan {
    /// The job.
    pub job: JobName,
    /// The source location.
    pub source: LocationName,
    /// The target location.
    pub target: LocationName,
    /// Per table.
    pub tables: Vec<PlannedTable>,
}

/// A job that is running.
pub struct RunningJob<R> {
    /// The job's event.
    pub event: EventId,
    /// The job.
    pub job: JobName,
    /// Pending events of the same job this run replaced (now `CANCELED`).
    pub canceled: Vec<EventId>,
    /// Progress reports.
    pub progress: UnboundedReceiver<Progress>,
    /// Cancels the job; the tables not yet committed are left as they were.
    pub cancel: CancellationToken,
    /// The outcome.
    pub done: JoinHandle<Result<R>>,
}

/// The outcome of one table of a refresh.
#[derive(Debug, Clone, Serialize)]
pub struct RefreshTableResult {
    /// The table.
    pub table: TableName,
    /// `DONE`, `FAILED` or `CANCELED`.
    pub state: RefreshState,
    /// Rows read.
    pub rows: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Seconds spent.
    pub seconds: f64,
    /// Whether the target table was created.
    pub created: bool,
    /// What it did to the target's rows, for a refresh that changes rows in place (row-wise,
    /// incremental).
    pub changes: Option<RowChanges>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The outcome of a refresh.
#[derive(Debug, Clone, Serialize)]
pub struct RefreshSummary {
    /// The event.
    pub event: EventId,
    /// The job.
    pub job: JobName,
    /// The event's final state.
    pub state: EventState,
    /// The event's response line.
    pub response: String,
    /// Per table.
    pub tables: Vec<RefreshTableResult>,
}

/// The outcome of one table of a compare.
#[derive(Debug, Clone, Serialize)]
pub struct CompareTableResult {
    /// The table.
    pub table: TableName,
    /// `IDENTICAL`, `DIFFERENT`, `FAILED` or `CANCELED`.
    pub state: CompareState,
    /// Rows read at the source.
    pub source_rows: u64,
    /// Rows read at the target.
    pub target_rows: u64,
    /// Seconds spent.
    pub seconds: f64,
    /// Bulk checksums (source, target).
    pub checksums: Option<(String, String)>,
    /// Row-wise differences.
    pub diff: Option<RowDiff>,
    /// Why it failed.
    pub error: Option<String>,
    /// Of an online compare: what became of the differences found first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online: Option<crate::online::OnlineTableResult>,
}

/// The outcome of a compare.
#[derive(Debug, Clone, Serialize)]
pub struct CompareSummary {
    /// The event.
    pub event: EventId,
    /// The job.
    pub job: JobName,
    /// The event's final state.
    pub state: EventState,
    /// The event's response line.
    pub response: String,
    /// Whether every table compared identical.
    pub identical: bool,
    /// Per table.
    pub tables: Vec<CompareTableResult>,
}

/// When a submitted job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Post its event and run it now.
    Now,
    /// Post its event and leave the job suspended until it is started.
    Pending,
    /// Run the event the job has pending (posted earlier with [`Start::Pending`]).
    Claim,
}

/// A job run posted but not started.
#[derive(Debug, Clone)]
pub struct Posted {
    /// Its event.
    pub event: EventId,
    /// The job.
    pub job: JobName,
    /// Pending events of the same job it replaced (now `CANCELED`).
    pub canceled: Vec<EventId>,
}

/// What submitting a job did.
pub enum Submitted<R> {
    /// The job runs.
    Running(RunningJob<R>),
    /// The job waits to be started.
    Pending(Posted),
}

impl<R> Submitted<R> {
    /// The running job; an error when it was only posted.
    pub fn running(self) -> Result<RunningJob<R>> {
        match self {
            Submitted::Running(job) => Ok(job),
            Submitted::Pending(p) => Err(ServiceError::new(
                crate::ServiceErrorKind::Conflict,
                format!(
                    "job {} was posted as event {} but not started",
                    p.job, p.event
                ),
            )),
        }
    }

    /// The event, job and replaced events, whether it runs or waits.
    pub fn posted(&self) -> Posted {
        match self {
            Submitted::Running(job) => Posted {
                event: job.event,
                job: job.job.clone(),
                canceled: job.canceled.clone(),
            },
            Submitted::Pending(p) => p.clone(),
        }
    }
}

/// A claimed job with its connectors, before it runs.
pub(crate) struct Claimed {
    event: EventId,
    /// Pending events of the job this run replaced.
    canceled: Vec<EventId>,
    /// Stops the heartbeat.
    stop: CancellationToken,
    /// Cancels the job (the heartbeat fires it when the claim is lost).
    cancel: CancellationToken,
    source: Arc<dyn Connector>,
    target: Arc<dyn Connector>,
}

/// What a running job works with.
pub(crate) struct JobRun {
    pub(crate) hub: HubName,
    pub(crate) job: JobName,
    pub(crate) event: EventId,
    pub(crate) source: Arc<dyn Connector>,
    pub(crate) target: Arc<dyn Connector>,
    pub(crate) progress: ProgressSink,
    pub(crate) cancel: CancellationToken,
}

/// A channel resolved for one source and target.
pub(crate) struct Resolved {
    pub(crate) hub: HubName,
    pub(crate) channel: Channel,
    pub(crate) source: Location,
    pub(crate) target: Location,
    pub(crate) specs: Vec<TableSpec>,
    /// A snapshot every read of the source is made in (an activation's initial load).
    pub(crate) pinned: Option<Arc<dyn sluice_connector::SharedSnapshot>>,
}

/// Formats an error with its whole source chain, the way it is stored in results and logs.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

fn pick(
    channel: &Channel,
    explicit: Option<&LocationName>,
    action: ActionType,
    role: &str,
    flag: &str,
) -> Result<LocationName> {
    if let Some(loc) = explicit {
        return match channel.group_of(loc) {
            Some(_) => Ok(loc.clone()),
            None => Err(ServiceError::invalid(format!(
                "location {loc} is not a member of channel {}",
                channel.name
            ))),
        };
    }
    match channel.locations_with_action(action).as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(ServiceError::invalid(format!(
            "channel {} has no {action} action to choose its {role}; pass {flag}",
            channel.name
        ))),
        many => Err(ServiceError::invalid(format!(
            "channel {} has several {role} locations ({}); pass {flag}",
            channel.name,
            many.iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

pub(crate) fn default_schema(location: &Location) -> Option<SchemaName> {
    location
        .prop("Database_Schema")
        .and_then(|v| SchemaName::new(v.to_text()).ok())
}

/// `(a) AND (b)` of the `Restrict` conditions on `loc` for `table` (per action, the compare
/// condition first when `compare`, then the refresh condition), each checked as one safe
/// expression in the dialect of `loc`'s class.
fn conditions(
    channel: &Channel,
    loc: &Location,
    table: &TableName,
    compare: bool,
) -> Result<Option<Condition>> {
    let mut parts = Vec::new();
    for action in channel.actions_for(&loc.name, table) {
        let ActionKind::Restrict(restrict) = action.kind() else {
            continue;
        };
        let compare_condition = restrict.compare_condition.as_ref().filter(|_| compare);
        if let Some(c) = compare_condition.or(restrict.refresh_condition.as_ref()) {
            parts.push(c.as_str());
        }
    }
    Condition::all(&parts, sql_dialect(loc.class)).map_err(|e| {
        ServiceError::invalid(format!(
            "table {table}: Restrict on location {}: {e}",
            loc.name
        ))
    })
}

/// The SQL dialect of a location class.
pub(crate) fn sql_dialect(class: LocationClass) -> SqlDialect {
    match class {
        LocationClass::Postgresql => SqlDialect::Postgresql,
        LocationClass::Mariadb => SqlDialect::Mariadb,
        LocationClass::Sqlite => SqlDialect::Sqlite,
    }
}

impl HubService {
    pub(crate) async fn resolve(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        source: Option<&LocationName>,
        target: Option<&LocationName>,
        tables: &[TableName],
        compare: bool,
    ) -> Result<Resolved> {
        // Secrets sealed under a wallet key another process made open here too.
        self.sync_wallet().await?;
        let channel = self.channel(hub, channel).await?;
        let source = pick(&channel, source, ActionType::Capture, "source", "--source")?;
        let target = pick(
            &channel,
            target,
            ActionType::Integrate,
            "target",
            "--target",
        )?;
        if source == target {
            return Err(ServiceError::invalid(format!(
                "source and target are both location {source}"
            )));
        }
        let source = self.location(hub, &source).await?;
        let target = self.location(hub, &target).await?;
        let mut selected = Vec::new();
        for name in tables {
            if !channel.tables.contains_key(name) {
                return Err(ServiceError::not_found(format!(
                    "table {name} is not in channel {}",
                    channel.name
                )));
            }
        }
        let wanted: BTreeSet<&TableName> = tables.iter().collect();
        for table in channel.tables.values() {
            if !wanted.is_empty() && !wanted.contains(&table.name) {
                continue;
            }
            let (s, t) = (&source.name, &target.name);
            let mut spec = TableSpec::new(
                table.name.clone(),
                physical_table(&channel, table, s, default_schema(&source).as_ref()),
                physical_table(&channel, table, t, default_schema(&target).as_ref()),
            );
            spec.declared = table.columns.clone();
            for action in channel
                .actions
                .iter()
                .filter(|a| channel.table_in_scope(&a.table_scope, &table.name))
            {
                let ActionKind::ColumnProperties(props) = action.kind() else {
                    continue;
                };
                let Some(column) = props.name.clone() else {
                    continue;
                };
                let (at_source, at_target) = (
                    channel.loc_in_scope(&action.loc_scope, s),
                    channel.loc_in_scope(&action.loc_scope, t),
                );
                if props.absent {
                    match (at_source, at_target) {
                        (true, true) => {
                            spec.excluded.insert(column.clone());
                        }
                        (true, false) => {
                            spec.source_absent.insert(column.clone());
                        }
                        (false, true) => {
                            spec.target_absent.insert(column.clone());
                        }
                        (false, false) => {}
                    }
                }
                if props.key && (at_source || at_target) && !spec.key.contains(&column) {
                    spec.key.push(column);
                }
            }
            spec.source_filter = conditions(&channel, &source, &table.name, compare)?;
            spec.target_filter = conditions(&channel, &target, &table.name, compare)?;
            selected.push(spec);
        }
        if selected.is_empty() {
            return Err(ServiceError::invalid(format!(
                "channel {} has no tables",
                channel.name
            )));
        }
        Ok(Resolved {
            hub: hub.clone(),
            channel,
            source,
            target,
            specs: selected,
            pinned: None,
        })
    }

    pub(crate) fn connectors(
        &self,
        r: &Resolved,
    ) -> Result<(Arc<dyn Connector>, Arc<dyn Connector>)> {
        let mut source = self
            .connect(&r.source)
            .map_err(|e| ServiceError::connector(format!("location {}", r.source.name), e))?;
        if let Some(snapshot) = &r.pinned {
            source = crate::replication::pinned(source, snapshot.clone());
        }
        let target = self
            .connect(&r.target)
            .map_err(|e| ServiceError::connector(format!("location {}", r.target.name), e))?;
        Ok((source, target))
    }

    fn planned_tables<'a>(
        &self,
        specs: &[TableSpec],
        statements: impl Iterator<
            Item = (
                &'a TableName,
                &'a Vec<PlannedStatement>,
                &'a Vec<PlannedStatement>,
            ),
        >,
    ) -> Vec<PlannedTable> {
        statements
            .zip(specs)
            .map(|((table, s, t), spec)| PlannedTable {
                table: table.clone(),
                source_table: spec.source.to_string(),
                target_table: spec.target.to_string(),
                action: None,
                source_statements: s.clone(),
                target_statements: t.clone(),
            })
            .collect()
    }

    /// What a refresh would run, per table; runs and records nothing.
    pub async fn plan_refresh(&self, cmd: &RefreshCommand) -> Result<JobPlan> {
        let r = self
            .resolve(
                &cmd.hub,
                &cmd.channel,
                cmd.source.as_ref(),
                cmd.target.as_ref(),
                &cmd.tables,
                false,
            )
            .await?;
        let mut r = r;
        set_modes(&mut r, cmd)?;
        let (source, target) = self.connectors(&r)?;
        let plans = plan_refresh(
            &r.specs,
            source.as_ref(),
            target.as_ref(),
            &refresh_options(cmd),
        )
        .await
        .map_err(ServiceError::planning)?;
        let mut tables = self.planned_tables(
            &r.specs,
            plans
                .iter()
                .map(|p| (&p.name, &p.source_statements, &p.target_statements)),
        );
        for (table, plan) in tables.iter_mut().zip(&plans) {
            table.action = Some(plan.description.clone());
        }
        Ok(JobPlan {
            job: JobName::refresh(&r.channel.name, &r.source.name, &r.target.name),
            source: r.source.name.clone(),
            target: r.target.name.clone(),
            tables,
        })
    }

    /// What a compare would run, per table; runs and records nothing.
    pub async fn plan_compare(&self, cmd: &CompareCommand) -> Result<JobPlan> {
        let r = self
            .resolve(
                &cmd.hub,
                &cmd.channel,
                cmd.source.as_ref(),
                cmd.target.as_ref(),
                &cmd.tables,
                true,
            )
            .await?;
        let (source, target) = self.connectors(&r)?;
        let plans = plan_compare(
            &r.specs,
            source.as_ref(),
            target.as_ref(),
            cmd.granularity,
            BatchLimits::DEFAULT,
        )
        .await
        .map_err(ServiceError::planning)?;
        Ok(JobPlan {
            job: JobName::compare(&r.channel.name, &r.source.name, &r.target.name),
            source: r.source.name.clone(),
            target: r.target.name.clone(),
            tables: self.planned_tables(
                &r.specs,
                plans
                    .iter()
                    .map(|p| (&p.name, &p.source_statements, &p.target_statements)),
            ),
        })
    }

    /// Posts the job's event and claims the job (or, for [`Start::Claim`], claims the job's pending
    /// event), then opens both connectors. A heartbeat keeps the claim until the returned run's
    /// `stop` fires. A failure after the claim ends the event as FAILED. For [`Start::Pending`] the
    /// event is only posted, and `Ok(Err(submitted))` comes back.
    pub(crate) async fn claim(
        &self,
        r: &Resolved,
        event_type: EventType,
        job: &JobName,
        body: serde_json::Value,
        start: Start,
    ) -> Result<std::result::Result<Claimed, Posted>> {
        let description = format!(
            "{} of channel {} from {} to {} ({} table(s))",
            event_type,
            r.channel.name,
            r.source.name,
            r.target.name,
            r.specs.len()
        );
        if start != Start::Pending {
            self.ensure_live(&r.hub).await?;
        }
        let new_event = NewEvent {
            hub: r.hub.clone(),
            event_type,
            user: self.user().to_owned(),
            description,
            channel: Some(r.channel.name.clone()),
            loc: Some(r.source.name.clone()),
            loc2: Some(r.target.name.clone()),
            job: Some(job.clone()),
            state: EventState::Active,
            body,
        };
        let owner = &self.inner.owner;
        let (event, canceled, taken_over) = match start {
            Start::Now => {
                let s = self
                    .job_store()
                    .submit_job(new_event, Some((owner, STALE_AFTER)))
                    .await?;
                (s.event, s.canceled, s.taken_over)
            }
            Start::Pending => {
                let s = self.job_store().submit_job(new_event, None).await?;
                return Ok(Err(Posted {
                    event: s.event,
                    job: job.clone(),
                    canceled: s.canceled,
                }));
            }
            Start::Claim => {
                let (event, taken_over) = self
                    .job_store()
                    .claim_job(&r.hub, job, owner, STALE_AFTER)
                    .await?;
                (event, Vec::new(), taken_over)
            }
        };
        for abandoned in &taken_over {
            tracing::warn!(job = %job, event = %abandoned, "took over a job whose process had stopped");
        }
        let (stop, cancel) = self.watch_claim(&r.hub, job, event);
        match self.connectors(r) {
            Ok((source, target)) => Ok(Ok(Claimed {
                event,
                canceled,
                stop,
                cancel,
                source,
                target,
            })),
            Err(error) => {
                stop.cancel();
                Err(self.fail_start(&r.hub, job, event, error).await)
            }
        }
    }

    /// Keeps this process's claim of `job` (running `event`) alive: a heartbeat, and a watch for
    /// a cancel from any process. Returns `stop` (fire it when the run ends) and `cancel` (fired
    /// when the run must stop: cancelled, or the claim was lost).
    pub(crate) fn watch_claim(
        &self,
        hub: &HubName,
        job: &JobName,
        event: EventId,
    ) -> (CancellationToken, CancellationToken) {
        let stop = CancellationToken::new();
        let cancel = CancellationToken::new();
        let (service, hub, heartbeat_job, token, job_cancel) = (
            self.clone(),
            hub.clone(),
            job.clone(),
            stop.clone(),
            cancel.clone(),
        );
        tokio::spawn(async move {
            // Watch for a cancel (from any process) often; send the heartbeat less often.
            let mut tick = tokio::time::interval(CANCEL_WATCH);
            tick.tick().await;
            let beats_every = (HEARTBEAT.as_millis() / CANCEL_WATCH.as_millis()).max(1) as u32;
            let mut n: u32 = 0;
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {}
                }
                n = n.wrapping_add(1);
                if !n.is_multiple_of(beats_every) {
                    // Cancelled, or failed by a cancel after a table committed.
                    if let Ok(Some(state)) = event_state(service.job_store(), &hub, event).await
                        && state != EventState::Active
                    {
                        tracing::info!(job = %heartbeat_job, state = %state, "the event was ended; stopping");
                        job_cancel.cancel();
                        break;
                    }
                    continue;
                }
                match service
                    .job_store()
                    .heartbeat(&hub, &heartbeat_job, &service.inner.owner)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!(job = %heartbeat_job, "the event was cancelled; stopping");
                        job_cancel.cancel();
                        break;
                    }
                    Err(error) if error.kind() == RepoErrorKind::Conflict => {
                        // Another process took the job over: stop writing at once.
                        tracing::error!(job = %heartbeat_job, error = %error, "lost the job; cancelling");
                        job_cancel.cancel();
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(job = %heartbeat_job, error = %error, "heartbeat failed; retrying");
                    }
                }
            }
        });
        (stop, cancel)
    }

    /// Passes on a plan, or ends the claimed job's event as FAILED with the plan's error.
    async fn planned<P>(
        &self,
        r: &Resolved,
        job: &JobName,
        claimed: &Claimed,
        plan: Result<P, EngineError>,
    ) -> Result<P> {
        match plan {
            Ok(plan) => Ok(plan),
            Err(e) => {
                claimed.stop.cancel();
                let error = ServiceError::planning(e);
                Err(self.fail_start(&r.hub, job, claimed.event, error).await)
            }
        }
    }

    /// Runs a claimed, planned job in the background; its heartbeat stops when it ends.
    pub(crate) fn spawn<R, F>(
        &self,
        r: &Resolved,
        job: JobName,
        claimed: Claimed,
        work: impl FnOnce(HubService, JobRun) -> F,
    ) -> RunningJob<R>
    where
        R: Send + 'static,
        F: std::future::Future<Output = Result<R>> + Send + 'static,
    {
        let (tx, rx) = unbounded_channel();
        let Claimed {
            event,
            canceled,
            stop,
            cancel,
            source,
            target,
        } = claimed;
        self.inner.track(event, cancel.clone());
        let run = JobRun {
            hub: r.hub.clone(),
            job: job.clone(),
            event,
            source,
            target,
            progress: ProgressSink::new(tx),
            cancel: cancel.clone(),
        };
        let work = work(self.clone(), run);
        let (service, hub) = (self.clone(), r.hub.clone());
        let job_name = job.clone();
        let done = self.spawn_job(async move {
            let result = work.await;
            stop.cancel();
            service.inner.untrack(event);
            if let Err(error) = &result {
                // The run stopped on an error of its own bookkeeping (the repository, a lost claim):
                // end its event if it is still ours and still ACTIVE.
                let response = chain(error);
                if let Err(repo_error) = service
                    .job_store()
                    .finish_job(&hub, &job_name, event, EventState::Failed, &response)
                    .await
                {
                    tracing::error!(job = %job_name, error = %repo_error, "could not end the event");
                }
            }
            result
        });
        RunningJob {
            event,
            job,
            canceled,
            progress: rx,
            cancel,
            done,
        }
    }

    /// Confirms this process still holds the job before it writes another table.
    async fn check_claim(
        &self,
        hub: &HubName,
        job: &JobName,
        cancel: &CancellationToken,
    ) -> Result<()> {
        match self
            .job_store()
            .heartbeat(hub, job, &self.inner.owner)
            .await
        {
            Err(error) if error.kind() == RepoErrorKind::Conflict => {
                cancel.cancel();
                Err(error.into())
            }
            Ok(false) => {
                // Cancelled by a user: the engine sees the token and leaves the table as it was.
                cancel.cancel();
                Ok(())
            }
            // A passing repository error: the next heartbeat retries.
            _ => Ok(()),
        }
    }

    async fn fail_start(
        &self,
        hub: &HubName,
        job: &JobName,
        event: EventId,
        error: ServiceError,
    ) -> ServiceError {
        let response = chain(&error);
        if let Err(repo_error) = self
            .job_store()
            .append_log(event, &[format!("failed before any table ran: {response}")])
            .await
        {
            tracing::error!(error = %repo_error, "could not log to the event");
        }
        if let Err(repo_error) = self
            .job_store()
            .finish_job(hub, job, event, EventState::Failed, &response)
            .await
        {
            tracing::error!(error = %repo_error, "could not finish the event");
        }
        error
    }

    /// Ends the runs whose process stopped: every job `RUNNING` in a process that has sent no
    /// heartbeat for a minute (by the database's clock on PostgreSQL) gets its `ACTIVE` event
    /// `FAILED` with a response naming that process, its last heartbeat and the tables it had
    /// committed, and is freed, so pollers (and the `/v1` connector's `failed_at`) see the end
    /// without anyone submitting again. Safe to run in several processes at once: each run is
    /// ended by one. The hub server runs it at start-up and from the scheduler.
    pub async fn reap_orphaned_jobs(&self) -> Result<Vec<sluice_repo::ReapedJob>> {
        let reaped = self.job_store().reap_jobs(STALE_AFTER).await?;
        self.resume_reaped_replications(&reaped).await;
        for r in &reaped {
            let Some(event) = r.event.filter(|_| r.failed) else {
                tracing::info!(job = %r.job, "freed the job of a process that stopped");
                continue;
            };
            tracing::warn!(
                job = %r.job,
                event = %event,
                response = %r.response,
                "failed the run of a process that stopped"
            );
            let line = std::slice::from_ref(&r.response);
            if let Err(error) = self.job_store().append_log(event, line).await {
                tracing::warn!(event = %event, error = %error, "could not log to the event");
            }
        }
        Ok(reaped)
    }

    /// Starts a refresh: returns once the job is claimed and planned; the tables run in the
    /// background and report progress.
    pub async fn refresh(&self, cmd: RefreshCommand) -> Result<RunningJob<RefreshSummary>> {
        self.submit_refresh(cmd, Start::Now).await?.running()
    }

    /// Submits a refresh: starts it now, leaves it pending, or runs the job's pending event.
    pub async fn submit_refresh(
        &self,
        cmd: RefreshCommand,
        start: Start,
    ) -> Result<Submitted<RefreshSummary>> {
        self.submit_refresh_with(cmd, start, None).await
    }

    /// A refresh started now whose every source read is made in `snapshot` (an activation's
    /// initial load, handed over to capture at the snapshot's position).
    pub(crate) async fn submit_refresh_pinned(
        &self,
        cmd: RefreshCommand,
        snapshot: Arc<dyn sluice_connector::SharedSnapshot>,
    ) -> Result<Submitted<RefreshSummary>> {
        self.submit_refresh_inner(cmd, Start::Now, None, Some(snapshot))
            .await
    }

    /// [`HubService::submit_refresh_pinned`] of the job's pending event (HVR's
    /// `start_next_ev_ids` of an activation).
    pub(crate) async fn submit_refresh_pinned_claim(
        &self,
        cmd: RefreshCommand,
        snapshot: Arc<dyn sluice_connector::SharedSnapshot>,
    ) -> Result<Submitted<RefreshSummary>> {
        self.submit_refresh_inner(cmd, Start::Claim, None, Some(snapshot))
            .await
    }

    /// [`HubService::submit_refresh`], recording `connector` (what the connector use cases want
    /// to know about the run later) in the event's body.
    pub(crate) async fn submit_refresh_with(
        &self,
        cmd: RefreshCommand,
        start: Start,
        connector: Option<serde_json::Value>,
    ) -> Result<Submitted<RefreshSummary>> {
        self.submit_refresh_inner(cmd, start, connector, None).await
    }

    async fn submit_refresh_inner(
        &self,
        cmd: RefreshCommand,
        start: Start,
        connector: Option<serde_json::Value>,
        pinned: Option<Arc<dyn sluice_connector::SharedSnapshot>>,
    ) -> Result<Submitted<RefreshSummary>> {
        let r = self
            .resolve(
                &cmd.hub,
                &cmd.channel,
                cmd.source.as_ref(),
                cmd.target.as_ref(),
                &cmd.tables,
                false,
            )
            .await?;
        let mut r = r;
        r.pinned = pinned;
        set_modes(&mut r, &cmd)?;
        // Slicing is checked against the source before anything is posted.
        let sliced = self.sliced(&r, &cmd.slicing, true).await?;
        let job = JobName::refresh(&r.channel.name, &r.source.name, &r.target.name);
        let options = refresh_options(&cmd);
        let body = serde_json::json!({
            "source_loc": r.source.name,
            "target_loc": r.target.name,
            "tables": r.specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            "strategy": options.strategy,
            "batch_rows": options.limits.max_rows,
        });
        let mut body = serde_json::json!({ "request": body, "command": cmd });
        if let Some(connector) = connector {
            body["connector"] = connector;
        }
        let claimed = match self
            .claim(&r, EventType::Refresh, &job, body, start)
            .await?
        {
            Ok(claimed) => claimed,
            Err(posted) => return Ok(Submitted::Pending(posted)),
        };
        let plans = plan_refresh(
            &r.specs,
            claimed.source.as_ref(),
            claimed.target.as_ref(),
            &options,
        )
        .await;
        let mut plans = self.planned(&r, &job, &claimed, plans).await?;
        let slice_parallel = cmd
            .parallel
            .unwrap_or(crate::slicing::DEFAULT_SLICE_PARALLEL)
            .max(1);
        for plan in &mut plans {
            if let Some(slices) = sliced.get(&plan.name) {
                plan.slices = Some(Slices {
                    filters: slices
                        .iter()
                        .map(|s| (s.label.clone(), s.source.clone()))
                        .collect(),
                    parallel: slice_parallel,
                });
            }
        }
        Ok(Submitted::Running(
            self.spawn(&r, job, claimed, move |service, run| async move {
                service.run_refresh_tables(&run, plans, options).await
            }),
        ))
    }

    /// The slices of each sliced table of a run, checked against the source table: a table
    /// that is not in the run, a row-wise refresh, or a column that does not suit the method is
    /// refused (before anything is posted).
    async fn sliced(
        &self,
        r: &Resolved,
        slicing: &std::collections::BTreeMap<TableName, crate::slicing::Slicing>,
        refresh: bool,
    ) -> Result<std::collections::BTreeMap<TableName, Vec<crate::slicing::SliceFilter>>> {
        let mut out = std::collections::BTreeMap::new();
        if slicing.is_empty() {
            return Ok(out);
        }
        let (source, _) = self.connectors(r)?;
        let dialects = (sql_dialect(r.source.class), sql_dialect(r.target.class));
        for (table, how) in slicing {
            let spec = r.specs.iter().find(|s| &s.name == table).ok_or_else(|| {
                ServiceError::invalid(format!(
                    "slicing.{table}: table {table} is not among the tables of this run"
                ))
            })?;
            if refresh && matches!(spec.mode, RefreshMode::Rowwise { .. }) {
                return Err(ServiceError::invalid(format!(
                    "slicing.{table}: a row-wise refresh cannot be sliced (it reads both sides in key order)"
                )));
            }
            let filters = self
                .slice_filters(spec, how, source.as_ref(), dialects)
                .await?;
            out.insert(table.clone(), filters);
        }
        Ok(out)
    }

    /// Refreshes one table of a job, recording its results and log lines.
    async fn refresh_table(
        &self,
        run: &JobRun,
        plan: RefreshTablePlan,
        options: RefreshOptions,
    ) -> Result<RefreshTableResult> {
        let JobRun {
            hub,
            job,
            event,
            source,
            target,
            progress,
            cancel,
        } = run;
        let event = *event;
        let repo = self.job_store();
        self.check_claim(hub, job, cancel).await?;
        let name = plan.name.clone();
        repo.put_results(
            event,
            &[
                result(&name, ResultName::TableState, table_state::BUSY),
                result(
                    &name,
                    ResultName::TableStartTime,
                    &chrono::Utc::now().to_rfc3339(),
                ),
            ],
        )
        .await?;
        repo.append_log(
            event,
            &[format!(
                "table {name}: refresh of {} into {} started",
                plan.read.table, plan.write.table
            )],
        )
        .await?;
        // The repository decides between the table's commit and a cancel (from any process):
        // a refresh cancelled before its commit never commits, and once the commit has begun a
        // cancel is too late.
        let gate: Arc<dyn CommitGate> = Arc::new(RepositoryGate {
            repo: self.job_store_handle(),
            hub: hub.clone(),
            job: job.clone(),
            event,
            owner: self.inner.owner.clone(),
        });
        let report = run_refresh_gated(
            source.clone(),
            target.clone(),
            vec![plan],
            options,
            progress.clone(),
            cancel.clone(),
            Some(gate),
        )
        .await
        .remove(0);
        let seconds = report.duration.as_secs_f64();
        let error = report.error.as_ref().map(|e| chain(e));
        let state_text = match report.state {
            RefreshState::Done => table_state::DONE,
            RefreshState::Failed => table_state::FAILED,
            RefreshState::Canceled => table_state::CANCELED,
        };
        let mut results = vec![
            result(&name, ResultName::TableState, state_text),
            result(
                &name,
                ResultName::SourceRowsUsed,
                &report.source_rows.to_string(),
            ),
            result(&name, ResultName::TableDuration, &format!("{seconds:.3}")),
            result(&name, ResultName::BytesUsed, &report.bytes.to_string()),
        ];
        if report.state == RefreshState::Done {
            results.push(result(
                &name,
                ResultName::TargetRowsUsed,
                &report.target_rows.to_string(),
            ));
            if let Some(c) = &report.changes {
                let counts = match *c {
                    RowChanges::Merged {
                        inserted,
                        updated,
                        deleted,
                    } => vec![
                        (ResultName::RowsInserted, inserted),
                        (ResultName::RowsUpdated, updated),
                        (ResultName::RowsDeleted, deleted),
                    ],
                    RowChanges::Upserted { upserted } => vec![(ResultName::RowsUpserted, upserted)],
                };
                results.extend(
                    counts
                        .into_iter()
                        .map(|(what, n)| result(&name, what, &n.to_string())),
                );
            }
        }
        if let Some(error) = &error {
            results.push(result(&name, ResultName::TableError, error));
        }
        let mut lines = Vec::new();
        if !report.slices.is_empty() {
            let done = report.slices.iter().filter(|s| s.done).count();
            results.push(result(
                &name,
                ResultName::SubtasksTotal,
                &report.slices.len().to_string(),
            ));
            results.push(result(&name, ResultName::SubtasksDone, &done.to_string()));
            if report.state == RefreshState::Failed {
                results.push(result(
                    &name,
                    ResultName::SubtasksFailed,
                    &(report.slices.len() - done).to_string(),
                ));
            }
            for slice in &report.slices {
                lines.push(format!(
                    "table {name}: slice {}: {} rows{}",
                    slice.label,
                    slice.rows,
                    if slice.done { "" } else { " (not finished)" }
                ));
            }
        }
        repo.put_results(event, &results).await?;
        if !lines.is_empty() {
            repo.append_log(event, &lines).await?;
        }
        let line = match &error {
            None => format!(
                "table {name}: {} rows in {seconds:.2} s ({:.0} rows/s){}{}",
                report.source_rows,
                report.source_rows as f64 / seconds.max(1e-9),
                match report.changes {
                    Some(RowChanges::Upserted { upserted }) => format!(", {upserted} upserted"),
                    Some(RowChanges::Merged {
                        inserted,
                        updated,
                        deleted,
                    }) => format!(", {inserted} inserted, {updated} updated, {deleted} deleted"),
                    None => String::new(),
                },
                if report.created {
                    ", target table created"
                } else {
                    ""
                }
            ),
            Some(e) => format!(
                "table {name}: {} (target left as it was): {e}",
                state_text.to_lowercase()
            ),
        };
        repo.append_log(event, &[line]).await?;
        Ok(RefreshTableResult {
            table: name,
            state: report.state,
            rows: report.source_rows,
            bytes: report.bytes,
            seconds,
            created: report.created,
            changes: report.changes,
            error,
        })
    }

    async fn run_refresh_tables(
        &self,
        run: &JobRun,
        plans: Vec<RefreshTablePlan>,
        options: RefreshOptions,
    ) -> Result<RefreshSummary> {
        let (hub, job, event) = (&run.hub, &run.job, run.event);
        let started = Instant::now();
        let repo = self.job_store();
        // Up to `parallel` tables at once, each atomic on its own; results keep the plan order.
        let at_once = sluice_engine::tables_at_once(run.target.as_ref(), options.parallel);
        let tables: Vec<RefreshTableResult> = futures::stream::iter(plans)
            .map(|plan| self.refresh_table(run, plan, options))
            .buffered(at_once)
            .try_collect()
            .await?;
        let elapsed = started.elapsed().as_secs_f64();
        let rows: u64 = tables.iter().map(|t| t.rows).sum();
        let failed = tables
            .iter()
            .filter(|t| t.state == RefreshState::Failed)
            .count();
        let committed: Vec<&str> = tables
            .iter()
            .filter(|t| t.state == RefreshState::Done)
            .map(|t| t.table.as_str())
            .collect();
        let canceled = tables.iter().any(|t| t.state == RefreshState::Canceled);
        let (state, response) = if canceled && committed.is_empty() {
            (
                EventState::Canceled,
                format!("Refresh canceled. (elapsed={elapsed:.2}s)"),
            )
        } else if canceled {
            // Never CANCELED with a committed table: those tables hold the new rows.
            (
                EventState::Failed,
                format!(
                    "Refresh canceled after {} of {} table(s) committed ({}); the others were left as they were. (elapsed={elapsed:.2}s)",
                    committed.len(),
                    tables.len(),
                    committed.join(", ")
                ),
            )
        } else if failed > 0 {
            (
                EventState::Failed,
                format!(
                    "Refresh failed for {failed} of {} table(s). (elapsed={elapsed:.2}s)",
                    tables.len()
                ),
            )
        } else {
            (
                EventState::Done,
                format!(
                    "Refresh completed: {} table(s), {rows} rows. (elapsed={elapsed:.2}s)",
                    tables.len()
                ),
            )
        };
        repo.append_log(event, std::slice::from_ref(&response))
            .await?;
        repo.finish_job(hub, job, event, state, &response).await?;
        Ok(RefreshSummary {
            event,
            job: job.clone(),
            state,
            response,
            tables,
        })
    }

    /// Starts a compare: returns once the job is claimed and planned; the tables run in the
    /// background.
    pub async fn compare(&self, cmd: CompareCommand) -> Result<RunningJob<CompareSummary>> {
        self.submit_compare(cmd, Start::Now).await?.running()
    }

    /// Submits a compare: starts it now, leaves it pending, or runs the job's pending event.
    pub async fn submit_compare(
        &self,
        cmd: CompareCommand,
        start: Start,
    ) -> Result<Submitted<CompareSummary>> {
        let r = self
            .resolve(
                &cmd.hub,
                &cmd.channel,
                cmd.source.as_ref(),
                cmd.target.as_ref(),
                &cmd.tables,
                true,
            )
            .await?;
        let sliced = self.sliced(&r, &cmd.slicing, false).await?;
        if cmd.online.is_some() {
            if cmd.granularity != Granularity::Rowwise {
                return Err(ServiceError::invalid(
                    "online compare is row-wise: it needs granularity \"rowwise\"",
                ));
            }
            if !cmd.slicing.is_empty() {
                return Err(ServiceError::invalid(
                    "online compare does not read tables in slices",
                ));
            }
            self.check_online_compare(&cmd.hub, &r.channel.name, &r.source.name, &r.target.name)
                .await?;
        }
        let job = JobName::compare(&r.channel.name, &r.source.name, &r.target.name);
        let body = serde_json::json!({
            "source_loc": r.source.name,
            "target_loc": r.target.name,
            "tables": r.specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            "granularity": cmd.granularity,
        });
        let body = serde_json::json!({ "request": body, "command": cmd });
        let claimed = match self
            .claim(&r, EventType::Compare, &job, body, start)
            .await?
        {
            Ok(claimed) => claimed,
            Err(posted) => return Ok(Submitted::Pending(posted)),
        };
        // Each table is planned on its own: a table missing on either side (or otherwise
        // unplannable) fails in the event's results, as HVR reports it, and the others are
        // still compared.
        let mut plans = Vec::with_capacity(r.specs.len());
        for spec in &r.specs {
            let plan = plan_compare_table(
                spec,
                claimed.source.as_ref(),
                claimed.target.as_ref(),
                cmd.granularity,
                BatchLimits::DEFAULT,
            )
            .await;
            plans.push(plan);
        }
        let options = CompareOptions {
            granularity: cmd.granularity,
            pushdown: cmd.pushdown,
            // An online compare keeps the keys of the differences it settles.
            max_listed: if cmd.online.is_some() {
                crate::online::MAX_SUSPECTS.max(cmd.max_listed)
            } else {
                cmd.max_listed
            },
        };
        let online = cmd.online.map(|o| Online {
            channel: r.channel.name.clone(),
            options: o,
            max_listed: cmd.max_listed,
        });
        Ok(Submitted::Running(self.spawn(
            &r,
            job,
            claimed,
            move |service, run| async move {
                service
                    .run_compare_tables(&run, plans, sliced, options, online)
                    .await
            },
        )))
    }

    async fn run_compare_tables(
        &self,
        run: &JobRun,
        plans: Vec<std::result::Result<CompareTablePlan, EngineError>>,
        sliced: std::collections::BTreeMap<TableName, Vec<crate::slicing::SliceFilter>>,
        options: CompareOptions,
        online: Option<Online>,
    ) -> Result<CompareSummary> {
        let JobRun {
            hub,
            job,
            event,
            source,
            target,
            progress,
            cancel,
        } = run;
        let event = *event;
        let started = Instant::now();
        let repo = self.job_store();
        let mut tables = Vec::new();
        for plan in plans {
            self.check_claim(hub, job, cancel).await?;
            let plan = match plan {
                Ok(plan) => plan,
                Err(e) => {
                    tables.push(self.unplanned_compare_table(event, e).await?);
                    continue;
                }
            };
            let name = plan.name.clone();
            repo.put_results(
                event,
                &[result(&name, ResultName::TableState, table_state::BUSY)],
            )
            .await?;
            let online_plan = online.as_ref().map(|_| plan.clone());
            // A sliced table is compared slice by slice, and reported as one table.
            let slices: Vec<CompareTablePlan> = match sliced.get(&name) {
                None => vec![plan],
                Some(filters) => filters
                    .iter()
                    .map(|f| {
                        let mut part = plan.clone();
                        part.source_read.filter = Some(f.source.clone());
                        part.target_read.filter = Some(f.target.clone());
                        part
                    })
                    .collect(),
            };
            let parts = run_compare(
                source.clone(),
                target.clone(),
                slices,
                options,
                progress.clone(),
                cancel.clone(),
            )
            .await;
            let subtasks = sliced.get(&name).map(|_| {
                let done = parts
                    .iter()
                    .filter(|p| {
                        matches!(p.state, CompareState::Identical | CompareState::Different)
                    })
                    .count();
                (parts.len(), done)
            });
            let mut report = merge_compare_reports(parts, options.max_listed);
            let mut online_result = None;
            if let (Some(o), Some(plan)) = (&online, &online_plan) {
                let started = Instant::now();
                if report.state == CompareState::Different
                    && let Some(first) = report.diff.take()
                {
                    match self
                        .settle_table(
                            hub,
                            &o.channel,
                            source.clone(),
                            target.clone(),
                            plan,
                            &first,
                            o.options,
                            o.max_listed,
                            cancel,
                        )
                        .await
                    {
                        Ok((diff, r)) => {
                            report.state = if diff.is_empty() {
                                CompareState::Identical
                            } else {
                                CompareState::Different
                            };
                            report.diff = Some(diff);
                            online_result = Some(r);
                        }
                        Err(e) => {
                            report.state = if e.kind() == sluice_connector::ErrorKind::Cancelled {
                                CompareState::Canceled
                            } else {
                                CompareState::Failed
                            };
                            report.diff = Some(truncated(first, o.max_listed));
                            report.error = Some(EngineError::table(&name, e));
                        }
                    }
                } else {
                    online_result = Some(crate::online::OnlineTableResult::default());
                }
                report.duration += started.elapsed();
            }
            let seconds = report.duration.as_secs_f64();
            let error = report.error.as_ref().map(|e| chain(e));
            let state_text = match report.state {
                CompareState::Identical => table_state::DONE_IDENTICAL,
                CompareState::Different => table_state::DONE_DIFFERENT,
                CompareState::Failed => table_state::FAILED,
                CompareState::Canceled => table_state::CANCELED,
            };
            let mut results = vec![
                result(&name, ResultName::TableState, state_text),
                result(
                    &name,
                    ResultName::SourceRowsUsed,
                    &report.source_rows.to_string(),
                ),
                result(
                    &name,
                    ResultName::TargetRowsUsed,
                    &report.target_rows.to_string(),
                ),
                result(&name, ResultName::TableDuration, &format!("{seconds:.3}")),
            ];
            if let Some(diff) = &report.diff {
                results.push(result(
                    &name,
                    ResultName::RowsOnlyOnSource,
                    &diff.only_on_source.to_string(),
                ));
                results.push(result(
                    &name,
                    ResultName::RowsOnlyOnTarget,
                    &diff.only_on_target.to_string(),
                ));
                results.push(result(
                    &name,
                    ResultName::RowsWhichDiffer,
                    &diff.differ.to_string(),
                ));
            }
            if let Some(o) = &online_result {
                results.push(result(
                    &name,
                    ResultName::RowsInFlight,
                    &o.in_flight.to_string(),
                ));
            }
            if let Some(error) = &error {
                results.push(result(&name, ResultName::TableError, error));
            }
            if let Some((total, done)) = subtasks {
                results.push(result(&name, ResultName::SubtasksTotal, &total.to_string()));
                results.push(result(&name, ResultName::SubtasksDone, &done.to_string()));
                if done < total {
                    results.push(result(
                        &name,
                        ResultName::SubtasksFailed,
                        &(total - done).to_string(),
                    ));
                }
            }
            repo.put_results(event, &results).await?;
            let line = match (&error, &report.diff) {
                (Some(e), _) => format!("table {name}: {}: {e}", state_text.to_lowercase()),
                (None, Some(d)) => format!(
                    "table {name}: {} ({} source rows, {} target rows; only on source {}, only on target {}, differ {})",
                    state_text,
                    report.source_rows,
                    report.target_rows,
                    d.only_on_source,
                    d.only_on_target,
                    d.differ
                ),
                (None, None) => format!(
                    "table {name}: {} ({} source rows, {} target rows)",
                    state_text, report.source_rows, report.target_rows
                ),
            };
            let mut lines = vec![line];
            // The differing keys the compare listed, so the event says which rows differ.
            if let Some(d) = &report.diff {
                for (what, keys) in [
                    ("only on source", &d.only_on_source_keys),
                    ("only on target", &d.only_on_target_keys),
                    ("differ", &d.differ_keys),
                ] {
                    if !keys.is_empty() {
                        let listed: Vec<String> = keys
                            .iter()
                            .take(50)
                            .map(|k| {
                                let parts: Vec<String> = k.iter().map(|v| v.to_string()).collect();
                                format!("({})", parts.join(", "))
                            })
                            .collect();
                        lines.push(format!("table {name}: keys {what}: {}", listed.join(" ")));
                    }
                }
            }
            if let Some(o) = &online_result
                && o.suspects > 0
            {
                lines.push(format!(
                    "table {name}: online: of {} rows found different, {} were changes in flight, {} still changing after {} round(s) (in flight, not differences){}",
                    o.suspects,
                    o.settled,
                    o.in_flight,
                    o.rounds,
                    if o.unexamined > 0 {
                        format!("; {} more differences reported unexamined", o.unexamined)
                    } else {
                        String::new()
                    }
                ));
            }
            repo.append_log(event, &lines).await?;
            tables.push(CompareTableResult {
                table: name,
                state: report.state,
                source_rows: report.source_rows,
                target_rows: report.target_rows,
                seconds,
                checksums: report.checksums,
                diff: report.diff,
                error,
                online: online_result,
            });
        }
        let elapsed = started.elapsed().as_secs_f64();
        let different = tables
            .iter()
            .filter(|t| t.state == CompareState::Different)
            .count();
        let failed = tables
            .iter()
            .filter(|t| t.state == CompareState::Failed)
            .count();
        let (state, response) = if tables.iter().any(|t| t.state == CompareState::Canceled) {
            (
                EventState::Canceled,
                format!("Compare canceled. (elapsed={elapsed:.2}s)"),
            )
        } else if failed > 0 {
            (
                EventState::Failed,
                format!(
                    "Compare failed for {failed} of {} table(s). (elapsed={elapsed:.2}s)",
                    tables.len()
                ),
            )
        } else if different > 0 {
            (
                EventState::Done,
                format!(
                    "Compare completed: {different} of {} table(s) differ. (elapsed={elapsed:.2}s)",
                    tables.len()
                ),
            )
        } else {
            (
                EventState::Done,
                format!(
                    "Compare completed: {} table(s) identical. (elapsed={elapsed:.2}s)",
                    tables.len()
                ),
            )
        };
        repo.append_log(event, std::slice::from_ref(&response))
            .await?;
        repo.finish_job(hub, job, event, state, &response).await?;
        Ok(CompareSummary {
            event,
            job: job.clone(),
            state,
            response,
            identical: state == EventState::Done && different == 0,
            tables,
        })
    }
}

impl HubService {
    /// Records a compare table that could not be planned (e.g. missing on the target) as FAILED,
    /// with the reason as its `Table_Error`.
    async fn unplanned_compare_table(
        &self,
        event: EventId,
        e: EngineError,
    ) -> Result<CompareTableResult> {
        let name = e.table.clone();
        let error = chain(&e.source);
        self.job_store()
            .put_results(
                event,
                &[
                    result(&name, ResultName::TableState, table_state::FAILED),
                    result(&name, ResultName::TableError, &error),
                ],
            )
            .await?;
        self.job_store()
            .append_log(event, &[format!("table {name}: failed: {error}")])
            .await?;
        Ok(CompareTableResult {
            table: name,
            state: CompareState::Failed,
            source_rows: 0,
            target_rows: 0,
            seconds: 0.0,
            checksums: None,
            diff: None,
            error: Some(error),
            online: None,
        })
    }
}

/// What an online compare needs besides the compare's options.
struct Online {
    channel: ChannelName,
    options: crate::online::OnlineCompare,
    /// Keys listed per kind as the request asked (the first compare keeps more).
    max_listed: usize,
}

/// `diff` with at most `max_listed` keys of each kind.
fn truncated(mut diff: RowDiff, max_listed: usize) -> RowDiff {
    diff.only_on_source_keys.truncate(max_listed);
    diff.only_on_target_keys.truncate(max_listed);
    diff.differ_keys.truncate(max_listed);
    diff
}

/// One table's compare from the compares of its slices: rows and differences add up, the table
/// differs when a slice does, and fails (or is cancelled) when a slice does.
fn merge_compare_reports(
    parts: Vec<sluice_engine::CompareReport>,
    max_listed: usize,
) -> sluice_engine::CompareReport {
    let mut parts = parts.into_iter();
    let Some(mut total) = parts.next() else {
        unreachable!("a table is compared in at least one part")
    };
    let sliced = parts.len() > 0;
    for part in parts {
        total.source_rows += part.source_rows;
        total.target_rows += part.target_rows;
        total.bytes += part.bytes;
        total.duration += part.duration;
        total.state = match (total.state, part.state) {
            (CompareState::Canceled, _) | (_, CompareState::Canceled) => CompareState::Canceled,
            (CompareState::Failed, _) | (_, CompareState::Failed) => CompareState::Failed,
            (CompareState::Different, _) | (_, CompareState::Different) => CompareState::Different,
            _ => CompareState::Identical,
        };
        if total.error.is_none() {
            total.error = part.error;
        }
        if let (Some(d), Some(p)) = (&mut total.diff, part.diff) {
            d.only_on_source += p.only_on_source;
            d.only_on_target += p.only_on_target;
            d.differ += p.differ;
            for (mine, theirs) in [
                (&mut d.only_on_source_keys, p.only_on_source_keys),
                (&mut d.only_on_target_keys, p.only_on_target_keys),
                (&mut d.differ_keys, p.differ_keys),
            ] {
                let room = max_listed.saturating_sub(mine.len());
                mine.extend(theirs.into_iter().take(room));
            }
        }
    }
    if sliced {
        // Checksums are per slice; the table's would need every row again.
        total.checksums = None;
    }
    total
}

/// Sets every table's refresh mode and strategy.
fn set_modes(r: &mut Resolved, cmd: &RefreshCommand) -> Result<()> {
    for spec in &mut r.specs {
        let (mode, strategy) = table_mode(&r.channel, &r.target.name, &spec.name, cmd)?;
        spec.mode = mode;
        spec.strategy = strategy;
    }
    Ok(())
}

fn refresh_options(cmd: &RefreshCommand) -> RefreshOptions {
    RefreshOptions {
        strategy: cmd.strategy.unwrap_or(WriteStrategy::TruncateLoad),
        limits: cmd
            .batch_rows
            .map_or(BatchLimits::DEFAULT, BatchLimits::rows),
        count_first: cmd.count_first,
        parallel: cmd.parallel.unwrap_or(1).max(1),
    }
}

fn result(table: &TableName, name: ResultName, value: &str) -> EventResult {
    EventResult {
        table: Some(table.clone()),
        name,
        value: value.to_owned(),
    }
}

/// The state of `event` as the repository has it now (`None`: no such event in `hub`).
async fn event_state(
    repo: &dyn sluice_repo::JobStore,
    hub: &HubName,
    event: EventId,
) -> sluice_repo::Result<Option<EventState>> {
    let filter = sluice_repo::EventFilter {
        hub: Some(hub.clone()),
        ids: vec![event],
        ..Default::default()
    };
    Ok(repo.events(&filter).await?.first().map(|e| e.state))
}

/// The commit gate of a refresh: the repository records that a table's commit begins only while
/// the event is `ACTIVE` and this process holds the job, in the same transaction that a cancel
/// would have to wait for.
struct RepositoryGate {
    repo: Arc<dyn sluice_repo::JobStore>,
    hub: HubName,
    job: JobName,
    event: EventId,
    owner: sluice_repo::Owner,
}

/// Attempts at a repository call of the commit gate before it gives up.
const GATE_ATTEMPTS: usize = 3;

impl CommitGate for RepositoryGate {
    fn begin(&self, table: &TableName) -> futures::future::BoxFuture<'static, bool> {
        let (repo, hub, job, event, owner) = (
            self.repo.clone(),
            self.hub.clone(),
            self.job.clone(),
            self.event,
            self.owner.clone(),
        );
        let table = table.clone();
        Box::pin(async move {
            // A passing repository error is retried; if the answer stays unknown, the table does
            // not commit what may have been cancelled.
            for _ in 0..GATE_ATTEMPTS {
                match repo.begin_commit(&hub, &job, event, &table, &owner).await {
                    Ok(open) => return open,
                    Err(error) if error.kind() == RepoErrorKind::Conflict => {
                        tracing::error!(job = %job, error = %error, "lost the job before a commit");
                        return false;
                    }
                    Err(error) => {
                        tracing::warn!(event = %event, error = %error, "cannot mark a commit; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
            }
            false
        })
    }

    fn end(&self, table: &TableName, committed: bool) -> futures::future::BoxFuture<'static, ()> {
        let (repo, event, table) = (self.repo.clone(), self.event, table.clone());
        Box::pin(async move {
            for _ in 0..GATE_ATTEMPTS {
                match repo.end_commit(event, &table, committed).await {
                    Ok(()) => return,
                    Err(error) => {
                        tracing::warn!(event = %event, error = %error, "cannot record a commit's end; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
            }
            // The marker stays BEGUN: cancels of this event answer too late until it ends, which
            // it does on its own (or by the reaper).
        })
    }
}
