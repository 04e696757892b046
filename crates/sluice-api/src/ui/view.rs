//! What the templates show: page structs with their values already turned into text, so the
//! templates only lay them out.

use askama::Template;
use askama_web::WebTemplate;
use chrono::{DateTime, Utc};

use super::session::{Flash, Viewer};

/// A point in time as the dashboard shows it (UTC, to the second); empty for none.
pub(crate) fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// A count with thousands separators (`1,234,567`); empty for none.
pub(crate) fn count(n: Option<u64>) -> String {
    n.map(sluice_model::text::thousands).unwrap_or_default()
}

/// Seconds with a sensible precision; empty for none.
pub(crate) fn seconds(s: Option<f64>) -> String {
    match s {
        None => String::new(),
        Some(s) if s < 10.0 => format!("{s:.2} s"),
        Some(s) => format!("{s:.0} s"),
    }
}

/// What every page shows around its content.
pub(crate) struct Chrome {
    /// The page title.
    pub title: String,
    /// The logged-in user.
    pub user: String,
    /// Their access level.
    pub level: String,
    /// The notice of the previous action.
    pub flash: Option<Flash>,
}

impl Chrome {
    pub(crate) fn new(viewer: &Viewer, title: impl Into<String>) -> Self {
        Chrome {
            title: title.into(),
            user: viewer.identity.user.clone(),
            level: viewer.identity.level.to_string(),
            flash: viewer.flash.clone(),
        }
    }
}

/// The login form.
#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub error: Option<String>,
    pub next: String,
    pub user: String,
}

/// One row of the channel list.
pub(crate) struct ChannelRow {
    pub hub: String,
    pub channel: String,
    pub description: String,
    pub route: String,
    pub tables: usize,
    pub job_state: String,
    pub last_state: String,
    /// The event of the newest refresh.
    pub last_event: String,
    pub last_start: String,
    pub last_success: String,
    pub last_failure: String,
    pub failure_text: String,
    pub rows_moved: String,
    /// Whether the channel is a connector (pause, sync, resync and test apply).
    pub connector: bool,
    pub paused: bool,
    pub setup_state: String,
    pub sync_state: String,
    /// Whether its schedule is manual (no sync is ever scheduled).
    pub manual: bool,
    pub schedule: String,
    /// One word for how it is doing (healthy, running, failed, paused, frozen, differs, new).
    pub health: String,
    /// What that means, with the last failure's reason when it failed.
    pub health_text: String,
}

/// The channel (connector) list.
#[derive(Template, WebTemplate)]
#[template(path = "channels.html")]
pub(crate) struct ChannelsPage {
    pub chrome: Chrome,
    pub hubs: Vec<String>,
    pub hub: String,
    pub q: String,
    pub rows: Vec<ChannelRow>,
    /// The hub to add a channel to when there is none (the only or the filtered hub), or empty.
    pub add_to: String,
    /// Whether the repository has no hub at all.
    pub no_hub: bool,
}

/// One table of a channel (of a connector's schema, when the channel is a connector).
pub(crate) struct TableRow {
    /// The schema at the source; empty when the channel is not a connector.
    pub schema: String,
    pub table: String,
    /// Whether the connector syncs it (always for a plain channel).
    pub enabled: bool,
    pub source_rows: String,
    pub target_rows: String,
    pub incremental_column: String,
    pub max_incremental: String,
    pub refresh_state: String,
    pub refresh_finished: String,
    pub refresh_error: String,
    pub compare_state: String,
    pub compare_finished: String,
    /// Whether the last compare found differences (its keys are in its event's log).
    pub compare_differs: bool,
    /// The last compare's event.
    pub compare_event: String,
    pub errors: String,
}

/// What a channel page shows of its connector.
pub(crate) struct ConnectorBox {
    pub id: String,
    pub paused: bool,
    pub setup_state: String,
    pub setup_tests: String,
    pub sync_state: String,
    pub schedule: String,
    pub succeeded: String,
    pub failed: String,
}

/// One schema of a connector.
pub(crate) struct SchemaRow {
    pub name: String,
    pub enabled: bool,
}

/// One refresh of a channel.
pub(crate) struct RunRow {
    pub event: String,
    pub state: String,
    pub start: String,
    pub duration: String,
    pub rows: String,
    pub rate: String,
}

/// A channel (connector) with its tables and charts.
#[derive(Template, WebTemplate)]
#[template(path = "channel.html")]
pub(crate) struct ChannelPage {
    pub chrome: Chrome,
    pub hub: String,
    pub channel: String,
    pub description: String,
    pub tables: Vec<TableRow>,
    pub tables_error: String,
    pub connector: Option<ConnectorBox>,
    pub schemas: Vec<SchemaRow>,
    pub runs: Vec<RunRow>,
    pub rate_chart: String,
    pub duration_chart: String,
    /// Its change capture, when activated.
    pub replication: Option<ReplicationBox>,
    /// Whether the viewer may activate and deactivate it (ReadWrite on the hub).
    pub can_activate: bool,
    /// One word for how it is doing, as on the channel list, and what it means.
    pub health: String,
    pub health_text: String,
}

/// An activated channel's capture and integrate jobs, with a lag chart.
pub(crate) struct ReplicationBox {
    /// `loading` or `active`.
    pub state: String,
    pub source: String,
    pub targets: String,
    /// Bytes of source log not yet acknowledged, or empty.
    pub lag_bytes: String,
    pub jobs: Vec<ReplicationJobRow>,
    pub lag_chart: String,
}

/// A capture or integrate job with the figures of its current (or last) run.
pub(crate) struct ReplicationJobRow {
    pub name: String,
    pub state: String,
    pub rows: String,
    pub latency: String,
}

/// One job.
pub(crate) struct JobRow {
    pub name: String,
    pub state: String,
    pub runs: u64,
    pub begin: String,
    pub end: String,
    pub event: String,
}

/// One event.
pub(crate) struct EventRow {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub channel: String,
    pub user: String,
    pub start: String,
    pub duration: String,
    pub description: String,
    pub response: String,
    pub active: bool,
}

/// Jobs and events of a hub.
#[derive(Template, WebTemplate)]
#[template(path = "jobs.html")]
pub(crate) struct JobsPage {
    pub chrome: Chrome,
    pub hub: String,
    pub jobs: Vec<JobRow>,
    pub events: Vec<EventRow>,
    /// The filters, as the form shows them.
    pub form: JobsFilterForm,
}

/// One option of a filter's select.
pub(crate) struct FilterChoice {
    pub value: String,
    pub selected: bool,
}

/// The filter form of the jobs page: each select's options, marked when chosen.
pub(crate) struct JobsFilterForm {
    pub states: Vec<FilterChoice>,
    pub types: Vec<FilterChoice>,
    pub channels: Vec<FilterChoice>,
    /// Whether anything is chosen.
    pub active: bool,
}

/// One per-table result of an event.
pub(crate) struct ResultRow {
    pub table: String,
    pub name: String,
    pub value: String,
}

/// One event with its results and log.
#[derive(Template, WebTemplate)]
#[template(path = "event.html")]
pub(crate) struct EventPage {
    pub chrome: Chrome,
    pub hub: String,
    pub event: EventRow,
    pub results: Vec<ResultRow>,
    pub log: String,
}

/// One location.
pub(crate) struct LocationRow {
    pub name: String,
    pub class: String,
}

/// A hub: state, freeze, locations.
#[derive(Template, WebTemplate)]
#[template(path = "hub.html")]
pub(crate) struct HubPage {
    pub chrome: Chrome,
    pub hubs: Vec<String>,
    pub hub: String,
    pub description: String,
    pub state: String,
    pub frozen: bool,
    pub freeze_time: String,
    pub created: String,
    pub locations: Vec<LocationRow>,
}

/// One flow of the lineage page's table.
pub(crate) struct FlowRow {
    pub source: String,
    pub target: String,
    pub hub: String,
    pub channel: String,
    pub table: String,
    pub state: String,
    pub last_run: String,
    pub when: String,
    pub replication: String,
}

/// Lineage: the graph of every readable hub's flows, and the flows as a table.
#[derive(Template, WebTemplate)]
#[template(path = "lineage.html")]
pub(crate) struct LineagePage {
    pub chrome: Chrome,
    /// The graph, an inline SVG built with every text escaped.
    pub graph: String,
    pub flows: Vec<FlowRow>,
}
