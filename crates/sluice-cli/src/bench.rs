//! `sluice bench`: timed runs of the data path against the database's own fastest copy, in one run.
//!
//! It builds a table of `--rows` rows (bigint key, int, varchar(64), numeric(12,2), timestamptz, date,
//! bool, a ~100-byte JSON document, ~60 bytes of text with some NULLs) in a SQLite file, then runs
//! each case as a child process (`sluice refresh` / `sluice compare` on a bench hub) and reports rows/s,
//! MB/s and the child's peak RSS (read from `/proc/self/status` by the child itself, see
//! [`report_peak_rss`]). The reference is SQLite copying the table itself, `INSERT … SELECT` across
//! `ATTACH` in one transaction, with the same bundled SQLite, also in a child process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use rusqlite::{Connection, params};

use crate::output::{json, table, thousands};
use crate::{Global, Outcome};

/// `sluice bench --suite events`.
#[path = "bench_events.rs"]
mod events;

/// Environment variable that makes `sluice` print its peak RSS to stderr when it exits.
pub const REPORT_RSS_ENV: &str = "SLUICE_REPORT_PEAK_RSS";

/// Options of `sluice bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// `engines`: every pair of PostgreSQL, MariaDB and SQLite against PostgreSQL's own COPY pipe;
    /// `sqlite`: the SQLite data path against SQLite's own copy;
    /// `api`: a loopback load check of the hub server while a refresh runs;
    /// `events`: the event hub's publish throughput and publish→delivery latency over HTTP, on a
    /// SQLite and a PostgreSQL repository ($SLUICE_TEST_PG), against NATS JetStream
    /// ($SLUICE_TEST_NATS) as the reference;
    /// `logins`: `/health` and an authenticated GET of a `sluice serve` process while a flood of
    /// logins with random names hits it (10 s per phase and run).
    #[arg(long, default_value = "engines", value_parser = ["engines", "sqlite", "api", "events", "logins"])]
    pub suite: String,
    /// Working directory (SQLite files and the bench hub's repository).
    #[arg(long, default_value = "sluice-bench")]
    pub dir: PathBuf,
    /// Rows in the bench table (default: 2,000,000 for engines, 1,000,000 for sqlite,
    /// 3,000,000 for api).
    #[arg(long)]
    pub rows: Option<i64>,
    /// PostgreSQL server of the engines suite (user postgres; database sluice_bench is replaced).
    #[arg(long, default_value = "127.0.0.1:5432")]
    pub postgres: String,
    /// MariaDB server of the engines suite (user root; databases sluice_bench_* are replaced).
    #[arg(long, default_value = "127.0.0.1:3306")]
    pub mariadb: String,
    /// Runs of each case; the median time is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: u32,
    /// Print the results as Markdown tables (for docs/benchmarks.md).
    #[arg(long)]
    pub markdown: bool,
    /// Suite api: concurrent connections of the load generator.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Suite api: seconds measured (after a 2 s warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub seconds: u32,
    /// Suite api: the hub server's repository, `postgres://USER@HOST:PORT` to use a fresh database
    /// on that PostgreSQL server (dropped afterwards); default a fresh SQLite file in a temp dir.
    #[arg(long, value_name = "URL")]
    pub repo: Option<String>,
    /// Suite api: no refresh during the measurement (the request path alone, for comparison).
    #[arg(long)]
    pub no_refresh: bool,
}

/// Prints `peak_rss_kb=N` to stderr when [`REPORT_RSS_ENV`] is set.
pub fn report_peak_rss() {
    if std::env::var_os(REPORT_RSS_ENV).is_none() {
        return;
    }
    if let Some(kb) = peak_rss_kb() {
        note!("peak_rss_kb={kb}");
    }
}

fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

const BENCH_TABLE: &str = "CREATE TABLE bench_rows (
    id INTEGER PRIMARY KEY,
    n INT NOT NULL,
    name VARCHAR(64) NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    created TIMESTAMPTZ NOT NULL,
    day DATE NOT NULL,
    flag BOOLEAN NOT NULL,
    doc JSON_TEXT NOT NULL,
    note TEXT
)";

pub(crate) fn build_source(path: &Path, rows: i64) -> Result<u64> {
    let _ = std::fs::remove_file(path);
    let mut conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA journal_mode = MEMORY;")?;
    conn.execute_batch(BENCH_TABLE)?;
    let tx = conn.transaction()?;
    {
        let mut insert =
            tx.prepare("INSERT INTO bench_rows VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")?;
        for id in 1..=rows {
            let x = id.wrapping_mul(2_654_435_761) & 0xFFFF_FFFF;
            let doc = format!(
                r#"{{"id":{id},"kind":"bench","tags":["a","b","c"],"score":{},"ok":{},"label":"row {id:>10}"}}"#,
                x % 1000,
                x % 2 == 0
            );
            let note = (x % 10 != 0)
                .then(|| format!("note for row {id:>10}: some text to make sixty bytes…"));
            insert.execute(params![
                id,
                x % 1_000_000,
                format!("name-{:08x}", x),
                format!("{}.{:02}", x % 10_000_000, x % 100),
                format!(
                    "2024-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00:00",
                    1 + x % 12,
                    1 + x % 28,
                    x % 24,
                    x % 60,
                    (x / 7) % 60,
                    x % 1_000_000
                ),
                format!("2023-{:02}-{:02}", 1 + x % 12, 1 + (x / 3) % 28),
                x % 3 == 0,
                doc,
                note
            ])?;
        }
    }
    tx.commit()?;
    let bytes = std::fs::metadata(path)?.len();
    Ok(bytes)
}

fn definitions(dir: &Path) -> String {
    format!(
        r#"hub: bench
locations:
  src: {{class: sqlite, props: {{Database_Name: "{src}"}}}}
  tgt: {{class: sqlite, props: {{Database_Name: "{tgt}"}}}}
channels:
  bench:
    loc_groups: {{SOURCE: [src], TARGET: [tgt]}}
    tables: {{bench_rows: {{}}}}
    actions: [{{type: Capture, loc_scope: SOURCE}}, {{type: Integrate, loc_scope: TARGET}}]
"#,
        src = dir.join("source.db").display(),
        tgt = dir.join("target.db").display()
    )
}

/// One measured case.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Measured {
    pub(crate) case: String,
    pub(crate) rows: i64,
    pub(crate) seconds: f64,
    pub(crate) rows_per_second: f64,
    pub(crate) mb_per_second: f64,
    pub(crate) peak_rss_mb: Option<f64>,
    pub(crate) vs_reference: Option<f64>,
}

pub(crate) fn run_child(args: &[&str], home: &Path) -> Result<(f64, u64)> {
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let out = Command::new(exe)
        .args(args)
        .env("SLUICE_HOME", home)
        .env(REPORT_RSS_ENV, "1")
        .output()
        .context("run a bench child")?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A compare that finds differences exits 3; anything else but 0 is a failure.
    if !matches!(out.status.code(), Some(0)) {
        bail!("`sluice {}` failed: {}", args.join(" "), stderr.trim());
    }
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_kb="))
        .and_then(|v| v.trim().parse().ok())
        .context("the child did not report its peak RSS")?;
    Ok((seconds, rss))
}

/// The reference copy, run as `sluice bench-reference SOURCE TARGET`: what SQLite does on its own.
pub fn reference_copy(source: &Path, target: &Path) -> Result<()> {
    let _ = std::fs::remove_file(target);
    let conn = Connection::open(target)?;
    conn.execute_batch(BENCH_TABLE)?;
    conn.execute("ATTACH DATABASE ?1 AS src", [source.display().to_string()])?;
    conn.execute_batch(
        "BEGIN IMMEDIATE; INSERT INTO main.bench_rows SELECT * FROM src.bench_rows; COMMIT;",
    )?;
    report_peak_rss();
    Ok(())
}

/// Runs the benchmark.
pub async fn run(args: BenchArgs, g: &Global) -> Result<Outcome> {
    if args.suite == "engines" {
        return crate::bench_engines::run(args, g).await;
    }
    if args.suite == "api" {
        return crate::bench_api::run(args, g).await;
    }
    if args.suite == "events" {
        return events::run(args, g).await;
    }
    if args.suite == "logins" {
        return crate::bench_logins::run(args, g).await;
    }
    let rows = args.rows.unwrap_or(1_000_000);
    std::fs::create_dir_all(&args.dir)?;
    let dir = args.dir.canonicalize()?;
    let home = dir.join(".sluice");
    let source = dir.join("source.db");
    if !g.json {
        note!(
            "building {} rows in {} …",
            thousands(rows as u64),
            source.display()
        );
    }
    let bytes = tokio::task::spawn_blocking({
        let source = source.clone();
        move || build_source(&source, rows)
    })
    .await??;
    let mb = bytes as f64 / 1e6;
    std::fs::write(dir.join("bench.yaml"), definitions(&dir))?;
    let exe_args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    run_child(
        &[
            "apply",
            dir.join("bench.yaml").to_str().context("a UTF-8 path")?,
        ],
        &home,
    )?;

    let reference_target = dir.join("reference.db");
    let target = dir.join("target.db");
    // (name, arguments, whether the target is removed before each run)
    let cases: Vec<(String, Vec<String>, bool)> = vec![
        (
            "reference: SQLite INSERT … SELECT across ATTACH".into(),
            exe_args(&[
                "bench-reference",
                source.to_str().unwrap_or_default(),
                reference_target.to_str().unwrap_or_default(),
            ]),
            false,
        ),
        (
            "sluice refresh SQLite→SQLite (truncate_load, target created)".into(),
            exe_args(&["refresh", "bench"]),
            true,
        ),
        (
            "sluice refresh SQLite→SQLite (truncate_load)".into(),
            exe_args(&["refresh", "bench"]),
            false,
        ),
        (
            "sluice refresh SQLite→SQLite (staging_swap)".into(),
            exe_args(&["refresh", "bench", "--strategy", "staging_swap"]),
            false,
        ),
        (
            "sluice compare (counts and checksums)".into(),
            exe_args(&["compare", "bench"]),
            false,
        ),
        (
            "sluice compare --rowwise".into(),
            exe_args(&["compare", "bench", "--rowwise"]),
            false,
        ),
    ];
    let mut results: Vec<Measured> = Vec::new();
    let mut reference_rate = None;
    for (name, child_args, fresh_target) in cases {
        if !g.json {
            note!("{name} ({} runs) …", args.runs);
        }
        let refs: Vec<&str> = child_args.iter().map(String::as_str).collect();
        let mut times = Vec::new();
        let mut rss_kb = 0;
        for _ in 0..args.runs {
            if fresh_target {
                let _ = std::fs::remove_file(&target);
            }
            let (seconds, rss) = run_child(&refs, &home)?;
            times.push(seconds);
            rss_kb = rss_kb.max(rss);
        }
        times.sort_by(f64::total_cmp);
        let seconds = times[times.len() / 2];
        let rate = rows as f64 / seconds;
        if reference_rate.is_none() {
            reference_rate = Some(rate);
        }
        results.push(Measured {
            case: name,
            rows,
            seconds,
            rows_per_second: rate,
            mb_per_second: mb / seconds,
            peak_rss_mb: Some(rss_kb as f64 / 1024.0),
            vs_reference: reference_rate.map(|r| rate / r),
        });
    }
    if g.json {
        json(&serde_json::json!({ "rows": rows, "source_mb": mb, "results": results }))?;
        return Ok(Outcome::Ok);
    }
    print_results(
        &results,
        &format!(
            "{} rows, source file {:.0} MB; seconds: median wall time of {} runs of the whole child process\n",
            thousands(rows as u64),
            mb,
            args.runs
        ),
        args.markdown,
    );
    Ok(Outcome::Ok)
}

/// Prints measured cases as a table (or Markdown) under a heading line.
pub(crate) fn print_results(results: &[Measured], heading: &str, markdown: bool) {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|m| {
            vec![
                m.case.clone(),
                format!("{:.2}", m.seconds),
                thousands(m.rows_per_second.round() as u64),
                format!("{:.1}", m.mb_per_second),
                m.peak_rss_mb
                    .map_or_else(|| "-".to_owned(), |mb| format!("{mb:.0}")),
                m.vs_reference
                    .map(|r| format!("{r:.2}"))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    say!("{heading}");
    if markdown {
        say!("| case | seconds | rows/s | MB/s | peak RSS (MB) | × reference |");
        say!("|---|---:|---:|---:|---:|---:|");
        for r in &rows {
            say!("| {} |", r.join(" | "));
        }
    } else {
        say!(
            "{}",
            table(
                &[
                    "case",
                    "seconds",
                    "rows/s",
                    "MB/s",
                    "peak RSS MB",
                    "× reference"
                ],
                rows
            )
        );
    }
}
