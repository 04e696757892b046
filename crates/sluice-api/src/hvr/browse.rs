//! HVR: location tests, database browsing, the query interface and table adapt.
//!
//! Browsing answers only what the location's own credentials can see (PostgreSQL schemas with
//! `USAGE`, MariaDB databases with a privilege). A `new_loc` location comes from the request body
//! and goes through the same location policy as a location the API defines (`docs/security.md`).

use std::collections::BTreeSet;

use axum::Json as Out;
use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use sluice_model::definition::ChannelColumn;
use sluice_model::{
    AccessLevel, BaseName, ChannelName, DataType, HubName, LocGroupName, LocationName, SchemaName,
    TableName, TableRef,
};
use sluice_service::browse::{
    AdaptCheck, AdaptRequest, ColumnCheck, DeleteTables, Diff, LocRef, MapspecEntry, TableCheck,
    TablePlace,
};
use utoipa::ToSchema;

use super::{channel_name, hub_name, loc_name, table_name};
use crate::AppState;
use crate::error::{ApiError, ApiResult, codes};
use crate::extract::{Caller, Flag, JsonBody, QueryList};
use crate::hvr::product::not_in_sluice;

pub(crate) fn routes() -> Router<AppState> {
    const H: &str = "/api/latest/hubs/{hub}";
    const L: &str = "/api/latest/hubs/{hub}/locs/{loc}";
    const N: &str = "/api/latest/hubs/{hub}/new_loc";
    const Q: &str = "/api/latest/hubs/{hub}/query/channels";
    const A: &str = "/api/latest/hubs/{hub}/channels/{channel}/locs/{loc}/adapt";
    Router::new()
        .route(&format!("{L}/test"), post(test_location))
        .route(&format!("{N}/test"), post(test_new_location))
        .route(&format!("{L}/db/schemas"), get(db_schemas))
        .route(&format!("{N}/db/schemas"), post(new_db_schemas))
        .route(&format!("{L}/db/tables"), get(db_tables))
        .route(&format!("{N}/db/tables"), post(new_db_tables))
        .route(&format!("{L}/db/tables/{{table}}/columns"), get(db_columns))
        .route(
            &format!("{N}/db/tables/{{table}}/columns"),
            post(new_db_columns),
        )
        .route(&format!("{L}/env/vars"), get(env_vars))
        .route(&format!("{N}/env/vars"), post(new_env_vars))
        .route(&format!("{L}/env/odbc_drivers"), get(env_odbc_drivers))
        .route(&format!("{N}/env/odbc_drivers"), post(new_env_odbc_drivers))
        .route(&format!("{L}/env/oratab"), get(env_oratab))
        .route(&format!("{N}/env/oratab"), post(new_env_oratab))
        .route(&format!("{H}/dirs"), get(hub_dirs))
        .route(&format!("{L}/dirs"), get(dirs))
        .route(&format!("{N}/dirs"), post(new_dirs))
        .route(Q, get(query_channels))
        .route(&format!("{Q}/{{channel}}/locs"), get(query_channel_locs))
        .route(
            &format!("{Q}/{{channel}}/tables"),
            get(query_channel_tables),
        )
        .route(
            &format!("{Q}/{{channel}}/locs/{{loc}}/tables/{{table}}"),
            get(query_channel_table),
        )
        .route(&format!("{A}/check"), post(adapt_check))
        .route(&format!("{A}/check/{{table}}"), post(adapt_check_table))
        .route(&format!("{A}/apply"), post(adapt_apply))
        .route(&format!("{A}/other_channels"), post(adapt_other_channels))
        .route(&format!("{H}/mapdoc/parse"), post(mapdoc_parse))
}

/// Why sluice lists no files: it has no file locations.
pub(crate) const NO_FILE_LOCATIONS: &str = "sluice has no file locations (its classes are postgresql, mariadb and sqlite), so there are no directories to list";

/// Why sluice lists no files of the hub: HVR browses them to pick files for file locations and
/// file-based settings, and sluice has neither; its server's file system is not shown.
pub(crate) const NO_HUB_FILES: &str = "sluice has no file locations and no file-based hub settings, so it lists no files of the hub server";

fn schema_name(field: &str, s: &str) -> ApiResult<SchemaName> {
    SchemaName::new(s).map_err(|e| ApiError::invalid(format!("{field}: {e}")))
}

/// The hub, after checking the caller's level on it.
///
/// Operations on a location not yet defined (`new_loc/…`) connect where the body says, with the
/// credentials it gives: they need ReadWrite (the level that defines locations), not the ReadOnly
/// HVR's document names, so a read-only user cannot make the hub server connect to a host of
/// their choosing.
async fn hub_for(caller: &Caller, hub: &str, level: AccessLevel) -> ApiResult<HubName> {
    let hub = hub_name(hub)?;
    caller.require_on(&hub, level).await?;
    Ok(hub)
}

/// A stored location of the hub (404 naming it when it does not exist).
async fn stored(caller: &Caller, hub: &HubName, loc: &str) -> ApiResult<LocationName> {
    let loc = loc_name(loc)?;
    caller.service.location(hub, &loc).await?;
    Ok(loc)
}

/// HVR's optional `channel` (the context the location is looked at in): it must exist.
async fn check_channel(caller: &Caller, hub: &HubName, channel: Option<&str>) -> ApiResult<()> {
    let Some(ch) = channel else {
        return Ok(());
    };
    let exists = match ChannelName::new(ch) {
        Ok(name) => caller.service.channel(hub, &name).await.is_ok(),
        Err(_) => false,
    };
    if exists {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            codes::UNKNOWN_CHANNEL,
            format!("channel {ch} does not exist"),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Location tests

/// `POST …/locs/{loc}/test`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocTestBody {
    /// The channel the location is tested for (it must exist).
    channel: Option<String>,
}

/// A location given in the body (`new_loc` operations).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewLocBody {
    /// The location's properties (`Class`, `Database_Host`, …).
    props: Json,
    /// A stored location whose properties `props` complete (a `null` prop removes one).
    props_from: Option<String>,
    /// The channel the location is looked at for (it must exist).
    channel: Option<String>,
    /// `…/db/tables`: the schema to list (else the location's default).
    schema: Option<String>,
    /// `…/env/vars`: the variables asked for.
    vars: Option<Vec<String>>,
    /// `…/dirs`: accepted; sluice has no file locations.
    #[allow(dead_code)] // accepted, not acted on
    path: Option<String>,
    /// `…/dirs`: accepted; sluice has no file locations.
    #[allow(dead_code)] // accepted, not acted on
    pattern: Option<String>,
    /// `…/dirs`: accepted; sluice has no file locations.
    #[allow(dead_code)] // accepted, not acted on
    local: Option<Flag>,
}

impl NewLocBody {
    fn doc(&self) -> ApiResult<Json> {
        if !self.props.is_object() {
            return Err(ApiError::invalid("props: expected an object of properties"));
        }
        super::wire::location_in(&json!({ "props": self.props }), "props")
    }

    fn props_from(&self) -> ApiResult<Option<LocationName>> {
        self.props_from
            .as_deref()
            .map(|s| {
                LocationName::new(s).map_err(|e| ApiError::invalid(format!("props_from: {e}")))
            })
            .transpose()
    }
}

/// Checks a `new_loc` body and runs `f` with the location it names.
async fn with_new_loc<T>(
    caller: &Caller,
    hub: &HubName,
    body: &NewLocBody,
    f: impl AsyncFnOnce(LocRef<'_>) -> ApiResult<T>,
) -> ApiResult<T> {
    check_channel(caller, hub, body.channel.as_deref()).await?;
    let doc = body.doc()?;
    let props_from = body.props_from()?;
    f(LocRef::Document {
        doc: &doc,
        props_from: props_from.as_ref(),
    })
    .await
}

pub(crate) async fn test_location(
    caller: Caller,
    Path((hub, loc)): Path<(String, String)>,
    JsonBody(body): JsonBody<LocTestBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    check_channel(&caller, &hub, body.channel.as_deref()).await?;
    let loc = loc_name(&loc)?;
    let test = caller.service.test_location_props(&hub, &loc).await?;
    let mut props: Map<String, Json> = test
        .report
        .discovered_props
        .into_iter()
        .map(|(k, v)| (k, Json::String(v)))
        .collect();
    if !test.not_used.is_empty() {
        let not_used: Map<String, Json> = test
            .not_used
            .into_iter()
            .map(|p| (p, json!("not used")))
            .collect();
        props.insert("Props_Not_Used".into(), Json::Object(not_used));
    }
    Ok(Out(json!({ "discovered_props": props })))
}

pub(crate) async fn test_new_location(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<NewLocBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadWrite).await?;
    check_channel(&caller, &hub, body.channel.as_deref()).await?;
    let doc = body.doc()?;
    let props_from = body.props_from()?;
    let report = caller
        .service
        .test_location_document(&hub, &doc, props_from.as_ref())
        .await?;
    Ok(Out(json!({ "discovered_props": report.discovered_props })))
}

// ---------------------------------------------------------------------------------------------
// Database browsing

pub(crate) async fn db_schemas(
    caller: Caller,
    Path((hub, loc)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    check_channel(&caller, &hub, q.one("channel")).await?;
    let loc = loc_name(&loc)?;
    let list = caller
        .service
        .location_schemas(&hub, LocRef::Stored(&loc))
        .await?;
    Ok(Out(json!({
        "schemas": list.schemas.iter().map(SchemaName::as_str).collect::<Vec<_>>(),
        "default_schema": list.default_schema.as_ref().map_or("", SchemaName::as_str),
    })))
}

pub(crate) async fn new_db_schemas(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<NewLocBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadWrite).await?;
    let list = with_new_loc(&caller, &hub, &body, async |loc| {
        Ok(caller.service.location_schemas(&hub, loc).await?)
    })
    .await?;
    Ok(Out(json!({
        "schemas": list.schemas.iter().map(SchemaName::as_str).collect::<Vec<_>>(),
    })))
}

fn tables_out(schema: Option<&SchemaName>, tables: &[TableRef]) -> Json {
    let mut out = Map::new();
    if let Some(s) = schema {
        out.insert("schema".into(), json!(s.as_str()));
    }
    out.insert(
        "tables".into(),
        Json::Array(
            tables
                .iter()
                .map(|t| json!({ "base_name": t.name.as_str(), "type": "Table" }))
                .collect(),
        ),
    );
    Json::Object(out)
}

pub(crate) async fn db_tables(
    caller: Caller,
    Path((hub, loc)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    check_channel(&caller, &hub, q.one("channel")).await?;
    let loc = loc_name(&loc)?;
    let schema = q
        .one("schema")
        .map(|s| schema_name("schema", s))
        .transpose()?;
    let (schema, tables) = caller
        .service
        .location_tables(&hub, LocRef::Stored(&loc), schema.as_ref())
        .await?;
    Ok(Out(tables_out(schema.as_ref(), &tables)))
}

pub(crate) async fn new_db_tables(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<NewLocBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadWrite).await?;
    let schema = body
        .schema
        .as_deref()
        .map(|s| schema_name("schema", s))
        .transpose()?;
    let (schema, tables) = with_new_loc(&caller, &hub, &body, async |loc| {
        Ok(caller
            .service
            .location_tables(&hub, loc, schema.as_ref())
            .await?)
    })
    .await?;
    Ok(Out(tables_out(schema.as_ref(), &tables)))
}

fn db_table_ref(schema: Option<&str>, table: &str) -> ApiResult<TableRef> {
    Ok(TableRef {
        schema: schema.map(|s| schema_name("schema", s)).transpose()?,
        name: BaseName::new(table)
            .map_err(|e| ApiError::not_found(format!("table {table:?} does not exist ({e})")))?,
    })
}

fn db_columns_out(db: &sluice_model::TableSchema) -> Json {
    let columns = sluice_service::browse::channel_columns(db);
    let cols: Vec<Json> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let native = db.column(&c.name).and_then(|n| n.native_type.clone());
            let mut col = col_core(c, i);
            if let (Some(obj), Some(n)) = (col.as_object_mut(), native) {
                obj.insert("sql_data_type".into(), json!(n));
            }
            json!({ "basecolname": c.name.as_str(), "from_db": col })
        })
        .collect();
    let mut out = Map::new();
    if let Some(s) = &db.table.schema {
        out.insert("schema".into(), json!(s.as_str()));
    }
    out.insert("base_name".into(), json!(db.table.name.as_str()));
    out.insert("key_mode".into(), json!(key_mode(&columns)));
    out.insert("cols".into(), Json::Array(cols));
    Json::Object(out)
}

pub(crate) async fn db_columns(
    caller: Caller,
    Path((hub, loc, table)): Path<(String, String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    check_channel(&caller, &hub, q.one("channel")).await?;
    let loc = loc_name(&loc)?;
    let at = db_table_ref(q.one("schema"), &table)?;
    let db = caller
        .service
        .location_table(&hub, LocRef::Stored(&loc), &at)
        .await?;
    Ok(Out(db_columns_out(&db)))
}

pub(crate) async fn new_db_columns(
    caller: Caller,
    Path((hub, table)): Path<(String, String)>,
    JsonBody(body): JsonBody<NewLocBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadWrite).await?;
    let at = db_table_ref(body.schema.as_deref(), &table)?;
    let db = with_new_loc(&caller, &hub, &body, async |loc| {
        Ok(caller.service.location_table(&hub, loc, &at).await?)
    })
    .await?;
    Ok(Out(db_columns_out(&db)))
}

// ---------------------------------------------------------------------------------------------
// Environment and files: sluice runs no agents and uses no ODBC, Oracle, DB2 or Ingres, so there is
// nothing of these to show; the answers keep HVR's shape.

/// The variables `…/env/vars` may ask for.
const ENV_VARS: &[&str] = &[
    "DB2INSTANCE",
    "II_SYSTEM",
    "INSTHOME",
    "ORACLE_HOME",
    "ORACLE_SID",
    "GOOGLE_APPLICATION_CREDENTIALS",
];

/// Every variable asked for, unset (empty): none of them means anything to sluice's connectors,
/// and the server's own environment is not shown.
fn unset(vars: &[String]) -> Json {
    Json::Object(vars.iter().map(|v| (v.clone(), json!(""))).collect())
}

/// The one `oratab` answer: no instance (sluice serves no Oracle).
fn no_oratab() -> Json {
    json!({ "oracle_sid": "", "oracle_home": "" })
}

fn check_vars(vars: &[String]) -> ApiResult<()> {
    if vars.is_empty() {
        return Err(ApiError::invalid("vars: name at least one variable"));
    }
    for v in vars {
        if !ENV_VARS.contains(&v.as_str()) {
            return Err(ApiError::invalid(format!(
                "vars: {v:?} is not one of {}",
                ENV_VARS.join(", ")
            )));
        }
    }
    Ok(())
}

pub(crate) async fn env_vars(
    caller: Caller,
    Path((hub, loc)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadWrite).await?;
    let vars = q.all("vars");
    check_vars(&vars)?;
    check_channel(&caller, &hub, q.one("channel")).await?;
    stored(&caller, &hub, &loc).await?;
    Ok(Out(unset(&vars)))
}

pub(crate) async fn new_env_vars(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<NewLocBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadWrite).await?;
    let vars = body.vars.as_deref().unwrap_or_default();
    check_vars(vars)?;
    check_channel(&caller, &hub, body.channel.as_deref()).await?;
    body.doc()?;
    body.props_from()?;
    Ok(Out(unset(vars)))
}

pub(crate) async fn env_odbc_drivers(
    caller: Caller,
    Path((hub, loc)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadWrite).await?;
    check_channel(&caller, &hub, q.one("channel")).await?;
    stored(&caller, &hub, &loc).await?;
    // sluice connects without ODBC: there are no drivers to name.
    Ok(Out(json!("")))
}

pub(crate) async fn new_env_odbc_drivers(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<NewLocBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadWrite).await?;
    check_channel(&caller, &hub, body.channel.as_deref()).await?;
    body.doc()?;
    body.props_from()?;
    Ok(Out(json!("")))
}

pub(crate) async fn env_oratab(
    caller: Caller,
    Path((hub, loc)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadWrite).await?;
    check_channel(&caller, &hub, q.one("channel")).await?;
    stored(&caller, &hub, &loc).await?;
    Ok(Out(no_oratab()))
}

pub(crate) async fn new_env_oratab(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<NewLocBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadWrite).await?;
    check_channel(&caller, &hub, body.channel.as_deref()).await?;
    body.doc()?;
    body.props_from()?;
    Ok(Out(no_oratab()))
}

pub(crate) async fn hub_dirs(caller: Caller, Path(hub): Path<String>) -> ApiResult<Out<Json>> {
    hub_for(&caller, &hub, AccessLevel::ReadWrite).await?;
    Err(not_in_sluice(NO_HUB_FILES))
}

pub(crate) async fn dirs(
    caller: Caller,
    Path((hub, loc)): Path<(String, String)>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadWrite).await?;
    stored(&caller, &hub, &loc).await?;
    Err(not_in_sluice(NO_FILE_LOCATIONS))
}

pub(crate) async fn new_dirs(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<NewLocBody>,
) -> ApiResult<Out<Json>> {
    hub_for(&caller, &hub, AccessLevel::ReadWrite).await?;
    body.doc()?;
    Err(not_in_sluice(NO_FILE_LOCATIONS))
}

// ---------------------------------------------------------------------------------------------
// Query interface

fn names<T>(
    values: Vec<String>,
    what: &str,
    parse: impl Fn(String) -> Result<T, sluice_model::NameError>,
) -> ApiResult<Option<BTreeSet<T>>>
where
    T: Ord,
{
    if values.is_empty() {
        return Ok(None);
    }
    values
        .iter()
        .map(|v| parse(v.clone()).map_err(|e| ApiError::invalid(format!("{what}: {e}"))))
        .collect::<ApiResult<BTreeSet<T>>>()
        .map(Some)
}

fn fetch_tables(q: &QueryList) -> ApiResult<bool> {
    let mut tables = false;
    for f in q.all("fetch") {
        match f.as_str() {
            "tables" => tables = true,
            // No latency SLA is kept by sluice: nothing to add.
            "latency_sla" => {}
            other => {
                return Err(ApiError::invalid(format!(
                    "fetch: {other:?} is not one of tables, latency_sla"
                )));
            }
        }
    }
    Ok(tables)
}

fn place_out(p: &TablePlace) -> Json {
    let mut out = Map::new();
    if let Some(s) = &p.schema {
        out.insert("schema".into(), json!(s.as_str()));
    }
    out.insert("base_name".into(), json!(p.base_name.as_str()));
    out.insert("capture".into(), json!(p.capture));
    out.insert("integrate".into(), json!(p.integrate));
    Json::Object(out)
}

async fn locs_out(
    caller: &Caller,
    hub: &HubName,
    channel: &sluice_model::definition::Channel,
    locs: Option<&BTreeSet<LocationName>>,
    tables: Option<&BTreeSet<TableName>>,
    with_tables: bool,
) -> ApiResult<Json> {
    let places = caller.service.channel_places(hub, channel, locs).await?;
    let mut out = Map::new();
    for l in places {
        let shown: Vec<&TablePlace> = l
            .tables
            .iter()
            .filter(|t| tables.is_none_or(|only| only.contains(&t.table)))
            .collect();
        let mut loc = Map::new();
        loc.insert("capture".into(), json!(l.capture));
        loc.insert("integrate".into(), json!(l.integrate));
        loc.insert(
            "capture_tables".into(),
            json!(shown.iter().filter(|t| t.capture).count()),
        );
        loc.insert(
            "integrate_tables".into(),
            json!(shown.iter().filter(|t| t.integrate).count()),
        );
        loc.insert(
            "cap_integ_tables".into(),
            json!(shown.iter().filter(|t| t.capture && t.integrate).count()),
        );
        if with_tables {
            let t: Map<String, Json> = shown
                .iter()
                .map(|t| (t.table.to_string(), place_out(t)))
                .collect();
            loc.insert("tables".into(), Json::Object(t));
        }
        out.insert(l.loc.to_string(), Json::Object(loc));
    }
    Ok(Json::Object(out))
}

pub(crate) async fn query_channels(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let channels = names(q.all("channel"), "channel", ChannelName::new)?;
    let locs = names(q.all("loc"), "loc", LocationName::new)?;
    let tables = names(q.all("table"), "table", TableName::new)?;
    let with_tables = fetch_tables(&q)?;
    let mut out = Map::new();
    for channel in caller.service.channels(&hub).await? {
        if channels
            .as_ref()
            .is_some_and(|c| !c.contains(&channel.name))
        {
            continue;
        }
        let l = locs_out(
            &caller,
            &hub,
            &channel,
            locs.as_ref(),
            tables.as_ref(),
            with_tables,
        )
        .await?;
        out.insert(channel.name.to_string(), json!({ "locs": l }));
    }
    Ok(Out(Json::Object(out)))
}

pub(crate) async fn query_channel_locs(
    caller: Caller,
    Path((hub, channel)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let channel = caller
        .service
        .channel(&hub, &channel_name(&channel)?)
        .await?;
    let locs = names(q.all("loc"), "loc", LocationName::new)?;
    let tables = names(q.all("table"), "table", TableName::new)?;
    let with_tables = fetch_tables(&q)?;
    Ok(Out(locs_out(
        &caller,
        &hub,
        &channel,
        locs.as_ref(),
        tables.as_ref(),
        with_tables,
    )
    .await?))
}

pub(crate) async fn query_channel_tables(
    caller: Caller,
    Path((hub, channel)): Path<(String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let channel = caller
        .service
        .channel(&hub, &channel_name(&channel)?)
        .await?;
    let tables = names(q.all("table"), "table", TableName::new)?;
    let places = caller.service.channel_places(&hub, &channel, None).await?;
    let mut out = Map::new();
    for t in channel.tables.keys() {
        if tables.as_ref().is_some_and(|only| !only.contains(t)) {
            continue;
        }
        // One entry per place the table has (schema and base name), with its locations.
        let mut bases: Vec<(TablePlace, Vec<String>, Vec<String>)> = Vec::new();
        for l in &places {
            let Some(p) = l.tables.iter().find(|p| &p.table == t) else {
                continue;
            };
            if !p.capture && !p.integrate {
                continue;
            }
            let i = match bases
                .iter()
                .position(|(b, _, _)| b.schema == p.schema && b.base_name == p.base_name)
            {
                Some(i) => i,
                None => {
                    bases.push((p.clone(), Vec::new(), Vec::new()));
                    bases.len() - 1
                }
            };
            if p.capture {
                bases[i].1.push(l.loc.to_string());
            }
            if p.integrate {
                bases[i].2.push(l.loc.to_string());
            }
        }
        let list: Vec<Json> = bases
            .into_iter()
            .map(|(p, cap, integ)| {
                let mut b = Map::new();
                if let Some(s) = &p.schema {
                    b.insert("schema".into(), json!(s.as_str()));
                    b.insert("schema_type".into(), json!(schema_type(&p)));
                }
                b.insert("base_name".into(), json!(p.base_name.as_str()));
                b.insert("cap_locs".into(), json!(cap));
                b.insert("integ_locs".into(), json!(integ));
                Json::Object(b)
            })
            .collect();
        out.insert(t.to_string(), json!({ "schema_bases": list }));
    }
    Ok(Out(Json::Object(out)))
}

fn schema_type(p: &TablePlace) -> &'static str {
    if p.schema_configured {
        "configured"
    } else {
        "discovered"
    }
}

/// HVR's attributes of a column type.
fn attributes(c: &ChannelColumn) -> Json {
    let mut a = Map::new();
    a.insert("nullable".into(), json!(c.nullable));
    match c.data_type {
        DataType::Varchar(n) => {
            a.insert("charlen".into(), json!(n.to_string()));
        }
        DataType::Decimal { precision, scale } => {
            a.insert("prec".into(), json!(precision));
            a.insert("scale".into(), json!(scale));
        }
        _ => {}
    }
    Json::Object(a)
}

/// A column's type as HVR's `core` (and `from_db`) objects carry it.
fn col_core(c: &ChannelColumn, i: usize) -> Json {
    let mut out = Map::new();
    out.insert("sequence".into(), json!(i + 1));
    out.insert("data_type".into(), json!(c.data_type.to_string()));
    if c.key > 0 {
        out.insert("key".into(), json!(c.key));
    }
    out.insert("attributes".into(), attributes(c));
    Json::Object(out)
}

fn with_col_props(c: &ChannelColumn, i: usize) -> Json {
    let mut out = col_core(c, i);
    if let Some(o) = out.as_object_mut() {
        o.insert("localize_type_change".into(), json!(false));
        o.insert("other_props".into(), json!({}));
    }
    out
}

fn key_mode(cols: &[ChannelColumn]) -> &'static str {
    if cols.iter().any(|c| c.key > 0) {
        "explicit"
    } else {
        "implicit"
    }
}

pub(crate) async fn query_channel_table(
    caller: Caller,
    Path((hub, channel, loc, table)): Path<(String, String, String, String)>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    // Contexts select actions in HVR; sluice's actions have none, so any context changes nothing.
    names(q.all("context"), "context", ChannelName::new)?;
    let at = caller
        .service
        .channel_table_at(
            &hub,
            &channel_name(&channel)?,
            &loc_name(&loc)?,
            &table_name(&table)?,
        )
        .await?;
    let cols: Vec<Json> = at
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "hvrcolname": c.name.as_str(),
                "basecolname": c.name.as_str(),
                "core": col_core(c, i),
                "with_col_props": with_col_props(c, i),
            })
        })
        .collect();
    let mut out = Map::new();
    if let Some(s) = &at.place.schema {
        out.insert("schema".into(), json!(s.as_str()));
        out.insert("schema_type".into(), json!(schema_type(&at.place)));
    }
    out.insert("base_name".into(), json!(at.place.base_name.as_str()));
    out.insert("capture".into(), json!(at.place.capture));
    out.insert("integrate".into(), json!(at.place.integrate));
    out.insert("key_mode".into(), json!(key_mode(&at.columns)));
    out.insert("cols".into(), Json::Array(cols));
    Ok(Out(Json::Object(out)))
}

// ---------------------------------------------------------------------------------------------
// Table adapt

/// One entry of a mapspec: `{"schema"?, "base_name"}` or `{"schema"?, "pattern", "not_pattern"?}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MapspecTable {
    schema: Option<String>,
    base_name: Option<String>,
    pattern: Option<String>,
    /// One pattern or a list of them.
    #[schema(value_type = Option<Json>)]
    not_pattern: Option<Json>,
}

/// Which database tables an adapt looks at.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Mapspec {
    tables: Vec<MapspecTable>,
}

/// What to compare of the channel's tables.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct TablesInChannel {
    /// Only these channel tables (all when absent).
    tables: Option<Vec<String>>,
    /// Differences to leave alone.
    ignore_diff: Option<Vec<String>>,
    /// Accepted: sluice always compares the columns.
    #[allow(dead_code)] // accepted, not acted on
    check_layout: Option<Flag>,
    /// Accepted: sluice's types are engine-neutral already.
    #[allow(dead_code)] // accepted, not acted on
    localize_datatypes: Option<Flag>,
    /// `apply`: `none`, `not_in_db` or `not_in_mapspec_or_not_in_db`.
    delete_tables: Option<String>,
}

/// The group added tables get.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddTableGroup {
    group: Option<String>,
    from_schema: Option<Flag>,
}

/// `POST …/adapt/check` and `…/adapt/apply`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdaptBody {
    tables_in_channel: Option<TablesInChannel>,
    add_tables: Option<Flag>,
    mapspec: Option<Mapspec>,
    /// Views are not tables sluice replicates: accepted, none are shown.
    #[allow(dead_code)] // accepted, not acted on
    show_views: Option<Flag>,
    /// `db_stats` counts rows; the SAP extras are not in sluice and are ignored.
    fetch_extra: Option<Vec<String>>,
    /// Accepted: a mapspec table the database lacks is simply not added.
    #[allow(dead_code)] // accepted, not acted on
    mapspec_table_not_in_db_error: Option<Flag>,
    /// `apply` only.
    add_table_group: Option<AddTableGroup>,
}

fn not_patterns(v: &Json) -> ApiResult<Vec<String>> {
    match v {
        Json::Null => Ok(Vec::new()),
        Json::String(s) => Ok(vec![s.clone()]),
        Json::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::invalid(
                        "mapspec.tables[].not_pattern: expected text or a list of text",
                    )
                })
            })
            .collect(),
        _ => Err(ApiError::invalid(
            "mapspec.tables[].not_pattern: expected text or a list of text",
        )),
    }
}

impl AdaptBody {
    fn request(&self, apply: bool) -> ApiResult<AdaptRequest> {
        let mut r = AdaptRequest::default();
        if let Some(t) = &self.tables_in_channel {
            let tables = t
                .tables
                .iter()
                .flatten()
                .map(|n| {
                    TableName::new(n)
                        .map_err(|e| ApiError::invalid(format!("tables_in_channel.tables: {e}")))
                })
                .collect::<ApiResult<Vec<_>>>()?;
            r.tables_in_channel = Some(tables);
            for d in t.ignore_diff.iter().flatten() {
                match Diff::parse(d) {
                    Some(diff) => {
                        r.ignore_diff.insert(diff);
                    }
                    None if KNOWN_DIFFS.contains(&d.as_str()) => {}
                    None => {
                        return Err(ApiError::invalid(format!(
                            "tables_in_channel.ignore_diff: unknown difference {d:?}"
                        )));
                    }
                }
            }
            r.delete_tables = match t.delete_tables.as_deref() {
                None | Some("none") => DeleteTables::None,
                Some(_) if !apply => {
                    return Err(ApiError::invalid(
                        "tables_in_channel.delete_tables: only adapt/apply deletes tables",
                    ));
                }
                Some("not_in_db") => DeleteTables::NotInDb,
                Some("not_in_mapspec_or_not_in_db") => DeleteTables::NotInMapspecOrNotInDb,
                Some(other) => {
                    return Err(ApiError::invalid(format!(
                        "tables_in_channel.delete_tables: {other:?} is not one of none, not_in_db, not_in_mapspec_or_not_in_db"
                    )));
                }
            };
        }
        r.add_tables = self.add_tables.is_some_and(|f| f.0);
        if let Some(m) = &self.mapspec {
            let mut entries = Vec::new();
            for t in &m.tables {
                let schema = t
                    .schema
                    .as_deref()
                    .map(|s| schema_name("mapspec.tables[].schema", s))
                    .transpose()?;
                entries.push(match (&t.base_name, &t.pattern) {
                    (Some(b), None) => MapspecEntry::Name {
                        schema,
                        base_name: b.clone(),
                    },
                    (None, Some(p)) => MapspecEntry::Pattern {
                        schema,
                        pattern: p.clone(),
                        not_pattern: not_patterns(t.not_pattern.as_ref().unwrap_or(&Json::Null))?,
                    },
                    _ => {
                        return Err(ApiError::invalid(
                            "mapspec.tables[]: give either base_name or pattern",
                        ));
                    }
                });
            }
            r.mapspec = Some(entries);
        }
        for f in self.fetch_extra.iter().flatten() {
            match f.as_str() {
                "db_stats" => r.db_stats = true,
                "sap_description" | "sap_refs" => {}
                other => {
                    return Err(ApiError::invalid(format!(
                        "fetch_extra: {other:?} is not one of sap_description, sap_refs, db_stats"
                    )));
                }
            }
        }
        if let Some(g) = &self.add_table_group {
            if !apply {
                return Err(ApiError::invalid(
                    "add_table_group: only adapt/apply adds tables",
                ));
            }
            r.group_from_schema = g.from_schema.is_some_and(|f| f.0);
            r.add_table_group = g
                .group
                .as_deref()
                .map(|s| {
                    LocGroupName::new(s.to_ascii_uppercase())
                        .map_err(|e| ApiError::invalid(format!("add_table_group.group: {e}")))
                })
                .transpose()?;
        }
        if r.tables_in_channel.is_none() && !r.add_tables {
            // Asked for nothing in particular: compare the channel's tables.
            r.tables_in_channel = Some(Vec::new());
        }
        Ok(r)
    }
}

/// HVR's differences sluice never finds (distribution keys, encodings, SAP source tables).
const KNOWN_DIFFS: &[&str] = &[
    "distrib_key_removed",
    "distrib_key_added",
    "encoding_changed",
];

fn diffs(d: &[Diff]) -> Json {
    Json::Array(d.iter().map(|d| json!(d.as_str())).collect())
}

fn table_check_out(c: &TableCheck) -> Json {
    let mut t = Map::new();
    t.insert(
        "schema".into(),
        json!(c.place.schema.as_ref().map_or("", SchemaName::as_str)),
    );
    t.insert("base_name".into(), json!(c.place.base_name.as_str()));
    t.insert("exists_in_db".into(), json!(c.exists_in_db));
    t.insert("type".into(), json!("Table"));
    if let Some(m) = c.matched_by_mapspec {
        t.insert("matched_by_mapspec".into(), json!(m));
    }
    if let Some(n) = c.num_rows {
        t.insert("db_stats".into(), json!({ "num_rows": n.to_string() }));
    }
    t.insert("diff".into(), diffs(&c.diff));
    Json::Object(t)
}

fn check_out(check: &AdaptCheck) -> Json {
    let mut out = Map::new();
    if let Some(tables) = &check.tables_in_channel {
        let t: Map<String, Json> = tables
            .iter()
            .map(|c| (c.place.table.to_string(), table_check_out(c)))
            .collect();
        out.insert("tables_in_channel".into(), Json::Object(t));
    }
    if let Some(added) = &check.add_tables {
        let list: Vec<Json> = added
            .iter()
            .map(|n| {
                let mut t = Map::new();
                t.insert("schema".into(), json!(n.schema.as_str()));
                t.insert("base_name".into(), json!(n.base_name.as_str()));
                t.insert("type".into(), json!("Table"));
                if let Some(rows) = n.num_rows {
                    t.insert("db_stats".into(), json!({ "num_rows": rows.to_string() }));
                }
                Json::Object(t)
            })
            .collect();
        out.insert("add_tables".into(), Json::Array(list));
    }
    Json::Object(out)
}

pub(crate) async fn adapt_check(
    caller: Caller,
    Path((hub, channel, loc)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<AdaptBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let request = body.request(false)?;
    let check = caller
        .service
        .adapt_check(&hub, &channel_name(&channel)?, &loc_name(&loc)?, &request)
        .await?;
    Ok(Out(check_out(&check)))
}

/// `POST …/adapt/check/{table}`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdaptTableBody {
    /// Accepted: sluice's actions have no contexts.
    contexts: Option<Vec<String>>,
    /// `db_stats` counts rows; the SAP extras are not in sluice and are ignored.
    fetch_extra: Option<Vec<String>>,
    /// Accepted: sluice's types are engine-neutral already.
    #[allow(dead_code)] // accepted, not acted on
    localize_datatypes: Option<Flag>,
}

fn column_check_out(c: &ColumnCheck, i: usize) -> Json {
    let mut out = Map::new();
    out.insert("hvrcolname".into(), json!(c.name.as_str()));
    out.insert("basecolname".into(), json!(c.name.as_str()));
    if let Some(core) = &c.core {
        out.insert("core".into(), col_core(core, i));
        out.insert("with_col_props".into(), with_col_props(core, i));
    }
    if let Some((db, native)) = &c.from_db {
        let mut d = col_core(db, i);
        if let Some(o) = d.as_object_mut() {
            if let Some(n) = native {
                o.insert("sql_data_type".into(), json!(n));
            }
            o.insert("diff".into(), diffs(&c.diff));
        }
        out.insert("from_db".into(), d);
    }
    Json::Object(out)
}

pub(crate) async fn adapt_check_table(
    caller: Caller,
    Path((hub, channel, loc, table)): Path<(String, String, String, String)>,
    JsonBody(body): JsonBody<AdaptTableBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    for c in body.contexts.iter().flatten() {
        ChannelName::new(c).map_err(|e| ApiError::invalid(format!("contexts: {e}")))?;
    }
    let table = table_name(&table)?;
    let whole = AdaptBody {
        tables_in_channel: Some(TablesInChannel {
            tables: Some(vec![table.to_string()]),
            ..Default::default()
        }),
        fetch_extra: body.fetch_extra,
        ..Default::default()
    };
    let request = whole.request(false)?;
    let check = caller
        .service
        .adapt_check(&hub, &channel_name(&channel)?, &loc_name(&loc)?, &request)
        .await?;
    let c = check
        .tables_in_channel
        .iter()
        .flatten()
        .find(|c| c.place.table == table)
        .ok_or_else(|| {
            ApiError::not_found(format!("table {table} does not exist in the channel"))
        })?;
    let mut out = Map::new();
    if let Some(s) = &c.place.schema {
        out.insert("schema".into(), json!(s.as_str()));
        out.insert("schema_type".into(), json!(schema_type(&c.place)));
    }
    out.insert("base_name".into(), json!(c.place.base_name.as_str()));
    out.insert("capture".into(), json!(c.place.capture));
    out.insert("integrate".into(), json!(c.place.integrate));
    let core: Vec<ChannelColumn> = c.columns.iter().filter_map(|x| x.core.clone()).collect();
    out.insert("key_mode".into(), json!(key_mode(&core)));
    out.insert("exists_in_db".into(), json!(c.exists_in_db));
    let table_diff: Vec<Diff> = c
        .diff
        .iter()
        .copied()
        .filter(|d| d.is_table_level())
        .collect();
    out.insert("diff".into(), diffs(&table_diff));
    if let Some(n) = c.num_rows {
        out.insert("db_stats".into(), json!({ "num_rows": n.to_string() }));
    }
    out.insert(
        "cols".into(),
        Json::Array(
            c.columns
                .iter()
                .enumerate()
                .map(|(i, col)| column_check_out(col, i))
                .collect(),
        ),
    );
    Ok(Out(Json::Object(out)))
}

pub(crate) async fn adapt_apply(
    caller: Caller,
    Path((hub, channel, loc)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<AdaptBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadWrite).await?;
    let request = body.request(true)?;
    let applied = caller
        .service
        .adapt_apply(&hub, &channel_name(&channel)?, &loc_name(&loc)?, &request)
        .await?;
    let mut out = Map::new();
    if let Some(added) = &applied.check.add_tables {
        let list: Vec<Json> = added
            .iter()
            .map(|n| {
                json!({
                    "schema": n.schema.as_str(),
                    "base_name": n.base_name.as_str(),
                    "table": n.table.as_str(),
                    "type": "Table",
                })
            })
            .collect();
        out.insert("add_tables".into(), Json::Array(list));
    }
    if let Some(tables) = &applied.check.tables_in_channel {
        let mut t = Map::new();
        for c in tables {
            let mut entry = Map::new();
            entry.insert(
                "schema".into(),
                json!(c.place.schema.as_ref().map_or("", SchemaName::as_str)),
            );
            entry.insert("base_name".into(), json!(c.place.base_name.as_str()));
            entry.insert("type".into(), json!("Table"));
            entry.insert("diff".into(), diffs(&c.diff));
            if applied.deleted.contains(&c.place.table) {
                entry.insert("deleted".into(), json!(true));
            }
            t.insert(c.place.table.to_string(), Json::Object(entry));
        }
        out.insert("tables_in_channel".into(), Json::Object(t));
    }
    Ok(Out(Json::Object(out)))
}

/// A table `…/adapt/other_channels` asks about.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OtherChannelsTable {
    schema: Option<String>,
    base_name: String,
}

/// `POST …/adapt/other_channels`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct OtherChannelsBody {
    tables: Option<Vec<OtherChannelsTable>>,
}

pub(crate) async fn adapt_other_channels(
    caller: Caller,
    Path((hub, channel, loc)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<OtherChannelsBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let mut extra = Vec::new();
    for t in body.tables.iter().flatten() {
        let schema = t
            .schema
            .as_deref()
            .map(|s| schema_name("tables[].schema", s))
            .transpose()?;
        let base = BaseName::new(&t.base_name)
            .map_err(|e| ApiError::invalid(format!("tables[].base_name: {e}")))?;
        extra.push((schema, base));
    }
    let found = caller
        .service
        .adapt_other_channels(&hub, &channel_name(&channel)?, &loc_name(&loc)?, &extra)
        .await?;
    let list: Vec<Json> = found
        .into_iter()
        .map(|(schema, base, channels)| {
            json!({
                "schema": schema.as_ref().map_or("", SchemaName::as_str),
                "base_name": base.as_str(),
                "other_channels": channels.iter().map(ChannelName::as_str).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Out(Json::Array(list)))
}

/// `POST …/mapdoc/parse`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MapdocBody {
    mapdoc: String,
}

/// Why `mapdoc/parse` is not served.
pub(crate) const NO_MAPDOC: &str = "the adapt mapping document is a file format of HVR's own product that its REST document does not describe; sluice does not read it: give the tables as a mapspec (JSON) to adapt/check and adapt/apply instead";

pub(crate) async fn mapdoc_parse(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<MapdocBody>,
) -> ApiResult<Out<Json>> {
    hub_for(&caller, &hub, AccessLevel::ReadOnly).await?;
    let _ = body.mapdoc;
    Err(not_in_sluice(NO_MAPDOC))
}
