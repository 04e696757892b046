//! Locations: list, one, add, replace, delete, props (change, delete), rename, copy.

use super::*;

pub(super) async fn locs(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
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

pub(super) async fn loc(
    caller: Caller,
    Path((hub, l)): Path<(String, String)>,
) -> ApiResult<Out<Json>> {
    let doc = document(&caller, &hub).await?;
    let loc = doc["locations"]
        .get(&l)
        .ok_or_else(|| ApiError::not_found(format!("location {l} does not exist")))?;
    let mut out = wire::location_out(loc, true);
    out["actions"] = Json::Array(stored_loc_actions(&caller, &hub, &l).await?);
    Ok(Out(out))
}

pub(super) async fn loc_props(
    caller: Caller,
    Path((hub, l)): Path<(String, String)>,
) -> ApiResult<Out<Json>> {
    let doc = document(&caller, &hub).await?;
    let loc = doc["locations"]
        .get(&l)
        .ok_or_else(|| ApiError::not_found(format!("location {l} does not exist")))?;
    Ok(Out(wire::location_out(loc, true)["props"].clone()))
}

pub(super) async fn add_loc(
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
    set_loc_actions(&caller, &hub, &name, body.get("actions")).await?;
    Ok(StatusCode::CREATED)
}

/// Keeps stored (sealed) secrets a replacement leaves out: GETs never show them, so a client's
/// GET-modify-PUT must not erase them.
pub(super) fn keep_sealed(old: Option<&Json>, new: &mut Json) {
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

pub(super) async fn put_loc(
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
    set_loc_actions(&caller, &hub, &l, body.get("actions")).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn delete_loc(
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
    if let Ok(name) = sluice_model::LocationName::new(l.as_str()) {
        caller
            .service
            .forget_loc_actions(&hub_name(&hub)?, &name)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn patch_loc_props(
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

/// Stores the `actions` a location body carried (none given: the stored list stays).
async fn set_loc_actions(
    caller: &Caller,
    hub: &str,
    loc: &str,
    actions: Option<&Json>,
) -> ApiResult<()> {
    let Some(actions) = actions.filter(|a| !a.is_null()) else {
        return Ok(());
    };
    let list = actions
        .as_array()
        .cloned()
        .ok_or_else(|| ApiError::invalid("actions: expected an array of actions"))?;
    edit_loc_actions(caller, hub, loc, "replace_loc_action_list", |stored| {
        *stored = list;
        Ok(())
    })
    .await
}

/// `POST …/locs/{loc}/rename` `{"new_name": …}` → 201: groups, action scopes and the location's
/// actions follow.
pub(super) async fn rename_loc(
    caller: Caller,
    Path((hub, l)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let status = rename(&caller, &hub, Rename::Location { loc: l.clone() }, &body).await?;
    let (from, to) = (loc_name(&l)?, loc_name(&new_name(&body)?)?);
    caller
        .service
        .carry_loc_actions(&hub_name(&hub)?, &from, &to, false)
        .await?;
    Ok(status)
}

fn loc_name(text: &str) -> ApiResult<sluice_model::LocationName> {
    sluice_model::LocationName::new(text).map_err(|e| ApiError::invalid(e.to_string()))
}

/// `POST …/locs/{loc}/copy` `{"new_name": …}` → 201: a new location with the same class,
/// properties (stored secrets included, still sealed) and actions.
pub(super) async fn copy_loc(
    caller: Caller,
    Path((hub, l)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let new = new_name(&body)?;
    let to = loc_name(&new)?;
    edit(
        &caller,
        &hub,
        format!("add_loc {new} (copy of {l})"),
        |doc| {
            let locs = section(doc, "locations");
            let original = locs
                .get(&l)
                .cloned()
                .ok_or_else(|| missing(format!("location {l} does not exist")))?;
            if locs.contains_key(&new) {
                return Err(ServiceError::new(
                    ServiceErrorKind::Conflict,
                    format!("location {new} already exists"),
                ));
            }
            locs.insert(new.clone(), original);
            Ok(())
        },
    )
    .await?;
    caller
        .service
        .carry_loc_actions(&hub_name(&hub)?, &loc_name(&l)?, &to, true)
        .await?;
    Ok(StatusCode::CREATED)
}

/// Deletes properties of a location; a property it does not have is a 404.
async fn delete_props(
    caller: &Caller,
    hub: &str,
    l: &str,
    gone: &[String],
) -> ApiResult<StatusCode> {
    if gone.iter().any(|p| p == "Class") {
        return Err(ApiError::invalid("props: Class cannot be deleted"));
    }
    edit(
        caller,
        hub,
        format!("delete_loc_props {l}: {}", gone.join(", ")),
        |doc| {
            let loc = section(doc, "locations")
                .get_mut(l)
                .and_then(Json::as_object_mut)
                .ok_or_else(|| missing(format!("location {l} does not exist")))?;
            let props = sub_mut(loc, "props");
            for p in gone {
                props
                    .remove(p)
                    .ok_or_else(|| missing(format!("location {l} has no property {p}")))?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE …/locs/{loc}/props/{prop}` → 204.
pub(super) async fn delete_loc_prop(
    caller: Caller,
    Path((hub, l, prop)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    delete_props(&caller, &hub, &l, &[prop]).await
}

/// `POST …/locs/{loc}/props_delete` `{"props": [names]}` → 204.
pub(super) async fn loc_props_delete(
    caller: Caller,
    Path((hub, l)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let gone = names_in(&body, "props")?;
    delete_props(&caller, &hub, &l, &gone).await
}
