//! Hub administration as the hub server uses it: hubs and their state, definition edits, jobs
//! and events.
//!
//! Every definition edit takes the hub's definitions as a document, changes the document, and
//! runs it through the same [`compile`](crate::definition::compile) as a definitions file; only a
//! document without errors is stored, in one transaction, guarded by the hub's version (a
//! concurrent edit is retried on the new version). A failed edit changes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value as Json;
use sluice_model::definition::{Definitions, Hub, HubState, Location, PropValue, is_secret_prop};
use sluice_model::{EventId, EventState, EventType, HubName, JobName, JobState, JobType};
use sluice_repo::{EventFilter, HubRecord, NewEvent, RepoErrorKind};
use tokio_util::sync::CancellationToken;

use crate::definition::{self, CompileContext};
use crate::jobs::{CompareCommand, RefreshCommand, Start, Submitted};
use crate::{HubService, Posted, Result, RunningJob, ServiceError, secrets};

/// What makes `after` send credentials somewhere else than `before` does: `Class`, or the
/// endpoint properties (host, port, database…) that differ, comma-separated; `None` when it
/// points where it did.
pub(crate) fn redirection(before: &Location, after: &Location) -> Option<String> {
    if before.class != after.class {
        return Some("Class".to_owned());
    }
    let specs = crate::registry::property_specs(after.class).unwrap_or_default();
    let changed: Vec<&str> = specs
        .iter()
        .filter(|s| s.endpoint && before.prop(s.name) != after.prop(s.name))
        .map(|s| s.name)
        .collect();
    (!changed.is_empty()).then(|| changed.join(", "))
}

/// Removes the stored passwords of `after` (sealed values, or `${VAR}` references) that `before`
/// already held, when `after` changes where credentials are sent (its class or an endpoint
/// property): an edit that redirects a location must supply the password again. Returns a note
/// naming what was dropped.
pub(crate) fn drop_redirected_password(before: &Location, after: &mut Location) -> Option<String> {
    let why = redirection(before, after)?;
    let stale: Vec<String> = after
        .props
        .iter()
        .filter(|(name, value)| {
            let text = value.to_text();
            is_secret_prop(name)
                && (secrets::is_sealed(&text) || text.contains("${"))
                && before.props.get(*name) == Some(*value)
        })
        .map(|(name, _)| name.clone())
        .collect();
    if stale.is_empty() {
        return None;
    }
    for name in &stale {
        after.props.remove(name);
    }
    Some(format!(
        "location {}: the stored {} was dropped because {why} changed; supply it again",
        after.name,
        stale.join(", ")
    ))
}

/// How [`HubService::start_jobs`] treats held jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// Start `SUSPEND` jobs too (they are unsuspended).
    pub unsuspend: bool,
    /// Start `FAILED` and `RETRY` jobs too.
    pub trigger_failed: bool,
}

/// What [`HubService::start_jobs`] did with one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStart {
    /// Its pending event runs now.
    Started(EventId),
    /// Left alone, and why (HVR's words: `Job in state 'SUSPEND'`).
    NotStarted(String),
}

/// Hub properties a client may not set.
const READ_ONLY_HUB_PROPS: &[&str] = &["Hub_State", "Created", "Creator", "Freeze_Time", "Hub_ID"];

impl HubService {
    /// Every hub.
    pub async fn hubs(&self) -> Result<Vec<HubRecord>> {
        Ok(self.definition_store().hubs().await?)
    }

    /// One hub.
    pub async fn hub(&self, hub: &HubName) -> Result<HubRecord> {
        self.definition_store()
            .hub(hub)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("hub {hub} does not exist")))
    }

    /// Creates an empty hub.
    pub async fn create_hub(&self, name: &str, description: &str) -> Result<EventId> {
        let name = HubName::new(name).map_err(|e| ServiceError::invalid(e.to_string()))?;
        let hub = Hub {
            name,
            description: description.to_owned(),
        };
        Ok(self
            .definition_store()
            .create_hub(&hub, self.user())
            .await?)
    }

    /// Deletes a hub with everything in it; its jobs running in this process are cancelled.
    pub async fn delete_hub(&self, hub: &HubName) -> Result<()> {
        let active = self
            .job_store()
            .events(&EventFilter {
                hub: Some(hub.clone()),
                states: vec![EventState::Active],
                ..Default::default()
            })
            .await?;
        for e in active {
            self.inner.cancel_local(e.id);
        }
        Ok(self.definition_store().delete_hub(hub).await?)
    }

    /// Freezes a hub: no job starts until it is unfrozen; running jobs finish.
    pub async fn freeze_hub(&self, hub: &HubName) -> Result<EventId> {
        Ok(self
            .definition_store()
            .set_hub_frozen(hub, true, self.user())
            .await?)
    }

    /// Unfreezes a hub: jobs may start again and the scheduler resumes.
    pub async fn unfreeze_hub(&self, hub: &HubName) -> Result<EventId> {
        Ok(self
            .definition_store()
            .set_hub_frozen(hub, false, self.user())
            .await?)
    }

    /// Sets hub properties (`None` deletes one).
    pub async fn set_hub_props(
        &self,
        hub: &HubName,
        changes: &BTreeMap<String, Option<Json>>,
    ) -> Result<EventId> {
        for (name, value) in changes {
            if READ_ONLY_HUB_PROPS.contains(&name.as_str()) {
                return Err(ServiceError::invalid(format!(
                    "hub property {name} is read-only"
                )));
            }
            if name.is_empty()
                || name.len() > 64
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(ServiceError::invalid(format!(
                    "invalid hub property name {name:?}"
                )));
            }
            if name == "Description" && !matches!(value, None | Some(Json::String(_))) {
                return Err(ServiceError::invalid(
                    "hub property Description must be text",
                ));
            }
        }
        Ok(self
            .definition_store()
            .set_hub_props(hub, changes, self.user())
            .await?)
    }

    /// Replaces the hub's props (HVR's `PUT …/props`): those not given are deleted (the
    /// description becomes empty); read-only props given with the value they have are ignored.
    pub async fn replace_hub_props(
        &self,
        hub: &HubName,
        props: &BTreeMap<String, Json>,
        read_only: &BTreeMap<String, Json>,
    ) -> Result<EventId> {
        let record = self.hub(hub).await?;
        let mut changes: BTreeMap<String, Option<Json>> = BTreeMap::new();
        for (name, value) in props {
            if read_only.get(name) == Some(value) {
                continue;
            }
            if value.is_null() {
                return Err(ServiceError::invalid(format!(
                    "hub property {name}: null is not a value (PUT replaces every property; leave it out to delete it)"
                )));
            }
            changes.insert(name.clone(), Some(value.clone()));
        }
        for name in record.props.keys() {
            changes.entry(name.clone()).or_insert(None);
        }
        changes
            .entry("Description".into())
            .or_insert(Some(Json::String(String::new())));
        self.set_hub_props(hub, &changes).await
    }

    /// Deletes hub props (HVR's `POST …/props_delete`); deleting `Description` empties it.
    pub async fn delete_hub_props(&self, hub: &HubName, names: &[String]) -> Result<EventId> {
        if names.is_empty() {
            return Err(ServiceError::invalid("props: name at least one property"));
        }
        let changes: BTreeMap<String, Option<Json>> = names
            .iter()
            .map(|n| {
                let value = (n == "Description").then(|| Json::String(String::new()));
                (n.clone(), value)
            })
            .collect();
        self.set_hub_props(hub, &changes).await
    }

    /// The hub's definitions and their version.
    pub async fn definitions(&self, hub: &HubName) -> Result<(Definitions, i64)> {
        let record = self.hub(hub).await?;
        let locations = self.definition_store().locations(hub).await?;
        let channels = self.definition_store().channels(hub).await?;
        Ok((
            Definitions {
                hub: record.hub,
                locations: locations.into_iter().map(|l| (l.name.clone(), l)).collect(),
                channels: channels.into_iter().map(|c| (c.name.clone(), c)).collect(),
            },
            record.version,
        ))
    }

    /// The hub's definitions as a document people may see: sealed secrets are left out. Kept in
    /// memory per hub and rebuilt when the hub's definitions version (or creation time) changes,
    /// so reads cost one small query while nothing changes.
    pub async fn export_document(&self, hub: &HubName) -> Result<std::sync::Arc<Json>> {
        let record = self.hub(hub).await?;
        let key = (record.created, record.version);
        if let Some((k, doc)) = self
            .inner
            .doc_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hub)
            && *k == key
        {
            return Ok(doc.clone());
        }
        let (mut defs, version) = self.definitions(hub).await?;
        for loc in defs.locations.values_mut() {
            *loc = redact_location(loc);
        }
        let doc = std::sync::Arc::new(definition::to_document(&defs));
        // Only cache what was read at the version checked (a change in between is read next time).
        if version == record.version {
            self.inner
                .doc_cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(hub.clone(), (key, doc.clone()));
        }
        Ok(doc)
    }

    /// Changes the hub's definitions: `edit` changes the document form, the result is compiled
    /// like a definitions file and stored atomically with an audit event of `event_type`
    /// describing the change. Literal secrets are sealed before they are stored. Invalid results
    /// fail with every finding and change nothing.
    pub async fn edit_definitions(
        &self,
        hub: &HubName,
        event_type: EventType,
        description: &str,
        edit: impl Fn(&mut Json) -> Result<()>,
    ) -> Result<EventId> {
        let body = serde_json::json!({ "change": description });
        self.edit_definitions_with_body(hub, event_type, description, body, edit)
            .await
    }

    /// As [`HubService::edit_definitions`], with the event's body given: HVR's form of the change,
    /// e.g. `{"rename_channel": {"channel": "a", "new_name": "b"}}`.
    pub async fn edit_definitions_with_body(
        &self,
        hub: &HubName,
        event_type: EventType,
        description: &str,
        body: Json,
        edit: impl Fn(&mut Json) -> Result<()>,
    ) -> Result<EventId> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (defs, version) = self.definitions(hub).await?;
            let mut doc = definition::to_document(&defs);
            edit(&mut doc)?;
            let compiled = definition::compile(&doc, &self.api_compile_context(hub));
            let Some(mut new_defs) = compiled.definitions else {
                let errors: Vec<_> = compiled.errors().cloned().collect();
                let first = errors
                    .first()
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "invalid definitions".into());
                let mut error = ServiceError::invalid(if errors.len() > 1 {
                    format!(
                        "{first} (and {} more error(s); nothing was changed)",
                        errors.len() - 1
                    )
                } else {
                    format!("{first}; nothing was changed")
                });
                error.diagnostics = errors;
                return Err(error);
            };
            if new_defs.hub.name != *hub {
                return Err(ServiceError::invalid(format!(
                    "the document names hub {}, not {hub}",
                    new_defs.hub.name
                )));
            }
            let notes = self.check_changed_locations(&defs, &mut new_defs)?;
            // After reading the definitions: a rotation since makes this write conflict.
            self.sync_wallet().await?;
            self.seal_secrets(&mut new_defs)?;
            let mut event_description = format!("{description} (by {})", self.user());
            for note in &notes {
                event_description.push_str(&format!("; {note}"));
            }
            let event = NewEvent {
                hub: hub.clone(),
                event_type,
                user: self.user().to_owned(),
                description: event_description,
                channel: None,
                loc: None,
                loc2: None,
                job: None,
                state: EventState::Done,
                body: body.clone(),
            };
            match self
                .definition_store()
                .replace_hub_definitions(&new_defs, version, event)
                .await
            {
                Err(e) if e.kind() == RepoErrorKind::Conflict && attempts < 5 => continue,
                other => return Ok(other?),
            }
        }
    }

    /// How a definitions document that arrived over the API compiles: relative SQLite paths are
    /// taken from the data directory, and only variables the policy allows are looked at.
    pub(crate) fn api_compile_context(&self, hub: &HubName) -> CompileContext {
        let policy = self.location_policy();
        CompileContext {
            default_hub: Some(hub.clone()),
            allow_secret_values: true,
            base_dir: policy.data_dir().map(std::path::Path::to_path_buf),
            env: std::env::vars()
                .filter(|(name, _)| policy.env_allowed(name))
                .collect(),
            ..Default::default()
        }
    }

    /// Checks the locations an edit adds or changes against the location policy (what they may
    /// reference and which files they may open), and drops a stored password that the edit would
    /// send somewhere else: when a property saying where credentials go changes and the edit does
    /// not supply the password again. Returns notes for the audit event; refuses the whole edit
    /// when a location breaks the policy.
    fn check_changed_locations(
        &self,
        old: &Definitions,
        new: &mut Definitions,
    ) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        for (name, location) in new.locations.iter_mut() {
            if let Some(before) = old.locations.get(name)
                && before != &*location
                && let Some(note) = drop_redirected_password(before, location)
            {
                notes.push(note);
            }
        }
        self.check_location_policy(Some(old), new)?;
        Ok(notes)
    }

    /// Checks the locations `new` adds or changes against `old` (`None`: every location is new)
    /// against the location policy: what they may reference and which files they may open.
    /// Refuses with every problem when one breaks it.
    pub(crate) fn check_location_policy(
        &self,
        old: Option<&Definitions>,
        new: &Definitions,
    ) -> Result<()> {
        let policy = self.location_policy();
        let mut problems = Vec::new();
        for (name, location) in &new.locations {
            let before = old.and_then(|o| o.locations.get(name));
            if before == Some(location) {
                continue;
            }
            for (prop, reason) in policy.check_api_location(location, before) {
                problems.push(format!("locations.{name}.props.{prop}: {reason}"));
            }
        }
        match problems.len() {
            0 => Ok(()),
            n => Err(ServiceError::invalid(format!(
                "{}{}; nothing was changed",
                problems[0],
                if n > 1 {
                    format!(" (and {} more)", n - 1)
                } else {
                    String::new()
                }
            ))),
        }
    }

    pub(crate) fn seal_secrets(&self, defs: &mut Definitions) -> Result<()> {
        for loc in defs.locations.values_mut() {
            for (name, value) in loc.props.iter_mut() {
                let text = value.to_text();
                if !is_secret_prop(name)
                    || secrets::is_sealed(&text)
                    || sluice_model::definition::is_single_env_ref(&text)
                {
                    continue;
                }
                let key = self.inner.secrets.as_ref().ok_or_else(|| {
                    ServiceError::invalid(format!(
                        "location {}: {name} must be an ${{ENV_VAR}} reference here (no secret key to store it encrypted)",
                        loc.name
                    ))
                })?;
                *value = PropValue::Text(key.seal(&text));
            }
        }
        Ok(())
    }

    /// Starts jobs that wait with a pending event; they run in the background. As HVR's
    /// `hvrstart`, a `SUSPEND` job is left alone unless `unsuspend`, and a `FAILED` or `RETRY`
    /// one unless `trigger_failed`: those answer why they were not started.
    pub async fn start_jobs(
        &self,
        hub: &HubName,
        jobs: &[JobName],
        options: StartOptions,
    ) -> Result<Vec<(JobName, JobStart)>> {
        self.ensure_live(hub).await?;
        let mut records = Vec::new();
        for job in jobs {
            let record = self
                .job_store()
                .job(hub, job)
                .await?
                .ok_or_else(|| ServiceError::not_found(format!("job {job} does not exist")))?;
            records.push(record);
        }
        let mut outcome = Vec::new();
        for record in records {
            let job = record.name.clone();
            let held = match record.state {
                JobState::Suspend => !options.unsuspend,
                JobState::Failed | JobState::Retry => !options.trigger_failed,
                _ => false,
            };
            if held {
                let why = format!("Job in state '{}'", record.state.as_str());
                outcome.push((job, JobStart::NotStarted(why)));
                continue;
            }
            if matches!(job.job_type(), JobType::Capture | JobType::Integrate) {
                // Replication jobs run while their channel is activated: let the supervisor
                // start the channel's run.
                if record.state != JobState::Running {
                    self.job_store()
                        .set_job_state(hub, &job, JobState::Pending)
                        .await?;
                    self.start_replication(hub, job.channel()).await?;
                }
                let event = self
                    .job_store()
                    .job(hub, &job)
                    .await?
                    .and_then(|r| r.last_event)
                    .unwrap_or_else(EventId::now);
                outcome.push((job, JobStart::Started(event)));
                continue;
            }
            let event = record.last_event.ok_or_else(|| {
                ServiceError::invalid(format!("job {job} has no pending event to run"))
            })?;
            let started = self.start_pending(hub, &job, event).await?;
            outcome.push((job, JobStart::Started(started)));
        }
        Ok(outcome)
    }

    /// Runs the pending `event` of `job` in the background.
    async fn start_pending(&self, hub: &HubName, job: &JobName, event: EventId) -> Result<EventId> {
        let record = self
            .job_store()
            .events(&EventFilter {
                hub: Some(hub.clone()),
                ids: vec![event],
                ..Default::default()
            })
            .await?
            .pop()
            .ok_or_else(|| ServiceError::not_found(format!("event {event} does not exist")))?;
        if record.state != EventState::Active {
            return Err(ServiceError::invalid(format!(
                "job {job} has no pending event to run (its last event {event} is {})",
                record.state
            )));
        }
        let command = record.body.get("command").cloned().unwrap_or(Json::Null);
        let bad = |e: serde_json::Error| {
            ServiceError::invalid(format!(
                "event {event} does not hold a runnable request: {e}"
            ))
        };
        let runner = self.as_user(&record.user);
        match job.job_type() {
            JobType::Refresh => {
                let cmd: RefreshCommand = serde_json::from_value(command).map_err(bad)?;
                detach(runner.submit_refresh(cmd, Start::Claim).await?);
            }
            JobType::Compare => {
                let cmd: CompareCommand = serde_json::from_value(command).map_err(bad)?;
                detach(runner.submit_compare(cmd, Start::Claim).await?);
            }
            kind @ (JobType::Activate | JobType::Deactivate) => {
                // Posted pending by a batch; the channel's current definition is set up.
                let channel = record.channel.clone().ok_or_else(|| {
                    ServiceError::invalid(format!("event {event} names no channel"))
                })?;
                if kind == JobType::Activate {
                    let cmd = crate::replication::ActivateCommand {
                        hub: hub.clone(),
                        channel,
                        refresh: record.body.get("refresh").and_then(Json::as_bool) == Some(true),
                        refresh_events: Vec::new(),
                        start: true,
                    };
                    runner.submit_activate(cmd, Start::Claim).await?;
                } else {
                    runner
                        .submit_deactivate(hub, &channel, Start::Claim)
                        .await?;
                }
            }
            other => {
                return Err(ServiceError::invalid(format!(
                    "job {job}: {other:?} jobs are not supported yet"
                )));
            }
        }
        Ok(event)
    }

    /// Suspends jobs that are not running, and the capture and integrate jobs of activated
    /// channels also while they run (their run stops; the source keeps the changes).
    pub async fn suspend_jobs(&self, hub: &HubName, jobs: &[JobName]) -> Result<()> {
        for job in jobs {
            if matches!(job.job_type(), JobType::Capture | JobType::Integrate)
                && let Some(record) = self.job_store().job(hub, job).await?
                && record.state == JobState::Running
                && let Some(event) = record.last_event
            {
                self.job_store()
                    .cancel_events(hub, &[event], crate::STALE_AFTER)
                    .await?;
                continue;
            }
            self.job_store()
                .set_job_state(hub, job, JobState::Suspend)
                .await?;
        }
        self.audit_jobs(hub, EventType::JobSuspend, "suspended", jobs)
            .await
    }

    /// Unsuspends jobs: a job with a pending event becomes `PENDING` and the scheduler starts it.
    pub async fn unsuspend_jobs(&self, hub: &HubName, jobs: &[JobName]) -> Result<()> {
        for job in jobs {
            let record = self
                .job_store()
                .job(hub, job)
                .await?
                .ok_or_else(|| ServiceError::not_found(format!("job {job} does not exist")))?;
            let pending = match record.last_event {
                Some(ev) => self
                    .job_store()
                    .events(&EventFilter {
                        hub: Some(hub.clone()),
                        ids: vec![ev],
                        ..Default::default()
                    })
                    .await?
                    .first()
                    .is_some_and(|e| e.state == EventState::Active),
                None => false,
            };
            let state = if pending {
                JobState::Pending
            } else {
                JobState::Done
            };
            self.job_store().set_job_state(hub, job, state).await?;
        }
        self.audit_jobs(hub, EventType::JobUnsuspend, "unsuspended", jobs)
            .await
    }

    /// Deletes jobs; their active events are cancelled (a running one stops).
    pub async fn delete_jobs(&self, hub: &HubName, jobs: &[JobName]) -> Result<Vec<EventId>> {
        let mut canceled = Vec::new();
        for job in jobs {
            let ids = self.job_store().delete_job(hub, job).await?;
            self.delete_job_props(hub, job).await?;
            for id in &ids {
                self.inner.cancel_local(*id);
            }
            canceled.extend(ids);
        }
        self.audit_jobs(hub, EventType::JobDelete, "deleted", jobs)
            .await?;
        Ok(canceled)
    }

    async fn audit_jobs(
        &self,
        hub: &HubName,
        kind: EventType,
        verb: &str,
        jobs: &[JobName],
    ) -> Result<()> {
        let names: Vec<&str> = jobs.iter().map(|j| j.as_str()).collect();
        self.job_store()
            .post_event(NewEvent {
                hub: hub.clone(),
                event_type: kind,
                user: self.user().to_owned(),
                description: format!("jobs {verb} by {}: {}", self.user(), names.join(", ")),
                channel: None,
                loc: None,
                loc2: None,
                job: None,
                state: EventState::Done,
                body: serde_json::json!({ "jobs": names }),
            })
            .await?;
        Ok(())
    }

    /// Cancels active events (see [`JobStore::cancel_events`](sluice_repo::JobStore::cancel_events)):
    /// a pending one never runs; a running one stops before its next table commits (the table
    /// it is writing is left as it was) and ends `CANCELED`, or `FAILED` when a table had
    /// already committed; while a table commits it is too late (`Conflict`). The job of a run
    /// whose process stopped is freed at once.
    pub async fn cancel_events(&self, hub: &HubName, ids: &[EventId]) -> Result<()> {
        let canceled = self
            .job_store()
            .cancel_events(hub, ids, crate::STALE_AFTER)
            .await?;
        for e in &canceled {
            self.inner.cancel_local(e.id);
        }
        let names: Vec<String> = canceled.iter().map(|e| e.id.to_string()).collect();
        self.job_store()
            .post_event(NewEvent {
                hub: hub.clone(),
                event_type: EventType::EventCancel,
                user: self.user().to_owned(),
                description: format!("events canceled by {}: {}", self.user(), names.join(", ")),
                channel: None,
                loc: None,
                loc2: None,
                job: None,
                state: EventState::Done,
                body: serde_json::json!({ "ev_ids": names }),
            })
            .await?;
        Ok(())
    }

    /// Submits a refresh that runs (or waits) in the background.
    pub async fn submit_refresh_detached(
        &self,
        cmd: RefreshCommand,
        start: bool,
    ) -> Result<Posted> {
        let submitted = self
            .submit_refresh(cmd, if start { Start::Now } else { Start::Pending })
            .await?;
        let posted = submitted.posted();
        detach(submitted);
        Ok(posted)
    }

    /// Submits a refresh that runs at once in the background, with `connector` recorded in its
    /// event's body.
    pub(crate) async fn submit_refresh_tagged(
        &self,
        cmd: RefreshCommand,
        connector: Json,
    ) -> Result<Posted> {
        let submitted = self
            .submit_refresh_with(cmd, Start::Now, Some(connector))
            .await?;
        let posted = submitted.posted();
        detach(submitted);
        Ok(posted)
    }

    /// Submits a compare that runs (or waits) in the background.
    pub async fn submit_compare_detached(
        &self,
        cmd: CompareCommand,
        start: bool,
    ) -> Result<Posted> {
        let submitted = self
            .submit_compare(cmd, if start { Start::Now } else { Start::Pending })
            .await?;
        let posted = submitted.posted();
        detach(submitted);
        Ok(posted)
    }

    /// The scheduler: every `tick`, on every live hub, starts the jobs that are `PENDING` with a
    /// pending event and the due syncs of `auto`, unpaused connectors (see
    /// [`HubService::schedule_connectors`]). Stops when `shutdown` fires. Frozen hubs are skipped.
    /// At its first pass and then every few seconds it also ends the runs of processes that
    /// stopped ([`HubService::reap_orphaned_jobs`]), on frozen hubs too.
    pub async fn run_scheduler(self, tick: Duration, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(tick);
        let mut reaped_at: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            // Runs whose process stopped are ended at the first pass and then every REAP_EVERY.
            if reaped_at.is_none_or(|at| at.elapsed() >= crate::REAP_EVERY) {
                reaped_at = Some(tokio::time::Instant::now());
                if let Err(e) = self.reap_orphaned_jobs().await {
                    tracing::warn!(error = %e, "scheduler could not end the runs of stopped processes");
                }
            }
            if let Err(e) = self.schedule_once().await {
                tracing::warn!(error = %e, "scheduler pass failed");
            }
        }
    }

    async fn schedule_once(&self) -> Result<()> {
        if let Err(e) = self.schedule_connectors(chrono::Utc::now()).await {
            tracing::warn!(error = %e, "scheduler could not look at the connectors");
        }
        for hub in self.definition_store().hubs().await? {
            if hub.state != HubState::Live {
                continue;
            }
            for job in self.job_store().jobs(&hub.hub.name).await? {
                if job.state != JobState::Pending {
                    continue;
                }
                let Some(event) = job.last_event else {
                    continue;
                };
                match self.start_pending(&hub.hub.name, &job.name, event).await {
                    Ok(_) => {
                        tracing::info!(job = %job.name, event = %event, "scheduler started a job")
                    }
                    Err(e) => {
                        tracing::warn!(job = %job.name, error = %e, "scheduler could not start a job")
                    }
                }
            }
        }
        Ok(())
    }
}

/// A location with its sealed secrets left out: what may be shown.
pub fn redact_location(loc: &Location) -> Location {
    let mut loc = loc.clone();
    loc.props
        .retain(|name, value| !(is_secret_prop(name) && secrets::is_sealed(&value.to_text())));
    loc
}

/// Lets a submitted job run to its end in the background, draining its progress.
pub(crate) fn detach<R: Send + 'static>(submitted: Submitted<R>) {
    if let Submitted::Running(RunningJob {
        mut progress,
        done,
        job,
        ..
    }) = submitted
    {
        tokio::spawn(async move {
            let drain = async { while progress.recv().await.is_some() {} };
            let (_, result) = tokio::join!(drain, done);
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(job = %job, error = %e, "job ended with an error"),
                Err(e) => tracing::error!(job = %job, error = %e, "job task failed"),
            }
        });
    }
}

impl HubService {
    /// Tests a location given as a document (`{"class"?, "props": {…}}`) without storing it.
    pub async fn test_location_document(
        &self,
        hub: &HubName,
        doc: &Json,
        props_from: Option<&sluice_model::LocationName>,
    ) -> Result<sluice_connector::TestReport> {
        let (_, connector) = self.connect_document(hub, doc, props_from).await?;
        connector
            .test()
            .await
            .map_err(|e| ServiceError::connector("the new location failed its test", e))
    }
}
