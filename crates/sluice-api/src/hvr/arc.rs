//! HVR: activate, refresh and compare results, contexts, slicing suggestions and control messages
//! (the rest of HVR's "Activate, Refresh, and Compare Interface" and its "Control Message
//! Interface").
//!
//! The activation state of a channel's locations comes from its activation record and its capture
//! and integrate jobs (see `sluice_service::replication`); there are no open transactions or
//! integrate points to show, and there are no capture or integrate tasks that take control
//! messages; each answers that truthfully in HVR's shape.

use std::collections::BTreeSet;

use axum::Json as Out;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use sluice_model::definition::{ActionType, Channel};
use sluice_model::{
    AccessLevel, ChannelName, EventType, HubName, JobName, JobState, JobType, LocationName,
};
use sluice_repo::EventFilter;
use sluice_service::replication::{ReplicationStatus, capture_job, integrate_job};
use utoipa::ToSchema;

use super::{channel_name, hub_name, loc_name, table_name};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Flag, JsonBody, QueryList};

pub(crate) fn routes() -> Router<AppState> {
    const H: &str = "/api/latest/hubs/{hub}";
    const C: &str = "/api/latest/hubs/{hub}/channels/{channel}";
    Router::new()
        .route(&format!("{H}/activate"), get(hub_activate))
        .route(&format!("{H}/locs/{{loc}}/activate"), get(loc_activate))
        .route(
            &format!("{C}/activate"),
            get(channel_activate).post(super::ops::activate),
        )
        .route(
            &format!("{H}/refresh/tables_results_ids"),
            get(hub_refresh_results_ids),
        )
        .route(
            &format!("{H}/compare/tables_results_ids"),
            get(hub_compare_results_ids),
        )
        .route(
            &format!("{C}/refresh/tables_results_ids"),
            get(channel_refresh_results_ids),
        )
        .route(
            &format!("{C}/compare/tables_results_ids"),
            get(channel_compare_results_ids),
        )
        .route(&format!("{C}/contexts"), get(contexts))
        .route(
            &format!("{C}/locs/{{loc}}/capture_open_tx"),
            get(capture_open_tx),
        )
        .route(
            &format!("{C}/locs/{{loc}}/integrate_point"),
            get(integrate_point),
        )
        .route(
            &format!("{C}/locs/{{loc}}/slicing_suggest"),
            post(slicing_suggest),
        )
        .route(
            &format!("{C}/locs/{{loc}}/tables/{{table}}/slicing_boundaries"),
            post(slicing_boundaries),
        )
        .route(&format!("{C}/controls"), get(controls))
        .route(&format!("{C}/controls/{{ctrl_id}}"), get(control))
        .route(&format!("{C}/controls_delete"), post(controls_delete))
        .route(
            &format!("{C}/locs/{{loc}}/tasks/{{task}}/controls"),
            post(send_control),
        )
}

/// The hub (checked to exist) and the caller's level on it checked.
async fn hub_for(caller: &Caller, hub: &str, level: AccessLevel) -> ApiResult<HubName> {
    let hub = hub_name(hub)?;
    caller.require_on(&hub, level).await?;
    caller.service.hub(&hub).await?;
    Ok(hub)
}

/// The channel of `hub`, answering 404 when it does not exist.
pub(super) async fn channel_of(
    caller: &Caller,
    hub: &HubName,
    channel: &str,
) -> ApiResult<Channel> {
    Ok(caller.service.channel(hub, &channel_name(channel)?).await?)
}

/// A member location of `channel`, answering 404 when it is not one.
pub(super) fn member(channel: &Channel, loc: &str) -> ApiResult<LocationName> {
    let name = loc_name(loc)?;
    if channel.group_of(&name).is_none() {
        return Err(ApiError::not_found(format!(
            "location {loc} is not a member of channel {}",
            channel.name
        )));
    }
    Ok(name)
}

// ---- activation state ----

/// One component of a location's activation state that is not there.
fn not_activated() -> Json {
    json!({"found": false, "missing": true, "lossy_reactivate": false})
}

/// One component that is there.
fn present() -> Json {
    json!({"found": true, "missing": false, "lossy_reactivate": false})
}

/// The activation state of location `loc` of a channel, as HVR shapes it. Of an activated
/// channel: `router_files` stands for the activation record the hub keeps, `jobs` for the
/// location's capture (source) or integrate (target) job, `enroll` for what capture created at
/// the source (publication and slot), `state_tables` for the checkpoint integrate keeps at a
/// target (activating again replaces it, so it is lossy).
fn loc_state(activation: Option<&ReplicationStatus>, loc: &LocationName) -> Json {
    let Some(a) = activation else {
        return json!({"jobs": not_activated(), "router_files": not_activated()});
    };
    let is_source = a.source == *loc;
    if !is_source && !a.targets.contains(loc) {
        return json!({"jobs": not_activated(), "router_files": not_activated()});
    }
    let job = if is_source {
        capture_job(&a.channel, loc)
    } else {
        integrate_job(&a.channel, loc)
    };
    let mut jobs = match a.jobs.iter().find(|(j, _)| *j == job) {
        Some((_, state)) => {
            let mut j = present();
            j["running"] = json!(*state == JobState::Running);
            j
        }
        None => not_activated(),
    };
    if a.state == "loading"
        && let Ok(activating) = JobName::new(&a.channel, JobType::Activate, &[])
    {
        jobs["activating"] = json!(activating.as_str());
    }
    let mut state = json!({"jobs": jobs, "router_files": present()});
    if is_source {
        state["enroll"] = present();
    } else {
        state["state_tables"] = json!({"lossy_reactivate": true});
    }
    state
}

/// `{loc: state}` for the members of `channel` that `locs` keeps (all when empty).
fn channel_state(
    channel: &Channel,
    activation: Option<&ReplicationStatus>,
    locs: &[String],
) -> Map<String, Json> {
    channel
        .locations()
        .filter(|l| locs.is_empty() || locs.iter().any(|w| w == l.as_str()))
        .map(|l| (l.to_string(), loc_state(activation, l)))
        .collect()
}

async fn hub_activate(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let wanted = q.all("channels");
    let locs = q.all("locs");
    for name in &wanted {
        channel_of(&caller, &hub, name).await?;
    }
    let mut out = Map::new();
    for channel in caller.service.channels(&hub).await? {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == channel.name.as_str()) {
            continue;
        }
        let activation = caller
            .service
            .replication_status(&hub, &channel.name)
            .await?;
        let state = channel_state(&channel, activation.as_ref(), &locs);
        if !state.is_empty() {
            out.insert(channel.name.to_string(), Json::Object(state));
        }
    }
    Ok(Out(Json::Object(out)))
}

async fn channel_activate(
    caller: Caller,
    Path((hub, channel)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let channel = channel_of(&caller, &hub, &channel).await?;
    let locs = q.all("locs");
    for loc in &locs {
        member(&channel, loc)?;
    }
    let activation = caller
        .service
        .replication_status(&hub, &channel.name)
        .await?;
    Ok(Out(Json::Object(channel_state(
        &channel,
        activation.as_ref(),
        &locs,
    ))))
}

async fn loc_activate(
    caller: Caller,
    Path((hub, loc)): Path<(String, String)>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let loc = caller.service.location(&hub, &loc_name(&loc)?).await?.name;
    let mut out = Map::new();
    for channel in caller.service.channels(&hub).await? {
        if channel.group_of(&loc).is_some() {
            let activation = caller
                .service
                .replication_status(&hub, &channel.name)
                .await?;
            out.insert(
                channel.name.to_string(),
                loc_state(activation.as_ref(), &loc),
            );
        }
    }
    Ok(Out(Json::Object(out)))
}

// ---- refresh and compare results ----

/// Whether a result name matches HVR's `result_pattern` (`|`-separated names, `*` any text).
fn matches_pattern(pattern: &str, name: &str) -> bool {
    pattern.split('|').any(|p| glob(p.trim(), name))
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob(rest, &tail[i..]))
        }
    }
}

/// `{channel: {ev_id: [tables]}}` of the refresh or compare events of `hub` the query keeps.
async fn results_ids(
    caller: &Caller,
    hub: &HubName,
    channels: Vec<ChannelName>,
    q: &QueryList,
    event_type: EventType,
) -> ApiResult<Map<String, Json>> {
    let wanted_tables = q.all("table");
    let source = q.one("source_loc").map(str::to_owned);
    let target = q.one("target_loc").map(str::to_owned);
    let pattern = q.one("result_pattern").map(str::to_owned);
    if pattern.as_deref().is_some_and(|p| p.len() > 4000) {
        return Err(ApiError::invalid("result_pattern: longer than 4000 bytes"));
    }
    let begin = q
        .one("ev_tstamp_begin")
        .map(super::ops::parse_time)
        .transpose()?;
    let end = q
        .one("ev_tstamp_end")
        .map(super::ops::parse_time)
        .transpose()?;
    let events = caller
        .service
        .events(&EventFilter {
            hub: Some(hub.clone()),
            channels,
            types: vec![event_type],
            fetch_results: true,
            begin,
            end,
            ..Default::default()
        })
        .await?;
    let mut out: Map<String, Json> = Map::new();
    for e in events {
        let Some(channel) = &e.channel else { continue };
        if source
            .as_deref()
            .is_some_and(|s| e.loc.as_ref().is_none_or(|l| l.as_str() != s))
            || target
                .as_deref()
                .is_some_and(|t| e.loc2.as_ref().is_none_or(|l| l.as_str() != t))
        {
            continue;
        }
        let tables: BTreeSet<String> = e
            .results
            .iter()
            .filter(|r| {
                pattern
                    .as_deref()
                    .is_none_or(|p| matches_pattern(p, r.name.as_str()))
            })
            .filter_map(|r| r.table.as_ref().map(|t| t.to_string()))
            .filter(|t| wanted_tables.is_empty() || wanted_tables.contains(t))
            .collect();
        if tables.is_empty() {
            continue;
        }
        let by_event = out
            .entry(channel.to_string())
            .or_insert_with(|| Json::Object(Map::new()));
        if let Json::Object(by_event) = by_event {
            by_event.insert(e.id.to_string(), json!(tables));
        }
    }
    Ok(out)
}

async fn hub_results_ids(
    caller: Caller,
    hub: String,
    q: QueryList,
    event_type: EventType,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let channels = q
        .all("channel")
        .iter()
        .map(|c| ChannelName::new(c).map_err(|e| ApiError::invalid(format!("channel {c:?}: {e}"))))
        .collect::<ApiResult<Vec<_>>>()?;
    let out = results_ids(&caller, &hub, channels, &q, event_type).await?;
    Ok(Out(Json::Object(out)))
}

async fn hub_refresh_results_ids(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    hub_results_ids(caller, hub, q, EventType::Refresh).await
}

async fn hub_compare_results_ids(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    hub_results_ids(caller, hub, q, EventType::Compare).await
}

async fn channel_results_ids(
    caller: Caller,
    hub: String,
    channel: String,
    q: QueryList,
    event_type: EventType,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let channel = channel_name(&channel)?;
    let mut out = results_ids(&caller, &hub, vec![channel.clone()], &q, event_type).await?;
    Ok(Out(out
        .remove(channel.as_str())
        .unwrap_or_else(|| Json::Object(Map::new()))))
}

async fn channel_refresh_results_ids(
    caller: Caller,
    Path((hub, channel)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    channel_results_ids(caller, hub, channel, q, EventType::Refresh).await
}

async fn channel_compare_results_ids(
    caller: Caller,
    Path((hub, channel)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    channel_results_ids(caller, hub, channel, q, EventType::Compare).await
}

// ---- contexts, open transactions, integrate points ----

async fn contexts(
    caller: Caller,
    Path((hub, channel)): Path<(String, String)>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let channel = channel_of(&caller, &hub, &channel).await?;
    let (contexts, variables) = sluice_service::context::channel_contexts(&channel);
    Ok(Out(
        json!({"contexts": contexts, "context_variables": variables}),
    ))
}

async fn capture_open_tx(
    caller: Caller,
    Path((hub, channel, loc)): Path<(String, String, String)>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let channel = channel_of(&caller, &hub, &channel).await?;
    let loc = member(&channel, &loc)?;
    if !channel
        .locations_with_action(ActionType::Capture)
        .contains(&&loc)
    {
        return Err(ApiError::invalid(format!(
            "no capture tables defined: location {loc} has no Capture action in channel {}",
            channel.name
        )));
    }
    // sluice does not capture changes yet: no capture holds a transaction open.
    Ok(Out(json!({
        "request_time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "num_open_tx": 0,
    })))
}

async fn integrate_point(
    caller: Caller,
    Path((hub, channel, loc)): Path<(String, String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let channel = channel_of(&caller, &hub, &channel).await?;
    member(&channel, &loc)?;
    if let Some(orig) = q.one("orig_channel") {
        channel_of(&caller, &hub, orig).await?;
    }
    if let Some(orig) = q.one("orig_integ_loc") {
        caller.service.location(&hub, &loc_name(orig)?).await?;
    }
    // Nothing has been integrated from any capture location: sluice does not capture yet.
    Ok(Out(json!({})))
}

// ---- slicing suggestions ----

/// `POST …/locs/{loc}/slicing_suggest`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SlicingSuggestBody {
    /// Rows a slice should hold about (digits, or a number).
    rows_per_slice: Option<Json>,
    max_slices_per_table: Option<i64>,
    repeat_last_refresh_slicing: Option<Flag>,
    repeat_last_compare_slicing: Option<Flag>,
    suggest_from_last_refresh_rows: Option<Flag>,
    suggest_from_last_compare_rows: Option<Flag>,
    suggest_from_db_stats: Option<Flag>,
    tables: Option<Vec<String>>,
}

async fn slicing_suggest(
    caller: Caller,
    Path((hub, channel, loc)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<SlicingSuggestBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let channel = channel_of(&caller, &hub, &channel).await?;
    let loc = member(&channel, &loc)?;
    let rows_per_slice = match body.rows_per_slice {
        None => None,
        Some(Json::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => n.as_u64(),
        Some(Json::String(s)) if s.parse::<u64>().is_ok_and(|n| n > 0) => s.parse().ok(),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "rows_per_slice: expected a positive number of rows, got {other}"
            )));
        }
    };
    let max_slices_per_table = body
        .max_slices_per_table
        .map(|m| match u32::try_from(m) {
            Ok(m) if (1..=sluice_service::slicing::MAX_SLICES).contains(&m) => Ok(m),
            _ => Err(ApiError::invalid(format!(
                "max_slices_per_table: expected 1 to {}, got {m}",
                sluice_service::slicing::MAX_SLICES
            ))),
        })
        .transpose()?;
    let tables = body
        .tables
        .unwrap_or_default()
        .iter()
        .map(|t| table_name(t))
        .collect::<ApiResult<Vec<_>>>()?;
    let on = |f: Option<Flag>| f.is_some_and(|f| f.0);
    let req = sluice_service::slicing::SuggestRequest {
        rows_per_slice,
        max_slices_per_table,
        repeat_last_refresh_slicing: on(body.repeat_last_refresh_slicing),
        repeat_last_compare_slicing: on(body.repeat_last_compare_slicing),
        suggest_from_last_refresh_rows: on(body.suggest_from_last_refresh_rows),
        suggest_from_last_compare_rows: on(body.suggest_from_last_compare_rows),
        suggest_from_db_stats: on(body.suggest_from_db_stats),
        tables,
    };
    let suggestions = caller
        .service
        .slicing_suggest(&hub, &channel.name, &loc, &req)
        .await?;
    let mut out = Map::new();
    for (table, s) in suggestions {
        let mut o = Map::new();
        o.insert("based_on".into(), json!(s.based_on));
        if let Some(ev) = s.ev_id {
            o.insert("ev_id".into(), json!(ev.to_string()));
        }
        if let Some(rows) = s.row_estimate {
            o.insert("row_estimate".into(), json!(rows.to_string()));
        }
        match s.slicing {
            Some(slicing) => {
                o.insert("slicing".into(), slicing);
            }
            None if s.row_estimate.is_some() => {
                o.insert("no_slicing".into(), json!(true));
            }
            None => {}
        }
        out.insert(table.to_string(), Json::Object(o));
    }
    Ok(Out(Json::Object(out)))
}

/// `POST …/tables/{table}/slicing_boundaries`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SlicingBoundariesBody {
    col: String,
    slices: i64,
}

async fn slicing_boundaries(
    caller: Caller,
    Path((hub, channel, loc, table)): Path<(String, String, String, String)>,
    JsonBody(body): JsonBody<SlicingBoundariesBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let channel = channel_of(&caller, &hub, &channel).await?;
    let loc = member(&channel, &loc)?;
    let table = table_name(&table)?;
    let col = sluice_model::ColumnName::new(&body.col)
        .map_err(|e| ApiError::invalid(format!("col: {e}")))?;
    let slices = u32::try_from(body.slices).map_err(|_| {
        ApiError::invalid(format!(
            "slices: expected 1 to {}, got {}",
            sluice_service::slicing::MAX_SLICES,
            body.slices
        ))
    })?;
    let b = caller
        .service
        .slicing_boundaries(&hub, &channel.name, &loc, &table, &col, slices)
        .await?;
    let mut out = Map::new();
    for (key, values) in [
        ("int_boundaries", b.int_boundaries),
        ("date_boundaries", b.date_boundaries),
        ("str_boundaries", b.str_boundaries),
    ] {
        if !values.is_empty() {
            out.insert(key.into(), json!(values));
        }
    }
    Ok(Out(Json::Object(out)))
}

// ---- control messages ----

/// Why no control message can be sent or found.
const NO_TASKS: &str = "sluice's capture and integrate jobs take no control messages; to \
     stop or pause one, suspend its job (POST …/jobs_suspend, started again by jobs_unsuspend), \
     or deactivate the channel; a refresh or compare stops when its event is cancelled \
     (POST …/events_cancel)";

fn task_name(task: &str) -> ApiResult<&'static str> {
    match task {
        "cap" => Ok("cap"),
        "integ" => Ok("integ"),
        other => Err(ApiError::invalid(format!(
            "task_name: expected \"cap\" or \"integ\", got {other:?}"
        ))),
    }
}

async fn controls(
    caller: Caller,
    Path((hub, channel)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let channel = channel_of(&caller, &hub, &channel).await?;
    if let Some(task) = q.one("task_name") {
        task_name(task)?;
    }
    for loc in q.all("loc_name") {
        member(&channel, &loc)?;
    }
    // No control is ever accepted (see NO_TASKS): the list of ids is empty.
    Ok(Out(json!("")))
}

async fn control(
    caller: Caller,
    Path((hub, channel, ctrl_id)): Path<(String, String, String)>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    channel_of(&caller, &hub, &channel).await?;
    Err(ApiError::not_found(format!(
        "control {ctrl_id:?} does not exist: {NO_TASKS}"
    )))
}

/// `POST …/controls_delete`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ControlsDeleteBody {
    ctrl_ids: Vec<String>,
}

async fn controls_delete(
    caller: Caller,
    Path((hub, channel)): Path<(String, String)>,
    JsonBody(body): JsonBody<ControlsDeleteBody>,
) -> ApiResult<StatusCode> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadExec).await?;
    channel_of(&caller, &hub, &channel).await?;
    let Some(first) = body.ctrl_ids.first() else {
        return Err(ApiError::invalid("ctrl_ids: name at least one control"));
    };
    Err(ApiError::not_found(format!(
        "control {first:?} does not exist: {NO_TASKS}"
    )))
}

/// A `where` condition of a control's filter.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
// Parsed to refuse what HVR refuses; sluice has no task to act on the rest.
#[allow(dead_code)]
pub(crate) struct ControlWhere {
    col: String,
    op: String,
    val_str: Option<Vec<String>>,
    val_int: Option<Vec<String>>,
    val_date: Option<Vec<String>>,
    val_len: Option<Vec<String>>,
}

/// A filter of a control message.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
// Parsed to refuse what HVR refuses; sluice has no task to act on the rest.
#[allow(dead_code)]
pub(crate) struct ControlFilter {
    tables: Option<Vec<String>>,
    #[serde(rename = "where")]
    conditions: Option<Vec<ControlWhere>>,
    force_failed_rows: Option<Flag>,
    resilient: Option<Flag>,
    skip_rows: Option<Flag>,
    set_missing_cols: Option<Vec<String>>,
}

/// An environment variable a control message sets.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
// Parsed to refuse what HVR refuses; sluice has no task to act on the rest.
#[allow(dead_code)]
pub(crate) struct ControlEnv {
    name: String,
    value: String,
}

/// `POST …/locs/{loc}/tasks/{task}/controls`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
// Parsed to refuse what HVR refuses; sluice has no task to act on the rest.
#[allow(dead_code)]
pub(crate) struct ControlBody {
    ctrl_name: Option<String>,
    filters: Option<Vec<ControlFilter>>,
    set_env: Option<Vec<ControlEnv>>,
    journaling: Option<Flag>,
    finish_after_cycle: Option<Flag>,
    expiry_date: Option<String>,
    recv_expiry: Option<String>,
}

const OPS: &[&str] = &["=", "!=", "<>", ">", "<", ">=", "<=", ">>", "<<", "%="];

impl ControlBody {
    /// Refuses what HVR would refuse: an operator it does not know, a control without a name.
    fn check(&self) -> ApiResult<()> {
        if self.ctrl_name.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::invalid("ctrl_name: missing"));
        }
        for f in self.filters.iter().flatten() {
            for w in f.conditions.iter().flatten() {
                if !OPS.contains(&w.op.as_str()) {
                    return Err(ApiError::invalid(format!(
                        "filters: where: op {:?} is not one of {}",
                        w.op,
                        OPS.join(" ")
                    )));
                }
            }
        }
        Ok(())
    }
}

async fn send_control(
    caller: Caller,
    Path((hub, channel, loc, task)): Path<(String, String, String, String)>,
    JsonBody(body): JsonBody<ControlBody>,
) -> ApiResult<StatusCode> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadWrite).await?;
    let channel = channel_of(&caller, &hub, &channel).await?;
    let loc = member(&channel, &loc)?;
    let task = task_name(&task)?;
    body.check()?;
    Err(ApiError::new(
        StatusCode::CONFLICT,
        crate::error::codes::CONFLICT,
        format!(
            "job {}-{task}-{loc} does not exist: {NO_TASKS}",
            channel.name
        ),
    ))
}
