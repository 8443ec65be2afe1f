//! Image archives: `save` writes Docker archives (the `docker save` format of Docker 25+,
//! which is also an OCI layout) or plain OCI layouts; `load` reads Docker archives (old and
//! new) and OCI layouts, gzipped or not.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io::{self, BufReader, Read, Write},
    sync::mpsc,
    thread,
};

use berth_reference::{Digest, Reference};
use oci_spec::image::{ImageIndex, MediaType};
use serde::{Deserialize, Serialize};

use crate::{
    Store,
    compression::{Compression, decompress},
    config::{ImageConfig, host_architecture},
    error::{IoContext, Result, StoreError},
    image::{chain_ids, check_layer_media_type, from_oci_digest, parse_config, parse_manifest},
    import::manifest_bytes,
    layers::{Digesting, Unpacked},
};

/// Which archive `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `docker save`'s format: `manifest.json` + `repositories` + an OCI layout whose layers
    /// are uncompressed (what `docker load`, `podman load` and `skopeo docker-archive:` read).
    Docker,
    /// An OCI image layout (`oci-layout`, `index.json`, `blobs/`) with blobs as stored.
    Oci,
}

/// One image to save, with the tags the archive should carry.
#[derive(Debug, Clone)]
pub struct SaveRequest {
    /// The image.
    pub image: crate::ImageRecord,
    /// Tags to record for it (may be empty).
    pub tags: Vec<Reference>,
}

/// One image that `load` added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// The image ID.
    pub id: Digest,
    /// The tags it got.
    pub tags: Vec<Reference>,
    /// Tags that pointed at another image before, with that image (which keeps its other
    /// tags, or becomes dangling).
    pub displaced: Vec<(Reference, Digest)>,
}

impl LoadedImage {
    /// What `docker load` says of it, one line each: a tag taken from another image, then
    /// `Loaded image: TAG` per tag (`Loaded image ID: ID` when it has none).
    pub fn report(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .displaced
            .iter()
            .map(|(tag, old)| {
                format!(
                    "The image {} already exists, renaming the old one with ID {old} to empty string",
                    tag.familiar_string()
                )
            })
            .collect();
        if self.tags.is_empty() {
            lines.push(format!("Loaded image ID: {}", self.id));
        }
        lines.extend(
            self.tags
                .iter()
                .map(|t| format!("Loaded image: {}", t.familiar_string())),
        );
        lines
    }
}

/// An entry of a Docker archive's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DockerArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Small documents of an archive are kept in memory; anything larger than this that is not
/// under `blobs/` is not a document berth understands.
const MAX_DOCUMENT: u64 = 16 << 20;
/// All such documents together; a hostile archive cannot make berth hold more.
const MAX_DOCUMENTS_TOTAL: u64 = 64 << 20;

const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// What the first pass over an archive found.
#[derive(Default)]
struct ArchiveContents {
    /// Archive path -> blob now in the store.
    files: HashMap<String, Digest>,
    /// Archive path -> small document.
    docs: HashMap<String, Vec<u8>>,
    /// Archive path -> path it links to (old Docker archives link shared layers).
    links: HashMap<String, String>,
    /// Layer blobs unpacked while they streamed in, by blob digest, waiting for the config
    /// that names their place in a chain.
    unpacked: HashMap<Digest, Unpacked>,
}

pub(crate) fn clean_archive_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

impl Store {
    /// Loads every image in a Docker archive or OCI layout tar.
    pub fn load(&mut self, input: impl Read + Send) -> Result<Vec<LoadedImage>> {
        let result = self.load_locked(input);
        self.clean_after_failure(&result);
        for image in result.iter().flatten() {
            let name = image
                .tags
                .first()
                .map_or_else(|| image.id.to_string(), |t| t.familiar_string());
            self.image_event("load", image.id.as_str(), &name);
        }
        result
    }

    fn load_locked(&mut self, input: impl Read + Send) -> Result<Vec<LoadedImage>> {
        let _writer = self.lock_writer()?;
        let mut contents = self.read_archive(input)?;
        if contents.docs.contains_key("manifest.json") {
            self.load_docker_archive(&mut contents)
        } else if contents.docs.contains_key("index.json") {
            self.load_oci_layout(&mut contents)
        } else {
            Err(StoreError::corrupt(
                "archive",
                "no manifest.json or index.json: not a docker save archive or an OCI layout",
            ))
        }
    }

    /// Streams the tar once: blobs go straight into the blob store (verified when their
    /// path names their digest), small documents into memory.
    fn read_archive(&self, input: impl Read + Send) -> Result<ArchiveContents> {
        let (_, stream) = decompress(BufReader::with_capacity(1 << 20, input))?;
        let read_err = |source: io::Error| StoreError::Read {
            what: "archive".into(),
            source,
        };
        let mut ar = tar::Archive::new(stream);
        let mut out = ArchiveContents::default();
        let mut doc_bytes = 0u64;
        for entry in ar.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let path = clean_archive_path(&raw_path);
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Ok(Some(target)) = entry.link_name() {
                        let target = target.to_string_lossy();
                        let joined = if entry.header().entry_type() == tar::EntryType::Link
                            || target.starts_with('/')
                        {
                            target.to_string()
                        } else {
                            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                            format!("{dir}/{target}")
                        };
                        out.links.insert(path, clean_archive_path(&joined));
                    }
                    continue;
                }
                _ => continue,
            }
            let size = entry.size();
            let blob_name = path
                .strip_prefix("blobs/")
                .and_then(|rest| rest.split_once('/'))
                .map(|(alg, hex)| format!("{alg}:{hex}"));
            if blob_name.is_none() && size <= MAX_DOCUMENT && !path.ends_with(".tar") {
                doc_bytes += size;
                if doc_bytes > MAX_DOCUMENTS_TOTAL {
                    return Err(StoreError::corrupt(
                        "archive",
                        "more than 64 MiB of JSON documents outside blobs/",
                    ));
                }
                let mut data = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut data).map_err(read_err)?;
                out.docs.insert(path, data);
                continue;
            }
            let expected = match &blob_name {
                Some(name) => Some(
                    Digest::parse(name)
                        .map_err(|e| StoreError::corrupt(format!("archive entry {path}"), e))?,
                ),
                None => None,
            };
            if let Some(d) = &expected
                && self.blobs.contains(d)
            {
                out.files.insert(path, d.clone());
                continue;
            }
            // Peek: a blob that looks like a layer is unpacked while it is stored, so the
            // copy overlaps the unpack and one syncfs makes both durable.
            let mut head = [0u8; 512];
            let head_len = read_up_to(&mut entry, &mut head).map_err(read_err)?;
            let looks_like_layer = matches!(
                Compression::detect(&head[..head_len]),
                Ok(Compression::Gzip | Compression::Zstd)
            ) || head.get(257..262) == Some(&b"ustar"[..]);
            let mut source = io::Cursor::new(&head[..head_len]).chain(&mut entry);
            let mut ingest = io::BufWriter::with_capacity(1 << 20, self.blobs.ingest()?);
            let unpacked = match &expected {
                Some(d) if looks_like_layer => self
                    .stream_layer(d, &mut source, &mut ingest)
                    .map_err(read_err)?,
                _ => {
                    io::copy(&mut source, &mut ingest).map_err(read_err)?;
                    None
                }
            };
            let ingest = ingest
                .into_inner()
                .map_err(|e| e.into_error())
                .ctx("write blob", self.root.join("ingest"))?;
            let committed = match &unpacked {
                Some(layer) => {
                    layer.sync()?;
                    ingest.commit_after_syncfs(expected.as_ref())
                }
                None => ingest.commit(expected.as_ref()),
            };
            let digest = committed.map_err(|e| match e {
                StoreError::DigestMismatch { expected, actual } => StoreError::corrupt(
                    format!("archive entry {path}"),
                    format!("content hashed to {actual}, not {expected}"),
                ),
                e => e,
            })?;
            if let Some(layer) = unpacked {
                out.unpacked.insert(digest.clone(), layer);
            }
            out.files.insert(path, digest);
        }
        Ok(out)
    }

    /// Copies a layer blob from `source` into `ingest` while another thread unpacks the same
    /// bytes. A blob that fails to unpack is still stored; the normal path unpacks it again
    /// later, if an image uses it, and reports the error then.
    fn stream_layer(
        &self,
        blob: &Digest,
        source: &mut impl Read,
        ingest: &mut impl Write,
    ) -> io::Result<Option<Unpacked>> {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(16);
        let layers = &self.layers;
        let name = blob.to_string();
        let (copied, unpacked) = thread::scope(|s| {
            let worker = s.spawn(move || {
                let reader = ChannelReader::new(rx);
                let (_, tar) = decompress(BufReader::with_capacity(1 << 20, reader))?;
                layers.unpack_detached(&name, Digesting::new(tar, None))
            });
            let copied = (|| {
                let mut buf = vec![0u8; 1 << 20];
                let mut unpacker_alive = true;
                loop {
                    let n = match source.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    ingest.write_all(&buf[..n])?;
                    if unpacker_alive && tx.send(buf[..n].to_vec()).is_err() {
                        unpacker_alive = false;
                    }
                }
            })();
            drop(tx);
            (copied, worker.join())
        });
        copied?;
        match unpacked {
            Ok(Ok(layer)) => Ok(Some(layer)),
            Ok(Err(e)) => {
                tracing::debug!(%blob, error = %e, "blob did not unpack while streaming");
                Ok(None)
            }
            Err(_) => Err(io::Error::other("the layer unpacker thread panicked")),
        }
    }

    /// The blob an archive path refers to, following links and storing documents.
    fn archive_blob(&self, contents: &ArchiveContents, path: &str) -> Result<Digest> {
        let mut path = clean_archive_path(path);
        for _ in 0..16 {
            if let Some(d) = contents.files.get(&path) {
                return Ok(d.clone());
            }
            if let Some(doc) = contents.docs.get(&path) {
                return self.blobs.put(doc);
            }
            match contents.links.get(&path) {
                Some(target) => path = target.clone(),
                None => break,
            }
        }
        Err(StoreError::MissingInArchive(path))
    }

    fn load_docker_archive(&mut self, contents: &mut ArchiveContents) -> Result<Vec<LoadedImage>> {
        let entries: Vec<DockerArchiveEntry> =
            serde_json::from_slice(&contents.docs["manifest.json"])
                .map_err(|e| StoreError::corrupt("manifest.json", e))?;
        let mut loaded = Vec::new();
        for entry in entries {
            let config_digest = self.archive_blob(contents, &entry.config)?;
            let config_bytes = self.blobs.read(&config_digest)?;
            let config = parse_config(&config_digest, &config_bytes)?;
            if config.rootfs.diff_ids.len() != entry.layers.len() {
                return Err(StoreError::corrupt(
                    format!("image {config_digest}"),
                    format!(
                        "config lists {} layers, manifest.json {}",
                        config.rootfs.diff_ids.len(),
                        entry.layers.len()
                    ),
                ));
            }
            let mut layers = Vec::new();
            for path in &entry.layers {
                let digest = self.archive_blob(contents, path)?;
                let media_type = match self.blobs.compression(&digest)? {
                    Compression::None => MediaType::ImageLayer,
                    Compression::Gzip => MediaType::ImageLayerGzip,
                    Compression::Zstd => MediaType::ImageLayerZstd,
                };
                let size = self.blobs.size(&digest)?;
                layers.push((digest, size, media_type));
            }
            let blob_digests: Vec<Digest> = layers.iter().map(|l| l.0.clone()).collect();
            self.unpack_image_layers(&config, &blob_digests, &mut contents.unpacked)?;
            let manifest = self.put_manifest(&config_digest, config_bytes.len() as u64, &layers)?;
            let tags = entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| Reference::parse_with_default_tag(t))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let (rec, displaced) =
                self.register(&manifest, &config_digest, &config, &tags, None)?;
            loaded.push(LoadedImage {
                id: rec.id,
                tags,
                displaced,
            });
        }
        Ok(loaded)
    }

    fn load_oci_layout(&mut self, contents: &mut ArchiveContents) -> Result<Vec<LoadedImage>> {
        let index = ImageIndex::from_reader(&contents.docs["index.json"][..])
            .map_err(|e| StoreError::corrupt("index.json", e))?;
        let mut loaded: Vec<LoadedImage> = Vec::new();
        for desc in index.manifests() {
            let name = desc.annotations().as_ref().and_then(|a| {
                a.get(ANNOTATION_IMAGE_NAME).or_else(|| {
                    a.get(ANNOTATION_REF_NAME)
                        .filter(|n| n.contains([':', '/']))
                })
            });
            let tags: Vec<Reference> = match name {
                Some(n) => vec![Reference::parse_with_default_tag(n)?],
                None => Vec::new(),
            };
            let manifest_digest = self.pick_platform_manifest(desc)?;
            let manifest_bytes = self.blobs.read(&manifest_digest).map_err(|e| match e {
                StoreError::BlobNotFound(d) => {
                    StoreError::MissingInArchive(format!("manifest {d}"))
                }
                e => e,
            })?;
            let manifest = parse_manifest(&manifest_digest, &manifest_bytes)?;
            let config_digest = from_oci_digest(manifest.config().digest())?;
            let config_bytes = self.blobs.read(&config_digest).map_err(|e| match e {
                StoreError::BlobNotFound(d) => StoreError::MissingInArchive(format!("config {d}")),
                e => e,
            })?;
            let config = parse_config(&config_digest, &config_bytes)?;
            let mut blobs = Vec::new();
            for layer in manifest.layers() {
                check_layer_media_type(layer)?;
                let d = from_oci_digest(layer.digest())?;
                if !self.blobs.contains(&d) {
                    return Err(StoreError::MissingInArchive(format!("layer {d}")));
                }
                blobs.push(d);
            }
            if config.rootfs.diff_ids.len() != blobs.len() {
                return Err(StoreError::corrupt(
                    format!("image {config_digest}"),
                    format!(
                        "config lists {} layers, manifest {}",
                        config.rootfs.diff_ids.len(),
                        blobs.len()
                    ),
                ));
            }
            self.unpack_image_layers(&config, &blobs, &mut contents.unpacked)?;
            let (rec, displaced) =
                self.register(&manifest_digest, &config_digest, &config, &tags, None)?;
            match loaded.iter_mut().find(|l| l.id == rec.id) {
                Some(l) => {
                    l.tags.extend(tags);
                    l.displaced.extend(displaced);
                }
                None => loaded.push(LoadedImage {
                    id: rec.id,
                    tags,
                    displaced,
                }),
            }
        }
        Ok(loaded)
    }

    /// Follows an index entry down to one image manifest, choosing this host's platform
    /// from (nested) indexes and manifest lists.
    fn pick_platform_manifest(&self, desc: &oci_spec::image::Descriptor) -> Result<Digest> {
        let mut digest = from_oci_digest(desc.digest())?;
        let mut media_type = desc.media_type().clone();
        for _ in 0..8 {
            let is_index = matches!(media_type, MediaType::ImageIndex)
                || media_type.to_string()
                    == "application/vnd.docker.distribution.manifest.list.v2+json";
            if !is_index {
                return Ok(digest);
            }
            let data = self
                .blobs
                .read(&digest)
                .map_err(|_| StoreError::MissingInArchive(format!("index {digest}")))?;
            let index = ImageIndex::from_reader(&data[..])
                .map_err(|e| StoreError::corrupt(format!("index {digest}"), e))?;
            let chosen = index
                .manifests()
                .iter()
                .find(|m| match m.platform() {
                    Some(p) => {
                        p.os().to_string() == "linux"
                            && p.architecture().to_string() == host_architecture()
                    }
                    None => false,
                })
                .or_else(|| index.manifests().iter().find(|m| m.platform().is_none()))
                .ok_or_else(|| {
                    StoreError::corrupt(
                        format!("index {digest}"),
                        format!("no image for linux/{}", host_architecture()),
                    )
                })?;
            digest = from_oci_digest(chosen.digest())?;
            media_type = chosen.media_type().clone();
        }
        Err(StoreError::corrupt(
            format!("index {digest}"),
            "indexes nested too deeply",
        ))
    }

    /// Unpacks an image's layers (skipping those already unpacked), checking each against
    /// the config's diff IDs.
    pub(crate) fn unpack_image_layers(
        &self,
        config: &ImageConfig,
        blobs: &[Digest],
        streamed: &mut HashMap<Digest, Unpacked>,
    ) -> Result<()> {
        let chains = chain_ids(config)?;
        for (i, blob) in blobs.iter().enumerate() {
            let diff_id = Digest::parse(&config.rootfs.diff_ids[i])
                .map_err(|e| StoreError::corrupt("diff ID", e))?;
            let parent = i.checked_sub(1).map(|p| &chains[p]);
            let streamed_layer = streamed.remove(blob);
            if let Some(layer) = &streamed_layer
                && layer.diff_id != diff_id
            {
                return Err(layer_mismatch(blob, &layer.diff_id, &diff_id));
            }
            if self.layers.get(&chains[i])?.is_some() {
                // The layer is unpacked already, but this manifest names its own blob for
                // it: that blob must really be the layer before the image may refer to it.
                if blob != &diff_id && streamed_layer.is_none() {
                    self.verify_layer_blob(blob, &diff_id)?;
                }
                continue;
            }
            if let Some(layer) = streamed_layer {
                self.layers.publish(layer, parent, None)?;
                continue;
            }
            let file = self.blobs.open(blob)?;
            let (_, tar) = decompress(BufReader::with_capacity(1 << 20, file))?;
            self.layers
                .ensure_layer(
                    parent,
                    Some(&diff_id),
                    &blob.to_string(),
                    Digesting::new(tar, None),
                )
                .map_err(|e| match e {
                    StoreError::DigestMismatch { expected, actual } => {
                        layer_mismatch(blob, &actual, &expected)
                    }
                    e => e,
                })?;
        }
        Ok(())
    }

    /// Checks that a layer blob decompresses to the content named by `diff_id`.
    fn verify_layer_blob(&self, blob: &Digest, diff_id: &Digest) -> Result<()> {
        let file = self.blobs.open(blob)?;
        let (_, tar) = decompress(BufReader::with_capacity(1 << 20, file))?;
        let (actual, _) =
            Digesting::new(tar, None)
                .finish()
                .map_err(|source| StoreError::Read {
                    what: format!("layer {blob}"),
                    source,
                })?;
        if &actual != diff_id {
            return Err(layer_mismatch(blob, &actual, diff_id));
        }
        Ok(())
    }

    /// What `save NAME` includes, as docker decides it: a tag saves that tag, a bare
    /// repository name every tagged image of that repository, an ID the image without tags.
    pub fn save_requests(&self, name: &str) -> Result<Vec<SaveRequest>> {
        if let Ok(r) = Reference::parse_normalized(name)
            && r.tag().is_none()
            && r.digest().is_none()
        {
            let repo = r.name();
            let requests: Vec<SaveRequest> = self
                .images()?
                .into_iter()
                .filter_map(|image| {
                    let tags: Vec<Reference> = image
                        .tags
                        .iter()
                        .filter(|t| t.name() == repo)
                        .cloned()
                        .collect();
                    (!tags.is_empty()).then_some(SaveRequest { image, tags })
                })
                .collect();
            if !requests.is_empty() {
                return Ok(requests);
            }
        }
        let rec = self.resolve(name)?;
        let tags = match Reference::parse_with_default_tag(name) {
            Ok(r) if rec.tags.contains(&r) => vec![r],
            _ => Vec::new(),
        };
        Ok(vec![SaveRequest { image: rec, tags }])
    }

    /// The requests of several names, one per image (an image named twice carries the
    /// tags of both).
    pub fn save_requests_all(&self, names: &[String]) -> Result<Vec<SaveRequest>> {
        let mut requests: Vec<SaveRequest> = Vec::new();
        for name in names {
            for req in self.save_requests(name)? {
                match requests.iter_mut().find(|r| r.image.id == req.image.id) {
                    Some(r) => {
                        for t in req.tags {
                            if !r.tags.contains(&t) {
                                r.tags.push(t);
                            }
                        }
                    }
                    None => requests.push(req),
                }
            }
        }
        Ok(requests)
    }

    /// Writes images to an archive.
    pub fn save(
        &self,
        requests: &[SaveRequest],
        format: ArchiveFormat,
        out: impl Write,
    ) -> Result<()> {
        let mut w = ArchiveWriter::new(out);
        let mut index_entries = Vec::new();
        let mut docker_entries = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for req in requests {
            let image = self.image(req.image.clone())?;
            let (manifest_digest, manifest_size) = match format {
                ArchiveFormat::Oci => {
                    for d in std::iter::once(&image.record.manifest).chain([&image.record.id]) {
                        w.blob_from_store(self, d)?;
                    }
                    for layer in image.manifest.layers() {
                        w.blob_from_store(self, &from_oci_digest(layer.digest())?)?;
                    }
                    let size = self.blobs.size(&image.record.manifest)?;
                    (image.record.manifest.clone(), size)
                }
                ArchiveFormat::Docker => {
                    // Layers go in uncompressed, named by diff ID, as docker save does.
                    w.blob_from_store(self, &image.record.id)?;
                    let mut layers = Vec::new();
                    let mut paths = Vec::new();
                    for (layer, chain) in image.manifest.layers().iter().zip(image.chain_ids()?) {
                        let info = self.layers.get(&chain)?.ok_or_else(|| {
                            StoreError::corrupt(
                                format!("image {}", image.record.id),
                                format!("layer {chain} is not unpacked"),
                            )
                        })?;
                        w.uncompressed_layer(self, &from_oci_digest(layer.digest())?, &info)?;
                        paths.push(format!("blobs/sha256/{}", info.diff_id.encoded()));
                        layers.push((info.diff_id.clone(), info.tar_size, MediaType::ImageLayer));
                    }
                    // The manifest for uncompressed layers exists only in the archive: saving
                    // writes nothing to the store.
                    let config_size = self.blobs.size(&image.record.id)?;
                    let bytes = manifest_bytes(&image.record.id, config_size, &layers)?;
                    let manifest = Digest::sha256_of(&bytes);
                    w.blob_bytes(&manifest, &bytes)?;
                    let size = bytes.len() as u64;
                    let top = layers
                        .last()
                        .map(|l| l.0.encoded().to_string())
                        .unwrap_or_default();
                    for t in &req.tags {
                        repositories
                            .entry(t.familiar_name())
                            .or_default()
                            .insert(t.tag().unwrap_or("latest").to_string(), top.clone());
                    }
                    docker_entries.push(DockerArchiveEntry {
                        config: format!("blobs/sha256/{}", image.record.id.encoded()),
                        repo_tags: Some(req.tags.iter().map(|t| t.familiar_string()).collect()),
                        layers: paths,
                    });
                    (manifest, size)
                }
            };
            let descriptor = |tag: Option<&Reference>| {
                let mut d = serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest.to_string(),
                    "size": manifest_size,
                });
                if let Some(t) = tag {
                    d["annotations"] = serde_json::json!({
                        ANNOTATION_IMAGE_NAME: t.to_string(),
                        ANNOTATION_REF_NAME: t.tag().unwrap_or("latest"),
                    });
                }
                d
            };
            if req.tags.is_empty() {
                index_entries.push(descriptor(None));
            }
            for t in &req.tags {
                index_entries.push(descriptor(Some(t)));
            }
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": index_entries,
        });
        w.document("index.json", &serde_json::to_vec(&index).expect("json"))?;
        w.document("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        if format == ArchiveFormat::Docker {
            w.document(
                "manifest.json",
                &serde_json::to_vec(&docker_entries).expect("json"),
            )?;
            w.document(
                "repositories",
                &serde_json::to_vec(&repositories).expect("json"),
            )?;
        }
        w.finish()?;
        for req in requests {
            let name = req
                .tags
                .first()
                .map_or_else(|| req.image.id.to_string(), |t| t.familiar_string());
            self.image_event("save", req.image.id.as_str(), &name);
        }
        Ok(())
    }
}

/// A tar being written, with each blob written once.
struct ArchiveWriter<W: Write> {
    tar: tar::Builder<W>,
    written: HashSet<String>,
    dirs_done: bool,
}

fn save_err(source: io::Error) -> StoreError {
    StoreError::Io {
        op: "write archive",
        path: "-".into(),
        source,
    }
}

impl<W: Write> ArchiveWriter<W> {
    fn new(out: W) -> Self {
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        ArchiveWriter {
            tar,
            written: HashSet::new(),
            dirs_done: false,
        }
    }

    fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(mode);
        h.set_entry_type(kind);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn dirs(&mut self) -> Result<()> {
        if !self.dirs_done {
            self.dirs_done = true;
            for d in ["blobs/", "blobs/sha256/"] {
                let mut h = Self::header(0, 0o755, tar::EntryType::Directory);
                self.tar
                    .append_data(&mut h, d, io::empty())
                    .map_err(save_err)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, path: &str, size: u64, data: impl Read) -> Result<()> {
        let mut h = Self::header(size, 0o644, tar::EntryType::Regular);
        let mut data = ExactReader {
            inner: data,
            left: size,
        };
        self.tar
            .append_data(&mut h, path, &mut data)
            .map_err(save_err)?;
        if data.left != 0 {
            return Err(save_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: content ended early"),
            )));
        }
        Ok(())
    }

    fn blob_from_store(&mut self, store: &Store, digest: &Digest) -> Result<()> {
        self.dirs()?;
        let path = format!("blobs/sha256/{}", digest.encoded());
        if !self.written.insert(path.clone()) {
            return Ok(());
        }
        let size = store.blobs.size(digest)?;
        let file = store.blobs.open(digest)?;
        self.entry(&path, size, BufReader::with_capacity(1 << 20, file))
    }

    fn blob_bytes(&mut self, digest: &Digest, data: &[u8]) -> Result<()> {
        self.dirs()?;
        let path = format!("blobs/sha256/{}", digest.encoded());
        if self.written.insert(path.clone()) {
            self.entry(&path, data.len() as u64, data)?;
        }
        Ok(())
    }

    fn uncompressed_layer(
        &mut self,
        store: &Store,
        blob: &Digest,
        info: &crate::LayerInfo,
    ) -> Result<()> {
        self.dirs()?;
        let path = format!("blobs/sha256/{}", info.diff_id.encoded());
        if !self.written.insert(path.clone()) {
            return Ok(());
        }
        let file = store.blobs.open(blob)?;
        let (_, tar) = decompress(BufReader::with_capacity(1 << 20, file))?;
        self.entry(&path, info.tar_size, tar)
    }

    fn document(&mut self, path: &str, data: &[u8]) -> Result<()> {
        self.entry(path, data.len() as u64, data)
    }

    fn finish(mut self) -> Result<()> {
        self.tar.finish().map_err(save_err)?;
        self.tar.get_mut().flush().map_err(save_err)
    }
}

/// A layer blob whose uncompressed content is not what the image config says.
fn layer_mismatch(blob: &Digest, actual: &Digest, expected: &Digest) -> StoreError {
    StoreError::corrupt(
        format!("layer {blob}"),
        format!("uncompressed content hashed to {actual}, but the config says {expected}"),
    )
}

/// Reads what another thread sends, chunk by chunk, until it hangs up.
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    pub(crate) fn new(rx: mpsc::Receiver<Vec<u8>>) -> Self {
        ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
pub(crate) fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Yields exactly `left` bytes of `inner`; `left` stays above zero if `inner` ends early.
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}
