//! Tables, columns and primary keys from SQLite's catalog.

use rusqlite::{Connection, OptionalExtension};
use sluice_connector::Result;
use sluice_model::{BaseName, ColumnDef, ColumnName, DataType, SchemaName, TableRef, TableSchema};

use crate::error::sqlite_error;
use crate::types::{Storage, data_type_of, quote_ident, quote_schema, storage_of};

/// A column's type: its declared type when sluice knows it, otherwise what SQLite's affinity rule
/// makes of it (which is how SQLite stores its values).
fn column_type(declared: &str) -> DataType {
    data_type_of(declared).unwrap_or_else(|| {
        let upper = declared.to_ascii_uppercase();
        match storage_of(declared) {
            Storage::Text => DataType::Text,
            Storage::Any => DataType::Bytes,
            Storage::Number if upper.contains("INT") => DataType::Int64,
            Storage::Number if ["REAL", "FLOA", "DOUB"].iter().any(|s| upper.contains(s)) => {
                DataType::Float64
            }
            Storage::Number => DataType::Numeric,
        }
    })
}

/// The table's `CREATE TABLE` text, when it exists.
pub(crate) fn create_sql(conn: &Connection, table: &TableRef) -> Result<Option<String>> {
    let sql = format!(
        "SELECT sql FROM {}.sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
        quote_schema(table)
    );
    conn.query_row(&sql, [table.name.as_str()], |row| {
        row.get::<_, Option<String>>(0)
    })
    .optional()
    .map(Option::flatten)
    .map_err(|e| sqlite_error(e, format_args!("look up table {table}")))
}

/// `CREATE INDEX` and `CREATE TRIGGER` statements of the table (not the automatic indexes of its
/// constraints, which come back with the table itself).
pub(crate) fn dependent_sql(conn: &Connection, table: &TableRef) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT sql FROM {}.sqlite_master WHERE tbl_name = ?1 COLLATE NOCASE \
         AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, name",
        quote_schema(table)
    );
    let mut stmt = conn
        .prepare(&sql)
        .map_err(|e| sqlite_error(e, "read the catalog"))?;
    let rows = stmt
        .query_map([table.name.as_str()], |row| row.get::<_, String>(0))
        .map_err(|e| sqlite_error(e, "read the catalog"))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(|e| sqlite_error(e, "read the catalog"))
}

/// Columns and primary key of `table`; `None` when it does not exist.
pub(crate) fn table_schema(conn: &Connection, table: &TableRef) -> Result<Option<TableSchema>> {
    if create_sql(conn, table)?.is_none() {
        return Ok(None);
    }
    let sql =
        "SELECT name, type, \"notnull\", pk, hidden FROM pragma_table_xinfo(?1, ?2) ORDER BY cid";
    let schema = table.schema.as_ref().map_or("main", |s| s.as_str());
    let mut stmt = conn
        .prepare(sql)
        .map_err(|e| sqlite_error(e, "read the catalog"))?;
    let rows = stmt
        .query_map([table.name.as_str(), schema], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<String>>(1)?.unwrap_or_default(),
                row.get::<_, bool>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })
        .map_err(|e| sqlite_error(e, format_args!("describe table {table}")))?;
    let mut columns = Vec::new();
    let mut key: Vec<(i64, ColumnName)> = Vec::new();
    for row in rows {
        let (name, declared, not_null, pk, hidden) =
            row.map_err(|e| sqlite_error(e, format_args!("describe table {table}")))?;
        if hidden == 1 {
            continue; // a hidden column of a virtual table
        }
        let name = ColumnName::new(name)
            .map_err(|e| sluice_connector::ConnectorError::schema(format!("table {table}: {e}")))?;
        if pk > 0 {
            key.push((pk, name.clone()));
        }
        columns.push(ColumnDef {
            name,
            data_type: column_type(&declared),
            // A primary key column is NOT NULL in spirit even where SQLite's legacy rules allow NULL.
            nullable: !not_null && pk == 0,
            native_type: Some(declared),
        });
    }
    key.sort();
    Ok(Some(TableSchema {
        table: table.clone(),
        columns,
        primary_key: key.into_iter().map(|(_, name)| name).collect(),
    }))
}

/// Tables in `schema` (default `main`), sorted by name, without SQLite's own tables.
/// The connection's databases (`main` and any attached one), without the temporary one.
pub(crate) fn list_schemas(conn: &Connection) -> Result<Vec<SchemaName>> {
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_database_list WHERE name <> 'temp' ORDER BY name")
        .map_err(|e| sqlite_error(e, "list databases"))?;
    let names = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(|e| sqlite_error(e, "list databases"))?;
    let mut schemas = Vec::new();
    for name in names {
        if let Ok(schema) = SchemaName::new(name.map_err(|e| sqlite_error(e, "list databases"))?) {
            schemas.push(schema);
        }
    }
    Ok(schemas)
}

pub(crate) fn list_tables(conn: &Connection, schema: Option<&SchemaName>) -> Result<Vec<TableRef>> {
    let sql = format!(
        "SELECT name FROM {}.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        quote_ident(schema.map_or("main", |s| s.as_str()))
    );
    let mut stmt = conn
        .prepare(&sql)
        .map_err(|e| sqlite_error(e, "list tables"))?;
    let names = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(|e| sqlite_error(e, "list tables"))?;
    let mut tables = Vec::new();
    for name in names {
        let name = name.map_err(|e| sqlite_error(e, "list tables"))?;
        // Names sluice cannot carry (control characters) are left out of discovery.
        if let Ok(base) = BaseName::new(name) {
            tables.push(TableRef {
                schema: schema.cloned(),
                name: base,
            });
        }
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_declared_types_follow_affinity() {
        assert_eq!(column_type("GEOMETRY"), DataType::Numeric);
        assert_eq!(column_type("POINT"), DataType::Int64);
        assert_eq!(column_type("LONGTEXT"), DataType::Text);
        assert_eq!(column_type("DOUBLE DOUBLE"), DataType::Float64);
        assert_eq!(
            column_type("DECIMAL(12,2)"),
            DataType::Decimal {
                precision: 12,
                scale: 2
            }
        );
    }
}
