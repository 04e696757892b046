//! Location properties of Class `postgresql`.

use std::collections::BTreeMap;
use std::fmt;

use sluice_connector::{ConnectorError, ErrorKind, PropertySpec};
use sluice_model::SchemaName;

/// The properties a `postgresql` location understands.
pub const PROPERTIES: &[PropertySpec] = &[
    PropertySpec {
        name: "Database_Host",
        required: false,
        description: "host name or IP address of the PostgreSQL server (default 127.0.0.1)",
        endpoint: true,
    },
    PropertySpec {
        name: "Database_Port",
        required: false,
        description: "TCP port of the PostgreSQL server (default 5432)",
        endpoint: true,
    },
    PropertySpec {
        name: "Database_Name",
        required: true,
        description: "name of the database to connect to",
        endpoint: true,
    },
    PropertySpec {
        name: "Database_User",
        required: false,
        description: "user to log in as (default postgres)",
        endpoint: true,
    },
    PropertySpec {
        name: "Database_Password",
        required: false,
        description: "password of Database_User (secret; not needed with trust or peer authentication)",
        endpoint: false,
    },
    PropertySpec {
        name: "Database_Schema",
        required: false,
        description: "schema of tables named without one (default public)",
        endpoint: false,
    },
    PropertySpec {
        name: "Database_Sslmode",
        required: false,
        description: "TLS: disable, prefer (default; encrypted when the server offers it, certificate not checked), \
                      require (encrypted, certificate not checked, like libpq) or verify-full (encrypted, \
                      certificate checked against the Mozilla roots and the host name)",
        endpoint: true,
    },
];

/// How the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without checking its certificate; plain otherwise.
    #[default]
    Prefer,
    /// TLS without checking the server's certificate (libpq's `require`).
    Require,
    /// TLS with the certificate checked against the Mozilla roots (webpki-roots) and the host name.
    VerifyFull,
}

impl SslMode {
    /// The spelling used in `Database_Sslmode`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl std::str::FromStr for SslMode {
    type Err = ConnectorError;
    fn from_str(s: &str) -> Result<Self, ConnectorError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-full" | "verify_full" => Ok(SslMode::VerifyFull),
            _ => Err(ConnectorError::new(
                ErrorKind::Schema,
                format!(
                    "Database_Sslmode {s:?} is not one of disable, prefer, require, verify-full"
                ),
            )),
        }
    }
}

/// A resolved `postgresql` location. `Debug` masks the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Database name.
    pub database: String,
    /// User name.
    pub user: String,
    /// Password, when one is needed.
    pub password: Option<String>,
    /// Schema of tables named without one.
    pub schema: SchemaName,
    /// TLS mode.
    pub sslmode: SslMode,
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("schema", &self.schema)
            .field("sslmode", &self.sslmode)
            .finish()
    }
}

fn schema_name(name: &str) -> Result<SchemaName, ConnectorError> {
    SchemaName::new(name).map_err(|e| {
        ConnectorError::new(
            ErrorKind::Schema,
            format!("Database_Schema {name:?} is not a valid schema name: {e}"),
        )
    })
}

impl PostgresConfig {
    /// A configuration for `database` on 127.0.0.1:5432 as user `postgres`, schema `public`, TLS
    /// preferred.
    pub fn new(database: impl Into<String>) -> Self {
        PostgresConfig {
            host: "127.0.0.1".into(),
            port: 5432,
            database: database.into(),
            user: "postgres".into(),
            password: None,
            schema: schema_name("public").expect("public is a valid schema name"),
            sslmode: SslMode::Prefer,
        }
    }

    /// `host:port/database`, for messages (never the password).
    pub fn describe(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }

    /// Reads resolved location properties.
    pub fn from_props(props: &BTreeMap<String, String>) -> Result<Self, ConnectorError> {
        let get = |name: &str| props.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let database = get("Database_Name").ok_or_else(|| {
            ConnectorError::new(ErrorKind::Schema, "property Database_Name is required")
        })?;
        let mut config = PostgresConfig::new(database);
        if let Some(host) = get("Database_Host") {
            config.host = host.to_owned();
        }
        if let Some(port) = get("Database_Port") {
            config.port = port.parse().map_err(|_| {
                ConnectorError::new(
                    ErrorKind::Schema,
                    format!("Database_Port {port:?} is not a port number"),
                )
            })?;
        }
        if let Some(user) = get("Database_User") {
            config.user = user.to_owned();
        }
        // A password is taken as given: blanks may be part of it.
        if let Some(password) = props.get("Database_Password").filter(|p| !p.is_empty()) {
            config.password = Some(password.clone());
        }
        if let Some(schema) = get("Database_Schema") {
            config.schema = schema_name(schema)?;
        }
        if let Some(mode) = get("Database_Sslmode") {
            config.sslmode = mode.parse()?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_and_overrides() {
        let c = PostgresConfig::from_props(&props(&[("Database_Name", "hub")])).unwrap();
        assert_eq!(c.describe(), "127.0.0.1:5432/hub");
        assert_eq!(c.schema.as_str(), "public");
        assert_eq!(c.sslmode, SslMode::Prefer);
        let c = PostgresConfig::from_props(&props(&[
            ("Database_Name", "hub"),
            ("Database_Host", "db.example"),
            ("Database_Port", "6543"),
            ("Database_User", "sluice"),
            ("Database_Schema", "Sales"),
            ("Database_Sslmode", "verify-full"),
        ]))
        .unwrap();
        assert_eq!(c.describe(), "db.example:6543/hub");
        assert_eq!(c.user, "sluice");
        assert_eq!(c.schema.as_str(), "Sales");
        assert_eq!(c.sslmode, SslMode::VerifyFull);
    }

    #[test]
    fn bad_properties_are_schema_errors() {
        for bad in [
            props(&[]),
            props(&[("Database_Name", "x"), ("Database_Port", "big")]),
            props(&[("Database_Name", "x"), ("Database_Sslmode", "allow")]),
        ] {
            let err = PostgresConfig::from_props(&bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Schema, "{err}");
        }
    }

    #[test]
    fn debug_masks_the_password() {
        let c = PostgresConfig::from_props(&props(&[
            ("Database_Name", "x"),
            ("Database_Password", "hunter2"),
        ]))
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("********"), "{shown}");
    }
}
