//! Change capture from MariaDB's row-based binary log, read as a pseudo-replica over
//! mysql_async's binlog stream and decoded by [`crate::binlog`].
//!
//! How it works:
//! * MariaDB has no replication slot, so what a capture needs is one row of the table
//!   `sluice_capture` in the location's database: the capture's name, its pseudo-replica
//!   `server_id` and the binary log position (file and offset, with the GTID of that point)
//!   everything before which every target has stored. It is written with `sql_log_bin = 0` where
//!   the user may, so that it does not feed the log it follows. `drop` deletes the row and the
//!   table once it is empty; the server keeps nothing else.
//! * `create` opens `START TRANSACTION WITH CONSISTENT SNAPSHOT` on a connection of its own and
//!   reads that snapshot's log position in the same session (`binlog_snapshot_file` /
//!   `binlog_snapshot_position`, no global lock): the capture starts there and the connection is
//!   handed out as the initial load's shared snapshot ([`crate::snapshot::HeldSnapshot`]).
//! * `open` asks the server for the log from the stored position (after checking the file is
//!   still there), with `@mariadb_slave_capability = 4` (GTID events), checksums, and a heartbeat
//!   every second. A transaction's changes are handed on in parts of bounded size; its
//!   [`TransactionId::commit`] is the position of its first event (known when it begins; binary
//!   log order is commit order) and the `ack` of its `Commit` the end of its XID event.
//! * Acknowledged positions are written to `sluice_capture` by a background task at most once a
//!   second, and once more when the stream closes, so a restarted capture resumes there.
//! * Column names, types and keys come from information_schema when a table map of a captured
//!   table is first seen, after DDL, or when its column count changes; a change of them is sent
//!   as a new [`CaptureMessage::Relation`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use mysql_async::binlog::events::{Event, EventData, RowsEventData};
use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn};
use sluice_connector::{
    CaptureLag, CaptureRequest, CaptureStart, ChangeStream, ConnectorError, ErrorKind,
    OpenTransaction, Result,
};
use sluice_model::{
    CaptureMessage, ChangeOp, ColumnDef, ColumnName, Position, RowChange, TableRef, TransactionId,
    Value,
};
use tokio::time::Instant;

use crate::binlog::{MARIADB_GTID_EVENT, MariadbGtid, image_cells};
use crate::config::MariadbConfig;
use crate::connect::connect;
use crate::error::mysql_error;
use crate::introspect::{codec_of, table_info};
use crate::snapshot::{BEGIN_READ, HeldSnapshot};
use crate::types::{Codec, Storage, database_of, quote_ident};

/// The table in the location's database that records each capture's position.
pub const CAPTURE_TABLE: &str = "sluice_capture";

/// Server error: the binary log the replica asked for is gone or unreadable.
const ER_MASTER_FATAL_READING_BINLOG: u16 = 1236;
/// How often a transaction without captured changes is reported as an Idle position.
const EMPTY_IDLE_INTERVAL: Duration = Duration::from_millis(100);

/// How many recent commits a stream remembers the GTIDs of.
const REMEMBERED_COMMITS: usize = 100_000;

/// Server error: no such table.
const ER_NO_SUCH_TABLE: u16 = 1146;

/// How a change stream cuts transactions into parts and reports idleness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Most changes in one [`CaptureMessage::Changes`] part.
    pub part_changes: usize,
    /// Most bytes of values in one part; a part holds at least one change.
    pub part_bytes: usize,
    /// After this long with nothing sent outside a transaction, [`CaptureMessage::Idle`] is sent.
    pub idle_interval: Duration,
    /// How often the server sends a heartbeat when its log does not move.
    pub heartbeat_interval: Duration,
    /// How often an acknowledged position is written to `sluice_capture`.
    pub ack_interval: Duration,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            part_changes: 5_000,
            part_bytes: 8 << 20,
            idle_interval: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(1),
            ack_interval: Duration::from_secs(1),
        }
    }
}

/// Refuses a capture name that is not lowercase letters, digits and `_` of at most 63 bytes.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConnectorError::schema(format!(
            "capture name {name:?} is not 1 to 63 lowercase letters, digits and underscores"
        )))
    }
}

/// The pseudo-replica `server_id` of the capture `name` at `config`: stable, in the upper half of
/// the id space (FNV-1a of the location and the name), never 0.
pub(crate) fn server_id_for(config: &MariadbConfig, name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in format!("{}:{}/{}/{name}", config.host, config.port, config.database).bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    0x8000_0000 | (h & 0x7fff_ffff)
}

fn capture_table(config: &MariadbConfig) -> String {
    format!(
        "{}.{}",
        quote_ident(&config.database),
        quote_ident(CAPTURE_TABLE)
    )
}

async fn query_drop(conn: &mut Conn, sql: &str, what: impl std::fmt::Display) -> Result<()> {
    conn.query_drop(sql).await.map_err(|e| mysql_error(e, what))
}

/// Keeps this session's writes out of the binary log where the user may (they would otherwise
/// feed the log the capture follows); without the privilege they are logged, which is harmless.
async fn unlogged(conn: &mut Conn) {
    if conn
        .query_drop("SET SESSION sql_log_bin = 0")
        .await
        .is_err()
    {
        tracing::debug!("writes to sluice_capture are binary-logged (no privilege to skip it)");
    }
}

/// A capture's stored row.
#[derive(Debug, Clone)]
struct Stored {
    server_id: u32,
    file: String,
    pos: u64,
}

/// The stored row of `name`; `None` when it or the table is missing.
async fn stored(conn: &mut Conn, config: &MariadbConfig, name: &str) -> Result<Option<Stored>> {
    let sql = format!(
        "SELECT server_id, file, pos FROM {} WHERE name = ?",
        capture_table(config)
    );
    match conn
        .exec_first::<(u32, String, u64), _, _>(sql, (name,))
        .await
    {
        Ok(row) => Ok(row.map(|(server_id, file, pos)| Stored {
            server_id,
            file,
            pos,
        })),
        Err(mysql_async::Error::Server(e)) if e.code == ER_NO_SUCH_TABLE => Ok(None),
        Err(e) => Err(mysql_error(e, format!("look up capture {name}"))),
    }
}

/// Server settings capture depends on.
struct Settings {
    log_bin: bool,
    format: String,
    row_image: String,
    server_id: u32,
}

async fn settings(conn: &mut Conn) -> Result<Settings> {
    let row: Option<(u8, String, String, u32)> = conn
        .query_first(
            "SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image, \
             @@GLOBAL.server_id",
        )
        .await
        .map_err(|e| mysql_error(e, "read the binary log settings"))?;
    let (log_bin, format, row_image, server_id) = row.unwrap_or_default();
    Ok(Settings {
        log_bin: log_bin == 1,
        format: format.to_ascii_uppercase(),
        row_image: row_image.to_ascii_uppercase(),
        server_id,
    })
}

/// The privileges the current user holds globally or on `database`.
async fn privileges(conn: &mut Conn, database: &str) -> Result<Vec<String>> {
    let grantee = "CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', \
                   SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')";
    let sql = format!(
        "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = {grantee} \
         UNION SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES \
         WHERE GRANTEE = {grantee} AND ? LIKE TABLE_SCHEMA"
    );
    let rows: Vec<String> = conn
        .exec(sql, (database,))
        .await
        .map_err(|e| mysql_error(e, "read the user's privileges"))?;
    Ok(rows.into_iter().map(|p| p.to_ascii_uppercase()).collect())
}

/// Everything that keeps `request` from being captured, as sentences.
async fn problems(
    conn: &mut Conn,
    config: &MariadbConfig,
    request: &CaptureRequest,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    if let Err(e) = check_name(&request.name) {
        problems.push(e.message().to_owned());
    }
    let s = settings(conn).await?;
    if !s.log_bin {
        problems.push(
            "the server does not write a binary log; capture needs log_bin = ON \
             (set log_bin in the server's configuration and restart it)"
                .to_owned(),
        );
    }
    if s.format != "ROW" {
        problems.push(format!(
            "the server has binlog_format = {}; capture needs binlog_format = ROW \
             (SET GLOBAL binlog_format = 'ROW' and in the server's configuration)",
            s.format
        ));
    }
    if !matches!(s.row_image.as_str(), "FULL" | "MINIMAL" | "NOBLOB") {
        problems.push(format!(
            "the server has binlog_row_image = {}; capture reads FULL, NOBLOB or MINIMAL",
            s.row_image
        ));
    }
    let held = privileges(conn, &config.database).await?;
    let has = |p: &str| held.iter().any(|h| h == p || h == "ALL PRIVILEGES");
    let user: Option<String> = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .map_err(|e| mysql_error(e, "read the current user"))?;
    let user = user.unwrap_or_default();
    if !has("REPLICATION SLAVE") {
        problems.push(format!(
            "user {user} may not read the binary log: GRANT REPLICATION SLAVE ON *.* TO {user}"
        ));
    }
    if !has("REPLICATION CLIENT") && !has("BINLOG MONITOR") {
        problems.push(format!(
            "user {user} may not read the binary log's position: \
             GRANT BINLOG MONITOR ON *.* TO {user}"
        ));
    }
    for p in ["SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP"] {
        if !has(p) {
            problems.push(format!(
                "user {user} lacks {p} on {}, which capture needs (its position lives in table \
                 {CAPTURE_TABLE}): GRANT {p} ON {}.* TO {user}",
                config.database,
                quote_ident(&config.database)
            ));
        }
    }
    let ours = server_id_for(config, &request.name);
    if ours == s.server_id {
        problems.push(format!(
            "the server's own server_id is {ours}, the id capture {} reads the log as",
            request.name
        ));
    } else {
        let mine = stored(conn, config, &request.name)
            .await?
            .is_some_and(|st| st.server_id == ours);
        let hosts: Vec<mysql_async::Row> = conn.query("SHOW SLAVE HOSTS").await.unwrap_or_default();
        let taken = hosts
            .iter()
            .any(|r| r.get::<u32, _>(0) == Some(ours) && !mine);
        if taken {
            problems.push(format!(
                "a replica with server_id {ours} (the id capture {} reads the log as) is \
                 connected to the server",
                request.name
            ));
        }
    }
    if request.tables.is_empty() {
        problems.push("the capture has no tables".to_owned());
    }
    for t in &request.tables {
        let table = &t.table;
        let Some(info) = table_info(conn, &config.database, table).await? else {
            problems.push(format!("table {table} does not exist"));
            continue;
        };
        if info.table_type != "BASE TABLE" {
            problems.push(format!("{table} is not a table"));
            continue;
        }
        if info.primary_key().is_empty() {
            let columns: Vec<String> = info
                .columns
                .iter()
                .filter(|c| !c.nullable)
                .map(|c| quote_ident(&c.name))
                .collect();
            let fix = if columns.is_empty() {
                format!(
                    "ALTER TABLE {} ADD PRIMARY KEY (<key columns>)",
                    crate::types::quote_table(table, &config.database)
                )
            } else {
                format!(
                    "ALTER TABLE {} ADD PRIMARY KEY ({})",
                    crate::types::quote_table(table, &config.database),
                    columns.join(", ")
                )
            };
            problems.push(format!(
                "table {table} has no primary key, so its updates and deletes cannot be applied \
                 to one row (a row-based log identifies rows by their values only): {fix}"
            ));
        }
        for column in &info.columns {
            match column.codec() {
                Err(reason) => problems.push(format!(
                    "table {table} column {} ({}): {reason}",
                    column.name, column.column_type
                )),
                Ok(codec) if codec.storage == (Storage::Uuid { binary: false }) => {
                    problems.push(format!(
                        "table {table} column {} has MariaDB's own uuid type, whose logged form \
                         capture does not decode yet; use BINARY(16) COMMENT 'sluice:uuid' or \
                         CHAR(36)",
                        column.name
                    ))
                }
                Ok(_) => {}
            }
        }
    }
    Ok(problems)
}

/// Checks that `request` can be captured; changes nothing.
pub(crate) async fn check(config: &MariadbConfig, request: &CaptureRequest) -> Result<()> {
    let mut conn = connect(config).await?;
    let problems = problems(&mut conn, config, request).await?;
    let _ = conn.disconnect().await;
    if problems.is_empty() {
        return Ok(());
    }
    Err(ConnectorError::schema(format!(
        "capture {} from {} cannot work: {}",
        request.name,
        config.describe(),
        problems.join("; ")
    )))
}

/// The GTID position of a binary log position (empty when the server cannot say).
async fn gtid_of(conn: &mut Conn, file: &str, pos: u64) -> String {
    conn.exec_first::<Option<String>, _, _>("SELECT BINLOG_GTID_POS(?, ?)", (file, pos))
        .await
        .ok()
        .flatten()
        .flatten()
        .unwrap_or_default()
}

/// Creates the table `sluice_capture` when missing and stores `name`'s position.
async fn store(
    conn: &mut Conn,
    config: &MariadbConfig,
    name: &str,
    server_id: u32,
    file: &str,
    pos: u64,
) -> Result<()> {
    let gtid = gtid_of(conn, file, pos).await;
    let table = capture_table(config);
    query_drop(
        conn,
        &format!(
            "CREATE TABLE IF NOT EXISTS {table} (\
               name VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin PRIMARY KEY, \
               server_id INT UNSIGNED NOT NULL, \
               file VARCHAR(512) NOT NULL, \
               pos BIGINT UNSIGNED NOT NULL, \
               gtid TEXT NOT NULL, \
               stored_at DATETIME(6) NOT NULL) ENGINE=InnoDB \
             COMMENT 'sluice: binary log positions of change captures'"
        ),
        format!("create table {CAPTURE_TABLE}"),
    )
    .await?;
    conn.exec_drop(
        format!(
            "REPLACE INTO {table} (name, server_id, file, pos, gtid, stored_at) \
             VALUES (?, ?, ?, ?, ?, UTC_TIMESTAMP(6))"
        ),
        (name, server_id, file, pos, gtid),
    )
    .await
    .map_err(|e| mysql_error(e, format!("store the position of capture {name}")))
}

/// Moves `name`'s stored position (never re-creates a dropped capture).
async fn update(conn: &mut Conn, config: &MariadbConfig, name: &str, acked: &Acked) -> Result<()> {
    conn.exec_drop(
        format!(
            "UPDATE {} SET file = ?, pos = ?, gtid = COALESCE(?, gtid), \
             stored_at = UTC_TIMESTAMP(6) WHERE name = ?",
            capture_table(config)
        ),
        (&acked.file, acked.pos, acked.gtid.as_deref(), name),
    )
    .await
    .map_err(|e| mysql_error(e, format!("store the position of capture {name}")))
}

/// An acknowledged position and the GTID of the last transaction up to it, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Acked {
    file: String,
    pos: u64,
    gtid: Option<String>,
}

/// Creates what capture of `request` needs and returns where it starts, with the snapshot of
/// exactly that point held for the initial load.
pub(crate) async fn create(
    config: &MariadbConfig,
    request: &CaptureRequest,
) -> Result<CaptureStart> {
    check(config, request).await?;
    let name = request.name.as_str();
    let mut snap = connect(config).await?;
    for sql in BEGIN_READ {
        query_drop(&mut snap, sql, "begin the capture's snapshot").await?;
    }
    let rows: Vec<(String, String)> = snap
        .query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(|e| mysql_error(e, "read the snapshot's binary log position"))?;
    let value = |k: &str| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let file = value("binlog_snapshot_file").unwrap_or_default();
    let pos: u64 = value("binlog_snapshot_position")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    if file.is_empty() || pos == 0 {
        return Err(ConnectorError::unsupported(format!(
            "capture {name} at {}: the server reported no binary log position for a snapshot \
             (is log_bin on?)",
            config.describe()
        )));
    }
    let mut conn = connect(config).await?;
    unlogged(&mut conn).await;
    store(
        &mut conn,
        config,
        name,
        server_id_for(config, name),
        &file,
        pos,
    )
    .await?;
    let _ = conn.disconnect().await;
    tracing::info!(capture = name, file = %file, pos, "capture created");
    Ok(CaptureStart {
        position: Position::Binlog { file, offset: pos },
        snapshot: Some(Box::new(HeldSnapshot::hold(snap))),
    })
}

/// Removes `name`'s row, and the table when it is then empty.
pub(crate) async fn drop(config: &MariadbConfig, name: &str) -> Result<()> {
    check_name(name)?;
    let mut conn = connect(config).await?;
    unlogged(&mut conn).await;
    let table = capture_table(config);
    match conn
        .exec_drop(format!("DELETE FROM {table} WHERE name = ?"), (name,))
        .await
    {
        Ok(()) => {}
        Err(mysql_async::Error::Server(e)) if e.code == ER_NO_SUCH_TABLE => return Ok(()),
        Err(e) => return Err(mysql_error(e, format!("drop capture {name}"))),
    }
    let left: Option<u64> = conn
        .query_first(format!("SELECT count(*) FROM {table}"))
        .await
        .map_err(|e| mysql_error(e, format!("drop capture {name}")))?;
    if left == Some(0) {
        query_drop(
            &mut conn,
            &format!("DROP TABLE IF EXISTS {table}"),
            format!("drop table {CAPTURE_TABLE}"),
        )
        .await?;
    }
    let _ = conn.disconnect().await;
    Ok(())
}

/// Whether `name` has a stored position.
pub(crate) async fn exists(config: &MariadbConfig, name: &str) -> Result<bool> {
    check_name(name)?;
    let mut conn = connect(config).await?;
    let found = stored(&mut conn, config, name).await?.is_some();
    let _ = conn.disconnect().await;
    Ok(found)
}

/// The binary logs the server has, with their sizes.
async fn binary_logs(conn: &mut Conn) -> Result<Vec<(String, u64)>> {
    let rows: Vec<mysql_async::Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| mysql_error(e, "list the binary logs"))?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((r.get::<String, _>(0)?, r.get::<u64, _>(1)?)))
        .collect())
}

/// `SHOW MASTER STATUS`: the file and offset the server writes next.
async fn master_status(conn: &mut Conn) -> Result<(String, u64)> {
    let row: Option<mysql_async::Row> = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .map_err(|e| mysql_error(e, "read the binary log position"))?;
    row.and_then(|r| Some((r.get::<String, _>(0)?, r.get::<u64, _>(1)?)))
        .ok_or_else(|| {
            ConnectorError::unsupported("the server writes no binary log (log_bin is off)")
        })
}

/// Bytes of log from (`file`, `pos`) to the server's current position.
fn bytes_behind(logs: &[(String, u64)], from: (&str, u64), to: (&str, u64)) -> u64 {
    if from.0 == to.0 {
        return to.1.saturating_sub(from.1);
    }
    let mut total = 0u64;
    let mut counting = false;
    for (name, size) in logs {
        if name == from.0 {
            counting = true;
            total += size.saturating_sub(from.1);
        } else if name == to.0 {
            total += to.1;
            break;
        } else if counting {
            total += size;
        }
    }
    total
}

/// How far the stored position of `name` is behind the server's.
pub(crate) async fn lag(config: &MariadbConfig, name: &str) -> Result<Option<CaptureLag>> {
    check_name(name)?;
    let mut conn = connect(config).await?;
    let Some(st) = stored(&mut conn, config, name).await? else {
        return Ok(None);
    };
    let (file, pos) = master_status(&mut conn).await?;
    let logs = binary_logs(&mut conn).await?;
    let hosts: Vec<mysql_async::Row> = conn.query("SHOW SLAVE HOSTS").await.unwrap_or_default();
    let active = hosts
        .iter()
        .any(|r| r.get::<u32, _>(0) == Some(st.server_id));
    let _ = conn.disconnect().await;
    Ok(Some(CaptureLag {
        bytes: bytes_behind(&logs, (&st.file, st.pos), (&file, pos)),
        active,
    }))
}

/// The server's current binary log position (`SHOW MASTER STATUS`).
pub(crate) async fn current_position(config: &MariadbConfig) -> Result<Position> {
    let mut conn = connect(config).await?;
    let (file, offset) = master_status(&mut conn).await?;
    let _ = conn.disconnect().await;
    Ok(Position::Binlog { file, offset })
}

fn purged(config: &MariadbConfig, name: &str, file: &str, pos: u64) -> ConnectorError {
    ConnectorError::new(
        ErrorKind::NotFound,
        format!(
            "capture {name} at {}: the binary log at {file}:{pos}, where it resumes, is no \
             longer on the server (purged); the capture must be activated again with a refresh",
            config.describe()
        ),
    )
}

/// Starts streaming the capture `request.name` from its stored position.
pub(crate) async fn open(
    config: &MariadbConfig,
    request: &CaptureRequest,
    options: CaptureOptions,
) -> Result<MariadbChangeStream> {
    let name = request.name.as_str();
    check_name(name)?;
    let mut sql = connect(config).await?;
    let Some(st) = stored(&mut sql, config, name).await? else {
        return Err(ConnectorError::not_found(format!(
            "capture {name} does not exist at {}; it must be created first",
            config.describe()
        )));
    };
    let logs = binary_logs(&mut sql).await?;
    if !logs.iter().any(|(f, _)| *f == st.file) {
        return Err(purged(config, name, &st.file, st.pos));
    }
    let mut writer = connect(config).await?;
    unlogged(&mut writer).await;
    let mut conn = connect(config).await?;
    let what = format!("start capture {name} at {}", config.describe());
    query_drop(&mut conn, "SET @mariadb_slave_capability = 4", &what).await?;
    query_drop(
        &mut conn,
        &format!(
            "SET @master_heartbeat_period = {}",
            options.heartbeat_interval.as_nanos().max(1_000_000)
        ),
        &what,
    )
    .await?;
    let request_stream = BinlogStreamRequest::new(st.server_id)
        .with_filename(st.file.as_bytes())
        .with_pos(st.pos);
    let binlog = conn
        .get_binlog_stream(request_stream)
        .await
        .map_err(|e| stream_error(e, config, name, &st.file, st.pos))?;
    tracing::info!(capture = name, file = %st.file, pos = st.pos, "capture started");
    let mut tables = HashMap::new();
    for (i, t) in request.tables.iter().enumerate() {
        tables.insert(
            (
                database_of(&t.table, &config.database).to_owned(),
                t.table.name.as_str().to_ascii_lowercase(),
            ),
            i,
        );
    }
    let acked = Arc::new(Mutex::new(None::<Acked>));
    let ack_task = tokio::spawn(write_acks(
        writer,
        config.clone(),
        name.to_owned(),
        Arc::clone(&acked),
        options.ack_interval,
    ));
    let now = Instant::now();
    Ok(MariadbChangeStream {
        binlog,
        sql,
        config: config.clone(),
        request: request.clone(),
        server_id: st.server_id,
        tables,
        maps: HashMap::new(),
        states: HashMap::new(),
        sent: HashMap::new(),
        out: VecDeque::new(),
        transaction: None,
        standalone: false,
        seen_format: false,
        file: st.file.clone(),
        position: st.pos,
        last_sent: now,
        options,
        acked,
        ack_task: Some(ack_task),
        stored: Some((st.file, st.pos)),
        gtid: None,
        commits: VecDeque::new(),
    })
}

/// Writes the newest acknowledged position every `interval`.
async fn write_acks(
    mut conn: Conn,
    config: MariadbConfig,
    name: String,
    acked: Arc<Mutex<Option<Acked>>>,
    interval: Duration,
) {
    let mut written: Option<Acked> = None;
    loop {
        tokio::time::sleep(interval).await;
        let now = acked.lock().ok().and_then(|a| a.clone());
        if let Some(now) = now
            && written.as_ref() != Some(&now)
        {
            match update(&mut conn, &config, &name, &now).await {
                Ok(()) => written = Some(now),
                Err(error) => {
                    tracing::warn!(capture = %name, error = %error, "storing the acknowledged position failed");
                    if let Ok(mut fresh) = connect(&config).await {
                        unlogged(&mut fresh).await;
                        conn = fresh;
                    }
                }
            }
        }
    }
}

fn stream_error(
    error: mysql_async::Error,
    config: &MariadbConfig,
    name: &str,
    file: &str,
    pos: u64,
) -> ConnectorError {
    if let mysql_async::Error::Server(e) = &error
        && e.code == ER_MASTER_FATAL_READING_BINLOG
    {
        return purged(config, name, file, pos).with_source(error);
    }
    mysql_error(
        error,
        format!(
            "capture {name} at {}: read the binary log",
            config.describe()
        ),
    )
}

/// A captured table as this stream knows its columns.
struct TableState {
    columns: Vec<ColumnDef>,
    codecs: Vec<Codec>,
    key: Vec<usize>,
    /// Columns the table map had when this was read.
    logged: usize,
}

/// A running capture: reads the binary log, decodes, and hands on [`CaptureMessage`]s.
pub struct MariadbChangeStream {
    binlog: BinlogStream,
    /// An ordinary connection for introspection.
    sql: Conn,
    config: MariadbConfig,
    request: CaptureRequest,
    server_id: u32,
    /// Request tables by (database, lowercase name).
    tables: HashMap<(String, String), usize>,
    /// Table map ids → request table (`None`: not captured).
    maps: HashMap<u64, Option<usize>>,
    states: HashMap<usize, TableState>,
    /// The last Relation sent per request table.
    sent: HashMap<usize, (Vec<ColumnDef>, Vec<usize>)>,
    out: VecDeque<CaptureMessage>,
    transaction: Option<OpenTransaction>,
    /// A GTID event announced one statement outside a transaction (DDL).
    standalone: bool,
    /// Whether the log's format description arrived (checksums are known from then on).
    seen_format: bool,
    file: String,
    /// The log position everything received so far is complete up to (between transactions).
    position: u64,
    last_sent: Instant,
    options: CaptureOptions,
    acked: Arc<Mutex<Option<Acked>>>,
    ack_task: Option<tokio::task::JoinHandle<()>>,
    stored: Option<(String, u64)>,
    /// The GTID of the event group being read.
    gtid: Option<String>,
    /// Recent commit ends with their GTIDs, oldest first, to store a GTID with an ack.
    commits: VecDeque<(Position, String)>,
}

fn event_time(event: &Event) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(event.header().timestamp()), 0).unwrap_or_default()
}

/// The table a `TRUNCATE` statement names, as (database or `None`, table).
fn truncated_table(query: &str) -> Option<(Option<String>, String)> {
    let q = query.trim();
    let mut words = q.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("truncate") {
        return None;
    }
    let mut target = words.next()?;
    if target.eq_ignore_ascii_case("table") {
        target = words.next()?;
    }
    let target = target.trim_end_matches(';');
    let parts: Vec<String> = split_name(target);
    match parts.as_slice() {
        [t] => Some((None, t.clone())),
        [d, t] => Some((Some(d.clone()), t.clone())),
        _ => None,
    }
}

/// Splits `` `a`.`b` `` or `a.b` into unquoted parts.
fn split_name(name: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' if quoted && chars.peek() == Some(&'`') => {
                chars.next();
                cur.push('`');
            }
            '`' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

impl MariadbChangeStream {
    /// Reads the columns of request table `index` from information_schema, fitted to a table map
    /// of `logged` columns, and announces them when they changed.
    async fn describe(&mut self, index: usize, logged: usize) -> Result<()> {
        let table = self.request.tables[index].table.clone();
        let info = table_info(&mut self.sql, &self.config.database, &table)
            .await?
            .ok_or_else(|| {
                ConnectorError::schema(format!(
                    "table {table} no longer exists at {}",
                    self.config.describe()
                ))
            })?;
        if logged > info.columns.len() {
            return Err(ConnectorError::schema(format!(
                "table {table}: the binary log has rows of {logged} columns but the table has {} \
                 now (a column was dropped since); the capture must be activated again with a \
                 refresh",
                info.columns.len()
            )));
        }
        // Columns added since the logged rows were written are appended last: the logged rows
        // have the first `logged` ones.
        let natives = &info.columns[..logged];
        let mut columns = Vec::with_capacity(logged);
        let mut codecs = Vec::with_capacity(logged);
        for c in natives {
            let codec = codec_of(&table, c)?;
            let declared = self.request.tables[index]
                .columns
                .iter()
                .find(|d| d.name.as_str().eq_ignore_ascii_case(&c.name));
            let name = ColumnName::new(c.name.clone()).map_err(|e| {
                ConnectorError::schema(format!(
                    "table {table} column {:?} cannot be carried: {e}",
                    c.name
                ))
            })?;
            columns.push(ColumnDef {
                name,
                data_type: codec.data_type,
                nullable: declared.is_none_or(|d| d.nullable) && c.nullable,
                native_type: Some(c.column_type.clone()),
            });
            codecs.push(codec);
        }
        let key: Vec<usize> = info
            .primary_key()
            .iter()
            .filter_map(|k| natives.iter().position(|c| c.name.eq_ignore_ascii_case(k)))
            .collect();
        if key.is_empty() {
            return Err(ConnectorError::schema(format!(
                "table {table} has no primary key (or its key columns are not logged), so its \
                 changes cannot be applied to one row"
            )));
        }
        let announce = self.sent.get(&index) != Some(&(columns.clone(), key.clone()));
        if announce {
            self.flush_part();
            self.sent.insert(index, (columns.clone(), key.clone()));
            self.out.push_back(CaptureMessage::Relation {
                table,
                columns: columns.clone(),
                key: key.clone(),
            });
        }
        self.states.insert(
            index,
            TableState {
                columns,
                codecs,
                key,
                logged,
            },
        );
        Ok(())
    }

    fn flush_part(&mut self) {
        if let Some(part) = self
            .transaction
            .as_mut()
            .and_then(OpenTransaction::take_part)
        {
            self.out.push_back(part);
        }
    }

    fn push(&mut self, change: RowChange) -> Result<()> {
        let open = self.transaction.as_mut().ok_or_else(|| {
            ConnectorError::internal("the binary log has a row change outside a transaction")
        })?;
        if let Some(part) = open.push(change, self.options.part_changes, self.options.part_bytes) {
            self.out.push_back(part);
        }
        Ok(())
    }

    fn idle(&mut self, at: Option<DateTime<Utc>>) {
        if self.transaction.is_none() {
            self.out.push_back(CaptureMessage::Idle {
                position: Position::Binlog {
                    file: self.file.clone(),
                    offset: self.position,
                },
                at,
            });
        }
    }

    fn begin(&mut self, start: u64, at: DateTime<Utc>) {
        self.transaction = Some(OpenTransaction::new(TransactionId {
            commit: Position::Binlog {
                file: self.file.clone(),
                offset: start,
            },
            commit_time: at,
        }));
    }

    /// Remembers that the event group with the current GTID ends at `end`.
    fn remember(&mut self, end: u64) {
        if let Some(gtid) = self.gtid.take() {
            if self.commits.len() >= REMEMBERED_COMMITS {
                self.commits.pop_front();
            }
            self.commits.push_back((
                Position::Binlog {
                    file: self.file.clone(),
                    offset: end,
                },
                gtid,
            ));
        }
    }

    /// The GTID of the last event group ending at or before `position`.
    fn gtid_at(&mut self, position: &Position) -> Option<String> {
        let at = self
            .commits
            .iter()
            .rposition(|(p, _)| p.cmp_same(position) != Some(std::cmp::Ordering::Greater))?;
        self.commits.drain(..at);
        self.commits.front().map(|(_, g)| g.clone())
    }

    fn commit(&mut self, end: u64, at: DateTime<Utc>) {
        self.flush_part();
        self.remember(end);
        self.position = self.position.max(end);
        let Some(open) = self.transaction.take() else {
            return;
        };
        if open.count == 0 {
            // Transactions of other tables: their end is worth sending now and then only.
            if self.last_sent.elapsed() >= EMPTY_IDLE_INTERVAL {
                self.idle(Some(at));
            }
        } else {
            self.out.push_back(CaptureMessage::Commit {
                transaction: open.id,
                ack: Position::Binlog {
                    file: self.file.clone(),
                    offset: end,
                },
                change_count: open.count,
            });
        }
    }

    /// A statement outside row events: transaction boundaries, TRUNCATE, DDL.
    async fn on_query(&mut self, event: &Event, schema: &str, query: &str) -> Result<()> {
        let header = event.header();
        let end = u64::from(header.log_pos());
        let start = end.saturating_sub(u64::from(header.event_size()));
        let at = event_time(event);
        let word = query.trim().to_ascii_uppercase();
        if word == "BEGIN" {
            self.begin(start, at);
            return Ok(());
        }
        if word == "COMMIT" {
            self.commit(end, at);
            return Ok(());
        }
        if word == "ROLLBACK" {
            self.transaction = None;
            self.position = self.position.max(end);
            return Ok(());
        }
        if self.transaction.is_some() && !self.standalone {
            // A statement logged inside a transaction (mixed logging): no rows to take.
            return Ok(());
        }
        self.standalone = false;
        // DDL that may concern a captured table (run in its database, or naming it): a later
        // table map reads the columns again. DDL of other databases changes nothing here.
        let lower = query.to_ascii_lowercase();
        if self
            .tables
            .keys()
            .any(|(db, table)| db == schema || lower.contains(table.as_str()))
        {
            self.states.clear();
        }
        if let Some((db, name)) = truncated_table(query) {
            let db = db.unwrap_or_else(|| schema.to_owned());
            if let Some(&index) = self.tables.get(&(db, name.to_ascii_lowercase())) {
                let table = self.request.tables[index].table.clone();
                self.transaction = None;
                self.begin(start, at);
                self.push(RowChange {
                    table,
                    op: ChangeOp::Truncate,
                    before: None,
                    before_is_key: false,
                    after: None,
                    unchanged: Vec::new(),
                })?;
                self.commit(end, at);
                return Ok(());
            }
        }
        self.transaction = None;
        self.remember(end);
        self.position = self.position.max(end);
        self.idle(Some(at));
        Ok(())
    }

    async fn on_rows(&mut self, event: &Event, rows: RowsEventData<'_>) -> Result<()> {
        let table_id = rows.table_id();
        let Some(&Some(index)) = self.maps.get(&table_id) else {
            return Ok(());
        };
        let Some(tme) = self.binlog.get_tme(table_id) else {
            return Err(ConnectorError::internal(format!(
                "the binary log has rows of table map {table_id} before the map"
            )));
        };
        let logged = usize::try_from(tme.columns_count()).unwrap_or(usize::MAX);
        let column_types: Vec<ColumnType> = (0..logged)
            .map(|i| {
                tme.get_column_type(i)
                    .ok()
                    .flatten()
                    .unwrap_or(ColumnType::MYSQL_TYPE_NULL)
            })
            .collect();
        let op = match &rows {
            RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => {
                ChangeOp::Insert
            }
            RowsEventData::UpdateRowsEvent(_)
            | RowsEventData::UpdateRowsEventV1(_)
            | RowsEventData::PartialUpdateRowsEvent(_) => ChangeOp::Update,
            RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => {
                ChangeOp::Delete
            }
        };
        let before_present: Vec<bool> = match rows.columns_before_image() {
            Some(b) => (0..logged)
                .map(|i| b.get(i).map(|x| *x).unwrap_or(false))
                .collect(),
            None => Vec::new(),
        };
        let after_present: Vec<bool> = match rows.columns_after_image() {
            Some(b) => (0..logged)
                .map(|i| b.get(i).map(|x| *x).unwrap_or(false))
                .collect(),
            None => Vec::new(),
        };
        let state = self
            .states
            .get(&index)
            .ok_or_else(|| ConnectorError::internal("a captured table's columns are not known"))?;
        let table = self.request.tables[index].table.clone();
        let width = state.columns.len();
        let names: Vec<String> = state
            .columns
            .iter()
            .map(|c| c.name.as_str().to_owned())
            .collect();
        let describe = |i: usize| match names.get(i) {
            Some(n) => format!("column {n}"),
            None => format!("column {}", i + 1),
        };
        let data = |reason: String| {
            ConnectorError::data(format!(
                "capture {}: table {table} {reason}",
                self.request.name
            ))
        };
        let mut changes = Vec::new();
        for item in rows.rows(tme) {
            let (before, after) = item.map_err(|e| {
                ConnectorError::data(format!(
                    "capture {}: a row change of table {table} could not be read",
                    self.request.name
                ))
                .with_source(e)
            })?;
            let before = before
                .map(|r| image_cells(r, &before_present, &column_types, &state.codecs, describe))
                .transpose()
                .map_err(data)?;
            let after = after
                .map(|r| image_cells(r, &after_present, &column_types, &state.codecs, describe))
                .transpose()
                .map_err(data)?;
            changes.push(build_change(
                &table, op, &state.key, &names, width, before, after,
            )?);
        }
        let _ = event;
        for change in changes {
            self.push(change)?;
        }
        Ok(())
    }

    async fn on_event(&mut self, event: Event) -> Result<()> {
        let header = event.header();
        let raw = header.event_type_raw();
        let end = u64::from(header.log_pos());
        if raw == MARIADB_GTID_EVENT {
            let gtid = MariadbGtid::parse(event.data()).ok_or_else(|| {
                ConnectorError::data("the binary log has a GTID event too short to read")
            })?;
            self.gtid = Some(gtid.render(header.server_id()));
            if gtid.standalone {
                self.standalone = true;
            } else {
                let start = end.saturating_sub(u64::from(header.event_size()));
                self.begin(start, event_time(&event));
            }
            return Ok(());
        }
        let data = match event.read_data() {
            Ok(Some(data)) => data,
            Ok(None) => {
                // Other MariaDB events (annotate, checkpoint, GTID list).
                if self.transaction.is_none() && end > 0 {
                    self.position = self.position.max(end);
                }
                return Ok(());
            }
            Err(e) => {
                return Err(ConnectorError::data(format!(
                    "capture {}: an event of the binary log could not be read",
                    self.request.name
                ))
                .with_source(e));
            }
        };
        match data {
            EventData::FormatDescriptionEvent(_) => self.seen_format = true,
            EventData::RotateEvent(rotate) => {
                let raw = rotate.name_raw();
                // The rotate the server sends first, before the format description, still
                // carries its checksum, which the reader could not know to cut off.
                let raw = if self.seen_format || raw.len() <= 4 {
                    raw
                } else {
                    &raw[..raw.len() - 4]
                };
                let name = String::from_utf8_lossy(raw).into_owned();
                if name != self.file {
                    self.file = name;
                    self.position = 0;
                }
                self.position = self.position.max(rotate.position());
            }
            EventData::HeartbeatEvent => {
                if self.transaction.is_none() && end > 0 {
                    self.position = self.position.max(end);
                }
            }
            EventData::QueryEvent(q) => {
                let schema = q.schema().into_owned();
                let query = q.query().into_owned();
                self.on_query(&event, &schema, &query).await?;
            }
            EventData::XidEvent(_) => self.commit(end, event_time(&event)),
            EventData::TableMapEvent(tme) => {
                let key = (
                    tme.database_name().into_owned(),
                    tme.table_name().to_ascii_lowercase(),
                );
                let index = self.tables.get(&key).copied();
                self.maps.insert(tme.table_id(), index);
                if let Some(index) = index {
                    let logged = usize::try_from(tme.columns_count()).unwrap_or(usize::MAX);
                    if self.states.get(&index).is_none_or(|s| s.logged != logged) {
                        self.describe(index, logged).await?;
                    }
                }
            }
            EventData::RowsEvent(rows) => self.on_rows(&event, rows).await?,
            _ => {
                if self.transaction.is_none() && end > 0 {
                    self.position = self.position.max(end);
                }
            }
        }
        Ok(())
    }

    /// The configuration the stream reads with.
    pub fn options(&self) -> &CaptureOptions {
        &self.options
    }

    /// The pseudo-replica id the stream reads the log as.
    pub fn server_id(&self) -> u32 {
        self.server_id
    }
}

/// A [`RowChange`] from decoded images (`None` cells: not in the image).
fn build_change(
    table: &TableRef,
    op: ChangeOp,
    key: &[usize],
    names: &[String],
    width: usize,
    before: Option<Vec<Option<Value>>>,
    after: Option<Vec<Option<Value>>>,
) -> Result<RowChange> {
    let fit = |mut cells: Vec<Option<Value>>| {
        cells.resize(width, None);
        cells.truncate(width);
        cells
    };
    let before = before.map(fit);
    let after = after.map(fit);
    let missing_key = |image: &[Option<Value>], what: &str| -> Result<()> {
        for &k in key {
            if image.get(k).is_none_or(Option::is_none) {
                return Err(ConnectorError::data(format!(
                    "table {table}: the {what} image of a change lacks key column {} \
                     (binlog_row_image must log the primary key)",
                    names.get(k).map_or("?", String::as_str)
                )));
            }
        }
        Ok(())
    };
    let (before, before_is_key) = match before {
        None => (None, false),
        Some(cells) => {
            missing_key(&cells, "old")?;
            let whole = cells.iter().all(Option::is_some);
            let values: Vec<Value> = cells
                .into_iter()
                .map(|c| c.unwrap_or(Value::Null))
                .collect();
            (Some(values), !whole)
        }
    };
    let mut unchanged = Vec::new();
    let after = match after {
        None => None,
        Some(cells) => {
            let mut values = Vec::with_capacity(width);
            for (i, cell) in cells.into_iter().enumerate() {
                match cell {
                    Some(v) => values.push(v),
                    None if op == ChangeOp::Insert => {
                        return Err(ConnectorError::data(format!(
                            "table {table}: an insert was logged without column {} \
                             (binlog_row_image = MINIMAL leaves out columns it cannot; use FULL \
                             or NOBLOB)",
                            names.get(i).map_or("?", String::as_str)
                        )));
                    }
                    None => {
                        // Not logged because unchanged: a key column keeps its old value.
                        match (&before, key.contains(&i)) {
                            (Some(b), true) => values.push(b[i].clone()),
                            _ => {
                                unchanged.push(i);
                                values.push(Value::Null);
                            }
                        }
                    }
                }
            }
            Some(values)
        }
    };
    Ok(RowChange {
        table: table.clone(),
        op,
        before,
        before_is_key,
        after,
        unchanged,
    })
}

#[async_trait]
impl ChangeStream for MariadbChangeStream {
    async fn next(&mut self) -> Result<CaptureMessage> {
        loop {
            if let Some(message) = self.out.pop_front() {
                self.last_sent = Instant::now();
                return Ok(message);
            }
            let now = Instant::now();
            let idle_at = self.last_sent + self.options.idle_interval;
            if self.transaction.is_none() && now >= idle_at {
                self.idle(None);
                continue;
            }
            let wake = if self.transaction.is_none() {
                idle_at
            } else {
                now + Duration::from_secs(3600)
            };
            match tokio::time::timeout_at(wake, self.binlog.next()).await {
                Err(_) => continue,
                Ok(Some(Ok(event))) => self.on_event(event).await?,
                Ok(Some(Err(e))) => {
                    return Err(stream_error(
                        e,
                        &self.config,
                        &self.request.name,
                        &self.file,
                        self.position,
                    ));
                }
                Ok(None) => {
                    return Err(ConnectorError::new(
                        ErrorKind::Connection,
                        format!(
                            "capture {} at {}: the binary log stream ended",
                            self.request.name,
                            self.config.describe()
                        ),
                    ));
                }
            }
        }
    }

    fn ack(&mut self, position: &Position) -> Result<()> {
        match position {
            Position::Binlog { file, offset } => {
                let gtid = self.gtid_at(position);
                if let Ok(mut a) = self.acked.lock() {
                    *a = Some(Acked {
                        file: file.clone(),
                        pos: *offset,
                        gtid,
                    });
                }
                Ok(())
            }
            other => Err(ConnectorError::internal(format!(
                "capture {}: {other} is not a binary log position",
                self.request.name
            ))),
        }
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        if let Some(task) = self.ack_task.take() {
            task.abort();
        }
        let last = self.acked.lock().ok().and_then(|a| a.clone());
        let name = self.request.name.clone();
        let mut result = Ok(());
        if let Some(last) = last
            && self.stored.as_ref() != Some(&(last.file.clone(), last.pos))
        {
            unlogged(&mut self.sql).await;
            result = update(&mut self.sql, &self.config, &name, &last).await;
        }
        let this = *self;
        let _ = tokio::time::timeout(Duration::from_secs(5), this.binlog.close()).await;
        let _ = this.sql.disconnect().await;
        result
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn capture_names_are_plain_identifiers() {
        for good in ["c", "hub1_ch1_src", &"a".repeat(63)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Upper", "a-b", "x'; DROP", &"a".repeat(64)] {
            assert_eq!(check_name(bad).unwrap_err().kind(), ErrorKind::Schema);
        }
    }

    #[test]
    fn server_ids_are_stable_and_distinct() {
        let c = MariadbConfig::new("shop");
        assert_eq!(server_id_for(&c, "a"), server_id_for(&c, "a"));
        assert_ne!(server_id_for(&c, "a"), server_id_for(&c, "b"));
        assert!(server_id_for(&c, "a") >= 0x8000_0000);
    }

    #[test]
    fn truncate_statements_name_their_table() {
        assert_eq!(
            truncated_table("TRUNCATE TABLE `db`.`t``x`"),
            Some((Some("db".into()), "t`x".into()))
        );
        assert_eq!(truncated_table("truncate t1"), Some((None, "t1".into())));
        assert_eq!(truncated_table("ALTER TABLE t ADD c INT"), None);
    }

    #[test]
    fn lag_spans_files() {
        let logs = vec![("b.1".to_owned(), 1000), ("b.2".to_owned(), 500)];
        assert_eq!(bytes_behind(&logs, ("b.1", 400), ("b.1", 900)), 500);
        assert_eq!(bytes_behind(&logs, ("b.1", 400), ("b.2", 300)), 900);
    }

    #[test]
    fn minimal_updates_mark_unsent_columns() {
        let t = TableRef::new(sluice_model::BaseName::new("t").unwrap());
        let names = vec!["id".to_owned(), "a".to_owned(), "b".to_owned()];
        let change = build_change(
            &t,
            ChangeOp::Update,
            &[0],
            &names,
            3,
            Some(vec![Some(Value::Int32(1)), None, None]),
            Some(vec![None, Some(Value::Int32(5)), None]),
        )
        .unwrap();
        assert!(change.before_is_key);
        assert_eq!(
            change.after,
            Some(vec![Value::Int32(1), Value::Int32(5), Value::Null])
        );
        assert_eq!(change.unchanged, vec![2]);
        let no_key = build_change(
            &t,
            ChangeOp::Delete,
            &[0],
            &names,
            3,
            Some(vec![None, Some(Value::Int32(5)), None]),
            None,
        );
        assert!(no_key.is_err());
    }
}
