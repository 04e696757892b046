//! Opening connections: every session runs in UTC, utf8mb4 and strict SQL mode.
//!
//! Short catalog queries (`test`, introspection, counts) borrow a connection from a small pool;
//! reads and writes open a connection of their own, so that a long read or an abandoned write never
//! hands a busy or half-used session back to the pool.

use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use sluice_connector::Result;

use crate::config::MariadbConfig;
use crate::error::mysql_error;

/// Run on every new session (and after the pool resets one): UTC, utf8mb4 and strict SQL mode, so
/// that nothing is converted, truncated or zero-dated silently; `NO_AUTO_VALUE_ON_ZERO` keeps a
/// key of 0 written into an `AUTO_INCREMENT` column 0 (by default MariaDB stores the next counter
/// value instead).
pub const SESSION_SETUP: &str = "SET time_zone = '+00:00', NAMES utf8mb4, \
    sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO'";

/// Driver options for `config`.
pub(crate) fn opts(config: &MariadbConfig) -> Opts {
    let constraints = PoolConstraints::new(0, 4).expect("0 <= 4");
    OptsBuilder::default()
        .ip_or_hostname(config.host.clone())
        .tcp_port(config.port)
        .user(Some(config.user.clone()))
        .pass(config.password.clone())
        .db_name(Some(config.database.clone()))
        .prefer_socket(false)
        .tcp_nodelay(true)
        .setup(vec![SESSION_SETUP])
        .pool_opts(PoolOpts::default().with_constraints(constraints))
        .into()
}

/// A connection of its own, set up for sluice.
pub(crate) async fn connect(config: &MariadbConfig) -> Result<Conn> {
    Conn::new(opts(config))
        .await
        .map_err(|e| mysql_error(e, format_args!("connect to {}", config.describe())))
}

/// A pooled connection for short catalog queries.
pub(crate) async fn pooled(pool: &Pool, config: &MariadbConfig) -> Result<Conn> {
    pool.get_conn()
        .await
        .map_err(|e| mysql_error(e, format_args!("connect to {}", config.describe())))
}
