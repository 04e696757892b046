//! The client's one error type.

/// An error answer of the hub server: its HTTP status and the `F_XXXXXX: message` text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status (400, 401, 403, 404, …).
    pub status: u16,
    /// The 8-character error code (`F_JR171C`) when the body starts with one.
    pub code: Option<String>,
    /// The message after the code, or the whole body when it has no code.
    pub message: String,
}

impl ApiError {
    /// Parses an error body: `F_XXXXXX: message` (HVR's format), else the body as the message.
    pub fn parse(status: u16, body: &str) -> ApiError {
        let body = body.trim();
        let coded = body.len() >= 8
            && body.is_char_boundary(8)
            && body.starts_with("F_")
            && body[2..8].bytes().all(|b| b.is_ascii_alphanumeric());
        let (code, message) = match coded {
            true => {
                let rest = &body[8..];
                let rest = rest.strip_prefix(':').unwrap_or(rest).trim_start();
                (Some(body[..8].to_owned()), rest.to_owned())
            }
            false => (None, body.to_owned()),
        };
        let message = match message.is_empty() {
            true => format!("the server answered {status} without a message"),
            false => message,
        };
        ApiError {
            status,
            code,
            message,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {} (HTTP {})", self.message, self.status),
            None => write!(f, "{} (HTTP {})", self.message, self.status),
        }
    }
}

impl std::error::Error for ApiError {}

/// What went wrong, for callers that branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The server could not be reached (refused, unresolvable, TLS failure, timeout).
    Connect,
    /// No token, a missing or expired one, or a refresh token the server no longer accepts:
    /// log in again.
    Unauthorized,
    /// A bad login, or the user lacks the permission (403).
    Forbidden,
    /// The hub, channel, location, job or event does not exist (404).
    NotFound,
    /// The server refused the request as invalid (400, 409, 422).
    Invalid,
    /// The server failed (5xx) or answered something this client does not understand.
    Server,
    /// A bad base URL or name given to the client.
    Usage,
}

/// Everything a call of [`Client`](crate::Client) can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error status.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The request could not be sent or its answer not read.
    #[error("cannot reach the hub server at {url}")]
    Connect {
        /// The URL the request went to.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not the JSON this client expects.
    #[error("unexpected answer from {url}")]
    Decode {
        /// The URL the request went to.
        url: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The base URL cannot be used.
    #[error("invalid hub server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The call needs a token and the client has none.
    #[error("not logged in")]
    NoToken,
    /// The access token expired and the server refused the refresh token.
    #[error("the session expired")]
    SessionExpired {
        /// The refresh's failure.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// What went wrong, for callers that branch.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Api(api) => match api.status {
                401 => ErrorKind::Unauthorized,
                403 => ErrorKind::Forbidden,
                404 => ErrorKind::NotFound,
                400..=499 => ErrorKind::Invalid,
                _ => ErrorKind::Server,
            },
            Error::Connect { .. } => ErrorKind::Connect,
            Error::Decode { .. } => ErrorKind::Server,
            Error::InvalidUrl { .. } => ErrorKind::Usage,
            Error::NoToken | Error::SessionExpired { .. } => ErrorKind::Unauthorized,
        }
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        self.api().map(|a| a.status)
    }

    /// The `F_XXXXXX` code of an error answer.
    pub fn code(&self) -> Option<&str> {
        self.api().and_then(|a| a.code.as_deref())
    }

    /// The message of an error answer (without the code).
    pub fn message(&self) -> Option<&str> {
        self.api().map(|a| a.message.as_str())
    }

    /// The error answer, when the server gave one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(api) => Some(api),
            _ => None,
        }
    }

    /// Whether logging in again would help: no token, a 401, or a refused refresh token.
    pub fn is_unauthorized(&self) -> bool {
        self.kind() == ErrorKind::Unauthorized
    }

    /// Whether the object does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }
}

/// The result of a client call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coded_bodies_split_into_code_and_message() {
        let e = ApiError::parse(404, "F_JR0404: channel orders does not exist\n");
        assert_eq!(e.status, 404);
        assert_eq!(e.code.as_deref(), Some("F_JR0404"));
        assert_eq!(e.message, "channel orders does not exist");
        assert_eq!(
            e.to_string(),
            "F_JR0404: channel orders does not exist (HTTP 404)"
        );
    }

    #[test]
    fn bodies_without_a_code_are_the_message() {
        let e = ApiError::parse(403, "invalid user name or password");
        assert_eq!(e.code, None);
        assert_eq!(e.message, "invalid user name or password");
        // "F_" followed by something that is not a code is text, not a code.
        let e = ApiError::parse(400, "F_oo bar");
        assert_eq!(e.code, None);
        assert_eq!(e.message, "F_oo bar");
        let e = ApiError::parse(502, "");
        assert_eq!(e.message, "the server answered 502 without a message");
        // Multi-byte text right at the code boundary must not panic.
        let e = ApiError::parse(400, "F_JR010é: x");
        assert_eq!(e.code, None);
    }

    #[test]
    fn kinds_follow_the_status() {
        let kind = |status| Error::Api(ApiError::parse(status, "x")).kind();
        assert_eq!(kind(401), ErrorKind::Unauthorized);
        assert_eq!(kind(403), ErrorKind::Forbidden);
        assert_eq!(kind(404), ErrorKind::NotFound);
        assert_eq!(kind(400), ErrorKind::Invalid);
        assert_eq!(kind(500), ErrorKind::Server);
        assert!(Error::Api(ApiError::parse(401, "F_JW054F: expired")).is_unauthorized());
        assert!(!Error::Api(ApiError::parse(403, "no")).is_unauthorized());
        assert!(Error::NoToken.is_unauthorized());
    }
}
