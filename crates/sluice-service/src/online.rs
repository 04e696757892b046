//! Online compare (HVR's `online_compare`): a row-wise compare of an activated channel that
//! tells real differences from changes in flight.
//!
//! Each table is compared row-wise as usual; the keys found different are then settled by
//! [`sluice_engine::settle`] in rounds, each after the channel caught up with the source's
//! position of that moment ([`HubService::catch_up`]), reading only those keys again (a key
//! filter in each side's dialect when the keys are integers or plain text, else a full ordered
//! read of which only the keys are kept). A table is `DIFFERENT` only by differences that stayed
//! while the source row did not change; rows still changing after the last round are reported as
//! in flight (`Rows_In_Flight`), not as differences.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_connector::{Connector, ConnectorError, ErrorKind};
use sluice_engine::{CompareTablePlan, KeyRows, OnlineOptions, RowDiff, Settled};
use sluice_model::condition::{MAX_CONDITION_LEN, SqlDialect};
use sluice_model::{ChannelName, ColumnDef, Condition, HubName, LocationName, Value};
use tokio_util::sync::CancellationToken;

use crate::catch_up::CATCH_UP_TIMEOUT;
use crate::jobs::sql_dialect;
use crate::slicing::ident;
use crate::{HubService, Result, ServiceError, ServiceErrorKind};

/// The most keys of one table an online compare settles; differences beyond them are reported
/// as the first compare found them.
pub const MAX_SUSPECTS: usize = 10_000;

/// The most keys a recheck names in a filter; more are read by a full ordered read.
const MAX_FILTER_KEYS: usize = 200;

/// An online compare as requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineCompare {
    /// Rounds of settling (at least 2).
    pub rounds: u32,
    /// Seconds to let pass before each round's wait for replication (HVR's
    /// `online_compare_sleep`).
    pub sleep_seconds: u64,
}

impl Default for OnlineCompare {
    fn default() -> Self {
        OnlineCompare {
            rounds: OnlineOptions::default().rounds,
            sleep_seconds: 0,
        }
    }
}

impl OnlineCompare {
    pub(crate) fn options(self) -> OnlineOptions {
        OnlineOptions {
            rounds: self.rounds.max(2),
            pause: std::time::Duration::from_secs(self.sleep_seconds),
        }
    }
}

/// What online compare made of one table's differences.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OnlineTableResult {
    /// Keys the first compare found different and the rounds examined.
    pub suspects: u64,
    /// Of those, rows that turned out equal once replication caught up (changes in flight).
    pub settled: u64,
    /// Rows still changing at the source after the last round: in flight, not differences.
    pub in_flight: u64,
    /// The first of those keys.
    pub in_flight_keys: Vec<Vec<Value>>,
    /// Differences the first compare found beyond [`MAX_SUSPECTS`], reported unexamined.
    pub unexamined: u64,
    /// Rounds run.
    pub rounds: u32,
}

impl HubService {
    /// Refuses an online compare of `channel` from `source` into `target` unless the channel is
    /// activated, replicates from `source` into `target`, and its replication runs.
    pub(crate) async fn check_online_compare(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        source: &LocationName,
        target: &LocationName,
    ) -> Result<()> {
        let activation = self.activation(hub, channel).await.map_err(|e| {
            if e.kind() == ServiceErrorKind::Conflict {
                ServiceError::new(
                    ServiceErrorKind::Conflict,
                    format!(
                        "online compare needs channel {channel} activated (its changes are replicated while it compares); it is not: sluice activate {channel}, or compare without --online"
                    ),
                )
            } else {
                e
            }
        })?;
        if activation.state != "active" {
            return Err(ServiceError::new(
                ServiceErrorKind::Conflict,
                format!(
                    "online compare needs channel {channel} replicating; its activation is {}",
                    activation.state
                ),
            ));
        }
        if activation.source != *source {
            return Err(ServiceError::invalid(format!(
                "online compare: channel {channel} captures from {}, not {source}",
                activation.source
            )));
        }
        if !activation.targets.contains(target) {
            return Err(ServiceError::invalid(format!(
                "online compare: channel {channel} does not replicate into {target}"
            )));
        }
        if let Some(why) = self.replication_held(hub, channel).await? {
            return Err(ServiceError::new(
                ServiceErrorKind::Conflict,
                format!("online compare: channel {channel} is not replicating: {why}"),
            ));
        }
        Ok(())
    }

    /// Settles the differences `first` found in one table of an online compare; returns the
    /// confirmed differences and what became of the others.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn settle_table(
        &self,
        hub: &HubName,
        channel: &ChannelName,
        source: Arc<dyn Connector>,
        target: Arc<dyn Connector>,
        plan: &CompareTablePlan,
        first: &RowDiff,
        online: OnlineCompare,
        max_listed: usize,
        cancel: &CancellationToken,
    ) -> std::result::Result<(RowDiff, OnlineTableResult), ConnectorError> {
        let mut suspects: Vec<Vec<Value>> = [
            &first.only_on_source_keys,
            &first.only_on_target_keys,
            &first.differ_keys,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        sluice_engine::sort_keys(&mut suspects);
        let listed = |count: u64, keys: &Vec<Vec<Value>>| count.saturating_sub(keys.len() as u64);
        let unexamined = RowDiff {
            only_on_source: listed(first.only_on_source, &first.only_on_source_keys),
            only_on_target: listed(first.only_on_target, &first.only_on_target_keys),
            differ: listed(first.differ, &first.differ_keys),
            ..Default::default()
        };
        let service = self.clone();
        let (h, c) = (hub.clone(), channel.clone());
        let catch_up = move || {
            let (service, h, c) = (service.clone(), h.clone(), c.clone());
            Box::pin(async move {
                service
                    .catch_up(&h, &c, CATCH_UP_TIMEOUT)
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        let kind = if e.kind() == ServiceErrorKind::Failed {
                            ErrorKind::Timeout
                        } else {
                            ErrorKind::Internal
                        };
                        ConnectorError::new(kind, format!("waiting for channel {c} to catch up"))
                            .with_source(e)
                    })
            })
                as futures::future::BoxFuture<'static, std::result::Result<(), ConnectorError>>
        };
        let dialects = (sql_dialect(source.class()), sql_dialect(target.class()));
        let plan = plan.clone();
        let read_cancel = cancel.clone();
        let read = move |keys: Vec<Vec<Value>>| {
            let keyed = keyed_plan(&plan, &keys, dialects);
            let (source, target, cancel) = (source.clone(), target.clone(), read_cancel.clone());
            Box::pin(async move {
                sluice_engine::read_keys(source.as_ref(), target.as_ref(), &keyed, &keys, &cancel)
                    .await
            })
                as futures::future::BoxFuture<
                    'static,
                    std::result::Result<Vec<KeyRows>, ConnectorError>,
                >
        };
        let suspect_count = suspects.len() as u64;
        let settled: Settled = sluice_engine::settle(
            suspects,
            online.options(),
            max_listed,
            catch_up,
            read,
            cancel,
        )
        .await?;
        let mut diff = settled.confirmed;
        diff.only_on_source += unexamined.only_on_source;
        diff.only_on_target += unexamined.only_on_target;
        diff.differ += unexamined.differ;
        let unexamined_total =
            unexamined.only_on_source + unexamined.only_on_target + unexamined.differ;
        Ok((
            diff,
            OnlineTableResult {
                suspects: suspect_count,
                settled: settled.settled,
                in_flight: settled.in_flight,
                in_flight_keys: settled.in_flight_keys,
                unexamined: unexamined_total,
                rounds: settled.rounds,
            },
        ))
    }
}

/// `plan` with each side's read restricted to `keys` where they can be written as a filter.
fn keyed_plan(
    plan: &CompareTablePlan,
    keys: &[Vec<Value>],
    (source, target): (SqlDialect, SqlDialect),
) -> CompareTablePlan {
    let mut keyed = plan.clone();
    let key = &plan.source_read.key;
    if let (Some(s), Some(t)) = (
        key_filter(
            &plan.source_read.columns,
            key,
            keys,
            plan.source_read.filter.as_ref(),
            source,
        ),
        key_filter(
            &plan.target_read.columns,
            &plan.target_read.key,
            keys,
            plan.target_read.filter.as_ref(),
            target,
        ),
    ) {
        keyed.source_read.filter = Some(s);
        keyed.target_read.filter = Some(t);
    }
    keyed
}

/// A value as an SQL literal a filter may hold: integers as digits, plain text quoted; `None`
/// for anything else (a full read is used then).
fn literal(value: &Value) -> Option<String> {
    match value {
        Value::Int16(i) => Some(i.to_string()),
        Value::Int32(i) => Some(i.to_string()),
        Value::Int64(i) => Some(i.to_string()),
        Value::Text(s) if !s.chars().any(|c| c == '\\' || c.is_control()) => {
            Some(format!("'{}'", s.replace('\'', "''")))
        }
        _ => None,
    }
}

/// The condition keeping the rows of `keys` (and only rows `own` keeps), for `dialect`; `None`
/// when the keys cannot be written as one (too many, values without a plain literal).
fn key_filter(
    columns: &[ColumnDef],
    key: &[usize],
    keys: &[Vec<Value>],
    own: Option<&Condition>,
    dialect: SqlDialect,
) -> Option<Condition> {
    if keys.is_empty() || keys.len() > MAX_FILTER_KEYS {
        return None;
    }
    let names: Vec<String> = key
        .iter()
        .map(|&k| columns.get(k).map(|c| ident(c.name.as_str(), dialect)))
        .collect::<Option<_>>()?;
    let text = if let [name] = names.as_slice() {
        let values: Vec<String> = keys
            .iter()
            .map(|k| k.first().and_then(literal))
            .collect::<Option<_>>()?;
        format!("{name} IN ({})", values.join(", "))
    } else {
        let rows: Vec<String> = keys
            .iter()
            .map(|k| {
                let parts: Vec<String> = names
                    .iter()
                    .zip(k)
                    .map(|(n, v)| literal(v).map(|l| format!("{n} = {l}")))
                    .collect::<Option<_>>()?;
                Some(format!("({})", parts.join(" AND ")))
            })
            .collect::<Option<_>>()?;
        rows.join(" OR ")
    };
    if text.len() > MAX_CONDITION_LEN {
        return None;
    }
    let parts: Vec<&str> = own
        .map(Condition::as_str)
        .into_iter()
        .chain([text.as_str()])
        .collect();
    Condition::all(&parts, dialect).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::{ColumnName, DataType};

    fn col(name: &str, data_type: DataType) -> ColumnDef {
        ColumnDef {
            name: ColumnName::new(name).unwrap_or_else(|_| unreachable!()),
            data_type,
            nullable: false,
            native_type: None,
        }
    }

    #[test]
    fn keys_become_a_filter_only_when_they_can_be_written_plainly() {
        let columns = [col("id", DataType::Int64), col("name", DataType::Text)];
        let ints = vec![vec![Value::Int64(3)], vec![Value::Int64(-7)]];
        let c = key_filter(&columns, &[0], &ints, None, SqlDialect::Postgresql).map(|c| {
            c.sql(SqlDialect::Postgresql)
                .map(|s| s.into_owned())
                .unwrap_or_default()
        });
        assert_eq!(c.as_deref(), Some("\"id\" IN (3, -7)"));
        let texts = vec![vec![Value::Text("o'k".into())]];
        let c = key_filter(&columns, &[1], &texts, None, SqlDialect::Mariadb).map(|c| {
            c.sql(SqlDialect::Mariadb)
                .map(|s| s.into_owned())
                .unwrap_or_default()
        });
        assert_eq!(c.as_deref(), Some("`name` IN ('o''k')"));
        // Two key columns, and the table's own filter kept.
        let own = Condition::new("id > 0").ok();
        let pairs = vec![vec![Value::Int64(1), Value::Text("a".into())]];
        let c = key_filter(
            &columns,
            &[0, 1],
            &pairs,
            own.as_ref(),
            SqlDialect::Postgresql,
        )
        .map(|c| c.as_str().to_owned());
        assert_eq!(
            c.as_deref(),
            Some("(id > 0) AND ((\"id\" = 1 AND \"name\" = 'a'))")
        );
        // No plain literal, too many keys: no filter (a full read).
        let slash = vec![vec![Value::Text("a\\b".into())]];
        assert!(key_filter(&columns, &[1], &slash, None, SqlDialect::Postgresql).is_none());
        let many: Vec<Vec<Value>> = (0..=MAX_FILTER_KEYS as i64)
            .map(|i| vec![Value::Int64(i)])
            .collect();
        assert!(key_filter(&columns, &[0], &many, None, SqlDialect::Postgresql).is_none());
        let float = vec![vec![Value::Float64(1.5)]];
        assert!(key_filter(&columns, &[0], &float, None, SqlDialect::Postgresql).is_none());
    }
}
