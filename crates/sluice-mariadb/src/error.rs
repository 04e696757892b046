//! Mapping MariaDB and driver errors onto [`ErrorKind`]s.

use std::fmt;

use sluice_connector::{ConnectorError, ErrorKind};

/// MariaDB server error codes sluice branches on.
pub(crate) mod code {
    pub const ACCESS_DENIED: u16 = 1045;
    pub const ACCESS_DENIED_NO_PASSWORD: u16 = 1698;
    pub const SPECIFIC_ACCESS_DENIED: u16 = 1227;
    pub const DB_ACCESS_DENIED: u16 = 1044;
    pub const UNKNOWN_DATABASE: u16 = 1049;
    pub const NO_SUCH_TABLE: u16 = 1146;
    pub const TABLE_EXISTS: u16 = 1050;
    pub const BAD_FIELD: u16 = 1054;
    pub const PARSE_ERROR: u16 = 1064;
    pub const DUPLICATE_KEY: u16 = 1062;
    pub const LOCAL_INFILE_DISABLED: u16 = 1148;
    pub const LOCAL_INFILE_DISABLED_MYSQL: u16 = 3948;
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
    pub const DEADLOCK: u16 = 1213;
    pub const QUERY_INTERRUPTED: u16 = 1317;
    pub const CONNECTION_KILLED: u16 = 1927;
    pub const TABLE_ACCESS_DENIED: u16 = 1142;
    pub const COLUMN_ACCESS_DENIED: u16 = 1143;
}

/// Classifies a driver error and keeps it as the source; `what` says what was being done.
pub(crate) fn mysql_error(error: mysql_async::Error, what: impl fmt::Display) -> ConnectorError {
    let (kind, reason) = match &error {
        mysql_async::Error::Server(server) => match server.code {
            code::ACCESS_DENIED | code::ACCESS_DENIED_NO_PASSWORD | code::DB_ACCESS_DENIED => {
                (ErrorKind::Auth, "access denied".to_owned())
            }
            code::TABLE_ACCESS_DENIED
            | code::COLUMN_ACCESS_DENIED
            | code::SPECIFIC_ACCESS_DENIED => (ErrorKind::Auth, "permission denied".to_owned()),
            code::UNKNOWN_DATABASE => (ErrorKind::NotFound, "the database does not exist".into()),
            code::NO_SUCH_TABLE => (ErrorKind::NotFound, "the table does not exist".into()),
            code::TABLE_EXISTS => (ErrorKind::Schema, "the table already exists".into()),
            code::BAD_FIELD => (ErrorKind::Schema, "a column does not exist".into()),
            code::PARSE_ERROR => (
                ErrorKind::Schema,
                "MariaDB rejected the statement (check the filter condition)".into(),
            ),
            code::DUPLICATE_KEY => (ErrorKind::Data, "a key occurs twice".into()),
            code::LOCAL_INFILE_DISABLED | code::LOCAL_INFILE_DISABLED_MYSQL => (
                ErrorKind::Unsupported,
                "the server does not allow LOAD DATA LOCAL INFILE".into(),
            ),
            code::LOCK_WAIT_TIMEOUT => (ErrorKind::Timeout, "a lock wait timed out".into()),
            code::DEADLOCK => (
                ErrorKind::Timeout,
                "the transaction was chosen as a deadlock victim".into(),
            ),
            code::QUERY_INTERRUPTED => (ErrorKind::Cancelled, "the query was interrupted".into()),
            code::CONNECTION_KILLED => (ErrorKind::Connection, "the connection was killed".into()),
            // Data conversion, range and constraint errors.
            1048 | 1101 | 1136 | 1264 | 1265 | 1292 | 1366 | 1367 | 1406 | 1411 | 1441 | 1690
            | 3819 | 4025 | 4078 => (
                ErrorKind::Data,
                format!("MariaDB refused a value (error {})", server.code),
            ),
            c => (ErrorKind::Internal, format!("MariaDB error {c}")),
        },
        mysql_async::Error::Io(_) => (ErrorKind::Connection, "the connection failed".into()),
        mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed) => {
            (ErrorKind::Connection, "the connection was closed".into())
        }
        mysql_async::Error::Driver(_) => (ErrorKind::Internal, "MariaDB driver error".into()),
        mysql_async::Error::Url(_) => (ErrorKind::Schema, "bad connection settings".into()),
        mysql_async::Error::Other(_) => (ErrorKind::Internal, "MariaDB driver error".into()),
    };
    ConnectorError::new(kind, format!("{what}: {reason}")).with_source(error)
}
