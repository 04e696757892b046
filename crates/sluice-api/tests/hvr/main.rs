//! HVR 6 conformance over HTTP: each interface group of HVR's REST document against a real hub
//! server (a real socket, reqwest), and the walk over every operation of the document
//! (`conformance`). Tests that touch storage run on both repository backends where it matters.

#![allow(clippy::unwrap_used)]
// Helpers and imports shared by the group modules; a module may not use them all.
#![allow(dead_code, unused_imports)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_test_support::{ADMIN_PASSWORD, TestHub, TestRepository};

mod admin;
mod arc;
mod arc_slicing;
mod backup;
mod batch;
mod browse;
mod conformance;
mod definition;
mod monitor;
mod product;
mod users;

/// A running hub server, a client, and the admin's token.
struct Api {
    hub: TestHub,
    http: reqwest::Client,
    token: String,
}

/// An answer: status and body text.
struct Answer {
    status: StatusCode,
    text: String,
}

impl Answer {
    /// The body as JSON (panics with the body when it is not).
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    fn expect(self, status: u16) -> Answer {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        self
    }
}

impl Api {
    /// A hub server on a SQLite repository (`pg`: PostgreSQL), logged in as the admin.
    async fn start(pg: bool) -> Api {
        let repository = Arc::new(TestRepository::new(pg).await);
        let config = TestHub::config(&repository);
        let hub = TestHub::serve(repository, config).await;
        let mut api = Api {
            hub,
            http: reqwest::Client::new(),
            token: String::new(),
        };
        api.token = api.login("admin", ADMIN_PASSWORD).await;
        api
    }

    /// Logs in; answers the access token.
    async fn login(&self, user: &str, password: &str) -> String {
        let a = self
            .call_as(
                None,
                "POST",
                "/auth/v1/password",
                Some(json!({"username": user, "password": password})),
            )
            .await
            .expect(200)
            .json();
        a["access_token"].as_str().unwrap().to_owned()
    }

    /// A call as the admin.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call_as(Some(&self.token), method, path, body).await
    }

    /// A call with `token` (none: anonymous).
    async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
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
        Answer {
            status: resp.status(),
            text: resp.text().await.unwrap(),
        }
    }

    /// Creates a user with `level` and answers their token.
    async fn user(&self, name: &str, level: &str) -> String {
        let password = format!("{name}-password-1");
        self.call(
            "POST",
            "/api/latest/users",
            Some(json!({"user": name, "password": password, "level": level})),
        )
        .await;
        self.login(name, &password).await
    }

    /// Hub `hub1` with SQLite locations `src` (table `orders` of `rows` rows) and `tgt` (empty),
    /// and channel `ch1` refreshing `orders` from `src` to `tgt`.
    async fn define(&self, rows: usize) {
        let dir = self.hub.dir().to_owned();
        let (src, tgt) = sqlite_pair(&dir, rows);
        self.call(
            "POST",
            "/api/latest/hubs",
            Some(json!({"hub": "hub1", "props": {"Description": "test hub"}})),
        )
        .await
        .expect(204);
        for (loc, path) in [("src", &src), ("tgt", &tgt)] {
            self.call(
                "POST",
                "/api/latest/hubs/hub1/definition/locs",
                Some(json!({"loc": loc, "props": {"Class": "sqlite", "Database_Name": path}})),
            )
            .await
            .expect(201);
        }
        self.call(
            "POST",
            "/api/latest/hubs/hub1/definition/channels",
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
        .expect(201);
    }

    /// Polls an event of `hub1` until it leaves ACTIVE; answers it with its results.
    async fn wait_event(&self, ev_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let events = self
                .call(
                    "GET",
                    &format!("/api/latest/hubs/hub1/events?ev_id={ev_id}&fetch_results=true"),
                    None,
                )
                .await
                .expect(200)
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

/// A SQLite source file with table `orders` (id key, customer, amount) of `rows` rows, and an
/// empty target file; answers their paths.
fn sqlite_pair(dir: &Path, rows: usize) -> (String, String) {
    let src = dir.join("src.db");
    let tgt = dir.join("tgt.db");
    let conn = rusqlite::Connection::open(&src).unwrap();
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, amount REAL);",
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..rows {
        tx.execute(
            "INSERT INTO orders VALUES (?1, ?2, ?3)",
            rusqlite::params![i as i64, format!("c{i}"), i as f64 * 1.5],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    rusqlite::Connection::open(&tgt).unwrap();
    (
        src.to_string_lossy().into_owned(),
        tgt.to_string_lossy().into_owned(),
    )
}
