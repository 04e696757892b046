//! Domain nouns and values of sluice.
//!
//! Everything here is pure data: validated names ([`name`]), column data types ([`DataType`]), values
//! ([`Value`]), bounded row batches ([`RowBatch`]), job and event identities and states ([`job`],
//! [`event`]), and the validated definitions of hubs, locations and channels ([`definition`]).
//! No I/O, no async, no wire shapes: the HVR and Fivetran JSON live in the API crate, the definitions
//! file in the service crate.
#![deny(missing_docs)]

pub mod access;
pub mod batch;
pub mod change;
pub mod condition;
pub mod data_type;
pub mod decimal;
pub mod definition;
pub mod event;
pub mod job;
mod json;
pub mod location_property;
pub mod name;
pub mod position;
pub mod refresh;
pub mod schema;
pub mod text;
pub mod value;

pub use access::AccessLevel;
pub use batch::{BatchLimits, RowBatch};
pub use change::{CaptureMessage, ChangeOp, Checkpoint, RowChange, TransactionId};
pub use condition::Condition;
pub use data_type::DataType;
pub use decimal::Decimal;
pub use event::{EventId, EventState, EventType, ResultName};
pub use job::{JobName, JobState, JobType};
pub use name::{
    BaseName, ChannelName, ColumnName, HubName, LocGroupName, LocationName, NameError, NameKind,
    SchemaName, TableName,
};
pub use position::Position;
pub use schema::{ColumnDef, TableRef, TableSchema, describe_key};
pub use value::Value;

/// Entry points for the fuzz targets in the repository's `fuzz/` directory; not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    /// Appends the canonical form of the JSON document `text` (the form values of JSON columns are
    /// compared in) to `out` and returns true; returns false, leaving `out` as it was, when `text`
    /// is not one JSON document.
    pub fn canonical_json(text: &str, out: &mut Vec<u8>) -> bool {
        crate::json::canonicalize(text, out).is_ok()
    }
}
