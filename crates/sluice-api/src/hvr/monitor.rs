//! HVR: the job system, job attributes and environment, event types, statistics, alerts and log files.

use axum::Router;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
