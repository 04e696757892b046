//! Refresh and compare requests as HVR's `POST …/refresh` and `POST …/compare` ask for them (and
//! as the CLI's flags can): names and choices still as text. One conversion each turns a request
//! into a [`RefreshCommand`] or [`CompareCommand`], checking how granularity, difference filter
//! and mode fit together; a refusal is an `Invalid` (or, for a hub or channel name that cannot
//! exist, `NotFound`) error with the message HVR clients see.

use sluice_model::refresh::{RefreshModeKind, RowwiseApply, WriteStrategy};
use sluice_model::{ChannelName, ColumnName, HubName, LocationName, TableName};

use crate::jobs::{CompareCommand, ModeOverride, RefreshCommand};
use crate::slicing::{SlicingRequest, parse_slicing};
use crate::{Granularity, ServiceError};

/// HVR's `difference_filter`: which changes a row-wise refresh applies; an unset flag is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DifferenceFilter {
    /// Rows only at the source.
    pub inserts: Option<bool>,
    /// Rows that differ.
    pub updates: Option<bool>,
    /// Rows only at the target.
    pub deletes: Option<bool>,
}

/// A refresh as requested, not yet checked.
#[derive(Debug, Clone, Default)]
pub struct RefreshRequest {
    /// The hub.
    pub hub: String,
    /// The channel.
    pub channel: String,
    /// `source_loc`.
    pub source_loc: Option<String>,
    /// `target_loc`.
    pub target_loc: Option<String>,
    /// `tables`; empty means all.
    pub tables: Vec<String>,
    /// `granularity`: `bulk` (the default) or `rowwise`.
    pub granularity: Option<String>,
    /// `difference_filter`, only with granularity `rowwise`.
    pub difference_filter: Option<DifferenceFilter>,
    /// `mode` (a sluice extension): `full_replace`, `incremental`, `smart_sync` or `rowwise`.
    pub mode: Option<String>,
    /// `incremental_column`.
    pub incremental_column: Option<String>,
    /// `date_buffer_days`.
    pub date_buffer_days: Option<u32>,
    /// `strategy`.
    pub strategy: Option<String>,
    /// `batch_rows`.
    pub batch_rows: Option<usize>,
    /// `parallel_sessions`; 0 counts as 1.
    pub parallel_sessions: Option<u32>,
    /// Count source rows first, for progress fractions.
    pub count_first: bool,
    /// `slicing`: per table, how it is read in slices.
    pub slicing: Vec<(String, SlicingRequest)>,
}

/// A compare as requested, not yet checked.
#[derive(Debug, Clone, Default)]
pub struct CompareRequest {
    /// The hub.
    pub hub: String,
    /// The channel.
    pub channel: String,
    /// `source_loc`.
    pub source_loc: Option<String>,
    /// `target_loc`.
    pub target_loc: Option<String>,
    /// `tables`; empty means all.
    pub tables: Vec<String>,
    /// `granularity`: `bulk` (the default) or `rowwise`.
    pub granularity: Option<String>,
    /// `online_compare`: `diff_diff` or `diff_cap` (sluice settles differences the same way
    /// for both, see [`crate::online`]); needs granularity `rowwise`.
    pub online_compare: Option<String>,
    /// `online_compare_sleep`: seconds to let pass before each round of an online compare.
    pub online_compare_sleep: Option<u64>,
    /// `max_listed`: keys listed per kind of difference; default 100.
    pub max_listed: Option<usize>,
    /// `pushdown` (a sluice extension): narrow the compare with checksums computed in the
    /// databases where both locations can; default true, `false` reads every row.
    pub pushdown: Option<bool>,
    /// `slicing`: per table, how it is compared in slices.
    pub slicing: Vec<(String, SlicingRequest)>,
}

/// Keys listed per kind of difference when a compare request does not say.
pub const DEFAULT_MAX_LISTED: usize = 100;

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::invalid(message)
}

fn hub_name(s: &str) -> Result<HubName, ServiceError> {
    HubName::new(s).map_err(|e| ServiceError::not_found(format!("hub {s:?} does not exist ({e})")))
}

fn channel_name(s: &str) -> Result<ChannelName, ServiceError> {
    ChannelName::new(s)
        .map_err(|e| ServiceError::not_found(format!("channel {s:?} does not exist ({e})")))
}

fn loc_name(field: &str, s: Option<&str>) -> Result<Option<LocationName>, ServiceError> {
    s.map(|s| LocationName::new(s).map_err(|e| invalid(format!("{field}: {e}"))))
        .transpose()
}

fn table_names(tables: &[String]) -> Result<Vec<TableName>, ServiceError> {
    tables
        .iter()
        .map(|t| TableName::new(t).map_err(|e| invalid(format!("tables: {e}"))))
        .collect()
}

/// `bulk` (the default) or `rowwise`.
fn granularity(text: Option<&str>) -> Result<Granularity, ServiceError> {
    match text {
        None | Some("bulk") => Ok(Granularity::Bulk),
        Some("rowwise") => Ok(Granularity::Rowwise),
        Some(other) => Err(invalid(format!(
            "granularity: expected \"bulk\" or \"rowwise\", got {other:?}"
        ))),
    }
}

impl TryFrom<&RefreshRequest> for RefreshCommand {
    type Error = ServiceError;

    fn try_from(r: &RefreshRequest) -> Result<Self, ServiceError> {
        let incremental_column = r
            .incremental_column
            .as_deref()
            .map(|c| ColumnName::new(c).map_err(|e| invalid(format!("incremental_column: {e}"))))
            .transpose()?;
        // Granularity `rowwise` is mode `rowwise`, with the changes the filter lets through.
        let (mode, apply) = match granularity(r.granularity.as_deref())? {
            Granularity::Bulk => {
                if r.difference_filter.is_some() {
                    return Err(invalid("difference_filter needs granularity \"rowwise\""));
                }
                (r.mode.as_deref(), None)
            }
            Granularity::Rowwise => {
                if r.mode.as_deref().is_some_and(|m| m != "rowwise") {
                    return Err(invalid("granularity \"rowwise\" contradicts mode"));
                }
                let f = r.difference_filter.unwrap_or_default();
                let on = |flag: Option<bool>| flag.unwrap_or(true);
                let apply = RowwiseApply::from_filter(on(f.inserts), on(f.updates), on(f.deletes))
                    .ok_or_else(|| {
                        invalid(
                            "difference_filter: sluice applies all changes, all but deletes, or only deletes",
                        )
                    })?;
                (Some("rowwise"), Some(apply))
            }
        };
        let strategy = r
            .strategy
            .as_deref()
            .map(|s| {
                s.parse::<WriteStrategy>()
                    .map_err(|e| invalid(format!("strategy: {e}")))
            })
            .transpose()?;
        let hub = hub_name(&r.hub)?;
        let channel = channel_name(&r.channel)?;
        let source = loc_name("source_loc", r.source_loc.as_deref())?;
        let target = loc_name("target_loc", r.target_loc.as_deref())?;
        let tables = table_names(&r.tables)?;
        let mode = mode
            .map(str::parse::<RefreshModeKind>)
            .transpose()
            .map_err(invalid)?;
        if mode == Some(RefreshModeKind::Rowwise) && !r.slicing.is_empty() {
            return Err(invalid(
                "slicing needs granularity \"bulk\": a row-wise refresh reads both sides in key order",
            ));
        }
        Ok(RefreshCommand {
            slicing: parse_slicing(&r.slicing)?,
            hub,
            channel,
            source,
            target,
            tables,
            strategy,
            batch_rows: r.batch_rows,
            count_first: r.count_first,
            mode: ModeOverride {
                mode,
                incremental_column,
                date_buffer_days: r.date_buffer_days,
                apply,
            },
            parallel: r.parallel_sessions.map(|p| p.max(1) as usize),
        })
    }
}

/// The longest pause before each round of an online compare (`online_compare_sleep`): an hour.
const MAX_ONLINE_COMPARE_SLEEP: u64 = 3600;

impl TryFrom<&CompareRequest> for CompareCommand {
    type Error = ServiceError;

    fn try_from(r: &CompareRequest) -> Result<Self, ServiceError> {
        let granularity = granularity(r.granularity.as_deref())?;
        let online = match r.online_compare.as_deref() {
            None => {
                if r.online_compare_sleep.is_some() {
                    return Err(invalid("online_compare_sleep needs online_compare"));
                }
                None
            }
            Some(mode) => {
                if granularity != Granularity::Rowwise {
                    return Err(invalid("online_compare requires granularity \"rowwise\""));
                }
                if !matches!(mode, "diff_diff" | "diff_cap") {
                    return Err(invalid(format!(
                        "online_compare: expected \"diff_diff\" or \"diff_cap\", got {mode:?}"
                    )));
                }
                let sleep_seconds = r.online_compare_sleep.unwrap_or(0);
                if sleep_seconds > MAX_ONLINE_COMPARE_SLEEP {
                    return Err(invalid(format!(
                        "online_compare_sleep: at most {MAX_ONLINE_COMPARE_SLEEP} seconds, got {sleep_seconds}"
                    )));
                }
                Some(crate::online::OnlineCompare {
                    sleep_seconds,
                    ..Default::default()
                })
            }
        };
        Ok(CompareCommand {
            slicing: parse_slicing(&r.slicing)?,
            hub: hub_name(&r.hub)?,
            channel: channel_name(&r.channel)?,
            source: loc_name("source_loc", r.source_loc.as_deref())?,
            target: loc_name("target_loc", r.target_loc.as_deref())?,
            tables: table_names(&r.tables)?,
            granularity,
            max_listed: r.max_listed.unwrap_or(DEFAULT_MAX_LISTED),
            pushdown: r.pushdown.unwrap_or(true),
            online,
        })
    }
}

/// A batch as requested (`POST /api/latest/hubs/{hub}/batch/{verb}`), not yet checked: the
/// options that do not apply to the verb are refused.
#[derive(Debug, Clone, Default)]
pub struct BatchRequest {
    /// The hub.
    pub hub: String,
    /// `refresh`, `compare`, `activate` or `deactivate`.
    pub verb: String,
    /// `channels`: a channel name or pattern.
    pub channels: String,
    /// `parallel`: jobs of the batch run at once.
    pub parallel: Option<usize>,
    /// `tables` (refresh, compare); empty means all.
    pub tables: Vec<String>,
    /// `mode` (refresh).
    pub mode: Option<String>,
    /// `strategy` (refresh).
    pub strategy: Option<String>,
    /// `granularity` (compare): `bulk` or `rowwise`.
    pub granularity: Option<String>,
    /// `max_listed` (compare).
    pub max_listed: Option<usize>,
    /// `refresh` (activate).
    pub refresh: Option<bool>,
}

impl TryFrom<&BatchRequest> for crate::batch::BatchCommand {
    type Error = ServiceError;

    fn try_from(r: &BatchRequest) -> Result<Self, ServiceError> {
        use crate::batch::{BatchOperation, BatchVerb};
        let verb: BatchVerb = r.verb.parse()?;
        let given = [
            (
                "tables",
                !r.tables.is_empty(),
                &[BatchVerb::Refresh, BatchVerb::Compare][..],
            ),
            ("mode", r.mode.is_some(), &[BatchVerb::Refresh][..]),
            ("strategy", r.strategy.is_some(), &[BatchVerb::Refresh][..]),
            (
                "granularity",
                r.granularity.is_some(),
                &[BatchVerb::Compare][..],
            ),
            (
                "max_listed",
                r.max_listed.is_some(),
                &[BatchVerb::Compare][..],
            ),
            ("refresh", r.refresh.is_some(), &[BatchVerb::Activate][..]),
        ];
        if let Some((field, _, _)) = given
            .iter()
            .find(|(_, set, verbs)| *set && !verbs.contains(&verb))
        {
            return Err(invalid(format!("{field} does not apply to a batch {verb}")));
        }
        let operation = match verb {
            BatchVerb::Refresh => BatchOperation::Refresh {
                tables: table_names(&r.tables)?,
                mode: ModeOverride {
                    mode: r
                        .mode
                        .as_deref()
                        .map(str::parse::<RefreshModeKind>)
                        .transpose()
                        .map_err(|e| invalid(format!("mode: {e}")))?,
                    ..ModeOverride::default()
                },
                strategy: r
                    .strategy
                    .as_deref()
                    .map(|s| {
                        s.parse::<WriteStrategy>()
                            .map_err(|e| invalid(format!("strategy: {e}")))
                    })
                    .transpose()?,
            },
            BatchVerb::Compare => BatchOperation::Compare {
                tables: table_names(&r.tables)?,
                granularity: granularity(r.granularity.as_deref())?,
                max_listed: r.max_listed.unwrap_or(DEFAULT_MAX_LISTED),
            },
            BatchVerb::Activate => BatchOperation::Activate {
                refresh: r.refresh.unwrap_or(false),
            },
            BatchVerb::Deactivate => BatchOperation::Deactivate,
        };
        Ok(crate::batch::BatchCommand {
            hub: hub_name(&r.hub)?,
            channels: r.channels.clone(),
            operation,
            parallel: r.parallel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServiceErrorKind;

    fn refresh(f: impl FnOnce(&mut RefreshRequest)) -> Result<RefreshCommand, ServiceError> {
        let mut r = RefreshRequest {
            hub: "hub1".into(),
            channel: "ch1".into(),
            source_loc: Some("src".into()),
            target_loc: Some("tgt".into()),
            ..Default::default()
        };
        f(&mut r);
        RefreshCommand::try_from(&r)
    }

    fn refused(result: Result<RefreshCommand, ServiceError>) -> String {
        let e = result.expect_err("the request is refused");
        assert_eq!(e.kind(), ServiceErrorKind::Invalid, "{e}");
        e.to_string()
    }

    fn filter(i: Option<bool>, u: Option<bool>, d: Option<bool>) -> Option<DifferenceFilter> {
        Some(DifferenceFilter {
            inserts: i,
            updates: u,
            deletes: d,
        })
    }

    #[test]
    fn a_plain_request_keeps_every_table_mode() {
        let cmd = refresh(|r| r.tables = vec!["orders".into()]).unwrap();
        assert_eq!(cmd.hub.as_str(), "hub1");
        assert_eq!(cmd.source.unwrap().as_str(), "src");
        assert_eq!(cmd.tables[0].as_str(), "orders");
        assert_eq!(cmd.mode.mode, None);
        assert_eq!(cmd.mode.apply, None);
        assert_eq!(cmd.strategy, None);
        assert_eq!(cmd.parallel, None);
        let cmd = refresh(|r| {
            r.granularity = Some("bulk".into());
            r.parallel_sessions = Some(0);
            r.strategy = Some("staging_swap".into());
        })
        .unwrap();
        assert_eq!(cmd.mode.mode, None);
        assert_eq!(cmd.parallel, Some(1));
        assert_eq!(cmd.strategy, Some(WriteStrategy::StagingSwap));
    }

    #[test]
    fn every_mode_under_bulk_granularity() {
        for mode in RefreshModeKind::ALL {
            let cmd = refresh(|r| {
                r.mode = Some(mode.as_str().into());
                r.incremental_column = Some("updated_at".into());
                r.date_buffer_days = Some(2);
            })
            .unwrap();
            assert_eq!(cmd.mode.mode, Some(mode));
            assert_eq!(cmd.mode.apply, None);
            assert_eq!(cmd.mode.incremental_column.unwrap().as_str(), "updated_at");
            assert_eq!(cmd.mode.date_buffer_days, Some(2));
        }
    }

    #[test]
    fn rowwise_granularity_with_each_filter() {
        use RowwiseApply::*;
        let cases = [
            (None, All),
            (filter(None, None, None), All),
            (filter(Some(true), Some(true), Some(true)), All),
            (filter(None, None, Some(false)), NoDeletes),
            (filter(Some(true), Some(true), Some(false)), NoDeletes),
            (filter(Some(false), Some(false), None), OnlyDeletes),
            (filter(Some(false), Some(false), Some(true)), OnlyDeletes),
        ];
        for (f, apply) in cases {
            for mode in [None, Some("rowwise")] {
                let cmd = refresh(|r| {
                    r.granularity = Some("rowwise".into());
                    r.difference_filter = f;
                    r.mode = mode.map(Into::into);
                })
                .unwrap();
                assert_eq!(cmd.mode.mode, Some(RefreshModeKind::Rowwise), "{f:?}");
                assert_eq!(cmd.mode.apply, Some(apply), "{f:?}");
            }
        }
    }

    #[test]
    fn refusals() {
        let some = Some(true);
        let no = Some(false);
        for f in [
            filter(no, no, no),
            filter(some, no, no),
            filter(no, some, no),
            filter(some, no, some),
            filter(no, None, some),
            filter(None, no, None),
        ] {
            assert_eq!(
                refused(refresh(|r| {
                    r.granularity = Some("rowwise".into());
                    r.difference_filter = f;
                })),
                "difference_filter: sluice applies all changes, all but deletes, or only deletes"
            );
        }
        for granularity in [None, Some("bulk")] {
            assert_eq!(
                refused(refresh(|r| {
                    r.granularity = granularity.map(Into::into);
                    r.difference_filter = filter(None, None, None);
                })),
                "difference_filter needs granularity \"rowwise\""
            );
        }
        // The contradiction is found before the mode is read: a mode that is not one counts too.
        for mode in ["full_replace", "incremental", "merge"] {
            assert_eq!(
                refused(refresh(|r| {
                    r.granularity = Some("rowwise".into());
                    r.mode = Some(mode.into());
                })),
                "granularity \"rowwise\" contradicts mode"
            );
        }
        assert_eq!(
            refused(refresh(|r| r.granularity = Some("Rowwise".into()))),
            "granularity: expected \"bulk\" or \"rowwise\", got \"Rowwise\""
        );
        assert_eq!(
            refused(refresh(|r| r.mode = Some("merge".into()))),
            "unknown refresh mode \"merge\"; expected full_replace, incremental, smart_sync or rowwise"
        );
        assert_eq!(
            refused(refresh(|r| r.strategy = Some("swap".into()))),
            "strategy: unknown strategy \"swap\"; expected truncate_load, staging_swap, append or upsert"
        );
        assert!(
            refused(refresh(|r| r.incremental_column = Some(String::new())))
                .starts_with("incremental_column: ")
        );
        assert!(
            refused(refresh(|r| r.source_loc = Some("Src".into()))).starts_with("source_loc: ")
        );
        assert!(
            refused(refresh(|r| r.target_loc = Some("Tgt".into()))).starts_with("target_loc: ")
        );
        assert!(refused(refresh(|r| r.tables = vec!["A".into()])).starts_with("tables: "));
        let e = refresh(|r| r.channel = "Bad".into()).unwrap_err();
        assert_eq!(e.kind(), ServiceErrorKind::NotFound);
        assert!(
            e.to_string()
                .starts_with("channel \"Bad\" does not exist ("),
            "{e}"
        );
        let e = refresh(|r| r.hub = "Bad".into()).unwrap_err();
        assert_eq!(e.kind(), ServiceErrorKind::NotFound);
        assert!(
            e.to_string().starts_with("hub \"Bad\" does not exist ("),
            "{e}"
        );
    }

    #[test]
    fn compare_requests() {
        let request = |granularity: Option<&str>, online: Option<&str>| CompareRequest {
            hub: "hub1".into(),
            channel: "ch1".into(),
            source_loc: Some("src".into()),
            target_loc: Some("tgt".into()),
            granularity: granularity.map(Into::into),
            online_compare: online.map(Into::into),
            ..Default::default()
        };
        let cmd = CompareCommand::try_from(&request(None, None)).unwrap();
        assert_eq!(
            (cmd.granularity, cmd.max_listed),
            (Granularity::Bulk, DEFAULT_MAX_LISTED)
        );
        let cmd = CompareCommand::try_from(&request(Some("rowwise"), None)).unwrap();
        assert_eq!(cmd.granularity, Granularity::Rowwise);
        let message = |r: CompareRequest| CompareCommand::try_from(&r).unwrap_err().to_string();
        assert_eq!(
            message(request(Some("rows"), None)),
            "granularity: expected \"bulk\" or \"rowwise\", got \"rows\""
        );
        assert_eq!(
            message(request(Some("bulk"), Some("diff_cdc"))),
            "online_compare requires granularity \"rowwise\""
        );
        assert_eq!(
            message(request(Some("rowwise"), Some("diff_cdc"))),
            "online_compare: expected \"diff_diff\" or \"diff_cap\", got \"diff_cdc\""
        );
        for mode in ["diff_diff", "diff_cap"] {
            let cmd = CompareCommand::try_from(&CompareRequest {
                online_compare_sleep: Some(2),
                ..request(Some("rowwise"), Some(mode))
            })
            .unwrap();
            assert_eq!(
                cmd.online,
                Some(crate::online::OnlineCompare {
                    rounds: 3,
                    sleep_seconds: 2
                })
            );
        }
        assert_eq!(
            message(CompareRequest {
                online_compare_sleep: Some(2),
                ..request(Some("rowwise"), None)
            }),
            "online_compare_sleep needs online_compare"
        );
        assert_eq!(
            message(CompareRequest {
                online_compare_sleep: Some(u64::MAX),
                ..request(Some("rowwise"), Some("diff_diff"))
            }),
            format!(
                "online_compare_sleep: at most 3600 seconds, got {}",
                u64::MAX
            )
        );
    }
}
