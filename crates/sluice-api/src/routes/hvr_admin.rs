//! The document of HVR's users and their props, per-hub access, first-run set-up, the wallet, the hub server's props, env and test, the repository.

use super::Doc;

pub(super) fn document(_doc: &mut Doc) {}
