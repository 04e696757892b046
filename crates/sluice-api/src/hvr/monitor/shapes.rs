//! Shapes of the monitor group's answers, for the OpenAPI document (the handlers build the JSON).

#![allow(dead_code, reason = "the fields describe JSON the handlers build")]

use std::collections::BTreeMap;

use utoipa::ToSchema;

use crate::shapes::Timestamp;

/// One job's answer to `jobs_start` when a job was left alone.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobStartOutcome {
    /// The control of a started job (its event id; `…/jobs/{job}/controls/{ctrl_id}/log`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    trigger_ctrl_id: Option<Timestamp>,
    /// Why the job was not started (`Job in state 'SUSPEND'`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    not_started: Option<String>,
}

/// `jobs_start`'s answer by job, when a job was left alone.
#[derive(ToSchema)]
pub(crate) struct JobStartOutcomes(BTreeMap<String, JobStartOutcome>);

/// A job attribute's arguments.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobAttributeArgs {
    arg1: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    arg2: Option<String>,
}

/// Job attributes by name.
#[derive(ToSchema)]
pub(crate) struct JobAttributes(BTreeMap<String, JobAttributeArgs>);

/// Environment variables by name.
#[derive(ToSchema)]
pub(crate) struct JobEnvVars(BTreeMap<String, String>);

/// Event counts by type, channel or location.
#[derive(ToSchema)]
pub(crate) struct EventCounts(BTreeMap<String, u64>);

/// An event of the repository: an event of a hub, naming it.
#[derive(ToSchema)]
pub(crate) struct RepoEvent {
    /// The hub the event is of (sluice).
    hub: String,
    #[serde(rename = "type")]
    event_type: String,
    user: String,
    description: String,
    state: String,
    start_tstamp: Timestamp,
    body: String,
}

/// Events of the repository by id, newest first.
#[derive(ToSchema)]
pub(crate) struct RepoEvents(BTreeMap<String, RepoEvent>);

/// Metric values: metric → time_gran → scope → channel → loc → table → tstamp → value (`*` for
/// a level the scope sums over; without `fetch_values` the innermost maps are empty).
#[derive(ToSchema)]
pub(crate) struct Metrics(BTreeMap<String, MetricGrans>);

/// By time granularity.
#[derive(ToSchema)]
pub(crate) struct MetricGrans(BTreeMap<String, MetricScopes>);

/// By scope.
#[derive(ToSchema)]
pub(crate) struct MetricScopes(BTreeMap<String, MetricChannels>);

/// By channel (`*`: all).
#[derive(ToSchema)]
pub(crate) struct MetricChannels(BTreeMap<String, MetricLocs>);

/// By location (`*`: all).
#[derive(ToSchema)]
pub(crate) struct MetricLocs(BTreeMap<String, MetricTables>);

/// By table (`*`: all): values by time.
#[derive(ToSchema)]
pub(crate) struct MetricTables(BTreeMap<String, BTreeMap<String, i64>>);

/// The oldest metric time: time_gran → scope → tstamp.
#[derive(ToSchema)]
pub(crate) struct OldestMetrics(BTreeMap<String, BTreeMap<String, String>>);

/// Where to fetch an export.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportRef {
    /// A path to `GET` (it makes the export then).
    #[serde(rename = "ref")]
    reference: String,
}

/// Alert names.
#[derive(ToSchema)]
pub(crate) struct AlertNames(Vec<String>);

/// An alert's props.
#[derive(ToSchema)]
pub(crate) struct AlertProps(BTreeMap<String, serde_json::Value>);

/// Where a time starts in a log file.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogOffset {
    path: String,
    /// A byte offset, as text.
    offset: String,
}
