//! A channel's tables and their columns: list, add, replace, change, delete, rename.

use super::*;

pub(super) async fn tables(
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

pub(super) async fn add_table(
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

pub(super) fn tables_in(body: &Json) -> ApiResult<Map<String, Json>> {
    let map = body
        .as_object()
        .ok_or_else(|| ApiError::invalid("expected an object of tables"))?;
    map.iter()
        .map(|(n, t)| Ok((n.clone(), wire::table_in(t, &format!("table {n}"))?)))
        .collect()
}

pub(super) async fn patch_tables(
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

pub(super) async fn put_tables(
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

pub(super) async fn tables_delete(
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

pub(super) async fn table(
    caller: Caller,
    Path((hub, ch, t)): Path<(String, String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let doc = document(&caller, &hub).await?;
    let fetch = q.all("fetch");
    let with_cols = fetch.is_empty() || fetch.iter().any(|f| f == "cols");
    Ok(Out(wire::table_out(get_table(&doc, &ch, &t)?, with_cols)))
}

pub(super) async fn put_table(
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

pub(super) async fn patch_table(
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

pub(super) async fn delete_table(
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

pub(super) async fn cols(
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

pub(super) async fn change_cols(
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

pub(super) async fn patch_cols(
    caller: Caller,
    Path((hub, ch, t)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    change_cols(caller, hub, ch, t, body, false).await
}

pub(super) async fn put_cols(
    caller: Caller,
    Path((hub, ch, t)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    change_cols(caller, hub, ch, t, body, true).await
}

/// `POST …/tables/{table}/rename` `{"new_name": …}` → 201.
pub(super) async fn rename_table(
    caller: Caller,
    Path((hub, ch, t)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    rename(
        &caller,
        &hub,
        Rename::Table {
            channel: ch,
            table: t,
        },
        &body,
    )
    .await
}

/// `POST …/tables/{table}/cols_delete` `{"cols": [names]}` → 204; an unknown column is a 404 and
/// nothing changes.
pub(super) async fn cols_delete(
    caller: Caller,
    Path((hub, ch, t)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<StatusCode> {
    let names = names_in(&body, "cols")?;
    edit(
        &caller,
        &hub,
        format!("delete_cols {ch}.{t}: {}", names.join(", ")),
        |doc| {
            let table = sub_mut(channel_mut(doc, &ch)?, "tables")
                .get_mut(&t)
                .and_then(Json::as_object_mut)
                .ok_or_else(|| missing(format!("table {t} does not exist in channel {ch}")))?;
            let cols = sub_mut(table, "cols");
            for n in &names {
                cols.remove(n).ok_or_else(|| {
                    missing(format!(
                        "column {n} does not exist in table {t} of channel {ch}"
                    ))
                })?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
