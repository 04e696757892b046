//! HVR's Alert Interface: alert rules on event types and job states, delivered on the event hub
//! topic `sluice.alert` (see `sluice_service::alert`).

use std::collections::BTreeMap;

use axum::Json as Out;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use sluice_model::AccessLevel;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody, QueryList};
use crate::hvr::hub_name;

/// `POST …/alerts`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertBody {
    alert: String,
    props: BTreeMap<String, Json>,
}

/// `PATCH|PUT …/alerts/{alert}/props` (`null` removes a prop).
#[derive(Deserialize, ToSchema)]
#[serde(transparent)]
pub(crate) struct AlertPropsBody(BTreeMap<String, Json>);

impl AlertPropsBody {
    fn changes(self) -> BTreeMap<String, Option<Json>> {
        self.0
            .into_iter()
            .map(|(k, v)| (k, (!v.is_null()).then_some(v)))
            .collect()
    }
}

/// `POST …/alerts/{alert}/props_delete`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertPropsDeleteBody {
    props: Vec<String>,
}

pub(crate) async fn list(caller: Caller, Path(hub): Path<String>) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    Ok(Out(json!(caller.service.alerts(&hub).await?)))
}

pub(crate) async fn create(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<AlertBody>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    caller
        .service
        .create_alert(&hub, &body.alert, &body.props)
        .await?;
    Ok(StatusCode::CREATED)
}

pub(crate) async fn delete(
    caller: Caller,
    Path((hub, alert)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    caller.service.delete_alert(&hub, &alert).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn props(
    caller: Caller,
    Path((hub, alert)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    let mut props = caller.service.alert_props(&hub, &alert).await?;
    let fetch = q.all("fetch");
    if !fetch.is_empty() {
        if let Some(missing) = fetch.iter().find(|f| !props.contains_key(f.as_str())) {
            return Err(ApiError::invalid(format!(
                "fetch: alert {alert} has no property {missing:?}"
            )));
        }
        props.retain(|k, _| fetch.contains(k));
    }
    Ok(Out(json!(props)))
}

pub(crate) async fn patch_props(
    caller: Caller,
    Path((hub, alert)): Path<(String, String)>,
    JsonBody(body): JsonBody<AlertPropsBody>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    caller
        .service
        .change_alert_props(&hub, &alert, &body.changes(), false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn put_props(
    caller: Caller,
    Path((hub, alert)): Path<(String, String)>,
    JsonBody(body): JsonBody<AlertPropsBody>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    caller
        .service
        .change_alert_props(&hub, &alert, &body.changes(), true)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn props_delete(
    caller: Caller,
    Path((hub, alert)): Path<(String, String)>,
    JsonBody(body): JsonBody<AlertPropsDeleteBody>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    let changes = body.props.into_iter().map(|p| (p, None)).collect();
    caller
        .service
        .change_alert_props(&hub, &alert, &changes, false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn clear(
    caller: Caller,
    Path((hub, alert)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    caller.service.clear_alert(&hub, &alert).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn disable(
    caller: Caller,
    Path((hub, alert)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    caller.service.disable_alert(&hub, &alert).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn test(
    caller: Caller,
    Path((hub, alert)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    caller.service.test_alert(&hub, &alert).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn execute(
    caller: Caller,
    Path((hub, alert)): Path<(String, String)>,
) -> ApiResult<Response> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadExec).await?;
    let summary = caller.service.execute_alert(&hub, &alert).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{summary}\n"),
    )
        .into_response())
}
