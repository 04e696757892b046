//! Snapshot reads: one connection, one `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`,
//! one streaming binary-protocol `SELECT`, rows decoded into batches handed over a channel of two
//! batches, so memory is bounded by the batch size whatever the table's.
//!
//! Ordered reads sort text keys by `CAST(CONVERT(col USING utf8mb4) AS BINARY)` so that the order
//! is bytewise whatever the column's collation; MariaDB sorts such keys with a filesort rather
//! than walking the index (numeric, temporal and binary keys use the index order).

use futures::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use sluice_connector::{
    ConnectorError, KeyRange, LowerBound, PlannedStatement, RangeChecksum, ReadRequest, Result,
    Snapshot,
};
use sluice_model::{ColumnDef, Condition, DataType, RowBatch, TableRef, Value, describe_key};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use tokio::sync::{Mutex, OwnedMutexGuard, mpsc};

use crate::config::MariadbConfig;
use crate::connect::connect;
use crate::error::mysql_error;
use crate::introspect::table_info;
use crate::types::{
    CHECKSUM_NAME, CHECKSUM_SETTINGS, MAX_DECIMAL, decode, filter_sql, quote_ident, quote_table,
    row_hash_sql,
};

/// Batches in flight between the reading task and the consumer.
const CHANNEL_BATCHES: usize = 2;

/// The statements that open a read transaction.
pub(crate) const BEGIN_READ: [&str; 2] = [
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
];

/// Whether a column of this request keeps decimals as text (`LONGTEXT COMMENT 'sluice:numeric'`),
/// judged by its native type when known and else by how sluice creates the type.
fn stored_as_text(column: &ColumnDef) -> bool {
    match column.native_type.as_deref() {
        Some(native) => native.contains("text") || native.contains("char"),
        None => match column.data_type {
            DataType::Numeric => true,
            DataType::Decimal { precision, scale } => {
                precision > MAX_DECIMAL.0 || scale > MAX_DECIMAL.1
            }
            _ => false,
        },
    }
}

/// Terms (expression, descending) that sort a column in [`Value::cmp_key`] order: text bytewise
/// whatever the column's collation, UUIDs by their bytes, decimals kept as text by number.
pub(crate) fn order_terms(column: &ColumnDef) -> Vec<(String, bool)> {
    let c = quote_ident(column.name.as_str());
    match column.data_type {
        ty if ty.is_text() || ty == DataType::Json => {
            vec![(format!("CAST(CONVERT({c} USING utf8mb4) AS BINARY)"), false)]
        }
        DataType::Uuid => vec![(format!("CAST({c} AS BINARY)"), false)],
        DataType::Numeric | DataType::Decimal { .. } if stored_as_text(column) => {
            // Canonical decimal text sorts by number as: NULL first, negatives before the rest,
            // then by the length of the integer part, then bytewise (negatives all reversed).
            let negative = format!("LEFT({c}, 1) = '-'");
            let int_len = format!("CHAR_LENGTH(SUBSTRING_INDEX({c}, '.', 1))");
            vec![
                (format!("{c} IS NOT NULL"), false),
                (format!("CASE WHEN {negative} THEN 0 ELSE 1 END"), false),
                (
                    format!("CASE WHEN {negative} THEN -{int_len} ELSE {int_len} END"),
                    false,
                ),
                (
                    format!("CASE WHEN {negative} THEN NULL ELSE CAST({c} AS BINARY) END"),
                    false,
                ),
                (
                    format!("CASE WHEN {negative} THEN CAST({c} AS BINARY) END"),
                    true,
                ),
            ]
        }
        _ => vec![(c, false)],
    }
}

fn render_terms(terms: &[(String, bool)], reverse: bool) -> String {
    terms
        .iter()
        .map(|(t, desc)| {
            if *desc != reverse {
                format!("{t} DESC")
            } else {
                t.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `WHERE` clause of a read: the filter and the lower bound (as a `?` parameter).
fn where_clause(request: &ReadRequest) -> Result<String> {
    let mut parts = Vec::new();
    if let Some(filter) = &request.filter {
        parts.push(format!("({})", filter_sql(filter)?));
    }
    if let Some(bound) = &request.lower_bound
        && let Some(column) = request.columns.get(bound.column)
    {
        let op = if bound.inclusive { ">=" } else { ">" };
        let terms = order_terms(column);
        let expr = if terms.len() == 1 {
            terms[0].0.clone()
        } else {
            quote_ident(column.name.as_str())
        };
        parts.push(format!("{expr} {op} ?"));
    }
    if let Some(range) = &request.key_range {
        parts.extend(range_conditions(request, range)?);
    }
    if parts.is_empty() {
        Ok(String::new())
    } else {
        Ok(format!(" WHERE {}", parts.join(" AND ")))
    }
}

/// The parameters of [`where_clause`], in order: the lower bound's, then the key range's.
fn where_params(request: &ReadRequest) -> Result<Vec<mysql_async::Value>> {
    let mut params = Vec::new();
    if let Some(bound) = &request.lower_bound {
        let column = request.columns.get(bound.column).ok_or_else(|| {
            ConnectorError::internal(format!(
                "the lower bound names column {} of {}",
                bound.column,
                request.columns.len()
            ))
        })?;
        params.push(bound_param(bound, column, &request.table)?);
    }
    if let Some(range) = &request.key_range {
        params.extend(range_params(request, range)?);
    }
    Ok(params)
}

/// The expression a key column compares by in a key range (its one order term).
fn key_term(column: &ColumnDef) -> String {
    order_terms(column)
        .into_iter()
        .next()
        .map(|(t, _)| t)
        .unwrap_or_else(|| quote_ident(column.name.as_str()))
}

/// `key > after` (`greater`) or `key <= through` over the key's columns in order, with `?` for
/// the bound's values (see [`range_params`] for their order).
fn key_compare(request: &ReadRequest, greater: bool) -> String {
    let terms: Vec<String> = request
        .key
        .iter()
        .map(|&k| key_term(&request.columns[k]))
        .collect();
    let strict = if greater { ">" } else { "<" };
    let mut alternatives = Vec::new();
    for i in 0..terms.len() {
        let mut all: Vec<String> = terms[..i].iter().map(|t| format!("{t} = ?")).collect();
        all.push(format!("{} {strict} ?", terms[i]));
        alternatives.push(format!("({})", all.join(" AND ")));
    }
    if !greater {
        let all: Vec<String> = terms.iter().map(|t| format!("{t} = ?")).collect();
        alternatives.push(format!("({})", all.join(" AND ")));
    }
    format!("({})", alternatives.join(" OR "))
}

/// The conditions that keep a read to the keys of `range`.
fn range_conditions(request: &ReadRequest, range: &KeyRange) -> Result<Vec<String>> {
    if checksum_dialect(request).is_none() {
        return Err(ConnectorError::unsupported(format!(
            "table {}: a key range needs a key of NOT NULL columns with an exact order",
            request.table
        )));
    }
    let mut out = Vec::new();
    if range.after.is_some() {
        out.push(key_compare(request, true));
    }
    if range.through.is_some() {
        out.push(key_compare(request, false));
    }
    Ok(out)
}

/// The parameters of [`range_conditions`], in order.
fn range_params(request: &ReadRequest, range: &KeyRange) -> Result<Vec<mysql_async::Value>> {
    let mut params = Vec::new();
    for (bound, greater) in [(&range.after, true), (&range.through, false)] {
        let Some(values) = bound else { continue };
        if values.len() != request.key.len() {
            return Err(ConnectorError::internal(format!(
                "a key bound of {} values for a key of {} columns",
                values.len(),
                request.key.len()
            )));
        }
        let one =
            |i: usize| key_param(&values[i], &request.columns[request.key[i]], &request.table);
        let n = values.len();
        for i in 0..n {
            for j in 0..=i {
                params.push(one(j)?);
            }
        }
        if !greater {
            for j in 0..n {
                params.push(one(j)?);
            }
        }
    }
    Ok(params)
}

/// The checksum dialect of `request` (see [`sluice_connector::SnapshotReader::checksum_dialect`]):
/// the row hash, the native type of every column and the key's columns; `None` without a key, with
/// a key column that may be NULL or has no exact one-term order, or with a column whose text form
/// may lose digits (floats) or whose native type is unknown.
pub(crate) fn checksum_dialect(request: &ReadRequest) -> Option<String> {
    if request.key.is_empty() {
        return None;
    }
    for &k in &request.key {
        let column = request.columns.get(k)?;
        if column.nullable
            || matches!(
                column.data_type,
                DataType::Float32 | DataType::Float64 | DataType::Json
            )
            || order_terms(column).len() != 1
        {
            return None;
        }
    }
    let mut natives = Vec::with_capacity(request.columns.len());
    for column in &request.columns {
        if matches!(column.data_type, DataType::Float32 | DataType::Float64) {
            return None;
        }
        natives.push(format!(
            "{}:{}",
            column.native_type.as_deref()?,
            column.data_type
        ));
    }
    let key: Vec<String> = request.key.iter().map(|k| k.to_string()).collect();
    Some(format!(
        "{CHECKSUM_NAME};columns={};key={}",
        natives.join(","),
        key.join(",")
    ))
}

/// The statement that counts and checksums each part of `range` cut at `cuts` (one group per
/// part, numbered from 0), and its parameters.
pub(crate) fn checksum_sql(
    request: &ReadRequest,
    range: &KeyRange,
    cuts: &[Vec<Value>],
    default_db: &str,
) -> Result<(String, Vec<mysql_async::Value>)> {
    let columns: Vec<String> = request
        .columns
        .iter()
        .map(|c| quote_ident(c.name.as_str()))
        .collect();
    let mut params = Vec::new();
    let part = if cuts.is_empty() {
        "0".to_owned()
    } else {
        let mut case = String::from("CASE");
        let through = key_compare(request, false);
        for (i, cut) in cuts.iter().enumerate() {
            case.push_str(&format!(" WHEN {through} THEN {i}"));
            params.extend(range_params(
                request,
                &KeyRange {
                    after: None,
                    through: Some(cut.clone()),
                },
            )?);
        }
        case.push_str(&format!(" ELSE {} END", cuts.len()));
        case
    };
    let mut scoped = request.clone();
    scoped.key_range = Some(match &request.key_range {
        None => range.clone(),
        Some(_) => {
            return Err(ConnectorError::internal(
                "a checksum of a read that already has a key range",
            ));
        }
    });
    params.extend(where_params(&scoped)?);
    Ok((
        format!(
            "SELECT part, count(*), CAST(SUM(h) AS CHAR) FROM (SELECT {part} AS part, {} AS h \
             FROM {}{}) AS r GROUP BY part",
            row_hash_sql(&columns),
            quote_table(&request.table, default_db),
            where_clause(&scoped)?
        ),
        params,
    ))
}

/// Counts and checksums each part of `range` cut at `cuts`, in one statement.
pub(crate) async fn checksum_ranges(
    config: &MariadbConfig,
    request: &ReadRequest,
    range: &KeyRange,
    cuts: &[Vec<Value>],
) -> Result<Vec<RangeChecksum>> {
    let table = &request.table;
    let (sql, params) = checksum_sql(request, range, cuts, &config.database)?;
    let mut conn = connect(config).await?;
    run(
        &mut conn,
        CHECKSUM_SETTINGS,
        format!("begin the checksum of {table}"),
    )
    .await?;
    check_source(&mut conn, &config.database, table, &request.columns).await?;
    let rows: Vec<(i64, i64, Option<String>)> = conn
        .exec(sql, positional(params))
        .await
        .map_err(|e| mysql_error(e, format!("checksum the rows of {table}")))?;
    let mut out = vec![RangeChecksum::default(); cuts.len() + 1];
    for (part, count, sum) in rows {
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
    let _ = conn.disconnect().await;
    Ok(out)
}

fn positional(params: Vec<mysql_async::Value>) -> mysql_async::Params {
    if params.is_empty() {
        mysql_async::Params::Empty
    } else {
        mysql_async::Params::Positional(params)
    }
}

/// Keys that cut `range` into about `parts` parts: evenly between the least and greatest value of
/// a one-column integer key, else every n-th key in key order.
pub(crate) async fn split_range(
    config: &MariadbConfig,
    request: &ReadRequest,
    range: &KeyRange,
    parts: usize,
) -> Result<Vec<Vec<Value>>> {
    let table = &request.table;
    if parts < 2 {
        return Ok(Vec::new());
    }
    let mut scoped = request.clone();
    if scoped.key_range.is_some() {
        return Err(ConnectorError::internal(
            "a split of a read that already has a key range",
        ));
    }
    scoped.key_range = Some(range.clone());
    scoped.lower_bound = None;
    let from = format!(
        " FROM {}{}",
        quote_table(table, &config.database),
        where_clause(&scoped)?
    );
    let params = where_params(&scoped)?;
    let mut conn = connect(config).await?;
    check_source(&mut conn, &config.database, table, &request.columns).await?;
    if let [k] = request.key[..]
        && let ty @ (DataType::Int16 | DataType::Int32 | DataType::Int64) =
            request.columns[k].data_type
    {
        let c = quote_ident(request.columns[k].name.as_str());
        let row: Option<(Option<i64>, Option<i64>)> = conn
            .exec_first(
                format!("SELECT MIN({c}), MAX({c}){from}"),
                positional(params),
            )
            .await
            .map_err(|e| mysql_error(e, format!("find the key range of {table}")))?;
        let Some((Some(low), Some(high))) = row else {
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
                    DataType::Int16 => i16::try_from(cut).map(Value::Int16).ok(),
                    DataType::Int32 => i32::try_from(cut).map(Value::Int32).ok(),
                    _ => Some(Value::Int64(cut)),
                };
                value.map(|v| vec![v]).ok_or_else(|| {
                    ConnectorError::internal(format!("key cut {cut} out of its type's range"))
                })
            })
            .collect();
    }
    let names: Vec<String> = request
        .key
        .iter()
        .map(|&k| quote_ident(request.columns[k].name.as_str()))
        .collect();
    let order: Vec<String> = request
        .key
        .iter()
        .map(|&k| key_term(&request.columns[k]))
        .collect();
    let sql = format!(
        "SELECT {names} FROM (SELECT {names}, ROW_NUMBER() OVER (ORDER BY {order}) AS sluice_rn, \
         COUNT(*) OVER () AS sluice_n{from}) AS k \
         WHERE sluice_rn % GREATEST((sluice_n + {parts} - 1) DIV {parts}, 1) = 0 \
         AND sluice_rn < sluice_n ORDER BY sluice_rn",
        names = names.join(", "),
        order = order.join(", "),
    );
    let rows: Vec<mysql_async::Row> = conn
        .exec(sql, positional(params))
        .await
        .map_err(|e| mysql_error(e, format!("split the keys of {table}")))?;
    let _ = conn.disconnect().await;
    rows.into_iter()
        .map(|row| {
            row.unwrap_raw()
                .into_iter()
                .zip(&request.key)
                .map(|(raw, &k)| {
                    let column = &request.columns[k];
                    decode(raw.unwrap_or(mysql_async::Value::NULL), column.data_type).map_err(
                        |reason| {
                            ConnectorError::data(format!(
                                "table {table} column {}: key {reason}",
                                column.name
                            ))
                        },
                    )
                })
                .collect()
        })
        .collect()
}

/// The `SELECT` a read runs.
pub(crate) fn select_sql(request: &ReadRequest, default_db: &str) -> Result<String> {
    let columns: Vec<String> = request
        .columns
        .iter()
        .map(|c| quote_ident(c.name.as_str()))
        .collect();
    let mut sql = format!(
        "SELECT {} FROM {}{}",
        columns.join(", "),
        quote_table(&request.table, default_db),
        where_clause(request)?
    );
    if request.ordered && !request.key.is_empty() {
        let terms: Vec<(String, bool)> = request
            .key
            .iter()
            .flat_map(|&k| order_terms(&request.columns[k]))
            .collect();
        sql.push_str(&format!(" ORDER BY {}", render_terms(&terms, false)));
    }
    Ok(sql)
}

/// The statements of a read, in order.
pub(crate) fn plan(request: &ReadRequest, default_db: &str) -> Result<Vec<PlannedStatement>> {
    let mut out: Vec<PlannedStatement> = BEGIN_READ
        .iter()
        .map(|s| PlannedStatement::once(*s))
        .collect();
    out.push(PlannedStatement::once(select_sql(request, default_db)?));
    out.push(PlannedStatement::once("COMMIT"));
    Ok(out)
}

/// The lower bound as a statement parameter.
fn bound_param(
    bound: &LowerBound,
    column: &ColumnDef,
    table: &TableRef,
) -> Result<mysql_async::Value> {
    key_param(&bound.value, column, table)
}

/// A key value (a lower bound, a key range's end) as a statement parameter.
fn key_param(value: &Value, column: &ColumnDef, table: &TableRef) -> Result<mysql_async::Value> {
    use mysql_async::Value as M;
    let unsupported = || {
        ConnectorError::unsupported(format!(
            "table {table} column {}: a lower bound on a {} column is not supported",
            column.name, column.data_type
        ))
    };
    if matches!(
        column.data_type,
        DataType::Numeric | DataType::Decimal { .. }
    ) && stored_as_text(column)
    {
        return Err(unsupported());
    }
    let date = |d: chrono::NaiveDateTime| crate::types::to_param(crate::types::Field::DateTime(d));
    Ok(match value {
        Value::Null => {
            return Err(ConnectorError::data(format!(
                "table {table} column {}: a lower bound cannot be NULL",
                column.name
            )));
        }
        Value::Bool(b) => M::Int(i64::from(*b)),
        Value::Int16(v) => M::Int(i64::from(*v)),
        Value::Int32(v) => M::Int(i64::from(*v)),
        Value::Int64(v) => M::Int(*v),
        Value::Float32(v) => M::Double(f64::from(*v)),
        Value::Float64(v) => M::Double(*v),
        Value::Decimal(d) => M::Bytes(d.as_str().as_bytes().to_vec()),
        Value::Text(s) | Value::Json(s) => M::Bytes(s.as_bytes().to_vec()),
        Value::Bytes(b) => M::Bytes(b.clone()),
        Value::Date(d) => crate::types::to_param(crate::types::Field::Date(*d)),
        Value::Time(t) => crate::types::to_param(crate::types::Field::Time(*t)),
        Value::Timestamp(ts) => date(*ts),
        Value::TimestampTz(ts) => date(ts.naive_utc()),
        Value::Uuid(u) => M::Bytes(u.hyphenated().to_string().into_bytes()),
    })
}

/// Checks that the table and every requested column exist.
async fn check_source(
    conn: &mut Conn,
    default_db: &str,
    table: &TableRef,
    columns: &[ColumnDef],
) -> Result<()> {
    let info = table_info(conn, default_db, table)
        .await?
        .ok_or_else(|| ConnectorError::not_found(format!("table {table} does not exist")))?;
    for column in columns {
        if info.column(column.name.as_str()).is_none() {
            return Err(ConnectorError::schema(format!(
                "table {table} has no column {}",
                column.name
            )));
        }
    }
    Ok(())
}

async fn run(conn: &mut Conn, sql: &str, what: impl std::fmt::Display) -> Result<()> {
    conn.query_drop(sql).await.map_err(|e| mysql_error(e, what))
}

/// The connection a read runs on: its own (one transaction per read), or a connection holding a
/// shared snapshot (reads through it take turns).
enum Session {
    Own(Conn),
    Held(OwnedMutexGuard<Conn>),
}

impl std::ops::Deref for Session {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        match self {
            Session::Own(c) => c,
            Session::Held(c) => c,
        }
    }
}

impl std::ops::DerefMut for Session {
    fn deref_mut(&mut self) -> &mut Conn {
        match self {
            Session::Own(c) => c,
            Session::Held(c) => c,
        }
    }
}

/// Snapshots held open for shared reads, by id.
static HELD: LazyLock<std::sync::Mutex<HashMap<String, Arc<Mutex<Conn>>>>> =
    LazyLock::new(Default::default);

/// Numbers the held snapshots of this process.
static HELD_SEQ: AtomicU64 = AtomicU64::new(1);

/// A connection inside `START TRANSACTION WITH CONSISTENT SNAPSHOT`, registered so that reads
/// ([`read_shared`]) can be made in it by its id; dropping it ends the snapshot once no read
/// runs in it any more.
pub struct HeldSnapshot {
    id: String,
}

impl HeldSnapshot {
    /// Registers `conn`, which must be inside a consistent-snapshot transaction.
    pub(crate) fn hold(conn: Conn) -> Self {
        let id = format!(
            "mariadb-snapshot-{}-{}-{}",
            std::process::id(),
            HELD_SEQ.fetch_add(1, Ordering::Relaxed),
            conn.id()
        );
        if let Ok(mut held) = HELD.lock() {
            held.insert(id.clone(), Arc::new(Mutex::new(conn)));
        }
        HeldSnapshot { id }
    }
}

impl Drop for HeldSnapshot {
    fn drop(&mut self) {
        if let Ok(mut held) = HELD.lock() {
            held.remove(&self.id);
        }
    }
}

impl sluice_connector::SharedSnapshot for HeldSnapshot {
    fn id(&self) -> &str {
        &self.id
    }
}

/// Starts a read in the held snapshot `id` (after the reads before it in that snapshot ended).
pub(crate) async fn read_shared(
    config: MariadbConfig,
    request: ReadRequest,
    id: &str,
) -> Result<Snapshot> {
    let conn = HELD.lock().ok().and_then(|held| held.get(id).cloned());
    let Some(conn) = conn else {
        return Err(ConnectorError::internal(format!(
            "snapshot {id} is not held by this process (it ended or belongs to another location)"
        )));
    };
    let guard = conn.lock_owned().await;
    read_in(config, request, Session::Held(guard)).await
}

/// Starts a read. Setup errors (missing table or column, a refused connection) are returned here;
/// errors while reading end the stream.
pub(crate) async fn read(config: MariadbConfig, request: ReadRequest) -> Result<Snapshot> {
    let mut conn = connect(&config).await?;
    for sql in BEGIN_READ {
        run(
            &mut conn,
            sql,
            format!("begin the read of {}", request.table),
        )
        .await?;
    }
    read_in(config, request, Session::Own(conn)).await
}

async fn read_in(
    config: MariadbConfig,
    request: ReadRequest,
    mut conn: Session,
) -> Result<Snapshot> {
    let table = request.table.clone();
    check_source(&mut conn, &config.database, &table, &request.columns).await?;
    let params = where_params(&request)?;
    let sql = select_sql(&request, &config.database)?;
    let (tx, mut rx) = mpsc::channel::<Result<RowBatch>>(CHANNEL_BATCHES);
    tokio::spawn(async move {
        let id = conn.id();
        match stream_rows(&mut conn, &sql, params, &request, &tx).await {
            Ok(true) => {
                if let Session::Own(mut own) = conn {
                    let _ = own.query_drop("COMMIT").await;
                    let _ = own.disconnect().await;
                }
            }
            Ok(false) => {
                // The consumer stopped reading: stop the server sending the rest.
                if let Ok(mut side) = connect(&config).await {
                    let _ = side.query_drop(format!("KILL QUERY {id}")).await;
                    let _ = side.disconnect().await;
                }
                drop(conn);
            }
            Err(error) => {
                let _ = tx.send(Err(error)).await;
            }
        }
    });
    let batches = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed();
    Ok(Snapshot {
        batches,
        position: None,
    })
}

/// Streams the rows into batches; `Ok(false)` when the consumer went away first.
async fn stream_rows(
    conn: &mut Conn,
    sql: &str,
    params: Vec<mysql_async::Value>,
    request: &ReadRequest,
    out: &mpsc::Sender<Result<RowBatch>>,
) -> Result<bool> {
    let table = &request.table;
    let params = if params.is_empty() {
        mysql_async::Params::Empty
    } else {
        mysql_async::Params::Positional(params)
    };
    let mut result = conn
        .exec_iter(sql, params)
        .await
        .map_err(|e| mysql_error(e, format!("read {table}")))?;
    let width = request.columns.len();
    let types: Vec<DataType> = request.columns.iter().map(|c| c.data_type).collect();
    let mut batch = RowBatch::new(width, request.limits);
    let mut values: Vec<Value> = Vec::with_capacity(width);
    while let Some(row) = result
        .next()
        .await
        .map_err(|e| mysql_error(e, format!("read {table}")))?
    {
        let mut raw = row.unwrap_raw();
        values.clear();
        for (i, ty) in types.iter().enumerate() {
            let cell = raw
                .get_mut(i)
                .and_then(Option::take)
                .unwrap_or(mysql_async::Value::NULL);
            match decode(cell, *ty) {
                Ok(v) => values.push(v),
                Err(reason) => {
                    let key_values: Vec<Value> = (0..width)
                        .map(|k| {
                            if k < values.len() {
                                values[k].clone()
                            } else {
                                raw.get(k)
                                    .cloned()
                                    .flatten()
                                    .and_then(|r| decode(r, types[k]).ok())
                                    .unwrap_or(Value::Null)
                            }
                        })
                        .collect();
                    return Err(ConnectorError::data(format!(
                        "table {table} row {} column {}: value {reason}",
                        describe_key(&request.columns, &request.key, &key_values),
                        request.columns[i].name
                    )));
                }
            }
        }
        if batch.is_full() && out.send(Ok(batch.take())).await.is_err() {
            return Ok(false);
        }
        batch
            .push_row(values.drain(..))
            .map_err(|e| ConnectorError::internal(e.to_string()))?;
    }
    if !batch.is_empty() && out.send(Ok(batch)).await.is_err() {
        return Ok(false);
    }
    Ok(true)
}

/// `SELECT count(*)` with the filter.
pub(crate) async fn count_rows(
    conn: &mut Conn,
    default_db: &str,
    table: &TableRef,
    filter: Option<&Condition>,
) -> Result<u64> {
    let mut sql = format!("SELECT count(*) FROM {}", quote_table(table, default_db));
    if let Some(filter) = filter {
        sql.push_str(&format!(" WHERE ({})", filter_sql(filter)?));
    }
    // A prepared statement: one statement, whatever the filter holds.
    let n: Option<u64> = conn
        .exec_first(sql, ())
        .await
        .map_err(|e| mysql_error(e, format!("count rows of {table}")))?;
    Ok(n.unwrap_or(0))
}

/// The `SELECT` of [`max_value`]: the first non-NULL value in descending key order.
pub(crate) fn max_sql(
    table: &TableRef,
    default_db: &str,
    column: &ColumnDef,
    filter: Option<&Condition>,
) -> Result<String> {
    let c = quote_ident(column.name.as_str());
    let mut sql = format!(
        "SELECT {c} FROM {} WHERE {c} IS NOT NULL",
        quote_table(table, default_db)
    );
    if let Some(filter) = filter {
        sql.push_str(&format!(" AND ({})", filter_sql(filter)?));
    }
    sql.push_str(&format!(
        " ORDER BY {} LIMIT 1",
        render_terms(&order_terms(column), true)
    ));
    Ok(sql)
}

/// The greatest non-NULL value of `column`, as a value of its requested type.
pub(crate) async fn max_value(
    conn: &mut Conn,
    default_db: &str,
    table: &TableRef,
    column: &ColumnDef,
    filter: Option<&Condition>,
) -> Result<Option<Value>> {
    let sql = max_sql(table, default_db, column, filter)?;
    let row: Option<mysql_async::Row> = conn
        .exec_first(sql, ())
        .await
        .map_err(|e| mysql_error(e, format!("find the greatest {} of {table}", column.name)))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let raw = row
        .unwrap_raw()
        .into_iter()
        .next()
        .flatten()
        .unwrap_or(mysql_async::Value::NULL);
    decode(raw, column.data_type).map(Some).map_err(|reason| {
        ConnectorError::data(format!(
            "table {table} column {}: greatest value {reason}",
            column.name
        ))
    })
}
