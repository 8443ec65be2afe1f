//! `import`: a root filesystem tarball becomes a one-layer image.

use std::io::{BufReader, BufWriter, Read};

use berth_reference::{Digest, Reference};
use oci_spec::image::{DescriptorBuilder, ImageManifestBuilder, MediaType};

use crate::{
    Store,
    compression::decompress,
    config::{History, ImageConfig, RootFs, RunConfig, host_architecture},
    error::{IoContext, Result, StoreError},
    image::oci_digest,
    layers::Digesting,
    meta::ImageRecord,
};

/// How to make the image.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Container defaults (from `--change`).
    pub config: RunConfig,
    /// `-m`: the commit message, kept as the config's and history's comment.
    pub message: Option<String>,
    /// Where the tarball came from, for the history ("Imported from -").
    pub source: String,
    /// Tag to give the image.
    pub tag: Option<Reference>,
    /// `--platform` architecture, else the host's.
    pub architecture: Option<String>,
}

/// Size of the buffers between the input, the blob file and the unpacker.
const IO_BUF: usize = 1 << 20;

impl Store {
    /// Imports a root filesystem tarball (plain, gzip or zstd) as a new image.
    pub fn import(&mut self, input: impl Read + Send, opts: ImportOptions) -> Result<ImageRecord> {
        let result = self.import_locked(input, opts);
        self.clean_after_failure(&result);
        if let Ok(rec) = &result {
            let name = rec
                .tags
                .first()
                .map_or_else(|| rec.id.to_string(), |t| t.familiar_string());
            self.image_event("import", rec.id.as_str(), &name);
        }
        result
    }

    fn import_locked(
        &mut self,
        input: impl Read + Send,
        opts: ImportOptions,
    ) -> Result<ImageRecord> {
        let _writer = self.lock_writer()?;
        let (_, tar) = decompress(BufReader::with_capacity(IO_BUF, input))?;
        let ingest = self.blobs.ingest()?;
        let mut blob_writer = BufWriter::with_capacity(IO_BUF, ingest);
        let info = self.layers.ensure_layer(
            None,
            None,
            "from the tarball",
            Digesting::new(tar, Some(&mut blob_writer)),
        )?;
        let ingest = blob_writer
            .into_inner()
            .map_err(|e| e.into_error())
            .ctx("write layer blob", self.root.join("ingest"))?;
        let layer_size = ingest.written();
        let layer_digest = ingest.commit(Some(&info.diff_id))?;

        let now = jiff::Timestamp::now().to_string();
        let mut extra = serde_json::Map::new();
        if let Some(m) = &opts.message {
            extra.insert("comment".into(), m.clone().into());
        }
        let config = ImageConfig {
            created: Some(now.clone()),
            author: None,
            architecture: opts
                .architecture
                .clone()
                .unwrap_or_else(|| host_architecture().to_string()),
            os: "linux".into(),
            variant: None,
            config: Some(opts.config.clone()),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![info.diff_id.to_string()],
            },
            history: vec![History {
                created: Some(now),
                created_by: None,
                author: None,
                comment: Some(
                    opts.message
                        .clone()
                        .unwrap_or_else(|| format!("Imported from {}", opts.source)),
                ),
                empty_layer: false,
            }],
            extra,
        };
        let config_bytes = serde_json::to_vec(&config).expect("config serializes");
        let config_digest = self.blobs.put(&config_bytes)?;
        let manifest_digest = self.put_manifest(
            &config_digest,
            config_bytes.len() as u64,
            &[(layer_digest, layer_size, MediaType::ImageLayer)],
        )?;
        let tags: Vec<Reference> = opts.tag.into_iter().collect();
        // docker import says nothing when its tag moves from another image.
        Ok(self
            .register(&manifest_digest, &config_digest, &config, &tags, None)?
            .0)
    }

    /// Writes an OCI image manifest for a config and its layers, returning its digest.
    pub(crate) fn put_manifest(
        &self,
        config: &Digest,
        config_size: u64,
        layers: &[(Digest, u64, MediaType)],
    ) -> Result<Digest> {
        self.blobs
            .put(&manifest_bytes(config, config_size, layers)?)
    }
}

/// Serializes an OCI image manifest for a config and its layers.
pub(crate) fn manifest_bytes(
    config: &Digest,
    config_size: u64,
    layers: &[(Digest, u64, MediaType)],
) -> Result<Vec<u8>> {
    let build = || -> std::result::Result<Vec<u8>, oci_spec::OciSpecError> {
        let config = DescriptorBuilder::default()
            .media_type(MediaType::ImageConfig)
            .digest(oci_digest(config))
            .size(config_size)
            .build()?;
        let layers = layers
            .iter()
            .map(|(d, size, mt)| {
                DescriptorBuilder::default()
                    .media_type(mt.clone())
                    .digest(oci_digest(d))
                    .size(*size)
                    .build()
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config)
            .layers(layers)
            .build()?;
        Ok(manifest.to_string()?.into_bytes())
    };
    build().map_err(|e| StoreError::corrupt("new manifest", e))
}
