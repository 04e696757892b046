//! The dashboard's pages (GET): extract, one service call, template.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use sluice_model::{AccessLevel, ChannelName, EventId, HubName, JobType, ResultName};
use sluice_repo::EventRecord;
use sluice_service::connectors::{Connector, SetupTest};
use sluice_service::{ChannelOverview, RefreshRun, TableStatus};

use super::UiState;
use super::chart::{self, Bar, Line};
use super::graph;
use super::session::Viewer;
use super::view::{
    ChannelPage, ChannelRow, ChannelsPage, Chrome, ConnectorBox, EventPage, EventRow, FilterChoice,
    FlowRow, HubPage, JobRow, JobsFilterForm, JobsPage, LineagePage, LocationRow, LoginPage,
    ReplicationBox, ReplicationJobRow, ResultRow, RunRow, SchemaRow, TableRow, count, seconds,
    when,
};
use crate::error::dashboard::Refusal;
use crate::extract::QueryList;
use crate::hvr::hub_name;

type Page<T> = Result<T, Refusal>;

/// How many events the jobs page lists.
const EVENT_PAGE: usize = 200;

/// The login form; `next` is where to go after (a dashboard path only).
pub(crate) fn login_form(error: Option<String>, next: String, user: String) -> Response {
    let next = if next.starts_with("/ui/") && !next.starts_with("//") {
        next
    } else {
        "/ui/channels".to_owned()
    };
    let status = if error.is_some() {
        axum::http::StatusCode::FORBIDDEN
    } else {
        axum::http::StatusCode::OK
    };
    (status, LoginPage { error, next, user }).into_response()
}

pub(crate) async fn home() -> Redirect {
    Redirect::to("/ui/channels")
}

fn channel_row(c: ChannelOverview) -> ChannelRow {
    let (last_failure, failure_text) = c
        .last_failure
        .map(|(t, why)| (when(Some(t)), why))
        .unwrap_or_default();
    let health_text = match c.health {
        sluice_service::ChannelHealth::Failed if !failure_text.is_empty() => {
            format!("{}: {failure_text}", c.health.meaning())
        }
        h => h.meaning().to_owned(),
    };
    ChannelRow {
        hub: c.hub.to_string(),
        channel: c.channel.to_string(),
        description: c.description,
        route: format!("{} → {}", names(&c.sources), names(&c.targets)),
        tables: c.table_count,
        job_state: c.job_state.unwrap_or_default(),
        last_state: c
            .last_refresh
            .as_ref()
            .map(|r| r.state.to_string())
            .unwrap_or_default(),
        last_event: c
            .last_refresh
            .as_ref()
            .map(|r| r.event.to_string())
            .unwrap_or_default(),
        last_start: when(c.last_refresh.as_ref().map(|r| r.start)),
        last_success: when(c.last_success),
        last_failure,
        failure_text,
        rows_moved: count(c.rows_moved),
        connector: c.connector.is_some(),
        paused: c.connector.as_ref().is_some_and(|k| k.settings.paused),
        setup_state: c
            .connector
            .as_ref()
            .map(|k| k.settings.setup_state.clone())
            .unwrap_or_default(),
        sync_state: c.connector.as_ref().map(sync_label).unwrap_or_default(),
        manual: c
            .connector
            .as_ref()
            .is_some_and(|k| k.settings.schedule_type == "manual"),
        schedule: c.connector.as_ref().map(schedule).unwrap_or_default(),
        health: c.health.as_str().to_owned(),
        health_text,
    }
}

fn schedule(c: &Connector) -> String {
    let s = &c.settings;
    if s.schedule_type == "auto" {
        format!("every {} min", s.sync_frequency)
    } else {
        s.schedule_type.clone()
    }
}

/// The connector's sync state as the dashboard words it: `scheduled` (the `/v1` API's word for
/// "not syncing now") is `idle` when nothing is scheduled (a manual schedule).
fn sync_label(c: &Connector) -> String {
    match c.sync_state.as_str() {
        "scheduled" if c.settings.schedule_type == "manual" => "idle".to_owned(),
        other => other.to_owned(),
    }
}

fn connector_box(c: &Connector) -> ConnectorBox {
    let tests: Vec<String> =
        serde_json::from_value::<Vec<SetupTest>>(c.settings.setup_tests.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|t| format!("{}: {} {}", t.title, t.status, t.message))
            .collect();
    ConnectorBox {
        id: c.id.to_string(),
        paused: c.settings.paused,
        setup_state: c.settings.setup_state.clone(),
        setup_tests: tests.join("\n"),
        sync_state: sync_label(c),
        schedule: schedule(c),
        succeeded: when(c.succeeded_at),
        failed: when(c.failed_at),
    }
}

fn names<T: std::fmt::Display>(list: &[T]) -> String {
    if list.is_empty() {
        return "–".to_owned();
    }
    list.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `GET /ui/channels?hub=&q=`: every channel (connector), filtered by hub (group) and search.
pub(crate) async fn channels(
    Extension(viewer): Extension<Viewer>,
    query: QueryList,
) -> Page<ChannelsPage> {
    viewer.require(AccessLevel::ReadOnly, "the channel list")?;
    let hub = query.one("hub").unwrap_or("").to_owned();
    let q = query.one("q").unwrap_or("").trim().to_owned();
    // Only channels of hubs the viewer may read.
    let readable = viewer.readable().await?;
    let all: Vec<_> = viewer
        .service
        .channel_overview(None)
        .await?
        .into_iter()
        .filter(|c| readable(&c.hub))
        .collect();
    let mut hubs: Vec<String> = all.iter().map(|c| c.hub.to_string()).collect();
    hubs.dedup();
    // Where a newcomer adds a channel: the filtered hub, else the only hub there is.
    let all_hubs = viewer.service.hubs().await?;
    let readable: Vec<String> = all_hubs
        .iter()
        .map(|h| &h.hub.name)
        .filter(|h| readable(h))
        .map(|h| h.to_string())
        .collect();
    let add_to = match (hub.is_empty(), readable.as_slice()) {
        (false, _) if readable.contains(&hub) => hub.clone(),
        (true, [only]) => only.clone(),
        _ => String::new(),
    };
    let needle = q.to_lowercase();
    let rows = all
        .into_iter()
        .filter(|c| hub.is_empty() || c.hub.as_str() == hub)
        .filter(|c| {
            needle.is_empty()
                || c.channel.as_str().to_lowercase().contains(&needle)
                || c.description.to_lowercase().contains(&needle)
        })
        .map(channel_row)
        .collect();
    Ok(ChannelsPage {
        chrome: Chrome::new(&viewer, "Channels"),
        hubs,
        hub,
        q,
        rows,
        add_to,
        no_hub: all_hubs.is_empty(),
    })
}

fn table_row(schema: &str, table: &str, enabled: bool, t: Option<TableStatus>) -> TableRow {
    match t {
        Some(t) => TableRow {
            schema: schema.to_owned(),
            enabled,
            ..status_row(t)
        },
        None => TableRow {
            schema: schema.to_owned(),
            table: table.to_owned(),
            enabled,
            source_rows: String::new(),
            target_rows: String::new(),
            incremental_column: String::new(),
            max_incremental: String::new(),
            refresh_state: String::new(),
            refresh_finished: String::new(),
            refresh_error: String::new(),
            compare_state: String::new(),
            compare_finished: String::new(),
            compare_differs: false,
            compare_event: String::new(),
            errors: String::new(),
        },
    }
}

fn status_row(t: TableStatus) -> TableRow {
    let errors: Vec<String> = [
        t.source_error.map(|e| format!("source: {e}")),
        t.target_error.map(|e| format!("target: {e}")),
        t.max_incremental_error
            .map(|e| format!("incremental value: {e}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    TableRow {
        schema: String::new(),
        table: t.table.to_string(),
        enabled: true,
        source_rows: count(t.source_rows),
        target_rows: count(t.target_rows),
        incremental_column: t
            .incremental_column
            .map(|c| c.to_string())
            .unwrap_or_default(),
        max_incremental: t.max_incremental.unwrap_or_default(),
        refresh_state: t
            .last_refresh
            .as_ref()
            .map(|r| r.table_state.clone())
            .unwrap_or_default(),
        refresh_finished: when(t.last_refresh.as_ref().and_then(|r| r.finished)),
        refresh_error: t
            .last_refresh
            .as_ref()
            .and_then(|r| r.error.clone())
            .unwrap_or_default(),
        compare_state: t
            .last_compare
            .as_ref()
            .map(|r| match r.differences {
                Some((a, b, c)) => format!(
                    "{} ({a} only on source, {b} only on target, {c} differ)",
                    r.table_state
                ),
                None => r.table_state.clone(),
            })
            .unwrap_or_default(),
        compare_finished: when(t.last_compare.as_ref().and_then(|r| r.finished)),
        compare_differs: t
            .last_compare
            .as_ref()
            .is_some_and(|r| r.table_state == sluice_model::event::table_state::DONE_DIFFERENT),
        compare_event: t
            .last_compare
            .as_ref()
            .map(|r| r.event.to_string())
            .unwrap_or_default(),
        errors: errors.join("; "),
    }
}

fn run_row(r: &RefreshRun) -> RunRow {
    RunRow {
        event: r.event.to_string(),
        state: r.state.to_string(),
        start: when(Some(r.start)),
        duration: seconds(r.seconds),
        rows: r.rows.to_string(),
        rate: r
            .rows_per_second()
            .map(|v| format!("{v:.0}"))
            .unwrap_or_default(),
    }
}

/// `GET /ui/hubs/{hub}/channels/{channel}`: tables, their counts and last runs, and charts.
pub(crate) async fn channel(
    State(ui): State<UiState>,
    Extension(viewer): Extension<Viewer>,
    Path((hub, channel)): Path<(String, String)>,
) -> Page<ChannelPage> {
    viewer
        .require_on(&hub, AccessLevel::ReadOnly, "a channel")
        .await?;
    let hub = hub_name(&hub)?;
    let name = super::channel_name(&channel)?;
    let detail = viewer.service.channel_detail(&hub, &name).await?;
    let replication = replication_box(&ui, &viewer, &hub, &name).await?;
    // The same verdict as the channel list's.
    let overview = viewer
        .service
        .channel_overview(Some(&hub))
        .await?
        .into_iter()
        .find(|c| c.channel == name)
        .map(channel_row);
    let can_activate = viewer
        .service
        .level_on(&viewer.identity.user, viewer.identity.level, &hub)
        .await?
        .allows(AccessLevel::ReadWrite);
    let finished: Vec<&RefreshRun> = detail.runs.iter().filter(|r| r.seconds.is_some()).collect();
    let bar = |r: &&RefreshRun, value: f64| Bar {
        value,
        at: r.start,
        failed: r.state != sluice_model::EventState::Done,
    };
    let rate: Vec<Bar> = finished
        .iter()
        .map(|r| bar(r, r.rows_per_second().unwrap_or(0.0)))
        .collect();
    let duration: Vec<Bar> = finished
        .iter()
        .map(|r| bar(r, r.seconds.unwrap_or(0.0)))
        .collect();
    // A connector's tables come from its schemas (the source's names, with their enable flags);
    // a plain channel's from its definition.
    let mut status: BTreeMap<String, TableStatus> = detail
        .tables
        .into_iter()
        .map(|t| (t.table.to_string(), t))
        .collect();
    let (tables, schemas): (Vec<TableRow>, Vec<SchemaRow>) = match &detail.schema {
        Some(config) => (
            config
                .schemas
                .iter()
                .flat_map(|(schema, info)| {
                    info.tables
                        .iter()
                        .map(|(table, t)| (schema.clone(), table.clone(), t.clone()))
                        .collect::<Vec<_>>()
                })
                .map(|(schema, table, t)| {
                    let st = t
                        .channel_table
                        .as_ref()
                        .and_then(|c| status.remove(c.as_str()));
                    table_row(&schema, &table, t.enabled, st)
                })
                .collect(),
            config
                .schemas
                .iter()
                .map(|(name, info)| SchemaRow {
                    name: name.clone(),
                    enabled: info.enabled,
                })
                .collect(),
        ),
        None => (status.into_values().map(status_row).collect(), Vec::new()),
    };
    Ok(ChannelPage {
        chrome: Chrome::new(&viewer, format!("Channel {name}")),
        hub: hub.to_string(),
        channel: name.to_string(),
        description: detail.channel.description.clone(),
        tables,
        tables_error: [detail.tables_error, detail.schema_error]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; "),
        connector: detail.connector.as_ref().map(connector_box),
        schemas,
        runs: detail.runs.iter().rev().take(20).map(run_row).collect(),
        rate_chart: chart::bars("rows per second of each refresh", "rows/s", &rate),
        duration_chart: chart::bars("duration of each refresh", "s", &duration),
        replication,
        can_activate,
        health: overview
            .as_ref()
            .map(|o| o.health.clone())
            .unwrap_or_default(),
        health_text: overview.map(|o| o.health_text).unwrap_or_default(),
    })
}

/// The channel's capture and integrate jobs when it is activated: states from the repository,
/// figures from the replication when this process runs it, else from the results its running
/// (or last) capture and integrate events wrote; the lag chart from the samples kept here.
async fn replication_box(
    ui: &UiState,
    viewer: &Viewer,
    hub: &HubName,
    channel: &ChannelName,
) -> Result<Option<ReplicationBox>, Refusal> {
    let Some(status) = viewer.service.replication_status(hub, channel).await? else {
        return Ok(None);
    };
    ui.lag.start_sampling(&ui.app.service);
    ui.lag
        .record(Utc::now(), &ui.app.service.replication_figures());
    let mut jobs = Vec::new();
    for (job, state) in &status.jobs {
        let capture = job.job_type() == JobType::Capture;
        let target = job.locations().first().cloned();
        let (rows, latency) = match (&status.stats, &target) {
            (Some(s), _) if capture => (Some(s.captured), s.capture_latency),
            (Some(s), Some(t)) => (
                Some(s.integrated.get(t).copied().unwrap_or(0)),
                s.integrate_latency.get(t).copied(),
            ),
            _ => {
                let (rows, latency) = if capture {
                    (ResultName::CapturedRows, ResultName::CaptureLatency)
                } else {
                    (ResultName::IntegratedRows, ResultName::IntegrateLatency)
                };
                let filter = sluice_repo::EventFilter {
                    hub: Some(hub.clone()),
                    jobs: vec![job.clone()],
                    fetch_results: true,
                    max_events: Some(1),
                    ..Default::default()
                };
                let last = viewer.service.events(&filter).await?.into_iter().next();
                let figure = |name: ResultName| {
                    last.as_ref()?
                        .results
                        .iter()
                        .find(|r| r.table.is_none() && r.name == name)
                        .and_then(|r| r.value.parse::<f64>().ok())
                };
                (figure(rows).map(|n| n as u64), figure(latency))
            }
        };
        jobs.push(ReplicationJobRow {
            name: job.to_string(),
            state: state.to_string(),
            rows: count(rows),
            latency: latency.map(|l| format!("{l:.3}")).unwrap_or_default(),
        });
    }
    let samples = ui.lag.samples(hub, channel);
    let times: Vec<_> = samples.iter().map(|s| s.at).collect();
    let lag_chart = chart::lines(
        "capture and integrate latency",
        "s",
        &times,
        &[
            Line {
                class: "capture",
                name: "capture",
                values: samples.iter().map(|s| s.capture).collect(),
            },
            Line {
                class: "integrate",
                name: "integrate",
                values: samples.iter().map(|s| s.integrate).collect(),
            },
        ],
    );
    Ok(Some(ReplicationBox {
        state: status.state,
        source: status.source.to_string(),
        targets: status
            .targets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        lag_bytes: count(status.capture_lag_bytes),
        jobs,
        lag_chart,
    }))
}

fn event_row(e: &EventRecord) -> EventRow {
    EventRow {
        id: e.id.to_string(),
        kind: e.event_type.to_string(),
        state: e.state.to_string(),
        channel: e
            .channel
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        user: e.user.clone(),
        start: when(Some(e.start)),
        duration: seconds(
            e.finish
                .map(|f| (f - e.start).num_milliseconds() as f64 / 1000.0),
        ),
        description: e.description.clone(),
        response: e.response.clone().unwrap_or_default(),
        active: e.state == sluice_model::EventState::Active,
    }
}

/// `GET /ui/hubs/{hub}/jobs?state=&type=&channel=`: the hub's jobs and its newest events,
/// narrowed by the filters asked for: events to those states, types and channels, jobs to those
/// channels. Each key may repeat or list values with commas; an empty value is no filter, and a
/// value that is no state, type or channel name is refused (400).
pub(crate) async fn jobs(
    Extension(viewer): Extension<Viewer>,
    Path(hub): Path<String>,
    query: QueryList,
) -> Page<JobsPage> {
    viewer
        .require_on(&hub, AccessLevel::ReadOnly, "jobs and events")
        .await?;
    let hub = hub_name(&hub)?;
    let filter = sluice_repo::EventFilter {
        hub: Some(hub.clone()),
        states: chosen(&query, "state", sluice_model::EventState::ALL)?,
        types: chosen(&query, "type", sluice_model::EventType::ALL)?,
        channels: chosen_channels(&query)?,
        max_events: Some(EVENT_PAGE),
        ..Default::default()
    };
    let jobs = viewer.service.jobs(&hub).await?;
    let events = viewer.service.events(&filter).await?;
    let channels = viewer.service.channels(&hub).await?;
    Ok(JobsPage {
        chrome: Chrome::new(&viewer, format!("Jobs and events of {hub}")),
        hub: hub.to_string(),
        jobs: jobs
            .iter()
            .filter(|j| filter.channels.is_empty() || filter.channels.contains(j.name.channel()))
            .map(|j| JobRow {
                name: j.name.to_string(),
                state: j.state.to_string(),
                runs: j.num_runs,
                begin: when(j.run_begin),
                end: when(j.run_end),
                event: j.last_event.map(|e| e.to_string()).unwrap_or_default(),
            })
            .collect(),
        events: events.iter().map(event_row).collect(),
        form: filter_form(&filter, channels.into_iter().map(|c| c.name)),
    })
}

/// The values of `key` in `query`, each one of `all` in any case (`failed` is `FAILED`), each
/// once; the first that is none of them is refused.
fn chosen<T: Copy + PartialEq + std::fmt::Display>(
    query: &QueryList,
    key: &str,
    all: &[T],
) -> Result<Vec<T>, Refusal> {
    let mut chosen = Vec::new();
    for v in query.all(key) {
        let t = all
            .iter()
            .copied()
            .find(|t| t.to_string().eq_ignore_ascii_case(&v))
            .ok_or_else(|| {
                let expected: Vec<String> = all.iter().map(ToString::to_string).collect();
                bad_filter(key, &v, &format!("expected one of {}", expected.join(", ")))
            })?;
        if !chosen.contains(&t) {
            chosen.push(t);
        }
    }
    Ok(chosen)
}

/// The most channels the jobs page filters by at once.
const MAX_CHANNEL_FILTER: usize = 50;

/// The channels of the `channel` values in `query`, each once; a value that is no channel name
/// is refused, and so are more than [`MAX_CHANNEL_FILTER`] channels.
fn chosen_channels(query: &QueryList) -> Result<Vec<ChannelName>, Refusal> {
    let mut chosen: Vec<ChannelName> = Vec::new();
    for v in query.all("channel") {
        let name = ChannelName::new(&v).map_err(|e| bad_filter("channel", &v, &e.to_string()))?;
        if !chosen.contains(&name) {
            chosen.push(name);
        }
        if chosen.len() > MAX_CHANNEL_FILTER {
            return Err(bad_filter(
                "channel",
                &v,
                &format!("at most {MAX_CHANNEL_FILTER} channels at once"),
            ));
        }
    }
    Ok(chosen)
}

/// A filter value refused: 400, naming the key and (the start of) the value.
fn bad_filter(key: &str, value: &str, why: &str) -> Refusal {
    let shown: String = value.chars().take(40).collect();
    Refusal::new(
        axum::http::StatusCode::BAD_REQUEST,
        format!("the {key} filter {shown:?} is not valid: {why}"),
    )
}

/// The jobs page's filter form for `filter`, offering every state and type and the hub's
/// `channels` (with a chosen channel the hub no longer has, so its old events stay reachable).
fn filter_form(
    filter: &sluice_repo::EventFilter,
    channels: impl IntoIterator<Item = ChannelName>,
) -> JobsFilterForm {
    fn options<T: PartialEq + std::fmt::Display>(
        all: impl IntoIterator<Item = T>,
        chosen: &[T],
    ) -> Vec<FilterChoice> {
        all.into_iter()
            .map(|v| FilterChoice {
                value: v.to_string(),
                selected: chosen.contains(&v),
            })
            .collect()
    }
    let mut names: Vec<ChannelName> = channels.into_iter().collect();
    names.extend(filter.channels.iter().cloned());
    names.sort();
    names.dedup();
    JobsFilterForm {
        states: options(
            sluice_model::EventState::ALL.iter().copied(),
            &filter.states,
        ),
        types: options(sluice_model::EventType::ALL.iter().copied(), &filter.types),
        channels: options(names, &filter.channels),
        active: !(filter.states.is_empty()
            && filter.types.is_empty()
            && filter.channels.is_empty()),
    }
}

/// `GET /ui/hubs/{hub}/events/{ev}`: one event, its per-table results and its log.
pub(crate) async fn event(
    Extension(viewer): Extension<Viewer>,
    Path((hub, ev)): Path<(String, String)>,
) -> Page<EventPage> {
    viewer
        .require_on(&hub, AccessLevel::ReadOnly, "an event")
        .await?;
    let hub = hub_name(&hub)?;
    let id: EventId = ev.parse().map_err(|_| {
        Refusal::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("event {ev:?} does not exist"),
        )
    })?;
    let (record, log) = viewer.service.event_with_log(&hub, id).await?;
    Ok(EventPage {
        chrome: Chrome::new(&viewer, format!("Event {id}")),
        hub: hub.to_string(),
        event: event_row(&record),
        results: record
            .results
            .iter()
            .map(|r| ResultRow {
                table: r.table.as_ref().map(|t| t.to_string()).unwrap_or_default(),
                name: r.name.to_string(),
                value: r.value.clone(),
            })
            .collect(),
        log: log
            .iter()
            .map(|(t, line)| format!("{} {line}", t.format("%Y-%m-%d %H:%M:%S%.3f")))
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// `GET /ui/hubs/{hub}`: state, freeze and unfreeze, locations with their test.
pub(crate) async fn hub(
    Extension(viewer): Extension<Viewer>,
    Path(hub): Path<String>,
) -> Page<HubPage> {
    viewer
        .require_on(&hub, AccessLevel::ReadOnly, "a hub")
        .await?;
    let hub = hub_name(&hub)?;
    let overview = viewer.service.hub_overview(&hub).await?;
    let record = overview.hub;
    Ok(HubPage {
        chrome: Chrome::new(&viewer, format!("Hub {hub}")),
        hubs: overview.hubs.iter().map(|h| h.to_string()).collect(),
        hub: hub.to_string(),
        description: record.hub.description.clone(),
        frozen: record.state == sluice_model::definition::HubState::Frozen,
        state: record.state.to_string(),
        freeze_time: when(record.freeze_time),
        created: when(Some(record.created)),
        locations: overview
            .locations
            .iter()
            .map(|l| LocationRow {
                name: l.name.to_string(),
                class: l.class.to_string(),
            })
            .collect(),
    })
}

/// `GET /ui/lineage`: the flows of every hub the viewer may read, drawn and listed.
pub(crate) async fn lineage(Extension(viewer): Extension<Viewer>) -> Page<LineagePage> {
    let lineage = viewer
        .service
        .lineage(&viewer.identity.user, viewer.identity.level)
        .await?;
    let label: BTreeMap<&str, &str> = lineage
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n.label.as_str()))
        .collect();
    let flows = lineage
        .edges
        .iter()
        .map(|e| FlowRow {
            source: label.get(e.source.as_str()).unwrap_or(&"").to_string(),
            target: label.get(e.target.as_str()).unwrap_or(&"").to_string(),
            hub: e.hub.to_string(),
            channel: e.channel.to_string(),
            table: e.table.to_string(),
            state: e.state.as_str().to_owned(),
            last_run: e
                .last_run
                .as_ref()
                .map(|r| format!("{} {}", r.kind.as_str(), r.state))
                .unwrap_or_default(),
            when: when(e.last_run.as_ref().map(|r| r.time)),
            replication: e
                .replication
                .as_ref()
                .map(|r| {
                    let s = |j: Option<sluice_model::JobState>| {
                        j.map_or("–".to_owned(), |j| j.to_string())
                    };
                    format!("capture {}, integrate {}", s(r.capture), s(r.integrate))
                })
                .unwrap_or_default(),
        })
        .collect();
    Ok(LineagePage {
        chrome: Chrome::new(&viewer, "Lineage"),
        graph: graph::lineage_svg(&lineage),
        flows,
    })
}
