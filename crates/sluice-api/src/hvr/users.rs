//! HVR's User Config Interface and first-run set-up: users (`/users…`), their props, their props
//! on one hub with their access level there (`/hubs/{hub}/users/{user}/props…`), passwords,
//! `POST /auth/v1/setup` and `POST /auth`.
//!
//! Who may do what: a user reads and changes their own props and password; a SysAdmin manages
//! everyone's, and is the only one who sets a level (server-wide, or on one hub with the
//! `Access_Level` hub prop). A setup-mode token acts as SysAdmin on these routes only (see
//! `extract.rs`).

use std::collections::BTreeMap;

use axum::Json as Out;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use sluice_model::AccessLevel;
use sluice_service::PropWrite;
use sluice_service::access::{ACCESS_LEVEL_PROP, Props, is_reserved_user_prop};
use sluice_service::auth::PasswordChange;
use utoipa::ToSchema;

use super::hub_name;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody, QueryList};

/// The auth versions `POST /auth` lists.
pub(crate) const AUTH_VERSIONS: &[&str] = &["v1"];

pub(crate) fn routes() -> Router<AppState> {
    const U: &str = "/api/latest/users/{user}";
    const HU: &str = "/api/latest/hubs/{hub}/users/{user}";
    Router::new()
        .route("/auth", post(auth_versions))
        .route("/auth/v1/setup", post(setup))
        .route("/api/latest/users", get(list).post(create))
        .route(U, get(one).patch(update).delete(delete))
        .route(&format!("{U}/password"), axum::routing::put(set_password))
        .route(
            &format!("{U}/props"),
            get(props_get).patch(props_patch).put(props_put),
        )
        .route(&format!("{U}/props_delete"), post(props_delete))
        .route(
            &format!("{HU}/props"),
            get(hub_props_get).patch(hub_props_patch).put(hub_props_put),
        )
        .route(&format!("{HU}/props_delete"), post(hub_props_delete))
}

/// `POST /auth`: the auth versions (`/auth/v1/…`).
pub(crate) async fn auth_versions() -> Out<Vec<&'static str>> {
    Out(AUTH_VERSIONS.to_vec())
}

/// `POST /auth/v1/setup`: a setup-mode token while the hub server has no user.
pub(crate) async fn setup(State(state): State<AppState>) -> ApiResult<Out<Json>> {
    let tokens = state.service.setup_login().await?;
    Ok(Out(serde_json::to_value(tokens).map_err(|e| {
        ApiError::invalid(format!("cannot answer the tokens: {e}"))
    })?))
}

/// Refuses (403) unless the caller is `name` or a SysAdmin.
fn require_self_or_admin(caller: &Caller, name: &str) -> ApiResult<()> {
    if caller.identity.user == name {
        return Ok(());
    }
    caller.require(AccessLevel::SysAdmin).map_err(|_| {
        ApiError::forbidden(format!(
            "user {} may read and change only their own user; user {} needs SysAdmin",
            caller.identity.user,
            shown(name)
        ))
    })
}

/// A name from a path, cut for messages.
fn shown(name: &str) -> String {
    name.chars().take(64).collect()
}

/// Props HVR calls contact props (`?fetch=contact_props`).
const CONTACT_PROPS: &[&str] = &["Full_Name", "Email"];

/// What `?fetch=` asks of a user: (authentication, props, only contact props).
fn user_fetch(q: &QueryList) -> ApiResult<(bool, bool, bool)> {
    let wanted = q.all("fetch");
    if wanted.is_empty() {
        return Ok((true, true, false));
    }
    let (mut auth, mut all, mut contact) = (false, false, false);
    for w in &wanted {
        match w.as_str() {
            "authentication" => auth = true,
            "all_props" => all = true,
            "contact_props" => contact = true,
            other => {
                return Err(ApiError::invalid(format!(
                    "fetch: expected authentication, contact_props or all_props, got {:?}",
                    shown(other)
                )));
            }
        }
    }
    Ok((auth, all || contact, contact && !all))
}

fn user_json(u: &sluice_repo::UserRecord, props: Option<&Props>, q: &QueryList) -> ApiResult<Json> {
    let (auth, with_props, contact_only) = user_fetch(q)?;
    let mut o = Map::new();
    o.insert("level".into(), json!(u.level));
    o.insert(
        "created".into(),
        json!(u.created.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
    );
    o.insert("creator".into(), json!(u.creator));
    if auth {
        o.insert("authentication".into(), json!("local"));
    }
    if with_props {
        let props: Map<String, Json> = props
            .into_iter()
            .flatten()
            .filter(|(k, _)| !contact_only || CONTACT_PROPS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        o.insert("props".into(), Json::Object(props));
    }
    Ok(Json::Object(o))
}

/// `GET /users`: every user for a SysAdmin; the caller alone for anyone else.
pub(crate) async fn list(caller: Caller, q: QueryList) -> ApiResult<Out<Json>> {
    let admin = caller.identity.level == AccessLevel::SysAdmin;
    let users = caller.service.users().await?;
    let props = caller.service.all_user_props().await?;
    let mut map = Map::new();
    for u in users
        .iter()
        .filter(|u| admin || u.name == caller.identity.user)
    {
        map.insert(u.name.clone(), user_json(u, props.get(&u.name), &q)?);
    }
    Ok(Out(Json::Object(map)))
}

/// `GET /users/{user}`.
pub(crate) async fn one(
    caller: Caller,
    Path(name): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    require_self_or_admin(&caller, &name)?;
    let users = caller.service.users().await?;
    let u = users
        .iter()
        .find(|u| u.name == name)
        .ok_or_else(|| ApiError::not_found(format!("user {} does not exist", shown(&name))))?;
    let props = caller.service.user_props(&name).await?;
    Ok(Out(user_json(u, Some(&props), &q)?))
}

/// `POST /users` (HVR: `user`, `authentication`, `password`, `props`; sluice also takes
/// `level`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUser {
    /// 1 to 64 letters, digits, `_`, `.`, `@` or `-`.
    #[schema(pattern = "^[A-Za-z0-9_.@-]{1,64}$")]
    user: String,
    /// `local` (the default): sluice authenticates local users only; `pam`, `plugin` and
    /// `windows` are refused.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(local|pam|plugin|windows)$", nullable = false)]
    authentication: Option<String>,
    /// At least 8 characters. Without one the user cannot log in until a SysAdmin sets one.
    #[serde(default)]
    #[schema(nullable = false)]
    password: Option<String>,
    /// The user's props (HVR's user properties: `Full_Name`, UI preferences…).
    #[serde(default)]
    #[schema(value_type = Option<UserProps>, nullable = false)]
    props: Option<BTreeMap<String, Json>>,
    /// sluice: the server-wide level (default ReadOnly; SysAdmin when created with a setup-mode
    /// token).
    #[serde(default)]
    #[schema(value_type = Option<crate::shapes::AccessLevel>, nullable = false)]
    level: Option<AccessLevel>,
}

/// Props by name: integers, strings or objects (HVR's `prop` maps).
#[derive(ToSchema)]
#[allow(dead_code, reason = "a schema of the document only")]
pub(crate) struct UserProps(BTreeMap<String, Json>);

/// `POST /users`.
pub(crate) async fn create(
    caller: Caller,
    JsonBody(body): JsonBody<NewUser>,
) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    match body.authentication.as_deref() {
        None | Some("local") => {}
        Some(other @ ("pam" | "plugin" | "windows")) => {
            return Err(ApiError::invalid(format!(
                "authentication {other:?} is not available: sluice authenticates local users \
                 only (users with a password kept by the hub server); use \"local\""
            )));
        }
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "authentication: expected local, pam, plugin or windows, got {:?}",
                shown(other)
            )));
        }
    }
    let level = body.level.unwrap_or(if caller.identity.is_setup() {
        AccessLevel::SysAdmin
    } else {
        AccessLevel::ReadOnly
    });
    caller
        .service
        .create_user_with_props(
            &body.user,
            level,
            body.password.as_deref(),
            &body.props.unwrap_or_default(),
        )
        .await?;
    // HVR answers 204 here (not 201).
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH /users/{user}` (sluice's): a new level (SysAdmin only) or password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserChange {
    #[serde(default)]
    #[schema(value_type = Option<crate::shapes::AccessLevel>, nullable = false)]
    level: Option<AccessLevel>,
    /// At least 8 characters.
    #[serde(default)]
    #[schema(nullable = false)]
    password: Option<String>,
    /// Needed when users change their own password.
    #[serde(default)]
    #[schema(nullable = false)]
    current_password: Option<String>,
}

/// Whether the caller changes their own password (which needs the current one) rather than a
/// SysAdmin resetting someone else's.
fn password_change<'a>(
    caller: &Caller,
    name: &str,
    new: Option<&'a str>,
    current: Option<&'a str>,
) -> ApiResult<(Option<PasswordChange<'a>>, bool)> {
    let own = caller.identity.user == name;
    if !own {
        caller.require(AccessLevel::SysAdmin)?;
    }
    Ok((new.map(|new| PasswordChange { new, current }), !own))
}

pub(crate) async fn update(
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<UserChange>,
) -> ApiResult<StatusCode> {
    // Users may change their own password (giving the current one); everything else needs
    // SysAdmin.
    if body.level.is_some() {
        caller.require(AccessLevel::SysAdmin)?;
    }
    let (change, reset) = password_change(
        &caller,
        &name,
        body.password.as_deref(),
        body.current_password.as_deref(),
    )?;
    caller
        .service
        .update_user(&name, body.level, change, reset)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /users/{user}/password` (HVR's shape): users setting their own give the current
/// password; a SysAdmin resetting someone else's does not.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordReset {
    /// At least 8 characters.
    new_password: String,
    #[serde(default)]
    #[schema(nullable = false)]
    current_password: Option<String>,
}

pub(crate) async fn set_password(
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PasswordReset>,
) -> ApiResult<StatusCode> {
    let (change, reset) = password_change(
        &caller,
        &name,
        Some(body.new_password.as_str()),
        body.current_password.as_deref(),
    )?;
    caller
        .service
        .update_user(&name, None, change, reset)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn delete(caller: Caller, Path(name): Path<String>) -> ApiResult<StatusCode> {
    caller.require(AccessLevel::SysAdmin)?;
    if caller.identity.user == name {
        return Err(ApiError::invalid("you cannot delete yourself"));
    }
    caller.service.delete_user(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) use super::hubs::PropsDelete;

/// Props `?fetch=` names (all when none).
fn fetched(mut props: Props, q: &QueryList) -> Json {
    let wanted = q.all("fetch");
    if !wanted.is_empty() {
        props.retain(|k, _| wanted.contains(k));
    }
    Json::Object(props.into_iter().collect())
}

/// A PATCH body: `null` deletes a prop (an empty body changes nothing).
fn patch_changes(body: BTreeMap<String, Json>) -> BTreeMap<String, Option<Json>> {
    body.into_iter()
        .map(|(k, v)| (k, (!v.is_null()).then_some(v)))
        .collect()
}

/// Refuses (403) a non-SysAdmin caller who names a prop that would change a level.
fn refuse_level_props<'a>(
    caller: &Caller,
    names: impl IntoIterator<Item = &'a String>,
    hub: bool,
) -> ApiResult<()> {
    if caller.identity.level == AccessLevel::SysAdmin {
        return Ok(());
    }
    for name in names {
        let level_prop = if hub {
            name.eq_ignore_ascii_case(ACCESS_LEVEL_PROP)
        } else {
            is_reserved_user_prop(name)
        };
        if level_prop {
            return Err(ApiError::forbidden(format!(
                "user {} may not change {}: only a SysAdmin sets levels and passwords through \
                 their own operations",
                caller.identity.user,
                shown(name)
            )));
        }
    }
    Ok(())
}

/// `GET /users/{user}/props`.
pub(crate) async fn props_get(
    caller: Caller,
    Path(name): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    require_self_or_admin(&caller, &name)?;
    Ok(Out(fetched(caller.service.user_props(&name).await?, &q)))
}

/// `PATCH /users/{user}/props`: sets the props given; `null` deletes one.
pub(crate) async fn props_patch(
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<BTreeMap<String, Json>>,
) -> ApiResult<StatusCode> {
    require_self_or_admin(&caller, &name)?;
    refuse_level_props(&caller, body.keys(), false)?;
    let changes = patch_changes(body);
    caller
        .service
        .write_user_props(&name, &changes, PropWrite::Merge)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /users/{user}/props`: the user's props become exactly those given.
pub(crate) async fn props_put(
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<BTreeMap<String, Json>>,
) -> ApiResult<StatusCode> {
    require_self_or_admin(&caller, &name)?;
    refuse_level_props(&caller, body.keys(), false)?;
    let changes = body.into_iter().map(|(k, v)| (k, Some(v))).collect();
    caller
        .service
        .write_user_props(&name, &changes, PropWrite::Replace)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /users/{user}/props_delete`.
pub(crate) async fn props_delete(
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PropsDelete>,
) -> ApiResult<StatusCode> {
    require_self_or_admin(&caller, &name)?;
    if body.props.is_empty() {
        return Err(ApiError::invalid("props: name at least one property"));
    }
    refuse_level_props(&caller, &body.props, false)?;
    let changes = body.props.into_iter().map(|k| (k, None)).collect();
    caller
        .service
        .write_user_props(&name, &changes, PropWrite::Merge)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /hubs/{hub}/users/{user}/props`: the user's props on the hub, with `Access_Level` when
/// they have an access entry there.
pub(crate) async fn hub_props_get(
    caller: Caller,
    Path((hub, name)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    require_self_or_admin(&caller, &name)?;
    Ok(Out(fetched(
        caller.service.hub_user_props(&hub, &name).await?,
        &q,
    )))
}

/// `PATCH /hubs/{hub}/users/{user}/props`: sets the props given; `null` deletes one. Only a
/// SysAdmin sets or deletes `Access_Level`.
pub(crate) async fn hub_props_patch(
    caller: Caller,
    Path((hub, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<BTreeMap<String, Json>>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    require_self_or_admin(&caller, &name)?;
    refuse_level_props(&caller, body.keys(), true)?;
    let changes = patch_changes(body);
    caller
        .service
        .write_hub_user_props(&hub, &name, &changes, PropWrite::Merge)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /hubs/{hub}/users/{user}/props`: the user's props on the hub become exactly those
/// given. A SysAdmin replaces `Access_Level` too (leaving it out removes the access entry);
/// a user replacing their own keeps the access entry as it is.
pub(crate) async fn hub_props_put(
    caller: Caller,
    Path((hub, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<BTreeMap<String, Json>>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    require_self_or_admin(&caller, &name)?;
    refuse_level_props(&caller, body.keys(), true)?;
    let (changes, how) = if caller.identity.level == AccessLevel::SysAdmin {
        let changes = body.into_iter().map(|(k, v)| (k, Some(v))).collect();
        (changes, PropWrite::Replace)
    } else {
        // Every other prop stored is deleted, Access_Level never touched.
        let stored = caller.service.hub_user_props(&hub, &name).await?;
        let mut changes: BTreeMap<String, Option<Json>> = stored
            .into_keys()
            .filter(|k| k != ACCESS_LEVEL_PROP)
            .map(|k| (k, None))
            .collect();
        changes.extend(body.into_iter().map(|(k, v)| (k, Some(v))));
        (changes, PropWrite::Merge)
    };
    caller
        .service
        .write_hub_user_props(&hub, &name, &changes, how)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /hubs/{hub}/users/{user}/props_delete`. Only a SysAdmin deletes `Access_Level`.
pub(crate) async fn hub_props_delete(
    caller: Caller,
    Path((hub, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<PropsDelete>,
) -> ApiResult<StatusCode> {
    let hub = hub_name(&hub)?;
    require_self_or_admin(&caller, &name)?;
    if body.props.is_empty() {
        return Err(ApiError::invalid("props: name at least one property"));
    }
    refuse_level_props(&caller, &body.props, true)?;
    let changes = body.props.into_iter().map(|k| (k, None)).collect();
    caller
        .service
        .write_hub_user_props(&hub, &name, &changes, PropWrite::Merge)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
