//! The options the commands share: the global ones, those of the commands that run locally and
//! on a hub server alike, and the outcome a command ends with.

use std::path::PathBuf;

use clap::Args;
use sluice_connector::WriteStrategy;
use sluice_model::{
    ChannelName, ColumnName, EventState, EventType, HubName, LocationName, TableName,
};
use sluice_service::{BatchVerb, ServiceError};

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
    /// The channel (or --channels).
    #[arg(required_unless_present = "channels")]
    pub channel: Option<ChannelName>,
    /// Refresh every channel matching this pattern (`'sales_*'`, `?`, `[…]`), one event and job
    /// each, from each channel's own source to its own target.
    #[arg(long, value_name = "GLOB", conflicts_with_all = [
        "channel", "source", "target", "batch_rows", "incremental_column", "date_buffer_days",
        "no_deletes", "only_deletes", "parallel", "dry_run",
    ])]
    pub channels: Option<String>,
    /// With --channels: at most N of the channels' jobs run at once (default 4).
    #[arg(long, value_name = "N", requires = "channels", value_parser = clap::value_parser!(u16).range(1..=32))]
    pub channel_parallel: Option<u16>,
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
    /// Tables refreshed at the same time (into SQLite one at a time: one writer per file).
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
    /// The channel (or --channels).
    #[arg(required_unless_present = "channels")]
    pub channel: Option<ChannelName>,
    /// Compare every channel matching this pattern (`'sales_*'`), one event and job each.
    #[arg(long, value_name = "GLOB", conflicts_with_all = ["channel", "source", "target", "online", "dry_run"])]
    pub channels: Option<String>,
    /// With --channels: at most N of the channels' jobs run at once (default 4).
    #[arg(long, visible_alias = "parallel", value_name = "N", requires = "channels", value_parser = clap::value_parser!(u16).range(1..=32))]
    pub channel_parallel: Option<u16>,
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
    /// Read every row instead of first narrowing the compare with checksums computed in the
    /// databases over key ranges (the default where both locations can).
    #[arg(long)]
    pub no_pushdown: bool,
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
    /// The channel (or --channels).
    #[arg(required_unless_present = "channels")]
    pub channel: Option<ChannelName>,
    /// Activate every channel matching this pattern (`'sales_*'`), one event and job each.
    #[arg(long, value_name = "GLOB", conflicts_with_all = ["channel", "no_start", "follow"])]
    pub channels: Option<String>,
    /// With --channels: at most N of the channels' jobs run at once (default 4).
    #[arg(long, visible_alias = "parallel", value_name = "N", requires = "channels", value_parser = clap::value_parser!(u16).range(1..=32))]
    pub channel_parallel: Option<u16>,
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
    /// The channel (or --channels).
    #[arg(required_unless_present = "channels")]
    pub channel: Option<ChannelName>,
    /// Deactivate every channel matching this pattern (`'sales_*'`), one event and job each.
    #[arg(long, value_name = "GLOB", conflicts_with = "channel")]
    pub channels: Option<String>,
    /// With --channels: at most N of the channels' jobs run at once (default 4).
    #[arg(long, visible_alias = "parallel", value_name = "N", requires = "channels", value_parser = clap::value_parser!(u16).range(1..=32))]
    pub channel_parallel: Option<u16>,
    /// With --hub: wait for the deactivation to end (without --hub it always runs to its end).
    #[arg(long)]
    pub wait: bool,
}

/// A batch: `--channels GLOB` on refresh, compare, activate or deactivate, with the options of
/// the single operation that apply to many channels.
#[derive(Debug, Clone)]
pub struct BatchArgs {
    /// What is done to each channel.
    pub verb: BatchVerb,
    /// The pattern.
    pub channels: String,
    /// Jobs run at once.
    pub parallel: Option<usize>,
    /// refresh, compare: only these tables.
    pub tables: Vec<TableName>,
    /// refresh: the refresh mode.
    pub mode: Option<String>,
    /// refresh: how the targets are replaced.
    pub strategy: Option<WriteStrategy>,
    /// compare: row by row.
    pub rowwise: bool,
    /// compare: keys listed per kind of difference.
    pub max_listed: Option<usize>,
    /// activate: load the targets first.
    pub refresh: bool,
    /// With --hub: wait for every channel's job to end.
    pub wait: bool,
}

impl BatchArgs {
    fn new(verb: BatchVerb, channels: &str, parallel: Option<u16>, wait: bool) -> BatchArgs {
        BatchArgs {
            verb,
            channels: channels.to_owned(),
            parallel: parallel.map(usize::from),
            tables: Vec::new(),
            mode: None,
            strategy: None,
            rowwise: false,
            max_listed: None,
            refresh: false,
            wait,
        }
    }
}

impl BatchArgs {
    /// The request, as the service and the hub server take it: each option only for the verb it
    /// applies to.
    pub fn request(&self, hub: &str) -> sluice_service::BatchRequest {
        let (refresh, compare, activate) = (
            self.verb == BatchVerb::Refresh,
            self.verb == BatchVerb::Compare,
            self.verb == BatchVerb::Activate,
        );
        sluice_service::BatchRequest {
            hub: hub.to_owned(),
            verb: self.verb.as_str().to_owned(),
            channels: self.channels.clone(),
            parallel: self.parallel,
            tables: self.tables.iter().map(ToString::to_string).collect(),
            mode: self.mode.clone().filter(|_| refresh),
            strategy: self
                .strategy
                .filter(|_| refresh)
                .map(|s| s.as_str().to_owned()),
            granularity: compare.then(|| if self.rowwise { "rowwise" } else { "bulk" }.to_owned()),
            max_listed: self.max_listed.filter(|_| compare),
            refresh: activate.then_some(self.refresh),
        }
    }
}

/// The pattern of `--channels`; `--channel-parallel` needs it.
fn batch_pattern(
    channels: Option<&str>,
    parallel: Option<u16>,
) -> Result<Option<&str>, ServiceError> {
    match (channels, parallel) {
        (None, Some(_)) => Err(ServiceError::invalid(
            "--channel-parallel applies to a batch: give --channels GLOB instead of CHANNEL",
        )),
        (pattern, _) => Ok(pattern),
    }
}

/// The one channel of a command that takes a CHANNEL or `--channels`; clap requires one of
/// them, so without `--channels` there is a channel.
fn single(channel: Option<&ChannelName>) -> &ChannelName {
    channel.expect("clap requires CHANNEL when --channels is absent")
}

impl RefreshArgs {
    /// The batch, with `--channels`; `--channel-parallel` without it is invalid.
    pub fn batch(&self) -> Result<Option<BatchArgs>, ServiceError> {
        let Some(pattern) = batch_pattern(self.channels.as_deref(), self.channel_parallel)? else {
            return Ok(None);
        };
        Ok(Some(BatchArgs {
            tables: self.tables.clone(),
            mode: self.mode.clone(),
            strategy: self.strategy,
            ..BatchArgs::new(
                BatchVerb::Refresh,
                pattern,
                self.channel_parallel,
                self.wait,
            )
        }))
    }

    /// The channel, without `--channels`.
    pub fn channel(&self) -> &ChannelName {
        single(self.channel.as_ref())
    }
}

impl CompareArgs {
    /// The batch, with `--channels`; `--channel-parallel` without it is invalid.
    pub fn batch(&self) -> Result<Option<BatchArgs>, ServiceError> {
        let Some(pattern) = batch_pattern(self.channels.as_deref(), self.channel_parallel)? else {
            return Ok(None);
        };
        Ok(Some(BatchArgs {
            tables: self.tables.clone(),
            rowwise: self.rowwise,
            max_listed: Some(self.max_listed),
            ..BatchArgs::new(
                BatchVerb::Compare,
                pattern,
                self.channel_parallel,
                self.wait,
            )
        }))
    }

    /// The channel, without `--channels`.
    pub fn channel(&self) -> &ChannelName {
        single(self.channel.as_ref())
    }
}

impl ActivateArgs {
    /// The batch, with `--channels`; `--channel-parallel` without it is invalid.
    pub fn batch(&self) -> Result<Option<BatchArgs>, ServiceError> {
        let Some(pattern) = batch_pattern(self.channels.as_deref(), self.channel_parallel)? else {
            return Ok(None);
        };
        Ok(Some(BatchArgs {
            refresh: self.refresh,
            ..BatchArgs::new(
                BatchVerb::Activate,
                pattern,
                self.channel_parallel,
                self.wait,
            )
        }))
    }

    /// The channel, without `--channels`.
    pub fn channel(&self) -> &ChannelName {
        single(self.channel.as_ref())
    }
}

impl DeactivateArgs {
    /// The batch, with `--channels`; `--channel-parallel` without it is invalid.
    pub fn batch(&self) -> Result<Option<BatchArgs>, ServiceError> {
        let Some(pattern) = batch_pattern(self.channels.as_deref(), self.channel_parallel)? else {
            return Ok(None);
        };
        Ok(Some(BatchArgs::new(
            BatchVerb::Deactivate,
            pattern,
            self.channel_parallel,
            self.wait,
        )))
    }

    /// The channel, without `--channels`.
    pub fn channel(&self) -> &ChannelName {
        single(self.channel.as_ref())
    }
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
