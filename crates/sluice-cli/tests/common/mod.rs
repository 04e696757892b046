//! What the CLI's test binaries share: a real `sluice serve` process, started and logged in to.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// A `sluice serve` process, logged in as admin; killed (SIGKILL) when dropped.
pub struct Served {
    /// The process.
    pub child: std::process::Child,
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// A client for calls.
    pub http: reqwest::Client,
    /// The admin's access token.
    pub token: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sluice serve --listen 127.0.0.1:0 ARGS` with `home` as its `SLUICE_HOME` and
/// `password` as `SLUICE_ADMIN_PASSWORD`. Its stderr is drained (so it never blocks on a full
/// pipe) into `log` when given, and every line is sent on the returned channel.
pub fn spawn_serve(
    home: &Path,
    args: &[&str],
    password: &str,
    mut log: Option<std::fs::File>,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("sluice"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("SLUICE_HOME", home)
        .env("SLUICE_ADMIN_PASSWORD", password)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(log) = &mut log {
        let _ = writeln!(log, "---- sluice serve pid {}", child.id());
    }
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            if let Some(log) = &mut log {
                let _ = writeln!(log, "{line}");
            }
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Starts `sluice serve` as [`spawn_serve`] does, waits for its listening line and logs in as
/// admin with `password`.
pub async fn serve(
    home: &Path,
    args: &[&str],
    password: &str,
    log: Option<std::fs::File>,
) -> Served {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (child, lines) = spawn_serve(home, args, password, log);
    let url = tokio::task::spawn_blocking(move || {
        loop {
            let line = lines.recv_timeout(Duration::from_secs(60))?;
            if let Some(rest) = line.split("listening on ").nth(1) {
                break Ok::<_, std::sync::mpsc::RecvTimeoutError>(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    })
    .await
    .unwrap()
    .expect("sluice serve starts listening");
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{url}/auth/v1/password"))
        .json(&serde_json::json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    Served {
        child,
        url,
        http,
        token,
    }
}

/// `sluice login --hub URL --user admin --password-stdin` as `cmd` (a prepared `sluice`
/// command with the test's environment) runs it; it must succeed.
pub fn cli_login(mut cmd: assert_cmd::Command, url: &str, password: &str) {
    cmd.args(["login", "--hub", url, "--user", "admin", "--password-stdin"])
        .write_stdin(format!("{password}\n"))
        .assert()
        .success();
}
