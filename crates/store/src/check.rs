//! `system check`: verifies the store's invariants, the way `containers/storage`'s Check
//! does, so that after a crash (or a suspicion) a user can know the store is sound.

use berth_reference::Digest;

use crate::{
    Store,
    error::Result,
    image::{chain_ids, from_oci_digest, parse_config, parse_manifest},
};

/// What a check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Blobs whose content was re-hashed.
    pub blobs: usize,
    /// Images whose documents and layers were followed.
    pub images: usize,
    /// Unpacked layers present.
    pub layers: usize,
    /// Broken invariants, one sentence each. Empty means the store is sound.
    pub problems: Vec<String>,
    /// Leftovers of interrupted writes that the next collection removes (not problems).
    pub debris: usize,
}

impl Store {
    /// Re-hashes every blob and follows every image to its manifest, config and layers.
    pub fn check(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        for blob in self.blobs.list()? {
            report.blobs += 1;
            match self.blobs.verify(&blob) {
                Ok(true) => {}
                Ok(false) => report
                    .problems
                    .push(format!("blob {blob} does not hash to its name")),
                Err(e) => report.problems.push(format!("blob {blob}: {e}")),
            }
        }
        for (id, manifest_digest) in self.meta.manifests()? {
            report.images += 1;
            if let Err(problem) = self.check_image(&id, &manifest_digest) {
                report.problems.push(format!("image {id}: {problem}"));
            }
        }
        report.layers = self.layers.list()?.len();
        report.debris = self.debris()?;
        Ok(report)
    }

    fn check_image(&self, id: &Digest, manifest_digest: &Digest) -> Result<(), String> {
        let data = self
            .blobs
            .read(manifest_digest)
            .map_err(|e| e.to_string())?;
        let manifest = parse_manifest(manifest_digest, &data).map_err(|e| e.to_string())?;
        let named = from_oci_digest(manifest.config().digest()).map_err(|e| e.to_string())?;
        if &named != id {
            return Err(format!("its manifest names config {named}"));
        }
        let config_data = self.blobs.read(id).map_err(|e| e.to_string())?;
        let config = parse_config(id, &config_data).map_err(|e| e.to_string())?;
        if config.rootfs.diff_ids.len() != manifest.layers().len() {
            return Err("config and manifest list different numbers of layers".into());
        }
        for layer in manifest.layers() {
            let d = from_oci_digest(layer.digest()).map_err(|e| e.to_string())?;
            if !self.blobs.contains(&d) {
                return Err(format!("layer blob {d} is missing"));
            }
        }
        for (chain, diff_id) in chain_ids(&config)
            .map_err(|e| e.to_string())?
            .iter()
            .zip(&config.rootfs.diff_ids)
        {
            match self.layers.get(chain) {
                Ok(Some(info)) if info.diff_id.as_str() == diff_id => {}
                Ok(Some(info)) => {
                    return Err(format!("layer {chain} records diff ID {}", info.diff_id));
                }
                Ok(None) => return Err(format!("layer {chain} is not unpacked")),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    /// Counts `ingest/` files and `layers/.tmp-*` directories.
    fn debris(&self) -> Result<usize> {
        let ingest = std::fs::read_dir(self.root.join("ingest"))
            .map(|d| d.count())
            .unwrap_or(0);
        let tmp = std::fs::read_dir(self.layers.dir())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
                    .count()
            })
            .unwrap_or(0);
        Ok(ingest + tmp)
    }
}
