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
//!
//! Both stores here also keep two invariants the reads rely on:
//! * A topic's timestamps never decrease along its sequence: an event is stamped with `now`, or
//!   with the topic's newest timestamp when a clock (of this or another process) is behind it. So
//!   a time range is a range of sequence numbers, found with the `(topic, ts)` index (SQLite) or
//!   by bisecting the primary key (PostgreSQL, where one index fewer makes appends cheaper).
//! * A topic's stored events hold one unbroken range of sequence numbers: appends take the next
//!   numbers in one transaction, and only whole prefixes are removed (retention removes the
//!   oldest events first). Counting is then `max(seq) - min(seq) + 1`.
//!
//! Only client ids are indexed for deduplication (`UNIQUE (topic, id) WHERE client_id`): ids the
//! hub makes up are random UUIDs, never looked up, and indexing them would scatter every append
//! over the whole index.
//!
//! [`open_event_store`] opens either store from the same spec as the hub repository.

mod postgres;
mod sqlite;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::error::{Error, ErrorKind, Result};
use crate::event::{Append, StoredEvent};
use crate::routing::{Pattern, RoutingKey};
use crate::topic::{Grants, Retention, SchemaVersion, Topic, TopicName, TopicSpec};

pub use postgres::PostgresEventStore;
pub use sluice_store::Database;
pub use sqlite::SqliteEventStore;

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

/// Opens the event store named by `spec`, the same spec as the hub repository's:
/// `postgres://…` or `postgresql://…` (see [`PostgresEventStore::connect`]), `sqlite:PATH` or a
/// plain file path (see [`SqliteEventStore::open`]). Any other `scheme://` is refused.
pub async fn open_event_store(spec: &str) -> Result<Arc<dyn EventStore>> {
    open_event_store_in(&Database::open(spec, "event store")?).await
}

/// Opens the event store in `db`: on PostgreSQL it takes its connections from `db`'s pool,
/// which the process's other stores (the hub repository) share.
pub async fn open_event_store_in(db: &Database) -> Result<Arc<dyn EventStore>> {
    match db {
        Database::Postgres(db) => Ok(Arc::new(PostgresEventStore::on(db.clone()).await?)),
        Database::Sqlite(path) => {
            let path = path.clone();
            let store = tokio::task::spawn_blocking(move || SqliteEventStore::open(path))
                .await
                .map_err(|e| Error::storage("opening the event store failed", e))??;
            Ok(Arc::new(store))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What both stores share: row decoding, append planning, history scans.

/// Rows deleted per transaction by retention and forced topic deletion, so a large removal
/// never holds the write lock for long.
const DELETE_CHUNK: u64 = 5_000;

/// Rows read per statement by history scans.
const SCAN_CHUNK: usize = 1_000;

/// An error for data in the store that this build cannot read.
fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Storage,
        format!("the event store holds an invalid {what}"),
    )
}

fn topic_missing(name: &str) -> Error {
    Error::not_found(format!("topic {name} does not exist"))
}

/// `t` in whole microseconds since the epoch.
fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The instant `m` microseconds after the epoch.
fn from_micros(m: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(m).ok_or_else(|| corrupt(format_args!("timestamp {m}")))
}

/// `t` truncated to what the stores keep (microseconds).
fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros(t)).unwrap_or(t)
}

/// A count or limit as a database integer (saturating).
fn db_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A database integer that must not be negative.
fn db_u64(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| corrupt(format_args!("{what} {n}")))
}

fn grants_text(grants: &Grants) -> String {
    serde_json::to_string(grants).expect("grants always serialize")
}

fn schema_text(schema: &serde_json::Value) -> String {
    serde_json::to_string(schema).expect("JSON values serialize")
}

fn parse_schema(text: Option<String>) -> Result<Option<serde_json::Value>> {
    text.map(|t| serde_json::from_str(&t).map_err(|_| corrupt("topic schema")))
        .transpose()
}

/// One row of `ev_topic` with the text of its current schema.
struct TopicRow {
    name: String,
    description: String,
    schema_version: i64,
    retention_age: Option<i64>,
    retention_count: Option<i64>,
    grants_json: String,
    builtin: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    updated_by: String,
    last_seq: i64,
    schema_json: Option<String>,
}

impl TopicRow {
    fn into_topic(self) -> Result<Topic> {
        let limit = |v: Option<i64>, what: &str| v.map(|v| db_u64(v, what)).transpose();
        Ok(Topic {
            name: TopicName::new(&self.name)
                .map_err(|_| corrupt(format_args!("topic name {:?}", self.name)))?,
            description: self.description,
            schema_version: u32::try_from(self.schema_version)
                .map_err(|_| corrupt(format_args!("schema version {}", self.schema_version)))?,
            schema: parse_schema(self.schema_json)?,
            retention: Retention {
                max_age_seconds: limit(self.retention_age, "retention age")?,
                max_count: limit(self.retention_count, "retention count")?,
            },
            grants: serde_json::from_str(&self.grants_json)
                .map_err(|_| corrupt(format_args!("grants of topic {}", self.name)))?,
            builtin: self.builtin,
            created_at: self.created_at,
            updated_at: self.updated_at,
            updated_by: self.updated_by,
            last_seq: db_u64(self.last_seq, "sequence number")?,
        })
    }
}

/// One row of `ev_event`, as read.
struct EventRow {
    seq: i64,
    id: String,
    routing_key: String,
    ts: DateTime<Utc>,
    posted_by: Option<String>,
    payload: String,
}

impl EventRow {
    fn into_event(self, topic: &TopicName) -> Result<StoredEvent> {
        Ok(StoredEvent {
            topic: topic.clone(),
            seq: db_u64(self.seq, "sequence number")?,
            routing_key: RoutingKey::new(&self.routing_key)
                .map_err(|_| corrupt(format_args!("routing key {:?}", self.routing_key)))?,
            id: self.id,
            timestamp: self.ts,
            posted_by: self.posted_by,
            payload: RawValue::from_string(self.payload)
                .map_err(|_| corrupt(format_args!("payload on topic {topic}")))?,
        })
    }
}

/// What becomes of one event of an append.
enum Slot {
    /// Stored now.
    New,
    /// Stored by an earlier call.
    Stored(StoredEvent),
    /// The same client id as the event at this (earlier) index of the call.
    SameAs(usize),
}

/// An append's plan before numbering: which events are new, and how many per topic.
struct AppendPlan {
    slots: Vec<Slot>,
    /// Every topic of the call (sorted, the order stores lock them in) and its new events.
    new_per_topic: BTreeMap<TopicName, u64>,
}

impl AppendPlan {
    /// Plans `events`: `stored` finds an event already stored under a client id.
    fn new(
        events: &[Append],
        mut stored: impl FnMut(&Append) -> Result<Option<StoredEvent>>,
    ) -> Result<Self> {
        let mut first: HashMap<(&str, &str), usize> = HashMap::new();
        let mut slots = Vec::with_capacity(events.len());
        let mut new_per_topic: BTreeMap<TopicName, u64> = BTreeMap::new();
        for (i, event) in events.iter().enumerate() {
            if !new_per_topic.contains_key(&event.topic) {
                new_per_topic.insert(event.topic.clone(), 0);
            }
            if event.client_id {
                let key = (event.topic.as_str(), event.id.as_str());
                if let Some(&j) = first.get(&key) {
                    slots.push(Slot::SameAs(j));
                    continue;
                }
                first.insert(key, i);
                if let Some(found) = stored(event)? {
                    slots.push(Slot::Stored(found));
                    continue;
                }
            }
            *new_per_topic.entry(event.topic.clone()).or_insert(0) += 1;
            slots.push(Slot::New);
        }
        Ok(AppendPlan {
            slots,
            new_per_topic,
        })
    }

    /// The newest new event of each topic and routing key of the call, by topic and key, as
    /// `(topic, key, back)`: its sequence number is the topic's `last_seq` after the append
    /// minus `back` (new events take a topic's numbers in call order).
    fn newest_per_key<'e>(&self, events: &'e [Append]) -> Vec<(&'e str, &'e str, u64)> {
        let mut taken: HashMap<&str, u64> = HashMap::new();
        let mut newest: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for (event, slot) in events.iter().zip(&self.slots) {
            if matches!(slot, Slot::New) {
                let k = taken.entry(event.topic.as_str()).or_insert(0);
                newest.insert((event.topic.as_str(), event.routing_key.as_str()), *k);
                *k += 1;
            }
        }
        newest
            .into_iter()
            .map(|((topic, key), k)| (topic, key, taken[topic] - 1 - k))
            .collect()
    }

    /// The sequence number of each new event (0 for the others), given each topic's `last_seq`
    /// after the append took its numbers.
    fn number(&self, events: &[Append], heads: &BTreeMap<TopicName, Head>) -> Vec<u64> {
        let mut next: HashMap<&TopicName, u64> = heads
            .iter()
            .map(|(name, head)| {
                let n = self.new_per_topic.get(name).copied().unwrap_or(0);
                (name, head.last_seq + 1 - n)
            })
            .collect();
        events
            .iter()
            .zip(&self.slots)
            .map(|(event, slot)| match slot {
                Slot::New => {
                    let seq = next
                        .get_mut(&event.topic)
                        .expect("every topic with new events has a head");
                    *seq += 1;
                    *seq - 1
                }
                _ => 0,
            })
            .collect()
    }

    /// The outcomes, in input order.
    fn outcomes(
        self,
        events: Vec<Append>,
        seqs: &[u64],
        heads: &BTreeMap<TopicName, Head>,
    ) -> Vec<AppendOutcome> {
        let mut outcomes: Vec<AppendOutcome> = Vec::with_capacity(events.len());
        for ((event, slot), &seq) in events.into_iter().zip(self.slots).zip(seqs) {
            let outcome = match slot {
                Slot::New => {
                    let timestamp = heads
                        .get(&event.topic)
                        .expect("every topic with new events has a head")
                        .timestamp;
                    AppendOutcome {
                        event: StoredEvent {
                            topic: event.topic,
                            seq,
                            id: event.id,
                            routing_key: event.routing_key,
                            timestamp,
                            posted_by: event.posted_by,
                            payload: event.payload,
                        },
                        duplicate: false,
                    }
                }
                Slot::Stored(event) => AppendOutcome {
                    event,
                    duplicate: true,
                },
                Slot::SameAs(j) => AppendOutcome {
                    event: outcomes[j].event.clone(),
                    duplicate: true,
                },
            };
            outcomes.push(outcome);
        }
        outcomes
    }
}

/// A topic's row after an append took its numbers.
struct Head {
    /// The newest sequence number.
    last_seq: u64,
    /// The timestamp of this append's events on the topic.
    timestamp: DateTime<Utc>,
}

/// How a history scan narrows routing keys in SQL before [`Pattern::matches`] decides. Pattern
/// text never becomes SQL: the key or prefix is always a bound parameter.
enum KeyFilter {
    /// Every key (`#`).
    All,
    /// `routing_key = ?`.
    Literal(String),
    /// `routing_key = ? OR routing_key LIKE ? ESCAPE '\'`: the literal prefix, and the prefix
    /// and a dot as a LIKE pattern.
    Prefix { exact: String, like: String },
    /// Nothing to narrow by (the pattern starts with a wildcard).
    Unnarrowed,
}

impl KeyFilter {
    fn new(pattern: &Pattern) -> Self {
        if pattern.is_all() {
            return KeyFilter::All;
        }
        if let Some(key) = pattern.literal() {
            return KeyFilter::Literal(key.to_owned());
        }
        let prefix = pattern.literal_prefix();
        if prefix.is_empty() {
            return KeyFilter::Unnarrowed;
        }
        let mut like = String::with_capacity(prefix.len() + 4);
        for c in prefix.chars() {
            if matches!(c, '%' | '_' | '\\') {
                like.push('\\');
            }
            like.push(c);
        }
        like.push_str(".%");
        KeyFilter::Prefix {
            exact: prefix,
            like,
        }
    }
}

/// The bounds `[lower, upper)` of the routing keys that can match `pattern`: every key that is
/// the literal prefix, or starts with it and a dot, sorts below the prefix and a `/` (the byte
/// after `.`). Without a prefix: every key, below DEL (keys are printable ASCII).
fn key_range(pattern: &Pattern) -> (String, String) {
    let prefix = pattern.literal_prefix();
    if prefix.is_empty() {
        (String::new(), "\u{7f}".to_owned())
    } else {
        let upper = format!("{prefix}/");
        (prefix, upper)
    }
}

/// One statement of a history scan: events with `after < seq <= through` (and the key filter),
/// in sequence order, at most `limit` when set.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    after: u64,
    through: u64,
    limit: Option<usize>,
}

/// Where a topic's events are, for a history query.
struct Extent {
    /// The lowest and highest stored sequence numbers, when the topic holds events.
    seqs: Option<(u64, u64)>,
    /// With a start time: the first sequence number stamped at or after it (`None` inside: no
    /// such event).
    first_at_start: Option<Option<u64>>,
    /// With an end time: the first sequence number stamped at or after it.
    first_at_end: Option<Option<u64>>,
}

/// A history query in progress: the store runs each [`Chunk`] it asks for and hands back the
/// rows, until [`Scan::next_chunk`] answers `None`.
struct Scan<'q> {
    query: &'q HistoryQuery,
    filter: KeyFilter,
    /// Whether a statement may stop at a row count: every row the SQL returns matches, and the
    /// store finds them without looking at the others (an index on the key when it is literal).
    counted: bool,
    /// Every event up to here has been looked at.
    cursor: u64,
    /// The last sequence number the query can match.
    through: u64,
    /// Rows the scan may still look at.
    budget: usize,
    events: Vec<StoredEvent>,
    full: bool,
}

impl<'q> Scan<'q> {
    /// `keys_indexed`: the store has an index to find one routing key's events by sequence
    /// number (SQLite); without it (PostgreSQL) a literal key is narrowed over a window of
    /// sequence numbers like a pattern, so one call's work stays bounded.
    fn new(query: &'q HistoryQuery, extent: Extent, keys_indexed: bool) -> Self {
        let mut cursor = query.after_seq;
        let mut through = 0;
        if let Some((min, max)) = extent.seqs {
            cursor = cursor.max(min.saturating_sub(1));
            through = max;
        }
        match extent.first_at_start {
            Some(Some(first)) => cursor = cursor.max(first.saturating_sub(1)),
            Some(None) => through = 0,
            None => {}
        }
        if let Some(Some(first)) = extent.first_at_end {
            through = through.min(first.saturating_sub(1));
        }
        let filter = KeyFilter::new(&query.pattern);
        Scan {
            query,
            counted: match filter {
                KeyFilter::All => true,
                KeyFilter::Literal(_) => keys_indexed,
                KeyFilter::Prefix { .. } | KeyFilter::Unnarrowed => false,
            },
            filter,
            cursor,
            through,
            budget: query.scan_limit.max(1),
            events: Vec::new(),
            full: false,
        }
    }

    fn filter(&self) -> &KeyFilter {
        &self.filter
    }

    /// The next statement to run, or `None` when the page is complete.
    fn next_chunk(&self) -> Option<Chunk> {
        if self.full || self.budget == 0 || self.cursor >= self.through {
            return None;
        }
        let wanted = self.query.limit.saturating_sub(self.events.len());
        if wanted == 0 {
            return None;
        }
        let rows = self.budget.min(SCAN_CHUNK);
        Some(if self.counted {
            // Every row returned matches its key: read rows, at most as many as wanted.
            Chunk {
                after: self.cursor,
                through: self.through,
                limit: Some(rows.min(wanted)),
            }
        } else {
            // Rows are narrowed further in Rust: read a window of sequence numbers, so one
            // statement never looks at more than `rows` rows however few of them match.
            Chunk {
                after: self.cursor,
                through: self.through.min(self.cursor + rows as u64),
                limit: None,
            }
        })
    }

    /// Takes the rows of `chunk`.
    fn take(&mut self, chunk: Chunk, rows: Vec<StoredEvent>) {
        let returned = rows.len();
        let (start, end) = (self.query.start, self.query.end);
        for event in rows {
            self.cursor = event.seq;
            let in_time = start.is_none_or(|s| event.timestamp >= s)
                && end.is_none_or(|e| event.timestamp < e);
            if in_time && self.query.pattern.matches(&event.routing_key) {
                self.events.push(event);
                if self.events.len() >= self.query.limit {
                    self.full = true;
                    break;
                }
            }
        }
        match chunk.limit {
            Some(limit) => {
                self.budget = self.budget.saturating_sub(returned);
                if returned < limit && !self.full {
                    // Fewer rows than asked: the range holds no more.
                    self.cursor = chunk.through;
                }
            }
            None => {
                let span = usize::try_from(chunk.through - chunk.after).unwrap_or(usize::MAX);
                self.budget = self.budget.saturating_sub(span);
                if !self.full {
                    self.cursor = chunk.through;
                }
            }
        }
    }

    fn finish(self) -> HistoryPage {
        HistoryPage {
            next_after: (self.cursor < self.through).then_some(self.cursor),
            events: self.events,
        }
    }
}

/// What retention removes from one topic: every event with a sequence number up to the answer.
/// `first_young`: with an age limit, the first sequence number stamped at or after the cutoff
/// (`Some(None)`: every event is older).
fn retention_cut(retention: &Retention, last_seq: u64, first_young: Option<Option<u64>>) -> u64 {
    let mut cut = 0;
    if let Some(count) = retention.max_count {
        cut = last_seq.saturating_sub(count);
    }
    if let Some(first_young) = first_young {
        let age_cut = first_young.map_or(last_seq, |seq| seq.saturating_sub(1));
        cut = cut.max(age_cut.min(last_seq));
    }
    cut
}

/// The oldest timestamp `retention` keeps as of `now` (`None`: no age limit, or one reaching
/// before any representable time).
fn age_cutoff(retention: &Retention, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let age = i64::try_from(retention.max_age_seconds?).ok()?;
    now.checked_sub_signed(chrono::TimeDelta::try_seconds(age)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> Pattern {
        Pattern::new(text).expect("valid pattern")
    }

    #[test]
    fn key_filters_escape_like_and_never_carry_wildcards() {
        assert!(matches!(KeyFilter::new(&pattern("#")), KeyFilter::All));
        assert!(matches!(KeyFilter::new(&pattern("#.#")), KeyFilter::All));
        assert!(matches!(KeyFilter::new(&pattern("a.b")), KeyFilter::Literal(k) if k == "a.b"));
        assert!(matches!(
            KeyFilter::new(&pattern("*.b")),
            KeyFilter::Unnarrowed
        ));
        match KeyFilter::new(&pattern("plant_1.line-2.#")) {
            KeyFilter::Prefix { exact, like } => {
                assert_eq!(exact, "plant_1.line-2");
                assert_eq!(like, r"plant\_1.line-2.%");
            }
            _ => panic!("a pattern with a literal prefix narrows by it"),
        }
    }

    #[test]
    fn the_newest_event_of_each_key_counts_back_from_its_topics_last_number() {
        let ev = |topic: &str, key: &str, id: &str, client_id: bool| Append {
            topic: TopicName::new(topic).unwrap(),
            routing_key: RoutingKey::new(key).unwrap(),
            payload: RawValue::from_string("1".into()).unwrap(),
            id: id.into(),
            client_id,
            posted_by: None,
        };
        let events = [
            ev("t", "a", "1", false),
            ev("u", "b", "2", false),
            ev("t", "b", "3", false),
            // The same client id twice: the second is not new and takes no number.
            ev("t", "c", "x", true),
            ev("t", "c", "x", true),
            ev("t", "a", "5", false),
        ];
        let plan = AppendPlan::new(&events, |_| Ok(None)).unwrap();
        // t's new events: a, b, c, a (the last takes t's last_seq); u's: b.
        assert_eq!(
            plan.newest_per_key(&events),
            [("t", "a", 0), ("t", "b", 2), ("t", "c", 1), ("u", "b", 0)]
        );
    }

    #[test]
    fn key_ranges_hold_every_match() {
        let (lower, upper) = key_range(&pattern("a.b.*"));
        for key in ["a.b", "a.b.c", "a.b.zz.y"] {
            assert!(lower.as_str() <= key && key < upper.as_str(), "{key}");
        }
        assert!("a.c" >= upper.as_str());
        let (lower, upper) = key_range(&pattern("#.x"));
        assert!(lower.is_empty());
        assert!("zzz@:_-9.x" < upper.as_str());
    }

    #[test]
    fn retention_cuts() {
        let count = Retention {
            max_age_seconds: None,
            max_count: Some(3),
        };
        assert_eq!(retention_cut(&count, 10, None), 7);
        assert_eq!(retention_cut(&count, 2, None), 0);
        let age = Retention {
            max_age_seconds: Some(60),
            max_count: None,
        };
        assert_eq!(retention_cut(&age, 10, Some(Some(4))), 3);
        assert_eq!(retention_cut(&age, 10, Some(None)), 10);
        let both = Retention {
            max_age_seconds: Some(60),
            max_count: Some(5),
        };
        assert_eq!(retention_cut(&both, 10, Some(Some(2))), 5);
        assert_eq!(retention_cut(&both, 10, Some(Some(9))), 8);
        let huge = Retention {
            max_age_seconds: Some(u64::MAX),
            max_count: None,
        };
        assert_eq!(age_cutoff(&huge, Utc::now()), None);
    }
}
