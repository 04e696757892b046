//! The one error type of every connector, classified so that callers branch on a kind rather than
//! on message text.

use std::error::Error as StdError;
use std::fmt;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The database could not be reached or the connection broke.
    Connection,
    /// The credentials were refused.
    Auth,
    /// A table, column or database does not exist.
    NotFound,
    /// Tables or columns do not match what the operation needs.
    Schema,
    /// A value cannot be read or stored as it is.
    Data,
    /// The connector cannot do this.
    Unsupported,
    /// The database did not answer in time.
    Timeout,
    /// The operation was cancelled.
    Cancelled,
    /// A fault inside sluice or the driver.
    Internal,
}

impl ErrorKind {
    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Connection | ErrorKind::Timeout)
    }

    /// A short lowercase word for the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connection => "connection",
            ErrorKind::Auth => "auth",
            ErrorKind::NotFound => "not found",
            ErrorKind::Schema => "schema",
            ErrorKind::Data => "data",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error from a connector: a kind, a message naming the objects involved (never a secret, never a
/// row value other than key values), and the driver error as its source.
#[derive(Debug)]
pub struct ConnectorError {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl ConnectorError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConnectorError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// The message, without the source chain.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with context, e.g. the table being worked on.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// A `NotFound` error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// A `Schema` error.
    pub fn schema(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Schema, message)
    }

    /// A `Data` error.
    pub fn data(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Data, message)
    }

    /// A `Cancelled` error.
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "cancelled")
    }

    /// An `Unsupported` error.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// An `Internal` error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The same error with `redact` applied to its message and to every error of its source
    /// chain: a source whose text `redact` changes is replaced by that redacted text (keeping the
    /// chain's wording, losing only its type). Used to keep resolved secrets out of messages.
    pub fn redacted(mut self, redact: &dyn Fn(&str) -> String) -> Self {
        self.message = redact(&self.message);
        if let Some(source) = self.source.take() {
            let mut chain = Vec::new();
            let mut changed = false;
            let mut next: Option<&(dyn StdError + 'static)> = Some(source.as_ref());
            while let Some(e) = next {
                let text = e.to_string();
                let clean = redact(&text);
                changed |= clean != text;
                chain.push(clean);
                next = e.source();
            }
            self.source = if changed {
                Some(Box::new(TextError::chain(chain)))
            } else {
                Some(source)
            };
        }
        self
    }
}

/// An error that is only text (what remains of a source error after redaction).
#[derive(Debug)]
struct TextError {
    message: String,
    source: Option<Box<TextError>>,
}

impl TextError {
    fn chain(mut messages: Vec<String>) -> Self {
        let last = TextError {
            message: messages.pop().unwrap_or_default(),
            source: None,
        };
        messages
            .into_iter()
            .rev()
            .fold(last, |inner, message| TextError {
                message,
                source: Some(Box::new(inner)),
            })
    }
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for TextError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// A row filter that is not one safe expression in the connector's dialect: the condition is
/// refused before any statement runs.
impl From<sluice_model::condition::ConditionError> for ConnectorError {
    fn from(error: sluice_model::condition::ConditionError) -> Self {
        ConnectorError::new(ErrorKind::Unsupported, error.to_string())
    }
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for ConnectorError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Results of connector calls.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;
