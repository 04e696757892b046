//! Engine behaviour on the in-memory connector: copies, failures that leave the target as it was,
//! cancellation, pre-flight errors, and both kinds of compare.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use sluice_connector::kit::memory::MemoryConnector;
use sluice_connector::kit::{col, table};
use sluice_connector::{ErrorKind, WriteStrategy};
use sluice_engine::plan::{RefreshMode, RowwiseApply};
use sluice_engine::{
    CompareOptions, CompareState, Granularity, ProgressSink, RefreshOptions, RefreshState,
    TableSpec, plan_compare, plan_refresh, run_compare, run_refresh, run_refresh_gated,
};
use sluice_model::{BatchLimits, ColumnName, DataType, TableName, TableSchema, Value};
use tokio_util::sync::CancellationToken;

fn orders_schema(name: &str, id_type: DataType) -> TableSchema {
    TableSchema {
        table: table(name),
        columns: vec![col("id", id_type, false), col("note", DataType::Text, true)],
        primary_key: vec![ColumnName::new("id").unwrap()],
    }
}

fn rows(n: i64, note: &str) -> Vec<Vec<Value>> {
    (0..n)
        .map(|i| vec![Value::Int64(i), Value::Text(format!("{note} {i}"))])
        .collect()
}

fn spec(name: &str) -> TableSpec {
    TableSpec::new(TableName::new(name).unwrap(), table(name), table(name))
}

fn options(strategy: WriteStrategy, batch_rows: usize) -> RefreshOptions {
    RefreshOptions {
        strategy,
        limits: BatchLimits::rows(batch_rows),
        count_first: true,
        parallel: 2,
    }
}

async fn refresh(
    source: &MemoryConnector,
    target: &MemoryConnector,
    specs: &[TableSpec],
    options: RefreshOptions,
    cancel: CancellationToken,
) -> Vec<sluice_engine::RefreshReport> {
    let plans = plan_refresh(specs, source, target, &options).await.unwrap();
    run_refresh(
        Arc::new(source.clone()),
        Arc::new(target.clone()),
        plans,
        options,
        ProgressSink::none(),
        cancel,
    )
    .await
}

#[tokio::test]
async fn refresh_copies_every_row_and_creates_the_target() {
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    source.put_table(orders_schema("orders", DataType::Int64), rows(2500, "n"));
    for strategy in [WriteStrategy::TruncateLoad, WriteStrategy::StagingSwap] {
        let reports = refresh(
            &source,
            &target,
            &[spec("orders")],
            options(strategy, 1000),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(
            reports[0].state,
            RefreshState::Done,
            "{:?}",
            reports[0].error
        );
        assert_eq!(
            (reports[0].source_rows, reports[0].target_rows),
            (2500, 2500)
        );
        assert_eq!(target.rows(&table("orders")).unwrap(), rows(2500, "n"));
    }
}

#[tokio::test]
async fn progress_reports_start_rows_and_finish() {
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    source.put_table(orders_schema("orders", DataType::Int64), rows(25, "n"));
    let options = options(WriteStrategy::TruncateLoad, 10);
    let plans = plan_refresh(&[spec("orders")], &source, &target, &options)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    run_refresh(
        Arc::new(source),
        Arc::new(target),
        plans,
        options,
        ProgressSink::new(tx),
        CancellationToken::new(),
    )
    .await;
    let mut seen = Vec::new();
    while let Ok(p) = rx.try_recv() {
        seen.push(p);
    }
    use sluice_engine::Progress::*;
    assert!(
        matches!(
            &seen[0],
            Started {
                total_rows: Some(25),
                ..
            }
        ),
        "{seen:?}"
    );
    let advanced: Vec<u64> = seen
        .iter()
        .filter_map(|p| match p {
            Advanced { rows, .. } => Some(*rows),
            _ => None,
        })
        .collect();
    assert_eq!(advanced, vec![10, 20, 25]);
    assert!(
        matches!(
            seen.last(),
            Some(Finished {
                ok: true,
                rows: 25,
                ..
            })
        ),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_failed_write_leaves_the_target_as_it_was() {
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    source.put_table(orders_schema("orders", DataType::Int64), rows(100, "new"));
    target.put_table(orders_schema("orders", DataType::Int64), rows(3, "old"));
    target.fail_writes_after(50);
    let reports = refresh(
        &source,
        &target,
        &[spec("orders")],
        options(WriteStrategy::TruncateLoad, 20),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(reports[0].state, RefreshState::Failed);
    let error = reports[0].error.as_ref().unwrap();
    assert_eq!(error.table.as_str(), "orders");
    assert!(
        error.source.to_string().contains("injected failure"),
        "{error:?}"
    );
    assert_eq!(target.rows(&table("orders")).unwrap(), rows(3, "old"));
}

#[tokio::test]
async fn a_cancelled_refresh_leaves_the_target_as_it_was() {
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    source.put_table(orders_schema("orders", DataType::Int64), rows(100, "new"));
    target.put_table(orders_schema("orders", DataType::Int64), rows(3, "old"));
    let cancel = CancellationToken::new();
    cancel.cancel();
    let reports = refresh(
        &source,
        &target,
        &[spec("orders")],
        options(WriteStrategy::TruncateLoad, 20),
        cancel,
    )
    .await;
    assert_eq!(reports[0].state, RefreshState::Canceled);
    assert_eq!(
        reports[0].error.as_ref().unwrap().kind(),
        ErrorKind::Cancelled
    );
    assert_eq!(target.rows(&table("orders")).unwrap(), rows(3, "old"));
}

#[tokio::test]
async fn a_closed_commit_gate_leaves_the_target_as_it_was() {
    // A cancel recorded elsewhere, seen only by the gate asked right before the commit: every row
    // is written, nothing is committed, and the run's cancel token fires for the other tables.
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    source.put_table(orders_schema("orders", DataType::Int64), rows(100, "new"));
    target.put_table(orders_schema("orders", DataType::Int64), rows(3, "old"));
    let gate = Arc::new(Gate::new(false));
    let opts = options(WriteStrategy::TruncateLoad, 20);
    let plans = plan_refresh(&[spec("orders")], &source, &target, &opts)
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    let reports = run_refresh_gated(
        Arc::new(source.clone()),
        Arc::new(target.clone()),
        plans,
        opts,
        ProgressSink::none(),
        cancel.clone(),
        Some(gate.clone()),
    )
    .await;
    assert_eq!(reports[0].state, RefreshState::Canceled);
    assert_eq!(
        reports[0].source_rows, 100,
        "every row was read before the gate"
    );
    assert_eq!(
        gate.calls(),
        ["begin orders"],
        "no commit began, none ended"
    );
    assert!(cancel.is_cancelled());
    assert_eq!(target.rows(&table("orders")).unwrap(), rows(3, "old"));

    // An open gate commits, and hears that the table committed.
    let gate = Arc::new(Gate::new(true));
    let plans = plan_refresh(&[spec("orders")], &source, &target, &opts)
        .await
        .unwrap();
    let reports = run_refresh_gated(
        Arc::new(source.clone()),
        Arc::new(target.clone()),
        plans,
        opts,
        ProgressSink::none(),
        CancellationToken::new(),
        Some(gate.clone()),
    )
    .await;
    assert_eq!(reports[0].state, RefreshState::Done);
    assert_eq!(target.rows(&table("orders")).unwrap(), rows(100, "new"));
    assert_eq!(gate.calls(), ["begin orders", "end orders committed"]);
}

/// A commit gate that answers `open` and records what it was told.
struct Gate {
    open: bool,
    calls: std::sync::Mutex<Vec<String>>,
}

impl Gate {
    fn new(open: bool) -> Self {
        Gate {
            open,
            calls: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl sluice_engine::CommitGate for Gate {
    fn begin(&self, table: &TableName) -> futures::future::BoxFuture<'static, bool> {
        self.calls.lock().unwrap().push(format!("begin {table}"));
        let open = self.open;
        Box::pin(async move { open })
    }

    fn end(&self, table: &TableName, committed: bool) -> futures::future::BoxFuture<'static, ()> {
        let how = if committed {
            "committed"
        } else {
            "rolled back"
        };
        self.calls
            .lock()
            .unwrap()
            .push(format!("end {table} {how}"));
        Box::pin(async {})
    }
}

#[tokio::test]
async fn a_value_the_target_cannot_hold_fails_naming_table_column_and_key() {
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    let mut source_rows = rows(5, "n");
    source_rows[3][0] = Value::Int64(1 << 40);
    source.put_table(orders_schema("orders", DataType::Int64), source_rows);
    target.put_table(
        orders_schema("orders", DataType::Int32),
        vec![vec![Value::Int32(9), Value::Null]],
    );
    let reports = refresh(
        &source,
        &target,
        &[spec("orders")],
        options(WriteStrategy::TruncateLoad, 2),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(reports[0].state, RefreshState::Failed);
    let message = reports[0].error.as_ref().unwrap().source.to_string();
    assert!(
        message.contains("orders")
            && message.contains("(id=1099511627776)")
            && message.contains("column id"),
        "{message}"
    );
    assert!(message.contains("outside the range of int32"), "{message}");
    assert_eq!(
        target.rows(&table("orders")).unwrap(),
        vec![vec![Value::Int32(9), Value::Null]]
    );
}

#[tokio::test]
async fn pre_flight_stops_before_anything_changes() {
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    source.put_table(orders_schema("orders", DataType::Int64), rows(10, "n"));
    target.put_table(orders_schema("orders", DataType::Int64), rows(2, "old"));
    let options = options(WriteStrategy::TruncateLoad, 100);

    // A second table whose source vanished: the plan fails, orders is not touched either.
    let error = plan_refresh(&[spec("orders"), spec("gone")], &source, &target, &options)
        .await
        .unwrap_err();
    assert_eq!(error.table.as_str(), "gone");
    assert_eq!(error.kind(), ErrorKind::NotFound);
    assert!(
        error
            .source
            .to_string()
            .contains("source table gone does not exist"),
        "{}",
        error.source
    );

    // A target without a column the channel writes.
    target.put_table(
        TableSchema {
            table: table("narrow"),
            columns: vec![col("id", DataType::Int64, false)],
            primary_key: vec![],
        },
        vec![],
    );
    source.put_table(orders_schema("narrow", DataType::Int64), rows(1, "n"));
    let error = plan_refresh(&[spec("narrow")], &source, &target, &options)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Schema);
    assert!(
        error.source.to_string().contains("has no column note"),
        "{}",
        error.source
    );
    assert_eq!(target.rows(&table("orders")).unwrap(), rows(2, "old"));
}

#[tokio::test]
async fn absent_columns_are_skipped_or_filled_with_null() {
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    source.put_table(orders_schema("orders", DataType::Int64), rows(3, "n"));
    let mut s = spec("orders");
    s.target_absent.insert(ColumnName::new("note").unwrap());
    let reports = refresh(
        &source,
        &target,
        &[s],
        options(WriteStrategy::TruncateLoad, 10),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(reports[0].state, RefreshState::Done);
    assert_eq!(
        target.rows(&table("orders")).unwrap(),
        (0..3).map(|i| vec![Value::Int64(i)]).collect::<Vec<_>>()
    );
}

async fn compare(
    source: &MemoryConnector,
    target: &MemoryConnector,
    granularity: Granularity,
    max_listed: usize,
) -> sluice_engine::CompareReport {
    let plans = plan_compare(
        &[spec("t")],
        source,
        target,
        granularity,
        BatchLimits::rows(7),
    )
    .await
    .unwrap();
    run_compare(
        Arc::new(source.clone()),
        Arc::new(target.clone()),
        plans,
        CompareOptions {
            granularity,
            max_listed,
            pushdown: true,
        },
        ProgressSink::none(),
        CancellationToken::new(),
    )
    .await
    .remove(0)
}

#[tokio::test]
async fn compare_finds_identical_and_different_tables() {
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    source.put_table(orders_schema("t", DataType::Int64), rows(50, "n"));
    // Same rows in another order, and the target's id is int32: still identical.
    let mut shuffled: Vec<Vec<Value>> = rows(50, "n")
        .into_iter()
        .rev()
        .map(|mut r| {
            if let Value::Int64(i) = r[0] {
                r[0] = Value::Int32(i as i32);
            }
            r
        })
        .collect();
    target.put_table(orders_schema("t", DataType::Int32), shuffled.clone());
    for granularity in [Granularity::Bulk, Granularity::Rowwise] {
        let report = compare(&source, &target, granularity, 10).await;
        assert_eq!(
            report.state,
            CompareState::Identical,
            "{granularity:?} {:?}",
            report.error
        );
    }

    // Delete 3, add 2, change 4.
    shuffled.retain(|r| !matches!(r[0], Value::Int32(10..=12)));
    shuffled.push(vec![Value::Int32(100), Value::Null]);
    shuffled.push(vec![Value::Int32(101), Value::Null]);
    for r in shuffled
        .iter_mut()
        .filter(|r| matches!(r[0], Value::Int32(20..=23)))
    {
        r[1] = Value::Text("changed".into());
    }
    target.put_table(orders_schema("t", DataType::Int32), shuffled);
    let bulk = compare(&source, &target, Granularity::Bulk, 10).await;
    assert_eq!(bulk.state, CompareState::Different);
    assert_eq!((bulk.source_rows, bulk.target_rows), (50, 49));
    let report = compare(&source, &target, Granularity::Rowwise, 2).await;
    assert_eq!(report.state, CompareState::Different);
    let diff = report.diff.unwrap();
    assert_eq!(
        (diff.only_on_source, diff.only_on_target, diff.differ),
        (3, 2, 4)
    );
    assert_eq!(
        diff.only_on_source_keys,
        vec![vec![Value::Int64(10)], vec![Value::Int64(11)]],
        "listing is capped"
    );
    assert_eq!(
        diff.only_on_target_keys,
        vec![vec![Value::Int64(100)], vec![Value::Int64(101)]],
        "target values are compared (and listed) as the source's types"
    );
    assert_eq!(diff.differ_keys.len(), 2);
}

#[tokio::test]
async fn duplicate_keys_fail_a_rowwise_compare_instead_of_miscounting() {
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    let mut dup = rows(5, "n");
    dup.push(vec![Value::Int64(2), Value::Text("again".into())]);
    source.put_table(orders_schema("t", DataType::Int64), dup);
    target.put_table(orders_schema("t", DataType::Int64), rows(5, "n"));
    let report = compare(&source, &target, Granularity::Rowwise, 10).await;
    assert_eq!(report.state, CompareState::Failed);
    let message = report.error.unwrap().source.to_string();
    assert!(
        message.contains("strictly increasing key order at key (id=2)"),
        "{message}"
    );
}

#[tokio::test]
async fn a_rowwise_compare_needs_a_key() {
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    let mut keyless = orders_schema("t", DataType::Int64);
    keyless.primary_key.clear();
    source.put_table(keyless.clone(), rows(2, "n"));
    target.put_table(keyless, rows(2, "n"));
    let error = plan_compare(
        &[spec("t")],
        &source,
        &target,
        Granularity::Rowwise,
        BatchLimits::DEFAULT,
    )
    .await
    .unwrap_err();
    assert!(
        error.source.to_string().contains("needs a key"),
        "{}",
        error.source
    );
    // Bulk works without a key.
    assert_eq!(
        compare(&source, &target, Granularity::Bulk, 1).await.state,
        CompareState::Identical
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Row-wise counts equal a naive set computation; bulk says identical exactly when the
    /// multisets of rows are equal.
    #[test]
    fn compare_agrees_with_a_naive_reference(
        source_map in proptest::collection::btree_map(0i64..60, 0u8..3, 0..40),
        target_map in proptest::collection::btree_map(0i64..60, 0u8..3, 0..40),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let to_rows = |m: &BTreeMap<i64, u8>| -> Vec<Vec<Value>> {
            m.iter().map(|(k, v)| vec![Value::Int64(*k), Value::Text(v.to_string())]).collect()
        };
        let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
        source.put_table(orders_schema("t", DataType::Int64), to_rows(&source_map));
        target.put_table(orders_schema("t", DataType::Int64), to_rows(&target_map));
        let only_s = source_map.keys().filter(|k| !target_map.contains_key(k)).count() as u64;
        let only_t = target_map.keys().filter(|k| !source_map.contains_key(k)).count() as u64;
        let differ = source_map.iter().filter(|(k, v)| target_map.get(k).is_some_and(|w| w != *v)).count() as u64;
        let report = runtime.block_on(compare(&source, &target, Granularity::Rowwise, 1000));
        let diff = report.diff.unwrap();
        prop_assert_eq!((diff.only_on_source, diff.only_on_target, diff.differ), (only_s, only_t, differ));
        let bulk = runtime.block_on(compare(&source, &target, Granularity::Bulk, 0));
        prop_assert_eq!(bulk.state == CompareState::Identical, source_map == target_map);
    }
}

fn sorted(mut rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
    rows.sort_by(|a, b| a[0].cmp_key(&b[0]));
    rows
}

#[tokio::test]
async fn incremental_copies_only_rows_beyond_the_targets_greatest_key() {
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    source.put_table(orders_schema("orders", DataType::Int64), rows(1000, "n"));
    let mut s = spec("orders");
    s.mode = RefreshMode::Incremental {
        column: ColumnName::new("id").unwrap(),
        date_buffer_days: 0,
    };
    // First run: the target is missing, so every row is copied.
    let reports = refresh(
        &source,
        &target,
        std::slice::from_ref(&s),
        options(WriteStrategy::TruncateLoad, 100),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        reports[0].state,
        RefreshState::Done,
        "{:?}",
        reports[0].error
    );
    assert_eq!(reports[0].source_rows, 1000);
    // 10 new rows and one changed old row: only the new ones travel; the old change stays behind.
    let mut more = rows(1010, "n");
    more[5][1] = Value::Text("changed".into());
    source.put_table(orders_schema("orders", DataType::Int64), more.clone());
    let plans = plan_refresh(
        std::slice::from_ref(&s),
        &source,
        &target,
        &options(WriteStrategy::TruncateLoad, 100),
    )
    .await
    .unwrap();
    assert_eq!(plans[0].description, "incremental: id > 999");
    let reports = refresh(
        &source,
        &target,
        std::slice::from_ref(&s),
        options(WriteStrategy::TruncateLoad, 100),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        reports[0].state,
        RefreshState::Done,
        "{:?}",
        reports[0].error
    );
    assert_eq!(reports[0].source_rows, 10);
    let got = sorted(target.rows(&table("orders")).unwrap());
    assert_eq!(got.len(), 1010);
    assert_eq!(got[1009], more[1009]);
    assert_eq!(
        got[5],
        rows(6, "n")[5],
        "rows below the bound are not re-read"
    );
}

#[tokio::test]
async fn incremental_by_date_upserts_the_buffer_without_duplicates() {
    use chrono::NaiveDate;
    let schema = TableSchema {
        table: table("events"),
        columns: vec![
            col("id", DataType::Int64, false),
            col("day", DataType::Date, false),
        ],
        primary_key: vec![ColumnName::new("id").unwrap()],
    };
    let day = |d: u32| Value::Date(NaiveDate::from_ymd_opt(2024, 3, d).unwrap());
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    let first: Vec<Vec<Value>> = (1..=10)
        .map(|i| vec![Value::Int64(i), day(i as u32)])
        .collect();
    source.put_table(schema.clone(), first.clone());
    target.put_table(schema.clone(), first.clone());
    let mut all = first.clone();
    all.push(vec![Value::Int64(11), day(9)]); // late arrival inside the buffer
    all.push(vec![Value::Int64(12), day(12)]);
    source.put_table(schema, all.clone());
    let mut s = spec("events");
    s.mode = RefreshMode::Incremental {
        column: ColumnName::new("day").unwrap(),
        date_buffer_days: 2,
    };
    let plans = plan_refresh(
        std::slice::from_ref(&s),
        &source,
        &target,
        &options(WriteStrategy::TruncateLoad, 100),
    )
    .await
    .unwrap();
    assert_eq!(plans[0].description, "incremental: day >= 2024-03-08");
    let reports = refresh(
        &source,
        &target,
        &[s],
        options(WriteStrategy::TruncateLoad, 100),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        reports[0].state,
        RefreshState::Done,
        "{:?}",
        reports[0].error
    );
    assert_eq!(reports[0].source_rows, 5, "days 8, 9, 9, 10 and 12");
    assert_eq!(sorted(target.rows(&table("events")).unwrap()), sorted(all));
}

#[tokio::test]
async fn smart_sync_loads_an_empty_target_fully_then_goes_incremental() {
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    source.put_table(orders_schema("orders", DataType::Int64), rows(300, "n"));
    target.put_table(orders_schema("orders", DataType::Int64), Vec::new());
    let mut s = spec("orders");
    s.mode = RefreshMode::SmartSync {
        column: ColumnName::new("id").unwrap(),
        date_buffer_days: 0,
    };
    let opts = options(WriteStrategy::StagingSwap, 100);
    let plans = plan_refresh(std::slice::from_ref(&s), &source, &target, &opts)
        .await
        .unwrap();
    assert_eq!(
        plans[0].description,
        "smart_sync: the target is empty, full_replace (staging_swap)"
    );
    refresh(
        &source,
        &target,
        std::slice::from_ref(&s),
        opts,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(target.rows(&table("orders")).unwrap().len(), 300);
    source.put_table(orders_schema("orders", DataType::Int64), rows(310, "n"));
    let plans = plan_refresh(std::slice::from_ref(&s), &source, &target, &opts)
        .await
        .unwrap();
    assert_eq!(plans[0].description, "incremental: id > 299");
    let reports = refresh(&source, &target, &[s], opts, CancellationToken::new()).await;
    assert_eq!(reports[0].source_rows, 10);
    assert_eq!(target.rows(&table("orders")).unwrap().len(), 310);
}

#[tokio::test]
async fn rowwise_applies_only_the_differences() {
    for apply in [
        RowwiseApply::All,
        RowwiseApply::NoDeletes,
        RowwiseApply::OnlyDeletes,
    ] {
        let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
        let src = rows(1000, "n");
        // The target misses 100..110, has 5 changed rows and 3 extra rows.
        let mut tgt: Vec<Vec<Value>> = src
            .iter()
            .filter(|r| !matches!(r[0], Value::Int64(i) if (100..110).contains(&i)))
            .cloned()
            .collect();
        for row in tgt.iter_mut().take(5) {
            row[1] = Value::Text("stale".into());
        }
        for i in 2000..2003 {
            tgt.push(vec![Value::Int64(i), Value::Text("extra".into())]);
        }
        source.put_table(orders_schema("orders", DataType::Int64), src.clone());
        target.put_table(
            orders_schema("orders", DataType::Int32),
            tgt.iter()
                .map(|r| {
                    vec![
                        match r[0] {
                            Value::Int64(i) => Value::Int32(i as i32),
                            ref v => v.clone(),
                        },
                        r[1].clone(),
                    ]
                })
                .collect(),
        );
        let mut s = spec("orders");
        s.mode = RefreshMode::Rowwise { apply };
        let reports = refresh(
            &source,
            &target,
            &[s],
            options(WriteStrategy::TruncateLoad, 64),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(
            reports[0].state,
            RefreshState::Done,
            "{apply:?}: {:?}",
            reports[0].error
        );
        let got = sorted(target.rows(&table("orders")).unwrap());
        let as_i64 = |rows: Vec<Vec<Value>>| -> Vec<Vec<Value>> {
            rows.into_iter()
                .map(|r| {
                    vec![
                        match r[0] {
                            Value::Int32(i) => Value::Int64(i64::from(i)),
                            ref v => v.clone(),
                        },
                        r[1].clone(),
                    ]
                })
                .collect()
        };
        let got = as_i64(got);
        match apply {
            RowwiseApply::All => {
                assert_eq!(got, src);
                assert_eq!(
                    reports[0].target_rows, 15,
                    "10 inserts and 5 updates written"
                );
            }
            RowwiseApply::NoDeletes => {
                assert_eq!(got.len(), 1003);
                assert_eq!(&got[..1000], &src[..]);
            }
            RowwiseApply::OnlyDeletes => {
                assert_eq!(got.len(), 990);
                assert_eq!(got[0][1], Value::Text("stale".into()));
            }
        }
    }
}

#[tokio::test]
async fn a_failed_rowwise_refresh_leaves_the_target_as_it_was() {
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    source.put_table(orders_schema("orders", DataType::Int64), rows(1000, "new"));
    target.put_table(orders_schema("orders", DataType::Int64), rows(500, "old"));
    target.fail_writes_after(100);
    let mut s = spec("orders");
    s.mode = RefreshMode::Rowwise {
        apply: RowwiseApply::All,
    };
    let reports = refresh(
        &source,
        &target,
        &[s],
        options(WriteStrategy::TruncateLoad, 64),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(reports[0].state, RefreshState::Failed);
    assert_eq!(target.rows(&table("orders")).unwrap(), rows(500, "old"));
}

#[tokio::test]
async fn online_compare_reads_the_suspect_keys_and_settles_what_replication_applies() {
    let (source, target) = (MemoryConnector::new(), MemoryConnector::new());
    source.put_table(orders_schema("t", DataType::Int64), rows(30, "n"));
    let mut stale = rows(30, "n");
    stale[4][1] = Value::Text("old".into());
    stale[9][1] = Value::Text("changed at the target".into());
    stale.remove(20);
    target.put_table(orders_schema("t", DataType::Int64), stale);
    let plans = plan_compare(
        &[spec("t")],
        &source,
        &target,
        Granularity::Rowwise,
        BatchLimits::rows(7),
    )
    .await
    .unwrap();
    let plan = plans.into_iter().next().unwrap();
    let first = compare(&source, &target, Granularity::Rowwise, 100).await;
    let diff = first.diff.unwrap();
    let mut suspects = [diff.differ_keys, diff.only_on_source_keys].concat();
    sluice_engine::sort_keys(&mut suspects);
    assert_eq!(suspects.len(), 3);

    // Reading keys: absent ones are None on that side; keys past the end are found too.
    let mut asked = suspects.clone();
    asked.push(vec![Value::Int64(99)]);
    let read = sluice_engine::read_keys(&source, &target, &plan, &asked, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(read.len(), 4);
    assert_eq!(
        read[0].target.as_ref().unwrap()[1],
        Value::Text("old".into())
    );
    assert_eq!(read[2].target, None);
    assert!(read[2].source.is_some());
    assert_eq!(
        (read[3].source.clone(), read[3].target.clone()),
        (None, None)
    );

    // "Replication" applies the in-flight changes of rows 4 and 20 at the first wait; row 9 was
    // changed only at the target.
    let applier = target.clone();
    let mut waited = 0;
    let (s, t, p) = (source.clone(), target.clone(), plan.clone());
    let settled = sluice_engine::settle(
        suspects,
        sluice_engine::OnlineOptions::default(),
        10,
        move || {
            waited += 1;
            if waited == 1 {
                let mut fixed = rows(30, "n");
                fixed[9][1] = Value::Text("changed at the target".into());
                applier.put_table(orders_schema("t", DataType::Int64), fixed);
            }
            Box::pin(async { Ok(()) })
        },
        move |keys| {
            let (s, t, p) = (s.clone(), t.clone(), p.clone());
            Box::pin(async move {
                sluice_engine::read_keys(&s, &t, &p, &keys, &CancellationToken::new()).await
            })
        },
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(settled.settled, 2);
    assert_eq!(settled.confirmed.differ_keys, vec![vec![Value::Int64(9)]]);
    assert_eq!(settled.in_flight, 0);
    assert_eq!(settled.rounds, 2);
}

// ---- compare pushdown on real PostgreSQL ----

/// A fresh database on the test server (`SLUICE_TEST_PG`, dropped afterwards) and a connector to
/// it; an unreachable server fails the test.
async fn pg_fresh() -> (
    sluice_test_support::TestDatabase,
    tokio_postgres::Client,
    sluice_postgres::PostgresConnector,
) {
    let db = sluice_test_support::TestDatabase::create("sluice_pushdown_test_").await;
    let config: tokio_postgres::Config = db.url.parse().unwrap();
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns)]
        _ => "127.0.0.1".to_owned(),
    };
    let mut props = BTreeMap::new();
    props.insert("Database_Host".to_owned(), host);
    props.insert(
        "Database_Port".to_owned(),
        config
            .get_ports()
            .first()
            .copied()
            .unwrap_or(5432)
            .to_string(),
    );
    props.insert(
        "Database_User".to_owned(),
        config.get_user().unwrap_or("postgres").to_owned(),
    );
    if let Some(password) = config.get_password() {
        props.insert(
            "Database_Password".to_owned(),
            String::from_utf8_lossy(password).into_owned(),
        );
    }
    props.insert("Database_Name".to_owned(), db.name.clone());
    let connector = sluice_postgres::PostgresConnector::new(
        sluice_postgres::PostgresConfig::from_props(&props).unwrap(),
    );
    (db, client, connector)
}

async fn pg_compare(
    c: &sluice_postgres::PostgresConnector,
    source: &str,
    target: &str,
    granularity: Granularity,
    pushdown: bool,
) -> sluice_engine::CompareReport {
    let spec = TableSpec::new(TableName::new("t").unwrap(), table(source), table(target));
    let plans = plan_compare(&[spec], c, c, granularity, BatchLimits::rows(500))
        .await
        .unwrap();
    let report = run_compare(
        Arc::new(c.clone()),
        Arc::new(c.clone()),
        plans,
        CompareOptions {
            granularity,
            max_listed: 1000,
            pushdown,
        },
        ProgressSink::none(),
        CancellationToken::new(),
    )
    .await
    .remove(0);
    assert!(report.error.is_none(), "{:?}", report.error);
    report
}

/// The row-wise reports of both paths, which must be the same; and the bulk verdicts.
async fn both_paths(
    c: &sluice_postgres::PostgresConnector,
    source: &str,
    target: &str,
) -> sluice_engine::RowDiff {
    let full = pg_compare(c, source, target, Granularity::Rowwise, false).await;
    let pushed = pg_compare(c, source, target, Granularity::Rowwise, true).await;
    assert_eq!(
        pushed.diff, full.diff,
        "{source} vs {target}: same row-wise report"
    );
    assert_eq!(
        (pushed.source_rows, pushed.target_rows, pushed.state),
        (full.source_rows, full.target_rows, full.state)
    );
    let bulk_full = pg_compare(c, source, target, Granularity::Bulk, false).await;
    let bulk_pushed = pg_compare(c, source, target, Granularity::Bulk, true).await;
    assert_eq!(
        bulk_pushed.state, bulk_full.state,
        "{source} vs {target}: same bulk verdict"
    );
    assert_eq!(
        (bulk_pushed.source_rows, bulk_pushed.target_rows),
        (bulk_full.source_rows, bulk_full.target_rows)
    );
    assert_eq!(bulk_pushed.state, full.state);
    full.diff.unwrap()
}

fn int_of(v: &Value) -> i64 {
    match v {
        Value::Int16(i) => i64::from(*i),
        Value::Int32(i) => i64::from(*i),
        Value::Int64(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

fn int_keys(keys: &[Vec<Value>]) -> Vec<i64> {
    keys.iter().map(|k| int_of(&k[0])).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushdown_finds_the_same_differences_as_reading_every_row() {
    let (_db, admin, c) = pg_fresh().await;
    admin
        .batch_execute(
            "CREATE TABLE src (id bigint PRIMARY KEY, name varchar(64) NOT NULL, \
               amount numeric(12,2) NOT NULL, created timestamptz NOT NULL, flag boolean NOT NULL, \
               doc jsonb NOT NULL, note text);
             INSERT INTO src SELECT i, 'name-' || i, (i * 7) / 100.0, \
               timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second', i % 3 = 0, \
               jsonb_build_object('id', i, 'ok', i % 2 = 0), \
               CASE WHEN i % 10 = 0 THEN NULL ELSE 'note ' || i END \
             FROM generate_series(1, 200000) AS i;
             CREATE TABLE same (LIKE src INCLUDING ALL); INSERT INTO same SELECT * FROM src;
             CREATE TABLE tgt (LIKE src INCLUDING ALL); INSERT INTO tgt SELECT * FROM src;
             UPDATE tgt SET name = 'changed' WHERE id IN (1, 6250, 6251, 123456, 200000);
             UPDATE tgt SET amount = amount + 0.01 WHERE id = 3001;
             UPDATE tgt SET created = created + interval '1 microsecond' WHERE id = 4444;
             UPDATE tgt SET doc = jsonb_build_object('id', id, 'ok', true) WHERE id = 15001;
             UPDATE tgt SET note = '' WHERE id = 9000;
             DELETE FROM tgt WHERE id IN (70000, 199999);
             INSERT INTO tgt SELECT id + 200000, name, amount, created, flag, doc, note FROM src WHERE id = 1;
             INSERT INTO tgt SELECT 0, name, amount, created, flag, doc, note FROM src WHERE id = 2;",
        )
        .await
        .unwrap();

    // Identical tables: no rows move.
    for granularity in [Granularity::Bulk, Granularity::Rowwise] {
        let r = pg_compare(&c, "src", "same", granularity, true).await;
        assert_eq!(r.state, CompareState::Identical);
        assert_eq!((r.source_rows, r.target_rows), (200_000, 200_000));
        assert_eq!(r.bytes, 0, "{granularity:?}: identical tables move no rows");
        let full = pg_compare(&c, "src", "same", granularity, false).await;
        assert_eq!(full.state, CompareState::Identical);
        assert!(full.bytes > 0);
    }
    let diff = both_paths(&c, "src", "same").await;
    assert!(diff.is_empty());

    let diff = both_paths(&c, "src", "tgt").await;
    assert_eq!(
        int_keys(&diff.differ_keys),
        vec![1, 3001, 4444, 6250, 6251, 9000, 15001, 123456, 200000]
    );
    assert_eq!(int_keys(&diff.only_on_source_keys), vec![70000, 199999]);
    assert_eq!(int_keys(&diff.only_on_target_keys), vec![0, 200001]);
    let r = pg_compare(&c, "src", "tgt", Granularity::Bulk, true).await;
    assert_eq!(r.state, CompareState::Different);
    assert!(
        r.bytes > 0 && r.bytes < 2_000_000,
        "only the differing ranges are read: {} bytes",
        r.bytes
    );
}

/// Values a type's own hash calls equal while sluice's compare does not (text in a
/// case-insensitive collation, jsonb numbers of another scale), and values both call equal
/// (numerics of another scale, -0 and 0, json with other blanks): pushdown reports exactly what
/// reading every row reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushdown_tells_apart_what_reading_rows_tells_apart() {
    let (_db, admin, c) = pg_fresh().await;
    admin
        .batch_execute(
            "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
             CREATE TABLE src (id integer PRIMARY KEY, t text COLLATE ci, j jsonb, n numeric, \
               f double precision, js json, ts timestamptz);
             INSERT INTO src SELECT i, 'abc ' || i, '{\"a\": 1.0}', 1.0, 0, '{\"a\":1}', \
               timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute' \
             FROM generate_series(1, 5000) AS i;
             CREATE TABLE tgt (LIKE src INCLUDING ALL); INSERT INTO tgt SELECT * FROM src;
             UPDATE tgt SET t = upper(t) WHERE id = 10;
             UPDATE tgt SET j = '{\"a\": 1.00}' WHERE id = 20;
             UPDATE tgt SET n = 1.00 WHERE id = 30;
             UPDATE tgt SET f = '-0' WHERE id = 40;
             UPDATE tgt SET js = '{\"a\": 1}' WHERE id = 50;
             UPDATE tgt SET t = NULL WHERE id = 60;
             UPDATE src SET t = '' WHERE id = 60;",
        )
        .await
        .unwrap();
    let diff = both_paths(&c, "src", "tgt").await;
    let differ = int_keys(&diff.differ_keys);
    assert!(
        differ.contains(&10) && differ.contains(&60),
        "a case change and NULL against '' are differences: {differ:?}"
    );
    for equal in [30, 40, 50] {
        assert!(!differ.contains(&equal), "{equal} is equal: {differ:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushdown_with_composite_text_keys_in_a_collation_and_a_filter() {
    let (_db, admin, c) = pg_fresh().await;
    admin
        .batch_execute(
            "CREATE TABLE src (region text COLLATE \"en-x-icu\" NOT NULL, n integer NOT NULL, \
               v text, PRIMARY KEY (region, n));
             INSERT INTO src SELECT r, n, 'v ' || r || n \
               FROM unnest(ARRAY['a', 'B', 'b', 'Z', 'z', 'é', 'e', 'E', 'ab', 'A b', '']) AS r, \
                    generate_series(1, 9000) AS n;
             CREATE TABLE same (LIKE src INCLUDING ALL); INSERT INTO same SELECT * FROM src;
             CREATE TABLE tgt (LIKE src INCLUDING ALL); INSERT INTO tgt SELECT * FROM src;
             UPDATE tgt SET v = NULL WHERE (region, n) IN (('B', 1), ('é', 900), ('', 450));
             UPDATE tgt SET v = '' WHERE (region, n) = ('z', 1);
             DELETE FROM tgt WHERE (region, n) IN (('a', 1), ('A b', 900));
             INSERT INTO tgt VALUES ('é', 9001, 'extra'), ('zz', 1, 'extra');",
        )
        .await
        .unwrap();
    let r = pg_compare(&c, "src", "same", Granularity::Rowwise, true).await;
    assert_eq!((r.state, r.bytes), (CompareState::Identical, 0));
    let diff = both_paths(&c, "src", "tgt").await;
    assert_eq!(
        (diff.only_on_source, diff.only_on_target, diff.differ),
        (2, 2, 4)
    );
    let text_keys = |keys: &[Vec<Value>]| -> Vec<(String, i64)> {
        keys.iter()
            .map(|k| match &k[0] {
                Value::Text(s) => (s.clone(), int_of(&k[1])),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    // Bytewise key order, whatever the column's collation.
    assert_eq!(
        text_keys(&diff.differ_keys),
        vec![
            (String::new(), 450),
            ("B".into(), 1),
            ("z".into(), 1),
            ("é".into(), 900)
        ]
    );
    assert_eq!(
        text_keys(&diff.only_on_target_keys),
        vec![("zz".into(), 1), ("é".into(), 9001)]
    );

    // A compare with a condition pushes the filter down too.
    let mut spec = TableSpec::new(TableName::new("t").unwrap(), table("src"), table("tgt"));
    let condition = sluice_model::Condition::new("n <= 450").unwrap();
    spec.source_filter = Some(condition.clone());
    spec.target_filter = Some(condition);
    let plans = plan_compare(
        &[spec],
        &c,
        &c,
        Granularity::Rowwise,
        BatchLimits::rows(500),
    )
    .await
    .unwrap();
    let report = run_compare(
        Arc::new(c.clone()),
        Arc::new(c.clone()),
        plans,
        CompareOptions {
            granularity: Granularity::Rowwise,
            max_listed: 100,
            pushdown: true,
        },
        ProgressSink::none(),
        CancellationToken::new(),
    )
    .await
    .remove(0);
    assert!(report.error.is_none(), "{:?}", report.error);
    let diff = report.diff.unwrap();
    assert_eq!(
        text_keys(&diff.differ_keys),
        vec![(String::new(), 450), ("B".into(), 1), ("z".into(), 1)]
    );
    assert_eq!(text_keys(&diff.only_on_source_keys), vec![("a".into(), 1)]);
    assert_eq!(text_keys(&diff.only_on_target_keys), vec![("zz".into(), 1)]);
    assert_eq!(report.source_rows, 11 * 450);
}
