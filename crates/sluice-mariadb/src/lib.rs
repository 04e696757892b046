//! The MariaDB connector (Class `mariadb`, alias `mysql`): introspection from information_schema,
//! streaming snapshot reads over the binary protocol, and atomic batch writes through `LOAD DATA
//! LOCAL INFILE` fed from memory, through mysql_async.
//!
//! Every session runs in UTC with utf8mb4 and strict SQL mode ([`connect::SESSION_SETUP`]). See
//! [`types`] for how each type maps and stays exact, `snapshot.rs` for reads and `write.rs` for how
//! each write strategy stays atomic. Connections are not encrypted: this build has no TLS.
#![deny(missing_docs)]

mod binlog;
pub mod capture;
pub mod config;
pub mod connect;
mod error;
mod integrate;
mod introspect;
mod snapshot;
pub mod types;
mod write;

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};
use sluice_connector::{
    BatchWriter, Capabilities, CaptureLag, CaptureRequest, CaptureStart, ChangeReader,
    ChangeStream, Connector, Introspector, KeyRange, PlannedStatement, RangeChecksum, ReadRequest,
    Result, SharedSnapshot, Snapshot, SnapshotReader, TableWriter, TestReport, WriteRequest,
};
use sluice_model::definition::LocationClass;
use sluice_model::{ColumnDef, Condition, Position, SchemaName, TableRef, TableSchema, Value};

pub use config::{MariadbConfig, PROPERTIES};

/// A connector to one MariaDB database. Connects lazily: nothing is opened until used.
pub struct MariadbConnector {
    config: MariadbConfig,
    pool: Pool,
}

impl std::fmt::Debug for MariadbConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MariadbConnector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MariadbConnector {
    /// A connector for `config`.
    pub fn new(config: MariadbConfig) -> Self {
        let pool = Pool::new(connect::opts(&config));
        MariadbConnector { config, pool }
    }

    /// The configuration.
    pub fn config(&self) -> &MariadbConfig {
        &self.config
    }

    async fn conn(&self) -> Result<Conn> {
        connect::pooled(&self.pool, &self.config).await
    }
}

#[async_trait]
impl Connector for MariadbConnector {
    fn class(&self) -> LocationClass {
        LocationClass::Mariadb
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

    /// Connects and asks for the server version, which server it is (`Class_Flavor`: `mariadb`
    /// or `mysql`) and whether it allows `LOAD DATA LOCAL INFILE`.
    async fn test(&self) -> Result<TestReport> {
        let mut conn = self.conn().await?;
        let found: Option<(String, i64)> = conn
            .query_first("SELECT VERSION(), @@GLOBAL.local_infile")
            .await
            .map_err(|e| error::mysql_error(e, format_args!("query {}", self.config.describe())))?;
        let (version, local_infile) = found.unwrap_or_default();
        let mut report = TestReport::default();
        let props = &mut report.discovered_props;
        props.insert("Class_Flavor".into(), types::flavor(&version).into());
        props.insert("Class_Version".into(), version);
        props.insert(
            "Local_Infile".into(),
            if local_infile == 1 { "ON" } else { "OFF" }.into(),
        );
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

    fn change_writer(&self) -> Option<&dyn sluice_connector::ChangeWriter> {
        Some(self)
    }

    fn change_reader(&self) -> Option<&dyn ChangeReader> {
        Some(self)
    }
}

#[async_trait]
impl ChangeReader for MariadbConnector {
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
            capture::open(&self.config, request, capture::CaptureOptions::default()).await?,
        ))
    }

    async fn capture_lag(&self, name: &str) -> Result<Option<CaptureLag>> {
        capture::lag(&self.config, name).await
    }

    async fn current_position(&self) -> Result<Position> {
        capture::current_position(&self.config).await
    }
}

impl MariadbConnector {
    /// Starts streaming with explicit options (tests and benchmarks).
    pub async fn open_capture_with(
        &self,
        request: &CaptureRequest,
        options: capture::CaptureOptions,
    ) -> Result<capture::MariadbChangeStream> {
        capture::open(&self.config, request, options).await
    }
}

#[async_trait]
impl Introspector for MariadbConnector {
    async fn list_tables(&self, schema: Option<&SchemaName>) -> Result<Vec<TableRef>> {
        let mut conn = self.conn().await?;
        introspect::list_tables(&mut conn, &self.config.database, schema).await
    }

    async fn table_schema(&self, table: &TableRef) -> Result<Option<TableSchema>> {
        let mut conn = self.conn().await?;
        introspect::table_schema(&mut conn, &self.config.database, table).await
    }

    async fn list_schemas(&self) -> Result<Vec<SchemaName>> {
        let mut conn = self.conn().await?;
        introspect::list_schemas(&mut conn).await
    }

    fn default_schema(&self) -> Option<SchemaName> {
        SchemaName::new(self.config.database.clone()).ok()
    }
}

#[async_trait]
impl SnapshotReader for MariadbConnector {
    fn plan_read(&self, request: &ReadRequest) -> Result<Vec<PlannedStatement>> {
        snapshot::plan(request, &self.config.database)
    }

    async fn read(&self, request: ReadRequest) -> Result<Snapshot> {
        snapshot::read(self.config.clone(), request).await
    }

    async fn count_rows(&self, table: &TableRef, filter: Option<&Condition>) -> Result<u64> {
        let mut conn = self.conn().await?;
        snapshot::count_rows(&mut conn, &self.config.database, table, filter).await
    }

    async fn max_value(
        &self,
        table: &TableRef,
        column: &ColumnDef,
        filter: Option<&Condition>,
    ) -> Result<Option<Value>> {
        let mut conn = self.conn().await?;
        snapshot::max_value(&mut conn, &self.config.database, table, column, filter).await
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

    /// Reads in a snapshot held by this process (the one a capture's creation hands out for its
    /// initial load); reads in one snapshot run one after another on its connection.
    async fn read_shared(
        &self,
        request: ReadRequest,
        snapshot: &dyn SharedSnapshot,
    ) -> Result<Snapshot> {
        snapshot::read_shared(self.config.clone(), request, snapshot.id()).await
    }
}

#[async_trait]
impl BatchWriter for MariadbConnector {
    async fn plan_write(&self, request: &WriteRequest) -> Result<Vec<PlannedStatement>> {
        write::plan(&self.config, request).await
    }

    async fn open(&self, request: WriteRequest) -> Result<Box<dyn TableWriter>> {
        write::open(self.config.clone(), request).await
    }
}
