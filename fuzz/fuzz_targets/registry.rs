//! What registries and users hand the registry client: `WWW-Authenticate` challenges and
//! `--platform` values never panic, and a parsed platform always matches itself.
#![no_main]

use berth_distribution::{Platform, auth::parse_challenges};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_challenges(text);
    if let Ok(p) = Platform::parse(text) {
        let variant = (!p.variant.is_empty()).then_some(p.variant.as_str());
        assert!(p.matches(&p.os, &p.architecture, variant), "{p} must match itself");
    }
});
