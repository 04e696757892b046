//! The web dashboard (`/ui`) of a real hub server on a random loopback port, with SQLite
//! locations and a channel: plain HTTP tests of its routes (login redirect, session cookies,
//! CSRF refusal, access level refusal, token renewal, logout, live SSE), and browser tests in
//! headless Chromium driven over WebDriver (they fail, never skip, without Chromium).

#![allow(clippy::unwrap_used)]

#[path = "dashboard/webdriver.rs"]
mod webdriver;

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use sluice_model::AccessLevel;
use sluice_test_support::{ADMIN_PASSWORD, TestHub};

const VIEWER_PASSWORD: &str = "viewer-password-1";
const ROWS: usize = 2500;

/// A hub server with the event hub, hub `hub1`, locations `src`/`tgt` and channel `ch1`.
struct Server {
    hub: TestHub,
    base: String,
    origin: String,
    http: reqwest::Client,
    admin_token: String,
}

async fn start() -> Server {
    let hub = TestHub::start().await;
    hub.service()
        .create_user("viewer", AccessLevel::ReadOnly, VIEWER_PASSWORD)
        .await
        .unwrap();
    let origin = hub.base().to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut s = Server {
        hub,
        base: origin.clone(),
        origin,
        http,
        admin_token: String::new(),
    };
    let login: Value = s
        .http
        .post(format!("{}/auth/v1/password", s.base))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    s.admin_token = login["access_token"].as_str().unwrap().to_owned();
    define(&s).await;
    s
}

/// A SQLite source with `ROWS` orders; hub1 with src/tgt and channel ch1 (table orders).
async fn define(s: &Server) {
    let dir = s.hub.dir();
    let src = dir.join("src.db");
    let conn = rusqlite::Connection::open(&src).unwrap();
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, total NUMERIC(12,2));
         CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         BEGIN;",
    )
    .unwrap();
    for i in 0..ROWS {
        conn.execute(
            "INSERT INTO orders VALUES (?1, ?2, ?3)",
            rusqlite::params![
                i as i64,
                format!("customer {i}"),
                format!("{}.50", i % 1000)
            ],
        )
        .unwrap();
    }
    conn.execute_batch("INSERT INTO customers VALUES (1, 'a'), (2, 'b'); COMMIT;")
        .unwrap();
    let tgt = dir.join("tgt.db");
    api(
        s,
        "POST",
        "/api/latest/hubs",
        json!({"hub": "hub1", "props": {"Description": "test hub"}}),
    )
    .await;
    for (loc, path) in [("src", &src), ("tgt", &tgt)] {
        api(
            s,
            "POST",
            "/api/latest/hubs/hub1/definition/locs",
            json!({"loc": loc, "props": {"Class": "sqlite", "Database_Name": path.display().to_string()}}),
        )
        .await;
    }
    api(
        s,
        "POST",
        "/api/latest/hubs/hub1/definition/channels",
        json!({
            "channel": "ch1",
            "description": "orders and customers",
            "loc_groups": {"SOURCE": {"members": ["src"]}, "TARGET": {"members": ["tgt"]}},
            "tables": {"orders": {}, "customers": {}},
            "actions": [
                {"loc_scope": "SOURCE", "table_scope": "*", "type": "Capture"},
                {"loc_scope": "TARGET", "table_scope": "*", "type": "Integrate", "params": {}},
                {"loc_scope": "TARGET", "table_scope": "orders", "type": "Refresh",
                 "params": {"Mode": "smart_sync", "IncrementalColumn": "id"}}
            ]
        }),
    )
    .await;
}

async fn api(s: &Server, method: &str, path: &str, body: Value) -> Value {
    let resp = s
        .http
        .request(method.parse().unwrap(), format!("{}{path}", s.base))
        .bearer_auth(&s.admin_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The `name=value` of every cookie a response sets (`value` empty for a deletion).
fn set_cookies(headers: &HeaderMap) -> Vec<(String, String, String)> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| {
            let text = v.to_str().unwrap().to_owned();
            let first = text.split(';').next().unwrap();
            let (k, val) = first.split_once('=').unwrap();
            (k.to_owned(), val.to_owned(), text.clone())
        })
        .collect()
}

/// A browser-like session over plain HTTP: cookies kept by hand, Origin sent on POSTs.
struct Session<'a> {
    s: &'a Server,
    cookies: Vec<(String, String)>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl<'a> Session<'a> {
    fn new(s: &'a Server) -> Self {
        Session {
            s,
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, headers: &HeaderMap) {
        for (k, v, _) in set_cookies(headers) {
            self.cookies.retain(|(name, _)| name != &k);
            if !v.is_empty() {
                self.cookies.push((k, v));
            }
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Answer {
        let req = if self.cookies.is_empty() {
            req
        } else {
            req.header("Cookie", self.cookie_header())
        };
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        self.keep(&headers);
        Answer {
            status,
            headers,
            text: resp.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let req = self.s.http.get(format!("{}{path}", self.s.base));
        self.send(req).await
    }

    /// A form POST from the dashboard's own origin (`origin` None: no Origin at all).
    async fn post(&mut self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> Answer {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .s
            .http
            .post(format!("{}{path}", self.s.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        self.send(req).await
    }

    /// What the dashboard's script posts: the answer is JSON `{error, text}`.
    async fn action(&mut self, path: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let req = self
            .s
            .http
            .post(format!("{}{path}", self.s.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Origin", &self.s.origin)
            .header("X-Sluice-Fetch", "1")
            .body(body);
        let a = self.send(req).await;
        let v = serde_json::from_str(&a.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", a.status, a.text));
        (a.status, v)
    }

    async fn login(s: &'a Server, user: &str, password: &str) -> Session<'a> {
        let mut session = Session::new(s);
        let a = session
            .post(
                "/ui/login",
                &[
                    ("username", user),
                    ("password", password),
                    ("next", "/ui/channels"),
                ],
                Some(&s.origin),
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
        assert_eq!(a.headers[LOCATION], "/ui/channels");
        session
    }
}

async fn wait_job_done(session: &mut Session<'_>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = session.get("/ui/hubs/hub1/jobs").await;
        if page.text.contains("s-DONE") && !page.text.contains(">ACTIVE<") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no refresh finished: {}",
            page.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_session_and_login_sets_strict_http_only_cookies() {
    let s = start().await;
    let mut anon = Session::new(&s);
    for path in [
        "/ui/channels",
        "/ui/hubs/hub1",
        "/ui/live",
        "/ui/hubs/hub1/jobs",
    ] {
        let a = anon.get(path).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{path}");
        let to = a.headers[LOCATION].to_str().unwrap();
        assert!(to.starts_with("/ui/login?next=%2Fui%2F"), "{path} → {to}");
    }
    assert_eq!(anon.get("/ui").await.status, StatusCode::SEE_OTHER);
    let login = anon.get("/ui/login?next=/ui/hubs/hub1").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.text.contains(r#"value="/ui/hubs/hub1""#));
    let css = anon.get("/ui/static/ui.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(
        anon.get("/ui/static/ui.js")
            .await
            .text
            .contains("EventSource")
    );

    // A wrong password shows the form again with the reason; no cookie.
    let bad = anon
        .post(
            "/ui/login",
            &[("username", "admin"), ("password", "nope")],
            Some(&s.origin),
        )
        .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);
    assert!(
        bad.text.contains("invalid user name or password"),
        "{}",
        bad.text
    );
    assert!(set_cookies(&bad.headers).is_empty());

    // A login posted from another site is refused.
    let cross = anon
        .post(
            "/ui/login",
            &[("username", "admin"), ("password", ADMIN_PASSWORD)],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(set_cookies(&cross.headers).is_empty());

    let ok = anon
        .post(
            "/ui/login",
            &[
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("next", "/ui/hubs/hub1"),
            ],
            Some(&s.origin),
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.headers[LOCATION], "/ui/hubs/hub1");
    let cookies = set_cookies(&ok.headers);
    let names: Vec<&str> = cookies.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(names, ["sluice_access", "sluice_refresh"]);
    for (_, _, full) in &cookies {
        assert!(full.contains("HttpOnly"), "{full}");
        assert!(full.contains("SameSite=Strict"), "{full}");
        assert!(full.contains("Path=/ui"), "{full}");
    }
    let page = anon.get("/ui/channels").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains(r#"data-key="hub1/ch1""#),
        "{}",
        page.text
    );
    assert!(page.text.contains("orders and customers"));
    assert!(page.text.contains("src → tgt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_and_under_privileged_actions_are_refused() {
    let s = start().await;
    let mut admin = Session::login(&s, "admin", ADMIN_PASSWORD).await;
    // No Origin and no Referer: refused. Another origin: refused. Nothing changed.
    for origin in [None, Some("http://evil.example"), Some("null")] {
        let a = admin.post("/ui/hubs/hub1/freeze", &[], origin).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{origin:?}");
        assert!(
            a.text.contains("did not come from this dashboard"),
            "{}",
            a.text
        );
    }
    assert!(admin.get("/ui/hubs/hub1").await.text.contains(">LIVE<"));
    // A Referer of this server is enough when there is no Origin.
    let req = s
        .http
        .post(format!("{}/ui/hubs/hub1/freeze", s.base))
        .header("Referer", format!("{}/ui/hubs/hub1", s.origin));
    let a = admin.send(req).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let page = admin.get("/ui/hubs/hub1").await;
    assert!(page.text.contains(">FROZEN<"), "{}", page.text);
    assert!(
        page.text.contains("hub hub1 is frozen"),
        "the notice is shown once"
    );
    assert!(
        !admin
            .get("/ui/hubs/hub1")
            .await
            .text
            .contains("hub hub1 is frozen")
    );

    // A frozen hub refuses a sync, with the reason.
    let (status, v) = admin
        .action(
            "/ui/channels/action",
            &[("action", "sync"), ("sel", "hub1/ch1")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["error"], true, "{v}");
    assert!(v["text"].as_str().unwrap().contains("FROZEN"), "{v}");
    let (_, v) = admin.action("/ui/hubs/hub1/unfreeze", &[]).await;
    assert_eq!(v["error"], false, "{v}");

    // A ReadOnly user sees the pages but every action is refused with the level it needs.
    let mut viewer = Session::login(&s, "viewer", VIEWER_PASSWORD).await;
    assert_eq!(viewer.get("/ui/hubs/hub1").await.status, StatusCode::OK);
    let a = viewer
        .post("/ui/hubs/hub1/freeze", &[], Some(&s.origin))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        a.text
            .contains("freezing a hub needs HubOwner access; user viewer has ReadOnly"),
        "{}",
        a.text
    );
    for (path, form, needs) in [
        (
            "/ui/channels/action",
            vec![("action", "sync"), ("sel", "hub1/ch1")],
            "ReadExecRefresh",
        ),
        (
            "/ui/channels/action",
            vec![("action", "test"), ("sel", "hub1/ch1")],
            "ReadExec",
        ),
        ("/ui/hubs/hub1/locs/src/test", vec![], "ReadExec"),
        (
            "/ui/hubs/hub1/channels/ch1/tables/orders/resync",
            vec![],
            "ReadExecRefresh",
        ),
    ] {
        let (status, v) = viewer.action(path, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(v["error"], true);
        assert!(v["text"].as_str().unwrap().contains(needs), "{path}: {v}");
    }
    assert!(viewer.get("/ui/hubs/hub1").await.text.contains(">LIVE<"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_access_is_renewed_and_logout_revokes() {
    let s = start().await;
    let mut session = Session::login(&s, "admin", ADMIN_PASSWORD).await;
    // Without a valid access token the refresh token renews the session.
    session.cookies.retain(|(k, _)| k != "sluice_access");
    session
        .cookies
        .push(("sluice_access".into(), "expired.or.forged".into()));
    let old_refresh = session
        .cookies
        .iter()
        .find(|(k, _)| k == "sluice_refresh")
        .unwrap()
        .1
        .clone();
    let page = session.get("/ui/channels").await;
    assert_eq!(page.status, StatusCode::OK);
    let renewed = set_cookies(&page.headers);
    assert!(
        renewed
            .iter()
            .any(|(k, v, _)| k == "sluice_access" && !v.is_empty())
    );
    let new_refresh = renewed
        .iter()
        .find(|(k, _, _)| k == "sluice_refresh")
        .map(|(_, v, _)| v.clone())
        .unwrap();
    assert_ne!(
        new_refresh, old_refresh,
        "a renewal rotates the refresh token"
    );
    assert_eq!(session.get("/ui/channels").await.status, StatusCode::OK);

    // Logout revokes the refresh token: it no longer opens a session.
    let out = session.post("/ui/logout", &[], Some(&s.origin)).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(session.cookies.is_empty(), "logout clears the cookies");
    let mut stale = Session::new(&s);
    stale.cookies.push(("sluice_refresh".into(), new_refresh));
    let a = stale.get("/ui/channels").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(
        a.headers[LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/ui/login")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_streams_live_and_pages_show_tables_jobs_events_and_charts() {
    let s = start().await;
    let mut session = Session::login(&s, "admin", ADMIN_PASSWORD).await;
    // The live stream, with the session cookie only.
    let live = s
        .http
        .get(format!("{}/ui/live?hub=hub1", s.base))
        .header("Cookie", session.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert!(
        live.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = live.bytes_stream();
    // Give the subscription a moment to be in place before the sync posts its events.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, v) = session
        .action(
            "/ui/channels/action",
            &[("action", "sync"), ("sel", "hub1/ch1")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["error"], false, "{v}");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("hub1.ch1: sync started"),
        "{v}"
    );
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(seen.contains("event: refresh") && seen.contains(r#""state":"DONE""#)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, body.next())
            .await
            .unwrap_or_else(|_| panic!("no finished refresh on the live stream: {seen}"))
            .expect("the stream stays open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: job"), "{seen}");
    assert!(seen.contains(&format!(r#""rows":{}"#, ROWS + 2)), "{seen}");

    wait_job_done(&mut session).await;
    let list = session.get("/ui/channels?hub=hub1&q=orders").await;
    assert!(
        list.text.contains(&format!(">{}<", ROWS + 2)),
        "rows moved: {}",
        list.text
    );
    assert!(
        !session
            .get("/ui/channels?q=nomatch")
            .await
            .text
            .contains("data-key=")
    );

    let detail = session.get("/ui/hubs/hub1/channels/ch1").await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
    let t = &detail.text;
    assert!(t.contains(r#"data-table="orders""#) && t.contains(r#"data-table="customers""#));
    assert!(
        t.contains(&format!(r#"data-field="source_rows">{ROWS}<"#)),
        "{t}"
    );
    assert!(
        t.contains(&format!(r#"data-field="target_rows">{ROWS}<"#)),
        "{t}"
    );
    // The greatest incremental value of orders (by id) at the target.
    assert!(
        t.contains(&format!(r#"data-field="max_incremental">{}<"#, ROWS - 1)),
        "{t}"
    );
    assert_eq!(t.matches("<svg class=\"chart\"").count(), 2);
    assert!(t.contains("<rect class=\"bar\""), "{t}");

    let jobs = session.get("/ui/hubs/hub1/jobs").await;
    assert!(
        jobs.text.contains("ch1-refr-src-tgt") || jobs.text.contains("ch1"),
        "{}",
        jobs.text
    );
    let ev = jobs
        .text
        .split("data-event=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let event = session.get(&format!("/ui/hubs/hub1/events/{ev}")).await;
    assert_eq!(event.status, StatusCode::OK);
    assert!(event.text.contains("id=\"event-log\""));

    // Location test: the result comes back as the notice.
    let (_, v) = session.action("/ui/hubs/hub1/locs/src/test", &[]).await;
    assert_eq!(v["error"], false, "{v}");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("location src: test passed"),
        "{v}"
    );
    let (_, v) = session
        .action(
            "/ui/channels/action",
            &[("action", "test"), ("sel", "hub1/ch1")],
        )
        .await;
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("hub1.ch1: setup connected"),
        "{v}"
    );
}

/// The source schema the connector shows for the SQLite tables.
fn schema_of(page: &str) -> String {
    page.split(r#"name="schema" value=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the channel page names a schema")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_pause_resume_resync_and_table_toggles() {
    let s = start().await;
    let mut session = Session::login(&s, "admin", ADMIN_PASSWORD).await;
    let list = session.get("/ui/channels").await.text;
    assert!(list.contains(r#"data-paused="false""#), "{list}");
    assert!(
        list.contains(">scheduled<") && list.contains(">connected<"),
        "{list}"
    );

    let (_, v) = session
        .action(
            "/ui/channels/action",
            &[("action", "pause"), ("sel", "hub1/ch1")],
        )
        .await;
    assert_eq!(v["text"], "hub1.ch1: paused", "{v}");
    assert!(session.get("/ui/channels").await.text.contains(">paused<"));
    // A paused connector refuses a sync, and says why.
    let (_, v) = session
        .action(
            "/ui/channels/action",
            &[("action", "sync"), ("sel", "hub1/ch1")],
        )
        .await;
    assert_eq!(v["error"], true);
    assert!(v["text"].as_str().unwrap().contains("is paused"), "{v}");
    let (_, v) = session
        .action(
            "/ui/channels/action",
            &[("action", "resume"), ("sel", "hub1/ch1")],
        )
        .await;
    assert_eq!(v["text"], "hub1.ch1: resumed", "{v}");

    // Disable a table: the page shows it disabled, and the next sync leaves it out.
    let page = session.get("/ui/hubs/hub1/channels/ch1").await.text;
    assert!(page.contains("Connector hub1.ch1"), "{page}");
    let schema = schema_of(&page);
    let (_, v) = session
        .action(
            "/ui/hubs/hub1/channels/ch1/tables/customers/enabled",
            &[("schema", &schema), ("enabled", "false")],
        )
        .await;
    assert_eq!(v["error"], false, "{v}");
    let page = session.get("/ui/hubs/hub1/channels/ch1").await.text;
    assert!(
        page.contains(r#"data-table="customers" data-enabled="false""#),
        "{page}"
    );
    let (_, v) = session
        .action(
            "/ui/channels/action",
            &[("action", "resync"), ("sel", "hub1/ch1")],
        )
        .await;
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("historical resync started"),
        "{v}"
    );
    wait_job_done(&mut session).await;
    let list = session.get("/ui/channels").await.text;
    assert!(
        list.contains(&format!(">{ROWS}<")),
        "only orders moved: {list}"
    );
    // Per-table resync of the enabled table.
    let (_, v) = session
        .action(
            "/ui/hubs/hub1/channels/ch1/tables/orders/resync",
            &[("schema", &schema)],
        )
        .await;
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("table orders: resync started"),
        "{v}"
    );
    // A disabled table cannot be resynced; the reason is shown.
    let (_, v) = session
        .action(
            "/ui/hubs/hub1/channels/ch1/tables/customers/resync",
            &[("schema", &schema)],
        )
        .await;
    assert_eq!(v["error"], true, "{v}");
}

/// Logs in through the form and returns on the channel list.
async fn browser_login(b: &webdriver::Browser, s: &Server) {
    b.goto(&format!("{}/ui/channels", s.base)).await;
    assert!(
        b.url().await.contains("/ui/login"),
        "redirected to the login page"
    );
    b.screenshot("01-login").await;
    b.send_keys(&b.find("#username").await, "admin").await;
    b.send_keys(&b.find("#password").await, ADMIN_PASSWORD)
        .await;
    b.click_on("#login").await;
    b.find(r#"tr[data-key="hub1/ch1"]"#).await;
    assert!(b.url().await.ends_with("/ui/channels"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_sync_live_freeze_and_refusal() {
    let driver = webdriver::Driver::start().await;
    let s = start().await;
    let b = driver.session().await;
    browser_login(&b, &s).await;
    let row = r#"tr[data-key="hub1/ch1"]"#;
    // The live stream is connected before anything happens.
    b.find("#live-state.on").await;
    b.execute("window.sluiceMarker = 'no reload'; return null;")
        .await;

    // Pause and resume from the bulk action bar; the row shows the new sync state in place.
    b.click_on(&format!("{row} input.sel")).await;
    b.click_on(r#"button[value="pause"]"#).await;
    b.wait_text("#notice", 10, |t| t.contains("hub1.ch1: paused"))
        .await;
    b.wait_text(&format!(r#"{row} [data-field="sync_state"]"#), 10, |t| {
        t == "paused"
    })
    .await;
    b.screenshot("02-connector-paused").await;
    b.click_on(r#"button[value="resume"]"#).await;
    b.wait_text("#notice", 10, |t| t.contains("hub1.ch1: resumed"))
        .await;
    b.wait_text(&format!(r#"{row} [data-field="sync_state"]"#), 10, |t| {
        t == "scheduled"
    })
    .await;
    // The selection survived the rows being re-read; clear it for the sync below.
    b.click_on(&format!("{row} input.sel")).await;
    b.wait_text("#selected-count", 5, |t| t == "0 selected")
        .await;

    // A refresh started elsewhere (the REST API): only the live stream can tell the page, and
    // the row turns DONE in place.
    api(
        &s,
        "POST",
        "/api/latest/hubs/hub1/channels/ch1/refresh",
        json!({"source_loc": "src", "target_loc": "tgt"}),
    )
    .await;
    b.wait_text(&format!(r#"{row} [data-field="last_state"]"#), 60, |t| {
        t == "DONE"
    })
    .await;
    b.wait_text(&format!(r#"{row} [data-field="rows_moved"]"#), 10, |t| {
        t == (ROWS + 2).to_string()
    })
    .await;
    assert!(
        !b.text_of(&format!(r#"{row} [data-field="last_success"]"#))
            .await
            .is_empty()
    );

    // Sync from the bulk action bar; the row turns DONE again, without a reload.
    b.click_on(&format!("{row} input.sel")).await;
    b.wait_text("#selected-count", 5, |t| t == "1 selected")
        .await;
    b.click_on(r#"button[value="sync"]"#).await;
    let notice = b
        .wait_text("#notice", 10, |t| t.contains("sync started"))
        .await;
    let ev = notice
        .split("(event ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("the notice names the sync's event")
        .to_owned();
    // The row follows that event to DONE.
    let deadline = Instant::now() + Duration::from_secs(60);
    let probe = format!(
        r#"const r = document.querySelector('{row}'); return [r.dataset.lastEvent, r.querySelector('[data-field="last_state"]').textContent];"#
    );
    loop {
        let v = b.execute(&probe).await;
        if v[0] == ev.as_str() && v[1] == "DONE" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the row did not follow event {ev}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        b.execute("return window.sluiceMarker;").await,
        json!("no reload"),
        "the row was updated in place"
    );
    b.screenshot("03-channels-after-live-sync").await;

    // The channel page: table counts, max incremental value and the SVG charts.
    b.goto(&format!("{}/ui/hubs/hub1/channels/ch1", s.base))
        .await;
    b.wait_text(
        r#"tr[data-table="orders"] [data-field="target_rows"]"#,
        10,
        |t| t == ROWS.to_string(),
    )
    .await;
    assert_eq!(
        b.text_of(r#"tr[data-table="orders"] [data-field="max_incremental"]"#)
            .await,
        (ROWS - 1).to_string()
    );
    b.find("svg.chart rect.bar").await;
    b.screenshot("04-channel-detail").await;

    // Disable a table with its toggle; the row shows it disabled.
    let customers = r#"tr[data-table="customers"]"#;
    b.click_on(&format!("{customers} button.toggle")).await;
    b.wait_text("#notice", 10, |t| t.contains("customers is disabled"))
        .await;
    b.wait_text(
        &format!(r#"{customers} [data-field="enabled"] .state"#),
        10,
        |t| t == "disabled",
    )
    .await;
    b.screenshot("05-table-disabled").await;

    // Freeze the hub; a sync is then refused with the reason.
    b.goto(&format!("{}/ui/hubs/hub1", s.base)).await;
    b.click_on("#freeze").await;
    b.wait_text("#hub-state", 10, |t| t == "FROZEN").await;
    b.screenshot("06-hub-frozen").await;
    b.goto(&format!("{}/ui/channels", s.base)).await;
    b.click_on(&format!("{row} input.sel")).await;
    b.click_on(r#"button[value="sync"]"#).await;
    let refused = b
        .wait_text("#notice.error", 10, |t| t.contains("FROZEN"))
        .await;
    assert!(refused.contains("hub1.ch1"), "{refused}");
    b.screenshot("07-sync-refused-frozen").await;
    b.goto(&format!("{}/ui/hubs/hub1", s.base)).await;
    b.click_on("#unfreeze").await;
    b.wait_text("#hub-state", 10, |t| t == "LIVE").await;

    // Jobs and events: a refresh started elsewhere appears and finishes in place.
    b.goto(&format!("{}/ui/hubs/hub1/jobs", s.base)).await;
    b.find("#live-state.on").await;
    let count = "return document.querySelectorAll('#event-rows tr').length;";
    let before = b.execute(count).await.as_u64().unwrap();
    b.execute("window.sluiceMarker = 'jobs page'; return null;")
        .await;
    api(
        &s,
        "POST",
        "/api/latest/hubs/hub1/channels/ch1/refresh",
        json!({"source_loc": "src", "target_loc": "tgt"}),
    )
    .await;
    b.wait_script(
        "const r = document.querySelector('#event-rows tr'); \
         return [document.querySelectorAll('#event-rows tr').length, r.querySelector('.state').textContent];",
        60,
        |v| v[0].as_u64() > Some(before) && v[1] == "DONE",
    )
    .await;
    assert_eq!(
        b.execute("return window.sluiceMarker;").await,
        json!("jobs page")
    );
    b.click_on("#events tbody tr a").await;
    b.find("#event-log").await;
    b.screenshot("08-event").await;

    // Log out: the pages ask for a login again.
    b.click_on("#logout").await;
    b.find("#login-form").await;
    b.goto(&format!("{}/ui/channels", s.base)).await;
    assert!(b.url().await.contains("/ui/login"));

    // A ReadOnly user sees the hub but its freeze is refused, with the level it needs.
    b.send_keys(&b.find("#username").await, "viewer").await;
    b.send_keys(&b.find("#password").await, VIEWER_PASSWORD)
        .await;
    b.click_on("#login").await;
    b.find(row).await;
    b.goto(&format!("{}/ui/hubs/hub1", s.base)).await;
    b.click_on("#freeze").await;
    let refusal = b.wait_text("#refusal", 10, |t| !t.is_empty()).await;
    assert_eq!(
        refusal,
        "refused: freezing a hub needs HubOwner access; user viewer has ReadOnly on hub hub1"
    );
    b.screenshot("09-refused-read-only").await;
    b.quit().await;
    println!(
        "dashboard screenshots in {}",
        webdriver::screenshot_dir().display()
    );
}

/// Waits for event `ev` of `hub` to end; its state.
async fn event_end(s: &Server, hub: &str, ev: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a: Value = s
            .http
            .get(format!(
                "{}/api/latest/hubs/{hub}/events?ev_id={ev}",
                s.base
            ))
            .bearer_auth(&s.admin_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let state = a[ev]["state"].as_str().unwrap_or_default().to_owned();
        if state != "ACTIVE" && !state.is_empty() {
            return state;
        }
        assert!(Instant::now() < deadline, "event {ev} did not end: {a}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `<g class="flow …">` elements of a lineage page with `attr="value"`.
fn flows_with(page: &str, attrs: &[(&str, &str)]) -> usize {
    page.split(r#"<g class="flow "#)
        .skip(1)
        .map(|g| g.split_once('>').map_or("", |(head, _)| head))
        .filter(|head| {
            attrs
                .iter()
                .all(|(k, v)| head.contains(&format!(r#"{k}="{v}""#)))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_page_draws_flows_across_hubs_with_their_states() {
    let s = start().await;
    let dir = s.hub.dir();
    // hub2 reads hub1's target (tgt.db) as `stg` and refreshes it into far.db, whose orders
    // refuses customer 0; only named users may read hub2 (there are none).
    let far = dir.join("far.db");
    rusqlite::Connection::open(&far)
        .unwrap()
        .execute_batch(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL CHECK (customer <> 'customer 0'), total NUMERIC(12,2));",
        )
        .unwrap();
    api(
        &s,
        "POST",
        "/api/latest/hubs",
        json!({"hub": "hub2", "props": {"Access_List": [{"level": "None"}]}}),
    )
    .await;
    for (loc, path) in [("stg", dir.join("tgt.db")), ("far", far)] {
        api(
            &s,
            "POST",
            "/api/latest/hubs/hub2/definition/locs",
            json!({"loc": loc, "props": {"Class": "sqlite", "Database_Name": path.display().to_string()}}),
        )
        .await;
    }
    api(
        &s,
        "POST",
        "/api/latest/hubs/hub2/definition/channels",
        json!({
            "channel": "ch2",
            "loc_groups": {"SOURCE": {"members": ["stg"]}, "TARGET": {"members": ["far"]}},
            "tables": {"orders": {}},
            "actions": [
                {"loc_scope": "SOURCE", "table_scope": "*", "type": "Capture"},
                {"loc_scope": "TARGET", "table_scope": "*", "type": "Integrate"}
            ]
        }),
    )
    .await;

    let mut admin = Session::login(&s, "admin", ADMIN_PASSWORD).await;
    let page = admin.get("/ui/lineage").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains(r#"<a href="/ui/lineage">Lineage</a>"#));
    assert!(
        page.text.contains(r#"<svg class="lineage""#),
        "{}",
        page.text
    );
    // orders and customers at src and tgt, orders at far; tgt.db is one node for both hubs.
    assert_eq!(page.text.matches(r#"<g class="node""#).count(), 5);
    assert!(page.text.contains("stg, tgt: orders"), "{}", page.text);
    assert_eq!(flows_with(&page.text, &[]), 3);
    assert_eq!(flows_with(&page.text, &[("data-state", "never")]), 3);

    let ev = api(
        &s,
        "POST",
        "/api/latest/hubs/hub1/channels/ch1/refresh",
        json!({"source_loc": "src", "target_loc": "tgt"}),
    )
    .await["posted_ev_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(event_end(&s, "hub1", &ev).await, "DONE");
    let ev = api(
        &s,
        "POST",
        "/api/latest/hubs/hub2/channels/ch2/refresh",
        json!({"source_loc": "stg", "target_loc": "far"}),
    )
    .await["posted_ev_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(event_end(&s, "hub2", &ev).await, "FAILED");

    let page = admin.get("/ui/lineage").await;
    let done = [
        ("data-hub", "hub1"),
        ("data-channel", "ch1"),
        ("data-state", "done"),
    ];
    assert_eq!(flows_with(&page.text, &done), 2, "{}", page.text);
    let failed = [
        ("data-hub", "hub2"),
        ("data-table", "orders"),
        ("data-state", "failed"),
    ];
    assert_eq!(flows_with(&page.text, &failed), 1, "{}", page.text);
    assert!(
        page.text
            .contains(r#"<span class="flow-state f-failed">failed</span>"#)
    );

    // The JSON of the same graph.
    let lineage: Value = s
        .http
        .get(format!("{}/api/latest/lineage", s.base))
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(lineage["nodes"].as_array().unwrap().len(), 5, "{lineage}");
    assert_eq!(lineage["edges"].as_array().unwrap().len(), 3, "{lineage}");

    // The viewer may not read hub2: neither its flow nor far.db shows.
    let mut viewer = Session::login(&s, "viewer", VIEWER_PASSWORD).await;
    let page = viewer.get("/ui/lineage").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(flows_with(&page.text, &[]), 2, "{}", page.text);
    assert_eq!(flows_with(&page.text, &[("data-hub", "hub2")]), 0);
    assert!(!page.text.contains("far.db") && !page.text.contains("stg"));
    // Nor in the API's answer to the viewer's token.
    let login: Value = s
        .http
        .post(format!("{}/auth/v1/password", s.base))
        .json(&json!({"username": "viewer", "password": VIEWER_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lineage: Value = s
        .http
        .get(format!("{}/api/latest/lineage", s.base))
        .bearer_auth(login["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let edges = lineage["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2, "{lineage}");
    assert!(edges.iter().all(|e| e["hub"] == "hub1"), "{lineage}");
    assert!(!lineage.to_string().contains("far.db"), "{lineage}");
}
