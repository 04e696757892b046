//! Operations: refresh and compare (as jobs, or as a dry run), activate/deactivate, jobs, events,
//! event logs and result lookups.

use axum::Json as Out;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use sluice_model::AccessLevel;
use sluice_service::{CompareCommand, CompareRequest, Posted, RefreshCommand, RefreshRequest};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Flag, JsonBody};

pub(crate) fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
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

/// HVR's `slicing` of one table.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SlicingBody {
    /// `count`, `boundary`, `modulo` or `series`.
    #[serde(rename = "type")]
    method: String,
    col: Option<String>,
    slices: Option<i64>,
    str_boundaries: Option<Vec<String>>,
    /// Integers, as JSON numbers or strings of digits.
    int_boundaries: Option<Vec<Json>>,
    date_boundaries: Option<Vec<String>>,
    series_values: Option<Vec<String>>,
    selection: Option<Vec<i64>>,
}

/// The slicing of a request, per table, as the service takes it.
fn slicing_requests(
    slicing: Option<std::collections::BTreeMap<String, SlicingBody>>,
) -> ApiResult<Vec<(String, sluice_service::SlicingRequest)>> {
    slicing
        .unwrap_or_default()
        .into_iter()
        .map(|(table, b)| {
            let int_boundaries = b
                .int_boundaries
                .map(|values| {
                    values
                        .into_iter()
                        .map(|v| match v {
                            Json::Number(n) if n.is_i64() => Ok(n.to_string()),
                            Json::String(s) => Ok(s),
                            other => Err(ApiError::invalid(format!(
                                "slicing.{table}: int_boundaries: {other} is not an integer"
                            ))),
                        })
                        .collect::<ApiResult<Vec<_>>>()
                })
                .transpose()?;
            Ok((
                table,
                sluice_service::SlicingRequest {
                    method: b.method,
                    col: b.col,
                    slices: b.slices,
                    str_boundaries: b.str_boundaries,
                    int_boundaries,
                    date_boundaries: b.date_boundaries,
                    series_values: b.series_values,
                    selection: b.selection,
                },
            ))
        })
        .collect()
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
    slicing: Option<std::collections::BTreeMap<String, SlicingBody>>,
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
            slicing: slicing_requests(self.slicing)?,
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
    slicing: Option<std::collections::BTreeMap<String, SlicingBody>>,
    contexts: Option<Json>,
    context_variables: Option<Json>,
    // Accepted and ignored.
    parallel_sessions: Option<u32>,
    quota_run: Option<Json>,
    online_compare_sleep: Option<u64>,
    save_diff_file: Option<Json>,
    prereader_intermediate_files: Option<Json>,
    task: Option<Json>,
    // sluice extensions.
    max_listed: Option<usize>,
    dry_run: Option<Flag>,
    /// sluice: narrow the compare with per-key-range row counts and checksums computed in the
    /// databases, reading only the rows of ranges that differ, where both locations checksum in
    /// the same dialect (default true); false reads every row.
    pushdown: Option<Flag>,
}

impl CompareBody {
    /// The request, once the fields sluice cannot honour yet are refused.
    fn request(self, hub: String, channel: String) -> ApiResult<CompareRequest> {
        unsupported("contexts", &self.contexts)?;
        unsupported("context_variables", &self.context_variables)?;
        // Accepted and ignored.
        let _ = (
            self.parallel_sessions,
            self.quota_run,
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
            online_compare_sleep: self.online_compare_sleep,
            max_listed: self.max_listed,
            pushdown: self.pushdown.map(|p| p.0),
            slicing: slicing_requests(self.slicing)?,
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

/// `POST …/activate`: HVR's parameters; `refresh` (a sluice extension) loads the targets from
/// the snapshot capture starts at.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActivateBody {
    locs: Option<Vec<String>>,
    tables: Option<Vec<String>>,
    components: Option<Vec<String>>,
    start_immediate: Option<Flag>,
    start_next_ev_ids: Option<Vec<String>>,
    start_next_jobs: Option<Vec<String>>,
    rewind_scan_start: Option<Json>,
    rewind_emit: Option<Json>,
    // Accepted and ignored: they tune how HVR runs, not what arrives.
    parallel_locs: Option<u32>,
    replace_enroll: Option<Flag>,
    // sluice extension.
    refresh: Option<Flag>,
}

/// `POST …/deactivate`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeactivateBody {
    locs: Option<Vec<String>>,
    tables: Option<Vec<String>>,
    components: Option<Vec<String>>,
    // Accepted and ignored.
    parallel_locs: Option<u32>,
    start_immediate: Option<Flag>,
}

/// Refuses a part of a channel (some locations or tables, some components): sluice activates and
/// deactivates a channel as a whole.
fn whole_channel(field: &str, value: &Option<Vec<String>>) -> ApiResult<()> {
    match value {
        Some(v) if !v.is_empty() => Err(ApiError::invalid(format!(
            "{field}: sluice activates and deactivates a channel as a whole; leave {field} out"
        ))),
        _ => Ok(()),
    }
}

pub(crate) async fn activate(
    caller: Caller,
    Path((hub, channel)): Path<(String, String)>,
    JsonBody(body): JsonBody<ActivateBody>,
) -> ApiResult<Response> {
    caller.require_on_name(&hub, AccessLevel::ReadWrite).await?;
    let (hub, channel) = (super::hub_name(&hub)?, super::channel_name(&channel)?);
    whole_channel("locs", &body.locs)?;
    whole_channel("tables", &body.tables)?;
    whole_channel("components", &body.components)?;
    if body.rewind_scan_start.is_some() || body.rewind_emit.is_some() {
        return Err(ApiError::invalid(
            "rewind_scan_start and rewind_emit are not supported: capture starts when the channel is activated",
        ));
    }
    if let Some(jobs) = &body.start_next_jobs
        && jobs.iter().any(|j| j != "cap" && j != "integ")
    {
        return Err(ApiError::invalid(
            "start_next_jobs: expected cap and/or integ",
        ));
    }
    let refresh_events = body
        .start_next_ev_ids
        .unwrap_or_default()
        .iter()
        .map(|e| {
            e.parse().map_err(|_| {
                ApiError::invalid(format!("start_next_ev_ids: {e:?} is not an event id"))
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let _ = (body.parallel_locs, body.replace_enroll);
    let cmd = sluice_service::replication::ActivateCommand {
        hub,
        channel,
        refresh: body.refresh.is_some_and(|f| f.0),
        refresh_events,
        start: body.start_immediate.is_none_or(|s| s.0),
    };
    let posted = caller.service.activate(cmd).await?;
    Ok((StatusCode::CREATED, Out(posted_json(&posted))).into_response())
}

pub(crate) async fn deactivate(
    caller: Caller,
    Path((hub, channel)): Path<(String, String)>,
    JsonBody(body): JsonBody<DeactivateBody>,
) -> ApiResult<Response> {
    caller.require_on_name(&hub, AccessLevel::ReadWrite).await?;
    let (hub, channel) = (super::hub_name(&hub)?, super::channel_name(&channel)?);
    whole_channel("locs", &body.locs)?;
    whole_channel("tables", &body.tables)?;
    whole_channel("components", &body.components)?;
    let _ = (body.parallel_locs, body.start_immediate);
    let posted = caller.service.deactivate(&hub, &channel).await?;
    Ok((StatusCode::CREATED, Out(posted_json(&posted))).into_response())
}

/// `POST /api/latest/hubs/{hub}/batch/{verb}` (a sluice extension): one operation per channel
/// matching `channels`; the options of the verb's single-channel operation that fit many
/// channels.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchBody {
    /// A channel name or a pattern: `*` any run of characters, `?` one, `[…]` one of a set.
    channels: String,
    /// Jobs of the batch run at once (1 to 32, default 4).
    parallel: Option<usize>,
    /// refresh, compare: only these tables (each must be in every chosen channel).
    tables: Option<Vec<String>>,
    /// refresh: `full_replace`, `incremental`, `smart_sync` or `rowwise`.
    mode: Option<String>,
    /// refresh: `truncate_load` or `staging_swap`.
    strategy: Option<String>,
    /// compare: `bulk` or `rowwise`.
    granularity: Option<String>,
    /// compare: keys listed per kind of difference.
    max_listed: Option<usize>,
    /// activate: load the targets from the snapshot capture starts at.
    refresh: Option<Flag>,
}

fn kind_word(kind: sluice_service::ServiceErrorKind) -> &'static str {
    use sluice_service::ServiceErrorKind as K;
    match kind {
        K::Invalid => "invalid",
        K::NotFound => "not_found",
        K::Conflict => "conflict",
        K::Repository => "repository",
        K::Forbidden => "forbidden",
        _ => "failed",
    }
}

async fn batch(
    caller: Caller,
    hub: String,
    verb: sluice_service::BatchVerb,
    body: BatchBody,
) -> ApiResult<Response> {
    caller.require_on_name(&hub, verb.access_level()).await?;
    let request = sluice_service::BatchRequest {
        hub,
        verb: verb.as_str().to_owned(),
        channels: body.channels,
        parallel: body.parallel,
        tables: body.tables.unwrap_or_default(),
        mode: body.mode,
        strategy: body.strategy,
        granularity: body.granularity,
        max_listed: body.max_listed,
        refresh: body.refresh.map(|f| f.0),
    };
    let outcome = caller.service.batch((&request).try_into()?).await?;
    let channels: Vec<Json> = outcome
        .entries
        .iter()
        .map(|e| match &e.outcome {
            Ok(p) => json!({
                "channel": e.channel,
                "ev_id": p.event.to_string(),
                "job": p.job,
                "canceled_ev_ids": p.canceled.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            }),
            Err(f) => json!({
                "channel": e.channel,
                "error": f.message,
                "kind": kind_word(f.kind),
            }),
        })
        .collect();
    let answer = json!({"parallel": outcome.parallel, "channels": channels});
    Ok((StatusCode::CREATED, Out(answer)).into_response())
}

macro_rules! batch_handler {
    ($name:ident, $verb:ident) => {
        pub(crate) async fn $name(
            caller: Caller,
            Path(hub): Path<String>,
            JsonBody(body): JsonBody<BatchBody>,
        ) -> ApiResult<Response> {
            batch(caller, hub, sluice_service::BatchVerb::$verb, body).await
        }
    };
}

batch_handler!(batch_refresh, Refresh);
batch_handler!(batch_compare, Compare);
batch_handler!(batch_activate, Activate);
batch_handler!(batch_deactivate, Deactivate);

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
