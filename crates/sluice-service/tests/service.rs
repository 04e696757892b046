//! Use cases over a real SQLite repository and SQLite locations.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sluice_model::{ChannelName, EventState, EventType, HubName};
use sluice_repo::{EventFilter, NewEvent, Owner, Repository, SqliteRepository};
use sluice_service::{HubService, RefreshCommand, ServiceErrorKind};

fn setup(dir: &std::path::Path) -> HubService {
    let src = rusqlite::Connection::open(dir.join("src.db")).unwrap();
    src.execute_batch(
        "CREATE TABLE a_big (id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 400000)
         INSERT INTO a_big SELECT x, 'row ' || x FROM n;
         CREATE TABLE b_small (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO b_small VALUES (1, 'new');",
    )
    .unwrap();
    let tgt = rusqlite::Connection::open(dir.join("tgt.db")).unwrap();
    tgt.execute_batch("CREATE TABLE b_small (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO b_small VALUES (1, 'old');")
        .unwrap();
    std::fs::write(
        dir.join("defs.yaml"),
        "hub: h\nlocations:\n  src: {class: sqlite, props: {Database_Name: src.db}}\n  tgt: {class: sqlite, props: {Database_Name: tgt.db}}\n\
         channels:\n  c:\n    loc_groups: {SOURCE: [src], TARGET: [tgt]}\n    tables: {a_big: {}, b_small: {}}\n\
         \x20   actions: [{type: Capture, loc_scope: SOURCE}, {type: Integrate, loc_scope: TARGET}]\n",
    )
    .unwrap();
    HubService::open_local(&dir.join(".sluice"), "tester").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_loses_its_claim_stops_before_the_next_table() {
    let dir = tempfile::tempdir().unwrap();
    let svc = setup(dir.path());
    svc.apply_file(&dir.path().join("defs.yaml"), None)
        .await
        .unwrap();
    let hub = HubName::new("h").unwrap();
    let running = svc
        .refresh(RefreshCommand {
            hub: hub.clone(),
            channel: ChannelName::new("c").unwrap(),
            source: None,
            target: None,
            tables: vec![],
            strategy: None,
            batch_rows: None,
            count_first: false,
            mode: Default::default(),
            parallel: None,
        })
        .await
        .unwrap();
    // Another process decides this run is dead and takes the job over.
    let other = SqliteRepository::open(dir.path().join(".sluice/hub.db")).unwrap();
    let taken = other
        .start_job(
            NewEvent {
                hub: hub.clone(),
                event_type: EventType::Refresh,
                user: "other".into(),
                description: "takeover".into(),
                channel: Some(ChannelName::new("c").unwrap()),
                loc: None,
                loc2: None,
                job: Some(running.job.clone()),
                state: EventState::Active,
                body: serde_json::json!({}),
            },
            &Owner::current(),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(taken.taken_over, vec![running.event]);

    let error = running.done.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ServiceErrorKind::Conflict, "{error}");
    let tgt = rusqlite::Connection::open(dir.path().join("tgt.db")).unwrap();
    let v: String = tgt
        .query_row("SELECT v FROM b_small", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, "old", "the table after the lost claim was not written");
    // The old run did not touch the new owner's event.
    let events = other
        .events(&EventFilter {
            ids: vec![taken.event],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events[0].state, EventState::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_refreshes_start_the_next_table_before_the_first_ends() {
    let dir = tempfile::tempdir().unwrap();
    let svc = setup(dir.path());
    svc.apply_file(&dir.path().join("defs.yaml"), None)
        .await
        .unwrap();
    let log_of = |parallel| {
        let svc = svc.clone();
        async move {
            let running = svc
                .refresh(RefreshCommand {
                    hub: HubName::new("h").unwrap(),
                    channel: ChannelName::new("c").unwrap(),
                    source: None,
                    target: None,
                    tables: vec![],
                    strategy: None,
                    batch_rows: None,
                    count_first: false,
                    mode: Default::default(),
                    parallel: Some(parallel),
                })
                .await
                .unwrap();
            let summary = running.done.await.unwrap().unwrap();
            assert_eq!(summary.state, EventState::Done);
            let lines: Vec<String> = svc
                .event_log(summary.event)
                .await
                .unwrap()
                .into_iter()
                .map(|(_, line)| line)
                .collect();
            let at = |prefix: &str| {
                lines
                    .iter()
                    .position(|l| l.starts_with(prefix))
                    .unwrap_or_else(|| panic!("no line {prefix:?} in {lines:#?}"))
            };
            // Did b_small start before a_big (400,000 rows, listed first) finished?
            at("table b_small: refresh") < at("table a_big: 400000 rows")
        }
    };
    assert!(!log_of(1).await, "one at a time: b_small waits for a_big");
    assert!(
        log_of(2).await,
        "two at a time: b_small starts while a_big runs"
    );
}
