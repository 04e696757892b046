//! Change capture as people and tools see it, on a real hub server replicating a real
//! PostgreSQL source (127.0.0.1:5432, a fresh database; unreachable → the test fails) into a
//! SQLite target: the dashboard's Activate and Deactivate buttons (and who may press them), the
//! channel page's jobs, figures and lag chart, the `/metrics` series, and HVR's `GET …/activate`
//! of hub, channel and location before, during and after.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use sluice_model::AccessLevel;
use sluice_test_support::{ADMIN_PASSWORD, TestDatabase, TestHub, pg_admin};

const VIEWER_PASSWORD: &str = "viewer-password-1";

struct World {
    hub: TestHub,
    base: String,
    http: reqwest::Client,
    token: String,
    name: String,
    source: tokio_postgres::Client,
    target: std::path::PathBuf,
    _db: TestDatabase,
}

impl World {
    async fn api(&self, method: &str, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn get(&self, path: &str) -> Value {
        self.api("GET", path, Value::Null).await
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    fn target_count(&self) -> i64 {
        rusqlite::Connection::open(&self.target)
            .and_then(|c| c.query_row("SELECT count(*) FROM items", [], |r| r.get(0)))
            .unwrap_or(-1)
    }

    async fn until(&self, what: &str, mut done: impl AsyncFnMut(&World) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !done(self).await {
            if Instant::now() >= deadline {
                let events = self
                    .get(&format!(
                        "/api/latest/hubs/{}/events?fetch_results=true",
                        self.name
                    ))
                    .await;
                panic!("timed out waiting for {what}; the hub's events: {events:#}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Drops the slot a failed run may leave (a database with a slot cannot be dropped).
struct SlotGuard(String);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name LIKE 'sluice_{}%' AND NOT active",
                self.0
            ))
            .output();
    }
}

async fn world() -> World {
    let db = TestDatabase::create("sluice_surface_").await;
    let (source, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    source
        .batch_execute(
            "CREATE SCHEMA src;
             CREATE TABLE src.items (id bigint PRIMARY KEY, name text NOT NULL);
             INSERT INTO src.items SELECT i, 'item ' || i FROM generate_series(1, 3) i;",
        )
        .await
        .unwrap();
    let hub = TestHub::start().await;
    hub.service()
        .create_user("viewer", AccessLevel::ReadOnly, VIEWER_PASSWORD)
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = hub.base().to_owned();
    let login: Value = http
        .post(format!("{base}/auth/v1/password"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let name = format!("h{}", &db.name[db.name.len() - 12..]);
    let target = hub.dir().join("tgt.db");
    let w = World {
        token: login["access_token"].as_str().unwrap().to_owned(),
        hub,
        base,
        http,
        name,
        source,
        target,
        _db: db,
    };
    let hub = w.name.clone();
    w.api("POST", "/api/latest/hubs", json!({"hub": hub})).await;
    w.api(
        "POST",
        &format!("/api/latest/hubs/{hub}/definition/locs"),
        json!({"loc": "src", "props": {"Class": "postgresql", "Database_Host": "127.0.0.1",
               "Database_Port": "5432", "Database_Name": w._db.name, "Database_User": "postgres",
               "Database_Schema": "src", "Database_Sslmode": "disable"}}),
    )
    .await;
    w.api(
        "POST",
        &format!("/api/latest/hubs/{hub}/definition/locs"),
        json!({"loc": "tgt", "props": {"Class": "sqlite", "Database_Name": w.target.display().to_string()}}),
    )
    .await;
    w.api(
        "POST",
        &format!("/api/latest/hubs/{hub}/definition/channels"),
        json!({
            "channel": "ch1",
            "loc_groups": {"SOURCE": {"members": ["src"]}, "TARGET": {"members": ["tgt"]}},
            "tables": {"items": {}},
            "actions": [
                {"loc_scope": "SOURCE", "table_scope": "*", "type": "Capture"},
                {"loc_scope": "TARGET", "table_scope": "*", "type": "Integrate"}
            ]
        }),
    )
    .await;
    w
}

/// A dashboard session: cookies kept by hand, the dashboard's Origin on POSTs.
struct Session<'a> {
    w: &'a World,
    cookies: Vec<(String, String)>,
}

impl<'a> Session<'a> {
    async fn login(w: &'a World, user: &str, password: &str) -> Session<'a> {
        let mut s = Session {
            w,
            cookies: Vec::new(),
        };
        let (status, headers, text) = s
            .post(
                "/ui/login",
                &[
                    ("username", user),
                    ("password", password),
                    ("next", "/ui/channels"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{text}");
        assert_eq!(headers[LOCATION], "/ui/channels");
        s
    }

    fn keep(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let text = v.to_str().unwrap();
            let (k, rest) = text.split_once('=').unwrap();
            let val = rest.split(';').next().unwrap_or_default();
            self.cookies.retain(|(name, _)| name != k);
            if !val.is_empty() {
                self.cookies.push((k.to_owned(), val.to_owned()));
            }
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> (StatusCode, HeaderMap, String) {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = if cookie.is_empty() {
            req
        } else {
            req.header("Cookie", cookie)
        };
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        self.keep(&headers);
        (status, headers, resp.text().await.unwrap())
    }

    async fn page(&mut self, path: &str) -> String {
        let req = self.w.http.get(format!("{}{path}", self.w.base));
        let (status, _, text) = self.send(req).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
        text
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let req = self
            .w
            .http
            .post(format!("{}{path}", self.w.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Origin", &self.w.base)
            .body(body);
        self.send(req).await
    }
}

fn series(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn activation_shows_on_the_dashboard_metrics_and_hvr_activate_gets() {
    let w = world().await;
    let _slot = SlotGuard(w.name.clone());
    let hub = w.name.clone();
    let page_path = format!("/ui/hubs/{hub}/channels/ch1");

    // Not activated: every member's jobs are missing, and only ReadWrite sees the button.
    let state = w
        .get(&format!("/api/latest/hubs/{hub}/channels/ch1/activate"))
        .await;
    assert_eq!(state["src"]["jobs"]["found"], false, "{state}");
    assert_eq!(state["tgt"]["jobs"]["missing"], true, "{state}");
    let mut admin = Session::login(&w, "admin", ADMIN_PASSWORD).await;
    let mut viewer = Session::login(&w, "viewer", VIEWER_PASSWORD).await;
    let page = admin.page(&page_path).await;
    assert!(page.contains("Not activated"), "{page}");
    assert!(page.contains(r#"id="activate""#), "{page}");
    let page = viewer.page(&page_path).await;
    assert!(!page.contains(r#"id="activate""#), "{page}");
    let (status, _, text) = viewer
        .post(&format!("{page_path}/activate"), &[("refresh", "1")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("ReadWrite"), "{text}");
    assert_eq!(
        w.get(&format!("/api/latest/hubs/{hub}/channels/ch1/activate"))
            .await["src"]["jobs"]["found"],
        false
    );

    // Activate from the dashboard, with the initial load.
    let (status, headers, text) = admin
        .post(&format!("{page_path}/activate"), &[("refresh", "1")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{text}");
    assert!(
        headers[LOCATION].to_str().unwrap().starts_with(&page_path),
        "{headers:?}"
    );
    w.until("the capture job to run", async |w: &World| {
        let s = w
            .get(&format!("/api/latest/hubs/{}/locs/src/activate", w.name))
            .await;
        s["ch1"]["jobs"]["running"] == true
    })
    .await;
    assert_eq!(w.target_count(), 3, "the initial load copied the rows");
    w.source
        .batch_execute(
            "INSERT INTO src.items SELECT i, 'new ' || i FROM generate_series(4, 13) i;
             UPDATE src.items SET name = 'changed' WHERE id = 1;",
        )
        .await
        .unwrap();
    w.until("the changes at the target", async |w: &World| {
        w.target_count() == 13
    })
    .await;

    // /metrics: one series per channel (and target), counting what was replicated.
    let labels = format!(r#"{{hub="{hub}",channel="ch1"}}"#);
    let target_labels = format!(r#"{{hub="{hub}",channel="ch1",target="tgt"}}"#);
    w.until("the figures on /metrics", async |w: &World| {
        let m = w.metrics().await;
        series(&m, &format!("sluice_integrated_rows_total{target_labels}")).unwrap_or(0.0) >= 11.0
    })
    .await;
    let m = w.metrics().await;
    assert_eq!(
        series(&m, &format!("sluice_captured_rows_total{labels}")),
        Some(11.0),
        "{m}"
    );
    assert!(
        series(&m, &format!("sluice_capture_latency_seconds{labels}")).is_some_and(|l| l >= 0.0),
        "{m}"
    );
    assert!(
        series(
            &m,
            &format!("sluice_integrate_latency_seconds{target_labels}")
        )
        .is_some_and(|l| l >= 0.0),
        "{m}"
    );
    assert_eq!(
        m.matches("# TYPE sluice_captured_rows_total counter")
            .count(),
        1
    );

    // The channel page: both jobs running with their figures, the lag chart drawn, the
    // Deactivate button for ReadWrite only.
    let page = admin.page(&page_path).await;
    assert!(page.contains(r#"<tr data-job="ch1-cap-src"><td>ch1-cap-src</td><td><span class="state s-RUNNING">RUNNING</span></td><td class="num">11</td>"#), "{page}");
    assert!(page.contains(r#"data-job="ch1-integ-tgt""#), "{page}");
    assert!(page.contains(r#"<polyline class="line capture""#), "{page}");
    assert!(page.contains(r#"id="deactivate""#), "{page}");
    assert!(!viewer.page(&page_path).await.contains(r#"id="deactivate""#));

    // HVR's activate GETs: the source's capture, the target's integrate and checkpoint.
    let state = w
        .get(&format!("/api/latest/hubs/{hub}/channels/ch1/activate"))
        .await;
    assert_eq!(state["src"]["jobs"]["found"], true, "{state}");
    assert_eq!(state["src"]["enroll"]["found"], true, "{state}");
    assert_eq!(state["tgt"]["jobs"]["running"], true, "{state}");
    assert_eq!(
        state["tgt"]["state_tables"]["lossy_reactivate"], true,
        "{state}"
    );
    assert!(state["tgt"].get("enroll").is_none(), "{state}");
    let all = w.get(&format!("/api/latest/hubs/{hub}/activate")).await;
    assert_eq!(all["ch1"], state, "the hub's answer holds the channel's");

    // Deactivate from the dashboard: the jobs go, and so does the slot.
    let (status, _, text) = admin.post(&format!("{page_path}/deactivate"), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{text}");
    w.until("the deactivation", async |w: &World| {
        let s = w
            .get(&format!(
                "/api/latest/hubs/{}/channels/ch1/activate",
                w.name
            ))
            .await;
        s["src"]["router_files"]["found"] == false
    })
    .await;
    let page = admin.page(&page_path).await;
    assert!(page.contains("Not activated"), "{page}");
    let slots: i64 = pg_admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE $1",
            &[&format!("sluice_{hub}%")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0);
    w.hub.stop();
}
