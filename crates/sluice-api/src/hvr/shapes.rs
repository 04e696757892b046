//! The JSON shapes of the HVR-compatible API (`/auth/v1/…`, `/api/{version}/…`) as
//! `GET /openapi.json` describes them. Request bodies parsed into typed structs derive their
//! schema where they are defined (`ops.rs`, `hubs.rs`); the shapes here describe what handlers
//! build as JSON (definitions, events, jobs) and the bodies of `auth.rs`. `tests/openapi.rs`
//! checks real answers against them: these schemas refuse unknown fields, so a field added on one
//! side and not the other fails that test.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value as Json;
use utoipa::ToSchema;

use crate::shapes::{AccessLevel, Timestamp};

/// `POST /auth/v1/password`. Other fields are ignored.
#[derive(ToSchema)]
pub(crate) struct Login {
    username: String,
    password: String,
    /// `token` also answers a refresh token (cookies are not supported).
    #[serde(default)]
    #[schema(nullable = false)]
    refresh: Option<RefreshKind>,
}

/// How a refresh token is handed out.
#[derive(ToSchema)]
pub(crate) enum RefreshKind {
    #[schema(rename = "token")]
    Token,
}

/// `POST /auth/v1/refresh` and `POST /auth/v1/revoke`.
#[derive(ToSchema)]
pub(crate) struct RefreshRequest {
    refresh_token: String,
    /// `token` (the default for a refresh) answers a new refresh token; anything else none.
    #[serde(default)]
    #[schema(nullable = false)]
    refresh: Option<String>,
}

/// What a login or a refresh answers.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Tokens {
    /// Always `bearer`.
    #[schema(pattern = "^bearer$")]
    token_type: String,
    /// The JWT to send as `Authorization: Bearer …`.
    access_token: String,
    /// Seconds the access token is valid.
    expires_in: u64,
    /// With `refresh: token`: a refresh token (single use).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    refresh_token: Option<String>,
}

/// `GET /api`: the versions any `/api/{version}/…` path accepts (`latest`, `v0`, `vX.Y.Z…`).
#[derive(ToSchema)]
pub(crate) struct ApiVersions(Vec<String>);

/// `GET /api/{v}/hubserver/clock`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Clock {
    /// The server's time (HVR's name).
    clock: Timestamp,
    /// The same time (sluice's name before it answered `clock`).
    tstamp: Timestamp,
}

/// The caller's access to a hub.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CurrentAccess {
    level: AccessLevel,
}

/// A hub.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Hub {
    props: HubProps,
    current_user_access: CurrentAccess,
}

/// Hubs by name.
#[derive(ToSchema)]
pub(crate) struct Hubs(BTreeMap<String, Hub>);

/// A hub's properties: `Description`, `Created`, `Creator`, `Hub_State` (`LIVE` or `FROZEN`),
/// `Hub_ID`, `Hub_Server_HVR_Version`, `Freeze_Time` while frozen, `Access_List` when the hub has
/// access entries, and any set with `PATCH …/props` (with `?fetch=`: only those named).
#[derive(ToSchema)]
pub(crate) struct HubProps(BTreeMap<String, Json>);

/// Properties a new hub may have (others are refused).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewHubProps {
    #[serde(rename = "Description")]
    #[serde(default)]
    description: Option<String>,
    /// Who may do what on the hub (SysAdmins: everything everywhere).
    #[serde(rename = "Access_List")]
    #[serde(default)]
    #[schema(nullable = false)]
    access_list: Option<Vec<AccessListEntry>>,
}

/// An entry of a hub's `Access_List`: a user's level on the hub (without `user`: the level of
/// every user without an entry of their own). The user must exist; the level is below SysAdmin.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccessListEntry {
    #[serde(default)]
    #[schema(nullable = false)]
    user: Option<String>,
    level: AccessLevel,
}

/// `PATCH …/hubs/{hub}/props`: properties to set; `null` deletes one.
#[derive(ToSchema)]
pub(crate) struct HubPropsChange(BTreeMap<String, Json>);

/// `GET …/query/status`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HubStatus {
    /// `LIVE` or `FROZEN`.
    hub_state: String,
    /// Always empty.
    jobs_over_latency_sla: Vec<String>,
    /// Always `VALID`.
    license: String,
    /// While frozen.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    freeze_time: Option<Timestamp>,
}

/// An action: `{"type": "Restrict", "loc_scope": "TARGET", "table_scope": "*", "params": {…}}`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Action {
    #[serde(rename = "type")]
    action_type: String,
    /// A location, location group or `*` (the default).
    #[serde(default)]
    #[schema(nullable = false)]
    loc_scope: Option<String>,
    /// A table, table group or `*` (the default).
    #[serde(default)]
    #[schema(nullable = false)]
    table_scope: Option<String>,
    #[serde(default)]
    #[schema(nullable = false)]
    params: Option<BTreeMap<String, Json>>,
}

/// A column's attributes.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ColumnAttributes {
    nullable: bool,
}

/// A column as answered.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Column {
    /// Position (1, 2, …; 0 when unknown).
    sequence: u32,
    /// Part of the key (1), when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    key: Option<u32>,
    /// sluice's type (`int32`, `decimal(10,2)`, `varchar(100)`, `timestamptz`, …).
    data_type: Option<String>,
    attributes: ColumnAttributes,
}

/// A column's attributes as HVR sends them (lengths as numbers or digits).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ColumnAttributesIn {
    encoding: Option<String>,
    nullable: Option<bool>,
    charlen: Option<IntOrDigits>,
    bytelen: Option<IntOrDigits>,
    prec: Option<IntOrDigits>,
    scale: Option<IntOrDigits>,
    timeprec: Option<IntOrDigits>,
    dayprec: Option<IntOrDigits>,
    yearprec: Option<IntOrDigits>,
    bitlen: Option<IntOrDigits>,
}

/// A whole number, or one written as digits.
#[derive(ToSchema)]
#[serde(untagged)]
pub(crate) enum IntOrDigits {
    Number(u64),
    /// Digits.
    Digits(String),
}

/// A column as sent: HVR's type names with attributes (`number` + `prec`/`scale`, `varchar` +
/// `charlen`) or sluice's (`decimal(10,2)`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ColumnIn {
    #[serde(default)]
    sequence: Option<u32>,
    /// 1 (or true) for a key column.
    #[serde(default)]
    key: Option<KeyFlag>,
    #[serde(default)]
    distrib_key: Json,
    data_type: String,
    #[serde(default)]
    attributes: Option<ColumnAttributesIn>,
    #[serde(default)]
    nullable: Option<bool>,
}

/// A key flag: a boolean or a key position.
#[derive(ToSchema)]
#[serde(untagged)]
pub(crate) enum KeyFlag {
    Bool(bool),
    Position(u32),
}

/// Columns by name.
#[derive(ToSchema)]
pub(crate) struct Columns(BTreeMap<String, Column>);

/// Columns to set, by name.
#[derive(ToSchema)]
pub(crate) struct ColumnsIn(BTreeMap<String, ColumnIn>);

/// A table as answered (`cols` when fetched).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Table {
    /// The table's name in the databases (default: its name in the channel).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    base_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    table_group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    cols: Option<Columns>,
}

/// Tables by name.
#[derive(ToSchema)]
pub(crate) struct Tables(BTreeMap<String, Table>);

/// A table as sent.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableIn {
    #[serde(default)]
    base_name: Option<String>,
    #[serde(default)]
    table_group: Option<String>,
    #[serde(default)]
    cols: Option<ColumnsIn>,
}

/// Tables to set, by name.
#[derive(ToSchema)]
pub(crate) struct TablesIn(BTreeMap<String, TableIn>);

/// `POST …/channels/{channel}/tables`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTable {
    /// The new table's name.
    #[schema(pattern = "^[a-z_][a-z0-9_]{0,123}$")]
    table: String,
    #[serde(default)]
    base_name: Option<String>,
    #[serde(default)]
    table_group: Option<String>,
    #[serde(default)]
    cols: Option<ColumnsIn>,
}

/// `PATCH …/tables/{table}`: `null` removes a setting.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableChange {
    #[serde(default)]
    base_name: Option<String>,
    #[serde(default)]
    table_group: Option<String>,
}

/// `POST …/tables_delete`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableNames {
    tables: Vec<String>,
}

/// A location group as answered (`members` when fetched).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocGroup {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    members: Option<Vec<String>>,
}

/// Location groups by name.
#[derive(ToSchema)]
pub(crate) struct LocGroups(BTreeMap<String, LocGroup>);

/// A location group as sent in a channel: `{"members": […]}` or the list itself.
#[derive(ToSchema)]
#[serde(untagged)]
pub(crate) enum LocGroupIn {
    Object(Members),
    List(Vec<String>),
}

/// Members of a location group.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Members {
    #[serde(default)]
    members: Vec<String>,
}

/// `PUT`/`PATCH …/loc_groups/{group}(/members)`; `loc_group` is ignored.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MembersIn {
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    loc_group: Option<String>,
}

/// `POST …/channels/{channel}/loc_groups`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewLocGroup {
    /// The new group's name.
    #[schema(pattern = "^[A-Z_][A-Z0-9_]{0,23}$")]
    loc_group: String,
    #[serde(default)]
    members: Vec<String>,
}

/// A channel as answered (parts as fetched).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Channel {
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    loc_groups: Option<LocGroups>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    tables: Option<Tables>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    actions: Option<Vec<Action>>,
}

/// Channels by name.
#[derive(ToSchema)]
pub(crate) struct Channels(BTreeMap<String, Channel>);

/// A channel as sent.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelIn {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    loc_groups: Option<BTreeMap<String, LocGroupIn>>,
    #[serde(default)]
    tables: Option<TablesIn>,
    #[serde(default)]
    actions: Option<Vec<Action>>,
}

/// `POST …/definition/channels`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewChannel {
    /// The new channel's name.
    #[schema(pattern = "^[a-z_][a-z0-9_]{0,11}$")]
    channel: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    loc_groups: Option<BTreeMap<String, LocGroupIn>>,
    #[serde(default)]
    tables: Option<TablesIn>,
    #[serde(default)]
    actions: Option<Vec<Action>>,
}

/// `PATCH …/channels/{channel}`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelChange {
    #[serde(default)]
    description: Option<String>,
}

/// `PATCH`/`PUT …/actions` and `POST …/actions_delete`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionList {
    actions: Vec<Action>,
}

/// Location properties: `Class` (`postgresql`, `mariadb`, `sqlite`), `Database_Host`, `Database_Port`,
/// `Database_Name`, `Database_User`, `Database_Password` (stored sealed, never answered), ….
#[derive(ToSchema)]
pub(crate) struct LocProps(BTreeMap<String, Json>);

/// A location as answered (with `?fetch=loc_props`, or one location: its properties; secrets
/// left out).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Location {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    props: Option<LocProps>,
    /// The location's actions (no scopes).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    actions: Option<Vec<UnscopedAction>>,
}

/// Locations by name.
#[derive(ToSchema)]
pub(crate) struct Locations(BTreeMap<String, Location>);

/// A location as sent (its `actions` are stored apart and answered as stored).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocationIn {
    #[serde(default)]
    props: Option<LocProps>,
    #[serde(default)]
    actions: Option<Vec<UnscopedAction>>,
    #[serde(default)]
    description: Option<String>,
}

/// `POST …/definition/locs`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewLocation {
    /// The new location's name.
    #[schema(pattern = "^[a-z_][a-z0-9_]{0,11}$")]
    loc: String,
    #[serde(default)]
    props: Option<LocProps>,
    #[serde(default)]
    actions: Option<Vec<UnscopedAction>>,
    #[serde(default)]
    description: Option<String>,
}

/// `PATCH …/locs/{loc}/props`: properties to set; `null` deletes one.
#[derive(ToSchema)]
pub(crate) struct LocPropsChange(BTreeMap<String, Json>);

/// `GET …/definition`: the parts asked for with `?fetch=` (all by default).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Definition {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    locs: Option<Locations>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    channels: Option<Channels>,
    /// The hub's actions (no scopes).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    hub_actions: Option<Vec<UnscopedAction>>,
}

/// `POST …/definition/import`: changes applied in one transaction.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Import {
    /// Each `{"KIND": {…}}` with KIND one of HVR's changes of the definitions (locations and
    /// their props, channels, location groups and members, tables, columns, channel actions,
    /// renames); hub and location actions have their own operations.
    changes: Vec<ImportChange>,
    /// `abort` (the default) or `replace`.
    #[serde(default)]
    #[schema(nullable = false)]
    on_add_exists: Option<OnAddExists>,
    /// Kinds of change the import may contain (others are refused).
    #[serde(default)]
    #[schema(nullable = false)]
    allowed_changes: Option<Vec<String>>,
    /// HVR's export header (accepted, not used).
    #[serde(default)]
    #[schema(nullable = false)]
    export_header: Option<BTreeMap<String, Json>>,
}

/// One change of an import: an object with one key, the kind of change.
pub(crate) struct ImportChange;

impl utoipa::PartialSchema for ImportChange {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Object)
            .min_properties(Some(1))
            .max_properties(Some(1))
            .description(Some("{\"KIND\": {…the change…}}"))
            .into()
    }
}

impl ToSchema for ImportChange {}

/// What an import does when something it adds exists.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub(crate) enum OnAddExists {
    Abort,
    Replace,
}

/// `POST …/definition/import`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Imported {
    /// How many changes of each kind (`add_channel`, `rename_loc`, …).
    change_counts: BTreeMap<String, u64>,
}

/// `POST …/rename` and `POST …/locs/{loc}/copy`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewName {
    /// The new name.
    new_name: String,
}

/// `POST …/cols_delete`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ColNames {
    cols: Vec<String>,
}

/// `POST …/members_delete`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemberNames {
    members: Vec<String>,
}

/// `POST …/locs/{loc}/props_delete`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PropNames {
    props: Vec<String>,
}

/// An action of the hub or of a location (no scopes).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnscopedAction {
    #[serde(rename = "type")]
    action_type: String,
    #[serde(default)]
    #[schema(nullable = false)]
    params: Option<BTreeMap<String, Json>>,
}

/// `PATCH`/`PUT …/hub_actions`, `…/locs/{loc}/actions` and their `…_delete`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnscopedActionList {
    actions: Vec<UnscopedAction>,
}

/// One side of `action_modify` / `action_replace`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionRef {
    /// The channel (absent: a hub action, or a location's when `loc_scope` names it).
    #[serde(default)]
    #[schema(nullable = false)]
    channel: Option<String>,
    #[serde(default)]
    #[schema(nullable = false)]
    loc_scope: Option<String>,
    #[serde(default)]
    #[schema(nullable = false)]
    table_scope: Option<String>,
    #[serde(default)]
    #[schema(nullable = false)]
    params: Option<BTreeMap<String, Json>>,
}

/// `POST …/definition/action_modify` and `…/action_replace`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionChange {
    #[serde(rename = "type")]
    action_type: String,
    old: ActionRef,
    new: ActionRef,
}

/// `GET …/definition/change/events`: definition changes in HVR's form, oldest first.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeEvents {
    /// Each `{"KIND": {…}}`.
    changes: Vec<ImportChange>,
}

/// A job posted by a refresh or compare.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Posted {
    /// The event that tracks the job.
    posted_ev_id: Timestamp,
    /// The job (`CHANNEL-refr-SOURCE-TARGET`, `CHANNEL-cmp-SOURCE-TARGET`).
    job: String,
    /// Pending events of the same job this one replaced.
    canceled_ev_ids: Vec<Timestamp>,
}

/// `POST …/batch/{verb}` (a sluice extension): what was posted per chosen channel.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchPosted {
    /// At most this many of the batch's jobs run at once; the others wait, posted.
    parallel: u32,
    /// Per channel matching the pattern, in the hub's order.
    channels: Vec<BatchChannel>,
}

/// One channel of a batch: its event and job, or why it was not posted.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchChannel {
    channel: String,
    /// The channel's event (posted).
    #[serde(default)]
    #[schema(nullable = false)]
    ev_id: Option<Timestamp>,
    /// The channel's job (posted).
    #[serde(default)]
    #[schema(nullable = false)]
    job: Option<String>,
    /// Pending events of the same job this one replaced (posted).
    #[serde(default)]
    #[schema(nullable = false)]
    canceled_ev_ids: Option<Vec<Timestamp>>,
    /// Why the channel was not posted.
    #[serde(default)]
    #[schema(nullable = false)]
    error: Option<String>,
    /// The kind of that error: `invalid`, `not_found`, `conflict` (its job already runs),
    /// `failed`, …
    #[serde(default)]
    #[schema(nullable = false)]
    kind: Option<String>,
}

/// How often a planned statement runs.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum Repeat {
    Once,
    PerRow,
}

/// One statement of a plan.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlannedStatement {
    /// The SQL, with parameters as placeholders and no secrets.
    sql: String,
    repeat: Repeat,
}

/// One table of a plan.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlannedTable {
    table: String,
    source_table: String,
    target_table: String,
    /// What the job does with the table, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    action: Option<String>,
    source_statements: Vec<PlannedStatement>,
    target_statements: Vec<PlannedStatement>,
}

/// What a refresh or compare would do (`dry_run: true`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobPlan {
    job: String,
    source: String,
    target: String,
    tables: Vec<PlannedTable>,
}

/// `GET …/tables_results_ids`: by event id, the tables it has results for.
#[derive(ToSchema)]
pub(crate) struct ResultsIds(BTreeMap<String, Vec<String>>);

/// A job's state.
#[derive(ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub(crate) enum JobState {
    Pending,
    Running,
    Failed,
    Retry,
    Suspend,
    Done,
}

/// A job.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Job {
    state: JobState,
    /// Always 0.
    num_retries: u32,
    /// With `fetch=num_runs` (sluice).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    num_runs: Option<u64>,
    /// With `fetch=last_ev_id` (sluice).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    last_ev_id: Option<Timestamp>,
    /// With `fetch=last_run` (sluice).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    last_run_begin: Option<Timestamp>,
    /// With `fetch=last_run` (sluice).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    last_run_end: Option<Timestamp>,
    /// When a failed job failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    log_job_err_tstamp: Option<Timestamp>,
}

/// Jobs by name.
#[derive(ToSchema)]
pub(crate) struct Jobs(BTreeMap<String, Job>);

/// Events cancelled by deleting jobs.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Canceled {
    canceled_ev_ids: Vec<Timestamp>,
}

/// An event's state.
#[derive(ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub(crate) enum EventState {
    Active,
    Done,
    Failed,
    Canceled,
}

/// One result of an event (`Table_State`, `Source_Rows_Used`, `Rows_Which_Differ`, …).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    table: Option<String>,
    result: String,
    /// HVR keeps results as text.
    value: String,
}

/// An event.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Event {
    /// `Refresh`, `Compare`, `Definition_Change`, `Hub_Create`, `Job_Start`, ….
    #[serde(rename = "type")]
    event_type: String,
    user: String,
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    loc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    loc2: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    job: Option<String>,
    state: EventState,
    num_retries: u32,
    /// The final response line, once finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    response: Option<String>,
    start_tstamp: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    finish_tstamp: Option<Timestamp>,
    /// The request, as a JSON text.
    body: String,
    /// With `?fetch_results=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    results: Option<Vec<EventResult>>,
}

/// Events by id, newest first.
#[derive(ToSchema)]
pub(crate) struct Events(BTreeMap<String, Event>);

/// What a location test found.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocationTest {
    /// Properties the connection reported (`Database_Version`, `Table_Count`, …).
    discovered_props: BTreeMap<String, Json>,
}

/// `POST …/definition/plan` and `POST …/definition/apply` (sluice extensions: definitions as
/// code).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DefinitionPlanBody {
    /// The definitions document in the file schema (`hub`, `locations`, `channels`), an
    /// environment's overlay already rendered.
    document: BTreeMap<String, Json>,
    /// Remove the hub's locations and channels the document does not have.
    #[serde(default)]
    #[schema(nullable = false)]
    prune: Option<bool>,
    /// Where the document came from (a file name), for the audit event.
    #[serde(default)]
    #[schema(nullable = false)]
    source: Option<String>,
    /// `apply` only, and required there: the definitions version the plan being applied was made
    /// against (`null` when the hub did not exist). A hub at another version refuses the apply.
    #[serde(default)]
    base_version: Option<i64>,
}
