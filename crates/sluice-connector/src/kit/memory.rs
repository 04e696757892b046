//! An in-memory connector: tables are vectors of rows behind a mutex. For engine tests, and the
//! kit's check of itself. It cannot evaluate SQL, so filters are `Unsupported`; it can be told to
//! fail after a number of written rows, to exercise failure paths.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sluice_model::definition::LocationClass;
use sluice_model::{ColumnDef, Condition, RowBatch, SchemaName, TableRef, TableSchema, Value};

use crate::{
    BatchWriter, Capabilities, Connector, ConnectorError, ErrorKind, Introspector,
    PlannedStatement, ReadRequest, Result, Snapshot, SnapshotReader, TableWriter, TestReport,
    WriteRequest, WriteStrategy, WriteSummary,
};

#[derive(Debug, Clone)]
struct MemTable {
    schema: TableSchema,
    rows: Vec<Vec<Value>>,
}

/// An in-memory database. Clones share the same tables.
#[derive(Debug, Clone, Default)]
pub struct MemoryConnector {
    tables: Arc<Mutex<BTreeMap<TableRef, MemTable>>>,
    fail_after_rows: Arc<AtomicU64>,
}

impl MemoryConnector {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every write fail once it has received more than `rows` rows (0 turns it off).
    pub fn fail_writes_after(&self, rows: u64) {
        self.fail_after_rows.store(rows, Ordering::SeqCst);
    }

    /// Creates or replaces a table with rows, bypassing the writer.
    pub fn put_table(&self, schema: TableSchema, rows: Vec<Vec<Value>>) {
        let table = schema.table.clone();
        self.lock().insert(table, MemTable { schema, rows });
    }

    /// The rows of a table, in stored order.
    pub fn rows(&self, table: &TableRef) -> Option<Vec<Vec<Value>>> {
        self.lock().get(table).map(|t| t.rows.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TableRef, MemTable>> {
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn no_filters(filter: Option<&Condition>) -> Result<()> {
    match filter {
        Some(_) => Err(ConnectorError::unsupported(
            "the memory connector cannot evaluate SQL conditions",
        )),
        None => Ok(()),
    }
}

fn missing(table: &TableRef) -> ConnectorError {
    ConnectorError::not_found(format!("table {table} does not exist"))
}

#[async_trait]
impl Connector for MemoryConnector {
    fn class(&self) -> LocationClass {
        // The memory connector stands in for the embedded default.
        LocationClass::Sqlite
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            introspect: true,
            snapshot: true,
            batch_write: true,
            staging_swap: true,
            upsert: true,
            capture: false,
            integrate: false,
            single_writer: false,
        }
    }

    async fn test(&self) -> Result<TestReport> {
        let mut report = TestReport::default();
        report
            .discovered_props
            .insert("Class_Flavor".into(), "memory".into());
        Ok(report)
    }

    fn introspector(&self) -> Option<&dyn Introspector> {
        Some(self)
    }

    fn snapshot_reader(&self) -> Option<&dyn SnapshotReader> {
        Some(self)
    }

    fn batch_writer(&self) -> Option<&dyn BatchWriter> {
        Some(self)
    }
}

#[async_trait]
impl Introspector for MemoryConnector {
    async fn list_tables(&self, schema: Option<&SchemaName>) -> Result<Vec<TableRef>> {
        Ok(self
            .lock()
            .keys()
            .filter(|t| t.schema.as_ref() == schema)
            .cloned()
            .collect())
    }

    async fn table_schema(&self, table: &TableRef) -> Result<Option<TableSchema>> {
        Ok(self.lock().get(table).map(|t| t.schema.clone()))
    }

    /// The default schema and every schema a stored table names.
    async fn list_schemas(&self) -> Result<Vec<SchemaName>> {
        let mut schemas: std::collections::BTreeSet<SchemaName> = self
            .lock()
            .keys()
            .filter_map(|t| t.schema.clone())
            .collect();
        schemas.extend(self.default_schema());
        Ok(schemas.into_iter().collect())
    }

    fn default_schema(&self) -> Option<SchemaName> {
        SchemaName::new("main").ok()
    }
}

#[async_trait]
impl SnapshotReader for MemoryConnector {
    fn plan_read(&self, request: &ReadRequest) -> Result<Vec<PlannedStatement>> {
        no_filters(request.filter.as_ref())?;
        Ok(vec![PlannedStatement::once(format!(
            "scan {}",
            request.table
        ))])
    }

    async fn read(&self, request: ReadRequest) -> Result<Snapshot> {
        no_filters(request.filter.as_ref())?;
        let (schema, rows) = {
            let tables = self.lock();
            let t = tables
                .get(&request.table)
                .ok_or_else(|| missing(&request.table))?;
            (t.schema.clone(), t.rows.clone())
        };
        let mut indexes = Vec::with_capacity(request.columns.len());
        for column in &request.columns {
            let i = schema.column_index(&column.name).ok_or_else(|| {
                ConnectorError::schema(format!(
                    "table {} has no column {}",
                    request.table, column.name
                ))
            })?;
            indexes.push(i);
        }
        let mut projected: Vec<Vec<Value>> = rows
            .into_iter()
            .map(|row| indexes.iter().map(|&i| row[i].clone()).collect())
            .collect();
        for row in &projected {
            for (value, column) in row.iter().zip(&request.columns) {
                if !value.conforms_to(column.data_type) {
                    return Err(ConnectorError::data(format!(
                        "table {} column {}: value is not a {}",
                        request.table, column.name, column.data_type
                    )));
                }
            }
        }
        if request.key_range.is_some() {
            return Err(ConnectorError::unsupported(
                "memory locations cannot read a key range",
            ));
        }
        if let Some(bound) = &request.lower_bound {
            projected.retain(|row| {
                let value = &row[bound.column];
                !value.is_null()
                    && match value.cmp_key(&bound.value) {
                        std::cmp::Ordering::Greater => true,
                        std::cmp::Ordering::Equal => bound.inclusive,
                        std::cmp::Ordering::Less => false,
                    }
            });
        }
        if request.ordered {
            let key = request.key.clone();
            projected.sort_by(|a, b| {
                key.iter()
                    .map(|&k| a[k].cmp_key(&b[k]))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        }
        let width = request.columns.len();
        let limits = request.limits;
        let mut batches = Vec::new();
        let mut batch = RowBatch::new(width, limits);
        for row in projected {
            if batch.is_full() {
                batches.push(Ok(batch.take()));
            }
            batch
                .push_row(row)
                .map_err(|e| ConnectorError::internal(e.to_string()))?;
        }
        if !batch.is_empty() {
            batches.push(Ok(batch));
        }
        Ok(Snapshot {
            batches: Box::pin(futures::stream::iter(batches)),
            position: None,
        })
    }

    async fn count_rows(&self, table: &TableRef, filter: Option<&Condition>) -> Result<u64> {
        no_filters(filter)?;
        let tables = self.lock();
        let t = tables.get(table).ok_or_else(|| missing(table))?;
        Ok(t.rows.len() as u64)
    }

    async fn max_value(
        &self,
        table: &TableRef,
        column: &ColumnDef,
        filter: Option<&Condition>,
    ) -> Result<Option<Value>> {
        no_filters(filter)?;
        let tables = self.lock();
        let t = tables.get(table).ok_or_else(|| missing(table))?;
        let i = t.schema.column_index(&column.name).ok_or_else(|| {
            ConnectorError::schema(format!("table {table} has no column {}", column.name))
        })?;
        Ok(t.rows
            .iter()
            .map(|row| &row[i])
            .filter(|v| !v.is_null())
            .max_by(|a, b| a.cmp_key(b))
            .cloned())
    }
}

fn check_columns(existing: &TableSchema, wanted: &[ColumnDef]) -> Result<()> {
    for column in wanted {
        if existing.column(&column.name).is_none() {
            return Err(ConnectorError::schema(format!(
                "target table {} has no column {}",
                existing.table, column.name
            )));
        }
    }
    Ok(())
}

#[async_trait]
impl BatchWriter for MemoryConnector {
    async fn plan_write(&self, request: &WriteRequest) -> Result<Vec<PlannedStatement>> {
        no_filters(request.filter.as_ref())?;
        let verb = match request.strategy {
            WriteStrategy::TruncateLoad => "replace",
            WriteStrategy::StagingSwap => "load staging and swap",
            WriteStrategy::Append => "append to",
            WriteStrategy::Upsert => "upsert into",
        };
        Ok(vec![PlannedStatement::once(format!(
            "{verb} {}",
            request.table
        ))])
    }

    async fn open(&self, request: WriteRequest) -> Result<Box<dyn TableWriter>> {
        no_filters(request.filter.as_ref())?;
        if let Some(existing) = self.lock().get(&request.table) {
            check_columns(&existing.schema, &request.columns)?;
        } else if !request.create_if_missing {
            return Err(missing(&request.table));
        }
        Ok(Box::new(MemoryWrite {
            db: self.clone(),
            request,
            ops: Vec::new(),
            rows: 0,
        }))
    }
}

enum Op {
    Put(Vec<Value>),
    Delete(Vec<Value>),
}

struct MemoryWrite {
    db: MemoryConnector,
    request: WriteRequest,
    ops: Vec<Op>,
    rows: u64,
}

#[async_trait]
impl TableWriter for MemoryWrite {
    async fn write_batch(&mut self, batch: RowBatch) -> Result<()> {
        self.rows += batch.len() as u64;
        self.ops
            .extend(batch.rows().map(|row| Op::Put(row.to_vec())));
        let limit = self.db.fail_after_rows.load(Ordering::SeqCst);
        if limit > 0 && self.rows > limit {
            return Err(ConnectorError::new(
                ErrorKind::Connection,
                format!("injected failure writing {}", self.request.table),
            ));
        }
        Ok(())
    }

    async fn delete_batch(&mut self, keys: RowBatch) -> Result<()> {
        if self.request.strategy != WriteStrategy::Upsert {
            return Err(ConnectorError::unsupported(
                "deleting rows needs the upsert strategy",
            ));
        }
        self.ops
            .extend(keys.rows().map(|row| Op::Delete(row.to_vec())));
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<WriteSummary> {
        let MemoryWrite {
            db,
            request,
            ops,
            rows: n,
        } = *self;
        let mut tables = db.lock();
        let created = !tables.contains_key(&request.table);
        let table = tables
            .entry(request.table.clone())
            .or_insert_with(|| MemTable {
                schema: TableSchema {
                    table: request.table.clone(),
                    columns: request.columns.clone(),
                    primary_key: request
                        .key
                        .iter()
                        .map(|&k| request.columns[k].name.clone())
                        .collect(),
                },
                rows: Vec::new(),
            });
        // Map the written columns onto the table's own column order.
        let positions: Vec<Option<usize>> = table
            .schema
            .columns
            .iter()
            .map(|c| request.columns.iter().position(|w| w.name == c.name))
            .collect();
        let store = |row: &[Value]| {
            positions
                .iter()
                .map(|p| p.map_or(Value::Null, |i| row[i].clone()))
                .collect::<Vec<_>>()
        };
        // Key columns as positions in the stored row.
        let key: Vec<usize> = request
            .key
            .iter()
            .filter_map(|&k| positions.iter().position(|p| *p == Some(k)))
            .collect();
        let same_key = |stored: &[Value], key_values: &[Value]| {
            key.iter()
                .zip(key_values)
                .all(|(&i, v)| stored[i].cmp_key(v).is_eq())
        };
        if matches!(
            request.strategy,
            WriteStrategy::TruncateLoad | WriteStrategy::StagingSwap
        ) {
            table.rows.clear();
        }
        for op in ops {
            match op {
                Op::Put(row) => {
                    let row = store(&row);
                    if request.strategy == WriteStrategy::Upsert {
                        let key_values: Vec<Value> = key.iter().map(|&i| row[i].clone()).collect();
                        table.rows.retain(|r| !same_key(r, &key_values));
                    }
                    table.rows.push(row);
                }
                Op::Delete(key_values) => table.rows.retain(|r| !same_key(r, &key_values)),
            }
        }
        Ok(WriteSummary { rows: n, created })
    }

    async fn rollback(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
