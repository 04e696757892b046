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

/// A count as the dashboard shows it: `2,500`.
fn sep(n: usize) -> String {
    sluice_model::text::thousands(n as u64)
}

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
        // The state spans of the lists (the state filter offers ACTIVE too).
        if page.text.contains("s-DONE") && !page.text.contains(r#"s-ACTIVE">ACTIVE<"#) {
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

/// A newcomer's first hour in the browser, on a hub server with no hub yet: open `/`, log in,
/// create a hub, two SQLite locations (each tested before it is saved), a channel with two
/// tables discovered at the source (one row-wise), sync it and see it healthy; break the source
/// and see it failed, the same word on the channel list; at 900 px the list does not scroll
/// sideways. Screenshots `new-*.png` of each step go to `<target>/ui-screenshots`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_new_user_creates_locations_and_a_channel_and_sees_its_health() {
    let driver = webdriver::Driver::start().await;
    let hub = TestHub::start().await;
    let dir = hub.dir().to_owned();
    let src = dir.join("shop.db");
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL);
             INSERT INTO orders VALUES (1, 'tea'), (2, 'cake'), (3, 'jam');
             CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
             INSERT INTO customers VALUES (1, 'ann'), (2, 'bob');",
        )
        .unwrap();
    let tgt = dir.join("warehouse.db");
    let base = hub.base().to_owned();
    let b = driver.session().await;

    // `/` leads to the dashboard, which asks for a login.
    b.goto(&format!("{base}/")).await;
    b.find("#username").await;
    b.send_keys(&b.find("#username").await, "admin").await;
    b.send_keys(&b.find("#password").await, ADMIN_PASSWORD)
        .await;
    b.click_on("#login").await;
    let welcome = b.wait_text("#first-steps", 10, |t| !t.is_empty()).await;
    assert!(welcome.contains("create a hub"), "{welcome}");
    b.screenshot("new-01-empty-hub").await;

    // A hub.
    b.click_on("#first-steps a").await;
    b.send_keys(&b.find("#hub-name").await, "shop").await;
    b.send_keys(&b.find("#hub-description").await, "my first hub")
        .await;
    b.click_on("#create-hub").await;
    let next = b.wait_text("#next-step", 10, |t| !t.is_empty()).await;
    assert!(next.contains("add the databases"), "{next}");

    // Two locations, each tested before it is saved.
    for (name, path) in [("src", &src), ("tgt", &tgt)] {
        b.click_on("#new-location").await;
        b.click_on(r#"#class option[value="sqlite"]"#).await;
        b.wait_script(
            "return document.querySelector('#location-form input[name=class]').value",
            10,
            |v| v == "sqlite",
        )
        .await;
        b.send_keys(&b.find("#loc-name").await, name).await;
        b.send_keys(
            &b.find("#prop-Database_Name").await,
            &path.display().to_string(),
        )
        .await;
        b.click_on("#test-location").await;
        let tested = b
            .wait_text("#notice", 20, |t| t.contains("test passed"))
            .await;
        assert!(tested.contains("Class_Version"), "{tested}");
        if name == "src" {
            b.screenshot("new-02-location-tested").await;
        }
        b.click_on("#save-location").await;
        b.wait_text("#notice", 10, |t| {
            t.contains(&format!("location {name} added"))
        })
        .await;
        b.find(&format!(r#"#locations tr[data-loc="{name}"]"#))
            .await;
    }

    // A channel from the tables found at the source, customers row-wise.
    b.click_on("#new-channel").await;
    b.click_on(r#"#source option[value="src"]"#).await;
    b.click_on(r#"#target option[value="tgt"]"#).await;
    b.click_on("#find-tables").await;
    b.find(r#"#found-tables tr[data-table="orders"]"#).await;
    b.send_keys(&b.find("#channel-name").await, "sales").await;
    for t in ["orders", "customers"] {
        b.click_on(&format!(r#"tr[data-table="{t}"] input.pick"#))
            .await;
    }
    b.click_on(r#"tr[data-table="customers"] option[value="rowwise"]"#)
        .await;
    b.screenshot("new-03-create-channel").await;
    b.click_on("#create-channel").await;
    b.wait_text("#health", 10, |t| t == "new").await;

    // Sync: healthy.
    b.click_on(r#"button[value="sync"]"#).await;
    b.wait_text("#health", 60, |t| t == "healthy").await;
    let rows = rusqlite::Connection::open(&tgt)
        .unwrap()
        .query_row("SELECT count(*) FROM orders", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(rows, 3);
    b.screenshot("new-04-channel-healthy").await;

    // The source breaks: the next sync fails and the channel says so, on every page.
    rusqlite::Connection::open(&src)
        .unwrap()
        .execute_batch("ALTER TABLE orders RENAME TO orders_gone")
        .unwrap();
    b.click_on(r#"button[value="sync"]"#).await;
    b.wait_text("#health", 60, |t| t == "failed").await;
    b.screenshot("new-05-channel-failed").await;
    b.goto(&format!("{base}/ui/channels")).await;
    let row = r#"tr[data-key="shop/sales"]"#;
    assert_eq!(b.text_of(&format!("{row} .health")).await, "failed");
    b.screenshot("new-06-channel-list").await;

    // 900 px: the list fits, nothing scrolls sideways, the health word stays.
    b.window_size(900, 900).await;
    b.wait_script(
        "return document.documentElement.scrollWidth <= window.innerWidth",
        10,
        |v| v == true,
    )
    .await;
    assert_eq!(b.text_of(&format!("{row} .health")).await, "failed");
    b.screenshot("new-07-channel-list-900px").await;
    b.quit().await;
}

/// The first-step forms check what the API checks: levels (a ReadOnly user creates nothing),
/// names, classes, properties the class does not have, a second location of the same name; the
/// password is sealed when stored, never shown in the edit form, and an edit that leaves it
/// empty keeps it. Each refusal is a notice and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_and_channel_forms_check_like_the_api_and_seal_the_password() {
    let s = start().await;
    let defs = || async {
        let mut d = api(
            &s,
            "GET",
            "/api/latest/hubs/hub1/definition/locs?fetch=loc_props",
            json!({}),
        )
        .await;
        d.as_object_mut().unwrap().remove("src");
        d
    };
    let mut viewer = Session::login(&s, "viewer", VIEWER_PASSWORD).await;
    for path in [
        "/ui/hubs/hub1/locations",
        "/ui/hubs/hub1/new-channel",
        "/ui/hubs",
    ] {
        let (status, v) = viewer
            .action(path, &[("loc", "x"), ("hub", "x"), ("do", "save")])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {v}");
        assert!(v["text"].as_str().unwrap().contains("needs"), "{path}: {v}");
    }
    assert_eq!(
        viewer.get("/ui/hubs/hub1/new-location").await.status,
        StatusCode::FORBIDDEN
    );

    let mut admin = Session::login(&s, "admin", ADMIN_PASSWORD).await;
    let before = defs().await;
    // Location pgx as stored (sealed secrets and all).
    let pgx = || async {
        s.hub
            .service()
            .location(
                &sluice_model::HubName::new("hub1").unwrap(),
                &sluice_model::LocationName::new("pgx").unwrap(),
            )
            .await
            .unwrap()
    };
    let pg = |name: &'static str, password: &'static str| {
        vec![
            ("do", "save"),
            ("class", "postgresql"),
            ("loc", name),
            ("prop.Database_Host", "127.0.0.1"),
            ("prop.Database_Port", "1"),
            ("prop.Database_Name", "shop"),
            ("prop.Database_User", "app"),
            ("prop.Database_Password", password),
            ("prop.Not_A_Property", "ignored"),
        ]
    };
    // Refusals: a bad name, a class sluice does not have, an existing name.
    let (_, v) = admin
        .action("/ui/hubs/hub1/locations", &pg("1bad", "pw"))
        .await;
    assert_eq!(v["error"], true, "{v}");
    let mut form = pg("pgx", "pw");
    form[1] = ("class", "oracle");
    let (status, v) = admin.action("/ui/hubs/hub1/locations", &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (_, v) = admin
        .action("/ui/hubs/hub1/locations", &pg("tgt", "pw"))
        .await;
    assert!(
        v["text"].as_str().unwrap().contains("already exists"),
        "{v}"
    );
    assert_eq!(defs().await, before, "refusals change nothing");

    // A new location: its password is sealed, never shown again, kept by an edit that leaves it out.
    let (_, v) = admin
        .action("/ui/hubs/hub1/locations", &pg("pgx", "s3cret-pw"))
        .await;
    assert_eq!(v["error"], false, "{v}");
    assert_eq!(v["go"], "/ui/hubs/hub1", "{v}");
    let stored = pgx().await;
    let sealed = stored.props["Database_Password"].to_text();
    assert!(sluice_service::secrets::is_sealed(&sealed), "{sealed}");
    assert!(!stored.props.contains_key("Not_A_Property"));
    let page = admin.get("/ui/hubs/hub1/locs/pgx/edit").await.text;
    assert!(
        !page.contains("s3cret-pw") && !page.contains(&sealed),
        "{page}"
    );
    assert!(page.contains("stored: leave empty to keep it"), "{page}");
    let mut edit = pg("pgx", "");
    edit.push(("editing", "pgx"));
    let (_, v) = admin.action("/ui/hubs/hub1/locations", &edit).await;
    assert_eq!(v["error"], false, "{v}");
    let kept = pgx().await;
    assert_eq!(kept.props["Database_Password"].to_text(), sealed);
    // Pointing it elsewhere without the password again drops the stored one, and says so.
    let mut moved = pg("pgx", "");
    moved.push(("editing", "pgx"));
    moved[3] = ("prop.Database_Host", "192.0.2.1");
    let (_, v) = admin.action("/ui/hubs/hub1/locations", &moved).await;
    assert!(
        v["text"].as_str().unwrap().contains("without its password"),
        "{v}"
    );
    assert_eq!(v["go"], "/ui/hubs/hub1", "{v}");
    let dropped = pgx().await;
    assert!(
        !dropped.props.contains_key("Database_Password"),
        "{dropped:?}"
    );
    assert_eq!(dropped.props["Database_Host"].to_text(), "192.0.2.1");
    // Test tries the form's location without storing it: port 1 does not answer.
    let mut test = pg("pgy", "pw");
    test[0] = ("do", "test");
    let (_, v) = admin.action("/ui/hubs/hub1/locations", &test).await;
    assert_eq!(v["error"], true, "{v}");
    assert!(!defs().await.as_object().unwrap().contains_key("pgy"));

    // Channels: the tables must be ticked, the ends different, the mode one of the listed.
    let channel = |extra: &[(&'static str, &'static str)]| {
        let mut f = vec![("channel", "c2"), ("source", "src"), ("target", "tgt")];
        f.extend_from_slice(extra);
        f
    };
    for (form, says) in [
        (channel(&[]), "tick at least one table"),
        (
            channel(&[("table", "orders"), ("mode.orders", "sideways")]),
            "is not one of the listed",
        ),
        (
            channel(&[("table", "orders"), ("mode.orders", "incremental")]),
            "needs its column",
        ),
        (
            vec![
                ("channel", "c2"),
                ("source", "src"),
                ("target", "src"),
                ("table", "orders"),
            ],
            "must be different",
        ),
        (
            vec![
                ("channel", "ch1"),
                ("source", "src"),
                ("target", "tgt"),
                ("table", "orders"),
            ],
            "already exists",
        ),
    ] {
        let (_, v) = admin.action("/ui/hubs/hub1/new-channel", &form).await;
        assert_eq!(v["error"], true, "{form:?}: {v}");
        assert!(v["text"].as_str().unwrap().contains(says), "{form:?}: {v}");
    }
    let (_, v) = admin
        .action(
            "/ui/hubs/hub1/new-channel",
            &channel(&[
                ("table", "orders"),
                ("mode.orders", "incremental"),
                ("column.orders", "id"),
                ("table", "customers"),
            ]),
        )
        .await;
    assert_eq!(v["go"], "/ui/hubs/hub1/channels/c2", "{v}");
    let c2 = api(
        &s,
        "GET",
        "/api/latest/hubs/hub1/definition/channels/c2",
        json!({}),
    )
    .await;
    assert!(
        c2["tables"]["orders"].is_object() && c2["tables"]["customers"].is_object(),
        "{c2}"
    );
    let refresh: Vec<&Value> = c2["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "Refresh")
        .collect();
    assert_eq!(refresh.len(), 1, "{c2}");
    assert_eq!(refresh[0]["params"]["Mode"], "incremental", "{c2}");
    assert_eq!(refresh[0]["params"]["IncrementalColumn"], "id", "{c2}");
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
        list.text.contains(&format!(">{}<", sep(ROWS + 2))),
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
        t.contains(&format!(r#"data-field="source_rows">{}<"#, sep(ROWS))),
        "{t}"
    );
    assert!(
        t.contains(&format!(r#"data-field="target_rows">{}<"#, sep(ROWS))),
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

    // The jobs page's filters: query parameters, so a link keeps them.
    let failed = session.get("/ui/hubs/hub1/jobs?state=FAILED").await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.text);
    let events = failed.text.split(r#"id="events""#).nth(1).unwrap();
    assert!(
        !events.contains(r#"<span class="state s-DONE">DONE</span>"#),
        "{events}"
    );
    assert!(failed.text.contains(r#"<option value="FAILED" selected>"#));
    let refreshes = session
        .get("/ui/hubs/hub1/jobs?state=done&type=Refresh&channel=ch1")
        .await;
    assert_eq!(refreshes.status, StatusCode::OK, "{}", refreshes.text);
    let listed = refreshes.text.matches("<tr data-event=").count();
    assert!(listed >= 1, "{}", refreshes.text);
    assert_eq!(
        refreshes.text.matches("<td>Refresh</td>").count(),
        listed,
        "{}",
        refreshes.text
    );
    assert!(refreshes.text.contains(r#"<option value="ch1" selected>"#));
    let none = session.get("/ui/hubs/hub1/jobs?channel=other").await;
    assert!(!none.text.contains("<tr data-event="), "{}", none.text);
    assert!(none.text.contains("no event matches the filters"));
    // Unknown or hostile values are refused with a reason, never a failure.
    for bad in ["state=SLEEPING", "type=%3Cscript%3E", "channel=a%3Bdrop"] {
        let answer = session.get(&format!("/ui/hubs/hub1/jobs?{bad}")).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            answer.text
        );
        assert!(answer.text.contains("filter"), "{bad}: {}", answer.text);
        assert!(!answer.text.contains("<script>"), "{bad}: {}", answer.text);
    }

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
        // A manual schedule's connector is idle between syncs (the /v1 API says "scheduled").
        list.contains(">idle<") && list.contains(">connected<"),
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
        list.contains(&format!(">{}<", sep(ROWS))),
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
        t == "idle"
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
        t == sep(ROWS + 2)
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
        |t| t == sep(ROWS),
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
