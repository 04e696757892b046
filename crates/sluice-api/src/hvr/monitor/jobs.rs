//! HVR's Job Interface: jobs, starting and suspending them, and the job system's and each job's
//! attributes and environment variables.

use std::collections::BTreeMap;

use axum::Json as Out;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use sluice_model::{AccessLevel, HubName, JobName, JobState};
use sluice_service::{JobAttribute, JobScope, JobStart, StartOptions};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, Flag, JsonBody, QueryList};
use crate::hvr::hub_name;
use crate::hvr::ops::ts;

/// Fields `GET …/jobs` answers only when `fetch` names them: HVR's `latency`, and sluice's
/// `num_runs`, `last_ev_id` and `last_run` (`last_run_begin`, `last_run_end`).
pub(crate) const JOB_FETCH: &[&str] = &["latency", "num_runs", "last_ev_id", "last_run"];

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

fn job_in_path(job: &str) -> ApiResult<JobName> {
    job.parse()
        .map_err(|e| ApiError::not_found(format!("job {job:?} does not exist ({e})")))
}

pub(crate) async fn jobs(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    let channels = q.all("channel");
    let wanted = q.all("job");
    let fetch = q.all("fetch");
    if let Some(bad) = fetch.iter().find(|f| !JOB_FETCH.contains(&f.as_str())) {
        return Err(ApiError::invalid(format!(
            "fetch: unknown field {bad:?} (known: {})",
            JOB_FETCH.join(", ")
        )));
    }
    let fetched = |f: &str| fetch.iter().any(|x| x == f);
    let jobs = caller.service.jobs(&hub).await?;
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
        if j.state == JobState::Failed
            && let Some(t) = j.run_end
        {
            o.insert("log_job_err_tstamp".into(), json!(ts(t)));
        }
        // Latency is a capture or integrate job's; sluice's refresh and compare jobs have
        // none, so `fetch=latency` adds nothing to them.
        if fetched("num_runs") {
            o.insert("num_runs".into(), json!(j.num_runs));
        }
        if fetched("last_ev_id")
            && let Some(e) = j.last_event
        {
            o.insert("last_ev_id".into(), json!(e.to_string()));
        }
        if fetched("last_run") {
            if let Some(t) = j.run_begin {
                o.insert("last_run_begin".into(), json!(ts(t)));
            }
            if let Some(t) = j.run_end {
                o.insert("last_run_end".into(), json!(ts(t)));
            }
        }
        out.insert(j.name.to_string(), Json::Object(o));
    }
    Ok(Out(Json::Object(out)))
}

/// `POST …/jobs_start|jobs_suspend|jobs_unsuspend|jobs_delete`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobsBody {
    #[serde(default)]
    jobs: Vec<String>,
    /// `jobs_start`: start `SUSPEND` jobs too.
    #[schema(value_type = Option<bool>)]
    unsuspend: Option<Flag>,
    /// `jobs_start`: start `FAILED` and `RETRY` jobs too.
    #[schema(value_type = Option<bool>)]
    trigger_failed: Option<Flag>,
}

pub(crate) async fn jobs_start(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<JobsBody>,
) -> ApiResult<Response> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadExec).await?;
    let options = StartOptions {
        unsuspend: body.unsuspend.is_some_and(|f| f.0),
        trigger_failed: body.trigger_failed.is_some_and(|f| f.0),
    };
    let jobs = job_names(body.jobs)?;
    let outcome = caller.service.start_jobs(&hub, &jobs, options).await?;
    if outcome
        .iter()
        .all(|(_, o)| matches!(o, JobStart::Started(_)))
    {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    // HVR answers a body only when a job was left alone; it names each job's control.
    let mut out = Map::new();
    for (job, o) in outcome {
        let entry = match o {
            JobStart::Started(ev) => json!({ "trigger_ctrl_id": ev.to_string() }),
            JobStart::NotStarted(why) => json!({ "not_started": why }),
        };
        out.insert(job.to_string(), entry);
    }
    Ok((StatusCode::OK, Out(Json::Object(out))).into_response())
}

pub(crate) async fn jobs_suspend(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<JobsBody>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadExec).await?;
    let jobs = job_names(body.jobs)?;
    caller.service.suspend_jobs(&hub, &jobs).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn jobs_unsuspend(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<JobsBody>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadExec).await?;
    let jobs = job_names(body.jobs)?;
    caller.service.unsuspend_jobs(&hub, &jobs).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn canceled_json(canceled: &[sluice_model::EventId]) -> Out<Json> {
    Out(json!({"canceled_ev_ids": canceled.iter().map(|e| e.to_string()).collect::<Vec<_>>()}))
}

pub(crate) async fn jobs_delete(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<JobsBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadExec).await?;
    let jobs = job_names(body.jobs)?;
    let canceled = caller.service.delete_jobs(&hub, &jobs).await?;
    Ok(canceled_json(&canceled))
}

pub(crate) async fn delete_job(
    caller: Caller,
    Path((hub, job)): Path<(String, String)>,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadExec).await?;
    let job = job_in_path(&job)?;
    let canceled = caller.service.delete_jobs(&hub, &[job]).await?;
    Ok(canceled_json(&canceled))
}

/// `PUT …/attributes/{attr}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttributeBody {
    arg1: String,
    arg2: Option<String>,
}

/// `PUT …/env_vars/{var}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvVarBody {
    value: String,
}

fn scope(job: Option<&str>) -> ApiResult<JobScope> {
    Ok(match job {
        None => JobScope::System,
        Some(j) => JobScope::Job(job_in_path(j)?),
    })
}

async fn attributes(caller: Caller, hub: &HubName, scope: JobScope) -> ApiResult<Out<Json>> {
    caller.require_on(hub, AccessLevel::ReadOnly).await?;
    let attrs = caller.service.job_attributes(hub, &scope).await?;
    let out: BTreeMap<String, Json> = attrs
        .into_iter()
        .map(|(name, a)| {
            let mut o = json!({ "arg1": a.arg1 });
            if let Some(a2) = a.arg2 {
                o["arg2"] = json!(a2);
            }
            (name, o)
        })
        .collect();
    Ok(Out(json!(out)))
}

async fn put_attribute(
    caller: Caller,
    hub: &HubName,
    scope: JobScope,
    level: AccessLevel,
    attr: &str,
    body: AttributeBody,
) -> ApiResult<StatusCode> {
    caller.require_on(hub, level).await?;
    let value = JobAttribute {
        arg1: body.arg1,
        arg2: body.arg2,
    };
    caller
        .service
        .set_job_attribute(hub, &scope, attr, &value)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn env_vars(caller: Caller, hub: &HubName, scope: JobScope) -> ApiResult<Out<Json>> {
    caller.require_on(hub, AccessLevel::ReadOnly).await?;
    Ok(Out(json!(caller.service.job_env_vars(hub, &scope).await?)))
}

pub(crate) async fn system_attributes(
    caller: Caller,
    Path(hub): Path<String>,
) -> ApiResult<Out<Json>> {
    attributes(caller, &hub_name(&hub)?, JobScope::System).await
}

pub(crate) async fn system_attribute_put(
    caller: Caller,
    Path((hub, attr)): Path<(String, String)>,
    JsonBody(body): JsonBody<AttributeBody>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    put_attribute(
        caller,
        &hub,
        JobScope::System,
        AccessLevel::ReadWrite,
        &attr,
        body,
    )
    .await
}

pub(crate) async fn system_attribute_delete(
    caller: Caller,
    Path((hub, attr)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    caller
        .service
        .delete_job_attribute(&hub, &JobScope::System, &attr)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn system_env_vars(
    caller: Caller,
    Path(hub): Path<String>,
) -> ApiResult<Out<Json>> {
    env_vars(caller, &hub_name(&hub)?, JobScope::System).await
}

pub(crate) async fn system_env_var_put(
    caller: Caller,
    Path((hub, var)): Path<(String, String)>,
    JsonBody(body): JsonBody<EnvVarBody>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    caller
        .service
        .set_job_env_var(&hub, &JobScope::System, &var, &body.value)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn system_env_var_delete(
    caller: Caller,
    Path((hub, var)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    caller
        .service
        .delete_job_env_var(&hub, &JobScope::System, &var)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn job_attributes(
    caller: Caller,
    Path((hub, job)): Path<(String, String)>,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    attributes(caller, &hub, scope(Some(&job))?).await
}

pub(crate) async fn job_attribute_put(
    caller: Caller,
    Path((hub, job, attr)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<AttributeBody>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    let scope = scope(Some(&job))?;
    put_attribute(caller, &hub, scope, AccessLevel::ReadExec, &attr, body).await
}

pub(crate) async fn job_attribute_delete(
    caller: Caller,
    Path((hub, job, attr)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadExec).await?;
    let scope = scope(Some(&job))?;
    caller
        .service
        .delete_job_attribute(&hub, &scope, &attr)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn job_env_vars(
    caller: Caller,
    Path((hub, job)): Path<(String, String)>,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    env_vars(caller, &hub, scope(Some(&job))?).await
}

pub(crate) async fn job_env_var_put(
    caller: Caller,
    Path((hub, job, var)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<EnvVarBody>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    let scope = scope(Some(&job))?;
    caller
        .service
        .set_job_env_var(&hub, &scope, &var, &body.value)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn job_env_var_delete(
    caller: Caller,
    Path((hub, job, var)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    let scope = scope(Some(&job))?;
    caller
        .service
        .delete_job_env_var(&hub, &scope, &var)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
