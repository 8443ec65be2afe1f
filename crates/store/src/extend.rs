//! `extend`: one build step's image, its parent (or nothing, for `FROM scratch`) plus an
//! optional layer, with the config the step leaves and one history entry. The builder
//! registers one per instruction; they are its cache, hidden from `images` by their parent
//! (see [`ImageRecord::parent`]) until a build names one as its result.

use std::io::{BufWriter, Read};

use berth_reference::{Digest, Reference};
use oci_spec::image::MediaType;

use crate::{
    Store,
    config::{History, ImageConfig, RootFs, RunConfig, host_architecture},
    error::{IoContext, Result, StoreError},
    image::from_oci_digest,
    layers::Digesting,
    meta::ImageRecord,
};

/// What a build step adds to its parent.
pub struct Extension<'a> {
    /// The parent image; `None` starts from nothing (`scratch`).
    pub parent: Option<&'a Digest>,
    /// The step's layer, an uncompressed tar; `None` for a step that only changes the config
    /// (its history entry gets `empty_layer`).
    pub layer: Option<Box<dyn Read + Send + 'a>>,
    /// The container defaults after the step.
    pub config: RunConfig,
    /// History entries to append, in order: the metadata-only instructions since the
    /// parent (`empty_layer` set), then the step's own (`empty_layer` unset when it has a
    /// layer).
    pub history: Vec<History>,
    /// The image's author (`MAINTAINER`); the parent's when `None`.
    pub author: Option<String>,
    /// When the step ran (RFC 3339): the config's time.
    pub created: String,
}

/// How an assembled image is registered.
pub(crate) struct Registration {
    /// A build's intermediate image (hidden from `images`).
    pub(crate) intermediate: bool,
    /// Tags for it.
    pub(crate) tags: Vec<Reference>,
    /// Extra config fields (`container`, `comment` of a commit).
    pub(crate) extra: serde_json::Map<String, serde_json::Value>,
    /// Where the layer came from, for messages.
    pub(crate) layer_label: &'static str,
}

impl Registration {
    fn intermediate() -> Registration {
        Registration {
            intermediate: true,
            tags: Vec::new(),
            extra: Default::default(),
            layer_label: "from a build step",
        }
    }
}

impl Store {
    /// Registers the image `ext` describes, untagged and marked as an intermediate image of a
    /// build (its parent recorded). On failure, what was added is collected again.
    pub fn extend(&mut self, ext: Extension<'_>) -> Result<ImageRecord> {
        let result = self.assemble(ext, &Registration::intermediate());
        self.clean_after_failure(&result);
        result
    }

    /// Writes the layer, config and manifest `ext` describes and registers the image as
    /// `how` says (shared by `extend` and `commit`).
    pub(crate) fn assemble(
        &mut self,
        ext: Extension<'_>,
        how: &Registration,
    ) -> Result<ImageRecord> {
        // Held from the first blob to the registration: the collector cannot take the
        // parent's layers (or ours) away meanwhile.
        let _writer = self.lock_writer()?;
        let (base, mut layers, parent_chain) = match ext.parent {
            Some(id) => {
                let record = self
                    .meta
                    .image(id)?
                    .ok_or_else(|| StoreError::ImageNotFound(id.to_string()))?;
                let parent = self.image(record)?;
                let chain = parent.chain_ids()?.pop();
                let mut layers = Vec::with_capacity(parent.manifest.layers().len() + 1);
                for desc in parent.manifest.layers() {
                    layers.push((
                        from_oci_digest(desc.digest())?,
                        desc.size(),
                        desc.media_type().clone(),
                    ));
                }
                (parent.config, layers, chain)
            }
            None => (
                ImageConfig {
                    created: None,
                    author: None,
                    architecture: host_architecture().to_string(),
                    os: "linux".into(),
                    variant: None,
                    config: None,
                    rootfs: RootFs {
                        kind: "layers".into(),
                        diff_ids: Vec::new(),
                    },
                    history: Vec::new(),
                    extra: Default::default(),
                },
                Vec::new(),
                None,
            ),
        };
        let mut diff_ids = base.rootfs.diff_ids;
        if let Some(layer) = ext.layer {
            let ingest = self.blobs.ingest()?;
            let mut blob_writer = BufWriter::with_capacity(1 << 20, ingest);
            let info = self.layers.ensure_layer(
                parent_chain.as_ref(),
                None,
                how.layer_label,
                Digesting::new(layer, Some(&mut blob_writer)),
            )?;
            let ingest = blob_writer
                .into_inner()
                .map_err(|e| e.into_error())
                .ctx("write layer blob", self.root.join("ingest"))?;
            let size = ingest.written();
            let digest = ingest.commit(Some(&info.diff_id))?;
            diff_ids.push(info.diff_id.to_string());
            layers.push((digest, size, MediaType::ImageLayer));
        }
        let mut history = base.history;
        history.extend(ext.history);
        // The platform fields of the base carry over (Docker keeps `os.version` and
        // `os.features`); its other extra fields describe how the base was made.
        let mut extra = serde_json::Map::new();
        for key in ["os.version", "os.features"] {
            if let Some(v) = base.extra.get(key) {
                extra.insert(key.into(), v.clone());
            }
        }
        extra.extend(how.extra.clone());
        let config = ImageConfig {
            created: Some(ext.created),
            author: ext.author.or(base.author),
            architecture: base.architecture,
            os: base.os,
            variant: base.variant,
            config: Some(ext.config),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids,
            },
            history,
            extra,
        };
        let config_bytes = serde_json::to_vec(&config).expect("config serializes");
        let config_digest = self.blobs.put(&config_bytes)?;
        let manifest_digest =
            self.put_manifest(&config_digest, config_bytes.len() as u64, &layers)?;
        // `scratch` as a parent is recorded as the digest of nothing: what matters is that
        // an intermediate image has one. Registered with it, in one transaction.
        let parent = how.intermediate.then(|| {
            ext.parent
                .cloned()
                .unwrap_or_else(|| Digest::sha256_of(b""))
        });
        let (record, _) =
            self.register(&manifest_digest, &config_digest, &config, &how.tags, parent)?;
        Ok(record)
    }

    /// Makes an intermediate image a build's result: no longer hidden from `images`, and
    /// tagged with `tags` (tags that named other images move, as `docker build -t` does).
    pub fn promote(&mut self, id: &Digest, tags: &[Reference]) -> Result<()> {
        self.meta.set_parent(id, None)?;
        crate::crash::point("build.promoting");
        for tag in tags {
            self.meta.set_tag(tag, id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_file_tar(name: &str, body: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, body).unwrap();
        b.into_inner().unwrap()
    }

    fn step(created_by: &str, empty: bool) -> History {
        History {
            created: Some("2026-11-24T00:00:00Z".into()),
            created_by: Some(created_by.into()),
            author: None,
            comment: None,
            empty_layer: empty,
        }
    }

    #[test]
    fn steps_stack_layers_and_history_and_stay_hidden_until_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let tar = one_file_tar("hello.txt", b"hi\n");
        let first = store
            .extend(Extension {
                parent: None,
                layer: Some(Box::new(&tar[..])),
                config: RunConfig {
                    env: Some(vec!["A=1".into()]),
                    ..Default::default()
                },
                history: vec![step("COPY hello.txt / # buildkit", false)],
                author: None,
                created: "2026-11-24T00:00:00Z".into(),
            })
            .unwrap();
        assert!(first.parent.is_some(), "an intermediate image");
        let second = store
            .extend(Extension {
                parent: Some(&first.id),
                layer: None,
                config: RunConfig {
                    cmd: Some(vec!["cat".into(), "/hello.txt".into()]),
                    ..Default::default()
                },
                history: vec![step("ENV B=2", true), step("CMD [\"cat\"]", true)],
                author: Some("me".into()),
                created: "2026-11-24T00:00:01Z".into(),
            })
            .unwrap();
        let image = store.image(second.clone()).unwrap();
        assert_eq!(image.config.rootfs.diff_ids.len(), 1);
        assert_eq!(image.config.history.len(), 3);
        assert!(image.config.history[2].empty_layer);
        assert_eq!(image.config.author.as_deref(), Some("me"));
        assert_eq!(image.manifest.layers().len(), 1);
        let chain = image.chain_ids().unwrap();
        assert!(
            store.layer_dir(&chain[0]).join("hello.txt").exists(),
            "the layer is unpacked"
        );

        let tag = Reference::parse_normalized("built:1").unwrap();
        store
            .promote(&second.id, std::slice::from_ref(&tag))
            .unwrap();
        let rec = store.resolve("built:1").unwrap();
        assert_eq!(rec.id, second.id);
        assert_eq!(rec.parent, None);
    }
}
