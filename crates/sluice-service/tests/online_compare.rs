//! Waiting for an activated channel to catch up, and online compare, end to end: a PostgreSQL
//! source replicated into a PostgreSQL target by the service itself, with a writer changing the
//! source meanwhile. Real servers, as `scripts/services` starts them; an unreachable server fails
//! the test.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{psql, wait_event, wait_job};
use sluice_model::{ChannelName, EventState, HubName, JobState, Position};
use sluice_service::online::OnlineCompare;
use sluice_service::replication::ActivateCommand;
use sluice_service::{CompareCommand, CompareSummary, Granularity, HubService, ServiceErrorKind};

static NEXT: AtomicU32 = AtomicU32::new(0);

struct World {
    dir: tempfile::TempDir,
    name: String,
}

impl World {
    fn new() -> World {
        let name = format!(
            "oc_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        psql("postgres", &format!("DROP DATABASE IF EXISTS {name}"));
        psql("postgres", &format!("CREATE DATABASE {name}"));
        psql(
            &name,
            "CREATE SCHEMA src; CREATE SCHEMA dst; \
             CREATE TABLE src.items (id bigint PRIMARY KEY, n integer NOT NULL, name text NOT NULL); \
             INSERT INTO src.items SELECT i, i, 'item ' || i FROM generate_series(1, 2000) i;",
        );
        World {
            dir: tempfile::tempdir().unwrap(),
            name,
        }
    }

    fn hub(&self) -> HubName {
        HubName::new(&self.name).unwrap()
    }

    fn home(&self) -> std::path::PathBuf {
        self.dir.path().join(".sluice")
    }

    /// A service on the hub's repository, with the definitions applied.
    async fn service(&self) -> HubService {
        let pg = |schema: &str| {
            format!(
                "{{class: postgresql, props: {{Database_Host: 127.0.0.1, Database_Port: 5432, Database_Name: {}, \
                 Database_User: postgres, Database_Schema: {schema}, Database_Sslmode: disable}}}}",
                self.name
            )
        };
        let yaml = format!(
            "hub: {}\nlocations:\n  src: {}\n  dst: {}\n\
             channels:\n  c:\n    loc_groups: {{SOURCE: [src], TARGET: [dst]}}\n    \
             tables: {{items: {{}}}}\n    actions: [{{type: Capture, loc_scope: SOURCE}}, {{type: Integrate, loc_scope: TARGET}}]\n",
            self.name,
            pg("src"),
            pg("dst"),
        );
        let path = self.dir.path().join("defs.yaml");
        std::fs::write(&path, yaml).unwrap();
        let svc = HubService::open_local(&self.home(), "tester").unwrap();
        svc.apply_file(&path, None).await.unwrap();
        svc
    }

    /// Activates channel `c` with an initial load and waits until both jobs run.
    async fn activated(&self) -> HubService {
        let svc = self.service().await;
        let hub = self.hub();
        let posted = svc
            .activate(ActivateCommand {
                hub: hub.clone(),
                channel: channel(),
                refresh: true,
                refresh_events: vec![],
                start: true,
            })
            .await
            .unwrap();
        assert_eq!(wait_event(&svc, &hub, posted.event).await, EventState::Done);
        wait_job(&svc, &hub, "c-cap-src", JobState::Running).await;
        wait_job(&svc, &hub, "c-integ-dst", JobState::Running).await;
        svc
    }

    async fn source(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port=5432 user=postgres dbname={}",
                self.name
            ),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        client
    }

    async fn deactivate(&self, svc: &HubService) {
        let posted = svc.deactivate(&self.hub(), &channel()).await.unwrap();
        assert_eq!(
            wait_event(svc, &self.hub(), posted.event).await,
            EventState::Done
        );
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let name = &self.name;
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'sluice_{name}%' AND NOT active"
            ))
            .output();
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .output();
    }
}

fn channel() -> ChannelName {
    ChannelName::new("c").unwrap()
}

/// Updates (of ids up to 1,900) and inserts in small transactions until `stop`; the number of
/// transactions.
async fn writer(client: tokio_postgres::Client, stop: Arc<AtomicBool>) -> u64 {
    let mut i: i64 = 0;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let sql = format!(
            "BEGIN; UPDATE src.items SET n = n + 1 WHERE id = {k}; \
             INSERT INTO src.items VALUES ({new}, 0, 'new') ON CONFLICT (id) DO NOTHING; COMMIT;",
            k = (i * 37) % 1900 + 1,
            new = 100_000 + i,
        );
        client.batch_execute(&sql).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    i as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caught_up_means_the_changes_before_the_position_are_at_the_target() {
    let world = World::new();
    let hub = world.hub();
    let svc = world.activated().await;
    let source = world.source().await;
    for round in 0..3 {
        source
            .batch_execute(&format!(
                "INSERT INTO src.items SELECT i, {round}, 'batch' FROM generate_series({from}, {to}) i",
                from = 10_000 + round * 1000,
                to = 10_999 + round * 1000,
            ))
            .await
            .unwrap();
        let started = Instant::now();
        let caught = svc
            .catch_up(&hub, &channel(), Duration::from_secs(30))
            .await
            .unwrap();
        let waited = started.elapsed();
        assert!(caught.durable.cmp_same(&caught.target).unwrap().is_ge());
        // Nothing more is awaited: the rows committed before the position are there now.
        let count = psql(
            &world.name,
            "SELECT count(*) FROM dst.items WHERE id >= 10000",
        );
        assert_eq!(count.trim(), ((round + 1) * 1000).to_string());
        eprintln!("catch up (in process) after 1,000 inserted rows: {waited:?}");
    }

    // Another process of the hub (a service on the same repository that does not run the
    // replication) reads the durable position the run records in the repository.
    let other = HubService::open_local(&world.home(), "tester").unwrap();
    source
        .batch_execute("UPDATE src.items SET name = 'seen elsewhere' WHERE id <= 100")
        .await
        .unwrap();
    let started = Instant::now();
    other
        .catch_up(&hub, &channel(), Duration::from_secs(30))
        .await
        .unwrap();
    eprintln!(
        "catch up (another process) after 100 updates: {:?}",
        started.elapsed()
    );
    let count = psql(
        &world.name,
        "SELECT count(*) FROM dst.items WHERE name = 'seen elsewhere'",
    );
    assert_eq!(count.trim(), "100");

    // A position the source has not reached: the wait ends at its timeout, naming the channel
    // and how far behind it is.
    let Position::Lsn { lsn } = svc.source_position(&hub, &channel()).await.unwrap() else {
        panic!("a PostgreSQL source has LSN positions")
    };
    let far = Position::Lsn {
        lsn: lsn + (1 << 30),
    };
    let error = svc
        .wait_caught_up(&hub, &channel(), &far, Duration::from_secs(1))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("channel c did not catch up with source position")
            && message.contains("within 1 s")
            && message.contains("bytes of source log behind"),
        "{message}"
    );

    // A suspended job: refused at once, with the job named.
    svc.suspend_jobs(&hub, &["c-integ-dst".parse().unwrap()])
        .await
        .unwrap();
    wait_job(&svc, &hub, "c-integ-dst", JobState::Suspend).await;
    let started = Instant::now();
    let error = svc
        .catch_up(&hub, &channel(), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ServiceErrorKind::Conflict);
    assert!(
        error
            .to_string()
            .starts_with("channel c is not replicating: job c-integ-dst is suspended"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    world.deactivate(&svc).await;

    // Not activated (any more): refused.
    let error = svc
        .catch_up(&hub, &channel(), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with("channel c is not activated"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caught_up_during_steady_writes() {
    let world = World::new();
    let hub = world.hub();
    let svc = world.activated().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(world.source().await, stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut waits = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        svc.catch_up(&hub, &channel(), Duration::from_secs(30))
            .await
            .unwrap();
        waits.push(started.elapsed());
    }
    stop.store(true, Ordering::SeqCst);
    let transactions = writing.await.unwrap();
    assert!(
        transactions > 50,
        "the writer made only {transactions} transactions"
    );
    eprintln!("catch up under {transactions} writer transactions: {waits:?}");
    world.deactivate(&svc).await;
}

fn compare_command(hub: &HubName, online: bool) -> CompareCommand {
    CompareCommand {
        slicing: Default::default(),
        hub: hub.clone(),
        channel: channel(),
        source: None,
        target: None,
        tables: vec![],
        granularity: Granularity::Rowwise,
        max_listed: 20,
        pushdown: true,
        online: online.then(OnlineCompare::default),
    }
}

async fn compare(svc: &HubService, hub: &HubName, online: bool) -> CompareSummary {
    let running = svc.compare(compare_command(hub, online)).await.unwrap();
    running.done.await.unwrap().unwrap()
}

fn ids(keys: &[Vec<sluice_model::Value>]) -> Vec<String> {
    keys.iter().map(|k| k[0].to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_compare_during_steady_replication_reports_identical() {
    let world = World::new();
    let hub = world.hub();
    let svc = world.activated().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(world.source().await, stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        // A plain compare meanwhile may or may not see changes in flight.
        let plain = compare(&svc, &hub, false).await;
        let d = plain.tables[0].diff.clone().unwrap_or_default();
        eprintln!(
            "plain compare under writes: {} (only on source {}, only on target {}, differ {})",
            plain.tables[0].state.as_str(),
            d.only_on_source,
            d.only_on_target,
            d.differ
        );
        let started = Instant::now();
        let online = compare(&svc, &hub, true).await;
        let t = &online.tables[0];
        let o = t.online.clone().unwrap();
        eprintln!(
            "online compare under writes: {} in {:?}: {} suspects, {} settled, {} in flight, {} rounds",
            t.state.as_str(),
            started.elapsed(),
            o.suspects,
            o.settled,
            o.in_flight,
            o.rounds
        );
        assert!(online.identical, "{:#?}", online.tables);
        assert_eq!(online.state, EventState::Done);
        assert!(t.diff.as_ref().unwrap().is_empty(), "{t:#?}");
        assert_eq!(o.settled + o.in_flight, o.suspects);
    }
    stop.store(true, Ordering::SeqCst);
    let transactions = writing.await.unwrap();
    assert!(
        transactions > 50,
        "the writer made only {transactions} transactions"
    );
    world.deactivate(&svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_compare_reports_exactly_the_rows_changed_only_in_the_target() {
    let world = World::new();
    let hub = world.hub();
    let svc = world.activated().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(world.source().await, stop.clone()));
    // Rows the writer does not touch, changed at the target only: one altered, one added.
    svc.catch_up(&hub, &channel(), Duration::from_secs(30))
        .await
        .unwrap();
    psql(
        &world.name,
        "UPDATE dst.items SET name = 'tampered' WHERE id = 1950;          INSERT INTO dst.items VALUES (900000, 0, 'only here');",
    );
    let online = compare(&svc, &hub, true).await;
    stop.store(true, Ordering::SeqCst);
    writing.await.unwrap();
    let t = &online.tables[0];
    assert!(!online.identical);
    assert_eq!(t.state.as_str(), "DIFFERENT", "{t:#?}");
    let d = t.diff.clone().unwrap();
    assert_eq!(ids(&d.differ_keys), vec!["1950"], "{t:#?}");
    assert_eq!(ids(&d.only_on_target_keys), vec!["900000"], "{t:#?}");
    assert_eq!(
        (d.differ, d.only_on_target, d.only_on_source),
        (1, 1, 0),
        "{t:#?}"
    );
    let o = t.online.clone().unwrap();
    assert!(o.rounds >= 2, "{o:?}");
    assert_eq!(o.unexamined, 0);
    // The event's results say the same, with the rows in flight.
    let events = svc
        .events(&sluice_service::EventFilter {
            hub: Some(hub.clone()),
            ids: vec![online.event],
            fetch_results: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let value = |name: &str| {
        events[0]
            .results
            .iter()
            .find(|r| r.name.as_str() == name)
            .map(|r| r.value.clone())
    };
    assert_eq!(value("Rows_Which_Differ").as_deref(), Some("1"));
    assert_eq!(value("Rows_Only_On_Target").as_deref(), Some("1"));
    assert_eq!(value("Rows_In_Flight"), Some(o.in_flight.to_string()));

    // Online compare refuses a channel whose replication is suspended, and one not activated,
    // before it posts anything.
    svc.suspend_jobs(&hub, &["c-integ-dst".parse().unwrap()])
        .await
        .unwrap();
    wait_job(&svc, &hub, "c-integ-dst", JobState::Suspend).await;
    let error = svc
        .compare(compare_command(&hub, true))
        .await
        .err()
        .unwrap();
    assert_eq!(error.kind(), ServiceErrorKind::Conflict);
    assert!(
        error
            .to_string()
            .contains("channel c is not replicating: job c-integ-dst is suspended"),
        "{error}"
    );
    world.deactivate(&svc).await;
    let error = svc
        .compare(compare_command(&hub, true))
        .await
        .err()
        .unwrap();
    assert_eq!(error.kind(), ServiceErrorKind::Conflict);
    assert!(
        error
            .to_string()
            .starts_with("online compare needs channel c activated"),
        "{error}"
    );
    // A plain compare is still possible.
    let plain = compare(&svc, &hub, false).await;
    assert_eq!(plain.tables[0].online, None);
}
