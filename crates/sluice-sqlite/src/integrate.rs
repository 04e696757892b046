//! Integrate: applying coalesced batches of captured changes, each in one `BEGIN IMMEDIATE …
//! COMMIT` transaction together with its checkpoint.
//!
//! An applier owns one connection; each batch runs on a blocking thread that borrows it. Per
//! table the statements are prepared once and cached on the connection: `INSERT … ON CONFLICT
//! (key) DO UPDATE` (delete-by-key and a plain insert when no primary key or unique index covers
//! exactly the key), `DELETE … WHERE key`, and one `UPDATE … SET cols WHERE key` per set of
//! updated columns. Values are checked before they are bound: NULL in a NOT NULL column, and text
//! longer than a column declared `VARCHAR(n)` (which SQLite itself would store, and a read would
//! then refuse), are `Data` errors naming table, column and key.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, Statement};
use sluice_connector::{
    ApplySummary, ChangeApplier, ChangeWriter, ConnectorError, ErrorKind, IntegrateBatch,
    IntegrateRequest, IntegrateTable, Result, TableChanges,
};
use sluice_model::{Checkpoint, ColumnDef, DataType, TableRef, Value, describe_key};

use crate::SqliteConnector;
use crate::config::SqliteConfig;
use crate::connect::{open_read, open_write};
use crate::error::sqlite_error;
use crate::introspect::table_schema;
use crate::types::{
    Storage, data_type_of, declared_type, encode, quote_ident, quote_table, storage_of,
};

/// The checkpoint table, `sluice_integrate_checkpoint` in the `main` database.
const CREATE_CHECKPOINT: &str = "CREATE TABLE IF NOT EXISTS main.sluice_integrate_checkpoint \
     (name TEXT PRIMARY KEY, position TEXT NOT NULL, applied INTEGER, updated_at TEXT NOT NULL)";
const CHECKPOINT_EXISTS: &str = "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = 'sluice_integrate_checkpoint'";
const READ_CHECKPOINT: &str =
    "SELECT position, applied FROM main.sluice_integrate_checkpoint WHERE name = ?1";
const STORE_CHECKPOINT: &str = "INSERT INTO main.sluice_integrate_checkpoint \
     (name, position, applied, updated_at) \
     VALUES (?1, ?2, ?3, strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')) \
     ON CONFLICT (name) DO UPDATE SET position = excluded.position, applied = excluded.applied, \
     updated_at = excluded.updated_at";
const DELETE_CHECKPOINT: &str = "DELETE FROM main.sluice_integrate_checkpoint WHERE name = ?1";
const ANY_CHECKPOINT: &str = "SELECT 1 FROM main.sluice_integrate_checkpoint LIMIT 1";
const DROP_CHECKPOINT: &str = "DROP TABLE main.sluice_integrate_checkpoint";
/// Statements cached per connection (a handful per table and per set of updated columns).
const STATEMENT_CACHE: usize = 256;

fn load_checkpoint(conn: &Connection, name: &str) -> Result<Option<Checkpoint>> {
    let context = || format!("read the checkpoint of {name}");
    let exists = conn
        .query_row(CHECKPOINT_EXISTS, [], |_| Ok(()))
        .optional()
        .map_err(|e| sqlite_error(e, context()))?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let row = conn
        .query_row(READ_CHECKPOINT, [name], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Option<i64>>(1)?))
        })
        .optional()
        .map_err(|e| sqlite_error(e, context()))?;
    let Some((position, applied)) = row else {
        return Ok(None);
    };
    sluice_connector::checkpoint_from_stored(name, &position, applied).map(Some)
}

#[async_trait::async_trait]
impl ChangeWriter for SqliteConnector {
    async fn open_integrate(&self, request: IntegrateRequest) -> Result<Box<dyn ChangeApplier>> {
        let state = self
            .blocking(move |config| Applier::open(config, request))
            .await?;
        Ok(Box::new(SqliteApplier {
            checkpoint: state.checkpoint.clone(),
            state: Arc::new(Mutex::new(state)),
        }))
    }

    async fn read_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>> {
        let name = name.to_owned();
        self.blocking(move |config| {
            if !config.exists() {
                return Ok(None);
            }
            load_checkpoint(&open_read(config)?, &name)
        })
        .await
    }

    async fn drop_integrate(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.blocking(move |config| {
            if !config.exists() {
                return Ok(());
            }
            let conn = open_write(config)?;
            let context = || format!("drop the checkpoint of {name}");
            conn.execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| sqlite_error(e, context()))?;
            let outcome = (|| -> rusqlite::Result<()> {
                if conn
                    .query_row(CHECKPOINT_EXISTS, [], |_| Ok(()))
                    .optional()?
                    .is_none()
                {
                    return Ok(());
                }
                conn.execute(DELETE_CHECKPOINT, [&name])?;
                if conn
                    .query_row(ANY_CHECKPOINT, [], |_| Ok(()))
                    .optional()?
                    .is_none()
                {
                    conn.execute_batch(DROP_CHECKPOINT)?;
                }
                Ok(())
            })();
            match outcome {
                Ok(()) => conn
                    .execute_batch("COMMIT")
                    .map_err(|e| sqlite_error(e, context())),
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(sqlite_error(e, context()))
                }
            }
        })
        .await
    }
}

/// One target table as the applier writes it.
struct Table {
    def: IntegrateTable,
    target: String,
    /// How each request column stores its values.
    storage: Vec<Storage>,
    /// Whether each request column is NOT NULL in the target.
    not_null: Vec<bool>,
    /// The declared length of each request column declared `VARCHAR(n)`.
    max_chars: Vec<Option<u32>>,
    /// `INSERT … ON CONFLICT … DO UPDATE`, or a plain insert after `delete` when no unique index
    /// covers the key.
    upsert: String,
    unique_key: bool,
    /// `DELETE … WHERE key`, the key bound as `?1…`.
    delete: String,
}

impl Table {
    fn open(conn: &Connection, def: IntegrateTable) -> Result<Table> {
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
        let schema = table_schema(conn, table)?.ok_or_else(|| {
            ConnectorError::not_found(format!("target table {table} does not exist"))
        })?;
        let mut storage = Vec::with_capacity(def.columns.len());
        let mut not_null = Vec::with_capacity(def.columns.len());
        let mut max_chars = Vec::with_capacity(def.columns.len());
        for column in &def.columns {
            let found = schema
                .columns
                .iter()
                .find(|t| t.name.as_str().eq_ignore_ascii_case(column.name.as_str()))
                .ok_or_else(|| {
                    ConnectorError::schema(format!(
                        "target table {table} has no column {}",
                        column.name
                    ))
                })?;
            let declared = found.native_type.as_deref().unwrap_or_default();
            storage.push(storage_of(declared));
            not_null.push(!found.nullable);
            max_chars.push(match data_type_of(declared) {
                Some(DataType::Varchar(n)) => Some(n),
                _ => None,
            });
        }
        let key_names: Vec<String> = def
            .key
            .iter()
            .map(|&k| def.columns[k].name.as_str().to_ascii_lowercase())
            .collect();
        let mut sorted_key = key_names.clone();
        sorted_key.sort_unstable();
        let mut primary: Vec<String> = schema
            .primary_key
            .iter()
            .map(|c| c.as_str().to_ascii_lowercase())
            .collect();
        primary.sort_unstable();
        let unique_key = primary == sorted_key || unique_index_on(conn, table, &sorted_key)?;
        let target = quote_table(table);
        let names: Vec<String> = def
            .columns
            .iter()
            .map(|c| quote_ident(c.name.as_str()))
            .collect();
        let params: Vec<String> = (1..=def.columns.len()).map(|i| format!("?{i}")).collect();
        let insert = format!(
            "INSERT INTO {target} ({}) VALUES ({})",
            names.join(", "),
            params.join(", ")
        );
        let upsert = if unique_key {
            let keys: Vec<&str> = def.key.iter().map(|&k| names[k].as_str()).collect();
            let updates: Vec<String> = (0..def.columns.len())
                .filter(|i| !def.key.contains(i))
                .map(|i| format!("{0} = excluded.{0}", names[i]))
                .collect();
            let action = if updates.is_empty() {
                "DO NOTHING".to_owned()
            } else {
                format!("DO UPDATE SET {}", updates.join(", "))
            };
            format!("{insert} ON CONFLICT ({}) {action}", keys.join(", "))
        } else {
            insert
        };
        let delete = format!("DELETE FROM {target} WHERE {}", key_match(&def, 1));
        Ok(Table {
            def,
            target,
            storage,
            not_null,
            max_chars,
            upsert,
            unique_key,
            delete,
        })
    }

    /// `UPDATE … SET` the non-key columns of `set` (bound first) `WHERE` the key (bound after).
    fn update_sql(&self, set: &[usize]) -> Option<String> {
        let assigned: Vec<String> = set
            .iter()
            .filter(|i| !self.def.key.contains(i))
            .enumerate()
            .map(|(n, &i)| {
                format!(
                    "{} = ?{}",
                    quote_ident(self.def.columns[i].name.as_str()),
                    n + 1
                )
            })
            .collect();
        if assigned.is_empty() {
            return None;
        }
        Some(format!(
            "UPDATE {} SET {} WHERE {}",
            self.target,
            assigned.join(", "),
            key_match(&self.def, assigned.len() + 1)
        ))
    }

    /// Binds `row[i]` (column `column` of the request) as parameter `n`, checking it first.
    fn bind(
        &self,
        statement: &mut Statement<'_>,
        n: usize,
        row: &[Value],
        key: &RowKey<'_>,
        column: usize,
        value: &Value,
    ) -> Result<()> {
        let refuse = |reason: String| {
            ConnectorError::data(format!(
                "target table {} row {} column {}: {reason}",
                self.def.table,
                key.describe(row),
                self.def.columns[column].name
            ))
        };
        match value {
            Value::Null if self.not_null[column] => {
                return Err(refuse("NULL in a NOT NULL column".to_owned()));
            }
            Value::Text(s) => {
                if let Some(n) = self.max_chars[column] {
                    let chars = s.chars().count();
                    if chars > n as usize {
                        return Err(refuse(format!(
                            "text of {chars} characters is longer than varchar({n})"
                        )));
                    }
                }
            }
            _ => {}
        }
        let bound = encode(value, self.storage[column]).map_err(refuse)?;
        statement
            .raw_bind_parameter(n, bound)
            .map_err(|e| sqlite_error(e, format_args!("bind a value for {}", self.def.table)))
    }
}

/// How to name the key of a row in messages: a whole row, or the key columns alone.
enum RowKey<'a> {
    Row(&'a IntegrateTable),
    Key(&'a [ColumnDef]),
}

impl RowKey<'_> {
    fn describe(&self, row: &[Value]) -> String {
        match self {
            RowKey::Row(def) => describe_key(&def.columns, &def.key, row),
            RowKey::Key(defs) => {
                let key: Vec<usize> = (0..defs.len()).collect();
                describe_key(defs, &key, row)
            }
        }
    }
}

fn key_match(def: &IntegrateTable, first: usize) -> String {
    def.key
        .iter()
        .enumerate()
        .map(|(n, &k)| {
            format!(
                "{} = ?{}",
                quote_ident(def.columns[k].name.as_str()),
                first + n
            )
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Whether a unique index without a condition covers exactly `columns` (lowercase, sorted).
fn unique_index_on(conn: &Connection, table: &TableRef, columns: &[String]) -> Result<bool> {
    let schema = table.schema.as_ref().map_or("main", |s| s.as_str());
    let context = || format!("read the indexes of {table}");
    let mut list = conn
        .prepare("SELECT name FROM pragma_index_list(?1, ?2) WHERE \"unique\" = 1 AND partial = 0")
        .map_err(|e| sqlite_error(e, context()))?;
    let indexes: Vec<String> = list
        .query_map([table.name.as_str(), schema], |row| row.get(0))
        .map_err(|e| sqlite_error(e, context()))?
        .collect::<rusqlite::Result<_>>()
        .map_err(|e| sqlite_error(e, context()))?;
    let mut info = conn
        .prepare("SELECT name FROM pragma_index_info(?1, ?2) ORDER BY seqno")
        .map_err(|e| sqlite_error(e, context()))?;
    for index in indexes {
        let names: Vec<Option<String>> = info
            .query_map([index.as_str(), schema], |row| row.get(0))
            .map_err(|e| sqlite_error(e, context()))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| sqlite_error(e, context()))?;
        // An expression column has no name: such an index is no key.
        let Some(mut names) = names
            .into_iter()
            .map(|n| n.map(|n| n.to_ascii_lowercase()))
            .collect::<Option<Vec<String>>>()
        else {
            continue;
        };
        names.sort_unstable();
        if names == columns {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The connection and what the applier knows, moved to a blocking thread for each call.
struct Applier {
    conn: Connection,
    name: String,
    tables: Vec<Table>,
    checkpoint: Option<Checkpoint>,
    /// Why the connection cannot be used any more, once it cannot.
    broken: Option<String>,
}

impl Applier {
    fn open(config: &SqliteConfig, request: IntegrateRequest) -> Result<Applier> {
        let conn = open_write(config)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.execute_batch(CREATE_CHECKPOINT)
            .map_err(|e| sqlite_error(e, "create the checkpoint table"))?;
        let tables = request
            .tables
            .into_iter()
            .map(|def| Table::open(&conn, def))
            .collect::<Result<Vec<_>>>()?;
        let checkpoint = load_checkpoint(&conn, &request.name)?;
        Ok(Applier {
            conn,
            name: request.name,
            tables,
            checkpoint,
            broken: None,
        })
    }

    /// Applies `batch` in one transaction; on failure rolls back and tells whether the rollback
    /// failed too.
    fn apply(
        &mut self,
        batch: &IntegrateBatch,
    ) -> std::result::Result<ApplySummary, (ConnectorError, bool)> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| {
            (
                sqlite_error(e, format_args!("begin a batch of {}", self.name)),
                false,
            )
        })?;
        match self.run(batch) {
            Ok(mut summary) => match self.conn.execute_batch("COMMIT") {
                Ok(()) => {
                    summary.committed_at = Some(Utc::now());
                    self.checkpoint = Some(batch.checkpoint.clone());
                    Ok(summary)
                }
                Err(e) => {
                    let broken = self.roll_back();
                    Err((
                        sqlite_error(e, format_args!("commit a batch of {}", self.name)),
                        broken,
                    ))
                }
            },
            Err(error) => {
                let broken = self.roll_back();
                Err((error, broken))
            }
        }
    }

    /// Rolls back what is open; true when that failed.
    fn roll_back(&self) -> bool {
        if self.conn.is_autocommit() {
            return false;
        }
        self.conn.execute_batch("ROLLBACK").is_err()
    }

    fn run(&self, batch: &IntegrateBatch) -> Result<ApplySummary> {
        let mut summary = ApplySummary::default();
        for changes in &batch.tables {
            self.run_table(changes, &mut summary)?;
        }
        let (position, applied) = sluice_connector::stored_checkpoint(&batch.checkpoint)?;
        let mut store = self
            .conn
            .prepare_cached(STORE_CHECKPOINT)
            .map_err(|e| sqlite_error(e, "prepare storing the checkpoint"))?;
        store
            .execute(rusqlite::params![self.name, position, applied])
            .map_err(|e| sqlite_error(e, format_args!("store the checkpoint of {}", self.name)))?;
        Ok(summary)
    }

    fn run_table(&self, changes: &TableChanges, summary: &mut ApplySummary) -> Result<()> {
        let Some(table) = self.tables.get(changes.table) else {
            return Err(ConnectorError::internal(format!(
                "a batch names table {} of an integrate of {} tables",
                changes.table,
                self.tables.len()
            )));
        };
        let def = &table.def;
        let name = &def.table;
        let width = def.columns.len();
        changes.check_shape(&table.def)?;
        let conn = &self.conn;
        let prepare = |sql: &str| {
            conn.prepare_cached(sql)
                .map_err(|e| sqlite_error(e, format_args!("prepare changes to {name}")))
        };
        let run = |statement: &mut Statement<'_>, row: &[Value], key: &RowKey<'_>| {
            statement.raw_execute().map_err(|e| {
                sqlite_error(
                    e,
                    format_args!("apply changes to {name} row {}", key.describe(row)),
                )
            })
        };
        if changes.truncate {
            conn.execute_batch(&format!("DELETE FROM {}", table.target))
                .map_err(|e| sqlite_error(e, format_args!("empty {name}")))?;
            summary.truncated += 1;
        }
        let mut delete = prepare(&table.delete)?;
        if !changes.deletes.is_empty() {
            let key_defs: Vec<ColumnDef> =
                def.key.iter().map(|&k| def.columns[k].clone()).collect();
            let as_key = RowKey::Key(&key_defs);
            for key in changes.deletes.rows() {
                for (n, value) in key.iter().enumerate() {
                    table.bind(&mut delete, n + 1, key, &as_key, def.key[n], value)?;
                }
                run(&mut delete, key, &as_key)?;
            }
            summary.deleted += changes.deletes.len() as u64;
        }
        let as_row = RowKey::Row(def);
        if !changes.upserts.is_empty() {
            let mut upsert = prepare(&table.upsert)?;
            for row in changes.upserts.rows() {
                if !table.unique_key {
                    for (n, &k) in def.key.iter().enumerate() {
                        table.bind(&mut delete, n + 1, row, &as_row, k, &row[k])?;
                    }
                    run(&mut delete, row, &as_row)?;
                }
                for (i, value) in row.iter().enumerate() {
                    table.bind(&mut upsert, i + 1, row, &as_row, i, value)?;
                }
                run(&mut upsert, row, &as_row)?;
            }
            summary.upserted += changes.upserts.len() as u64;
        }
        if !changes.updates.is_empty() {
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
            for (set, rows) in by_set {
                summary.updated += rows.len() as u64;
                let Some(sql) = table.update_sql(&set) else {
                    continue;
                };
                let assigned: Vec<usize> =
                    set.into_iter().filter(|i| !def.key.contains(i)).collect();
                let mut update = prepare(&sql)?;
                for row in rows {
                    for (n, &i) in assigned.iter().enumerate() {
                        table.bind(&mut update, n + 1, row, &as_row, i, &row[i])?;
                    }
                    for (n, &k) in def.key.iter().enumerate() {
                        table.bind(
                            &mut update,
                            assigned.len() + n + 1,
                            row,
                            &as_row,
                            k,
                            &row[k],
                        )?;
                    }
                    run(&mut update, row, &as_row)?;
                }
            }
        }
        Ok(())
    }

    fn add_column(&mut self, index: usize, column: ColumnDef) -> Result<()> {
        let Some(table) = self.tables.get(index) else {
            return Err(ConnectorError::internal(format!(
                "add a column to table {index} of an integrate of {} tables",
                self.tables.len()
            )));
        };
        let mut def = table.def.clone();
        let name = def.table.clone();
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
        let schema = table_schema(&self.conn, &name)?.ok_or_else(|| {
            ConnectorError::not_found(format!("target table {name} does not exist"))
        })?;
        let present = schema
            .columns
            .iter()
            .any(|c| c.name.as_str().eq_ignore_ascii_case(column.name.as_str()));
        if !present {
            self.conn
                .execute_batch(&format!(
                    "ALTER TABLE {} ADD COLUMN {} {}",
                    table.target,
                    quote_ident(column.name.as_str()),
                    declared_type(column.data_type)
                ))
                .map_err(|e| {
                    sqlite_error(e, format_args!("add column {} to {name}", column.name))
                })?;
        }
        def.columns.push(column);
        self.tables[index] = Table::open(&self.conn, def)?;
        Ok(())
    }
}

/// An integrate into one SQLite database. Each call runs on a blocking thread holding the state's
/// lock; a call abandoned by its caller still finishes there (committing or rolling back its batch
/// whole), and the next call waits for it.
struct SqliteApplier {
    state: Arc<Mutex<Applier>>,
    /// The state's checkpoint as of the end of the last call.
    checkpoint: Option<Checkpoint>,
}

impl SqliteApplier {
    /// Runs `work` with the applier's state on a blocking thread.
    async fn on_thread<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Applier) -> std::result::Result<T, (ConnectorError, bool)>
        + Send
        + 'static,
    ) -> Result<T> {
        let state = Arc::clone(&self.state);
        let joined = tokio::task::spawn_blocking(move || {
            let Ok(mut state) = state.lock() else {
                return (
                    None,
                    Err(broken_error(
                        "a worker thread failed while it held the connection",
                    )),
                );
            };
            if let Some(why) = &state.broken {
                let error = broken_error(why);
                return (state.checkpoint.clone(), Err(error));
            }
            let outcome = work(&mut state).map_err(|(error, broken)| {
                if broken {
                    state.broken = Some("a failed batch could not be rolled back".to_owned());
                }
                error
            });
            (state.checkpoint.clone(), outcome)
        })
        .await;
        match joined {
            Ok((checkpoint, outcome)) => {
                if checkpoint.is_some() {
                    self.checkpoint = checkpoint;
                }
                outcome
            }
            Err(e) => Err(ConnectorError::internal(format!(
                "a SQLite worker thread failed: {e}"
            ))),
        }
    }
}

fn broken_error(why: &str) -> ConnectorError {
    ConnectorError::new(
        ErrorKind::Connection,
        format!("the integrate is broken ({why}); open it again"),
    )
}

#[async_trait::async_trait]
impl ChangeApplier for SqliteApplier {
    fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    async fn apply(&mut self, batch: &IntegrateBatch) -> Result<ApplySummary> {
        let batch = batch.clone();
        self.on_thread(move |state| state.apply(&batch)).await
    }

    async fn add_column(&mut self, table: usize, column: ColumnDef) -> Result<()> {
        self.on_thread(move |state| state.add_column(table, column).map_err(|e| (e, false)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_sql_names_the_table() {
        for sql in [
            CREATE_CHECKPOINT,
            READ_CHECKPOINT,
            STORE_CHECKPOINT,
            DROP_CHECKPOINT,
        ] {
            assert!(sql.contains("main.sluice_integrate_checkpoint"), "{sql}");
        }
    }
}
