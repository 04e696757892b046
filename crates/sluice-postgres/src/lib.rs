//! The PostgreSQL connector (Class `postgresql`): introspection from `pg_catalog`, snapshot reads
//! and atomic batch writes through binary COPY, over tokio-postgres (TLS by rustls with ring).
//!
//! Every operation opens its own connection, lazily; nothing is held between operations. Rows travel
//! in PostgreSQL's binary COPY format both ways, parsed and encoded by sluice's own codec
//! ([`copy`]), and PostgreSQL-to-PostgreSQL copies can skip decoding altogether: the reader's
//! [`raw_format`](SnapshotReader::raw_format) names the column types, and a writer whose target has
//! the same types forwards the COPY bytes untouched. See [`types`] for the type table and `write.rs`
//! for how each strategy stays atomic.
#![deny(missing_docs)]

mod capture;
pub mod config;
mod connect;
pub mod copy;
mod error;
mod integrate;
mod introspect;
mod pgoutput;
mod snapshot;
pub mod types;
mod write;

use async_trait::async_trait;
use sluice_connector::{
    BatchWriter, Capabilities, CaptureLag, CaptureRequest, CaptureStart, ChangeReader,
    ChangeStream, ChangeWriter, Connector, ConnectorError, Introspector, KeyRange,
    PlannedStatement, RangeChecksum, RawSnapshot, ReadRequest, Result, SharedSnapshot, Snapshot,
    SnapshotReader, TableWriter, TestReport, WriteRequest,
};
use sluice_model::definition::LocationClass;
use sluice_model::{ColumnDef, Condition, Position, SchemaName, TableRef, TableSchema, Value};

pub use capture::{CaptureOptions, HEARTBEAT_PREFIX, PgChangeStream, SlotSnapshot};
pub use config::{PROPERTIES, PostgresConfig, SslMode};
pub use connect::APPLICATION_NAME;

use crate::error::pg_error;

/// A connector to one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresConnector {
    config: PostgresConfig,
}

impl PostgresConnector {
    /// A connector for `config`. Connects nothing until used.
    pub fn new(config: PostgresConfig) -> Self {
        PostgresConnector { config }
    }

    /// The configuration.
    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }
}

#[async_trait]
impl Connector for PostgresConnector {
    fn class(&self) -> LocationClass {
        LocationClass::Postgresql
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            introspect: true,
            snapshot: true,
            batch_write: true,
            staging_swap: true,
            upsert: true,
            capture: true,
            integrate: true,
            single_writer: false,
        }
    }

    /// Connects and asks for the server version (`Class_Version`, e.g. `15.4`), the full version
    /// string (`Server_Version`), whether the default schema exists (`Schema_Exists`) and which
    /// flavour of PostgreSQL serves it (`Class_Flavor`: `aurora`, `rds`, `cloudsql`, `azure`, or
    /// `vanilla`, told apart by the functions and roles each managed service installs).
    async fn test(&self) -> Result<TestReport> {
        let client = connect::connect(&self.config).await?;
        let row = client
            .query_one(
                "SELECT version(), current_setting('server_version'), \
                 EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1), \
                 CASE \
                   WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE proname = 'aurora_version') \
                     THEN 'aurora' \
                   WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'rds_superuser') \
                     THEN 'rds' \
                   WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'cloudsqlsuperuser') \
                     THEN 'cloudsql' \
                   WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'azure_pg_admin') \
                     THEN 'azure' \
                   ELSE 'vanilla' END",
                &[&self.config.schema.as_str()],
            )
            .await
            .map_err(|e| pg_error(e, format_args!("query {}", self.config.describe())))?;
        let mut report = TestReport::default();
        let props = &mut report.discovered_props;
        props.insert("Class_Version".into(), row.get::<_, String>(1));
        props.insert("Server_Version".into(), row.get::<_, String>(0));
        props.insert("Schema_Exists".into(), row.get::<_, bool>(2).to_string());
        props.insert("Class_Flavor".into(), row.get::<_, String>(3));
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

    fn change_writer(&self) -> Option<&dyn ChangeWriter> {
        Some(self)
    }

    fn change_reader(&self) -> Option<&dyn ChangeReader> {
        Some(self)
    }
}

impl PostgresConnector {
    /// [`ChangeReader::open_capture`] with the stream's part sizes, heartbeat and idle intervals
    /// chosen by the caller.
    pub async fn open_capture_with(
        &self,
        request: &CaptureRequest,
        options: CaptureOptions,
    ) -> Result<PgChangeStream> {
        capture::open(&self.config, request, options).await
    }
}

/// Logical replication through a publication and a `pgoutput` slot per capture (see `capture.rs`).
#[async_trait]
impl ChangeReader for PostgresConnector {
    async fn check_capture(&self, request: &CaptureRequest) -> Result<()> {
        capture::check(&self.config, request).await
    }

    async fn create_capture(&self, request: &CaptureRequest) -> Result<CaptureStart> {
        capture::create(&self.config, request).await
    }

    async fn drop_capture(&self, name: &str) -> Result<()> {
        capture::drop(&self.config, name).await
    }

    async fn capture_exists(&self, name: &str) -> Result<bool> {
        capture::exists(&self.config, name).await
    }

    async fn open_capture(&self, request: &CaptureRequest) -> Result<Box<dyn ChangeStream>> {
        Ok(Box::new(
            capture::open(&self.config, request, CaptureOptions::default()).await?,
        ))
    }

    async fn capture_lag(&self, name: &str) -> Result<Option<CaptureLag>> {
        capture::lag(&self.config, name).await
    }

    async fn current_position(&self) -> Result<Position> {
        capture::current_position(&self.config).await
    }
}

#[async_trait]
impl Introspector for PostgresConnector {
    async fn list_tables(&self, schema: Option<&SchemaName>) -> Result<Vec<TableRef>> {
        let client = connect::connect(&self.config).await?;
        let name = schema.unwrap_or(&self.config.schema);
        let names = introspect::list_tables(&client, name.as_str()).await?;
        introspect::table_refs(names, schema)
    }

    async fn table_schema(&self, table: &TableRef) -> Result<Option<TableSchema>> {
        let client = connect::connect(&self.config).await?;
        introspect::table_schema(&client, table, &self.config.schema).await
    }

    async fn list_schemas(&self) -> Result<Vec<SchemaName>> {
        let client = connect::connect(&self.config).await?;
        introspect::list_schemas(&client).await
    }

    fn default_schema(&self) -> Option<SchemaName> {
        Some(self.config.schema.clone())
    }
}

#[async_trait]
impl SnapshotReader for PostgresConnector {
    fn plan_read(&self, request: &ReadRequest) -> Result<Vec<PlannedStatement>> {
        snapshot::plan(request, &self.config.schema)
    }

    async fn read(&self, request: ReadRequest) -> Result<Snapshot> {
        snapshot::read(self.config.clone(), request).await
    }

    async fn count_rows(&self, table: &TableRef, filter: Option<&Condition>) -> Result<u64> {
        snapshot::count_rows(&self.config, table, filter).await
    }

    async fn max_value(
        &self,
        table: &TableRef,
        column: &ColumnDef,
        filter: Option<&Condition>,
    ) -> Result<Option<Value>> {
        snapshot::max_value(&self.config, table, column, filter).await
    }

    fn raw_format(&self, request: &ReadRequest) -> Option<String> {
        snapshot::raw_format(request)
    }

    fn checksum_dialect(&self, request: &ReadRequest) -> Option<String> {
        snapshot::checksum_dialect(request)
    }

    async fn checksum_ranges(
        &self,
        request: &ReadRequest,
        range: &KeyRange,
        cuts: &[Vec<Value>],
    ) -> Result<Vec<RangeChecksum>> {
        snapshot::checksum_ranges(&self.config, request, range, cuts).await
    }

    async fn split_range(
        &self,
        request: &ReadRequest,
        range: &KeyRange,
        parts: usize,
    ) -> Result<Vec<Vec<Value>>> {
        snapshot::split_range(&self.config, request, range, parts).await
    }

    async fn read_raw(&self, request: ReadRequest) -> Result<RawSnapshot> {
        if snapshot::raw_format(&request).is_none() {
            return Err(ConnectorError::unsupported(format!(
                "a raw read of {} needs every column's native type, read as its natural data type",
                request.table
            )));
        }
        snapshot::read_raw(self.config.clone(), request).await
    }

    async fn share_snapshot(&self) -> Result<Option<Box<dyn SharedSnapshot>>> {
        Ok(Some(Box::new(
            snapshot::ExportedSnapshot::export(&self.config).await?,
        )))
    }

    async fn read_shared(
        &self,
        request: ReadRequest,
        snapshot: &dyn SharedSnapshot,
    ) -> Result<Snapshot> {
        snapshot::read_in(self.config.clone(), request, Some(snapshot.id())).await
    }
}

#[async_trait]
impl BatchWriter for PostgresConnector {
    async fn plan_write(&self, request: &WriteRequest) -> Result<Vec<PlannedStatement>> {
        write::plan(&self.config, request).await
    }

    async fn open(&self, request: WriteRequest) -> Result<Box<dyn TableWriter>> {
        write::open(self.config.clone(), request).await
    }
}
