//! The sync of a `/v1` connector whose channel is activated: instead of copying the tables, it
//! waits until replication has applied every change committed at the source before the sync
//! began ([`HubService::catch_up`]).
//!
//! It is a run of the connector's refresh job like a copying sync: it posts a `Refresh` event
//! (its body's `connector.change_capture` is `true`), claims the job, and ends the event `DONE`
//! once the channel caught up — so `succeeded_at`, `failed_at`, `sync_state` and the dashboard
//! follow it as they follow a copy. Nothing is copied: every table's `Source_Rows_Used` is `0`,
//! and the log names the source position the channel caught up with. A channel whose
//! replication is suspended or failed, or that does not catch up in time, ends the sync `FAILED`
//! with why.

use std::time::Instant;

use sluice_engine::RefreshState;
use sluice_model::event::table_state;
use sluice_model::{EventState, EventType, JobName, ResultName, TableName};
use sluice_repo::EventResult;

use crate::catch_up::CATCH_UP_TIMEOUT;
use crate::jobs::{
    JobRun, Posted, RefreshCommand, RefreshSummary, RefreshTableResult, Start, Submitted, chain,
};
use crate::{HubService, Result};

impl HubService {
    /// Posts and runs a sync of `cmd`'s channel by change capture (see the module); returns once
    /// its event is posted and claimed.
    pub(crate) async fn submit_change_sync(
        &self,
        cmd: RefreshCommand,
        connector: serde_json::Value,
    ) -> Result<Posted> {
        let r = self
            .resolve(
                &cmd.hub,
                &cmd.channel,
                cmd.source.as_ref(),
                cmd.target.as_ref(),
                &cmd.tables,
                false,
            )
            .await?;
        let job = JobName::refresh(&r.channel.name, &r.source.name, &r.target.name);
        let tables: Vec<TableName> = r.specs.iter().map(|s| s.name.clone()).collect();
        let body = serde_json::json!({
            "request": {
                "source_loc": r.source.name,
                "target_loc": r.target.name,
                "tables": tables.iter().map(TableName::as_str).collect::<Vec<_>>(),
                "change_capture": true,
            },
            "command": cmd,
            "connector": connector,
        });
        let claimed = match self
            .claim(&r, EventType::Refresh, &job, body, Start::Now)
            .await?
        {
            Ok(claimed) => claimed,
            Err(posted) => return Ok(posted),
        };
        let channel = r.channel.name.clone();
        let running = self.spawn(&r, job, claimed, move |service, run| async move {
            service.run_change_sync(run, channel, tables).await
        });
        let posted = Posted {
            event: running.event,
            job: running.job.clone(),
            canceled: running.canceled.clone(),
        };
        crate::admin::detach(Submitted::Running(running));
        Ok(posted)
    }

    async fn run_change_sync(
        &self,
        run: JobRun,
        channel: sluice_model::ChannelName,
        tables: Vec<TableName>,
    ) -> Result<RefreshSummary> {
        let JobRun {
            hub,
            job,
            event,
            cancel,
            ..
        } = run;
        let started = Instant::now();
        let repo = self.job_store();
        repo.append_log(
            event,
            &[format!(
                "channel {channel} is activated: this sync copies nothing and ends once replication has applied every change committed at the source before it began"
            )],
        )
        .await?;
        let outcome = tokio::select! {
            _ = cancel.cancelled() => None,
            r = self.catch_up(&hub, &channel, CATCH_UP_TIMEOUT) => Some(r),
        };
        let elapsed = started.elapsed().as_secs_f64();
        let (state, table_text, response) = match &outcome {
            None => (
                EventState::Canceled,
                table_state::CANCELED,
                format!("Sync canceled. (elapsed={elapsed:.2}s)"),
            ),
            Some(Ok(caught)) => (
                EventState::Done,
                table_state::DONE,
                format!(
                    "Sync completed by change capture: channel {channel} has applied every change up to source position {} (durable {}); no rows copied. (elapsed={elapsed:.2}s)",
                    caught.target, caught.durable
                ),
            ),
            Some(Err(e)) => (
                EventState::Failed,
                table_state::FAILED,
                format!("Sync failed: {}. (elapsed={elapsed:.2}s)", chain(e)),
            ),
        };
        let mut results = Vec::new();
        for table in &tables {
            let result = |name, value: &str| EventResult {
                table: Some(table.clone()),
                name,
                value: value.to_owned(),
            };
            results.push(result(ResultName::TableState, table_text));
            results.push(result(ResultName::SourceRowsUsed, "0"));
            results.push(result(ResultName::TableDuration, &format!("{elapsed:.3}")));
        }
        repo.put_results(event, &results).await?;
        repo.append_log(event, std::slice::from_ref(&response))
            .await?;
        repo.finish_job(&hub, &job, event, state, &response).await?;
        let refresh_state = match state {
            EventState::Done => RefreshState::Done,
            EventState::Canceled => RefreshState::Canceled,
            _ => RefreshState::Failed,
        };
        let error = match &outcome {
            Some(Err(e)) => Some(chain(e)),
            _ => None,
        };
        Ok(RefreshSummary {
            event,
            job,
            state,
            response,
            tables: tables
                .into_iter()
                .map(|table| RefreshTableResult {
                    table,
                    state: refresh_state,
                    rows: 0,
                    bytes: 0,
                    seconds: elapsed,
                    created: false,
                    changes: None,
                    error: error.clone(),
                })
                .collect(),
        })
    }

    /// Whether `channel` of `hub` is activated (its syncs apply captured changes).
    pub(crate) async fn is_activated(
        &self,
        hub: &sluice_model::HubName,
        channel: &sluice_model::ChannelName,
    ) -> Result<bool> {
        let bag = sluice_repo::PropBag::Activation(hub.clone(), channel.to_string());
        Ok(self.props_store().props(&bag).await?.is_some())
    }
}
