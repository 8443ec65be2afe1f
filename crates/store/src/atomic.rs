//! Crash-safe file publication: write a temp file in the same directory, fsync it, rename it
//! into place, fsync the directory. Every metadata file the store writes goes through here.

use std::{
    fs::{self, File},
    io::Write,
    path::Path,
};

use crate::error::{IoContext, Result};

/// Writes `data` to `path` so that a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().expect("state paths are never the filesystem root");
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .ctx("create temp file in", dir)?;
    tmp.write_all(data).ctx("write", tmp.path().to_owned())?;
    tmp.as_file().sync_all().ctx("fsync", tmp.path().to_owned())?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .ctx("rename into", path)?;
    sync_dir(dir)
}

/// Fsyncs a directory so that renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .ctx("fsync directory", dir)
}

/// Creates a directory and its parents (no error if it exists).
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).ctx("create directory", dir)
}
