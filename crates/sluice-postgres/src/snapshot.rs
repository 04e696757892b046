//! Snapshot reads: one `REPEATABLE READ READ ONLY` transaction per read, the rows streamed by
//! `COPY (SELECT …) TO STDOUT (FORMAT binary)` and decoded by [`crate::copy`] into batches on a task
//! of their own, handed over a channel of two batches (so memory is bounded by the batch size).
//!
//! The raw read runs the same COPY and hands its bytes on untouched, gathered into chunks of up to
//! [`RAW_CHUNK`] bytes.

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt};
use sluice_connector::{
    ConnectorError, KeyRange, PlannedStatement, RangeChecksum, RawSnapshot, ReadRequest, Result,
    Snapshot,
};
use sluice_model::{ColumnDef, Condition, RowBatch, SchemaName, TableRef, Value, describe_key};
use tokio::sync::mpsc;
use tokio_postgres::{Client, CopyOutStream};

use crate::config::PostgresConfig;
use crate::connect::connect;
use crate::copy::{Frame, ReadColumn, parse_header, parse_row};
use crate::error::pg_error;
use crate::introspect::{CatalogColumn, columns, find_relation};
use crate::types::{
    CHECKSUM_NAME, CHECKSUM_SETTINGS, Wire, filter_sql, literal, orderable_key, pg_type,
    quote_ident, quote_table, raw_format_name, row_hash_sql, row_hash_term, schema_of,
};

/// Batches in flight between the decoding task and the consumer.
const CHANNEL_BATCHES: usize = 2;
/// The largest chunk a raw read hands on.
pub(crate) const RAW_CHUNK: usize = 1 << 20;
/// Raw chunks in flight.
const CHANNEL_CHUNKS: usize = 4;

/// The transaction a read runs in.
const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// Whether a column holds text (and so sorts and compares bytewise only with `COLLATE "C"`).
fn is_text(column: &ColumnDef) -> bool {
    match column.native_type.as_deref().and_then(pg_type) {
        Some(ty) => ty.wire == Wire::Text,
        None => column.native_type.is_none() && column.data_type.is_text(),
    }
}

/// A column as an expression that compares the way [`Value::cmp_key`] does.
fn key_expr(column: &ColumnDef) -> String {
    let c = quote_ident(column.name.as_str());
    if is_text(column) {
        format!("{c} COLLATE \"C\"")
    } else {
        c
    }
}

/// The `SELECT` a read runs.
pub(crate) fn select_sql(request: &ReadRequest, default_schema: &SchemaName) -> Result<String> {
    let columns: Vec<String> = request
        .columns
        .iter()
        .map(|c| quote_ident(c.name.as_str()))
        .collect();
    let mut sql = format!(
        "SELECT {} FROM {}",
        columns.join(", "),
        quote_table(&request.table, default_schema)
    );
    let mut conditions = Vec::new();
    if let Some(filter) = &request.filter {
        conditions.push(format!("({})", filter_sql(filter)?));
    }
    if let Some(bound) = &request.lower_bound
        && let Some(column) = request.columns.get(bound.column)
    {
        conditions.push(format!(
            "{} {} {}",
            key_expr(column),
            if bound.inclusive { ">=" } else { ">" },
            literal(&bound.value, column.data_type)
        ));
    }
    if let Some(range) = &request.key_range {
        conditions.extend(range_conditions(request, range)?);
    }
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    if request.ordered && !request.key.is_empty() {
        // NULL sorts first in key order; only nullable columns need saying so (which would keep
        // PostgreSQL from reading a NOT NULL key's index in order).
        let order: Vec<String> = request
            .key
            .iter()
            .map(|&k| {
                let column = &request.columns[k];
                if column.nullable {
                    format!("{} NULLS FIRST", key_expr(column))
                } else {
                    key_expr(column)
                }
            })
            .collect();
        sql.push_str(" ORDER BY ");
        sql.push_str(&order.join(", "));
    }
    Ok(sql)
}

/// The `COPY` a read runs.
pub(crate) fn copy_sql(request: &ReadRequest, default_schema: &SchemaName) -> Result<String> {
    Ok(format!(
        "COPY ({}) TO STDOUT (FORMAT binary)",
        select_sql(request, default_schema)?
    ))
}

/// The statements of a read, in order.
pub(crate) fn plan(
    request: &ReadRequest,
    default_schema: &SchemaName,
) -> Result<Vec<PlannedStatement>> {
    Ok(vec![
        PlannedStatement::once(BEGIN_READ),
        PlannedStatement::once(copy_sql(request, default_schema)?),
        PlannedStatement::once("COMMIT"),
    ])
}

/// The raw format of `request` when every column has a native type whose natural data type is the
/// requested one.
pub(crate) fn raw_format(request: &ReadRequest) -> Option<String> {
    let mut natives = Vec::with_capacity(request.columns.len());
    for column in &request.columns {
        let native = column.native_type.as_deref()?;
        if pg_type(native)?.data_type != column.data_type {
            return None;
        }
        natives.push(native);
    }
    Some(raw_format_name(natives))
}

/// Finds the catalog column for each requested column.
fn match_columns<'a>(
    table: &TableRef,
    catalog: &'a [CatalogColumn],
    requested: &[ColumnDef],
) -> Result<Vec<&'a CatalogColumn>> {
    requested
        .iter()
        .map(|c| {
            catalog
                .iter()
                .find(|t| t.name == c.name.as_str())
                .ok_or_else(|| {
                    ConnectorError::schema(format!("table {table} has no column {}", c.name))
                })
        })
        .collect()
}

/// Opens the read transaction, checks the table and columns, and fills in every column's native
/// type from the catalog. Returns the client, the resolved request and how to decode each column.
async fn start(
    config: &PostgresConfig,
    mut request: ReadRequest,
    snapshot: Option<&str>,
) -> Result<(Client, ReadRequest, Vec<ReadColumn>)> {
    let table = request.table.clone();
    let client = connect(config).await?;
    client
        .batch_execute(BEGIN_READ)
        .await
        .map_err(|e| pg_error(e, format_args!("begin the read of {table}")))?;
    if let Some(id) = snapshot {
        client
            .batch_execute(&set_snapshot_sql(id)?)
            .await
            .map_err(|e| pg_error(e, format_args!("read {table} in snapshot {id}")))?;
    }
    let schema = schema_of(&table, &config.schema);
    let relation = find_relation(&client, schema, table.name.as_str())
        .await?
        .ok_or_else(|| ConnectorError::not_found(format!("table {table} does not exist")))?;
    let catalog = columns(&client, relation.oid).await?;
    let found = match_columns(&table, &catalog, &request.columns)?;
    let mut decoders = Vec::with_capacity(found.len());
    for (column, native) in request.columns.iter_mut().zip(found) {
        let ty = pg_type(&native.native_type).ok_or_else(|| {
            ConnectorError::unsupported(format!(
                "table {table} column {} has type {}, which sluice cannot carry",
                column.name, native.native_type
            ))
        })?;
        column.native_type = Some(native.native_type.clone());
        decoders.push(ReadColumn {
            wire: ty.wire,
            data_type: column.data_type,
            convert: ty.data_type != column.data_type,
        });
    }
    Ok((client, request, decoders))
}

async fn start_copy(
    client: &Client,
    request: &ReadRequest,
    default_schema: &SchemaName,
) -> Result<CopyOutStream> {
    client
        .copy_out(&copy_sql(request, default_schema)?)
        .await
        .map_err(|e| pg_error(e, format_args!("read table {}", request.table)))
}

/// Starts a read; setup errors (missing table or column, a bad filter) are returned here, errors
/// while reading end the stream.
pub(crate) async fn read(config: PostgresConfig, request: ReadRequest) -> Result<Snapshot> {
    read_in(config, request, None).await
}

/// [`read`] in an exported snapshot (`SET TRANSACTION SNAPSHOT`), when one is given.
pub(crate) async fn read_in(
    config: PostgresConfig,
    request: ReadRequest,
    snapshot: Option<&str>,
) -> Result<Snapshot> {
    let (client, request, decoders) = start(&config, request, snapshot).await?;
    let stream = start_copy(&client, &request, &config.schema).await?;
    let (tx, rx) = mpsc::channel::<Result<RowBatch>>(CHANNEL_BATCHES);
    tokio::spawn(async move {
        if let Err(error) = decode_stream(&client, stream, &request, &decoders, &tx).await {
            let _ = tx.send(Err(error)).await;
        }
    });
    Ok(Snapshot {
        batches: receiver_stream(rx),
        position: None,
    })
}

fn receiver_stream<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> futures::stream::BoxStream<'static, T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) }).boxed()
}

/// Names the row whose field `column` failed, by its key columns.
fn row_error(
    request: &ReadRequest,
    decoders: &[ReadColumn],
    row: &[u8],
    fields: &[Option<(usize, usize)>],
    column: usize,
    reason: &str,
) -> ConnectorError {
    let values: Vec<Value> = (0..decoders.len())
        .map(|i| {
            if !request.key.contains(&i) {
                return Value::Null;
            }
            decoders[i]
                .decode(fields[i].map(|(s, e)| &row[s..e]), &mut String::new())
                .unwrap_or(Value::Null)
        })
        .collect();
    ConnectorError::data(format!(
        "table {} row {} column {}: {reason}",
        request.table,
        describe_key(&request.columns, &request.key, &values),
        request.columns[column].name
    ))
}

/// Decodes the COPY stream into batches and sends them; returns when the stream ends, the
/// consumer goes away, or on the first error.
async fn decode_stream(
    client: &Client,
    stream: CopyOutStream,
    request: &ReadRequest,
    decoders: &[ReadColumn],
    out: &mpsc::Sender<Result<RowBatch>>,
) -> Result<()> {
    let table = &request.table;
    let width = decoders.len();
    let read_error = |e| pg_error(e, format_args!("read table {table}"));
    let mut batch = RowBatch::new(width, request.limits);
    let mut fields = Vec::with_capacity(width);
    let mut row: Vec<Value> = Vec::with_capacity(width);
    let mut scratch = String::new();
    let mut pending = BytesMut::new();
    let mut header_done = false;
    let mut ended = false;
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(read_error)?;
        let from_pending = !pending.is_empty();
        if from_pending {
            pending.extend_from_slice(&chunk);
        }
        let data: &[u8] = if from_pending { &pending } else { &chunk };
        let mut pos = 0usize;
        if !header_done {
            match parse_header(data).map_err(ConnectorError::data)? {
                Some(n) => {
                    pos = n;
                    header_done = true;
                }
                None => {
                    if !from_pending {
                        pending.extend_from_slice(&chunk);
                    }
                    continue;
                }
            }
        }
        while !ended {
            let rest = &data[pos..];
            match parse_row(rest, width, &mut fields).map_err(ConnectorError::data)? {
                Frame::Row(n) => {
                    for (i, decoder) in decoders.iter().enumerate() {
                        let field = fields[i].map(|(s, e)| &rest[s..e]);
                        match decoder.decode(field, &mut scratch) {
                            Ok(v) => row.push(v),
                            Err(reason) => {
                                return Err(row_error(
                                    request, decoders, rest, &fields, i, &reason,
                                ));
                            }
                        }
                    }
                    batch
                        .push_row(row.drain(..))
                        .map_err(|e| ConnectorError::internal(e.to_string()))?;
                    if batch.is_full() && out.send(Ok(batch.take())).await.is_err() {
                        return Ok(()); // the consumer stopped reading
                    }
                    pos += n;
                }
                Frame::End => {
                    ended = true;
                    pos += 2;
                }
                Frame::Incomplete => break,
            }
        }
        if from_pending {
            let _ = pending.split_to(pos);
        } else {
            pending.extend_from_slice(&chunk[pos..]);
        }
    }
    if !ended {
        return Err(ConnectorError::new(
            sluice_connector::ErrorKind::Connection,
            format!("read table {table}: the COPY stream ended before its trailer"),
        ));
    }
    if !batch.is_empty() && out.send(Ok(batch)).await.is_err() {
        return Ok(());
    }
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| pg_error(e, format_args!("end the read of {table}")))?;
    Ok(())
}

/// Starts a raw read: the COPY bytes as they come, in chunks of up to [`RAW_CHUNK`] bytes.
pub(crate) async fn read_raw(config: PostgresConfig, request: ReadRequest) -> Result<RawSnapshot> {
    let promised = raw_format(&request);
    let (client, request, _) = start(&config, request, None).await?;
    if raw_format(&request) != promised {
        return Err(ConnectorError::schema(format!(
            "the column types of {} changed since they were read; the raw format no longer holds",
            request.table
        )));
    }
    let stream = start_copy(&client, &request, &config.schema).await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes>>(CHANNEL_CHUNKS);
    let table = request.table.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut buf = BytesMut::with_capacity(RAW_CHUNK);
        loop {
            // Wait for the next message, then take whatever else is already there.
            let first = stream.next().await;
            let mut done = first.is_none();
            let mut next = first;
            while let Some(item) = next.take() {
                match item {
                    Ok(bytes) => buf.extend_from_slice(&bytes),
                    Err(e) => {
                        let error = pg_error(e, format!("read table {table}"));
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                }
                if buf.len() >= RAW_CHUNK {
                    break;
                }
                match stream.next().now_or_never() {
                    Some(Some(item)) => next = Some(item),
                    Some(None) => done = true,
                    None => {}
                }
            }
            if !buf.is_empty() {
                let chunk = buf.split().freeze();
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
                buf.reserve(RAW_CHUNK);
            }
            if done {
                break;
            }
        }
        if let Err(e) = client.batch_execute("COMMIT").await {
            let error = pg_error(e, format!("end the read of {table}"));
            let _ = tx.send(Err(error)).await;
        }
    });
    Ok(RawSnapshot {
        chunks: receiver_stream(rx),
    })
}

/// Checks that `table` exists; returns its oid.
async fn existing(client: &Client, config: &PostgresConfig, table: &TableRef) -> Result<u32> {
    let schema = schema_of(table, &config.schema);
    find_relation(client, schema, table.name.as_str())
        .await?
        .map(|r| r.oid)
        .ok_or_else(|| ConnectorError::not_found(format!("table {table} does not exist")))
}

/// `SELECT count(*)` with the filter.
pub(crate) async fn count_rows(
    config: &PostgresConfig,
    table: &TableRef,
    filter: Option<&Condition>,
) -> Result<u64> {
    let client = connect(config).await?;
    existing(&client, config, table).await?;
    let mut sql = format!(
        "SELECT count(*) FROM {}",
        quote_table(table, &config.schema)
    );
    if let Some(filter) = filter {
        sql.push_str(&format!(" WHERE ({})", filter_sql(filter)?));
    }
    let row = client
        .query_one(&sql, &[])
        .await
        .map_err(|e| pg_error(e, format_args!("count the rows of {table}")))?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// The greatest non-NULL value of `column`, read through the same binary COPY decoding as rows, as
/// a value of the column's requested type. `ORDER BY … DESC LIMIT 1` rather than `max()`: it works
/// for every type with an ordering (uuid and boolean have no `max`) and uses an index the same way.
pub(crate) async fn max_value(
    config: &PostgresConfig,
    table: &TableRef,
    column: &ColumnDef,
    filter: Option<&Condition>,
) -> Result<Option<Value>> {
    let request = ReadRequest {
        table: table.clone(),
        columns: vec![column.clone()],
        key: vec![0],
        ordered: false,
        filter: filter.cloned(),
        lower_bound: None,
        key_range: None,
        limits: sluice_model::BatchLimits::rows(1),
    };
    let (client, request, decoders) = start(config, request, None).await?;
    let column = &request.columns[0];
    let c = key_expr(column);
    let mut sql = format!(
        "COPY (SELECT {} FROM {} WHERE {} IS NOT NULL",
        quote_ident(column.name.as_str()),
        quote_table(table, &config.schema),
        quote_ident(column.name.as_str()),
    );
    if let Some(filter) = filter {
        sql.push_str(&format!(" AND ({})", filter_sql(filter)?));
    }
    sql.push_str(&format!(
        " ORDER BY {c} DESC LIMIT 1) TO STDOUT (FORMAT binary)"
    ));
    let stream = client.copy_out(&sql).await.map_err(|e| {
        pg_error(
            e,
            format_args!("read the greatest {} of {table}", column.name),
        )
    })?;
    let (tx, mut rx) = mpsc::channel::<Result<RowBatch>>(1);
    decode_stream(&client, stream, &request, &decoders, &tx).await?;
    drop(tx);
    match rx.recv().await {
        Some(Ok(batch)) if !batch.is_empty() => Ok(Some(batch.row(0)[0].clone())),
        Some(Err(e)) => Err(e),
        _ => Ok(None),
    }
}

/// The request's key as one SQL term in key order: the column for a one-column key, else a row
/// constructor (compared column by column, each with its own collation).
fn key_term(request: &ReadRequest) -> String {
    let terms: Vec<String> = request
        .key
        .iter()
        .map(|&k| key_expr(&request.columns[k]))
        .collect();
    if terms.len() == 1 {
        terms[0].clone()
    } else {
        format!("ROW({})", terms.join(", "))
    }
}

/// A key as a literal of the shape [`key_term`] compares with.
fn key_literal(request: &ReadRequest, key: &[Value]) -> Result<String> {
    if key.len() != request.key.len() {
        return Err(ConnectorError::internal(format!(
            "a key bound of {} values for a key of {} columns",
            key.len(),
            request.key.len()
        )));
    }
    let values: Vec<String> = request
        .key
        .iter()
        .zip(key)
        .map(|(&k, v)| {
            if v.is_null() {
                Err(ConnectorError::data(format!(
                    "table {}: a key bound cannot be NULL",
                    request.table
                )))
            } else {
                Ok(literal(v, request.columns[k].data_type))
            }
        })
        .collect::<Result<_>>()?;
    Ok(if values.len() == 1 {
        values[0].clone()
    } else {
        format!("ROW({})", values.join(", "))
    })
}

/// The conditions that keep a read to the keys of `range`.
fn range_conditions(request: &ReadRequest, range: &KeyRange) -> Result<Vec<String>> {
    if checksum_dialect(request).is_none() {
        return Err(ConnectorError::unsupported(format!(
            "table {}: a key range needs a key of NOT NULL columns with an exact order",
            request.table
        )));
    }
    let term = key_term(request);
    let mut out = Vec::new();
    if let Some(after) = &range.after {
        out.push(format!("{term} > {}", key_literal(request, after)?));
    }
    if let Some(through) = &range.through {
        out.push(format!("{term} <= {}", key_literal(request, through)?));
    }
    Ok(out)
}

/// The checksum dialect of `request` (see [`sluice_connector::SnapshotReader::checksum_dialect`]):
/// the row hash, the native type of every column and the key's columns; `None` without a key, with
/// a key column that may be NULL or has no exact order, or with a column of unknown native type.
pub(crate) fn checksum_dialect(request: &ReadRequest) -> Option<String> {
    if request.key.is_empty() {
        return None;
    }
    for &k in &request.key {
        let column = request.columns.get(k)?;
        if column.nullable || !orderable_key(column.data_type) {
            return None;
        }
    }
    let mut natives = Vec::with_capacity(request.columns.len());
    for column in &request.columns {
        let native = column.native_type.as_deref()?;
        pg_type(native)?;
        natives.push(format!("{native}:{}", column.data_type));
    }
    let key: Vec<String> = request.key.iter().map(|k| k.to_string()).collect();
    Some(format!(
        "{CHECKSUM_NAME};columns={};key={}",
        natives.join(","),
        key.join(",")
    ))
}

/// The `FROM … WHERE …` of a checksum or split over `range` of the rows `request` reads.
fn range_from(request: &ReadRequest, range: &KeyRange, schema: &SchemaName) -> Result<String> {
    let mut conditions = Vec::new();
    if let Some(filter) = &request.filter {
        conditions.push(format!("({})", filter_sql(filter)?));
    }
    for r in request.key_range.iter().chain(std::iter::once(range)) {
        conditions.extend(range_conditions(request, r)?);
    }
    let mut sql = format!(" FROM {}", quote_table(&request.table, schema));
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    Ok(sql)
}

/// The statement that counts and checksums each part of `range` cut at `cuts`: one group per
/// part, numbered from 0.
pub(crate) fn checksum_sql(
    request: &ReadRequest,
    range: &KeyRange,
    cuts: &[Vec<Value>],
    schema: &SchemaName,
) -> Result<String> {
    let terms: Vec<String> = request
        .columns
        .iter()
        .map(|c| {
            row_hash_term(
                &quote_ident(c.name.as_str()),
                c.native_type.as_deref().unwrap_or_default(),
                c.data_type,
            )
        })
        .collect();
    let term = key_term(request);
    let part = if cuts.is_empty() {
        "0".to_owned()
    } else if let Some(bounds) = integer_bounds(request, cuts) {
        // One binary search per row instead of a CASE testing every cut in turn.
        format!("width_bucket({term}::bigint, ARRAY[{bounds}]::bigint[]) ")
    } else {
        let mut case = String::from("CASE");
        for (i, cut) in cuts.iter().enumerate() {
            case.push_str(&format!(
                " WHEN {term} <= {} THEN {i}",
                key_literal(request, cut)?
            ));
        }
        case.push_str(&format!(" ELSE {} END", cuts.len()));
        case
    };
    Ok(format!(
        "SELECT part, count(*), sum(h)::text FROM (SELECT {part} AS part, {} AS h{}) AS rows \
         GROUP BY part",
        row_hash_sql(&terms),
        range_from(request, range, schema)?
    ))
}

/// For a one-column integer key cut at increasing keys, the lower bounds of the parts after the
/// first (each cut plus one), as `width_bucket` takes them: part `i` holds the keys up to cut `i`.
fn integer_bounds(request: &ReadRequest, cuts: &[Vec<Value>]) -> Option<String> {
    let [k] = request.key[..] else {
        return None;
    };
    if !matches!(
        request.columns[k].data_type,
        sluice_model::DataType::Int16
            | sluice_model::DataType::Int32
            | sluice_model::DataType::Int64
    ) {
        return None;
    }
    let mut bounds = Vec::with_capacity(cuts.len());
    for cut in cuts {
        let [value] = &cut[..] else {
            return None;
        };
        let value = match value {
            Value::Int16(v) => i64::from(*v),
            Value::Int32(v) => i64::from(*v),
            Value::Int64(v) => *v,
            _ => return None,
        };
        let bound = value.checked_add(1)?;
        if bounds.last().is_some_and(|&last| last >= bound) {
            return None;
        }
        bounds.push(bound);
    }
    Some(
        bounds
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Opens a read-only transaction for a checksum or split, with the checksum settings.
async fn begin_checksum(config: &PostgresConfig, table: &TableRef) -> Result<Client> {
    let client = connect(config).await?;
    client
        .batch_execute(&format!("{CHECKSUM_SETTINGS}; {BEGIN_READ}"))
        .await
        .map_err(|e| pg_error(e, format_args!("begin the checksum of {table}")))?;
    existing(&client, config, table).await?;
    Ok(client)
}

/// Counts and checksums each part of `range` cut at `cuts`, in one statement.
pub(crate) async fn checksum_ranges(
    config: &PostgresConfig,
    request: &ReadRequest,
    range: &KeyRange,
    cuts: &[Vec<Value>],
) -> Result<Vec<RangeChecksum>> {
    let table = &request.table;
    let sql = checksum_sql(request, range, cuts, &config.schema)?;
    let client = begin_checksum(config, table).await?;
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| pg_error(e, format_args!("checksum the rows of {table}")))?;
    let mut out = vec![RangeChecksum::default(); cuts.len() + 1];
    for row in rows {
        let part: i32 = row.get(0);
        let count: i64 = row.get(1);
        let sum: Option<String> = row.get(2);
        let slot = usize::try_from(part)
            .ok()
            .and_then(|p| out.get_mut(p))
            .ok_or_else(|| {
                ConnectorError::internal(format!("checksum part {part} out of range"))
            })?;
        slot.rows = count as u64;
        slot.checksum = sum.as_deref().unwrap_or("0").parse().map_err(|_| {
            ConnectorError::internal(format!("checksum of {table} is not an integer"))
        })?;
    }
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| pg_error(e, format_args!("end the checksum of {table}")))?;
    Ok(out)
}

/// Keys that cut `range` into about `parts` parts: evenly between the least and greatest value of
/// a one-column integer key, else every n-th key in key order.
pub(crate) async fn split_range(
    config: &PostgresConfig,
    request: &ReadRequest,
    range: &KeyRange,
    parts: usize,
) -> Result<Vec<Vec<Value>>> {
    let table = &request.table;
    if parts < 2 {
        return Ok(Vec::new());
    }
    let from = range_from(request, range, &config.schema)?;
    if let [k] = request.key[..]
        && let ty @ (sluice_model::DataType::Int16
        | sluice_model::DataType::Int32
        | sluice_model::DataType::Int64) = request.columns[k].data_type
    {
        let c = quote_ident(request.columns[k].name.as_str());
        let client = begin_checksum(config, table).await?;
        let row = client
            .query_one(
                &format!("SELECT min({c})::bigint, max({c})::bigint{from}"),
                &[],
            )
            .await
            .map_err(|e| pg_error(e, format_args!("find the key range of {table}")))?;
        let (Some(low), Some(high)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
        else {
            return Ok(Vec::new());
        };
        let mut cuts: Vec<i64> = (1..parts as i128)
            .map(|i| (low as i128 + (high as i128 - low as i128) * i / parts as i128) as i64)
            .filter(|&cut| cut >= low && cut < high)
            .collect();
        cuts.dedup();
        return cuts
            .into_iter()
            .map(|cut| {
                let value = match ty {
                    sluice_model::DataType::Int16 => i16::try_from(cut).map(Value::Int16).ok(),
                    sluice_model::DataType::Int32 => i32::try_from(cut).map(Value::Int32).ok(),
                    _ => Some(Value::Int64(cut)),
                };
                value.map(|v| vec![v]).ok_or_else(|| {
                    ConnectorError::internal(format!("key cut {cut} out of its type's range"))
                })
            })
            .collect();
    }
    let keys = ReadRequest {
        table: table.clone(),
        columns: request
            .key
            .iter()
            .map(|&k| request.columns[k].clone())
            .collect(),
        key: (0..request.key.len()).collect(),
        ordered: false,
        filter: None,
        lower_bound: None,
        key_range: None,
        limits: sluice_model::BatchLimits::DEFAULT,
    };
    let names: Vec<String> = keys
        .columns
        .iter()
        .map(|c| quote_ident(c.name.as_str()))
        .collect();
    let order: Vec<String> = request
        .key
        .iter()
        .map(|&k| key_expr(&request.columns[k]))
        .collect();
    let sql = format!(
        "COPY (SELECT {names} FROM (SELECT {names}, row_number() OVER (ORDER BY {order}) AS sluice_rn, \
         count(*) OVER () AS sluice_n{from}) AS keys \
         WHERE sluice_rn % greatest((sluice_n + {parts} - 1) / {parts}, 1) = 0 \
         AND sluice_rn < sluice_n ORDER BY sluice_rn) TO STDOUT (FORMAT binary)",
        names = names.join(", "),
        order = order.join(", "),
    );
    let (client, keys, decoders) = start(config, keys, None).await?;
    let stream = client
        .copy_out(&sql)
        .await
        .map_err(|e| pg_error(e, format_args!("split the keys of {table}")))?;
    let (tx, mut rx) = mpsc::channel::<Result<RowBatch>>(64);
    let collect = async {
        let mut cuts = Vec::new();
        while let Some(batch) = rx.recv().await {
            let batch = batch?;
            cuts.extend(batch.rows().map(|r| r.to_vec()));
        }
        Ok::<_, ConnectorError>(cuts)
    };
    let decode = async {
        let outcome = decode_stream(&client, stream, &keys, &decoders, &tx).await;
        drop(tx);
        outcome
    };
    let (decoded, cuts) = tokio::join!(decode, collect);
    decoded?;
    cuts
}

/// `SET TRANSACTION SNAPSHOT` for an id `pg_export_snapshot()` answered (hex digits and dashes;
/// anything else is refused rather than quoted).
fn set_snapshot_sql(id: &str) -> Result<String> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(ConnectorError::internal(format!(
            "{id:?} is not a snapshot id"
        )));
    }
    Ok(format!("SET TRANSACTION SNAPSHOT '{id}'"))
}

/// A snapshot exported by a `REPEATABLE READ` transaction that stays open (on a connection of
/// its own) until this is dropped, so that reads in other sessions can adopt it.
pub(crate) struct ExportedSnapshot {
    id: String,
    /// Holds the exporting transaction open; dropping it closes the connection.
    _client: Client,
}

impl ExportedSnapshot {
    /// Begins the transaction and exports its snapshot.
    pub(crate) async fn export(config: &PostgresConfig) -> Result<Self> {
        let client = connect(config).await?;
        client
            .batch_execute(BEGIN_READ)
            .await
            .map_err(|e| pg_error(e, format_args!("begin a shared snapshot")))?;
        let row = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(|e| pg_error(e, format_args!("export a snapshot")))?;
        let id: String = row.get(0);
        Ok(ExportedSnapshot {
            id,
            _client: client,
        })
    }
}

impl sluice_connector::SharedSnapshot for ExportedSnapshot {
    fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod snapshot_id_tests {
    use super::set_snapshot_sql;

    #[test]
    fn only_snapshot_ids_reach_sql() {
        assert_eq!(
            set_snapshot_sql("00000003-0000001B-1").unwrap(),
            "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'"
        );
        for bad in ["", "1'; DROP TABLE t; --", "abc def"] {
            assert!(set_snapshot_sql(bad).is_err(), "{bad}");
        }
    }
}
