//! `pull`: a reference -> its manifest (through an index, for this platform) -> the config
//! and the layers, fetched concurrently into the store (verified while they stream, unpacked
//! as they arrive) -> one registration with the tag and the repository digest.

use std::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use berth_reference::{Digest, Reference};
use berth_store::{ImageConfig, Incoming, Store, chain_id};
use oci_spec::image::{ImageIndex, ImageManifest};

use crate::{
    Registries,
    client::{Access, FetchedManifest, MAX_CONFIG, Repository},
    config::RegistryConfig,
    error::{DistributionError, Result},
    platform::Platform,
    progress::{LayerState, Progress},
};

/// Layers fetched at once (Docker's `max-concurrent-downloads` default).
const CONCURRENT_DOWNLOADS: usize = 3;

/// How to pull.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to pick from an index; `None` is this host's, and then an image for
    /// another platform is pulled with a warning rather than refused.
    pub platform: Option<Platform>,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The reference pulled (with its tag or digest).
    pub reference: Reference,
    /// The image ID.
    pub id: Digest,
    /// The repository digest: the index's when the tag named one, else the manifest's.
    pub digest: Digest,
    /// Whether the reference names another image than before (Docker's "Downloaded newer
    /// image"; "Image is up to date" otherwise).
    pub new: bool,
}

/// Docker's last line of a pull: `Status: Downloaded newer image for WHAT` when the name now
/// points at another image, `Status: Image is up to date for WHAT` otherwise.
pub fn pull_status(new: bool, what: &str) -> String {
    if new {
        format!("Status: Downloaded newer image for {what}")
    } else {
        format!("Status: Image is up to date for {what}")
    }
}

/// A manifest that names an index or manifest list.
fn is_index(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.index.v1+json"
        || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
}

fn digest_of(d: &oci_spec::image::Digest) -> Result<Digest> {
    Digest::parse(d.as_ref()).map_err(|e| DistributionError::bad(format!("digest {d}"), e))
}

impl Registries {
    /// Pulls `reference` (tag or digest) into the store.
    pub fn pull(
        &self,
        store: &mut Store,
        reference: &Reference,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Pulled> {
        // Docker's status says whether the name moved: "Downloaded newer image" unless it
        // named this very image before.
        let before = store.resolve(&reference.to_string()).ok().map(|r| r.id);
        let repo = self.open(reference.domain(), reference.path(), Access::Pull, &[])?;
        let pulled = match self.pull_from(&repo, store, reference, opts, progress, before.as_ref())
        {
            // A mirror that fails after answering (it lacks the image, or serves it badly)
            // leaves the registry itself to try, as Docker does.
            Err(e) if repo.is_mirror() && !is_local(&e) => {
                tracing::warn!(mirror = repo.base(), error = %e, "pull from the mirror failed; trying the registry");
                let direct = RegistryConfig {
                    mirrors: Vec::new(),
                    ..self.config.clone()
                };
                let credential = self.credential(reference.domain())?;
                let repo = Repository::open(
                    &direct,
                    reference.domain(),
                    reference.path(),
                    Access::Pull,
                    &[],
                    credential,
                )?;
                self.pull_from(&repo, store, reference, opts, progress, before.as_ref())
            }
            other => other,
        }?;
        store.image_event(
            "pull",
            &reference.familiar_string(),
            &reference.familiar_name(),
        );
        Ok(pulled)
    }

    /// A pull from one endpoint.
    fn pull_from(
        &self,
        repo: &Repository,
        store: &mut Store,
        reference: &Reference,
        opts: &PullOptions,
        progress: &dyn Progress,
        before: Option<&Digest>,
    ) -> Result<Pulled> {
        let familiar = reference.familiar_string();
        let wanted = match reference.digest() {
            Some(d) => d.to_string(),
            None => reference.tag().unwrap_or("latest").to_string(),
        };
        let top = repo.get_manifest(&wanted, &familiar).map_err(|e| match e {
            DistributionError::Unauthorized { detail, .. }
            | DistributionError::Denied { detail, .. } => DistributionError::PullAccessDenied {
                repository: reference.without_tag_or_digest().familiar_name(),
                detail: detail
                    .split("; log in with")
                    .next()
                    .unwrap_or(&detail)
                    .to_string(),
            },
            e => e,
        })?;
        progress.message(&format!("{wanted}: Pulling from {}", reference.path()));
        let repo_digest = top.digest.clone();
        let manifest = if is_index(&top.media_type) {
            let platform = opts.platform.clone().unwrap_or_else(Platform::host);
            let child = choose_platform(&top, &platform)?;
            repo.get_manifest(child.as_str(), &familiar)?
        } else {
            top
        };
        let parsed = ImageManifest::from_reader(&manifest.bytes[..])
            .map_err(|e| DistributionError::bad(format!("manifest {}", manifest.digest), e))?;
        let config_digest = digest_of(parsed.config().digest())?;
        let tags: Vec<Reference> = if reference.digest().is_none() {
            vec![reference.clone()]
        } else {
            Vec::new()
        };
        let repo_ref = reference
            .without_tag_or_digest()
            .with_digest(repo_digest.clone());

        // Docker's "Image is up to date": the image (its config) is here already.
        if store.adopt_present(&config_digest, &tags, &repo_ref)? {
            return Ok(Pulled {
                reference: reference.clone(),
                new: before != Some(&config_digest),
                id: config_digest,
                digest: repo_digest,
            });
        }

        let incoming = store.incoming()?;
        let config_bytes = repo.get_small_blob(
            &config_digest,
            parsed.config().size(),
            MAX_CONFIG,
            &format!("config {config_digest}"),
        )?;
        let config = ImageConfig::from_slice(&config_bytes)
            .map_err(|e| DistributionError::bad(format!("config {config_digest}"), e))?;
        check_platform(&config, opts.platform.as_ref(), &familiar)?;
        if config.rootfs.diff_ids.len() != parsed.layers().len() {
            return Err(DistributionError::bad(
                format!("manifest {}", manifest.digest),
                format!(
                    "{} layers, but its config lists {} diff IDs",
                    parsed.layers().len(),
                    config.rootfs.diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::with_capacity(parsed.layers().len());
        let mut parent: Option<Digest> = None;
        for (desc, diff_id) in parsed.layers().iter().zip(&config.rootfs.diff_ids) {
            let blob = digest_of(desc.digest())?;
            berth_store::check_layer_media_type(desc)?;
            let diff_id = Digest::parse(diff_id)
                .map_err(|e| DistributionError::bad(format!("config {config_digest}"), e))?;
            let chain = chain_id(parent.as_ref(), &diff_id);
            layers.push(LayerJob {
                blob,
                size: desc.size(),
                diff_id,
                parent: parent.clone(),
                chain: chain.clone(),
            });
            parent = Some(chain);
        }
        fetch_layers(repo, &incoming, &layers, progress)?;
        incoming.put_document(&config_digest, &config_bytes)?;
        incoming.put_document(&manifest.digest, &manifest.bytes)?;
        let (record, _) =
            store.register_incoming(incoming, &manifest.digest, &tags, &[repo_ref])?;
        Ok(Pulled {
            reference: reference.clone(),
            new: before != Some(&record.id),
            id: record.id,
            digest: repo_digest,
        })
    }

    /// Every tag of a repository (`pull -a`).
    pub fn list_tags(&self, reference: &Reference) -> Result<Vec<String>> {
        self.open(reference.domain(), reference.path(), Access::Pull, &[])?
            .tags()
    }
}

/// Whether an error is this machine's (the store, the user's input), not the endpoint's.
fn is_local(e: &DistributionError) -> bool {
    matches!(
        e,
        DistributionError::Usage(_)
            | DistributionError::Store(_)
            | DistributionError::Credentials(_)
            | DistributionError::NoMatchingPlatform { .. }
    )
}

/// One layer to fetch.
struct LayerJob {
    blob: Digest,
    size: u64,
    diff_id: Digest,
    parent: Option<Digest>,
    chain: Digest,
}

/// Fetches and unpacks layers, [`CONCURRENT_DOWNLOADS`] at a time, each independently (a
/// layer's place in the chain is known from the config, so none waits for another). The
/// first error stops the workers from starting more.
fn fetch_layers(
    repo: &Repository,
    incoming: &Incoming,
    layers: &[LayerJob],
    progress: &dyn Progress,
) -> Result<()> {
    for l in layers {
        if incoming.has_blob(&l.blob) && incoming.has_layer(&l.chain)? {
            progress.layer(&l.blob, LayerState::AlreadyExists);
        } else {
            progress.layer(&l.blob, LayerState::PullingFsLayer);
        }
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..CONCURRENT_DOWNLOADS.min(layers.len()) {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = layers.get(i) else { break };
                    if let Err(e) = fetch_layer(repo, incoming, job, progress) {
                        failed.store(true, Ordering::Relaxed);
                        first_error.lock().expect("error slot").get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_error.into_inner().expect("error slot") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn fetch_layer(
    repo: &Repository,
    incoming: &Incoming,
    job: &LayerJob,
    progress: &dyn Progress,
) -> Result<()> {
    let have_blob = incoming.has_blob(&job.blob);
    if have_blob && incoming.has_layer(&job.chain)? {
        return Ok(());
    }
    if have_blob {
        incoming.unpack_stored(&job.blob, &job.diff_id, job.parent.as_ref())?;
        progress.layer(&job.blob, LayerState::PullComplete);
        return Ok(());
    }
    let total = job.size;
    let mut last_report = 0u64;
    let mut reader = repo.blob_reader(&job.blob, Some(total), |done| {
        // A state per megabyte is plenty for a bar.
        if done - last_report >= 1 << 20 || done == total {
            last_report = done;
            progress.layer(
                &job.blob,
                LayerState::Downloading {
                    done,
                    total: Some(total),
                },
            );
        }
    })?;
    incoming
        .put_layer(&job.blob, &job.diff_id, job.parent.as_ref(), &mut reader)
        .map_err(|e| match e {
            berth_store::StoreError::DigestMismatch { expected, actual } => {
                DistributionError::DigestMismatch {
                    what: format!("layer {}", job.blob),
                    expected,
                    actual,
                }
            }
            e => e.into(),
        })?;
    progress.layer(&job.blob, LayerState::VerifyingChecksum);
    progress.layer(&job.blob, LayerState::DownloadComplete);
    progress.layer(&job.blob, LayerState::PullComplete);
    Ok(())
}

/// Picks the manifest for `platform` from an index.
fn choose_platform(index: &FetchedManifest, platform: &Platform) -> Result<Digest> {
    let parsed = ImageIndex::from_reader(&index.bytes[..])
        .map_err(|e| DistributionError::bad(format!("index {}", index.digest), e))?;
    let chosen = parsed.manifests().iter().find(|m| {
        m.platform().as_ref().is_some_and(|p| {
            platform.matches(
                &p.os().to_string(),
                &p.architecture().to_string(),
                p.variant().as_deref(),
            )
        })
    });
    match chosen {
        Some(m) => digest_of(m.digest()),
        None => Err(DistributionError::NoMatchingPlatform {
            platform: platform.to_string(),
        }),
    }
}

/// An image for another platform: refused when `--platform` asked for one, a warning
/// otherwise (as Docker).
fn check_platform(config: &ImageConfig, asked: Option<&Platform>, familiar: &str) -> Result<()> {
    let wanted = asked.cloned().unwrap_or_else(Platform::host);
    if wanted.matches(&config.os, &config.architecture, config.variant.as_deref()) {
        return Ok(());
    }
    let actual = format!("{}/{}", config.os, config.architecture);
    if asked.is_some() {
        return Err(DistributionError::Usage(format!(
            "image with reference {familiar} was found but does not match the specified platform: wanted {wanted}, actual: {actual}"
        )));
    }
    tracing::warn!(
        "the requested image's platform ({actual}) does not match the detected host platform ({wanted})"
    );
    Ok(())
}
