#![allow(clippy::unwrap_used)]
//! Change capture by logical replication against the real test server (which needs
//! `wal_level = logical`; `scripts/services` sets it). Every test works in a fresh database of
//! its own with a capture named uniquely; the fixture drops the capture's slot and the database
//! even when the test fails.

mod common;

use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use sluice_connector::kit::{col, read_request, table};
use sluice_connector::{
    CaptureRequest, CaptureTable, ChangeReader, ChangeStream, Connector, ErrorKind, SnapshotReader,
};
use sluice_model::{BatchLimits, CaptureMessage, ChangeOp, DataType, Position, Value};
use sluice_postgres::{CaptureOptions, PostgresConfig, PostgresConnector};
use tokio_postgres::{Client, NoTls};

/// A fresh database with a connector to it, a client for writes behind the connector, and a
/// capture name; drops the database's slots and the database when dropped.
struct Db {
    name: String,
    connector: PostgresConnector,
    client: Client,
    capture: String,
}

async fn client_of(config: &PostgresConfig) -> Client {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .user(&config.user)
        .dbname(&config.database)
        .application_name("sluice-test-writer");
    if let Some(password) = &config.password {
        pg.password(password.as_bytes());
    }
    let (client, connection) = pg.connect(NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

impl Db {
    async fn new() -> Db {
        let admin = common::admin().await;
        let level: String = admin.query_one("SHOW wal_level", &[]).await.unwrap().get(0);
        assert_eq!(
            level, "logical",
            "the test server needs wal_level = logical (run scripts/services)"
        );
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..16];
        let name = format!("sluice_cap_{suffix}");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut props = common::props("public");
        props.insert("Database_Name".into(), name.clone());
        props.insert("Database_Sslmode".into(), "disable".into());
        let config = PostgresConfig::from_props(&props).unwrap();
        let client = client_of(&config).await;
        Db {
            name,
            connector: PostgresConnector::new(config),
            client,
            capture: format!("cap_{suffix}"),
        }
    }

    fn reader(&self) -> &dyn ChangeReader {
        self.connector.change_reader().unwrap()
    }

    async fn sql(&self, sql: &str) {
        self.client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A request for `tables` of the public schema, with the columns the catalog has now.
    async fn request(&self, tables: &[&str]) -> CaptureRequest {
        let mut out = Vec::new();
        for name in tables {
            let t = table(name);
            let schema = self
                .connector
                .introspector()
                .unwrap()
                .table_schema(&t)
                .await
                .unwrap()
                .unwrap();
            out.push(CaptureTable {
                table: t,
                columns: schema.columns,
            });
        }
        CaptureRequest {
            name: self.capture.clone(),
            tables: out,
        }
    }

    async fn confirmed_flush(&self) -> u64 {
        let row = self
            .client
            .query_one(
                "SELECT pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.capture],
            )
            .await
            .unwrap();
        row.get::<_, i64>(0) as u64
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let admin = common::admin().await;
                for _ in 0..100 {
                    let _ = admin
                        .execute(
                            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                             WHERE database = $1 AND active_pid IS NOT NULL",
                            &[&name],
                        )
                        .await;
                    let left = admin
                        .query(
                            "SELECT slot_name::text, active FROM pg_replication_slots \
                             WHERE database = $1",
                            &[&name],
                        )
                        .await
                        .map(|rows| {
                            rows.iter()
                                .map(|r| (r.get::<_, String>(0), r.get::<_, bool>(1)))
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default();
                    if left.is_empty() {
                        break;
                    }
                    for (slot, active) in left {
                        if !active {
                            let _ = admin
                                .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                                .await;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

fn lsn(p: &Position) -> u64 {
    match p {
        Position::Lsn { lsn } => *lsn,
        other => panic!("{other} is not an LSN"),
    }
}

/// Reads messages (leaving out Idle) until `commits` transactions committed.
async fn until_commits(stream: &mut dyn ChangeStream, commits: usize) -> Vec<CaptureMessage> {
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < commits {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("a message within 30 s")
            .unwrap();
        match message {
            CaptureMessage::Idle { .. } => continue,
            CaptureMessage::Commit { .. } => seen += 1,
            _ => {}
        }
        out.push(message);
    }
    out
}

/// The changes of the messages, in order.
fn changes(messages: &[CaptureMessage]) -> Vec<sluice_model::RowChange> {
    messages
        .iter()
        .filter_map(|m| match m {
            CaptureMessage::Changes { changes, .. } => Some(changes.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn int(i: i32) -> Value {
    Value::Int32(i)
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_tables_without_a_key_and_changes_nothing() {
    let db = Db::new().await;
    db.sql(
        "CREATE TABLE keyed (id int PRIMARY KEY, v text); \
         CREATE TABLE loose (id int, v text); \
         CREATE TABLE blind (id int PRIMARY KEY); ALTER TABLE blind REPLICA IDENTITY NOTHING; \
         CREATE TABLE whole (id int, v text); ALTER TABLE whole REPLICA IDENTITY FULL;",
    )
    .await;
    let good = db.request(&["keyed", "whole"]).await;
    db.reader().check_capture(&good).await.unwrap();

    let bad = db.request(&["keyed", "loose", "blind", "whole"]).await;
    let err = db.reader().check_capture(&bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Schema, "{err}");
    let message = err.to_string();
    assert!(message.contains("table loose"), "{message}");
    assert!(message.contains("table blind"), "{message}");
    assert!(
        message.contains("ALTER TABLE \"public\".\"loose\" REPLICA IDENTITY FULL"),
        "{message}"
    );
    assert!(message.contains("primary key"), "{message}");
    assert!(!message.contains("keyed"), "{message}");
    assert!(!message.contains("whole"), "{message}");

    // create refuses as well, and nothing was made.
    let err = db.reader().create_capture(&bad).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Schema, "{err}");
    assert!(!db.reader().capture_exists(&db.capture).await.unwrap());
    let publications: i64 = db
        .client
        .query_one("SELECT count(*) FROM pg_publication", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(publications, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_updates_deletes_and_truncates_arrive_by_transaction() {
    let db = Db::new().await;
    db.sql(
        "CREATE TABLE t (id int PRIMARY KEY, name text, amount numeric(10,2), at timestamptz); \
         CREATE TABLE other (id int PRIMARY KEY)",
    )
    .await;
    let request = db.request(&["t"]).await;
    let start = db.reader().create_capture(&request).await.unwrap();
    drop(start.snapshot);
    let mut stream = db.reader().open_capture(&request).await.unwrap();
    let before = Utc::now() - chrono::Duration::seconds(1);
    db.sql(
        "BEGIN; INSERT INTO t VALUES (1, 'one', 1.50, '2024-05-06 07:08:09+00'), (2, 'two', NULL, NULL); \
         INSERT INTO other VALUES (1); COMMIT",
    )
    .await;
    db.sql("BEGIN; UPDATE t SET name = 'uno' WHERE id = 1; DELETE FROM t WHERE id = 2; COMMIT")
        .await;
    db.sql("UPDATE t SET id = 10 WHERE id = 1").await;
    db.sql("TRUNCATE t").await;
    let messages = until_commits(stream.as_mut(), 4).await;
    let after = Utc::now() + chrono::Duration::seconds(1);

    // The relation comes first, with its key.
    match &messages[0] {
        CaptureMessage::Relation {
            table: t,
            columns,
            key,
        } => {
            assert_eq!(t, &table("t"));
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["id", "name", "amount", "at"]);
            assert_eq!(columns[0].data_type, DataType::Int32);
            assert_eq!(columns[1].data_type, DataType::Text);
            assert_eq!(
                columns[2].data_type,
                DataType::Decimal {
                    precision: 10,
                    scale: 2
                }
            );
            assert_eq!(columns[3].data_type, DataType::TimestampTz);
            assert!(!columns[0].nullable && columns[1].nullable);
            assert_eq!(columns[2].native_type.as_deref(), Some("numeric(10,2)"));
            assert_eq!(key, &vec![0]);
        }
        other => panic!("expected the relation first, got {other:?}"),
    }
    // Transactions: commit positions increase, parts and commits agree.
    let mut commits = Vec::new();
    let mut last_commit = 0;
    for m in &messages {
        match m {
            CaptureMessage::Changes {
                transaction,
                first_index,
                ..
            } => {
                assert_eq!(*first_index, 0);
                assert!(lsn(&transaction.commit) > last_commit);
            }
            CaptureMessage::Commit {
                transaction,
                ack,
                change_count,
            } => {
                assert!(lsn(&transaction.commit) > last_commit);
                assert!(lsn(ack) > lsn(&transaction.commit));
                last_commit = lsn(&transaction.commit);
                assert!(transaction.commit_time >= before && transaction.commit_time <= after);
                commits.push(*change_count);
            }
            _ => {}
        }
    }
    assert_eq!(commits, [2, 2, 1, 1]);
    let all = changes(&messages);
    let ops: Vec<ChangeOp> = all.iter().map(|c| c.op).collect();
    use ChangeOp::*;
    assert_eq!(ops, [Insert, Insert, Update, Delete, Update, Truncate]);
    assert!(all.iter().all(|c| c.table == table("t")));
    let ts = chrono::DateTime::parse_from_rfc3339("2024-05-06T07:08:09Z")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(
        all[0].after.as_ref().unwrap(),
        &vec![
            int(1),
            text("one"),
            Value::Decimal(sluice_model::Decimal::parse("1.50").unwrap()),
            Value::TimestampTz(ts)
        ]
    );
    assert_eq!(
        all[1].after.as_ref().unwrap(),
        &vec![int(2), text("two"), Value::Null, Value::Null]
    );
    // A plain update sends no old row.
    assert_eq!(all[2].before, None);
    assert_eq!(all[2].after.as_ref().unwrap()[1], text("uno"));
    // A delete sends the key.
    assert!(all[3].before_is_key);
    assert_eq!(
        all[3].before.as_ref().unwrap(),
        &vec![int(2), Value::Null, Value::Null, Value::Null]
    );
    assert_eq!(all[3].after, None);
    // A key change sends the old key.
    assert!(all[4].before_is_key);
    assert_eq!(all[4].before.as_ref().unwrap()[0], int(1));
    assert_eq!(all[4].after.as_ref().unwrap()[0], int(10));
    // A truncate is one change of the table without images.
    assert_eq!(all[5].before, None);
    assert_eq!(all[5].after, None);
    stream.close().await.unwrap();
    db.reader().drop_capture(&db.capture).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_identity_full_sends_whole_old_rows() {
    let db = Db::new().await;
    db.sql(
        "CREATE TABLE f (id int, v text); ALTER TABLE f REPLICA IDENTITY FULL; \
         INSERT INTO f VALUES (1, 'a')",
    )
    .await;
    let request = db.request(&["f"]).await;
    db.reader().create_capture(&request).await.unwrap();
    let mut stream = db.reader().open_capture(&request).await.unwrap();
    db.sql("UPDATE f SET v = 'b' WHERE id = 1").await;
    db.sql("DELETE FROM f WHERE id = 1").await;
    let messages = until_commits(stream.as_mut(), 2).await;
    match &messages[0] {
        CaptureMessage::Relation { key, columns, .. } => {
            assert_eq!(key, &vec![0, 1]);
            assert!(columns.iter().all(|c| c.nullable), "{columns:?}");
        }
        other => panic!("expected the relation first, got {other:?}"),
    }
    let all = changes(&messages);
    assert_eq!(all[0].op, ChangeOp::Update);
    assert!(!all[0].before_is_key);
    assert_eq!(all[0].before.as_ref().unwrap(), &vec![int(1), text("a")]);
    assert_eq!(all[0].after.as_ref().unwrap(), &vec![int(1), text("b")]);
    assert_eq!(all[1].op, ChangeOp::Delete);
    assert!(!all[1].before_is_key);
    assert_eq!(all[1].before.as_ref().unwrap(), &vec![int(1), text("b")]);
    stream.close().await.unwrap();
    db.reader().drop_capture(&db.capture).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_toast_values_are_marked_never_invented() {
    let db = Db::new().await;
    db.sql("CREATE TABLE doc (id int PRIMARY KEY, body text, n int)")
        .await;
    let request = db.request(&["doc"]).await;
    db.reader().create_capture(&request).await.unwrap();
    let mut stream = db.reader().open_capture(&request).await.unwrap();
    // About 20 KB of random hex: stored out of line (TOAST) even compressed.
    db.sql(
        "INSERT INTO doc SELECT 1, string_agg(md5(random()::text), '') , 1 \
         FROM generate_series(1, 640)",
    )
    .await;
    db.sql("UPDATE doc SET n = 2 WHERE id = 1").await;
    let body: String = db
        .client
        .query_one("SELECT body FROM doc WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert!(body.len() > 8192);
    let messages = until_commits(stream.as_mut(), 2).await;
    let all = changes(&messages);
    assert_eq!(all[0].op, ChangeOp::Insert);
    assert_eq!(all[0].after.as_ref().unwrap()[1], Value::Text(body));
    assert!(all[0].unchanged.is_empty());
    assert_eq!(all[1].op, ChangeOp::Update);
    assert_eq!(all[1].unchanged, vec![1]);
    assert_eq!(
        all[1].after.as_ref().unwrap(),
        &vec![int(1), Value::Null, int(2)]
    );
    stream.close().await.unwrap();
    db.reader().drop_capture(&db.capture).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_transaction_arrives_in_numbered_parts() {
    let db = Db::new().await;
    db.sql("CREATE TABLE big (id int PRIMARY KEY, v text)")
        .await;
    let request = db.request(&["big"]).await;
    db.reader().create_capture(&request).await.unwrap();
    let mut stream = db.reader().open_capture(&request).await.unwrap();
    db.sql("INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, 50000) g")
        .await;
    let started = std::time::Instant::now();
    let mut parts = 0;
    let mut next_index = 0u64;
    let mut largest = 0;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .unwrap()
            .unwrap();
        match message {
            CaptureMessage::Changes {
                first_index,
                changes,
                ..
            } => {
                assert_eq!(first_index, next_index, "parts are consecutive");
                for (i, c) in changes.iter().enumerate() {
                    let id = first_index as i32 + i as i32 + 1;
                    assert_eq!(c.after.as_ref().unwrap()[0], int(id));
                }
                next_index += changes.len() as u64;
                largest = largest.max(changes.len());
                parts += 1;
            }
            CaptureMessage::Commit { change_count, .. } => {
                assert_eq!(change_count, 50_000);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(next_index, 50_000);
    eprintln!(
        "50,000 changes of one transaction read in {:?} ({} parts)",
        started.elapsed(),
        parts
    );
    assert!(parts >= 10, "{parts} parts");
    assert!(largest <= 5_000, "a part of {largest} changes");
    stream.close().await.unwrap();
    db.reader().drop_capture(&db.capture).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_transactions_are_not_sent_again() {
    let db = Db::new().await;
    db.sql("CREATE TABLE a (id int PRIMARY KEY)").await;
    let request = db.request(&["a"]).await;
    db.reader().create_capture(&request).await.unwrap();
    let mut stream = db.reader().open_capture(&request).await.unwrap();
    db.sql("INSERT INTO a VALUES (1)").await;
    db.sql("INSERT INTO a VALUES (2)").await;
    let messages = until_commits(stream.as_mut(), 2).await;
    let commits: Vec<(u64, u64)> = messages
        .iter()
        .filter_map(|m| match m {
            CaptureMessage::Commit {
                transaction, ack, ..
            } => Some((lsn(&transaction.commit), lsn(ack))),
            _ => None,
        })
        .collect();
    assert_eq!(commits.len(), 2);
    // Only the first is acknowledged; wait until the server has it.
    stream.ack(&Position::Lsn { lsn: commits[0].1 }).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while db.confirmed_flush().await < commits[0].1 {
        assert!(tokio::time::Instant::now() < deadline, "ack not confirmed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(db.confirmed_flush().await < commits[1].1);
    stream.close().await.unwrap();

    let mut stream = db.reader().open_capture(&request).await.unwrap();
    let messages = until_commits(stream.as_mut(), 1).await;
    let again = changes(&messages);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].after.as_ref().unwrap(), &vec![int(2)]);
    match messages.last().unwrap() {
        CaptureMessage::Commit { transaction, .. } => {
            assert_eq!(lsn(&transaction.commit), commits[1].0)
        }
        other => panic!("{other:?}"),
    }
    // The relation is announced again in the new session.
    assert!(matches!(messages[0], CaptureMessage::Relation { .. }));
    stream.close().await.unwrap();
    db.reader().drop_capture(&db.capture).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_column_is_announced_before_the_next_change() {
    let db = Db::new().await;
    db.sql("CREATE TABLE s (id int PRIMARY KEY, v text)").await;
    let request = db.request(&["s"]).await;
    db.reader().create_capture(&request).await.unwrap();
    let mut stream = db.reader().open_capture(&request).await.unwrap();
    db.sql("INSERT INTO s VALUES (1, 'a')").await;
    db.sql("ALTER TABLE s ADD COLUMN extra bigint").await;
    db.sql("INSERT INTO s VALUES (2, 'b', 7)").await;
    db.sql("UPDATE s SET v = 'c' WHERE id = 2").await;
    let messages = until_commits(stream.as_mut(), 3).await;
    let shape: Vec<String> = messages
        .iter()
        .map(|m| match m {
            CaptureMessage::Relation { columns, .. } => format!("relation {}", columns.len()),
            CaptureMessage::Changes { changes, .. } => format!("changes {}", changes.len()),
            CaptureMessage::Commit { .. } => "commit".into(),
            CaptureMessage::Idle { .. } => "idle".into(),
        })
        .collect();
    assert_eq!(
        shape,
        [
            "relation 2",
            "changes 1",
            "commit",
            "relation 3",
            "changes 1",
            "commit",
            "changes 1",
            "commit"
        ]
    );
    match &messages[3] {
        CaptureMessage::Relation { columns, .. } => {
            assert_eq!(columns[2].name.as_str(), "extra");
            assert_eq!(columns[2].data_type, DataType::Int64);
        }
        other => panic!("{other:?}"),
    }
    let all = changes(&messages);
    assert_eq!(
        all[1].after.as_ref().unwrap(),
        &vec![int(2), text("b"), Value::Int64(7)]
    );
    stream.close().await.unwrap();
    db.reader().drop_capture(&db.capture).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_sends_idle_and_acks_advance_the_slot() {
    let db = Db::new().await;
    db.sql("CREATE TABLE quiet (id int PRIMARY KEY); CREATE TABLE busy (id int PRIMARY KEY)")
        .await;
    let request = db.request(&["quiet"]).await;
    let start = db.reader().create_capture(&request).await.unwrap();
    let created = lsn(&start.position);
    drop(start.snapshot);
    let options = CaptureOptions {
        idle_interval: Duration::from_millis(300),
        heartbeat_interval: Duration::from_millis(800),
        ..CaptureOptions::default()
    };
    let mut stream = db
        .connector
        .open_capture_with(&request, options)
        .await
        .unwrap();
    // Writes to a table outside the capture only move the log.
    db.sql("INSERT INTO busy SELECT generate_series(1, 100)")
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut idles = 0;
    let position = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no idle position past the start"
        );
        match tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("idle within 5 s")
            .unwrap()
        {
            CaptureMessage::Idle { position, .. } => {
                idles += 1;
                if lsn(&position) > created {
                    break lsn(&position);
                }
            }
            other => panic!("an idle stream sent {other:?}"),
        }
    };
    assert!(idles >= 1);
    let lag = db.reader().capture_lag(&db.capture).await.unwrap().unwrap();
    assert!(lag.active);
    assert!(db.confirmed_flush().await < position);
    stream.ack(&Position::Lsn { lsn: position }).unwrap();
    // Keep reading (as a caller would) until the server confirms it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while db.confirmed_flush().await < position {
        assert!(tokio::time::Instant::now() < deadline, "ack not confirmed");
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
    }
    Box::new(stream).close().await.unwrap();
    let lag = db.reader().capture_lag(&db.capture).await.unwrap().unwrap();
    assert!(!lag.active || lag.bytes < 1 << 20);
    db.reader().drop_capture(&db.capture).await.unwrap();
    assert_eq!(db.reader().capture_lag(&db.capture).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_capture_leaves_no_slot_and_no_publication() {
    let db = Db::new().await;
    db.sql("CREATE TABLE d (id int PRIMARY KEY)").await;
    let request = db.request(&["d"]).await;
    // Creating twice starts over.
    db.reader().create_capture(&request).await.unwrap();
    db.reader().create_capture(&request).await.unwrap();
    assert!(db.reader().capture_exists(&db.capture).await.unwrap());
    // Dropping ends a stream reading it.
    let stream = db.reader().open_capture(&request).await.unwrap();
    db.reader().drop_capture(&db.capture).await.unwrap();
    assert!(!db.reader().capture_exists(&db.capture).await.unwrap());
    let slots: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&db.capture],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0);
    let publications: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pg_publication WHERE pubname = $1",
            &[&db.capture],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(publications, 0);
    // Nothing there is fine.
    db.reader().drop_capture(&db.capture).await.unwrap();
    let _ = stream.close().await;
    let err = db.reader().open_capture(&request).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_snapshot_is_the_slot_point() {
    let db = Db::new().await;
    db.sql("CREATE TABLE h (id int PRIMARY KEY, v text); INSERT INTO h VALUES (1, 'a'), (2, 'b')")
        .await;
    let request = db.request(&["h"]).await;
    let start = db.reader().create_capture(&request).await.unwrap();
    let snapshot = start.snapshot.expect("a slot exports its snapshot");
    db.sql("INSERT INTO h VALUES (3, 'c'); UPDATE h SET v = 'z' WHERE id = 1")
        .await;
    let read = read_request(
        table("h"),
        vec![
            col("id", DataType::Int32, false),
            col("v", DataType::Text, true),
        ],
        BatchLimits::rows(100),
    );
    let snap = db
        .connector
        .read_shared(read, snapshot.as_ref())
        .await
        .unwrap();
    let mut rows = Vec::new();
    let mut batches = snap.batches;
    while let Some(batch) = batches.next().await {
        let batch = batch.unwrap();
        for i in 0..batch.len() {
            rows.push(batch.row(i).to_vec());
        }
    }
    assert_eq!(
        rows,
        vec![vec![int(1), text("a")], vec![int(2), text("b")]],
        "the snapshot is the slot's point"
    );
    drop(snapshot);
    let mut stream = db.reader().open_capture(&request).await.unwrap();
    let messages = until_commits(stream.as_mut(), 1).await;
    let all = changes(&messages);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].after.as_ref().unwrap(), &vec![int(3), text("c")]);
    assert_eq!(all[1].after.as_ref().unwrap(), &vec![int(1), text("z")]);
    match &messages.last().unwrap() {
        CaptureMessage::Commit { transaction, .. } => {
            assert!(lsn(&transaction.commit) > lsn(&start.position))
        }
        other => panic!("{other:?}"),
    }
    stream.close().await.unwrap();
    db.reader().drop_capture(&db.capture).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_the_capture_does_not_cover_is_refused_at_open() {
    let db = Db::new().await;
    db.sql("CREATE TABLE one (id int PRIMARY KEY); CREATE TABLE two (id int PRIMARY KEY)")
        .await;
    db.reader()
        .create_capture(&db.request(&["one"]).await)
        .await
        .unwrap();
    let wider = db.request(&["one", "two"]).await;
    let err = db.reader().open_capture(&wider).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Schema, "{err}");
    assert!(err.to_string().contains("table two"), "{err}");
    db.reader().drop_capture(&db.capture).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_keeps_its_session() {
    let db = Db::new().await;
    db.sql("CREATE TABLE slow (id int PRIMARY KEY, v text)")
        .await;
    let request = db.request(&["slow"]).await;
    db.reader().create_capture(&request).await.unwrap();
    // The server gives up on a silent receiver after one second; the stream is not read for
    // four, with more changes waiting than its buffer holds.
    let options = CaptureOptions {
        wal_sender_timeout: Some(Duration::from_secs(1)),
        status_interval: Duration::from_millis(200),
        ..CaptureOptions::default()
    };
    let mut stream = db
        .connector
        .open_capture_with(&request, options)
        .await
        .unwrap();
    db.sql("INSERT INTO slow SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g")
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let pid_before: Option<i32> = db
        .client
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&db.capture],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        pid_before.is_some(),
        "the session was dropped while the reader was slow"
    );
    let messages = until_commits(&mut stream, 1).await;
    assert_eq!(changes(&messages).len(), 20_000);
    let pid_after: Option<i32> = db
        .client
        .query_one(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&db.capture],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pid_before, pid_after, "the same session read everything");
    Box::new(stream).close().await.unwrap();
    db.reader().drop_capture(&db.capture).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_written_when_nothing_arrives_and_come_back_as_idle() {
    let db = Db::new().await;
    db.sql("CREATE TABLE calm (id int PRIMARY KEY)").await;
    let request = db.request(&["calm"]).await;
    db.reader().create_capture(&request).await.unwrap();
    // A second slot (test_decoding) shows what reaches the log.
    let probe = format!("{}_probe", db.capture);
    db.client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
            &[&probe],
        )
        .await
        .unwrap();
    let options = CaptureOptions {
        idle_interval: Duration::from_millis(200),
        heartbeat_interval: Duration::from_millis(300),
        ..CaptureOptions::default()
    };
    let mut stream = db
        .connector
        .open_capture_with(&request, options)
        .await
        .unwrap();
    let mut idle = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < until {
        match tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap()
        {
            CaptureMessage::Idle { position, .. } => idle.push(lsn(&position)),
            other => panic!("an idle stream sent {other:?}"),
        }
    }
    let rows = db
        .client
        .query(
            "SELECT pg_wal_lsn_diff(lsn, '0/0')::bigint FROM \
             pg_logical_slot_peek_changes($1, NULL, NULL) \
             WHERE data LIKE '%prefix: sluice_heartbeat%'",
            &[&probe],
        )
        .await
        .unwrap();
    let beats: Vec<u64> = rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect();
    assert!(!beats.is_empty(), "no heartbeat reached the log");
    let first = beats[0];
    assert!(
        idle.iter().any(|&p| p >= first),
        "no idle position reached the heartbeat at {first}: {idle:?}"
    );
    Box::new(stream).close().await.unwrap();
    db.reader().drop_capture(&db.capture).await.unwrap();
}
