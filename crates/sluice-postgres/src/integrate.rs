//! Integrate: applying coalesced batches of captured changes, each in one transaction together
//! with its checkpoint.
//!
//! An applier holds one connection. When it opens it checks every target table, creates three
//! session temporary tables per target table (`ON COMMIT DELETE ROWS`, columns of the target's
//! native types without constraints: deleted keys, whole rows, partial updates) and prepares its
//! statements once. A batch then runs, per table, a `TRUNCATE` when asked, one binary COPY of the
//! deleted keys and one `DELETE … USING`, one COPY of the whole rows and one
//! `INSERT … SELECT … ON CONFLICT (key) DO UPDATE` (delete-by-key and a plain insert when no unique
//! index covers exactly the key), and per set of updated columns one COPY and one `UPDATE … FROM`;
//! then the checkpoint row is upserted and the transaction committed. Any failure rolls back: the
//! temporary tables, made outside any batch, stay and are empty again, so the applier can retry.
//!
//! NOT NULL columns are checked before a row is sent, so that the error names table, column and
//! key; server errors about values are reported without PostgreSQL's detail line (it may show a
//! whole row).

use std::collections::BTreeMap;
use std::fmt;
use std::pin::pin;

use bytes::{BufMut, Bytes, BytesMut};
use chrono::Utc;
use futures::SinkExt;
use sluice_connector::{
    ApplySummary, ChangeApplier, ConnectorError, ErrorKind, IntegrateBatch, IntegrateRequest,
    IntegrateTable, PartialUpdate, Result, TableChanges,
};
use sluice_model::{Checkpoint, ColumnDef, SchemaName, Value, describe_key};
use tokio_postgres::{Client, Statement};

use crate::PostgresConnector;
use crate::config::PostgresConfig;
use crate::connect::connect;
use crate::copy::{WriteColumn, accepts, encode_value, write_header, write_trailer};
use crate::error::pg_error;
use crate::introspect::{CatalogColumn, columns, find_relation, unique_keys};
use crate::types::{ddl_type, pg_type, quote_ident, quote_table};

/// The checkpoint table's name, in the location's schema.
const CHECKPOINT_TABLE: &str = "sluice_integrate_checkpoint";
/// Encoded bytes handed to a copy sink at a time.
const CHUNK_BYTES: usize = 1 << 20;
/// The transaction of a batch.
const BEGIN_BATCH: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

fn checkpoint_table(schema: &SchemaName) -> String {
    format!(
        "{}.{}",
        quote_ident(schema.as_str()),
        quote_ident(CHECKPOINT_TABLE)
    )
}

fn create_checkpoint_sql(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (name text PRIMARY KEY, position text NOT NULL, \
         applied bigint, updated_at timestamp with time zone NOT NULL DEFAULT now())"
    )
}

fn store_checkpoint_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} (name, position, applied, updated_at) VALUES ($1, $2, $3, now()) \
         ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, \
         applied = EXCLUDED.applied, updated_at = EXCLUDED.updated_at"
    )
}

fn read_checkpoint_sql(table: &str) -> String {
    format!("SELECT position, applied FROM {table} WHERE name = $1")
}

/// An error about a value from the server, without its detail line (which may show other values
/// of the row); other errors as [`pg_error`] reports them.
fn apply_error(error: tokio_postgres::Error, what: impl fmt::Display) -> ConnectorError {
    let Some(db) = error.as_db_error() else {
        return pg_error(error, what);
    };
    let class = &db.code().code()[..2];
    if class != "22" && class != "23" {
        return pg_error(error, what);
    }
    let mut message = format!("{what}: {}", db.message());
    if let Some(column) = db.column().filter(|c| !db.message().contains(c)) {
        message.push_str(&format!(" (column {column})"));
    }
    ConnectorError::new(ErrorKind::Data, message)
}

/// The stored checkpoint of `name`; `None` when there is none or no checkpoint table.
async fn load_checkpoint(
    client: &Client,
    schema: &SchemaName,
    name: &str,
) -> Result<Option<Checkpoint>> {
    let exists = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&checkpoint_table(schema)],
        )
        .await
        .map_err(|e| pg_error(e, "look for the checkpoint table"))?
        .get::<_, bool>(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            read_checkpoint_sql(&checkpoint_table(schema)).as_str(),
            &[&name],
        )
        .await
        .map_err(|e| pg_error(e, format_args!("read the checkpoint of {name}")))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let position: String = row.get(0);
    let applied: Option<i64> = row.get(1);
    sluice_connector::checkpoint_from_stored(name, &position, applied).map(Some)
}

/// The advisory lock that serialises creating checkpoint tables: `CREATE TABLE IF NOT EXISTS`
/// alone is not safe when two sessions run it at once (the loser fails on the catalog's unique
/// index of types or relations).
const CREATE_LOCK_KEY: i64 = 0x736c_7569_6365_0c01;

/// Creates the checkpoint table when missing; two sessions doing so at once both succeed.
async fn ensure_checkpoint_table(client: &Client, schema: &SchemaName) -> Result<()> {
    let table = checkpoint_table(schema);
    // One simple-query message runs as one implicit transaction, so the lock is held until the
    // creation commits and is released with it (or with its rollback).
    let sql = format!(
        "SELECT pg_advisory_xact_lock({CREATE_LOCK_KEY}); {}",
        create_checkpoint_sql(&table)
    );
    match client.batch_execute(&sql).await {
        Ok(()) => Ok(()),
        // A creator that does not take the lock (an older sluice) won the race on the catalog.
        Err(e)
            if matches!(
                e.code().map(|c| c.code()),
                Some("23505" | "42P07" | "42710")
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(pg_error(e, "create the checkpoint table")),
    }
}

#[async_trait::async_trait]
impl sluice_connector::ChangeWriter for PostgresConnector {
    async fn open_integrate(&self, request: IntegrateRequest) -> Result<Box<dyn ChangeApplier>> {
        Ok(Box::new(
            PgApplier::open(self.config().clone(), request).await?,
        ))
    }

    async fn read_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>> {
        let client = connect(self.config()).await?;
        load_checkpoint(&client, &self.config().schema, name).await
    }

    async fn drop_integrate(&self, name: &str) -> Result<()> {
        let schema = &self.config().schema;
        let mut client = connect(self.config()).await?;
        let table = checkpoint_table(schema);
        let context = || format!("drop the checkpoint of {name}");
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error(e, context()))?;
        let exists = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await
            .map_err(|e| pg_error(e, context()))?
            .get::<_, bool>(0);
        if !exists {
            return Ok(());
        }
        // The lock keeps an applier from storing a checkpoint between the count and the drop.
        tx.batch_execute(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            .await
            .map_err(|e| pg_error(e, context()))?;
        tx.execute(
            format!("DELETE FROM {table} WHERE name = $1").as_str(),
            &[&name],
        )
        .await
        .map_err(|e| pg_error(e, context()))?;
        let empty = tx
            .query_one(
                format!("SELECT NOT EXISTS (SELECT 1 FROM {table})").as_str(),
                &[],
            )
            .await
            .map_err(|e| pg_error(e, context()))?
            .get::<_, bool>(0);
        if empty {
            tx.batch_execute(&format!("DROP TABLE {table}"))
                .await
                .map_err(|e| pg_error(e, context()))?;
        }
        tx.commit().await.map_err(|e| pg_error(e, context()))
    }
}

/// The statements of one partial-update group (one set of updated columns).
struct UpdateGroup {
    /// COPY of the key and the set columns into the update table.
    copy: Statement,
    /// `UPDATE … FROM` the update table.
    update: Statement,
    /// Indexes of the request columns copied: the key columns, then the set non-key columns.
    columns: Vec<usize>,
}

/// One target table as the applier writes it.
struct PgTable {
    def: IntegrateTable,
    qualified: String,
    /// How each request column is encoded.
    write: Vec<WriteColumn>,
    /// Whether each request column is NOT NULL in the target.
    not_null: Vec<bool>,
    temp_updates: String,
    truncate: Statement,
    copy_keys: Statement,
    delete_keys: Statement,
    copy_rows: Statement,
    /// Run in order after the rows' COPY: the upsert, or delete-by-key and insert.
    merge_rows: Vec<Statement>,
    clear_updates: Statement,
    groups: BTreeMap<Vec<usize>, UpdateGroup>,
}

fn column_list(def: &IntegrateTable, indexes: impl IntoIterator<Item = usize>) -> String {
    indexes
        .into_iter()
        .map(|i| quote_ident(def.columns[i].name.as_str()))
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

impl PgTable {
    /// Checks the target of `def`, creates the temporary tables of table number `index` and
    /// prepares the statements.
    async fn open(
        client: &Client,
        schema: &SchemaName,
        index: usize,
        def: IntegrateTable,
    ) -> Result<PgTable> {
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
        let schema_name = table.schema.as_ref().unwrap_or(schema);
        let relation = find_relation(client, schema_name.as_str(), table.name.as_str())
            .await?
            .ok_or_else(|| {
                ConnectorError::not_found(format!("target table {table} does not exist"))
            })?;
        if !relation.is_table() {
            return Err(ConnectorError::schema(format!(
                "target {table} is a view or foreign table, not a table sluice can write"
            )));
        }
        let catalog = columns(client, relation.oid).await?;
        let mut write = Vec::with_capacity(def.columns.len());
        let mut not_null = Vec::with_capacity(def.columns.len());
        let mut natives = Vec::with_capacity(def.columns.len());
        for column in &def.columns {
            let found = target_column(&catalog, &def, column)?;
            let ty = pg_type(&found.native_type).ok_or_else(|| {
                ConnectorError::schema(format!(
                    "target table {table} column {} has type {}, which sluice cannot write",
                    column.name, found.native_type
                ))
            })?;
            if !accepts(ty.wire, column.data_type) {
                return Err(ConnectorError::schema(format!(
                    "target table {table} column {} has type {}, which cannot take {} values",
                    column.name, found.native_type, column.data_type
                )));
            }
            write.push(WriteColumn {
                wire: ty.wire,
                data_type: ty.data_type,
                fraction_digits: ty.fraction_digits,
            });
            not_null.push(found.not_null);
            natives.push(found.native_type.clone());
        }
        let mut sorted_key: Vec<&str> = def
            .key
            .iter()
            .map(|&k| def.columns[k].name.as_str())
            .collect();
        sorted_key.sort_unstable();
        let arbiter = unique_keys(client, relation.oid)
            .await?
            .iter()
            .any(|(_, cols)| {
                let mut cols: Vec<&str> = cols.iter().map(String::as_str).collect();
                cols.sort_unstable();
                cols == sorted_key
            });
        let qualified = quote_table(table, schema);
        let temp = |kind: &str| {
            format!(
                "pg_temp.{}",
                quote_ident(&format!("sluice_integrate_{index}_{kind}"))
            )
        };
        let (temp_keys, temp_rows, temp_updates) = (temp("keys"), temp("rows"), temp("updates"));
        let key_cols: Vec<usize> = def.key.clone();
        let all: Vec<usize> = (0..def.columns.len()).collect();
        let temp_ddl = |name: &str, indexes: &[usize]| {
            let cols = indexes
                .iter()
                .map(|&i| {
                    format!(
                        "{} {}",
                        quote_ident(def.columns[i].name.as_str()),
                        natives[i]
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "DROP TABLE IF EXISTS {name}; \
                 CREATE TEMP TABLE {name} ({cols}) ON COMMIT DELETE ROWS"
            )
        };
        for (name, indexes) in [
            (&temp_keys, &key_cols),
            (&temp_rows, &all),
            (&temp_updates, &all),
        ] {
            client
                .batch_execute(&temp_ddl(name, indexes))
                .await
                .map_err(|e| pg_error(e, format_args!("prepare the integrate into {table}")))?;
        }
        let prepare = |sql: String| async move {
            client
                .prepare(&sql)
                .await
                .map_err(|e| pg_error(e, format_args!("prepare the integrate into {table}")))
        };
        let keys = column_list(&def, key_cols.iter().copied());
        let names = column_list(&def, all.iter().copied());
        let truncate = prepare(format!("TRUNCATE {qualified}")).await?;
        let copy_keys = prepare(format!(
            "COPY {temp_keys} ({keys}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
        let delete_keys = prepare(format!(
            "DELETE FROM {qualified} AS t USING {temp_keys} AS k WHERE {}",
            key_match(&def, "k")
        ))
        .await?;
        let copy_rows = prepare(format!(
            "COPY {temp_rows} ({names}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
        let insert = format!(
            "INSERT INTO {qualified} ({names}) OVERRIDING SYSTEM VALUE SELECT {names} FROM {temp_rows}"
        );
        let merge_rows = if arbiter {
            let updates: Vec<String> = all
                .iter()
                .filter(|i| !def.key.contains(i))
                .map(|&i| {
                    let c = quote_ident(def.columns[i].name.as_str());
                    format!("{c} = EXCLUDED.{c}")
                })
                .collect();
            let action = if updates.is_empty() {
                "DO NOTHING".to_owned()
            } else {
                format!("DO UPDATE SET {}", updates.join(", "))
            };
            vec![prepare(format!("{insert} ON CONFLICT ({keys}) {action}")).await?]
        } else {
            vec![
                prepare(format!(
                    "DELETE FROM {qualified} AS t USING {temp_rows} AS r WHERE {}",
                    key_match(&def, "r")
                ))
                .await?,
                prepare(insert).await?,
            ]
        };
        let clear_updates = prepare(format!("TRUNCATE {temp_updates}")).await?;
        Ok(PgTable {
            def,
            qualified,
            write,
            not_null,
            temp_updates,
            truncate,
            copy_keys,
            delete_keys,
            copy_rows,
            merge_rows,
            clear_updates,
            groups: BTreeMap::new(),
        })
    }

    /// The statements of the update group setting `set` (request column indexes, sorted).
    async fn group(&mut self, client: &Client, set: &[usize]) -> Result<&UpdateGroup> {
        if !self.groups.contains_key(set) {
            let def = &self.def;
            let table = &def.table;
            let mut copied = def.key.clone();
            copied.extend(set.iter().filter(|i| !def.key.contains(i)));
            let names = column_list(def, copied.iter().copied());
            let assignments = set
                .iter()
                .filter(|i| !def.key.contains(i))
                .map(|&i| {
                    let c = quote_ident(def.columns[i].name.as_str());
                    format!("{c} = u.{c}")
                })
                .collect::<Vec<_>>()
                .join(", ");
            let context = || format!("prepare the updates of {table}");
            let copy = client
                .prepare(&format!(
                    "COPY {} ({names}) FROM STDIN (FORMAT binary)",
                    self.temp_updates
                ))
                .await
                .map_err(|e| pg_error(e, context()))?;
            let update = client
                .prepare(&format!(
                    "UPDATE {} AS t SET {assignments} FROM {} AS u WHERE {}",
                    self.qualified,
                    self.temp_updates,
                    key_match(def, "u")
                ))
                .await
                .map_err(|e| pg_error(e, context()))?;
            self.groups.insert(
                set.to_vec(),
                UpdateGroup {
                    copy,
                    update,
                    columns: copied,
                },
            );
        }
        self.groups
            .get(set)
            .ok_or_else(|| ConnectorError::internal("an update group vanished"))
    }
}

/// The catalog column written as `column`; a `Schema` error naming table and column otherwise.
fn target_column<'a>(
    catalog: &'a [CatalogColumn],
    def: &IntegrateTable,
    column: &ColumnDef,
) -> Result<&'a CatalogColumn> {
    let table = &def.table;
    let found = catalog
        .iter()
        .find(|t| t.name == column.name.as_str())
        .ok_or_else(|| {
            ConnectorError::schema(format!(
                "target table {table} has no column {}",
                column.name
            ))
        })?;
    if found.generated {
        return Err(ConnectorError::schema(format!(
            "target table {table} column {} is generated and cannot be written",
            column.name
        )));
    }
    Ok(found)
}

/// An integrate into one PostgreSQL database over one connection.
struct PgApplier {
    config: PostgresConfig,
    client: Client,
    name: String,
    tables: Vec<PgTable>,
    store_checkpoint: Statement,
    checkpoint: Option<Checkpoint>,
    /// Whether a batch's transaction may still be open (a call abandoned midway).
    in_batch: bool,
    /// Set when a failed batch could not be rolled back: the connection is unusable.
    broken: Option<String>,
    buf: BytesMut,
    groups: Vec<u16>,
}

impl PgApplier {
    async fn open(config: PostgresConfig, request: IntegrateRequest) -> Result<PgApplier> {
        let client = connect(&config).await?;
        ensure_checkpoint_table(&client, &config.schema).await?;
        let mut tables = Vec::with_capacity(request.tables.len());
        for (i, def) in request.tables.into_iter().enumerate() {
            tables.push(PgTable::open(&client, &config.schema, i, def).await?);
        }
        let store_checkpoint = client
            .prepare(&store_checkpoint_sql(&checkpoint_table(&config.schema)))
            .await
            .map_err(|e| pg_error(e, "prepare storing the checkpoint"))?;
        let checkpoint = load_checkpoint(&client, &config.schema, &request.name).await?;
        Ok(PgApplier {
            config,
            client,
            name: request.name,
            tables,
            store_checkpoint,
            checkpoint,
            in_batch: false,
            broken: None,
            buf: BytesMut::with_capacity(CHUNK_BYTES + (64 << 10)),
            groups: Vec::new(),
        })
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

    /// Runs the batch inside the open transaction.
    async fn run(&mut self, batch: &IntegrateBatch) -> Result<ApplySummary> {
        let mut summary = ApplySummary::default();
        for changes in &batch.tables {
            self.run_table(changes, &mut summary).await?;
        }
        let (position, applied) = sluice_connector::stored_checkpoint(&batch.checkpoint)?;
        self.client
            .execute(&self.store_checkpoint, &[&self.name, &position, &applied])
            .await
            .map_err(|e| pg_error(e, format_args!("store the checkpoint of {}", self.name)))?;
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
        let what = || format!("apply changes to {name}");
        if changes.truncate {
            self.client
                .execute(&table.truncate, &[])
                .await
                .map_err(|e| apply_error(e, what()))?;
            summary.truncated += 1;
        }
        if !changes.deletes.is_empty() {
            let key: Vec<usize> = (0..key_width).collect();
            let key_write: Vec<WriteColumn> =
                table.def.key.iter().map(|&k| table.write[k]).collect();
            let key_defs: Vec<ColumnDef> = table
                .def
                .key
                .iter()
                .map(|&k| table.def.columns[k].clone())
                .collect();
            let copy = table.copy_keys.clone();
            let delete = table.delete_keys.clone();
            self.copy(
                &copy,
                &name,
                changes.deletes.rows(),
                &key,
                &key_write,
                &key_defs,
                &key,
                &[],
            )
            .await?;
            self.client
                .execute(&delete, &[])
                .await
                .map_err(|e| apply_error(e, what()))?;
            summary.deleted += changes.deletes.len() as u64;
        }
        let table = &self.tables[index];
        if !changes.upserts.is_empty() {
            let all: Vec<usize> = (0..width).collect();
            let write = table.write.clone();
            let defs = table.def.columns.clone();
            let key = table.def.key.clone();
            let not_null = table.not_null.clone();
            let copy = table.copy_rows.clone();
            let merge = table.merge_rows.clone();
            self.copy(
                &copy,
                &name,
                changes.upserts.rows(),
                &all,
                &write,
                &defs,
                &key,
                &not_null,
            )
            .await?;
            for statement in &merge {
                self.client
                    .execute(statement, &[])
                    .await
                    .map_err(|e| apply_error(e, what()))?;
            }
            summary.upserted += changes.upserts.len() as u64;
        }
        if !changes.updates.is_empty() {
            let mut by_set: BTreeMap<Vec<usize>, Vec<&PartialUpdate>> = BTreeMap::new();
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
                by_set.entry(set).or_default().push(update);
            }
            for (set, updates) in by_set {
                let table = &mut self.tables[index];
                let group = table.group(&self.client, &set).await?;
                let (copy, update, copied) = (
                    group.copy.clone(),
                    group.update.clone(),
                    group.columns.clone(),
                );
                let write: Vec<WriteColumn> = copied.iter().map(|&i| table.write[i]).collect();
                let defs = table.def.columns.clone();
                let key = table.def.key.clone();
                let not_null = table.not_null.clone();
                let clear = table.clear_updates.clone();
                if copied.len() > key.len() {
                    self.copy(
                        &copy,
                        &name,
                        updates.iter().map(|u| u.row.as_slice()),
                        &copied,
                        &write,
                        &defs,
                        &key,
                        &not_null,
                    )
                    .await?;
                    self.client
                        .execute(&update, &[])
                        .await
                        .map_err(|e| apply_error(e, what()))?;
                    self.client
                        .execute(&clear, &[])
                        .await
                        .map_err(|e| apply_error(e, what()))?;
                }
                summary.updated += updates.len() as u64;
            }
        }
        Ok(())
    }

    /// COPYs the `columns` of `rows` (indexes into each row, encoded by `write`) through
    /// `statement`. `defs`, `key` and `not_null` are by row index, for checks and messages.
    #[allow(clippy::too_many_arguments)]
    async fn copy<'r>(
        &mut self,
        statement: &Statement,
        table: &sluice_model::TableRef,
        rows: impl Iterator<Item = &'r [Value]>,
        columns: &[usize],
        write: &[WriteColumn],
        defs: &[ColumnDef],
        key: &[usize],
        not_null: &[bool],
    ) -> Result<()> {
        let what = || format!("apply changes to {table}");
        let sink = self
            .client
            .copy_in::<_, Bytes>(statement)
            .await
            .map_err(|e| apply_error(e, what()))?;
        let mut sink = pin!(sink);
        self.buf.clear();
        write_header(&mut self.buf);
        for row in rows {
            self.buf.put_i16(columns.len() as i16);
            for (&i, column) in columns.iter().zip(write) {
                let value = &row[i];
                let refused = if value.is_null() && not_null.get(i).copied().unwrap_or(false) {
                    Some("NULL in a NOT NULL column".to_owned())
                } else {
                    encode_value(value, column, &mut self.buf, &mut self.groups).err()
                };
                if let Some(reason) = refused {
                    return Err(ConnectorError::data(format!(
                        "target table {table} row {} column {}: {reason}",
                        describe_key(defs, key, row),
                        defs[i].name
                    )));
                }
            }
            if self.buf.len() >= CHUNK_BYTES {
                let chunk = self.buf.split().freeze();
                sink.feed(chunk).await.map_err(|e| apply_error(e, what()))?;
            }
        }
        write_trailer(&mut self.buf);
        let chunk = self.buf.split().freeze();
        sink.feed(chunk).await.map_err(|e| apply_error(e, what()))?;
        sink.as_mut()
            .finish()
            .await
            .map_err(|e| apply_error(e, what()))?;
        Ok(())
    }

    /// Rolls the failed batch back; a connection that cannot is marked broken.
    async fn roll_back(&mut self) {
        match self.client.batch_execute("ROLLBACK").await {
            Ok(()) => self.in_batch = false,
            Err(e) => {
                tracing::warn!(error = %e, integrate = %self.name, "rolling back a failed batch failed");
                self.broken = Some("a failed batch could not be rolled back".to_owned());
            }
        }
    }
}

#[async_trait::async_trait]
impl ChangeApplier for PgApplier {
    fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    async fn apply(&mut self, batch: &IntegrateBatch) -> Result<ApplySummary> {
        self.check_usable()?;
        if self.in_batch {
            // An earlier call was abandoned inside its transaction: undo it before anything else.
            self.roll_back().await;
            self.check_usable()?;
        }
        self.in_batch = true;
        if let Err(e) = self.client.batch_execute(BEGIN_BATCH).await {
            let error = pg_error(e, format_args!("begin a batch of {}", self.name));
            if self.client.is_closed() {
                self.broken = Some("the connection was lost".to_owned());
            }
            return Err(error);
        }
        let mut summary = match self.run(batch).await {
            Ok(summary) => summary,
            Err(error) => {
                self.roll_back().await;
                return Err(error);
            }
        };
        if let Err(e) = self.client.batch_execute("COMMIT").await {
            // Whether a COMMIT whose answer was lost took effect is unknown: the caller re-opens
            // and reads the checkpoint.
            self.broken = Some("the commit of a batch was not confirmed".to_owned());
            return Err(pg_error(e, format_args!("commit a batch of {}", self.name)));
        }
        self.in_batch = false;
        summary.committed_at = Some(Utc::now());
        self.checkpoint = Some(batch.checkpoint.clone());
        Ok(summary)
    }

    async fn add_column(&mut self, table: usize, column: ColumnDef) -> Result<()> {
        self.check_usable()?;
        let Some(target) = self.tables.get(table) else {
            return Err(ConnectorError::internal(format!(
                "add a column to table {table} of an integrate of {} tables",
                self.tables.len()
            )));
        };
        let mut def = target.def.clone();
        let name = def.table.clone();
        if def.columns.iter().any(|c| c.name == column.name) {
            return Err(ConnectorError::schema(format!(
                "the integrate into {name} writes column {} already",
                column.name
            )));
        }
        let schema_name = name.schema.as_ref().unwrap_or(&self.config.schema);
        let relation = find_relation(&self.client, schema_name.as_str(), name.name.as_str())
            .await?
            .ok_or_else(|| {
                ConnectorError::not_found(format!("target table {name} does not exist"))
            })?;
        let present = columns(&self.client, relation.oid)
            .await?
            .iter()
            .any(|c| c.name == column.name.as_str());
        if !present {
            let sql = format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
                target.qualified,
                quote_ident(column.name.as_str()),
                ddl_type(column.data_type)
            );
            self.client
                .batch_execute(&sql)
                .await
                .map_err(|e| pg_error(e, format_args!("add column {} to {name}", column.name)))?;
        }
        def.columns.push(column);
        let rebuilt = PgTable::open(&self.client, &self.config.schema, table, def).await?;
        self.tables[table] = rebuilt;
        Ok(())
    }
}
