//! HVR conformance: browse.

use super::*;
