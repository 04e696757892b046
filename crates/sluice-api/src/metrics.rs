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
