//! Snapshot reads: one read transaction per table, rows decoded into batches on a blocking thread
//! and handed over a channel of two batches (so memory is bounded by the batch size). A shared
//! snapshot is one connection holding a read transaction open (WAL mode keeps its view while
//! writers commit); reads in it run on that connection one after another.

use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use sluice_connector::{ConnectorError, PlannedStatement, ReadRequest, Result, Snapshot};
use sluice_model::{ColumnDef, Condition, DataType, RowBatch, TableRef, Value, describe_key};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::config::SqliteConfig;
use crate::connect::open_read;
use crate::error::sqlite_error;
use crate::introspect::table_schema;
use crate::types::{
    Storage, decode, decode_untyped, encode, filter_sql, quote_ident, quote_table, storage_of,
};

/// Reads one stored value as a data type.
type Decoder = for<'a> fn(rusqlite::types::ValueRef<'a>, DataType) -> Result<Value, String>;

/// Batches in flight between the reading thread and the consumer.
const CHANNEL_BATCHES: usize = 2;

/// The `SELECT` a read runs.
pub(crate) fn select_sql(request: &ReadRequest) -> Result<String> {
    let columns: Vec<String> = request
        .columns
        .iter()
        .map(|c| quote_ident(c.name.as_str()))
        .collect();
    let mut sql = format!(
        "SELECT {} FROM {}",
        columns.join(", "),
        quote_table(&request.table)
    );
    if request.key_range.is_some() {
        return Err(ConnectorError::unsupported(
            "sqlite locations cannot read a key range",
        ));
    }
    let mut conditions = Vec::new();
    if let Some(filter) = &request.filter {
        conditions.push(format!("({})", filter_sql(filter)?));
    }
    if let Some(bound) = &request.lower_bound {
        let op = if bound.inclusive { ">=" } else { ">" };
        conditions.push(format!(
            "{} {op} ?1",
            quote_ident(request.columns[bound.column].name.as_str())
        ));
    }
    if !conditions.is_empty() {
        sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    }
    if request.ordered && !request.key.is_empty() {
        let order: Vec<String> = request
            .key
            .iter()
            .map(|&k| order_term(&request.columns[k]))
            .collect();
        sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
    }
    Ok(sql)
}

/// How a key column sorts in the order the engine merges in.
fn order_term(column: &ColumnDef) -> String {
    let c = quote_ident(column.name.as_str());
    let stored_as_text = column.native_type.as_deref().map(storage_of) == Some(Storage::Text);
    match column.data_type {
        // Text sorts bytewise whatever collation the column declares.
        ty if ty.is_text() => format!("{c} COLLATE BINARY"),
        // Decimals kept as their digits (DECIMAL_TEXT) sort by number: sign, then the length of the
        // integer part, then the digits (negatives in reverse), which is numeric order for
        // canonical text.
        DataType::Numeric | DataType::Decimal { .. } if stored_as_text => {
            let negative = format!("substr({c}, 1, 1) = '-'");
            let int_len = format!(
                "length(CASE WHEN instr({c}, '.') > 0 THEN substr({c}, 1, instr({c}, '.') - 1) ELSE {c} END)"
            );
            format!(
                "CASE WHEN {negative} THEN 0 ELSE 1 END, CASE WHEN {negative} THEN -{int_len} ELSE {int_len} END, \
                 CASE WHEN {negative} THEN NULL ELSE {c} END COLLATE BINARY, CASE WHEN {negative} THEN {c} END COLLATE BINARY DESC"
            )
        }
        _ => c,
    }
}

/// The statements of a read, in order.
pub(crate) fn plan(request: &ReadRequest) -> Result<Vec<PlannedStatement>> {
    Ok(vec![
        PlannedStatement::once("BEGIN"),
        PlannedStatement::once(select_sql(request)?),
        PlannedStatement::once("COMMIT"),
    ])
}

/// Checks that the table and every requested column exist.
pub(crate) fn check_source(
    conn: &Connection,
    table: &TableRef,
    columns: &[ColumnDef],
) -> Result<()> {
    let schema = table_schema(conn, table)?
        .ok_or_else(|| ConnectorError::not_found(format!("table {table} does not exist")))?;
    for column in columns {
        let found = schema
            .columns
            .iter()
            .any(|c| c.name.as_str().eq_ignore_ascii_case(column.name.as_str()));
        if !found {
            return Err(ConnectorError::schema(format!(
                "table {table} has no column {}",
                column.name
            )));
        }
    }
    Ok(())
}

/// Where a read runs: on a connection of its own in a read transaction of its own, or on a
/// connection that holds a shared snapshot open (its read transaction already begun; reads on it
/// take turns).
pub(crate) enum ReadIn {
    /// A fresh connection to the file.
    Own(SqliteConfig),
    /// The connection of a shared snapshot.
    Held(Arc<Mutex<Connection>>),
}

/// Starts a read on a blocking thread; setup errors (missing table or column) are returned here,
/// errors while reading end the stream.
pub(crate) async fn read(config: SqliteConfig, request: ReadRequest) -> Result<Snapshot> {
    read_in(ReadIn::Own(config), request).await
}

/// [`read`] on the connection `source` names.
pub(crate) async fn read_in(source: ReadIn, request: ReadRequest) -> Result<Snapshot> {
    let (batches_tx, batches_rx) = mpsc::channel::<Result<RowBatch>>(CHANNEL_BATCHES);
    let (ready_tx, ready_rx) = oneshot::channel::<Result<()>>();
    tokio::task::spawn_blocking(move || {
        let mut ready = Some(ready_tx);
        let outcome = match &source {
            ReadIn::Own(config) => open_read(config).and_then(|conn| {
                conn.execute_batch("BEGIN")
                    .map_err(|e| sqlite_error(e, "begin the read transaction"))?;
                read_on_thread(&conn, &request, &batches_tx, &mut ready)?;
                conn.execute_batch("COMMIT")
                    .map_err(|e| sqlite_error(e, "end the read transaction"))
            }),
            ReadIn::Held(conn) => match conn.lock() {
                Ok(conn) => read_on_thread(&conn, &request, &batches_tx, &mut ready),
                Err(_) => Err(ConnectorError::internal(
                    "a read in the shared snapshot failed before; the snapshot is unusable",
                )),
            },
        };
        if let Err(error) = outcome {
            match ready.take() {
                Some(ready) => {
                    let _ = ready.send(Err(error));
                }
                None => {
                    let _ = batches_tx.blocking_send(Err(error));
                }
            }
        }
    });
    ready_rx.await.map_err(|_| {
        ConnectorError::internal("the SQLite reader thread ended before starting")
    })??;
    Ok(Snapshot {
        batches: Box::pin(ReceiverStream::new(batches_rx)),
        position: None,
    })
}

fn read_on_thread(
    conn: &Connection,
    request: &ReadRequest,
    out: &mpsc::Sender<Result<RowBatch>>,
    ready: &mut Option<oneshot::Sender<Result<()>>>,
) -> Result<()> {
    let table = &request.table;
    check_source(conn, table, &request.columns)?;
    let sql = select_sql(request)?;
    let mut stmt = conn
        .prepare(&sql)
        .map_err(|e| sqlite_error(e, format_args!("prepare the read of {table}")))?;
    if let Some(bound) = &request.lower_bound {
        let column = &request.columns[bound.column];
        let storage = storage_of(column.native_type.as_deref().unwrap_or_default());
        let value = encode(&bound.value, storage).map_err(|reason| {
            ConnectorError::data(format!(
                "table {table} column {}: lower bound: {reason}",
                column.name
            ))
        })?;
        stmt.raw_bind_parameter(1, value)
            .map_err(|e| sqlite_error(e, format_args!("bind the lower bound of {table}")))?;
    }
    let mut rows = stmt.raw_query();
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(()));
    }
    let width = request.columns.len();
    let types: Vec<_> = request.columns.iter().map(|c| c.data_type).collect();
    // Columns declared without a type can hold any kind of value: read them strictly.
    let readers: Vec<Decoder> = request
        .columns
        .iter()
        .map(|c| match c.native_type.as_deref() {
            Some(t) if t.trim().is_empty() => decode_untyped as Decoder,
            _ => decode as Decoder,
        })
        .collect();
    let mut batch = RowBatch::new(width, request.limits);
    let mut row_values: Vec<Value> = Vec::with_capacity(width);
    while let Some(row) = rows
        .next()
        .map_err(|e| sqlite_error(e, format_args!("read {table}")))?
    {
        row_values.clear();
        for (i, ty) in types.iter().enumerate() {
            let raw = row
                .get_ref(i)
                .map_err(|e| sqlite_error(e, format_args!("read {table}")))?;
            match readers[i](raw, *ty) {
                Ok(v) => row_values.push(v),
                Err(reason) => {
                    // Decode the key columns on their own to name the row.
                    let key_values: Vec<Value> = (0..width)
                        .map(|k| {
                            row.get_ref(k)
                                .ok()
                                .and_then(|r| decode(r, types[k]).ok())
                                .unwrap_or(Value::Null)
                        })
                        .collect();
                    return Err(ConnectorError::data(format!(
                        "table {table} row {} column {}: {reason}",
                        describe_key(&request.columns, &request.key, &key_values),
                        request.columns[i].name
                    )));
                }
            }
        }
        if batch.is_full() && out.blocking_send(Ok(batch.take())).is_err() {
            return Ok(()); // the consumer stopped reading
        }
        batch
            .push_row(row_values.drain(..))
            .map_err(|e| ConnectorError::internal(e.to_string()))?;
    }
    if !batch.is_empty() {
        let _ = out.blocking_send(Ok(batch));
    }
    Ok(())
}

/// `SELECT count(*)` with the filter.
pub(crate) fn count_rows(
    config: &SqliteConfig,
    table: &TableRef,
    filter: Option<&Condition>,
) -> Result<u64> {
    let conn = open_read(config)?;
    check_source(&conn, table, &[])?;
    let mut sql = format!("SELECT count(*) FROM {}", quote_table(table));
    if let Some(filter) = filter {
        sql.push_str(&format!(" WHERE ({})", filter_sql(filter)?));
    }
    conn.query_row(&sql, [], |row| row.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(|e| sqlite_error(e, format_args!("count rows of {table}")))
}

/// The greatest non-NULL value of a column, decoded as its requested type.
pub(crate) fn max_value(
    config: &SqliteConfig,
    table: &TableRef,
    column: &ColumnDef,
    filter: Option<&Condition>,
) -> Result<Option<Value>> {
    let conn = open_read(config)?;
    let schema = table_schema(&conn, table)?
        .ok_or_else(|| ConnectorError::not_found(format!("table {table} does not exist")))?;
    let native = schema
        .columns
        .iter()
        .find(|c| c.name.as_str().eq_ignore_ascii_case(column.name.as_str()))
        .ok_or_else(|| {
            ConnectorError::schema(format!("table {table} has no column {}", column.name))
        })?
        .native_type
        .clone()
        .unwrap_or_default();
    if column.data_type.is_decimal() && storage_of(&native) == Storage::Text {
        return Err(ConnectorError::unsupported(format!(
            "table {table} column {}: decimals kept as text have no usable maximum",
            column.name
        )));
    }
    let mut sql = format!(
        "SELECT max({}) FROM {}",
        quote_ident(column.name.as_str()),
        quote_table(table)
    );
    if let Some(filter) = filter {
        sql.push_str(&format!(" WHERE ({})", filter_sql(filter)?));
    }
    let mut stmt = conn
        .prepare(&sql)
        .map_err(|e| sqlite_error(e, format_args!("find the maximum of {table}")))?;
    let mut rows = stmt.raw_query();
    let row = rows
        .next()
        .map_err(|e| sqlite_error(e, format_args!("find the maximum of {table}")))?
        .ok_or_else(|| ConnectorError::internal("max() returned no row"))?;
    let raw = row
        .get_ref(0)
        .map_err(|e| sqlite_error(e, format_args!("find the maximum of {table}")))?;
    match decode(raw, column.data_type) {
        Ok(Value::Null) => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(reason) => Err(ConnectorError::data(format!(
            "table {table} column {}: greatest value: {reason}",
            column.name
        ))),
    }
}
