//! The contract of hubs and their definitions (`DefinitionStore`).

use super::*;

// ---------------------------------------------------------------------------------------------
// Definitions.

async fn definitions_round_trip_and_replace(fx: Fixture) {
    assert_eq!(fx.schema_version().await, 5);
    let defs = definitions("first");
    let summary = fx
        .apply_definitions(&defs, "alice", "sales.yaml")
        .await
        .unwrap();
    assert!(summary.hub_created);
    assert_eq!(summary.locations_added.len(), 2);
    assert_eq!(
        summary.channels_added,
        vec![ChannelName::new("sales").unwrap()]
    );

    let hub = hub1();
    assert_eq!(
        fx.locations(&hub).await.unwrap(),
        defs.locations.values().cloned().collect::<Vec<_>>()
    );
    assert_eq!(
        fx.location(&hub, &LocationName::new("tgt").unwrap())
            .await
            .unwrap()
            .unwrap(),
        loc("tgt")
    );
    let stored = fx
        .channel(&hub, &ChannelName::new("sales").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&stored, defs.channels.values().next().unwrap());

    let summary = fx
        .apply_definitions(&definitions("second"), "bob", "sales.yaml")
        .await
        .unwrap();
    assert!(!summary.hub_created);
    assert_eq!(summary.channels_replaced.len(), 1);
    assert_eq!(summary.locations_replaced.len(), 2);
    assert_eq!(fx.channels(&hub).await.unwrap()[0].description, "second");
    assert_eq!(fx.hub(&hub).await.unwrap().unwrap().version, 1);

    // Audit events name the user.
    let events = fx
        .events(&EventFilter {
            hub: Some(hub.clone()),
            types: vec![EventType::DefinitionChangeImport],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        events.iter().map(|e| e.user.as_str()).collect::<Vec<_>>(),
        vec!["bob", "alice"]
    );
    assert_eq!(events[0].state, EventState::Done);
    assert_eq!(events[0].body["source"], "sales.yaml");
}

async fn a_failed_apply_changes_nothing(fx: Fixture) {
    let mut defs = definitions("x");
    // The channel names a location that is in no definition.
    defs.locations.remove(&LocationName::new("tgt").unwrap());
    let error = fx
        .apply_definitions(&defs, "alice", "bad.yaml")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Storage);
    assert!(error.to_string().contains("tgt"), "{error}");
    assert!(
        fx.hubs().await.unwrap().is_empty(),
        "the hub was not created"
    );
    assert!(
        fx.events(&EventFilter::default()).await.unwrap().is_empty(),
        "no event was posted"
    );
}

async fn replacing_definitions_checks_the_version_and_deletes_what_is_absent(fx: Fixture) {
    with_definitions(&fx).await;
    let hub = hub1();
    assert_eq!(fx.hub(&hub).await.unwrap().unwrap().version, 0);

    // `tgt` and channel `sales` go; `other` and channel `marketing` come; `src` stays, changed.
    let mut defs = definitions("x");
    defs.hub.description = "replaced".into();
    defs.locations.remove(&LocationName::new("tgt").unwrap());
    defs.locations
        .insert(LocationName::new("other").unwrap(), loc("other"));
    let mut src = loc("src");
    src.props.remove("Database_Busy_Timeout");
    src.description = "changed".into();
    defs.locations.insert(src.name.clone(), src.clone());
    let marketing = channel("marketing", "m", "src", "other");
    defs.channels = BTreeMap::from([(marketing.name.clone(), marketing.clone())]);
    let mut change = NewEvent {
        event_type: EventType::DefinitionChange,
        state: EventState::Done,
        body: serde_json::json!({}),
        job: None,
        ..refresh_event(&refresh_job())
    };
    let id = fx
        .replace_hub_definitions(&defs, 0, change.clone())
        .await
        .unwrap();
    assert_eq!(event(&fx, id).await.event_type, EventType::DefinitionChange);
    let record = fx.hub(&hub).await.unwrap().unwrap();
    assert_eq!(
        (record.version, record.hub.description.as_str()),
        (1, "replaced")
    );
    assert_eq!(fx.locations(&hub).await.unwrap(), vec![loc("other"), src]);
    assert_eq!(fx.channels(&hub).await.unwrap(), vec![marketing]);

    // A writer that read version 0 has lost the race: nothing changes.
    let error = fx
        .replace_hub_definitions(&definitions("late"), 0, change.clone())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
    assert_eq!(fx.hub(&hub).await.unwrap().unwrap().version, 1);
    assert_eq!(fx.locations(&hub).await.unwrap().len(), 2);
    assert_eq!(
        fx.events(&EventFilter {
            types: vec![EventType::DefinitionChange],
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        1
    );

    let mut other_hub = definitions("x");
    other_hub.hub.name = HubName::new("nohub").unwrap();
    change.hub = other_hub.hub.name.clone();
    let error = fx
        .replace_hub_definitions(&other_hub, 0, change)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");
}

async fn a_failed_replace_changes_nothing(fx: Fixture) {
    with_definitions(&fx).await;
    let hub = hub1();
    let before = (
        fx.hub(&hub).await.unwrap().unwrap(),
        fx.locations(&hub).await.unwrap(),
        fx.channels(&hub).await.unwrap(),
        fx.events(&EventFilter::default()).await.unwrap().len(),
    );
    // `src` is dropped but the channel still names it.
    let mut defs = definitions("y");
    defs.locations.remove(&LocationName::new("src").unwrap());
    let change = NewEvent {
        event_type: EventType::DefinitionChange,
        state: EventState::Done,
        job: None,
        ..refresh_event(&refresh_job())
    };
    let error = fx
        .replace_hub_definitions(&defs, 0, change)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Storage, "{error}");
    let after = (
        fx.hub(&hub).await.unwrap().unwrap(),
        fx.locations(&hub).await.unwrap(),
        fx.channels(&hub).await.unwrap(),
        fx.events(&EventFilter::default()).await.unwrap().len(),
    );
    assert_eq!(before, after);
}

async fn racing_replacements_admit_exactly_one(fx: Fixture) {
    with_definitions(&fx).await;
    let other = fx.reopen().await.unwrap();
    let mut handles = Vec::new();
    for i in 0..8 {
        let repo = if i % 2 == 0 {
            fx.handle.clone()
        } else {
            other.clone()
        };
        handles.push(tokio::spawn(async move {
            let change = NewEvent {
                event_type: EventType::DefinitionChange,
                state: EventState::Done,
                job: None,
                ..refresh_event(&refresh_job())
            };
            // Every writer read version 0.
            repo.replace_hub_definitions(&definitions(&format!("writer {i}")), 0, change)
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
    assert_eq!(fx.hub(&hub1()).await.unwrap().unwrap().version, 1);
}

/// Every kind of writer at once, through two instances: some lose races (`Conflict`, `NotFound`)
/// but none fails (a deadlock or a duplicate key would be `Storage`).
async fn mixed_writers_through_two_instances_never_fail(fx: Fixture) {
    with_definitions(&fx).await;
    let other = fx.reopen().await.unwrap();
    let hub = hub1();
    let expected = |r: Result<(), RepoError>| match r {
        Ok(()) => {}
        Err(e) => assert!(
            matches!(e.kind(), RepoErrorKind::Conflict | RepoErrorKind::NotFound),
            "{e}"
        ),
    };
    let mut handles = Vec::new();
    for i in 0..2 {
        let repo = if i == 0 {
            fx.handle.clone()
        } else {
            other.clone()
        };
        let hub = hub.clone();
        // Definitions, against the version just read.
        handles.push(tokio::spawn({
            let (repo, hub) = (repo.clone(), hub.clone());
            async move {
                for round in 0..20 {
                    let version = repo.hub(&hub).await.unwrap().unwrap().version;
                    let change = NewEvent {
                        event_type: EventType::DefinitionChange,
                        state: EventState::Done,
                        job: None,
                        ..refresh_event(&refresh_job())
                    };
                    let defs = definitions(&format!("{i}.{round}"));
                    expected(
                        repo.replace_hub_definitions(&defs, version, change)
                            .await
                            .map(|_| ()),
                    );
                    let props = BTreeMap::from([(format!("p{i}"), Some(serde_json::json!(round)))]);
                    expected(repo.set_hub_props(&hub, &props, "x").await.map(|_| ()));
                    expected(
                        repo.set_hub_frozen(&hub, round % 2 == 0, "x")
                            .await
                            .map(|_| ()),
                    );
                }
            }
        }));
        // Pending runs, claimed, cancelled or deleted.
        handles.push(tokio::spawn({
            let (repo, hub) = (repo.clone(), hub.clone());
            async move {
                let job: JobName = "sales-cmp-src-tgt".parse().unwrap();
                let owner = Owner::current();
                for round in 0..20 {
                    let submitted = repo.submit_job(refresh_event(&job), None).await;
                    let Ok(submitted) = submitted else {
                        expected(submitted.map(|_| ()));
                        continue;
                    };
                    match round % 3 {
                        0 => expected(
                            repo.cancel_events(&hub, &[submitted.event], MINUTE)
                                .await
                                .map(|_| ()),
                        ),
                        1 => expected(repo.delete_job(&hub, &job).await.map(|_| ())),
                        _ => match repo.claim_job(&hub, &job, &owner, MINUTE).await {
                            Ok((event, _)) => {
                                // The other task may have deleted the job meanwhile.
                                expected(repo.heartbeat(&hub, &job, &owner).await.map(|_| ()));
                                repo.finish_job(&hub, &job, event, EventState::Done, "ok")
                                    .await
                                    .unwrap();
                            }
                            Err(e) => expected(Err(e)),
                        },
                    }
                }
            }
        }));
        // Runs started at once, taking over each other, with results and logs.
        handles.push(tokio::spawn({
            let (repo, hub) = (repo.clone(), hub.clone());
            async move {
                let job = refresh_job();
                let owner = Owner::current();
                for round in 0..20 {
                    match repo
                        .start_job(refresh_event(&job), &owner, Duration::ZERO)
                        .await
                    {
                        Ok(started) => {
                            let result = EventResult {
                                table: Some("orders".parse().unwrap()),
                                name: ResultName::TableState,
                                value: "DONE".into(),
                            };
                            repo.put_results(started.event, &[result]).await.unwrap();
                            // A commit marker, then the run ended by a reaper or a cancel that
                            // sees it as abandoned (the other instance may have taken it over).
                            let orders = "orders".parse().unwrap();
                            expected(
                                repo.begin_commit(&hub, &job, started.event, &orders, &owner)
                                    .await
                                    .map(|_| ()),
                            );
                            expected(repo.end_commit(started.event, &orders, true).await);
                            if round % 2 == 0 {
                                expected(repo.reap_jobs(Duration::ZERO).await.map(|_| ()));
                            } else {
                                expected(
                                    repo.cancel_events(&hub, &[started.event], Duration::ZERO)
                                        .await
                                        .map(|_| ()),
                                );
                            }
                            repo.append_log(started.event, &["line".into()])
                                .await
                                .unwrap();
                            repo.finish_job(&hub, &job, started.event, EventState::Done, "ok")
                                .await
                                .unwrap();
                        }
                        Err(e) => expected(Err(e)),
                    }
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let events = fx.events(&EventFilter::default()).await.unwrap();
    let unique: BTreeSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(unique.len(), events.len());
    // No pending run was orphaned: each active event is its job's latest.
    for e in events.iter().filter(|e| e.state == EventState::Active) {
        let job = fx.job(&hub, e.job.as_ref().unwrap()).await.unwrap();
        assert_eq!(job.and_then(|j| j.last_event), Some(e.id), "{e:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Hubs.

async fn hubs_are_created_frozen_changed_and_deleted(fx: Fixture) {
    let hub = Hub {
        name: HubName::new("hub2").unwrap(),
        description: "second".into(),
    };
    let before = Utc::now().trunc_subsecs(6);
    let created = fx.create_hub(&hub, "alice").await.unwrap();
    let record = fx.hub(&hub.name).await.unwrap().unwrap();
    assert_eq!(record.hub, hub);
    assert_eq!(
        (
            record.state.as_str(),
            record.creator.as_str(),
            record.version
        ),
        ("LIVE", "alice", 0)
    );
    assert!(record.created >= before && record.freeze_time.is_none() && record.props.is_empty());
    assert_eq!(event(&fx, created).await.event_type, EventType::HubCreate);
    let error = fx.create_hub(&hub, "bob").await.unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");

    // Freezing twice keeps the first freeze time, and answers an event each time.
    let first = fx.set_hub_frozen(&hub.name, true, "bob").await.unwrap();
    let frozen = fx.hub(&hub.name).await.unwrap().unwrap();
    assert_eq!(frozen.state, HubState::Frozen);
    let since = frozen.freeze_time.unwrap();
    let second = fx.set_hub_frozen(&hub.name, true, "bob").await.unwrap();
    assert!(second > first);
    assert_eq!(
        fx.hub(&hub.name).await.unwrap().unwrap().freeze_time,
        Some(since)
    );
    let unfrozen = fx.set_hub_frozen(&hub.name, false, "carol").await.unwrap();
    let live = fx.hub(&hub.name).await.unwrap().unwrap();
    assert_eq!((live.state, live.freeze_time), (HubState::Live, None));
    let audit = event(&fx, unfrozen).await;
    assert_eq!(
        (audit.event_type, audit.user.as_str(), audit.state),
        (EventType::HubUnfreeze, "carol", EventState::Done)
    );
    assert_eq!(event(&fx, first).await.event_type, EventType::HubFreeze);

    // Properties: `Description` is the hub's description, `None` deletes.
    let changes = BTreeMap::from([
        ("Description".to_owned(), Some(serde_json::json!("renamed"))),
        ("Owner".to_owned(), Some(serde_json::json!("ops"))),
        ("Limit".to_owned(), Some(serde_json::json!(5))),
    ]);
    let id = fx.set_hub_props(&hub.name, &changes, "dave").await.unwrap();
    let record = fx.hub(&hub.name).await.unwrap().unwrap();
    assert_eq!(record.hub.description, "renamed");
    assert_eq!(
        record.props,
        BTreeMap::from([
            ("Limit".to_owned(), serde_json::json!(5)),
            ("Owner".to_owned(), serde_json::json!("ops")),
        ])
    );
    let audit = event(&fx, id).await;
    assert_eq!(audit.event_type, EventType::HubPropertyChange);
    assert_eq!(audit.body["props"]["Owner"], "ops");
    fx.set_hub_props(
        &hub.name,
        &BTreeMap::from([("Owner".to_owned(), None)]),
        "dave",
    )
    .await
    .unwrap();
    assert_eq!(
        fx.hub(&hub.name)
            .await
            .unwrap()
            .unwrap()
            .props
            .keys()
            .collect::<Vec<_>>(),
        vec!["Limit"]
    );

    // Deleting takes definitions, jobs and events along; the other hub stays.
    with_definitions(&fx).await;
    fx.submit_job(refresh_event(&refresh_job()), None)
        .await
        .unwrap();
    assert_eq!(
        fx.hubs()
            .await
            .unwrap()
            .iter()
            .map(|h| h.hub.name.to_string())
            .collect::<Vec<_>>(),
        vec!["hub1", "hub2"]
    );
    fx.delete_hub(&hub1()).await.unwrap();
    assert!(fx.hub(&hub1()).await.unwrap().is_none());
    assert!(fx.locations(&hub1()).await.unwrap().is_empty());
    assert!(fx.channels(&hub1()).await.unwrap().is_empty());
    assert!(fx.jobs(&hub1()).await.unwrap().is_empty());
    assert!(
        fx.events(&EventFilter {
            hub: Some(hub1()),
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(fx.hubs().await.unwrap().len(), 1);
    assert!(
        !fx.events(&EventFilter {
            hub: Some(hub.name.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .is_empty()
    );
}

async fn an_unknown_hub_is_not_found(fx: Fixture) {
    let nohub = HubName::new("nohub").unwrap();
    let kinds = [
        fx.delete_hub(&nohub).await.unwrap_err().kind(),
        fx.set_hub_frozen(&nohub, true, "a")
            .await
            .unwrap_err()
            .kind(),
        fx.set_hub_props(&nohub, &BTreeMap::new(), "a")
            .await
            .unwrap_err()
            .kind(),
        fx.post_event(NewEvent {
            hub: nohub.clone(),
            ..refresh_event(&refresh_job())
        })
        .await
        .unwrap_err()
        .kind(),
        fx.submit_job(
            NewEvent {
                hub: nohub.clone(),
                ..refresh_event(&refresh_job())
            },
            None,
        )
        .await
        .unwrap_err()
        .kind(),
    ];
    assert_eq!(kinds, [RepoErrorKind::NotFound; 5]);
    assert!(fx.hub(&nohub).await.unwrap().is_none());
    assert!(fx.events(&EventFilter::default()).await.unwrap().is_empty());
}

on_both_backends!(
    definitions_round_trip_and_replace,
    a_failed_apply_changes_nothing,
    replacing_definitions_checks_the_version_and_deletes_what_is_absent,
    a_failed_replace_changes_nothing,
    racing_replacements_admit_exactly_one,
    mixed_writers_through_two_instances_never_fail,
    hubs_are_created_frozen_changed_and_deleted,
    an_unknown_hub_is_not_found,
);
