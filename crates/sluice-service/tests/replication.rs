//! Change capture end to end: a PostgreSQL source activated with an initial load while a writer
//! keeps changing it, replicated into PostgreSQL, MariaDB and SQLite targets until the compare
//! says identical; suspend and start of the integrate job; deactivate leaves no slot and no
//! publication behind. Real servers, as `scripts/services` starts them; an unreachable server
//! fails the test.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use common::{job_state, mariadb, psql, wait_event, wait_identical, wait_job};
use sluice_model::{ChannelName, EventState, HubName, JobState};
use sluice_service::replication::{ActivateCommand, capture_name};
use sluice_service::{EventFilter, HubService};

static NEXT: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Engine {
    Pg,
    Maria,
    Lite,
}

struct World {
    dir: tempfile::TempDir,
    name: String,
}

impl World {
    fn new() -> World {
        let name = format!(
            "rp_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        psql("postgres", &format!("DROP DATABASE IF EXISTS {name}"));
        psql("postgres", &format!("CREATE DATABASE {name}"));
        psql(&name, "CREATE SCHEMA src; CREATE SCHEMA dst;");
        mariadb(&format!(
            "DROP DATABASE IF EXISTS {name}_dst; CREATE DATABASE {name}_dst;"
        ));
        World {
            dir: tempfile::tempdir().unwrap(),
            name,
        }
    }

    fn hub(&self) -> HubName {
        HubName::new(&self.name).unwrap()
    }

    fn target_props(&self, engine: Engine) -> String {
        match engine {
            Engine::Pg => format!(
                "{{class: postgresql, props: {{Database_Host: 127.0.0.1, Database_Port: 5432, Database_Name: {}, \
                 Database_User: postgres, Database_Schema: dst, Database_Sslmode: disable}}}}",
                self.name
            ),
            Engine::Maria => format!(
                "{{class: mariadb, props: {{Database_Host: 127.0.0.1, Database_Port: 3306, Database_Name: {}_dst, \
                 Database_User: root}}}}",
                self.name
            ),
            Engine::Lite => format!(
                "{{class: sqlite, props: {{Database_Name: \"{}\"}}}}",
                self.dir.path().join("dst.db").display()
            ),
        }
    }

    async fn service(&self, target: Engine) -> HubService {
        let yaml = format!(
            "hub: {}\nlocations:\n  src: {{class: postgresql, props: {{Database_Host: 127.0.0.1, Database_Port: 5432, \
             Database_Name: {}, Database_User: postgres, Database_Schema: src, Database_Sslmode: disable}}}}\n  dst: {}\n\
             channels:\n  c:\n    loc_groups: {{SOURCE: [src], TARGET: [dst]}}\n    \
             tables: {{items: {{}}}}\n    actions: [{{type: Capture, loc_scope: SOURCE}}, {{type: Integrate, loc_scope: TARGET}}]\n",
            self.name,
            self.name,
            self.target_props(target)
        );
        let path = self.dir.path().join("defs.yaml");
        std::fs::write(&path, yaml).unwrap();
        let svc = HubService::open_local(&self.dir.path().join(".sluice"), "tester").unwrap();
        svc.apply_file(&path, None).await.unwrap();
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
        let _ = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS {name}_dst"))
            .output();
    }
}

const ROWS: i64 = 5_000;

/// The source table with `ROWS` rows; `note` of some rows is large enough to be TOASTed.
async fn seed(client: &tokio_postgres::Client) {
    client
        .batch_execute(&format!(
            "CREATE TABLE src.items (id bigint PRIMARY KEY, n integer NOT NULL, name varchar(64) NOT NULL, \
             amount numeric(12,2), created timestamptz, note text);
             INSERT INTO src.items SELECT i, i % 1000, 'item ' || i, i * 1.25, now(), \
             CASE WHEN i % 500 = 0 THEN repeat(md5(i::text), 400) ELSE 'short ' || i END \
             FROM generate_series(1, {ROWS}) i;"
        ))
        .await
        .unwrap();
}

/// Mixed inserts, updates (some leaving the large `note` untouched) and deletes in small
/// transactions until `stop`.
async fn writer(client: tokio_postgres::Client, stop: Arc<AtomicBool>) -> u64 {
    let mut i: i64 = 0;
    let mut changes = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let k = (i * 7919) % ROWS + 1;
        let sql = format!(
            "BEGIN;
             INSERT INTO src.items VALUES ({new}, {i}, 'new {i}', {i}.5, now(), 'fresh') ON CONFLICT (id) DO NOTHING;
             UPDATE src.items SET n = n + 1, amount = amount + 1 WHERE id = {k};
             UPDATE src.items SET name = 'renamed {i}' WHERE id = {toasted};
             DELETE FROM src.items WHERE id = {gone};
             COMMIT;",
            new = ROWS + i,
            toasted = ((i % 10) + 1) * 500,
            gone = ((i * 104_729) % ROWS) + 1,
        );
        client.batch_execute(&sql).await.unwrap();
        changes += 4;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    changes
}

async fn replicate_into(target: Engine) {
    let world = World::new();
    let hub = world.hub();
    let source = world.source().await;
    seed(&source).await;
    let svc = world.service(target).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(world.source().await, stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let posted = svc
        .activate(ActivateCommand {
            hub: hub.clone(),
            channel: ChannelName::new("c").unwrap(),
            refresh: true,
            refresh_events: vec![],
            start: true,
        })
        .await
        .unwrap();
    assert_eq!(posted.job.as_str(), "c-activate");
    let state = wait_event(&svc, &hub, posted.event).await;
    assert_eq!(state, EventState::Done, "activation ended {state:?}");
    wait_job(&svc, &hub, "c-cap-src", JobState::Running).await;
    wait_job(&svc, &hub, "c-integ-dst", JobState::Running).await;
    // The writer keeps going while replication streams.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Suspend the integrate job: the run stops, changes wait at the source.
    svc.suspend_jobs(&hub, &["c-integ-dst".parse().unwrap()])
        .await
        .unwrap();
    wait_job(&svc, &hub, "c-integ-dst", JobState::Suspend).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let written = writing.await.unwrap();
    assert!(written > 100, "the writer made only {written} changes");
    // A schema change while suspended: an added column reaches the target.
    source
        .batch_execute("ALTER TABLE src.items ADD COLUMN extra integer; UPDATE src.items SET extra = 7 WHERE id = 1;")
        .await
        .unwrap();
    svc.start_jobs(
        &hub,
        &["c-integ-dst".parse().unwrap()],
        sluice_service::StartOptions {
            unsuspend: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    wait_job(&svc, &hub, "c-integ-dst", JobState::Running).await;
    wait_identical(&svc, &hub, &format!("{target:?}")).await;
    let status = svc
        .replication_status(&hub, &ChannelName::new("c").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(status.running_here);
    let stats = status.stats.unwrap();
    assert!(
        stats.captured > 0 && stats.integrated.values().sum::<u64>() > 0,
        "{stats:?}"
    );
    // Deactivate: no slot, no publication, no jobs.
    let posted = svc
        .deactivate(&hub, &ChannelName::new("c").unwrap())
        .await
        .unwrap();
    assert_eq!(wait_event(&svc, &hub, posted.event).await, EventState::Done);
    let name = capture_name(
        &hub,
        &ChannelName::new("c").unwrap(),
        &"src".parse().unwrap(),
    );
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{name}'")
        )
        .trim(),
        "0"
    );
    assert_eq!(
        psql(
            &world.name,
            &format!("SELECT count(*) FROM pg_publication WHERE pubname = '{name}'")
        )
        .trim(),
        "0"
    );
    assert_eq!(job_state(&svc, &hub, "c-cap-src").await, None);
    assert!(
        svc.replication_status(&hub, &ChannelName::new("c").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_to_postgresql_with_initial_load_under_writes() {
    replicate_into(Engine::Pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_to_mariadb_with_initial_load_under_writes() {
    replicate_into(Engine::Maria).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_to_sqlite_with_initial_load_under_writes() {
    replicate_into(Engine::Lite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_table_without_key_is_refused_and_nothing_is_left() {
    let world = World::new();
    let hub = world.hub();
    let source = world.source().await;
    source
        .batch_execute("CREATE TABLE src.items (id bigint, n integer)")
        .await
        .unwrap();
    psql(
        &world.name,
        "CREATE TABLE dst.items (id bigint PRIMARY KEY, n integer)",
    );
    let svc = world.service(Engine::Pg).await;
    let posted = svc
        .activate(ActivateCommand {
            hub: hub.clone(),
            channel: ChannelName::new("c").unwrap(),
            refresh: false,
            refresh_events: vec![],
            start: true,
        })
        .await
        .unwrap();
    assert_eq!(
        wait_event(&svc, &hub, posted.event).await,
        EventState::Failed
    );
    let events = svc
        .events(&EventFilter {
            hub: Some(hub.clone()),
            ids: vec![posted.event],
            ..Default::default()
        })
        .await
        .unwrap();
    let response = events[0].response.clone().unwrap_or_default();
    assert!(
        response.contains("items") && response.to_lowercase().contains("replica identity"),
        "{response}"
    );
    let name = capture_name(
        &hub,
        &ChannelName::new("c").unwrap(),
        &"src".parse().unwrap(),
    );
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{name}'")
        )
        .trim(),
        "0"
    );
}

/// A run of a replication job whose process was killed: once the reaper (or a take-over) ends
/// it, the channel replicates again without anyone starting the job. The reaper used to leave
/// such a job FAILED, which the supervisor holds until a user starts it: a hub server killed
/// and restarted stopped replicating whenever its reaper came before its supervisor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_jobs_of_a_killed_process_run_again() {
    use sluice_model::EventType;
    use sluice_repo::{JobStore, NewEvent, Owner, SqliteRepository};

    let world = World::new();
    let hub = world.hub();
    let channel = ChannelName::new("c").unwrap();
    seed(&world.source().await).await;
    psql(
        &world.name,
        "CREATE TABLE dst.items (id bigint PRIMARY KEY, n integer NOT NULL, name varchar(64) NOT NULL, \
         amount numeric(12,2), created timestamptz, note text)",
    );
    let svc = world.service(Engine::Pg).await;
    let posted = svc
        .activate(ActivateCommand {
            hub: hub.clone(),
            channel: channel.clone(),
            refresh: false,
            refresh_events: vec![],
            start: false,
        })
        .await
        .unwrap();
    assert_eq!(wait_event(&svc, &hub, posted.event).await, EventState::Done);

    // Both jobs held by a process of this host that has since been killed.
    let killed = {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        Owner {
            id: "killed".into(),
            pid,
            ..Owner::current()
        }
    };
    let repo = SqliteRepository::open(world.dir.path().join(".sluice").join("hub.db")).unwrap();
    for (job, event_type) in [
        ("c-cap-src", EventType::Capture),
        ("c-integ-dst", EventType::Integrate),
    ] {
        repo.start_job(
            NewEvent {
                hub: hub.clone(),
                event_type,
                user: "tester".into(),
                description: "a run of a process that is killed".into(),
                channel: Some(channel.clone()),
                loc: None,
                loc2: None,
                job: Some(job.parse().unwrap()),
                state: EventState::Active,
                body: serde_json::Value::Null,
            },
            &killed,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    }
    let reaped = svc.reap_orphaned_jobs().await.unwrap();
    assert_eq!(reaped.len(), 2, "{reaped:?}");
    assert_eq!(
        job_state(&svc, &hub, "c-cap-src").await,
        Some(JobState::Pending)
    );
    assert!(svc.start_replication(&hub, &channel).await.unwrap());
    wait_job(&svc, &hub, "c-cap-src", JobState::Running).await;
    wait_job(&svc, &hub, "c-integ-dst", JobState::Running).await;

    let posted = svc.deactivate(&hub, &channel).await.unwrap();
    assert_eq!(wait_event(&svc, &hub, posted.event).await, EventState::Done);
}
