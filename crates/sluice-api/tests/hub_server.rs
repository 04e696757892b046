//! The hub server end to end, over a real socket with a real HTTP client (reqwest), on both
//! repository backends: SQLite and PostgreSQL (a fresh database per test on
//! `$SLUICE_TEST_PG`, default `postgres://postgres@127.0.0.1:5432`; unreachable → the test fails).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_test_support::{ADMIN_PASSWORD, TestHub, TestRepository};

/// A running hub server and a client.
struct Server {
    hub: TestHub,
    http: reqwest::Client,
}

/// A hub server that runs its jobs as `sluice serve` does: on a job runtime of their own, at a
/// lower CPU priority.
async fn start(repository: &Arc<TestRepository>) -> Server {
    let config = sluice_api::HubConfig {
        job_threads: Some(1),
        ..TestHub::config(repository)
    };
    Server {
        hub: TestHub::serve(repository.clone(), config).await,
        http: reqwest::Client::new(),
    }
}

struct Answer {
    status: StatusCode,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn expect(self, status: StatusCode) -> Answer {
        assert_eq!(self.status, status, "body: {}", self.text);
        self
    }
}

impl Server {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let url = format!("{}{path}", self.hub.base());
        let mut req = self.http.request(method.parse().unwrap(), &url);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        Answer {
            status,
            text: resp.text().await.unwrap(),
        }
    }

    async fn raw(&self, method: &str, path: &str, token: &str, body: &str) -> Answer {
        let resp = self
            .http
            .request(
                method.parse().unwrap(),
                format!("{}{path}", self.hub.base()),
            )
            .header("Authorization", format!("bearer {token}"))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        Answer {
            status,
            text: resp.text().await.unwrap(),
        }
    }

    async fn login(&self, user: &str, password: &str) -> (String, String) {
        let a = self
            .call(
                "POST",
                "/auth/v1/password",
                None,
                Some(json!({"username": user, "password": password, "refresh": "token"})),
            )
            .await
            .expect(StatusCode::OK)
            .json();
        assert_eq!(a["token_type"], "bearer");
        assert_eq!(a["expires_in"], 900);
        (
            a["access_token"].as_str().unwrap().to_owned(),
            a["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    /// Polls an event until it leaves ACTIVE; returns it with its results.
    async fn wait_event(&self, token: &str, ev_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let events = self
                .call(
                    "GET",
                    &format!("/api/latest/hubs/hub1/events?ev_id={ev_id}&fetch_results=true"),
                    Some(token),
                    None,
                )
                .await
                .expect(StatusCode::OK)
                .json();
            let e = events[ev_id].clone();
            assert!(!e.is_null(), "event {ev_id} missing: {events}");
            if e["state"] != "ACTIVE" {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "event {ev_id} still ACTIVE after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn table_result<'a>(event: &'a Value, table: &str, name: &str) -> Option<&'a str> {
    event["results"]
        .as_array()?
        .iter()
        .find(|r| r["table"] == table && r["result"] == name)
        .and_then(|r| r["value"].as_str())
}

/// A SQLite source with `rows` orders, and an empty target file path.
fn make_sqlite_source(dir: &Path, rows: usize) -> (String, String) {
    let src = dir.join("src.db");
    let conn = rusqlite::Connection::open(&src).unwrap();
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, total NUMERIC(12,2));
         BEGIN;",
    )
    .unwrap();
    {
        let mut stmt = conn
            .prepare("INSERT INTO orders VALUES (?1, ?2, ?3)")
            .unwrap();
        for i in 0..rows {
            stmt.execute(rusqlite::params![
                i as i64,
                format!("customer {i}"),
                format!("{}.{:02}", i % 1000, i % 100)
            ])
            .unwrap();
        }
    }
    conn.execute_batch("COMMIT;").unwrap();
    (
        src.display().to_string(),
        dir.join("tgt.db").display().to_string(),
    )
}

/// Hub `hub1` with locations src/tgt and channel `ch1` (table orders).
async fn define(s: &Server, token: &str, dir: &Path, rows: usize) {
    let (src, tgt) = make_sqlite_source(dir, rows);
    s.call(
        "POST",
        "/api/v6.1.0.3/hubs",
        Some(token),
        Some(json!({"hub": "hub1", "props": {"Description": "test hub"}})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    for (loc, path) in [("src", &src), ("tgt", &tgt)] {
        s.call(
            "POST",
            "/api/latest/hubs/hub1/definition/locs",
            Some(token),
            Some(json!({"loc": loc, "props": {"Class": "sqlite", "Database_Name": path}})),
        )
        .await
        .expect(StatusCode::CREATED);
    }
    s.call(
        "POST",
        "/api/latest/hubs/hub1/definition/channels",
        Some(token),
        Some(json!({
            "channel": "ch1",
            "description": "orders",
            "loc_groups": {"SOURCE": {"members": ["src"]}, "TARGET": {"members": ["tgt"]}},
            "tables": {"orders": {}},
            "actions": [
                {"loc_scope": "SOURCE", "table_scope": "*", "type": "Capture"},
                {"loc_scope": "TARGET", "table_scope": "*", "type": "Integrate", "params": {}}
            ]
        })),
    )
    .await
    .expect(StatusCode::CREATED);
}

async fn flow(pg: bool) {
    let backend = Arc::new(TestRepository::new(pg).await);
    let s = start(&backend).await;
    // Without a token: 401 with an HVR error body.
    let a = s
        .call("GET", "/api/latest/hubs", None, None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert!(a.text.starts_with("F_JW054F: "), "{}", a.text);
    // Bad login: 403.
    s.call(
        "POST",
        "/auth/v1/password",
        None,
        Some(json!({"username": "admin", "password": "nope"})),
    )
    .await
    .expect(StatusCode::FORBIDDEN);
    let (token, _) = s.login("admin", ADMIN_PASSWORD).await;
    let versions = s
        .call("GET", "/api", None, None)
        .await
        .expect(StatusCode::OK)
        .json();
    assert!(versions.as_array().unwrap().contains(&json!("v6.1.0.3")));
    define(&s, &token, backend.dir(), 500).await;

    // Duplicate channel → 400 F_JR171C, and nothing changed.
    let a = s
        .call(
            "POST",
            "/api/latest/hubs/hub1/definition/channels",
            Some(&token),
            Some(json!({"channel": "ch1", "tables": {}})),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert!(a.text.starts_with("F_JR171C: "), "{}", a.text);
    let ch = s
        .call("GET", "/api/latest/hubs/hub1/definition/channels/ch1?fetch=tables&fetch=loc_groups&fetch=members", Some(&token), None)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(ch["loc_groups"]["SOURCE"]["members"], json!(["src"]));
    assert!(ch["tables"]["orders"].is_object());
    let actions = s
        .call(
            "GET",
            "/api/latest/hubs/hub1/definition/channels/ch1/actions",
            Some(&token),
            None,
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(actions.as_array().unwrap().len(), 2);
    assert!(
        actions[1].get("params").is_none(),
        "empty params are dropped: {actions}"
    );

    // Dry run: the plan, nothing posted.
    let plan = s
        .call(
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/refresh",
            Some(&token),
            Some(json!({"source_loc": "src", "target_loc": "tgt", "dry_run": true})),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(plan["job"], "ch1-refr-src-tgt");
    assert!(
        !plan["tables"][0]["target_statements"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{plan}"
    );

    // Refresh → 201 → poll until DONE with results.
    let posted = s
        .call(
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/refresh",
            Some(&token),
            Some(json!({"source_loc": "src", "target_loc": "tgt", "start_immediate": "true"})),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(posted["job"], "ch1-refr-src-tgt");
    let ev = posted["posted_ev_id"].as_str().unwrap().to_owned();
    let done = s.wait_event(&token, &ev).await;
    assert_eq!(done["state"], "DONE", "{done}");
    assert_eq!(table_result(&done, "orders", "Table_State"), Some("DONE"));
    assert_eq!(
        table_result(&done, "orders", "Source_Rows_Used"),
        Some("500")
    );
    let log = s
        .call(
            "GET",
            &format!("/api/latest/hubs/hub1/events/{ev}/log"),
            Some(&token),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert!(log.text.contains("completed"), "{}", log.text);
    let ids = s
        .call(
            "GET",
            "/api/latest/hubs/hub1/channels/ch1/refresh/tables_results_ids",
            Some(&token),
            None,
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(ids[&ev], json!(["orders"]));

    // Compare → identical.
    let posted = s
        .call(
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/compare",
            Some(&token),
            Some(json!({"source_loc": "src", "target_loc": "tgt", "granularity": "rowwise"})),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(posted["job"], "ch1-cmp-src-tgt");
    let done = s
        .wait_event(&token, posted["posted_ev_id"].as_str().unwrap())
        .await;
    assert_eq!(
        table_result(&done, "orders", "Table_State"),
        Some("DONE/IDENTICAL"),
        "{done}"
    );

    // Freeze: refresh refused; unfreeze: accepted again.
    s.call("POST", "/api/latest/hubs/hub1/freeze", Some(&token), None)
        .await
        .expect(StatusCode::NO_CONTENT);
    let status = s
        .call(
            "GET",
            "/api/latest/hubs/hub1/query/status",
            Some(&token),
            None,
        )
        .await
        .json();
    assert_eq!(status["hub_state"], "FROZEN");
    assert!(status["freeze_time"].is_string());
    let a = s
        .call(
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/refresh",
            Some(&token),
            Some(json!({"source_loc": "src", "target_loc": "tgt"})),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert!(a.text.contains("FROZEN"), "{}", a.text);
    s.call("POST", "/api/latest/hubs/hub1/unfreeze", Some(&token), None)
        .await
        .expect(StatusCode::NO_CONTENT);
    let posted = s
        .call(
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/refresh",
            Some(&token),
            Some(json!({"source_loc": "src", "target_loc": "tgt"})),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    let done = s
        .wait_event(&token, posted["posted_ev_id"].as_str().unwrap())
        .await;
    assert_eq!(done["state"], "DONE");

    // Audit: freeze and definition changes name the user.
    let audit = s
        .call(
            "GET",
            "/api/latest/hubs/hub1/events?type=Hub_Freeze&type=Definition_Change",
            Some(&token),
            None,
        )
        .await
        .expect(StatusCode::OK)
        .json();
    let audit = audit.as_object().unwrap();
    assert!(
        audit
            .values()
            .any(|e| e["type"] == "Hub_Freeze" && e["user"] == "admin")
    );
    assert!(
        audit
            .values()
            .any(|e| e["type"] == "Definition_Change" && e["user"] == "admin")
    );

    // Pending runs: a second pending request of the same job cancels the first.
    let first = s
        .call(
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/refresh",
            Some(&token),
            Some(json!({"source_loc": "src", "target_loc": "tgt", "start_immediate": false})),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    let second = s
        .call(
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/refresh",
            Some(&token),
            Some(json!({"source_loc": "src", "target_loc": "tgt", "start_immediate": 0})),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(second["canceled_ev_ids"], json!([first["posted_ev_id"]]));
    let jobs = s
        .call(
            "GET",
            "/api/latest/hubs/hub1/jobs?channel=ch1",
            Some(&token),
            None,
        )
        .await
        .json();
    assert_eq!(jobs["ch1-refr-src-tgt"]["state"], "SUSPEND", "{jobs}");
    s.call(
        "POST",
        "/api/latest/hubs/hub1/jobs_start",
        Some(&token),
        Some(json!({"jobs": ["ch1-refr-src-tgt"], "unsuspend": true})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let done = s
        .wait_event(&token, second["posted_ev_id"].as_str().unwrap())
        .await;
    assert_eq!(done["state"], "DONE", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_define_refresh_compare_freeze_on_sqlite() {
    flow(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_define_refresh_compare_freeze_on_postgres() {
    flow(true).await;
}

/// Every access level is refused where it must be (and allowed where it may).
async fn access_levels(pg: bool) {
    let backend = Arc::new(TestRepository::new(pg).await);
    let s = start(&backend).await;
    let (admin, _) = s.login("admin", ADMIN_PASSWORD).await;
    define(&s, &admin, backend.dir(), 50).await;
    let posted = s
        .call(
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/refresh",
            Some(&admin),
            Some(json!({"source_loc": "src", "target_loc": "tgt"})),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    s.wait_event(&admin, posted["posted_ev_id"].as_str().unwrap())
        .await;
    for (user, level) in [
        ("ro", "ReadOnly"),
        ("rx", "ReadExec"),
        ("rxr", "ReadExecRefresh"),
        ("rw", "ReadWrite"),
        ("owner", "HubOwner"),
    ] {
        s.call(
            "POST",
            "/api/latest/users",
            Some(&admin),
            Some(json!({"user": user, "level": level, "password": "password-123"})),
        )
        .await
        .expect(StatusCode::NO_CONTENT);
    }
    let refresh = json!({"source_loc": "src", "target_loc": "tgt"});
    let compare = json!({"source_loc": "src", "target_loc": "tgt"});
    let new_channel = |name: &str| json!({"channel": name, "loc_groups": {"SOURCE": {"members": ["src"]}}, "tables": {"orders": {}}});
    // (user, method, path, body, allowed?)
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Option<Value>,
        bool,
    );
    let cases: Vec<Case> = vec![
        (
            "ro",
            "GET",
            "/api/latest/hubs/hub1/definition/channels/ch1",
            None,
            true,
        ),
        ("ro", "GET", "/api/latest/hubs/hub1/events", None, true),
        (
            "ro",
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/compare",
            Some(compare.clone()),
            false,
        ),
        (
            "ro",
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/refresh",
            Some(refresh.clone()),
            false,
        ),
        (
            "ro",
            "POST",
            "/api/latest/hubs/hub1/definition/channels",
            Some(new_channel("c_ro")),
            false,
        ),
        // Testing a stored location needs ReadOnly, as HVR documents (it connects only where
        // the location's definer said); a location not yet defined needs ReadWrite.
        (
            "ro",
            "POST",
            "/api/latest/hubs/hub1/locs/src/test",
            None,
            true,
        ),
        (
            "ro",
            "POST",
            "/api/latest/hubs/hub1/new_loc/test",
            Some(json!({"props": {"Class": "sqlite", "Database_Name": "x.db"}})),
            false,
        ),
        (
            "rx",
            "POST",
            "/api/latest/hubs/hub1/locs/src/test",
            None,
            true,
        ),
        (
            "rx",
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/refresh",
            Some(refresh.clone()),
            false,
        ),
        (
            "rx",
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/compare",
            Some(compare.clone()),
            true,
        ),
        (
            "rxr",
            "POST",
            "/api/latest/hubs/hub1/definition/channels",
            Some(new_channel("c_rxr")),
            false,
        ),
        (
            "rw",
            "POST",
            "/api/latest/hubs/hub1/definition/channels",
            Some(new_channel("c_rw")),
            true,
        ),
        ("rw", "POST", "/api/latest/hubs/hub1/freeze", None, false),
        ("rw", "GET", "/api/latest/users/admin", None, false),
        (
            "owner",
            "PATCH",
            "/api/latest/hubs/hub1/props",
            Some(json!({"Description": "owned"})),
            true,
        ),
        (
            "owner",
            "POST",
            "/api/latest/hubs",
            Some(json!({"hub": "hub2"})),
            false,
        ),
        (
            "owner",
            "POST",
            "/api/latest/users",
            Some(json!({"user": "x", "level": "SysAdmin", "password": "password-123"})),
            false,
        ),
        (
            "rxr",
            "POST",
            "/api/latest/hubs/hub1/channels/ch1/refresh",
            Some(refresh.clone()),
            true,
        ),
    ];
    for (user, method, path, body, allowed) in cases {
        let (token, _) = s.login(user, "password-123").await;
        let a = s.call(method, path, Some(&token), body).await;
        if allowed {
            assert!(
                a.status.is_success()
                    || a.status == StatusCode::BAD_REQUEST && a.text.contains("already running"),
                "{user} {method} {path}: expected success, got {} {}",
                a.status,
                a.text
            );
        } else {
            assert_eq!(
                a.status,
                StatusCode::FORBIDDEN,
                "{user} {method} {path}: {}",
                a.text
            );
            assert!(
                a.text.starts_with("F_JA0403: ") && a.text.contains(user),
                "{}",
                a.text
            );
        }
    }
    // Nothing the refused calls tried exists.
    let channels = s
        .call(
            "GET",
            "/api/latest/hubs/hub1/definition/channels",
            Some(&admin),
            None,
        )
        .await
        .json();
    let names: Vec<&String> = channels.as_object().unwrap().keys().collect();
    assert_eq!(names, vec!["c_rw", "ch1"]);
    let hub = s
        .call(
            "GET",
            "/api/latest/hubs/hub1/query/status",
            Some(&admin),
            None,
        )
        .await
        .json();
    assert_eq!(hub["hub_state"], "LIVE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_levels_on_sqlite() {
    access_levels(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_levels_on_postgres() {
    access_levels(true).await;
}

/// Expired and forged tokens get 401; a refresh token works once and yields a new pair.
async fn tokens(pg: bool) {
    let backend = Arc::new(TestRepository::new(pg).await);
    let s = start(&backend).await;
    let (token, refresh) = s.login("admin", ADMIN_PASSWORD).await;
    // Lowercase scheme accepted.
    s.raw("GET", "/api/latest/hubs", &token, "")
        .await
        .expect(StatusCode::OK);
    // An expired token signed with the hub's real key.
    let key = s
        .hub
        .service()
        .repository()
        .setting_or_insert("jwt_signing_key", "unused")
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "admin", "lvl": "SysAdmin", "iat": now - 1000, "exp": now - 100, "jti": "x"}),
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap();
    let a = s
        .call("GET", "/api/latest/hubs", Some(&expired), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert!(a.text.contains("expired"), "{}", a.text);
    // A token signed with another key.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "admin", "lvl": "SysAdmin", "iat": now, "exp": now + 100, "jti": "x"}),
        &jsonwebtoken::EncodingKey::from_secret(b"not the key"),
    )
    .unwrap();
    s.call("GET", "/api/latest/hubs", Some(&forged), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    // Refresh: a new pair; the old refresh token is spent.
    let fresh = s
        .call(
            "POST",
            "/auth/v1/refresh",
            None,
            Some(json!({"refresh_token": refresh, "refresh": "token"})),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    let new_access = fresh["access_token"].as_str().unwrap();
    s.call("GET", "/api/latest/hubs", Some(new_access), None)
        .await
        .expect(StatusCode::OK);
    s.call(
        "POST",
        "/auth/v1/refresh",
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await
    .expect(StatusCode::FORBIDDEN);
    // Revoke ends the new refresh token.
    let new_refresh = fresh["refresh_token"].as_str().unwrap();
    s.call(
        "POST",
        "/auth/v1/revoke",
        None,
        Some(json!({"refresh_token": new_refresh})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    s.call(
        "POST",
        "/auth/v1/refresh",
        None,
        Some(json!({"refresh_token": new_refresh})),
    )
    .await
    .expect(StatusCode::FORBIDDEN);
    // Failed logins are limited per user.
    for _ in 0..5 {
        s.call(
            "POST",
            "/auth/v1/password",
            None,
            Some(json!({"username": "admin", "password": "wrong"})),
        )
        .await
        .expect(StatusCode::FORBIDDEN);
    }
    let a = s
        .call(
            "POST",
            "/auth/v1/password",
            None,
            Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
        )
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    assert!(a.text.contains("too many failed logins"), "{}", a.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_on_sqlite() {
    tokens(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_on_postgres() {
    tokens(true).await;
}

/// Bad input gets a clear 400 and changes nothing.
async fn bad_input(pg: bool) {
    let backend = Arc::new(TestRepository::new(pg).await);
    let s = start(&backend).await;
    let (token, _) = s.login("admin", ADMIN_PASSWORD).await;
    define(&s, &token, backend.dir(), 10).await;
    let before = s
        .call(
            "GET",
            "/api/latest/hubs/hub1/definition",
            Some(&token),
            None,
        )
        .await
        .expect(StatusCode::OK)
        .text;
    let events_before = s
        .call("GET", "/api/latest/hubs/hub1/events", Some(&token), None)
        .await
        .json();
    let chans = "/api/latest/hubs/hub1/definition/channels";
    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("POST", chans, "{\"channel\": \"c2\", ".into(), "malformed JSON"),
        ("POST", chans, json!({"channel": "c2", "colour": "red"}).to_string(), "unknown field"),
        ("POST", chans, json!({"channel": "c2", "tables": []}).to_string(), "expected an object"),
        ("POST", chans, json!({"channel": "averyveryverylongname"}).to_string(), "averyveryverylongname"),
        ("POST", chans, json!({"channel": "x'; drop table channel; --"}).to_string(), "drop table"),
        ("POST", chans, json!({"channel": "c2", "tables": {"t; delete from x": {}}}).to_string(), "t; delete from x"),
        ("POST", chans, json!({"channel": "c2", "tables": {"t": {"cols": {"a": {"data_type": "inte"}}}}}).to_string(), "unknown data type"),
        ("POST", chans, json!({"channel": "c2", "loc_groups": {"SOURCE": {"members": ["nosuch"]}}}).to_string(), "nosuch"),
        ("POST", "/api/latest/hubs/hub1/channels/ch1/refresh", json!({"source_loc": 5, "target_loc": "tgt"}).to_string(), "invalid type"),
        ("POST", "/api/latest/hubs/hub1/channels/ch1/refresh", json!({"source_loc": "src", "target_loc": "tgt", "bogus": 1}).to_string(), "unknown field"),
        ("POST", "/api/latest/hubs/hub1/channels/ch1/refresh", json!({"source_loc": "src", "target_loc": "tgt", "start_immediate": "maybe"}).to_string(), "boolean"),
        ("POST", "/api/latest/hubs/hub1/channels/ch1/compare", json!({"source_loc": "src", "target_loc": "tgt", "online_compare": "diff_cap"}).to_string(), "rowwise"),
        ("POST", "/api/latest/hubs/hub1/channels/ch1/compare", json!({"source_loc": "src", "target_loc": "tgt", "granularity": "rowwise", "online_compare": "diff_later"}).to_string(), "diff_diff"),
        ("POST", "/api/latest/hubs/hub1/channels/ch1/compare", json!({"source_loc": "src", "target_loc": "tgt", "granularity": "rowwise", "online_compare_sleep": 2}).to_string(), "needs online_compare"),
        ("POST", "/api/latest/hubs/hub1/channels/ch1/compare", json!({"source_loc": "src", "target_loc": "tgt", "granularity": "rowwise", "online_compare": "diff_cap"}).to_string(), "online compare needs channel ch1 activated"),
        ("POST", "/api/latest/hubs/hub1/channels/ch1/activate", json!({"tables": ["orders"]}).to_string(), "as a whole"),
        ("POST", "/api/latest/hubs/hub1/definition/locs", json!({"loc": "l2", "props": {"Class": "oracle"}}).to_string(), "oracle"),
        ("POST", "/api/latest/hubs/hub1/definition/locs", json!({"loc": "l2", "props": {"Class": "sqlite"}}).to_string(), "Database_Name"),
        ("POST", "/api/latest/hubs/hub1/definition/import", json!({"changes": [{"add_loc": {"loc": "l3", "props": {"Class": "sqlite", "Database_Name": "/tmp/x.db"}}}, {"add_channel": {"channel": "ch1"}}]}).to_string(), "F_JR171C"),
    ];
    for (method, path, body, needle) in cases {
        let a = s.raw(method, path, &token, &body).await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{path} {body}: {}",
            a.text
        );
        assert!(a.text.starts_with("F_"), "{}", a.text);
        assert!(
            a.text.contains(needle),
            "{path} {body}: expected {needle:?} in {}",
            a.text
        );
    }
    let after = s
        .call(
            "GET",
            "/api/latest/hubs/hub1/definition",
            Some(&token),
            None,
        )
        .await
        .text;
    assert_eq!(before, after, "a refused change changed the definitions");
    let events_after = s
        .call("GET", "/api/latest/hubs/hub1/events", Some(&token), None)
        .await
        .json();
    assert_eq!(
        events_before, events_after,
        "a refused request posted an event"
    );
    // Unknown objects → 404; unknown API version → 404.
    s.call(
        "GET",
        "/api/latest/hubs/hub1/definition/channels/nosuch",
        Some(&token),
        None,
    )
    .await
    .expect(StatusCode::NOT_FOUND);
    s.call(
        "GET",
        "/api/latest/hubs/nohub/definition/channels",
        Some(&token),
        None,
    )
    .await
    .expect(StatusCode::NOT_FOUND);
    s.call("GET", "/api/vbogus/hubs", Some(&token), None)
        .await
        .expect(StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_changes_nothing_on_sqlite() {
    bad_input(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_changes_nothing_on_postgres() {
    bad_input(true).await;
}

/// Passwords given as values are stored sealed and never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_passwords_are_sealed_and_never_shown() {
    let backend = Arc::new(TestRepository::sqlite());
    let s = start(&backend).await;
    let (token, _) = s.login("admin", ADMIN_PASSWORD).await;
    define(&s, &token, backend.dir(), 10).await;
    let secret = "s3cret-Pa55word";
    s.call(
        "POST",
        "/api/latest/hubs/hub1/definition/locs",
        Some(&token),
        Some(json!({"loc": "pg1", "props": {"Class": "postgresql", "Database_Host": "127.0.0.1", "Database_Port": 5432,
            "Database_Name": "postgres", "Database_User": "postgres", "Database_Password": secret}})),
    )
    .await
    .expect(StatusCode::CREATED);
    let stored = s
        .hub
        .service()
        .repository()
        .location(&"hub1".parse().unwrap(), &"pg1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let raw = stored.props["Database_Password"].to_text();
    assert!(raw.starts_with("enc:v1:") && !raw.contains(secret), "{raw}");
    for path in [
        "/api/latest/hubs/hub1/definition/locs/pg1",
        "/api/latest/hubs/hub1/definition/locs/pg1/props",
        "/api/latest/hubs/hub1/definition/locs?fetch=loc_props",
        "/api/latest/hubs/hub1/definition",
        "/api/latest/hubs/hub1/events?fetch_results=true",
    ] {
        let a = s
            .call("GET", path, Some(&token), None)
            .await
            .expect(StatusCode::OK);
        assert!(
            !a.text.contains(secret) && !a.text.contains("enc:v1:"),
            "{path}: {}",
            a.text
        );
    }
    // The sealed password is used: the test connects (trust auth ignores it, but it must decrypt).
    s.call(
        "POST",
        "/api/latest/hubs/hub1/locs/pg1/test",
        Some(&token),
        None,
    )
    .await
    .expect(StatusCode::OK);
    // A GET-modify-PUT keeps the stored password.
    let mut loc = s
        .call(
            "GET",
            "/api/latest/hubs/hub1/definition/locs/pg1",
            Some(&token),
            None,
        )
        .await
        .json();
    loc["props"]["Database_Port"] = json!(5432);
    s.call(
        "PUT",
        "/api/latest/hubs/hub1/definition/locs/pg1",
        Some(&token),
        Some(loc),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let stored = s
        .hub
        .service()
        .repository()
        .location(&"hub1".parse().unwrap(), &"pg1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.props["Database_Password"]
            .to_text()
            .starts_with("enc:v1:")
    );
}

/// Two hub processes on one PostgreSQL repository: the same job can run only once at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hub_processes_run_a_job_once() {
    let backend = Arc::new(TestRepository::postgres("sluice_api_test_").await);
    let a = start(&backend).await;
    let b = start(&backend).await;
    let (ta, _) = a.login("admin", ADMIN_PASSWORD).await;
    // Tokens of one process are accepted by the other (shared signing key).
    b.call("GET", "/api/latest/hubs", Some(&ta), None)
        .await
        .expect(StatusCode::OK);
    define(&a, &ta, backend.dir(), 200_000).await;
    let body = json!({"source_loc": "src", "target_loc": "tgt"});
    let path = "/api/latest/hubs/hub1/channels/ch1/refresh";
    let (ra, rb) = tokio::join!(
        a.call("POST", path, Some(&ta), Some(body.clone())),
        b.call("POST", path, Some(&ta), Some(body.clone())),
    );
    let (won, lost) = match (ra.status, rb.status) {
        (StatusCode::CREATED, StatusCode::BAD_REQUEST) => (ra, rb),
        (StatusCode::BAD_REQUEST, StatusCode::CREATED) => (rb, ra),
        other => panic!(
            "expected one 201 and one 400, got {other:?}: {} / {}",
            ra.text, rb.text
        ),
    };
    let ev = won.json()["posted_ev_id"].as_str().unwrap().to_owned();
    assert!(
        lost.text.contains("already running") && lost.text.contains(&ev),
        "{}",
        lost.text
    );
    let done = a.wait_event(&ta, &ev).await;
    assert_eq!(done["state"], "DONE", "{done}");
    // Cancel from the other process: the running job stops and the event is CANCELED.
    let posted = a
        .call("POST", path, Some(&ta), Some(body.clone()))
        .await
        .expect(StatusCode::CREATED)
        .json();
    let ev = posted["posted_ev_id"].as_str().unwrap().to_owned();
    b.call(
        "POST",
        "/api/latest/hubs/hub1/events_cancel",
        Some(&ta),
        Some(json!({"ev_ids": [ev]})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let done = a.wait_event(&ta, &ev).await;
    assert_eq!(done["state"], "CANCELED", "{done}");
    // The table's result says what happened to it, never a stale BUSY.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let done = a.wait_event(&ta, &ev).await;
    let state = table_result(&done, "orders", "Table_State");
    assert_eq!(state, Some("CANCELED"), "{done}");
    // The cancelled refresh left the target as it was: the first refresh's rows.
    let rows: i64 = rusqlite::Connection::open(backend.dir().join("tgt.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 200_000);
    let again = b
        .call(
            "POST",
            "/api/latest/hubs/hub1/events_cancel",
            Some(&ta),
            Some(json!({"ev_ids": [ev]})),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert!(again.text.contains("ACTIVE"), "{}", again.text);
}
