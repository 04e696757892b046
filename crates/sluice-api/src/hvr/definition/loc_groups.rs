//! A channel's location groups and their members (a location is in one group per channel).

use super::*;

pub(super) async fn loc_groups(
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

pub(super) async fn loc_group(
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

pub(super) fn members_in(body: &Json) -> ApiResult<Vec<Json>> {
    let map = wire::object(body, "body", &["members", "loc_group"])?;
    map.get("members").map_or(Ok(Vec::new()), |m| {
        m.as_array()
            .cloned()
            .ok_or_else(|| ApiError::invalid("members: expected an array of location names"))
    })
}

/// Removes `members` from every other group of the channel (a location is in one group).
pub(super) fn take_from_other_groups(groups: &mut Map<String, Json>, keep: &str, members: &[Json]) {
    for (g, body) in groups.iter_mut() {
        if g == keep {
            continue;
        }
        if let Some(list) = body.get_mut("members").and_then(Json::as_array_mut) {
            list.retain(|m| !members.contains(m));
        }
    }
}

pub(super) async fn add_loc_group(
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

pub(super) async fn put_loc_group(
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

pub(super) async fn delete_loc_group(
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

pub(super) async fn members(
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

pub(super) async fn change_members(
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

pub(super) async fn patch_members(
    caller: Caller,
    Path((hub, ch, g)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    change_members(caller, hub, ch, g, body, false).await
}

pub(super) async fn put_members(
    caller: Caller,
    Path((hub, ch, g)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    change_members(caller, hub, ch, g, body, true).await
}

/// `POST …/loc_groups/{group}/rename` `{"new_name": …}` → 201.
pub(super) async fn rename_loc_group(
    caller: Caller,
    Path((hub, ch, g)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    rename(
        &caller,
        &hub,
        Rename::LocGroup {
            channel: ch,
            loc_group: g,
        },
        &body,
    )
    .await
}

/// Removes `gone` from group `g` of channel `ch`; a name that is not a member is a 404.
async fn remove_members(
    caller: &Caller,
    hub: &str,
    ch: &str,
    g: &str,
    gone: &[String],
) -> ApiResult<StatusCode> {
    edit(
        caller,
        hub,
        format!("delete_loc_group_members {ch}.{g}: {}", gone.join(", ")),
        |doc| {
            let group = sub_mut(channel_mut(doc, ch)?, "loc_groups")
                .get_mut(g)
                .ok_or_else(|| {
                    missing(format!("location group {g} does not exist in channel {ch}"))
                })?;
            let list = group
                .get_mut("members")
                .and_then(Json::as_array_mut)
                .ok_or_else(|| missing(format!("location group {g} has no members")))?;
            for m in gone {
                let at = list
                    .iter()
                    .position(|x| x.as_str() == Some(m.as_str()))
                    .ok_or_else(|| {
                        missing(format!(
                            "location {m} is not a member of group {g} in channel {ch}"
                        ))
                    })?;
                list.remove(at);
            }
            Ok(())
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE …/loc_groups/{group}/members/{member}` → 204.
pub(super) async fn delete_member(
    caller: Caller,
    Path((hub, ch, g, m)): Path<(String, String, String, String)>,
) -> ApiResult<StatusCode> {
    remove_members(&caller, &hub, &ch, &g, &[m]).await
}

/// `POST …/loc_groups/{group}/members_delete` `{"members": [names]}` → 204.
pub(super) async fn members_delete(
    caller: Caller,
    Path((hub, ch, g)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let gone = names_in(&body, "members")?;
    remove_members(&caller, &hub, &ch, &g, &gone).await
}
