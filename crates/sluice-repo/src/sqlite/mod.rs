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
use crate::{
    ApiKeyRecord, ApplySummary, CommitMark, ConnectorRecord, EventFilter, EventRecord, EventResult,
    HubRecord, JobRecord, NewEvent, Owner, ReapedJob, RepoError, RepoErrorKind, Result, StartedJob,
    SubmittedJob, TokenRecord, UserRecord, abandoned_response, job_state_after, request_ending,
};
use sluice_store::sqlite::{AppliedAt, SqliteMigrations};

mod definitions;
mod identity;
mod jobs;
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

fn prop_json(value: &PropValue) -> String {
    serde_json::to_string(value).expect("property values serialize")
}

fn parse_prop(text: &str) -> Result<PropValue> {
    serde_json::from_str(text).map_err(|_| corrupt(format_args!("property value {text:?}")))
}

fn write_location(tx: &Transaction<'_>, hub: &HubName, loc: &Location, exists: bool) -> Result<()> {
    let what = "store a location";
    if exists {
        tx.execute(
            "UPDATE location SET loc_class = ?3, description = ?4 WHERE hub_name = ?1 AND loc_name = ?2",
            params![hub.as_str(), loc.name.as_str(), loc.class.as_str(), loc.description],
        )
        .map_err(|e| storage(e, what))?;
        tx.execute(
            "DELETE FROM location_property WHERE hub_name = ?1 AND loc_name = ?2",
            params![hub.as_str(), loc.name.as_str()],
        )
        .map_err(|e| storage(e, what))?;
    } else {
        tx.execute(
            "INSERT INTO location (hub_name, loc_name, loc_class, description) VALUES (?1, ?2, ?3, ?4)",
            params![hub.as_str(), loc.name.as_str(), loc.class.as_str(), loc.description],
        )
        .map_err(|e| storage(e, what))?;
    }
    for (prop, value) in &loc.props {
        tx.execute(
            "INSERT INTO location_property (hub_name, loc_name, prop_name, prop_value) VALUES (?1, ?2, ?3, ?4)",
            params![hub.as_str(), loc.name.as_str(), prop, prop_json(value)],
        )
        .map_err(|e| storage(e, what))?;
    }
    Ok(())
}

fn write_channel(tx: &Transaction<'_>, hub: &HubName, ch: &Channel) -> Result<()> {
    let what = "store a channel";
    let (h, c) = (hub.as_str(), ch.name.as_str());
    tx.execute(
        "DELETE FROM channel WHERE hub_name = ?1 AND chn_name = ?2",
        params![h, c],
    )
    .map_err(|e| storage(e, what))?;
    tx.execute(
        "INSERT INTO channel (hub_name, chn_name, description) VALUES (?1, ?2, ?3)",
        params![h, c, ch.description],
    )
    .map_err(|e| storage(e, what))?;
    for (group, members) in &ch.loc_groups {
        tx.execute(
            "INSERT INTO loc_group (hub_name, chn_name, grp_name) VALUES (?1, ?2, ?3)",
            params![h, c, group.as_str()],
        )
        .map_err(|e| storage(e, what))?;
        for (seq, loc) in members.iter().enumerate() {
            tx.execute(
                "INSERT INTO loc_group_member (hub_name, chn_name, grp_name, loc_name, member_seq) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![h, c, group.as_str(), loc.as_str(), seq as i64],
            )
            .map_err(|e| storage(e, &format!("store location group {group} (is location {loc} defined?)")))?;
        }
    }
    for table in ch.tables.values() {
        tx.execute(
            "INSERT INTO channel_table (hub_name, chn_name, tbl_name, tbl_base_name, tbl_group, discover_cols) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                h,
                c,
                table.name.as_str(),
                table.base_name.as_ref().map(|b| b.as_str()),
                table.table_group.as_ref().map(|g| g.as_str()),
                table.columns.is_none(),
            ],
        )
        .map_err(|e| storage(e, what))?;
        for (seq, col) in table.columns.iter().flatten().enumerate() {
            tx.execute(
                "INSERT INTO channel_column (hub_name, chn_name, tbl_name, col_name, col_sequence, col_key, col_datatype, col_nullable) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![h, c, table.name.as_str(), col.name.as_str(), seq as i64 + 1, col.key, col.data_type.to_string(), col.nullable],
            )
            .map_err(|e| storage(e, what))?;
        }
    }
    for (seq, action) in ch.actions.iter().enumerate() {
        let params_json =
            serde_json::to_string(action.params()).expect("action parameters serialize");
        tx.execute(
            "INSERT INTO action (hub_name, chn_name, action_seq, act_name, loc_scope, tbl_scope, act_params) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![h, c, seq as i64, action.action_type().as_str(), action.loc_scope.to_string(), action.table_scope.to_string(), params_json],
        )
        .map_err(|e| storage(e, what))?;
    }
    Ok(())
}

fn read_hub(conn: &Connection, hub: &str) -> Result<Option<HubRecord>> {
    type Row = (String, String, String, String, String, Option<String>, i64);
    let row: Option<Row> = conn
        .query_row(
            "SELECT hub_name, description, hub_state, created, creator, freeze_time, def_version FROM hub WHERE hub_name = ?1",
            [hub],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
        )
        .optional()
        .map_err(|e| storage(e, "read a hub"))?;
    let Some((n, description, state, created, creator, freeze, version)) = row else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT prop_name, prop_value FROM hub_property WHERE hub_name = ?1 ORDER BY prop_name",
        )
        .map_err(|e| storage(e, "read hub properties"))?;
    let props: Vec<(String, String)> = stmt
        .query_map([hub], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(|e| storage(e, "read hub properties"))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| storage(e, "read hub properties"))?;
    let props = props
        .into_iter()
        .map(|(k, v)| {
            serde_json::from_str(&v)
                .map(|v| (k, v))
                .map_err(|_| corrupt("hub property"))
        })
        .collect::<Result<_>>()?;
    Ok(Some(HubRecord {
        hub: Hub {
            name: name(&n, "hub name")?,
            description,
        },
        state: name(&state, "hub state")?,
        created: parse_ts(&created)?,
        creator,
        freeze_time: freeze.as_deref().map(parse_ts).transpose()?,
        props,
        version,
    }))
}

fn read_locations(
    conn: &Connection,
    hub: &HubName,
    only: Option<&LocationName>,
) -> Result<Vec<Location>> {
    let what = "read locations";
    let mut stmt = conn
        .prepare(
            "SELECT loc_name, loc_class, description FROM location WHERE hub_name = ?1 AND (?2 IS NULL OR loc_name = ?2) ORDER BY loc_name",
        )
        .map_err(|e| storage(e, what))?;
    let rows: Vec<(String, String, String)> = stmt
        .query_map(params![hub.as_str(), only.map(|l| l.as_str())], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(|e| storage(e, what))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| storage(e, what))?;
    let mut props_stmt = conn
        .prepare("SELECT prop_name, prop_value FROM location_property WHERE hub_name = ?1 AND loc_name = ?2 ORDER BY prop_name")
        .map_err(|e| storage(e, what))?;
    let mut out = Vec::with_capacity(rows.len());
    for (loc, class, description) in rows {
        let props: Vec<(String, String)> = props_stmt
            .query_map(params![hub.as_str(), loc], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| storage(e, what))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| storage(e, what))?;
        let mut map = BTreeMap::new();
        for (k, v) in props {
            map.insert(k, parse_prop(&v)?);
        }
        out.push(Location {
            name: name(&loc, "location name")?,
            class: name(&class, "location class")?,
            description,
            props: map,
        });
    }
    Ok(out)
}

fn read_channels(
    conn: &Connection,
    hub: &HubName,
    only: Option<&ChannelName>,
) -> Result<Vec<Channel>> {
    let what = "read channels";
    let h = hub.as_str();
    let mut stmt = conn
        .prepare("SELECT chn_name, description FROM channel WHERE hub_name = ?1 AND (?2 IS NULL OR chn_name = ?2) ORDER BY chn_name")
        .map_err(|e| storage(e, what))?;
    let channels: Vec<(String, String)> = stmt
        .query_map(params![h, only.map(|c| c.as_str())], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(|e| storage(e, what))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| storage(e, what))?;
    let mut out = Vec::new();
    for (c, description) in channels {
        let mut loc_groups: BTreeMap<LocGroupName, Vec<LocationName>> = BTreeMap::new();
        let mut groups = conn
            .prepare("SELECT grp_name FROM loc_group WHERE hub_name = ?1 AND chn_name = ?2 ORDER BY grp_name")
            .map_err(|e| storage(e, what))?;
        for g in groups
            .query_map(params![h, c], |r| r.get::<_, String>(0))
            .map_err(|e| storage(e, what))?
        {
            let g = g.map_err(|e| storage(e, what))?;
            loc_groups.insert(name(&g, "location group")?, Vec::new());
        }
        let mut members = conn
            .prepare("SELECT grp_name, loc_name FROM loc_group_member WHERE hub_name = ?1 AND chn_name = ?2 ORDER BY grp_name, member_seq")
            .map_err(|e| storage(e, what))?;
        for m in members
            .query_map(params![h, c], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| storage(e, what))?
        {
            let (g, l) = m.map_err(|e| storage(e, what))?;
            loc_groups
                .entry(name(&g, "location group")?)
                .or_default()
                .push(name(&l, "location name")?);
        }
        let mut tables = BTreeMap::new();
        let mut table_stmt = conn
            .prepare("SELECT tbl_name, tbl_base_name, tbl_group, discover_cols FROM channel_table WHERE hub_name = ?1 AND chn_name = ?2 ORDER BY tbl_name")
            .map_err(|e| storage(e, what))?;
        let table_rows: Vec<(String, Option<String>, Option<String>, bool)> = table_stmt
            .query_map(params![h, c], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(|e| storage(e, what))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| storage(e, what))?;
        let mut col_stmt = conn
            .prepare(
                "SELECT col_name, col_key, col_datatype, col_nullable FROM channel_column \
                 WHERE hub_name = ?1 AND chn_name = ?2 AND tbl_name = ?3 ORDER BY col_sequence",
            )
            .map_err(|e| storage(e, what))?;
        for (t, base, group, discover) in table_rows {
            let columns = if discover {
                None
            } else {
                let rows: Vec<(String, u32, String, bool)> = col_stmt
                    .query_map(params![h, c, t], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .map_err(|e| storage(e, what))?
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| storage(e, what))?;
                Some(
                    rows.into_iter()
                        .map(|(n, key, ty, nullable)| {
                            Ok(ChannelColumn {
                                name: name(&n, "column name")?,
                                data_type: name(&ty, "data type")?,
                                nullable,
                                key,
                            })
                        })
                        .collect::<Result<Vec<_>>>()?,
                )
            };
            let table_name: TableName = name(&t, "table name")?;
            tables.insert(
                table_name.clone(),
                ChannelTable {
                    name: table_name,
                    base_name: opt_name(base, "base name")?,
                    table_group: opt_name(group, "table group")?,
                    columns,
                },
            );
        }
        let mut action_stmt = conn
            .prepare("SELECT act_name, loc_scope, tbl_scope, act_params FROM action WHERE hub_name = ?1 AND chn_name = ?2 ORDER BY action_seq")
            .map_err(|e| storage(e, what))?;
        let action_rows: Vec<(String, String, String, String)> = action_stmt
            .query_map(params![h, c], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(|e| storage(e, what))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| storage(e, what))?;
        let mut actions = Vec::new();
        for (act, loc_scope, tbl_scope, params_json) in action_rows {
            actions.push(
                Action::new(
                    name(&act, "action type")?,
                    name(&loc_scope, "location scope")?,
                    name(&tbl_scope, "table scope")?,
                    serde_json::from_str(&params_json).map_err(|_| corrupt("action parameters"))?,
                )
                .map_err(|_| corrupt("action parameters"))?,
            );
        }
        out.push(Channel {
            name: name(&c, "channel name")?,
            description,
            loc_groups,
            tables,
            actions,
        });
    }
    Ok(out)
}

/// The running state of a job: `Some(event)` when a live process runs it. A run whose owner stopped
/// sending heartbeats is failed (its event id pushed to `taken_over`) and counts as not running.
fn running_event(
    tx: &Transaction<'_>,
    hub: &str,
    job: &str,
    stale_after: Duration,
    taken_over: &mut Vec<EventId>,
) -> Result<Option<RepoError>> {
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
    );
    let row: Option<Row> = tx
        .query_row(
            "SELECT job_state, last_ev_id, heartbeat, owner_host, owner_pid FROM job WHERE hub_name = ?1 AND job_name = ?2",
            params![hub, job],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()
        .map_err(|e| storage(e, "read a job"))?;
    let now = Utc::now();
    let Some((state, last_ev, heartbeat, host, pid)) = row else {
        return Ok(None);
    };
    if state != JobState::Running.as_str() {
        return Ok(None);
    }
    let beat = heartbeat.as_deref().map(parse_ts).transpose()?;
    let alive = beat.is_some_and(|b| (now - b).to_std().unwrap_or_default() < stale_after);
    let last_ev = last_ev.unwrap_or_default();
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
        now,
    )?;
    if let (Some(id), true) = (reaped.event, reaped.failed) {
        taken_over.push(id);
    }
    Ok(None)
}

/// The commit markers of event `ev`, by table.
fn commit_marks(conn: &Connection, ev: &str) -> Result<Vec<(String, CommitMark)>> {
    let rows: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT tbl_name, commit_state FROM event_commit WHERE ev_id = ?1 ORDER BY tbl_name",
        )
        .and_then(|mut st| {
            st.query_map([ev], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(|e| storage(e, "read commit markers"))?;
    rows.into_iter()
        .map(|(t, m)| Ok((t, CommitMark::parse(&m)?)))
        .collect()
}

/// Settles the tables a run left `BUSY` when nobody will finish them: a table whose commit
/// marker says committed becomes `DONE`; the others `state` with `error` as their error.
fn settle_busy_tables(
    tx: &Transaction<'_>,
    ev: &str,
    marks: &[(String, CommitMark)],
    state: &str,
    error: &str,
) -> Result<()> {
    let busy: Vec<String> = tx
        .prepare_cached(
            "SELECT tbl_name FROM event_result WHERE ev_id = ?1 AND res_name = ?2 AND res_value = ?3",
        )
        .and_then(|mut st| {
            st.query_map(
                params![ev, ResultName::TableState.as_str(), table_state::BUSY],
                |r| r.get(0),
            )?
            .collect()
        })
        .map_err(|e| storage(e, "read busy tables"))?;
    for table in busy {
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
                "INSERT INTO event_result (ev_id, tbl_name, res_name, res_value) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (ev_id, tbl_name, res_name) DO UPDATE SET res_value = excluded.res_value",
                params![ev, table, name.as_str(), value],
            )
            .map_err(|e| storage(e, "settle a busy table"))?;
        }
    }
    Ok(())
}

/// Ends the run of a job whose process stopped sending heartbeats (last at `beat`): its event
/// `last_ev`, when still `ACTIVE`, becomes `FAILED`; the job is freed in the state its event
/// ended in.
#[allow(clippy::too_many_arguments)]
fn end_abandoned(
    tx: &Transaction<'_>,
    hub: &str,
    job: &str,
    last_ev: Option<&String>,
    beat: Option<DateTime<Utc>>,
    host: Option<&str>,
    pid: Option<i64>,
    now: DateTime<Utc>,
) -> Result<ReapedJob> {
    let marks = match last_ev {
        Some(ev) => commit_marks(tx, ev)?,
        None => Vec::new(),
    };
    let response = abandoned_response(host, pid, beat.map(ts), &marks);
    let mut failed = false;
    let mut final_state = EventState::Failed;
    if let Some(ev) = last_ev {
        failed = tx
            .execute(
                "UPDATE event SET ev_state = 'FAILED', response = ?2, finish_tstamp = ?3, last_updated = ?3 \
                 WHERE ev_id = ?1 AND ev_state = 'ACTIVE'",
                params![ev, response, ts(now)],
            )
            .map_err(|e| storage(e, "fail an abandoned event"))?
            == 1;
        if failed {
            settle_busy_tables(tx, ev, &marks, table_state::FAILED, &response)?;
        }
        let state: Option<String> = tx
            .query_row("SELECT ev_state FROM event WHERE ev_id = ?1", [ev], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| storage(e, "read an event"))?;
        if let Some(state) = state {
            final_state = name(&state, "event state")?;
        }
    }
    tx.execute(
        "UPDATE job SET job_state = ?3, run_end = ?4, owner_id = NULL, heartbeat = NULL WHERE hub_name = ?1 AND job_name = ?2",
        params![hub, job, job_state_after(final_state).as_str(), ts(now)],
    )
    .map_err(|e| storage(e, "free an abandoned job"))?;
    Ok(ReapedJob {
        hub: name(hub, "hub name")?,
        job: name(job, "job name")?,
        event: last_ev.map(|e| name(e, "event id")).transpose()?,
        failed,
        response,
    })
}

/// Whether the live process runs event `ev` of `job`: `None` when the job does not run it,
/// `Some(false)` when its process has sent no heartbeat for `stale_after`.
fn run_owner_live(
    tx: &Transaction<'_>,
    hub: &str,
    job: &str,
    ev: &str,
    stale_after: Duration,
) -> Result<Option<bool>> {
    let row: Option<(String, Option<String>, Option<String>)> = tx
        .query_row(
            "SELECT job_state, last_ev_id, heartbeat FROM job WHERE hub_name = ?1 AND job_name = ?2",
            params![hub, job],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(|e| storage(e, "read a job"))?;
    let Some((state, Some(last_ev), heartbeat)) = row else {
        return Ok(None);
    };
    if state != JobState::Running.as_str() || last_ev != ev {
        return Ok(None);
    }
    let beat = heartbeat.as_deref().map(parse_ts).transpose()?;
    Ok(Some(beat.is_some_and(|b| {
        (Utc::now() - b).to_std().unwrap_or_default() < stale_after
    })))
}

/// Ends the `ACTIVE` events of a job for `reason`: `CANCELED`, or `FAILED` for a run with a
/// committed table; `Conflict` while a table of one commits. Returns their ids.
fn cancel_job_events(
    tx: &Transaction<'_>,
    hub: &str,
    job: &str,
    reason: &str,
) -> Result<Vec<EventId>> {
    let ids: Vec<String> = tx
        .prepare("SELECT ev_id FROM event WHERE hub_name = ?1 AND job_name = ?2 AND ev_state = 'ACTIVE' ORDER BY ev_id")
        .and_then(|mut st| st.query_map(params![hub, job], |r| r.get(0))?.collect())
        .map_err(|e| storage(e, "read pending events"))?;
    let now = ts(Utc::now());
    for id in &ids {
        let (state, response) = request_ending(id, reason, &commit_marks(tx, id)?, true)?;
        tx.execute(
            "UPDATE event SET ev_state = ?4, response = ?2, finish_tstamp = ?3, last_updated = ?3, canceled = 1 WHERE ev_id = ?1",
            params![id, response, now, state.as_str()],
        )
        .map_err(|e| storage(e, "cancel an event"))?;
    }
    ids.iter().map(|i| name(i, "event id")).collect()
}

fn claim(tx: &Transaction<'_>, hub: &str, job: &str, event: &str, owner: &Owner) -> Result<()> {
    let now = ts(Utc::now());
    tx.execute(
        "INSERT INTO job (hub_name, job_name, job_state, last_ev_id, run_begin, run_end, num_runs, owner_id, owner_host, owner_pid, heartbeat) \
         VALUES (?1, ?2, 'RUNNING', ?3, ?4, NULL, 1, ?5, ?6, ?7, ?4) \
         ON CONFLICT (hub_name, job_name) DO UPDATE SET job_state = 'RUNNING', last_ev_id = ?3, run_begin = ?4, \
         run_end = NULL, num_runs = num_runs + 1, owner_id = ?5, owner_host = ?6, owner_pid = ?7, heartbeat = ?4",
        params![hub, job, event, now, owner.id, owner.host, owner.pid],
    )
    .map_err(|e| storage(e, "claim a job"))?;
    Ok(())
}

fn submit(
    tx: &Transaction<'_>,
    event: &NewEvent,
    start: Option<(&Owner, Duration)>,
) -> Result<SubmittedJob> {
    let job = event
        .job
        .clone()
        .ok_or_else(|| RepoError::new(RepoErrorKind::Conflict, "a job run needs a job name"))?;
    let (hub, j) = (event.hub.as_str(), job.as_str());
    let mut taken_over = Vec::new();
    let stale_after = start.map_or(Duration::from_secs(60), |(_, s)| s);
    if let Some(conflict) = running_event(tx, hub, j, stale_after, &mut taken_over)? {
        return Err(conflict);
    }
    let canceled = cancel_job_events(tx, hub, j, "replaced by a newer request for the same job")?;
    let id = insert_event(tx, event)?;
    match start {
        Some((owner, _)) => claim(tx, hub, j, &id.to_string(), owner)?,
        None => {
            tx.execute(
                "INSERT INTO job (hub_name, job_name, job_state, last_ev_id, num_runs) VALUES (?1, ?2, 'SUSPEND', ?3, 0) \
                 ON CONFLICT (hub_name, job_name) DO UPDATE SET job_state = 'SUSPEND', last_ev_id = ?3, owner_id = NULL, heartbeat = NULL",
                params![hub, j, id.to_string()],
            )
            .map_err(|e| storage(e, "queue a job"))?;
        }
    }
    Ok(SubmittedJob {
        event: id,
        canceled,
        taken_over,
    })
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
