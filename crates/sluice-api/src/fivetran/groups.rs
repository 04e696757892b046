//! Groups (hubs), their connectors, destinations and users (E15–E17, E19, E21).

use axum::extract::Path;
use axum::response::Response;
use serde_json::json;
use sluice_model::{AccessLevel, HubName};

use super::{FtResult, KeyCaller, page, success, wire};
use crate::error::FivetranError;
use crate::extract::QueryList;

fn hub(text: &str, resource: &str) -> FtResult<HubName> {
    HubName::new(text).map_err(|_| {
        FivetranError::not_found(
            resource,
            format!("{} '{text}' does not exist", resource.to_lowercase()),
        )
    })
}

/// `GET /v1/groups`.
pub(crate) async fn list(caller: KeyCaller, query: QueryList) -> FtResult<Response> {
    caller.require(AccessLevel::ReadOnly)?;
    let hubs = caller
        .service
        .hubs()
        .await
        .map_err(|e| FivetranError::from_service(e, "Group"))?;
    let data = page(
        hubs,
        |h| h.hub.name.to_string(),
        |h| wire::group(&h),
        &query,
    )?;
    Ok(success(None, Some(data)))
}

/// `GET /v1/groups/{id}`.
pub(crate) async fn get_one(caller: KeyCaller, Path(id): Path<String>) -> FtResult<Response> {
    caller.require(AccessLevel::ReadOnly)?;
    let record = caller
        .service
        .hub(&hub(&id, "Group")?)
        .await
        .map_err(|e| FivetranError::from_service(e, "Group"))?;
    Ok(success(None, Some(wire::group(&record))))
}

/// `GET /v1/groups/{id}/connectors` (`schema`, `cursor`, `limit`).
pub(crate) async fn group_connectors(
    caller: KeyCaller,
    Path(id): Path<String>,
    query: QueryList,
) -> FtResult<Response> {
    caller.require(AccessLevel::ReadOnly)?;
    let all = caller
        .service
        .list_connectors(Some(&hub(&id, "Group")?))
        .await
        .map_err(|e| FivetranError::from_service(e, "Group"))?;
    let all = all
        .into_iter()
        .filter(|c| {
            query
                .one("schema")
                .is_none_or(|s| c.id.channel.as_str() == s)
        })
        .collect();
    let data = page(all, |c| c.id.to_string(), |c| wire::connector(&c), &query)?;
    Ok(success(None, Some(data)))
}

/// `GET /v1/destinations/{id}`: the group's destination, the target of its first connector.
pub(crate) async fn destination(caller: KeyCaller, Path(id): Path<String>) -> FtResult<Response> {
    caller.require(AccessLevel::ReadOnly)?;
    let name = hub(&id, "Destination")?;
    let fail = |e| FivetranError::from_service(e, "Destination");
    let record = caller.service.hub(&name).await.map_err(fail)?;
    let connectors = caller
        .service
        .list_connectors(Some(&name))
        .await
        .map_err(fail)?;
    let first = connectors.first().ok_or_else(|| {
        FivetranError::not_found(
            "Destination",
            format!("group '{id}' has no connector, so no destination"),
        )
    })?;
    Ok(success(
        None,
        Some(wire::destination(&record, &first.target)),
    ))
}

/// `GET /v1/users`: every user for a SysAdmin key, none for other keys (a key is not a user;
/// clients call this only to check the key works).
pub(crate) async fn users(caller: KeyCaller, query: QueryList) -> FtResult<Response> {
    caller.require(AccessLevel::ReadOnly)?;
    let users = if caller.level().allows(AccessLevel::SysAdmin) {
        caller
            .service
            .users()
            .await
            .map_err(|e| FivetranError::from_service(e, "User"))?
    } else {
        Vec::new()
    };
    let data = page(
        users,
        |u| u.name.clone(),
        |u| {
            json!({
                "id": u.name, "given_name": u.name, "role": u.level.as_str(),
                "created_at": wire::ts(u.created), "invited": false, "active": true,
            })
        },
        &query,
    )?;
    Ok(success(None, Some(data)))
}
