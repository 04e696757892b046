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
    ApplySummary, BatchWriter, Capabilities, CaptureLag, CaptureRequest, CaptureStart,
    ChangeApplier, ChangeReader, ChangeStream, ChangeWriter, Connector, ConnectorError,
    IntegrateBatch, IntegrateRequest, Introspector, PlannedStatement, RawSnapshot, ReadRequest,
    Result, SharedSnapshot, Snapshot, SnapshotReader, TableWriter, TestReport, WriteRequest,
    WriteSummary,
};
use sluice_model::definition::LocationClass;
use sluice_model::{
    CaptureMessage, Checkpoint, ColumnDef, Condition, Position, RowBatch, SchemaName, TableRef,
    TableSchema, Value,
};

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

    fn change_reader(&self) -> Option<&dyn ChangeReader> {
        self.inner
            .change_reader()
            .map(|_| self as &dyn ChangeReader)
    }

    fn change_writer(&self) -> Option<&dyn ChangeWriter> {
        self.inner
            .change_writer()
            .map(|_| self as &dyn ChangeWriter)
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

    fn capture(&self) -> Result<&dyn ChangeReader> {
        self.inner
            .change_reader()
            .ok_or_else(|| ConnectorError::unsupported("this location cannot capture changes"))
    }

    fn integrate(&self) -> Result<&dyn ChangeWriter> {
        self.inner
            .change_writer()
            .ok_or_else(|| ConnectorError::unsupported("this location cannot integrate changes"))
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

    async fn share_snapshot(&self) -> Result<Option<Box<dyn SharedSnapshot>>> {
        self.fix(self.reader()?.share_snapshot().await)
    }

    async fn read_shared(
        &self,
        request: ReadRequest,
        snapshot: &dyn SharedSnapshot,
    ) -> Result<Snapshot> {
        let snapshot = self.fix(self.reader()?.read_shared(request, snapshot).await)?;
        let redactor = self.redactor.clone();
        Ok(Snapshot {
            batches: snapshot
                .batches
                .map(move |r| r.map_err(|e| clean(&redactor, e)))
                .boxed(),
            position: snapshot.position,
        })
    }
}

#[async_trait]
impl ChangeReader for Redacting {
    async fn check_capture(&self, request: &CaptureRequest) -> Result<()> {
        self.fix(self.capture()?.check_capture(request).await)
    }

    async fn create_capture(&self, request: &CaptureRequest) -> Result<CaptureStart> {
        self.fix(self.capture()?.create_capture(request).await)
    }

    async fn drop_capture(&self, name: &str) -> Result<()> {
        self.fix(self.capture()?.drop_capture(name).await)
    }

    async fn capture_exists(&self, name: &str) -> Result<bool> {
        self.fix(self.capture()?.capture_exists(name).await)
    }

    async fn open_capture(&self, request: &CaptureRequest) -> Result<Box<dyn ChangeStream>> {
        let inner = self.fix(self.capture()?.open_capture(request).await)?;
        Ok(Box::new(RedactingStream {
            inner,
            redactor: self.redactor.clone(),
        }))
    }

    async fn capture_lag(&self, name: &str) -> Result<Option<CaptureLag>> {
        self.fix(self.capture()?.capture_lag(name).await)
    }

    async fn current_position(&self) -> Result<Position> {
        self.fix(self.capture()?.current_position().await)
    }
}

struct RedactingStream {
    inner: Box<dyn ChangeStream>,
    redactor: Arc<Redactor>,
}

#[async_trait]
impl ChangeStream for RedactingStream {
    async fn next(&mut self) -> Result<CaptureMessage> {
        let r = self.inner.next().await;
        r.map_err(|e| clean(&self.redactor, e))
    }

    fn ack(&mut self, position: &Position) -> Result<()> {
        let r = self.inner.ack(position);
        r.map_err(|e| clean(&self.redactor, e))
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let redactor = self.redactor.clone();
        self.inner.close().await.map_err(|e| clean(&redactor, e))
    }
}

#[async_trait]
impl ChangeWriter for Redacting {
    async fn open_integrate(&self, request: IntegrateRequest) -> Result<Box<dyn ChangeApplier>> {
        let inner = self.fix(self.integrate()?.open_integrate(request).await)?;
        Ok(Box::new(RedactingApplier {
            inner,
            redactor: self.redactor.clone(),
        }))
    }

    async fn read_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>> {
        self.fix(self.integrate()?.read_checkpoint(name).await)
    }

    async fn drop_integrate(&self, name: &str) -> Result<()> {
        self.fix(self.integrate()?.drop_integrate(name).await)
    }
}

struct RedactingApplier {
    inner: Box<dyn ChangeApplier>,
    redactor: Arc<Redactor>,
}

#[async_trait]
impl ChangeApplier for RedactingApplier {
    fn checkpoint(&self) -> Option<&Checkpoint> {
        self.inner.checkpoint()
    }

    async fn apply(&mut self, batch: &IntegrateBatch) -> Result<ApplySummary> {
        let r = self.inner.apply(batch).await;
        r.map_err(|e| clean(&self.redactor, e))
    }

    async fn add_column(&mut self, table: usize, column: ColumnDef) -> Result<()> {
        let r = self.inner.add_column(table, column).await;
        r.map_err(|e| clean(&self.redactor, e))
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
