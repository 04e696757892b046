//! HVR: activate, refresh and compare results, contexts, slicing suggestions and control messages.

use axum::Router;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
