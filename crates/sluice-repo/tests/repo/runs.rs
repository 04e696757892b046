//! The contract of running jobs (`JobStore`): commits against cancels, runs whose process
//! stopped, deleting and pausing jobs, and reading events back.

use super::*;

fn table(name: &str) -> TableName {
    TableName::new(name).unwrap()
}

fn busy(table: &str) -> EventResult {
    EventResult {
        table: Some(TableName::new(table).unwrap()),
        name: ResultName::TableState,
        value: "BUSY".into(),
    }
}

/// The value of result `name` of `table` in event `id`.
async fn result_of(fx: &Fixture, id: EventId, table: &str, name: ResultName) -> Option<String> {
    let found = fx
        .events(&EventFilter {
            ids: vec![id],
            fetch_results: true,
            ..Default::default()
        })
        .await
        .unwrap();
    found[0]
        .results
        .iter()
        .find(|r| r.table.as_ref().map(|t| t.as_str()) == Some(table) && r.name == name)
        .map(|r| r.value.clone())
}

async fn a_cancel_is_too_late_once_a_commit_began(fx: Fixture) {
    with_definitions(&fx).await;
    let (hub, job) = (hub1(), refresh_job());
    let other = fx.reopen().await.unwrap();
    let owner = Owner::current();
    let run = fx
        .start_job(refresh_event(&job), &owner, MINUTE)
        .await
        .unwrap();

    // Only the owner of the run may begin a commit.
    let error = fx
        .begin_commit(&hub, &job, run.event, &table("orders"), &Owner::current())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");

    // A commit that failed (rolled back) leaves nothing behind.
    assert!(
        fx.begin_commit(&hub, &job, run.event, &table("orders"), &owner)
            .await
            .unwrap()
    );
    fx.end_commit(run.event, &table("orders"), false)
        .await
        .unwrap();

    // While orders commits, a cancel from another process is too late and changes nothing.
    assert!(
        fx.begin_commit(&hub, &job, run.event, &table("orders"), &owner)
            .await
            .unwrap()
    );
    let error = other
        .cancel_events(&hub, &[run.event], MINUTE)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
    assert!(
        error.to_string().contains("too late")
            && error.to_string().contains(&run.event.to_string())
            && error.to_string().contains("orders"),
        "{error}"
    );
    assert_eq!(event(&fx, run.event).await.state, EventState::Active);
    assert!(fx.heartbeat(&hub, &job, &owner).await.unwrap());

    // Committed, between tables: the cancel is taken, but the run ends FAILED, not CANCELED.
    fx.end_commit(run.event, &table("orders"), true)
        .await
        .unwrap();
    let canceled = other
        .cancel_events(&hub, &[run.event], MINUTE)
        .await
        .unwrap();
    assert_eq!(canceled[0].state, EventState::Failed);
    let record = event(&fx, run.event).await;
    assert_eq!((record.state, record.canceled), (EventState::Failed, true));
    let response = record.response.unwrap();
    assert!(
        response.starts_with("canceled by a user after table(s) orders committed"),
        "{response}"
    );
    // The run stops: no further table commits, and it lets go of the job when it ends.
    assert!(!fx.heartbeat(&hub, &job, &owner).await.unwrap());
    assert!(
        !fx.begin_commit(&hub, &job, run.event, &table("customers"), &owner)
            .await
            .unwrap()
    );
    assert_eq!(
        fx.job(&hub, &job).await.unwrap().unwrap().state,
        JobState::Running
    );
    fx.finish_job(&hub, &job, run.event, EventState::Failed, "stopped")
        .await
        .unwrap();
    assert_eq!(
        fx.job(&hub, &job).await.unwrap().unwrap().state,
        JobState::Failed
    );

    // A run cancelled before any commit ends CANCELED, and never begins one after.
    let run = fx
        .start_job(refresh_event(&job), &owner, MINUTE)
        .await
        .unwrap();
    let canceled = other
        .cancel_events(&hub, &[run.event], MINUTE)
        .await
        .unwrap();
    assert_eq!(
        (canceled[0].state, canceled[0].response.as_deref()),
        (EventState::Canceled, Some("canceled by a user"))
    );
    assert!(event(&fx, run.event).await.canceled);
    assert!(
        !fx.begin_commit(&hub, &job, run.event, &table("orders"), &owner)
            .await
            .unwrap()
    );
}

async fn a_commit_and_a_cancel_racing_through_two_instances_decide_one_way(fx: Fixture) {
    with_definitions(&fx).await;
    let (hub, job) = (hub1(), refresh_job());
    let other = fx.reopen().await.unwrap();
    let owner = Owner::current();
    let (mut commits, mut cancels) = (0, 0);
    for _ in 0..25 {
        let run = fx
            .start_job(refresh_event(&job), &owner, MINUTE)
            .await
            .unwrap();
        let commit = {
            let (repo, hub, job, owner) =
                (fx.handle.clone(), hub.clone(), job.clone(), owner.clone());
            tokio::spawn(async move {
                repo.begin_commit(&hub, &job, run.event, &table("orders"), &owner)
                    .await
            })
        };
        let cancel = {
            let (repo, hub) = (other.clone(), hub.clone());
            tokio::spawn(async move { repo.cancel_events(&hub, &[run.event], MINUTE).await })
        };
        let began = commit.await.unwrap().unwrap();
        let canceled = cancel.await.unwrap();
        match (began, canceled) {
            (true, Err(e)) => {
                assert_eq!(e.kind(), RepoErrorKind::Conflict, "{e}");
                commits += 1;
                fx.end_commit(run.event, &table("orders"), true)
                    .await
                    .unwrap();
                fx.finish_job(&hub, &job, run.event, EventState::Done, "ok")
                    .await
                    .unwrap();
                let record = event(&fx, run.event).await;
                assert_eq!((record.state, record.canceled), (EventState::Done, false));
            }
            (false, Ok(records)) => {
                assert_eq!(records[0].state, EventState::Canceled);
                cancels += 1;
                fx.finish_job(&hub, &job, run.event, EventState::Canceled, "stopped")
                    .await
                    .unwrap();
            }
            (began, canceled) => {
                panic!("a commit that began ({began}) and a cancel ({canceled:?}) both won or lost")
            }
        }
    }
    assert_eq!(commits + cancels, 25);
}

async fn cancelling_a_run_whose_process_stopped_frees_its_job_at_once(fx: Fixture) {
    with_definitions(&fx).await;
    let (hub, job) = (hub1(), refresh_job());
    let other = fx.reopen().await.unwrap();
    let dead = Owner::current();
    let run = fx
        .start_job(refresh_event(&job), &dead, MINUTE)
        .await
        .unwrap();
    fx.put_results(run.event, &[busy("orders")]).await.unwrap();

    // Its process stopped (with a zero staleness bound, at once): the cancel frees the job.
    let canceled = other
        .cancel_events(&hub, &[run.event], Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(canceled[0].state, EventState::Canceled);
    let record = fx.job(&hub, &job).await.unwrap().unwrap();
    assert_eq!(record.state, JobState::Suspend, "not RUNNING any more");
    assert!(record.run_end.is_some());
    assert_eq!(
        result_of(&fx, run.event, "orders", ResultName::TableState)
            .await
            .as_deref(),
        Some("CANCELED")
    );
    let error = fx.heartbeat(&hub, &job, &dead).await.unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
    // The job runs again without waiting for a take-over.
    let next = other
        .start_job(refresh_event(&job), &Owner::current(), MINUTE)
        .await
        .unwrap();
    assert!(next.taken_over.is_empty());
    other
        .finish_job(&hub, &job, next.event, EventState::Done, "ok")
        .await
        .unwrap();

    // A run that stopped while a table committed: nobody knows whether it did, so the cancel
    // is taken (there is no commit left to wait for) and the event ends FAILED, saying so.
    let run = fx
        .start_job(refresh_event(&job), &dead, MINUTE)
        .await
        .unwrap();
    assert!(
        fx.begin_commit(&hub, &job, run.event, &table("orders"), &dead)
            .await
            .unwrap()
    );
    let canceled = other
        .cancel_events(&hub, &[run.event], Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(canceled[0].state, EventState::Failed);
    let response = event(&fx, run.event).await.response.unwrap();
    assert!(
        response.contains("orders") && response.contains("may or may not"),
        "{response}"
    );
    assert_eq!(
        fx.job(&hub, &job).await.unwrap().unwrap().state,
        JobState::Failed
    );
}

async fn runs_whose_process_stopped_are_reaped_once(fx: Fixture) {
    with_definitions(&fx).await;
    let (hub, job) = (hub1(), refresh_job());
    let other = fx.reopen().await.unwrap();
    let dead = Owner::current();
    let run = fx
        .start_job(refresh_event(&job), &dead, MINUTE)
        .await
        .unwrap();
    // orders committed (its result not yet written when the process died), customers was busy.
    fx.put_results(run.event, &[busy("orders"), busy("customers")])
        .await
        .unwrap();
    assert!(
        fx.begin_commit(&hub, &job, run.event, &table("orders"), &dead)
            .await
            .unwrap()
    );
    fx.end_commit(run.event, &table("orders"), true)
        .await
        .unwrap();

    // A run whose process beats is never touched.
    assert!(fx.reap_jobs(MINUTE).await.unwrap().is_empty());
    assert_eq!(event(&fx, run.event).await.state, EventState::Active);

    // Two processes reap at once: the run is ended by exactly one of them.
    let (a, b) = tokio::join!(
        fx.reap_jobs(Duration::ZERO),
        other.reap_jobs(Duration::ZERO)
    );
    let reaped: Vec<_> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert_eq!(
        (
            &reaped[0].hub,
            &reaped[0].job,
            reaped[0].event,
            reaped[0].failed
        ),
        (&hub, &job, Some(run.event), true)
    );
    let record = event(&fx, run.event).await;
    assert_eq!(record.state, EventState::Failed);
    assert!(record.finish.is_some());
    assert!(!record.canceled, "a failure, not a cancel");
    let response = record.response.unwrap();
    assert!(response.starts_with("abandoned"), "{response}");
    assert!(
        response.contains(&format!("pid {}", dead.pid))
            && response.contains("orders had committed"),
        "{response}"
    );
    assert_eq!(response, reaped[0].response);
    let record = fx.job(&hub, &job).await.unwrap().unwrap();
    assert_eq!(record.state, JobState::Failed);
    assert!(record.run_end.is_some());
    assert_eq!(
        result_of(&fx, run.event, "orders", ResultName::TableState)
            .await
            .as_deref(),
        Some("DONE"),
        "its commit marker says orders committed"
    );
    assert_eq!(
        result_of(&fx, run.event, "customers", ResultName::TableState)
            .await
            .as_deref(),
        Some("FAILED")
    );
    assert!(
        result_of(&fx, run.event, "customers", ResultName::TableError)
            .await
            .unwrap()
            .starts_with("abandoned")
    );
    let error = fx.heartbeat(&hub, &job, &dead).await.unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
    assert!(fx.reap_jobs(Duration::ZERO).await.unwrap().is_empty());

    // A run cancelled while its process still beat, whose process then stopped: the event keeps
    // its CANCELED, and the job is freed.
    let run = other
        .start_job(refresh_event(&job), &dead, MINUTE)
        .await
        .unwrap();
    assert!(run.taken_over.is_empty());
    fx.cancel_events(&hub, &[run.event], MINUTE).await.unwrap();
    assert_eq!(
        fx.job(&hub, &job).await.unwrap().unwrap().state,
        JobState::Running
    );
    let reaped = other.reap_jobs(Duration::ZERO).await.unwrap();
    assert_eq!((reaped.len(), reaped[0].failed), (1, false), "{reaped:?}");
    assert_eq!(event(&fx, run.event).await.state, EventState::Canceled);
    assert_eq!(
        fx.job(&hub, &job).await.unwrap().unwrap().state,
        JobState::Suspend
    );
}

async fn deleting_a_job_whose_table_commits_is_refused(fx: Fixture) {
    with_definitions(&fx).await;
    let (hub, job) = (hub1(), refresh_job());
    let owner = Owner::current();
    let run = fx
        .start_job(refresh_event(&job), &owner, MINUTE)
        .await
        .unwrap();
    assert!(
        fx.begin_commit(&hub, &job, run.event, &table("orders"), &owner)
            .await
            .unwrap()
    );
    let error = fx.delete_job(&hub, &job).await.unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
    assert!(error.to_string().contains("too late"), "{error}");
    assert_eq!(event(&fx, run.event).await.state, EventState::Active);
    assert!(fx.job(&hub, &job).await.unwrap().is_some());

    // Once orders committed, deleting the job ends the run FAILED, not CANCELED.
    fx.end_commit(run.event, &table("orders"), true)
        .await
        .unwrap();
    assert_eq!(fx.delete_job(&hub, &job).await.unwrap(), vec![run.event]);
    let record = event(&fx, run.event).await;
    assert_eq!(record.state, EventState::Failed);
    assert!(
        record
            .response
            .unwrap()
            .contains("after table(s) orders committed")
    );
}

async fn delete_job_cancels_its_active_events(fx: Fixture) {
    with_definitions(&fx).await;
    let (hub, job) = (hub1(), refresh_job());
    let pending = fx
        .submit_job(refresh_event(&job), None)
        .await
        .unwrap()
        .event;
    assert_eq!(fx.delete_job(&hub, &job).await.unwrap(), vec![pending]);
    assert!(fx.job(&hub, &job).await.unwrap().is_none());
    assert!(fx.jobs(&hub).await.unwrap().is_empty());
    let record = event(&fx, pending).await;
    assert_eq!(record.state, EventState::Canceled);
    assert!(record.response.as_deref().unwrap().contains("deleted"));
    let error = fx.delete_job(&hub, &job).await.unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");

    // A finished job has nothing to cancel.
    let owner = Owner::current();
    let run = fx
        .start_job(refresh_event(&job), &owner, MINUTE)
        .await
        .unwrap();
    fx.finish_job(&hub, &job, run.event, EventState::Done, "ok")
        .await
        .unwrap();
    assert!(fx.delete_job(&hub, &job).await.unwrap().is_empty());
    assert_eq!(event(&fx, run.event).await.state, EventState::Done);
}

async fn job_states_are_set_only_when_not_running(fx: Fixture) {
    with_definitions(&fx).await;
    let (hub, job) = (hub1(), refresh_job());
    let error = fx
        .set_job_state(&hub, &job, JobState::Suspend)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");
    let owner = Owner::current();
    let run = fx
        .start_job(refresh_event(&job), &owner, MINUTE)
        .await
        .unwrap();
    let error = fx
        .set_job_state(&hub, &job, JobState::Suspend)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
    fx.finish_job(&hub, &job, run.event, EventState::Done, "ok")
        .await
        .unwrap();
    fx.set_job_state(&hub, &job, JobState::Suspend)
        .await
        .unwrap();
    assert_eq!(
        fx.job(&hub, &job).await.unwrap().unwrap().state,
        JobState::Suspend
    );
    fx.set_job_state(&hub, &job, JobState::Pending)
        .await
        .unwrap();
    assert_eq!(
        fx.job(&hub, &job).await.unwrap().unwrap().state,
        JobState::Pending
    );
}

async fn events_are_filtered_and_results_kept_in_order(fx: Fixture) {
    with_definitions(&fx).await;
    let hub = hub1();
    let compare: JobName = "sales-cmp-src-tgt".parse().unwrap();
    let mut refresh = refresh_event(&refresh_job());
    refresh.state = EventState::Done;
    let r1 = fx.post_event(refresh.clone()).await.unwrap();
    let c1 = fx
        .post_event(NewEvent {
            event_type: EventType::Compare,
            job: Some(compare.clone()),
            loc: Some(LocationName::new("tgt").unwrap()),
            loc2: Some(LocationName::new("src").unwrap()),
            ..refresh.clone()
        })
        .await
        .unwrap();
    let audit = fx
        .post_event(NewEvent {
            event_type: EventType::HubPropertyChange,
            channel: None,
            loc: None,
            loc2: None,
            job: None,
            ..refresh.clone()
        })
        .await
        .unwrap();
    let active = fx
        .post_event(NewEvent {
            state: EventState::Active,
            ..refresh.clone()
        })
        .await
        .unwrap();

    let ids = |filter: EventFilter| {
        let fx = &fx;
        async move {
            fx.events(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    // The hub's creation and the import came first.
    let all = ids(EventFilter::default()).await;
    assert_eq!(all.len(), 6);
    assert_eq!(all[..4], [active, audit, c1, r1]);
    assert_eq!(
        ids(EventFilter {
            types: vec![EventType::Refresh, EventType::Compare],
            ..Default::default()
        })
        .await,
        vec![active, c1, r1]
    );
    assert_eq!(
        ids(EventFilter {
            states: vec![EventState::Active],
            ..Default::default()
        })
        .await,
        vec![active]
    );
    assert_eq!(
        ids(EventFilter {
            jobs: vec![compare.clone()],
            ..Default::default()
        })
        .await,
        vec![c1]
    );
    assert_eq!(
        ids(EventFilter {
            channels: vec![ChannelName::new("sales").unwrap()],
            loc: Some(LocationName::new("tgt").unwrap()),
            ..Default::default()
        })
        .await,
        vec![active, c1, r1],
        "as loc or loc2"
    );
    assert_eq!(
        ids(EventFilter {
            begin: Some(c1.instant()),
            end: Some(audit.instant()),
            ..Default::default()
        })
        .await,
        vec![audit, c1],
        "begin and end are inclusive"
    );
    assert!(
        ids(EventFilter {
            end: Some(Utc::now() - TimeDelta::days(1)),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert!(
        ids(EventFilter {
            hub: Some(HubName::new("hub2").unwrap()),
            ..Default::default()
        })
        .await
        .is_empty()
    );

    // Results: set again replaces the value and keeps the first position.
    let result = |table: Option<&str>, name: ResultName, value: &str| EventResult {
        table: table.map(|t| t.parse().unwrap()),
        name,
        value: value.into(),
    };
    fx.put_results(
        r1,
        &[
            result(Some("orders"), ResultName::TableState, "BUSY"),
            result(Some("orders"), ResultName::SourceRowsUsed, "10"),
            result(Some("customers"), ResultName::TableState, "DONE"),
            result(None, ResultName::BytesUsed, "4096"),
        ],
    )
    .await
    .unwrap();
    fx.put_results(
        r1,
        &[result(Some("orders"), ResultName::TableState, "DONE")],
    )
    .await
    .unwrap();
    let with_results = fx
        .events(&EventFilter {
            ids: vec![r1],
            fetch_results: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        with_results[0].results,
        vec![
            result(None, ResultName::BytesUsed, "4096"),
            result(Some("customers"), ResultName::TableState, "DONE"),
            result(Some("orders"), ResultName::TableState, "DONE"),
            result(Some("orders"), ResultName::SourceRowsUsed, "10"),
        ]
    );
    let only = fx
        .events(&EventFilter {
            ids: vec![r1, c1],
            fetch_results: true,
            result_names: vec![ResultName::TableState],
            result_tables: vec!["orders".parse().unwrap()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(only[0].id, c1);
    assert!(only[0].results.is_empty());
    assert_eq!(
        only[1].results,
        vec![result(Some("orders"), ResultName::TableState, "DONE")]
    );
    let without = fx
        .events(&EventFilter {
            ids: vec![r1],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(without[0].results.is_empty(), "results only when asked");

    // The newest finished refresh per table; an active one does not count.
    let r2 = fx.post_event(refresh.clone()).await.unwrap();
    fx.put_results(
        r2,
        &[result(Some("orders"), ResultName::TableState, "FAILED")],
    )
    .await
    .unwrap();
    fx.put_results(
        active,
        &[result(Some("customers"), ResultName::TableState, "BUSY")],
    )
    .await
    .unwrap();
    let latest = fx
        .latest_table_results(
            &hub,
            &ChannelName::new("sales").unwrap(),
            EventType::Refresh,
        )
        .await
        .unwrap();
    let summary: Vec<(String, EventId, Vec<String>)> = latest
        .iter()
        .map(|(t, (e, rs))| {
            (
                t.to_string(),
                e.id,
                rs.iter().map(|r| r.value.clone()).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("customers".to_owned(), r1, vec!["DONE".to_owned()]),
            ("orders".to_owned(), r2, vec!["FAILED".to_owned()]),
        ]
    );
}

/// The pid of a process that has ended (and been waited for).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// An owner on this host (as [`Owner::current`] names it) with another id and pid.
fn local_owner(id: &str, pid: u32) -> Owner {
    Owner {
        id: id.to_owned(),
        pid,
        ..Owner::current()
    }
}

async fn runs_of_a_gone_local_process_are_taken_over_at_once(fx: Fixture) {
    with_definitions(&fx).await;
    let (hub, job) = (hub1(), refresh_job());
    let other = fx.reopen().await.unwrap();

    // Killed on this host: the next start takes the run over without waiting for staleness.
    let killed = local_owner("killed", dead_pid());
    let run = fx
        .start_job(refresh_event(&job), &killed, MINUTE)
        .await
        .unwrap();
    let next = other
        .start_job(refresh_event(&job), &Owner::current(), MINUTE)
        .await
        .unwrap();
    assert_eq!(next.taken_over, vec![run.event]);
    let response = event(&fx, run.event).await.response.unwrap();
    assert!(
        response.starts_with("abandoned") && response.contains("no longer exists"),
        "{response}"
    );
    other
        .finish_job(&hub, &job, next.event, EventState::Done, "ok")
        .await
        .unwrap();

    // The same through submit_job.
    let run = fx
        .submit_job(refresh_event(&job), Some((&killed, MINUTE)))
        .await
        .unwrap();
    let next = other
        .submit_job(refresh_event(&job), Some((&Owner::current(), MINUTE)))
        .await
        .unwrap();
    assert_eq!(next.taken_over, vec![run.event]);
    other
        .finish_job(&hub, &job, next.event, EventState::Done, "ok")
        .await
        .unwrap();

    // This very pid under an owner id this process never made: a previous incarnation (a
    // container restarted as the same pid).
    let before = local_owner("previous-incarnation", std::process::id());
    let run = fx
        .start_job(refresh_event(&job), &before, MINUTE)
        .await
        .unwrap();
    let next = other
        .start_job(refresh_event(&job), &Owner::current(), MINUTE)
        .await
        .unwrap();
    assert_eq!(next.taken_over, vec![run.event]);
    other
        .finish_job(&hub, &job, next.event, EventState::Done, "ok")
        .await
        .unwrap();

    // The reaper ends such a run at once too, and a fresh heartbeat does not save it.
    let run = fx
        .start_job(refresh_event(&job), &killed, MINUTE)
        .await
        .unwrap();
    let reaped = other.reap_jobs(MINUTE).await.unwrap();
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert_eq!((reaped[0].event, reaped[0].failed), (Some(run.event), true));
    assert_eq!(event(&fx, run.event).await.state, EventState::Failed);
    assert_eq!(
        fx.job(&hub, &job).await.unwrap().unwrap().state,
        JobState::Failed
    );

    // A cancel frees its job at once.
    let run = fx
        .start_job(refresh_event(&job), &killed, MINUTE)
        .await
        .unwrap();
    other
        .cancel_events(&hub, &[run.event], MINUTE)
        .await
        .unwrap();
    assert_eq!(
        fx.job(&hub, &job).await.unwrap().unwrap().state,
        JobState::Suspend
    );
}

async fn runs_of_a_live_or_remote_process_wait_for_staleness(fx: Fixture) {
    with_definitions(&fx).await;
    let (hub, job) = (hub1(), refresh_job());
    let other = fx.reopen().await.unwrap();

    // A live process of this host (not this one): never touched while it beats.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let live = local_owner("live", sleeper.id());
    let run = fx
        .start_job(refresh_event(&job), &live, MINUTE)
        .await
        .unwrap();
    let error = other
        .start_job(refresh_event(&job), &Owner::current(), MINUTE)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
    let error = other
        .submit_job(refresh_event(&job), Some((&Owner::current(), MINUTE)))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
    assert!(other.reap_jobs(MINUTE).await.unwrap().is_empty());
    assert_eq!(event(&fx, run.event).await.state, EventState::Active);
    assert!(fx.heartbeat(&hub, &job, &live).await.unwrap());
    // Once it is gone, it is taken over at once.
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let next = other
        .start_job(refresh_event(&job), &Owner::current(), MINUTE)
        .await
        .unwrap();
    assert_eq!(next.taken_over, vec![run.event]);
    other
        .finish_job(&hub, &job, next.event, EventState::Done, "ok")
        .await
        .unwrap();

    // A process of another host whose pid does not exist here: only staleness counts.
    let remote = Owner {
        id: "remote".into(),
        host: format!("not-{}", Owner::current().host),
        pid: dead_pid(),
    };
    let run = fx
        .start_job(refresh_event(&job), &remote, MINUTE)
        .await
        .unwrap();
    let error = other
        .start_job(refresh_event(&job), &Owner::current(), MINUTE)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
    assert!(other.reap_jobs(MINUTE).await.unwrap().is_empty());
    let run_cancel = other
        .cancel_events(&hub, &[run.event], MINUTE)
        .await
        .unwrap();
    assert_eq!(run_cancel[0].state, EventState::Canceled);
    assert_eq!(
        fx.job(&hub, &job).await.unwrap().unwrap().state,
        JobState::Running,
        "the remote run is still held until it looks at its event or goes stale"
    );
    let next = other
        .start_job(refresh_event(&job), &Owner::current(), Duration::ZERO)
        .await
        .unwrap();
    assert!(next.taken_over.is_empty(), "its event had been cancelled");
    assert_eq!(
        fx.job(&hub, &job).await.unwrap().unwrap().state,
        JobState::Running
    );
}

on_both_backends!(
    a_cancel_is_too_late_once_a_commit_began,
    a_commit_and_a_cancel_racing_through_two_instances_decide_one_way,
    cancelling_a_run_whose_process_stopped_frees_its_job_at_once,
    runs_whose_process_stopped_are_reaped_once,
    runs_of_a_gone_local_process_are_taken_over_at_once,
    runs_of_a_live_or_remote_process_wait_for_staleness,
    deleting_a_job_whose_table_commits_is_refused,
    delete_job_cancels_its_active_events,
    job_states_are_set_only_when_not_running,
    events_are_filtered_and_results_kept_in_order,
);
