//! The repository's store traits, one per area, and [`Repository`], whatever implements them all.

use super::*;

/// The repository by area, each area a handle of its own, so a wrapper (such as the hub server's
/// publisher of changes) can stand in for the areas it concerns and no other.
#[derive(Clone)]
pub struct Stores {
    /// Hubs and their definitions.
    pub definitions: Arc<dyn DefinitionStore>,
    /// Jobs, HVR events, their results and logs.
    pub jobs: Arc<dyn JobStore>,
    /// Users, tokens and API keys.
    pub identity: Arc<dyn IdentityStore>,
    /// Settings and connector records.
    pub settings: Arc<dyn SettingsStore>,
    /// Property bags (alerts, user props, job attributes, the hub server's props…).
    pub props: Arc<dyn PropStore>,
}

impl Stores {
    /// Every area from one repository.
    pub fn of(repo: Arc<dyn Repository>) -> Stores {
        Stores {
            definitions: repo.clone(),
            jobs: repo.clone(),
            identity: repo.clone(),
            settings: repo.clone(),
            props: repo,
        }
    }
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
///
/// A run is held by its [`Owner`] while the owner's heartbeat is younger than `stale_after`,
/// except when the owner is known to be gone: its host is this host's and (on Linux, by
/// `/proc/<pid>`) its process no longer exists, or its pid is this process's under an owner id
/// this process did not make (a container restarted with the same pid). Such a run counts as
/// abandoned at once wherever a stale one does ([`JobStore::start_job`],
/// [`JobStore::submit_job`], [`JobStore::claim_job`], [`JobStore::cancel_events`],
/// [`JobStore::reap_jobs`]), so a process killed and restarted on the same host resumes its jobs
/// without waiting. A process that exists is never taken for gone (a reused pid only delays the
/// take-over to staleness); owners on other hosts are judged by their heartbeat alone.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Posts an event (its id is unique: a colliding instant is moved a microsecond on).
    async fn post_event(&self, event: NewEvent) -> Result<EventId>;

    /// Posts the event of a job run and claims the job, atomically. Fails with `Conflict`, naming
    /// the running event, when another live process runs the job; a run whose owner has not sent a
    /// heartbeat for `stale_after`, or whose process is gone from this host, is failed and taken
    /// over.
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
    /// the job is left `SUSPEND` with the event pending until [`JobStore::claim_job`].
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
    /// [`JobStore::end_commit`]); `false` means the event was cancelled (or otherwise ended)
    /// and the table must not commit. `Conflict` when `owner` no longer holds the job.
    async fn begin_commit(
        &self,
        hub: &HubName,
        job: &JobName,
        event: EventId,
        table: &TableName,
        owner: &Owner,
    ) -> Result<bool>;

    /// Records how the commit [`JobStore::begin_commit`] let begin ended: `committed` keeps the
    /// table's marker as committed, otherwise (the write failed and rolled back) it is removed.
    async fn end_commit(&self, event: EventId, table: &TableName, committed: bool) -> Result<()>;

    /// Ends every run whose process has sent no heartbeat for `stale_after` (by the database's
    /// clock on PostgreSQL) or is gone from this host (see [`JobStore`]): its `ACTIVE` event becomes `FAILED` with a response that names the
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

/// The store of property bags ([`PropBag`]): objects that are nothing but named JSON props.
///
/// Part of [`Repository`]; its contract is written on each method. Deleting a hub deletes the
/// bags of that hub; deleting a user deletes the user's bags.
#[async_trait]
pub trait PropStore: Send + Sync {
    /// The props of a bag, by name; `None` when the bag does not exist.
    async fn props(&self, bag: &PropBag) -> Result<Option<BTreeMap<String, serde_json::Value>>>;

    /// Every bag of `kind` (of one hub when `hub` is given), with its props, in key order.
    async fn bags(
        &self,
        kind: PropBagKind,
        hub: Option<&HubName>,
    ) -> Result<Vec<(PropBag, BTreeMap<String, serde_json::Value>)>>;

    /// Writes a bag's props as `how` says (`None` removes a prop), in one transaction, and
    /// answers the props stored afterwards. `Conflict` / `NotFound` as [`PropWrite`] says.
    async fn write_props(
        &self,
        bag: &PropBag,
        changes: &BTreeMap<String, Option<serde_json::Value>>,
        how: PropWrite,
    ) -> Result<BTreeMap<String, serde_json::Value>>;

    /// Deletes a bag; `false` when it did not exist.
    async fn delete_bag(&self, bag: &PropBag) -> Result<bool>;
}

/// The hub repository.
///
/// It is made of the store traits by area ([`DefinitionStore`], [`JobStore`],
/// [`IdentityStore`], [`SettingsStore`], [`PropStore`]); whatever implements them all is a
/// repository.
pub trait Repository:
    DefinitionStore + JobStore + IdentityStore + SettingsStore + PropStore
{
}

impl<T: DefinitionStore + JobStore + IdentityStore + SettingsStore + PropStore + ?Sized> Repository
    for T
{
}
