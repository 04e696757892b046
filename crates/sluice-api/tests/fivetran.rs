//! The Fivetran-compatible `/v1` face end to end: a real hub server on a real socket, a real HTTP
//! client (reqwest), SQLite source and target locations, on the SQLite repository (and the
//! dagster flow also on PostgreSQL: a fresh database per test on `$SLUICE_TEST_PG`, default
//! `postgres://postgres@127.0.0.1:5432`; unreachable → the test fails).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_model::AccessLevel;
use sluice_test_support::{TestHub, TestRepository};

const ORDERS: usize = 100_000;

/// A hub server over a repository, with SQLite locations in `dir`:
/// * `h.c`: src → tgt, channel tables `orders` (ORDERS rows) and `items`; the source also has
///   `customers`, not in the channel.
/// * `h.c2`, `h.c3`: more connectors (for pagination), `h.multi`: three groups (not a connector),
///   `h.broken`: a source that cannot be opened.
struct Server {
    hub: TestHub,
    dir: PathBuf,
    http: reqwest::Client,
    /// `(key, secret)` per level.
    keys: Vec<(AccessLevel, String, String)>,
}

fn write_sources(dir: &Path) {
    let src = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    src.execute_batch(&format!(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT, secret TEXT);
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT {ORDERS})
         INSERT INTO orders SELECT x, 'item ' || x, 'secret ' || x FROM n;
         CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO items VALUES (1, 'apple'), (2, 'pear');
         CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO customers VALUES (1, 'ann');"
    ))
    .unwrap();
    for name in ["tgt.db", "tgt2.db", "x.db"] {
        rusqlite::Connection::open(dir.join(name)).unwrap();
    }
    std::fs::write(
        dir.join("defs.yaml"),
        "hub: h\nlocations:\n\
         \x20 src: {class: sqlite, props: {Database_Name: src.db}}\n\
         \x20 tgt: {class: sqlite, props: {Database_Name: tgt.db}}\n\
         \x20 tgt2: {class: sqlite, props: {Database_Name: tgt2.db}}\n\
         \x20 x: {class: sqlite, props: {Database_Name: x.db}}\n\
         \x20 gone: {class: sqlite, props: {Database_Name: no/such/dir/gone.db}}\n\
         channels:\n\
         \x20 c:\n    loc_groups: {SOURCE: [src], TARGET: [tgt]}\n    tables: {orders: {}, items: {}}\n\
         \x20 c2:\n    loc_groups: {SOURCE: [src], TARGET: [tgt2]}\n    tables: {items: {}}\n\
         \x20 c3:\n    loc_groups: {SOURCE: [src], TARGET: [x]}\n    tables: {items: {}}\n\
         \x20 multi:\n    loc_groups: {SOURCE: [src], TARGET: [tgt], MORE: [x]}\n    tables: {items: {}}\n\
         \x20 broken:\n    loc_groups: {SOURCE: [gone], TARGET: [x]}\n    tables: {items: {}}\n",
    )
    .unwrap();
}

async fn start(pg: bool) -> Server {
    let repository = if pg {
        TestRepository::postgres("sluice_ft_test_").await
    } else {
        TestRepository::sqlite()
    };
    let dir = repository.dir().to_path_buf();
    write_sources(&dir);
    let config = TestHub::config(&repository);
    let hub = TestHub::serve(repository, config).await;
    let service = hub.service();
    service
        .apply_file(&dir.join("defs.yaml"), None)
        .await
        .unwrap();
    let mut keys = Vec::new();
    for level in [
        AccessLevel::ReadOnly,
        AccessLevel::ReadExecRefresh,
        AccessLevel::ReadWrite,
        AccessLevel::SysAdmin,
    ] {
        let (k, secret) = service.create_api_key(level, "test").await.unwrap();
        keys.push((level, k.key, secret));
    }
    Server {
        hub,
        dir,
        http: reqwest::Client::new(),
        keys,
    }
}

struct Answer {
    status: StatusCode,
    content_type: String,
    json: Value,
}

impl Answer {
    fn expect(self, status: StatusCode) -> Answer {
        assert_eq!(self.status, status, "body: {}", self.json);
        assert!(
            self.content_type.starts_with("application/json"),
            "content type {:?}",
            self.content_type
        );
        self
    }

    fn data(&self) -> &Value {
        &self.json["data"]
    }
}

impl Server {
    fn auth(&self, level: AccessLevel) -> String {
        let (_, key, secret) = self.keys.iter().find(|(l, _, _)| *l == level).unwrap();
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"))
        )
    }

    /// A request as the `level` key (`None`: no Authorization header).
    async fn raw(
        &self,
        method: &str,
        path: &str,
        auth: Option<String>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self
            .http
            .request(
                method.parse().unwrap(),
                format!("{}{path}", self.hub.base()),
            )
            // dagster sends this on every request, with or without a body.
            .header("Content-Type", "application/json;version=2")
            .header("Accept", "application/json;version=2");
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text:?}"));
        Answer {
            status,
            content_type,
            json,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.raw(method, path, Some(self.auth(AccessLevel::SysAdmin)), body)
            .await
    }

    async fn connector(&self, id: &str) -> Value {
        self.call("GET", &format!("/v1/connectors/{id}"), None)
            .await
            .expect(StatusCode::OK)
            .data()
            .clone()
    }

    /// Polls until `succeeded_at` or `failed_at` is later than `after` and the sync is over.
    async fn wait_synced(&self, id: &str, after: &Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let c = self.connector(id).await;
            let moved = |field: &str| {
                c[field].is_string() && (after.is_null() || c[field].as_str() > after.as_str())
            };
            if moved("succeeded_at") || moved("failed_at") {
                assert_ne!(
                    c["status"]["sync_state"], "syncing",
                    "the sync ended in the same change that moved succeeded_at: {c}"
                );
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "connector {id} never synced: {c}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn last_end(c: &Value) -> Value {
        let (s, f) = (c["succeeded_at"].as_str(), c["failed_at"].as_str());
        match (s, f) {
            (Some(s), Some(f)) => Value::from(s.max(f)),
            (Some(x), None) | (None, Some(x)) => Value::from(x),
            (None, None) => Value::Null,
        }
    }

    fn query_i64(&self, db: &str, sql: &str) -> i64 {
        rusqlite::Connection::open(self.dir.join(db))
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    }
}

fn is_timestamp(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == "2024-01-01T00:00:00.000000Z".len()
            && s.ends_with('Z')
            && chrono::DateTime::parse_from_rfc3339(s).is_ok()
    })
}

/// dagster's `sync_and_poll`: PATCH manual, POST /force with an empty body, poll until
/// `succeeded_at` moves; the target equals the source.
async fn scheduler_client_flow(pg: bool) {
    let s = start(pg).await;
    let c = s.connector("h.c").await;
    for key in [
        "id", "schema", "service", "group_id", "paused", "status", "config",
    ] {
        assert!(!c[key].is_null(), "{key} in {c}");
    }
    assert_eq!(c["id"], "h.c");
    assert_eq!(c["group_id"], "h");
    assert_eq!(c["service"], "sqlite");
    assert_eq!(c["schema"], "c");
    assert!(c["succeeded_at"].is_null() && c.get("failed_at").is_some());
    assert!(is_timestamp(&c["created_at"]), "{c}");
    assert_eq!(c["status"]["sync_state"], "scheduled");
    assert_eq!(c["status"]["setup_state"], "connected");
    assert_eq!(
        c["config"]["database"],
        s.dir.join("tgt.db").display().to_string()
    );

    let patched = s
        .call(
            "PATCH",
            "/v1/connectors/h.c",
            Some(json!({"schedule_type": "manual", "unknown_field": 1})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(patched.json["code"], "Success");
    assert_eq!(patched.json["message"], "Connector has been updated");
    assert_eq!(patched.data()["schedule_type"], "manual");

    let schemas = s
        .call("GET", "/v1/connectors/h.c/schemas", None)
        .await
        .expect(StatusCode::OK);
    let main = &schemas.data()["schemas"]["main"];
    assert_eq!(main["enabled"], true);
    assert_eq!(main["tables"]["orders"]["enabled"], true);
    assert_eq!(main["tables"]["orders"]["name_in_destination"], "orders");
    assert_eq!(main["tables"]["customers"]["enabled"], false);

    // Body-less POST with a versioned JSON content type and no Content-Length (an empty chunked
    // body, as `requests` sends it for data=None through some proxies).
    let resp = s
        .http
        .post(format!("{}/v1/connectors/h.c/force", s.hub.base()))
        .header("Content-Type", "application/json;version=2")
        .header("Authorization", s.auth(AccessLevel::ReadExecRefresh))
        .body(reqwest::Body::wrap_stream(futures::stream::empty::<
            Result<Vec<u8>, std::io::Error>,
        >()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let forced = Answer {
        status: StatusCode::OK,
        content_type: "application/json".into(),
        json: resp.json().await.unwrap(),
    };
    assert_eq!(
        forced.json,
        json!({"code": "Success", "message": "Sync has been successfully triggered for connector with id 'h.c'"})
    );
    assert!(forced.json.get("data").is_none());
    let during = s.connector("h.c").await;
    assert_eq!(during["status"]["sync_state"], "syncing", "{during}");
    assert!(during["succeeded_at"].is_null(), "{during}");
    let done = s.wait_synced("h.c", &Value::Null).await;
    assert!(is_timestamp(&done["succeeded_at"]), "{done}");
    assert_eq!(done["status"]["sync_state"], "scheduled");
    assert_eq!(
        s.query_i64("tgt.db", "SELECT count(*) FROM orders"),
        ORDERS as i64
    );
    for sql in [
        "SELECT sum(id) + sum(length(item)) + sum(length(secret)) FROM orders",
        "SELECT count(*) FROM items",
    ] {
        assert_eq!(
            s.query_i64("src.db", sql),
            s.query_i64("tgt.db", sql),
            "{sql}"
        );
    }

    // A second sync moves succeeded_at strictly.
    let before = Server::last_end(&done);
    s.call(
        "POST",
        "/v1/connections/h.c/sync",
        Some(json!({"force": false})),
    )
    .await
    .expect(StatusCode::OK);
    let again = s.wait_synced("h.c", &before).await;
    assert!(again["succeeded_at"].as_str() > before.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_client_flow_sqlite() {
    scheduler_client_flow(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_client_flow_postgres() {
    scheduler_client_flow(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_levels() {
    let s = start(false).await;
    let none = s.raw("GET", "/v1/connectors/h.c", None, None).await;
    let none = none.expect(StatusCode::UNAUTHORIZED);
    assert_eq!(none.json["code"], "AuthFailed");
    assert!(none.json["message"].as_str().unwrap().contains("Basic"));
    let (_, key, _) = &s.keys[0];
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:not-the-secret"))
    );
    s.raw("GET", "/v1/connectors/h.c", Some(wrong), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    let unknown = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("nokey:nosecret")
    );
    s.raw("GET", "/v1/groups", Some(unknown), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    s.raw("GET", "/v1/groups", Some("Bearer abc".into()), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);

    let ro = s.auth(AccessLevel::ReadOnly);
    s.raw("GET", "/v1/connectors/h.c", Some(ro.clone()), None)
        .await
        .expect(StatusCode::OK);
    for (method, path) in [
        ("POST", "/v1/connectors/h.c/force"),
        ("POST", "/v1/connectors/h.c/sync"),
        ("POST", "/v1/connectors/h.c/resync"),
        ("PATCH", "/v1/connectors/h.c"),
        ("PATCH", "/v1/connectors/h.c/schemas"),
        ("POST", "/v1/connectors/h.c/schemas/reload"),
    ] {
        let a = s
            .raw(method, path, Some(ro.clone()), Some(json!({})))
            .await
            .expect(StatusCode::FORBIDDEN);
        assert_eq!(a.json["code"], "Forbidden", "{method} {path}");
    }
    // Refresh rights may sync but not change settings.
    let rer = s.auth(AccessLevel::ReadExecRefresh);
    s.raw(
        "PATCH",
        "/v1/connectors/h.c",
        Some(rer),
        Some(json!({"paused": true})),
    )
    .await
    .expect(StatusCode::FORBIDDEN);
    assert_eq!(s.connector("h.c").await["paused"], false);
    // E21: airflow's connection test.
    let users = s
        .raw(
            "GET",
            "/v1/users",
            Some(s.auth(AccessLevel::ReadOnly)),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(users.json["code"], "Success");
    let users = s
        .call("GET", "/v1/users", None)
        .await
        .expect(StatusCode::OK);
    assert!(users.data()["items"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_paginate_with_both_cursor_names_and_trailing_slashes() {
    let s = start(false).await;
    let first = s
        .call("GET", "/v1/connectors?limit=2", None)
        .await
        .expect(StatusCode::OK);
    let items = first.data()["items"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["h.broken", "h.c"], "multi is not a connector");
    let cursor = first.data()["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(first.data()["nextCursor"], first.data()["next_cursor"]);
    let second = s
        .call(
            "GET",
            &format!("/v1/connections?limit=2&cursor={cursor}"),
            None,
        )
        .await
        .expect(StatusCode::OK);
    let ids: Vec<&str> = second.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["h.c2", "h.c3"]);
    assert!(second.data()["next_cursor"].is_null());
    assert!(second.data()["nextCursor"].is_null());

    // airflow: trailing slashes; dagster: limit=1000 and nextCursor.
    let groups = s
        .call("GET", "/v1/groups/", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(groups.data()["items"][0]["id"], "h");
    assert!(is_timestamp(&groups.data()["items"][0]["created_at"]));
    let group = s
        .call("GET", "/v1/groups/h/", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(group.data()["name"], "h");
    let in_group = s
        .call("GET", "/v1/groups/h/connectors/?limit=1000", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(in_group.data()["items"].as_array().unwrap().len(), 4);
    assert!(in_group.data()["nextCursor"].is_null());
    let by_schema = s
        .call("GET", "/v1/groups/h/connections?schema=c2", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(by_schema.data()["items"][0]["id"], "h.c2");
    let filtered = s
        .call("GET", "/v1/connectors?group_id=h&limit=1", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(filtered.data()["items"].as_array().unwrap().len(), 1);
    s.call("GET", "/v1/connectors/h.c/", None)
        .await
        .expect(StatusCode::OK);
    for bad in ["limit=0", "limit=1001", "limit=x", "cursor=%25%25"] {
        let a = s
            .call("GET", &format!("/v1/connectors?{bad}"), None)
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert_eq!(a.json["code"], "InvalidInput", "{bad}");
    }
    let dest = s
        .call("GET", "/v1/destinations/h", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(dest.data()["id"], "h");
    assert_eq!(dest.data()["service"], "sqlite");
    assert!(dest.data()["config"]["database"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_and_bad_input_envelopes_change_nothing() {
    let s = start(false).await;
    for (path, code) in [
        ("/v1/connectors/h.nope", "NotFound_Connector"),
        ("/v1/connectors/garbage", "NotFound_Connector"),
        ("/v1/connectors/h.multi", "NotFound_Connector"),
        ("/v1/connections/nohub.c", "NotFound_Connector"),
        ("/v1/groups/nohub", "NotFound_Group"),
        ("/v1/groups/nohub/connectors", "NotFound_Group"),
        ("/v1/destinations/nohub", "NotFound_Destination"),
        (
            "/v1/connectors/h.c/schemas/main/tables/nope/columns",
            "NotFound_Table",
        ),
        ("/v1/no/such/route", "NotFound_Route"),
    ] {
        let a = s
            .call("GET", path, None)
            .await
            .expect(StatusCode::NOT_FOUND);
        assert_eq!(a.json["code"], code, "{path}");
        assert!(a.json["message"].is_string(), "{path}");
    }
    let multi = s.call("GET", "/v1/connectors/h.multi", None).await;
    assert!(
        multi.json["message"]
            .as_str()
            .unwrap()
            .contains("location groups"),
        "{}",
        multi.json
    );
    for (path, body) in [
        ("/v1/connectors/h.c/schemas/nope", json!({"enabled": false})),
        (
            "/v1/connectors/h.c/schemas/main/tables/nope",
            json!({"enabled": false}),
        ),
        (
            "/v1/connectors/h.c/schemas/main/tables/orders",
            json!({"columns": {"nope": {"enabled": false}}}),
        ),
    ] {
        s.call("PATCH", path, Some(body))
            .await
            .expect(StatusCode::NOT_FOUND);
    }
    s.call(
        "POST",
        "/v1/connectors/h.c/schemas/tables/resync",
        Some(json!({"main": ["nope"]})),
    )
    .await
    .expect(StatusCode::NOT_FOUND);

    let before = s.connector("h.c").await;
    for body in [
        json!({"sync_frequency": 7}),
        json!({"schedule_type": "sometimes"}),
        json!({"daily_sync_time": "25:00"}),
        json!({"paused": "maybe"}),
        json!({"paused": true, "sync_frequency": 7}),
    ] {
        let a = s
            .call("PATCH", "/v1/connectors/h.c", Some(body.clone()))
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert_eq!(a.json["code"], "InvalidInput", "{body}");
        assert!(!a.json["message"].as_str().unwrap().is_empty());
    }
    let after = s.connector("h.c").await;
    assert_eq!(before, after, "a refused PATCH changes nothing");
    let a = s
        .raw(
            "POST",
            "/v1/connectors/h.c/sync",
            Some(s.auth(AccessLevel::SysAdmin)),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    s.call(
        "PATCH",
        "/v1/connectors/h.c/schemas",
        Some(json!({"schema_change_handling": "SOMETIMES"})),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);
    s.call(
        "POST",
        "/v1/connectors/h.c/schemas/reload",
        Some(json!({"exclude_mode": "ALL"})),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);
    let a = s
        .call(
            "POST",
            "/v1/connectors/h.c/sync",
            Some(json!("not an object")),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = s.call("DELETE", "/v1/connectors/h.c", None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_schedule_and_the_scheduler() {
    let s = start(false).await;
    let paused = s
        .call(
            "PATCH",
            "/v1/connectors/h.c2",
            Some(json!({"paused": true})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(paused.data()["paused"], true);
    assert_eq!(paused.data()["status"]["sync_state"], "paused");
    let refused = s
        .call("POST", "/v1/connectors/h.c2/force", None)
        .await
        .expect(StatusCode::CONFLICT);
    assert!(refused.json["message"].as_str().unwrap().contains("paused"));
    let resumed = s
        .call(
            "PATCH",
            "/v1/connectors/h.c2",
            Some(json!({"paused": false})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(resumed.data()["status"]["sync_state"], "scheduled");
    // Every change is audited, naming the key.
    let audit = s
        .hub
        .service()
        .events(&sluice_repo::EventFilter {
            hub: Some("h".parse().unwrap()),
            types: vec![sluice_model::EventType::ConnectorChange],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit[0].user.starts_with("apikey:sk"), "{}", audit[0].user);
    assert_eq!(audit[0].channel.as_ref().unwrap().as_str(), "c2");

    // The scheduler starts a due auto connector (never synced: due at once) and leaves manual
    // ones alone.
    let auto = s
        .call(
            "PATCH",
            "/v1/connectors/h.c2",
            Some(json!({"schedule_type": "auto", "sync_frequency": 1440, "daily_sync_time": "00:00"})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(auto.data()["sync_frequency"], 1440);
    assert_eq!(auto.data()["daily_sync_time"], "00:00");
    let synced = s.wait_synced("h.c2", &Value::Null).await;
    assert!(synced["succeeded_at"].is_string(), "{synced}");
    assert_eq!(s.query_i64("tgt2.db", "SELECT count(*) FROM items"), 2);
    // Synced today after 00:00: not due again.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        s.connector("h.c2").await["succeeded_at"],
        synced["succeeded_at"]
    );
    // Manual connectors never start on their own.
    assert!(s.connector("h.c3").await["succeeded_at"].is_null());
    // A paused auto connector is not started either.
    s.call(
        "PATCH",
        "/v1/connectors/h.c3",
        Some(json!({"schedule_type": "auto", "sync_frequency": 5, "paused": true})),
    )
    .await
    .expect(StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(s.connector("h.c3").await["succeeded_at"].is_null());
    s.call(
        "PATCH",
        "/v1/connectors/h.c3",
        Some(json!({"paused": false})),
    )
    .await
    .expect(StatusCode::OK);
    s.wait_synced("h.c3", &Value::Null).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_force_replaces_a_running_sync_and_plain_sync_keeps_it() {
    let s = start(false).await;
    let refresh_events = || async {
        s.hub
            .service()
            .events(&sluice_repo::EventFilter {
                hub: Some("h".parse().unwrap()),
                types: vec![sluice_model::EventType::Refresh],
                ..Default::default()
            })
            .await
            .unwrap()
    };
    s.call(
        "POST",
        "/v1/connectors/h.c/sync",
        Some(json!({"force": true})),
    )
    .await
    .expect(StatusCode::OK);
    let running = s.connector("h.c").await;
    assert_eq!(running["status"]["sync_state"], "syncing", "{running}");
    let kept = s
        .call(
            "POST",
            "/v1/connectors/h.c/sync",
            Some(json!({"force": false})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        kept.json["message"],
        "Sync is already running for connector with id 'h.c'"
    );
    assert_eq!(refresh_events().await.len(), 1, "nothing new was started");
    s.call(
        "POST",
        "/v1/connectors/h.c/sync",
        Some(json!({"force": true})),
    )
    .await
    .expect(StatusCode::OK);
    // The forced sync is the newest event; wait for its end.
    let deadline = Instant::now() + Duration::from_secs(60);
    while refresh_events().await[0].state == sluice_model::EventState::Active {
        assert!(Instant::now() < deadline, "the forced sync never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = s.connector("h.c").await;
    assert!(done["succeeded_at"].is_string(), "{done}");
    assert_ne!(done["status"]["sync_state"], "syncing", "{done}");
    let events = refresh_events().await;
    let states: Vec<_> = events.iter().map(|e| (e.state, e.canceled)).collect();
    // The replaced sync was cancelled: CANCELED, or FAILED when a table of it had committed
    // before the cancel (never CANCELED with a committed table). Had a table of it been
    // committing, the cancel was too late: it ended DONE and the forced sync ran after it.
    assert!(
        matches!(
            states.as_slice(),
            [
                (sluice_model::EventState::Done, false),
                (
                    sluice_model::EventState::Canceled | sluice_model::EventState::Failed,
                    true
                ) | (sluice_model::EventState::Done, false)
            ]
        ),
        "the forced sync replaced the running one (newest first): {states:?}"
    );
    assert!(
        done["failed_at"].is_null(),
        "a cancelled sync is not a failure"
    );
    assert_eq!(
        s.query_i64("tgt.db", "SELECT count(*) FROM orders"),
        ORDERS as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_config_resyncs_and_reload() {
    let s = start(false).await;
    // A disabled table is not synced; a disabled column is not copied.
    let patched = s
        .call(
            "PATCH",
            "/v1/connectors/h.c/schemas/main/tables/orders",
            Some(json!({"enabled": false, "sync_mode": "LIVE"})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        patched.data()["schemas"]["main"]["tables"]["orders"]["enabled"],
        false
    );
    s.call("POST", "/v1/connectors/h.c/force", None)
        .await
        .expect(StatusCode::OK);
    let first = s.wait_synced("h.c", &Value::Null).await;
    let exists = "SELECT count(*) FROM sqlite_master WHERE name = 'orders'";
    assert_eq!(
        s.query_i64("tgt.db", exists),
        0,
        "disabled table not synced"
    );
    assert_eq!(s.query_i64("tgt.db", "SELECT count(*) FROM items"), 2);

    s.call(
        "PATCH",
        "/v1/connectors/h.c/schemas",
        Some(json!({"schemas": {"main": {"tables": {"orders": {"enabled": true, "columns": {"secret": {"enabled": false}}}}}}})),
    )
    .await
    .expect(StatusCode::OK);
    let cols = s
        .call(
            "GET",
            "/v1/connections/h.c/schemas/main/tables/orders/columns",
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(cols.data()["columns"]["secret"]["enabled"], false);
    assert_eq!(cols.data()["columns"]["id"]["is_primary_key"], true);
    assert_eq!(
        cols.data()["columns"]["id"]["enabled_patch_settings"]["allowed"],
        false
    );

    // Historical resync: every enabled table, in full.
    s.call("POST", "/v1/connectors/h.c/resync", None)
        .await
        .expect(StatusCode::OK);
    let during = s.connector("h.c").await;
    assert_eq!(during["status"]["sync_state"], "syncing", "{during}");
    assert_eq!(during["status"]["is_historical_sync"], true, "{during}");
    let second = s.wait_synced("h.c", &Server::last_end(&first)).await;
    assert_eq!(
        s.query_i64("tgt.db", "SELECT count(*) FROM orders"),
        ORDERS as i64
    );
    assert_eq!(
        s.query_i64(
            "tgt.db",
            "SELECT count(*) FROM pragma_table_info('orders') WHERE name = 'secret'"
        ),
        0,
        "a disabled column is not copied"
    );

    // Table resync (E6 and E7): only those tables, in full.
    let src = rusqlite::Connection::open(s.dir.join("src.db")).unwrap();
    src.execute_batch("INSERT INTO items VALUES (3, 'plum'); DELETE FROM orders WHERE id > 10;")
        .unwrap();
    s.call(
        "POST",
        "/v1/connectors/h.c/schemas/tables/resync",
        Some(json!({"main": ["items"]})),
    )
    .await
    .expect(StatusCode::OK);
    let third = s.wait_synced("h.c", &Server::last_end(&second)).await;
    assert_eq!(s.query_i64("tgt.db", "SELECT count(*) FROM items"), 3);
    assert_eq!(
        s.query_i64("tgt.db", "SELECT count(*) FROM orders"),
        ORDERS as i64,
        "orders was not part of the table resync"
    );
    s.call(
        "POST",
        "/v1/connectors/h.c/schemas/main/tables/orders/resync",
        None,
    )
    .await
    .expect(StatusCode::OK);
    s.wait_synced("h.c", &Server::last_end(&third)).await;
    assert_eq!(s.query_i64("tgt.db", "SELECT count(*) FROM orders"), 10);

    // Resync of a disabled table is refused.
    s.call(
        "PATCH",
        "/v1/connectors/h.c/schemas/main",
        Some(json!({"tables": {"items": {"enabled": false}}})),
    )
    .await
    .expect(StatusCode::OK);
    s.call(
        "POST",
        "/v1/connectors/h.c/schemas/main/tables/items/resync",
        None,
    )
    .await
    .expect(StatusCode::BAD_REQUEST);

    // Reload: EXCLUDE leaves new tables disabled, INCLUDE adds them to the channel, PRESERVE
    // follows schema_change_handling.
    src.execute_batch("CREATE TABLE new1 (id INTEGER PRIMARY KEY);")
        .unwrap();
    let r = s
        .call(
            "POST",
            "/v1/connectors/h.c/schemas/reload",
            Some(json!({"exclude_mode": "EXCLUDE"})),
        )
        .await
        .expect(StatusCode::OK);
    let tables = &r.data()["schemas"]["main"]["tables"];
    assert_eq!(tables["new1"]["enabled"], false);
    assert_eq!(tables["items"]["enabled"], false, "kept as configured");
    src.execute_batch("CREATE TABLE new2 (id INTEGER PRIMARY KEY);")
        .unwrap();
    let r = s
        .call(
            "POST",
            "/v1/connectors/h.c/schemas/reload",
            Some(json!({"exclude_mode": "INCLUDE"})),
        )
        .await
        .expect(StatusCode::OK);
    let tables = &r.data()["schemas"]["main"]["tables"];
    assert_eq!(tables["new2"]["enabled"], true);
    assert_eq!(tables["new1"]["enabled"], false);
    s.call(
        "PATCH",
        "/v1/connectors/h.c/schemas",
        Some(json!({"schema_change_handling": "BLOCK_ALL"})),
    )
    .await
    .expect(StatusCode::OK);
    src.execute_batch("CREATE TABLE new3 (id INTEGER PRIMARY KEY);")
        .unwrap();
    let r = s
        .call("POST", "/v1/connectors/h.c/schemas/reload", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        r.data()["schemas"]["main"]["tables"]["new3"]["enabled"],
        false
    );
    assert_eq!(r.data()["schema_change_handling"], "BLOCK_ALL");
    // The channel now has new2 (added through the definition edit path).
    let hvr_tables = s.connector("h.c").await;
    assert_eq!(hvr_tables["id"], "h.c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_tests_fill_setup_tests_and_state() {
    let s = start(false).await;
    let ok = s
        .call(
            "POST",
            "/v1/connectors/h.c/test",
            Some(json!({"trust_certificates": true})),
        )
        .await
        .expect(StatusCode::OK);
    let tests = ok.data()["setup_tests"].as_array().unwrap();
    assert_eq!(tests.len(), 2);
    assert!(tests.iter().all(|t| t["status"] == "PASSED"), "{tests:?}");
    assert_eq!(ok.data()["status"]["setup_state"], "connected");
    let broken = s
        .call("POST", "/v1/connectors/h.broken/test", None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(broken.data()["status"]["setup_state"], "broken");
    let tests = broken.data()["setup_tests"].as_array().unwrap();
    assert_eq!(tests[0]["status"], "FAILED");
    assert!(tests[0]["message"].as_str().unwrap().len() > 3);
    assert_eq!(tests[1]["status"], "PASSED");
    assert_eq!(
        s.connector("h.broken").await["status"]["setup_state"],
        "broken"
    );
    // A sync of a connector whose source is down starts, fails, and moves failed_at.
    s.call("POST", "/v1/connectors/h.broken/force", None)
        .await
        .expect(StatusCode::OK);
    let failed = s.wait_synced("h.broken", &Value::Null).await;
    assert!(is_timestamp(&failed["failed_at"]), "{failed}");
    assert!(failed["succeeded_at"].is_null(), "{failed}");
    assert_eq!(failed["status"]["sync_state"], "scheduled");
}

/// Waits up to 60 s for `event` to end, and asserts it ended DONE.
async fn wait_done(
    service: &sluice_service::HubService,
    hub: &sluice_model::HubName,
    event: sluice_model::EventId,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let e = service
            .events(&sluice_service::EventFilter {
                hub: Some(hub.clone()),
                ids: vec![event],
                ..Default::default()
            })
            .await
            .unwrap();
        if e[0].state != sluice_model::EventState::Active {
            assert_eq!(
                e[0].state,
                sluice_model::EventState::Done,
                "{what}: {:?}",
                e[0].response
            );
            return;
        }
        assert!(Instant::now() < deadline, "{what} still running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `/v1` connector whose channel is activated (PostgreSQL source and target, replicated by the
/// hub server's own supervisor): a sync applies captured changes instead of copying. It ends
/// once every change committed before it began is at the target, moves `succeeded_at`, reports
/// no rows copied (where a copying sync reports every source row), and a suspended replication
/// fails it with why; a historical resync still copies in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_of_an_activated_connector_applies_changes_and_copies_nothing() {
    use sluice_model::{ChannelName, EventState, EventType, HubName};
    use sluice_service::replication::ActivateCommand;

    let db = sluice_test_support::TestDatabase::create("sluice_ft_cdc_").await;
    let (source, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    source
        .batch_execute(
            "CREATE SCHEMA src; CREATE SCHEMA dst;
             CREATE TABLE src.items (id bigint PRIMARY KEY, name text NOT NULL);
             INSERT INTO src.items SELECT i, 'item ' || i FROM generate_series(1, 1000) i;",
        )
        .await
        .unwrap();
    let repository = TestRepository::sqlite();
    let dir = repository.dir().to_path_buf();
    let loc = |schema: &str| {
        format!(
            "{{class: postgresql, props: {{Database_Host: 127.0.0.1, Database_Port: 5432, Database_Name: {}, \
             Database_User: postgres, Database_Schema: {schema}, Database_Sslmode: disable}}}}",
            db.name
        )
    };
    let hub_name = format!("h{}", &db.name[db.name.len() - 8..]);
    std::fs::write(
        dir.join("defs.yaml"),
        format!(
            "hub: {hub_name}\nlocations:\n  src: {}\n  dst: {}\nchannels:\n  c:\n    loc_groups: {{SOURCE: [src], TARGET: [dst]}}\n    \
             tables: {{items: {{}}}}\n    actions: [{{type: Capture, loc_scope: SOURCE}}, {{type: Integrate, loc_scope: TARGET}}]\n",
            loc("src"),
            loc("dst")
        ),
    )
    .unwrap();
    let config = TestHub::config(&repository);
    let hub = TestHub::serve(repository, config).await;
    let service = hub.service().clone();
    service
        .apply_file(&dir.join("defs.yaml"), None)
        .await
        .unwrap();
    let (k, secret) = service
        .create_api_key(AccessLevel::SysAdmin, "test")
        .await
        .unwrap();
    let s = Server {
        hub,
        dir,
        http: reqwest::Client::new(),
        keys: vec![(AccessLevel::SysAdmin, k.key, secret)],
    };
    let h = HubName::new(&hub_name).unwrap();
    let c = ChannelName::new("c").unwrap();
    let id = format!("{hub_name}.c");
    let count = || async {
        source
            .query_one("SELECT count(*) FROM dst.items", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(-1)
    };
    let sync_events = || async {
        service
            .events(&sluice_service::EventFilter {
                hub: Some(h.clone()),
                types: vec![EventType::Refresh],
                fetch_results: true,
                ..Default::default()
            })
            .await
            .unwrap()
    };
    let copied = |e: &sluice_service::EventRecord| -> i64 {
        e.results
            .iter()
            .filter(|r| r.name.as_str() == "Source_Rows_Used")
            .map(|r| r.value.parse::<i64>().unwrap())
            .sum()
    };

    // Before activation a sync copies: every source row is reported.
    s.call(
        "POST",
        &format!("/v1/connectors/{id}/sync"),
        Some(json!({})),
    )
    .await
    .expect(StatusCode::OK);
    let first = s.wait_synced(&id, &Value::Null).await;
    assert!(first["succeeded_at"].is_string(), "{first}");
    assert_eq!(copied(&sync_events().await[0]), 1000);

    let posted = service
        .activate(ActivateCommand {
            hub: h.clone(),
            channel: c.clone(),
            refresh: false,
            refresh_events: vec![],
            start: true,
        })
        .await
        .unwrap();
    wait_done(&service, &h, posted.event, "activation").await;
    // The hub server's supervisor runs the replication.
    service
        .wait_caught_up(
            &h,
            &c,
            &service.source_position(&h, &c).await.unwrap(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();

    // Changes at the source, then a sync: it ends once they are at the target.
    source
        .batch_execute(
            "INSERT INTO src.items SELECT i, 'new ' || i FROM generate_series(1001, 1500) i;
             DELETE FROM src.items WHERE id <= 10;",
        )
        .await
        .unwrap();
    let before = Server::last_end(&first);
    let started = Instant::now();
    s.call(
        "POST",
        &format!("/v1/connectors/{id}/sync"),
        Some(json!({})),
    )
    .await
    .expect(StatusCode::OK);
    let during = s.connector(&id).await;
    let done = s.wait_synced(&id, &before).await;
    let took = started.elapsed();
    eprintln!("sync by change capture took {took:?}");
    assert!(
        done["succeeded_at"].as_str() > before.as_str(),
        "{done} (during: {during})"
    );
    assert_eq!(done["status"]["sync_state"], "scheduled");
    assert_eq!(
        count().await,
        1490,
        "the changes before the sync are at the target"
    );
    let events = sync_events().await;
    let cdc = &events[0];
    assert_eq!(cdc.state, EventState::Done, "{:?}", cdc.response);
    assert_eq!(cdc.body["connector"]["change_capture"], true);
    assert_eq!(copied(cdc), 0, "nothing copied: {:?}", cdc.results);
    assert!(
        cdc.response
            .as_deref()
            .unwrap_or_default()
            .contains("no rows copied"),
        "{:?}",
        cdc.response
    );

    // Another sync moves succeeded_at again.
    let before = Server::last_end(&done);
    s.call(
        "POST",
        &format!("/v1/connectors/{id}/sync"),
        Some(json!({})),
    )
    .await
    .expect(StatusCode::OK);
    let again = s.wait_synced(&id, &before).await;
    assert!(again["succeeded_at"].as_str() > before.as_str(), "{again}");

    // A suspended replication fails the sync, saying why.
    service
        .suspend_jobs(&h, &["c-integ-dst".parse().unwrap()])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !service
        .jobs(&h)
        .await
        .unwrap()
        .iter()
        .any(|j| j.name.as_str() == "c-integ-dst" && j.state == sluice_model::JobState::Suspend)
    {
        assert!(Instant::now() < deadline, "c-integ-dst not suspended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = Server::last_end(&again);
    s.call(
        "POST",
        &format!("/v1/connectors/{id}/sync"),
        Some(json!({})),
    )
    .await
    .expect(StatusCode::OK);
    let failed = s.wait_synced(&id, &before).await;
    assert!(failed["failed_at"].as_str() > before.as_str(), "{failed}");
    assert_eq!(failed["succeeded_at"], again["succeeded_at"]);
    let events = sync_events().await;
    assert_eq!(events[0].state, EventState::Failed);
    assert!(
        events[0]
            .response
            .as_deref()
            .unwrap_or_default()
            .contains("job c-integ-dst is suspended"),
        "{:?}",
        events[0].response
    );

    let posted = service.deactivate(&h, &c).await.unwrap();
    wait_done(&service, &h, posted.event, "deactivation").await;
    // Not activated any more: a sync copies again.
    let before = Server::last_end(&failed);
    s.call(
        "POST",
        &format!("/v1/connectors/{id}/sync"),
        Some(json!({})),
    )
    .await
    .expect(StatusCode::OK);
    s.wait_synced(&id, &before).await;
    assert_eq!(copied(&sync_events().await[0]), 1490);
}
