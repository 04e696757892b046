//! The local side: the commands work on the repository in `--home` through the service.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json as value};
use sluice_connector::Repeat;
use sluice_model::{ChannelName, EventId, EventState, EventType, HubName, JobName, LocationName};
use sluice_service::replication::ActivateCommand;
use sluice_service::{
    CompareCommand, CompareSummary, EventFilter, EventRecord, Granularity, HubService, JobPlan,
    ModeOverride, RefreshCommand, RefreshSummary, RowwiseApply, RunningJob, ServiceError,
    ServiceErrorKind,
};

use crate::args::{
    ActivateArgs, BatchArgs, CompareArgs, DeactivateArgs, EventListArgs, Global, Outcome,
    RefreshArgs, user,
};
use crate::backend::{
    ActionView, Backend, BatchRow, ChannelRow, ChannelView, EventRow, EventView, HubState, JobRow,
    LocationRow, Plan, PlannedTable, Shown, Side, TableView,
};
use crate::output::{Interrupted, JobFailed, changes, json, rate, table, thousands};
use crate::progress::{Display, follow};

/// Opens the local repository (creating it on first use).
pub fn service(global: &Global) -> Result<HubService> {
    HubService::open_local(&global.home, user())
        .with_context(|| format!("cannot open the repository in {}", global.home.display()))
}

/// Opens the local repository for a command that works on what it holds. Where there is none it
/// creates nothing: the error says where it looked and what to do.
pub fn existing_service(global: &Global) -> Result<HubService> {
    let db = global.home.join("hub.db");
    let exists = db
        .try_exists()
        .with_context(|| format!("cannot look for the repository {}", db.display()))?;
    if !exists {
        let db = std::path::absolute(&db).unwrap_or(db);
        return Err(ServiceError::not_found(format!(
            "no sluice repository here: {} does not exist. Run the command in the directory that \
             holds `.sluice`, pass --home DIR (or set SLUICE_HOME), define a hub with \
             `sluice apply FILE` (or try `sluice quickstart`), or work on a hub server: \
             `sluice login --hub URL` (the commands that follow go there until `sluice logout`)",
            db.display()
        ))
        .into());
    }
    service(global)
}

/// The local repository and the hub the commands work on.
pub struct Local {
    svc: HubService,
    hub: HubName,
    home: PathBuf,
}

impl Local {
    /// Opens the repository of `--home` and resolves the hub of `--hub-name`.
    pub async fn open(g: &Global) -> Result<Local> {
        let svc = existing_service(g)?;
        let hub = svc.resolve_hub(g.hub_name.as_ref()).await?;
        Ok(Local {
            svc,
            hub,
            home: g.home.clone(),
        })
    }

    fn refresh_command(&self, args: &RefreshArgs, g: &Global) -> Result<RefreshCommand> {
        Ok(RefreshCommand {
            slicing: Default::default(),
            hub: self.hub.clone(),
            channel: args.channel().clone(),
            source: args.source.clone(),
            target: args.target.clone(),
            tables: args.tables.clone(),
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
                incremental_column: args.incremental_column.clone(),
                date_buffer_days: args.date_buffer_days,
                apply: match (args.no_deletes, args.only_deletes) {
                    (true, _) => Some(RowwiseApply::NoDeletes),
                    (_, true) => Some(RowwiseApply::OnlyDeletes),
                    _ => None,
                },
            },
            parallel: Some(usize::from(args.parallel)),
        })
    }

    fn compare_command(&self, args: &CompareArgs) -> CompareCommand {
        CompareCommand {
            slicing: Default::default(),
            hub: self.hub.clone(),
            channel: args.channel().clone(),
            source: args.source.clone(),
            target: args.target.clone(),
            tables: args.tables.clone(),
            granularity: if args.rowwise || args.online {
                Granularity::Rowwise
            } else {
                Granularity::Bulk
            },
            max_listed: args.max_listed,
            pushdown: !args.no_pushdown,
            online: args.online.then(Default::default),
        }
    }

    async fn one_event(&self, event: EventId) -> Result<EventRecord> {
        let filter = EventFilter {
            hub: Some(self.hub.clone()),
            ids: vec![event],
            fetch_results: true,
            ..Default::default()
        };
        self.svc.events(&filter).await?.pop().ok_or_else(|| {
            ServiceError::new(
                ServiceErrorKind::NotFound,
                format!("event {event} does not exist"),
            )
            .into()
        })
    }
}

impl Local {
    /// Waits for a posted activation or deactivation to end in this process, showing its log
    /// lines; Ctrl-C cancels it. Prints its outcome and answers its event.
    async fn run_to_end(
        &self,
        posted: sluice_service::Posted,
        g: &Global,
        verb: &str,
    ) -> Result<EventRecord> {
        if !g.json {
            note!("{verb} started: event {}, job {}", posted.event, posted.job);
        }
        let mut shown = 0;
        let mut interrupted = false;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let event = loop {
            let event = self.one_event(posted.event).await?;
            if !g.json {
                let lines = self.svc.event_log(posted.event).await?;
                for (_, line) in lines.iter().skip(shown) {
                    note!("  {line}");
                }
                shown = shown.max(lines.len());
            }
            if event.state != EventState::Active {
                break event;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = &mut ctrl_c, if !interrupted => {
                    interrupted = true;
                    note!("\ninterrupted: cancelling the {verb}…");
                    self.svc.cancel_events(&self.hub, &[posted.event]).await?;
                }
            }
        };
        if g.json {
            json(&event)?;
        } else {
            say!(
                "{} (event {})",
                event
                    .response
                    .clone()
                    .unwrap_or_else(|| event.state.to_string()),
                event.id
            );
        }
        if interrupted {
            return Err(Interrupted.into());
        }
        Ok(event)
    }
}

/// Stops the replications this process runs (waiting a few seconds for them to store their
/// last figures and end their events).
async fn stop_here(svc: &HubService) {
    let stopped = tokio_util::sync::CancellationToken::new();
    stopped.cancel();
    svc.clone()
        .run_replication_supervisor(Duration::from_secs(1), stopped)
        .await;
}

/// `--follow`: replicates the activated channels of the repository in this process (the
/// supervisor a hub server runs) until Ctrl-C, printing each channel's figures now and then.
async fn replicate_here(svc: &HubService, g: &Global) -> Result<Outcome> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let supervisor = tokio::spawn(
        svc.clone()
            .run_replication_supervisor(Duration::from_secs(1), shutdown.clone()),
    );
    note!("replicating in this process; Ctrl-C stops (the channel stays activated)");
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                for ((hub, channel), s) in svc.replication_figures() {
                    if g.json {
                        let line = value!({ "hub": hub, "channel": channel, "figures": s });
                        say!("{line}");
                    } else {
                        say!("{}", figures_line(&channel, &s));
                    }
                }
            }
        }
    }
    note!("stopping: the replication stores its last checkpoint…");
    shutdown.cancel();
    supervisor
        .await
        .context("the replication supervisor failed")?;
    Ok(Outcome::Ok)
}

/// `orders: captured 1,200 (0.120 s); integrated wh 1,180 (0.480 s)`.
pub fn figures_line(
    channel: &ChannelName,
    s: &sluice_service::replication::ReplicationStats,
) -> String {
    let latency = |l: Option<f64>| l.map(|l| format!(" ({l:.3} s)")).unwrap_or_default();
    let integrated: Vec<String> = s
        .integrated
        .iter()
        .map(|(t, n)| {
            format!(
                "{t} {}{}",
                thousands(*n),
                latency(s.integrate_latency.get(t).copied())
            )
        })
        .collect();
    format!(
        "{channel}: captured {}{}; integrated {}",
        thousands(s.captured),
        latency(s.capture_latency),
        if integrated.is_empty() {
            "nothing yet".to_owned()
        } else {
            integrated.join(", ")
        }
    )
}

/// A plan as the commands print it.
fn plan_view(plan: &JobPlan) -> Result<Plan> {
    let statements = |list: &[sluice_connector::PlannedStatement]| {
        list.iter()
            .map(|s| (s.sql.clone(), s.repeat == Repeat::PerRow))
            .collect()
    };
    Ok(Plan {
        json: serde_json::to_value(plan)?,
        job: plan.job.to_string(),
        source: plan.source.to_string(),
        target: plan.target.to_string(),
        tables: plan
            .tables
            .iter()
            .map(|t| PlannedTable {
                table: t.table.to_string(),
                source_table: t.source_table.clone(),
                target_table: t.target_table.clone(),
                action: t.action.clone(),
                source_statements: statements(&t.source_statements),
                target_statements: statements(&t.target_statements),
            })
            .collect(),
    })
}

/// Each item as text.
fn texts(items: &[impl ToString]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

impl Backend for Local {
    fn side(&self) -> Side {
        Side::Local
    }

    fn hub(&self) -> &str {
        self.hub.as_str()
    }

    async fn hub_state(&self) -> Result<Shown<HubState>> {
        let record = self.svc.hub(&self.hub).await?;
        Ok(Shown {
            json: value!({
                "hub": self.hub,
                "hub_state": record.state,
                "freeze_time": record.freeze_time,
            }),
            view: HubState {
                place: format!("in {}", self.home.display()),
                state: record.state.to_string(),
                freeze_time: record.freeze_time,
                license: None,
                jobs_over_latency_sla: Vec::new(),
            },
        })
    }

    async fn freeze(&self, freeze: bool) -> Result<()> {
        match freeze {
            true => self.svc.freeze_hub(&self.hub).await?,
            false => self.svc.unfreeze_hub(&self.hub).await?,
        };
        Ok(())
    }

    async fn locations(&self) -> Result<Shown<Vec<LocationRow>>> {
        let locations = self.svc.locations(&self.hub).await?;
        let view = locations
            .iter()
            .map(|l| LocationRow {
                name: l.name.to_string(),
                class: l.class.to_string(),
                description: l.description.clone(),
                // Secrets are references; showing them names the variable, never a value.
                props: l
                    .props
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_text()))
                    .collect(),
            })
            .collect();
        Ok(Shown {
            json: serde_json::to_value(&locations)?,
            view,
        })
    }

    async fn test_location(&self, location: &LocationName) -> Result<Shown<Vec<(String, String)>>> {
        let report = self.svc.test_location(&self.hub, location).await?;
        let view = report
            .discovered_props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Shown {
            json: serde_json::to_value(&report)?,
            view,
        })
    }

    async fn channels(&self) -> Result<Shown<Vec<ChannelRow>>> {
        let channels = self.svc.channels(&self.hub).await?;
        let json: Vec<_> = channels
            .iter()
            .map(|c| {
                value!({
                    "channel": c.name,
                    "description": c.description,
                    "loc_groups": c.loc_groups,
                    "tables": c.tables.keys().collect::<Vec<_>>(),
                })
            })
            .collect();
        let view = channels
            .iter()
            .map(|c| ChannelRow {
                name: c.name.to_string(),
                tables: c.tables.len(),
                groups: c
                    .loc_groups
                    .iter()
                    .map(|(g, m)| (g.to_string(), texts(m)))
                    .collect(),
                description: c.description.clone(),
            })
            .collect();
        Ok(Shown {
            json: Value::Array(json),
            view,
        })
    }

    async fn channel(&self, channel: &ChannelName) -> Result<Shown<ChannelView>> {
        let c = self.svc.channel(&self.hub, channel).await?;
        let actions: Vec<_> = c
            .actions
            .iter()
            .map(|a| {
                value!({
                    "type": a.action_type().as_str(),
                    "loc_scope": a.loc_scope.to_string(),
                    "table_scope": a.table_scope.to_string(),
                    "params": a.params(),
                })
            })
            .collect();
        let json = value!({
            "channel": c.name,
            "description": c.description,
            "loc_groups": c.loc_groups,
            "tables": c.tables,
            "actions": actions,
        });
        let view = ChannelView {
            name: c.name.to_string(),
            description: c.description.clone(),
            groups: c
                .loc_groups
                .iter()
                .map(|(g, m)| (g.to_string(), texts(m)))
                .collect(),
            tables: c
                .tables
                .values()
                .map(|t| TableView {
                    name: t.name.to_string(),
                    base_name: t
                        .base_name
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    columns: t.columns.as_ref().map(|cols| {
                        cols.iter()
                            .map(|col| {
                                (col.name.to_string(), col.data_type.to_string(), col.key > 0)
                            })
                            .collect()
                    }),
                })
                .collect(),
            actions: c
                .actions
                .iter()
                .map(|a| ActionView {
                    action_type: a.action_type().as_str().to_owned(),
                    loc_scope: a.loc_scope.to_string(),
                    table_scope: a.table_scope.to_string(),
                    params: a
                        .params()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_text()))
                        .collect(),
                })
                .collect(),
        };
        Ok(Shown { json, view })
    }

    async fn export(&self) -> Result<Value> {
        Ok(serde_json::to_value(
            self.svc.export_document(&self.hub).await?.as_ref(),
        )?)
    }

    async fn delete_channel(&self, channel: &ChannelName) -> Result<()> {
        // The same edit the hub server makes for DELETE …/definition/channels/{ch}.
        self.svc
            .edit_definitions(
                &self.hub,
                EventType::DefinitionChange,
                &format!("delete_channel {channel}"),
                |doc| {
                    doc.get_mut("channels")
                        .and_then(serde_json::Value::as_object_mut)
                        .and_then(|channels| channels.remove(channel.as_str()))
                        .map(|_| ())
                        .ok_or_else(|| {
                            ServiceError::not_found(format!("channel {channel} does not exist"))
                        })
                },
            )
            .await?;
        Ok(())
    }

    async fn plan_refresh(&self, args: &RefreshArgs, g: &Global) -> Result<Plan> {
        plan_view(
            &self
                .svc
                .plan_refresh(&self.refresh_command(args, g)?)
                .await?,
        )
    }

    async fn refresh(&self, args: RefreshArgs, g: &Global) -> Result<Outcome> {
        let summary = run_refresh(&self.svc, self.refresh_command(&args, g)?, g).await?;
        print_refresh(&summary, g)?;
        match summary.state {
            EventState::Done => Ok(Outcome::Ok),
            _ => Err(JobFailed(summary.response).into()),
        }
    }

    async fn plan_compare(&self, args: &CompareArgs) -> Result<Plan> {
        plan_view(&self.svc.plan_compare(&self.compare_command(args)).await?)
    }

    async fn compare(&self, args: CompareArgs, g: &Global) -> Result<Outcome> {
        let summary = run_compare(&self.svc, self.compare_command(&args), g).await?;
        print_compare(&summary, g)?;
        match summary.state {
            EventState::Done if summary.identical => Ok(Outcome::Ok),
            EventState::Done => Ok(Outcome::Different),
            _ => Err(JobFailed(summary.response).into()),
        }
    }

    async fn activate(&self, args: ActivateArgs, g: &Global) -> Result<Outcome> {
        let posted = self
            .svc
            .activate(ActivateCommand {
                hub: self.hub.clone(),
                channel: args.channel().clone(),
                refresh: args.refresh,
                refresh_events: Vec::new(),
                start: !args.no_start,
            })
            .await?;
        let event = self.run_to_end(posted, g, "activation").await?;
        if event.state != EventState::Done {
            return Err(JobFailed(event.response.unwrap_or_default()).into());
        }
        if args.follow {
            return replicate_here(&self.svc, g).await;
        }
        // The activation started the replication in this process, which is about to end: stop
        // it now, so its jobs end cleanly and a hub server takes them over at once.
        stop_here(&self.svc).await;
        if !g.json {
            let jobs = match self
                .svc
                .replication_status(&self.hub, args.channel())
                .await?
            {
                Some(status) => texts(&status.jobs.iter().map(|(j, _)| j).collect::<Vec<_>>()),
                None => Vec::new(),
            };
            say!(
                "jobs {} {} while a hub server runs on this repository (`sluice serve --home {}`); \
                 this command does not replicate by itself (`sluice activate --follow` replicates \
                 in the foreground until Ctrl-C)",
                jobs.join(", "),
                if args.no_start {
                    "stay suspended until `sluice job resume`, then run"
                } else {
                    "run"
                },
                self.home.display()
            );
        }
        Ok(Outcome::Ok)
    }

    async fn deactivate(&self, args: DeactivateArgs, g: &Global) -> Result<Outcome> {
        let posted = self.svc.deactivate(&self.hub, args.channel()).await?;
        let event = self.run_to_end(posted, g, "deactivation").await?;
        match event.state {
            EventState::Done => Ok(Outcome::Ok),
            _ => Err(JobFailed(event.response.unwrap_or_default()).into()),
        }
    }

    async fn batch(&self, args: &BatchArgs) -> Result<Vec<BatchRow>> {
        let request = args.request(self.hub.as_str());
        let outcome = self.svc.batch((&request).try_into()?).await?;
        let ids = outcome.events();
        if !ids.is_empty() {
            note!(
                "{} posted for {} channel(s), at most {} running at once",
                outcome.verb,
                ids.len(),
                outcome.parallel
            );
        }
        // Every job runs in this process: wait for the batch to end (Ctrl-C cancels the rest).
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut finished = outcome.finished;
        tokio::select! {
            joined = &mut finished => joined.context("the batch's runner failed")?,
            _ = &mut ctrl_c => {
                note!("\ninterrupted: cancelling the batch's events…");
                self.svc.cancel_events(&self.hub, &ids).await?;
                let _ = finished.await;
                return Err(Interrupted.into());
            }
        }
        let events: std::collections::HashMap<EventId, EventRecord> = self
            .svc
            .events(&EventFilter {
                hub: Some(self.hub.clone()),
                ids: ids.clone(),
                ..Default::default()
            })
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        Ok(outcome
            .entries
            .into_iter()
            .map(|entry| match entry.outcome {
                Ok(posted) => {
                    let event = events.get(&posted.event);
                    BatchRow {
                        channel: entry.channel.to_string(),
                        ev_id: Some(posted.event.to_string()),
                        job: Some(posted.job.to_string()),
                        state: event.map_or_else(|| "ACTIVE".to_owned(), |e| e.state.to_string()),
                        response: event.and_then(|e| e.response.clone()),
                    }
                }
                Err(failure) => BatchRow {
                    channel: entry.channel.to_string(),
                    ev_id: None,
                    job: None,
                    state: "ERROR".to_owned(),
                    response: Some(failure.message),
                },
            })
            .collect())
    }

    async fn jobs(&self) -> Result<Shown<Vec<JobRow>>> {
        let jobs = self.svc.jobs(&self.hub).await?;
        let view = jobs
            .iter()
            .map(|j| JobRow {
                name: j.name.to_string(),
                state: j.state.to_string(),
                last_event: j.last_event.map(|e| e.to_string()).unwrap_or_default(),
                run: (j.run_begin, j.run_end),
                runs: j.num_runs.to_string(),
            })
            .collect();
        Ok(Shown {
            json: serde_json::to_value(&jobs)?,
            view,
        })
    }

    async fn suspend_job(&self, job: &JobName, suspend: bool) -> Result<()> {
        let jobs = std::slice::from_ref(job);
        match suspend {
            true => self.svc.suspend_jobs(&self.hub, jobs).await?,
            false => self.svc.unsuspend_jobs(&self.hub, jobs).await?,
        }
        Ok(())
    }

    async fn cancel_job(&self, job: &JobName) -> Result<Vec<String>> {
        let filter = EventFilter {
            hub: Some(self.hub.clone()),
            jobs: vec![job.clone()],
            states: vec![EventState::Active],
            ..Default::default()
        };
        let ids: Vec<EventId> = self
            .svc
            .events(&filter)
            .await?
            .iter()
            .map(|e| e.id)
            .collect();
        if ids.is_empty() {
            return Err(anyhow::Error::new(ServiceError::invalid(format!(
                "job {job} has no active event to cancel"
            ))));
        }
        self.svc.cancel_events(&self.hub, &ids).await?;
        Ok(texts(&ids))
    }

    async fn events(
        &self,
        args: &EventListArgs,
        with_results: bool,
    ) -> Result<Shown<Vec<EventRow>>> {
        let filter = EventFilter {
            hub: Some(self.hub.clone()),
            channels: args.channel.iter().cloned().collect(),
            types: args.event_type.iter().cloned().collect(),
            states: args.state.iter().cloned().collect(),
            max_events: Some(args.limit),
            fetch_results: with_results,
            ..Default::default()
        };
        let events = self.svc.events(&filter).await?;
        let view = events
            .iter()
            .map(|e| EventRow {
                id: e.id.to_string(),
                event_type: e.event_type.to_string(),
                state: e.state.to_string(),
                channel: e
                    .channel
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                user: e.user.clone(),
                response: e.response.clone().unwrap_or_else(|| e.description.clone()),
            })
            .collect();
        Ok(Shown {
            json: serde_json::to_value(&events)?,
            view,
        })
    }

    async fn event(&self, event: EventId) -> Result<Shown<EventView>> {
        let e = self.one_event(event).await?;
        let view = EventView {
            id: e.id.to_string(),
            event_type: e.event_type.to_string(),
            state: e.state.to_string(),
            user: Some(e.user.clone()),
            description: Some(e.description.clone()),
            job: e.job.as_ref().map(ToString::to_string),
            start: Some(e.start),
            finish: e.finish,
            response: e.response.clone(),
            results: e
                .results
                .iter()
                .map(|r| {
                    [
                        r.table
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                        r.name.to_string(),
                        r.value.clone(),
                    ]
                })
                .collect(),
        };
        Ok(Shown {
            json: serde_json::to_value(&e)?,
            view,
        })
    }

    async fn event_log(&self, event: EventId) -> Result<Shown<Vec<String>>> {
        self.one_event(event).await?;
        let lines = self.svc.event_log(event).await?;
        let json: Vec<_> = lines
            .iter()
            .map(|(t, m)| value!({ "time": t, "message": m }))
            .collect();
        let view = lines
            .iter()
            .map(|(t, m)| format!("{} {m}", t.format("%Y-%m-%dT%H:%M:%S%.3fZ")))
            .collect();
        Ok(Shown {
            json: Value::Array(json),
            view,
        })
    }
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
                changes(t.changes.as_ref()),
                format!("{:.2}", t.seconds),
                rate(t.rows, t.seconds),
                t.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    say!(
        "{}",
        table(
            &[
                "table",
                "state",
                "rows read",
                "changes",
                "seconds",
                "rows/s",
                "error"
            ],
            rows
        )
    );
    say!("{} (event {})", summary.response, summary.event);
    Ok(())
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
        if let Some(o) = &t.online
            && o.suspects > 0
        {
            let keys = o
                .in_flight_keys
                .iter()
                .map(|k| format!("({})", key_text(k)))
                .collect::<Vec<_>>()
                .join(" ");
            say!(
                "{} online: {} found different, {} were changes in flight, {} still changing after {} round(s){}",
                t.table,
                thousands(o.suspects),
                thousands(o.settled),
                thousands(o.in_flight),
                o.rounds,
                if keys.is_empty() {
                    String::new()
                } else {
                    format!(": {keys}")
                }
            );
        }
    }
    say!("{} (event {})", summary.response, summary.event);
    Ok(())
}
