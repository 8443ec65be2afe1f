//! What clients send `berth registry serve`: URL paths, `Range` and `Content-Range` headers,
//! manifests with any Content-Type, htpasswd files. No input panics, and every satisfiable
//! range lies inside the blob.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    berth_distribution::server::fuzz_parsers(data);
});
