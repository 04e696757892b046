//! The real `sluice serve` process under hostile requests, measured from outside: what a low-level
//! user's oversized bodies cost the server's memory (finding 14 of the security issue).

#![allow(clippy::unwrap_used)]

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

const PASSWORD: &str = "hostile-test-password";

struct Server {
    child: Child,
    url: String,
    _home: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Server {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("sluice"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SLUICE_HOME", home.path())
        .env("SLUICE_ADMIN_PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("sluice serve stopped before listening"))
            .unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        url,
        _home: home,
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn call(http: &reqwest::Client, url: &str, token: Option<&str>, body: Value) -> Value {
    let mut req = http.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Finding 14: 64 MiB junk bodies sent to `POST /events` by a ReadOnly user without the publish
/// grant, two at once (one with its length declared, one streamed), are refused with 413, and the
/// server's peak memory grows by less than 50 MB (before: 1.94 GB for one, 3.76 GB for two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_publish_bodies_cost_the_server_no_memory() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = serve();
    let http = reqwest::Client::new();
    let url = &server.url;
    let admin = call(
        &http,
        &format!("{url}/auth/v1/password"),
        None,
        json!({"username": "admin", "password": PASSWORD}),
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = http
        .post(format!("{url}/api/latest/users"))
        .bearer_auth(&admin)
        .json(&json!({"user": "reader", "level": "ReadOnly", "password": "reader-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204, "{}", resp.text().await.unwrap());
    let reader = call(
        &http,
        &format!("{url}/auth/v1/password"),
        None,
        json!({"username": "reader", "password": "reader-password"}),
    )
    .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let topic = http
        .post(format!("{url}/topics"))
        .bearer_auth(&admin)
        .json(&json!({"name": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(topic.status(), 201);
    // Warm the server up (a small refused publish) before the baseline.
    let warm = http
        .post(format!("{url}/events"))
        .bearer_auth(&reader)
        .json(&json!({"topic": "t", "routing_key": "a", "payload": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 403);
    let pid = server.child.id();
    let (_, peak_before) = memory(pid);
    let declared = {
        let http = http.clone();
        let (url, reader) = (url.clone(), reader.clone());
        tokio::spawn(async move {
            let junk = vec![b'x'; 64 << 20];
            http.post(format!("{url}/events"))
                .bearer_auth(reader)
                .header("Content-Type", "application/json")
                .body(junk)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    let streamed = {
        let http = http.clone();
        let (url, reader) = (url.clone(), reader.clone());
        tokio::spawn(async move {
            let chunks = futures::stream::iter(
                (0..64).map(|_| Ok::<_, std::io::Error>(vec![b'['; 1 << 20])),
            );
            http.post(format!("{url}/events"))
                .bearer_auth(reader)
                .header("Content-Type", "application/json")
                .body(reqwest::Body::wrap_stream(chunks))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    // The server may close the connection once it has answered (an error here); either way it
    // refused.
    for status in [declared.await.unwrap(), streamed.await.unwrap()]
        .into_iter()
        .flatten()
    {
        assert_eq!(status, 413);
    }
    let (rss_after, peak_after) = memory(pid);
    let grown_mb = peak_after.saturating_sub(peak_before) / 1024;
    eprintln!(
        "peak memory {} MB before, {} MB after two 64 MiB junk bodies (RSS now {} MB)",
        peak_before / 1024,
        peak_after / 1024,
        rss_after / 1024
    );
    assert!(
        grown_mb < 50,
        "peak memory grew by {grown_mb} MB (from {} to {} MB; {} MB now)",
        peak_before / 1024,
        peak_after / 1024,
        rss_after / 1024
    );
    // Still serving.
    let health = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}
