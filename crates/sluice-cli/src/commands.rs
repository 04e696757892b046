//! The commands: parse → one service call → print.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use sluice_connector::{PlannedStatement, Repeat, WriteStrategy};
use sluice_model::event::table_state;
use sluice_model::{
    ChannelName, ColumnName, EventState, EventType, HubName, LocationName, TableName,
};
use sluice_service::{
    CompareCommand, CompareSummary, EventFilter, EventRecord, Granularity, HubService, JobPlan,
    ModeOverride, RefreshCommand, RefreshSummary, RowwiseApply, RunningJob, Severity, TableStatus,
};

use crate::output::{Interrupted, JobFailed, json, rate, table, thousands};
use crate::progress::{Display, follow};
use crate::{
    ChannelCommand, Cli, Command, EventCommand, Global, HubCommand, JobCommand, LocationCommand,
    Outcome,
};

/// Options of `sluice refresh`.
#[derive(Args, Debug)]
pub struct RefreshArgs {
    /// The channel.
    pub channel: ChannelName,
    /// Source location (default: the channel's Capture location).
    #[arg(long)]
    pub source: Option<LocationName>,
    /// Target location (default: the channel's Integrate location).
    #[arg(long)]
    pub target: Option<LocationName>,
    /// Only these tables (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<TableName>,
    /// truncate_load (one transaction) or staging_swap (load a staging table, swap atomically).
    #[arg(long, value_parser = parse_strategy)]
    pub strategy: Option<WriteStrategy>,
    /// Rows per batch.
    #[arg(long, alias = "batch-size")]
    pub batch_rows: Option<usize>,
    /// full_replace, incremental, smart_sync or rowwise (default: each table's Refresh action,
    /// else full_replace).
    #[arg(long, value_parser = ["full_replace", "incremental", "smart_sync", "rowwise"])]
    pub mode: Option<String>,
    /// The identity, date or date-time column of incremental and smart_sync refreshes.
    #[arg(long)]
    pub incremental_column: Option<ColumnName>,
    /// Days an incremental refresh by a date column reaches back (rows inside are upserted).
    #[arg(long)]
    pub date_buffer_days: Option<u32>,
    /// Rowwise: apply inserts and updates only.
    #[arg(long, conflicts_with = "only_deletes")]
    pub no_deletes: bool,
    /// Rowwise: apply deletes only.
    #[arg(long)]
    pub only_deletes: bool,
    /// Tables refreshed at the same time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Print every statement that would run, per table, and run none.
    #[arg(long)]
    pub dry_run: bool,
    /// With --hub: wait for the refresh to end, showing each table's progress (without --hub a
    /// refresh always runs to its end).
    #[arg(long)]
    pub wait: bool,
}

fn parse_strategy(s: &str) -> Result<WriteStrategy, String> {
    match s.parse()? {
        WriteStrategy::Append | WriteStrategy::Upsert => {
            Err("refresh replaces the target: use truncate_load or staging_swap".into())
        }
        strategy => Ok(strategy),
    }
}

/// Options of `sluice compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The channel.
    pub channel: ChannelName,
    /// Source location (default: the channel's Capture location).
    #[arg(long)]
    pub source: Option<LocationName>,
    /// Target location (default: the channel's Integrate location).
    #[arg(long)]
    pub target: Option<LocationName>,
    /// Only these tables (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<TableName>,
    /// Compare row by row and list the keys that differ (default: counts and checksums).
    #[arg(long)]
    pub rowwise: bool,
    /// Keys listed per kind of difference and table.
    #[arg(long, default_value_t = 20)]
    pub max_listed: usize,
    /// Print every statement that would run, per table, and run none.
    #[arg(long)]
    pub dry_run: bool,
    /// With --hub: wait for the compare to end, showing each table's progress (without --hub a
    /// compare always runs to its end).
    #[arg(long)]
    pub wait: bool,
}

/// Options of `sluice event list`.
#[derive(Args, Debug)]
pub struct EventListArgs {
    /// Only events of this channel.
    #[arg(long)]
    pub channel: Option<ChannelName>,
    /// Only events of this type (Refresh, Compare, Definition_Change_Import, …).
    #[arg(long = "type")]
    pub event_type: Option<EventType>,
    /// Only events in this state (ACTIVE, DONE, FAILED, CANCELED).
    #[arg(long)]
    pub state: Option<EventState>,
    /// At most this many.
    #[arg(long, visible_alias = "max", default_value_t = 50)]
    pub limit: usize,
}

pub fn user() -> String {
    std::env::var("SLUICE_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "local".into())
}

/// Opens the local repository (creating it on first use).
pub fn service(global: &Global) -> Result<HubService> {
    HubService::open_local(&global.home, user())
        .with_context(|| format!("cannot open the repository in {}", global.home.display()))
}

/// Runs the command: against the hub server with `--hub`, else on the local repository.
pub async fn run(cli: Cli) -> Result<Outcome> {
    let g = cli.global;
    match cli.command {
        Command::Login(args) => crate::remote::login(&g, args).await,
        Command::Logout => crate::remote::logout(&g).await,
        command if g.hub.is_some() && crate::remote::serves(&command) => {
            crate::remote::run(&g, command).await
        }
        command => run_local(g, command).await,
    }
}

async fn run_local(g: Global, command: Command) -> Result<Outcome> {
    match command {
        Command::Login(_) | Command::Logout => unreachable!("handled by `run`"),
        Command::Quickstart(args) => crate::quickstart::run(args, &g).await,
        Command::Validate { file } => validate(&g, &file).await,
        Command::Apply { file } => apply(&g, &file).await,
        Command::Hub(HubCommand::Status) => hub_status(&g).await,
        Command::Hub(HubCommand::Freeze) => freeze(&g, true).await,
        Command::Hub(HubCommand::Unfreeze) => freeze(&g, false).await,
        Command::Location(LocationCommand::List) => locations(&g).await,
        Command::Location(LocationCommand::Test { location }) => test_location(&g, &location).await,
        Command::Channel(ChannelCommand::List) => channels(&g).await,
        Command::Channel(ChannelCommand::Show { channel }) => show_channel(&g, &channel).await,
        Command::Channel(ChannelCommand::Export) => export(&g).await,
        Command::Channel(ChannelCommand::Delete { channel }) => delete_channel(&g, &channel).await,
        Command::Refresh(args) => refresh(&g, args).await,
        Command::Compare(args) => compare(&g, args).await,
        Command::Status { channel } => status(&g, channel.as_ref()).await,
        Command::Event(EventCommand::List(args)) => events(&g, args).await,
        Command::Event(EventCommand::Show { event }) => show_event(&g, event).await,
        Command::Event(EventCommand::Log { event }) => event_log(&g, event).await,
        Command::Event(EventCommand::Tail { .. }) => anyhow::bail!(
            "`sluice event tail` follows the event hub of a running hub server: pass --hub URL (or set SLUICE_HUB) after `sluice login`"
        ),
        Command::Job(JobCommand::List) => jobs(&g).await,
        Command::Job(JobCommand::Suspend { job }) => suspend_job(&g, &job, true).await,
        Command::Job(JobCommand::Resume { job }) => suspend_job(&g, &job, false).await,
        Command::Job(JobCommand::Cancel { job }) => cancel_job(&g, &job).await,
        Command::Serve(args) => crate::server::serve(args, &g).await,
        Command::User(cmd) => crate::server::user(cmd, &g).await,
        Command::Apikey(cmd) => crate::server::apikey(cmd, &g).await,
        Command::Bench(args) => crate::bench::run(args, &g).await,
        Command::BenchReference { source, target } => {
            crate::bench::reference_copy(&source, &target)?;
            Ok(Outcome::Ok)
        }
    }
}

async fn validate(g: &Global, file: &Path) -> Result<Outcome> {
    // Check against the repository's locations when there is one; never create one to validate.
    let compiled = if g.home.join("hub.db").exists() {
        service(g)?.validate_file(file, g.hub_name.as_ref()).await?
    } else {
        sluice_service::definition::compile_file(file, Default::default(), g.hub_name.as_ref())
    };
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

async fn apply(g: &Global, file: &Path) -> Result<Outcome> {
    let svc = service(g)?;
    let (summary, warnings) = svc.apply_file(file, g.hub_name.as_ref()).await?;
    if g.json {
        json(&serde_json::json!({ "applied": summary, "warnings": warnings }))?;
        return Ok(Outcome::Ok);
    }
    for w in &warnings {
        say!("warning: {w}");
    }
    say!(
        "applied {}{}",
        file.display(),
        if summary.hub_created {
            " (hub created)"
        } else {
            ""
        }
    );
    say!(
        "  locations added:    {}",
        name_list(&summary.locations_added)
    );
    say!(
        "  locations replaced: {}",
        name_list(&summary.locations_replaced)
    );
    say!(
        "  channels added:     {}",
        name_list(&summary.channels_added)
    );
    say!(
        "  channels replaced:  {}",
        name_list(&summary.channels_replaced)
    );
    Ok(Outcome::Ok)
}

/// `k1=v1 k2=v2` of properties or parameters (unresolved: a secret shows as its reference).
fn key_values(
    map: &std::collections::BTreeMap<String, sluice_model::definition::PropValue>,
) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}", v.to_text()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `a, b, c`, or `-` for none.
fn name_list(names: &[impl ToString]) -> String {
    if names.is_empty() {
        return "-".into();
    }
    names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn hub(svc: &HubService, g: &Global) -> Result<HubName> {
    Ok(svc.resolve_hub(g.hub_name.as_ref()).await?)
}

async fn locations(g: &Global) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    let locations = svc.locations(&hub).await?;
    if g.json {
        json(&locations)?;
        return Ok(Outcome::Ok);
    }
    let rows = locations
        .iter()
        .map(|l| {
            // Secrets are references; showing them names the variable, never a value.
            let props = key_values(&l.props);
            vec![
                l.name.to_string(),
                l.class.to_string(),
                l.description.clone(),
                props,
            ]
        })
        .collect();
    say!(
        "{}",
        table(&["location", "class", "description", "properties"], rows)
    );
    Ok(Outcome::Ok)
}

async fn test_location(g: &Global, location: &LocationName) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    let report = svc.test_location(&hub, location).await?;
    if g.json {
        json(&report)?;
    } else {
        say!("location {location}: ok");
        for (k, v) in &report.discovered_props {
            say!("  {k}: {v}");
        }
    }
    Ok(Outcome::Ok)
}

async fn channels(g: &Global) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    let channels = svc.channels(&hub).await?;
    if g.json {
        let list: Vec<_> = channels
            .iter()
            .map(|c| {
                serde_json::json!({
                    "channel": c.name,
                    "description": c.description,
                    "loc_groups": c.loc_groups,
                    "tables": c.tables.keys().collect::<Vec<_>>(),
                })
            })
            .collect();
        json(&list)?;
        return Ok(Outcome::Ok);
    }
    let rows = channels
        .iter()
        .map(|c| {
            let groups = c
                .loc_groups
                .iter()
                .map(|(g, m)| {
                    format!(
                        "{g}: {}",
                        m.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(",")
                    )
                })
                .collect::<Vec<_>>()
                .join("  ");
            vec![
                c.name.to_string(),
                c.tables.len().to_string(),
                groups,
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

async fn show_channel(g: &Global, channel: &ChannelName) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    let c = svc.channel(&hub, channel).await?;
    if g.json {
        let actions: Vec<_> = c
            .actions
            .iter()
            .map(|a| {
                serde_json::json!({
                    "type": a.action_type().as_str(),
                    "loc_scope": a.loc_scope.to_string(),
                    "table_scope": a.table_scope.to_string(),
                    "params": a.params(),
                })
            })
            .collect();
        json(&serde_json::json!({
            "channel": c.name,
            "description": c.description,
            "loc_groups": c.loc_groups,
            "tables": c.tables,
            "actions": actions,
        }))?;
        return Ok(Outcome::Ok);
    }
    say!("channel {} {}", c.name, c.description);
    for (group, members) in &c.loc_groups {
        say!(
            "  group {group}: {}",
            members
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let rows = c
        .tables
        .values()
        .map(|t| {
            let cols = match &t.columns {
                None => "discovered from the source".to_owned(),
                Some(cols) => cols
                    .iter()
                    .map(|col| {
                        format!(
                            "{} {}{}",
                            col.name,
                            col.data_type,
                            if col.key > 0 { " key" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            vec![
                t.name.to_string(),
                t.base_name
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                cols,
            ]
        })
        .collect();
    say!("{}", table(&["table", "base name", "columns"], rows));
    let rows = c
        .actions
        .iter()
        .map(|a| {
            let params = key_values(a.params());
            vec![
                a.action_type().as_str().to_owned(),
                a.loc_scope.to_string(),
                a.table_scope.to_string(),
                params,
            ]
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

fn print_plan(plan: &JobPlan, g: &Global) -> Result<()> {
    if g.json {
        return json(plan);
    }
    say!(
        "plan of job {} ({} → {}); dry run: nothing was executed\n",
        plan.job,
        plan.source,
        plan.target
    );
    let statement = |s: &PlannedStatement| match s.repeat {
        Repeat::Once => format!("    {};", s.sql),
        Repeat::PerRow => format!("    {};   -- once per row", s.sql),
    };
    for t in &plan.tables {
        say!("table {}: {} → {}", t.table, t.source_table, t.target_table);
        if let Some(action) = &t.action {
            say!("  {action}");
        }
        say!("  at {}:", plan.source);
        for s in &t.source_statements {
            say!("{}", statement(s));
        }
        say!("  at {}:", plan.target);
        for s in &t.target_statements {
            say!("{}", statement(s));
        }
        say!();
    }
    Ok(())
}

/// Follows a running job: progress, Ctrl-C to cancel, then its outcome.
async fn wait<R: Send + 'static>(mut running: RunningJob<R>, g: &Global, verb: &str) -> Result<R> {
    if !g.json {
        note!(
            "{verb} started: event {}, job {}",
            running.event,
            running.job
        );
    }
    let display = Display::choose(g.json);
    let progress = std::mem::replace(
        &mut running.progress,
        tokio::sync::mpsc::unbounded_channel().1,
    );
    let shown = tokio::spawn({
        let verb = verb.to_owned();
        async move { follow(progress, display, &verb).await }
    });
    let cancel = running.cancel.clone();
    let mut interrupted = false;
    let outcome = tokio::select! {
        outcome = &mut running.done => outcome,
        _ = tokio::signal::ctrl_c() => {
            interrupted = true;
            note!("\ninterrupted: cancelling, uncommitted tables are rolled back…");
            cancel.cancel();
            (&mut running.done).await
        }
    };
    let _ = shown.await;
    let summary = outcome.context("the job's task failed")??;
    if interrupted {
        return Err(Interrupted.into());
    }
    Ok(summary)
}

/// Runs a refresh to its end (used by `refresh` and `quickstart`).
pub async fn run_refresh(
    svc: &HubService,
    cmd: RefreshCommand,
    g: &Global,
) -> Result<RefreshSummary> {
    let running = svc.refresh(cmd).await?;
    wait(running, g, "refresh").await
}

/// Runs a compare to its end (used by `compare` and `quickstart`).
pub async fn run_compare(
    svc: &HubService,
    cmd: CompareCommand,
    g: &Global,
) -> Result<CompareSummary> {
    let running = svc.compare(cmd).await?;
    wait(running, g, "compare").await
}

async fn refresh(g: &Global, args: RefreshArgs) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    let cmd = RefreshCommand {
        hub,
        channel: args.channel,
        source: args.source,
        target: args.target,
        tables: args.tables,
        strategy: args.strategy,
        batch_rows: args.batch_rows,
        count_first: !g.json,
        mode: ModeOverride {
            mode: args
                .mode
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(sluice_service::ServiceError::invalid)?,
            incremental_column: args.incremental_column,
            date_buffer_days: args.date_buffer_days,
            apply: match (args.no_deletes, args.only_deletes) {
                (true, _) => Some(RowwiseApply::NoDeletes),
                (_, true) => Some(RowwiseApply::OnlyDeletes),
                _ => None,
            },
        },
        parallel: Some(usize::from(args.parallel)),
    };
    if args.dry_run {
        print_plan(&svc.plan_refresh(&cmd).await?, g)?;
        return Ok(Outcome::Ok);
    }
    let summary = run_refresh(&svc, cmd, g).await?;
    print_refresh(&summary, g)?;
    match summary.state {
        EventState::Done => Ok(Outcome::Ok),
        _ => Err(JobFailed(summary.response).into()),
    }
}

/// Prints a refresh's per-table outcome.
pub fn print_refresh(summary: &RefreshSummary, g: &Global) -> Result<()> {
    if g.json {
        return json(summary);
    }
    let rows = summary
        .tables
        .iter()
        .map(|t| {
            vec![
                t.table.to_string(),
                t.state.as_str().to_owned(),
                thousands(t.rows),
                format!("{:.2}", t.seconds),
                rate(t.rows, t.seconds),
                t.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    say!(
        "{}",
        table(
            &["table", "state", "rows", "seconds", "rows/s", "error"],
            rows
        )
    );
    say!("{} (event {})", summary.response, summary.event);
    Ok(())
}

async fn compare(g: &Global, args: CompareArgs) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    let cmd = CompareCommand {
        hub,
        channel: args.channel,
        source: args.source,
        target: args.target,
        tables: args.tables,
        granularity: if args.rowwise {
            Granularity::Rowwise
        } else {
            Granularity::Bulk
        },
        max_listed: args.max_listed,
    };
    if args.dry_run {
        print_plan(&svc.plan_compare(&cmd).await?, g)?;
        return Ok(Outcome::Ok);
    }
    let summary = run_compare(&svc, cmd, g).await?;
    print_compare(&summary, g)?;
    match summary.state {
        EventState::Done if summary.identical => Ok(Outcome::Ok),
        EventState::Done => Ok(Outcome::Different),
        _ => Err(JobFailed(summary.response).into()),
    }
}

fn key_text(key: &[sluice_model::Value]) -> String {
    key.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints a compare's per-table outcome and the listed keys.
pub fn print_compare(summary: &CompareSummary, g: &Global) -> Result<()> {
    if g.json {
        return json(summary);
    }
    let rowwise = summary.tables.iter().any(|t| t.diff.is_some());
    let rows = summary
        .tables
        .iter()
        .map(|t| {
            let mut row = vec![
                t.table.to_string(),
                t.state.as_str().to_owned(),
                thousands(t.source_rows),
                thousands(t.target_rows),
            ];
            if rowwise {
                let d = t.diff.clone().unwrap_or_default();
                row.extend([
                    thousands(d.only_on_source),
                    thousands(d.only_on_target),
                    thousands(d.differ),
                ]);
            }
            row.push(format!("{:.2}", t.seconds));
            row.push(t.error.clone().unwrap_or_default());
            row
        })
        .collect();
    let headers: Vec<&str> = if rowwise {
        vec![
            "table",
            "state",
            "source rows",
            "target rows",
            "only on source",
            "only on target",
            "differ",
            "seconds",
            "error",
        ]
    } else {
        vec![
            "table",
            "state",
            "source rows",
            "target rows",
            "seconds",
            "error",
        ]
    };
    say!("{}", table(&headers, rows));
    for t in &summary.tables {
        let Some(d) = &t.diff else { continue };
        for (label, count, keys) in [
            ("only on source", d.only_on_source, &d.only_on_source_keys),
            ("only on target", d.only_on_target, &d.only_on_target_keys),
            ("differ", d.differ, &d.differ_keys),
        ] {
            if keys.is_empty() {
                continue;
            }
            let more = count.saturating_sub(keys.len() as u64);
            let list = keys
                .iter()
                .map(|k| format!("({})", key_text(k)))
                .collect::<Vec<_>>()
                .join(" ");
            let suffix = if more > 0 {
                format!(" … and {more} more")
            } else {
                String::new()
            };
            say!("{} {label}: {list}{suffix}", t.table);
        }
    }
    say!("{} (event {})", summary.response, summary.event);
    Ok(())
}

pub(crate) fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| {
        t.with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    })
    .unwrap_or_default()
}

async fn status(g: &Global, channel: Option<&ChannelName>) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    let channels = match channel {
        Some(c) => vec![svc.channel(&hub, c).await?.name],
        None => svc
            .channels(&hub)
            .await?
            .into_iter()
            .map(|c| c.name)
            .collect(),
    };
    let mut all: Vec<(ChannelName, Vec<TableStatus>)> = Vec::new();
    for c in channels {
        let tables = svc.status(&hub, &c, None, None).await?;
        all.push((c, tables));
    }
    if g.json {
        let value: Vec<_> = all
            .iter()
            .map(|(c, t)| serde_json::json!({ "channel": c, "tables": t }))
            .collect();
        json(&value)?;
        return Ok(Outcome::Ok);
    }
    for (c, tables) in &all {
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
    }
    Ok(Outcome::Ok)
}

async fn events(g: &Global, args: EventListArgs) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    let filter = EventFilter {
        hub: Some(hub),
        channels: args.channel.into_iter().collect(),
        types: args.event_type.into_iter().collect(),
        states: args.state.into_iter().collect(),
        max_events: Some(args.limit),
        fetch_results: g.json,
        ..Default::default()
    };
    let events = svc.events(&filter).await?;
    if g.json {
        json(&events)?;
        return Ok(Outcome::Ok);
    }
    let rows = events
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.event_type.to_string(),
                e.state.to_string(),
                e.channel
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                e.user.clone(),
                e.response.clone().unwrap_or_else(|| e.description.clone()),
            ]
        })
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

async fn one_event(
    svc: &HubService,
    hub: HubName,
    event: sluice_model::EventId,
) -> Result<EventRecord> {
    let filter = EventFilter {
        hub: Some(hub),
        ids: vec![event],
        fetch_results: true,
        ..Default::default()
    };
    svc.events(&filter).await?.pop().ok_or_else(|| {
        sluice_service::ServiceError::new(
            sluice_service::ServiceErrorKind::NotFound,
            format!("event {event} does not exist"),
        )
        .into()
    })
}

async fn show_event(g: &Global, event: sluice_model::EventId) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    let e = one_event(&svc, hub, event).await?;
    if g.json {
        json(&e)?;
        return Ok(Outcome::Ok);
    }
    say!("event {} ({}, {})", e.id, e.event_type, e.state);
    say!("  user: {}", e.user);
    say!("  description: {}", e.description);
    if let Some(job) = &e.job {
        say!("  job: {job}");
    }
    say!(
        "  started: {}  finished: {}",
        when(Some(e.start)),
        when(e.finish)
    );
    if let Some(r) = &e.response {
        say!("  response: {r}");
    }
    if !e.results.is_empty() {
        let rows = e
            .results
            .iter()
            .map(|r| {
                vec![
                    r.table
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    r.name.to_string(),
                    r.value.clone(),
                ]
            })
            .collect();
        say!("{}", table(&["table", "result", "value"], rows));
    }
    Ok(Outcome::Ok)
}

async fn event_log(g: &Global, event: sluice_model::EventId) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    one_event(&svc, hub, event).await?;
    let lines = svc.event_log(event).await?;
    if g.json {
        let value: Vec<_> = lines
            .iter()
            .map(|(t, m)| serde_json::json!({ "time": t, "message": m }))
            .collect();
        json(&value)?;
    } else {
        for (t, m) in lines {
            say!("{} {m}", t.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
        }
    }
    Ok(Outcome::Ok)
}

async fn jobs(g: &Global) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    let jobs = svc.jobs(&hub).await?;
    if g.json {
        json(&jobs)?;
        return Ok(Outcome::Ok);
    }
    let rows = jobs
        .iter()
        .map(|j| {
            vec![
                j.name.to_string(),
                j.state.to_string(),
                j.last_event.map(|e| e.to_string()).unwrap_or_default(),
                when(j.run_begin),
                when(j.run_end),
                j.num_runs.to_string(),
            ]
        })
        .collect();
    say!(
        "{}",
        table(
            &[
                "job",
                "state",
                "last event",
                "run began",
                "run ended",
                "runs"
            ],
            rows
        )
    );
    Ok(Outcome::Ok)
}

// ---- local variants of the hub server's administration commands ----

async fn hub_status(g: &Global) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    let record = svc.hub(&hub).await?;
    if g.json {
        json(&serde_json::json!({
            "hub": hub,
            "hub_state": record.state,
            "freeze_time": record.freeze_time,
        }))?;
        return Ok(Outcome::Ok);
    }
    say!("hub {hub} in {}: {}", g.home.display(), record.state);
    if let Some(t) = record.freeze_time {
        say!("  frozen since {}", when(Some(t)));
    }
    Ok(Outcome::Ok)
}

async fn freeze(g: &Global, freeze: bool) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    if freeze {
        svc.freeze_hub(&hub).await?;
        say!("hub {hub} frozen: no job starts until `sluice hub unfreeze`");
    } else {
        svc.unfreeze_hub(&hub).await?;
        say!("hub {hub} unfrozen");
    }
    Ok(Outcome::Ok)
}

async fn export(g: &Global) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    json(svc.export_document(&hub).await?.as_ref())?;
    Ok(Outcome::Ok)
}

async fn delete_channel(g: &Global, channel: &ChannelName) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    // The same edit the hub server makes for DELETE …/definition/channels/{ch}.
    svc.edit_definitions(
        &hub,
        EventType::DefinitionChange,
        &format!("delete_channel {channel}"),
        |doc| {
            doc.get_mut("channels")
                .and_then(serde_json::Value::as_object_mut)
                .and_then(|channels| channels.remove(channel.as_str()))
                .map(|_| ())
                .ok_or_else(|| {
                    sluice_service::ServiceError::not_found(format!(
                        "channel {channel} does not exist"
                    ))
                })
        },
    )
    .await?;
    say!("channel {channel} deleted from hub {hub}");
    Ok(Outcome::Ok)
}

async fn suspend_job(g: &Global, job: &sluice_model::JobName, suspend: bool) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    let jobs = std::slice::from_ref(job);
    if suspend {
        svc.suspend_jobs(&hub, jobs).await?;
        say!("job {job} suspended");
    } else {
        svc.unsuspend_jobs(&hub, jobs).await?;
        say!("job {job} resumed");
    }
    Ok(Outcome::Ok)
}

/// Cancels the job's active events. A job running in another process stops when that process
/// sees the cancel.
async fn cancel_job(g: &Global, job: &sluice_model::JobName) -> Result<Outcome> {
    let svc = service(g)?;
    let hub = hub(&svc, g).await?;
    let filter = EventFilter {
        hub: Some(hub.clone()),
        jobs: vec![job.clone()],
        states: vec![EventState::Active],
        ..Default::default()
    };
    let ids: Vec<sluice_model::EventId> = svc.events(&filter).await?.iter().map(|e| e.id).collect();
    if ids.is_empty() {
        return Err(anyhow::Error::new(sluice_service::ServiceError::invalid(
            format!("job {job} has no active event to cancel"),
        )));
    }
    svc.cancel_events(&hub, &ids).await?;
    let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
    if g.json {
        json(&serde_json::json!({ "job": job.as_str(), "canceled_ev_ids": names }))?;
    } else {
        say!("job {job}: cancelled {}", names.join(", "));
        note!(
            "a job running in another sluice process sees the cancel at its next heartbeat (every few seconds)"
        );
    }
    Ok(Outcome::Ok)
}
