//! Integrate: applying coalesced batches of captured changes, each in one InnoDB transaction
//! together with its checkpoint.
//!
//! An applier holds one connection. Per target table it makes session temporary tables (`CREATE
//! TEMPORARY TABLE … AS SELECT … WHERE 0`, so their columns have the target's types, charsets and
//! collations): one for deleted keys, one for whole rows, and one per set of updated columns (made
//! before the transaction of the first batch that needs it: DDL outside a transaction). A batch
//! then runs, per table, `DELETE FROM t` when it truncates (`TRUNCATE` would commit), one `LOAD
//! DATA LOCAL INFILE` of the deleted keys and one `DELETE t FROM t JOIN keys`, one load of the
//! rows and one `INSERT … SELECT … ON DUPLICATE KEY UPDATE` (delete-by-key and a plain insert when
//! the key is not the table's only unique key), and per set of updated columns one load and one
//! `UPDATE t JOIN tmp … SET`; then the checkpoint row is upserted and the transaction committed.
//! When the server refuses local infile, rows go into the temporary tables by multi-row prepared
//! `INSERT`s instead.
//!
//! `LOAD DATA` turns refused values into warnings, so values are checked before they are encoded
//! (NULL in a NOT NULL column, text too long, numbers out of range) and every load must store
//! exactly the lines sent without a warning, or the batch rolls back.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use chrono::Utc;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use sluice_connector::{
    ApplySummary, ChangeApplier, ChangeWriter, ConnectorError, ErrorKind, IntegrateBatch,
    IntegrateRequest, IntegrateTable, Result, TableChanges,
};
use sluice_model::{Checkpoint, ColumnDef, Value, describe_key};

use crate::MariadbConnector;
use crate::config::MariadbConfig;
use crate::connect::connect;
use crate::error::mysql_error;
use crate::introspect::{codec_of, table_info};
use crate::types::{
    Codec, accepts, column_ddl, database_of, put_tsv, quote_ident, quote_table, to_field, to_param,
    varchar_budget,
};
use crate::write::{Method, feed_infile, method_for};

/// The checkpoint table's name, in the location's database.
const CHECKPOINT_TABLE: &str = "sluice_integrate_checkpoint";
/// Bytes of encoded rows per chunk of a load.
const CHUNK_BYTES: usize = 1 << 20;
/// Rows per `INSERT` of the fallback path (also bounded by placeholders).
const INSERT_ROWS: usize = 1000;

fn checkpoint_table(config: &MariadbConfig) -> String {
    format!(
        "{}.{}",
        quote_ident(&config.database),
        quote_ident(CHECKPOINT_TABLE)
    )
}

fn create_checkpoint_sql(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\
         name VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, \
         position TEXT CHARACTER SET utf8mb4 NOT NULL, applied BIGINT NULL, \
         updated_at DATETIME(6) NOT NULL) ENGINE=InnoDB"
    )
}

fn store_checkpoint_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} (name, position, applied, updated_at) \
         VALUES (?, ?, ?, UTC_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE \
         position = VALUES(position), applied = VALUES(applied), updated_at = VALUES(updated_at)"
    )
}

const CHECKPOINT_EXISTS: &str =
    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?";

async fn checkpoint_table_exists(conn: &mut Conn, config: &MariadbConfig) -> Result<bool> {
    let found: Option<u64> = conn
        .exec_first(
            CHECKPOINT_EXISTS,
            (config.database.as_str(), CHECKPOINT_TABLE),
        )
        .await
        .map_err(|e| mysql_error(e, "look for the checkpoint table"))?;
    Ok(found.unwrap_or_default() > 0)
}

async fn load_checkpoint(
    conn: &mut Conn,
    config: &MariadbConfig,
    name: &str,
) -> Result<Option<Checkpoint>> {
    if !checkpoint_table_exists(conn, config).await? {
        return Ok(None);
    }
    let row: Option<(String, Option<i64>)> = conn
        .exec_first(
            format!(
                "SELECT position, applied FROM {} WHERE name = ?",
                checkpoint_table(config)
            ),
            (name,),
        )
        .await
        .map_err(|e| mysql_error(e, format!("read the checkpoint of {name}")))?;
    let Some((position, applied)) = row else {
        return Ok(None);
    };
    sluice_connector::checkpoint_from_stored(name, &position, applied).map(Some)
}

#[async_trait::async_trait]
impl ChangeWriter for MariadbConnector {
    async fn open_integrate(&self, request: IntegrateRequest) -> Result<Box<dyn ChangeApplier>> {
        let mut conn = connect(self.config()).await?;
        match MariadbApplier::open(&mut conn, self.config().clone(), request).await {
            Ok(mut applier) => {
                applier.conn = Some(conn);
                Ok(Box::new(applier))
            }
            Err(error) => {
                let _ = conn.disconnect().await;
                Err(error)
            }
        }
    }

    async fn read_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>> {
        let mut conn = self.conn().await?;
        load_checkpoint(&mut conn, self.config(), name).await
    }

    async fn drop_integrate(&self, name: &str) -> Result<()> {
        let config = self.config();
        let mut conn = self.conn().await?;
        if !checkpoint_table_exists(&mut conn, config).await? {
            return Ok(());
        }
        let table = checkpoint_table(config);
        let context = || format!("drop the checkpoint of {name}");
        conn.exec_drop(format!("DELETE FROM {table} WHERE name = ?"), (name,))
            .await
            .map_err(|e| mysql_error(e, context()))?;
        let left: Option<u64> = conn
            .query_first(format!("SELECT COUNT(*) FROM {table}"))
            .await
            .map_err(|e| mysql_error(e, context()))?;
        if left.unwrap_or_default() == 0 {
            // An integrate opened meanwhile creates it again when it stores its checkpoint.
            conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))
                .await
                .map_err(|e| mysql_error(e, context()))?;
        }
        Ok(())
    }
}

/// The temporary table and statement of one set of updated columns.
struct UpdateGroup {
    temp: String,
    /// Request column indexes loaded: the key columns, then the set non-key columns.
    columns: Vec<usize>,
    update: String,
}

/// One target table as the applier writes it.
struct Table {
    def: IntegrateTable,
    index: usize,
    target: String,
    codecs: Vec<Codec>,
    not_null: Vec<bool>,
    temp_keys: String,
    temp_rows: String,
    delete_keys: String,
    /// Run in order after the rows' load: the upsert, or delete-by-key and insert.
    merge_rows: Vec<String>,
    groups: BTreeMap<Vec<usize>, UpdateGroup>,
}

fn names(def: &IntegrateTable, indexes: &[usize], alias: Option<&str>) -> String {
    indexes
        .iter()
        .map(|&i| {
            let c = quote_ident(def.columns[i].name.as_str());
            match alias {
                Some(a) => format!("{a}.{c}"),
                None => c,
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_match(def: &IntegrateTable, alias: &str) -> String {
    def.key
        .iter()
        .map(|&k| {
            let c = quote_ident(def.columns[k].name.as_str());
            format!("t.{c} = {alias}.{c}")
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

impl Table {
    /// Checks the target of `def` and makes the temporary tables of table number `index`.
    async fn open(
        conn: &mut Conn,
        config: &MariadbConfig,
        index: usize,
        def: IntegrateTable,
    ) -> Result<Table> {
        let table = &def.table;
        if def.key.is_empty() {
            return Err(ConnectorError::schema(format!(
                "an integrate into {table} needs key columns"
            )));
        }
        if let Some(&bad) = def.key.iter().find(|&&k| k >= def.columns.len()) {
            return Err(ConnectorError::internal(format!(
                "key column {bad} of {table} is not one of its {} columns",
                def.columns.len()
            )));
        }
        let info = table_info(conn, &config.database, table)
            .await?
            .ok_or_else(|| {
                ConnectorError::not_found(format!("target table {table} does not exist"))
            })?;
        if info.table_type != "BASE TABLE" {
            return Err(ConnectorError::schema(format!(
                "target {table} is a {}, not a table",
                info.table_type.to_lowercase()
            )));
        }
        let mut codecs = Vec::with_capacity(def.columns.len());
        let mut not_null = Vec::with_capacity(def.columns.len());
        for c in &def.columns {
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
            not_null.push(!native.nullable);
        }
        let db = database_of(table, &config.database);
        let mut key_names: Vec<String> = def
            .key
            .iter()
            .map(|&k| def.columns[k].name.as_str().to_ascii_lowercase())
            .collect();
        key_names.sort_unstable();
        let unique = unique_keys(conn, db, table).await?;
        // ON DUPLICATE KEY UPDATE fires on any unique key: only safe when the key is the only one.
        let only_key = unique.len() == 1 && {
            let mut cols: Vec<String> = unique[0].iter().map(|c| c.to_ascii_lowercase()).collect();
            cols.sort_unstable();
            cols == key_names
        };
        let target = quote_table(table, &config.database);
        let temp = |kind: &str| {
            format!(
                "{}.{}",
                quote_ident(&config.database),
                quote_ident(&format!("sluice_integrate_{index}_{kind}"))
            )
        };
        let (temp_keys, temp_rows) = (temp("keys"), temp("rows"));
        let all: Vec<usize> = (0..def.columns.len()).collect();
        for (temp, columns) in [(&temp_keys, &def.key), (&temp_rows, &all)] {
            make_temp(conn, temp, &target, &def, columns).await?;
        }
        let all_names = names(&def, &all, None);
        let delete_keys = format!(
            "DELETE t FROM {target} AS t JOIN {temp_keys} AS k ON {}",
            key_match(&def, "k")
        );
        let insert =
            format!("INSERT INTO {target} ({all_names}) SELECT {all_names} FROM {temp_rows}");
        let merge_rows = if only_key {
            let updates: Vec<String> = all
                .iter()
                .filter(|i| !def.key.contains(i))
                .map(|&i| {
                    let c = quote_ident(def.columns[i].name.as_str());
                    format!("{c} = VALUES({c})")
                })
                .collect();
            if updates.is_empty() {
                vec![format!(
                    "INSERT IGNORE INTO {target} ({all_names}) SELECT {all_names} FROM {temp_rows}"
                )]
            } else {
                vec![format!(
                    "{insert} ON DUPLICATE KEY UPDATE {}",
                    updates.join(", ")
                )]
            }
        } else {
            vec![
                format!(
                    "DELETE t FROM {target} AS t JOIN {temp_rows} AS r ON {}",
                    key_match(&def, "r")
                ),
                insert,
            ]
        };
        Ok(Table {
            def,
            index,
            target,
            codecs,
            not_null,
            temp_keys,
            temp_rows,
            delete_keys,
            merge_rows,
            groups: BTreeMap::new(),
        })
    }

    /// Makes the temporary table of the update group setting `set` (sorted) when missing.
    async fn ensure_group(
        &mut self,
        conn: &mut Conn,
        config: &MariadbConfig,
        set: &[usize],
    ) -> Result<()> {
        if self.groups.contains_key(set) {
            return Ok(());
        }
        let def = &self.def;
        let mut columns = def.key.clone();
        columns.extend(set.iter().filter(|i| !def.key.contains(i)));
        let temp = format!(
            "{}.{}",
            quote_ident(&config.database),
            quote_ident(&format!(
                "sluice_integrate_{}_set_{}",
                self.index,
                self.groups.len()
            ))
        );
        make_temp(conn, &temp, &self.target, def, &columns).await?;
        let assignments = columns[def.key.len()..]
            .iter()
            .map(|&i| {
                let c = quote_ident(def.columns[i].name.as_str());
                format!("t.{c} = u.{c}")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let update = format!(
            "UPDATE {} AS t JOIN {temp} AS u ON {} SET {assignments}",
            self.target,
            key_match(def, "u")
        );
        self.groups.insert(
            set.to_vec(),
            UpdateGroup {
                temp,
                columns,
                update,
            },
        );
        Ok(())
    }
}

/// (Re)makes the temporary table `temp` with the `columns` of `target`, empty.
async fn make_temp(
    conn: &mut Conn,
    temp: &str,
    target: &str,
    def: &IntegrateTable,
    columns: &[usize],
) -> Result<()> {
    let context = || format!("prepare the integrate into {}", def.table);
    conn.query_drop(format!("DROP TEMPORARY TABLE IF EXISTS {temp}"))
        .await
        .map_err(|e| mysql_error(e, context()))?;
    conn.query_drop(format!(
        "CREATE TEMPORARY TABLE {temp} ENGINE=InnoDB AS SELECT {} FROM {target} WHERE 0",
        names(def, columns, None)
    ))
    .await
    .map_err(|e| mysql_error(e, context()))
}

/// Columns of each unique index of the table.
async fn unique_keys(
    conn: &mut Conn,
    db: &str,
    table: &sluice_model::TableRef,
) -> Result<Vec<Vec<String>>> {
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

/// An integrate into one MariaDB database over one connection.
struct MariadbApplier {
    config: MariadbConfig,
    conn: Option<Conn>,
    method: Method,
    name: String,
    tables: Vec<Table>,
    store_checkpoint: String,
    checkpoint: Option<Checkpoint>,
    /// Whether a batch's transaction may still be open (a call that was abandoned midway).
    in_batch: bool,
    broken: Option<String>,
    buf: BytesMut,
}

/// Which rows of a table a load carries, and how to name their keys in messages.
struct Rows<'a> {
    rows: Vec<&'a [Value]>,
    /// Indexes into each row of the values loaded, in the temporary table's column order.
    columns: &'a [usize],
    /// Whether rows hold only the key (deleted keys) rather than all columns.
    key_only: bool,
}

impl MariadbApplier {
    async fn open(
        conn: &mut Conn,
        config: MariadbConfig,
        request: IntegrateRequest,
    ) -> Result<MariadbApplier> {
        let table = checkpoint_table(&config);
        conn.query_drop(create_checkpoint_sql(&table))
            .await
            .map_err(|e| mysql_error(e, "create the checkpoint table"))?;
        let method = method_for(conn, &config).await?;
        let mut tables = Vec::with_capacity(request.tables.len());
        for (i, def) in request.tables.into_iter().enumerate() {
            tables.push(Table::open(conn, &config, i, def).await?);
        }
        let checkpoint = load_checkpoint(conn, &config, &request.name).await?;
        Ok(MariadbApplier {
            store_checkpoint: store_checkpoint_sql(&table),
            config,
            conn: None,
            method,
            name: request.name,
            tables,
            checkpoint,
            in_batch: false,
            broken: None,
            buf: BytesMut::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4),
        })
    }

    fn conn(&mut self) -> Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| ConnectorError::internal("the integrate has no connection"))
    }

    fn check_usable(&self) -> Result<()> {
        match &self.broken {
            Some(why) => Err(ConnectorError::new(
                ErrorKind::Connection,
                format!(
                    "the integrate {} is broken ({why}); open it again",
                    self.name
                ),
            )),
            None => Ok(()),
        }
    }

    /// Rolls back what may be open; a connection that cannot is marked broken.
    async fn roll_back(&mut self) {
        let outcome = match self.conn.as_mut() {
            Some(conn) => conn.query_drop("ROLLBACK").await.map_err(|e| e.to_string()),
            None => Err("no connection".to_owned()),
        };
        match outcome {
            Ok(()) => self.in_batch = false,
            Err(error) => {
                tracing::warn!(error = %error, integrate = %self.name, "rolling back a failed batch failed");
                self.broken = Some("a failed batch could not be rolled back".to_owned());
                // Closing the session makes the server roll back and release its locks.
                if let Some(conn) = self.conn.take() {
                    drop(tokio::spawn(async move {
                        let _ = conn.disconnect().await;
                    }));
                }
            }
        }
    }

    /// Closes the session and opens a new one with new temporary tables.
    async fn reconnect(&mut self) -> Result<()> {
        if let Some(conn) = self.conn.take() {
            drop(tokio::spawn(async move {
                let _ = conn.disconnect().await;
            }));
        }
        let mut conn = connect(&self.config).await?;
        let mut tables = Vec::with_capacity(self.tables.len());
        for (i, table) in self.tables.iter().enumerate() {
            match Table::open(&mut conn, &self.config, i, table.def.clone()).await {
                Ok(table) => tables.push(table),
                Err(error) => {
                    let _ = conn.disconnect().await;
                    return Err(error);
                }
            }
        }
        self.tables = tables;
        self.conn = Some(conn);
        self.in_batch = false;
        Ok(())
    }

    /// Runs `sql` as a prepared statement (cached by the driver).
    async fn exec(&mut self, sql: &str, table: &sluice_model::TableRef) -> Result<()> {
        self.conn()?
            .exec_drop(sql, ())
            .await
            .map_err(|e| mysql_error(e, format!("apply changes to {table}")))
    }

    async fn run(&mut self, batch: &IntegrateBatch) -> Result<ApplySummary> {
        let mut summary = ApplySummary::default();
        for changes in &batch.tables {
            self.run_table(changes, &mut summary).await?;
        }
        let (position, applied) = sluice_connector::stored_checkpoint(&batch.checkpoint)?;
        let sql = self.store_checkpoint.clone();
        let name = self.name.clone();
        self.conn()?
            .exec_drop(sql, (name.as_str(), position, applied))
            .await
            .map_err(|e| mysql_error(e, format!("store the checkpoint of {name}")))?;
        Ok(summary)
    }

    async fn run_table(
        &mut self,
        changes: &TableChanges,
        summary: &mut ApplySummary,
    ) -> Result<()> {
        let index = changes.table;
        let Some(table) = self.tables.get(index) else {
            return Err(ConnectorError::internal(format!(
                "a batch names table {index} of an integrate of {} tables",
                self.tables.len()
            )));
        };
        let name = table.def.table.clone();
        let width = table.def.columns.len();
        let key_width = table.def.key.len();
        changes.check_shape(&table.def)?;
        if changes.truncate {
            let sql = format!("DELETE FROM {}", table.target);
            self.exec(&sql, &name).await?;
            summary.truncated += 1;
        }
        if !changes.deletes.is_empty() {
            let table = &self.tables[index];
            let (temp, delete) = (table.temp_keys.clone(), table.delete_keys.clone());
            let columns: Vec<usize> = (0..key_width).collect();
            self.load(
                index,
                &temp,
                Rows {
                    rows: changes.deletes.rows().collect(),
                    columns: &columns,
                    key_only: true,
                },
            )
            .await?;
            self.exec(&delete, &name).await?;
            summary.deleted += changes.deletes.len() as u64;
        }
        if !changes.upserts.is_empty() {
            let table = &self.tables[index];
            let (temp, merge) = (table.temp_rows.clone(), table.merge_rows.clone());
            let columns: Vec<usize> = (0..width).collect();
            self.load(
                index,
                &temp,
                Rows {
                    rows: changes.upserts.rows().collect(),
                    columns: &columns,
                    key_only: false,
                },
            )
            .await?;
            for sql in &merge {
                self.exec(sql, &name).await?;
            }
            summary.upserted += changes.upserts.len() as u64;
        }
        for (set, rows) in group_updates(changes, &name, width)? {
            summary.updated += rows.len() as u64;
            let Some(group) = self.tables[index].groups.get(&set) else {
                return Err(ConnectorError::internal(format!(
                    "no temporary table for an update of {name}"
                )));
            };
            if group.columns.len() == key_width {
                continue;
            }
            let (temp, columns, update) = (
                group.temp.clone(),
                group.columns.clone(),
                group.update.clone(),
            );
            self.load(
                index,
                &temp,
                Rows {
                    rows,
                    columns: &columns,
                    key_only: false,
                },
            )
            .await?;
            self.exec(&update, &name).await?;
        }
        Ok(())
    }

    /// Empties `temp` and loads `rows` into it, checking every value first.
    async fn load(&mut self, index: usize, temp: &str, rows: Rows<'_>) -> Result<()> {
        let table = &self.tables[index];
        let def = &table.def;
        let key_defs: Vec<ColumnDef> = def.key.iter().map(|&k| def.columns[k].clone()).collect();
        let key_positions: Vec<usize> = (0..key_defs.len()).collect();
        // The request column each loaded value belongs to.
        let column_of = |n: usize| {
            if rows.key_only {
                def.key[rows.columns[n]]
            } else {
                rows.columns[n]
            }
        };
        let refuse = |row: &[Value], column: usize, reason: String| {
            let key = if rows.key_only {
                describe_key(&key_defs, &key_positions, row)
            } else {
                describe_key(&def.columns, &def.key, row)
            };
            ConnectorError::data(format!(
                "target table {} row {key} column {}: {reason}",
                def.table, def.columns[column].name
            ))
        };
        let column_list = {
            let cols: Vec<usize> = (0..rows.columns.len()).map(column_of).collect();
            names(def, &cols, None)
        };
        let name = def.table.clone();
        // Check and encode everything before anything is sent.
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut params: Vec<Vec<mysql_async::Value>> = Vec::new();
        self.buf.clear();
        for row in &rows.rows {
            let mut values = Vec::new();
            for (n, &i) in rows.columns.iter().enumerate() {
                let column = column_of(n);
                let value = &row[i];
                if value.is_null() && table.not_null[column] {
                    return Err(refuse(row, column, "NULL in a NOT NULL column".to_owned()));
                }
                let field = to_field(value, &table.codecs[column])
                    .map_err(|reason| refuse(row, column, reason))?;
                match self.method {
                    Method::Load => {
                        if n > 0 {
                            self.buf.put_u8(b'\t');
                        }
                        put_tsv(&mut self.buf, field);
                    }
                    Method::Insert => values.push(to_param(field)),
                }
            }
            match self.method {
                Method::Load => {
                    self.buf.put_u8(b'\n');
                    if self.buf.len() >= CHUNK_BYTES {
                        chunks.push(self.buf.split().freeze());
                    }
                }
                Method::Insert => params.push(values),
            }
        }
        if !self.buf.is_empty() {
            chunks.push(self.buf.split().freeze());
        }
        let sent = rows.rows.len() as u64;
        let method = self.method;
        let conn = self.conn()?;
        let what = || format!("apply changes to {name}");
        conn.query_drop(format!("DELETE FROM {temp}"))
            .await
            .map_err(|e| mysql_error(e, what()))?;
        let (stored, warnings) = match method {
            Method::Load => {
                feed_infile(conn, futures::stream::iter(chunks));
                conn.query_drop(format!(
                    "LOAD DATA LOCAL INFILE 'sluice' INTO TABLE {temp} CHARACTER SET binary \
                     FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({column_list})"
                ))
                .await
                .map_err(|e| mysql_error(e, what()))?;
                (conn.affected_rows(), conn.get_warnings())
            }
            Method::Insert => {
                let width = rows.columns.len().max(1);
                let per_statement = INSERT_ROWS.min(60_000 / width).max(1);
                let (mut stored, mut warnings) = (0, 0);
                for part in params.chunks(per_statement) {
                    let one = format!("({})", vec!["?"; width].join(", "));
                    let sql = format!(
                        "INSERT INTO {temp} ({column_list}) VALUES {}",
                        vec![one; part.len()].join(", ")
                    );
                    conn.exec_drop(sql, part.concat())
                        .await
                        .map_err(|e| mysql_error(e, what()))?;
                    stored += conn.affected_rows();
                    warnings += conn.get_warnings();
                }
                (stored, warnings)
            }
        };
        if stored != sent || warnings > 0 {
            return Err(ConnectorError::data(format!(
                "loading {sent} changes of {name}: MariaDB stored {stored} and reported {warnings} \
                 warnings; nothing was applied"
            )));
        }
        Ok(())
    }

    async fn apply_inner(&mut self, batch: &IntegrateBatch) -> Result<ApplySummary> {
        // From here until the commit, a call abandoned midway leaves the session unusable.
        self.in_batch = true;
        // Temporary tables of new update groups: DDL, so before the transaction.
        for changes in &batch.tables {
            let Some(table) = self.tables.get(changes.table) else {
                continue;
            };
            let (name, width) = (table.def.table.clone(), table.def.columns.len());
            for (set, _) in group_updates(changes, &name, width)? {
                let config = self.config.clone();
                let conn = self
                    .conn
                    .as_mut()
                    .ok_or_else(|| ConnectorError::internal("the integrate has no connection"))?;
                self.tables[changes.table]
                    .ensure_group(conn, &config, &set)
                    .await?;
            }
        }
        let name = self.name.clone();
        self.conn()?
            .query_drop("START TRANSACTION")
            .await
            .map_err(|e| mysql_error(e, format!("begin a batch of {name}")))?;
        let mut summary = self.run(batch).await?;
        self.conn()?
            .query_drop("COMMIT")
            .await
            .map_err(|e| mysql_error(e, format!("commit a batch of {name}")))?;
        self.in_batch = false;
        summary.committed_at = Some(Utc::now());
        Ok(summary)
    }
}

/// The partial updates of `changes` by the (sorted) set of columns they set.
fn group_updates<'a>(
    changes: &'a TableChanges,
    name: &sluice_model::TableRef,
    width: usize,
) -> Result<BTreeMap<Vec<usize>, Vec<&'a [Value]>>> {
    let mut by_set: BTreeMap<Vec<usize>, Vec<&[Value]>> = BTreeMap::new();
    for update in &changes.updates {
        if update.row.len() != width {
            return Err(ConnectorError::internal(format!(
                "an update of {} values for {name} of {width} columns",
                update.row.len()
            )));
        }
        let mut set = update.set.clone();
        set.sort_unstable();
        set.dedup();
        if let Some(&bad) = set.iter().find(|&&i| i >= width) {
            return Err(ConnectorError::internal(format!(
                "an update of {name} sets column {bad} of {width}"
            )));
        }
        by_set.entry(set).or_default().push(&update.row);
    }
    Ok(by_set)
}

#[async_trait::async_trait]
impl ChangeApplier for MariadbApplier {
    fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    async fn apply(&mut self, batch: &IntegrateBatch) -> Result<ApplySummary> {
        self.check_usable()?;
        if self.in_batch {
            // An earlier call was abandoned inside its transaction, perhaps in the middle of a
            // load: its session is closed (the server rolls back what it had not committed) and
            // the integrate goes on in a new one.
            self.reconnect().await?;
        }
        match self.apply_inner(batch).await {
            Ok(summary) => {
                self.checkpoint = Some(batch.checkpoint.clone());
                Ok(summary)
            }
            Err(error) => {
                if self.in_batch {
                    self.roll_back().await;
                }
                Err(error)
            }
        }
    }

    async fn add_column(&mut self, table: usize, column: ColumnDef) -> Result<()> {
        self.check_usable()?;
        if self.in_batch {
            self.reconnect().await?;
        }
        let Some(target) = self.tables.get(table) else {
            return Err(ConnectorError::internal(format!(
                "add a column to table {table} of an integrate of {} tables",
                self.tables.len()
            )));
        };
        let mut def = target.def.clone();
        let name = def.table.clone();
        let target_sql = target.target.clone();
        if def
            .columns
            .iter()
            .any(|c| c.name.as_str().eq_ignore_ascii_case(column.name.as_str()))
        {
            return Err(ConnectorError::schema(format!(
                "the integrate into {name} writes column {} already",
                column.name
            )));
        }
        let config = self.config.clone();
        // A call abandoned from here on leaves the session in an unknown state.
        self.in_batch = true;
        let conn = self.conn()?;
        let info = table_info(conn, &config.database, &name)
            .await?
            .ok_or_else(|| {
                ConnectorError::not_found(format!("target table {name} does not exist"))
            })?;
        if info.column(column.name.as_str()).is_none() {
            let ddl =
                column_ddl(column.data_type, false, &mut varchar_budget()).map_err(|reason| {
                    ConnectorError::schema(format!(
                        "cannot add column {} to {name}: {reason}",
                        column.name
                    ))
                })?;
            let mut sql = format!(
                "ALTER TABLE {target_sql} ADD COLUMN {} {} NULL",
                quote_ident(column.name.as_str()),
                ddl.decl
            );
            if let Some(comment) = &ddl.comment {
                sql.push_str(&format!(" COMMENT {comment}"));
            }
            conn.query_drop(sql)
                .await
                .map_err(|e| mysql_error(e, format!("add column {} to {name}", column.name)))?;
        }
        def.columns.push(column);
        let rebuilt = Table::open(conn, &config, table, def).await?;
        self.tables[table] = rebuilt;
        self.in_batch = false;
        Ok(())
    }
}

impl Drop for MariadbApplier {
    fn drop(&mut self) {
        // Closing the connection ends an open transaction (rolled back) and the temporary tables.
        if let Some(conn) = self.conn.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = conn.disconnect().await;
            });
        }
    }
}
