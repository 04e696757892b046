//! HVR's Event Interface: events of a hub and of the repository, counted by type, channel and
//! location, cancelling them, and an event's log.

use axum::Json as Out;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use sluice_model::{AccessLevel, EventId, EventState, HubName, LocationName, ResultName};
use sluice_repo::{EventFilter, EventRecord};
use sluice_service::EventFacet;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody, QueryList};
use crate::hvr::hub_name;
use crate::hvr::ops::{parse_time, ts};

/// Events `GET …/events` answers when the request gives no `max_events`.
pub(crate) const DEFAULT_MAX_EVENTS: usize = 1000;
/// The most `max_events` may ask for.
pub(crate) const MAX_EVENTS: usize = 100_000;

pub(crate) fn parse_list<T: std::str::FromStr>(q: &QueryList, key: &str) -> ApiResult<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    q.all(key)
        .iter()
        .map(|v| {
            v.parse::<T>()
                .map_err(|e| ApiError::invalid(format!("{key}: {e}")))
        })
        .collect()
}

fn event_id(field: &str, text: &str) -> ApiResult<EventId> {
    text.replace('%', ":")
        .parse::<EventId>()
        .map_err(|e| ApiError::invalid(format!("{field}: {e}")))
}

/// The result names of a `result_pattern`: names joined by `|`, each a name or a pattern with
/// `*` (any text), matched against every result name HVR has.
pub(crate) fn result_names(q: &QueryList) -> ApiResult<Vec<ResultName>> {
    let mut names = Vec::new();
    for pattern in q.all("result_pattern") {
        for part in pattern.split('|').map(str::trim).filter(|p| !p.is_empty()) {
            if part.contains('*') {
                names.extend(
                    ResultName::ALL
                        .iter()
                        .copied()
                        .filter(|n| glob(part, n.as_str())),
                );
            } else {
                names.push(
                    part.parse::<ResultName>()
                        .map_err(|e| ApiError::invalid(format!("result_pattern: {e}")))?,
                );
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Whether `text` matches `pattern`, where `*` matches any text.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|i| tail.is_char_boundary(*i))
                .any(|i| glob(rest, &tail[i..]))
        }
    }
}

fn max_events(q: &QueryList) -> ApiResult<usize> {
    match q.one("max_events") {
        None | Some("") => Ok(DEFAULT_MAX_EVENTS),
        Some(m) => match m.parse::<usize>() {
            Ok(n) if (1..=MAX_EVENTS).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(format!(
                "max_events: expected a number from 1 to {MAX_EVENTS}, got {m:?}"
            ))),
        },
    }
}

pub(crate) fn event_json(e: &EventRecord, with_results: bool) -> Json {
    let mut o = Map::new();
    o.insert("type".into(), json!(e.event_type.as_str()));
    o.insert("user".into(), json!(e.user));
    o.insert("description".into(), json!(e.description));
    if let Some(c) = &e.channel {
        o.insert("channel".into(), json!(c));
    }
    if let Some(l) = &e.loc {
        o.insert("loc".into(), json!(l));
    }
    if let Some(l) = &e.loc2 {
        o.insert("loc2".into(), json!(l));
    }
    if let Some(j) = &e.job {
        o.insert("job".into(), json!(j));
    }
    o.insert("state".into(), json!(e.state.as_str()));
    o.insert("num_retries".into(), json!(e.num_retries));
    if let Some(r) = &e.response {
        o.insert("response".into(), json!(r));
    }
    o.insert("start_tstamp".into(), json!(ts(e.start)));
    if let Some(f) = e.finish {
        o.insert("finish_tstamp".into(), json!(ts(f)));
    }
    // HVR keeps the request as a JSON string.
    let request = e.body.get("request").unwrap_or(&e.body);
    o.insert("body".into(), json!(request.to_string()));
    if with_results {
        let results: Vec<Json> = e
            .results
            .iter()
            .map(|r| {
                let mut x = Map::new();
                if let Some(t) = &r.table {
                    x.insert("table".into(), json!(t));
                }
                x.insert("result".into(), json!(r.name.as_str()));
                x.insert("value".into(), json!(r.value));
                Json::Object(x)
            })
            .collect();
        o.insert("results".into(), Json::Array(results));
    }
    Json::Object(o)
}

/// The filter of an events query (everything but the hub).
fn filter(q: &QueryList) -> ApiResult<EventFilter> {
    Ok(EventFilter {
        hub: None,
        channels: parse_list(q, "channel")?,
        types: parse_list(q, "type")?,
        states: parse_list::<EventState>(q, "state")?,
        jobs: parse_list(q, "job")?,
        ids: q
            .all("ev_id")
            .iter()
            .map(|i| event_id("ev_id", i))
            .collect::<ApiResult<_>>()?,
        fetch_results: q.flag("fetch_results", false)?,
        max_events: Some(max_events(q)?),
        loc: q
            .one("loc")
            .map(|l| LocationName::new(l).map_err(|e| ApiError::invalid(format!("loc: {e}"))))
            .transpose()?,
        begin: q.one("ev_tstamp_begin").map(parse_time).transpose()?,
        end: q.one("ev_tstamp_end").map(parse_time).transpose()?,
        result_names: result_names(q)?,
        result_tables: parse_list(q, "result_table")?,
    })
}

/// Filters the repository does not apply: `current_only`, `body_pattern`, `updated_begin|end`.
fn keep(q: &QueryList) -> ApiResult<impl Fn(&EventRecord) -> bool> {
    let current_only = q.flag("current_only", false)?;
    let body_pattern = q.one("body_pattern").map(str::to_owned);
    let updated_begin = q.one("updated_begin").map(parse_time).transpose()?;
    let updated_end = q.one("updated_end").map(parse_time).transpose()?;
    Ok(move |e: &EventRecord| {
        let updated = e.finish.unwrap_or(e.start);
        !(current_only && e.state != EventState::Active)
            && body_pattern
                .as_ref()
                .is_none_or(|p| e.body.to_string().contains(p.as_str()))
            && updated_begin.is_none_or(|b| updated >= b)
            && updated_end.is_none_or(|b| updated <= b)
    })
}

pub(crate) async fn events(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    let mut filter = filter(&q)?;
    filter.hub = Some(hub);
    let keep = keep(&q)?;
    let events = caller.service.hvr_events(&filter).await?;
    let mut out = Map::new();
    for e in events.iter().filter(|e| keep(e)) {
        out.insert(e.id.to_string(), event_json(e, filter.fetch_results));
    }
    Ok(Out(Json::Object(out)))
}

async fn counts(
    caller: Caller,
    hub: String,
    q: QueryList,
    facet: EventFacet,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    let mut filter = filter(&q)?;
    filter.max_events = None;
    let counts = caller.service.event_counts(&hub, &filter, facet).await?;
    Ok(Out(json!(counts)))
}

pub(crate) async fn event_types(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    counts(caller, hub, q, EventFacet::Type).await
}

pub(crate) async fn event_channels(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    counts(caller, hub, q, EventFacet::Channel).await
}

pub(crate) async fn event_locs(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    counts(caller, hub, q, EventFacet::Location).await
}

/// The hubs whose events the caller may read.
async fn readable_hubs(caller: &Caller) -> ApiResult<Vec<HubName>> {
    let mut hubs = Vec::new();
    for h in caller.service.hubs().await? {
        if caller
            .require_on(&h.hub.name, AccessLevel::ReadOnly)
            .await
            .is_ok()
        {
            hubs.push(h.hub.name);
        }
    }
    Ok(hubs)
}

/// `GET /repos/events`: the events of every hub the caller may read, each naming its `hub`.
pub(crate) async fn repos_events(caller: Caller, q: QueryList) -> ApiResult<Out<Json>> {
    let filter = filter(&q)?;
    let keep = keep(&q)?;
    let hubs = readable_hubs(&caller).await?;
    let events = caller.service.events_of_hubs(&hubs, &filter).await?;
    let mut out = Map::new();
    for e in events.iter().filter(|e| keep(e)) {
        let mut j = event_json(e, false);
        j["hub"] = json!(e.hub.as_str());
        out.insert(e.id.to_string(), j);
    }
    Ok(Out(Json::Object(out)))
}

/// `GET /repos/event_types`: event types of every hub the caller may read, counted.
pub(crate) async fn repos_event_types(caller: Caller, q: QueryList) -> ApiResult<Out<Json>> {
    let mut filter = filter(&q)?;
    filter.max_events = None;
    let mut total = std::collections::BTreeMap::<String, u64>::new();
    for hub in readable_hubs(&caller).await? {
        for (k, n) in caller
            .service
            .event_counts(&hub, &filter, EventFacet::Type)
            .await?
        {
            *total.entry(k).or_insert(0) += n;
        }
    }
    Ok(Out(json!(total)))
}

/// `POST …/events_cancel`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelBody {
    #[serde(default)]
    ev_ids: Vec<String>,
}

pub(crate) async fn events_cancel(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<CancelBody>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadExec).await?;
    if body.ev_ids.is_empty() {
        return Err(ApiError::invalid("ev_ids: name at least one event"));
    }
    let ids: Vec<EventId> = body
        .ev_ids
        .iter()
        .map(|i| event_id("ev_ids", i))
        .collect::<ApiResult<_>>()?;
    caller.service.cancel_events(&hub, &ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An event of `hub` (404 when it has none with that id).
pub(crate) async fn existing_event(
    caller: &Caller,
    hub: &HubName,
    ev_id: &str,
) -> ApiResult<EventRecord> {
    let id: EventId = ev_id
        .replace('%', ":")
        .parse()
        .map_err(|e| ApiError::not_found(format!("event {ev_id:?} does not exist ({e})")))?;
    caller
        .service
        .events(&EventFilter {
            hub: Some(hub.clone()),
            ids: vec![id],
            ..Default::default()
        })
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("event {ev_id} does not exist")))
}

pub(crate) async fn event_log(
    caller: Caller,
    Path((hub, ev_id)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Response> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    let event = existing_event(&caller, &hub, &ev_id).await?;
    let max_lines = q
        .one("max_lines")
        .map(|m| {
            m.parse::<usize>()
                .map_err(|_| ApiError::invalid("max_lines: expected a number"))
        })
        .transpose()?;
    let lines = caller.service.event_log(event.id).await?;
    let skip = max_lines.map_or(0, |m| lines.len().saturating_sub(m));
    let mut text = String::new();
    for (t, line) in lines.iter().skip(skip) {
        text.push_str(&format!("{}: {line}\n", ts(*t)));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("Subtasks_*", "Subtasks_Done"));
        assert!(glob("*_Rows_*", "Source_Rows_Used"));
        assert!(!glob("Table_*", "Subtasks_Done"));
        assert!(glob("Table_State", "Table_State"));
        assert!(glob("*", "x"));
    }
}
