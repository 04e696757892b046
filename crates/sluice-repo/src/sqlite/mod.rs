//! The repository in one SQLite file, in WAL mode so readers never wait for the writer. Every call
//! runs on a blocking thread; write transactions are `BEGIN IMMEDIATE` so concurrent sluice
//! processes serialize on the file lock instead of failing half-way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use sluice_model::definition::{
    Action, Channel, ChannelColumn, ChannelTable, Definitions, Hub, Location, PropValue,
};
use sluice_model::event::table_state;
use sluice_model::{
    AccessLevel, ChannelName, EventId, EventState, EventType, HubName, JobName, JobState,
    LocGroupName, LocationName, ResultName, TableName,
};

use crate::migrations::MIGRATIONS;
use crate::process::owner_gone;
use crate::{
    ApiKeyRecord, ApplySummary, CommitMark, ConnectorRecord, EventFilter, EventRecord, EventResult,
    HubRecord, JobRecord, NewEvent, Owner, ReapedJob, RepoError, RepoErrorKind, Result, StartedJob,
    SubmittedJob, TokenRecord, UserRecord, abandoned_response, job_state_after, request_ending,
};
use sluice_store::sqlite::{AppliedAt, SqliteMigrations};

mod definitions;
mod identity;
mod jobs;
mod props;
mod runs;
mod settings;

/// The repository in a SQLite file.
#[derive(Clone)]
pub struct SqliteRepository {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteRepository")
            .field("path", &self.path)
            .finish()
    }
}

fn storage(error: rusqlite::Error, what: &str) -> RepoError {
    RepoError::new(RepoErrorKind::Storage, format!("repository: {what}")).with_source(error)
}

fn corrupt(what: impl std::fmt::Display) -> RepoError {
    RepoError::new(
        RepoErrorKind::Storage,
        format!("repository holds an invalid {what}"),
    )
}

const TS_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

fn ts(t: DateTime<Utc>) -> String {
    t.format(TS_FORMAT).to_string()
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f")
        .map(|n| n.and_utc())
        .map_err(|_| corrupt(format_args!("timestamp {s:?}")))
}

fn name<T: std::str::FromStr>(s: &str, what: &str) -> Result<T> {
    s.parse().map_err(|_| corrupt(format_args!("{what} {s:?}")))
}

fn opt_name<T: std::str::FromStr>(s: Option<String>, what: &str) -> Result<Option<T>> {
    s.map(|s| name(&s, what)).transpose()
}

impl SqliteRepository {
    /// Opens (creating when needed) the repository at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut conn = sluice_store::sqlite::open(
            &path,
            "repository",
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )?;
        sluice_store::sqlite::migrate(&mut conn, &MIGRATION_SET)?;
        Ok(SqliteRepository {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The newest schema version applied.
    pub fn schema_version(&self) -> Result<u32> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT max(version) FROM schema_migration", [], |r| {
            r.get(0)
        })
        .map_err(|e| storage(e, "read the schema version"))
    }

    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            work(&mut conn)
        })
        .await
        .map_err(|e| {
            RepoError::new(
                RepoErrorKind::Storage,
                format!("repository worker failed: {e}"),
            )
        })?
    }
}

/// The repository's migrations, recorded in `schema_migration`.
const MIGRATION_SET: SqliteMigrations = SqliteMigrations {
    what: "repository",
    table: "schema_migration",
    applied_at: AppliedAt::Text,
    list: MIGRATIONS,
};

/// Inserts an event with a unique id (at least one microsecond after the newest). `NotFound` when
/// the hub does not exist.
fn insert_event(tx: &Transaction<'_>, event: &NewEvent) -> Result<EventId> {
    let hub_exists: bool = tx
        .query_row(
            "SELECT count(*) > 0 FROM hub WHERE hub_name = ?1",
            [event.hub.as_str()],
            |r| r.get(0),
        )
        .map_err(|e| storage(e, "read a hub"))?;
    if !hub_exists {
        return Err(hub_missing(&event.hub));
    }
    let newest: Option<String> = tx
        .query_row("SELECT max(ev_id) FROM event", [], |r| r.get(0))
        .map_err(|e| storage(e, "read event ids"))?;
    let mut id = EventId::now();
    if let Some(newest) = newest {
        let newest: EventId = name(&newest, "event id")?;
        if newest >= id {
            id = newest.next();
        }
    }
    let now = ts(id.instant());
    let finish = event.state.is_final().then(|| now.clone());
    tx.execute(
        "INSERT INTO event (ev_id, hub_name, ev_type, user_name, description, chn_name, loc_name, loc_name_2, \
         job_name, ev_state, start_tstamp, finish_tstamp, body, last_updated) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?11)",
        params![
            id.to_string(),
            event.hub.as_str(),
            event.event_type.as_str(),
            event.user,
            event.description,
            event.channel.as_ref().map(|c| c.as_str()),
            event.loc.as_ref().map(|l| l.as_str()),
            event.loc2.as_ref().map(|l| l.as_str()),
            event.job.as_ref().map(|j| j.as_str()),
            event.state.as_str(),
            now,
            finish,
            event.body.to_string(),
        ],
    )
    .map_err(|e| storage(e, "post an event"))?;
    Ok(id)
}

fn user_from_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn user_record(
    (n, level, hash, created, creator): (String, String, String, String, String),
) -> Result<UserRecord> {
    Ok(UserRecord {
        name: n,
        level: name(&level, "access level")?,
        password_hash: hash,
        created: parse_ts(&created)?,
        creator,
    })
}

fn token_record(
    (hash, user, kind, created, expires): (String, String, String, String, String),
) -> Result<TokenRecord> {
    Ok(TokenRecord {
        hash,
        user,
        kind,
        created: parse_ts(&created)?,
        expires: parse_ts(&expires)?,
    })
}

const JOB_COLUMNS: &str = "job_name, job_state, last_ev_id, run_begin, run_end, num_runs";

type JobRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn job_record((n, s, ev, begin, end, runs): JobRow) -> Result<JobRecord> {
    Ok(JobRecord {
        name: name(&n, "job name")?,
        state: name(&s, "job state")?,
        last_event: opt_name(ev, "event id")?,
        run_begin: begin.as_deref().map(parse_ts).transpose()?,
        run_end: end.as_deref().map(parse_ts).transpose()?,
        num_runs: runs as u64,
    })
}

fn begin(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| storage(e, "begin"))
}

fn hub_missing(hub: &HubName) -> RepoError {
    RepoError::new(RepoErrorKind::NotFound, format!("hub {hub} does not exist"))
}

const EVENT_COLUMNS: &str = "ev_id, hub_name, ev_type, user_name, description, chn_name, loc_name, loc_name_2, \
     job_name, ev_state, num_retries, response, start_tstamp, finish_tstamp, body, canceled";

fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Vec<Option<String>>> {
    (0..16)
        .map(|i| match r.get_ref(i)? {
            rusqlite::types::ValueRef::Null => Ok(None),
            rusqlite::types::ValueRef::Integer(n) => Ok(Some(n.to_string())),
            _ => r.get::<_, String>(i).map(Some),
        })
        .collect()
}

fn event_record(cols: Vec<Option<String>>) -> Result<EventRecord> {
    let get = |i: usize| cols[i].clone().unwrap_or_default();
    Ok(EventRecord {
        id: name(&get(0), "event id")?,
        hub: name(&get(1), "hub name")?,
        event_type: name(&get(2), "event type")?,
        user: get(3),
        description: get(4),
        channel: opt_name(cols[5].clone(), "channel name")?,
        loc: opt_name(cols[6].clone(), "location name")?,
        loc2: opt_name(cols[7].clone(), "location name")?,
        job: opt_name(cols[8].clone(), "job name")?,
        state: name(&get(9), "event state")?,
        num_retries: get(10).parse().unwrap_or(0),
        response: cols[11].clone(),
        start: parse_ts(&get(12))?,
        finish: cols[13].as_deref().map(parse_ts).transpose()?,
        body: serde_json::from_str(&get(14)).unwrap_or(serde_json::Value::Null),
        canceled: get(15) == "1",
        results: Vec::new(),
    })
}

fn read_results(conn: &Connection, ev_id: &str, table: Option<&str>) -> Result<Vec<EventResult>> {
    let what = "read event results";
    let mut stmt = conn
        .prepare_cached(
            "SELECT tbl_name, res_name, res_value FROM event_result WHERE ev_id = ?1 AND (?2 IS NULL OR tbl_name = ?2) ORDER BY tbl_name, rowid",
        )
        .map_err(|e| storage(e, what))?;
    let rows: Vec<(String, String, String)> = stmt
        .query_map(params![ev_id, table], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(|e| storage(e, what))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| storage(e, what))?;
    rows.into_iter()
        .map(|(t, n, v)| {
            Ok(EventResult {
                table: if t.is_empty() {
                    None
                } else {
                    Some(name(&t, "table name")?)
                },
                name: name(&n, "result name")?,
                value: v,
            })
        })
        .collect()
}

const CONNECTOR_COLUMNS: &str = "hub_name, chn_name, created, paused, schedule_type, sync_frequency, \
     daily_sync_time, schema_change_handling, schema_overlay, setup_state, setup_tests";

type ConnectorRow = (
    String,
    String,
    String,
    bool,
    String,
    u32,
    String,
    String,
    String,
    String,
    String,
);

fn connector_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConnectorRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ))
}

fn connector_record(row: ConnectorRow) -> Result<ConnectorRecord> {
    let (
        hub,
        channel,
        created,
        paused,
        schedule_type,
        sync_frequency,
        daily,
        handling,
        overlay,
        state,
        tests,
    ) = row;
    let json = |text: &str, what: &str| {
        serde_json::from_str(text).map_err(|_| corrupt(format_args!("connector {what} {text:?}")))
    };
    Ok(ConnectorRecord {
        hub: name(&hub, "hub name")?,
        channel: name(&channel, "channel name")?,
        created: parse_ts(&created)?,
        paused,
        schedule_type,
        sync_frequency,
        daily_sync_time: daily,
        schema_change_handling: handling,
        schema_overlay: json(&overlay, "schema overlay")?,
        setup_state: state,
        setup_tests: json(&tests, "setup tests")?,
    })
}

fn write_connector(
    conn: &Connection,
    c: &ConnectorRecord,
    replace: bool,
) -> rusqlite::Result<usize> {
    let conflict = if replace {
        "DO UPDATE SET paused = excluded.paused, schedule_type = excluded.schedule_type, \
         sync_frequency = excluded.sync_frequency, daily_sync_time = excluded.daily_sync_time, \
         schema_change_handling = excluded.schema_change_handling, \
         schema_overlay = excluded.schema_overlay, setup_state = excluded.setup_state, \
         setup_tests = excluded.setup_tests"
    } else {
        "DO NOTHING"
    };
    conn.execute(
        &format!(
            "INSERT INTO connector ({CONNECTOR_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT (hub_name, chn_name) {conflict}"
        ),
        params![
            c.hub.as_str(),
            c.channel.as_str(),
            ts(c.created),
            c.paused,
            c.schedule_type,
            c.sync_frequency,
            c.daily_sync_time,
            c.schema_change_handling,
            c.schema_overlay.to_string(),
            c.setup_state,
            c.setup_tests.to_string(),
        ],
    )
}

fn hub_exists(conn: &Connection, hub: &HubName) -> Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM hub WHERE hub_name = ?1",
        [hub.as_str()],
        |r| r.get(0),
    )
    .map_err(|e| storage(e, "read a hub"))
}

const API_KEY_COLUMNS: &str = "key_id, secret_hash, access_level, created, creator, description";

type ApiKeyRow = (String, String, String, String, String, String);

fn api_key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn api_key_record(
    (key, secret_hash, level, created, creator, description): ApiKeyRow,
) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        key,
        secret_hash,
        level: name(&level, "access level")?,
        created: parse_ts(&created)?,
        creator,
        description,
    })
}

/// An audit event (created `DONE`) of a hub.
fn audit(hub: &HubName, event_type: EventType, user: &str, description: String) -> NewEvent {
    NewEvent {
        hub: hub.clone(),
        event_type,
        user: user.to_owned(),
        description,
        channel: None,
        loc: None,
        loc2: None,
        job: None,
        state: EventState::Done,
        body: serde_json::json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, (version, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1);
        }
    }
}
