//! The JSON shapes of the event hub, `/health` and the error bodies, as `GET /openapi.json`
//! describes them. These types only describe: the handlers answer with the event hub's own types
//! (`sluice_events::Topic`, `StoredEvent`, …) and `tests/openapi.rs` checks real answers against
//! these schemas, so a field added on one side and not the other fails that test.
#![allow(dead_code)]

use serde_json::Value as Json;
use utoipa::ToSchema;

/// An HVR access level (case-insensitive on input).
#[derive(ToSchema)]
pub(crate) enum AccessLevel {
    None,
    ReadOnly,
    ReadExec,
    ReadExecRefresh,
    ReadWrite,
    HubOwner,
    SysAdmin,
}

/// A time in RFC 3339 with microseconds and `Z` (`2026-11-23T10:00:00.000000Z`).
#[derive(ToSchema)]
#[schema(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")]
pub(crate) struct Timestamp(String);

/// `GET /health` while the repository answers.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Health {
    /// Always `ok`.
    #[schema(pattern = "^ok$")]
    status: String,
    /// The server's version.
    version: String,
    /// Seconds since the server started.
    uptime_seconds: u64,
    /// Hubs in the repository.
    hubs: u64,
}

/// `GET /health` when the repository does not answer (the reason goes to the server's log).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthUnavailable {
    /// Always `unavailable`.
    #[schema(pattern = "^unavailable$")]
    status: String,
    version: String,
    uptime_seconds: u64,
}

/// An error of the Fivetran-compatible face.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FivetranError {
    /// `InvalidInput`, `AuthFailed`, `Forbidden`, `NotFound_<Resource>`, `Conflict`,
    /// `MethodNotAllowed`, …
    code: String,
    /// What went wrong, for people.
    message: String,
}

/// Who a grant names: `user:NAME`, or `level:LEVEL` (that level or higher).
#[derive(ToSchema)]
#[schema(pattern = "^(user:[^\\x00-\\x1f]{1,128}|level:[A-Za-z]+)$")]
pub(crate) struct Principal(String);

/// Who may read (stream, query, export), publish on, and administer a topic (SysAdmins may do
/// all three).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Grants {
    /// Readers (default: `level:ReadOnly`).
    #[serde(default)]
    read: Vec<Principal>,
    /// Publishers (default: `level:ReadWrite`).
    #[serde(default)]
    publish: Vec<Principal>,
    /// Who may change the spec and grants or delete the topic (default: its creator).
    #[serde(default)]
    admin: Vec<Principal>,
}

/// How long a topic keeps its events; none means forever.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Retention {
    /// Events older than this many seconds are removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, nullable = false)]
    max_age_seconds: Option<u64>,
    /// Only the newest this many events are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, nullable = false)]
    max_count: Option<u64>,
}

/// A topic name: letters, digits, `.`, `_` and `-`, not starting with `.`.
#[derive(ToSchema)]
#[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")]
pub(crate) struct TopicName(String);

/// `POST /topics`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTopic {
    name: TopicName,
    /// Free text.
    #[serde(default)]
    description: String,
    /// The JSON Schema every payload must satisfy; none (or `null`) accepts any JSON value.
    #[serde(default)]
    schema: Json,
    #[serde(default)]
    retention: Option<Retention>,
    #[serde(default)]
    grants: Option<Grants>,
}

/// `PUT /topics/{topic}`: the whole spec (a changed schema is a new version).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TopicSpec {
    /// Free text.
    #[serde(default)]
    description: String,
    /// The JSON Schema every payload must satisfy; none (or `null`) accepts any JSON value.
    #[serde(default)]
    schema: Json,
    #[serde(default)]
    retention: Option<Retention>,
    #[serde(default)]
    grants: Option<Grants>,
}

/// A topic.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Topic {
    name: TopicName,
    description: String,
    /// The current schema version; 0 while the topic has never had a schema.
    schema_version: u32,
    /// The current schema (`null`: none).
    #[schema(required = true)]
    schema: Json,
    retention: Retention,
    grants: Grants,
    /// Whether the hub itself publishes on it (clients may not publish, update or delete it).
    builtin: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// Who changed it last.
    updated_by: String,
    /// The sequence number of the newest event ever stored (0: none yet).
    last_seq: u64,
}

/// `GET /topics`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TopicList {
    items: Vec<Topic>,
}

/// One version of a topic's schema.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SchemaVersion {
    /// 1, 2, …
    version: u32,
    /// The schema (`null` when that version removed it).
    #[schema(required = true)]
    schema: Json,
    #[schema(format = DateTime)]
    created_at: String,
    created_by: String,
}

/// `GET /topics/{topic}/schemas`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SchemaVersionList {
    items: Vec<SchemaVersion>,
}

/// An event to publish. With an `id`, publishing is idempotent per topic.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewEvent {
    topic: TopicName,
    /// Dot-separated tokens (`plant1.line2.temp`).
    routing_key: String,
    /// Any JSON value (checked against the topic's schema).
    payload: Json,
    /// The client's id of the event (1 to 128 bytes, no control characters).
    #[serde(default)]
    id: Option<String>,
}

/// `POST /events` with a batch wrapped in an object.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventBatch {
    events: Vec<NewEvent>,
}

/// `POST /events`: one event, an array of events, or `{"events": […]}`.
#[derive(ToSchema)]
#[serde(untagged)]
pub(crate) enum Publish {
    One(NewEvent),
    Many(Vec<NewEvent>),
    Wrapped(EventBatch),
}

/// What publishing one event did.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Published {
    topic: TopicName,
    seq: u64,
    id: String,
    timestamp: Timestamp,
    /// True when an event with this id was already stored (nothing new was stored).
    duplicate: bool,
}

/// `POST /events` with a batch.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishedList {
    items: Vec<Published>,
}

/// A stored event, as streams, history and exports deliver it.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredEvent {
    topic: TopicName,
    /// Its place in the topic: 1, 2, 3, … with no reuse.
    seq: u64,
    id: String,
    routing_key: String,
    timestamp: Timestamp,
    /// Who published it (`null` for the hub itself).
    posted_by: Option<String>,
    payload: Json,
}

/// `GET /events/{topic}/history`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryPage {
    items: Vec<StoredEvent>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// `GET /events/{topic}/last`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventList {
    items: Vec<StoredEvent>,
}

/// `GET /api/latest/lineage` (sluice): tables at databases and the flows between them, over
/// every hub the caller may read.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Lineage {
    /// Tables at databases, by depth, then id.
    nodes: Vec<LineageNode>,
    /// One per channel, table, source location and target location.
    edges: Vec<LineageEdge>,
}

/// A table at a database, however many locations (of however many hubs) reach it.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineageNode {
    /// The database's identity and the table: `postgresql://127.0.0.1:5432/shop#public.orders`.
    id: String,
    /// `postgresql://host:port/database`, `mariadb://host:port/database` or
    /// `sqlite:///canonical/path`; property values as stored (a `${VAR}` stays a reference).
    database: String,
    /// The table's physical name there (`schema.base` when a schema applies).
    table: String,
    locations: Vec<LineageLocation>,
    /// Location names and table: `src, stage: public.orders`.
    label: String,
    /// The longest chain of flows leading here (0: nothing flows in).
    depth: u64,
}

/// A location of a hub.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineageLocation {
    hub: String,
    location: String,
}

/// One table of one channel from a source location to a target location.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineageEdge {
    hub: String,
    channel: String,
    /// The channel's name for the table.
    table: String,
    /// The source node's id.
    source: String,
    /// The target node's id.
    target: String,
    source_location: String,
    target_location: String,
    state: LineageState,
    /// The newest refresh or compare between the two locations; `null`: none yet.
    last_run: Option<LineageRun>,
    /// The capture and integrate jobs' states when the channel is activated, else `null`.
    replication: Option<LineageReplication>,
}

/// A flow's state: the last run's (for its table), a failed or running replication first.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub(crate) enum LineageState {
    Done,
    Failed,
    Running,
    Never,
}

/// Refresh or compare.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub(crate) enum LineageRunKind {
    Refresh,
    Compare,
}

/// The newest refresh or compare of a flow.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineageRun {
    kind: LineageRunKind,
    /// Its event.
    event: Timestamp,
    state: crate::hvr::shapes::EventState,
    /// When it finished, else when it started (RFC 3339).
    #[schema(format = DateTime)]
    time: String,
    /// The table's `Table_State` in that event; `null` when the event did not reach it.
    table_state: Option<String>,
}

/// The replication jobs of a flow's activated channel.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineageReplication {
    /// The capture job at the source; `null` when it does not exist.
    capture: Option<crate::hvr::shapes::JobState>,
    /// The integrate job at the target; `null` when it does not exist.
    integrate: Option<crate::hvr::shapes::JobState>,
}
