//! Batch writes: one `BEGIN IMMEDIATE … COMMIT` transaction, a cached prepared `INSERT` bound row
//! by row (SQLite's bulk path), on a thread that owns the connection.
//!
//! Every strategy is one transaction, so the target changes all at once or not at all:
//!
//! * `truncate_load`: `DELETE FROM t [WHERE filter]`, then the inserts.
//! * `staging_swap`: create `t__sluice_stage` with the target's own `CREATE TABLE` text (so
//!   constraints survive), copy in the rows a target filter keeps, insert, then `DROP TABLE t`,
//!   rename the staging table to `t`, and re-create the target's indexes and triggers. SQLite's DDL is
//!   transactional, so the staging table lives and dies inside the transaction: a crash leaves neither
//!   a staging table nor a half-written target.
//! * `append`: the inserts.
//!
//! The statements come from [`build_script`], which both the dry-run plan and the real write use.

use rusqlite::Connection;
use sluice_connector::{
    ConnectorError, ErrorKind, PlannedStatement, Result, TableWriter, WriteRequest, WriteStrategy,
    WriteSummary,
};
use sluice_model::{ColumnDef, RowBatch, TableRef, describe_key};
use tokio::sync::{mpsc, oneshot};

use crate::config::SqliteConfig;
use crate::connect::{open_read, open_write};
use crate::error::sqlite_error;
use crate::introspect::{create_sql, dependent_sql, table_schema};
use crate::types::{
    Storage, declared_type, encode, filter_sql, quote_ident, quote_literal, quote_schema,
    quote_table, storage_of,
};

/// Suffix of the staging table's name.
const STAGE_SUFFIX: &str = "__sluice_stage";

/// The statements of one write, given the target as it is.
#[derive(Debug)]
pub(crate) struct WriteScript {
    /// Run once after `BEGIN IMMEDIATE`.
    setup: Vec<String>,
    /// Run once per row.
    insert: String,
    /// For upserts: run once per row before the insert, and once per deleted key.
    delete: Option<String>,
    /// Run once before `COMMIT`.
    finish: Vec<String>,
    /// How each written column stores its values.
    storage: Vec<Storage>,
    /// Whether the target is created.
    creates: bool,
}

impl WriteScript {
    pub(crate) fn planned(&self) -> Vec<PlannedStatement> {
        let mut out = vec![PlannedStatement::once("BEGIN IMMEDIATE")];
        out.extend(self.setup.iter().map(PlannedStatement::once));
        if let Some(delete) = &self.delete {
            out.push(PlannedStatement::per_row(delete.clone()));
        }
        out.push(PlannedStatement::per_row(self.insert.clone()));
        out.extend(self.finish.iter().map(PlannedStatement::once));
        out.push(PlannedStatement::once("COMMIT"));
        out
    }
}

/// `CREATE TABLE` for `columns` with `key` as primary key. A single `INTEGER` key becomes the
/// rowid, SQLite's fastest layout.
fn create_table_sql(name: &str, columns: &[ColumnDef], key: &[usize]) -> String {
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| {
            let mut def = format!(
                "{} {}",
                quote_ident(c.name.as_str()),
                declared_type(c.data_type)
            );
            if !c.nullable {
                def.push_str(" NOT NULL");
            }
            def
        })
        .collect();
    if !key.is_empty() {
        let cols: Vec<String> = key
            .iter()
            .map(|&k| quote_ident(columns[k].name.as_str()))
            .collect();
        parts.push(format!("PRIMARY KEY ({})", cols.join(", ")));
    }
    format!("CREATE TABLE {name} ({})", parts.join(", "))
}

/// Replaces the table name in SQLite's stored `CREATE TABLE "name" …` text.
fn rename_create_table(sql: &str, new_name: &str) -> Option<String> {
    const PREFIX: &str = "CREATE TABLE ";
    if sql.len() < PREFIX.len() || !sql[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &sql[PREFIX.len()..];
    let mut chars = rest.char_indices();
    let end = match chars.next()? {
        (_, open @ ('"' | '`' | '[')) => {
            let close = if open == '[' { ']' } else { open };
            let mut end = None;
            let mut iter = rest.char_indices().skip(1).peekable();
            while let Some((i, c)) = iter.next() {
                if c == close {
                    if close != ']' && iter.peek().map(|&(_, n)| n) == Some(close) {
                        iter.next();
                        continue;
                    }
                    end = Some(i + c.len_utf8());
                    break;
                }
            }
            end?
        }
        _ => rest
            .find(|c: char| c.is_whitespace() || c == '(')
            .unwrap_or(rest.len()),
    };
    Some(format!("{PREFIX}{new_name}{}", &rest[end..]))
}

fn insert_sql(table: &str, columns: &[ColumnDef]) -> String {
    let names: Vec<String> = columns
        .iter()
        .map(|c| quote_ident(c.name.as_str()))
        .collect();
    let params: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.join(", "),
        params.join(", ")
    )
}

/// Builds the statements for `request` against the target as `conn` sees it. Fails, changing
/// nothing, when the target lacks a written column or is missing and may not be created.
pub(crate) fn build_script(
    conn: Option<&Connection>,
    request: &WriteRequest,
) -> Result<WriteScript> {
    let table = &request.table;
    let existing = match conn {
        Some(conn) => table_schema(conn, table)?,
        None => None,
    };
    let storage: Vec<Storage> = match &existing {
        Some(schema) => request
            .columns
            .iter()
            .map(|c| {
                schema
                    .columns
                    .iter()
                    .find(|t| t.name.as_str().eq_ignore_ascii_case(c.name.as_str()))
                    .map(|t| storage_of(t.native_type.as_deref().unwrap_or_default()))
                    .ok_or_else(|| {
                        ConnectorError::schema(format!(
                            "target table {table} has no column {}",
                            c.name
                        ))
                    })
            })
            .collect::<Result<_>>()?,
        None if request.create_if_missing => request
            .columns
            .iter()
            .map(|c| storage_of(&declared_type(c.data_type)))
            .collect(),
        None => {
            return Err(ConnectorError::not_found(format!(
                "target table {table} does not exist"
            )));
        }
    };
    let target = quote_table(table);
    let creates = existing.is_none();
    let create_target = || create_table_sql(&target, &request.columns, &request.key);
    let mut setup = Vec::new();
    let mut finish = Vec::new();
    let mut delete = None;
    let insert = match request.strategy {
        WriteStrategy::Upsert => {
            if request.key.is_empty() {
                return Err(ConnectorError::schema(format!(
                    "an upsert into {table} needs key columns"
                )));
            }
            if creates {
                setup.push(create_target());
            }
            // Delete by key, then insert: works whether or not the key is declared unique.
            let matches: Vec<String> = request
                .key
                .iter()
                .enumerate()
                .map(|(n, &k)| {
                    format!(
                        "{} = ?{}",
                        quote_ident(request.columns[k].name.as_str()),
                        n + 1
                    )
                })
                .collect();
            delete = Some(format!(
                "DELETE FROM {target} WHERE {}",
                matches.join(" AND ")
            ));
            insert_sql(&target, &request.columns)
        }
        WriteStrategy::TruncateLoad | WriteStrategy::Append => {
            if creates {
                setup.push(create_target());
            } else if request.strategy == WriteStrategy::TruncateLoad {
                match &request.filter {
                    Some(filter) => setup.push(format!(
                        "DELETE FROM {target} WHERE ({})",
                        filter_sql(filter)?
                    )),
                    None => setup.push(format!("DELETE FROM {target}")),
                }
            }
            insert_sql(&target, &request.columns)
        }
        WriteStrategy::StagingSwap => {
            let stage_base = format!("{}{STAGE_SUFFIX}", table.name);
            let stage_ref = TableRef {
                schema: table.schema.clone(),
                name: sluice_model::BaseName::new(stage_base.clone())
                    .map_err(|e| ConnectorError::schema(e.to_string()))?,
            };
            let stage = quote_table(&stage_ref);
            // A staging table lives only inside its transaction, so a table of that name is the
            // user's: refuse rather than drop it.
            if let Some(conn) = conn
                && create_sql(conn, &stage_ref)?.is_some()
            {
                return Err(ConnectorError::schema(format!(
                    "a table named {stage_ref} exists; staging_swap needs that name for its staging table"
                )));
            }
            let conn_and_sql = match conn {
                Some(conn) if !creates => Some((conn, create_sql(conn, table)?)),
                _ => None,
            };
            match conn_and_sql {
                Some((conn, Some(sql))) => {
                    let staged = rename_create_table(&sql, &stage).ok_or_else(|| {
                        ConnectorError::unsupported(format!(
                            "cannot stage table {table}: its CREATE TABLE text is not recognised"
                        ))
                    })?;
                    setup.push(staged);
                    if let Some(filter) = &request.filter {
                        setup.push(format!(
                            "INSERT INTO {stage} SELECT * FROM {target} WHERE ({}) IS NOT TRUE",
                            filter_sql(filter)?
                        ));
                    }
                    if sql.to_ascii_uppercase().contains("AUTOINCREMENT") {
                        // Keep the AUTOINCREMENT counter: ids of deleted rows are never reused.
                        let sequence = format!("{}.sqlite_sequence", quote_schema(table));
                        let (old, new) = (
                            quote_literal(table.name.as_str()),
                            quote_literal(&stage_base),
                        );
                        finish.push(format!(
                            "INSERT INTO {sequence} (name, seq) SELECT {new}, seq FROM {sequence} WHERE name = {old} COLLATE NOCASE \
                             AND NOT EXISTS (SELECT 1 FROM {sequence} WHERE name = {new})"
                        ));
                        finish.push(format!(
                            "UPDATE {sequence} SET seq = (SELECT max(seq) FROM {sequence} WHERE name = {new} OR name = {old} COLLATE NOCASE) \
                             WHERE name = {new}"
                        ));
                    }
                    finish.push(format!("DROP TABLE {target}"));
                    finish.push(format!(
                        "ALTER TABLE {stage} RENAME TO {}",
                        quote_ident(table.name.as_str())
                    ));
                    finish.extend(dependent_sql(conn, table)?);
                }
                _ => {
                    setup.push(create_table_sql(&stage, &request.columns, &request.key));
                    finish.push(format!(
                        "ALTER TABLE {stage} RENAME TO {}",
                        quote_ident(table.name.as_str())
                    ));
                }
            }
            insert_sql(&stage, &request.columns)
        }
    };
    Ok(WriteScript {
        setup,
        insert,
        delete,
        finish,
        storage,
        creates,
    })
}

/// The plan of a write: what `open`, the batches and `commit` will run.
pub(crate) fn plan(config: &SqliteConfig, request: &WriteRequest) -> Result<Vec<PlannedStatement>> {
    let conn = if config.exists() {
        Some(open_read(config)?)
    } else {
        None
    };
    Ok(build_script(conn.as_ref(), request)?.planned())
}

enum Command {
    Batch(RowBatch),
    Delete(RowBatch),
    Commit,
}

/// Opens a write: starts the writer thread, which takes the write lock, checks the target and runs
/// the setup statements before this returns.
pub(crate) async fn open(
    config: SqliteConfig,
    request: WriteRequest,
) -> Result<Box<dyn TableWriter>> {
    let (commands_tx, commands_rx) = mpsc::channel::<Command>(1);
    let (ready_tx, ready_rx) = oneshot::channel::<Result<()>>();
    let worker = tokio::task::spawn_blocking(move || {
        write_on_thread(&config, &request, commands_rx, ready_tx)
    });
    match ready_rx.await {
        Ok(Ok(())) => Ok(Box::new(SqliteTableWriter {
            commands: Some(commands_tx),
            worker: Some(worker),
        })),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(join_error(worker.await)),
    }
}

fn join_error(
    joined: std::result::Result<Result<WriteSummary>, tokio::task::JoinError>,
) -> ConnectorError {
    match joined {
        Ok(Err(error)) => error,
        Ok(Ok(_)) => ConnectorError::internal("the SQLite writer thread ended early"),
        Err(e) => ConnectorError::internal(format!("the SQLite writer thread failed: {e}")),
    }
}

/// Runs one statement (a prepared statement: SQLite refuses text holding a second one), stepping
/// through any rows it answers.
fn run_one(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.raw_query();
    while rows.next()?.is_some() {}
    Ok(())
}

fn write_on_thread(
    config: &SqliteConfig,
    request: &WriteRequest,
    mut commands: mpsc::Receiver<Command>,
    ready: oneshot::Sender<Result<()>>,
) -> Result<WriteSummary> {
    let table = &request.table;
    let setup = || -> Result<(Connection, WriteScript)> {
        let conn = open_write(config)?;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| {
            sqlite_error(
                e,
                format_args!("lock {} for writing", config.path.display()),
            )
        })?;
        let script = build_script(Some(&conn), request)?;
        for sql in &script.setup {
            run_one(&conn, sql)
                .map_err(|e| sqlite_error(e, format_args!("prepare target table {table}")))?;
        }
        Ok((conn, script))
    };
    let (conn, script) = match setup() {
        Ok(ok) => {
            let _ = ready.send(Ok(()));
            ok
        }
        Err(error) => {
            let _ = ready.send(Err(error));
            return Err(ConnectorError::cancelled());
        }
    };
    let mut rows = 0u64;
    let outcome = (|| -> Result<bool> {
        let mut insert = conn
            .prepare_cached(&script.insert)
            .map_err(|e| sqlite_error(e, format_args!("prepare the insert into {table}")))?;
        let mut delete =
            match &script.delete {
                Some(sql) => Some(conn.prepare_cached(sql).map_err(|e| {
                    sqlite_error(e, format_args!("prepare the delete from {table}"))
                })?),
                None => None,
            };
        let key_storage: Vec<Storage> = request.key.iter().map(|&k| script.storage[k]).collect();
        let mut delete_key = |key: &mut dyn Iterator<Item = &sluice_model::Value>| -> Result<()> {
            let Some(delete) = delete.as_mut() else {
                return Err(ConnectorError::unsupported(
                    "deleting rows needs the upsert strategy",
                ));
            };
            for (n, value) in key.enumerate() {
                let bound = encode(value, key_storage[n]).map_err(|reason| {
                    ConnectorError::data(format!("target table {table} key: {reason}"))
                })?;
                delete
                    .raw_bind_parameter(n + 1, bound)
                    .map_err(|e| sqlite_error(e, format_args!("bind a key of {table}")))?;
            }
            delete
                .raw_execute()
                .map_err(|e| sqlite_error(e, format_args!("delete a row of {table}")))?;
            Ok(())
        };
        let upsert = script.delete.is_some();
        while let Some(command) = commands.blocking_recv() {
            match command {
                Command::Delete(keys) => {
                    for key in keys.rows() {
                        delete_key(&mut key.iter())?;
                    }
                }
                Command::Batch(batch) => {
                    for row in batch.rows() {
                        if upsert {
                            delete_key(&mut request.key.iter().map(|&k| &row[k]))?;
                        }
                        for (i, value) in row.iter().enumerate() {
                            let bound = encode(value, script.storage[i]).map_err(|reason| {
                                ConnectorError::data(format!(
                                    "target table {table} row {} column {}: {reason}",
                                    describe_key(&request.columns, &request.key, row),
                                    request.columns[i].name
                                ))
                            })?;
                            insert.raw_bind_parameter(i + 1, bound).map_err(|e| {
                                sqlite_error(e, format_args!("bind a value for {table}"))
                            })?;
                        }
                        insert.raw_execute().map_err(|e| {
                            sqlite_error(
                                e,
                                format_args!(
                                    "insert row {} into {table}",
                                    describe_key(&request.columns, &request.key, row)
                                ),
                            )
                        })?;
                        rows += 1;
                    }
                }
                Command::Commit => return Ok(true),
            }
        }
        Ok(false)
    })();
    match outcome {
        Ok(true) => {
            for sql in &script.finish {
                if let Err(e) = run_one(&conn, sql) {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(sqlite_error(
                        e,
                        format_args!("swap in the new contents of {table}"),
                    ));
                }
            }
            conn.execute_batch("COMMIT")
                .map_err(|e| sqlite_error(e, format_args!("commit the write of {table}")))?;
            Ok(WriteSummary {
                rows,
                created: script.creates,
            })
        }
        Ok(false) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(ConnectorError::cancelled())
        }
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// A write in progress; commands go to the writer thread over a channel of one batch, so the
/// caller prepares the next batch while this one is written.
struct SqliteTableWriter {
    commands: Option<mpsc::Sender<Command>>,
    worker: Option<tokio::task::JoinHandle<Result<WriteSummary>>>,
}

impl SqliteTableWriter {
    async fn finish_worker(&mut self) -> Result<WriteSummary> {
        self.commands = None;
        match self.worker.take() {
            Some(worker) => match worker.await {
                Ok(result) => result,
                Err(e) => Err(ConnectorError::internal(format!(
                    "the SQLite writer thread failed: {e}"
                ))),
            },
            None => Err(ConnectorError::internal("the write has already finished")),
        }
    }
}

#[async_trait::async_trait]
impl TableWriter for SqliteTableWriter {
    async fn write_batch(&mut self, batch: RowBatch) -> Result<()> {
        let sent = match &self.commands {
            Some(commands) => commands.send(Command::Batch(batch)).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer thread stopped: report why.
        Err(match self.finish_worker().await {
            Err(error) => error,
            Ok(_) => ConnectorError::internal("the write has already finished"),
        })
    }

    async fn delete_batch(&mut self, keys: RowBatch) -> Result<()> {
        let sent = match &self.commands {
            Some(commands) => commands.send(Command::Delete(keys)).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        Err(match self.finish_worker().await {
            Err(error) => error,
            Ok(_) => ConnectorError::internal("the write has already finished"),
        })
    }

    async fn commit(mut self: Box<Self>) -> Result<WriteSummary> {
        if let Some(commands) = &self.commands {
            // A failed send means the thread stopped on an error, which finish_worker returns.
            let _ = commands.send(Command::Commit).await;
        }
        self.finish_worker().await
    }

    async fn rollback(mut self: Box<Self>) -> Result<()> {
        match self.finish_worker().await {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == ErrorKind::Cancelled => Ok(()),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_create_table_text_is_renamed() {
        let cases = [
            (
                r#"CREATE TABLE "My ""T""" (a int)"#,
                r#"CREATE TABLE "st" (a int)"#,
            ),
            (
                "CREATE TABLE [br]([x] int)",
                r#"CREATE TABLE "st"([x] int)"#,
            ),
            (
                "CREATE TABLE `bt`(x int) strict",
                r#"CREATE TABLE "st"(x int) strict"#,
            ),
            ("create table plain (x)", r#"CREATE TABLE "st" (x)"#),
            ("CREATE TABLE t(x)", r#"CREATE TABLE "st"(x)"#),
        ];
        for (sql, want) in cases {
            assert_eq!(
                rename_create_table(sql, "\"st\"").as_deref(),
                Some(want),
                "{sql}"
            );
        }
        assert_eq!(
            rename_create_table("CREATE VIRTUAL TABLE v USING fts5(x)", "\"st\""),
            None
        );
    }
}
