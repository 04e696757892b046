//! The event store in the hub repository's SQLite file (`hub.db`), beside the repository's own
//! tables and with its own migrations (`ev_schema_migrations`).
//!
//! The store opens the file with connections of its own: one writer and a few readers. Every
//! call runs on a blocking thread. WAL mode lets the readers (subscriptions catching up, history
//! queries) run while the writer commits; write transactions are `BEGIN IMMEDIATE`, so the hub
//! repository and other processes on the same file serialize on the file lock (waiting up to
//! 30 s) instead of failing half-way. `synchronous=FULL` makes every commit durable before
//! append returns. Timestamps are integers (microseconds since the epoch).
//!
//! Checkpoints (copying the WAL back into the database file) run on a connection of their own
//! after commits, at most every [`CHECKPOINT_INTERVAL`], so an append does not wait for them; the
//! writer checkpoints itself only when the WAL has grown past [`WAL_PAGES_LIMIT`] (writes never
//! paused long enough for a checkpoint to finish). The hub repository's connection keeps
//! SQLite's automatic checkpoints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{
    AppendOutcome, AppendPlan, Chunk, DELETE_CHUNK, EventRow, EventStore, Extent, Head,
    HistoryPage, HistoryQuery, KeyFilter, Scan, Slot, TopicRow, age_cutoff, db_int, db_u64,
    from_micros, grants_text, key_range, micros, parse_schema, retention_cut, schema_text,
    to_micros, topic_missing,
};
use crate::error::{Error, Result};
use crate::event::{Append, StoredEvent};
use crate::routing::Pattern;
use crate::topic::{SchemaVersion, Topic, TopicName, TopicSpec};
use sluice_store::sqlite::{AppliedAt, SqliteMigrations};

/// `(version, name, SQL)`, in order. Never edit a released migration; add the next one.
const MIGRATIONS: &[(u32, &str, &str)] = &[(
    1,
    "topics, schema versions and events",
    r#"
CREATE TABLE ev_topic (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT 0,
    retention_age INTEGER,
    retention_count INTEGER,
    grants_json TEXT NOT NULL,
    builtin INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0,
    last_ts INTEGER NOT NULL DEFAULT -9223372036854775808
);
CREATE TABLE ev_schema (
    topic TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema_json TEXT,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (topic, version)
) WITHOUT ROWID;
CREATE TABLE ev_event (
    topic TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    client_id INTEGER NOT NULL,
    routing_key TEXT NOT NULL,
    ts INTEGER NOT NULL,
    posted_by TEXT,
    payload TEXT NOT NULL,
    PRIMARY KEY (topic, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX ev_event_id ON ev_event (topic, id) WHERE client_id = 1;
CREATE INDEX ev_event_ts ON ev_event (topic, ts);
CREATE INDEX ev_event_key ON ev_event (topic, routing_key, seq);
"#,
)];

/// Read-only connections per store.
const READERS: usize = 2;
/// Background checkpoints start at most this often.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
/// WAL pages (4 KiB) beyond which the writer checkpoints before its next transaction.
const WAL_PAGES_LIMIT: i64 = 16_384;

const TOPIC_SELECT: &str = "SELECT t.name, t.description, t.schema_version, t.retention_age, \
     t.retention_count, t.grants_json, t.builtin, t.created_at, t.updated_at, t.updated_by, \
     t.last_seq, s.schema_json FROM ev_topic t \
     LEFT JOIN ev_schema s ON s.topic = t.name AND s.version = t.schema_version";

const EVENT_COLUMNS: &str = "seq, id, routing_key, ts, posted_by, payload";

/// The event store in a SQLite file.
pub struct SqliteEventStore {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<[Arc<Mutex<Connection>>]>,
    next_reader: AtomicUsize,
    checkpointer: Arc<Checkpointer>,
    path: PathBuf,
}

/// Copies the WAL back into the database file off the writer's path.
struct Checkpointer {
    conn: Mutex<Connection>,
    running: AtomicBool,
    /// When the last background checkpoint started.
    started: Mutex<Option<Instant>>,
    /// Pages in the WAL as of the last checkpoint.
    wal_pages: AtomicI64,
}

impl Checkpointer {
    /// Runs a passive checkpoint (it never waits for, or blocks, the writer or readers) and
    /// records how large the WAL is.
    fn run(&self, conn: &Connection) {
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
            Ok(pages) => self.wal_pages.store(pages, Ordering::Relaxed),
            Err(error) => {
                tracing::warn!(error = %error, "event store checkpoint failed; the next one retries");
            }
        }
    }
}

impl std::fmt::Debug for SqliteEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteEventStore")
            .field("path", &self.path)
            .finish()
    }
}

fn storage(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| Error::storage(format!("event store: {what}"), e)
}

fn lock(m: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Column `i` as a timestamp (integer microseconds).
fn ts_col(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    let m: i64 = r.get(i)?;
    DateTime::from_timestamp_micros(m).ok_or(rusqlite::Error::IntegralValueOutOfRange(i, m))
}

fn topic_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TopicRow> {
    Ok(TopicRow {
        name: r.get(0)?,
        description: r.get(1)?,
        schema_version: r.get(2)?,
        retention_age: r.get(3)?,
        retention_count: r.get(4)?,
        grants_json: r.get(5)?,
        builtin: r.get(6)?,
        created_at: ts_col(r, 7)?,
        updated_at: ts_col(r, 8)?,
        updated_by: r.get(9)?,
        last_seq: r.get(10)?,
        schema_json: r.get(11)?,
    })
}

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        routing_key: r.get(2)?,
        ts: ts_col(r, 3)?,
        posted_by: r.get(4)?,
        payload: r.get(5)?,
    })
}

fn load_topic(conn: &Connection, name: &str) -> Result<Option<Topic>> {
    conn.prepare_cached(&format!("{TOPIC_SELECT} WHERE t.name = ?1"))
        .and_then(|mut s| s.query_row([name], topic_row).optional())
        .map_err(storage("read a topic"))?
        .map(TopicRow::into_topic)
        .transpose()
}

/// The lowest and highest sequence numbers stored on `topic`.
fn seq_extent(conn: &Connection, topic: &str) -> Result<Option<(u64, u64)>> {
    let (min, max): (Option<i64>, Option<i64>) = conn
        .prepare_cached(
            "SELECT (SELECT min(seq) FROM ev_event WHERE topic = ?1), \
             (SELECT max(seq) FROM ev_event WHERE topic = ?1)",
        )
        .and_then(|mut s| s.query_row([topic], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(storage("read sequence numbers"))?;
    match (min, max) {
        (Some(min), Some(max)) => Ok(Some((
            db_u64(min, "sequence number")?,
            db_u64(max, "sequence number")?,
        ))),
        _ => Ok(None),
    }
}

/// The first sequence number on `topic` stamped at or after `at`.
fn first_at(conn: &Connection, topic: &str, at: DateTime<Utc>) -> Result<Option<u64>> {
    conn.prepare_cached(
        "SELECT seq FROM ev_event WHERE topic = ?1 AND ts >= ?2 ORDER BY ts, seq LIMIT 1",
    )
    .and_then(|mut s| {
        s.query_row(params![topic, micros(at)], |r| r.get::<_, i64>(0))
            .optional()
    })
    .map_err(storage("find events by time"))?
    .map(|seq| db_u64(seq, "sequence number"))
    .transpose()
}

/// The event store's migrations, recorded in `ev_schema_migrations`.
const MIGRATION_SET: SqliteMigrations = SqliteMigrations {
    what: "event store",
    table: "ev_schema_migrations",
    applied_at: AppliedAt::Micros,
    list: MIGRATIONS,
};

impl SqliteEventStore {
    /// Opens (creating when needed) the event tables in the SQLite file at `path`, normally the
    /// hub repository's `hub.db`, and brings them up to date. Blocks; call it off the async
    /// runtime (as [`open_event_store`](super::open_event_store) does).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut writer = sluice_store::sqlite::open(
            &path,
            "event store",
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -32768;",
        )?;
        writer.set_prepared_statement_cache_capacity(64);
        sluice_store::sqlite::migrate(&mut writer, &MIGRATION_SET)?;
        // Checkpoints run in the background (see the module docs), not in the writer's commits.
        writer
            .execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(storage("configure the connection"))?;
        let checkpoint = Connection::open(&path).map_err(storage("open the database file"))?;
        checkpoint
            .busy_timeout(Duration::from_secs(30))
            .map_err(storage("set the busy timeout"))?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(storage("open the database file for reading"))?;
            reader
                .busy_timeout(Duration::from_secs(30))
                .map_err(storage("set the busy timeout"))?;
            reader.set_prepared_statement_cache_capacity(64);
            readers.push(Arc::new(Mutex::new(reader)));
        }
        Ok(SqliteEventStore {
            writer: Arc::new(Mutex::new(writer)),
            readers: readers.into(),
            next_reader: AtomicUsize::new(0),
            checkpointer: Arc::new(Checkpointer {
                conn: Mutex::new(checkpoint),
                running: AtomicBool::new(false),
                started: Mutex::new(None),
                wal_pages: AtomicI64::new(0),
            }),
            path,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.writer.clone();
        let checkpointer = self.checkpointer.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut conn = lock(&conn);
            if checkpointer.wal_pages.load(Ordering::Relaxed) > WAL_PAGES_LIMIT {
                // Background checkpoints never caught up: copy everything now, while no
                // transaction of this process can add to the WAL, so the next one restarts it.
                checkpointer.run(&conn);
                checkpointer.wal_pages.store(0, Ordering::Relaxed);
            }
            work(&mut conn)
        })
        .await
        .map_err(|e| Error::storage("event store worker failed", e))?;
        self.checkpoint_soon();
        done
    }

    /// Starts a background checkpoint unless one is running or one started recently.
    fn checkpoint_soon(&self) {
        let checkpointer = &self.checkpointer;
        {
            let mut started = checkpointer
                .started
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if started.is_some_and(|t| t.elapsed() < CHECKPOINT_INTERVAL)
                || checkpointer.running.swap(true, Ordering::AcqRel)
            {
                return;
            }
            *started = Some(Instant::now());
        }
        let checkpointer = checkpointer.clone();
        tokio::task::spawn_blocking(move || {
            checkpointer.run(&lock(&checkpointer.conn));
            checkpointer.running.store(false, Ordering::Release);
        });
    }

    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let conn = self.readers[i].clone();
        tokio::task::spawn_blocking(move || work(&lock(&conn)))
            .await
            .map_err(|e| Error::storage("event store worker failed", e))?
    }

    /// Deletes the events of `topic` up to sequence number `through`, oldest first, one chunk
    /// per transaction so appends interleave; the number deleted.
    async fn delete_through(&self, topic: &TopicName, through: u64) -> Result<u64> {
        let mut removed = 0;
        loop {
            let name = topic.as_str().to_owned();
            let (n, done) = self
                .write(move |conn| {
                    let tx = conn
                        .transaction_with_behavior(TransactionBehavior::Immediate)
                        .map_err(storage("begin removing events"))?;
                    let Some((min, _)) = seq_extent(&tx, &name)? else {
                        return Ok((0, true));
                    };
                    if min > through {
                        return Ok((0, true));
                    }
                    let upto = through.min(min + DELETE_CHUNK - 1);
                    let n = tx
                        .prepare_cached(
                            "DELETE FROM ev_event WHERE topic = ?1 AND seq >= ?2 AND seq <= ?3",
                        )
                        .and_then(|mut s| s.execute(params![name, db_int(min), db_int(upto)]))
                        .map_err(storage("remove events"))?;
                    tx.commit().map_err(storage("commit removing events"))?;
                    Ok((n as u64, upto >= through))
                })
                .await?;
            removed += n;
            if done {
                return Ok(removed);
            }
        }
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn create_topic(
        &self,
        name: &TopicName,
        spec: &TopicSpec,
        builtin: bool,
        by: &str,
    ) -> Result<Topic> {
        let (name, spec, by) = (name.clone(), spec.clone(), by.to_owned());
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(storage("begin creating a topic"))?;
            let now = micros(Utc::now());
            let version: i64 = if spec.schema.is_some() { 1 } else { 0 };
            let inserted = tx
                .execute(
                    "INSERT INTO ev_topic (name, description, schema_version, retention_age, \
                     retention_count, grants_json, builtin, created_at, updated_at, updated_by) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9) ON CONFLICT (name) DO NOTHING",
                    params![
                        name.as_str(),
                        spec.description,
                        version,
                        spec.retention.max_age_seconds.map(db_int),
                        spec.retention.max_count.map(db_int),
                        grants_text(&spec.grants),
                        builtin,
                        now,
                        by,
                    ],
                )
                .map_err(storage("create a topic"))?;
            if inserted == 0 {
                return Err(Error::conflict(format!("topic {name} already exists")));
            }
            // Versions of an earlier topic of the same name are not this topic's.
            tx.execute("DELETE FROM ev_schema WHERE topic = ?1", [name.as_str()])
                .map_err(storage("create a topic"))?;
            if let Some(schema) = &spec.schema {
                tx.execute(
                    "INSERT INTO ev_schema (topic, version, schema_json, created_at, created_by) \
                     VALUES (?1, 1, ?2, ?3, ?4)",
                    params![name.as_str(), schema_text(schema), now, by],
                )
                .map_err(storage("store a topic schema"))?;
            }
            let topic =
                load_topic(&tx, name.as_str())?.ok_or_else(|| topic_missing(name.as_str()))?;
            tx.commit().map_err(storage("commit creating a topic"))?;
            Ok(topic)
        })
        .await
    }

    async fn update_topic(&self, name: &TopicName, spec: &TopicSpec, by: &str) -> Result<Topic> {
        let (name, spec, by) = (name.clone(), spec.clone(), by.to_owned());
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(storage("begin updating a topic"))?;
            let current =
                load_topic(&tx, name.as_str())?.ok_or_else(|| topic_missing(name.as_str()))?;
            let now = micros(Utc::now());
            let mut version = current.schema_version;
            if spec.schema != current.schema {
                version += 1;
                tx.execute(
                    "INSERT INTO ev_schema (topic, version, schema_json, created_at, created_by) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        name.as_str(),
                        version,
                        spec.schema.as_ref().map(schema_text),
                        now,
                        by
                    ],
                )
                .map_err(storage("store a topic schema"))?;
            }
            tx.execute(
                "UPDATE ev_topic SET description = ?2, schema_version = ?3, retention_age = ?4, \
                 retention_count = ?5, grants_json = ?6, updated_at = ?7, updated_by = ?8 \
                 WHERE name = ?1",
                params![
                    name.as_str(),
                    spec.description,
                    version,
                    spec.retention.max_age_seconds.map(db_int),
                    spec.retention.max_count.map(db_int),
                    grants_text(&spec.grants),
                    now,
                    by,
                ],
            )
            .map_err(storage("update a topic"))?;
            let topic =
                load_topic(&tx, name.as_str())?.ok_or_else(|| topic_missing(name.as_str()))?;
            tx.commit().map_err(storage("commit updating a topic"))?;
            Ok(topic)
        })
        .await
    }

    async fn topic(&self, name: &TopicName) -> Result<Option<Topic>> {
        let name = name.clone();
        self.read(move |conn| load_topic(conn, name.as_str())).await
    }

    async fn topics(&self) -> Result<Vec<Topic>> {
        self.read(|conn| {
            let rows = conn
                .prepare_cached(&format!("{TOPIC_SELECT} ORDER BY t.name"))
                .and_then(|mut s| {
                    s.query_map([], topic_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(storage("read topics"))?;
            rows.into_iter().map(TopicRow::into_topic).collect()
        })
        .await
    }

    async fn schema_versions(&self, name: &TopicName) -> Result<Vec<SchemaVersion>> {
        let name = name.clone();
        self.read(move |conn| {
            let exists = conn
                .prepare_cached("SELECT 1 FROM ev_topic WHERE name = ?1")
                .and_then(|mut s| s.exists([name.as_str()]))
                .map_err(storage("read a topic"))?;
            if !exists {
                return Err(topic_missing(name.as_str()));
            }
            let rows = conn
                .prepare_cached(
                    "SELECT version, schema_json, created_at, created_by FROM ev_schema \
                     WHERE topic = ?1 ORDER BY version",
                )
                .and_then(|mut s| {
                    s.query_map([name.as_str()], |r| {
                        Ok((
                            r.get::<_, u32>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            ts_col(r, 2)?,
                            r.get::<_, String>(3)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(storage("read schema versions"))?;
            rows.into_iter()
                .map(|(version, schema, created_at, created_by)| {
                    Ok(SchemaVersion {
                        version,
                        schema: parse_schema(schema)?,
                        created_at,
                        created_by,
                    })
                })
                .collect()
        })
        .await
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
        let name = name.clone();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(storage("begin deleting a topic"))?;
            if load_topic(&tx, name.as_str())?.is_none() {
                return Err(topic_missing(name.as_str()));
            }
            if !force && let Some((min, max)) = seq_extent(&tx, name.as_str())? {
                return Err(Error::conflict(format!(
                    "topic {name} holds {} events; delete it with force to remove them too",
                    max - min + 1
                )));
            }
            for sql in [
                "DELETE FROM ev_event WHERE topic = ?1",
                "DELETE FROM ev_schema WHERE topic = ?1",
                "DELETE FROM ev_topic WHERE name = ?1",
            ] {
                tx.execute(sql, [name.as_str()])
                    .map_err(storage("delete a topic"))?;
            }
            tx.commit().map_err(storage("commit deleting a topic"))
        })
        .await
    }

    async fn append(&self, events: Vec<Append>, now: DateTime<Utc>) -> Result<Vec<AppendOutcome>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let now = micros(to_micros(now));
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(storage("begin storing events"))?;
            let plan = {
                let mut find = tx
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM ev_event \
                         WHERE topic = ?1 AND id = ?2 AND client_id = 1"
                    ))
                    .map_err(storage("look up event ids"))?;
                AppendPlan::new(&events, |event| {
                    find.query_row(params![event.topic.as_str(), event.id], event_row)
                        .optional()
                        .map_err(storage("look up event ids"))?
                        .map(|row| row.into_event(&event.topic))
                        .transpose()
                })?
            };
            let mut heads = BTreeMap::new();
            {
                let mut bump = tx
                    .prepare_cached(
                        "UPDATE ev_topic SET last_seq = last_seq + ?1, last_ts = max(last_ts, ?2) \
                         WHERE name = ?3 RETURNING last_seq, last_ts",
                    )
                    .map_err(storage("number events"))?;
                let mut exists = tx
                    .prepare_cached("SELECT 1 FROM ev_topic WHERE name = ?1")
                    .map_err(storage("read a topic"))?;
                for (topic, &n) in &plan.new_per_topic {
                    if n == 0 {
                        if !exists
                            .exists([topic.as_str()])
                            .map_err(storage("read a topic"))?
                        {
                            return Err(topic_missing(topic.as_str()));
                        }
                        continue;
                    }
                    let (last_seq, last_ts): (i64, i64) = bump
                        .query_row(params![db_int(n), now, topic.as_str()], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()
                        .map_err(storage("number events"))?
                        .ok_or_else(|| topic_missing(topic.as_str()))?;
                    heads.insert(
                        topic.clone(),
                        Head {
                            last_seq: db_u64(last_seq, "sequence number")?,
                            timestamp: from_micros(last_ts)?,
                        },
                    );
                }
            }
            let seqs = plan.number(&events, &heads);
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO ev_event (topic, seq, id, client_id, routing_key, ts, posted_by, \
                         payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )
                    .map_err(storage("store events"))?;
                let mut stamp = (None::<&TopicName>, 0i64);
                for ((event, slot), &seq) in events.iter().zip(&plan.slots).zip(&seqs) {
                    if !matches!(slot, Slot::New) {
                        continue;
                    }
                    if stamp.0 != Some(&event.topic) {
                        let head = heads
                            .get(&event.topic)
                            .expect("every topic with new events has a head");
                        stamp = (Some(&event.topic), micros(head.timestamp));
                    }
                    insert
                        .execute(params![
                            event.topic.as_str(),
                            db_int(seq),
                            event.id,
                            event.client_id,
                            event.routing_key.as_str(),
                            stamp.1,
                            event.posted_by,
                            event.payload.get(),
                        ])
                        .map_err(storage("store events"))?;
                }
            }
            tx.commit().map_err(storage("commit storing events"))?;
            Ok(plan.outcomes(events, &seqs, &heads))
        })
        .await
    }

    async fn read_after(
        &self,
        topic: &TopicName,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let topic = topic.clone();
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM ev_event WHERE topic = ?1 AND seq > ?2 \
                     ORDER BY seq LIMIT ?3"
                ))
                .and_then(|mut s| {
                    s.query_map(
                        params![topic.as_str(), db_int(after_seq), db_int(limit as u64)],
                        event_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(storage("read events"))?;
            rows.into_iter().map(|r| r.into_event(&topic)).collect()
        })
        .await
    }

    async fn query(&self, query: &HistoryQuery) -> Result<HistoryPage> {
        let query = query.clone();
        self.read(move |conn| {
            let topic = query.topic.as_str();
            let extent = Extent {
                seqs: seq_extent(conn, topic)?,
                first_at_start: query.start.map(|t| first_at(conn, topic, t)).transpose()?,
                first_at_end: query.end.map(|t| first_at(conn, topic, t)).transpose()?,
            };
            let mut scan = Scan::new(&query, extent, true);
            while let Some(chunk) = scan.next_chunk() {
                let rows = read_chunk(conn, &query.topic, scan.filter(), chunk)?;
                scan.take(chunk, rows);
            }
            Ok(scan.finish())
        })
        .await
    }

    async fn last_per_key(&self, topic: &TopicName, pattern: &Pattern) -> Result<Vec<StoredEvent>> {
        let (topic, pattern) = (topic.clone(), pattern.clone());
        self.read(move |conn| {
            let keys: Vec<String> = match pattern.literal() {
                Some(key) => vec![key.to_owned()],
                None => {
                    // Distinct keys by skipping through the (topic, routing_key, seq) index:
                    // one index seek per key, however many events each key has.
                    let (lower, upper) = key_range(&pattern);
                    conn.prepare_cached(
                        "WITH RECURSIVE k(key) AS ( \
                           SELECT (SELECT min(routing_key) FROM ev_event \
                                   WHERE topic = ?1 AND routing_key >= ?2 AND routing_key < ?3) \
                           UNION ALL \
                           SELECT (SELECT min(routing_key) FROM ev_event \
                                   WHERE topic = ?1 AND routing_key > k.key AND routing_key < ?3) \
                           FROM k WHERE k.key IS NOT NULL) \
                         SELECT key FROM k WHERE key IS NOT NULL",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![topic.as_str(), lower, upper], |r| r.get(0))?
                            .collect::<rusqlite::Result<Vec<String>>>()
                    })
                    .map_err(storage("read routing keys"))?
                    .into_iter()
                    .filter(|k| pattern.matches_str(k))
                    .collect()
                }
            };
            let mut newest = conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM ev_event WHERE topic = ?1 AND routing_key = ?2 \
                     ORDER BY seq DESC LIMIT 1"
                ))
                .map_err(storage("read events"))?;
            let mut events = Vec::with_capacity(keys.len());
            for key in keys {
                if let Some(row) = newest
                    .query_row(params![topic.as_str(), key], event_row)
                    .optional()
                    .map_err(storage("read events"))?
                {
                    events.push(row.into_event(&topic)?);
                }
            }
            Ok(events)
        })
        .await
    }

    async fn event_count(&self, topic: &TopicName) -> Result<u64> {
        let topic = topic.clone();
        self.read(move |conn| {
            Ok(seq_extent(conn, topic.as_str())?.map_or(0, |(min, max)| max - min + 1))
        })
        .await
    }

    async fn enforce_retention(&self, now: DateTime<Utc>) -> Result<u64> {
        let topics = self
            .read(|conn| {
                conn.prepare_cached(&format!(
                    "{TOPIC_SELECT} WHERE t.retention_age IS NOT NULL OR t.retention_count IS NOT NULL \
                     ORDER BY t.name"
                ))
                .and_then(|mut s| {
                    s.query_map([], topic_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(storage("read topics"))?
                .into_iter()
                .map(TopicRow::into_topic)
                .collect::<Result<Vec<_>>>()
            })
            .await?;
        let mut removed = 0;
        for topic in topics {
            let first_young = match age_cutoff(&topic.retention, now) {
                Some(cutoff) => {
                    let name = topic.name.clone();
                    Some(
                        self.read(move |conn| first_at(conn, name.as_str(), cutoff))
                            .await?,
                    )
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
fn read_chunk(
    conn: &Connection,
    topic: &TopicName,
    filter: &KeyFilter,
    chunk: Chunk,
) -> Result<Vec<StoredEvent>> {
    // SQLite: a negative LIMIT is no limit.
    let limit = chunk.limit.map_or(-1, |l| db_int(l as u64));
    let (after, through) = (db_int(chunk.after), db_int(chunk.through));
    let name = topic.as_str();
    let range = "topic = ?1 AND seq > ?2 AND seq <= ?3";
    let result = match filter {
        KeyFilter::All | KeyFilter::Unnarrowed => conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM ev_event WHERE {range} ORDER BY seq LIMIT ?4"
            ))
            .and_then(|mut s| {
                s.query_map(params![name, after, through, limit], event_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            }),
        KeyFilter::Literal(key) => conn
            // The key's index finds its events in sequence order however rare the key is;
            // without the hint SQLite prefers the primary key and filters.
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM ev_event INDEXED BY ev_event_key \
                 WHERE {range} AND routing_key = ?5 ORDER BY seq LIMIT ?4"
            ))
            .and_then(|mut s| {
                s.query_map(params![name, after, through, limit, key], event_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            }),
        KeyFilter::Prefix { exact, like } => conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM ev_event WHERE {range} \
                 AND (routing_key = ?5 OR routing_key LIKE ?6 ESCAPE '\\') ORDER BY seq LIMIT ?4"
            ))
            .and_then(|mut s| {
                s.query_map(params![name, after, through, limit, exact, like], event_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            }),
    };
    result
        .map_err(storage("read events"))?
        .into_iter()
        .map(|r| r.into_event(topic))
        .collect()
}
