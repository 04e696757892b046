//! The connector registry: which classes this build supports, their properties, and connecting to a
//! location. Secrets are resolved here, at the moment of use, from `${ENV_VAR}` references; the
//! resolved values live only in the connector's configuration.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_connector::{Connector, ConnectorError, ErrorKind, PropertySpec};
use sluice_mariadb::{MariadbConfig, MariadbConnector};
use sluice_model::definition::{Location, LocationClass, resolve_env_refs};
use sluice_postgres::{PostgresConfig, PostgresConnector};
use sluice_sqlite::{SqliteConfig, SqliteConnector};

use crate::secrets::SecretKey;

/// Looks up environment variables; the process environment in production, a map in tests.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env() -> EnvLookup {
    Arc::new(|name| std::env::var(name).ok())
}

/// The properties of `class`, when this build has a connector for it.
pub fn property_specs(class: LocationClass) -> Option<&'static [PropertySpec]> {
    match class {
        LocationClass::Sqlite => Some(sluice_sqlite::PROPERTIES),
        LocationClass::Postgresql => Some(sluice_postgres::PROPERTIES),
        LocationClass::Mariadb => Some(sluice_mariadb::PROPERTIES),
    }
}

/// The classes this build supports, for messages.
pub fn supported_classes() -> String {
    [
        LocationClass::Postgresql,
        LocationClass::Mariadb,
        LocationClass::Sqlite,
    ]
    .into_iter()
    .filter(|c| property_specs(*c).is_some())
    .map(|c| c.as_str())
    .collect::<Vec<_>>()
    .join(", ")
}

/// Whether a property holds a file path (made absolute against the definitions file's directory).
pub fn is_path_prop(class: LocationClass, prop: &str) -> bool {
    class == LocationClass::Sqlite && prop == "Database_Name"
}

/// Resolves a location's properties: stored secrets are decrypted, `${ENV_VAR}` references
/// substituted.
fn resolve_props(
    location: &Location,
    env: &EnvLookup,
    key: Option<&SecretKey>,
) -> Result<BTreeMap<String, String>, ConnectorError> {
    location
        .props
        .iter()
        .map(|(name, value)| {
            let raw = value.to_text();
            if crate::secrets::is_sealed(&raw) {
                let plain = key
                    .ok_or_else(|| {
                        ConnectorError::new(
                            ErrorKind::Auth,
                            format!(
                                "location {} property {name} is stored encrypted, and this process has no secret key (SLUICE_SECRET_KEY or the key file)",
                                location.name
                            ),
                        )
                    })?
                    .open(&raw)
                    .map_err(|e| {
                        ConnectorError::new(
                            ErrorKind::Auth,
                            format!("location {} property {name}: {e}", location.name),
                        )
                    })?;
                return Ok((name.clone(), plain));
            }
            let text = resolve_env_refs(&raw, |var| env(var)).map_err(|e| {
                ConnectorError::new(
                    ErrorKind::Auth,
                    format!("location {} property {name}: {e}", location.name),
                )
            })?;
            Ok((name.clone(), text))
        })
        .collect()
}

/// A connector to `location`; `key` decrypts secrets stored encrypted.
pub fn connect(
    location: &Location,
    env: &EnvLookup,
    key: Option<&SecretKey>,
) -> Result<Arc<dyn Connector>, ConnectorError> {
    let props = resolve_props(location, env, key)?;
    let context = |e: ConnectorError| e.context(format!("location {}", location.name));
    Ok(match location.class {
        LocationClass::Sqlite => Arc::new(SqliteConnector::new(
            SqliteConfig::from_props(&props).map_err(context)?,
        )),
        LocationClass::Postgresql => Arc::new(PostgresConnector::new(
            PostgresConfig::from_props(&props).map_err(context)?,
        )),
        LocationClass::Mariadb => Arc::new(MariadbConnector::new(
            MariadbConfig::from_props(&props).map_err(context)?,
        )),
    })
}
