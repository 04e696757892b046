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
        other => {
            return Err(invalid(format!(
                "import change {other:?} is not supported; supported: add_channel, replace_channel, delete_channel, add_loc, replace_loc, delete_loc, add_table, replace_table, delete_tables"
            )));
        }
    }
    Ok(())
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
