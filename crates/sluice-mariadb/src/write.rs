//! Batch writes: rows stream into one `LOAD DATA LOCAL INFILE` fed from memory, batch by batch,
//! on a connection of the write's own; every strategy is atomic on InnoDB.
//!
//! * `truncate_load`: `START TRANSACTION`, `DELETE FROM t [WHERE (filter)]` (`TRUNCATE` would
//!   commit), the load, `COMMIT`.
//! * `staging_swap`: under a named lock (`GET_LOCK`) that serialises swaps of one table, `CREATE
//!   TABLE t__sluice_stage LIKE t` marked by the table comment `sluice:stage` (a leftover of a killed
//!   run carries the marker and is dropped; a same-named table without it is never touched), the
//!   rows a target filter keeps copied over and the load in one transaction, then the target's own
//!   comment restored, one atomic `RENAME TABLE t TO t__sluice_old, t__sluice_stage TO t` and `DROP
//!   TABLE t__sluice_old`. A failure before the rename drops the stage and leaves `t` untouched.
//!   Triggers and foreign keys would not survive the swap, so a target with either is refused.
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
//! The statements come from [`build_script`], which both the plan and the real write use.

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use sluice_connector::{
    ConnectorError, ErrorKind, PlannedStatement, Result, TableWriter, WriteRequest, WriteStrategy,
    WriteSummary,
};
use sluice_model::{RowBatch, TableRef, describe_key};
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
/// Rows per `INSERT` of the fallback path (also bounded by bytes and placeholders).
const INSERT_ROWS: usize = 1000;
/// Bytes of values per `INSERT` of the fallback path.
const INSERT_BYTES: usize = 4 << 20;
/// Seconds to wait for another staging swap of the same table to finish.
const LOCK_WAIT_SECS: u32 = 60;
/// How long a load may make no progress before sluice checks that its session still exists. A
/// killed session can leave the socket half-closed, and a writer waiting for the server to read
/// would otherwise wait for TCP to give up (minutes).
const STALL_CHECK: std::time::Duration = std::time::Duration::from_secs(2);
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
    /// Run when the write is abandoned.
    abandon: Vec<String>,
    /// Target codec of each written column.
    codecs: Vec<Codec>,
    /// How rows reach the server.
    method: Method,
    /// Whether the target is created.
    creates: bool,
    /// The staging table, when there is one (dropped on failure if still marked).
    stage: Option<String>,
}

impl WriteScript {
    pub(crate) fn planned(&self) -> Vec<PlannedStatement> {
        let mut out = Vec::new();
        if let Some(lock) = &self.lock {
            out.push(PlannedStatement::once(lock_sql(lock)));
        }
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
        if let Some(lock) = &self.lock {
            out.push(PlannedStatement::once(unlock_sql(lock)));
        }
        out
    }
}

fn lock_sql(name: &str) -> String {
    format!("SELECT GET_LOCK({}, {LOCK_WAIT_SECS})", quote_literal(name))
}

fn unlock_sql(name: &str) -> String {
    format!("SELECT RELEASE_LOCK({})", quote_literal(name))
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

async fn exec_first_string(
    conn: &mut Conn,
    sql: &str,
    params: Vec<mysql_async::Value>,
    what: impl std::fmt::Display,
) -> Result<Option<String>> {
    conn.exec_first::<Option<String>, _, _>(sql, params)
        .await
        .map(Option::flatten)
        .map_err(|e| mysql_error(e, what))
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

/// Builds the statements for `request` against the target as `conn` sees it. Fails, changing
/// nothing, when the target does not fit the request.
pub(crate) async fn build_script(
    conn: &mut Conn,
    config: &MariadbConfig,
    request: &WriteRequest,
    method: Method,
) -> Result<WriteScript> {
    let table = &request.table;
    let default_db = config.database.as_str();
    let db = database_of(table, default_db);
    let target = quote_table(table, default_db);
    let existing = table_info(conn, default_db, table).await?;
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
    let mut setup = Vec::new();
    let mut finish = Vec::new();
    let mut commit = Vec::new();
    let mut abandon = vec!["ROLLBACK".to_owned()];
    let mut lock = None;
    let mut stage = None;
    let mut deletes = None;
    let mut merge = None;
    if creates && request.strategy != WriteStrategy::StagingSwap {
        setup.push(create_table_sql(&target, request, None)?);
        abandon.push(format!("DROP TABLE IF EXISTS {target}"));
    }
    let rows = match request.strategy {
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
        WriteStrategy::StagingSwap => {
            let base = table.name.as_str();
            let stage_name = sibling_name(base, STAGE_SUFFIX);
            let old_name = sibling_name(base, OLD_SUFFIX);
            let stage_table = quote_sibling(table, default_db, &stage_name);
            let old_table = quote_sibling(table, default_db, &old_name);
            lock = Some(lock_name(db, table));
            let comment_sql = "SELECT TABLE_COMMENT FROM information_schema.TABLES \
                               WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?";
            let params = |name: &str| vec![db.into(), name.into()];
            if let Some(comment) = exec_first_string(
                conn,
                comment_sql,
                params(&stage_name),
                format!("look for a leftover staging table of {table}"),
            )
            .await?
            {
                if comment != STAGE_MARKER {
                    return Err(ConnectorError::schema(format!(
                        "a table {stage_name} exists next to {table} and is not sluice's staging table; \
                         rename or drop it before a staging swap"
                    )));
                }
                setup.push(format!("DROP TABLE {stage_table}"));
            }
            if exec_first_string(
                conn,
                comment_sql,
                params(&old_name),
                format!("look for a leftover table of {table}"),
            )
            .await?
            .is_some()
            {
                return Err(ConnectorError::schema(format!(
                    "a table {old_name} exists next to {table}: it may hold the contents an \
                     interrupted staging swap replaced; drop or rename it before a staging swap"
                )));
            }
            match &existing {
                Some(info) => {
                    let what = format!("check the triggers and foreign keys of {table}");
                    let triggers = count(
                        conn,
                        "SELECT count(*) FROM information_schema.TRIGGERS \
                         WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?",
                        params(base),
                        &what,
                    )
                    .await?;
                    let foreign_keys = count(
                        conn,
                        "SELECT count(*) FROM information_schema.REFERENTIAL_CONSTRAINTS \
                         WHERE (CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?) \
                         OR (UNIQUE_CONSTRAINT_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?)",
                        vec![db.into(), base.into(), db.into(), base.into()],
                        &what,
                    )
                    .await?;
                    if triggers + foreign_keys > 0 {
                        return Err(ConnectorError::schema(format!(
                            "target table {table} has triggers or foreign keys, which a staging swap \
                             would lose; use truncate_load"
                        )));
                    }
                    setup.push(format!("CREATE TABLE {stage_table} LIKE {target}"));
                    setup.push(format!(
                        "ALTER TABLE {stage_table} COMMENT = {}",
                        quote_literal(STAGE_MARKER)
                    ));
                    setup.push("START TRANSACTION".into());
                    if let Some(filter) = &filter {
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
                    commit.push("COMMIT".into());
                    commit.push(format!(
                        "ALTER TABLE {stage_table} COMMENT = {}",
                        quote_literal(&info.comment)
                    ));
                    commit.push(format!(
                        "RENAME TABLE {target} TO {old_table}, {stage_table} TO {target}"
                    ));
                    commit.push(format!("DROP TABLE {old_table}"));
                }
                None => {
                    setup.push(create_table_sql(&stage_table, request, Some(STAGE_MARKER))?);
                    setup.push("START TRANSACTION".into());
                    commit.push("COMMIT".into());
                    commit.push(format!("ALTER TABLE {stage_table} COMMENT = ''"));
                    commit.push(format!("RENAME TABLE {stage_table} TO {target}"));
                }
            }
            abandon.push(format!("DROP TABLE IF EXISTS {stage_table}"));
            stage = Some(stage_name);
            LoadTarget {
                table: stage_table,
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
                let uniques = unique_keys(conn, db, table).await?;
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
            abandon.push(format!("DROP TEMPORARY TABLE IF EXISTS {up}, {del}"));
            deletes = Some(LoadTarget {
                table: del,
                columns: keys,
            });
            LoadTarget { table: up, columns }
        }
    };
    Ok(WriteScript {
        lock,
        setup,
        rows,
        deletes,
        finish,
        merge,
        commit,
        abandon,
        codecs,
        method,
        creates,
        stage,
    })
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
    let method = method_for(&mut conn, config).await?;
    let script = build_script(&mut conn, config, request, method).await;
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

/// Opens a write: connects, takes the lock, checks the target and runs the setup statements.
pub(crate) async fn open(
    config: MariadbConfig,
    request: WriteRequest,
) -> Result<Box<dyn TableWriter>> {
    let table = request.table.clone();
    let mut conn = connect(&config).await?;
    let method = method_for(&mut conn, &config).await?;
    if method == Method::Insert && config.local_infile {
        tracing::warn!(
            table = %table,
            "the server does not allow LOAD DATA LOCAL INFILE; writing with multi-row INSERT, which is slower"
        );
    }
    let db = database_of(&table, &config.database).to_owned();
    if request.strategy == WriteStrategy::StagingSwap {
        let name = lock_name(&db, &table);
        let got: Option<Option<i64>> = conn
            .query_first(lock_sql(&name))
            .await
            .map_err(|e| mysql_error(e, format!("lock {table} for a staging swap")))?;
        if got.flatten() != Some(1) {
            return Err(ConnectorError::new(
                ErrorKind::Timeout,
                format!("another staging swap of {table} held its lock for {LOCK_WAIT_SECS} s"),
            ));
        }
    }
    let script = match build_script(&mut conn, &config, &request, method).await {
        Ok(script) => script,
        Err(error) => {
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
        failed: None,
        done: false,
        params: Vec::new(),
        param_rows: 0,
        param_bytes: 0,
    };
    let setup = writer.script.setup.clone();
    for sql in &setup {
        let conn = writer.conn.as_mut().expect("no load runs during setup");
        if let Err(error) = run(conn, sql, &table).await {
            writer.abandon().await;
            return Err(error.context(format!("prepare the write of {table}")));
        }
    }
    Ok(Box::new(writer))
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

fn start_load(mut conn: Conn, sql: String, feed: Feed) -> ActiveLoad {
    let (tx, rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let rx = std::sync::Mutex::new(Some(rx));
    conn.set_infile_handler(async move {
        let mut rx = rx
            .lock()
            .map_err(|_| mysql_async::Error::Other("infile channel lock poisoned".into()))?
            .take()
            .ok_or_else(|| mysql_async::Error::Other("infile data requested twice".into()))?;
        Ok(futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
            .map(Ok)
            .boxed())
    });
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
    /// The error that ended the write.
    failed: Option<String>,
    /// Whether commit or rollback finished the write.
    done: bool,
    /// Fallback path: parameters of the pending `INSERT`.
    params: Vec<mysql_async::Value>,
    param_rows: usize,
    param_bytes: usize,
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
        ConnectorError::new(
            ErrorKind::Connection,
            format!(
                "write {}: the session loading the rows (id {}) was killed or lost",
                self.request.table, self.conn_id
            ),
        )
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

    /// Sends the buffered rows of the running load.
    async fn send_chunk(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
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
        let Some(joined) = watch(&self.config, self.conn_id, &mut load.task).await else {
            load.task.abort();
            return Err(self.lost_session());
        };
        let (mut conn, outcome) = joined.map_err(|e| {
            ConnectorError::internal(format!(
                "the load task of {} failed: {e}",
                self.request.table
            ))
        })?;
        let table = self.request.table.clone();
        let target = self.feed_target(load.feed).0.table.clone();
        let result = match outcome {
            Err(e) => Err(mysql_error(e, format!("load rows into {target}"))),
            Ok((affected, warnings)) => {
                if warnings > 0 || affected != load.lines {
                    let detail = warning_summary(&mut conn).await;
                    Err(ConnectorError::data(format!(
                        "loading {} rows into {target} for {table}: MariaDB stored {affected} and \
                         reported {warnings} warnings ({detail}); nothing was written",
                        load.lines
                    )))
                } else {
                    Ok(())
                }
            }
        };
        self.conn = Some(conn);
        result
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
                    if let Some(load) = &mut self.load {
                        load.lines += 1;
                    }
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
        self.end_load().await?;
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
        let mut commit = self.script.commit.iter();
        if let Some(first) = commit.next() {
            // `COMMIT`: until here everything can be undone.
            run(conn, first, &table).await?;
        }
        for sql in commit {
            run(conn, sql, &table)
                .await
                .map_err(|e| e.context("swap in the new contents"))?;
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
            clean = true;
            for sql in &self.script.abandon {
                if conn.query_drop(sql.as_str()).await.is_err() {
                    clean = false;
                    break;
                }
            }
            let _ = conn.disconnect().await;
        }
        if !clean {
            // The connection broke (or was killed): the server rolled the transaction back, but a
            // staging table or a created table outlives it. Remove them from a fresh connection.
            let _ = self.cleanup_after_break().await;
        }
    }

    async fn cleanup_after_break(&self) -> Result<()> {
        let mut conn = connect(&self.config).await?;
        let table = &self.request.table;
        let default_db = self.config.database.as_str();
        let db = database_of(table, default_db).to_owned();
        if let (Some(stage), Some(lock)) = (&self.script.stage, &self.script.lock) {
            let got: Option<Option<i64>> = conn
                .query_first(format!("SELECT GET_LOCK({}, 5)", quote_literal(lock)))
                .await
                .map_err(|e| mysql_error(e, "lock"))?;
            if got.flatten() == Some(1) {
                let comment = exec_first_string(
                    &mut conn,
                    "SELECT TABLE_COMMENT FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                    vec![db.as_str().into(), stage.as_str().into()],
                    "look up the staging table",
                )
                .await?;
                if comment.as_deref() == Some(STAGE_MARKER) {
                    let _ = conn
                        .query_drop(format!(
                            "DROP TABLE {}",
                            quote_sibling(table, default_db, stage)
                        ))
                        .await;
                }
                let _ = conn.query_drop(unlock_sql(lock)).await;
            }
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
            failed: None,
            done: false,
            params: Vec::new(),
            param_rows: 0,
            param_bytes: 0,
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
    fn long_names_stay_within_the_identifier_limit() {
        let long = "x".repeat(60);
        let name = sibling_name(&long, STAGE_SUFFIX);
        assert!(name.chars().count() <= MAX_IDENT_CHARS, "{name}");
        assert!(name.ends_with(STAGE_SUFFIX));
        assert_ne!(name, sibling_name(&"x".repeat(61), STAGE_SUFFIX));
        assert_eq!(sibling_name("t", STAGE_SUFFIX), "t__sluice_stage");
    }
}
