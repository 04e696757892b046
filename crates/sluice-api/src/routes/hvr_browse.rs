//! The document of HVR's location tests, database browsing, the query interface and table adapt.

use super::Doc;

pub(super) fn document(_doc: &mut Doc) {}
