//! SQLite: the bookkeeping of job runs behind [`crate::JobStore`] (claims, the running event,
//! commit markers, abandoned runs, cancels).

use super::*;

/// The running state of a job: `Some(event)` when a live process runs it. A run whose owner stopped
/// sending heartbeats is failed (its event id pushed to `taken_over`) and counts as not running.
pub(super) fn running_event(
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
        Option<String>,
    );
    let row: Option<Row> = tx
        .query_row(
            "SELECT job_state, last_ev_id, heartbeat, owner_host, owner_pid, owner_id FROM job WHERE hub_name = ?1 AND job_name = ?2",
            params![hub, job],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .optional()
        .map_err(|e| storage(e, "read a job"))?;
    let now = Utc::now();
    let Some((state, last_ev, heartbeat, host, pid, owner_id)) = row else {
        return Ok(None);
    };
    if state != JobState::Running.as_str() {
        return Ok(None);
    }
    let beat = heartbeat.as_deref().map(parse_ts).transpose()?;
    let gone = owner_gone(owner_id.as_deref(), host.as_deref(), pid);
    let alive = !gone && beat.is_some_and(|b| (now - b).to_std().unwrap_or_default() < stale_after);
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
        gone,
        now,
    )?;
    if let (Some(id), true) = (reaped.event, reaped.failed) {
        taken_over.push(id);
    }
    Ok(None)
}

/// The commit markers of event `ev`, by table.
pub(super) fn commit_marks(conn: &Connection, ev: &str) -> Result<Vec<(String, CommitMark)>> {
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
pub(super) fn settle_busy_tables(
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
pub(super) fn end_abandoned(
    tx: &Transaction<'_>,
    hub: &str,
    job: &str,
    last_ev: Option<&String>,
    beat: Option<DateTime<Utc>>,
    host: Option<&str>,
    pid: Option<i64>,
    gone: bool,
    now: DateTime<Utc>,
) -> Result<ReapedJob> {
    let marks = match last_ev {
        Some(ev) => commit_marks(tx, ev)?,
        None => Vec::new(),
    };
    let response = abandoned_response(host, pid, beat.map(ts), gone, &marks);
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
/// `Some(false)` when its process has sent no heartbeat for `stale_after` or is gone from this
/// host ([`crate::process`]).
pub(super) fn run_owner_live(
    tx: &Transaction<'_>,
    hub: &str,
    job: &str,
    ev: &str,
    stale_after: Duration,
) -> Result<Option<bool>> {
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
    );
    let row: Option<Row> = tx
        .query_row(
            "SELECT job_state, last_ev_id, heartbeat, owner_id, owner_host, owner_pid FROM job WHERE hub_name = ?1 AND job_name = ?2",
            params![hub, job],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .optional()
        .map_err(|e| storage(e, "read a job"))?;
    let Some((state, Some(last_ev), heartbeat, owner_id, host, pid)) = row else {
        return Ok(None);
    };
    if state != JobState::Running.as_str() || last_ev != ev {
        return Ok(None);
    }
    if owner_gone(owner_id.as_deref(), host.as_deref(), pid) {
        return Ok(Some(false));
    }
    let beat = heartbeat.as_deref().map(parse_ts).transpose()?;
    Ok(Some(beat.is_some_and(|b| {
        (Utc::now() - b).to_std().unwrap_or_default() < stale_after
    })))
}

/// Ends the `ACTIVE` events of a job for `reason`: `CANCELED`, or `FAILED` for a run with a
/// committed table; `Conflict` while a table of one commits. Returns their ids.
pub(super) fn cancel_job_events(
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

pub(super) fn claim(
    tx: &Transaction<'_>,
    hub: &str,
    job: &str,
    event: &str,
    owner: &Owner,
) -> Result<()> {
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

pub(super) fn submit(
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
