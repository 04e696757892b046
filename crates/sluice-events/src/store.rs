//! Where events and topics persist: the hub repository's database (SQLite or PostgreSQL), in
//! tables of their own (`ev_topic`, `ev_schema`, `ev_event`).
//!
//! Contract of every [`EventStore`]:
//! * [`EventStore::append`] is one transaction: every event of the call is stored, or none is.
//!   When it returns, the events are durable (SQLite: WAL with `synchronous=FULL`; PostgreSQL: a
//!   committed transaction).
//! * Sequence numbers are per topic, start at 1, strictly increase and are never reused while the
//!   topic exists (retention removes events, never numbers; the topic row keeps `last_seq`).
//!   Within a topic, commit order equals sequence order, also with several hub processes
//!   on one PostgreSQL database, so a reader that has seen seq N has seen every event below N.
//! * An event whose id came from the client and is already stored on its topic (by this call or
//!   an earlier one) is not stored again: its outcome is the stored event, `duplicate: true`.
//! * Reads never return an event of another topic, and history reads return events in sequence
//!   order.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::event::{Append, StoredEvent};
use crate::routing::Pattern;
use crate::topic::{SchemaVersion, Topic, TopicName, TopicSpec};

/// One event's outcome of [`EventStore::append`].
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    /// The stored event (for a duplicate: the one stored earlier).
    pub event: StoredEvent,
    /// Whether it was stored before.
    pub duplicate: bool,
}

/// A history query.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    /// The topic.
    pub topic: TopicName,
    /// Which routing keys.
    pub pattern: Pattern,
    /// Events stored at or after this instant.
    pub start: Option<DateTime<Utc>>,
    /// Events stored before this instant.
    pub end: Option<DateTime<Utc>>,
    /// Only events with a sequence number above this (the cursor).
    pub after_seq: u64,
    /// At most this many events.
    pub limit: usize,
    /// Stop after looking at this many events even if fewer than `limit` matched (bounds the
    /// work of one call; the page then has a cursor to go on from).
    pub scan_limit: usize,
}

/// A page of history.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// Matching events in sequence order.
    pub events: Vec<StoredEvent>,
    /// When more may match: the `after_seq` to ask for next.
    pub next_after: Option<u64>,
}

/// The persistence of the event hub. See the module docs for the contract.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Creates a topic (schema version 1 when `spec.schema` is set). Conflict when it exists.
    async fn create_topic(
        &self,
        name: &TopicName,
        spec: &TopicSpec,
        builtin: bool,
        by: &str,
    ) -> Result<Topic>;

    /// Replaces a topic's description, retention and grants; when the schema differs from the
    /// current one, stores it as the next schema version. NotFound when missing.
    async fn update_topic(&self, name: &TopicName, spec: &TopicSpec, by: &str) -> Result<Topic>;

    /// One topic.
    async fn topic(&self, name: &TopicName) -> Result<Option<Topic>>;

    /// Every topic, by name.
    async fn topics(&self) -> Result<Vec<Topic>>;

    /// Every schema version of a topic, oldest first. NotFound when the topic is missing.
    async fn schema_versions(&self, name: &TopicName) -> Result<Vec<SchemaVersion>>;

    /// Deletes a topic. Conflict when it still holds events and `force` is false; with `force`,
    /// its events go too. NotFound when missing.
    async fn delete_topic(&self, name: &TopicName, force: bool) -> Result<()>;

    /// Stores events (one transaction), stamping each with `now` and the next sequence number
    /// of its topic. Outcomes are in input order. NotFound (and nothing stored) when a topic is
    /// missing.
    async fn append(&self, events: Vec<Append>, now: DateTime<Utc>) -> Result<Vec<AppendOutcome>>;

    /// Events of `topic` with `seq > after_seq`, oldest first, at most `limit`.
    async fn read_after(
        &self,
        topic: &TopicName,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;

    /// A page of history (see [`HistoryQuery`]).
    async fn query(&self, query: &HistoryQuery) -> Result<HistoryPage>;

    /// The newest event of each distinct routing key matching `pattern`, by routing key.
    async fn last_per_key(&self, topic: &TopicName, pattern: &Pattern) -> Result<Vec<StoredEvent>>;

    /// How many events `topic` holds now.
    async fn event_count(&self, topic: &TopicName) -> Result<u64>;

    /// Removes what each topic's retention no longer keeps (as of `now`); the number removed.
    async fn enforce_retention(&self, now: DateTime<Utc>) -> Result<u64>;
}
