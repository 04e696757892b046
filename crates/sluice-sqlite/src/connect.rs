//! Opening connections. Every operation opens its own connection on its own thread: SQLite
//! connections are cheap, and a connection never crosses threads.

use rusqlite::{Connection, OpenFlags};
use sluice_connector::{ConnectorError, Result};

use crate::config::SqliteConfig;
use crate::error::sqlite_error;

/// Opens the database read-only; a missing file is a `NotFound` error.
pub(crate) fn open_read(config: &SqliteConfig) -> Result<Connection> {
    if !config.exists() {
        return Err(ConnectorError::not_found(format!(
            "database file {} does not exist",
            config.path.display()
        )));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(&config.path, flags)
        .map_err(|e| sqlite_error(e, format_args!("open {}", config.path.display())))?;
    conn.busy_timeout(config.busy_timeout)
        .map_err(|e| sqlite_error(e, "set busy timeout"))?;
    Ok(conn)
}

/// Opens the database for writing, creating the file when it does not exist.
///
/// `legacy_alter_table` makes `ALTER TABLE … RENAME` leave views and triggers that mention the
/// table alone, which the staging swap needs (it drops the target before renaming the staging table
/// into its place, and a view on the target would otherwise fail the rename).
pub(crate) fn open_write(config: &SqliteConfig) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(&config.path, flags).map_err(|e| {
        sqlite_error(
            e,
            format_args!("open {} for writing", config.path.display()),
        )
    })?;
    conn.busy_timeout(config.busy_timeout)
        .map_err(|e| sqlite_error(e, "set busy timeout"))?;
    conn.execute_batch("PRAGMA legacy_alter_table = ON; PRAGMA cache_size = -32768;")
        .map_err(|e| sqlite_error(e, "configure the connection"))?;
    Ok(conn)
}
