//! The PostgreSQL foundation: URL parsing, the process's one connection pool on a database, and
//! the migration runner every store on it uses.
//!
//! Every store on a database takes its connections from one [`PgDatabase`] (a cheap clone of
//! the pool). Migrations run in `READ COMMITTED` transactions under a transaction-scoped
//! advisory lock of the store's own ([`PgMigrations::lock`]), one migration per transaction with
//! the row that records it, so processes starting together migrate once.

use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Transaction};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{IsolationLevel, NoTls};

use crate::{Result, StoreError, StoreErrorKind};

/// Connections per process and database, for every store on it (the repository had 16 and the
/// event store 8 when each had a pool of its own).
const POOL_SIZE: usize = 24;
/// How long connecting may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL database: the process's pool on it, shared by every store.
#[derive(Clone)]
pub struct PgDatabase {
    pool: Pool,
    /// `user@host:port/database`, for messages (never the password).
    target: String,
}

impl std::fmt::Debug for PgDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDatabase")
            .field("target", &self.target)
            .finish()
    }
}

/// A store's versioned migrations on PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct PgMigrations {
    /// The store, in messages (`repository`, `event store`).
    pub what: &'static str,
    /// What is locked, in the message when taking the lock fails (`the schema`).
    pub subject: &'static str,
    /// The table recording applied versions (the store's own).
    pub table: &'static str,
    /// The advisory lock key held (per transaction) while migrating.
    pub lock: i64,
    /// `(version, name, SQL)`, in order.
    pub list: &'static [(u32, &'static str, &'static str)],
}

/// Parses a `postgres://` URL (or key=value string), refusing TLS, which the hub's PostgreSQL
/// connections do not support yet. `what` names the store in messages.
pub fn parse_url(url: &str, what: &str) -> Result<tokio_postgres::Config> {
    let tls_refused = || {
        StoreError::new(
            StoreErrorKind::Storage,
            format!(
                "TLS for the PostgreSQL {what} is not supported yet: connect over loopback or a \
                 private network with sslmode=disable or sslmode=prefer"
            ),
        )
    };
    if url.to_ascii_lowercase().contains("sslmode=verify") {
        return Err(tls_refused());
    }
    let config = tokio_postgres::Config::from_str(url).map_err(|e| {
        StoreError::storage(
            format!("invalid PostgreSQL {what} URL (expected postgres://USER@HOST:PORT/DATABASE)"),
            e,
        )
    })?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(tls_refused());
    }
    Ok(config)
}

/// `user@host:port/database` of a configuration, for messages.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{db}")
}

/// Begins a `READ COMMITTED` transaction.
pub async fn begin(client: &mut Object) -> Result<Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
}

/// Opens the pool's connections on the runtime that set the pool up (a hub server's request
/// runtime), whichever runtime asks for one: a connection's socket and the task that drives it
/// stay there, so a connection a job opened on the job runtime (whose threads run at a lower
/// priority and may be busy with batches) does not delay the requests that use it later.
struct OwnerConnect {
    owner: Option<tokio::runtime::Handle>,
}

type Connected = std::result::Result<
    (tokio_postgres::Client, tokio::task::JoinHandle<()>),
    tokio_postgres::Error,
>;

/// Connects, and drives the connection in a task of the current runtime.
async fn connect_here(config: tokio_postgres::Config) -> Connected {
    let (client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(async move {
        // The pool sees a closed connection and replaces it; the error itself is only logged
        // by the client calls that fail on it.
        let _ = connection.await;
    });
    Ok((client, driver))
}

impl deadpool_postgres::Connect for OwnerConnect {
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Connected> + Send + '_>> {
        let config = config.clone();
        let owner = self.owner.clone();
        Box::pin(async move {
            if let Some(owner) = owner {
                match owner.spawn(connect_here(config.clone())).await {
                    Ok(connected) => return connected,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    // The owner runtime has shut down: connect on this one.
                    Err(_) => {}
                }
            }
            connect_here(config).await
        })
    }
}

impl PgDatabase {
    /// Sets up the pool on the database at `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`).
    /// Connects lazily: the first [`PgDatabase::client`] (normally a store's migration) does.
    /// TLS (`sslmode=require`) is refused for now. `what` names the store in messages.
    pub fn new(url: &str, what: &str) -> Result<Self> {
        let mut config = parse_url(url, what)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let target = describe(&config);
        let manager = Manager::from_connect(
            config,
            OwnerConnect {
                owner: tokio::runtime::Handle::try_current().ok(),
            },
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| {
                StoreError::storage(
                    format!("cannot set up the PostgreSQL {what}'s connection pool"),
                    e,
                )
            })?;
        Ok(PgDatabase { pool, target })
    }

    /// `user@host:port/database`, for messages (never the password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A connection from the pool; `what` names the store in the message when there is none.
    pub async fn client(&self, what: &str) -> Result<Object> {
        self.pool.get().await.map_err(|e| {
            StoreError::storage(
                format!("cannot connect to the PostgreSQL {what} {}", self.target),
                e,
            )
        })
    }

    /// Applies the migrations of `set` not applied yet, one per transaction under the set's
    /// advisory lock. `Version` when the database holds a version newer than the set knows.
    pub async fn migrate(&self, set: &PgMigrations) -> Result<()> {
        let what = set.what;
        let storage = |e: tokio_postgres::Error, doing: &str| {
            StoreError::storage(format!("{what}: {doing}"), e)
        };
        let mut client = self.client(what).await?;
        let known = set.list.last().map_or(0, |(v, _, _)| *v);
        let table = set.table;
        loop {
            let tx = begin(&mut client).await.map_err(|e| storage(e, "begin"))?;
            // Processes starting together wait here; the next one sees what the first applied.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&set.lock])
                .await
                .map_err(|e| storage(e, &format!("lock {} for migration", set.subject)))?;
            tx.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (version integer PRIMARY KEY, \
                 name text NOT NULL, applied_at timestamptz NOT NULL)"
            ))
            .await
            .map_err(|e| storage(e, "create the migration table"))?;
            let row = tx
                .query_one(
                    &format!("SELECT coalesce(max(version), 0) FROM {table}"),
                    &[],
                )
                .await
                .map_err(|e| storage(e, "read the schema version"))?;
            let current: i32 = row.try_get(0).map_err(|e| storage(e, "read column 0"))?;
            let current = u32::try_from(current).unwrap_or(0);
            if current > known {
                return Err(StoreError::new(
                    StoreErrorKind::Version,
                    format!(
                        "the {what} has schema version {current}, newer than this sluice knows ({known}); upgrade sluice"
                    ),
                ));
            }
            let Some((version, label, sql)) = set.list.iter().find(|(v, _, _)| *v > current) else {
                tx.commit()
                    .await
                    .map_err(|e| storage(e, "commit a migration"))?;
                return Ok(());
            };
            tx.batch_execute(sql)
                .await
                .map_err(|e| storage(e, &format!("apply migration {version} ({label})")))?;
            tx.execute(
                &format!("INSERT INTO {table} (version, name, applied_at) VALUES ($1, $2, $3)"),
                &[
                    &i32::try_from(*version).unwrap_or(i32::MAX),
                    label,
                    &Utc::now(),
                ],
            )
            .await
            .map_err(|e| storage(e, "record a migration"))?;
            tx.commit()
                .await
                .map_err(|e| storage(e, "commit a migration"))?;
        }
    }

    /// The newest version recorded in a store's migration table `table` (0 when none).
    pub async fn schema_version(&self, what: &str, table: &str) -> Result<u32> {
        let client = self.client(what).await?;
        let row = client
            .query_one(
                &format!("SELECT coalesce(max(version), 0) FROM {table}"),
                &[],
            )
            .await
            .map_err(|e| StoreError::storage(format!("{what}: read the schema version"), e))?;
        let version: i32 = row
            .try_get(0)
            .map_err(|e| StoreError::storage(format!("{what}: read column 0"), e))?;
        Ok(version.try_into().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_refused_clearly() {
        for url in [
            "postgres://u@h/db?sslmode=require",
            "postgresql://u@h/db?sslmode=verify-full",
        ] {
            let error = parse_url(url, "repository").expect_err("TLS is not supported");
            assert!(error.to_string().contains("TLS"), "{error}");
        }
        assert!(parse_url("postgres://u@h/db?sslmode=disable", "repository").is_ok());
    }

    #[test]
    fn messages_never_show_the_password() {
        let config =
            parse_url("postgres://alice:secret@db.example:6543/hub", "repository").expect("valid");
        assert_eq!(describe(&config), "alice@db.example:6543/hub");
    }
}
