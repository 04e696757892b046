//! The one place errors become HTTP, one form per face:
//! * the HVR API and the event hub: `text/plain` `F_XXXXXX: message` ([`ApiError`]) with the
//!   statuses of the HVR API (400 for invalid requests and conflicts, 401 without a valid token,
//!   403 for a failed login or missing access, 404 for missing objects; the event hub adds 409
//!   and 503 with `Retry-After`);
//! * the Fivetran face: JSON `{"code": "NotFound_Connector", "message": …}` ([`FivetranError`]);
//! * the dashboard: a page stating the refusal ([`dashboard`]).
//!
//! A body carries the error's own message and, when it wraps a connector error, the connector's
//! message (which names objects, never the driver's text). The rest of the source chain (driver
//! errors, which can name the server's files, hosts and users) goes to the log only.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sluice_connector::ConnectorError;
use sluice_service::{ServiceError, ServiceErrorKind};

pub(crate) mod dashboard;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

/// Codes by kind (an error may carry a more specific one, e.g. `F_JR171C`).
pub mod codes {
    /// The request is invalid.
    pub const INVALID: &str = "F_JA0400";
    /// Authentication required or the token is invalid/expired.
    pub const UNAUTHENTICATED: &str = "F_JW054F";
    /// Access denied or a failed login.
    pub const FORBIDDEN: &str = "F_JA0403";
    /// No such object or route.
    pub const NOT_FOUND: &str = "F_JA0404";
    /// The request conflicts with the current state.
    pub const CONFLICT: &str = "F_JA0409";
    /// Too many attempts.
    pub const RATE_LIMITED: &str = "F_JA0429";
    /// The server cannot take the request now (retry after `Retry-After`).
    pub const UNAVAILABLE: &str = "F_JA0503";
    /// The hub's own failure.
    pub const INTERNAL: &str = "F_JA0500";
    /// A channel that already exists.
    pub const CHANNEL_EXISTS: &str = "F_JR171C";
    /// A location test naming an unknown channel.
    pub const UNKNOWN_CHANNEL: &str = "F_JR071E";
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with the generic code.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::INVALID, message)
    }

    /// 404 with the generic code.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, message)
    }

    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, codes::UNAUTHENTICATED, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, message)
    }

    /// Adds a `Retry-After` header (seconds).
    pub fn with_retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after = seconds;
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message (without the code).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let (status, code) = match e.kind() {
            ServiceErrorKind::Invalid => (StatusCode::BAD_REQUEST, codes::INVALID),
            ServiceErrorKind::NotFound => (StatusCode::NOT_FOUND, codes::NOT_FOUND),
            ServiceErrorKind::Conflict => (StatusCode::BAD_REQUEST, codes::CONFLICT),
            ServiceErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, codes::UNAUTHENTICATED),
            ServiceErrorKind::Forbidden => (StatusCode::FORBIDDEN, codes::FORBIDDEN),
            ServiceErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, codes::RATE_LIMITED),
            ServiceErrorKind::Failed => (StatusCode::BAD_REQUEST, codes::INVALID),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL),
        };
        let retry_after = (e.kind() == ServiceErrorKind::RateLimited).then_some(60);
        let mut message = client_message(&e, status == StatusCode::INTERNAL_SERVER_ERROR);
        if !e.diagnostics().is_empty() && e.diagnostics().len() > 1 {
            let all: Vec<String> = e.diagnostics().iter().map(|d| d.to_string()).collect();
            message = format!("{message}\n{}", all.join("\n"));
        }
        ApiError {
            status,
            code: e.code().unwrap_or(code),
            message,
            retry_after,
        }
    }
}

impl From<sluice_events::Error> for ApiError {
    fn from(e: sluice_events::Error) -> Self {
        use sluice_events::ErrorKind;
        let (status, code) = match e.kind() {
            ErrorKind::Invalid => (StatusCode::BAD_REQUEST, codes::INVALID),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, codes::NOT_FOUND),
            ErrorKind::Conflict => (StatusCode::CONFLICT, codes::CONFLICT),
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, codes::FORBIDDEN),
            ErrorKind::Busy | ErrorKind::Closed => {
                (StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE)
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %chain(&e), "event hub failure");
        }
        let retry = match e.kind() {
            ErrorKind::Busy => Some(e.retry_after().map_or(1, |d| d.as_secs().max(1))),
            ErrorKind::Closed => Some(5),
            _ => None,
        };
        ApiError::new(status, code, e.to_string()).with_retry_after(retry)
    }
}

/// What a client is told of `error`: its message, followed by the message of the connector
/// error it wraps. The whole chain goes to the log (as an error when `internal`).
fn client_message(error: &ServiceError, internal: bool) -> String {
    let mut text = error.to_string();
    let source = std::error::Error::source(error);
    if let Some(connector) = source.and_then(|s| s.downcast_ref::<ConnectorError>()) {
        let message = connector.message();
        if !text.contains(message) {
            text.push_str(": ");
            text.push_str(message);
        }
    }
    if internal {
        tracing::error!(error = %chain(error), "internal error");
    } else if source.is_some() {
        tracing::warn!(error = %chain(error), "request failed");
    }
    text
}

/// The error with its causes, as one line: for the log, never for a body.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = format!("{}: {}", self.code, self.message.replace('\n', "\n  "));
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Results of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// An error answer of the Fivetran-compatible `/v1` face: `application/json`
/// `{"code": …, "message": …}` with Fivetran's statuses (400 bad input, 401 bad or missing API
/// key, 403 level too low, 404 with `NotFound_<Resource>`, 405, 409 conflict).
#[derive(Debug)]
pub struct FivetranError {
    status: StatusCode,
    code: String,
    message: String,
}

impl FivetranError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        FivetranError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// 400 `InvalidInput`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidInput", message)
    }

    /// 404 `NotFound_<resource>`.
    pub fn not_found(resource: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("NotFound_{resource}"),
            message,
        )
    }

    /// 401 `AuthFailed`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AuthFailed", message)
    }

    /// 403 `Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// A service error about a `resource` (`Connector`, `Group`, …: names the 404 code).
    pub fn from_service(e: ServiceError, resource: &str) -> Self {
        let (status, code) = match e.kind() {
            ServiceErrorKind::Invalid => (StatusCode::BAD_REQUEST, "InvalidInput".to_owned()),
            ServiceErrorKind::NotFound => (StatusCode::NOT_FOUND, format!("NotFound_{resource}")),
            ServiceErrorKind::Conflict => (StatusCode::CONFLICT, "Conflict".to_owned()),
            ServiceErrorKind::Failed => (StatusCode::BAD_REQUEST, "Failed".to_owned()),
            ServiceErrorKind::Unauthenticated => {
                (StatusCode::UNAUTHORIZED, "AuthFailed".to_owned())
            }
            ServiceErrorKind::Forbidden => (StatusCode::FORBIDDEN, "Forbidden".to_owned()),
            ServiceErrorKind::RateLimited => {
                (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests".to_owned())
            }
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError".to_owned(),
            ),
        };
        let message = client_message(&e, status == StatusCode::INTERNAL_SERVER_ERROR);
        FivetranError {
            status,
            code,
            message,
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<ApiError> for FivetranError {
    /// The Fivetran form of an error raised by the shared extractors (bad JSON and the like).
    fn from(e: ApiError) -> Self {
        let code = match e.status {
            StatusCode::BAD_REQUEST => "InvalidInput".to_owned(),
            StatusCode::UNAUTHORIZED => "AuthFailed".to_owned(),
            StatusCode::FORBIDDEN => "Forbidden".to_owned(),
            StatusCode::NOT_FOUND => "NotFound".to_owned(),
            other => format!("Http{}", other.as_u16()),
        };
        FivetranError {
            status: e.status,
            code,
            message: e.message,
        }
    }
}

impl IntoResponse for FivetranError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"code": self.code, "message": self.message});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sluice\""),
            );
        }
        response
    }
}
