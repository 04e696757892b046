//! Backups over the API: `GET /api/latest/backup` answers a backup archive, `POST
//! /api/latest/restore` takes one (and, with `plan=true`, only answers what restoring it would
//! change). Backing up or restoring a hub needs HubOwner on it; every hub, the users or the
//! server settings need SysAdmin, and so does a restore that creates a hub.

use std::collections::BTreeMap;

use axum::Json as Out;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sluice_model::{AccessLevel, HubName};
use sluice_service::backup::{self, BackupRequest, RestoreRequest};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, QueryList};

/// The largest archive `POST /api/latest/restore` reads.
pub(crate) const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/latest/backup", get(backup))
        .route(
            "/api/latest/restore",
            post(restore).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
        )
}

/// The `hub` query values as hub names (an invalid one is a bad request).
fn hubs(q: &QueryList) -> Result<Vec<HubName>, ApiError> {
    q.all("hub")
        .iter()
        .map(|h| HubName::new(h).map_err(|e| ApiError::invalid(format!("hub {h:?}: {e}"))))
        .collect()
}

async fn backup(caller: Caller, q: QueryList) -> ApiResult<Response> {
    let hubs = hubs(&q)?;
    let with_users = q.flag("with_users", false)?;
    let with_server = q.flag("with_server", hubs.is_empty())?;
    if hubs.is_empty() || with_users || with_server {
        caller.require(AccessLevel::SysAdmin)?;
    }
    for hub in &hubs {
        caller.require_on(hub, AccessLevel::HubOwner).await?;
    }
    let made = caller
        .service
        .backup(&BackupRequest {
            hubs,
            with_users,
            with_server,
        })
        .await?;
    let disposition = format!("attachment; filename=\"{}\"", made.file_name);
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        made.bytes,
    )
        .into_response())
}

/// `expect=HUB:VERSION` (or `HUB:new`, the hub must not exist), repeated.
fn expected(q: &QueryList) -> Result<Option<BTreeMap<HubName, Option<i64>>>, ApiError> {
    let values = q.all("expect");
    if values.is_empty() {
        return Ok(None);
    }
    let bad = |v: &str| {
        ApiError::invalid(format!(
            "expect: {v:?} is not HUB:VERSION or HUB:new (from the plan)"
        ))
    };
    let mut out = BTreeMap::new();
    for v in &values {
        let (hub, version) = v.split_once(':').ok_or_else(|| bad(v))?;
        let hub = HubName::new(hub).map_err(|_| bad(v))?;
        let version = match version {
            "new" => None,
            n => Some(n.parse::<i64>().map_err(|_| bad(v))?),
        };
        out.insert(hub, version);
    }
    Ok(Some(out))
}

async fn restore(caller: Caller, q: QueryList, body: Bytes) -> ApiResult<Response> {
    let archive = backup::read_backup(&body)?;
    let req = RestoreRequest {
        hubs: hubs(&q)?,
        with_users: q.flag("with_users", false)?,
        with_server: q.flag("with_server", false)?,
        expected: expected(&q)?,
    };
    if req.with_users || req.with_server {
        caller.require(AccessLevel::SysAdmin)?;
    }
    let chosen: Vec<&HubName> = if req.hubs.is_empty() {
        archive.hubs.keys().collect()
    } else {
        req.hubs.iter().collect()
    };
    for hub in chosen {
        if caller.service.hub(hub).await.is_ok() {
            caller.require_on(hub, AccessLevel::HubOwner).await?;
        } else if !caller.identity.level.allows(AccessLevel::SysAdmin) {
            return Err(ApiError::forbidden(format!(
                "restoring creates hub {hub}: that needs SysAdmin"
            )));
        }
    }
    if q.flag("plan", false)? {
        let plan = caller.service.plan_restore(&archive, &req).await?;
        return Ok(Out(plan).into_response());
    }
    let restored = caller.service.restore(&archive, &req).await?;
    Ok(Out(restored).into_response())
}
