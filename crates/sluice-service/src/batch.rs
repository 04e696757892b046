//! Batch operations: one refresh, compare, activation or deactivation per channel chosen by a
//! pattern (`sluice refresh --channels 'sales_*'`, `POST /api/latest/hubs/{hub}/batch/{verb}`).
//!
//! Every chosen channel gets its own event and job, exactly as the single-channel use case
//! makes them. All events are posted at once, as pending runs (the job waits `SUSPEND`, as
//! with HVR's `start_immediate: false`); the batch's runner then claims them, at most
//! `parallel` at a time, and claims the next as one ends. A channel that cannot be posted (its
//! job already runs, its definition does not resolve) is listed with its error and the others
//! go on; a pattern that matches no channel is invalid input and posts nothing.

use std::sync::Arc;

use sluice_connector::WriteStrategy;
use sluice_model::{AccessLevel, ChannelName, EventId, EventState, HubName, JobName, TableName};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::jobs::{Posted, Start, Submitted};
use crate::replication::ActivateCommand;
use crate::selection::ChannelSelection;
use crate::{
    CompareCommand, Granularity, HubService, ModeOverride, RefreshCommand, Result, ServiceError,
    ServiceErrorKind,
};

/// Jobs of one batch that run at once when the request does not say.
pub const DEFAULT_BATCH_PARALLEL: usize = 4;
/// The most jobs of one batch that may run at once.
pub const MAX_BATCH_PARALLEL: usize = 32;

/// What a batch does to each channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchVerb {
    /// A refresh per channel.
    Refresh,
    /// A compare per channel.
    Compare,
    /// An activation per channel.
    Activate,
    /// A deactivation per channel.
    Deactivate,
}

impl BatchVerb {
    /// Every verb.
    pub const ALL: [BatchVerb; 4] = [
        BatchVerb::Refresh,
        BatchVerb::Compare,
        BatchVerb::Activate,
        BatchVerb::Deactivate,
    ];

    /// The word, as in the route and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchVerb::Refresh => "refresh",
            BatchVerb::Compare => "compare",
            BatchVerb::Activate => "activate",
            BatchVerb::Deactivate => "deactivate",
        }
    }

    /// The access level on the hub that the single-channel operation asks, and so the batch.
    pub fn access_level(self) -> AccessLevel {
        match self {
            BatchVerb::Refresh => AccessLevel::ReadExecRefresh,
            BatchVerb::Compare => AccessLevel::ReadExec,
            BatchVerb::Activate | BatchVerb::Deactivate => AccessLevel::ReadWrite,
        }
    }
}

impl std::str::FromStr for BatchVerb {
    type Err = ServiceError;

    fn from_str(s: &str) -> Result<Self> {
        BatchVerb::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                ServiceError::invalid(format!(
                    "batch operation {s:?}: expected refresh, compare, activate or deactivate"
                ))
            })
    }
}

impl std::fmt::Display for BatchVerb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operation of a batch with its options (those of the single-channel operation that make
/// sense for many channels; source and target are each channel's own).
#[derive(Debug, Clone)]
pub enum BatchOperation {
    /// Refresh each channel.
    Refresh {
        /// Only these tables (each must be in every chosen channel); empty: all.
        tables: Vec<TableName>,
        /// Overrides of the tables' refresh modes.
        mode: ModeOverride,
        /// How the targets are replaced.
        strategy: Option<WriteStrategy>,
    },
    /// Compare each channel.
    Compare {
        /// Only these tables; empty: all.
        tables: Vec<TableName>,
        /// Bulk or row-wise.
        granularity: Granularity,
        /// Keys listed per kind of difference (row-wise).
        max_listed: usize,
    },
    /// Activate each channel.
    Activate {
        /// Load the targets from the snapshot capture starts at.
        refresh: bool,
    },
    /// Deactivate each channel.
    Deactivate,
}

impl BatchOperation {
    /// The verb.
    pub fn verb(&self) -> BatchVerb {
        match self {
            BatchOperation::Refresh { .. } => BatchVerb::Refresh,
            BatchOperation::Compare { .. } => BatchVerb::Compare,
            BatchOperation::Activate { .. } => BatchVerb::Activate,
            BatchOperation::Deactivate => BatchVerb::Deactivate,
        }
    }
}

/// A batch request.
#[derive(Debug, Clone)]
pub struct BatchCommand {
    /// The hub.
    pub hub: HubName,
    /// The channels: a name or a pattern (`sales_*`), see [`ChannelSelection`].
    pub channels: String,
    /// What is done to each.
    pub operation: BatchOperation,
    /// At most this many of the batch's jobs run at once; default
    /// [`DEFAULT_BATCH_PARALLEL`], at most [`MAX_BATCH_PARALLEL`].
    pub parallel: Option<usize>,
}

/// Why one channel of a batch was not posted.
#[derive(Debug, Clone)]
pub struct BatchFailure {
    /// The kind of error (`Conflict` when its job already runs).
    pub kind: ServiceErrorKind,
    /// The error, as the single-channel operation says it.
    pub message: String,
}

/// One channel of a batch.
#[derive(Debug, Clone)]
pub struct BatchEntry {
    /// The channel.
    pub channel: ChannelName,
    /// Its posted event and job, or why it was not posted.
    pub outcome: std::result::Result<Posted, BatchFailure>,
}

/// What a batch posted.
#[derive(Debug)]
pub struct BatchOutcome {
    /// The verb.
    pub verb: BatchVerb,
    /// At most this many of its jobs run at once.
    pub parallel: usize,
    /// Per chosen channel, in the order of the hub's channels.
    pub entries: Vec<BatchEntry>,
    /// Ends when every posted job of the batch has ended (dropping it leaves the batch running).
    pub finished: JoinHandle<()>,
}

impl BatchOutcome {
    /// The posted events.
    pub fn events(&self) -> Vec<EventId> {
        self.entries
            .iter()
            .filter_map(|e| e.outcome.as_ref().ok().map(|p| p.event))
            .collect()
    }
}

/// The parallelism a request asks, checked.
fn parallel_of(parallel: Option<usize>) -> Result<usize> {
    match parallel {
        None => Ok(DEFAULT_BATCH_PARALLEL),
        Some(n) if (1..=MAX_BATCH_PARALLEL).contains(&n) => Ok(n),
        Some(n) => Err(ServiceError::invalid(format!(
            "parallel {n}: expected 1 to {MAX_BATCH_PARALLEL} jobs at once"
        ))),
    }
}

impl HubService {
    /// Runs one operation per channel matching the pattern: posts every channel's event at
    /// once (pending), then runs their jobs, at most `parallel` at a time, in the background.
    /// Invalid input (a bad pattern, one matching no channel, a bad `parallel`) posts nothing;
    /// a channel that cannot be posted is listed with its error. The caller checks access on the
    /// hub: [`BatchVerb::access_level`].
    pub async fn batch(&self, cmd: BatchCommand) -> Result<BatchOutcome> {
        let parallel = parallel_of(cmd.parallel)?;
        let selection = ChannelSelection::parse(&cmd.channels)?;
        let hub = self.resolve_hub(Some(&cmd.hub)).await?;
        if cmd.operation.verb() != BatchVerb::Deactivate {
            // No job starts on a frozen hub: refuse before posting anything.
            self.ensure_live(&hub).await?;
        }
        let names: Vec<ChannelName> = self
            .channels(&hub)
            .await?
            .into_iter()
            .map(|c| c.name)
            .collect();
        let chosen = selection.choose(&names)?;
        let mut entries = Vec::with_capacity(chosen.len());
        for channel in chosen {
            let outcome = match self.post_batch_run(&hub, &channel, &cmd.operation).await {
                Ok(posted) => Ok(posted),
                Err(e) => Err(BatchFailure {
                    kind: e.kind(),
                    message: crate::jobs::chain(&e),
                }),
            };
            entries.push(BatchEntry { channel, outcome });
        }
        tracing::info!(
            hub = %hub,
            verb = %cmd.operation.verb(),
            pattern = %selection.as_str(),
            channel_count = entries.len(),
            parallel,
            "batch posted"
        );
        let finished = self.run_batch(&hub, &cmd.operation, &entries, parallel);
        Ok(BatchOutcome {
            verb: cmd.operation.verb(),
            parallel,
            entries,
            finished,
        })
    }

    /// Posts one channel's event, pending.
    async fn post_batch_run(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        op: &BatchOperation,
    ) -> Result<Posted> {
        Ok(match batch_submission(hub, channel, op) {
            Submission::Refresh(cmd) => self.submit_refresh(cmd, Start::Pending).await?.posted(),
            Submission::Compare(cmd) => self.submit_compare(cmd, Start::Pending).await?.posted(),
            Submission::Activate(cmd) => self.submit_activate(cmd, Start::Pending).await?.0,
            Submission::Deactivate => {
                self.submit_deactivate(hub, channel, Start::Pending)
                    .await?
                    .0
            }
        })
    }

    /// Claims the posted runs, at most `parallel` at a time, each as its slot frees.
    fn run_batch(
        &self,
        hub: &HubName,
        op: &BatchOperation,
        entries: &[BatchEntry],
        parallel: usize,
    ) -> JoinHandle<()> {
        let slots = Arc::new(Semaphore::new(parallel));
        let mut runners = tokio::task::JoinSet::new();
        for entry in entries {
            let Ok(posted) = &entry.outcome else {
                continue;
            };
            let (service, slots, hub) = (self.clone(), slots.clone(), hub.clone());
            let (channel, op, posted) = (entry.channel.clone(), op.clone(), posted.clone());
            runners.spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                service.run_batch_job(&hub, &channel, &op, &posted).await;
            });
        }
        tokio::spawn(async move {
            while let Some(joined) = runners.join_next().await {
                if let Err(error) = joined {
                    tracing::error!(error = %error, "a batch runner task failed");
                }
            }
        })
    }

    /// Runs one posted run of a batch to its end. When it cannot start (the channel changed
    /// meanwhile, the hub was frozen) its pending event ends `FAILED` with the reason; when the
    /// job was taken by another start or the event cancelled, that other run stands.
    async fn run_batch_job(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        op: &BatchOperation,
        posted: &Posted,
    ) {
        let started = match batch_submission(hub, channel, op) {
            Submission::Refresh(cmd) => self
                .submit_refresh(cmd, Start::Claim)
                .await
                .map(|submitted| Some(tokio::spawn(run_to_end(submitted)))),
            Submission::Compare(cmd) => self
                .submit_compare(cmd, Start::Claim)
                .await
                .map(|submitted| Some(tokio::spawn(run_to_end(submitted)))),
            Submission::Activate(cmd) => self
                .submit_activate(cmd, Start::Claim)
                .await
                .map(|(_, task)| task),
            Submission::Deactivate => self
                .submit_deactivate(hub, channel, Start::Claim)
                .await
                .map(|(_, task)| task),
        };
        match started {
            Ok(Some(task)) => {
                if let Err(error) = task.await {
                    tracing::error!(job = %posted.job, error = %error, "a batch job's task failed");
                }
            }
            Ok(None) => {}
            Err(error) if error.kind() == ServiceErrorKind::Conflict => {
                tracing::info!(job = %posted.job, event = %posted.event, error = %error, "a batch job was not started: another run holds it");
            }
            Err(error) => {
                self.fail_pending(hub, &posted.job, posted.event, &error)
                    .await
            }
        }
    }

    /// Ends a pending event that could not start as `FAILED`, with the reason in its response and
    /// log.
    async fn fail_pending(
        &self,
        hub: &HubName,
        job: &JobName,
        event: EventId,
        error: &ServiceError,
    ) {
        let response = crate::jobs::chain(error);
        tracing::warn!(job = %job, event = %event, error = %response, "a batch job could not start");
        let line = format!("failed before it started: {response}");
        if let Err(e) = self.job_store().append_log(event, &[line]).await {
            tracing::warn!(event = %event, error = %e, "could not log to the event");
        }
        if let Err(e) = self
            .job_store()
            .finish_job(hub, job, event, EventState::Failed, &response)
            .await
        {
            tracing::error!(job = %job, error = %e, "could not end the event");
        }
    }
}

/// The single-channel command of one channel of a batch.
enum Submission {
    Refresh(RefreshCommand),
    Compare(CompareCommand),
    Activate(ActivateCommand),
    Deactivate,
}

fn batch_submission(hub: &HubName, channel: &ChannelName, op: &BatchOperation) -> Submission {
    match op {
        BatchOperation::Refresh {
            tables,
            mode,
            strategy,
        } => Submission::Refresh(RefreshCommand {
            hub: hub.clone(),
            channel: channel.clone(),
            source: None,
            target: None,
            tables: tables.clone(),
            strategy: *strategy,
            batch_rows: None,
            count_first: false,
            mode: mode.clone(),
            parallel: None,
            slicing: Default::default(),
        }),
        BatchOperation::Compare {
            tables,
            granularity,
            max_listed,
        } => Submission::Compare(CompareCommand {
            hub: hub.clone(),
            channel: channel.clone(),
            source: None,
            target: None,
            tables: tables.clone(),
            granularity: *granularity,
            max_listed: *max_listed,
            pushdown: true,
            slicing: Default::default(),
            online: None,
        }),
        BatchOperation::Activate { refresh } => Submission::Activate(ActivateCommand {
            hub: hub.clone(),
            channel: channel.clone(),
            refresh: *refresh,
            refresh_events: Vec::new(),
            start: true,
        }),
        BatchOperation::Deactivate => Submission::Deactivate,
    }
}

/// Waits for a claimed refresh or compare to end, draining its progress.
async fn run_to_end<R>(submitted: Submitted<R>) {
    if let Submitted::Running(mut running) = submitted {
        let drain = async { while running.progress.recv().await.is_some() {} };
        let (_, result) = tokio::join!(drain, running.done);
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(job = %running.job, error = %e, "batch job ended with an error")
            }
            Err(e) => tracing::error!(job = %running.job, error = %e, "batch job task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_is_bounded() {
        assert_eq!(parallel_of(None).unwrap(), DEFAULT_BATCH_PARALLEL);
        assert_eq!(parallel_of(Some(1)).unwrap(), 1);
        assert_eq!(parallel_of(Some(32)).unwrap(), 32);
        assert!(parallel_of(Some(0)).is_err());
        assert!(parallel_of(Some(33)).is_err());
    }

    #[test]
    fn verbs_parse_and_ask_the_single_operation_access() {
        for verb in BatchVerb::ALL {
            assert_eq!(verb.as_str().parse::<BatchVerb>().unwrap(), verb);
        }
        assert!("drop".parse::<BatchVerb>().is_err());
        assert_eq!(
            BatchVerb::Refresh.access_level(),
            AccessLevel::ReadExecRefresh
        );
        assert_eq!(BatchVerb::Compare.access_level(), AccessLevel::ReadExec);
        assert_eq!(BatchVerb::Activate.access_level(), AccessLevel::ReadWrite);
        assert_eq!(BatchVerb::Deactivate.access_level(), AccessLevel::ReadWrite);
    }
}
