//! The storage foundation of the hub: one per database engine, shared by every store on it.
//!
//! A repository spec ([`Spec::parse`]: `postgres://…`, `sqlite:PATH` or a file path) names one
//! database. On PostgreSQL, [`postgres::PgDatabase`] is the process's one connection pool on that
//! database: the hub repository and the event store both take their connections from it. On
//! SQLite, [`sqlite::open`] opens a connection to the file with the pragmas a store asks for.
//! Both engines run versioned migrations ([`postgres::PgDatabase::migrate`], [`sqlite::migrate`])
//! from a list each store owns, recorded in a table each store owns, so the stores keep their
//! own schema versions in one database.
#![deny(missing_docs)]

pub mod postgres;
pub mod sqlite;

use std::path::PathBuf;

/// What went wrong opening or migrating a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The database was migrated by a newer sluice.
    Version,
    /// The database could not be opened, read or written.
    Storage,
}

/// An error of the storage foundation; the stores wrap it in their own errors.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// An error of `kind`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A storage error with its cause.
    pub fn storage(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError {
            kind: StoreErrorKind::Storage,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The kind.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The kind, the message and the underlying error, for wrapping this error without
    /// repeating it.
    pub fn into_parts(
        self,
    ) -> (
        StoreErrorKind,
        String,
        Option<Box<dyn std::error::Error + Send + Sync>>,
    ) {
        (self.kind, self.message, self.source)
    }
}

/// Results of the storage foundation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database a spec names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// A PostgreSQL database: the URL (or key=value string) as given.
    Postgres(String),
    /// A SQLite file.
    Sqlite(PathBuf),
}

impl Spec {
    /// Reads a spec: `postgres://…` or `postgresql://…`, `sqlite:PATH` (or `sqlite://PATH`), or a
    /// plain file path. Any other `scheme://` is refused. `what` names the store in messages
    /// (`repository`, `event store`).
    pub fn parse(spec: &str, what: &str) -> Result<Spec> {
        let spec = spec.trim();
        let lower = spec.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(Spec::Postgres(spec.to_owned()));
        }
        let path = if lower.starts_with("sqlite:") {
            let rest = &spec["sqlite:".len()..];
            rest.strip_prefix("//").unwrap_or(rest)
        } else if let Some((scheme, _)) = spec.split_once("://") {
            return Err(StoreError::new(
                StoreErrorKind::Storage,
                format!(
                    "unsupported {what} scheme {scheme:?}: expected sqlite:PATH, a file path, or postgres://USER@HOST:PORT/DATABASE"
                ),
            ));
        } else {
            spec
        };
        if path.is_empty() {
            return Err(StoreError::new(
                StoreErrorKind::Storage,
                format!(
                    "no {what} given: expected sqlite:PATH, a file path, or postgres://USER@HOST:PORT/DATABASE"
                ),
            ));
        }
        Ok(Spec::Sqlite(PathBuf::from(path)))
    }
}

/// An open database, for assembling the stores of one process on it: a PostgreSQL pool, shared
/// by every store, or a SQLite file, which each store opens with its own connections.
#[derive(Debug, Clone)]
pub enum Database {
    /// The process's pool on a PostgreSQL database.
    Postgres(postgres::PgDatabase),
    /// A SQLite file.
    Sqlite(PathBuf),
}

impl Database {
    /// Opens the database `spec` names ([`Spec::parse`]); `what` names the store in messages.
    /// Connects lazily: nothing is checked on PostgreSQL until a store migrates.
    pub fn open(spec: &str, what: &str) -> Result<Database> {
        Ok(match Spec::parse(spec, what)? {
            Spec::Postgres(url) => Database::Postgres(postgres::PgDatabase::new(&url, what)?),
            Spec::Sqlite(path) => Database::Sqlite(path),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_read_like_the_stores_read_them() {
        assert_eq!(
            Spec::parse(" postgresql://u@h/db ", "repository").unwrap(),
            Spec::Postgres("postgresql://u@h/db".into())
        );
        assert_eq!(
            Spec::parse("sqlite://tmp/hub.db", "repository").unwrap(),
            Spec::Sqlite("tmp/hub.db".into())
        );
        assert_eq!(
            Spec::parse("hub.db", "repository").unwrap(),
            Spec::Sqlite("hub.db".into())
        );
        let e = Spec::parse("mysql://x", "event store").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unsupported event store scheme \"mysql\"")
        );
        let e = Spec::parse("sqlite:", "repository").unwrap_err();
        assert!(e.to_string().starts_with("no repository given"));
    }
}
