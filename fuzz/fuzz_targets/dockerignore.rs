//! .dockerignore: parsing any text never panics, nor does matching any path against it.
#![no_main]

use berth_dockerfile::ignore::IgnoreRules;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line is the path asked about, the rest the file.
    let (path, rules) = text.split_once('\n').unwrap_or((text, ""));
    // The build's walk asks only about clean relative paths (no empty, `.` or `..` parts);
    // `z/..` is not a file under `z` (fuzzing found that case, now left out).
    if path.split('/').any(|part| matches!(part, "" | "." | "..")) {
        return;
    }
    let Ok(rules) = IgnoreRules::parse(rules) else {
        return;
    };
    let kept = !rules.is_excluded(path);
    // A directory the walk may skip must hold nothing the rules keep.
    let mut dir = path;
    while let Some((parent, _)) = dir.rsplit_once('/') {
        if kept && rules.is_excluded(parent) {
            assert!(!rules.can_skip_dir(parent), "{parent} skipped but {path} kept");
        }
        dir = parent;
    }
});
