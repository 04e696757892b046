//! Location properties of Class `mariadb` (alias `mysql`).

use std::collections::BTreeMap;
use std::fmt;

use sluice_connector::{ConnectorError, PropertySpec};

/// The properties a `mariadb` location understands.
pub const PROPERTIES: &[PropertySpec] = &[
    PropertySpec {
        name: "Database_Host",
        required: false,
        description: "host name or address of the MariaDB server (default 127.0.0.1); \
                      connections are not encrypted: this build has no TLS",
        endpoint: true,
    },
    PropertySpec {
        name: "Database_Port",
        required: false,
        description: "TCP port of the server (default 3306)",
        endpoint: true,
    },
    PropertySpec {
        name: "Database_Name",
        required: true,
        description: "the database (schema) tables are read from and written to",
        endpoint: true,
    },
    PropertySpec {
        name: "Database_User",
        required: false,
        description: "user name to log in as (default root)",
        endpoint: true,
    },
    PropertySpec {
        name: "Database_Password",
        required: false,
        description: "password of Database_User (secret: never shown in messages or plans)",
        endpoint: false,
    },
    PropertySpec {
        name: "Database_Local_Infile",
        required: false,
        description: "whether writes may use LOAD DATA LOCAL INFILE when the server allows it \
                      (default true); false always writes with multi-row INSERT",
        endpoint: false,
    },
    PropertySpec {
        name: "Database_Load_Sessions",
        required: false,
        description: "sessions that load rows side by side into a staging table (a staging \
                      swap, or a truncate_load of a whole table that swaps), 1 to 8 (default 2); \
                      the table stays invisible until the swap, so this is atomic all the same",
        endpoint: false,
    },
];

/// Default of `Database_Load_Sessions`: a second session lets the server parse and insert on a
/// second core (2,000,000 bench rows: 9.1 s in one `LOAD DATA`, 6.2 s in two, MariaDB 10.11 on
/// two cores).
pub const DEFAULT_LOAD_SESSIONS: u8 = 2;
/// The most `Database_Load_Sessions` allows.
pub const MAX_LOAD_SESSIONS: u8 = 8;

/// A resolved `mariadb` location.
#[derive(Clone, PartialEq, Eq)]
pub struct MariadbConfig {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// The database.
    pub database: String,
    /// User name.
    pub user: String,
    /// Password (secret; `Debug` hides it).
    pub password: Option<String>,
    /// Whether writes may use `LOAD DATA LOCAL INFILE`.
    pub local_infile: bool,
    /// Sessions loading rows into a staging table side by side.
    pub load_sessions: u8,
}

impl fmt::Debug for MariadbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MariadbConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("local_infile", &self.local_infile)
            .field("load_sessions", &self.load_sessions)
            .finish()
    }
}

impl MariadbConfig {
    /// A configuration for `database` on 127.0.0.1:3306 as root without password.
    pub fn new(database: impl Into<String>) -> Self {
        MariadbConfig {
            host: "127.0.0.1".into(),
            port: 3306,
            database: database.into(),
            user: "root".into(),
            password: None,
            local_infile: true,
            load_sessions: DEFAULT_LOAD_SESSIONS,
        }
    }

    /// `host:port/database`, for messages.
    pub fn describe(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }

    /// Reads resolved location properties.
    pub fn from_props(props: &BTreeMap<String, String>) -> Result<Self, ConnectorError> {
        let get = |name: &str| props.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let database = get("Database_Name")
            .ok_or_else(|| ConnectorError::schema("property Database_Name is required"))?;
        let mut config = MariadbConfig::new(database);
        if let Some(host) = get("Database_Host") {
            config.host = host.to_owned();
        }
        if let Some(port) = get("Database_Port") {
            config.port = port.parse().map_err(|_| {
                ConnectorError::schema(format!("Database_Port {port:?} is not a TCP port"))
            })?;
        }
        if let Some(user) = get("Database_User") {
            config.user = user.to_owned();
        }
        // A password may have significant blanks: take it as given.
        config.password = props
            .get("Database_Password")
            .filter(|p| !p.is_empty())
            .cloned();
        if let Some(flag) = get("Database_Local_Infile") {
            config.local_infile = match flag.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    return Err(ConnectorError::schema(format!(
                        "Database_Local_Infile {flag:?} is not true or false"
                    )));
                }
            };
        }
        if let Some(n) = get("Database_Load_Sessions") {
            config.load_sessions = n
                .parse()
                .ok()
                .filter(|n| (1..=MAX_LOAD_SESSIONS).contains(n))
                .ok_or_else(|| {
                    ConnectorError::schema(format!(
                        "Database_Load_Sessions {n:?} is not a number from 1 to {MAX_LOAD_SESSIONS}"
                    ))
                })?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_properties_and_hides_the_password() {
        let props: BTreeMap<String, String> = [
            ("Database_Name", "shop"),
            ("Database_Host", "db.example"),
            ("Database_Port", "3307"),
            ("Database_User", "app"),
            ("Database_Password", "s3cret"),
            ("Database_Local_Infile", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = MariadbConfig::from_props(&props).expect("valid properties");
        assert_eq!(config.describe(), "db.example:3307/shop");
        assert_eq!(config.user, "app");
        assert!(!config.local_infile);
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(MariadbConfig::from_props(&BTreeMap::new()).is_err());
        let mut bad = props.clone();
        bad.insert("Database_Port".into(), "x".into());
        assert!(MariadbConfig::from_props(&bad).is_err());
        assert_eq!(config.load_sessions, DEFAULT_LOAD_SESSIONS);
        for (value, ok) in [
            ("1", true),
            ("8", true),
            ("0", false),
            ("9", false),
            ("two", false),
        ] {
            let mut p = props.clone();
            p.insert("Database_Load_Sessions".into(), value.into());
            let read = MariadbConfig::from_props(&p);
            assert_eq!(read.is_ok(), ok, "Database_Load_Sessions {value}");
            if ok {
                assert_eq!(read.unwrap().load_sessions.to_string(), value);
            }
        }
    }
}
