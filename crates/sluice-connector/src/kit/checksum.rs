//! Checks of key-range checksums ([`SnapshotReader::checksum_ranges`]) for connectors that name
//! a checksum dialect: equal tables checksum equal range by range; a changed value, a deleted
//! row, an extra row and NULL against `''` each change exactly the range holding the key, and
//! reading that range finds exactly that key.

use sluice_model::{DataType, Decimal, TableRef, Value};

use super::{col, read_rows, table, write_request, write_rows};
use crate::{Connector, KeyRange, ReadRequest, SnapshotReader, WriteStrategy};

fn reader(c: &dyn Connector) -> &dyn SnapshotReader {
    c.snapshot_reader()
        .expect("the connector under test offers snapshot reads")
}

/// The table's columns as the introspector describes them (with native types), read keyed on
/// the first column.
async fn described(c: &dyn Connector, t: &TableRef) -> ReadRequest {
    let schema = c
        .introspector()
        .expect("the connector under test describes tables")
        .table_schema(t)
        .await
        .unwrap_or_else(|e| panic!("describe {t}: {e}"))
        .unwrap_or_else(|| panic!("{t} exists"));
    ReadRequest {
        key: vec![0],
        ..super::read_request(
            t.clone(),
            schema.columns.clone(),
            sluice_model::BatchLimits::DEFAULT,
        )
    }
}

const ROWS: i64 = 600;

fn rows() -> Vec<Vec<Value>> {
    (1..=ROWS)
        .map(|i| {
            vec![
                Value::Int64(i),
                Value::Text(format!("name {i}")),
                Value::Decimal(
                    Decimal::parse(&format!("{}.{:02}", i * 7, i % 100)).expect("a decimal"),
                ),
                Value::Bool(i % 3 == 0),
                if i % 5 == 0 {
                    Value::Null
                } else {
                    Value::Text(format!("note {i}"))
                },
            ]
        })
        .collect()
}

async fn make(c: &dyn Connector, name: &str, rows: &[Vec<Value>]) -> ReadRequest {
    let columns = vec![
        col("id", DataType::Int64, false),
        col("name", DataType::Varchar(64), false),
        col(
            "amount",
            DataType::Decimal {
                precision: 12,
                scale: 2,
            },
            false,
        ),
        col("flag", DataType::Bool, false),
        col("note", DataType::Text, true),
    ];
    let t = table(name);
    write_rows(
        c,
        write_request(t.clone(), columns, WriteStrategy::TruncateLoad),
        rows,
        sluice_model::BatchLimits::DEFAULT,
    )
    .await;
    described(c, &t).await
}

/// Equal tables checksum equal in every range; each kind of difference changes the range holding
/// its key and no other, and reading that range on both sides finds exactly that key.
pub async fn checksums_find_differences(c: &dyn Connector) {
    let base = rows();
    let a = make(c, "kit_sum_a", &base).await;
    let r = reader(c);
    let dialect = r
        .checksum_dialect(&a)
        .expect("the connector names a checksum dialect for a keyed table");
    let cuts = r
        .split_range(&a, &KeyRange::all(), 8)
        .await
        .unwrap_or_else(|e| panic!("split kit_sum_a: {e}"));
    assert!(
        (4..=7).contains(&cuts.len()),
        "8 parts of {ROWS} keys need 4 to 7 cuts, got {cuts:?}"
    );
    let parts = KeyRange::all().split_at(&cuts);
    let of_a = r
        .checksum_ranges(&a, &KeyRange::all(), &cuts)
        .await
        .unwrap_or_else(|e| panic!("checksum kit_sum_a: {e}"));
    assert_eq!(of_a.len(), parts.len());
    assert_eq!(of_a.iter().map(|p| p.rows).sum::<u64>(), ROWS as u64);
    assert!(
        of_a.iter().all(|p| p.rows > 0),
        "every part holds rows: {of_a:?}"
    );
    // A part read with its key range holds as many rows as its checksum counted.
    for (part, sum) in parts.iter().zip(&of_a) {
        let (got, _) = read_rows(
            c,
            ReadRequest {
                key_range: Some(part.clone()),
                ..a.clone()
            },
        )
        .await;
        assert_eq!(got.len() as u64, sum.rows, "rows of {part:?}");
    }
    let set = |i: i64, column: usize, value: Value| {
        let mut rows = base.clone();
        rows[(i - 1) as usize][column] = value;
        rows
    };
    let without = |i: i64| {
        let mut rows = base.clone();
        rows.remove((i - 1) as usize);
        rows
    };
    let mut extra = base.clone();
    extra.push(vec![
        Value::Int64(ROWS + 1),
        Value::Text("extra".into()),
        Value::Decimal(Decimal::parse("1.00").expect("a decimal")),
        Value::Bool(false),
        Value::Null,
    ]);
    // Key 5 has a NULL note, key 599 a note; key 1 is in the first range, key 599 in the last.
    let cases: Vec<(&str, Vec<Vec<Value>>, i64)> = vec![
        ("kit_sum_same", base.clone(), 0),
        (
            "kit_sum_value",
            set(300, 1, Value::Text("name 300!".into())),
            300,
        ),
        (
            "kit_sum_decimal",
            set(
                77,
                2,
                Value::Decimal(Decimal::parse("539.78").expect("a decimal")),
            ),
            77,
        ),
        ("kit_sum_bool", set(2, 3, Value::Bool(true)), 2),
        ("kit_sum_deleted", without(1), 1),
        ("kit_sum_extra", extra, ROWS + 1),
        ("kit_sum_null", set(5, 4, Value::Text(String::new())), 5),
        ("kit_sum_empty", set(ROWS - 1, 4, Value::Null), ROWS - 1),
    ];
    for (name, rows, changed) in cases {
        let b = make(c, name, &rows).await;
        assert_eq!(
            r.checksum_dialect(&b).as_deref(),
            Some(dialect.as_str()),
            "{name}: same columns, same dialect"
        );
        let of_b = r
            .checksum_ranges(&b, &KeyRange::all(), &cuts)
            .await
            .unwrap_or_else(|e| panic!("checksum {name}: {e}"));
        let differing: Vec<usize> = (0..parts.len()).filter(|&i| of_a[i] != of_b[i]).collect();
        if changed == 0 {
            assert!(
                differing.is_empty(),
                "{name}: equal tables, parts {differing:?} differ"
            );
            continue;
        }
        let holding: Vec<usize> = (0..parts.len())
            .filter(|&i| {
                let key = [Value::Int64(changed)];
                let above = parts[i]
                    .after
                    .as_ref()
                    .is_none_or(|after| key[0].cmp_key(&after[0]).is_gt());
                let below = parts[i]
                    .through
                    .as_ref()
                    .is_none_or(|through| key[0].cmp_key(&through[0]).is_le());
                above && below
            })
            .collect();
        assert_eq!(
            differing, holding,
            "{name}: the part holding key {changed} differs, and only it"
        );
        let part = &parts[differing[0]];
        let (left, _) = read_rows(
            c,
            ReadRequest {
                key_range: Some(part.clone()),
                ..a.clone()
            },
        )
        .await;
        let (right, _) = read_rows(
            c,
            ReadRequest {
                key_range: Some(part.clone()),
                ..b.clone()
            },
        )
        .await;
        let canonical = |row: &Vec<Value>| {
            let mut out = Vec::new();
            for v in row {
                v.encode_canonical(&mut out);
            }
            out
        };
        let left: Vec<Vec<u8>> = left.iter().map(canonical).collect();
        let right: Vec<Vec<u8>> = right.iter().map(canonical).collect();
        let differ: Vec<i64> = (1..=ROWS + 1)
            .filter(|&i| {
                let mut key = Vec::new();
                Value::Int64(i).encode_canonical(&mut key);
                let find = |rows: &[Vec<u8>]| rows.iter().find(|r| r.starts_with(&key)).cloned();
                find(&left) != find(&right)
            })
            .collect();
        assert_eq!(
            differ,
            vec![changed],
            "{name}: reading the part finds the key"
        );
    }
}
