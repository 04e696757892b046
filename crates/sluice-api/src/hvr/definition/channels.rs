//! Channels: list, one, add, replace, change, delete, rename.

use super::*;

pub(super) async fn channels(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
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

pub(super) async fn channel(
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

pub(super) fn channel_exists(ch: &str) -> ServiceError {
    ServiceError::new(
        ServiceErrorKind::Conflict,
        format!("Channel '{ch}' already exists"),
    )
    .with_code(codes::CHANNEL_EXISTS)
}

pub(super) async fn add_channel(
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

pub(super) async fn put_channel(
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

pub(super) async fn patch_channel(
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

pub(super) async fn delete_channel(
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

/// `POST …/channels/{channel}/rename` `{"new_name": …}` → 201.
pub(super) async fn rename_channel(
    caller: Caller,
    Path((hub, ch)): Path<(String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    rename(&caller, &hub, Rename::Channel { channel: ch }, &body).await
}
