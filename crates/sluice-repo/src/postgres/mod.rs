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
use crate::{
    ApiKeyRecord, ApplySummary, CommitMark, ConnectorRecord, EventFilter, EventRecord, EventResult,
    HubRecord, JobRecord, NewEvent, Owner, ReapedJob, RepoError, RepoErrorKind, Result, StartedJob,
    SubmittedJob, TokenRecord, UserRecord, abandoned_response, job_state_after, request_ending,
};

mod definitions;
mod identity;
mod jobs;
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

fn prop_json(value: &PropValue) -> String {
    serde_json::to_string(value).expect("property values serialize")
}

fn parse_prop(text: &str) -> Result<PropValue> {
    serde_json::from_str(text).map_err(|_| corrupt(format_args!("property value {text:?}")))
}

async fn write_location(
    tx: &Transaction<'_>,
    hub: &HubName,
    loc: &Location,
    exists: bool,
) -> Result<()> {
    let what = "store a location";
    let (h, l) = (hub.as_str(), loc.name.as_str());
    if exists {
        tx.execute(
            "UPDATE location SET loc_class = $3, description = $4 WHERE hub_name = $1 AND loc_name = $2",
            &[&h, &l, &loc.class.as_str(), &loc.description],
        )
        .await
        .map_err(|e| storage(e, what))?;
        tx.execute(
            "DELETE FROM location_property WHERE hub_name = $1 AND loc_name = $2",
            &[&h, &l],
        )
        .await
        .map_err(|e| storage(e, what))?;
    } else {
        tx.execute(
            "INSERT INTO location (hub_name, loc_name, loc_class, description) VALUES ($1, $2, $3, $4)",
            &[&h, &l, &loc.class.as_str(), &loc.description],
        )
        .await
        .map_err(|e| storage(e, what))?;
    }
    for (prop, value) in &loc.props {
        tx.execute(
            "INSERT INTO location_property (hub_name, loc_name, prop_name, prop_value) VALUES ($1, $2, $3, $4)",
            &[&h, &l, prop, &prop_json(value)],
        )
        .await
        .map_err(|e| storage(e, what))?;
    }
    Ok(())
}

fn seq(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

async fn write_channel(tx: &Transaction<'_>, hub: &HubName, ch: &Channel) -> Result<()> {
    let what = "store a channel";
    let (h, c) = (hub.as_str(), ch.name.as_str());
    tx.execute(
        "DELETE FROM channel WHERE hub_name = $1 AND chn_name = $2",
        &[&h, &c],
    )
    .await
    .map_err(|e| storage(e, what))?;
    tx.execute(
        "INSERT INTO channel (hub_name, chn_name, description) VALUES ($1, $2, $3)",
        &[&h, &c, &ch.description],
    )
    .await
    .map_err(|e| storage(e, what))?;
    for (group, members) in &ch.loc_groups {
        tx.execute(
            "INSERT INTO loc_group (hub_name, chn_name, grp_name) VALUES ($1, $2, $3)",
            &[&h, &c, &group.as_str()],
        )
        .await
        .map_err(|e| storage(e, what))?;
        for (i, loc) in members.iter().enumerate() {
            tx.execute(
                "INSERT INTO loc_group_member (hub_name, chn_name, grp_name, loc_name, member_seq) VALUES ($1, $2, $3, $4, $5)",
                &[&h, &c, &group.as_str(), &loc.as_str(), &seq(i)],
            )
            .await
            .map_err(|e| {
                storage(
                    e,
                    &format!("store location group {group} (is location {loc} defined?)"),
                )
            })?;
        }
    }
    for table in ch.tables.values() {
        tx.execute(
            "INSERT INTO channel_table (hub_name, chn_name, tbl_name, tbl_base_name, tbl_group, discover_cols) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &h,
                &c,
                &table.name.as_str(),
                &table.base_name.as_ref().map(|b| b.as_str()),
                &table.table_group.as_ref().map(|g| g.as_str()),
                &table.columns.is_none(),
            ],
        )
        .await
        .map_err(|e| storage(e, what))?;
        for (i, column) in table.columns.iter().flatten().enumerate() {
            tx.execute(
                "INSERT INTO channel_column (hub_name, chn_name, tbl_name, col_name, col_sequence, col_key, col_datatype, col_nullable) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &h,
                    &c,
                    &table.name.as_str(),
                    &column.name.as_str(),
                    &seq(i + 1),
                    &i32::try_from(column.key).unwrap_or(i32::MAX),
                    &column.data_type.to_string(),
                    &column.nullable,
                ],
            )
            .await
            .map_err(|e| storage(e, what))?;
        }
    }
    for (i, action) in ch.actions.iter().enumerate() {
        let params_json =
            serde_json::to_string(action.params()).expect("action parameters serialize");
        tx.execute(
            "INSERT INTO action (hub_name, chn_name, action_seq, act_name, loc_scope, tbl_scope, act_params) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &h,
                &c,
                &seq(i),
                &action.action_type().as_str(),
                &action.loc_scope.to_string(),
                &action.table_scope.to_string(),
                &params_json,
            ],
        )
        .await
        .map_err(|e| storage(e, what))?;
    }
    Ok(())
}

async fn read_hub<C: GenericClient + Sync>(conn: &C, hub: &str) -> Result<Option<HubRecord>> {
    let row = conn
        .query_opt(
            "SELECT hub_name, description, hub_state, created, creator, freeze_time, def_version \
             FROM hub WHERE hub_name = $1",
            &[&hub],
        )
        .await
        .map_err(|e| storage(e, "read a hub"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let props = conn
        .query(
            "SELECT prop_name, prop_value FROM hub_property WHERE hub_name = $1 ORDER BY prop_name",
            &[&hub],
        )
        .await
        .map_err(|e| storage(e, "read hub properties"))?
        .iter()
        .map(|r| {
            let value: String = col(r, 1)?;
            let value = serde_json::from_str(&value).map_err(|_| corrupt("hub property"))?;
            Ok((col(r, 0)?, value))
        })
        .collect::<Result<_>>()?;
    Ok(Some(HubRecord {
        hub: Hub {
            name: name(&col::<String>(&row, 0)?, "hub name")?,
            description: col(&row, 1)?,
        },
        state: name(&col::<String>(&row, 2)?, "hub state")?,
        created: col(&row, 3)?,
        creator: col(&row, 4)?,
        freeze_time: col(&row, 5)?,
        props,
        version: col(&row, 6)?,
    }))
}

async fn read_locations<C: GenericClient + Sync>(
    conn: &C,
    hub: &HubName,
    only: Option<&LocationName>,
) -> Result<Vec<Location>> {
    let what = "read locations";
    let h = hub.as_str();
    let only = only.map(|l| l.as_str());
    let rows = conn
        .query(
            "SELECT loc_name, loc_class, description FROM location \
             WHERE hub_name = $1 AND ($2::text IS NULL OR loc_name = $2) ORDER BY loc_name",
            &[&h, &only],
        )
        .await
        .map_err(|e| storage(e, what))?;
    let props = conn
        .query(
            "SELECT loc_name, prop_name, prop_value FROM location_property \
             WHERE hub_name = $1 AND ($2::text IS NULL OR loc_name = $2) ORDER BY loc_name, prop_name",
            &[&h, &only],
        )
        .await
        .map_err(|e| storage(e, what))?;
    let mut by_location: BTreeMap<String, BTreeMap<String, PropValue>> = BTreeMap::new();
    for r in &props {
        let value: String = col(r, 2)?;
        by_location
            .entry(col(r, 0)?)
            .or_default()
            .insert(col(r, 1)?, parse_prop(&value)?);
    }
    rows.iter()
        .map(|r| {
            let loc: String = col(r, 0)?;
            Ok(Location {
                name: name(&loc, "location name")?,
                class: name(&col::<String>(r, 1)?, "location class")?,
                description: col(r, 2)?,
                props: by_location.remove(&loc).unwrap_or_default(),
            })
        })
        .collect()
}

async fn read_channels<C: GenericClient + Sync>(
    conn: &C,
    hub: &HubName,
    only: Option<&ChannelName>,
) -> Result<Vec<Channel>> {
    let what = "read channels";
    let h = hub.as_str();
    let channels = conn
        .query(
            "SELECT chn_name, description FROM channel \
             WHERE hub_name = $1 AND ($2::text IS NULL OR chn_name = $2) ORDER BY chn_name",
            &[&h, &only.map(|c| c.as_str())],
        )
        .await
        .map_err(|e| storage(e, what))?;
    let mut out = Vec::with_capacity(channels.len());
    for row in &channels {
        let c: String = col(row, 0)?;
        let mut loc_groups: BTreeMap<LocGroupName, Vec<LocationName>> = BTreeMap::new();
        for g in conn
            .query(
                "SELECT grp_name FROM loc_group WHERE hub_name = $1 AND chn_name = $2 ORDER BY grp_name",
                &[&h, &c],
            )
            .await
            .map_err(|e| storage(e, what))?
        {
            loc_groups.insert(name(&col::<String>(&g, 0)?, "location group")?, Vec::new());
        }
        for m in conn
            .query(
                "SELECT grp_name, loc_name FROM loc_group_member WHERE hub_name = $1 AND chn_name = $2 \
                 ORDER BY grp_name, member_seq",
                &[&h, &c],
            )
            .await
            .map_err(|e| storage(e, what))?
        {
            loc_groups
                .entry(name(&col::<String>(&m, 0)?, "location group")?)
                .or_default()
                .push(name(&col::<String>(&m, 1)?, "location name")?);
        }
        let mut columns: BTreeMap<String, Vec<ChannelColumn>> = BTreeMap::new();
        for r in conn
            .query(
                "SELECT tbl_name, col_name, col_key, col_datatype, col_nullable FROM channel_column \
                 WHERE hub_name = $1 AND chn_name = $2 ORDER BY tbl_name, col_sequence",
                &[&h, &c],
            )
            .await
            .map_err(|e| storage(e, what))?
        {
            let key: i32 = col(&r, 2)?;
            columns.entry(col(&r, 0)?).or_default().push(ChannelColumn {
                name: name(&col::<String>(&r, 1)?, "column name")?,
                data_type: name(&col::<String>(&r, 3)?, "data type")?,
                nullable: col(&r, 4)?,
                key: u32::try_from(key).map_err(|_| corrupt(format_args!("key position {key}")))?,
            });
        }
        let mut tables = BTreeMap::new();
        for r in conn
            .query(
                "SELECT tbl_name, tbl_base_name, tbl_group, discover_cols FROM channel_table \
                 WHERE hub_name = $1 AND chn_name = $2 ORDER BY tbl_name",
                &[&h, &c],
            )
            .await
            .map_err(|e| storage(e, what))?
        {
            let t: String = col(&r, 0)?;
            let discover: bool = col(&r, 3)?;
            let cols = columns.remove(&t).unwrap_or_default();
            let table_name: TableName = name(&t, "table name")?;
            tables.insert(
                table_name.clone(),
                ChannelTable {
                    name: table_name,
                    base_name: opt_name(col(&r, 1)?, "base name")?,
                    table_group: opt_name(col(&r, 2)?, "table group")?,
                    columns: (!discover).then_some(cols),
                },
            );
        }
        let mut actions = Vec::new();
        for r in conn
            .query(
                "SELECT act_name, loc_scope, tbl_scope, act_params FROM action \
                 WHERE hub_name = $1 AND chn_name = $2 ORDER BY action_seq",
                &[&h, &c],
            )
            .await
            .map_err(|e| storage(e, what))?
        {
            let params_json: String = col(&r, 3)?;
            actions.push(
                Action::new(
                    name(&col::<String>(&r, 0)?, "action type")?,
                    name(&col::<String>(&r, 1)?, "location scope")?,
                    name(&col::<String>(&r, 2)?, "table scope")?,
                    serde_json::from_str(&params_json).map_err(|_| corrupt("action parameters"))?,
                )
                .map_err(|_| corrupt("action parameters"))?,
            );
        }
        out.push(Channel {
            name: name(&c, "channel name")?,
            description: col(row, 1)?,
            loc_groups,
            tables,
            actions,
        });
    }
    Ok(out)
}

/// Locks the job's row (`FOR UPDATE`); `None` when there is no such job.
async fn lock_job(tx: &Transaction<'_>, hub: &str, job: &str) -> Result<Option<Row>> {
    tx.query_opt(
        "SELECT last_ev_id, job_state FROM job WHERE hub_name = $1 AND job_name = $2 FOR UPDATE",
        &[&hub, &job],
    )
    .await
    .map_err(|e| storage(e, "lock a job"))
}

/// The running state of a job whose row the caller has locked: `Some(conflict)` when a live
/// process runs it. A run whose owner stopped sending heartbeats (by the database's clock) is
/// failed (its event id pushed to `taken_over`) and counts as not running.
async fn running_event(
    tx: &Transaction<'_>,
    hub: &str,
    job: &str,
    stale_after: Duration,
    taken_over: &mut Vec<EventId>,
) -> Result<Option<RepoError>> {
    let row = tx
        .query_opt(
            "SELECT job_state, last_ev_id, heartbeat, owner_host, owner_pid, clock_timestamp() \
             FROM job WHERE hub_name = $1 AND job_name = $2",
            &[&hub, &job],
        )
        .await
        .map_err(|e| storage(e, "read a job"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let state: String = col(&row, 0)?;
    if state != JobState::Running.as_str() {
        return Ok(None);
    }
    let last_ev: String = col::<Option<String>>(&row, 1)?.unwrap_or_default();
    let beat: Option<DateTime<Utc>> = col(&row, 2)?;
    let now: DateTime<Utc> = col(&row, 5)?;
    let alive = beat.is_some_and(|b| (now - b).to_std().unwrap_or_default() < stale_after);
    let host: Option<String> = col(&row, 3)?;
    let pid: Option<i64> = col(&row, 4)?;
    if alive {
        return Ok(Some(RepoError::new(
            RepoErrorKind::Conflict,
            format!(
                "job {job} is already running as event {last_ev} (process {} on {})",
                pid.unwrap_or_default(),
                host.unwrap_or_default()
            ),
        )));
    }
    let reaped = end_abandoned(
        tx,
        hub,
        job,
        Some(&last_ev).filter(|e| !e.is_empty()),
        beat,
        host.as_deref(),
        pid,
    )
    .await?;
    if let (Some(id), true) = (reaped.event, reaped.failed) {
        taken_over.push(id);
    }
    Ok(None)
}

/// The commit markers of event `ev`, by table.
async fn commit_marks(tx: &Transaction<'_>, ev: &str) -> Result<Vec<(String, CommitMark)>> {
    tx.query(
        "SELECT tbl_name, commit_state FROM event_commit WHERE ev_id = $1 ORDER BY tbl_name",
        &[&ev],
    )
    .await
    .map_err(|e| storage(e, "read commit markers"))?
    .iter()
    .map(|r| Ok((col(r, 0)?, CommitMark::parse(&col::<String>(r, 1)?)?)))
    .collect()
}

/// Settles the tables a run left `BUSY` when nobody will finish them: a table whose commit
/// marker says committed becomes `DONE`; the others `state` with `error` as their error.
async fn settle_busy_tables(
    tx: &Transaction<'_>,
    ev: &str,
    marks: &[(String, CommitMark)],
    state: &str,
    error: &str,
) -> Result<()> {
    let busy = tx
        .query(
            "SELECT tbl_name FROM event_result WHERE ev_id = $1 AND res_name = $2 AND res_value = $3",
            &[&ev, &ResultName::TableState.as_str(), &table_state::BUSY],
        )
        .await
        .map_err(|e| storage(e, "read busy tables"))?;
    for row in &busy {
        let table: String = col(row, 0)?;
        let committed = marks
            .iter()
            .any(|(t, m)| *t == table && *m == CommitMark::Done);
        let mut results = vec![(
            ResultName::TableState,
            if committed { table_state::DONE } else { state },
        )];
        if !committed {
            results.push((ResultName::TableError, error));
        }
        for (name, value) in results {
            tx.execute(
                "INSERT INTO event_result (ev_id, tbl_name, res_name, res_value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (ev_id, tbl_name, res_name) DO UPDATE SET res_value = excluded.res_value",
                &[&ev, &table, &name.as_str(), &value],
            )
            .await
            .map_err(|e| storage(e, "settle a busy table"))?;
        }
    }
    Ok(())
}

/// Ends the run of a job whose row the caller has locked and whose process stopped sending
/// heartbeats (last at `beat`): its event `last_ev`, when still `ACTIVE`, becomes `FAILED`; the
/// job is freed in the state its event ended in.
async fn end_abandoned(
    tx: &Transaction<'_>,
    hub: &str,
    job: &str,
    last_ev: Option<&String>,
    beat: Option<DateTime<Utc>>,
    host: Option<&str>,
    pid: Option<i64>,
) -> Result<ReapedJob> {
    let marks = match last_ev {
        Some(ev) => commit_marks(tx, ev).await?,
        None => Vec::new(),
    };
    let since = beat.map(|b| EventId::at(b).to_string());
    let response = abandoned_response(host, pid, since, &marks);
    let now = Utc::now();
    let mut failed = false;
    let mut final_state = EventState::Failed;
    if let Some(ev) = last_ev {
        failed = tx
            .execute(
                "UPDATE event SET ev_state = 'FAILED', response = $2, finish_tstamp = $3, last_updated = $3 \
                 WHERE ev_id = $1 AND ev_state = 'ACTIVE'",
                &[ev, &response, &now],
            )
            .await
            .map_err(|e| storage(e, "fail an abandoned event"))?
            == 1;
        if failed {
            settle_busy_tables(tx, ev, &marks, table_state::FAILED, &response).await?;
        }
        if let Some(row) = tx
            .query_opt("SELECT ev_state FROM event WHERE ev_id = $1", &[ev])
            .await
            .map_err(|e| storage(e, "read an event"))?
        {
            final_state = name(&col::<String>(&row, 0)?, "event state")?;
        }
    }
    tx.execute(
        "UPDATE job SET job_state = $3, run_end = $4, owner_id = NULL, heartbeat = NULL \
         WHERE hub_name = $1 AND job_name = $2",
        &[&hub, &job, &job_state_after(final_state).as_str(), &now],
    )
    .await
    .map_err(|e| storage(e, "free an abandoned job"))?;
    Ok(ReapedJob {
        hub: name(hub, "hub name")?,
        job: name(job, "job name")?,
        event: last_ev.map(|e| name(e, "event id")).transpose()?,
        failed,
        response,
    })
}

/// Whether a live process runs event `ev` of `job`, whose row the caller has locked: `None` when
/// the job does not run it, `Some(false)` when its process has sent no heartbeat for
/// `stale_after` (by the database's clock).
async fn run_owner_live(
    tx: &Transaction<'_>,
    hub: &str,
    job: &str,
    ev: &str,
    stale_after: Duration,
) -> Result<Option<bool>> {
    let row = tx
        .query_opt(
            "SELECT job_state, last_ev_id, \
             coalesce(heartbeat > clock_timestamp() - make_interval(secs => $3), false) \
             FROM job WHERE hub_name = $1 AND job_name = $2",
            &[&hub, &job, &stale_after.as_secs_f64()],
        )
        .await
        .map_err(|e| storage(e, "read a job"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let state: String = col(&row, 0)?;
    let last_ev: Option<String> = col(&row, 1)?;
    if state != JobState::Running.as_str() || last_ev.as_deref() != Some(ev) {
        return Ok(None);
    }
    Ok(Some(col(&row, 2)?))
}

/// Ends the `ACTIVE` events of a job for `reason`: `CANCELED`, or `FAILED` for a run with a
/// committed table; `Conflict` while a table of one commits. Returns their ids. The caller holds
/// the job's row.
async fn cancel_job_events(
    tx: &Transaction<'_>,
    hub: &str,
    job: &str,
    reason: &str,
) -> Result<Vec<EventId>> {
    let rows = tx
        .query(
            "SELECT ev_id FROM event WHERE hub_name = $1 AND job_name = $2 AND ev_state = 'ACTIVE' \
             ORDER BY ev_id FOR NO KEY UPDATE",
            &[&hub, &job],
        )
        .await
        .map_err(|e| storage(e, "read pending events"))?;
    let now = Utc::now();
    let mut ids = Vec::new();
    for row in &rows {
        let id: String = col(row, 0)?;
        let (state, response) = request_ending(&id, reason, &commit_marks(tx, &id).await?, true)?;
        tx.execute(
            "UPDATE event SET ev_state = $2, response = $3, finish_tstamp = $4, last_updated = $4, \
             canceled = true WHERE ev_id = $1",
            &[&id, &state.as_str(), &response, &now],
        )
        .await
        .map_err(|e| storage(e, "cancel pending events"))?;
        ids.push(name(&id, "event id")?);
    }
    Ok(ids)
}

async fn claim(
    tx: &Transaction<'_>,
    hub: &str,
    job: &str,
    event: &str,
    owner: &Owner,
) -> Result<()> {
    tx.execute(
        "INSERT INTO job (hub_name, job_name, job_state, last_ev_id, run_begin, run_end, num_runs, owner_id, owner_host, owner_pid, heartbeat) \
         VALUES ($1, $2, 'RUNNING', $3, $4, NULL, 1, $5, $6, $7, clock_timestamp()) \
         ON CONFLICT (hub_name, job_name) DO UPDATE SET job_state = 'RUNNING', last_ev_id = $3, run_begin = $4, \
         run_end = NULL, num_runs = job.num_runs + 1, owner_id = $5, owner_host = $6, owner_pid = $7, heartbeat = clock_timestamp()",
        &[&hub, &job, &event, &Utc::now(), &owner.id, &owner.host, &i64::from(owner.pid)],
    )
    .await
    .map_err(|e| storage(e, "claim a job"))?;
    Ok(())
}

async fn submit(
    tx: &Transaction<'_>,
    event: &NewEvent,
    start: Option<(&Owner, Duration)>,
) -> Result<SubmittedJob> {
    let job = event
        .job
        .clone()
        .ok_or_else(|| RepoError::new(RepoErrorKind::Conflict, "a job run needs a job name"))?;
    let (hub, j) = (event.hub.as_str(), job.as_str());
    lock_hub(tx, &event.hub, "FOR KEY SHARE").await?;
    // The job's row, inserted when new and locked either way in one statement (an upsert waits
    // for a concurrent insert or delete of the row and then locks what is there): racing
    // submitters queue on it, and the losers see the winner's run. A new row becomes the job's
    // below, or disappears with a rollback.
    tx.execute(
        "INSERT INTO job (hub_name, job_name, job_state, num_runs) VALUES ($1, $2, 'SUSPEND', 0) \
         ON CONFLICT (hub_name, job_name) DO UPDATE SET job_state = job.job_state",
        &[&hub, &j],
    )
    .await
    .map_err(|e| storage(e, "lock a job"))?;
    let mut taken_over = Vec::new();
    let stale_after = start.map_or(Duration::from_secs(60), |(_, s)| s);
    if let Some(conflict) = running_event(tx, hub, j, stale_after, &mut taken_over).await? {
        return Err(conflict);
    }
    let canceled =
        cancel_job_events(tx, hub, j, "replaced by a newer request for the same job").await?;
    let id = insert_event(tx, event).await?;
    match start {
        Some((owner, _)) => claim(tx, hub, j, &id.to_string(), owner).await?,
        None => {
            tx.execute(
                "UPDATE job SET job_state = 'SUSPEND', last_ev_id = $3, owner_id = NULL, heartbeat = NULL \
                 WHERE hub_name = $1 AND job_name = $2",
                &[&hub, &j, &id.to_string()],
            )
            .await
            .map_err(|e| storage(e, "queue a job"))?;
        }
    }
    Ok(SubmittedJob {
        event: id,
        canceled,
        taken_over,
    })
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
