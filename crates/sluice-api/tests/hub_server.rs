//! The hub server end to end, over a real socket with a real HTTP client (reqwest), on both
//! repository backends: SQLite and PostgreSQL (a fresh database per test on
//! `$SLUICE_TEST_PG`, default `postgres://postgres@127.0.0.1:5432`; unreachable → the test fails).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_repo::Repository;
use sluice_service::HubService;
use sluice_service::secrets::SecretKey;
use tokio_util::sync::CancellationToken;

const ADMIN_PASSWORD: &str = "admin-password-1";

fn pg_server() -> String {
    std::env::var("SLUICE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

async fn pg_admin() -> tokio_postgres::Client {
    let url = format!("{}/postgres", pg_server());
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL is unreachable at {url} ({e}); these tests never skip")
        });
    tokio::spawn(conn);
    client
}

/// A repository on one backend, kept alive (and cleaned up) by the guard.
struct Backend {
    spec: String,
    _dir: tempfile::TempDir,
    pg_db: Option<String>,
}

impl Backend {
    async fn new(pg: bool) -> Backend {
        let dir = tempfile::tempdir().unwrap();
        if pg {
            let name = format!("sluice_api_test_{}", uuid::Uuid::new_v4().simple());
            pg_admin()
                .await
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            Backend {
                spec: format!("{}/{name}", pg_server()),
                _dir: dir,
                pg_db: Some(name),
            }
        } else {
            Backend {
                spec: format!("sqlite:{}", dir.path().join("hub.db").display()),
                _dir: dir,
                pg_db: None,
            }
        }
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }

    async fn drop_db(&self) {
        if let Some(name) = &self.pg_db {
            let _ = pg_admin()
                .await
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// A running hub server.
struct Server {
    base: String,
    repo: Arc<dyn Repository>,
    shutdown: CancellationToken,
    http: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(backend: &Backend) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let repo = sluice_repo::open_repository(&backend.spec).await.unwrap();
    let service = HubService::with_secrets(
        repo.clone(),
        sluice_service::registry::process_env(),
        Some(SecretKey::from_text("test key")),
        "hub-server",
    );
    service.ensure_admin(Some(ADMIN_PASSWORD)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(
        service
            .clone()
            .run_scheduler(Duration::from_millis(200), shutdown.clone()),
    );
    tokio::spawn(sluice_api::serve(
        listener,
        sluice_api::AppState::new(service),
        shutdown.clone(),
    ));
    Server {
        base,
        repo,
        shutdown,
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
        let url = format!("{}{path}", self.base);
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
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
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
    let backend = Backend::new(pg).await;
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
        Some(json!({"jobs": ["ch1-refr-src-tgt"]})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let done = s
        .wait_event(&token, second["posted_ev_id"].as_str().unwrap())
        .await;
    assert_eq!(done["state"], "DONE", "{done}");

    backend.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_define_refresh_compare_freeze_on_sqlite() {
    flow(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_define_refresh_compare_freeze_on_postgres() {
    flow(true).await;
}
