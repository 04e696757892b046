//! `sluice`: the command line of the sluice replication hub.
//!
//! With `--hub URL` (or `SLUICE_HUB`) the commands are requests to that hub server, with the
//! session `sluice login` stored. Without it they go to the hub server last logged in to, until
//! `sluice logout`, unless `--home` (or `SLUICE_HOME`) names a local repository; else they work on
//! the local repository (`./.sluice`).
//!
//! Exit codes: 0 success; 1 the work was attempted and failed (a database refused, a value did
//! not fit, the repository could not be used, the hub server could not be reached or refused the
//! session); 2 invalid input, found before any row moved (bad definitions, bad usage, a name that
//! does not exist: in the hub, or a database, table or column at a location); 3 a compare found
//! differences;
//! 4 the job is already running; 130 interrupted (Ctrl-C), with every table not yet committed left
//! as it was (with `--hub`: stopped waiting, the job goes on on the server).

/// Writes a line to stderr. A closed stderr (a reader that went away) never stops the work or
/// its bookkeeping, so write errors are ignored.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Writes a line to stdout, ignoring a closed pipe (`sluice event list | head -1`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod args;
mod backend;
mod backup;
mod commands;
mod credentials;
mod definitions;
mod local;
mod output;
mod progress;
mod quickstart;
mod remote;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::args::{
    ActivateArgs, CompareArgs, DeactivateArgs, EventListArgs, Global, Outcome, RefreshArgs,
};
use crate::backend::Backend;
use crate::local::Local;
use crate::remote::Remote;

/// jemalloc rather than glibc's allocator: a long-running hub server runs jobs on threads that come
/// and go, and glibc kept what each job had freed in per-thread arenas (the server's memory rose
/// 35–50 MB with each job and never came down). jemalloc hands it back to the system within
/// seconds, and the data path runs a little faster on it.
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// sluice: replicate tables between databases.
#[derive(Parser, Debug)]
#[command(name = "sluice", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build a sample shop database, replicate it into a warehouse, compare, change, repeat.
    Quickstart(quickstart::QuickstartArgs),
    /// Check a definitions file (YAML or JSON) and report every problem.
    Validate {
        /// The definitions file.
        file: PathBuf,
        /// The environment: its overlay `envs/NAME.yaml` (next to the file) is applied first.
        #[arg(long)]
        env: Option<String>,
    },
    /// Print a definitions file merged with an environment's overlay.
    Render(definitions::RenderArgs),
    /// Show what `apply` would change in the hub, object by object, and what changed outside the
    /// file since its last apply; exit 0 when nothing would change, 3 when changes are planned.
    Plan(definitions::PlanArgs),
    /// Show the plan of a definitions file and apply it in one transaction (all or nothing);
    /// refused when the hub changed since the plan was made.
    Apply(definitions::ApplyArgs),
    /// Print the hub's definitions in the definitions file schema (secrets only as ${VAR}).
    Export(definitions::ExportArgs),
    /// Log in to a hub server and remember the session (for `--hub`).
    Login(remote::LoginArgs),
    /// Log out of a hub server and forget the session.
    Logout,
    /// The hub: state, freeze, unfreeze.
    #[command(subcommand)]
    Hub(HubCommand),
    /// Locations: database connections.
    #[command(subcommand)]
    Location(LocationCommand),
    /// Channels: tables replicated between location groups.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Copy a channel's tables from its source to its target.
    Refresh(RefreshArgs),
    /// Compare a channel's tables at its source and target.
    Compare(CompareArgs),
    /// Start change capture: capture at the channel's source, integrate into its targets.
    Activate(ActivateArgs),
    /// Stop change capture and remove what activation made at the source and targets.
    Deactivate(DeactivateArgs),
    /// Per table: rows at source and target, last refresh and compare; per activated channel:
    /// capture and integrate jobs, rows, latency and lag.
    Status {
        /// Only this channel.
        channel: Option<sluice_model::ChannelName>,
    },
    /// Which table flows from which database to which, through which channel of which hub,
    /// with the last refresh, compare or replication state: every hub you may read.
    Lineage {
        /// Print Graphviz DOT (`sluice lineage --dot | dot -Tsvg > lineage.svg`).
        #[arg(long, conflicts_with = "json")]
        dot: bool,
    },
    /// Events: what every operation did.
    #[command(subcommand)]
    Event(EventCommand),
    /// Jobs and their states.
    #[command(subcommand)]
    Job(JobCommand),
    /// Run the hub server: the REST API, the scheduler and the job runners.
    Serve(server::ServeArgs),
    /// Write a checksummed archive of the hubs' definitions and settings.
    Backup(backup::BackupArgs),
    /// Restore a backup archive: verify it, show the plan, confirm, restore.
    Restore(backup::RestoreArgs),
    /// Users of the hub server.
    #[command(subcommand)]
    User(server::UserCommand),
    /// API keys of the Fivetran-compatible `/v1` API (HTTP Basic KEY:SECRET).
    #[command(subcommand)]
    Apikey(server::ApikeyCommand),
    /// Time the data path against the database's own copy, with peak memory.
    Bench(sluice_bench::BenchArgs),
    /// The benchmark's reference copy (run by `sluice bench`).
    #[command(hide = true)]
    BenchReference {
        /// Source database.
        source: PathBuf,
        /// Target database (replaced).
        target: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum HubCommand {
    /// The hub's state (LIVE or FROZEN) and license.
    Status,
    /// Freeze the hub: no job runs until it is unfrozen.
    Freeze,
    /// Unfreeze the hub: jobs run again.
    Unfreeze,
}

#[derive(Subcommand, Debug)]
enum LocationCommand {
    /// List locations.
    List,
    /// Test the connection to a location (changes nothing).
    Test {
        /// The location.
        location: sluice_model::LocationName,
    },
}

#[derive(Subcommand, Debug)]
enum ChannelCommand {
    /// List channels.
    List,
    /// Show a channel's groups, tables and actions.
    Show {
        /// The channel.
        channel: sluice_model::ChannelName,
    },
    /// Print the hub's definitions (locations, channels, actions) as JSON.
    Export,
    /// Delete a channel's definition (its tables' data stays where it is).
    Delete {
        /// The channel.
        channel: sluice_model::ChannelName,
    },
}

#[derive(Subcommand, Debug)]
enum EventCommand {
    /// List events, newest first.
    List(EventListArgs),
    /// Show one event with its results.
    Show {
        /// The event id (e.g. 2024-05-01T10:11:12.123456Z).
        event: sluice_model::EventId,
    },
    /// Print an event's log.
    Log {
        /// The event id.
        event: sluice_model::EventId,
    },
    /// Follow a topic of the event hub live (needs --hub): e.g. `sluice event tail sluice.job`.
    /// Resumes by itself after a dropped connection, with no gap and no duplicate.
    Tail {
        /// The topic (built in: sluice.job, sluice.event, sluice.definition).
        topic: String,
        /// Routing pattern: words separated by dots, `*` one word, `#` any words (default `#`).
        pattern: Option<String>,
        /// Start after this sequence number (default: only new events).
        #[arg(long)]
        after: Option<u64>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum JobCommand {
    /// List jobs.
    List,
    /// Suspend a job: it does not run until resumed.
    Suspend {
        /// The job (e.g. shop-refr-src-wh).
        job: sluice_model::JobName,
    },
    /// Resume a suspended job.
    Resume {
        /// The job.
        job: sluice_model::JobName,
    },
    /// Cancel the job's active events (a running refresh or compare stops).
    Cancel {
        /// The job.
        job: sluice_model::JobName,
    },
}

/// Whether the command has a remote variant (or a remote refusal); the others (validate,
/// quickstart, bench, the server's own commands) always work locally.
fn serves(command: &Command) -> bool {
    matches!(
        command,
        Command::Hub(_)
            | Command::Channel(_)
            | Command::Location(_)
            | Command::Refresh(_)
            | Command::Compare(_)
            | Command::Activate(_)
            | Command::Deactivate(_)
            | Command::Job(_)
            | Command::Event(_)
            | Command::Status { .. }
    )
}

/// Whether the command goes to the hub server logged in to when neither `--hub` nor `--home`
/// says where to work: the commands with a remote variant, and those that take `--hub` themselves.
/// `status` (no remote variant yet) stays local.
fn follows_login(command: &Command) -> bool {
    !matches!(command, Command::Status { .. })
        && (serves(command)
            || matches!(
                command,
                Command::Login(_)
                    | Command::Lineage { .. }
                    | Command::Plan(_)
                    | Command::Apply(_)
                    | Command::Export(_)
                    | Command::Backup(_)
                    | Command::Restore(_)
            ))
}

/// The hub server a command without `--hub` or `--home` works on: the one logged in to, if any.
/// A credentials file that cannot be read leaves the command local, with a warning.
fn logged_in_hub(g: &Global) -> Option<String> {
    // No place for credentials (no HOME): nobody logged in here.
    credentials::config_dir().ok()?;
    let url = match credentials::default_hub() {
        Ok(url) => url?,
        Err(e) => {
            note!("warning: working locally: {e:#}");
            return None;
        }
    };
    if g.home.join("hub.db").exists() {
        note!(
            "note: working on the hub server {url} (logged in); pass --home {} for the local \
             repository here, or run `sluice logout`",
            g.home.display()
        );
    }
    Some(url)
}

/// Runs the command: against the hub server with `--hub` (or the one logged in to), else on the
/// local repository.
async fn run(cli: Cli, home_given: bool) -> Result<Outcome> {
    let mut g = cli.global;
    if g.hub.is_none() && !home_given && follows_login(&cli.command) {
        g.hub = logged_in_hub(&g);
    }
    match cli.command {
        Command::Login(args) => remote::login(&g, args).await,
        Command::Lineage { dot } => commands::lineage(&g, dot).await,
        Command::Plan(args) => definitions::plan(&g, args).await,
        Command::Apply(args) => definitions::apply(&g, args).await,
        Command::Export(args) => definitions::export(&g, args).await,
        Command::Logout => remote::logout(&g).await,
        Command::Backup(args) => backup::backup(args, &g).await,
        Command::Restore(args) => backup::restore(args, &g).await,
        command if g.hub.is_some() && serves(&command) => {
            let url = g.hub.clone().unwrap_or_default();
            run_remote(&g, command)
                .await
                .map_err(|e| remote::login_hint(e, &url))
        }
        command => run_local(&g, command).await,
    }
}

async fn run_remote(g: &Global, command: Command) -> Result<Outcome> {
    // Refuse what has no remote variant before asking the server anything.
    match command {
        Command::Status { .. } => bail!(
            "`sluice status` has no --hub variant yet: use `sluice hub status` and \
             `sluice event list`, or run it on the hub's machine without --hub"
        ),
        Command::Event(EventCommand::Tail {
            topic,
            pattern,
            after,
            count,
        }) => {
            let (client, _) = Remote::session(g)?;
            remote::tail(&client, g, &topic, pattern.as_deref(), after, count).await
        }
        command => on_hub(&Remote::connect(g).await?, g, command).await,
    }
}

async fn run_local(g: &Global, command: Command) -> Result<Outcome> {
    match command {
        Command::Quickstart(args) => quickstart::run(args, g).await,
        Command::Validate { file, env } => commands::validate(g, &file, env.as_deref()).await,
        Command::Render(args) => definitions::render(g, args).await,
        Command::Status { channel } => commands::status(g, channel.as_ref()).await,
        Command::Event(EventCommand::Tail { .. }) => bail!(
            "`sluice event tail` follows the event hub of a running hub server: pass --hub URL (or set SLUICE_HUB) after `sluice login`"
        ),
        Command::Serve(args) => server::serve(args, g).await,
        Command::User(cmd) => server::user(cmd, g).await,
        Command::Apikey(cmd) => server::apikey(cmd, g).await,
        Command::Bench(args) => {
            sluice_bench::run(args, sluice_bench::Printing { json: g.json }).await?;
            Ok(Outcome::Ok)
        }
        Command::BenchReference { source, target } => {
            sluice_bench::reference_copy(&source, &target)?;
            Ok(Outcome::Ok)
        }
        command => on_hub(&Local::open(g).await?, g, command).await,
    }
}

/// The commands both sides serve.
async fn on_hub(b: &impl Backend, g: &Global, command: Command) -> Result<Outcome> {
    match command {
        Command::Hub(HubCommand::Status) => commands::hub_status(b, g).await,
        Command::Hub(HubCommand::Freeze) => commands::freeze(b, true).await,
        Command::Hub(HubCommand::Unfreeze) => commands::freeze(b, false).await,
        Command::Location(LocationCommand::List) => commands::locations(b, g).await,
        Command::Location(LocationCommand::Test { location }) => {
            commands::test_location(b, g, &location).await
        }
        Command::Channel(ChannelCommand::List) => commands::channels(b, g).await,
        Command::Channel(ChannelCommand::Show { channel }) => {
            commands::show_channel(b, g, &channel).await
        }
        Command::Channel(ChannelCommand::Export) => commands::export(b).await,
        Command::Channel(ChannelCommand::Delete { channel }) => {
            commands::delete_channel(b, &channel).await
        }
        Command::Refresh(args) => match args.batch()? {
            Some(batch) => commands::batch(b, g, batch).await,
            None => commands::refresh(b, g, args).await,
        },
        Command::Compare(args) => match args.batch()? {
            Some(batch) => commands::batch(b, g, batch).await,
            None => commands::compare(b, g, args).await,
        },
        Command::Activate(args) => match args.batch()? {
            Some(batch) => commands::batch(b, g, batch).await,
            None => b.activate(args, g).await,
        },
        Command::Deactivate(args) => match args.batch()? {
            Some(batch) => commands::batch(b, g, batch).await,
            None => b.deactivate(args, g).await,
        },
        Command::Job(JobCommand::List) => commands::jobs(b, g).await,
        Command::Job(JobCommand::Suspend { job }) => commands::suspend_job(b, &job, true).await,
        Command::Job(JobCommand::Resume { job }) => commands::suspend_job(b, &job, false).await,
        Command::Job(JobCommand::Cancel { job }) => commands::cancel_job(b, g, &job).await,
        Command::Event(EventCommand::List(args)) => commands::events(b, g, args).await,
        Command::Event(EventCommand::Show { event }) => commands::show_event(b, g, event).await,
        Command::Event(EventCommand::Log { event }) => commands::event_log(b, g, event).await,
        _ => unreachable!("`run_local` and `run_remote` handle the others"),
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("sluice={level},{level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let home_given = matches!(
        matches.value_source("home"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            note!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(run(cli, home_given)) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Different) => ExitCode::from(3),
        Err(error) => ExitCode::from(output::report_error(&error)),
    };
    sluice_bench::report_peak_rss();
    code
}
