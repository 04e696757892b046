//! Location properties of Class `sqlite`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use sluice_connector::{ConnectorError, ErrorKind, PropertySpec};

/// The properties a `sqlite` location understands.
pub const PROPERTIES: &[PropertySpec] = &[
    PropertySpec {
        name: "Database_Name",
        required: true,
        description: "path of the database file (or a file: URI); created on first write when it does not exist",
        endpoint: true,
    },
    PropertySpec {
        name: "Database_Busy_Timeout",
        required: false,
        description: "milliseconds to wait for a lock held by another connection (default 5000)",
        endpoint: false,
    },
];

/// A resolved `sqlite` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    /// The database file.
    pub path: PathBuf,
    /// How long to wait for locks.
    pub busy_timeout: Duration,
}

impl SqliteConfig {
    /// A configuration for the file at `path` with default settings.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            busy_timeout: Duration::from_millis(5000),
        }
    }

    /// Whether the database file exists. A `file:` URI is taken to exist: SQLite itself reports
    /// when it cannot open one.
    pub fn exists(&self) -> bool {
        self.path.to_str().is_some_and(|p| p.starts_with("file:")) || self.path.exists()
    }

    /// Reads resolved location properties.
    pub fn from_props(props: &BTreeMap<String, String>) -> Result<Self, ConnectorError> {
        let path = props
            .get("Database_Name")
            .filter(|p| !p.trim().is_empty())
            .ok_or_else(|| {
                ConnectorError::new(ErrorKind::Schema, "property Database_Name is required")
            })?;
        let mut config = SqliteConfig::new(path);
        if let Some(ms) = props.get("Database_Busy_Timeout") {
            let ms: u64 = ms.trim().parse().map_err(|_| {
                ConnectorError::new(
                    ErrorKind::Schema,
                    format!("Database_Busy_Timeout {ms:?} is not a number of milliseconds"),
                )
            })?;
            config.busy_timeout = Duration::from_millis(ms);
        }
        Ok(config)
    }
}
