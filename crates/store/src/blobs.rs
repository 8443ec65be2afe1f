//! Content-addressed blobs: `blobs/sha256/<hex>`, written through `ingest/` and published
//! only after their digest checks out.
//!
//! Invariant: a file under `blobs/` always hashes to its name. Writers hash as they write,
//! fsync, compare, and only then rename into place; a crash leaves at most a stray file in
//! `ingest/`, which [`BlobStore::clean_ingest`] removes.

use std::{
    fs::{self, File},
    io::{self, Read, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use berth_reference::{Digest, Sha256Digester};

use crate::{
    atomic::sync_dir,
    error::{IoContext, Result, StoreError},
};

/// The blob directory of a state root.
#[derive(Debug, Clone)]
pub struct BlobStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl BlobStore {
    pub(crate) fn new(root: &Path) -> Self {
        BlobStore {
            blobs: root.join("blobs"),
            ingest: root.join("ingest"),
        }
    }

    pub(crate) fn dirs(&self) -> [PathBuf; 2] {
        [self.blobs.join("sha256"), self.ingest.clone()]
    }

    /// Where the blob lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.algorithm()).join(digest.encoded())
    }

    /// Whether the blob is present.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).exists()
    }

    /// Opens a blob for reading.
    pub fn open(&self, digest: &Digest) -> Result<File> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
            _ => StoreError::Io {
                op: "open blob",
                path,
                source: e,
            },
        })
    }

    /// Reads a whole (small) blob: manifests, configs, indexes.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        self.open(digest)?
            .read_to_end(&mut data)
            .ctx("read blob", self.path(digest))?;
        Ok(data)
    }

    /// Size of a blob in bytes.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::BlobNotFound(digest.clone()))
            }
            Err(e) => Err(e).ctx("stat blob", path),
        }
    }

    /// Stores bytes held in memory, returning their digest.
    pub fn put(&self, data: &[u8]) -> Result<Digest> {
        let digest = Digest::sha256_of(data);
        if self.contains(&digest) {
            return Ok(digest);
        }
        let mut w = self.ingest()?;
        w.write_all(data).ctx("write", w.path().to_owned())?;
        w.commit(Some(&digest))
    }

    /// Starts a streaming write; nothing is visible until [`Ingest::commit`].
    pub fn ingest(&self) -> Result<Ingest> {
        let file = tempfile::Builder::new()
            .prefix("ingest-")
            .tempfile_in(&self.ingest)
            .ctx("create ingest file in", &self.ingest)?;
        Ok(Ingest {
            file,
            digester: Sha256Digester::new(),
            written: 0,
            blobs: self.blobs.clone(),
        })
    }

    /// Every blob digest present, for garbage collection and checks.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let dir = self.blobs.join("sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let entry = entry.ctx("read directory", &dir)?;
            if let Some(name) = entry.file_name().to_str()
                && let Ok(d) = Digest::from_sha256_hex(name)
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Removes a blob (garbage collection only).
    pub(crate) fn remove(&self, digest: &Digest) -> Result<()> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).ctx("remove blob", path),
            _ => Ok(()),
        }
    }

    /// Removes ingest files left by crashed writers. Callers hold the GC lock exclusively,
    /// so no live writer owns any of them.
    pub(crate) fn clean_ingest(&self) -> Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.ingest).ctx("read directory", &self.ingest)? {
            let entry = entry.ctx("read directory", &self.ingest)?;
            if fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// How a stored blob is compressed (from its first bytes).
    pub fn compression(&self, digest: &Digest) -> Result<crate::Compression> {
        let mut head = [0u8; 8];
        let mut f = self.open(digest)?;
        let n =
            crate::archive::read_up_to(&mut f, &mut head).ctx("read blob", self.path(digest))?;
        Ok(crate::Compression::detect(&head[..n])?)
    }

    /// Re-hashes a blob and reports whether it still matches its name.
    pub fn verify(&self, digest: &Digest) -> Result<bool> {
        let mut f = self.open(digest)?;
        let mut d = Sha256Digester::new();
        io::copy(&mut f, &mut d).ctx("read blob", self.path(digest))?;
        Ok(&d.finish() == digest)
    }
}

/// A blob being written. Hashes as it goes; dropping it without commit discards the data.
pub struct Ingest {
    file: tempfile::NamedTempFile,
    digester: Sha256Digester,
    written: u64,
    blobs: PathBuf,
}

impl Ingest {
    fn path(&self) -> &Path {
        self.file.path()
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies and publishes the blob. With `expected`, a mismatch discards the data and
    /// returns [`StoreError::DigestMismatch`].
    pub fn commit(self, expected: Option<&Digest>) -> Result<Digest> {
        self.publish(expected, true)
    }

    /// Like [`Ingest::commit`], for a caller that has already flushed the filesystem
    /// (`syncfs`) after the last write, so the data is durable without an fsync of its own.
    pub(crate) fn commit_after_syncfs(self, expected: Option<&Digest>) -> Result<Digest> {
        self.publish(expected, false)
    }

    fn publish(self, expected: Option<&Digest>, fsync: bool) -> Result<Digest> {
        let actual = self.digester.finish();
        if let Some(expected) = expected
            && expected != &actual
        {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let dir = self.blobs.join(actual.algorithm());
        let dest = dir.join(actual.encoded());
        if dest.exists() {
            return Ok(actual);
        }
        let tmp_path = self.file.path().to_owned();
        crate::crash::point("blob.written");
        if fsync {
            self.file.as_file().sync_all().ctx("fsync", &tmp_path)?;
        }
        // Blobs are immutable: make that visible in their mode too.
        fs::set_permissions(&tmp_path, fs::Permissions::from_mode(0o444))
            .ctx("chmod", &tmp_path)?;
        self.file
            .persist(&dest)
            .map_err(|e| e.error)
            .ctx("publish blob", &dest)?;
        sync_dir(&dir)?;
        crate::crash::point("blob.published");
        Ok(actual)
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.digester.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
