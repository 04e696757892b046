//! Request counters and the Prometheus text of `GET /metrics`.
//!
//! The metrics name hubs and count jobs, so they are not public by default: a scrape must carry a
//! Bearer token, either a user's access token (a user of [`MetricsAccess::level`] or above) or the
//! scrape token the operator configured (`SLUICE_METRICS_TOKEN`, compared in constant time).
//! `SLUICE_METRICS_PUBLIC=true` opens them to anyone who can reach the server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use sluice_model::{ChannelName, HubName};
use sluice_service::replication::ReplicationStats;

use crate::AppState;
use crate::error::ApiError;

/// Who may read `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsAccess {
    /// Anyone (no token).
    pub public: bool,
    /// A fixed token for scrapers, as its SHA-256 (never the token itself).
    pub scrape_token_hash: Option<[u8; 32]>,
    /// The least level of a user whose access token may read them.
    pub level: sluice_model::AccessLevel,
}

impl Default for MetricsAccess {
    fn default() -> Self {
        MetricsAccess {
            public: false,
            scrape_token_hash: None,
            level: sluice_model::AccessLevel::ReadOnly,
        }
    }
}

impl MetricsAccess {
    /// From `SLUICE_METRICS_PUBLIC` (`true`/`false`), `SLUICE_METRICS_TOKEN` and
    /// `SLUICE_METRICS_LEVEL` (an access level, default ReadOnly).
    pub fn from_env() -> Result<Self, String> {
        let mut access = MetricsAccess::default();
        if let Ok(v) = std::env::var("SLUICE_METRICS_PUBLIC") {
            access.public = match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" | "" => false,
                other => {
                    return Err(format!(
                        "SLUICE_METRICS_PUBLIC={other:?}: expected true or false"
                    ));
                }
            };
        }
        if let Ok(token) = std::env::var("SLUICE_METRICS_TOKEN")
            && !token.is_empty()
        {
            if token.len() < 16 {
                return Err("SLUICE_METRICS_TOKEN is shorter than 16 characters".into());
            }
            access.scrape_token_hash = Some(hash(&token));
        }
        if let Ok(level) = std::env::var("SLUICE_METRICS_LEVEL")
            && !level.trim().is_empty()
        {
            access.level = level
                .trim()
                .parse()
                .map_err(|_| format!("SLUICE_METRICS_LEVEL={level:?}: not an access level"))?;
        }
        Ok(access)
    }
}

fn hash(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Counters kept by the server.
#[derive(Default)]
pub struct Metrics {
    requests: [AtomicU64; 6],
    micros: AtomicU64,
    logins_failed: AtomicU64,
}

const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

impl Metrics {
    fn record(&self, status: u16, micros: u64) {
        let i = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            500..=599 => 4,
            _ => 5,
        };
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        self.micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts a failed login.
    pub fn login_failed(&self) {
        self.logins_failed.fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let response = next.run(req).await;
    state.metrics.record(
        response.status().as_u16(),
        start.elapsed().as_micros() as u64,
    );
    response
}

/// Refuses a scrape that is not allowed (see the module documentation).
async fn check_access(state: &AppState, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let access = &state.metrics_access;
    if access.public {
        return Ok(());
    }
    let token = crate::extract::bearer_header(headers).ok_or_else(|| {
        ApiError::unauthenticated(
            "the metrics need 'Authorization: Bearer <token>': a user's access token or the scrape token (SLUICE_METRICS_TOKEN)",
        )
    })?;
    if let Some(expected) = &access.scrape_token_hash {
        use subtle::ConstantTimeEq as _;
        if bool::from(hash(token).ct_eq(expected)) {
            return Ok(());
        }
    }
    let identity = state.service.authenticate(token).await?;
    if identity.level.allows(access.level) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "user {} has {} access; the metrics need {}",
            identity.user, identity.level, access.level
        )))
    }
}

pub(crate) async fn render(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Err(e) = check_access(&state, &headers).await {
        return e.into_response();
    }
    use std::fmt::Write as _;
    let m = &state.metrics;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP sluice_http_requests_total HTTP requests answered, by status class."
    );
    let _ = writeln!(out, "# TYPE sluice_http_requests_total counter");
    let mut total = 0;
    for (i, class) in CLASSES.iter().enumerate() {
        let n = m.requests[i].load(Ordering::Relaxed);
        total += n;
        let _ = writeln!(out, "sluice_http_requests_total{{status=\"{class}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP sluice_http_request_seconds Time spent answering HTTP requests."
    );
    let _ = writeln!(out, "# TYPE sluice_http_request_seconds summary");
    let _ = writeln!(
        out,
        "sluice_http_request_seconds_sum {}",
        m.micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(out, "sluice_http_request_seconds_count {total}");
    let _ = writeln!(out, "# HELP sluice_logins_failed_total Failed logins.");
    let _ = writeln!(out, "# TYPE sluice_logins_failed_total counter");
    let _ = writeln!(
        out,
        "sluice_logins_failed_total {}",
        m.logins_failed.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP sluice_uptime_seconds Seconds since the server started."
    );
    let _ = writeln!(out, "# TYPE sluice_uptime_seconds gauge");
    let _ = writeln!(
        out,
        "sluice_uptime_seconds {}",
        state.started.elapsed().as_secs()
    );
    if let Ok(hubs) = state.service.metrics_snapshot().await {
        let _ = writeln!(
            out,
            "# HELP sluice_hub_frozen Whether a hub is frozen (1) or live (0)."
        );
        let _ = writeln!(out, "# TYPE sluice_hub_frozen gauge");
        for h in &hubs {
            let _ = writeln!(
                out,
                "sluice_hub_frozen{{hub=\"{}\"}} {}",
                h.hub,
                u8::from(h.frozen)
            );
        }
        let _ = writeln!(out, "# HELP sluice_jobs Jobs by hub and state.");
        let _ = writeln!(out, "# TYPE sluice_jobs gauge");
        for h in &hubs {
            if let Some(counts) = &h.job_states {
                for (state, n) in counts {
                    let _ = writeln!(
                        out,
                        "sluice_jobs{{hub=\"{}\",state=\"{state}\"}} {n}",
                        h.hub
                    );
                }
            }
        }
    }
    replication_metrics(&mut out, &state.service.replication_figures());
    if let Some(hub) = state.service.event_hub() {
        let c = hub.counters();
        let rows: [(&str, &str, &str, &std::sync::atomic::AtomicU64); 7] = [
            (
                "sluice_events_stored_total",
                "counter",
                "Events stored by the event hub.",
                &c.stored,
            ),
            (
                "sluice_events_commits_total",
                "counter",
                "Event store transactions (group commits).",
                &c.commits,
            ),
            (
                "sluice_events_busy_total",
                "counter",
                "Publishes refused because the write buffer was full.",
                &c.busy,
            ),
            (
                "sluice_events_lag_notices_total",
                "counter",
                "Lag notices sent to slow subscribers.",
                &c.lag_notices,
            ),
            (
                "sluice_events_cutoffs_total",
                "counter",
                "Subscriptions cut off.",
                &c.cutoffs,
            ),
            (
                "sluice_events_expired_total",
                "counter",
                "Events removed by retention.",
                &c.expired,
            ),
            (
                "sluice_events_subscriptions",
                "gauge",
                "Open live subscriptions.",
                &c.subscriptions,
            ),
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// The figures of the replications this process runs: latency and rows per channel (capture)
/// and per channel and target (integrate). Labels are hubs, channels and locations, all defined
/// names, so they stay bounded. Source lag in bytes needs a query at the source: `sluice status`
/// and the dashboard show it.
fn replication_metrics(out: &mut String, figures: &[((HubName, ChannelName), ReplicationStats)]) {
    use std::fmt::Write as _;
    let mut figures: Vec<_> = figures.iter().collect();
    figures.sort_by(|a, b| a.0.cmp(&b.0));
    let header = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
    };
    header(
        out,
        "sluice_capture_latency_seconds",
        "gauge",
        "Seconds from a source commit to its capture, last seen, per replicating channel.",
    );
    for ((hub, channel), s) in &figures {
        if let Some(l) = s.capture_latency {
            let _ = writeln!(
                out,
                "sluice_capture_latency_seconds{{hub=\"{hub}\",channel=\"{channel}\"}} {l}"
            );
        }
    }
    header(
        out,
        "sluice_integrate_latency_seconds",
        "gauge",
        "Seconds from a source commit to its commit at the target, last batch.",
    );
    for ((hub, channel), s) in &figures {
        for (target, l) in &s.integrate_latency {
            let _ = writeln!(
                out,
                "sluice_integrate_latency_seconds{{hub=\"{hub}\",channel=\"{channel}\",target=\"{target}\"}} {l}"
            );
        }
    }
    header(
        out,
        "sluice_captured_rows_total",
        "counter",
        "Row changes captured since the replication started in this process.",
    );
    for ((hub, channel), s) in &figures {
        let _ = writeln!(
            out,
            "sluice_captured_rows_total{{hub=\"{hub}\",channel=\"{channel}\"}} {}",
            s.captured
        );
    }
    header(
        out,
        "sluice_integrated_rows_total",
        "counter",
        "Row changes applied at a target (after coalescing) since the replication started in this process.",
    );
    for ((hub, channel), s) in &figures {
        for (target, n) in &s.integrated {
            let _ = writeln!(
                out,
                "sluice_integrated_rows_total{{hub=\"{hub}\",channel=\"{channel}\",target=\"{target}\"}} {n}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sluice_model::LocationName;

    #[test]
    fn replication_figures_become_one_series_per_channel_and_target() {
        let hub = HubName::new("h1").unwrap();
        let (a, b) = (
            ChannelName::new("a").unwrap(),
            ChannelName::new("b").unwrap(),
        );
        let (wh, pg) = (
            LocationName::new("wh").unwrap(),
            LocationName::new("pg").unwrap(),
        );
        let running = ReplicationStats {
            captured: 120,
            capture_latency: Some(0.25),
            integrated: [(wh.clone(), 100), (pg.clone(), 7)].into(),
            integrate_latency: [(wh.clone(), 1.5)].into(),
            ..Default::default()
        };
        // Just started: nothing seen yet, so counters at zero and no latency.
        let started = ReplicationStats::default();
        let mut out = String::new();
        replication_metrics(
            &mut out,
            &[((hub.clone(), b.clone()), started), ((hub, a), running)],
        );
        let series: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            series,
            [
                r#"sluice_capture_latency_seconds{hub="h1",channel="a"} 0.25"#,
                r#"sluice_integrate_latency_seconds{hub="h1",channel="a",target="wh"} 1.5"#,
                r#"sluice_captured_rows_total{hub="h1",channel="a"} 120"#,
                r#"sluice_captured_rows_total{hub="h1",channel="b"} 0"#,
                r#"sluice_integrated_rows_total{hub="h1",channel="a",target="pg"} 7"#,
                r#"sluice_integrated_rows_total{hub="h1",channel="a",target="wh"} 100"#,
            ]
        );
        for name in [
            "sluice_capture_latency_seconds",
            "sluice_integrate_latency_seconds",
            "sluice_captured_rows_total",
            "sluice_integrated_rows_total",
        ] {
            assert_eq!(out.matches(&format!("# TYPE {name} ")).count(), 1, "{name}");
        }
    }
}
