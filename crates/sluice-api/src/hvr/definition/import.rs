//! Import of a list of changes (and its analysis without applying), and the history of definition changes from the events.

use super::*;

/// One change of an import, applied to the document.
pub(super) fn apply_change(doc: &mut Json, kind: &str, arg: &Json) -> Result<(), ServiceError> {
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
        "modify_channel" => {
            let ch = name_of("channel")?;
            let description = arg.get("description").cloned().unwrap_or(Json::Null);
            channel_mut(doc, &ch)?.insert("description".into(), description);
        }
        "rename_channel" | "rename_table" | "rename_loc_group" | "rename_loc" => {
            let what = match kind {
                "rename_channel" => Rename::Channel {
                    channel: name_of("channel")?,
                },
                "rename_table" => Rename::Table {
                    channel: name_of("channel")?,
                    table: name_of("table")?,
                },
                "rename_loc_group" => Rename::LocGroup {
                    channel: name_of("channel")?,
                    loc_group: name_of("loc_group")?,
                },
                _ => Rename::Location {
                    loc: name_of("loc")?,
                },
            };
            sluice_service::rename::apply(doc, &what, &name_of("new_name")?)?;
        }
        "add_loc_group" | "replace_loc_group" => {
            let ch = name_of("channel")?;
            let g = name_of("loc_group")?;
            let members = list_of(arg, "members", kind)?;
            let groups = sub_mut(channel_mut(doc, &ch)?, "loc_groups");
            if kind == "add_loc_group" && groups.contains_key(&g) {
                return Err(ServiceError::new(
                    ServiceErrorKind::Conflict,
                    format!("location group {g} already exists in channel {ch}"),
                ));
            }
            take_from_other_groups(groups, &g, &members);
            groups.insert(g, json!({ "members": members }));
        }
        "delete_loc_group" => {
            let ch = name_of("channel")?;
            let g = name_of("loc_group")?;
            sub_mut(channel_mut(doc, &ch)?, "loc_groups")
                .remove(&g)
                .ok_or_else(|| {
                    missing(format!("location group {g} does not exist in channel {ch}"))
                })?;
        }
        "add_loc_group_members" | "replace_loc_group_member_list" | "delete_loc_group_members" => {
            let ch = name_of("channel")?;
            let g = name_of("loc_group")?;
            let members = list_of(arg, "members", kind)?;
            let groups = sub_mut(channel_mut(doc, &ch)?, "loc_groups");
            if !groups.contains_key(&g) {
                return Err(missing(format!(
                    "location group {g} does not exist in channel {ch}"
                )));
            }
            if kind != "delete_loc_group_members" {
                take_from_other_groups(groups, &g, &members);
            }
            let group = groups
                .get_mut(&g)
                .and_then(Json::as_object_mut)
                .ok_or_else(|| invalid(format!("location group {g}: not an object")))?;
            let list = group.entry("members").or_insert_with(|| json!([]));
            let list = list
                .as_array_mut()
                .ok_or_else(|| invalid("members: not a list"))?;
            match kind {
                "replace_loc_group_member_list" => *list = members,
                "add_loc_group_members" => {
                    for m in members {
                        if !list.contains(&m) {
                            list.push(m);
                        }
                    }
                }
                _ => {
                    for m in &members {
                        let at = list.iter().position(|x| x == m).ok_or_else(|| {
                            missing(format!("location {m} is not a member of group {g}"))
                        })?;
                        list.remove(at);
                    }
                }
            }
        }
        "add_tables" | "modify_table_list" | "replace_table_list" => {
            let ch = name_of("channel")?;
            let tables = arg
                .get("tables")
                .ok_or_else(|| invalid(format!("{kind}: tables missing")))?;
            let new = tables_in(tables).map_err(api)?;
            let channel = channel_mut(doc, &ch)?;
            if kind == "replace_table_list" {
                channel.insert("tables".into(), Json::Object(new));
            } else {
                let existing = sub_mut(channel, "tables");
                for (n, t) in new {
                    if kind == "add_tables" && existing.contains_key(&n) {
                        return Err(ServiceError::new(
                            ServiceErrorKind::Conflict,
                            format!("table {n} already exists in channel {ch}"),
                        ));
                    }
                    existing.insert(n, t);
                }
            }
        }
        "modify_table" => {
            let ch = name_of("channel")?;
            let t = name_of("table")?;
            let table = sub_mut(channel_mut(doc, &ch)?, "tables")
                .get_mut(&t)
                .and_then(Json::as_object_mut)
                .ok_or_else(|| missing(format!("table {t} does not exist in channel {ch}")))?;
            for key in ["base_name", "table_group"] {
                match arg.get(key) {
                    None => {}
                    Some(Json::Null) => {
                        table.remove(key);
                    }
                    Some(v) => {
                        table.insert(key.into(), v.clone());
                    }
                }
            }
        }
        "add_cols" | "modify_col_list" | "replace_col_list" | "delete_cols" => {
            let ch = name_of("channel")?;
            let t = name_of("table")?;
            let table = sub_mut(channel_mut(doc, &ch)?, "tables")
                .get_mut(&t)
                .and_then(Json::as_object_mut)
                .ok_or_else(|| missing(format!("table {t} does not exist in channel {ch}")))?;
            let cols = arg
                .get("cols")
                .ok_or_else(|| invalid(format!("{kind}: cols missing")))?;
            if kind == "delete_cols" {
                let existing = sub_mut(table, "cols");
                for c in list_of(arg, "cols", kind)? {
                    let name = c.as_str().unwrap_or_default();
                    existing.remove(name).ok_or_else(|| {
                        missing(format!("column {name} does not exist in table {t}"))
                    })?;
                }
                return Ok(());
            }
            let new = wire::cols_in(cols, &format!("{kind}.cols")).map_err(api)?;
            let existing = sub_mut(table, "cols");
            if kind == "replace_col_list" {
                existing.clear();
            }
            for (n, c) in new.as_object().into_iter().flatten() {
                if kind == "add_cols" && existing.contains_key(n) {
                    return Err(ServiceError::new(
                        ServiceErrorKind::Conflict,
                        format!("column {n} already exists in table {t}"),
                    ));
                }
                existing.insert(n.clone(), c.clone());
            }
        }
        "add_channel_actions" | "replace_channel_action_list" | "delete_channel_actions" => {
            let ch = name_of("channel")?;
            let actions = arg
                .get("actions")
                .ok_or_else(|| invalid(format!("{kind}: actions missing")))?;
            let new = wire::actions_in(actions, &format!("{kind}.actions"))
                .map_err(api)?
                .as_array()
                .cloned()
                .unwrap_or_default();
            let list = actions_mut(channel_mut(doc, &ch)?);
            match kind {
                "add_channel_actions" => list.extend(new),
                "replace_channel_action_list" => *list = new,
                _ => {
                    for g in &new {
                        let at = list
                            .iter()
                            .position(|a| same_action(a, g))
                            .ok_or_else(|| missing(format!("Action does not exist: {g}")))?;
                        list.remove(at);
                    }
                }
            }
        }
        "add_loc_props" | "modify_loc_props" | "replace_loc_props" | "delete_loc_props" => {
            let l = name_of("loc")?;
            let loc = section(doc, "locations")
                .get_mut(&l)
                .and_then(Json::as_object_mut)
                .ok_or_else(|| missing(format!("location {l} does not exist")))?;
            if kind == "delete_loc_props" {
                let props = sub_mut(loc, "props");
                for p in list_of(arg, "props", kind)? {
                    let p = p.as_str().unwrap_or_default();
                    props
                        .remove(p)
                        .ok_or_else(|| missing(format!("location {l} has no property {p}")))?;
                }
                return Ok(());
            }
            let changes = arg
                .get("props")
                .and_then(Json::as_object)
                .cloned()
                .ok_or_else(|| invalid(format!("{kind}: props must be an object")))?;
            if kind == "replace_loc_props" {
                let sealed = loc.get("props").cloned();
                loc.insert("props".into(), json!({}));
                // Stored secrets a replacement leaves out stay (GETs never show them).
                let mut kept = json!({ "props": {} });
                keep_sealed(sealed.map(|p| json!({ "props": p })).as_ref(), &mut kept);
                loc.insert("props".into(), kept["props"].clone());
            }
            for (k, v) in changes {
                if k == "Class" {
                    loc.insert("class".into(), v);
                    continue;
                }
                let props = sub_mut(loc, "props");
                if v.is_null() {
                    props.remove(&k);
                } else {
                    props.insert(k, v);
                }
            }
        }
        "add_loc_actions"
        | "replace_loc_action_list"
        | "delete_loc_actions"
        | "add_hub_actions"
        | "replace_hub_action_list"
        | "delete_hub_actions"
        | "modify_action"
        | "replace_action" => {
            return Err(invalid(format!(
                "import change {kind:?} is not supported in an import by sluice (hub and location actions are kept apart from the definitions); use the hub_actions, locs/{{loc}}/actions, action_modify or action_replace operation"
            )));
        }
        other => {
            return Err(invalid(format!(
                "import change {other:?} is not a kind of change HVR documents"
            )));
        }
    }
    Ok(())
}

/// The array under `key` of a change's argument.
fn list_of(arg: &Json, key: &str, kind: &str) -> Result<Vec<Json>, ServiceError> {
    let list = arg
        .get(key)
        .and_then(Json::as_array)
        .cloned()
        .ok_or_else(|| invalid(format!("{kind}: {key} must be an array of names")))?;
    if list.iter().any(|m| !m.is_string()) {
        return Err(invalid(format!("{kind}: {key} must be an array of names")));
    }
    Ok(list)
}

pub(super) fn e_message(e: &ApiError) -> String {
    e.message().to_owned()
}

/// HVR's import request: the changes as `(kind, argument)`, `add_` read as `replace_` when
/// `on_add_exists` is `replace`.
fn parse_changes(body: &Json) -> ApiResult<Vec<(String, Json)>> {
    let map = wire::object(
        body,
        "body",
        &[
            "changes",
            "on_add_exists",
            "export_header",
            "allowed_changes",
        ],
    )?;
    let on_exists = map
        .get("on_add_exists")
        .and_then(Json::as_str)
        .unwrap_or("abort");
    if !matches!(on_exists, "abort" | "replace") {
        return Err(ApiError::invalid(
            "on_add_exists: sluice supports \"abort\" and \"replace\"",
        ));
    }
    let allowed: Option<Vec<&str>> = match map.get("allowed_changes") {
        None | Some(Json::Null) => None,
        Some(Json::Array(a)) => Some(a.iter().filter_map(Json::as_str).collect()),
        Some(_) => {
            return Err(ApiError::invalid(
                "allowed_changes: expected an array of change kinds",
            ));
        }
    };
    map.get("changes")
        .and_then(Json::as_array)
        .ok_or_else(|| ApiError::invalid("changes: expected an array"))?
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let o = c.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
                ApiError::invalid(format!("changes[{i}]: expected one {{\"kind\": {{…}}}}"))
            })?;
            let (k, v) = o.iter().next().expect("one entry");
            if let Some(allowed) = &allowed
                && !allowed.contains(&k.as_str())
            {
                return Err(ApiError::invalid(format!(
                    "changes[{i}]: {k} is not among allowed_changes"
                )));
            }
            let k = if on_exists == "replace" {
                k.replacen("add_", "replace_", 1)
                    .replace("replace_tables", "add_tables")
            } else {
                k.clone()
            };
            Ok((k, v.clone()))
        })
        .collect()
}

/// Applies every change to `doc`, naming the failing one.
fn apply_all(doc: &mut Json, changes: &[(String, Json)]) -> Result<(), ServiceError> {
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
}

/// `v` with every secret property (`*_Password`, …) left out: event bodies are shown to every
/// reader of the hub.
fn without_secrets(v: &Json) -> Json {
    match v {
        Json::Object(map) => Json::Object(
            map.iter()
                .filter(|(k, _)| !sluice_model::definition::is_secret_prop(k))
                .map(|(k, v)| (k.clone(), without_secrets(v)))
                .collect(),
        ),
        Json::Array(list) => Json::Array(list.iter().map(without_secrets).collect()),
        other => other.clone(),
    }
}

/// HVR's `change_counts`: how many changes of each kind.
fn change_counts(changes: &[(String, Json)]) -> Json {
    let mut counts = Map::new();
    for (k, _) in changes {
        let n = counts.get(k).and_then(Json::as_u64).unwrap_or(0);
        counts.insert(k.clone(), Json::from(n + 1));
    }
    Json::Object(counts)
}

/// `POST …/definition/import`: applies every change atomically (one `Definition_Change_Import`
/// event) or none; answers HVR's `change_counts`.
pub(super) async fn import(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<Out<Json>> {
    let changes = parse_changes(&body)?;
    let summary: Vec<String> = changes.iter().map(|(k, _)| k.clone()).collect();
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadWrite).await?;
    let event_body = json!({
        "changes": changes
            .iter()
            .map(|(k, v)| json!({ k.as_str(): without_secrets(v) }))
            .collect::<Vec<_>>()
    });
    caller
        .service
        .edit_definitions_with_body(
            &hub,
            EventType::DefinitionChangeImport,
            &format!(
                "import of {} change(s): {}",
                changes.len(),
                summary.join(", ")
            ),
            event_body,
            |doc| apply_all(doc, &changes),
        )
        .await?;
    // Location actions live apart from the definitions: they follow renames and deletes.
    for (k, v) in &changes {
        let name = |key: &str| {
            v.get(key)
                .and_then(Json::as_str)
                .and_then(|n| sluice_model::LocationName::new(n).ok())
        };
        match (k.as_str(), name("loc"), name("new_name")) {
            ("delete_loc", Some(loc), _) => caller.service.forget_loc_actions(&hub, &loc).await?,
            ("rename_loc", Some(from), Some(to)) => {
                caller
                    .service
                    .carry_loc_actions(&hub, &from, &to, false)
                    .await?
            }
            _ => {}
        }
    }
    Ok(Out(json!({ "change_counts": change_counts(&changes) })))
}

/// `POST …/definition/import/analyze`: what an import would do, without doing it: the changes
/// are applied to a copy of the definitions (a change that would fail answers as the import
/// would) and counted.
pub(super) async fn analyze(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<Json>,
) -> ApiResult<Out<Json>> {
    let changes = parse_changes(&body)?;
    let mut doc = (*document(&caller, &hub).await?).clone();
    apply_all(&mut doc, &changes)?;
    Ok(Out(json!({ "change_counts": change_counts(&changes) })))
}

/// `GET …/definition/change/events`: the definition changes recorded by the hub's
/// `Definition_Change` and `Definition_Change_Import` events, oldest first, in HVR's change form
/// (`{"rename_channel": {…}}`); `direction=undo` is refused (sluice records changes, not their
/// inverses).
pub(super) async fn change_events(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    if let Some(d) = q.one("direction")
        && d != "redo"
    {
        return Err(ApiError::invalid(format!(
            "direction: {d:?} is not supported; sluice answers \"redo\" (changes as made)"
        )));
    }
    let instant = |key: &str| -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
        q.one(key)
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|_| ApiError::invalid(format!("{key}: expected an ISO-8601 time")))
            })
            .transpose()
    };
    let ids = q
        .all("ev_id")
        .iter()
        .map(|i| {
            i.parse::<sluice_model::EventId>()
                .map_err(|e| ApiError::invalid(format!("ev_id: {e}")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let filter = sluice_repo::EventFilter {
        hub: Some(hub),
        types: vec![
            EventType::DefinitionChange,
            EventType::DefinitionChangeImport,
        ],
        ids,
        begin: instant("ev_tstamp_begin")?,
        end: instant("ev_tstamp_end")?,
        ..Default::default()
    };
    let mut events = caller.service.events(&filter).await?;
    events.sort_by_key(|e| e.id);
    let channels = q.all("channel");
    let locs = q.all("loc");
    let mut out = Vec::new();
    for e in events {
        let listed = match e.body.get("changes").and_then(Json::as_array) {
            Some(list) => list.clone(),
            None => vec![e.body.clone()],
        };
        for change in listed {
            // Only HVR-form changes (one kind with its argument object).
            let Some((_, arg)) = change
                .as_object()
                .filter(|o| o.len() == 1)
                .and_then(|o| o.iter().next())
                .filter(|(_, a)| a.is_object())
            else {
                continue;
            };
            let names = |key: &str, wanted: &[String]| {
                wanted.is_empty()
                    || arg
                        .get(key)
                        .and_then(Json::as_str)
                        .is_some_and(|n| wanted.iter().any(|w| w == n))
            };
            if names("channel", &channels) && names("loc", &locs) {
                out.push(change);
            }
        }
    }
    Ok(Out(json!({ "changes": out })))
}
