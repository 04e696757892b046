//! The SQLite repository: migrations, definitions round trip, atomic apply, events, and job claims.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_model::definition::{
    Action, Channel, ChannelColumn, ChannelTable, Definitions, Hub, LocScope, Location,
    LocationClass, PropValue, TableScope,
};
use sluice_model::{
    ChannelName, DataType, EventState, EventType, HubName, JobName, JobState, LocGroupName,
    LocationName, ResultName, TableName,
};
use sluice_repo::{
    EventFilter, EventResult, NewEvent, Owner, RepoErrorKind, Repository, SqliteRepository,
};

fn loc(name: &str) -> Location {
    Location {
        name: LocationName::new(name).unwrap(),
        class: LocationClass::Sqlite,
        description: format!("{name} db"),
        props: BTreeMap::from([
            (
                "Database_Name".to_owned(),
                PropValue::Text(format!("/data/{name}.db")),
            ),
            (
                "Database_Password".to_owned(),
                PropValue::Text("${PW}".into()),
            ),
            ("Database_Busy_Timeout".to_owned(), PropValue::Int(100)),
        ]),
    }
}

fn definitions(note: &str) -> Definitions {
    let table = |n: &str, cols: Option<Vec<ChannelColumn>>| {
        (
            TableName::new(n).unwrap(),
            ChannelTable {
                name: TableName::new(n).unwrap(),
                base_name: None,
                table_group: None,
                columns: cols,
            },
        )
    };
    let channel = Channel {
        name: ChannelName::new("sales").unwrap(),
        description: note.to_owned(),
        loc_groups: BTreeMap::from([
            (
                LocGroupName::new("SOURCE").unwrap(),
                vec![LocationName::new("src").unwrap()],
            ),
            (
                LocGroupName::new("TARGET").unwrap(),
                vec![LocationName::new("tgt").unwrap()],
            ),
        ]),
        tables: BTreeMap::from([
            table("customers", None),
            table(
                "orders",
                Some(vec![
                    ChannelColumn {
                        name: "id".parse().unwrap(),
                        data_type: DataType::Int64,
                        nullable: false,
                        key: 1,
                    },
                    ChannelColumn {
                        name: "total".parse().unwrap(),
                        data_type: DataType::decimal(12, 2).unwrap(),
                        nullable: true,
                        key: 0,
                    },
                ]),
            ),
        ]),
        actions: vec![
            Action {
                action_type: "Capture".into(),
                loc_scope: LocScope::Group(LocGroupName::new("SOURCE").unwrap()),
                table_scope: TableScope::All,
                params: BTreeMap::new(),
            },
            Action {
                action_type: "Restrict".into(),
                loc_scope: LocScope::Location(LocationName::new("src").unwrap()),
                table_scope: TableScope::Table(TableName::new("orders").unwrap()),
                params: BTreeMap::from([(
                    "RefreshCondition".to_owned(),
                    PropValue::Text("total > 0".into()),
                )]),
            },
        ],
    };
    Definitions {
        hub: Hub {
            name: HubName::new("hub1").unwrap(),
            description: "test hub".into(),
        },
        locations: BTreeMap::from([
            (LocationName::new("src").unwrap(), loc("src")),
            (LocationName::new("tgt").unwrap(), loc("tgt")),
        ]),
        channels: BTreeMap::from([(channel.name.clone(), channel)]),
    }
}

fn open() -> (tempfile::TempDir, SqliteRepository) {
    let dir = tempfile::tempdir().unwrap();
    let repo = SqliteRepository::open(dir.path().join("home/hub.db")).unwrap();
    (dir, repo)
}

#[tokio::test]
async fn definitions_round_trip_and_replace() {
    let (_dir, repo) = open();
    assert_eq!(repo.schema_version().unwrap(), 2);
    let defs = definitions("first");
    let summary = repo
        .apply_definitions(&defs, "alice", "sales.yaml")
        .await
        .unwrap();
    assert!(summary.hub_created);
    assert_eq!(summary.locations_added.len(), 2);
    assert_eq!(
        summary.channels_added,
        vec![ChannelName::new("sales").unwrap()]
    );

    let hub = HubName::new("hub1").unwrap();
    assert_eq!(
        repo.locations(&hub).await.unwrap(),
        defs.locations.values().cloned().collect::<Vec<_>>()
    );
    let stored = repo
        .channel(&hub, &ChannelName::new("sales").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&stored, defs.channels.values().next().unwrap());

    let summary = repo
        .apply_definitions(&definitions("second"), "bob", "sales.yaml")
        .await
        .unwrap();
    assert!(!summary.hub_created);
    assert_eq!(summary.channels_replaced.len(), 1);
    assert_eq!(repo.channels(&hub).await.unwrap()[0].description, "second");

    // Audit events name the user.
    let events = repo
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
}

#[tokio::test]
async fn a_failed_apply_changes_nothing() {
    let (_dir, repo) = open();
    let mut defs = definitions("x");
    // The channel names a location that is in no definition.
    defs.locations.remove(&LocationName::new("tgt").unwrap());
    let error = repo
        .apply_definitions(&defs, "alice", "bad.yaml")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Storage);
    assert!(
        repo.hubs().await.unwrap().is_empty(),
        "the hub was not created"
    );
    assert!(
        repo.events(&EventFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "no event was posted"
    );
}

fn refresh_event(job: &JobName) -> NewEvent {
    NewEvent {
        hub: HubName::new("hub1").unwrap(),
        event_type: EventType::Refresh,
        user: "alice".into(),
        description: "refresh".into(),
        channel: Some(ChannelName::new("sales").unwrap()),
        loc: Some(LocationName::new("src").unwrap()),
        loc2: Some(LocationName::new("tgt").unwrap()),
        job: Some(job.clone()),
        state: EventState::Active,
        body: serde_json::json!({"tables": ["orders"]}),
    }
}

#[tokio::test]
async fn one_run_per_job_and_abandoned_runs_are_taken_over() {
    let (_dir, repo) = open();
    repo.apply_definitions(&definitions("x"), "alice", "f")
        .await
        .unwrap();
    let hub = HubName::new("hub1").unwrap();
    let job: JobName = "sales-refr-src-tgt".parse().unwrap();
    let first_owner = Owner::current();
    let first = repo
        .start_job(refresh_event(&job), &first_owner, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(first.taken_over.is_empty());

    let second_owner = Owner::current();
    let error = repo
        .start_job(refresh_event(&job), &second_owner, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict);
    assert!(
        error.to_string().contains(&first.event.to_string()),
        "{error}"
    );

    // The first process stops sending heartbeats: with a zero staleness bound it is taken over.
    let second = repo
        .start_job(refresh_event(&job), &second_owner, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(second.taken_over, vec![first.event]);
    let old = repo
        .events(&EventFilter {
            ids: vec![first.event],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(old[0].state, EventState::Failed);
    assert!(old[0].response.as_deref().unwrap().starts_with("abandoned"));
    // The first owner has lost the job.
    assert!(repo.heartbeat(&hub, &job, &first_owner).await.is_err());
    repo.heartbeat(&hub, &job, &second_owner).await.unwrap();

    repo.put_results(
        second.event,
        &[EventResult {
            table: Some("orders".parse().unwrap()),
            name: ResultName::TableState,
            value: "DONE".into(),
        }],
    )
    .await
    .unwrap();
    repo.finish_job(
        &hub,
        &job,
        second.event,
        EventState::Done,
        "Refresh completed",
    )
    .await
    .unwrap();
    let jobs = repo.jobs(&hub).await.unwrap();
    assert_eq!((jobs[0].state, jobs[0].num_runs), (JobState::Done, 2));
    let latest = repo
        .latest_table_results(
            &hub,
            &ChannelName::new("sales").unwrap(),
            EventType::Refresh,
        )
        .await
        .unwrap();
    let (event, results) = &latest[&TableName::new("orders").unwrap()];
    assert_eq!(event.id, second.event);
    assert_eq!(results[0].value, "DONE");
    // And the job can run again.
    repo.start_job(refresh_event(&job), &first_owner, Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_through_two_connections_admit_exactly_one() {
    let (dir, repo) = open();
    repo.apply_definitions(&definitions("x"), "alice", "f")
        .await
        .unwrap();
    let other = SqliteRepository::open(dir.path().join("home/hub.db")).unwrap();
    let job: JobName = "sales-refr-src-tgt".parse().unwrap();
    let mut handles = Vec::new();
    for i in 0..8 {
        let r = if i % 2 == 0 {
            repo.clone()
        } else {
            other.clone()
        };
        let job = job.clone();
        handles.push(tokio::spawn(async move {
            r.start_job(
                refresh_event(&job),
                &Owner::current(),
                Duration::from_secs(60),
            )
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

#[tokio::test]
async fn event_ids_are_unique_and_logs_keep_order() {
    let (_dir, repo) = open();
    repo.apply_definitions(&definitions("x"), "alice", "f")
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..50 {
        let mut e = refresh_event(&"sales-cmp-src-tgt".parse().unwrap());
        e.state = EventState::Done;
        ids.push(repo.post_event(e).await.unwrap());
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "ids are strictly increasing");
    repo.append_log(ids[0], &["one".into(), "two".into()])
        .await
        .unwrap();
    repo.append_log(ids[0], &["three".into()]).await.unwrap();
    let log: Vec<String> = repo
        .event_log(ids[0])
        .await
        .unwrap()
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(log, vec!["one", "two", "three"]);
    let limited = repo
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
}

#[tokio::test]
async fn a_repository_from_a_newer_sluice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    drop(SqliteRepository::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO schema_migration VALUES (99, 'future', '2030-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
    let error = SqliteRepository::open(&path).unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Version);
    assert!(error.to_string().contains("schema version 99"), "{error}");
}
