//! The options the commands share: the global ones, those of the commands that run locally and
//! on a hub server alike, and the outcome a command ends with.

use std::path::PathBuf;

use clap::Args;
use sluice_connector::WriteStrategy;
use sluice_model::{
    ChannelName, ColumnName, EventState, EventType, HubName, LocationName, TableName,
};

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Directory of the hub repository (hub.db).
    #[arg(long, global = true, env = "SLUICE_HOME", default_value = ".sluice")]
    pub home: PathBuf,
    /// The hub to work on; needed only when the repository (or hub server) holds several.
    #[arg(long, global = true, env = "SLUICE_HUB_NAME")]
    pub hub_name: Option<HubName>,
    /// Work on the hub server at this URL (e.g. http://127.0.0.1:4341) instead of the local
    /// repository; log in first with `sluice login --hub URL`.
    #[arg(long, global = true, env = "SLUICE_HUB", value_name = "URL")]
    pub hub: Option<String>,
    /// Print data as JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Why the command stopped, mapped to an exit code.
#[derive(Debug)]
pub enum Outcome {
    /// Success.
    Ok,
    /// A compare found differences.
    Different,
}

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
    /// Compare an activated channel while it replicates (row-wise): rows found different are
    /// read again after replication caught up, and only rows that stay different are reported;
    /// rows still changing are reported as in flight.
    #[arg(long)]
    pub online: bool,
    /// Print every statement that would run, per table, and run none.
    #[arg(long)]
    pub dry_run: bool,
    /// With --hub: wait for the compare to end, showing each table's progress (without --hub a
    /// compare always runs to its end).
    #[arg(long)]
    pub wait: bool,
}

/// Options of `sluice activate`.
#[derive(Args, Debug)]
pub struct ActivateArgs {
    /// The channel.
    pub channel: ChannelName,
    /// Load the targets from the snapshot capture starts at (nothing missed or applied twice
    /// while the source keeps taking writes); without it the targets are taken to be in sync.
    #[arg(long)]
    pub refresh: bool,
    /// Leave the capture and integrate jobs suspended (start them with `sluice job resume`).
    #[arg(long)]
    pub no_start: bool,
    /// With --hub: wait for the activation to end (without --hub it always runs to its end).
    #[arg(long)]
    pub wait: bool,
    /// Without --hub: after the activation, replicate in this process until Ctrl-C (as a hub
    /// server does: every activated channel of the repository).
    #[arg(long, conflicts_with = "no_start")]
    pub follow: bool,
}

/// Options of `sluice deactivate`.
#[derive(Args, Debug)]
pub struct DeactivateArgs {
    /// The channel.
    pub channel: ChannelName,
    /// With --hub: wait for the deactivation to end (without --hub it always runs to its end).
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

/// The name this machine's user works under: `$SLUICE_USER`, else `$USER`, else `local`.
pub fn user() -> String {
    std::env::var("SLUICE_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "local".into())
}
