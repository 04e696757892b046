//! The event hub: validated, durable publish with group commit, and live subscriptions that
//! lose nothing.
//!
//! # Publish
//! [`EventHub::publish`] checks every event (topic exists, the caller's grant, id, size, the
//! topic's JSON Schema) before anything is stored, then reserves room in the write buffer: when
//! the buffer is full the call fails at once with [`ErrorKind::Busy`](crate::ErrorKind::Busy)
//! and a retry delay (the API answers 503 with `Retry-After`), never a success that dropped data.
//! One writer task stores what is waiting in one transaction (group commit: while one commit
//! runs, the next publishes gather), answers each caller after its events are durable, then
//! hands the new events to live subscribers and to the [`Broker`].
//!
//! # Subscribe
//! A [`Subscription`] starts after a sequence number (a client's `Last-Event-ID`) or at the
//! current end. It first joins the topic's live channel, then reads the store up to the live
//! point, then follows live events, skipping any it has already delivered and filling any gap
//! from the store; so a resumed stream has no gap and no duplicate. Each subscription has a
//! bounded queue. A consumer that falls more than `lag_notice` events behind gets a
//! [`Delivery::Lag`] notice; one that falls more than `max_lag` behind, or does not take an
//! event for `stall_timeout`, gets [`Delivery::Cutoff`] (with the sequence number to resume
//! after) and the stream ends. Nothing is ever skipped silently.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::{Stream, StreamExt};
use serde_json::value::RawValue;
use sluice_model::AccessLevel;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::error::{Error, ErrorKind, Result};
use crate::event::{Append, NewEvent, Published, StoredEvent, check_id};
use crate::routing::Pattern;
use crate::store::{EventStore, HistoryPage, HistoryQuery};
use crate::topic::{
    ALERT_TOPIC, CHANGE_TOPIC, DEFINITION_TOPIC, EVENT_TOPIC, Grants, JOB_TOPIC, Principal,
    Retention, SchemaVersion, Topic, TopicName, TopicSpec,
};

/// Limits and intervals of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Events accepted but not yet stored; beyond this publishing answers Busy.
    pub write_buffer: usize,
    /// At most this many events per store transaction.
    pub max_group: usize,
    /// At most this many events per publish call.
    pub max_batch: usize,
    /// Largest publish request body, in bytes (a larger one is refused while it is read).
    pub max_publish_bytes: usize,
    /// Largest payload, in bytes of compact JSON.
    pub max_payload_bytes: usize,
    /// Deliveries queued per subscription.
    pub subscriber_queue: usize,
    /// Behind by more than this many events: a lag notice.
    pub lag_notice: u64,
    /// Behind by more than this many events: cut off.
    pub max_lag: u64,
    /// A subscription whose queue stays full this long is cut off.
    pub stall_timeout: Duration,
    /// Events kept per topic for live subscribers that are momentarily behind.
    pub live_capacity: usize,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Cached topic definitions older than this are read again (other nodes may change them).
    pub topic_refresh: Duration,
    /// With a remote broker: how often an idle subscription looks at the store.
    pub idle_poll: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            write_buffer: 200_000,
            max_group: 20_000,
            max_batch: 10_000,
            max_publish_bytes: 8 << 20,
            max_payload_bytes: 1 << 20,
            subscriber_queue: 1024,
            lag_notice: 10_000,
            max_lag: 200_000,
            stall_timeout: Duration::from_secs(60),
            live_capacity: 16_384,
            retention_interval: Duration::from_secs(30),
            topic_refresh: Duration::from_secs(2),
            idle_poll: Duration::from_secs(1),
        }
    }
}

impl HubConfig {
    /// The defaults, with any of these environment variables applied: `SLUICE_EVENTS_WRITE_BUFFER`,
    /// `SLUICE_EVENTS_SUBSCRIBER_QUEUE`, `SLUICE_EVENTS_MAX_LAG`, `SLUICE_EVENTS_STALL_TIMEOUT_MS`,
    /// `SLUICE_EVENTS_RETENTION_INTERVAL_MS`, `SLUICE_EVENTS_IDLE_POLL_MS`,
    /// `SLUICE_EVENTS_MAX_PUBLISH_BYTES`. A value that is not
    /// a positive whole number is an error naming the variable.
    pub fn from_env() -> Result<Self> {
        fn var(name: &str) -> Result<Option<u64>> {
            match std::env::var(name) {
                Err(_) => Ok(None),
                Ok(text) => match text.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(Error::invalid(format!(
                        "{name}={text:?}: expected a positive whole number"
                    ))),
                },
            }
        }
        let mut c = HubConfig::default();
        if let Some(n) = var("SLUICE_EVENTS_WRITE_BUFFER")? {
            c.write_buffer = n as usize;
        }
        if let Some(n) = var("SLUICE_EVENTS_SUBSCRIBER_QUEUE")? {
            c.subscriber_queue = n as usize;
        }
        if let Some(n) = var("SLUICE_EVENTS_MAX_LAG")? {
            c.max_lag = n;
        }
        if let Some(n) = var("SLUICE_EVENTS_STALL_TIMEOUT_MS")? {
            c.stall_timeout = Duration::from_millis(n);
        }
        if let Some(n) = var("SLUICE_EVENTS_RETENTION_INTERVAL_MS")? {
            c.retention_interval = Duration::from_millis(n);
        }
        if let Some(n) = var("SLUICE_EVENTS_IDLE_POLL_MS")? {
            c.idle_poll = Duration::from_millis(n);
        }
        if let Some(n) = var("SLUICE_EVENTS_MAX_PUBLISH_BYTES")? {
            c.max_publish_bytes = n as usize;
        }
        Ok(c)
    }
}

/// Who is acting: a user with a level, or the hub itself.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The user name.
    pub user: String,
    /// Their level.
    pub level: AccessLevel,
    system: bool,
}

impl Actor {
    /// A user.
    pub fn user(user: impl Into<String>, level: AccessLevel) -> Self {
        Actor {
            user: user.into(),
            level,
            system: false,
        }
    }

    /// The hub itself (the only publisher on built-in topics).
    pub fn system() -> Self {
        Actor {
            user: "sluice".to_owned(),
            level: AccessLevel::SysAdmin,
            system: true,
        }
    }
}

/// What a subscription delivers.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// The next matching event.
    Event(Arc<StoredEvent>),
    /// The consumer is this many events behind the newest stored event.
    Lag {
        /// Events behind.
        behind: u64,
    },
    /// The stream ends; resume after `resume_after` (a new subscription from there misses
    /// nothing).
    Cutoff {
        /// Why.
        reason: String,
        /// The sequence number of the last event delivered (or the start point).
        resume_after: u64,
    },
}

/// Where an event sits in a publish call, for its error messages: `events[3].` in a batch,
/// nothing for a single event. Formatted only when an error needs it.
#[derive(Clone, Copy)]
struct At(Option<usize>);

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(i) => write!(f, "events[{i}]."),
            None => Ok(()),
        }
    }
}

struct CachedTopic {
    topic: Topic,
    validator: Option<Arc<jsonschema::Validator>>,
    loaded: Instant,
}

struct Live {
    sender: broadcast::Sender<Arc<StoredEvent>>,
    /// The newest sequence number this node knows is stored.
    head: AtomicU64,
}

struct WriteJob {
    events: Vec<Append>,
    reply: oneshot::Sender<Result<Vec<Published>>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct HubCounters {
    /// Events stored.
    pub stored: AtomicU64,
    /// Publishes refused because the buffer was full.
    pub busy: AtomicU64,
    /// Store transactions.
    pub commits: AtomicU64,
    /// Lag notices sent.
    pub lag_notices: AtomicU64,
    /// Subscriptions cut off.
    pub cutoffs: AtomicU64,
    /// Open subscriptions.
    pub subscriptions: AtomicU64,
    /// Events removed by retention.
    pub expired: AtomicU64,
}

struct Inner {
    store: Arc<dyn EventStore>,
    broker: Arc<dyn Broker>,
    config: HubConfig,
    topics: RwLock<HashMap<TopicName, Arc<CachedTopic>>>,
    live: Mutex<HashMap<TopicName, Arc<Live>>>,
    writer: mpsc::Sender<WriteJob>,
    /// Stored events on their way to the broker (off the write path).
    announcer: mpsc::Sender<Vec<Arc<StoredEvent>>>,
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
    counters: HubCounters,
}

/// The event hub. Cloning is cheap.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The built-in topics: what the hub publishes on its own.
fn builtin_specs() -> Vec<(TopicName, TopicSpec)> {
    let grants = Grants {
        read: vec![Principal::Level(AccessLevel::ReadOnly)],
        publish: Vec::new(),
        admin: Vec::new(),
    };
    let retention = Retention {
        max_age_seconds: Some(30 * 24 * 3600),
        max_count: Some(1_000_000),
    };
    let spec = |description: &str, schema: serde_json::Value| TopicSpec {
        description: description.to_owned(),
        schema: Some(schema),
        retention,
        grants: grants.clone(),
    };
    let name = |n: &str| TopicName::new(n).expect("built-in topic names are valid");
    vec![
        (
            name(JOB_TOPIC),
            spec(
                "Job state changes; routing <hub>.<channel>.<job_type>",
                serde_json::json!({
                    "type": "object",
                    "required": ["hub", "job", "state"],
                    "properties": {
                        "hub": {"type": "string"},
                        "channel": {"type": ["string", "null"]},
                        "job": {"type": "string"},
                        "job_type": {"type": "string"},
                        "state": {"type": "string"},
                    },
                }),
            ),
        ),
        (
            name(EVENT_TOPIC),
            spec(
                "HVR events (refresh, compare, definition changes) and their results; routing <hub>.<channel>.<event_type>",
                serde_json::json!({
                    "type": "object",
                    "required": ["hub", "ev_id", "type", "state"],
                    "properties": {
                        "hub": {"type": "string"},
                        "ev_id": {"type": "string"},
                        "type": {"type": "string"},
                        "state": {"type": "string"},
                    },
                }),
            ),
        ),
        (
            name(ALERT_TOPIC),
            spec(
                "Notifications of the hubs' alert rules; routing <hub>.<alert>",
                serde_json::json!({
                    "type": "object",
                    "required": ["hub", "alert", "reason", "tstamp"],
                    "properties": {
                        "hub": {"type": "string"},
                        "alert": {"type": "string"},
                        "reason": {"type": "string"},
                        "tstamp": {"type": "string"},
                    },
                }),
            ),
        ),
        (
            name(CHANGE_TOPIC),
            spec(
                "Captured row changes of channels whose Capture action has EventHub=1; routing <hub>.<channel>.<table>.<op>",
                serde_json::json!({
                    "type": "object",
                    "required": ["hub", "channel", "table", "op", "key", "position", "commit_time"],
                    "properties": {
                        "hub": {"type": "string"},
                        "channel": {"type": "string"},
                        "table": {"type": "string"},
                        "op": {"enum": ["insert", "update", "delete", "truncate"]},
                        "key": {"type": "object"},
                        "after": {"type": ["object", "null"]},
                        "before": {"type": ["object", "null"]},
                        "position": {"type": "string"},
                        "commit_time": {"type": "string"},
                    },
                }),
            ),
        ),
        (
            name(DEFINITION_TOPIC),
            spec(
                "Definition and hub state changes; routing <hub>.<what>",
                serde_json::json!({
                    "type": "object",
                    "required": ["hub", "change", "user"],
                    "properties": {
                        "hub": {"type": "string"},
                        "change": {"type": "string"},
                        "user": {"type": "string"},
                    },
                }),
            ),
        ),
    ]
}

fn compile(schema: &serde_json::Value) -> Result<jsonschema::Validator> {
    jsonschema::validator_for(schema)
        .map_err(|e| Error::invalid(format!("schema is not a valid JSON Schema: {e}")))
}

impl EventHub {
    /// Starts the hub over `store` and `broker`: makes sure the built-in topics exist, then
    /// runs the writer, retention and the broker's receiver until [`EventHub::close`].
    pub async fn start(
        store: Arc<dyn EventStore>,
        broker: Arc<dyn Broker>,
        config: HubConfig,
    ) -> Result<Self> {
        for (name, spec) in builtin_specs() {
            if store.topic(&name).await?.is_none() {
                match store.create_topic(&name, &spec, true, "sluice").await {
                    Ok(_) => {}
                    // Another node created it first.
                    Err(e) if e.kind() == ErrorKind::Conflict => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let (writer, rx) = mpsc::channel(4096);
        let (announcer, announce_rx) = mpsc::channel(1024);
        let inner = Arc::new(Inner {
            announcer,
            store,
            broker,
            permits: Arc::new(Semaphore::new(config.write_buffer)),
            config,
            topics: RwLock::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            writer,
            shutdown: CancellationToken::new(),
            counters: HubCounters::default(),
        });
        tokio::spawn(write_loop(inner.clone(), rx));
        tokio::spawn(announce_loop(inner.broker.clone(), announce_rx));
        tokio::spawn(retention_loop(Arc::downgrade(&inner)));
        let remote = inner.broker.remote_events().await?;
        tokio::spawn(remote_loop(Arc::downgrade(&inner), remote));
        Ok(EventHub { inner })
    }

    /// Stops accepting work: live subscriptions end, background tasks stop.
    pub fn close(&self) {
        self.inner.shutdown.cancel();
    }

    /// The broker's name.
    pub fn broker_name(&self) -> &'static str {
        self.inner.broker.name()
    }

    /// Where the broker connects, without any password (`None` for the in-process broker).
    pub fn broker_target(&self) -> Option<String> {
        self.inner.broker.target()
    }

    /// Counters for metrics.
    pub fn counters(&self) -> &HubCounters {
        &self.inner.counters
    }

    /// The limits in force.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    // ----- topics -----

    async fn cached(&self, name: &TopicName) -> Result<Arc<CachedTopic>> {
        if let Some(c) = self
            .inner
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            && c.loaded.elapsed() < self.inner.config.topic_refresh
        {
            return Ok(c.clone());
        }
        let topic = self
            .inner
            .store
            .topic(name)
            .await?
            .ok_or_else(|| Error::not_found(format!("topic {name} does not exist")))?;
        let validator = match &topic.schema {
            Some(schema) => Some(Arc::new(compile(schema)?)),
            None => None,
        };
        let cached = Arc::new(CachedTopic {
            topic,
            validator,
            loaded: Instant::now(),
        });
        self.inner
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), cached.clone());
        Ok(cached)
    }

    fn forget(&self, name: &TopicName) {
        self.inner
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Refuses unless the actor administers `topic` (SysAdmin, or its `admin` grant).
    fn require_admin(topic: &Topic, actor: &Actor) -> Result<()> {
        if actor.system || topic.grants.may_admin(&actor.user, actor.level) {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "user {} may not administer topic {}: that needs its admin grant (its creator and SysAdmins by default)",
                actor.user, topic.name
            )))
        }
    }

    fn require_manager(actor: &Actor) -> Result<()> {
        if actor.level.allows(AccessLevel::ReadWrite) {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "user {} has {} access; managing topics needs ReadWrite",
                actor.user, actor.level
            )))
        }
    }

    fn check_spec(spec: &TopicSpec) -> Result<()> {
        spec.retention.validate().map_err(Error::invalid)?;
        if let Some(schema) = &spec.schema {
            compile(schema)?;
        }
        if spec.description.len() > 4096 {
            return Err(Error::invalid("description is longer than 4096 bytes"));
        }
        Ok(())
    }

    /// Creates a topic.
    pub async fn create_topic(
        &self,
        name: &TopicName,
        spec: &TopicSpec,
        actor: &Actor,
    ) -> Result<Topic> {
        Self::require_manager(actor)?;
        if name.as_str().to_ascii_lowercase().starts_with("sluice.") {
            return Err(Error::invalid(format!(
                "topic {name}: names starting with \"sluice.\" are reserved for the hub's own topics"
            )));
        }
        Self::check_spec(spec)?;
        let mut spec = spec.clone();
        if spec.grants.admin.is_empty() && !actor.system {
            spec.grants.admin = vec![Principal::User(actor.user.clone())];
        }
        let topic = self
            .inner
            .store
            .create_topic(name, &spec, false, &actor.user)
            .await?;
        self.forget(name);
        Ok(topic)
    }

    /// Updates a topic (a changed schema becomes a new version). Built-in topics keep their
    /// schema; only a SysAdmin may change their retention and grants.
    pub async fn update_topic(
        &self,
        name: &TopicName,
        spec: &TopicSpec,
        actor: &Actor,
    ) -> Result<Topic> {
        Self::check_spec(spec)?;
        let current = self.topic(name, actor).await?;
        Self::require_admin(&current, actor)?;
        let mut spec = spec.clone();
        if spec.grants.admin.is_empty() {
            // A spec that names no administrators keeps the current ones.
            spec.grants.admin = current.grants.admin.clone();
        }
        let spec = &spec;
        if current.builtin {
            if actor.level != AccessLevel::SysAdmin {
                return Err(Error::forbidden(format!(
                    "topic {name} is built in: only a SysAdmin may change its retention and grants"
                )));
            }
            if spec.schema != current.schema {
                return Err(Error::invalid(format!(
                    "topic {name} is built in: its schema is fixed (leave \"schema\" as it is)"
                )));
            }
        }
        let topic = self
            .inner
            .store
            .update_topic(name, spec, &actor.user)
            .await?;
        self.forget(name);
        Ok(topic)
    }

    /// One topic, if the actor may read it.
    pub async fn topic(&self, name: &TopicName, actor: &Actor) -> Result<Topic> {
        let topic = self
            .inner
            .store
            .topic(name)
            .await?
            .ok_or_else(|| Error::not_found(format!("topic {name} does not exist")))?;
        Self::check_read(&topic, actor)?;
        Ok(topic)
    }

    /// The topics the actor may read.
    pub async fn topics(&self, actor: &Actor) -> Result<Vec<Topic>> {
        Ok(self
            .inner
            .store
            .topics()
            .await?
            .into_iter()
            .filter(|t| Self::check_read(t, actor).is_ok())
            .collect())
    }

    /// Every schema version of a topic.
    pub async fn schema_versions(
        &self,
        name: &TopicName,
        actor: &Actor,
    ) -> Result<Vec<SchemaVersion>> {
        self.topic(name, actor).await?;
        self.inner.store.schema_versions(name).await
    }

    /// Deletes a topic; refused while it holds events unless `force`.
    pub async fn delete_topic(&self, name: &TopicName, force: bool, actor: &Actor) -> Result<()> {
        let topic = self.topic(name, actor).await?;
        Self::require_admin(&topic, actor)?;
        if topic.builtin {
            return Err(Error::invalid(format!(
                "topic {name} is built in and cannot be deleted"
            )));
        }
        self.inner.store.delete_topic(name, force).await?;
        self.forget(name);
        Ok(())
    }

    fn check_read(topic: &Topic, actor: &Actor) -> Result<()> {
        if actor.system || topic.grants.may_read(&actor.user, actor.level) {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "user {} may not read topic {}",
                actor.user, topic.name
            )))
        }
    }

    /// Refuses unless the actor may publish on `name` (checked before a publish body's payloads
    /// are parsed). A missing topic is an invalid request, as in [`EventHub::publish`].
    pub async fn authorize_publish(&self, name: &TopicName, actor: &Actor) -> Result<()> {
        let cached = match self.cached(name).await {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::invalid(format!("topic {name} does not exist")));
            }
            Err(e) => return Err(e),
        };
        Self::check_publish(&cached.topic, actor)
    }

    fn check_publish(topic: &Topic, actor: &Actor) -> Result<()> {
        if topic.builtin && !actor.system {
            return Err(Error::forbidden(format!(
                "topic {} is built in: only the hub publishes on it",
                topic.name
            )));
        }
        if !actor.system && !topic.grants.may_publish(&actor.user, actor.level) {
            return Err(Error::forbidden(format!(
                "user {} may not publish on topic {}",
                actor.user, topic.name
            )));
        }
        Ok(())
    }

    /// Refuses unless the actor may read `name` (for streams and queries).
    pub async fn authorize_read(&self, name: &TopicName, actor: &Actor) -> Result<Topic> {
        let cached = self.cached(name).await?;
        Self::check_read(&cached.topic, actor)?;
        Ok(cached.topic.clone())
    }

    // ----- publish -----

    /// Validates and stores events; answers when they are durable. All or nothing: one invalid
    /// event refuses the whole call.
    pub async fn publish(&self, events: Vec<NewEvent>, actor: &Actor) -> Result<Vec<Published>> {
        let config = &self.inner.config;
        if events.is_empty() {
            return Err(Error::invalid("no events to publish"));
        }
        if events.len() > config.max_batch {
            return Err(Error::invalid(format!(
                "{} events in one call; the limit is {}",
                events.len(),
                config.max_batch
            )));
        }
        let single = events.len() == 1;
        let mut appends = Vec::with_capacity(events.len());
        let mut errors = Vec::new();
        // A batch's events mostly share a topic: look it up once per run of one topic.
        let mut topic: Option<Arc<CachedTopic>> = None;
        for (i, event) in events.into_iter().enumerate() {
            let at = At((!single).then_some(i));
            let cached = match &topic {
                Some(c) if c.topic.name == event.topic => Ok(c.clone()),
                _ => self.cached(&event.topic).await,
            };
            let cached = match cached {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    errors.push(format!("{at}topic: topic {} does not exist", event.topic));
                    if errors.len() >= 20 {
                        break;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            topic = Some(cached.clone());
            match self.prepare(event, &cached, actor, at) {
                Ok(a) => appends.push(a),
                Err(e) if e.kind() == ErrorKind::Invalid => {
                    errors.push(e.to_string());
                    if errors.len() >= 20 {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if !errors.is_empty() {
            return Err(Error::invalid(errors.join("; ")));
        }
        let n = u32::try_from(appends.len()).expect("max_batch fits u32");
        let permit = if actor.system {
            tokio::time::timeout(
                Duration::from_secs(30),
                self.inner.permits.clone().acquire_many_owned(n),
            )
            .await
            .map_err(|_| {
                Error::busy(
                    "the event hub's write buffer stayed full for 30 s",
                    Duration::from_secs(1),
                )
            })?
            .map_err(|_| Error::new(ErrorKind::Closed, "the event hub is shut down"))?
        } else {
            match self.inner.permits.clone().try_acquire_many_owned(n) {
                Ok(p) => p,
                Err(tokio::sync::TryAcquireError::NoPermits) => {
                    self.inner.counters.busy.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::busy(
                        format!(
                            "the event hub's write buffer is full ({} events waiting to be stored); nothing was stored, retry later",
                            config.write_buffer - self.inner.permits.available_permits()
                        ),
                        Duration::from_secs(1),
                    ));
                }
                Err(tokio::sync::TryAcquireError::Closed) => {
                    return Err(Error::new(ErrorKind::Closed, "the event hub is shut down"));
                }
            }
        };
        let (reply, answer) = oneshot::channel();
        self.inner
            .writer
            .send(WriteJob {
                events: appends,
                reply,
                _permit: permit,
            })
            .await
            .map_err(|_| Error::new(ErrorKind::Closed, "the event hub is shut down"))?;
        answer
            .await
            .map_err(|_| Error::new(ErrorKind::Closed, "the event hub is shut down"))?
    }

    fn prepare(
        &self,
        event: NewEvent,
        cached: &CachedTopic,
        actor: &Actor,
        at: At,
    ) -> Result<Append> {
        let topic = &cached.topic;
        Self::check_publish(topic, actor)?;
        if let Some(id) = &event.id {
            check_id(id).map_err(|e| Error::invalid(format!("{at}{e}")))?;
        }
        if let Some(validator) = &cached.validator {
            let problems: Vec<String> = validator
                .iter_errors(&event.payload)
                .take(5)
                .map(|e| {
                    let path = e.instance_path().to_string();
                    format!("{at}payload{path}: {e}")
                })
                .collect();
            if !problems.is_empty() {
                return Err(Error::invalid(problems.join("; ")));
            }
        }
        let text = serde_json::to_string(&event.payload).expect("JSON values serialize");
        if text.len() > self.inner.config.max_payload_bytes {
            return Err(Error::invalid(format!(
                "{at}payload is {} bytes; the limit is {}",
                text.len(),
                self.inner.config.max_payload_bytes
            )));
        }
        let payload = RawValue::from_string(text).expect("serde_json output is valid JSON");
        let (id, client_id) = match event.id {
            Some(id) => (id, true),
            None => (uuid::Uuid::new_v4().to_string(), false),
        };
        Ok(Append {
            topic: event.topic,
            routing_key: event.routing_key,
            payload,
            id,
            client_id,
            posted_by: (!actor.system).then(|| actor.user.clone()),
        })
    }

    // ----- read -----

    fn live(&self, topic: &TopicName) -> Arc<Live> {
        live_of(&self.inner, topic)
    }

    /// Follows `topic` from after `after` (or from now), delivering events whose routing key
    /// matches `pattern`.
    pub async fn subscribe(
        &self,
        topic: &TopicName,
        pattern: Pattern,
        after: Option<u64>,
        actor: &Actor,
    ) -> Result<Subscription> {
        self.authorize_read(topic, actor).await?;
        let live = self.live(topic);
        // Join the live channel first, then learn where the store is: anything stored after
        // this point arrives live, anything before is read from the store.
        let rx = live.sender.subscribe();
        let head = match self.inner.store.topic(topic).await? {
            Some(t) => t.last_seq,
            None => return Err(Error::not_found(format!("topic {topic} does not exist"))),
        };
        live.head.fetch_max(head, Ordering::AcqRel);
        let start = after.unwrap_or(head);
        let (tx, queue) = mpsc::channel(self.inner.config.subscriber_queue.max(1));
        let cut = Arc::new(Mutex::new(None));
        self.inner
            .counters
            .subscriptions
            .fetch_add(1, Ordering::Relaxed);
        let pump = Pump {
            inner: self.inner.clone(),
            topic: topic.clone(),
            pattern,
            last: start,
            live,
            tx,
            cut: cut.clone(),
            noticed: false,
        };
        tokio::spawn(pump.run(rx));
        Ok(Subscription {
            queue,
            cut,
            last_delivered: start,
            done: false,
            inner: self.inner.clone(),
        })
    }

    /// A page of history.
    pub async fn history(&self, query: &HistoryQuery, actor: &Actor) -> Result<HistoryPage> {
        self.authorize_read(&query.topic, actor).await?;
        if let (Some(s), Some(e)) = (query.start, query.end)
            && s >= e
        {
            return Err(Error::invalid(format!(
                "start ({}) must be before end ({})",
                s.to_rfc3339(),
                e.to_rfc3339()
            )));
        }
        self.inner.store.query(query).await
    }

    /// The newest event of each routing key matching `pattern`.
    pub async fn last_per_key(
        &self,
        topic: &TopicName,
        pattern: &Pattern,
        actor: &Actor,
    ) -> Result<Vec<StoredEvent>> {
        self.authorize_read(topic, actor).await?;
        self.inner.store.last_per_key(topic, pattern).await
    }

    /// Runs retention now; the number of events removed.
    pub async fn enforce_retention(&self) -> Result<u64> {
        let n = self.inner.store.enforce_retention(Utc::now()).await?;
        self.inner.counters.expired.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// How many events a topic holds.
    pub async fn event_count(&self, topic: &TopicName) -> Result<u64> {
        self.inner.store.event_count(topic).await
    }
}

fn live_of(inner: &Inner, topic: &TopicName) -> Arc<Live> {
    lock(&inner.live)
        .entry(topic.clone())
        .or_insert_with(|| {
            Arc::new(Live {
                sender: broadcast::channel(inner.config.live_capacity.max(16)).0,
                head: AtomicU64::new(0),
            })
        })
        .clone()
}

/// Hands stored events to this node's subscribers.
fn fan_out(inner: &Inner, events: &[Arc<StoredEvent>]) {
    let mut current: Option<(TopicName, Arc<Live>)> = None;
    for event in events {
        let live = match &current {
            Some((t, l)) if *t == event.topic => l.clone(),
            _ => {
                let l = live_of(inner, &event.topic);
                current = Some((event.topic.clone(), l.clone()));
                l
            }
        };
        live.head.fetch_max(event.seq, Ordering::AcqRel);
        // No receivers is fine: nobody is listening.
        let _ = live.sender.send(event.clone());
    }
}

async fn write_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<WriteJob>) {
    let max_group = inner.config.max_group.max(1);
    loop {
        let first = tokio::select! {
            job = rx.recv() => match job { Some(j) => j, None => return },
            _ = inner.shutdown.cancelled() => return,
        };
        let mut count = first.events.len();
        let mut jobs = vec![first];
        while count < max_group {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let result = store_group(&inner, &mut jobs).await;
        match result {
            Ok(()) => {}
            Err(_) if jobs.len() > 1 => {
                // One bad job (say, its topic was deleted meanwhile) must not fail the others:
                // store each on its own.
                for job in jobs.drain(..) {
                    let mut one = vec![job];
                    if let Err(e) = store_group(&inner, &mut one).await
                        && let Some(job) = one.pop()
                    {
                        let _ = job.reply.send(Err(e));
                    }
                }
            }
            Err(e) => {
                if let Some(job) = jobs.pop() {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
    }
}

/// Stores every job's events in one transaction and answers each job; on error, answers none
/// and leaves the jobs in place.
async fn store_group(inner: &Arc<Inner>, jobs: &mut Vec<WriteJob>) -> Result<()> {
    let all: Vec<Append> = jobs.iter().flat_map(|j| j.events.iter().cloned()).collect();
    let outcomes = inner.store.append(all, Utc::now()).await?;
    inner.counters.commits.fetch_add(1, Ordering::Relaxed);
    let mut fresh = Vec::new();
    let mut outcomes = outcomes.into_iter();
    let mut answers = Vec::with_capacity(jobs.len());
    for job in jobs.drain(..) {
        let mut published = Vec::with_capacity(job.events.len());
        for _ in 0..job.events.len() {
            let Some(o) = outcomes.next() else { break };
            published.push(Published {
                topic: o.event.topic.clone(),
                seq: o.event.seq,
                id: o.event.id.clone(),
                timestamp: o.event.timestamp,
                duplicate: o.duplicate,
            });
            if !o.duplicate {
                fresh.push(Arc::new(o.event));
            }
        }
        answers.push((job, published));
    }
    inner
        .counters
        .stored
        .fetch_add(fresh.len() as u64, Ordering::Relaxed);
    fan_out(inner, &fresh);
    for (job, published) in answers {
        let _ = job.reply.send(Ok(published));
    }
    if inner.broker.is_remote() && !fresh.is_empty() && inner.announcer.try_send(fresh).is_err() {
        tracing::warn!(
            broker = inner.broker.name(),
            "the broker is not keeping up; other nodes' subscribers will read these events from the store"
        );
    }
    Ok(())
}

/// Hands stored events to the broker, in order, without holding up the writer.
async fn announce_loop(broker: Arc<dyn Broker>, mut rx: mpsc::Receiver<Vec<Arc<StoredEvent>>>) {
    let mut batches = Vec::new();
    while rx.recv_many(&mut batches, 64).await > 0 {
        let events: Vec<Arc<StoredEvent>> = batches.drain(..).flatten().collect();
        if let Err(e) = broker.announce(&events).await {
            tracing::warn!(error = %e, broker = broker.name(), "announcing events to other nodes failed; their subscribers will read them from the store");
        }
    }
}

async fn retention_loop(inner: std::sync::Weak<Inner>) {
    loop {
        let (interval, shutdown) = match inner.upgrade() {
            Some(i) => (i.config.retention_interval, i.shutdown.clone()),
            None => return,
        };
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        let Some(i) = inner.upgrade() else { return };
        match i.store.enforce_retention(Utc::now()).await {
            Ok(n) => {
                i.counters.expired.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "event retention failed; will retry"),
        }
    }
}

async fn remote_loop(inner: std::sync::Weak<Inner>, mut remote: crate::broker::RemoteEvents) {
    let shutdown = match inner.upgrade() {
        Some(i) => i.shutdown.clone(),
        None => return,
    };
    loop {
        let batch = tokio::select! {
            b = remote.next() => match b { Some(b) => b, None => return },
            _ = shutdown.cancelled() => return,
        };
        let Some(i) = inner.upgrade() else { return };
        let events: Vec<Arc<StoredEvent>> = batch.into_iter().map(Arc::new).collect();
        fan_out(&i, &events);
    }
}

struct Pump {
    inner: Arc<Inner>,
    topic: TopicName,
    pattern: Pattern,
    /// Every event up to this sequence number has been looked at.
    last: u64,
    live: Arc<Live>,
    tx: mpsc::Sender<Delivery>,
    cut: Arc<Mutex<Option<String>>>,
    noticed: bool,
}

/// Why a pump stopped.
enum Stop {
    /// The subscriber went away.
    Gone,
    /// Cut off, with the reason.
    Cut(String),
}

const READ_CHUNK: usize = 1000;

impl Pump {
    async fn run(mut self, mut rx: broadcast::Receiver<Arc<StoredEvent>>) {
        let stop = self.follow(&mut rx).await;
        if let Stop::Cut(reason) = stop {
            self.inner.counters.cutoffs.fetch_add(1, Ordering::Relaxed);
            *lock(&self.cut) = Some(reason);
        }
        // Dropping `tx` ends the subscription's queue.
    }

    async fn follow(&mut self, rx: &mut broadcast::Receiver<Arc<StoredEvent>>) -> Stop {
        if let Err(stop) = self.catch_up(None).await {
            return stop;
        }
        let remote = self.inner.broker.is_remote();
        let idle = self.inner.config.idle_poll;
        loop {
            let next = tokio::select! {
                r = rx.recv() => r,
                _ = self.tx.closed() => return Stop::Gone,
                _ = self.inner.shutdown.cancelled() => return Stop::Cut("the hub is shutting down".to_owned()),
                _ = tokio::time::sleep(idle), if remote => {
                    if let Err(stop) = self.catch_up(None).await { return stop; }
                    continue;
                }
            };
            let step = match next {
                Ok(event) => {
                    if event.seq <= self.last {
                        continue;
                    }
                    if event.seq > self.last + 1 {
                        // A gap: events this node did not see live (another node's, or ones
                        // the live channel dropped). The store has them.
                        if let Err(stop) = self.catch_up(Some(event.seq - 1)).await {
                            return stop;
                        }
                    }
                    if event.seq <= self.last {
                        continue;
                    }
                    self.deliver(event).await
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up(None).await,
                Err(broadcast::error::RecvError::Closed) => {
                    return Stop::Cut("the hub is shutting down".to_owned());
                }
            };
            if let Err(stop) = step {
                return stop;
            }
        }
    }

    /// Reads the store after `self.last` up to `until` (or to its end).
    async fn catch_up(&mut self, until: Option<u64>) -> Result<(), Stop> {
        loop {
            let batch = match self
                .inner
                .store
                .read_after(&self.topic, self.last, READ_CHUNK)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    return Err(Stop::Cut(format!(
                        "reading the topic's stored events failed: {e}"
                    )));
                }
            };
            let full = batch.len() == READ_CHUNK;
            for event in batch {
                if until.is_some_and(|u| event.seq > u) {
                    return Ok(());
                }
                self.live.head.fetch_max(event.seq, Ordering::AcqRel);
                self.deliver(Arc::new(event)).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn deliver(&mut self, event: Arc<StoredEvent>) -> Result<(), Stop> {
        self.last = event.seq;
        let behind = self
            .live
            .head
            .load(Ordering::Acquire)
            .saturating_sub(self.last);
        let config = &self.inner.config;
        if behind > config.max_lag {
            return Err(Stop::Cut(format!(
                "the subscriber is {behind} events behind; the limit is {}",
                config.max_lag
            )));
        }
        if behind > config.lag_notice && !self.noticed {
            self.noticed = true;
            self.inner
                .counters
                .lag_notices
                .fetch_add(1, Ordering::Relaxed);
            self.send(Delivery::Lag { behind }).await?;
        } else if behind <= config.lag_notice / 2 {
            self.noticed = false;
        }
        if self.pattern.matches(&event.routing_key) {
            self.send(Delivery::Event(event)).await?;
        }
        Ok(())
    }

    async fn send(&self, delivery: Delivery) -> Result<(), Stop> {
        match tokio::time::timeout(self.inner.config.stall_timeout, self.tx.reserve()).await {
            Ok(Ok(permit)) => {
                permit.send(delivery);
                Ok(())
            }
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => Err(Stop::Cut(format!(
                "the subscriber took no event for {} s",
                self.inner.config.stall_timeout.as_secs_f64()
            ))),
        }
    }
}

/// A live subscription: a stream of [`Delivery`] that ends after a [`Delivery::Cutoff`].
pub struct Subscription {
    queue: mpsc::Receiver<Delivery>,
    cut: Arc<Mutex<Option<String>>>,
    last_delivered: u64,
    done: bool,
    inner: Arc<Inner>,
}

impl Subscription {
    /// The sequence number of the last event delivered (or the start point).
    pub fn last_delivered(&self) -> u64 {
        self.last_delivered
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.inner
            .counters
            .subscriptions
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Stream for Subscription {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        if self.done {
            return Poll::Ready(None);
        }
        // A cut-off wins over what is still queued: the notice names the last event actually
        // delivered, so resuming from it misses nothing.
        let cut = lock(&self.cut).take();
        if let Some(reason) = cut {
            self.done = true;
            return Poll::Ready(Some(Delivery::Cutoff {
                reason,
                resume_after: self.last_delivered,
            }));
        }
        match self.queue.poll_recv(cx) {
            Poll::Ready(Some(d)) => {
                if let Delivery::Event(e) = &d {
                    self.last_delivered = e.seq;
                }
                Poll::Ready(Some(d))
            }
            Poll::Ready(None) => {
                self.done = true;
                let reason = lock(&self.cut)
                    .take()
                    .unwrap_or_else(|| "the subscription ended".to_owned());
                Poll::Ready(Some(Delivery::Cutoff {
                    reason,
                    resume_after: self.last_delivered,
                }))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
