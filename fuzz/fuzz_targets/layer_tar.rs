//! Layer blobs: any bytes, as a plain, gzip or zstd tar, unpacked into a fresh directory as a
//! pull does (even lengths: whiteouts converted, owners kept) or as `cp` into a container does
//! (odd lengths: `.wh.` names plain, owner 0:0). Errors are errors, never panics, and nothing
//! beside the destination changes, whatever symlinks out of it the destination holds.
#![no_main]

use std::{path::Path, sync::OnceLock};

use berth_store::fuzzing::LayerScratch;
use libfuzzer_sys::fuzz_target;

/// Larger inputs only make each run slower; layers are streamed, not held.
const MAX_INPUT: usize = 1 << 20;
/// Sparse files claiming more are left out: their holes are written as zeros (as Docker
/// does), which would fill the disk rather than test the extractor.
const MAX_SPARSE_FILE: u64 = 64 << 20;
const SCRATCH_PREFIX: &str = "berth-fuzz-layer_tar.";

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT || berth_store::fuzzing::largest_sparse_file(data) > MAX_SPARSE_FILE {
        return;
    }
    static SCRATCH: OnceLock<LayerScratch> = OnceLock::new();
    let scratch = SCRATCH.get_or_init(|| {
        let tmp = std::env::temp_dir();
        remove_stale_scratch(&tmp);
        let base = tmp.join(format!("{SCRATCH_PREFIX}{}", std::process::id()));
        LayerScratch::new(&base).expect("make the scratch directory")
    });
    let _ = scratch.unpack(data, data.len().is_multiple_of(2));
});

/// libFuzzer exits without dropping the scratch directory: those of earlier runs, whose
/// process is gone, are removed here.
fn remove_stale_scratch(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(SCRATCH_PREFIX)) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
