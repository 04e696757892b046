//! A connector whose errors never repeat a resolved secret.
//!
//! A location's properties are resolved (`${VAR}` references looked up, sealed passwords opened)
//! only at the moment a connector is made. A driver may repeat a property in an error (a file path,
//! a host, a user name), and errors travel to API answers, events, logs and the event hub. So the
//! connector made from resolved properties is wrapped: every error any of its capabilities returns,
//! its whole source chain included, has each resolved value replaced by the reference it came from
//! (`${VAR}`) or by `***` for a stored password.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use sluice_connector::{
    BatchWriter, Capabilities, Connector, ConnectorError, Introspector, PlannedStatement,
    RawSnapshot, ReadRequest, Result, Snapshot, SnapshotReader, TableWriter, TestReport,
    WriteRequest, WriteSummary,
};
use sluice_model::definition::LocationClass;
use sluice_model::{ColumnDef, Condition, RowBatch, SchemaName, TableRef, TableSchema, Value};

use crate::policy::Redactor;

/// `inner`, with every error redacted by `redactor` (returned as is when there is nothing to hide).
pub(crate) fn wrap(inner: Arc<dyn Connector>, redactor: Redactor) -> Arc<dyn Connector> {
    if redactor.is_empty() {
        return inner;
    }
    Arc::new(Redacting {
        inner,
        redactor: Arc::new(redactor),
    })
}

struct Redacting {
    inner: Arc<dyn Connector>,
    redactor: Arc<Redactor>,
}

fn clean(redactor: &Redactor, error: ConnectorError) -> ConnectorError {
    error.redacted(&|text: &str| redactor.redact(text))
}

impl Redacting {
    fn fix<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| clean(&self.redactor, e))
    }
}

#[async_trait]
impl Connector for Redacting {
    fn class(&self) -> LocationClass {
        self.inner.class()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn test(&self) -> Result<TestReport> {
        let report = self.fix(self.inner.test().await)?;
        Ok(TestReport {
            discovered_props: report
                .discovered_props
                .into_iter()
                .map(|(k, v)| (k, self.redactor.redact(&v)))
                .collect(),
        })
    }

    fn introspector(&self) -> Option<&dyn Introspector> {
        self.inner.introspector().map(|_| self as &dyn Introspector)
    }

    fn snapshot_reader(&self) -> Option<&dyn SnapshotReader> {
        self.inner
            .snapshot_reader()
            .map(|_| self as &dyn SnapshotReader)
    }

    fn batch_writer(&self) -> Option<&dyn BatchWriter> {
        self.inner.batch_writer().map(|_| self as &dyn BatchWriter)
    }
}

impl Redacting {
    fn introspect(&self) -> Result<&dyn Introspector> {
        self.inner
            .introspector()
            .ok_or_else(|| ConnectorError::unsupported("this location has no introspection"))
    }

    fn reader(&self) -> Result<&dyn SnapshotReader> {
        self.inner
            .snapshot_reader()
            .ok_or_else(|| ConnectorError::unsupported("this location cannot be read"))
    }

    fn writer(&self) -> Result<&dyn BatchWriter> {
        self.inner
            .batch_writer()
            .ok_or_else(|| ConnectorError::unsupported("this location cannot be written"))
    }
}

#[async_trait]
impl Introspector for Redacting {
    async fn list_tables(&self, schema: Option<&SchemaName>) -> Result<Vec<TableRef>> {
        self.fix(self.introspect()?.list_tables(schema).await)
    }

    async fn table_schema(&self, table: &TableRef) -> Result<Option<TableSchema>> {
        self.fix(self.introspect()?.table_schema(table).await)
    }

    async fn list_schemas(&self) -> Result<Vec<SchemaName>> {
        self.fix(self.introspect()?.list_schemas().await)
    }

    fn default_schema(&self) -> Option<SchemaName> {
        self.inner.introspector().and_then(|i| i.default_schema())
    }
}

#[async_trait]
impl SnapshotReader for Redacting {
    fn plan_read(&self, request: &ReadRequest) -> Result<Vec<PlannedStatement>> {
        self.fix(self.reader()?.plan_read(request))
    }

    async fn read(&self, request: ReadRequest) -> Result<Snapshot> {
        let snapshot = self.fix(self.reader()?.read(request).await)?;
        let redactor = self.redactor.clone();
        Ok(Snapshot {
            batches: snapshot
                .batches
                .map(move |r| r.map_err(|e| clean(&redactor, e)))
                .boxed(),
            position: snapshot.position,
        })
    }

    async fn count_rows(&self, table: &TableRef, filter: Option<&Condition>) -> Result<u64> {
        self.fix(self.reader()?.count_rows(table, filter).await)
    }

    async fn max_value(
        &self,
        table: &TableRef,
        column: &ColumnDef,
        filter: Option<&Condition>,
    ) -> Result<Option<Value>> {
        self.fix(self.reader()?.max_value(table, column, filter).await)
    }

    fn raw_format(&self, request: &ReadRequest) -> Option<String> {
        self.inner
            .snapshot_reader()
            .and_then(|r| r.raw_format(request))
    }

    async fn read_raw(&self, request: ReadRequest) -> Result<RawSnapshot> {
        let raw = self.fix(self.reader()?.read_raw(request).await)?;
        let redactor = self.redactor.clone();
        Ok(RawSnapshot {
            chunks: raw
                .chunks
                .map(move |r| r.map_err(|e| clean(&redactor, e)))
                .boxed(),
        })
    }
}

#[async_trait]
impl BatchWriter for Redacting {
    async fn plan_write(&self, request: &WriteRequest) -> Result<Vec<PlannedStatement>> {
        self.fix(self.writer()?.plan_write(request).await)
    }

    async fn open(&self, request: WriteRequest) -> Result<Box<dyn TableWriter>> {
        let inner = self.fix(self.writer()?.open(request).await)?;
        Ok(Box::new(RedactingWriter {
            inner,
            redactor: self.redactor.clone(),
        }))
    }
}

struct RedactingWriter {
    inner: Box<dyn TableWriter>,
    redactor: Arc<Redactor>,
}

impl RedactingWriter {
    fn fix<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| clean(&self.redactor, e))
    }
}

#[async_trait]
impl TableWriter for RedactingWriter {
    async fn write_batch(&mut self, batch: RowBatch) -> Result<()> {
        let r = self.inner.write_batch(batch).await;
        self.fix(r)
    }

    async fn delete_batch(&mut self, keys: RowBatch) -> Result<()> {
        let r = self.inner.delete_batch(keys).await;
        self.fix(r)
    }

    fn raw_format(&self) -> Option<String> {
        self.inner.raw_format()
    }

    async fn write_raw(&mut self, chunk: Bytes) -> Result<()> {
        let r = self.inner.write_raw(chunk).await;
        self.fix(r)
    }

    async fn commit(self: Box<Self>) -> Result<WriteSummary> {
        let redactor = self.redactor.clone();
        self.inner.commit().await.map_err(|e| clean(&redactor, e))
    }

    async fn rollback(self: Box<Self>) -> Result<()> {
        let redactor = self.redactor.clone();
        self.inner.rollback().await.map_err(|e| clean(&redactor, e))
    }
}
