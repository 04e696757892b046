#![allow(clippy::unwrap_used)]
//! MariaDB-specific behaviour against the real test server: exact edge values on both write paths,
//! refused values, killed writers, leftover staging tables, native types, plans and speed.

mod support;

use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use sluice_connector::kit::{self, col, read_request, read_rows, table, write_request, write_rows};
use sluice_connector::{Connector, ErrorKind, PlannedStatement, WriteStrategy};
use sluice_mariadb::{MariadbConfig, MariadbConnector, PROPERTIES};
use sluice_model::{BatchLimits, DataType, Decimal, RowBatch, Value};

fn dec(s: &str) -> Value {
    Value::Decimal(Decimal::parse(s).unwrap())
}

async fn db_conn(database: &str) -> mysql_async::Conn {
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

fn edge_columns() -> Vec<sluice_model::ColumnDef> {
    vec![
        col("id", DataType::Int64, false),
        col(
            "d65",
            DataType::Decimal {
                precision: 65,
                scale: 30,
            },
            true,
        ),
        col("num", DataType::Numeric, true),
        col(
            "big",
            DataType::Decimal {
                precision: 80,
                scale: 20,
            },
            true,
        ),
        col("ts", DataType::Timestamp, true),
        col("tz", DataType::TimestampTz, true),
        col("j", DataType::Json, true),
        col("b", DataType::Bytes, true),
        col("t", DataType::Text, true),
        col("u", DataType::Uuid, true),
        col("f", DataType::Float32, true),
    ]
}

fn edge_rows() -> Vec<Vec<Value>> {
    let ts = NaiveDate::from_ymd_opt(2024, 2, 29)
        .unwrap()
        .and_hms_micro_opt(23, 59, 59, 999_999)
        .unwrap();
    vec![
        vec![
            Value::Int64(1),
            dec(&format!("{}.{}", "9".repeat(35), "9".repeat(30))),
            dec("1234567890123456789012345678901234567890"),
            dec(&format!("-{}.{}", "1".repeat(60), "5".repeat(20))),
            Value::Timestamp(ts),
            Value::TimestampTz(Utc.with_ymd_and_hms(2100, 12, 31, 23, 59, 58).unwrap()),
            Value::Json(r#"{"ключ":"値 😀","tab":"a\tb","n":[1,2.5,null]}"#.into()),
            Value::Bytes(b"\0\t\n\r\\N\\\x00\xff".to_vec()),
            Value::Text(String::new()),
            Value::Uuid(uuid::Uuid::from_u128(
                0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
            )),
            Value::Float32(f32::MAX),
        ],
        vec![
            Value::Int64(2),
            dec(&format!("-0.{}1", "0".repeat(29))),
            dec("-0.0000000000000000000000000000000000000001"),
            dec("0"),
            Value::Timestamp(
                NaiveDate::from_ymd_opt(1000, 1, 1)
                    .unwrap()
                    .and_hms_micro_opt(0, 0, 0, 1)
                    .unwrap(),
            ),
            Value::TimestampTz(Utc.timestamp_opt(-1, 1000).unwrap()),
            Value::Json("[]".into()),
            Value::Bytes(Vec::new()),
            Value::Text("\\N".into()),
            Value::Uuid(uuid::Uuid::max()),
            Value::Float32(-f32::MIN_POSITIVE),
        ],
        {
            let mut row = vec![Value::Int64(3)];
            row.extend(std::iter::repeat_n(Value::Null, 10));
            row
        },
    ]
}

async fn round_trip_edges(local_infile: bool) {
    support::with_database(|_, name| async move {
        let mut config = support::config(&name);
        config.local_infile = local_infile;
        let connector = MariadbConnector::new(config);
        let columns = edge_columns();
        let rows = edge_rows();
        let t = table("edges");
        write_rows(
            &connector,
            write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
            &rows,
            BatchLimits::rows(2),
        )
        .await;
        let (got, _) = read_rows(
            &connector,
            read_request(t.clone(), columns.clone(), BatchLimits::DEFAULT),
        )
        .await;
        kit::assert_rows_equal("edges", &columns, &got, &rows);
        // Empty text and NULL stay apart; the instant is stored as UTC.
        let mut conn = db_conn(&name).await;
        let (empty, null, tz): (i64, i64, String) = conn
            .query_first(
                "SELECT (SELECT count(*) FROM edges WHERE t = ''), \
                 (SELECT count(*) FROM edges WHERE t IS NULL), \
                 (SELECT CAST(tz AS CHAR) FROM edges WHERE id = 1)",
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!((empty, null), (1, 1));
        assert_eq!(tz, "2100-12-31 23:59:58.000000");
        let schema = connector
            .introspector()
            .unwrap()
            .table_schema(&t)
            .await
            .unwrap()
            .unwrap();
        let types: Vec<DataType> = schema.columns.iter().map(|c| c.data_type).collect();
        let want: Vec<DataType> = columns.iter().map(|c| c.data_type).collect();
        assert_eq!(types, want);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_values_round_trip_through_load_data() {
    round_trip_edges(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_values_round_trip_through_the_insert_fallback() {
    round_trip_edges(false).await;
}

/// A key of 0 written into an existing `AUTO_INCREMENT` column stays 0 on both write paths and
/// with every strategy: MariaDB's default would store the next counter value instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_key_in_an_auto_increment_column_stays_zero() {
    support::with_database(|_, name| async move {
        let columns = vec![
            col("id", DataType::Int64, false),
            col("v", DataType::Text, true),
        ];
        let rows = vec![
            vec![Value::Int64(0), Value::Text("zero".into())],
            vec![Value::Int64(5), Value::Text("five".into())],
        ];
        let mut conn = db_conn(&name).await;
        for (local_infile, strategy) in [
            (true, WriteStrategy::Append),
            (true, WriteStrategy::TruncateLoad),
            (false, WriteStrategy::Append),
            (false, WriteStrategy::TruncateLoad),
        ] {
            conn.query_drop("DROP TABLE IF EXISTS auto_zero")
                .await
                .unwrap();
            conn.query_drop(
                "CREATE TABLE auto_zero (id BIGINT AUTO_INCREMENT PRIMARY KEY, v TEXT)",
            )
            .await
            .unwrap();
            let mut config = support::config(&name);
            config.local_infile = local_infile;
            let connector = MariadbConnector::new(config);
            write_rows(
                &connector,
                write_request(table("auto_zero"), columns.clone(), strategy),
                &rows,
                BatchLimits::DEFAULT,
            )
            .await;
            let ids: Vec<i64> = conn
                .query("SELECT id FROM auto_zero ORDER BY id")
                .await
                .unwrap();
            assert_eq!(ids, vec![0, 5], "local_infile {local_infile}, {strategy:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_fallback_passes_the_write_checks() {
    support::with_database(|_, name| async move {
        let mut config = support::config(&name);
        config.local_infile = false;
        let connector = MariadbConnector::new(config);
        kit::idempotent_rerun(&connector).await;
        kit::upsert_and_delete(&connector).await;
        kit::filters(&connector).await;
        let plan = connector
            .batch_writer()
            .unwrap()
            .plan_write(&write_request(
                table("kit_filter"),
                vec![col("id", DataType::Int64, false)],
                WriteStrategy::Append,
            ))
            .await
            .unwrap();
        assert!(
            plan.iter().any(|s| s.sql.starts_with("INSERT INTO")),
            "{plan:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_values_name_column_and_key_and_change_nothing() {
    support::with_database(|connector, _| async move {
        let columns = vec![
            col("id", DataType::Int64, false),
            col("day", DataType::Date, true),
            col("code", DataType::Varchar(3), true),
            col(
                "amount",
                DataType::Decimal {
                    precision: 5,
                    scale: 2,
                },
                true,
            ),
        ];
        let t = table("refused");
        let before = vec![vec![
            Value::Int64(1),
            Value::Date(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()),
            Value::Text("abc".into()),
            dec("1.5"),
        ]];
        write_rows(
            &connector,
            write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
            &before,
            BatchLimits::DEFAULT,
        )
        .await;
        let bad_rows: Vec<(Value, &str, &str)> = vec![
            (
                Value::Date(NaiveDate::from_ymd_opt(999, 12, 31).unwrap()),
                "day",
                "year 999",
            ),
            (Value::Text("abcd".into()), "code", "longer than 3"),
            (dec("1.234"), "amount", "does not fit"),
        ];
        for strategy in [WriteStrategy::TruncateLoad, WriteStrategy::StagingSwap] {
            for (value, column, reason) in &bad_rows {
                let mut w = connector
                    .batch_writer()
                    .unwrap()
                    .open(write_request(t.clone(), columns.clone(), strategy))
                    .await
                    .unwrap();
                let mut batch = RowBatch::new(4, BatchLimits::DEFAULT);
                batch
                    .push_row([Value::Int64(7), Value::Null, Value::Null, Value::Null])
                    .unwrap();
                let mut row = vec![Value::Int64(42), Value::Null, Value::Null, Value::Null];
                let i = columns
                    .iter()
                    .position(|c| c.name.as_str() == *column)
                    .unwrap();
                row[i] = value.clone();
                batch.push_row(row).unwrap();
                let err = w.write_batch(batch).await.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Data, "{err}");
                let text = err.to_string();
                assert!(
                    text.contains(column) && text.contains("id=42") && text.contains(reason),
                    "{text}"
                );
                assert!(w.commit().await.is_err());
                let (got, _) = read_rows(
                    &connector,
                    read_request(t.clone(), columns.clone(), BatchLimits::DEFAULT),
                )
                .await;
                kit::assert_rows_equal("refused", &columns, &got, &before);
            }
        }
        let tables = connector
            .introspector()
            .unwrap()
            .list_tables(None)
            .await
            .unwrap();
        assert_eq!(tables, vec![t], "no staging table is left");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_text_keys_are_exact_or_refused() {
    support::with_database(|connector, _| async move {
        let columns = vec![
            col("k", DataType::Text, false),
            col("v", DataType::Int32, true),
        ];
        let t = table("text_keys");
        // Keys that a case-insensitive or pad-space collation would take for duplicates.
        let rows: Vec<Vec<Value>> = ["a", "A", "a ", "ä", &"x".repeat(768)]
            .iter()
            .enumerate()
            .map(|(i, k)| vec![Value::Text((*k).into()), Value::Int32(i as i32)])
            .collect();
        write_rows(
            &connector,
            write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
            &rows,
            BatchLimits::DEFAULT,
        )
        .await;
        let (got, _) = read_rows(
            &connector,
            read_request(t.clone(), columns.clone(), BatchLimits::DEFAULT),
        )
        .await;
        let mut want = rows.clone();
        want.sort_by(|a, b| a[0].cmp_key(&b[0]));
        kit::assert_rows_equal("text_keys", &columns, &got, &want);
        let mut w = connector
            .batch_writer()
            .unwrap()
            .open(write_request(
                t.clone(),
                columns.clone(),
                WriteStrategy::Append,
            ))
            .await
            .unwrap();
        let mut batch = RowBatch::new(2, BatchLimits::DEFAULT);
        batch
            .push_row([Value::Text("y".repeat(769)), Value::Null])
            .unwrap();
        let err = w.write_batch(batch).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Data, "{err}");
        assert!(err.to_string().contains("768"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_types_introspect_and_read_exactly() {
    support::with_database(|connector, name| async move {
        let mut conn = db_conn(&name).await;
        conn.query_drop(
            "CREATE TABLE native (id INT UNSIGNED PRIMARY KEY, flag BOOLEAN, small TINYINT, \
             big BIGINT UNSIGNED, at TIMESTAMP(3) NULL, doc JSON, uid UUID, \
             name VARCHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci)",
        )
        .await
        .unwrap();
        conn.query_drop(
            "INSERT INTO native VALUES (4294967295, TRUE, -128, 18446744073709551615, \
             '2024-05-06 07:08:09.123', '{\"a\": \"é\"}', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'Zoë'), \
             (1, FALSE, 127, 0, NULL, NULL, NULL, 'b')",
        )
        .await
        .unwrap();
        let schema = connector
            .introspector()
            .unwrap()
            .table_schema(&table("native"))
            .await
            .unwrap()
            .unwrap();
        let types: Vec<String> = schema
            .columns
            .iter()
            .map(|c| c.data_type.to_string())
            .collect();
        assert_eq!(
            types,
            [
                "int64",
                "bool",
                "int16",
                "decimal(20,0)",
                "timestamptz",
                "json",
                "uuid",
                "varchar(10)"
            ]
        );
        assert_eq!(schema.primary_key[0].as_str(), "id");
        assert_eq!(schema.columns[0].native_type.as_deref(), Some("int(10) unsigned"));
        let (got, _) = read_rows(
            &connector,
            read_request(table("native"), schema.columns.clone(), BatchLimits::DEFAULT),
        )
        .await;
        assert_eq!(got[1][0], Value::Int64(4_294_967_295));
        assert_eq!(got[1][3], dec("18446744073709551615"));
        assert_eq!(
            got[1][4],
            Value::TimestampTz(
                Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap()
                    + chrono::Duration::milliseconds(123)
            )
        );
        assert_eq!(got[1][6], Value::Uuid(uuid::Uuid::max()));
        assert_eq!(got[1][7], Value::Text("Zoë".into()));

        // Unmapped native types are named in the error.
        conn.query_drop("CREATE TABLE odd (id INT PRIMARY KEY, mood ENUM('sad','ok'))")
            .await
            .unwrap();
        let err = connector
            .introspector()
            .unwrap()
            .table_schema(&table("odd"))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("odd") && text.contains("mood") && text.contains("enum('sad','ok')"),
            "{text}"
        );

        // A zero date is refused on read, naming table, column and key.
        conn.query_drop("SET SESSION sql_mode = ''").await.unwrap();
        conn.query_drop("CREATE TABLE zero (id INT PRIMARY KEY, d DATE)")
            .await
            .unwrap();
        conn.query_drop("INSERT INTO zero VALUES (5, '0000-00-00')")
            .await
            .unwrap();
        let columns = vec![col("id", DataType::Int32, false), col("d", DataType::Date, true)];
        let snapshot = connector
            .snapshot_reader()
            .unwrap()
            .read(read_request(table("zero"), columns, BatchLimits::DEFAULT))
            .await
            .unwrap();
        let mut batches = snapshot.batches;
        let err = batches.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Data);
        let text = err.to_string();
        assert!(
            text.contains("zero") && text.contains("id=5") && text.contains("column d"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftover_staging_tables_are_recognised() {
    support::with_database(|connector, name| async move {
        let columns = vec![col("id", DataType::Int64, false)];
        let t = table("swap");
        let rows = vec![vec![Value::Int64(1)]];
        write_rows(
            &connector,
            write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
            &rows,
            BatchLimits::DEFAULT,
        )
        .await;
        let mut conn = db_conn(&name).await;
        // A leftover of a killed run carries the marker and is replaced.
        conn.query_drop("CREATE TABLE swap__sluice_stage (x INT) COMMENT 'sluice:stage'")
            .await
            .unwrap();
        write_rows(
            &connector,
            write_request(t.clone(), columns.clone(), WriteStrategy::StagingSwap),
            &rows,
            BatchLimits::DEFAULT,
        )
        .await;
        // A table of the same name without the marker is never touched.
        conn.query_drop("CREATE TABLE swap__sluice_stage (x INT) COMMENT 'mine'")
            .await
            .unwrap();
        let err = match connector
            .batch_writer()
            .unwrap()
            .open(write_request(t.clone(), columns.clone(), WriteStrategy::StagingSwap))
            .await
        {
            Ok(_) => panic!("a staging swap used a table it does not own"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), ErrorKind::Schema, "{err}");
        let still: Option<String> = conn
            .query_first("SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'swap__sluice_stage'")
            .await
            .unwrap();
        assert_eq!(still.as_deref(), Some("mine"));
    })
    .await;
}

/// The connection id of the session running a `LOAD DATA` into `db`.
async fn find_loader(admin: &mut mysql_async::Conn, db: &str) -> u64 {
    for _ in 0..100 {
        let id: Option<u64> = admin
            .exec_first(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND INFO LIKE 'LOAD DATA%'",
                (db,),
            )
            .await
            .unwrap();
        if let Some(id) = id {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no LOAD DATA session found in {db}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_leave_the_target_unchanged() {
    support::with_database(|connector, name| async move {
        let columns = vec![
            col("id", DataType::Int64, false),
            col("v", DataType::Text, true),
        ];
        let before: Vec<Vec<Value>> = (0..1000)
            .map(|i| vec![Value::Int64(i), Value::Text("old".into())])
            .collect();
        let mut admin = support::admin().await;
        for strategy in [WriteStrategy::TruncateLoad, WriteStrategy::StagingSwap] {
            let t = table(&format!("killed_{}", strategy.as_str()));
            write_rows(
                &connector,
                write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
                &before,
                BatchLimits::DEFAULT,
            )
            .await;
            let mut w = connector
                .batch_writer()
                .unwrap()
                .open(write_request(t.clone(), columns.clone(), strategy))
                .await
                .unwrap();
            let batch = |from: i64| {
                let mut b = RowBatch::new(2, BatchLimits::DEFAULT);
                for i in from..from + 10_000 {
                    b.push_row([Value::Int64(i), Value::Text("new ".repeat(30))])
                        .unwrap();
                }
                b
            };
            for n in 0..5 {
                w.write_batch(batch(n * 10_000)).await.unwrap();
            }
            let id = find_loader(&mut admin, &name).await;
            admin
                .query_drop(format!("KILL CONNECTION {id}"))
                .await
                .unwrap();
            // Writing on may or may not notice the kill; committing must.
            let mut failed = false;
            for n in 5..8 {
                if w.write_batch(batch(n * 10_000)).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if !failed {
                let err = w.commit().await.unwrap_err();
                assert!(
                    matches!(err.kind(), ErrorKind::Connection | ErrorKind::Cancelled),
                    "{err}"
                );
            }
            let (got, _) = read_rows(
                &connector,
                read_request(t.clone(), columns.clone(), BatchLimits::DEFAULT),
            )
            .await;
            kit::assert_rows_equal(&t.to_string(), &columns, &got, &before);
            // The next write of the same table works (a leftover stage is cleared).
            write_rows(
                &connector,
                write_request(t.clone(), columns.clone(), strategy),
                &before[..10],
                BatchLimits::DEFAULT,
            )
            .await;
            let (got, _) = read_rows(
                &connector,
                read_request(t.clone(), columns.clone(), BatchLimits::DEFAULT),
            )
            .await;
            kit::assert_rows_equal(&t.to_string(), &columns, &got, &before[..10]);
        }
        let tables: Vec<String> = connector
            .introspector()
            .unwrap()
            .list_tables(None)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(tables, ["killed_staging_swap", "killed_truncate_load"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_show_exactly_the_statements_run() {
    support::with_database(|connector, name| async move {
        let columns = vec![
            col("id", DataType::Int64, false),
            col("at", DataType::TimestampTz, true),
        ];
        let t = table("planned");
        let writer = connector.batch_writer().unwrap();
        let create = writer
            .plan_write(&write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad))
            .await
            .unwrap();
        let q = format!("`{name}`.`planned`");
        let load = format!(
            "LOAD DATA LOCAL INFILE 'sluice' INTO TABLE {q} CHARACTER SET binary \
             FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (`id`, `at`)"
        );
        // An unfiltered truncate_load takes the staging swap's lock (it swaps when the table
        // exists and allows it).
        assert!(create[0].sql.starts_with("SELECT GET_LOCK('sluice:"), "{create:?}");
        assert!(create[create.len() - 1].sql.starts_with("SELECT RELEASE_LOCK('sluice:"));
        // A missing table is created as a marked stage, loaded, and renamed: it appears whole.
        let stage = format!("`{name}`.`planned__sluice_stage`");
        assert_eq!(
            create[1..create.len() - 1],
            [
                PlannedStatement::once(format!(
                    "CREATE TABLE {stage} (`id` BIGINT NOT NULL, `at` DATETIME(6) NULL COMMENT \
                     'sluice:timestamptz', PRIMARY KEY (`id`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 \
                     COLLATE=utf8mb4_nopad_bin COMMENT='sluice:stage'"
                )),
                PlannedStatement::once(load.replace(&q, &stage)),
                PlannedStatement::once(format!(
                    "ALTER TABLE {stage} COMMENT = '', RENAME TO {q}"
                )),
            ]
        );
        write_rows(
            &connector,
            write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
            &[],
            BatchLimits::DEFAULT,
        )
        .await;
        let new = format!("`{name}`.`planned__sluice_new`");
        let old = format!("`{name}`.`planned__sluice_old`");
        let stage_load = load.replace(&q, &stage);
        // The whole existing table: truncate_load swaps in a loaded copy.
        let whole = writer
            .plan_write(&write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad))
            .await
            .unwrap();
        let sql: Vec<&str> = whole.iter().map(|s| s.sql.as_str()).collect();
        // Two sessions (the default) load side by side, each committing its own share.
        assert_eq!(sql[1..], [
            format!("CREATE TABLE {new} LIKE {q}").as_str(),
            &format!("ALTER TABLE {new} COMMENT = 'sluice:stage', RENAME TO {stage}"),
            &stage_load,
            &format!("ALTER TABLE {stage} COMMENT = '', RENAME TO {new}"),
            &format!("RENAME TABLE {q} TO {old}, {new} TO {q}"),
            &format!("DROP TABLE {old}"),
            sql[sql.len() - 1],
        ]);
        // With a filter it deletes the matching rows and loads.
        let mut request = write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad);
        request.filter = Some(sluice_model::Condition::new("`id` > 10").unwrap());
        let part = writer.plan_write(&request).await.unwrap();
        let sql: Vec<&str> = part.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(sql, [
            "START TRANSACTION",
            &format!("DELETE FROM {q} WHERE (`id` > 10)"),
            &load,
            "COMMIT",
        ]);
        let mut request = write_request(t.clone(), columns.clone(), WriteStrategy::StagingSwap);
        request.filter = Some(sluice_model::Condition::new("`id` > 10").unwrap());
        let swap = writer.plan_write(&request).await.unwrap();
        let sql: Vec<&str> = swap.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(sql[1..], [
            format!("CREATE TABLE {new} LIKE {q}").as_str(),
            &format!("ALTER TABLE {new} COMMENT = 'sluice:stage', RENAME TO {stage}"),
            &format!("INSERT INTO {stage} (`id`, `at`) SELECT `id`, `at` FROM {q} WHERE (`id` > 10) IS NOT TRUE"),
            &stage_load,
            &format!("ALTER TABLE {stage} COMMENT = '', RENAME TO {new}"),
            &format!("RENAME TABLE {q} TO {old}, {new} TO {q}"),
            &format!("DROP TABLE {old}"),
            sql[sql.len() - 1],
        ]);
        assert!(sql[0].starts_with("SELECT GET_LOCK('sluice:"), "{}", sql[0]);
        assert!(sql[sql.len() - 1].starts_with("SELECT RELEASE_LOCK('sluice:"));

        let mut read = read_request(t.clone(), columns.clone(), BatchLimits::DEFAULT);
        read.lower_bound = Some(sluice_connector::LowerBound {
            column: 1,
            value: Value::TimestampTz(Utc::now()),
            inclusive: false,
        });
        read.filter = Some(sluice_model::Condition::new("`id` > 10").unwrap());
        let plan = connector.snapshot_reader().unwrap().plan_read(&read).unwrap();
        let sql: Vec<&str> = plan.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            sql,
            [
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
                &format!("SELECT `id`, `at` FROM {q} WHERE (`id` > 10) AND `at` > ? ORDER BY `id`"),
                "COMMIT",
            ]
        );
        // Planning changed nothing.
        let tables = connector.introspector().unwrap().list_tables(None).await.unwrap();
        assert_eq!(tables, vec![t]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_reports_version_and_local_infile() {
    support::with_database(|connector, _| async move {
        let report = connector.test().await.unwrap();
        let props = report.discovered_props;
        assert!(props["Class_Version"].contains("MariaDB"), "{props:?}");
        assert_eq!(props["Class_Flavor"], "mariadb", "{props:?}");
        assert_eq!(props["Local_Infile"], "ON");
    })
    .await;
    let bad = MariadbConnector::new(support::config("no_such_database_for_sluice"));
    let err = bad.test().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().contains("/no_such_database_for_sluice"),
        "{err}"
    );
    let mut secret = support::config("mysql");
    secret.password = Some("not-the-password".into());
    secret.user = "sluice_no_such_user".into();
    let err = MariadbConnector::new(secret.clone())
        .test()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(!format!("{err} {err:?} {secret:?}").contains("not-the-password"));
    assert!(
        PROPERTIES
            .iter()
            .any(|p| p.name == "Database_Name" && p.required)
    );
    let props = [("Database_Name".to_owned(), "x".to_owned())].into();
    assert_eq!(MariadbConfig::from_props(&props).unwrap().port, 3306);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_read_stops_early() {
    support::with_database(|connector, _| async move {
        let columns = vec![col("id", DataType::Int64, false)];
        let rows: Vec<Vec<Value>> = (0..50_000).map(|i| vec![Value::Int64(i)]).collect();
        let t = table("abandoned");
        write_rows(
            &connector,
            write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
            &rows,
            BatchLimits::DEFAULT,
        )
        .await;
        let snapshot = connector
            .snapshot_reader()
            .unwrap()
            .read(read_request(
                t.clone(),
                columns.clone(),
                BatchLimits::rows(100),
            ))
            .await
            .unwrap();
        let mut batches = snapshot.batches;
        assert_eq!(batches.next().await.unwrap().unwrap().len(), 100);
        drop(batches);
        // The table can be replaced right away: the read holds no lock that blocks it.
        write_rows(
            &connector,
            write_request(t.clone(), columns.clone(), WriteStrategy::StagingSwap),
            &rows[..5],
            BatchLimits::DEFAULT,
        )
        .await;
        assert_eq!(
            connector
                .snapshot_reader()
                .unwrap()
                .count_rows(&t, None)
                .await
                .unwrap(),
            5
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speed() {
    support::with_database(|connector, _| async move {
        let columns = vec![
            col("id", DataType::Int64, false),
            col("n", DataType::Int32, true),
            col("name", DataType::Varchar(40), true),
            col("amount", DataType::Decimal { precision: 12, scale: 2 }, true),
            col("at", DataType::Timestamp, true),
        ];
        let n = 300_000i64;
        let at = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
        let rows: Vec<Vec<Value>> = (0..n)
            .map(|i| {
                vec![
                    Value::Int64(i),
                    Value::Int32((i % 1000) as i32),
                    Value::Text(format!("customer number {i}")),
                    dec(&format!("{}.{}", i % 100_000, i % 100)),
                    Value::Timestamp(at + chrono::Duration::seconds(i)),
                ]
            })
            .collect();
        let t = table("speed");
        let started = Instant::now();
        write_rows(
            &connector,
            write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
            &rows,
            BatchLimits::DEFAULT,
        )
        .await;
        let write = started.elapsed();
        let started = Instant::now();
        let mut request = read_request(t.clone(), columns.clone(), BatchLimits::DEFAULT);
        request.ordered = false;
        let (got, _) = read_rows(&connector, request).await;
        let read = started.elapsed();
        assert_eq!(got.len(), n as usize);
        println!(
            "mariadb speed: wrote {n} rows in {write:?} ({:.0} rows/s), read in {read:?} ({:.0} rows/s)",
            n as f64 / write.as_secs_f64(),
            n as f64 / read.as_secs_f64()
        );
    })
    .await;
}

/// Rows of content `version` of a swapped table: `1000 + version` rows, so every full content
/// has a row count of its own.
fn swap_rows(version: i64) -> Vec<Vec<Value>> {
    (0..1000 + version)
        .map(|i| vec![Value::Int64(i), Value::Int64(version)])
        .collect()
}

fn swap_columns() -> Vec<sluice_model::ColumnDef> {
    vec![
        col("id", DataType::Int64, false),
        col("version", DataType::Int64, false),
    ]
}

/// The MariaDB error code of a failed statement, 0 for errors that are not the server's.
fn server_code(error: &mysql_async::Error) -> u16 {
    match error {
        mysql_async::Error::Server(e) => e.code,
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_miss_the_target_during_staging_swaps() {
    support::with_database(|connector, name| async move {
        let t = table("polled");
        write_rows(
            &connector,
            write_request(t.clone(), swap_columns(), WriteStrategy::TruncateLoad),
            &swap_rows(0),
            BatchLimits::DEFAULT,
        )
        .await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            let mut conn = db_conn(&name).await;
            tokio::spawn(async move {
                let mut counts = std::collections::BTreeSet::new();
                let mut errors = Vec::new();
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match conn
                        .query_first::<i64, _>("SELECT COUNT(*) FROM polled")
                        .await
                    {
                        Ok(Some(n)) => {
                            reads += 1;
                            counts.insert(n);
                        }
                        Ok(None) => errors.push("no row".to_owned()),
                        Err(e) => errors.push(format!("{} ({e})", server_code(&e))),
                    }
                }
                (reads, counts, errors)
            })
        };
        let swaps = 40i64;
        for version in 1..=swaps {
            write_rows(
                &connector,
                write_request(t.clone(), swap_columns(), WriteStrategy::StagingSwap),
                &swap_rows(version),
                BatchLimits::DEFAULT,
            )
            .await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (reads, counts, errors) = reader.await.unwrap();
        println!(
            "staging swaps: {swaps}, reads: {reads}, contents seen: {}, errors: {}",
            counts.len(),
            errors.len()
        );
        assert!(
            errors.is_empty(),
            "{} reads failed, first: {:?}",
            errors.len(),
            &errors[..errors.len().min(3)]
        );
        // Every read saw one full content, and the reader ran across the swaps.
        assert!(
            counts.iter().all(|n| (1000..=1000 + swaps).contains(n)),
            "{counts:?}"
        );
        assert!(
            counts.len() >= 10,
            "the reader saw too few swaps: {counts:?}"
        );
    })
    .await;
}

/// Every table and view of `db` with its comment, by name (names compared exactly).
async fn catalog(conn: &mut mysql_async::Conn, db: &str) -> Vec<(String, String)> {
    conn.exec(
        "SELECT TABLE_NAME, TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
         ORDER BY BINARY TABLE_NAME",
        (db,),
    )
    .await
    .unwrap()
}

/// `(row count, least version, greatest version)` of a swapped table.
async fn versions(conn: &mut mysql_async::Conn, sql_table: &str) -> (i64, i64, i64) {
    conn.query_first(format!(
        "SELECT COUNT(*), COALESCE(MIN(version), -1), COALESCE(MAX(version), -1) FROM {sql_table}"
    ))
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_interrupted_swaps_are_cleared_by_the_next_write() {
    support::with_database(|connector, name| async move {
        support::with_database(|_, other| async move {
            let columns = swap_columns();
            let t = table("lefty");
            let mut conn = db_conn(&name).await;
            let mut foreign = db_conn(&other).await;
            write_rows(
                &connector,
                write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
                &swap_rows(1),
                BatchLimits::DEFAULT,
            )
            .await;
            // Look-alikes that are not lefty's leftovers: the same names in another database (there
            // in the state "target missing, old present"), and near names next to lefty.
            for sql in [
                "CREATE TABLE lefty__sluice_stage (x INT) COMMENT 'sluice:stage'",
                "CREATE TABLE lefty__sluice_new (x INT)",
                "CREATE TABLE lefty__sluice_old (x INT)",
                "INSERT INTO lefty__sluice_old VALUES (1)",
            ] {
                foreign.query_drop(sql).await.unwrap();
            }
            let lower_case: u32 = conn
                .query_first("SELECT @@lower_case_table_names")
                .await
                .unwrap()
                .unwrap();
            let mut near = vec![
                "lefty__sluice_old2",
                "leftyx_sluice_old",
                "xlefty__sluice_new",
                "lefty__sluice_stag",
            ];
            if lower_case == 0 {
                near.push("LEFTY__SLUICE_OLD");
                near.push("Lefty__sluice_new");
            }
            for n in &near {
                conn.query_drop(format!("CREATE TABLE `{n}` (x INT) COMMENT 'sluice:stage'"))
                    .await
                    .unwrap();
                conn.query_drop(format!("INSERT INTO `{n}` VALUES (1)"))
                    .await
                    .unwrap();
            }
            let foreign_before = catalog(&mut foreign, &other).await;

            // A marked stage (killed during the load), `old` next to the target (killed before
            // the drop) and `new` (killed around the swap), each holding stray rows.
            for (leftover, marker, version) in [
                ("lefty__sluice_stage", "sluice:stage", 2),
                ("lefty__sluice_old", "", 3),
                ("lefty__sluice_new", "", 4),
            ] {
                conn.query_drop(format!("CREATE TABLE {leftover} LIKE lefty"))
                    .await
                    .unwrap();
                conn.query_drop(format!("ALTER TABLE {leftover} COMMENT = '{marker}'"))
                    .await
                    .unwrap();
                conn.query_drop(format!("INSERT INTO {leftover} VALUES (-1, -1)"))
                    .await
                    .unwrap();
                write_rows(
                    &connector,
                    write_request(t.clone(), columns.clone(), WriteStrategy::StagingSwap),
                    &swap_rows(version),
                    BatchLimits::DEFAULT,
                )
                .await;
                assert_eq!(
                    versions(&mut conn, "lefty").await,
                    (1000 + version, version, version),
                    "after a leftover {leftover}"
                );
                let names: Vec<String> = catalog(&mut conn, &name)
                    .await
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect();
                assert!(
                    !names.contains(&leftover.to_owned()),
                    "{leftover} stays: {names:?}"
                );
            }

            // The target missing and its contents under the old name (a swap by two renames
            // killed between them): the plan renames them back and changes nothing ...
            conn.query_drop("RENAME TABLE lefty TO lefty__sluice_old")
                .await
                .unwrap();
            let mut request = write_request(t.clone(), columns.clone(), WriteStrategy::StagingSwap);
            request.filter = Some(sluice_model::Condition::new("`id` < 500").unwrap());
            let plan = connector
                .batch_writer()
                .unwrap()
                .plan_write(&request)
                .await
                .unwrap();
            let sql: Vec<&str> = plan.iter().map(|s| s.sql.as_str()).collect();
            let q = |n: &str| format!("`{name}`.`{n}`");
            assert_eq!(
                sql[1..3],
                [
                    format!("RENAME TABLE {} TO {}", q("lefty__sluice_old"), q("lefty")),
                    format!(
                        "CREATE TABLE {} LIKE {}",
                        q("lefty__sluice_new"),
                        q("lefty")
                    ),
                ],
                "{sql:#?}"
            );
            assert_eq!(versions(&mut conn, "lefty__sluice_old").await, (1004, 4, 4));
            // ... and the write does it: rows outside the filter are the restored ones.
            let fresh: Vec<Vec<Value>> = swap_rows(5).into_iter().take(500).collect();
            write_rows(&connector, request, &fresh, BatchLimits::DEFAULT).await;
            assert_eq!(versions(&mut conn, "lefty").await, (1004, 4, 5));
            assert_eq!(
                versions(&mut conn, "(SELECT * FROM lefty WHERE id < 500) AS f").await,
                (500, 5, 5)
            );

            // The same state before a write that is not a staging swap, with a marked stage too.
            conn.query_drop("RENAME TABLE lefty TO lefty__sluice_old")
                .await
                .unwrap();
            conn.query_drop("CREATE TABLE lefty__sluice_stage LIKE lefty__sluice_old")
                .await
                .unwrap();
            conn.query_drop("ALTER TABLE lefty__sluice_stage COMMENT = 'sluice:stage'")
                .await
                .unwrap();
            let appended: Vec<Vec<Value>> = (5000..5010)
                .map(|i| vec![Value::Int64(i), Value::Int64(6)])
                .collect();
            write_rows(
                &connector,
                write_request(t.clone(), columns.clone(), WriteStrategy::Append),
                &appended,
                BatchLimits::DEFAULT,
            )
            .await;
            assert_eq!(versions(&mut conn, "lefty").await, (1014, 4, 6));

            // Only lefty's exact leftovers went; the look-alikes are as they were.
            let mut want: Vec<String> = near.iter().map(|n| n.to_string()).collect();
            want.push("lefty".into());
            want.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            let names: Vec<String> = catalog(&mut conn, &name)
                .await
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            assert_eq!(names, want);
            for n in &near {
                let rows: i64 = conn
                    .query_first(format!("SELECT COUNT(*) FROM `{n}`"))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(rows, 1, "{n}");
            }
            assert_eq!(catalog(&mut foreign, &other).await, foreign_before);
            let kept: i64 = foreign
                .query_first("SELECT COUNT(*) FROM lefty__sluice_old")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(kept, 1);

            // A view under a leftover's name is not sluice's: a staging swap refuses and leaves it.
            conn.query_drop("CREATE VIEW lefty__sluice_new AS SELECT 1 AS x")
                .await
                .unwrap();
            let err = match connector
                .batch_writer()
                .unwrap()
                .open(write_request(
                    t.clone(),
                    columns.clone(),
                    WriteStrategy::StagingSwap,
                ))
                .await
            {
                Ok(_) => panic!("a staging swap went ahead next to a view it would collide with"),
                Err(e) => e,
            };
            assert_eq!(err.kind(), ErrorKind::Schema, "{err}");
            assert!(err.to_string().contains("lefty__sluice_new"), "{err}");
            let view: i64 = conn
                .query_first("SELECT COUNT(*) FROM lefty__sluice_new")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(view, 1);
        })
        .await;
    })
    .await;
}

/// Names the database `staging_swap_loop` swaps in when it runs as a child process.
const SWAP_CHILD_DB: &str = "SLUICE_TEST_SWAP_CHILD_DB";
/// The first content version the child writes.
const SWAP_CHILD_VERSION: &str = "SLUICE_TEST_SWAP_CHILD_VERSION";

/// Rows of content `version` of the table killed swaps write: mostly small tables, whose swaps
/// are mostly DDL, and now and then a larger one, whose load takes a while.
fn crash_rows(version: i64) -> Vec<Vec<Value>> {
    let n = if version % 4 == 0 {
        20_000
    } else {
        10 + version % 10
    };
    (0..n)
        .map(|i| vec![Value::Int64(i), Value::Int64(version)])
        .collect()
}

/// Whether `(count, least, greatest)` is one full content.
fn is_full_content((count, least, greatest): (i64, i64, i64)) -> bool {
    least == greatest && count == crash_rows(least).len() as i64
}

/// Writes content `version` into `crashed`.
async fn write_crashed(connector: &MariadbConnector, version: i64, strategy: WriteStrategy) {
    write_rows(
        connector,
        write_request(table("crashed"), swap_columns(), strategy),
        &crash_rows(version),
        BatchLimits::rows(5000),
    )
    .await;
}

/// The ids of the sessions using `db`.
async fn sessions(conn: &mut mysql_async::Conn, db: &str) -> std::collections::BTreeSet<u64> {
    let ids: Vec<u64> = conn
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ?",
            (db,),
        )
        .await
        .unwrap();
    ids.into_iter().collect()
}

/// Staging swaps of `crashed`, each with a new content. As the child process of
/// `killed_staging_swaps_leave_old_or_new_contents` it swaps until it is killed; run alone it
/// makes a few swaps in a database of its own and checks each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_swap_loop() {
    if let Ok(db) = std::env::var(SWAP_CHILD_DB) {
        let first: i64 = std::env::var(SWAP_CHILD_VERSION).unwrap().parse().unwrap();
        let connector = MariadbConnector::new(support::config(&db));
        for version in first.. {
            write_crashed(&connector, version, WriteStrategy::StagingSwap).await;
        }
    }
    support::with_database(|connector, name| async move {
        let mut conn = db_conn(&name).await;
        for version in 1..=4 {
            write_crashed(&connector, version, WriteStrategy::StagingSwap).await;
            let content = versions(&mut conn, "crashed").await;
            assert_eq!(
                content,
                (crash_rows(version).len() as i64, version, version)
            );
        }
        assert_eq!(catalog(&mut conn, &name).await.len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_staging_swaps_leave_old_or_new_contents() {
    support::with_database(|connector, name| async move {
        let mut conn = db_conn(&name).await;
        // The next run alternates strategies: both clear leftovers.
        let strategy = |version: i64| {
            if version % 2 == 0 {
                WriteStrategy::StagingSwap
            } else {
                WriteStrategy::TruncateLoad
            }
        };
        write_crashed(&connector, 1, WriteStrategy::TruncateLoad).await;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        let mut state = seed;
        let mut random = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let started = Instant::now();
        let mut kills = 0;
        let mut child_contents = std::collections::BTreeSet::new();
        let mut left: std::collections::BTreeMap<String, u32> = Default::default();
        let mut reads = 0u64;
        while kills < 40 && started.elapsed() < Duration::from_secs(25) {
            kills += 1;
            let first = kills * 1000;
            let ours = sessions(&mut conn, &name).await;
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["staging_swap_loop", "--exact", "--test-threads", "1"])
                .env(SWAP_CHILD_DB, &name)
                .env(SWAP_CHILD_VERSION, first.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // Read the table the whole time the child swaps it; kill it at a random moment after
            // its first swap.
            let spawned = Instant::now();
            let mut kill_at = None;
            while kill_at.is_none_or(|at| Instant::now() < at) {
                assert!(
                    spawned.elapsed() < Duration::from_secs(30),
                    "the child made no swap in 30 s"
                );
                let content = match conn
                    .query_first::<(i64, i64, i64), _>(
                        "SELECT COUNT(*), MIN(version), MAX(version) FROM crashed",
                    )
                    .await
                {
                    Ok(row) => row.unwrap(),
                    Err(e) => panic!("a read during the swaps failed (seed {seed}): {e}"),
                };
                reads += 1;
                assert!(is_full_content(content), "{content:?} (seed {seed})");
                if content.1 >= first {
                    child_contents.insert(content.1);
                    kill_at.get_or_insert(Instant::now() + Duration::from_millis(random(400)));
                }
            }
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!stderr.contains("panicked"), "the child failed: {stderr}");
            // The next run comes once the server has ended the killed process's session (and so
            // released its lock), as after a real crash.
            while !sessions(&mut conn, &name).await.is_subset(&ours) {
                assert!(
                    spawned.elapsed() < Duration::from_secs(60),
                    "the killed child's session lives on"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Old or new contents, whatever the child was doing; then what it left.
            let content = versions(&mut conn, "crashed").await;
            assert!(is_full_content(content), "{content:?} (seed {seed})");
            for (table, _) in catalog(&mut conn, &name).await {
                if table != "crashed" {
                    *left.entry(table).or_default() += 1;
                }
            }
            // The next run clears every leftover and writes its contents.
            let version = 1_000_000 + kills;
            write_crashed(&connector, version, strategy(version)).await;
            let content = versions(&mut conn, "crashed").await;
            assert_eq!(
                content,
                (crash_rows(version).len() as i64, version, version)
            );
            let tables: Vec<String> = catalog(&mut conn, &name)
                .await
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            assert_eq!(tables, ["crashed"], "seed {seed}");
        }
        println!(
            "killed staging swaps: {kills} kills in {:?}, {reads} reads, {} child contents seen, \
             leftovers found after a kill: {left:?} (seed {seed})",
            started.elapsed(),
            child_contents.len()
        );
        // The children really swapped while the reader read.
        assert!(
            child_contents.len() as i64 >= kills,
            "only {} contents of the children were seen in {kills} runs",
            child_contents.len()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrate_through_the_insert_fallback() {
    support::with_database(|_, name| async move {
        let mut config = support::config(&name);
        config.local_infile = false;
        let connector = MariadbConnector::new(config);
        kit::integrate::integrate_changes(&connector).await;
        kit::integrate::integrate_failed_batch_changes_nothing(&connector).await;
        kit::integrate::integrate_add_column(&connector).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrate_refusals_by_the_server_show_no_row_values() {
    use sluice_connector::{IntegrateBatch, IntegrateRequest, IntegrateTable, TableChanges};
    use sluice_model::{Checkpoint, Position};
    support::with_database(|connector, name| async move {
        let mut conn = db_conn(&name).await;
        // A CHECK constraint only the server knows, and a second unique key besides the primary
        // key (so the key is not the only unique one: delete-and-insert).
        conn.query_drop(
            "CREATE TABLE guarded (id BIGINT PRIMARY KEY, code VARCHAR(10) NOT NULL UNIQUE, \
             n INT NULL CHECK (n > 0))",
        )
        .await
        .unwrap();
        conn.query_drop("INSERT INTO guarded VALUES (1, 'one', 1), (2, 'two', 2)")
            .await
            .unwrap();
        let columns = vec![
            col("id", DataType::Int64, false),
            col("code", DataType::Varchar(10), false),
            col("n", DataType::Int32, true),
        ];
        let writer = connector.change_writer().unwrap();
        let mut applier = writer
            .open_integrate(IntegrateRequest {
                name: "guarded".into(),
                tables: vec![IntegrateTable {
                    table: table("guarded"),
                    columns,
                    key: vec![0],
                }],
            })
            .await
            .unwrap();
        let rows = |rows: Vec<Vec<Value>>| {
            let mut b = RowBatch::new(3, BatchLimits::rows(10));
            for r in rows {
                b.push_row(r).unwrap();
            }
            b
        };
        let batch = |upserts: RowBatch, lsn: u64| IntegrateBatch {
            tables: vec![TableChanges {
                table: 0,
                truncate: false,
                deletes: RowBatch::new(1, BatchLimits::rows(1)),
                upserts,
                updates: Vec::new(),
            }],
            checkpoint: Checkpoint::at(Position::Lsn { lsn }),
        };
        let bad = batch(
            rows(vec![vec![
                Value::Int64(3),
                Value::Text("secret".into()),
                Value::Int32(-7),
            ]]),
            1,
        );
        let err = applier.apply(&bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Data, "{err}");
        assert!(err.to_string().contains("guarded"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        assert_eq!(writer.read_checkpoint("guarded").await.unwrap(), None);
        // The same applier goes on; replacing a row keeps the other unique key consistent.
        let good = batch(
            rows(vec![
                vec![
                    Value::Int64(2),
                    Value::Text("deux".into()),
                    Value::Int32(22),
                ],
                vec![
                    Value::Int64(3),
                    Value::Text("three".into()),
                    Value::Int32(3),
                ],
            ]),
            2,
        );
        applier.apply(&good).await.unwrap();
        applier.apply(&good).await.unwrap();
        let got: Vec<(i64, String, i32)> = conn
            .query("SELECT id, code, n FROM guarded ORDER BY id")
            .await
            .unwrap();
        assert_eq!(
            got,
            vec![
                (1, "one".into(), 1),
                (2, "deux".into(), 22),
                (3, "three".into(), 3)
            ]
        );
        let _ = conn.disconnect().await;
    })
    .await;
}

/// Rows `from..=to` of version `version` for [`swap_columns`].
fn numbered(from: i64, to: i64, version: i64) -> Vec<Vec<Value>> {
    (from..=to)
        .map(|i| vec![Value::Int64(i), Value::Int64(version)])
        .collect()
}

/// `SHOW CREATE TABLE` of `table` in `db`.
async fn show_create(conn: &mut mysql_async::Conn, db: &str, table: &str) -> String {
    let row: (String, String) = conn
        .query_first(format!("SHOW CREATE TABLE `{db}`.`{table}`"))
        .await
        .unwrap()
        .unwrap();
    row.1
}

/// Whether the plan of an unfiltered truncate_load of `t` swaps in a loaded copy.
async fn plans_a_swap(connector: &MariadbConnector, t: &sluice_model::TableRef) -> bool {
    let plan = connector
        .batch_writer()
        .unwrap()
        .plan_write(&write_request(
            t.clone(),
            swap_columns(),
            WriteStrategy::TruncateLoad,
        ))
        .await
        .unwrap();
    let swaps = plan.iter().any(|s| s.sql.contains(" LIKE "));
    let deletes = plan.iter().any(|s| s.sql.starts_with("DELETE FROM"));
    assert_ne!(swaps, deletes, "{plan:?}");
    swaps
}

/// Opens an unfiltered truncate_load of `t`, writes `rows`, commits: the commit's outcome.
async fn truncate_load(
    connector: &MariadbConnector,
    t: &sluice_model::TableRef,
    batches: &[Vec<Vec<Value>>],
) -> sluice_connector::Result<()> {
    let mut w = connector
        .batch_writer()
        .unwrap()
        .open(write_request(
            t.clone(),
            swap_columns(),
            WriteStrategy::TruncateLoad,
        ))
        .await?;
    for rows in batches {
        let mut batch = RowBatch::new(2, BatchLimits::DEFAULT);
        for row in rows {
            batch.push_row(row.clone()).unwrap();
        }
        w.write_batch(batch).await?;
    }
    w.commit().await.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_table_truncate_load_swaps_in_a_copy_that_keeps_the_table() {
    support::with_database(|connector, name| async move {
        let mut conn = db_conn(&name).await;
        conn.query_drop(
            "CREATE TABLE kept (id BIGINT NOT NULL AUTO_INCREMENT, version BIGINT NOT NULL, \
             note VARCHAR(20) NULL DEFAULT 'n', PRIMARY KEY (id), KEY by_version (version)) \
             ENGINE=InnoDB COMMENT='kept comment' \
             PARTITION BY KEY (id) PARTITIONS 2",
        )
        .await
        .unwrap();
        // The counter runs ahead of the rows: a swap must not start it over.
        conn.query_drop("INSERT INTO kept (id, version) VALUES (5000, 0)")
            .await
            .unwrap();
        conn.query_drop("DELETE FROM kept").await.unwrap();
        let before = show_create(&mut conn, &name, "kept").await;
        assert!(before.contains("AUTO_INCREMENT=5001"), "{before}");
        let t = table("kept");
        assert!(plans_a_swap(&connector, &t).await);
        // Keys from 1: a 0 would draw from the counter.
        let rows = numbered(1, 1000, 1);
        truncate_load(
            &connector,
            &t,
            &[rows[..500].to_vec(), rows[500..].to_vec()],
        )
        .await
        .unwrap();
        assert_eq!(versions(&mut conn, "kept").await, (1000, 1, 1));
        assert_eq!(show_create(&mut conn, &name, "kept").await, before);
        // The swap really replaced the table, so the next id is the kept counter.
        conn.query_drop("INSERT INTO kept (version) VALUES (7)")
            .await
            .unwrap();
        let next: Option<i64> = conn
            .query_first("SELECT id FROM kept WHERE version = 7")
            .await
            .unwrap();
        assert_eq!(next, Some(5001));
        assert_eq!(
            catalog(&mut conn, &name).await,
            [("kept".to_owned(), "kept comment".to_owned())]
        );
        // A counter behind the loaded keys moves past them, as after DELETE and a load.
        truncate_load(&connector, &t, &[numbered(1, 9999, 9)])
            .await
            .unwrap();
        let after = show_create(&mut conn, &name, "kept").await;
        assert!(after.contains("AUTO_INCREMENT=10000"), "{after}");
        assert_eq!(versions(&mut conn, "kept").await, (9999, 9, 9));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_swapping_truncate_load_leaves_the_old_rows() {
    support::with_database(|connector, name| async move {
        let mut conn = db_conn(&name).await;
        let t = table("atomic");
        write_rows(
            &connector,
            write_request(t.clone(), swap_columns(), WriteStrategy::TruncateLoad),
            &swap_rows(0),
            BatchLimits::DEFAULT,
        )
        .await;
        assert!(plans_a_swap(&connector, &t).await);
        let before = show_create(&mut conn, &name, "atomic").await;
        let good = swap_rows(1);
        // A duplicate key in the last batch: the server skips the row with a warning, which the
        // load's count check turns into a failure at commit.
        let mut duplicate = good[900..].to_vec();
        duplicate.push(vec![Value::Int64(3), Value::Int64(1)]);
        let error = truncate_load(&connector, &t, &[good[..900].to_vec(), duplicate])
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Data, "{error}");
        assert!(error.to_string().contains("nothing was written"), "{error}");
        assert_eq!(versions(&mut conn, "atomic").await, (1000, 0, 0));
        // A value the target cannot hold in the last batch fails before it is sent.
        let mut bad = good[900..].to_vec();
        bad.push(vec![Value::Int64(5000), Value::Null]);
        truncate_load(&connector, &t, &[good[..900].to_vec(), bad])
            .await
            .unwrap_err();
        assert_eq!(versions(&mut conn, "atomic").await, (1000, 0, 0));
        // Nothing is left next to the target, which is unchanged.
        assert_eq!(
            catalog(&mut conn, &name).await,
            [("atomic".to_owned(), String::new())]
        );
        assert_eq!(show_create(&mut conn, &name, "atomic").await, before);
        // Duplicate keys within one batch, and across batches, are refused too.
        for batches in [
            vec![vec![
                vec![Value::Int64(1), Value::Int64(2)],
                vec![Value::Int64(1), Value::Int64(2)],
            ]],
            vec![
                vec![vec![Value::Int64(1), Value::Int64(2)]],
                vec![vec![Value::Int64(1), Value::Int64(2)]],
            ],
        ] {
            let error = truncate_load(&connector, &t, &batches).await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Data, "{error}");
            assert_eq!(versions(&mut conn, "atomic").await, (1000, 0, 0));
        }
    })
    .await;
}

/// Rows of a swap spread over several sessions: each loads its share, all are checked, and the
/// swap shows every row or, when one share fails, none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_load_in_several_sessions_and_swap_in_whole() {
    support::with_database(|_, name| async move {
        let mut config = support::config(&name);
        config.load_sessions = 3;
        let connector = MariadbConnector::new(config);
        let mut conn = db_conn(&name).await;
        let t = table("shared");
        write_rows(
            &connector,
            write_request(t.clone(), swap_columns(), WriteStrategy::TruncateLoad),
            &swap_rows(0),
            BatchLimits::DEFAULT,
        )
        .await;
        // About 10 bytes a line: 500,000 rows are about five 1 MiB chunks, dealt to three
        // sessions in turn.
        let rows = numbered(1, 500_000, 1);
        let mut w = connector
            .batch_writer()
            .unwrap()
            .open(write_request(t.clone(), swap_columns(), WriteStrategy::TruncateLoad))
            .await
            .unwrap();
        for part in rows.chunks(10_000) {
            let mut batch = RowBatch::new(2, BatchLimits::DEFAULT);
            for row in part {
                batch.push_row(row.clone()).unwrap();
            }
            w.write_batch(batch).await.unwrap();
        }
        let loaders: i64 = conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ? AND INFO LIKE 'LOAD DATA%'",
                (&name,),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(loaders, 3, "three sessions load side by side");
        // Nothing shows before the swap.
        assert_eq!(versions(&mut conn, "shared").await, (1000, 0, 0));
        w.commit().await.unwrap();
        assert_eq!(versions(&mut conn, "shared").await, (500_000, 1, 1));
        // A key repeated in another session's share: nothing changes.
        let mut repeated = numbered(1, 500_000, 2);
        repeated.push(vec![Value::Int64(7), Value::Int64(2)]);
        let batches: Vec<Vec<Vec<Value>>> = repeated.chunks(10_000).map(<[_]>::to_vec).collect();
        let error = truncate_load(&connector, &t, &batches).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Data, "{error}");
        assert_eq!(versions(&mut conn, "shared").await, (500_000, 1, 1));
        // A key repeated early, while every session still loads: the session that meets the
        // other's row gives up after its short lock wait, and nothing changes.
        let mut early = numbered(1, 500_000, 3);
        early.insert(200_000, vec![Value::Int64(9), Value::Int64(3)]);
        let batches: Vec<Vec<Vec<Value>>> = early.chunks(10_000).map(<[_]>::to_vec).collect();
        let started = Instant::now();
        let error = truncate_load(&connector, &t, &batches).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Data, "{error}");
        assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
        assert_eq!(versions(&mut conn, "shared").await, (500_000, 1, 1));
        assert_eq!(
            catalog(&mut conn, &name).await,
            [("shared".to_owned(), String::new())]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_load_deletes_and_reloads_tables_a_swap_would_change() {
    support::with_database(|connector, name| async move {
        let mut conn = db_conn(&name).await;
        for sql in [
            "CREATE TABLE with_trigger (id BIGINT PRIMARY KEY, version BIGINT NOT NULL)",
            "CREATE TABLE audit (n BIGINT NOT NULL)",
            "CREATE TRIGGER counted AFTER INSERT ON with_trigger FOR EACH ROW INSERT INTO audit VALUES (NEW.id)",
            "CREATE TABLE parent (id BIGINT PRIMARY KEY, version BIGINT NOT NULL)",
            "CREATE TABLE child (id BIGINT PRIMARY KEY, version BIGINT NOT NULL, \
             FOREIGN KEY (version) REFERENCES parent (id) ON DELETE CASCADE)",
            "CREATE TABLE referrer (id BIGINT PRIMARY KEY, p BIGINT, \
             FOREIGN KEY (p) REFERENCES child (id))",
            "CREATE TABLE myisam (id BIGINT PRIMARY KEY, version BIGINT NOT NULL) ENGINE=Aria",
        ] {
            conn.query_drop(sql).await.unwrap();
        }
        // The parent rows the child's keys point to.
        write_rows(
            &connector,
            write_request(table("parent"), swap_columns(), WriteStrategy::TruncateLoad),
            &swap_rows(0),
            BatchLimits::DEFAULT,
        )
        .await;
        for name in ["with_trigger", "parent", "child", "myisam"] {
            let t = table(name);
            assert!(!plans_a_swap(&connector, &t).await, "{name}");
            truncate_load(&connector, &t, &[swap_rows(1)]).await.unwrap();
        }
        // The trigger fired for every row and still exists; the foreign keys are still there.
        let audited: Option<i64> = conn.query_first("SELECT count(*) FROM audit").await.unwrap();
        assert_eq!(audited, Some(1001));
        assert!(show_create(&mut conn, &name, "child").await.contains("FOREIGN KEY"));
        assert!(show_create(&mut conn, &name, "referrer").await.contains("REFERENCES `child`"));
        let triggers: Option<i64> = conn
            .exec_first(
                "SELECT count(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?",
                (&name,),
            )
            .await
            .unwrap();
        assert_eq!(triggers, Some(1));
        // A table with none of these swaps.
        conn.query_drop("DROP TRIGGER counted").await.unwrap();
        assert!(plans_a_swap(&connector, &table("with_trigger")).await);
    })
    .await;
}
