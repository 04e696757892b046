//! HVR conformance: arc.

use super::*;
