//! SQLite-specific behaviour beyond the conformance kit.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;

use sluice_connector::kit::{self, col, table, write_request};
use sluice_connector::{Connector, ErrorKind, WriteStrategy};
use sluice_model::{BatchLimits, DataType, Decimal, RowBatch, Value};
use sluice_sqlite::{SqliteConfig, SqliteConnector};

fn sql(path: &std::path::Path, script: &str) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(script)
        .unwrap();
}

fn query_strings(path: &std::path::Path, query: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn.prepare(query).unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_swap_keeps_indexes_triggers_constraints_and_views() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    sql(
        &path,
        r#"CREATE TABLE "orders" (id INTEGER PRIMARY KEY, note TEXT CHECK (length(note) < 100), qty INT NOT NULL DEFAULT 1);
           CREATE INDEX orders_note ON "orders"(note);
           CREATE TABLE audit (msg TEXT);
           CREATE TRIGGER orders_audit AFTER DELETE ON "orders" BEGIN INSERT INTO audit VALUES ('deleted'); END;
           CREATE VIEW big_orders AS SELECT id FROM "orders" WHERE qty > 5;
           INSERT INTO "orders" VALUES (1, 'old', 9);"#,
    );
    let connector = SqliteConnector::new(SqliteConfig::new(&path));
    let columns = vec![
        col("id", DataType::Int64, false),
        col("note", DataType::Text, true),
        col("qty", DataType::Int32, false),
    ];
    let rows = vec![
        vec![Value::Int64(2), Value::Text("new".into()), Value::Int32(7)],
        vec![Value::Int64(3), Value::Null, Value::Int32(1)],
    ];
    kit::write_rows(
        &connector,
        write_request(table("orders"), columns, WriteStrategy::StagingSwap),
        &rows,
        BatchLimits::DEFAULT,
    )
    .await;

    assert_eq!(
        query_strings(&path, "SELECT CAST(id AS TEXT) FROM big_orders"),
        vec!["2"]
    );
    let objects = query_strings(
        &path,
        "SELECT type || ':' || name FROM sqlite_master ORDER BY 1",
    );
    assert_eq!(
        objects,
        vec![
            "index:orders_note",
            "table:audit",
            "table:orders",
            "trigger:orders_audit",
            "view:big_orders"
        ],
        "no staging table is left behind and dependent objects are back"
    );
    // The CHECK constraint came along with the table's own CREATE TABLE text.
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert!(
        conn.execute("INSERT INTO orders VALUES (9, ?1, 1)", [&"x".repeat(200)])
            .is_err()
    );
    // The trigger fires on the new table; the swap itself fired no delete trigger.
    assert_eq!(
        query_strings(&path, "SELECT count(*) || '' FROM audit"),
        vec!["0"]
    );
    conn.execute("DELETE FROM orders WHERE id = 3", []).unwrap();
    assert_eq!(
        query_strings(&path, "SELECT count(*) || '' FROM audit"),
        vec!["1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_swap_keeps_the_autoincrement_counter_and_never_drops_a_user_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    sql(
        &path,
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
         INSERT INTO t (v) VALUES ('a'), ('b'), ('c'); DELETE FROM t WHERE id = 3;",
    );
    let connector = SqliteConnector::new(SqliteConfig::new(&path));
    let columns = vec![
        col("id", DataType::Int64, false),
        col("v", DataType::Text, true),
    ];
    let rows = vec![vec![Value::Int64(1), Value::Text("a".into())]];
    kit::write_rows(
        &connector,
        write_request(table("t"), columns.clone(), WriteStrategy::StagingSwap),
        &rows,
        BatchLimits::DEFAULT,
    )
    .await;
    sql(&path, "INSERT INTO t (v) VALUES ('next');");
    assert_eq!(
        query_strings(&path, "SELECT CAST(max(id) AS TEXT) FROM t"),
        vec!["4"],
        "id 3 was used once and is not reused"
    );

    // A user's table that happens to have the staging name is refused, not dropped.
    sql(
        &path,
        "CREATE TABLE t__sluice_stage (keep TEXT); INSERT INTO t__sluice_stage VALUES ('mine');",
    );
    let error = match connector
        .batch_writer()
        .unwrap()
        .open(write_request(
            table("t"),
            columns,
            WriteStrategy::StagingSwap,
        ))
        .await
    {
        Ok(_) => panic!("staging_swap ran over a user's table"),
        Err(e) => e,
    };
    assert_eq!(error.kind(), ErrorKind::Schema);
    assert!(
        error.to_string().contains("t__sluice_stage exists"),
        "{error}"
    );
    assert_eq!(
        query_strings(&path, "SELECT keep FROM t__sluice_stage"),
        vec!["mine"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_target_is_an_auth_error_and_stays_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.db");
    sql(
        &path,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'kept');",
    );
    let target_path = if nix_is_root() {
        // Root can write any file; a `file:…?mode=ro` URI is refused by SQLite itself.
        format!("file:{}?mode=ro", path.display())
    } else {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        path.display().to_string()
    };
    let connector = SqliteConnector::new(SqliteConfig::new(target_path));
    let columns = vec![
        col("id", DataType::Int64, false),
        col("v", DataType::Text, true),
    ];
    let error = match connector
        .batch_writer()
        .unwrap()
        .open(write_request(
            table("t"),
            columns,
            WriteStrategy::TruncateLoad,
        ))
        .await
    {
        Ok(_) => panic!("opening a write on a read-only database succeeded"),
        Err(e) => e,
    };
    assert!(
        matches!(error.kind(), ErrorKind::Auth | ErrorKind::NotFound),
        "{error}"
    );
    assert_eq!(query_strings(&path, "SELECT v FROM t"), vec!["kept"]);
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decimal_too_wide_for_a_number_column_fails_naming_the_key_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.db");
    sql(
        &path,
        "CREATE TABLE prices (id INTEGER PRIMARY KEY, amount NUMERIC); INSERT INTO prices VALUES (1, 2.5);",
    );
    let connector = SqliteConnector::new(SqliteConfig::new(&path));
    let columns = vec![
        col("id", DataType::Int64, false),
        col("amount", DataType::Numeric, true),
    ];
    let mut writer = connector
        .batch_writer()
        .unwrap()
        .open(write_request(
            table("prices"),
            columns,
            WriteStrategy::TruncateLoad,
        ))
        .await
        .unwrap();
    let mut batch = RowBatch::new(2, BatchLimits::DEFAULT);
    batch
        .push_row([
            Value::Int64(7),
            Value::Decimal(Decimal::parse("1.5").unwrap()),
        ])
        .unwrap();
    batch
        .push_row([
            Value::Int64(8),
            Value::Decimal(Decimal::parse("12345678901234567890.5").unwrap()),
        ])
        .unwrap();
    writer.write_batch(batch).await.unwrap();
    let error = writer
        .commit()
        .await
        .expect_err("the wide decimal must be refused");
    assert_eq!(error.kind(), ErrorKind::Data);
    let text = error.to_string();
    assert!(text.contains("(id=8)") && text.contains("amount"), "{text}");
    assert_eq!(
        query_strings(&path, "SELECT CAST(amount AS TEXT) FROM prices"),
        vec!["2.5"]
    );
}

/// Upserts through a rowid key, a unique index that is not the primary key, and a key with no
/// index at all (delete and insert), twice over with the same result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrate_keys_of_every_kind() {
    use sluice_connector::{IntegrateBatch, IntegrateRequest, IntegrateTable, TableChanges};
    use sluice_model::{Checkpoint, Position};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    sql(
        &path,
        "CREATE TABLE rowid_key (id INTEGER PRIMARY KEY, v TEXT); \
         CREATE TABLE unique_key (id INTEGER NOT NULL, v TEXT); \
         CREATE UNIQUE INDEX unique_key_id ON unique_key (id); \
         CREATE TABLE no_key (id INTEGER NOT NULL, v TEXT); \
         INSERT INTO rowid_key VALUES (1, 'old'); \
         INSERT INTO unique_key VALUES (1, 'old'); \
         INSERT INTO no_key VALUES (1, 'old');",
    );
    let connector = SqliteConnector::new(SqliteConfig::new(&path));
    let names = ["rowid_key", "unique_key", "no_key"];
    let columns = vec![
        col("id", DataType::Int64, false),
        col("v", DataType::Text, true),
    ];
    let writer = connector.change_writer().unwrap();
    let mut applier = writer
        .open_integrate(IntegrateRequest {
            name: "keys".into(),
            tables: names
                .iter()
                .map(|n| IntegrateTable {
                    table: table(n),
                    columns: columns.clone(),
                    key: vec![0],
                })
                .collect(),
        })
        .await
        .unwrap();
    let upserts = || {
        let mut b = RowBatch::new(2, BatchLimits::rows(10));
        b.push_row([Value::Int64(1), Value::Text("new".into())])
            .unwrap();
        b.push_row([Value::Int64(2), Value::Text("two".into())])
            .unwrap();
        b
    };
    let batch = IntegrateBatch {
        tables: (0..names.len())
            .map(|i| TableChanges {
                table: i,
                truncate: false,
                deletes: RowBatch::new(1, BatchLimits::rows(1)),
                upserts: upserts(),
                updates: Vec::new(),
            })
            .collect(),
        checkpoint: Checkpoint::at(Position::Sequence { seq: 7 }),
    };
    applier.apply(&batch).await.unwrap();
    applier.apply(&batch).await.unwrap();
    for name in names {
        assert_eq!(
            query_strings(
                &path,
                &format!("SELECT id || ':' || v FROM {name} ORDER BY id")
            ),
            vec!["1:new".to_owned(), "2:two".to_owned()],
            "{name}"
        );
    }
    assert_eq!(
        writer.read_checkpoint("keys").await.unwrap(),
        Some(Checkpoint::at(Position::Sequence { seq: 7 }))
    );
}
