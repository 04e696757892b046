//! Use cases over a real SQLite repository and SQLite locations.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sluice_model::{ChannelName, EventState, EventType, HubName};
use sluice_repo::{EventFilter, JobStore, NewEvent, Owner, SqliteRepository};
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
            slicing: Default::default(),
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
async fn parallel_refreshes_into_sqlite_write_one_table_at_a_time() {
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
                    slicing: Default::default(),
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
    // SQLite has one writer per file: a second table would wait on its lock (and fail after the
    // busy timeout), so even two at a time asked for, b_small waits for a_big.
    assert!(
        !log_of(2).await,
        "into SQLite one at a time: b_small waits for a_big"
    );
}

// ---------------------------------------------------------------------------------------------
// Connectors (the use cases behind the Fivetran face).

mod connectors {
    use super::*;
    use sluice_service::connectors::{ConnectorId, ExcludeMode, SyncState};

    fn setup(dir: &std::path::Path) -> HubService {
        let src = rusqlite::Connection::open(dir.join("src.db")).unwrap();
        src.execute_batch(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT, secret TEXT);
             INSERT INTO orders VALUES (1, 'apple', 's1'), (2, 'pear', 's2');
             CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO customers VALUES (1, 'ann');",
        )
        .unwrap();
        rusqlite::Connection::open(dir.join("tgt.db")).unwrap();
        std::fs::write(
            dir.join("defs.yaml"),
            "hub: h\nlocations:\n  src: {class: sqlite, props: {Database_Name: src.db}}\n  tgt: {class: sqlite, props: {Database_Name: tgt.db}}\n\
             channels:\n  c:\n    loc_groups: {SOURCE: [src], TARGET: [tgt]}\n    tables: {orders: {}}\n\
             \x20 multi:\n    loc_groups: {SOURCE: [src], TARGET: [tgt], MORE: [x]}\n    tables: {orders: {}}\n",
        )
        .unwrap();
        HubService::open_local(&dir.join(".sluice"), "tester").unwrap()
    }

    async fn settled(svc: &HubService, id: &ConnectorId) -> sluice_service::connectors::Connector {
        for _ in 0..200 {
            let c = svc.get_connector(id).await.unwrap();
            if c.sync_state != SyncState::Syncing {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("connector {id} is still syncing");
    }

    fn target_rows(dir: &std::path::Path, table: &str) -> i64 {
        rusqlite::Connection::open(dir.join("tgt.db"))
            .unwrap()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn syncs_schema_settings_and_tests() {
        let dir = tempfile::tempdir().unwrap();
        let svc = setup(dir.path());
        std::fs::write(dir.path().join("x.db"), b"").unwrap();
        let defs = std::fs::read_to_string(dir.path().join("defs.yaml")).unwrap();
        std::fs::write(
            dir.path().join("defs.yaml"),
            defs.replace(
                "locations:\n",
                "locations:\n  x: {class: sqlite, props: {Database_Name: x.db}}\n",
            ),
        )
        .unwrap();
        svc.apply_file(&dir.path().join("defs.yaml"), None)
            .await
            .unwrap();
        let list = svc.list_connectors(None).await.unwrap();
        assert_eq!(list.len(), 1, "the three-group channel is not a connector");
        let id: ConnectorId = "h.c".parse().unwrap();
        assert_eq!(list[0].id, id);
        assert_eq!(list[0].sync_state, SyncState::Scheduled);
        assert_eq!(list[0].settings.schedule_type, "manual");
        let e = svc
            .get_connector(&"h.multi".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ServiceErrorKind::NotFound, "{e}");

        let config = svc.connector_schema(&id).await.unwrap();
        let main = &config.schemas["main"];
        assert!(main.tables["orders"].enabled);
        assert!(!main.tables["customers"].enabled, "not in the channel");
        assert!(main.tables["orders"].columns["id"].is_primary_key);

        // A disabled column is not copied.
        svc.set_connector_column_enabled(&id, "main", "orders", "secret", false)
            .await
            .unwrap();
        let e = svc
            .set_connector_column_enabled(&id, "main", "orders", "id", false)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ServiceErrorKind::Invalid, "{e}");
        let e = svc
            .set_connector_table_enabled(&id, "main", "nope", true)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ServiceErrorKind::NotFound, "{e}");

        let outcome = svc.sync_connector(&id, false).await.unwrap();
        assert!(outcome.started);
        assert_eq!(
            svc.get_connector(&id).await.unwrap().sync_state,
            SyncState::Syncing
        );
        let first = settled(&svc, &id).await;
        assert!(first.succeeded_at.is_some(), "{first:?}");
        assert_eq!(target_rows(dir.path(), "orders"), 2);
        let tgt = rusqlite::Connection::open(dir.path().join("tgt.db")).unwrap();
        let secret_cols: i64 = tgt
            .query_row(
                "SELECT count(*) FROM pragma_table_info('orders') WHERE name = 'secret'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(secret_cols, 0, "the disabled column was not copied");

        // Enabling a discovered table adds it to the channel; the next sync copies it.
        svc.set_connector_table_enabled(&id, "main", "customers", true)
            .await
            .unwrap();
        assert!(
            svc.channel(&HubName::new("h").unwrap(), &ChannelName::new("c").unwrap())
                .await
                .unwrap()
                .tables
                .contains_key(&"customers".parse().unwrap())
        );
        svc.resync_connector(&id, None).await.unwrap();
        let second = settled(&svc, &id).await;
        assert!(second.succeeded_at > first.succeeded_at);
        assert_eq!(target_rows(dir.path(), "customers"), 1);

        // A disabled table is not synced.
        svc.set_connector_table_enabled(&id, "main", "customers", false)
            .await
            .unwrap();
        let src = rusqlite::Connection::open(dir.path().join("src.db")).unwrap();
        src.execute("INSERT INTO customers VALUES (2, 'bob')", [])
            .unwrap();
        svc.sync_connector(&id, true).await.unwrap();
        let third = settled(&svc, &id).await;
        assert!(third.succeeded_at > second.succeeded_at);
        assert_eq!(target_rows(dir.path(), "customers"), 1);

        // Reload: a new source table stays disabled under EXCLUDE, is added under INCLUDE.
        src.execute_batch(
            "CREATE TABLE extra (id INTEGER PRIMARY KEY); INSERT INTO extra VALUES (7);",
        )
        .unwrap();
        let config = svc
            .reload_connector_schema(&id, ExcludeMode::Exclude)
            .await
            .unwrap();
        assert!(!config.schemas["main"].tables["extra"].enabled);
        src.execute_batch("CREATE TABLE extra2 (id INTEGER PRIMARY KEY);")
            .unwrap();
        let config = svc
            .reload_connector_schema(&id, ExcludeMode::Include)
            .await
            .unwrap();
        assert!(config.schemas["main"].tables["extra2"].enabled);
        assert!(
            !config.schemas["main"].tables["extra"].enabled,
            "known, kept"
        );

        // Pause refuses syncs; tests fill setup_tests.
        let paused = svc.set_connector_paused(&id, true).await.unwrap();
        assert_eq!(paused.sync_state, SyncState::Paused);
        let e = svc.sync_connector(&id, true).await.unwrap_err();
        assert_eq!(e.kind(), ServiceErrorKind::Conflict, "{e}");
        let tested = svc.test_connector(&id).await.unwrap();
        assert_eq!(tested.settings.setup_state, "connected");
        assert_eq!(tested.settings.setup_tests.as_array().unwrap().len(), 2);

        // API keys.
        let (key, secret) = svc
            .create_api_key(sluice_model::AccessLevel::ReadOnly, "ci")
            .await
            .unwrap();
        let who = svc.authenticate_api_key(&key.key, &secret).await.unwrap();
        assert_eq!(who.level, sluice_model::AccessLevel::ReadOnly);
        let e = svc
            .authenticate_api_key(&key.key, "wrong")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ServiceErrorKind::Unauthenticated);
        svc.delete_api_key(&key.key).await.unwrap();
        assert!(svc.authenticate_api_key(&key.key, &secret).await.is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Lineage across hubs.

mod lineage {
    use super::*;
    use sluice_model::AccessLevel;
    use sluice_service::access::AccessEntry;
    use sluice_service::lineage::{FlowState, Lineage, RunKind};

    /// Hub `a` refreshes x.db → y.db, hub `b` y.db → z.db (y.db spelled another way), both
    /// channel table `t`.
    fn setup(dir: &std::path::Path) -> HubService {
        let x = rusqlite::Connection::open(dir.join("x.db")).unwrap();
        x.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one');",
        )
        .unwrap();
        rusqlite::Connection::open(dir.join("y.db")).unwrap();
        // z.db refuses the row hub b's refresh brings.
        rusqlite::Connection::open(dir.join("z.db"))
            .unwrap()
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT CHECK (v <> 'one'));")
            .unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(
            dir.join("a.yaml"),
            "hub: a\nlocations:\n  ax: {class: sqlite, props: {Database_Name: x.db}}\n  ay: {class: sqlite, props: {Database_Name: y.db}}\n\
             channels:\n  ca:\n    loc_groups: {SOURCE: [ax], TARGET: [ay]}\n    tables: {t: {}}\n\
             \x20   actions: [{type: Capture, loc_scope: SOURCE}, {type: Integrate, loc_scope: TARGET}]\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("b.yaml"),
            "hub: b\nlocations:\n  by: {class: sqlite, props: {Database_Name: sub/../y.db}}\n  bz: {class: sqlite, props: {Database_Name: z.db}}\n\
             channels:\n  cb:\n    loc_groups: {SOURCE: [by], TARGET: [bz]}\n    tables: {t: {}}\n\
             \x20   actions: [{type: Capture, loc_scope: SOURCE}, {type: Integrate, loc_scope: TARGET}]\n",
        )
        .unwrap();
        HubService::open_local(&dir.join(".sluice"), "tester").unwrap()
    }

    async fn refresh(svc: &HubService, hub: &str, channel: &str) -> EventState {
        let running = svc
            .refresh(RefreshCommand {
                slicing: Default::default(),
                hub: HubName::new(hub).unwrap(),
                channel: ChannelName::new(channel).unwrap(),
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
        match running.done.await.unwrap() {
            Ok(summary) => summary.state,
            Err(_) => EventState::Failed,
        }
    }

    fn node<'a>(l: &'a Lineage, file: &str) -> &'a sluice_service::lineage::LineageNode {
        l.nodes
            .iter()
            .find(|n| n.database.ends_with(file))
            .unwrap_or_else(|| panic!("no node of {file} in {l:#?}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chain_across_hubs_with_states_and_access() {
        let dir = tempfile::tempdir().unwrap();
        let svc = setup(dir.path());
        for file in ["a.yaml", "b.yaml"] {
            svc.apply_file(&dir.path().join(file), None).await.unwrap();
        }
        let before = svc.lineage("tester", AccessLevel::SysAdmin).await.unwrap();
        assert_eq!(before.edges.len(), 2);
        assert!(before.edges.iter().all(|e| e.state == FlowState::Never));
        assert!(before.edges.iter().all(|e| e.last_run.is_none()));

        // Hub a's refresh fills y.db; hub b's then fails at z.db.
        assert_eq!(refresh(&svc, "a", "ca").await, EventState::Done);
        assert_eq!(refresh(&svc, "b", "cb").await, EventState::Failed);

        let l = svc.lineage("tester", AccessLevel::SysAdmin).await.unwrap();
        let (x, y, z) = (node(&l, "/x.db"), node(&l, "/y.db"), node(&l, "/z.db"));
        assert_eq!(l.nodes.len(), 3, "{l:#?}");
        assert_eq!((x.depth, y.depth, z.depth), (0, 1, 2));
        assert_eq!(y.table, "t");
        assert_eq!(
            y.locations
                .iter()
                .map(|n| format!("{}/{}", n.hub, n.location))
                .collect::<Vec<_>>(),
            ["a/ay", "b/by"]
        );
        assert_eq!(y.label, "ay, by: t");
        assert!(y.database.starts_with("sqlite:///"), "{}", y.database);
        let edge = |channel: &str| {
            l.edges
                .iter()
                .find(|e| e.channel.as_str() == channel)
                .unwrap()
        };
        let (ca, cb) = (edge("ca"), edge("cb"));
        assert_eq!(
            (ca.source.as_str(), ca.target.as_str()),
            (x.id.as_str(), y.id.as_str())
        );
        assert_eq!(
            (cb.source.as_str(), cb.target.as_str()),
            (y.id.as_str(), z.id.as_str())
        );
        assert_eq!(ca.state, FlowState::Done);
        let run = ca.last_run.as_ref().unwrap();
        assert_eq!((run.kind, run.state), (RunKind::Refresh, EventState::Done));
        assert_eq!(cb.state, FlowState::Failed);
        assert_eq!(cb.last_run.as_ref().unwrap().state, EventState::Failed);
        assert!(ca.replication.is_none());

        // The JSON round-trips (the CLI reads a hub server's answer this way).
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(json["edges"][0]["state"], "done");
        assert_eq!(serde_json::from_value::<Lineage>(json).unwrap(), l);

        // Every node and edge is in the DOT text, ids quoted.
        let dot = l.to_dot();
        assert!(dot.starts_with("digraph lineage {\n") && dot.ends_with("}\n"));
        assert!(dot.contains(&format!("\"{}\" -> \"{}\"", x.id, y.id)));
        assert!(dot.contains(&format!("\"{}\" -> \"{}\"", y.id, z.id)));

        // Nobody but named users may read hub b; ann (ReadOnly) sees hub a only.
        svc.set_hub_access_list(
            &HubName::new("b").unwrap(),
            &[AccessEntry {
                user: None,
                level: AccessLevel::None,
            }],
        )
        .await
        .unwrap();
        let ann = svc.lineage("ann", AccessLevel::ReadOnly).await.unwrap();
        assert_eq!(ann.edges.len(), 1);
        assert_eq!(ann.edges[0].hub.as_str(), "a");
        assert_eq!(ann.nodes.len(), 2);
        assert!(
            ann.nodes
                .iter()
                .all(|n| n.locations.iter().all(|l| l.hub.as_str() == "a"))
        );
        // A SysAdmin still sees both.
        assert_eq!(
            svc.lineage("root", AccessLevel::SysAdmin)
                .await
                .unwrap()
                .edges
                .len(),
            2
        );
    }
}
