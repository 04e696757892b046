//! `GET /openapi.json` against the handlers: every documented operation reaches a handler, every
//! route of the router is documented, and real answers (bodies, statuses, content types) of
//! representative requests of every tag validate against the documented schemas.
//!
//! The router is called directly (`oneshot`) over a SQLite repository with the event hub running.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use serde_json::{Value, json};
use sluice_model::AccessLevel;
use sluice_test_support::{ADMIN_PASSWORD, TestHub, TestRepository};
use tower::ServiceExt as _;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

struct Fixture {
    state: sluice_api::AppState,
    hub: TestHub,
    doc: Value,
    token: String,
    basic: String,
}

struct Answer {
    status: StatusCode,
    content_type: String,
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
}

enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str),
}

async fn start() -> Fixture {
    let repository = TestRepository::sqlite();
    let config = TestHub::config(&repository);
    let hub = TestHub::open(repository, config).await;
    let service = hub.service();
    let (key, secret) = service
        .create_api_key(AccessLevel::SysAdmin, "openapi test")
        .await
        .unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}", key.key));
    let mut f = Fixture {
        state: hub.state().clone(),
        hub,
        doc: Value::Null,
        token: String::new(),
        basic,
    };
    let doc = f.send("GET", "/openapi.json", Auth::None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    f.doc = doc.json();
    let login = f
        .send(
            "POST",
            "/auth/v1/password",
            Auth::None,
            Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
        )
        .await;
    f.token = login.json()["access_token"].as_str().unwrap().to_owned();
    f
}

impl Fixture {
    async fn send(&self, method: &str, path: &str, auth: Auth<'_>, body: Option<Value>) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        match auth {
            Auth::None => {}
            Auth::Bearer(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
            Auth::Basic(b) => req = req.header(header::AUTHORIZATION, format!("Basic {b}")),
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let response = sluice_api::app(self.state.clone())
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            content_type,
            body,
        }
    }

    /// Sends a request and checks the answer against the document: its status is documented for
    /// the operation at `doc_path`, its content type too, and its body validates against the
    /// schema documented for both.
    async fn check(
        &self,
        method: &str,
        doc_path: &str,
        path: &str,
        body: Option<Value>,
        seen: &mut BTreeSet<String>,
    ) -> Answer {
        let op = &self.doc["paths"][doc_path][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {doc_path} is not documented");
        let auth = match op["security"][0].as_object().and_then(|o| o.keys().next()) {
            Some(s) if s == "bearer" => Auth::Bearer(&self.token),
            Some(s) if s == "basic" => Auth::Basic(&self.basic),
            _ => Auth::None,
        };
        let answer = self.send(method, path, auth, body).await;
        conforms(&self.doc, op, method, path, &answer);
        seen.insert(op["tags"][0].as_str().unwrap().to_owned());
        answer
    }
}

fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Asserts `answer` is what `op` documents.
fn conforms(doc: &Value, op: &Value, method: &str, path: &str, answer: &Answer) {
    let what = format!("{method} {path} → {}", answer.status.as_u16());
    let response = &op["responses"][answer.status.as_u16().to_string()];
    assert!(
        response.is_object(),
        "{what}: status not documented; body: {}",
        answer.text()
    );
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        assert!(
            answer.body.is_empty(),
            "{what}: undocumented body {}",
            answer.text()
        );
        return;
    };
    let (_, media) = content
        .iter()
        .find(|(k, _)| essence(k) == essence(&answer.content_type))
        .unwrap_or_else(|| {
            panic!(
                "{what}: content type {:?} not documented ({:?})",
                answer.content_type,
                content.keys().collect::<Vec<_>>()
            )
        });
    let instance = if essence(&answer.content_type) == "application/json" {
        answer.json()
    } else {
        Value::String(answer.text())
    };
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [media["schema"]],
    });
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{what}: the documented schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: the answer does not match the documented schema:\n  {}\nanswer: {}",
        errors.join("\n  "),
        instance
    );
}

/// A concrete path for a documented one (parameters name nothing that exists).
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "nothing" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether an anonymous request reached a handler (a handler or its extractor answered; not the
/// router's 405 nor a fallback's "no such route").
async fn reaches_handler(f: &Fixture, method: &str, path: &str) -> bool {
    let a = f.send(method, path, Auth::None, None).await;
    let text = a.text();
    a.status != StatusCode::METHOD_NOT_ALLOWED
        && !text.contains("no such route")
        && !text.contains("NotFound_Route")
}

/// Every path the router matches, read from its `Debug` form (axum prints the route table as
/// `RouteId(N): "/path"`).
fn router_paths(f: &Fixture) -> BTreeSet<String> {
    let text = format!("{:?}", sluice_api::router(f.state.clone()));
    let mut paths = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("RouteId(") {
        rest = &rest[at + 8..];
        let Some(close) = rest.find("): \"") else {
            continue;
        };
        if !rest[..close].bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let tail = &rest[close + 4..];
        let end = tail.find('"').unwrap();
        paths.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    paths
}

/// Every documented operation reaches a handler, also under a versioned `/api/vX/…` path, and
/// every route of the router (but the dashboard under `/ui`, the `/v1` catch-all and the `/v1`
/// trailing-slash twins) is a documented operation for each method it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_and_the_router_agree() {
    let f = start().await;
    let paths = f.doc["paths"].as_object().unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            assert!(
                reaches_handler(&f, &method, &concrete(path)).await,
                "documented {method} {path} reaches no handler"
            );
            if let Some(tail) = path.strip_prefix("/api/latest/") {
                let versioned = concrete(&format!("/api/v6.1.0.3/{tail}"));
                assert!(
                    reaches_handler(&f, &method, &versioned).await,
                    "{method} {versioned} reaches no handler"
                );
            }
            documented.insert((method, path.clone()));
        }
    }
    assert!(documented.len() > 120, "{} operations", documented.len());

    let routes = router_paths(&f);
    assert!(
        routes.len() > 100,
        "read {} routes from the router",
        routes.len()
    );
    let mut undocumented = Vec::new();
    for path in &routes {
        // The dashboard is HTML, not API: `/ui…` and `/`, which redirects to it.
        if path == "/" || path.starts_with("/ui") || path.contains("{*") {
            continue;
        }
        if path.starts_with("/v1/") && path.ends_with('/') {
            assert!(routes.contains(path.trim_end_matches('/')), "{path}");
            continue;
        }
        for method in METHODS {
            if reaches_handler(&f, method, &concrete(path)).await
                && !documented.contains(&(method.to_owned(), path.clone()))
            {
                undocumented.push(format!("{method} {path}"));
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "routes not in /openapi.json: {undocumented:#?}"
    );

    // Each operation names its access level; bearer and basic match the faces.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let level = op["x-sluice-access-level"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no x-sluice-access-level"));
            let scheme = op["security"][0]
                .as_object()
                .and_then(|o| o.keys().next().cloned());
            let expected = if level == "anonymous" {
                None
            } else if path.starts_with("/v1/") {
                Some("basic".to_owned())
            } else {
                Some("bearer".to_owned())
            };
            assert_eq!(scheme, expected, "{method} {path} ({level})");
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.as_str() < "400" || path == "/health" {
                    continue;
                }
                let content = response["content"].as_object().unwrap();
                let media = if path.starts_with("/v1/") {
                    "application/json"
                } else {
                    "text/plain; charset=utf-8"
                };
                assert!(content.contains_key(media), "{method} {path} {status}");
            }
        }
    }
}

fn make_source(dir: &std::path::Path) -> String {
    let path = dir.join("src.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, name TEXT NOT NULL, amount REAL);
         INSERT INTO orders VALUES (1, 'one', 1.5), (2, 'two', 3.0), (3, 'three', NULL);",
    )
    .unwrap();
    path.display().to_string()
}

/// Real answers of representative requests of every tag validate against the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_the_documented_schemas() {
    let f = start().await;
    let mut seen = BTreeSet::new();
    let s = &mut seen;
    let src = make_source(f.hub.dir());
    let tgt = f.hub.dir().join("tgt.db").display().to_string();

    // server and auth
    f.check("GET", "/health", "/health", None, s).await;
    f.check("GET", "/metrics", "/metrics", None, s).await;
    f.check("GET", "/api", "/api", None, s).await;
    let login = json!({"username": "admin", "password": ADMIN_PASSWORD, "refresh": "token"});
    let tokens = f
        .check(
            "POST",
            "/auth/v1/password",
            "/auth/v1/password",
            Some(login),
            s,
        )
        .await
        .json();
    let bad = json!({"username": "admin", "password": "wrong password"});
    let a = f
        .check(
            "POST",
            "/auth/v1/password",
            "/auth/v1/password",
            Some(bad),
            s,
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let refresh = json!({"refresh_token": tokens["refresh_token"]});
    f.check(
        "POST",
        "/auth/v1/refresh",
        "/auth/v1/refresh",
        Some(refresh),
        s,
    )
    .await;
    f.check(
        "POST",
        "/auth/v1/revoke",
        "/auth/v1/revoke",
        Some(json!({})),
        s,
    )
    .await;

    // users
    let new_user = json!({"user": "ann", "level": "ReadOnly", "password": "ann-password-1"});
    f.check(
        "POST",
        "/api/latest/users",
        "/api/latest/users",
        Some(new_user),
        s,
    )
    .await;
    f.check("GET", "/api/latest/users", "/api/latest/users", None, s)
        .await;
    f.check(
        "GET",
        "/api/latest/users/{user}",
        "/api/latest/users/ann",
        None,
        s,
    )
    .await;
    let a = f
        .check(
            "GET",
            "/api/latest/users/{user}",
            "/api/latest/users/nobody",
            None,
            s,
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let reset = json!({"new_password": "ann-password-2"});
    f.check(
        "PUT",
        "/api/latest/users/{user}/password",
        "/api/latest/users/ann/password",
        Some(reset),
        s,
    )
    .await;
    let change = json!({"level": "ReadWrite"});
    f.check(
        "PATCH",
        "/api/latest/users/{user}",
        "/api/latest/users/ann",
        Some(change),
        s,
    )
    .await;

    // hubs
    let new_hub = json!({"hub": "h1", "props": {"Description": "openapi"}});
    f.check(
        "POST",
        "/api/latest/hubs",
        "/api/latest/hubs",
        Some(new_hub),
        s,
    )
    .await;
    f.check("GET", "/api/latest/hubs", "/api/latest/hubs", None, s)
        .await;
    f.check(
        "GET",
        "/api/latest/hubs/{hub}",
        "/api/latest/hubs/h1",
        None,
        s,
    )
    .await;
    let props = json!({"Owner": "data team", "Tier": 2});
    f.check(
        "PATCH",
        "/api/latest/hubs/{hub}/props",
        "/api/latest/hubs/h1/props",
        Some(props),
        s,
    )
    .await;
    f.check(
        "GET",
        "/api/latest/hubs/{hub}/props",
        "/api/latest/hubs/h1/props",
        None,
        s,
    )
    .await;
    f.check(
        "GET",
        "/api/latest/hubserver/clock",
        "/api/latest/hubserver/clock",
        None,
        s,
    )
    .await;
    f.check(
        "POST",
        "/api/latest/hubs/{hub}/freeze",
        "/api/latest/hubs/h1/freeze",
        None,
        s,
    )
    .await;
    f.check(
        "GET",
        "/api/latest/hubs/{hub}/query/status",
        "/api/latest/hubs/h1/query/status",
        None,
        s,
    )
    .await;
    f.check(
        "POST",
        "/api/latest/hubs/{hub}/unfreeze",
        "/api/latest/hubs/h1/unfreeze",
        None,
        s,
    )
    .await;

    // definition
    const D: &str = "/api/latest/hubs/{hub}/definition";
    for (loc, path) in [("src", &src), ("tgt", &tgt)] {
        let body = json!({"loc": loc, "props": {"Class": "sqlite", "Database_Name": path}});
        f.check(
            "POST",
            &format!("{D}/locs"),
            "/api/latest/hubs/h1/definition/locs",
            Some(body),
            s,
        )
        .await;
    }
    let channel = json!({
        "channel": "ch1",
        "description": "orders",
        "loc_groups": {"SRC": {"members": ["src"]}, "TGT": ["tgt"]},
        "tables": {"orders": {"cols": {
            "id": {"sequence": 1, "key": 1, "data_type": "number", "attributes": {"prec": 10, "scale": 0, "nullable": false}},
            "name": {"sequence": 2, "data_type": "varchar", "attributes": {"charlen": "100", "nullable": false}},
            "amount": {"sequence": 3, "data_type": "float64"}
        }}},
        "actions": [
            {"type": "Capture", "loc_scope": "SRC"},
            {"type": "Integrate", "loc_scope": "TGT", "params": {}}
        ]
    });
    f.check(
        "POST",
        &format!("{D}/channels"),
        "/api/latest/hubs/h1/definition/channels",
        Some(channel),
        s,
    )
    .await;
    let ch = "/api/latest/hubs/h1/definition/channels/ch1";
    let dc = format!("{D}/channels/{{channel}}");
    for query in ["", "?fetch=tables&fetch=cols&fetch=members&fetch=actions"] {
        f.check(
            "GET",
            &format!("{D}/channels"),
            &format!("/api/latest/hubs/h1/definition/channels{query}"),
            None,
            s,
        )
        .await;
    }
    f.check("GET", &dc, ch, None, s).await;
    f.check(
        "GET",
        &format!("{dc}/tables"),
        &format!("{ch}/tables?fetch=cols"),
        None,
        s,
    )
    .await;
    f.check(
        "GET",
        &format!("{dc}/tables/{{table}}"),
        &format!("{ch}/tables/orders"),
        None,
        s,
    )
    .await;
    f.check(
        "GET",
        &format!("{dc}/tables/{{table}}/cols"),
        &format!("{ch}/tables/orders/cols"),
        None,
        s,
    )
    .await;
    f.check(
        "GET",
        &format!("{dc}/loc_groups"),
        &format!("{ch}/loc_groups"),
        None,
        s,
    )
    .await;
    f.check(
        "GET",
        &format!("{dc}/loc_groups/{{group}}"),
        &format!("{ch}/loc_groups/SRC"),
        None,
        s,
    )
    .await;
    f.check(
        "GET",
        &format!("{dc}/loc_groups/{{group}}/members"),
        &format!("{ch}/loc_groups/TGT/members"),
        None,
        s,
    )
    .await;
    f.check(
        "GET",
        &format!("{dc}/actions"),
        &format!("{ch}/actions"),
        None,
        s,
    )
    .await;
    let patch = json!({"description": "orders of the shop"});
    f.check("PATCH", &dc, ch, Some(patch), s).await;
    let table = json!({"table": "extra", "base_name": "orders"});
    f.check(
        "POST",
        &format!("{dc}/tables"),
        &format!("{ch}/tables"),
        Some(table),
        s,
    )
    .await;
    let gone = json!({"tables": ["extra"]});
    f.check(
        "POST",
        &format!("{dc}/tables_delete"),
        &format!("{ch}/tables_delete"),
        Some(gone),
        s,
    )
    .await;
    for query in ["", "?fetch=loc_props"] {
        f.check(
            "GET",
            &format!("{D}/locs"),
            &format!("/api/latest/hubs/h1/definition/locs{query}"),
            None,
            s,
        )
        .await;
    }
    f.check(
        "GET",
        &format!("{D}/locs/{{loc}}"),
        "/api/latest/hubs/h1/definition/locs/src",
        None,
        s,
    )
    .await;
    f.check(
        "GET",
        &format!("{D}/locs/{{loc}}/props"),
        "/api/latest/hubs/h1/definition/locs/src/props",
        None,
        s,
    )
    .await;
    for query in ["", "?fetch=channels"] {
        f.check(
            "GET",
            D,
            &format!("/api/latest/hubs/h1/definition{query}"),
            None,
            s,
        )
        .await;
    }
    let import = json!({"changes": [{"add_table": {"channel": "ch1", "table": "more", "base_name": "orders"}}]});
    f.check(
        "POST",
        &format!("{D}/import"),
        "/api/latest/hubs/h1/definition/import",
        Some(import),
        s,
    )
    .await;
    let bad = json!({"channel": "ch1", "tables": {}});
    let a = f
        .check(
            "POST",
            &format!("{D}/channels"),
            "/api/latest/hubs/h1/definition/channels",
            Some(bad),
            s,
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    // jobs and events
    const C: &str = "/api/latest/hubs/{hub}/channels/{channel}";
    let run = json!({"source_loc": "src", "target_loc": "tgt", "tables": ["orders"]});
    let mut dry = run.clone();
    dry["dry_run"] = json!(true);
    f.check(
        "POST",
        &format!("{C}/refresh"),
        "/api/latest/hubs/h1/channels/ch1/refresh",
        Some(dry.clone()),
        s,
    )
    .await;
    f.check(
        "POST",
        &format!("{C}/compare"),
        "/api/latest/hubs/h1/channels/ch1/compare",
        Some(dry),
        s,
    )
    .await;
    let posted = f
        .check(
            "POST",
            &format!("{C}/refresh"),
            "/api/latest/hubs/h1/channels/ch1/refresh",
            Some(run.clone()),
            s,
        )
        .await
        .json();
    let ev = posted["posted_ev_id"].as_str().unwrap().to_owned();
    for _ in 0..200 {
        let a = f
            .send(
                "GET",
                &format!("/api/latest/hubs/h1/events?ev_id={ev}"),
                Auth::Bearer(&f.token),
                None,
            )
            .await
            .json();
        if a[&ev]["state"] != "ACTIVE" {
            assert_eq!(a[&ev]["state"], "DONE", "{a}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.check(
        "POST",
        &format!("{C}/compare"),
        "/api/latest/hubs/h1/channels/ch1/compare",
        Some(run),
        s,
    )
    .await;
    // A batch: one compare per matching channel (or its error), and a pattern matching none.
    let batch = f
        .check(
            "POST",
            "/api/latest/hubs/{hub}/batch/compare",
            "/api/latest/hubs/h1/batch/compare",
            Some(json!({"channels": "ch?", "parallel": 1})),
            s,
        )
        .await
        .json();
    assert_eq!(batch["channels"][0]["channel"], "ch1", "{batch}");
    let a = f
        .check(
            "POST",
            "/api/latest/hubs/{hub}/batch/refresh",
            "/api/latest/hubs/h1/batch/refresh",
            Some(json!({"channels": "nothing_*"})),
            s,
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    f.check(
        "POST",
        &format!("{C}/activate"),
        "/api/latest/hubs/h1/channels/ch1/activate",
        None,
        s,
    )
    .await;
    // After a refresh and the activation: a flow with a last run and replication jobs.
    let lineage = f
        .check("GET", "/api/latest/lineage", "/api/latest/lineage", None, s)
        .await
        .json();
    let edge = &lineage["edges"][0];
    assert_eq!(
        (edge["hub"].as_str(), edge["channel"].as_str()),
        (Some("h1"), Some("ch1")),
        "{lineage}"
    );
    assert!(edge["last_run"].is_object(), "{lineage}");
    f.check(
        "GET",
        &format!("{C}/refresh/tables_results_ids"),
        "/api/latest/hubs/h1/channels/ch1/refresh/tables_results_ids",
        None,
        s,
    )
    .await;
    f.check(
        "GET",
        "/api/latest/hubs/{hub}/jobs",
        "/api/latest/hubs/h1/jobs",
        None,
        s,
    )
    .await;
    for query in ["", "?fetch_results=true"] {
        f.check(
            "GET",
            "/api/latest/hubs/{hub}/events",
            &format!("/api/latest/hubs/h1/events{query}"),
            None,
            s,
        )
        .await;
    }
    f.check(
        "GET",
        "/api/latest/hubs/{hub}/events/{ev_id}/log",
        &format!("/api/latest/hubs/h1/events/{ev}/log"),
        None,
        s,
    )
    .await;
    f.check(
        "POST",
        "/api/latest/hubs/{hub}/locs/{loc}/test",
        "/api/latest/hubs/h1/locs/src/test",
        None,
        s,
    )
    .await;
    let props = json!({"props": {"Class": "sqlite", "Database_Name": src}});
    f.check(
        "POST",
        "/api/latest/hubs/{hub}/new_loc/test",
        "/api/latest/hubs/h1/new_loc/test",
        Some(props),
        s,
    )
    .await;

    // database browsing, the query interface, table adapt
    let l = "/api/latest/hubs/{hub}/locs/{loc}";
    let n = "/api/latest/hubs/{hub}/new_loc";
    let new_loc = json!({"props": {"Class": "sqlite", "Database_Name": src}});
    for (method, doc_path, path, body) in [
        (
            "GET",
            format!("{l}/db/schemas"),
            "/api/latest/hubs/h1/locs/src/db/schemas".to_owned(),
            None,
        ),
        (
            "POST",
            format!("{n}/db/schemas"),
            "/api/latest/hubs/h1/new_loc/db/schemas".to_owned(),
            Some(new_loc.clone()),
        ),
        (
            "GET",
            format!("{l}/db/tables"),
            "/api/latest/hubs/h1/locs/src/db/tables".to_owned(),
            None,
        ),
        (
            "POST",
            format!("{n}/db/tables"),
            "/api/latest/hubs/h1/new_loc/db/tables".to_owned(),
            Some(new_loc.clone()),
        ),
        (
            "GET",
            format!("{l}/db/tables/{{table}}/columns"),
            "/api/latest/hubs/h1/locs/src/db/tables/orders/columns".to_owned(),
            None,
        ),
        (
            "POST",
            format!("{n}/db/tables/{{table}}/columns"),
            "/api/latest/hubs/h1/new_loc/db/tables/orders/columns".to_owned(),
            Some(new_loc.clone()),
        ),
        (
            "GET",
            format!("{l}/env/vars"),
            "/api/latest/hubs/h1/locs/src/env/vars?vars=ORACLE_SID".to_owned(),
            None,
        ),
        (
            "GET",
            format!("{l}/env/odbc_drivers"),
            "/api/latest/hubs/h1/locs/src/env/odbc_drivers".to_owned(),
            None,
        ),
        (
            "GET",
            format!("{l}/env/oratab"),
            "/api/latest/hubs/h1/locs/src/env/oratab".to_owned(),
            None,
        ),
        (
            "GET",
            format!("{l}/dirs"),
            "/api/latest/hubs/h1/locs/src/dirs".to_owned(),
            None,
        ),
        (
            "GET",
            "/api/latest/hubs/{hub}/dirs".to_owned(),
            "/api/latest/hubs/h1/dirs".to_owned(),
            None,
        ),
    ] {
        f.check(method, &doc_path, &path, body, s).await;
    }
    let q = "/api/latest/hubs/{hub}/query/channels";
    for (doc_path, path) in [
        (
            q.to_owned(),
            "/api/latest/hubs/h1/query/channels?fetch=tables",
        ),
        (
            format!("{q}/{{channel}}/locs"),
            "/api/latest/hubs/h1/query/channels/ch1/locs?fetch=tables",
        ),
        (
            format!("{q}/{{channel}}/tables"),
            "/api/latest/hubs/h1/query/channels/ch1/tables",
        ),
        (
            format!("{q}/{{channel}}/locs/{{loc}}/tables/{{table}}"),
            "/api/latest/hubs/h1/query/channels/ch1/locs/src/tables/orders",
        ),
    ] {
        f.check("GET", &doc_path, path, None, s).await;
    }
    let a = "/api/latest/hubs/{hub}/channels/{channel}/locs/{loc}/adapt";
    let at = "/api/latest/hubs/h1/channels/ch1/locs/src/adapt";
    for (doc_path, path, body) in [
        (
            format!("{a}/check"),
            format!("{at}/check"),
            json!({"tables_in_channel": {}, "add_tables": true, "fetch_extra": ["db_stats"]}),
        ),
        (
            format!("{a}/check/{{table}}"),
            format!("{at}/check/orders"),
            json!({}),
        ),
        (
            format!("{a}/apply"),
            format!("{at}/apply"),
            json!({"add_tables": true}),
        ),
        (
            format!("{a}/other_channels"),
            format!("{at}/other_channels"),
            json!({"tables": [{"base_name": "orders"}]}),
        ),
        (
            "/api/latest/hubs/{hub}/mapdoc/parse".to_owned(),
            "/api/latest/hubs/h1/mapdoc/parse".to_owned(),
            json!({"mapdoc": "orders"}),
        ),
    ] {
        f.check("POST", &doc_path, &path, Some(body), s).await;
    }
    let cancel = json!({"ev_ids": [ev]});
    let a = f
        .check(
            "POST",
            "/api/latest/hubs/{hub}/events_cancel",
            "/api/latest/hubs/h1/events_cancel",
            Some(cancel),
            s,
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "a finished event cannot be cancelled"
    );

    // event hub
    let topic = json!({"name": "t1", "description": "readings", "retention": {"max_count": 100},
                       "schema": {"type": "object"}});
    f.check("POST", "/topics", "/topics", Some(topic), s).await;
    f.check("GET", "/topics", "/topics", None, s).await;
    f.check("GET", "/topics/{topic}", "/topics/t1", None, s)
        .await;
    let spec = json!({"description": "readings", "schema": {"type": "object"}, "grants": {"read": ["level:ReadOnly"], "publish": ["user:admin"]}});
    f.check("PUT", "/topics/{topic}", "/topics/t1", Some(spec), s)
        .await;
    f.check(
        "GET",
        "/topics/{topic}/schemas",
        "/topics/t1/schemas",
        None,
        s,
    )
    .await;
    let one = json!({"topic": "t1", "routing_key": "a.b", "payload": {"x": 1}, "id": "e1"});
    f.check("POST", "/events", "/events", Some(one.clone()), s)
        .await;
    let again = f.check("POST", "/events", "/events", Some(one), s).await;
    assert_eq!(again.status, StatusCode::OK);
    let batch = json!([{"topic": "t1", "routing_key": "a.c", "payload": {"x": 2}}]);
    f.check("POST", "/events", "/events", Some(batch), s).await;
    let a = f
        .check(
            "POST",
            "/events",
            "/events",
            Some(json!({"topic": "t1", "routing_key": "a", "payload": 3})),
            s,
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "the payload breaks the topic's schema"
    );
    f.check(
        "GET",
        "/events/{topic}/history",
        "/events/t1/history?limit=1",
        None,
        s,
    )
    .await;
    f.check(
        "GET",
        "/events/{topic}/last",
        "/events/t1/last?routing_key=a.*",
        None,
        s,
    )
    .await;
    f.check(
        "GET",
        "/events/{topic}/export",
        "/events/t1/export",
        None,
        s,
    )
    .await;
    f.check(
        "GET",
        "/events/{topic}/export",
        "/events/t1/export?format=csv",
        None,
        s,
    )
    .await;
    f.check("GET", "/topics/{topic}", "/topics/nothing", None, s)
        .await;

    // fivetran
    let c = "/v1/connectors/{id}";
    f.check("GET", "/v1/connectors", "/v1/connectors", None, s)
        .await;
    f.check("GET", "/v1/connections", "/v1/connections?limit=1", None, s)
        .await;
    f.check("GET", c, "/v1/connectors/h1.ch1", None, s).await;
    let a = f
        .check("GET", c, "/v1/connectors/h1.nothing", None, s)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let update = json!({"schedule_type": "manual", "sync_frequency": 60});
    f.check("PATCH", c, "/v1/connectors/h1.ch1", Some(update), s)
        .await;
    f.check(
        "GET",
        &format!("{c}/schemas"),
        "/v1/connectors/h1.ch1/schemas",
        None,
        s,
    )
    .await;
    f.check(
        "GET",
        &format!("{c}/schemas/{{schema}}/tables/{{table}}/columns"),
        "/v1/connectors/h1.ch1/schemas/main/tables/orders/columns",
        None,
        s,
    )
    .await;
    f.check(
        "POST",
        &format!("{c}/test"),
        "/v1/connectors/h1.ch1/test",
        None,
        s,
    )
    .await;
    f.check(
        "POST",
        &format!("{c}/sync"),
        "/v1/connectors/h1.ch1/sync",
        Some(json!({"force": false})),
        s,
    )
    .await;
    f.check("GET", "/v1/groups", "/v1/groups", None, s).await;
    f.check("GET", "/v1/groups/{id}", "/v1/groups/h1", None, s)
        .await;
    f.check(
        "GET",
        "/v1/groups/{id}/connectors",
        "/v1/groups/h1/connectors",
        None,
        s,
    )
    .await;
    f.check(
        "GET",
        "/v1/destinations/{id}",
        "/v1/destinations/h1",
        None,
        s,
    )
    .await;
    f.check("GET", "/v1/users", "/v1/users", None, s).await;

    // operations of HVR's own product: 501 saying why
    f.check(
        "GET",
        "/api/latest/licenses",
        "/api/latest/licenses",
        None,
        s,
    )
    .await;

    // clean-up answers
    f.check(
        "DELETE",
        "/topics/{topic}",
        "/topics/t1?force=true",
        None,
        s,
    )
    .await;
    f.check(
        "DELETE",
        "/api/latest/users/{user}",
        "/api/latest/users/ann",
        None,
        s,
    )
    .await;

    let tags: BTreeSet<String> = f.doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, tags, "every tag has a representative request");
}

/// The document names a request schema for every body a handler reads and a response schema for
/// every answer with a body.
#[tokio::test]
async fn every_body_has_a_schema() {
    let f = start().await;
    let mut bodies = 0;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (path, item) in f.doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if let Some(body) = op.get("requestBody") {
                // JSON, or an archive (`POST /api/latest/restore` takes the archive as raw bytes).
                assert!(
                    body["content"].as_object().is_some_and(
                        |c| !c.is_empty() && c.values().all(|m| m["schema"].is_object())
                    ),
                    "{method} {path}"
                );
                bodies += 1;
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                *counts
                    .entry(if status.starts_with('2') {
                        "ok"
                    } else {
                        "error"
                    })
                    .or_default() += 1;
                for (media, content) in response["content"].as_object().into_iter().flatten() {
                    assert!(
                        content["schema"].is_object(),
                        "{method} {path} {status} {media}"
                    );
                }
            }
        }
    }
    assert!(bodies > 50, "{bodies} request bodies");
    assert!(counts["ok"] > 120 && counts["error"] > 400, "{counts:?}");
}
