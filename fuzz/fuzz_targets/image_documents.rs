//! Image documents from registries and archives: manifests, indexes, configs and a Docker
//! archive's `manifest.json`. No input panics, and what parses serializes and parses back to
//! the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    berth_store::fuzzing::image_documents(data);
});
