//! `sluice bench --suite logins`: the hub server's API while a flood of logins with random user
//! names hits it (finding 15 of the security issue).
//!
//! The server is a real `sluice serve` child process on a fresh SQLite repository. Probes measure
//! `GET /health` and an authenticated `GET /api/latest/hubs` (each probe paced every 10 ms, from
//! its own loopback address) while idle, then under each flood:
//! * `paced 200/s, many addresses`: 200 clients, each on its own loopback address, sending one
//!   login a second (the target's condition: 200 logins/s);
//! * `200 connections, one address`: 200 clients on one address sending logins back to back (the
//!   condition the finding was measured under).
//!
//! Target: p99 < 100 ms for both probes under a flood. Every login is a wrong one: the server must
//! check or refuse each, and logins are counted as checked (403) or refused before a check (429).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::args::{BenchArgs, Printing};
use crate::report::{json as print_json, table, thousands};
use crate::server::ServeProcess;

const ADMIN_PASSWORD: &str = "bench-logins-admin-pw";
const FLOOD_CLIENTS: usize = 200;
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// p99 target for the probes under a flood, in milliseconds.
const TARGET_P99_MS: f64 = 100.0;

fn client(from: Option<IpAddr>) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .local_address(from)
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build an HTTP client")
}

/// Latencies of one probe over one phase.
#[derive(serde::Serialize)]
struct ProbeResult {
    requests: u64,
    errors: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn summarize(h: &Histogram<u64>, errors: u64) -> ProbeResult {
    let ms = |v: u64| v as f64 / 1000.0;
    ProbeResult {
        requests: h.len(),
        errors,
        p50_ms: ms(h.value_at_quantile(0.5)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
    }
}

async fn probe(
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    end: Instant,
) -> Result<(Histogram<u64>, u64)> {
    let mut h = Histogram::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    while Instant::now() < end {
        tick.tick().await;
        let mut req = http.get(&url);
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let sent = Instant::now();
        let ok = match req.send().await {
            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
            Err(_) => false,
        };
        h.saturating_record((sent.elapsed().as_micros() as u64).max(1));
        if !ok {
            errors += 1;
        }
    }
    Ok((h, errors))
}

/// Counts of the flood's answers.
#[derive(Default)]
struct FloodCounts {
    sent: AtomicU64,
    checked: AtomicU64,
    refused: AtomicU64,
    other: AtomicU64,
}

#[derive(serde::Serialize)]
struct Phase {
    name: String,
    seconds: f64,
    logins_per_second: f64,
    checked: u64,
    refused: u64,
    other: u64,
    health: ProbeResult,
    authenticated_get: ProbeResult,
    /// The server's resident memory at the end of the phase, and its peak so far (MB).
    server_rss_mb: u64,
    server_peak_mb: u64,
}

/// `VmRSS` and `VmHWM` of a process, in MB.
fn memory_mb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn flood_client(
    http: reqwest::Client,
    url: String,
    pace: Option<Duration>,
    end: Instant,
    counts: Arc<FloodCounts>,
    seed: usize,
) {
    let mut n = 0u64;
    while Instant::now() < end {
        let started = Instant::now();
        n += 1;
        let name = format!("flood{seed}x{n}");
        counts.sent.fetch_add(1, Ordering::Relaxed);
        let status = http
            .post(&url)
            .json(&json!({"username": name, "password": "not-a-password"}))
            .send()
            .await
            .map(|r| r.status().as_u16());
        let slot = match status {
            Ok(403) => &counts.checked,
            Ok(429) => &counts.refused,
            _ => &counts.other,
        };
        slot.fetch_add(1, Ordering::Relaxed);
        if let Some(pace) = pace
            && let Some(rest) = pace.checked_sub(started.elapsed())
        {
            tokio::time::sleep(rest).await;
        }
    }
}

async fn phase(
    name: &str,
    server: &str,
    pid: u32,
    token: &str,
    seconds: u64,
    flood: Option<(bool, Option<Duration>)>,
) -> Result<Phase> {
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let counts = Arc::new(FloodCounts::default());
    let mut flooders = Vec::new();
    if let Some((many_addresses, pace)) = flood {
        let one = client(Some(IpAddr::from([127, 0, 0, 1])))?;
        for i in 0..FLOOD_CLIENTS {
            let http = if many_addresses {
                client(Some(IpAddr::from([
                    127,
                    0,
                    2 + (i / 250) as u8,
                    (1 + i % 250) as u8,
                ])))?
            } else {
                one.clone()
            };
            flooders.push(tokio::spawn(flood_client(
                http,
                format!("{server}/auth/v1/password"),
                pace,
                end,
                counts.clone(),
                i,
            )));
        }
    }
    let probe_from = Some(IpAddr::from([127, 0, 1, 200]));
    let health = tokio::spawn(probe(
        client(probe_from)?,
        format!("{server}/health"),
        None,
        end,
    ));
    let get = tokio::spawn(probe(
        client(probe_from)?,
        format!("{server}/api/latest/hubs"),
        Some(token.to_owned()),
        end,
    ));
    let (health, health_errors) = health.await??;
    let (get, get_errors) = get.await??;
    for f in flooders {
        let _ = f.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (server_rss_mb, server_peak_mb) = memory_mb(pid);
    Ok(Phase {
        server_rss_mb,
        server_peak_mb,
        name: name.to_owned(),
        seconds: elapsed,
        logins_per_second: counts.sent.load(Ordering::Relaxed) as f64 / elapsed,
        checked: counts.checked.load(Ordering::Relaxed),
        refused: counts.refused.load(Ordering::Relaxed),
        other: counts.other.load(Ordering::Relaxed),
        health: summarize(&health, health_errors),
        authenticated_get: summarize(&get, get_errors),
    })
}

/// Runs the suite.
pub async fn run(args: BenchArgs, g: &Printing) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = ServeProcess::start(&[], ADMIN_PASSWORD, "sluice-bench-logins")?;
    let http = client(None)?;
    let answer: Value = http
        .post(format!("{}/auth/v1/password", server.url))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let token = answer["access_token"]
        .as_str()
        .context("the admin login failed")?
        .to_owned();
    let seconds = u64::from(args.runs_or(3).max(1)) * 10;
    let pid = server.pid();
    if !g.json {
        note!(
            "sluice serve at {}: {seconds} s idle, then {seconds} s per flood of {FLOOD_CLIENTS} login clients …",
            server.url
        );
    }
    let phases = vec![
        phase("idle", &server.url, pid, &token, seconds, None).await?,
        phase(
            "paced 200/s, many addresses",
            &server.url,
            pid,
            &token,
            seconds,
            Some((true, Some(Duration::from_secs(1)))),
        )
        .await?,
        phase(
            "200 connections, one address",
            &server.url,
            pid,
            &token,
            seconds,
            Some((false, None)),
        )
        .await?,
    ];
    if g.json {
        print_json(&json!({"target_p99_ms": TARGET_P99_MS, "phases": phases}))?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = phases
        .iter()
        .map(|p| {
            let met = |r: &ProbeResult| {
                if p.name == "idle" {
                    String::new()
                } else if r.p99_ms < TARGET_P99_MS {
                    " (met)".into()
                } else {
                    " (missed)".into()
                }
            };
            vec![
                p.name.clone(),
                format!("{:.0}", p.logins_per_second),
                format!("{} / {}", thousands(p.checked), thousands(p.refused)),
                format!(
                    "{:.2} / {:.2}{}",
                    p.health.p50_ms,
                    p.health.p99_ms,
                    met(&p.health)
                ),
                format!(
                    "{:.2} / {:.2}{}",
                    p.authenticated_get.p50_ms,
                    p.authenticated_get.p99_ms,
                    met(&p.authenticated_get)
                ),
                thousands(p.health.errors + p.authenticated_get.errors),
                format!("{} / {}", p.server_rss_mb, p.server_peak_mb),
            ]
        })
        .collect();
    let headers = [
        "phase",
        "logins/s sent",
        "checked / refused",
        "/health p50 / p99 ms",
        "GET /hubs p50 / p99 ms",
        "probe errors",
        "server RSS / peak MB",
    ];
    if args.markdown {
        say!("| {} |", headers.join(" | "));
        say!("|---|---:|---:|---:|---:|---:|---:|");
        for r in &rows {
            say!("| {} |", r.join(" | "));
        }
    } else {
        say!("{}", table(&headers, rows));
    }
    say!("target: p99 < {TARGET_P99_MS} ms for both probes under a flood");
    Ok(())
}
