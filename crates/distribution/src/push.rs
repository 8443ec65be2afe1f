//! `push`: an image's layers and config -> each blob checked with `HEAD`, mounted from
//! another repository of the same registry that has it, or uploaded (monolithic when small,
//! chunked `PATCH`es when large) -> the manifest `PUT` under the tag.
//!
//! Layers stored uncompressed (built, committed, imported here) are gzip-compressed first, as
//! Docker does, into the store; the manifest that names the compressed blobs becomes the
//! image's own, so the next push of the same image sends the same bytes (the image ID, its
//! config's digest, does not change).

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io::{self, BufWriter, Read, Seek, SeekFrom},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use berth_reference::{Digest, Reference};
use berth_store::{Compression, Incoming, Store, compress_gzip};
use reqwest::blocking::Body;

use crate::{
    Registries,
    client::{Access, Repository, UploadStart},
    error::{DistributionError, Result},
    progress::{LayerState, Progress},
};

/// Blobs up to this size go in one `PUT`; larger ones in chunks.
const MONOLITHIC_MAX: u64 = 16 << 20;
/// The chunk size of chunked uploads (at least; a registry may ask for more).
const CHUNK: u64 = 64 << 20;
/// Repositories a push may mount from (each is a scope in its token request).
const MOUNT_REPOS: usize = 3;
/// Blobs sent at once (Docker's `max-concurrent-uploads` is 5; 3 keeps 2 cores busy
/// compressing without starving the rest).
const CONCURRENT_UPLOADS: usize = 3;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The tag pushed.
    pub tag: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest's size in bytes.
    pub size: u64,
}

/// Docker's line at the end of a push: `TAG: digest: DIGEST size: SIZE`.
impl std::fmt::Display for Pushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: digest: {} size: {}",
            self.tag, self.digest, self.size
        )
    }
}

/// One layer of the image to push.
struct PushLayer {
    /// The blob as stored.
    blob: Digest,
    /// Its size.
    size: u64,
    /// Stored uncompressed: compress before sending.
    compress: bool,
}

/// A layer as sent: the blob's digest and size after any compression.
#[derive(Clone)]
struct SentLayer {
    digest: Digest,
    size: u64,
}

impl Registries {
    /// Pushes the image `reference` (which must name a tag) names.
    pub fn push(
        &self,
        store: &mut Store,
        reference: &Reference,
        progress: &dyn Progress,
    ) -> Result<Pushed> {
        let pushed = self.push_tag(store, reference, progress)?;
        store.image_event(
            "push",
            &reference.familiar_string(),
            &reference.familiar_name(),
        );
        Ok(pushed)
    }

    fn push_tag(
        &self,
        store: &mut Store,
        reference: &Reference,
        progress: &dyn Progress,
    ) -> Result<Pushed> {
        let Some(tag) = reference.tag().map(str::to_string) else {
            return Err(DistributionError::Usage(format!(
                "cannot push {}: name a tag, not a digest",
                reference.familiar_string()
            )));
        };
        let record = store.resolve(&reference.to_string()).map_err(|e| match e {
            berth_store::StoreError::ImageNotFound(_) => DistributionError::Usage(format!(
                "An image does not exist locally with the tag: {}",
                reference.familiar_name()
            )),
            e => e.into(),
        })?;
        let image = store.image(record.clone())?;
        let manifest_bytes = store.blobs().read(&record.manifest)?;
        let mut raw: serde_json::Value = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| DistributionError::bad(format!("manifest {}", record.manifest), e))?;
        let media_type = raw
            .get("mediaType")
            .and_then(|v| v.as_str())
            .unwrap_or(OCI_MANIFEST)
            .to_string();
        let needed: HashSet<Digest> = image
            .manifest
            .layers()
            .iter()
            .filter_map(|d| Digest::parse(d.digest().as_ref()).ok())
            .collect();
        let mounts = mount_sources(store, reference, &needed)?;

        progress.message(&format!(
            "The push refers to repository [{}]",
            reference.name()
        ));
        let incoming = store.incoming()?;
        let extra: Vec<String> = {
            let mut v: Vec<String> = mounts.values().cloned().collect();
            v.sort();
            v.dedup();
            v
        };
        let repo = self.open(reference.domain(), reference.path(), Access::Push, &extra)?;

        let mut layers = Vec::new();
        for desc in image.manifest.layers() {
            let blob = Digest::parse(desc.digest().as_ref())
                .map_err(|e| DistributionError::bad("layer digest", e))?;
            let compress = store.blobs().compression(&blob)? == Compression::None;
            layers.push(PushLayer {
                blob,
                size: desc.size(),
                compress,
            });
        }
        // Docker lists layers top first.
        for l in layers.iter().rev() {
            progress.layer(&l.blob, LayerState::Preparing);
        }
        let sent = push_layers(&repo, &incoming, &layers, &mounts, progress)?;

        let config = Digest::parse(image.manifest.config().digest().as_ref())
            .map_err(|e| DistributionError::bad("config digest", e))?;
        repo.retrying(|| {
            push_blob(
                &repo,
                &incoming,
                &config,
                image.manifest.config().size(),
                None,
                &mounts,
                &|_| {},
            )
        })?;

        let changed = layers.iter().zip(&sent).any(|(l, s)| l.blob != s.digest);
        let (digest, bytes) = if changed {
            let gzip_type = if media_type == DOCKER_MANIFEST {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            } else {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            };
            let entries = raw
                .get_mut("layers")
                .and_then(|l| l.as_array_mut())
                .ok_or_else(|| DistributionError::bad("manifest", "no layers"))?;
            for ((entry, layer), s) in entries.iter_mut().zip(&layers).zip(&sent) {
                if layer.compress {
                    entry["mediaType"] = gzip_type.into();
                    entry["digest"] = s.digest.to_string().into();
                    entry["size"] = s.size.into();
                }
            }
            let bytes = serde_json::to_vec(&raw).expect("a JSON value serializes");
            let digest = Digest::sha256_of(&bytes);
            incoming.put_document(&digest, &bytes)?;
            (digest, bytes)
        } else {
            (record.manifest.clone(), manifest_bytes)
        };
        repo.put_manifest(&tag, &media_type, &bytes)?;
        let repo_digest = reference
            .without_tag_or_digest()
            .with_digest(digest.clone());
        store.record_pushed(incoming, &record.id, &digest, &repo_digest)?;
        Ok(Pushed {
            tag,
            digest,
            size: bytes.len() as u64,
        })
    }
}

/// For each blob that another repository of the same registry has (as far as this store
/// knows: images pulled from or pushed to it), one such repository.
///
/// Only `needed` blobs count, from at most [`MOUNT_REPOS`] repositories: each one is a scope
/// in the push's token request.
fn mount_sources(
    store: &Store,
    reference: &Reference,
    needed: &HashSet<Digest>,
) -> Result<HashMap<Digest, String>> {
    let mut out = HashMap::new();
    let mut repos_used: HashSet<String> = HashSet::new();
    for image in store.images()? {
        let repos: Vec<&Reference> = image
            .repo_digests
            .iter()
            .filter(|r| r.domain() == reference.domain() && r.path() != reference.path())
            .collect();
        if repos.is_empty() {
            continue;
        }
        let Ok(bytes) = store.blobs().read(&image.manifest) else {
            continue;
        };
        let Ok(manifest) = oci_spec::image::ImageManifest::from_reader(&bytes[..]) else {
            continue;
        };
        let repo = repos[0].path().to_string();
        if repos_used.len() >= MOUNT_REPOS && !repos_used.contains(&repo) {
            continue;
        }
        for desc in manifest.layers() {
            if let Ok(d) = Digest::parse(desc.digest().as_ref())
                && needed.contains(&d)
                && !out.contains_key(&d)
            {
                out.insert(d, repo.clone());
                repos_used.insert(repo.clone());
            }
        }
    }
    Ok(out)
}

/// Pushes the layers, [`CONCURRENT_UPLOADS`] at a time; returns what was sent for each, in
/// order.
fn push_layers(
    repo: &Repository,
    incoming: &Incoming,
    layers: &[PushLayer],
    mounts: &HashMap<Digest, String>,
    progress: &dyn Progress,
) -> Result<Vec<SentLayer>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    let sent = Mutex::new(vec![None; layers.len()]);
    std::thread::scope(|s| {
        for _ in 0..CONCURRENT_UPLOADS.min(layers.len()) {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(layer) = layers.get(i) else { break };
                    match push_layer(repo, incoming, layer, mounts, progress) {
                        Ok(s) => sent.lock().expect("sent slots")[i] = Some(s),
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().expect("error slot").get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("error slot") {
        return Err(e);
    }
    Ok(sent
        .into_inner()
        .expect("sent slots")
        .into_iter()
        .map(|s| s.expect("every layer was pushed"))
        .collect())
}

fn push_layer(
    repo: &Repository,
    incoming: &Incoming,
    layer: &PushLayer,
    mounts: &HashMap<Digest, String>,
    progress: &dyn Progress,
) -> Result<SentLayer> {
    let report = |done: u64, total: Option<u64>| {
        progress.layer(&layer.blob, LayerState::Pushing { done, total });
    };
    let (digest, size) = if layer.compress {
        compress_layer(incoming, &layer.blob, layer.size, &|done| {
            report(done, Some(layer.size))
        })?
    } else {
        (layer.blob.clone(), layer.size)
    };
    let state = push_blob(
        repo,
        incoming,
        &digest,
        size,
        Some(&layer.blob),
        mounts,
        &|done| report(done, Some(size)),
    )?;
    progress.layer(&layer.blob, state);
    Ok(SentLayer { digest, size })
}

/// Gzips a stored layer blob into the store; returns the new blob's digest and size.
fn compress_layer(
    incoming: &Incoming,
    blob: &Digest,
    size: u64,
    report: &dyn Fn(u64),
) -> Result<(Digest, u64)> {
    let store_err = |e: io::Error| {
        DistributionError::Store(berth_store::StoreError::Read {
            what: format!("compressing layer {blob}"),
            source: e,
        })
    };
    let mut source = Counting {
        inner: incoming.blobs().open(blob)?,
        count: 0,
        last: 0,
        report,
        total: size,
    };
    let ingest = incoming.blobs().ingest()?;
    let mut gz = compress_gzip(BufWriter::with_capacity(1 << 20, ingest));
    io::copy(&mut source, &mut gz).map_err(store_err)?;
    let ingest = gz
        .finish()
        .map_err(store_err)?
        .into_inner()
        .map_err(|e| store_err(e.into_error()))?;
    let written = ingest.written();
    let digest = ingest.commit(None)?;
    Ok((digest, written))
}

/// Counts what is read, reporting every few megabytes.
struct Counting<'a, R> {
    inner: R,
    count: u64,
    last: u64,
    total: u64,
    report: &'a dyn Fn(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count - self.last >= 4 << 20 || (n > 0 && self.count == self.total) {
            self.last = self.count;
            (self.report)(self.count);
        }
        Ok(n)
    }
}

/// Makes sure the repository has a stored blob: already there, mounted, or uploaded. A
/// failed attempt may be repeated from the start (a new upload session).
fn push_blob(
    repo: &Repository,
    incoming: &Incoming,
    digest: &Digest,
    size: u64,
    shown_as: Option<&Digest>,
    mounts: &HashMap<Digest, String>,
    report: &dyn Fn(u64),
) -> Result<LayerState> {
    if repo.has_blob(digest)? {
        return Ok(LayerState::LayerAlreadyExists);
    }
    let from = mounts
        .get(digest)
        .or_else(|| shown_as.and_then(|d| mounts.get(d)));
    let start = repo.start_upload(from.map(|r| (digest, r.as_str())))?;
    let (location, min_chunk) = match start {
        UploadStart::Mounted => {
            return Ok(LayerState::MountedFrom(from.cloned().unwrap_or_default()));
        }
        UploadStart::Upload {
            location,
            min_chunk,
        } => (location, min_chunk),
    };
    let path = incoming.blobs().path(digest);
    let body = move |offset: u64, len: u64| -> Body {
        let path = path.clone();
        match File::open(&path).and_then(|mut f| {
            f.seek(SeekFrom::Start(offset))?;
            Ok(f)
        }) {
            Ok(f) => Body::sized(f.take(len), len),
            // The request fails on its own when the body is short; say why here.
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read blob to upload");
                Body::from(Vec::new())
            }
        }
    };
    if size <= MONOLITHIC_MAX {
        repo.finish_upload(&location, digest, || Some((body(0, size), size)))?;
        report(size);
        return Ok(LayerState::Pushed);
    }
    let chunk = CHUNK.max(min_chunk.unwrap_or(0));
    let mut location = location;
    let mut offset = 0;
    while offset < size {
        let len = chunk.min(size - offset);
        location = repo.upload_chunk(&location, offset, len, || body(offset, len))?;
        offset += len;
        report(offset);
    }
    repo.finish_upload(&location, digest, || None)?;
    Ok(LayerState::Pushed)
}
