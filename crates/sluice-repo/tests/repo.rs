//! The repository contract, run against both backends: every test in `on_both_backends!` runs once
//! on a fresh SQLite file and once on a fresh PostgreSQL database (`sluice_repo_test_<random>`,
//! dropped afterwards). PostgreSQL is `$SLUICE_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`);
//! when it is unreachable the PostgreSQL tests fail, they are never skipped.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound, SubsecRound, TimeDelta, Utc};
use sluice_model::definition::{
    Action, ActionType, Channel, ChannelColumn, ChannelTable, Definitions, Hub, HubState, LocScope,
    Location, LocationClass, PropValue, TableScope,
};
use sluice_model::{
    AccessLevel, ChannelName, DataType, EventId, EventState, EventType, HubName, JobName, JobState,
    LocGroupName, LocationName, ResultName, TableName,
};
use sluice_repo::{
    ApiKeyRecord, ConnectorRecord, DefinitionStore, EventFilter, EventResult, NewEvent, Owner,
    PostgresRepository, RepoError, RepoErrorKind, Repository, SqliteRepository, TokenRecord,
    UserRecord, open_repository,
};
use sluice_test_support::TestDatabase;

// ---------------------------------------------------------------------------------------------
// Fixtures: one repository per test, on either backend.

/// A fresh PostgreSQL database (see `sluice_test_support`), named for this crate's tests.
async fn fresh_database() -> TestDatabase {
    TestDatabase::create("sluice_repo_test_").await
}

enum Store {
    Sqlite {
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
    Postgres(TestDatabase),
}

/// A repository on a fresh store. Derefs to the repository.
struct Fixture {
    // Before `store`: the pool closes before the database is dropped.
    repo: Arc<dyn Repository>,
    store: Store,
}

impl Deref for Fixture {
    type Target = dyn Repository;
    fn deref(&self) -> &Self::Target {
        &*self.repo
    }
}

impl Fixture {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home/hub.db");
        let repo = Arc::new(SqliteRepository::open(&path).unwrap());
        Fixture {
            repo,
            store: Store::Sqlite { path, _dir: dir },
        }
    }

    async fn postgres() -> Self {
        let db = fresh_database().await;
        let repo = Arc::new(PostgresRepository::connect(&db.url).await.unwrap());
        Fixture {
            repo,
            store: Store::Postgres(db),
        }
    }

    /// Another repository on the same store, as a second process would open it.
    async fn reopen(&self) -> Result<Arc<dyn Repository>, RepoError> {
        Ok(match &self.store {
            Store::Sqlite { path, .. } => Arc::new(SqliteRepository::open(path)?),
            Store::Postgres(db) => Arc::new(PostgresRepository::connect(&db.url).await?),
        })
    }

    async fn schema_version(&self) -> u32 {
        match &self.store {
            Store::Sqlite { path, .. } => SqliteRepository::open(path)
                .unwrap()
                .schema_version()
                .unwrap(),
            Store::Postgres(db) => PostgresRepository::connect(&db.url)
                .await
                .unwrap()
                .schema_version()
                .await
                .unwrap(),
        }
    }

    /// Stores an event of hub1 with id `id` directly, as a process whose clock runs ahead would.
    async fn insert_event_at(&self, id: EventId) {
        let sql = format!(
            "INSERT INTO event (ev_id, hub_name, ev_type, user_name, description, ev_state, start_tstamp, last_updated) \
             VALUES ('{id}', 'hub1', 'Refresh', 'skewed', 'from the future', 'DONE', '{id}', '{id}')"
        );
        match &self.store {
            Store::Sqlite { path, .. } => {
                rusqlite::Connection::open(path)
                    .unwrap()
                    .execute(&sql, [])
                    .unwrap();
            }
            Store::Postgres(db) => {
                let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                client.batch_execute(&sql).await.unwrap();
            }
        }
    }

    /// Records a migration this build does not know, as a newer sluice would.
    async fn record_future_migration(&self) {
        match &self.store {
            Store::Sqlite { path, .. } => {
                rusqlite::Connection::open(path)
                    .unwrap()
                    .execute(
                        "INSERT INTO schema_migration VALUES (99, 'future', '2030-01-01T00:00:00Z')",
                        [],
                    )
                    .unwrap();
            }
            Store::Postgres(db) => {
                let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                client
                    .batch_execute(
                        "INSERT INTO schema_migration VALUES (99, 'future', '2030-01-01T00:00:00Z')",
                    )
                    .await
                    .unwrap();
            }
        }
    }
}

/// For each named `async fn NAME(fx: Fixture)`, a module `NAME` with the tests `sqlite` and
/// `postgres`.
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$test(super::Fixture::sqlite().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$test(super::Fixture::postgres().await).await
            }
        }
    )+};
}

on_both_backends!(
    definitions_round_trip_and_replace,
    a_failed_apply_changes_nothing,
    one_run_per_job_and_abandoned_runs_are_taken_over,
    concurrent_starts_through_two_instances_admit_exactly_one,
    concurrent_submits_through_two_instances_admit_exactly_one,
    concurrent_pending_submits_leave_exactly_one_pending,
    event_ids_are_unique_and_logs_keep_order,
    event_ids_stay_unique_and_increasing_across_instances,
    a_repository_from_a_newer_sluice_is_refused,
    hubs_are_created_frozen_changed_and_deleted,
    replacing_definitions_checks_the_version_and_deletes_what_is_absent,
    a_failed_replace_changes_nothing,
    users_and_tokens,
    a_token_is_taken_once,
    a_setting_keeps_its_first_value,
    submit_queues_claim_runs_and_a_newer_submit_replaces_a_pending_one,
    heartbeat_answers_false_after_a_cancel,
    cancel_events_refuses_an_inactive_event_and_changes_nothing,
    a_cancel_is_too_late_once_a_commit_began,
    a_commit_and_a_cancel_racing_through_two_instances_decide_one_way,
    cancelling_a_run_whose_process_stopped_frees_its_job_at_once,
    runs_whose_process_stopped_are_reaped_once,
    deleting_a_job_whose_table_commits_is_refused,
    delete_job_cancels_its_active_events,
    job_states_are_set_only_when_not_running,
    events_are_filtered_and_results_kept_in_order,
    an_unknown_hub_is_not_found,
    racing_replacements_admit_exactly_one,
    mixed_writers_through_two_instances_never_fail,
    connector_settings_are_inserted_once_and_replaced,
    api_keys_are_created_listed_and_deleted,
);

// ---------------------------------------------------------------------------------------------
// Definitions and events used by the tests.

fn hub1() -> HubName {
    HubName::new("hub1").unwrap()
}

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

fn channel(name: &str, note: &str, source: &str, target: &str) -> Channel {
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
    Channel {
        name: ChannelName::new(name).unwrap(),
        description: note.to_owned(),
        loc_groups: BTreeMap::from([
            (
                LocGroupName::new("SOURCE").unwrap(),
                vec![LocationName::new(source).unwrap()],
            ),
            (
                LocGroupName::new("TARGET").unwrap(),
                vec![LocationName::new(target).unwrap()],
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
            Action::new(
                ActionType::Capture,
                LocScope::Group(LocGroupName::new("SOURCE").unwrap()),
                TableScope::All,
                BTreeMap::new(),
            )
            .unwrap(),
            Action::new(
                ActionType::Restrict,
                LocScope::Location(LocationName::new(source).unwrap()),
                TableScope::Table(TableName::new("orders").unwrap()),
                BTreeMap::from([(
                    "RefreshCondition".to_owned(),
                    PropValue::Text("total > 0".into()),
                )]),
            )
            .unwrap(),
        ],
    }
}

fn definitions(note: &str) -> Definitions {
    let channel = channel("sales", note, "src", "tgt");
    Definitions {
        hub: Hub {
            name: hub1(),
            description: "test hub".into(),
        },
        locations: BTreeMap::from([
            (LocationName::new("src").unwrap(), loc("src")),
            (LocationName::new("tgt").unwrap(), loc("tgt")),
        ]),
        channels: BTreeMap::from([(channel.name.clone(), channel)]),
    }
}

fn refresh_event(job: &JobName) -> NewEvent {
    NewEvent {
        hub: hub1(),
        event_type: EventType::Refresh,
        user: "alice".into(),
        description: "refresh".into(),
        channel: Some(ChannelName::new("sales").unwrap()),
        loc: Some(LocationName::new("src").unwrap()),
        loc2: Some(LocationName::new("tgt").unwrap()),
        job: Some(job.clone()),
        state: EventState::Active,
        body: serde_json::json!({"tables": ["orders"], "zeta": 1, "alpha": 2}),
    }
}

fn refresh_job() -> JobName {
    "sales-refr-src-tgt".parse().unwrap()
}

async fn with_definitions(fx: &Fixture) {
    fx.apply_definitions(&definitions("x"), "alice", "f")
        .await
        .unwrap();
}

async fn event(fx: &Fixture, id: EventId) -> sluice_repo::EventRecord {
    let mut found = fx
        .events(&EventFilter {
            ids: vec![id],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "event {id}");
    found.remove(0)
}

const MINUTE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Definitions.

async fn definitions_round_trip_and_replace(fx: Fixture) {
    assert_eq!(fx.schema_version().await, 4);
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
            fx.repo.clone()
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
            fx.repo.clone()
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

// ---------------------------------------------------------------------------------------------
// Users, tokens, settings.

fn user(name: &str) -> UserRecord {
    UserRecord {
        name: name.into(),
        level: AccessLevel::ReadWrite,
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt${name}"),
        // Stored to the microsecond.
        created: Utc::now().trunc_subsecs(6),
        creator: "admin".into(),
    }
}

fn token(hash: &str, user: &str, kind: &str, age_seconds: i64) -> TokenRecord {
    let created =
        Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() - TimeDelta::seconds(age_seconds);
    TokenRecord {
        hash: hash.into(),
        user: user.into(),
        kind: kind.into(),
        created,
        expires: created + TimeDelta::days(30),
    }
}

async fn users_and_tokens(fx: Fixture) {
    let (bob, alice) = (user("bob"), user("alice"));
    fx.create_user(&bob).await.unwrap();
    fx.create_user(&alice).await.unwrap();
    assert_eq!(fx.users().await.unwrap(), vec![alice.clone(), bob.clone()]);
    assert_eq!(fx.user("alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(fx.user("nobody").await.unwrap(), None);
    let error = fx.create_user(&user("alice")).await.unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");

    fx.update_user("alice", Some(AccessLevel::ReadOnly), None)
        .await
        .unwrap();
    let changed = fx.user("alice").await.unwrap().unwrap();
    assert_eq!(
        (changed.level, changed.password_hash.as_str()),
        (AccessLevel::ReadOnly, alice.password_hash.as_str())
    );
    fx.update_user("alice", None, Some("new-hash"))
        .await
        .unwrap();
    let changed = fx.user("alice").await.unwrap().unwrap();
    assert_eq!(
        (changed.level, changed.password_hash.as_str()),
        (AccessLevel::ReadOnly, "new-hash")
    );
    let error = fx
        .update_user("nobody", Some(AccessLevel::HubOwner), None)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");

    let (r1, r2, key) = (
        token("r1", "alice", "refresh", 20),
        token("r2", "bob", "refresh", 10),
        token("k1", "alice", "apikey", 5),
    );
    for t in [&r2, &key, &r1] {
        fx.put_token(t).await.unwrap();
    }
    assert_eq!(
        fx.tokens("refresh", None).await.unwrap(),
        vec![r1.clone(), r2.clone()],
        "oldest first"
    );
    assert_eq!(
        fx.tokens("refresh", Some("bob")).await.unwrap(),
        vec![r2.clone()]
    );
    assert_eq!(
        fx.tokens("apikey", Some("alice")).await.unwrap(),
        vec![key.clone()]
    );
    assert_eq!(fx.token("k1").await.unwrap(), Some(key.clone()));
    fx.delete_token("k1").await.unwrap();
    fx.delete_token("never-issued").await.unwrap();
    assert_eq!(fx.token("k1").await.unwrap(), None);

    // Deleting a user deletes their tokens.
    fx.delete_user("alice").await.unwrap();
    assert_eq!(fx.token("r1").await.unwrap(), None);
    assert_eq!(fx.tokens("refresh", None).await.unwrap(), vec![r2]);
    let error = fx.delete_user("alice").await.unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");
    assert_eq!(fx.users().await.unwrap(), vec![bob]);
}

async fn a_token_is_taken_once(fx: Fixture) {
    fx.create_user(&user("alice")).await.unwrap();
    let t = token("rotate-me", "alice", "refresh", 0);
    fx.put_token(&t).await.unwrap();
    assert_eq!(fx.take_token("rotate-me").await.unwrap(), Some(t.clone()));
    assert_eq!(fx.take_token("rotate-me").await.unwrap(), None);
    assert_eq!(fx.token("rotate-me").await.unwrap(), None);

    // Racing takers through two instances: exactly one gets it.
    fx.put_token(&t).await.unwrap();
    let other = fx.reopen().await.unwrap();
    let mut handles = Vec::new();
    for i in 0..8 {
        let repo = if i % 2 == 0 {
            fx.repo.clone()
        } else {
            other.clone()
        };
        handles.push(tokio::spawn(
            async move { repo.take_token("rotate-me").await },
        ));
    }
    let mut got = 0;
    for h in handles {
        if let Some(taken) = h.await.unwrap().unwrap() {
            assert_eq!(taken, t);
            got += 1;
        }
    }
    assert_eq!(got, 1);
}

async fn a_setting_keeps_its_first_value(fx: Fixture) {
    assert_eq!(fx.setting_or_insert("color", "red").await.unwrap(), "red");
    assert_eq!(fx.setting_or_insert("color", "blue").await.unwrap(), "red");

    // Racing processes all get the same stored value.
    let other = fx.reopen().await.unwrap();
    let mut handles = Vec::new();
    for i in 0..12 {
        let repo = if i % 2 == 0 {
            fx.repo.clone()
        } else {
            other.clone()
        };
        handles.push(tokio::spawn(async move {
            repo.setting_or_insert("signing_key", &format!("key-{i}"))
                .await
        }));
    }
    let mut values = BTreeSet::new();
    for h in handles {
        values.insert(h.await.unwrap().unwrap());
    }
    assert_eq!(values.len(), 1, "{values:?}");
    let stored = fx.setting_or_insert("signing_key", "late").await.unwrap();
    assert!(values.contains(&stored));
}

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
            fx.repo.clone()
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
            fx.repo.clone()
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
            fx.repo.clone()
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
            fx.repo.clone()
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
            fx.repo.clone()
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
                (fx.repo.clone(), hub.clone(), job.clone(), owner.clone());
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

// ---------------------------------------------------------------------------------------------
// PostgreSQL only: connecting, migrating, and `open_repository`.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_processes_starting_together_migrate_once() {
    let db = fresh_database().await;
    let mut handles = Vec::new();
    for _ in 0..6 {
        let url = db.url.clone();
        handles.push(tokio::spawn(async move {
            PostgresRepository::connect(&url).await
        }));
    }
    let mut repos = Vec::new();
    for h in handles {
        repos.push(h.await.unwrap().unwrap());
    }
    assert_eq!(repos[0].schema_version().await.unwrap(), 4);
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query("SELECT version FROM schema_migration ORDER BY version", &[])
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    drop(repos);
}

#[tokio::test]
async fn postgres_unreachable_or_tls_is_a_clear_error() {
    // Port 1 on loopback: nothing listens there.
    let error = PostgresRepository::connect("postgres://alice:secret@127.0.0.1:1/hub")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Storage);
    let message = error.to_string();
    assert!(
        message.contains("cannot connect") && message.contains("alice@127.0.0.1:1/hub"),
        "{message}"
    );
    assert!(!message.contains("secret"), "{message}");

    let error = PostgresRepository::connect("postgres://postgres@127.0.0.1/hub?sslmode=require")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("TLS"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_repository_by_spec() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain/hub.db");
    let prefixed = dir.path().join("prefixed.db");
    for spec in [
        plain.display().to_string(),
        format!("sqlite:{}", prefixed.display()),
        format!("sqlite://{}", prefixed.display()),
    ] {
        let repo = open_repository(&spec).await.unwrap();
        assert!(repo.hubs().await.unwrap().is_empty(), "{spec}");
    }
    assert!(plain.exists() && prefixed.exists());

    let db = fresh_database().await;
    for spec in [
        db.url.clone(),
        db.url.replacen("postgres://", "postgresql://", 1),
    ] {
        let repo = open_repository(&spec).await.unwrap();
        repo.create_hub(
            &Hub {
                name: hub1(),
                description: String::new(),
            },
            "alice",
        )
        .await
        .map(|_| ())
        .or_else(|e| match e.kind() {
            RepoErrorKind::Conflict => Ok(()),
            _ => Err(e),
        })
        .unwrap();
    }
    assert_eq!(
        PostgresRepository::connect(&db.url)
            .await
            .unwrap()
            .hubs()
            .await
            .unwrap()
            .len(),
        1
    );

    for (spec, expected) in [
        (
            "mysql://root@localhost/hub",
            "unsupported repository scheme",
        ),
        ("", "no repository given"),
        ("sqlite:", "no repository given"),
        ("postgres://u@127.0.0.1/hub?sslmode=require", "TLS"),
    ] {
        let error = open_repository(spec).await.err().expect(spec);
        assert!(error.to_string().contains(expected), "{spec}: {error}");
    }
}

// ---------------------------------------------------------------------------------------------
// Connector settings and API keys (the Fivetran face).

async fn connector_settings_are_inserted_once_and_replaced(fx: Fixture) {
    with_definitions(&fx).await;
    let sales: ChannelName = "sales".parse().unwrap();
    let created = Utc::now().trunc_subsecs(6);
    let first = ConnectorRecord::new(hub1(), sales.clone(), created);
    assert_eq!(fx.connector_or_insert(&first).await.unwrap(), first);
    // A second insert keeps what is stored (its own `created` is ignored).
    let later = ConnectorRecord::new(hub1(), sales.clone(), created + TimeDelta::seconds(5));
    assert_eq!(fx.connector_or_insert(&later).await.unwrap(), first);

    let mut changed = first.clone();
    changed.paused = true;
    changed.schedule_type = "auto".into();
    changed.sync_frequency = 1440;
    changed.daily_sync_time = "03:30".into();
    changed.schema_change_handling = "BLOCK_ALL".into();
    changed.schema_overlay = serde_json::json!({"tables": {"orders": {"enabled": false}}});
    changed.setup_state = "broken".into();
    changed.setup_tests = serde_json::json!([{"title": "source", "status": "FAILED"}]);
    fx.put_connector(&changed).await.unwrap();
    assert_eq!(
        fx.connector_records(Some(&hub1())).await.unwrap(),
        vec![changed.clone()]
    );
    assert_eq!(
        fx.connector_records(None).await.unwrap(),
        vec![changed.clone()]
    );
    assert_eq!(fx.connector_or_insert(&first).await.unwrap(), changed);
    let other: HubName = "other".parse().unwrap();
    assert_eq!(fx.connector_records(Some(&other)).await.unwrap(), vec![]);

    // Settings of an unknown hub are refused; deleting the hub deletes its settings.
    let error = fx
        .put_connector(&ConnectorRecord::new(other.clone(), sales.clone(), created))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");
    let error = fx
        .connector_or_insert(&ConnectorRecord::new(other, sales, created))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");
    fx.delete_hub(&hub1()).await.unwrap();
    assert_eq!(fx.connector_records(None).await.unwrap(), vec![]);
}

async fn api_keys_are_created_listed_and_deleted(fx: Fixture) {
    let key = |id: &str, age: i64, level: AccessLevel| ApiKeyRecord {
        key: id.into(),
        secret_hash: format!("hash-of-{id}"),
        level,
        created: Utc::now().trunc_subsecs(6) - TimeDelta::seconds(age),
        creator: "admin".into(),
        description: format!("key {id}"),
    };
    let (old, new) = (
        key("k_old", 20, AccessLevel::ReadOnly),
        key("k_new", 10, AccessLevel::ReadExecRefresh),
    );
    fx.create_api_key(&new).await.unwrap();
    fx.create_api_key(&old).await.unwrap();
    let error = fx
        .create_api_key(&key("k_old", 0, AccessLevel::SysAdmin))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::Conflict, "{error}");
    assert_eq!(fx.api_keys().await.unwrap(), vec![old.clone(), new.clone()]);
    assert_eq!(fx.api_key("k_new").await.unwrap(), Some(new.clone()));
    assert_eq!(fx.api_key("nope").await.unwrap(), None);
    fx.delete_api_key("k_old").await.unwrap();
    let error = fx.delete_api_key("k_old").await.unwrap_err();
    assert_eq!(error.kind(), RepoErrorKind::NotFound, "{error}");
    assert_eq!(fx.api_keys().await.unwrap(), vec![new]);
}

/// On PostgreSQL the repository and the event store share the one pool `Database::open` sets
/// up, each with its own migrations in the same database.
#[tokio::test]
async fn postgres_repository_and_event_store_share_one_pool() {
    let db = fresh_database().await;
    let database = sluice_repo::Database::open(&db.url, "repository").unwrap();
    let repo = sluice_repo::open_repository_in(&database).await.unwrap();
    let store = sluice_events::store::open_event_store_in(&database)
        .await
        .unwrap();
    assert!(repo.hubs().await.unwrap().is_empty());
    store.topics().await.unwrap();
    let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    for table in ["schema_migration", "ev_schema_migrations"] {
        let row = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap();
        assert!(
            row.get::<_, i64>(0) > 0,
            "{table} records the store's migrations"
        );
    }
}
