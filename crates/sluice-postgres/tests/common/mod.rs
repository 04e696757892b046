//! A fresh schema per test on the test server (127.0.0.1:5432, user postgres, database postgres;
//! override with `SLUICE_TEST_PG_HOST`, `SLUICE_TEST_PG_PORT`, `SLUICE_TEST_PG_USER`,
//! `SLUICE_TEST_PG_PASSWORD`, `SLUICE_TEST_PG_DATABASE`). An unreachable server fails the test.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use sluice_postgres::{PostgresConfig, PostgresConnector};
use tokio_postgres::{Client, NoTls};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Location properties of the test server, schema `schema`.
pub fn props(schema: &str) -> BTreeMap<String, String> {
    let env =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let mut props = BTreeMap::new();
    props.insert(
        "Database_Host".into(),
        env("SLUICE_TEST_PG_HOST", "127.0.0.1"),
    );
    props.insert("Database_Port".into(), env("SLUICE_TEST_PG_PORT", "5432"));
    props.insert(
        "Database_User".into(),
        env("SLUICE_TEST_PG_USER", "postgres"),
    );
    props.insert(
        "Database_Name".into(),
        env("SLUICE_TEST_PG_DATABASE", "postgres"),
    );
    if let Ok(password) = std::env::var("SLUICE_TEST_PG_PASSWORD") {
        props.insert("Database_Password".into(), password);
    }
    props.insert("Database_Schema".into(), schema.to_owned());
    props
}

/// A plain driver connection to the test server, for setting up and checking behind the connector.
pub async fn admin() -> Client {
    let config = PostgresConfig::from_props(&props("public")).unwrap();
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .user(&config.user)
        .dbname(&config.database)
        .application_name("sluice-test-admin");
    if let Some(password) = &config.password {
        pg.password(password.as_bytes());
    }
    let (client, connection) = pg.connect(NoTls).await.unwrap_or_else(|e| {
        panic!(
            "the PostgreSQL test server at {} is unreachable ({e}); start it or point \
             SLUICE_TEST_PG_HOST/SLUICE_TEST_PG_PORT/SLUICE_TEST_PG_USER at one",
            config.describe()
        )
    });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A schema created for one test and dropped (best effort) when this is dropped.
pub struct Fresh {
    pub connector: PostgresConnector,
    pub schema: String,
}

impl Fresh {
    /// Schema-qualified, quoted name of a table in this schema.
    pub fn qualified(&self, table: &str) -> String {
        format!("\"{}\".\"{}\"", self.schema, table.replace('"', "\"\""))
    }
}

/// A fresh, empty schema `kit_<pid>_<n>` and a connector whose default schema it is.
pub async fn fresh() -> Fresh {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let schema = format!("kit_{}_{n}", std::process::id());
    let admin = admin().await;
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\""
        ))
        .await
        .unwrap_or_else(|e| panic!("create schema {schema}: {e}"));
    let config = PostgresConfig::from_props(&props(&schema)).unwrap();
    Fresh {
        connector: PostgresConnector::new(config),
        schema,
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        // Drop runs outside any async context we could await in: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let admin = admin().await;
                let _ = admin
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await;
            });
        })
        .join();
    }
}
