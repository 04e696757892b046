//! HVR's Logfile Tailing Interface over the event logs sluice keeps in the repository (see
//! `sluice_service::LogFile`): `hvr.out`, `hvr.err`, `{job}.out`, `{job}.err`; archives are
//! days (`YYYYMMDD`); a job's control is one of its events.

use axum::Json as Out;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};
use sluice_model::{AccessLevel, HubName};
use sluice_service::LogFile;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, QueryList};
use crate::hvr::hub_name;
use crate::hvr::monitor::events::existing_event;
use crate::hvr::ops::{parse_time, ts};

type Lines = Vec<(DateTime<Utc>, String)>;

fn number(q: &QueryList, key: &str) -> ApiResult<Option<usize>> {
    q.one(key)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<usize>()
                .map_err(|_| ApiError::invalid(format!("{key}: expected a number, got {v:?}")))
        })
        .transpose()
}

/// The text of `lines`, cut as the query asks (`offset_begin`, `offset_end` in bytes;
/// `max_lines` from the end), with HVR's offset headers.
fn tail(lines: &Lines, q: &QueryList) -> ApiResult<Response> {
    let mut text = String::new();
    for (t, line) in lines {
        text.push_str(&format!("{}: {line}\n", ts(*t)));
    }
    let size = text.len();
    let begin = number(q, "offset_begin")?.unwrap_or(0).min(size);
    let end = number(q, "offset_end")?.unwrap_or(size).clamp(begin, size);
    // Offsets fall on line starts (they come from earlier answers); round down to one.
    let begin = text[..begin].rfind('\n').map_or(0, |i| i + 1);
    let end = if end == size {
        end
    } else {
        text[..end]
            .rfind('\n')
            .map_or(begin, |i| (i + 1).max(begin))
    };
    let mut part = &text[begin..end];
    let mut part_begin = begin;
    if let Some(max) = number(q, "max_lines")? {
        let count = part.lines().count();
        if count > max {
            let skip: usize = part
                .split_inclusive('\n')
                .take(count - max)
                .map(str::len)
                .sum();
            part = &part[skip..];
            part_begin += skip;
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (
                header::HeaderName::from_static("x-hvr-offset-begin"),
                part_begin.to_string(),
            ),
            (
                header::HeaderName::from_static("x-hvr-offset-end"),
                (part_begin + part.len()).to_string(),
            ),
            (
                header::HeaderName::from_static("x-hvr-file-size"),
                size.to_string(),
            ),
        ],
        part.to_owned(),
    )
        .into_response())
}

async fn hub_lines(
    caller: &Caller,
    hub: &HubName,
    file: &str,
    day: Option<&str>,
) -> ApiResult<Lines> {
    let file = LogFile::parse(file)?;
    Ok(caller.service.log_lines(hub, &file, day).await?)
}

pub(crate) async fn hub_log(
    caller: Caller,
    Path((hub, file)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Response> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    tail(&hub_lines(&caller, &hub, &file, None).await?, &q)
}

pub(crate) async fn hub_log_archive(
    caller: Caller,
    Path((hub, file, archive)): Path<(String, String, String)>,
    q: QueryList,
) -> ApiResult<Response> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    tail(&hub_lines(&caller, &hub, &file, Some(&archive)).await?, &q)
}

pub(crate) async fn hub_log_search(
    caller: Caller,
    Path((hub, file)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    let at = q
        .one("search_tstamp")
        .ok_or_else(|| ApiError::invalid("search_tstamp: missing"))
        .and_then(parse_time)?;
    let lines = hub_lines(&caller, &hub, &file, None).await?;
    let mut offset = 0;
    for (t, line) in &lines {
        if *t >= at {
            break;
        }
        offset += format!("{}: {line}\n", ts(*t)).len();
    }
    Ok(Out(json!({"path": file, "offset": offset.to_string()})))
}

/// Lines of `file` of every hub, oldest first.
async fn server_lines(caller: &Caller, file: &str, day: Option<&str>) -> ApiResult<Lines> {
    caller.require(AccessLevel::SysAdmin)?;
    let file = LogFile::parse(file)?;
    let mut all = Vec::new();
    for h in caller.service.hubs().await? {
        for (t, line) in caller.service.log_lines(&h.hub.name, &file, day).await? {
            all.push((t, format!("{} {line}", h.hub.name)));
        }
    }
    all.sort_by_key(|(t, _)| *t);
    Ok(all)
}

pub(crate) async fn server_log(
    caller: Caller,
    Path(file): Path<String>,
    q: QueryList,
) -> ApiResult<Response> {
    tail(&server_lines(&caller, &file, None).await?, &q)
}

pub(crate) async fn server_log_archive(
    caller: Caller,
    Path((file, archive)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Response> {
    tail(&server_lines(&caller, &file, Some(&archive)).await?, &q)
}

/// `…/jobs/{job}/controls/{ctrl_id}/log`: a control is one of the job's events (`jobs_start`
/// answers its id as `trigger_ctrl_id`).
pub(crate) async fn control_log(
    caller: Caller,
    Path((hub, job, ctrl_id)): Path<(String, String, String)>,
    q: QueryList,
) -> ApiResult<Response> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    let event = existing_event(&caller, &hub, &ctrl_id).await?;
    if event.job.as_ref().is_none_or(|j| j.as_str() != job) {
        return Err(ApiError::not_found(format!(
            "job {job} has no control {ctrl_id}"
        )));
    }
    let lines: Lines = caller
        .service
        .event_log(event.id)
        .await?
        .into_iter()
        .map(|(t, l)| (t, format!("{} {}: {l}", event.id, event.event_type)))
        .collect();
    tail(&lines, &q)
}
