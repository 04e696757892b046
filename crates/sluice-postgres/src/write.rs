//! Batch writes: one transaction per write, rows streamed by `COPY … FROM STDIN (FORMAT binary)`,
//! encoded by [`crate::copy`] into ~1 MiB chunks fed to the driver's copy sink as batches arrive
//! (the table is never buffered). A raw write forwards the reader's COPY bytes untouched.
//!
//! Every strategy is one transaction, so the target changes all at once or not at all; a writer
//! dropped without commit closes its connection, and PostgreSQL rolls the transaction back.
//!
//! * `truncate_load`: `TRUNCATE t` (or `DELETE FROM t WHERE (filter)`), then the COPY
//!   (`FREEZE` after a truncate or create: the rows are written already frozen, as pgcopydb does).
//!   The truncate locks the table until commit, so readers wait rather than see it empty. After a
//!   `TRUNCATE` the table's indexes are dropped and built again after the COPY, in the same
//!   transaction: one sorted build costs less than maintaining every index row by row (key
//!   constraints come back under their own names with `ADD CONSTRAINT`, plain indexes with their
//!   own `CREATE INDEX`, replica identity and `CLUSTER` marks restored). Indexes whose rebuild
//!   could lose something (a comment, a tablespace of their own, statistics targets, a foreign key
//!   referencing them, an invalid index) keep every index in place. A table sluice creates gets
//!   its primary key after the load for the same reason. A duplicate key fails the key's build at
//!   commit, and the whole write rolls back.
//! * `staging_swap`: `CREATE TABLE t__sluice_stage (LIKE t INCLUDING ALL EXCLUDING INDEXES)`, the
//!   identity counters carried on, the rows a target filter keeps copied over, the COPY (`FREEZE`),
//!   then at commit the target's indexes and constraints built on the loaded table (faster than
//!   maintaining them row by row), its foreign keys, grants, owner and serial sequences carried
//!   over, `t` renamed away, the stage renamed to `t`, the old table dropped and the indexes renamed
//!   to their old names. Not carried over: column-level grants, replica identity, comments on
//!   indexes; an identity column's sequence keeps the staging table's name. PostgreSQL's DDL is
//!   transactional, so readers see the old table until the commit. Tables other objects depend on
//!   (referencing foreign keys, views, triggers, inheritance, policies, publications) are refused.
//! * `append`: the COPY.
//! * `upsert`: rows COPY into a temporary table, deleted keys into another; at commit
//!   `DELETE … USING` the deleted keys, then `INSERT … ON CONFLICT (key) DO UPDATE` when a unique
//!   index covers exactly the key (otherwise delete-by-key and insert).
//!
//! The statements come from [`build_script`], which both the dry-run plan and the real write use.

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures::SinkExt;
use sluice_connector::{
    ConnectorError, ErrorKind, PlannedStatement, Result, TableWriter, WriteRequest, WriteStrategy,
    WriteSummary,
};
use sluice_model::{ColumnDef, RowBatch, SchemaName, describe_key};
use tokio_postgres::{Client, CopyInSink};

use crate::config::PostgresConfig;
use crate::connect::connect;
use crate::copy::{WriteColumn, accepts, encode_row, write_header, write_trailer};
use crate::error::pg_error;
use crate::introspect::{
    CatalogColumn, DeferredIndex, Relation, SwapCatalog, columns, deferrable_indexes,
    find_relation, name_taken, swap_catalog, unique_keys,
};
use crate::types::{
    ddl_type, filter_sql, pg_type, quote_ident, quote_literal, quote_table, raw_format_name,
    schema_of,
};

/// Suffix of the staging table's name.
const STAGE_SUFFIX: &str = "__sluice_stage";
/// Suffix the target takes while it is swapped out.
const OLD_SUFFIX: &str = "__sluice_old";
/// PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes.
const MAX_IDENT_BYTES: usize = 63;
/// Encoded bytes handed to the copy sink at a time.
const CHUNK_BYTES: usize = 1 << 20;
/// The transaction a write runs in: READ COMMITTED whatever the server's default, because COPY
/// FREEZE refuses to run in a transaction that holds a snapshot from an earlier statement.
const BEGIN_WRITE: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";
/// Temporary tables of an upsert.
const UPSERT_ROWS: &str = "pg_temp.sluice_upsert_rows";
const UPSERT_KEYS: &str = "pg_temp.sluice_upsert_keys";

/// `name` + `suffix`, with `name` shortened (on a character boundary) to keep within PostgreSQL's
/// identifier limit, which would otherwise cut the suffix off silently.
fn suffixed(name: &str, suffix: &str) -> String {
    let mut end = name.len().min(MAX_IDENT_BYTES - suffix.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &name[..end])
}

/// What the target looks like now.
#[derive(Debug, Default)]
pub(crate) struct Target {
    relation: Option<Relation>,
    columns: Vec<CatalogColumn>,
    unique_keys: Vec<(bool, Vec<String>)>,
    swap: SwapCatalog,
    stage_taken: bool,
    old_taken: bool,
    /// The indexes a whole-table `truncate_load` drops and rebuilds (`None`: keep them).
    deferred: Option<Vec<DeferredIndex>>,
}

/// Reads what [`build_script`] needs about the target of `request`.
pub(crate) async fn inspect(
    client: &Client,
    request: &WriteRequest,
    default_schema: &SchemaName,
) -> Result<Target> {
    let table = &request.table;
    let schema = schema_of(table, default_schema);
    let mut target = Target {
        relation: find_relation(client, schema, table.name.as_str()).await?,
        ..Target::default()
    };
    let Some(relation) = target.relation else {
        return Ok(target);
    };
    target.columns = columns(client, relation.oid).await?;
    match request.strategy {
        WriteStrategy::Upsert => target.unique_keys = unique_keys(client, relation.oid).await?,
        WriteStrategy::StagingSwap => {
            target.swap = swap_catalog(client, relation.oid).await?;
            let name = table.name.as_str();
            target.stage_taken = name_taken(client, schema, &suffixed(name, STAGE_SUFFIX)).await?;
            target.old_taken = name_taken(client, schema, &suffixed(name, OLD_SUFFIX)).await?;
        }
        WriteStrategy::TruncateLoad if request.filter.is_none() && relation.kind == b'r' => {
            target.deferred = deferrable_indexes(client, relation.oid).await?;
        }
        _ => {}
    }
    Ok(target)
}

/// Which COPY of a write is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyKind {
    /// Rows into the target, the stage or the upsert table.
    Rows,
    /// Deleted keys into the upsert key table.
    Keys,
}

/// The statements of one write, given the target as it is.
#[derive(Debug)]
pub(crate) struct WriteScript {
    /// Run once after `BEGIN`.
    setup: Vec<String>,
    /// The COPY that takes the rows.
    copy: String,
    /// The COPY that takes deleted keys (upsert only).
    delete_copy: Option<String>,
    /// Run once before `COMMIT`.
    finish: Vec<String>,
    /// How each written column is encoded.
    columns: Vec<WriteColumn>,
    /// How each key column is encoded (deleted keys).
    key_columns: Vec<WriteColumn>,
    /// The raw format the target takes.
    raw_format: String,
    /// Whether the target is created.
    creates: bool,
}

impl WriteScript {
    pub(crate) fn planned(&self) -> Vec<PlannedStatement> {
        let mut out = vec![PlannedStatement::once(BEGIN_WRITE)];
        out.extend(self.setup.iter().map(PlannedStatement::once));
        out.push(PlannedStatement::once(self.copy.clone()));
        if let Some(delete) = &self.delete_copy {
            out.push(PlannedStatement::once(delete.clone()));
        }
        out.extend(self.finish.iter().map(PlannedStatement::once));
        out.push(PlannedStatement::once("COMMIT"));
        out
    }
}

fn column_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ALTER TABLE … ADD PRIMARY KEY` for `key`.
fn add_key_sql(table: &str, columns: &[ColumnDef], key: &[usize]) -> String {
    format!(
        "ALTER TABLE {table} ADD PRIMARY KEY ({})",
        column_list(key.iter().map(|&k| columns[k].name.as_str()))
    )
}

/// The statements that drop `indexes` of `table` before a load, and those that build them again
/// after it.
fn rebuild_indexes(
    table: &str,
    schema: &str,
    indexes: &[DeferredIndex],
) -> (Vec<String>, Vec<String>) {
    let mut drop = Vec::new();
    let mut build = Vec::new();
    for index in indexes {
        let name = quote_ident(&index.name);
        match &index.constraint {
            Some(def) => {
                drop.push(format!("ALTER TABLE {table} DROP CONSTRAINT {name}"));
                build.push(format!("ALTER TABLE {table} ADD CONSTRAINT {name} {def}"));
            }
            None => {
                drop.push(format!("DROP INDEX {schema}.{name}"));
                build.push(index.definition.clone());
            }
        }
        if index.replica_identity {
            build.push(format!(
                "ALTER TABLE {table} REPLICA IDENTITY USING INDEX {name}"
            ));
        }
        if index.clustered {
            build.push(format!("ALTER TABLE {table} CLUSTER ON {name}"));
        }
    }
    (drop, build)
}

/// `CREATE TABLE` for `columns` with `key` as primary key.
fn create_table_sql(table: &str, columns: &[ColumnDef], key: &[usize]) -> String {
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| {
            let mut def = format!("{} {}", quote_ident(c.name.as_str()), ddl_type(c.data_type));
            if !c.nullable {
                def.push_str(" NOT NULL");
            }
            def
        })
        .collect();
    if !key.is_empty() {
        parts.push(format!(
            "PRIMARY KEY ({})",
            column_list(key.iter().map(|&k| columns[k].name.as_str()))
        ));
    }
    format!("CREATE TABLE {table} ({})", parts.join(", "))
}

fn copy_in_sql(table: &str, columns: &str, freeze: bool) -> String {
    let options = if freeze {
        "FORMAT binary, FREEZE"
    } else {
        "FORMAT binary"
    };
    format!("COPY {table} ({columns}) FROM STDIN ({options})")
}

/// How each request column is written into the existing target, and its native types; fails with
/// a `Schema` error naming the column when the target cannot take it.
fn target_columns(
    request: &WriteRequest,
    target: &[CatalogColumn],
) -> Result<(Vec<WriteColumn>, Vec<String>)> {
    let table = &request.table;
    let mut out = Vec::with_capacity(request.columns.len());
    let mut natives = Vec::with_capacity(request.columns.len());
    for column in &request.columns {
        let found = target
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
        out.push(WriteColumn {
            wire: ty.wire,
            data_type: ty.data_type,
            fraction_digits: ty.fraction_digits,
        });
        natives.push(found.native_type.clone());
    }
    Ok((out, natives))
}

/// How each request column is written into a table sluice creates.
fn created_columns(request: &WriteRequest) -> (Vec<WriteColumn>, Vec<String>) {
    request
        .columns
        .iter()
        .map(|c| {
            let native = ddl_type(c.data_type);
            let ty = pg_type(&native).expect("every DDL type is in the type table");
            (
                WriteColumn {
                    wire: ty.wire,
                    data_type: ty.data_type,
                    fraction_digits: ty.fraction_digits,
                },
                native,
            )
        })
        .unzip()
}

/// The statements that replace the target by the staging table at commit.
fn swap_statements(
    request: &WriteRequest,
    target: &Target,
    relation: Relation,
    default_schema: &SchemaName,
    stage: &str,
) -> Vec<String> {
    let table = &request.table;
    let schema = quote_ident(schema_of(table, default_schema));
    let name = table.name.as_str();
    let qualified = quote_table(table, default_schema);
    let old = suffixed(name, OLD_SUFFIX);
    let swap = &target.swap;
    let mut finish = Vec::new();
    let temp_index = |n: usize| format!("sluice_ix_{}_{n}", relation.oid);
    for (n, index) in swap.indexes.iter().enumerate() {
        let tmp = quote_ident(&temp_index(n));
        finish.push(match &index.constraint {
            Some(def) => format!("ALTER TABLE {stage} ADD CONSTRAINT {tmp} {def}"),
            None => format!(
                "CREATE {}INDEX {tmp} ON {stage}{}",
                if index.unique { "UNIQUE " } else { "" },
                index.using
            ),
        });
    }
    for (fk, def) in &swap.foreign_keys {
        finish.push(format!(
            "ALTER TABLE {stage} ADD CONSTRAINT {} {def}",
            quote_ident(fk)
        ));
    }
    for (sequence, column) in &swap.owned_sequences {
        finish.push(format!(
            "ALTER SEQUENCE {sequence} OWNED BY {stage}.{}",
            quote_ident(column)
        ));
    }
    for (privileges, grantee, grantable) in &swap.grants {
        finish.push(format!(
            "GRANT {privileges} ON {stage} TO {grantee}{}",
            if *grantable { " WITH GRANT OPTION" } else { "" }
        ));
    }
    if let Some(owner) = &swap.owner {
        finish.push(format!("ALTER TABLE {stage} OWNER TO {owner}"));
    }
    finish.push(format!(
        "ALTER TABLE {qualified} RENAME TO {}",
        quote_ident(&old)
    ));
    finish.push(format!(
        "ALTER TABLE {stage} RENAME TO {}",
        quote_ident(name)
    ));
    finish.push(format!("DROP TABLE {schema}.{}", quote_ident(&old)));
    for (n, index) in swap.indexes.iter().enumerate() {
        finish.push(format!(
            "ALTER INDEX {schema}.{} RENAME TO {}",
            quote_ident(&temp_index(n)),
            quote_ident(&index.name)
        ));
    }
    finish
}

/// Builds the statements for `request` against `target`. Fails, changing nothing, when the target
/// lacks a written column, cannot take its values, or is missing and may not be created.
pub(crate) fn build_script(
    request: &WriteRequest,
    target: &Target,
    default_schema: &SchemaName,
) -> Result<WriteScript> {
    let table = &request.table;
    let qualified = quote_table(table, default_schema);
    let names = column_list(request.columns.iter().map(|c| c.name.as_str()));
    let (columns, natives) = match target.relation {
        Some(relation) if !relation.is_table() => {
            return Err(ConnectorError::schema(format!(
                "target {table} is a view or foreign table, not a table sluice can load"
            )));
        }
        Some(_) => target_columns(request, &target.columns)?,
        None if request.create_if_missing => created_columns(request),
        None => {
            return Err(ConnectorError::not_found(format!(
                "target table {table} does not exist"
            )));
        }
    };
    let key_columns: Vec<WriteColumn> = request.key.iter().map(|&k| columns[k]).collect();
    let raw_format = raw_format_name(natives.iter().map(String::as_str));
    let creates = target.relation.is_none();
    let create = || create_table_sql(&qualified, &request.columns, &request.key);
    // COPY FREEZE needs a table created or truncated in this transaction, and not partitioned.
    let plain_table = target.relation.is_none_or(|r| r.kind == b'r');
    let mut setup = Vec::new();
    let mut finish = Vec::new();
    let mut delete_copy = None;
    let copy = match request.strategy {
        WriteStrategy::TruncateLoad => {
            let freeze = if creates {
                // The key is built after the load (one sorted build instead of row by row).
                setup.push(create_table_sql(&qualified, &request.columns, &[]));
                if !request.key.is_empty() {
                    finish.push(add_key_sql(&qualified, &request.columns, &request.key));
                }
                true
            } else if let Some(filter) = &request.filter {
                setup.push(format!(
                    "DELETE FROM {qualified} WHERE ({})",
                    filter_sql(filter)?
                ));
                false
            } else {
                setup.push(format!("TRUNCATE {qualified}"));
                if let Some(indexes) = &target.deferred {
                    let schema = quote_ident(schema_of(table, default_schema));
                    let (drop, build) = rebuild_indexes(&qualified, &schema, indexes);
                    setup.extend(drop);
                    finish.extend(build);
                }
                plain_table
            };
            copy_in_sql(&qualified, &names, freeze)
        }
        WriteStrategy::Append => {
            if creates {
                setup.push(create());
            }
            copy_in_sql(&qualified, &names, creates)
        }
        WriteStrategy::StagingSwap => match target.relation {
            None => {
                setup.push(create());
                copy_in_sql(&qualified, &names, true)
            }
            Some(relation) => {
                let schema = quote_ident(schema_of(table, default_schema));
                let stage_name = suffixed(table.name.as_str(), STAGE_SUFFIX);
                let stage = format!("{schema}.{}", quote_ident(&stage_name));
                if relation.kind == b'p' || relation.is_partition {
                    return Err(ConnectorError::unsupported(format!(
                        "staging_swap cannot replace {table}: it is a partitioned table or a partition; use truncate_load"
                    )));
                }
                if target.stage_taken {
                    return Err(ConnectorError::schema(format!(
                        "a relation named {stage_name} exists in the schema of {table}; staging_swap needs that name for its staging table"
                    )));
                }
                if target.old_taken {
                    return Err(ConnectorError::schema(format!(
                        "a relation named {} exists in the schema of {table}; staging_swap needs that name while it swaps",
                        suffixed(table.name.as_str(), OLD_SUFFIX)
                    )));
                }
                if !target.swap.blockers.is_empty() {
                    return Err(ConnectorError::schema(format!(
                        "staging_swap cannot replace {table}: {}; use truncate_load",
                        target.swap.blockers.join(", ")
                    )));
                }
                setup.push(format!(
                    "CREATE TABLE {stage} (LIKE {qualified} INCLUDING ALL EXCLUDING INDEXES)"
                ));
                // Identity columns of the stage count on from where the target's stopped, before
                // any row takes a value.
                for (column, sequence) in &target.swap.identity_columns {
                    setup.push(format!(
                        "SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence({}, {})::regclass, last_value, is_called) FROM {sequence}",
                        quote_literal(&stage),
                        quote_literal(column)
                    ));
                }
                if let Some(filter) = &request.filter {
                    let filter = filter_sql(filter)?;
                    let all = column_list(
                        target
                            .columns
                            .iter()
                            .filter(|c| !c.generated)
                            .map(|c| c.name.as_str()),
                    );
                    setup.push(format!(
                        "INSERT INTO {stage} ({all}) OVERRIDING SYSTEM VALUE SELECT {all} FROM {qualified} WHERE ({filter}) IS NOT TRUE"
                    ));
                }
                finish = swap_statements(request, target, relation, default_schema, &stage);
                copy_in_sql(&stage, &names, true)
            }
        },
        WriteStrategy::Upsert => {
            if request.key.is_empty() {
                return Err(ConnectorError::schema(format!(
                    "an upsert into {table} needs key columns"
                )));
            }
            if creates {
                setup.push(create());
            }
            let key_names: Vec<&str> = request
                .key
                .iter()
                .map(|&k| request.columns[k].name.as_str())
                .collect();
            let keys = column_list(key_names.iter().copied());
            setup.push(format!(
                "CREATE TEMP TABLE {UPSERT_ROWS} ON COMMIT DROP AS SELECT {names} FROM {qualified} WITH NO DATA"
            ));
            setup.push(format!(
                "CREATE TEMP TABLE {UPSERT_KEYS} ON COMMIT DROP AS SELECT {keys} FROM {qualified} WITH NO DATA"
            ));
            delete_copy = Some(copy_in_sql(UPSERT_KEYS, &keys, false));
            let matches = |alias: &str| {
                key_names
                    .iter()
                    .map(|k| {
                        let k = quote_ident(k);
                        format!("t.{k} = {alias}.{k}")
                    })
                    .collect::<Vec<_>>()
                    .join(" AND ")
            };
            finish.push(format!(
                "DELETE FROM {qualified} AS t USING {UPSERT_KEYS} AS d WHERE {}",
                matches("d")
            ));
            let mut sorted_key: Vec<&str> = key_names.clone();
            sorted_key.sort_unstable();
            // A table sluice creates gets the key as its primary key.
            let arbiter = creates
                || target.unique_keys.iter().any(|(_, cols)| {
                    let mut cols: Vec<&str> = cols.iter().map(String::as_str).collect();
                    cols.sort_unstable();
                    cols == sorted_key
                });
            let insert = format!(
                "INSERT INTO {qualified} ({names}) OVERRIDING SYSTEM VALUE SELECT {names} FROM {UPSERT_ROWS}"
            );
            if arbiter {
                let updates: Vec<String> = request
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .filter(|c| !key_names.contains(c))
                    .map(|c| {
                        let c = quote_ident(c);
                        format!("{c} = EXCLUDED.{c}")
                    })
                    .collect();
                let action = if updates.is_empty() {
                    "DO NOTHING".to_owned()
                } else {
                    format!("DO UPDATE SET {}", updates.join(", "))
                };
                finish.push(format!("{insert} ON CONFLICT ({keys}) {action}"));
            } else {
                finish.push(format!(
                    "DELETE FROM {qualified} AS t USING {UPSERT_ROWS} AS r WHERE {}",
                    matches("r")
                ));
                finish.push(insert);
            }
            copy_in_sql(UPSERT_ROWS, &names, false)
        }
    };
    Ok(WriteScript {
        setup,
        copy,
        delete_copy,
        finish,
        columns,
        key_columns,
        raw_format,
        creates,
    })
}

/// The plan of a write: what `open`, the batches and `commit` will run.
pub(crate) async fn plan(
    config: &PostgresConfig,
    request: &WriteRequest,
) -> Result<Vec<PlannedStatement>> {
    let client = connect(config).await?;
    let target = inspect(&client, request, &config.schema).await?;
    Ok(build_script(request, &target, &config.schema)?.planned())
}

/// Opens a write: begins the transaction, checks the target and runs the setup statements.
pub(crate) async fn open(
    config: PostgresConfig,
    request: WriteRequest,
) -> Result<Box<dyn TableWriter>> {
    let table = request.table.clone();
    let client = connect(&config).await?;
    client
        .batch_execute(BEGIN_WRITE)
        .await
        .map_err(|e| pg_error(e, format_args!("begin the write of {table}")))?;
    let target = inspect(&client, &request, &config.schema).await?;
    let script = build_script(&request, &target, &config.schema)?;
    // One prepared statement each (the extended protocol): a statement carrying a row filter can
    // never run a second one.
    for sql in &script.setup {
        client
            .execute(sql.as_str(), &[])
            .await
            .map_err(|e| pg_error(e, format_args!("prepare target table {table}")))?;
    }
    let key_defs: Vec<ColumnDef> = request
        .key
        .iter()
        .map(|&k| request.columns[k].clone())
        .collect();
    Ok(Box::new(PgTableWriter {
        client,
        script,
        request,
        key_defs,
        copy: None,
        buf: BytesMut::with_capacity(CHUNK_BYTES + (64 << 10)),
        groups: Vec::new(),
        rows: 0,
        raw: false,
        rows_started: false,
        broken: false,
    }))
}

/// A COPY in progress.
struct ActiveCopy {
    kind: CopyKind,
    sink: Pin<Box<CopyInSink<Bytes>>>,
}

/// A write in progress: the connection, its open transaction and the COPY being fed.
struct PgTableWriter {
    client: Client,
    script: WriteScript,
    request: WriteRequest,
    /// The key columns alone (describing deleted keys).
    key_defs: Vec<ColumnDef>,
    copy: Option<ActiveCopy>,
    /// Encoded rows not yet handed to the sink.
    buf: BytesMut,
    /// Scratch space of the numeric encoder.
    groups: Vec<u16>,
    /// Rows COPY reported for finished row copies.
    rows: u64,
    /// Whether rows arrive as raw COPY bytes.
    raw: bool,
    /// Whether a COPY of rows has started.
    rows_started: bool,
    /// Whether an earlier call failed (the transaction is lost).
    broken: bool,
}

impl PgTableWriter {
    fn copy_error(&self, e: tokio_postgres::Error) -> ConnectorError {
        pg_error(e, format_args!("write table {}", self.request.table))
    }

    fn check_usable(&self) -> Result<()> {
        if self.broken {
            return Err(ConnectorError::internal(format!(
                "the write of {} failed earlier and can only be rolled back",
                self.request.table
            )));
        }
        Ok(())
    }

    /// Hands the encoded bytes to the sink.
    async fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        let Some(copy) = self.copy.as_mut() else {
            return Err(ConnectorError::internal("no COPY is running"));
        };
        if let Err(e) = copy.sink.feed(chunk).await {
            return Err(self.copy_error(e));
        }
        Ok(())
    }

    /// Whether sluice writes the header and trailer of a COPY of `kind` (raw rows bring their own).
    fn framed(&self, kind: CopyKind) -> bool {
        !(self.raw && kind == CopyKind::Rows)
    }

    /// Ends the running COPY, if any.
    async fn end_copy(&mut self) -> Result<()> {
        let Some(kind) = self.copy.as_ref().map(|c| c.kind) else {
            return Ok(());
        };
        if self.framed(kind) {
            write_trailer(&mut self.buf);
        }
        self.flush().await?;
        let Some(mut copy) = self.copy.take() else {
            return Ok(());
        };
        let rows = copy
            .sink
            .as_mut()
            .finish()
            .await
            .map_err(|e| self.copy_error(e))?;
        if kind == CopyKind::Rows {
            self.rows += rows;
        }
        Ok(())
    }

    /// Makes sure the COPY of `kind` is the one running.
    async fn start_copy(&mut self, kind: CopyKind) -> Result<()> {
        if self.copy.as_ref().is_some_and(|c| c.kind == kind) {
            return Ok(());
        }
        self.end_copy().await?;
        let sql = match kind {
            CopyKind::Rows => &self.script.copy,
            CopyKind::Keys => self
                .script
                .delete_copy
                .as_ref()
                .ok_or_else(|| ConnectorError::internal("this write has no key COPY"))?,
        };
        let sink = self
            .client
            .copy_in::<_, Bytes>(sql.as_str())
            .await
            .map_err(|e| self.copy_error(e))?;
        self.copy = Some(ActiveCopy {
            kind,
            sink: Box::pin(sink),
        });
        if self.framed(kind) {
            write_header(&mut self.buf);
        }
        if kind == CopyKind::Rows {
            self.rows_started = true;
        }
        Ok(())
    }

    /// A `Data` error naming the row of `kind` that failed in column `column`.
    fn row_error(
        &self,
        kind: CopyKind,
        row: &[sluice_model::Value],
        column: usize,
        reason: &str,
    ) -> ConnectorError {
        let (defs, key): (&[ColumnDef], Vec<usize>) = match kind {
            CopyKind::Rows => (&self.request.columns, self.request.key.clone()),
            CopyKind::Keys => (&self.key_defs, (0..self.key_defs.len()).collect()),
        };
        ConnectorError::data(format!(
            "target table {} row {} column {}: {reason}",
            self.request.table,
            describe_key(defs, &key, row),
            defs[column].name
        ))
    }

    async fn write_rows(&mut self, batch: &RowBatch, kind: CopyKind) -> Result<()> {
        self.start_copy(kind).await?;
        let columns = match kind {
            CopyKind::Rows => self.script.columns.clone(),
            CopyKind::Keys => self.script.key_columns.clone(),
        };
        for row in batch.rows() {
            if let Err((i, reason)) = encode_row(row, &columns, &mut self.buf, &mut self.groups) {
                return Err(self.row_error(kind, row, i, &reason));
            }
            if self.buf.len() >= CHUNK_BYTES {
                self.flush().await?;
            }
        }
        Ok(())
    }

    fn guarded<T>(&mut self, outcome: Result<T>) -> Result<T> {
        if outcome.is_err() {
            self.broken = true;
        }
        outcome
    }
}

#[async_trait::async_trait]
impl TableWriter for PgTableWriter {
    async fn write_batch(&mut self, batch: RowBatch) -> Result<()> {
        self.check_usable()?;
        if self.raw {
            return Err(ConnectorError::internal(
                "a write given raw rows takes no batches",
            ));
        }
        if batch.width() != self.request.columns.len() {
            return Err(ConnectorError::internal(format!(
                "a batch of {} columns for a write of {}",
                batch.width(),
                self.request.columns.len()
            )));
        }
        let outcome = self.write_rows(&batch, CopyKind::Rows).await;
        self.guarded(outcome)
    }

    async fn delete_batch(&mut self, keys: RowBatch) -> Result<()> {
        self.check_usable()?;
        if self.request.strategy != WriteStrategy::Upsert {
            return Err(ConnectorError::unsupported(
                "deleting rows needs the upsert strategy",
            ));
        }
        if keys.width() != self.key_defs.len() {
            return Err(ConnectorError::internal(format!(
                "a key batch of {} columns for a key of {}",
                keys.width(),
                self.key_defs.len()
            )));
        }
        if self.raw {
            // Raw rows are one COPY stream that may not be cut to let the keys through.
            return Err(ConnectorError::unsupported(
                "deleted keys cannot be mixed with raw rows in one write",
            ));
        }
        let outcome = self.write_rows(&keys, CopyKind::Keys).await;
        self.guarded(outcome)
    }

    fn raw_format(&self) -> Option<String> {
        Some(self.script.raw_format.clone())
    }

    async fn write_raw(&mut self, chunk: Bytes) -> Result<()> {
        self.check_usable()?;
        if !self.rows_started {
            self.raw = true;
        }
        if !self.raw {
            return Err(ConnectorError::internal(
                "a write given batches takes no raw rows",
            ));
        }
        let outcome = async {
            self.start_copy(CopyKind::Rows).await?;
            let copy = self
                .copy
                .as_mut()
                .ok_or_else(|| ConnectorError::internal("no COPY is running"))?;
            if let Err(e) = copy.sink.feed(chunk).await {
                return Err(self.copy_error(e));
            }
            Ok(())
        }
        .await;
        self.guarded(outcome)
    }

    async fn commit(mut self: Box<Self>) -> Result<WriteSummary> {
        self.check_usable()?;
        let table = self.request.table.clone();
        self.end_copy().await?;
        for sql in std::mem::take(&mut self.script.finish) {
            self.client
                .execute(sql.as_str(), &[])
                .await
                .map_err(|e| pg_error(e, format_args!("finish the write of {table}")))?;
        }
        // COMMIT of a transaction that failed answers ROLLBACK without an error; every failure
        // above has returned already, so this commits or reports the broken connection.
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| pg_error(e, format_args!("commit the write of {table}")))?;
        Ok(WriteSummary {
            rows: self.rows,
            created: self.script.creates,
        })
    }

    async fn rollback(mut self: Box<Self>) -> Result<()> {
        // Dropping the sink aborts a running COPY (CopyFail); the rollback is queued behind it.
        self.copy = None;
        match self.client.batch_execute("ROLLBACK").await {
            Ok(()) => Ok(()),
            // A lost connection has rolled back on the server already.
            Err(e) if e.is_closed() => Ok(()),
            Err(e) => {
                let error = pg_error(
                    e,
                    format_args!("roll back the write of {}", self.request.table),
                );
                if error.kind() == ErrorKind::Connection {
                    Ok(())
                } else {
                    Err(error)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_keep_their_suffix() {
        let long = "é".repeat(40);
        let stage = suffixed(&long, STAGE_SUFFIX);
        assert!(stage.len() <= MAX_IDENT_BYTES);
        assert!(stage.ends_with(STAGE_SUFFIX));
        assert_eq!(suffixed("t", OLD_SUFFIX), "t__sluice_old");
    }
}
