//! Change capture by triggers: SQLite has no log a reader could follow, so capture makes one
//! inside the source file.
//!
//! What `create` makes for a capture called `name`, in one write transaction:
//! * `sluice_changes_<name>`: the change table, `seq INTEGER PRIMARY KEY AUTOINCREMENT`, the
//!   table's name, the operation (`I`, `U`, `D`), the time in Unix milliseconds and the old and
//!   new row images. An image is the row's values as SQLite's `quote()` writes them, joined by
//!   commas: integers, reals (printed so they read back bit-exact), text, `X'…'` blobs and `NULL`
//!   come back exactly as stored.
//! * per table, `AFTER INSERT`, `AFTER UPDATE` and `AFTER DELETE` triggers writing one change row
//!   each, naming the table's columns as they are at that time;
//! * `sluice_commits_<name>`: the ends of the transactions the reader has sent;
//! * `sluice_capture_<name>`: the acknowledged sequence number (where a stream starts) and, per
//!   table, how many columns its triggers write.
//!
//! Transactions: a trigger cannot see where a transaction ends. SQLite has one writer at a time,
//! so a transaction's change rows have consecutive sequence numbers, and a reader's transaction
//! sees only whole committed transactions. Each poll takes every change committed so far (up to
//! `max(seq)`) as one transaction: a union of whole source transactions, so a target never holds
//! part of one. The poll records the end it chose in `sluice_commits_<name>` before sending
//! anything of it, so after a restart the same changes are sent as the same transaction, and a
//! target's checkpoint (which may cover part of it) skips exactly what it holds.
//!
//! Schema changes: an added column makes the reader announce the table's new columns and
//! create its triggers again. Change rows written with fewer values than the table has columns
//! (before the triggers were made again) get the missing values from the row as the poll's read
//! transaction sees it, which is at least as new as the change: the target reaches the source's
//! state at the end of the transaction, as coalescing makes it anyway.
//!
//! The file must be in WAL mode (readers and a writer at once, and a held snapshot for the
//! initial load); `create` switches it on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::{Value as Raw, ValueRef};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use sluice_connector::{
    CaptureLag, CaptureRequest, CaptureStart, ChangeStream, ConnectorError, Result, SharedSnapshot,
};
use sluice_model::{
    CaptureMessage, ChangeOp, ColumnDef, DataType, Position, RowChange, TableRef, TransactionId,
    Value,
};
use tokio::sync::mpsc;

use crate::config::SqliteConfig;
use crate::connect::{open_read, open_write};
use crate::error::sqlite_error;
use crate::introspect::{create_sql, table_schema};
use crate::types::{decode, decode_untyped, quote_ident, quote_literal, quote_table};

/// Most changes in one [`CaptureMessage::Changes`] part.
const PART_CHANGES: usize = 5_000;
/// After this long with nothing sent, [`CaptureMessage::Idle`] is sent.
const IDLE_INTERVAL: Duration = Duration::from_secs(2);
/// How often acknowledged changes are trimmed.
const TRIM_INTERVAL: Duration = Duration::from_secs(1);
/// How often a running stream marks itself alive in the file (for `capture_lag`).
const ALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// A stream that has not marked itself alive for this long counts as not connected.
const ALIVE_BOUND_MS: i64 = 15_000;
/// The shortest and longest sleep between polls that found nothing.
const POLL_MIN: Duration = Duration::from_millis(10);
const POLL_MAX: Duration = Duration::from_millis(50);
/// Messages in flight between the polling thread and the consumer.
const CHANNEL_MESSAGES: usize = 4;

/// Unix milliseconds now, as a trigger computes it.
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

/// The names of what a capture makes.
struct Names {
    changes: String,
    commits: String,
    state: String,
    /// The prefix of its triggers' names.
    trigger: String,
}

/// Refuses a capture name that is not lowercase letters, digits and `_` of at most 63 bytes.
fn names(name: &str) -> Result<Names> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(ConnectorError::schema(format!(
            "capture name {name:?} is not 1 to 63 lowercase letters, digits and underscores"
        )));
    }
    Ok(Names {
        changes: format!("sluice_changes_{name}"),
        commits: format!("sluice_commits_{name}"),
        state: format!("sluice_capture_{name}"),
        trigger: format!("sluice_{name}"),
    })
}

/// Whether `table` is one of the tables capture makes (never captured itself).
fn is_capture_table(table: &str) -> bool {
    let lower = table.to_ascii_lowercase();
    ["sluice_changes_", "sluice_commits_", "sluice_capture_"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// The state row holding how many columns `table`'s triggers write.
fn columns_item(table: &str) -> String {
    format!("columns:{table}")
}

/// Everything that keeps `request` from being captured, as sentences.
fn problems(config: &SqliteConfig, request: &CaptureRequest) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    if let Err(e) = names(&request.name) {
        problems.push(e.message().to_owned());
    }
    if request.tables.is_empty() {
        problems.push("the capture has no tables".to_owned());
    }
    if !config.exists() {
        problems.push(format!(
            "database file {} does not exist",
            config.path.display()
        ));
        return Ok(problems);
    }
    if std::fs::metadata(&config.path).is_ok_and(|m| m.permissions().readonly()) {
        problems.push(format!(
            "database file {} is read-only; capture writes its change table into it",
            config.path.display()
        ));
    }
    let conn = open_read(config)?;
    for t in &request.tables {
        let table = &t.table;
        if table
            .schema
            .as_ref()
            .is_some_and(|s| !s.as_str().eq_ignore_ascii_case("main"))
        {
            problems.push(format!(
                "table {table} is in an attached database; capture covers tables of the main database only"
            ));
            continue;
        }
        if is_capture_table(table.name.as_str()) {
            problems.push(format!(
                "table {table} is a table sluice capture makes; it cannot be captured"
            ));
            continue;
        }
        let Some(sql) = create_sql(&conn, table)? else {
            problems.push(format!("table {table} does not exist"));
            continue;
        };
        if sql
            .trim_start()
            .get(..14)
            .is_some_and(|s| s.eq_ignore_ascii_case("CREATE VIRTUAL"))
        {
            problems.push(format!(
                "table {table} is a virtual table, which cannot have triggers"
            ));
            continue;
        }
        let Some(schema) = table_schema(&conn, table)? else {
            problems.push(format!("table {table} does not exist"));
            continue;
        };
        if schema.primary_key.is_empty() {
            problems.push(format!(
                "table {table} has no primary key, so its updates and deletes could not be matched \
                 at a target (its rowid is no column a target holds): give it a PRIMARY KEY"
            ));
        }
    }
    Ok(problems)
}

/// Checks that `request` can be captured; changes nothing.
pub(crate) fn check(config: &SqliteConfig, request: &CaptureRequest) -> Result<()> {
    let problems = problems(config, request)?;
    if problems.is_empty() {
        return Ok(());
    }
    Err(ConnectorError::schema(format!(
        "capture {} from {} cannot work: {}",
        request.name,
        config.path.display(),
        problems.join("; ")
    )))
}

/// The image of a row in a trigger: `quote(X."a") || ',' || quote(X."b")`.
fn image_sql(row: &str, columns: &[ColumnDef]) -> String {
    let parts: Vec<String> = columns
        .iter()
        .map(|c| format!("quote({row}.{})", quote_ident(c.name.as_str())))
        .collect();
    parts.join(" || ',' || ")
}

/// Creates (again) the three triggers of `table` writing its current columns, and records their
/// column count; inside the caller's write transaction.
fn create_triggers(conn: &Connection, names: &Names, table: &TableRef) -> Result<usize> {
    let schema = table_schema(conn, table)?
        .ok_or_else(|| ConnectorError::not_found(format!("table {table} does not exist")))?;
    drop_triggers_of(conn, names, table.name.as_str())?;
    let target = quote_ident(&names.changes);
    let name = quote_literal(table.name.as_str());
    let new = image_sql("NEW", &schema.columns);
    let old = image_sql("OLD", &schema.columns);
    for (op, event, old_image, new_image) in [
        ("i", "INSERT", "NULL", new.as_str()),
        ("u", "UPDATE", old.as_str(), new.as_str()),
        ("d", "DELETE", old.as_str(), "NULL"),
    ] {
        let sql = format!(
            "CREATE TRIGGER {} AFTER {event} ON {} BEGIN \
             INSERT INTO {target} (tbl, op, at, old, new) VALUES ({name}, '{}', {NOW_MS}, {old_image}, {new_image}); \
             END",
            quote_ident(&trigger_name(names, op, table.name.as_str())),
            quote_table(table),
            op.to_ascii_uppercase(),
        );
        conn.execute_batch(&sql)
            .map_err(|e| sqlite_error(e, format_args!("create the capture triggers of {table}")))?;
    }
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO {} (item, value) VALUES (?1, ?2)",
            quote_ident(&names.state)
        ),
        rusqlite::params![
            columns_item(table.name.as_str()),
            schema.columns.len() as i64
        ],
    )
    .map_err(|e| sqlite_error(e, "record the capture's tables"))?;
    Ok(schema.columns.len())
}

fn trigger_name(names: &Names, op: &str, table: &str) -> String {
    format!("{}_{op}_{table}", names.trigger)
}

fn drop_triggers_of(conn: &Connection, names: &Names, table: &str) -> Result<()> {
    for op in ["i", "u", "d"] {
        conn.execute_batch(&format!(
            "DROP TRIGGER IF EXISTS {}",
            quote_ident(&trigger_name(names, op, table))
        ))
        .map_err(|e| sqlite_error(e, format_args!("drop the capture triggers of {table}")))?;
    }
    Ok(())
}

/// Drops every trigger writing into the change table (found by its quoted name in their SQL), and
/// the capture's tables.
fn drop_in(conn: &Connection, names: &Names) -> Result<()> {
    let triggers: Vec<String> = {
        let mut stmt = conn
            .prepare(
                "SELECT name FROM main.sqlite_master WHERE type = 'trigger' AND instr(sql, ?1) > 0",
            )
            .map_err(|e| sqlite_error(e, "read the catalog"))?;
        // The quoted name, closing quote included: another capture's longer name never matches.
        let rows = stmt
            .query_map([quote_ident(&names.changes)], |row| row.get::<_, String>(0))
            .map_err(|e| sqlite_error(e, "read the catalog"))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| sqlite_error(e, "read the catalog"))?
    };
    for trigger in triggers {
        conn.execute_batch(&format!("DROP TRIGGER IF EXISTS {}", quote_ident(&trigger)))
            .map_err(|e| sqlite_error(e, format_args!("drop trigger {trigger}")))?;
    }
    for table in [&names.changes, &names.commits, &names.state] {
        conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote_ident(table)))
            .map_err(|e| sqlite_error(e, format_args!("drop table {table}")))?;
    }
    Ok(())
}

/// The highest sequence number the change table ever gave (0 when none).
fn high_seq(conn: &Connection, names: &Names) -> Result<u64> {
    let seq: Option<i64> = conn
        .query_row(
            "SELECT seq FROM main.sqlite_sequence WHERE name = ?1",
            [&names.changes],
            |row| row.get(0),
        )
        .optional()
        .map_err(|e| sqlite_error(e, "read the change table's sequence"))?;
    Ok(seq.map_or(0, |s| s.max(0) as u64))
}

/// Switches the file to WAL mode when it is not; fails when another connection keeps it from.
///
/// The switch needs the file to itself for a moment. While other connections write it in
/// rollback-journal mode, SQLite answers "database is locked" at once instead of waiting out the
/// busy timeout (waiting there could deadlock), so the switch is tried again after short pauses
/// until the busy timeout has passed.
fn ensure_wal(conn: &Connection, busy_timeout: Duration) -> Result<()> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .map_err(|e| sqlite_error(e, "read the journal mode"))?;
    if mode.eq_ignore_ascii_case("wal") {
        return Ok(());
    }
    let deadline = Instant::now() + busy_timeout;
    let mut pause = Duration::from_millis(1);
    let mode: String = loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && Instant::now() + pause < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(4));
            }
            answer => {
                break answer.map_err(|e| sqlite_error(e, "switch the database to WAL mode"))?;
            }
        }
    };
    if mode.eq_ignore_ascii_case("wal") {
        tracing::info!("database switched to WAL mode for capture");
        Ok(())
    } else {
        Err(ConnectorError::unsupported(format!(
            "the database stays in journal mode {mode}; capture needs WAL mode \
             (PRAGMA journal_mode = WAL while no other connection is open)"
        )))
    }
}

/// Creates what capture needs (dropping what exists under the name first) and holds a snapshot
/// at the start position.
pub(crate) fn create(config: &SqliteConfig, request: &CaptureRequest) -> Result<CaptureStart> {
    check(config, request)?;
    let names = names(&request.name)?;
    let mut conn = open_write(config)?;
    ensure_wal(&conn, config.busy_timeout)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sqlite_error(e, "begin the capture's creation"))?;
    drop_in(&tx, &names)?;
    tx.execute_batch(&format!(
        "CREATE TABLE {} (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, \
            op TEXT NOT NULL, at INTEGER NOT NULL, old TEXT, new TEXT); \
         CREATE TABLE {} (seq INTEGER PRIMARY KEY); \
         CREATE TABLE {} (item TEXT PRIMARY KEY, value INTEGER NOT NULL); \
         INSERT INTO {} (item, value) VALUES ('acked', 0), ('alive', 0);",
        quote_ident(&names.changes),
        quote_ident(&names.commits),
        quote_ident(&names.state),
        quote_ident(&names.state),
    ))
    .map_err(|e| {
        sqlite_error(
            e,
            format_args!("create the tables of capture {}", request.name),
        )
    })?;
    for t in &request.tables {
        create_triggers(&tx, &names, &t.table)?;
    }
    tx.commit()
        .map_err(|e| sqlite_error(e, "commit the capture's creation"))?;
    // The snapshot: a read transaction begun now; what it sees of the change table is where the
    // stream starts.
    let held = open_read(config)?;
    held.execute_batch("BEGIN")
        .map_err(|e| sqlite_error(e, "begin the snapshot"))?;
    let start = high_seq(&held, &names)?;
    conn.execute(
        &format!(
            "UPDATE {} SET value = ?1 WHERE item = 'acked'",
            quote_ident(&names.state)
        ),
        [start as i64],
    )
    .map_err(|e| sqlite_error(e, "record the capture's start"))?;
    tracing::info!(capture = %request.name, position = start, "sqlite capture created");
    Ok(CaptureStart {
        position: Position::Sequence { seq: start },
        snapshot: Some(Box::new(hold(config, held))),
    })
}

/// Removes what `create` made for `name`; nothing there is fine.
pub(crate) fn drop(config: &SqliteConfig, name: &str) -> Result<()> {
    let names = names(name)?;
    if !config.exists() {
        return Ok(());
    }
    let mut conn = open_write(config)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sqlite_error(e, "begin the capture's removal"))?;
    drop_in(&tx, &names)?;
    tx.commit()
        .map_err(|e| sqlite_error(e, "commit the capture's removal"))
}

fn table_exists(conn: &Connection, table: &str) -> Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM main.sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |row| row.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(|e| sqlite_error(e, "read the catalog"))
}

/// A state item's value.
fn state_value(conn: &Connection, names: &Names, item: &str) -> Result<Option<i64>> {
    conn.query_row(
        &format!(
            "SELECT value FROM {} WHERE item = ?1",
            quote_ident(&names.state)
        ),
        [item],
        |row| row.get(0),
    )
    .optional()
    .map_err(|e| sqlite_error(e, "read the capture's state"))
}

/// Whether the capture's tables and the triggers of every table it records exist.
pub(crate) fn exists(config: &SqliteConfig, name: &str) -> Result<bool> {
    let names = names(name)?;
    if !config.exists() {
        return Ok(false);
    }
    let conn = open_read(config)?;
    for table in [&names.changes, &names.commits, &names.state] {
        if !table_exists(&conn, table)? {
            return Ok(false);
        }
    }
    let (tables, triggers): (i64, i64) = conn
        .query_row(
            &format!(
                "SELECT (SELECT count(*) FROM {} WHERE item LIKE 'columns:%'), \
                        (SELECT count(*) FROM main.sqlite_master WHERE type = 'trigger' AND instr(sql, ?1) > 0)",
                quote_ident(&names.state)
            ),
            [quote_ident(&names.changes)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(|e| sqlite_error(e, "read the capture's state"))?;
    Ok(tables > 0 && triggers == 3 * tables)
}

/// The bytes of change rows not yet acknowledged, and whether a stream marked itself alive lately.
pub(crate) fn lag(config: &SqliteConfig, name: &str) -> Result<Option<CaptureLag>> {
    let names = names(name)?;
    if !config.exists() {
        return Ok(None);
    }
    let conn = open_read(config)?;
    if !table_exists(&conn, &names.changes)? || !table_exists(&conn, &names.state)? {
        return Ok(None);
    }
    conn.execute_batch("BEGIN")
        .map_err(|e| sqlite_error(e, "begin reading the lag"))?;
    let acked = state_value(&conn, &names, "acked")?.unwrap_or(0);
    let alive = state_value(&conn, &names, "alive")?.unwrap_or(0);
    let bytes: i64 = conn
        .query_row(
            &format!(
                "SELECT coalesce(sum(coalesce(length(old), 0) + coalesce(length(new), 0) + 24), 0) \
                 FROM {} WHERE seq > ?1",
                quote_ident(&names.changes)
            ),
            [acked],
            |row| row.get(0),
        )
        .map_err(|e| sqlite_error(e, format_args!("read the lag of capture {name}")))?;
    Ok(Some(CaptureLag {
        bytes: bytes.max(0) as u64,
        active: Utc::now().timestamp_millis() - alive < ALIVE_BOUND_MS,
    }))
}

/// The change table's highest sequence number: SQLite positions belong to one capture, so the
/// file must hold exactly one.
pub(crate) fn current_position(config: &SqliteConfig) -> Result<Position> {
    let conn = open_read(config)?;
    let has_sequence = table_exists(&conn, "sqlite_sequence")?;
    let mut found: Vec<(String, i64)> = Vec::new();
    if has_sequence {
        let mut stmt = conn
            .prepare(
                "SELECT name, seq FROM main.sqlite_sequence WHERE name LIKE 'sluice\\_changes\\_%' ESCAPE '\\'",
            )
            .map_err(|e| sqlite_error(e, "read the change tables"))?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(|e| sqlite_error(e, "read the change tables"))?;
        found = rows
            .collect::<Result<_, _>>()
            .map_err(|e| sqlite_error(e, "read the change tables"))?;
    }
    if found.is_empty() {
        // A change table that never had a row has no sequence yet.
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM main.sqlite_master WHERE type = 'table' \
                 AND name LIKE 'sluice\\_changes\\_%' ESCAPE '\\'",
                [],
                |row| row.get(0),
            )
            .map_err(|e| sqlite_error(e, "read the change tables"))?;
        if tables == 1 {
            return Ok(Position::Sequence { seq: 0 });
        }
    }
    match found.as_slice() {
        [(_, seq)] => Ok(Position::Sequence {
            seq: (*seq).max(0) as u64,
        }),
        [] => Err(ConnectorError::not_found(format!(
            "{} has no capture, so it has no change position",
            config.path.display()
        ))),
        _ => Err(ConnectorError::unsupported(format!(
            "{} holds {} captures; their positions are not one log's",
            config.path.display(),
            found.len()
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared snapshots

/// Connections holding a read transaction open for a shared snapshot, by snapshot id.
type Held = HashMap<String, (std::path::PathBuf, Arc<Mutex<Connection>>)>;

fn held() -> &'static Mutex<Held> {
    static HELD: OnceLock<Mutex<Held>> = OnceLock::new();
    HELD.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A read transaction held open on its own connection; reads in the snapshot find it by id.
/// Dropping it ends the transaction (reads already running keep the connection until they end).
pub struct SqliteSnapshot {
    id: String,
}

impl SharedSnapshot for SqliteSnapshot {
    fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for SqliteSnapshot {
    fn drop(&mut self) {
        if let Ok(mut held) = held().lock() {
            held.remove(&self.id);
        }
    }
}

/// Registers `conn`, whose read transaction has begun, as a shared snapshot.
fn hold(config: &SqliteConfig, conn: Connection) -> SqliteSnapshot {
    let id = format!("sqlite-snapshot-{}", uuid::Uuid::new_v4());
    if let Ok(mut held) = held().lock() {
        held.insert(
            id.clone(),
            (config.path.clone(), Arc::new(Mutex::new(conn))),
        );
    }
    SqliteSnapshot { id }
}

/// Begins a read transaction on a connection of its own and holds it as a shared snapshot.
pub(crate) fn share(config: &SqliteConfig) -> Result<SqliteSnapshot> {
    let conn = open_read(config)?;
    conn.execute_batch("BEGIN")
        .map_err(|e| sqlite_error(e, "begin the snapshot"))?;
    // A read transaction takes its view at its first read.
    conn.query_row("SELECT count(*) FROM main.sqlite_master", [], |row| {
        row.get::<_, i64>(0)
    })
    .map_err(|e| sqlite_error(e, "begin the snapshot"))?;
    Ok(hold(config, conn))
}

/// The connection holding the snapshot `id` of the file of `config`.
pub(crate) fn held_connection(config: &SqliteConfig, id: &str) -> Result<Arc<Mutex<Connection>>> {
    let held = held()
        .lock()
        .map_err(|_| ConnectorError::internal("the shared snapshot registry is unusable"))?;
    match held.get(id) {
        Some((path, conn)) if *path == config.path => Ok(conn.clone()),
        Some(_) => Err(ConnectorError::internal(format!(
            "snapshot {id} is of another database file"
        ))),
        None => Err(ConnectorError::not_found(format!(
            "snapshot {id} is not held in this process (released already, or not SQLite's)"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Row images

/// Reads an image as `create_triggers` writes it: `quote()` literals joined by commas.
pub fn parse_image(text: &[u8]) -> Result<Vec<Raw>, String> {
    let mut values = Vec::new();
    let mut at = 0;
    let bad = |at: usize| format!("malformed row image at byte {at}");
    loop {
        let rest = text.get(at..).ok_or_else(|| bad(at))?;
        let (value, used) = match rest.first() {
            Some(b'\'') => {
                let mut out = Vec::new();
                let mut i = 1;
                loop {
                    match rest.get(i) {
                        Some(b'\'') if rest.get(i + 1) == Some(&b'\'') => {
                            out.push(b'\'');
                            i += 2;
                        }
                        Some(b'\'') => break,
                        Some(b) => {
                            out.push(*b);
                            i += 1;
                        }
                        None => return Err(bad(at + i)),
                    }
                }
                let text = String::from_utf8(out).map_err(|_| bad(at))?;
                (Raw::Text(text), i + 1)
            }
            Some(b'X') | Some(b'x') => {
                if rest.get(1) != Some(&b'\'') {
                    return Err(bad(at));
                }
                let end = rest[2..]
                    .iter()
                    .position(|b| *b == b'\'')
                    .ok_or_else(|| bad(at))?;
                let hex = &rest[2..2 + end];
                if hex.len() % 2 != 0 {
                    return Err(bad(at));
                }
                let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
                let bytes = hex
                    .chunks(2)
                    .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(|| bad(at))?;
                (Raw::Blob(bytes), end + 3)
            }
            Some(b'N') if rest.starts_with(b"NULL") => (Raw::Null, 4),
            Some(_) => {
                let end = rest.iter().position(|b| *b == b',').unwrap_or(rest.len());
                let word = std::str::from_utf8(&rest[..end]).map_err(|_| bad(at))?;
                let real = word.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
                let value = if real {
                    Raw::Real(word.parse::<f64>().map_err(|_| bad(at))?)
                } else {
                    Raw::Integer(word.parse::<i64>().map_err(|_| bad(at))?)
                };
                (value, end)
            }
            None => return Err(bad(at)),
        };
        values.push(value);
        at += used;
        match text.get(at) {
            None => return Ok(values),
            Some(b',') => at += 1,
            Some(_) => return Err(bad(at)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The stream

/// Reads one stored value as a data type.
type Decoder = for<'a> fn(ValueRef<'a>, DataType) -> Result<Value, String>;

/// A captured table as the stream knows it.
struct Captured {
    table: TableRef,
    columns: Vec<ColumnDef>,
    key: Vec<usize>,
    decoders: Vec<Decoder>,
    /// Whether its current columns were sent.
    announced: bool,
}

impl Captured {
    fn new(table: TableRef, conn: &Connection) -> Result<Captured> {
        let schema = table_schema(conn, &table)?.ok_or_else(|| {
            ConnectorError::not_found(format!("captured table {table} does not exist any more"))
        })?;
        let key = schema
            .primary_key
            .iter()
            .filter_map(|k| schema.column_index(k))
            .collect::<Vec<_>>();
        if key.is_empty() {
            return Err(ConnectorError::schema(format!(
                "captured table {table} has no primary key"
            )));
        }
        let decoders = schema
            .columns
            .iter()
            .map(|c| match c.native_type.as_deref() {
                Some(t) if t.trim().is_empty() => decode_untyped as Decoder,
                _ => decode as Decoder,
            })
            .collect();
        Ok(Captured {
            table,
            columns: schema.columns,
            key,
            decoders,
            announced: false,
        })
    }

    fn same_columns(&self, other: &Captured) -> bool {
        self.columns.len() == other.columns.len()
            && self
                .columns
                .iter()
                .zip(&other.columns)
                .all(|(a, b)| a.name == b.name && a.native_type == b.native_type)
    }

    fn decode_image(&self, raw: &[Raw]) -> Result<Vec<Value>> {
        raw.iter()
            .enumerate()
            .map(|(i, v)| {
                let column = &self.columns[i];
                self.decoders[i](ValueRef::from(v), column.data_type).map_err(|reason| {
                    ConnectorError::data(format!(
                        "table {} column {}: {reason}",
                        self.table, column.name
                    ))
                })
            })
            .collect()
    }
}

/// Starts the polling thread of capture `request.name`, from its acknowledged position.
pub(crate) async fn open(
    config: SqliteConfig,
    request: CaptureRequest,
) -> Result<SqliteChangeStream> {
    let names = names(&request.name)?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<()>>();
    let (tx, rx) = mpsc::channel(CHANNEL_MESSAGES);
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (acked2, stop2) = (acked.clone(), stop.clone());
    let worker = tokio::task::spawn_blocking(move || {
        let poller = Poller::start(&config, &request, names, acked2, stop2, tx.clone());
        match poller {
            Ok(mut poller) => {
                let _ = ready_tx.send(Ok(()));
                if let Err(error) = poller.run() {
                    let _ = tx.blocking_send(Err(error));
                }
            }
            Err(error) => {
                let _ = ready_tx.send(Err(error));
            }
        }
    });
    ready_rx.await.map_err(|_| {
        ConnectorError::internal("the SQLite capture thread ended before starting")
    })??;
    Ok(SqliteChangeStream {
        rx,
        acked,
        stop,
        worker: Some(worker),
    })
}

/// The polling thread's state.
struct Poller {
    read: Connection,
    write: Connection,
    names: Names,
    name: String,
    tables: HashMap<String, Captured>,
    /// The end of the last transaction sent (or the acknowledged position at the start).
    last: u64,
    /// Acknowledged by the consumer / trimmed in the file.
    acked: Arc<AtomicU64>,
    trimmed: u64,
    stop: Arc<AtomicBool>,
    out: mpsc::Sender<Result<CaptureMessage>>,
    schema_version: i64,
    last_sent: Instant,
    last_trim: Instant,
    last_alive: Option<Instant>,
}

impl Poller {
    fn start(
        config: &SqliteConfig,
        request: &CaptureRequest,
        names: Names,
        acked: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
        out: mpsc::Sender<Result<CaptureMessage>>,
    ) -> Result<Poller> {
        let read = open_read(config)?;
        let write = open_write(config)?;
        let missing = || {
            ConnectorError::not_found(format!(
                "capture {} does not exist in {}; it must be created first",
                request.name,
                config.path.display()
            ))
        };
        for table in [&names.changes, &names.commits, &names.state] {
            if !table_exists(&read, table)? {
                return Err(missing());
            }
        }
        let start = state_value(&read, &names, "acked")?
            .ok_or_else(missing)?
            .max(0) as u64;
        let mut tables = HashMap::new();
        for t in &request.tables {
            if state_value(&read, &names, &columns_item(t.table.name.as_str()))?.is_none() {
                return Err(ConnectorError::not_found(format!(
                    "table {} is not in capture {}; activate the channel again",
                    t.table, request.name
                )));
            }
            tables.insert(
                t.table.name.as_str().to_ascii_lowercase(),
                Captured::new(t.table.clone(), &read)?,
            );
        }
        acked.store(start, Ordering::SeqCst);
        Ok(Poller {
            read,
            write,
            names,
            name: request.name.clone(),
            tables,
            last: start,
            acked,
            trimmed: start,
            stop,
            out,
            schema_version: -1,
            last_sent: Instant::now(),
            last_trim: Instant::now(),
            last_alive: None,
        })
    }

    /// Sends `message`; false when the consumer is gone.
    fn send(&mut self, message: CaptureMessage) -> bool {
        self.last_sent = Instant::now();
        self.out.blocking_send(Ok(message)).is_ok()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.out.is_closed()
    }

    fn run(&mut self) -> Result<()> {
        let mut sleep = POLL_MIN;
        while !self.stopped() {
            if self.last_trim.elapsed() >= TRIM_INTERVAL {
                self.trim()?;
            }
            self.read
                .execute_batch("BEGIN")
                .map_err(|e| sqlite_error(e, "begin a poll"))?;
            let polled = self.poll();
            let ended = self
                .read
                .execute_batch("COMMIT")
                .map_err(|e| sqlite_error(e, "end a poll"));
            let sent = polled?;
            ended?;
            if sent {
                sleep = POLL_MIN;
                continue;
            }
            if self.last_sent.elapsed() >= IDLE_INTERVAL {
                let idle = CaptureMessage::Idle {
                    position: Position::Sequence { seq: self.last },
                    at: Some(Utc::now()),
                };
                if !self.send(idle) {
                    break;
                }
            }
            std::thread::sleep(sleep);
            sleep = (sleep * 2).min(POLL_MAX);
        }
        // A last trim so a clean stop leaves nothing acknowledged behind.
        self.trim()
    }

    /// Deletes acknowledged changes and records the acknowledged position; marks the stream
    /// alive now and then.
    fn trim(&mut self) -> Result<()> {
        self.last_trim = Instant::now();
        let acked = self.acked.load(Ordering::SeqCst).min(self.last);
        let alive_due = self
            .last_alive
            .is_none_or(|at| at.elapsed() >= ALIVE_INTERVAL);
        if acked <= self.trimmed && !alive_due {
            return Ok(());
        }
        let state = quote_ident(&self.names.state);
        let tx = self
            .write
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sqlite_error(e, "begin trimming the change table"))?;
        if acked > self.trimmed {
            tx.execute(
                &format!(
                    "DELETE FROM {} WHERE seq <= ?1",
                    quote_ident(&self.names.changes)
                ),
                [acked as i64],
            )
            .map_err(|e| sqlite_error(e, "trim the change table"))?;
            tx.execute(
                &format!(
                    "DELETE FROM {} WHERE seq <= ?1",
                    quote_ident(&self.names.commits)
                ),
                [acked as i64],
            )
            .map_err(|e| sqlite_error(e, "trim the change table"))?;
            tx.execute(
                &format!("UPDATE {state} SET value = max(value, ?1) WHERE item = 'acked'"),
                [acked as i64],
            )
            .map_err(|e| sqlite_error(e, "record the acknowledged position"))?;
        }
        tx.execute(
            &format!("UPDATE {state} SET value = ?1 WHERE item = 'alive'"),
            [Utc::now().timestamp_millis()],
        )
        .map_err(|e| sqlite_error(e, "mark the capture alive"))?;
        tx.commit()
            .map_err(|e| sqlite_error(e, "commit trimming the change table"))?;
        if acked > self.trimmed {
            tracing::debug!(capture = %self.name, position = acked, "change table trimmed");
        }
        self.trimmed = self.trimmed.max(acked);
        self.last_alive = Some(Instant::now());
        Ok(())
    }

    /// Looks for schema changes: re-reads the columns of every table when the schema changed,
    /// and creates the triggers of a table whose column count changed again.
    fn refresh_tables(&mut self) -> Result<()> {
        let version: i64 = self
            .read
            .query_row("PRAGMA schema_version", [], |row| row.get(0))
            .map_err(|e| sqlite_error(e, "read the schema version"))?;
        if version == self.schema_version {
            return Ok(());
        }
        let mut stale = Vec::new();
        for captured in self.tables.values_mut() {
            let now = Captured::new(captured.table.clone(), &self.read)?;
            if !captured.same_columns(&now) {
                tracing::info!(capture = %self.name, table = %captured.table, "captured table's columns changed");
                *captured = now;
            }
            let recorded = state_value(
                &self.read,
                &self.names,
                &columns_item(captured.table.name.as_str()),
            )?;
            if recorded != Some(captured.columns.len() as i64) {
                stale.push(captured.table.clone());
            }
        }
        if !stale.is_empty() {
            let tx = self
                .write
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| sqlite_error(e, "begin re-creating capture triggers"))?;
            for table in &stale {
                create_triggers(&tx, &self.names, table)?;
            }
            tx.commit()
                .map_err(|e| sqlite_error(e, "commit re-created capture triggers"))?;
        }
        self.schema_version = version;
        Ok(())
    }

    /// The end of the next transaction, recording it first when it is new; `None` when nothing
    /// was committed after the last one.
    fn next_end(&mut self) -> Result<Option<u64>> {
        let recorded: Option<i64> = self
            .read
            .query_row(
                &format!(
                    "SELECT min(seq) FROM {} WHERE seq > ?1",
                    quote_ident(&self.names.commits)
                ),
                [self.last as i64],
                |row| row.get(0),
            )
            .map_err(|e| sqlite_error(e, "read the recorded transaction ends"))?;
        if let Some(end) = recorded {
            return Ok(Some(end as u64));
        }
        let max: Option<i64> = self
            .read
            .query_row(
                &format!("SELECT max(seq) FROM {}", quote_ident(&self.names.changes)),
                [],
                |row| row.get(0),
            )
            .map_err(|e| sqlite_error(e, "read the change table"))?;
        let Some(end) = max.map(|m| m.max(0) as u64).filter(|m| *m > self.last) else {
            return Ok(None);
        };
        self.write
            .execute(
                &format!(
                    "INSERT OR IGNORE INTO {} (seq) VALUES (?1)",
                    quote_ident(&self.names.commits)
                ),
                [end as i64],
            )
            .map_err(|e| sqlite_error(e, "record a transaction end"))?;
        Ok(Some(end))
    }

    /// Sends the next transaction, if there is one; inside the caller's read transaction.
    fn poll(&mut self) -> Result<bool> {
        self.refresh_tables()?;
        let Some(end) = self.next_end()? else {
            return Ok(false);
        };
        let at: Option<i64> = self
            .read
            .query_row(
                &format!(
                    "SELECT at FROM {} WHERE seq = ?1",
                    quote_ident(&self.names.changes)
                ),
                [end as i64],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| sqlite_error(e, "read the change table"))?;
        let transaction = TransactionId {
            commit: Position::Sequence { seq: end },
            commit_time: at
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .unwrap_or_else(Utc::now),
        };
        let sql = format!(
            "SELECT seq, tbl, op, old, new FROM {} WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT {PART_CHANGES}",
            quote_ident(&self.names.changes)
        );
        let mut cursor = self.last;
        let mut index = 0u64;
        loop {
            let rows = self.read_rows(&sql, cursor, end)?;
            let full = rows.len() >= PART_CHANGES;
            let mut part: Vec<RowChange> = Vec::with_capacity(rows.len());
            for (seq, table, op, old, new) in rows {
                cursor = seq;
                let Some(key) = self.table_key(&table) else {
                    continue; // a table outside the request
                };
                if !self.tables[&key].announced {
                    if !self.flush(&transaction, &mut index, &mut part) {
                        return Ok(true);
                    }
                    let captured = self
                        .tables
                        .get_mut(&key)
                        .ok_or_else(|| ConnectorError::internal("a captured table went missing"))?;
                    captured.announced = true;
                    let relation = CaptureMessage::Relation {
                        table: captured.table.clone(),
                        columns: captured.columns.clone(),
                        key: captured.key.clone(),
                    };
                    if !self.send(relation) {
                        return Ok(true);
                    }
                }
                part.push(self.change(&key, &op, old.as_deref(), new.as_deref())?);
            }
            if !self.flush(&transaction, &mut index, &mut part) {
                return Ok(true);
            }
            if !full {
                break;
            }
        }
        self.last = end;
        if index > 0 {
            self.send(CaptureMessage::Commit {
                transaction,
                ack: Position::Sequence { seq: end },
                change_count: index,
            });
        }
        Ok(true)
    }

    /// Sends the changes in `part` (none: nothing) as the next part of `transaction`; false when
    /// the consumer is gone.
    fn flush(
        &mut self,
        transaction: &TransactionId,
        index: &mut u64,
        part: &mut Vec<RowChange>,
    ) -> bool {
        if part.is_empty() {
            return true;
        }
        let changes = std::mem::take(part);
        let first_index = *index;
        *index += changes.len() as u64;
        self.send(CaptureMessage::Changes {
            transaction: transaction.clone(),
            first_index,
            changes,
        })
    }

    /// The rows of the change table after `after` up to `end`, at most one part.
    #[allow(clippy::type_complexity)]
    fn read_rows(
        &self,
        sql: &str,
        after: u64,
        end: u64,
    ) -> Result<Vec<(u64, String, String, Option<Vec<u8>>, Option<Vec<u8>>)>> {
        let mut stmt = self
            .read
            .prepare_cached(sql)
            .map_err(|e| sqlite_error(e, "read the change table"))?;
        let rows = stmt
            .query_map([after as i64, end as i64], |row| {
                let text = |i: usize| -> rusqlite::Result<Option<Vec<u8>>> {
                    Ok(match row.get_ref(i)? {
                        ValueRef::Null => None,
                        ValueRef::Text(t) | ValueRef::Blob(t) => Some(t.to_vec()),
                        _ => Some(Vec::new()),
                    })
                };
                Ok((
                    row.get::<_, i64>(0)?.max(0) as u64,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    text(3)?,
                    text(4)?,
                ))
            })
            .map_err(|e| sqlite_error(e, "read the change table"))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| sqlite_error(e, "read the change table"))
    }

    fn table_key(&self, table: &str) -> Option<String> {
        let key = table.to_ascii_lowercase();
        self.tables.contains_key(&key).then_some(key)
    }

    /// One change row as a [`RowChange`].
    fn change(
        &self,
        key: &str,
        op: &str,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<RowChange> {
        let captured = &self.tables[key];
        let table = &captured.table;
        let image = |text: Option<&[u8]>, what: &str| -> Result<Option<Vec<Raw>>> {
            let Some(text) = text else {
                return Ok(None);
            };
            let raw = parse_image(text).map_err(|reason| {
                ConnectorError::data(format!(
                    "capture {}: the {what} image of a change of {table}: {reason}",
                    self.name
                ))
            })?;
            if raw.len() > captured.columns.len() {
                return Err(ConnectorError::schema(format!(
                    "table {table} has {} columns but a captured change has {}: a column was dropped",
                    captured.columns.len(),
                    raw.len()
                )));
            }
            Ok(Some(raw))
        };
        let op = match op {
            "I" => ChangeOp::Insert,
            "U" => ChangeOp::Update,
            "D" => ChangeOp::Delete,
            other => {
                return Err(ConnectorError::data(format!(
                    "capture {}: a change of {table} has operation {other:?}",
                    self.name
                )));
            }
        };
        let before = match image(old, "old")? {
            Some(mut raw) => {
                raw.resize(captured.columns.len(), Raw::Null);
                Some(captured.decode_image(&raw)?)
            }
            None => None,
        };
        let after = match image(new, "new")? {
            Some(mut raw) => {
                if raw.len() < captured.columns.len() {
                    self.complete(captured, &mut raw)?;
                }
                Some(captured.decode_image(&raw)?)
            }
            None => None,
        };
        if (op == ChangeOp::Delete && before.is_none())
            || (op != ChangeOp::Delete && after.is_none())
        {
            return Err(ConnectorError::data(format!(
                "capture {}: a {op} of {table} lacks its row image",
                self.name
            )));
        }
        Ok(RowChange {
            table: table.clone(),
            op,
            before,
            before_is_key: false,
            after,
            unchanged: Vec::new(),
        })
    }

    /// Fills the columns an image written before they were added with the row's values in the
    /// poll's snapshot (`NULL` when the row is gone by then).
    fn complete(&self, captured: &Captured, raw: &mut Vec<Raw>) -> Result<()> {
        let have = raw.len();
        let missing: Vec<String> = captured.columns[have..]
            .iter()
            .map(|c| quote_ident(c.name.as_str()))
            .collect();
        let condition: Vec<String> = captured
            .key
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                format!(
                    "{} IS ?{}",
                    quote_ident(captured.columns[k].name.as_str()),
                    i + 1
                )
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            missing.join(", "),
            quote_table(&captured.table),
            condition.join(" AND ")
        );
        let mut stmt = self.read.prepare_cached(&sql).map_err(|e| {
            sqlite_error(e, format_args!("read added columns of {}", captured.table))
        })?;
        let key: Vec<&Raw> = captured
            .key
            .iter()
            .map(|&k| raw.get(k).unwrap_or(&Raw::Null))
            .collect();
        let found: Option<Vec<Raw>> = stmt
            .query_row(rusqlite::params_from_iter(key), |row| {
                (0..missing.len()).map(|i| row.get::<_, Raw>(i)).collect()
            })
            .optional()
            .map_err(|e| {
                sqlite_error(e, format_args!("read added columns of {}", captured.table))
            })?;
        match found {
            Some(values) => raw.extend(values),
            None => raw.resize(captured.columns.len(), Raw::Null),
        }
        Ok(())
    }
}

/// A running SQLite change stream: a thread polls the change table and hands messages over a
/// small channel.
pub struct SqliteChangeStream {
    rx: mpsc::Receiver<Result<CaptureMessage>>,
    acked: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    worker: Option<tokio::task::JoinHandle<()>>,
}

#[async_trait]
impl ChangeStream for SqliteChangeStream {
    async fn next(&mut self) -> Result<CaptureMessage> {
        match self.rx.recv().await {
            Some(message) => message,
            None => Err(ConnectorError::internal("the SQLite capture thread ended")),
        }
    }

    fn ack(&mut self, position: &Position) -> Result<()> {
        match position {
            Position::Sequence { seq } => {
                self.acked.fetch_max(*seq, Ordering::SeqCst);
                Ok(())
            }
            other => Err(ConnectorError::internal(format!(
                "a SQLite capture cannot acknowledge position {other:?}"
            ))),
        }
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        self.rx.close();
        // Let the thread finish a send it is blocked in.
        while self.rx.recv().await.is_some() {}
        if let Some(worker) = self.worker.take() {
            worker.await.map_err(|e| {
                ConnectorError::internal(format!("the SQLite capture thread failed: {e}"))
            })?;
        }
        Ok(())
    }
}

impl Drop for SqliteChangeStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_read_back_what_quote_writes() {
        let conn = Connection::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
        let values = vec![
            Raw::Integer(i64::MIN),
            Raw::Integer(0),
            Raw::Real(0.1),
            Raw::Real(-1.0e300),
            Raw::Real(f64::INFINITY),
            Raw::Real(f64::MIN_POSITIVE),
            Raw::Real(5e-324),
            Raw::Real(1.0 / 3.0),
            Raw::Text("it's, \"quoted\"\n ü".into()),
            Raw::Text(String::new()),
            Raw::Blob(vec![0, 1, 0xfe, 0xff]),
            Raw::Blob(Vec::new()),
            Raw::Null,
        ];
        let sql = (1..=values.len())
            .map(|i| format!("quote(?{i})"))
            .collect::<Vec<_>>()
            .join(" || ',' || ");
        let text: String = conn
            .query_row(
                &format!("SELECT {sql}"),
                rusqlite::params_from_iter(&values),
                |row| row.get(0),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let back = parse_image(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(back.len(), values.len());
        for (a, b) in values.iter().zip(&back) {
            match (a, b) {
                (Raw::Real(x), Raw::Real(y)) => assert_eq!(x.to_bits(), y.to_bits(), "{text}"),
                _ => assert_eq!(a, b, "{text}"),
            }
        }
        assert!(parse_image(b"1,").is_err());
        assert!(parse_image(b"'open").is_err());
        assert!(parse_image(b"X'abc'").is_err());
        assert!(parse_image(b"NULLX").is_err());
    }
}
