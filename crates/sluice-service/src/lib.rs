//! The use cases of sluice and the one place that wires the engine, the repository and the
//! connectors together.
//!
//! [`HubService`] is a cheap `Clone` handle with one async method per use case: define (validate,
//! apply), test a location, refresh, compare, status, events. The CLI calls it directly; the HTTP
//! API (a later issue) will call the same methods.
#![deny(missing_docs)]

pub mod access;
pub mod action_list;
pub mod admin;
pub mod alert;
pub mod auth;
pub mod backup;
pub mod batch;
pub mod browse;
pub mod catch_up;
mod change_sync;
pub mod connectors;
pub mod context;
pub mod definition;
pub mod environment;
mod event_query;
mod health;
pub mod hub_server;
pub mod job_runtime;
mod job_system;
mod jobs;
pub mod lineage;
mod log_file;
pub mod online;
mod password;
pub mod plan;
pub mod policy;
pub mod publish;
mod redaction;
pub mod registry;
pub mod rename;
pub mod replication;
pub mod request;
pub mod secrets;
pub mod selection;
pub mod slicing;
pub mod snapshot;
mod statistics;
mod status;
pub mod wallet;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sluice_connector::{ConnectorError, ErrorKind, TestReport};
use sluice_model::definition::{Channel, Definitions, HubState, Location};
use sluice_model::{ChannelName, EventId, HubName, LocationName};
pub use sluice_repo::{ApplySummary, EventFilter, EventRecord, EventResult, JobRecord};
use sluice_repo::{
    DefinitionStore, IdentityStore, JobStore, Owner, PropStore, RepoError, RepoErrorKind,
    Repository, SettingsStore, SqliteRepository, Stores,
};
pub use sluice_repo::{PropBag, PropBagKind, PropWrite};
use tokio_util::sync::CancellationToken;

pub use admin::{JobStart, StartOptions};
pub use auth::{AdminSetup, UnusedPassword};
pub use batch::{BatchCommand, BatchEntry, BatchFailure, BatchOperation, BatchOutcome, BatchVerb};
pub use definition::{CompileContext, Compiled, Diagnostic, Severity};
pub use event_query::{EventFacet, MAX_COUNTED_EVENTS};
pub use health::HubGauge;
pub use job_system::{JOB_ATTRIBUTES, JobAttribute, JobScope};
pub use jobs::{
    CompareCommand, CompareSummary, CompareTableResult, JobPlan, ModeOverride, PlannedTable,
    Posted, RefreshCommand, RefreshSummary, RefreshTableResult, RunningJob, Start, Submitted,
};
pub use log_file::LogFile;
pub use registry::EnvLookup;
pub use request::{BatchRequest, CompareRequest, DifferenceFilter, RefreshRequest};
pub use slicing::{Slicing, SlicingRequest};
pub use sluice_engine::RowChanges;
pub use sluice_engine::plan::{RefreshMode, RowwiseApply};
pub use sluice_engine::{Granularity, Progress};
pub use sluice_model::refresh::RefreshModeKind;
pub use statistics::{METRICS, MetricValues, MetricsQuery, SCOPES, TIME_GRANULARITIES};
pub use status::{
    ChannelDetail, ChannelHealth, ChannelOverview, HubOverview, LastRun, RefreshRun, TableStatus,
};

/// What kind of failure a use case met; decides exit codes and (later) HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceErrorKind {
    /// The request or the definitions are invalid; nothing was done.
    Invalid,
    /// A named object does not exist.
    NotFound,
    /// The request conflicts with the current state (e.g. the job is already running).
    Conflict,
    /// The work was attempted and failed (a database refused, a value did not fit).
    Failed,
    /// The repository could not be used.
    Repository,
    /// The caller is not (or no longer) authenticated.
    Unauthenticated,
    /// The caller may not do this.
    Forbidden,
    /// Too many attempts; try again later.
    RateLimited,
}

/// An error of a use case.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    kind: ServiceErrorKind,
    code: Option<&'static str>,
    message: String,
    diagnostics: Vec<Diagnostic>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ServiceError {
    /// An error of `kind`.
    pub fn new(kind: ServiceErrorKind, message: impl Into<String>) -> Self {
        ServiceError {
            kind,
            code: None,
            message: message.into(),
            diagnostics: Vec::new(),
            source: None,
        }
    }

    /// Gives the error a wire code (HVR's `F_XXXXXX`), for errors clients look for by code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The wire code, when the error has a specific one.
    pub fn code(&self) -> Option<&'static str> {
        self.code
    }

    fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind.
    pub fn kind(&self) -> ServiceErrorKind {
        self.kind
    }

    /// The definition errors, when the definitions were invalid.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// An invalid request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ServiceErrorKind::Invalid, message)
    }

    /// A missing object.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ServiceErrorKind::NotFound, message)
    }

    /// Wraps a connector error with what was being done.
    pub(crate) fn connector(context: impl Into<String>, error: ConnectorError) -> Self {
        let kind = match error.kind() {
            ErrorKind::NotFound => ServiceErrorKind::NotFound,
            _ => ServiceErrorKind::Failed,
        };
        Self::new(kind, context).with_source(error)
    }

    /// A table's plan that could not be made, before any row moved. What the databases answered
    /// about the request itself (a table, column or database that does not exist, columns that do
    /// not suit the operation) makes the request invalid (exit 2 at the command line); a database
    /// that could not be reached or failed makes the work failed (exit 1).
    pub(crate) fn planning(error: sluice_engine::EngineError) -> Self {
        let kind = match error.source.kind() {
            ErrorKind::NotFound => ServiceErrorKind::NotFound,
            ErrorKind::Schema | ErrorKind::Unsupported => ServiceErrorKind::Invalid,
            _ => ServiceErrorKind::Failed,
        };
        Self::new(kind, format!("table {}", error.table)).with_source(error.source)
    }
}

impl From<RepoError> for ServiceError {
    fn from(error: RepoError) -> Self {
        let (kind, message, source) = error.into_parts();
        let kind = match kind {
            RepoErrorKind::NotFound => ServiceErrorKind::NotFound,
            RepoErrorKind::Conflict => ServiceErrorKind::Conflict,
            _ => ServiceErrorKind::Repository,
        };
        ServiceError {
            kind,
            code: None,
            message,
            diagnostics: Vec::new(),
            source,
        }
    }
}

/// Results of use cases.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// How long a running job may go without a heartbeat before another process may take it over,
/// and before any live process ends its run as `FAILED` ([`HubService::reap_orphaned_jobs`]).
/// Longer than the repository's lock wait (30 s), so a busy repository never looks like a dead job.
const STALE_AFTER: Duration = Duration::from_secs(60);
/// How often the scheduler looks for runs whose process stopped.
const REAP_EVERY: Duration = Duration::from_secs(5);
/// How often a running job looks whether its event was cancelled by another process.
const CANCEL_WATCH: Duration = Duration::from_millis(250);
/// How often a running job sends its heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(5);

struct Inner {
    /// The repository as opened, without the event hub's publishing.
    repo: Arc<dyn Repository>,
    /// The repository by area, as the use cases call it: on a hub server the areas whose
    /// changes are published (definitions, jobs and events) go through the publisher.
    stores: Stores,
    env: EnvLookup,
    secrets: Option<secrets::SecretKey>,
    owner: Owner,
    /// Jobs this process runs, by event: cancelling an event fires its token at once.
    running: std::sync::Mutex<std::collections::HashMap<EventId, CancellationToken>>,
    /// Activated channels this process replicates now.
    replications: replication::Replications,
    /// The token signing key, read from (or first stored in) the repository.
    jwt_key: tokio::sync::OnceCell<Vec<u8>>,
    limiter: auth::LoginLimiter,
    /// Token checks remembered for a second (forgotten by every identity write).
    auth_cache: Arc<auth::AuthCache>,
    /// The event hub, in a hub server.
    events: Option<sluice_events::EventHub>,
    /// What location definitions may reach (variables, files).
    policy: std::sync::RwLock<Arc<policy::LocationPolicy>>,
    /// What `sluice serve`'s configuration says of the hub server.
    server: std::sync::RwLock<hub_server::ServerFacts>,
    /// Where jobs run, when not on the caller's runtime ([`HubService::set_job_runtime`]).
    job_runtime: std::sync::OnceLock<job_runtime::JobRuntime>,
    /// Redacted definition documents by hub, with the (creation time, version) they show.
    #[allow(clippy::type_complexity)]
    doc_cache: std::sync::Mutex<
        std::collections::HashMap<
            HubName,
            ((chrono::DateTime<chrono::Utc>, i64), Arc<serde_json::Value>),
        >,
    >,
}

impl Inner {
    fn track(&self, event: EventId, cancel: CancellationToken) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(event, cancel);
    }

    fn untrack(&self, event: EventId) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&event);
    }

    fn cancel_local(&self, event: EventId) -> bool {
        match self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&event)
        {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}

/// The use cases of one hub repository, as one user. Cloning is cheap; [`HubService::as_user`]
/// gives the same service acting as another user (the hub server makes one per request).
#[derive(Clone)]
pub struct HubService {
    inner: Arc<Inner>,
    user: Arc<str>,
}

impl HubService {
    /// A service over `repo`, acting as `user`, resolving secrets through `env`.
    pub fn new(repo: Arc<dyn Repository>, env: EnvLookup, user: impl Into<String>) -> Self {
        Self::with_secrets(repo, env, None, user)
    }

    /// A service that also stores location passwords encrypted with `key` (the hub server's way)
    /// and decrypts them at the moment of use.
    pub fn with_secrets(
        repo: Arc<dyn Repository>,
        env: EnvLookup,
        key: Option<secrets::SecretKey>,
        user: impl Into<String>,
    ) -> Self {
        let stores = Stores::of(repo.clone());
        Self::build(repo, stores, env, key, None, user)
    }

    /// The hub server's service: location passwords encrypted with `key`, and every job, event
    /// and definition change also published on `events` (see [`publish`]).
    pub fn with_event_hub(
        repo: Arc<dyn Repository>,
        env: EnvLookup,
        key: Option<secrets::SecretKey>,
        events: sluice_events::EventHub,
        user: impl Into<String>,
    ) -> Self {
        let publishing = Arc::new(publish::PublishingRepository::new(
            repo.clone(),
            events.clone(),
        ));
        let stores = Stores {
            definitions: publishing.clone(),
            jobs: publishing,
            ..Stores::of(repo.clone())
        };
        Self::build(repo, stores, env, key, Some(events), user)
    }

    fn build(
        repo: Arc<dyn Repository>,
        stores: Stores,
        env: EnvLookup,
        key: Option<secrets::SecretKey>,
        events: Option<sluice_events::EventHub>,
        user: impl Into<String>,
    ) -> Self {
        let auth_cache = Arc::new(auth::AuthCache::default());
        let stores = Stores {
            identity: Arc::new(auth::RevokingIdentityStore {
                store: stores.identity,
                cache: auth_cache.clone(),
            }),
            ..stores
        };
        HubService {
            inner: Arc::new(Inner {
                events,
                repo,
                stores,
                env,
                secrets: key,
                owner: Owner::current(),
                running: std::sync::Mutex::new(std::collections::HashMap::new()),
                replications: Default::default(),
                jwt_key: tokio::sync::OnceCell::new(),
                limiter: auth::LoginLimiter::default(),
                auth_cache,
                policy: std::sync::RwLock::new(Arc::new(policy::LocationPolicy::default())),
                server: Default::default(),
                job_runtime: std::sync::OnceLock::new(),
                doc_cache: std::sync::Mutex::new(std::collections::HashMap::new()),
            }),
            user: Arc::from(user.into()),
        }
    }

    /// The same service acting as `user`.
    pub fn as_user(&self, user: &str) -> HubService {
        HubService {
            inner: self.inner.clone(),
            user: Arc::from(user),
        }
    }

    /// Sets what location definitions may reach (the hub server sets its stricter policy once, at
    /// start-up; the default is the operator's own: any variable but `SLUICE_*`, any file).
    pub fn set_location_policy(&self, policy: policy::LocationPolicy) {
        *self.inner.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
    }

    /// Runs this service's jobs (refresh, compare, activation, replication) on `jobs` from now
    /// on, instead of on the runtime that asks for them. Set once, at start-up: a second call
    /// changes nothing and returns `false`.
    pub fn set_job_runtime(&self, jobs: job_runtime::JobRuntime) -> bool {
        self.inner.job_runtime.set(jobs).is_ok()
    }

    /// The job runtime's worker threads and CPU priority, when jobs have one.
    pub fn job_runtime(&self) -> Option<(usize, i32)> {
        self.inner
            .job_runtime
            .get()
            .map(|jobs| (jobs.threads(), jobs.nice()))
    }

    /// Runs a job's `work` where jobs run.
    pub(crate) fn spawn_job<F>(&self, work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.inner.job_runtime.get() {
            Some(jobs) => jobs.spawn(work),
            None => tokio::spawn(work),
        }
    }

    /// What location definitions may reach.
    pub fn location_policy(&self) -> Arc<policy::LocationPolicy> {
        self.inner
            .policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The event hub, when this service runs in a hub server.
    pub fn event_hub(&self) -> Option<&sluice_events::EventHub> {
        self.inner.events.as_ref()
    }

    /// Who this service acts as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The repository, for tests and tools that set up state beneath the use cases; handlers
    /// call the use cases ([`HubService::health`], [`HubService::metrics_snapshot`], …) instead.
    pub fn repository(&self) -> Arc<dyn Repository> {
        self.inner.repo.clone()
    }

    /// Refuses when `hub` is frozen: no job starts on a frozen hub.
    pub(crate) async fn ensure_live(&self, hub: &HubName) -> Result<()> {
        let record = self
            .definition_store()
            .hub(hub)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("hub {hub} does not exist")))?;
        if record.state == HubState::Frozen {
            return Err(ServiceError::invalid(format!(
                "hub {hub} is FROZEN: no job starts until it is unfrozen"
            )));
        }
        Ok(())
    }

    /// Connects to a location, resolving `${ENV}` references and decrypting stored secrets.
    pub(crate) fn connect(
        &self,
        location: &Location,
    ) -> std::result::Result<Arc<dyn sluice_connector::Connector>, ConnectorError> {
        registry::connect(
            location,
            &self.inner.env,
            self.inner.secrets.as_ref(),
            &self.location_policy(),
        )
    }

    /// A service over the SQLite repository in `home` (`home/hub.db`), with the process environment.
    pub fn open_local(home: &Path, user: impl Into<String>) -> Result<Self> {
        let repo = SqliteRepository::open(home.join("hub.db"))?;
        let service = Self::new(Arc::new(repo), registry::process_env(), user);
        service.set_location_policy(policy::LocationPolicy::local(vec![
            home.join("hub.db"),
            home.join("secret.key"),
        ]));
        Ok(service)
    }

    /// Hubs and their definitions.
    pub(crate) fn definition_store(&self) -> &dyn DefinitionStore {
        self.inner.stores.definitions.as_ref()
    }

    /// Jobs, HVR events, results and logs.
    pub(crate) fn job_store(&self) -> &dyn JobStore {
        self.inner.stores.jobs.as_ref()
    }

    /// The jobs store, to keep (the commit gate of a running job).
    pub(crate) fn job_store_handle(&self) -> Arc<dyn JobStore> {
        self.inner.stores.jobs.clone()
    }

    /// Users, tokens and API keys.
    pub(crate) fn identity_store(&self) -> &dyn IdentityStore {
        self.inner.stores.identity.as_ref()
    }

    /// Settings and `/v1` connector records.
    pub(crate) fn settings_store(&self) -> &dyn SettingsStore {
        self.inner.stores.settings.as_ref()
    }

    /// Property bags (alerts, user props, job attributes, the hub server's props…).
    pub(crate) fn props_store(&self) -> &dyn PropStore {
        self.inner.stores.props.as_ref()
    }

    /// The hub to work on: `name` if given (it must exist), else the only hub in the repository.
    pub async fn resolve_hub(&self, name: Option<&HubName>) -> Result<HubName> {
        let hubs = self.definition_store().hubs().await?;
        match name {
            Some(name) if hubs.iter().any(|h| &h.hub.name == name) => Ok(name.clone()),
            Some(name) => Err(ServiceError::not_found(format!(
                "hub {name} does not exist"
            ))),
            None => match hubs.as_slice() {
                [] => Err(ServiceError::not_found(
                    "the repository has no hub yet: define one with `sluice apply FILE`",
                )),
                [only] => Ok(only.hub.name.clone()),
                many => Err(ServiceError::invalid(format!(
                    "the repository has several hubs ({}); choose one with --hub-name",
                    many.iter()
                        .map(|h| h.hub.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            },
        }
    }

    /// Compiles a definitions file against the repository's locations, without storing anything.
    pub async fn validate_file(&self, path: &Path, hub: Option<&HubName>) -> Result<Compiled> {
        let parsed = definition::parse_file(path);
        let known = match parsed
            .as_ref()
            .ok()
            .and_then(definition::hub_of)
            .or_else(|| hub.cloned())
        {
            Some(h) => self
                .definition_store()
                .locations(&h)
                .await?
                .into_iter()
                .map(|l| l.name)
                .collect(),
            None => BTreeSet::new(),
        };
        Ok(definition::compile_parsed(path, parsed, known, hub))
    }

    /// Validates a definitions file and stores it: every object it defines is added or replaced,
    /// in one transaction. Returns what changed and the warnings.
    pub async fn apply_file(
        &self,
        path: &Path,
        hub: Option<&HubName>,
    ) -> Result<(ApplySummary, Vec<Diagnostic>)> {
        let compiled = self.validate_file(path, hub).await?;
        let Some(definitions) = compiled.definitions else {
            let errors: Vec<Diagnostic> = compiled.errors().cloned().collect();
            let mut error = ServiceError::invalid(format!(
                "{} has {} error(s); nothing was applied",
                path.display(),
                errors.len()
            ));
            error.diagnostics = errors;
            return Err(error);
        };
        let source = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let summary = self.apply_definitions(&definitions, &source).await?;
        Ok((summary, compiled.diagnostics))
    }

    /// Stores compiled definitions.
    pub async fn apply_definitions(
        &self,
        definitions: &Definitions,
        source: &str,
    ) -> Result<ApplySummary> {
        Ok(self
            .definition_store()
            .apply_definitions(definitions, &self.user, source)
            .await?)
    }

    /// A location of `hub`.
    pub async fn location(&self, hub: &HubName, name: &LocationName) -> Result<Location> {
        self.definition_store()
            .location(hub, name)
            .await?
            .ok_or_else(|| {
                ServiceError::not_found(format!("location {name} does not exist in hub {hub}"))
            })
    }

    /// The locations of `hub`.
    pub async fn locations(&self, hub: &HubName) -> Result<Vec<Location>> {
        Ok(self.definition_store().locations(hub).await?)
    }

    /// A channel of `hub`.
    pub async fn channel(&self, hub: &HubName, name: &ChannelName) -> Result<Channel> {
        self.definition_store()
            .channel(hub, name)
            .await?
            .ok_or_else(|| {
                ServiceError::not_found(format!("channel {name} does not exist in hub {hub}"))
            })
    }

    /// The channels of `hub`.
    pub async fn channels(&self, hub: &HubName) -> Result<Vec<Channel>> {
        Ok(self.definition_store().channels(hub).await?)
    }

    /// Tests the connection to a location; changes nothing.
    pub async fn test_location(&self, hub: &HubName, name: &LocationName) -> Result<TestReport> {
        let location = self.location(hub, name).await?;
        self.sync_wallet().await?;
        let connector = self
            .connect(&location)
            .map_err(|e| ServiceError::connector(format!("location {name}"), e))?;
        connector
            .test()
            .await
            .map_err(|e| ServiceError::connector(format!("location {name} failed its test"), e))
    }

    /// The jobs of `hub`.
    pub async fn jobs(&self, hub: &HubName) -> Result<Vec<JobRecord>> {
        Ok(self.job_store().jobs(hub).await?)
    }

    /// Events matching `filter`, newest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        Ok(self.job_store().events(filter).await?)
    }

    /// An event's log lines.
    pub async fn event_log(
        &self,
        event: EventId,
    ) -> Result<Vec<(chrono::DateTime<chrono::Utc>, String)>> {
        Ok(self.job_store().event_log(event).await?)
    }
}
