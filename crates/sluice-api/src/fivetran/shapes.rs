//! The JSON shapes of the Fivetran-compatible face as `GET /openapi.json` describes them. Request
//! bodies derive their schema in `connectors.rs`; the shapes here describe what `wire.rs`
//! builds. `tests/openapi.rs` checks real answers against them: these schemas refuse unknown
//! fields, so a field added on one side and not the other fails that test.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value as Json;
use utoipa::ToSchema;

use crate::shapes::Timestamp;

/// Where a connector's sync stands.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub(crate) enum SyncState {
    Scheduled,
    Syncing,
    Paused,
}

/// A connector's status.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectorStatus {
    /// `connected`, `broken` or `incomplete`.
    setup_state: String,
    sync_state: SyncState,
    /// Always `on_schedule`.
    update_state: String,
    /// Whether the running (or first) sync copies every table in full.
    is_historical_sync: bool,
    /// Always `null`.
    #[schema(required = true)]
    rescheduled_for: Option<String>,
    /// Always `ready`.
    schema_status: String,
    /// Always empty.
    tasks: Vec<Json>,
    /// Always empty.
    warnings: Vec<Json>,
}

/// One setup test of a connector.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetupTest {
    title: String,
    /// `PASSED` or `FAILED`.
    status: String,
    message: String,
}

/// Where a connector reads.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceSyncDetails {
    source_location: String,
}

/// A location's properties without secrets, with Fivetran's names for the common ones
/// (`database`, `schema`, `host`, `port`, `user`) and `location`.
#[derive(ToSchema)]
pub(crate) struct LocationConfig(BTreeMap<String, Json>);

/// A connector: a channel with one source and one target location (`id` is `HUB.CHANNEL`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Connector {
    id: String,
    /// The hub.
    group_id: String,
    /// The source location's class.
    service: String,
    service_version: u32,
    /// The channel.
    schema: String,
    connected_by: String,
    created_at: Timestamp,
    #[schema(required = true)]
    succeeded_at: Option<Timestamp>,
    #[schema(required = true)]
    failed_at: Option<Timestamp>,
    paused: bool,
    pause_after_trial: bool,
    /// Minutes between scheduled syncs.
    sync_frequency: u32,
    /// `auto` or `manual`.
    schedule_type: String,
    /// `HH:MM` (UTC).
    daily_sync_time: String,
    status: ConnectorStatus,
    /// The target location.
    config: LocationConfig,
    source_sync_details: SourceSyncDetails,
    setup_tests: Vec<SetupTest>,
}

/// Whether a setting may be changed.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchSettings {
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    reason_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    reason: Option<String>,
}

/// One column of a connector's schema config.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectorColumn {
    name_in_destination: String,
    enabled: bool,
    hashed: bool,
    is_primary_key: bool,
    enabled_patch_settings: PatchSettings,
}

/// Columns by source name.
#[derive(ToSchema)]
pub(crate) struct ConnectorColumns(BTreeMap<String, ConnectorColumn>);

/// One table of a connector's schema config.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectorTable {
    name_in_destination: String,
    enabled: bool,
    /// `SOFT_DELETE`, `HISTORY` or `LIVE`.
    sync_mode: String,
    supports_columns_config: bool,
    enabled_patch_settings: PatchSettings,
    columns: ConnectorColumns,
}

/// One source schema of a connector's schema config.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectorSchema {
    name_in_destination: String,
    enabled: bool,
    tables: BTreeMap<String, ConnectorTable>,
}

/// A connector's schema config: the source's tables merged with the channel's.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SchemaConfig {
    enable_new_by_default: bool,
    /// `ALLOW_ALL`, `ALLOW_COLUMNS` or `BLOCK_ALL`.
    schema_change_handling: String,
    schemas: BTreeMap<String, ConnectorSchema>,
}

/// `GET …/schemas/{schema}/tables/{table}/columns`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ColumnConfig {
    columns: ConnectorColumns,
}

/// A group: a hub.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Group {
    id: String,
    name: String,
    created_at: Timestamp,
}

/// A group's destination: the target location of its first connector.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Destination {
    id: String,
    group_id: String,
    service: String,
    region: String,
    time_zone_offset: String,
    setup_status: String,
    config: LocationConfig,
}

/// A user (every user for a SysAdmin key, none for other keys).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FivetranUser {
    id: String,
    given_name: String,
    /// The user's access level.
    role: String,
    created_at: Timestamp,
    invited: bool,
    active: bool,
}

/// `POST …/schemas/tables/resync`: tables to resync, by schema.
#[derive(ToSchema)]
pub(crate) struct TablesBySchema(BTreeMap<String, Vec<String>>);
