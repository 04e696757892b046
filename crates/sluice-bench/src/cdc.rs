//! `sluice bench --suite cdc`: change capture from PostgreSQL into each engine, against
//! PostgreSQL's own logical replication (issue 16's benchmark); from MariaDB and from a SQLite file
//! (trigger capture, source in the hub server's data directory) too.
//!
//! Each case gets a fresh source database on the `--postgres` server with two tables: `cdc_rows`
//! (bigint key, int, varchar(64), numeric(12,2), timestamptz, text with some NULLs; 10,000 rows
//! to start with) and `cdc_probe` (one row whose `seq` the probe bumps). The load is written by
//! `--sessions` connections, each owning its own keys: transactions of 10–100 changes, about
//! 60 % inserts, 30 % updates and 10 % deletes (each transaction one round trip: its inserts as one
//! multi-row `INSERT`, its updates as one `UPDATE … FROM (VALUES …)`, its deletes as one
//! `DELETE … IN`, all row changes in the log as ever).
//!
//! A case measures, with replication running:
//! 1. **Drain throughput**: replication is paused (sluice: the integrate job suspended through the
//!    jobs API; native: `ALTER SUBSCRIPTION … DISABLE`), a backlog of `--rows` changes is written
//!    unpaced, then a probe commit; replication resumes and the time until the probe's commit is
//!    visible at the target is the drain time; changes/s = backlog / drain time.
//! 2. **End-to-end lag**: for `--seconds` the sessions write `--rate` changes/s in total while a
//!    separate connection commits a probe (`seq` + 1) every 50 ms and notes the instant its COMMIT
//!    returned; a poller reads the target's probe row every 5 ms and notes when each `seq` became
//!    visible. Lag = seen − committed, p50/p99/max over the probes.
//! 3. **Peak RSS** of the `sluice serve` child process (`VmHWM`, read before it stops).
//!
//! After each phase the target's `cdc_rows` must equal the source's in row count and sum of `n`.
//!
//! sluice cases run a real `sluice serve` child (fresh SQLite repository in a temp home), defined
//! over the HVR REST API as users do: hub `bench`, locations `src` (postgresql) and `tgt`, channel
//! `cdc` with `Capture` on the source group and `Integrate` on the target group, then
//! `POST …/channels/cdc/activate` with `{"refresh": true}` (the target's tables are created and
//! loaded), `…/deactivate` at the end. The native reference creates the slot with
//! `pg_create_logical_replication_slot(…, 'pgoutput')` and a subscription on the target database
//! with `create_slot = false, copy_data = false` (the target is seeded with the same rows). Every
//! subscription, slot and database of a case is dropped afterwards, on failure too.

use std::collections::VecDeque;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use mysql_async::prelude::Queryable as _;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::args::{BenchArgs, Printing};
use crate::report::{json as print_json, table, thousands};

/// Changes in the backlog by default.
const DEFAULT_BACKLOG: i64 = 500_000;
/// Seconds of the fixed-rate load by default.
const DEFAULT_SECONDS: u32 = 30;
/// Rows of `cdc_rows` before the load (loaded by the activation's refresh, or seeded on both
/// sides for the native reference).
const SEED_ROWS: i64 = 10_000;
/// How often the probe commits during the lag measurement.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// How often the poller reads the target's probe row.
const POLL_EVERY: Duration = Duration::from_millis(5);
/// Smallest and largest transaction of the load, in changes.
const TX_CHANGES: (u64, u64) = (10, 100);
/// How long a state change (activation, a job's state, the first change) may take.
const STATE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a suspended job may take to show `SUSPEND`.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the last probe of the lag measurement may take to arrive after the load ended.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Drains slower than this many changes/s are reported as not caught up.
const SLOWEST_DRAIN: i64 = 500;

/// The targets.
const TARGET_CHANGES_PER_SECOND: f64 = 20_000.0;
const TARGET_VS_NATIVE: f64 = 1.0;
const TARGET_P99_MS: f64 = 1_000.0;
const TARGET_RSS_MB: f64 = 300.0;

const HUB: &str = "bench";
const CHANNEL: &str = "cdc";
const ADMIN_PASSWORD: &str = "bench-cdc-admin-password";

const SOURCE_TABLES: &str = "CREATE TABLE cdc_rows (
    id bigint PRIMARY KEY,
    n integer NOT NULL,
    name varchar(64) NOT NULL,
    amount numeric(12,2) NOT NULL,
    created timestamptz NOT NULL,
    note text
);
CREATE TABLE cdc_probe (id integer PRIMARY KEY, seq bigint NOT NULL, committed timestamptz NOT NULL);";

const MARIA_SOURCE_TABLES: &str = "CREATE TABLE cdc_rows (
    id BIGINT PRIMARY KEY,
    n INT NOT NULL,
    name VARCHAR(64) NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    created TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    note TEXT
);
CREATE TABLE cdc_probe (id INT PRIMARY KEY, seq BIGINT NOT NULL,
    committed TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6));";

const SQLITE_SOURCE_TABLES: &str = "PRAGMA journal_mode = WAL;
CREATE TABLE cdc_rows (
    id INTEGER PRIMARY KEY,
    n INT NOT NULL,
    name VARCHAR(64) NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    created TIMESTAMPTZ NOT NULL,
    note TEXT
);
CREATE TABLE cdc_probe (id INT PRIMARY KEY, seq INTEGER NOT NULL, committed TIMESTAMPTZ NOT NULL);";

/// The seed rows and the probe row of a SQLite source (the same values as [`seed_sql`]).
fn sqlite_seed_sql(rows: i64) -> String {
    format!(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows})
         INSERT INTO cdc_rows SELECT i, x % 1000000, 'name-' || printf('%08x', x),
           printf('%d.%02d', x % 10000000, x % 100),
           strftime('%Y-%m-%d %H:%M:%S', 1704067200 + x % 31536000, 'unixepoch') || '+00:00',
           CASE WHEN x % 10 = 0 THEN NULL ELSE 'note for row ' || printf('%10d', i) || ': some text to make the row longer' END
         FROM (SELECT i, (i * 2654435761) % 4294967296 AS x FROM s);
         INSERT INTO cdc_probe VALUES (1, 0, strftime('%Y-%m-%d %H:%M:%f+00:00', 'now'));"
    )
}

/// The seed rows and the probe row of a MariaDB source (the same values as [`seed_sql`]).
fn maria_seed_sql(rows: i64) -> String {
    format!(
        "INSERT INTO cdc_rows SELECT i, x % 1000000, CONCAT('name-', LPAD(LOWER(HEX(x)), 8, '0')),
           CAST(CONCAT(x % 10000000, '.', LPAD(x % 100, 2, '0')) AS DECIMAL(12,2)),
           TIMESTAMP'2024-01-01 00:00:00' + INTERVAL (x % 31536000) SECOND,
           IF(x % 10 = 0, NULL, CONCAT('note for row ', LPAD(i, 10, ' '), ': some text to make the row longer'))
         FROM (SELECT seq AS i, (seq * 2654435761) % 4294967296 AS x FROM seq_1_to_{rows}) AS s;
         INSERT INTO cdc_probe VALUES (1, 0, NOW(6));"
    )
}

/// The seed rows and the probe row at `seq` 0 (the same on both sides of the native reference).
fn seed_sql(rows: i64) -> String {
    format!(
        "INSERT INTO cdc_rows SELECT i, (x % 1000000)::int, 'name-' || lpad(to_hex(x), 8, '0'),
           ((x % 10000000) || '.' || lpad((x % 100)::text, 2, '0'))::numeric(12,2),
           timestamptz '2024-01-01 00:00:00+00' + (x % 31536000) * interval '1 second',
           CASE WHEN x % 10 = 0 THEN NULL ELSE 'note for row ' || lpad(i::text, 10) || ': some text to make the row longer' END
         FROM (SELECT i, (i * 2654435761) % 4294967296 AS x FROM generate_series(1::bigint, {rows}::bigint) AS i) AS s;
         INSERT INTO cdc_probe VALUES (1, 0, clock_timestamp());"
    )
}

/// The columns of the channel's tables as declared over the API.
fn channel_tables() -> Value {
    json!({
        "cdc_rows": {"cols": {
            "id": {"sequence": 1, "key": true, "data_type": "int64", "attributes": {"nullable": false}},
            "n": {"sequence": 2, "data_type": "int32", "attributes": {"nullable": false}},
            "name": {"sequence": 3, "data_type": "varchar(64)", "attributes": {"nullable": false}},
            "amount": {"sequence": 4, "data_type": "decimal(12,2)", "attributes": {"nullable": false}},
            "created": {"sequence": 5, "data_type": "timestamptz", "attributes": {"nullable": false}},
            "note": {"sequence": 6, "data_type": "text", "attributes": {"nullable": true}},
        }},
        "cdc_probe": {"cols": {
            "id": {"sequence": 1, "key": true, "data_type": "int32", "attributes": {"nullable": false}},
            "seq": {"sequence": 2, "data_type": "int64", "attributes": {"nullable": false}},
            "committed": {"sequence": 3, "data_type": "timestamptz", "attributes": {"nullable": false}},
        }},
    })
}

// ---------------------------------------------------------------------------------------------
// Figures

/// `q` (0..=1) of `sorted` by nearest rank; `None` when empty.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `value / reference`, when both are there and the reference is not zero.
fn ratio(value: Option<f64>, reference: Option<f64>) -> Option<f64> {
    match (value, reference) {
        (Some(v), Some(r)) if r > 0.0 => Some(v / r),
        _ => None,
    }
}

/// The lag of each probe commit: the first instant the poller saw a `seq` at least the probe's,
/// minus the instant its COMMIT returned (clamped at 0: the poller may see it a hair before the
/// server's answer arrives). `seen` is in the order it was seen (`seq` increasing). Returns the
/// lags in milliseconds, sorted, and the number of probes never seen.
fn lags_ms(committed: &[(i64, Instant)], seen: &[(i64, Instant)]) -> (Vec<f64>, usize) {
    let mut lags = Vec::with_capacity(committed.len());
    let mut missing = 0;
    for &(seq, at) in committed {
        let i = seen.partition_point(|&(s, _)| s < seq);
        match seen.get(i) {
            Some(&(_, visible)) => {
                lags.push(visible.saturating_duration_since(at).as_secs_f64() * 1000.0)
            }
            None => missing += 1,
        }
    }
    lags.sort_by(f64::total_cmp);
    (lags, missing)
}

/// The lag measurement of a case.
#[derive(Debug, Clone, serde::Serialize)]
struct LagFigures {
    rate_asked: u32,
    /// Changes committed per second while the probes ran.
    rate_achieved: f64,
    seconds: f64,
    changes: u64,
    probes: usize,
    /// Probes whose commit never became visible within the settle time.
    probes_missing: usize,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
}

/// What one case measured (or why it could not).
#[derive(Debug, Clone, serde::Serialize)]
struct CaseFigures {
    case: String,
    /// `native` or the target engine.
    target: String,
    backlog_changes: u64,
    drain_seconds: Option<f64>,
    changes_per_second: Option<f64>,
    /// Changes/s relative to the native reference's of the same run (PostgreSQL sources).
    vs_native: Option<f64>,
    /// MariaDB sources: changes/s at which `mariadb-binlog` reads and decodes the backlog's
    /// binary log range from the server into /dev/null.
    reference_changes_per_second: Option<f64>,
    /// Changes/s relative to `reference_changes_per_second`.
    vs_reference: Option<f64>,
    lag: Option<LagFigures>,
    peak_rss_mb: Option<f64>,
    /// The target equalled the source (rows, sum of `n`) after each phase.
    verified: bool,
    error: Option<String>,
}

impl CaseFigures {
    fn new(case: &Case) -> CaseFigures {
        CaseFigures {
            case: case.title().to_owned(),
            target: case.key().to_owned(),
            backlog_changes: 0,
            drain_seconds: None,
            changes_per_second: None,
            vs_native: None,
            reference_changes_per_second: None,
            vs_reference: None,
            lag: None,
            peak_rss_mb: None,
            verified: false,
            error: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Servers and databases

/// The cases, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Native,
    Postgres,
    MariaDb,
    Sqlite,
    /// A MariaDB source into PostgreSQL.
    MariaToPostgres,
    /// A MariaDB source into another MariaDB database.
    MariaToMariaDb,
    /// A SQLite source (trigger capture) into PostgreSQL.
    SqliteToPostgres,
}

impl Case {
    const ALL: [Case; 7] = [
        Case::Native,
        Case::Postgres,
        Case::MariaDb,
        Case::Sqlite,
        Case::MariaToPostgres,
        Case::MariaToMariaDb,
        Case::SqliteToPostgres,
    ];

    fn key(self) -> &'static str {
        match self {
            Case::Native => "native",
            Case::Postgres => "postgresql",
            Case::MariaDb => "mariadb",
            Case::Sqlite => "sqlite",
            Case::MariaToPostgres => "mariadb-postgresql",
            Case::MariaToMariaDb => "mariadb-mariadb",
            Case::SqliteToPostgres => "sqlite-postgresql",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Case::Native => "reference: PostgreSQL logical replication PG→PG (subscription)",
            Case::Postgres => "sluice PG→PG",
            Case::MariaDb => "sluice PG→MariaDB",
            Case::Sqlite => "sluice PG→SQLite",
            Case::MariaToPostgres => "sluice MariaDB→PG",
            Case::MariaToMariaDb => "sluice MariaDB→MariaDB",
            Case::SqliteToPostgres => "sluice SQLite→PG",
        }
    }

    /// Whether the source is MariaDB (else PostgreSQL).
    fn maria_source(self) -> bool {
        matches!(self, Case::MariaToPostgres | Case::MariaToMariaDb)
    }
}

/// `HOST:PORT`.
fn host_port(addr: &str) -> Result<(String, u16)> {
    let (host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("{addr:?} is not HOST:PORT"))?;
    let port = port
        .parse()
        .with_context(|| format!("{addr:?}: the port is not a number"))?;
    Ok((host.to_owned(), port))
}

/// The servers of a run.
#[derive(Debug, Clone)]
struct Servers {
    pg: (String, u16),
    my: (String, u16),
}

impl Servers {
    fn pg_url(&self, db: &str) -> String {
        format!("postgres://postgres@{}:{}/{db}", self.pg.0, self.pg.1)
    }

    fn my_url(&self, db: &str) -> String {
        format!("mysql://root@{}:{}/{db}", self.my.0, self.my.1)
    }

    async fn pg(&self, db: &str) -> Result<tokio_postgres::Client> {
        let url = self.pg_url(db);
        let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
        let (client, conn) = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| anyhow!("no answer within 10 s"))
            .and_then(|c| c.map_err(anyhow::Error::from))
            .with_context(|| {
                format!("PostgreSQL is unreachable at {url} (start it with scripts/services)")
            })?;
        tokio::spawn(conn);
        Ok(client)
    }

    async fn pg_exec(&self, db: &str, sql: &str) -> Result<()> {
        self.pg(db)
            .await?
            .batch_execute(sql)
            .await
            .with_context(|| format!("PostgreSQL refused {sql:?}"))
    }

    async fn my(&self, db: &str) -> Result<mysql_async::Conn> {
        let url = self.my_url(db);
        tokio::time::timeout(
            Duration::from_secs(10),
            mysql_async::Conn::from_url(url.as_str()),
        )
        .await
        .map_err(|_| anyhow!("no answer within 10 s"))
        .and_then(|c| c.map_err(anyhow::Error::from))
        .with_context(|| {
            format!("MariaDB is unreachable at {url} (start it with scripts/services)")
        })
    }

    async fn my_exec(&self, sql: &str) -> Result<()> {
        let mut conn = self.my("").await?;
        conn.query_drop(sql)
            .await
            .with_context(|| format!("MariaDB refused {sql:?}"))?;
        let _ = conn.disconnect().await;
        Ok(())
    }
}

/// A database name unique to this run and case: `sluice_cdc_<case>_<role>_<pid>_<ms>`.
fn database_name(case: Case, role: &str) -> String {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!(
        "sluice_cdc_{}_{role}_{}_{stamp}",
        case.key().replace('-', "_"),
        std::process::id()
    )
}

/// What a case made and must remove: databases and the native subscription (the slots of a case
/// are those of its source database).
#[derive(Default)]
struct Made {
    pg_databases: Vec<String>,
    my_databases: Vec<String>,
    /// `(target database, subscription)`.
    subscription: Option<(String, String)>,
}

impl Made {
    /// Removes everything, in an order that works: the subscription, every slot of the source
    /// databases (waiting for their walsenders to go), then the databases. Returns what failed.
    async fn remove(&self, s: &Servers) -> Vec<String> {
        let mut failed = Vec::new();
        if let Some((db, sub)) = &self.subscription {
            for sql in [
                format!("ALTER SUBSCRIPTION {sub} DISABLE"),
                format!("ALTER SUBSCRIPTION {sub} SET (slot_name = NONE)"),
                format!("DROP SUBSCRIPTION IF EXISTS {sub}"),
            ] {
                if let Err(e) = s.pg_exec(db, &sql).await {
                    failed.push(format!("{e:#}"));
                }
            }
        }
        // The slots of a case live in its own source database: the named one of the native
        // reference, or what sluice left behind if its deactivation failed.
        for db in &self.pg_databases {
            if let Err(e) = drop_slots_of(s, db).await {
                failed.push(format!("{e:#}"));
            }
        }
        for db in &self.pg_databases {
            if let Err(e) = s
                .pg_exec(
                    "postgres",
                    &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
                )
                .await
            {
                failed.push(format!("{e:#}"));
            }
        }
        for db in &self.my_databases {
            if let Err(e) = s.my_exec(&format!("DROP DATABASE IF EXISTS `{db}`")).await {
                failed.push(format!("{e:#}"));
            }
        }
        failed
    }
}

/// Drops the replication slots of database `db`, ending their walsenders first.
async fn drop_slots_of(s: &Servers, db: &str) -> Result<()> {
    let admin = s.pg("postgres").await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = admin
            .query(
                "SELECT slot_name::text, active_pid FROM pg_replication_slots WHERE database = $1",
                &[&db],
            )
            .await
            .context("cannot list the replication slots")?;
        if rows.is_empty() {
            return Ok(());
        }
        for r in &rows {
            let slot: String = r.get(0);
            let pid: Option<i32> = r.get(1);
            match pid {
                Some(pid) => {
                    admin
                        .execute("SELECT pg_terminate_backend($1)", &[&pid])
                        .await
                        .context("cannot end a walsender")?;
                }
                None => {
                    // It may have become active again since: then the next round ends it.
                    let _ = admin
                        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                        .await;
                }
            }
        }
        if Instant::now() > deadline {
            bail!("the replication slots of database {db} could not be dropped within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The load

/// splitmix64: a small, seedable generator (the load must not depend on a crate's stream).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Changes of one transaction by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Mix {
    inserts: u64,
    updates: u64,
    deletes: u64,
}

impl Mix {
    fn total(self) -> u64 {
        self.inserts + self.updates + self.deletes
    }
}

/// The keys one session owns: `id % sessions == index`.
struct Keys {
    /// Keys that exist.
    live: Vec<i64>,
    next_id: i64,
    step: i64,
    rng: Rng,
}

impl Keys {
    fn new(index: u32, sessions: u32, seeded: i64) -> Keys {
        let step = i64::from(sessions);
        let index = i64::from(index);
        let live = (1..=seeded).filter(|id| id % step == index).collect();
        let mut next_id = seeded + 1;
        while next_id % step != index {
            next_id += 1;
        }
        Keys {
            live,
            next_id,
            step,
            rng: Rng(0x5EED_0000 + index as u64),
        }
    }

    /// One transaction of `changes` changes as one SQL text (60 % inserts, 30 % updates, 10 %
    /// deletes; an update or delete when no key is left becomes an insert; a key changes at most
    /// once per transaction). Updates the keys as if it committed.
    fn transaction(&mut self, changes: u64, dialect: Dialect) -> (String, Mix) {
        let maria = dialect == Dialect::Maria;
        let lite = dialect == Dialect::Sqlite;
        let mut mix = Mix::default();
        let mut inserts = Vec::new();
        let mut updates = Vec::new();
        let mut deletes = Vec::new();
        // Keys at `untouched..` were picked by this transaction already.
        let mut untouched = self.live.len();
        for _ in 0..changes {
            let pick = self.rng.below(10);
            if pick < 6 || untouched == 0 {
                let id = self.next_id;
                self.next_id += self.step;
                inserts.push(id);
                mix.inserts += 1;
                continue;
            }
            let i = self.rng.below(untouched as u64) as usize;
            untouched -= 1;
            self.live.swap(i, untouched);
            let id = self.live[untouched];
            if pick < 9 {
                updates.push(id);
                mix.updates += 1;
            } else {
                deletes.push(id);
                mix.deletes += 1;
            }
        }
        let version = self.rng.next();
        let mut sql = String::from(match dialect {
            Dialect::Maria => "START TRANSACTION;",
            // Take the write lock at once rather than upgrading into a busy error.
            Dialect::Sqlite => "BEGIN IMMEDIATE;",
            Dialect::Postgres => "BEGIN;",
        });
        if !inserts.is_empty() {
            sql.push_str("INSERT INTO cdc_rows (id, n, name, amount, created, note) VALUES ");
            for (j, id) in inserts.iter().enumerate() {
                if j > 0 {
                    sql.push(',');
                }
                let v = row_values(*id, version);
                // MariaDB takes no zone in a literal (sessions run in UTC).
                let created = if maria {
                    v.created.trim_end_matches("+00").to_owned()
                } else if lite {
                    // As sluice writes zoned timestamps into SQLite.
                    format!("{}:00", v.created)
                } else {
                    v.created.clone()
                };
                sql.push_str(&format!(
                    "({id},{},'{}',{},'{created}',{})",
                    v.n, v.name, v.amount, v.note
                ));
            }
            sql.push(';');
        }
        if !updates.is_empty() && maria {
            sql.push_str("UPDATE cdc_rows AS t JOIN (");
            for (j, id) in updates.iter().enumerate() {
                if j > 0 {
                    sql.push_str(" UNION ALL ");
                }
                let v = row_values(*id, version.wrapping_add(j as u64));
                sql.push_str(&format!(
                    "SELECT {id} AS id, {} AS n, {} AS amount, {} AS note",
                    v.n, v.amount, v.note
                ));
            }
            sql.push_str(
                ") AS v ON t.id = v.id SET t.n = v.n, t.amount = v.amount, t.note = v.note;",
            );
        } else if !updates.is_empty() && lite {
            sql.push_str("UPDATE cdc_rows SET n = v.column2, amount = v.column3, note = v.column4 FROM (VALUES ");
            for (j, id) in updates.iter().enumerate() {
                if j > 0 {
                    sql.push(',');
                }
                let v = row_values(*id, version.wrapping_add(j as u64));
                sql.push_str(&format!("({id},{},{},{})", v.n, v.amount, v.note));
            }
            sql.push_str(") AS v WHERE cdc_rows.id = v.column1;");
        } else if !updates.is_empty() {
            sql.push_str(
                "UPDATE cdc_rows AS t SET n = v.n, amount = v.amount, note = v.note FROM (VALUES ",
            );
            for (j, id) in updates.iter().enumerate() {
                if j > 0 {
                    sql.push(',');
                }
                let v = row_values(*id, version.wrapping_add(j as u64));
                sql.push_str(&format!(
                    "({id}::bigint,{}::int,{}::numeric,{}::text)",
                    v.n, v.amount, v.note
                ));
            }
            sql.push_str(") AS v(id, n, amount, note) WHERE t.id = v.id;");
        }
        if !deletes.is_empty() {
            let ids: Vec<String> = deletes.iter().map(i64::to_string).collect();
            sql.push_str(&format!(
                "DELETE FROM cdc_rows WHERE id IN ({});",
                ids.join(",")
            ));
        }
        sql.push_str("COMMIT;");
        // The deleted keys are gone; the inserted ones exist.
        self.live.retain({
            let deletes: std::collections::HashSet<i64> = deletes.iter().copied().collect();
            move |id| !deletes.contains(id)
        });
        self.live.extend(inserts);
        (sql, mix)
    }
}

/// The SQL dialect of a source's load transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Postgres,
    Maria,
    Sqlite,
}

/// SQL literals of a row's values (generated, never user text: no quoting needed).
struct RowValues {
    n: u64,
    name: String,
    amount: String,
    created: String,
    note: String,
}

fn row_values(id: i64, version: u64) -> RowValues {
    let x = (id as u64 ^ version).wrapping_mul(2_654_435_761) & 0xFFFF_FFFF;
    RowValues {
        n: x % 1_000_000,
        name: format!("name-{x:08x}"),
        amount: format!("{}.{:02}", x % 10_000_000, x % 100),
        created: format!(
            "2024-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
            1 + x % 12,
            1 + x % 28,
            x % 24,
            x % 60,
            (x / 7) % 60,
            x % 1_000_000
        ),
        note: match x % 10 {
            0 => "NULL".to_owned(),
            _ => format!("'note for row {id:>10} version {x:>10}: some text to make it longer'"),
        },
    }
}

/// How a session paces itself.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Exactly this many changes, as fast as the server takes them.
    Backlog(u64),
    /// This many changes per second until the instant.
    Rate(f64, Instant),
}

/// A connection to the source database.
enum SourceClient {
    Postgres(tokio_postgres::Client),
    MariaDb(mysql_async::Conn),
    /// A connection of its own to the SQLite file, used on blocking threads.
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
}

impl SourceClient {
    async fn connect(s: &Servers, source: &TargetDb) -> Result<SourceClient> {
        Ok(match source {
            TargetDb::MariaDb(db) => {
                let mut conn = s.my(db).await?;
                conn.query_drop("SET time_zone = '+00:00'")
                    .await
                    .context("cannot set up a source session")?;
                SourceClient::MariaDb(conn)
            }
            TargetDb::Postgres(db) => SourceClient::Postgres(s.pg(db).await?),
            TargetDb::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                conn.busy_timeout(Duration::from_secs(60))?;
                // The load measures the replicator, not the source's fsync (WAL: still atomic).
                conn.execute_batch("PRAGMA synchronous = NORMAL")?;
                SourceClient::Sqlite(Arc::new(Mutex::new(conn)))
            }
        })
    }

    fn dialect(&self) -> Dialect {
        match self {
            SourceClient::Postgres(_) => Dialect::Postgres,
            SourceClient::MariaDb(_) => Dialect::Maria,
            SourceClient::Sqlite(_) => Dialect::Sqlite,
        }
    }

    async fn batch(&mut self, sql: &str) -> Result<()> {
        match self {
            SourceClient::Postgres(c) => c.batch_execute(sql).await.map_err(anyhow::Error::from),
            SourceClient::MariaDb(c) => c.query_drop(sql).await.map_err(anyhow::Error::from),
            SourceClient::Sqlite(c) => {
                let (conn, sql) = (c.clone(), sql.to_owned());
                tokio::task::spawn_blocking(move || {
                    let conn = conn.lock().map_err(|_| anyhow!("a load session failed"))?;
                    conn.execute_batch(&sql).map_err(anyhow::Error::from)
                })
                .await?
            }
        }
    }
}

/// One writing session: its connection and keys.
struct Session {
    client: SourceClient,
    keys: Keys,
}

impl Session {
    /// Writes transactions as `pace` says; returns the changes committed.
    async fn write(&mut self, pace: Pace) -> Result<u64> {
        let started = Instant::now();
        let mut done = 0u64;
        loop {
            let size = TX_CHANGES.0 + self.keys.rng.below(TX_CHANGES.1 - TX_CHANGES.0 + 1);
            let size = match pace {
                Pace::Backlog(n) if done >= n => return Ok(done),
                Pace::Backlog(n) => size.min(n - done),
                Pace::Rate(_, until) if Instant::now() >= until => return Ok(done),
                Pace::Rate(..) => size,
            };
            let (sql, mix) = self.keys.transaction(size, self.client.dialect());
            self.client
                .batch(&sql)
                .await
                .context("the source refused a load transaction")?;
            done += mix.total();
            if let Pace::Rate(per_second, until) = pace {
                let due = started + Duration::from_secs_f64(done as f64 / per_second);
                tokio::time::sleep_until(due.min(until).into()).await;
            }
        }
    }
}

/// The load generator: `--sessions` sessions on the source database.
struct Load {
    sessions: Vec<Session>,
}

impl Load {
    async fn connect(s: &Servers, source: &TargetDb, sessions: u32) -> Result<Load> {
        let mut out = Vec::new();
        for i in 0..sessions {
            let mut client = SourceClient::connect(s, source).await?;
            if let SourceClient::Postgres(client) = &mut client {
                // The load measures the replicator, not the source's fsync.
                client
                    .batch_execute("SET synchronous_commit = off")
                    .await
                    .context("cannot set up a load session")?;
            }
            out.push(Session {
                client,
                keys: Keys::new(i, sessions, SEED_ROWS),
            });
        }
        Ok(Load { sessions: out })
    }

    /// Writes `changes` changes spread over the sessions; returns the changes committed.
    async fn backlog(&mut self, changes: u64) -> Result<u64> {
        let n = self.sessions.len() as u64;
        let writes = self.sessions.iter_mut().enumerate().map(|(i, s)| {
            let share = changes / n + u64::from((i as u64) < changes % n);
            s.write(Pace::Backlog(share))
        });
        Ok(futures::future::try_join_all(writes).await?.iter().sum())
    }

    /// Writes `per_second` changes/s in total until `until`; returns the changes committed.
    async fn paced(&mut self, per_second: f64, until: Instant) -> Result<u64> {
        let each = per_second / self.sessions.len() as f64;
        let writes = self
            .sessions
            .iter_mut()
            .map(|s| s.write(Pace::Rate(each, until)));
        Ok(futures::future::try_join_all(writes).await?.iter().sum())
    }
}

/// Commits probe rows on its own connection and notes when each commit returned.
struct Prober {
    client: SourceClient,
    bump: Option<tokio_postgres::Statement>,
    seq: i64,
}

impl Prober {
    async fn connect(s: &Servers, source: &TargetDb) -> Result<Prober> {
        let client = SourceClient::connect(s, source).await?;
        let bump = match &client {
            SourceClient::Postgres(c) => Some(
                c.prepare(
                    "UPDATE cdc_probe SET seq = $1, committed = clock_timestamp() WHERE id = 1",
                )
                .await
                .context("cannot prepare the probe")?,
            ),
            SourceClient::MariaDb(_) | SourceClient::Sqlite(_) => None,
        };
        Ok(Prober {
            client,
            bump,
            seq: 0,
        })
    }

    /// Commits `seq` + 1; returns it and the instant the commit returned.
    async fn commit(&mut self) -> Result<(i64, Instant)> {
        let seq = self.seq + 1;
        match (&mut self.client, &self.bump) {
            (SourceClient::Postgres(c), Some(bump)) => c
                .execute(bump, &[&seq])
                .await
                .map(drop)
                .context("the source refused the probe")?,
            (SourceClient::MariaDb(c), _) => c
                .exec_drop(
                    "UPDATE cdc_probe SET seq = ?, committed = NOW(6) WHERE id = 1",
                    (seq,),
                )
                .await
                .context("the source refused the probe")?,
            (SourceClient::Sqlite(c), _) => {
                let conn = c.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = conn
                        .lock()
                        .map_err(|_| anyhow!("the probe session failed"))?;
                    conn.execute(
                        "UPDATE cdc_probe SET seq = ?1, \
                         committed = strftime('%Y-%m-%d %H:%M:%f+00:00', 'now') WHERE id = 1",
                        [seq],
                    )
                    .map(drop)
                    .context("the source refused the probe")
                })
                .await??
            }
            (SourceClient::Postgres(_), None) => bail!("the probe is not prepared"),
        }
        self.seq = seq;
        Ok((seq, Instant::now()))
    }

    /// Commits a probe every [`PROBE_EVERY`] until `until`.
    async fn every_tick(&mut self, until: Instant) -> Result<Vec<(i64, Instant)>> {
        let mut out = Vec::new();
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if Instant::now() >= until {
                return Ok(out);
            }
            out.push(self.commit().await?);
        }
    }
}

/// Row count and sum of `n` of the source's `cdc_rows`.
async fn source_totals(client: &tokio_postgres::Client) -> Result<(i64, i64)> {
    let row = client
        .query_one(
            "SELECT count(*), coalesce(sum(n), 0)::bigint FROM cdc_rows",
            &[],
        )
        .await
        .context("cannot count the source's rows")?;
    Ok((row.get(0), row.get(1)))
}

// ---------------------------------------------------------------------------------------------
// The target side

/// Where the target's tables are.
#[derive(Debug, Clone)]
enum TargetDb {
    Postgres(String),
    MariaDb(String),
    Sqlite(PathBuf),
}

impl TargetDb {
    /// The probe's `seq` at the target; `None` while the table or row is not there.
    async fn seq(&self, s: &Servers) -> Result<Option<i64>> {
        Ok(match self {
            TargetDb::Postgres(db) => s
                .pg(db)
                .await?
                .query_opt("SELECT seq FROM cdc_probe WHERE id = 1", &[])
                .await
                .ok()
                .flatten()
                .map(|r| r.get(0)),
            TargetDb::MariaDb(db) => {
                let mut conn = s.my(db).await?;
                let seq = conn
                    .query_first::<i64, _>("SELECT seq FROM cdc_probe WHERE id = 1")
                    .await
                    .ok()
                    .flatten();
                let _ = conn.disconnect().await;
                seq
            }
            TargetDb::Sqlite(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = open_sqlite(&path).ok()?;
                    conn.query_row("SELECT seq FROM cdc_probe WHERE id = 1", [], |r| r.get(0))
                        .ok()
                })
                .await?
            }
        })
    }

    /// Row count and sum of `n` of the target's `cdc_rows`.
    async fn totals(&self, s: &Servers) -> Result<(i64, i64)> {
        match self {
            TargetDb::Postgres(db) => source_totals(&s.pg(db).await?).await,
            TargetDb::MariaDb(db) => {
                let mut conn = s.my(db).await?;
                let totals = conn
                    .query_first::<(i64, i64), _>(
                        "SELECT COUNT(*), CAST(COALESCE(SUM(n), 0) AS SIGNED) FROM cdc_rows",
                    )
                    .await
                    .context("cannot count the target's rows")?
                    .context("no answer to a count")?;
                let _ = conn.disconnect().await;
                Ok(totals)
            }
            TargetDb::Sqlite(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = open_sqlite(&path)?;
                    conn.query_row(
                        "SELECT count(*), coalesce(sum(n), 0) FROM cdc_rows",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .context("cannot count the target's rows")
                })
                .await?
            }
        }
    }
}

fn open_sqlite(path: &Path) -> Result<rusqlite::Connection> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// Reads the target's probe row every [`POLL_EVERY`]: the latest `seq` on a watch channel, and
/// each increase with the instant it was seen.
struct Poller {
    seen: watch::Receiver<i64>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<Vec<(i64, Instant)>>>,
}

/// A connection reading the target's probe row (SQLite's is read on a thread of its own).
enum ProbeReader {
    Postgres(tokio_postgres::Client, tokio_postgres::Statement),
    MariaDb(mysql_async::Conn),
}

impl ProbeReader {
    async fn read(&mut self) -> Result<Option<i64>> {
        Ok(match self {
            ProbeReader::Postgres(client, read) => {
                client.query_opt(&*read, &[]).await?.map(|r| r.get(0))
            }
            ProbeReader::MariaDb(conn) => {
                conn.query_first::<i64, _>("SELECT seq FROM cdc_probe WHERE id = 1")
                    .await?
            }
        })
    }
}

impl Poller {
    async fn start(s: &Servers, target: &TargetDb) -> Result<Poller> {
        let (tx, seen) = watch::channel(-1);
        let stop = CancellationToken::new();
        let reader = match target {
            TargetDb::Postgres(db) => {
                let client = s.pg(db).await?;
                let read = client
                    .prepare("SELECT seq FROM cdc_probe WHERE id = 1")
                    .await
                    .context("the target has no probe table")?;
                ProbeReader::Postgres(client, read)
            }
            TargetDb::MariaDb(db) => ProbeReader::MariaDb(s.my(db).await?),
            TargetDb::Sqlite(path) => {
                let conn = open_sqlite(path)?;
                let stopped = stop.clone();
                let task = tokio::task::spawn_blocking(move || {
                    let mut history = Vec::new();
                    let mut last = -1;
                    while !stopped.is_cancelled() {
                        let seq: Option<i64> = conn
                            .query_row("SELECT seq FROM cdc_probe WHERE id = 1", [], |r| r.get(0))
                            .map(Some)
                            .or_else(|e| match e {
                                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                                e => Err(e),
                            })
                            .context("cannot read the target's probe")?;
                        note_seen(&tx, &mut history, &mut last, seq);
                        std::thread::sleep(POLL_EVERY);
                    }
                    Ok(history)
                });
                return Ok(Poller { seen, stop, task });
            }
        };
        let task = tokio::spawn(poll_loop(reader, tx, stop.clone()));
        Ok(Poller { seen, stop, task })
    }

    /// Waits until the target shows `seq` or later; returns the instant the poller saw it.
    async fn wait_for(&mut self, seq: i64, within: Duration) -> Result<Instant> {
        let waited = tokio::time::timeout(within, self.seen.wait_for(|s| *s >= seq))
            .await
            .map(|r| r.map(drop));
        match waited {
            Ok(Ok(())) => Ok(Instant::now()),
            // The poller ended: [`Poller::stop`] returns its error.
            Ok(Err(_)) => Err(anyhow!("the target's poller stopped")),
            Err(_) => Err(anyhow!(
                "the target did not show probe {seq} within {} s (it shows {})",
                within.as_secs(),
                *self.seen.borrow()
            )),
        }
    }

    fn latest(&self) -> i64 {
        *self.seen.borrow()
    }

    /// Stops polling; returns each increase seen.
    async fn stop(self) -> Result<Vec<(i64, Instant)>> {
        self.stop.cancel();
        self.task.await.context("the target's poller panicked")?
    }
}

fn note_seen(
    tx: &watch::Sender<i64>,
    history: &mut Vec<(i64, Instant)>,
    last: &mut i64,
    seq: Option<i64>,
) {
    if let Some(seq) = seq
        && seq > *last
    {
        *last = seq;
        history.push((seq, Instant::now()));
        tx.send_replace(seq);
    }
}

async fn poll_loop(
    mut reader: ProbeReader,
    tx: watch::Sender<i64>,
    stop: CancellationToken,
) -> Result<Vec<(i64, Instant)>> {
    let mut history = Vec::new();
    let mut last = -1;
    while !stop.is_cancelled() {
        let seq = reader
            .read()
            .await
            .context("cannot read the target's probe")?;
        note_seen(&tx, &mut history, &mut last, seq);
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
    }
    if let ProbeReader::MariaDb(conn) = reader {
        let _ = conn.disconnect().await;
    }
    Ok(history)
}

// ---------------------------------------------------------------------------------------------
// Replication control

/// Pauses and resumes a case's replication.
enum Control {
    Native {
        target_db: String,
        subscription: String,
    },
    Sluice {
        api: HubApi,
        integrate_job: String,
    },
}

impl Control {
    async fn pause(&self, s: &Servers) -> Result<()> {
        match self {
            Control::Native {
                target_db,
                subscription,
            } => {
                let client = s.pg(target_db).await?;
                client
                    .batch_execute(&format!("ALTER SUBSCRIPTION {subscription} DISABLE"))
                    .await
                    .context("cannot disable the subscription")?;
                // The apply worker notices and exits; only then is replication paused.
                wait_until(STATE_TIMEOUT, "the subscription's worker to stop", async || {
                    let row = client
                        .query_one(
                            "SELECT count(*) FROM pg_stat_subscription WHERE subname = $1 AND pid IS NOT NULL",
                            &[subscription],
                        )
                        .await?;
                    Ok(row.get::<_, i64>(0) == 0)
                })
                .await
            }
            Control::Sluice { api, integrate_job } => {
                api.post(
                    &format!("/api/latest/hubs/{HUB}/jobs_suspend"),
                    json!({"jobs": [integrate_job]}),
                )
                .await?;
                api.wait_job_state(integrate_job, "SUSPEND", PAUSE_TIMEOUT)
                    .await
            }
        }
    }

    async fn resume(&self, s: &Servers) -> Result<()> {
        match self {
            Control::Native {
                target_db,
                subscription,
            } => s
                .pg_exec(
                    target_db,
                    &format!("ALTER SUBSCRIPTION {subscription} ENABLE"),
                )
                .await
                .context("cannot enable the subscription"),
            Control::Sluice { api, integrate_job } => {
                // 204 when started; a body names the jobs left alone and why.
                let answer = api
                    .post(
                        &format!("/api/latest/hubs/{HUB}/jobs_start"),
                        json!({"jobs": [integrate_job], "unsuspend": true}),
                    )
                    .await?;
                match answer[integrate_job.as_str()]["not_started"].as_str() {
                    Some(why) => bail!("job {integrate_job} was not started: {why}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Polls `check` every 100 ms until it is true.
async fn wait_until(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("waited {} s for {what}", within.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The hub: a `sluice serve` child process and its API

/// A running `sluice serve` child with a fresh SQLite repository in a temp home.
struct ServeProcess {
    child: Child,
    base: String,
    /// Its last lines on stderr, for errors.
    tail: Arc<Mutex<VecDeque<String>>>,
    home: tempfile::TempDir,
}

impl ServeProcess {
    fn start() -> Result<ServeProcess> {
        let home = tempfile::Builder::new()
            .prefix("sluice-bench-cdc")
            .tempdir()
            .context("cannot create a temp dir")?;
        let exe = std::env::current_exe().context("cannot find the sluice binary")?;
        let mut child = Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("SLUICE_HOME", home.path())
            .env("SLUICE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env_remove("SLUICE_REPO")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start sluice serve")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let keep = |tail: &Arc<Mutex<VecDeque<String>>>, line: String| {
            if let Ok(mut t) = tail.lock() {
                if t.len() == 20 {
                    t.pop_front();
                }
                t.push_back(line);
            }
        };
        let base = loop {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "sluice serve stopped before listening: {}",
                    tail.lock()
                        .map(|t| t.iter().cloned().collect::<Vec<_>>().join(" | "))
                        .unwrap_or_default()
                );
            };
            let line = line?;
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .context("no address")?
                    .to_owned();
            }
            keep(&tail, line);
        };
        let base = match base.starts_with("http") {
            true => base,
            false => format!("http://{base}"),
        };
        std::thread::spawn({
            let tail = tail.clone();
            move || {
                for line in lines.map_while(Result::ok) {
                    keep(&tail, line);
                }
            }
        });
        Ok(ServeProcess {
            child,
            base,
            tail,
            home,
        })
    }

    /// Its peak resident memory so far (`VmHWM`), in MB.
    fn peak_rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }

    fn last_lines(&self) -> String {
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A logged-in client of the hub's REST API, with the change-capture case's calls.
#[derive(Clone)]
struct HubApi(crate::api::Api);

impl std::ops::Deref for HubApi {
    type Target = crate::api::Api;

    fn deref(&self) -> &crate::api::Api {
        &self.0
    }
}

impl HubApi {
    async fn login(base: &str) -> Result<HubApi> {
        Ok(HubApi(
            crate::api::Api::login_as(base, ADMIN_PASSWORD).await?,
        ))
    }

    /// Hub, locations `src` and `tgt`, channel `cdc` with Capture and Integrate.
    async fn define(&self, s: &Servers, source: &TargetDb, target: &TargetDb) -> Result<()> {
        self.post(
            "/api/latest/hubs",
            json!({"hub": HUB, "props": {"Description": "sluice bench --suite cdc"}}),
        )
        .await?;
        let pg = |db: &str| {
            json!({"Class": "postgresql", "Database_Host": s.pg.0, "Database_Port": s.pg.1,
                   "Database_Name": db, "Database_User": "postgres", "Database_Schema": "public",
                   "Database_Sslmode": "disable"})
        };
        let props = |db: &TargetDb| match db {
            TargetDb::Postgres(db) => pg(db),
            TargetDb::MariaDb(db) => json!({"Class": "mariadb", "Database_Host": s.my.0,
                "Database_Port": s.my.1, "Database_Name": db, "Database_User": "root"}),
            TargetDb::Sqlite(path) => {
                json!({"Class": "sqlite", "Database_Name": path.display().to_string()})
            }
        };
        for (loc, props) in [("src", props(source)), ("tgt", props(target))] {
            self.post(
                &format!("/api/latest/hubs/{HUB}/definition/locs"),
                json!({"loc": loc, "props": props}),
            )
            .await?;
        }
        self.post(
            &format!("/api/latest/hubs/{HUB}/definition/channels"),
            json!({
                "channel": CHANNEL,
                "description": "cdc bench",
                "loc_groups": {"SOURCE": {"members": ["src"]}, "TARGET": {"members": ["tgt"]}},
                "tables": channel_tables(),
                "actions": [
                    {"loc_scope": "SOURCE", "table_scope": "*", "type": "Capture"},
                    {"loc_scope": "TARGET", "table_scope": "*", "type": "Integrate"}
                ]
            }),
        )
        .await?;
        Ok(())
    }

    /// Waits until event `ev_id` is no longer ACTIVE; fails unless it is DONE.
    async fn wait_event(&self, ev_id: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let path = format!(
            "/api/latest/hubs/{HUB}/events?fetch_results=true&ev_id={}",
            ev_id.replace(':', "%3A")
        );
        loop {
            let events = self.get(&path).await?;
            let event = events
                .get(ev_id)
                .with_context(|| format!("event {ev_id} is missing"))?;
            match event["state"].as_str().unwrap_or_default() {
                "DONE" => return Ok(()),
                "ACTIVE" | "PENDING" => {}
                other => bail!(
                    "event {ev_id} ended {other}: {}",
                    event["response"].as_str().unwrap_or_default()
                ),
            }
            if Instant::now() > deadline {
                bail!("event {ev_id} still running after {} s", within.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn job_state(&self, job: &str) -> Result<Option<String>> {
        let jobs = self
            .get(&format!("/api/latest/hubs/{HUB}/jobs?job={job}"))
            .await?;
        Ok(jobs[job]["state"].as_str().map(str::to_owned))
    }

    async fn wait_job_state(&self, job: &str, state: &str, within: Duration) -> Result<()> {
        let mut last = None;
        let waited = wait_until(within, &format!("job {job} to be {state}"), async || {
            last = self.job_state(job).await?;
            Ok(last.as_deref() == Some(state))
        })
        .await;
        waited.with_context(|| format!("job {job} is {}", last.as_deref().unwrap_or("missing")))
    }

    /// Activates the channel with a refresh and waits until both jobs run.
    async fn activate(&self) -> Result<()> {
        let posted = self
            .post(
                &format!("/api/latest/hubs/{HUB}/channels/{CHANNEL}/activate"),
                json!({"refresh": true}),
            )
            .await
            .context("cannot activate the channel")?;
        let ev_id = posted["posted_ev_id"]
            .as_str()
            .context("the activate answer has no posted_ev_id")?;
        self.wait_event(ev_id, STATE_TIMEOUT)
            .await
            .context("the activation failed")?;
        self.wait_job_state(&format!("{CHANNEL}-cap-src"), "RUNNING", STATE_TIMEOUT)
            .await?;
        self.wait_job_state(&format!("{CHANNEL}-integ-tgt"), "RUNNING", STATE_TIMEOUT)
            .await
    }

    async fn deactivate(&self) -> Result<()> {
        let posted = self
            .post(
                &format!("/api/latest/hubs/{HUB}/channels/{CHANNEL}/deactivate"),
                json!({}),
            )
            .await?;
        if let Some(ev_id) = posted["posted_ev_id"].as_str() {
            self.wait_event(ev_id, STATE_TIMEOUT).await?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Cases

/// Options of a run.
#[derive(Debug, Clone)]
struct Options {
    backlog: u64,
    seconds: u32,
    rate: u32,
    sessions: u32,
}

/// The measurement shared by every case, replication running when it starts: the first probe
/// arrives, then the drain of a backlog, then the lag at a fixed rate.
async fn measure(
    s: &Servers,
    o: &Options,
    source_db: &TargetDb,
    target: &TargetDb,
    control: &Control,
    figures: &mut CaseFigures,
    g: &Printing,
) -> Result<()> {
    let mut load = Load::connect(s, source_db, o.sessions).await?;
    let mut prober = Prober::connect(s, source_db).await?;
    let mut poller = Poller::start(s, target).await?;
    let mut probes = Vec::new();
    let measured = async {
        let (first, _) = prober.commit().await?;
        poller
            .wait_for(first, STATE_TIMEOUT)
            .await
            .context("changes do not arrive at the target")?;
        let verify = async |phase: &str| -> Result<()> {
            let (a, b) = (source_db.totals(s).await?, target.totals(s).await?);
            if a != b {
                bail!(
                    "after the {phase} the target differs from the source: {} rows (sum of n {}) against {} ({})",
                    b.0,
                    b.1,
                    a.0,
                    a.1
                );
            }
            Ok(())
        };

        // 1. Lag at a fixed rate (first: it needs no pause).
        if !g.json {
            note!(
                "  {} changes/s for {} s with a probe every {} ms …",
                thousands(u64::from(o.rate)),
                o.seconds,
                PROBE_EVERY.as_millis()
            );
        }
        let started = Instant::now();
        let until = started + Duration::from_secs(u64::from(o.seconds));
        let (changes, committed) = tokio::try_join!(
            load.paced(f64::from(o.rate), until),
            prober.every_tick(until)
        )?;
        probes = committed;
        let seconds = started.elapsed().as_secs_f64();
        // A last probe after the load's last commit: once it is visible, everything is.
        let settled = match prober.commit().await {
            Ok((fence, _)) => poller.wait_for(fence, SETTLE_TIMEOUT).await.map(drop),
            Err(e) => Err(e),
        };
        figures.lag = Some(LagFigures {
            rate_asked: o.rate,
            rate_achieved: changes as f64 / seconds,
            seconds,
            changes,
            probes: probes.len(),
            probes_missing: 0,
            p50_ms: None,
            p99_ms: None,
            max_ms: None,
        });
        settled?;
        verify("lag measurement").await?;

        // 2. Drain a backlog.
        control.pause(s).await?;
        if !g.json {
            note!(
                "  replication paused; writing a backlog of {} changes …",
                thousands(o.backlog)
            );
        }
        let binlog_from = match source_db {
            TargetDb::MariaDb(_) => Some(binlog_position(s).await?),
            _ => None,
        };
        let written = load.backlog(o.backlog).await?;
        let (last, _) = prober.commit().await?;
        let binlog_range = match binlog_from {
            Some(from) => Some((from, binlog_position(s).await?)),
            None => None,
        };
        if poller.latest() >= last {
            bail!("replication was not paused: the target applied the backlog while paused");
        }
        figures.backlog_changes = written;
        if !g.json {
            note!("  replication resumed; draining …");
        }
        let resumed = Instant::now();
        control.resume(s).await?;
        let within = Duration::from_secs((o.backlog as i64 / SLOWEST_DRAIN).max(120) as u64);
        let seen = poller.wait_for(last, within).await?;
        let drain = seen.duration_since(resumed).as_secs_f64();
        figures.drain_seconds = Some(drain);
        figures.changes_per_second = Some(written as f64 / drain);
        if !g.json {
            note!("  drained in {drain:.2} s");
        }
        verify("drain").await?;
        if let Some((from, to)) = binlog_range {
            let seconds = mariadb_binlog_seconds(s, &from, &to).await?;
            figures.reference_changes_per_second = Some(written as f64 / seconds);
            figures.vs_reference = ratio(
                figures.changes_per_second,
                figures.reference_changes_per_second,
            );
            if !g.json {
                note!("  mariadb-binlog decoded the same binary log range in {seconds:.2} s");
            }
        }
        Ok(())

    }
    .await;
    let history = match poller.stop().await {
        Ok(history) => history,
        // A poller that failed is why the measurement failed.
        Err(e) => return Err(e.context("the target's poller failed")),
    };
    // Figures of the probes that arrived even when the target did not settle in time.
    let (lags, missing) = lags_ms(&probes, &history);
    if let Some(lag) = &mut figures.lag {
        lag.probes_missing = missing;
        lag.p50_ms = percentile(&lags, 0.50);
        lag.p99_ms = percentile(&lags, 0.99);
        lag.max_ms = lags.last().copied();
    }
    measured?;
    figures.verified = true;
    Ok(())
}

/// Creates the source database: tables and seed rows.
async fn make_source(s: &Servers, made: &mut Made, case: Case, data: &Path) -> Result<TargetDb> {
    let db = database_name(case, "src");
    if case == Case::SqliteToPostgres {
        // In the hub server's data directory, where it takes SQLite files from.
        std::fs::create_dir_all(data)
            .with_context(|| format!("cannot create {}", data.display()))?;
        let path = data.join("cdc-source.db");
        let script = format!("{SQLITE_SOURCE_TABLES}\n{}", sqlite_seed_sql(SEED_ROWS));
        let file = path.clone();
        tokio::task::spawn_blocking(move || {
            rusqlite::Connection::open(&file)?.execute_batch(&script)
        })
        .await?
        .with_context(|| format!("cannot make the SQLite source {}", path.display()))?;
        return Ok(TargetDb::Sqlite(path));
    }
    if case.maria_source() {
        s.my_exec(&format!("CREATE DATABASE `{db}`")).await?;
        made.my_databases.push(db.clone());
        let mut conn = s.my(&db).await?;
        for sql in [MARIA_SOURCE_TABLES.to_owned(), maria_seed_sql(SEED_ROWS)] {
            conn.query_drop(&sql)
                .await
                .with_context(|| format!("MariaDB refused {sql:?}"))?;
        }
        let _ = conn.disconnect().await;
        return Ok(TargetDb::MariaDb(db));
    }
    s.pg_exec("postgres", &format!("CREATE DATABASE {db}"))
        .await?;
    made.pg_databases.push(db.clone());
    s.pg_exec(&db, SOURCE_TABLES).await?;
    s.pg_exec(&db, &seed_sql(SEED_ROWS)).await?;
    s.pg_exec(&db, "VACUUM ANALYZE cdc_rows").await?;
    Ok(TargetDb::Postgres(db))
}

/// `SHOW MASTER STATUS` of the MariaDB server: file and offset.
async fn binlog_position(s: &Servers) -> Result<(String, u64)> {
    let mut conn = s.my("").await?;
    let row: Option<mysql_async::Row> = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .context("cannot read the binary log position")?;
    let _ = conn.disconnect().await;
    row.and_then(|r| Some((r.get::<String, _>(0)?, r.get::<u64, _>(1)?)))
        .context("the MariaDB server writes no binary log (log_bin is off)")
}

/// How long `mariadb-binlog --read-from-remote-server --verbose` takes to read and decode the
/// binary log from `from` to `to` into /dev/null (the reference of the MariaDB cases).
async fn mariadb_binlog_seconds(
    s: &Servers,
    from: &(String, u64),
    to: &(String, u64),
) -> Result<f64> {
    let mut conn = s.my("").await?;
    let logs: Vec<mysql_async::Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .context("cannot list the binary logs")?;
    let _ = conn.disconnect().await;
    let names: Vec<String> = logs.iter().filter_map(|r| r.get::<String, _>(0)).collect();
    let first = names.iter().position(|n| *n == from.0);
    let last = names.iter().position(|n| *n == to.0);
    let (Some(first), Some(last)) = (first, last) else {
        bail!(
            "the binary logs of the backlog ({} to {}) are gone",
            from.0,
            to.0
        );
    };
    let files = names[first..=last].to_vec();
    let (host, port) = (s.my.0.clone(), s.my.1);
    let (start, stop) = (from.1, to.1);
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let status = Command::new("mariadb-binlog")
            .args([
                "--read-from-remote-server",
                &format!("--host={host}"),
                &format!("--port={port}"),
                "--user=root",
                "--verbose",
                &format!("--start-position={start}"),
                &format!("--stop-position={stop}"),
            ])
            .args(&files)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("cannot run mariadb-binlog (apt-get install mariadb-client)")?;
        if !status.success() {
            bail!("mariadb-binlog failed ({status})");
        }
        Ok(started.elapsed().as_secs_f64())
    })
    .await?
}

/// The native reference: publication, slot, subscription, then [`measure`].
async fn native(
    s: &Servers,
    o: &Options,
    made: &mut Made,
    figures: &mut CaseFigures,
    g: &Printing,
) -> Result<()> {
    let source = make_source(s, made, Case::Native, Path::new("")).await?;
    let TargetDb::Postgres(source_db) = source.clone() else {
        bail!("the native reference reads a PostgreSQL source");
    };
    let target_db = database_name(Case::Native, "tgt");
    s.pg_exec("postgres", &format!("CREATE DATABASE {target_db}"))
        .await?;
    made.pg_databases.push(target_db.clone());
    s.pg_exec(&target_db, SOURCE_TABLES).await?;
    s.pg_exec(&target_db, &seed_sql(SEED_ROWS)).await?;
    // The probe row's commit time differs; only `seq` is compared.
    let name = format!("sluice_bench_cdc_{}", std::process::id());
    s.pg_exec(
        &source_db,
        &format!("CREATE PUBLICATION {name} FOR TABLE cdc_rows, cdc_probe"),
    )
    .await?;
    s.pg(&source_db)
        .await?
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&name],
        )
        .await
        .context("cannot create the replication slot")?;
    s.pg_exec(
        &target_db,
        &format!(
            "CREATE SUBSCRIPTION {name} CONNECTION 'host={} port={} user=postgres dbname={source_db}' \
             PUBLICATION {name} WITH (create_slot = false, slot_name = {name}, copy_data = false)",
            s.pg.0, s.pg.1
        ),
    )
    .await
    .context("cannot create the subscription")?;
    made.subscription = Some((target_db.clone(), name.clone()));
    let control = Control::Native {
        target_db: target_db.clone(),
        subscription: name,
    };
    measure(
        s,
        o,
        &source,
        &TargetDb::Postgres(target_db),
        &control,
        figures,
        g,
    )
    .await
}

/// A sluice case: a `sluice serve` child, the channel defined and activated, then [`measure`].
async fn sluice(
    s: &Servers,
    o: &Options,
    case: Case,
    made: &mut Made,
    figures: &mut CaseFigures,
    g: &Printing,
) -> Result<()> {
    let serve = ServeProcess::start()?;
    let source_db = make_source(s, made, case, &serve.home.path().join("data")).await?;
    let target = match case {
        Case::MariaDb | Case::MariaToMariaDb => {
            let db = database_name(case, "tgt");
            s.my_exec(&format!("CREATE DATABASE `{db}`")).await?;
            made.my_databases.push(db.clone());
            TargetDb::MariaDb(db)
        }
        // The hub server keeps SQLite files in its data directory.
        Case::Sqlite => TargetDb::Sqlite(serve.home.path().join("data").join("cdc-target.db")),
        Case::Postgres | Case::Native | Case::MariaToPostgres | Case::SqliteToPostgres => {
            let db = database_name(case, "tgt");
            s.pg_exec("postgres", &format!("CREATE DATABASE {db}"))
                .await?;
            made.pg_databases.push(db.clone());
            TargetDb::Postgres(db)
        }
    };
    let outcome = async {
        let api = HubApi::login(&serve.base).await?;
        api.define(s, &source_db, &target).await?;
        if !g.json {
            note!(
                "  sluice serve at {}; activating channel {CHANNEL} …",
                serve.base
            );
        }
        api.activate().await?;
        // The refresh created and loaded the target: the probe row is there.
        wait_until(STATE_TIMEOUT, "the target's probe row", async || {
            Ok(target.seq(s).await?.is_some())
        })
        .await?;
        let control = Control::Sluice {
            api: api.clone(),
            integrate_job: format!("{CHANNEL}-integ-tgt"),
        };
        let measured = measure(s, o, &source_db, &target, &control, figures, g).await;
        figures.peak_rss_mb = serve.peak_rss_mb();
        let deactivated = api.deactivate().await.context("the deactivation failed");
        measured.and(deactivated)
    }
    .await;
    if figures.peak_rss_mb.is_none() {
        figures.peak_rss_mb = serve.peak_rss_mb();
    }
    outcome.map_err(|e| {
        let lines = serve.last_lines();
        match lines.is_empty() {
            true => e,
            false => e.context(format!("sluice serve's last lines:\n{lines}")),
        }
    })
}

/// Runs one case and removes what it made; an error ends up in the figures.
async fn run_case(s: &Servers, o: &Options, case: Case, g: &Printing) -> CaseFigures {
    let mut figures = CaseFigures::new(&case);
    let mut made = Made::default();
    if !g.json {
        note!("{} …", case.title());
    }
    let outcome = match case {
        Case::Native => native(s, o, &mut made, &mut figures, g).await,
        _ => sluice(s, o, case, &mut made, &mut figures, g).await,
    };
    let leftovers = made.remove(s).await;
    if let Err(e) = outcome {
        if !g.json {
            note!("  failed: {e:#}");
        }
        figures.error = Some(format!("{e:#}"));
    }
    if !leftovers.is_empty() {
        let msg = format!("cleaning up failed: {}", leftovers.join("; "));
        if !g.json {
            note!("  {msg}");
        }
        figures.error = Some(match figures.error.take() {
            Some(e) => format!("{e}; {msg}"),
            None => msg,
        });
    }
    figures
}

/// The figures of a run.
#[derive(Debug, serde::Serialize)]
struct Report {
    backlog_changes: u64,
    seed_rows: i64,
    sessions: u32,
    rate: u32,
    seconds: u32,
    probe_every_ms: u128,
    poll_every_ms: u128,
    cores: usize,
    cases: Vec<CaseFigures>,
}

/// Runs the suite.
pub async fn run(args: BenchArgs, g: &Printing) -> Result<()> {
    // reqwest is built without a crypto provider of its own (plain HTTP needs none to run).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let backlog = args.rows.unwrap_or(DEFAULT_BACKLOG);
    if backlog < 1 {
        bail!("--rows must be at least 1");
    }
    let s = Servers {
        pg: host_port(&args.postgres)?,
        my: host_port(&args.mariadb)?,
    };
    let o = Options {
        backlog: backlog as u64,
        seconds: args.seconds.unwrap_or(DEFAULT_SECONDS),
        rate: args.rate,
        sessions: args.sessions,
    };
    let report = measure_all(&s, &o, &args.targets, g).await;
    if g.json {
        print_json(&report)?;
    } else {
        print_report(&report, args.markdown);
    }
    let failed: Vec<&str> = report
        .cases
        .iter()
        .filter(|c| c.error.is_some())
        .map(|c| c.case.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("{} case(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

async fn measure_all(s: &Servers, o: &Options, targets: &[String], g: &Printing) -> Report {
    let mut cases = Vec::new();
    for case in Case::ALL {
        if targets.iter().any(|t| t == case.key()) {
            cases.push(run_case(s, o, case, g).await);
        }
    }
    let native = cases
        .iter()
        .find(|c| c.target == Case::Native.key())
        .and_then(|c| c.changes_per_second);
    for c in &mut cases {
        if !c.target.starts_with("mariadb-") {
            c.vs_native = ratio(c.changes_per_second, native);
        }
    }
    Report {
        backlog_changes: o.backlog,
        seed_rows: SEED_ROWS,
        sessions: o.sessions,
        rate: o.rate,
        seconds: o.seconds,
        probe_every_ms: PROBE_EVERY.as_millis(),
        poll_every_ms: POLL_EVERY.as_millis(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cases,
    }
}

fn print_report(r: &Report, markdown: bool) {
    let opt = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
    };
    let headers = [
        "case",
        "drain s",
        "changes/s",
        "× native",
        "mariadb-binlog changes/s",
        "× mariadb-binlog",
        "rate achieved",
        "lag p50 ms",
        "lag p99 ms",
        "lag max ms",
        "peak RSS MB",
    ];
    let rows: Vec<Vec<String>> = r
        .cases
        .iter()
        .map(|c| {
            let lag = c.lag.as_ref();
            vec![
                match &c.error {
                    Some(_) => format!("{} (failed)", c.case),
                    None => c.case.clone(),
                },
                opt(c.drain_seconds, 2),
                c.changes_per_second
                    .map_or_else(|| "-".to_owned(), |v| thousands(v.round() as u64)),
                opt(c.vs_native, 2),
                c.reference_changes_per_second
                    .map_or_else(|| "-".to_owned(), |v| thousands(v.round() as u64)),
                opt(c.vs_reference, 2),
                lag.map_or_else(
                    || "-".to_owned(),
                    |l| thousands(l.rate_achieved.round() as u64),
                ),
                opt(lag.and_then(|l| l.p50_ms), 1),
                opt(lag.and_then(|l| l.p99_ms), 1),
                opt(lag.and_then(|l| l.max_ms), 1),
                opt(c.peak_rss_mb, 0),
            ]
        })
        .collect();
    say!(
        "backlog of {} changes drained after resuming; lag at {} changes/s for {} s, a probe every {} ms, \
         the target polled every {} ms; {} sessions, transactions of {}–{} changes (~60 % insert, 30 % update, \
         10 % delete); {} cores shared by source, target, hub and load\n",
        thousands(r.backlog_changes),
        thousands(u64::from(r.rate)),
        r.seconds,
        r.probe_every_ms,
        r.poll_every_ms,
        r.sessions,
        TX_CHANGES.0,
        TX_CHANGES.1,
        r.cores
    );
    if markdown {
        say!("| {} |", headers.join(" | "));
        say!("|---|{}", "---:|".repeat(headers.len() - 1));
        for row in &rows {
            say!("| {} |", row.join(" | "));
        }
    } else {
        say!("{}", table(&headers, rows));
    }
    for c in &r.cases {
        if let Some(e) = &c.error {
            say!("{}: {e}", c.case);
        }
        if let Some(l) = &c.lag
            && l.probes_missing > 0
        {
            say!(
                "{}: {} of {} probes never arrived",
                c.case,
                l.probes_missing,
                l.probes
            );
        }
    }
    if let Some(pg) = r.cases.iter().find(|c| c.target == Case::Postgres.key()) {
        let met = |ok: bool| if ok { "met" } else { "MISSED" };
        let lag_p99 = pg.lag.as_ref().and_then(|l| l.p99_ms);
        say!(
            "\ntargets (PG→PG): ≥ {} changes/s {}; ≥ {:.1}× native {}; p99 lag < {:.0} ms at {} changes/s {}; peak RSS < {:.0} MB {}",
            thousands(TARGET_CHANGES_PER_SECOND as u64),
            met(pg
                .changes_per_second
                .is_some_and(|v| v >= TARGET_CHANGES_PER_SECOND)),
            TARGET_VS_NATIVE,
            met(pg.vs_native.is_some_and(|v| v >= TARGET_VS_NATIVE)),
            TARGET_P99_MS,
            thousands(u64::from(r.rate)),
            met(lag_p99.is_some_and(|v| v < TARGET_P99_MS)),
            TARGET_RSS_MB,
            met(pg.peak_rss_mb.is_some_and(|v| v < TARGET_RSS_MB)),
        );
    }
    if let Some(my) = r
        .cases
        .iter()
        .find(|c| c.target == Case::MariaToPostgres.key())
    {
        let met = |ok: bool| if ok { "met" } else { "MISSED" };
        let lag_p99 = my.lag.as_ref().and_then(|l| l.p99_ms);
        say!(
            "targets (MariaDB→PG): ≥ {} changes/s {}; p99 lag < {:.0} ms at {} changes/s {}; peak RSS < {:.0} MB {}",
            thousands(TARGET_CHANGES_PER_SECOND as u64),
            met(my
                .changes_per_second
                .is_some_and(|v| v >= TARGET_CHANGES_PER_SECOND)),
            TARGET_P99_MS,
            thousands(u64::from(r.rate)),
            met(lag_p99.is_some_and(|v| v < TARGET_P99_MS)),
            TARGET_RSS_MB,
            met(my.peak_rss_mb.is_some_and(|v| v < TARGET_RSS_MB)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.50), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn ratios_need_both_sides_and_a_reference_above_zero() {
        assert_eq!(ratio(Some(30.0), Some(20.0)), Some(1.5));
        assert_eq!(ratio(None, Some(20.0)), None);
        assert_eq!(ratio(Some(30.0), None), None);
        assert_eq!(ratio(Some(30.0), Some(0.0)), None);
    }

    #[test]
    fn a_probe_lags_until_the_first_seq_at_least_its_own_is_seen() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Probe 2 was never seen by itself: the poller jumped from 1 to 3.
        let committed = [(1, at(0)), (2, at(50)), (3, at(100)), (4, at(150))];
        let seen = [(1, at(7)), (3, at(120))];
        let (lags, missing) = lags_ms(&committed, &seen);
        assert_eq!(missing, 1);
        let rounded: Vec<u64> = lags.iter().map(|l| l.round() as u64).collect();
        assert_eq!(rounded, vec![7, 20, 70]);
        // Seen before the COMMIT returned counts as no lag.
        let (lags, _) = lags_ms(&[(5, at(30))], &[(5, at(29))]);
        assert_eq!(lags, vec![0.0]);
    }

    #[test]
    fn transactions_mix_inserts_updates_and_deletes_of_the_sessions_own_keys() {
        let mut keys = Keys::new(1, 4, 100);
        assert_eq!(keys.live.len(), 25);
        assert!(keys.live.iter().all(|id| id % 4 == 1));
        assert_eq!(keys.next_id, 101);
        let mut total = Mix::default();
        for i in 0..200 {
            let dialect = [Dialect::Postgres, Dialect::Maria, Dialect::Sqlite][i % 3];
            let maria = dialect == Dialect::Maria;
            let (sql, mix) = keys.transaction(50, dialect);
            assert_eq!(mix.total(), 50);
            let begin = match dialect {
                Dialect::Maria => "START TRANSACTION;",
                Dialect::Sqlite => "BEGIN IMMEDIATE;",
                Dialect::Postgres => "BEGIN;",
            };
            assert!(sql.starts_with(begin) && sql.ends_with("COMMIT;"), "{sql}");
            if maria {
                assert!(
                    !sql.contains("+00'"),
                    "MariaDB literals carry no zone: {sql}"
                );
            }
            total.inserts += mix.inserts;
            total.updates += mix.updates;
            total.deletes += mix.deletes;
        }
        let share = |n: u64| n as f64 / 10_000.0;
        assert!((0.55..0.65).contains(&share(total.inserts)), "{total:?}");
        assert!((0.25..0.35).contains(&share(total.updates)), "{total:?}");
        assert!((0.07..0.13).contains(&share(total.deletes)), "{total:?}");
        assert!(keys.live.iter().all(|id| id % 4 == 1));
        let live: std::collections::HashSet<i64> = keys.live.iter().copied().collect();
        assert_eq!(live.len(), keys.live.len(), "a key is live twice");
        assert_eq!(
            keys.live.len() as u64,
            25 + total.inserts - total.deletes,
            "{total:?}"
        );
    }

    /// The native reference end to end on the real server, in smoke size: generator, probe,
    /// poller, pause and resume, verification and clean-up (no timed assertions).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_native_reference_runs_end_to_end_and_leaves_nothing_behind() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pg = std::env::var("SLUICE_TEST_PG")
            .ok()
            .and_then(|u| {
                u.split('@')
                    .nth(1)
                    .map(|h| h.trim_end_matches('/').to_owned())
            })
            .unwrap_or_else(|| "127.0.0.1:5432".to_owned());
        let s = Servers {
            pg: host_port(&pg).expect("HOST:PORT"),
            my: ("127.0.0.1".to_owned(), 3306),
        };
        let o = Options {
            backlog: 2_000,
            seconds: 2,
            rate: 1_000,
            sessions: 2,
        };
        let g = Printing { json: true };
        let report = measure_all(&s, &o, &["native".to_owned()], &g).await;
        assert_eq!(report.cases.len(), 1);
        let c = &report.cases[0];
        assert_eq!(c.error, None, "{c:?}");
        assert!(c.verified);
        assert_eq!(c.backlog_changes, 2_000);
        assert!(c.changes_per_second.is_some_and(|v| v > 0.0));
        assert_eq!(c.vs_native, Some(1.0));
        let lag = c.lag.as_ref().expect("lag figures");
        assert!(lag.probes > 0 && lag.probes_missing == 0, "{lag:?}");
        assert!(lag.changes > 0);
        let (p50, p99, max) = (
            lag.p50_ms.expect("p50"),
            lag.p99_ms.expect("p99"),
            lag.max_ms.expect("max"),
        );
        assert!(p50 <= p99 && p99 <= max, "{lag:?}");
        // Nothing of the case is left on the server.
        let admin = s.pg("postgres").await.expect("admin connection");
        let prefix = format!("sluice_cdc_native_%_{}_%", std::process::id());
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname LIKE $1",
                &[&prefix],
            )
            .await
            .expect("count databases")
            .get(0);
        assert_eq!(left, 0, "a database of the case was left behind");
        let slot = format!("sluice_bench_cdc_{}", std::process::id());
        let slots: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .expect("count slots")
            .get(0);
        assert_eq!(slots, 0, "the slot was left behind");
        let subs: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_subscription WHERE subname = $1",
                &[&slot],
            )
            .await
            .expect("count subscriptions")
            .get(0);
        assert_eq!(subs, 0, "the subscription was left behind");
    }
}
