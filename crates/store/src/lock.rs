//! Advisory file locks (flock) shared by every berth process using one state root.
//!
//! Lock order, outermost first: `meta-open` (held alone, only while opening the database);
//! then `gc` (shared by writers, exclusive by the sweep) ->
//! `layer-<chain-id>` (one unpacker per layer) -> SQLite's own transaction lock (held only
//! for short transactions, never across I/O on blobs or layers). The engine's `containers`
//! lock (shared by a container's create and removal, exclusive for the orphan sweep and
//! `system check`) is taken before any SQLite transaction and never under another of these.

use std::{
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::error::{IoContext, Result};

/// A held flock; released on drop (closing the file releases it).
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

/// The directory of named lock files.
#[derive(Debug, Clone)]
pub struct Locks {
    dir: PathBuf,
}

/// How long a wait may last before it is worth a warning naming the lock.
const SLOW_LOCK: Duration = Duration::from_secs(3);

impl Locks {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Locks { dir }
    }

    fn open(&self, name: &str) -> Result<(File, PathBuf)> {
        let path = self.dir.join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .ctx("open lock file", &path)?;
        Ok((file, path))
    }

    /// Blocks until the named lock is held exclusively.
    pub fn lock_exclusive(&self, name: &str) -> Result<LockGuard> {
        let (file, path) = self.open(name)?;
        wait_for(&path, || file.try_lock(), || file.lock())?;
        Ok(LockGuard { _file: file })
    }

    /// Blocks until the named lock is held shared.
    pub fn lock_shared(&self, name: &str) -> Result<LockGuard> {
        let (file, path) = self.open(name)?;
        wait_for(&path, || file.try_lock_shared(), || file.lock_shared())?;
        Ok(LockGuard { _file: file })
    }

    /// Takes the named lock exclusively if nobody holds it; never blocks.
    pub fn try_lock_exclusive(&self, name: &str) -> Result<Option<LockGuard>> {
        let (file, path) = self.open(name)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(LockGuard { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e).ctx("lock", path),
        }
    }
}

fn wait_for(
    path: &Path,
    try_lock: impl Fn() -> Result<(), std::fs::TryLockError>,
    lock: impl Fn() -> std::io::Result<()>,
) -> Result<()> {
    match try_lock() {
        Ok(()) => return Ok(()),
        Err(std::fs::TryLockError::Error(e)) => return Err(e).ctx("lock", path),
        Err(std::fs::TryLockError::WouldBlock) => {}
    }
    let start = Instant::now();
    loop {
        match try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::Error(e)) => return Err(e).ctx("lock", path),
            Err(std::fs::TryLockError::WouldBlock) => {}
        }
        if start.elapsed() > SLOW_LOCK {
            tracing::warn!(lock = %path.display(), "waiting for a lock held by another berth process");
            return lock().ctx("lock", path);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
