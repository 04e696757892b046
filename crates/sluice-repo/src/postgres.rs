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
    HubRecord, JobRecord, NewEvent, Owner, ReapedJob, RepoError, RepoErrorKind, Repository, Result,
    StartedJob, SubmittedJob, TokenRecord, UserRecord, abandoned_response, job_state_after,
    request_ending,
};

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

#[async_trait]
impl Repository for PostgresRepository {
    async fn hubs(&self) -> Result<Vec<HubRecord>> {
        let client = self.client().await?;
        let conn: &tokio_postgres::Client = &client;
        let rows = conn
            .query("SELECT hub_name FROM hub ORDER BY hub_name", &[])
            .await
            .map_err(|e| storage(e, "list hubs"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(hub) = read_hub(conn, &col::<String>(row, 0)?).await? {
                out.push(hub);
            }
        }
        Ok(out)
    }

    async fn hub(&self, hub: &HubName) -> Result<Option<HubRecord>> {
        let client = self.client().await?;
        let conn: &tokio_postgres::Client = &client;
        read_hub(conn, hub.as_str()).await
    }

    async fn apply_definitions(
        &self,
        definitions: &Definitions,
        user: &str,
        source: &str,
    ) -> Result<ApplySummary> {
        let defs = definitions;
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let hub = &defs.hub.name;
        let mut summary = ApplySummary::default();
        let created = tx
            .execute(
                "INSERT INTO hub (hub_name, description, created, creator) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (hub_name) DO NOTHING",
                &[&hub.as_str(), &defs.hub.description, &Utc::now(), &user],
            )
            .await
            .map_err(|e| storage(e, "create the hub"))?
            == 1;
        if created {
            summary.hub_created = true;
            insert_event(
                &tx,
                &NewEvent {
                    hub: hub.clone(),
                    event_type: EventType::HubCreate,
                    user: user.to_owned(),
                    description: format!("hub {hub} created"),
                    channel: None,
                    loc: None,
                    loc2: None,
                    job: None,
                    state: EventState::Done,
                    body: serde_json::json!({ "source": source }),
                },
            )
            .await?;
        } else {
            let n = tx
                .execute(
                    "UPDATE hub SET description = $2, def_version = def_version + 1 WHERE hub_name = $1",
                    &[&hub.as_str(), &defs.hub.description],
                )
                .await
                .map_err(|e| storage(e, "update the hub"))?;
            if n == 0 {
                return Err(RepoError::new(
                    RepoErrorKind::Conflict,
                    format!("hub {hub} was deleted while its definitions were applied"),
                ));
            }
        }
        let existing: Vec<String> = read_locations(&*tx, hub, None)
            .await?
            .into_iter()
            .map(|l| l.name.to_string())
            .collect();
        for loc in defs.locations.values() {
            let exists = existing.iter().any(|e| e == loc.name.as_str());
            write_location(&tx, hub, loc, exists).await?;
            if exists {
                summary.locations_replaced.push(loc.name.clone());
            } else {
                summary.locations_added.push(loc.name.clone());
            }
        }
        for ch in defs.channels.values() {
            let exists = !read_channels(&*tx, hub, Some(&ch.name)).await?.is_empty();
            write_channel(&tx, hub, ch).await?;
            if exists {
                summary.channels_replaced.push(ch.name.clone());
            } else {
                summary.channels_added.push(ch.name.clone());
            }
        }
        let body = serde_json::json!({
            "source": source,
            "locations_added": summary.locations_added,
            "locations_replaced": summary.locations_replaced,
            "channels_added": summary.channels_added,
            "channels_replaced": summary.channels_replaced,
        });
        let event = insert_event(
            &tx,
            &NewEvent {
                hub: hub.clone(),
                event_type: EventType::DefinitionChangeImport,
                user: user.to_owned(),
                description: format!(
                    "applied {source}: {} location(s), {} channel(s)",
                    defs.locations.len(),
                    defs.channels.len()
                ),
                channel: None,
                loc: None,
                loc2: None,
                job: None,
                state: EventState::Done,
                body,
            },
        )
        .await?;
        summary.event = Some(event);
        commit(tx, "commit the definitions").await?;
        Ok(summary)
    }

    async fn location(&self, hub: &HubName, loc: &LocationName) -> Result<Option<Location>> {
        let client = self.client().await?;
        let conn: &tokio_postgres::Client = &client;
        Ok(read_locations(conn, hub, Some(loc)).await?.pop())
    }

    async fn locations(&self, hub: &HubName) -> Result<Vec<Location>> {
        let client = self.client().await?;
        let conn: &tokio_postgres::Client = &client;
        read_locations(conn, hub, None).await
    }

    async fn channel(&self, hub: &HubName, ch: &ChannelName) -> Result<Option<Channel>> {
        let client = self.client().await?;
        let conn: &tokio_postgres::Client = &client;
        Ok(read_channels(conn, hub, Some(ch)).await?.pop())
    }

    async fn channels(&self, hub: &HubName) -> Result<Vec<Channel>> {
        let client = self.client().await?;
        let conn: &tokio_postgres::Client = &client;
        read_channels(conn, hub, None).await
    }

    async fn post_event(&self, event: NewEvent) -> Result<EventId> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let id = insert_event(&tx, &event).await?;
        commit(tx, "commit an event").await?;
        Ok(id)
    }

    async fn start_job(
        &self,
        event: NewEvent,
        owner: &Owner,
        stale_after: Duration,
    ) -> Result<StartedJob> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let submitted = submit(&tx, &event, Some((owner, stale_after))).await?;
        commit(tx, "commit a job start").await?;
        Ok(StartedJob {
            event: submitted.event,
            taken_over: submitted.taken_over,
        })
    }

    async fn heartbeat(&self, hub: &HubName, job: &JobName, owner: &Owner) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE job SET heartbeat = clock_timestamp() WHERE hub_name = $1 AND job_name = $2 AND owner_id = $3",
                &[&hub.as_str(), &job.as_str(), &owner.id],
            )
            .await
            .map_err(|e| storage(e, "record a heartbeat"))?;
        if n == 0 {
            return Err(RepoError::new(
                RepoErrorKind::Conflict,
                format!("job {job} is no longer held by this process"),
            ));
        }
        let row = client
            .query_opt(
                "SELECT e.ev_state FROM job j JOIN event e ON e.ev_id = j.last_ev_id \
                 WHERE j.hub_name = $1 AND j.job_name = $2",
                &[&hub.as_str(), &job.as_str()],
            )
            .await
            .map_err(|e| storage(e, "read a job's event"))?;
        let state: Option<String> = row.map(|r| col(&r, 0)).transpose()?;
        Ok(state.as_deref() == Some(EventState::Active.as_str()))
    }

    async fn finish_job(
        &self,
        hub: &HubName,
        job: &JobName,
        event: EventId,
        state: EventState,
        response: &str,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let now = Utc::now();
        let job_state = match state {
            EventState::Done => JobState::Done,
            EventState::Failed => JobState::Failed,
            EventState::Canceled => JobState::Suspend,
            EventState::Active => JobState::Running,
        };
        // The job's row before the event's: the lock order.
        tx.execute(
            "UPDATE job SET job_state = $3, run_end = $4, owner_id = NULL, heartbeat = NULL \
             WHERE hub_name = $1 AND job_name = $2 AND last_ev_id = $5",
            &[
                &hub.as_str(),
                &job.as_str(),
                &job_state.as_str(),
                &now,
                &event.to_string(),
            ],
        )
        .await
        .map_err(|e| storage(e, "finish a job"))?;
        tx.execute(
            "UPDATE event SET ev_state = $2, response = $3, finish_tstamp = $4, last_updated = $4 \
             WHERE ev_id = $1 AND ev_state = 'ACTIVE'",
            &[&event.to_string(), &state.as_str(), &response, &now],
        )
        .await
        .map_err(|e| storage(e, "finish an event"))?;
        commit(tx, "commit a job end").await
    }

    async fn put_results(&self, event: EventId, results: &[EventResult]) -> Result<()> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let id = event.to_string();
        for r in results {
            tx.execute(
                "INSERT INTO event_result (ev_id, tbl_name, res_name, res_value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (ev_id, tbl_name, res_name) DO UPDATE SET res_value = excluded.res_value",
                &[
                    &id,
                    &r.table.as_ref().map_or("", |t| t.as_str()),
                    &r.name.as_str(),
                    &r.value,
                ],
            )
            .await
            .map_err(|e| storage(e, "store a result"))?;
        }
        tx.execute(
            "UPDATE event SET last_updated = $2 WHERE ev_id = $1",
            &[&id, &Utc::now()],
        )
        .await
        .map_err(|e| storage(e, "touch an event"))?;
        commit(tx, "commit results").await
    }

    async fn append_log(&self, event: EventId, lines: &[String]) -> Result<()> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let id = event.to_string();
        // Writers of the same log queue on the event's row, so line numbers never collide.
        tx.execute(
            "SELECT 1 FROM event WHERE ev_id = $1 FOR NO KEY UPDATE",
            &[&id],
        )
        .await
        .map_err(|e| storage(e, "lock the event log"))?;
        let next: i64 = col(
            &tx.query_one(
                "SELECT coalesce(max(line_no), 0) + 1 FROM event_log WHERE ev_id = $1",
                &[&id],
            )
            .await
            .map_err(|e| storage(e, "read the event log"))?,
            0,
        )?;
        let now = Utc::now();
        for (i, line) in lines.iter().enumerate() {
            tx.execute(
                "INSERT INTO event_log (ev_id, line_no, tstamp, message) VALUES ($1, $2, $3, $4)",
                &[&id, &(next + i as i64), &now, line],
            )
            .await
            .map_err(|e| storage(e, "append to the event log"))?;
        }
        commit(tx, "commit the event log").await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM event WHERE true");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut any_of = |column: &str, values: Vec<String>, sql: &mut String| {
            if values.is_empty() {
                return;
            }
            args.push(Box::new(values));
            sql.push_str(&format!(" AND {column} = ANY(${}::text[])", args.len()));
        };
        any_of(
            "hub_name",
            filter.hub.iter().map(|h| h.to_string()).collect(),
            &mut sql,
        );
        any_of(
            "chn_name",
            filter.channels.iter().map(|c| c.to_string()).collect(),
            &mut sql,
        );
        any_of(
            "ev_type",
            filter.types.iter().map(|t| t.to_string()).collect(),
            &mut sql,
        );
        any_of(
            "ev_state",
            filter.states.iter().map(|s| s.to_string()).collect(),
            &mut sql,
        );
        any_of(
            "job_name",
            filter.jobs.iter().map(|j| j.to_string()).collect(),
            &mut sql,
        );
        any_of(
            "ev_id",
            filter.ids.iter().map(|i| i.to_string()).collect(),
            &mut sql,
        );
        if let Some(loc) = &filter.loc {
            args.push(Box::new(loc.to_string()));
            let n = args.len();
            sql.push_str(&format!(" AND (loc_name = ${n} OR loc_name_2 = ${n})"));
        }
        // Event ids are their creation instants, written so that text order is time order.
        if let Some(t) = filter.begin {
            args.push(Box::new(EventId::at(t).to_string()));
            sql.push_str(&format!(" AND ev_id >= ${}", args.len()));
        }
        if let Some(t) = filter.end {
            args.push(Box::new(EventId::at(t).to_string()));
            sql.push_str(&format!(" AND ev_id <= ${}", args.len()));
        }
        sql.push_str(" ORDER BY ev_id DESC");
        if let Some(max) = filter.max_events {
            // LIMIT takes a bigint: a larger limit is no limit.
            let max = max.min(i64::MAX as usize);
            sql.push_str(&format!(" LIMIT {max}"));
        }
        let client = self.client().await?;
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = client
            .query(&sql, &params)
            .await
            .map_err(|e| storage(e, "list events"))?;
        let mut events = rows.iter().map(event_record).collect::<Result<Vec<_>>>()?;
        if filter.fetch_results && !events.is_empty() {
            let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
            let rows = client
                .query(
                    "SELECT tbl_name, res_name, res_value, ev_id FROM event_result \
                     WHERE ev_id = ANY($1::text[]) ORDER BY ev_id, tbl_name, res_seq",
                    &[&ids],
                )
                .await
                .map_err(|e| storage(e, "read event results"))?;
            let mut by_event: BTreeMap<String, Vec<EventResult>> = BTreeMap::new();
            for r in &rows {
                let result = result_record(r)?;
                if !filter.result_names.is_empty() && !filter.result_names.contains(&result.name) {
                    continue;
                }
                if !filter.result_tables.is_empty()
                    && !result
                        .table
                        .as_ref()
                        .is_some_and(|t| filter.result_tables.contains(t))
                {
                    continue;
                }
                by_event.entry(col(r, 3)?).or_default().push(result);
            }
            for (event, id) in events.iter_mut().zip(&ids) {
                event.results = by_event.remove(id).unwrap_or_default();
            }
        }
        Ok(events)
    }

    async fn event_log(&self, event: EventId) -> Result<Vec<(DateTime<Utc>, String)>> {
        let client = self.client().await?;
        client
            .query(
                "SELECT tstamp, message FROM event_log WHERE ev_id = $1 ORDER BY line_no",
                &[&event.to_string()],
            )
            .await
            .map_err(|e| storage(e, "read the event log"))?
            .iter()
            .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
            .collect()
    }

    async fn jobs(&self, hub: &HubName) -> Result<Vec<JobRecord>> {
        let client = self.client().await?;
        client
            .query(
                &format!("SELECT {JOB_COLUMNS} FROM job WHERE hub_name = $1 ORDER BY job_name"),
                &[&hub.as_str()],
            )
            .await
            .map_err(|e| storage(e, "list jobs"))?
            .iter()
            .map(job_record)
            .collect()
    }

    async fn latest_table_results(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        event_type: EventType,
    ) -> Result<BTreeMap<TableName, (EventRecord, Vec<EventResult>)>> {
        let client = self.client().await?;
        let latest = client
            .query(
                "SELECT r.tbl_name, max(e.ev_id) FROM event e JOIN event_result r ON r.ev_id = e.ev_id \
                 WHERE e.hub_name = $1 AND e.chn_name = $2 AND e.ev_type = $3 AND e.ev_state <> 'ACTIVE' \
                 AND r.tbl_name <> '' GROUP BY r.tbl_name",
                &[&hub.as_str(), &channel.as_str(), &event_type.as_str()],
            )
            .await
            .map_err(|e| storage(e, "read latest results"))?;
        let mut out = BTreeMap::new();
        for row in &latest {
            let (table, ev_id): (String, String) = (col(row, 0)?, col(row, 1)?);
            let event = client
                .query_one(
                    &format!("SELECT {EVENT_COLUMNS} FROM event WHERE ev_id = $1"),
                    &[&ev_id],
                )
                .await
                .map_err(|e| storage(e, "read an event"))?;
            let results = client
                .query(
                    "SELECT tbl_name, res_name, res_value FROM event_result \
                     WHERE ev_id = $1 AND tbl_name = $2 ORDER BY res_seq",
                    &[&ev_id, &table],
                )
                .await
                .map_err(|e| storage(e, "read event results"))?
                .iter()
                .map(result_record)
                .collect::<Result<Vec<_>>>()?;
            out.insert(
                name(&table, "table name")?,
                (event_record(&event)?, results),
            );
        }
        Ok(out)
    }

    async fn create_hub(&self, hub: &Hub, user: &str) -> Result<EventId> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let n = tx
            .execute(
                "INSERT INTO hub (hub_name, description, created, creator) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (hub_name) DO NOTHING",
                &[&hub.name.as_str(), &hub.description, &Utc::now(), &user],
            )
            .await
            .map_err(|e| storage(e, "create a hub"))?;
        if n == 0 {
            return Err(RepoError::new(
                RepoErrorKind::Conflict,
                format!("hub {} already exists", hub.name),
            ));
        }
        let id = insert_event(
            &tx,
            &audit(
                &hub.name,
                EventType::HubCreate,
                user,
                format!("hub {} created", hub.name),
            ),
        )
        .await?;
        commit(tx, "commit a hub").await?;
        Ok(id)
    }

    async fn delete_hub(&self, hub: &HubName) -> Result<()> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        // First, so that whatever else writes to this hub waits for the deletion.
        lock_hub(&tx, hub, "FOR UPDATE").await?;
        let h = hub.as_str();
        // Members reference locations without cascade; channels go first.
        for sql in [
            "DELETE FROM channel WHERE hub_name = $1",
            "DELETE FROM location WHERE hub_name = $1",
            "DELETE FROM job WHERE hub_name = $1",
            "DELETE FROM hub WHERE hub_name = $1",
        ] {
            tx.execute(sql, &[&h])
                .await
                .map_err(|e| storage(e, "delete a hub"))?;
        }
        commit(tx, "commit a hub deletion").await
    }

    async fn set_hub_frozen(&self, hub: &HubName, frozen: bool, user: &str) -> Result<EventId> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let n = if frozen {
            tx.execute(
                "UPDATE hub SET hub_state = 'FROZEN', \
                 freeze_time = CASE WHEN hub_state = 'FROZEN' THEN freeze_time ELSE $2 END WHERE hub_name = $1",
                &[&hub.as_str(), &Utc::now()],
            )
            .await
        } else {
            tx.execute(
                "UPDATE hub SET hub_state = 'LIVE', freeze_time = NULL WHERE hub_name = $1",
                &[&hub.as_str()],
            )
            .await
        }
        .map_err(|e| storage(e, "change the hub state"))?;
        if n == 0 {
            return Err(hub_missing(hub));
        }
        let (kind, word) = if frozen {
            (EventType::HubFreeze, "frozen")
        } else {
            (EventType::HubUnfreeze, "unfrozen")
        };
        let id = insert_event(
            &tx,
            &audit(hub, kind, user, format!("hub {hub} {word} by {user}")),
        )
        .await?;
        commit(tx, "commit the hub state").await?;
        Ok(id)
    }

    async fn set_hub_props(
        &self,
        hub: &HubName,
        changes: &BTreeMap<String, Option<serde_json::Value>>,
        user: &str,
    ) -> Result<EventId> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        lock_hub(&tx, hub, "FOR NO KEY UPDATE").await?;
        let h = hub.as_str();
        for (prop, value) in changes {
            let result = match (prop.as_str(), value) {
                ("Description", v) => {
                    let description = v.as_ref().map_or(String::new(), |v| {
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                    });
                    tx.execute(
                        "UPDATE hub SET description = $2 WHERE hub_name = $1",
                        &[&h, &description],
                    )
                    .await
                }
                (_, None) => {
                    tx.execute(
                        "DELETE FROM hub_property WHERE hub_name = $1 AND prop_name = $2",
                        &[&h, prop],
                    )
                    .await
                }
                (_, Some(v)) => {
                    tx.execute(
                        "INSERT INTO hub_property (hub_name, prop_name, prop_value) VALUES ($1, $2, $3) \
                         ON CONFLICT (hub_name, prop_name) DO UPDATE SET prop_value = excluded.prop_value",
                        &[&h, prop, &v.to_string()],
                    )
                    .await
                }
            };
            result.map_err(|e| storage(e, "set a hub property"))?;
        }
        let mut event = audit(
            hub,
            EventType::HubPropertyChange,
            user,
            format!(
                "hub properties changed by {user}: {}",
                changes.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
        event.body = serde_json::json!({ "props": changes });
        let id = insert_event(&tx, &event).await?;
        commit(tx, "commit hub properties").await?;
        Ok(id)
    }

    async fn replace_hub_definitions(
        &self,
        definitions: &Definitions,
        expected_version: i64,
        event: NewEvent,
    ) -> Result<EventId> {
        let defs = definitions;
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let hub = &defs.hub.name;
        let h = hub.as_str();
        // The version is checked and bumped under the hub row's lock: of two writers that read
        // the same version, the second sees the first's bump.
        let row = tx
            .query_opt(
                "SELECT def_version FROM hub WHERE hub_name = $1 FOR NO KEY UPDATE",
                &[&h],
            )
            .await
            .map_err(|e| storage(e, "lock a hub"))?
            .ok_or_else(|| hub_missing(hub))?;
        let version: i64 = col(&row, 0)?;
        if version != expected_version {
            return Err(RepoError::new(
                RepoErrorKind::Conflict,
                format!(
                    "the definitions of hub {hub} changed meanwhile (version {expected_version} is now {version})"
                ),
            ));
        }
        tx.execute(
            "UPDATE hub SET description = $2, def_version = def_version + 1 WHERE hub_name = $1",
            &[&h, &defs.hub.description],
        )
        .await
        .map_err(|e| storage(e, "update the hub"))?;
        tx.execute("DELETE FROM channel WHERE hub_name = $1", &[&h])
            .await
            .map_err(|e| storage(e, "replace channels"))?;
        let keep: Vec<&str> = defs.locations.keys().map(|l| l.as_str()).collect();
        tx.execute(
            "DELETE FROM location WHERE hub_name = $1 AND NOT (loc_name = ANY($2::text[]))",
            &[&h, &keep],
        )
        .await
        .map_err(|e| storage(e, "delete a location"))?;
        let existing: Vec<String> = tx
            .query("SELECT loc_name FROM location WHERE hub_name = $1", &[&h])
            .await
            .map_err(|e| storage(e, "read locations"))?
            .iter()
            .map(|r| col(r, 0))
            .collect::<Result<_>>()?;
        for loc in defs.locations.values() {
            let exists = existing.iter().any(|e| e == loc.name.as_str());
            write_location(&tx, hub, loc, exists).await?;
        }
        for ch in defs.channels.values() {
            write_channel(&tx, hub, ch).await?;
        }
        let id = insert_event(&tx, &event).await?;
        commit(tx, "commit the definitions").await?;
        Ok(id)
    }

    async fn users(&self) -> Result<Vec<UserRecord>> {
        let client = self.client().await?;
        client
            .query(
                &format!("SELECT {USER_COLUMNS} FROM app_user ORDER BY user_name"),
                &[],
            )
            .await
            .map_err(|e| storage(e, "list users"))?
            .iter()
            .map(user_record)
            .collect()
    }

    async fn user(&self, user: &str) -> Result<Option<UserRecord>> {
        let client = self.client().await?;
        client
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM app_user WHERE user_name = $1"),
                &[&user],
            )
            .await
            .map_err(|e| storage(e, "read a user"))?
            .as_ref()
            .map(user_record)
            .transpose()
    }

    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO app_user (user_name, access_level, password_hash, created, creator) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_name) DO NOTHING",
                &[
                    &user.name,
                    &user.level.as_str(),
                    &user.password_hash,
                    &user.created,
                    &user.creator,
                ],
            )
            .await
            .map_err(|e| storage(e, "create a user"))?;
        if n == 0 {
            return Err(RepoError::new(
                RepoErrorKind::Conflict,
                format!("user {} already exists", user.name),
            ));
        }
        Ok(())
    }

    async fn update_user(
        &self,
        user: &str,
        level: Option<AccessLevel>,
        password_hash: Option<&str>,
    ) -> Result<()> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE app_user SET access_level = coalesce($2::text, access_level), \
                 password_hash = coalesce($3::text, password_hash) WHERE user_name = $1",
                &[&user, &level.map(|l| l.as_str()), &password_hash],
            )
            .await
            .map_err(|e| storage(e, "change a user"))?;
        if n == 0 {
            return Err(RepoError::new(
                RepoErrorKind::NotFound,
                format!("user {user} does not exist"),
            ));
        }
        Ok(())
    }

    async fn delete_user(&self, user: &str) -> Result<()> {
        let client = self.client().await?;
        let n = client
            .execute("DELETE FROM app_user WHERE user_name = $1", &[&user])
            .await
            .map_err(|e| storage(e, "delete a user"))?;
        if n == 0 {
            return Err(RepoError::new(
                RepoErrorKind::NotFound,
                format!("user {user} does not exist"),
            ));
        }
        Ok(())
    }

    async fn put_token(&self, token: &TokenRecord) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO token (token_hash, user_name, kind, created, expires) VALUES ($1, $2, $3, $4, $5)",
                &[
                    &token.hash,
                    &token.user,
                    &token.kind,
                    &token.created,
                    &token.expires,
                ],
            )
            .await
            .map_err(|e| storage(e, "store a token"))?;
        Ok(())
    }

    async fn take_token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let client = self.client().await?;
        // One statement: of racing callers, exactly one deletes the row and gets it back.
        client
            .query_opt(
                &format!("DELETE FROM token WHERE token_hash = $1 RETURNING {TOKEN_COLUMNS}"),
                &[&hash],
            )
            .await
            .map_err(|e| storage(e, "take a token"))?
            .as_ref()
            .map(token_record)
            .transpose()
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let client = self.client().await?;
        client
            .query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM token WHERE token_hash = $1"),
                &[&hash],
            )
            .await
            .map_err(|e| storage(e, "read a token"))?
            .as_ref()
            .map(token_record)
            .transpose()
    }

    async fn tokens(&self, kind: &str, user: Option<&str>) -> Result<Vec<TokenRecord>> {
        let client = self.client().await?;
        client
            .query(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM token WHERE kind = $1 AND ($2::text IS NULL OR user_name = $2) \
                     ORDER BY created"
                ),
                &[&kind, &user],
            )
            .await
            .map_err(|e| storage(e, "list tokens"))?
            .iter()
            .map(token_record)
            .collect()
    }

    async fn delete_token(&self, hash: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM token WHERE token_hash = $1", &[&hash])
            .await
            .map_err(|e| storage(e, "delete a token"))?;
        Ok(())
    }

    async fn setting_or_insert(&self, setting: &str, value: &str) -> Result<String> {
        let client = self.client().await?;
        // A racing insert waits for the first to commit, then does nothing; the read that follows
        // (a fresh snapshot) sees the committed value.
        client
            .execute(
                "INSERT INTO setting (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&setting, &value],
            )
            .await
            .map_err(|e| storage(e, "store a setting"))?;
        let row = client
            .query_one("SELECT value FROM setting WHERE name = $1", &[&setting])
            .await
            .map_err(|e| storage(e, "read a setting"))?;
        col(&row, 0)
    }

    async fn submit_job(
        &self,
        event: NewEvent,
        start: Option<(&Owner, Duration)>,
    ) -> Result<SubmittedJob> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let submitted = submit(&tx, &event, start).await?;
        commit(tx, "commit a job").await?;
        Ok(submitted)
    }

    async fn claim_job(
        &self,
        hub: &HubName,
        job: &JobName,
        owner: &Owner,
        stale_after: Duration,
    ) -> Result<(EventId, Vec<EventId>)> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let (h, j) = (hub.as_str(), job.as_str());
        let Some(row) = lock_job(&tx, h, j).await? else {
            return Err(RepoError::new(
                RepoErrorKind::NotFound,
                format!("job {job} does not exist"),
            ));
        };
        let last: Option<String> = col(&row, 0)?;
        let mut taken_over = Vec::new();
        if let Some(conflict) = running_event(&tx, h, j, stale_after, &mut taken_over).await? {
            return Err(conflict);
        }
        let mut pending = None;
        if let Some(ev) = last {
            let state = tx
                .query_opt("SELECT ev_state FROM event WHERE ev_id = $1", &[&ev])
                .await
                .map_err(|e| storage(e, "read an event"))?
                .map(|r| col::<String>(&r, 0))
                .transpose()?;
            if state.as_deref() == Some(EventState::Active.as_str()) {
                pending = Some(ev);
            }
        }
        let Some(ev) = pending else {
            return Err(RepoError::new(
                RepoErrorKind::Conflict,
                format!("job {job} has no pending event to run"),
            ));
        };
        claim(&tx, h, j, &ev, owner).await?;
        commit(tx, "commit a job start").await?;
        Ok((name(&ev, "event id")?, taken_over))
    }

    async fn job(&self, hub: &HubName, job: &JobName) -> Result<Option<JobRecord>> {
        let client = self.client().await?;
        client
            .query_opt(
                &format!("SELECT {JOB_COLUMNS} FROM job WHERE hub_name = $1 AND job_name = $2"),
                &[&hub.as_str(), &job.as_str()],
            )
            .await
            .map_err(|e| storage(e, "read a job"))?
            .as_ref()
            .map(job_record)
            .transpose()
    }

    async fn set_job_state(&self, hub: &HubName, job: &JobName, state: JobState) -> Result<()> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let (h, j) = (hub.as_str(), job.as_str());
        let Some(row) = lock_job(&tx, h, j).await? else {
            return Err(RepoError::new(
                RepoErrorKind::NotFound,
                format!("job {job} does not exist"),
            ));
        };
        let current: String = col(&row, 1)?;
        if current == JobState::Running.as_str() {
            return Err(RepoError::new(
                RepoErrorKind::Conflict,
                format!("job {job} is running; cancel its event to stop it"),
            ));
        }
        tx.execute(
            "UPDATE job SET job_state = $3 WHERE hub_name = $1 AND job_name = $2",
            &[&h, &j, &state.as_str()],
        )
        .await
        .map_err(|e| storage(e, "change a job"))?;
        commit(tx, "commit a job").await
    }

    async fn delete_job(&self, hub: &HubName, job: &JobName) -> Result<Vec<EventId>> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let (h, j) = (hub.as_str(), job.as_str());
        if lock_job(&tx, h, j).await?.is_none() {
            return Err(RepoError::new(
                RepoErrorKind::NotFound,
                format!("job {job} does not exist"),
            ));
        }
        let canceled = cancel_job_events(&tx, h, j, "canceled: its job was deleted").await?;
        tx.execute(
            "DELETE FROM job WHERE hub_name = $1 AND job_name = $2",
            &[&h, &j],
        )
        .await
        .map_err(|e| storage(e, "delete a job"))?;
        commit(tx, "commit a job deletion").await?;
        Ok(canceled)
    }

    async fn cancel_events(
        &self,
        hub: &HubName,
        ids: &[EventId],
        stale_after: Duration,
    ) -> Result<Vec<EventRecord>> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let h = hub.as_str();
        let texts: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        // The lock order: the events' jobs first, then the events.
        let jobs: BTreeSet<String> = tx
            .query(
                "SELECT job_name FROM event WHERE hub_name = $1 AND ev_id = ANY($2::text[]) AND job_name IS NOT NULL",
                &[&h, &texts],
            )
            .await
            .map_err(|e| storage(e, "read events"))?
            .iter()
            .map(|r| col(r, 0))
            .collect::<Result<_>>()?;
        let jobs: Vec<String> = jobs.into_iter().collect();
        tx.execute(
            "SELECT 1 FROM job WHERE hub_name = $1 AND job_name = ANY($2::text[]) ORDER BY job_name FOR UPDATE",
            &[&h, &jobs],
        )
        .await
        .map_err(|e| storage(e, "lock jobs"))?;
        let now = Utc::now();
        let mut out = Vec::new();
        for (id, text) in ids.iter().zip(&texts) {
            let row = tx
                .query_opt(
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM event WHERE ev_id = $1 AND hub_name = $2 FOR NO KEY UPDATE"
                    ),
                    &[text, &h],
                )
                .await
                .map_err(|e| storage(e, "read an event"))?;
            let Some(row) = row else {
                return Err(RepoError::new(
                    RepoErrorKind::NotFound,
                    format!("event {id} does not exist in hub {hub}"),
                ));
            };
            let mut record = event_record(&row)?;
            if record.state != EventState::Active {
                return Err(RepoError::new(
                    RepoErrorKind::Conflict,
                    format!(
                        "event {id} is {}: only events in 'ACTIVE' state can be canceled",
                        record.state
                    ),
                ));
            }
            let run = match &record.job {
                Some(job) => run_owner_live(&tx, h, job.as_str(), text, stale_after).await?,
                None => None,
            };
            let marks = commit_marks(&tx, text).await?;
            let (state, response) =
                request_ending(text, "canceled by a user", &marks, run == Some(true))?;
            if run == Some(false) {
                let unfinished = if state == EventState::Canceled {
                    table_state::CANCELED
                } else {
                    table_state::FAILED
                };
                settle_busy_tables(&tx, text, &marks, unfinished, &response).await?;
            }
            tx.execute(
                "UPDATE event SET ev_state = $3, response = $4, \
                 finish_tstamp = $2, last_updated = $2, canceled = true WHERE ev_id = $1",
                &[text, &now, &state.as_str(), &response],
            )
            .await
            .map_err(|e| storage(e, "cancel an event"))?;
            if let Some(job) = &record.job {
                match run {
                    // The live run stops at its next look at the event and lets go of the job.
                    Some(true) => {}
                    // Nobody runs it any more: free the job now.
                    Some(false) => {
                        tx.execute(
                            "UPDATE job SET job_state = $4, run_end = $5, owner_id = NULL, heartbeat = NULL \
                             WHERE hub_name = $1 AND job_name = $2 AND last_ev_id = $3",
                            &[&h, &job.as_str(), text, &job_state_after(state).as_str(), &now],
                        )
                        .await
                        .map_err(|e| storage(e, "free a job"))?;
                    }
                    None => {
                        tx.execute(
                            "UPDATE job SET job_state = 'SUSPEND' WHERE hub_name = $1 AND job_name = $2 \
                             AND last_ev_id = $3 AND job_state <> 'RUNNING'",
                            &[&h, &job.as_str(), text],
                        )
                        .await
                        .map_err(|e| storage(e, "suspend a job"))?;
                    }
                }
            }
            record.state = state;
            record.response = Some(response);
            record.finish = Some(now);
            record.canceled = true;
            out.push(record);
        }
        commit(tx, "commit a cancel").await?;
        Ok(out)
    }

    async fn begin_commit(
        &self,
        hub: &HubName,
        job: &JobName,
        event: EventId,
        table: &TableName,
        owner: &Owner,
    ) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let ev = event.to_string();
        // The job's row decides between this and a cancel (which locks it too).
        let held = tx
            .query_opt(
                "SELECT owner_id, last_ev_id FROM job WHERE hub_name = $1 AND job_name = $2 FOR UPDATE",
                &[&hub.as_str(), &job.as_str()],
            )
            .await
            .map_err(|e| storage(e, "lock a job"))?
            .map(|r| -> Result<(Option<String>, Option<String>)> { Ok((col(&r, 0)?, col(&r, 1)?)) })
            .transpose()?;
        if held != Some((Some(owner.id.clone()), Some(ev.clone()))) {
            return Err(RepoError::new(
                RepoErrorKind::Conflict,
                format!("job {job} is no longer held by this process"),
            ));
        }
        let state = tx
            .query_opt("SELECT ev_state FROM event WHERE ev_id = $1", &[&ev])
            .await
            .map_err(|e| storage(e, "read an event"))?
            .map(|r| col::<String>(&r, 0))
            .transpose()?;
        if state.as_deref() != Some(EventState::Active.as_str()) {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO event_commit (ev_id, tbl_name, commit_state, tstamp) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (ev_id, tbl_name) DO UPDATE SET commit_state = excluded.commit_state, tstamp = excluded.tstamp",
            &[&ev, &table.as_str(), &CommitMark::Begun.as_str(), &Utc::now()],
        )
        .await
        .map_err(|e| storage(e, "mark a commit"))?;
        commit(tx, "commit a commit marker").await?;
        Ok(true)
    }

    async fn end_commit(&self, event: EventId, table: &TableName, committed: bool) -> Result<()> {
        let client = self.client().await?;
        let ev = event.to_string();
        if committed {
            client
                .execute(
                    "UPDATE event_commit SET commit_state = $3, tstamp = $4 WHERE ev_id = $1 AND tbl_name = $2",
                    &[&ev, &table.as_str(), &CommitMark::Done.as_str(), &Utc::now()],
                )
                .await
        } else {
            client
                .execute(
                    "DELETE FROM event_commit WHERE ev_id = $1 AND tbl_name = $2 AND commit_state = $3",
                    &[&ev, &table.as_str(), &CommitMark::Begun.as_str()],
                )
                .await
        }
        .map_err(|e| storage(e, "end a commit marker"))?;
        Ok(())
    }

    async fn reap_jobs(&self, stale_after: Duration) -> Result<Vec<ReapedJob>> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        // Staleness by the database's clock, so hosts with skewed clocks agree. A row another
        // process has locked (reaping it, or beating) is skipped: its reaper ends it, or it lives.
        let rows = tx
            .query(
                "SELECT hub_name, job_name, last_ev_id, heartbeat, owner_host, owner_pid FROM job \
                 WHERE job_state = 'RUNNING' \
                 AND (heartbeat IS NULL OR heartbeat <= clock_timestamp() - make_interval(secs => $1)) \
                 ORDER BY hub_name, job_name FOR UPDATE SKIP LOCKED",
                &[&stale_after.as_secs_f64()],
            )
            .await
            .map_err(|e| storage(e, "read abandoned jobs"))?;
        let mut reaped = Vec::new();
        for row in &rows {
            let hub: String = col(row, 0)?;
            let job: String = col(row, 1)?;
            let last_ev: Option<String> = col(row, 2)?;
            let host: Option<String> = col(row, 4)?;
            reaped.push(
                end_abandoned(
                    &tx,
                    &hub,
                    &job,
                    last_ev.as_ref(),
                    col(row, 3)?,
                    host.as_deref(),
                    col(row, 5)?,
                )
                .await?,
            );
        }
        commit(tx, "commit reaped jobs").await?;
        Ok(reaped)
    }

    async fn connector_or_insert(&self, record: &ConnectorRecord) -> Result<ConnectorRecord> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        lock_hub(&tx, &record.hub, "FOR KEY SHARE").await?;
        write_connector(&tx, record, false).await?;
        let row = tx
            .query_one(
                &format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM connector WHERE hub_name = $1 AND chn_name = $2"
                ),
                &[&record.hub.as_str(), &record.channel.as_str()],
            )
            .await
            .map_err(|e| storage(e, "read a connector"))?;
        let stored = connector_record(&row)?;
        commit(tx, "commit a connector").await?;
        Ok(stored)
    }

    async fn connector_records(&self, hub: Option<&HubName>) -> Result<Vec<ConnectorRecord>> {
        let client = self.client().await?;
        let hub = hub.map(|h| h.as_str());
        client
            .query(
                &format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM connector WHERE $1::text IS NULL OR hub_name = $1 \
                     ORDER BY hub_name, chn_name"
                ),
                &[&hub],
            )
            .await
            .map_err(|e| storage(e, "list connectors"))?
            .iter()
            .map(connector_record)
            .collect()
    }

    async fn put_connector(&self, record: &ConnectorRecord) -> Result<()> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        lock_hub(&tx, &record.hub, "FOR KEY SHARE").await?;
        write_connector(&tx, record, true).await?;
        commit(tx, "commit a connector").await
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let client = self.client().await?;
        let n = client
            .execute(
                &format!(
                    "INSERT INTO api_key ({API_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (key_id) DO NOTHING"
                ),
                &[
                    &key.key,
                    &key.secret_hash,
                    &key.level.as_str(),
                    &key.created,
                    &key.creator,
                    &key.description,
                ],
            )
            .await
            .map_err(|e| storage(e, "store an API key"))?;
        if n == 0 {
            return Err(RepoError::new(
                RepoErrorKind::Conflict,
                format!("API key {} already exists", key.key),
            ));
        }
        Ok(())
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let client = self.client().await?;
        client
            .query(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_key ORDER BY created, key_id"),
                &[],
            )
            .await
            .map_err(|e| storage(e, "list API keys"))?
            .iter()
            .map(api_key_record)
            .collect()
    }

    async fn api_key(&self, key: &str) -> Result<Option<ApiKeyRecord>> {
        let client = self.client().await?;
        client
            .query_opt(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_key WHERE key_id = $1"),
                &[&key],
            )
            .await
            .map_err(|e| storage(e, "read an API key"))?
            .as_ref()
            .map(api_key_record)
            .transpose()
    }

    async fn delete_api_key(&self, key: &str) -> Result<()> {
        let client = self.client().await?;
        let n = client
            .execute("DELETE FROM api_key WHERE key_id = $1", &[&key])
            .await
            .map_err(|e| storage(e, "delete an API key"))?;
        if n == 0 {
            return Err(RepoError::new(
                RepoErrorKind::NotFound,
                format!("API key {key} does not exist"),
            ));
        }
        Ok(())
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
