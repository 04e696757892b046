//! The event hub's error.

use std::time::Duration;

/// What kind of failure; decides the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input (a name, a pattern, a payload against its schema); nothing was changed.
    Invalid,
    /// No such topic.
    NotFound,
    /// The request conflicts with the current state (topic exists, topic holds events).
    Conflict,
    /// The caller may not do this on this topic.
    Forbidden,
    /// The hub is busy (its write buffer is full); retry after [`Error::retry_after`].
    Busy,
    /// The store or the broker failed.
    Storage,
    /// The hub is shutting down.
    Closed,
}

/// An error of the event hub.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    retry_after: Option<Duration>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// Bad input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// A missing topic.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// A conflict.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// A refusal.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// The write buffer is full.
    pub fn busy(message: impl Into<String>, retry_after: Duration) -> Self {
        let mut e = Self::new(ErrorKind::Busy, message);
        e.retry_after = Some(retry_after);
        e
    }

    /// A store failure with its cause.
    pub fn storage(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        let mut e = Self::new(ErrorKind::Storage, message);
        e.source = Some(Box::new(source));
        e
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// How long to wait before retrying (for [`ErrorKind::Busy`]).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// Results of the event hub.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sluice_store::StoreError> for Error {
    /// A failure of the storage foundation: always [`ErrorKind::Storage`] (a database migrated
    /// by a newer sluice included).
    fn from(error: sluice_store::StoreError) -> Self {
        let (_, message, source) = error.into_parts();
        Error {
            kind: ErrorKind::Storage,
            message,
            retry_after: None,
            source,
        }
    }
}
