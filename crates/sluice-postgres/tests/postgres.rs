#![allow(clippy::unwrap_used)]
//! PostgreSQL-specific behaviour against the real test server: edge values, values sluice refuses,
//! the raw COPY pipe, killed writers, staging swaps that keep indexes and constraints, and plans.

mod common;

use std::time::Duration;

use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
use futures::StreamExt;
use sluice_connector::kit::{self, col, read_request, read_rows, table, write_request, write_rows};
use sluice_connector::{
    Connector, ErrorKind, LowerBound, PlannedStatement, WriteRequest, WriteStrategy,
};
use sluice_model::{BatchLimits, ColumnDef, Condition, DataType, Decimal, RowBatch, Value};
use sluice_postgres::{PostgresConfig, PostgresConnector};

fn dec(s: &str) -> Value {
    Value::Decimal(Decimal::parse(s).unwrap())
}

fn batch_of(width: usize, rows: &[Vec<Value>]) -> RowBatch {
    let mut b = RowBatch::new(width, BatchLimits::rows(rows.len().max(1)));
    for r in rows {
        b.push_row(r.iter().cloned()).unwrap();
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_values_round_trip() {
    let fresh = common::fresh().await;
    let c = &fresh.connector;
    let columns = vec![
        col("id", DataType::Int64, false),
        col(
            "big",
            DataType::Decimal {
                precision: 40,
                scale: 20,
            },
            true,
        ),
        col(
            "whole",
            DataType::Decimal {
                precision: 30,
                scale: 0,
            },
            true,
        ),
        col("free", DataType::Numeric, true),
        col("at", DataType::TimestampTz, true),
        col("day", DataType::Date, true),
        col("doc", DataType::Json, true),
        col("raw", DataType::Bytes, true),
        col("txt", DataType::Text, true),
        col("t", DataType::Time, true),
        col("f", DataType::Float64, true),
    ];
    let ts = |micros: i64| Value::TimestampTz(Utc.timestamp_micros(micros).single().unwrap());
    let date = |y, m, d| Value::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap());
    let rows = vec![
        vec![
            Value::Int64(1),
            dec("12345678901234567890.12345678901234567891"),
            dec("-123456789012345678901234567890"),
            dec("-0.00000000000000000000000000000000000001"),
            ts(1_700_000_000_123_457),
            date(1, 1, 1),
            Value::Json(r#"{"ключ": "значение 😀", "a": [1, 2.50, null]}"#.into()),
            Value::Bytes(vec![0, 0, 0, 1, 0]),
            Value::Text(String::new()),
            Value::Time(NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap()),
            Value::Float64(f64::NAN),
        ],
        vec![
            Value::Int64(2),
            dec("-99999999999999999999.99999999999999999999"),
            dec("0"),
            dec("100000000000000000000000000000000000000000"),
            ts(-62_135_596_800_000_000), // 0001-01-01T00:00:00Z
            date(99_999, 12, 31),
            Value::Json("\"\\u00e9\"".into()),
            Value::Bytes(Vec::new()),
            Value::Null,
            Value::Time(NaiveTime::from_hms_micro_opt(0, 0, 0, 1).unwrap()),
            Value::Float64(f64::NEG_INFINITY),
        ],
        vec![
            Value::Int64(3),
            dec("0.00000000000000000001"),
            dec("7"),
            dec("12.5"),
            ts(-1),
            date(2000, 1, 1),
            Value::Json("[]".into()),
            Value::Null,
            Value::Text("NULL".into()),
            Value::Null,
            Value::Float64(-0.0),
        ],
    ];
    write_rows(
        c,
        write_request(table("edges"), columns.clone(), WriteStrategy::TruncateLoad),
        &rows,
        BatchLimits::rows(2),
    )
    .await;
    let (got, _) = read_rows(
        c,
        read_request(table("edges"), columns.clone(), BatchLimits::DEFAULT),
    )
    .await;
    kit::assert_rows_equal("edges", &columns, &got, &rows);
    // Empty text and NULL stay apart.
    assert_eq!(got[0][8], Value::Text(String::new()));
    assert_eq!(got[1][8], Value::Null);
    // What PostgreSQL itself holds.
    let admin = common::admin().await;
    let row = admin
        .query_one(
            &format!(
                "SELECT big::text, whole::text, at::text, length(raw), txt IS NULL FROM {} WHERE id = 1",
                fresh.qualified("edges")
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "12345678901234567890.12345678901234567891"
    );
    assert_eq!(row.get::<_, String>(1), "-123456789012345678901234567890");
    assert!(
        row.get::<_, String>(2).contains(".123457"),
        "{}",
        row.get::<_, String>(2)
    );
    assert_eq!(row.get::<_, i32>(3), 5);
    assert!(!row.get::<_, bool>(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_sluice_cannot_carry_are_errors_naming_column_and_key() {
    let fresh = common::fresh().await;
    let c = &fresh.connector;
    let admin = common::admin().await;
    let t = fresh.qualified("odd");
    admin
        .batch_execute(&format!(
            "CREATE TABLE {t} (id bigint PRIMARY KEY, day date, at timestamptz, n numeric);
             INSERT INTO {t} VALUES (1, '2020-01-01', now(), 1), (2, '0044-03-15 BC', now(), 2),
                                    (3, 'infinity', '-infinity', 'NaN')"
        ))
        .await
        .unwrap();
    let read = |column: ColumnDef, filter: &str| {
        let mut request = read_request(
            table("odd"),
            vec![col("id", DataType::Int64, false), column],
            BatchLimits::DEFAULT,
        );
        request.filter = Some(Condition::new(filter).unwrap());
        request
    };
    for (column, filter, key) in [
        (col("day", DataType::Date, true), "id = 2", "(id=2)"),
        (col("day", DataType::Date, true), "id = 3", "(id=3)"),
        (col("at", DataType::TimestampTz, true), "id = 3", "(id=3)"),
        (col("n", DataType::Numeric, true), "id = 3", "(id=3)"),
    ] {
        let name = column.name.to_string();
        let mut stream = c
            .snapshot_reader()
            .unwrap()
            .read(read(column, filter))
            .await
            .unwrap()
            .batches;
        let err = match stream.next().await {
            Some(Err(e)) => e,
            other => panic!(
                "{name} {filter}: read gave {:?}",
                other.map(|r| r.map(|b| b.len()))
            ),
        };
        assert_eq!(err.kind(), ErrorKind::Data, "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&name) && text.contains(key) && text.contains("odd"),
            "{text}"
        );
    }
    // Values of the wrong type for the request: an int8 read as int16 is checked per value.
    admin
        .batch_execute(&format!("INSERT INTO {t} VALUES (70000, NULL, NULL, NULL)"))
        .await
        .unwrap();
    let mut request = read_request(
        table("odd"),
        vec![col("id", DataType::Int16, false)],
        BatchLimits::DEFAULT,
    );
    request.filter = Some(Condition::new("id = 70000").unwrap());
    let mut stream = c
        .snapshot_reader()
        .unwrap()
        .read(request)
        .await
        .unwrap()
        .batches;
    let err = stream.next().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data, "{err}");
    // Introspection names an unmapped type.
    admin
        .batch_execute(&format!(
            "CREATE TABLE {} (id int, tags text[])",
            fresh.qualified("arr")
        ))
        .await
        .unwrap();
    let err = c
        .introspector()
        .unwrap()
        .table_schema(&table("arr"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("arr") && text.contains("tags") && text.contains("text[]"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_a_target_cannot_hold_fail_before_anything_changes() {
    let fresh = common::fresh().await;
    let c = &fresh.connector;
    let admin = common::admin().await;
    let t = fresh.qualified("narrow");
    admin
        .batch_execute(&format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, code varchar(3), amount numeric(5,2), at timestamp(0));
             INSERT INTO {t} VALUES (1, 'old', 1.5, '2020-01-01')"
        ))
        .await
        .unwrap();
    let columns = vec![
        col("id", DataType::Int32, false),
        col("code", DataType::Varchar(3), true),
        col(
            "amount",
            DataType::Decimal {
                precision: 5,
                scale: 2,
            },
            true,
        ),
        col("at", DataType::Timestamp, true),
    ];
    let ok_at = Value::Timestamp(
        NaiveDate::from_ymd_opt(2024, 1, 1)
            .unwrap()
            .and_hms_opt(1, 2, 3)
            .unwrap(),
    );
    let cases = [
        (
            vec![
                Value::Int32(7),
                Value::Text("éééé".into()),
                dec("1"),
                ok_at.clone(),
            ],
            "code",
        ),
        (
            vec![
                Value::Int32(8),
                Value::Text("ééé".into()),
                dec("1.234"),
                ok_at.clone(),
            ],
            "amount",
        ),
        (
            vec![
                Value::Int32(9),
                Value::Text("x".into()),
                dec("1000"),
                ok_at.clone(),
            ],
            "amount",
        ),
        (
            vec![
                Value::Int32(10),
                Value::Text("x".into()),
                dec("1"),
                Value::Timestamp(
                    NaiveDate::from_ymd_opt(2024, 1, 1)
                        .unwrap()
                        .and_hms_milli_opt(1, 2, 3, 500)
                        .unwrap(),
                ),
            ],
            "at",
        ),
        (
            vec![
                Value::Int32(11),
                Value::Text("a\0b".into()),
                dec("1"),
                ok_at.clone(),
            ],
            "code",
        ),
    ];
    for (row, column) in cases {
        let key = format!("(id={})", row[0]);
        let mut w = c
            .batch_writer()
            .unwrap()
            .open(write_request(
                table("narrow"),
                columns.clone(),
                WriteStrategy::TruncateLoad,
            ))
            .await
            .unwrap();
        let err = w.write_batch(batch_of(4, &[row])).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Data, "{err}");
        let text = err.to_string();
        assert!(
            text.contains(column) && text.contains(&key) && text.contains("narrow"),
            "{text}"
        );
        drop(w);
    }
    let count: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {t} WHERE code = 'old'"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
    // A type mismatch is a Schema error at open.
    let mut wrong = columns.clone();
    wrong[1] = col("code", DataType::Bool, true);
    let err = match c
        .batch_writer()
        .unwrap()
        .open(write_request(
            table("narrow"),
            wrong,
            WriteStrategy::TruncateLoad,
        ))
        .await
    {
        Ok(_) => panic!("a bool column into varchar opened"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Schema, "{err}");
    assert!(err.to_string().contains("code"), "{err}");
}

/// Source rows with a column of every type, for the raw pipe.
fn pipe_columns() -> Vec<ColumnDef> {
    let mut columns = vec![col("id", DataType::Int64, false)];
    for (i, ty) in DataType::representatives().into_iter().enumerate() {
        columns.push(col(&format!("c{i}"), ty, true));
    }
    columns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_pipe_between_two_schemas_equals_the_decoded_path() {
    let source = common::fresh().await;
    let target = common::fresh().await;
    let columns = pipe_columns();
    let mut rows = kit::samples::rows(&columns);
    // Enough rows for several chunks.
    let template = rows.clone();
    for i in 0..30_000i64 {
        let mut row = template[(i as usize) % template.len()].clone();
        row[0] = Value::Int64(1000 + i);
        rows.push(row);
    }
    write_rows(
        &source.connector,
        write_request(table("piped"), columns.clone(), WriteStrategy::TruncateLoad),
        &rows,
        BatchLimits::DEFAULT,
    )
    .await;
    // The engine reads with introspected columns, which carry native types.
    let schema = source
        .connector
        .introspector()
        .unwrap()
        .table_schema(&table("piped"))
        .await
        .unwrap()
        .unwrap();
    let request = read_request(table("piped"), schema.columns.clone(), BatchLimits::DEFAULT);
    let reader = source.connector.snapshot_reader().unwrap();
    let format = reader.raw_format(&request).expect("a raw format");
    assert!(
        format.starts_with("postgresql-binary-copy:bigint,boolean,smallint"),
        "{format}"
    );
    assert!(
        format.contains("numeric(12,2)") && format.contains("timestamp with time zone"),
        "{format}"
    );

    for strategy in [
        WriteStrategy::TruncateLoad,
        WriteStrategy::StagingSwap,
        WriteStrategy::Upsert,
    ] {
        let mut w = target
            .connector
            .batch_writer()
            .unwrap()
            .open(write_request(
                table("piped"),
                schema.columns.clone(),
                strategy,
            ))
            .await
            .unwrap();
        assert_eq!(
            w.raw_format().as_deref(),
            Some(format.as_str()),
            "{strategy:?}"
        );
        let mut chunks = reader.read_raw(request.clone()).await.unwrap().chunks;
        let mut n = 0;
        while let Some(chunk) = chunks.next().await {
            w.write_raw(chunk.unwrap()).await.unwrap();
            n += 1;
        }
        assert!(n >= 2, "{n} chunks");
        let summary = w.commit().await.unwrap();
        assert_eq!(summary.rows, rows.len() as u64, "{strategy:?}");
    }
    let (decoded, _) = read_rows(&source.connector, request.clone()).await;
    let (piped, _) = read_rows(&target.connector, request).await;
    kit::assert_rows_equal("piped", &schema.columns, &piped, &decoded);
    kit::assert_rows_equal("piped", &columns, &piped, &rows);
}

/// The backend of the sluice session working on `schema`.
async fn writer_backend(admin: &tokio_postgres::Client, schema: &str) -> i32 {
    for _ in 0..100 {
        let rows = admin
            .query(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'sluice' \
                 AND backend_xid IS NOT NULL AND query LIKE '%' || $1 || '%'",
                &[&schema],
            )
            .await
            .unwrap();
        if let Some(row) = rows.first() {
            return row.get(0);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no sluice writer found working on {schema}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_leaves_the_target_as_it_was() {
    let fresh = common::fresh().await;
    let c = &fresh.connector;
    let admin = common::admin().await;
    let columns = vec![
        col("id", DataType::Int64, false),
        col("v", DataType::Text, true),
    ];
    let old: Vec<Vec<Value>> = (0..500)
        .map(|i| vec![Value::Int64(i), Value::Text(format!("old {i}"))])
        .collect();
    for strategy in [WriteStrategy::TruncateLoad, WriteStrategy::StagingSwap] {
        let name = format!("killed_{}", strategy.as_str());
        write_rows(
            c,
            write_request(table(&name), columns.clone(), WriteStrategy::TruncateLoad),
            &old,
            BatchLimits::DEFAULT,
        )
        .await;
        let mut w = c
            .batch_writer()
            .unwrap()
            .open(write_request(table(&name), columns.clone(), strategy))
            .await
            .unwrap();
        for b in 0..5 {
            let rows: Vec<Vec<Value>> = (0..20_000)
                .map(|i| vec![Value::Int64(b * 20_000 + i), Value::Text("new".into())])
                .collect();
            w.write_batch(batch_of(2, &rows)).await.unwrap();
        }
        let pid = writer_backend(&admin, &fresh.schema).await;
        let killed: bool = admin
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap()
            .get(0);
        assert!(killed, "terminate backend {pid}");
        let err = w
            .commit()
            .await
            .expect_err("commit after the backend was killed");
        assert!(
            matches!(err.kind(), ErrorKind::Connection | ErrorKind::Internal),
            "{strategy:?}: {err} ({:?})",
            err.kind()
        );
        let (got, _) = read_rows(
            c,
            read_request(table(&name), columns.clone(), BatchLimits::DEFAULT),
        )
        .await;
        kit::assert_rows_equal(&name, &columns, &got, &old);
        let leftovers: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname LIKE '%sluice%'",
                &[&fresh.schema],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(leftovers, 0, "no staging table is left behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_swap_keeps_indexes_constraints_sequences_and_grants() {
    let fresh = common::fresh().await;
    let c = &fresh.connector;
    let admin = common::admin().await;
    let t = fresh.qualified("swapped");
    let parent = fresh.qualified("parent");
    admin
        .batch_execute(&format!(
            "CREATE TABLE {parent} (code text PRIMARY KEY);
             INSERT INTO {parent} VALUES ('a'), ('b');
             CREATE TABLE {t} (
                 id serial PRIMARY KEY,
                 code text NOT NULL REFERENCES {parent} (code),
                 qty integer CHECK (qty >= 0),
                 seen bigint GENERATED ALWAYS AS IDENTITY,
                 CONSTRAINT swapped_code_qty UNIQUE (code, qty));
             CREATE INDEX swapped_qty_idx ON {t} (qty) WHERE qty > 10;
             INSERT INTO {t} (code, qty) SELECT 'a', g FROM generate_series(1, 5) g;
             GRANT SELECT ON {t} TO PUBLIC;"
        ))
        .await
        .unwrap();
    let catalog = "SELECT string_agg(c.relname || ':' || pg_get_indexdef(i.indexrelid), ' | ' ORDER BY c.relname) \
                   FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::text::regclass";
    let constraints = "SELECT string_agg(conname || ':' || pg_get_constraintdef(oid), ' | ' ORDER BY conname) \
                       FROM pg_constraint WHERE conrelid = $1::text::regclass";
    let describe = |sql: &'static str| {
        let admin = &admin;
        let t = t.clone();
        async move {
            admin
                .query_one(sql, &[&t])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    let (indexes_before, constraints_before) =
        (describe(catalog).await, describe(constraints).await);

    let columns = vec![
        col("id", DataType::Int32, false),
        col("code", DataType::Text, false),
        col("qty", DataType::Int32, true),
    ];
    let mut request = write_request(
        table("swapped"),
        columns.clone(),
        WriteStrategy::StagingSwap,
    );
    request.filter = Some(Condition::new("qty <= 2").unwrap());
    let rows = vec![
        vec![Value::Int32(100), Value::Text("b".into()), Value::Int32(20)],
        vec![Value::Int32(101), Value::Text("b".into()), Value::Int32(21)],
    ];
    write_rows(c, request, &rows, BatchLimits::DEFAULT).await;

    assert_eq!(describe(catalog).await, indexes_before);
    assert_eq!(describe(constraints).await, constraints_before);
    let kept: Vec<i32> = admin
        .query(&format!("SELECT id FROM {t} ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        kept,
        vec![3, 4, 5, 100, 101],
        "rows outside the filter are kept"
    );
    // The serial sequence and the identity counter go on where they were.
    let next: (i32, i64) = {
        let row = admin
            .query_one(
                &format!("INSERT INTO {t} (code, qty) VALUES ('a', 99) RETURNING id, seen"),
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(next, (6, 8));
    let public_select: bool = admin
        .query_one(
            "SELECT has_table_privilege('public', $1::text, 'SELECT')",
            &[&t],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(false);
    let granted: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = $1::text::regclass AND a.grantee = 0",
            &[&t],
        )
        .await
        .unwrap()
        .get(0);
    assert!(granted == 1 || public_select, "the grant to PUBLIC is kept");
    // A table a view depends on is refused before anything changes.
    admin
        .batch_execute(&format!(
            "CREATE VIEW {} AS SELECT * FROM {t}",
            fresh.qualified("v")
        ))
        .await
        .unwrap();
    let err = match c
        .batch_writer()
        .unwrap()
        .open(write_request(
            table("swapped"),
            columns,
            WriteStrategy::StagingSwap,
        ))
        .await
    {
        Ok(_) => panic!("staging_swap of a table a view depends on opened"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Schema, "{err}");
    assert!(err.to_string().contains("views"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_load_rebuilds_indexes_after_the_load_and_keeps_them_equal() {
    let fresh = common::fresh().await;
    let c = &fresh.connector;
    let admin = common::admin().await;
    let t = fresh.qualified("rebuilt");
    admin
        .batch_execute(&format!(
            "CREATE TABLE {t} (
                 id integer PRIMARY KEY,
                 code text NOT NULL,
                 qty integer,
                 CONSTRAINT rebuilt_code_qty UNIQUE (code, qty) DEFERRABLE INITIALLY DEFERRED);
             CREATE UNIQUE INDEX rebuilt_code_idx ON {t} (code);
             CREATE INDEX rebuilt_qty_idx ON {t} (qty) WITH (fillfactor = 70) WHERE qty > 10;
             CREATE INDEX rebuilt_lower_idx ON {t} (lower(code));
             ALTER TABLE {t} REPLICA IDENTITY USING INDEX rebuilt_code_idx;
             ALTER TABLE {t} CLUSTER ON rebuilt_lower_idx;
             INSERT INTO {t} SELECT g, 'c' || g, g FROM generate_series(1, 5) g;"
        ))
        .await
        .unwrap();
    let catalog = "SELECT string_agg(c.relname || ':' || pg_get_indexdef(i.indexrelid) || ':' \
                   || i.indisreplident || i.indisclustered || i.indisvalid, ' | ' ORDER BY c.relname) \
                   FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::text::regclass";
    let constraints = "SELECT string_agg(conname || ':' || pg_get_constraintdef(oid), ' | ' ORDER BY conname) \
                       FROM pg_constraint WHERE conrelid = $1::text::regclass";
    let describe = |sql: &'static str| {
        let admin = &admin;
        let t = t.clone();
        async move {
            admin
                .query_one(sql, &[&t])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    let before = (describe(catalog).await, describe(constraints).await);
    let columns = vec![
        col("id", DataType::Int32, false),
        col("code", DataType::Text, false),
        col("qty", DataType::Int32, true),
    ];
    let request = || {
        write_request(
            table("rebuilt"),
            columns.clone(),
            WriteStrategy::TruncateLoad,
        )
    };
    let plan = c
        .batch_writer()
        .unwrap()
        .plan_write(&request())
        .await
        .unwrap();
    let plan = sqls(&plan);
    let copy_at = plan.iter().position(|s| s.starts_with("COPY")).unwrap();
    assert_eq!(
        plan[..copy_at]
            .iter()
            .filter(|s| s.contains("DROP"))
            .count(),
        5,
        "every index is dropped before the COPY: {plan:#?}"
    );
    assert!(
        plan[copy_at..]
            .iter()
            .any(|s| s.contains("REPLICA IDENTITY USING INDEX \"rebuilt_code_idx\""))
            && plan[copy_at..]
                .iter()
                .any(|s| s.contains("CLUSTER ON \"rebuilt_lower_idx\"")),
        "{plan:#?}"
    );
    let rows: Vec<Vec<Value>> = (1..=300)
        .map(|i| {
            vec![
                Value::Int32(i),
                Value::Text(format!("n{i}")),
                Value::Int32(i % 50),
            ]
        })
        .collect();
    write_rows(c, request(), &rows, BatchLimits::DEFAULT).await;
    assert_eq!(
        (describe(catalog).await, describe(constraints).await),
        before
    );
    let count: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {t} WHERE code = 'n7'"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1, "the rebuilt index finds the row");

    // A duplicate key fails the key's build at commit; the old rows and every index stay.
    let mut dup = rows.clone();
    dup.push(vec![
        Value::Int32(7),
        Value::Text("other".into()),
        Value::Int32(1),
    ]);
    let mut w = c.batch_writer().unwrap().open(request()).await.unwrap();
    w.write_batch(batch_of(3, &dup)).await.unwrap();
    let err = w.commit().await.expect_err("a duplicate key committed");
    assert!(
        err.to_string().contains("duplicate") || err.to_string().contains("unique"),
        "{err}"
    );
    assert_eq!(
        (describe(catalog).await, describe(constraints).await),
        before
    );
    let kept: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 300);

    // An index whose rebuild would lose its comment keeps every index in place.
    admin
        .batch_execute(&format!(
            "COMMENT ON INDEX \"{}\".rebuilt_lower_idx IS 'kept as it is'",
            fresh.schema
        ))
        .await
        .unwrap();
    let plan = c
        .batch_writer()
        .unwrap()
        .plan_write(&request())
        .await
        .unwrap();
    assert!(
        !sqls(&plan).iter().any(|s| s.contains("DROP")),
        "{:#?}",
        sqls(&plan)
    );
}

fn sqls(plan: &[PlannedStatement]) -> Vec<&str> {
    plan.iter().map(|s| s.sql.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_show_the_exact_statements() {
    let fresh = common::fresh().await;
    let c = &fresh.connector;
    let s = format!("\"{}\"", fresh.schema);
    let columns = vec![
        col("id", DataType::Int64, false),
        col("name", DataType::Varchar(20), true),
        col("day", DataType::Date, true),
    ];
    // A missing table is created.
    let w = c.batch_writer().unwrap();
    let plan = w
        .plan_write(&write_request(
            table("planned"),
            columns.clone(),
            WriteStrategy::TruncateLoad,
        ))
        .await
        .unwrap();
    assert_eq!(
        sqls(&plan),
        vec![
            "BEGIN ISOLATION LEVEL READ COMMITTED".to_owned(),
            format!(
                "CREATE TABLE {s}.\"planned\" (\"id\" bigint NOT NULL, \"name\" character varying(20), \"day\" date)"
            ),
            format!(
                "COPY {s}.\"planned\" (\"id\", \"name\", \"day\") FROM STDIN (FORMAT binary, FREEZE)"
            ),
            format!("ALTER TABLE {s}.\"planned\" ADD PRIMARY KEY (\"id\")"),
            "COMMIT".to_owned(),
        ]
    );
    write_rows(
        c,
        write_request(
            table("planned"),
            columns.clone(),
            WriteStrategy::TruncateLoad,
        ),
        &[],
        BatchLimits::DEFAULT,
    )
    .await;
    let plan_of = |strategy| {
        let request = write_request(table("planned"), columns.clone(), strategy);
        async move { w.plan_write(&request).await.unwrap() }
    };
    assert_eq!(
        sqls(&plan_of(WriteStrategy::TruncateLoad).await),
        vec![
            "BEGIN ISOLATION LEVEL READ COMMITTED".to_owned(),
            format!("TRUNCATE {s}.\"planned\""),
            format!("ALTER TABLE {s}.\"planned\" DROP CONSTRAINT \"planned_pkey\""),
            format!(
                "COPY {s}.\"planned\" (\"id\", \"name\", \"day\") FROM STDIN (FORMAT binary, FREEZE)"
            ),
            format!("ALTER TABLE {s}.\"planned\" ADD CONSTRAINT \"planned_pkey\" PRIMARY KEY (id)"),
            "COMMIT".to_owned(),
        ]
    );
    assert_eq!(
        sqls(&plan_of(WriteStrategy::Append).await),
        vec![
            "BEGIN ISOLATION LEVEL READ COMMITTED".to_owned(),
            format!("COPY {s}.\"planned\" (\"id\", \"name\", \"day\") FROM STDIN (FORMAT binary)"),
            "COMMIT".to_owned(),
        ]
    );
    let oid: u32 = common::admin()
        .await
        .query_one(
            "SELECT $1::text::regclass::oid",
            &[&format!("{s}.\"planned\"")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        sqls(&plan_of(WriteStrategy::StagingSwap).await),
        vec![
            "BEGIN ISOLATION LEVEL READ COMMITTED".to_owned(),
            format!(
                "CREATE TABLE {s}.\"planned__sluice_stage\" (LIKE {s}.\"planned\" INCLUDING ALL EXCLUDING INDEXES)"
            ),
            format!(
                "COPY {s}.\"planned__sluice_stage\" (\"id\", \"name\", \"day\") FROM STDIN (FORMAT binary, FREEZE)"
            ),
            format!(
                "ALTER TABLE {s}.\"planned__sluice_stage\" ADD CONSTRAINT \"sluice_ix_{oid}_0\" PRIMARY KEY (id)"
            ),
            format!("ALTER TABLE {s}.\"planned\" RENAME TO \"planned__sluice_old\""),
            format!("ALTER TABLE {s}.\"planned__sluice_stage\" RENAME TO \"planned\""),
            format!("DROP TABLE {s}.\"planned__sluice_old\""),
            format!("ALTER INDEX {s}.\"sluice_ix_{oid}_0\" RENAME TO \"planned_pkey\""),
            "COMMIT".to_owned(),
        ]
    );
    assert_eq!(
        sqls(&plan_of(WriteStrategy::Upsert).await),
        vec![
            "BEGIN ISOLATION LEVEL READ COMMITTED".to_owned(),
            format!("CREATE TEMP TABLE pg_temp.sluice_upsert_rows ON COMMIT DROP AS SELECT \"id\", \"name\", \"day\" FROM {s}.\"planned\" WITH NO DATA"),
            format!("CREATE TEMP TABLE pg_temp.sluice_upsert_keys ON COMMIT DROP AS SELECT \"id\" FROM {s}.\"planned\" WITH NO DATA"),
            "COPY pg_temp.sluice_upsert_rows (\"id\", \"name\", \"day\") FROM STDIN (FORMAT binary)".to_owned(),
            "COPY pg_temp.sluice_upsert_keys (\"id\") FROM STDIN (FORMAT binary)".to_owned(),
            format!("DELETE FROM {s}.\"planned\" AS t USING pg_temp.sluice_upsert_keys AS d WHERE t.\"id\" = d.\"id\""),
            format!("INSERT INTO {s}.\"planned\" (\"id\", \"name\", \"day\") OVERRIDING SYSTEM VALUE SELECT \"id\", \"name\", \"day\" FROM pg_temp.sluice_upsert_rows ON CONFLICT (\"id\") DO UPDATE SET \"name\" = EXCLUDED.\"name\", \"day\" = EXCLUDED.\"day\""),
            "COMMIT".to_owned(),
        ]
    );
    // The read plan: text keys sort bytewise, the bound is a typed literal.
    let mut request = read_request(table("planned"), columns.clone(), BatchLimits::DEFAULT);
    request.key = vec![1, 0];
    request.filter = Some(Condition::new("\"day\" IS NOT NULL").unwrap());
    request.lower_bound = Some(LowerBound {
        column: 2,
        value: Value::Date(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()),
        inclusive: false,
    });
    assert_eq!(
        sqls(&c.snapshot_reader().unwrap().plan_read(&request).unwrap()),
        vec![
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY".to_owned(),
            format!(
                "COPY (SELECT \"id\", \"name\", \"day\" FROM {s}.\"planned\" WHERE (\"day\" IS NOT NULL) AND \"day\" > '2024-01-01'::date ORDER BY \"name\" COLLATE \"C\" NULLS FIRST, \"id\") TO STDOUT (FORMAT binary)"
            ),
            "COMMIT".to_owned(),
        ]
    );
    request.lower_bound = Some(LowerBound {
        column: 0,
        value: Value::Int64(150),
        inclusive: true,
    });
    request.filter = None;
    request.ordered = false;
    assert_eq!(
        sqls(&c.snapshot_reader().unwrap().plan_read(&request).unwrap())[1],
        format!(
            "COPY (SELECT \"id\", \"name\", \"day\" FROM {s}.\"planned\" WHERE \"id\" >= 150::bigint) TO STDOUT (FORMAT binary)"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_reports_the_version_and_connection_errors_are_clear() {
    let fresh = common::fresh().await;
    let report = fresh.connector.test().await.unwrap();
    let version = &report.discovered_props["Class_Version"];
    assert!(
        version.chars().next().unwrap().is_ascii_digit(),
        "{version}"
    );
    assert_eq!(report.discovered_props["Schema_Exists"], "true");
    assert_eq!(report.discovered_props["Class_Flavor"], "vanilla");

    // Nothing listens on port 1.
    let mut props = common::props("public");
    props.insert("Database_Port".into(), "1".into());
    props.insert("Database_Password".into(), "s3cret-pw".into());
    let config = PostgresConfig::from_props(&props).unwrap();
    let err = PostgresConnector::new(config.clone())
        .test()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    let text = format!("{err} {err:?} {config:?}");
    assert!(err.to_string().contains(":1/"), "{err}");
    assert!(!text.contains("s3cret-pw"), "{text}");

    // A database that does not exist.
    let mut props = common::props("public");
    props.insert("Database_Name".into(), "sluice_no_such_database".into());
    let err = PostgresConnector::new(PostgresConfig::from_props(&props).unwrap())
        .test()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("sluice_no_such_database"), "{err}");

    // Every TLS mode the server allows here: prefer and require encrypt without checking the
    // certificate; verify-full refuses the test server's certificate.
    for (mode, works) in [
        ("disable", true),
        ("prefer", true),
        ("require", true),
        ("verify-full", false),
    ] {
        let mut props = common::props("public");
        props.insert("Database_Sslmode".into(), mode.into());
        let result = PostgresConnector::new(PostgresConfig::from_props(&props).unwrap())
            .test()
            .await;
        if works {
            result.unwrap_or_else(|e| panic!("sslmode {mode}: {e}"));
        } else if let Err(e) = result {
            assert_eq!(e.kind(), ErrorKind::Connection, "sslmode {mode}: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_lists_tables_and_keys() {
    let fresh = common::fresh().await;
    let admin = common::admin().await;
    let s = &fresh.schema;
    admin
        .batch_execute(&format!(
            "CREATE TABLE \"{s}\".b (x int, y text, PRIMARY KEY (y, x));
             CREATE TABLE \"{s}\".a (id bigserial PRIMARY KEY, c char(4), v varchar, n numeric(7), j json);
             CREATE TABLE \"{s}\".p (id int, at date) PARTITION BY RANGE (at);
             CREATE TABLE \"{s}\".p2024 PARTITION OF \"{s}\".p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
             CREATE VIEW \"{s}\".v AS SELECT 1 AS one;"
        ))
        .await
        .unwrap();
    let i = fresh.connector.introspector().unwrap();
    let names: Vec<String> = i
        .list_tables(None)
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, vec!["a", "b", "p"]);
    let b = i.table_schema(&table("b")).await.unwrap().unwrap();
    let pk: Vec<String> = b.primary_key.iter().map(ToString::to_string).collect();
    assert_eq!(pk, vec!["y", "x"]);
    let a = i.table_schema(&table("a")).await.unwrap().unwrap();
    let types: Vec<(String, DataType, bool, String)> = a
        .columns
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.data_type,
                c.nullable,
                c.native_type.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        types,
        vec![
            ("id".into(), DataType::Int64, false, "bigint".into()),
            (
                "c".into(),
                DataType::Varchar(4),
                true,
                "character(4)".into()
            ),
            ("v".into(), DataType::Text, true, "character varying".into()),
            (
                "n".into(),
                DataType::Decimal {
                    precision: 7,
                    scale: 0
                },
                true,
                "numeric(7,0)".into()
            ),
            ("j".into(), DataType::Json, true, "json".into()),
        ]
    );
    assert!(i.table_schema(&table("nope")).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_types_convert_only_when_exact() {
    let fresh = common::fresh().await;
    let admin = common::admin().await;
    let t = fresh.qualified("conv");
    admin
        .batch_execute(&format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, n numeric(10,2), s varchar(10), j jsonb);
             INSERT INTO {t} VALUES (1, 12.00, 'abc', '{{\"a\": 1}}'), (2, NULL, NULL, NULL)"
        ))
        .await
        .unwrap();
    let columns = vec![
        col("id", DataType::Int64, false),
        col("n", DataType::Int64, true),
        col("s", DataType::Varchar(3), true),
        col("j", DataType::Text, true),
    ];
    let (got, _) = read_rows(
        &fresh.connector,
        read_request(table("conv"), columns, BatchLimits::DEFAULT),
    )
    .await;
    assert_eq!(
        got[0],
        vec![
            Value::Int64(1),
            Value::Int64(12),
            Value::Text("abc".into()),
            Value::Text("{\"a\": 1}".into())
        ]
    );
    let max = fresh
        .connector
        .snapshot_reader()
        .unwrap()
        .max_value(&table("conv"), &col("s", DataType::Text, true), None)
        .await
        .unwrap();
    assert_eq!(max, Some(Value::Text("abc".into())));
}

/// `WriteRequest` for an upsert keyed on two columns, against a table with no unique index (so the
/// delete-then-insert path runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_without_a_unique_index_deletes_then_inserts() {
    let fresh = common::fresh().await;
    let admin = common::admin().await;
    let t = fresh.qualified("loose");
    admin
        .batch_execute(&format!(
            "CREATE TABLE {t} (a int, b text, v text);
             INSERT INTO {t} VALUES (1, 'x', 'old'), (2, 'y', 'old'), (3, 'z', 'old')"
        ))
        .await
        .unwrap();
    let columns = vec![
        col("a", DataType::Int32, false),
        col("b", DataType::Text, false),
        col("v", DataType::Text, true),
    ];
    let request = WriteRequest {
        table: table("loose"),
        columns: columns.clone(),
        key: vec![0, 1],
        strategy: WriteStrategy::Upsert,
        create_if_missing: false,
        filter: None,
    };
    let plan = fresh
        .connector
        .batch_writer()
        .unwrap()
        .plan_write(&request)
        .await
        .unwrap();
    assert!(
        plan.iter().all(|s| !s.sql.contains("ON CONFLICT")),
        "{plan:?}"
    );
    let mut w = fresh
        .connector
        .batch_writer()
        .unwrap()
        .open(request)
        .await
        .unwrap();
    w.write_batch(batch_of(
        3,
        &[vec![
            Value::Int32(2),
            Value::Text("y".into()),
            Value::Text("new".into()),
        ]],
    ))
    .await
    .unwrap();
    w.delete_batch(batch_of(
        2,
        &[vec![Value::Int32(3), Value::Text("z".into())]],
    ))
    .await
    .unwrap();
    w.write_batch(batch_of(
        3,
        &[vec![
            Value::Int32(4),
            Value::Text("w".into()),
            Value::Text("new".into()),
        ]],
    ))
    .await
    .unwrap();
    let summary = w.commit().await.unwrap();
    assert_eq!(summary.rows, 2);
    let got: Vec<(i32, String)> = admin
        .query(&format!("SELECT a, v FROM {t} ORDER BY a"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        got,
        vec![(1, "old".into()), (2, "new".into()), (4, "new".into())]
    );
}

/// Speeds of the raw pipe against `psql | psql`, and of decoding and encoding. Not a check: run by
/// hand with `cargo test --release -p sluice-postgres --test postgres speed -- --ignored --nocapture`
/// (`SLUICE_SPEED_ROWS` sets the table size, default 2,000,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measures speed; run by hand"]
async fn speed() {
    use std::time::Instant;
    let n: i64 = std::env::var("SLUICE_SPEED_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let fresh = common::fresh().await;
    let c = &fresh.connector;
    let admin = common::admin().await;
    let src = fresh.qualified("src");
    admin
        .batch_execute(&format!(
            "CREATE TABLE {src} (id bigint PRIMARY KEY, qty integer, amount numeric(12,2), name text, at timestamptz);
             INSERT INTO {src} SELECT g, g % 1000, (g % 100000) / 100.0, 'customer name ' || g, '2024-01-01'::timestamptz + g * interval '1 second'
             FROM generate_series(1, {n}) g"
        ))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("VACUUM ANALYZE {src}"))
        .await
        .unwrap();
    let like = |name: &str| {
        format!(
            "CREATE TABLE {} (LIKE {src} INCLUDING ALL)",
            fresh.qualified(name)
        )
    };
    admin.batch_execute(&like("psql_dst")).await.unwrap();
    let props = common::props("public");
    let conn = format!(
        "host={} port={} user={} dbname={}",
        props["Database_Host"],
        props["Database_Port"],
        props["Database_User"],
        props["Database_Name"]
    );
    let rate = |rows: i64, secs: f64| format!("{:.0} rows/s ({secs:.2} s)", rows as f64 / secs);

    let start = Instant::now();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "psql \"{conn}\" -Xqc 'COPY {src} TO STDOUT (FORMAT binary)' | psql \"{conn}\" -Xqc 'COPY {} FROM STDIN (FORMAT binary)'",
            fresh.qualified("psql_dst")
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let psql = start.elapsed().as_secs_f64();
    println!("psql | psql:              {}", rate(n, psql));

    let schema = c
        .introspector()
        .unwrap()
        .table_schema(&table("src"))
        .await
        .unwrap()
        .unwrap();
    let request = read_request(table("src"), schema.columns.clone(), BatchLimits::DEFAULT);
    let reader = c.snapshot_reader().unwrap();
    for strategy in [WriteStrategy::Append, WriteStrategy::TruncateLoad] {
        let name = format!("raw_{}", strategy.as_str());
        admin.batch_execute(&like(&name)).await.unwrap();
        let start = Instant::now();
        let mut w = c
            .batch_writer()
            .unwrap()
            .open(write_request(
                table(&name),
                schema.columns.clone(),
                strategy,
            ))
            .await
            .unwrap();
        let mut chunks = reader.read_raw(request.clone()).await.unwrap().chunks;
        while let Some(chunk) = chunks.next().await {
            w.write_raw(chunk.unwrap()).await.unwrap();
        }
        let rows = w.commit().await.unwrap().rows;
        assert_eq!(rows, n as u64);
        let secs = start.elapsed().as_secs_f64();
        println!(
            "raw pipe ({:13}): {} = {:.2}x psql",
            strategy.as_str(),
            rate(n, secs),
            psql / secs
        );
    }

    let start = Instant::now();
    let mut batches = reader.read(request.clone()).await.unwrap().batches;
    let mut rows = 0;
    while let Some(b) = batches.next().await {
        rows += b.unwrap().len();
    }
    assert_eq!(rows as i64, n);
    println!(
        "decoded read:             {}",
        rate(n, start.elapsed().as_secs_f64())
    );

    admin.batch_execute(&like("decoded")).await.unwrap();
    let start = Instant::now();
    let mut w = c
        .batch_writer()
        .unwrap()
        .open(write_request(
            table("decoded"),
            schema.columns.clone(),
            WriteStrategy::Append,
        ))
        .await
        .unwrap();
    let mut batches = reader.read(request.clone()).await.unwrap().batches;
    while let Some(b) = batches.next().await {
        w.write_batch(b.unwrap()).await.unwrap();
    }
    w.commit().await.unwrap();
    println!(
        "decoded read + write:     {}",
        rate(n, start.elapsed().as_secs_f64())
    );
}

/// Speed of the binary COPY codec alone (no server): encode and decode rows of five columns.
#[test]
#[ignore = "measures speed; run by hand"]
fn codec_speed() {
    use bytes::BytesMut;
    use sluice_postgres::copy::{
        Frame, ReadColumn, WriteColumn, encode_row, parse_header, parse_row, write_header,
        write_trailer,
    };
    use sluice_postgres::types::pg_type;
    use std::time::Instant;
    let natives = [
        "bigint",
        "integer",
        "numeric(12,2)",
        "text",
        "timestamp with time zone",
    ];
    let types: Vec<_> = natives.iter().map(|n| pg_type(n).unwrap()).collect();
    let write: Vec<WriteColumn> = types
        .iter()
        .map(|t| WriteColumn {
            wire: t.wire,
            data_type: t.data_type,
            fraction_digits: t.fraction_digits,
        })
        .collect();
    let read: Vec<ReadColumn> = types
        .iter()
        .map(|t| ReadColumn {
            wire: t.wire,
            data_type: t.data_type,
            convert: false,
        })
        .collect();
    let n = 1_000_000i64;
    let rows: Vec<Vec<Value>> = (0..n)
        .map(|g| {
            vec![
                Value::Int64(g),
                Value::Int32((g % 1000) as i32),
                dec(&format!("{}.{:02}", g % 1000, g % 100)),
                Value::Text(format!("customer name {g}")),
                Value::TimestampTz(Utc.timestamp_opt(1_700_000_000 + g, 0).single().unwrap()),
            ]
        })
        .collect();
    let mut buf = BytesMut::new();
    let mut groups = Vec::new();
    let start = Instant::now();
    write_header(&mut buf);
    for row in &rows {
        encode_row(row, &write, &mut buf, &mut groups).unwrap();
    }
    write_trailer(&mut buf);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "encode: {:.0} rows/s, {:.0} MiB/s",
        n as f64 / secs,
        buf.len() as f64 / secs / 1048576.0
    );
    let start = Instant::now();
    let mut pos = parse_header(&buf).unwrap().unwrap();
    let mut fields = Vec::new();
    let mut batch = RowBatch::new(5, BatchLimits::DEFAULT);
    let mut decoded = 0usize;
    let mut row = Vec::with_capacity(5);
    let mut scratch = String::new();
    while let Frame::Row(len) = parse_row(&buf[pos..], 5, &mut fields).unwrap() {
        let rest = &buf[pos..];
        for (i, c) in read.iter().enumerate() {
            row.push(
                c.decode(fields[i].map(|(s, e)| &rest[s..e]), &mut scratch)
                    .unwrap(),
            );
        }
        batch.push_row(row.drain(..)).unwrap();
        if batch.is_full() {
            decoded += batch.take().len();
        }
        pos += len;
    }
    decoded += batch.len();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(decoded as i64, n);
    println!(
        "decode: {:.0} rows/s, {:.0} MiB/s",
        n as f64 / secs,
        buf.len() as f64 / secs / 1048576.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_tables_load_and_read() {
    let fresh = common::fresh().await;
    let admin = common::admin().await;
    let t = fresh.qualified("parts");
    admin
        .batch_execute(&format!(
            "CREATE TABLE {t} (id bigint NOT NULL, day date NOT NULL, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
             CREATE TABLE {} PARTITION OF {t} FOR VALUES FROM ('2024-01-01') TO ('2024-07-01');
             CREATE TABLE {} PARTITION OF {t} FOR VALUES FROM ('2024-07-01') TO ('2025-01-01');
             INSERT INTO {t} VALUES (0, '2024-03-03')",
            fresh.qualified("parts_h1"),
            fresh.qualified("parts_h2")
        ))
        .await
        .unwrap();
    let columns = vec![
        col("id", DataType::Int64, false),
        col("day", DataType::Date, false),
    ];
    let rows: Vec<Vec<Value>> = (1..=300)
        .map(|i| {
            vec![
                Value::Int64(i),
                Value::Date(
                    NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Duration::days(i),
                ),
            ]
        })
        .collect();
    let c = &fresh.connector;
    let plan = c
        .batch_writer()
        .unwrap()
        .plan_write(&write_request(
            table("parts"),
            columns.clone(),
            WriteStrategy::TruncateLoad,
        ))
        .await
        .unwrap();
    assert!(
        plan.iter().all(|s| !s.sql.contains("FREEZE")),
        "no FREEZE on a partitioned table: {plan:?}"
    );
    write_rows(
        c,
        write_request(table("parts"), columns.clone(), WriteStrategy::TruncateLoad),
        &rows,
        BatchLimits::rows(64),
    )
    .await;
    let (got, _) = read_rows(
        c,
        read_request(table("parts"), columns.clone(), BatchLimits::DEFAULT),
    )
    .await;
    kit::assert_rows_equal("parts", &columns, &got, &rows);
    let err = match c
        .batch_writer()
        .unwrap()
        .open(write_request(
            table("parts"),
            columns,
            WriteStrategy::StagingSwap,
        ))
        .await
    {
        Ok(_) => panic!("staging_swap of a partitioned table opened"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
}

mod integrate {
    use sluice_connector::{
        ChangeApplier, ErrorKind, IntegrateBatch, IntegrateRequest, IntegrateTable, TableChanges,
    };
    use sluice_model::{BatchLimits, Checkpoint, ColumnDef, DataType, Position, RowBatch, Value};

    use super::common;
    use sluice_connector::Connector;
    use sluice_connector::kit::{col, table};

    fn rows(width: usize, rows: Vec<Vec<Value>>) -> RowBatch {
        let mut b = RowBatch::new(width, BatchLimits::rows(rows.len().max(1)));
        for r in rows {
            b.push_row(r).unwrap();
        }
        b
    }

    fn upserts(width: usize, upserts: Vec<Vec<Value>>, lsn: u64) -> IntegrateBatch {
        IntegrateBatch {
            tables: vec![TableChanges {
                table: 0,
                truncate: false,
                deletes: RowBatch::new(1, BatchLimits::rows(1)),
                upserts: rows(width, upserts),
                updates: Vec::new(),
            }],
            checkpoint: Checkpoint::at(Position::Lsn { lsn }),
        }
    }

    async fn open(
        c: &dyn Connector,
        name: &str,
        columns: Vec<ColumnDef>,
    ) -> Box<dyn ChangeApplier> {
        c.change_writer()
            .unwrap()
            .open_integrate(IntegrateRequest {
                name: name.into(),
                tables: vec![IntegrateTable {
                    table: table(name),
                    columns,
                    key: vec![0],
                }],
            })
            .await
            .unwrap()
    }

    /// A value PostgreSQL itself refuses (a CHECK constraint) is a `Data` error without the
    /// "Failing row contains" detail, which would show every value of the row.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn server_refusals_show_no_row_values() {
        let fresh = common::fresh().await;
        let admin = common::admin().await;
        let t = fresh.qualified("guarded");
        admin
            .batch_execute(&format!(
                "CREATE TABLE {t} (id bigint PRIMARY KEY, secret text, n int CHECK (n > 0))"
            ))
            .await
            .unwrap();
        let columns = vec![
            col("id", DataType::Int64, false),
            col("secret", DataType::Text, true),
            col("n", DataType::Int32, true),
        ];
        let mut applier = open(&fresh.connector, "guarded", columns).await;
        let bad = upserts(
            3,
            vec![vec![
                Value::Int64(1),
                Value::Text("hush-hush".into()),
                Value::Int32(-1),
            ]],
            1,
        );
        let err = applier.apply(&bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Data, "{err}");
        assert!(err.to_string().contains("guarded"), "{err}");
        assert!(!err.to_string().contains("hush-hush"), "{err}");
        let good = upserts(
            3,
            vec![vec![
                Value::Int64(1),
                Value::Text("fine".into()),
                Value::Int32(1),
            ]],
            2,
        );
        applier.apply(&good).await.unwrap();
        let n: i64 = admin
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
    }

    /// An identity key (GENERATED ALWAYS) takes the source's values, and a table whose key is a
    /// unique index rather than a primary key is upserted through it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identity_keys_and_unique_indexes() {
        let fresh = common::fresh().await;
        let admin = common::admin().await;
        let ident = fresh.qualified("ident");
        let uniq = fresh.qualified("uniq");
        admin
            .batch_execute(&format!(
                "CREATE TABLE {ident} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text); \
                 CREATE TABLE {uniq} (id bigint NOT NULL, v text); \
                 CREATE UNIQUE INDEX ON {uniq} (id)"
            ))
            .await
            .unwrap();
        let columns = vec![
            col("id", DataType::Int64, false),
            col("v", DataType::Text, true),
        ];
        for (name, qualified) in [("ident", &ident), ("uniq", &uniq)] {
            let mut applier = open(&fresh.connector, name, columns.clone()).await;
            let row = |i: i64, v: &str| vec![Value::Int64(i), Value::Text(v.into())];
            applier
                .apply(&upserts(2, vec![row(10, "a"), row(20, "b")], 1))
                .await
                .unwrap();
            applier
                .apply(&upserts(2, vec![row(10, "a2"), row(30, "c")], 2))
                .await
                .unwrap();
            let got: Vec<(i64, String)> = admin
                .query(&format!("SELECT id, v FROM {qualified} ORDER BY id"), &[])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            assert_eq!(
                got,
                vec![(10, "a2".into()), (20, "b".into()), (30, "c".into())],
                "{name}"
            );
        }
    }
}
