//! The physical shape of a table at a location, as introspected or as to be created.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::data_type::DataType;
use crate::name::{BaseName, ColumnName, SchemaName};

/// A table in a database: optional schema and the table's own name there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableRef {
    /// The schema, or `None` for the connection's default.
    pub schema: Option<SchemaName>,
    /// The table's name in its database.
    pub name: BaseName,
}

impl TableRef {
    /// A table in the default schema.
    pub fn new(name: BaseName) -> Self {
        TableRef { schema: None, name }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Column name.
    pub name: ColumnName,
    /// Engine-neutral type.
    pub data_type: DataType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// The type as the database declares it, when introspected (e.g. `NUMERIC(12,2)`).
    pub native_type: Option<String>,
}

impl ColumnDef {
    /// A column with no native type recorded.
    pub fn new(name: ColumnName, data_type: DataType, nullable: bool) -> Self {
        ColumnDef {
            name,
            data_type,
            nullable,
            native_type: None,
        }
    }
}

/// Names a row by its key for messages: `(id=5, line=2)`. `key` indexes `columns` and `row`.
pub fn describe_key(columns: &[ColumnDef], key: &[usize], row: &[crate::Value]) -> String {
    let parts: Vec<String> = key
        .iter()
        .map(|&k| {
            format!(
                "{}={}",
                columns[k].name,
                row.get(k).unwrap_or(&crate::Value::Null)
            )
        })
        .collect();
    format!("({})", parts.join(", "))
}

/// A table's columns (in order) and primary key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// Which table.
    pub table: TableRef,
    /// Columns in their database order.
    pub columns: Vec<ColumnDef>,
    /// Primary key columns in key order; empty when the table has none.
    pub primary_key: Vec<ColumnName>,
}

impl TableSchema {
    /// The column called `name`.
    pub fn column(&self, name: &ColumnName) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| &c.name == name)
    }

    /// Position of the column called `name`.
    pub fn column_index(&self, name: &ColumnName) -> Option<usize> {
        self.columns.iter().position(|c| &c.name == name)
    }
}
