//! The document of HVR's activate, refresh and compare results, contexts, slicing suggestions and control messages.

// The shapes below exist only to be described in the document; nothing reads their fields.
#![allow(dead_code)]

use std::collections::BTreeMap;

use utoipa::ToSchema;
use utoipa::openapi::path::HttpMethod;

use super::{Auth, Doc, Face, HVR_ERRORS, Op, string};
use crate::hvr::arc as hvr_arc;
use crate::hvr::shapes as hvr;

/// One component of a location's activation (`jobs`, `router_files`): sluice activates nothing
/// yet, so it is never found.
#[derive(ToSchema)]
pub(crate) struct ActivationComponent {
    found: bool,
    missing: bool,
    lossy_reactivate: bool,
}

/// The activation state of one location of a channel.
#[derive(ToSchema)]
pub(crate) struct LocActivation {
    jobs: ActivationComponent,
    router_files: ActivationComponent,
}

/// By location, its activation state.
#[derive(ToSchema)]
pub(crate) struct ActivationByLoc(BTreeMap<String, LocActivation>);

/// By channel, the activation state of one location in it.
#[derive(ToSchema)]
pub(crate) struct ActivationByChannel(BTreeMap<String, LocActivation>);

/// By channel, by location, the activation state.
#[derive(ToSchema)]
pub(crate) struct HubActivation(BTreeMap<String, ActivationByLoc>);

/// By channel, by event id, the tables the event has results for.
#[derive(ToSchema)]
pub(crate) struct HubResultsIds(BTreeMap<String, hvr::ResultsIds>);

/// The contexts a channel's actions name and the context variables they use.
#[derive(ToSchema)]
pub(crate) struct ChannelContexts {
    contexts: Vec<String>,
    context_variables: Vec<String>,
}

/// Open transactions of a capture location (none: sluice does not report them yet).
#[derive(ToSchema)]
pub(crate) struct CaptureOpenTx {
    request_time: String,
    num_open_tx: i64,
}

/// Where integration stands for one capture location.
#[derive(ToSchema)]
pub(crate) struct IntegratePointOfLoc {
    scan_start_tstamp: String,
    integ_tstamp: String,
    integ_hvr_tx_seq: String,
}

/// By capture location, where integration stands (empty: sluice does not report it here yet).
#[derive(ToSchema)]
pub(crate) struct IntegratePoint(BTreeMap<String, IntegratePointOfLoc>);

pub(super) fn document(doc: &mut Doc) {
    const H: &str = "/api/latest/hubs/{hub}";
    const C: &str = "/api/latest/hubs/{hub}/channels/{channel}";
    let tag = "jobs";
    let read = Auth::Bearer("ReadOnly");
    let hub_activation = doc.schema::<HubActivation>();
    let by_loc = doc.schema::<ActivationByLoc>();
    let by_channel = doc.schema::<ActivationByChannel>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{H}/activate"),
            tag,
            read,
            "Activation state of channels",
        )
        .description("per channel and location, whether capture and integrate are set up and their jobs' states")
        .query_list("channels", "only these channels")
        .query_list("locs", "only these locations")
        .json(200, "by channel, by location", hub_activation)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{C}/activate"),
            tag,
            read,
            "Activation state of a channel",
        )
        .query_list("locs", "only these member locations")
        .json(200, "by location", by_loc)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{H}/locs/{{loc}}/activate"),
            tag,
            read,
            "Activation state of a location",
        )
        .json(200, "by channel", by_channel)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let ids = doc.schema::<hvr::ResultsIds>();
    let hub_ids = doc.schema::<HubResultsIds>();
    for kind in ["refresh", "compare"] {
        for (path, schema, what) in [
            (
                format!("{C}/{kind}/tables_results_ids"),
                &ids,
                "by event id",
            ),
            (
                format!("{H}/{kind}/tables_results_ids"),
                &hub_ids,
                "by channel, by event id",
            ),
        ] {
            let mut op = Op::new(
                HttpMethod::Get,
                &path,
                tag,
                read,
                &format!("{kind} events with results, by table"),
            );
            if path.starts_with(H) && !path.contains("/channels/") {
                op = op.query_list("channel", "only these channels");
            }
            doc.add(
                op.query_list("table", "only these tables")
                    .query("source_loc", string(), "only events from this location")
                    .query("target_loc", string(), "only events into this location")
                    .query(
                        "result_pattern",
                        string(),
                        "only results with these names (`|`-separated, `*` any text)",
                    )
                    .query(
                        "ev_tstamp_begin",
                        string(),
                        "only events since (ISO-8601 or epoch seconds)",
                    )
                    .query(
                        "ev_tstamp_end",
                        string(),
                        "only events until (ISO-8601 or epoch seconds)",
                    )
                    .json(200, what, schema.clone())
                    .errors(Face::Hvr, HVR_ERRORS),
            );
        }
    }
    let contexts = doc.schema::<ChannelContexts>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{C}/contexts"),
            tag,
            read,
            "Contexts and context variables the channel's actions use",
        )
        .json(200, "contexts and variables", contexts)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let open_tx = doc.schema::<CaptureOpenTx>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{C}/locs/{{loc}}/capture_open_tx"),
            tag,
            read,
            "Open transactions of a capture location",
        )
        .description(
            "sluice does not report a capture's open transactions yet: the answer counts none",
        )
        .json(200, "open transactions", open_tx)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let point = doc.schema::<IntegratePoint>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{C}/locs/{{loc}}/integrate_point"),
            tag,
            read,
            "Integrate point",
        )
        .description("sluice does not report integrate points here yet (the integrate job's events carry its figures): the answer is empty")
        .query("orig_channel", string(), "the channel changes came from")
        .query(
            "orig_integ_loc",
            string(),
            "the location changes were integrated at",
        )
        .json(200, "by capture location", point)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    slicing(doc);
    controls(doc);
}

/// A suggested slicing of one table.
#[derive(ToSchema)]
pub(crate) struct SuggestedSlicing {
    /// `no_data`, `repeat_last_refresh_slicing`, `repeat_last_compare_slicing`,
    /// `suggest_from_last_refresh_rows`, `suggest_from_last_compare_rows` or `suggest_from_db_stats`.
    based_on: String,
    ev_id: Option<String>,
    row_estimate: Option<String>,
    /// Present (true) when the table is small enough to read whole.
    no_slicing: Option<bool>,
    /// HVR's `slicing` of the table (`type`, `col`, boundaries or `slices`).
    slicing: Option<BTreeMap<String, serde_json::Value>>,
}

/// By table, a suggested slicing.
#[derive(ToSchema)]
pub(crate) struct SlicingSuggestions(BTreeMap<String, SuggestedSlicing>);

/// Boundaries for slices of a column (one list, by the column's type; empty when the column has
/// too few distinct values).
#[derive(ToSchema)]
pub(crate) struct SlicingBoundaries {
    int_boundaries: Option<Vec<String>>,
    date_boundaries: Option<Vec<String>>,
    str_boundaries: Option<Vec<String>>,
}

fn slicing(doc: &mut Doc) {
    const C: &str = "/api/latest/hubs/{hub}/channels/{channel}";
    let tag = "jobs";
    let suggest = doc.schema::<hvr_arc::SlicingSuggestBody>();
    let suggestions = doc.schema::<SlicingSuggestions>();
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{C}/locs/{{loc}}/slicing_suggest"),
            tag,
            Auth::Bearer("ReadOnly"),
            "Suggest slicing for refresh or compare",
        )
        .description(
            "From the last refresh or compare (its slicing or the rows it read) or from the \
             rows the database holds now: boundaries at the key's quantiles",
        )
        .body(suggest, true)
        .json(200, "by table", suggestions)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let body = doc.schema::<hvr_arc::SlicingBoundariesBody>();
    let boundaries = doc.schema::<SlicingBoundaries>();
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{C}/locs/{{loc}}/tables/{{table}}/slicing_boundaries"),
            tag,
            Auth::Bearer("ReadOnly"),
            "Boundaries at a column's quantiles",
        )
        .body(body, false)
        .json(200, "boundaries", boundaries)
        .errors(Face::Hvr, HVR_ERRORS),
    );
}

fn controls(doc: &mut Doc) {
    const C: &str = "/api/latest/hubs/{hub}/channels/{channel}";
    let tag = "controls";
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{C}/controls"),
            tag,
            Auth::Bearer("ReadOnly"),
            "Control ids",
        )
        .description(
            "sluice has no capture or integrate tasks yet, so no control was ever accepted: \
             the list (ids separated by newlines) is empty",
        )
        .query("task_name", string(), "cap or integ")
        .query_list("loc_name", "only controls of these locations")
        .query("ctrl_name", string(), "only controls of this name")
        .query_list("ctrl_id", "only these controls")
        .json(200, "control ids, one a line", string().build().into())
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{C}/controls/{{ctrl_id}}"),
            tag,
            Auth::Bearer("ReadOnly"),
            "A control",
        )
        .description("no control exists (see GET …/controls): always 404 naming the control")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let delete = doc.schema::<hvr_arc::ControlsDeleteBody>();
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{C}/controls_delete"),
            tag,
            Auth::Bearer("ReadExec"),
            "Delete controls",
        )
        .description("no control exists (see GET …/controls): 404 naming the first control")
        .body(delete, false)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let send = doc.schema::<hvr_arc::ControlBody>();
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{C}/locs/{{loc}}/tasks/{{task}}/controls"),
            tag,
            Auth::Bearer("ReadWrite"),
            "Send a control message to a capture or integrate task",
        )
        .description(
            "sluice has no capture or integrate task yet: a valid control answers 409 saying \
             so (refresh and compare jobs are stopped with events_cancel or jobs_suspend)",
        )
        .body(send, false)
        .errors(Face::Hvr, &[400, 401, 403, 404, 409]),
    );
}
