//! HVR: jobs and the job system's attributes and environment, events, statistics, alerts and
//! log files (HVR's Job, Event, Statistics, Alert and Logfile Tailing interfaces).

pub(crate) mod alerts;
pub(crate) mod events;
pub(crate) mod jobs;
pub(crate) mod logs;
pub(crate) mod shapes;
pub(crate) mod stats;

use axum::Router;
use axum::routing::{delete, get, post, put};

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    const H: &str = "/api/latest/hubs/{hub}";
    Router::new()
        .route(&format!("{H}/jobs"), get(jobs::jobs))
        .route(&format!("{H}/jobs/{{job}}"), delete(jobs::delete_job))
        .route(&format!("{H}/jobs_start"), post(jobs::jobs_start))
        .route(&format!("{H}/jobs_suspend"), post(jobs::jobs_suspend))
        .route(&format!("{H}/jobs_unsuspend"), post(jobs::jobs_unsuspend))
        .route(&format!("{H}/jobs_delete"), post(jobs::jobs_delete))
        .route(
            &format!("{H}/job_system/attributes"),
            get(jobs::system_attributes),
        )
        .route(
            &format!("{H}/job_system/attributes/{{attr}}"),
            put(jobs::system_attribute_put).delete(jobs::system_attribute_delete),
        )
        .route(
            &format!("{H}/job_system/env_vars"),
            get(jobs::system_env_vars),
        )
        .route(
            &format!("{H}/job_system/env_vars/{{var}}"),
            put(jobs::system_env_var_put).delete(jobs::system_env_var_delete),
        )
        .route(
            &format!("{H}/jobs/{{job}}/attributes"),
            get(jobs::job_attributes),
        )
        .route(
            &format!("{H}/jobs/{{job}}/attributes/{{attr}}"),
            put(jobs::job_attribute_put).delete(jobs::job_attribute_delete),
        )
        .route(
            &format!("{H}/jobs/{{job}}/env_vars"),
            get(jobs::job_env_vars),
        )
        .route(
            &format!("{H}/jobs/{{job}}/env_vars/{{var}}"),
            put(jobs::job_env_var_put).delete(jobs::job_env_var_delete),
        )
        .route(&format!("{H}/events"), get(events::events))
        .route(&format!("{H}/events_cancel"), post(events::events_cancel))
        .route(&format!("{H}/events/{{ev_id}}/log"), get(events::event_log))
        .route(&format!("{H}/event_types"), get(events::event_types))
        .route(&format!("{H}/event_channels"), get(events::event_channels))
        .route(&format!("{H}/event_locs"), get(events::event_locs))
        .route(&format!("{H}/stats/metrics"), get(stats::metrics))
        .route(&format!("{H}/stats/oldest"), get(stats::oldest))
        .route(
            &format!("{H}/stats/metrics/export"),
            post(stats::export).get(stats::export_get),
        )
        .route(
            &format!("{H}/alerts"),
            get(alerts::list).post(alerts::create),
        )
        .route(&format!("{H}/alerts/{{alert}}"), delete(alerts::delete))
        .route(
            &format!("{H}/alerts/{{alert}}/props"),
            get(alerts::props)
                .patch(alerts::patch_props)
                .put(alerts::put_props),
        )
        .route(
            &format!("{H}/alerts/{{alert}}/props_delete"),
            post(alerts::props_delete),
        )
        .route(&format!("{H}/alerts/{{alert}}/clear"), post(alerts::clear))
        .route(
            &format!("{H}/alerts/{{alert}}/disable"),
            post(alerts::disable),
        )
        .route(
            &format!("{H}/alerts/{{alert}}/execute"),
            post(alerts::execute),
        )
        .route(&format!("{H}/alerts/{{alert}}/test"), post(alerts::test))
        .route(&format!("{H}/logs/{{file}}"), get(logs::hub_log))
        .route(
            &format!("{H}/logs/{{file}}/archive/{{archive}}"),
            get(logs::hub_log_archive),
        )
        .route(
            &format!("{H}/logs/{{file}}/search"),
            get(logs::hub_log_search),
        )
        .route("/api/latest/logs/{file}", get(logs::server_log))
        .route(
            "/api/latest/logs/{file}/archive/{archive}",
            get(logs::server_log_archive),
        )
        .route(
            &format!("{H}/jobs/{{job}}/controls/{{ctrl_id}}/log"),
            get(logs::control_log),
        )
        .route("/api/latest/repos/events", get(events::repos_events))
        .route(
            "/api/latest/repos/event_types",
            get(events::repos_event_types),
        )
}
