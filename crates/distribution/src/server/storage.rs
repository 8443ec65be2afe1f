//! The registry's storage: plain files under one root, published by rename.
//!
//! ```text
//! blobs/sha256/<hex>                                  content, stored once for all repositories
//! repositories/<name>/_layers/sha256/<hex>            empty: the repository holds this blob
//! repositories/<name>/_manifests/revisions/sha256/<hex>   the manifest's media type
//! repositories/<name>/_manifests/tags/<tag>           the tagged manifest's digest
//! repositories/<name>/_referrers/<subject-hex>/<hex>  empty: manifest <hex> refers to <subject>
//! uploads/<id>/{repo,data}                            uploads in progress
//! tmp/                                                files being written
//! lock                                                flock: writable servers shared, gc exclusive
//! ```
//!
//! Repository names are validated by the spec's grammar before they become paths, so a name
//! never holds `..`, an empty component or a component starting with `_`: the `_`-directories
//! cannot collide with a nested repository. Every file that holds content is written in
//! `tmp/`, fsynced and renamed into place; a link is created only after what it points to
//! exists. So a crash loses at most the request in flight, and `gc` (which runs only while no
//! writable server does) never sees a half-written manifest.
//!
//! Calls here are blocking; the HTTP layer runs them on tokio's blocking pool.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_reference::{Digest, is_valid_repository_path, is_valid_tag};
use serde::Deserialize;

use super::error::{ApiError, ApiResult, Code};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// The largest manifest accepted: the spec asks registries to take at least 4 MiB.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// A validated repository name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoName(String);

impl RepoName {
    pub fn parse(name: &str) -> ApiResult<RepoName> {
        if is_valid_repository_path(name) {
            Ok(RepoName(name.to_owned()))
        } else {
            Err(ApiError::new(
                Code::NameInvalid,
                format!("invalid repository name {name:?}"),
            )
            .with_detail(serde_json::json!({ "name": name })))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A manifest reference from a URL: a tag or a digest.
#[derive(Debug, Clone)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

impl ManifestRef {
    pub fn parse(s: &str) -> ApiResult<ManifestRef> {
        if s.contains(':') {
            parse_digest(s).map(ManifestRef::Digest)
        } else if is_valid_tag(s) {
            Ok(ManifestRef::Tag(s.to_owned()))
        } else {
            Err(ApiError::new(
                Code::ManifestInvalid,
                format!("invalid tag {s:?}"),
            ))
        }
    }
}

/// Parses a digest from a request; the server stores sha256 content only.
pub fn parse_digest(s: &str) -> ApiResult<Digest> {
    match Digest::parse(s) {
        Ok(d) if d.algorithm() == "sha256" => Ok(d),
        Ok(_) => Err(ApiError::new(
            Code::DigestInvalid,
            format!("unsupported digest algorithm in {s:?}: this registry stores sha256"),
        )),
        Err(e) => Err(ApiError::new(
            Code::DigestInvalid,
            format!("invalid digest {s:?}: {e}"),
        )),
    }
}

/// An upload ID: 32 lowercase hex characters, so it is a safe file name.
pub fn is_upload_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a manifest PUT stored.
#[derive(Debug)]
pub struct StoredManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

/// A manifest read back.
pub struct ManifestContent {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// The fields of a manifest or index that the registry looks at.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<DescriptorDoc>,
    layers: Option<Vec<DescriptorDoc>>,
    manifests: Option<Vec<DescriptorDoc>>,
    subject: Option<DescriptorDoc>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorDoc {
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    urls: Option<Vec<String>>,
}

impl DescriptorDoc {
    /// Whether the descriptor names a manifest or an index (an untyped one is taken as one).
    fn is_manifest(&self) -> bool {
        self.media_type.as_deref().is_none_or(|t| {
            [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&t)
                || DOCKER_SCHEMA1.contains(&t)
        })
    }
}

impl ManifestDoc {
    fn parse(bytes: &[u8]) -> ApiResult<ManifestDoc> {
        serde_json::from_slice(bytes).map_err(|e| {
            ApiError::new(Code::ManifestInvalid, format!("manifest is not valid: {e}"))
        })
    }

    fn is_index(&self, media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_LIST
    }

    /// Every blob digest a manifest (not an index) needs: config and layers, except foreign
    /// layers that name their own URLs.
    fn blob_refs(&self) -> impl Iterator<Item = &DescriptorDoc> {
        self.config.iter().chain(
            self.layers
                .iter()
                .flatten()
                .filter(|l| l.urls.as_ref().is_none_or(|u| u.is_empty())),
        )
    }
}

/// Strips parameters from a Content-Type.
fn bare_media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// The manifest's media type, from the request's Content-Type and the document, which must
/// agree when both name one.
fn manifest_media_type(content_type: Option<&str>, doc: &ManifestDoc) -> ApiResult<String> {
    const KNOWN: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];
    let header = content_type
        .map(bare_media_type)
        .filter(|t| !t.is_empty() && *t != "application/json" && *t != "application/octet-stream");
    let body = doc.media_type.as_deref();
    let chosen = match (header, body) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::new(
                Code::ManifestInvalid,
                format!("mediaType {b:?} in the manifest does not match Content-Type {h:?}"),
            ));
        }
        (Some(h), _) => h.to_owned(),
        (None, Some(b)) => b.to_owned(),
        (None, None) if doc.manifests.is_some() => OCI_INDEX.to_owned(),
        (None, None) => OCI_MANIFEST.to_owned(),
    };
    if DOCKER_SCHEMA1.contains(&chosen.as_str()) {
        return Err(ApiError::new(
            Code::ManifestInvalid,
            "Docker schema 1 manifests are not supported",
        ));
    }
    if !KNOWN.contains(&chosen.as_str()) {
        return Err(ApiError::new(
            Code::ManifestInvalid,
            format!("unsupported manifest media type {chosen:?}"),
        ));
    }
    if doc.schema_version != Some(2) {
        return Err(ApiError::new(
            Code::ManifestInvalid,
            "manifest schemaVersion must be 2",
        ));
    }
    let is_index = chosen == OCI_INDEX || chosen == DOCKER_LIST;
    if is_index && doc.manifests.is_none() {
        return Err(ApiError::new(
            Code::ManifestInvalid,
            "an index needs a \"manifests\" list",
        ));
    }
    if !is_index && (doc.config.is_none() || doc.layers.is_none()) {
        return Err(ApiError::new(
            Code::ManifestInvalid,
            "an image manifest needs \"config\" and \"layers\"",
        ));
    }
    Ok(chosen)
}

/// The manifest checks of a PUT, without storage: parse, then the media type under each
/// Content-Type a client might send.
#[doc(hidden)]
pub fn parse_manifest_for_fuzzing(bytes: &[u8]) -> ApiResult<()> {
    let doc = ManifestDoc::parse(bytes)?;
    for content_type in [
        None,
        Some(OCI_MANIFEST),
        Some(DOCKER_LIST),
        Some("text/plain; x=y"),
    ] {
        if let Ok(media_type) = manifest_media_type(content_type, &doc) {
            let _ = doc.is_index(&media_type);
            for blob in doc.blob_refs() {
                let _ = parse_digest(&blob.digest);
            }
        }
    }
    Ok(())
}

pub struct Storage {
    root: PathBuf,
}

impl Storage {
    /// Opens (creating) a registry root.
    pub fn open(root: &Path) -> io::Result<Storage> {
        for dir in ["blobs/sha256", "repositories", "uploads", "tmp"] {
            fs::create_dir_all(root.join(dir))?;
        }
        Ok(Storage {
            root: root.to_owned(),
        })
    }

    /// Opens a registry root that must exist already (maintenance commands: a mistyped path
    /// is an error, not an empty registry).
    pub fn open_existing(root: &Path) -> io::Result<Storage> {
        if !root.join("blobs").is_dir() || !root.join("repositories").is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not a registry root (no blobs/ and repositories/ in it)",
            ));
        }
        Storage::open(root)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The lock file: writable servers hold it shared, `gc` exclusively.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.encoded())
    }

    fn repo_dir(&self, repo: &RepoName) -> PathBuf {
        self.root.join("repositories").join(repo.as_str())
    }

    fn layer_link(&self, repo: &RepoName, digest: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_layers/sha256")
            .join(digest.encoded())
    }

    fn revision_path(&self, repo: &RepoName, digest: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_manifests/revisions/sha256")
            .join(digest.encoded())
    }

    fn tags_dir(&self, repo: &RepoName) -> PathBuf {
        self.repo_dir(repo).join("_manifests/tags")
    }

    fn referrers_dir(&self, repo: &RepoName, subject: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_referrers")
            .join(subject.encoded())
    }

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    /// Writes `bytes` to `path` through a fsynced temporary file and a rename.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut tmp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_data()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Creates an empty marker file (a link), with its directories.
    fn touch_link(path: &Path) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        File::create(path).map(drop)
    }

    // ---- blobs ----

    /// Whether the blob's content is stored (in any repository).
    pub fn blob_exists(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// The blob's size, if the repository holds it: as a layer or config it received, or as
    /// one of its manifests.
    pub fn blob_in_repo(&self, repo: &RepoName, digest: &Digest) -> io::Result<Option<u64>> {
        if !self.layer_link(repo, digest).exists() && !self.revision_path(repo, digest).exists() {
            return Ok(None);
        }
        match fs::metadata(self.blob_path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens a blob the repository holds, for reading.
    pub fn open_blob(&self, repo: &RepoName, digest: &Digest) -> io::Result<Option<(File, u64)>> {
        if self.blob_in_repo(repo, digest)?.is_none() {
            return Ok(None);
        }
        match File::open(self.blob_path(digest)) {
            Ok(f) => {
                let len = f.metadata()?.len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes a stored blob part of a repository (a mount, or the end of an upload).
    pub fn link_blob(&self, repo: &RepoName, digest: &Digest) -> io::Result<()> {
        Self::touch_link(&self.layer_link(repo, digest))
    }

    /// Removes a blob from a repository; its content goes at the next `gc` if nothing else
    /// references it.
    pub fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> io::Result<bool> {
        match fs::remove_file(self.layer_link(repo, digest)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    // ---- uploads ----

    /// Starts an upload into `repo` and returns its ID.
    pub fn create_upload(&self, repo: &RepoName) -> io::Result<String> {
        let mut random = [0u8; 16];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())?;
        let id: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let dir = self.upload_dir(&id);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("repo"), repo.as_str())?;
        File::create(dir.join("data"))?;
        Ok(id)
    }

    fn upload_unknown(id: &str) -> ApiError {
        ApiError::new(Code::BlobUploadUnknown, format!("upload {id} is not known"))
    }

    /// The length of an upload's data so far, without waiting for a writer. The upload
    /// must belong to `repo`.
    pub fn upload_len(&self, repo: &RepoName, id: &str) -> ApiResult<u64> {
        let dir = self.owned_upload_dir(repo, id)?;
        match fs::metadata(dir.join("data")) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Self::upload_unknown(id)),
            Err(e) => Err(e.into()),
        }
    }

    fn owned_upload_dir(&self, repo: &RepoName, id: &str) -> ApiResult<PathBuf> {
        if !is_upload_id(id) {
            return Err(Self::upload_unknown(id));
        }
        let dir = self.upload_dir(id);
        match fs::read_to_string(dir.join("repo")) {
            Ok(owner) if owner == repo.as_str() => Ok(dir),
            Ok(_) => Err(Self::upload_unknown(id)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Self::upload_unknown(id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens an upload's data for appending, locked, with its current length. The upload
    /// must belong to `repo`.
    pub fn open_upload(&self, repo: &RepoName, id: &str) -> ApiResult<(File, u64)> {
        let dir = self.owned_upload_dir(repo, id)?;
        let path = dir.join("data");
        let file = match fs::OpenOptions::new().read(true).append(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Self::upload_unknown(id)),
            Err(e) => return Err(e.into()),
        };
        // One writer at a time, across processes too (servers sharing a root); the lock
        // goes with the file. The upload may have been published or cancelled while this
        // waited: then its path no longer names this file.
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(io::Error::from)?;
        let meta = file.metadata()?;
        match fs::metadata(&path) {
            Ok(now) if now.ino() == meta.ino() && now.dev() == meta.dev() => {}
            _ => return Err(Self::upload_unknown(id)),
        }
        Ok((file, meta.len()))
    }

    /// Uploads untouched for `max_idle`: abandoned by their clients.
    pub fn idle_uploads(&self, max_idle: std::time::Duration) -> io::Result<Vec<String>> {
        let now = std::time::SystemTime::now();
        let mut idle = Vec::new();
        for id in list_names(&self.root.join("uploads"))? {
            // The data's last write; an upload being created has no data file yet, and its
            // directory's time is then the one to go by.
            let dir = self.upload_dir(&id);
            let modified = fs::metadata(dir.join("data"))
                .or_else(|_| fs::metadata(&dir))
                .and_then(|m| m.modified());
            let Ok(modified) = modified else {
                continue;
            };
            if now.duration_since(modified).unwrap_or_default() >= max_idle {
                idle.push(id);
            }
        }
        Ok(idle)
    }

    /// Removes the uploads idle for `max_idle`, returning their IDs.
    pub fn remove_idle_uploads(&self, max_idle: std::time::Duration) -> io::Result<Vec<String>> {
        let idle = self.idle_uploads(max_idle)?;
        for id in &idle {
            match fs::remove_dir_all(self.upload_dir(id)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(idle)
    }

    /// Abandons an upload.
    pub fn cancel_upload(&self, id: &str) -> io::Result<()> {
        if !is_upload_id(id) {
            return Ok(());
        }
        match fs::remove_dir_all(self.upload_dir(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Publishes a finished upload whose content was checked against `digest`: the data is
    /// fsynced and renamed into the blob store, never over a stored blob (a concurrent
    /// upload of the same content may have published it first: that copy stays), then
    /// linked into the repository.
    pub fn commit_upload(
        &self,
        repo: &RepoName,
        id: &str,
        data: &File,
        digest: &Digest,
    ) -> io::Result<()> {
        data.sync_data()?;
        let blobs = File::open(self.root.join("blobs/sha256"))?;
        let uploads = File::open(self.root.join("uploads"))?;
        match rustix::fs::renameat_with(
            &uploads,
            format!("{id}/data"),
            &blobs,
            digest.encoded(),
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => blobs.sync_all()?,
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        self.link_blob(repo, digest)?;
        self.cancel_upload(id)
    }

    // ---- manifests ----

    /// Serializes manifest and tag changes (across processes too), so that a PUT and a
    /// DELETE of one manifest cannot leave a tag without its manifest.
    fn lock_manifests(&self) -> io::Result<File> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("manifests.lock"))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
        Ok(file)
    }

    fn has_revision(&self, repo: &RepoName, digest: &Digest) -> bool {
        self.revision_path(repo, digest).is_file()
    }

    /// Validates and stores a manifest or index under a tag or its digest.
    pub fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &ManifestRef,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> ApiResult<StoredManifest> {
        let doc = ManifestDoc::parse(bytes)?;
        let media_type = manifest_media_type(content_type, &doc)?;
        let digest = Digest::sha256_of(bytes);
        if let ManifestRef::Digest(expected) = reference
            && *expected != digest
        {
            return Err(ApiError::new(
                Code::DigestInvalid,
                format!("the manifest's digest is {digest}, not {expected}"),
            )
            .with_detail(serde_json::json!({ "digest": expected.as_str() })));
        }
        let _lock = self.lock_manifests()?;
        let missing = |d: &Digest| {
            ApiError::new(
                Code::ManifestBlobUnknown,
                format!(
                    "the manifest references {d}, which {} does not hold",
                    repo.0
                ),
            )
            .with_detail(serde_json::json!({ "digest": d.as_str() }))
        };
        if doc.is_index(&media_type) {
            for child in doc.manifests.iter().flatten() {
                let d = parse_digest(&child.digest)?;
                // Children are manifests, except in indexes such as BuildKit's registry
                // cache, which list plain blobs; those must be blobs of the repository.
                let present = if child.is_manifest() {
                    self.has_revision(repo, &d)
                } else {
                    self.blob_in_repo(repo, &d)?.is_some()
                };
                if !present {
                    return Err(missing(&d));
                }
            }
        } else {
            for blob in doc.blob_refs() {
                let d = parse_digest(&blob.digest)?;
                if self.blob_in_repo(repo, &d)?.is_none() {
                    return Err(missing(&d));
                }
            }
        }
        let subject = doc
            .subject
            .as_ref()
            .map(|s| parse_digest(&s.digest))
            .transpose()?;

        if !self.blob_exists(&digest) {
            self.write_atomic(&self.blob_path(&digest), bytes)?;
        }
        self.write_atomic(&self.revision_path(repo, &digest), media_type.as_bytes())?;
        if let Some(subject) = &subject {
            Self::touch_link(&self.referrers_dir(repo, subject).join(digest.encoded()))?;
        }
        if let ManifestRef::Tag(tag) = reference {
            let path = self.tags_dir(repo).join(tag);
            self.write_atomic(&path, digest.as_str().as_bytes())?;
            // The tag is what a client was told about: make its rename durable.
            File::open(self.tags_dir(repo))?.sync_all()?;
        }
        Ok(StoredManifest { digest, subject })
    }

    fn repo_exists(&self, repo: &RepoName) -> bool {
        self.repo_dir(repo).join("_manifests").is_dir()
    }

    fn name_unknown(repo: &RepoName) -> ApiError {
        ApiError::new(
            Code::NameUnknown,
            format!("repository {} is not known", repo.0),
        )
        .with_detail(serde_json::json!({ "name": repo.0 }))
    }

    fn manifest_unknown(repo: &RepoName, reference: &str) -> ApiError {
        ApiError::new(
            Code::ManifestUnknown,
            format!("manifest {reference} is not known in {}", repo.0),
        )
    }

    /// The digest a reference names in a repository.
    fn resolve(&self, repo: &RepoName, reference: &ManifestRef) -> ApiResult<Digest> {
        match reference {
            ManifestRef::Digest(d) => Ok(d.clone()),
            ManifestRef::Tag(tag) => match fs::read_to_string(self.tags_dir(repo).join(tag)) {
                Ok(s) => parse_digest(s.trim()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if self.repo_exists(repo) {
                        Err(Self::manifest_unknown(repo, tag))
                    } else {
                        Err(Self::name_unknown(repo))
                    }
                }
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Reads a manifest by tag or digest.
    pub fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &ManifestRef,
    ) -> ApiResult<ManifestContent> {
        let digest = self.resolve(repo, reference)?;
        let media_type = match fs::read_to_string(self.revision_path(repo, &digest)) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Self::manifest_unknown(repo, digest.as_str()));
            }
            Err(e) => return Err(e.into()),
        };
        let bytes = match fs::read(self.blob_path(&digest)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Self::manifest_unknown(repo, digest.as_str()));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(ManifestContent {
            digest,
            media_type,
            bytes,
        })
    }

    /// Deletes a tag, or a manifest by digest with every tag that points at it.
    pub fn delete_manifest(&self, repo: &RepoName, reference: &ManifestRef) -> ApiResult<()> {
        let _lock = self.lock_manifests()?;
        match reference {
            ManifestRef::Tag(tag) => match fs::remove_file(self.tags_dir(repo).join(tag)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Err(Self::manifest_unknown(repo, tag))
                }
                Err(e) => Err(e.into()),
            },
            ManifestRef::Digest(digest) => {
                if !self.has_revision(repo, digest) {
                    return Err(Self::manifest_unknown(repo, digest.as_str()));
                }
                for tag in self.tags(repo)? {
                    let path = self.tags_dir(repo).join(&tag);
                    if fs::read_to_string(&path).is_ok_and(|s| s.trim() == digest.as_str()) {
                        remove_if_exists(&path)?;
                    }
                }
                if let Ok(bytes) = fs::read(self.blob_path(digest))
                    && let Ok(doc) = serde_json::from_slice::<ManifestDoc>(&bytes)
                    && let Some(subject) = doc.subject.and_then(|s| Digest::parse(&s.digest).ok())
                {
                    remove_if_exists(&self.referrers_dir(repo, &subject).join(digest.encoded()))?;
                }
                remove_if_exists(&self.revision_path(repo, digest))?;
                Ok(())
            }
        }
    }

    /// A repository's tags, sorted.
    pub fn tags(&self, repo: &RepoName) -> ApiResult<Vec<String>> {
        if !self.repo_exists(repo) {
            return Err(Self::name_unknown(repo));
        }
        let mut tags = list_names(&self.tags_dir(repo))?;
        tags.sort();
        Ok(tags)
    }

    /// Every repository, sorted.
    pub fn catalog(&self) -> io::Result<Vec<String>> {
        let mut repos = Vec::new();
        collect_repos(&self.root.join("repositories"), "", &mut repos)?;
        repos.sort();
        Ok(repos)
    }

    /// The descriptors of the manifests in `repo` whose subject is `subject`, optionally
    /// only those of one artifact type.
    pub fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> io::Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        let mut names = list_names(&self.referrers_dir(repo, subject))?;
        names.sort();
        for hex in names {
            let Ok(digest) = Digest::from_sha256_hex(&hex) else {
                continue;
            };
            let Ok(ManifestContent {
                media_type, bytes, ..
            }) = self.get_manifest(repo, &ManifestRef::Digest(digest.clone()))
            else {
                continue;
            };
            let Ok(doc) = serde_json::from_slice::<ManifestDoc>(&bytes) else {
                continue;
            };
            // The spec: an empty or missing artifactType falls back to the config's type.
            let kind = doc
                .artifact_type
                .clone()
                .filter(|t| !t.is_empty())
                .or_else(|| doc.config.as_ref().and_then(|c| c.media_type.clone()));
            if artifact_type.is_some_and(|want| kind.as_deref() != Some(want)) {
                continue;
            }
            let mut descriptor = serde_json::json!({
                "mediaType": media_type,
                "digest": digest.as_str(),
                "size": bytes.len(),
            });
            if let Some(kind) = kind {
                descriptor["artifactType"] = kind.into();
            }
            if let Some(annotations) = doc.annotations {
                descriptor["annotations"] = serde_json::json!(annotations);
            }
            out.push(descriptor);
        }
        Ok(out)
    }

    // ---- maintenance ----

    /// Every repository with its revisions and tags.
    fn repositories(&self) -> io::Result<Vec<RepoContents>> {
        let mut out = Vec::new();
        for name in self.catalog()? {
            let repo = RepoName(name);
            let revisions = list_names(&self.repo_dir(&repo).join("_manifests/revisions/sha256"))?
                .into_iter()
                .filter_map(|hex| Digest::from_sha256_hex(&hex).ok())
                .collect();
            let mut tags = BTreeMap::new();
            for tag in list_names(&self.tags_dir(&repo))? {
                let target = fs::read_to_string(self.tags_dir(&repo).join(&tag))?;
                tags.insert(tag, target.trim().to_owned());
            }
            out.push((repo, revisions, tags));
        }
        Ok(out)
    }

    /// Removes what no manifest references: blobs, the links to them, untagged manifests
    /// when asked, and uploads idle for a day. Must run while no writable server does (the
    /// caller holds the lock exclusively).
    pub fn gc(&self, options: &GcOptions) -> io::Result<GcReport> {
        let mut report = GcReport::default();
        let mut marked: HashSet<String> = HashSet::new();
        for (repo, revisions, tags) in self.repositories()? {
            let mut live: BTreeSet<Digest> = revisions.iter().cloned().collect();
            if options.delete_untagged {
                live = self.reachable_from_tags(&revisions, &tags);
                for digest in revisions.iter().filter(|d| !live.contains(d)) {
                    report.manifests.push(format!("{}@{digest}", repo.0));
                    if !options.dry_run {
                        let _ = self.delete_manifest(&repo, &ManifestRef::Digest(digest.clone()));
                    }
                }
            }
            for digest in &live {
                marked.insert(digest.encoded().to_owned());
                let Ok(bytes) = fs::read(self.blob_path(digest)) else {
                    continue;
                };
                let Ok(doc) = serde_json::from_slice::<ManifestDoc>(&bytes) else {
                    continue;
                };
                let children = doc.manifests.iter().flatten();
                for blob in doc
                    .config
                    .iter()
                    .chain(doc.layers.iter().flatten())
                    .chain(children)
                {
                    if let Ok(d) = Digest::parse(&blob.digest) {
                        marked.insert(d.encoded().to_owned());
                    }
                }
            }
        }
        for hex in list_names(&self.root.join("blobs/sha256"))? {
            if marked.contains(&hex) {
                continue;
            }
            let path = self.root.join("blobs/sha256").join(&hex);
            report.bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            report.blobs.push(format!("sha256:{hex}"));
            if !options.dry_run {
                remove_if_exists(&path)?;
            }
        }
        if !options.dry_run {
            // Links whose content is gone would answer HEAD with 404 anyway; drop them.
            for (repo, _, _) in self.repositories()? {
                let dir = self.repo_dir(&repo).join("_layers/sha256");
                for hex in list_names(&dir)? {
                    if !self.root.join("blobs/sha256").join(&hex).exists() {
                        remove_if_exists(&dir.join(&hex))?;
                    }
                }
            }
            for name in list_names(&self.root.join("tmp"))? {
                remove_if_exists(&self.root.join("tmp").join(name))?;
            }
        }
        report.uploads = self.idle_uploads(options.upload_max_idle)?.len();
        if !options.dry_run {
            self.remove_idle_uploads(options.upload_max_idle)?;
        }
        Ok(report)
    }

    /// The revisions reachable from the tags: tagged manifests, the children of reachable
    /// indexes, and manifests whose subject is reachable (signatures, SBOMs).
    fn reachable_from_tags(
        &self,
        revisions: &[Digest],
        tags: &BTreeMap<String, String>,
    ) -> BTreeSet<Digest> {
        let docs: BTreeMap<Digest, ManifestDoc> = revisions
            .iter()
            .filter_map(|d| {
                let bytes = fs::read(self.blob_path(d)).ok()?;
                Some((d.clone(), serde_json::from_slice(&bytes).ok()?))
            })
            .collect();
        let mut live: BTreeSet<Digest> = tags
            .values()
            .filter_map(|t| Digest::parse(t).ok())
            .filter(|d| revisions.contains(d))
            .collect();
        loop {
            let before = live.len();
            for (digest, doc) in &docs {
                if live.contains(digest) {
                    for child in doc.manifests.iter().flatten() {
                        if let Ok(d) = Digest::parse(&child.digest)
                            && docs.contains_key(&d)
                        {
                            live.insert(d);
                        }
                    }
                } else if let Some(subject) = &doc.subject
                    && Digest::parse(&subject.digest).is_ok_and(|s| live.contains(&s))
                {
                    live.insert(digest.clone());
                }
            }
            if live.len() == before {
                return live;
            }
        }
    }

    /// Checks the storage: every blob's content matches its name, every tag names a stored
    /// manifest, every manifest's blobs and children are present. Returns the problems.
    pub fn check(&self) -> io::Result<Vec<String>> {
        let mut problems = Vec::new();
        for hex in list_names(&self.root.join("blobs/sha256"))? {
            let mut file = File::open(self.root.join("blobs/sha256").join(&hex))?;
            let mut digester = berth_reference::Sha256Digester::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                digester.update(&buf[..n]);
            }
            let actual = digester.finish();
            if actual.encoded() != hex {
                problems.push(format!(
                    "blob sha256:{hex} holds content with digest {actual}"
                ));
            }
        }
        for (repo, revisions, tags) in self.repositories()? {
            for (tag, target) in &tags {
                match Digest::parse(target) {
                    Ok(d) if revisions.contains(&d) => {}
                    _ => problems.push(format!(
                        "{}:{tag} points at {target}, which is not a manifest of the repository",
                        repo.0
                    )),
                }
            }
            for digest in &revisions {
                let Ok(bytes) = fs::read(self.blob_path(digest)) else {
                    problems.push(format!(
                        "{}@{digest}: the manifest's content is missing",
                        repo.0
                    ));
                    continue;
                };
                let Ok(doc) = serde_json::from_slice::<ManifestDoc>(&bytes) else {
                    problems.push(format!(
                        "{}@{digest}: the manifest is not valid JSON",
                        repo.0
                    ));
                    continue;
                };
                for child in doc.manifests.iter().flatten() {
                    let present = Digest::parse(&child.digest).is_ok_and(|d| {
                        if child.is_manifest() {
                            revisions.contains(&d)
                        } else {
                            self.blob_in_repo(&repo, &d).ok().flatten().is_some()
                        }
                    });
                    if !present {
                        problems.push(format!(
                            "{}@{digest}: the index's manifest {} is missing",
                            repo.0, child.digest
                        ));
                    }
                }
                for blob in doc.blob_refs() {
                    let present = Digest::parse(&blob.digest)
                        .ok()
                        .and_then(|d| self.blob_in_repo(&repo, &d).ok().flatten())
                        .is_some();
                    if !present {
                        problems.push(format!(
                            "{}@{digest}: blob {} is missing",
                            repo.0, blob.digest
                        ));
                    }
                }
            }
        }
        Ok(problems)
    }
}

/// A repository's manifests and its tags (tag -> digest).
type RepoContents = (RepoName, Vec<Digest>, BTreeMap<String, String>);

/// What `gc` should do.
pub struct GcOptions {
    /// Report, delete nothing.
    pub dry_run: bool,
    /// Also delete manifests that no tag reaches.
    pub delete_untagged: bool,
    /// Uploads untouched for this long are abandoned.
    pub upload_max_idle: std::time::Duration,
}

/// What `gc` deleted (or would delete).
#[derive(Debug, Default)]
pub struct GcReport {
    pub manifests: Vec<String>,
    pub blobs: Vec<String>,
    pub bytes: u64,
    pub uploads: usize,
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The names in a directory; none when it does not exist.
fn list_names(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Repository names below `dir`: directories holding `_manifests`.
fn collect_repos(dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
    for name in list_names(dir)? {
        if name.starts_with('_') {
            continue;
        }
        let path = dir.join(&name);
        if !path.is_dir() {
            continue;
        }
        let full = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if path.join("_manifests").is_dir() {
            out.push(full.clone());
        }
        collect_repos(&path, &full, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str) -> RepoName {
        RepoName::parse(name).unwrap()
    }

    fn put_blob(storage: &Storage, r: &RepoName, content: &[u8]) -> Digest {
        let id = storage.create_upload(r).unwrap();
        let (mut file, len) = storage.open_upload(r, &id).unwrap();
        assert_eq!(len, 0);
        file.write_all(content).unwrap();
        let digest = Digest::sha256_of(content);
        storage.commit_upload(r, &id, &file, &digest).unwrap();
        digest
    }

    fn image_manifest(config: &Digest, layer: &Digest, subject: Option<&Digest>) -> Vec<u8> {
        let mut m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.as_str(), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.as_str(), "size": 5}],
        });
        if let Some(s) = subject {
            m["subject"] =
                serde_json::json!({"mediaType": OCI_MANIFEST, "digest": s.as_str(), "size": 1});
            m["artifactType"] = "application/example.sbom".into();
        }
        serde_json::to_vec(&m).unwrap()
    }

    #[test]
    fn manifests_blobs_tags_referrers_and_gc() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let r = repo("team/model");
        let config = put_blob(&storage, &r, b"{}");
        let layer = put_blob(&storage, &r, b"layer");
        let orphan = put_blob(&storage, &r, b"orphan");

        // A manifest naming a blob the repository lacks is refused, and nothing is stored.
        let missing = Digest::sha256_of(b"missing");
        let bad = image_manifest(&config, &missing, None);
        let err = storage
            .put_manifest(&r, &ManifestRef::Tag("v1".into()), Some(OCI_MANIFEST), &bad)
            .unwrap_err();
        assert_eq!(err.code, Code::ManifestBlobUnknown);
        assert!(storage.tags(&r).is_err());

        let body = image_manifest(&config, &layer, None);
        let stored = storage
            .put_manifest(
                &r,
                &ManifestRef::Tag("v1".into()),
                Some(OCI_MANIFEST),
                &body,
            )
            .unwrap();
        assert_eq!(storage.tags(&r).unwrap(), ["v1"]);
        let got = storage
            .get_manifest(&r, &ManifestRef::Tag("v1".into()))
            .unwrap();
        assert_eq!((got.digest, got.bytes), (stored.digest.clone(), body));

        // The same blobs in a second repository are stored once.
        let other = repo("other");
        storage.link_blob(&other, &layer).unwrap();
        assert_eq!(storage.blob_in_repo(&other, &layer).unwrap(), Some(5));
        assert_eq!(storage.blob_in_repo(&other, &config).unwrap(), None);

        let sbom = image_manifest(&config, &layer, Some(&stored.digest));
        let sbom_stored = storage
            .put_manifest(
                &r,
                &ManifestRef::Digest(Digest::sha256_of(&sbom)),
                None,
                &sbom,
            )
            .unwrap();
        let referrers = storage.referrers(&r, &stored.digest, None).unwrap();
        assert_eq!(referrers.len(), 1);
        assert_eq!(referrers[0]["artifactType"], "application/example.sbom");
        assert!(
            storage
                .referrers(&r, &stored.digest, Some("other/type"))
                .unwrap()
                .is_empty()
        );

        assert_eq!(storage.catalog().unwrap(), ["team/model"]);
        assert!(storage.check().unwrap().is_empty());

        let options = GcOptions {
            dry_run: false,
            delete_untagged: true,
            upload_max_idle: std::time::Duration::from_secs(86400),
        };
        let report = storage.gc(&options).unwrap();
        // The referrer survives (its subject is tagged); only the orphan blob goes.
        assert!(report.manifests.is_empty(), "{report:?}");
        assert_eq!(report.blobs, [orphan.to_string()]);
        assert!(storage.blob_in_repo(&other, &layer).unwrap().is_some());

        // Deleting the tagged manifest drops its tag; gc then takes the referrer too.
        storage
            .delete_manifest(&r, &ManifestRef::Digest(stored.digest.clone()))
            .unwrap();
        assert!(storage.tags(&r).unwrap().is_empty());
        let report = storage.gc(&options).unwrap();
        assert_eq!(
            report.manifests,
            [format!("team/model@{}", sbom_stored.digest)]
        );
        assert!(storage.check().unwrap().is_empty());
    }

    #[test]
    fn media_types_are_checked() {
        let doc = |json: serde_json::Value| {
            ManifestDoc::parse(&serde_json::to_vec(&json).unwrap()).unwrap()
        };
        let index = doc(serde_json::json!({"schemaVersion": 2, "manifests": []}));
        assert_eq!(manifest_media_type(None, &index).unwrap(), OCI_INDEX);
        assert_eq!(
            manifest_media_type(Some(&format!("{DOCKER_LIST}; charset=utf-8")), &index).unwrap(),
            DOCKER_LIST
        );
        let typed =
            doc(serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}));
        assert!(manifest_media_type(Some(DOCKER_LIST), &typed).is_err());
        let schema1 = doc(serde_json::json!({"schemaVersion": 1}));
        assert!(
            manifest_media_type(Some(DOCKER_SCHEMA1[1]), &schema1)
                .unwrap_err()
                .message
                .contains("schema 1")
        );
        let no_layers =
            doc(serde_json::json!({"schemaVersion": 2, "config": {"digest": "sha256:0"}}));
        assert!(manifest_media_type(Some(OCI_MANIFEST), &no_layers).is_err());
    }
}
