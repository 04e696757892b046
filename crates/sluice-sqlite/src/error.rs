//! Mapping SQLite errors onto [`ErrorKind`]s.

use std::fmt;

use rusqlite::ErrorCode;
use sluice_connector::{ConnectorError, ErrorKind};

/// Classifies a rusqlite error and keeps it as the source; `what` says what was being done.
pub(crate) fn sqlite_error(error: rusqlite::Error, what: impl fmt::Display) -> ConnectorError {
    let (kind, reason) = match &error {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::CannotOpen | ErrorCode::NotFound => {
                (ErrorKind::NotFound, "cannot open the database file")
            }
            ErrorCode::ReadOnly => (ErrorKind::Auth, "the database is read-only"),
            ErrorCode::PermissionDenied | ErrorCode::AuthorizationForStatementDenied => {
                (ErrorKind::Auth, "permission denied")
            }
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => (
                ErrorKind::Timeout,
                "the database is locked by another connection",
            ),
            ErrorCode::ConstraintViolation => (ErrorKind::Data, "a constraint was violated"),
            ErrorCode::TypeMismatch | ErrorCode::TooBig => {
                (ErrorKind::Data, "a value does not fit")
            }
            ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => (
                ErrorKind::Connection,
                "the file is not a usable SQLite database",
            ),
            ErrorCode::DiskFull | ErrorCode::SystemIoFailure => {
                (ErrorKind::Connection, "disk I/O failed")
            }
            ErrorCode::OperationInterrupted => (ErrorKind::Cancelled, "interrupted"),
            _ => (ErrorKind::Internal, "SQLite reported an error"),
        },
        rusqlite::Error::SqlInputError { .. } => {
            (ErrorKind::Schema, "SQLite rejected the statement")
        }
        _ => (ErrorKind::Internal, "SQLite driver error"),
    };
    ConnectorError::new(kind, format!("{what}: {reason}")).with_source(error)
}
