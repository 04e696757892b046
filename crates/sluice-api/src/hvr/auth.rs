//! Login, token refresh and revoke (`/auth/v1/…`), `GET /api`, and sluice's users API.

use axum::Json as Out;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use sluice_model::AccessLevel;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, ClientAddr, JsonBody};
use crate::{API_VERSIONS, AppState};
use sluice_service::auth::PasswordChange;

/// Login body. Unknown keys are ignored: clients in the wild send extra ones.
#[derive(Deserialize)]
pub(crate) struct PasswordBody {
    username: Option<String>,
    password: Option<String>,
    refresh: Option<String>,
}

fn wants_refresh(refresh: Option<&str>) -> ApiResult<bool> {
    match refresh {
        None => Ok(false),
        Some("token") => Ok(true),
        Some("cookie" | "session-cookie") => Err(ApiError::invalid(
            "refresh tokens in cookies are not supported; use \"refresh\": \"token\"",
        )),
        Some(other) => Err(ApiError::invalid(format!(
            "refresh: expected \"token\", got {other:?}"
        ))),
    }
}

pub(crate) async fn password(
    State(state): State<AppState>,
    ClientAddr(from): ClientAddr,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<Response> {
    let (Some(user), Some(password)) = (body.username, body.password) else {
        return Err(ApiError::forbidden("username and password are required"));
    };
    let refresh = wants_refresh(body.refresh.as_deref())?;
    match state.service.login(&user, &password, refresh, from).await {
        Ok(tokens) => Ok(Out(tokens).into_response()),
        Err(e) => {
            state.metrics.login_failed();
            Err(e.into())
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct RefreshBody {
    refresh_token: Option<String>,
    refresh: Option<String>,
}

pub(crate) async fn refresh(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult<Response> {
    let token = body
        .refresh_token
        .ok_or_else(|| ApiError::forbidden("refresh_token is required"))?;
    // A refresh answers a new refresh token unless the client asked for none explicitly.
    let again = body.refresh.as_deref().is_none_or(|r| r == "token");
    let tokens = state.service.refresh_login(&token, again).await?;
    Ok(Out(tokens).into_response())
}

/// Ends the refresh token's session; with an `Authorization: Bearer` header, that access token's
/// session too (a logout for clients that hold no refresh token). Never an error, as HVR.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody<RefreshBody>,
) -> StatusCode {
    if let Some(token) = body.refresh_token
        && let Err(e) = state.service.revoke(&token).await
    {
        tracing::warn!(error = %e, "revoke failed");
    }
    if let Some(access) = crate::extract::bearer_header(&headers)
        && let Err(e) = state.service.revoke_access(access).await
    {
        tracing::warn!(error = %e, "revoke failed");
    }
    StatusCode::NO_CONTENT
}

pub(crate) async fn versions() -> Out<Vec<&'static str>> {
    Out(API_VERSIONS.to_vec())
}

fn user_json(u: &sluice_repo::UserRecord) -> Json {
    serde_json::json!({
        "level": u.level,
        "created": u.created.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "creator": u.creator,
    })
}

pub(crate) async fn users(caller: Caller) -> ApiResult<Out<Json>> {
    caller.require(AccessLevel::SysAdmin)?;
    let users = caller.service.users().await?;
    let map: Map<String, Json> = users
        .iter()
        .map(|u| (u.name.clone(), user_json(u)))
        .collect();
    Ok(Out(Json::Object(map)))
}

pub(crate) async fn user(caller: Caller, Path(name): Path<String>) -> ApiResult<Out<Json>> {
    if caller.identity.user != name {
        caller.require(AccessLevel::SysAdmin)?;
    }
    let users = caller.service.users().await?;
    let u = users
        .iter()
        .find(|u| u.name == name)
        .ok_or_else(|| ApiError::not_found(format!("user {name} does not exist")))?;
    Ok(Out(user_json(u)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    user: String,
    level: AccessLevel,
    password: String,
}

pub(crate) async fn create_user(
    caller: Caller,
    JsonBody(body): JsonBody<NewUser>,
) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    caller
        .service
        .create_user(&body.user, body.level, &body.password)
        .await?;
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserChange {
    level: Option<AccessLevel>,
    password: Option<String>,
    current_password: Option<String>,
}

/// Whether the caller changes their own password (which needs the current one) rather than a
/// SysAdmin resetting someone else's.
fn password_change<'a>(
    caller: &Caller,
    name: &str,
    new: Option<&'a str>,
    current: Option<&'a str>,
) -> ApiResult<(Option<PasswordChange<'a>>, bool)> {
    let own = caller.identity.user == name;
    if !own {
        caller.require(AccessLevel::SysAdmin)?;
    }
    Ok((new.map(|new| PasswordChange { new, current }), !own))
}

pub(crate) async fn update_user(
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<UserChange>,
) -> ApiResult<StatusCode> {
    // Users may change their own password (giving the current one); everything else needs
    // SysAdmin.
    if body.level.is_some() {
        caller.require(AccessLevel::SysAdmin)?;
    }
    let (change, reset) = password_change(
        &caller,
        &name,
        body.password.as_deref(),
        body.current_password.as_deref(),
    )?;
    caller
        .service
        .update_user(&name, body.level, change, reset)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /users/{user}/password` (HVR's shape).
#[derive(Deserialize)]
pub(crate) struct PasswordReset {
    new_password: String,
    current_password: Option<String>,
}

pub(crate) async fn set_password(
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PasswordReset>,
) -> ApiResult<StatusCode> {
    let (change, reset) = password_change(
        &caller,
        &name,
        Some(body.new_password.as_str()),
        body.current_password.as_deref(),
    )?;
    caller
        .service
        .update_user(&name, None, change, reset)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn delete_user(caller: Caller, Path(name): Path<String>) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    if caller.identity.user == name {
        return Err(ApiError::invalid("you cannot delete yourself"));
    }
    caller.service.delete_user(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
