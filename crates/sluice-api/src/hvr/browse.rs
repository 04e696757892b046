//! HVR: location tests, database browsing, the query interface and table adapt.

use axum::Router;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
