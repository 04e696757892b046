//! The repository in a PostgreSQL database, shared by every hub server process that names it.
//!
//! Every call takes a connection from a pool; writes run in `READ COMMITTED` transactions (each
//! statement sees what committed before it, which the locking below relies on). Cross-process
//! atomicity comes from row locks and two transaction-scoped advisory locks:
//! * migrations run under [`MIGRATION_LOCK`], so processes starting together migrate once;
//! * event ids are taken under [`EVENT_LOCK`], held to commit, so ids are unique and increase in
//!   commit order across processes;
//! * a job run is submitted under a lock on the job's row, taken by an upsert that inserts the
//!   row when absent (so there is always a row to lock); it is claimed, suspended or deleted under
//!   `SELECT … FOR UPDATE` on that row.
//!
//! Transactions take their locks in one order, so two of them never wait for each other: the hub
//! row, then job rows, then event rows, then [`EVENT_LOCK`]. The hub row is locked `FOR NO KEY
//! UPDATE` (not `FOR UPDATE`) by changes that keep it, because inserting an event takes the
//! `FOR KEY SHARE` lock its foreign key needs; only deleting the hub takes `FOR UPDATE`.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::Object;
use sluice_model::definition::{
    Action, Channel, ChannelColumn, ChannelTable, Definitions, Hub, Location, PropValue,
};
use sluice_model::event::table_state;
use sluice_model::{
    AccessLevel, ChannelName, EventId, EventState, EventType, HubName, JobName, JobState,
    LocGroupName, LocationName, ResultName, TableName,
};
use sluice_store::postgres::{PgDatabase, PgMigrations};
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{GenericClient, Row, Transaction};

use crate::migrations::PG_MIGRATIONS;
use crate::process::owner_gone;
use crate::{
    ApiKeyRecord, ApplySummary, CommitMark, ConnectorRecord, EventFilter, EventRecord, EventResult,
    HubRecord, JobRecord, NewEvent, Owner, ReapedJob, RepoError, RepoErrorKind, Result, StartedJob,
    SubmittedJob, TokenRecord, UserRecord, abandoned_response, job_state_after, request_ending,
};

mod definitions;
mod identity;
mod jobs;
mod props;
mod runs;
mod settings;

/// Advisory lock key held (per transaction) while migrating: "sluice" and 1.
const MIGRATION_LOCK: i64 = 0x736c_7569_6365_0001;
/// Advisory lock key held (per transaction, to commit) while taking an event id: "sluice" and 2.
const EVENT_LOCK: i64 = 0x736c_7569_6365_0002;

/// The repository's migrations, recorded in `schema_migration`.
const MIGRATIONS: PgMigrations = PgMigrations {
    what: "repository",
    subject: "the schema",
    table: "schema_migration",
    lock: MIGRATION_LOCK,
    list: PG_MIGRATIONS,
};

/// The repository in a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresRepository {
    db: PgDatabase,
}

impl std::fmt::Debug for PostgresRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresRepository")
            .field("target", &self.db.target())
            .finish()
    }
}

fn storage(error: tokio_postgres::Error, what: &str) -> RepoError {
    RepoError::new(RepoErrorKind::Storage, format!("repository: {what}")).with_source(error)
}

fn corrupt(what: impl std::fmt::Display) -> RepoError {
    RepoError::new(
        RepoErrorKind::Storage,
        format!("repository holds an invalid {what}"),
    )
}

fn name<T: FromStr>(s: &str, what: &str) -> Result<T> {
    s.parse().map_err(|_| corrupt(format_args!("{what} {s:?}")))
}

fn opt_name<T: FromStr>(s: Option<String>, what: &str) -> Result<Option<T>> {
    s.map(|s| name(&s, what)).transpose()
}

/// Column `i` of `row`; a type mismatch is a corrupt repository, never a panic.
fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    row.try_get(i)
        .map_err(|e| storage(e, &format!("read column {i}")))
}

fn hub_missing(hub: &HubName) -> RepoError {
    RepoError::new(RepoErrorKind::NotFound, format!("hub {hub} does not exist"))
}

impl PostgresRepository {
    /// Connects to the database at `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`) and
    /// brings its schema up to date. The tables live in the connection's current schema (`public`
    /// unless the URL sets `options=-csearch_path=…`). TLS (`sslmode=require`) is refused for now.
    /// A process that also keeps other stores in the database opens it once
    /// ([`PgDatabase::new`]) and calls [`PostgresRepository::on`] instead.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::on(PgDatabase::new(url, "repository")?).await
    }

    /// The repository in `db`, taking its connections from `db`'s pool, with its schema brought
    /// up to date.
    pub async fn on(db: PgDatabase) -> Result<Self> {
        db.migrate(&MIGRATIONS).await?;
        Ok(PostgresRepository { db })
    }

    /// The newest schema version applied.
    pub async fn schema_version(&self) -> Result<u32> {
        Ok(self
            .db
            .schema_version("repository", MIGRATIONS.table)
            .await?)
    }

    async fn client(&self) -> Result<Object> {
        Ok(self.db.client("repository").await?)
    }
}

async fn begin(client: &mut Object) -> Result<deadpool_postgres::Transaction<'_>> {
    sluice_store::postgres::begin(client)
        .await
        .map_err(|e| storage(e, "begin"))
}

async fn commit(tx: deadpool_postgres::Transaction<'_>, what: &str) -> Result<()> {
    tx.commit().await.map_err(|e| storage(e, what))
}

/// Locks the hub's row in `mode` (`FOR KEY SHARE`, `FOR NO KEY UPDATE`, `FOR UPDATE`);
/// `NotFound` when there is no such hub.
async fn lock_hub(tx: &Transaction<'_>, hub: &HubName, mode: &str) -> Result<()> {
    let row = tx
        .query_opt(
            &format!("SELECT 1 FROM hub WHERE hub_name = $1 {mode}"),
            &[&hub.as_str()],
        )
        .await
        .map_err(|e| storage(e, "lock a hub"))?;
    row.map(|_| ()).ok_or_else(|| hub_missing(hub))
}

/// Inserts an event with a unique id (at least one microsecond after the newest), under
/// [`EVENT_LOCK`] so processes sharing the database never take the same id. `NotFound` when the
/// hub does not exist.
async fn insert_event(tx: &Transaction<'_>, event: &NewEvent) -> Result<EventId> {
    lock_hub(tx, &event.hub, "FOR KEY SHARE").await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&EVENT_LOCK])
        .await
        .map_err(|e| storage(e, "lock event ids"))?;
    let row = tx
        .query_one("SELECT max(ev_id) FROM event", &[])
        .await
        .map_err(|e| storage(e, "read event ids"))?;
    let newest: Option<String> = col(&row, 0)?;
    let mut id = EventId::now();
    if let Some(newest) = newest {
        let newest: EventId = name(&newest, "event id")?;
        if newest >= id {
            id = newest.next();
        }
    }
    let now = id.instant();
    let finish = event.state.is_final().then_some(now);
    tx.execute(
        "INSERT INTO event (ev_id, hub_name, ev_type, user_name, description, chn_name, loc_name, loc_name_2, \
         job_name, ev_state, start_tstamp, finish_tstamp, body, last_updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $11)",
        &[
            &id.to_string(),
            &event.hub.as_str(),
            &event.event_type.as_str(),
            &event.user,
            &event.description,
            &event.channel.as_ref().map(|c| c.as_str()),
            &event.loc.as_ref().map(|l| l.as_str()),
            &event.loc2.as_ref().map(|l| l.as_str()),
            &event.job.as_ref().map(|j| j.as_str()),
            &event.state.as_str(),
            &now,
            &finish,
            &event.body.to_string(),
        ],
    )
    .await
    .map_err(|e| storage(e, "post an event"))?;
    Ok(id)
}

const USER_COLUMNS: &str = "user_name, access_level, password_hash, created, creator";

fn user_record(r: &Row) -> Result<UserRecord> {
    Ok(UserRecord {
        name: col(r, 0)?,
        level: name(&col::<String>(r, 1)?, "access level")?,
        password_hash: col(r, 2)?,
        created: col(r, 3)?,
        creator: col(r, 4)?,
    })
}

const CONNECTOR_COLUMNS: &str = "hub_name, chn_name, created, paused, schedule_type, sync_frequency, \
     daily_sync_time, schema_change_handling, schema_overlay, setup_state, setup_tests";

fn connector_record(r: &Row) -> Result<ConnectorRecord> {
    let json = |i: usize, what: &str| -> Result<serde_json::Value> {
        let text: String = col(r, i)?;
        serde_json::from_str(&text).map_err(|_| corrupt(format_args!("connector {what} {text:?}")))
    };
    let frequency: i32 = col(r, 5)?;
    Ok(ConnectorRecord {
        hub: name(&col::<String>(r, 0)?, "hub name")?,
        channel: name(&col::<String>(r, 1)?, "channel name")?,
        created: col(r, 2)?,
        paused: col(r, 3)?,
        schedule_type: col(r, 4)?,
        sync_frequency: u32::try_from(frequency)
            .map_err(|_| corrupt(format_args!("sync frequency {frequency}")))?,
        daily_sync_time: col(r, 6)?,
        schema_change_handling: col(r, 7)?,
        schema_overlay: json(8, "schema overlay")?,
        setup_state: col(r, 9)?,
        setup_tests: json(10, "setup tests")?,
    })
}

async fn write_connector(tx: &Transaction<'_>, c: &ConnectorRecord, replace: bool) -> Result<()> {
    let conflict = if replace {
        "DO UPDATE SET paused = excluded.paused, schedule_type = excluded.schedule_type, \
         sync_frequency = excluded.sync_frequency, daily_sync_time = excluded.daily_sync_time, \
         schema_change_handling = excluded.schema_change_handling, \
         schema_overlay = excluded.schema_overlay, setup_state = excluded.setup_state, \
         setup_tests = excluded.setup_tests"
    } else {
        "DO NOTHING"
    };
    let frequency = i32::try_from(c.sync_frequency).map_err(|_| {
        RepoError::new(
            RepoErrorKind::Storage,
            format!("sync frequency {} is too large", c.sync_frequency),
        )
    })?;
    tx.execute(
        &format!(
            "INSERT INTO connector ({CONNECTOR_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (hub_name, chn_name) {conflict}"
        ),
        &[
            &c.hub.as_str(),
            &c.channel.as_str(),
            &c.created,
            &c.paused,
            &c.schedule_type,
            &frequency,
            &c.daily_sync_time,
            &c.schema_change_handling,
            &c.schema_overlay.to_string(),
            &c.setup_state,
            &c.setup_tests.to_string(),
        ],
    )
    .await
    .map_err(|e| storage(e, "store a connector"))?;
    Ok(())
}

const API_KEY_COLUMNS: &str = "key_id, secret_hash, access_level, created, creator, description";

fn api_key_record(r: &Row) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        key: col(r, 0)?,
        secret_hash: col(r, 1)?,
        level: name(&col::<String>(r, 2)?, "access level")?,
        created: col(r, 3)?,
        creator: col(r, 4)?,
        description: col(r, 5)?,
    })
}

const TOKEN_COLUMNS: &str = "token_hash, user_name, kind, created, expires";

fn token_record(r: &Row) -> Result<TokenRecord> {
    Ok(TokenRecord {
        hash: col(r, 0)?,
        user: col(r, 1)?,
        kind: col(r, 2)?,
        created: col(r, 3)?,
        expires: col(r, 4)?,
    })
}

const JOB_COLUMNS: &str = "job_name, job_state, last_ev_id, run_begin, run_end, num_runs";

fn job_record(r: &Row) -> Result<JobRecord> {
    let runs: i64 = col(r, 5)?;
    Ok(JobRecord {
        name: name(&col::<String>(r, 0)?, "job name")?,
        state: name(&col::<String>(r, 1)?, "job state")?,
        last_event: opt_name(col(r, 2)?, "event id")?,
        run_begin: col(r, 3)?,
        run_end: col(r, 4)?,
        num_runs: u64::try_from(runs).unwrap_or(0),
    })
}

const EVENT_COLUMNS: &str = "ev_id, hub_name, ev_type, user_name, description, chn_name, loc_name, loc_name_2, \
     job_name, ev_state, num_retries, response, start_tstamp, finish_tstamp, body, canceled";

fn event_record(r: &Row) -> Result<EventRecord> {
    let body: String = col(r, 14)?;
    let retries: i32 = col(r, 10)?;
    Ok(EventRecord {
        id: name(&col::<String>(r, 0)?, "event id")?,
        hub: name(&col::<String>(r, 1)?, "hub name")?,
        event_type: name(&col::<String>(r, 2)?, "event type")?,
        user: col(r, 3)?,
        description: col(r, 4)?,
        channel: opt_name(col(r, 5)?, "channel name")?,
        loc: opt_name(col(r, 6)?, "location name")?,
        loc2: opt_name(col(r, 7)?, "location name")?,
        job: opt_name(col(r, 8)?, "job name")?,
        state: name(&col::<String>(r, 9)?, "event state")?,
        num_retries: u32::try_from(retries).unwrap_or(0),
        response: col(r, 11)?,
        start: col(r, 12)?,
        finish: col(r, 13)?,
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        canceled: col(r, 15)?,
        results: Vec::new(),
    })
}

fn result_record(r: &Row) -> Result<EventResult> {
    let t: String = col(r, 0)?;
    Ok(EventResult {
        table: if t.is_empty() {
            None
        } else {
            Some(name(&t, "table name")?)
        },
        name: name(&col::<String>(r, 1)?, "result name")?,
        value: col(r, 2)?,
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
        for (i, (version, _, _)) in PG_MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1);
        }
    }
}
