//! HVR conformance: conformance.

use super::*;
