//! The options of `sluice bench` and how its results are printed.

use std::path::PathBuf;

use clap::Args;

/// Options of `sluice bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// `engines`: every pair of PostgreSQL, MariaDB and SQLite against PostgreSQL's own COPY pipe;
    /// `sqlite`: the SQLite data path against SQLite's own copy;
    /// `api`: a loopback load check of a `sluice serve` process with wrk while a refresh runs;
    /// `events`: the event hub's publish throughput and publish→delivery latency over HTTP, on a
    /// SQLite and a PostgreSQL repository ($SLUICE_TEST_PG), against NATS JetStream
    /// ($SLUICE_TEST_NATS) as the reference;
    /// `logins`: `/health` and an authenticated GET of a `sluice serve` process while a flood of
    /// logins with random names hits it (10 s per phase and run);
    /// `cdc`: change capture from PostgreSQL into each engine (drain throughput of a backlog,
    /// end-to-end lag at a fixed rate, the hub's peak RSS) against PostgreSQL's own logical
    /// replication;
    /// `hub`: refresh and compare through a `sluice serve` process's HTTP API, in interleaved
    /// rounds beside the databases' own client pipelines and sling (`--cases`).
    #[arg(long, default_value = "engines", value_parser = ["engines", "sqlite", "api", "events", "logins", "cdc", "hub"])]
    pub suite: String,
    /// Working directory (SQLite files and the bench hub's repository).
    #[arg(long, default_value = "sluice-bench")]
    pub dir: PathBuf,
    /// Rows in the bench table (default: 2,000,000 for engines, 1,000,000 for sqlite,
    /// 3,000,000 for api); suite cdc: changes in the backlog (default 500,000).
    #[arg(long)]
    pub rows: Option<i64>,
    /// PostgreSQL server of the engines suite (user postgres; database sluice_bench is replaced).
    #[arg(long, default_value = "127.0.0.1:5432")]
    pub postgres: String,
    /// MariaDB server of the engines suite (user root; databases sluice_bench_* are replaced).
    #[arg(long, default_value = "127.0.0.1:3306")]
    pub mariadb: String,
    /// Runs of each case (default 3; suite hub: rounds, default 5); the median time is reported.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: Option<u32>,
    /// Print the results as Markdown tables (for docs/benchmarks.md).
    #[arg(long)]
    pub markdown: bool,
    /// Suite api: concurrent connections of the load generator.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Suite api: seconds measured (after a 2 s warm-up; default 10); suite cdc: seconds of the
    /// fixed-rate load of the lag measurement (default 30).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub seconds: Option<u32>,
    /// Suite cdc: changes per second of the lag measurement's load.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
    /// Suite cdc: sessions writing the load, each its own connection.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub sessions: u32,
    /// Suite cdc: the cases to run, of `native` (PostgreSQL's own logical replication PG→PG, the
    /// reference), `postgresql`, `mariadb`, `sqlite` (sluice from PostgreSQL into that engine),
    /// `mariadb-postgresql`, `mariadb-mariadb` (sluice from MariaDB into that engine, against
    /// `mariadb-binlog` decoding the same binary log), `sqlite-postgresql` (sluice from a SQLite
    /// file, trigger capture, into PostgreSQL).
    #[arg(long, value_delimiter = ',',
          default_value = "native,postgresql,mariadb,sqlite,mariadb-postgresql,mariadb-mariadb,sqlite-postgresql",
          value_parser = ["native", "postgresql", "mariadb", "sqlite", "mariadb-postgresql",
                          "mariadb-mariadb", "sqlite-postgresql"])]
    pub targets: Vec<String>,
    /// Suite hub: the cases to run, of `pg-pg`, `mariadb-pg`, `pg-mariadb` (refresh against the
    /// client programs' pipe), `compare` (two identical PostgreSQL tables), `incremental` (after
    /// 1 % new rows, against sling) and `scale` (refresh and compare of every engine pair at
    /// `--rows` and at 2,000,000 rows, for linearity; not in the default set).
    #[arg(long, value_delimiter = ',',
          default_value = "pg-pg,mariadb-pg,pg-mariadb,compare,incremental",
          value_parser = ["pg-pg", "mariadb-pg", "pg-mariadb", "compare", "incremental", "scale"])]
    pub cases: Vec<String>,
    /// Suite api: the hub server's repository, `postgres://USER@HOST:PORT` to use a fresh database
    /// on that PostgreSQL server (dropped afterwards); default a fresh SQLite file in a temp dir.
    #[arg(long, value_name = "URL")]
    pub repo: Option<String>,
    /// Suite api: no refresh during the measurement (the request path alone, for comparison).
    #[arg(long)]
    pub no_refresh: bool,
    /// Suite api: an option of `sluice serve` for the bench server (repeat for more), e.g.
    /// `--server-arg=--job-threads=1`.
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    pub server_arg: Vec<String>,
}

impl BenchArgs {
    /// `--runs`, or the suite's `default`.
    pub fn runs_or(&self, default: u32) -> u32 {
        self.runs.unwrap_or(default)
    }
}

/// How the results are printed: tables for people (progress notes on stderr), or JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct Printing {
    /// Print the results as JSON, and no progress notes.
    pub json: bool,
}
