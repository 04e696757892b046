//! The NATS JetStream broker: hub nodes announce the events they store on one JetStream stream
//! and read each other's announcements through an ordered consumer.
//!
//! * Subjects are `<prefix>.<topic token>`; the token is the topic name in lowercase hex, since
//!   topic names hold `.`, the NATS token separator (hex keeps distinct names distinct).
//! * Each message is one [`StoredEvent`] as compact JSON with a [`NODE_HEADER`] naming the node
//!   that stored it, so a node skips its own announcements.
//! * The stream carries hints only (the repository is the durable store): limits retention,
//!   memory storage, a short maximum age and a byte cap, oldest discarded first.
//!
//! When NATS goes away, async-nats reconnects on its own, without end. Announcements made in
//! the meantime fail once their acks time out (the hub logs that; the other nodes' subscribers
//! find those events in the store when idle). The receiver's ordered consumer notices the break
//! through missed heartbeats and recreates itself after the last message it delivered; should
//! its stream of messages end, the receiver makes a new consumer after a pause. The stream of
//! remote events therefore lasts as long as the receiver is polled.

use std::fmt;
use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, stream};
use async_nats::{Event, Subject};
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::{Broker, RemoteEvents};
use crate::error::{Error, Result};
use crate::event::StoredEvent;
use crate::topic::TopicName;

/// Where NATS listens when nothing else is said.
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
/// The stream's name when nothing else is said.
pub const DEFAULT_STREAM: &str = "SLUICE_EVENTS";
/// The subject prefix when nothing else is said.
pub const DEFAULT_SUBJECT_PREFIX: &str = "sluice.events";
/// The header naming the node that stored an announced event.
pub const NODE_HEADER: &str = "Sluice-Node";

/// Publishes awaiting their acks at most, per announce call. Below async-nats' default limit of
/// 5,000 in-flight acks, so a call never waits on permits it holds itself.
const ACK_WINDOW: usize = 2048;
/// Most events in one batch of remote events.
const REMOTE_BATCH: usize = 1024;
/// Pauses of the receiver after an error, doubling from the first to the second.
const RETRY_PAUSE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// How the stream keeps its messages (used only when this node creates the stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NatsStorage {
    /// In the server's memory (the default: the stream carries hints, not the events of record).
    #[default]
    Memory,
    /// In files.
    File,
}

/// Where announcements travel. Every node of one hub uses the same stream and prefix.
///
/// The stream settings (`storage`, `max_age`, `max_bytes`) apply when this node creates the
/// stream; an existing stream is used as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsOptions {
    /// The JetStream stream's name: letters, digits, `_` and `-` (default `SLUICE_EVENTS`).
    pub stream: String,
    /// The subject prefix: dot-separated tokens of letters, digits, `_` and `-` (default
    /// `sluice.events`). Events go to `<prefix>.<topic token>`; the stream captures
    /// `<prefix>.>`, so no other stream on the server may capture those subjects.
    pub subject_prefix: String,
    /// How the stream keeps messages (default memory).
    pub storage: NatsStorage,
    /// How long the stream keeps a message (default 10 minutes).
    pub max_age: Duration,
    /// The most bytes the stream holds before dropping its oldest messages (default 64 MiB).
    pub max_bytes: u64,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            stream: DEFAULT_STREAM.to_owned(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
            storage: NatsStorage::Memory,
            max_age: Duration::from_secs(600),
            max_bytes: 64 << 20,
        }
    }
}

impl NatsOptions {
    /// Options with a stream and a subject prefix of their own, for tests and benchmarks that
    /// share a NATS server: `label` (letters, digits, `_`, `-`) plus a random suffix, e.g. stream
    /// `SLUICE_EVENTS_BENCH_1f0c9a2b7d4e` over `sluice_bench_1f0c9a2b7d4e.events.>`. Delete
    /// the stream afterwards with [`NatsBroker::delete_stream`].
    pub fn isolated(label: &str) -> Self {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let suffix = &suffix[..12];
        NatsOptions {
            stream: format!("{DEFAULT_STREAM}_{}_{suffix}", label.to_ascii_uppercase()),
            subject_prefix: format!("sluice_{}_{suffix}.events", label.to_ascii_lowercase()),
            ..NatsOptions::default()
        }
    }

    /// The subjects the stream captures.
    fn filter(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }

    fn check(&self) -> Result<()> {
        if !is_token(&self.stream) {
            return Err(Error::invalid(format!(
                "NATS stream name {:?} must be letters, digits, '_' and '-'",
                self.stream
            )));
        }
        if !self.subject_prefix.split('.').all(is_token) {
            return Err(Error::invalid(format!(
                "NATS subject prefix {:?} must be dot-separated words of letters, digits, '_' and '-'",
                self.subject_prefix
            )));
        }
        Ok(())
    }
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// The subject token of a topic: its name in lowercase hex.
fn topic_token(topic: &TopicName) -> String {
    use std::fmt::Write;
    let mut token = String::with_capacity(topic.as_str().len() * 2);
    for b in topic.as_str().bytes() {
        write!(token, "{b:02x}").expect("writing to a String cannot fail");
    }
    token
}

/// Announces stored events on a NATS JetStream stream and reads the other nodes' announcements.
pub struct NatsBroker {
    jetstream: jetstream::Context,
    options: NatsOptions,
    node_id: String,
    headers: HeaderMap,
    /// One announce call at a time: keeps calls in order and bounds the acks in flight.
    publishing: tokio::sync::Mutex<()>,
    /// Receivers opened so far (each names its consumers after its number).
    receivers: AtomicU64,
}

impl fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBroker")
            .field("node_id", &self.node_id)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl NatsBroker {
    /// Connects to NATS at `url` (e.g. [`DEFAULT_URL`]) and makes sure the stream exists,
    /// creating it over `<prefix>.>` when missing. Fails when NATS is unreachable, when
    /// JetStream is off, or when a stream of that name exists without capturing `<prefix>.>`.
    /// The broker gets a random node id.
    pub async fn connect(url: &str, options: NatsOptions) -> Result<NatsBroker> {
        options.check()?;
        let node_id = uuid::Uuid::new_v4().simple().to_string();
        let client = async_nats::ConnectOptions::new()
            .name(format!("sluice-hub-{node_id}"))
            .event_callback(|event| async move { log_connection_event(event) })
            .connect(url)
            .await
            .map_err(|e| Error::storage("connecting to NATS", e))?;
        let jetstream = jetstream::new(client);
        ensure_stream(&jetstream, &options).await?;
        let mut headers = HeaderMap::new();
        headers.insert(NODE_HEADER, node_id.as_str());
        Ok(NatsBroker {
            jetstream,
            options,
            node_id,
            headers,
            publishing: tokio::sync::Mutex::new(()),
            receivers: AtomicU64::new(0),
        })
    }

    /// This node's id, sent in the [`NODE_HEADER`] of its announcements.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The options in force.
    pub fn options(&self) -> &NatsOptions {
        &self.options
    }

    /// The subject of a topic's announcements.
    pub fn subject(&self, topic: &TopicName) -> String {
        format!("{}.{}", self.options.subject_prefix, topic_token(topic))
    }

    /// Deletes the stream: for tests and benchmarks cleaning up after [`NatsOptions::isolated`].
    /// Receivers still reading it hear nothing more (subscribers fall back on the store).
    pub async fn delete_stream(&self) -> Result<()> {
        self.jetstream
            .delete_stream(&self.options.stream)
            .await
            .map_err(|e| Error::storage("deleting the NATS stream", e))?;
        Ok(())
    }
}

fn log_connection_event(event: Event) {
    match event {
        Event::Connected => tracing::info!("connected to NATS"),
        Event::Disconnected => {
            tracing::warn!("disconnected from NATS; reconnecting")
        }
        other => tracing::warn!(event = %other, "NATS connection event"),
    }
}

async fn ensure_stream(jetstream: &jetstream::Context, options: &NatsOptions) -> Result<()> {
    let config = stream::Config {
        name: options.stream.clone(),
        description: Some("sluice event hub: announcements of stored events".to_owned()),
        subjects: vec![options.filter()],
        retention: RetentionPolicy::Limits,
        storage: match options.storage {
            NatsStorage::Memory => StorageType::Memory,
            NatsStorage::File => StorageType::File,
        },
        max_age: options.max_age,
        max_bytes: i64::try_from(options.max_bytes).unwrap_or(i64::MAX),
        discard: DiscardPolicy::Old,
        ..stream::Config::default()
    };
    let info = match jetstream.get_or_create_stream(config).await {
        Ok(stream) => stream.cached_info().clone(),
        // Another node may have created it in the meantime.
        Err(create) => match jetstream.get_stream(&options.stream).await {
            Ok(stream) => stream.cached_info().clone(),
            Err(_) => return Err(Error::storage("creating the NATS stream", create)),
        },
    };
    if !info.config.subjects.contains(&options.filter()) {
        return Err(Error::conflict(format!(
            "NATS stream {} exists but does not capture the subjects {}",
            options.stream,
            options.filter()
        )));
    }
    Ok(())
}

#[async_trait]
impl Broker for NatsBroker {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn is_remote(&self) -> bool {
        true
    }

    /// Publishes each event to its topic's subject, in order, without waiting for one ack
    /// before sending the next (a bounded window of acks in flight), then awaits the rest.
    /// An event too large for a NATS message is left out (other nodes read it from the store).
    async fn announce(&self, events: &[Arc<StoredEvent>]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let _turn = self.publishing.lock().await;
        let mut acks = FuturesUnordered::new();
        let mut failure = None;
        let mut subject: Option<(&TopicName, Subject)> = None;
        for event in events {
            if acks.len() >= ACK_WINDOW
                && let Some(Err(e)) = acks.next().await
            {
                failure.get_or_insert(e);
            }
            let to = match &subject {
                Some((topic, to)) if *topic == &event.topic => to.clone(),
                _ => {
                    let to = Subject::from(self.subject(&event.topic));
                    subject = Some((&event.topic, to.clone()));
                    to
                }
            };
            let payload = event.to_json();
            match self
                .jetstream
                .publish_with_headers(to, self.headers.clone(), payload.into())
                .await
            {
                Ok(ack) => acks.push(ack.into_future()),
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    tracing::warn!(topic = %event.topic, seq = event.seq, "event too large for a NATS message; other nodes will read it from the store");
                }
                Err(e) => return Err(Error::storage("publishing events to NATS", e)),
            }
        }
        while let Some(ack) = acks.next().await {
            if let Err(e) = ack {
                failure.get_or_insert(e);
            }
        }
        match failure {
            Some(e) => Err(Error::storage("awaiting NATS acks of published events", e)),
            None => Ok(()),
        }
    }

    /// Reads the stream from its current end through an ordered pull consumer, in batches of
    /// whatever has arrived, skipping this node's own announcements and messages that are not
    /// stored events.
    async fn remote_events(&self) -> Result<RemoteEvents> {
        let number = self.receivers.fetch_add(1, Ordering::Relaxed);
        let mut receiver = Receiver {
            jetstream: self.jetstream.clone(),
            stream: self.options.stream.clone(),
            filter: self.options.filter(),
            node_id: self.node_id.clone(),
            consumer_name: format!("sluice_{}_{number}", self.node_id),
            opened: 0,
            floor: None,
            last: None,
            messages: None,
        };
        receiver.open().await?;
        let events = futures::stream::unfold(receiver, |mut receiver| async move {
            let event = receiver.next_event().await;
            Some((event, receiver))
        });
        Ok(events.ready_chunks(REMOTE_BATCH).boxed())
    }
}

/// One node's reading of the stream.
struct Receiver {
    jetstream: jetstream::Context,
    stream: String,
    filter: String,
    node_id: String,
    consumer_name: String,
    /// Consumers made so far.
    opened: u64,
    /// The first stream sequence of interest: messages stored before the receiver started are
    /// skipped (an ordered consumer that recreates itself before its first message starts
    /// over from the beginning of the stream).
    floor: Option<u64>,
    /// The stream sequence of the last message read.
    last: Option<u64>,
    messages: Option<pull::Ordered>,
}

impl Receiver {
    /// Makes a consumer starting after the last message read, or at the end of the stream.
    async fn open(&mut self) -> Result<()> {
        self.messages = None;
        let stream = self
            .jetstream
            .get_stream(&self.stream)
            .await
            .map_err(|e| Error::storage("looking up the NATS stream", e))?;
        let end = stream.cached_info().state.last_sequence + 1;
        // Never past the end: the stream may have been made anew.
        let start = self.last.map_or(end, |last| last + 1).min(end);
        self.floor = Some(self.floor.map_or(start, |floor| floor.min(start)));
        self.opened += 1;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                name: Some(format!("{}_{}", self.consumer_name, self.opened)),
                description: Some("sluice event hub: a node's reader of announcements".to_owned()),
                filter_subject: self.filter.clone(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..pull::OrderedConfig::default()
            })
            .await
            .map_err(|e| Error::storage("creating a NATS consumer", e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| Error::storage("reading from a NATS consumer", e))?;
        self.messages = Some(messages);
        Ok(())
    }

    /// The next event another node announced; waits (and recovers from errors) until there is
    /// one.
    async fn next_event(&mut self) -> StoredEvent {
        let mut pause = RETRY_PAUSE.0;
        loop {
            let Some(messages) = self.messages.as_mut() else {
                if let Err(e) = self.open().await {
                    tracing::warn!(error = %e, stream = %self.stream, "cannot read announcements from NATS; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_PAUSE.1);
                }
                continue;
            };
            match messages.next().await {
                Some(Ok(message)) => {
                    pause = RETRY_PAUSE.0;
                    if let Some(event) = self.decode(&message) {
                        return event;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, stream = %self.stream, "reading announcements from NATS failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_PAUSE.1);
                }
                None => {
                    tracing::warn!(stream = %self.stream, "the NATS consumer ended; making a new one");
                    self.messages = None;
                }
            }
        }
    }

    /// The event in `message`, unless it is this node's own, older than the receiver, or not
    /// an event.
    fn decode(&mut self, message: &jetstream::Message) -> Option<StoredEvent> {
        if let Ok(info) = message.info() {
            if self.floor.is_some_and(|floor| info.stream_sequence < floor) {
                return None;
            }
            self.last = Some(info.stream_sequence);
        }
        let node = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(NODE_HEADER));
        if node.is_some_and(|node| node.as_str() == self.node_id) {
            return None;
        }
        match serde_json::from_slice(&message.payload) {
            Ok(event) => Some(event),
            Err(e) => {
                tracing::warn!(error = %e, subject = %message.subject, "skipping a NATS message that is not a stored event");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_tokens_are_hex_and_keep_names_apart() {
        let token = |name: &str| topic_token(&TopicName::new(name).expect("a valid topic name"));
        assert_eq!(token("a.b"), "612e62");
        let names = ["a.b", "a_b", "a-b", "ab", "a.b.c", "a.bc", "A.b"];
        let tokens: std::collections::HashSet<_> = names.iter().map(|n| token(n)).collect();
        assert_eq!(tokens.len(), names.len());
        assert!(tokens.iter().all(|t| is_token(t)));
    }

    #[test]
    fn options_are_checked() {
        assert!(NatsOptions::default().check().is_ok());
        assert!(NatsOptions::isolated("bench").check().is_ok());
        for (stream, prefix) in [
            ("SLUICE.EVENTS", "sluice.events"),
            ("", "sluice.events"),
            ("SLUICE EVENTS", "sluice.events"),
            ("SLUICE_EVENTS", "sluice.*"),
            ("SLUICE_EVENTS", "sluice..events"),
            ("SLUICE_EVENTS", "sluice.events."),
            ("SLUICE_EVENTS", "sluice.>"),
            ("SLUICE_EVENTS", ""),
        ] {
            let options = NatsOptions {
                stream: stream.to_owned(),
                subject_prefix: prefix.to_owned(),
                ..NatsOptions::default()
            };
            assert!(options.check().is_err(), "{stream:?} {prefix:?}");
        }
    }

    #[test]
    fn isolated_options_do_not_overlap_the_default_subjects() {
        let options = NatsOptions::isolated("test");
        assert!(!options.subject_prefix.starts_with(DEFAULT_SUBJECT_PREFIX));
        assert_ne!(options.stream, NatsOptions::isolated("test").stream);
    }
}
