//! Test fixtures shared by the workspace's test binaries (a dev-dependency only, never
//! published): a fresh, randomly named PostgreSQL database per test, dropped afterwards.
//!
//! With the feature `hub`: a repository on either backend ([`TestRepository`]) and a hub server
//! on a random loopback port ([`TestHub`]), assembled as `sluice serve` assembles it.
//!
//! The server is `SLUICE_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`); the tests
//! fail, never skip, when it is unreachable.
#![deny(missing_docs)]

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

#[cfg(feature = "hub")]
mod hub;
#[cfg(feature = "hub")]
pub use hub::{ADMIN_PASSWORD, TestHub, TestRepository};

/// The PostgreSQL server of the tests (its database part is ignored).
pub fn pg_server() -> String {
    std::env::var("SLUICE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// `server` with its database (path) set to `database`, keeping any query string.
pub fn pg_url(server: &str, database: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// A client on the server's `postgres` database; panics (the tests never skip) when the
/// server is unreachable.
pub async fn pg_admin() -> tokio_postgres::Client {
    let url = pg_url(&pg_server(), "postgres");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL for the tests is unreachable at {url} ({e}); start it or point \
                 SLUICE_TEST_PG at one (these tests never skip)"
            )
        });
    tokio::spawn(connection);
    client
}

/// A fresh PostgreSQL database, dropped (with its connections) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its name: the prefix and 16 random hex digits.
    pub name: String,
    /// Its URL on the test server.
    pub url: String,
}

impl TestDatabase {
    /// Creates a database named `PREFIX` and 16 random hex digits (e.g. `sluice_repo_test_`).
    pub async fn create(prefix: &str) -> Self {
        let name = format!(
            "{prefix}{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        pg_admin()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let url = pg_url(&pg_server(), &name);
        TestDatabase { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside async; drop the database from a thread with its own runtime.
        let name = self.name.clone();
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let url = pg_url(&pg_server(), "postgres");
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cannot drop test database {}: {e}", self.name),
            Err(_) => eprintln!("cannot drop test database {}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pg_url;

    #[test]
    fn urls_get_the_database_and_keep_the_query() {
        assert_eq!(
            pg_url("postgres://u@h:5432", "db"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(pg_url("postgres://u@h/postgres", "db"), "postgres://u@h/db");
        assert_eq!(
            pg_url("postgres://u@h/x?sslmode=disable", "db"),
            "postgres://u@h/db?sslmode=disable"
        );
    }
}

/// Where a store under test keeps its data: a SQLite file in a temp dir, or a fresh PostgreSQL
/// database; both are removed when this is dropped.
#[derive(Debug)]
pub enum TestStore {
    /// `DIR/home/hub.db` in a temp dir.
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The temp dir, removed on drop.
        _dir: tempfile::TempDir,
    },
    /// A fresh database.
    Postgres(TestDatabase),
}

impl TestStore {
    /// A SQLite file (not created yet) in a fresh temp dir.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir for the test");
        TestStore::Sqlite {
            path: dir.path().join("home/hub.db"),
            _dir: dir,
        }
    }

    /// A fresh PostgreSQL database named `prefix` and random digits.
    pub async fn postgres(prefix: &str) -> Self {
        TestStore::Postgres(TestDatabase::create(prefix).await)
    }
}

/// A store under test (`handle`, e.g. a repository or an event store) with where it keeps its
/// data; derefs to the handle. The handle is dropped first, so its pool closes before the
/// database is dropped.
pub struct StoreFixture<T: ?Sized> {
    /// The store.
    pub handle: Arc<T>,
    /// Where it keeps its data.
    pub place: TestStore,
}

impl<T: ?Sized> Deref for StoreFixture<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.handle
    }
}
