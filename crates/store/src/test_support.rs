//! Helpers for the store's unit tests.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Path, mode, uid, gid, mtime (not for directories), nlink (not for directories),
/// content, link target, rdev, capability.
pub(crate) type Snap = (
    String,
    u32,
    u32,
    u32,
    i64,
    u64,
    Vec<u8>,
    Option<PathBuf>,
    u64,
    Option<Vec<u8>>,
);

/// Everything about a tree that a copy must keep, by relative path.
pub(crate) fn snapshot(dir: &Path) -> Vec<Snap> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let md = e.path().symlink_metadata().unwrap();
            let data = if md.is_file() {
                fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            let target = md
                .file_type()
                .is_symlink()
                .then(|| fs::read_link(e.path()).unwrap());
            let mut cap = [0u8; 64];
            let cap = rustix::fs::lgetxattr(e.path(), "security.capability", &mut cap[..])
                .ok()
                .map(|n| cap[..n].to_vec());
            let (mtime, nlink) = if md.is_dir() {
                (0, 0)
            } else {
                (md.mtime(), md.nlink())
            };
            (
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                md.mode(),
                md.uid(),
                md.gid(),
                mtime,
                nlink,
                data,
                target,
                md.rdev(),
                cap,
            )
        })
        .collect()
}
