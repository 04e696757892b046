//! PostgreSQL: the bookkeeping of job runs behind [`crate::JobStore`] (claims, the running event,
//! commit markers, abandoned runs, cancels).

use super::*;

/// Locks the job's row (`FOR UPDATE`); `None` when there is no such job.
pub(super) async fn lock_job(tx: &Transaction<'_>, hub: &str, job: &str) -> Result<Option<Row>> {
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
pub(super) async fn running_event(
    tx: &Transaction<'_>,
    hub: &str,
    job: &str,
    stale_after: Duration,
    taken_over: &mut Vec<EventId>,
) -> Result<Option<RepoError>> {
    let row = tx
        .query_opt(
            "SELECT job_state, last_ev_id, heartbeat, owner_host, owner_pid, clock_timestamp(), owner_id \
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
    let host: Option<String> = col(&row, 3)?;
    let pid: Option<i64> = col(&row, 4)?;
    let owner_id: Option<String> = col(&row, 6)?;
    let gone = owner_gone(owner_id.as_deref(), host.as_deref(), pid);
    let alive = !gone && beat.is_some_and(|b| (now - b).to_std().unwrap_or_default() < stale_after);
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
    )
    .await?;
    if let (Some(id), true) = (reaped.event, reaped.failed) {
        taken_over.push(id);
    }
    Ok(None)
}

/// The commit markers of event `ev`, by table.
pub(super) async fn commit_marks(
    tx: &Transaction<'_>,
    ev: &str,
) -> Result<Vec<(String, CommitMark)>> {
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
pub(super) async fn settle_busy_tables(
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
/// heartbeats (last at `beat`) or is `gone` from this host: its event `last_ev`, when still `ACTIVE`, becomes `FAILED`; the
/// job is freed in the state its event ended in.
#[allow(clippy::too_many_arguments)]
pub(super) async fn end_abandoned(
    tx: &Transaction<'_>,
    hub: &str,
    job: &str,
    last_ev: Option<&String>,
    beat: Option<DateTime<Utc>>,
    host: Option<&str>,
    pid: Option<i64>,
    gone: bool,
) -> Result<ReapedJob> {
    let marks = match last_ev {
        Some(ev) => commit_marks(tx, ev).await?,
        None => Vec::new(),
    };
    let since = beat.map(|b| EventId::at(b).to_string());
    let response = abandoned_response(host, pid, since, gone, &marks);
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
/// `stale_after` (by the database's clock) or is gone from this host ([`crate::process`]).
pub(super) async fn run_owner_live(
    tx: &Transaction<'_>,
    hub: &str,
    job: &str,
    ev: &str,
    stale_after: Duration,
) -> Result<Option<bool>> {
    let row = tx
        .query_opt(
            "SELECT job_state, last_ev_id, \
             coalesce(heartbeat > clock_timestamp() - make_interval(secs => $3), false), \
             owner_id, owner_host, owner_pid \
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
    let owner_id: Option<String> = col(&row, 3)?;
    let host: Option<String> = col(&row, 4)?;
    if owner_gone(owner_id.as_deref(), host.as_deref(), col(&row, 5)?) {
        return Ok(Some(false));
    }
    Ok(Some(col(&row, 2)?))
}

/// Ends the `ACTIVE` events of a job for `reason`: `CANCELED`, or `FAILED` for a run with a
/// committed table; `Conflict` while a table of one commits. Returns their ids. The caller holds
/// the job's row.
pub(super) async fn cancel_job_events(
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

pub(super) async fn claim(
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

pub(super) async fn submit(
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
