//! The hub server attacked as a logged-in user with a low level would, over a real socket: each
//! test names the finding of the security issue it covers (see docs/security.md). The server runs
//! with the hub server's location policy (a data directory, an environment allow list) and an
//! environment given as a map, so the test can hold "server secrets" without touching the
//! process environment.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_api::HubConfig;
use sluice_service::policy::LocationPolicy;
use sluice_test_support::{ADMIN_PASSWORD, TestHub, TestRepository};

/// What the test's "server environment" holds.
const SECRET_KEY_TEXT: &str = "server-secret-key-material";
const DB_PASSWORD: &str = "db-password-value-77";
const DB_DIR: &str = "/nonexistent/db-dir-value-88";

struct Server {
    hub: TestHub,
    http: reqwest::Client,
}

struct Answer {
    status: StatusCode,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    #[track_caller]
    fn expect(self, status: StatusCode) -> Answer {
        assert_eq!(self.status, status, "body: {}", self.text);
        self
    }
}

fn environment() -> sluice_service::EnvLookup {
    let map: HashMap<&'static str, &'static str> = [
        ("SLUICE_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("SLUICE_SECRET_KEY", SECRET_KEY_TEXT),
        ("HOME", "/root"),
        ("DB_PASSWORD", DB_PASSWORD),
        ("DB_DIR", DB_DIR),
    ]
    .into_iter()
    .collect();
    Arc::new(move |name: &str| map.get(name).map(|v| (*v).to_owned()))
}

/// A hub server on SQLite in a fresh home, with the hub server's location policy (`DB_*` allowed).
async fn start() -> Server {
    start_on(TestRepository::sqlite()).await
}

async fn start_on(repository: TestRepository) -> Server {
    let home = repository.dir();
    let config = HubConfig {
        env: environment(),
        location_policy: Some(
            LocationPolicy::server(
                "DB_*",
                &home.join("data"),
                vec![home.join("hub.db"), home.join("secret.key")],
            )
            .unwrap(),
        ),
        ..TestHub::config(&repository)
    };
    Server {
        hub: TestHub::serve(repository, config).await,
        // No pooled connections: several tests have the server refuse a body before reading it,
        // which closes that connection, and a pooled client would send its next request on it
        // (hyper's IncompleteMessage).
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
    }
}

impl Server {
    fn data(&self) -> PathBuf {
        self.hub.dir().join("data")
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        self.call_with(&self.http, method, path, token, body).await
    }

    async fn call_with(
        &self,
        http: &reqwest::Client,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = http.request(
            method.parse().unwrap(),
            format!("{}{path}", self.hub.base()),
        );
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

    /// Logs in; `(access, refresh)`.
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
        (
            a["access_token"].as_str().unwrap().to_owned(),
            a["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    async fn admin(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await.0
    }

    /// Creates a user of `level` and logs them in.
    async fn user(&self, name: &str, level: &str) -> String {
        let admin = self.admin().await;
        self.call(
            "POST",
            "/api/latest/users",
            Some(&admin),
            Some(json!({"user": name, "level": level, "password": format!("{name}-password")})),
        )
        .await
        .expect(StatusCode::NO_CONTENT);
        self.login(name, &format!("{name}-password")).await.0
    }

    async fn create_hub(&self) {
        let admin = self.admin().await;
        self.call(
            "POST",
            "/api/latest/hubs",
            Some(&admin),
            Some(json!({"hub": "h", "props": {"Description": "security"}})),
        )
        .await
        .expect(StatusCode::NO_CONTENT);
    }

    /// `POST …/new_loc/test` as `token`.
    async fn test_new_location(&self, token: &str, props: Value) -> Answer {
        self.call(
            "POST",
            "/api/latest/hubs/h/new_loc/test",
            Some(token),
            Some(json!({ "props": props })),
        )
        .await
    }
}

fn sqlite_db(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(sql).unwrap();
}

/// Finding 1: `${VAR}` references read only variables the operator allowed, never `SLUICE_*`, and
/// no resolved value appears in an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f01_location_references_never_read_server_variables() {
    let s = start().await;
    s.create_hub().await;
    let rw = s.user("mallory", "ReadWrite").await;
    for secret_ref in ["SLUICE_ADMIN_PASSWORD", "SLUICE_SECRET_KEY", "HOME"] {
        let a = s
            .test_new_location(
                &rw,
                json!({"Class": "sqlite", "Database_Name": format!("/nonexistent/${{{secret_ref}}}")}),
            )
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert!(!a.text.contains(ADMIN_PASSWORD), "{}", a.text);
        assert!(!a.text.contains(SECRET_KEY_TEXT), "{}", a.text);
        assert!(!a.text.contains("/root"), "{}", a.text);
        assert!(a.text.contains(&format!("${{{secret_ref}}}")), "{}", a.text);
        // Nor can it be stored as a location.
        s.call(
            "POST",
            "/api/latest/hubs/h/definition/locs",
            Some(&rw),
            Some(json!({"loc": "leak", "props": {"Class": "sqlite", "Database_Name": format!("x${{{secret_ref}}}.db")}})),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    }
    // Even an allowed variable may not name a SQLite file over the API (it could lead out of the
    // data directory, or be read back through the file's name), …
    for path in [
        "${DB_DIR}/${DB_PASSWORD}.db",
        "file:/tmp/elsewhere.db?x=${DB_PASSWORD}",
    ] {
        let a = s
            .test_new_location(&rw, json!({"Class": "sqlite", "Database_Name": path}))
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert!(!a.text.contains(DB_PASSWORD), "{}", a.text);
        assert!(!a.text.contains("db-dir-value"), "{}", a.text);
    }
    // … nor be a password over the API: it would go to any host the caller names.
    s.test_new_location(
        &rw,
        json!({"Class": "postgresql", "Database_Host": "127.0.0.1", "Database_Port": 1,
               "Database_Name": "x", "Database_Password": "${DB_PASSWORD}"}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);
    // An allowed variable in a plain property resolves, and what the driver says names the
    // reference, not the value.
    let a = s
        .test_new_location(
            &rw,
            json!({"Class": "postgresql", "Database_Host": "127.0.0.1", "Database_Port": 5432,
                   "Database_Name": "no_db_${DB_PASSWORD}", "Database_Sslmode": "disable"}),
        )
        .await;
    assert_ne!(a.status, StatusCode::OK, "{}", a.text);
    assert!(!a.text.contains(DB_PASSWORD), "{}", a.text);
    let locs = s
        .call("GET", "/api/latest/hubs/h/definition/locs", Some(&rw), None)
        .await
        .expect(StatusCode::OK)
        .json();
    assert!(locs.get("leak").is_none(), "{locs}");
}

/// Finding 2: SQLite locations made over the API live in the data directory; the repository and
/// the key file are never a location, whoever defined it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f02_sqlite_locations_cannot_reach_the_servers_files() {
    let s = start().await;
    s.create_hub().await;
    let rw = s.user("mallory", "ReadWrite").await;
    let repo = s.hub.dir().join("hub.db");
    std::os::unix::fs::symlink(s.hub.dir(), s.data().join("escape")).unwrap();
    for path in [
        repo.display().to_string(),
        "../hub.db".to_owned(),
        "escape/hub.db".to_owned(),
        "escape/other.db".to_owned(),
        format!("file:{}", repo.display()),
        "/etc/passwd".to_owned(),
    ] {
        let a = s
            .test_new_location(&rw, json!({"Class": "sqlite", "Database_Name": path}))
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert!(!a.text.contains("Table_Count"), "{path}: {}", a.text);
        s.call(
            "PUT",
            "/api/latest/hubs/h/definition/locs/l",
            Some(&rw),
            Some(json!({"props": {"Class": "sqlite", "Database_Name": path}})),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    }
    // A file inside the data directory, named relative to it, is fine.
    sqlite_db(
        &s.data().join("shop.db"),
        "CREATE TABLE t (id INTEGER PRIMARY KEY);",
    );
    let ok = s
        .test_new_location(&rw, json!({"Class": "sqlite", "Database_Name": "shop.db"}))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(ok["discovered_props"]["Table_Count"], "1", "{ok}");
    // Even a location the operator defined pointing at the repository is refused when used.
    let doc = json!({
        "hub": "h",
        "locations": {"own": {"class": "sqlite", "props": {"Database_Name": repo.display().to_string()}}},
    });
    let compiled = sluice_service::definition::compile(&doc, &Default::default());
    let defs = compiled.definitions.unwrap();
    s.hub
        .service()
        .apply_definitions(&defs, "operator.yaml")
        .await
        .unwrap();
    let a = s
        .call("POST", "/api/latest/hubs/h/locs/own/test", Some(&rw), None)
        .await;
    assert_ne!(a.status, StatusCode::OK, "{}", a.text);
    assert!(a.text.contains("belongs to the hub itself"), "{}", a.text);
}

/// Finding 3: a condition is one expression in the location's dialect; the known bypasses are
/// refused when defined, and the target keeps its tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f03_conditions_cannot_smuggle_statements() {
    let s = start().await;
    s.create_hub().await;
    let rw = s.user("mallory", "ReadWrite").await;
    sqlite_db(
        &s.data().join("src.db"),
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER); INSERT INTO orders VALUES (1, 5), (2, 50);",
    );
    sqlite_db(
        &s.data().join("tgt.db"),
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER); CREATE TABLE victim (x INTEGER);",
    );
    for (loc, file) in [("src", "src.db"), ("tgt", "tgt.db")] {
        s.call(
            "POST",
            "/api/latest/hubs/h/definition/locs",
            Some(&rw),
            Some(json!({"loc": loc, "props": {"Class": "sqlite", "Database_Name": file}})),
        )
        .await
        .expect(StatusCode::CREATED);
    }
    s.call(
        "POST",
        "/api/latest/hubs/h/definition/channels",
        Some(&rw),
        Some(json!({
            "channel": "c",
            "loc_groups": {"SOURCE": {"members": ["src"]}, "TARGET": {"members": ["tgt"]}},
            "tables": {"orders": {}},
            "actions": [
                {"loc_scope": "SOURCE", "table_scope": "*", "type": "Capture"},
                {"loc_scope": "TARGET", "table_scope": "*", "type": "Integrate"}
            ]
        })),
    )
    .await
    .expect(StatusCode::CREATED);
    for bypass in [
        "1 IN (SELECT 1 AS [']) ); DROP TABLE victim; SELECT ((SELECT 1 AS ['])",
        "x = $$'$$ ); DROP TABLE victim; SELECT ($$'$$",
        "`a'` = 1); DROP TABLE victim; SELECT (`a'`",
        "1=1 /*! ; DROP TABLE victim */",
        "id = (SELECT CAST(c AS int) FROM pg_read_file('/etc/passwd') AS f(c))",
        "EXISTS (SELECT 1 FROM lo_from_bytea(4242424, 'x') AS a(o))",
        "id <= (SELECT length(file) FROM pragma_database_list WHERE name = 'main')",
    ] {
        let a = s
            .call(
                "PATCH",
                "/api/latest/hubs/h/definition/channels/c/actions",
                Some(&rw),
                Some(
                    json!({"actions": [{"loc_scope": "TARGET", "table_scope": "orders",
                    "type": "Restrict", "params": {"RefreshCondition": bypass}}]}),
                ),
            )
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert!(a.text.contains("RefreshCondition"), "{}", a.text);
    }
    // A refresh runs with no condition; the target keeps its other tables.
    let posted = s
        .call(
            "POST",
            "/api/latest/hubs/h/channels/c/refresh",
            Some(&rw),
            Some(json!({"source_loc": "src", "target_loc": "tgt", "start_immediate": "true"})),
        )
        .await;
    assert!(posted.status.is_success(), "{}", posted.text);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let conn = rusqlite::Connection::open(s.data().join("tgt.db")).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
            .unwrap_or(0);
        let victim: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'victim'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(victim, 1, "table victim was dropped");
        if n == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the refresh did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A PostgreSQL server that asks for a cleartext password and reports what it was sent.
async fn password_catcher() -> (u16, tokio::sync::mpsc::Receiver<Option<String>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut len = [0u8; 4];
                loop {
                    // SSLRequest (refused with 'N') or the startup message.
                    if conn.read_exact(&mut len).await.is_err() {
                        let _ = tx.send(None).await;
                        return;
                    }
                    let n = u32::from_be_bytes(len) as usize;
                    let mut rest = vec![0u8; n.saturating_sub(4)];
                    if conn.read_exact(&mut rest).await.is_err() {
                        let _ = tx.send(None).await;
                        return;
                    }
                    if n == 8 && rest == [0x04, 0xd2, 0x16, 0x2f] {
                        let _ = conn.write_all(b"N").await;
                        continue;
                    }
                    break;
                }
                // AuthenticationCleartextPassword.
                let _ = conn.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await;
                let mut tag = [0u8; 1];
                let sent = match conn.read_exact(&mut tag).await {
                    Ok(_) if tag[0] == b'p' => {
                        let mut len = [0u8; 4];
                        conn.read_exact(&mut len).await.ok();
                        let mut body =
                            vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
                        conn.read_exact(&mut body).await.ok();
                        Some(
                            String::from_utf8_lossy(&body)
                                .trim_end_matches('\0')
                                .to_owned(),
                        )
                    }
                    _ => None,
                };
                let _ = tx.send(sent).await;
            });
        }
    });
    (port, rx)
}

/// Finding 4: an edit that changes where a location connects drops the stored password unless it
/// supplies one again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f04_a_stored_password_is_never_sent_to_a_new_host() {
    let s = start().await;
    s.create_hub().await;
    let rw = s.user("mallory", "ReadWrite").await;
    let (port, mut sent) = password_catcher().await;
    s.call(
        "POST",
        "/api/latest/hubs/h/definition/locs",
        Some(&rw),
        Some(json!({"loc": "pg", "props": {
            "Class": "postgresql", "Database_Host": "127.0.0.1", "Database_Port": 5432,
            "Database_Name": "postgres", "Database_User": "postgres",
            "Database_Password": "stored-owner-password", "Database_Sslmode": "disable"}})),
    )
    .await
    .expect(StatusCode::CREATED);
    // Point it at the catcher, keeping the stored password.
    s.call(
        "PATCH",
        "/api/latest/hubs/h/definition/locs/pg/props",
        Some(&rw),
        Some(json!({"Database_Port": port})),
    )
    .await;
    let a = s
        .call("POST", "/api/latest/hubs/h/locs/pg/test", Some(&rw), None)
        .await;
    assert_ne!(a.status, StatusCode::OK, "{}", a.text);
    let got = tokio::time::timeout(Duration::from_secs(10), sent.recv())
        .await
        .expect("the location test never reached the catcher");
    assert_eq!(
        got.flatten(),
        None,
        "the stored password was sent to the new port"
    );
    // Supplying the password again in the same edit is fine: that one is sent.
    s.call(
        "PATCH",
        "/api/latest/hubs/h/definition/locs/pg/props",
        Some(&rw),
        Some(json!({"Database_Host": "localhost", "Database_Password": "typed-again"})),
    )
    .await;
    let _ = s
        .call("POST", "/api/latest/hubs/h/locs/pg/test", Some(&rw), None)
        .await;
    let got = tokio::time::timeout(Duration::from_secs(10), sent.recv())
        .await
        .unwrap();
    assert_eq!(got.flatten().as_deref(), Some("typed-again"));
}

/// Finding 5: a token follows its user's current state and session at once, even right after a
/// request that had the token's check remembered; open streams end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f05_revocation_takes_effect_at_once_and_ends_streams() {
    let s = start().await;
    let admin = s.admin().await;
    let topic = |name: &str| json!({"name": name});
    // Demotion: the old token loses its level.
    let t = s.user("rw", "ReadWrite").await;
    s.call("POST", "/topics", Some(&t), Some(topic("one")))
        .await
        .expect(StatusCode::CREATED);
    s.call(
        "PATCH",
        "/api/latest/users/rw",
        Some(&admin),
        Some(json!({"level": "ReadOnly"})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let a = s
        .call("POST", "/topics", Some(&t), Some(topic("two")))
        .await;
    assert!(
        a.status == StatusCode::UNAUTHORIZED || a.status == StatusCode::FORBIDDEN,
        "{} {}",
        a.status,
        a.text
    );
    // Logout ends the session's access token too.
    let (t, r) = s.login("rw", "rw-password").await;
    s.call("GET", "/topics", Some(&t), None)
        .await
        .expect(StatusCode::OK);
    s.call(
        "POST",
        "/auth/v1/revoke",
        None,
        Some(json!({"refresh_token": r})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    s.call("GET", "/topics", Some(&t), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    // A client without a refresh token logs out with its access token.
    let plain = s
        .call(
            "POST",
            "/auth/v1/password",
            None,
            Some(json!({"username": "rw", "password": "rw-password"})),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    let t = plain["access_token"].as_str().unwrap().to_owned();
    s.call("GET", "/topics", Some(&t), None)
        .await
        .expect(StatusCode::OK);
    s.call("POST", "/auth/v1/revoke", Some(&t), None)
        .await
        .expect(StatusCode::NO_CONTENT);
    s.call("GET", "/topics", Some(&t), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    // A password change and a deletion end every session; an open stream ends with its token.
    let (t, _) = s.login("rw", "rw-password").await;
    let stream = s
        .http
        .get(format!("{}/events/one/stream", s.hub.base()))
        .header("Authorization", format!("Bearer {t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    s.call(
        "PUT",
        "/api/latest/users/rw/password",
        Some(&admin),
        Some(json!({"new_password": "new-rw-password"})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let body = tokio::time::timeout(Duration::from_secs(10), stream.text())
        .await
        .expect("the stream outlived its session")
        .unwrap();
    assert!(body.contains("event: end"), "{body}");
    s.call("GET", "/topics", Some(&t), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    let (t, _) = s.login("rw", "new-rw-password").await;
    s.call("GET", "/topics", Some(&t), None)
        .await
        .expect(StatusCode::OK);
    s.call("DELETE", "/api/latest/users/rw", Some(&admin), None)
        .await
        .expect(StatusCode::NO_CONTENT);
    s.call("GET", "/topics", Some(&t), None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
}

/// Finding 5 (and the review after it): a stream also ends when its reader loses the topic's read
/// grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f05_a_stream_ends_when_its_read_grant_is_taken_away() {
    let s = start().await;
    let admin = s.admin().await;
    let ro = s.user("ro", "ReadOnly").await;
    s.call(
        "POST",
        "/topics",
        Some(&admin),
        Some(json!({"name": "priv", "grants": {"read": ["user:ro"]}})),
    )
    .await
    .expect(StatusCode::CREATED);
    let stream = s
        .http
        .get(format!("{}/events/priv/stream", s.hub.base()))
        .header("Authorization", format!("Bearer {ro}"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    s.call(
        "PUT",
        "/topics/priv",
        Some(&admin),
        Some(json!({"grants": {"read": ["level:SysAdmin"]}})),
    )
    .await
    .expect(StatusCode::OK);
    // A stream looks at its token and grant every second, and topic definitions are cached for
    // two: well before four seconds the stream has ended, so what is published then never reaches
    // the reader.
    tokio::time::sleep(Duration::from_secs(4)).await;
    s.call(
        "POST",
        "/events",
        Some(&admin),
        Some(
            json!({"topic": "priv", "routing_key": "k", "payload": {"secret": "after-revocation"}}),
        ),
    )
    .await
    .expect(StatusCode::CREATED);
    let body = tokio::time::timeout(Duration::from_secs(10), stream.text())
        .await
        .expect("the stream outlived the reader's grant")
        .unwrap();
    assert!(body.contains("event: end"), "{body}");
    assert!(!body.contains("after-revocation"), "{body}");
}

fn client_from(addr: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(IpAddr::from(addr)))
        .build()
        .unwrap()
}

/// Findings 6 and 15: failed logins back off per user and address (an attacker cannot lock the
/// owner out), attempts are counted before the password is checked, and password checks never run
/// on the threads that answer requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f06_f15_logins_cannot_lock_out_the_owner_and_count_before_checking() {
    let s = start().await;
    let attacker = client_from([127, 0, 0, 2]);
    let wrong = json!({"username": "admin", "password": "not-the-password"});
    for _ in 0..5 {
        s.call_with(
            &attacker,
            "POST",
            "/auth/v1/password",
            None,
            Some(wrong.clone()),
        )
        .await
        .expect(StatusCode::FORBIDDEN);
    }
    // The attacker's address backs off, even with the right password …
    let right = json!({"username": "admin", "password": ADMIN_PASSWORD});
    s.call_with(
        &attacker,
        "POST",
        "/auth/v1/password",
        None,
        Some(right.clone()),
    )
    .await
    .expect(StatusCode::TOO_MANY_REQUESTS);
    // … and the owner, elsewhere, logs in at once.
    let owner = client_from([127, 0, 0, 1]);
    s.call_with(
        &owner,
        "POST",
        "/auth/v1/password",
        None,
        Some(right.clone()),
    )
    .await
    .expect(StatusCode::OK);
    // Logins from many addresses spend the global budget; the owner still logs in from the
    // address they logged in from before.
    let mut flood = Vec::new();
    for i in 0..150u8 {
        let http = client_from([127, 0, 5, i + 1]);
        let url = format!("{}/auth/v1/password", s.hub.base());
        flood.push(tokio::spawn(async move {
            http.post(url)
                .json(&json!({"username": format!("nobody{i}"), "password": "whatever-1"}))
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    let mut busy = 0;
    for f in flood {
        busy += usize::from(f.await.unwrap().unwrap() == StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(busy > 0, "the global budget was never spent");
    s.call_with(&owner, "POST", "/auth/v1/password", None, Some(right))
        .await
        .expect(StatusCode::OK);
    // Random names from one address: the address's budget runs out whatever the names, so most
    // attempts are refused before any password is checked.
    let flooder = client_from([127, 0, 0, 3]);
    let mut checked = 0;
    let mut refused = 0;
    for i in 0..80 {
        let a = s
            .call_with(
                &flooder,
                "POST",
                "/auth/v1/password",
                None,
                Some(json!({"username": format!("nobody{i}"), "password": "whatever-1"})),
            )
            .await;
        match a.status {
            StatusCode::FORBIDDEN => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("{other}: {}", a.text),
        }
    }
    // Before, every one of the 80 was checked. The budget allows 30 at once and 5 more a second
    // (the bounds leave room for a slow machine, where checks take longer and more refill).
    assert!(refused >= 15, "{refused} refused, {checked} checked");
    assert!(checked <= 65, "{checked} passwords checked for one address");
}

/// Finding 6: password hashing runs on its own bounded pool, so a burst of logins leaves the one
/// thread that serves requests free: `/health` answers while many logins wait for their checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn f06_password_checks_do_not_stall_the_api() {
    let s = start().await;
    let base = s.hub.base().to_owned();
    let mut logins = Vec::new();
    for i in 0..48u8 {
        let http = client_from([127, 0, 1, i + 1]);
        let url = format!("{base}/auth/v1/password");
        logins.push(tokio::spawn(async move {
            http.post(url)
                .json(&json!({"username": "admin", "password": format!("wrong-{i}-password")}))
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        s.call("GET", "/health", None, None)
            .await
            .expect(StatusCode::OK);
        worst = worst.max(started.elapsed());
    }
    for l in logins {
        let status = l.await.unwrap().unwrap();
        assert!(
            status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
    }
    // 48 Argon2 checks on the one request thread would take about a second here.
    assert!(worst < Duration::from_millis(400), "/health took {worst:?}");
}

/// Findings 7 and 14: a publish body is limited while it is read, and the grant is checked before
/// payloads are parsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f07_f14_publish_bodies_are_limited_and_granted_first() {
    let s = start().await;
    let ro = s.user("reader", "ReadOnly").await;
    let rw = s.user("writer", "ReadWrite").await;
    s.call("POST", "/topics", Some(&rw), Some(json!({"name": "t"})))
        .await
        .expect(StatusCode::CREATED);
    // 64 MiB with its length declared: refused before it is read.
    let started = Instant::now();
    let big = vec![b'x'; 64 << 20];
    let a = s
        .http
        .post(format!("{}/events", s.hub.base()))
        .header("Authorization", format!("Bearer {ro}"))
        .header("Content-Type", "application/json")
        .body(big)
        .send()
        .await;
    if let Ok(resp) = a {
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    // 64 MiB streamed without a length: refused once the limit is passed.
    let chunks = futures::stream::iter(
        (0..64).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'['; 1 << 20]))),
    );
    let a = s
        .http
        .post(format!("{}/events", s.hub.base()))
        .header("Authorization", format!("Bearer {ro}"))
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    if let Ok(resp) = a {
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    // A well-formed batch from a user without the publish grant: refused as such.
    let batch: Vec<Value> = (0..100)
        .map(|i| json!({"topic": "t", "routing_key": "a.b", "payload": {"n": i}}))
        .collect();
    s.call(
        "POST",
        "/events",
        Some(&ro),
        Some(Value::Array(batch.clone())),
    )
    .await
    .expect(StatusCode::FORBIDDEN);
    // Too many events in one call is refused before anything else.
    let many: Vec<Value> = (0..10_001)
        .map(|_| json!({"topic": "t", "routing_key": "a", "payload": 1}))
        .collect();
    let a = s
        .call("POST", "/events", Some(&rw), Some(Value::Array(many)))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert!(a.text.contains("the limit is 10000"), "{}", a.text);
    // Every other JSON body is limited too (2 MiB), and says so with 413.
    let big = json!({"description": "x".repeat(3 << 20)});
    let a = s
        .call("POST", "/api/latest/users", Some(&ro), Some(big))
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text);
    // The owner of the grant publishes as before.
    s.call("POST", "/events", Some(&rw), Some(Value::Array(batch)))
        .await
        .expect(StatusCode::CREATED);
}

/// Finding 8: changing a topic's grants or deleting it takes its admin grant (its creator and
/// SysAdmins by default), not just ReadWrite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f08_topic_administration_needs_the_admin_grant() {
    let s = start().await;
    let alice = s.user("alice", "ReadWrite").await;
    let bob = s.user("bob", "ReadWrite").await;
    let admin = s.admin().await;
    s.call(
        "POST",
        "/topics",
        Some(&alice),
        Some(json!({"name": "alice.t", "grants": {"read": ["level:ReadOnly"], "publish": ["user:alice"]}})),
    )
    .await
    .expect(StatusCode::CREATED);
    let takeover =
        json!({"grants": {"read": ["user:bob"], "publish": ["user:bob"], "admin": ["user:bob"]}});
    s.call("PUT", "/topics/alice.t", Some(&bob), Some(takeover.clone()))
        .await
        .expect(StatusCode::FORBIDDEN);
    s.call("DELETE", "/topics/alice.t?force=true", Some(&bob), None)
        .await
        .expect(StatusCode::FORBIDDEN);
    let topic = s
        .call("GET", "/topics/alice.t", Some(&bob), None)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(topic["grants"]["publish"], json!(["user:alice"]), "{topic}");
    assert_eq!(topic["grants"]["admin"], json!(["user:alice"]), "{topic}");
    // The creator administers it; a spec without admin keeps the administrators.
    s.call(
        "PUT",
        "/topics/alice.t",
        Some(&alice),
        Some(json!({"description": "mine", "grants": {"read": ["level:ReadOnly"], "publish": ["user:alice"]}})),
    )
    .await
    .expect(StatusCode::OK);
    s.call("PUT", "/topics/alice.t", Some(&bob), Some(takeover))
        .await
        .expect(StatusCode::FORBIDDEN);
    // An explicit admin grant, and SysAdmins.
    s.call(
        "POST",
        "/topics",
        Some(&alice),
        Some(json!({"name": "shared.t", "grants": {"admin": ["user:alice", "user:bob"]}})),
    )
    .await
    .expect(StatusCode::CREATED);
    s.call("DELETE", "/topics/shared.t", Some(&bob), None)
        .await
        .expect(StatusCode::NO_CONTENT);
    s.call("DELETE", "/topics/alice.t?force=true", Some(&admin), None)
        .await
        .expect(StatusCode::NO_CONTENT);
}

/// Finding 10: changing one's own password needs the current one; a SysAdmin resetting someone
/// else's does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f10_a_password_change_needs_the_current_password() {
    let s = start().await;
    let carol = s.user("carol", "ReadWrite").await;
    for body in [
        json!({"password": "stolen-session-pw"}),
        json!({"password": "stolen-session-pw", "current_password": "a-wrong-guess"}),
    ] {
        s.call("PATCH", "/api/latest/users/carol", Some(&carol), Some(body))
            .await
            .expect(StatusCode::FORBIDDEN);
    }
    s.call(
        "PUT",
        "/api/latest/users/carol/password",
        Some(&carol),
        Some(json!({"new_password": "stolen-session-pw"})),
    )
    .await
    .expect(StatusCode::FORBIDDEN);
    s.login("carol", "carol-password").await;
    s.call(
        "PUT",
        "/api/latest/users/carol/password",
        Some(&carol),
        Some(json!({"new_password": "carols-new-pw", "current_password": "carol-password"})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    s.login("carol", "carols-new-pw").await;
    let admin = s.admin().await;
    s.call(
        "PUT",
        "/api/latest/users/carol/password",
        Some(&admin),
        Some(json!({"new_password": "reset-by-admin"})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    s.login("carol", "reset-by-admin").await;
}

/// Finding 12: `/metrics` needs a login, `/health` shows no error text, event lists have a default
/// page size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f12_metrics_health_and_event_pages() {
    let s = start().await;
    s.create_hub().await;
    s.call("GET", "/metrics", None, None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    let ro = s.user("reader", "ReadOnly").await;
    let metrics = s
        .call("GET", "/metrics", Some(&ro), None)
        .await
        .expect(StatusCode::OK);
    assert!(metrics.text.contains("sluice_http_requests_total"));
    // More events than a default page.
    let repo = s.hub.service().repository();
    for i in 0..1005 {
        repo.post_event(sluice_repo::NewEvent {
            hub: sluice_model::HubName::new("h").unwrap(),
            event_type: sluice_model::EventType::HubPropertyChange,
            user: "test".into(),
            description: format!("event {i}"),
            channel: None,
            loc: None,
            loc2: None,
            job: None,
            state: sluice_model::EventState::Done,
            body: json!({}),
        })
        .await
        .unwrap();
    }
    let page = s
        .call("GET", "/api/latest/hubs/h/events", Some(&ro), None)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(page.as_object().unwrap().len(), 1000);
    let all = s
        .call(
            "GET",
            "/api/latest/hubs/h/events?max_events=5000",
            Some(&ro),
            None,
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert!(all.as_object().unwrap().len() > 1005);
    s.call(
        "GET",
        "/api/latest/hubs/h/events?max_events=0",
        Some(&ro),
        None,
    )
    .await
    .expect(StatusCode::BAD_REQUEST);
}

/// Finding 12: `/health` of a server whose repository is gone says so without the driver's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f12_health_shows_no_repository_error_text() {
    let repository = TestRepository::postgres("sluice_sec_").await;
    let name = repository.database().unwrap().name.clone();
    let s = start_on(repository).await;
    s.call("GET", "/health", None, None)
        .await
        .expect(StatusCode::OK);
    sluice_test_support::pg_admin()
        .await
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
    let a = s.call("GET", "/health", None, None).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text);
    let body = a.json();
    assert_eq!(body["status"], "unavailable");
    assert!(body.get("error").is_none(), "{body}");
    assert!(!a.text.contains(&name), "{}", a.text);
}

/// Definitions as code: a whole document planned or applied over the API is held to the same
/// location policy as every other definition change, and plans never show secret values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f02_definition_documents_obey_the_location_policy_and_hide_secrets() {
    let s = start().await;
    s.create_hub().await;
    let rw = s.user("mallory", "ReadWrite").await;
    let plan_of = |doc: Value| json!({"document": doc});
    let doc = |loc: Value| json!({"hub": "h", "locations": {"evil": loc}});
    let repo = s.hub.dir().join("hub.db").display().to_string();
    for (what, loc) in [
        (
            "a file outside the data directory",
            json!({"class": "sqlite", "props": {"Database_Name": "/etc/passwd"}}),
        ),
        (
            "the repository",
            json!({"class": "sqlite", "props": {"Database_Name": repo}}),
        ),
        (
            "a reserved variable",
            json!({"class": "postgresql", "props": {"Database_Host": "attacker.example",
                "Database_Name": "x", "Database_User": "u",
                "Database_Password": "${SLUICE_ADMIN_PASSWORD}"}}),
        ),
        (
            "a variable the operator did not allow",
            json!({"class": "postgresql", "props": {"Database_Host": "${HOME}",
                "Database_Name": "x", "Database_User": "u"}}),
        ),
    ] {
        let a = s
            .call(
                "POST",
                "/api/latest/hubs/h/definition/plan",
                Some(&rw),
                Some(plan_of(doc(loc.clone()))),
            )
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert!(a.text.contains("locations.evil"), "{what}: {}", a.text);
        let mut body = plan_of(doc(loc));
        body["base_version"] = json!(0);
        s.call(
            "POST",
            "/api/latest/hubs/h/definition/apply",
            Some(&rw),
            Some(body),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    }
    let file = s
        .call("GET", "/api/latest/hubs/h/definition/file", Some(&rw), None)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        file["document"]["locations"],
        json!({}),
        "nothing was stored"
    );

    // A literal password is sealed when applied and never shown: not in the plan, not in the
    // answer, not in the export.
    let pg = doc(
        json!({"class": "postgresql", "props": {"Database_Host": "db.example",
        "Database_Name": "x", "Database_User": "u", "Database_Password": "hunter2-literal"}}),
    );
    let plan = s
        .call(
            "POST",
            "/api/latest/hubs/h/definition/plan",
            Some(&rw),
            Some(plan_of(pg.clone())),
        )
        .await
        .expect(StatusCode::OK);
    assert!(!plan.text.contains("hunter2"), "{}", plan.text);
    let version = plan.json()["base_version"].clone();
    let applied = s
        .call(
            "POST",
            "/api/latest/hubs/h/definition/apply",
            Some(&rw),
            Some(json!({"document": pg, "base_version": version})),
        )
        .await
        .expect(StatusCode::OK);
    assert!(!applied.text.contains("hunter2"), "{}", applied.text);
    let file = s
        .call("GET", "/api/latest/hubs/h/definition/file", Some(&rw), None)
        .await
        .expect(StatusCode::OK);
    assert!(!file.text.contains("hunter2"), "{}", file.text);
    assert!(
        file.json()["left_out"] == json!(["locations.evil.props.Database_Password"]),
        "{}",
        file.text
    );
}
