//! Actions: of a channel (scoped), of the hub and of a location (unscoped), and HVR's `action_modify` / `action_replace` across them.

use super::*;
use sluice_service::action_list::ActionOwner;

pub(super) async fn actions(
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

pub(super) fn action_list(body: &Json) -> ApiResult<Vec<Json>> {
    let map = wire::object(body, "body", &["actions"])?;
    let list = map
        .get("actions")
        .ok_or_else(|| ApiError::invalid("actions: missing"))?;
    Ok(wire::actions_in(list, "actions")?
        .as_array()
        .cloned()
        .unwrap_or_default())
}

pub(super) async fn append_actions(
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

pub(super) async fn put_actions(
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
pub(super) fn same_action(a: &Json, b: &Json) -> bool {
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

pub(super) async fn actions_delete(
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

fn owner_of(loc: &str) -> ApiResult<ActionOwner> {
    sluice_model::LocationName::new(loc)
        .map(ActionOwner::Location)
        .map_err(|_| ApiError::not_found(format!("location {loc} does not exist")))
}

/// The hub's stored actions.
pub(super) async fn stored_hub_actions(caller: &Caller, hub: &str) -> ApiResult<Vec<Json>> {
    Ok(caller
        .service
        .action_list(&hub_name(hub)?, &ActionOwner::Hub)
        .await?)
}

/// A location's stored actions.
pub(super) async fn stored_loc_actions(
    caller: &Caller,
    hub: &str,
    loc: &str,
) -> ApiResult<Vec<Json>> {
    Ok(caller
        .service
        .action_list(&hub_name(hub)?, &owner_of(loc)?)
        .await?)
}

async fn edit_list(
    caller: &Caller,
    hub: &str,
    owner: ActionOwner,
    change_name: &str,
    change: impl FnOnce(&mut Vec<Json>) -> Result<(), ServiceError>,
) -> ApiResult<()> {
    let hub = hub_name(hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    caller
        .service
        .edit_action_list(&hub, &owner, change_name, change)
        .await?;
    Ok(())
}

/// Changes a location's stored actions.
pub(super) async fn edit_loc_actions(
    caller: &Caller,
    hub: &str,
    loc: &str,
    change_name: &str,
    change: impl FnOnce(&mut Vec<Json>) -> Result<(), ServiceError>,
) -> ApiResult<()> {
    edit_list(caller, hub, owner_of(loc)?, change_name, change).await
}

/// `{"actions": [...]}` of an unscoped (hub or location) action list.
fn unscoped_list(body: &Json) -> ApiResult<Vec<Json>> {
    wire::object(body, "body", &["actions"])?
        .get("actions")
        .and_then(Json::as_array)
        .cloned()
        .ok_or_else(|| ApiError::invalid("actions: expected an array of actions"))
}

fn filter_types(list: Vec<Json>, q: &QueryList) -> Vec<Json> {
    let types = q.all("action_type");
    list.into_iter()
        .filter(|a| {
            types.is_empty()
                || a["type"]
                    .as_str()
                    .is_some_and(|t| types.iter().any(|x| x == t))
        })
        .collect()
}

/// Removes each of `gone` (compared as HVR does) from `list`; one that is not there is a 404.
fn remove_each(list: &mut Vec<Json>, gone: &[Json]) -> Result<(), ServiceError> {
    for g in gone {
        let g = sluice_service::action_list::check_action(g, "actions")?;
        let at = list
            .iter()
            .position(|a| same_action(a, &g))
            .ok_or_else(|| missing(format!("Action does not exist: {g}")))?;
        list.remove(at);
    }
    Ok(())
}

/// `GET …/definition/hub_actions`.
pub(super) async fn hub_actions(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let h = hub_name(&hub)?;
    caller.require_on(&h, AccessLevel::ReadOnly).await?;
    Ok(Out(Json::Array(filter_types(
        stored_hub_actions(&caller, &hub).await?,
        &q,
    ))))
}

/// `PATCH …/definition/hub_actions` `{"actions": […]}`: appends.
pub(super) async fn append_hub_actions(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let new = unscoped_list(&body)?;
    edit_list(&caller, &hub, ActionOwner::Hub, "add_hub_actions", |l| {
        l.extend(new);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT …/definition/hub_actions` `{"actions": […]}`: replaces.
pub(super) async fn put_hub_actions(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let new = unscoped_list(&body)?;
    edit_list(
        &caller,
        &hub,
        ActionOwner::Hub,
        "replace_hub_action_list",
        |l| {
            *l = new;
            Ok(())
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/definition/hub_actions_delete` `{"actions": […]}`: deletes by exact match.
pub(super) async fn hub_actions_delete(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let gone = unscoped_list(&body)?;
    edit_list(&caller, &hub, ActionOwner::Hub, "delete_hub_actions", |l| {
        remove_each(l, &gone)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET …/locs/{loc}/actions`.
pub(super) async fn loc_actions(
    caller: Caller,
    Path((hub, l)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let h = hub_name(&hub)?;
    caller.require_on(&h, AccessLevel::ReadOnly).await?;
    Ok(Out(Json::Array(filter_types(
        stored_loc_actions(&caller, &hub, &l).await?,
        &q,
    ))))
}

/// `PATCH …/locs/{loc}/actions` `{"actions": […]}`: appends.
pub(super) async fn append_loc_actions(
    caller: Caller,
    Path((hub, l)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let new = unscoped_list(&body)?;
    edit_loc_actions(&caller, &hub, &l, "add_loc_actions", |list| {
        list.extend(new);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT …/locs/{loc}/actions` `{"actions": […]}`: replaces.
pub(super) async fn put_loc_actions(
    caller: Caller,
    Path((hub, l)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let new = unscoped_list(&body)?;
    edit_loc_actions(&caller, &hub, &l, "replace_loc_action_list", |list| {
        *list = new;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/locs/{loc}/actions_delete` `{"actions": […]}`: deletes by exact match.
pub(super) async fn loc_actions_delete(
    caller: Caller,
    Path((hub, l)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let gone = unscoped_list(&body)?;
    edit_loc_actions(&caller, &hub, &l, "delete_loc_actions", |list| {
        remove_each(list, &gone)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One side (`old` / `new`) of an `action_modify` / `action_replace` request.
#[derive(Debug, Default, Clone)]
struct ActionSide {
    channel: Option<String>,
    loc_scope: Option<String>,
    table_scope: Option<String>,
    params: Option<Map<String, Json>>,
}

fn side(body: &Map<String, Json>, key: &str) -> ApiResult<ActionSide> {
    let v = body
        .get(key)
        .ok_or_else(|| ApiError::invalid(format!("{key}: missing")))?;
    let map = wire::object(v, key, &["channel", "loc_scope", "table_scope", "params"])?;
    let text = |k: &str| -> ApiResult<Option<String>> {
        match map.get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::invalid(format!("{key}.{k}: expected text"))),
        }
    };
    let params = match map.get("params") {
        None | Some(Json::Null) => None,
        Some(Json::Object(p)) => Some(p.clone()),
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "{key}.params: expected an object"
            )));
        }
    };
    Ok(ActionSide {
        channel: text("channel")?,
        loc_scope: text("loc_scope")?,
        table_scope: text("table_scope")?,
        params,
    })
}

/// Whether action `a` of type `t` is the one `old` describes (params compared when given).
fn matches_old(a: &Json, t: &str, old: &ActionSide) -> bool {
    let scope = |k: &str| a.get(k).and_then(Json::as_str).unwrap_or("*").to_owned();
    let params = a
        .get("params")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    a.get("type").and_then(Json::as_str) == Some(t)
        && old
            .loc_scope
            .as_deref()
            .is_none_or(|s| s == scope("loc_scope"))
        && old
            .table_scope
            .as_deref()
            .is_none_or(|s| s == scope("table_scope"))
        && old.params.as_ref().is_none_or(|p| *p == params)
}

/// The changed action: `new`'s scopes and params over the old one's (`replace`: params replaced,
/// else merged with `null` deleting a param).
fn changed(a: &Json, new: &ActionSide, replace: bool) -> Json {
    let mut out = a.as_object().cloned().unwrap_or_default();
    for (k, v) in [
        ("loc_scope", &new.loc_scope),
        ("table_scope", &new.table_scope),
    ] {
        if let Some(v) = v {
            out.insert(k.into(), Json::from(v.as_str()));
        }
    }
    if let Some(p) = &new.params {
        let mut params = if replace {
            Map::new()
        } else {
            out.get("params")
                .and_then(Json::as_object)
                .cloned()
                .unwrap_or_default()
        };
        for (k, v) in p {
            if v.is_null() {
                params.remove(k);
            } else {
                params.insert(k.clone(), v.clone());
            }
        }
        if params.is_empty() {
            out.remove("params");
        } else {
            out.insert("params".into(), Json::Object(params));
        }
    }
    Json::Object(out)
}

/// Finds the one action `old` describes in `list` and changes it; none is a 404, several a 409.
fn modify_in(
    list: &mut [Json],
    t: &str,
    old: &ActionSide,
    new: &ActionSide,
    replace: bool,
) -> Result<(), ServiceError> {
    let found: Vec<usize> = (0..list.len())
        .filter(|i| matches_old(&list[*i], t, old))
        .collect();
    match found.as_slice() {
        [] => Err(missing(format!("Action {t} does not exist"))),
        [i] => {
            list[*i] = changed(&list[*i], new, replace);
            Ok(())
        }
        many => Err(ServiceError::new(
            ServiceErrorKind::Conflict,
            format!(
                "{} actions {t} match old; give its scopes and params to tell them apart",
                many.len()
            ),
        )),
    }
}

async fn modify_action(caller: &Caller, hub: &str, body: &Json, replace: bool) -> ApiResult<()> {
    let map = wire::object(body, "body", &["type", "old", "new"])?;
    let t = map
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| ApiError::invalid("type: missing (the action type)"))?
        .to_owned();
    let old = side(map, "old")?;
    let new = side(map, "new")?;
    let change_name = if replace {
        "replace_action"
    } else {
        "modify_action"
    };
    if new.channel.is_some() && new.channel != old.channel {
        return Err(ApiError::invalid(
            "new.channel: moving an action to another channel is not supported by sluice; delete it and add it there",
        ));
    }
    match &old.channel {
        Some(ch) => {
            edit(
                caller,
                hub,
                format!("{change_name} {t} in channel {ch}"),
                |doc| {
                    let list = actions_mut(channel_mut(doc, ch)?);
                    modify_in(list, &t, &old, &new, replace)
                },
            )
            .await
        }
        None => {
            if new.table_scope.is_some() {
                return Err(ApiError::invalid(
                    "new.table_scope: hub and location actions have no table scope",
                ));
            }
            let owner = match old.loc_scope.as_deref() {
                None | Some("*") => ActionOwner::Hub,
                Some(loc) => owner_of(loc)?,
            };
            let unscoped = ActionSide {
                loc_scope: None,
                table_scope: None,
                ..old.clone()
            };
            let new = ActionSide {
                loc_scope: None,
                ..new.clone()
            };
            edit_list(caller, hub, owner, change_name, |list| {
                modify_in(list, &t, &unscoped, &new, replace)
            })
            .await
        }
    }
}

/// `POST …/definition/action_modify`: changes the scopes or params (`null` deletes one) of the
/// one action `old` describes (`old.channel` absent: a hub action, or a location's when
/// `old.loc_scope` names it).
pub(super) async fn action_modify(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    modify_action(&caller, &hub, &body, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/definition/action_replace`: as `action_modify`, the params replaced as a whole.
pub(super) async fn action_replace(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    modify_action(&caller, &hub, &body, true).await?;
    Ok(StatusCode::NO_CONTENT)
}
