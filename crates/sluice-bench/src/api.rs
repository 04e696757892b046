//! `sluice bench --suite api`: a loopback load check of the hub server, every part its own
//! process.
//!
//! It starts a `sluice serve` child process of this binary on a random loopback port with a fresh
//! repository (a SQLite file in a temp dir, or with `--repo postgres://…` a fresh database on that
//! server, dropped afterwards) and `--data-dir` the bench directory, then over HTTP with a real
//! client (reqwest) logs in, defines hub `bench` with two SQLite locations and channel `ch1` (the
//! bench table of `--rows` rows, with its columns declared), starts a refresh and, while it runs,
//! has `wrk` (another process) drive
//! `GET …/definition/channels/ch1?fetch=tables&fetch=cols&fetch=loc_groups&fetch=members&fetch=channel_actions`
//! from `--concurrency` connections on 2 threads for `--seconds` after a 2 s warm-up run of wrk.
//! wrk's own figures (requests, latency percentiles from its histogram, errors, answers other than
//! 2xx/3xx) come from a Lua `done` hook as one JSON line. Every 100 ms of the measured window this
//! process also sends the GET itself and checks that the answer is a 200 whose body is the
//! expected channel. A keeper polls the refresh's event and starts another refresh when one ends,
//! so a refresh runs all along; the events' start and finish times then show how much of the
//! measured window had a refresh running. The server's CPU time over the window is read from
//! `/proc`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use rusqlite::Connection;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::args::{BenchArgs, Printing};
use crate::report::{json as print_json, table, thousands};
use crate::server::ServeProcess;
use crate::source::build_source;

/// Default rows of the source table: enough that one refresh outlasts warm-up and measurement.
const DEFAULT_ROWS: i64 = 3_000_000;
/// Warm-up before the measured window (a wrk run of its own).
const WARM_UP: Duration = Duration::from_secs(2);
/// How often the keeper looks at the refresh's event.
const KEEPER_POLL: Duration = Duration::from_millis(50);
/// How often the checker sends the GET itself and checks the answer.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// Threads of wrk (at most the connections).
const WRK_THREADS: u32 = 2;
/// Targets the figures are reported against.
const TARGET_RPS: f64 = 5_000.0;
const TARGET_P99_MS: f64 = 20.0;
/// The line prefix of the figures the Lua `done` hook prints.
const WRK_FIGURES: &str = "sluice-wrk-figures ";

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

/// The JSON of a response (`null` when empty), or an error naming the request for a failure.
fn answer(
    method: &reqwest::Method,
    path: &str,
    status: reqwest::StatusCode,
    text: String,
) -> Result<Value> {
    if !status.is_success() {
        bail!("{method} {path}: {status}: {text}");
    }
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON: {text}"))
}

/// A logged-in HTTP client of the bench server (for set-up and the refresh keeper).
#[derive(Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    /// The access token, renewed by logging in again when the server says the session ended
    /// (access tokens live 15 minutes; a 20,000,000-row scale run takes longer).
    token: Arc<std::sync::RwLock<String>>,
    password: String,
}

impl Api {
    /// The current access token.
    pub(crate) fn token(&self) -> String {
        self.token
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    fn set_token(&self, token: String) {
        match self.token.write() {
            Ok(mut t) => *t = token,
            Err(e) => *e.into_inner() = token,
        }
    }

    /// Sends a request; when the server answers 401 (the session ended), logs in again once
    /// and repeats it.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let (status, text) = self.send_once(&method, path, body.as_ref()).await?;
        let (status, text) =
            if status == reqwest::StatusCode::UNAUTHORIZED && !self.token().is_empty() {
                self.log_in().await?;
                self.send_once(&method, path, body.as_ref()).await?
            } else {
                (status, text)
            };
        answer(&method, path, status, text)
    }

    async fn send_once(
        &self,
        method: &reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(reqwest::StatusCode, String)> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        let token = self.token();
        if !token.is_empty() {
            req = req.bearer_auth(&token);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        Ok((status, resp.text().await.unwrap_or_default()))
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// Logs in as `admin` at the bench server `base`.
    pub(crate) async fn login(base: &str) -> Result<Api> {
        Api::login_as(base, ADMIN_PASSWORD).await
    }

    /// Logs in as `admin` with `password` at the server `base`.
    pub(crate) async fn login_as(base: &str, password: &str) -> Result<Api> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Api::login_with(http, base, password).await
    }

    /// Logs in as `admin` with `password` at the server `base`, sending through `http`.
    pub(crate) async fn login_with(
        http: reqwest::Client,
        base: &str,
        password: &str,
    ) -> Result<Api> {
        let api = Api {
            http,
            base: base.to_owned(),
            token: Arc::default(),
            password: password.to_owned(),
        };
        api.log_in().await?;
        Ok(api)
    }

    /// The server's base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Logs in as `admin` and keeps the new access token.
    async fn log_in(&self) -> Result<()> {
        let (status, text) = self
            .send_once(
                &reqwest::Method::POST,
                "/auth/v1/password",
                Some(&json!({"username": "admin", "password": self.password})),
            )
            .await?;
        let answer = answer(&reqwest::Method::POST, "/auth/v1/password", status, text)?;
        self.set_token(
            answer["access_token"]
                .as_str()
                .context("the login answer has no access_token")?
                .to_owned(),
        );
        Ok(())
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

/// The wrk script: the bearer token on every request, and a `done` hook that prints wrk's
/// figures as one JSON line (latencies in microseconds, from wrk's own histogram).
fn wrk_script(token: &str) -> Result<String> {
    // The token goes into a Lua string literal: only a JWT's characters may.
    if token.is_empty()
        || !token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        bail!("the access token has characters a JWT does not have");
    }
    Ok(format!(
        r#"wrk.headers["Authorization"] = "Bearer {token}"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{WRK_FIGURES}{{"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"connect_errors":%.0f,"read_errors":%.0f,"write_errors":%.0f,"status_errors":%.0f,"timeouts":%.0f,' ..
    '"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"p999_us":%.0f,"max_us":%.0f,"mean_us":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"#
    ))
}

/// wrk's figures of one run, as its `done` hook prints them.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
struct WrkFigures {
    requests: u64,
    duration_us: f64,
    bytes: u64,
    connect_errors: u64,
    read_errors: u64,
    write_errors: u64,
    /// Answers other than 2xx/3xx.
    status_errors: u64,
    timeouts: u64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    mean_us: f64,
}

impl WrkFigures {
    fn errors(&self) -> u64 {
        self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.status_errors
            + self.timeouts
    }
}

/// Reads the `done` hook's line out of wrk's output.
fn parse_wrk(stdout: &str) -> Result<WrkFigures> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(WRK_FIGURES))
        .with_context(|| format!("wrk printed no figures; its output:\n{stdout}"))?;
    serde_json::from_str(line).with_context(|| format!("wrk's figures do not parse: {line}"))
}

/// The command line of a wrk run (for the report).
fn wrk_command(connections: u32, seconds: u64) -> String {
    format!(
        "wrk -t{} -c{connections} -d{seconds}s --latency -s <script: bearer token, JSON figures> URL",
        WRK_THREADS.min(connections)
    )
}

/// Runs wrk against `url` for `duration` with the script at `script`.
async fn run_wrk(
    url: &str,
    script: &Path,
    connections: u32,
    duration: Duration,
) -> Result<WrkFigures> {
    let threads = WRK_THREADS.min(connections).to_string();
    let args = [
        "-t".to_owned(),
        threads,
        "-c".to_owned(),
        connections.to_string(),
        "-d".to_owned(),
        format!("{}s", duration.as_secs()),
        "--latency".to_owned(),
        "-s".to_owned(),
        script.display().to_string(),
        url.to_owned(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("wrk")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .context("the wrk runner failed")?;
    let out = match out {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "wrk is not installed: the api suite generates its load with wrk in a process of its \
             own (install it with `apt-get install wrk`)"
        ),
        Err(e) => return Err(e).context("cannot run wrk"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_wrk(&stdout)
}

/// What the checker saw: its own GETs during the measured window.
#[derive(Debug, Default, serde::Serialize)]
struct Checked {
    requests: u64,
    failures: u64,
    first_failure: Option<String>,
}

/// Sends the GET every [`CHECK_EVERY`] until `stop`; each answer must be a 200 whose body is
/// the expected channel.
async fn check_answers(api: Api, stop: CancellationToken) -> Checked {
    let mut checked = Checked::default();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    let url = format!("{}{}", api.base, channel_path());
    loop {
        tokio::select! {
            _ = stop.cancelled() => return checked,
            _ = tick.tick() => {}
        }
        let answer = api.http.get(&url).bearer_auth(api.token()).send().await;
        let problem = match answer {
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Ok(_) if status != reqwest::StatusCode::OK => Some(format!("status {status}")),
                    Ok(body) if !is_expected_channel(&body) => Some(format!(
                        "unexpected body: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    )),
                    Ok(_) => None,
                    Err(e) => Some(e.to_string()),
                }
            }
            Err(e) => Some(e.to_string()),
        };
        checked.requests += 1;
        if let Some(p) = problem {
            checked.failures += 1;
            checked.first_failure.get_or_insert(p);
        }
    }
}

/// A process's CPU time (user + system) so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold blanks) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(ticks / 100.0)
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
    load_generator: String,
    warm_up_seconds: f64,
    seconds: f64,
    requests: u64,
    requests_per_second: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    /// wrk's connect, read, write and timeout errors and answers other than 2xx/3xx.
    errors: u64,
    wrk: WrkFigures,
    /// This process's own GETs, each checked for a 200 and the expected channel.
    checked: Checked,
    /// None with `--no-refresh`.
    refresh: Option<RefreshCoverage>,
    /// The server process's CPU time over the measured window, in cores (1.0 = one core busy).
    server_cores: Option<f64>,
    /// Extra options the server was started with (`--server-arg`).
    server_args: Vec<String>,
    cores: usize,
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
    // The target lives in the bench directory too: the server's --data-dir, where it lets
    // SQLite locations be.
    let target = dir.join(format!("api-target-{}.db", std::process::id()));
    let work = tempfile::Builder::new()
        .prefix("sluice-bench-api")
        .tempdir()
        .context("cannot create a temp dir")?;
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
    let data_dir = dir.display().to_string();
    let mut server_args = vec!["--repo", spec.as_str(), "--data-dir", data_dir.as_str()];
    server_args.extend(args.server_arg.iter().map(String::as_str));
    let outcome = match ServeProcess::start(&server_args, ADMIN_PASSWORD, "sluice-bench-api") {
        Ok(mut server) => {
            let measured =
                measure(&mut server, &args, &source, &target, rows, work.path(), g).await;
            let stopped = server.check_running();
            drop(server);
            measured.and_then(|m| stopped.map(|()| m))
        }
        Err(e) => Err(e),
    };
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", target.display()));
    }
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
    report.server_args = args.server_arg.clone();
    if g.json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(())
}

async fn measure(
    server: &mut ServeProcess,
    args: &BenchArgs,
    source: &Path,
    target: &Path,
    rows: i64,
    work: &Path,
    g: &Printing,
) -> Result<Report> {
    let base = server.url.clone();
    let api = Api::login(&base).await?;
    api.define(source, target).await?;
    let expected = api
        .http
        .get(format!("{base}{}", channel_path()))
        .bearer_auth(api.token())
        .send()
        .await?;
    let status = expected.status();
    let body = expected.bytes().await?;
    if status != reqwest::StatusCode::OK || !is_expected_channel(&body) {
        bail!(
            "the channel's GET does not answer the channel: {status} {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    let script: PathBuf = work.join("bench.lua");
    std::fs::write(&script, wrk_script(&api.token())?).context("cannot write the wrk script")?;

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
            "sluice serve at {base} (pid {}); {}; wrk, {concurrency} connections: {} s warm-up, {} s measured …",
            server.pid(),
            if args.no_refresh {
                "no refresh (--no-refresh)".to_owned()
            } else {
                format!("refresh of {} rows started", thousands(rows as u64))
            },
            WARM_UP.as_secs(),
            seconds.as_secs()
        );
    }
    let url = format!("{base}{}", channel_path());
    let measured = async {
        run_wrk(&url, &script, concurrency, WARM_UP)
            .await
            .context("the warm-up run of wrk")?;
        let stop_checker = CancellationToken::new();
        let checker = tokio::spawn(check_answers(api.clone(), stop_checker.clone()));
        let cpu_from = cpu_seconds(server.pid());
        let window_from = Utc::now();
        let started = Instant::now();
        let figures = run_wrk(&url, &script, concurrency, seconds).await;
        let elapsed = started.elapsed().as_secs_f64();
        let window_to = Utc::now();
        let cpu_to = cpu_seconds(server.pid());
        stop_checker.cancel();
        let checked = checker.await.context("the answer checker failed")?;
        let server_cores = cpu_from.zip(cpu_to).map(|(from, to)| (to - from) / elapsed);
        Ok::<_, anyhow::Error>((figures?, checked, window_from, window_to, server_cores))
    }
    .await;
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
    // Stop what still runs, so the server stops promptly.
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
    let (wrk, checked, window_from, window_to, server_cores) = measured?;
    let refresh = coverage(&events, &kept, window_from, window_to);

    let ms = |us: f64| us / 1000.0;
    let measured_seconds = wrk.duration_us / 1e6;
    let rps = if measured_seconds > 0.0 {
        wrk.requests as f64 / measured_seconds
    } else {
        0.0
    };
    let p99 = ms(wrk.p99_us);
    let errors = wrk.errors();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let refresh_ok = args.no_refresh || refresh.running_throughout;
    Ok(Report {
        repository: String::new(),
        rows,
        concurrency,
        load_generator: wrk_command(concurrency, seconds.as_secs()),
        warm_up_seconds: WARM_UP.as_secs_f64(),
        seconds: measured_seconds,
        requests: wrk.requests,
        requests_per_second: rps,
        p50_ms: ms(wrk.p50_us),
        p90_ms: ms(wrk.p90_us),
        p99_ms: p99,
        p999_ms: ms(wrk.p999_us),
        max_ms: ms(wrk.max_us),
        errors,
        meets_targets: errors == 0
            && checked.failures == 0
            && refresh_ok
            && rps >= TARGET_RPS
            && p99 < TARGET_P99_MS,
        wrk,
        checked,
        refresh: (!args.no_refresh).then_some(refresh),
        server_cores,
        server_args: Vec::new(),
        cores,
        note: format!(
            "sluice serve, wrk and this process (set-up, refresh keeper, answer checks) are separate \
             processes sharing the machine's {cores} core(s)"
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
        vec![
            "p99.9 ms".into(),
            format!("{:.2}", r.p999_ms),
            String::new(),
        ],
        vec!["max ms".into(), format!("{:.2}", r.max_ms), String::new()],
        vec![
            "errors (wrk)".into(),
            thousands(r.errors),
            format!("0 {}", met(r.errors == 0)),
        ],
        vec![
            "answers checked / wrong".into(),
            format!(
                "{} / {}",
                thousands(r.checked.requests),
                thousands(r.checked.failures)
            ),
            format!("0 wrong {}", met(r.checked.failures == 0)),
        ],
        vec![
            "server CPU (cores)".into(),
            r.server_cores
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.2}")),
            String::new(),
        ],
        vec!["refresh running throughout".into(), refresh, String::new()],
    ];
    say!(
        "GET {} — {}, {:.1} s after a {:.0} s warm-up, repository {}, {}{}",
        channel_path(),
        r.load_generator,
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
        },
        if r.server_args.is_empty() {
            String::new()
        } else {
            format!(", server options {}", r.server_args.join(" "))
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
    if let Some(e) = &r.checked.first_failure {
        say!("first wrong answer: {e}");
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

    #[test]
    fn wrk_figures_come_from_the_done_hook_line() {
        let out = "Running 10s test @ http://127.0.0.1:1/x\n  2 threads and 32 connections\n\
            sluice-wrk-figures {\"requests\":51234,\"duration_us\":10001234,\"bytes\":99,\
            \"connect_errors\":0,\"read_errors\":1,\"write_errors\":0,\"status_errors\":2,\
            \"timeouts\":0,\"p50_us\":2100,\"p90_us\":4000,\"p99_us\":9000,\"p999_us\":15000,\
            \"max_us\":30000,\"mean_us\":2500.5}\n";
        let f = parse_wrk(out).expect("parsed");
        assert_eq!(f.requests, 51_234);
        assert_eq!(f.errors(), 3);
        assert!((f.p99_us - 9000.0).abs() < 1e-9);
        assert!(parse_wrk("no figures here").is_err());
    }

    #[test]
    fn only_a_jwt_goes_into_the_wrk_script() {
        let script = wrk_script("eyJh.eyJz-_x.sig").expect("a JWT");
        assert!(script.contains(r#""Bearer eyJh.eyJz-_x.sig""#));
        assert!(script.contains(WRK_FIGURES));
        assert!(wrk_script(r#"a" os.execute("x")"#).is_err());
        assert!(wrk_script("").is_err());
    }
}
