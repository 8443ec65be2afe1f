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
    if let Ok(rules) = IgnoreRules::parse(rules) {
        let excluded = rules.is_excluded(path);
        if !excluded {
            return;
        }
        // A directory the walk may skip must hold nothing the rules keep.
        if let Some((dir, _)) = path.rsplit_once('/')
            && rules.can_skip_dir(dir)
        {
            assert!(rules.is_excluded(path), "{dir} skipped but {path} kept");
        }
    }
});
