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
//! * [`DefinitionStore::apply_definitions`] replaces every object of a definitions file, and posts the
//!   audit event, in one transaction; a failure changes nothing.
//! * [`JobStore::start_job`] posts the job's event and claims the job in one transaction: at most
//!   one run per job at a time. A run whose process stopped sending heartbeats is failed and taken
//!   over, so a crash never blocks a job forever. [`JobStore::submit_job`] and
//!   [`JobStore::claim_job`] likewise: of racing submitters exactly one wins.
//! * [`JobStore::begin_commit`] and [`JobStore::cancel_events`] decide, each in one
//!   transaction on the job's row, whether a table's commit or a cancel came first: once a table
//!   began to commit, a cancel is too late; once a cancel is recorded, no table begins to commit.
//! * [`JobStore::reap_jobs`] ends runs whose process stopped sending heartbeats; of processes
//!   reaping at once, each run is ended by exactly one.
//! * Event ids are unique and increasing, whichever process posts them.
#![deny(missing_docs)]

mod migrations;
mod postgres;
mod process;
mod props;
mod sqlite;
mod store;

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
pub use props::{PropBag, PropBagKind, PropWrite};

/// The newest repository schema version this build reads and writes.
pub fn schema_version() -> u32 {
    migrations::MIGRATIONS
        .last()
        .map(|(version, _, _)| *version)
        .unwrap_or_default()
}
use props::{check_write, group_bags, props_value};
pub use sluice_store::{Database, Spec};
use sluice_store::{StoreError, StoreErrorKind};
pub use sqlite::SqliteRepository;
pub use store::{
    DefinitionStore, IdentityStore, JobStore, PropStore, Repository, SettingsStore, Stores,
};

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
    ///
    /// Its id is recorded as one of this process's, so a run held under this process's pid by
    /// an id it did not make counts as a previous incarnation's (see [`Owner::is_gone`]).
    pub fn current() -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        process::register_owner(&id);
        Owner {
            id,
            host: process::local_host().to_owned(),
            pid: std::process::id(),
        }
    }
}

/// A job run that [`JobStore::reap_jobs`] ended because its process had stopped.
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
    gone: bool,
    marks: &[(String, CommitMark)],
) -> String {
    let mut text = format!(
        "abandoned: the process running it ({}) stopped (no heartbeat since {}{})",
        match (pid, host) {
            (Some(pid), Some(host)) => format!("pid {pid} on {host}"),
            _ => "unknown".to_owned(),
        },
        since.as_deref().unwrap_or("ever"),
        if gone { "; it no longer exists" } else { "" }
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
