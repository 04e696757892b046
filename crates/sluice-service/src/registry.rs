//! The connector registry: which classes this build supports, their properties, and connecting to a
//! location. Secrets are resolved here, at the moment of use, from `${ENV_VAR}` references; the
//! resolved values live only in the connector's configuration.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_connector::{Connector, ConnectorError, ErrorKind, PropertySpec};
use sluice_mariadb::{MariadbConfig, MariadbConnector};
use sluice_model::definition::{
    Location, LocationClass, env_refs, is_secret_prop, resolve_env_refs,
};
use sluice_postgres::{PostgresConfig, PostgresConnector};
use sluice_sqlite::{SqliteConfig, SqliteConnector};

use crate::policy::{LocationPolicy, Redactor};
use crate::redaction;
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

/// The stored properties of `location` that sluice does not act on: properties HVR documents for
/// the class (kept as stored, listed by `GET …/locs/{loc}`) that the class's connector does not
/// read. The location test names them.
pub fn unused_props(location: &Location) -> Vec<String> {
    let specs = property_specs(location.class).unwrap_or_default();
    location
        .props
        .keys()
        .filter(|name| !specs.iter().any(|s| s.name == name.as_str()))
        .cloned()
        .collect()
}

/// Whether a property holds a file path (made absolute against the definitions file's directory).
pub fn is_path_prop(class: LocationClass, prop: &str) -> bool {
    class == LocationClass::Sqlite && prop == "Database_Name"
}

/// Resolves a location's properties: stored secrets are decrypted, `${ENV_VAR}` references
/// substituted where `policy` allows the variable. Every resolved value is remembered in the
/// redactor, so no message shows it.
fn resolve_props(
    location: &Location,
    env: &EnvLookup,
    key: Option<&SecretKey>,
    policy: &LocationPolicy,
) -> Result<(BTreeMap<String, String>, Redactor), ConnectorError> {
    let mut redactor = Redactor::default();
    let mut props = BTreeMap::new();
    for (name, value) in &location.props {
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
            redactor.add(&plain, "***");
            props.insert(name.clone(), plain);
            continue;
        }
        if is_secret_prop(name) && !raw.contains("${") {
            // A literal secret (a definitions file may not hold one, a test may).
            redactor.add(&raw, "***");
        }
        let bad = |e: &dyn std::fmt::Display| {
            ConnectorError::new(
                ErrorKind::Auth,
                format!("location {} property {name}: {e}", location.name),
            )
        };
        // A secret's text is never repeated in a message, malformed or not.
        let malformed = |e: &dyn std::fmt::Display| match is_secret_prop(name) {
            true => bad(&"malformed ${…} reference (the value is not shown)"),
            false => bad(e),
        };
        let vars = env_refs(&raw).map_err(|e| malformed(&e))?;
        if let Some(var) = vars.iter().find(|v| !policy.env_allowed(v)) {
            return Err(bad(&policy.env_refusal(var)));
        }
        let text = resolve_env_refs(&raw, |var| env(var)).map_err(|e| malformed(&e))?;
        for var in &vars {
            if let Some(value) = env(var) {
                redactor.add(&value, format!("${{{var}}}"));
            }
        }
        props.insert(name.clone(), text);
    }
    Ok((props, redactor))
}

/// A connector to `location`; `key` decrypts secrets stored encrypted, `policy` says which
/// variables and files the location may reach. Errors of the connector never show a resolved
/// value (see [`crate::redaction`]).
pub fn connect(
    location: &Location,
    env: &EnvLookup,
    key: Option<&SecretKey>,
    policy: &LocationPolicy,
) -> Result<Arc<dyn Connector>, ConnectorError> {
    let (props, redactor) = resolve_props(location, env, key, policy)?;
    let context = |e: ConnectorError| {
        e.context(format!("location {}", location.name))
            .redacted(&|text: &str| redactor.redact(text))
    };
    let connector: Arc<dyn Connector> = match location.class {
        LocationClass::Sqlite => {
            let config = SqliteConfig::from_props(&props).map_err(context)?;
            policy.check_path(&config.path).map_err(|reason| {
                ConnectorError::new(
                    ErrorKind::Auth,
                    format!(
                        "location {} property Database_Name: {reason}",
                        location.name
                    ),
                )
            })?;
            Arc::new(SqliteConnector::new(config))
        }
        LocationClass::Postgresql => Arc::new(PostgresConnector::new(
            PostgresConfig::from_props(&props).map_err(context)?,
        )),
        LocationClass::Mariadb => Arc::new(MariadbConnector::new(
            MariadbConfig::from_props(&props).map_err(context)?,
        )),
    };
    Ok(redaction::wrap(connector, redactor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::definition::PropValue;

    fn location(class: LocationClass, props: &[(&str, &str)]) -> Location {
        Location {
            name: sluice_model::LocationName::new("l").unwrap(),
            class,
            description: String::new(),
            props: props
                .iter()
                .map(|(k, v)| ((*k).to_owned(), PropValue::Text((*v).to_owned())))
                .collect(),
        }
    }

    fn env() -> EnvLookup {
        Arc::new(|name: &str| match name {
            "SLUICE_ADMIN_PASSWORD" => Some("admin-secret-1".into()),
            "DB_PASSWORD" => Some("db-secret-22".into()),
            "DB_DIR" => Some("/nonexistent/db-dir-secret".into()),
            _ => None,
        })
    }

    #[tokio::test]
    async fn references_resolve_only_where_allowed_and_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let server = LocationPolicy::server("DB_*", dir.path(), Vec::new()).unwrap();
        let leak = location(
            LocationClass::Sqlite,
            &[("Database_Name", "/nonexistent/${SLUICE_ADMIN_PASSWORD}")],
        );
        let error = connect(&leak, &env(), None, &server).err().unwrap();
        assert!(!error.to_string().contains("admin-secret-1"), "{error}");
        assert!(
            error.to_string().contains("${SLUICE_ADMIN_PASSWORD}"),
            "{error}"
        );
        // Even the operator's own CLI never reads SLUICE_* variables.
        let error = connect(&leak, &env(), None, &LocationPolicy::local(Vec::new()))
            .err()
            .unwrap();
        assert!(!error.to_string().contains("admin-secret-1"), "{error}");
        // An allowed variable resolves, and the driver's error names the reference instead.
        let allowed = location(
            LocationClass::Sqlite,
            &[("Database_Name", "${DB_DIR}/${DB_PASSWORD}.db")],
        );
        let connector = connect(&allowed, &env(), None, &server).unwrap();
        let error = connector.test().await.unwrap_err();
        let text = format!(
            "{error} {:?}",
            std::error::Error::source(&error).map(|s| s.to_string())
        );
        assert!(!text.contains("db-secret-22"), "{text}");
        assert!(!text.contains("db-dir-secret"), "{text}");
        assert!(text.contains("${DB_PASSWORD}"), "{text}");
    }

    #[tokio::test]
    async fn a_stored_password_never_shows_in_errors() {
        let key = SecretKey::from_text("k");
        let mut loc = location(
            LocationClass::Postgresql,
            &[
                ("Database_Host", "127.0.0.1"),
                ("Database_Port", "5432"),
                ("Database_Name", "no_such_database_here"),
                ("Database_User", "postgres"),
            ],
        );
        loc.props.insert(
            "Database_Password".into(),
            PropValue::Text(key.seal("pw-value-333")),
        );
        let connector = connect(&loc, &env(), Some(&key), &LocationPolicy::default()).unwrap();
        if let Err(error) = connector.test().await {
            assert!(!format!("{error:?}").contains("pw-value-333"));
        }
    }
}
