//! `GET /ui/live`: the dashboard's live updates over SSE. A browser's `EventSource` cannot send a
//! Bearer header, so this stream is authenticated by the session cookie; it subscribes, as the
//! logged-in user, to the event hub's built-in topics `sluice.job` and `sluice.event` and
//! forwards the few fields the channel list shows, as `job` and `refresh` events.

use std::convert::Infallible;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{Value, json};
use sluice_events::topic::{EVENT_TOPIC, JOB_TOPIC};
use sluice_events::{Actor, Delivery, Pattern, StoredEvent, TopicName};
use sluice_model::AccessLevel;

use super::UiState;
use super::session::Viewer;
use super::view::when;
use crate::error::dashboard::Refusal;
use crate::events::KEEP_ALIVE;
use crate::extract::QueryList;

fn topic(name: &str) -> TopicName {
    TopicName::new(name).expect("the built-in topic names are valid")
}

fn time(v: &Value) -> String {
    when(serde_json::from_value::<DateTime<Utc>>(v.clone()).ok())
}

/// What the page needs of one stored event, or nothing.
fn forward(event: &StoredEvent) -> Option<SseEvent> {
    let p: Value = serde_json::from_str(event.payload.get()).ok()?;
    let text = |k: &str| p[k].as_str().unwrap_or("").to_owned();
    if event.topic.as_str() == JOB_TOPIC {
        let data = json!({
            "hub": text("hub"), "channel": text("channel"),
            "job": text("job"), "job_type": text("job_type"), "state": text("state"),
        });
        return Some(SseEvent::default().event("job").data(data.to_string()));
    }
    let kind = text("type");
    let data = match kind.as_str() {
        "Refresh" => {
            let rows: u64 = p["results"]
                .as_array()
                .map(|results| {
                    results
                        .iter()
                        .filter(|r| r["name"] == "Source_Rows_Used")
                        .filter_map(|r| r["value"].as_str()?.parse::<u64>().ok())
                        .sum()
                })
                .unwrap_or(0);
            json!({
                "hub": text("hub"), "channel": text("channel"), "ev_id": text("ev_id"),
                "state": text("state"), "start": time(&p["start"]), "finish": time(&p["finish"]),
                "rows": rows, "response": text("response"),
            })
        }
        "Hub_Freeze" | "Hub_Unfreeze" => json!({ "hub": text("hub"), "type": kind }),
        _ => return None,
    };
    let name = if kind == "Refresh" { "refresh" } else { "hub" };
    Some(SseEvent::default().event(name).data(data.to_string()))
}

/// `GET /ui/live?hub=`: job states and refreshes of one hub (or of every hub) as they happen.
pub(crate) async fn live(
    State(ui): State<UiState>,
    Extension(viewer): Extension<Viewer>,
    query: QueryList,
) -> Result<Response, Refusal> {
    viewer.require(AccessLevel::ReadOnly, "live updates")?;
    let Some(events) = ui.app.service.event_hub() else {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the event hub is not running in this server; live updates are off",
        ));
    };
    let pattern = match query.one("hub").filter(|h| !h.is_empty()) {
        Some(hub) => Pattern::new(&format!("{}.#", crate::hvr::hub_name(hub)?))
            .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e))?,
        None => Pattern::all(),
    };
    let actor = Actor::user(viewer.identity.user.clone(), viewer.identity.level);
    let jobs = events
        .subscribe(&topic(JOB_TOPIC), pattern.clone(), None, &actor)
        .await?;
    let refreshes = events
        .subscribe(&topic(EVENT_TOPIC), pattern, None, &actor)
        .await?;
    let stream = futures::stream::select(jobs, refreshes).filter_map(|d| async move {
        match d {
            Delivery::Event(e) => forward(&e),
            Delivery::Lag { .. } => Some(SseEvent::default().event("lag").data("{}")),
            Delivery::Cutoff { reason, .. } => Some(
                SseEvent::default()
                    .event("cutoff")
                    .data(json!({ "reason": reason }).to_string()),
            ),
        }
        .map(Ok::<_, Infallible>)
    });
    // The stream ends with the session: the browser reconnects, and the page's session renews
    // the token or sends the user to the login page.
    let stream = crate::events::until_refused(
        stream,
        crate::events::stream_ends(
            ui.app.service.clone(),
            viewer.token.clone(),
            vec![topic(JOB_TOPIC), topic(EVENT_TOPIC)],
        ),
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
