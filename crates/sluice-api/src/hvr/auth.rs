//! Login, token refresh and revoke (`/auth/v1/…`) and `GET /api`.

use axum::Json as Out;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::extract::{ClientAddr, JsonBody};
use crate::{API_VERSIONS, AppState};

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
