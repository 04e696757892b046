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
use sluice_service::replication::ActivateCommand;
use sluice_service::{HubService, ServiceErrorKind};

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

/// Updates and inserts in small transactions until `stop`; the number of transactions.
async fn writer(client: tokio_postgres::Client, stop: Arc<AtomicBool>) -> u64 {
    let mut i: i64 = 0;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let sql = format!(
            "BEGIN; UPDATE src.items SET n = n + 1 WHERE id = {k}; \
             INSERT INTO src.items VALUES ({new}, 0, 'new') ON CONFLICT (id) DO NOTHING; COMMIT;",
            k = (i * 37) % 2000 + 1,
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
