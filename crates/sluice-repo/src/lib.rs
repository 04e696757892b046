//! The hub repository: definitions (hubs, locations, channels), jobs, events with per-table results
//! and log lines.
//!
//! [`Repository`] is the interface the service uses. [`SqliteRepository`] keeps it in one SQLite
//! file (`$SLUICE_HOME/hub.db`); [`PostgresRepository`] in a PostgreSQL database that several hub
//! server processes may share. [`open_repository`] opens either from a spec (`sqlite:PATH`, a path,
//! or `postgres://…`). Both are migrated by version on open, with the same tables and columns.
//! Definitions are stored as HVR's repository stores them, one row per location property, channel
//! table, column and action, so they can later be changed piece by piece.
//!
//! Operations are atomic across processes sharing the repository where correctness depends on it:
//! * [`Repository::apply_definitions`] replaces every object of a definitions file, and posts the
//!   audit event, in one transaction; a failure changes nothing.
//! * [`Repository::start_job`] posts the job's event and claims the job in one transaction: at most
//!   one run per job at a time. A run whose process stopped sending heartbeats is failed and taken
//!   over, so a crash never blocks a job forever. [`Repository::submit_job`] and
//!   [`Repository::claim_job`] likewise: of racing submitters exactly one wins.
//! * [`Repository::begin_commit`] and [`Repository::cancel_events`] decide, each in one
//!   transaction on the job's row, whether a table's commit or a cancel came first: once a table
//!   began to commit, a cancel is too late; once a cancel is recorded, no table begins to commit.
//! * [`Repository::reap_jobs`] ends runs whose process stopped sending heartbeats; of processes
//!   reaping at once, each run is ended by exactly one.
//! * Event ids are unique and increasing, whichever process posts them.
#![deny(missing_docs)]

mod migrations;
mod postgres;
mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_model::definition::{Channel, Definitions, Hub, HubState, Location};
use sluice_model::{
    AccessLevel, ChannelName, EventId, EventState, EventType, HubName, JobName, JobState,
    LocationName, ResultName, TableName,
};

pub use postgres::PostgresRepository;
pub use sluice_store::Database;
use sluice_store::{StoreError, StoreErrorKind};
pub use sqlite::SqliteRepository;

/// Opens the repository named by `spec`: `postgres://…` or `postgresql://…` (a PostgreSQL
/// database, see [`PostgresRepository::connect`]), `sqlite:PATH` or a plain file path (see
/// [`SqliteRepository::open`]). Any other `scheme://` is refused.
pub async fn open_repository(spec: &str) -> Result<Arc<dyn Repository>> {
    open_repository_in(&Database::open(spec, "repository")?).await
}

/// Opens the repository in `db`: on PostgreSQL it takes its connections from `db`'s pool, which
/// the process's other stores (the event store) share.
pub async fn open_repository_in(db: &Database) -> Result<Arc<dyn Repository>> {
    match db {
        Database::Postgres(db) => Ok(Arc::new(PostgresRepository::on(db.clone()).await?)),
        Database::Sqlite(path) => {
            let path = path.clone();
            let repo = tokio::task::spawn_blocking(move || SqliteRepository::open(path))
                .await
                .map_err(|e| {
                    RepoError::new(RepoErrorKind::Storage, "opening the repository failed")
                        .with_source(e)
                })??;
            Ok(Arc::new(repo))
        }
    }
}

/// What went wrong in the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RepoErrorKind {
    /// The object does not exist.
    NotFound,
    /// The operation conflicts with the current state (e.g. the job is already running).
    Conflict,
    /// The repository was written by a newer sluice.
    Version,
    /// The repository could not be opened, read or written.
    Storage,
}

/// An error from the repository.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RepoError {
    kind: RepoErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl RepoError {
    /// An error of `kind`.
    pub fn new(kind: RepoErrorKind, message: impl Into<String>) -> Self {
        RepoError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind.
    pub fn kind(&self) -> RepoErrorKind {
        self.kind
    }

    /// The message and the underlying error, for wrapping this error without repeating it.
    pub fn into_parts(
        self,
    ) -> (
        RepoErrorKind,
        String,
        Option<Box<dyn std::error::Error + Send + Sync>>,
    ) {
        (self.kind, self.message, self.source)
    }
}

impl From<StoreError> for RepoError {
    fn from(error: StoreError) -> Self {
        let (kind, message, source) = error.into_parts();
        RepoError {
            kind: match kind {
                StoreErrorKind::Version => RepoErrorKind::Version,
                _ => RepoErrorKind::Storage,
            },
            message,
            source,
        }
    }
}

/// Results of repository calls.
pub type Result<T> = std::result::Result<T, RepoError>;

/// A stored hub.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HubRecord {
    /// The hub.
    #[serde(flatten)]
    pub hub: Hub,
    /// `LIVE` or `FROZEN`.
    pub state: HubState,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// Who created it.
    pub creator: String,
    /// When it was last frozen, while it is frozen.
    pub freeze_time: Option<DateTime<Utc>>,
    /// Other properties set through the API (`Description` is `hub.description`).
    pub props: BTreeMap<String, serde_json::Value>,
    /// The definitions version: bumped by every definition change, for optimistic concurrency.
    pub version: i64,
}

/// A user of the hub server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRecord {
    /// Login name.
    pub name: String,
    /// What the user may do.
    pub level: AccessLevel,
    /// Argon2id PHC string (never the password).
    #[serde(skip)]
    pub password_hash: String,
    /// When the user was created.
    pub created: DateTime<Utc>,
    /// Who created the user.
    pub creator: String,
}

/// A stored token (a refresh token or an API key), kept only as its SHA-256 hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Hex SHA-256 of the token.
    pub hash: String,
    /// Whose token it is.
    pub user: String,
    /// `refresh` or `apikey`.
    pub kind: String,
    /// When it was issued.
    pub created: DateTime<Utc>,
    /// When it stops being valid.
    pub expires: DateTime<Utc>,
}

/// The Fivetran-face settings of a connector: a channel with one source and one target location.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectorRecord {
    /// The hub.
    pub hub: HubName,
    /// The channel.
    pub channel: ChannelName,
    /// When the connector was first seen (its `created_at`).
    pub created: DateTime<Utc>,
    /// Whether the scheduler leaves it alone and syncs are refused.
    pub paused: bool,
    /// `auto` (the scheduler starts syncs) or `manual` (only explicit syncs).
    pub schedule_type: String,
    /// Minutes between scheduled syncs.
    pub sync_frequency: u32,
    /// `HH:MM` (UTC) of the daily sync when `sync_frequency` is 1440.
    pub daily_sync_time: String,
    /// `ALLOW_ALL`, `ALLOW_COLUMNS` or `BLOCK_ALL`.
    pub schema_change_handling: String,
    /// What was enabled or disabled on top of the channel's tables (JSON, owned by the service).
    pub schema_overlay: serde_json::Value,
    /// `connected`, `broken` or `incomplete`.
    pub setup_state: String,
    /// The last setup tests (JSON array, owned by the service).
    pub setup_tests: serde_json::Value,
}

impl ConnectorRecord {
    /// The settings a connector has before anyone changes them: not paused, manual schedule
    /// (so defining a channel never makes the scheduler start syncs on its own), every 360
    /// minutes once set to `auto`, new tables and columns allowed.
    pub fn new(hub: HubName, channel: ChannelName, created: DateTime<Utc>) -> Self {
        ConnectorRecord {
            hub,
            channel,
            created,
            paused: false,
            schedule_type: "manual".into(),
            sync_frequency: 360,
            daily_sync_time: "00:00".into(),
            schema_change_handling: "ALLOW_ALL".into(),
            schema_overlay: serde_json::json!({}),
            setup_state: "connected".into(),
            setup_tests: serde_json::json!([]),
        }
    }
}

/// An API key of the Fivetran face, kept with only the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    /// The public key (the Basic auth user name).
    pub key: String,
    /// Hex SHA-256 of the secret.
    #[serde(skip)]
    pub secret_hash: String,
    /// What requests with this key may do.
    pub level: AccessLevel,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// Who created it.
    pub creator: String,
    /// What it is for.
    pub description: String,
}

/// What submitting a job run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittedJob {
    /// The run's event.
    pub event: EventId,
    /// Pending (not yet started) events of the same job that the new one replaced, now `CANCELED`.
    pub canceled: Vec<EventId>,
    /// Earlier runs that were failed because their process had stopped.
    pub taken_over: Vec<EventId>,
}

/// What applying a definitions document changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplySummary {
    /// Whether the hub was created.
    pub hub_created: bool,
    /// Locations added.
    pub locations_added: Vec<LocationName>,
    /// Locations replaced.
    pub locations_replaced: Vec<LocationName>,
    /// Channels added.
    pub channels_added: Vec<ChannelName>,
    /// Channels replaced.
    pub channels_replaced: Vec<ChannelName>,
    /// The audit event posted.
    pub event: Option<EventId>,
}

/// A new event to post.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The hub.
    pub hub: HubName,
    /// What it records.
    pub event_type: EventType,
    /// Who caused it.
    pub user: String,
    /// One line for people.
    pub description: String,
    /// The channel, if any.
    pub channel: Option<ChannelName>,
    /// The (source) location, if any.
    pub loc: Option<LocationName>,
    /// The target location, if any.
    pub loc2: Option<LocationName>,
    /// The job, if any.
    pub job: Option<JobName>,
    /// The initial state (`ACTIVE` for work, `DONE` for audit events).
    pub state: EventState,
    /// The request that caused it, as JSON (never with secrets).
    pub body: serde_json::Value,
}

/// One result of an event: table (or none for event-level results), name, value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventResult {
    /// The table, or `None` for a result about the whole event.
    pub table: Option<TableName>,
    /// What is measured.
    pub name: ResultName,
    /// The value, as text (HVR keeps results as strings).
    pub value: String,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    /// Its id.
    pub id: EventId,
    /// The hub.
    pub hub: HubName,
    /// What it records.
    pub event_type: EventType,
    /// Who caused it.
    pub user: String,
    /// One line for people.
    pub description: String,
    /// The channel.
    pub channel: Option<ChannelName>,
    /// The (source) location.
    pub loc: Option<LocationName>,
    /// The target location.
    pub loc2: Option<LocationName>,
    /// The job.
    pub job: Option<JobName>,
    /// Its state.
    pub state: EventState,
    /// Retries so far.
    pub num_retries: u32,
    /// The final response line, once finished.
    pub response: Option<String>,
    /// Whether a cancel ended it (a user's, its job's deletion, or a newer request replacing it):
    /// `CANCELED`, or `FAILED` when a table had committed before the cancel.
    pub canceled: bool,
    /// When it started.
    pub start: DateTime<Utc>,
    /// When it finished.
    pub finish: Option<DateTime<Utc>>,
    /// The request as JSON.
    pub body: serde_json::Value,
    /// Per-table results (filled when asked for).
    pub results: Vec<EventResult>,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// The hub (required).
    pub hub: Option<HubName>,
    /// Only these channels.
    pub channels: Vec<ChannelName>,
    /// Only these types.
    pub types: Vec<EventType>,
    /// Only these states.
    pub states: Vec<EventState>,
    /// Only these jobs.
    pub jobs: Vec<JobName>,
    /// Only these ids.
    pub ids: Vec<EventId>,
    /// Include results.
    pub fetch_results: bool,
    /// At most this many, newest first.
    pub max_events: Option<usize>,
    /// Only events naming this location (as `loc` or `loc2`).
    pub loc: Option<LocationName>,
    /// Only events created at or after this instant.
    pub begin: Option<DateTime<Utc>>,
    /// Only events created at or before this instant.
    pub end: Option<DateTime<Utc>>,
    /// With `fetch_results`: only results with these names (empty: all).
    pub result_names: Vec<ResultName>,
    /// With `fetch_results`: only results of these tables (empty: all).
    pub result_tables: Vec<TableName>,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    /// Its name.
    pub name: JobName,
    /// Its state.
    pub state: JobState,
    /// The event of its current or last run.
    pub last_event: Option<EventId>,
    /// When its last run began.
    pub run_begin: Option<DateTime<Utc>>,
    /// When its last run ended.
    pub run_end: Option<DateTime<Utc>>,
    /// How many runs it has had.
    pub num_runs: u64,
}

/// Who runs a job: one per process, with a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// A unique id for this process's run.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
}

impl Owner {
    /// An owner for the current process.
    pub fn current() -> Self {
        Owner {
            id: uuid::Uuid::new_v4().to_string(),
            host: std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "localhost".into()),
            pid: std::process::id(),
        }
    }
}

/// A job run that [`Repository::reap_jobs`] ended because its process had stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReapedJob {
    /// The hub.
    pub hub: HubName,
    /// The job.
    pub job: JobName,
    /// The run's event.
    pub event: Option<EventId>,
    /// Whether the event was still `ACTIVE` and is now `FAILED` (otherwise it had ended, e.g.
    /// by a cancel, and only the job was freed).
    pub failed: bool,
    /// Why: the event's response when it was failed.
    pub response: String,
}

/// What the commit markers of a run say about one of its tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitMark {
    /// The table's commit has begun and not ended.
    Begun,
    /// The table is committed.
    Done,
}

impl CommitMark {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CommitMark::Begun => "BEGUN",
            CommitMark::Done => "DONE",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self> {
        match text {
            "BEGUN" => Ok(CommitMark::Begun),
            "DONE" => Ok(CommitMark::Done),
            other => Err(RepoError::new(
                RepoErrorKind::Storage,
                format!("repository holds an invalid commit state {other:?}"),
            )),
        }
    }
}

/// The tables of `marks` in state `mark`, as `a, b`.
fn marked(marks: &[(String, CommitMark)], mark: CommitMark) -> Option<String> {
    let tables: Vec<&str> = marks
        .iter()
        .filter(|(_, m)| *m == mark)
        .map(|(t, _)| t.as_str())
        .collect();
    (!tables.is_empty()).then(|| tables.join(", "))
}

/// How a request (a user's cancel, a job's deletion) ends the `ACTIVE` event `id`, given its
/// commit markers: `CANCELED` when no table began to commit; `FAILED` when one did (a run with a
/// committed table never shows `CANCELED`); `Conflict` while a table commits in a live process
/// (`owner_live`): it is too late, the run ends `DONE` or `FAILED` on its own.
pub(crate) fn request_ending(
    id: &str,
    reason: &str,
    marks: &[(String, CommitMark)],
    owner_live: bool,
) -> Result<(EventState, String)> {
    let begun = marked(marks, CommitMark::Begun);
    let done = marked(marks, CommitMark::Done);
    if let (Some(tables), true) = (&begun, owner_live) {
        return Err(RepoError::new(
            RepoErrorKind::Conflict,
            format!(
                "too late to cancel event {id}: table(s) {tables} began to commit; the event ends DONE or FAILED"
            ),
        ));
    }
    Ok(match (done, begun) {
        (None, None) => (EventState::Canceled, reason.to_owned()),
        (done, begun) => {
            let mut text = reason.to_owned();
            if let Some(done) = done {
                text.push_str(&format!(" after table(s) {done} committed"));
            }
            if let Some(begun) = begun {
                text.push_str(&format!(
                    "{} table(s) {begun} were committing when the process running it stopped: their target may or may not hold the new rows",
                    if text.len() == reason.len() { ";" } else { ", and" }
                ));
            }
            text.push_str("; the tables not committed were left as they were");
            (EventState::Failed, text)
        }
    })
}

/// The response of a run failed because its process stopped: who ran it, its last heartbeat,
/// and what its commit markers say.
pub(crate) fn abandoned_response(
    host: Option<&str>,
    pid: Option<i64>,
    since: Option<String>,
    marks: &[(String, CommitMark)],
) -> String {
    let mut text = format!(
        "abandoned: the process running it ({}) stopped (no heartbeat since {})",
        match (pid, host) {
            (Some(pid), Some(host)) => format!("pid {pid} on {host}"),
            _ => "unknown".to_owned(),
        },
        since.as_deref().unwrap_or("ever")
    );
    if let Some(done) = marked(marks, CommitMark::Done) {
        text.push_str(&format!("; table(s) {done} had committed"));
    }
    if let Some(begun) = marked(marks, CommitMark::Begun) {
        text.push_str(&format!(
            "; table(s) {begun} were committing: their target may or may not hold the new rows"
        ));
    }
    text
}

/// The state a job is left in when its run's event ends in `state`.
pub(crate) fn job_state_after(state: EventState) -> JobState {
    match state {
        EventState::Done => JobState::Done,
        EventState::Failed => JobState::Failed,
        EventState::Canceled => JobState::Suspend,
        EventState::Active => JobState::Running,
    }
}

/// A job claimed for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedJob {
    /// The run's event.
    pub event: EventId,
    /// Earlier runs that were failed because their process had stopped.
    pub taken_over: Vec<EventId>,
}

/// The store of hubs and their definitions (locations, channels, tables, actions).
///
/// Part of [`Repository`]; its contract is written on each method.
#[async_trait]
pub trait DefinitionStore: Send + Sync {
    /// Every hub, by name.
    async fn hubs(&self) -> Result<Vec<HubRecord>>;

    /// One hub.
    async fn hub(&self, hub: &HubName) -> Result<Option<HubRecord>>;

    /// Adds or replaces the hub, locations and channels of `definitions` in one transaction and
    /// posts a `Definition_Change_Import` event naming `user` and `source`.
    async fn apply_definitions(
        &self,
        definitions: &Definitions,
        user: &str,
        source: &str,
    ) -> Result<ApplySummary>;

    /// One location.
    async fn location(&self, hub: &HubName, name: &LocationName) -> Result<Option<Location>>;

    /// Every location of a hub, by name.
    async fn locations(&self, hub: &HubName) -> Result<Vec<Location>>;

    /// One channel.
    async fn channel(&self, hub: &HubName, name: &ChannelName) -> Result<Option<Channel>>;

    /// Every channel of a hub, by name.
    async fn channels(&self, hub: &HubName) -> Result<Vec<Channel>>;

    /// Creates an empty hub and posts `Hub_Create`. `Conflict` when it exists.
    async fn create_hub(&self, hub: &Hub, user: &str) -> Result<EventId>;

    /// Deletes a hub with its definitions, jobs and events. `NotFound` when it does not exist.
    async fn delete_hub(&self, hub: &HubName) -> Result<()>;

    /// Freezes (`true`) or unfreezes a hub and posts `Hub_Freeze` / `Hub_Unfreeze` naming `user`.
    /// Freezing a frozen hub (or unfreezing a live one) changes nothing but still answers the event.
    async fn set_hub_frozen(&self, hub: &HubName, frozen: bool, user: &str) -> Result<EventId>;

    /// Sets hub properties (`None` deletes one; `Description` is the hub's description) and posts
    /// `Hub_Property_Change` naming `user`, in one transaction.
    async fn set_hub_props(
        &self,
        hub: &HubName,
        changes: &BTreeMap<String, Option<serde_json::Value>>,
        user: &str,
    ) -> Result<EventId>;

    /// Makes the hub's stored definitions exactly `definitions` (locations and channels not in it
    /// are deleted), bumps the hub's version and posts `event`, in one transaction. `Conflict`
    /// when the hub's version is not `expected_version` (someone else changed it meanwhile);
    /// `NotFound` when the hub does not exist.
    async fn replace_hub_definitions(
        &self,
        definitions: &Definitions,
        expected_version: i64,
        event: NewEvent,
    ) -> Result<EventId>;
}

/// The store of jobs, HVR events, their per-table results and log lines, commit markers, the reaper.
///
/// Part of [`Repository`]; its contract is written on each method.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Posts an event (its id is unique: a colliding instant is moved a microsecond on).
    async fn post_event(&self, event: NewEvent) -> Result<EventId>;

    /// Posts the event of a job run and claims the job, atomically. Fails with `Conflict`, naming
    /// the running event, when another live process runs the job; a run whose owner has not sent a
    /// heartbeat for `stale_after` is failed and taken over.
    async fn start_job(
        &self,
        event: NewEvent,
        owner: &Owner,
        stale_after: Duration,
    ) -> Result<StartedJob>;

    /// Records that `owner` is still running `job`. Answers `false` when the run's event has been
    /// cancelled (by any process): the runner must stop. `Conflict` when `owner` no longer holds it.
    async fn heartbeat(&self, hub: &HubName, job: &JobName, owner: &Owner) -> Result<bool>;

    /// Ends a job run: the event gets its final state and response (unless it was already
    /// cancelled), the job its state (`DONE`, `FAILED`, or `SUSPEND` after a cancel).
    async fn finish_job(
        &self,
        hub: &HubName,
        job: &JobName,
        event: EventId,
        state: EventState,
        response: &str,
    ) -> Result<()>;

    /// Sets (adds or replaces) results of an event.
    async fn put_results(&self, event: EventId, results: &[EventResult]) -> Result<()>;

    /// Appends lines to an event's log.
    async fn append_log(&self, event: EventId, lines: &[String]) -> Result<()>;

    /// Events matching `filter`, newest first.
    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>>;

    /// An event's log lines, oldest first, each with its time.
    async fn event_log(&self, event: EventId) -> Result<Vec<(DateTime<Utc>, String)>>;

    /// Jobs of a hub, by name.
    async fn jobs(&self, hub: &HubName) -> Result<Vec<JobRecord>>;

    /// For each table of `channel`, the newest finished event of `event_type` that has results for
    /// it, with those results.
    async fn latest_table_results(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        event_type: EventType,
    ) -> Result<BTreeMap<TableName, (EventRecord, Vec<EventResult>)>>;

    /// Posts a job run's event and, when `start` is given, claims the job for that owner, in one
    /// transaction. Pending (unstarted) `ACTIVE` events of the same job are cancelled and listed.
    /// `Conflict`, naming the running event, when a live process runs the job. Without `start`
    /// the job is left `SUSPEND` with the event pending until [`Repository::claim_job`].
    async fn submit_job(
        &self,
        event: NewEvent,
        start: Option<(&Owner, Duration)>,
    ) -> Result<SubmittedJob>;

    /// Claims a job for its pending event `event` (an `ACTIVE` event that is the job's latest).
    /// `Conflict` when a live process runs the job or the event is not pending; `NotFound` when
    /// the job does not exist. Returns the runs taken over from dead processes.
    async fn claim_job(
        &self,
        hub: &HubName,
        job: &JobName,
        owner: &Owner,
        stale_after: Duration,
    ) -> Result<(EventId, Vec<EventId>)>;

    /// One job.
    async fn job(&self, hub: &HubName, job: &JobName) -> Result<Option<JobRecord>>;

    /// Sets the state of a job that is not running (suspend / unsuspend). `NotFound` when there is
    /// no such job, `Conflict` when it is running.
    async fn set_job_state(&self, hub: &HubName, job: &JobName, state: JobState) -> Result<()>;

    /// Deletes a job: its `ACTIVE` events become `CANCELED` (returned). `NotFound` when there is
    /// no such job.
    async fn delete_job(&self, hub: &HubName, job: &JobName) -> Result<Vec<EventId>>;

    /// Ends `ACTIVE` events at a user's request, at once, all or none. An event none of whose
    /// tables began to commit becomes `CANCELED`; one with a committed table becomes `FAILED`
    /// (its run stops before the next table commits; the tables not committed are left as they
    /// were), so a run with a committed table never shows `CANCELED`. Its job: `SUSPEND` when
    /// not running; still `RUNNING` while a live process runs it (the run stops at its next look
    /// at the event and then lets go of the job); freed at once (`SUSPEND`, or `FAILED` with the
    /// event) when its process has sent no heartbeat for `stale_after`.
    ///
    /// `Conflict` (naming the event) when one is not `ACTIVE`, or when a table of one is
    /// committing in a live process: then it is too late, and the run ends `DONE` or `FAILED`.
    /// `NotFound` when one does not exist. On an error nothing changes.
    async fn cancel_events(
        &self,
        hub: &HubName,
        ids: &[EventId],
        stale_after: Duration,
    ) -> Result<Vec<EventRecord>>;

    /// Records that `table` of `owner`'s run `event` of `job` begins to commit, when the event is
    /// still `ACTIVE`: `true` lets the table commit (from now on a cancel is too late until
    /// [`Repository::end_commit`]); `false` means the event was cancelled (or otherwise ended)
    /// and the table must not commit. `Conflict` when `owner` no longer holds the job.
    async fn begin_commit(
        &self,
        hub: &HubName,
        job: &JobName,
        event: EventId,
        table: &TableName,
        owner: &Owner,
    ) -> Result<bool>;

    /// Records how the commit [`Repository::begin_commit`] let begin ended: `committed` keeps the
    /// table's marker as committed, otherwise (the write failed and rolled back) it is removed.
    async fn end_commit(&self, event: EventId, table: &TableName, committed: bool) -> Result<()>;

    /// Ends every run whose process has sent no heartbeat for `stale_after` (by the database's
    /// clock on PostgreSQL): its `ACTIVE` event becomes `FAILED` with a response that names the
    /// process, its last heartbeat and the tables that had committed, and its job is freed
    /// (`FAILED`, or the state its event had already ended in). Of processes reaping at once,
    /// each run is ended by exactly one; a run whose process still beats is never touched.
    async fn reap_jobs(&self, stale_after: Duration) -> Result<Vec<ReapedJob>>;
}

/// The store of users, tokens (refresh tokens, sessions) and API keys.
///
/// Part of [`Repository`]; its contract is written on each method.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Every user, by name.
    async fn users(&self) -> Result<Vec<UserRecord>>;

    /// One user.
    async fn user(&self, name: &str) -> Result<Option<UserRecord>>;

    /// Adds a user. `Conflict` when the name is taken.
    async fn create_user(&self, user: &UserRecord) -> Result<()>;

    /// Changes a user's level and/or password hash. `NotFound` when there is no such user.
    async fn update_user(
        &self,
        name: &str,
        level: Option<AccessLevel>,
        password_hash: Option<&str>,
    ) -> Result<()>;

    /// Deletes a user and their tokens. `NotFound` when there is no such user.
    async fn delete_user(&self, name: &str) -> Result<()>;

    /// Stores a token.
    async fn put_token(&self, token: &TokenRecord) -> Result<()>;

    /// Removes and returns the token with this hash (at most one caller gets it: rotation).
    async fn take_token(&self, hash: &str) -> Result<Option<TokenRecord>>;

    /// The token with this hash, if stored (expired or not).
    async fn token(&self, hash: &str) -> Result<Option<TokenRecord>>;

    /// Tokens of a kind (every user when `user` is `None`).
    async fn tokens(&self, kind: &str, user: Option<&str>) -> Result<Vec<TokenRecord>>;

    /// Deletes a token; deleting an unknown token is not an error.
    async fn delete_token(&self, hash: &str) -> Result<()>;

    /// Stores a new API key. `Conflict` when the key exists.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()>;

    /// Every API key, oldest first.
    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>>;

    /// One API key.
    async fn api_key(&self, key: &str) -> Result<Option<ApiKeyRecord>>;

    /// Deletes an API key. `NotFound` when there is no such key.
    async fn delete_api_key(&self, key: &str) -> Result<()>;
}

/// The store of hub-wide settings and the `/v1` connector records.
///
/// Part of [`Repository`]; its contract is written on each method.
#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// A repository-wide setting (e.g. the token signing key), inserting `value` first when
    /// absent: every process sharing the repository gets the same stored value.
    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String>;

    /// The connector settings of a channel, storing `record` first when there are none: every
    /// process gets the same stored settings (and `created`). `NotFound` when the hub does not
    /// exist.
    async fn connector_or_insert(&self, record: &ConnectorRecord) -> Result<ConnectorRecord>;

    /// Stored connector settings, of one hub or of every hub, by hub and channel.
    async fn connector_records(&self, hub: Option<&HubName>) -> Result<Vec<ConnectorRecord>>;

    /// Adds or replaces the settings of a connector. `NotFound` when the hub does not exist.
    async fn put_connector(&self, record: &ConnectorRecord) -> Result<()>;
}

/// The hub repository.
///
/// It is made of the store traits by area ([`DefinitionStore`], [`JobStore`],
/// [`IdentityStore`], [`SettingsStore`]); whatever implements all four is a repository.
pub trait Repository: DefinitionStore + JobStore + IdentityStore + SettingsStore {}

impl<T: DefinitionStore + JobStore + IdentityStore + SettingsStore + ?Sized> Repository for T {}
