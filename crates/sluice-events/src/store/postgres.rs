//! The event store in the hub repository's PostgreSQL database, shared by every hub process
//! that names it, with its own migrations (`ev_schema_migrations`).
//!
//! Every call takes a connection from a pool; writes run in `READ COMMITTED` transactions.
//! Across processes:
//! * migrations run under [`MIGRATION_LOCK`], so processes starting together migrate once;
//! * an append locks the rows of its topics (`SELECT … FOR UPDATE`, by name, so two appends
//!   never wait for each other in a cycle; an append to one topic without client ids lets its
//!   numbering `UPDATE` take the one lock) and holds them to commit: appends to one topic commit
//!   one after the other, in sequence order. Client ids are looked up after the lock, so a
//!   duplicate stored by another process is found; should an insert still meet one (a unique
//!   violation), the whole transaction runs once more. New events go in with one binary `COPY`.
//!
//! Names, ids and routing keys are `text COLLATE "C"` so they compare byte-wise, as in SQLite
//! and Rust, and the routing-key index serves prefix ranges. Payloads are `text`, kept exactly
//! as published.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Object, Transaction};
use sluice_store::postgres::{PgDatabase, PgMigrations};
use tokio_postgres::Row;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql, Type};

use super::{
    AppendOutcome, AppendPlan, Chunk, DELETE_CHUNK, EventRow, EventStore, Extent, Head,
    HistoryPage, HistoryQuery, KeyFilter, Scan, Slot, TopicRow, age_cutoff, db_int, db_u64,
    grants_text, key_range, parse_schema, retention_cut, schema_text, to_micros, topic_missing,
};
use crate::error::{Error, Result};
use crate::event::{Append, StoredEvent};
use crate::routing::Pattern;
use crate::topic::{SchemaVersion, Topic, TopicName, TopicSpec};

/// Advisory lock key held (per transaction) while migrating the event tables: "sluice" and
/// 0x0e01 (the repository uses 0x0001 and 0x0002).
const MIGRATION_LOCK: i64 = 0x736c_7569_6365_0e01;

/// `(version, name, SQL)`, in order. Never edit a released migration; add the next one.
const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "topics, schema versions and events",
        r#"
CREATE TABLE ev_topic (
    name text COLLATE "C" PRIMARY KEY,
    description text NOT NULL,
    schema_version integer NOT NULL DEFAULT 0,
    retention_age bigint,
    retention_count bigint,
    grants_json text NOT NULL,
    builtin boolean NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    updated_by text NOT NULL,
    last_seq bigint NOT NULL DEFAULT 0,
    last_ts timestamptz
);
CREATE TABLE ev_schema (
    topic text COLLATE "C" NOT NULL,
    version integer NOT NULL,
    schema_json text,
    created_at timestamptz NOT NULL,
    created_by text NOT NULL,
    PRIMARY KEY (topic, version)
);
CREATE TABLE ev_event (
    topic text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    id text COLLATE "C" NOT NULL,
    client_id boolean NOT NULL,
    routing_key text COLLATE "C" NOT NULL,
    ts timestamptz NOT NULL,
    posted_by text,
    payload text NOT NULL,
    PRIMARY KEY (topic, seq)
);
CREATE UNIQUE INDEX ev_event_id ON ev_event (topic, id) WHERE client_id;
CREATE INDEX ev_event_ts ON ev_event (topic, ts, seq);
CREATE INDEX ev_event_key ON ev_event (topic, routing_key, seq);
"#,
    ),
    (
        2,
        "time lookups by bisection over the key, without a time index",
        // Every append stamps its events with GREATEST(last_ts, now) under its topic's lock, so
        // times never decrease along a topic's sequence numbers and [`first_at`] bisects the
        // primary key. One B-tree fewer to maintain per stored event.
        "DROP INDEX IF EXISTS ev_event_ts;",
    ),
    (
        3,
        "the newest event of each routing key in a table of its own, without a key index",
        // The (topic, routing_key, seq) index cost each stored event more server time than the
        // heap row and primary key together: its inserts land in the middle of the tree, one
        // spot per key, and split pages in half. `ev_key_last` takes one row per key instead,
        // written once per append and key (see `BUMP_SQL`), and a history read of one key scans
        // the primary key over a bounded window of sequence numbers, as patterns always did.
        r#"
CREATE TABLE ev_key_last (
    topic text COLLATE "C" NOT NULL,
    routing_key text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (topic, routing_key)
);
INSERT INTO ev_key_last (topic, routing_key, seq)
    SELECT topic, routing_key, max(seq) FROM ev_event GROUP BY topic, routing_key;
DROP INDEX IF EXISTS ev_event_key;
"#,
    ),
];

/// Numbers an append's new events: takes each topic's next numbers (`$1` topics, `$2` counts,
/// `$3` now) and records the newest sequence number of each routing key (`$4` topics, `$5`
/// keys, `$6` how far below the topic's new `last_seq`: see `AppendPlan::newest_per_key`).
/// The topic row's lock, taken by the `UPDATE`, orders concurrent appends of one topic, so the
/// newest number always wins; keys of a topic are written only under its lock (no lock cycle).
const BUMP_SQL: &str = "WITH b AS ( \
       UPDATE ev_topic AS t SET last_seq = t.last_seq + d.n, \
       last_ts = GREATEST(t.last_ts, $3) \
       FROM unnest($1::text[], $2::int8[]) AS d(name, n) WHERE t.name = d.name \
       RETURNING t.name, t.last_seq, t.last_ts), \
     k AS ( \
       INSERT INTO ev_key_last AS l (topic, routing_key, seq) \
       SELECT k.topic, k.key, b.last_seq - k.back \
       FROM unnest($4::text[], $5::text[], $6::int8[]) AS k(topic, key, back) \
       JOIN b ON b.name = k.topic ORDER BY 1, 2 \
       ON CONFLICT (topic, routing_key) DO UPDATE SET seq = EXCLUDED.seq) \
     SELECT name, last_seq, last_ts FROM b";

const TOPIC_SELECT: &str = "SELECT t.name, t.description, t.schema_version, t.retention_age, \
     t.retention_count, t.grants_json, t.builtin, t.created_at, t.updated_at, t.updated_by, \
     t.last_seq, s.schema_json FROM ev_topic t \
     LEFT JOIN ev_schema s ON s.topic = t.name AND s.version = t.schema_version";

const EVENT_COLUMNS: &str = "seq, id, routing_key, ts, posted_by, payload";

/// [`EVENT_COLUMNS`] of the table aliased `e`.
fn event_columns_of_e() -> String {
    EVENT_COLUMNS
        .split(", ")
        .map(|c| format!("e.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The event store's migrations, recorded in `ev_schema_migrations`.
const MIGRATION_SET: PgMigrations = PgMigrations {
    what: "event store",
    subject: "the event tables",
    table: "ev_schema_migrations",
    lock: MIGRATION_LOCK,
    list: MIGRATIONS,
};

/// The event store in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresEventStore {
    db: PgDatabase,
}

impl std::fmt::Debug for PostgresEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEventStore")
            .field("target", &self.db.target())
            .finish()
    }
}

fn storage(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| Error::storage(format!("event store: {what}"), e)
}

/// Column `i` of `row`; a type mismatch is a storage error, never a panic.
fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    row.try_get(i).map_err(storage("read a column"))
}

fn topic_row(row: &Row) -> Result<TopicRow> {
    Ok(TopicRow {
        name: col(row, 0)?,
        description: col(row, 1)?,
        schema_version: i64::from(col::<i32>(row, 2)?),
        retention_age: col(row, 3)?,
        retention_count: col(row, 4)?,
        grants_json: col(row, 5)?,
        builtin: col(row, 6)?,
        created_at: col(row, 7)?,
        updated_at: col(row, 8)?,
        updated_by: col(row, 9)?,
        last_seq: col(row, 10)?,
        schema_json: col(row, 11)?,
    })
}

/// An event row whose columns start at `at`.
fn event_row(row: &Row, at: usize) -> Result<EventRow> {
    Ok(EventRow {
        seq: col(row, at)?,
        id: col(row, at + 1)?,
        routing_key: col(row, at + 2)?,
        ts: col(row, at + 3)?,
        posted_by: col(row, at + 4)?,
        payload: col(row, at + 5)?,
    })
}

fn events(rows: &[Row], topic: &TopicName) -> Result<Vec<StoredEvent>> {
    rows.iter()
        .map(|r| event_row(r, 0)?.into_event(topic))
        .collect()
}

async fn begin(client: &mut Object) -> Result<Transaction<'_>> {
    sluice_store::postgres::begin(client)
        .await
        .map_err(storage("begin"))
}

async fn load_topic(
    client: &impl GenericClient,
    name: &str,
    for_update: bool,
) -> Result<Option<Topic>> {
    let sql = if for_update {
        format!("{TOPIC_SELECT} WHERE t.name = $1 FOR UPDATE OF t")
    } else {
        format!("{TOPIC_SELECT} WHERE t.name = $1")
    };
    let row = client
        .query_opt(&sql, &[&name])
        .await
        .map_err(storage("read a topic"))?;
    row.map(|r| topic_row(&r)?.into_topic()).transpose()
}

/// The lowest and highest sequence numbers stored on `topic`.
async fn seq_extent(client: &impl GenericClient, topic: &str) -> Result<Option<(u64, u64)>> {
    let row = client
        .query_one(
            "SELECT (SELECT min(seq) FROM ev_event WHERE topic = $1), \
             (SELECT max(seq) FROM ev_event WHERE topic = $1)",
            &[&topic],
        )
        .await
        .map_err(storage("read sequence numbers"))?;
    match (col::<Option<i64>>(&row, 0)?, col::<Option<i64>>(&row, 1)?) {
        (Some(min), Some(max)) => Ok(Some((
            db_u64(min, "sequence number")?,
            db_u64(max, "sequence number")?,
        ))),
        _ => Ok(None),
    }
}

/// Finds the first event of topic `$1` stamped at or after `$2` in one statement (one
/// snapshot): times never decrease along a topic's sequence numbers (see migration 2), so the
/// time of the first event at or after a sequence number rises with it, and a bisection over the
/// primary key finds the least number whose next event is late enough, in about log2(numbers)
/// index probes.
const FIRST_AT_SQL: &str = "WITH RECURSIVE s(lo, hi) AS ( \
       SELECT min(seq), max(seq) FROM ev_event WHERE topic = $1 \
     UNION ALL \
       SELECT CASE WHEN f.ts >= $2 THEN s.lo ELSE s.lo + (s.hi - s.lo) / 2 + 1 END, \
              CASE WHEN f.ts >= $2 THEN s.lo + (s.hi - s.lo) / 2 ELSE s.hi END \
       FROM s CROSS JOIN LATERAL ( \
         SELECT e.ts FROM ev_event e WHERE e.topic = $1 AND e.seq >= s.lo + (s.hi - s.lo) / 2 \
         ORDER BY e.seq LIMIT 1) AS f \
       WHERE s.lo < s.hi) \
     SELECT e.seq FROM s CROSS JOIN LATERAL ( \
       SELECT e.seq, e.ts FROM ev_event e WHERE e.topic = $1 AND e.seq >= s.lo \
       ORDER BY e.seq LIMIT 1) AS e \
     WHERE s.lo = s.hi AND e.ts >= $2";

/// The first sequence number on `topic` stamped at or after `at`.
async fn first_at(
    client: &impl GenericClient,
    topic: &str,
    at: DateTime<Utc>,
) -> Result<Option<u64>> {
    let row = client
        .query_opt(FIRST_AT_SQL, &[&topic, &at])
        .await
        .map_err(storage("find events by time"))?;
    row.map(|r| db_u64(col(&r, 0)?, "sequence number"))
        .transpose()
}

/// Stores the new events of `plan` with one binary `COPY`.
async fn copy_events(
    tx: &Transaction<'_>,
    events: &[Append],
    plan: &AppendPlan,
    seqs: &[u64],
    heads: &BTreeMap<TopicName, Head>,
) -> std::result::Result<(), tokio_postgres::Error> {
    // Prepared once per connection: saves a round trip per append.
    let copy = tx
        .prepare_cached(
            "COPY ev_event (topic, seq, id, client_id, routing_key, ts, posted_by, payload) \
             FROM STDIN (FORMAT binary)",
        )
        .await?;
    let sink = tx.copy_in(&copy).await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::BOOL,
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::TEXT,
        ],
    );
    let mut writer = std::pin::pin!(writer);
    for ((event, slot), &seq) in events.iter().zip(&plan.slots).zip(seqs) {
        if !matches!(slot, Slot::New) {
            continue;
        }
        let ts = heads
            .get(&event.topic)
            .expect("every topic with new events has a head")
            .timestamp;
        writer
            .as_mut()
            .write(&[
                &event.topic.as_str(),
                &db_int(seq),
                &event.id.as_str(),
                &event.client_id,
                &event.routing_key.as_str(),
                &ts,
                &event.posted_by.as_deref(),
                &event.payload.get(),
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// What one attempt of an append did.
enum Attempt {
    Stored(AppendPlan, Vec<u64>, BTreeMap<TopicName, Head>),
    /// Another process stored one of the client ids meanwhile: run again.
    Raced,
}

impl PostgresEventStore {
    /// Connects to the database at `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`),
    /// normally the hub repository's, and brings the event tables up to date. They live in the
    /// connection's current schema (`public` unless the URL sets `options=-csearch_path=…`).
    /// TLS (`sslmode=require`) is refused for now.
    /// A process that also keeps the repository in the database opens it once
    /// ([`PgDatabase::new`]) and calls [`PostgresEventStore::on`] instead.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::on(PgDatabase::new(url, "event store")?).await
    }

    /// The event store in `db`, taking its connections from `db`'s pool, with its tables
    /// brought up to date.
    pub async fn on(db: PgDatabase) -> Result<Self> {
        db.migrate(&MIGRATION_SET).await?;
        Ok(PostgresEventStore { db })
    }

    async fn client(&self) -> Result<Object> {
        Ok(self.db.client("event store").await?)
    }

    /// Deletes the events of `topic` up to sequence number `through`, oldest first, one chunk
    /// per statement so appends never wait long; the number deleted.
    async fn delete_through(&self, topic: &TopicName, through: u64) -> Result<u64> {
        let client = self.client().await?;
        let mut removed = 0;
        loop {
            let Some((min, _)) = seq_extent(&client, topic.as_str()).await? else {
                break;
            };
            if min > through {
                break;
            }
            let upto = through.min(min + DELETE_CHUNK - 1);
            let statement = client
                .prepare_cached("DELETE FROM ev_event WHERE topic = $1 AND seq >= $2 AND seq <= $3")
                .await
                .map_err(storage("remove events"))?;
            removed += client
                .execute(&statement, &[&topic.as_str(), &db_int(min), &db_int(upto)])
                .await
                .map_err(storage("remove events"))?;
            if upto >= through {
                break;
            }
        }
        // The keys whose newest event went: once per call, not per chunk (a stale row is
        // harmless meanwhile, `last_per_key` joins each to its event).
        client
            .execute(
                "DELETE FROM ev_key_last WHERE topic = $1 AND seq <= $2",
                &[&topic.as_str(), &db_int(through)],
            )
            .await
            .map_err(storage("remove events"))?;
        Ok(removed)
    }

    /// One try of an append; see the module docs.
    async fn try_append(
        &self,
        events: &[Append],
        now: DateTime<Utc>,
        last_try: bool,
    ) -> Result<Attempt> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let names: Vec<&str> = events
            .iter()
            .map(|e| e.topic.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Without client ids there is nothing to look up under the lock, and one topic's row
        // is locked by the numbering `UPDATE` itself (one row: no lock-order cycle), which
        // also finds a missing topic: a round trip saved on the common append.
        let lock_first = names.len() > 1 || events.iter().any(|e| e.client_id);
        let locked = if lock_first {
            let lock = tx
                .prepare_cached(
                    "SELECT name FROM ev_topic WHERE name = ANY($1) ORDER BY name FOR UPDATE",
                )
                .await
                .map_err(storage("lock topics"))?;
            tx.query(&lock, &[&names])
                .await
                .map_err(storage("lock topics"))?
        } else {
            Vec::new()
        };
        if lock_first && locked.len() != names.len() {
            let locked: BTreeSet<String> = locked
                .iter()
                .map(|r| col::<String>(r, 0))
                .collect::<Result<_>>()?;
            let missing = names
                .iter()
                .find(|n| !locked.contains(**n))
                .copied()
                .unwrap_or_default();
            return Err(topic_missing(missing));
        }

        // Client ids already stored (looked up under the topic locks, so a concurrent
        // append of the same id has committed or not started).
        let (id_topics, ids): (Vec<&str>, Vec<&str>) = events
            .iter()
            .filter(|e| e.client_id)
            .map(|e| (e.topic.as_str(), e.id.as_str()))
            .unzip();
        let mut found: HashMap<String, HashMap<String, StoredEvent>> = HashMap::new();
        if !ids.is_empty() {
            let lookup = tx
                .prepare_cached(&format!(
                    "SELECT e.topic, {} FROM ev_event e \
                     JOIN unnest($1::text[], $2::text[]) AS k(topic, id) \
                     ON e.topic = k.topic AND e.id = k.id WHERE e.client_id",
                    event_columns_of_e()
                ))
                .await
                .map_err(storage("look up event ids"))?;
            for row in tx
                .query(&lookup, &[&id_topics, &ids])
                .await
                .map_err(storage("look up event ids"))?
            {
                let topic: String = col(&row, 0)?;
                let name = TopicName::new(&topic)
                    .map_err(|_| super::corrupt(format_args!("topic name {topic:?}")))?;
                let event = event_row(&row, 1)?.into_event(&name)?;
                found
                    .entry(topic)
                    .or_default()
                    .insert(event.id.clone(), event);
            }
        }
        let plan = AppendPlan::new(events, |event| {
            Ok(found
                .get_mut(event.topic.as_str())
                .and_then(|m| m.remove(&event.id)))
        })?;

        let (bump_topics, bump_counts): (Vec<&str>, Vec<i64>) = plan
            .new_per_topic
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(t, n)| (t.as_str(), db_int(*n)))
            .unzip();
        let mut heads = BTreeMap::new();
        if !bump_topics.is_empty() {
            let bump = tx
                .prepare_cached(BUMP_SQL)
                .await
                .map_err(storage("number events"))?;
            let newest = plan.newest_per_key(events);
            let key_topics: Vec<&str> = newest.iter().map(|k| k.0).collect();
            let keys: Vec<&str> = newest.iter().map(|k| k.1).collect();
            let backs: Vec<i64> = newest.iter().map(|k| db_int(k.2)).collect();
            for row in tx
                .query(
                    &bump,
                    &[&bump_topics, &bump_counts, &now, &key_topics, &keys, &backs],
                )
                .await
                .map_err(storage("number events"))?
            {
                let name: String = col(&row, 0)?;
                let name = TopicName::new(&name)
                    .map_err(|_| super::corrupt(format_args!("topic name {name:?}")))?;
                let last_ts: Option<DateTime<Utc>> = col(&row, 2)?;
                heads.insert(
                    name,
                    Head {
                        last_seq: db_u64(col(&row, 1)?, "sequence number")?,
                        timestamp: last_ts.unwrap_or(now),
                    },
                );
            }
            if let Some(missing) = bump_topics
                .iter()
                .find(|t| !heads.keys().any(|h| h.as_str() == **t))
            {
                return Err(topic_missing(missing));
            }
        }
        let seqs = plan.number(events, &heads);

        if plan.slots.iter().any(|s| matches!(s, Slot::New)) {
            match copy_events(&tx, events, &plan, &seqs, &heads).await {
                Ok(()) => {}
                Err(e) if !last_try && e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    return Ok(Attempt::Raced);
                }
                Err(e) => return Err(storage("store events")(e)),
            }
        }
        tx.commit()
            .await
            .map_err(storage("commit storing events"))?;
        Ok(Attempt::Stored(plan, seqs, heads))
    }
}

#[async_trait]
impl EventStore for PostgresEventStore {
    async fn create_topic(
        &self,
        name: &TopicName,
        spec: &TopicSpec,
        builtin: bool,
        by: &str,
    ) -> Result<Topic> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let now = to_micros(Utc::now());
        let version: i32 = if spec.schema.is_some() { 1 } else { 0 };
        let inserted = tx
            .execute(
                "INSERT INTO ev_topic (name, description, schema_version, retention_age, \
                 retention_count, grants_json, builtin, created_at, updated_at, updated_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) ON CONFLICT (name) DO NOTHING",
                &[
                    &name.as_str(),
                    &spec.description,
                    &version,
                    &spec.retention.max_age_seconds.map(db_int),
                    &spec.retention.max_count.map(db_int),
                    &grants_text(&spec.grants),
                    &builtin,
                    &now,
                    &by,
                ],
            )
            .await
            .map_err(storage("create a topic"))?;
        if inserted == 0 {
            return Err(Error::conflict(format!("topic {name} already exists")));
        }
        // Versions of an earlier topic of the same name are not this topic's.
        tx.execute("DELETE FROM ev_schema WHERE topic = $1", &[&name.as_str()])
            .await
            .map_err(storage("create a topic"))?;
        if let Some(schema) = &spec.schema {
            tx.execute(
                "INSERT INTO ev_schema (topic, version, schema_json, created_at, created_by) \
                 VALUES ($1, 1, $2, $3, $4)",
                &[&name.as_str(), &schema_text(schema), &now, &by],
            )
            .await
            .map_err(storage("store a topic schema"))?;
        }
        let topic = load_topic(&tx, name.as_str(), false)
            .await?
            .ok_or_else(|| topic_missing(name.as_str()))?;
        tx.commit()
            .await
            .map_err(storage("commit creating a topic"))?;
        Ok(topic)
    }

    async fn update_topic(&self, name: &TopicName, spec: &TopicSpec, by: &str) -> Result<Topic> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let current = load_topic(&tx, name.as_str(), true)
            .await?
            .ok_or_else(|| topic_missing(name.as_str()))?;
        let now = to_micros(Utc::now());
        let mut version = i32::try_from(current.schema_version).unwrap_or(i32::MAX);
        if spec.schema != current.schema {
            version += 1;
            tx.execute(
                "INSERT INTO ev_schema (topic, version, schema_json, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &name.as_str(),
                    &version,
                    &spec.schema.as_ref().map(schema_text),
                    &now,
                    &by,
                ],
            )
            .await
            .map_err(storage("store a topic schema"))?;
        }
        tx.execute(
            "UPDATE ev_topic SET description = $2, schema_version = $3, retention_age = $4, \
             retention_count = $5, grants_json = $6, updated_at = $7, updated_by = $8 \
             WHERE name = $1",
            &[
                &name.as_str(),
                &spec.description,
                &version,
                &spec.retention.max_age_seconds.map(db_int),
                &spec.retention.max_count.map(db_int),
                &grants_text(&spec.grants),
                &now,
                &by,
            ],
        )
        .await
        .map_err(storage("update a topic"))?;
        let topic = load_topic(&tx, name.as_str(), false)
            .await?
            .ok_or_else(|| topic_missing(name.as_str()))?;
        tx.commit()
            .await
            .map_err(storage("commit updating a topic"))?;
        Ok(topic)
    }

    async fn topic(&self, name: &TopicName) -> Result<Option<Topic>> {
        let client = self.client().await?;
        load_topic(&client, name.as_str(), false).await
    }

    async fn topics(&self) -> Result<Vec<Topic>> {
        let client = self.client().await?;
        client
            .query(&format!("{TOPIC_SELECT} ORDER BY t.name"), &[])
            .await
            .map_err(storage("read topics"))?
            .iter()
            .map(|r| topic_row(r)?.into_topic())
            .collect()
    }

    async fn schema_versions(&self, name: &TopicName) -> Result<Vec<SchemaVersion>> {
        let client = self.client().await?;
        let exists = client
            .query_opt("SELECT 1 FROM ev_topic WHERE name = $1", &[&name.as_str()])
            .await
            .map_err(storage("read a topic"))?
            .is_some();
        if !exists {
            return Err(topic_missing(name.as_str()));
        }
        client
            .query(
                "SELECT version, schema_json, created_at, created_by FROM ev_schema \
                 WHERE topic = $1 ORDER BY version",
                &[&name.as_str()],
            )
            .await
            .map_err(storage("read schema versions"))?
            .iter()
            .map(|r| {
                let version: i32 = col(r, 0)?;
                Ok(SchemaVersion {
                    version: u32::try_from(version)
                        .map_err(|_| super::corrupt(format_args!("schema version {version}")))?,
                    schema: parse_schema(col(r, 1)?)?,
                    created_at: col(r, 2)?,
                    created_by: col(r, 3)?,
                })
            })
            .collect()
    }

    async fn delete_topic(&self, name: &TopicName, force: bool) -> Result<()> {
        if force {
            let topic = self
                .topic(name)
                .await?
                .ok_or_else(|| topic_missing(name.as_str()))?;
            // Most events go in chunks; the last transaction takes what is left.
            self.delete_through(name, topic.last_seq).await?;
        }
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        if load_topic(&tx, name.as_str(), true).await?.is_none() {
            return Err(topic_missing(name.as_str()));
        }
        if !force && let Some((min, max)) = seq_extent(&tx, name.as_str()).await? {
            return Err(Error::conflict(format!(
                "topic {name} holds {} events; delete it with force to remove them too",
                max - min + 1
            )));
        }
        for sql in [
            "DELETE FROM ev_event WHERE topic = $1",
            "DELETE FROM ev_key_last WHERE topic = $1",
            "DELETE FROM ev_schema WHERE topic = $1",
            "DELETE FROM ev_topic WHERE name = $1",
        ] {
            tx.execute(sql, &[&name.as_str()])
                .await
                .map_err(storage("delete a topic"))?;
        }
        tx.commit()
            .await
            .map_err(storage("commit deleting a topic"))
    }

    async fn append(&self, events: Vec<Append>, now: DateTime<Utc>) -> Result<Vec<AppendOutcome>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let now = to_micros(now);
        let mut last_try = false;
        loop {
            match self.try_append(&events, now, last_try).await? {
                Attempt::Stored(plan, seqs, heads) => {
                    return Ok(plan.outcomes(events, &seqs, &heads));
                }
                Attempt::Raced => last_try = true,
            }
        }
    }

    async fn read_after(
        &self,
        topic: &TopicName,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM ev_event WHERE topic = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3"
            ))
            .await
            .map_err(storage("read events"))?;
        let rows = client
            .query(
                &statement,
                &[&topic.as_str(), &db_int(after_seq), &db_int(limit as u64)],
            )
            .await
            .map_err(storage("read events"))?;
        events(&rows, topic)
    }

    async fn query(&self, query: &HistoryQuery) -> Result<HistoryPage> {
        let client = self.client().await?;
        let topic = query.topic.as_str();
        let first_at_start = match query.start {
            Some(t) => Some(first_at(&client, topic, t).await?),
            None => None,
        };
        let first_at_end = match query.end {
            Some(t) => Some(first_at(&client, topic, t).await?),
            None => None,
        };
        let extent = Extent {
            seqs: seq_extent(&client, topic).await?,
            first_at_start,
            first_at_end,
        };
        let mut scan = Scan::new(query, extent, false);
        while let Some(chunk) = scan.next_chunk() {
            let rows = read_chunk(&client, &query.topic, scan.filter(), chunk).await?;
            scan.take(chunk, rows);
        }
        Ok(scan.finish())
    }

    async fn last_per_key(&self, topic: &TopicName, pattern: &Pattern) -> Result<Vec<StoredEvent>> {
        let client = self.client().await?;
        // Every key that can match, then the pattern decides. The join skips a key whose newest
        // event retention has removed (then all its events are gone: only prefixes go).
        let (lower, upper) = key_range(pattern);
        let statement = client
            .prepare_cached(&format!(
                "SELECT {} FROM ev_key_last k JOIN ev_event e \
                 ON e.topic = k.topic AND e.seq = k.seq AND e.routing_key = k.routing_key \
                 WHERE k.topic = $1 AND k.routing_key >= $2 AND k.routing_key < $3 \
                 ORDER BY k.routing_key",
                event_columns_of_e()
            ))
            .await
            .map_err(storage("read events"))?;
        let rows = client
            .query(&statement, &[&topic.as_str(), &lower, &upper])
            .await
            .map_err(storage("read events"))?;
        let mut found = events(&rows, topic)?;
        found.retain(|e| pattern.matches(&e.routing_key));
        Ok(found)
    }

    async fn event_count(&self, topic: &TopicName) -> Result<u64> {
        let client = self.client().await?;
        Ok(seq_extent(&client, topic.as_str())
            .await?
            .map_or(0, |(min, max)| max - min + 1))
    }

    async fn enforce_retention(&self, now: DateTime<Utc>) -> Result<u64> {
        let topics: Vec<Topic> = {
            let client = self.client().await?;
            client
                .query(
                    &format!(
                        "{TOPIC_SELECT} WHERE t.retention_age IS NOT NULL \
                         OR t.retention_count IS NOT NULL ORDER BY t.name"
                    ),
                    &[],
                )
                .await
                .map_err(storage("read topics"))?
                .iter()
                .map(|r| topic_row(r)?.into_topic())
                .collect::<Result<_>>()?
        };
        let mut removed = 0;
        for topic in topics {
            let first_young = match age_cutoff(&topic.retention, now) {
                Some(cutoff) => {
                    let client = self.client().await?;
                    Some(first_at(&client, topic.name.as_str(), cutoff).await?)
                }
                None => None,
            };
            let cut = retention_cut(&topic.retention, topic.last_seq, first_young);
            if cut > 0 {
                removed += self.delete_through(&topic.name, cut).await?;
            }
        }
        Ok(removed)
    }
}

/// Runs one statement of a history scan.
async fn read_chunk(
    client: &Object,
    topic: &TopicName,
    filter: &KeyFilter,
    chunk: Chunk,
) -> Result<Vec<StoredEvent>> {
    // PostgreSQL: LIMIT NULL is no limit.
    let limit = chunk.limit.map(|l| db_int(l as u64));
    let (after, through) = (db_int(chunk.after), db_int(chunk.through));
    let name = topic.as_str();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&name, &after, &through, &limit];
    let narrowing = match filter {
        KeyFilter::All | KeyFilter::Unnarrowed => "",
        KeyFilter::Literal(key) => {
            params.push(key);
            "AND routing_key = $5"
        }
        KeyFilter::Prefix { exact, like } => {
            params.push(exact);
            params.push(like);
            "AND (routing_key = $5 OR routing_key LIKE $6 ESCAPE '\\')"
        }
    };
    let statement = client
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM ev_event WHERE topic = $1 AND seq > $2 AND seq <= $3 \
             {narrowing} ORDER BY seq LIMIT $4"
        ))
        .await
        .map_err(storage("read events"))?;
    let rows = client
        .query(&statement, &params)
        .await
        .map_err(storage("read events"))?;
    events(&rows, topic)
}
