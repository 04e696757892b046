//! `sluice bench --suite hub`: refresh and compare as users call them, through a `sluice serve`
//! process's HTTP API, beside the databases' own client programs and sling.
//!
//! One `sluice serve` child process (this executable) runs on a fresh repository; the suite logs
//! in over HTTP and defines hub `bench_hub`, a location per engine and table copy, and channel
//! `bench` (table `bench_rows`, columns read from the source) through the HVR API. The bench
//! table of `--rows` rows is generated in PostgreSQL by SQL (as the `engines` suite does); the
//! MariaDB copy other cases read is made by a refresh through the hub before anything is timed.
//!
//! Each case runs `--runs` rounds (default 5), interleaved: the reference, a shell pipeline of the
//! client programs timed as a whole, then sluice: `POST …/channels/bench/refresh` (or `compare`)
//! and polling its event until it leaves ACTIVE, timed from the POST to the poll that sees it
//! DONE. A round's ratio is reference seconds over sluice seconds (above 1: sluice is faster);
//! the report gives the medians and the range of the ratios. Every round checks what arrived
//! (row counts at the target, the event's table state, the compare's verdict). The server's peak
//! RSS is its `VmHWM`, reset before each case through `/proc/PID/clear_refs`, or, where that
//! write is refused, the largest `VmRSS` sampled every 50 ms.
//!
//! Cases: `pg-pg` (`psql COPY … (FORMAT binary)` piped into `psql COPY … FROM STDIN` into a table
//! with its key, truncated first; sluice into the target it created, `truncate_load` as by
//! default), `mariadb-pg` (`mariadb --raw` of a SELECT that escapes text for COPY's text format and
//! writes `\N` for NULL, piped into `psql COPY`), `pg-mariadb` (`psql COPY TO STDOUT` piped into
//! `mariadb --local-infile=1 -e "LOAD DATA LOCAL INFILE '/dev/stdin' …"`), `incremental` (1 % new
//! rows added before each round, then sling's incremental PG→PG replication by `id` and sluice's
//! incremental refresh; both must move exactly the new rows), `compare` (two identical PostgreSQL
//! tables, bulk compare through the hub's compare API: reading every row, as before checksums were
//! pushed down, against the default), and `scale` (refresh and compare of every
//! pair of PostgreSQL, MariaDB and SQLite at 2,000,000 rows and then at `--rows`, reporting the
//! per-row time at `--rows` over the one at 2,000,000: 1.0 is linear).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::Api;
use crate::args::{BenchArgs, Printing};
use crate::engines::{Servers, TABLE, generate, host_port, output};
use crate::report::{json as print_json, table, thousands};
use crate::server::ServeProcess;

const HUB: &str = "bench_hub";
const CHANNEL: &str = "bench";
const ADMIN_PASSWORD: &str = "bench-hub-admin-password";
const PG_DB: &str = "sluice_bench_hub";
/// MariaDB databases: `<prefix>_src` (the MariaDB source), `_ref` (the reference's target) and
/// one per source engine as sluice's target.
const MY_PREFIX: &str = "sluice_bench_hub";
/// Rows of the `scale` case's base size (the linearity figure's denominator).
const SCALE_BASE_ROWS: i64 = 2_000_000;
/// How often the suite looks at a running event.
const POLL: Duration = Duration::from_millis(20);
/// The longest a refresh or compare may run before the suite gives up on it.
const EVENT_LIMIT: Duration = Duration::from_secs(6 * 3600);
/// Where `pip install sling` puts the sling binary on this project's machines.
const SLING_PIP_PATH: &str = "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/sling_linux_amd64/bin/sling-linux-amd64";

/// The columns in table order, as every reference selects them.
const COLUMNS: &str = "id, n, name, amount, created, day, flag, doc, note";

/// The three engines, as sources and targets of the `scale` case.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Engine {
    Pg,
    My,
    Lite,
}

impl Engine {
    const ALL: [Engine; 3] = [Engine::Pg, Engine::My, Engine::Lite];

    fn label(self) -> &'static str {
        match self {
            Engine::Pg => "PG",
            Engine::My => "MariaDB",
            Engine::Lite => "SQLite",
        }
    }

    /// The location holding the source table.
    fn source_loc(self) -> &'static str {
        match self {
            Engine::Pg => "pg",
            Engine::My => "my",
            Engine::Lite => "lite",
        }
    }

    /// The suffix naming a target of rows from this engine.
    fn from(self) -> &'static str {
        match self {
            Engine::Pg => "f_pg",
            Engine::My => "f_my",
            Engine::Lite => "f_lite",
        }
    }
}

/// The location in engine `target` receiving rows from `source` (`pg_f_my`: PostgreSQL, rows
/// from MariaDB); location names have at most 12 characters.
fn target_loc(source: Engine, target: Engine) -> String {
    format!("{}_{}", target.source_loc(), source.from())
}

/// The tools and servers of a run.
struct Bench {
    servers: Servers,
    api: Api,
    /// The SQLite files' directory (the server's data directory).
    data: PathBuf,
    /// The server's process id.
    pid: u32,
    quiet: bool,
}

/// Fails with how to install `program` when it does not run.
fn require(program: &str, version_arg: &str, install: &str) -> Result<()> {
    let ran = Command::new(program).arg(version_arg).output();
    match ran {
        Ok(out) if out.status.success() => Ok(()),
        _ => bail!("the reference needs `{program}`, which is not installed here: {install}"),
    }
}

/// The sling binary: `$SLING_BINARY`, then `sling` on the PATH, then where pip installs it; the
/// first that answers `--version`.
fn sling_binary() -> Result<String> {
    let mut candidates = Vec::new();
    if let Ok(path) = std::env::var("SLING_BINARY") {
        candidates.push(path);
    }
    candidates.push("sling".to_owned());
    candidates.push(SLING_PIP_PATH.to_owned());
    for c in &candidates {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(c.clone());
        }
    }
    bail!(
        "the incremental case's reference needs sling, and none of {} runs: install it with \
         `pip install sling` (which ships the binary) or point $SLING_BINARY at it",
        candidates.join(", ")
    )
}

/// `VmHWM` and `VmRSS` of process `pid`, in KiB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The server's peak RSS over a stretch of work: its high-water mark reset at the start where the
/// kernel allows it, and its resident size sampled all along.
struct PeakRss {
    pid: u32,
    reset: bool,
    stop: Arc<AtomicBool>,
    sampled_kb: Arc<AtomicU64>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

impl PeakRss {
    fn start(pid: u32) -> PeakRss {
        let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        let stop = Arc::new(AtomicBool::new(false));
        let sampled_kb = Arc::new(AtomicU64::new(0));
        let sampler = std::thread::spawn({
            let (stop, sampled_kb) = (stop.clone(), sampled_kb.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    sampled_kb.fetch_max(memory_kb(pid).1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        PeakRss {
            pid,
            reset,
            stop,
            sampled_kb,
            sampler: Some(sampler),
        }
    }

    /// The peak in MB and how it was taken.
    fn finish(mut self) -> (f64, &'static str) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.sampler.take() {
            let _ = s.join();
        }
        let (hwm, rss) = memory_kb(self.pid);
        let sampled = self.sampled_kb.load(Ordering::Relaxed).max(rss);
        if self.reset {
            (hwm.max(sampled) as f64 / 1024.0, "VmHWM")
        } else {
            (sampled as f64 / 1024.0, "sampled VmRSS")
        }
    }
}

/// A pipeline of client programs, timed as a whole.
fn timed_pipe(script: &str, what: &str) -> Result<f64> {
    let started = Instant::now();
    output(
        Command::new("bash")
            .arg("-c")
            .arg(format!("set -o pipefail; {script}"))
            .env("PGTZ", "UTC"),
        what,
    )?;
    Ok(started.elapsed().as_secs_f64())
}

/// A location's props.
fn pg_props(s: &Servers, schema: &str) -> Value {
    json!({"Class": "postgresql", "Database_Host": s.pg.0, "Database_Port": port(&s.pg.1),
           "Database_Name": PG_DB, "Database_User": "postgres", "Database_Schema": schema,
           "Database_Sslmode": "disable"})
}

fn my_props(s: &Servers, db: &str) -> Value {
    json!({"Class": "mariadb", "Database_Host": s.my.0, "Database_Port": port(&s.my.1),
           "Database_Name": db, "Database_User": "root"})
}

fn port(p: &str) -> Value {
    p.parse::<u16>().map_or_else(|_| json!(p), |n| json!(n))
}

fn sqlite_file(data: &Path, name: &str) -> PathBuf {
    data.join(format!("{name}.db"))
}

impl Bench {
    fn note(&self, line: &str) {
        if !self.quiet {
            note!("{line}");
        }
    }

    /// Hub, locations and channel, through the HVR API.
    async fn define(&self) -> Result<()> {
        let s = &self.servers;
        self.api
            .post(
                "/api/latest/hubs",
                json!({"hub": HUB, "props": {"Description": "sluice bench --suite hub"}}),
            )
            .await?;
        let mut locs: Vec<(String, Value)> = vec![
            ("pg".into(), pg_props(s, "public")),
            ("pg_inc".into(), pg_props(s, "inc")),
            ("my".into(), my_props(s, &format!("{MY_PREFIX}_src"))),
            (
                "lite".into(),
                json!({"Class": "sqlite", "Database_Name": sqlite_file(&self.data, "source").display().to_string()}),
            ),
        ];
        for source in Engine::ALL {
            let from = source.from();
            locs.push((target_loc(source, Engine::Pg), pg_props(s, from)));
            locs.push((
                target_loc(source, Engine::My),
                my_props(s, &format!("{MY_PREFIX}_{from}")),
            ));
            locs.push((
                target_loc(source, Engine::Lite),
                json!({"Class": "sqlite", "Database_Name": sqlite_file(&self.data, from).display().to_string()}),
            ));
        }
        for (loc, props) in &locs {
            self.api
                .post(
                    &format!("/api/latest/hubs/{HUB}/definition/locs"),
                    json!({"loc": loc, "props": props}),
                )
                .await?;
        }
        let members: Vec<&String> = locs.iter().map(|(l, _)| l).collect();
        self.api
            .post(
                &format!("/api/latest/hubs/{HUB}/definition/channels"),
                json!({
                    "channel": CHANNEL,
                    "description": "the bench table",
                    "loc_groups": {"ALL": {"members": members}},
                    "tables": {"bench_rows": {}},
                }),
            )
            .await?;
        Ok(())
    }

    /// Posts a refresh or compare of `bench_rows` and waits for its event; returns the seconds
    /// from the POST to the poll that saw it DONE, and the event with its results.
    async fn run_event(&self, verb: &str, body: Value) -> Result<(f64, Value)> {
        let path = format!("/api/latest/hubs/{HUB}/channels/{CHANNEL}/{verb}");
        let started = Instant::now();
        let posted = self.api.post(&path, body.clone()).await?;
        let ev_id = posted["posted_ev_id"]
            .as_str()
            .with_context(|| format!("POST {path} answered no posted_ev_id: {posted}"))?
            .to_owned();
        let query = format!(
            "/api/latest/hubs/{HUB}/events?ev_id={}",
            ev_id.replace(':', "%3A")
        );
        let state = loop {
            let events = self.api.get(&query).await?;
            let state = events[&ev_id]["state"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if state.is_empty() {
                bail!("event {ev_id} of {verb} {body} is missing: {events}");
            }
            if state != "ACTIVE" {
                break state;
            }
            if started.elapsed() > EVENT_LIMIT {
                bail!(
                    "{verb} {body} still ACTIVE after {} s",
                    EVENT_LIMIT.as_secs()
                );
            }
            tokio::time::sleep(POLL).await;
        };
        let seconds = started.elapsed().as_secs_f64();
        let events = self.api.get(&format!("{query}&fetch_results=true")).await?;
        let event = events[&ev_id].clone();
        if state != "DONE" {
            bail!(
                "{verb} {body} ended {state}: {}",
                event["response"].as_str().unwrap_or_default()
            );
        }
        Ok((seconds, event))
    }

    /// A refresh of `bench_rows` from `source` into `target`, checked: DONE and `rows` rows at
    /// the target. Returns its seconds.
    async fn refresh(&self, source: &str, target: &str, extra: Value, rows: i64) -> Result<f64> {
        let mut body = json!({"source_loc": source, "target_loc": target, "start_immediate": true});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        let (seconds, event) = self.run_event("refresh", body).await?;
        let state = table_result(&event, "Table_State");
        if state.as_deref() != Some("DONE") {
            bail!("refresh {source} → {target}: table state {state:?}: {event}");
        }
        let counted = self.count(target)?;
        if counted != rows {
            bail!("refresh {source} → {target} left {counted} rows, expected {rows}");
        }
        Ok(seconds)
    }

    /// A compare of `bench_rows` between `source` and `target` that must find them identical.
    async fn compare(&self, source: &str, target: &str, extra: Value) -> Result<f64> {
        let mut body = json!({"source_loc": source, "target_loc": target, "start_immediate": true});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        let (seconds, event) = self.run_event("compare", body).await?;
        let state = table_result(&event, "Table_State");
        if state.as_deref() != Some("DONE/IDENTICAL") {
            bail!(
                "compare {source} ↔ {target}: table state {state:?}, expected DONE/IDENTICAL: {event}"
            );
        }
        Ok(seconds)
    }

    /// Rows of `bench_rows` at a location of this suite.
    fn count(&self, loc: &str) -> Result<i64> {
        let text = if let Some(schema) = loc.strip_prefix("pg_") {
            self.servers
                .pg(PG_DB, &format!("SELECT count(*) FROM {schema}.bench_rows"))?
        } else if loc == "pg" {
            self.servers
                .pg(PG_DB, "SELECT count(*) FROM public.bench_rows")?
        } else if let Some(db) = loc.strip_prefix("my_") {
            self.servers
                .my(&format!("SELECT count(*) FROM {MY_PREFIX}_{db}.bench_rows"))?
        } else if loc == "my" {
            self.servers
                .my(&format!("SELECT count(*) FROM {MY_PREFIX}_src.bench_rows"))?
        } else {
            let name = loc.strip_prefix("lite_").unwrap_or("source");
            let conn = rusqlite::Connection::open_with_flags(
                sqlite_file(&self.data, name),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            return Ok(conn.query_row("SELECT count(*) FROM bench_rows", [], |r| r.get(0))?);
        };
        text.parse()
            .with_context(|| format!("count of {loc}: {text:?}"))
    }

    /// Drops the table at a target location (a SQLite target loses its file), so the next refresh
    /// creates it and the disk holds one large target at a time.
    fn drop_target(&self, loc: &str) -> Result<()> {
        if let Some(schema) = loc.strip_prefix("pg_") {
            self.servers
                .pg(PG_DB, &format!("DROP TABLE IF EXISTS {schema}.bench_rows"))?;
        } else if let Some(db) = loc.strip_prefix("my_") {
            self.servers
                .my(&format!("DROP TABLE IF EXISTS {MY_PREFIX}_{db}.bench_rows"))?;
        } else if let Some(name) = loc.strip_prefix("lite_") {
            let file = sqlite_file(&self.data, name);
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
        Ok(())
    }

    /// The PostgreSQL source with rows `1..=rows` and nothing else.
    fn generate_source(&self, rows: i64) -> Result<()> {
        self.note(&format!(
            "generating {} rows in PostgreSQL database {PG_DB} …",
            thousands(rows as u64)
        ));
        self.servers.pg(PG_DB, "TRUNCATE public.bench_rows")?;
        // Batches of 5,000,000 keep each statement's memory and WAL in bounds.
        let mut from = 1;
        while from <= rows {
            let to = (from + 4_999_999).min(rows);
            self.servers
                .pg(PG_DB, &generate("public.bench_rows", from, to))?;
            from = to + 1;
        }
        self.servers.pg(PG_DB, "VACUUM ANALYZE public.bench_rows")?;
        Ok(())
    }
}

fn table_result(event: &Value, name: &str) -> Option<String> {
    event["results"]
        .as_array()?
        .iter()
        .find(|r| r["table"] == "bench_rows" && r["result"] == name)
        .and_then(|r| r["value"].as_str())
        .map(str::to_owned)
}

/// One case's rounds.
#[derive(Debug, Serialize)]
struct CaseResult {
    case: String,
    reference: String,
    rows: i64,
    rounds: usize,
    /// Median seconds of the reference (None where the case has none).
    reference_seconds: Option<f64>,
    sluice_seconds: f64,
    /// Median of the rounds' reference/sluice ratios, and their range.
    ratio: Option<f64>,
    ratio_min: Option<f64>,
    ratio_max: Option<f64>,
    reference_round_seconds: Vec<f64>,
    sluice_round_seconds: Vec<f64>,
    server_peak_rss_mb: f64,
    rss_method: &'static str,
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

impl CaseResult {
    fn new(
        case: &str,
        reference: &str,
        rows: i64,
        refs: Vec<f64>,
        ours: Vec<f64>,
        rss: (f64, &'static str),
    ) -> CaseResult {
        let ratios: Vec<f64> = refs.iter().zip(&ours).map(|(r, s)| r / s).collect();
        let some = |v: f64| (!ratios.is_empty()).then_some(v);
        CaseResult {
            case: case.to_owned(),
            reference: reference.to_owned(),
            rows,
            rounds: ours.len(),
            reference_seconds: (!refs.is_empty()).then(|| median(&refs)),
            sluice_seconds: median(&ours),
            ratio: some(median(&ratios)),
            ratio_min: some(ratios.iter().copied().fold(f64::INFINITY, f64::min)),
            ratio_max: some(ratios.iter().copied().fold(0.0, f64::max)),
            reference_round_seconds: refs,
            sluice_round_seconds: ours,
            server_peak_rss_mb: rss.0,
            rss_method: rss.1,
        }
    }
}

/// One refresh or compare of the `scale` case.
#[derive(Debug, Serialize)]
struct ScaleResult {
    pair: String,
    operation: &'static str,
    rows: i64,
    seconds: f64,
    rows_per_second: f64,
    base_rows: i64,
    base_seconds: f64,
    /// Seconds per row at `rows` over seconds per row at `base_rows`: 1.0 is linear.
    linearity: f64,
    server_peak_rss_mb: f64,
    rss_method: &'static str,
}

/// The MariaDB SELECT of the `mariadb-pg` reference: every column in PostgreSQL COPY's text
/// format (`\N` for NULL; backslash, tab, newline and carriage return escaped in text; booleans
/// as 0/1, which PostgreSQL's boolean input takes), printed raw by `mariadb --raw`.
fn mariadb_copy_select(db: &str) -> String {
    let esc = |c: &str| {
        format!(
            "COALESCE(REPLACE(REPLACE(REPLACE(REPLACE({c}, '\\\\', '\\\\\\\\'), '\\t', '\\\\t'), '\\n', '\\\\n'), '\\r', '\\\\r'), '\\\\N')"
        )
    };
    format!(
        "SELECT id, n, {}, amount, DATE_FORMAT(created, '%Y-%m-%d %H:%i:%s.%f+00'), day, flag, {}, {} FROM {db}.bench_rows",
        esc("name"),
        esc("doc"),
        esc("note")
    )
}

/// Single-quotes `text` for bash.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Runs the suite.
pub async fn run(args: BenchArgs, g: &Printing) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rows = args.rows.unwrap_or(2_000_000);
    if rows < 100 {
        bail!("--rows must be at least 100");
    }
    let runs = args.runs_or(5) as usize;
    let wants = |c: &str| args.cases.iter().any(|x| x == c);
    let servers = Servers {
        pg: host_port(&args.postgres)?,
        my: host_port(&args.mariadb)?,
    };
    // Every reference's tool, before anything changes.
    require(
        "psql",
        "--version",
        "`apt-get install postgresql-client` (Debian)",
    )?;
    require(
        "mariadb",
        "--version",
        "`apt-get install mariadb-client` (Debian)",
    )?;
    let sling = if wants("incremental") {
        Some(sling_binary()?)
    } else {
        None
    };

    servers.pg(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)"),
    )?;
    servers.pg("postgres", &format!("CREATE DATABASE {PG_DB}"))?;
    servers.pg(
        PG_DB,
        &format!(
            "CREATE SCHEMA reference; CREATE SCHEMA inc; CREATE SCHEMA sling; \
             CREATE SCHEMA f_pg; CREATE SCHEMA f_my; CREATE SCHEMA f_lite; \
             {TABLE}; CREATE TABLE reference.bench_rows (LIKE public.bench_rows INCLUDING ALL);"
        ),
    )?;
    let mut my_setup = String::new();
    for db in ["src", "ref", "f_pg", "f_my", "f_lite"] {
        my_setup.push_str(&format!(
            "DROP DATABASE IF EXISTS {MY_PREFIX}_{db}; CREATE DATABASE {MY_PREFIX}_{db}; "
        ));
    }
    servers.my(&my_setup)?;

    let mut server = ServeProcess::start(&[], ADMIN_PASSWORD, "sluice-bench-hub")?;
    let home = server.home().to_path_buf();
    let data = home.join("data");
    std::fs::create_dir_all(&data)?;
    let bench = Bench {
        api: Api::login_as(&server.url, ADMIN_PASSWORD).await?,
        servers,
        data,
        pid: server.pid(),
        quiet: g.json,
    };
    bench.define().await?;
    let outcome = match run_cases(&bench, &args, rows, runs, sling.as_deref()).await {
        // A failure while the server had stopped: say so, with its last lines.
        Err(e) => Err(match server.check_running() {
            Ok(()) => e,
            Err(stopped) => e.context(format!("{stopped:#}")),
        }),
        ok => ok,
    };
    drop(server);
    let (cases, scale) = outcome?;
    if g.json {
        print_json(&json!({"rows": rows, "rounds": runs, "cases": cases, "scale": scale}))?;
        return Ok(());
    }
    print_cases(&cases, rows, runs, args.markdown);
    if !scale.is_empty() {
        print_scale(&scale, args.markdown);
    }
    Ok(())
}

async fn run_cases(
    b: &Bench,
    args: &BenchArgs,
    rows: i64,
    runs: usize,
    sling: Option<&str>,
) -> Result<(Vec<CaseResult>, Vec<ScaleResult>)> {
    let wants = |c: &str| args.cases.iter().any(|x| x == c);
    let mut cases = Vec::new();
    let (h, p) = (&b.servers.pg.0, &b.servers.pg.1);
    let (mh, mp) = (&b.servers.my.0, &b.servers.my.1);
    let psql = format!("psql -h {h} -p {p} -U postgres -d {PG_DB} -v ON_ERROR_STOP=1 -Atq");
    let mariadb = format!("mariadb -h {mh} -P {mp} -u root");
    let regular = [
        "pg-pg",
        "mariadb-pg",
        "pg-mariadb",
        "compare",
        "incremental",
    ];
    if regular.iter().any(|c| wants(c)) {
        b.generate_source(rows)?;
    }
    if wants("mariadb-pg") || wants("pg-mariadb") {
        b.note("loading the MariaDB source through the hub …");
        b.refresh("pg", "my", json!({}), rows).await?;
        b.servers.my(&format!(
            "CREATE TABLE {MY_PREFIX}_ref.bench_rows LIKE {MY_PREFIX}_src.bench_rows"
        ))?;
    }

    if wants("pg-pg") {
        b.note(&format!("pg-pg: {runs} rounds …"));
        let script = format!(
            "{psql} -c 'COPY public.bench_rows TO STDOUT (FORMAT binary)' | {psql} -c 'COPY reference.bench_rows FROM STDIN (FORMAT binary)'"
        );
        let rss = PeakRss::start(b.pid);
        let (mut refs, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            b.servers.pg(PG_DB, "TRUNCATE reference.bench_rows")?;
            refs.push(timed_pipe(&script, "the psql pipe")?);
            check_count(b, "pg_reference", rows)?;
            ours.push(b.refresh("pg", "pg_f_pg", json!({}), rows).await?);
        }
        cases.push(CaseResult::new(
            "PG→PG (target created by sluice, truncate_load)",
            "psql COPY (FORMAT binary) | psql COPY, table with its key",
            rows,
            refs,
            ours,
            rss.finish(),
        ));
    }

    if wants("mariadb-pg") {
        b.note(&format!("mariadb-pg: {runs} rounds …"));
        let select = mariadb_copy_select(&format!("{MY_PREFIX}_src"));
        let script = format!(
            "{mariadb} --batch --raw --skip-column-names -e {} | {psql} -c 'COPY reference.bench_rows FROM STDIN (FORMAT text)'",
            sh_quote(&select)
        );
        let rss = PeakRss::start(b.pid);
        let (mut refs, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            b.servers.pg(PG_DB, "TRUNCATE reference.bench_rows")?;
            refs.push(timed_pipe(&script, "the mariadb | psql pipe")?);
            check_count(b, "pg_reference", rows)?;
            ours.push(b.refresh("my", "pg_f_my", json!({}), rows).await?);
        }
        // The reference loaded the same rows: the same values as sluice's copy, column by column.
        let differing = b.servers.pg(
            PG_DB,
            &format!(
                "SELECT count(*) FROM (SELECT {COLUMNS} FROM reference.bench_rows EXCEPT SELECT {COLUMNS} FROM public.bench_rows) AS d"
            ),
        )?;
        if differing != "0" {
            bail!(
                "the mariadb | psql reference loaded {differing} rows that differ from the source"
            );
        }
        cases.push(CaseResult::new(
            "MariaDB→PG",
            "mariadb --batch --raw (COPY text escapes in the SELECT) | psql COPY",
            rows,
            refs,
            ours,
            rss.finish(),
        ));
    }

    if wants("pg-mariadb") {
        b.note(&format!("pg-mariadb: {runs} rounds …"));
        let copy = "COPY (SELECT id, n, name, amount, created AT TIME ZONE 'UTC', day, flag::int, doc, note \
                    FROM public.bench_rows) TO STDOUT";
        let load = format!("LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE bench_rows ({COLUMNS})");
        let script = format!(
            "{psql} -c {} | {mariadb} --local-infile=1 {MY_PREFIX}_ref -e {}",
            sh_quote(copy),
            sh_quote(&load)
        );
        let rss = PeakRss::start(b.pid);
        let (mut refs, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            b.servers
                .my(&format!("TRUNCATE TABLE {MY_PREFIX}_ref.bench_rows"))?;
            refs.push(timed_pipe(&script, "the psql | mariadb LOAD DATA pipe")?);
            check_count(b, "my_ref", rows)?;
            ours.push(b.refresh("pg", "my_f_pg", json!({}), rows).await?);
        }
        cases.push(CaseResult::new(
            "PG→MariaDB",
            "psql COPY | mariadb LOAD DATA LOCAL INFILE",
            rows,
            refs,
            ours,
            rss.finish(),
        ));
    }

    if wants("compare") {
        if !wants("pg-pg") {
            b.refresh("pg", "pg_f_pg", json!({}), rows).await?;
        }
        b.note(&format!("compare: {runs} rounds …"));
        let rss = PeakRss::start(b.pid);
        let mut refs = Vec::new();
        let mut ours = Vec::new();
        for _ in 0..runs {
            refs.push(
                b.compare("pg", "pg_f_pg", json!({"pushdown": false}))
                    .await?,
            );
            ours.push(b.compare("pg", "pg_f_pg", json!({})).await?);
        }
        cases.push(CaseResult::new(
            "compare PG↔PG, identical (checksums pushed down)",
            "the same compare reading every row (`\"pushdown\": false`)",
            rows,
            refs,
            ours,
            rss.finish(),
        ));
    }

    if wants("incremental") {
        let sling = sling.context("sling was not looked up")?;
        cases.push(incremental(b, rows, runs, sling).await?);
    }

    let scale = if wants("scale") {
        scale(b, rows).await?
    } else {
        Vec::new()
    };
    Ok((cases, scale))
}

fn check_count(b: &Bench, loc: &str, rows: i64) -> Result<()> {
    let counted = b.count(loc)?;
    if counted != rows {
        bail!("the reference left {counted} rows at {loc}, expected {rows}");
    }
    Ok(())
}

/// 1 % new rows before each round; sling's incremental replication by `id`, then sluice's
/// incremental refresh. Both targets start as full copies of the source.
async fn incremental(b: &Bench, rows: i64, runs: usize, sling: &str) -> Result<CaseResult> {
    b.note(&format!(
        "incremental: full copies first, then {runs} rounds …"
    ));
    let mut total: i64 = b.count("pg")?;
    b.refresh("pg", "pg_inc", json!({}), total).await?;
    b.servers.pg(
        PG_DB,
        "CREATE TABLE sling.bench_rows (LIKE public.bench_rows INCLUDING ALL); \
         INSERT INTO sling.bench_rows SELECT * FROM public.bench_rows",
    )?;
    let url = format!(
        "postgresql://postgres@{}:{}/{PG_DB}?sslmode=disable",
        b.servers.pg.0, b.servers.pg.1
    );
    let new_rows = (rows / 100).max(1);
    let rss = PeakRss::start(b.pid);
    let (mut refs, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        b.servers.pg(
            PG_DB,
            &generate("public.bench_rows", total + 1, total + new_rows),
        )?;
        total += new_rows;
        let started = Instant::now();
        let out = Command::new(sling)
            .args([
                "run",
                "--src-conn",
                "BENCH_HUB_PG",
                "--src-stream",
                "public.bench_rows",
                "--tgt-conn",
                "BENCH_HUB_PG",
                "--tgt-object",
                "sling.bench_rows",
                "--mode",
                "incremental",
                "--primary-key",
                "id",
                "--update-key",
                "id",
            ])
            .env("BENCH_HUB_PG", &url)
            .env("SLING_DISABLE_TELEMETRY", "true")
            .env("SLING_LOADED_AT_COLUMN", "false")
            .output()
            .context("run sling")?;
        refs.push(started.elapsed().as_secs_f64());
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!("sling failed: {}", log.trim());
        }
        let moved = sling_inserted(&log)
            .with_context(|| format!("sling's log names no inserted rows: {}", log.trim()))?;
        if moved != new_rows {
            bail!("sling moved {moved} rows, expected only the {new_rows} new ones");
        }
        check_count(b, "pg_sling", total)?;
        let body = json!({"mode": "incremental", "incremental_column": "id"});
        let mut body_event =
            json!({"source_loc": "pg", "target_loc": "pg_inc", "start_immediate": true});
        if let (Value::Object(x), Value::Object(y)) = (&mut body_event, body) {
            x.extend(y);
        }
        let (seconds, event) = b.run_event("refresh", body_event).await?;
        let used = table_result(&event, "Source_Rows_Used");
        if used.as_deref() != Some(new_rows.to_string().as_str()) {
            bail!(
                "the incremental refresh read {used:?} source rows, expected {new_rows}: {event}"
            );
        }
        let counted = b.count("pg_inc")?;
        if counted != total {
            bail!("the incremental refresh left {counted} rows, expected {total}");
        }
        ours.push(seconds);
    }
    Ok(CaseResult::new(
        "PG→PG incremental after +1 %",
        "sling run --mode incremental (by id)",
        new_rows,
        refs,
        ours,
        rss.finish(),
    ))
}

/// The rows sling reports having inserted (`… inserted N rows …`).
fn sling_inserted(log: &str) -> Option<i64> {
    log.lines().rev().find_map(|line| {
        let at = line.find("inserted ")?;
        let rest = &line[at + "inserted ".len()..];
        let digits: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ',')
            .filter(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

/// Refresh and compare of every engine pair at the base size and at `rows`.
async fn scale(b: &Bench, rows: i64) -> Result<Vec<ScaleResult>> {
    let base = if rows > SCALE_BASE_ROWS {
        SCALE_BASE_ROWS
    } else {
        (rows / 10).max(100)
    };
    // Seconds at the base size, by pair and operation.
    let mut at_base: std::collections::BTreeMap<(String, &'static str), f64> =
        std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for size in [base, rows] {
        b.generate_source(size)?;
        b.note(&format!(
            "scale: MariaDB and SQLite sources of {} rows through the hub …",
            thousands(size as u64)
        ));
        b.refresh("pg", "my", json!({}), size).await?;
        b.refresh("pg", "lite", json!({}), size).await?;
        for source in Engine::ALL {
            for target in Engine::ALL {
                let loc = target_loc(source, target);
                let pair = format!("{}→{}", source.label(), target.label());
                b.note(&format!(
                    "scale {pair} at {} rows …",
                    thousands(size as u64)
                ));
                b.drop_target(&loc)?;
                let rss = PeakRss::start(b.pid);
                let refreshed = b
                    .refresh(source.source_loc(), &loc, json!({}), size)
                    .await?;
                let compared = b.compare(source.source_loc(), &loc, json!({})).await?;
                let (peak_mb, rss_method) = rss.finish();
                for (operation, seconds) in [("refresh", refreshed), ("compare", compared)] {
                    let key = (pair.clone(), operation);
                    if size == base {
                        at_base.insert(key, seconds);
                        continue;
                    }
                    let base_seconds = *at_base
                        .get(&key)
                        .context("the base figure of a pair is missing")?;
                    out.push(ScaleResult {
                        pair: pair.clone(),
                        operation,
                        rows,
                        seconds,
                        rows_per_second: rows as f64 / seconds,
                        base_rows: base,
                        base_seconds,
                        linearity: (seconds / rows as f64) / (base_seconds / base as f64),
                        server_peak_rss_mb: peak_mb,
                        rss_method,
                    });
                }
                if size == rows {
                    b.drop_target(&loc)?;
                }
            }
        }
    }
    Ok(out)
}

fn f2(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn print_cases(cases: &[CaseResult], rows: i64, runs: usize, markdown: bool) {
    if cases.is_empty() {
        return;
    }
    let headers = [
        "case",
        "reference",
        "reference s",
        "sluice s",
        "ratio",
        "ratio range",
        "server peak RSS MB",
    ];
    let body: Vec<Vec<String>> = cases
        .iter()
        .map(|c| {
            vec![
                c.case.clone(),
                c.reference.clone(),
                f2(c.reference_seconds),
                format!("{:.2}", c.sluice_seconds),
                c.ratio
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}×")),
                match (c.ratio_min, c.ratio_max) {
                    (Some(lo), Some(hi)) => format!("{lo:.2}–{hi:.2}"),
                    _ => "-".to_owned(),
                },
                format!("{:.0}", c.server_peak_rss_mb),
            ]
        })
        .collect();
    say!(
        "{} rows, {runs} interleaved rounds (reference, then sluice through the hub's HTTP API); \
         medians; ratio: median of the rounds' reference s / sluice s (above 1: sluice faster)",
        thousands(rows as u64)
    );
    emit(&headers, body, markdown);
}

fn print_scale(scale: &[ScaleResult], markdown: bool) {
    let headers = [
        "pair",
        "operation",
        "rows",
        "seconds",
        "rows/s",
        "base rows",
        "base seconds",
        "time per row vs base",
        "server peak RSS MB",
    ];
    let body: Vec<Vec<String>> = scale
        .iter()
        .map(|s| {
            vec![
                s.pair.clone(),
                s.operation.to_owned(),
                thousands(s.rows as u64),
                format!("{:.1}", s.seconds),
                thousands(s.rows_per_second.round() as u64),
                thousands(s.base_rows as u64),
                format!("{:.1}", s.base_seconds),
                format!("{:.2}", s.linearity),
                format!("{:.0}", s.server_peak_rss_mb),
            ]
        })
        .collect();
    say!(
        "\nscale: every engine pair through the hub, one run each; time per row vs base: seconds per row \
         at the large size over seconds per row at the base size (1.00 is linear); peak RSS over the \
         pair's refresh and compare"
    );
    emit(&headers, body, markdown);
}

fn emit(headers: &[&str], body: Vec<Vec<String>>, markdown: bool) {
    if markdown {
        say!("| {} |", headers.join(" | "));
        say!("|{}", "---|".repeat(headers.len()));
        for r in &body {
            // A cell's own `|` (a pipeline) must not end the cell.
            let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
            say!("| {} |", cells.join(" | "));
        }
    } else {
        say!("{}", table(headers, body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sling_inserted_reads_the_count_of_its_log() {
        let log = "11:02AM INF connecting to source database (postgres)\n\
                   11:02AM INF inserted 20000 rows into \"sling\".\"bench_rows\" in 1 secs [15,622 r/s]\n\
                   11:02AM INF execution succeeded";
        assert_eq!(sling_inserted(log), Some(20_000));
        assert_eq!(sling_inserted("INF execution succeeded"), None);
    }

    #[test]
    fn ratios_are_the_median_of_the_rounds() {
        let c = CaseResult::new(
            "x",
            "y",
            10,
            vec![2.0, 4.0, 3.0],
            vec![1.0, 1.0, 6.0],
            (1.0, "VmHWM"),
        );
        assert_eq!(c.ratio, Some(2.0));
        assert_eq!(c.ratio_min, Some(0.5));
        assert_eq!(c.ratio_max, Some(4.0));
        assert_eq!(c.reference_seconds, Some(3.0));
        assert_eq!(c.sluice_seconds, 1.0);
        let none = CaseResult::new("x", "y", 10, vec![], vec![1.0, 3.0], (1.0, "VmHWM"));
        assert_eq!(none.ratio, None);
        assert_eq!(none.sluice_seconds, 2.0);
    }

    #[test]
    fn targets_are_named_by_engine_and_source() {
        assert_eq!(target_loc(Engine::My, Engine::Pg), "pg_f_my");
        assert_eq!(target_loc(Engine::Lite, Engine::Lite), "lite_f_lite");
    }
}
