//! The document of HVR's activate, refresh and compare results, contexts, slicing suggestions and control messages.

use super::Doc;

pub(super) fn document(_doc: &mut Doc) {}
