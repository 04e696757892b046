//! The SQLite connector (Class `sqlite`): introspection, snapshot reads and atomic batch writes on a
//! database file, through rusqlite with SQLite bundled.
//!
//! SQLite connections are synchronous; every operation runs on a blocking thread of its own with its
//! own connection, and rows cross to the async side in bounded batches. See [`types`] for how values
//! are stored exactly and `write.rs` for how each strategy stays atomic.
#![deny(missing_docs)]

mod capture;
pub mod config;
mod connect;
mod error;
mod integrate;
mod introspect;
mod snapshot;
pub mod types;
mod write;

use async_trait::async_trait;
use sluice_connector::{
    BatchWriter, Capabilities, CaptureLag, CaptureRequest, CaptureStart, ChangeReader,
    ChangeStream, Connector, ConnectorError, Introspector, PlannedStatement, ReadRequest, Result,
    SharedSnapshot, Snapshot, SnapshotReader, TableWriter, TestReport, WriteRequest,
};
use sluice_model::definition::LocationClass;
use sluice_model::{ColumnDef, Condition, Position, SchemaName, TableRef, TableSchema, Value};

pub use capture::{SqliteChangeStream, SqliteSnapshot, parse_image};
pub use config::{PROPERTIES, SqliteConfig};

/// A connector to one SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteConnector {
    config: SqliteConfig,
}

impl SqliteConnector {
    /// A connector for `config`. Opens nothing until used.
    pub fn new(config: SqliteConfig) -> Self {
        SqliteConnector { config }
    }

    /// The configuration.
    pub fn config(&self) -> &SqliteConfig {
        &self.config
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&SqliteConfig) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let config = self.config.clone();
        tokio::task::spawn_blocking(move || work(&config))
            .await
            .map_err(|e| ConnectorError::internal(format!("a SQLite worker thread failed: {e}")))?
    }
}

#[async_trait]
impl Connector for SqliteConnector {
    fn class(&self) -> LocationClass {
        LocationClass::Sqlite
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
            single_writer: true,
        }
    }

    /// Opens the file read-only and asks for the SQLite version. A file that does not exist yet is
    /// fine when its directory is writable (the first write creates it).
    async fn test(&self) -> Result<TestReport> {
        self.blocking(|config| {
            let mut report = TestReport::default();
            let props = &mut report.discovered_props;
            // One SQLite library, no managed variants.
            props.insert("Class_Flavor".into(), "vanilla".into());
            if !config.exists() {
                let dir = match config.path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => std::path::PathBuf::from("."),
                };
                let writable = std::fs::metadata(&dir)
                    .map(|m| m.is_dir() && !m.permissions().readonly())
                    .unwrap_or(false);
                if !writable {
                    return Err(ConnectorError::not_found(format!(
                        "database file {} does not exist and its directory {} is not a writable directory",
                        config.path.display(),
                        dir.display()
                    )));
                }
                props.insert("Database_Exists".into(), "false".into());
                props.insert("Class_Version".into(), rusqlite::version().to_owned());
                return Ok(report);
            }
            let conn = connect::open_read(config)?;
            let (version, tables): (String, i64) = conn
                .query_row(
                    "SELECT sqlite_version(), (SELECT count(*) FROM sqlite_master WHERE type = 'table')",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(|e| error::sqlite_error(e, format_args!("query {}", config.path.display())))?;
            let journal: String = conn
                .query_row("PRAGMA journal_mode", [], |row| row.get(0))
                .map_err(|e| error::sqlite_error(e, "read the journal mode"))?;
            props.insert("Database_Exists".into(), "true".into());
            props.insert("Class_Version".into(), version);
            props.insert("Table_Count".into(), tables.to_string());
            props.insert("Journal_Mode".into(), journal);
            Ok(report)
        })
        .await
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

/// Trigger-based capture; see `capture.rs` for what it makes in the file and how transactions
/// and schema changes are handled.
#[async_trait]
impl ChangeReader for SqliteConnector {
    async fn check_capture(&self, request: &CaptureRequest) -> Result<()> {
        let request = request.clone();
        self.blocking(move |config| capture::check(config, &request))
            .await
    }

    async fn create_capture(&self, request: &CaptureRequest) -> Result<CaptureStart> {
        let request = request.clone();
        self.blocking(move |config| capture::create(config, &request))
            .await
    }

    async fn drop_capture(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.blocking(move |config| capture::drop(config, &name))
            .await
    }

    async fn capture_exists(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.blocking(move |config| capture::exists(config, &name))
            .await
    }

    async fn open_capture(&self, request: &CaptureRequest) -> Result<Box<dyn ChangeStream>> {
        Ok(Box::new(
            capture::open(self.config.clone(), request.clone()).await?,
        ))
    }

    async fn capture_lag(&self, name: &str) -> Result<Option<CaptureLag>> {
        let name = name.to_owned();
        self.blocking(move |config| capture::lag(config, &name))
            .await
    }

    async fn current_position(&self) -> Result<Position> {
        self.blocking(capture::current_position).await
    }
}

#[async_trait]
impl Introspector for SqliteConnector {
    async fn list_tables(&self, schema: Option<&SchemaName>) -> Result<Vec<TableRef>> {
        let schema = schema.cloned();
        self.blocking(move |config| {
            if !config.exists() {
                return Ok(Vec::new());
            }
            introspect::list_tables(&connect::open_read(config)?, schema.as_ref())
        })
        .await
    }

    async fn table_schema(&self, table: &TableRef) -> Result<Option<TableSchema>> {
        let table = table.clone();
        self.blocking(move |config| {
            if !config.exists() {
                return Ok(None);
            }
            introspect::table_schema(&connect::open_read(config)?, &table)
        })
        .await
    }

    async fn list_schemas(&self) -> Result<Vec<SchemaName>> {
        self.blocking(|config| {
            if !config.exists() {
                return Ok(Vec::from_iter(SchemaName::new("main").ok()));
            }
            introspect::list_schemas(&connect::open_read(config)?)
        })
        .await
    }

    fn default_schema(&self) -> Option<SchemaName> {
        SchemaName::new("main").ok()
    }
}

#[async_trait]
impl SnapshotReader for SqliteConnector {
    fn plan_read(&self, request: &ReadRequest) -> Result<Vec<PlannedStatement>> {
        snapshot::plan(request)
    }

    async fn read(&self, request: ReadRequest) -> Result<Snapshot> {
        snapshot::read(self.config.clone(), request).await
    }

    async fn count_rows(&self, table: &TableRef, filter: Option<&Condition>) -> Result<u64> {
        let (table, filter) = (table.clone(), filter.cloned());
        self.blocking(move |config| snapshot::count_rows(config, &table, filter.as_ref()))
            .await
    }

    async fn max_value(
        &self,
        table: &TableRef,
        column: &ColumnDef,
        filter: Option<&Condition>,
    ) -> Result<Option<Value>> {
        let (table, column, filter) = (table.clone(), column.clone(), filter.cloned());
        self.blocking(move |config| snapshot::max_value(config, &table, &column, filter.as_ref()))
            .await
    }

    /// A read transaction held open on a connection of its own (the file must be in WAL mode for
    /// writers to go on meanwhile); reads in it take turns on that connection.
    async fn share_snapshot(&self) -> Result<Option<Box<dyn SharedSnapshot>>> {
        let snapshot = self.blocking(capture::share).await?;
        Ok(Some(Box::new(snapshot)))
    }

    async fn read_shared(
        &self,
        request: ReadRequest,
        snapshot: &dyn SharedSnapshot,
    ) -> Result<Snapshot> {
        let conn = capture::held_connection(&self.config, snapshot.id())?;
        snapshot::read_in(snapshot::ReadIn::Held(conn), request).await
    }
}

#[async_trait]
impl BatchWriter for SqliteConnector {
    async fn plan_write(&self, request: &WriteRequest) -> Result<Vec<PlannedStatement>> {
        let request = request.clone();
        self.blocking(move |config| write::plan(config, &request))
            .await
    }

    async fn open(&self, request: WriteRequest) -> Result<Box<dyn TableWriter>> {
        write::open(self.config.clone(), request).await
    }
}
