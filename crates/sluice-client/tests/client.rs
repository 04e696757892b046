//! The client against a tiny scripted HTTP/1.1 server on the loopback: what goes on the wire, how
//! answers and error bodies are read, and when the tokens are renewed.

#![allow(clippy::unwrap_used, missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use sluice_client::{Client, ErrorKind, EventQuery, RefreshRequest, Tokens};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query, as sent.
    target: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: String,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    fn line(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}

struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

fn json_reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        body: body.to_string(),
    }
}

fn text_reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.to_owned(),
    }
}

fn empty(status: u16) -> Reply {
    text_reply(status, "")
}

type Handler = Arc<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// A server answering every request with `reply`.
    async fn start(reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Server {
        let reply = Arc::new(reply);
        Server::start_async(Arc::new(move |seen: Seen| {
            let reply = reply.clone();
            Box::pin(async move { reply(&seen) })
        }))
        .await
    }

    async fn start_async(handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, handler.clone(), log.clone()));
            }
        });
        Server { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn lines(&self) -> Vec<String> {
        self.seen().iter().map(Seen::line).collect()
    }
}

/// Serves the requests of one (keep-alive) connection.
async fn serve(mut stream: TcpStream, handler: Handler, log: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap().split(' ');
        let method = request_line.next().unwrap().to_owned();
        let target = request_line.next().unwrap().to_owned();
        let mut headers = std::collections::HashMap::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once(':').unwrap();
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        let length: usize = headers
            .get("content-length")
            .map_or(0, |v| v.parse().unwrap());
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8(buf[head_end..head_end + length].to_vec()).unwrap();
        buf.drain(..head_end + length);
        let seen = Seen {
            method,
            target,
            authorization: headers.get("authorization").cloned(),
            content_type: headers.get("content-type").cloned(),
            body,
        };
        log.lock().unwrap().push(seen.clone());
        let reply = handler(seen).await;
        let mut out = format!("HTTP/1.1 {} Whatever\r\n", reply.status);
        if reply.status != 204 {
            out.push_str(&format!(
                "Content-Type: {}\r\nContent-Length: {}\r\n",
                reply.content_type,
                reply.body.len()
            ));
        }
        out.push_str("\r\n");
        if reply.status != 204 {
            out.push_str(&reply.body);
        }
        if stream.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn tokens(access: &str, refresh: &str, valid_for: Duration) -> Tokens {
    Tokens {
        access_token: access.into(),
        refresh_token: Some(refresh.into()),
        expires_at: Utc::now() + valid_for,
    }
}

fn token_answer(access: &str, refresh: &str) -> Reply {
    json_reply(
        200,
        json!({"token_type": "bearer", "access_token": access, "expires_in": 900,
               "refresh_token": refresh}),
    )
}

#[tokio::test]
async fn login_posts_the_credentials_and_keeps_the_tokens() {
    let server = Server::start(|seen| match seen.target.as_str() {
        "/auth/v1/password" => token_answer("a1", "r1"),
        "/api/latest/hubs" => json_reply(
            200,
            json!({"hub1": {"props": {"Description": "first", "Hub_State": "LIVE",
                   "Created": "2024-05-01T10:11:12Z", "Hub_ID": "x1"},
                   "current_user_access": {"level": "HubOwner"}},
                   "hub0": {"props": {}}}),
        ),
        _ => empty(404),
    })
    .await;
    let client = Client::new(&server.url).unwrap();
    let before = Utc::now();
    let t = client.login("admin", "s3cret").await.unwrap();
    assert_eq!(t.access_token, "a1");
    assert_eq!(t.refresh_token.as_deref(), Some("r1"));
    assert!(t.expires_at >= before + Duration::seconds(900));
    assert!(t.expires_at <= Utc::now() + Duration::seconds(900));
    assert_eq!(client.tokens(), Some(t));

    let hubs = client.hubs().await.unwrap();
    // The server's order, not sorted.
    assert_eq!(
        hubs.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["hub1", "hub0"]
    );
    assert_eq!(hubs[0].props.hub_state.as_deref(), Some("LIVE"));
    assert_eq!(hubs[0].props.other["Hub_ID"], "x1");
    assert_eq!(
        hubs[0].current_user_access.as_ref().unwrap().level,
        "HubOwner"
    );

    let seen = server.seen();
    assert_eq!(seen[0].line(), "POST /auth/v1/password");
    assert_eq!(seen[0].authorization, None);
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        seen[0].json(),
        json!({"username": "admin", "password": "s3cret", "refresh": "token"})
    );
    assert_eq!(seen[1].line(), "GET /api/latest/hubs");
    assert_eq!(seen[1].authorization.as_deref(), Some("Bearer a1"));
}

#[tokio::test]
async fn a_bad_login_is_forbidden_with_the_servers_code_and_message() {
    let server =
        Server::start(|_| text_reply(403, "F_JW0003: invalid user name or password")).await;
    let client = Client::new(&server.url).unwrap();
    let e = client.login("admin", "wrong").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    assert_eq!(e.status(), Some(403));
    assert_eq!(e.code(), Some("F_JW0003"));
    assert_eq!(e.message(), Some("invalid user name or password"));
    assert!(!e.is_unauthorized());
    assert_eq!(client.tokens(), None);
}

#[tokio::test]
async fn error_answers_carry_status_code_and_message() {
    let server = Server::start(|_| text_reply(404, "F_JR0404: channel nope does not exist")).await;
    let client =
        Client::new(&server.url)
            .unwrap()
            .with_token(tokens("a1", "r1", Duration::minutes(10)));
    let e = client.channel("hub1", "nope").await.unwrap_err();
    assert!(e.is_not_found());
    assert_eq!(e.code(), Some("F_JR0404"));
    assert_eq!(e.message(), Some("channel nope does not exist"));
    assert_eq!(
        e.to_string(),
        "F_JR0404: channel nope does not exist (HTTP 404)"
    );
    assert_eq!(
        server.lines(),
        [
            "GET /api/latest/hubs/hub1/definition/channels/nope?fetch=tables&fetch=cols&fetch=loc_groups&fetch=members&fetch=channel_actions"
        ]
    );
}

#[tokio::test]
async fn event_filters_are_repeated_query_keys_and_events_keep_the_servers_order() {
    let server = Server::start(|_| {
        json_reply(
            200,
            json!({
                "2024-05-01T10:11:13.000002Z": {"type": "Compare", "state": "ACTIVE",
                    "channel": "b", "results": [{"table": "t", "result": "Table_State", "value": "BUSY"}]},
                "2024-05-01T10:11:12.000001Z": {"type": "Refresh", "state": "DONE", "channel": "a",
                    "response": "done", "finish_tstamp": "2024-05-01T10:11:20Z"}
            }),
        )
    })
    .await;
    let client =
        Client::new(&server.url)
            .unwrap()
            .with_token(tokens("a1", "r1", Duration::minutes(10)));
    let query = EventQuery {
        channels: vec!["a".into(), "b".into()],
        states: vec!["ACTIVE".into(), "DONE".into()],
        fetch_results: true,
        max_events: Some(5),
        ..Default::default()
    };
    let events = client.events("my hub", &query).await.unwrap();
    assert_eq!(
        server.lines(),
        [
            "GET /api/latest/hubs/my%20hub/events?channel=a&channel=b&state=ACTIVE&state=DONE&fetch_results=true&max_events=5"
        ]
    );
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].ev_id, "2024-05-01T10:11:13.000002Z");
    assert!(!events[0].is_finished());
    assert_eq!(events[0].result(Some("t"), "Table_State"), Some("BUSY"));
    assert_eq!(events[1].ev_id, "2024-05-01T10:11:12.000001Z");
    assert_eq!(events[1].event_type, "Refresh");
    assert!(events[1].is_finished());
}

#[tokio::test]
async fn refresh_posts_the_request_and_a_plan_asks_for_a_dry_run() {
    let server = Server::start(|seen| match seen.json().get("dry_run") {
        Some(Value::Bool(true)) => json_reply(200, json!({"job": "c-refr-s-t", "tables": []})),
        _ => json_reply(
            201,
            json!({"posted_ev_id": "2024-05-01T10:11:12.000001Z", "job": "c-refr-s-t",
                   "canceled_ev_ids": ["2024-05-01T09:00:00.000000Z"]}),
        ),
    })
    .await;
    let client =
        Client::new(&server.url)
            .unwrap()
            .with_token(tokens("a1", "r1", Duration::minutes(10)));
    let request = RefreshRequest {
        source_loc: "s".into(),
        target_loc: "t".into(),
        tables: vec!["orders".into()],
        // Ignored by `refresh`: a dry run must be asked for with `plan_refresh`.
        dry_run: true,
        ..Default::default()
    };
    let posted = client.refresh("hub1", "c", &request).await.unwrap();
    assert_eq!(posted.job, "c-refr-s-t");
    assert_eq!(posted.canceled_ev_ids, ["2024-05-01T09:00:00.000000Z"]);
    let plan = client.plan_refresh("hub1", "c", &request).await.unwrap();
    assert_eq!(plan["job"], "c-refr-s-t");
    let seen = server.seen();
    assert_eq!(
        seen[0].line(),
        "POST /api/latest/hubs/hub1/channels/c/refresh"
    );
    assert_eq!(
        seen[0].json(),
        json!({"source_loc": "s", "target_loc": "t", "tables": ["orders"]})
    );
    assert_eq!(seen[1].json()["dry_run"], true);
}

#[tokio::test]
async fn a_401_renews_the_tokens_once_and_repeats_the_call() {
    let server =
        Server::start(
            |seen| match (seen.target.as_str(), seen.authorization.as_deref()) {
                ("/auth/v1/refresh", _) if seen.json()["refresh_token"] == "r1" => {
                    token_answer("a2", "r2")
                }
                ("/auth/v1/refresh", _) => text_reply(403, "F_JW0004: refresh token expired"),
                (_, Some("Bearer a2")) => json_reply(200, json!({"hub_state": "LIVE"})),
                _ => text_reply(401, "F_JW054F: Authentication required."),
            },
        )
        .await;
    let stored = Arc::new(Mutex::new(Vec::new()));
    let client = Client::new(&server.url)
        .unwrap()
        .with_token(tokens("a1", "r1", Duration::minutes(10)))
        .on_new_tokens({
            let stored = stored.clone();
            move |t| stored.lock().unwrap().push(t.clone())
        });
    let status = client.hub_status("hub1").await.unwrap();
    assert_eq!(status.hub_state, "LIVE");
    assert_eq!(
        server.lines(),
        [
            "GET /api/latest/hubs/hub1/query/status",
            "POST /auth/v1/refresh",
            "GET /api/latest/hubs/hub1/query/status"
        ]
    );
    let seen = server.seen();
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer a1"));
    assert_eq!(seen[1].authorization, None);
    assert_eq!(seen[2].authorization.as_deref(), Some("Bearer a2"));
    let stored = stored.lock().unwrap().clone();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].refresh_token.as_deref(), Some("r2"));
    assert_eq!(client.tokens().unwrap().access_token, "a2");
}

#[tokio::test]
async fn a_401_after_renewing_is_reported_not_retried_again() {
    let server = Server::start(|seen| match seen.target.as_str() {
        "/auth/v1/refresh" => token_answer("a2", "r2"),
        _ => text_reply(401, "F_JW054F: Authentication required."),
    })
    .await;
    let client =
        Client::new(&server.url)
            .unwrap()
            .with_token(tokens("a1", "r1", Duration::minutes(10)));
    let e = client.hub_status("hub1").await.unwrap_err();
    assert!(e.is_unauthorized());
    assert_eq!(e.status(), Some(401));
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn a_refused_refresh_token_means_the_session_expired() {
    let server = Server::start(|seen| match seen.target.as_str() {
        "/auth/v1/refresh" => text_reply(403, "F_JW0004: refresh token expired"),
        _ => text_reply(401, "F_JW054F: Authentication required."),
    })
    .await;
    let client =
        Client::new(&server.url)
            .unwrap()
            .with_token(tokens("a1", "r1", Duration::minutes(10)));
    let e = client.hubs().await.unwrap_err();
    assert!(
        matches!(e, sluice_client::Error::SessionExpired { .. }),
        "{e:?}"
    );
    assert!(e.is_unauthorized());
    let source = std::error::Error::source(&e).unwrap().to_string();
    assert!(source.contains("refresh token expired"), "{source}");
}

#[tokio::test]
async fn a_token_about_to_expire_is_renewed_before_the_call() {
    let server = Server::start(|seen| match seen.target.as_str() {
        "/auth/v1/refresh" => token_answer("a2", "r2"),
        _ => json_reply(200, json!({})),
    })
    .await;
    let client =
        Client::new(&server.url)
            .unwrap()
            .with_token(tokens("a1", "r1", Duration::seconds(5)));
    client.hubs().await.unwrap();
    let seen = server.seen();
    assert_eq!(
        server.lines(),
        ["POST /auth/v1/refresh", "GET /api/latest/hubs"]
    );
    assert_eq!(seen[0].json()["refresh_token"], "r1");
    assert_eq!(seen[1].authorization.as_deref(), Some("Bearer a2"));
}

#[tokio::test]
async fn concurrent_401s_renew_the_tokens_once() {
    // Both calls are answered 401 only once both have arrived, so both see the stale token.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let server = Server::start_async(Arc::new(move |seen: Seen| {
        let barrier = barrier.clone();
        Box::pin(async move {
            match (seen.target.as_str(), seen.authorization.as_deref()) {
                // A second use of r1 would be refused, as a real server does.
                ("/auth/v1/refresh", _) if seen.json()["refresh_token"] == "r1" => {
                    token_answer("a2", "r2")
                }
                ("/auth/v1/refresh", _) => text_reply(403, "F_JW0004: refresh token expired"),
                (_, Some("Bearer a1")) => {
                    barrier.wait().await;
                    text_reply(401, "F_JW054F: Authentication required.")
                }
                _ => json_reply(200, json!({})),
            }
        })
    }))
    .await;
    let client =
        Client::new(&server.url)
            .unwrap()
            .with_token(tokens("a1", "r1", Duration::minutes(10)));
    let (a, b) = tokio::join!(client.hubs(), client.users());
    a.unwrap();
    b.unwrap();
    let refreshes = server
        .lines()
        .iter()
        .filter(|l| l.as_str() == "POST /auth/v1/refresh")
        .count();
    assert_eq!(refreshes, 1, "{:?}", server.lines());
    assert_eq!(server.seen().len(), 5);
}

#[tokio::test]
async fn no_token_means_no_request() {
    let server = Server::start(|_| json_reply(200, json!({}))).await;
    let client = Client::new(&server.url).unwrap();
    let e = client.hubs().await.unwrap_err();
    assert!(matches!(e, sluice_client::Error::NoToken));
    assert!(e.is_unauthorized());
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_a_connect_error() {
    // A port that was just free: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let e = client.login("admin", "x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connect);
    assert!(
        e.to_string().starts_with(&format!(
            "cannot reach the hub server at http://127.0.0.1:{port}/"
        )),
        "{e}"
    );
}

#[tokio::test]
async fn jobs_events_and_logs_use_their_endpoints() {
    let server = Server::start(|seen| match (seen.method.as_str(), seen.target.as_str()) {
        ("GET", "/api/latest/hubs/h/jobs?channel=c&fetch=num_runs&fetch=last_ev_id&fetch=last_run") => json_reply(
            200,
            json!({"c-refr-s-t": {"state": "SUSPEND", "num_runs": 2, "last_ev_id": "e1", "latency": 3}}),
        ),
        ("POST", "/api/latest/hubs/h/jobs_delete") => {
            json_reply(200, json!({"canceled_ev_ids": ["e1"]}))
        }
        ("POST", _) => empty(204),
        ("GET", "/api/latest/hubs/h/events/2024-05-01T10:11:12.000001Z/log") => {
            text_reply(200, "line one\nline two\n")
        }
        _ => empty(404),
    })
    .await;
    let client =
        Client::new(&server.url)
            .unwrap()
            .with_token(tokens("a1", "r1", Duration::minutes(10)));
    let jobs = client
        .jobs(
            "h",
            &sluice_client::JobQuery {
                channels: vec!["c".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(jobs[0].name, "c-refr-s-t");
    assert_eq!(jobs[0].state, "SUSPEND");
    assert_eq!(jobs[0].num_runs, Some(2));
    assert_eq!(jobs[0].other["latency"], 3);
    let names = vec!["c-refr-s-t".to_owned()];
    client.suspend_jobs("h", &names).await.unwrap();
    client.unsuspend_jobs("h", &names).await.unwrap();
    assert_eq!(client.delete_jobs("h", &names).await.unwrap(), ["e1"]);
    client.cancel_events("h", &["e1".to_owned()]).await.unwrap();
    let log = client
        .event_log("h", "2024-05-01T10:11:12.000001Z")
        .await
        .unwrap();
    assert_eq!(log, "line one\nline two\n");
    let seen = server.seen();
    assert_eq!(seen[1].line(), "POST /api/latest/hubs/h/jobs_suspend");
    assert_eq!(seen[1].json(), json!({"jobs": ["c-refr-s-t"]}));
    assert_eq!(seen[2].line(), "POST /api/latest/hubs/h/jobs_unsuspend");
    assert_eq!(seen[4].line(), "POST /api/latest/hubs/h/events_cancel");
    assert_eq!(seen[4].json(), json!({"ev_ids": ["e1"]}));
}
