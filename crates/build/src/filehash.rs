//! The digests of context files, remembered by what `stat` says of them, so that a rebuild
//! reads only the files that changed to compute its cache keys (as git's index and
//! BuildKit's content hash cache do).
//!
//! A file's entry is its device and inode, keyed to its size, modification time and change
//! time, all in nanoseconds. Any write changes the change time, which no tool can set back
//! (`touch -d` sets the modification time and moves the change time to now), so a file
//! whose entry matches has the bytes it had when it was hashed. A touched, unchanged file
//! is hashed again, and its digest, hence the cache key, stays the same.
//!
//! The table lives in `<root>/build/file-hashes.db`; `builder prune` empties it.

use std::collections::HashMap;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Mutex;

use crate::lock;

use sha2::{Digest as _, Sha256};

/// What `stat` says of a file: if any of it changed, so may have its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }
}

type Known = (Identity, [u8; 32]);

/// The remembered digests: loaded once, new ones written back by [`FileHashes::save`].
pub(crate) struct FileHashes {
    conn: Mutex<rusqlite::Connection>,
    /// By device and inode: what the file was when hashed, and its digest.
    known: Mutex<HashMap<(u64, u64), Known>>,
    fresh: Mutex<Vec<(Identity, [u8; 32])>>,
}

impl FileHashes {
    /// Opens (or creates) the table under `root` and loads it.
    pub(crate) fn open(root: &Path) -> Result<FileHashes, rusqlite::Error> {
        let dir = root.join("build");
        let _ = std::fs::create_dir_all(&dir);
        let conn = rusqlite::Connection::open(dir.join("file-hashes.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        // NORMAL in WAL mode: a crash may lose the last writes (hashing again), never
        // corrupt the table (a wrong digest would be a wrong cache hit).
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS files (
                 dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
                 mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, digest BLOB NOT NULL,
                 PRIMARY KEY (dev, ino));",
        )?;
        let mut known = HashMap::new();
        {
            let mut stmt =
                conn.prepare("SELECT dev, ino, size, mtime_ns, ctime_ns, digest FROM files")?;
            let rows = stmt.query_map([], |r| {
                let id = Identity {
                    dev: r.get::<_, i64>(0)? as u64,
                    ino: r.get::<_, i64>(1)? as u64,
                    size: r.get::<_, i64>(2)? as u64,
                    mtime_ns: r.get(3)?,
                    ctime_ns: r.get(4)?,
                };
                let digest: Vec<u8> = r.get(5)?;
                Ok((id, digest))
            })?;
            for row in rows {
                let (id, digest) = row?;
                if let Ok(digest) = <[u8; 32]>::try_from(digest.as_slice()) {
                    known.insert((id.dev, id.ino), (id, digest));
                }
            }
        }
        Ok(FileHashes {
            conn: Mutex::new(conn),
            known: Mutex::new(known),
            fresh: Mutex::new(Vec::new()),
        })
    }

    /// The SHA-256 of the open file `file`'s bytes: remembered, or read and remembered.
    pub(crate) fn digest(&self, file: &std::fs::File) -> std::io::Result<[u8; 32]> {
        let before = Identity::of(&file.metadata()?);
        if let Some((id, digest)) = lock(&self.known).get(&(before.dev, before.ino))
            && *id == before
        {
            return Ok(*digest);
        }
        // Read at offsets: the file's position (an open source's) stays where it is.
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut offset = 0u64;
        while offset < before.size {
            let want = buf.len().min((before.size - offset) as usize);
            let n = file.read_at(&mut buf[..want], offset)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
        let digest: [u8; 32] = hasher.finalize().into();
        // Changed while read: the digest is right for this build, not to remember.
        if Identity::of(&file.metadata()?) == before {
            lock(&self.known).insert((before.dev, before.ino), (before, digest));
            lock(&self.fresh).push((before, digest));
        }
        Ok(digest)
    }

    /// Writes the digests computed since the last save.
    pub(crate) fn save(&self) -> Result<(), rusqlite::Error> {
        let fresh = std::mem::take(&mut *lock(&self.fresh));
        if fresh.is_empty() {
            return Ok(());
        }
        let mut conn = lock(&self.conn);
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare(
                "INSERT OR REPLACE INTO files (dev, ino, size, mtime_ns, ctime_ns, digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (id, digest) in fresh {
                stmt.execute(rusqlite::params![
                    id.dev as i64,
                    id.ino as i64,
                    id.size as i64,
                    id.mtime_ns,
                    id.ctime_ns,
                    &digest[..]
                ])?;
            }
        }
        tx.commit()
    }
}

/// `builder prune`: forgets every digest.
pub fn forget_file_hashes(root: &Path) -> Result<(), rusqlite::Error> {
    let path = root.join("build").join("file-hashes.db");
    if !path.exists() {
        return Ok(());
    }
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.execute("DELETE FROM files", [])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_remembered_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"one").unwrap();
        let hashes = FileHashes::open(dir.path()).unwrap();
        let first = hashes.digest(&std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(first, <[u8; 32]>::from(Sha256::digest(b"one")));
        hashes.save().unwrap();

        // Reopened: the remembered digest is used (proved by a lie planted in the table).
        let conn = rusqlite::Connection::open(dir.path().join("build/file-hashes.db")).unwrap();
        conn.execute("UPDATE files SET digest = ?1", [&[7u8; 32][..]])
            .unwrap();
        let hashes = FileHashes::open(dir.path()).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(hashes.digest(&f).unwrap(), [7u8; 32]);

        // Written (same size): read again.
        std::fs::write(&path, b"two").unwrap();
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(
            hashes.digest(&f).unwrap(),
            <[u8; 32]>::from(Sha256::digest(b"two"))
        );
        forget_file_hashes(dir.path()).unwrap();
        let count: i64 = conn
            .query_row("SELECT count(*) FROM files", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 0);
    }
}
