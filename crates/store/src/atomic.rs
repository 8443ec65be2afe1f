//! Crash-safe publication helpers: after a rename publishes a file or directory, its parent
//! directory is fsynced so the rename itself survives a power cut.

use std::{
    fs::{self, File},
    path::Path,
};

use crate::error::{IoContext, Result};

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
