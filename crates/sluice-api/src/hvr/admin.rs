//! HVR: the hub server (props, tests, environment), the repository it runs on and its props, the
//! wallet (sluice's sealed secrets), and hub snapshots.

use std::collections::BTreeMap;

use axum::Json as Out;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use sluice_model::AccessLevel;
use sluice_service::snapshot::SnapshotRequest;
use utoipa::ToSchema;

use super::hub_name;
use super::hubs::PropsDelete;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody, QueryList};

const API: &str = "/api/latest";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            &format!("{API}/hubserver/props"),
            get(server_props)
                .patch(server_props_patch)
                .put(server_props_put),
        )
        .route(
            &format!("{API}/hubserver/props_delete"),
            post(server_props_delete),
        )
        .route(&format!("{API}/hubserver/test"), post(server_test))
        .route(
            &format!("{API}/hubserver/props_test"),
            post(server_props_test),
        )
        .route(&format!("{API}/hubserver/env/vars"), get(env_vars))
        .route(
            &format!("{API}/hubserver/env/odbc_drivers"),
            get(odbc_drivers),
        )
        .route(&format!("{API}/hubserver/env/oratab"), get(oratab))
        .route(&format!("{API}/hubserver/dirs"), get(dirs))
        .route(
            &format!("{API}/repos"),
            get(repos).post(repos_create).delete(repos_drop),
        )
        .route(
            &format!("{API}/repos/props"),
            get(repos_props)
                .patch(repos_props_patch)
                .put(repos_props_put),
        )
        .route(
            &format!("{API}/repos/props_delete"),
            post(repos_props_delete),
        )
        .route(&format!("{API}/wallet"), post(wallet_create))
        .route(&format!("{API}/wallet/props"), get(wallet_props))
        .route(&format!("{API}/wallet/change"), post(wallet_change))
        .route(&format!("{API}/wallet/disable"), post(wallet_disable))
        .route(
            &format!("{API}/wallet/key_history_delete"),
            post(wallet_key_history_delete),
        )
        .route(&format!("{API}/wallet/key_rotate"), post(wallet_key_rotate))
        .route(&format!("{API}/wallet/migrate"), post(wallet_migrate))
        .route(
            &format!("{API}/wallet/reencrypt_continue"),
            post(wallet_reencrypt_continue),
        )
        .route(&format!("{API}/hubs/{{hub}}/snapshot"), post(snapshot_save))
        .route(&format!("{API}/snapshot"), post(snapshot_restore))
        .route(&format!("{API}/snapshot_inspect"), post(snapshot_inspect))
}

type Props = BTreeMap<String, Json>;

/// A PATCH body: `null` deletes.
fn patch_changes(body: Props) -> BTreeMap<String, Option<Json>> {
    body.into_iter()
        .map(|(k, v)| (k, (!v.is_null()).then_some(v)))
        .collect()
}

/// A PUT body: every value set (`null` is refused).
fn put_changes(body: Props) -> ApiResult<BTreeMap<String, Option<Json>>> {
    body.into_iter()
        .map(|(k, v)| {
            if v.is_null() {
                Err(ApiError::invalid(format!(
                    "prop {k}: null is not a value (PUT replaces every prop; leave it out to delete it)"
                )))
            } else {
                Ok((k, Some(v)))
            }
        })
        .collect()
}

fn delete_changes(body: PropsDelete) -> ApiResult<BTreeMap<String, Option<Json>>> {
    if body.props.is_empty() {
        return Err(ApiError::invalid("props: name at least one prop"));
    }
    Ok(body.props.into_iter().map(|k| (k, None)).collect())
}

// ---- hub server ----

async fn server_props(caller: Caller, q: QueryList) -> ApiResult<Out<Props>> {
    Ok(Out(caller
        .service
        .hub_server_props(&q.all("fetch"))
        .await?))
}

async fn server_props_patch(
    caller: Caller,
    JsonBody(body): JsonBody<Props>,
) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    caller
        .service
        .change_hub_server_props(&patch_changes(body), false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn server_props_put(
    caller: Caller,
    JsonBody(body): JsonBody<Props>,
) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    caller
        .service
        .change_hub_server_props(&put_changes(body)?, true)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn server_props_delete(
    caller: Caller,
    JsonBody(body): JsonBody<PropsDelete>,
) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    caller
        .service
        .change_hub_server_props(&delete_changes(body)?, false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn server_test(caller: Caller) -> ApiResult<StatusCode> {
    caller.service.test_hub_server().await?;
    Ok(StatusCode::OK)
}

/// `POST /hubserver/props_test`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PropsTest {
    /// Whether `props` are all the props (`true`) or changes to the stored ones.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    props_from: Option<crate::extract::Flag>,
    /// The props to test (`null` deletes one).
    #[schema(value_type = Object)]
    props: Props,
}

async fn server_props_test(
    caller: Caller,
    JsonBody(body): JsonBody<PropsTest>,
) -> ApiResult<Out<Json>> {
    caller.require(AccessLevel::SysAdmin)?;
    let _ = body.props_from;
    let discovered = caller
        .service
        .test_hub_server_props(&patch_changes(body.props))
        .await?;
    Ok(Out(json!({ "discovered_props": discovered })))
}

async fn env_vars(caller: Caller, q: QueryList) -> ApiResult<Out<BTreeMap<String, String>>> {
    caller.require(AccessLevel::SysAdmin)?;
    Ok(Out(caller.service.hub_server_env(&q.all("vars"))?))
}

async fn odbc_drivers(caller: Caller) -> ApiResult<Out<Json>> {
    caller.require(AccessLevel::SysAdmin)?;
    // sluice's connectors are native drivers: no ODBC driver is installed or used.
    Ok(Out(json!("")))
}

async fn oratab(caller: Caller) -> ApiResult<Out<Json>> {
    caller.require(AccessLevel::SysAdmin)?;
    // sluice has no Oracle connector and reads no oratab.
    Ok(Out(json!({"oracle_sid": "", "oracle_home": ""})))
}

/// Why `GET /hubserver/dirs` is not in sluice.
pub(crate) const DIRS: &str = "sluice does not browse the hub server's file system: it has no \
     file locations, and a SQLite location names its file inside the hub server's data directory \
     (SLUICE_DATA_DIR; a relative Database_Name is taken from there)";

async fn dirs(caller: Caller) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    Err(super::product::not_in_sluice(DIRS))
}

// ---- repository ----

async fn repos(caller: Caller) -> ApiResult<Out<Json>> {
    let sysadmin = caller.identity.level.allows(AccessLevel::SysAdmin);
    let version = sluice_service::hub_server::repository_version();
    let mut out = json!({
        "current_user_access": {"level": if sysadmin { "SysAdmin" } else { "None" }},
        "version": {"current": version, "required": version},
    });
    if let Some(r) = caller.service.repository_facts() {
        out["class"] = json!(r.class);
        // Where the repository is: for SysAdmins only (never its password).
        if sysadmin {
            out["database"] = json!(r.database);
            if let Some(h) = r.host {
                out["host"] = json!(h);
            }
            if let Some(p) = r.port {
                out["port"] = json!(p);
            }
            if let Some(u) = r.user {
                out["user"] = json!(u);
            }
        }
    }
    Ok(Out(out))
}

/// Why the repository is neither created nor dropped over the API.
const REPOSITORY_FIXED: &str = "the repository is chosen when `sluice serve` starts \
     (--repository): sluice creates and migrates its tables then, and a running server never \
     drops them";

async fn repos_create(caller: Caller) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    Err(ApiError::invalid(format!(
        "the repository exists already; {REPOSITORY_FIXED}"
    )))
}

async fn repos_drop(caller: Caller) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    Err(ApiError::invalid(format!(
        "the repository cannot be dropped through the API; {REPOSITORY_FIXED}"
    )))
}

async fn repos_props(caller: Caller, q: QueryList) -> ApiResult<Out<Props>> {
    Ok(Out(caller
        .service
        .repository_props(&q.all("fetch"))
        .await?))
}

async fn repos_props_patch(
    caller: Caller,
    JsonBody(body): JsonBody<Props>,
) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    caller
        .service
        .change_repository_props(&patch_changes(body), false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn repos_props_put(caller: Caller, JsonBody(body): JsonBody<Props>) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    caller
        .service
        .change_repository_props(&put_changes(body)?, true)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn repos_props_delete(
    caller: Caller,
    JsonBody(body): JsonBody<PropsDelete>,
) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    caller
        .service
        .change_repository_props(&delete_changes(body)?, false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- wallet ----

/// `POST /wallet`, `/wallet/change`, `/wallet/migrate`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WalletConfig {
    /// The wallet's props: only `Wallet_Type` `SOFTWARE` (sluice's master key).
    #[serde(default)]
    #[schema(value_type = Object)]
    props: Props,
    /// A wallet password: sluice's wallet has none (refused).
    #[serde(default)]
    password: Option<String>,
    /// `/wallet/migrate`: also rotate the encryption key.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    rotate_encryption_key: Option<crate::extract::Flag>,
}

fn check_config(caller: &Caller, body: &WalletConfig) -> ApiResult<()> {
    if body.password.is_some() {
        return Err(ApiError::invalid(
            "password: sluice's wallet has no password: its master key is SLUICE_SECRET_KEY or \
             the key file, given to `sluice serve`",
        ));
    }
    let null: Vec<&String> = body
        .props
        .iter()
        .filter(|(_, v)| v.is_null())
        .map(|(k, _)| k)
        .collect();
    if let Some(name) = null.first() {
        return Err(ApiError::invalid(format!(
            "wallet prop {name} cannot be removed: sluice's wallet is its master key"
        )));
    }
    caller.service.check_wallet_config(&body.props)?;
    Ok(())
}

async fn wallet_create(
    caller: Caller,
    JsonBody(body): JsonBody<WalletConfig>,
) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    if body.rotate_encryption_key.is_some() {
        return Err(ApiError::invalid(
            "rotate_encryption_key: not a field of POST /wallet",
        ));
    }
    // sluice's wallet exists as soon as the server has its master key: creating it again with
    // the same configuration changes nothing.
    check_config(&caller, &body)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn wallet_props(caller: Caller, q: QueryList) -> ApiResult<Out<Props>> {
    caller.require(AccessLevel::SysAdmin)?;
    let mut props = caller.service.wallet_props().await?;
    let fetch = q.all("fetch");
    if !fetch.is_empty() {
        props.retain(|k, _| fetch.contains(k));
    }
    Ok(Out(props))
}

async fn wallet_change(
    caller: Caller,
    JsonBody(body): JsonBody<WalletConfig>,
) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    if body.rotate_encryption_key.is_some() {
        return Err(ApiError::invalid(
            "rotate_encryption_key: not a field of POST /wallet/change (see /wallet/migrate)",
        ));
    }
    check_config(&caller, &body)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn wallet_migrate(
    caller: Caller,
    JsonBody(body): JsonBody<WalletConfig>,
) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    check_config(&caller, &body)?;
    if body.rotate_encryption_key.is_some_and(|f| f.0) {
        caller.service.rotate_wallet_key().await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /wallet/disable`, `/wallet/reencrypt_continue`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WalletForce {
    /// HVR's `force`.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    force: Option<crate::extract::Flag>,
}

async fn wallet_disable(
    caller: Caller,
    JsonBody(body): JsonBody<WalletForce>,
) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    let _ = body.force;
    Err(ApiError::invalid(
        "sluice's wallet cannot be disabled: a hub server with a secret key always stores location \
         passwords sealed (give passwords as ${VAR} references in definitions files to keep them \
         out of the repository)",
    ))
}

async fn wallet_reencrypt_continue(
    caller: Caller,
    JsonBody(body): JsonBody<WalletForce>,
) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    let _ = body.force;
    caller.service.reseal_secrets().await?;
    Ok(StatusCode::OK)
}

async fn wallet_key_rotate(caller: Caller) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    caller.service.rotate_wallet_key().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /wallet/key_history_delete`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyHistoryDelete {
    /// Delete keys before this sequence.
    #[serde(default)]
    #[schema(minimum = 0)]
    before_key_sequence: Option<u32>,
    /// Delete keys made before this time.
    #[serde(default)]
    #[schema(format = DateTime)]
    before_rotation_tstamp: Option<String>,
}

async fn wallet_key_history_delete(
    caller: Caller,
    JsonBody(body): JsonBody<KeyHistoryDelete>,
) -> ApiResult<Out<Json>> {
    caller.require(AccessLevel::SysAdmin)?;
    let before_time = body
        .before_rotation_tstamp
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    ApiError::invalid(format!(
                        "before_rotation_tstamp: {t:?} is not a time (2024-05-01T10:11:12Z)"
                    ))
                })
        })
        .transpose()?;
    let deleted = caller
        .service
        .delete_wallet_key_history(body.before_key_sequence, before_time)
        .await?;
    Ok(Out(json!({ "key_history_deleted": deleted })))
}

// ---- snapshots ----

/// `POST /hubs/{hub}/snapshot`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotSave {
    /// Why it is saved.
    #[serde(default)]
    #[schema(max_length = 1000)]
    reason: Option<String>,
    /// Only this channel (and every location).
    #[serde(default)]
    #[schema(pattern = "^([a-zA-Z_])([0-9_a-zA-Z]*)")]
    channel_focus: Option<String>,
    /// Events kept: sluice keeps none (`all` are trimmed), whatever is asked.
    #[serde(default)]
    event_trim: Option<String>,
    /// Logs kept: none.
    #[serde(default)]
    log_trim: Option<String>,
    /// Statistics kept: none.
    #[serde(default)]
    stats_trim: Option<String>,
    /// Definitions trimmed: sluice keeps the current definitions only.
    #[serde(default)]
    definition_trim: Option<String>,
    /// HVR's DBMS log dump: sluice has none.
    #[serde(default)]
    dblog_dump: Option<i64>,
    /// HVR's transaction files: sluice has none.
    #[serde(default)]
    txfiles: Option<i64>,
}

async fn snapshot_save(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<SnapshotSave>,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::HubOwner).await?;
    if body.reason.as_ref().is_some_and(|r| r.len() > 1000) {
        return Err(ApiError::invalid("reason: at most 1000 bytes"));
    }
    let _ = (
        &body.event_trim,
        &body.log_trim,
        &body.stats_trim,
        &body.definition_trim,
        body.dblog_dump,
        body.txfiles,
    );
    let reference = caller
        .service
        .save_snapshot(
            &hub,
            &SnapshotRequest {
                reason: body.reason,
                channel_focus: body.channel_focus,
            },
        )
        .await?;
    Ok(Out(json!({ "ref": reference })))
}

/// `POST /snapshot`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotRestore {
    /// The snapshot (as `POST /hubs/{hub}/snapshot` answered it).
    #[serde(rename = "ref")]
    reference: String,
    /// The new hub.
    #[schema(pattern = "^([a-zA-Z_])([0-9_a-zA-Z]*)")]
    hub: String,
    /// The new hub's description (default: the saved one).
    #[serde(default)]
    description: Option<String>,
}

async fn snapshot_restore(
    caller: Caller,
    JsonBody(body): JsonBody<SnapshotRestore>,
) -> ApiResult<StatusCode> {
    // HVR's HubCreation: in sluice creating hubs needs SysAdmin.
    caller.require(AccessLevel::SysAdmin)?;
    caller
        .service
        .restore_snapshot(&body.reference, &body.hub, body.description.as_deref())
        .await?;
    Ok(StatusCode::OK)
}

/// `POST /snapshot_inspect`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotRef {
    /// The snapshot.
    #[serde(rename = "ref")]
    reference: String,
}

async fn snapshot_inspect(
    caller: Caller,
    JsonBody(body): JsonBody<SnapshotRef>,
) -> ApiResult<Out<Json>> {
    let hub = caller.service.snapshot_hub(&body.reference).await?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    Ok(Out(caller
        .service
        .inspect_snapshot(&body.reference)
        .await?))
}
