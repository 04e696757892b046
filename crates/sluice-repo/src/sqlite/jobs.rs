//! SQLite: jobs, HVR events, their per-table results and log lines, commit markers, the reaper ([`crate::JobStore`]).

use super::runs::*;
use super::*;
use crate::JobStore;

#[async_trait]
impl JobStore for SqliteRepository {
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
            type Beat = (Option<String>, Option<String>, Option<String>, Option<i64>);
            let beats: Vec<Beat> = conn
                .prepare_cached(
                    "SELECT heartbeat, owner_id, owner_host, owner_pid FROM job WHERE job_state = 'RUNNING'",
                )
                .and_then(|mut st| {
                    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                        .collect()
                })
                .map_err(|e| storage(e, "read running jobs"))?;
            let mut any = false;
            for (beat, id, host, pid) in &beats {
                any |= stale(beat)? || owner_gone(id.as_deref(), host.as_deref(), *pid);
            }
            if !any {
                return Ok(Vec::new());
            }
            // Then, under the write lock (one process at a time), look again and end them.
            let tx = begin(conn)?;
            type Row = (
                String,
                String,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<i64>,
                Option<String>,
            );
            let rows: Vec<Row> = tx
                .prepare(
                    "SELECT hub_name, job_name, last_ev_id, heartbeat, owner_host, owner_pid, owner_id FROM job \
                     WHERE job_state = 'RUNNING' ORDER BY hub_name, job_name",
                )
                .and_then(|mut st| {
                    st.query_map([], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                    })?
                    .collect()
                })
                .map_err(|e| storage(e, "read running jobs"))?;
            let now = Utc::now();
            let mut reaped = Vec::new();
            for (hub, job, last_ev, heartbeat, host, pid, owner_id) in rows {
                let beat = heartbeat.as_deref().map(parse_ts).transpose()?;
                let gone = owner_gone(owner_id.as_deref(), host.as_deref(), pid);
                if !gone
                    && beat.is_some_and(|b| (now - b).to_std().unwrap_or_default() < stale_after)
                {
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
                    gone,
                    now,
                )?);
            }
            tx.commit().map_err(|e| storage(e, "commit reaped jobs"))?;
            Ok(reaped)
        })
        .await
    }
}
