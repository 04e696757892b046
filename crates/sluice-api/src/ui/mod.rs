//! The web dashboard under `/ui`: server-rendered pages (askama templates in `templates/`), a
//! little plain JavaScript, and the CSS and script compiled into the binary and served under
//! `/ui/static/…`, so it works offline.
//!
//! Every page and action goes through the same [`sluice_service::HubService`] calls and access
//! levels as the API, acting as the logged-in user (see [`session`] for the cookie session and
//! the CSRF defence). Live updates come from the event hub over a cookie-authenticated SSE
//! stream ([`live`]); charts are SVG drawn on the server ([`chart`]).

mod actions;
mod chart;
mod forms;
mod graph;
mod lag;
mod live;
mod pages;
mod session;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use sluice_model::ChannelName;

use crate::AppState;
use crate::error::dashboard::Refusal;
use crate::extract::QueryList;

/// What the dashboard's handlers share.
#[derive(Clone)]
pub(crate) struct UiState {
    /// The server's state (the service acts as the hub server until a user is known).
    pub app: AppState,
    /// Recent token renewals (see [`session`]).
    pub renewals: Arc<session::Renewals>,
    /// Capture and integrate latency over time (see [`lag`]).
    pub lag: Arc<lag::LagHistory>,
}

/// A channel name from a path.
pub(crate) fn channel_name(s: &str) -> Result<ChannelName, Refusal> {
    ChannelName::new(s).map_err(|e| {
        Refusal::new(
            StatusCode::NOT_FOUND,
            format!("channel {s:?} does not exist ({e})"),
        )
    })
}

/// A location name from a path or a form (an invalid one names no location: 404).
pub(crate) fn location_name(s: &str) -> Result<sluice_model::LocationName, Refusal> {
    sluice_model::LocationName::new(s)
        .map_err(|e| Refusal::new(StatusCode::NOT_FOUND, e.to_string()))
}

const CSS: &str = include_str!("../../static/ui.css");
const JS: &str = include_str!("../../static/ui.js");
const ICON: &str = include_str!("../../static/favicon.svg");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

async fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

async fn icon() -> Response {
    asset(ICON, "image/svg+xml")
}

/// `GET /ui/login?next=`.
async fn login_page(query: QueryList) -> Response {
    let next = query.one("next").unwrap_or("/ui/channels").to_owned();
    pages::login_form(None, next, String::new())
}

async fn to_channels() -> Redirect {
    Redirect::to("/ui/channels")
}

/// Pages and actions of the dashboard; every one but login and the static files needs a
/// session.
pub(crate) fn routes(app: AppState) -> Router<AppState> {
    let state = UiState {
        app,
        renewals: session::renewals(),
        lag: Arc::default(),
    };
    let private = Router::new()
        .route("/ui/", get(pages::home))
        .route("/ui/channels", get(pages::channels))
        .route("/ui/channels/action", post(actions::channel_action))
        .route("/ui/live", get(live::live))
        .route("/ui/lineage", get(pages::lineage))
        .route("/ui/hubs", get(forms::hubs).post(forms::create_hub))
        .route("/ui/hubs/{hub}/new-location", get(forms::new_location))
        .route("/ui/hubs/{hub}/locations", post(forms::save_location))
        .route("/ui/hubs/{hub}/locs/{loc}/edit", get(forms::edit_location))
        .route(
            "/ui/hubs/{hub}/new-channel",
            get(forms::new_channel).post(forms::create_channel),
        )
        .route("/ui/hubs/{hub}", get(pages::hub))
        .route("/ui/hubs/{hub}/freeze", post(actions::freeze))
        .route("/ui/hubs/{hub}/unfreeze", post(actions::unfreeze))
        .route(
            "/ui/hubs/{hub}/locs/{loc}/test",
            post(actions::test_location),
        )
        .route("/ui/hubs/{hub}/jobs", get(pages::jobs))
        .route("/ui/hubs/{hub}/events/{ev}", get(pages::event))
        .route(
            "/ui/hubs/{hub}/events/{ev}/cancel",
            post(actions::cancel_event),
        )
        .route("/ui/hubs/{hub}/channels/{channel}", get(pages::channel))
        .route(
            "/ui/hubs/{hub}/channels/{channel}/activate",
            post(actions::activate),
        )
        .route(
            "/ui/hubs/{hub}/channels/{channel}/deactivate",
            post(actions::deactivate),
        )
        .route(
            "/ui/hubs/{hub}/channels/{channel}/tables/{table}/resync",
            post(actions::resync_table),
        )
        .route(
            "/ui/hubs/{hub}/channels/{channel}/tables/{table}/enabled",
            post(actions::table_enabled),
        )
        .route(
            "/ui/hubs/{hub}/channels/{channel}/schema",
            post(actions::schema_enabled),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            session::require_viewer,
        ));
    Router::new()
        .route("/ui", get(to_channels))
        .route("/ui/login", get(login_page).post(actions::login))
        .route("/ui/logout", post(actions::logout))
        .route("/ui/static/ui.css", get(css))
        .route("/ui/static/ui.js", get(js))
        .route("/ui/static/favicon.svg", get(icon))
        .merge(private)
        .with_state(state)
}
