//! Tables, columns and primary keys from information_schema.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use sluice_connector::{ConnectorError, Result};
use sluice_model::{BaseName, ColumnDef, ColumnName, SchemaName, TableRef, TableSchema};

use crate::error::mysql_error;
use crate::types::{Codec, NativeColumn, database_of};

/// The databases the user has a privilege on (MariaDB shows no others), without the server's
/// own catalogs.
pub(crate) async fn list_schemas(conn: &mut Conn) -> Result<Vec<SchemaName>> {
    let names: Vec<String> = conn
        .query(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA \
             WHERE SCHEMA_NAME NOT IN ('information_schema', 'performance_schema', 'mysql', 'sys') \
             ORDER BY SCHEMA_NAME",
        )
        .await
        .map_err(|e| mysql_error(e, format_args!("list the databases")))?;
    // Names sluice cannot carry are left out of discovery.
    Ok(names
        .into_iter()
        .filter_map(|n| SchemaName::new(n).ok())
        .collect())
}

/// What information_schema says about a table.
#[derive(Debug, Clone)]
pub(crate) struct TableInfo {
    /// `BASE TABLE`, `VIEW`, …
    pub table_type: String,
    /// `TABLE_COMMENT`.
    pub comment: String,
    /// Columns in order.
    pub columns: Vec<NativeColumn>,
}

impl TableInfo {
    /// The column called `name` (MariaDB column names compare case-insensitively).
    pub fn column(&self, name: &str) -> Option<&NativeColumn> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Primary key column names in key order.
    pub fn primary_key(&self) -> Vec<&str> {
        let mut key: Vec<(u32, &str)> = self
            .columns
            .iter()
            .filter_map(|c| c.key_position.map(|p| (p, c.name.as_str())))
            .collect();
        key.sort();
        key.into_iter().map(|(_, n)| n).collect()
    }
}

fn text(v: Option<mysql_async::Value>) -> Option<String> {
    match v? {
        mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        mysql_async::Value::NULL => None,
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

fn number(v: Option<mysql_async::Value>) -> Option<u64> {
    match v? {
        mysql_async::Value::Int(i) => u64::try_from(i).ok(),
        mysql_async::Value::UInt(u) => Some(u),
        mysql_async::Value::Bytes(b) => std::str::from_utf8(&b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

const TABLE_SQL: &str = "SELECT TABLE_TYPE, TABLE_COMMENT FROM information_schema.TABLES \
     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?";

const COLUMNS_SQL: &str = "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.IS_NULLABLE, \
     c.CHARACTER_MAXIMUM_LENGTH, c.CHARACTER_OCTET_LENGTH, c.NUMERIC_PRECISION, c.NUMERIC_SCALE, \
     c.CHARACTER_SET_NAME, c.COLUMN_COMMENT, c.IS_GENERATED, c.COLUMN_DEFAULT, c.EXTRA, \
     (SELECT k.ORDINAL_POSITION FROM information_schema.KEY_COLUMN_USAGE k \
       WHERE k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME \
       AND k.CONSTRAINT_NAME = 'PRIMARY' AND k.COLUMN_NAME = c.COLUMN_NAME) AS KEY_POSITION, \
     EXISTS (SELECT 1 FROM information_schema.CHECK_CONSTRAINTS cc \
       WHERE cc.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA AND cc.TABLE_NAME = c.TABLE_NAME \
       AND cc.CHECK_CLAUSE = CONCAT('json_valid(`', REPLACE(c.COLUMN_NAME, '`', '``'), '`)')) AS IS_JSON \
     FROM information_schema.COLUMNS c WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? \
     ORDER BY c.ORDINAL_POSITION";

/// The table's catalog entry and columns; `None` when it does not exist.
pub(crate) async fn table_info(
    conn: &mut Conn,
    default_db: &str,
    table: &TableRef,
) -> Result<Option<TableInfo>> {
    let db = database_of(table, default_db);
    let name = table.name.as_str();
    let what = || format!("look up table {table}");
    let found: Option<(Option<String>, Option<String>)> = conn
        .exec_first(TABLE_SQL, (db, name))
        .await
        .map_err(|e| mysql_error(e, what()))?;
    let Some((table_type, comment)) = found else {
        return Ok(None);
    };
    let rows: Vec<mysql_async::Row> = conn
        .exec(COLUMNS_SQL, (db, name))
        .await
        .map_err(|e| mysql_error(e, what()))?;
    let mut columns = Vec::with_capacity(rows.len());
    for row in rows {
        let mut v: Vec<Option<mysql_async::Value>> = row.unwrap_raw();
        let mut take = |i: usize| v.get_mut(i).and_then(Option::take);
        let nullable = text(take(3)).as_deref() == Some("YES");
        let mut column = NativeColumn {
            name: text(take(0)).unwrap_or_default(),
            data_type: text(take(1)).unwrap_or_default().to_ascii_lowercase(),
            column_type: text(take(2)).unwrap_or_default().to_ascii_lowercase(),
            nullable,
            max_chars: number(take(4)),
            max_bytes: number(take(5)),
            precision: number(take(6)),
            scale: number(take(7)),
            charset: text(take(8)),
            comment: text(take(9)).unwrap_or_default(),
            ..NativeColumn::default()
        };
        let generated = text(take(10)).is_some_and(|g| g != "NEVER");
        let has_default = text(take(11)).is_some();
        let extra = text(take(12)).unwrap_or_default().to_ascii_lowercase();
        column.generated = generated;
        column.optional = nullable || has_default || generated || extra.contains("auto_increment");
        column.key_position = number(take(13)).map(|p| p as u32);
        column.is_json = number(take(14)) == Some(1);
        columns.push(column);
    }
    Ok(Some(TableInfo {
        table_type: table_type.unwrap_or_default(),
        comment: comment.unwrap_or_default(),
        columns,
    }))
}

/// The sluice type of one column, or a `Schema` error naming table, column and native type.
pub(crate) fn codec_of(table: &TableRef, column: &NativeColumn) -> Result<Codec> {
    column.codec().map_err(|reason| {
        ConnectorError::schema(format!(
            "table {table} column {} ({}): {reason}",
            column.name, column.column_type
        ))
    })
}

/// Columns and primary key of `table`; `None` when it does not exist.
pub(crate) async fn table_schema(
    conn: &mut Conn,
    default_db: &str,
    table: &TableRef,
) -> Result<Option<TableSchema>> {
    let Some(info) = table_info(conn, default_db, table).await? else {
        return Ok(None);
    };
    let name = |n: &str| {
        ColumnName::new(n).map_err(|e| ConnectorError::schema(format!("table {table}: {e}")))
    };
    let mut columns = Vec::with_capacity(info.columns.len());
    for column in &info.columns {
        let codec = codec_of(table, column)?;
        columns.push(ColumnDef {
            name: name(&column.name)?,
            data_type: codec.data_type,
            nullable: column.nullable,
            native_type: Some(column.column_type.clone()),
        });
    }
    let primary_key = info
        .primary_key()
        .into_iter()
        .map(name)
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(TableSchema {
        table: table.clone(),
        columns,
        primary_key,
    }))
}

/// Base tables of `schema` (default: the location's database), sorted by name.
pub(crate) async fn list_tables(
    conn: &mut Conn,
    default_db: &str,
    schema: Option<&SchemaName>,
) -> Result<Vec<TableRef>> {
    let db = schema.map_or(default_db, |s| s.as_str());
    let names: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
            (db,),
        )
        .await
        .map_err(|e| mysql_error(e, format_args!("list tables of database {db}")))?;
    Ok(names
        .into_iter()
        // Names sluice cannot carry are left out of discovery.
        .filter_map(|n| BaseName::new(n).ok())
        .map(|name| TableRef {
            schema: schema.cloned(),
            name,
        })
        .collect())
}
