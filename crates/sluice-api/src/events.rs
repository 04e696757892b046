//! The event hub's API: `/topics` (create, update, get, list, delete, schema versions) and
//! `/events` (publish one or a batch; live streams over SSE and WebSocket; history with cursors;
//! export as JSON Lines or CSV; last event per routing key).
//!
//! Streams take the token from `Authorization: Bearer …` or, for browsers' `EventSource` and
//! `WebSocket` (which cannot set headers), from `?access_token=`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use futures::{SinkExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json_, json};
use sluice_events::store::HistoryQuery;
use sluice_events::{
    Actor, Delivery, ErrorKind, EventHub, NewEvent, Pattern, StoredEvent, TopicName, TopicSpec,
};

use crate::AppState;
use crate::error::{ApiError, ApiResult, codes};
use crate::extract::{Caller, JsonBody, QueryList, bearer, body_error, parse_json};

/// How often an idle stream sends a keep-alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most events per history page.
const MAX_PAGE: usize = 10_000;

/// The routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/topics", get(list_topics).post(create_topic))
        .route(
            "/topics/{topic}",
            get(get_topic).put(update_topic).delete(delete_topic),
        )
        .route("/topics/{topic}/schemas", get(schema_versions))
        .route(
            "/events",
            // The handler reads the body itself, within the event hub's own limit.
            axum::routing::post(publish).layer(DefaultBodyLimit::disable()),
        )
        .route("/events/{topic}/stream", get(stream_sse))
        .route("/events/{topic}/ws", get(stream_ws))
        .route("/events/{topic}/history", get(history))
        .route("/events/{topic}/export", get(export))
        .route("/events/{topic}/last", get(last))
}

fn hub(state: &AppState) -> ApiResult<&EventHub> {
    state.service.event_hub().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::UNAVAILABLE,
            "the event hub is not running in this server",
        )
    })
}

fn actor(caller: &Caller) -> Actor {
    Actor::user(caller.identity.user.clone(), caller.identity.level)
}

fn topic_name(text: &str) -> ApiResult<TopicName> {
    TopicName::new(text).map_err(ApiError::invalid)
}

fn pattern(query: &QueryList) -> ApiResult<Pattern> {
    match query.one("routing_key").or_else(|| query.one("pattern")) {
        None | Some("") => Ok(Pattern::all()),
        Some(p) => Pattern::new(p).map_err(ApiError::invalid),
    }
}

fn time(query: &QueryList, key: &str) -> ApiResult<Option<DateTime<Utc>>> {
    match query.one(key) {
        None | Some("") => Ok(None),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                ApiError::invalid(format!(
                    "query parameter {key}: {text:?} is not an RFC 3339 time with a zone (e.g. 2026-11-23T10:00:00Z)"
                ))
            }),
    }
}

fn number(query: &QueryList, key: &str) -> ApiResult<Option<u64>> {
    match query.one(key) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            ApiError::invalid(format!(
                "query parameter {key}: expected a whole number, got {text:?}"
            ))
        }),
    }
}

// ----- topics -----

#[derive(Deserialize)]
struct CreateTopic {
    name: TopicName,
    #[serde(flatten)]
    spec: TopicSpecBody,
}

/// [`TopicSpec`] with its fields optional at the top level (flatten cannot deny unknown fields,
/// so they are listed here).
#[derive(Deserialize, Default)]
struct TopicSpecBody {
    #[serde(default)]
    description: String,
    #[serde(default)]
    schema: Option<Json_>,
    #[serde(default)]
    retention: sluice_events::Retention,
    #[serde(default)]
    grants: sluice_events::Grants,
}

impl From<TopicSpecBody> for TopicSpec {
    fn from(b: TopicSpecBody) -> Self {
        TopicSpec {
            description: b.description,
            schema: b.schema,
            retention: b.retention,
            grants: b.grants,
        }
    }
}

/// `{"items": [...]}`, written straight from the items (not through a JSON value tree, which for
/// a batch of published events cost more than the rest of the answer).
#[derive(Serialize)]
struct Items<'a, T: Serialize> {
    items: &'a [T],
}

/// A history page: `{"items": [...], "next_cursor": C|null}`.
#[derive(Serialize)]
struct HistoryAnswer<'a, T: Serialize, C: Serialize> {
    items: &'a [T],
    next_cursor: Option<C>,
}

async fn list_topics(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let topics = hub(&state)?.topics(&actor(&caller)).await?;
    Ok(Json(Items { items: &topics }).into_response())
}

async fn create_topic(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let raw: Json_ = parse_json(&body)?;
    check_fields(
        &raw,
        &["name", "description", "schema", "retention", "grants"],
    )?;
    let body: CreateTopic = serde_json::from_value(raw)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?;
    let topic = hub(&state)?
        .create_topic(&body.name, &body.spec.into(), &actor(&caller))
        .await?;
    Ok((StatusCode::CREATED, Json(topic)).into_response())
}

fn check_fields(raw: &Json_, allowed: &[&str]) -> ApiResult<()> {
    let Some(object) = raw.as_object() else {
        return Err(ApiError::invalid(
            "invalid request body: expected a JSON object",
        ));
    };
    if let Some(unknown) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "invalid request body: unknown field {unknown:?}; expected one of: {}",
            allowed.join(", ")
        )));
    }
    Ok(())
}

async fn get_topic(
    State(state): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
) -> ApiResult<Response> {
    let topic = hub(&state)?
        .topic(&topic_name(&topic)?, &actor(&caller))
        .await?;
    Ok(Json(topic).into_response())
}

async fn update_topic(
    State(state): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
    JsonBody(spec): JsonBody<TopicSpec>,
) -> ApiResult<Response> {
    let topic = hub(&state)?
        .update_topic(&topic_name(&topic)?, &spec, &actor(&caller))
        .await?;
    Ok(Json(topic).into_response())
}

async fn delete_topic(
    State(state): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
    query: QueryList,
) -> ApiResult<Response> {
    let force = query.flag("force", false)?;
    hub(&state)?
        .delete_topic(&topic_name(&topic)?, force, &actor(&caller))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn schema_versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
) -> ApiResult<Response> {
    let versions = hub(&state)?
        .schema_versions(&topic_name(&topic)?, &actor(&caller))
        .await?;
    Ok(Json(Items { items: &versions }).into_response())
}

// ----- publish -----

/// One event of a publish body, its payload left unparsed until the caller may publish.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    topic: TopicName,
    routing_key: sluice_events::RoutingKey,
    #[serde(borrow)]
    payload: &'a serde_json::value::RawValue,
    #[serde(default)]
    id: Option<String>,
}

/// Reads a request body of at most `limit` bytes: a larger one is refused (413) as soon as its
/// `Content-Length` or the bytes read so far say so, without reading the rest.
async fn read_limited(request: axum::extract::Request, limit: usize) -> ApiResult<Bytes> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::INVALID,
            format!("the request body is larger than {limit} bytes; publish in smaller batches"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return too_large();
                }
                source = s.source();
            }
            ApiError::invalid(format!("cannot read the request body: {e}"))
        })
}

/// The events of a publish body (one event, an array, or `{"events": [...]}`), each envelope
/// read in one pass over the body with its payload left unparsed, and whether it was one event.
/// An error in an envelope names its place (`events[3]: …`); more than `max_batch` events are
/// counted, not read.
fn parse_publish_body(text: &str, max_batch: usize) -> ApiResult<(Vec<Envelope<'_>>, bool)> {
    match text.as_bytes().first() {
        Some(b'[') => Ok((read_batch(text, max_batch)?, false)),
        Some(b'{') => {
            #[derive(Deserialize)]
            struct Wrapped<'a> {
                #[serde(borrow)]
                events: Option<&'a serde_json::value::RawValue>,
            }
            let wrapped: Wrapped<'_> = serde_json::from_str(text).map_err(body_error)?;
            match wrapped.events {
                Some(list) if list.get().starts_with('[') => {
                    Ok((read_batch(list.get(), max_batch)?, false))
                }
                Some(_) => Err(ApiError::invalid(
                    "invalid request body: \"events\" must be an array of events",
                )),
                None => {
                    let one =
                        serde_json::from_str(text).map_err(|e| ApiError::invalid(e.to_string()))?;
                    Ok((vec![one], true))
                }
            }
        }
        _ => Err(ApiError::invalid(
            "invalid request body: expected an event object or an array of events",
        )),
    }
}

/// The envelopes of a JSON array of events, refused when it holds more than `max_batch`. A
/// syntax error is "malformed JSON" as anywhere else; an envelope that is well-formed JSON but
/// not an event names its place (`events[3]: unknown field …`). Positions count from the start
/// of `json` (for `{"events": [...]}`, from the array).
fn read_batch(json: &str, max_batch: usize) -> ApiResult<Vec<Envelope<'_>>> {
    let at = std::cell::Cell::new(0);
    let mut de = serde_json::Deserializer::from_str(json);
    let read = serde::de::DeserializeSeed::deserialize(Batch { max_batch, at: &at }, &mut de)
        .and_then(|read| de.end().map(|()| read))
        .map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                body_error(e)
            } else {
                ApiError::invalid(format!("events[{}]: {e}", at.get()))
            }
        })?;
    if read.count > max_batch {
        return Err(ApiError::invalid(format!(
            "{} events in one call; the limit is {max_batch}",
            read.count
        )));
    }
    Ok(read.envelopes)
}

/// Reads an array of envelopes, keeping at most `max_batch` and counting the rest; `at` holds
/// the index of the element being read (the one an error is in).
struct Batch<'c> {
    max_batch: usize,
    at: &'c std::cell::Cell<usize>,
}

/// What [`Batch`] read: the envelopes kept and how many events the array held.
struct BatchRead<'a> {
    envelopes: Vec<Envelope<'a>>,
    count: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for Batch<'_> {
    type Value = BatchRead<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Batch<'_> {
    type Value = BatchRead<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut envelopes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max_batch));
        let mut count = 0;
        loop {
            self.at.set(count);
            if count >= self.max_batch {
                // Past the limit: count what follows without keeping it.
                match seq.next_element::<serde::de::IgnoredAny>()? {
                    Some(_) => count += 1,
                    None => break,
                }
                continue;
            }
            match seq.next_element::<Envelope<'de>>()? {
                Some(envelope) => {
                    envelopes.push(envelope);
                    count += 1;
                }
                None => break,
            }
        }
        Ok(BatchRead { envelopes, count })
    }
}

/// Publishes one event (`{topic, routing_key, payload, id?}`) or a batch (an array, or
/// `{"events": [...]}`). The body is read within the hub's size limit, the batch counted and the
/// caller's publish grant checked on every topic named before any payload is parsed.
async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    let hub = hub(&state)?;
    let body = read_limited(request, hub.config().max_publish_bytes).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::invalid("the request body is not UTF-8"))?
        .trim();
    let max_batch = hub.config().max_batch;
    let (envelopes, single) = parse_publish_body(text, max_batch)?;
    let actor = actor(&caller);
    let mut checked: Vec<&TopicName> = Vec::new();
    for envelope in &envelopes {
        if !checked.contains(&&envelope.topic) {
            hub.authorize_publish(&envelope.topic, &actor).await?;
            checked.push(&envelope.topic);
        }
    }
    let events = envelopes
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let payload = serde_json::from_str(e.payload.get()).map_err(|err| {
                ApiError::invalid(format!(
                    "{}payload: {err}",
                    if single {
                        String::new()
                    } else {
                        format!("events[{i}].")
                    }
                ))
            })?;
            Ok(NewEvent {
                topic: e.topic,
                routing_key: e.routing_key,
                payload,
                id: e.id,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let published = hub.publish(events, &actor).await?;
    if single {
        let one = &published[0];
        let status = if one.duplicate {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        return Ok((status, Json(one)).into_response());
    }
    Ok((StatusCode::CREATED, Json(Items { items: &published })).into_response())
}

// ----- streams -----

/// The caller of a stream: a Bearer header or `?access_token=`, with the token (the stream ends
/// when it stops being valid).
pub(crate) struct StreamCaller(Caller, String);

impl FromRequestParts<AppState> for StreamCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = bearer(parts).map(str::to_owned) {
            return Caller::from_request_parts(parts, state)
                .await
                .map(|caller| StreamCaller(caller, token));
        }
        let token = parts
            .uri
            .query()
            .and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "access_token")
                    .map(|(_, v)| v.into_owned())
            })
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "Authentication required: send 'Authorization: Bearer <access_token>' or ?access_token=",
                )
            })?;
        let identity = state.service.authenticate(&token).await?;
        Ok(StreamCaller(
            Caller {
                service: state.service.as_user(&identity.user),
                identity,
            },
            token,
        ))
    }
}

/// Why a stream of `topics` held by `token` must end now, if it must: the token expired or was
/// revoked, its user was deleted, or the user (at their level now) may no longer read a topic. A
/// repository that cannot be asked is no reason.
async fn stream_refusal(
    service: &sluice_service::HubService,
    token: &str,
    topics: &[TopicName],
) -> Option<String> {
    let identity = match service.authenticate(token).await {
        Ok(identity) => identity,
        Err(e) if e.kind() == sluice_service::ServiceErrorKind::Repository => return None,
        Err(e) => return Some(e.to_string()),
    };
    let hub = service.event_hub()?;
    let actor = Actor::user(identity.user, identity.level);
    for topic in topics {
        match hub.authorize_read(topic, &actor).await {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::Forbidden | ErrorKind::NotFound) => {
                return Some(e.to_string());
            }
            Err(_) => {}
        }
    }
    None
}

/// Resolves, with the reason, once a stream of `topics` held by `token` must end (looked at every
/// second: see [`stream_refusal`]).
pub(crate) async fn stream_ends(
    service: sluice_service::HubService,
    token: String,
    topics: Vec<TopicName>,
) -> String {
    loop {
        tokio::time::sleep(sluice_service::auth::REVALIDATE).await;
        if let Some(reason) = stream_refusal(&service, &token, &topics).await {
            return reason;
        }
    }
}

/// `stream` until it must end (see [`stream_ends`]); then one last item made by `last` from the
/// reason, and the end. A stream that ends by itself ends as it did.
pub(crate) fn until_refused<S, T>(
    stream: S,
    ends: impl std::future::Future<Output = String> + Send + 'static,
    last: impl FnOnce(String) -> T + Send + 'static,
) -> impl Stream<Item = T> + Send + 'static
where
    S: Stream<Item = T> + Send + 'static,
    T: Send + 'static,
{
    let reason = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let slot = reason.clone();
    let watch = async move {
        let why = ends.await;
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    };
    stream.take_until(Box::pin(watch)).chain(
        futures::stream::once(async move {
            reason
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .map(last)
        })
        .filter_map(futures::future::ready),
    )
}

/// WebSocket close code of a stream that must end: its token expired or was revoked, or its
/// reader lost the topic's read grant (application range).
pub const WS_TOKEN_ENDED: u16 = 4001;

/// Where a stream starts: `?after=SEQ`, else the `Last-Event-ID` header, else now.
fn start_point(query: &QueryList, headers: &HeaderMap) -> ApiResult<Option<u64>> {
    if let Some(after) = number(query, "after")? {
        return Ok(Some(after));
    }
    match headers.get("last-event-id") {
        None => Ok(None),
        Some(v) => {
            let text = v.to_str().unwrap_or("").trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse().map(Some).map_err(|_| {
                ApiError::invalid(format!(
                    "Last-Event-ID: expected an event sequence number, got {text:?}"
                ))
            })
        }
    }
}

async fn stream_sse(
    State(state): State<AppState>,
    StreamCaller(caller, token): StreamCaller,
    Path(topic): Path<String>,
    query: QueryList,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let hub = hub(&state)?;
    let topic = topic_name(&topic)?;
    let pattern = pattern(&query)?;
    let after = start_point(&query, &headers)?;
    let subscription = hub
        .subscribe(&topic, pattern, after, &actor(&caller))
        .await?;
    let stream = until_refused(
        subscription.map(|d| Ok::<_, Infallible>(sse_event(d))),
        stream_ends(state.service.clone(), token, vec![topic]),
        |reason| {
            Ok(SseEvent::default()
                .event("end")
                .data(json!({ "reason": reason }).to_string()))
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response())
}

fn sse_event(delivery: Delivery) -> SseEvent {
    match delivery {
        Delivery::Event(e) => SseEvent::default().id(e.seq.to_string()).data(e.to_json()),
        Delivery::Lag { behind } => SseEvent::default()
            .event("lag")
            .data(json!({ "behind": behind }).to_string()),
        Delivery::Cutoff {
            reason,
            resume_after,
        } => SseEvent::default()
            .event("cutoff")
            .data(json!({ "reason": reason, "resume_after": resume_after }).to_string()),
    }
}

/// WebSocket close code of a cut-off stream (application range).
pub const WS_CUTOFF: u16 = 4000;

async fn stream_ws(
    State(state): State<AppState>,
    StreamCaller(caller, token): StreamCaller,
    Path(topic): Path<String>,
    query: QueryList,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let hub = hub(&state)?;
    let topic = topic_name(&topic)?;
    let pattern = pattern(&query)?;
    let after = start_point(&query, &headers)?;
    // Subscribe before upgrading so a refusal is a plain HTTP error.
    let subscription = hub
        .subscribe(&topic, pattern, after, &actor(&caller))
        .await?;
    let ends = stream_ends(state.service.clone(), token, vec![topic]);
    Ok(upgrade.on_upgrade(move |socket| ws_session(socket, subscription, ends)))
}

fn ws_frame(delivery: &Delivery) -> String {
    match delivery {
        Delivery::Event(e) => format!("{{\"type\":\"event\",\"event\":{}}}", e.to_json()),
        Delivery::Lag { behind } => json!({ "type": "lag", "behind": behind }).to_string(),
        Delivery::Cutoff {
            reason,
            resume_after,
        } => {
            json!({ "type": "cutoff", "reason": reason, "resume_after": resume_after }).to_string()
        }
    }
}

async fn ws_session(
    socket: WebSocket,
    mut subscription: sluice_events::Subscription,
    ended: impl std::future::Future<Output = String>,
) {
    let (mut sink, mut incoming) = socket.split();
    let mut ping = tokio::time::interval(KEEP_ALIVE);
    ping.tick().await;
    tokio::pin!(ended);
    loop {
        tokio::select! {
            reason = &mut ended => {
                let frame = json!({ "type": "end", "reason": reason }).to_string();
                let _ = sink.send(Message::Text(frame.into())).await;
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: WS_TOKEN_ENDED,
                        reason: "the access token or the read grant is no longer valid".into(),
                    })))
                    .await;
                return;
            }
            delivery = subscription.next() => {
                let Some(delivery) = delivery else { break };
                let cut = matches!(delivery, Delivery::Cutoff { .. });
                if sink.send(Message::Text(ws_frame(&delivery).into())).await.is_err() {
                    return;
                }
                if cut {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code: WS_CUTOFF,
                            reason: "cut off; resume after the sequence number given".into(),
                        })))
                        .await;
                    return;
                }
            }
            message = incoming.next() => match message {
                // Clients have nothing to say; pings are answered by the library.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
        }
    }
}

// ----- history -----

fn history_query(
    topic: TopicName,
    query: &QueryList,
    default_limit: usize,
) -> ApiResult<HistoryQuery> {
    let limit = number(query, "limit")?.map_or(default_limit, |n| n as usize);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(format!(
            "query parameter limit: must be between 1 and {MAX_PAGE}"
        )));
    }
    let after_seq = match query.one("cursor") {
        None | Some("") => number(query, "after")?.unwrap_or(0),
        Some(c) => c
            .strip_prefix("s")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "query parameter cursor: {c:?} is not a cursor this server gave out"
                ))
            })?,
    };
    Ok(HistoryQuery {
        topic,
        pattern: pattern(query)?,
        start: time(query, "start")?,
        end: time(query, "end")?,
        after_seq,
        limit,
        scan_limit: (limit * 20).max(20_000),
    })
}

fn cursor(after: u64) -> String {
    format!("s{after}")
}

async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
    query: QueryList,
) -> ApiResult<Response> {
    let q = history_query(topic_name(&topic)?, &query, 100)?;
    let page = hub(&state)?.history(&q, &actor(&caller)).await?;
    let next = page.next_after.map(cursor);
    Ok(Json(HistoryAnswer {
        items: &page.events,
        next_cursor: next,
    })
    .into_response())
}

async fn last(
    State(state): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
    query: QueryList,
) -> ApiResult<Response> {
    let events = hub(&state)?
        .last_per_key(&topic_name(&topic)?, &pattern(&query)?, &actor(&caller))
        .await?;
    Ok(Json(Items { items: &events }).into_response())
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    JsonLines,
    Csv,
}

fn export_format(query: &QueryList, headers: &HeaderMap) -> ApiResult<Format> {
    if let Some(f) = query.one("format") {
        return match f.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" | "jsonlines" => Ok(Format::JsonLines),
            "csv" => Ok(Format::Csv),
            other => Err(ApiError::invalid(format!(
                "query parameter format: {other:?}; expected jsonl or csv"
            ))),
        };
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("text/csv") {
        Ok(Format::Csv)
    } else {
        Ok(Format::JsonLines)
    }
}

/// One CSV field, quoted when it must be (RFC 4180).
fn csv_field(out: &mut String, text: &str) {
    if text.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

fn csv_row(event: &StoredEvent) -> String {
    let mut out = String::with_capacity(128 + event.payload.get().len());
    let seq = event.seq.to_string();
    let fields = [
        seq.as_str(),
        &event.timestamp_text(),
        event.topic.as_str(),
        event.routing_key.as_str(),
        event.id.as_str(),
        event.posted_by.as_deref().unwrap_or(""),
        event.payload.get(),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&mut out, f);
    }
    out.push_str("\r\n");
    out
}

async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path(topic): Path<String>,
    query: QueryList,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let hub = hub(&state)?.clone();
    let format = export_format(&query, &headers)?;
    let mut q = history_query(topic_name(&topic)?, &query, MAX_PAGE)?;
    q.limit = MAX_PAGE;
    let actor = actor(&caller);
    // Everything is checked before the first byte: a bad request is an error status, and a
    // failure after that aborts the transfer instead of ending it as if complete.
    let first = hub.history(&q, &actor).await?;
    let filename = format!(
        "{}.{}",
        q.topic,
        if format == Format::Csv {
            "csv"
        } else {
            "jsonl"
        }
    );
    let body = export_stream(hub, q, actor, first, format);
    let mut response = Response::new(Body::from_stream(body));
    let content_type = if format == Format::Csv {
        "text/csv; charset=utf-8; header=present"
    } else {
        "application/x-ndjson"
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

fn export_stream(
    hub: EventHub,
    q: HistoryQuery,
    actor: Actor,
    first: sluice_events::HistoryPage,
    format: Format,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let header = (format == Format::Csv)
        .then(|| Bytes::from_static(b"seq,timestamp,topic,routing_key,id,posted_by,payload\r\n"));
    let pages = futures::stream::unfold(Some(first), move |page| {
        let hub = hub.clone();
        let actor = actor.clone();
        let mut q2 = q.clone();
        async move {
            let page = page?;
            let mut chunk = String::new();
            for e in &page.events {
                match format {
                    Format::Csv => chunk.push_str(&csv_row(e)),
                    Format::JsonLines => {
                        chunk.push_str(&e.to_json());
                        chunk.push('\n');
                    }
                }
            }
            let next = match page.next_after {
                None => None,
                Some(after) => {
                    q2.after_seq = after;
                    match hub.history(&q2, &actor).await {
                        Ok(p) => Some(p),
                        Err(e) => {
                            return Some((
                                Err(std::io::Error::other(format!("export failed: {e}"))),
                                None,
                            ));
                        }
                    }
                }
            };
            Some((Ok(Bytes::from(chunk)), next))
        }
    });
    futures::stream::iter(header.map(Ok)).chain(pages)
}
