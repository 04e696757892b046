//! A fresh database on the test server for each test: `kit_<pid>_<counter>`, dropped afterwards.
//!
//! The server is 127.0.0.1:3306 as root without password unless `SLUICE_TEST_MARIADB_HOST`,
//! `_PORT`, `_USER` or `_PASSWORD` say otherwise. An unreachable server fails the test.

#![allow(dead_code)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt;
use mysql_async::prelude::Queryable;
use sluice_mariadb::{MariadbConfig, MariadbConnector};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The test server's settings for `database`.
pub fn config(database: &str) -> MariadbConfig {
    let env = |name: &str| std::env::var(format!("SLUICE_TEST_MARIADB_{name}")).ok();
    let mut config = MariadbConfig::new(database);
    if let Some(host) = env("HOST") {
        config.host = host;
    }
    if let Some(port) = env("PORT") {
        config.port = port
            .parse()
            .expect("SLUICE_TEST_MARIADB_PORT is a port number");
    }
    if let Some(user) = env("USER") {
        config.user = user;
    }
    config.password = env("PASSWORD").filter(|p| !p.is_empty());
    config
}

/// A connection to the server without a default database.
pub async fn admin() -> mysql_async::Conn {
    let config = config("mysql");
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(config.host.clone())
        .tcp_port(config.port)
        .user(Some(config.user.clone()))
        .pass(config.password.clone())
        .prefer_socket(false);
    mysql_async::Conn::new(opts).await.unwrap_or_else(|e| {
        panic!(
            "the MariaDB test server at {}:{} is unreachable ({e}); start it or set \
             SLUICE_TEST_MARIADB_HOST/_PORT/_USER/_PASSWORD",
            config.host, config.port
        )
    })
}

/// Creates a fresh database, runs `test` with a connector to it, then drops the database (also
/// when the test panics).
pub async fn with_database<F, Fut>(test: F)
where
    F: FnOnce(MariadbConnector, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let name = format!(
        "kit_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let mut admin = admin().await;
    // Tests load through LOAD DATA LOCAL INFILE; a deployment script sets this permanently.
    admin
        .query_drop("SET GLOBAL local_infile = 1")
        .await
        .expect("enable local_infile on the test server");
    admin
        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await
        .expect("drop an old test database");
    admin
        .query_drop(format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        ))
        .await
        .expect("create the test database");
    let connector = MariadbConnector::new(config(&name));
    let outcome = AssertUnwindSafe(test(connector, name.clone()))
        .catch_unwind()
        .await;
    let _ = admin
        .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .await;
    let _ = admin.disconnect().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
