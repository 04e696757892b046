//! Change capture from a SQLite source end to end: activated with an initial load while a writer
//! in another connection keeps changing the file, replicated into PostgreSQL and into SQLite until
//! the compare says identical, with a column added on the way; deactivate leaves none of the
//! capture's triggers and tables behind. PostgreSQL as `scripts/services` starts it; unreachable,
//! the test fails.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use common::{job_state, psql, wait_event, wait_identical, wait_job};
use sluice_model::{ChannelName, EventState, HubName, JobState};
use sluice_service::HubService;
use sluice_service::replication::ActivateCommand;

static NEXT: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Pg,
    Lite,
}

struct World {
    dir: tempfile::TempDir,
    name: String,
}

impl World {
    fn new() -> World {
        let name = format!(
            "rl_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        psql("postgres", &format!("DROP DATABASE IF EXISTS {name}"));
        psql("postgres", &format!("CREATE DATABASE {name}"));
        psql(&name, "CREATE SCHEMA dst;");
        World {
            dir: tempfile::tempdir().unwrap(),
            name,
        }
    }

    fn hub(&self) -> HubName {
        HubName::new(&self.name).unwrap()
    }

    fn source_path(&self) -> PathBuf {
        self.dir.path().join("src.db")
    }

    async fn service(&self, target: Target) -> HubService {
        let target = match target {
            Target::Pg => format!(
                "{{class: postgresql, props: {{Database_Host: 127.0.0.1, Database_Port: 5432, Database_Name: {}, \
                 Database_User: postgres, Database_Schema: dst, Database_Sslmode: disable}}}}",
                self.name
            ),
            Target::Lite => format!(
                "{{class: sqlite, props: {{Database_Name: \"{}\"}}}}",
                self.dir.path().join("dst.db").display()
            ),
        };
        let yaml = format!(
            "hub: {}\nlocations:\n  src: {{class: sqlite, props: {{Database_Name: \"{}\"}}}}\n  dst: {target}\n\
             channels:\n  c:\n    loc_groups: {{SOURCE: [src], TARGET: [dst]}}\n    \
             tables: {{items: {{}}, tags: {{}}}}\n    actions: [{{type: Capture, loc_scope: SOURCE}}, {{type: Integrate, loc_scope: TARGET}}]\n",
            self.name,
            self.source_path().display(),
        );
        let path = self.dir.path().join("defs.yaml");
        std::fs::write(&path, yaml).unwrap();
        let svc = HubService::open_local(&self.dir.path().join(".sluice"), "tester").unwrap();
        svc.apply_file(&path, None).await.unwrap();
        svc
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

const ROWS: i64 = 3_000;

fn open(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(20)).unwrap();
    conn
}

fn seed(path: &Path) {
    let conn = open(path);
    conn.execute_batch(&format!(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, name VARCHAR(64) NOT NULL, \
                             amount REAL, note TEXT, data BLOB);
         CREATE TABLE tags (item INTEGER NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (item, tag));
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {ROWS})
         INSERT INTO items SELECT i, i % 1000, 'item ' || i, i * 1.25, 'note ' || i, randomblob(i % 40) FROM s;
         INSERT INTO tags SELECT id, 't' || (id % 7) FROM items WHERE id % 3 = 0;"
    ))
    .unwrap();
}

/// Inserts, updates and deletes in small transactions of its own connection until `stop`.
fn writer(path: PathBuf, stop: Arc<AtomicBool>) -> u64 {
    let mut conn = open(&path);
    let mut i: i64 = 0;
    let mut changes = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let k = (i * 7919) % ROWS + 1;
        let tx = conn.transaction().unwrap();
        tx.execute_batch(&format!(
            "INSERT OR IGNORE INTO items (id, n, name, amount, note, data) VALUES ({new}, {i}, 'new {i}', {i}.5, 'fresh', X'0102');
             UPDATE items SET n = n + 1, amount = amount + 0.1 WHERE id = {k};
             DELETE FROM items WHERE id = {gone};
             INSERT OR REPLACE INTO tags VALUES ({k}, 'w{i}');
             DELETE FROM tags WHERE item = {gone};",
            new = ROWS + i,
            gone = ((i * 104_729) % ROWS) + 1,
        ))
        .unwrap();
        tx.commit().unwrap();
        changes += 5;
        std::thread::sleep(Duration::from_millis(4));
    }
    changes
}

fn capture_objects(path: &Path) -> i64 {
    open(path)
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'sluice%'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

async fn replicate_into(target: Target) {
    let world = World::new();
    let hub = world.hub();
    let channel = ChannelName::new("c").unwrap();
    seed(&world.source_path());
    let svc = world.service(target).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let (path, stop) = (world.source_path(), stop.clone());
        std::thread::spawn(move || writer(path, stop))
    };
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
    wait_job(&svc, &hub, "c-integ-dst", JobState::Running).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A column added while the writer runs reaches the target.
    open(&world.source_path())
        .execute_batch(
            "ALTER TABLE items ADD COLUMN extra INTEGER; UPDATE items SET extra = 7 WHERE id = 2;",
        )
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let written = writing.join().unwrap();
    assert!(written > 100, "the writer made only {written} changes");
    wait_identical(&svc, &hub, &format!("{target:?}")).await;
    let added = match target {
        Target::Pg => psql(
            &world.name,
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = 'dst' AND table_name = 'items' AND column_name = 'extra'",
        )
        .trim()
        .parse::<i64>()
        .unwrap(),
        Target::Lite => open(&world.dir.path().join("dst.db"))
            .query_row(
                "SELECT count(*) FROM pragma_table_info('items') WHERE name = 'extra'",
                [],
                |r| r.get(0),
            )
            .unwrap(),
    };
    assert_eq!(added, 1, "the added column reached the target");
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
    assert_eq!(
        capture_objects(&world.source_path()),
        0,
        "deactivate removes the capture's triggers and tables"
    );
    assert_eq!(job_state(&svc, &hub, "c-cap-src").await, None);
    assert!(
        svc.replication_status(&hub, &channel)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgresql_with_initial_load_under_writes() {
    replicate_into(Target::Pg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_sqlite_with_initial_load_under_writes() {
    replicate_into(Target::Lite).await;
}
