//! The HVR 6 REST API (reference: `hvr6-api.md`), under `/auth/v1/…` and `/api/latest/…`.

pub(crate) mod admin;
pub(crate) mod arc;
mod auth;
pub(crate) mod backup;
pub(crate) mod browse;
mod definition;
pub(crate) mod hubs;
pub(crate) mod monitor;
pub(crate) mod ops;
pub(crate) mod product;
pub(crate) mod shapes;
pub(crate) mod users;
pub(crate) mod wire;

pub(crate) use definition::section;

use axum::Router;
use axum::routing::{get, post};
use sluice_model::HubName;

use crate::AppState;
use crate::error::ApiError;

/// A hub name from a path.
pub(crate) fn hub_name(s: &str) -> Result<HubName, ApiError> {
    HubName::new(s).map_err(|e| ApiError::not_found(format!("hub {s:?} does not exist ({e})")))
}

/// A channel name from a path (an invalid one names no channel: 404).
pub(crate) fn channel_name(s: &str) -> Result<sluice_model::ChannelName, ApiError> {
    sluice_model::ChannelName::new(s)
        .map_err(|e| ApiError::not_found(format!("channel {s:?} does not exist ({e})")))
}

/// A location name from a path (an invalid one names no location: 404).
pub(crate) fn loc_name(s: &str) -> Result<sluice_model::LocationName, ApiError> {
    sluice_model::LocationName::new(s)
        .map_err(|e| ApiError::not_found(format!("location {s:?} does not exist ({e})")))
}

/// A table name from a path (an invalid one names no table: 404).
pub(crate) fn table_name(s: &str) -> Result<sluice_model::TableName, ApiError> {
    sluice_model::TableName::new(s)
        .map_err(|e| ApiError::not_found(format!("table {s:?} does not exist ({e})")))
}

pub(crate) fn routes() -> Router<AppState> {
    const H: &str = "/api/latest/hubs/{hub}";
    Router::new()
        .route("/auth/v1/password", post(auth::password))
        .route("/auth/v1/refresh", post(auth::refresh))
        .route("/auth/v1/revoke", post(auth::revoke))
        .route("/api", get(auth::versions))
        .route("/api/latest/hubserver/clock", get(hubs::clock))
        .route("/api/latest/hubs", get(hubs::list).post(hubs::create))
        .route("/api/latest/lineage", get(hubs::lineage))
        .route(H, get(hubs::get_one).delete(hubs::delete_one))
        .route(&format!("{H}/freeze"), post(hubs::freeze))
        .route(&format!("{H}/unfreeze"), post(hubs::unfreeze))
        .route(
            &format!("{H}/props"),
            get(hubs::props)
                .patch(hubs::patch_props)
                .put(hubs::put_props),
        )
        .route(&format!("{H}/props_delete"), post(hubs::props_delete))
        .route(&format!("{H}/query/status"), get(hubs::status))
        .merge(definition::routes())
        .merge(admin::routes())
        .merge(backup::routes())
        .merge(browse::routes())
        .merge(arc::routes())
        .merge(monitor::routes())
        .merge(product::routes())
        .merge(users::routes())
        .route(
            &format!("{H}/channels/{{channel}}/refresh"),
            post(ops::refresh),
        )
        .route(
            &format!("{H}/channels/{{channel}}/compare"),
            post(ops::compare),
        )
        .route(
            &format!("{H}/channels/{{channel}}/deactivate"),
            post(ops::deactivate),
        )
        .route(&format!("{H}/batch/refresh"), post(ops::batch_refresh))
        .route(&format!("{H}/batch/compare"), post(ops::batch_compare))
        .route(&format!("{H}/batch/activate"), post(ops::batch_activate))
        .route(
            &format!("{H}/batch/deactivate"),
            post(ops::batch_deactivate),
        )
}
