//! The dashboard's actions (POST, from forms): check the level the API asks for the same thing,
//! call the service, go back to the page with a notice of what happened.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use sluice_model::{AccessLevel, ChannelName, EventId, HubName, TableName};
use sluice_service::{ModeOverride, RefreshCommand};

use super::UiState;
use super::session::{self, Flash, Viewer, error_flash, redirect_with};
use super::view::Refusal;
use crate::hvr::hub_name;

type Done = Result<Response, Refusal>;

/// A form body as `(key, value)` pairs, keeping repeated keys.
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(body: &[u8]) -> Form {
        Form(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub(crate) fn one(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Where to go back to: the form's `back` when it is a dashboard path, else `fallback`.
fn back(form: &Form, fallback: &str) -> String {
    form.one("back")
        .filter(|b| b.starts_with("/ui/") && !b.starts_with("//") && !b.contains(['\r', '\n']))
        .unwrap_or(fallback)
        .to_owned()
}

fn ok(text: impl Into<String>) -> Flash {
    Flash {
        error: false,
        text: text.into(),
    }
}

/// `POST /ui/login`: the hub's users log in with their password.
pub(crate) async fn login(State(ui): State<UiState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let user = form.one("username").unwrap_or("").trim().to_owned();
    let password = form.one("password").unwrap_or("");
    let next = form
        .one("next")
        .filter(|n| n.starts_with("/ui/") && !n.starts_with("//"))
        .unwrap_or("/ui/channels")
        .to_owned();
    if !session::same_origin(&headers) {
        return super::view::refusal_page(
            axum::http::StatusCode::FORBIDDEN,
            "refused: the login form was not sent from this dashboard",
        );
    }
    match ui.app.service.login(&user, password, true).await {
        Ok(tokens) => {
            let mut response = Redirect::to(&next).into_response();
            session::store_tokens(&mut response, &tokens, session::is_secure(&headers));
            response
        }
        Err(e) => {
            ui.app.metrics.login_failed();
            super::pages::login_form(
                Some(crate::error::ApiError::from(e).message().to_owned()),
                next,
                user,
            )
        }
    }
}

/// `POST /ui/logout`: revokes the refresh token and forgets the cookies.
pub(crate) async fn logout(State(ui): State<UiState>, headers: HeaderMap) -> Response {
    if !session::same_origin(&headers) {
        return super::view::refusal_page(
            axum::http::StatusCode::FORBIDDEN,
            "refused: the logout was not sent from this dashboard",
        );
    }
    if let Some(refresh) = session::cookie(&headers, session::REFRESH_COOKIE)
        && let Err(e) = ui.app.service.revoke(refresh).await
    {
        tracing::warn!(error = %e, "revoke at logout failed");
    }
    let mut response = Redirect::to("/ui/login").into_response();
    session::clear_tokens(&mut response);
    response
}

/// `POST /ui/hubs/{hub}/freeze` (HubOwner).
pub(crate) async fn freeze(Extension(viewer): Extension<Viewer>, Path(hub): Path<String>) -> Done {
    viewer.require(AccessLevel::HubOwner, "freezing a hub")?;
    let hub = hub_name(&hub)?;
    let to = format!("/ui/hubs/{hub}");
    Ok(match viewer.service.freeze_hub(&hub).await {
        Ok(_) => redirect_with(&to, ok(format!("hub {hub} is frozen: no job starts"))),
        Err(e) => redirect_with(&to, error_flash(e)),
    })
}

/// `POST /ui/hubs/{hub}/unfreeze` (HubOwner).
pub(crate) async fn unfreeze(
    Extension(viewer): Extension<Viewer>,
    Path(hub): Path<String>,
) -> Done {
    viewer.require(AccessLevel::HubOwner, "unfreezing a hub")?;
    let hub = hub_name(&hub)?;
    let to = format!("/ui/hubs/{hub}");
    Ok(match viewer.service.unfreeze_hub(&hub).await {
        Ok(_) => redirect_with(&to, ok(format!("hub {hub} is live again"))),
        Err(e) => redirect_with(&to, error_flash(e)),
    })
}

/// `POST /ui/hubs/{hub}/locs/{loc}/test` (ReadExec): the result comes back as the notice.
pub(crate) async fn test_location(
    Extension(viewer): Extension<Viewer>,
    Path((hub, loc)): Path<(String, String)>,
) -> Done {
    viewer.require(AccessLevel::ReadExec, "testing a location")?;
    let hub = hub_name(&hub)?;
    let to = format!("/ui/hubs/{hub}");
    let loc = sluice_model::LocationName::new(&loc)
        .map_err(|e| Refusal::new(axum::http::StatusCode::NOT_FOUND, e.to_string()))?;
    Ok(match viewer.service.test_location(&hub, &loc).await {
        Ok(report) => {
            let props: Vec<String> = report
                .discovered_props
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            redirect_with(
                &to,
                ok(format!(
                    "location {loc}: test passed ({})",
                    props.join(", ")
                )),
            )
        }
        Err(e) => redirect_with(&to, error_flash(e)),
    })
}

/// `POST /ui/hubs/{hub}/events/{ev}/cancel` (ReadExec).
pub(crate) async fn cancel_event(
    Extension(viewer): Extension<Viewer>,
    Path((hub, ev)): Path<(String, String)>,
) -> Done {
    viewer.require(AccessLevel::ReadExec, "cancelling an event")?;
    let hub = hub_name(&hub)?;
    let to = format!("/ui/hubs/{hub}/jobs");
    let id: EventId = ev.parse().map_err(|_| {
        Refusal::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("event {ev:?} does not exist"),
        )
    })?;
    Ok(match viewer.service.cancel_events(&hub, &[id]).await {
        Ok(()) => redirect_with(&to, ok(format!("event {id} is cancelled"))),
        Err(e) => redirect_with(&to, error_flash(e)),
    })
}

/// A refresh of `tables` (all when empty) of `channel`, as the API's refresh posts it.
fn refresh_command(hub: &HubName, channel: &ChannelName, tables: Vec<TableName>) -> RefreshCommand {
    RefreshCommand {
        hub: hub.clone(),
        channel: channel.clone(),
        source: None,
        target: None,
        tables,
        strategy: None,
        batch_rows: None,
        count_first: false,
        mode: ModeOverride::default(),
        parallel: None,
    }
}

/// `hub/channel` keys of the selected rows.
fn selected(form: &Form) -> Result<Vec<(HubName, ChannelName)>, Refusal> {
    form.all("sel")
        .map(|key| {
            let (hub, channel) = key.split_once('/').ok_or_else(|| {
                Refusal::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    format!("{key:?} does not name a channel as hub/channel"),
                )
            })?;
            Ok((hub_name(hub)?, super::channel_name(channel)?))
        })
        .collect()
}

/// What one bulk action needs, and says in a refusal.
fn action_level(action: &str) -> Option<(AccessLevel, &'static str)> {
    Some(match action {
        "sync" => (AccessLevel::ReadExecRefresh, "a sync (refresh)"),
        "test" => (AccessLevel::ReadExec, "a connection test"),
        _ => return None,
    })
}

/// `POST /ui/channels/action`: one action on every selected channel; one notice line each.
pub(crate) async fn channel_action(Extension(viewer): Extension<Viewer>, body: Bytes) -> Done {
    let form = Form::parse(&body);
    let to = back(&form, "/ui/channels");
    let action = form.one("action").unwrap_or("");
    let Some((level, what)) = action_level(action) else {
        return Err(Refusal::new(
            axum::http::StatusCode::BAD_REQUEST,
            format!("unknown action {action:?}"),
        ));
    };
    viewer.require(level, what)?;
    let channels = selected(&form)?;
    if channels.is_empty() {
        return Ok(redirect_with(
            &to,
            Flash {
                error: true,
                text: "select at least one channel".into(),
            },
        ));
    }
    let mut lines = Vec::new();
    let mut failed = false;
    for (hub, channel) in &channels {
        let outcome = match action {
            "sync" => viewer
                .service
                .submit_refresh_detached(refresh_command(hub, channel, Vec::new()), true)
                .await
                .map(|p| format!("{hub}/{channel}: sync started (event {})", p.event)),
            _ => viewer
                .service
                .test_channel(hub, channel)
                .await
                .map(|locs| format!("{hub}/{channel}: test passed ({})", locs.join(", "))),
        };
        match outcome {
            Ok(line) => lines.push(line),
            Err(e) => {
                failed = true;
                lines.push(format!(
                    "{hub}/{channel}: {}",
                    crate::error::ApiError::from(e).message()
                ));
            }
        }
    }
    Ok(redirect_with(
        &to,
        Flash {
            error: failed,
            text: lines.join("\n"),
        },
    ))
}

/// `POST /ui/hubs/{hub}/channels/{channel}/tables/{table}/resync` (ReadExecRefresh): a refresh of
/// that one table.
pub(crate) async fn resync_table(
    Extension(viewer): Extension<Viewer>,
    Path((hub, channel, table)): Path<(String, String, String)>,
) -> Done {
    viewer.require(AccessLevel::ReadExecRefresh, "a table resync (refresh)")?;
    let hub = hub_name(&hub)?;
    let channel = super::channel_name(&channel)?;
    let table = TableName::new(&table)
        .map_err(|e| Refusal::new(axum::http::StatusCode::NOT_FOUND, e.to_string()))?;
    let to = format!("/ui/hubs/{hub}/channels/{channel}");
    let cmd = refresh_command(&hub, &channel, vec![table.clone()]);
    Ok(
        match viewer.service.submit_refresh_detached(cmd, true).await {
            Ok(p) => redirect_with(
                &to,
                ok(format!("table {table}: resync started (event {})", p.event)),
            ),
            Err(e) => redirect_with(&to, error_flash(e)),
        },
    )
}
