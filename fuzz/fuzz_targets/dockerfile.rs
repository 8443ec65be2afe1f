//! Dockerfiles: parsing never panics, and expanding any word it kept never panics.
#![no_main]

use berth_dockerfile::{Kind, RunMount, expand, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = parse(text) else {
        return;
    };
    let lookup = |name: &str| name.len().is_multiple_of(2).then(|| name.to_string());
    let options = expand::Options {
        escape: file.escape,
        raw: false,
    };
    for stage in &file.stages {
        let _ = expand::expand(&stage.base, options, &lookup);
        for instruction in &stage.instructions {
            match &instruction.kind {
                Kind::Env(pairs) | Kind::Label(pairs) => {
                    for p in pairs {
                        let _ = expand::expand(&p.key, options, &lookup);
                        let _ = expand::expand(&p.value, options, &lookup);
                    }
                }
                Kind::Copy(c) | Kind::Add(c) => {
                    for s in c.sources.iter().chain([&c.dest]) {
                        let _ = expand::expand(s, options, &lookup);
                    }
                }
                Kind::Run(r) => {
                    for m in &r.mounts {
                        let _ = RunMount::parse(m);
                    }
                    for h in &r.heredocs {
                        let raw = expand::Options { raw: true, ..options };
                        let _ = expand::expand(&h.content, raw, &lookup);
                    }
                }
                Kind::User(w) | Kind::Workdir(w) | Kind::Stopsignal(w) => {
                    let _ = expand::expand(w, options, &lookup);
                }
                _ => {}
            }
        }
    }
});
