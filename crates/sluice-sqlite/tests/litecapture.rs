//! Trigger-based change capture from a SQLite file: values, transactions, restarts, trimming,
//! added columns, removal, and writers in other connections and processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use sluice_connector::{
    CaptureRequest, CaptureTable, ChangeReader, ChangeStream, Connector, Introspector, ReadRequest,
    SnapshotReader,
};
use sluice_model::{BatchLimits, CaptureMessage, ChangeOp, Position, RowChange, TableRef, Value};
use sluice_sqlite::{SqliteConfig, SqliteConnector};

fn sql(path: &Path, script: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute_batch(script).unwrap();
}

fn count(path: &Path, query: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(query, [], |r| r.get(0)).unwrap()
}

fn table(name: &str) -> TableRef {
    TableRef::new(sluice_model::BaseName::new(name).unwrap())
}

async fn request(connector: &SqliteConnector, name: &str, tables: &[&str]) -> CaptureRequest {
    let mut out = Vec::new();
    for t in tables {
        let schema = connector.table_schema(&table(t)).await.unwrap().unwrap();
        out.push(CaptureTable {
            table: table(t),
            columns: schema.columns,
        });
    }
    CaptureRequest {
        name: name.to_owned(),
        tables: out,
    }
}

/// What a stream sent up to a point: per transaction its changes, in order.
#[derive(Default)]
struct Seen {
    relations: Vec<(TableRef, Vec<String>)>,
    commits: Vec<(u64, Vec<RowChange>)>,
    open: Vec<RowChange>,
    idle: Vec<u64>,
}

impl Seen {
    fn changes(&self) -> impl Iterator<Item = &RowChange> {
        self.commits.iter().flat_map(|(_, c)| c.iter())
    }
}

/// Reads messages until `done` holds or 20 s pass.
async fn follow(stream: &mut Box<dyn ChangeStream>, seen: &mut Seen, done: impl Fn(&Seen) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done(seen) {
        let message = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the stream sent what was expected in time")
            .unwrap();
        match message {
            CaptureMessage::Relation { table, columns, .. } => seen
                .relations
                .push((table, columns.iter().map(|c| c.name.to_string()).collect())),
            CaptureMessage::Changes {
                first_index,
                changes,
                ..
            } => {
                assert_eq!(
                    first_index as usize,
                    seen.open.len(),
                    "parts are consecutive"
                );
                seen.open.extend(changes);
            }
            CaptureMessage::Commit {
                ack, change_count, ..
            } => {
                let Position::Sequence { seq } = ack else {
                    panic!("a sequence position")
                };
                assert_eq!(change_count as usize, seen.open.len());
                seen.commits.push((seq, std::mem::take(&mut seen.open)));
            }
            CaptureMessage::Idle { position, .. } => {
                let Position::Sequence { seq } = position else {
                    panic!("a sequence position")
                };
                seen.idle.push(seq);
            }
        }
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int64(i) => *i,
        Value::Int32(i) => i64::from(*i),
        other => panic!("not an integer: {other:?}"),
    }
}

async fn snapshot_rows(connector: &SqliteConnector, name: &str) -> Vec<Vec<Value>> {
    let schema = connector.table_schema(&table(name)).await.unwrap().unwrap();
    let key = vec![0];
    let snapshot = connector
        .read(ReadRequest {
            table: table(name),
            columns: schema.columns,
            key,
            ordered: true,
            filter: None,
            lower_bound: None,
            key_range: None,
            limits: BatchLimits::DEFAULT,
        })
        .await
        .unwrap();
    let batches: Vec<_> = snapshot.batches.collect().await;
    let mut rows = Vec::new();
    for batch in batches {
        let batch = batch.unwrap();
        rows.extend(batch.rows().map(|r| r.to_vec()));
    }
    rows
}

fn setup(dir: &tempfile::TempDir) -> (std::path::PathBuf, SqliteConnector) {
    let path = dir.path().join("src.db");
    let connector = SqliteConnector::new(SqliteConfig::new(&path));
    (path, connector)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_kind_arrives_as_the_snapshot_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let (path, connector) = setup(&dir);
    sql(
        &path,
        "CREATE TABLE v (id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, \
                         n NUMERIC, d DECIMAL(20,4), ts TIMESTAMP, flag BOOLEAN, u)",
    );
    let req = request(&connector, "vals", &["v"]).await;
    connector.check_capture(&req).await.unwrap();
    let start = connector.create_capture(&req).await.unwrap();
    assert_eq!(start.position, Position::Sequence { seq: 0 });
    drop(start.snapshot);
    let mut stream = connector.open_capture(&req).await.unwrap();
    sql(
        &path,
        "INSERT INTO v VALUES (1, -9223372036854775808, 0.1, 'it''s, \"q\" ü', X'00FF10', 12.5, '123.4567', '2026-01-02 03:04:05.123456', 1, 'untyped');
         INSERT INTO v VALUES (2, 9223372036854775807, 4.9406564584124654e-324, '', X'', 7, '-0.0001', '1999-12-31 23:59:59', 0, NULL);
         INSERT INTO v VALUES (3, NULL, 1e308, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
         INSERT INTO v VALUES (4, '42', 123456789.12345678, 'x', X'41', 1e20, '1', NULL, NULL, '');
         BEGIN; UPDATE v SET r = -0.3, t = 'changed' WHERE id = 4; DELETE FROM v WHERE id = 3; COMMIT;",
    );
    let mut seen = Seen::default();
    follow(&mut stream, &mut seen, |s| s.changes().count() >= 6).await;
    assert_eq!(seen.relations.len(), 1);
    // Apply the changes to a map and compare with what a snapshot read gives.
    let mut rows: std::collections::BTreeMap<i64, Vec<Value>> = Default::default();
    for change in seen.changes() {
        match change.op {
            ChangeOp::Insert | ChangeOp::Update => {
                let after = change.after.clone().unwrap();
                if let Some(before) = &change.before {
                    rows.remove(&int(&before[0]));
                }
                rows.insert(int(&after[0]), after);
            }
            ChangeOp::Delete => {
                rows.remove(&int(&change.before.as_ref().unwrap()[0]));
            }
            ChangeOp::Truncate => panic!("no truncates"),
        }
    }
    let expected = snapshot_rows(&connector, "v").await;
    assert_eq!(rows.into_values().collect::<Vec<_>>(), expected);
    // Reals bit-exact: the smallest subnormal survived.
    assert!(matches!(expected[1][2], Value::Float64(f) if f.to_bits() == 1));
    let update = seen.changes().find(|c| c.op == ChangeOp::Update).unwrap();
    assert_eq!(
        update.before.as_ref().unwrap()[3],
        Value::Text("x".into()),
        "the old image is the whole old row"
    );
    stream.close().await.unwrap();
    connector.drop_capture("vals").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_arrive_whole_from_a_writer_in_another_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (path, connector) = setup(&dir);
    sql(
        &path,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, txn INTEGER, v TEXT)",
    );
    let req = request(&connector, "txns", &["t"]).await;
    connector.create_capture(&req).await.unwrap();
    let mut stream = connector.open_capture(&req).await.unwrap();
    let writer_path = path.clone();
    let writer = std::thread::spawn(move || {
        let mut conn = rusqlite::Connection::open(&writer_path).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        for txn in 0..60i64 {
            let tx = conn.transaction().unwrap();
            for i in 0..7i64 {
                tx.execute("INSERT INTO t VALUES (?1, ?2, 'v')", [txn * 100 + i, txn])
                    .unwrap();
            }
            if txn % 3 == 0 {
                tx.execute("UPDATE t SET v = 'w' WHERE txn = ?1", [txn])
                    .unwrap();
            }
            tx.commit().unwrap();
            std::thread::sleep(Duration::from_millis(3));
        }
    });
    let mut seen = Seen::default();
    follow(&mut stream, &mut seen, |s| {
        s.changes().filter(|c| c.op == ChangeOp::Insert).count() >= 420
    })
    .await;
    writer.join().unwrap();
    assert!(
        seen.commits.len() > 1,
        "several polls: {}",
        seen.commits.len()
    );
    // No source transaction is split between two committed groups.
    let mut last_seq = 0;
    for (seq, changes) in &seen.commits {
        assert!(*seq > last_seq, "commits in order");
        last_seq = *seq;
        let mut per_txn: std::collections::BTreeMap<i64, usize> = Default::default();
        for c in changes {
            *per_txn
                .entry(int(&c.after.as_ref().unwrap()[1]))
                .or_default() += 1;
        }
        for (txn, n) in per_txn {
            let whole = if txn % 3 == 0 { 14 } else { 7 };
            assert_eq!(
                n, whole,
                "transaction {txn} arrived whole within one commit"
            );
        }
    }
    stream.close().await.unwrap();
    connector.drop_capture("txns").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_after_the_ack_and_acknowledged_changes_are_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let (path, connector) = setup(&dir);
    sql(&path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    let req = request(&connector, "restart", &["t"]).await;
    connector.create_capture(&req).await.unwrap();
    let mut stream = connector.open_capture(&req).await.unwrap();
    sql(&path, "INSERT INTO t VALUES (1, 'a'), (2, 'b')");
    let mut seen = Seen::default();
    follow(&mut stream, &mut seen, |s| !s.commits.is_empty()).await;
    let first = seen.commits[0].0;
    sql(&path, "INSERT INTO t VALUES (3, 'c')");
    follow(&mut stream, &mut seen, |s| s.commits.len() >= 2).await;
    let second = seen.commits[1].0;
    stream.ack(&Position::Sequence { seq: first }).unwrap();
    // Trimming happens in the background within about a second.
    let changes = format!("SELECT count(*) FROM sluice_changes_restart WHERE seq <= {first}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count(&path, &changes) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "acknowledged changes trimmed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count(&path, "SELECT count(*) FROM sluice_changes_restart"),
        1,
        "the unacknowledged change stays"
    );
    let lag = connector.capture_lag("restart").await.unwrap().unwrap();
    assert!(lag.bytes > 0 && lag.active, "{lag:?}");
    stream.close().await.unwrap();

    // Written while no stream runs.
    sql(&path, "INSERT INTO t VALUES (4, 'd')");
    let mut stream = connector.open_capture(&req).await.unwrap();
    let mut again = Seen::default();
    follow(&mut stream, &mut again, |s| s.commits.len() >= 2).await;
    // The unacknowledged transaction comes again as the same transaction, then the new one.
    assert_eq!(again.commits[0].0, second);
    assert_eq!(again.commits[0].1, seen.commits[1].1);
    let ids: Vec<i64> = again
        .changes()
        .map(|c| int(&c.after.as_ref().unwrap()[0]))
        .collect();
    assert_eq!(
        ids,
        vec![3, 4],
        "nothing lost, nothing acknowledged repeated"
    );
    stream
        .ack(&Position::Sequence {
            seq: again.commits[1].0,
        })
        .unwrap();
    stream.close().await.unwrap();
    assert_eq!(
        count(&path, "SELECT count(*) FROM sluice_changes_restart"),
        0,
        "a clean close trims what was acknowledged"
    );
    let stream = connector.open_capture(&req).await.unwrap();
    let mut stream = stream;
    let mut idle = Seen::default();
    follow(&mut stream, &mut idle, |s| !s.idle.is_empty()).await;
    assert!(
        idle.commits.is_empty(),
        "nothing is sent again after the last ack"
    );
    assert_eq!(idle.idle[0], again.commits[1].0);
    assert_eq!(
        connector.current_position().await.unwrap(),
        Position::Sequence {
            seq: again.commits[1].0
        }
    );
    stream.close().await.unwrap();
    connector.drop_capture("restart").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_column_is_announced_and_its_values_captured() {
    let dir = tempfile::tempdir().unwrap();
    let (path, connector) = setup(&dir);
    sql(&path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
    let req = request(&connector, "addcol", &["t"]).await;
    connector.create_capture(&req).await.unwrap();
    let mut stream = connector.open_capture(&req).await.unwrap();
    sql(&path, "INSERT INTO t VALUES (1, 'a')");
    let mut seen = Seen::default();
    follow(&mut stream, &mut seen, |s| !s.commits.is_empty()).await;
    // The column and a row using it in one transaction, before the reader saw the change.
    sql(
        &path,
        "BEGIN; ALTER TABLE t ADD COLUMN extra INTEGER; INSERT INTO t VALUES (2, 'b', 20); COMMIT;",
    );
    follow(&mut stream, &mut seen, |s| s.changes().count() >= 2).await;
    assert_eq!(seen.relations.len(), 2, "{:?}", seen.relations);
    assert_eq!(seen.relations[1].1, vec!["id", "v", "extra"]);
    let second = seen.changes().nth(1).unwrap();
    assert_eq!(
        second.after.as_ref().unwrap(),
        &vec![Value::Int64(2), Value::Text("b".into()), Value::Int64(20)]
    );
    // The triggers write the new column from now on.
    sql(
        &path,
        "INSERT INTO t VALUES (3, 'c', 30); UPDATE t SET extra = 31 WHERE id = 3",
    );
    follow(&mut stream, &mut seen, |s| s.changes().count() >= 4).await;
    let last = seen.changes().last().unwrap();
    assert_eq!(last.after.as_ref().unwrap()[2], Value::Int64(31));
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM sluice_changes_addcol WHERE new LIKE '%,31'"
        ),
        1,
        "the re-created trigger writes the added column"
    );
    stream.close().await.unwrap();
    connector.drop_capture("addcol").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initial_snapshot_and_the_stream_meet_exactly_while_another_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, connector) = setup(&dir);
    sql(
        &path,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER); INSERT INTO t VALUES (0, 0);",
    );
    // A writer in another process: the sqlite3 shell inserting one row per statement.
    let script: String = (1..=400)
        .map(|i| format!("INSERT INTO t VALUES ({i}, {i});\n"))
        .collect();
    let script_path = dir.path().join("writes.sql");
    std::fs::write(&script_path, format!(".timeout 10000\n{script}")).unwrap();
    sql(&path, "PRAGMA journal_mode = WAL");
    let mut writer = std::process::Command::new("sqlite3")
        .arg(&path)
        .stdin(std::fs::File::open(&script_path).unwrap())
        .spawn()
        .expect("the sqlite3 shell runs");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let req = request(&connector, "meet", &["t"]).await;
    let start = connector.create_capture(&req).await.unwrap();
    let snapshot = start.snapshot.unwrap();
    let mut stream = connector.open_capture(&req).await.unwrap();
    // Read the snapshot after more writes happened: it still sees the start.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let schema = connector.table_schema(&table("t")).await.unwrap().unwrap();
    let loaded = connector
        .read_shared(
            ReadRequest {
                table: table("t"),
                columns: schema.columns,
                key: vec![0],
                ordered: true,
                filter: None,
                lower_bound: None,
                key_range: None,
                limits: BatchLimits::DEFAULT,
            },
            snapshot.as_ref(),
        )
        .await
        .unwrap();
    let mut ids: Vec<i64> = Vec::new();
    for batch in loaded.batches.collect::<Vec<_>>().await {
        ids.extend(batch.unwrap().rows().map(|r| int(&r[0])));
    }
    drop(snapshot);
    assert!(writer.wait().unwrap().success());
    let mut seen = Seen::default();
    let loaded_count = ids.len();
    follow(&mut stream, &mut seen, move |s| {
        s.changes().count() + loaded_count >= 401
    })
    .await;
    ids.extend(seen.changes().map(|c| int(&c.after.as_ref().unwrap()[0])));
    assert_eq!(
        ids,
        (0..=400).collect::<Vec<_>>(),
        "each row once, in order"
    );
    stream.close().await.unwrap();
    connector.drop_capture("meet").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_everything_at_once_and_drop_removes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (path, connector) = setup(&dir);
    sql(
        &path,
        "CREATE TABLE keyed (id INTEGER PRIMARY KEY, v TEXT);
         CREATE TABLE nokey (v TEXT);
         CREATE TRIGGER mine AFTER INSERT ON keyed BEGIN SELECT 1; END;",
    );
    let before = count(&path, "SELECT count(*) FROM sqlite_master");
    let mut bad = request(&connector, "checks", &["keyed", "nokey"]).await;
    bad.tables.push(CaptureTable {
        table: table("missing"),
        columns: Vec::new(),
    });
    bad.name = "Bad Name".into();
    let error = connector.check_capture(&bad).await.unwrap_err().to_string();
    for part in [
        "capture name",
        "nokey has no primary key",
        "missing does not exist",
    ] {
        assert!(error.contains(part), "{part} in {error}");
    }
    assert!(connector.create_capture(&bad).await.is_err());
    assert_eq!(
        count(&path, "SELECT count(*) FROM sqlite_master"),
        before,
        "nothing changed"
    );

    let req = request(&connector, "gone", &["keyed"]).await;
    assert!(!connector.capture_exists("gone").await.unwrap());
    connector.create_capture(&req).await.unwrap();
    assert!(connector.capture_exists("gone").await.unwrap());
    assert!(connector.capabilities().capture);
    // Creating again replaces it.
    connector.create_capture(&req).await.unwrap();
    connector.drop_capture("gone").await.unwrap();
    assert!(!connector.capture_exists("gone").await.unwrap());
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'sluice%'"
        ),
        0,
        "triggers and tables removed"
    );
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM sqlite_master WHERE name = 'mine'"
        ),
        1,
        "the table's own trigger stays"
    );
    connector.drop_capture("gone").await.unwrap();
    assert_eq!(connector.capture_lag("gone").await.unwrap(), None);
}

/// A file in rollback-journal mode that other connections keep writing: switching it to WAL
/// needs a moment with no other lock, which SQLite does not wait for (it answers "database is
/// locked" at once rather than risk a deadlock), so creation keeps trying until one comes.
/// Eight files in turn: without the retry about one creation in five failed here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_switches_to_wal_while_other_connections_write() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..8 {
        let path = dir.path().join(format!("busy{round}.db"));
        let connector = SqliteConnector::new(SqliteConfig::new(&path));
        sql(
            &path,
            "PRAGMA journal_mode = DELETE; CREATE TABLE busy (id INTEGER PRIMARY KEY, v TEXT);",
        );
        let req = request(&connector, "busy", &["busy"]).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (path, stop) = (path.clone(), stop.clone());
                std::thread::spawn(move || {
                    let conn = rusqlite::Connection::open(&path).unwrap();
                    conn.busy_timeout(Duration::from_secs(10)).unwrap();
                    let mut i = 0_i64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        conn.execute(
                            "INSERT INTO busy (id, v) VALUES (?1, 'x')",
                            [w * 1_000_000 + i],
                        )
                        .unwrap();
                        i += 1;
                        // About a thousand transactions a second from each writer: a busy
                        // application, which still leaves moments with no lock held.
                        std::thread::sleep(Duration::from_micros(500));
                    }
                    i
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let created = connector.create_capture(&req).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written: i64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        created.unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(written > 0, "the writers wrote while the capture was made");
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
