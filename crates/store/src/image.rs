//! Images as users name them: resolution of names, IDs and ID prefixes; tagging; removal;
//! and the one registration step that every way in (import, load, pull, build) ends with.

use berth_reference::{Digest, Reference};
use oci_spec::image::{Descriptor, ImageManifest, MediaType};

use crate::{
    GC_LOCK, Store,
    config::ImageConfig,
    error::{Result, StoreError},
    layers::chain_id,
    meta::ImageRecord,
};

/// An image with its documents loaded.
#[derive(Debug, Clone)]
pub struct Image {
    /// The database record (ID, tags, size).
    pub record: ImageRecord,
    /// The parsed config.
    pub config: ImageConfig,
    /// The manifest.
    pub manifest: ImageManifest,
}

impl Image {
    /// Chain IDs of the image's layers, bottom first.
    pub fn chain_ids(&self) -> Result<Vec<Digest>> {
        chain_ids(&self.config)
    }
}

/// One line of `history`: the config's entry and the size of the layer it made (0 for an
/// empty layer).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryEntry {
    /// The config's history entry.
    pub history: crate::History,
    /// The layer's size.
    pub size: u64,
}

/// What `rmi` did, in Docker's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveEvent {
    /// A tag or repository digest was removed (familiar form).
    Untagged(String),
    /// An image or layer was deleted.
    Deleted(Digest),
}

/// Chain IDs from a config's diff IDs.
pub(crate) fn chain_ids(config: &ImageConfig) -> Result<Vec<Digest>> {
    let mut out: Vec<Digest> = Vec::with_capacity(config.rootfs.diff_ids.len());
    for d in &config.rootfs.diff_ids {
        let diff_id =
            Digest::parse(d).map_err(|e| StoreError::corrupt(format!("diff ID {d}"), e))?;
        out.push(chain_id(out.last(), &diff_id));
    }
    Ok(out)
}

/// Parses a manifest (OCI or Docker schema 2), naming it in errors.
pub(crate) fn parse_manifest(digest: &Digest, data: &[u8]) -> Result<ImageManifest> {
    ImageManifest::from_reader(data)
        .map_err(|e| StoreError::corrupt(format!("manifest {digest}"), e))
}

/// Parses a config, naming it in errors.
pub(crate) fn parse_config(digest: &Digest, data: &[u8]) -> Result<ImageConfig> {
    ImageConfig::from_slice(data).map_err(|e| StoreError::corrupt(format!("config {digest}"), e))
}

/// Converts between the two digest types at the oci-spec boundary.
pub(crate) fn oci_digest(d: &Digest) -> oci_spec::image::Digest {
    d.to_string()
        .parse()
        .expect("a validated digest is a valid oci-spec digest")
}

/// Converts between the two digest types at the oci-spec boundary.
pub(crate) fn from_oci_digest(d: &oci_spec::image::Digest) -> Result<Digest> {
    Digest::parse(d.as_ref()).map_err(|e| StoreError::corrupt(format!("digest {d}"), e))
}

/// Layer media types berth can unpack: OCI and Docker, plain, gzip or zstd.
pub fn check_layer_media_type(desc: &Descriptor) -> Result<()> {
    match desc.media_type() {
        MediaType::ImageLayer
        | MediaType::ImageLayerGzip
        | MediaType::ImageLayerZstd
        | MediaType::ImageLayerNonDistributable
        | MediaType::ImageLayerNonDistributableGzip
        | MediaType::ImageLayerNonDistributableZstd => Ok(()),
        MediaType::Other(t)
            if matches!(
                t.as_str(),
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
                    | "application/vnd.docker.image.rootfs.diff.tar"
                    | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
            ) =>
        {
            Ok(())
        }
        other => Err(StoreError::UnsupportedMediaType(other.to_string())),
    }
}

impl Store {
    /// Finds an image by reference (`busybox`, `busybox:1`, `name@sha256:…`), full ID
    /// (`sha256:…`) or unique ID prefix, the way Docker does: a name first, then an ID.
    /// Not found, a name is told as dockerd tells it, tagged (`No such image: nosuch:latest`).
    pub fn resolve(&self, name: &str) -> Result<ImageRecord> {
        let not_found = || {
            let shown = match name.strip_prefix("sha256:") {
                Some(_) => name.to_string(),
                None => Reference::parse_with_default_tag(name)
                    .map_or_else(|_| name.to_string(), |r| r.familiar_string()),
            };
            StoreError::ImageNotFound(shown)
        };
        if let Some(hex) = name.strip_prefix("sha256:") {
            return self.resolve_id_prefix(hex, name)?.ok_or_else(not_found);
        }
        if let Ok(r) = Reference::parse_with_default_tag(name)
            && let Some(id) = self.meta.resolve_tag(&r)?
            && let Some(rec) = self.meta.image(&id)?
        {
            return Ok(rec);
        }
        if !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return self
                .resolve_id_prefix(&name.to_ascii_lowercase(), name)?
                .ok_or_else(not_found);
        }
        Err(not_found())
    }

    fn resolve_id_prefix(&self, hex: &str, name: &str) -> Result<Option<ImageRecord>> {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let ids = self.meta.ids_with_prefix(hex)?;
        match ids.as_slice() {
            [] => Ok(None),
            [id] => self.meta.image(id),
            _ => Err(StoreError::AmbiguousImage(name.to_string())),
        }
    }

    /// Loads an image's config and manifest.
    pub fn image(&self, record: ImageRecord) -> Result<Image> {
        let manifest = parse_manifest(&record.manifest, &self.blobs.read(&record.manifest)?)?;
        let config = parse_config(&record.id, &self.blobs.read(&record.id)?)?;
        Ok(Image {
            record,
            config,
            manifest,
        })
    }

    /// The raw config bytes (what the image ID is the digest of).
    pub fn config_bytes(&self, id: &Digest) -> Result<Vec<u8>> {
        self.blobs.read(id)
    }

    /// Docker's `image inspect` document of one image (also `GET /images/{name}/json`).
    pub fn inspect_document(&self, rec: &ImageRecord) -> Result<serde_json::Value> {
        let image = self.image(rec.clone())?;
        let chains = image.chain_ids()?;
        let dirs: Vec<String> = chains
            .iter()
            .rev()
            .map(|c| self.layer_dir(c).display().to_string())
            .collect();
        let mut graph = serde_json::Map::new();
        if let Some((upper, lower)) = dirs.split_first() {
            if !lower.is_empty() {
                graph.insert("LowerDir".into(), lower.join(":").into());
            }
            graph.insert("UpperDir".into(), upper.clone().into());
        }
        let c = &image.config;
        // With no comment of its own, an image shows its last history entry's (moby's rule:
        // `buildkit.dockerfile.v0` for a built image).
        let comment = c
            .extra
            .get("comment")
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or_else(|| c.history.last().and_then(|h| h.comment.clone()))
            .unwrap_or_default();
        let mut doc = serde_json::json!({
            "Id": rec.id.to_string(),
            "RepoTags": rec.tags.iter().map(|t| t.familiar_string()).collect::<Vec<_>>(),
            "RepoDigests": rec.repo_digests.iter().map(|t| t.familiar_string()).collect::<Vec<_>>(),
            "Parent": rec.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
            "Comment": comment,
            "Created": c.created.clone().unwrap_or_default(),
            "DockerVersion": c.extra.get("docker_version").cloned().unwrap_or(serde_json::Value::String(String::new())),
            "Author": c.author.clone().unwrap_or_default(),
            "Config": c.config.clone().unwrap_or_default(),
            "Architecture": c.architecture,
            "Os": c.os,
            "Size": rec.size,
            "GraphDriver": { "Data": graph, "Name": "overlay2" },
            "RootFS": { "Type": c.rootfs.kind, "Layers": c.rootfs.diff_ids },
            "Metadata": { "LastTagTime": "0001-01-01T00:00:00Z" },
            "Descriptor": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": rec.manifest.to_string(),
                "size": self.blobs().size(&rec.manifest)?,
            },
        });
        if let Some(v) = &c.variant {
            doc["Variant"] = v.clone().into();
        }
        Ok(doc)
    }

    /// Every image, newest first, with tags.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.meta.images()
    }

    /// Points `tag` at the image named `source`.
    pub fn tag(&mut self, source: &str, tag: &Reference) -> Result<()> {
        if tag.digest().is_some() {
            return Err(StoreError::Conflict(format!(
                "refusing to create a tag with a digest reference: {}",
                tag.familiar_string()
            )));
        }
        let rec = self.resolve(source)?;
        self.meta.set_tag(tag, &rec.id)?;
        self.image_event("tag", rec.id.as_str(), &tag.familiar_string());
        Ok(())
    }

    /// Tells the event log of `action` on an image: its ID (or, for `pull` and `push`, the
    /// reference) as the actor, `name` as Docker's attribute.
    pub fn image_event(&self, action: &str, actor: &str, name: &str) {
        self.record_event(crate::events::Event::now("image", action, actor).with("name", name));
    }

    /// Records an image whose manifest, config and layers are all in place, and tags it.
    /// Also returns each tag taken from another image, with that image.
    pub(crate) fn register(
        &mut self,
        manifest_digest: &Digest,
        config_digest: &Digest,
        config: &ImageConfig,
        tags: &[Reference],
        parent: Option<Digest>,
    ) -> Result<(ImageRecord, Vec<(Reference, Digest)>)> {
        self.register_with_repo_digests(manifest_digest, config_digest, config, tags, &[], parent)
    }

    /// [`Store::register`], with repository digests (`name@sha256:…`) recorded in the same
    /// transaction.
    pub(crate) fn register_with_repo_digests(
        &mut self,
        manifest_digest: &Digest,
        config_digest: &Digest,
        config: &ImageConfig,
        tags: &[Reference],
        repo_digests: &[Reference],
        parent: Option<Digest>,
    ) -> Result<(ImageRecord, Vec<(Reference, Digest)>)> {
        let mut size = 0;
        for chain in chain_ids(config)? {
            let info = self.layers.get(&chain)?.ok_or_else(|| {
                StoreError::corrupt(
                    format!("image {config_digest}"),
                    format!("layer {chain} is not unpacked"),
                )
            })?;
            size += info.size;
        }
        let rec = ImageRecord {
            id: config_digest.clone(),
            manifest: manifest_digest.clone(),
            created: config.created.clone(),
            size,
            added: jiff::Timestamp::now().as_second(),
            parent,
            tags: tags.to_vec(),
            repo_digests: repo_digests.to_vec(),
        };
        crate::crash::point("image.registering");
        let displaced = self.meta.register_image(&rec, tags)?;
        crate::crash::point("image.registered");
        Ok((rec, displaced))
    }

    /// Removes what `name` names, as `docker rmi` does: a tag is untagged, and the image
    /// goes when no tag is left; an ID removes the image unless tags still name it (then
    /// only with `force`, which untags them all).
    ///
    /// The image row is deleted only in the same transaction that sees it untagged, so a
    /// tag another process adds meanwhile keeps the image alive.
    pub fn remove_image(&mut self, name: &str, force: bool) -> Result<Vec<RemoveEvent>> {
        let rec = self.resolve(name)?;
        let events = self.remove_resolved(name, rec.clone(), force)?;
        for event in &events {
            match event {
                RemoveEvent::Untagged(tag) => self.image_event("untag", rec.id.as_str(), tag),
                // The image's own deletion comes first, then its layers'.
                RemoveEvent::Deleted(id) if *id == rec.id => {
                    self.image_event("delete", id.as_str(), id.as_str())
                }
                RemoveEvent::Deleted(_) => {}
            }
        }
        Ok(events)
    }

    fn remove_resolved(
        &mut self,
        name: &str,
        rec: ImageRecord,
        force: bool,
    ) -> Result<Vec<RemoveEvent>> {
        // A cache's holds keep an image for reuse, not from `rmi`: by tag the image stays
        // (untagged, held) for the next build; by ID the cache lets go of it.
        let (cache_holds, holders): (Vec<String>, Vec<String>) = self
            .meta
            .holders(&rec.id)?
            .into_iter()
            .partition(|h| h.starts_with(CACHE_HOLDER_PREFIX));
        let mut events = Vec::new();
        let by_reference = Reference::parse_with_default_tag(name)
            .ok()
            .filter(|r| rec.tags.contains(r) || rec.repo_digests.contains(r));
        match &by_reference {
            Some(r) => {
                let last_tag = !rec.tags.iter().any(|t| t != r);
                if last_tag
                    && !force
                    && let Some(holder) = holders.first()
                {
                    return Err(StoreError::Conflict(format!(
                        "unable to remove repository reference \"{}\" (must force) - {} is using its referenced image {}",
                        name,
                        describe_holder(holder),
                        rec.id.short()
                    )));
                }
                self.meta.remove_tag(r)?;
                events.push(RemoveEvent::Untagged(r.familiar_string()));
                if rec.tags.iter().any(|t| t != r) {
                    return Ok(events);
                }
            }
            None => {
                if let Some(holder) = holders.first() {
                    // Docker keeps an image a container uses even when forced: it can
                    // only untag it.
                    if !force {
                        return Err(StoreError::Conflict(format!(
                            "unable to delete {} (must be forced) - image is being used by {}",
                            rec.id.short(),
                            describe_holder(holder)
                        )));
                    }
                }
                if rec.tags.len() > 1 && !force {
                    return Err(StoreError::Conflict(format!(
                        "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                        rec.id.short()
                    )));
                }
                for t in &rec.tags {
                    self.meta.remove_tag(t)?;
                    events.push(RemoveEvent::Untagged(t.familiar_string()));
                }
                for holder in &cache_holds {
                    self.meta.release(holder)?;
                }
            }
        }
        for d in &rec.repo_digests {
            if by_reference.as_ref() != Some(d) {
                self.meta.remove_tag(d)?;
                events.push(RemoveEvent::Untagged(d.familiar_string()));
            }
        }
        crate::crash::point("rmi.untagged");
        if self.meta.remove_image_if_untagged(&rec.id)? {
            crate::crash::point("rmi.deleted");
            events.push(RemoveEvent::Deleted(rec.id.clone()));
            events.extend(self.collect_quietly().into_iter().map(RemoveEvent::Deleted));
        }
        Ok(events)
    }

    /// Every tag of a repository (`docker.io/library/busybox`), by tag name: what
    /// `push --all-tags` pushes.
    pub fn repository_tags(&self, repository: &str) -> Result<Vec<Reference>> {
        let mut tags: Vec<Reference> = self
            .images()?
            .into_iter()
            .flat_map(|i| i.tags)
            .filter(|t| t.name() == repository)
            .collect();
        tags.sort_by(|a, b| a.tag().cmp(&b.tag()));
        Ok(tags)
    }

    /// An image's history, oldest first, each entry with the size of its layer. An image
    /// whose config has no history gets one blank entry per layer.
    pub fn history(&self, image: &Image) -> Result<Vec<HistoryEntry>> {
        let mut sizes = Vec::new();
        for chain in image.chain_ids()? {
            sizes.push(self.layer(&chain)?.map_or(0, |l| l.size));
        }
        if image.config.history.is_empty() {
            return Ok(sizes
                .into_iter()
                .map(|size| HistoryEntry {
                    history: crate::History::default(),
                    size,
                })
                .collect());
        }
        let mut sizes = sizes.into_iter();
        Ok(image
            .config
            .history
            .iter()
            .map(|h| HistoryEntry {
                size: if h.empty_layer {
                    0
                } else {
                    sizes.next().unwrap_or(0)
                },
                history: h.clone(),
            })
            .collect())
    }

    /// Records that `holder` (such as `container:<id>`) uses image `id`: `rmi` refuses to
    /// delete it (or with force only untags it), and prune and GC keep it.
    pub fn hold_image(&mut self, holder: &str, id: &Digest) -> Result<()> {
        self.meta.hold(holder, id)
    }

    /// Drops `holder`'s hold on its image.
    pub fn release_image(&mut self, holder: &str) -> Result<()> {
        self.meta.release(holder)
    }

    /// The image whose ID is `id`, if the store has it (no name or prefix lookup).
    pub fn image_by_id(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        self.meta.image(id)
    }

    /// Every hold: the holder and the image it holds.
    pub fn image_holds(&self) -> Result<Vec<(String, Digest)>> {
        self.meta.holds()
    }

    /// Takes the store-wide lock that keeps the collector away while content is added.
    pub(crate) fn lock_writer(&self) -> Result<crate::lock::LockGuard> {
        self.locks.lock_shared(GC_LOCK)
    }
}

/// Holders (`build-cache:<key>`) that keep an image as a cache: they do not stop `rmi`.
pub const CACHE_HOLDER_PREFIX: &str = "build-cache:";

/// "container 0123456789ab" for a `container:<id>` holder, as Docker names it.
fn describe_holder(holder: &str) -> String {
    match holder.split_once(':') {
        Some((kind, id)) => format!("{kind} {}", &id[..id.len().min(12)]),
        None => holder.to_string(),
    }
}
