//! Unpacked layers: `layers/<chain-id hex>/diff` holds one layer's own changes, ready to be
//! an overlayfs lowerdir, and `layer.json` beside it says what it is.
//!
//! Invariant: a `layers/<chain>` directory is complete. Layers are unpacked into
//! `layers/.tmp-*`, synced, and renamed into place; a crash leaves only a `.tmp-*` directory,
//! which garbage collection removes. Each layer is unpacked once, however many images share
//! it: the unpacker of a known chain ID holds `locks/layer-<chain>`, and the next one finds
//! the directory already there.

use std::{
    fs,
    io::{self, Read, Write},
    path::{Path, PathBuf},
};

use berth_reference::{Digest, Sha256Digester};
use serde::{Deserialize, Serialize};

use crate::{
    atomic::sync_dir,
    error::{IoContext, Result, StoreError},
    lock::{LockGuard, Locks},
    unpack::unpack_layer,
};

/// What `layer.json` records about an unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Record format version.
    pub version: u32,
    /// Identity of this layer stacked on its parents.
    pub chain_id: Digest,
    /// sha256 of the uncompressed layer tar.
    pub diff_id: Digest,
    /// The chain ID of the layer below, if any.
    pub parent: Option<Digest>,
    /// Bytes of regular-file content in the layer.
    pub size: u64,
    /// Length of the uncompressed tar.
    pub tar_size: u64,
}

/// Computes a layer's chain ID from its parent's chain ID and its own diff ID (OCI image-spec).
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::sha256_of(format!("{p} {diff_id}").as_bytes()),
    }
}

/// A layer unpacked into a temporary directory, not yet named or published.
pub(crate) struct Unpacked {
    tmp: tempfile::TempDir,
    /// sha256 of the uncompressed tar.
    pub(crate) diff_id: Digest,
    size: u64,
    tar_size: u64,
}

impl Unpacked {
    /// Makes everything in the layer durable. `syncfs` flushes the whole filesystem, so
    /// anything else written beside it (the blob it came from) is durable afterwards too.
    pub(crate) fn sync(&self) -> Result<()> {
        let dirfd = fs::File::open(self.tmp.path()).ctx("open", self.tmp.path())?;
        rustix::fs::syncfs(&dirfd)
            .map_err(io::Error::from)
            .ctx("syncfs", self.tmp.path())
    }
}

/// The `layers/` directory of a state root.
#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
    locks: Locks,
}

/// A reader that hashes and counts what passes through it, and can copy it to a sink.
pub(crate) struct Digesting<'a, R> {
    inner: R,
    digester: Sha256Digester,
    count: u64,
    tee: Option<&'a mut (dyn Write + Send)>,
}

impl<'a, R: Read> Digesting<'a, R> {
    pub(crate) fn new(inner: R, tee: Option<&'a mut (dyn Write + Send)>) -> Self {
        Digesting {
            inner,
            digester: Sha256Digester::new(),
            count: 0,
            tee,
        }
    }

    /// Reads the rest of the stream (the tar's end blocks and padding count towards the
    /// diff ID) and returns the digest and length.
    pub(crate) fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.digester.finish(), self.count))
    }
}

impl<R: Read> Read for Digesting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        self.count += n as u64;
        if let Some(tee) = self.tee.as_mut() {
            tee.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

impl LayerStore {
    pub(crate) fn new(root: &Path, locks: Locks) -> Self {
        LayerStore {
            dir: root.join("layers"),
            locks,
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The overlay lowerdir of a layer.
    pub fn diff_dir(&self, chain: &Digest) -> PathBuf {
        self.dir.join(chain.encoded()).join("diff")
    }

    /// The record of an unpacked layer, if it is present.
    pub fn get(&self, chain: &Digest) -> Result<Option<LayerInfo>> {
        let path = self.dir.join(chain.encoded()).join("layer.json");
        match fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| StoreError::corrupt(path.display().to_string(), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx("read", path),
        }
    }

    /// Unpacks the uncompressed layer tar read from `tar` on top of `parent`, unless a layer
    /// with the same chain ID is already there. With `expected_diff_id`, the stream must hash
    /// to it. `blob` names the layer in errors.
    pub(crate) fn ensure_layer(
        &self,
        parent: Option<&Digest>,
        expected_diff_id: Option<&Digest>,
        blob: &str,
        tar: Digesting<'_, impl Read + Send>,
    ) -> Result<LayerInfo> {
        // With a known chain ID, serialize unpackers of that layer and skip the work if it
        // is already done.
        let guard = match expected_diff_id {
            Some(diff_id) => {
                let chain = chain_id(parent, diff_id);
                let guard = self.lock_layer(&chain)?;
                if let Some(info) = self.get(&chain)? {
                    return Ok(info);
                }
                Some(guard)
            }
            None => None,
        };
        let unpacked = self.unpack_detached(blob, tar)?;
        if let Some(expected) = expected_diff_id
            && expected != &unpacked.diff_id
        {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual: unpacked.diff_id,
            });
        }
        unpacked.sync()?;
        self.publish(unpacked, parent, guard)
    }

    fn lock_layer(&self, chain: &Digest) -> Result<LockGuard> {
        self.locks
            .lock_exclusive(&format!("layer-{}", chain.encoded()))
    }

    /// Unpacks a layer into a `.tmp-*` directory, before its place in a chain is known.
    pub(crate) fn unpack_detached(
        &self,
        blob: &str,
        mut tar: Digesting<'_, impl Read + Send>,
    ) -> Result<Unpacked> {
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&self.dir)
            .ctx("create temp directory in", &self.dir)?;
        let diff = tmp.path().join("diff");
        fs::create_dir(&diff).ctx("create directory", &diff)?;
        // The layer must be durable before it is published; flushing in the background while
        // it is written overlaps the disk's work with the unpack, so the final syncfs is short.
        // (The flusher wakes every 250 ms, and at once when the unpack ends, so small layers
        // pay nothing.)
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let tmp_path = tmp.path();
        let unpacked = std::thread::scope(|s| {
            s.spawn(move || {
                let Ok(dir) = fs::File::open(tmp_path) else {
                    return;
                };
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    finished.recv_timeout(std::time::Duration::from_millis(250))
                {
                    let _ = rustix::fs::syncfs(&dir);
                }
            });
            let result = unpack_layer(&mut tar, &diff);
            drop(done);
            result
        });
        let stats = unpacked.map_err(|source| StoreError::Unpack {
            layer: blob.to_string(),
            source,
        })?;
        let (diff_id, tar_size) = tar.finish().map_err(|source| StoreError::Read {
            what: format!("layer {blob}"),
            source,
        })?;
        Ok(Unpacked {
            tmp,
            diff_id,
            size: stats.bytes,
            tar_size,
        })
    }

    /// Names an unpacked, synced layer by its chain ID and moves it into place (or drops it
    /// if another process got there first).
    pub(crate) fn publish(
        &self,
        unpacked: Unpacked,
        parent: Option<&Digest>,
        guard: Option<LockGuard>,
    ) -> Result<LayerInfo> {
        let chain = chain_id(parent, &unpacked.diff_id);
        let _guard = match guard {
            Some(g) => g,
            None => self.lock_layer(&chain)?,
        };
        if let Some(info) = self.get(&chain)? {
            return Ok(info);
        }
        let info = LayerInfo {
            version: 1,
            chain_id: chain.clone(),
            diff_id: unpacked.diff_id,
            parent: parent.cloned(),
            size: unpacked.size,
            tar_size: unpacked.tar_size,
        };
        let json = serde_json::to_vec_pretty(&info).expect("layer info serializes");
        let info_path = unpacked.tmp.path().join("layer.json");
        let mut file = fs::File::create(&info_path).ctx("create", &info_path)?;
        file.write_all(&json).ctx("write", &info_path)?;
        file.sync_all().ctx("fsync", &info_path)?;
        let dest = self.dir.join(chain.encoded());
        let tmp_path = unpacked.tmp.keep();
        crate::crash::point("layer.unpacked");
        fs::rename(&tmp_path, &dest).ctx("publish layer", &dest)?;
        sync_dir(&self.dir)?;
        crate::crash::point("layer.published");
        Ok(info)
    }

    /// Chain IDs of every unpacked layer.
    pub(crate) fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).ctx("read directory", &self.dir)? {
            let entry = entry.ctx("read directory", &self.dir)?;
            if let Some(name) = entry.file_name().to_str()
                && let Ok(d) = Digest::from_sha256_hex(name)
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Removes a layer: renamed aside first so a crash never leaves a half-deleted layer
    /// under its real name.
    pub(crate) fn remove(&self, chain: &Digest) -> Result<()> {
        let path = self.dir.join(chain.encoded());
        if !path.exists() {
            return Ok(());
        }
        let doomed = self.dir.join(format!(
            ".tmp-rm-{}-{}",
            chain.encoded(),
            std::process::id()
        ));
        fs::rename(&path, &doomed).ctx("rename", &path)?;
        crate::crash::point("layer.removing");
        fs::remove_dir_all(&doomed).ctx("remove", &doomed)
    }

    /// Removes `.tmp-*` directories left by crashed unpackers or removals. Callers hold the
    /// GC lock exclusively, so no live unpacker owns one.
    pub(crate) fn clean_tmp(&self) -> Result<usize> {
        let mut n = 0;
        for entry in fs::read_dir(&self.dir).ctx("read directory", &self.dir)? {
            let entry = entry.ctx("read directory", &self.dir)?;
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                fs::remove_dir_all(entry.path()).ctx("remove", entry.path())?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        assert_eq!(chain_id(None, &a), a);
        let ab = chain_id(Some(&a), &b);
        assert_eq!(ab, Digest::sha256_of(format!("{a} {b}").as_bytes()));
        assert_ne!(ab, chain_id(Some(&b), &a), "order matters");
    }
}
