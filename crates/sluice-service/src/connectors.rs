//! Connectors: the Fivetran view of channels, and the use cases behind the `/v1` face and the
//! dashboard's connector buttons.
//!
//! A *connector* is a channel with exactly two location groups of one member each: one source
//! and one target location. Its id is `<hub>.<channel>` (hub and channel names never contain a
//! dot, so the id is URL-safe and splits unambiguously). A *group* is a hub; a *destination* is
//! the target location of a group's connectors.
//!
//! A sync is a refresh job of the channel from its source to its target through the normal job
//! path, so it posts a `Refresh` event, shows in the HVR events and jobs, and is published on
//! the event hub. The connector's `succeeded_at`, `failed_at` and `sync_state` are derived from
//! the events of that job, which the repository finishes (event state, finish time and job state)
//! in one transaction: the end of a sync moves `sync_state` off `syncing` in the same change that
//! moves `succeeded_at`/`failed_at`. Those two are made strictly increasing across syncs (a finish
//! that is not later than the previous one is shown one microsecond after it). A sync a cancel
//! ended moves neither (a forced sync replacing a running one must not look like a failure to a
//! poller); a sync whose hub process died is ended `FAILED` by any live process and moves
//! `failed_at`.
//!
//! The schema config is discovered from the source location by introspection and merged with the
//! channel's tables. A disabled schema or table stays in the channel but is left out of syncs; a
//! disabled column becomes a `ColumnProperties Absent` action (not copied); enabling a discovered
//! table that is not in the channel adds it to the channel through the normal definition edit
//! path (compiled and validated like a definitions file). Settings that have no place in the
//! channel definition (paused, schedule, enabled flags, last setup tests) live in the
//! repository's connector settings.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sluice_model::definition::{
    ActionKind, ActionType, Channel, HubState, Location, LocationClass, PropValue, physical_table,
};
use sluice_model::refresh::RefreshModeKind;
use sluice_model::{
    AccessLevel, ChannelName, ColumnName, EventId, EventState, EventType, HubName, JobName,
    JobState, LocationName, SchemaName, TableName,
};
use sluice_repo::{ApiKeyRecord, ConnectorRecord, EventFilter, EventRecord, RepoErrorKind};

use crate::auth::{Identity, token_hash};
use crate::jobs::{ModeOverride, RefreshCommand};
use crate::{HubService, Result, ServiceError, ServiceErrorKind};

/// The sync frequencies (minutes) a connector may have.
pub const SYNC_FREQUENCIES: &[u32] = &[1, 5, 15, 30, 60, 120, 180, 360, 480, 720, 1440];

/// How many of a connector's newest sync events its state is derived from.
const HISTORY: usize = 50;

/// The id of a connector: `<hub>.<channel>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectorId {
    /// The hub (the connector's group).
    pub hub: HubName,
    /// The channel.
    pub channel: ChannelName,
}

impl ConnectorId {
    /// The connector of `channel` in `hub`.
    pub fn new(hub: HubName, channel: ChannelName) -> Self {
        ConnectorId { hub, channel }
    }
}

impl fmt::Display for ConnectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.hub, self.channel)
    }
}

impl Serialize for ConnectorId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for ConnectorId {
    type Err = ServiceError;

    /// Parses `<hub>.<channel>`; anything else is a connector that does not exist.
    fn from_str(s: &str) -> Result<Self> {
        let missing = || {
            ServiceError::not_found(format!(
                "connector {s:?} does not exist (connector ids are HUB.CHANNEL)"
            ))
        };
        let (hub, channel) = s.split_once('.').ok_or_else(missing)?;
        Ok(ConnectorId {
            hub: HubName::new(hub).map_err(|_| missing())?,
            channel: ChannelName::new(channel).map_err(|_| missing())?,
        })
    }
}

/// Where a connector's sync stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// Waiting for its next (scheduled or explicit) sync.
    Scheduled,
    /// A sync is running (or posted and about to run).
    Syncing,
    /// Paused: no sync starts.
    Paused,
}

impl SyncState {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Scheduled => "scheduled",
            SyncState::Syncing => "syncing",
            SyncState::Paused => "paused",
        }
    }
}

/// A connector as the use cases see it.
#[derive(Debug, Clone, Serialize)]
pub struct Connector {
    /// Its id.
    pub id: ConnectorId,
    /// The source location (sealed secrets left out).
    pub source: Location,
    /// The target location (sealed secrets left out).
    pub target: Location,
    /// The refresh job a sync runs.
    pub job: JobName,
    /// Its stored settings.
    pub settings: ConnectorRecord,
    /// End of the last successful sync.
    pub succeeded_at: Option<DateTime<Utc>>,
    /// End of the last failed sync.
    pub failed_at: Option<DateTime<Utc>>,
    /// Where its sync stands.
    pub sync_state: SyncState,
    /// The event of the running sync.
    pub running: Option<EventId>,
    /// Whether the running (or first) sync copies every table in full.
    pub is_historical_sync: bool,
    /// When the last sync started.
    pub last_sync_start: Option<DateTime<Utc>>,
}

/// A change of a connector's settings; `None` keeps a setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ConnectorChange {
    /// Pause (`true`) or resume.
    pub paused: Option<bool>,
    /// `auto` or `manual`.
    pub schedule_type: Option<String>,
    /// Minutes between scheduled syncs, one of [`SYNC_FREQUENCIES`].
    pub sync_frequency: Option<u32>,
    /// `HH:MM` (UTC) of the daily sync.
    pub daily_sync_time: Option<String>,
}

/// What a sync request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncOutcome {
    /// Whether a new sync was started (`false`: one was already running and was kept).
    pub started: bool,
    /// The event of the new (or the kept running) sync.
    pub event: EventId,
    /// The running sync that was cancelled to make room for this one.
    pub canceled: Option<EventId>,
}

/// Which tables a sync copies, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncScope {
    /// Every enabled table, each in its configured refresh mode.
    Normal,
    /// A historical resync: every enabled table with `full_replace`.
    Historical,
    /// These tables (`schema` → tables, source names) with `full_replace`.
    Tables(BTreeMap<String, Vec<String>>),
}

/// How `reload` treats tables and columns it discovers for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExcludeMode {
    /// Keep what is configured; new tables follow `schema_change_handling` (enabled under
    /// `ALLOW_ALL`, disabled otherwise).
    Preserve,
    /// Enable every new table.
    Include,
    /// Leave every new table disabled.
    Exclude,
}

impl FromStr for ExcludeMode {
    type Err = ServiceError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "PRESERVE" => Ok(ExcludeMode::Preserve),
            "INCLUDE" => Ok(ExcludeMode::Include),
            "EXCLUDE" => Ok(ExcludeMode::Exclude),
            other => Err(ServiceError::invalid(format!(
                "exclude_mode {other:?} is not one of PRESERVE, INCLUDE, EXCLUDE"
            ))),
        }
    }
}

/// A connector's schema config: source schemas, tables and columns, merged with the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaConfig {
    /// `ALLOW_ALL`, `ALLOW_COLUMNS` or `BLOCK_ALL`.
    pub schema_change_handling: String,
    /// By source schema name.
    pub schemas: BTreeMap<String, SchemaInfo>,
}

/// One source schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaInfo {
    /// Whether its tables are synced.
    pub enabled: bool,
    /// The schema its tables land in on the target.
    pub name_in_destination: String,
    /// By source table name.
    pub tables: BTreeMap<String, TableInfo>,
}

/// One source table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableInfo {
    /// Whether it is synced (it is in the channel and not disabled).
    pub enabled: bool,
    /// Its channel table, when it is in the channel.
    pub channel_table: Option<TableName>,
    /// The table it lands in on the target.
    pub name_in_destination: String,
    /// `SOFT_DELETE`, `HISTORY` or `LIVE` (recorded; a sync always mirrors the source).
    pub sync_mode: String,
    /// By source column name (empty when the table cannot be read from the source).
    pub columns: BTreeMap<String, ColumnInfo>,
}

/// One source column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnInfo {
    /// Whether it is copied.
    pub enabled: bool,
    /// Whether it belongs to the primary key (such columns cannot be disabled).
    pub is_primary_key: bool,
    /// The column it lands in on the target.
    pub name_in_destination: String,
}

/// A change of the schema config; `None` keeps a setting. Names are source names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaChange {
    /// New `schema_change_handling`.
    pub schema_change_handling: Option<String>,
    /// By schema.
    pub schemas: BTreeMap<String, SchemaPatch>,
}

/// A change of one schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaPatch {
    /// Enable or disable the schema.
    pub enabled: Option<bool>,
    /// By table.
    pub tables: BTreeMap<String, TablePatch>,
}

/// A change of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TablePatch {
    /// Enable or disable the table.
    pub enabled: Option<bool>,
    /// `SOFT_DELETE`, `HISTORY` or `LIVE`.
    pub sync_mode: Option<String>,
    /// Enable or disable columns, by name.
    pub columns: BTreeMap<String, Option<bool>>,
}

/// One setup test of a connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupTest {
    /// What was tested.
    pub title: String,
    /// `PASSED` or `FAILED`.
    pub status: String,
    /// What happened.
    pub message: String,
}

/// The settings the service keeps per schema and table (the connector's `schema_overlay`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Overlay {
    #[serde(default)]
    schemas: BTreeMap<String, SchemaOverlay>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SchemaOverlay {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    /// Every table known here (seen by a reload or changed); absent tables are new.
    #[serde(default)]
    tables: BTreeMap<String, TableOverlay>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct TableOverlay {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sync_mode: Option<String>,
}

/// A channel that is a connector, with its two locations.
struct Resolved {
    id: ConnectorId,
    channel: Channel,
    source: Location,
    target: Location,
}

/// The one source and one target location of a channel that is a connector, or why it is not.
fn connector_ends(channel: &Channel) -> std::result::Result<(LocationName, LocationName), String> {
    let groups: Vec<(&sluice_model::LocGroupName, &Vec<LocationName>)> =
        channel.loc_groups.iter().collect();
    let [(g1, m1), (g2, m2)] = groups.as_slice() else {
        return Err(format!(
            "channel {} has {} location groups; a connector has exactly two (source and target)",
            channel.name,
            groups.len()
        ));
    };
    let ([a], [b]) = (m1.as_slice(), m2.as_slice()) else {
        return Err(format!(
            "channel {}: a connector's location groups have one member each",
            channel.name
        ));
    };
    let has = |loc: &LocationName, action: ActionType| {
        channel.locations_with_action(action).contains(&loc)
    };
    let named_source = |g: &sluice_model::LocGroupName| {
        let g = g.as_str().to_ascii_uppercase();
        g == "SOURCE" || g == "SRC"
    };
    if has(a, ActionType::Capture) && !has(b, ActionType::Capture)
        || has(b, ActionType::Integrate) && !has(a, ActionType::Integrate)
    {
        return Ok((a.clone(), b.clone()));
    }
    if has(b, ActionType::Capture) && !has(a, ActionType::Capture)
        || has(a, ActionType::Integrate) && !has(b, ActionType::Integrate)
    {
        return Ok((b.clone(), a.clone()));
    }
    if named_source(g1) && !named_source(g2) {
        return Ok((a.clone(), b.clone()));
    }
    if named_source(g2) && !named_source(g1) {
        return Ok((b.clone(), a.clone()));
    }
    Err(format!(
        "channel {}: cannot tell its source from its target (give the source a Capture action or name its group SOURCE)",
        channel.name
    ))
}

/// The schema a location's unqualified tables live in.
fn default_schema_name(location: &Location) -> String {
    if let Some(schema) = location.prop("Database_Schema") {
        return schema.to_text();
    }
    match location.class {
        LocationClass::Postgresql => "public".into(),
        LocationClass::Sqlite => "main".into(),
        _ => location
            .prop("Database_Name")
            .map(PropValue::to_text)
            .unwrap_or_else(|| "default".into()),
    }
}

fn check_handling(value: &str) -> Result<()> {
    match value {
        "ALLOW_ALL" | "ALLOW_COLUMNS" | "BLOCK_ALL" => Ok(()),
        other => Err(ServiceError::invalid(format!(
            "schema_change_handling {other:?} is not one of ALLOW_ALL, ALLOW_COLUMNS, BLOCK_ALL"
        ))),
    }
}

fn check_sync_mode(value: &str) -> Result<()> {
    match value {
        "SOFT_DELETE" | "HISTORY" | "LIVE" => Ok(()),
        other => Err(ServiceError::invalid(format!(
            "sync_mode {other:?} is not one of SOFT_DELETE, HISTORY, LIVE"
        ))),
    }
}

/// Parses `HH:MM` (a full hour or half hour is not required).
fn parse_daily_time(value: &str) -> Result<NaiveTime> {
    NaiveTime::parse_from_str(value, "%H:%M").map_err(|_| {
        ServiceError::invalid(format!(
            "daily_sync_time {value:?} is not a time of day as HH:MM"
        ))
    })
}

/// Whether a connector with `settings`, whose last sync started at `last_start`, is due at
/// `now`: every `sync_frequency` minutes after the last start, or (at 1440 minutes) once a day
/// at `daily_sync_time` UTC. A connector that never synced is due at once.
pub fn sync_due(
    settings: &ConnectorRecord,
    last_start: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    if settings.paused || settings.schedule_type != "auto" {
        return false;
    }
    let Some(last) = last_start else {
        return true;
    };
    if settings.sync_frequency >= 1440 {
        let time = parse_daily_time(&settings.daily_sync_time).unwrap_or(NaiveTime::MIN);
        let mut slot = now.date_naive().and_time(time).and_utc();
        if slot > now {
            slot -= TimeDelta::days(1);
        }
        return last < slot;
    }
    now >= last + TimeDelta::minutes(i64::from(settings.sync_frequency))
}

/// `succeeded_at`, `failed_at` of finished sync events (newest first), each finish made strictly
/// later than every finish before it. A sync a cancel ended moves neither, also when it ended
/// `FAILED` because a table had committed before the cancel.
fn sync_ends(events: &[EventRecord]) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let (mut succeeded, mut failed) = (None, None);
    let mut latest: Option<DateTime<Utc>> = None;
    for e in events.iter().rev() {
        let (Some(finish), true) = (
            e.finish,
            matches!(e.state, EventState::Done | EventState::Failed) && !e.canceled,
        ) else {
            continue;
        };
        let at = match latest {
            Some(prev) if finish <= prev => prev + TimeDelta::microseconds(1),
            _ => finish,
        };
        latest = Some(at);
        if e.state == EventState::Done {
            succeeded = Some(at);
        } else {
            failed = Some(at);
        }
    }
    (succeeded, failed)
}

impl HubService {
    async fn resolve_connector(&self, id: &ConnectorId) -> Result<Resolved> {
        let missing =
            |why: String| ServiceError::not_found(format!("connector {id} does not exist: {why}"));
        let channel = self
            .definition_store()
            .channel(&id.hub, &id.channel)
            .await?
            .ok_or_else(|| {
                missing(format!(
                    "there is no channel {} in hub {}",
                    id.channel, id.hub
                ))
            })?;
        let (source, target) = connector_ends(&channel).map_err(missing)?;
        let source = self.location(&id.hub, &source).await?;
        let target = self.location(&id.hub, &target).await?;
        self.sync_wallet().await?;
        Ok(Resolved {
            id: id.clone(),
            channel,
            source: crate::admin::redact_location(&source),
            target: crate::admin::redact_location(&target),
        })
    }

    async fn settings(&self, id: &ConnectorId) -> Result<ConnectorRecord> {
        Ok(self
            .settings_store()
            .connector_or_insert(&ConnectorRecord::new(
                id.hub.clone(),
                id.channel.clone(),
                Utc::now(),
            ))
            .await?)
    }

    async fn view(&self, r: Resolved, settings: ConnectorRecord) -> Result<Connector> {
        let job = JobName::refresh(&r.channel.name, &r.source.name, &r.target.name);
        let events = self
            .job_store()
            .events(&EventFilter {
                hub: Some(r.id.hub.clone()),
                jobs: vec![job.clone()],
                types: vec![EventType::Refresh],
                max_events: Some(HISTORY),
                ..Default::default()
            })
            .await?;
        let (succeeded_at, failed_at) = sync_ends(&events);
        let running = events
            .first()
            .filter(|e| e.state == EventState::Active)
            .map(|e| e.id);
        let sync_state = match (running, settings.paused) {
            (Some(_), _) => SyncState::Syncing,
            (None, true) => SyncState::Paused,
            (None, false) => SyncState::Scheduled,
        };
        let historical_run = events.first().is_some_and(|e| {
            e.state == EventState::Active
                && e.body
                    .pointer("/command/mode")
                    .and_then(|m| ModeOverride::deserialize(m).ok())
                    .is_some_and(|m| m.mode == Some(RefreshModeKind::FullReplace))
                && e.body.pointer("/connector/historical") == Some(&Json::Bool(true))
        });
        let change_capture_run = events.first().is_some_and(|e| {
            e.body.pointer("/connector/change_capture") == Some(&Json::Bool(true))
        });
        Ok(Connector {
            id: r.id,
            source: r.source,
            target: r.target,
            job,
            last_sync_start: events.first().map(|e| e.start),
            is_historical_sync: historical_run
                || (running.is_some() && succeeded_at.is_none() && !change_capture_run),
            settings,
            succeeded_at,
            failed_at,
            sync_state,
            running,
        })
    }

    /// Stores changed settings and posts a `Connector_Change` audit event naming the caller.
    async fn store_settings(
        &self,
        settings: &ConnectorRecord,
        what: &str,
        body: Json,
    ) -> Result<()> {
        self.settings_store().put_connector(settings).await?;
        let id = ConnectorId::new(settings.hub.clone(), settings.channel.clone());
        self.job_store()
            .post_event(sluice_repo::NewEvent {
                hub: settings.hub.clone(),
                event_type: EventType::ConnectorChange,
                user: self.user().to_owned(),
                description: format!("connector {id}: {what} (by {})", self.user()),
                channel: Some(settings.channel.clone()),
                loc: None,
                loc2: None,
                job: None,
                state: EventState::Done,
                body,
            })
            .await?;
        Ok(())
    }

    /// Every connector of `hub` (or of every hub), by hub and channel. Channels that are not
    /// connectors are left out.
    pub async fn list_connectors(&self, hub: Option<&HubName>) -> Result<Vec<Connector>> {
        let hubs = match hub {
            Some(h) => vec![self.hub(h).await?.hub.name],
            None => self
                .definition_store()
                .hubs()
                .await?
                .into_iter()
                .map(|h| h.hub.name)
                .collect(),
        };
        let mut out = Vec::new();
        for hub in hubs {
            for channel in self.definition_store().channels(&hub).await? {
                if connector_ends(&channel).is_err() {
                    continue;
                }
                let id = ConnectorId::new(hub.clone(), channel.name.clone());
                match self.resolve_connector(&id).await {
                    Ok(r) => {
                        let settings = self.settings(&id).await?;
                        out.push(self.view(r, settings).await?);
                    }
                    Err(e) if e.kind() == ServiceErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// One connector. `NotFound` when the channel does not exist or is not a connector.
    pub async fn get_connector(&self, id: &ConnectorId) -> Result<Connector> {
        let r = self.resolve_connector(id).await?;
        let settings = self.settings(id).await?;
        self.view(r, settings).await
    }

    /// Changes a connector's pause and schedule settings. Every value is checked first; an
    /// invalid one changes nothing.
    pub async fn update_connector(
        &self,
        id: &ConnectorId,
        change: &ConnectorChange,
    ) -> Result<Connector> {
        let r = self.resolve_connector(id).await?;
        let mut settings = self.settings(id).await?;
        if let Some(t) = &change.schedule_type {
            if t != "auto" && t != "manual" {
                return Err(ServiceError::invalid(format!(
                    "schedule_type {t:?} is not one of auto, manual"
                )));
            }
            settings.schedule_type = t.clone();
        }
        if let Some(f) = change.sync_frequency {
            if !SYNC_FREQUENCIES.contains(&f) {
                return Err(ServiceError::invalid(format!(
                    "sync_frequency {f} is not one of {SYNC_FREQUENCIES:?} (minutes)"
                )));
            }
            settings.sync_frequency = f;
        }
        if let Some(t) = &change.daily_sync_time {
            let time = parse_daily_time(t)?;
            settings.daily_sync_time = time.format("%H:%M").to_string();
        }
        if let Some(p) = change.paused {
            settings.paused = p;
        }
        let body = serde_json::json!({
            "paused": change.paused, "schedule_type": change.schedule_type,
            "sync_frequency": change.sync_frequency, "daily_sync_time": change.daily_sync_time,
        });
        self.store_settings(&settings, "settings changed", body)
            .await?;
        self.view(r, settings).await
    }

    /// Pauses (`true`) or resumes a connector.
    pub async fn set_connector_paused(&self, id: &ConnectorId, paused: bool) -> Result<Connector> {
        self.update_connector(
            id,
            &ConnectorChange {
                paused: Some(paused),
                ..Default::default()
            },
        )
        .await
    }

    /// Sets a connector's schedule: `schedule_type` (`auto` | `manual`), and optionally the
    /// frequency in minutes and the daily sync time.
    pub async fn set_connector_schedule(
        &self,
        id: &ConnectorId,
        schedule_type: &str,
        sync_frequency: Option<u32>,
        daily_sync_time: Option<&str>,
    ) -> Result<Connector> {
        self.update_connector(
            id,
            &ConnectorChange {
                schedule_type: Some(schedule_type.to_owned()),
                sync_frequency,
                daily_sync_time: daily_sync_time.map(str::to_owned),
                ..Default::default()
            },
        )
        .await
    }

    /// Starts a normal sync (each enabled table in its configured refresh mode). With `force` a
    /// running sync is cancelled and a new one started; without, a running sync is kept and
    /// nothing new starts. Refused when the connector is paused or its hub frozen.
    pub async fn sync_connector(&self, id: &ConnectorId, force: bool) -> Result<SyncOutcome> {
        self.start_sync(id, SyncScope::Normal, force).await
    }

    /// Starts a resync: with `scope` (`schema` → tables) those tables, else a historical resync
    /// of every enabled table; both with `full_replace`. A running sync is replaced.
    pub async fn resync_connector(
        &self,
        id: &ConnectorId,
        scope: Option<BTreeMap<String, Vec<String>>>,
    ) -> Result<SyncOutcome> {
        let scope = match scope {
            Some(tables) if !tables.is_empty() => SyncScope::Tables(tables),
            _ => SyncScope::Historical,
        };
        self.start_sync(id, scope, true).await
    }

    /// Resyncs tables (`schema` → tables, source names) with `full_replace`; a running sync is
    /// replaced. Unknown schemas or tables are `NotFound`, disabled tables `Invalid`.
    pub async fn resync_connector_tables(
        &self,
        id: &ConnectorId,
        tables: &BTreeMap<String, Vec<String>>,
    ) -> Result<SyncOutcome> {
        if tables.values().all(Vec::is_empty) {
            return Err(ServiceError::invalid("no tables to resync were given"));
        }
        self.start_sync(id, SyncScope::Tables(tables.clone()), true)
            .await
    }

    /// Starts a sync of `scope`.
    pub async fn start_sync(
        &self,
        id: &ConnectorId,
        scope: SyncScope,
        force: bool,
    ) -> Result<SyncOutcome> {
        let r = self.resolve_connector(id).await?;
        let settings = self.settings(id).await?;
        if settings.paused {
            return Err(ServiceError::new(
                ServiceErrorKind::Conflict,
                format!("connector {id} is paused; resume it (paused: false) to sync"),
            ));
        }
        self.ensure_live(&id.hub).await?;
        // Which tables to copy follows from the channel and the settings alone: a sync never
        // waits for (or fails on) introspecting the whole source; a source that is down fails
        // the sync's job, which moves `failed_at`.
        let overlay: Overlay =
            serde_json::from_value(settings.schema_overlay.clone()).unwrap_or_default();
        let in_channel = channel_tables(&r);
        let enabled_in = |schema: &str, table: &str| {
            let so = overlay.schemas.get(schema);
            so.and_then(|s| s.enabled) != Some(false)
                && so.and_then(|s| s.tables.get(table)).and_then(|t| t.enabled) != Some(false)
        };
        let enabled: Vec<TableName> = in_channel
            .iter()
            .filter(|((s, t), _)| enabled_in(s, t))
            .map(|(_, (name, _))| name.clone())
            .collect();
        let (tables, mode, historical) = match &scope {
            SyncScope::Normal => (enabled, None, false),
            SyncScope::Historical => (enabled, Some(RefreshModeKind::FullReplace), true),
            SyncScope::Tables(wanted) => {
                let mut tables = Vec::new();
                for (schema, names) in wanted {
                    for name in names {
                        match in_channel.get(&(schema.clone(), name.clone())) {
                            Some((ct, _)) if enabled_in(schema, name) => tables.push(ct.clone()),
                            found => {
                                // Not synced: disabled, or not a table of the source at all.
                                let exists = found.is_some()
                                    || self
                                        .schema_config_of(&r, &settings)
                                        .await?
                                        .schemas
                                        .get(schema)
                                        .is_some_and(|s| s.tables.contains_key(name));
                                if !exists {
                                    return Err(ServiceError::not_found(format!(
                                        "connector {id} has no table {name:?} in schema {schema:?}"
                                    )));
                                }
                                return Err(ServiceError::invalid(format!(
                                    "table {schema}.{name} of connector {id} is disabled; enable it first"
                                )));
                            }
                        }
                    }
                }
                (tables, Some(RefreshModeKind::FullReplace), false)
            }
        };
        if tables.is_empty() {
            return Err(ServiceError::invalid(format!(
                "connector {id} has no enabled tables to sync"
            )));
        }
        let job = JobName::refresh(&r.channel.name, &r.source.name, &r.target.name);
        let running = self
            .job_store()
            .job(&id.hub, &job)
            .await?
            .filter(|j| j.state == JobState::Running)
            .and_then(|j| j.last_event);
        let mut canceled = None;
        let mut too_late = None;
        if let Some(event) = running {
            if !force {
                return Ok(SyncOutcome {
                    started: false,
                    event,
                    canceled: None,
                });
            }
            match self.cancel_events(&id.hub, &[event]).await {
                Ok(()) => canceled = Some(event),
                // It ended meanwhile, or a table of it is committing (too late to cancel: it
                // ends DONE or FAILED on its own): the submit below waits for its end.
                Err(e) if e.kind() == ServiceErrorKind::Conflict => too_late = Some(e),
                Err(e) => return Err(e),
            }
        }
        let cmd = RefreshCommand {
            slicing: Default::default(),
            hub: id.hub.clone(),
            channel: id.channel.clone(),
            source: Some(r.source.name.clone()),
            target: Some(r.target.name.clone()),
            tables,
            strategy: None,
            batch_rows: None,
            count_first: false,
            mode: ModeOverride {
                mode,
                ..Default::default()
            },
            parallel: None,
        };
        let posted_before = self
            .job_store()
            .job(&id.hub, &job)
            .await?
            .and_then(|j| j.last_event);
        // A normal sync of an activated channel applies captured changes instead of copying; a
        // resync (historical or of tables) still copies in full.
        let by_change_capture =
            scope == SyncScope::Normal && self.is_activated(&id.hub, &id.channel).await?;
        // A cancelled run lets go of its job at its next cancel check; wait for that.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self
                .submit_sync(cmd.clone(), historical, by_change_capture)
                .await
            {
                Ok(event) => {
                    return Ok(SyncOutcome {
                        started: true,
                        event,
                        canceled,
                    });
                }
                Err(e) if e.kind() == ServiceErrorKind::Conflict && !force => {
                    // Another sync started meanwhile: keep it.
                    let event = self
                        .job_store()
                        .job(&id.hub, &job)
                        .await?
                        .and_then(|j| j.last_event)
                        .ok_or(e)?;
                    return Ok(SyncOutcome {
                        started: false,
                        event,
                        canceled: None,
                    });
                }
                Err(e) if e.kind() == ServiceErrorKind::Conflict && attempts < 40 => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                // Still running: say why when the cancel came too late.
                Err(e) if e.kind() == ServiceErrorKind::Conflict => {
                    return Err(too_late.unwrap_or(e));
                }
                Err(e) => {
                    // The sync was posted and failed while it was being planned (a database
                    // down, a table missing): it ran, its event is FAILED and moved `failed_at`.
                    let posted = self
                        .job_store()
                        .job(&id.hub, &job)
                        .await?
                        .and_then(|j| j.last_event)
                        .filter(|ev| Some(*ev) != posted_before);
                    match posted {
                        Some(event) => {
                            tracing::info!(connector = %id, event = %event, error = %e, "sync failed at its start");
                            return Ok(SyncOutcome {
                                started: true,
                                event,
                                canceled,
                            });
                        }
                        None => return Err(e),
                    }
                }
            }
        }
    }

    async fn submit_sync(
        &self,
        cmd: RefreshCommand,
        historical: bool,
        by_change_capture: bool,
    ) -> Result<EventId> {
        let tag =
            serde_json::json!({ "historical": historical, "change_capture": by_change_capture });
        let posted = if by_change_capture {
            self.submit_change_sync(cmd, tag).await?
        } else {
            self.submit_refresh_tagged(cmd, tag).await?
        };
        Ok(posted.event)
    }

    /// Tests both locations of a connector and records the results as its setup tests:
    /// `setup_state` becomes `connected` when both pass, else `broken`.
    pub async fn test_connector(&self, id: &ConnectorId) -> Result<Connector> {
        let r = self.resolve_connector(id).await?;
        let mut settings = self.settings(id).await?;
        let mut tests = Vec::new();
        for (role, loc) in [("source", &r.source), ("target", &r.target)] {
            let title = format!("Connecting to {role} location {}", loc.name);
            tests.push(match self.test_location(&id.hub, &loc.name).await {
                Ok(report) => SetupTest {
                    title,
                    status: "PASSED".into(),
                    // Class_Version says which version; the server's whole banner
                    // (Server_Version, compiler and all) stays in the location test's answer.
                    message: report
                        .discovered_props
                        .iter()
                        .filter(|(k, _)| k.as_str() != "Server_Version")
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                },
                Err(e) => SetupTest {
                    title,
                    status: "FAILED".into(),
                    message: crate::jobs::chain(&e),
                },
            });
        }
        settings.setup_state = if tests.iter().all(|t| t.status == "PASSED") {
            "connected".into()
        } else {
            "broken".into()
        };
        settings.setup_tests = serde_json::to_value(&tests)
            .map_err(|e| ServiceError::invalid(format!("setup tests: {e}")))?;
        self.settings_store().put_connector(&settings).await?;
        self.view(r, settings).await
    }

    /// The connector's schema config: the source's tables (discovered by introspection) merged
    /// with the channel's tables and the connector's settings.
    pub async fn connector_schema(&self, id: &ConnectorId) -> Result<SchemaConfig> {
        let r = self.resolve_connector(id).await?;
        let settings = self.settings(id).await?;
        self.schema_config_of(&r, &settings).await
    }

    /// The source tables by schema, with their columns and primary keys (`None` when the
    /// source cannot be read).
    async fn discover(
        &self,
        r: &Resolved,
        schemas: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, BTreeMap<String, Option<sluice_model::TableSchema>>>> {
        let location = self.location(&r.id.hub, &r.source.name).await?;
        let connector = self
            .connect(&location)
            .map_err(|e| ServiceError::connector(format!("location {}", location.name), e))?;
        let introspector = connector.introspector().ok_or_else(|| {
            ServiceError::invalid(format!("location {} cannot list its tables", location.name))
        })?;
        let default = default_schema_name(&r.source);
        let mut out = BTreeMap::new();
        for schema in schemas {
            let name = if *schema == default {
                None
            } else {
                Some(
                    SchemaName::new(schema.as_str())
                        .map_err(|e| ServiceError::invalid(format!("schema {schema:?}: {e}")))?,
                )
            };
            let tables = introspector.list_tables(name.as_ref()).await.map_err(|e| {
                ServiceError::connector(
                    format!("listing the tables of location {}", location.name),
                    e,
                )
            })?;
            let mut found = BTreeMap::new();
            for t in tables {
                let ts = introspector.table_schema(&t).await.map_err(|e| {
                    ServiceError::connector(format!("reading table {t} of {}", location.name), e)
                })?;
                found.insert(t.name.as_str().to_owned(), ts);
            }
            out.insert(schema.clone(), found);
        }
        Ok(out)
    }

    async fn schema_config_of(
        &self,
        r: &Resolved,
        settings: &ConnectorRecord,
    ) -> Result<SchemaConfig> {
        let overlay: Overlay =
            serde_json::from_value(settings.schema_overlay.clone()).unwrap_or_default();
        let src_default = default_schema_name(&r.source);
        let tgt_default = default_schema_name(&r.target);
        let in_channel = channel_tables(r);
        let mut schemas: BTreeSet<String> = in_channel.keys().map(|(s, _)| s.clone()).collect();
        schemas.insert(src_default.clone());
        schemas.extend(overlay.schemas.keys().cloned());
        let discovered = self.discover(r, &schemas).await?;
        let mut out = BTreeMap::new();
        for schema in &schemas {
            let so = overlay.schemas.get(schema).cloned().unwrap_or_default();
            let mut names: BTreeSet<String> = discovered
                .get(schema)
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default();
            names.extend(
                in_channel
                    .keys()
                    .filter(|(s, _)| s == schema)
                    .map(|(_, t)| t.clone()),
            );
            let mut tables = BTreeMap::new();
            for name in names {
                let channel_entry = in_channel.get(&(schema.clone(), name.clone()));
                let to = so.tables.get(&name).cloned().unwrap_or_default();
                let shape = discovered
                    .get(schema)
                    .and_then(|d| d.get(&name))
                    .cloned()
                    .flatten();
                let columns = match (channel_entry, shape) {
                    (_, Some(shape)) => shape
                        .columns
                        .iter()
                        .map(|c| {
                            let absent = channel_entry.is_some_and(|(t, _)| {
                                column_absent(&r.channel, t, &c.name, &r.source, &r.target)
                            });
                            (
                                c.name.as_str().to_owned(),
                                ColumnInfo {
                                    enabled: !absent,
                                    is_primary_key: shape.primary_key.contains(&c.name),
                                    name_in_destination: c.name.as_str().to_owned(),
                                },
                            )
                        })
                        .collect(),
                    (Some((t, _)), None) => r.channel.tables[t]
                        .columns
                        .iter()
                        .flatten()
                        .map(|c| {
                            (
                                c.name.as_str().to_owned(),
                                ColumnInfo {
                                    enabled: !column_absent(
                                        &r.channel, t, &c.name, &r.source, &r.target,
                                    ),
                                    is_primary_key: c.key > 0,
                                    name_in_destination: c.name.as_str().to_owned(),
                                },
                            )
                        })
                        .collect(),
                    (None, None) => BTreeMap::new(),
                };
                tables.insert(
                    name.clone(),
                    TableInfo {
                        enabled: channel_entry.is_some() && to.enabled != Some(false),
                        channel_table: channel_entry.map(|(t, _)| t.clone()),
                        name_in_destination: channel_entry
                            .map(|(_, dest)| dest.clone())
                            .unwrap_or_else(|| name.clone()),
                        sync_mode: to.sync_mode.clone().unwrap_or_else(|| "LIVE".into()),
                        columns,
                    },
                );
            }
            out.insert(
                schema.clone(),
                SchemaInfo {
                    enabled: so.enabled != Some(false),
                    name_in_destination: if *schema == src_default {
                        tgt_default.clone()
                    } else {
                        schema.clone()
                    },
                    tables,
                },
            );
        }
        Ok(SchemaConfig {
            schema_change_handling: settings.schema_change_handling.clone(),
            schemas: out,
        })
    }

    /// Changes the schema config. Every name and value is checked first (unknown schema, table
    /// or column: `NotFound`; bad value: `Invalid`) and nothing changes on error. Enabling a
    /// table that is not in the channel adds it to the channel; disabling a column adds a
    /// `ColumnProperties Absent` action for it, enabling removes it. Both are one definition
    /// edit (compiled and validated like a definitions file).
    pub async fn update_connector_schema(
        &self,
        id: &ConnectorId,
        change: &SchemaChange,
    ) -> Result<SchemaConfig> {
        let r = self.resolve_connector(id).await?;
        let mut settings = self.settings(id).await?;
        let config = self.schema_config_of(&r, &settings).await?;
        if let Some(h) = &change.schema_change_handling {
            check_handling(h)?;
        }
        let mut overlay: Overlay =
            serde_json::from_value(settings.schema_overlay.clone()).unwrap_or_default();
        let mut add_tables: Vec<(String, String)> = Vec::new();
        let mut absent: Vec<(TableName, String, bool)> = Vec::new();
        for (schema, sp) in &change.schemas {
            let s = config.schemas.get(schema).ok_or_else(|| {
                ServiceError::not_found(format!("connector {id} has no schema {schema:?}"))
            })?;
            let so = overlay.schemas.entry(schema.clone()).or_default();
            if let Some(e) = sp.enabled {
                so.enabled = Some(e);
            }
            for (table, tp) in &sp.tables {
                let t = s.tables.get(table).ok_or_else(|| {
                    ServiceError::not_found(format!(
                        "connector {id} has no table {table:?} in schema {schema:?}"
                    ))
                })?;
                if let Some(m) = &tp.sync_mode {
                    check_sync_mode(m)?;
                }
                let to = so.tables.entry(table.clone()).or_default();
                if let Some(m) = &tp.sync_mode {
                    to.sync_mode = Some(m.clone());
                }
                if let Some(e) = tp.enabled {
                    to.enabled = Some(e);
                    if e && t.channel_table.is_none() {
                        add_tables.push((schema.clone(), table.clone()));
                    }
                }
                for (column, enabled) in &tp.columns {
                    let c = t.columns.get(column).ok_or_else(|| {
                        ServiceError::not_found(format!(
                            "connector {id} has no column {column:?} in table {schema}.{table}"
                        ))
                    })?;
                    let Some(enabled) = *enabled else { continue };
                    if enabled == c.enabled {
                        continue;
                    }
                    if !enabled && c.is_primary_key {
                        return Err(ServiceError::invalid(format!(
                            "column {column} of {schema}.{table} is part of the primary key and cannot be disabled"
                        )));
                    }
                    let Some(ct) = t.channel_table.clone() else {
                        return Err(ServiceError::invalid(format!(
                            "table {schema}.{table} is not synced; enable it before changing its columns"
                        )));
                    };
                    absent.push((ct, column.clone(), !enabled));
                }
            }
        }
        if let Some(h) = &change.schema_change_handling {
            settings.schema_change_handling = h.clone();
        }
        if !add_tables.is_empty() || !absent.is_empty() {
            self.edit_connector_tables(&r, &add_tables, &absent).await?;
        }
        settings.schema_overlay = serde_json::to_value(&overlay)
            .map_err(|e| ServiceError::invalid(format!("schema settings: {e}")))?;
        let body = serde_json::json!({"schema_overlay": settings.schema_overlay,
            "schema_change_handling": settings.schema_change_handling});
        self.store_settings(&settings, "schema config changed", body)
            .await?;
        let r = self.resolve_connector(id).await?;
        self.schema_config_of(&r, &settings).await
    }

    /// Enables or disables a schema.
    pub async fn set_connector_schema_enabled(
        &self,
        id: &ConnectorId,
        schema: &str,
        enabled: bool,
    ) -> Result<SchemaConfig> {
        let mut change = SchemaChange::default();
        change.schemas.insert(
            schema.to_owned(),
            SchemaPatch {
                enabled: Some(enabled),
                ..Default::default()
            },
        );
        self.update_connector_schema(id, &change).await
    }

    /// Enables or disables a table.
    pub async fn set_connector_table_enabled(
        &self,
        id: &ConnectorId,
        schema: &str,
        table: &str,
        enabled: bool,
    ) -> Result<SchemaConfig> {
        let mut patch = SchemaPatch::default();
        patch.tables.insert(
            table.to_owned(),
            TablePatch {
                enabled: Some(enabled),
                ..Default::default()
            },
        );
        let mut change = SchemaChange::default();
        change.schemas.insert(schema.to_owned(), patch);
        self.update_connector_schema(id, &change).await
    }

    /// Enables or disables a column.
    pub async fn set_connector_column_enabled(
        &self,
        id: &ConnectorId,
        schema: &str,
        table: &str,
        column: &str,
        enabled: bool,
    ) -> Result<SchemaConfig> {
        let mut tp = TablePatch::default();
        tp.columns.insert(column.to_owned(), Some(enabled));
        let mut patch = SchemaPatch::default();
        patch.tables.insert(table.to_owned(), tp);
        let mut change = SchemaChange::default();
        change.schemas.insert(schema.to_owned(), patch);
        self.update_connector_schema(id, &change).await
    }

    /// Reloads the schema config from the source: tables seen for the first time are enabled
    /// (added to the channel) or left disabled as `mode` says; every table seen is remembered.
    pub async fn reload_connector_schema(
        &self,
        id: &ConnectorId,
        mode: ExcludeMode,
    ) -> Result<SchemaConfig> {
        let r = self.resolve_connector(id).await?;
        let mut settings = self.settings(id).await?;
        let config = self.schema_config_of(&r, &settings).await?;
        let mut overlay: Overlay =
            serde_json::from_value(settings.schema_overlay.clone()).unwrap_or_default();
        let include_new = match mode {
            ExcludeMode::Include => true,
            ExcludeMode::Exclude => false,
            ExcludeMode::Preserve => settings.schema_change_handling == "ALLOW_ALL",
        };
        let mut add = Vec::new();
        for (schema, s) in &config.schemas {
            let so = overlay.schemas.entry(schema.clone()).or_default();
            for (table, t) in &s.tables {
                if so.tables.contains_key(table) {
                    continue;
                }
                let known = t.channel_table.is_some();
                let enable = known || include_new;
                so.tables.insert(
                    table.clone(),
                    TableOverlay {
                        enabled: Some(enable),
                        sync_mode: None,
                    },
                );
                if enable && !known && !t.columns.is_empty() {
                    add.push((schema.clone(), table.clone()));
                }
            }
        }
        if !add.is_empty() {
            self.edit_connector_tables(&r, &add, &[]).await?;
        }
        settings.schema_overlay = serde_json::to_value(&overlay)
            .map_err(|e| ServiceError::invalid(format!("schema settings: {e}")))?;
        let body = serde_json::json!({"reload": format!("{mode:?}"),
            "schema_overlay": settings.schema_overlay});
        self.store_settings(&settings, "schema reloaded", body)
            .await?;
        let r = self.resolve_connector(id).await?;
        self.schema_config_of(&r, &settings).await
    }

    /// One definition edit: adds source tables `(schema, table)` to the channel and sets or
    /// clears `ColumnProperties Absent` of columns.
    async fn edit_connector_tables(
        &self,
        r: &Resolved,
        add: &[(String, String)],
        absent: &[(TableName, String, bool)],
    ) -> Result<()> {
        let src_default = default_schema_name(&r.source);
        let mut new_tables = Vec::new();
        for (schema, table) in add {
            let lower = table.to_ascii_lowercase();
            let name = TableName::new(&lower).map_err(|e| {
                ServiceError::invalid(format!(
                    "table {table} cannot be added to channel {}: {e}",
                    r.channel.name
                ))
            })?;
            if r.channel.tables.contains_key(&name) {
                return Err(ServiceError::invalid(format!(
                    "channel {} already has a table named {name}",
                    r.channel.name
                )));
            }
            new_tables.push((name, table.clone(), schema.clone()));
        }
        let channel = r.channel.name.to_string();
        let source = r.source.name.to_string();
        let described: Vec<String> = new_tables
            .iter()
            .map(|(n, _, _)| format!("added table {n}"))
            .chain(absent.iter().map(|(t, c, a)| {
                format!("{} column {t}.{c}", if *a { "disabled" } else { "enabled" })
            }))
            .collect();
        let description = format!("connector {}: {}", r.id, described.join(", "));
        self.edit_definitions(
            &r.id.hub,
            EventType::DefinitionChange,
            &description,
            |doc| {
                let ch = doc
                    .pointer_mut(&format!("/channels/{channel}"))
                    .ok_or_else(|| ServiceError::not_found(format!("channel {channel} is gone")))?;
                for (name, base, schema) in &new_tables {
                    let mut t = serde_json::Map::new();
                    if base != name.as_str() {
                        t.insert("base_name".into(), Json::from(base.clone()));
                    }
                    ch["tables"][name.as_str()] = Json::Object(t);
                    if *schema != src_default {
                        push_action(
                            ch,
                            serde_json::json!({
                                "type": "TableProperties", "loc_scope": source,
                                "table_scope": name.as_str(), "params": {"Schema": schema},
                            }),
                        );
                    }
                }
                for (table, column, make_absent) in absent {
                    let actions = ch["actions"].as_array_mut();
                    if let Some(actions) = actions {
                        actions.retain(|a| !is_absent_action(a, table.as_str(), column));
                    }
                    if *make_absent {
                        push_action(
                            ch,
                            serde_json::json!({
                                "type": "ColumnProperties", "loc_scope": "*",
                                "table_scope": table.as_str(),
                                "params": {"Name": column, "Absent": true},
                            }),
                        );
                    }
                }
                Ok(())
            },
        )
        .await?;
        Ok(())
    }

    /// The schedulers' part for connectors: starts the syncs of `auto`, unpaused connectors of
    /// live hubs that are due at `now`.
    pub async fn schedule_connectors(&self, now: DateTime<Utc>) -> Result<Vec<EventId>> {
        let mut started = Vec::new();
        let live: BTreeSet<HubName> = self
            .definition_store()
            .hubs()
            .await?
            .into_iter()
            .filter(|h| h.state == HubState::Live)
            .map(|h| h.hub.name)
            .collect();
        for record in self.settings_store().connector_records(None).await? {
            if !live.contains(&record.hub) || record.paused || record.schedule_type != "auto" {
                continue;
            }
            let id = ConnectorId::new(record.hub.clone(), record.channel.clone());
            // The stored record is at hand: no settings write per tick.
            let viewed = match self.resolve_connector(&id).await {
                Ok(r) => self.view(r, record.clone()).await,
                Err(e) => Err(e),
            };
            let connector = match viewed {
                Ok(c) => c,
                Err(e) if e.kind() == ServiceErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(connector = %id, error = %e, "scheduler could not read a connector");
                    continue;
                }
            };
            if connector.running.is_some()
                || !sync_due(&connector.settings, connector.last_sync_start, now)
            {
                continue;
            }
            match self.sync_connector(&id, false).await {
                Ok(outcome) if outcome.started => {
                    tracing::info!(connector = %id, event = %outcome.event, "scheduler started a sync");
                    started.push(outcome.event);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(connector = %id, error = %e, "scheduler could not start a sync")
                }
            }
        }
        Ok(started)
    }

    /// Creates an API key with `level`: answers the stored key and its secret, which is shown
    /// this once (only its SHA-256 is kept: the secret is 32 random bytes, so a fast hash is as
    /// strong as a slow one and keeps every request's check cheap).
    pub async fn create_api_key(
        &self,
        level: AccessLevel,
        description: &str,
    ) -> Result<(ApiKeyRecord, String)> {
        if level == AccessLevel::None {
            return Err(ServiceError::invalid("an API key needs a level above None"));
        }
        let key: String = rand::random::<[u8; 8]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let secret = crate::auth::new_token("");
        let record = ApiKeyRecord {
            key: format!("sk{key}"),
            secret_hash: token_hash(&secret),
            level,
            created: Utc::now(),
            creator: self.user().to_owned(),
            description: description.to_owned(),
        };
        self.identity_store().create_api_key(&record).await?;
        Ok((record, secret))
    }

    /// Every API key (never their secrets).
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        Ok(self.identity_store().api_keys().await?)
    }

    /// Deletes an API key.
    pub async fn delete_api_key(&self, key: &str) -> Result<()> {
        Ok(self.identity_store().delete_api_key(key).await?)
    }

    /// Checks an API key and secret (HTTP Basic of the `/v1` face): the identity
    /// `apikey:<key>` with the key's level, or `Unauthenticated`.
    pub async fn authenticate_api_key(&self, key: &str, secret: &str) -> Result<Identity> {
        let refused = || {
            ServiceError::new(
                ServiceErrorKind::Unauthenticated,
                "invalid API key or secret",
            )
        };
        let record = match self.identity_store().api_key(key).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(refused()),
            Err(e) if e.kind() == RepoErrorKind::NotFound => return Err(refused()),
            Err(e) => return Err(e.into()),
        };
        let given = token_hash(secret);
        let same = given.len() == record.secret_hash.len()
            && given
                .bytes()
                .zip(record.secret_hash.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(refused());
        }
        Ok(Identity {
            user: format!("apikey:{}", record.key),
            level: record.level,
            // An API key is checked on every request and has no expiry of its own.
            expires: i64::MAX,
        })
    }
}

/// The channel's tables by (source schema, source table), with their target table names.
fn channel_tables(r: &Resolved) -> BTreeMap<(String, String), (TableName, String)> {
    let src_default = default_schema_name(&r.source);
    let mut out = BTreeMap::new();
    for table in r.channel.tables.values() {
        let s = physical_table(&r.channel, table, &r.source.name, None);
        let t = physical_table(&r.channel, table, &r.target.name, None);
        let schema = s
            .schema
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| src_default.clone());
        out.insert(
            (schema, s.name.as_str().to_owned()),
            (table.name.clone(), t.name.as_str().to_owned()),
        );
    }
    out
}

fn push_action(channel: &mut Json, action: Json) {
    match channel["actions"].as_array_mut() {
        Some(actions) => actions.push(action),
        None => channel["actions"] = Json::Array(vec![action]),
    }
}

fn is_absent_action(action: &Json, table: &str, column: &str) -> bool {
    action["type"] == "ColumnProperties"
        && action["table_scope"] == table
        && action.pointer("/params/Name").and_then(Json::as_str) == Some(column)
        && action.pointer("/params/Absent").is_some()
}

/// Whether a column is left out of the copy (a `ColumnProperties Absent` on both locations).
fn column_absent(
    channel: &Channel,
    table: &TableName,
    column: &ColumnName,
    source: &Location,
    target: &Location,
) -> bool {
    channel.actions.iter().any(|a| {
        matches!(a.kind(), ActionKind::ColumnProperties(p) if p.absent && p.name.as_ref() == Some(column))
            && channel.table_in_scope(&a.table_scope, table)
            && channel.loc_in_scope(&a.loc_scope, &source.name)
            && channel.loc_in_scope(&a.loc_scope, &target.name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(schedule: &str, frequency: u32, daily: &str) -> ConnectorRecord {
        let mut r = ConnectorRecord::new(
            HubName::new("h").expect("valid"),
            ChannelName::new("c").expect("valid"),
            Utc::now(),
        );
        r.schedule_type = schedule.into();
        r.sync_frequency = frequency;
        r.daily_sync_time = daily.into();
        r
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("valid").to_utc()
    }

    #[test]
    fn ids_round_trip_and_refuse_what_is_not_hub_dot_channel() {
        let id: ConnectorId = "hub1.sales".parse().expect("valid");
        assert_eq!((id.hub.as_str(), id.channel.as_str()), ("hub1", "sales"));
        assert_eq!(id.to_string(), "hub1.sales");
        for bad in ["hub1", "hub1.", ".sales", "hub1.sa.les", "Hub.sales", ""] {
            let e = bad.parse::<ConnectorId>().expect_err(bad);
            assert_eq!(e.kind(), ServiceErrorKind::NotFound, "{bad}");
        }
    }

    #[test]
    fn due_by_frequency_and_daily_time() {
        let now = at("2026-01-02T10:00:00Z");
        let hourly = record("auto", 60, "00:00");
        assert!(sync_due(&hourly, None, now), "never synced");
        assert!(!sync_due(&hourly, Some(at("2026-01-02T09:30:00Z")), now));
        assert!(sync_due(&hourly, Some(at("2026-01-02T09:00:00Z")), now));
        assert!(!sync_due(&record("manual", 60, "00:00"), None, now));
        let mut paused = hourly.clone();
        paused.paused = true;
        assert!(!sync_due(&paused, None, now));
        let daily = record("auto", 1440, "09:15");
        assert!(sync_due(&daily, Some(at("2026-01-02T09:00:00Z")), now));
        assert!(!sync_due(&daily, Some(at("2026-01-02T09:20:00Z")), now));
        let later = record("auto", 1440, "11:00");
        assert!(!sync_due(&later, Some(at("2026-01-01T11:05:00Z")), now));
        assert!(sync_due(&later, Some(at("2026-01-01T10:55:00Z")), now));
    }

    fn event(state: EventState, finish: &str) -> EventRecord {
        EventRecord {
            id: EventId::at(at(finish)),
            hub: HubName::new("h").expect("valid"),
            event_type: EventType::Refresh,
            user: "u".into(),
            description: String::new(),
            channel: None,
            loc: None,
            loc2: None,
            job: None,
            state,
            num_retries: 0,
            response: None,
            start: at(finish),
            finish: Some(at(finish)),
            body: Json::Null,
            canceled: state == EventState::Canceled,
            results: Vec::new(),
        }
    }

    #[test]
    fn sync_ends_increase_strictly() {
        // Newest first, as the repository answers.
        let events = vec![
            event(EventState::Done, "2026-01-01T00:00:01Z"),
            event(EventState::Failed, "2026-01-01T00:00:01Z"),
            event(EventState::Canceled, "2026-01-01T00:00:05Z"),
            event(EventState::Done, "2026-01-01T00:00:00Z"),
        ];
        let (succeeded, failed) = sync_ends(&events);
        assert_eq!(failed, Some(at("2026-01-01T00:00:01Z")));
        assert_eq!(
            succeeded,
            Some(at("2026-01-01T00:00:01Z") + TimeDelta::microseconds(1))
        );
        assert_eq!(sync_ends(&[]), (None, None));
    }

    #[test]
    fn a_sync_ended_by_a_cancel_moves_neither_end() {
        // Cancelled after a table had committed: FAILED, but a cancel, not a failure.
        let mut stopped = event(EventState::Failed, "2026-01-01T00:00:09Z");
        stopped.canceled = true;
        let events = vec![stopped, event(EventState::Done, "2026-01-01T00:00:00Z")];
        assert_eq!(sync_ends(&events), (Some(at("2026-01-01T00:00:00Z")), None));
    }
}
