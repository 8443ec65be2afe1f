//! The distribution spec's HTTP API over [`Storage`].
//!
//! Repository names hold slashes, so routing is by hand from the raw path: the last one or
//! two segments say which endpoint it is, the rest is the name, which is then checked
//! against the spec's grammar. The path is never percent-decoded, so `%2e%2e` stays an
//! invalid name rather than becoming `..`.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_reference::Digest;
use http_body_util::BodyExt;
use sha2::{Digest as _, Sha256};

use super::error::{ApiError, ApiResult, Code};
use super::htpasswd::Htpasswd;
use super::storage::{MAX_MANIFEST_BYTES, ManifestRef, RepoName, Storage, parse_digest};

/// How much of an upload's body is gathered before one write (and hash) on the blocking pool.
const WRITE_CHUNK: usize = 64 << 10;
/// The read size when streaming a blob out while few downloads run: 512 KiB reads served
/// 50 MB blobs to 16 clients 19% faster than 256 KiB ones (fewer hand-offs to the blocking
/// pool).
const READ_CHUNK_MAX: usize = 512 << 10;
/// The read size when many downloads run at once.
const READ_CHUNK_MIN: usize = 64 << 10;
/// The read buffers of all downloads together stay near this: each read is
/// `READ_BUDGET / downloads` within the bounds above, so thousands of connections pulling at
/// once do not buffer gigabytes.
const READ_BUDGET: usize = 32 << 20;

/// What the server was asked to allow.
pub struct Policy {
    pub htpasswd: Option<Htpasswd>,
    /// Pulls need no credentials; pushes and deletes still do.
    pub anonymous_pull: bool,
    pub read_only: bool,
    pub delete: bool,
}

/// An upload's running hash. `hasher` covers the first `offset` bytes of its data file; it
/// is `None` after a restart, and the file is then hashed again when the upload ends.
struct UploadSession {
    hasher: Option<Sha256>,
    offset: u64,
}

pub struct Registry {
    storage: Arc<Storage>,
    policy: Policy,
    bcrypt_slots: tokio::sync::Semaphore,
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<UploadSession>>>>,
    /// Blob bodies being streamed out, for their read size.
    downloads: Arc<AtomicUsize>,
}

impl Registry {
    pub fn new(storage: Storage, policy: Policy) -> Registry {
        Registry {
            storage: Arc::new(storage),
            policy,
            bcrypt_slots: tokio::sync::Semaphore::new(2),
            uploads: Mutex::new(HashMap::new()),
            downloads: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn session(&self, id: &str) -> Arc<tokio::sync::Mutex<UploadSession>> {
        self.uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_owned())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(UploadSession {
                    hasher: None,
                    offset: 0,
                }))
            })
            .clone()
    }

    fn start_session(&self, id: &str) {
        self.uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id.to_owned(),
                Arc::new(tokio::sync::Mutex::new(UploadSession {
                    hasher: Some(Sha256::new()),
                    offset: 0,
                })),
            );
    }

    /// Forgets the sessions of uploads that are gone (removed as idle).
    pub fn forget_uploads(&self, ids: &[String]) {
        let mut map = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            map.remove(id);
        }
    }

    pub fn storage(&self) -> Arc<Storage> {
        self.storage.clone()
    }

    fn end_session(&self, id: &str) {
        self.uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// Runs storage work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError::new(Code::Unknown, format!("task failed: {e}"))))
}

/// The router: every request goes through [`handle`].
pub fn router(registry: Arc<Registry>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(registry)
}

async fn handle(State(registry): State<Arc<Registry>>, request: Request) -> Response {
    let mut response = match dispatch(&registry, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    response.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

enum Route {
    Ping,
    Catalog,
    Tags(RepoName),
    Manifest(RepoName, String),
    Blob(RepoName, String),
    Uploads(RepoName),
    Upload(RepoName, String),
    Referrers(RepoName, String),
}

fn not_found() -> ApiError {
    ApiError::new(Code::NotFound, "no such endpoint")
}

fn route(path: &str) -> ApiResult<Route> {
    let rest = path.strip_prefix("/v2").ok_or_else(not_found)?;
    let rest = match rest {
        "" | "/" => return Ok(Route::Ping),
        r => r.strip_prefix('/').ok_or_else(not_found)?,
    };
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Ok(Route::Uploads(RepoName::parse(name)?));
    }
    let (head, last) = rest.rsplit_once('/').ok_or_else(not_found)?;
    if last == "list"
        && let Some(name) = head.strip_suffix("/tags")
    {
        return Ok(Route::Tags(RepoName::parse(name)?));
    }
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        return Ok(Route::Upload(RepoName::parse(name)?, last.to_owned()));
    }
    // Some clients send a digest's `:` as `%3A`; the grammar checks come after.
    let last = last.replace("%3A", ":").replace("%3a", ":");
    let (name, kind) = head.rsplit_once('/').ok_or_else(not_found)?;
    let make: fn(RepoName, String) -> Route = match kind {
        "manifests" => Route::Manifest,
        "blobs" => Route::Blob,
        "referrers" => Route::Referrers,
        _ => return Err(not_found()),
    };
    Ok(make(RepoName::parse(name)?, last))
}

fn query_params(request: &Request) -> HashMap<String, String> {
    form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn method_not_allowed() -> ApiError {
    ApiError::new(Code::Unsupported, "the operation is unsupported")
}

async fn dispatch(registry: &Arc<Registry>, request: Request) -> ApiResult<Response> {
    let route = route(request.uri().path())?;
    let method = request.method().clone();
    let write = !matches!(method, Method::GET | Method::HEAD);
    authorize(
        registry,
        request.headers(),
        write,
        matches!(route, Route::Ping),
    )
    .await?;
    if write && registry.policy.read_only {
        return Err(ApiError::new(
            Code::Unsupported,
            "the registry is read-only",
        ));
    }
    if method == Method::DELETE && !registry.policy.delete && !matches!(route, Route::Upload(..)) {
        return Err(ApiError::new(
            Code::Unsupported,
            "deletion is disabled on this registry (serve it with --delete)",
        ));
    }
    let query = query_params(&request);
    match (route, method) {
        (Route::Ping, Method::GET | Method::HEAD) => {
            Ok(([(header::CONTENT_TYPE, "application/json")], "{}").into_response())
        }
        (Route::Catalog, Method::GET) => catalog(registry, &query).await,
        (Route::Tags(repo), Method::GET) => tags(registry, repo, &query).await,
        (Route::Manifest(repo, reference), m) => {
            if m != Method::PUT && is_foreign_digest(&reference) {
                return Err(ApiError::new(
                    Code::ManifestUnknown,
                    format!("manifest {reference} is not known in {}", repo.as_str()),
                ));
            }
            let reference = ManifestRef::parse(&reference)?;
            match m {
                Method::GET | Method::HEAD => {
                    get_manifest(registry, repo, reference, m == Method::HEAD).await
                }
                Method::PUT => put_manifest(registry, repo, reference, request).await,
                Method::DELETE => {
                    let storage = registry.storage.clone();
                    blocking(move || storage.delete_manifest(&repo, &reference)).await?;
                    Ok(StatusCode::ACCEPTED.into_response())
                }
                _ => Err(method_not_allowed()),
            }
        }
        (Route::Blob(repo, digest), m) => {
            if is_foreign_digest(&digest) {
                return Err(ApiError::new(
                    Code::BlobUnknown,
                    format!("blob {digest} is not known"),
                ));
            }
            let digest = parse_digest(&digest)?;
            match m {
                Method::GET | Method::HEAD => {
                    get_blob(registry, repo, digest, request.headers(), m == Method::HEAD).await
                }
                Method::DELETE => {
                    let storage = registry.storage.clone();
                    let d = digest.clone();
                    if blocking(move || Ok(storage.unlink_blob(&repo, &d)?)).await? {
                        Ok(StatusCode::ACCEPTED.into_response())
                    } else {
                        Err(blob_unknown(&digest))
                    }
                }
                _ => Err(method_not_allowed()),
            }
        }
        (Route::Uploads(repo), Method::POST) => start_upload(registry, repo, &query, request).await,
        (Route::Upload(repo, id), m) => match m {
            Method::GET => {
                let storage = registry.storage.clone();
                let (r, i) = (repo.clone(), id.clone());
                let len = blocking(move || storage.upload_len(&r, &i)).await?;
                Ok(upload_accepted(StatusCode::NO_CONTENT, &repo, &id, len))
            }
            Method::PATCH => patch_upload(registry, repo, id, request).await,
            Method::PUT => finish_upload(registry, repo, id, &query, request).await,
            Method::DELETE => cancel_upload(registry, repo, id).await,
            _ => Err(method_not_allowed()),
        },
        (Route::Referrers(repo, digest), Method::GET) => {
            let artifact_type = query.get("artifactType").cloned();
            let manifests = if is_foreign_digest(&digest) {
                Vec::new()
            } else {
                let digest = parse_digest(&digest)?;
                let storage = registry.storage.clone();
                let filter = artifact_type.clone();
                blocking(move || Ok(storage.referrers(&repo, &digest, filter.as_deref())?)).await?
            };
            let body = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": super::storage::OCI_INDEX,
                "manifests": manifests,
            });
            let mut response = (
                [(header::CONTENT_TYPE, super::storage::OCI_INDEX)],
                body.to_string(),
            )
                .into_response();
            if artifact_type.is_some() {
                response.headers_mut().insert(
                    "OCI-Filters-Applied",
                    HeaderValue::from_static("artifactType"),
                );
            }
            Ok(response)
        }
        _ => Err(method_not_allowed()),
    }
}

/// A well-formed digest of an algorithm other than sha256: it names nothing stored here
/// (404 on reads), where a malformed one is a bad request.
fn is_foreign_digest(s: &str) -> bool {
    Digest::parse(s).is_ok_and(|d| d.algorithm() != "sha256")
}

/// Basic auth against the htpasswd file. Anonymous requests (no header, or an empty user,
/// which some clients send when they have no credentials) may read when anonymous pulls
/// are on; the ping always asks for credentials, so that clients know to send theirs.
async fn authorize(
    registry: &Arc<Registry>,
    headers: &HeaderMap,
    write: bool,
    ping: bool,
) -> ApiResult<()> {
    if registry.policy.htpasswd.is_none() {
        return Ok(());
    }
    let unauthorized = |message: &str| ApiError::new(Code::Unauthorized, message.to_owned());
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
        .filter(|(user, _)| !user.is_empty());
    let Some((user, password)) = credentials else {
        if !write && !ping && registry.policy.anonymous_pull {
            return Ok(());
        }
        return Err(unauthorized("authentication required"));
    };
    let cached = registry
        .policy
        .htpasswd
        .as_ref()
        .is_some_and(|h| h.verified_before(&user, &password));
    let ok = cached || {
        // bcrypt is slow on purpose: a few at a time, so that a flood of wrong passwords
        // queues here instead of filling the blocking pool that storage I/O needs.
        let _slot = registry.bcrypt_slots.acquire().await;
        let registry = registry.clone();
        tokio::task::spawn_blocking(move || {
            registry
                .policy
                .htpasswd
                .as_ref()
                .is_some_and(|h| h.verify(&user, &password))
        })
        .await
        .unwrap_or(false)
    };
    if ok {
        Ok(())
    } else {
        Err(unauthorized("invalid username or password"))
    }
}

/// A page of a list and, when more follow, the `n` and `last` of the next request.
type Page = (Vec<String>, Option<(usize, String)>);

/// `n` and `last` of a list request.
fn paginate(mut items: Vec<String>, query: &HashMap<String, String>) -> ApiResult<Page> {
    if let Some(last) = query.get("last") {
        items.retain(|i| i.as_str() > last.as_str());
    }
    let Some(n) = query.get("n") else {
        return Ok((items, None));
    };
    let n: usize = n.parse().map_err(|_| {
        ApiError::new(
            Code::PaginationNumberInvalid,
            format!("invalid page size n={n:?}"),
        )
    })?;
    if items.len() > n {
        items.truncate(n);
        let last = items.last().cloned();
        return Ok((items, last.map(|l| (n, l))));
    }
    Ok((items, None))
}

fn with_next_link(mut response: Response, path: &str, next: Option<(usize, String)>) -> Response {
    if let Some((n, last)) = next {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("n", &n.to_string())
            .append_pair("last", &last)
            .finish();
        if let Ok(v) = HeaderValue::from_str(&format!("<{path}?{query}>; rel=\"next\"")) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    response
}

fn json_response(value: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn catalog(registry: &Arc<Registry>, query: &HashMap<String, String>) -> ApiResult<Response> {
    let storage = registry.storage.clone();
    let all = blocking(move || Ok(storage.catalog()?)).await?;
    let (repos, next) = paginate(all, query)?;
    Ok(with_next_link(
        json_response(serde_json::json!({ "repositories": repos })),
        "/v2/_catalog",
        next,
    ))
}

async fn tags(
    registry: &Arc<Registry>,
    repo: RepoName,
    query: &HashMap<String, String>,
) -> ApiResult<Response> {
    let storage = registry.storage.clone();
    let r = repo.clone();
    let all = blocking(move || storage.tags(&r)).await?;
    let (tags, next) = paginate(all, query)?;
    Ok(with_next_link(
        json_response(serde_json::json!({ "name": repo.as_str(), "tags": tags })),
        &format!("/v2/{}/tags/list", repo.as_str()),
        next,
    ))
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

async fn get_manifest(
    registry: &Arc<Registry>,
    repo: RepoName,
    reference: ManifestRef,
    head: bool,
) -> ApiResult<Response> {
    let storage = registry.storage.clone();
    let manifest = blocking(move || storage.get_manifest(&repo, &reference)).await?;
    let len = manifest.bytes.len();
    let body = if head {
        Body::empty()
    } else {
        Body::from(manifest.bytes)
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(&manifest.media_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        "Docker-Content-Digest",
        header_value(manifest.digest.as_str()),
    );
    h.insert(
        header::ETAG,
        header_value(&format!("\"{}\"", manifest.digest)),
    );
    Ok(response)
}

async fn put_manifest(
    registry: &Arc<Registry>,
    repo: RepoName,
    reference: ManifestRef,
    request: Request,
) -> ApiResult<Response> {
    let too_large = || {
        ApiError::new(
            Code::SizeInvalid,
            format!("the manifest is larger than {MAX_MANIFEST_BYTES} bytes"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let declared = content_length(request.headers());
    if declared.is_some_and(|n| n > MAX_MANIFEST_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(request.into_body(), MAX_MANIFEST_BYTES)
        .await
        .map_err(|e| {
            if declared.is_none() {
                too_large()
            } else {
                ApiError::new(Code::ManifestInvalid, format!("reading the manifest: {e}"))
            }
        })?;
    if declared.is_some_and(|n| n != bytes.len() as u64) {
        return Err(ApiError::new(
            Code::ManifestInvalid,
            "the manifest is shorter than its Content-Length",
        ));
    }
    let storage = registry.storage.clone();
    let r = repo.clone();
    let stored =
        blocking(move || storage.put_manifest(&r, &reference, content_type.as_deref(), &bytes))
            .await?;
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        header_value(&format!(
            "/v2/{}/manifests/{}",
            repo.as_str(),
            stored.digest
        )),
    );
    h.insert(
        "Docker-Content-Digest",
        header_value(stored.digest.as_str()),
    );
    if let Some(subject) = stored.subject {
        h.insert("OCI-Subject", header_value(subject.as_str()));
    }
    Ok(response)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn blob_unknown(digest: &Digest) -> ApiError {
    ApiError::new(Code::BlobUnknown, format!("blob {digest} is not known"))
        .with_detail(serde_json::json!({ "digest": digest.as_str() }))
}

/// A `Range: bytes=…` request against a blob of `len` bytes: `None` to send it whole (no
/// header, or a form this server does not split, such as several ranges), `Some(Err)` when
/// it cannot be satisfied.
fn parse_range(value: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        let n: u64 = end.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        return Some(Ok((len - n.min(len), len - 1)));
    }
    let start: u64 = start.parse().ok()?;
    let end: u64 = if end.is_empty() {
        u64::MAX
    } else {
        end.parse().ok()?
    };
    if end < start || start >= len {
        return Some(Err(()));
    }
    Some(Ok((start, end.min(len - 1))))
}

async fn get_blob(
    registry: &Arc<Registry>,
    repo: RepoName,
    digest: Digest,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult<Response> {
    let storage = registry.storage.clone();
    let d = digest.clone();
    let (file, len) = blocking(move || Ok(storage.open_blob(&repo, &d)?))
        .await?
        .ok_or_else(|| blob_unknown(&digest))?;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, len));
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, len.saturating_sub(1)),
        Some(Ok((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Some(Err(())) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{len}")),
            );
            return Ok(response);
        }
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    let body = if head || count == 0 {
        Body::empty()
    } else {
        let download = Download::start(&registry.downloads);
        Body::from_stream(blob_stream(file, start, count, download))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert("Docker-Content-Digest", header_value(digest.as_str()));
    h.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {start}-{end}/{len}")),
        );
    }
    Ok(response)
}

/// One blob body being streamed out: counted in [`Registry::downloads`] until dropped.
struct Download(Arc<AtomicUsize>);

impl Download {
    fn start(downloads: &Arc<AtomicUsize>) -> Download {
        downloads.fetch_add(1, Ordering::Relaxed);
        Download(downloads.clone())
    }

    /// The size of the next read, from how many downloads share [`READ_BUDGET`].
    fn chunk(&self) -> usize {
        let running = self.0.load(Ordering::Relaxed).max(1);
        (READ_BUDGET / running).clamp(READ_CHUNK_MIN, READ_CHUNK_MAX)
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `count` bytes of a blob from `start`, read in pieces of [`Download::chunk`] on the
/// blocking pool. Each buffer is allocated here, on the runtime's side, and handed to hyper
/// without a copy.
fn blob_stream(
    file: std::fs::File,
    start: u64,
    count: u64,
    download: Download,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send {
    let file = Arc::new(file);
    let state = (file, start, count, download);
    futures_util::stream::unfold(state, |(file, at, left, download)| async move {
        if left == 0 {
            return None;
        }
        let n = left.min(download.chunk() as u64) as usize;
        let buf: Vec<u8> = Vec::with_capacity(n);
        let reader = file.clone();
        let read = tokio::task::spawn_blocking(move || read_exact_at(&reader, buf, at))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match read {
            Ok(buf) => Some((
                Ok(bytes::Bytes::from(buf)),
                (file, at + n as u64, left - n as u64, download),
            )),
            // The error ends the body; the client sees a short response.
            Err(e) => Some((Err(e), (file, at, 0, download))),
        }
    })
}

/// Fills `buf`'s spare capacity from `file` at `at` (`Vec::with_capacity` gives exactly the
/// capacity asked for). Read into the uninitialized capacity (rustix's `spare_capacity`):
/// zeroing each buffer first cost a tenth of the server's CPU when serving blobs.
fn read_exact_at(file: &std::fs::File, mut buf: Vec<u8>, mut at: u64) -> std::io::Result<Vec<u8>> {
    while buf.len() < buf.capacity() {
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => at += n as u64,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(buf)
}

/// 202 (or 204) with where the upload goes on and how much it holds.
fn upload_accepted(status: StatusCode, repo: &RepoName, id: &str, len: u64) -> Response {
    let mut response = status.into_response();
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        header_value(&format!("/v2/{}/blobs/uploads/{id}", repo.as_str())),
    );
    // Docker's registry answers "0-0" for an empty upload too.
    h.insert(
        header::RANGE,
        header_value(&format!("0-{}", len.saturating_sub(1))),
    );
    h.insert("Docker-Upload-UUID", header_value(id));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    response
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        header_value(&format!("/v2/{}/blobs/{digest}", repo.as_str())),
    );
    h.insert("Docker-Content-Digest", header_value(digest.as_str()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    response
}

async fn start_upload(
    registry: &Arc<Registry>,
    repo: RepoName,
    query: &HashMap<String, String>,
    request: Request,
) -> ApiResult<Response> {
    if let Some(mount) = query.get("mount") {
        let digest = parse_digest(mount)?;
        let from = query.get("from").map(|f| RepoName::parse(f)).transpose()?;
        let storage = registry.storage.clone();
        let (r, d) = (repo.clone(), digest.clone());
        let mounted = blocking(move || {
            let available = match &from {
                Some(from) => storage.blob_in_repo(from, &d)?.is_some(),
                // Without `from`, any blob this registry stores (the spec lets registries
                // find it themselves; every user may read every repository here).
                None => storage.blob_exists(&d),
            };
            if available {
                storage.link_blob(&r, &d)?;
            }
            Ok(available)
        })
        .await?;
        if mounted {
            return Ok(blob_created(&repo, &digest));
        }
    }
    // A monolithic upload names its digest: checked before anything is created.
    let monolithic = query.get("digest").map(|d| parse_digest(d)).transpose()?;
    check_digest_algorithm(query)?;
    let storage = registry.storage.clone();
    let r = repo.clone();
    let id = blocking(move || Ok(storage.create_upload(&r)?)).await?;
    registry.start_session(&id);
    let Some(digest) = monolithic else {
        return Ok(upload_accepted(StatusCode::ACCEPTED, &repo, &id, 0));
    };
    let upload = lock_upload(registry, &repo, &id).await?;
    let result = finish(registry, upload, digest, request).await;
    if result.is_err() {
        // The client never learnt this upload's ID: nothing can resume it.
        registry.end_session(&id);
        let storage = registry.storage.clone();
        blocking(move || Ok(storage.cancel_upload(&id)?)).await?;
    }
    result
}

/// `?digest-algorithm=`: only sha256 is stored, so say so before the client sends a blob.
fn check_digest_algorithm(query: &HashMap<String, String>) -> ApiResult<()> {
    match query.get("digest-algorithm").map(String::as_str) {
        None | Some("sha256") => Ok(()),
        Some(other) => Err(ApiError::new(
            Code::DigestInvalid,
            format!("unsupported digest algorithm {other:?}: this registry stores sha256"),
        )),
    }
}

/// An upload being worked on: its session locked (in this process) and its data file
/// open and flocked (against other processes), with the data's length.
struct LockedUpload {
    repo: RepoName,
    id: String,
    session: tokio::sync::OwnedMutexGuard<UploadSession>,
    file: std::fs::File,
    len: u64,
}

/// Locks an upload once it is known to exist in `repo` (so requests for unknown uploads add
/// nothing to the session map) and opens its data.
async fn lock_upload(
    registry: &Arc<Registry>,
    repo: &RepoName,
    id: &str,
) -> ApiResult<LockedUpload> {
    let storage = registry.storage.clone();
    let (r, i) = (repo.clone(), id.to_owned());
    blocking(move || storage.upload_len(&r, &i)).await?;
    let session = registry.session(id).lock_owned().await;
    let storage = registry.storage.clone();
    let (r, i) = (repo.clone(), id.to_owned());
    match blocking(move || storage.open_upload(&r, &i)).await {
        Ok((file, len)) => Ok(LockedUpload {
            repo: repo.clone(),
            id: id.to_owned(),
            session,
            file,
            len,
        }),
        Err(e) => {
            // Finished or cancelled while this request waited for the lock.
            registry.end_session(id);
            Err(e)
        }
    }
}

async fn patch_upload(
    registry: &Arc<Registry>,
    repo: RepoName,
    id: String,
    request: Request,
) -> ApiResult<Response> {
    let upload = lock_upload(registry, &repo, &id).await?;
    let upload = append(upload, request).await?;
    Ok(upload_accepted(
        StatusCode::ACCEPTED,
        &upload.repo,
        &upload.id,
        upload.len,
    ))
}

async fn finish_upload(
    registry: &Arc<Registry>,
    repo: RepoName,
    id: String,
    query: &HashMap<String, String>,
    request: Request,
) -> ApiResult<Response> {
    let digest = query
        .get("digest")
        .ok_or_else(|| ApiError::new(Code::DigestInvalid, "the digest query parameter is missing"))
        .and_then(|d| parse_digest(d))?;
    let upload = lock_upload(registry, &repo, &id).await?;
    finish(registry, upload, digest, request).await
}

async fn cancel_upload(
    registry: &Arc<Registry>,
    repo: RepoName,
    id: String,
) -> ApiResult<Response> {
    let upload = lock_upload(registry, &repo, &id).await?;
    let storage = registry.storage.clone();
    let i = id.clone();
    // The locks are held until the upload is gone.
    blocking(move || {
        storage.cancel_upload(&i)?;
        drop(upload);
        Ok(())
    })
    .await?;
    registry.end_session(&id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Appends a request's body to a locked upload, then publishes it as `expected`. The
/// session ends only once the upload is published or cancelled, so no other request can
/// reach its data in between.
async fn finish(
    registry: &Arc<Registry>,
    upload: LockedUpload,
    expected: Digest,
    request: Request,
) -> ApiResult<Response> {
    let mut upload = append(upload, request).await?;
    let storage = registry.storage.clone();
    let wanted = expected.clone();
    let hasher = upload.session.hasher.take();
    let (upload, outcome) = tokio::task::spawn_blocking(move || {
        let outcome = publish(&storage, &mut upload, hasher, &wanted);
        (upload, outcome)
    })
    .await
    .map_err(|e| ApiError::new(Code::Unknown, format!("task failed: {e}")))?;
    registry.end_session(&upload.id);
    let repo = upload.repo.clone();
    drop(upload);
    outcome?;
    Ok(blob_created(&repo, &expected))
}

/// Checks a finished upload's digest and publishes it, or cancels it on a mismatch.
fn publish(
    storage: &Storage,
    upload: &mut LockedUpload,
    hasher: Option<Sha256>,
    wanted: &Digest,
) -> ApiResult<()> {
    // Trust the running hash only for exactly the bytes in the file.
    let consistent =
        upload.session.offset == upload.len && upload.file.metadata()?.len() == upload.len;
    let actual = match hasher.filter(|_| consistent) {
        Some(h) => Digest::from_sha256_hex(&hex_of(&h.finalize()))
            .map_err(|e| ApiError::new(Code::Unknown, format!("hashing: {e}")))?,
        None => hash_file(&mut upload.file)?,
    };
    if actual != *wanted {
        storage.cancel_upload(&upload.id)?;
        return Err(ApiError::new(
            Code::DigestInvalid,
            format!(
                "the upload's content has digest {actual}, not {wanted}; the upload is cancelled"
            ),
        )
        .with_detail(serde_json::json!({ "digest": wanted.as_str() })));
    }
    storage.commit_upload(&upload.repo, &upload.id, &upload.file, wanted)?;
    Ok(())
}

/// The sha256 of a whole file, read from its start.
fn hash_file(file: &mut std::fs::File) -> ApiResult<Digest> {
    file.seek(SeekFrom::Start(0))?;
    let mut digester = berth_reference::Sha256Digester::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(digester.finish());
        }
        digester.update(&buf[..n]);
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The byte count a `Content-Range: <start>-<end>` header declares for this request's body,
/// checked to continue the upload (which holds `len` bytes).
fn declared_range(headers: &HeaderMap, len: u64) -> ApiResult<Option<u64>> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    // The spec's form is "start-end"; accept HTTP's "bytes start-end/total" too.
    let spec = text
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches([' ', '=']);
    let spec = spec.split('/').next().unwrap_or("");
    let Some((start, end)) = spec
        .split_once('-')
        .and_then(|(s, e)| Some((s.trim().parse::<u64>().ok()?, e.trim().parse::<u64>().ok()?)))
    else {
        return Err(ApiError::new(
            Code::BlobUploadInvalid,
            format!("invalid Content-Range {text:?}"),
        ));
    };
    let count = end.checked_sub(start).and_then(|n| n.checked_add(1));
    let Some(count) = count.filter(|_| start == len) else {
        return Err(ApiError::new(
            Code::RangeInvalid,
            format!("Content-Range {text:?} does not continue the upload, which holds {len} bytes"),
        ));
    };
    if content_length(headers).is_some_and(|n| n != count) {
        return Err(ApiError::new(
            Code::SizeInvalid,
            format!("Content-Range {text:?} does not match Content-Length"),
        ));
    }
    Ok(Some(count))
}

/// Inactivity allowed between two pieces of a request body.
const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(120);

/// Streams a request body onto the end of a locked upload, hashing as it goes, in
/// [`WRITE_CHUNK`] writes on the blocking pool. Each write owns the upload (and so its
/// locks) until it is done, even if the request is dropped meanwhile. What arrived before
/// a broken body stays in the upload (a client may ask where it stands and go on from
/// there), and the request fails; a body longer or shorter than its `Content-Range` is
/// undone.
async fn append(mut upload: LockedUpload, request: Request) -> ApiResult<LockedUpload> {
    let declared = declared_range(request.headers(), upload.len)?;
    let mut body = request.into_body();
    if upload.session.offset != upload.len {
        // Not the bytes this session hashed (a restart, or a write that failed midway).
        upload.session.hasher = None;
        upload.session.offset = upload.len;
    }
    let start = upload.len;
    // Body frames are kept as they arrive (no copy) until a write's worth is pending.
    let mut pending: Vec<bytes::Bytes> = Vec::new();
    let mut pending_len = 0usize;
    let mut broken = None;
    loop {
        let frame = match tokio::time::timeout(BODY_IDLE, body.frame()).await {
            Ok(None) => None,
            Ok(Some(Ok(frame))) => Some(frame),
            Ok(Some(Err(e))) => {
                broken = Some(e.to_string());
                None
            }
            Err(_) => {
                broken = Some(format!("no data for {} s", BODY_IDLE.as_secs()));
                None
            }
        };
        let done = frame.is_none();
        if let Some(data) = frame.and_then(|f| f.into_data().ok())
            && !data.is_empty()
        {
            pending_len += data.len();
            pending.push(data);
        }
        let over = declared.is_some_and(|n| upload.len - start + pending_len as u64 > n);
        if pending_len >= WRITE_CHUNK || (done && pending_len > 0) || over {
            let chunks = std::mem::take(&mut pending);
            pending_len = 0;
            let (back, result) = tokio::task::spawn_blocking(move || {
                let mut result = Ok(());
                for chunk in &chunks {
                    result = upload.file.write_all(chunk);
                    if result.is_err() {
                        upload.session.hasher = None;
                        upload.session.offset = u64::MAX;
                        break;
                    }
                    if let Some(h) = upload.session.hasher.as_mut() {
                        h.update(chunk);
                    }
                    upload.session.offset += chunk.len() as u64;
                    upload.len += chunk.len() as u64;
                }
                (upload, result)
            })
            .await
            .map_err(|e| ApiError::new(Code::Unknown, format!("task failed: {e}")))?;
            upload = back;
            result?;
        }
        if done || over {
            break;
        }
    }
    let got = upload.len - start;
    if let Some(count) = declared
        && got != count
        && broken.is_none()
    {
        // Undo the chunk: the upload is as it was before this request.
        tokio::task::spawn_blocking(move || {
            let _ = upload.file.set_len(start);
            upload.session.hasher = None;
            upload.session.offset = start;
        })
        .await
        .map_err(|e| ApiError::new(Code::Unknown, format!("task failed: {e}")))?;
        return Err(ApiError::new(
            Code::RangeInvalid,
            format!("the body does not hold the {count} bytes its Content-Range says"),
        ));
    }
    if let Some(e) = broken {
        return Err(ApiError::new(
            Code::BlobUploadInvalid,
            format!("the request body broke off after {} bytes: {e}", upload.len),
        ));
    }
    Ok(upload)
}

/// The fuzz target's view of this module's parsers.
pub(super) fn fuzz_parsers(text: &str) {
    if let Ok(Route::Manifest(_, reference)) = route(text) {
        let _ = ManifestRef::parse(&reference);
    }
    for len in [0, 1, 100, u64::MAX] {
        if let Some(Ok((start, end))) = parse_range(text, len) {
            assert!(
                start <= end && end < len,
                "{text:?} against {len}: {start}-{end}"
            );
        }
    }
    if let Ok(value) = HeaderValue::from_str(text) {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_RANGE, value);
        let _ = declared_range(&headers, 5);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_share_the_read_budget() {
        let downloads = Arc::new(AtomicUsize::new(0));
        let first = Download::start(&downloads);
        assert_eq!(first.chunk(), READ_CHUNK_MAX);
        let more: Vec<Download> = (0..255).map(|_| Download::start(&downloads)).collect();
        assert_eq!(first.chunk(), READ_BUDGET / 256);
        let many: Vec<Download> = (0..4096).map(|_| Download::start(&downloads)).collect();
        assert_eq!(first.chunk(), READ_CHUNK_MIN);
        drop((more, many));
        assert_eq!(downloads.load(Ordering::Relaxed), 1);
        drop(first);
        assert_eq!(downloads.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn routes() {
        let name = |p: &str| match route(p) {
            Ok(Route::Manifest(r, t)) => format!("manifest {} {t}", r.as_str()),
            Ok(Route::Blob(r, t)) => format!("blob {} {t}", r.as_str()),
            Ok(Route::Uploads(r)) => format!("uploads {}", r.as_str()),
            Ok(Route::Upload(r, t)) => format!("upload {} {t}", r.as_str()),
            Ok(Route::Tags(r)) => format!("tags {}", r.as_str()),
            Ok(Route::Referrers(r, t)) => format!("referrers {} {t}", r.as_str()),
            Ok(Route::Ping) => "ping".into(),
            Ok(Route::Catalog) => "catalog".into(),
            Err(e) => e.code.as_str().into(),
        };
        assert_eq!(name("/v2/"), "ping");
        assert_eq!(name("/v2"), "ping");
        assert_eq!(name("/v2/_catalog"), "catalog");
        assert_eq!(name("/v2/a/b/manifests/latest"), "manifest a/b latest");
        assert_eq!(name("/v2/manifests/manifests/x"), "manifest manifests x");
        assert_eq!(name("/v2/a/blobs/uploads/"), "uploads a");
        assert_eq!(name("/v2/a/blobs/uploads/0f"), "upload a 0f");
        assert_eq!(name("/v2/a/blobs/sha256:00"), "blob a sha256:00");
        assert_eq!(name("/v2/a/tags/list"), "tags a");
        assert_eq!(name("/v2/a/referrers/sha256:00"), "referrers a sha256:00");
        assert_eq!(name("/v2/../etc/manifests/x"), "NAME_INVALID");
        assert_eq!(name("/v2/a/%2e%2e/manifests/x"), "NAME_INVALID");
        assert_eq!(name("/v2/a/other/x"), "NOT_FOUND");
        assert_eq!(name("/v3/a/manifests/x"), "NOT_FOUND");
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=90-200", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=500-0", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }

    #[test]
    fn pages() {
        let items: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let (page, next) = paginate(items.clone(), &q(&[("n", "2")])).unwrap();
        assert_eq!(
            (page, next),
            (vec!["a".into(), "b".into()], Some((2, "b".into())))
        );
        let (page, next) = paginate(items.clone(), &q(&[("n", "2"), ("last", "b")])).unwrap();
        assert_eq!((page, next), (vec!["c".into()], None));
        let (page, _) = paginate(items.clone(), &q(&[("n", "0")])).unwrap();
        assert!(page.is_empty());
        assert!(paginate(items, &q(&[("n", "x")])).is_err());
    }
}
