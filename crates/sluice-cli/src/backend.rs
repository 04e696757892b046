//! What the commands ask of a hub, answered either by the local repository (the service,
//! `local.rs`) or by a hub server over HTTP (`--hub`, `remote.rs`). Each command
//! (in `commands.rs`) parses its options, asks its [`Backend`] and prints, once for both.
//!
//! The answers are views: the JSON that `--json` prints (each side's own shape, as it was before
//! the two sides shared their commands) and the values the tables show. Where the two sides print
//! differently today, the command asks [`Backend::side`] and keeps each side's output as it was.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice_model::{ChannelName, EventId, JobName, LocationName};

use crate::args::{
    ActivateArgs, BatchArgs, CompareArgs, DeactivateArgs, EventListArgs, Global, Outcome,
    RefreshArgs,
};

/// Which side answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The local repository.
    Local,
    /// A hub server (`--hub`).
    Remote,
}

/// An answer: the JSON `--json` prints and what the table shows.
#[derive(Debug)]
pub struct Shown<T> {
    /// Printed with `--json`.
    pub json: Value,
    /// Printed as text.
    pub view: T,
}

/// The hub's state.
#[derive(Debug)]
pub struct HubState {
    /// Where the hub is: `in DIR` (local) or `at URL`.
    pub place: String,
    /// LIVE or FROZEN.
    pub state: String,
    /// Since when it is frozen.
    pub freeze_time: Option<DateTime<Utc>>,
    /// The license (a hub server's).
    pub license: Option<String>,
    /// Jobs over their latency SLA (a hub server's).
    pub jobs_over_latency_sla: Vec<String>,
}

/// One location of a list.
#[derive(Debug)]
pub struct LocationRow {
    /// The location.
    pub name: String,
    /// Its class.
    pub class: String,
    /// Its description (the local list only shows this column).
    pub description: String,
    /// Its properties other than the class, `k=v` (a secret shows as its reference).
    pub props: Vec<(String, String)>,
}

/// A channel's location groups and their members.
pub type Groups = Vec<(String, Vec<String>)>;

/// One channel of a list.
#[derive(Debug)]
pub struct ChannelRow {
    /// The channel.
    pub name: String,
    /// How many tables it has.
    pub tables: usize,
    /// Its location groups.
    pub groups: Groups,
    /// Its description.
    pub description: String,
}

/// One channel in full.
#[derive(Debug)]
pub struct ChannelView {
    /// The channel.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its location groups.
    pub groups: Groups,
    /// Its tables.
    pub tables: Vec<TableView>,
    /// Its actions.
    pub actions: Vec<ActionView>,
}

/// One table of a channel.
#[derive(Debug)]
pub struct TableView {
    /// The channel's name for it.
    pub name: String,
    /// Its name in the databases, when it differs.
    pub base_name: String,
    /// Its declared columns (name, data type, whether a key column); `None`: discovered.
    pub columns: Option<Vec<(String, String, bool)>>,
}

/// One action of a channel.
#[derive(Debug)]
pub struct ActionView {
    /// Capture, Integrate, Refresh, …
    pub action_type: String,
    /// The locations it covers.
    pub loc_scope: String,
    /// The tables it covers.
    pub table_scope: String,
    /// Its parameters.
    pub params: Vec<(String, String)>,
}

/// What a refresh or compare would run (`--dry-run`).
#[derive(Debug)]
pub struct Plan {
    /// Printed with `--json`.
    pub json: Value,
    /// The job.
    pub job: String,
    /// The source location.
    pub source: String,
    /// The target location.
    pub target: String,
    /// Per table.
    pub tables: Vec<PlannedTable>,
}

/// One table of a [`Plan`].
#[derive(Debug)]
pub struct PlannedTable {
    /// The channel's name for the table.
    pub table: String,
    /// The table at the source.
    pub source_table: String,
    /// The table at the target.
    pub target_table: String,
    /// What the job does with the table, in words.
    pub action: Option<String>,
    /// The source's statements: SQL, and whether it runs once per row.
    pub source_statements: Vec<(String, bool)>,
    /// The target's statements.
    pub target_statements: Vec<(String, bool)>,
}

/// One job of a list.
#[derive(Debug)]
pub struct JobRow {
    /// The job.
    pub name: String,
    /// Its state.
    pub state: String,
    /// Its last event.
    pub last_event: String,
    /// When its last run began and ended (the local list only shows these).
    pub run: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    /// How many runs it had.
    pub runs: String,
}

/// One event of a list.
#[derive(Debug)]
pub struct EventRow {
    /// The event id.
    pub id: String,
    /// Its type.
    pub event_type: String,
    /// Its state.
    pub state: String,
    /// Its channel.
    pub channel: String,
    /// Who started it.
    pub user: String,
    /// Its response, else its description.
    pub response: String,
}

/// One event in full.
#[derive(Debug)]
pub struct EventView {
    /// The event id.
    pub id: String,
    /// Its type.
    pub event_type: String,
    /// Its state.
    pub state: String,
    /// Who started it.
    pub user: Option<String>,
    /// Its description.
    pub description: Option<String>,
    /// Its job.
    pub job: Option<String>,
    /// When it started.
    pub start: Option<DateTime<Utc>>,
    /// When it finished.
    pub finish: Option<DateTime<Utc>>,
    /// Its response.
    pub response: Option<String>,
    /// Its results: table, result, value.
    pub results: Vec<[String; 3]>,
}

/// One channel of a batch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchRow {
    /// The channel.
    pub channel: String,
    /// Its event, when posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ev_id: Option<String>,
    /// Its job, when posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The event's state (`ACTIVE` while it waits or runs), or `ERROR` when it was not posted.
    pub state: String,
    /// The event's response, or why it was not posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

impl BatchRow {
    /// Whether the channel failed: not posted, or its event ended other than `DONE`.
    pub fn failed(&self) -> bool {
        !matches!(self.state.as_str(), "DONE" | "ACTIVE")
    }
}

/// The use cases of the commands that work on both sides, one method each.
pub trait Backend {
    /// Which side answers.
    fn side(&self) -> Side;
    /// The hub the commands work on.
    fn hub(&self) -> &str;
    /// The hub's state.
    async fn hub_state(&self) -> Result<Shown<HubState>>;
    /// Freezes (`true`) or unfreezes the hub.
    async fn freeze(&self, freeze: bool) -> Result<()>;
    /// The hub's locations.
    async fn locations(&self) -> Result<Shown<Vec<LocationRow>>>;
    /// Tests the connection to a location: the properties it discovered.
    async fn test_location(&self, location: &LocationName) -> Result<Shown<Vec<(String, String)>>>;
    /// The hub's channels.
    async fn channels(&self) -> Result<Shown<Vec<ChannelRow>>>;
    /// One channel.
    async fn channel(&self, channel: &ChannelName) -> Result<Shown<ChannelView>>;
    /// The hub's definitions.
    async fn export(&self) -> Result<Value>;
    /// Deletes a channel's definition.
    async fn delete_channel(&self, channel: &ChannelName) -> Result<()>;
    /// What a refresh would run.
    async fn plan_refresh(&self, args: &RefreshArgs, g: &Global) -> Result<Plan>;
    /// Runs a refresh (locally to its end; on a hub server: posts it, and follows it with
    /// `--wait`), printing its outcome.
    async fn refresh(&self, args: RefreshArgs, g: &Global) -> Result<Outcome>;
    /// What a compare would run.
    async fn plan_compare(&self, args: &CompareArgs) -> Result<Plan>;
    /// Runs a compare, as [`Backend::refresh`] does.
    async fn compare(&self, args: CompareArgs, g: &Global) -> Result<Outcome>;
    /// Activates a channel (locally to the end of the activation, then with `--follow`
    /// replicating until Ctrl-C; on a hub server: posts it, and follows it with `--wait`).
    async fn activate(&self, args: ActivateArgs, g: &Global) -> Result<Outcome>;
    /// Deactivates a channel, as [`Backend::activate`] does.
    async fn deactivate(&self, args: DeactivateArgs, g: &Global) -> Result<Outcome>;
    /// Runs one operation per channel matching a pattern: locally to the end of every job; on a
    /// hub server: posts them, and with `--wait` follows them to their end.
    async fn batch(&self, args: &BatchArgs) -> Result<Vec<BatchRow>>;
    /// The hub's jobs.
    async fn jobs(&self) -> Result<Shown<Vec<JobRow>>>;
    /// Suspends (`true`) or resumes a job.
    async fn suspend_job(&self, job: &JobName, suspend: bool) -> Result<()>;
    /// Cancels the job's active events: their ids.
    async fn cancel_job(&self, job: &JobName) -> Result<Vec<String>>;
    /// Events, newest first (`with_results`: with their results, for `--json`).
    async fn events(
        &self,
        args: &EventListArgs,
        with_results: bool,
    ) -> Result<Shown<Vec<EventRow>>>;
    /// One event with its results.
    async fn event(&self, event: EventId) -> Result<Shown<EventView>>;
    /// An event's log, as lines.
    async fn event_log(&self, event: EventId) -> Result<Shown<Vec<String>>>;
}
