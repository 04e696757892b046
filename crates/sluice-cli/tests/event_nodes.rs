//! Two `sluice serve` processes sharing one PostgreSQL repository and a broker (NATS JetStream,
//! then RabbitMQ): an event published to one node is streamed live by the other, and `sluice
//! event tail` follows it. Needs PostgreSQL (`$SLUICE_TEST_PG`, default
//! `postgres://postgres@127.0.0.1:5432`), NATS (`$SLUICE_TEST_NATS`, default
//! `nats://127.0.0.1:4222`) and RabbitMQ (`$SLUICE_TEST_AMQP`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`); unreachable → the test fails.

#![allow(clippy::unwrap_used)]

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const PASSWORD: &str = "node-test-password";

fn pg_server() -> String {
    std::env::var("SLUICE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn nats() -> String {
    std::env::var("SLUICE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn amqp() -> String {
    std::env::var("SLUICE_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([
            &format!("{}/postgres", pg_server()),
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "PostgreSQL is needed at {} (these tests never skip): {}",
        pg_server(),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Node {
    child: Child,
    url: String,
    /// The line announcing where the server listens.
    started: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sluice serve` with `broker` and waits for its address.
fn node(repo: &str, home: &std::path::Path, broker: &str) -> Node {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("sluice"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--repo",
            repo,
            "--broker",
            broker,
        ])
        .env("SLUICE_HOME", home)
        .env("SLUICE_ADMIN_PASSWORD", PASSWORD)
        // Only the broker may deliver the other node's events live: no idle look at the store.
        .env("SLUICE_EVENTS_IDLE_POLL_MS", "600000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let (url, started) = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("sluice serve stopped before listening"))
            .unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break (rest.split_whitespace().next().unwrap().to_owned(), line);
        }
        assert!(!line.contains("error"), "sluice serve failed: {line}");
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Node {
        child,
        url,
        started,
    }
}

async fn login(http: &reqwest::Client, url: &str) -> String {
    let v: Value = http
        .post(format!("{url}/auth/v1/password"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

/// Reads SSE events (their JSON) until `n` arrived or `timeout` passed.
async fn read_events(resp: &mut reqwest::Response, n: usize, timeout: Duration) -> Vec<Value> {
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < n {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: "))
                && !block.contains("event:")
            {
                out.push(serde_json::from_str(data).unwrap());
            }
        }
        if out.len() >= n {
            break;
        }
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(c))) => buf.push_str(&String::from_utf8_lossy(&c)),
            _ => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_on_one_node_streams_from_the_other() {
    two_nodes(&nats()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_on_one_node_streams_from_the_other_over_rabbitmq() {
    let (a, b) = two_nodes(&amqp()).await;
    for started in [a, b] {
        assert!(
            started.contains("event broker amqp at amqp://guest:***@127.0.0.1:5672/"),
            "{started}"
        );
        assert!(!started.contains("guest:guest"), "{started}");
    }
}

/// The two-node scenario over `broker`; the start-up lines of both nodes.
async fn two_nodes(broker: &str) -> (String, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = format!("sluice_nodes_{}", uuid::Uuid::new_v4().simple());
    psql(&format!("CREATE DATABASE {db}"));
    let repo = format!("{}/{db}", pg_server());
    let home_a = tempfile::tempdir().unwrap();
    let home_b = tempfile::tempdir().unwrap();
    let a = node(&repo, home_a.path(), broker);
    let b = node(&repo, home_b.path(), broker);
    let http = reqwest::Client::new();
    let token_a = login(&http, &a.url).await;
    let token_b = login(&http, &b.url).await;

    let created = http
        .post(format!("{}/topics", a.url))
        .bearer_auth(&token_a)
        .json(&json!({"name": "plant"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    // Node B streams from now; node A publishes.
    let mut stream_b = http
        .get(format!(
            "{}/events/plant/stream?routing_key=line1.%23",
            b.url
        ))
        .bearer_auth(&token_b)
        .send()
        .await
        .unwrap();
    assert_eq!(stream_b.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let batch: Vec<Value> = (0..200)
        .map(|i| json!({"topic": "plant", "routing_key": format!("line{}.t{i}", 1 + i % 2), "payload": {"i": i}}))
        .collect();
    let published = http
        .post(format!("{}/events", a.url))
        .bearer_auth(&token_a)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201);
    let got = read_events(&mut stream_b, 100, Duration::from_secs(20)).await;
    let seqs: Vec<u64> = got.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=200).step_by(2).collect::<Vec<_>>(),
        "node B streamed node A's events in order, once"
    );
    assert_eq!(got[0]["posted_by"], "admin");
    assert_eq!(got[0]["payload"], json!({"i": 0}));

    // And the other way round.
    let mut stream_a = http
        .get(format!("{}/events/plant/stream", a.url))
        .bearer_auth(&token_a)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let one = http
        .post(format!("{}/events", b.url))
        .bearer_auth(&token_b)
        .json(&json!({"topic": "plant", "routing_key": "line9", "payload": "from b", "id": "b-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 201);
    let got = read_events(&mut stream_a, 1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "node A streamed node B's event");
    assert_eq!(got[0]["seq"], 201);
    assert_eq!(got[0]["id"], "b-1");

    // `sluice event tail` on node B: history after 195, then stops after 6 events.
    let config = tempfile::tempdir().unwrap();
    let sluice = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("sluice"))
            .args(args)
            .env("SLUICE_CONFIG_DIR", config.path())
            .env("SLUICE_HOME", home_b.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    };
    let out = sluice(
        &[
            "--hub",
            &b.url,
            "login",
            "--user",
            "admin",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sluice(
        &[
            "--hub", &b.url, "--json", "event", "tail", "plant", "--after", "195", "--count", "6",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = lines.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![196, 197, 198, 199, 200, 201]);

    drop(stream_a);
    drop(stream_b);
    let started = (a.started.clone(), b.started.clone());
    drop(a);
    drop(b);
    psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    started
}
