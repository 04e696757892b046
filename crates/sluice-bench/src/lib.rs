//! sluice's benchmarks, run by `sluice bench` ([`run`] with [`BenchArgs`]); see
//! `docs/benchmarks.md`.
//!
//! Suites: `engines` and `sqlite` time the data path (each case a `sluice refresh` / `sluice
//! compare` child process of the `sluice` binary, which reports its own peak RSS, see
//! [`report_peak_rss`]) against the database's own fastest copy; `api` loads a hub server while a
//! refresh runs; `events` measures the event hub against NATS JetStream; `logins` probes a `sluice
//! serve` process during a login flood; `cdc` measures change capture from PostgreSQL into each
//! engine (drain throughput, end-to-end lag, peak RSS) against PostgreSQL's own logical
//! replication; `hub` times refresh and compare through a `sluice serve` process's HTTP API
//! beside the client programs' own pipelines and sling, in interleaved rounds.
//!
//! The `sqlite` suite builds a table of `--rows` rows (bigint key, int, varchar(64),
//! numeric(12,2), timestamptz, date, bool, a ~100-byte JSON document, ~60 bytes of text with some
//! NULLs) in a SQLite file. Its reference is SQLite copying the table itself, `INSERT … SELECT`
//! across `ATTACH` in one transaction, with the same bundled SQLite, also in a child process
//! (`sluice bench-reference`, [`reference_copy`]).

/// Writes a line to stderr. A closed stderr never stops the work, so write errors are ignored.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Writes a line to stdout, ignoring a closed pipe.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod api;
mod args;
mod cdc;
mod child;
mod engines;
mod events;
mod hub;
mod logins;
mod report;
mod server;
mod source;
mod sqlite;

pub use args::{BenchArgs, Printing};
pub use child::{REPORT_RSS_ENV, report_peak_rss};
pub use source::reference_copy;

/// Runs the suite `args.suite`.
pub async fn run(args: BenchArgs, printing: Printing) -> anyhow::Result<()> {
    let g = &printing;
    match args.suite.as_str() {
        "engines" => engines::run(args, g).await,
        "api" => api::run(args, g).await,
        "events" => events::run(args, g).await,
        "logins" => logins::run(args, g).await,
        "cdc" => cdc::run(args, g).await,
        "hub" => hub::run(args, g).await,
        _ => sqlite::run(args, g).await,
    }
}
