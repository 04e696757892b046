//! Events: every operation posts one, carrying per-table results.
//!
//! An event id is the event's creation instant with microsecond precision, written
//! `2024-05-01T10:11:12.123456Z` (HVR's `ev_id_tstamp`). Ids are unique in a repository; the
//! repository bumps a colliding id by a microsecond.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, SubsecRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// The id of an event: its creation time in microseconds, UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(DateTime<Utc>);

/// Text that is not an event id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event id {0:?}: expected e.g. 2024-05-01T10:11:12.123456Z")]
pub struct EventIdError(String);

const EVENT_ID_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

impl EventId {
    /// The id for an event created at `at` (truncated to microseconds).
    pub fn at(at: DateTime<Utc>) -> Self {
        EventId(at.trunc_subsecs(6))
    }

    /// The id for an event created now.
    pub fn now() -> Self {
        Self::at(Utc::now())
    }

    /// The next possible id after this one (one microsecond later).
    pub fn next(self) -> Self {
        EventId(self.0 + TimeDelta::microseconds(1))
    }

    /// The creation instant.
    pub fn instant(self) -> DateTime<Utc> {
        self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format(EVENT_ID_FORMAT))
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

impl FromStr for EventId {
    type Err = EventIdError;
    fn from_str(s: &str) -> Result<Self, EventIdError> {
        // Some HVR scripts percent-mangle the colons; accept both.
        let text = s.replace('%', ":");
        let Some(body) = text.strip_suffix('Z') else {
            return Err(EventIdError(s.to_owned()));
        };
        NaiveDateTime::parse_from_str(body, "%Y-%m-%dT%H:%M:%S%.f")
            .map(|naive| EventId::at(naive.and_utc()))
            .map_err(|_| EventIdError(s.to_owned()))
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

macro_rules! wire_enum {
    ($(#[$doc:meta])* $ty:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $ty {
            $($(#[$vdoc])* $variant),+
        }

        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!(concat!("unknown ", stringify!($ty), " {:?}"), s))
            }
        }

        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

wire_enum!(
    /// The state of an event: created `ACTIVE`, then `DONE`, `FAILED` or `CANCELED`.
    EventState {
        /// Running or waiting to run.
        Active => "ACTIVE",
        /// Finished successfully.
        Done => "DONE",
        /// Finished with an error.
        Failed => "FAILED",
        /// Cancelled by a user.
        Canceled => "CANCELED",
    }
);

impl EventState {
    /// Whether the event has finished (any state but `ACTIVE`).
    pub fn is_final(self) -> bool {
        self != EventState::Active
    }
}

wire_enum!(
    /// What an event records.
    EventType {
        /// A refresh.
        Refresh => "Refresh",
        /// A compare.
        Compare => "Compare",
        /// A change of definitions (channels, locations, tables, actions).
        DefinitionChange => "Definition_Change",
        /// A definitions file or document imported as a whole.
        DefinitionChangeImport => "Definition_Change_Import",
        /// A hub created.
        HubCreate => "Hub_Create",
        /// Table definitions adapted to a database's tables.
        TableDefinitionAdapt => "Table_Definition_Adapt",
        /// A hub frozen.
        HubFreeze => "Hub_Freeze",
        /// A hub unfrozen.
        HubUnfreeze => "Hub_Unfreeze",
        /// A location connection test.
        LocationTest => "Location_Test",
        /// A hub deleted.
        HubDelete => "Hub_Delete",
        /// Hub properties changed.
        HubPropertyChange => "Hub_Property_Change",
        /// Jobs started by a user.
        JobStart => "Job_Start",
        /// Jobs suspended by a user.
        JobSuspend => "Job_Suspend",
        /// Jobs unsuspended by a user.
        JobUnsuspend => "Job_Unsuspend",
        /// Jobs deleted by a user.
        JobDelete => "Job_Delete",
        /// Events cancelled by a user.
        EventCancel => "Event_Cancel",
        /// A user created.
        UserCreate => "User_Create",
        /// A user changed.
        UserChange => "User_Change",
        /// A user deleted.
        UserDelete => "User_Delete",
        /// A connector's settings changed (pause, schedule, schema config) through the
        /// Fivetran face or the dashboard.
        ConnectorChange => "Connector_Change",
        /// A hub's stored secrets re-sealed under the wallet's current key.
        ReencryptSecrets => "Reencrypt_Secrets",
        /// A hub saved to a snapshot.
        SaveHubSnapshot => "Save_Hub_Snapshot",
        /// A hub restored from a snapshot.
        RestoreHubSnapshot => "Restore_Hub_Snapshot",
        /// A channel activated: capture set up at its source, integrate at its targets.
        Activate => "Activate",
        /// A channel deactivated: what activation made removed.
        Deactivate => "Deactivate",
        /// A run of a capture job.
        Capture => "Capture",
        /// A run of an integrate job.
        Integrate => "Integrate",
    }
);

wire_enum!(
    /// Names of per-table results an event carries (HVR `HVR_EVENT_RESULT.res_name`).
    ResultName {
        /// `PENDING`, `BUSY`, `DONE`, `DONE/IDENTICAL`, `DONE/DIFFERENT`, `FAILED`.
        TableState => "Table_State",
        /// When work on the table started.
        TableStartTime => "Table_Start_Time",
        /// Seconds spent on the table.
        TableDuration => "Table_Duration",
        /// Rows read from the source.
        SourceRowsUsed => "Source_Rows_Used",
        /// Rows the source's select answered (before a restriction drops any).
        SourceRowsSelected => "Source_Rows_Selected",
        /// Rows in the target after a refresh, or read from the target in a compare.
        TargetRowsUsed => "Target_Rows_Used",
        /// Bytes of row data moved or compared.
        BytesUsed => "Bytes_Used",
        /// Of a refresh that changes rows in place: rows inserted (row-wise: only in the source).
        RowsInserted => "Rows_Inserted",
        /// Of a row-wise refresh: rows in both whose values differed, updated.
        RowsUpdated => "Rows_Updated",
        /// Of a row-wise refresh: rows only in the target, deleted.
        RowsDeleted => "Rows_Deleted",
        /// Of an incremental refresh: rows written by upsert (inserted or updated by key).
        RowsUpserted => "Rows_Upserted",
        /// Rows present only in the source.
        RowsOnlyOnSource => "Rows_Only_On_Source",
        /// Rows present only in the target.
        RowsOnlyOnTarget => "Rows_Only_On_Target",
        /// Rows present on both sides with different values.
        RowsWhichDiffer => "Rows_Which_Differ",
        /// Of an online compare: rows found different whose source row kept changing through
        /// every round (changes in flight, not differences).
        RowsInFlight => "Rows_In_Flight",
        /// The error that failed the table.
        TableError => "Table_Error",
        /// Of an event: its subtasks (sluice: one per table) finished so far.
        SubtasksDone => "Subtasks_Done",
        /// Of an event: its subtasks (sluice: one per table).
        SubtasksTotal => "Subtasks_Total",
        /// Of an event: its subtasks (sluice: one per table) running now.
        SubtasksBusy => "Subtasks_Busy",
        /// Of a sliced table: its slices that failed (its `Subtasks_Total` and `Subtasks_Done`
        /// count its slices).
        SubtasksFailed => "Subtasks_Failed",
        /// Of a capture run: row changes captured from the source.
        CapturedRows => "Captured_Rows",
        /// Of an integrate run: row changes applied to the target (after coalescing per key).
        IntegratedRows => "Integrated_Rows",
        /// Seconds from the source's commit to the capture reading the change (last seen).
        CaptureLatency => "Capture_Latency",
        /// Seconds from the source's commit to the target's commit (last batch).
        IntegrateLatency => "Integrate_Latency",
        /// Of a capture run: the source position every target has stored and the capture
        /// acknowledged (the position as JSON); changes committed before it are at every target.
        DurablePosition => "Durable_Position",
    }
);

/// Values of the `Table_State` result.
pub mod table_state {
    /// Not started.
    pub const PENDING: &str = "PENDING";
    /// In progress.
    pub const BUSY: &str = "BUSY";
    /// Refreshed.
    pub const DONE: &str = "DONE";
    /// Compared and found identical.
    pub const DONE_IDENTICAL: &str = "DONE/IDENTICAL";
    /// Compared and found different.
    pub const DONE_DIFFERENT: &str = "DONE/DIFFERENT";
    /// Failed; the target table was left as it was.
    pub const FAILED: &str = "FAILED";
    /// Cancelled; the target table was left as it was.
    pub const CANCELED: &str = "CANCELED";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_have_microseconds_and_round_trip() {
        let id: EventId = "2024-05-01T10:11:12.123456Z".parse().unwrap();
        assert_eq!(id.to_string(), "2024-05-01T10:11:12.123456Z");
        assert_eq!(id.next().to_string(), "2024-05-01T10:11:12.123457Z");
        let whole: EventId = "2024-05-01T10:11:12Z".parse().unwrap();
        assert_eq!(whole.to_string(), "2024-05-01T10:11:12.000000Z");
        let mangled: EventId = "2024-05-01T10%11%12.5Z".parse().unwrap();
        assert_eq!(mangled.to_string(), "2024-05-01T10:11:12.500000Z");
        assert!("2024-05-01 10:11:12".parse::<EventId>().is_err());
        assert!(EventId::now().to_string().ends_with('Z'));
    }

    #[test]
    fn wire_spellings() {
        assert_eq!(EventState::Canceled.as_str(), "CANCELED");
        assert_eq!(
            "Rows_Only_On_Source".parse::<ResultName>().unwrap(),
            ResultName::RowsOnlyOnSource
        );
        assert_eq!(EventType::DefinitionChange.to_string(), "Definition_Change");
        assert!("Nope".parse::<EventType>().is_err());
    }
}
