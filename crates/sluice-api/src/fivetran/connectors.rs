//! Connector routes: details, settings, syncs, tests and the schema config (E1–E14, E18).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::Path;
use axum::response::Response;
use serde::Deserialize;
use sluice_model::{AccessLevel, HubName};
use sluice_service::connectors::{
    ConnectorChange, ConnectorId, ExcludeMode, SchemaChange, SchemaPatch, SyncOutcome, TablePatch,
};

use utoipa::ToSchema;

use super::{FtResult, KeyCaller, body, page, success, wire};
use crate::error::FivetranError;
use crate::extract::QueryList;

fn id(text: &str) -> FtResult<ConnectorId> {
    text.parse()
        .map_err(|e| FivetranError::from_service(e, "Connector"))
}

fn fail(e: sluice_service::ServiceError) -> FivetranError {
    FivetranError::from_service(e, "Connector")
}

fn triggered(id: &ConnectorId, outcome: &SyncOutcome) -> Response {
    let message = if outcome.started {
        format!("Sync has been successfully triggered for connector with id '{id}'")
    } else {
        format!("Sync is already running for connector with id '{id}'")
    };
    success(Some(message), None)
}

/// `GET /v1/connectors` (`group_id`, `schema`, `cursor`, `limit`).
pub(crate) async fn list(caller: KeyCaller, query: QueryList) -> FtResult<Response> {
    caller.require(AccessLevel::ReadOnly)?;
    let hub = match query.one("group_id").filter(|g| !g.is_empty()) {
        Some(g) => Some(HubName::new(g).map_err(|_| {
            FivetranError::not_found("Group", format!("group '{g}' does not exist"))
        })?),
        None => None,
    };
    let all = caller
        .service
        .list_connectors(hub.as_ref())
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

/// `GET /v1/connectors/{id}`.
pub(crate) async fn get_one(caller: KeyCaller, Path(cid): Path<String>) -> FtResult<Response> {
    caller.require(AccessLevel::ReadOnly)?;
    let c = caller
        .service
        .get_connector(&id(&cid)?)
        .await
        .map_err(fail)?;
    Ok(success(None, Some(wire::connector(&c))))
}

/// The persistent fields of `PATCH /v1/connectors/{id}` sluice acts on; others are ignored.
#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct UpdateBody {
    paused: Option<bool>,
    schedule_type: Option<String>,
    sync_frequency: Option<u32>,
    daily_sync_time: Option<String>,
}

/// `PATCH /v1/connectors/{id}`.
pub(crate) async fn update(
    caller: KeyCaller,
    Path(cid): Path<String>,
    bytes: Bytes,
) -> FtResult<Response> {
    caller.require(AccessLevel::ReadWrite)?;
    let b: UpdateBody = body(&bytes)?;
    let change = ConnectorChange {
        paused: b.paused,
        schedule_type: b.schedule_type,
        sync_frequency: b.sync_frequency,
        daily_sync_time: b.daily_sync_time,
    };
    let c = caller
        .service
        .update_connector(&id(&cid)?, &change)
        .await
        .map_err(fail)?;
    Ok(success(
        Some("Connector has been updated".into()),
        Some(wire::connector(&c)),
    ))
}

/// `POST /v1/connectors/{id}/force`: a sync that replaces a running one.
pub(crate) async fn force(caller: KeyCaller, Path(cid): Path<String>) -> FtResult<Response> {
    caller.require(AccessLevel::ReadExecRefresh)?;
    let id = id(&cid)?;
    let outcome = caller
        .service
        .sync_connector(&id, true)
        .await
        .map_err(fail)?;
    Ok(triggered(&id, &outcome))
}

#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct SyncBody {
    force: Option<bool>,
}

/// `POST /v1/connectors/{id}/sync` (`{"force": bool}`).
pub(crate) async fn sync(
    caller: KeyCaller,
    Path(cid): Path<String>,
    bytes: Bytes,
) -> FtResult<Response> {
    caller.require(AccessLevel::ReadExecRefresh)?;
    let b: SyncBody = body(&bytes)?;
    let id = id(&cid)?;
    let outcome = caller
        .service
        .sync_connector(&id, b.force.unwrap_or(false))
        .await
        .map_err(fail)?;
    Ok(triggered(&id, &outcome))
}

#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct ResyncBody {
    scope: Option<BTreeMap<String, Vec<String>>>,
}

/// `POST /v1/connectors/{id}/resync` (`{"scope": {schema: [table…]}}` or a historical resync).
pub(crate) async fn resync(
    caller: KeyCaller,
    Path(cid): Path<String>,
    bytes: Bytes,
) -> FtResult<Response> {
    caller.require(AccessLevel::ReadExecRefresh)?;
    let b: ResyncBody = body(&bytes)?;
    let id = id(&cid)?;
    caller
        .service
        .resync_connector(&id, b.scope)
        .await
        .map_err(fail)?;
    Ok(success(
        Some(format!(
            "Re-sync has been triggered successfully for connector with id '{id}'"
        )),
        None,
    ))
}

/// `POST /v1/connectors/{id}/schemas/tables/resync` (`{schema: [table…]}`).
pub(crate) async fn resync_tables(
    caller: KeyCaller,
    Path(cid): Path<String>,
    bytes: Bytes,
) -> FtResult<Response> {
    caller.require(AccessLevel::ReadExecRefresh)?;
    let tables: BTreeMap<String, Vec<String>> = body(&bytes)?;
    let id = id(&cid)?;
    caller
        .service
        .resync_connector_tables(&id, &tables)
        .await
        .map_err(fail)?;
    Ok(success(
        Some(format!(
            "Re-sync has been triggered successfully for the tables of connector with id '{id}'"
        )),
        None,
    ))
}

/// `POST /v1/connectors/{id}/schemas/{schema}/tables/{table}/resync`.
pub(crate) async fn resync_table(
    caller: KeyCaller,
    Path((cid, schema, table)): Path<(String, String, String)>,
) -> FtResult<Response> {
    caller.require(AccessLevel::ReadExecRefresh)?;
    let id = id(&cid)?;
    let tables = BTreeMap::from([(schema.clone(), vec![table.clone()])]);
    caller
        .service
        .resync_connector_tables(&id, &tables)
        .await
        .map_err(fail)?;
    Ok(success(
        Some(format!(
            "Re-sync has been triggered successfully for table {schema}.{table} of connector with id '{id}'"
        )),
        None,
    ))
}

/// `POST /v1/connectors/{id}/test`.
pub(crate) async fn test(caller: KeyCaller, Path(cid): Path<String>) -> FtResult<Response> {
    caller.require(AccessLevel::ReadExec)?;
    let c = caller
        .service
        .test_connector(&id(&cid)?)
        .await
        .map_err(fail)?;
    Ok(success(
        Some("Setup tests were completed".into()),
        Some(wire::connector(&c)),
    ))
}

/// `GET /v1/connectors/{id}/schemas`.
pub(crate) async fn schemas(caller: KeyCaller, Path(cid): Path<String>) -> FtResult<Response> {
    caller.require(AccessLevel::ReadOnly)?;
    let config = caller
        .service
        .connector_schema(&id(&cid)?)
        .await
        .map_err(fail)?;
    Ok(success(None, Some(wire::schema_config(&config))))
}

#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct ColumnBody {
    enabled: Option<bool>,
    hashed: Option<bool>,
}

#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct TableBody {
    enabled: Option<bool>,
    sync_mode: Option<String>,
    #[serde(default)]
    columns: BTreeMap<String, ColumnBody>,
}

#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct SchemaBody {
    enabled: Option<bool>,
    #[serde(default)]
    tables: BTreeMap<String, TableBody>,
}

#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct SchemasBody {
    schema_change_handling: Option<String>,
    #[serde(default)]
    schemas: BTreeMap<String, SchemaBody>,
}

fn table_patch(t: TableBody) -> FtResult<TablePatch> {
    let mut columns = BTreeMap::new();
    for (name, c) in t.columns {
        if c.hashed == Some(true) {
            return Err(FivetranError::invalid(format!(
                "column {name}: hashing columns is not supported"
            )));
        }
        columns.insert(name, c.enabled);
    }
    Ok(TablePatch {
        enabled: t.enabled,
        sync_mode: t.sync_mode,
        columns,
    })
}

fn schema_patch(s: SchemaBody) -> FtResult<SchemaPatch> {
    let mut tables = BTreeMap::new();
    for (name, t) in s.tables {
        tables.insert(name, table_patch(t)?);
    }
    Ok(SchemaPatch {
        enabled: s.enabled,
        tables,
    })
}

async fn apply(caller: &KeyCaller, cid: &str, change: SchemaChange) -> FtResult<Response> {
    let config = caller
        .service
        .update_connector_schema(&id(cid)?, &change)
        .await
        .map_err(fail)?;
    Ok(success(
        Some("Connector schema config has been updated".into()),
        Some(wire::schema_config(&config)),
    ))
}

/// `PATCH /v1/connectors/{id}/schemas`.
pub(crate) async fn patch_schemas(
    caller: KeyCaller,
    Path(cid): Path<String>,
    bytes: Bytes,
) -> FtResult<Response> {
    caller.require(AccessLevel::ReadWrite)?;
    let b: SchemasBody = body(&bytes)?;
    let mut change = SchemaChange {
        schema_change_handling: b.schema_change_handling,
        ..Default::default()
    };
    for (name, s) in b.schemas {
        change.schemas.insert(name, schema_patch(s)?);
    }
    apply(&caller, &cid, change).await
}

/// `PATCH /v1/connectors/{id}/schemas/{schema}`.
pub(crate) async fn patch_schema(
    caller: KeyCaller,
    Path((cid, schema)): Path<(String, String)>,
    bytes: Bytes,
) -> FtResult<Response> {
    caller.require(AccessLevel::ReadWrite)?;
    let b: SchemaBody = body(&bytes)?;
    let mut change = SchemaChange::default();
    change.schemas.insert(schema, schema_patch(b)?);
    apply(&caller, &cid, change).await
}

/// `PATCH /v1/connectors/{id}/schemas/{schema}/tables/{table}`.
pub(crate) async fn patch_table(
    caller: KeyCaller,
    Path((cid, schema, table)): Path<(String, String, String)>,
    bytes: Bytes,
) -> FtResult<Response> {
    caller.require(AccessLevel::ReadWrite)?;
    let b: TableBody = body(&bytes)?;
    let mut change = SchemaChange::default();
    let mut patch = SchemaPatch::default();
    patch.tables.insert(table, table_patch(b)?);
    change.schemas.insert(schema, patch);
    apply(&caller, &cid, change).await
}

/// `GET /v1/connectors/{id}/schemas/{schema}/tables/{table}/columns`.
pub(crate) async fn columns(
    caller: KeyCaller,
    Path((cid, schema, table)): Path<(String, String, String)>,
) -> FtResult<Response> {
    caller.require(AccessLevel::ReadOnly)?;
    let id = id(&cid)?;
    let config = caller.service.connector_schema(&id).await.map_err(fail)?;
    let t = config
        .schemas
        .get(&schema)
        .and_then(|s| s.tables.get(&table))
        .ok_or_else(|| {
            FivetranError::not_found(
                "Table",
                format!("connector '{id}' has no table '{table}' in schema '{schema}'"),
            )
        })?;
    Ok(success(
        None,
        Some(serde_json::json!({"columns": wire::columns(t)})),
    ))
}

#[derive(Deserialize, Default, ToSchema)]
pub(crate) struct ReloadBody {
    exclude_mode: Option<String>,
}

/// `POST /v1/connectors/{id}/schemas/reload` (`{"exclude_mode": PRESERVE|INCLUDE|EXCLUDE}`).
pub(crate) async fn reload(
    caller: KeyCaller,
    Path(cid): Path<String>,
    bytes: Bytes,
) -> FtResult<Response> {
    caller.require(AccessLevel::ReadWrite)?;
    let b: ReloadBody = body(&bytes)?;
    let mode: ExcludeMode = b
        .exclude_mode
        .as_deref()
        .unwrap_or("PRESERVE")
        .parse()
        .map_err(fail)?;
    let config = caller
        .service
        .reload_connector_schema(&id(&cid)?, mode)
        .await
        .map_err(fail)?;
    Ok(success(None, Some(wire::schema_config(&config))))
}
