//! The Definition Interface: channels, tables, columns, location groups, actions, locations, export
//! and import. Every change is a small edit of the hub's definitions document made inside
//! `HubService::edit_definitions`, so it passes the same compile as a definitions file, is stored
//! atomically with an audit event naming the user, and a failure changes nothing.

use axum::Json as Out;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Map, Value as Json, json};
use sluice_model::{AccessLevel, EventType};
use sluice_service::{ServiceError, ServiceErrorKind};

use super::hub_name;
use super::wire::{self, Fetch};
use crate::AppState;
use crate::error::{ApiError, ApiResult, codes};
use crate::extract::{Caller, JsonBody, QueryList};

pub(crate) fn routes() -> Router<AppState> {
    const D: &str = "/api/latest/hubs/{hub}/definition";
    Router::new()
        .route(D, get(export))
        .route(&format!("{D}/import"), post(import))
        .route(&format!("{D}/channels"), get(channels).post(add_channel))
        .route(
            &format!("{D}/channels/{{channel}}"),
            get(channel)
                .put(put_channel)
                .patch(patch_channel)
                .delete(delete_channel),
        )
        .route(
            &format!("{D}/channels/{{channel}}/tables"),
            get(tables)
                .post(add_table)
                .patch(patch_tables)
                .put(put_tables),
        )
        .route(
            &format!("{D}/channels/{{channel}}/tables_delete"),
            post(tables_delete),
        )
        .route(
            &format!("{D}/channels/{{channel}}/tables/{{table}}"),
            get(table)
                .put(put_table)
                .patch(patch_table)
                .delete(delete_table),
        )
        .route(
            &format!("{D}/channels/{{channel}}/tables/{{table}}/cols"),
            get(cols).patch(patch_cols).put(put_cols),
        )
        .route(
            &format!("{D}/channels/{{channel}}/loc_groups"),
            get(loc_groups).post(add_loc_group),
        )
        .route(
            &format!("{D}/channels/{{channel}}/loc_groups/{{group}}"),
            get(loc_group).put(put_loc_group).delete(delete_loc_group),
        )
        .route(
            &format!("{D}/channels/{{channel}}/loc_groups/{{group}}/members"),
            get(members).patch(patch_members).put(put_members),
        )
        .route(
            &format!("{D}/channels/{{channel}}/actions"),
            get(actions).patch(append_actions).put(put_actions),
        )
        .route(
            &format!("{D}/channels/{{channel}}/actions_delete"),
            post(actions_delete),
        )
        .route(&format!("{D}/locs"), get(locs).post(add_loc))
        .route(
            &format!("{D}/locs/{{loc}}"),
            get(loc).put(put_loc).delete(delete_loc),
        )
        .route(
            &format!("{D}/locs/{{loc}}/props"),
            get(loc_props).patch(patch_loc_props),
        )
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::invalid(message)
}

fn missing(message: impl Into<String>) -> ServiceError {
    ServiceError::not_found(message)
}

/// The document's channels, locations, … maps (created when absent).
fn section<'a>(doc: &'a mut Json, key: &str) -> &'a mut Map<String, Json> {
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
    caller.require_on_name(hub, AccessLevel::ReadWrite).await?;
    caller
        .service
        .edit_definitions(
            &hub_name(hub)?,
            EventType::DefinitionChange,
            &description,
            change,
        )
        .await?;
    Ok(())
}

/// The hub's document, redacted (sealed secrets left out).
async fn document(caller: &Caller, hub: &str) -> ApiResult<std::sync::Arc<Json>> {
    caller.require_on_name(hub, AccessLevel::ReadOnly).await?;
    Ok(caller.service.export_document(&hub_name(hub)?).await?)
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
        out.insert("hub_actions".into(), json!([]));
    }
    Ok(Out(Json::Object(out)))
}

async fn channels(caller: Caller, Path(hub): Path<String>, q: QueryList) -> ApiResult<Out<Json>> {
    let doc = document(&caller, &hub).await?;
    let fetch = q.all("fetch");
    let f = if fetch.is_empty() {
        Fetch::default()
    } else {
        Fetch::from_list(&fetch)
    };
    let wanted = q.all("channel");
    let out: Map<String, Json> = doc["channels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(n, _)| wanted.is_empty() || wanted.contains(n))
        .map(|(n, c)| (n.clone(), wire::channel_out(c, f)))
        .collect();
    Ok(Out(Json::Object(out)))
}

async fn channel(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let doc = document(&caller, &hub).await?;
    let fetch = q.all("fetch");
    let f = if fetch.is_empty() {
        Fetch::ALL
    } else {
        Fetch::from_list(&fetch)
    };
    Ok(Out(wire::channel_out(get_channel(&doc, &ch)?, f)))
}

fn channel_exists(ch: &str) -> ServiceError {
    ServiceError::new(
        ServiceErrorKind::Conflict,
        format!("Channel '{ch}' already exists"),
    )
    .with_code(codes::CHANNEL_EXISTS)
}

async fn add_channel(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(mut body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let name = body
        .as_object_mut()
        .and_then(|o| o.remove("channel"))
        .and_then(|c| c.as_str().map(str::to_owned))
        .ok_or_else(|| ApiError::invalid("channel: missing (the new channel's name)"))?;
    let new = wire::channel_in(&body, &format!("channel {name}"))?;
    edit(&caller, &hub, format!("add_channel {name}"), |doc| {
        let channels = section(doc, "channels");
        if channels.contains_key(&name) {
            return Err(channel_exists(&name));
        }
        channels.insert(name.clone(), new.clone());
        Ok(())
    })
    .await?;
    Ok(StatusCode::CREATED)
}

async fn put_channel(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let new = wire::channel_in(&body, &format!("channel {ch}"))?;
    edit(&caller, &hub, format!("replace_channel {ch}"), |doc| {
        section(doc, "channels").insert(ch.clone(), new.clone());
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn patch_channel(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let map = wire::object(&body, "body", &["description"])?;
    let description = map.get("description").cloned().unwrap_or(Json::Null);
    edit(&caller, &hub, format!("modify_channel {ch}"), |doc| {
        channel_mut(doc, &ch)?.insert("description".into(), description.clone());
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_channel(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    edit(&caller, &hub, format!("delete_channel {ch}"), |doc| {
        section(doc, "channels")
            .remove(&ch)
            .map(|_| ())
            .ok_or_else(|| missing(format!("channel {ch} does not exist")))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tables(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let doc = document(&caller, &hub).await?;
    let with_cols = q.all("fetch").iter().any(|f| f == "cols");
    let wanted = q.all("table");
    let out: Map<String, Json> = get_channel(&doc, &ch)?["tables"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(n, _)| wanted.is_empty() || wanted.contains(n))
        .map(|(n, t)| (n.clone(), wire::table_out(t, with_cols)))
        .collect();
    Ok(Out(Json::Object(out)))
}

async fn add_table(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
    JsonBody(mut body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let name = body
        .as_object_mut()
        .and_then(|o| o.remove("table"))
        .and_then(|c| c.as_str().map(str::to_owned))
        .ok_or_else(|| ApiError::invalid("table: missing (the new table's name)"))?;
    let new = wire::table_in(&body, &format!("table {name}"))?;
    edit(&caller, &hub, format!("add_table {ch}.{name}"), |doc| {
        let tables = sub_mut(channel_mut(doc, &ch)?, "tables");
        if tables.contains_key(&name) {
            return Err(ServiceError::new(
                ServiceErrorKind::Conflict,
                format!("table {name} already exists in channel {ch}"),
            ));
        }
        tables.insert(name.clone(), new.clone());
        Ok(())
    })
    .await?;
    Ok(StatusCode::CREATED)
}

fn tables_in(body: &Json) -> ApiResult<Map<String, Json>> {
    let map = body
        .as_object()
        .ok_or_else(|| ApiError::invalid("expected an object of tables"))?;
    map.iter()
        .map(|(n, t)| Ok((n.clone(), wire::table_in(t, &format!("table {n}"))?)))
        .collect()
}

async fn patch_tables(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let new = tables_in(&body)?;
    edit(&caller, &hub, format!("modify_table_list {ch}"), |doc| {
        let tables = sub_mut(channel_mut(doc, &ch)?, "tables");
        for (n, t) in &new {
            tables.insert(n.clone(), t.clone());
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn put_tables(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let new = tables_in(&body)?;
    edit(&caller, &hub, format!("replace_table_list {ch}"), |doc| {
        channel_mut(doc, &ch)?.insert("tables".into(), Json::Object(new.clone()));
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tables_delete(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let map = wire::object(&body, "body", &["tables"])?;
    let names: Vec<String> = map
        .get("tables")
        .and_then(Json::as_array)
        .ok_or_else(|| ApiError::invalid("tables: expected an array of table names"))?
        .iter()
        .map(|t| {
            t.as_str()
                .map(str::to_owned)
                .ok_or_else(|| ApiError::invalid("tables: expected names"))
        })
        .collect::<ApiResult<_>>()?;
    edit(
        &caller,
        &hub,
        format!("delete_tables {ch}: {}", names.join(", ")),
        |doc| {
            let tables = sub_mut(channel_mut(doc, &ch)?, "tables");
            for n in &names {
                tables
                    .remove(n)
                    .ok_or_else(|| missing(format!("table {n} does not exist in channel {ch}")))?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn table(
    caller: Caller,
    Path((hub, ch, t)): Path<(String, String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let doc = document(&caller, &hub).await?;
    let fetch = q.all("fetch");
    let with_cols = fetch.is_empty() || fetch.iter().any(|f| f == "cols");
    Ok(Out(wire::table_out(get_table(&doc, &ch, &t)?, with_cols)))
}

async fn put_table(
    caller: Caller,
    Path((hub, ch, t)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let new = wire::table_in(&body, &format!("table {t}"))?;
    edit(&caller, &hub, format!("replace_table {ch}.{t}"), |doc| {
        sub_mut(channel_mut(doc, &ch)?, "tables").insert(t.clone(), new.clone());
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn patch_table(
    caller: Caller,
    Path((hub, ch, t)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let map = wire::object(&body, "body", &["base_name", "table_group"])?.clone();
    edit(&caller, &hub, format!("modify_table {ch}.{t}"), |doc| {
        let table = sub_mut(channel_mut(doc, &ch)?, "tables")
            .get_mut(&t)
            .and_then(Json::as_object_mut)
            .ok_or_else(|| missing(format!("table {t} does not exist in channel {ch}")))?;
        for (k, v) in &map {
            if v.is_null() {
                table.remove(k);
            } else {
                table.insert(k.clone(), v.clone());
            }
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_table(
    caller: Caller,
    Path((hub, ch, t)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    edit(&caller, &hub, format!("delete_table {ch}.{t}"), |doc| {
        sub_mut(channel_mut(doc, &ch)?, "tables")
            .remove(&t)
            .map(|_| ())
            .ok_or_else(|| missing(format!("table {t} does not exist in channel {ch}")))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn cols(
    caller: Caller,
    Path((hub, ch, t)): Path<(String, String, String)>,
) -> ApiResult<Out<Json>> {
    let doc = document(&caller, &hub).await?;
    let table = get_table(&doc, &ch, &t)?;
    Ok(Out(match table.get("cols").and_then(Json::as_object) {
        Some(c) => wire::cols_out(c),
        None => json!({}),
    }))
}

async fn change_cols(
    caller: Caller,
    hub: String,
    ch: String,
    t: String,
    body: Json,
    replace: bool,
) -> ApiResult<StatusCode> {
    let new = wire::cols_in(&body, &format!("table {t}.cols"))?;
    let new = new.as_object().cloned().unwrap_or_default();
    let verb = if replace {
        "replace_col_list"
    } else {
        "modify_col_list"
    };
    edit(&caller, &hub, format!("{verb} {ch}.{t}"), |doc| {
        let table = sub_mut(channel_mut(doc, &ch)?, "tables")
            .get_mut(&t)
            .and_then(Json::as_object_mut)
            .ok_or_else(|| missing(format!("table {t} does not exist in channel {ch}")))?;
        let cols = sub_mut(table, "cols");
        if replace {
            cols.clear();
        }
        for (n, c) in &new {
            cols.insert(n.clone(), c.clone());
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn patch_cols(
    caller: Caller,
    Path((hub, ch, t)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    change_cols(caller, hub, ch, t, body, false).await
}

async fn put_cols(
    caller: Caller,
    Path((hub, ch, t)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    change_cols(caller, hub, ch, t, body, true).await
}

async fn loc_groups(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let doc = document(&caller, &hub).await?;
    let fetch = q.all("fetch");
    let f = Fetch {
        loc_groups: true,
        members: fetch.is_empty() || fetch.iter().any(|x| x == "members"),
        ..Default::default()
    };
    Ok(Out(
        wire::channel_out(get_channel(&doc, &ch)?, f)["loc_groups"].clone(),
    ))
}

async fn loc_group(
    caller: Caller,
    Path((hub, ch, g)): Path<(String, String, String)>,
) -> ApiResult<Out<Json>> {
    let doc = document(&caller, &hub).await?;
    let group = get_channel(&doc, &ch)?["loc_groups"]
        .get(&g)
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found(format!("location group {g} does not exist in channel {ch}"))
        })?;
    Ok(Out(group))
}

fn members_in(body: &Json) -> ApiResult<Vec<Json>> {
    let map = wire::object(body, "body", &["members", "loc_group"])?;
    map.get("members").map_or(Ok(Vec::new()), |m| {
        m.as_array()
            .cloned()
            .ok_or_else(|| ApiError::invalid("members: expected an array of location names"))
    })
}

/// Removes `members` from every other group of the channel (a location is in one group).
fn take_from_other_groups(groups: &mut Map<String, Json>, keep: &str, members: &[Json]) {
    for (g, body) in groups.iter_mut() {
        if g == keep {
            continue;
        }
        if let Some(list) = body.get_mut("members").and_then(Json::as_array_mut) {
            list.retain(|m| !members.contains(m));
        }
    }
}

async fn add_loc_group(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let g = body
        .get("loc_group")
        .and_then(Json::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid("loc_group: missing (the new group's name)"))?;
    let members = members_in(&body)?;
    edit(&caller, &hub, format!("add_loc_group {ch}.{g}"), |doc| {
        let groups = sub_mut(channel_mut(doc, &ch)?, "loc_groups");
        if groups.contains_key(&g) {
            return Err(ServiceError::new(
                ServiceErrorKind::Conflict,
                format!("location group {g} already exists in channel {ch}"),
            ));
        }
        take_from_other_groups(groups, &g, &members);
        groups.insert(g.clone(), json!({ "members": members }));
        Ok(())
    })
    .await?;
    Ok(StatusCode::CREATED)
}

async fn put_loc_group(
    caller: Caller,
    Path((hub, ch, g)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let members = members_in(&body)?;
    edit(
        &caller,
        &hub,
        format!("replace_loc_group {ch}.{g}"),
        |doc| {
            let groups = sub_mut(channel_mut(doc, &ch)?, "loc_groups");
            take_from_other_groups(groups, &g, &members);
            groups.insert(g.clone(), json!({ "members": members }));
            Ok(())
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_loc_group(
    caller: Caller,
    Path((hub, ch, g)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    edit(&caller, &hub, format!("delete_loc_group {ch}.{g}"), |doc| {
        sub_mut(channel_mut(doc, &ch)?, "loc_groups")
            .remove(&g)
            .map(|_| ())
            .ok_or_else(|| missing(format!("location group {g} does not exist in channel {ch}")))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn members(
    caller: Caller,
    Path((hub, ch, g)): Path<(String, String, String)>,
) -> ApiResult<Out<Json>> {
    let doc = document(&caller, &hub).await?;
    let group = get_channel(&doc, &ch)?["loc_groups"]
        .get(&g)
        .ok_or_else(|| {
            ApiError::not_found(format!("location group {g} does not exist in channel {ch}"))
        })?;
    Ok(Out(
        json!({ "members": group.get("members").cloned().unwrap_or(json!([])) }),
    ))
}

async fn change_members(
    caller: Caller,
    hub: String,
    ch: String,
    g: String,
    body: Json,
    replace: bool,
) -> ApiResult<StatusCode> {
    let new = members_in(&body)?;
    let verb = if replace {
        "replace_loc_group_member_list"
    } else {
        "add_loc_group_members"
    };
    edit(&caller, &hub, format!("{verb} {ch}.{g}"), |doc| {
        let groups = sub_mut(channel_mut(doc, &ch)?, "loc_groups");
        if !groups.contains_key(&g) {
            return Err(missing(format!(
                "location group {g} does not exist in channel {ch}"
            )));
        }
        take_from_other_groups(groups, &g, &new);
        let group = groups
            .get_mut(&g)
            .and_then(Json::as_object_mut)
            .expect("checked above");
        let list = group.entry("members").or_insert_with(|| json!([]));
        let list = list
            .as_array_mut()
            .ok_or_else(|| invalid("members: not a list"))?;
        if replace {
            list.clear();
        }
        for m in &new {
            if !list.contains(m) {
                list.push(m.clone());
            }
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn patch_members(
    caller: Caller,
    Path((hub, ch, g)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    change_members(caller, hub, ch, g, body, false).await
}

async fn put_members(
    caller: Caller,
    Path((hub, ch, g)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    change_members(caller, hub, ch, g, body, true).await
}

async fn actions(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let doc = document(&caller, &hub).await?;
    let types = q.all("action_type");
    let list: Vec<Json> = get_channel(&doc, &ch)?["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| {
            types.is_empty()
                || a["type"]
                    .as_str()
                    .is_some_and(|t| types.iter().any(|x| x == t))
        })
        .cloned()
        .collect();
    Ok(Out(Json::Array(list)))
}

fn action_list(body: &Json) -> ApiResult<Vec<Json>> {
    let map = wire::object(body, "body", &["actions"])?;
    let list = map
        .get("actions")
        .ok_or_else(|| ApiError::invalid("actions: missing"))?;
    Ok(wire::actions_in(list, "actions")?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

async fn append_actions(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let new = action_list(&body)?;
    edit(&caller, &hub, format!("add_channel_actions {ch}"), |doc| {
        actions_mut(channel_mut(doc, &ch)?).extend(new.iter().cloned());
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn put_actions(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let new = action_list(&body)?;
    edit(
        &caller,
        &hub,
        format!("replace_channel_action_list {ch}"),
        |doc| {
            *actions_mut(channel_mut(doc, &ch)?) = new.clone();
            Ok(())
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Compares actions as HVR does: same type, scopes (`*` when absent) and params.
fn same_action(a: &Json, b: &Json) -> bool {
    let scope = |x: &Json, k: &str| x.get(k).and_then(Json::as_str).unwrap_or("*").to_owned();
    let params = |x: &Json| {
        x.get("params")
            .cloned()
            .filter(|p| p.as_object().is_some_and(|o| !o.is_empty()))
    };
    a.get("type") == b.get("type")
        && scope(a, "loc_scope") == scope(b, "loc_scope")
        && scope(a, "table_scope") == scope(b, "table_scope")
        && params(a) == params(b)
}

async fn actions_delete(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let gone = action_list(&body)?;
    edit(
        &caller,
        &hub,
        format!("delete_channel_actions {ch}"),
        |doc| {
            let list = actions_mut(channel_mut(doc, &ch)?);
            for g in &gone {
                let at = list
                    .iter()
                    .position(|a| same_action(a, g))
                    .ok_or_else(|| missing(format!("Action does not exist: {g}")))?;
                list.remove(at);
            }
            Ok(())
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn locs(caller: Caller, Path(hub): Path<String>, q: QueryList) -> ApiResult<Out<Json>> {
    let doc = document(&caller, &hub).await?;
    let fetch = q.all("fetch");
    let with_props = fetch.iter().any(|f| f == "loc_props");
    let wanted = q.all("loc");
    let out: Map<String, Json> = doc["locations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(n, _)| wanted.is_empty() || wanted.contains(n))
        .map(|(n, l)| (n.clone(), wire::location_out(l, with_props)))
        .collect();
    Ok(Out(Json::Object(out)))
}

async fn loc(caller: Caller, Path((hub, l)): Path<(String, String)>) -> ApiResult<Out<Json>> {
    let doc = document(&caller, &hub).await?;
    let loc = doc["locations"]
        .get(&l)
        .ok_or_else(|| ApiError::not_found(format!("location {l} does not exist")))?;
    Ok(Out(wire::location_out(loc, true)))
}

async fn loc_props(caller: Caller, Path((hub, l)): Path<(String, String)>) -> ApiResult<Out<Json>> {
    let Out(loc) = loc(caller, Path((hub, l))).await?;
    Ok(Out(loc["props"].clone()))
}

async fn add_loc(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(mut body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let name = body
        .as_object_mut()
        .and_then(|o| o.remove("loc"))
        .and_then(|c| c.as_str().map(str::to_owned))
        .ok_or_else(|| ApiError::invalid("loc: missing (the new location's name)"))?;
    let new = wire::location_in(&body, &format!("location {name}"))?;
    edit(&caller, &hub, format!("add_loc {name}"), |doc| {
        let locs = section(doc, "locations");
        if locs.contains_key(&name) {
            return Err(ServiceError::new(
                ServiceErrorKind::Conflict,
                format!("location {name} already exists"),
            ));
        }
        locs.insert(name.clone(), new.clone());
        Ok(())
    })
    .await?;
    Ok(StatusCode::CREATED)
}

/// Keeps stored (sealed) secrets a replacement leaves out: GETs never show them, so a client's
/// GET-modify-PUT must not erase them.
fn keep_sealed(old: Option<&Json>, new: &mut Json) {
    let Some(old_props) = old.and_then(|o| o.get("props")).and_then(Json::as_object) else {
        return;
    };
    let new_props = new["props"].as_object_mut();
    let Some(new_props) = new_props else { return };
    for (k, v) in old_props {
        if v.as_str().is_some_and(sluice_service::secrets::is_sealed) && !new_props.contains_key(k)
        {
            new_props.insert(k.clone(), v.clone());
        }
    }
}

async fn put_loc(
    caller: Caller,
    Path((hub, l)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let new = wire::location_in(&body, &format!("location {l}"))?;
    edit(&caller, &hub, format!("replace_loc {l}"), |doc| {
        let locs = section(doc, "locations");
        let mut new = new.clone();
        keep_sealed(locs.get(&l), &mut new);
        locs.insert(l.clone(), new);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_loc(
    caller: Caller,
    Path((hub, l)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    edit(&caller, &hub, format!("delete_loc {l}"), |doc| {
        section(doc, "locations")
            .remove(&l)
            .map(|_| ())
            .ok_or_else(|| missing(format!("location {l} does not exist")))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn patch_loc_props(
    caller: Caller,
    Path((hub, l)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let changes = body
        .as_object()
        .cloned()
        .ok_or_else(|| ApiError::invalid("expected an object of properties"))?;
    edit(&caller, &hub, format!("modify_loc_props {l}"), |doc| {
        let loc = section(doc, "locations")
            .get_mut(&l)
            .and_then(Json::as_object_mut)
            .ok_or_else(|| missing(format!("location {l} does not exist")))?;
        for (k, v) in &changes {
            if k == "Class" {
                loc.insert("class".into(), v.clone());
                continue;
            }
            let props = sub_mut(loc, "props");
            if v.is_null() {
                props.remove(k);
            } else {
                props.insert(k.clone(), v.clone());
            }
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One change of an import, applied to the document.
fn apply_change(doc: &mut Json, kind: &str, arg: &Json) -> Result<(), ServiceError> {
    let name_of = |key: &str| -> Result<String, ServiceError> {
        arg.get(key)
            .and_then(Json::as_str)
            .map(str::to_owned)
            .ok_or_else(|| invalid(format!("{kind}: {key} missing")))
    };
    let without = |key: &str| -> Json {
        let mut a = arg.clone();
        if let Some(o) = a.as_object_mut() {
            o.remove(key);
        }
        a
    };
    let api = |e: ApiError| invalid(format!("{kind}: {}", e_message(&e)));
    match kind {
        "add_channel" | "replace_channel" => {
            let name = name_of("channel")?;
            let new =
                wire::channel_in(&without("channel"), &format!("channel {name}")).map_err(api)?;
            let channels = section(doc, "channels");
            if kind == "add_channel" && channels.contains_key(&name) {
                return Err(channel_exists(&name));
            }
            channels.insert(name, new);
        }
        "delete_channel" => {
            let name = name_of("channel")?;
            section(doc, "channels")
                .remove(&name)
                .ok_or_else(|| missing(format!("channel {name} does not exist")))?;
        }
        "add_loc" | "replace_loc" => {
            let name = name_of("loc")?;
            let mut new =
                wire::location_in(&without("loc"), &format!("location {name}")).map_err(api)?;
            let locs = section(doc, "locations");
            if kind == "add_loc" && locs.contains_key(&name) {
                return Err(ServiceError::new(
                    ServiceErrorKind::Conflict,
                    format!("location {name} already exists"),
                ));
            }
            keep_sealed(locs.get(&name), &mut new);
            locs.insert(name, new);
        }
        "delete_loc" => {
            let name = name_of("loc")?;
            section(doc, "locations")
                .remove(&name)
                .ok_or_else(|| missing(format!("location {name} does not exist")))?;
        }
        "add_table" | "replace_table" => {
            let ch = name_of("channel")?;
            let name = name_of("table")?;
            let mut body = without("channel");
            if let Some(o) = body.as_object_mut() {
                o.remove("table");
            }
            let new = wire::table_in(&body, &format!("table {name}")).map_err(api)?;
            let tables = sub_mut(channel_mut(doc, &ch)?, "tables");
            if kind == "add_table" && tables.contains_key(&name) {
                return Err(ServiceError::new(
                    ServiceErrorKind::Conflict,
                    format!("table {name} already exists in channel {ch}"),
                ));
            }
            tables.insert(name, new);
        }
        "delete_tables" => {
            let ch = name_of("channel")?;
            let names: Vec<String> = arg
                .get("tables")
                .and_then(Json::as_array)
                .ok_or_else(|| invalid("delete_tables: tables missing"))?
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect();
            let tables = sub_mut(channel_mut(doc, &ch)?, "tables");
            for n in names {
                tables
                    .remove(&n)
                    .ok_or_else(|| missing(format!("table {n} does not exist in channel {ch}")))?;
            }
        }
        other => {
            return Err(invalid(format!(
                "import change {other:?} is not supported; supported: add_channel, replace_channel, delete_channel, add_loc, replace_loc, delete_loc, add_table, replace_table, delete_tables"
            )));
        }
    }
    Ok(())
}

fn e_message(e: &ApiError) -> String {
    e.message().to_owned()
}

async fn import(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<Out<Json>> {
    let map = wire::object(&body, "body", &["changes", "on_add_exists"])?;
    let on_exists = map
        .get("on_add_exists")
        .and_then(Json::as_str)
        .unwrap_or("abort");
    if !matches!(on_exists, "abort" | "replace") {
        return Err(ApiError::invalid(
            "on_add_exists: sluice supports \"abort\" and \"replace\"",
        ));
    }
    let changes: Vec<(String, Json)> = map
        .get("changes")
        .and_then(Json::as_array)
        .ok_or_else(|| ApiError::invalid("changes: expected an array"))?
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let o = c.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
                ApiError::invalid(format!("changes[{i}]: expected one {{\"kind\": {{…}}}}"))
            })?;
            let (k, v) = o.iter().next().expect("one entry");
            let k = if on_exists == "replace" {
                k.replacen("add_", "replace_", 1)
                    .replace("replace_tables", "add_tables")
            } else {
                k.clone()
            };
            Ok((k, v.clone()))
        })
        .collect::<ApiResult<_>>()?;
    let summary: Vec<String> = changes.iter().map(|(k, _)| k.clone()).collect();
    caller.require_on_name(&hub, AccessLevel::ReadWrite).await?;
    caller
        .service
        .edit_definitions(
            &hub_name(&hub)?,
            EventType::DefinitionChangeImport,
            &format!(
                "import of {} change(s): {}",
                changes.len(),
                summary.join(", ")
            ),
            |doc| {
                for (i, (k, v)) in changes.iter().enumerate() {
                    apply_change(doc, k, v).map_err(|e| {
                        let kind = e.kind();
                        let code = e.code();
                        let e2 = ServiceError::new(kind, format!("changes[{i}] {k}: {e}"));
                        match code {
                            Some(c) => e2.with_code(c),
                            None => e2,
                        }
                    })?;
                }
                Ok(())
            },
        )
        .await?;
    Ok(Out(json!({ "applied": changes.len() })))
}
