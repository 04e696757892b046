//! The commands: parse → ask the [`Backend`] (the local repository or a hub server) → print, once
//! for both sides. A few commands work on the local repository only (validate, apply, status).
//!
//! Where the two sides printed differently before they shared these functions, the difference is
//! kept (branches on [`Side`], each marked "differs by side").

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use sluice_model::event::table_state;
use sluice_model::{ChannelName, EventId, JobName, JobType, LocationName, ResultName};
use sluice_service::{EventFilter, Severity, TableStatus};

use crate::args::{BatchArgs, CompareArgs, EventListArgs, Global, Outcome, RefreshArgs};
use crate::backend::{Backend, Groups, Plan, Shown, Side};
use crate::local;
use crate::output::{json, table, thousands, when};

/// `sluice hub status`.
pub async fn hub_status(b: &impl Backend, g: &Global) -> Result<Outcome> {
    let Shown { json: value, view } = b.hub_state().await?;
    if g.json {
        json(&value)?;
        return Ok(Outcome::Ok);
    }
    say!("hub {} {}: {}", b.hub(), view.place, view.state);
    if let Some(t) = view.freeze_time {
        say!("  frozen since {}", when(Some(t)));
    }
    if let Some(license) = &view.license {
        say!("  license: {license}");
    }
    if !view.jobs_over_latency_sla.is_empty() {
        say!(
            "  jobs over their latency SLA: {}",
            view.jobs_over_latency_sla.join(", ")
        );
    }
    Ok(Outcome::Ok)
}

/// `sluice hub freeze` and `unfreeze`.
pub async fn freeze(b: &impl Backend, freeze: bool) -> Result<Outcome> {
    b.freeze(freeze).await?;
    let hub = b.hub();
    match (freeze, b.side()) {
        // Differs by side: "starts" locally, "runs" on a hub server.
        (true, Side::Local) => say!("hub {hub} frozen: no job starts until `sluice hub unfreeze`"),
        (true, Side::Remote) => say!("hub {hub} frozen: no job runs until `sluice hub unfreeze`"),
        (false, _) => say!("hub {hub} unfrozen"),
    }
    Ok(Outcome::Ok)
}

/// `k1=v1 k2=v2`.
fn key_values(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `sluice location list`.
pub async fn locations(b: &impl Backend, g: &Global) -> Result<Outcome> {
    let Shown { json: value, view } = b.locations().await?;
    if g.json {
        json(&value)?;
        return Ok(Outcome::Ok);
    }
    // Differs by side: only the local list has a description column.
    let local = b.side() == Side::Local;
    let rows = view
        .into_iter()
        .map(|l| {
            let mut row = vec![l.name, l.class];
            if local {
                row.push(l.description);
            }
            row.push(key_values(&l.props));
            row
        })
        .collect();
    let headers: &[&str] = match local {
        true => &["location", "class", "description", "properties"],
        false => &["location", "class", "properties"],
    };
    say!("{}", table(headers, rows));
    Ok(Outcome::Ok)
}

/// `sluice location test`.
pub async fn test_location(
    b: &impl Backend,
    g: &Global,
    location: &LocationName,
) -> Result<Outcome> {
    let Shown { json: value, view } = b.test_location(location).await?;
    if g.json {
        json(&value)?;
        return Ok(Outcome::Ok);
    }
    say!("location {location}: ok");
    for (k, v) in view {
        say!("  {k}: {v}");
    }
    Ok(Outcome::Ok)
}

/// `sluice channel list`.
pub async fn channels(b: &impl Backend, g: &Global) -> Result<Outcome> {
    let Shown { json: value, view } = b.channels().await?;
    if g.json {
        json(&value)?;
        return Ok(Outcome::Ok);
    }
    // Differs by side: `G: a,b` locally, `G:a,b` from a hub server.
    let separator = match b.side() {
        Side::Local => ": ",
        Side::Remote => ":",
    };
    let groups_text = |groups: &Groups| {
        groups
            .iter()
            .map(|(g, m)| format!("{g}{separator}{}", m.join(",")))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let rows = view
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.tables.to_string(),
                groups_text(&c.groups),
                c.description.clone(),
            ]
        })
        .collect();
    say!(
        "{}",
        table(
            &["channel", "tables", "location groups", "description"],
            rows
        )
    );
    Ok(Outcome::Ok)
}

/// `sluice channel show`.
pub async fn show_channel(b: &impl Backend, g: &Global, channel: &ChannelName) -> Result<Outcome> {
    let Shown {
        json: value,
        view: c,
    } = b.channel(channel).await?;
    if g.json {
        json(&value)?;
        return Ok(Outcome::Ok);
    }
    say!("channel {} {}", c.name, c.description);
    for (group, members) in &c.groups {
        say!("  group {group}: {}", members.join(", "));
    }
    let rows = c
        .tables
        .into_iter()
        .map(|t| {
            let cols = match t.columns {
                None => "discovered from the source".to_owned(),
                Some(cols) => cols
                    .iter()
                    .map(|(name, data_type, key)| {
                        format!("{name} {data_type}{}", if *key { " key" } else { "" })
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            vec![t.name, t.base_name, cols]
        })
        .collect();
    say!("{}", table(&["table", "base name", "columns"], rows));
    let rows = c
        .actions
        .into_iter()
        .map(|a| {
            let params = key_values(&a.params);
            vec![a.action_type, a.loc_scope, a.table_scope, params]
        })
        .collect();
    say!(
        "{}",
        table(
            &["action", "location scope", "table scope", "parameters"],
            rows
        )
    );
    Ok(Outcome::Ok)
}

/// `sluice channel export`.
pub async fn export(b: &impl Backend) -> Result<Outcome> {
    json(&b.export().await?)?;
    Ok(Outcome::Ok)
}

/// `sluice channel delete`.
pub async fn delete_channel(b: &impl Backend, channel: &ChannelName) -> Result<Outcome> {
    b.delete_channel(channel).await?;
    say!("channel {channel} deleted from hub {}", b.hub());
    Ok(Outcome::Ok)
}

/// Prints a plan (`--dry-run`).
fn print_plan(plan: &Plan, g: &Global) -> Result<()> {
    if g.json {
        return json(&plan.json);
    }
    say!(
        "plan of job {} ({} → {}); dry run: nothing was executed\n",
        plan.job,
        plan.source,
        plan.target
    );
    let statements = |list: &[(String, bool)]| {
        for (sql, per_row) in list {
            match per_row {
                true => say!("    {sql};   -- once per row"),
                false => say!("    {sql};"),
            }
        }
    };
    for t in &plan.tables {
        say!("table {}: {} → {}", t.table, t.source_table, t.target_table);
        if let Some(action) = &t.action {
            say!("  {action}");
        }
        say!("  at {}:", plan.source);
        statements(&t.source_statements);
        say!("  at {}:", plan.target);
        statements(&t.target_statements);
        say!();
    }
    Ok(())
}

/// `sluice refresh`.
pub async fn refresh(b: &impl Backend, g: &Global, args: RefreshArgs) -> Result<Outcome> {
    if args.dry_run {
        print_plan(&b.plan_refresh(&args, g).await?, g)?;
        return Ok(Outcome::Ok);
    }
    b.refresh(args, g).await
}

/// `sluice refresh|compare|activate|deactivate --channels GLOB`: a table of channel, event and
/// state (final ones locally and with `--wait`); an error (exit 1) when a channel was not posted
/// or its job did not end `DONE`.
pub async fn batch(b: &impl Backend, g: &Global, args: BatchArgs) -> Result<Outcome> {
    let rows = b.batch(&args).await?;
    if g.json {
        json(&serde_json::json!({ "channels": rows }))?;
    } else {
        let shown = rows
            .iter()
            .map(|r| {
                vec![
                    r.channel.clone(),
                    r.ev_id.clone().unwrap_or_default(),
                    r.state.clone(),
                    r.response.clone().unwrap_or_default(),
                ]
            })
            .collect();
        say!(
            "{}",
            table(&["channel", "event", "state", "response"], shown)
        );
    }
    let failed = rows.iter().filter(|r| r.failed()).count();
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} channel(s) of the batch {} failed",
            rows.len(),
            args.verb
        );
    }
    Ok(Outcome::Ok)
}

/// `sluice compare`.
pub async fn compare(b: &impl Backend, g: &Global, args: CompareArgs) -> Result<Outcome> {
    if args.dry_run {
        print_plan(&b.plan_compare(&args).await?, g)?;
        return Ok(Outcome::Ok);
    }
    b.compare(args, g).await
}

/// `sluice job list`.
pub async fn jobs(b: &impl Backend, g: &Global) -> Result<Outcome> {
    let Shown { json: value, view } = b.jobs().await?;
    if g.json {
        json(&value)?;
        return Ok(Outcome::Ok);
    }
    // Differs by side: only the local list shows when the last run began and ended.
    let local = b.side() == Side::Local;
    let rows = view
        .into_iter()
        .map(|j| match local {
            true => vec![
                j.name,
                j.state,
                j.last_event,
                when(j.run.0),
                when(j.run.1),
                j.runs,
            ],
            false => vec![j.name, j.state, j.last_event, j.runs],
        })
        .collect();
    let headers: &[&str] = match local {
        true => &[
            "job",
            "state",
            "last event",
            "run began",
            "run ended",
            "runs",
        ],
        false => &["job", "state", "last event", "runs"],
    };
    say!("{}", table(headers, rows));
    Ok(Outcome::Ok)
}

/// `sluice job suspend` and `resume`.
pub async fn suspend_job(b: &impl Backend, job: &JobName, suspend: bool) -> Result<Outcome> {
    b.suspend_job(job, suspend).await?;
    match suspend {
        true => say!("job {job} suspended"),
        false => say!("job {job} resumed"),
    }
    Ok(Outcome::Ok)
}

/// `sluice job cancel`: cancels the job's active events. A job running in another process stops
/// when that process sees the cancel.
pub async fn cancel_job(b: &impl Backend, g: &Global, job: &JobName) -> Result<Outcome> {
    let ids = b.cancel_job(job).await?;
    if g.json {
        json(&serde_json::json!({ "job": job.as_str(), "canceled_ev_ids": ids }))?;
        return Ok(Outcome::Ok);
    }
    say!("job {job}: cancelled {}", ids.join(", "));
    // Differs by side: a hub server's runners see the cancel at once.
    if b.side() == Side::Local {
        note!(
            "a job running in another sluice process sees the cancel at its next heartbeat (every few seconds)"
        );
    }
    Ok(Outcome::Ok)
}

/// `sluice event list`.
pub async fn events(b: &impl Backend, g: &Global, args: EventListArgs) -> Result<Outcome> {
    let Shown { json: value, view } = b.events(&args, g.json).await?;
    if g.json {
        json(&value)?;
        return Ok(Outcome::Ok);
    }
    let rows = view
        .into_iter()
        .map(|e| vec![e.id, e.event_type, e.state, e.channel, e.user, e.response])
        .collect();
    say!(
        "{}",
        table(
            &["event", "type", "state", "channel", "user", "response"],
            rows
        )
    );
    Ok(Outcome::Ok)
}

/// `sluice event show`.
pub async fn show_event(b: &impl Backend, g: &Global, event: EventId) -> Result<Outcome> {
    let Shown {
        json: value,
        view: e,
    } = b.event(event).await?;
    if g.json {
        json(&value)?;
        return Ok(Outcome::Ok);
    }
    say!("event {} ({}, {})", e.id, e.event_type, e.state);
    if let Some(user) = &e.user {
        say!("  user: {user}");
    }
    if let Some(d) = &e.description {
        say!("  description: {d}");
    }
    if let Some(job) = &e.job {
        say!("  job: {job}");
    }
    say!("  started: {}  finished: {}", when(e.start), when(e.finish));
    if let Some(r) = &e.response {
        say!("  response: {r}");
    }
    if !e.results.is_empty() {
        let rows = e.results.into_iter().map(Vec::from).collect();
        say!("{}", table(&["table", "result", "value"], rows));
    }
    Ok(Outcome::Ok)
}

/// `sluice event log`.
pub async fn event_log(b: &impl Backend, g: &Global, event: EventId) -> Result<Outcome> {
    let Shown { json: value, view } = b.event_log(event).await?;
    if g.json {
        json(&value)?;
        return Ok(Outcome::Ok);
    }
    for line in view {
        say!("{line}");
    }
    Ok(Outcome::Ok)
}

// ---- the local repository only ----

pub async fn validate(g: &Global, file: &Path, env: Option<&str>) -> Result<Outcome> {
    let parsed = match env {
        Some(env) => sluice_service::environment::render(file, Some(env)),
        None => sluice_service::definition::parse_file(file),
    };
    // Check against the repository's locations when there is one; never create one to validate.
    let mut known = std::collections::BTreeSet::new();
    if g.home.join("hub.db").exists()
        && let Some(hub) = parsed
            .as_ref()
            .ok()
            .and_then(sluice_service::definition::hub_of)
            .or_else(|| g.hub_name.clone())
    {
        known = local::service(g)?
            .locations(&hub)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|l| l.name)
            .collect();
    }
    let compiled =
        sluice_service::definition::compile_parsed(file, parsed, known, g.hub_name.as_ref());
    let errors = compiled.errors().count();
    if g.json {
        json(&serde_json::json!({ "valid": errors == 0, "diagnostics": compiled.diagnostics }))?;
    } else {
        for d in &compiled.diagnostics {
            let label = if d.severity == Severity::Error {
                "error"
            } else {
                "warning"
            };
            say!("{label}: {d}");
        }
    }
    if errors > 0 {
        return Err(anyhow::Error::new(sluice_service::ServiceError::new(
            sluice_service::ServiceErrorKind::Invalid,
            format!("{} has {errors} error(s)", file.display()),
        )));
    }
    if !g.json {
        let defs = compiled.definitions.expect("no errors means definitions");
        say!(
            "{} is valid: hub {}, {} location(s), {} channel(s)",
            file.display(),
            defs.hub.name,
            defs.locations.len(),
            defs.channels.len()
        );
    }
    Ok(Outcome::Ok)
}

/// A channel's tables as `sluice status` shows them, or why they cannot be shown.
type ChannelTables = Result<Vec<TableStatus>, String>;

pub async fn status(g: &Global, channel: Option<&ChannelName>) -> Result<Outcome> {
    let svc = local::existing_service(g)?;
    let hub = svc.resolve_hub(g.hub_name.as_ref()).await?;
    let channels = match channel {
        Some(c) => vec![svc.channel(&hub, c).await?.name],
        None => svc
            .channels(&hub)
            .await?
            .into_iter()
            .map(|c| c.name)
            .collect(),
    };
    // Listing every channel, one whose definitions leave its tables unresolved (say, no Capture
    // action to choose its source) shows why instead of ending the whole listing.
    let mut all: Vec<(ChannelName, ChannelTables, Option<Replication>)> = Vec::new();
    for c in channels {
        let tables = match svc.status(&hub, &c, None, None).await {
            Ok(tables) => Ok(tables),
            Err(e)
                if channel.is_none() && e.kind() == sluice_service::ServiceErrorKind::Invalid =>
            {
                Err(e.to_string())
            }
            Err(e) => return Err(e.into()),
        };
        let replication = replication(&svc, &hub, &c).await?;
        all.push((c, tables, replication));
    }
    if g.json {
        let value: Vec<_> = all
            .iter()
            .map(|(c, t, r)| match t {
                Ok(t) => serde_json::json!({ "channel": c, "tables": t, "replication": r }),
                Err(e) => serde_json::json!({
                    "channel": c, "tables": [], "replication": r, "error": e,
                }),
            })
            .collect();
        json(&value)?;
        return Ok(Outcome::Ok);
    }
    for (c, tables, replication) in &all {
        let tables = match tables {
            Ok(tables) => tables,
            Err(e) => {
                say!("channel {c}: its tables cannot be shown: {e}");
                continue;
            }
        };
        let (src, tgt) = tables
            .first()
            .map(|t| (t.source.to_string(), t.target.to_string()))
            .unwrap_or_default();
        say!("channel {c} ({src} → {tgt})");
        let count = |n: Option<u64>, e: &Option<String>| match (n, e) {
            (Some(n), _) => thousands(n),
            (None, Some(e)) => format!("error: {e}"),
            (None, None) => "(no table)".into(),
        };
        let rows = tables
            .iter()
            .map(|t| {
                let refresh = t.last_refresh.as_ref().map_or_else(
                    || "never".to_owned(),
                    |r| format!("{} {}", when(r.finished), r.table_state),
                );
                let compare = t.last_compare.as_ref().map_or_else(
                    || "never".to_owned(),
                    |r| {
                        let state = if r.table_state.is_empty() {
                            table_state::PENDING
                        } else {
                            r.table_state.as_str()
                        };
                        format!("{} {state}", when(r.finished))
                    },
                );
                vec![
                    t.table.to_string(),
                    count(t.source_rows, &t.source_error),
                    count(t.target_rows, &t.target_error),
                    refresh,
                    compare,
                ]
            })
            .collect();
        say!(
            "{}",
            table(
                &[
                    "table",
                    "source rows",
                    "target rows",
                    "last refresh",
                    "last compare"
                ],
                rows
            )
        );
        if let Some(r) = replication {
            print_replication(r);
        }
    }
    Ok(Outcome::Ok)
}

/// An activated channel's replication, as `sluice status` shows it.
#[derive(Debug, Serialize)]
struct Replication {
    /// `loading` or `active`.
    state: String,
    source: LocationName,
    targets: Vec<LocationName>,
    /// Bytes of source log not yet acknowledged, when the source can tell.
    capture_lag_bytes: Option<u64>,
    /// The capture job, then an integrate job per target.
    jobs: Vec<ReplicationJob>,
}

/// A capture or integrate job with the figures of its current (or last) run.
#[derive(Debug, Serialize)]
struct ReplicationJob {
    job: JobName,
    state: String,
    /// Rows captured (capture) or integrated (integrate) in the run.
    rows: Option<u64>,
    /// Seconds from a source commit to its capture, or to its commit at the target.
    latency_seconds: Option<f64>,
}

/// The replication of `channel`, when it is activated: job states from the repository, figures
/// from the replication when this process runs it, else from the results the running (or last)
/// capture and integrate events wrote.
async fn replication(
    svc: &sluice_service::HubService,
    hub: &sluice_model::HubName,
    channel: &ChannelName,
) -> Result<Option<Replication>> {
    let Some(status) = svc.replication_status(hub, channel).await? else {
        return Ok(None);
    };
    let mut jobs = Vec::new();
    for (job, state) in &status.jobs {
        let capture = job.job_type() == JobType::Capture;
        let target = job.locations().first().cloned();
        let (rows, latency_seconds) = match (&status.stats, &target) {
            (Some(s), _) if capture => (Some(s.captured), s.capture_latency),
            (Some(s), Some(t)) => (
                Some(s.integrated.get(t).copied().unwrap_or(0)),
                s.integrate_latency.get(t).copied(),
            ),
            _ => {
                let (rows, latency) = if capture {
                    (ResultName::CapturedRows, ResultName::CaptureLatency)
                } else {
                    (ResultName::IntegratedRows, ResultName::IntegrateLatency)
                };
                let filter = EventFilter {
                    hub: Some(hub.clone()),
                    jobs: vec![job.clone()],
                    fetch_results: true,
                    max_events: Some(1),
                    ..Default::default()
                };
                let last = svc.events(&filter).await?.into_iter().next();
                let figure = |name: ResultName| {
                    last.as_ref()?
                        .results
                        .iter()
                        .find(|r| r.table.is_none() && r.name == name)
                        .map(|r| r.value.clone())
                };
                (
                    figure(rows).and_then(|v| v.parse().ok()),
                    figure(latency).and_then(|v| v.parse().ok()),
                )
            }
        };
        jobs.push(ReplicationJob {
            job: job.clone(),
            state: state.to_string(),
            rows,
            latency_seconds,
        });
    }
    Ok(Some(Replication {
        state: status.state,
        source: status.source,
        targets: status.targets,
        capture_lag_bytes: status.capture_lag_bytes,
        jobs,
    }))
}

fn print_replication(r: &Replication) {
    let lag = r
        .capture_lag_bytes
        .map(|b| format!(", source lag {} bytes", thousands(b)))
        .unwrap_or_default();
    say!("change capture: {}{lag}", r.state);
    let rows = r
        .jobs
        .iter()
        .map(|j| {
            vec![
                j.job.to_string(),
                j.state.clone(),
                j.rows.map(thousands).unwrap_or_default(),
                j.latency_seconds
                    .map(|l| format!("{l:.3}"))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    say!("{}", table(&["job", "state", "rows", "latency (s)"], rows));
}

/// `sluice lineage [--json|--dot]`: the flows of every hub the user may read, from the local
/// repository (as its operator: every hub) or from the hub server of `--hub` (as the logged-in
/// user).
pub async fn lineage(g: &Global, dot: bool) -> Result<Outcome> {
    let lineage = match &g.hub {
        Some(_) => {
            let (client, _) = crate::remote::Remote::session(g)?;
            serde_json::from_value(client.lineage().await?)
                .context("the hub server answered a lineage this sluice cannot read")?
        }
        None => {
            local::existing_service(g)?
                .lineage(&crate::args::user(), sluice_model::AccessLevel::SysAdmin)
                .await?
        }
    };
    if dot {
        say!("{}", lineage.to_dot().trim_end());
        return Ok(Outcome::Ok);
    }
    if g.json {
        json(&lineage)?;
        return Ok(Outcome::Ok);
    }
    if lineage.edges.is_empty() {
        say!("no flow: no channel has a source and a target location yet");
        return Ok(Outcome::Ok);
    }
    let label = |id: &str| {
        lineage
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map_or_else(|| id.to_owned(), |n| n.label.clone())
    };
    let rows = lineage
        .edges
        .iter()
        .map(|e| {
            let mut state = e.state.as_str().to_owned();
            if let Some(r) = &e.replication {
                let s =
                    |j: Option<sluice_model::JobState>| j.map_or("-".to_owned(), |j| j.to_string());
                state.push_str(&format!(
                    " (capture {}, integrate {})",
                    s(r.capture),
                    s(r.integrate)
                ));
            }
            vec![
                format!("{} → {}", label(&e.source), label(&e.target)),
                e.channel.to_string(),
                e.hub.to_string(),
                state,
                e.last_run
                    .as_ref()
                    .map(|r| format!("{} {} {}", r.kind.as_str(), r.state, when(Some(r.time))))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    say!(
        "{}",
        table(
            &["source → target", "channel", "hub", "state", "last run"],
            rows
        )
    );
    Ok(Outcome::Ok)
}
