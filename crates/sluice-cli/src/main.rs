//! `sluice`: the command line of the sluice replication hub.
//!
//! Without `--hub` the commands work on the local repository (`--home`); with `--hub URL` (or
//! `SLUICE_HUB`) they are requests to that hub server, with the session `sluice login` stored.
//!
//! Exit codes: 0 success; 1 the work failed (a database refused, a value did not fit, the
//! repository could not be used, the hub server could not be reached or refused the session);
//! 2 invalid input (bad definitions, unknown names, bad usage); 3 a compare found differences;
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

mod commands;
mod credentials;
mod output;
mod progress;
mod quickstart;
mod remote;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sluice_model::HubName;

/// sluice: replicate tables between databases.
#[derive(Parser, Debug)]
#[command(name = "sluice", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Directory of the hub repository (hub.db).
    #[arg(long, global = true, env = "SLUICE_HOME", default_value = ".sluice")]
    home: PathBuf,
    /// The hub to work on; needed only when the repository (or hub server) holds several.
    #[arg(long, global = true, env = "SLUICE_HUB_NAME")]
    hub_name: Option<HubName>,
    /// Work on the hub server at this URL (e.g. http://127.0.0.1:4341) instead of the local
    /// repository; log in first with `sluice login --hub URL`.
    #[arg(long, global = true, env = "SLUICE_HUB", value_name = "URL")]
    hub: Option<String>,
    /// Print data as JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build a sample shop database, replicate it into a warehouse, compare, change, repeat.
    Quickstart(quickstart::QuickstartArgs),
    /// Check a definitions file (YAML or JSON) and report every problem.
    Validate {
        /// The definitions file.
        file: PathBuf,
    },
    /// Store the hub, locations and channels of a definitions file in the repository.
    Apply {
        /// The definitions file.
        file: PathBuf,
    },
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
    Refresh(commands::RefreshArgs),
    /// Compare a channel's tables at its source and target.
    Compare(commands::CompareArgs),
    /// Per table: rows at source and target, last refresh and compare.
    Status {
        /// Only this channel.
        channel: Option<sluice_model::ChannelName>,
    },
    /// Events: what every operation did.
    #[command(subcommand)]
    Event(EventCommand),
    /// Jobs and their states.
    #[command(subcommand)]
    Job(JobCommand),
    /// Run the hub server: the REST API, the scheduler and the job runners.
    Serve(server::ServeArgs),
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
    List(commands::EventListArgs),
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

/// Why the command stopped, mapped to an exit code.
#[derive(Debug)]
pub enum Outcome {
    /// Success.
    Ok,
    /// A compare found differences.
    Different,
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
    let cli = Cli::parse();
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
    let code = match runtime.block_on(commands::run(cli)) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Different) => ExitCode::from(3),
        Err(error) => ExitCode::from(output::report_error(&error)),
    };
    sluice_bench::report_peak_rss();
    code
}
