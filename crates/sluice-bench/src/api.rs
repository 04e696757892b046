//! `sluice bench --suite api`: a loopback load check of the hub server.
//!
//! It starts, in this process, a real hub server (`sluice serve`'s parts: repository,
//! [`HubService`], scheduler, [`sluice_api::serve`]) on a random loopback port with a fresh
//! repository (a SQLite file in a temp dir, or with `--repo postgres://…` a fresh database on that
//! server, dropped afterwards), then over HTTP with a real client (reqwest) logs in, defines hub
//! `bench` with two SQLite locations and channel `ch1` (the bench table of `--rows` rows, with its
//! columns declared), starts a refresh and, while it runs, drives
//! `GET …/definition/channels/ch1?fetch=tables&fetch=cols&fetch=loc_groups&fetch=members&fetch=channel_actions`
//! from `--concurrency` connections for `--seconds` after a 2 s warm-up. Each request's latency
//! (send to last body byte) goes into an HDR histogram; a response counts as an error unless it is
//! a 200 whose body is the expected channel. A keeper polls the refresh's event and starts another
//! refresh when one ends, so a refresh runs all along; the events' start and finish times then show
//! how much of the measured window had a refresh running.
//!
//! The server runs on its own Tokio runtime (2 worker threads, as `sluice serve` has on a 2-core
//! machine) and the load generator on the command's runtime: both share the machine's cores.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use rusqlite::Connection;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::args::{BenchArgs, Printing};
use crate::report::{json as print_json, table, thousands};
use crate::server::{HubServer, SERVER_THREADS};
use crate::source::build_source;

/// Default rows of the source table: enough that one refresh outlasts warm-up and measurement.
const DEFAULT_ROWS: i64 = 3_000_000;
/// Warm-up before the measured window.
const WARM_UP: Duration = Duration::from_secs(2);
/// How often the keeper looks at the refresh's event.
const KEEPER_POLL: Duration = Duration::from_millis(50);
/// Worker threads of the server's runtime (what `sluice serve` gets on a 2-core machine).
/// Targets the figures are reported against.
const TARGET_RPS: f64 = 5_000.0;
const TARGET_P99_MS: f64 = 20.0;

const HUB: &str = "bench";
const ADMIN_PASSWORD: &str = "bench-admin-password";

fn channel_path() -> String {
    format!(
        "/api/latest/hubs/{HUB}/definition/channels/ch1?fetch=tables&fetch=cols&fetch=loc_groups&fetch=members&fetch=channel_actions"
    )
}

/// The bench table's columns as declared in the channel (`CREATE TABLE bench_rows` of bench.rs).
fn bench_cols() -> Value {
    json!({
        "id": {"sequence": 1, "key": true, "data_type": "int64", "attributes": {"nullable": false}},
        "n": {"sequence": 2, "data_type": "int32", "attributes": {"nullable": false}},
        "name": {"sequence": 3, "data_type": "varchar(64)", "attributes": {"nullable": false}},
        "amount": {"sequence": 4, "data_type": "decimal(12,2)", "attributes": {"nullable": false}},
        "created": {"sequence": 5, "data_type": "timestamptz", "attributes": {"nullable": false}},
        "day": {"sequence": 6, "data_type": "date", "attributes": {"nullable": false}},
        "flag": {"sequence": 7, "data_type": "bool", "attributes": {"nullable": false}},
        "doc": {"sequence": 8, "data_type": "json", "attributes": {"nullable": false}},
        "note": {"sequence": 9, "data_type": "text", "attributes": {"nullable": true}},
    })
}

/// The parts of the channel's wire form the check looks at; the rest of the document is parsed
/// (it must be valid JSON) but not kept, which keeps the load generator's share of the CPU small.
#[derive(serde::Deserialize)]
struct WireChannel {
    loc_groups: BTreeMap<String, WireGroup>,
    tables: BTreeMap<String, WireTable>,
    actions: Vec<IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct WireGroup {
    members: Vec<String>,
}

#[derive(serde::Deserialize)]
struct WireTable {
    cols: BTreeMap<String, WireCol>,
}

#[derive(serde::Deserialize)]
struct WireCol {
    key: Option<i64>,
}

/// Whether a response body is channel `ch1` as defined (groups, members, table, columns, actions).
fn is_expected_channel(body: &[u8]) -> bool {
    let Ok(ch) = serde_json::from_slice::<WireChannel>(body) else {
        return false;
    };
    let members = |g: &str| ch.loc_groups.get(g).map(|g| g.members.as_slice());
    members("SOURCE") == Some(&["src".to_owned()][..])
        && members("TARGET") == Some(&["tgt".to_owned()][..])
        && ch
            .tables
            .get("bench_rows")
            .is_some_and(|t| t.cols.len() == 9 && t.cols.get("id").and_then(|c| c.key) == Some(1))
        && ch.actions.len() == 2
}

/// The source table: reused from `--dir` when it already holds exactly `rows` rows.
fn source_has(path: &Path, rows: i64) -> bool {
    let Ok(conn) = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return false;
    };
    conn.query_row(
        "SELECT count(*), coalesce(max(id), 0) FROM bench_rows",
        [],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
    )
    .is_ok_and(|(n, max)| n == rows && max == rows)
}

/// A fresh database on a PostgreSQL server, dropped by [`PgDatabase::drop_db`].
pub(crate) struct PgDatabase {
    admin_url: String,
    /// The database's name.
    pub(crate) name: String,
    /// Its URL, for `--repo`-style specs.
    pub(crate) spec: String,
}

impl PgDatabase {
    /// `postgres://USER@HOST:PORT[/DB][?…]` → a new database `<prefix>_<pid>_<ms>` there.
    pub(crate) async fn create(url: &str, prefix: &str) -> Result<PgDatabase> {
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (url, String::new()),
        };
        let scheme_end = base
            .find("://")
            .map(|i| i + 3)
            .with_context(|| format!("{url:?} is not a postgres:// URL"))?;
        let server = match base[scheme_end..].find('/') {
            Some(i) => &base[..scheme_end + i],
            None => base,
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let name = format!("{prefix}_{}_{stamp}", std::process::id());
        let db = PgDatabase {
            admin_url: format!("{server}/postgres{query}"),
            spec: format!("{server}/{name}{query}"),
            name,
        };
        db.admin(&format!("CREATE DATABASE {}", db.name)).await?;
        Ok(db)
    }

    async fn admin(&self, sql: &str) -> Result<()> {
        let connect = tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls);
        let (client, conn) = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| anyhow!("no answer within 10 s"))
            .and_then(|c| c.map_err(anyhow::Error::from))
            .with_context(|| {
                format!(
                    "PostgreSQL is unreachable at {} (start it with scripts/services)",
                    self.admin_url
                )
            })?;
        let conn = tokio::spawn(conn);
        let done = client.batch_execute(sql).await;
        drop(client);
        let _ = conn.await;
        done.with_context(|| format!("PostgreSQL refused {sql:?}"))
    }

    pub(crate) async fn drop_db(&self) -> Result<()> {
        self.admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await
    }
}

/// A logged-in HTTP client of the bench server (for set-up and the refresh keeper).
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path}: {status}: {text}");
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON: {text}"))
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn login(base: &str) -> Result<Api> {
        let mut api = Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            base: base.to_owned(),
            token: String::new(),
        };
        let answer = api
            .post(
                "/auth/v1/password",
                json!({"username": "admin", "password": ADMIN_PASSWORD}),
            )
            .await?;
        api.token = answer["access_token"]
            .as_str()
            .context("the login answer has no access_token")?
            .to_owned();
        Ok(api)
    }

    async fn define(&self, source: &Path, target: &Path) -> Result<()> {
        self.post(
            "/api/latest/hubs",
            json!({"hub": HUB, "props": {"Description": "sluice bench --suite api"}}),
        )
        .await?;
        for (loc, path) in [("src", source), ("tgt", target)] {
            self.post(
                &format!("/api/latest/hubs/{HUB}/definition/locs"),
                json!({"loc": loc, "props": {"Class": "sqlite", "Database_Name": path.display().to_string()}}),
            )
            .await?;
        }
        self.post(
            &format!("/api/latest/hubs/{HUB}/definition/channels"),
            json!({
                "channel": "ch1",
                "description": "bench rows",
                "loc_groups": {"SOURCE": {"members": ["src"]}, "TARGET": {"members": ["tgt"]}},
                "tables": {"bench_rows": {"cols": bench_cols()}},
                "actions": [
                    {"loc_scope": "SOURCE", "table_scope": "*", "type": "Capture"},
                    {"loc_scope": "TARGET", "table_scope": "*", "type": "Integrate"}
                ]
            }),
        )
        .await?;
        Ok(())
    }

    /// Starts a refresh of `ch1`; returns its event id.
    async fn refresh(&self) -> Result<String> {
        let posted = self
            .post(
                &format!("/api/latest/hubs/{HUB}/channels/ch1/refresh"),
                json!({"source_loc": "src", "target_loc": "tgt", "start_immediate": true}),
            )
            .await?;
        Ok(posted["posted_ev_id"]
            .as_str()
            .context("the refresh answer has no posted_ev_id")?
            .to_owned())
    }

    /// Events by id, with their results.
    async fn events(&self, ids: &[String]) -> Result<serde_json::Map<String, Value>> {
        let mut query = String::from("fetch_results=true");
        for id in ids {
            query.push_str("&ev_id=");
            query.push_str(&id.replace(':', "%3A"));
        }
        let events = self
            .get(&format!("/api/latest/hubs/{HUB}/events?{query}"))
            .await?;
        match events {
            Value::Object(map) => Ok(map),
            other => Err(anyhow!("the events answer is not an object: {other}")),
        }
    }
}

/// What the refresh keeper saw.
#[derive(Debug, Default)]
struct Kept {
    events: Vec<String>,
    /// Refreshes that ended otherwise than DONE: `event: state response`.
    failures: Vec<String>,
}

/// Polls the refresh's event; when it is no longer ACTIVE, starts the next refresh.
async fn keep_refreshing(api: Api, first: String, stop: CancellationToken) -> Result<Kept> {
    let mut kept = Kept {
        events: vec![first],
        ..Kept::default()
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(kept),
            _ = tokio::time::sleep(KEEPER_POLL) => {}
        }
        let current = kept.events.last().cloned().unwrap_or_default();
        let events = api.events(std::slice::from_ref(&current)).await?;
        let event = events
            .get(&current)
            .with_context(|| format!("the refresh event {current} is missing"))?;
        let state = event["state"].as_str().unwrap_or_default();
        if state == "ACTIVE" {
            continue;
        }
        if state != "DONE" {
            kept.failures.push(format!(
                "{current}: {state} {}",
                event["response"].as_str().unwrap_or_default()
            ));
        }
        if stop.is_cancelled() {
            return Ok(kept);
        }
        kept.events.push(api.refresh().await?);
    }
}

/// One connection's requests.
struct WorkerStats {
    histogram: Histogram<u64>,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
}

fn new_histogram() -> Result<Histogram<u64>> {
    // Microseconds, 1 µs to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).context("cannot create a histogram")
}

/// Sends the GET back to back on one keep-alive connection until `end`; records the requests
/// started from `measure_from` on.
async fn drive(
    http: reqwest::Client,
    url: reqwest::Url,
    token: String,
    measure_from: Instant,
    end: Instant,
) -> Result<WorkerStats> {
    let mut stats = WorkerStats {
        histogram: new_histogram()?,
        requests: 0,
        errors: 0,
        first_error: None,
    };
    let auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .context("the access token is not a header value")?;
    loop {
        let sent = Instant::now();
        if sent >= end {
            return Ok(stats);
        }
        let answer = match http
            .get(url.clone())
            .header(reqwest::header::AUTHORIZATION, auth.clone())
            .send()
            .await
        {
            Ok(resp) => {
                let status = resp.status();
                resp.bytes()
                    .await
                    .map(|b| (status, b))
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        let latency = sent.elapsed();
        let problem = match &answer {
            Ok((status, _)) if *status != reqwest::StatusCode::OK => {
                Some(format!("status {status}"))
            }
            Ok((_, body)) if !is_expected_channel(body) => Some(format!(
                "unexpected body: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )),
            Ok(_) => None,
            Err(e) => Some(e.clone()),
        };
        if sent < measure_from {
            continue;
        }
        stats.requests += 1;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        stats.histogram.saturating_record(micros.max(1));
        if let Some(p) = problem {
            stats.errors += 1;
            stats.first_error.get_or_insert(p);
        }
        if answer.is_err() {
            // Do not spin on a refused connection.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The refresh events' coverage of the measured window.
#[derive(Debug, serde::Serialize)]
struct RefreshCoverage {
    refreshes_started: usize,
    refreshes_done: usize,
    refresh_failures: Vec<String>,
    /// Seconds of each refresh that finished (DONE).
    refresh_seconds: Vec<f64>,
    /// Time in the measured window with no refresh ACTIVE.
    uncovered_ms: f64,
    running_throughout: bool,
}

fn parse_ts(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn coverage(
    events: &serde_json::Map<String, Value>,
    kept: &Kept,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> RefreshCoverage {
    let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    let mut done = 0;
    let mut seconds = Vec::new();
    for id in &kept.events {
        let Some(e) = events.get(id) else { continue };
        let (Some(start), finish) = (parse_ts(&e["start_tstamp"]), parse_ts(&e["finish_tstamp"]))
        else {
            continue;
        };
        if e["state"] == "DONE" {
            done += 1;
            if let Some(f) = finish {
                seconds.push((f - start).as_seconds_f64());
            }
        }
        spans.push((start, finish.unwrap_or(to).max(start)));
    }
    spans.sort();
    let mut uncovered = chrono::TimeDelta::zero();
    let mut at = from;
    for (start, finish) in spans {
        if finish <= at {
            continue;
        }
        if start > at {
            uncovered += start.min(to) - at;
        }
        at = finish.max(at);
        if at >= to {
            break;
        }
    }
    if at < to {
        uncovered += to - at;
    }
    let uncovered_ms = uncovered.as_seconds_f64() * 1000.0;
    RefreshCoverage {
        refreshes_started: kept.events.len(),
        refreshes_done: done,
        refresh_failures: kept.failures.clone(),
        refresh_seconds: seconds,
        uncovered_ms,
        running_throughout: uncovered.is_zero() && kept.failures.is_empty(),
    }
}

/// The figures of one run.
#[derive(Debug, serde::Serialize)]
struct Report {
    repository: String,
    rows: i64,
    concurrency: u32,
    warm_up_seconds: f64,
    seconds: f64,
    requests: u64,
    requests_per_second: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors: u64,
    first_error: Option<String>,
    /// None with `--no-refresh`.
    refresh: Option<RefreshCoverage>,
    cores: usize,
    server_threads: usize,
    meets_targets: bool,
    note: String,
}

/// Runs the suite.
pub async fn run(args: BenchArgs, g: &Printing) -> Result<()> {
    // reqwest is built without a crypto provider of its own (plain HTTP needs none to run).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rows = args.rows.unwrap_or(DEFAULT_ROWS);
    if rows < 1 {
        bail!("--rows must be at least 1");
    }
    std::fs::create_dir_all(&args.dir)?;
    let dir = args.dir.canonicalize()?;
    let source = dir.join("api-source.db");
    if !source_has(&source, rows) {
        if !g.json {
            note!(
                "building {} rows in {} …",
                thousands(rows as u64),
                source.display()
            );
        }
        tokio::task::spawn_blocking({
            let source = source.clone();
            move || build_source(&source, rows)
        })
        .await??;
    }
    let work = tempfile::Builder::new()
        .prefix("sluice-bench-api")
        .tempdir()
        .context("cannot create a temp dir")?;
    let target = work.path().join("target.db");
    let pg = match &args.repo {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Some(PgDatabase::create(url, "sluice_bench_api").await?)
        }
        Some(other) => bail!("--repo: expected postgres://USER@HOST:PORT, got {other:?}"),
        None => None,
    };
    let (spec, repository) = match &pg {
        Some(db) => (
            db.spec.clone(),
            format!("PostgreSQL (fresh database {})", db.name),
        ),
        None => (
            format!("sqlite:{}", work.path().join("hub.db").display()),
            "SQLite (fresh file in a temp dir)".to_owned(),
        ),
    };
    let outcome = match HubServer::start(&spec, ADMIN_PASSWORD, "sluice bench api").await {
        Ok(server) => {
            let measured = measure(&server.base, &args, &source, &target, rows, g).await;
            server.stop().await;
            measured
        }
        Err(e) => Err(e),
    };
    if let Some(db) = &pg
        && let Err(e) = db.drop_db().await
    {
        note!(
            "warning: could not drop the bench database {}: {e:#}",
            db.name
        );
    }
    let mut report = outcome?;
    report.repository = repository;
    if g.json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(())
}

async fn measure(
    base: &str,
    args: &BenchArgs,
    source: &Path,
    target: &Path,
    rows: i64,
    g: &Printing,
) -> Result<Report> {
    let api = Api::login(base).await?;
    api.define(source, target).await?;
    let stop_keeper = CancellationToken::new();
    let keeper = if args.no_refresh {
        None
    } else {
        let first = api.refresh().await?;
        Some(tokio::spawn(keep_refreshing(
            api.clone(),
            first,
            stop_keeper.clone(),
        )))
    };

    let concurrency = args.concurrency;
    let seconds = Duration::from_secs(u64::from(args.seconds.unwrap_or(10)));
    if !g.json {
        note!(
            "hub server at {base}; {}; {concurrency} connections: {} s warm-up, {} s measured …",
            if args.no_refresh {
                "no refresh (--no-refresh)".to_owned()
            } else {
                format!("refresh of {} rows started", thousands(rows as u64))
            },
            WARM_UP.as_secs(),
            seconds.as_secs()
        );
    }
    let url = reqwest::Url::parse(&format!("{base}{}", channel_path()))?;
    let measure_from = Instant::now() + WARM_UP;
    let end = measure_from + seconds;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        // One client per connection: each worker keeps exactly one keep-alive connection.
        let http = reqwest::Client::builder()
            .http1_only()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?;
        workers.push(tokio::spawn(drive(
            http,
            url.clone(),
            api.token.clone(),
            measure_from,
            end,
        )));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let window_from = Utc::now();
    tokio::time::sleep_until(end.into()).await;
    let window_to = Utc::now();
    let mut histogram = new_histogram()?;
    let (mut requests, mut errors, mut first_error) = (0, 0, None);
    for w in workers {
        let s = w.await.context("a load worker failed")??;
        histogram.add(&s.histogram).context("merge histograms")?;
        requests += s.requests;
        errors += s.errors;
        if first_error.is_none() {
            first_error = s.first_error;
        }
    }
    stop_keeper.cancel();
    let kept = match keeper {
        Some(k) => k.await.context("the refresh keeper failed")??,
        None => Kept::default(),
    };
    let events = if kept.events.is_empty() {
        serde_json::Map::new()
    } else {
        api.events(&kept.events).await?
    };
    let refresh = coverage(&events, &kept, window_from, window_to);
    // Stop what still runs, so the server shuts down promptly.
    let active: Vec<&String> = kept
        .events
        .iter()
        .filter(|id| events.get(*id).is_some_and(|e| e["state"] == "ACTIVE"))
        .collect();
    if !active.is_empty() {
        let _ = api
            .post(
                &format!("/api/latest/hubs/{HUB}/events_cancel"),
                json!({ "ev_ids": active }),
            )
            .await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let ids: Vec<String> = active.iter().map(|s| (*s).clone()).collect();
            match api.events(&ids).await {
                Ok(ev) if ev.values().all(|e| e["state"] != "ACTIVE") => break,
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(_) => break,
            }
        }
    }

    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let measured = seconds.as_secs_f64();
    let rps = requests as f64 / measured;
    let p99 = ms(0.99);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Report {
        repository: String::new(),
        rows,
        concurrency,
        warm_up_seconds: WARM_UP.as_secs_f64(),
        seconds: measured,
        requests,
        requests_per_second: rps,
        p50_ms: ms(0.50),
        p90_ms: ms(0.90),
        p99_ms: p99,
        max_ms: histogram.max() as f64 / 1000.0,
        errors,
        first_error,
        refresh: (!args.no_refresh).then_some(refresh),
        cores,
        server_threads: SERVER_THREADS,
        meets_targets: errors == 0 && rps >= TARGET_RPS && p99 < TARGET_P99_MS,
        note: format!(
            "load generator and hub server run in this one process and share the machine's {cores} core(s): \
             the server on its own runtime of {SERVER_THREADS} worker threads, the load generator on the command's"
        ),
    })
}

fn refresh_line(rc: &RefreshCoverage) -> String {
    if rc.running_throughout {
        format!(
            "yes ({} started, {} done)",
            rc.refreshes_started, rc.refreshes_done
        )
    } else {
        format!(
            "no: {:.0} ms of the window without one ({} started, {} done{})",
            rc.uncovered_ms,
            rc.refreshes_started,
            rc.refreshes_done,
            if rc.refresh_failures.is_empty() {
                String::new()
            } else {
                format!("; failed: {}", rc.refresh_failures.join("; "))
            }
        )
    }
}

fn print_report(r: &Report) {
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    let refresh = match &r.refresh {
        None => "none (--no-refresh)".to_owned(),
        Some(rc) => refresh_line(rc),
    };
    let rows = vec![
        vec!["requests".into(), thousands(r.requests), String::new()],
        vec![
            "requests/s".into(),
            thousands(r.requests_per_second.round() as u64),
            format!(
                "≥ {} {}",
                thousands(TARGET_RPS as u64),
                met(r.requests_per_second >= TARGET_RPS)
            ),
        ],
        vec!["p50 ms".into(), format!("{:.2}", r.p50_ms), String::new()],
        vec!["p90 ms".into(), format!("{:.2}", r.p90_ms), String::new()],
        vec![
            "p99 ms".into(),
            format!("{:.2}", r.p99_ms),
            format!("< {TARGET_P99_MS:.0} {}", met(r.p99_ms < TARGET_P99_MS)),
        ],
        vec!["max ms".into(), format!("{:.2}", r.max_ms), String::new()],
        vec![
            "errors".into(),
            thousands(r.errors),
            format!("0 {}", met(r.errors == 0)),
        ],
        vec!["refresh running throughout".into(), refresh, String::new()],
    ];
    say!(
        "GET {} — {} connections, {:.0} s after a {:.0} s warm-up, repository {}, {}",
        channel_path(),
        r.concurrency,
        r.seconds,
        r.warm_up_seconds,
        r.repository,
        if r.refresh.is_some() {
            format!(
                "refreshes of {} rows SQLite→SQLite running",
                thousands(r.rows as u64)
            )
        } else {
            "no refresh".to_owned()
        }
    );
    say!("{}", table(&["measure", "value", "target"], rows));
    if let Some(rc) = &r.refresh
        && !rc.refresh_seconds.is_empty()
    {
        let secs: Vec<String> = rc
            .refresh_seconds
            .iter()
            .map(|s| format!("{s:.1}"))
            .collect();
        say!("refreshes that finished took {} s", secs.join(", "));
    }
    if let Some(e) = &r.first_error {
        say!("first error: {e}");
    }
    say!("note: {}", r.note);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn event(state: &str, start: &str, finish: Option<&str>) -> Value {
        let mut e = json!({"state": state, "start_tstamp": start});
        if let Some(f) = finish {
            e["finish_tstamp"] = json!(f);
        }
        e
    }

    #[test]
    fn coverage_counts_the_gaps_between_refreshes_inside_the_window() {
        let mut events = serde_json::Map::new();
        events.insert(
            "a".into(),
            event("DONE", "2026-01-01T00:00:00Z", Some("2026-01-01T00:00:05Z")),
        );
        events.insert("b".into(), event("ACTIVE", "2026-01-01T00:00:05.2Z", None));
        let kept = Kept {
            events: vec!["a".into(), "b".into()],
            failures: vec![],
        };
        let c = coverage(
            &events,
            &kept,
            t("2026-01-01T00:00:02Z"),
            t("2026-01-01T00:00:12Z"),
        );
        assert_eq!(c.refreshes_started, 2);
        assert_eq!(c.refreshes_done, 1);
        assert!((c.uncovered_ms - 200.0).abs() < 1e-6, "{c:?}");
        assert!(!c.running_throughout);

        let kept = Kept {
            events: vec!["b".into()],
            failures: vec![],
        };
        let c = coverage(
            &events,
            &kept,
            t("2026-01-01T00:00:06Z"),
            t("2026-01-01T00:00:12Z"),
        );
        assert!(c.running_throughout, "{c:?}");
    }

    #[test]
    fn only_the_expected_channel_is_a_success() {
        let good = json!({
            "description": "bench rows",
            "loc_groups": {"SOURCE": {"members": ["src"]}, "TARGET": {"members": ["tgt"]}},
            "tables": {"bench_rows": {"cols": bench_cols()}},
            "actions": [{}, {}]
        });
        // The wire form of a key is its position.
        let mut good = good;
        good["tables"]["bench_rows"]["cols"]["id"]["key"] = json!(1);
        assert!(is_expected_channel(good.to_string().as_bytes()));
        let mut bad = good.clone();
        bad["loc_groups"]["SOURCE"]["members"] = json!([]);
        assert!(!is_expected_channel(bad.to_string().as_bytes()));
        assert!(!is_expected_channel(b"F_JW054F: no token"));
    }
}
