//! Extractors: the authenticated caller, JSON bodies parsed strictly with clear errors, query
//! strings with repeated keys, and HVR's lenient booleans.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use sluice_model::AccessLevel;
use sluice_service::HubService;
use sluice_service::auth::Identity;

use crate::AppState;
use crate::error::ApiError;

/// The authenticated caller, with the service acting as them.
pub struct Caller {
    /// The service, acting as the caller.
    pub service: HubService,
    /// Who it is.
    pub identity: Identity,
}

impl Caller {
    /// Refuses (403) unless the caller has at least `level`.
    pub fn require(&self, level: AccessLevel) -> Result<(), ApiError> {
        if self.identity.level.allows(level) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "user {} has {} access; this needs {level}",
                self.identity.user, self.identity.level
            )))
        }
    }
}

impl Caller {
    /// The caller's level on `hub`: the level of their access entry there (the
    /// `Access_Level` of their hub props) when they have one, else their server-wide level;
    /// SysAdmin everywhere for a SysAdmin. Read from the repository on every call.
    pub async fn level_on(&self, hub: &sluice_model::HubName) -> Result<AccessLevel, ApiError> {
        Ok(self
            .service
            .level_on(&self.identity.user, self.identity.level, hub)
            .await?)
    }

    /// Refuses (403) unless the caller has at least `level` on `hub` ([`Caller::level_on`]).
    /// Every handler of a `/hubs/{hub}/…` route checks with this, not with
    /// [`Caller::require`].
    pub async fn require_on(
        &self,
        hub: &sluice_model::HubName,
        level: AccessLevel,
    ) -> Result<(), ApiError> {
        let has = self.level_on(hub).await?;
        if has.allows(level) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "user {} has {has} access on hub {hub}; this needs {level}",
                self.identity.user
            )))
        }
    }

    /// [`Caller::require_on`] for a hub named in a path (an invalid name is a 404).
    pub async fn require_on_name(&self, hub: &str, level: AccessLevel) -> Result<(), ApiError> {
        self.require_on(&crate::hvr::hub_name(hub)?, level).await
    }
}

/// Whether a setup-mode token may call `path` (after the version rewrite): HVR's User Config
/// Interface without hubs, the only operations a hub server without users can serve.
fn setup_may_call(path: &str) -> bool {
    path == "/api/latest/users" || path.starts_with("/api/latest/users/")
}

/// The token of an `Authorization: Bearer …` header (scheme in any case).
pub fn bearer(parts: &Parts) -> Option<&str> {
    bearer_header(&parts.headers)
}

/// The token of an `Authorization: Bearer …` header among `headers`.
pub fn bearer_header(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(|| {
            ApiError::unauthenticated(
                "Authentication required: send 'Authorization: Bearer <access_token>' (log in with POST /auth/v1/password)",
            )
        })?;
        let identity = if setup_may_call(parts.uri.path()) {
            state.service.authenticate_in_setup(token).await?
        } else {
            state.service.authenticate(token).await?
        };
        Ok(Caller {
            service: state.service.as_user(&identity.user),
            identity,
        })
    }
}

/// The client's address, when the server knows it (a socket peer; not behind `oneshot`).
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

/// A JSON body. Empty bodies and `null` count as `{}`; anything else must parse, and errors say
/// where and why. Unknown fields are refused by the target types (`deny_unknown_fields`).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                // Refused while it was read: the limit of the route (2 MiB unless it says so).
                ApiError::new(
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    crate::error::codes::INVALID,
                    "the request body is too large",
                )
            } else {
                ApiError::invalid(format!("cannot read the request body: {e}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a body as [`JsonBody`] does.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::invalid("the request body is not UTF-8"))?;
    let trimmed = text.trim();
    let text = if trimmed.is_empty() || trimmed == "null" {
        "{}"
    } else {
        trimmed
    };
    serde_json::from_str(text).map_err(body_error)
}

/// A request body that serde_json could not read: "malformed JSON" when it is not JSON at all,
/// else "invalid request body" (JSON, but not the shape asked for).
pub fn body_error(e: serde_json::Error) -> ApiError {
    let what = if e.is_syntax() || e.is_eof() {
        "malformed JSON"
    } else {
        "invalid request body"
    };
    ApiError::invalid(format!("{what}: {e}"))
}

/// A query string as `(key, value)` pairs, keeping repeated keys.
pub struct QueryList(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryList {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let pairs = parts
            .uri
            .query()
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(QueryList(pairs))
    }
}

impl QueryList {
    /// Every value of `key` (repeated keys, and comma-separated values).
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key || k.strip_suffix("[]") == Some(key))
            .flat_map(|(_, v)| v.split(',').map(str::trim).map(str::to_owned))
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The last value of `key`.
    pub fn one(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean (`true|false|1|0`); absent → `default`.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.one(key) {
            None => Ok(default),
            Some(v) => parse_bool(v).ok_or_else(|| {
                ApiError::invalid(format!(
                    "query parameter {key}: expected true or false, got {v:?}"
                ))
            }),
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// HVR's booleans: `true`, `false`, `0`, `1`, `"true"`, `"false"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let b = match &v {
            serde_json::Value::Bool(b) => Some(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            serde_json::Value::String(s) => parse_bool(s),
            _ => None,
        };
        b.map(Flag).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a boolean (true, false, 0 or 1), found {v}"
            ))
        })
    }
}

/// Whether the caller is a level that may see everything of a hub.
pub fn read_level() -> AccessLevel {
    AccessLevel::ReadOnly
}

impl utoipa::PartialSchema for Flag {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .enum_values(Some([0, 1])),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["true", "false", "1", "0"])),
            )
            .description(Some("a boolean: true, false, 0, 1, \"true\" or \"false\""))
            .into()
    }
}

impl utoipa::ToSchema for Flag {}
