//! The contract of jobs, HVR events, results, logs, commit markers and the reaper (`JobStore`).

use super::*;

// ---------------------------------------------------------------------------------------------
// Jobs and events.

async fn one_run_per_job_and_abandoned_runs_are_taken_over(fx: Fixture) {
    with_definitions(&fx).await;
    let hub = hub1();
    let job = refresh_job();
    let first_owner = Owner::current();
    let first = fx
        .start_job(refresh_event(&job), &first_owner, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(first.taken_over.is_empty());

    let second_owner = Owner::current();
    let error = fx
        .start_job(refresh_event(&job), &second_owner, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict);
    assert!(
        error.to_string().contains(&first.event.to_string()),
        "{error}"
    );

    // The first process stops sending heartbeats: with a zero staleness bound it is taken over.
    let second = fx
        .start_job(refresh_event(&job), &second_owner, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(second.taken_over, vec![first.event]);
    let old = event(&fx, first.event).await;
    assert_eq!(old.state, EventState::Failed);
    assert!(old.response.as_deref().unwrap().starts_with("abandoned"));
    assert!(old.finish.is_some());
    // The first owner has lost the job.
    let error = fx.heartbeat(&hub, &job, &first_owner).await.unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict);
    assert!(fx.heartbeat(&hub, &job, &second_owner).await.unwrap());

    fx.put_results(
        second.event,
        &[EventResult {
            table: Some("orders".parse().unwrap()),
            name: ResultName::TableState,
            value: "DONE".into(),
        }],
    )
    .await
    .unwrap();
    fx.finish_job(
        &hub,
        &job,
        second.event,
        EventState::Done,
        "Refresh completed",
    )
    .await
    .unwrap();
    let jobs = fx.jobs(&hub).await.unwrap();
    assert_eq!((jobs[0].state, jobs[0].num_runs), (JobState::Done, 2));
    assert!(jobs[0].run_end.is_some());
    let finished = event(&fx, second.event).await;
    assert_eq!(
        (finished.state, finished.response.as_deref()),
        (EventState::Done, Some("Refresh completed"))
    );
    let latest = fx
        .latest_table_results(
            &hub,
            &ChannelName::new("sales").unwrap(),
            EventType::Refresh,
        )
        .await
        .unwrap();
    let (latest_event, results) = &latest[&TableName::new("orders").unwrap()];
    assert_eq!(latest_event.id, second.event);
    assert_eq!(results[0].value, "DONE");
    // And the job can run again.
    fx.start_job(refresh_event(&job), &first_owner, Duration::from_secs(30))
        .await
        .unwrap();
}

async fn concurrent_starts_through_two_instances_admit_exactly_one(fx: Fixture) {
    with_definitions(&fx).await;
    let other = fx.reopen().await.unwrap();
    let job = refresh_job();
    let mut handles = Vec::new();
    for i in 0..8 {
        let repo = if i % 2 == 0 {
            fx.handle.clone()
        } else {
            other.clone()
        };
        let job = job.clone();
        handles.push(tokio::spawn(async move {
            repo.start_job(refresh_event(&job), &Owner::current(), MINUTE)
                .await
        }));
    }
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.kind(), RepoErrorKind::Conflict, "{e}"),
        }
    }
    assert_eq!(ok, 1);
}

async fn concurrent_submits_through_two_instances_admit_exactly_one(fx: Fixture) {
    with_definitions(&fx).await;
    let other = fx.reopen().await.unwrap();
    let job = refresh_job();
    // A new job (no row yet), then the same job again once its run has finished.
    let first = race_submits(&fx, &other, &job).await;
    fx.finish_job(&hub1(), &job, first, EventState::Done, "ok")
        .await
        .unwrap();
    let second = race_submits(&fx, &other, &job).await;
    let record = fx.job(&hub1(), &job).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.num_runs, record.last_event),
        (JobState::Running, 2, Some(second))
    );
}

/// Submits-and-starts `job` from 16 tasks through two instances; exactly one may win. Returns the
/// winner's event.
async fn race_submits(fx: &Fixture, other: &Arc<dyn Repository>, job: &JobName) -> EventId {
    let before: BTreeSet<EventId> = fx
        .events(&EventFilter {
            jobs: vec![job.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let mut handles = Vec::new();
    for i in 0..16 {
        let repo = if i % 2 == 0 {
            fx.handle.clone()
        } else {
            other.clone()
        };
        let job = job.clone();
        handles.push(tokio::spawn(async move {
            let owner = Owner::current();
            repo.submit_job(refresh_event(&job), Some((&owner, MINUTE)))
                .await
        }));
    }
    let (mut winners, mut conflicts) = (Vec::new(), Vec::new());
    for h in handles {
        match h.await.unwrap() {
            Ok(submitted) => winners.push(submitted),
            Err(e) => {
                assert_eq!(e.kind(), RepoErrorKind::Conflict, "{e}");
                conflicts.push(e.to_string());
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one submit wins");
    let winner = winners.remove(0);
    assert!(winner.canceled.is_empty() && winner.taken_over.is_empty());
    for message in &conflicts {
        assert!(
            message.contains(&winner.event.to_string()),
            "a loser names the running event: {message}"
        );
    }
    // The losers left no trace.
    let events: Vec<EventId> = fx
        .events(&EventFilter {
            jobs: vec![job.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(events, vec![winner.event]);
    winner.event
}

async fn concurrent_pending_submits_leave_exactly_one_pending(fx: Fixture) {
    with_definitions(&fx).await;
    let other = fx.reopen().await.unwrap();
    let job = refresh_job();
    let mut handles = Vec::new();
    for i in 0..10 {
        let repo = if i % 2 == 0 {
            fx.handle.clone()
        } else {
            other.clone()
        };
        let job = job.clone();
        handles.push(tokio::spawn(async move {
            repo.submit_job(refresh_event(&job), None).await
        }));
    }
    let mut canceled = Vec::new();
    for h in handles {
        canceled.extend(h.await.unwrap().unwrap().canceled);
    }
    let events = fx
        .events(&EventFilter {
            jobs: vec![job.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 10);
    let active: Vec<_> = events
        .iter()
        .filter(|e| e.state == EventState::Active)
        .collect();
    assert_eq!(active.len(), 1, "one pending run remains");
    assert_eq!(active[0].id, events[0].id, "the newest");
    canceled.sort();
    let mut expected: Vec<_> = events[1..].iter().map(|e| e.id).collect();
    expected.sort();
    assert_eq!(canceled, expected, "each replaced run is listed once");
    let record = fx.job(&hub1(), &job).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.last_event),
        (JobState::Suspend, Some(events[0].id))
    );
}

async fn event_ids_are_unique_and_logs_keep_order(fx: Fixture) {
    with_definitions(&fx).await;
    let mut ids = Vec::new();
    for _ in 0..50 {
        let mut e = refresh_event(&"sales-cmp-src-tgt".parse().unwrap());
        e.state = EventState::Done;
        ids.push(fx.post_event(e).await.unwrap());
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "ids are strictly increasing");
    fx.append_log(ids[0], &["one".into(), "two".into()])
        .await
        .unwrap();
    fx.append_log(ids[0], &["three".into()]).await.unwrap();
    let log: Vec<String> = fx
        .event_log(ids[0])
        .await
        .unwrap()
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(log, vec!["one", "two", "three"]);
    let limited = fx
        .events(&EventFilter {
            max_events: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        limited.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[49], ids[48], ids[47]]
    );
    // A limit past what SQL's LIMIT takes (a bigint) is no limit, not a storage error.
    let every = fx.events(&EventFilter::default()).await.unwrap();
    for huge in [usize::MAX, i64::MAX as usize + 1] {
        let all = fx
            .events(&EventFilter {
                max_events: Some(huge),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all, every);
    }
    // Posted `DONE`: finished at once; the body comes back as written.
    assert_eq!(limited[0].finish, Some(limited[0].start));
    assert_eq!(
        limited[0].body.to_string(),
        r#"{"tables":["orders"],"zeta":1,"alpha":2}"#
    );
}

async fn event_ids_stay_unique_and_increasing_across_instances(fx: Fixture) {
    with_definitions(&fx).await;
    // A process whose clock runs an hour ahead posted an event: every id from now on is the
    // newest plus a microsecond, so writers that did not serialize would take the same ids.
    let ahead = EventId::at(Utc::now() + TimeDelta::hours(1));
    fx.insert_event_at(ahead).await;
    let other = fx.reopen().await.unwrap();
    let mut handles = Vec::new();
    for i in 0..6 {
        let repo = if i % 2 == 0 {
            fx.handle.clone()
        } else {
            other.clone()
        };
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..20 {
                let mut e = refresh_event(&"sales-cmp-src-tgt".parse().unwrap());
                e.state = EventState::Done;
                ids.push(repo.post_event(e).await.unwrap());
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        let ids = h.await.unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing per writer");
        all.extend(ids);
    }
    let unique: BTreeSet<_> = all.iter().copied().collect();
    assert_eq!(unique.len(), 120, "no id was taken twice");
    assert!(unique.iter().all(|id| *id > ahead), "ids never go back");

    // Concurrent log writers never collide on line numbers.
    let target = all[0];
    let mut handles = Vec::new();
    for i in 0..6 {
        let repo = if i % 2 == 0 {
            fx.handle.clone()
        } else {
            other.clone()
        };
        handles.push(tokio::spawn(async move {
            for j in 0..5 {
                repo.append_log(target, &[format!("{i}.{j}a"), format!("{i}.{j}b")])
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let log = fx.event_log(target).await.unwrap();
    assert_eq!(log.len(), 60);
    // Each append's lines stay together and in order.
    for pair in log.chunks(2) {
        assert_eq!(
            pair[0].1.trim_end_matches('a'),
            pair[1].1.trim_end_matches('b')
        );
    }
}

async fn a_repository_from_a_newer_sluice_is_refused(fx: Fixture) {
    fx.record_future_migration().await;
    let error = fx.reopen().await.err().expect("a newer schema is refused");
    assert_eq!(error.kind(), RepoErrorKind::Version);
    assert!(error.to_string().contains("schema version 99"), "{error}");
}

async fn submit_queues_claim_runs_and_a_newer_submit_replaces_a_pending_one(fx: Fixture) {
    with_definitions(&fx).await;
    let (hub, job) = (hub1(), refresh_job());
    let first = fx.submit_job(refresh_event(&job), None).await.unwrap();
    assert!(first.canceled.is_empty() && first.taken_over.is_empty());
    let record = fx.job(&hub, &job).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.last_event, record.num_runs),
        (JobState::Suspend, Some(first.event), 0)
    );
    assert_eq!(event(&fx, first.event).await.state, EventState::Active);

    // A newer pending request replaces the older one.
    let second = fx.submit_job(refresh_event(&job), None).await.unwrap();
    assert_eq!(second.canceled, vec![first.event]);
    let replaced = event(&fx, first.event).await;
    assert_eq!(replaced.state, EventState::Canceled);
    assert!(replaced.response.as_deref().unwrap().contains("replaced"));

    // Claiming runs the pending event.
    let owner = Owner::current();
    let (claimed, taken_over) = fx.claim_job(&hub, &job, &owner, MINUTE).await.unwrap();
    assert_eq!((claimed, taken_over), (second.event, vec![]));
    let record = fx.job(&hub, &job).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.last_event, record.num_runs),
        (JobState::Running, Some(second.event), 1)
    );
    assert!(record.run_begin.is_some());
    assert!(fx.heartbeat(&hub, &job, &owner).await.unwrap());

    // While it runs, neither another claim nor another submit gets in, and nothing changes.
    let other = Owner::current();
    let error = fx.claim_job(&hub, &job, &other, MINUTE).await.unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
    for start in [Some((&other, MINUTE)), None] {
        let error = fx.submit_job(refresh_event(&job), start).await.unwrap_err();
        assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
        assert!(
            error.to_string().contains(&second.event.to_string()),
            "{error}"
        );
    }
    assert_eq!(event(&fx, second.event).await.state, EventState::Active);
    assert_eq!(
        fx.events(&EventFilter {
            jobs: vec![job.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        2
    );

    // Finished: nothing is pending any more.
    fx.finish_job(&hub, &job, second.event, EventState::Failed, "boom")
        .await
        .unwrap();
    assert_eq!(
        fx.job(&hub, &job).await.unwrap().unwrap().state,
        JobState::Failed
    );
    let error = fx.claim_job(&hub, &job, &owner, MINUTE).await.unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
    let error = fx
        .claim_job(&hub, &"sales-cmp-src-tgt".parse().unwrap(), &owner, MINUTE)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");

    // Submitting and starting at once.
    let third = fx
        .submit_job(refresh_event(&job), Some((&owner, MINUTE)))
        .await
        .unwrap();
    let record = fx.job(&hub, &job).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.last_event, record.num_runs),
        (JobState::Running, Some(third.event), 2)
    );

    // A run needs a job.
    let error = fx
        .submit_job(
            NewEvent {
                job: None,
                ..refresh_event(&job)
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
}

async fn heartbeat_answers_false_after_a_cancel(fx: Fixture) {
    with_definitions(&fx).await;
    let (hub, job) = (hub1(), refresh_job());
    let owner = Owner::current();
    let started = fx
        .start_job(refresh_event(&job), &owner, MINUTE)
        .await
        .unwrap();
    assert!(fx.heartbeat(&hub, &job, &owner).await.unwrap());

    // Cancelled through the other instance, as another process would.
    let other = fx.reopen().await.unwrap();
    let canceled = other
        .cancel_events(&hub, &[started.event], MINUTE)
        .await
        .unwrap();
    assert_eq!(canceled.len(), 1);
    assert_eq!(
        (canceled[0].id, canceled[0].state),
        (started.event, EventState::Canceled)
    );
    assert!(!fx.heartbeat(&hub, &job, &owner).await.unwrap(), "stop");
    // The run still holds the job until it stops; then the job is suspended.
    assert_eq!(
        fx.job(&hub, &job).await.unwrap().unwrap().state,
        JobState::Running
    );
    fx.finish_job(&hub, &job, started.event, EventState::Canceled, "stopped")
        .await
        .unwrap();
    assert_eq!(
        fx.job(&hub, &job).await.unwrap().unwrap().state,
        JobState::Suspend
    );
    let record = event(&fx, started.event).await;
    assert_eq!(
        (record.state, record.response.as_deref()),
        (EventState::Canceled, Some("canceled by a user")),
        "finishing does not overwrite the cancel"
    );
    let error = fx.heartbeat(&hub, &job, &owner).await.unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
}

async fn cancel_events_refuses_an_inactive_event_and_changes_nothing(fx: Fixture) {
    with_definitions(&fx).await;
    let (hub, job) = (hub1(), refresh_job());
    let pending = fx
        .submit_job(refresh_event(&job), None)
        .await
        .unwrap()
        .event;
    let done = fx
        .post_event(NewEvent {
            state: EventState::Done,
            job: None,
            ..refresh_event(&job)
        })
        .await
        .unwrap();

    let error = fx
        .cancel_events(&hub, &[pending, done], MINUTE)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
    assert!(error.to_string().contains(&done.to_string()), "{error}");
    let unknown = EventId::at(Utc::now() - TimeDelta::days(1));
    let error = fx
        .cancel_events(&hub, &[pending, unknown], MINUTE)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");
    // An event of another hub is not found in this one.
    fx.create_hub(
        &Hub {
            name: HubName::new("hub2").unwrap(),
            description: String::new(),
        },
        "alice",
    )
    .await
    .unwrap();
    let error = fx
        .cancel_events(&HubName::new("hub2").unwrap(), &[pending], MINUTE)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");
    // Cancelling the same event twice in one call fails as a whole.
    let error = fx
        .cancel_events(&hub, &[pending, pending], MINUTE)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");

    let record = event(&fx, pending).await;
    assert_eq!((record.state, record.response), (EventState::Active, None));
    let job_record = fx.job(&hub, &job).await.unwrap().unwrap();
    assert_eq!(
        (job_record.state, job_record.last_event),
        (JobState::Suspend, Some(pending))
    );

    // Now for real: the pending run is cancelled and can no longer be claimed.
    let canceled = fx.cancel_events(&hub, &[pending], MINUTE).await.unwrap();
    assert_eq!(canceled[0].state, EventState::Canceled);
    let record = event(&fx, pending).await;
    assert_eq!(record.state, EventState::Canceled);
    assert!(record.finish.is_some());
    let error = fx
        .claim_job(&hub, &job, &Owner::current(), MINUTE)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
}

on_both_backends!(
    one_run_per_job_and_abandoned_runs_are_taken_over,
    concurrent_starts_through_two_instances_admit_exactly_one,
    concurrent_submits_through_two_instances_admit_exactly_one,
    concurrent_pending_submits_leave_exactly_one_pending,
    event_ids_are_unique_and_logs_keep_order,
    event_ids_stay_unique_and_increasing_across_instances,
    a_repository_from_a_newer_sluice_is_refused,
    submit_queues_claim_runs_and_a_newer_submit_replaces_a_pending_one,
    heartbeat_answers_false_after_a_cancel,
    cancel_events_refuses_an_inactive_event_and_changes_nothing,
);
