//! The Definition Interface: channels, tables, columns, location groups, actions, locations, export
//! and import. Every change is a small edit of the hub's definitions document made inside
//! `HubService::edit_definitions`, so it passes the same compile as a definitions file, is stored
//! atomically with its `Definition_Change` event naming the user and bumps the hub's definitions
//! version (a concurrent edit is retried on the new version), and a failure changes nothing.
//!
//! One module per object: [`channels`], [`tables`] (with columns), [`loc_groups`] (with members),
//! [`actions`] (channel, location and hub actions, `action_modify`, `action_replace`), [`locs`]
//! (with props, copy) and [`import`] (import, analyze, the change history). Renames of every
//! object are [`sluice_service::rename`].

use axum::Json as Out;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use serde_json::{Map, Value as Json, json};
use sluice_model::{AccessLevel, EventType};
use sluice_service::rename::Rename;
use sluice_service::{ServiceError, ServiceErrorKind};

use super::hub_name;
use super::wire::{self, Fetch};
use crate::AppState;
use crate::error::{ApiError, ApiResult, codes};
use crate::extract::{Caller, JsonBody, QueryList};

mod actions;
mod channels;
mod code;
mod import;
mod loc_groups;
mod locs;
mod tables;

use actions::*;
use channels::*;
use import::*;
use loc_groups::*;
use locs::*;
use tables::*;

pub(crate) fn routes() -> Router<AppState> {
    const D: &str = "/api/latest/hubs/{hub}/definition";
    const C: &str = "/api/latest/hubs/{hub}/definition/channels/{channel}";
    const T: &str = "/api/latest/hubs/{hub}/definition/channels/{channel}/tables/{table}";
    const G: &str = "/api/latest/hubs/{hub}/definition/channels/{channel}/loc_groups/{group}";
    const L: &str = "/api/latest/hubs/{hub}/definition/locs/{loc}";
    Router::new()
        .route(D, get(export))
        .route(&format!("{D}/change/events"), get(change_events))
        .route(&format!("{D}/import"), post(import))
        .route(&format!("{D}/import/analyze"), post(analyze))
        .route(&format!("{D}/plan"), post(code::plan))
        .route(&format!("{D}/apply"), post(code::apply))
        .route(&format!("{D}/file"), get(code::file))
        .route(&format!("{D}/action_modify"), post(action_modify))
        .route(&format!("{D}/action_replace"), post(action_replace))
        .route(
            &format!("{D}/hub_actions"),
            get(hub_actions)
                .patch(append_hub_actions)
                .put(put_hub_actions),
        )
        .route(&format!("{D}/hub_actions_delete"), post(hub_actions_delete))
        .route(&format!("{D}/channels"), get(channels).post(add_channel))
        .route(
            C,
            get(channel)
                .put(put_channel)
                .patch(patch_channel)
                .delete(delete_channel),
        )
        .route(&format!("{C}/rename"), post(rename_channel))
        .route(
            &format!("{C}/tables"),
            get(tables)
                .post(add_table)
                .patch(patch_tables)
                .put(put_tables),
        )
        .route(&format!("{C}/tables_delete"), post(tables_delete))
        .route(
            T,
            get(table)
                .put(put_table)
                .patch(patch_table)
                .delete(delete_table),
        )
        .route(&format!("{T}/rename"), post(rename_table))
        .route(
            &format!("{T}/cols"),
            get(cols).patch(patch_cols).put(put_cols),
        )
        .route(&format!("{T}/cols_delete"), post(cols_delete))
        .route(
            &format!("{C}/loc_groups"),
            get(loc_groups).post(add_loc_group),
        )
        .route(
            G,
            get(loc_group).put(put_loc_group).delete(delete_loc_group),
        )
        .route(&format!("{G}/rename"), post(rename_loc_group))
        .route(
            &format!("{G}/members"),
            get(members).patch(patch_members).put(put_members),
        )
        .route(&format!("{G}/members/{{member}}"), delete(delete_member))
        .route(&format!("{G}/members_delete"), post(members_delete))
        .route(
            &format!("{C}/actions"),
            get(actions).patch(append_actions).put(put_actions),
        )
        .route(&format!("{C}/actions_delete"), post(actions_delete))
        .route(&format!("{D}/locs"), get(locs).post(add_loc))
        .route(L, get(loc).put(put_loc).delete(delete_loc))
        .route(&format!("{L}/rename"), post(rename_loc))
        .route(&format!("{L}/copy"), post(copy_loc))
        .route(&format!("{L}/props"), get(loc_props).patch(patch_loc_props))
        .route(&format!("{L}/props/{{prop}}"), delete(delete_loc_prop))
        .route(&format!("{L}/props_delete"), post(loc_props_delete))
        .route(
            &format!("{L}/actions"),
            get(loc_actions)
                .patch(append_loc_actions)
                .put(put_loc_actions),
        )
        .route(&format!("{L}/actions_delete"), post(loc_actions_delete))
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::invalid(message)
}

fn missing(message: impl Into<String>) -> ServiceError {
    ServiceError::not_found(message)
}

/// The document's channels, locations, … maps (created when absent).
pub(crate) fn section<'a>(doc: &'a mut Json, key: &str) -> &'a mut Map<String, Json> {
    if !doc.get(key).is_some_and(Json::is_object) {
        doc[key] = json!({});
    }
    doc[key].as_object_mut().expect("just made an object")
}

fn channel_mut<'a>(doc: &'a mut Json, ch: &str) -> Result<&'a mut Map<String, Json>, ServiceError> {
    section(doc, "channels")
        .get_mut(ch)
        .and_then(Json::as_object_mut)
        .ok_or_else(|| missing(format!("channel {ch} does not exist")))
}

fn sub_mut<'a>(ch: &'a mut Map<String, Json>, key: &str) -> &'a mut Map<String, Json> {
    if !ch.get(key).is_some_and(Json::is_object) {
        ch.insert(key.into(), json!({}));
    }
    ch.get_mut(key)
        .and_then(Json::as_object_mut)
        .expect("just made an object")
}

fn actions_mut(ch: &mut Map<String, Json>) -> &mut Vec<Json> {
    if !ch.get("actions").is_some_and(Json::is_array) {
        ch.insert("actions".into(), json!([]));
    }
    ch.get_mut("actions")
        .and_then(Json::as_array_mut)
        .expect("just made an array")
}

/// Runs one definition change as `caller`.
async fn edit(
    caller: &Caller,
    hub: &str,
    description: String,
    change: impl Fn(&mut Json) -> Result<(), ServiceError>,
) -> ApiResult<()> {
    let hub = hub_name(hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    caller
        .service
        .edit_definitions(&hub, EventType::DefinitionChange, &description, change)
        .await?;
    Ok(())
}

/// The hub's document, redacted (sealed secrets left out).
async fn document(caller: &Caller, hub: &str) -> ApiResult<std::sync::Arc<Json>> {
    let hub = hub_name(hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    Ok(caller.service.export_document(&hub).await?)
}

fn get_channel<'a>(doc: &'a Json, ch: &str) -> ApiResult<&'a Json> {
    doc["channels"]
        .get(ch)
        .ok_or_else(|| ApiError::not_found(format!("channel {ch} does not exist")))
}

fn get_table<'a>(doc: &'a Json, ch: &str, t: &str) -> ApiResult<&'a Json> {
    get_channel(doc, ch)?["tables"]
        .get(t)
        .ok_or_else(|| ApiError::not_found(format!("table {t} does not exist in channel {ch}")))
}

/// `GET /definition`: `{"locs":{…},"channels":{…},"hub_actions":[]}`.
async fn export(caller: Caller, Path(hub): Path<String>, q: QueryList) -> ApiResult<Out<Json>> {
    let doc = document(&caller, &hub).await?;
    let fetch = q.all("fetch");
    let want = |s: &str| fetch.is_empty() || fetch.iter().any(|f| f == s);
    let channel_filter = q.all("channel");
    let loc_filter = q.all("loc");
    let mut out = Map::new();
    if want("locs") || want("loc_props") {
        let locs: Map<String, Json> = doc["locations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(n, _)| loc_filter.is_empty() || loc_filter.contains(n))
            .map(|(n, l)| {
                (
                    n.clone(),
                    wire::location_out(l, want("loc_props") || fetch.is_empty()),
                )
            })
            .collect();
        out.insert("locs".into(), Json::Object(locs));
    }
    if want("channels") || want("tables") || want("cols") {
        let f = if fetch.is_empty() {
            Fetch::ALL
        } else {
            Fetch::from_list(&fetch)
        };
        let channels: Map<String, Json> = doc["channels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(n, _)| channel_filter.is_empty() || channel_filter.contains(n))
            .map(|(n, c)| (n.clone(), wire::channel_out(c, f)))
            .collect();
        out.insert("channels".into(), Json::Object(channels));
    }
    if want("hub_actions") {
        out.insert(
            "hub_actions".into(),
            Json::Array(stored_hub_actions(&caller, &hub).await?),
        );
    }
    Ok(Out(Json::Object(out)))
}

/// The new name of a rename request (`{"new_name": …}`).
fn new_name(body: &Json) -> ApiResult<String> {
    wire::object(body, "body", &["new_name"])?
        .get("new_name")
        .and_then(Json::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid("new_name: missing (the new name)"))
}

/// A list of names under `key` of a request body (`{"cols": ["a", "b"]}`).
fn names_in(body: &Json, key: &str) -> ApiResult<Vec<String>> {
    wire::object(body, "body", &[key])?
        .get(key)
        .and_then(Json::as_array)
        .ok_or_else(|| ApiError::invalid(format!("{key}: expected an array of names")))?
        .iter()
        .map(|n| {
            n.as_str()
                .map(str::to_owned)
                .ok_or_else(|| ApiError::invalid(format!("{key}: expected names (text)")))
        })
        .collect()
}

/// Renames a definition object (201, as HVR answers).
async fn rename(caller: &Caller, hub: &str, what: Rename, body: &Json) -> ApiResult<StatusCode> {
    let new = new_name(body)?;
    let hub = hub_name(hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    caller.service.rename(&hub, &what, &new).await?;
    Ok(StatusCode::CREATED)
}
