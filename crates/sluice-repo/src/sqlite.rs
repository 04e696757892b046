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
    HubRecord, JobRecord, NewEvent, Owner, ReapedJob, RepoError, RepoErrorKind, Repository, Result,
    StartedJob, SubmittedJob, TokenRecord, UserRecord, abandoned_response, job_state_after,
    request_ending,
};
use sluice_store::sqlite::{AppliedAt, SqliteMigrations};

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

#[async_trait]
impl Repository for SqliteRepository {
    async fn hubs(&self) -> Result<Vec<HubRecord>> {
        self.with(|conn| {
            let names: Vec<String> = conn
                .prepare("SELECT hub_name FROM hub ORDER BY hub_name")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .map_err(|e| storage(e, "list hubs"))?;
            names
                .iter()
                .filter_map(|n| read_hub(conn, n).transpose())
                .collect()
        })
        .await
    }

    async fn hub(&self, hub: &HubName) -> Result<Option<HubRecord>> {
        let hub = hub.clone();
        self.with(move |conn| read_hub(conn, hub.as_str())).await
    }

    async fn apply_definitions(
        &self,
        definitions: &Definitions,
        user: &str,
        source: &str,
    ) -> Result<ApplySummary> {
        let defs = definitions.clone();
        let (user, source) = (user.to_owned(), source.to_owned());
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| storage(e, "begin"))?;
            let hub = &defs.hub.name;
            let mut summary = ApplySummary::default();
            if read_hub(&tx, hub.as_str())?.is_none() {
                tx.execute(
                    "INSERT INTO hub (hub_name, description, created, creator) VALUES (?1, ?2, ?3, ?4)",
                    params![hub.as_str(), defs.hub.description, ts(Utc::now()), user],
                )
                .map_err(|e| storage(e, "create the hub"))?;
                summary.hub_created = true;
                insert_event(
                    &tx,
                    &NewEvent {
                        hub: hub.clone(),
                        event_type: EventType::HubCreate,
                        user: user.clone(),
                        description: format!("hub {hub} created"),
                        channel: None,
                        loc: None,
                        loc2: None,
                        job: None,
                        state: EventState::Done,
                        body: serde_json::json!({ "source": source }),
                    },
                )?;
            } else {
                tx.execute(
                    "UPDATE hub SET description = ?2, def_version = def_version + 1 WHERE hub_name = ?1",
                    params![hub.as_str(), defs.hub.description],
                )
                .map_err(|e| storage(e, "update the hub"))?;
            }
            let existing: Vec<String> = read_locations(&tx, hub, None)?
                .into_iter()
                .map(|l| l.name.to_string())
                .collect();
            for loc in defs.locations.values() {
                let exists = existing.iter().any(|e| e == loc.name.as_str());
                write_location(&tx, hub, loc, exists)?;
                if exists {
                    summary.locations_replaced.push(loc.name.clone());
                } else {
                    summary.locations_added.push(loc.name.clone());
                }
            }
            for ch in defs.channels.values() {
                let exists = !read_channels(&tx, hub, Some(&ch.name))?.is_empty();
                write_channel(&tx, hub, ch)?;
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
                    user,
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
            )?;
            summary.event = Some(event);
            tx.commit().map_err(|e| storage(e, "commit the definitions"))?;
            Ok(summary)
        })
        .await
    }

    async fn location(&self, hub: &HubName, loc: &LocationName) -> Result<Option<Location>> {
        let (hub, loc) = (hub.clone(), loc.clone());
        self.with(move |conn| Ok(read_locations(conn, &hub, Some(&loc))?.pop()))
            .await
    }

    async fn locations(&self, hub: &HubName) -> Result<Vec<Location>> {
        let hub = hub.clone();
        self.with(move |conn| read_locations(conn, &hub, None))
            .await
    }

    async fn channel(&self, hub: &HubName, ch: &ChannelName) -> Result<Option<Channel>> {
        let (hub, ch) = (hub.clone(), ch.clone());
        self.with(move |conn| Ok(read_channels(conn, &hub, Some(&ch))?.pop()))
            .await
    }

    async fn channels(&self, hub: &HubName) -> Result<Vec<Channel>> {
        let hub = hub.clone();
        self.with(move |conn| read_channels(conn, &hub, None)).await
    }

    async fn post_event(&self, event: NewEvent) -> Result<EventId> {
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| storage(e, "begin"))?;
            let id = insert_event(&tx, &event)?;
            tx.commit().map_err(|e| storage(e, "commit an event"))?;
            Ok(id)
        })
        .await
    }

    async fn start_job(
        &self,
        event: NewEvent,
        owner: &Owner,
        stale_after: Duration,
    ) -> Result<StartedJob> {
        let owner = owner.clone();
        self.with(move |conn| {
            let tx = begin(conn)?;
            let submitted = submit(&tx, &event, Some((&owner, stale_after)))?;
            tx.commit().map_err(|e| storage(e, "commit a job start"))?;
            Ok(StartedJob {
                event: submitted.event,
                taken_over: submitted.taken_over,
            })
        })
        .await
    }

    async fn heartbeat(&self, hub: &HubName, job: &JobName, owner: &Owner) -> Result<bool> {
        let (hub, job, owner) = (hub.clone(), job.clone(), owner.clone());
        self.with(move |conn| {
            let n = conn
                .execute(
                    "UPDATE job SET heartbeat = ?4 WHERE hub_name = ?1 AND job_name = ?2 AND owner_id = ?3",
                    params![hub.as_str(), job.as_str(), owner.id, ts(Utc::now())],
                )
                .map_err(|e| storage(e, "record a heartbeat"))?;
            if n == 0 {
                return Err(RepoError::new(
                    RepoErrorKind::Conflict,
                    format!("job {job} is no longer held by this process"),
                ));
            }
            let state: Option<String> = conn
                .query_row(
                    "SELECT e.ev_state FROM job j JOIN event e ON e.ev_id = j.last_ev_id WHERE j.hub_name = ?1 AND j.job_name = ?2",
                    params![hub.as_str(), job.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| storage(e, "read a job's event"))?;
            Ok(state.as_deref() == Some(EventState::Active.as_str()))
        })
        .await
    }

    async fn finish_job(
        &self,
        hub: &HubName,
        job: &JobName,
        event: EventId,
        state: EventState,
        response: &str,
    ) -> Result<()> {
        let (hub, job, response) = (hub.clone(), job.clone(), response.to_owned());
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| storage(e, "begin"))?;
            let now = ts(Utc::now());
            tx.execute(
                "UPDATE event SET ev_state = ?2, response = ?3, finish_tstamp = ?4, last_updated = ?4 WHERE ev_id = ?1 AND ev_state = 'ACTIVE'",
                params![event.to_string(), state.as_str(), response, now],
            )
            .map_err(|e| storage(e, "finish an event"))?;
            let job_state = match state {
                EventState::Done => JobState::Done,
                EventState::Failed => JobState::Failed,
                EventState::Canceled => JobState::Suspend,
                EventState::Active => JobState::Running,
            };
            tx.execute(
                "UPDATE job SET job_state = ?3, run_end = ?4, owner_id = NULL, heartbeat = NULL \
                 WHERE hub_name = ?1 AND job_name = ?2 AND last_ev_id = ?5",
                params![hub.as_str(), job.as_str(), job_state.as_str(), now, event.to_string()],
            )
            .map_err(|e| storage(e, "finish a job"))?;
            tx.commit().map_err(|e| storage(e, "commit a job end"))
        })
        .await
    }

    async fn put_results(&self, event: EventId, results: &[EventResult]) -> Result<()> {
        let results = results.to_vec();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| storage(e, "begin"))?;
            for r in &results {
                tx.execute(
                    "INSERT INTO event_result (ev_id, tbl_name, res_name, res_value) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (ev_id, tbl_name, res_name) DO UPDATE SET res_value = excluded.res_value",
                    params![event.to_string(), r.table.as_ref().map_or("", |t| t.as_str()), r.name.as_str(), r.value],
                )
                .map_err(|e| storage(e, "store a result"))?;
            }
            tx.execute(
                "UPDATE event SET last_updated = ?2 WHERE ev_id = ?1",
                params![event.to_string(), ts(Utc::now())],
            )
            .map_err(|e| storage(e, "touch an event"))?;
            tx.commit().map_err(|e| storage(e, "commit results"))
        })
        .await
    }

    async fn append_log(&self, event: EventId, lines: &[String]) -> Result<()> {
        let lines = lines.to_vec();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| storage(e, "begin"))?;
            let next: i64 = tx
                .query_row("SELECT coalesce(max(line_no), 0) + 1 FROM event_log WHERE ev_id = ?1", [event.to_string()], |r| r.get(0))
                .map_err(|e| storage(e, "read the event log"))?;
            let now = ts(Utc::now());
            for (i, line) in lines.iter().enumerate() {
                tx.execute(
                    "INSERT INTO event_log (ev_id, line_no, tstamp, message) VALUES (?1, ?2, ?3, ?4)",
                    params![event.to_string(), next + i as i64, now, line],
                )
                .map_err(|e| storage(e, "append to the event log"))?;
            }
            tx.commit().map_err(|e| storage(e, "commit the event log"))
        })
        .await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        let filter = filter.clone();
        self.with(move |conn| {
            let mut sql = format!("SELECT {EVENT_COLUMNS} FROM event WHERE 1 = 1");
            let mut args: Vec<String> = Vec::new();
            let mut any_of = |column: &str, values: Vec<String>, sql: &mut String| {
                if values.is_empty() {
                    return;
                }
                let marks: Vec<String> = values
                    .iter()
                    .enumerate()
                    .map(|(i, _)| format!("?{}", args.len() + i + 1))
                    .collect();
                sql.push_str(&format!(" AND {column} IN ({})", marks.join(", ")));
                args.extend(values);
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
                args.push(loc.to_string());
                let n = args.len();
                sql.push_str(&format!(" AND (loc_name = ?{n} OR loc_name_2 = ?{n})"));
            }
            if let Some(t) = filter.begin {
                args.push(ts(t));
                sql.push_str(&format!(" AND ev_id >= ?{}", args.len()));
            }
            if let Some(t) = filter.end {
                args.push(ts(t));
                sql.push_str(&format!(" AND ev_id <= ?{}", args.len()));
            }
            sql.push_str(" ORDER BY ev_id DESC");
            if let Some(max) = filter.max_events {
                // LIMIT takes a bigint: a larger limit is no limit.
                let max = max.min(i64::MAX as usize);
                sql.push_str(&format!(" LIMIT {max}"));
            }
            let mut stmt = conn.prepare(&sql).map_err(|e| storage(e, "list events"))?;
            let rows: Vec<Vec<Option<String>>> = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), event_from_row)
                .map_err(|e| storage(e, "list events"))?
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| storage(e, "list events"))?;
            let mut events = Vec::with_capacity(rows.len());
            for row in rows {
                let mut record = event_record(row)?;
                if filter.fetch_results {
                    record.results = read_results(conn, &record.id.to_string(), None)?
                        .into_iter()
                        .filter(|r| {
                            filter.result_names.is_empty() || filter.result_names.contains(&r.name)
                        })
                        .filter(|r| {
                            filter.result_tables.is_empty()
                                || r.table
                                    .as_ref()
                                    .is_some_and(|t| filter.result_tables.contains(t))
                        })
                        .collect();
                }
                events.push(record);
            }
            Ok(events)
        })
        .await
    }

    async fn event_log(&self, event: EventId) -> Result<Vec<(DateTime<Utc>, String)>> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare("SELECT tstamp, message FROM event_log WHERE ev_id = ?1 ORDER BY line_no")
                .map_err(|e| storage(e, "read the event log"))?;
            let rows: Vec<(String, String)> = stmt
                .query_map([event.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| storage(e, "read the event log"))?
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| storage(e, "read the event log"))?;
            rows.into_iter()
                .map(|(t, m)| Ok((parse_ts(&t)?, m)))
                .collect()
        })
        .await
    }

    async fn jobs(&self, hub: &HubName) -> Result<Vec<JobRecord>> {
        let hub = hub.clone();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {JOB_COLUMNS} FROM job WHERE hub_name = ?1 ORDER BY job_name"
                ))
                .map_err(|e| storage(e, "list jobs"))?;
            let rows: Vec<JobRow> = stmt
                .query_map([hub.as_str()], job_from_row)
                .map_err(|e| storage(e, "list jobs"))?
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| storage(e, "list jobs"))?;
            rows.into_iter().map(job_record).collect()
        })
        .await
    }

    async fn latest_table_results(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        event_type: EventType,
    ) -> Result<BTreeMap<TableName, (EventRecord, Vec<EventResult>)>> {
        let (hub, channel) = (hub.clone(), channel.clone());
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT r.tbl_name, max(e.ev_id) FROM event e JOIN event_result r ON r.ev_id = e.ev_id \
                     WHERE e.hub_name = ?1 AND e.chn_name = ?2 AND e.ev_type = ?3 AND e.ev_state <> 'ACTIVE' AND r.tbl_name <> '' \
                     GROUP BY r.tbl_name",
                )
                .map_err(|e| storage(e, "read latest results"))?;
            let latest: Vec<(String, String)> = stmt
                .query_map(params![hub.as_str(), channel.as_str(), event_type.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| storage(e, "read latest results"))?
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| storage(e, "read latest results"))?;
            let mut out = BTreeMap::new();
            for (table, ev_id) in latest {
                let row = conn
                    .query_row(&format!("SELECT {EVENT_COLUMNS} FROM event WHERE ev_id = ?1"), [&ev_id], event_from_row)
                    .map_err(|e| storage(e, "read an event"))?;
                let record = event_record(row)?;
                let results = read_results(conn, &ev_id, Some(&table))?;
                out.insert(name(&table, "table name")?, (record, results));
            }
            Ok(out)
        })
        .await
    }

    async fn create_hub(&self, hub: &Hub, user: &str) -> Result<EventId> {
        let (hub, user) = (hub.clone(), user.to_owned());
        self.with(move |conn| {
            let tx = begin(conn)?;
            if read_hub(&tx, hub.name.as_str())?.is_some() {
                return Err(RepoError::new(
                    RepoErrorKind::Conflict,
                    format!("hub {} already exists", hub.name),
                ));
            }
            tx.execute(
                "INSERT INTO hub (hub_name, description, created, creator) VALUES (?1, ?2, ?3, ?4)",
                params![hub.name.as_str(), hub.description, ts(Utc::now()), user],
            )
            .map_err(|e| storage(e, "create a hub"))?;
            let id = insert_event(
                &tx,
                &audit(
                    &hub.name,
                    EventType::HubCreate,
                    &user,
                    format!("hub {} created", hub.name),
                ),
            )?;
            tx.commit().map_err(|e| storage(e, "commit a hub"))?;
            Ok(id)
        })
        .await
    }

    async fn delete_hub(&self, hub: &HubName) -> Result<()> {
        let hub = hub.clone();
        self.with(move |conn| {
            let tx = begin(conn)?;
            let h = hub.as_str();
            // Members reference locations without cascade; channels go first.
            for sql in [
                "DELETE FROM channel WHERE hub_name = ?1",
                "DELETE FROM location WHERE hub_name = ?1",
                "DELETE FROM job WHERE hub_name = ?1",
            ] {
                tx.execute(sql, [h])
                    .map_err(|e| storage(e, "delete a hub"))?;
            }
            let n = tx
                .execute("DELETE FROM hub WHERE hub_name = ?1", [h])
                .map_err(|e| storage(e, "delete a hub"))?;
            if n == 0 {
                return Err(hub_missing(&hub));
            }
            tx.commit().map_err(|e| storage(e, "commit a hub deletion"))
        })
        .await
    }

    async fn set_hub_frozen(&self, hub: &HubName, frozen: bool, user: &str) -> Result<EventId> {
        let (hub, user) = (hub.clone(), user.to_owned());
        self.with(move |conn| {
            let tx = begin(conn)?;
            let n = if frozen {
                tx.execute(
                    "UPDATE hub SET hub_state = 'FROZEN', freeze_time = CASE WHEN hub_state = 'FROZEN' THEN freeze_time ELSE ?2 END WHERE hub_name = ?1",
                    params![hub.as_str(), ts(Utc::now())],
                )
            } else {
                tx.execute(
                    "UPDATE hub SET hub_state = 'LIVE', freeze_time = NULL WHERE hub_name = ?1",
                    params![hub.as_str()],
                )
            }
            .map_err(|e| storage(e, "change the hub state"))?;
            if n == 0 {
                return Err(hub_missing(&hub));
            }
            let (kind, word) = if frozen {
                (EventType::HubFreeze, "frozen")
            } else {
                (EventType::HubUnfreeze, "unfrozen")
            };
            let id = insert_event(&tx, &audit(&hub, kind, &user, format!("hub {hub} {word} by {user}")))?;
            tx.commit().map_err(|e| storage(e, "commit the hub state"))?;
            Ok(id)
        })
        .await
    }

    async fn set_hub_props(
        &self,
        hub: &HubName,
        changes: &BTreeMap<String, Option<serde_json::Value>>,
        user: &str,
    ) -> Result<EventId> {
        let (hub, changes, user) = (hub.clone(), changes.clone(), user.to_owned());
        self.with(move |conn| {
            let tx = begin(conn)?;
            if read_hub(&tx, hub.as_str())?.is_none() {
                return Err(hub_missing(&hub));
            }
            for (prop, value) in &changes {
                let result = match (prop.as_str(), value) {
                    ("Description", v) => tx.execute(
                        "UPDATE hub SET description = ?2 WHERE hub_name = ?1",
                        params![hub.as_str(), v.as_ref().map_or(String::new(), |v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))],
                    ),
                    (_, None) => tx.execute(
                        "DELETE FROM hub_property WHERE hub_name = ?1 AND prop_name = ?2",
                        params![hub.as_str(), prop],
                    ),
                    (_, Some(v)) => tx.execute(
                        "INSERT INTO hub_property (hub_name, prop_name, prop_value) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (hub_name, prop_name) DO UPDATE SET prop_value = excluded.prop_value",
                        params![hub.as_str(), prop, v.to_string()],
                    ),
                };
                result.map_err(|e| storage(e, "set a hub property"))?;
            }
            let mut event = audit(
                &hub,
                EventType::HubPropertyChange,
                &user,
                format!("hub properties changed by {user}: {}", changes.keys().cloned().collect::<Vec<_>>().join(", ")),
            );
            event.body = serde_json::json!({ "props": changes });
            let id = insert_event(&tx, &event)?;
            tx.commit().map_err(|e| storage(e, "commit hub properties"))?;
            Ok(id)
        })
        .await
    }

    async fn replace_hub_definitions(
        &self,
        definitions: &Definitions,
        expected_version: i64,
        event: NewEvent,
    ) -> Result<EventId> {
        let defs = definitions.clone();
        self.with(move |conn| {
            let tx = begin(conn)?;
            let hub = &defs.hub.name;
            let h = hub.as_str();
            let current = read_hub(&tx, h)?.ok_or_else(|| hub_missing(hub))?;
            if current.version != expected_version {
                return Err(RepoError::new(
                    RepoErrorKind::Conflict,
                    format!("the definitions of hub {hub} changed meanwhile (version {} is now {})", expected_version, current.version),
                ));
            }
            tx.execute(
                "UPDATE hub SET description = ?2, def_version = def_version + 1 WHERE hub_name = ?1",
                params![h, defs.hub.description],
            )
            .map_err(|e| storage(e, "update the hub"))?;
            tx.execute("DELETE FROM channel WHERE hub_name = ?1", [h])
                .map_err(|e| storage(e, "replace channels"))?;
            let existing: Vec<String> = read_locations(&tx, hub, None)?
                .into_iter()
                .map(|l| l.name.to_string())
                .collect();
            for old in &existing {
                if !defs.locations.keys().any(|l| l.as_str() == old) {
                    tx.execute("DELETE FROM location WHERE hub_name = ?1 AND loc_name = ?2", params![h, old])
                        .map_err(|e| storage(e, "delete a location"))?;
                }
            }
            for loc in defs.locations.values() {
                write_location(&tx, hub, loc, existing.iter().any(|e| e == loc.name.as_str()))?;
            }
            for ch in defs.channels.values() {
                write_channel(&tx, hub, ch)?;
            }
            let id = insert_event(&tx, &event)?;
            tx.commit().map_err(|e| storage(e, "commit the definitions"))?;
            Ok(id)
        })
        .await
    }

    async fn users(&self) -> Result<Vec<UserRecord>> {
        self.with(|conn| {
            let rows: Vec<_> = conn
                .prepare("SELECT user_name, access_level, password_hash, created, creator FROM app_user ORDER BY user_name")
                .and_then(|mut st| st.query_map([], user_from_row)?.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| storage(e, "list users"))?;
            rows.into_iter().map(user_record).collect()
        })
        .await
    }

    async fn user(&self, user: &str) -> Result<Option<UserRecord>> {
        let user = user.to_owned();
        self.with(move |conn| {
            conn.prepare_cached("SELECT user_name, access_level, password_hash, created, creator FROM app_user WHERE user_name = ?1")
                .and_then(|mut st| st.query_row([&user], user_from_row).optional())
                .map_err(|e| storage(e, "read a user"))?
                .map(user_record)
                .transpose()
        })
        .await
    }

    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        let user = user.clone();
        self.with(move |conn| {
            let tx = begin(conn)?;
            let exists: bool = tx
                .query_row("SELECT count(*) > 0 FROM app_user WHERE user_name = ?1", [&user.name], |r| r.get(0))
                .map_err(|e| storage(e, "read a user"))?;
            if exists {
                return Err(RepoError::new(RepoErrorKind::Conflict, format!("user {} already exists", user.name)));
            }
            tx.execute(
                "INSERT INTO app_user (user_name, access_level, password_hash, created, creator) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![user.name, user.level.as_str(), user.password_hash, ts(user.created), user.creator],
            )
            .map_err(|e| storage(e, "create a user"))?;
            tx.commit().map_err(|e| storage(e, "commit a user"))
        })
        .await
    }

    async fn update_user(
        &self,
        user: &str,
        level: Option<AccessLevel>,
        password_hash: Option<&str>,
    ) -> Result<()> {
        let (user, hash) = (user.to_owned(), password_hash.map(str::to_owned));
        self.with(move |conn| {
            let n = conn
                .execute(
                    "UPDATE app_user SET access_level = coalesce(?2, access_level), password_hash = coalesce(?3, password_hash) WHERE user_name = ?1",
                    params![user, level.map(|l| l.as_str()), hash],
                )
                .map_err(|e| storage(e, "change a user"))?;
            if n == 0 {
                return Err(RepoError::new(RepoErrorKind::NotFound, format!("user {user} does not exist")));
            }
            Ok(())
        })
        .await
    }

    async fn delete_user(&self, user: &str) -> Result<()> {
        let user = user.to_owned();
        self.with(move |conn| {
            let n = conn
                .execute("DELETE FROM app_user WHERE user_name = ?1", [&user])
                .map_err(|e| storage(e, "delete a user"))?;
            if n == 0 {
                return Err(RepoError::new(
                    RepoErrorKind::NotFound,
                    format!("user {user} does not exist"),
                ));
            }
            Ok(())
        })
        .await
    }

    async fn put_token(&self, token: &TokenRecord) -> Result<()> {
        let t = token.clone();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO token (token_hash, user_name, kind, created, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![t.hash, t.user, t.kind, ts(t.created), ts(t.expires)],
            )
            .map_err(|e| storage(e, "store a token"))?;
            Ok(())
        })
        .await
    }

    async fn take_token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let hash = hash.to_owned();
        self.with(move |conn| {
            let tx = begin(conn)?;
            let row = tx
                .query_row(
                    "SELECT token_hash, user_name, kind, created, expires FROM token WHERE token_hash = ?1",
                    [&hash],
                    user_from_row,
                )
                .optional()
                .map_err(|e| storage(e, "read a token"))?;
            tx.execute("DELETE FROM token WHERE token_hash = ?1", [&hash])
                .map_err(|e| storage(e, "delete a token"))?;
            tx.commit().map_err(|e| storage(e, "commit a token"))?;
            row.map(token_record).transpose()
        })
        .await
    }

    async fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let hash = hash.to_owned();
        self.with(move |conn| {
            conn.prepare_cached("SELECT token_hash, user_name, kind, created, expires FROM token WHERE token_hash = ?1")
                .and_then(|mut st| st.query_row([&hash], user_from_row).optional())
                .map_err(|e| storage(e, "read a token"))?
                .map(token_record)
                .transpose()
        })
        .await
    }

    async fn tokens(&self, kind: &str, user: Option<&str>) -> Result<Vec<TokenRecord>> {
        let (kind, user) = (kind.to_owned(), user.map(str::to_owned));
        self.with(move |conn| {
            let rows: Vec<_> = conn
                .prepare("SELECT token_hash, user_name, kind, created, expires FROM token WHERE kind = ?1 AND (?2 IS NULL OR user_name = ?2) ORDER BY created")
                .and_then(|mut st| st.query_map(params![kind, user], user_from_row)?.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| storage(e, "list tokens"))?;
            rows.into_iter().map(token_record).collect()
        })
        .await
    }

    async fn delete_token(&self, hash: &str) -> Result<()> {
        let hash = hash.to_owned();
        self.with(move |conn| {
            conn.execute("DELETE FROM token WHERE token_hash = ?1", [&hash])
                .map_err(|e| storage(e, "delete a token"))?;
            Ok(())
        })
        .await
    }

    async fn setting_or_insert(&self, setting: &str, value: &str) -> Result<String> {
        let (setting, value) = (setting.to_owned(), value.to_owned());
        self.with(move |conn| {
            let tx = begin(conn)?;
            tx.execute(
                "INSERT INTO setting (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![setting, value],
            )
            .map_err(|e| storage(e, "store a setting"))?;
            let stored: String = tx
                .query_row(
                    "SELECT value FROM setting WHERE name = ?1",
                    [&setting],
                    |r| r.get(0),
                )
                .map_err(|e| storage(e, "read a setting"))?;
            tx.commit().map_err(|e| storage(e, "commit a setting"))?;
            Ok(stored)
        })
        .await
    }

    async fn submit_job(
        &self,
        event: NewEvent,
        start: Option<(&Owner, Duration)>,
    ) -> Result<SubmittedJob> {
        let start = start.map(|(o, d)| (o.clone(), d));
        self.with(move |conn| {
            let tx = begin(conn)?;
            let submitted = submit(&tx, &event, start.as_ref().map(|(o, d)| (o, *d)))?;
            tx.commit().map_err(|e| storage(e, "commit a job"))?;
            Ok(submitted)
        })
        .await
    }

    async fn claim_job(
        &self,
        hub: &HubName,
        job: &JobName,
        owner: &Owner,
        stale_after: Duration,
    ) -> Result<(EventId, Vec<EventId>)> {
        let (hub, job, owner) = (hub.clone(), job.clone(), owner.clone());
        self.with(move |conn| {
            let tx = begin(conn)?;
            let (h, j) = (hub.as_str(), job.as_str());
            let last: Option<Option<String>> = tx
                .query_row(
                    "SELECT last_ev_id FROM job WHERE hub_name = ?1 AND job_name = ?2",
                    params![h, j],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| storage(e, "read a job"))?;
            let Some(last) = last else {
                return Err(RepoError::new(
                    RepoErrorKind::NotFound,
                    format!("job {job} does not exist"),
                ));
            };
            let mut taken_over = Vec::new();
            if let Some(conflict) = running_event(&tx, h, j, stale_after, &mut taken_over)? {
                return Err(conflict);
            }
            let pending = match last {
                Some(ev) => tx
                    .query_row("SELECT ev_state FROM event WHERE ev_id = ?1", [&ev], |r| {
                        r.get::<_, String>(0)
                    })
                    .optional()
                    .map_err(|e| storage(e, "read an event"))?
                    .filter(|s| s == EventState::Active.as_str())
                    .map(|_| ev),
                None => None,
            };
            let Some(ev) = pending else {
                return Err(RepoError::new(
                    RepoErrorKind::Conflict,
                    format!("job {job} has no pending event to run"),
                ));
            };
            claim(&tx, h, j, &ev, &owner)?;
            tx.commit().map_err(|e| storage(e, "commit a job start"))?;
            Ok((name(&ev, "event id")?, taken_over))
        })
        .await
    }

    async fn job(&self, hub: &HubName, job: &JobName) -> Result<Option<JobRecord>> {
        let (hub, job) = (hub.clone(), job.clone());
        self.with(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM job WHERE hub_name = ?1 AND job_name = ?2"
            ))
            .and_then(|mut st| {
                st.query_row(params![hub.as_str(), job.as_str()], job_from_row)
                    .optional()
            })
            .map_err(|e| storage(e, "read a job"))?
            .map(job_record)
            .transpose()
        })
        .await
    }

    async fn set_job_state(&self, hub: &HubName, job: &JobName, state: JobState) -> Result<()> {
        let (hub, job) = (hub.clone(), job.clone());
        self.with(move |conn| {
            let tx = begin(conn)?;
            let current: Option<String> = tx
                .query_row(
                    "SELECT job_state FROM job WHERE hub_name = ?1 AND job_name = ?2",
                    params![hub.as_str(), job.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| storage(e, "read a job"))?;
            match current.as_deref() {
                None => {
                    return Err(RepoError::new(
                        RepoErrorKind::NotFound,
                        format!("job {job} does not exist"),
                    ));
                }
                Some("RUNNING") => {
                    return Err(RepoError::new(
                        RepoErrorKind::Conflict,
                        format!("job {job} is running; cancel its event to stop it"),
                    ));
                }
                Some(_) => {}
            }
            tx.execute(
                "UPDATE job SET job_state = ?3 WHERE hub_name = ?1 AND job_name = ?2",
                params![hub.as_str(), job.as_str(), state.as_str()],
            )
            .map_err(|e| storage(e, "change a job"))?;
            tx.commit().map_err(|e| storage(e, "commit a job"))
        })
        .await
    }

    async fn delete_job(&self, hub: &HubName, job: &JobName) -> Result<Vec<EventId>> {
        let (hub, job) = (hub.clone(), job.clone());
        self.with(move |conn| {
            let tx = begin(conn)?;
            let canceled = cancel_job_events(
                &tx,
                hub.as_str(),
                job.as_str(),
                "canceled: its job was deleted",
            )?;
            let n = tx
                .execute(
                    "DELETE FROM job WHERE hub_name = ?1 AND job_name = ?2",
                    params![hub.as_str(), job.as_str()],
                )
                .map_err(|e| storage(e, "delete a job"))?;
            if n == 0 {
                return Err(RepoError::new(
                    RepoErrorKind::NotFound,
                    format!("job {job} does not exist"),
                ));
            }
            tx.commit()
                .map_err(|e| storage(e, "commit a job deletion"))?;
            Ok(canceled)
        })
        .await
    }

    async fn cancel_events(
        &self,
        hub: &HubName,
        ids: &[EventId],
        stale_after: Duration,
    ) -> Result<Vec<EventRecord>> {
        let (hub, ids) = (hub.clone(), ids.to_vec());
        self.with(move |conn| {
            let tx = begin(conn)?;
            let at = Utc::now();
            let now = ts(at);
            let mut out = Vec::new();
            for id in &ids {
                let row = tx
                    .query_row(&format!("SELECT {EVENT_COLUMNS} FROM event WHERE ev_id = ?1 AND hub_name = ?2"), params![id.to_string(), hub.as_str()], event_from_row)
                    .optional()
                    .map_err(|e| storage(e, "read an event"))?;
                let Some(row) = row else {
                    return Err(RepoError::new(RepoErrorKind::NotFound, format!("event {id} does not exist in hub {hub}")));
                };
                let mut record = event_record(row)?;
                if record.state != EventState::Active {
                    return Err(RepoError::new(
                        RepoErrorKind::Conflict,
                        format!("event {id} is {}: only events in 'ACTIVE' state can be canceled", record.state),
                    ));
                }
                let text = id.to_string();
                let run = match &record.job {
                    Some(job) => run_owner_live(&tx, hub.as_str(), job.as_str(), &text, stale_after)?,
                    None => None,
                };
                let marks = commit_marks(&tx, &text)?;
                let (state, response) =
                    request_ending(&text, "canceled by a user", &marks, run == Some(true))?;
                if run == Some(false) {
                    let unfinished = if state == EventState::Canceled {
                        table_state::CANCELED
                    } else {
                        table_state::FAILED
                    };
                    settle_busy_tables(&tx, &text, &marks, unfinished, &response)?;
                }
                tx.execute(
                    "UPDATE event SET ev_state = ?3, response = ?4, finish_tstamp = ?2, last_updated = ?2, canceled = 1 WHERE ev_id = ?1",
                    params![text, now, state.as_str(), response],
                )
                .map_err(|e| storage(e, "cancel an event"))?;
                if let Some(job) = &record.job {
                    match run {
                        // The live run stops at its next look at the event and lets go of the job.
                        Some(true) => {}
                        // Nobody runs it any more: free the job now.
                        Some(false) => {
                            tx.execute(
                                "UPDATE job SET job_state = ?4, run_end = ?5, owner_id = NULL, heartbeat = NULL \
                                 WHERE hub_name = ?1 AND job_name = ?2 AND last_ev_id = ?3",
                                params![hub.as_str(), job.as_str(), text, job_state_after(state).as_str(), now],
                            )
                            .map_err(|e| storage(e, "free a job"))?;
                        }
                        None => {
                            tx.execute(
                                "UPDATE job SET job_state = 'SUSPEND' WHERE hub_name = ?1 AND job_name = ?2 AND last_ev_id = ?3 AND job_state <> 'RUNNING'",
                                params![hub.as_str(), job.as_str(), text],
                            )
                            .map_err(|e| storage(e, "suspend a job"))?;
                        }
                    }
                }
                record.state = state;
                record.response = Some(response);
                record.finish = Some(at);
                record.canceled = true;
                out.push(record);
            }
            tx.commit().map_err(|e| storage(e, "commit a cancel"))?;
            Ok(out)
        })
        .await
    }

    async fn begin_commit(
        &self,
        hub: &HubName,
        job: &JobName,
        event: EventId,
        table: &TableName,
        owner: &Owner,
    ) -> Result<bool> {
        let (hub, job, table, owner) = (hub.clone(), job.clone(), table.clone(), owner.clone());
        self.with(move |conn| {
            let tx = begin(conn)?;
            let ev = event.to_string();
            let held: Option<(Option<String>, Option<String>)> = tx
                .query_row(
                    "SELECT owner_id, last_ev_id FROM job WHERE hub_name = ?1 AND job_name = ?2",
                    params![hub.as_str(), job.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(|e| storage(e, "read a job"))?;
            if held != Some((Some(owner.id.clone()), Some(ev.clone()))) {
                return Err(RepoError::new(
                    RepoErrorKind::Conflict,
                    format!("job {job} is no longer held by this process"),
                ));
            }
            let state: Option<String> = tx
                .query_row("SELECT ev_state FROM event WHERE ev_id = ?1", [&ev], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| storage(e, "read an event"))?;
            if state.as_deref() != Some(EventState::Active.as_str()) {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO event_commit (ev_id, tbl_name, commit_state, tstamp) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (ev_id, tbl_name) DO UPDATE SET commit_state = excluded.commit_state, tstamp = excluded.tstamp",
                params![ev, table.as_str(), CommitMark::Begun.as_str(), ts(Utc::now())],
            )
            .map_err(|e| storage(e, "mark a commit"))?;
            tx.commit().map_err(|e| storage(e, "commit a commit marker"))?;
            Ok(true)
        })
        .await
    }

    async fn end_commit(&self, event: EventId, table: &TableName, committed: bool) -> Result<()> {
        let table = table.clone();
        self.with(move |conn| {
            let (ev, t) = (event.to_string(), table.as_str().to_owned());
            if committed {
                conn.execute(
                    "UPDATE event_commit SET commit_state = ?3, tstamp = ?4 WHERE ev_id = ?1 AND tbl_name = ?2",
                    params![ev, t, CommitMark::Done.as_str(), ts(Utc::now())],
                )
            } else {
                conn.execute(
                    "DELETE FROM event_commit WHERE ev_id = ?1 AND tbl_name = ?2 AND commit_state = ?3",
                    params![ev, t, CommitMark::Begun.as_str()],
                )
            }
            .map_err(|e| storage(e, "end a commit marker"))?;
            Ok(())
        })
        .await
    }

    async fn reap_jobs(&self, stale_after: Duration) -> Result<Vec<ReapedJob>> {
        self.with(move |conn| {
            // A cheap read first: most passes find nothing and take no write lock.
            let now = Utc::now();
            let stale = |beat: &Option<String>| -> Result<bool> {
                let beat = beat.as_deref().map(parse_ts).transpose()?;
                Ok(beat.is_none_or(|b| (now - b).to_std().unwrap_or_default() >= stale_after))
            };
            let beats: Vec<Option<String>> = conn
                .prepare_cached("SELECT heartbeat FROM job WHERE job_state = 'RUNNING'")
                .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
                .map_err(|e| storage(e, "read running jobs"))?;
            let mut any = false;
            for beat in &beats {
                any |= stale(beat)?;
            }
            if !any {
                return Ok(Vec::new());
            }
            // Then, under the write lock (one process at a time), look again and end them.
            let tx = begin(conn)?;
            type Row = (String, String, Option<String>, Option<String>, Option<String>, Option<i64>);
            let rows: Vec<Row> = tx
                .prepare(
                    "SELECT hub_name, job_name, last_ev_id, heartbeat, owner_host, owner_pid FROM job \
                     WHERE job_state = 'RUNNING' ORDER BY hub_name, job_name",
                )
                .and_then(|mut st| {
                    st.query_map([], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                    })?
                    .collect()
                })
                .map_err(|e| storage(e, "read running jobs"))?;
            let now = Utc::now();
            let mut reaped = Vec::new();
            for (hub, job, last_ev, heartbeat, host, pid) in rows {
                let beat = heartbeat.as_deref().map(parse_ts).transpose()?;
                if beat.is_some_and(|b| (now - b).to_std().unwrap_or_default() < stale_after) {
                    continue;
                }
                reaped.push(end_abandoned(
                    &tx,
                    &hub,
                    &job,
                    last_ev.as_ref(),
                    beat,
                    host.as_deref(),
                    pid,
                    now,
                )?);
            }
            tx.commit().map_err(|e| storage(e, "commit reaped jobs"))?;
            Ok(reaped)
        })
        .await
    }

    async fn connector_or_insert(&self, record: &ConnectorRecord) -> Result<ConnectorRecord> {
        let record = record.clone();
        self.with(move |conn| {
            let tx = begin(conn)?;
            if !hub_exists(&tx, &record.hub)? {
                return Err(hub_missing(&record.hub));
            }
            write_connector(&tx, &record, false).map_err(|e| storage(e, "store a connector"))?;
            let row = tx
                .query_row(
                    &format!("SELECT {CONNECTOR_COLUMNS} FROM connector WHERE hub_name = ?1 AND chn_name = ?2"),
                    params![record.hub.as_str(), record.channel.as_str()],
                    connector_from_row,
                )
                .map_err(|e| storage(e, "read a connector"))?;
            tx.commit().map_err(|e| storage(e, "commit a connector"))?;
            connector_record(row)
        })
        .await
    }

    async fn connector_records(&self, hub: Option<&HubName>) -> Result<Vec<ConnectorRecord>> {
        let hub = hub.map(|h| h.as_str().to_owned());
        self.with(move |conn| {
            let rows: Vec<_> = conn
                .prepare(&format!(
                    "SELECT {CONNECTOR_COLUMNS} FROM connector WHERE ?1 IS NULL OR hub_name = ?1 ORDER BY hub_name, chn_name"
                ))
                .and_then(|mut st| st.query_map([&hub], connector_from_row)?.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| storage(e, "list connectors"))?;
            rows.into_iter().map(connector_record).collect()
        })
        .await
    }

    async fn put_connector(&self, record: &ConnectorRecord) -> Result<()> {
        let record = record.clone();
        self.with(move |conn| {
            let tx = begin(conn)?;
            if !hub_exists(&tx, &record.hub)? {
                return Err(hub_missing(&record.hub));
            }
            write_connector(&tx, &record, true).map_err(|e| storage(e, "store a connector"))?;
            tx.commit().map_err(|e| storage(e, "commit a connector"))
        })
        .await
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let k = key.clone();
        self.with(move |conn| {
            let n = conn
                .execute(
                    &format!("INSERT INTO api_key ({API_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key_id) DO NOTHING"),
                    params![k.key, k.secret_hash, k.level.as_str(), ts(k.created), k.creator, k.description],
                )
                .map_err(|e| storage(e, "store an API key"))?;
            if n == 0 {
                return Err(RepoError::new(RepoErrorKind::Conflict, format!("API key {} already exists", k.key)));
            }
            Ok(())
        })
        .await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        self.with(|conn| {
            let rows: Vec<_> = conn
                .prepare(&format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_key ORDER BY created, key_id"
                ))
                .and_then(|mut st| {
                    st.query_map([], api_key_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(|e| storage(e, "list API keys"))?;
            rows.into_iter().map(api_key_record).collect()
        })
        .await
    }

    async fn api_key(&self, key: &str) -> Result<Option<ApiKeyRecord>> {
        let key = key.to_owned();
        self.with(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_key WHERE key_id = ?1"
            ))
            .and_then(|mut st| st.query_row([&key], api_key_from_row).optional())
            .map_err(|e| storage(e, "read an API key"))?
            .map(api_key_record)
            .transpose()
        })
        .await
    }

    async fn delete_api_key(&self, key: &str) -> Result<()> {
        let key = key.to_owned();
        self.with(move |conn| {
            let n = conn
                .execute("DELETE FROM api_key WHERE key_id = ?1", [&key])
                .map_err(|e| storage(e, "delete an API key"))?;
            if n == 0 {
                return Err(RepoError::new(
                    RepoErrorKind::NotFound,
                    format!("API key {key} does not exist"),
                ));
            }
            Ok(())
        })
        .await
    }
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
