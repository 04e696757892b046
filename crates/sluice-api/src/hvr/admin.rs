//! HVR: users and their props, per-hub access, first-run set-up, the wallet, the hub server's props, env and test, the repository.

use axum::Router;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
