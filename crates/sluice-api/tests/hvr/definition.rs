//! HVR conformance: definition.

use super::*;
