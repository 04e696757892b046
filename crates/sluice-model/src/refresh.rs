//! How a refresh treats a table: its mode, the full-replace strategy, which row-wise changes it
//! applies, and the settings `Refresh` actions give (decoded once, by the definitions compiler or
//! the repository; the service merges them with a run's overrides).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::name::ColumnName;

/// The refresh mode a `Refresh` action or a request names (without its incremental column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshModeKind {
    /// Replace the target's contents by the source's.
    FullReplace,
    /// Copy the source rows beyond the target's greatest incremental column value.
    Incremental,
    /// `full_replace` when the target is missing or empty, otherwise `incremental`.
    SmartSync,
    /// Compare by key and apply only the needed changes.
    Rowwise,
}

impl RefreshModeKind {
    /// Every mode, in the order messages list them.
    pub const ALL: [RefreshModeKind; 4] = [
        RefreshModeKind::FullReplace,
        RefreshModeKind::Incremental,
        RefreshModeKind::SmartSync,
        RefreshModeKind::Rowwise,
    ];

    /// The spelling in definitions, requests and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshModeKind::FullReplace => "full_replace",
            RefreshModeKind::Incremental => "incremental",
            RefreshModeKind::SmartSync => "smart_sync",
            RefreshModeKind::Rowwise => "rowwise",
        }
    }

    /// Whether the mode needs an incremental column.
    pub fn needs_column(self) -> bool {
        matches!(
            self,
            RefreshModeKind::Incremental | RefreshModeKind::SmartSync
        )
    }
}

impl fmt::Display for RefreshModeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RefreshModeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RefreshModeKind::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown refresh mode {s:?}; expected full_replace, incremental, smart_sync or rowwise"
                )
            })
    }
}

/// Which row-wise changes a `rowwise` refresh applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RowwiseApply {
    /// Inserts, updates and deletes: the target ends equal to the source.
    #[default]
    All,
    /// Inserts and updates only (the delta).
    NoDeletes,
    /// Deletes only.
    OnlyDeletes,
}

impl RowwiseApply {
    /// Every choice, in the order messages list them.
    pub const ALL: [RowwiseApply; 3] = [
        RowwiseApply::All,
        RowwiseApply::NoDeletes,
        RowwiseApply::OnlyDeletes,
    ];

    /// The spelling in definitions (`Refresh Apply`).
    pub fn as_str(self) -> &'static str {
        match self {
            RowwiseApply::All => "all",
            RowwiseApply::NoDeletes => "no_deletes",
            RowwiseApply::OnlyDeletes => "only_deletes",
        }
    }

    /// Whether rows only on the source and differing rows are written.
    pub fn puts(self) -> bool {
        self != RowwiseApply::OnlyDeletes
    }

    /// Whether rows only on the target are deleted.
    pub fn deletes(self) -> bool {
        self != RowwiseApply::NoDeletes
    }

    /// The choice HVR's `difference_filter` makes (an unset flag counts as set): all changes,
    /// all but deletes, or only deletes; `None` for any other combination.
    pub fn from_filter(inserts: bool, updates: bool, deletes: bool) -> Option<Self> {
        match (inserts, updates, deletes) {
            (true, true, true) => Some(RowwiseApply::All),
            (true, true, false) => Some(RowwiseApply::NoDeletes),
            (false, false, true) => Some(RowwiseApply::OnlyDeletes),
            _ => None,
        }
    }
}

impl FromStr for RowwiseApply {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RowwiseApply::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown Apply {s:?}"))
    }
}

/// How a write replaces what the target table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteStrategy {
    /// Empty the table (or the rows matching the target filter) and load, in one transaction.
    TruncateLoad,
    /// Load a staging table, then swap it for the target atomically.
    StagingSwap,
    /// Add rows to what is there.
    Append,
    /// Insert rows, replacing target rows that have the same key; a connector's
    /// `TableWriter::delete_batch` removes rows by key. Everything becomes visible at commit,
    /// atomically. A key occurs at most once among the rows and deletes of one write, so their
    /// order does not matter.
    Upsert,
}

impl WriteStrategy {
    /// The spelling used in definitions, the CLI and plans.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteStrategy::TruncateLoad => "truncate_load",
            WriteStrategy::StagingSwap => "staging_swap",
            WriteStrategy::Append => "append",
            WriteStrategy::Upsert => "upsert",
        }
    }
}

impl FromStr for WriteStrategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "truncate_load" => Ok(WriteStrategy::TruncateLoad),
            "staging_swap" => Ok(WriteStrategy::StagingSwap),
            "append" => Ok(WriteStrategy::Append),
            "upsert" => Ok(WriteStrategy::Upsert),
            _ => Err(format!(
                "unknown strategy {s:?}; expected truncate_load, staging_swap, append or upsert"
            )),
        }
    }
}

/// What `Refresh` actions say about a table; each unset field leaves the choice to an earlier
/// action, the run, or the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshSettings {
    /// `Mode`.
    pub mode: Option<RefreshModeKind>,
    /// `Strategy` (`truncate_load` or `staging_swap`).
    pub strategy: Option<WriteStrategy>,
    /// `IncrementalColumn`.
    pub incremental_column: Option<ColumnName>,
    /// `DateBufferDays`.
    pub date_buffer_days: Option<u32>,
    /// `Apply`.
    pub apply: Option<RowwiseApply>,
}

impl RefreshSettings {
    /// These settings with those of `later` laid over them: a field `later` sets wins.
    pub fn overlaid(self, later: &RefreshSettings) -> RefreshSettings {
        RefreshSettings {
            mode: later.mode.or(self.mode),
            strategy: later.strategy.or(self.strategy),
            incremental_column: later.incremental_column.clone().or(self.incremental_column),
            date_buffer_days: later.date_buffer_days.or(self.date_buffer_days),
            apply: later.apply.or(self.apply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for m in RefreshModeKind::ALL {
            assert_eq!(m.as_str().parse::<RefreshModeKind>().unwrap(), m);
            assert_eq!(
                serde_json::to_value(m).unwrap(),
                serde_json::json!(m.as_str())
            );
        }
        for a in RowwiseApply::ALL {
            assert_eq!(a.as_str().parse::<RowwiseApply>().unwrap(), a);
            assert_eq!(
                serde_json::to_value(a).unwrap(),
                serde_json::json!(a.as_str())
            );
        }
        assert_eq!(
            "merge".parse::<RefreshModeKind>().unwrap_err(),
            "unknown refresh mode \"merge\"; expected full_replace, incremental, smart_sync or rowwise"
        );
        assert_eq!(
            "upsert".parse::<WriteStrategy>().unwrap(),
            WriteStrategy::Upsert
        );
        assert!("Upsert".parse::<WriteStrategy>().is_err());
    }

    #[test]
    fn difference_filters() {
        use RowwiseApply::*;
        assert_eq!(RowwiseApply::from_filter(true, true, true), Some(All));
        assert_eq!(
            RowwiseApply::from_filter(true, true, false),
            Some(NoDeletes)
        );
        assert_eq!(
            RowwiseApply::from_filter(false, false, true),
            Some(OnlyDeletes)
        );
        for refused in [
            (false, false, false),
            (true, false, false),
            (false, true, false),
            (true, false, true),
            (false, true, true),
        ] {
            assert_eq!(
                RowwiseApply::from_filter(refused.0, refused.1, refused.2),
                None
            );
        }
    }

    #[test]
    fn later_settings_win_field_by_field() {
        let column = ColumnName::new("id").unwrap();
        let first = RefreshSettings {
            mode: Some(RefreshModeKind::Incremental),
            incremental_column: Some(column.clone()),
            date_buffer_days: Some(3),
            ..Default::default()
        };
        let later = RefreshSettings {
            mode: Some(RefreshModeKind::SmartSync),
            strategy: Some(WriteStrategy::StagingSwap),
            ..Default::default()
        };
        let merged = first.overlaid(&later);
        assert_eq!(merged.mode, Some(RefreshModeKind::SmartSync));
        assert_eq!(merged.strategy, Some(WriteStrategy::StagingSwap));
        assert_eq!(merged.incremental_column, Some(column));
        assert_eq!(merged.date_buffer_days, Some(3));
        assert_eq!(merged.apply, None);
    }
}
