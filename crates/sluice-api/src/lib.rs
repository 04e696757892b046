//! The hub server's HTTP API.
//!
//! * `hvr/`: the HVR 6 REST API (auth, hubs, definitions, operations, jobs, events) so existing HVR
//!   client scripts work unchanged, plus sluice's users API and dry runs.
//! * `ui/`: the web dashboard under `/ui` (server-rendered pages, cookie session, live updates).
//! * `fivetran/`: the Fivetran-compatible `/v1/…` face over connectors (HTTP Basic API keys).
//! * `/health`, `/metrics` (Prometheus text), `/openapi.json` (every route with its access level,
//!   request body and answers: [`routes::document`]).
//!
//! Handlers are thin: they check the caller's level, turn wire JSON into service calls and service
//! results into wire JSON. Only [`error`] maps errors to HTTP. Any `/api/{version}/…` path (a
//! `vX.Y.Z…` version, `v0` or `latest`) reaches the same handlers.
#![deny(missing_docs)]

pub mod error;
pub mod events;
pub mod extract;
mod fivetran;
pub mod hub;
mod hvr;
mod metrics;
pub mod routes;
mod shapes;
mod ui;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sluice_service::HubService;
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service};

pub use hub::{Hub, HubConfig, HubOpenError};
pub use metrics::{Metrics, MetricsAccess};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The use cases (acting as the hub server until a request names its user).
    pub service: HubService,
    /// Request counters.
    pub metrics: Arc<Metrics>,
    /// When the server started.
    pub started: Instant,
    /// Who may read `/metrics`.
    pub metrics_access: MetricsAccess,
}

impl AppState {
    /// State over `service`.
    pub fn new(service: HubService) -> Self {
        AppState {
            service,
            metrics: Arc::new(Metrics::default()),
            started: Instant::now(),
            metrics_access: MetricsAccess::default(),
        }
    }

    /// The same state with `access` deciding who may read `/metrics`.
    pub fn with_metrics_access(mut self, access: MetricsAccess) -> Self {
        self.metrics_access = access;
        self
    }
}

/// Versions `GET /api` lists.
pub const API_VERSIONS: &[&str] = &["v0", "v6.0.5", "v6.1.0.3", "v6.1.0.36", "latest"];

fn version_ok(v: &str) -> bool {
    v == "latest"
        || v.strip_prefix('v').is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .split('.')
                    .all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Rewrites `/api/{any version}/…` to `/api/latest/…` (an invalid version to a path that 404s).
fn normalize(uri: &Uri) -> Option<Uri> {
    let path = uri.path();
    let rest = path.strip_prefix("/api/")?;
    let (version, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if version == "latest" {
        return None;
    }
    let version = if version_ok(version) {
        "latest"
    } else {
        "_unknown_version_"
    };
    let mut new = format!("/api/{version}/{tail}");
    if let Some(q) = uri.query() {
        new.push('?');
        new.push_str(q);
    }
    new.parse().ok()
}

/// The path a request named before the version rewrite (`/api/v6.1.0.3/…`), for messages that
/// name it as the client wrote it.
#[derive(Clone, Debug)]
pub struct RequestedPath(pub String);

/// The router, without the version rewrite (see [`app`]).
pub fn router(state: AppState) -> Router {
    Router::new()
        // A browser pointed at the server lands on the dashboard.
        .route(
            "/",
            get(|| async { axum::response::Redirect::temporary("/ui") }),
        )
        .route("/health", get(health))
        .route("/metrics", get(metrics::render))
        .route("/openapi.json", get(routes::openapi))
        .merge(hvr::routes())
        .merge(events::routes())
        .merge(ui::routes(state.clone()))
        .merge(fivetran::routes())
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// The whole application: the router behind the API version rewrite.
pub fn app(
    state: AppState,
) -> impl Service<
    Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    let router = router(state);
    tower::util::MapRequestLayer::new(|mut req: Request| {
        if let Some(uri) = normalize(req.uri()) {
            let requested = RequestedPath(req.uri().path().to_owned());
            *req.uri_mut() = uri;
            req.extensions_mut().insert(requested);
        }
        req
    })
    .layer(router)
}

/// Serves the API on `listener` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = app(state);
    axum::serve(
        listener,
        axum::ServiceExt::<Request>::into_make_service_with_connect_info::<std::net::SocketAddr>(
            app,
        ),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

async fn health(State(state): State<AppState>) -> Response {
    match state.service.health().await {
        Ok(hubs) => axum::Json(serde_json::json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": state.started.elapsed().as_secs(),
            "hubs": hubs,
        }))
        .into_response(),
        Err(e) => {
            // The reason goes to the log only: a repository error can name hosts and users.
            tracing::warn!(error = %e, "health check: the repository is unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({
                    "status": "unavailable",
                    "version": env!("CARGO_PKG_VERSION"),
                    "uptime_seconds": state.started.elapsed().as_secs(),
                })),
            )
                .into_response()
        }
    }
}

async fn fallback(uri: Uri, requested: Option<axum::Extension<RequestedPath>>) -> error::ApiError {
    if uri.path().starts_with("/api/_unknown_version_") {
        return error::ApiError::not_found(
            "unknown API version; use /api/latest/… or /api/vX.Y.Z/… (GET /api lists versions)",
        );
    }
    let path = requested.map_or_else(|| uri.path().to_owned(), |r| r.0.0);
    error::ApiError::not_found(format!("no such route: {path}"))
}

async fn method_not_allowed(
    method: axum::http::Method,
    uri: Uri,
    requested: Option<axum::Extension<RequestedPath>>,
) -> error::ApiError {
    let path = requested.map_or_else(|| uri.path().to_owned(), |r| r.0.0);
    error::ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "F_JA0405",
        format!("method {method} is not allowed on {path}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_route_to_latest() {
        let n = |p: &str| normalize(&p.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(
            n("/api/v6.1.0.3/hubs?x=1").as_deref(),
            Some("/api/latest/hubs?x=1")
        );
        assert_eq!(n("/api/v0/hubs").as_deref(), Some("/api/latest/hubs"));
        assert_eq!(n("/api/latest/hubs"), None);
        assert_eq!(
            n("/api/vx/hubs").as_deref(),
            Some("/api/_unknown_version_/hubs")
        );
        assert_eq!(n("/auth/v1/password"), None);
    }
}
