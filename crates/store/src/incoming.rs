//! Images that arrive piece by piece from outside (a registry pull): documents and layer
//! blobs are added, from several threads at once, while the writer lock keeps the collector
//! away; the image is registered once everything is in place.
//!
//! A layer blob is written to `ingest/` and unpacked at the same time, as it streams in. The
//! blob is published only when its digest matches, and the layer only after that and when
//! its diff ID matches the config's: a corrupted or truncated download leaves nothing.

use std::{
    io::{self, BufReader, BufWriter, Read, Write},
    sync::mpsc,
    thread,
};

use berth_reference::{Digest, Reference};

use crate::{
    BlobStore, Store,
    archive::ChannelReader,
    compression::decompress,
    error::{IoContext, Result, StoreError},
    image::{chain_ids, from_oci_digest, parse_config, parse_manifest},
    layers::{Digesting, LayerStore},
    lock::LockGuard,
    meta::ImageRecord,
};

/// Size of the chunks passed from the download to the unpacker, and of the blob writer's
/// buffer.
const CHUNK: usize = 1 << 20;

/// Content being added for one image. Shared by reference between the threads that fetch
/// its parts (it is `Sync`); registered with [`Store::register_incoming`].
pub struct Incoming {
    blobs: BlobStore,
    layers: LayerStore,
    _writer: LockGuard,
}

/// What [`Incoming::put_layer`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerWork {
    /// The layer was unpacked from the stream.
    Unpacked,
    /// The layer was unpacked already; only its blob was stored (and checked).
    BlobOnly,
}

impl Store {
    /// Starts adding an image's content. Until the returned value is dropped, garbage
    /// collection waits, so nothing added through it is swept before registration.
    pub fn incoming(&self) -> Result<Incoming> {
        Ok(Incoming {
            blobs: self.blobs.clone(),
            layers: self.layers.clone(),
            _writer: self.lock_writer()?,
        })
    }

    /// Registers an image whose manifest, config and layers were added through `incoming`:
    /// checks that they are all there and agree, then records it with `tags` and
    /// `repo_digests` (`name@sha256:…`) in one transaction. Returns the record and each tag
    /// taken from another image.
    pub fn register_incoming(
        &mut self,
        incoming: Incoming,
        manifest: &Digest,
        tags: &[Reference],
        repo_digests: &[Reference],
    ) -> Result<(ImageRecord, Vec<(Reference, Digest)>)> {
        let parsed = parse_manifest(manifest, &self.blobs.read(manifest)?)?;
        let config_digest = from_oci_digest(parsed.config().digest())?;
        let config = parse_config(&config_digest, &self.blobs.read(&config_digest)?)?;
        if config.rootfs.diff_ids.len() != parsed.layers().len() {
            return Err(StoreError::corrupt(
                format!("manifest {manifest}"),
                format!(
                    "{} layers, but its config lists {} diff IDs",
                    parsed.layers().len(),
                    config.rootfs.diff_ids.len()
                ),
            ));
        }
        for desc in parsed.layers() {
            let blob = from_oci_digest(desc.digest())?;
            if !self.blobs.contains(&blob) {
                return Err(StoreError::BlobNotFound(blob));
            }
        }
        chain_ids(&config)?;
        let registered = self.register_with_repo_digests(
            manifest,
            &config_digest,
            &config,
            tags,
            repo_digests,
            None,
        );
        drop(incoming);
        let (_, displaced) = registered?;
        // The image may have been there before, with more tags and digests than these.
        let record = self
            .meta
            .image(&config_digest)?
            .ok_or_else(|| StoreError::ImageNotFound(config_digest.to_string()))?;
        Ok((record, displaced))
    }
}

impl Store {
    /// A pull of an image the store has already: names it `tags` and `repo_digest` in one
    /// transaction with the check that it is still there. False when it is not (an `rmi`
    /// got there first), and the pull must fetch it after all.
    pub fn adopt_present(
        &mut self,
        id: &Digest,
        tags: &[Reference],
        repo_digest: &Reference,
    ) -> Result<bool> {
        // No `tag` events: a pull is logged as `pull` alone, whether the image was here.
        self.meta
            .name_if_present(id, tags, std::slice::from_ref(repo_digest))
    }

    /// Records that image `id` was pushed as `manifest` (stored already, through
    /// `incoming`), under `repo_digest` (`name@sha256:…`). When the push compressed the
    /// layers, `manifest` differs from the image's own and becomes it, so that the next push
    /// sends the same blobs; the image ID (its config) does not change.
    pub fn record_pushed(
        &mut self,
        incoming: Incoming,
        id: &Digest,
        manifest: &Digest,
        repo_digest: &Reference,
    ) -> Result<()> {
        let parsed = parse_manifest(manifest, &self.blobs.read(manifest)?)?;
        let record = self
            .meta
            .image(id)?
            .ok_or_else(|| StoreError::ImageNotFound(id.to_string()))?;
        let old = parse_manifest(&record.manifest, &self.blobs.read(&record.manifest)?)?;
        if &from_oci_digest(parsed.config().digest())? != id
            || parsed.layers().len() != old.layers().len()
        {
            return Err(StoreError::corrupt(
                format!("manifest {manifest}"),
                format!("does not describe image {id}"),
            ));
        }
        for desc in parsed.layers() {
            let blob = from_oci_digest(desc.digest())?;
            if !self.blobs.contains(&blob) {
                return Err(StoreError::BlobNotFound(blob));
            }
        }
        let recorded = self
            .meta
            .record_push(id, manifest, std::slice::from_ref(repo_digest));
        drop(incoming);
        recorded
    }
}

impl Incoming {
    /// The blob store, for blobs that are not layers of this image's config (a push's
    /// compressed layers).
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Whether a blob is stored.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blobs.contains(digest)
    }

    /// Whether the layer with this chain ID is unpacked.
    pub fn has_layer(&self, chain: &Digest) -> Result<bool> {
        Ok(self.layers.get(chain)?.is_some())
    }

    /// Stores a small document (manifest, config) that must hash to `expected`.
    pub fn put_document(&self, expected: &Digest, data: &[u8]) -> Result<()> {
        let actual = Digest::sha256_of(data);
        if &actual != expected {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        self.blobs.put(data)?;
        Ok(())
    }

    /// Streams a layer blob from `source` into the store: it must hash to `blob`, and
    /// decompress to a tar that hashes to `diff_id`. Unless the layer (`diff_id` on top of
    /// the chain `parent`) is unpacked already, it is unpacked while it streams, on a second
    /// thread. The blob is published only if its digest matches, and the layer only if the
    /// blob's and then the diff ID do: a blob that checks out but whose layer does not
    /// stays (verified, unreferenced) until the next collection.
    pub fn put_layer(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        parent: Option<&Digest>,
        source: &mut (dyn Read + Send),
    ) -> Result<LayerWork> {
        let chain = crate::layers::chain_id(parent, diff_id);
        let unpack = !self.has_layer(&chain)?;
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(16);
        let layers = &self.layers;
        let name = blob.to_string();
        let ingest = self.blobs.ingest()?;
        let (copied, unpacked) = thread::scope(|s| {
            let worker = s.spawn(move || -> Result<_> {
                let reader = ChannelReader::new(rx);
                let (_, tar) = decompress(BufReader::with_capacity(CHUNK, reader))?;
                if unpack {
                    let layer = layers.unpack_detached(&name, Digesting::new(tar, None))?;
                    Ok((layer.diff_id.clone(), Some(layer)))
                } else {
                    let (diff_id, _) =
                        Digesting::new(tar, None)
                            .finish()
                            .map_err(|source| StoreError::Read {
                                what: format!("layer {name}"),
                                source,
                            })?;
                    Ok((diff_id, None))
                }
            });
            let copied = copy_to_ingest(source, ingest, &tx);
            drop(tx);
            (copied, worker.join())
        });
        // The download's own error comes first (the unpacker only saw a stream cut short),
        // then the blob's digest: a corrupted blob is reported as such, not as a bad tar.
        copied?.commit(Some(blob))?;
        let (actual_diff_id, layer) = match unpacked {
            Ok(result) => result?,
            Err(_) => {
                return Err(StoreError::Read {
                    what: format!("layer {blob}"),
                    source: io::Error::other("the layer unpacker thread panicked"),
                });
            }
        };
        if &actual_diff_id != diff_id {
            return Err(StoreError::corrupt(
                format!("layer {blob}"),
                format!(
                    "uncompressed content hashed to {actual_diff_id}, but the config says {diff_id}"
                ),
            ));
        }
        match layer {
            Some(layer) => {
                layer.sync()?;
                self.layers.publish(layer, parent, None)?;
                Ok(LayerWork::Unpacked)
            }
            None => Ok(LayerWork::BlobOnly),
        }
    }

    /// Unpacks a layer from a blob already stored (pulled before for another image).
    pub fn unpack_stored(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        parent: Option<&Digest>,
    ) -> Result<()> {
        let file = self.blobs.open(blob)?;
        let (_, tar) = decompress(BufReader::with_capacity(CHUNK, file))?;
        self.layers.ensure_layer(
            parent,
            Some(diff_id),
            &blob.to_string(),
            Digesting::new(tar, None),
        )?;
        Ok(())
    }
}

/// Copies `source` into the ingest file and, chunk by chunk, to the unpacker (as long as it
/// listens). Returns the ingest, ready to commit.
fn copy_to_ingest(
    source: &mut (dyn Read + Send),
    ingest: crate::blobs::Ingest,
    tx: &mpsc::SyncSender<Vec<u8>>,
) -> Result<crate::blobs::Ingest> {
    let mut writer = BufWriter::with_capacity(CHUNK, ingest);
    let mut buf = vec![0u8; CHUNK];
    let mut unpacker_alive = true;
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(StoreError::Read {
                    what: "layer download".into(),
                    source,
                });
            }
        };
        writer
            .write_all(&buf[..n])
            .map_err(|source| StoreError::Read {
                what: "layer blob into ingest/".into(),
                source,
            })?;
        if unpacker_alive && tx.send(buf[..n].to_vec()).is_err() {
            unpacker_alive = false;
        }
    }
    writer
        .into_inner()
        .map_err(|e| e.into_error())
        .ctx("write layer blob", "ingest/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn layer_tar(name: &str, body: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, body).unwrap();
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut w = crate::compress_gzip(Vec::new());
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn ingest_is_empty(root: &std::path::Path) -> bool {
        std::fs::read_dir(root.join("ingest"))
            .unwrap()
            .next()
            .is_none()
    }

    #[test]
    fn a_layer_streams_into_blob_and_unpacked_layer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tar = layer_tar("hello.txt", b"hi\n");
        let blob = gzip(&tar);
        let (blob_digest, diff_id) = (Digest::sha256_of(&blob), Digest::sha256_of(&tar));
        let incoming = store.incoming().unwrap();
        let work = incoming
            .put_layer(&blob_digest, &diff_id, None, &mut &blob[..])
            .unwrap();
        assert_eq!(work, LayerWork::Unpacked);
        assert!(incoming.has_blob(&blob_digest));
        assert!(incoming.has_layer(&diff_id).unwrap());
        assert_eq!(
            std::fs::read(store.layer_dir(&diff_id).join("hello.txt")).unwrap(),
            b"hi\n"
        );
        // The same layer again (another image's blob for it): only the blob is stored.
        let again = layer_tar("hello.txt", b"hi\n");
        let plain = Digest::sha256_of(&again);
        let work = incoming
            .put_layer(&plain, &diff_id, None, &mut &again[..])
            .unwrap();
        assert_eq!(work, LayerWork::BlobOnly);
        assert!(ingest_is_empty(dir.path()));
    }

    #[test]
    fn a_corrupted_or_mislabelled_layer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tar = layer_tar("x", b"payload");
        let blob = gzip(&tar);
        let diff_id = Digest::sha256_of(&tar);
        let incoming = store.incoming().unwrap();

        let mut corrupted = blob.clone();
        let last = corrupted.len() - 9;
        corrupted[last] ^= 0xff;
        let announced = Digest::sha256_of(&blob);
        let err = incoming
            .put_layer(&announced, &diff_id, None, &mut &corrupted[..])
            .unwrap_err();
        assert!(
            matches!(err, StoreError::DigestMismatch { .. }),
            "a corrupted blob is refused for its digest: {err}"
        );
        assert!(!incoming.has_blob(&announced));
        assert!(!incoming.has_layer(&diff_id).unwrap());

        // The right blob, but a config that names another diff ID: the layer is refused.
        let wrong = Digest::sha256_of(b"something else");
        let err = incoming
            .put_layer(&announced, &wrong, None, &mut &blob[..])
            .unwrap_err();
        assert!(err.to_string().contains("config says"), "{err}");
        assert!(!incoming.has_layer(&diff_id).unwrap());
        assert!(!incoming.has_layer(&wrong).unwrap());

        // A download that fails midway.
        struct Broken<'a>(&'a [u8]);
        impl Read for Broken<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::other("connection reset"));
                }
                let n = buf.len().min(self.0.len()).min(7);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let err = incoming
            .put_layer(&announced, &diff_id, None, &mut Broken(&blob[..20]))
            .unwrap_err();
        assert!(err.to_string().contains("connection reset"), "{err}");
        assert!(!incoming.has_layer(&diff_id).unwrap());
        drop(incoming);
        assert!(ingest_is_empty(dir.path()));
        let layers: Vec<_> = std::fs::read_dir(dir.path().join("layers"))
            .unwrap()
            .collect();
        assert!(layers.is_empty(), "no unpacked or temporary layer is left");
    }
}
