//! What clients send `berth serve`: container, exec, network and volume bodies, `filters`,
//! build, lifecycle, logs and commit queries, registry auth headers and request paths (the
//! first byte picks the parser). No input panics; accepted create bodies and filters, time
//! arguments and subnets read back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    berth_api::fuzzing::request_parts(data);
});
