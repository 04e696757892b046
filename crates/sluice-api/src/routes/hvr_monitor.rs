//! The document of HVR's Job, Event, Statistics, Alert and Logfile Tailing interfaces.

use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::schema::{ObjectBuilder, Type};

use super::{Auth, Doc, Face, H, HVR_ERRORS, Op, boolean, count, hvr, string};
use crate::hvr::monitor::{alerts, events, jobs, shapes, stats};

pub(super) fn document(doc: &mut Doc) {
    job_interface(doc);
    job_system(doc);
    event_interface(doc);
    statistics(doc);
    alert_interface(doc);
    log_tailing(doc);
}

fn job_interface(doc: &mut Doc) {
    let tag = "jobs";
    let jobs = doc.schema::<hvr::Jobs>();
    let jobs_body = doc.schema::<jobs::JobsBody>();
    let canceled = doc.schema::<hvr::Canceled>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{H}/jobs"),
            tag,
            Auth::Bearer("ReadOnly"),
            "Jobs",
        )
        .query_list("channel", "only jobs of these channels")
        .query_list("job", "only these jobs")
        .query_list(
            "fetch",
            "fields to add: latency (HVR; capture and integrate jobs only), num_runs, last_ev_id, \
             last_run (sluice)",
        )
        .query(
            "updated_jobs_since",
            string(),
            "accepted; every job is answered",
        )
        .query(
            "updated_err_since",
            string(),
            "accepted; every job is answered",
        )
        .json(200, "jobs by name", jobs)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Delete,
            &format!("{H}/jobs/{{job}}"),
            tag,
            Auth::Bearer("ReadExec"),
            "Delete a job (its active events are cancelled)",
        )
        .json(200, "deleted", canceled.clone())
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let outcomes = doc.schema::<shapes::JobStartOutcomes>();
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{H}/jobs_start"),
            tag,
            Auth::Bearer("ReadExec"),
            "Start jobs' pending events",
        )
        .description(
            "As HVR's hvrstart: a SUSPEND job starts only with unsuspend, a FAILED or RETRY job \
             only with trigger_failed. When every job started the answer is 204; when one was \
             left alone it is 200 naming, per job, not_started (why) or trigger_ctrl_id.",
        )
        .body(jobs_body.clone(), false)
        .empty(204, "every job started")
        .json(200, "some jobs were left alone", outcomes)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    for (verb, summary) in [
        ("jobs_suspend", "Suspend jobs"),
        ("jobs_unsuspend", "Unsuspend jobs"),
    ] {
        doc.add(
            Op::new(
                HttpMethod::Post,
                &format!("{H}/{verb}"),
                tag,
                Auth::Bearer("ReadExec"),
                summary,
            )
            .body(jobs_body.clone(), false)
            .empty(204, "done")
            .errors(Face::Hvr, HVR_ERRORS),
        );
    }
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{H}/jobs_delete"),
            tag,
            Auth::Bearer("ReadExec"),
            "Delete jobs",
        )
        .body(jobs_body, false)
        .json(200, "deleted", canceled)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let events = doc.schema::<hvr::Events>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{H}/events"),
            tag,
            Auth::Bearer("ReadOnly"),
            "Events, newest first",
        )
        .query_list("channel", "only these channels")
        .query_list("type", "only these event types (Refresh, Compare, …)")
        .query_list(
            "state",
            "only these states (ACTIVE, DONE, FAILED, CANCELED)",
        )
        .query_list("job", "only these jobs")
        .query_list("ev_id", "only these events")
        .query("loc", string(), "only events of this location")
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
        .query(
            "max_events",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(100_000)),
            "at most this many (default 1000)",
        )
        .query("fetch_results", boolean(), "with results")
        .query_list(
            "result_pattern",
            "only these results (names joined by |; * matches any text)",
        )
        .query_list("result_table", "only results of these tables")
        .query("current_only", boolean(), "only ACTIVE events")
        .query(
            "body_pattern",
            string(),
            "only events whose request contains this text",
        )
        .query("updated_begin", string(), "only events updated since")
        .query("updated_end", string(), "only events updated until")
        .query("fetch_repos_events", boolean(), "accepted; hub events only")
        .json(200, "events by id", events)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let cancel = doc.schema::<events::CancelBody>();
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{H}/events_cancel"),
            tag,
            Auth::Bearer("ReadExec"),
            "Cancel ACTIVE events",
        )
        .body(cancel, false)
        .empty(204, "cancelled")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{H}/events/{{ev_id}}/log"),
            tag,
            Auth::Bearer("ReadOnly"),
            "An event's log",
        )
        .query("max_lines", count(), "only the last lines")
        .reply(
            200,
            "one line per message: TIMESTAMP: text",
            "text/plain; charset=utf-8",
            string().build().into(),
        )
        .errors(Face::Hvr, HVR_ERRORS),
    );
}

fn job_system(doc: &mut Doc) {
    let tag = "jobs";
    let attrs = doc.schema::<shapes::JobAttributes>();
    let attr_body = doc.schema::<jobs::AttributeBody>();
    let env = doc.schema::<shapes::JobEnvVars>();
    let env_body = doc.schema::<jobs::EnvVarBody>();
    for (base, whose, write_attr) in [
        (
            format!("{H}/job_system"),
            "the job system's (every job)",
            "ReadWrite",
        ),
        (format!("{H}/jobs/{{job}}"), "a job's", "ReadExec"),
    ] {
        doc.add(
            Op::new(
                HttpMethod::Get,
                &format!("{base}/attributes"),
                tag,
                Auth::Bearer("ReadOnly"),
                &format!("Job attributes, {whose}"),
            )
            .description(
                "Kept as HVR clients set them; sluice's scheduler does not act on them (it runs \
                 each event-driven job once per event, with no quotas, triggers or time-outs).",
            )
            .json(200, "attributes by name", attrs.clone())
            .errors(Face::Hvr, HVR_ERRORS),
        );
        doc.add(
            Op::new(
                HttpMethod::Put,
                &format!("{base}/attributes/{{attr}}"),
                tag,
                Auth::Bearer(write_attr),
                &format!("Set a job attribute, {whose}"),
            )
            .description(
                "attr is one HVR documents: quota_run, quota_children, quota_speed, trig_delay, \
                 trig_crono, trig_at, retry_max, retry_delay, timeo_soft, timeo_hard.",
            )
            .body(attr_body.clone(), false)
            .empty(204, "set")
            .errors(Face::Hvr, HVR_ERRORS),
        );
        doc.add(
            Op::new(
                HttpMethod::Delete,
                &format!("{base}/attributes/{{attr}}"),
                tag,
                Auth::Bearer(write_attr),
                &format!("Remove a job attribute, {whose}"),
            )
            .empty(204, "removed")
            .errors(Face::Hvr, HVR_ERRORS),
        );
        doc.add(
            Op::new(
                HttpMethod::Get,
                &format!("{base}/env_vars"),
                tag,
                Auth::Bearer("ReadOnly"),
                &format!("Environment variables, {whose}"),
            )
            .description(
                "Kept, and passed to nothing: a sluice job runs no child process, and these are \
                 kept out of the ${VAR} references of location properties.",
            )
            .json(200, "values by name", env.clone())
            .errors(Face::Hvr, HVR_ERRORS),
        );
        doc.add(
            Op::new(
                HttpMethod::Put,
                &format!("{base}/env_vars/{{var}}"),
                tag,
                Auth::Bearer("ReadWrite"),
                &format!("Set an environment variable, {whose}"),
            )
            .body(env_body.clone(), false)
            .empty(204, "set")
            .errors(Face::Hvr, HVR_ERRORS),
        );
        doc.add(
            Op::new(
                HttpMethod::Delete,
                &format!("{base}/env_vars/{{var}}"),
                tag,
                Auth::Bearer("ReadWrite"),
                &format!("Remove an environment variable, {whose}"),
            )
            .empty(204, "removed")
            .errors(Face::Hvr, HVR_ERRORS),
        );
    }
}

fn event_interface(doc: &mut Doc) {
    let tag = "jobs";
    let counts = doc.schema::<shapes::EventCounts>();
    for (what, by) in [
        ("event_types", "type"),
        ("event_channels", "channel"),
        ("event_locs", "location"),
    ] {
        doc.add(
            Op::new(
                HttpMethod::Get,
                &format!("{H}/{what}"),
                tag,
                Auth::Bearer("ReadOnly"),
                &format!("Events counted by {by}"),
            )
            .query_list("channel", "only these channels")
            .query_list("type", "only these event types")
            .query_list("state", "only these states")
            .query("loc", string(), "only events of this location")
            .query("fetch_repos_events", boolean(), "accepted; hub events only")
            .query("ev_tstamp_begin", string(), "only events since")
            .query("ev_tstamp_end", string(), "only events until")
            .json(200, "counts", counts.clone())
            .errors(Face::Hvr, HVR_ERRORS),
        );
    }
    doc.add(
        Op::new(
            HttpMethod::Get,
            "/api/latest/repos/event_types",
            tag,
            Auth::Bearer("ReadOnly"),
            "Events of every hub the caller may read, counted by type",
        )
        .query_list("state", "only these states")
        .query("ev_tstamp_begin", string(), "only events since")
        .query("ev_tstamp_end", string(), "only events until")
        .json(200, "counts", counts)
        .errors(Face::Hvr, &[400, 401]),
    );
    let repo_events = doc.schema::<shapes::RepoEvents>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            "/api/latest/repos/events",
            tag,
            Auth::Bearer("ReadOnly"),
            "Events of every hub the caller may read, newest first",
        )
        .query_list("ev_id", "only these events")
        .query_list("type", "only these event types")
        .query_list("state", "only these states")
        .query(
            "body_pattern",
            string(),
            "only events whose request contains this text",
        )
        .query("ev_tstamp_begin", string(), "only events since")
        .query("ev_tstamp_end", string(), "only events until")
        .query("updated_begin", string(), "only events updated since")
        .query("updated_end", string(), "only events updated until")
        .query("max_events", count(), "at most this many (default 1000)")
        .json(200, "events by id, each naming its hub", repo_events)
        .errors(Face::Hvr, &[400, 401]),
    );
}

fn statistics(doc: &mut Doc) {
    let tag = "jobs";
    let metrics = doc.schema::<shapes::Metrics>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{H}/stats/metrics"),
            tag,
            Auth::Bearer("ReadOnly"),
            "Metrics per channel, location and table",
        )
        .description(
            "Computed from the refresh, compare, capture and integrate events and their \
             per-table results (the location is the target; of a capture, its source; a capture \
             or integrate run counts while it runs). Metrics: Refresh Rows, Refresh Source Rows, \
             Refresh Bytes, Refresh Duration, Refresh Tables, Refresh Failures, Compare Rows, \
             Compare Duration, Compare Differences, Compare Tables, Compare Failures, Capture \
             Rows, Capture Latency (ms), Integrate Rows, Integrate Latency (ms; latencies are the \
             largest in a bucket). Times: ISO-8601 or epoch seconds.",
        )
        .query(
            "fetch_values",
            boolean(),
            "with the values (else only which exist)",
        )
        .query_list("channel", "only these channels")
        .query_list("loc", "only these locations")
        .query_list("table", "only these tables")
        .query_list("metric", "only these metrics")
        .query_list(
            "time_gran",
            "minutes per value: 0 (each event), 1, 10, 60, 1440 (default 1)",
        )
        .query_list("scope", "***, c**, cl*, c*t, *l*, clt (default clt)")
        .query("tstamp_begin", string(), "only events finished since")
        .query("tstamp_end", string(), "only events finished until")
        .query(
            "updated_logs_since",
            string(),
            "accepted; every value is answered",
        )
        .query(
            "updated_glob_since",
            string(),
            "accepted; every value is answered",
        )
        .json(200, "values", metrics)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let oldest = doc.schema::<shapes::OldestMetrics>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{H}/stats/oldest"),
            tag,
            Auth::Bearer("ReadOnly"),
            "The oldest metric time per granularity and scope",
        )
        .query_list("time_gran", "1, 10, 60, 1440")
        .query_list("scope", "***, c**, cl*, c*t, *l*, clt")
        .json(200, "oldest times", oldest)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let export = doc.schema::<stats::ExportBody>();
    let reference = doc.schema::<shapes::ExportRef>();
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{H}/stats/metrics/export"),
            tag,
            Auth::Bearer("ReadOnly"),
            "Export metrics as CSV or JSON",
        )
        .description("Answers a reference; GET it (same path, ?ref=…) to download the export.")
        .body(export, false)
        .json(200, "where to fetch the export", reference)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{H}/stats/metrics/export"),
            tag,
            Auth::Bearer("ReadOnly"),
            "Download an export (sluice)",
        )
        .query("ref", string(), "the reference POST answered")
        .reply(
            200,
            "metric,time_gran,scope,channel,loc,table,tstamp,value",
            "text/csv; charset=utf-8; header=present",
            string().build().into(),
        )
        .errors(Face::Hvr, HVR_ERRORS),
    );
}

fn alert_interface(doc: &mut Doc) {
    let tag = "jobs";
    const A: &str = "/api/latest/hubs/{hub}/alerts/{alert}";
    let names = doc.schema::<shapes::AlertNames>();
    let create = doc.schema::<alerts::AlertBody>();
    let props = doc.schema::<shapes::AlertProps>();
    let change = doc.schema::<alerts::AlertPropsBody>();
    let remove = doc.schema::<alerts::AlertPropsDeleteBody>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{H}/alerts"),
            tag,
            Auth::Bearer("ReadOnly"),
            "Alerts",
        )
        .json(200, "alert names", names)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{H}/alerts"),
            tag,
            Auth::Bearer("ReadWrite"),
            "Create an alert",
        )
        .description(
            "Props: Description; Event_Types (event types, * for any) with Event_States (default \
             FAILED); Job_States; Channels (default all); Disabled. Lists are names separated by \
             commas or arrays. Notifications go to the event hub topic sluice.alert (routing \
             <hub>.<alert>) as events finish and jobs change state.",
        )
        .body(create, false)
        .empty(201, "created")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Delete,
            A,
            tag,
            Auth::Bearer("ReadWrite"),
            "Delete an alert",
        )
        .empty(204, "deleted")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{A}/props"),
            tag,
            Auth::Bearer("ReadOnly"),
            "An alert's props (with Alert_State, Last_Notification, Notification_Count)",
        )
        .query_list("fetch", "only these props")
        .json(200, "props", props)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    for (method, summary) in [
        (
            HttpMethod::Patch,
            "Change an alert's props (null removes one)",
        ),
        (HttpMethod::Put, "Replace an alert's props"),
    ] {
        doc.add(
            Op::new(
                method,
                &format!("{A}/props"),
                tag,
                Auth::Bearer("ReadWrite"),
                summary,
            )
            .body(change.clone(), false)
            .empty(204, "changed")
            .errors(Face::Hvr, HVR_ERRORS),
        );
    }
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{A}/props_delete"),
            tag,
            Auth::Bearer("ReadWrite"),
            "Remove props of an alert",
        )
        .body(remove, false)
        .empty(204, "removed")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    for (verb, level, summary) in [
        ("clear", "ReadWrite", "Clear an alert's state"),
        ("disable", "ReadWrite", "Disable an alert"),
        ("test", "ReadWrite", "Send a test notification now"),
    ] {
        doc.add(
            Op::new(
                HttpMethod::Post,
                &format!("{A}/{verb}"),
                tag,
                Auth::Bearer(level),
                summary,
            )
            .empty(204, "done")
            .errors(Face::Hvr, HVR_ERRORS),
        );
    }
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{A}/execute"),
            tag,
            Auth::Bearer("ReadExec"),
            "Evaluate an alert now",
        )
        .description(
            "Against the current job states and the events since its last notification; one \
             notification when anything matches.",
        )
        .reply(
            200,
            "what was evaluated",
            "text/plain; charset=utf-8",
            string().build().into(),
        )
        .errors(Face::Hvr, HVR_ERRORS),
    );
}

fn log_tailing(doc: &mut Doc) {
    let tag = "jobs";
    let text = || string().build().into();
    let files = "hvr.out (every event's log lines), hvr.err (failed events'), {job}.out, \
                 {job}.err: sluice keeps event logs in the repository and looks these names up; \
                 archives are days (YYYYMMDD)";
    for (path, level, summary) in [
        (format!("{H}/logs/{{file}}"), "ReadOnly", "A hub's log file"),
        (
            format!("{H}/logs/{{file}}/archive/{{archive}}"),
            "ReadOnly",
            "A day of a hub's log file",
        ),
        (
            "/api/latest/logs/{file}".to_owned(),
            "SysAdmin",
            "The hub server's log file (every hub)",
        ),
        (
            "/api/latest/logs/{file}/archive/{archive}".to_owned(),
            "SysAdmin",
            "A day of the hub server's log file",
        ),
        (
            format!("{H}/jobs/{{job}}/controls/{{ctrl_id}}/log"),
            "ReadOnly",
            "The log of a job's control (one of its events)",
        ),
    ] {
        doc.add(
            Op::new(HttpMethod::Get, &path, tag, Auth::Bearer(level), summary)
                .description(files)
                .query("max_lines", count(), "only the last lines")
                .query("offset_begin", string(), "from this byte offset")
                .query("offset_end", string(), "up to this byte offset")
                .query("offset_begin_limit", string(), "accepted")
                .query("head_crc", string(), "accepted")
                .query("search_eof", boolean(), "accepted")
                .reply(
                    200,
                    "TIMESTAMP: EV_ID TYPE: text lines",
                    "text/plain; charset=utf-8",
                    text(),
                )
                .errors(Face::Hvr, HVR_ERRORS),
        );
    }
    let found = doc.schema::<shapes::LogOffset>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{H}/logs/{{file}}/search"),
            tag,
            Auth::Bearer("ReadOnly"),
            "Where a time starts in a hub's log file",
        )
        .query(
            "search_tstamp",
            string(),
            "the time (ISO-8601 or epoch seconds)",
        )
        .json(200, "the offset of the first line at or after it", found)
        .errors(Face::Hvr, HVR_ERRORS),
    );
}
