//! HVR's Statistics Interface: metrics per channel, location and table computed from the events
//! of refreshes and compares, the oldest of them, and an export as CSV or JSON.

use std::collections::BTreeMap;

use axum::Json as Out;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};
use sluice_model::{AccessLevel, HubName};
use sluice_service::{MetricValues, MetricsQuery};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody, QueryList};
use crate::hvr::hub_name;
use crate::hvr::ops::parse_time;

fn tstamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn grans(values: &[String]) -> ApiResult<Vec<u32>> {
    values
        .iter()
        .map(|g| {
            g.parse::<u32>()
                .map_err(|_| ApiError::invalid(format!("time_gran: {g:?} is not a number")))
        })
        .collect()
}

/// The nested map HVR answers: metric → time_gran → scope → channel → loc → table → tstamp.
fn nested(values: &MetricValues, with_values: bool) -> Json {
    let mut out = Map::new();
    for ((metric, gran, scope, channel, loc, table, t), v) in values {
        let mut node = out.entry(metric.clone()).or_insert_with(|| json!({}));
        for key in [
            gran.to_string(),
            scope.clone(),
            channel.clone(),
            loc.clone(),
            table.clone(),
        ] {
            node = node
                .as_object_mut()
                .expect("every level is an object")
                .entry(key)
                .or_insert_with(|| json!({}));
        }
        if with_values {
            node[tstamp(*t)] = json!(v);
        }
    }
    Json::Object(out)
}

pub(crate) async fn metrics(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    let query = MetricsQuery {
        channels: q.all("channel"),
        locs: q.all("loc"),
        tables: q.all("table"),
        metrics: q.all("metric"),
        time_grans: grans(&q.all("time_gran"))?,
        scopes: q.all("scope"),
        begin: q.one("tstamp_begin").map(parse_time).transpose()?,
        end: q.one("tstamp_end").map(parse_time).transpose()?,
    };
    let with_values = q.flag("fetch_values", false)?;
    let values = caller.service.metrics(&hub, query).await?;
    Ok(Out(nested(&values, with_values)))
}

pub(crate) async fn oldest(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    let oldest = caller
        .service
        .oldest_metrics(&hub, grans(&q.all("time_gran"))?, q.all("scope"))
        .await?;
    let out: BTreeMap<String, BTreeMap<String, String>> = oldest
        .into_iter()
        .map(|(g, scopes)| {
            (
                g.to_string(),
                scopes.into_iter().map(|(s, t)| (s, tstamp(t))).collect(),
            )
        })
        .collect();
    Ok(Out(json!(out)))
}

/// `POST …/stats/metrics/export`: what to export, and as what.
#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportBody {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    channel: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    loc: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    table: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    metric: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    time_gran: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scope: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tstamp_begin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tstamp_end: Option<String>,
    /// `csv` or `json` (`xlsx` is not made by sluice).
    format: String,
}

/// The longest export reference accepted.
const MAX_REF_LEN: usize = 16 * 1024;

impl ExportBody {
    fn query(&self) -> ApiResult<MetricsQuery> {
        Ok(MetricsQuery {
            channels: self.channel.clone(),
            locs: self.loc.clone(),
            tables: self.table.clone(),
            metrics: self.metric.clone(),
            time_grans: grans(&self.time_gran)?,
            scopes: self.scope.clone(),
            begin: self.tstamp_begin.as_deref().map(parse_time).transpose()?,
            end: self.tstamp_end.as_deref().map(parse_time).transpose()?,
        })
    }

    fn check_format(&self) -> ApiResult<()> {
        match self.format.as_str() {
            "csv" | "json" => Ok(()),
            "xlsx" => Err(ApiError::invalid(
                "format: sluice exports csv or json, not xlsx",
            )),
            other => Err(ApiError::invalid(format!(
                "format: {other:?} is not csv or json"
            ))),
        }
    }
}

/// The export is made when its reference is fetched: the reference is the request itself
/// (base64url JSON), so nothing is stored and a reference works on any hub node.
pub(crate) async fn export(
    caller: Caller,
    Path(hub): Path<String>,
    JsonBody(body): JsonBody<ExportBody>,
) -> ApiResult<Out<Json>> {
    let hub = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    body.check_format()?;
    body.query()?.checked().map_err(ApiError::from)?;
    let text =
        serde_json::to_vec(&body).map_err(|_| ApiError::invalid("cannot encode the export"))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    Ok(Out(json!({
        "ref": format!("/api/latest/hubs/{hub}/stats/metrics/export?ref={token}")
    })))
}

/// `GET …/stats/metrics/export?ref=…`: the export a `POST` answered the reference of.
pub(crate) async fn export_get(
    caller: Caller,
    Path(hub): Path<String>,
    q: QueryList,
) -> ApiResult<Response> {
    let hub: HubName = hub_name(&hub)?;
    caller.require_on(&hub, AccessLevel::ReadOnly).await?;
    let token = q.one("ref").ok_or_else(|| {
        ApiError::invalid("ref: missing (POST …/stats/metrics/export answers it)")
    })?;
    if token.len() > MAX_REF_LEN {
        return Err(ApiError::invalid("ref: too long"));
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ApiError::invalid("ref: not an export reference"))?;
    let body: ExportBody = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::invalid("ref: not an export reference"))?;
    body.check_format()?;
    let values = caller.service.metrics(&hub, body.query()?).await?;
    if body.format == "json" {
        return Ok(Out(nested(&values, true)).into_response());
    }
    let mut csv = String::from("metric,time_gran,scope,channel,loc,table,tstamp,value\n");
    for ((metric, gran, scope, channel, loc, table, t), v) in &values {
        let row = [
            metric.clone(),
            gran.to_string(),
            scope.clone(),
            channel.clone(),
            loc.clone(),
            table.clone(),
            tstamp(*t),
            v.to_string(),
        ];
        let quoted: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        csv.push_str(&quoted.join(","));
        csv.push('\n');
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "text/csv; charset=utf-8; header=present",
            ),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"metrics.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}

/// A CSV field, quoted when it holds a separator or quote; a leading `=+-@` is escaped so a
/// spreadsheet does not run it as a formula.
fn csv_field(f: &str) -> String {
    let f = if f.starts_with(['=', '+', '-', '@']) {
        format!("'{f}")
    } else {
        f.to_owned()
    };
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f
    }
}
