//! Mapping PostgreSQL and driver errors onto [`ErrorKind`]s.

use std::fmt;

use sluice_connector::{ConnectorError, ErrorKind};
use tokio_postgres::error::SqlState;

/// The kind of a server error, by its SQLSTATE class and code.
pub(crate) fn kind_of_state(code: &SqlState) -> ErrorKind {
    let code = code.code();
    match code {
        "42501" => ErrorKind::Auth,
        "42P01" | "3F000" | "3D000" | "42883" => ErrorKind::NotFound,
        "57014" => ErrorKind::Cancelled,
        "57P01" | "57P02" | "57P03" => ErrorKind::Connection,
        "40001" | "40P01" | "55P03" => ErrorKind::Timeout,
        "2BP01" => ErrorKind::Schema,
        _ => match &code[..2] {
            "08" => ErrorKind::Connection,
            "28" => ErrorKind::Auth,
            "22" | "23" => ErrorKind::Data,
            "42" => ErrorKind::Schema,
            _ => ErrorKind::Internal,
        },
    }
}

/// Classifies a driver error and keeps it as the source; `what` says what was being done. The
/// message carries the server's own text (it names objects and at most key values, never secrets).
pub(crate) fn pg_error(error: tokio_postgres::Error, what: impl fmt::Display) -> ConnectorError {
    let (kind, reason) = match error.as_db_error() {
        Some(db) => {
            let mut reason = db.message().to_owned();
            if let Some(detail) = db.detail() {
                reason.push_str(&format!(" ({detail})"));
            }
            if let Some(place) = db.where_() {
                reason.push_str(&format!(" [{place}]"));
            }
            (kind_of_state(db.code()), reason)
        }
        None if error.is_closed() => (
            ErrorKind::Connection,
            "the connection to the server was closed".to_owned(),
        ),
        None => (
            ErrorKind::Connection,
            "communication with the server failed".to_owned(),
        ),
    };
    ConnectorError::new(kind, format!("{what}: {reason}")).with_source(error)
}

/// A connection that could not be made: the server refused the login (`Auth`), the database does
/// not exist (`NotFound`), or it could not be reached (`Connection`).
pub(crate) fn connect_error(error: tokio_postgres::Error, target: &str) -> ConnectorError {
    if let Some(db) = error.as_db_error() {
        // At connection start, 55000 is "database … is not currently accepting connections"
        // (ALLOW_CONNECTIONS false): the database refuses for now, as a server that is down.
        if db.code() == &SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE {
            let reason = db.message().to_owned();
            return ConnectorError::new(
                ErrorKind::Connection,
                format!("connect to {target}: {reason}"),
            )
            .with_source(error);
        }
        return pg_error(error, format_args!("connect to {target}"));
    }
    // The driver reports a missing or refused password before any server error exists.
    let auth = error.to_string().starts_with("authentication error");
    let (kind, reason) = if auth {
        (
            ErrorKind::Auth,
            "the server asked for a password the location does not give",
        )
    } else {
        (ErrorKind::Connection, "the server cannot be reached")
    };
    ConnectorError::new(kind, format!("connect to {target}: {reason}")).with_source(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_kinds() {
        for (code, kind) in [
            ("28P01", ErrorKind::Auth),
            ("3D000", ErrorKind::NotFound),
            ("42P01", ErrorKind::NotFound),
            ("42703", ErrorKind::Schema),
            ("22003", ErrorKind::Data),
            ("23505", ErrorKind::Data),
            ("57P01", ErrorKind::Connection),
            ("08006", ErrorKind::Connection),
            ("XX000", ErrorKind::Internal),
        ] {
            assert_eq!(kind_of_state(&SqlState::from_code(code)), kind, "{code}");
        }
    }
}
