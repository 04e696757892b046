//! HVR: operations of HVR's own product that sluice does not have: licences and metering (sluice
//! is open source and has neither), HVR agents (sluice connects to databases directly, without an
//! agent process on the database machine), and restarting, stopping or upgrading the hub server
//! over the API (sluice runs under a service manager that does that). Each answers `501` with an
//! HVR-style error saying so, after the caller is authenticated, so that a client learns at once
//! why rather than from a `no such route`.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{MethodFilter, MethodRouter};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Caller;

/// Why sluice has no licence or metering operations.
pub(crate) const LICENSING: &str = "sluice has no licences or metering: it is open source and \
     every feature is available without a licence";
/// Why sluice has no agent operations.
pub(crate) const AGENTS: &str = "sluice has no HVR agents: it connects to each database \
     directly from the hub server, so a location has no agent to configure; set the location's \
     connection properties instead (PATCH …/definition/locs/{loc}/props)";
/// Why sluice cannot be restarted, stopped or upgraded through the API.
pub(crate) const SERVER_CONTROL: &str = "sluice does not restart, stop or replace its own \
     binary over the API: run `sluice serve` under a service manager (systemd, a container) and \
     restart or upgrade it there";

/// The operations, as `(method, path below /api/latest, why)`.
pub(crate) const OPERATIONS: &[(&str, &str, &str)] = &[
    ("GET", "/licenses", LICENSING),
    ("POST", "/licenses", LICENSING),
    ("GET", "/licenses/{license}", LICENSING),
    ("PUT", "/licenses/{license}", LICENSING),
    ("DELETE", "/licenses/{license}", LICENSING),
    ("GET", "/licensing", LICENSING),
    ("POST", "/licensing/license_agreement_accepted", LICENSING),
    ("GET", "/metering/download", LICENSING),
    ("POST", "/metering/license_acquire", LICENSING),
    ("POST", "/metering/purge", LICENSING),
    ("POST", "/metering/registration_status", LICENSING),
    ("POST", "/metering/upload", LICENSING),
    ("GET", "/hubs/{hub}/locs/{loc}/agent", AGENTS),
    ("POST", "/hubs/{hub}/locs/{loc}/agent/props_delete", AGENTS),
    ("POST", "/hubs/{hub}/locs/{loc}/agent/props_get", AGENTS),
    ("POST", "/hubs/{hub}/locs/{loc}/agent/props_patch", AGENTS),
    ("POST", "/hubs/{hub}/locs/{loc}/agent/props_put", AGENTS),
    ("POST", "/hubs/{hub}/locs/{loc}/agent/test", AGENTS),
    ("POST", "/hubs/{hub}/locs/{loc}/agent/users", AGENTS),
    ("POST", "/hubs/{hub}/locs/{loc}/agent/users_delete", AGENTS),
    ("POST", "/hubs/{hub}/locs/{loc}/agent/users_get", AGENTS),
    (
        "POST",
        "/hubs/{hub}/locs/{loc}/agent/users_password",
        AGENTS,
    ),
    ("POST", "/hubs/{hub}/new_loc/agent/props_delete", AGENTS),
    ("POST", "/hubs/{hub}/new_loc/agent/props_get", AGENTS),
    ("POST", "/hubs/{hub}/new_loc/agent/props_patch", AGENTS),
    ("POST", "/hubs/{hub}/new_loc/agent/props_put", AGENTS),
    ("POST", "/hubs/{hub}/new_loc/agent/test", AGENTS),
    ("POST", "/hubs/{hub}/new_loc/agent/users", AGENTS),
    ("POST", "/hubs/{hub}/new_loc/agent/users_delete", AGENTS),
    ("POST", "/hubs/{hub}/new_loc/agent/users_get", AGENTS),
    ("POST", "/hubs/{hub}/new_loc/agent/users_password", AGENTS),
    ("POST", "/hubs/{hub}/new_loc/agent_get", AGENTS),
    ("POST", "/hubserver/restart", SERVER_CONTROL),
    ("POST", "/hubserver/stop", SERVER_CONTROL),
    ("POST", "/hubserver/upload", SERVER_CONTROL),
];

/// The error every one of them answers.
pub(crate) fn not_in_sluice(why: &'static str) -> ApiError {
    ApiError::new(StatusCode::NOT_IMPLEMENTED, "F_JA0501", why)
}

pub(crate) fn routes() -> Router<AppState> {
    let mut paths: std::collections::BTreeMap<&str, MethodRouter<AppState>> = Default::default();
    for (method, path, why) in OPERATIONS {
        let why: &'static str = why;
        let handler = move |_caller: Caller| async move { not_in_sluice(why) };
        let filter = match *method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "PUT" => MethodFilter::PUT,
            _ => MethodFilter::DELETE,
        };
        let entry = paths.remove(path).unwrap_or_default();
        paths.insert(path, entry.on(filter, handler));
    }
    paths
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(&format!("/api/latest{path}"), methods)
        })
}
