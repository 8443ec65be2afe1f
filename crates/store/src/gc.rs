//! Garbage collection: whatever no image reaches is swept.
//!
//! Roots are the images in `meta.db` (and, once containers exist, the layers they use).
//! Writers hold the `gc` lock shared from their first blob to their registration, and the
//! sweep holds it exclusively, so content that is being added is never collected.

use std::collections::HashSet;

use berth_reference::Digest;

use crate::{
    GC_LOCK, Store,
    error::Result,
    image::{chain_ids, from_oci_digest, parse_config, parse_manifest},
};

/// What a collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs_removed: Vec<Digest>,
    /// Unpacked layers deleted (chain IDs).
    pub layers_removed: Vec<Digest>,
    /// Bytes freed (blob sizes plus unpacked layer sizes).
    pub reclaimed: u64,
}

/// What `image prune` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Tags removed (familiar form) and images deleted, in Docker's order.
    pub events: Vec<crate::RemoveEvent>,
    /// Bytes freed.
    pub reclaimed: u64,
}

impl Store {
    /// Runs a collection, waiting for in-flight writers to finish.
    pub fn gc(&mut self) -> Result<GcReport> {
        let _guard = self.locks.lock_exclusive(GC_LOCK)?;
        self.sweep()
    }

    /// Runs a collection only if no writer is busy right now.
    pub(crate) fn try_gc(&mut self) -> Result<Option<GcReport>> {
        match self.locks.try_lock_exclusive(GC_LOCK)? {
            Some(_guard) => self.sweep().map(Some),
            None => Ok(None),
        }
    }

    /// Collects after a removal if no writer is busy, returning the layers removed. The
    /// removal already happened, so a failed collection is only worth a warning; the next
    /// one retries.
    pub(crate) fn collect_quietly(&mut self) -> Vec<Digest> {
        match self.try_gc() {
            Ok(report) => report.map(|r| r.layers_removed).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "garbage collection after removal failed");
                Vec::new()
            }
        }
    }

    /// After a failed import or load, removes the blobs and layers it had already added, so
    /// that bad input leaves the store as it was. Skipped while another writer is busy
    /// (its content is indistinguishable from ours); the next collection gets it then.
    pub(crate) fn clean_after_failure<T>(&mut self, result: &Result<T>) {
        if result.is_err() {
            self.collect_quietly();
        }
    }

    fn sweep(&mut self) -> Result<GcReport> {
        let mut live_blobs = HashSet::new();
        let mut live_layers = HashSet::new();
        for (id, manifest_digest) in self.meta.manifests()? {
            live_blobs.insert(id.clone());
            live_blobs.insert(manifest_digest.clone());
            // A root's documents must be read to know what it keeps alive; if one cannot be
            // read (other than being gone already), sweeping would be a guess, so stop.
            if let Some(data) = read_root(&self.blobs, &manifest_digest)? {
                let manifest = parse_manifest(&manifest_digest, &data)?;
                for layer in manifest.layers() {
                    live_blobs.insert(from_oci_digest(layer.digest())?);
                }
            }
            if let Some(data) = read_root(&self.blobs, &id)? {
                live_layers.extend(chain_ids(&parse_config(&id, &data)?)?);
            }
        }
        let mut report = GcReport::default();
        for chain in self.layers.list()? {
            if !live_layers.contains(&chain) {
                if let Some(info) = self.layers.get(&chain)? {
                    report.reclaimed += info.size;
                }
                self.layers.remove(&chain)?;
                crate::crash::point("gc.layer-removed");
                report.layers_removed.push(chain);
            }
        }
        for blob in self.blobs.list()? {
            if !live_blobs.contains(&blob) {
                report.reclaimed += self.blobs.size(&blob).unwrap_or(0);
                self.blobs.remove(&blob)?;
                crate::crash::point("gc.blob-removed");
                report.blobs_removed.push(blob);
            }
        }
        self.blobs.clean_ingest()?;
        self.layers.clean_tmp()?;
        tracing::debug!(
            blobs = report.blobs_removed.len(),
            layers = report.layers_removed.len(),
            "garbage collected"
        );
        Ok(report)
    }

    /// `image prune`: removes dangling images (no tag), or with `all` every image (images that containers use stay), then collects. `only`, when given, limits the candidates
    /// (the caller's `--filter`).
    pub fn prune_images(
        &mut self,
        all: bool,
        only: Option<&HashSet<Digest>>,
    ) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let held: HashSet<Digest> = self.meta.holds()?.into_iter().map(|(_, i)| i).collect();
        for rec in self.meta.images()? {
            if (!all && !rec.tags.is_empty()) || held.contains(&rec.id) {
                continue;
            }
            if only.is_some_and(|o| !o.contains(&rec.id)) {
                continue;
            }
            for t in rec.tags.iter().chain(&rec.repo_digests) {
                self.meta.remove_tag(t)?;
                report
                    .events
                    .push(crate::RemoveEvent::Untagged(t.familiar_string()));
            }
            if self.meta.remove_image_if_untagged(&rec.id)? {
                report
                    .events
                    .push(crate::RemoveEvent::Deleted(rec.id.clone()));
            }
        }
        let gc = self.gc()?;
        report.reclaimed = gc.reclaimed;
        report.events.extend(
            gc.layers_removed
                .into_iter()
                .map(crate::RemoveEvent::Deleted),
        );
        Ok(report)
    }
}

/// The filters `image prune` takes (`dangling=false` prunes every unused image, as the docker
/// CLI sends `-a`).
pub const IMAGE_PRUNE_FILTERS: &[&str] = &["dangling", "until", "label", "label!"];

impl Store {
    /// `image prune` under Docker's filters: dangling images, or with `dangling=false` every
    /// image no container uses, limited by `until=`, `label=` and `label!=`.
    pub fn prune_images_matching(&mut self, filters: &crate::Filters) -> Result<PruneReport> {
        let all = filters.bool("dangling")? == Some(false);
        let until = filters.until()?;
        let by_label = !filters.get("label").is_empty() || !filters.get("label!").is_empty();
        if until.is_none() && !by_label {
            return self.prune_images(all, None);
        }
        let mut only = HashSet::new();
        for rec in self.images()? {
            // An image without a creation time counts as older than any bound (Go's zero
            // time), as dockerd's prune reads it.
            if until.is_some_and(|u| rec.created_at().is_some_and(|c| c >= u)) {
                continue;
            }
            if by_label {
                let image = self.image(rec.clone())?;
                let labels = image.config.config.and_then(|c| c.labels);
                if !filters.labels_match(labels.as_ref()) {
                    continue;
                }
            }
            only.insert(rec.id);
        }
        self.prune_images(all, Some(&only))
    }
}

/// Reads a root's document; `None` if it is gone (nothing to keep for it).
fn read_root(blobs: &crate::BlobStore, digest: &Digest) -> Result<Option<Vec<u8>>> {
    match blobs.read(digest) {
        Ok(data) => Ok(Some(data)),
        Err(crate::StoreError::BlobNotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
