//! PostgreSQL: jobs, HVR events, their per-table results and log lines, commit markers, the reaper ([`crate::JobStore`]).

use super::runs::*;
use super::*;
use crate::JobStore;
use crate::process::local_host;

#[async_trait]
impl JobStore for PostgresRepository {
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
        // Staleness by the database's clock, so hosts with skewed clocks agree; the runs of this
        // host are looked at too, for a process of it that is gone. A row another process has
        // locked (reaping it, or beating) is skipped: its reaper ends it, or it lives.
        let rows = tx
            .query(
                "SELECT hub_name, job_name, last_ev_id, heartbeat, owner_host, owner_pid, owner_id, \
                 coalesce(heartbeat > clock_timestamp() - make_interval(secs => $1), false) FROM job \
                 WHERE job_state = 'RUNNING' \
                 AND (heartbeat IS NULL OR heartbeat <= clock_timestamp() - make_interval(secs => $1) \
                      OR owner_host = $2) \
                 ORDER BY hub_name, job_name FOR UPDATE SKIP LOCKED",
                &[&stale_after.as_secs_f64(), &local_host()],
            )
            .await
            .map_err(|e| storage(e, "read abandoned jobs"))?;
        let mut reaped = Vec::new();
        for row in &rows {
            let hub: String = col(row, 0)?;
            let job: String = col(row, 1)?;
            let last_ev: Option<String> = col(row, 2)?;
            let host: Option<String> = col(row, 4)?;
            let pid: Option<i64> = col(row, 5)?;
            let owner_id: Option<String> = col(row, 6)?;
            let beating: bool = col(row, 7)?;
            let gone = owner_gone(owner_id.as_deref(), host.as_deref(), pid);
            if beating && !gone {
                continue;
            }
            reaped.push(
                end_abandoned(
                    &tx,
                    &hub,
                    &job,
                    last_ev.as_ref(),
                    col(row, 3)?,
                    host.as_deref(),
                    pid,
                    gone,
                )
                .await?,
            );
        }
        commit(tx, "commit reaped jobs").await?;
        Ok(reaped)
    }
}
