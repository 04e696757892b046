//! HVR conformance: admin.

use super::*;
