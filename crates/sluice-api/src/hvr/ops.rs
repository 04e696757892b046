//! Operations: refresh and compare (as jobs, or as a dry run), activate/deactivate, jobs, events,
//! event logs, result lookups and location tests.

use axum::Json as Out;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use sluice_model::{
    AccessLevel, ChannelName, EventId, EventState, JobName, LocationName, ResultName,
};
use sluice_repo::{EventFilter, EventRecord};
use sluice_service::{CompareCommand, CompareRequest, Posted, RefreshCommand, RefreshRequest};
use utoipa::ToSchema;

use super::hub_name;
use crate::error::{ApiError, ApiResult, codes};
use crate::extract::{Caller, Flag, JsonBody, QueryList};

/// Events `GET …/events` answers when the request gives no `max_events`.
pub(crate) const DEFAULT_MAX_EVENTS: usize = 1000;
/// The most `max_events` may ask for.
pub(crate) const MAX_EVENTS: usize = 100_000;

fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn loc_name(field: &str, s: &str) -> ApiResult<LocationName> {
    LocationName::new(s).map_err(|e| ApiError::invalid(format!("{field}: {e}")))
}

/// Fields of HVR's refresh body that sluice does not act on but accepts (they do not change
/// what data arrives).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DifferenceFilter {
    inserts: Option<Flag>,
    updates: Option<Flag>,
    deletes: Option<Flag>,
}

/// `POST …/refresh`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshBody {
    source_loc: String,
    target_loc: String,
    tables: Option<Vec<String>>,
    granularity: Option<String>,
    start_immediate: Option<Flag>,
    parallel_sessions: Option<u32>,
    difference_filter: Option<DifferenceFilter>,
    data_refresh: Option<Flag>,
    slicing: Option<Json>,
    contexts: Option<Json>,
    context_variables: Option<Json>,
    select_moment: Option<Json>,
    // Accepted and ignored: they tune how HVR runs, not what arrives.
    create_tables: Option<Json>,
    online_refresh: Option<Json>,
    start_next_jobs: Option<Json>,
    quota_run: Option<Json>,
    foreign_keys: Option<Json>,
    fire_db_triggers: Option<Json>,
    db_sequences: Option<Json>,
    task: Option<Json>,
    file_preread_subtasks: Option<Json>,
    // sluice extensions.
    mode: Option<String>,
    incremental_column: Option<String>,
    date_buffer_days: Option<u32>,
    strategy: Option<String>,
    batch_rows: Option<usize>,
    dry_run: Option<Flag>,
}

fn unsupported(field: &str, value: &Option<Json>) -> ApiResult<()> {
    match value {
        None | Some(Json::Null) => Ok(()),
        Some(Json::Array(a)) if a.is_empty() => Ok(()),
        Some(Json::Object(o)) if o.is_empty() => Ok(()),
        Some(_) => Err(ApiError::invalid(format!(
            "{field} is not supported by sluice yet"
        ))),
    }
}

fn posted_json(p: &Posted) -> Json {
    json!({
        "posted_ev_id": p.event.to_string(),
        "job": p.job,
        "canceled_ev_ids": p.canceled.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
    })
}

impl RefreshBody {
    /// The request, once the fields sluice cannot honour yet are refused.
    fn request(self, hub: String, channel: String) -> ApiResult<RefreshRequest> {
        unsupported("slicing", &self.slicing)?;
        unsupported("contexts", &self.contexts)?;
        unsupported("context_variables", &self.context_variables)?;
        unsupported("select_moment", &self.select_moment)?;
        if self.data_refresh == Some(Flag(false)) {
            return Err(ApiError::invalid(
                "data_refresh false (create tables only) is not supported by sluice yet",
            ));
        }
        // Accepted and ignored: they tune how HVR runs, not what arrives.
        let _ = (
            self.create_tables,
            self.online_refresh,
            self.start_next_jobs,
            self.quota_run,
            self.foreign_keys,
            self.fire_db_triggers,
            self.db_sequences,
            self.task,
            self.file_preread_subtasks,
        );
        let flag = |f: Option<Flag>| f.map(|f| f.0);
        Ok(RefreshRequest {
            hub,
            channel,
            source_loc: Some(self.source_loc),
            target_loc: Some(self.target_loc),
            tables: self.tables.unwrap_or_default(),
            granularity: self.granularity,
            difference_filter: self
                .difference_filter
                .map(|f| sluice_service::DifferenceFilter {
                    inserts: flag(f.inserts),
                    updates: flag(f.updates),
                    deletes: flag(f.deletes),
                }),
            mode: self.mode,
            incremental_column: self.incremental_column,
            date_buffer_days: self.date_buffer_days,
            strategy: self.strategy,
            batch_rows: self.batch_rows,
            parallel_sessions: self.parallel_sessions,
            count_first: false,
        })
    }
}

pub(crate) async fn refresh(
    caller: Caller,
    Path((hub, channel)): Path<(String, String)>,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult<Response> {
    caller
        .require_on_name(&hub, AccessLevel::ReadExecRefresh)
        .await?;
    let dry_run = body.dry_run.is_some_and(|d| d.0);
    let start = body.start_immediate.is_none_or(|s| s.0);
    let cmd = RefreshCommand::try_from(&body.request(hub, channel)?)?;
    if dry_run {
        let plan = caller.service.plan_refresh(&cmd).await?;
        return Ok(Out(plan).into_response());
    }
    let posted = caller.service.submit_refresh_detached(cmd, start).await?;
    Ok((StatusCode::CREATED, Out(posted_json(&posted))).into_response())
}

/// `POST …/compare`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompareBody {
    source_loc: String,
    target_loc: String,
    tables: Option<Vec<String>>,
    granularity: Option<String>,
    start_immediate: Option<Flag>,
    online_compare: Option<String>,
    slicing: Option<Json>,
    contexts: Option<Json>,
    context_variables: Option<Json>,
    // Accepted and ignored.
    parallel_sessions: Option<u32>,
    quota_run: Option<Json>,
    online_compare_sleep: Option<Json>,
    save_diff_file: Option<Json>,
    prereader_intermediate_files: Option<Json>,
    task: Option<Json>,
    // sluice extensions.
    max_listed: Option<usize>,
    dry_run: Option<Flag>,
}

impl CompareBody {
    /// The request, once the fields sluice cannot honour yet are refused.
    fn request(self, hub: String, channel: String) -> ApiResult<CompareRequest> {
        unsupported("slicing", &self.slicing)?;
        unsupported("contexts", &self.contexts)?;
        unsupported("context_variables", &self.context_variables)?;
        // Accepted and ignored.
        let _ = (
            self.parallel_sessions,
            self.quota_run,
            self.online_compare_sleep,
            self.save_diff_file,
            self.prereader_intermediate_files,
            self.task,
        );
        Ok(CompareRequest {
            hub,
            channel,
            source_loc: Some(self.source_loc),
            target_loc: Some(self.target_loc),
            tables: self.tables.unwrap_or_default(),
            granularity: self.granularity,
            online_compare: self.online_compare,
            max_listed: self.max_listed,
        })
    }
}

pub(crate) async fn compare(
    caller: Caller,
    Path((hub, channel)): Path<(String, String)>,
    JsonBody(body): JsonBody<CompareBody>,
) -> ApiResult<Response> {
    caller.require_on_name(&hub, AccessLevel::ReadExec).await?;
    let dry_run = body.dry_run.is_some_and(|d| d.0);
    let start = body.start_immediate.is_none_or(|s| s.0);
    let cmd = CompareCommand::try_from(&body.request(hub, channel)?)?;
    if dry_run {
        let plan = caller.service.plan_compare(&cmd).await?;
        return Ok(Out(plan).into_response());
    }
    let posted = caller.service.submit_compare_detached(cmd, start).await?;
    Ok((StatusCode::CREATED, Out(posted_json(&posted))).into_response())
}

pub(crate) async fn activate(
    caller: Caller,
    Path((hub, _channel)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_on_name(&hub, AccessLevel::ReadWrite).await?;
    Err(ApiError::invalid(
        "activate is not available yet: sluice does not capture changes yet (refresh and compare are)",
    ))
}

pub(crate) async fn deactivate(
    caller: Caller,
    Path((hub, _channel)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_on_name(&hub, AccessLevel::ReadWrite).await?;
    Err(ApiError::invalid(
        "deactivate is not available yet: sluice does not capture changes yet (refresh and compare are)",
    ))
}

fn job_names(jobs: Vec<String>) -> ApiResult<Vec<JobName>> {
    if jobs.is_empty() {
        return Err(ApiError::invalid("jobs: name at least one job"));
    }
    jobs.iter()
        .map(|j| {
            j.parse::<JobName>()
                .map_err(|e| ApiError::invalid(format!("jobs: {e}")))
        })
        .collect()
}

pub(crate) async fn jobs(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    caller.require_on_name(&hub, AccessLevel::ReadOnly).await?;
    let channels = q.all("channel");
    let wanted = q.all("job");
    let jobs = caller.service.jobs(&hub_name(&hub)?).await?;
    let mut out = Map::new();
    for j in jobs {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == j.name.as_str()) {
            continue;
        }
        if !channels.is_empty() && !channels.iter().any(|c| c == j.name.channel().as_str()) {
            continue;
        }
        let mut o = Map::new();
        o.insert("state".into(), json!(j.state.as_str()));
        o.insert("num_retries".into(), json!(0));
        o.insert("num_runs".into(), json!(j.num_runs));
        if let Some(e) = j.last_event {
            o.insert("last_ev_id".into(), json!(e.to_string()));
        }
        if let Some(t) = j.run_begin {
            o.insert("last_run_begin".into(), json!(ts(t)));
        }
        if let Some(t) = j.run_end {
            o.insert("last_run_end".into(), json!(ts(t)));
            if j.state == sluice_model::JobState::Failed {
                o.insert("log_job_err_tstamp".into(), json!(ts(t)));
            }
        }
        out.insert(j.name.to_string(), Json::Object(o));
    }
    Ok(Out(Json::Object(out)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobsBody {
    #[serde(default)]
    jobs: Vec<String>,
    unsuspend: Option<Flag>,
    trigger_failed: Option<Flag>,
}

pub(crate) async fn jobs_start(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<JobsBody>,
) -> ApiResult<StatusCode> {
    caller.require_on_name(&hub, AccessLevel::ReadExec).await?;
    let _ = (body.unsuspend, body.trigger_failed);
    let jobs = job_names(body.jobs)?;
    caller.service.start_jobs(&hub_name(&hub)?, &jobs).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn jobs_suspend(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<JobsBody>,
) -> ApiResult<StatusCode> {
    caller.require_on_name(&hub, AccessLevel::ReadExec).await?;
    let jobs = job_names(body.jobs)?;
    caller.service.suspend_jobs(&hub_name(&hub)?, &jobs).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn jobs_unsuspend(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<JobsBody>,
) -> ApiResult<StatusCode> {
    caller.require_on_name(&hub, AccessLevel::ReadExec).await?;
    let jobs = job_names(body.jobs)?;
    caller
        .service
        .unsuspend_jobs(&hub_name(&hub)?, &jobs)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn jobs_delete(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<JobsBody>,
) -> ApiResult<Out<Json>> {
    caller.require_on_name(&hub, AccessLevel::ReadExec).await?;
    let jobs = job_names(body.jobs)?;
    let canceled = caller.service.delete_jobs(&hub_name(&hub)?, &jobs).await?;
    Ok(Out(
        json!({"canceled_ev_ids": canceled.iter().map(|e| e.to_string()).collect::<Vec<_>>()}),
    ))
}

pub(crate) async fn delete_job(
    caller: Caller,
    Path((hub, job)): Path<(String, String)>,
) -> ApiResult<Out<Json>> {
    caller.require_on_name(&hub, AccessLevel::ReadExec).await?;
    let job: JobName = job
        .parse()
        .map_err(|e| ApiError::not_found(format!("job {job:?} does not exist ({e})")))?;
    let canceled = caller.service.delete_jobs(&hub_name(&hub)?, &[job]).await?;
    Ok(Out(
        json!({"canceled_ev_ids": canceled.iter().map(|e| e.to_string()).collect::<Vec<_>>()}),
    ))
}

/// An instant from a query: ISO-8601 or epoch seconds.
pub(crate) fn parse_time(s: &str) -> ApiResult<chrono::DateTime<chrono::Utc>> {
    if let Ok(secs) = s.parse::<i64>() {
        return chrono::DateTime::from_timestamp(secs, 0)
            .ok_or_else(|| ApiError::invalid(format!("time {s:?} is out of range")));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f")
                .map(|n| n.and_utc())
        })
        .map_err(|_| {
            ApiError::invalid(format!(
                "time {s:?}: expected ISO-8601 (…Z) or epoch seconds"
            ))
        })
}

fn parse_list<T: std::str::FromStr>(q: &QueryList, key: &str) -> ApiResult<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    q.all(key)
        .iter()
        .map(|v| {
            v.parse::<T>()
                .map_err(|e| ApiError::invalid(format!("{key}: {e}")))
        })
        .collect()
}

fn event_json(e: &EventRecord, with_results: bool) -> Json {
    let mut o = Map::new();
    o.insert("type".into(), json!(e.event_type.as_str()));
    o.insert("user".into(), json!(e.user));
    o.insert("description".into(), json!(e.description));
    if let Some(c) = &e.channel {
        o.insert("channel".into(), json!(c));
    }
    if let Some(l) = &e.loc {
        o.insert("loc".into(), json!(l));
    }
    if let Some(l) = &e.loc2 {
        o.insert("loc2".into(), json!(l));
    }
    if let Some(j) = &e.job {
        o.insert("job".into(), json!(j));
    }
    o.insert("state".into(), json!(e.state.as_str()));
    o.insert("num_retries".into(), json!(e.num_retries));
    if let Some(r) = &e.response {
        o.insert("response".into(), json!(r));
    }
    o.insert("start_tstamp".into(), json!(ts(e.start)));
    if let Some(f) = e.finish {
        o.insert("finish_tstamp".into(), json!(ts(f)));
    }
    // HVR keeps the request as a JSON string.
    let request = e.body.get("request").unwrap_or(&e.body);
    o.insert("body".into(), json!(request.to_string()));
    if with_results {
        let results: Vec<Json> = e
            .results
            .iter()
            .map(|r| {
                let mut x = Map::new();
                if let Some(t) = &r.table {
                    x.insert("table".into(), json!(t));
                }
                x.insert("result".into(), json!(r.name.as_str()));
                x.insert("value".into(), json!(r.value));
                Json::Object(x)
            })
            .collect();
        o.insert("results".into(), Json::Array(results));
    }
    Json::Object(o)
}

pub(crate) async fn events(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    caller.require_on_name(&hub, AccessLevel::ReadOnly).await?;
    let fetch_results = q.flag("fetch_results", false)?;
    let result_names: Vec<ResultName> = q
        .all("result_pattern")
        .iter()
        .flat_map(|p| p.split('|').map(str::to_owned).collect::<Vec<_>>())
        .map(|n| {
            n.parse::<ResultName>()
                .map_err(|e| ApiError::invalid(format!("result_pattern: {e}")))
        })
        .collect::<ApiResult<_>>()?;
    // Without max_events a page holds the newest DEFAULT_MAX_EVENTS: a long-lived hub has
    // millions of events, and one request must not read them all.
    let max_events = match q.one("max_events") {
        None | Some("") => DEFAULT_MAX_EVENTS,
        Some(m) => match m.parse::<usize>() {
            Ok(n) if (1..=MAX_EVENTS).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(format!(
                    "max_events: expected a number from 1 to {MAX_EVENTS}, got {m:?}"
                )));
            }
        },
    };
    let max_events = Some(max_events);
    let filter = EventFilter {
        hub: Some(hub_name(&hub)?),
        channels: parse_list(&q, "channel")?,
        types: parse_list(&q, "type")?,
        states: parse_list::<EventState>(&q, "state")?,
        jobs: parse_list(&q, "job")?,
        ids: q
            .all("ev_id")
            .iter()
            .map(|i| {
                i.replace('%', ":")
                    .parse::<EventId>()
                    .map_err(|e| ApiError::invalid(format!("ev_id: {e}")))
            })
            .collect::<ApiResult<_>>()?,
        fetch_results,
        max_events,
        loc: q.one("loc").map(|l| loc_name("loc", l)).transpose()?,
        begin: q.one("ev_tstamp_begin").map(parse_time).transpose()?,
        end: q.one("ev_tstamp_end").map(parse_time).transpose()?,
        result_names,
        result_tables: parse_list(&q, "result_table")?,
    };
    let current_only = q.flag("current_only", false)?;
    let body_pattern = q.one("body_pattern").map(str::to_owned);
    let events = caller.service.events(&filter).await?;
    let mut out = Map::new();
    for e in &events {
        if current_only && e.state != EventState::Active {
            continue;
        }
        if let Some(p) = &body_pattern
            && !e.body.to_string().contains(p.as_str())
        {
            continue;
        }
        out.insert(e.id.to_string(), event_json(e, fetch_results));
    }
    Ok(Out(Json::Object(out)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelBody {
    #[serde(default)]
    ev_ids: Vec<String>,
}

pub(crate) async fn events_cancel(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<CancelBody>,
) -> ApiResult<StatusCode> {
    caller.require_on_name(&hub, AccessLevel::ReadExec).await?;
    if body.ev_ids.is_empty() {
        return Err(ApiError::invalid("ev_ids: name at least one event"));
    }
    let ids: Vec<EventId> = body
        .ev_ids
        .iter()
        .map(|i| {
            i.replace('%', ":")
                .parse::<EventId>()
                .map_err(|e| ApiError::invalid(format!("ev_ids: {e}")))
        })
        .collect::<ApiResult<_>>()?;
    caller.service.cancel_events(&hub_name(&hub)?, &ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn event_log(
    caller: Caller,
    Path((hub, ev_id)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Response> {
    caller.require_on_name(&hub, AccessLevel::ReadOnly).await?;
    let id: EventId = ev_id
        .replace('%', ":")
        .parse()
        .map_err(|e| ApiError::not_found(format!("event {ev_id:?} does not exist ({e})")))?;
    let exists = caller
        .service
        .events(&EventFilter {
            hub: Some(hub_name(&hub)?),
            ids: vec![id],
            ..Default::default()
        })
        .await?;
    if exists.is_empty() {
        return Err(ApiError::not_found(format!("event {ev_id} does not exist")));
    }
    let max_lines = q
        .one("max_lines")
        .map(|m| {
            m.parse::<usize>()
                .map_err(|_| ApiError::invalid("max_lines: expected a number"))
        })
        .transpose()?;
    let lines = caller.service.event_log(id).await?;
    let skip = max_lines.map_or(0, |m| lines.len().saturating_sub(m));
    let mut text = String::new();
    for (t, line) in lines.iter().skip(skip) {
        text.push_str(&format!("{}: {line}\n", ts(*t)));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocTestBody {
    channel: Option<String>,
}

pub(crate) async fn test_location(
    caller: Caller,
    Path((hub, loc)): Path<(String, String)>,
    JsonBody(body): JsonBody<LocTestBody>,
) -> ApiResult<Out<Json>> {
    caller.require_on_name(&hub, AccessLevel::ReadExec).await?;
    let hub = hub_name(&hub)?;
    if let Some(ch) = &body.channel {
        let exists = match ChannelName::new(ch) {
            Ok(name) => caller.service.channel(&hub, &name).await.is_ok(),
            Err(_) => false,
        };
        if !exists {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::UNKNOWN_CHANNEL,
                format!("channel {ch} does not exist"),
            ));
        }
    }
    let loc = LocationName::new(&loc)
        .map_err(|e| ApiError::not_found(format!("location {loc:?} does not exist ({e})")))?;
    let report = caller.service.test_location(&hub, &loc).await?;
    Ok(Out(json!({ "discovered_props": report.discovered_props })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewLocTestBody {
    props: Json,
}

pub(crate) async fn test_new_location(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<NewLocTestBody>,
) -> ApiResult<Out<Json>> {
    caller.require_on_name(&hub, AccessLevel::ReadWrite).await?;
    let doc = super::wire::location_in(&json!({ "props": body.props }), "props")?;
    let report = caller
        .service
        .test_location_document(&hub_name(&hub)?, &doc)
        .await?;
    Ok(Out(json!({ "discovered_props": report.discovered_props })))
}
