#![allow(clippy::unwrap_used)]
//! Change capture from the real test server's binary log: transactions, every column type the
//! snapshot reader carries equal to a snapshot read, restart at the acknowledged position,
//! MINIMAL row images, schema changes, a purged log, refusals and drop.

mod support;

use std::time::Duration;

use mysql_async::prelude::Queryable;
use sluice_connector::kit::table;
use sluice_connector::{
    CaptureRequest, CaptureTable, ChangeReader, ChangeStream, Connector, ErrorKind, Introspector,
    ReadRequest, SnapshotReader,
};
use sluice_mariadb::MariadbConnector;
use sluice_model::{BatchLimits, CaptureMessage, ChangeOp, Position, RowChange, Value};

async fn conn(database: &str) -> mysql_async::Conn {
    let c = support::config(database);
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(c.host)
        .tcp_port(c.port)
        .user(Some(c.user))
        .pass(c.password)
        .db_name(Some(database))
        .prefer_socket(false)
        .init(vec!["SET time_zone = '+00:00'"]);
    mysql_async::Conn::new(opts).await.unwrap()
}

async fn request(c: &MariadbConnector, name: &str, tables: &[&str]) -> CaptureRequest {
    let mut out = Vec::new();
    for t in tables {
        let schema = c.table_schema(&table(t)).await.unwrap().unwrap();
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

/// Messages up to and including the `commits`-th commit (Idle messages left out).
async fn until_commits(stream: &mut dyn ChangeStream, commits: usize) -> Vec<CaptureMessage> {
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < commits {
        let m = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("a message within 30 s")
            .unwrap();
        match &m {
            CaptureMessage::Idle { .. } => continue,
            CaptureMessage::Commit { .. } => seen += 1,
            _ => {}
        }
        out.push(m);
    }
    out
}

fn changes(messages: &[CaptureMessage]) -> Vec<RowChange> {
    messages
        .iter()
        .flat_map(|m| match m {
            CaptureMessage::Changes { changes, .. } => changes.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn acks(messages: &[CaptureMessage]) -> Vec<Position> {
    messages
        .iter()
        .filter_map(|m| match m {
            CaptureMessage::Commit { ack, .. } => Some(ack.clone()),
            _ => None,
        })
        .collect()
}

const ALL_TYPES: &str = "CREATE TABLE all_types (\
    id INT PRIMARY KEY, b TINYINT(1), ti TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, \
    iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, f FLOAT, d DOUBLE, de DECIMAL(12,3), \
    c CHAR(5), vc VARCHAR(20), t TEXT, j JSON, vb VARBINARY(10), bl BLOB, dt DATE, tm TIME(6), \
    dtm DATETIME(6), ts TIMESTAMP(6) NULL, u BINARY(16) COMMENT 'sluice:uuid')";

const ROW_A: &str = "(1, 1, 200, -32768, -8388608, 4294967295, -9223372036854775808, \
    18446744073709551615, 1.5, -2.25e300, -123456789.125, 'ab', 'héllo ✓', 'long text', \
    '{\"a\": [1, 2]}', X'00FF10', X'DEADBEEF', '2024-02-29', '23:59:59.999999', \
    '1000-01-01 00:00:00.000001', '2038-01-19 03:14:07.999999', \
    X'0123456789ABCDEF0123456789ABCD00')";
const ROW_B: &str = "(2, 0, 0, 32767, 8388607, 0, 9223372036854775807, 0, -0.0, 0.1, 0.000, \
    '', '', '', 'null', X'', X'', '9999-12-31', '00:00:00', '9999-12-31 23:59:59.999999', \
    '1970-01-01 00:00:01', X'00000000000000000000000000000000')";
const ROW_NULLS: &str = "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)";

async fn read_all(c: &MariadbConnector, t: &str) -> Vec<Vec<Value>> {
    let schema = c.table_schema(&table(t)).await.unwrap().unwrap();
    let request = ReadRequest {
        table: table(t),
        columns: schema.columns,
        key: vec![0],
        ordered: true,
        filter: None,
        lower_bound: None,
        key_range: None,
        limits: BatchLimits::default(),
    };
    sluice_connector::kit::read_rows(c, request).await.0
}

#[tokio::test]
async fn captured_values_equal_a_snapshot_read_and_transactions_keep_their_bounds() {
    support::with_database(|c, db| async move {
        let mut sql = conn(&db).await;
        sql.query_drop(ALL_TYPES).await.unwrap();
        sql.query_drop(format!("INSERT INTO all_types VALUES {ROW_NULLS}"))
            .await
            .unwrap();
        let req = request(&c, "cap_types", &["all_types"]).await;
        c.check_capture(&req).await.unwrap();
        let start = c.create_capture(&req).await.unwrap();
        assert!(c.capture_exists("cap_types").await.unwrap());
        // Changes after the capture's start; the held snapshot must not see them.
        sql.query_drop(format!(
            "START TRANSACTION; INSERT INTO all_types VALUES {ROW_A}, {ROW_B}; COMMIT"
        ))
        .await
        .unwrap();
        let schema = c.table_schema(&table("all_types")).await.unwrap().unwrap();
        let snapshot = start.snapshot.expect("a held snapshot");
        let read = ReadRequest {
            table: table("all_types"),
            columns: schema.columns.clone(),
            key: vec![0],
            ordered: true,
            filter: None,
            lower_bound: None,
            key_range: None,
            limits: BatchLimits::default(),
        };
        let mut held = c.read_shared(read, snapshot.as_ref()).await.unwrap();
        let mut at_start = Vec::new();
        while let Some(batch) = futures::StreamExt::next(&mut held.batches).await {
            at_start.extend(batch.unwrap().rows().map(|r| r.to_vec()));
        }
        assert_eq!(at_start.len(), 1, "the snapshot is the capture's start");
        drop(snapshot);

        sql.query_drop(
            "START TRANSACTION; UPDATE all_types SET vc = 'changed', ti = 255 WHERE id = 2; \
             DELETE FROM all_types WHERE id = 3; COMMIT",
        )
        .await
        .unwrap();
        let after_update = read_all(&c, "all_types").await;
        sql.query_drop("TRUNCATE TABLE all_types").await.unwrap();

        let mut stream = c.open_capture(&req).await.unwrap();
        let messages = until_commits(stream.as_mut(), 3).await;
        assert!(
            matches!(&messages[0], CaptureMessage::Relation { columns, key, .. }
                if columns.len() == 22 && key == &vec![0]),
            "{:?}",
            messages[0]
        );
        let all = changes(&messages);
        let ops: Vec<ChangeOp> = all.iter().map(|c| c.op).collect();
        assert_eq!(
            ops,
            vec![
                ChangeOp::Insert,
                ChangeOp::Insert,
                ChangeOp::Update,
                ChangeOp::Delete,
                ChangeOp::Truncate
            ]
        );
        // Every captured value equals what a snapshot read gives for the same row.
        let full = read_all(&c, "all_types").await;
        assert!(full.is_empty());
        assert_eq!(all[2].after.as_ref().unwrap(), &after_update[1]);
        assert_eq!(all[2].before.as_ref().unwrap()[0], Value::Int32(2));
        assert!(!all[2].before_is_key);
        assert_eq!(all[0].after.as_ref().unwrap()[0], Value::Int32(1));
        assert_eq!(all[3].before.as_ref().unwrap()[0], Value::Int32(3));
        // Row A as inserted equals row A as read (only row 2 changed and row 3 went).
        assert_eq!(all[0].after.as_ref().unwrap(), &after_update[0]);
        // Three transactions, in order, each with its own commit position.
        let commits: Vec<(Position, u64)> = messages
            .iter()
            .filter_map(|m| match m {
                CaptureMessage::Commit {
                    transaction,
                    change_count,
                    ..
                } => Some((transaction.commit.clone(), *change_count)),
                _ => None,
            })
            .collect();
        assert_eq!(
            commits.iter().map(|c| c.1).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        let a = acks(&messages);
        assert_eq!(
            a[0].cmp_same(&a[1]),
            Some(std::cmp::Ordering::Less),
            "{a:?}"
        );
        stream.close().await.unwrap();
        c.drop_capture("cap_types").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_restarted_capture_resumes_at_the_acknowledged_position() {
    support::with_database(|c, db| async move {
        let mut sql = conn(&db).await;
        sql.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))")
            .await
            .unwrap();
        let req = request(&c, "cap_restart", &["t"]).await;
        c.create_capture(&req).await.unwrap();
        for i in 1..=3 {
            sql.query_drop(format!("INSERT INTO t VALUES ({i}, 'v{i}')"))
                .await
                .unwrap();
        }
        let mut stream = c.open_capture(&req).await.unwrap();
        let first = until_commits(stream.as_mut(), 2).await;
        // Only the first transaction is acknowledged.
        stream.ack(&acks(&first)[0]).unwrap();
        stream.close().await.unwrap();
        let stored: (String, u64, String) = sql
            .query_first("SELECT file, pos, gtid FROM sluice_capture WHERE name = 'cap_restart'")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            Position::Binlog {
                file: stored.0,
                offset: stored.1
            },
            acks(&first)[0]
        );
        let parts: Vec<&str> = stored.2.split('-').collect();
        assert!(
            parts.len() == 3 && parts.iter().all(|p| p.parse::<u64>().is_ok()),
            "a GTID is stored alongside: {:?}",
            stored.2
        );
        let lag = c.capture_lag("cap_restart").await.unwrap().unwrap();
        assert!(lag.bytes > 0, "{lag:?}");

        let mut again = c.open_capture(&req).await.unwrap();
        let second = until_commits(again.as_mut(), 2).await;
        let ids: Vec<Value> = changes(&second)
            .iter()
            .map(|ch| ch.after.as_ref().unwrap()[0].clone())
            .collect();
        assert_eq!(ids, vec![Value::Int32(2), Value::Int32(3)]);
        again.ack(&acks(&second)[1]).unwrap();
        again.close().await.unwrap();
        let current = c.current_position().await.unwrap();
        assert!(matches!(current, Position::Binlog { .. }));
        c.drop_capture("cap_restart").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn minimal_row_images_update_only_the_logged_columns() {
    support::with_database(|c, db| async move {
        let mut sql = conn(&db).await;
        sql.query_drop("CREATE TABLE m (id INT PRIMARY KEY, a INT, b TEXT)")
            .await
            .unwrap();
        let req = request(&c, "cap_minimal", &["m"]).await;
        c.create_capture(&req).await.unwrap();
        sql.query_drop(
            "SET SESSION binlog_row_image = 'MINIMAL'; INSERT INTO m VALUES (1, 2, 'x'); \
             UPDATE m SET a = 5 WHERE id = 1; DELETE FROM m WHERE id = 1",
        )
        .await
        .unwrap();
        let mut stream = c.open_capture(&req).await.unwrap();
        let all = changes(&until_commits(stream.as_mut(), 3).await);
        assert_eq!(all.len(), 3);
        let update = &all[1];
        assert!(update.before_is_key);
        assert_eq!(
            update.after.as_ref().unwrap(),
            &vec![Value::Int32(1), Value::Int32(5), Value::Null]
        );
        assert_eq!(update.unchanged, vec![2]);
        assert_eq!(all[2].before.as_ref().unwrap()[0], Value::Int32(1));
        assert!(all[2].before_is_key);
        stream.close().await.unwrap();
        c.drop_capture("cap_minimal").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_added_column_is_announced_again() {
    support::with_database(|c, db| async move {
        let mut sql = conn(&db).await;
        sql.query_drop("CREATE TABLE s (id INT PRIMARY KEY, a INT)")
            .await
            .unwrap();
        let req = request(&c, "cap_schema", &["s"]).await;
        c.create_capture(&req).await.unwrap();
        let mut stream = c.open_capture(&req).await.unwrap();
        sql.query_drop("INSERT INTO s VALUES (1, 1)").await.unwrap();
        let first = until_commits(stream.as_mut(), 1).await;
        assert!(
            matches!(&first[0], CaptureMessage::Relation { columns, .. } if columns.len() == 2)
        );
        sql.query_drop("ALTER TABLE s ADD COLUMN extra VARCHAR(5)")
            .await
            .unwrap();
        sql.query_drop("INSERT INTO s VALUES (2, 2, 'new')")
            .await
            .unwrap();
        let second = until_commits(stream.as_mut(), 1).await;
        assert!(
            matches!(&second[0], CaptureMessage::Relation { columns, .. }
                if columns.len() == 3 && columns[2].name.as_str() == "extra"),
            "{second:?}"
        );
        assert_eq!(
            changes(&second)[0].after.as_ref().unwrap()[2],
            Value::Text("new".into())
        );
        stream.close().await.unwrap();
        c.drop_capture("cap_schema").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_purged_start_position_says_to_activate_again() {
    support::with_database(|c, db| async move {
        let mut sql = conn(&db).await;
        sql.query_drop("CREATE TABLE p (id INT PRIMARY KEY)")
            .await
            .unwrap();
        let req = request(&c, "cap_purged", &["p"]).await;
        c.create_capture(&req).await.unwrap();
        // A synthetic start in a binary log that is no longer there.
        sql.query_drop(
            "UPDATE sluice_capture SET file = 'mysql-bin.000000', pos = 4 \
             WHERE name = 'cap_purged'",
        )
        .await
        .unwrap();
        let error = c.open_capture(&req).await.err().unwrap();
        assert_eq!(error.kind(), ErrorKind::NotFound);
        let text = error.to_string();
        assert!(
            text.contains("purged") && text.contains("refresh"),
            "{text}"
        );
        c.drop_capture("cap_purged").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn check_names_every_problem_and_changes_nothing() {
    support::with_database(|c, db| async move {
        let mut sql = conn(&db).await;
        sql.query_drop("CREATE TABLE nokey (a INT NOT NULL, b INT)")
            .await
            .unwrap();
        sql.query_drop("CREATE TABLE nat (id INT PRIMARY KEY, u UUID)")
            .await
            .unwrap();
        let mut req = request(&c, "cap_check", &["nokey", "nat"]).await;
        req.name = "Bad-Name".into();
        let error = c.check_capture(&req).await.err().unwrap();
        assert_eq!(error.kind(), ErrorKind::Schema);
        let text = error.to_string();
        for needle in [
            "Bad-Name",
            "table nokey has no primary key",
            "ADD PRIMARY KEY (`a`)",
            "column u has MariaDB's own uuid type",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert!(c.create_capture(&req).await.is_err());
        let tables: Vec<String> = sql.query("SHOW TABLES").await.unwrap();
        assert_eq!(tables.len(), 2, "nothing created: {tables:?}");
    })
    .await;
}

#[tokio::test]
async fn drop_removes_everything_create_made() {
    support::with_database(|c, db| async move {
        let mut sql = conn(&db).await;
        sql.query_drop("CREATE TABLE d (id INT PRIMARY KEY)")
            .await
            .unwrap();
        let a = request(&c, "cap_a", &["d"]).await;
        let b = request(&c, "cap_b", &["d"]).await;
        c.create_capture(&a).await.unwrap();
        c.create_capture(&b).await.unwrap();
        c.drop_capture("cap_a").await.unwrap();
        assert!(!c.capture_exists("cap_a").await.unwrap());
        assert!(c.capture_exists("cap_b").await.unwrap());
        c.drop_capture("cap_b").await.unwrap();
        c.drop_capture("cap_b").await.unwrap();
        assert!(c.capture_lag("cap_b").await.unwrap().is_none());
        let tables: Vec<String> = sql.query("SHOW TABLES").await.unwrap();
        assert_eq!(tables, vec!["d".to_owned()]);
        assert!(c.capabilities().capture);
    })
    .await;
}
