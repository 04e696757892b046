//! The dashboard's actions (POST, from forms): check the level the API asks for the same thing,
//! call the service, go back to the page with a notice of what happened.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::BTreeMap;

use sluice_model::{AccessLevel, EventId};
use sluice_service::ServiceError;
use sluice_service::connectors::{ConnectorId, SetupTest};

use super::UiState;
use super::session::{self, Flash, Viewer, error_flash, redirect_with};
use crate::error::ApiError;
use crate::error::dashboard::{Refusal, refusal_page};
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

    pub(crate) fn all(&self, key: &str) -> impl Iterator<Item = &str> {
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

pub(crate) fn ok(text: impl Into<String>) -> Flash {
    Flash {
        error: false,
        text: text.into(),
    }
}

/// `POST /ui/login`: the hub's users log in with their password.
pub(crate) async fn login(
    State(ui): State<UiState>,
    crate::extract::ClientAddr(from): crate::extract::ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let user = form.one("username").unwrap_or("").trim().to_owned();
    let password = form.one("password").unwrap_or("");
    let next = form
        .one("next")
        .filter(|n| n.starts_with("/ui/") && !n.starts_with("//"))
        .unwrap_or("/ui/channels")
        .to_owned();
    if !session::same_origin(&headers) {
        return refusal_page(
            axum::http::StatusCode::FORBIDDEN,
            "refused: the login form was not sent from this dashboard",
        );
    }
    match ui.app.service.login(&user, password, true, from).await {
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
        return refusal_page(
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
    viewer
        .require_on(&hub, AccessLevel::HubOwner, "freezing a hub")
        .await?;
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
    viewer
        .require_on(&hub, AccessLevel::HubOwner, "unfreezing a hub")
        .await?;
    let hub = hub_name(&hub)?;
    let to = format!("/ui/hubs/{hub}");
    Ok(match viewer.service.unfreeze_hub(&hub).await {
        Ok(_) => redirect_with(&to, ok(format!("hub {hub} is live again"))),
        Err(e) => redirect_with(&to, error_flash(e)),
    })
}

/// `POST /ui/hubs/{hub}/channels/{channel}/activate` (ReadWrite, as the API's activate): starts
/// the activation; `refresh=1` loads the targets first.
pub(crate) async fn activate(
    Extension(viewer): Extension<Viewer>,
    Path((hub, channel)): Path<(String, String)>,
    body: Bytes,
) -> Done {
    viewer
        .require_on(&hub, AccessLevel::ReadWrite, "activating a channel")
        .await?;
    let hub = hub_name(&hub)?;
    let channel = super::channel_name(&channel)?;
    let form = Form::parse(&body);
    let to = format!("/ui/hubs/{hub}/channels/{channel}");
    let cmd = sluice_service::replication::ActivateCommand {
        hub: hub.clone(),
        channel: channel.clone(),
        refresh: form.one("refresh").is_some_and(|v| v == "1"),
        refresh_events: Vec::new(),
        start: true,
    };
    Ok(match viewer.service.activate(cmd).await {
        Ok(p) => redirect_with(
            &to,
            ok(format!(
                "activating channel {channel}: event {} (its capture and integrate jobs start when it ends)",
                p.event
            )),
        ),
        Err(e) => redirect_with(&to, error_flash(e)),
    })
}

/// `POST /ui/hubs/{hub}/channels/{channel}/deactivate` (ReadWrite, as the API's deactivate).
pub(crate) async fn deactivate(
    Extension(viewer): Extension<Viewer>,
    Path((hub, channel)): Path<(String, String)>,
) -> Done {
    viewer
        .require_on(&hub, AccessLevel::ReadWrite, "deactivating a channel")
        .await?;
    let hub = hub_name(&hub)?;
    let channel = super::channel_name(&channel)?;
    let to = format!("/ui/hubs/{hub}/channels/{channel}");
    Ok(match viewer.service.deactivate(&hub, &channel).await {
        Ok(p) => redirect_with(
            &to,
            ok(format!("deactivating channel {channel}: event {}", p.event)),
        ),
        Err(e) => redirect_with(&to, error_flash(e)),
    })
}

/// `POST /ui/hubs/{hub}/locs/{loc}/test` (ReadExec): the result comes back as the notice.
pub(crate) async fn test_location(
    Extension(viewer): Extension<Viewer>,
    Path((hub, loc)): Path<(String, String)>,
) -> Done {
    viewer
        .require_on(&hub, AccessLevel::ReadExec, "testing a location")
        .await?;
    let hub = hub_name(&hub)?;
    let to = format!("/ui/hubs/{hub}");
    let loc = super::location_name(&loc)?;
    Ok(match viewer.service.test_location(&hub, &loc).await {
        Ok(report) => redirect_with(
            &to,
            ok(format!(
                "location {loc}: test passed ({})",
                discovered(&report)
            )),
        ),
        Err(e) => redirect_with(&to, error_flash(e)),
    })
}

/// What a location test found, for a notice: `Class_Version=15.4, …` (the server's whole
/// version banner left out: Class_Version says which version).
pub(crate) fn discovered(report: &sluice_connector::TestReport) -> String {
    report
        .discovered_props
        .iter()
        .filter(|(k, _)| k.as_str() != "Server_Version")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `POST /ui/hubs/{hub}/events/{ev}/cancel` (ReadExec).
pub(crate) async fn cancel_event(
    Extension(viewer): Extension<Viewer>,
    Path((hub, ev)): Path<(String, String)>,
) -> Done {
    viewer
        .require_on(&hub, AccessLevel::ReadExec, "cancelling an event")
        .await?;
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

/// `hub/channel` keys of the selected rows, as connector ids.
fn selected(form: &Form) -> Result<Vec<ConnectorId>, Refusal> {
    form.all("sel")
        .map(|key| {
            let (hub, channel) = key.split_once('/').ok_or_else(|| {
                Refusal::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    format!("{key:?} does not name a channel as hub/channel"),
                )
            })?;
            Ok(ConnectorId::new(
                hub_name(hub)?,
                super::channel_name(channel)?,
            ))
        })
        .collect()
}

/// The level each connector action needs (those of the API for the same change), and its name
/// in a refusal: settings are definitions (ReadWrite), syncs are refreshes (ReadExecRefresh), a
/// test runs nothing (ReadExec).
fn action_level(action: &str) -> Option<(AccessLevel, &'static str)> {
    Some(match action {
        "pause" => (AccessLevel::ReadWrite, "pausing a connector"),
        "resume" => (AccessLevel::ReadWrite, "resuming a connector"),
        "sync" => (AccessLevel::ReadExecRefresh, "a sync (refresh)"),
        "resync" => (AccessLevel::ReadExecRefresh, "a forced resync (refresh)"),
        "test" => (AccessLevel::ReadExec, "a connection test"),
        _ => return None,
    })
}

/// One action on one connector; the notice line.
async fn act(viewer: &Viewer, action: &str, id: &ConnectorId) -> Result<String, ServiceError> {
    let s = &viewer.service;
    Ok(match action {
        "pause" => {
            s.set_connector_paused(id, true).await?;
            format!("{id}: paused")
        }
        "resume" => {
            s.set_connector_paused(id, false).await?;
            format!("{id}: resumed")
        }
        "sync" => {
            let o = s.sync_connector(id, false).await?;
            if o.started {
                format!("{id}: sync started (event {})", o.event)
            } else {
                format!("{id}: a sync is already running (event {})", o.event)
            }
        }
        "resync" => {
            let o = s.resync_connector(id, None).await?;
            format!("{id}: historical resync started (event {})", o.event)
        }
        _ => {
            let c = s.test_connector(id).await?;
            let tests: Vec<String> =
                serde_json::from_value::<Vec<SetupTest>>(c.settings.setup_tests)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| {
                        if t.message.is_empty() {
                            format!("{} {}", t.title, t.status)
                        } else {
                            format!("{} {}: {}", t.title, t.status, t.message)
                        }
                    })
                    .collect();
            format!(
                "{id}: setup {} ({})",
                c.settings.setup_state,
                tests.join("; ")
            )
        }
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
    for id in &channels {
        if viewer
            .require_on(id.hub.as_str(), level, what)
            .await
            .is_err()
        {
            failed = true;
            lines.push(format!(
                "{id}: refused: {what} needs {level} access on hub {}",
                id.hub
            ));
            continue;
        }
        match act(&viewer, action, id).await {
            Ok(line) => lines.push(line),
            Err(e) => {
                failed = true;
                lines.push(format!("{id}: {}", ApiError::from(e).message()));
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

/// The connector of a channel page and the `schema` of its form.
fn table_target(
    hub: &str,
    channel: &str,
    form: &Form,
) -> Result<(ConnectorId, String, String), Refusal> {
    let id = ConnectorId::new(hub_name(hub)?, super::channel_name(channel)?);
    let to = format!("/ui/hubs/{}/channels/{}", id.hub, id.channel);
    let schema = form
        .one("schema")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Refusal::new(
                axum::http::StatusCode::BAD_REQUEST,
                "the form names no schema: only connectors have per-table actions",
            )
        })?
        .to_owned();
    Ok((id, to, schema))
}

fn enabled_flag(form: &Form) -> Result<bool, Refusal> {
    match form.one("enabled") {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        other => Err(Refusal::new(
            axum::http::StatusCode::BAD_REQUEST,
            format!("enabled: expected true or false, got {other:?}"),
        )),
    }
}

/// `POST /ui/hubs/{hub}/channels/{channel}/tables/{table}/resync` (ReadExecRefresh, form
/// `schema`): a full refresh of that one table of the connector.
pub(crate) async fn resync_table(
    Extension(viewer): Extension<Viewer>,
    Path((hub, channel, table)): Path<(String, String, String)>,
    body: Bytes,
) -> Done {
    viewer
        .require_on(
            &hub,
            AccessLevel::ReadExecRefresh,
            "a table resync (refresh)",
        )
        .await?;
    let (id, to, schema) = table_target(&hub, &channel, &Form::parse(&body))?;
    let tables = BTreeMap::from([(schema, vec![table.clone()])]);
    Ok(
        match viewer.service.resync_connector_tables(&id, &tables).await {
            Ok(o) => redirect_with(
                &to,
                ok(format!("table {table}: resync started (event {})", o.event)),
            ),
            Err(e) => redirect_with(&to, error_flash(e)),
        },
    )
}

/// `POST /ui/hubs/{hub}/channels/{channel}/tables/{table}/enabled` (ReadWrite, form `schema`,
/// `enabled`): enables or disables a table of the connector.
pub(crate) async fn table_enabled(
    Extension(viewer): Extension<Viewer>,
    Path((hub, channel, table)): Path<(String, String, String)>,
    body: Bytes,
) -> Done {
    viewer
        .require_on(
            &hub,
            AccessLevel::ReadWrite,
            "enabling or disabling a table",
        )
        .await?;
    let form = Form::parse(&body);
    let (id, to, schema) = table_target(&hub, &channel, &form)?;
    let enabled = enabled_flag(&form)?;
    Ok(
        match viewer
            .service
            .set_connector_table_enabled(&id, &schema, &table, enabled)
            .await
        {
            Ok(_) => redirect_with(
                &to,
                ok(format!(
                    "table {schema}.{table} is {}",
                    if enabled { "enabled" } else { "disabled" }
                )),
            ),
            Err(e) => redirect_with(&to, error_flash(e)),
        },
    )
}

/// `POST /ui/hubs/{hub}/channels/{channel}/schema` (ReadWrite, form `schema`, `enabled`):
/// enables or disables a whole schema of the connector.
pub(crate) async fn schema_enabled(
    Extension(viewer): Extension<Viewer>,
    Path((hub, channel)): Path<(String, String)>,
    body: Bytes,
) -> Done {
    viewer
        .require_on(
            &hub,
            AccessLevel::ReadWrite,
            "enabling or disabling a schema",
        )
        .await?;
    let form = Form::parse(&body);
    let (id, to, schema) = table_target(&hub, &channel, &form)?;
    let enabled = enabled_flag(&form)?;
    Ok(
        match viewer
            .service
            .set_connector_schema_enabled(&id, &schema, enabled)
            .await
        {
            Ok(_) => redirect_with(
                &to,
                ok(format!(
                    "schema {schema} is {}",
                    if enabled { "enabled" } else { "disabled" }
                )),
            ),
            Err(e) => redirect_with(&to, error_flash(e)),
        },
    )
}
