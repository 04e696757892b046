//! Conformance checks of [`ChangeWriter`]: applying coalesced batches of changes with their
//! checkpoint, atomically.
//!
//! Every check seeds its tables through the connector's [`BatchWriter`](crate::BatchWriter)
//! (`truncate_load`, which creates them keyed on the first column), applies batches through
//! [`ChangeWriter::open_integrate`] and reads the tables back through the snapshot reader, comparing
//! them with the state the batches should have produced.

use std::time::Instant;

use sluice_model::{BatchLimits, Checkpoint, ColumnDef, DataType, Position, RowBatch, Value};

use super::{assert_rows_equal, col, read_request, read_rows, table, write_request, write_rows};
use crate::{
    ApplySummary, ChangeApplier, ChangeWriter, Connector, ErrorKind, IntegrateBatch,
    IntegrateRequest, IntegrateTable, PartialUpdate, ReadRequest, TableChanges, WriteRequest,
    WriteStrategy,
};

/// The table every connector keeps checkpoints in.
pub const CHECKPOINT_TABLE: &str = "sluice_integrate_checkpoint";

/// Limits large enough for any batch the kit builds.
const UNBOUNDED: BatchLimits = BatchLimits {
    max_rows: usize::MAX,
    max_bytes: usize::MAX,
};

fn change_writer(c: &dyn Connector) -> &dyn ChangeWriter {
    assert!(
        c.capabilities().integrate,
        "the connector under test says it cannot integrate"
    );
    c.change_writer()
        .expect("the connector under test offers integration")
}

/// A batch of `width` columns holding `rows`.
pub fn batch_of(width: usize, rows: impl IntoIterator<Item = Vec<Value>>) -> RowBatch {
    let mut b = RowBatch::new(width, UNBOUNDED);
    for row in rows {
        b.push_row(row).expect("kit rows have the batch's width");
    }
    b
}

/// A checkpoint in the middle (`applied`) or at the end of the transaction at `lsn`.
pub fn checkpoint(lsn: u64, applied: Option<u64>) -> Checkpoint {
    Checkpoint {
        transaction: Position::Lsn { lsn },
        applied,
    }
}

/// One kit table: where it is, its columns and its key.
#[derive(Debug, Clone)]
struct KitTable {
    name: &'static str,
    columns: Vec<ColumnDef>,
    key: Vec<usize>,
}

impl KitTable {
    fn new(name: &'static str, columns: Vec<ColumnDef>, key: Vec<usize>) -> Self {
        KitTable { name, columns, key }
    }

    fn integrate(&self) -> IntegrateTable {
        IntegrateTable {
            table: table(self.name),
            columns: self.columns.clone(),
            key: self.key.clone(),
        }
    }

    /// Creates the table (primary key `created_key`, none when empty) holding `rows`.
    async fn seed(&self, c: &dyn Connector, created_key: Vec<usize>, rows: &[Vec<Value>]) {
        let request = WriteRequest {
            key: created_key,
            ..write_request(
                table(self.name),
                self.columns.clone(),
                WriteStrategy::TruncateLoad,
            )
        };
        write_rows(c, request, rows, BatchLimits::DEFAULT).await;
    }

    fn read_request(&self) -> ReadRequest {
        ReadRequest {
            key: self.key.clone(),
            ..read_request(table(self.name), self.columns.clone(), BatchLimits::DEFAULT)
        }
    }

    /// Asserts the table holds exactly `want` (in any order).
    async fn expect(&self, c: &dyn Connector, what: &str, want: &[Vec<Value>]) {
        let (got, _) = read_rows(c, self.read_request()).await;
        let mut want = want.to_vec();
        want.sort_by(|a, b| {
            self.key
                .iter()
                .map(|&k| a[k].cmp_key(&b[k]))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        assert_rows_equal(&format!("{} {what}", self.name), &self.columns, &got, &want);
    }
}

fn changes(table: usize) -> TableChanges {
    TableChanges {
        table,
        truncate: false,
        deletes: RowBatch::new(0, UNBOUNDED),
        upserts: RowBatch::new(0, UNBOUNDED),
        updates: Vec::new(),
    }
}

fn int(i: i64) -> Value {
    Value::Int64(i)
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn dec(s: &str) -> Value {
    Value::Decimal(sluice_model::Decimal::parse(s).expect("kit decimals are valid"))
}

/// `kit_int_a`: an integer key and columns of several types.
fn table_a() -> KitTable {
    KitTable::new(
        "kit_int_a",
        vec![
            col("id", DataType::Int64, false),
            col("v", DataType::Varchar(20), true),
            col("n", DataType::Int64, true),
            col(
                "d",
                DataType::Decimal {
                    precision: 12,
                    scale: 2,
                },
                true,
            ),
        ],
        vec![0],
    )
}

fn row_a(id: i64, v: &str, n: i64) -> Vec<Value> {
    vec![int(id), text(v), int(n), dec(&format!("{id}.25"))]
}

/// `kit_int_b`: a two-column key (text, integer) that is not the leading columns.
fn table_b() -> KitTable {
    KitTable::new(
        "kit_int_b",
        vec![
            col("val", DataType::Float64, true),
            col("k1", DataType::Varchar(10), false),
            col("k2", DataType::Int32, false),
            col("note", DataType::Text, true),
        ],
        vec![1, 2],
    )
}

fn row_b(k1: &str, k2: i32, val: f64, note: &str) -> Vec<Value> {
    vec![Value::Float64(val), text(k1), Value::Int32(k2), text(note)]
}

/// `kit_int_c`: keyed on `id` for the integrate, with no primary key or unique index in the target.
fn table_c() -> KitTable {
    KitTable::new(
        "kit_int_c",
        vec![
            col("id", DataType::Int64, false),
            col("x", DataType::Text, true),
        ],
        vec![0],
    )
}

fn request(name: &str, tables: &[&KitTable]) -> IntegrateRequest {
    IntegrateRequest {
        name: name.to_owned(),
        tables: tables.iter().map(|t| t.integrate()).collect(),
    }
}

async fn open(c: &dyn Connector, request: IntegrateRequest) -> Box<dyn ChangeApplier> {
    let name = request.name.clone();
    change_writer(c)
        .open_integrate(request)
        .await
        .unwrap_or_else(|e| panic!("open integrate {name}: {e}"))
}

async fn apply(applier: &mut dyn ChangeApplier, batch: &IntegrateBatch) -> ApplySummary {
    applier
        .apply(batch)
        .await
        .unwrap_or_else(|e| panic!("apply the batch ending at {:?}: {e}", batch.checkpoint))
}

async fn stored(c: &dyn Connector, name: &str) -> Option<Checkpoint> {
    change_writer(c)
        .read_checkpoint(name)
        .await
        .unwrap_or_else(|e| panic!("read checkpoint {name}: {e}"))
}

async fn checkpoint_table_exists(c: &dyn Connector) -> bool {
    c.introspector()
        .expect("the connector under test offers introspection")
        .table_schema(&table(CHECKPOINT_TABLE))
        .await
        .expect("introspect the checkpoint table")
        .is_some()
}

/// Inserts, whole and partial updates, deletes (one of a key that does not exist) over three
/// tables (one with a two-column key, one without a unique index on its key), then a truncate
/// followed by inserts in one batch; the checkpoint is stored with each batch, read back by
/// `read_checkpoint` and by a re-opened applier; applying a batch twice gives the same tables.
pub async fn integrate_changes(c: &dyn Connector) {
    let (a, b, t_c) = (table_a(), table_b(), table_c());
    let seed_a: Vec<Vec<Value>> = (0..10).map(|i| row_a(i, &format!("old{i}"), i)).collect();
    a.seed(c, vec![0], &seed_a).await;
    let seed_b = vec![
        row_b("a", 1, 1.5, "a1"),
        row_b("a", 2, 2.5, "a2"),
        row_b("b", 1, 3.5, "b1"),
    ];
    b.seed(c, vec![1, 2], &seed_b).await;
    let seed_c: Vec<Vec<Value>> = (0..4)
        .map(|i| vec![int(i), text(&format!("c{i}"))])
        .collect();
    t_c.seed(c, vec![], &seed_c).await;

    assert_eq!(stored(c, "kit_changes").await, None, "no checkpoint yet");
    let mut applier = open(c, request("kit_changes", &[&a, &b, &t_c])).await;
    assert_eq!(
        applier.checkpoint(),
        None,
        "a new integrate has no checkpoint"
    );

    // A batch without changes stores its checkpoint (an initial load's point), of any kind.
    let start = IntegrateBatch {
        tables: Vec::new(),
        checkpoint: Checkpoint::at(Position::Binlog {
            file: "mariadb-bin.000007".into(),
            offset: 4,
        }),
    };
    let summary = apply(applier.as_mut(), &start).await;
    assert_eq!(
        (summary.upserted, summary.updated, summary.deleted),
        (0, 0, 0)
    );
    assert_eq!(applier.checkpoint(), Some(&start.checkpoint));
    assert_eq!(
        stored(c, "kit_changes").await,
        Some(start.checkpoint.clone())
    );
    a.expect(c, "after a batch without changes", &seed_a).await;

    // Table a: replace 3, insert 20 and 21, update parts of 4..=7, delete 0, 1 and 999.
    let mut ca = changes(0);
    ca.upserts = batch_of(
        4,
        [
            vec![int(3), text("new3"), int(300), Value::Null],
            row_a(20, "new20", 20),
            row_a(21, "new21", 21),
        ],
    );
    ca.updates = vec![
        // The values outside `set` are junk that must not be written.
        PartialUpdate {
            row: vec![int(4), text("upd4"), int(-1), dec("-1")],
            set: vec![1],
        },
        PartialUpdate {
            row: vec![int(5), text("junk"), int(500), dec("5.50")],
            set: vec![2, 3],
        },
        PartialUpdate {
            row: vec![int(6), text("upd6"), Value::Null, Value::Null],
            set: vec![1],
        },
        PartialUpdate {
            row: vec![int(7), Value::Null, int(-1), dec("-1")],
            set: vec![1],
        },
    ];
    ca.deletes = batch_of(1, [vec![int(0)], vec![int(1)], vec![int(999)]]);
    let mut want_a: Vec<Vec<Value>> = seed_a.clone();
    want_a.retain(|r| !matches!(r[0], Value::Int64(0 | 1)));
    for r in &mut want_a {
        match r[0] {
            Value::Int64(3) => *r = vec![int(3), text("new3"), int(300), Value::Null],
            Value::Int64(4) => r[1] = text("upd4"),
            Value::Int64(5) => {
                r[2] = int(500);
                r[3] = dec("5.50");
            }
            Value::Int64(6) => r[1] = text("upd6"),
            Value::Int64(7) => r[1] = Value::Null,
            _ => {}
        }
    }
    want_a.push(row_a(20, "new20", 20));
    want_a.push(row_a(21, "new21", 21));

    // Table b: replace (a, 2), insert (c, 1), delete (b, 1), update the note of (a, 1).
    let mut cb = changes(1);
    cb.upserts = batch_of(
        4,
        [row_b("a", 2, 20.5, "a2 new"), row_b("c", 1, 30.0, "c1")],
    );
    cb.deletes = batch_of(2, [vec![text("b"), Value::Int32(1)]]);
    cb.updates = vec![PartialUpdate {
        row: vec![
            Value::Float64(-1.0),
            text("a"),
            Value::Int32(1),
            text("a1 new"),
        ],
        set: vec![3],
    }];
    let want_b = vec![
        row_b("a", 1, 1.5, "a1 new"),
        row_b("a", 2, 20.5, "a2 new"),
        row_b("c", 1, 30.0, "c1"),
    ];

    // Table c (no unique index): replace 1, insert 10, delete 2, update 0.
    let mut cc = changes(2);
    cc.upserts = batch_of(
        2,
        [vec![int(1), text("c1 new")], vec![int(10), text("c10")]],
    );
    cc.deletes = batch_of(1, [vec![int(2)]]);
    cc.updates = vec![PartialUpdate {
        row: vec![int(0), text("c0 new")],
        set: vec![1],
    }];
    let want_c = vec![
        vec![int(0), text("c0 new")],
        vec![int(1), text("c1 new")],
        vec![int(3), text("c3")],
        vec![int(10), text("c10")],
    ];

    let first = IntegrateBatch {
        tables: vec![ca, cb, cc],
        checkpoint: checkpoint(100, Some(7)),
    };
    let summary = apply(applier.as_mut(), &first).await;
    assert_eq!(
        (
            summary.upserted,
            summary.updated,
            summary.deleted,
            summary.truncated
        ),
        (7, 6, 5, 0),
        "summary of the first batch: {summary:?}"
    );
    assert!(
        summary.committed_at.is_some(),
        "the summary carries the commit time"
    );
    a.expect(c, "after the first batch", &want_a).await;
    b.expect(c, "after the first batch", &want_b).await;
    t_c.expect(c, "after the first batch", &want_c).await;
    assert_eq!(applier.checkpoint(), Some(&first.checkpoint));
    assert_eq!(
        stored(c, "kit_changes").await,
        Some(first.checkpoint.clone())
    );

    // The same batch again (a retry after a lost commit acknowledgement) changes nothing more.
    apply(applier.as_mut(), &first).await;
    a.expect(c, "after the first batch twice", &want_a).await;
    b.expect(c, "after the first batch twice", &want_b).await;
    t_c.expect(c, "after the first batch twice", &want_c).await;

    // Truncate a and insert into it in one batch; b and c are left alone.
    let mut ta = changes(0);
    ta.truncate = true;
    ta.upserts = batch_of(4, [row_a(100, "t100", 1), row_a(101, "t101", 2)]);
    let second = IntegrateBatch {
        tables: vec![ta],
        checkpoint: checkpoint(200, None),
    };
    let summary = apply(applier.as_mut(), &second).await;
    assert_eq!(
        (summary.upserted, summary.truncated),
        (2, 1),
        "summary of the truncating batch: {summary:?}"
    );
    let want_a2 = vec![row_a(100, "t100", 1), row_a(101, "t101", 2)];
    a.expect(c, "after truncate and insert", &want_a2).await;
    b.expect(c, "after a batch without it", &want_b).await;
    apply(applier.as_mut(), &second).await;
    a.expect(c, "after truncate and insert twice", &want_a2)
        .await;
    assert_eq!(applier.checkpoint(), Some(&second.checkpoint));
    drop(applier);

    assert_eq!(
        stored(c, "kit_changes").await,
        Some(second.checkpoint.clone())
    );
    let reopened = open(c, request("kit_changes", &[&a, &b, &t_c])).await;
    assert_eq!(
        reopened.checkpoint(),
        Some(&second.checkpoint),
        "a re-opened applier reads the stored checkpoint"
    );
    // Another integrate's checkpoint is its own.
    assert_eq!(stored(c, "kit_other").await, None);
}

/// A batch failing in its last table (a NULL for a NOT NULL column, set whole or in part; a value
/// too long for its column) is a `Data` error naming table and column but no other row value,
/// and leaves every table and the checkpoint as they were; the applier then applies a good batch.
pub async fn integrate_failed_batch_changes_nothing(c: &dyn Connector) {
    let a = table_a();
    let f = KitTable::new(
        "kit_int_fail",
        vec![
            col("id", DataType::Int64, false),
            col("req", DataType::Text, false),
            col("short", DataType::Varchar(3), true),
        ],
        vec![0],
    );
    let seed_a: Vec<Vec<Value>> = (0..5).map(|i| row_a(i, &format!("old{i}"), i)).collect();
    a.seed(c, vec![0], &seed_a).await;
    let seed_f = vec![vec![int(1), text("one"), text("abc")]];
    f.seed(c, vec![0], &seed_f).await;

    let mut applier = open(c, request("kit_fail", &[&a, &f])).await;
    let mut first_a = changes(0);
    first_a.upserts = batch_of(4, [row_a(10, "ten", 10)]);
    let first = IntegrateBatch {
        tables: vec![first_a],
        checkpoint: checkpoint(50, None),
    };
    apply(applier.as_mut(), &first).await;
    let mut want_a = seed_a.clone();
    want_a.push(row_a(10, "ten", 10));

    let good_a = || {
        let mut ca = changes(0);
        ca.upserts = batch_of(4, [row_a(2, "replaced", 2), row_a(11, "eleven", 11)]);
        ca.deletes = batch_of(1, [vec![int(0)]]);
        ca.updates = vec![PartialUpdate {
            row: vec![int(3), text("upd"), int(0), dec("0")],
            set: vec![1],
        }];
        ca
    };
    let secret = "secret-value";
    let mut null_whole = changes(1);
    null_whole.upserts = batch_of(
        3,
        [
            vec![int(2), text("two"), text("ok")],
            vec![int(3), Value::Null, text(secret)],
        ],
    );
    let mut null_part = changes(1);
    null_part.updates = vec![PartialUpdate {
        row: vec![int(1), Value::Null, text(secret)],
        set: vec![1],
    }];
    let mut too_long = changes(1);
    too_long.upserts = batch_of(3, [vec![int(4), text(secret), text("abcd")]]);
    for (what, bad, column) in [
        ("a NULL in a NOT NULL column", null_whole, "req"),
        (
            "a partial update to NULL of a NOT NULL column",
            null_part,
            "req",
        ),
        ("a value too long for its column", too_long, "short"),
    ] {
        let batch = IntegrateBatch {
            tables: vec![good_a(), bad],
            checkpoint: checkpoint(60, None),
        };
        let err = match applier.apply(&batch).await {
            Ok(s) => panic!("a batch with {what} was applied: {s:?}"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), ErrorKind::Data, "{what}: {err}");
        let message = err.to_string();
        assert!(
            message.contains("kit_int_fail") && message.contains(column),
            "the error for {what} names table and column: {message}"
        );
        assert!(
            !message.contains(secret),
            "the error for {what} shows a value that is not a key: {message}"
        );
        a.expect(c, &format!("after a failed batch ({what})"), &want_a)
            .await;
        f.expect(c, &format!("after a failed batch ({what})"), &seed_f)
            .await;
        assert_eq!(
            stored(c, "kit_fail").await,
            Some(first.checkpoint.clone()),
            "the checkpoint after a failed batch ({what})"
        );
    }

    // The applier takes the batch once it is right (or, at worst, says clearly it is broken).
    let mut fixed_f = changes(1);
    fixed_f.upserts = batch_of(3, [vec![int(3), text("three"), text("xyz")]]);
    let fixed = IntegrateBatch {
        tables: vec![good_a(), fixed_f],
        checkpoint: checkpoint(60, None),
    };
    match applier.apply(&fixed).await {
        Ok(_) => {}
        Err(e) => {
            // A broken applier says so; a fresh one applies the batch.
            assert!(
                e.to_string().contains("broken") || e.to_string().contains("failed earlier"),
                "an applier that cannot retry says so clearly: {e}"
            );
            drop(applier);
            applier = open(c, request("kit_fail", &[&a, &f])).await;
            apply(applier.as_mut(), &fixed).await;
        }
    }
    want_a.retain(|r| r[0] != int(0));
    for r in &mut want_a {
        if r[0] == int(2) {
            *r = row_a(2, "replaced", 2);
        }
        if r[0] == int(3) {
            r[1] = text("upd");
        }
    }
    want_a.push(row_a(11, "eleven", 11));
    a.expect(c, "after the fixed batch", &want_a).await;
    f.expect(
        c,
        "after the fixed batch",
        &[
            vec![int(1), text("one"), text("abc")],
            vec![int(3), text("three"), text("xyz")],
        ],
    )
    .await;
    assert_eq!(stored(c, "kit_fail").await, Some(fixed.checkpoint.clone()));
}

/// Opening an integrate whose table or column the target lacks fails naming them.
pub async fn integrate_target_mismatch(c: &dyn Connector) {
    let a = table_a();
    a.seed(c, vec![0], &[]).await;
    let mut wider = a.clone();
    wider.columns.push(col("nope", DataType::Int32, true));
    let err = match change_writer(c)
        .open_integrate(request("kit_mismatch", &[&wider]))
        .await
    {
        Ok(_) => panic!("an integrate into a table lacking a column opened"),
        Err(e) => e,
    };
    assert!(
        matches!(err.kind(), ErrorKind::Schema | ErrorKind::NotFound),
        "{err}"
    );
    assert!(
        err.to_string().contains("kit_int_a") && err.to_string().contains("nope"),
        "the error names table and column: {err}"
    );
    let missing = KitTable::new("kit_int_missing", a.columns.clone(), vec![0]);
    let err = match change_writer(c)
        .open_integrate(request("kit_mismatch", &[&a, &missing]))
        .await
    {
        Ok(_) => panic!("an integrate into a missing table opened"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().contains("kit_int_missing"),
        "the error names the table: {err}"
    );
}

/// `add_column` adds a nullable column that rows then carry last; adding it again (a restart
/// between the change and the checkpoint) is fine.
pub async fn integrate_add_column(c: &dyn Connector) {
    let a = table_a();
    let seed: Vec<Vec<Value>> = (0..3).map(|i| row_a(i, &format!("r{i}"), i)).collect();
    a.seed(c, vec![0], &seed).await;
    let extra = col("extra", DataType::Int32, true);
    let mut applier = open(c, request("kit_add", &[&a])).await;
    applier
        .add_column(0, extra.clone())
        .await
        .unwrap_or_else(|e| panic!("add column extra to kit_int_a: {e}"));
    let mut wide = a.clone();
    wide.columns.push(extra.clone());
    let mut ca = changes(0);
    ca.upserts = batch_of(5, [[row_a(10, "ten", 10), vec![Value::Int32(7)]].concat()]);
    ca.updates = vec![PartialUpdate {
        row: [row_a(1, "junk", -1), vec![Value::Int32(11)]].concat(),
        set: vec![4],
    }];
    apply(
        applier.as_mut(),
        &IntegrateBatch {
            tables: vec![ca],
            checkpoint: checkpoint(10, None),
        },
    )
    .await;
    let mut want: Vec<Vec<Value>> = seed
        .iter()
        .map(|r| [r.clone(), vec![Value::Null]].concat())
        .collect();
    want[1][4] = Value::Int32(11);
    want.push([row_a(10, "ten", 10), vec![Value::Int32(7)]].concat());
    wide.expect(c, "after add_column", &want).await;
    let schema = c
        .introspector()
        .expect("introspection")
        .table_schema(&table("kit_int_a"))
        .await
        .expect("introspect kit_int_a")
        .expect("kit_int_a exists");
    let added = schema
        .columns
        .iter()
        .find(|col| col.name.as_str() == "extra")
        .expect("kit_int_a has column extra");
    assert!(added.nullable, "an added column is nullable");
    drop(applier);

    // A restart that adds the column again: the applier opened on the old columns takes it.
    let mut again = open(c, request("kit_add", &[&a])).await;
    again
        .add_column(0, extra.clone())
        .await
        .unwrap_or_else(|e| panic!("add column extra a second time: {e}"));
    let mut ca = changes(0);
    ca.upserts = batch_of(
        5,
        [[row_a(11, "eleven", 11), vec![Value::Int32(8)]].concat()],
    );
    apply(
        again.as_mut(),
        &IntegrateBatch {
            tables: vec![ca],
            checkpoint: checkpoint(11, None),
        },
    )
    .await;
    want.push([row_a(11, "eleven", 11), vec![Value::Int32(8)]].concat());
    wide.expect(c, "after the second add_column", &want).await;
}

/// `read_checkpoint` creates nothing; `drop_integrate` removes one integrate's checkpoint and the
/// checkpoint table with the last one; dropping what is not there is fine.
pub async fn integrate_drop(c: &dyn Connector) {
    let a = table_a();
    a.seed(c, vec![0], &[]).await;
    assert_eq!(stored(c, "kit_one").await, None);
    assert!(
        !checkpoint_table_exists(c).await,
        "read_checkpoint created the checkpoint table"
    );
    change_writer(c)
        .drop_integrate("kit_one")
        .await
        .expect("drop an integrate that never was");
    for (name, lsn) in [("kit_one", 1), ("kit_two", 2)] {
        let mut applier = open(c, request(name, &[&a])).await;
        let mut ca = changes(0);
        ca.upserts = batch_of(4, [row_a(lsn as i64, name, 0)]);
        apply(
            applier.as_mut(),
            &IntegrateBatch {
                tables: vec![ca],
                checkpoint: checkpoint(lsn, None),
            },
        )
        .await;
    }
    assert!(checkpoint_table_exists(c).await);
    change_writer(c)
        .drop_integrate("kit_one")
        .await
        .expect("drop kit_one");
    assert_eq!(stored(c, "kit_one").await, None, "kit_one after its drop");
    assert_eq!(
        stored(c, "kit_two").await,
        Some(checkpoint(2, None)),
        "kit_two after kit_one's drop"
    );
    assert!(checkpoint_table_exists(c).await, "kit_two still needs it");
    change_writer(c)
        .drop_integrate("kit_two")
        .await
        .expect("drop kit_two");
    assert_eq!(stored(c, "kit_two").await, None);
    assert!(
        !checkpoint_table_exists(c).await,
        "the checkpoint table outlived its last checkpoint"
    );
    change_writer(c)
        .drop_integrate("kit_two")
        .await
        .expect("drop kit_two again");
}

/// One batch of 100,000 inserts, then one of 40,000 partial updates, 30,000 replacements and
/// 30,000 deletes; prints how long each took.
pub async fn integrate_large_batch(c: &dyn Connector) {
    const ROWS: i64 = 100_000;
    let t = KitTable::new(
        "kit_int_large",
        vec![
            col("id", DataType::Int64, false),
            col("v", DataType::Text, true),
            col("n", DataType::Int64, true),
        ],
        vec![0],
    );
    t.seed(c, vec![0], &[]).await;
    let mut applier = open(c, request("kit_large", &[&t])).await;
    let row = |i: i64, v: &str| vec![int(i), text(&format!("{v} {i}")), int(i * 3)];
    let mut inserts = changes(0);
    inserts.upserts = batch_of(3, (0..ROWS).map(|i| row(i, "row")));
    let started = Instant::now();
    let summary = apply(
        applier.as_mut(),
        &IntegrateBatch {
            tables: vec![inserts],
            checkpoint: checkpoint(1, None),
        },
    )
    .await;
    let insert_time = started.elapsed();
    assert_eq!(summary.upserted, ROWS as u64);

    let mut mixed = changes(0);
    mixed.updates = (0..40_000)
        .map(|i| PartialUpdate {
            row: vec![int(i), Value::Null, int(-i)],
            set: vec![2],
        })
        .collect();
    mixed.upserts = batch_of(3, (40_000..70_000).map(|i| row(i, "new")));
    mixed.deletes = batch_of(1, (70_000..ROWS).map(|i| vec![int(i)]));
    let started = Instant::now();
    let summary = apply(
        applier.as_mut(),
        &IntegrateBatch {
            tables: vec![mixed],
            checkpoint: checkpoint(2, None),
        },
    )
    .await;
    let mixed_time = started.elapsed();
    assert_eq!(
        (summary.updated, summary.upserted, summary.deleted),
        (40_000, 30_000, 30_000)
    );
    eprintln!(
        "{:?} integrate: 100000 inserts in {insert_time:.2?}, 40000 partial updates + 30000 \
         replacements + 30000 deletes in {mixed_time:.2?}",
        c.class()
    );
    let want: Vec<Vec<Value>> = (0..40_000)
        .map(|i| vec![int(i), text(&format!("row {i}")), int(-i)])
        .chain((40_000..70_000).map(|i| row(i, "new")))
        .collect();
    t.expect(c, "after the large batches", &want).await;
    assert_eq!(stored(c, "kit_large").await, Some(checkpoint(2, None)));
}

/// Two integrates opened at the same moment on a location without a checkpoint table both open
/// (creating the table is safe when two do it at once) and keep their own checkpoints.
pub async fn integrate_concurrent_open(c: &dyn Connector) {
    let a = table_a();
    a.seed(c, vec![0], &[]).await;
    let (one, two) = futures::join!(
        change_writer(c).open_integrate(request("kit_first", &[&a])),
        change_writer(c).open_integrate(request("kit_second", &[&a])),
    );
    let mut one = one.unwrap_or_else(|e| panic!("open kit_first: {e}"));
    let mut two = two.unwrap_or_else(|e| panic!("open kit_second: {e}"));
    for (applier, lsn) in [(&mut one, 1), (&mut two, 2)] {
        let mut ca = changes(0);
        ca.upserts = batch_of(4, [row_a(lsn as i64, "x", 0)]);
        apply(
            applier.as_mut(),
            &IntegrateBatch {
                tables: vec![ca],
                checkpoint: checkpoint(lsn, None),
            },
        )
        .await;
    }
    assert_eq!(stored(c, "kit_first").await, Some(checkpoint(1, None)));
    assert_eq!(stored(c, "kit_second").await, Some(checkpoint(2, None)));
}

/// An apply abandoned midway (its future dropped) never leaves part of its batch: afterwards the
/// table holds all of it or none of it, in step with the stored checkpoint, and the next batch
/// applies (on the same applier, or on a new one when the old says it is broken).
pub async fn integrate_abandoned_apply(c: &dyn Connector) {
    const ROWS: i64 = 50_000;
    let t = KitTable::new(
        "kit_int_abandon",
        vec![
            col("id", DataType::Int64, false),
            col("v", DataType::Text, true),
        ],
        vec![0],
    );
    t.seed(c, vec![0], &[]).await;
    let mut applier = open(c, request("kit_abandon", &[&t])).await;
    let mut big = changes(0);
    big.upserts = batch_of(2, (0..ROWS).map(|i| vec![int(i), text("big")]));
    let first = IntegrateBatch {
        tables: vec![big],
        checkpoint: checkpoint(1, None),
    };
    let abandoned =
        tokio::time::timeout(std::time::Duration::from_millis(20), applier.apply(&first)).await;
    let mut small = changes(0);
    small.upserts = batch_of(2, [vec![int(-1), text("small")]]);
    let second = IntegrateBatch {
        tables: vec![small],
        checkpoint: checkpoint(2, None),
    };
    if let Err(e) = applier.apply(&second).await {
        let message = e.to_string();
        assert!(
            message.contains("broken") || message.contains("open it again"),
            "an applier that cannot go on after an abandoned apply says so: {message}"
        );
        drop(applier);
        applier = open(c, request("kit_abandon", &[&t])).await;
        apply(applier.as_mut(), &second).await;
    }
    assert_eq!(stored(c, "kit_abandon").await, Some(checkpoint(2, None)));
    let (got, _) = read_rows(c, t.read_request()).await;
    assert!(
        got.len() == 1 || got.len() == ROWS as usize + 1,
        "after an abandoned apply ({}) the table holds {} rows: neither none nor all of its batch",
        if abandoned.is_ok() {
            "finished in time"
        } else {
            "cut off"
        },
        got.len()
    );
}
