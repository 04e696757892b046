//! Definitions as code (sluice extensions beside HVR's definition routes): plan and apply a
//! whole definitions document, and export the hub's definitions in the file schema.

use axum::Json as Out;
use axum::extract::Path;
use serde::Deserialize;
use serde_json::Value as Json;
use sluice_model::AccessLevel;
use sluice_service::plan::{Plan, PlanRequest};
use sluice_service::selection::ChannelSelection;

use super::hub_name;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody, QueryList};

/// The body of `…/definition/plan` and `…/definition/apply`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PlanBody {
    /// The definitions document (the file schema: `hub`, `locations`, `channels`).
    document: Json,
    /// Remove the hub's objects the document does not have.
    #[serde(default)]
    prune: bool,
    /// Where the document came from, for the audit event (a file name).
    #[serde(default)]
    source: Option<String>,
    /// `apply` only: the definitions version the plan was made against (`null`: the hub did
    /// not exist). Required, so an apply always refers to a plan someone saw.
    #[serde(default, deserialize_with = "present")]
    base_version: Option<Option<i64>>,
}

/// A field that is present, `null` included (absent stays `None` by `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

impl PlanBody {
    fn request(&self, hub: &sluice_model::HubName) -> ApiResult<PlanRequest> {
        let source = self.source.clone().unwrap_or_else(|| "api".into());
        if source.len() > 200 || source.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "source: at most 200 characters, no control characters",
            ));
        }
        Ok(PlanRequest {
            document: self.document.clone(),
            prune: self.prune,
            hub: Some(hub.clone()),
            source,
            // A document from a request never names a directory of the server.
            base_dir: None,
        })
    }
}

/// The level a plan needs to be applied: SysAdmin to create the hub, HubOwner to change the hub's
/// own fields, ReadWrite otherwise.
fn level_to_apply(plan: &Plan) -> AccessLevel {
    if !plan.hub_exists {
        AccessLevel::SysAdmin
    } else if plan.touches_hub() {
        AccessLevel::HubOwner
    } else {
        AccessLevel::ReadWrite
    }
}

/// Reading a plan of an existing hub needs ReadOnly on it; of a hub that does not exist,
/// SysAdmin (only they may create one).
async fn plan_as_caller(caller: &Caller, req: &PlanRequest) -> ApiResult<Plan> {
    let hub = req.hub.as_ref().expect("requests name their hub");
    if caller.service.hub(hub).await.is_ok() {
        caller.require_on(hub, AccessLevel::ReadOnly).await?;
    } else {
        caller.require(AccessLevel::SysAdmin)?;
    }
    Ok(caller.service.plan_definitions(req).await?)
}

/// `POST …/definition/plan`: what applying the document would change, changing nothing.
pub(super) async fn plan(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<PlanBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    if body.base_version.is_some() {
        return Err(ApiError::invalid(
            "base_version: only an apply takes the version its plan was made against",
        ));
    }
    let plan = plan_as_caller(&caller, &body.request(&hub)?).await?;
    Ok(Out(serde_json::to_value(plan).unwrap_or_default()))
}

/// `POST …/definition/apply`: applies the document in one transaction when the hub is still at
/// `base_version`; refused (nothing changes) when it moved on since the plan.
pub(super) async fn apply(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<PlanBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    let Some(expected) = body.base_version else {
        return Err(ApiError::invalid(
            "base_version: missing (the definitions version of the plan being applied; null when the hub did not exist)",
        ));
    };
    let req = body.request(&hub)?;
    let plan = plan_as_caller(&caller, &req).await?;
    let level = level_to_apply(&plan);
    if level == AccessLevel::SysAdmin {
        caller.require(level)?;
    } else {
        caller.require_on(&hub, level).await?;
    }
    let applied = caller
        .service
        .apply_definitions_plan(&req, expected)
        .await?;
    Ok(Out(serde_json::to_value(applied).unwrap_or_default()))
}

/// `GET …/definition/file?channels=GLOB`: the hub's definitions in the file schema, secrets only
/// as `${VAR}` references (sealed ones left out and listed).
pub(super) async fn file(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    let selection = match q.all("channels").as_slice() {
        [] => None,
        [one] => Some(ChannelSelection::parse(one)?),
        _ => return Err(ApiError::invalid("channels: give one pattern")),
    };
    let export = caller
        .service
        .export_definitions(&hub, selection.as_ref())
        .await?;
    Ok(Out(serde_json::to_value(export).unwrap_or_default()))
}
