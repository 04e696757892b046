//! Activated channels: `activate` sets up capture at the channel's source and integrate at its
//! targets (optionally loading the targets from the snapshot capture starts at), then the jobs
//! `{chn}-cap-{src}` and `{chn}-integ-{tgt}` replicate every change until `deactivate`.
//!
//! - An activated channel is recorded in the repository (`PropBag::Activation`: source, targets,
//!   the name of the capture at the source, state `loading` or `active`).
//! - A supervisor in every hub server process looks at the activated channels every second and
//!   starts the replication of a channel whose jobs are neither running (in any live process),
//!   suspended nor failed: each run posts a `Capture` and an `Integrate` event per target and
//!   claims their jobs, as a refresh claims its job, so one process replicates a channel at a
//!   time and a process that died is taken over.
//! - Suspending either job stops the run (its event becomes `CANCELED`, its job `SUSPEND`); the
//!   channel does not replicate again until the job is started or unsuspended. The source keeps
//!   the changes meanwhile (PostgreSQL: the slot keeps its WAL).
//! - Exactly once: the engine ([`sluice_engine::replicate`]) stores each target's checkpoint in
//!   the target's own transaction and acknowledges to the source only what every target stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value as Json, json};
use sluice_connector::{
    CaptureRequest, CaptureTable, ChangeApplier, Connector, ConnectorError, IntegrateBatch,
    IntegrateRequest, IntegrateTable, Introspector, PlannedStatement, RawSnapshot, ReadRequest,
    SharedSnapshot, Snapshot, SnapshotReader, TestReport,
};
use sluice_engine::{
    ApplyLimits, CapturedChanges, OpCounts, ReplicatedTable, ReplicationError, ReplicationEvent,
    ReplicationPlan, ReplicationTarget, run_replication,
};
use sluice_events::topic::CHANGE_TOPIC;
use sluice_events::{Actor, NewEvent as HubEvent, RoutingKey, TopicName};
use sluice_model::definition::{ActionKind, ActionType, Channel, Location, LocationClass};
use sluice_model::refresh::RefreshModeKind;
use sluice_model::{
    ChannelName, Checkpoint, ColumnDef, Condition, EventId, EventState, EventType, HubName,
    JobName, JobState, JobType, LocationName, Position, ResultName, TableName, TableRef,
    TableSchema, Value,
};
use sluice_repo::{
    EventFilter, EventResult, NewEvent, PropBag, PropBagKind, PropWrite, RepoErrorKind,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::jobs::{ModeOverride, Posted, RefreshCommand, Resolved, Start, chain};
use crate::{HubService, Result, STALE_AFTER, ServiceError};

/// Per-job-type seconds to wait before a replication that failed on a passing error (a broken
/// connection, a timeout) is started again.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How often a running replication writes its figures to its events.
const RESULTS_EVERY: Duration = Duration::from_secs(2);
/// How long `deactivate` (or a re-`activate`) waits for a running replication to stop.
const STOP_WAIT: Duration = Duration::from_secs(60);

/// An activation request (HVR's `activate`, plus `refresh`).
#[derive(Debug, Clone)]
pub struct ActivateCommand {
    /// The hub.
    pub hub: HubName,
    /// The channel.
    pub channel: ChannelName,
    /// Load every target from the snapshot capture starts at, so that nothing is missed or
    /// applied twice while the source keeps taking writes. Without it the targets are taken to
    /// be in sync already and receive the changes committed from now on.
    pub refresh: bool,
    /// Pending refresh events (HVR's `start_next_ev_ids`) that are run as the initial load, in
    /// the snapshot capture starts at.
    pub refresh_events: Vec<EventId>,
    /// Start replicating at once (the default); `false` leaves the jobs suspended.
    pub start: bool,
}

/// A replication's figures, kept while it runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplicationStats {
    /// When the run started.
    pub started_at: Option<DateTime<Utc>>,
    /// Row changes captured.
    pub captured: u64,
    /// Row changes applied, by target (after coalescing).
    pub integrated: BTreeMap<LocationName, u64>,
    /// Seconds from a source commit to its capture, last seen.
    pub capture_latency: Option<f64>,
    /// Seconds from a source commit to the target's commit, last batch, by target.
    pub integrate_latency: BTreeMap<LocationName, f64>,
    /// The position last acknowledged to the source.
    pub acknowledged: Option<String>,
    /// The same position as a value (every target has stored the changes committed before it).
    #[serde(skip)]
    pub durable_position: Option<Position>,
    /// Per table: changes captured, and applied per target.
    pub tables: BTreeMap<TableName, TableStats>,
    /// Columns added to targets since the run started, as `target.table.column`.
    pub columns_added: Vec<String>,
}

/// One table's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TableStats {
    /// Captured, by operation.
    pub captured: OpCounts,
    /// Applied per target, by operation.
    pub integrated: BTreeMap<LocationName, OpCounts>,
    /// Seconds from a source commit to its capture, last seen.
    pub capture_latency: Option<f64>,
    /// Seconds from a source commit to the target's commit, last batch with this table.
    pub integrate_latency: BTreeMap<LocationName, f64>,
}

/// The replication state of an activated channel.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicationStatus {
    /// The channel.
    pub channel: ChannelName,
    /// `loading` (activation's initial load) or `active`.
    pub state: String,
    /// The source location.
    pub source: LocationName,
    /// The target locations.
    pub targets: Vec<LocationName>,
    /// The jobs with their states.
    pub jobs: Vec<(JobName, JobState)>,
    /// Whether this process runs the replication now.
    pub running_here: bool,
    /// Its figures, when it runs here.
    pub stats: Option<ReplicationStats>,
    /// Bytes of source log the capture has not acknowledged yet, when the source can tell.
    pub capture_lag_bytes: Option<u64>,
}

/// The replications this process runs.
#[derive(Default)]
pub(crate) struct Replications(Mutex<HashMap<(HubName, ChannelName), Running>>);

#[derive(Clone)]
struct Running {
    cancel: CancellationToken,
    stats: Arc<Mutex<ReplicationStats>>,
    /// The position last acknowledged (every target durable up to it), for waiters in this
    /// process.
    durable: Arc<watch::Sender<Option<Position>>>,
}

impl Replications {
    fn get(&self, hub: &HubName, channel: &ChannelName) -> Option<Running> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(hub.clone(), channel.clone()))
            .cloned()
    }

    fn insert(&self, hub: &HubName, channel: &ChannelName, running: Running) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (hub.clone(), channel.clone());
        if map.contains_key(&key) {
            return false;
        }
        map.insert(key, running);
        true
    }

    fn remove(&self, hub: &HubName, channel: &ChannelName) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(hub.clone(), channel.clone()));
    }

    /// What a waiter in this process watches: the run's durable position; `None` when the
    /// channel does not replicate here.
    pub(crate) fn durable(
        &self,
        hub: &HubName,
        channel: &ChannelName,
    ) -> Option<watch::Receiver<Option<Position>>> {
        self.get(hub, channel).map(|r| r.durable.subscribe())
    }

    fn all(&self) -> Vec<(ChannelKey, SharedStats)> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.stats.clone()))
            .collect()
    }
}

/// The capture job of `channel` at `source`.
pub fn capture_job(channel: &ChannelName, source: &LocationName) -> JobName {
    JobName::new(channel, JobType::Capture, &[source]).expect("a capture job names one location")
}

/// The integrate job of `channel` at `target`.
pub fn integrate_job(channel: &ChannelName, target: &LocationName) -> JobName {
    JobName::new(channel, JobType::Integrate, &[target])
        .expect("an integrate job names one location")
}

fn job_of(channel: &ChannelName, job_type: JobType) -> JobName {
    JobName::new(channel, job_type, &[]).expect("activate and deactivate jobs name no location")
}

/// The name of what capture creates at the source: lowercase letters, digits and `_`, at most
/// 63 bytes (PostgreSQL's identifier limit), unique per hub, channel and source.
pub fn capture_name(hub: &HubName, channel: &ChannelName, source: &LocationName) -> String {
    let raw = format!("sluice_{hub}_{channel}_{source}").to_lowercase();
    let clean: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if clean.len() <= 63 {
        return clean;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(raw.as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}_{hash}", &clean[..46])
}

fn checkpoint_name(hub: &HubName, channel: &ChannelName, source: &LocationName) -> String {
    format!("{hub}/{channel}/{source}")
}

/// What an activated channel is made of, resolved from its definitions.
struct Setup {
    hub: HubName,
    channel: Channel,
    source: Location,
    /// Per target, the channel resolved between the source and it.
    targets: Vec<Resolved>,
    /// Publish captured changes on the event hub (`Capture` action `EventHub=1`).
    publish: bool,
}

impl Setup {
    fn capture_name(&self) -> String {
        capture_name(&self.hub, &self.channel.name, &self.source.name)
    }

    fn checkpoint_name(&self) -> String {
        checkpoint_name(&self.hub, &self.channel.name, &self.source.name)
    }

    fn jobs(&self) -> Vec<JobName> {
        let mut jobs = vec![capture_job(&self.channel.name, &self.source.name)];
        jobs.extend(
            self.targets
                .iter()
                .map(|r| integrate_job(&self.channel.name, &r.target.name)),
        );
        jobs
    }
}

fn truthy(value: &str) -> bool {
    matches!(value.trim(), "1" | "true" | "TRUE" | "True" | "yes")
}

impl HubService {
    /// Resolves a channel for replication: its one Capture location, its Integrate locations,
    /// and checks that each can do its part.
    async fn replication_setup(&self, hub: &HubName, channel: &ChannelName) -> Result<Setup> {
        let def = self.channel(hub, channel).await?;
        let sources = def.locations_with_action(ActionType::Capture);
        let source = match sources.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(ServiceError::invalid(format!(
                    "channel {channel} has no Capture action: add one on its source location group"
                )));
            }
            many => {
                return Err(ServiceError::invalid(format!(
                    "channel {channel} captures at several locations ({}); sluice replicates from one source per channel",
                    many.iter()
                        .map(|l| l.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        let target_names: Vec<LocationName> = def
            .locations_with_action(ActionType::Integrate)
            .into_iter()
            .filter(|l| **l != source)
            .cloned()
            .collect();
        if target_names.is_empty() {
            return Err(ServiceError::invalid(format!(
                "channel {channel} has no Integrate action: add one on its target location group"
            )));
        }
        let mut targets = Vec::new();
        for target in &target_names {
            targets.push(
                self.resolve(hub, channel, Some(&source), Some(target), &[], false)
                    .await?,
            );
        }
        let source = targets[0].source.clone();
        let capture_class_ok = matches!(
            source.class,
            LocationClass::Postgresql | LocationClass::Mariadb | LocationClass::Sqlite
        );
        if !capture_class_ok {
            return Err(ServiceError::invalid(format!(
                "location {} is of class {}: sluice captures changes from PostgreSQL, MariaDB and SQLite",
                source.name, source.class
            )));
        }
        let publish = def.actions.iter().any(|a| {
            matches!(a.kind(), ActionKind::Capture)
                && def.loc_in_scope(&a.loc_scope, &source.name)
                && a.params()
                    .get("EventHub")
                    .is_some_and(|v| truthy(&v.to_text()))
        });
        Ok(Setup {
            hub: hub.clone(),
            channel: def,
            source,
            targets,
            publish,
        })
    }

    pub(crate) fn capture_connector(&self, location: &Location) -> Result<Arc<dyn Connector>> {
        let c = self
            .connect(location)
            .map_err(|e| ServiceError::connector(format!("location {}", location.name), e))?;
        if c.change_reader().is_none() {
            return Err(ServiceError::invalid(format!(
                "location {} ({}) cannot capture changes",
                location.name, location.class
            )));
        }
        Ok(c)
    }

    fn integrate_connector(&self, location: &Location) -> Result<Arc<dyn Connector>> {
        let c = self
            .connect(location)
            .map_err(|e| ServiceError::connector(format!("location {}", location.name), e))?;
        if c.change_writer().is_none() {
            return Err(ServiceError::invalid(format!(
                "location {} ({}) cannot integrate changes yet",
                location.name, location.class
            )));
        }
        Ok(c)
    }

    /// The source tables of a channel with their columns as they are now.
    async fn capture_request(
        &self,
        setup: &Setup,
        source: &dyn Connector,
    ) -> Result<CaptureRequest> {
        let introspector = introspector(source, &setup.source.name)?;
        let mut tables = Vec::new();
        for spec in &setup.targets[0].specs {
            let schema = table_schema(introspector, &spec.source, &setup.source.name).await?;
            tables.push(CaptureTable {
                table: spec.source.clone(),
                columns: schema.columns,
            });
        }
        Ok(CaptureRequest {
            name: setup.capture_name(),
            tables,
        })
    }

    /// The target tables of one target, with the columns integrate writes.
    async fn integrate_request(
        &self,
        setup: &Setup,
        r: &Resolved,
        target: &dyn Connector,
    ) -> Result<IntegrateRequest> {
        let introspector = introspector(target, &r.target.name)?;
        let mut tables = Vec::new();
        for spec in &r.specs {
            let schema = table_schema(introspector, &spec.target, &r.target.name).await?;
            let columns: Vec<ColumnDef> = schema
                .columns
                .iter()
                .filter(|c| {
                    !spec.excluded.contains(&c.name) && !spec.source_absent.contains(&c.name)
                })
                .cloned()
                .collect();
            let mut key_names = schema.primary_key.clone();
            for k in &spec.key {
                if !key_names.contains(k) {
                    key_names.push(k.clone());
                }
            }
            if key_names.is_empty() {
                return Err(ServiceError::invalid(format!(
                    "table {} at target {} has no primary key: integrate needs one (or a ColumnProperties Key action)",
                    spec.name, r.target.name
                )));
            }
            let key = key_names
                .iter()
                .map(|k| {
                    columns.iter().position(|c| &c.name == k).ok_or_else(|| {
                        ServiceError::invalid(format!(
                            "table {}: key column {k} is not among the columns integrate writes at {}",
                            spec.name, r.target.name
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            tables.push(IntegrateTable {
                table: spec.target.clone(),
                columns,
                key,
            });
        }
        Ok(IntegrateRequest {
            name: setup.checkpoint_name(),
            tables,
        })
    }

    /// Activates a channel (HVR's `activate`): posts an `Activate` event and returns at once;
    /// the set-up (and the initial load) runs in the background and ends the event.
    pub async fn activate(&self, cmd: ActivateCommand) -> Result<Posted> {
        Ok(self.submit_activate(cmd, Start::Now).await?.0)
    }

    /// [`HubService::activate`], or only its event posted ([`Start::Pending`]), or the job's
    /// pending event run ([`Start::Claim`]). Also returns the task that ends the event, when it
    /// runs.
    pub(crate) async fn submit_activate(
        &self,
        cmd: ActivateCommand,
        start: Start,
    ) -> Result<(Posted, Option<JoinHandle<()>>)> {
        self.ensure_live(&cmd.hub).await?;
        let setup = self.replication_setup(&cmd.hub, &cmd.channel).await?;
        // Refuse early what is certain to fail.
        self.capture_connector(&setup.source)?;
        for r in &setup.targets {
            self.integrate_connector(&r.target)?;
        }
        let job = job_of(&cmd.channel, JobType::Activate);
        let body = json!({
            "refresh": cmd.refresh,
            "start_next_ev_ids": cmd.refresh_events.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            "start_immediate": cmd.start,
        });
        let new_event = self.run_event(
            &cmd.hub,
            EventType::Activate,
            &job,
            &setup.channel.name,
            Some(&setup.source.name),
            None,
            format!(
                "Activate channel {} (capture at {}, integrate at {})",
                cmd.channel,
                setup.source.name,
                setup
                    .targets
                    .iter()
                    .map(|r| r.target.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            body,
        );
        let (event, canceled) = self.post_run(new_event, start).await?;
        let posted = Posted {
            event,
            job: job.clone(),
            canceled,
        };
        if start == Start::Pending {
            return Ok((posted, None));
        }
        let (stop, cancel) = self.watch_claim(&cmd.hub, &job, event);
        let service = self.clone();
        let job_name = job.clone();
        let task = self.spawn_job(async move {
            let hub = cmd.hub.clone();
            let outcome = tokio::select! {
                r = service.run_activation(&setup, &cmd, event) => r,
                _ = cancel.cancelled() => Err(ServiceError::invalid("activation was cancelled; what it had set up stays until the channel is activated again or deactivated")),
            };
            stop.cancel();
            if outcome.is_err() {
                service.undo_activation(&setup, event).await;
            }
            let (state, response) = match &outcome {
                Ok(line) => (EventState::Done, line.clone()),
                Err(e) => (EventState::Failed, chain(e)),
            };
            let repo = service.job_store();
            let _ = repo
                .append_log(event, std::slice::from_ref(&response))
                .await;
            if let Err(e) = repo
                .finish_job(&hub, &job_name, event, state, &response)
                .await
            {
                tracing::error!(job = %job_name, error = %e, "could not end the activation's event");
            }
        });
        Ok((posted, Some(task)))
    }

    /// Posts a job run's event and claims the job for this process.
    #[allow(clippy::too_many_arguments)]
    async fn start_run(
        &self,
        hub: &HubName,
        event_type: EventType,
        job: &JobName,
        channel: &ChannelName,
        loc: Option<&LocationName>,
        loc2: Option<&LocationName>,
        description: String,
        body: Json,
    ) -> Result<(EventId, Vec<EventId>)> {
        let new_event = self.run_event(hub, event_type, job, channel, loc, loc2, description, body);
        self.post_run(new_event, Start::Now).await
    }

    /// The `ACTIVE` event of a job run, by this service's user.
    #[allow(clippy::too_many_arguments)]
    fn run_event(
        &self,
        hub: &HubName,
        event_type: EventType,
        job: &JobName,
        channel: &ChannelName,
        loc: Option<&LocationName>,
        loc2: Option<&LocationName>,
        description: String,
        body: Json,
    ) -> NewEvent {
        NewEvent {
            hub: hub.clone(),
            event_type,
            user: self.user().to_owned(),
            description,
            channel: Some(channel.clone()),
            loc: loc.cloned(),
            loc2: loc2.cloned(),
            job: Some(job.clone()),
            state: EventState::Active,
            body,
        }
    }

    /// Posts `new_event` and claims its job for this process ([`Start::Now`]), or only posts it
    /// and leaves the job suspended ([`Start::Pending`]), or claims the job's pending event
    /// instead of posting one ([`Start::Claim`]). Returns the event and the pending events of the
    /// job it replaced.
    async fn post_run(&self, new_event: NewEvent, start: Start) -> Result<(EventId, Vec<EventId>)> {
        let (hub, job) = (
            new_event.hub.clone(),
            new_event
                .job
                .clone()
                .expect("a job run's event names its job"),
        );
        let (event, canceled, taken_over) = match start {
            Start::Now => {
                let s = self
                    .job_store()
                    .submit_job(new_event, Some((&self.inner.owner, STALE_AFTER)))
                    .await?;
                (s.event, s.canceled, s.taken_over)
            }
            Start::Pending => {
                let s = self.job_store().submit_job(new_event, None).await?;
                (s.event, s.canceled, Vec::new())
            }
            Start::Claim => {
                let (event, taken_over) = self
                    .job_store()
                    .claim_job(&hub, &job, &self.inner.owner, STALE_AFTER)
                    .await?;
                (event, Vec::new(), taken_over)
            }
        };
        for abandoned in &taken_over {
            tracing::warn!(job = %job, event = %abandoned, "took over a job whose process had stopped");
        }
        Ok((event, canceled))
    }

    async fn log(&self, event: EventId, line: String) {
        if let Err(e) = self.job_store().append_log(event, &[line]).await {
            tracing::warn!(event = %event, error = %e, "could not log to the event");
        }
    }

    async fn run_activation(
        &self,
        setup: &Setup,
        cmd: &ActivateCommand,
        event: EventId,
    ) -> Result<String> {
        let bag = PropBag::Activation(setup.hub.clone(), setup.channel.name.to_string());
        // A channel activated before: stop its replication first (its capture is made anew).
        if self.props_store().props(&bag).await?.is_some() {
            self.log(
                event,
                "the channel was activated before: stopping its replication".into(),
            )
            .await;
            // The supervisors start only `active` channels.
            self.set_activation_state(&bag, "loading").await?;
            self.stop_replication(&setup.hub, &setup.channel.name, &setup.jobs())
                .await?;
        }
        let source = self.capture_connector(&setup.source)?;
        let reader = source
            .change_reader()
            .expect("checked by capture_connector");
        let request = self.capture_request(setup, source.as_ref()).await?;
        reader
            .check_capture(&request)
            .await
            .map_err(|e| ServiceError::connector(format!("location {}", setup.source.name), e))?;
        let targets: Vec<String> = setup
            .targets
            .iter()
            .map(|r| r.target.name.to_string())
            .collect();
        let record = |state: &str, position: Option<&Position>| {
            BTreeMap::from([
                ("source".to_owned(), Some(json!(setup.source.name))),
                ("targets".to_owned(), Some(json!(targets))),
                ("capture".to_owned(), Some(json!(setup.capture_name()))),
                ("state".to_owned(), Some(json!(state))),
                (
                    "position".to_owned(),
                    position.map(|p| json!(p.to_string())),
                ),
                (
                    "activated_at".to_owned(),
                    Some(json!(Utc::now().to_rfc3339())),
                ),
            ])
        };
        self.props_store()
            .write_props(&bag, &record("loading", None), PropWrite::Replace)
            .await?;
        let start = reader
            .create_capture(&request)
            .await
            .map_err(|e| ServiceError::connector(format!("location {}", setup.source.name), e))?;
        self.log(
            event,
            format!(
                "capture {} created at {}; changes committed after {} are captured",
                request.name, setup.source.name, start.position
            ),
        )
        .await;
        let loads = cmd.refresh || !cmd.refresh_events.is_empty();
        if loads {
            let snapshot: Arc<dyn SharedSnapshot> = match start.snapshot {
                Some(s) => Arc::from(s),
                None => {
                    return Err(ServiceError::invalid(format!(
                        "location {} cannot hand over an initial load at the capture's start",
                        setup.source.name
                    )));
                }
            };
            self.initial_load(setup, cmd, event, snapshot).await?;
        }
        for r in &setup.targets {
            let target = self.integrate_connector(&r.target)?;
            let writer = target
                .change_writer()
                .expect("checked by integrate_connector");
            let request = self.integrate_request(setup, r, target.as_ref()).await?;
            let mut applier = writer
                .open_integrate(request)
                .await
                .map_err(|e| ServiceError::connector(format!("location {}", r.target.name), e))?;
            applier
                .apply(&IntegrateBatch {
                    tables: Vec::new(),
                    // Everything before the capture's start is in the target now; a
                    // transaction committing at that very position is not.
                    checkpoint: Checkpoint::at(start.position.before()),
                })
                .await
                .map_err(|e| ServiceError::connector(format!("location {}", r.target.name), e))?;
        }
        self.props_store()
            .write_props(
                &bag,
                &record("active", Some(&start.position)),
                PropWrite::Replace,
            )
            .await?;
        if cmd.start {
            for job in setup.jobs() {
                if let Ok(Some(record)) = self.job_store().job(&setup.hub, &job).await
                    && matches!(
                        record.state,
                        JobState::Suspend | JobState::Failed | JobState::Retry
                    )
                {
                    let _ = self
                        .job_store()
                        .set_job_state(&setup.hub, &job, JobState::Pending)
                        .await;
                }
            }
            self.start_replication(&setup.hub, &setup.channel.name)
                .await?;
        } else {
            for job in setup.jobs() {
                self.park_job(&setup.hub, setup, &job).await?;
            }
        }
        Ok(format!(
            "Channel {} activated: capture at {} from {}{}, integrate at {}",
            setup.channel.name,
            setup.source.name,
            start.position,
            if loads { " after the initial load" } else { "" },
            targets.join(", ")
        ))
    }

    /// Removes what a failed activation made: the capture at the source and the record.
    async fn undo_activation(&self, setup: &Setup, event: EventId) {
        if let Ok(source) = self.capture_connector(&setup.source)
            && let Some(reader) = source.change_reader()
        {
            match reader.drop_capture(&setup.capture_name()).await {
                Ok(()) => {
                    self.log(
                        event,
                        format!("capture {} removed again", setup.capture_name()),
                    )
                    .await
                }
                Err(e) => {
                    self.log(
                        event,
                        format!("could not remove capture {}: {e}", setup.capture_name()),
                    )
                    .await
                }
            }
        }
        let bag = PropBag::Activation(setup.hub.clone(), setup.channel.name.to_string());
        if let Err(e) = self.props_store().delete_bag(&bag).await {
            tracing::warn!(error = %e, "could not remove the activation record");
        }
    }

    /// Makes a job exist, suspended (activation with `start_immediate: false`).
    async fn park_job(&self, hub: &HubName, setup: &Setup, job: &JobName) -> Result<()> {
        if self.job_store().job(hub, job).await?.is_none() {
            let new_event = NewEvent {
                hub: hub.clone(),
                event_type: if job.job_type() == JobType::Capture {
                    EventType::Capture
                } else {
                    EventType::Integrate
                },
                user: self.user().to_owned(),
                description: format!("{job}: waiting to be started"),
                channel: Some(setup.channel.name.clone()),
                loc: job.locations().first().cloned(),
                loc2: None,
                job: Some(job.clone()),
                state: EventState::Active,
                body: json!({}),
            };
            let s = self.job_store().submit_job(new_event, None).await?;
            self.job_store()
                .finish_job(
                    hub,
                    job,
                    s.event,
                    EventState::Canceled,
                    "not started (start_immediate false)",
                )
                .await?;
        }
        let _ = self
            .job_store()
            .set_job_state(hub, job, JobState::Suspend)
            .await;
        Ok(())
    }

    async fn initial_load(
        &self,
        setup: &Setup,
        cmd: &ActivateCommand,
        event: EventId,
        snapshot: Arc<dyn SharedSnapshot>,
    ) -> Result<()> {
        let mut commands = Vec::new();
        for id in &cmd.refresh_events {
            let record = self
                .job_store()
                .events(&EventFilter {
                    hub: Some(setup.hub.clone()),
                    ids: vec![*id],
                    ..Default::default()
                })
                .await?
                .pop()
                .ok_or_else(|| ServiceError::not_found(format!("event {id} does not exist")))?;
            if record.event_type != EventType::Refresh || record.state != EventState::Active {
                return Err(ServiceError::invalid(format!(
                    "event {id} is not a pending refresh (it is a {} event, {})",
                    record.event_type, record.state
                )));
            }
            let command: RefreshCommand = serde_json::from_value(
                record.body.get("command").cloned().unwrap_or(Json::Null),
            )
            .map_err(|e| ServiceError::invalid(format!("event {id} holds no refresh: {e}")))?;
            commands.push((Some(*id), command));
        }
        if cmd.refresh {
            for r in &setup.targets {
                commands.push((
                    None,
                    RefreshCommand {
                        hub: setup.hub.clone(),
                        channel: setup.channel.name.clone(),
                        source: Some(setup.source.name.clone()),
                        target: Some(r.target.name.clone()),
                        tables: Vec::new(),
                        strategy: None,
                        batch_rows: None,
                        count_first: false,
                        mode: ModeOverride {
                            mode: Some(RefreshModeKind::FullReplace),
                            ..Default::default()
                        },
                        parallel: None,
                        slicing: Default::default(),
                    },
                ));
            }
        }
        for (pending, command) in commands {
            let submitted = match pending {
                Some(_) => {
                    self.submit_refresh_pinned_claim(command, snapshot.clone())
                        .await?
                }
                None => {
                    self.submit_refresh_pinned(command, snapshot.clone())
                        .await?
                }
            };
            let mut running = submitted.running()?;
            self.log(
                event,
                format!(
                    "initial load: refresh event {} ({}) started",
                    running.event, running.job
                ),
            )
            .await;
            let drain = async { while running.progress.recv().await.is_some() {} };
            let (_, done) = tokio::join!(drain, &mut running.done);
            let summary =
                done.map_err(|e| ServiceError::invalid(format!("the initial load stopped: {e}")))??;
            if summary.state != EventState::Done {
                return Err(ServiceError::invalid(format!(
                    "the initial load ({}) did not complete: {}",
                    summary.job, summary.response
                )));
            }
        }
        Ok(())
    }

    /// Deactivates a channel (HVR's `deactivate`): stops its replication and removes what
    /// activation made (the capture at the source, the checkpoints at the targets, the jobs).
    pub async fn deactivate(&self, hub: &HubName, channel: &ChannelName) -> Result<Posted> {
        Ok(self.submit_deactivate(hub, channel, Start::Now).await?.0)
    }

    /// [`HubService::deactivate`], or only its event posted ([`Start::Pending`]), or the job's
    /// pending event run ([`Start::Claim`]). Also returns the task that ends the event, when it
    /// runs.
    pub(crate) async fn submit_deactivate(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        start: Start,
    ) -> Result<(Posted, Option<JoinHandle<()>>)> {
        let bag = PropBag::Activation(hub.clone(), channel.to_string());
        let record = self.props_store().props(&bag).await?;
        let setup = self.replication_setup(hub, channel).await;
        if record.is_none() && setup.is_err() {
            return Err(ServiceError::invalid(format!(
                "channel {channel} is not activated"
            )));
        }
        let job = job_of(channel, JobType::Deactivate);
        let new_event = self.run_event(
            hub,
            EventType::Deactivate,
            &job,
            channel,
            None,
            None,
            format!("Deactivate channel {channel}"),
            json!({}),
        );
        let (event, canceled) = self.post_run(new_event, start).await?;
        let posted = Posted {
            event,
            job: job.clone(),
            canceled,
        };
        if start == Start::Pending {
            return Ok((posted, None));
        }
        let (stop, _cancel) = self.watch_claim(hub, &job, event);
        let service = self.clone();
        let (hub, channel, job_name) = (hub.clone(), channel.clone(), job.clone());
        let task = self.spawn_job(async move {
            let outcome = service
                .run_deactivation(&hub, &channel, record, setup.ok(), event)
                .await;
            stop.cancel();
            let (state, response) = match &outcome {
                Ok(line) => (EventState::Done, line.clone()),
                Err(e) => (EventState::Failed, chain(e)),
            };
            let repo = service.job_store();
            let _ = repo
                .append_log(event, std::slice::from_ref(&response))
                .await;
            if let Err(e) = repo
                .finish_job(&hub, &job_name, event, state, &response)
                .await
            {
                tracing::error!(job = %job_name, error = %e, "could not end the deactivation's event");
            }
        });
        Ok((posted, Some(task)))
    }

    async fn run_deactivation(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        record: Option<BTreeMap<String, Json>>,
        setup: Option<Setup>,
        event: EventId,
    ) -> Result<String> {
        let text = |key: &str| -> Option<String> {
            record.as_ref()?.get(key)?.as_str().map(str::to_owned)
        };
        let source_name = text("source")
            .and_then(|s| LocationName::new(&s).ok())
            .or_else(|| setup.as_ref().map(|s| s.source.name.clone()));
        let mut target_names: Vec<LocationName> = record
            .as_ref()
            .and_then(|r| r.get("targets"))
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().and_then(|s| LocationName::new(s).ok()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(s) = &setup {
            for r in &s.targets {
                if !target_names.contains(&r.target.name) {
                    target_names.push(r.target.name.clone());
                }
            }
        }
        let Some(source_name) = source_name else {
            return Err(ServiceError::invalid(format!(
                "channel {channel} is not activated"
            )));
        };
        let mut jobs = vec![capture_job(channel, &source_name)];
        jobs.extend(target_names.iter().map(|t| integrate_job(channel, t)));
        let bag = PropBag::Activation(hub.clone(), channel.to_string());
        if record.is_some() {
            // The supervisors start only `active` channels.
            self.set_activation_state(&bag, "deactivating").await?;
        }
        self.stop_replication(hub, channel, &jobs).await?;
        let capture = text("capture").unwrap_or_else(|| capture_name(hub, channel, &source_name));
        let source = self.location(hub, &source_name).await?;
        let conn = self.capture_connector(&source)?;
        conn.change_reader()
            .expect("checked by capture_connector")
            .drop_capture(&capture)
            .await
            .map_err(|e| ServiceError::connector(format!("location {source_name}"), e))?;
        self.log(event, format!("capture {capture} removed at {source_name}"))
            .await;
        let checkpoint = checkpoint_name(hub, channel, &source_name);
        for t in &target_names {
            let target = self.location(hub, t).await?;
            let conn = self.integrate_connector(&target)?;
            conn.change_writer()
                .expect("checked by integrate_connector")
                .drop_integrate(&checkpoint)
                .await
                .map_err(|e| ServiceError::connector(format!("location {t}"), e))?;
            self.log(event, format!("integrate checkpoint removed at {t}"))
                .await;
        }
        for job in &jobs {
            match self.job_store().delete_job(hub, job).await {
                Ok(_) => {}
                Err(e) if e.kind() == RepoErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.props_store().delete_bag(&bag).await?;
        Ok(format!("Channel {channel} deactivated"))
    }

    async fn set_activation_state(&self, bag: &PropBag, state: &str) -> Result<()> {
        let change = BTreeMap::from([("state".to_owned(), Some(json!(state)))]);
        self.props_store()
            .write_props(bag, &change, PropWrite::Merge)
            .await?;
        Ok(())
    }

    /// Stops a channel's replication wherever it runs, and waits until its jobs are free.
    async fn stop_replication(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        jobs: &[JobName],
    ) -> Result<()> {
        if let Some(running) = self.inner.replications.get(hub, channel) {
            running.cancel.cancel();
        }
        // Runs in other processes stop when their events are cancelled.
        let mut active = Vec::new();
        for job in jobs {
            if let Some(record) = self.job_store().job(hub, job).await?
                && record.state == JobState::Running
                && let Some(ev) = record.last_event
            {
                active.push(ev);
            }
        }
        if !active.is_empty() {
            match self
                .job_store()
                .cancel_events(hub, &active, STALE_AFTER)
                .await
            {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), RepoErrorKind::Conflict | RepoErrorKind::NotFound) => {
                }
                Err(e) => return Err(e.into()),
            }
        }
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        loop {
            // This process's supervisor may start the channel again meanwhile (its record still
            // says active): stop that run too.
            let running = self.inner.replications.get(hub, channel);
            if let Some(r) = &running {
                r.cancel.cancel();
            }
            let mut busy = running.is_some();
            for job in jobs {
                if let Some(record) = self.job_store().job(hub, job).await?
                    && record.state == JobState::Running
                {
                    busy = true;
                }
            }
            if !busy {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ServiceError::invalid(format!(
                    "the replication of channel {channel} did not stop within {} s",
                    STOP_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts the replication of an activated channel in this process, unless it runs (here or
    /// in another live process), or one of its jobs is suspended or failed. `Ok(false)` when it
    /// was not started.
    pub async fn start_replication(&self, hub: &HubName, channel: &ChannelName) -> Result<bool> {
        let bag = PropBag::Activation(hub.clone(), channel.to_string());
        let Some(record) = self.props_store().props(&bag).await? else {
            return Ok(false);
        };
        if record.get("state").and_then(Json::as_str) != Some("active") {
            return Ok(false);
        }
        if self.inner.replications.get(hub, channel).is_some() {
            return Ok(false);
        }
        let setup = self.replication_setup(hub, channel).await?;
        for job in setup.jobs() {
            if let Some(r) = self.job_store().job(hub, &job).await? {
                let held = match r.state {
                    JobState::Suspend | JobState::Failed => true,
                    JobState::Retry => r.run_end.is_some_and(|end| {
                        Utc::now() - end
                            < chrono::Duration::from_std(RETRY_AFTER).unwrap_or_default()
                    }),
                    _ => false,
                };
                if held {
                    return Ok(false);
                }
            }
        }
        let running = Running {
            cancel: CancellationToken::new(),
            stats: Arc::new(Mutex::new(ReplicationStats {
                started_at: Some(Utc::now()),
                ..Default::default()
            })),
            durable: Arc::new(watch::channel(None).0),
        };
        if !self
            .inner
            .replications
            .insert(hub, channel, running.clone())
        {
            return Ok(false);
        }
        match self.claim_replication(&setup, &running).await {
            Ok(Some(runs)) => {
                let service = self.clone();
                self.spawn_job(async move {
                    service.run_pipeline(setup, runs, running).await;
                });
                Ok(true)
            }
            Ok(None) => {
                self.inner.replications.remove(hub, channel);
                Ok(false)
            }
            Err(e) => {
                self.inner.replications.remove(hub, channel);
                Err(e)
            }
        }
    }

    /// Makes the replication jobs among `reaped` (runs whose process stopped, ended `FAILED` by
    /// the reaper) `PENDING`, so the supervisor starts them again: a process that died is no
    /// reason for a channel to stop replicating, and `FAILED` would hold it until a user starts
    /// the job. A job taken meanwhile by another process (or changed by a user) is left alone.
    pub(crate) async fn resume_reaped_replications(&self, reaped: &[sluice_repo::ReapedJob]) {
        for r in reaped {
            if !matches!(r.job.job_type(), JobType::Capture | JobType::Integrate) {
                continue;
            }
            match self.job_store().job(&r.hub, &r.job).await {
                Ok(Some(job)) if job.state == JobState::Failed && job.last_event == r.event => {}
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(job = %r.job, error = %e, "could not read a reaped job");
                    continue;
                }
            }
            match self
                .job_store()
                .set_job_state(&r.hub, &r.job, JobState::Pending)
                .await
            {
                Ok(()) => {
                    tracing::info!(job = %r.job, "replication job of a stopped process queued to run again")
                }
                Err(e) => {
                    tracing::warn!(job = %r.job, error = %e, "could not queue a reaped replication job")
                }
            }
        }
    }

    /// Posts and claims the events of a replication run: capture first, then each integrate.
    async fn claim_replication(
        &self,
        setup: &Setup,
        running: &Running,
    ) -> Result<Option<Vec<JobRun>>> {
        let mut runs: Vec<JobRun> = Vec::new();
        for job in setup.jobs() {
            let (event_type, loc, description) = if job.job_type() == JobType::Capture {
                (
                    EventType::Capture,
                    &setup.source.name,
                    format!(
                        "Capture of channel {} at {}",
                        setup.channel.name, setup.source.name
                    ),
                )
            } else {
                let loc = job
                    .locations()
                    .first()
                    .expect("an integrate job names its location");
                (
                    EventType::Integrate,
                    setup
                        .targets
                        .iter()
                        .map(|r| &r.target.name)
                        .find(|t| *t == loc)
                        .expect("the job is of a target"),
                    format!("Integrate of channel {} into {loc}", setup.channel.name),
                )
            };
            let started = self
                .start_run(
                    &setup.hub,
                    event_type,
                    &job,
                    &setup.channel.name,
                    Some(loc),
                    None,
                    description,
                    json!({}),
                )
                .await;
            let (event, _) = match started {
                Ok(s) => s,
                Err(e) if e.kind() == crate::ServiceErrorKind::Conflict => {
                    // Another live process replicates this channel.
                    for run in &runs {
                        run.stop.cancel();
                        let _ = self
                            .job_store()
                            .finish_job(
                                &setup.hub,
                                &run.job,
                                run.event,
                                EventState::Done,
                                "another process replicates this channel",
                            )
                            .await;
                    }
                    return Ok(None);
                }
                Err(e) => {
                    for run in &runs {
                        run.stop.cancel();
                        let _ = self
                            .job_store()
                            .finish_job(
                                &setup.hub,
                                &run.job,
                                run.event,
                                EventState::Failed,
                                &chain(&e),
                            )
                            .await;
                    }
                    return Err(e);
                }
            };
            let (stop, cancel) = self.watch_claim(&setup.hub, &job, event);
            let pipeline = running.cancel.clone();
            let watch = cancel.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = watch.cancelled() => pipeline.cancel(),
                    _ = pipeline.cancelled() => {}
                }
            });
            runs.push(JobRun {
                job,
                event,
                stop,
                cancel,
            });
        }
        Ok(Some(runs))
    }

    async fn run_pipeline(&self, setup: Setup, runs: Vec<JobRun>, running: Running) {
        let hub = setup.hub.clone();
        let channel = setup.channel.name.clone();
        let outcome = self.replicate(&setup, &runs, &running).await;
        running.cancel.cancel();
        // Which run was stopped by its own event's cancel (suspend): the others end DONE.
        let mut why_stopped = None;
        for run in &runs {
            if run.cancel.is_cancelled() {
                why_stopped = Some(run.job.clone());
            }
        }
        let retry = matches!(&outcome, Err(e) if e.retryable);
        for run in &runs {
            run.stop.cancel();
            let (state, response) = match &outcome {
                // The run whose event was cancelled (suspended) ends CANCELED: its job SUSPEND.
                Ok(()) => match &why_stopped {
                    Some(job) if *job == run.job => {
                        (EventState::Canceled, format!("{} suspended", run.job))
                    }
                    Some(job) => (
                        EventState::Done,
                        format!("{} stopped: job {job} was suspended", run.job),
                    ),
                    None => (
                        EventState::Done,
                        format!("{} stopped: the hub server stopped it", run.job),
                    ),
                },
                Err(e) => (EventState::Failed, e.message.clone()),
            };
            let repo = self.job_store();
            let _ = repo
                .append_log(run.event, std::slice::from_ref(&response))
                .await;
            if let Err(e) = repo
                .finish_job(&hub, &run.job, run.event, state, &response)
                .await
            {
                tracing::warn!(job = %run.job, error = %e, "could not end a replication event");
            }
            if retry {
                let _ = repo.set_job_state(&hub, &run.job, JobState::Retry).await;
            }
        }
        if let Err(e) = &outcome {
            tracing::warn!(hub = %hub, channel = %channel, error = %e.message, retry, "replication stopped");
        }
        self.inner.replications.remove(&hub, &channel);
    }

    async fn replicate(
        &self,
        setup: &Setup,
        runs: &[JobRun],
        running: &Running,
    ) -> std::result::Result<(), Stopped> {
        let fail = |e: ServiceError| Stopped {
            message: chain(&e),
            retryable: retryable(&e),
        };
        let source = self.capture_connector(&setup.source).map_err(fail)?;
        let reader = source
            .change_reader()
            .expect("checked by capture_connector");
        let request = self
            .capture_request(setup, source.as_ref())
            .await
            .map_err(fail)?;
        let mut targets = Vec::new();
        for r in &setup.targets {
            let target = self.integrate_connector(&r.target).map_err(fail)?;
            let integrate = self
                .integrate_request(setup, r, target.as_ref())
                .await
                .map_err(fail)?;
            let applier: Box<dyn ChangeApplier> = target
                .change_writer()
                .expect("checked by integrate_connector")
                .open_integrate(integrate.clone())
                .await
                .map_err(|e| {
                    fail(ServiceError::connector(
                        format!("location {}", r.target.name),
                        e,
                    ))
                })?;
            if applier.checkpoint().is_none() {
                return Err(Stopped {
                    message: format!(
                        "target {} has no integrate checkpoint of this channel: activate the channel again",
                        r.target.name
                    ),
                    retryable: false,
                });
            }
            targets.push(ReplicationTarget {
                location: r.target.name.clone(),
                tables: integrate.tables,
                applier,
            });
        }
        let stream = reader.open_capture(&request).await.map_err(|e| {
            fail(ServiceError::connector(
                format!("location {}", setup.source.name),
                e,
            ))
        })?;
        let tables = setup.targets[0]
            .specs
            .iter()
            .map(|spec| ReplicatedTable {
                name: spec.name.clone(),
                source: spec.source.clone(),
                ignored: spec
                    .excluded
                    .iter()
                    .chain(spec.target_absent.iter())
                    .cloned()
                    .collect(),
            })
            .collect();
        let plan = ReplicationPlan {
            tables,
            targets,
            limits: ApplyLimits::default(),
            queue_bytes: 64 << 20,
        };
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (publish_tx, publish_rx) = if setup.publish && self.event_hub().is_some() {
            let (tx, rx) = mpsc::channel::<CapturedChanges>(64);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let figures = tokio::spawn(self.clone().record_figures(
            runs.iter().map(|r| (r.job.clone(), r.event)).collect(),
            events_rx,
            running.stats.clone(),
            running.durable.clone(),
        ));
        let publisher = publish_rx.map(|rx| {
            tokio::spawn(self.clone().publish_changes(
                setup.hub.clone(),
                setup.channel.name.clone(),
                rx,
            ))
        });
        let result =
            run_replication(stream, plan, events_tx, publish_tx, running.cancel.clone()).await;
        let _ = figures.await;
        if let Some(p) = publisher {
            let _ = p.await;
        }
        result.map_err(|e: ReplicationError| Stopped {
            retryable: e.is_retryable(),
            message: chain(&e),
        })
    }

    /// Keeps a run's figures and writes them to its events every few seconds.
    async fn record_figures(
        self,
        runs: Vec<(JobName, EventId)>,
        mut rx: mpsc::UnboundedReceiver<ReplicationEvent>,
        stats: Arc<Mutex<ReplicationStats>>,
        durable: Arc<watch::Sender<Option<Position>>>,
    ) {
        let mut tick = tokio::time::interval(RESULTS_EVERY);
        let mut dirty = false;
        loop {
            tokio::select! {
                next = rx.recv() => {
                    let Some(event) = next else { break };
                    if let ReplicationEvent::Acknowledged { position } = &event {
                        durable.send_replace(Some(position.clone()));
                    }
                    let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
                    absorb(&mut s, event);
                    dirty = true;
                }
                _ = tick.tick() => {
                    if dirty {
                        dirty = false;
                        self.write_figures(&runs, &stats).await;
                    }
                }
            }
        }
        self.write_figures(&runs, &stats).await;
    }

    async fn write_figures(
        &self,
        runs: &[(JobName, EventId)],
        stats: &Arc<Mutex<ReplicationStats>>,
    ) {
        let s = stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (job, event) in runs {
            let mut results = Vec::new();
            let result = |table: Option<&TableName>, name: ResultName, value: String| EventResult {
                table: table.cloned(),
                name,
                value,
            };
            if job.job_type() == JobType::Capture {
                for (table, t) in &s.tables {
                    results.push(result(
                        Some(table),
                        ResultName::CapturedRows,
                        t.captured.total().to_string(),
                    ));
                    if let Some(l) = t.capture_latency {
                        results.push(result(
                            Some(table),
                            ResultName::CaptureLatency,
                            format!("{l:.3}"),
                        ));
                    }
                }
                results.push(result(
                    None,
                    ResultName::CapturedRows,
                    s.captured.to_string(),
                ));
                if let Some(l) = s.capture_latency {
                    results.push(result(None, ResultName::CaptureLatency, format!("{l:.3}")));
                }
                if let Some(p) = &s.durable_position
                    && let Ok(json) = serde_json::to_string(p)
                {
                    results.push(result(None, ResultName::DurablePosition, json));
                }
            } else if let Some(loc) = job.locations().first() {
                for (table, t) in &s.tables {
                    if let Some(c) = t.integrated.get(loc) {
                        results.push(result(
                            Some(table),
                            ResultName::IntegratedRows,
                            c.total().to_string(),
                        ));
                    }
                    if let Some(l) = t.integrate_latency.get(loc) {
                        results.push(result(
                            Some(table),
                            ResultName::IntegrateLatency,
                            format!("{l:.3}"),
                        ));
                    }
                }
                results.push(result(
                    None,
                    ResultName::IntegratedRows,
                    s.integrated.get(loc).copied().unwrap_or(0).to_string(),
                ));
                if let Some(l) = s.integrate_latency.get(loc) {
                    results.push(result(
                        None,
                        ResultName::IntegrateLatency,
                        format!("{l:.3}"),
                    ));
                }
            }
            if let Err(e) = self.job_store().put_results(*event, &results).await {
                tracing::warn!(job = %job, error = %e, "could not record replication figures");
            }
        }
    }

    /// Publishes captured changes on `sluice.change`.
    async fn publish_changes(
        self,
        hub: HubName,
        channel: ChannelName,
        mut rx: mpsc::Receiver<CapturedChanges>,
    ) {
        let Some(events) = self.event_hub().cloned() else {
            return;
        };
        let topic = TopicName::new(CHANGE_TOPIC).expect("built-in topic names are valid");
        while let Some(part) = rx.recv().await {
            let messages: Vec<HubEvent> = part
                .changes
                .iter()
                .enumerate()
                .map(|(i, c)| HubEvent {
                    topic: topic.clone(),
                    routing_key: RoutingKey::from_words([
                        hub.as_str(),
                        channel.as_str(),
                        part.table.as_str(),
                        c.op.as_str(),
                    ]),
                    payload: change_payload(&hub, &channel, &part, i, c),
                    id: None,
                })
                .collect();
            if let Err(e) = events.publish(messages, &Actor::system()).await {
                tracing::warn!(channel = %channel, error = %e, "could not publish captured changes");
            }
        }
    }

    /// The replication state of an activated channel; `None` when it is not activated.
    pub async fn replication_status(
        &self,
        hub: &HubName,
        channel: &ChannelName,
    ) -> Result<Option<ReplicationStatus>> {
        let bag = PropBag::Activation(hub.clone(), channel.to_string());
        let Some(record) = self.props_store().props(&bag).await? else {
            return Ok(None);
        };
        let text = |k: &str| {
            record
                .get(k)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let source = LocationName::new(text("source"))
            .map_err(|e| ServiceError::invalid(format!("activation record: {e}")))?;
        let targets: Vec<LocationName> = record
            .get("targets")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().and_then(|s| LocationName::new(s).ok()))
                    .collect()
            })
            .unwrap_or_default();
        let mut names = vec![capture_job(channel, &source)];
        names.extend(targets.iter().map(|t| integrate_job(channel, t)));
        let mut jobs = Vec::new();
        for job in names {
            if let Some(r) = self.job_store().job(hub, &job).await? {
                jobs.push((job, r.state));
            }
        }
        let running = self.inner.replications.get(hub, channel);
        let stats = running
            .as_ref()
            .map(|r| r.stats.lock().unwrap_or_else(|p| p.into_inner()).clone());
        let capture_lag_bytes = match self.location(hub, &source).await {
            Ok(loc) => match self.capture_connector(&loc) {
                Ok(conn) => conn
                    .change_reader()
                    .expect("checked by capture_connector")
                    .capture_lag(&text("capture"))
                    .await
                    .ok()
                    .flatten()
                    .map(|l| l.bytes),
                Err(_) => None,
            },
            Err(_) => None,
        };
        Ok(Some(ReplicationStatus {
            channel: channel.clone(),
            state: text("state"),
            source,
            targets,
            jobs,
            running_here: running.is_some(),
            stats,
            capture_lag_bytes,
        }))
    }

    /// Figures of every replication this process runs (for `/metrics`).
    pub fn replication_figures(&self) -> Vec<((HubName, ChannelName), ReplicationStats)> {
        self.inner
            .replications
            .all()
            .into_iter()
            .map(|(k, s)| (k, s.lock().unwrap_or_else(|p| p.into_inner()).clone()))
            .collect()
    }

    /// Starts the replication of every activated channel that should run and does not, every
    /// `tick`, until `shutdown`; then stops the replications of this process.
    pub async fn run_replication_supervisor(self, tick: Duration, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(tick);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {}
            }
            if let Err(e) = self.supervise_once().await {
                tracing::warn!(error = %e, "replication supervisor pass failed");
            }
        }
        for ((hub, channel), _) in self.inner.replications.all() {
            if let Some(r) = self.inner.replications.get(&hub, &channel) {
                r.cancel.cancel();
            }
        }
        // Let the runs store their last figures and end their events.
        for _ in 0..50 {
            if self.inner.replications.all().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn supervise_once(&self) -> Result<()> {
        for (bag, props) in self
            .props_store()
            .bags(PropBagKind::Activation, None)
            .await?
        {
            let PropBag::Activation(hub, channel) = bag else {
                continue;
            };
            if props.get("state").and_then(Json::as_str) != Some("active") {
                continue;
            }
            let Ok(channel) = ChannelName::new(&channel) else {
                continue;
            };
            if self.ensure_live(&hub).await.is_err() {
                continue;
            }
            match self.start_replication(&hub, &channel).await {
                Ok(true) => tracing::info!(hub = %hub, channel = %channel, "replication started"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(hub = %hub, channel = %channel, error = %e, "could not start the replication")
                }
            }
        }
        Ok(())
    }
}

/// Whether an error came from a connector error that may pass (a broken connection, a timeout).
fn retryable(error: &ServiceError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(c) = e.downcast_ref::<ConnectorError>() {
            return c.kind().is_retryable();
        }
        source = e.source();
    }
    false
}

/// A replicated channel: its hub and name.
type ChannelKey = (HubName, ChannelName);

/// A running replication's figures, shared with the run.
type SharedStats = Arc<Mutex<ReplicationStats>>;

/// A job run of a replication.
struct JobRun {
    job: JobName,
    event: EventId,
    stop: CancellationToken,
    cancel: CancellationToken,
}

/// Why a replication run stopped on an error.
struct Stopped {
    message: String,
    retryable: bool,
}

fn absorb(s: &mut ReplicationStats, event: ReplicationEvent) {
    let seconds = |from: DateTime<Utc>, to: DateTime<Utc>| {
        ((to - from).num_microseconds().unwrap_or(0) as f64 / 1e6).max(0.0)
    };
    match event {
        ReplicationEvent::Captured {
            table,
            counts,
            commit_time,
            at,
        } => {
            s.captured += counts.total();
            s.capture_latency = Some(seconds(commit_time, at));
            let t = s.tables.entry(table).or_default();
            t.capture_latency = Some(seconds(commit_time, at));
            t.captured.inserts += counts.inserts;
            t.captured.updates += counts.updates;
            t.captured.deletes += counts.deletes;
            t.captured.truncates += counts.truncates;
        }
        ReplicationEvent::Applied {
            target,
            tables,
            source_commit_time,
            committed_at,
            ..
        } => {
            let mut n = 0;
            let latency = source_commit_time.map(|t| seconds(t, committed_at));
            for (table, counts) in tables {
                n += counts.total();
                if let Some(l) = latency {
                    s.tables
                        .entry(table.clone())
                        .or_default()
                        .integrate_latency
                        .insert(target.clone(), l);
                }
                let c = s
                    .tables
                    .entry(table)
                    .or_default()
                    .integrated
                    .entry(target.clone())
                    .or_default();
                c.inserts += counts.inserts;
                c.updates += counts.updates;
                c.deletes += counts.deletes;
                c.truncates += counts.truncates;
            }
            *s.integrated.entry(target.clone()).or_default() += n;
            if let Some(t) = source_commit_time {
                s.integrate_latency.insert(target, seconds(t, committed_at));
            }
        }
        ReplicationEvent::Acknowledged { position } => {
            s.acknowledged = Some(position.to_string());
            s.durable_position = Some(position);
        }
        ReplicationEvent::ColumnAdded {
            target,
            table,
            column,
        } => s.columns_added.push(format!("{target}.{table}.{column}")),
    }
}

/// A value as JSON: integers and floats as numbers, decimals as strings (exact), bytes as
/// `\x…` hex, times in ISO 8601, JSON documents as themselves.
pub fn value_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int16(i) => json!(i),
        Value::Int32(i) => json!(i),
        Value::Int64(i) => json!(i),
        Value::Float32(f) => serde_json::Number::from_f64(f64::from(*f))
            .map(Json::Number)
            .unwrap_or_else(|| json!(f.to_string())),
        Value::Float64(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or_else(|| json!(f.to_string())),
        Value::Decimal(d) => json!(d.to_string()),
        Value::Text(s) => json!(s),
        Value::Bytes(b) => {
            let mut hex = String::with_capacity(2 + 2 * b.len());
            hex.push_str("\\x");
            for byte in b {
                hex.push_str(&format!("{byte:02x}"));
            }
            json!(hex)
        }
        Value::Date(d) => json!(d.to_string()),
        Value::Time(t) => json!(t.to_string()),
        Value::Timestamp(t) => json!(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
        Value::TimestampTz(t) => json!(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        Value::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
        Value::Uuid(u) => json!(u.to_string()),
    }
}

fn change_payload(
    hub: &HubName,
    channel: &ChannelName,
    part: &CapturedChanges,
    i: usize,
    c: &sluice_model::RowChange,
) -> Json {
    let object = |row: &[Value], only: Option<&[usize]>| -> Json {
        let mut map = serde_json::Map::new();
        for (j, col) in part.columns.iter().enumerate() {
            if only.is_some_and(|o| !o.contains(&j)) {
                continue;
            }
            if c.unchanged.contains(&j) && only.is_none() && c.after.as_deref() == Some(row) {
                continue;
            }
            map.insert(
                col.name.to_string(),
                value_json(row.get(j).unwrap_or(&Value::Null)),
            );
        }
        Json::Object(map)
    };
    let key_row = c.after.as_deref().or(c.before.as_deref());
    let key = key_row
        .map(|r| object(r, Some(&part.key)))
        .unwrap_or(Json::Null);
    let before = match (&c.before, c.before_is_key) {
        (Some(b), false) => object(b, None),
        _ => Json::Null,
    };
    json!({
        "hub": hub.as_str(),
        "channel": channel.as_str(),
        "table": part.table.as_str(),
        "op": c.op.as_str(),
        "key": key,
        "after": c.after.as_deref().map(|a| object(a, None)).unwrap_or(Json::Null),
        "before": before,
        "unchanged": c.unchanged.iter().filter_map(|&j| part.columns.get(j).map(|col| col.name.to_string())).collect::<Vec<_>>(),
        "position": format!("{}#{}", part.transaction.commit, part.first_index + i as u64),
        "commit_time": part.transaction.commit_time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
}

fn introspector<'a>(c: &'a dyn Connector, loc: &LocationName) -> Result<&'a dyn Introspector> {
    c.introspector()
        .ok_or_else(|| ServiceError::invalid(format!("location {loc} cannot describe its tables")))
}

async fn table_schema(
    i: &dyn Introspector,
    table: &TableRef,
    loc: &LocationName,
) -> Result<TableSchema> {
    i.table_schema(table)
        .await
        .map_err(|e| ServiceError::connector(format!("location {loc}"), e))?
        .ok_or_else(|| {
            ServiceError::not_found(format!("table {table} does not exist at location {loc}"))
        })
}

/// `inner`, with every read of its tables made in `snapshot`.
pub(crate) fn pinned(
    inner: Arc<dyn Connector>,
    snapshot: Arc<dyn SharedSnapshot>,
) -> Arc<dyn Connector> {
    Arc::new(Pinned { inner, snapshot })
}

struct Pinned {
    inner: Arc<dyn Connector>,
    snapshot: Arc<dyn SharedSnapshot>,
}

struct SameSnapshot(String);

impl SharedSnapshot for SameSnapshot {
    fn id(&self) -> &str {
        &self.0
    }
}

#[async_trait]
impl Connector for Pinned {
    fn class(&self) -> LocationClass {
        self.inner.class()
    }

    fn capabilities(&self) -> sluice_connector::Capabilities {
        self.inner.capabilities()
    }

    async fn test(&self) -> sluice_connector::Result<TestReport> {
        self.inner.test().await
    }

    fn introspector(&self) -> Option<&dyn Introspector> {
        self.inner.introspector()
    }

    fn snapshot_reader(&self) -> Option<&dyn SnapshotReader> {
        self.inner
            .snapshot_reader()
            .map(|_| self as &dyn SnapshotReader)
    }

    fn batch_writer(&self) -> Option<&dyn sluice_connector::BatchWriter> {
        self.inner.batch_writer()
    }
}

impl Pinned {
    fn reader(&self) -> sluice_connector::Result<&dyn SnapshotReader> {
        self.inner
            .snapshot_reader()
            .ok_or_else(|| ConnectorError::unsupported("this location cannot be read"))
    }
}

#[async_trait]
impl SnapshotReader for Pinned {
    fn plan_read(&self, request: &ReadRequest) -> sluice_connector::Result<Vec<PlannedStatement>> {
        self.reader()?.plan_read(request)
    }

    async fn read(&self, request: ReadRequest) -> sluice_connector::Result<Snapshot> {
        self.reader()?
            .read_shared(request, self.snapshot.as_ref())
            .await
    }

    async fn count_rows(
        &self,
        table: &TableRef,
        filter: Option<&Condition>,
    ) -> sluice_connector::Result<u64> {
        self.reader()?.count_rows(table, filter).await
    }

    async fn max_value(
        &self,
        table: &TableRef,
        column: &ColumnDef,
        filter: Option<&Condition>,
    ) -> sluice_connector::Result<Option<Value>> {
        self.reader()?.max_value(table, column, filter).await
    }

    // No raw read: it could not be made in the snapshot.
    fn raw_format(&self, _request: &ReadRequest) -> Option<String> {
        None
    }

    async fn read_raw(&self, _request: ReadRequest) -> sluice_connector::Result<RawSnapshot> {
        Err(ConnectorError::unsupported(
            "a read in a pinned snapshot is never raw",
        ))
    }

    async fn share_snapshot(&self) -> sluice_connector::Result<Option<Box<dyn SharedSnapshot>>> {
        Ok(Some(Box::new(SameSnapshot(self.snapshot.id().to_owned()))))
    }

    async fn read_shared(
        &self,
        request: ReadRequest,
        _snapshot: &dyn SharedSnapshot,
    ) -> sluice_connector::Result<Snapshot> {
        self.reader()?
            .read_shared(request, self.snapshot.as_ref())
            .await
    }
}
