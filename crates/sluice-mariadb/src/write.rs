//! Batch writes: rows stream into one `LOAD DATA LOCAL INFILE` fed from memory, batch by batch,
//! on a connection of the write's own; every strategy is atomic on InnoDB.
//!
//! * `truncate_load`: `START TRANSACTION`, `DELETE FROM t [WHERE (filter)]` (`TRUNCATE` would
//!   commit), the load, `COMMIT`. A truncate_load of the whole table (no filter) of an existing
//!   table runs as a `staging_swap` instead (below) when the swap keeps everything about the table:
//!   deleting every row costs about as much as loading them again (undo, and the row binlog logs
//!   every deleted row), while the swap's rename and drop cost next to nothing. The swap is taken
//!   only when `CREATE TABLE … LIKE` plus the kept `AUTO_INCREMENT` copy the table whole: an InnoDB
//!   table without triggers, without foreign keys from or to it, without its own `DATA DIRECTORY`
//!   or `INDEX DIRECTORY`, no table that is not sluice's under one of the swap's names, and a user
//!   granted `CREATE`, `ALTER`, `DROP` and `INSERT` on the database (globally or on the database).
//!   Indexes, checks, comments, partitioning and table options come with `LIKE`; grants are by name
//!   and stay with `t`. Otherwise it deletes and reloads. Either way the write takes the swap's
//!   lock. One difference remains: rows other sessions write into `t` while the load runs do not
//!   survive the swap (with `DELETE` they wait for the commit and land on top). A truncate_load
//!   that creates `t` creates and loads a marked stage and renames it to `t` (so `t` appears
//!   whole, and loads in several sessions), when the swap's names are free and the user holds
//!   the same privileges; else it creates `t` and loads it in one transaction.
//!   Measured and not used: InnoDB's bulk insert into an empty table (`unique_checks=0,
//!   foreign_key_checks=0`, MDEV-24621) cost more server time than a plain load into the fresh
//!   table (MariaDB 10.11, 2,000,000 bench rows arriving in key order: 29.7 s of server CPU
//!   against 19.8 s), see docs/benchmarks.md.
//! * `staging_swap`: under a named lock (`GET_LOCK`) that serialises swaps of one table, `CREATE
//!   TABLE t__sluice_new LIKE t`, then in one `ALTER TABLE` marked by the table comment
//!   `sluice:stage` and renamed `t__sluice_stage`; the rows a target filter keeps copied over and
//!   the load in one transaction; then in one `ALTER TABLE` the target's own comment restored and
//!   the table renamed back to `t__sluice_new`, one atomic `RENAME TABLE t TO t__sluice_old,
//!   t__sluice_new TO t` and `DROP TABLE t__sluice_old`. Every step is one statement, so a write
//!   killed at any point leaves `t` with its old or its new contents (never missing, never with
//!   the marker) and at most: a marked stage, `t__sluice_new`, or `t__sluice_old` next to `t`.
//!   A failure before the rename drops the stage and leaves `t` untouched. Triggers and foreign
//!   keys would not survive the swap, so a target with either is refused. The stage gets `t`'s
//!   `AUTO_INCREMENT` counter (which `LIKE` starts over).
//!   With `LOAD DATA` and `Database_Load_Sessions` above 1 (the default is 2), the rows of a
//!   staging swap load in that many sessions side by side, 1 MiB chunks dealt out in turn, so the
//!   server parses and inserts on as many cores. Each session's load commits on its own (no
//!   `START TRANSACTION`): the stage is invisible until the rename, so the swap stays atomic, and
//!   without one transaction holding the first session's rows no session waits on another's
//!   uncommitted key. Every session's stored row count and warnings are checked before the swap;
//!   a failure in any drops the stage.
//! * `append`: `START TRANSACTION`, the load, `COMMIT`.
//! * `upsert`: rows load into a temporary copy of `t`, deleted keys into another; at commit, in one
//!   transaction, the deletes join away target rows and the rows go in with `INSERT … SELECT … ON
//!   DUPLICATE KEY UPDATE` (or delete-then-insert when `t`'s only unique key is not exactly the key).
//!
//! `LOAD DATA LOCAL` turns bad values and duplicate keys into warnings and skips rows. So values are
//! checked before they are encoded (never rounded or cut), and after each load the row count and
//! the warning count must be exactly what was sent and zero, or the write rolls back. When the
//! server refuses local infile (or `Database_Local_Infile=false`), rows go in as multi-row prepared
//! `INSERT`s instead, with a warning once per write.
//!
//! Leftovers of an interrupted staging swap are cleared when the next write of the table starts,
//! whatever its strategy, under the swap's lock (a write that is not a staging swap skips this
//! while a swap of the table runs): a marked stage, `t__sluice_new` and a `t__sluice_old` next
//! to a table `t` are dropped, and a missing `t` with `t__sluice_old` present (what a swap by two separate
//! renames could leave) gets its old contents back by renaming `t__sluice_old` to `t`. Only tables
//! of exactly these names in `t`'s own database are touched, and a stage without the marker never.
//!
//! The statements come from [`build_script`], which both the plan and the real write use.

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use sluice_connector::{
    ConnectorError, ErrorKind, PlannedStatement, Result, TableWriter, WriteRequest, WriteStrategy,
    WriteSummary,
};
use sluice_model::{BaseName, RowBatch, TableRef, describe_key};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::MariadbConfig;
use crate::connect::connect;
use crate::error::mysql_error;
use crate::introspect::{TableInfo, codec_of, table_info};
use crate::types::{
    Codec, ColumnDdl, accepts, column_ddl, database_of, filter_sql, put_tsv, quote_ident,
    quote_literal, quote_sibling, quote_table, to_field, to_param, varchar_budget,
};

/// Suffix of the staging table's name.
const STAGE_SUFFIX: &str = "__sluice_stage";
/// Suffix of the staging table's name while no rows load into it: just created from the target,
/// or loaded and about to be swapped in.
const NEW_SUFFIX: &str = "__sluice_new";
/// Suffix of the target's name while it is swapped out.
const OLD_SUFFIX: &str = "__sluice_old";
/// Suffix of the temporary table upserted rows load into.
const UPSERT_SUFFIX: &str = "__sluice_up";
/// Suffix of the temporary table deleted keys load into.
const DELETE_SUFFIX: &str = "__sluice_del";
/// The table comment that marks a staging table as sluice's.
const STAGE_MARKER: &str = "sluice:stage";
/// Bytes of encoded rows per chunk sent to the server.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks in flight between the encoder and the connection.
const CHUNKS_IN_FLIGHT: usize = 4;
/// The most bytes of a chunk handed to the driver in one write.
///
/// mysql_async copies every write into a buffer from its process-wide pool (up to 128 buffers,
/// kept up to 4 MiB each) and the pool hands its buffers out in turn, so writes of whole 1 MiB
/// chunks left every pooled buffer at 1 MiB: a hub server kept about 120 MB after its first
/// loads into MariaDB. Pieces of 64 KiB bound what the pool keeps from loads to 8 MiB.
const INFILE_WRITE_BYTES: usize = 64 << 10;
/// Rows per `INSERT` of the fallback path (also bounded by bytes and placeholders).
const INSERT_ROWS: usize = 1000;
/// Bytes of values per `INSERT` of the fallback path. Each statement is built in a buffer of
/// mysql_async's pool, which keeps its buffers at up to 4 MiB (see [`INFILE_WRITE_BYTES`]), so
/// this bounds what the fallback leaves there to 128 × 256 KiB; about 1,000 rows of 250 bytes.
const INSERT_BYTES: usize = 256 << 10;
/// Seconds to wait for another staging swap of the same table to finish.
const LOCK_WAIT_SECS: u32 = 60;
/// How long a load may make no progress before sluice checks that its session still exists. A
/// killed session can leave the socket half-closed, and a writer waiting for the server to read
/// would otherwise wait for TCP to give up (minutes).
const STALL_CHECK: std::time::Duration = std::time::Duration::from_secs(2);
/// Sets how long a session loading a stage beside others waits for another's row lock.
const LOAD_LOCK_WAIT_SQL: &str = "SET SESSION innodb_lock_wait_timeout = 2";
/// MariaDB's identifier length limit, in characters.
const MAX_IDENT_CHARS: usize = 64;

/// How rows reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// `LOAD DATA LOCAL INFILE` fed from memory.
    Load,
    /// Multi-row prepared `INSERT`s.
    Insert,
}

/// A table rows are loaded into, with its column list.
#[derive(Debug, Clone)]
pub(crate) struct LoadTarget {
    table: String,
    columns: Vec<String>,
}

impl LoadTarget {
    fn load_sql(&self) -> String {
        format!(
            "LOAD DATA LOCAL INFILE 'sluice' INTO TABLE {} CHARACTER SET binary \
             FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
            self.table,
            self.columns.join(", ")
        )
    }

    fn insert_sql(&self, rows: usize) -> String {
        let one = format!("({})", vec!["?"; self.columns.len()].join(", "));
        format!(
            "INSERT INTO {} ({}) VALUES {}",
            self.table,
            self.columns.join(", "),
            vec![one; rows.max(1)].join(", ")
        )
    }

    fn planned(&self, method: Method) -> PlannedStatement {
        match method {
            Method::Load => PlannedStatement::once(self.load_sql()),
            Method::Insert => PlannedStatement::per_row(self.insert_sql(1)),
        }
    }
}

/// How the upsert moves loaded rows into the target at commit.
#[derive(Debug, Clone)]
enum Merge {
    /// `INSERT … SELECT` whose affected row count must equal the rows loaded.
    Exact(String),
    /// `INSERT … ON DUPLICATE KEY UPDATE` (affected rows count updates twice).
    Upsert(String),
}

/// The statements of one write, given the target as it is.
#[derive(Debug, Clone)]
pub(crate) struct WriteScript {
    /// Named lock held for the whole write (staging swap).
    lock: Option<String>,
    /// Named lock taken without waiting around `recover` (a write that is not a staging swap).
    recover_lock: Option<String>,
    /// Clears what an interrupted staging swap left, before anything else.
    recover: Vec<Recovery>,
    /// Creates the target (not a staging swap, which creates its stage in `setup`).
    create: Option<String>,
    /// Run once before any row.
    setup: Vec<String>,
    /// Where rows go.
    rows: LoadTarget,
    /// Where deleted keys go (upsert).
    deletes: Option<LoadTarget>,
    /// Run at commit before the merge.
    finish: Vec<String>,
    /// The upsert's merge.
    merge: Option<Merge>,
    /// Run after the merge: `COMMIT` and what follows it.
    commit: Vec<String>,
    /// Run after the commit; a failure leaves a leftover the next write clears, and is logged.
    cleanup: Vec<String>,
    /// Run when the write is abandoned.
    abandon: Vec<String>,
    /// Target codec of each written column.
    codecs: Vec<Codec>,
    /// How rows reach the server.
    method: Method,
    /// Whether the target is created.
    creates: bool,
    /// Sessions loading the rows side by side (more than one only into a staging table).
    sessions: usize,
}

impl WriteScript {
    pub(crate) fn planned(&self) -> Vec<PlannedStatement> {
        let mut out = Vec::new();
        if let Some(lock) = &self.lock {
            out.push(PlannedStatement::once(lock_sql(lock)));
        }
        if let Some(lock) = &self.recover_lock {
            out.push(PlannedStatement::once(try_lock_sql(lock)));
        }
        out.extend(self.recover.iter().map(|r| PlannedStatement::once(&r.sql)));
        if let Some(lock) = &self.recover_lock {
            out.push(PlannedStatement::once(unlock_sql(lock)));
        }
        out.extend(self.create.iter().map(PlannedStatement::once));
        out.extend(self.setup.iter().map(PlannedStatement::once));
        out.push(self.rows.planned(self.method));
        if let Some(deletes) = &self.deletes {
            out.push(deletes.planned(self.method));
        }
        out.extend(self.finish.iter().map(PlannedStatement::once));
        match &self.merge {
            Some(Merge::Exact(sql) | Merge::Upsert(sql)) => out.push(PlannedStatement::once(sql)),
            None => {}
        }
        out.extend(self.commit.iter().map(PlannedStatement::once));
        out.extend(self.cleanup.iter().map(PlannedStatement::once));
        if let Some(lock) = &self.lock {
            out.push(PlannedStatement::once(unlock_sql(lock)));
        }
        out
    }
}

fn lock_sql(name: &str) -> String {
    format!("SELECT GET_LOCK({}, {LOCK_WAIT_SECS})", quote_literal(name))
}

/// Takes the lock only if it is free.
fn try_lock_sql(name: &str) -> String {
    format!("SELECT GET_LOCK({}, 0)", quote_literal(name))
}

fn unlock_sql(name: &str) -> String {
    format!("SELECT RELEASE_LOCK({})", quote_literal(name))
}

/// Runs a `GET_LOCK`: whether the lock was obtained.
async fn take_lock(conn: &mut Conn, sql: &str, table: &TableRef) -> Result<bool> {
    let got: Option<Option<i64>> = conn
        .query_first(sql)
        .await
        .map_err(|e| mysql_error(e, format!("take the staging swap lock of {table}")))?;
    Ok(got.flatten() == Some(1))
}

/// FNV-1a, for short stable names derived from long ones.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `base` + `suffix`, shortened with a hash when MariaDB's 64-character limit requires.
fn sibling_name(base: &str, suffix: &str) -> String {
    let full = format!("{base}{suffix}");
    if full.chars().count() <= MAX_IDENT_CHARS {
        return full;
    }
    let keep = MAX_IDENT_CHARS - suffix.chars().count() - 9;
    let head: String = base.chars().take(keep).collect();
    format!("{head}_{:08x}{suffix}", fnv(base) as u32)
}

/// The name of the lock that serialises staging swaps of `table`.
fn lock_name(db: &str, table: &TableRef) -> String {
    format!("sluice:{:016x}", fnv(&format!("{db}.{}", table.name)))
}

/// The tables a staging swap of one target uses next to it, by exact name.
#[derive(Debug, Clone)]
struct SwapNames {
    /// Rows load into it; it carries [`STAGE_MARKER`].
    stage: String,
    /// The stage while no rows load into it, with the target's own comment.
    new: String,
    /// The target's previous contents, from the swap to their drop.
    old: String,
}

impl SwapNames {
    fn of(table: &TableRef) -> Self {
        let base = table.name.as_str();
        SwapNames {
            stage: sibling_name(base, STAGE_SUFFIX),
            new: sibling_name(base, NEW_SUFFIX),
            old: sibling_name(base, OLD_SUFFIX),
        }
    }
}

/// A table found by name next to a target.
#[derive(Debug, Clone)]
struct Found {
    /// `BASE TABLE`, `VIEW`, …
    table_type: String,
    comment: String,
}

impl Found {
    fn is_table(&self) -> bool {
        self.table_type == "BASE TABLE"
    }

    fn is_marked_stage(&self) -> bool {
        self.is_table() && self.comment == STAGE_MARKER
    }
}

/// What sits, under exactly the target's name and its staging swap's names, in the target's
/// database: the target itself and what an interrupted staging swap left.
#[derive(Debug, Clone, Default)]
pub(crate) struct Leftovers {
    target: Option<Found>,
    stage: Option<Found>,
    new: Option<Found>,
    old: Option<Found>,
}

/// What a recovery statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecoveryKind {
    /// The target is missing: its previous contents are renamed back.
    RestoreTarget,
    /// A table of an interrupted staging swap is dropped.
    Drop,
}

/// One statement that clears what an interrupted staging swap left.
#[derive(Debug, Clone)]
struct Recovery {
    kind: RecoveryKind,
    /// The leftover's name.
    leftover: String,
    sql: String,
}

impl Leftovers {
    /// Whether anything but the target was found.
    fn any(&self) -> bool {
        self.stage.is_some() || self.new.is_some() || self.old.is_some()
    }

    /// The target alone, leftovers ignored.
    fn target_only(self) -> Self {
        Leftovers {
            target: self.target,
            ..Leftovers::default()
        }
    }

    /// Whether the target is missing and its previous contents wait under the old name.
    fn restores_target(&self) -> bool {
        self.target.is_none() && self.old.as_ref().is_some_and(Found::is_table)
    }

    /// The statements that clear the leftovers: the old contents renamed back when the target is
    /// missing, dropped when it is a table; `new` and a marked stage dropped. Anything that is not
    /// a table, and a stage without the marker, stays.
    fn recovery(&self, table: &TableRef, default_db: &str, names: &SwapNames) -> Vec<Recovery> {
        let sibling = |name: &str| quote_sibling(table, default_db, name);
        let drop = |name: &str| Recovery {
            kind: RecoveryKind::Drop,
            leftover: name.to_owned(),
            sql: format!("DROP TABLE {}", sibling(name)),
        };
        let mut out = Vec::new();
        if self.restores_target() {
            out.push(Recovery {
                kind: RecoveryKind::RestoreTarget,
                leftover: names.old.clone(),
                sql: format!(
                    "RENAME TABLE {} TO {}",
                    sibling(&names.old),
                    quote_table(table, default_db)
                ),
            });
        } else if self.old.as_ref().is_some_and(Found::is_table)
            && self.target.as_ref().is_some_and(Found::is_table)
        {
            out.push(drop(&names.old));
        }
        if self.new.as_ref().is_some_and(Found::is_table) {
            out.push(drop(&names.new));
        }
        if self.stage.as_ref().is_some_and(Found::is_marked_stage) {
            out.push(drop(&names.stage));
        }
        out
    }
}

/// The target and its staging swap's tables as they are now. Names compare exactly (ignoring case
/// only where the server does, `lower_case_table_names` ≠ 0), in the target's database only.
async fn find_leftovers(
    conn: &mut Conn,
    db: &str,
    table: &TableRef,
    names: &SwapNames,
) -> Result<Leftovers> {
    let base = table.name.as_str();
    let rows: Vec<(u32, String, String, String, String)> = conn
        .exec(
            "SELECT @@lower_case_table_names, TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, TABLE_COMMENT \
             FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN (?, ?, ?, ?)",
            (
                db,
                base,
                names.stage.as_str(),
                names.new.as_str(),
                names.old.as_str(),
            ),
        )
        .await
        .map_err(|e| {
            mysql_error(
                e,
                format!("look for leftovers of a staging swap of {table}"),
            )
        })?;
    let mut found = Leftovers::default();
    for (lower_case, schema, name, table_type, comment) in rows {
        let same = |a: &str, b: &str| {
            if lower_case == 0 {
                a == b
            } else {
                a.to_lowercase() == b.to_lowercase()
            }
        };
        if !same(&schema, db) {
            continue;
        }
        let slot = if same(&name, base) {
            &mut found.target
        } else if same(&name, &names.stage) {
            &mut found.stage
        } else if same(&name, &names.new) {
            &mut found.new
        } else if same(&name, &names.old) {
            &mut found.old
        } else {
            continue;
        };
        *slot = Some(Found {
            table_type,
            comment,
        });
    }
    Ok(found)
}

/// Runs the recovery statements, logging each.
async fn recover(conn: &mut Conn, table: &TableRef, steps: &[Recovery]) -> Result<()> {
    for step in steps {
        conn.query_drop(step.sql.as_str()).await.map_err(|e| {
            mysql_error(
                e,
                format!("clear what an interrupted staging swap of {table} left"),
            )
        })?;
        match step.kind {
            RecoveryKind::RestoreTarget => tracing::warn!(
                table = %table,
                leftover = %step.leftover,
                "the target was missing after an interrupted staging swap; renamed its previous contents back"
            ),
            RecoveryKind::Drop => tracing::info!(
                table = %table,
                leftover = %step.leftover,
                "dropped a table an interrupted staging swap left"
            ),
        }
    }
    Ok(())
}

/// Clears what an interrupted staging swap of `table` left, on a connection that holds the swap's
/// lock.
async fn clear_leftovers(conn: &mut Conn, config: &MariadbConfig, table: &TableRef) -> Result<()> {
    let default_db = config.database.as_str();
    let names = SwapNames::of(table);
    let found = find_leftovers(conn, database_of(table, default_db), table, &names).await?;
    recover(conn, table, &found.recovery(table, default_db, &names)).await
}

/// `CREATE TABLE` for the request's columns with its key as primary key.
fn create_table_sql(
    name: &str,
    request: &WriteRequest,
    table_comment: Option<&str>,
) -> Result<String> {
    let mut budget = varchar_budget();
    let mut parts = Vec::with_capacity(request.columns.len() + 1);
    for (i, c) in request.columns.iter().enumerate() {
        let in_key = request.key.contains(&i);
        let ColumnDdl { decl, comment } =
            column_ddl(c.data_type, in_key, &mut budget).map_err(|reason| {
                ConnectorError::schema(format!(
                    "cannot create table {} column {}: {reason}",
                    request.table, c.name
                ))
            })?;
        let mut def = format!("{} {decl}", quote_ident(c.name.as_str()));
        def.push_str(if c.nullable && !in_key {
            " NULL"
        } else {
            " NOT NULL"
        });
        if let Some(comment) = comment {
            def.push_str(&format!(" COMMENT {comment}"));
        }
        parts.push(def);
    }
    if !request.key.is_empty() {
        let cols: Vec<String> = request
            .key
            .iter()
            .map(|&k| quote_ident(request.columns[k].name.as_str()))
            .collect();
        parts.push(format!("PRIMARY KEY ({})", cols.join(", ")));
    }
    let mut sql = format!(
        "CREATE TABLE {name} ({}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin",
        parts.join(", ")
    );
    if let Some(comment) = table_comment {
        sql.push_str(&format!(" COMMENT={}", quote_literal(comment)));
    }
    Ok(sql)
}

/// The codecs of the written columns, after checking the target takes every one of them and
/// needs no other.
fn check_target(request: &WriteRequest, info: &TableInfo) -> Result<Vec<Codec>> {
    let table = &request.table;
    if info.table_type != "BASE TABLE" {
        return Err(ConnectorError::schema(format!(
            "target {table} is a {}, not a table",
            info.table_type.to_lowercase()
        )));
    }
    let mut codecs = Vec::with_capacity(request.columns.len());
    for c in &request.columns {
        let native = info.column(c.name.as_str()).ok_or_else(|| {
            ConnectorError::schema(format!("target table {table} has no column {}", c.name))
        })?;
        if native.generated {
            return Err(ConnectorError::schema(format!(
                "target table {table} column {} is generated and cannot be written",
                c.name
            )));
        }
        let codec = codec_of(table, native)?;
        if !accepts(codec.data_type, c.data_type) {
            return Err(ConnectorError::schema(format!(
                "target table {table} column {} is {} ({}), which cannot hold {} values",
                c.name, codec.data_type, native.column_type, c.data_type
            )));
        }
        codecs.push(codec);
    }
    for native in &info.columns {
        let written = request
            .columns
            .iter()
            .any(|c| c.name.as_str().eq_ignore_ascii_case(&native.name));
        if !written && !native.optional {
            return Err(ConnectorError::schema(format!(
                "target table {table} column {} is NOT NULL without a default and the write does not fill it",
                native.name
            )));
        }
    }
    Ok(codecs)
}

/// Codecs for a table the write creates.
fn created_codecs(request: &WriteRequest) -> Result<Vec<Codec>> {
    let mut budget = varchar_budget();
    request
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let ddl = column_ddl(c.data_type, request.key.contains(&i), &mut budget).map_err(
                |reason| {
                    ConnectorError::schema(format!(
                        "cannot create table {} column {}: {reason}",
                        request.table, c.name
                    ))
                },
            )?;
            // Read the definition back the way introspection would.
            let (data_type, column_type) = split_decl(&ddl.decl);
            let native = crate::types::NativeColumn {
                name: c.name.to_string(),
                data_type,
                column_type,
                nullable: c.nullable,
                max_chars: match c.data_type {
                    sluice_model::DataType::Varchar(n) => Some(u64::from(n)),
                    sluice_model::DataType::Text if ddl.decl.starts_with("VARCHAR") => {
                        Some(u64::from(crate::types::TEXT_KEY_CHARS))
                    }
                    _ => None,
                },
                max_bytes: if ddl.decl.starts_with("VARBINARY") {
                    Some(u64::from(crate::types::BYTES_KEY_LEN))
                } else {
                    None
                },
                precision: match c.data_type {
                    sluice_model::DataType::Decimal { precision, .. } => Some(u64::from(precision)),
                    _ => None,
                },
                scale: match c.data_type {
                    sluice_model::DataType::Decimal { scale, .. } => Some(u64::from(scale)),
                    _ => None,
                },
                charset: None,
                comment: ddl
                    .comment
                    .as_deref()
                    .map(|q| q.trim_matches('\'').to_owned())
                    .unwrap_or_default(),
                is_json: c.data_type == sluice_model::DataType::Json,
                ..Default::default()
            };
            native.codec().map_err(ConnectorError::internal)
        })
        .collect()
}

/// `("varchar", "varchar(64)")` from `VARCHAR(64) CHARACTER SET …`.
fn split_decl(decl: &str) -> (String, String) {
    let column_type = decl
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let data_type = column_type.split('(').next().unwrap_or_default().to_owned();
    let column_type = match column_type.as_str() {
        "json" => "longtext".to_owned(),
        "tinyint(1)" | "smallint" | "int" | "bigint" | "float" | "double" => column_type,
        other => other.to_owned(),
    };
    let data_type = if data_type == "json" {
        "longtext".to_owned()
    } else {
        data_type
    };
    (data_type, column_type)
}

async fn count(
    conn: &mut Conn,
    sql: &str,
    params: Vec<mysql_async::Value>,
    what: &str,
) -> Result<u64> {
    conn.exec_first::<u64, _, _>(sql, params)
        .await
        .map(Option::unwrap_or_default)
        .map_err(|e| mysql_error(e, what))
}

/// Columns of each unique index of the table.
async fn unique_keys(conn: &mut Conn, db: &str, table: &TableRef) -> Result<Vec<Vec<String>>> {
    let rows: Vec<(String, String)> = conn
        .exec(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
             ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (db, table.name.as_str()),
        )
        .await
        .map_err(|e| mysql_error(e, format!("read the keys of {table}")))?;
    let mut keys: Vec<(String, Vec<String>)> = Vec::new();
    for (index, column) in rows {
        match keys.last_mut() {
            Some((name, cols)) if *name == index => cols.push(column),
            _ => keys.push((index, vec![column])),
        }
    }
    Ok(keys.into_iter().map(|(_, cols)| cols).collect())
}

/// Whether the server takes `LOAD DATA LOCAL INFILE`.
pub(crate) async fn local_infile_on(conn: &mut Conn) -> Result<bool> {
    let on: Option<i64> = conn
        .query_first("SELECT @@GLOBAL.local_infile")
        .await
        .map_err(|e| mysql_error(e, "read local_infile"))?;
    Ok(on == Some(1))
}

/// Builds the statements for `request` against the target as `conn` sees it once `leftovers` are
/// cleared (their recovery comes first). Fails, changing nothing, when the target does not fit the
/// request.
pub(crate) async fn build_script(
    conn: &mut Conn,
    config: &MariadbConfig,
    request: &WriteRequest,
    method: Method,
    leftovers: &Leftovers,
) -> Result<WriteScript> {
    let table = &request.table;
    let default_db = config.database.as_str();
    let db = database_of(table, default_db);
    let target = quote_table(table, default_db);
    let names = SwapNames::of(table);
    let recover = leftovers.recovery(table, default_db, &names);
    // The table that becomes the target: its previous contents when recovery renames them back.
    let inspected = if leftovers.restores_target() {
        TableRef {
            schema: table.schema.clone(),
            name: BaseName::new(names.old.as_str())
                .map_err(|e| ConnectorError::internal(e.to_string()))?,
        }
    } else {
        table.clone()
    };
    let existing = table_info(conn, default_db, &inspected).await?;
    let creates = existing.is_none();
    let codecs = match &existing {
        Some(info) => check_target(request, info)?,
        None if request.create_if_missing => created_codecs(request)?,
        None => {
            return Err(ConnectorError::not_found(format!(
                "target table {table} does not exist"
            )));
        }
    };
    let columns: Vec<String> = request
        .columns
        .iter()
        .map(|c| quote_ident(c.name.as_str()))
        .collect();
    let filter = match &request.filter {
        Some(f) => Some(format!("({})", filter_sql(f)?)),
        None => None,
    };
    let mut create = None;
    let mut setup = Vec::new();
    let mut finish = Vec::new();
    let mut commit = Vec::new();
    let mut cleanup = Vec::new();
    let mut lock = None;
    let mut deletes = None;
    let mut merge = None;
    let mut sessions = 1;
    // An unfiltered truncate_load of a table a swap copies whole swaps a loaded copy in instead
    // of deleting every row (see the module header); it takes the swap's lock either way. One
    // that creates the table loads a marked stage and renames it: the table appears whole.
    let strategy = match request.strategy {
        WriteStrategy::TruncateLoad if takes_swap_lock(request) => {
            lock = Some(lock_name(db, table));
            let refusal = match &existing {
                Some(_) => swap_refusal(conn, db, &inspected, table, leftovers).await?,
                None => create_refusal(conn, db, table, leftovers).await?,
            };
            match refusal {
                Some(reason) => {
                    tracing::debug!(table = %table, reason, "truncate_load deletes and reloads");
                    WriteStrategy::TruncateLoad
                }
                None => WriteStrategy::StagingSwap,
            }
        }
        other => other,
    };
    if creates && strategy != WriteStrategy::StagingSwap {
        create = Some(create_table_sql(&target, request, None)?);
    }
    let rows = match strategy {
        WriteStrategy::StagingSwap => {
            lock = Some(lock_name(db, table));
            if method == Method::Load {
                sessions = usize::from(config.load_sessions.max(1));
            }
            let steps = staging_swap(
                conn,
                request,
                default_db,
                &inspected,
                existing.as_ref(),
                leftovers,
                filter.as_deref(),
                sessions == 1,
            )
            .await?;
            setup.extend(steps.setup);
            commit.extend(steps.commit);
            cleanup.extend(steps.cleanup);
            LoadTarget {
                table: steps.stage,
                columns,
            }
        }
        WriteStrategy::TruncateLoad | WriteStrategy::Append => {
            setup.push("START TRANSACTION".into());
            if request.strategy == WriteStrategy::TruncateLoad && !creates {
                let mut delete = format!("DELETE FROM {target}");
                if let Some(filter) = &filter {
                    delete.push_str(&format!(" WHERE {filter}"));
                }
                setup.push(delete);
            }
            commit.push("COMMIT".into());
            LoadTarget {
                table: target.clone(),
                columns,
            }
        }
        WriteStrategy::Upsert => {
            if request.key.is_empty() {
                return Err(ConnectorError::schema(format!(
                    "an upsert into {table} needs key columns"
                )));
            }
            let up = quote_sibling(
                table,
                default_db,
                &sibling_name(table.name.as_str(), UPSERT_SUFFIX),
            );
            let del = quote_sibling(
                table,
                default_db,
                &sibling_name(table.name.as_str(), DELETE_SUFFIX),
            );
            let keys: Vec<String> = request
                .key
                .iter()
                .map(|&k| quote_ident(request.columns[k].name.as_str()))
                .collect();
            let join = |other: &str| {
                keys.iter()
                    .map(|k| format!("tgt.{k} <=> {other}.{k}"))
                    .collect::<Vec<_>>()
                    .join(" AND ")
            };
            setup.push(format!("DROP TEMPORARY TABLE IF EXISTS {up}, {del}"));
            setup.push(format!("CREATE TEMPORARY TABLE {up} LIKE {target}"));
            setup.push(format!(
                "CREATE TEMPORARY TABLE {del} ENGINE=InnoDB SELECT {} FROM {target} LIMIT 0",
                keys.join(", ")
            ));
            finish.push("START TRANSACTION".into());
            finish.push(format!(
                "DELETE tgt FROM {target} AS tgt JOIN {del} AS d ON {}",
                join("d")
            ));
            let key_set: Vec<String> = request
                .key
                .iter()
                .map(|&k| request.columns[k].name.as_str().to_ascii_lowercase())
                .collect();
            let only_key_is_ours = if creates {
                true
            } else {
                let uniques = unique_keys(conn, db, &inspected).await?;
                uniques.len() == 1 && {
                    let mut u: Vec<String> =
                        uniques[0].iter().map(|c| c.to_ascii_lowercase()).collect();
                    let mut k = key_set.clone();
                    u.sort();
                    k.sort();
                    u == k
                }
            };
            let insert = format!(
                "INSERT INTO {target} ({0}) SELECT {0} FROM {up}",
                columns.join(", ")
            );
            merge = Some(if only_key_is_ours {
                let updates: Vec<String> = request
                    .columns
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !request.key.contains(i))
                    .map(|(_, c)| {
                        let q = quote_ident(c.name.as_str());
                        format!("{q} = VALUES({q})")
                    })
                    .collect();
                let updates = if updates.is_empty() {
                    format!("{0} = VALUES({0})", keys[0])
                } else {
                    updates.join(", ")
                };
                Merge::Upsert(format!("{insert} ON DUPLICATE KEY UPDATE {updates}"))
            } else {
                finish.push(format!(
                    "DELETE tgt FROM {target} AS tgt JOIN {up} AS u ON {}",
                    join("u")
                ));
                Merge::Exact(insert)
            });
            commit.push("COMMIT".into());
            commit.push(format!("DROP TEMPORARY TABLE {up}, {del}"));
            deletes = Some(LoadTarget {
                table: del,
                columns: keys,
            });
            LoadTarget { table: up, columns }
        }
    };
    let mut abandon = vec!["ROLLBACK".to_owned()];
    if let Some(LoadTarget { table: del, .. }) = &deletes {
        abandon.push(format!(
            "DROP TEMPORARY TABLE IF EXISTS {}, {del}",
            rows.table
        ));
    }
    let recover_lock = (lock.is_none() && !recover.is_empty()).then(|| lock_name(db, table));
    Ok(WriteScript {
        lock,
        recover_lock,
        recover,
        create,
        setup,
        rows,
        deletes,
        finish,
        merge,
        commit,
        cleanup,
        abandon,
        codecs,
        method,
        creates,
        sessions,
    })
}

/// The statements of a staging swap, around the load into `stage`.
struct SwapSteps {
    setup: Vec<String>,
    commit: Vec<String>,
    cleanup: Vec<String>,
    stage: String,
}

/// The steps of a staging swap of `request`'s table (`inspected`: the table that becomes the
/// target, `existing`: what it is, `None` when the swap creates it; `one_transaction`: the copy
/// and the load in one transaction, as when one session loads). Fails, changing nothing, when
/// a table that is not sluice's takes one of the swap's names, or the target has triggers or
/// foreign keys.
#[allow(clippy::too_many_arguments)]
async fn staging_swap(
    conn: &mut Conn,
    request: &WriteRequest,
    default_db: &str,
    inspected: &TableRef,
    existing: Option<&TableInfo>,
    leftovers: &Leftovers,
    filter: Option<&str>,
    one_transaction: bool,
) -> Result<SwapSteps> {
    let table = &request.table;
    let db = database_of(table, default_db);
    let target = quote_table(table, default_db);
    let names = SwapNames::of(table);
    let stage_table = quote_sibling(table, default_db, &names.stage);
    let new_table = quote_sibling(table, default_db, &names.new);
    let old_table = quote_sibling(table, default_db, &names.old);
    if let Some(reason) = names_taken(table, &names, leftovers) {
        return Err(ConnectorError::schema(format!(
            "{reason}; rename or drop it before a staging swap"
        )));
    }
    let mut setup = Vec::new();
    let mut commit = Vec::new();
    let mut cleanup = Vec::new();
    match existing {
        Some(info) => {
            let fit = swap_fit(conn, db, inspected).await?;
            if fit.triggers_or_foreign_keys {
                return Err(ConnectorError::schema(format!(
                    "target table {table} has triggers or foreign keys, which a staging swap \
                     would lose; use truncate_load"
                )));
            }
            // Each step is one statement: whenever the write stops, the stage either carries the
            // marker or is `new`, and `t` holds its old or its new contents.
            setup.push(format!("CREATE TABLE {new_table} LIKE {target}"));
            // `LIKE` starts the counter over: the target's own carries on.
            let counter = fit
                .auto_increment
                .map(|n| format!(", AUTO_INCREMENT = {n}"))
                .unwrap_or_default();
            setup.push(format!(
                "ALTER TABLE {new_table} COMMENT = {}{counter}, RENAME TO {stage_table}",
                quote_literal(STAGE_MARKER)
            ));
            if one_transaction {
                setup.push("START TRANSACTION".into());
            }
            if let Some(filter) = filter {
                let all: Vec<String> = info
                    .columns
                    .iter()
                    .filter(|c| !c.generated)
                    .map(|c| quote_ident(&c.name))
                    .collect();
                setup.push(format!(
                    "INSERT INTO {stage_table} ({0}) SELECT {0} FROM {target} WHERE {filter} IS NOT TRUE",
                    all.join(", ")
                ));
            }
            if one_transaction {
                commit.push("COMMIT".into());
            }
            commit.push(format!(
                "ALTER TABLE {stage_table} COMMENT = {}, RENAME TO {new_table}",
                quote_literal(&info.comment)
            ));
            commit.push(format!(
                "RENAME TABLE {target} TO {old_table}, {new_table} TO {target}"
            ));
            cleanup.push(format!("DROP TABLE {old_table}"));
        }
        None => {
            setup.push(create_table_sql(&stage_table, request, Some(STAGE_MARKER))?);
            if one_transaction {
                setup.push("START TRANSACTION".into());
                commit.push("COMMIT".into());
            }
            commit.push(format!(
                "ALTER TABLE {stage_table} COMMENT = '', RENAME TO {target}"
            ));
        }
    }
    Ok(SwapSteps {
        setup,
        commit,
        cleanup,
        stage: stage_table,
    })
}

/// Why one of a staging swap's names is taken by a table that is not sluice's, if one is.
fn names_taken(table: &TableRef, names: &SwapNames, leftovers: &Leftovers) -> Option<String> {
    if leftovers
        .stage
        .as_ref()
        .is_some_and(|found| !found.is_marked_stage())
    {
        return Some(format!(
            "a table {} exists next to {table} and is not sluice's staging table",
            names.stage
        ));
    }
    for (name, found) in [(&names.new, &leftovers.new), (&names.old, &leftovers.old)] {
        if let Some(found) = found.as_ref().filter(|found| !found.is_table()) {
            return Some(format!(
                "a {} {name} exists next to {table} and is not sluice's",
                found.table_type.to_lowercase()
            ));
        }
    }
    None
}

/// What decides whether swapping in a loaded copy keeps everything about a table.
#[derive(Debug, Clone)]
struct SwapFit {
    /// Triggers on the table, or foreign keys from or to it: they would stay with the old table.
    triggers_or_foreign_keys: bool,
    /// The storage engine.
    engine: String,
    /// `CREATE_OPTIONS`: a data or index directory is not copied by `CREATE TABLE … LIKE`.
    create_options: String,
    /// The next `AUTO_INCREMENT` value, when the table has such a column.
    auto_increment: Option<u64>,
    /// Whether the user may create, alter and drop tables and insert rows in the database
    /// (granted globally or on the database, not through a role).
    privileged: bool,
}

/// The privileges a swap needs, granted to the current user globally or on the database `?`.
const SWAP_PRIVILEGES_SQL: &str = "SELECT count(DISTINCT PRIVILEGE_TYPE) FROM ( \
     SELECT GRANTEE, PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES \
     UNION ALL SELECT GRANTEE, PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES \
     WHERE ? LIKE TABLE_SCHEMA) AS p \
     WHERE PRIVILEGE_TYPE IN ('CREATE', 'ALTER', 'DROP', 'INSERT') \
     AND GRANTEE = CONCAT(CHAR(39), SUBSTRING_INDEX(CURRENT_USER(), '@', 1), CHAR(39), '@', \
     CHAR(39), SUBSTRING_INDEX(CURRENT_USER(), '@', -1), CHAR(39))";

async fn swap_fit(conn: &mut Conn, db: &str, table: &TableRef) -> Result<SwapFit> {
    let base = table.name.as_str();
    let what = format!("check whether a swap keeps everything about {table}");
    let objects = count(
        conn,
        "SELECT (SELECT count(*) FROM information_schema.TRIGGERS \
         WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?) \
         + (SELECT count(*) FROM information_schema.REFERENTIAL_CONSTRAINTS \
         WHERE (CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?) \
         OR (UNIQUE_CONSTRAINT_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?))",
        vec![
            db.into(),
            base.into(),
            db.into(),
            base.into(),
            db.into(),
            base.into(),
        ],
        &what,
    )
    .await?;
    let row: Option<(Option<String>, Option<String>, Option<u64>)> = conn
        .exec_first(
            "SELECT ENGINE, CREATE_OPTIONS, AUTO_INCREMENT FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, base),
        )
        .await
        .map_err(|e| mysql_error(e, what.as_str()))?;
    let (engine, create_options, auto_increment) = row.unwrap_or_default();
    let privileges = count(conn, SWAP_PRIVILEGES_SQL, vec![db.into()], &what).await?;
    Ok(SwapFit {
        triggers_or_foreign_keys: objects > 0,
        engine: engine.unwrap_or_default(),
        create_options: create_options.unwrap_or_default(),
        auto_increment,
        privileged: privileges == 4,
    })
}

/// Why an unfiltered truncate_load of the existing table `inspected` (`table`, or its previous
/// contents recovery renames back) must delete and reload instead of swapping in a loaded copy;
/// `None` when the swap keeps everything about it.
async fn swap_refusal(
    conn: &mut Conn,
    db: &str,
    inspected: &TableRef,
    table: &TableRef,
    leftovers: &Leftovers,
) -> Result<Option<String>> {
    if let Some(reason) = names_taken(table, &SwapNames::of(table), leftovers) {
        return Ok(Some(reason));
    }
    let fit = swap_fit(conn, db, inspected).await?;
    let options = fit.create_options.to_ascii_uppercase();
    Ok(if fit.triggers_or_foreign_keys {
        Some("the table has triggers or foreign keys".into())
    } else if !fit.engine.eq_ignore_ascii_case("InnoDB") {
        Some(format!("the table's engine is {}", fit.engine))
    } else if options.contains("DATA DIRECTORY") || options.contains("INDEX DIRECTORY") {
        Some("the table has its own data directory".into())
    } else if !fit.privileged {
        Some("the user may not create, alter and drop tables in the database".into())
    } else {
        None
    })
}

/// Why an unfiltered truncate_load that creates `table` must create it in place instead of
/// loading a stage and renaming it; `None` when it may.
async fn create_refusal(
    conn: &mut Conn,
    db: &str,
    table: &TableRef,
    leftovers: &Leftovers,
) -> Result<Option<String>> {
    if let Some(reason) = names_taken(table, &SwapNames::of(table), leftovers) {
        return Ok(Some(reason));
    }
    let what = format!("check the privileges a stage of {table} needs");
    let privileges = count(conn, SWAP_PRIVILEGES_SQL, vec![db.into()], &what).await?;
    Ok((privileges != 4)
        .then(|| "the user may not create, alter and drop tables in the database".to_owned()))
}

/// Whether a write takes the staging swap's lock: a staging swap, and a truncate_load of the
/// whole table (which swaps when the table allows).
fn takes_swap_lock(request: &WriteRequest) -> bool {
    match request.strategy {
        WriteStrategy::StagingSwap => true,
        WriteStrategy::TruncateLoad => request.filter.is_none(),
        _ => false,
    }
}

/// How rows will reach the server for this configuration and connection.
pub(crate) async fn method_for(conn: &mut Conn, config: &MariadbConfig) -> Result<Method> {
    Ok(if config.local_infile && local_infile_on(conn).await? {
        Method::Load
    } else {
        Method::Insert
    })
}

/// The plan of a write: what `open`, the batches and `commit` will run.
pub(crate) async fn plan(
    config: &MariadbConfig,
    request: &WriteRequest,
) -> Result<Vec<PlannedStatement>> {
    let mut conn = connect(config).await?;
    let script = async {
        let method = method_for(&mut conn, config).await?;
        let table = &request.table;
        let leftovers = find_leftovers(
            &mut conn,
            database_of(table, &config.database),
            table,
            &SwapNames::of(table),
        )
        .await?;
        build_script(&mut conn, config, request, method, &leftovers).await
    }
    .await;
    let _ = conn.disconnect().await;
    Ok(script?.planned())
}

/// Runs one statement of a write as a prepared statement: the server parses exactly one statement,
/// so a statement carrying a row filter can never run another.
async fn run(conn: &mut Conn, sql: &str, table: &TableRef) -> Result<()> {
    conn.exec_drop(sql, ())
        .await
        .map_err(|e| mysql_error(e, format!("write {table}")))
}

/// Opens a write: connects, takes the lock, clears leftovers of an interrupted staging swap,
/// checks the target and runs the setup statements.
pub(crate) async fn open(
    config: MariadbConfig,
    request: WriteRequest,
) -> Result<Box<dyn TableWriter>> {
    let table = request.table.clone();
    let mut conn = connect(&config).await?;
    let script = match prepare(&mut conn, &config, &request).await {
        Ok(script) => script,
        Err(error) => {
            // Disconnecting also releases the locks.
            let _ = conn.disconnect().await;
            return Err(error);
        }
    };
    let mut writer = MariadbTableWriter {
        conn_id: conn.id(),
        config,
        request,
        script,
        conn: Some(conn),
        load: None,
        buf: BytesMut::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4),
        rows: 0,
        created: false,
        failed: None,
        done: false,
        params: Vec::new(),
        param_rows: 0,
        param_bytes: 0,
        helpers: Vec::new(),
        turn: 0,
        chunk_lines: 0,
    };
    let create = writer.script.create.clone();
    let setup = writer.script.setup.clone();
    for (i, sql) in create.iter().chain(&setup).enumerate() {
        let conn = writer.conn.as_mut().expect("no load runs during setup");
        if let Err(error) = run(conn, sql, &table).await {
            writer.abandon().await;
            return Err(error.context(format!("prepare the write of {table}")));
        }
        if i == 0 && create.is_some() {
            writer.created = true;
        }
    }
    if writer.script.sessions > 1 {
        // Sessions loading one stage wait for each other's rows only on a key sent twice; a
        // session blocked so stops reading its rows and the write would wait until commit.
        let conn = writer.conn.as_mut().expect("no load runs during setup");
        if let Err(error) = run(conn, LOAD_LOCK_WAIT_SQL, &table).await {
            writer.abandon().await;
            return Err(error.context(format!("prepare the write of {table}")));
        }
    }
    for _ in 1..writer.script.sessions {
        // One session fewer only costs speed: go on with those that connect.
        let connected = match connect(&writer.config).await {
            Ok(mut conn) => match conn.query_drop(LOAD_LOCK_WAIT_SQL).await {
                Ok(()) => Ok(conn),
                Err(e) => Err(mysql_error(e, "set up a load session")),
            },
            Err(error) => Err(error),
        };
        match connected {
            Ok(conn) => writer.helpers.push(Helper {
                id: conn.id(),
                conn: Some(conn),
                chunks: None,
                task: None,
                lines: 0,
            }),
            Err(error) => {
                tracing::debug!(table = %table, error = %error, "an extra load session did not connect");
                break;
            }
        }
    }
    Ok(Box::new(writer))
}

/// Takes the staging swap's lock, clears leftovers and builds the script.
async fn prepare(
    conn: &mut Conn,
    config: &MariadbConfig,
    request: &WriteRequest,
) -> Result<WriteScript> {
    let table = &request.table;
    let method = method_for(conn, config).await?;
    if method == Method::Insert && config.local_infile {
        tracing::warn!(
            table = %table,
            "the server does not allow LOAD DATA LOCAL INFILE; writing with multi-row INSERT, which is slower"
        );
    }
    let db = database_of(table, &config.database);
    let lock = lock_name(db, table);
    let names = SwapNames::of(table);
    let swap = takes_swap_lock(request);
    if swap && !take_lock(conn, &lock_sql(&lock), table).await? {
        return Err(ConnectorError::new(
            ErrorKind::Timeout,
            format!("another staging swap of {table} held its lock for {LOCK_WAIT_SECS} s"),
        ));
    }
    let mut leftovers = find_leftovers(conn, db, table, &names).await?;
    let mut recover_lock = false;
    if !swap && leftovers.any() {
        // Cleared under the swap's lock; while a swap of the table runs they are its own tables.
        if take_lock(conn, &try_lock_sql(&lock), table).await? {
            recover_lock = true;
            leftovers = find_leftovers(conn, db, table, &names).await?;
        } else {
            leftovers = leftovers.target_only();
        }
    }
    let script = build_script(conn, config, request, method, &leftovers).await;
    let recovered = match &script {
        Ok(script) => recover(conn, table, &script.recover).await,
        Err(_) => Ok(()),
    };
    if recover_lock {
        let _ = conn.query_drop(unlock_sql(&lock)).await;
    }
    recovered?;
    script
}

/// Which table a running load feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Rows,
    Deletes,
}

/// What a finished load hands back: the connection and (affected rows, warnings).
type LoadOutcome = (Conn, std::result::Result<(u64, u16), mysql_async::Error>);

/// A `LOAD DATA` running on its own task, reading chunks from a channel.
struct ActiveLoad {
    feed: Feed,
    chunks: mpsc::Sender<Bytes>,
    task: JoinHandle<LoadOutcome>,
    lines: u64,
}

/// Another session loading its share of the rows into a staging table: every other chunk (of
/// `sessions`) goes to it. Its load commits on its own; the swap makes the rows visible.
struct Helper {
    /// The server's id of the session.
    id: u32,
    /// The connection, when no load holds it.
    conn: Option<Conn>,
    /// The running load's feed; `None` once closed (or before the first chunk).
    chunks: Option<mpsc::Sender<Bytes>>,
    /// The running load.
    task: Option<JoinHandle<LoadOutcome>>,
    /// Lines sent to the running load.
    lines: u64,
}

/// Waits for a load whose feed is closed, watching its session `id`, and checks that the server
/// stored the `lines` it was sent with no warning. `Err` when the session is lost or the task
/// failed (no connection comes back); else the connection and the check.
async fn finish_load(
    config: &MariadbConfig,
    id: u32,
    task: &mut JoinHandle<LoadOutcome>,
    lines: u64,
    table: &TableRef,
    target: &str,
) -> Result<(Conn, Result<()>)> {
    let Some(joined) = watch(config, id, &mut *task).await else {
        task.abort();
        return Err(lost_session(table, id));
    };
    let (mut conn, outcome) = joined
        .map_err(|e| ConnectorError::internal(format!("the load task of {table} failed: {e}")))?;
    let checked = match outcome {
        // Only sluice's own sessions write a marked stage: a row lock to wait for is another
        // session's row of the same key.
        Err(mysql_async::Error::Server(e)) if e.code == crate::error::code::LOCK_WAIT_TIMEOUT => {
            Err(ConnectorError::data(format!(
                "loading rows into {target} for {table}: two rows with the same key reached two \
                 load sessions; nothing was written"
            )))
        }
        Err(e) => Err(mysql_error(e, format!("load rows into {target}"))),
        Ok((affected, warnings)) => {
            if warnings > 0 || affected != lines {
                let detail = warning_summary(&mut conn).await;
                Err(ConnectorError::data(format!(
                    "loading {lines} rows into {target} for {table}: MariaDB stored {affected} and \
                     reported {warnings} warnings ({detail}); nothing was written"
                )))
            } else {
                Ok(())
            }
        }
    };
    Ok((conn, checked))
}

/// The error of a load whose session `id` was killed or lost.
fn lost_session(table: &TableRef, id: u32) -> ConnectorError {
    ConnectorError::new(
        ErrorKind::Connection,
        format!("write {table}: the session loading the rows (id {id}) was killed or lost"),
    )
}

/// Makes `data` the file of the next `LOAD DATA LOCAL INFILE` on `conn`, handed to the driver in
/// pieces of at most [`INFILE_WRITE_BYTES`].
pub(crate) fn feed_infile<S>(conn: &mut Conn, data: S)
where
    S: futures::Stream<Item = Bytes> + Send + 'static,
{
    let data = std::sync::Mutex::new(Some(data));
    conn.set_infile_handler(async move {
        let data = data
            .lock()
            .map_err(|_| mysql_async::Error::Other("infile data lock poisoned".into()))?
            .take()
            .ok_or_else(|| mysql_async::Error::Other("infile data requested twice".into()))?;
        Ok(data
            .flat_map(|chunk| futures::stream::iter(infile_pieces(chunk)))
            .map(Ok)
            .boxed())
    });
}

/// `chunk` in pieces of at most [`INFILE_WRITE_BYTES`] (slices of it, not copies).
fn infile_pieces(chunk: Bytes) -> impl Iterator<Item = Bytes> {
    let len = chunk.len();
    (0..len)
        .step_by(INFILE_WRITE_BYTES)
        .map(move |at| chunk.slice(at..len.min(at + INFILE_WRITE_BYTES)))
}

fn start_load(mut conn: Conn, sql: String, feed: Feed) -> ActiveLoad {
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    feed_infile(
        &mut conn,
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx)),
    );
    let task = tokio::spawn(async move {
        let outcome = conn
            .query_drop(sql)
            .await
            .map(|()| (conn.affected_rows(), conn.get_warnings()));
        (conn, outcome)
    });
    ActiveLoad {
        feed,
        chunks: tx,
        task,
        lines: 0,
    }
}

/// Whether the session `id` still exists on the server (`true` when that cannot be told).
async fn session_alive(config: &MariadbConfig, id: u32) -> bool {
    let Ok(mut conn) = connect(config).await else {
        return true;
    };
    let found: std::result::Result<Option<u64>, _> = conn
        .exec_first(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = ?",
            (id,),
        )
        .await;
    let _ = conn.disconnect().await;
    !matches!(found, Ok(None))
}

/// Waits for `work`, checking whenever it stalls that the session `id` is alive; `None` when the
/// session is gone (killed, or the server restarted).
async fn watch<F: std::future::Future>(
    config: &MariadbConfig,
    id: u32,
    work: F,
) -> Option<F::Output> {
    tokio::pin!(work);
    loop {
        match tokio::time::timeout(STALL_CHECK, &mut work).await {
            Ok(out) => return Some(out),
            Err(_) => {
                if !session_alive(config, id).await {
                    return None;
                }
            }
        }
    }
}

/// A write in progress.
struct MariadbTableWriter {
    config: MariadbConfig,
    /// The server's id of the write's session.
    conn_id: u32,
    request: WriteRequest,
    script: WriteScript,
    /// The connection, when no load holds it.
    conn: Option<Conn>,
    load: Option<ActiveLoad>,
    /// Encoded rows not yet sent.
    buf: BytesMut,
    /// Rows written (loaded or inserted into the rows target).
    rows: u64,
    /// Whether this write created the target (dropped again when the write is abandoned).
    created: bool,
    /// The error that ended the write.
    failed: Option<String>,
    /// Whether commit or rollback finished the write.
    done: bool,
    /// Fallback path: parameters of the pending `INSERT`.
    params: Vec<mysql_async::Value>,
    param_rows: usize,
    param_bytes: usize,
    /// Further sessions loading rows into the staging table.
    helpers: Vec<Helper>,
    /// Whose turn the next chunk of rows is: 0 the write's own session, `i` helper `i - 1`.
    turn: usize,
    /// Lines in `buf`.
    chunk_lines: u64,
}

impl MariadbTableWriter {
    fn table(&self) -> &TableRef {
        &self.request.table
    }

    /// The load's session is gone: stop waiting for it.
    fn lost_session(&mut self) -> ConnectorError {
        if let Some(load) = self.load.take() {
            load.task.abort();
        }
        lost_session(&self.request.table, self.conn_id)
    }

    fn fail(&mut self, error: ConnectorError) -> ConnectorError {
        self.failed = Some(error.to_string());
        error
    }

    fn check_open(&self) -> Result<()> {
        match &self.failed {
            Some(reason) => Err(ConnectorError::internal(format!(
                "the write of {} already failed: {reason}",
                self.table()
            ))),
            None if self.done => Err(ConnectorError::internal("the write has already finished")),
            None => Ok(()),
        }
    }

    /// The target or key codecs and load target of `feed`.
    fn feed_target(&self, feed: Feed) -> (&LoadTarget, Vec<Codec>) {
        match feed {
            Feed::Rows => (&self.script.rows, self.script.codecs.clone()),
            Feed::Deletes => (
                self.script
                    .deletes
                    .as_ref()
                    .expect("deletes feed only for upserts"),
                self.request
                    .key
                    .iter()
                    .map(|&k| self.script.codecs[k])
                    .collect(),
            ),
        }
    }

    /// Makes sure a load into `feed` is running.
    async fn ensure_load(&mut self, feed: Feed) -> Result<()> {
        if self.load.as_ref().is_some_and(|l| l.feed == feed) {
            return Ok(());
        }
        self.end_load().await?;
        let sql = self.feed_target(feed).0.load_sql();
        let conn = self.conn.take().expect("a connection when no load runs");
        self.load = Some(start_load(conn, sql, feed));
        Ok(())
    }

    /// Sends the buffered rows of the running load, to the session whose turn it is.
    async fn send_chunk(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let turn = self.turn;
        if self.load.as_ref().is_some_and(|l| l.feed == Feed::Rows) && !self.helpers.is_empty() {
            self.turn = (turn + 1) % (self.helpers.len() + 1);
        }
        if turn > 0 {
            return self.send_to_helper(turn - 1).await;
        }
        let chunk = self.buf.split().freeze();
        if let Some(load) = &mut self.load {
            load.lines += std::mem::take(&mut self.chunk_lines);
        }
        let sent = match &self.load {
            Some(load) => watch(&self.config, self.conn_id, load.chunks.send(chunk)).await,
            None => Some(Err(mpsc::error::SendError(chunk))),
        };
        let Some(sent) = sent else {
            return Err(self.lost_session());
        };
        if sent.is_ok() {
            Ok(())
        } else {
            // The load stopped early: its outcome says why.
            Err(match self.end_load().await {
                Err(error) => error,
                Ok(()) => ConnectorError::internal("the load ended before all rows were sent"),
            })
        }
    }

    /// Ends the running load, if any, and checks that the server took every line unchanged.
    async fn end_load(&mut self) -> Result<()> {
        if self.load.is_some() && !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            if let Some(load) = &mut self.load {
                load.lines += std::mem::take(&mut self.chunk_lines);
            }
            if let Some(load) = &self.load
                && watch(&self.config, self.conn_id, load.chunks.send(chunk))
                    .await
                    .is_none()
            {
                return Err(self.lost_session());
            }
        }
        let Some(mut load) = self.load.take() else {
            return Ok(());
        };
        drop(load.chunks);
        let target = self.feed_target(load.feed).0.table.clone();
        let (conn, checked) = finish_load(
            &self.config,
            self.conn_id,
            &mut load.task,
            load.lines,
            &self.request.table,
            &target,
        )
        .await?;
        self.conn = Some(conn);
        checked
    }

    /// Sends the buffered rows to helper `i`, starting its load with the first chunk.
    async fn send_to_helper(&mut self, i: usize) -> Result<()> {
        let sql = self.script.rows.load_sql();
        let chunk = self.buf.split().freeze();
        let lines = std::mem::take(&mut self.chunk_lines);
        let helper = &mut self.helpers[i];
        if helper.task.is_none() {
            let conn = helper
                .conn
                .take()
                .ok_or_else(|| ConnectorError::internal("a load session lost its connection"))?;
            let load = start_load(conn, sql, Feed::Rows);
            helper.chunks = Some(load.chunks);
            helper.task = Some(load.task);
            helper.lines = 0;
        }
        helper.lines += lines;
        let Some(chunks) = &helper.chunks else {
            return Err(ConnectorError::internal("a load session's feed is closed"));
        };
        let id = helper.id;
        match watch(&self.config, id, chunks.send(chunk)).await {
            None => Err(lost_session(&self.request.table, id)),
            Some(Ok(())) => Ok(()),
            // The load stopped early: its outcome says why.
            Some(Err(_)) => Err(match self.end_helpers().await {
                Err(error) => error,
                Ok(()) => ConnectorError::internal("a load ended before all rows were sent"),
            }),
        }
    }

    /// Closes the helpers' connections (their loads have ended).
    async fn disconnect_helpers(&mut self) {
        for helper in &mut self.helpers {
            if let Some(conn) = helper.conn.take() {
                let _ = conn.disconnect().await;
            }
        }
    }

    /// Closes the helpers' feeds, so that each load runs to its end.
    fn close_helper_feeds(&mut self) {
        for helper in &mut self.helpers {
            helper.chunks = None;
        }
    }

    /// Ends the helpers' loads and checks each; the first failure is the answer, after all ended.
    async fn end_helpers(&mut self) -> Result<()> {
        self.close_helper_feeds();
        let target = self.script.rows.table.clone();
        let mut first = Ok(());
        for helper in &mut self.helpers {
            let Some(mut task) = helper.task.take() else {
                continue;
            };
            let checked = match finish_load(
                &self.config,
                helper.id,
                &mut task,
                helper.lines,
                &self.request.table,
                &target,
            )
            .await
            {
                Ok((conn, checked)) => {
                    helper.conn = Some(conn);
                    checked
                }
                Err(error) => Err(error),
            };
            if first.is_ok() {
                first = checked;
            }
        }
        first
    }

    async fn flush_inserts(&mut self, feed: Feed) -> Result<()> {
        if self.param_rows == 0 {
            return Ok(());
        }
        let sql = self.feed_target(feed).0.insert_sql(self.param_rows);
        let params = std::mem::take(&mut self.params);
        let rows = self.param_rows as u64;
        self.param_rows = 0;
        self.param_bytes = 0;
        let table = self.request.table.clone();
        let conn = self
            .conn
            .as_mut()
            .expect("the insert path keeps its connection");
        conn.exec_drop(sql, params)
            .await
            .map_err(|e| mysql_error(e, format!("insert rows into {table}")))?;
        let (affected, warnings) = (conn.affected_rows(), conn.get_warnings());
        if affected != rows || warnings > 0 {
            let detail = warning_summary(conn).await;
            return Err(ConnectorError::data(format!(
                "inserting {rows} rows into {table}: MariaDB stored {affected} and reported {warnings} warnings ({detail})"
            )));
        }
        Ok(())
    }

    /// Validates and sends one batch to `feed`.
    async fn put_batch(&mut self, batch: &RowBatch, feed: Feed) -> Result<()> {
        let (_, codecs) = self.feed_target(feed);
        let key_columns: Vec<usize> = match feed {
            Feed::Rows => self.request.key.clone(),
            Feed::Deletes => (0..self.request.key.len()).collect(),
        };
        let names: Vec<sluice_model::ColumnDef> = match feed {
            Feed::Rows => self.request.columns.clone(),
            Feed::Deletes => self
                .request
                .key
                .iter()
                .map(|&k| self.request.columns[k].clone())
                .collect(),
        };
        if batch.width() != codecs.len() {
            return Err(ConnectorError::internal(format!(
                "a batch of {} columns for {} columns of {}",
                batch.width(),
                codecs.len(),
                self.request.table
            )));
        }
        let table = self.request.table.clone();
        let bad = |row: &[sluice_model::Value], i: usize, reason: String| {
            ConnectorError::data(format!(
                "target table {table} row {} column {}: {reason}",
                describe_key(&names, &key_columns, row),
                names[i].name
            ))
        };
        match self.script.method {
            Method::Load => {
                self.ensure_load(feed).await?;
                for row in batch.rows() {
                    for (i, (value, codec)) in row.iter().zip(&codecs).enumerate() {
                        let field = to_field(value, codec).map_err(|r| bad(row, i, r))?;
                        if i > 0 {
                            self.buf.put_u8(b'\t');
                        }
                        put_tsv(&mut self.buf, field);
                    }
                    self.buf.put_u8(b'\n');
                    self.chunk_lines += 1;
                    if self.buf.len() >= CHUNK_BYTES {
                        self.send_chunk().await?;
                    }
                }
            }
            Method::Insert => {
                let per_statement = INSERT_ROWS.min(60_000 / codecs.len().max(1)).max(1);
                for row in batch.rows() {
                    for (i, (value, codec)) in row.iter().zip(&codecs).enumerate() {
                        let field = to_field(value, codec).map_err(|r| bad(row, i, r))?;
                        self.param_bytes += value.byte_size();
                        self.params.push(to_param(field));
                    }
                    self.param_rows += 1;
                    if self.param_rows >= per_statement || self.param_bytes >= INSERT_BYTES {
                        self.flush_inserts(feed).await?;
                    }
                }
                self.flush_inserts(feed).await?;
            }
        }
        if feed == Feed::Rows {
            self.rows += batch.len() as u64;
        }
        Ok(())
    }

    async fn commit_inner(&mut self) -> Result<WriteSummary> {
        // Every load runs to its end before any is waited for: a load waiting on another's key
        // finishes once that one has.
        self.close_helper_feeds();
        self.end_load().await?;
        self.end_helpers().await?;
        let table = self.request.table.clone();
        let conn = self.conn.as_mut().expect("no load runs at commit");
        for sql in &self.script.finish {
            run(conn, sql, &table).await?;
        }
        match &self.script.merge {
            Some(Merge::Exact(sql)) => {
                let loaded: u64 = count(
                    conn,
                    &format!("SELECT count(*) FROM {}", self.script.rows.table),
                    Vec::new(),
                    "count the loaded rows",
                )
                .await?;
                run(conn, sql, &table).await?;
                if conn.affected_rows() != loaded || conn.get_warnings() > 0 {
                    let detail = warning_summary(conn).await;
                    return Err(ConnectorError::data(format!(
                        "merging {loaded} rows into {table}: MariaDB stored {} ({detail})",
                        conn.affected_rows()
                    )));
                }
            }
            Some(Merge::Upsert(sql)) => {
                run(conn, sql, &table).await?;
                if conn.get_warnings() > 0 {
                    let detail = warning_summary(conn).await;
                    return Err(ConnectorError::data(format!(
                        "merging rows into {table}: MariaDB reported warnings ({detail})"
                    )));
                }
            }
            None => {}
        }
        for sql in &self.script.commit {
            if sql == "COMMIT" {
                // Until here everything can be undone.
                run(conn, sql, &table).await?;
            } else {
                run(conn, sql, &table)
                    .await
                    .map_err(|e| e.context("swap in the new contents"))?;
            }
        }
        for sql in &self.script.cleanup {
            if let Err(error) = run(conn, sql, &table).await {
                tracing::warn!(
                    table = %table,
                    error = %error,
                    "the new contents are in place but the old ones could not be dropped; the next write drops them"
                );
            }
        }
        if let Some(lock) = &self.script.lock {
            let _ = conn.query_drop(unlock_sql(lock)).await;
        }
        Ok(WriteSummary {
            rows: self.rows,
            created: self.script.creates,
        })
    }

    /// Undoes everything the write did, best effort.
    async fn abandon(&mut self) {
        self.done = true;
        // The helpers' loads end (with what they were sent) before the stage is dropped.
        let _ = self.end_helpers().await;
        self.disconnect_helpers().await;
        if let Some(mut load) = self.load.take() {
            drop(load.chunks);
            match watch(&self.config, self.conn_id, &mut load.task).await {
                Some(Ok((conn, _))) => self.conn = Some(conn),
                Some(Err(_)) => {}
                None => load.task.abort(),
            }
        }
        let mut clean = false;
        if let Some(mut conn) = self.conn.take() {
            clean = self.undo(&mut conn).await.is_ok();
            let _ = conn.disconnect().await;
        }
        if !clean {
            // The connection broke (or was killed): the server rolled the transaction back, but a
            // staging table outlives it. Remove it from a fresh connection.
            let _ = self.cleanup_after_break().await;
        }
    }

    /// Rolls back and removes what the write created, on the write's own connection (which holds
    /// a staging swap's lock).
    async fn undo(&self, conn: &mut Conn) -> Result<()> {
        let table = &self.request.table;
        for sql in &self.script.abandon {
            run(conn, sql, table).await?;
        }
        if self.created {
            let target = quote_table(table, &self.config.database);
            run(conn, &format!("DROP TABLE IF EXISTS {target}"), table).await?;
        }
        if self.script.lock.is_some() {
            clear_leftovers(conn, &self.config, table).await?;
        }
        Ok(())
    }

    async fn cleanup_after_break(&self) -> Result<()> {
        let Some(lock) = &self.script.lock else {
            return Ok(());
        };
        let mut conn = connect(&self.config).await?;
        let table = &self.request.table;
        let sql = format!("SELECT GET_LOCK({}, 5)", quote_literal(lock));
        if take_lock(&mut conn, &sql, table).await? {
            let _ = clear_leftovers(&mut conn, &self.config, table).await;
            let _ = conn.query_drop(unlock_sql(lock)).await;
        }
        let _ = conn.disconnect().await;
        Ok(())
    }
}

/// The codes of the first warnings of the last statement (never their text, which may quote
/// values).
async fn warning_summary(conn: &mut Conn) -> String {
    let rows: std::result::Result<Vec<(String, u32, String)>, _> =
        conn.query("SHOW WARNINGS LIMIT 5").await;
    match rows {
        Ok(rows) if !rows.is_empty() => {
            let codes: Vec<String> = rows
                .iter()
                .map(|(level, code, _)| format!("{} {code}", level.to_lowercase()))
                .collect();
            format!("first: {}", codes.join(", "))
        }
        _ => "no details".into(),
    }
}

#[async_trait::async_trait]
impl TableWriter for MariadbTableWriter {
    async fn write_batch(&mut self, batch: RowBatch) -> Result<()> {
        self.check_open()?;
        if let Err(error) = self.put_batch(&batch, Feed::Rows).await {
            let error = self.fail(error);
            self.abandon().await;
            return Err(error);
        }
        Ok(())
    }

    async fn delete_batch(&mut self, keys: RowBatch) -> Result<()> {
        if self.request.strategy != WriteStrategy::Upsert {
            return Err(ConnectorError::unsupported(
                "deleting rows needs the upsert strategy",
            ));
        }
        self.check_open()?;
        if let Err(error) = self.put_batch(&keys, Feed::Deletes).await {
            let error = self.fail(error);
            self.abandon().await;
            return Err(error);
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<WriteSummary> {
        self.check_open()?;
        match self.commit_inner().await {
            Ok(summary) => {
                self.done = true;
                if let Some(conn) = self.conn.take() {
                    let _ = conn.disconnect().await;
                }
                self.disconnect_helpers().await;
                Ok(summary)
            }
            Err(error) => {
                let error = self.fail(error);
                self.abandon().await;
                Err(error)
            }
        }
    }

    async fn rollback(mut self: Box<Self>) -> Result<()> {
        if !self.done {
            self.abandon().await;
        }
        Ok(())
    }
}

impl Drop for MariadbTableWriter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Dropped without commit: roll back on a task of its own. A staging swap's lock stays held
        // until the cleanup is done, so the next swap of the table waits for it.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut orphan = MariadbTableWriter {
            conn_id: self.conn_id,
            config: self.config.clone(),
            request: self.request.clone(),
            script: self.script.clone(),
            conn: self.conn.take(),
            load: self.load.take(),
            buf: BytesMut::new(),
            rows: 0,
            created: self.created,
            failed: None,
            done: false,
            params: Vec::new(),
            param_rows: 0,
            param_bytes: 0,
            helpers: std::mem::take(&mut self.helpers),
            turn: 0,
            chunk_lines: 0,
        };
        self.done = true;
        handle.spawn(async move {
            orphan.abandon().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infile_pieces_cover_a_chunk_in_order_and_stay_small() {
        let chunk: Bytes = (0..(INFILE_WRITE_BYTES * 2 + 123))
            .map(|i| (i % 251) as u8)
            .collect();
        let pieces: Vec<Bytes> = infile_pieces(chunk.clone()).collect();
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|p| p.len() <= INFILE_WRITE_BYTES));
        assert_eq!(pieces.concat(), chunk.to_vec());
        assert_eq!(infile_pieces(Bytes::new()).count(), 0);
        assert_eq!(infile_pieces(Bytes::from_static(b"a\n")).count(), 1);
    }

    #[test]
    fn long_names_stay_within_the_identifier_limit() {
        let long = "x".repeat(60);
        let name = sibling_name(&long, STAGE_SUFFIX);
        assert!(name.chars().count() <= MAX_IDENT_CHARS, "{name}");
        assert!(name.ends_with(STAGE_SUFFIX));
        assert_ne!(name, sibling_name(&"x".repeat(61), STAGE_SUFFIX));
        assert_eq!(sibling_name("t", STAGE_SUFFIX), "t__sluice_stage");
    }

    fn found(table_type: &str, comment: &str) -> Option<Found> {
        Some(Found {
            table_type: table_type.into(),
            comment: comment.into(),
        })
    }

    fn recovery_of(leftovers: &Leftovers) -> Vec<String> {
        let table = TableRef::new(BaseName::new("t").expect("a valid name"));
        leftovers
            .recovery(&table, "db", &SwapNames::of(&table))
            .into_iter()
            .map(|r| r.sql)
            .collect()
    }

    #[test]
    fn recovery_touches_only_what_a_swap_leaves() {
        let table = || found("BASE TABLE", "");
        let all = Leftovers {
            target: table(),
            stage: found("BASE TABLE", STAGE_MARKER),
            new: table(),
            old: table(),
        };
        assert_eq!(
            recovery_of(&all),
            [
                "DROP TABLE `db`.`t__sluice_old`",
                "DROP TABLE `db`.`t__sluice_new`",
                "DROP TABLE `db`.`t__sluice_stage`",
            ]
        );
        // The target missing: its old contents come back, nothing else changes about them.
        let missing = Leftovers {
            target: None,
            ..all.clone()
        };
        assert!(missing.restores_target());
        assert_eq!(
            recovery_of(&missing)[0],
            "RENAME TABLE `db`.`t__sluice_old` TO `db`.`t`"
        );
        // Not sluice's: an unmarked stage, views, and the old contents next to a view `t`.
        let foreign = Leftovers {
            target: found("VIEW", "VIEW"),
            stage: found("BASE TABLE", "mine"),
            new: found("VIEW", "VIEW"),
            old: table(),
        };
        assert!(recovery_of(&foreign).is_empty());
        assert!(!foreign.restores_target());
        let old_view = Leftovers {
            target: None,
            old: found("VIEW", "VIEW"),
            ..Leftovers::default()
        };
        assert!(recovery_of(&old_view).is_empty());
    }
}
