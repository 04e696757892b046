//! Golden answers of every face: the router is called directly (`oneshot`) over a SQLite
//! repository in a temporary directory with the event hub running, and representative answers
//! (status, the headers a client reads, the full body) are compared with the files under
//! `tests/snapshots/` (insta). Only what varies between runs is replaced: timestamps, event ids,
//! tokens, API keys, the temporary directory, durations and rates.
//!
//! A missing or different snapshot fails the test; under `CI=true` insta writes nothing (its
//! `INSTA_UPDATE=auto` default). Review changes with `cargo insta review` or by renaming the
//! `.snap.new` files insta leaves next to the snapshots.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use serde_json::{Value, json};
use sluice_model::AccessLevel;
use sluice_test_support::{ADMIN_PASSWORD, TestHub, TestRepository};
use tower::ServiceExt as _;

const READER_PASSWORD: &str = "reader-password-1";

/// The headers a client reads, kept in the snapshots.
const KEPT_HEADERS: [&str; 5] = [
    "content-type",
    "www-authenticate",
    "retry-after",
    "location",
    "cache-control",
];

/// What varies between runs, and what replaces it.
#[derive(Default)]
struct Scrub {
    /// Literal texts (the temporary directory, tokens, keys, event ids) and their stand-ins.
    literals: Vec<(String, String)>,
}

impl Scrub {
    fn literal(&mut self, text: impl Into<String>, stand_in: impl Into<String>) {
        let text = text.into();
        if !text.is_empty() {
            self.literals.push((text, stand_in.into()));
            // The longest first, so a text that contains another is replaced whole.
            self.literals
                .sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        }
    }

    /// `text` with the literals, timestamps and durations replaced.
    fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (literal, stand_in) in &self.literals {
            out = out.replace(literal, stand_in);
        }
        let time = regex::Regex::new(
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2}| ?UTC)?",
        )
        .unwrap();
        let out = time.replace_all(&out, "[time]");
        let seconds = regex::Regex::new(r"\b\d+(\.\d+)? s\b").unwrap();
        let out = seconds.replace_all(&out, "[duration]");
        let elapsed = regex::Regex::new(r"elapsed=\d+(\.\d+)?s").unwrap();
        elapsed.replace_all(&out, "elapsed=[duration]").into_owned()
    }

    /// An HTML page scrubbed: besides [`Scrub::text`], the charts (their bars measure rates and
    /// durations) and the rows per second of the refreshes of a channel page.
    fn html(&self, page: &str) -> String {
        let chart = regex::Regex::new(r#"(?s)<svg class="chart".*?</svg>"#).unwrap();
        let page = chart.replace_all(page, "[chart]");
        let rate = regex::Regex::new(r#"<td class="num">\d+</td></tr>"#).unwrap();
        let page = rate.replace_all(&page, r#"<td class="num">[rate]</td></tr>"#);
        self.text(&page)
    }

    /// `value` with keys and strings scrubbed and the numbers under `volatile` keys replaced.
    fn json(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        // A per-table result of an event: `{"result": "Table_Duration", "value": …}`.
                        let measured = k == "value"
                            && map
                                .get("result")
                                .and_then(Value::as_str)
                                .is_some_and(volatile);
                        let v = if (volatile(k) || measured) && !v.is_null() {
                            Value::String(format!("[{k}]"))
                        } else {
                            self.json(v)
                        };
                        (self.text(k), v)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// Keys whose values measure time (durations, rates, uptime).
fn volatile(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "duration", "elapsed", "rate", "per_sec", "uptime", "_secs", "_ms", "latency",
    ]
    .iter()
    .any(|part| key.contains(part))
}

struct Answer {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Status line, kept headers and the body as text (HTML, plain text).
    fn page(&self, scrub: &Scrub) -> String {
        let mut out = format!("{}\n", self.status);
        for (name, value) in &self.headers {
            if KEPT_HEADERS.contains(&name.as_str()) {
                out.push_str(&format!("{name}: {}\n", scrub.text(value)));
            }
        }
        out.push('\n');
        let body = self.text();
        if self
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
        {
            out.push_str(&scrub.html(&body));
        } else {
            out.push_str(&scrub.text(&body));
        }
        out
    }

    /// Status, kept headers and the body, as JSON (the body parsed when it is JSON).
    fn document(&self, scrub: &Scrub) -> Value {
        let mut headers = serde_json::Map::new();
        for (name, value) in &self.headers {
            if KEPT_HEADERS.contains(&name.as_str()) {
                headers.insert(name.clone(), Value::String(scrub.text(value)));
            }
        }
        let body = match serde_json::from_slice::<Value>(&self.body) {
            Ok(v) => scrub.json(&v),
            Err(_) => Value::String(scrub.text(&self.text())),
        };
        json!({"status": self.status.as_u16(), "headers": headers, "body": body})
    }
}

enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str),
    Cookie(&'a str),
    /// The session cookies, from the dashboard's script (it wants notices as JSON).
    Fetch(&'a str),
}

struct Fixture {
    state: sluice_api::AppState,
    hub: TestHub,
    scrub: Scrub,
    /// The admin's access token.
    token: String,
    /// The ReadOnly user's access token.
    reader: String,
    /// HTTP Basic credentials of a SysAdmin API key.
    basic: String,
}

async fn start() -> Fixture {
    let repository = TestRepository::sqlite();
    let config = TestHub::config(&repository);
    let hub = TestHub::open(repository, config).await;
    let service = hub.service();
    service
        .create_user("reader", AccessLevel::ReadOnly, READER_PASSWORD)
        .await
        .unwrap();
    let (key, secret) = service
        .create_api_key(AccessLevel::SysAdmin, "golden test")
        .await
        .unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}", key.key));
    let mut scrub = Scrub::default();
    scrub.literal(hub.dir().display().to_string(), "[dir]");
    scrub.literal(key.key.clone(), "[api key]");
    scrub.literal(secret, "[api secret]");
    let mut f = Fixture {
        state: hub.state().clone(),
        hub,
        scrub,
        token: String::new(),
        reader: String::new(),
        basic,
    };
    f.token = f.login("admin", ADMIN_PASSWORD).await;
    f.reader = f.login("reader", READER_PASSWORD).await;
    f
}

impl Fixture {
    async fn login(&mut self, user: &str, password: &str) -> String {
        let a = self
            .send(
                "POST",
                "/auth/v1/password",
                Auth::None,
                Some(json!({"username": user, "password": password})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let token = a.json()["access_token"].as_str().unwrap().to_owned();
        self.scrub.literal(token.clone(), format!("[{user} token]"));
        token
    }

    async fn send(&self, method: &str, path: &str, auth: Auth<'_>, body: Option<Value>) -> Answer {
        let body = body.map(|b| ("application/json", b.to_string()));
        self.send_raw(method, path, auth, body).await
    }

    async fn send_raw(
        &self,
        method: &str,
        path: &str,
        auth: Auth<'_>,
        body: Option<(&str, String)>,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "hub.test");
        match auth {
            Auth::None => {}
            Auth::Bearer(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
            Auth::Basic(b) => req = req.header(header::AUTHORIZATION, format!("Basic {b}")),
            Auth::Cookie(c) => {
                req = req
                    .header(header::COOKIE, c)
                    .header(header::ORIGIN, "http://hub.test");
            }
            Auth::Fetch(c) => {
                req = req
                    .header(header::COOKIE, c)
                    .header(header::ORIGIN, "http://hub.test")
                    .header("x-sluice-fetch", "1");
            }
        }
        let body = match body {
            Some((content_type, text)) => {
                req = req.header(header::CONTENT_TYPE, content_type);
                Body::from(text)
            }
            None => Body::empty(),
        };
        let response = sluice_api::app(self.state.clone())
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    fn source(&self) -> String {
        let path = self.hub.dir().join("src.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, name TEXT NOT NULL, amount REAL);
             INSERT INTO orders VALUES (1, 'one', 1.5), (2, 'two', 3.0), (3, 'three', NULL);",
        )
        .unwrap();
        path.display().to_string()
    }

    /// Creates hub `h1` and imports its definition: locations `src` and `tgt`, channel `ch1`
    /// (`orders`) with Capture and Integrate.
    async fn define(&self) {
        let src = self.source();
        let tgt = self.hub.dir().join("tgt.db").display().to_string();
        let a = self
            .send(
                "POST",
                "/api/latest/hubs",
                Auth::Bearer(&self.token),
                Some(json!({"hub": "h1", "props": {"Description": "golden"}})),
            )
            .await;
        assert!(a.status.is_success(), "{}", a.text());
        let import = json!({"changes": [
            {"add_loc": {"loc": "src", "props": {"Class": "sqlite", "Database_Name": src}}},
            {"add_loc": {"loc": "tgt", "props": {"Class": "sqlite", "Database_Name": tgt}}},
            {"add_channel": {
                "channel": "ch1",
                "description": "orders",
                "loc_groups": {"SRC": {"members": ["src"]}, "TGT": {"members": ["tgt"]}},
                "tables": {"orders": {"cols": {
                    "id": {"sequence": 1, "key": 1, "data_type": "number",
                           "attributes": {"prec": 10, "scale": 0, "nullable": false}},
                    "name": {"sequence": 2, "data_type": "varchar",
                             "attributes": {"charlen": "100", "nullable": false}},
                    "amount": {"sequence": 3, "data_type": "float64"}
                }}},
                "actions": [
                    {"type": "Capture", "loc_scope": "SRC"},
                    {"type": "Integrate", "loc_scope": "TGT", "params": {}}
                ]
            }}
        ]});
        let a = self
            .send(
                "POST",
                "/api/latest/hubs/h1/definition/import",
                Auth::Bearer(&self.token),
                Some(import),
            )
            .await;
        assert!(a.status.is_success(), "{}", a.text());
    }

    /// Refreshes `ch1` and waits for the event to finish; its id is scrubbed as `[ev N]`.
    async fn refresh(&mut self) -> String {
        let run = json!({"source_loc": "src", "target_loc": "tgt", "tables": ["orders"]});
        let a = self
            .send(
                "POST",
                "/api/latest/hubs/h1/channels/ch1/refresh",
                Auth::Bearer(&self.token),
                Some(run),
            )
            .await;
        assert!(a.status.is_success(), "{}", a.text());
        let ev = a.json()["posted_ev_id"].as_str().unwrap().to_owned();
        self.name_event(&ev);
        for _ in 0..400 {
            let a = self
                .send(
                    "GET",
                    &format!("/api/latest/hubs/h1/events?ev_id={ev}"),
                    Auth::Bearer(&self.token),
                    None,
                )
                .await
                .json();
            if a[&ev]["state"] != "ACTIVE" {
                assert_eq!(a[&ev]["state"], "DONE", "{a}");
                return ev;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the refresh did not finish");
    }

    /// Scrubs event id `ev` as `[ev N]` (numbered in the order they are first seen).
    fn name_event(&mut self, ev: &str) {
        let known = |(t, _): &(String, String)| t == ev;
        if self.scrub.literals.iter().any(known) {
            return;
        }
        let n = self
            .scrub
            .literals
            .iter()
            .filter(|(_, s)| s.starts_with("[ev "))
            .count();
        self.scrub.literal(ev, format!("[ev {}]", n + 1));
    }

    /// Names the events of an events list (keyed by event id).
    fn name_events(&mut self, list: &Value) {
        for ev in list.as_object().unwrap().keys() {
            self.name_event(ev);
        }
    }

    /// Logs in to the dashboard; the session cookies.
    async fn dashboard_login(&mut self) -> String {
        let a = self
            .send_raw(
                "POST",
                "/ui/login",
                Auth::Cookie(""),
                Some((
                    "application/x-www-form-urlencoded",
                    format!("username=admin&password={ADMIN_PASSWORD}&next=%2Fui%2Fchannels"),
                )),
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text());
        let mut cookies = Vec::new();
        for (name, value) in &a.headers {
            if name == "set-cookie" {
                let pair = value.split(';').next().unwrap().to_owned();
                let token = pair.split_once('=').unwrap().1.to_owned();
                self.scrub.literal(token, "[cookie token]");
                cookies.push(pair);
            }
        }
        cookies.join("; ")
    }
}

fn json_golden(name: &str, f: &Fixture, answer: &Answer) {
    insta::assert_json_snapshot!(name, answer.document(&f.scrub));
}

fn page_golden(name: &str, f: &Fixture, answer: &Answer) {
    insta::assert_snapshot!(name, answer.page(&f.scrub));
}

/// The HVR API: login, hubs, a definition after an import, events with results, jobs, errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hvr_api() {
    let mut f = start().await;
    let login = f
        .send(
            "POST",
            "/auth/v1/password",
            Auth::None,
            Some(json!({"username": "admin", "password": ADMIN_PASSWORD, "refresh": "token"})),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK);
    insta::assert_json_snapshot!("hvr_login", login.document(&f.scrub), {
        ".body.access_token" => "[token]",
        ".body.refresh_token" => "[token]",
    });

    f.define().await;
    let t = f.token.clone();
    let a = f
        .send("GET", "/api/latest/hubs", Auth::Bearer(&t), None)
        .await;
    json_golden("hvr_hubs", &f, &a);
    let a = f
        .send(
            "GET",
            "/api/latest/hubs/h1/definition",
            Auth::Bearer(&t),
            None,
        )
        .await;
    json_golden("hvr_definition", &f, &a);

    f.refresh().await;
    let a = f
        .send(
            "GET",
            "/api/latest/hubs/h1/events?fetch_results=true",
            Auth::Bearer(&t),
            None,
        )
        .await;
    f.name_events(&a.json());
    json_golden("hvr_events", &f, &a);
    let a = f
        .send("GET", "/api/latest/hubs/h1/jobs", Auth::Bearer(&t), None)
        .await;
    json_golden("hvr_jobs", &f, &a);

    // errors
    let a = f
        .send("GET", "/api/latest/no/such/route", Auth::Bearer(&t), None)
        .await;
    page_golden("hvr_error_no_route", &f, &a);
    let a = f
        .send("GET", "/api/latest/hubs/nohub", Auth::Bearer(&t), None)
        .await;
    page_golden("hvr_error_no_hub", &f, &a);
    let a = f
        .send_raw(
            "POST",
            "/api/latest/hubs",
            Auth::Bearer(&t),
            Some(("application/json", "{\"hub\": ".to_owned())),
        )
        .await;
    page_golden("hvr_error_bad_body", &f, &a);
    let a = f.send("GET", "/api/latest/hubs", Auth::None, None).await;
    page_golden("hvr_error_no_token", &f, &a);
    let r = f.reader.clone();
    let a = f
        .send(
            "POST",
            "/api/latest/hubs",
            Auth::Bearer(&r),
            Some(json!({"hub": "h2"})),
        )
        .await;
    page_golden("hvr_error_low_level", &f, &a);
}

/// The Fivetran-compatible `/v1` face: connectors, a group, an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fivetran_api() {
    let f = start().await;
    f.define().await;
    let b = f.basic.clone();
    for (name, path) in [
        ("fivetran_connectors", "/v1/connectors"),
        ("fivetran_connector", "/v1/connectors/h1.ch1"),
        ("fivetran_group", "/v1/groups/h1"),
        ("fivetran_error_not_found", "/v1/connectors/h1.nothing"),
    ] {
        let a = f.send("GET", path, Auth::Basic(&b), None).await;
        json_golden(name, &f, &a);
    }
    let a = f.send("GET", "/v1/connectors", Auth::None, None).await;
    json_golden("fivetran_error_no_key", &f, &a);
}

/// The event hub: a topic created and listed, a publish, a history page, an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_hub_api() {
    let f = start().await;
    let t = f.token.clone();
    let topic = json!({"name": "t1", "description": "readings", "retention": {"max_count": 100},
                       "schema": {"type": "object"}});
    let a = f
        .send("POST", "/topics", Auth::Bearer(&t), Some(topic))
        .await;
    json_golden("events_topic_create", &f, &a);
    let a = f.send("GET", "/topics", Auth::Bearer(&t), None).await;
    json_golden("events_topic_list", &f, &a);
    let one = json!({"topic": "t1", "routing_key": "a.b", "payload": {"x": 1}, "id": "e1"});
    let a = f.send("POST", "/events", Auth::Bearer(&t), Some(one)).await;
    json_golden("events_publish", &f, &a);
    let batch = json!([{"topic": "t1", "routing_key": "a.c", "payload": {"x": 2}, "id": "e2"}]);
    let a = f
        .send("POST", "/events", Auth::Bearer(&t), Some(batch))
        .await;
    json_golden("events_publish_batch", &f, &a);
    let a = f
        .send("GET", "/events/t1/history?limit=1", Auth::Bearer(&t), None)
        .await;
    json_golden("events_history", &f, &a);
    let a = f
        .send(
            "POST",
            "/events",
            Auth::Bearer(&t),
            Some(json!({"topic": "t1", "routing_key": "a", "payload": 3})),
        )
        .await;
    page_golden("events_error_schema", &f, &a);
    let a = f
        .send("GET", "/topics/nothing", Auth::Bearer(&t), None)
        .await;
    page_golden("events_error_not_found", &f, &a);
}

/// The dashboard: the channel list and a channel page after a refresh, and a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_pages() {
    let mut f = start().await;
    f.define().await;
    f.refresh().await;
    let cookies = f.dashboard_login().await;
    let a = f
        .send("GET", "/ui/channels", Auth::Cookie(&cookies), None)
        .await;
    page_golden("ui_channels", &f, &a);
    let a = f
        .send(
            "GET",
            "/ui/hubs/h1/channels/ch1",
            Auth::Cookie(&cookies),
            None,
        )
        .await;
    page_golden("ui_channel", &f, &a);
    let a = f
        .send(
            "GET",
            "/ui/hubs/h1/channels/nothing",
            Auth::Cookie(&cookies),
            None,
        )
        .await;
    page_golden("ui_error_no_channel", &f, &a);
}

/// Texts of the drivers (tokio-postgres, rusqlite) that reach a body only through a source chain.
const DRIVER_TEXTS: [&str; 5] = [
    "error connecting to server",
    "os error",
    "Connection refused",
    "no such table",
    "SQL logic error",
];

fn no_driver_text(what: &str, body: &str) {
    for text in DRIVER_TEXTS {
        assert!(
            !body.contains(text),
            "{what}: the driver's text reached the body: {body}"
        );
    }
}

/// A driver's own text stays in the log, on every face: a location test against a closed port
/// (HVR, dashboard notice), then a repository table and an event store table gone (HVR, `/v1`,
/// event hub, dashboard page). The clean bodies are pinned too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_errors_stay_out_of_bodies() {
    let mut f = start().await;
    f.define().await;
    let t = f.token.clone();
    let b = f.basic.clone();
    let closed = json!({"Class": "postgresql", "Database_Host": "127.0.0.1", "Database_Port": 1,
        "Database_Name": "x", "Database_User": "u", "Database_Sslmode": "disable"});
    let a = f
        .send(
            "POST",
            "/api/latest/hubs/h1/new_loc/test",
            Auth::Bearer(&t),
            Some(json!({ "props": closed })),
        )
        .await;
    no_driver_text("new location test", &a.text());
    page_golden("driver_hvr_closed_port", &f, &a);
    let import = json!({"changes": [{"add_loc": {"loc": "closed", "props": closed}}]});
    let a = f
        .send(
            "POST",
            "/api/latest/hubs/h1/definition/import",
            Auth::Bearer(&t),
            Some(import),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let a = f
        .send(
            "POST",
            "/api/latest/hubs/h1/locs/closed/test",
            Auth::Bearer(&t),
            None,
        )
        .await;
    no_driver_text("location test", &a.text());
    page_golden("driver_hvr_closed_port_location", &f, &a);
    let cookies = f.dashboard_login().await;
    let a = f
        .send(
            "POST",
            "/ui/hubs/h1/locs/closed/test",
            Auth::Fetch(&cookies),
            None,
        )
        .await;
    no_driver_text("dashboard location test", &a.text());
    json_golden("driver_ui_closed_port", &f, &a);

    // The repository and the event store lose a table.
    let a = f
        .send(
            "POST",
            "/topics",
            Auth::Bearer(&t),
            Some(json!({"name": "t1"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let db = rusqlite::Connection::open(f.hub.dir().join("hub.db")).unwrap();
    db.execute_batch(
        "ALTER TABLE hub RENAME TO hub_gone; ALTER TABLE ev_event RENAME TO ev_event_gone;",
    )
    .unwrap();
    for (name, path, auth) in [
        (
            "driver_hvr_repository",
            "/api/latest/hubs",
            Auth::Bearer(&t),
        ),
        ("driver_fivetran_repository", "/v1/groups", Auth::Basic(&b)),
        (
            "driver_events_store",
            "/events/t1/history",
            Auth::Bearer(&t),
        ),
        ("driver_ui_repository", "/ui/hubs", Auth::Cookie(&cookies)),
    ] {
        let a = f.send("GET", path, auth, None).await;
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        no_driver_text(path, &a.text());
        if path.starts_with("/v1") {
            json_golden(name, &f, &a);
        } else {
            page_golden(name, &f, &a);
        }
    }
}
