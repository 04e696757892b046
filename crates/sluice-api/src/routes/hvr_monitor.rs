//! The document of HVR's the job system, job attributes and environment, event types, statistics, alerts and log files.

use super::Doc;

pub(super) fn document(_doc: &mut Doc) {}
