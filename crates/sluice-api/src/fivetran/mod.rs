//! The Fivetran-compatible REST face (`/v1/…`, reference `fivetran-api.md`): connectors (channels
//! with one source and one target), their schema config, groups (hubs), destinations and users,
//! for the Fivetran clients of dagster, airflow, the Fivetran CLI and the Go SDK.
//!
//! Every connector route exists under `/v1/connectors/…` and `/v1/connections/…`, and every route
//! also with a trailing `/`. Requests authenticate with HTTP Basic `API_KEY:API_SECRET` (keys from
//! `sluice apikey create`). Bodies are parsed whatever their `Content-Type` says, an empty body is
//! `{}`, and unknown fields are ignored. Answers are `application/json`: `{"code": "Success",
//! "message"?, "data"?}`, or `{"code", "message"}` with an error status.

pub(crate) mod connectors;
mod groups;
pub(crate) mod shapes;
mod wire;

use axum::Router;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, patch, post};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};
use sluice_model::AccessLevel;
use sluice_service::HubService;
use sluice_service::auth::Identity;

use crate::AppState;
use crate::error::FivetranError;

/// Results of `/v1` handlers.
pub(crate) type FtResult<T> = Result<T, FivetranError>;

/// The caller of a `/v1` route, authenticated by an API key.
pub(crate) struct KeyCaller {
    /// The service, acting as `apikey:<key>`.
    pub(crate) service: HubService,
    identity: Identity,
}

impl KeyCaller {
    /// Refuses (403) unless the key has at least `level`.
    pub(crate) fn require(&self, level: AccessLevel) -> FtResult<()> {
        if self.identity.level.allows(level) {
            Ok(())
        } else {
            Err(FivetranError::forbidden(format!(
                "this API key has {} access; this needs {level}",
                self.identity.level
            )))
        }
    }

    /// Whether the key may manage users.
    pub(crate) fn level(&self) -> AccessLevel {
        self.identity.level
    }
}

/// `key:secret` of an `Authorization: Basic …` header.
fn basic(parts: &Parts) -> Option<(String, String)> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (key, secret) = text.split_once(':')?;
    Some((key.to_owned(), secret.to_owned()))
}

impl FromRequestParts<AppState> for KeyCaller {
    type Rejection = FivetranError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> FtResult<Self> {
        let (key, secret) = basic(parts).ok_or_else(|| {
            FivetranError::unauthenticated(
                "authentication required: send 'Authorization: Basic base64(API_KEY:API_SECRET)' (create a key with `sluice apikey create`)",
            )
        })?;
        let identity = state
            .service
            .authenticate_api_key(&key, &secret)
            .await
            .map_err(|e| FivetranError::from_service(e, "ApiKey"))?;
        Ok(KeyCaller {
            service: state.service.as_user(&identity.user),
            identity,
        })
    }
}

/// A `/v1` request body: any content type, empty means `{}`, unknown fields are ignored by the
/// target types.
pub(crate) fn body<T: DeserializeOwned>(bytes: &Bytes) -> FtResult<T> {
    crate::extract::parse_json(bytes).map_err(FivetranError::from)
}

/// `{"code": "Success", "message"?, "data"?}`.
pub(crate) fn success(message: Option<String>, data: Option<Json>) -> Response {
    let mut out = json!({"code": "Success"});
    if let Some(m) = message {
        out["message"] = Json::from(m);
    }
    if let Some(d) = data {
        out["data"] = d;
    }
    axum::Json(out).into_response()
}

/// One page of `items` (ordered by `key`) after `cursor`, at most `limit` (1..1000, default 100):
/// `{"items": […], "next_cursor", "nextCursor"}`. Cursors are the key of the next page's first
/// item, base64url-encoded.
pub(crate) fn page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    to_json: impl Fn(T) -> Json,
    query: &crate::extract::QueryList,
) -> FtResult<Json> {
    let limit = match query.one("limit") {
        None | Some("") => 100,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(FivetranError::invalid(format!(
                    "limit {text:?} is not a number from 1 to 1000"
                )));
            }
        },
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let after = match query.one("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            b64.decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| FivetranError::invalid(format!("cursor {c:?} is not valid")))?,
        ),
    };
    let mut items = items;
    items.sort_by_key(|i| key(i));
    let mut rest: Vec<T> = items
        .into_iter()
        .filter(|i| after.as_ref().is_none_or(|a| key(i) >= *a))
        .collect();
    let next = rest.get(limit).map(|i| b64.encode(key(i)));
    rest.truncate(limit);
    let next = next.map_or(Json::Null, Json::from);
    Ok(json!({
        "items": rest.into_iter().map(to_json).collect::<Vec<_>>(),
        "next_cursor": next,
        "nextCursor": next,
    }))
}

/// Adds `path` and `path/` to `router`, with a JSON 405 for other methods.
fn both(router: Router<AppState>, path: &str, method: MethodRouter<AppState>) -> Router<AppState> {
    let method = method.fallback(method_not_allowed);
    router
        .route(path, method.clone())
        .route(&format!("{path}/"), method)
}

async fn method_not_allowed() -> FivetranError {
    FivetranError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "this method is not allowed on this path",
    )
}

async fn no_route(uri: axum::http::Uri) -> FivetranError {
    FivetranError::not_found("Route", format!("no such route: {}", uri.path()))
}

/// The `/v1` routes.
pub(crate) fn routes() -> Router<AppState> {
    let mut r = Router::new();
    for p in ["connectors", "connections"] {
        let c = format!("/v1/{p}/{{id}}");
        r = both(r, &format!("/v1/{p}"), get(connectors::list));
        r = both(r, &c, get(connectors::get_one).patch(connectors::update));
        r = both(r, &format!("{c}/force"), post(connectors::force));
        r = both(r, &format!("{c}/sync"), post(connectors::sync));
        r = both(r, &format!("{c}/resync"), post(connectors::resync));
        r = both(r, &format!("{c}/test"), post(connectors::test));
        r = both(
            r,
            &format!("{c}/schemas"),
            get(connectors::schemas).patch(connectors::patch_schemas),
        );
        r = both(r, &format!("{c}/schemas/reload"), post(connectors::reload));
        r = both(
            r,
            &format!("{c}/schemas/tables/resync"),
            post(connectors::resync_tables),
        );
        r = both(
            r,
            &format!("{c}/schemas/{{schema}}"),
            patch(connectors::patch_schema),
        );
        r = both(
            r,
            &format!("{c}/schemas/{{schema}}/tables/{{table}}"),
            patch(connectors::patch_table),
        );
        r = both(
            r,
            &format!("{c}/schemas/{{schema}}/tables/{{table}}/resync"),
            post(connectors::resync_table),
        );
        r = both(
            r,
            &format!("{c}/schemas/{{schema}}/tables/{{table}}/columns"),
            get(connectors::columns),
        );
        r = both(
            r,
            &format!("/v1/groups/{{id}}/{p}"),
            get(groups::group_connectors),
        );
    }
    r = both(r, "/v1/groups", get(groups::list));
    r = both(r, "/v1/groups/{id}", get(groups::get_one));
    r = both(r, "/v1/destinations/{id}", get(groups::destination));
    r = both(r, "/v1/users", get(groups::users));
    r.route("/v1/{*rest}", any(no_route))
}
