//! Row-filter conditions (`RefreshCondition`, `CompareCondition`): never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_model::Condition;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Condition::new(text);
    }
});
