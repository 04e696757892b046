//! HVR conformance: monitor.

use super::*;
