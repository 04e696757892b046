//! The SQLite foundation: opening a store's connection to the file with its pragmas, and the
//! migration runner every store in the file uses.
//!
//! Each store opens its own connections (the repository one, the event store a writer, readers
//! and a checkpointer) with the pragmas it needs; a busy timeout of 30 s makes processes sharing
//! the file wait for its lock instead of failing half-way. Migrations run one per
//! `BEGIN IMMEDIATE` transaction, each checking again under the lock whether another process
//! applied it meanwhile.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior, params};

use crate::{Result, StoreError, StoreErrorKind};

/// How long a connection waits for the file lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How a store's migration table records when a migration was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliedAt {
    /// `TEXT`, `YYYY-MM-DDTHH:MM:SS.ffffffZ` (the repository's).
    Text,
    /// `INTEGER` microseconds since the epoch (the event store's).
    Micros,
}

impl AppliedAt {
    fn column_type(self) -> &'static str {
        match self {
            AppliedAt::Text => "TEXT",
            AppliedAt::Micros => "INTEGER",
        }
    }

    fn value(self, t: DateTime<Utc>) -> Value {
        match self {
            AppliedAt::Text => Value::Text(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
            AppliedAt::Micros => Value::Integer(t.timestamp_micros()),
        }
    }
}

/// A store's versioned migrations on SQLite.
#[derive(Debug, Clone, Copy)]
pub struct SqliteMigrations {
    /// The store, in messages (`repository`, `event store`).
    pub what: &'static str,
    /// The table recording applied versions (the store's own).
    pub table: &'static str,
    /// How that table records the time.
    pub applied_at: AppliedAt,
    /// `(version, name, SQL)`, in order.
    pub list: &'static [(u32, &'static str, &'static str)],
}

/// Opens (creating the file and its directory when needed) a read-write connection to the
/// SQLite file at `path`, with the busy timeout and then `pragmas` (a batch of `PRAGMA`
/// statements). Blocks. `what` names the store in messages.
pub fn open(path: &Path, what: &str, pragmas: &str) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::storage(
                format!("cannot create the {what} directory {}", dir.display()),
                e,
            )
        })?;
    }
    let storage = |doing: &str| {
        let message = format!("{what}: {doing}");
        move |e: rusqlite::Error| StoreError::storage(message, e)
    };
    let conn = Connection::open(path).map_err(storage("open the database file"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(storage("set the busy timeout"))?;
    conn.execute_batch(pragmas)
        .map_err(storage("configure the connection"))?;
    Ok(conn)
}

/// Applies the migrations of `set` not applied yet. `Version` when the file holds a version
/// newer than the set knows. Blocks.
pub fn migrate(conn: &mut Connection, set: &SqliteMigrations) -> Result<()> {
    let what = set.what;
    let table = set.table;
    let storage = |doing: &str| {
        let message = format!("{what}: {doing}");
        move |e: rusqlite::Error| StoreError::storage(message, e)
    };
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (version INTEGER PRIMARY KEY, \
         name TEXT NOT NULL, applied_at {} NOT NULL)",
        set.applied_at.column_type()
    ))
    .map_err(storage("create the migration table"))?;
    let current: u32 = conn
        .query_row(
            &format!("SELECT coalesce(max(version), 0) FROM {table}"),
            [],
            |r| r.get(0),
        )
        .map_err(storage("read the schema version"))?;
    let known = set.list.last().map_or(0, |(v, _, _)| *v);
    if current > known {
        return Err(StoreError::new(
            StoreErrorKind::Version,
            format!(
                "the {what} has schema version {current}, newer than this sluice knows ({known}); upgrade sluice"
            ),
        ));
    }
    for (version, label, sql) in set.list.iter().filter(|(v, _, _)| *v > current) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage("begin a migration"))?;
        // Another process may have migrated while this one waited for the lock.
        let done: bool = tx
            .query_row(
                &format!("SELECT count(*) > 0 FROM {table} WHERE version = ?1"),
                [version],
                |r| r.get(0),
            )
            .map_err(storage("read the schema version"))?;
        if !done {
            tx.execute_batch(sql)
                .map_err(storage(&format!("apply migration {version} ({label})")))?;
            tx.execute(
                &format!("INSERT INTO {table} (version, name, applied_at) VALUES (?1, ?2, ?3)"),
                params![version, label, set.applied_at.value(Utc::now())],
            )
            .map_err(storage("record a migration"))?;
        }
        tx.commit().map_err(storage("commit a migration"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &[(u32, &str, &str)] = &[
        (1, "one", "CREATE TABLE a (x INTEGER);"),
        (2, "two", "CREATE TABLE b (y INTEGER);"),
    ];

    #[test]
    fn migrations_run_once_and_newer_versions_are_refused() {
        let dir = tempfile_dir();
        let path = dir.join("x.db");
        let set = SqliteMigrations {
            what: "repository",
            table: "schema_migration",
            applied_at: AppliedAt::Text,
            list: LIST,
        };
        let mut conn = open(&path, "repository", "PRAGMA journal_mode = WAL;").expect("open");
        migrate(&mut conn, &set).expect("migrate");
        migrate(&mut conn, &set).expect("migrate twice");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM schema_migration", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 2);
        let older = SqliteMigrations {
            list: &LIST[..1],
            ..set
        };
        let error = migrate(&mut conn, &older).expect_err("newer");
        assert_eq!(error.kind(), StoreErrorKind::Version);
        assert!(
            error
                .to_string()
                .starts_with("the repository has schema version 2")
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sluice-store-test-{}-{}",
            std::process::id(),
            Utc::now().timestamp_micros()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
