//! Hubs: list, get, create, delete, properties, freeze and unfreeze, status.

use std::collections::BTreeMap;

use axum::Json as Out;
use axum::extract::Path;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use sluice_model::AccessLevel;
use sluice_repo::HubRecord;
use utoipa::ToSchema;

use sluice_service::access::{access_list_json, parse_access_list};

use super::hub_name;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody, QueryList};

fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Every property of a hub, flat.
fn all_props(h: &HubRecord) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("Description".into(), json!(h.hub.description));
    m.insert("Created".into(), json!(ts(h.created)));
    m.insert("Creator".into(), json!(h.creator));
    m.insert("Hub_State".into(), json!(h.state));
    m.insert("Hub_ID".into(), json!(h.hub.name));
    m.insert(
        "Hub_Server_HVR_Version".into(),
        json!(concat!("sluice ", env!("CARGO_PKG_VERSION"))),
    );
    if let Some(f) = h.freeze_time {
        m.insert("Freeze_Time".into(), json!(ts(f)));
    }
    for (k, v) in &h.props {
        m.insert(k.clone(), v.clone());
    }
    m
}

/// A hub as listed, with the caller's `level` on it.
fn hub_json(h: &HubRecord, level: AccessLevel) -> Json {
    json!({
        "props": all_props(h),
        "current_user_access": {"level": level},
    })
}

pub(crate) async fn clock(_caller: Caller) -> Out<Json> {
    // HVR answers `clock`; `tstamp` is what sluice answered before, kept for its clients.
    let now = ts(chrono::Utc::now());
    Out(json!({ "clock": now, "tstamp": now }))
}

/// The hubs the caller may read (ReadOnly or more on it), each with the caller's level there.
pub(crate) async fn list(caller: Caller) -> ApiResult<Out<Json>> {
    let hubs = caller.service.hubs().await?;
    let entries = caller
        .service
        .hub_levels(&caller.identity.user, caller.identity.level)
        .await?;
    let map: Map<String, Json> = hubs
        .iter()
        .filter_map(|h| {
            let level = entries
                .get(&h.hub.name)
                .copied()
                .unwrap_or(caller.identity.level);
            level
                .allows(AccessLevel::ReadOnly)
                .then(|| (h.hub.name.to_string(), hub_json(h, level)))
        })
        .collect();
    Ok(Out(Json::Object(map)))
}

/// `GET /api/latest/lineage` (sluice): the lineage of every hub the caller may read.
pub(crate) async fn lineage(caller: Caller) -> ApiResult<Out<sluice_service::lineage::Lineage>> {
    let lineage = caller
        .service
        .lineage(&caller.identity.user, caller.identity.level)
        .await?;
    Ok(Out(lineage))
}

pub(crate) async fn get_one(caller: Caller, Path(hub): Path<String>) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    let h = caller.service.hub(&hub).await?;
    Ok(Out(hub_json(&h, caller.level_on(&hub).await?)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewHub {
    /// The new hub's name.
    #[schema(pattern = "^[a-z_][a-z0-9_]{0,31}$")]
    hub: String,
    #[serde(default)]
    #[schema(value_type = Option<super::shapes::NewHubProps>)]
    props: BTreeMap<String, Json>,
}

pub(crate) async fn create(
    caller: Caller,
    JsonBody(body): JsonBody<NewHub>,
) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    let mut description = String::new();
    let mut access = Vec::new();
    for (k, v) in &body.props {
        match (k.as_str(), v) {
            ("Description", Json::String(d)) => description = d.clone(),
            ("Access_List", list) => {
                access = parse_access_list(list)?;
                caller.service.check_access_list(&access).await?;
            }
            _ => {
                return Err(ApiError::invalid(format!(
                    "hub property {k} cannot be set at creation"
                )));
            }
        }
    }
    caller.service.create_hub(&body.hub, &description).await?;
    if !access.is_empty() {
        caller
            .service
            .set_hub_access_list(&hub_name(&body.hub)?, &access)
            .await?;
    }
    // HVR answers 204 here (not 201).
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn delete_one(caller: Caller, Path(hub): Path<String>) -> ApiResult<StatusCode> {
    caller.require_on_name(&hub, AccessLevel::HubOwner).await?;
    caller.service.delete_hub(&hub_name(&hub)?).await?;
    Ok(StatusCode::OK)
}

pub(crate) async fn freeze(caller: Caller, Path(hub): Path<String>) -> ApiResult<StatusCode> {
    caller.require_on_name(&hub, AccessLevel::HubOwner).await?;
    caller.service.freeze_hub(&hub_name(&hub)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn unfreeze(caller: Caller, Path(hub): Path<String>) -> ApiResult<StatusCode> {
    caller.require_on_name(&hub, AccessLevel::HubOwner).await?;
    caller.service.unfreeze_hub(&hub_name(&hub)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn props_get(caller: &Caller, hub: &str, q: &QueryList) -> ApiResult<Out<Json>> {
    caller.require_on_name(hub, AccessLevel::ReadOnly).await?;
    let h = caller.service.hub(&hub_name(hub)?).await?;
    let mut all = all_props(&h);
    let access = caller.service.hub_access_list(&h.hub.name).await?;
    if !access.is_empty() {
        all.insert("Access_List".into(), access_list_json(&access));
    }
    let wanted = q.all("fetch");
    if !wanted.is_empty() {
        all.retain(|k, _| wanted.contains(k));
    }
    Ok(Out(Json::Object(all)))
}

pub(crate) async fn props(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    props_get(&caller, &hub, &q).await
}

pub(crate) async fn patch_props(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<BTreeMap<String, Json>>,
) -> ApiResult<StatusCode> {
    caller.require_on_name(&hub, AccessLevel::HubOwner).await?;
    let mut changes: BTreeMap<String, Option<Json>> = body
        .into_iter()
        .map(|(k, v)| (k, (!v.is_null()).then_some(v)))
        .collect();
    if changes.is_empty() {
        return Err(ApiError::invalid("no properties given"));
    }
    // The access list is the hub's access entries: only a SysAdmin replaces it.
    let access = match changes.remove("Access_List") {
        Some(list) => {
            caller.require(AccessLevel::SysAdmin)?;
            let entries = parse_access_list(&list.unwrap_or(Json::Null))?;
            caller.service.check_access_list(&entries).await?;
            Some(entries)
        }
        None => None,
    };
    let hub = hub_name(&hub)?;
    if !changes.is_empty() {
        caller.service.set_hub_props(&hub, &changes).await?;
    }
    if let Some(entries) = access {
        caller.service.set_hub_access_list(&hub, &entries).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT …/props`: the hub's props become exactly those given.
pub(crate) async fn put_props(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<BTreeMap<String, Json>>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::HubOwner).await?;
    let mut body = body;
    // The access list is the hub's access entries: written back as read it changes nothing,
    // otherwise only a SysAdmin replaces it.
    let access = match body.remove("Access_List") {
        Some(list) => {
            let current = caller.service.hub_access_list(&hub).await?;
            if list == access_list_json(&current) {
                None
            } else {
                caller.require(AccessLevel::SysAdmin)?;
                let entries = parse_access_list(&list)?;
                caller.service.check_access_list(&entries).await?;
                Some(entries)
            }
        }
        None => None,
    };
    let record = caller.service.hub(&hub).await?;
    // What GET answers besides the props a user set: a client may write back what it read.
    let mut read_only = all_props(&record);
    read_only.retain(|k, _| !record.props.contains_key(k) && k != "Description");
    let read_only: BTreeMap<String, Json> = read_only.into_iter().collect();
    caller
        .service
        .replace_hub_props(&hub, &body, &read_only)
        .await?;
    if let Some(entries) = access {
        caller.service.set_hub_access_list(&hub, &entries).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/props_delete {"props": [...]}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PropsDelete {
    /// The props to delete (at least one).
    #[schema(min_items = 1)]
    pub(crate) props: Vec<String>,
}

pub(crate) async fn props_delete(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<PropsDelete>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::HubOwner).await?;
    if body.props.iter().any(|p| p == "Access_List") {
        return Err(ApiError::invalid(
            "props: Access_List is the hub's access entries: replace it with PATCH …/props",
        ));
    }
    caller.service.delete_hub_props(&hub, &body.props).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn status(caller: Caller, Path(hub): Path<String>) -> ApiResult<Out<Json>> {
    caller.require_on_name(&hub, AccessLevel::ReadOnly).await?;
    let h = caller.service.hub(&hub_name(&hub)?).await?;
    let mut out = json!({
        "hub_state": h.state,
        "jobs_over_latency_sla": [],
        "license": "VALID",
    });
    if let Some(f) = h.freeze_time {
        out["freeze_time"] = json!(ts(f));
    }
    Ok(Out(out))
}
