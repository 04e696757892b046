//! Puts what happens in the repository on the event hub.
//!
//! [`PublishingRepository`] stands in for the two areas of the repository whose changes are
//! published, definitions and jobs with their events (users, tokens and settings are not
//! published, so the service calls those stores directly): every call is passed through unchanged, and after it succeeds the hub publishes what
//! changed on the built-in topics:
//! * `sluice.job`, routing `<hub>.<channel>.<job_type>`: a job's new state;
//! * `sluice.event`, routing `<hub>.<channel or _>.<event_type>`: an HVR event as posted, when it
//!   finishes (with its per-table results) and when it is cancelled;
//! * `sluice.definition`, routing `<hub>.<change>`: hub and definition changes, naming the user.
//!
//! Publishing never slows or fails the repository call: messages go, in order, through a queue
//! to one task that publishes them (waiting when the hub's write buffer is full). Should the
//! queue overflow (the event hub stuck for a long time), messages are dropped with a warning;
//! the repository stays the record of truth.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};
use sluice_events::topic::{DEFINITION_TOPIC, EVENT_TOPIC, JOB_TOPIC};
use sluice_events::{Actor, EventHub, NewEvent as HubEvent, RoutingKey, TopicName};
use sluice_model::definition::{Channel, Definitions, Hub, Location};
use sluice_model::{
    ChannelName, EventId, EventState, HubName, JobName, JobState, LocationName, TableName,
};
use sluice_repo::{
    ApplySummary, DefinitionStore, EventFilter, EventRecord, EventResult, HubRecord, JobRecord,
    JobStore, NewEvent, Owner, ReapedJob, Repository, Result, StartedJob, SubmittedJob,
};
use tokio::sync::mpsc;

/// Messages waiting to be published, at most.
const QUEUE: usize = 100_000;

/// A repository that also publishes its changes on the event hub.
pub struct PublishingRepository {
    inner: Arc<dyn Repository>,
    queue: mpsc::Sender<HubEvent>,
}

impl PublishingRepository {
    /// Wraps `inner`; changes are published on `hub`.
    pub fn new(inner: Arc<dyn Repository>, hub: EventHub) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(publish_loop(hub, rx, inner.clone()));
        PublishingRepository { inner, queue }
    }

    fn send(&self, topic: &str, key: RoutingKey, payload: Json) {
        let event = HubEvent {
            topic: TopicName::new(topic).expect("built-in topic names are valid"),
            routing_key: key,
            payload,
            id: None,
        };
        if self.queue.try_send(event).is_err() {
            tracing::warn!(
                topic,
                "the event hub is not keeping up; a change notification was dropped"
            );
        }
    }

    async fn job_changed(&self, hub: &HubName, job: &JobName, event: Option<EventId>) {
        let state = match self.inner.job(hub, job).await {
            Ok(Some(record)) => record.state,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reading a job to publish its state failed");
                return;
            }
        };
        self.job_state(hub, job, state, event);
    }

    fn job_state(&self, hub: &HubName, job: &JobName, state: JobState, event: Option<EventId>) {
        let job_type = job.job_type().infix().to_owned();
        self.send(
            JOB_TOPIC,
            RoutingKey::from_words([hub.as_str(), job.channel().as_str(), job_type.as_str()]),
            json!({
                "hub": hub.as_str(),
                "channel": job.channel().as_str(),
                "job": job.to_string(),
                "job_type": job_type,
                "state": state.to_string(),
                "ev_id": event.map(|e| e.to_string()),
            }),
        );
    }

    async fn events_changed(&self, hub: &HubName, ids: &[EventId], results: bool) {
        if ids.is_empty() {
            return;
        }
        let records = match self
            .inner
            .events(&EventFilter {
                hub: Some(hub.clone()),
                ids: ids.to_vec(),
                fetch_results: results,
                ..Default::default()
            })
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "reading events to publish them failed");
                return;
            }
        };
        // Oldest first, as they happened.
        for record in records.iter().rev() {
            self.event(record);
        }
    }

    fn event(&self, record: &EventRecord) {
        let event_type = record.event_type.to_string();
        let channel = record.channel.as_ref().map(|c| c.as_str()).unwrap_or("_");
        let mut payload = json!({
            "hub": record.hub.as_str(),
            "ev_id": record.id.to_string(),
            "type": event_type,
            "state": record.state.to_string(),
            "user": record.user,
            "description": record.description,
            "channel": record.channel.as_ref().map(|c| c.as_str()),
            "loc": record.loc.as_ref().map(|c| c.as_str()),
            "loc2": record.loc2.as_ref().map(|c| c.as_str()),
            "job": record.job.as_ref().map(|j| j.to_string()),
            "response": record.response,
            "start": record.start,
            "finish": record.finish,
        });
        if !record.results.is_empty() {
            payload["results"] = record
                .results
                .iter()
                .map(|r| {
                    json!({
                        "table": r.table.as_ref().map(|t| t.as_str()),
                        "name": r.name.to_string(),
                        "value": r.value,
                    })
                })
                .collect();
        }
        self.send(
            EVENT_TOPIC,
            RoutingKey::from_words([record.hub.as_str(), channel, event_type.as_str()]),
            payload,
        );
    }

    fn definition(&self, hub: &HubName, change: &str, user: &str, event: Option<EventId>) {
        self.send(
            DEFINITION_TOPIC,
            RoutingKey::from_words([hub.as_str(), change]),
            json!({
                "hub": hub.as_str(),
                "change": change,
                "user": user,
                "ev_id": event.map(|e| e.to_string()),
            }),
        );
    }
}

async fn publish_loop(hub: EventHub, mut rx: mpsc::Receiver<HubEvent>, repo: Arc<dyn Repository>) {
    let actor = Actor::system();
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 1000).await > 0 {
        let events = std::mem::take(&mut batch);
        let mut attempt = 0;
        loop {
            match hub.publish(events.clone(), &actor).await {
                Ok(_) => {
                    // Alerts on what was just published (events and job states).
                    for e in &events {
                        let topic = e.topic.as_str();
                        if topic == EVENT_TOPIC || topic == JOB_TOPIC {
                            crate::alert::evaluate(&*repo, &hub, topic, &e.payload).await;
                        }
                    }
                    break;
                }
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "publishing change notifications failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, dropped = events.len(), "publishing change notifications failed; giving up on them");
                    break;
                }
            }
        }
    }
}

#[async_trait]
impl DefinitionStore for PublishingRepository {
    async fn hubs(&self) -> Result<Vec<HubRecord>> {
        self.inner.hubs().await
    }

    async fn hub(&self, hub: &HubName) -> Result<Option<HubRecord>> {
        self.inner.hub(hub).await
    }

    async fn apply_definitions(
        &self,
        definitions: &Definitions,
        user: &str,
        source: &str,
    ) -> Result<ApplySummary> {
        let summary = self
            .inner
            .apply_definitions(definitions, user, source)
            .await?;
        let hub = &definitions.hub.name;
        self.definition(hub, "apply", user, summary.event);
        if let Some(id) = summary.event {
            self.events_changed(hub, &[id], false).await;
        }
        Ok(summary)
    }

    async fn location(&self, hub: &HubName, name: &LocationName) -> Result<Option<Location>> {
        self.inner.location(hub, name).await
    }

    async fn locations(&self, hub: &HubName) -> Result<Vec<Location>> {
        self.inner.locations(hub).await
    }

    async fn channel(&self, hub: &HubName, name: &ChannelName) -> Result<Option<Channel>> {
        self.inner.channel(hub, name).await
    }

    async fn channels(&self, hub: &HubName) -> Result<Vec<Channel>> {
        self.inner.channels(hub).await
    }

    async fn create_hub(&self, hub: &Hub, user: &str) -> Result<EventId> {
        let id = self.inner.create_hub(hub, user).await?;
        self.definition(&hub.name, "hub_create", user, Some(id));
        self.events_changed(&hub.name, &[id], false).await;
        Ok(id)
    }

    async fn delete_hub(&self, hub: &HubName) -> Result<()> {
        self.inner.delete_hub(hub).await?;
        self.definition(hub, "hub_delete", "", None);
        Ok(())
    }

    async fn set_hub_frozen(&self, hub: &HubName, frozen: bool, user: &str) -> Result<EventId> {
        let id = self.inner.set_hub_frozen(hub, frozen, user).await?;
        let change = if frozen { "freeze" } else { "unfreeze" };
        self.definition(hub, change, user, Some(id));
        self.events_changed(hub, &[id], false).await;
        Ok(id)
    }

    async fn set_hub_props(
        &self,
        hub: &HubName,
        changes: &BTreeMap<String, Option<Json>>,
        user: &str,
    ) -> Result<EventId> {
        let id = self.inner.set_hub_props(hub, changes, user).await?;
        self.definition(hub, "props", user, Some(id));
        self.events_changed(hub, &[id], false).await;
        Ok(id)
    }

    async fn replace_hub_definitions(
        &self,
        definitions: &Definitions,
        expected_version: i64,
        event: NewEvent,
    ) -> Result<EventId> {
        let user = event.user.clone();
        let hub = definitions.hub.name.clone();
        let change = event.event_type.to_string();
        let id = self
            .inner
            .replace_hub_definitions(definitions, expected_version, event)
            .await?;
        self.definition(&hub, &change, &user, Some(id));
        self.events_changed(&hub, &[id], false).await;
        Ok(id)
    }
}

#[async_trait]
impl JobStore for PublishingRepository {
    async fn post_event(&self, event: NewEvent) -> Result<EventId> {
        let hub = event.hub.clone();
        let id = self.inner.post_event(event).await?;
        self.events_changed(&hub, &[id], false).await;
        Ok(id)
    }

    async fn start_job(
        &self,
        event: NewEvent,
        owner: &Owner,
        stale_after: Duration,
    ) -> Result<StartedJob> {
        let hub = event.hub.clone();
        let job = event.job.clone();
        let started = self.inner.start_job(event, owner, stale_after).await?;
        let mut ids = started.taken_over.clone();
        ids.push(started.event);
        self.events_changed(&hub, &ids, false).await;
        if let Some(job) = job {
            self.job_state(&hub, &job, JobState::Running, Some(started.event));
        }
        Ok(started)
    }

    async fn heartbeat(&self, hub: &HubName, job: &JobName, owner: &Owner) -> Result<bool> {
        self.inner.heartbeat(hub, job, owner).await
    }

    async fn finish_job(
        &self,
        hub: &HubName,
        job: &JobName,
        event: EventId,
        state: EventState,
        response: &str,
    ) -> Result<()> {
        self.inner
            .finish_job(hub, job, event, state, response)
            .await?;
        self.events_changed(hub, &[event], true).await;
        self.job_changed(hub, job, Some(event)).await;
        Ok(())
    }

    async fn put_results(&self, event: EventId, results: &[EventResult]) -> Result<()> {
        self.inner.put_results(event, results).await
    }

    async fn append_log(&self, event: EventId, lines: &[String]) -> Result<()> {
        self.inner.append_log(event, lines).await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        self.inner.events(filter).await
    }

    async fn event_log(&self, event: EventId) -> Result<Vec<(DateTime<Utc>, String)>> {
        self.inner.event_log(event).await
    }

    async fn jobs(&self, hub: &HubName) -> Result<Vec<JobRecord>> {
        self.inner.jobs(hub).await
    }

    async fn latest_table_results(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        event_type: sluice_model::EventType,
    ) -> Result<BTreeMap<sluice_model::TableName, (EventRecord, Vec<EventResult>)>> {
        self.inner
            .latest_table_results(hub, channel, event_type)
            .await
    }

    async fn submit_job(
        &self,
        event: NewEvent,
        start: Option<(&Owner, Duration)>,
    ) -> Result<SubmittedJob> {
        let hub = event.hub.clone();
        let job = event.job.clone();
        let started = start.is_some();
        let submitted = self.inner.submit_job(event, start).await?;
        let mut ids = submitted.canceled.clone();
        ids.extend(submitted.taken_over.iter().copied());
        ids.push(submitted.event);
        self.events_changed(&hub, &ids, false).await;
        if let Some(job) = job {
            let state = if started {
                JobState::Running
            } else {
                JobState::Pending
            };
            self.job_state(&hub, &job, state, Some(submitted.event));
        }
        Ok(submitted)
    }

    async fn claim_job(
        &self,
        hub: &HubName,
        job: &JobName,
        owner: &Owner,
        stale_after: Duration,
    ) -> Result<(EventId, Vec<EventId>)> {
        let (event, taken_over) = self.inner.claim_job(hub, job, owner, stale_after).await?;
        self.events_changed(hub, &taken_over, false).await;
        self.job_state(hub, job, JobState::Running, Some(event));
        Ok((event, taken_over))
    }

    async fn job(&self, hub: &HubName, job: &JobName) -> Result<Option<JobRecord>> {
        self.inner.job(hub, job).await
    }

    async fn set_job_state(&self, hub: &HubName, job: &JobName, state: JobState) -> Result<()> {
        self.inner.set_job_state(hub, job, state).await?;
        self.job_state(hub, job, state, None);
        Ok(())
    }

    async fn delete_job(&self, hub: &HubName, job: &JobName) -> Result<Vec<EventId>> {
        let canceled = self.inner.delete_job(hub, job).await?;
        self.events_changed(hub, &canceled, false).await;
        let job_type = job.job_type().infix().to_owned();
        self.send(
            JOB_TOPIC,
            RoutingKey::from_words([hub.as_str(), job.channel().as_str(), job_type.as_str()]),
            json!({
                "hub": hub.as_str(),
                "channel": job.channel().as_str(),
                "job": job.to_string(),
                "job_type": job_type,
                "state": "DELETED",
                "ev_id": null,
            }),
        );
        Ok(canceled)
    }

    async fn cancel_events(
        &self,
        hub: &HubName,
        ids: &[EventId],
        stale_after: Duration,
    ) -> Result<Vec<EventRecord>> {
        let records = self.inner.cancel_events(hub, ids, stale_after).await?;
        for record in &records {
            self.event(record);
            if let Some(job) = &record.job {
                self.job_changed(hub, job, Some(record.id)).await;
            }
        }
        Ok(records)
    }

    async fn begin_commit(
        &self,
        hub: &HubName,
        job: &JobName,
        event: EventId,
        table: &TableName,
        owner: &Owner,
    ) -> Result<bool> {
        self.inner.begin_commit(hub, job, event, table, owner).await
    }

    async fn end_commit(&self, event: EventId, table: &TableName, committed: bool) -> Result<()> {
        self.inner.end_commit(event, table, committed).await
    }

    async fn reap_jobs(&self, stale_after: Duration) -> Result<Vec<ReapedJob>> {
        let reaped = self.inner.reap_jobs(stale_after).await?;
        for r in &reaped {
            if let (Some(event), true) = (r.event, r.failed) {
                self.events_changed(&r.hub, &[event], true).await;
            }
            self.job_changed(&r.hub, &r.job, r.event).await;
        }
        Ok(reaped)
    }
}
