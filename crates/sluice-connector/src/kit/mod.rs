//! The conformance kit: the checks every connector passes, run by each connector crate's `tests/`
//! against a real database, plus [`memory::MemoryConnector`] for engine tests.
//!
//! Each check takes a connector to a fresh, empty database (or schema) and panics with a message
//! naming the table, column and row when the connector breaks its contract. Checks create their own
//! tables, prefixed `kit_`.

pub mod checksum;
pub mod integrate;
pub mod memory;
pub mod samples;

use futures::StreamExt;
use sluice_model::{
    BaseName, BatchLimits, ColumnDef, ColumnName, Condition, DataType, RowBatch, TableRef, Value,
};

use crate::{
    BatchWriter, Connector, ErrorKind, ReadRequest, SnapshotReader, WriteRequest, WriteStrategy,
};

fn reader(c: &dyn Connector) -> &dyn SnapshotReader {
    c.snapshot_reader()
        .expect("the connector under test offers snapshot reads")
}

fn writer(c: &dyn Connector) -> &dyn BatchWriter {
    c.batch_writer()
        .expect("the connector under test offers batch writes")
}

/// A table name in the default schema.
pub fn table(name: &str) -> TableRef {
    TableRef::new(BaseName::new(name).expect("kit table names are valid"))
}

/// A column definition.
pub fn col(name: &str, data_type: DataType, nullable: bool) -> ColumnDef {
    ColumnDef::new(
        ColumnName::new(name).expect("kit column names are valid"),
        data_type,
        nullable,
    )
}

/// A write request for `columns` keyed on the first column, creating the table if missing.
pub fn write_request(
    table: TableRef,
    columns: Vec<ColumnDef>,
    strategy: WriteStrategy,
) -> WriteRequest {
    WriteRequest {
        table,
        columns,
        key: vec![0],
        strategy,
        create_if_missing: true,
        filter: None,
    }
}

/// A read request for `columns` keyed and ordered on the first column.
pub fn read_request(table: TableRef, columns: Vec<ColumnDef>, limits: BatchLimits) -> ReadRequest {
    ReadRequest {
        table,
        columns,
        key: vec![0],
        ordered: true,
        filter: None,
        lower_bound: None,
        key_range: None,
        limits,
    }
}

/// Writes `rows` through one writer in batches of `limits`, then commits.
pub async fn write_rows(
    c: &dyn Connector,
    request: WriteRequest,
    rows: &[Vec<Value>],
    limits: BatchLimits,
) {
    let width = request.columns.len();
    let table = request.table.clone();
    let mut w = writer(c)
        .open(request)
        .await
        .unwrap_or_else(|e| panic!("open writer for {table}: {e}"));
    let mut batch = RowBatch::new(width, limits);
    for row in rows {
        if batch.is_full() {
            w.write_batch(batch.take())
                .await
                .unwrap_or_else(|e| panic!("write {table}: {e}"));
        }
        batch
            .push_row(row.iter().cloned())
            .expect("kit rows have the table's width");
    }
    if !batch.is_empty() {
        w.write_batch(batch.take())
            .await
            .unwrap_or_else(|e| panic!("write {table}: {e}"));
    }
    w.commit()
        .await
        .unwrap_or_else(|e| panic!("commit {table}: {e}"));
}

/// Reads every row and the size of every batch.
pub async fn read_rows(c: &dyn Connector, request: ReadRequest) -> (Vec<Vec<Value>>, Vec<usize>) {
    let table = request.table.clone();
    let limits = request.limits;
    let snapshot = reader(c)
        .read(request)
        .await
        .unwrap_or_else(|e| panic!("read {table}: {e}"));
    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    let mut stream = snapshot.batches;
    while let Some(batch) = stream.next().await {
        let batch = batch.unwrap_or_else(|e| panic!("read {table}: {e}"));
        assert!(!batch.is_empty(), "{table}: the reader sent an empty batch");
        assert!(
            batch.len() <= limits.max_rows,
            "{table}: a batch of {} rows exceeds the limit of {}",
            batch.len(),
            limits.max_rows
        );
        sizes.push(batch.len());
        rows.extend(batch.rows().map(<[Value]>::to_vec));
    }
    (rows, sizes)
}

fn canonical(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    v.encode_canonical(&mut out);
    out
}

/// Asserts that `got` equals `want` row by row, value by value, and that every value conforms to
/// its column type.
pub fn assert_rows_equal(
    table: &str,
    columns: &[ColumnDef],
    got: &[Vec<Value>],
    want: &[Vec<Value>],
) {
    assert_eq!(got.len(), want.len(), "{table}: row count");
    for (r, (g, w)) in got.iter().zip(want).enumerate() {
        for (i, column) in columns.iter().enumerate() {
            assert!(
                g[i].conforms_to(column.data_type),
                "{table} row {r} column {}: read {:?}, which is not a {}",
                column.name,
                g[i],
                column.data_type
            );
            assert_eq!(
                canonical(&g[i]),
                canonical(&w[i]),
                "{table} row {r} (key {}) column {} ({}): wrote {:?}, read {:?}",
                w[0],
                column.name,
                column.data_type,
                w[i],
                g[i]
            );
        }
    }
}

/// Every [`DataType`] round-trips through create → write → read, NULLs and unicode included, and
/// the created table introspects back to the same types and key.
pub async fn round_trip_every_type(c: &dyn Connector) {
    let t = table("kit_types");
    let mut columns = vec![col("id", DataType::Int64, false)];
    for (i, ty) in DataType::representatives().into_iter().enumerate() {
        columns.push(col(
            &format!("c{i}_{}", samples::column_suffix(ty)),
            ty,
            true,
        ));
    }
    let rows = samples::rows(&columns);
    write_rows(
        c,
        write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
        &rows,
        BatchLimits::rows(7),
    )
    .await;
    let (got, _) = read_rows(
        c,
        read_request(t.clone(), columns.clone(), BatchLimits::DEFAULT),
    )
    .await;
    assert_rows_equal("kit_types", &columns, &got, &rows);

    let schema = c
        .introspector()
        .expect("the connector under test offers introspection")
        .table_schema(&t)
        .await
        .expect("introspect kit_types")
        .expect("kit_types exists after the write");
    assert_eq!(
        schema.primary_key,
        vec![columns[0].name.clone()],
        "kit_types primary key"
    );
    for column in &columns {
        let found = schema
            .column(&column.name)
            .unwrap_or_else(|| panic!("kit_types lacks column {}", column.name));
        assert_eq!(
            found.data_type, column.data_type,
            "kit_types column {} type",
            column.name
        );
        assert_eq!(
            found.nullable, column.nullable,
            "kit_types column {} nullability",
            column.name
        );
    }
}

/// Table and column names that need quoting (blanks, quotes, unicode, reserved words) work.
pub async fn quoted_identifiers(c: &dyn Connector) {
    let t = table("kit \"odd\" table");
    let columns = vec![
        col("order", DataType::Int64, false),
        col("Straße \"x\" 'y'", DataType::Text, true),
        col("select", DataType::Int32, true),
    ];
    let rows = vec![
        vec![Value::Int64(1), Value::Text("ä".into()), Value::Int32(1)],
        vec![Value::Int64(2), Value::Null, Value::Null],
    ];
    write_rows(
        c,
        write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
        &rows,
        BatchLimits::DEFAULT,
    )
    .await;
    let (got, _) = read_rows(c, read_request(t, columns.clone(), BatchLimits::DEFAULT)).await;
    assert_rows_equal("kit \"odd\" table", &columns, &got, &rows);
}

/// An empty source table reads as no batches; writing no rows creates an empty table.
pub async fn empty_table(c: &dyn Connector) {
    let t = table("kit_empty");
    let columns = vec![
        col("id", DataType::Int64, false),
        col("v", DataType::Text, true),
    ];
    write_rows(
        c,
        write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
        &[],
        BatchLimits::DEFAULT,
    )
    .await;
    let (got, sizes) = read_rows(c, read_request(t.clone(), columns, BatchLimits::DEFAULT)).await;
    assert!(
        got.is_empty() && sizes.is_empty(),
        "kit_empty: read {} rows in {sizes:?}",
        got.len()
    );
    let count = reader(c)
        .count_rows(&t, None)
        .await
        .expect("count kit_empty");
    assert_eq!(count, 0, "kit_empty row count");
}

/// Batches are cut exactly at the limit: 100,000 rows are one batch, 100,001 are two.
pub async fn batch_boundary_at_100k(c: &dyn Connector) {
    let columns = vec![
        col("id", DataType::Int64, false),
        col("v", DataType::Int32, true),
    ];
    let limits = BatchLimits::rows(100_000);
    for (name, n, want) in [
        ("kit_100k", 100_000, vec![100_000]),
        ("kit_100k_1", 100_001, vec![100_000, 1]),
    ] {
        let rows: Vec<Vec<Value>> = (0..n as i64)
            .map(|i| vec![Value::Int64(i), Value::Int32((i % 1000) as i32)])
            .collect();
        let t = table(name);
        write_rows(
            c,
            write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
            &rows,
            limits,
        )
        .await;
        let (got, sizes) = read_rows(c, read_request(t, columns.clone(), limits)).await;
        assert_eq!(sizes, want, "{name}: batch sizes");
        assert_rows_equal(name, &columns, &got, &rows);
    }
}

/// Running the same write twice gives the same table, for every replacing strategy.
pub async fn idempotent_rerun(c: &dyn Connector) {
    let columns = vec![
        col("id", DataType::Int64, false),
        col("v", DataType::Text, true),
    ];
    let rows: Vec<Vec<Value>> = (0..1000)
        .map(|i| vec![Value::Int64(i), Value::Text(format!("row {i}"))])
        .collect();
    for strategy in [WriteStrategy::TruncateLoad, WriteStrategy::StagingSwap] {
        if strategy == WriteStrategy::StagingSwap && !c.capabilities().staging_swap {
            continue;
        }
        let t = table(&format!("kit_rerun_{}", strategy.as_str()));
        for _ in 0..2 {
            write_rows(
                c,
                write_request(t.clone(), columns.clone(), strategy),
                &rows,
                BatchLimits::rows(300),
            )
            .await;
        }
        let (got, _) = read_rows(
            c,
            read_request(t.clone(), columns.clone(), BatchLimits::DEFAULT),
        )
        .await;
        assert_rows_equal(&t.to_string(), &columns, &got, &rows);
    }
}

/// A write that is rolled back, or dropped half-way, leaves the target exactly as it was.
pub async fn rollback_leaves_target_unchanged(c: &dyn Connector) {
    let columns = vec![
        col("id", DataType::Int64, false),
        col("v", DataType::Text, true),
    ];
    let before: Vec<Vec<Value>> = (0..50)
        .map(|i| vec![Value::Int64(i), Value::Text("old".into())])
        .collect();
    let new_batch = || {
        let mut b = RowBatch::new(2, BatchLimits::DEFAULT);
        b.push_row([Value::Int64(1), Value::Text("new".into())])
            .expect("width 2");
        b
    };
    for strategy in [WriteStrategy::TruncateLoad, WriteStrategy::StagingSwap] {
        if strategy == WriteStrategy::StagingSwap && !c.capabilities().staging_swap {
            continue;
        }
        let t = table(&format!("kit_rollback_{}", strategy.as_str()));
        write_rows(
            c,
            write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
            &before,
            BatchLimits::DEFAULT,
        )
        .await;

        let mut w = writer(c)
            .open(write_request(t.clone(), columns.clone(), strategy))
            .await
            .expect("open");
        w.write_batch(new_batch()).await.expect("write");
        w.rollback().await.expect("rollback");
        let (got, _) = read_rows(
            c,
            read_request(t.clone(), columns.clone(), BatchLimits::DEFAULT),
        )
        .await;
        assert_rows_equal(&format!("{t} after rollback"), &columns, &got, &before);

        let mut w = writer(c)
            .open(write_request(t.clone(), columns.clone(), strategy))
            .await
            .expect("open");
        w.write_batch(new_batch()).await.expect("write");
        drop(w);
        let (got, _) = read_rows(
            c,
            read_request(t.clone(), columns.clone(), BatchLimits::DEFAULT),
        )
        .await;
        assert_rows_equal(&format!("{t} after drop"), &columns, &got, &before);
    }
}

/// Ordered reads deliver rows in key order (bytewise for text, numeric for numbers), whatever the
/// insert order.
pub async fn ordered_reads(c: &dyn Connector) {
    let columns = vec![
        col("k", DataType::Text, false),
        col("n", DataType::Int64, true),
    ];
    let keys = ["b", "B", "a", "é", "aa", "", "Z", "😀", "a b", "10", "9"];
    let rows: Vec<Vec<Value>> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| vec![Value::Text((*k).into()), Value::Int64(i as i64)])
        .collect();
    let t = table("kit_ordered");
    write_rows(
        c,
        write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
        &rows,
        BatchLimits::DEFAULT,
    )
    .await;
    let (got, _) = read_rows(c, read_request(t, columns.clone(), BatchLimits::rows(3))).await;
    let mut want = rows.clone();
    want.sort_by(|a, b| a[0].cmp_key(&b[0]));
    assert_rows_equal("kit_ordered", &columns, &got, &want);
}

/// Source filters select rows; a target filter replaces only the matching rows.
pub async fn filters(c: &dyn Connector) {
    let columns = vec![
        col("id", DataType::Int64, false),
        col("region", DataType::Text, true),
    ];
    let rows: Vec<Vec<Value>> = (0..20)
        .map(|i| {
            vec![
                Value::Int64(i),
                Value::Text(if i % 2 == 0 { "eu" } else { "us" }.into()),
            ]
        })
        .collect();
    let t = table("kit_filter");
    write_rows(
        c,
        write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
        &rows,
        BatchLimits::DEFAULT,
    )
    .await;
    let quoted = quote_identifier(c, "region");
    let eu = Condition::new(format!("{quoted} = 'eu'")).expect("valid condition");

    let mut request = read_request(t.clone(), columns.clone(), BatchLimits::DEFAULT);
    request.filter = Some(eu.clone());
    let (got, _) = read_rows(c, request).await;
    let is_eu = |r: &Vec<Value>| matches!(&r[1], Value::Text(s) if s == "eu");
    let want: Vec<Vec<Value>> = rows.iter().filter(|r| is_eu(r)).cloned().collect();
    assert_rows_equal("kit_filter (eu)", &columns, &got, &want);
    assert_eq!(
        reader(c).count_rows(&t, Some(&eu)).await.expect("count"),
        10,
        "kit_filter eu count"
    );

    // Replace only the eu rows with two new ones; the us rows stay.
    let mut request = write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad);
    request.filter = Some(eu);
    let new_rows = vec![
        vec![Value::Int64(100), Value::Text("eu".into())],
        vec![Value::Int64(102), Value::Text("eu".into())],
    ];
    write_rows(c, request, &new_rows, BatchLimits::DEFAULT).await;
    let (got, _) = read_rows(c, read_request(t, columns.clone(), BatchLimits::DEFAULT)).await;
    let mut want: Vec<Vec<Value>> = rows.into_iter().filter(|r| !is_eu(r)).collect();
    want.extend(new_rows);
    assert_rows_equal(
        "kit_filter (after target-filtered load)",
        &columns,
        &got,
        &want,
    );
}

/// A missing table is `Ok(None)` to introspection and a `NotFound` error to reads and counts.
pub async fn missing_table(c: &dyn Connector) {
    // Another table exists, so the database does and only the table is missing.
    let present = vec![col("id", DataType::Int64, false)];
    write_rows(
        c,
        write_request(table("kit_present"), present, WriteStrategy::TruncateLoad),
        &[],
        BatchLimits::DEFAULT,
    )
    .await;
    let t = table("kit_no_such_table");
    let found = c
        .introspector()
        .expect("introspection")
        .table_schema(&t)
        .await
        .expect("introspecting a missing table is not an error");
    assert!(
        found.is_none(),
        "kit_no_such_table introspected as existing"
    );
    let columns = vec![col("id", DataType::Int64, false)];
    let err = match reader(c)
        .read(read_request(t.clone(), columns, BatchLimits::DEFAULT))
        .await
    {
        Ok(mut snapshot) => match snapshot.batches.next().await {
            Some(Err(e)) => e,
            other => panic!(
                "reading a missing table gave {:?}",
                other.map(|r| r.map(|b| b.len()))
            ),
        },
        Err(e) => e,
    };
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "read of a missing table: {err}"
    );
    assert!(
        err.to_string().contains("kit_no_such_table"),
        "error names the table: {err}"
    );
    let err = reader(c)
        .count_rows(&t, None)
        .await
        .expect_err("count of a missing table");
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "count of a missing table: {err}"
    );
}

/// A write whose columns the existing target lacks fails before changing anything.
pub async fn target_mismatch_changes_nothing(c: &dyn Connector) {
    let t = table("kit_mismatch");
    let columns = vec![
        col("id", DataType::Int64, false),
        col("v", DataType::Text, true),
    ];
    let rows = vec![vec![Value::Int64(1), Value::Text("kept".into())]];
    write_rows(
        c,
        write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
        &rows,
        BatchLimits::DEFAULT,
    )
    .await;
    let mut wider = columns.clone();
    wider.push(col("extra", DataType::Int32, true));
    let err = match writer(c)
        .open(write_request(t.clone(), wider, WriteStrategy::TruncateLoad))
        .await
    {
        Ok(_) => panic!("opening a write with a column the target lacks succeeded"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Schema, "{err}");
    assert!(
        err.to_string().contains("extra"),
        "error names the column: {err}"
    );
    let (got, _) = read_rows(c, read_request(t, columns.clone(), BatchLimits::DEFAULT)).await;
    assert_rows_equal("kit_mismatch", &columns, &got, &rows);
}

/// `name` quoted as an identifier in the SQL dialect of `c`'s class, for writing kit filters.
fn quote_identifier(c: &dyn Connector, name: &str) -> String {
    match c.class() {
        sluice_model::definition::LocationClass::Mariadb => format!("`{name}`"),
        _ => format!("\"{name}\""),
    }
}

/// `upsert` inserts new keys, replaces rows of existing keys, deletes by key, and shows nothing
/// before commit; a rolled-back upsert changes nothing. Skipped when the connector has no upsert.
pub async fn upsert_and_delete(c: &dyn Connector) {
    if !c.capabilities().upsert {
        return;
    }
    let columns = vec![
        col("id", DataType::Int64, false),
        col("v", DataType::Text, true),
        col(
            "d",
            DataType::Decimal {
                precision: 12,
                scale: 2,
            },
            true,
        ),
    ];
    let t = table("kit_upsert");
    let row = |i: i64, v: &str| {
        vec![
            Value::Int64(i),
            Value::Text(v.to_string()),
            Value::Decimal(sluice_model::Decimal::parse(&format!("{i}.25")).expect("decimal")),
        ]
    };
    let before: Vec<Vec<Value>> = (0..100).map(|i| row(i, "old")).collect();
    write_rows(
        c,
        write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
        &before,
        BatchLimits::DEFAULT,
    )
    .await;

    // A rolled-back upsert changes nothing.
    let mut w = writer(c)
        .open(write_request(
            t.clone(),
            columns.clone(),
            WriteStrategy::Upsert,
        ))
        .await
        .expect("open upsert");
    let mut b = RowBatch::new(3, BatchLimits::DEFAULT);
    b.push_row(row(5, "new")).expect("width 3");
    w.write_batch(b).await.expect("write upsert batch");
    w.rollback().await.expect("rollback");
    let read = || read_request(t.clone(), columns.clone(), BatchLimits::DEFAULT);
    let (got, _) = read_rows(c, read()).await;
    assert_rows_equal(
        &format!("{t} after rolled-back upsert"),
        &columns,
        &got,
        &before,
    );

    // Update 90..100, insert 100..150, delete 0..10 (and a key that does not exist).
    let mut w = writer(c)
        .open(write_request(
            t.clone(),
            columns.clone(),
            WriteStrategy::Upsert,
        ))
        .await
        .expect("open upsert");
    let mut puts = RowBatch::new(3, BatchLimits::DEFAULT);
    for i in 90..150 {
        puts.push_row(row(i, "new")).expect("width 3");
    }
    w.write_batch(puts).await.expect("write upsert batch");
    let mut deletes = RowBatch::new(1, BatchLimits::DEFAULT);
    for i in (0..10).chain([1_000_000]) {
        deletes.push_row([Value::Int64(i)]).expect("width 1");
    }
    w.delete_batch(deletes).await.expect("delete batch");
    let (during, _) = read_rows(c, read()).await;
    assert_rows_equal(&format!("{t} before commit"), &columns, &during, &before);
    w.commit().await.expect("commit upsert");

    let want: Vec<Vec<Value>> = (10..90)
        .map(|i| row(i, "old"))
        .chain((90..150).map(|i| row(i, "new")))
        .collect();
    let (got, _) = read_rows(c, read()).await;
    assert_rows_equal(&format!("{t} after upsert"), &columns, &got, &want);
}

/// `max_value` reports a column's greatest value (honouring a filter), and a read with a
/// `lower_bound` returns only the rows beyond it, for integer, date and timestamp columns.
pub async fn incremental_reads(c: &dyn Connector) {
    use chrono::{NaiveDate, TimeZone};
    let columns = vec![
        col("id", DataType::Int64, false),
        col("day", DataType::Date, true),
        col("at", DataType::TimestampTz, true),
    ];
    let t = table("kit_incremental");
    let day = |i: i64| {
        NaiveDate::from_ymd_opt(2024, 1, 1).expect("date") + chrono::Duration::days(i / 10)
    };
    let at = |i: i64| {
        chrono::Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .expect("instant")
            + chrono::Duration::microseconds(i * 1_000_001)
    };
    let rows: Vec<Vec<Value>> = (1..=200)
        .map(|i| {
            if i % 50 == 0 {
                // NULLs never count as the greatest value nor pass a bound.
                vec![Value::Int64(i), Value::Null, Value::Null]
            } else {
                vec![
                    Value::Int64(i),
                    Value::Date(day(i)),
                    Value::TimestampTz(at(i)),
                ]
            }
        })
        .collect();
    write_rows(
        c,
        write_request(t.clone(), columns.clone(), WriteStrategy::TruncateLoad),
        &rows,
        BatchLimits::DEFAULT,
    )
    .await;
    let r = reader(c);
    let max = |i: usize| {
        let column = columns[i].clone();
        let t = t.clone();
        async move { r.max_value(&t, &column, None).await.expect("max_value") }
    };
    assert_eq!(max(0).await, Some(Value::Int64(200)), "{t}: max of id");
    assert_eq!(max(1).await, Some(Value::Date(day(199))), "{t}: max of day");
    assert_eq!(
        max(2).await,
        Some(Value::TimestampTz(at(199))),
        "{t}: max of at"
    );
    let filter = Condition::new("id < 100").expect("condition");
    assert_eq!(
        r.max_value(&t, &columns[0], Some(&filter))
            .await
            .expect("max_value"),
        Some(Value::Int64(99)),
        "{t}: max of id where id < 100"
    );
    let empty = table("kit_incremental_empty");
    write_rows(
        c,
        write_request(empty.clone(), columns.clone(), WriteStrategy::TruncateLoad),
        &[],
        BatchLimits::DEFAULT,
    )
    .await;
    assert_eq!(
        r.max_value(&empty, &columns[0], None)
            .await
            .expect("max_value"),
        None,
        "{empty}: max of an empty table"
    );

    let bounded = |column: usize, value: Value, inclusive: bool| {
        let mut request = read_request(t.clone(), columns.clone(), BatchLimits::rows(7));
        request.lower_bound = Some(crate::LowerBound {
            column,
            value,
            inclusive,
        });
        request
    };
    let expect = |pred: &dyn Fn(i64) -> bool| -> Vec<Vec<Value>> {
        rows.iter()
            .filter(|r| matches!(r[0], Value::Int64(i) if pred(i)))
            .cloned()
            .collect()
    };
    let (got, _) = read_rows(c, bounded(0, Value::Int64(150), false)).await;
    assert_rows_equal(
        &format!("{t} id > 150"),
        &columns,
        &got,
        &expect(&|i| i > 150),
    );
    let (got, _) = read_rows(c, bounded(1, Value::Date(day(150)), true)).await;
    assert_rows_equal(
        &format!("{t} day >= {}", day(150)),
        &columns,
        &got,
        &expect(&|i| i >= 150 && i % 50 != 0),
    );
    let (got, _) = read_rows(c, bounded(2, Value::TimestampTz(at(120)), false)).await;
    assert_rows_equal(
        &format!("{t} at > {}", at(120)),
        &columns,
        &got,
        &expect(&|i| i > 120 && i % 50 != 0),
    );
    // A bound and a filter together.
    let mut both = bounded(0, Value::Int64(150), true);
    both.filter = Some(Condition::new("id <= 160").expect("condition"));
    let (got, _) = read_rows(c, both).await;
    assert_rows_equal(
        &format!("{t} 150 <= id <= 160"),
        &columns,
        &got,
        &expect(&|i| (150..=160).contains(&i)),
    );
}
