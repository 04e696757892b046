//! Change capture from MariaDB end to end: a MariaDB source activated with an initial load while
//! a writer keeps changing it, replicated into PostgreSQL and into another MariaDB database until
//! the compare says identical; suspend and start of an integrate job; an added column; deactivate
//! leaves nothing behind at the source or the targets. Real servers, as `scripts/services` starts
//! them; an unreachable server fails the test.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use common::{job_state, mariadb, psql, wait_event, wait_identical_at, wait_job};
use mysql_async::prelude::Queryable;
use sluice_model::{ChannelName, EventState, HubName, JobState};
use sluice_service::HubService;
use sluice_service::replication::ActivateCommand;

static NEXT: AtomicU32 = AtomicU32::new(0);

struct World {
    dir: tempfile::TempDir,
    name: String,
}

impl World {
    fn new() -> World {
        let name = format!(
            "rm_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        psql("postgres", &format!("DROP DATABASE IF EXISTS {name}"));
        psql("postgres", &format!("CREATE DATABASE {name}"));
        psql(&name, "CREATE SCHEMA dst;");
        mariadb(&format!(
            "DROP DATABASE IF EXISTS {name}_src; CREATE DATABASE {name}_src; \
             DROP DATABASE IF EXISTS {name}_dst; CREATE DATABASE {name}_dst;"
        ));
        World {
            dir: tempfile::tempdir().unwrap(),
            name,
        }
    }

    fn hub(&self) -> HubName {
        HubName::new(&self.name).unwrap()
    }

    async fn service(&self) -> HubService {
        let name = &self.name;
        let yaml = format!(
            "hub: {name}\nlocations:\n  src: {{class: mariadb, props: {{Database_Host: 127.0.0.1, \
             Database_Port: 3306, Database_Name: {name}_src, Database_User: root}}}}\n  \
             pg: {{class: postgresql, props: {{Database_Host: 127.0.0.1, Database_Port: 5432, \
             Database_Name: {name}, Database_User: postgres, Database_Schema: dst, \
             Database_Sslmode: disable}}}}\n  \
             maria: {{class: mariadb, props: {{Database_Host: 127.0.0.1, Database_Port: 3306, \
             Database_Name: {name}_dst, Database_User: root}}}}\n\
             channels:\n  c:\n    loc_groups: {{SOURCE: [src], TARGET: [pg, maria]}}\n    \
             tables: {{items: {{}}}}\n    actions: [{{type: Capture, loc_scope: SOURCE}}, \
             {{type: Integrate, loc_scope: TARGET}}]\n"
        );
        let path = self.dir.path().join("defs.yaml");
        std::fs::write(&path, yaml).unwrap();
        let svc = HubService::open_local(&self.dir.path().join(".sluice"), "tester").unwrap();
        svc.apply_file(&path, None).await.unwrap();
        svc
    }

    async fn source(&self) -> mysql_async::Conn {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(3306)
            .user(Some("root"))
            .db_name(Some(format!("{}_src", self.name)))
            .prefer_socket(false);
        mysql_async::Conn::new(opts).await.unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let name = &self.name;
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .output();
        let _ = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-e"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {name}_src; DROP DATABASE IF EXISTS {name}_dst"
            ))
            .output();
    }
}

const ROWS: i64 = 5_000;

async fn seed(conn: &mut mysql_async::Conn) {
    conn.query_drop(
        "CREATE TABLE items (id BIGINT PRIMARY KEY, n INT NOT NULL, name VARCHAR(64) NOT NULL, \
         amount DECIMAL(12,2), created TIMESTAMP(6) NULL, note TEXT)",
    )
    .await
    .unwrap();
    conn.query_drop(format!(
        "INSERT INTO items SELECT seq, seq % 1000, CONCAT('item ', seq), seq * 1.25, \
         TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND, \
         IF(seq % 500 = 0, REPEAT(MD5(seq), 400), CONCAT('short ', seq)) FROM seq_1_to_{ROWS}"
    ))
    .await
    .unwrap();
}

/// Inserts, updates and deletes in small transactions until `stop`.
async fn writer(mut conn: mysql_async::Conn, stop: Arc<AtomicBool>) -> u64 {
    let mut i: i64 = 0;
    let mut changes = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let k = (i * 7919) % ROWS + 1;
        let sql = format!(
            "START TRANSACTION;
             INSERT IGNORE INTO items VALUES ({new}, {i}, 'new {i}', {i}.5, UTC_TIMESTAMP(6), 'fresh');
             UPDATE items SET n = n + 1, amount = amount + 1 WHERE id = {k};
             UPDATE items SET name = 'renamed {i}' WHERE id = {large};
             DELETE FROM items WHERE id = {gone};
             COMMIT;",
            new = ROWS + i,
            large = ((i % 10) + 1) * 500,
            gone = ((i * 104_729) % ROWS) + 1,
        );
        conn.query_drop(sql).await.unwrap();
        changes += 4;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_to_postgresql_and_mariadb_with_initial_load_under_writes() {
    let world = World::new();
    let hub = world.hub();
    let channel = ChannelName::new("c").unwrap();
    let mut source = world.source().await;
    seed(&mut source).await;
    let svc = world.service().await;
    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(world.source().await, stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let posted = svc
        .activate(ActivateCommand {
            hub: hub.clone(),
            channel: channel.clone(),
            refresh: true,
            refresh_events: vec![],
            start: true,
        })
        .await
        .unwrap();
    let state = wait_event(&svc, &hub, posted.event).await;
    assert_eq!(state, EventState::Done, "activation ended {state:?}");
    wait_job(&svc, &hub, "c-cap-src", JobState::Running).await;
    wait_job(&svc, &hub, "c-integ-pg", JobState::Running).await;
    wait_job(&svc, &hub, "c-integ-maria", JobState::Running).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    svc.suspend_jobs(&hub, &["c-integ-maria".parse().unwrap()])
        .await
        .unwrap();
    wait_job(&svc, &hub, "c-integ-maria", JobState::Suspend).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let written = writing.await.unwrap();
    assert!(written > 100, "the writer made only {written} changes");
    // A schema change while one target is suspended: the added column reaches both.
    source
        .query_drop("ALTER TABLE items ADD COLUMN extra INT")
        .await
        .unwrap();
    source
        .query_drop("UPDATE items SET extra = 7 WHERE id <= 10")
        .await
        .unwrap();
    svc.start_jobs(
        &hub,
        &["c-integ-maria".parse().unwrap()],
        sluice_service::StartOptions {
            unsuspend: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    wait_job(&svc, &hub, "c-integ-maria", JobState::Running).await;
    wait_identical_at(&svc, &hub, Some("pg"), "MariaDB to PostgreSQL").await;
    wait_identical_at(&svc, &hub, Some("maria"), "MariaDB to MariaDB").await;
    // Some of rows 1..10 may have been deleted by the writer: as many as the source has.
    let at_source: Option<u64> = source
        .query_first("SELECT count(*) FROM items WHERE extra = 7")
        .await
        .unwrap();
    assert!(at_source.unwrap() > 0);
    assert_eq!(
        psql(
            &world.name,
            "SELECT count(*) FROM dst.items WHERE extra = 7"
        )
        .trim(),
        at_source.unwrap().to_string()
    );
    let status = svc
        .replication_status(&hub, &channel)
        .await
        .unwrap()
        .unwrap();
    let stats = status.stats.unwrap();
    assert!(
        stats.captured > 0 && stats.integrated.values().sum::<u64>() > 0,
        "{stats:?}"
    );

    let posted = svc.deactivate(&hub, &channel).await.unwrap();
    assert_eq!(wait_event(&svc, &hub, posted.event).await, EventState::Done);
    let left: Vec<String> = source.query("SHOW TABLES LIKE 'sluice%'").await.unwrap();
    assert!(left.is_empty(), "left at the source: {left:?}");
    let mut target = world.source().await;
    let left: Vec<String> = target
        .query(format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{}_dst' \
             AND TABLE_NAME LIKE 'sluice%'",
            world.name
        ))
        .await
        .unwrap();
    assert!(left.is_empty(), "left at the MariaDB target: {left:?}");
    assert_eq!(
        psql(
            &world.name,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'sluice%'"
        )
        .trim(),
        "0"
    );
    assert_eq!(job_state(&svc, &hub, "c-cap-src").await, None);
    assert!(
        svc.replication_status(&hub, &channel)
            .await
            .unwrap()
            .is_none()
    );
}
