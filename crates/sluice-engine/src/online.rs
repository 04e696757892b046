//! Online compare: a row-wise compare of a table that is being replicated, which tells rows that
//! differ from rows whose changes were in flight.
//!
//! A row-wise compare of a replicated table reads the source and the target at slightly different
//! moments, so a row changed meanwhile looks different although replication is about to apply the
//! change. Online compare takes the keys a plain row-wise compare found different (the
//! *suspects*) and settles them in rounds. Before each round the caller waits until replication
//! has passed the source's log position of that moment (`catch_up`): every change committed
//! before the round's wait began is then at the target. The round reads the suspects' rows on
//! both sides again ([`read_keys`]), and each suspect is
//!
//! - **settled** when both sides hold the same row (its change was in flight): not reported;
//! - **confirmed** different when the sides still differ and the source row is the one the
//!   previous round read: the source row was committed before that round's wait began, so the
//!   target has had it applied, and still differs (a change made only at the target, a row
//!   replication skipped);
//! - otherwise (the source row changed between the two reads) still **in flight**, and examined
//!   again in the next round.
//!
//! The first round has no earlier source row to hold against (the plain compare keeps none), so
//! a suspect is confirmed at the earliest in the second round. After the last round the suspects
//! still changing are reported as *in flight*: rows the source changes faster than the rounds
//! could follow, not differences. Rows that became different only after the plain compare read
//! them are changes made during the compare and are not examined.

use std::cmp::Ordering;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use sluice_connector::{Connector, ConnectorError, Result};
use sluice_model::Value;
use tokio_util::sync::CancellationToken;

use crate::compare::{RowDiff, open, open_target};
use crate::merge::{KeyedRows, rows_equal};
use crate::plan::CompareTablePlan;

/// How an online compare settles the differences of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OnlineOptions {
    /// Rounds of re-reading the suspect rows (at least 2: a difference is confirmed in the
    /// second round at the earliest).
    pub rounds: u32,
    /// Extra time to let pass before each round's wait for replication (HVR's
    /// `online_compare_sleep`).
    pub pause: Duration,
}

impl Default for OnlineOptions {
    fn default() -> Self {
        OnlineOptions {
            rounds: 3,
            pause: Duration::ZERO,
        }
    }
}

/// The rows of one key on both sides, as a read found them (`None`: no such row).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRows {
    /// The key, in the plan's key column order.
    pub key: Vec<Value>,
    /// The source row.
    pub source: Option<Vec<Value>>,
    /// The target row, with values converted to the source's types as a compare does.
    pub target: Option<Vec<Value>>,
}

/// What the rounds of an online compare found for one table's suspects.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Settled {
    /// The confirmed differences, by kind as the last read found them, with the first keys.
    pub confirmed: RowDiff,
    /// Suspects whose source row kept changing through the last round.
    pub in_flight: u64,
    /// The first of those keys.
    pub in_flight_keys: Vec<Vec<Value>>,
    /// Suspects that turned out equal (their changes were in flight).
    pub settled: u64,
    /// Rounds run (fewer than asked when nothing was left to examine).
    pub rounds: u32,
}

/// The order of `key` (values of the key columns) against the key of `row`.
fn key_order(key: &[Value], key_columns: &[usize], row: &[Value]) -> Ordering {
    key.iter()
        .zip(key_columns)
        .map(|(k, &c)| k.cmp_key(&row[c]))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// Sorts keys in key order and drops repeats.
pub fn sort_keys(keys: &mut Vec<Vec<Value>>) {
    let order = |a: &Vec<Value>, b: &Vec<Value>| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.cmp_key(y))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    };
    keys.sort_by(order);
    keys.dedup_by(|a, b| order(a, b) == Ordering::Equal);
}

/// Reads the rows of `keys` (in key order, see [`sort_keys`]) on both sides of `plan`. Both reads
/// are ordered by key; a filter in the plan's reads that keeps at least these keys (e.g. the keys
/// themselves) spares reading the other rows.
pub async fn read_keys(
    source: &dyn Connector,
    target: &dyn Connector,
    plan: &CompareTablePlan,
    keys: &[Vec<Value>],
    cancel: &CancellationToken,
) -> Result<Vec<KeyRows>> {
    let key_columns = plan.source_read.key.clone();
    let mut out: Vec<KeyRows> = keys
        .iter()
        .map(|k| KeyRows {
            key: k.clone(),
            source: None,
            target: None,
        })
        .collect();
    if keys.is_empty() {
        return Ok(out);
    }
    let mut s = KeyedRows::new(
        open(source, &plan.source_read, "source").await?,
        key_columns.clone(),
        "source",
    );
    pick(
        &mut s,
        &key_columns,
        &plan.source_read.columns,
        &mut out,
        cancel,
        |k, row| k.source = Some(row),
    )
    .await?;
    let mut t = KeyedRows::new(
        open_target(target, plan, &plan.target_read).await?,
        key_columns.clone(),
        "target",
    );
    pick(
        &mut t,
        &key_columns,
        &plan.target_read.columns,
        &mut out,
        cancel,
        |k, row| k.target = Some(row),
    )
    .await?;
    Ok(out)
}

/// Walks `rows` once in key order, handing the row of each wanted key to `put`.
async fn pick(
    rows: &mut KeyedRows<'_>,
    key_columns: &[usize],
    columns: &[sluice_model::ColumnDef],
    wanted: &mut [KeyRows],
    cancel: &CancellationToken,
    put: impl Fn(&mut KeyRows, Vec<Value>),
) -> Result<()> {
    rows.advance(cancel, columns).await?;
    let mut i = 0;
    while i < wanted.len() {
        let Some(row) = rows.row() else { break };
        match key_order(&wanted[i].key, key_columns, row) {
            Ordering::Less => i += 1,
            Ordering::Equal => {
                put(&mut wanted[i], row.to_vec());
                i += 1;
                rows.advance(cancel, columns).await?;
            }
            Ordering::Greater => rows.advance(cancel, columns).await?,
        }
    }
    Ok(())
}

/// A source row as a read found it (`None`: no such row).
type SourceRow = Option<Vec<Value>>;

/// Whether two optional rows are the same (both absent, or equal values).
fn same(a: Option<&Vec<Value>>, b: Option<&Vec<Value>>, scratch: &mut (Vec<u8>, Vec<u8>)) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => rows_equal(a, b, scratch),
        _ => false,
    }
}

/// Settles the `suspects` (keys a row-wise compare of `plan` found different, in key order) in
/// rounds, calling `catch_up` before each (it returns once replication has passed the source's
/// position of the moment it is called). `read` reads the rows of the keys still examined; the
/// caller may restrict its reads to those keys. At most `max_listed` keys of each kind are kept.
pub async fn settle<C, R>(
    suspects: Vec<Vec<Value>>,
    options: OnlineOptions,
    max_listed: usize,
    mut catch_up: C,
    mut read: R,
    cancel: &CancellationToken,
) -> Result<Settled>
where
    C: FnMut() -> BoxFuture<'static, Result<()>>,
    R: FnMut(Vec<Vec<Value>>) -> BoxFuture<'static, Result<Vec<KeyRows>>>,
{
    let rounds = options.rounds.max(2);
    let mut settled = Settled::default();
    let mut scratch = (Vec::new(), Vec::new());
    // The suspects still examined, with the source row the previous round read.
    let mut open: Vec<(Vec<Value>, Option<SourceRow>)> =
        suspects.into_iter().map(|k| (k, None)).collect();
    for _ in 0..rounds {
        if open.is_empty() {
            break;
        }
        if cancel.is_cancelled() {
            return Err(ConnectorError::cancelled());
        }
        if !options.pause.is_zero() {
            tokio::select! {
                _ = cancel.cancelled() => return Err(ConnectorError::cancelled()),
                _ = tokio::time::sleep(options.pause) => {}
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(ConnectorError::cancelled()),
            r = catch_up() => r?,
        }
        settled.rounds += 1;
        let keys: Vec<Vec<Value>> = open.iter().map(|(k, _)| k.clone()).collect();
        let rows = read(keys).await?;
        if rows.len() != open.len() {
            return Err(ConnectorError::internal(format!(
                "a recheck of {} keys answered {} rows",
                open.len(),
                rows.len()
            )));
        }
        let mut next = Vec::new();
        for ((key, previous), now) in open.into_iter().zip(rows) {
            if same(now.source.as_ref(), now.target.as_ref(), &mut scratch) {
                settled.settled += 1;
                continue;
            }
            let steady = previous
                .as_ref()
                .is_some_and(|p| same(p.as_ref(), now.source.as_ref(), &mut scratch));
            if steady {
                let d = &mut settled.confirmed;
                let (count, listed) = match (&now.source, &now.target) {
                    (Some(_), None) => (&mut d.only_on_source, &mut d.only_on_source_keys),
                    (None, Some(_)) => (&mut d.only_on_target, &mut d.only_on_target_keys),
                    _ => (&mut d.differ, &mut d.differ_keys),
                };
                *count += 1;
                if listed.len() < max_listed {
                    listed.push(key);
                }
            } else {
                next.push((key, Some(now.source)));
            }
        }
        open = next;
    }
    settled.in_flight = open.len() as u64;
    settled.in_flight_keys = open.into_iter().take(max_listed).map(|(k, _)| k).collect();
    Ok(settled)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn row(id: i64, v: &str) -> Option<Vec<Value>> {
        Some(vec![Value::Int64(id), Value::Text(v.into())])
    }

    /// One round's answers: key id, source row, target row.
    type Round = Vec<(i64, SourceRow, SourceRow)>;
    /// The key ids each round was asked for.
    type Asked = Arc<Mutex<Vec<Vec<i64>>>>;

    /// Reads that answer per round from a script.
    #[allow(clippy::type_complexity)]
    fn scripted(
        script: Vec<Round>,
    ) -> (
        impl FnMut(Vec<Vec<Value>>) -> BoxFuture<'static, Result<Vec<KeyRows>>>,
        Asked,
    ) {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        let mut round = 0;
        let read = move |keys: Vec<Vec<Value>>| {
            let answers = script[round].clone();
            round += 1;
            let ids: Vec<i64> = keys
                .iter()
                .map(|k| match k[0] {
                    Value::Int64(i) => i,
                    _ => unreachable!(),
                })
                .collect();
            seen.lock().unwrap().push(ids.clone());
            let rows = ids
                .iter()
                .map(|id| {
                    let (_, s, t) = answers.iter().find(|(i, _, _)| i == id).cloned().unwrap();
                    KeyRows {
                        key: vec![Value::Int64(*id)],
                        source: s,
                        target: t,
                    }
                })
                .collect();
            Box::pin(async move { Ok(rows) }) as BoxFuture<'static, Result<Vec<KeyRows>>>
        };
        (read, asked)
    }

    #[tokio::test]
    async fn in_flight_rows_settle_steady_differences_are_confirmed_hot_rows_stay_in_flight() {
        // 1: its change arrives by the first round. 2: changed only at the target.
        // 3: the source changes it every round. 4: only at the target.
        let (read, asked) = scripted(vec![
            vec![
                (1, row(1, "a"), row(1, "a")),
                (2, row(2, "src"), row(2, "tgt")),
                (3, row(3, "v1"), row(3, "v0")),
                (4, None, row(4, "x")),
            ],
            vec![
                (2, row(2, "src"), row(2, "tgt")),
                (3, row(3, "v2"), row(3, "v1")),
                (4, None, row(4, "x")),
            ],
            vec![(3, row(3, "v3"), row(3, "v2"))],
        ]);
        let waits = Arc::new(Mutex::new(0));
        let counted = waits.clone();
        let settled = settle(
            (1..=4).map(|i| vec![Value::Int64(i)]).collect(),
            OnlineOptions::default(),
            10,
            move || {
                *counted.lock().unwrap() += 1;
                Box::pin(async { Ok(()) })
            },
            read,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(settled.settled, 1);
        assert_eq!(settled.confirmed.differ_keys, vec![vec![Value::Int64(2)]]);
        assert_eq!(
            settled.confirmed.only_on_target_keys,
            vec![vec![Value::Int64(4)]]
        );
        assert_eq!(
            (settled.confirmed.differ, settled.confirmed.only_on_target),
            (1, 1)
        );
        assert_eq!(settled.confirmed.only_on_source, 0);
        assert_eq!(settled.in_flight, 1);
        assert_eq!(settled.in_flight_keys, vec![vec![Value::Int64(3)]]);
        assert_eq!(settled.rounds, 3);
        assert_eq!(
            *waits.lock().unwrap(),
            3,
            "a wait for replication before each round"
        );
        assert_eq!(
            *asked.lock().unwrap(),
            vec![vec![1, 2, 3, 4], vec![2, 3, 4], vec![3]],
            "each round reads only the keys still examined"
        );
    }

    #[tokio::test]
    async fn a_failed_wait_fails_the_settling_and_nothing_left_ends_early() {
        let (read, _) = scripted(vec![]);
        let error = settle(
            vec![vec![Value::Int64(1)]],
            OnlineOptions::default(),
            10,
            || Box::pin(async { Err(ConnectorError::internal("replication suspended")) }),
            read,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(error.message(), "replication suspended");
        let (read, asked) = scripted(vec![vec![(1, row(1, "a"), row(1, "a"))]]);
        let settled = settle(
            vec![vec![Value::Int64(1)]],
            OnlineOptions::default(),
            10,
            || Box::pin(async { Ok(()) }),
            read,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(
            (settled.settled, settled.rounds, settled.in_flight),
            (1, 1, 0)
        );
        assert_eq!(asked.lock().unwrap().len(), 1);
        let (read, _) = scripted(vec![]);
        let settled = settle(
            vec![],
            OnlineOptions::default(),
            10,
            || Box::pin(async { Ok(()) }),
            read,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(settled, Settled::default());
    }

    #[test]
    fn keys_sort_in_key_order_without_repeats() {
        let mut keys = vec![
            vec![Value::Int64(3)],
            vec![Value::Int64(1)],
            vec![Value::Int64(3)],
            vec![Value::Int64(2)],
        ];
        sort_keys(&mut keys);
        assert_eq!(
            keys,
            vec![
                vec![Value::Int64(1)],
                vec![Value::Int64(2)],
                vec![Value::Int64(3)]
            ]
        );
    }
}
