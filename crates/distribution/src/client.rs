//! The HTTP side of the distribution protocol: one [`Repository`] session per repository,
//! with the endpoint chosen by a `/v2/` ping, authentication answered once and reused, and
//! each registry operation (manifests, blobs, uploads, tags) as one method.

use std::{
    io::{self, Read},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use berth_reference::Digest;
use reqwest::{
    Method, StatusCode, Url,
    blocking::{Body, Client, RequestBuilder, Response},
    header::{self, HeaderValue},
};
use serde::Deserialize;

use crate::{
    auth::{Challenge, TokenResponse, parse_challenges},
    config::{Endpoint, RegistryConfig},
    credentials::Credential,
    error::{DistributionError, Result, describe_transport},
};

/// Manifests larger than this are refused (distribution's own limit is 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Configs larger than this are refused.
pub const MAX_CONFIG: u64 = 16 << 20;

/// Every manifest type berth reads, for `Accept`.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Attempts for an operation that failed in transit or with a 5xx/429 answer.
const ATTEMPTS: u32 = 5;
/// Time limit of a request without a large body (ping, manifest, HEAD, token).
const SMALL_REQUEST: Duration = Duration::from_secs(60);
/// Time limit of one blob GET, reads included: a download that takes longer goes on in
/// another ranged request, so this bounds how long a stalled body can hang a pull (the first
/// request and `ATTEMPTS` resumes without a byte, then the pull fails).
/// `BERTH_BLOB_REQUEST_TIMEOUT` (seconds) changes it: for links so slow or so flaky that the
/// default does not suit, and for tests.
const BLOB_SEGMENT: Duration = Duration::from_secs(120);

/// [`BLOB_SEGMENT`], or `BERTH_BLOB_REQUEST_TIMEOUT`'s seconds when set to a positive number.
fn blob_segment() -> Duration {
    static SEGMENT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *SEGMENT.get_or_init(|| {
        std::env::var("BERTH_BLOB_REQUEST_TIMEOUT")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&secs| secs > 0)
            .map_or(BLOB_SEGMENT, Duration::from_secs)
    })
}
/// Time limit of one upload request (a chunk or a monolithic PUT): a stalled upload fails
/// and the blob's upload starts again.
const UPLOAD_REQUEST: Duration = Duration::from_secs(900);

/// How long to wait before attempt `n` (1-based) of a retried operation.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(5))
}

/// Which operations a session needs, for the token's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only.
    Pull,
    /// Read and write.
    Push,
}

/// The current answer to the registry's challenge.
#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    /// The `Authorization` header to send, and until when it is good.
    header: Option<(HeaderValue, Option<Instant>)>,
}

/// A session with one repository on one registry.
pub struct Repository {
    http: Client,
    /// The registry as the user named it (`docker.io`, `127.0.0.1:5000`).
    registry: String,
    /// The endpoint's base URL, without a trailing slash.
    base: String,
    /// Whether that endpoint is a mirror.
    mirror: bool,
    /// The repository's path (`library/busybox`).
    name: String,
    /// The scopes tokens are asked for.
    scopes: Vec<String>,
    credential: Option<Credential>,
    auth: Mutex<AuthState>,
}

/// What a manifest request returned.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes (their digest is the manifest's).
    pub bytes: Vec<u8>,
    /// Their digest.
    pub digest: Digest,
    /// The media type (from the document, else the `Content-Type`).
    pub media_type: String,
}

/// How a blob upload starts.
pub enum UploadStart {
    /// The registry mounted the blob from another repository: nothing to send.
    Mounted,
    /// Send the blob to this upload URL.
    Upload {
        /// The upload session's URL.
        location: Url,
        /// `OCI-Chunk-Min-Length`, if the registry wants chunks of at least this size.
        min_chunk: Option<u64>,
    },
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Builds the HTTP client for an endpoint: system roots plus the registry's certs.d CAs and
/// client certificate; unverified TLS only for insecure registries; no proxy for loopback.
fn http_client(config: &RegistryConfig, registry: &str, endpoint: &Endpoint) -> Result<Client> {
    let mut b = Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .timeout(None::<Duration>)
        // TCP and TLS together; Docker allows 30 s to connect and 10 s for the handshake.
        .connect_timeout(Duration::from_secs(15))
        // Blob bodies have no overall time limit (they may be gigabytes); a peer that went
        // away is noticed by keepalive probes within about a minute instead.
        .tcp_keepalive(Duration::from_secs(30))
        .tcp_keepalive_interval(Duration::from_secs(10))
        .tcp_keepalive_retries(3)
        .tls_danger_accept_invalid_certs(!endpoint.verify_tls);
    if config.is_insecure(registry) {
        // Loopback and configured-insecure registries are local: never through a proxy.
        b = b.no_proxy();
    }
    let (cas, clients) = config.certificates(registry);
    for ca in cas {
        let pem = std::fs::read(&ca)
            .map_err(|e| DistributionError::Usage(format!("{}: {e}", ca.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            DistributionError::Usage(format!("{}: {}", ca.display(), describe_transport(&e)))
        })?;
        b = b.tls_certs_merge(certs);
    }
    if let Some((cert, key)) = clients.first() {
        let mut pem = std::fs::read(cert)
            .map_err(|e| DistributionError::Usage(format!("{}: {e}", cert.display())))?;
        pem.extend(
            std::fs::read(key)
                .map_err(|e| DistributionError::Usage(format!("{}: {e}", key.display())))?,
        );
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
            DistributionError::Usage(format!("{}: {}", cert.display(), describe_transport(&e)))
        })?;
        b = b.identity(id);
    }
    b.build().map_err(|e| DistributionError::Connect {
        method: "set up".into(),
        url: endpoint.base.clone(),
        reason: describe_transport(&e),
    })
}

impl Repository {
    /// Opens a session with `registry`/`name` for `access`, plus pull access to
    /// `extra_pull` repositories (cross-repository mounts). Tries each endpoint in turn
    /// (mirrors, HTTPS, then plain HTTP for insecure registries) with a `/v2/` ping, and
    /// answers the registry's challenge before the first real request.
    pub fn open(
        config: &RegistryConfig,
        registry: &str,
        name: &str,
        access: Access,
        extra_pull: &[String],
        credential: Option<Credential>,
    ) -> Result<Repository> {
        let actions: &[&str] = match access {
            Access::Pull => &["pull"],
            Access::Push => &["pull", "push"],
        };
        // An empty name is a login check: a token for no repository.
        let mut scopes = Vec::new();
        if !name.is_empty() {
            scopes.push(crate::auth::repository_scope(name, actions));
        }
        for other in extra_pull {
            if other != name {
                scopes.push(crate::auth::repository_scope(other, &["pull"]));
            }
        }
        // Mirrors serve pulls only; a login (no repository) goes to the registry itself.
        let endpoints = config.endpoints(registry, access == Access::Pull && !name.is_empty());
        let mut last_err = None;
        for endpoint in &endpoints {
            let http = http_client(config, registry, endpoint)?;
            let repo = Repository {
                http,
                registry: registry.to_string(),
                base: endpoint.base.clone(),
                mirror: endpoint.mirror,
                name: name.to_string(),
                scopes: scopes.clone(),
                credential: credential.clone(),
                auth: Mutex::new(AuthState::default()),
            };
            match repo.ping() {
                Ok(()) => match repo.authenticate() {
                    Ok(()) => return Ok(repo),
                    Err(e) if endpoint.mirror => {
                        tracing::warn!(mirror = %endpoint.base, error = %e, "mirror skipped");
                        last_err = Some(e);
                    }
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    tracing::debug!(endpoint = %endpoint.base, error = %e, "endpoint unusable");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.expect("every registry has an endpoint"))
    }

    /// The registry as the user named it.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository's path.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the session is with a mirror (a failed pull may go to the registry itself).
    pub fn is_mirror(&self) -> bool {
        self.mirror
    }

    /// The base URL in use (which endpoint answered).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /v2/`: checks that the endpoint speaks the protocol and notes its challenge.
    fn ping(&self) -> Result<()> {
        let url = self.url("/v2/")?;
        let resp = self
            .http
            .get(url.clone())
            .timeout(SMALL_REQUEST)
            .send()
            .map_err(|e| connect_error("GET", &url, &e))?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED => {
                let challenge = challenge_of(&resp);
                if challenge.is_none() {
                    return Err(DistributionError::Unauthorized {
                        registry: self.registry.clone(),
                        detail: "the registry answered 401 without a challenge berth understands"
                            .into(),
                    });
                }
                self.auth.lock().expect("auth lock").challenge = challenge;
                Ok(())
            }
            _ => Err(registry_error("GET", &url, resp)),
        }
    }

    /// Answers the noted challenge for the session's scopes: a Basic header, or a token.
    fn authenticate(&self) -> Result<()> {
        let challenge = self.auth.lock().expect("auth lock").challenge.clone();
        let header = match challenge {
            None => return Ok(()),
            Some(Challenge::Basic) => match &self.credential {
                Some(Credential::Basic { username, password }) => {
                    Some((basic_header(username, password), None))
                }
                _ => None,
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let mut scopes = self.scopes.clone();
                if let Some(s) = scope
                    && !scopes.contains(&s)
                {
                    scopes.push(s);
                }
                let (token, lifetime) = self.fetch_token(&realm, service.as_deref(), &scopes)?;
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        DistributionError::bad("token", "the token server sent an unusable token")
                    })?;
                value.set_sensitive(true);
                Some((value, Some(Instant::now() + lifetime)))
            }
        };
        self.auth.lock().expect("auth lock").header = header;
        Ok(())
    }

    /// Asks a token server for a token covering `scopes`: anonymously, with the user's
    /// password (GET with Basic), or with an identity token (OAuth2 refresh grant).
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(String, Duration)> {
        let mut url = Url::parse(realm)
            .map_err(|e| DistributionError::bad(format!("token realm {realm:?}"), e))?;
        let request = match &self.credential {
            Some(Credential::IdentityToken { token, .. }) => {
                let mut form = Url::parse("http://form/").expect("static URL");
                {
                    let mut q = form.query_pairs_mut();
                    q.append_pair("grant_type", "refresh_token");
                    q.append_pair("refresh_token", token);
                    q.append_pair("client_id", "berth");
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    if !scopes.is_empty() {
                        q.append_pair("scope", &scopes.join(" "));
                    }
                }
                self.http
                    .post(url.clone())
                    .header(
                        header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded; charset=utf-8",
                    )
                    .body(form.query().unwrap_or_default().to_string())
            }
            other => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scopes {
                        q.append_pair("scope", s);
                    }
                    if let Some(Credential::Basic { username, .. }) = other {
                        q.append_pair("account", username);
                    }
                }
                let mut r = self.http.get(url.clone());
                if let Some(Credential::Basic { username, password }) = other {
                    r = r.basic_auth(username, Some(password));
                }
                r
            }
        };
        let resp = request
            .timeout(SMALL_REQUEST)
            .send()
            .map_err(|e| connect_error("GET", &url, &e))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.unauthorized(if self.credential.is_some() {
                "incorrect username or password"
            } else {
                "authentication required"
            }));
        }
        if !status.is_success() {
            return Err(registry_error("GET", &url, resp));
        }
        let body = read_limited(resp, 1 << 20, "token answer")?;
        let answer: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| DistributionError::bad(format!("token answer from {realm}"), e))?;
        let token = answer.token().ok_or_else(|| {
            DistributionError::bad(format!("token answer from {realm}"), "no token in it")
        })?;
        Ok((token.to_string(), answer.lifetime()))
    }

    fn unauthorized(&self, what: &str) -> DistributionError {
        // The registry's own code says "unauthorized" already; HEAD answers have no body.
        let what = what.strip_prefix("unauthorized: ").unwrap_or(what);
        let what = if what.starts_with("401") {
            "authentication required"
        } else {
            what
        };
        let hint = if self.credential.is_none() {
            format!("; log in with `berth login {}`", self.registry)
        } else {
            String::new()
        };
        DistributionError::Unauthorized {
            registry: self.registry.clone(),
            detail: format!("{what}{hint}"),
        }
    }

    /// Checks that the credentials are accepted (`berth login`): the ping's challenge must
    /// be answered without a 401.
    pub fn check_login(&self) -> Result<()> {
        let url = self.url("/v2/")?;
        let resp = match self.send(Method::GET, url.clone(), |r| r.timeout(SMALL_REQUEST)) {
            Err(DistributionError::Unauthorized { .. }) => {
                return Err(self.unauthorized("incorrect username or password"));
            }
            other => other?,
        };
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized("incorrect username or password"));
        }
        if !resp.status().is_success() {
            return Err(registry_error("GET", &url, resp));
        }
        Ok(())
    }

    /// A URL under the endpoint.
    fn url(&self, path: &str) -> Result<Url> {
        Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| DistributionError::Usage(format!("registry URL {}{path}: {e}", self.base)))
    }

    /// A URL of this repository's API (`/v2/<name>/<rest>`).
    pub(crate) fn repo_url(&self, rest: &str) -> Result<Url> {
        self.url(&format!("/v2/{}/{rest}", self.name))
    }

    /// Resolves an upload `Location` (absolute or relative to the endpoint).
    fn location(&self, resp: &Response, what: &str) -> Result<Url> {
        let loc = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| DistributionError::bad(what.to_string(), "no Location header"))?;
        Url::parse(&self.base)
            .and_then(|b| b.join(loc))
            .map_err(|e| DistributionError::bad(format!("{what} Location {loc:?}"), e))
    }

    /// Sends a request with the session's authorization. A 401 (an expired token, or a
    /// scope the registry wants that was not asked for) is answered once more and the
    /// request repeated; `build` makes the request afresh each time.
    pub(crate) fn send(
        &self,
        method: Method,
        url: Url,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let mut renewed = false;
        loop {
            let header = {
                let auth = self.auth.lock().expect("auth lock");
                auth.header.clone()
            };
            if let Some((_, Some(expiry))) = &header
                && Instant::now() >= *expiry
                && !renewed
            {
                self.authenticate()?;
                renewed = true;
                continue;
            }
            let mut req = self.http.request(method.clone(), url.clone());
            if let Some((value, _)) = header {
                req = req.header(header::AUTHORIZATION, value);
            }
            let resp = build(req)
                .send()
                .map_err(|e| connect_error(method.as_str(), &url, &e))?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenge = challenge_of(&resp);
            if renewed || challenge.is_none() {
                return Err(self.unauthorized(&error_detail(resp)));
            }
            self.auth.lock().expect("auth lock").challenge = challenge;
            self.authenticate()?;
            renewed = true;
        }
    }

    /// Runs `op` again after transport errors and 5xx/429 answers, with backoff.
    pub(crate) fn retrying<T>(&self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        let mut attempt = 1;
        loop {
            match op() {
                Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                    tracing::debug!(error = %e, attempt, "retrying");
                    thread::sleep(backoff(attempt));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Fetches a manifest (or index) by tag or digest, refusing one over [`MAX_MANIFEST`].
    /// By digest, the bytes must hash to it; by tag, to `Docker-Content-Digest` if sent.
    pub fn get_manifest(&self, reference: &str, familiar: &str) -> Result<FetchedManifest> {
        if let Ok(d) = Digest::parse(reference)
            && d.algorithm() != "sha256"
        {
            // Content named by another algorithm could not be verified here.
            return Err(DistributionError::Usage(format!(
                "{familiar}: {} digests are not supported (berth verifies sha256)",
                d.algorithm()
            )));
        }
        let url = self.repo_url(&format!("manifests/{reference}"))?;
        let accept = MANIFEST_TYPES.join(", ");
        let resp = self.retrying(|| {
            let resp = self.send(Method::GET, url.clone(), |r| {
                r.header(header::ACCEPT, accept.as_str())
                    .timeout(SMALL_REQUEST)
            })?;
            if resp.status().is_server_error() || resp.status() == StatusCode::TOO_MANY_REQUESTS {
                return Err(registry_error("GET", &url, resp));
            }
            Ok(resp)
        })?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => {
                let detail = error_detail(resp);
                return Err(if detail.contains("name unknown") {
                    DistributionError::RepositoryNotFound {
                        repository: self.name.clone(),
                        detail,
                    }
                } else {
                    DistributionError::ManifestNotFound {
                        reference: familiar.to_string(),
                        detail,
                    }
                });
            }
            StatusCode::FORBIDDEN => {
                return Err(DistributionError::Denied {
                    registry: self.registry.clone(),
                    detail: error_detail(resp),
                });
            }
            _ => return Err(registry_error("GET", &url, resp)),
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok());
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = read_limited(resp, MAX_MANIFEST, &format!("manifest {familiar}"))?;
        let digest = Digest::sha256_of(&bytes);
        let expected = Digest::parse(reference).ok().or(header_digest);
        // (A header naming another algorithm cannot be compared; the reference's own
        // digest is always sha256, checked above.)
        if let Some(expected) = expected
            && expected.algorithm() == "sha256"
            && expected != digest
        {
            return Err(DistributionError::DigestMismatch {
                what: format!("manifest {familiar}"),
                expected,
                actual: digest,
            });
        }
        #[derive(Deserialize)]
        struct Head {
            #[serde(rename = "mediaType", default)]
            media_type: Option<String>,
            #[serde(rename = "schemaVersion", default)]
            schema_version: Option<u32>,
        }
        let head: Head = serde_json::from_slice(&bytes)
            .map_err(|e| DistributionError::bad(format!("manifest {familiar}"), e))?;
        if head.schema_version == Some(1) {
            return Err(DistributionError::bad(
                format!("manifest {familiar}"),
                "Docker image manifest schema 1 is not supported (push the image again with a current client)",
            ));
        }
        let media_type = head
            .media_type
            .or(content_type)
            .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
        Ok(FetchedManifest {
            bytes,
            digest,
            media_type,
        })
    }

    /// Fetches a small blob (a config) whole, verified.
    pub fn get_small_blob(
        &self,
        digest: &Digest,
        size: u64,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>> {
        if size > limit {
            return Err(too_large(what, limit));
        }
        let data = read_up_to(self.blob_reader(digest, Some(size), |_| {})?, limit, what)?;
        let actual = Digest::sha256_of(&data);
        if &actual != digest {
            return Err(DistributionError::DigestMismatch {
                what: what.to_string(),
                expected: digest.clone(),
                actual,
            });
        }
        Ok(data)
    }

    /// A reader of a blob that resumes with `Range` after a dropped connection. `size`,
    /// when known, bounds it; `progress` hears the offset as bytes arrive.
    pub fn blob_reader<'a, F: FnMut(u64) + Send + 'a>(
        &'a self,
        digest: &Digest,
        size: Option<u64>,
        progress: F,
    ) -> Result<BlobReader<'a, F>> {
        let mut reader = BlobReader {
            repo: self,
            url: self.repo_url(&format!("blobs/{digest}"))?,
            offset: 0,
            size,
            response: None,
            failures: 0,
            progress,
        };
        reader.response = Some(self.retrying(|| reader.open())?);
        Ok(reader)
    }

    /// Whether the repository has a blob (`HEAD`).
    pub fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let url = self.repo_url(&format!("blobs/{digest}"))?;
        self.retrying(|| {
            let resp = self.send(Method::HEAD, url.clone(), |r| r.timeout(SMALL_REQUEST))?;
            match resp.status() {
                s if s.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(registry_error("HEAD", &url, resp)),
            }
        })
    }

    /// Starts a blob upload, first asking the registry to mount `mount` (a blob and the
    /// repository on the same registry that has it) when given.
    pub fn start_upload(&self, mount: Option<(&Digest, &str)>) -> Result<UploadStart> {
        let mut url = self.repo_url("blobs/uploads/")?;
        if let Some((digest, from)) = mount {
            url.query_pairs_mut()
                .append_pair("mount", digest.as_str())
                .append_pair("from", from);
        }
        let resp = self.retrying(|| {
            let resp = self.send(Method::POST, url.clone(), |r| {
                r.header(header::CONTENT_LENGTH, "0").timeout(SMALL_REQUEST)
            })?;
            if resp.status().is_server_error() {
                return Err(registry_error("POST", &url, resp));
            }
            Ok(resp)
        })?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(UploadStart::Mounted),
            StatusCode::ACCEPTED => {
                let min_chunk = resp
                    .headers()
                    .get("oci-chunk-min-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                Ok(UploadStart::Upload {
                    location: self.location(&resp, "blob upload")?,
                    min_chunk,
                })
            }
            _ => Err(self.write_error("POST", &url, resp)),
        }
    }

    /// Sends one chunk of an upload (`PATCH` with `Content-Range`), `len` bytes that `body`
    /// makes (afresh when the request is repeated); returns the session's next URL.
    pub fn upload_chunk(
        &self,
        location: &Url,
        start: u64,
        len: u64,
        body: impl Fn() -> Body,
    ) -> Result<Url> {
        let resp = self.send(Method::PATCH, location.clone(), |r| {
            r.timeout(UPLOAD_REQUEST)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, len)
                .header(
                    header::CONTENT_RANGE,
                    format!("{start}-{}", (start + len).saturating_sub(1)),
                )
                .body(body())
        })?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.write_error("PATCH", location, resp));
        }
        self.location(&resp, "blob upload")
    }

    /// Ends an upload with `PUT ?digest=`, sending `body` (the whole blob for a monolithic
    /// upload, nothing after chunks).
    pub fn finish_upload(
        &self,
        location: &Url,
        digest: &Digest,
        body: impl Fn() -> Option<(Body, u64)>,
    ) -> Result<()> {
        let mut url = location.clone();
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let resp = self.send(Method::PUT, url.clone(), |r| match body() {
            Some((b, len)) => r
                .timeout(UPLOAD_REQUEST)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, len)
                .body(b),
            None => r.timeout(SMALL_REQUEST).header(header::CONTENT_LENGTH, "0"),
        })?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.write_error("PUT", &url, resp));
        }
        Ok(())
    }

    /// Puts a manifest under a tag (or its digest); returns the digest the registry names.
    pub fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<Digest> {
        let url = self.repo_url(&format!("manifests/{reference}"))?;
        let resp = self.retrying(|| {
            let resp = self.send(Method::PUT, url.clone(), |r| {
                r.header(header::CONTENT_TYPE, media_type)
                    .body(bytes.to_vec())
                    .timeout(SMALL_REQUEST)
            })?;
            if resp.status().is_server_error() {
                return Err(registry_error("PUT", &url, resp));
            }
            Ok(resp)
        })?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.write_error("PUT", &url, resp));
        }
        let ours = Digest::sha256_of(bytes);
        if let Some(theirs) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok())
            && theirs != ours
        {
            return Err(DistributionError::DigestMismatch {
                what: format!("manifest put to {url}"),
                expected: ours,
                actual: theirs,
            });
        }
        Ok(ours)
    }

    /// Every tag of the repository (following `Link` pages).
    pub fn tags(&self) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut out = Vec::new();
        let mut url = self.repo_url("tags/list")?;
        for _ in 0..1000 {
            let resp = self
                .retrying(|| self.send(Method::GET, url.clone(), |r| r.timeout(SMALL_REQUEST)))?;
            if !resp.status().is_success() {
                return Err(registry_error("GET", &url, resp));
            }
            let next = resp
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(|v| {
                    v.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                });
            let body = read_limited(resp, 16 << 20, "tag list")?;
            let page: Tags =
                serde_json::from_slice(&body).map_err(|e| DistributionError::bad("tag list", e))?;
            out.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) => {
                    url = Url::parse(&self.base)
                        .and_then(|b| b.join(&n))
                        .map_err(|e| DistributionError::bad("tag list Link", e))?;
                }
                None => return Ok(out),
            }
        }
        Err(DistributionError::bad("tag list", "more than 1000 pages"))
    }

    /// An error answer to a write: 401/403 say what access is missing.
    fn write_error(&self, method: &str, url: &Url, resp: Response) -> DistributionError {
        match resp.status() {
            StatusCode::FORBIDDEN => DistributionError::Denied {
                registry: self.registry.clone(),
                detail: error_detail(resp),
            },
            StatusCode::UNAUTHORIZED => self.unauthorized(&error_detail(resp)),
            _ => registry_error(method, url, resp),
        }
    }
}

/// A blob download that survives dropped connections: after a read error or an early end,
/// it asks again from where it stopped (`Range: bytes=N-`), a few times, with backoff.
pub struct BlobReader<'a, F> {
    repo: &'a Repository,
    url: Url,
    offset: u64,
    size: Option<u64>,
    response: Option<Response>,
    failures: u32,
    progress: F,
}

impl<F: FnMut(u64)> BlobReader<'_, F> {
    /// Sends the GET for the rest of the blob.
    fn open(&self) -> Result<Response> {
        let offset = self.offset;
        let resp = self.repo.send(Method::GET, self.url.clone(), |r| {
            // A body that stalls (a live peer that stops sending, which keepalive cannot
            // see) fails after this long, and the download resumes from where it was.
            let r = r.timeout(blob_segment());
            if offset > 0 {
                r.header(header::RANGE, format!("bytes={offset}-"))
            } else {
                r
            }
        })?;
        match resp.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(resp),
            StatusCode::NOT_FOUND => Err(DistributionError::Registry {
                method: "GET".into(),
                url: self.url.to_string(),
                status: 404,
                detail: format!("blob unknown to the registry: {}", error_detail(resp)),
            }),
            _ => Err(registry_error("GET", &self.url, resp)),
        }
    }

    /// Reopens after a failure; a 200 answer to a ranged request is skipped up to the
    /// offset.
    fn reopen(&mut self, why: impl std::fmt::Display) -> io::Result<()> {
        self.response = None;
        let mut last_failure = why.to_string();
        loop {
            self.failures += 1;
            if self.failures > ATTEMPTS {
                let of = self.size.map(|s| format!(" of {s}")).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "{}: gave up after {ATTEMPTS} attempts to resume at byte {}{of}, none of which \
                     got a byte further (last: {})",
                    self.url, self.offset, last_failure
                )));
            }
            thread::sleep(backoff(self.failures));
            match self.resume() {
                Ok(resp) => {
                    tracing::debug!(url = %self.url, offset = self.offset, "blob download resumed");
                    self.response = Some(resp);
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!(url = %self.url, error = %e, attempt = self.failures, "resume failed");
                    last_failure = e.to_string();
                    // An answer that is not a passing trouble (404, 401) will not change.
                    if let Some(DistributionError::Registry { status, .. }) = e
                        .get_ref()
                        .and_then(|e| e.downcast_ref::<DistributionError>())
                        && *status < 500
                        && *status != 429
                    {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// One attempt at the rest of the blob: a 206 must start at the offset; a 200 (a server
    /// that ignores `Range`) is read up to it.
    fn resume(&self) -> io::Result<Response> {
        let mut resp = self.open().map_err(io::Error::other)?;
        if self.offset == 0 {
            return Ok(resp);
        }
        if resp.status() == StatusCode::OK {
            let skipped = io::copy(&mut (&mut resp).take(self.offset), &mut io::sink())?;
            if skipped != self.offset {
                return Err(io::Error::other(format!(
                    "{}: the body ended at byte {skipped}, before the resume point {}",
                    self.url, self.offset
                )));
            }
            return Ok(resp);
        }
        let start = resp
            .headers()
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split('-').next())
            .and_then(|v| v.parse::<u64>().ok());
        if start != Some(self.offset) {
            return Err(io::Error::other(format!(
                "{}: asked to resume at byte {}, the registry answered {:?}",
                self.url,
                self.offset,
                resp.headers().get(header::CONTENT_RANGE)
            )));
        }
        Ok(resp)
    }
}

impl<F: FnMut(u64)> Read for BlobReader<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(resp) = self.response.as_mut() else {
                self.reopen("no response")?;
                continue;
            };
            match resp.read(buf) {
                Ok(0) => {
                    if self.size.is_some_and(|s| self.offset < s) {
                        tracing::debug!(url = %self.url, offset = self.offset, "blob cut short");
                        self.reopen("the body ended early")?;
                        continue;
                    }
                    return Ok(0);
                }
                Ok(n) => {
                    self.offset += n as u64;
                    if let Some(size) = self.size
                        && self.offset > size
                    {
                        return Err(io::Error::other(format!(
                            "{}: the registry sent more than the {size} bytes the manifest says",
                            self.url
                        )));
                    }
                    self.failures = 0;
                    (self.progress)(self.offset);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Every byte is in and only the end of the body went wrong: the digest
                // check decides (a ranged request from here would get a 416).
                Err(_) if self.size.is_some_and(|s| self.offset >= s) => {
                    self.response = None;
                    return Ok(0);
                }
                Err(e) => {
                    tracing::debug!(url = %self.url, offset = self.offset, error = %e, "blob read failed");
                    self.reopen(error_chain(&e))?;
                }
            }
        }
    }
}

/// A read error of a body in words: reqwest's, with its causes (a timeout says so).
fn error_chain(e: &io::Error) -> String {
    match e.get_ref().and_then(|e| e.downcast_ref::<reqwest::Error>()) {
        Some(e) if e.is_timeout() => format!(
            "no more data within {:?}, the limit of one request (BERTH_BLOB_REQUEST_TIMEOUT)",
            blob_segment()
        ),
        Some(e) => crate::error::describe_transport(e),
        None => e.to_string(),
    }
}

/// Whether an error is worth another attempt.
fn is_transient(e: &DistributionError) -> bool {
    match e {
        DistributionError::Connect { .. } => true,
        DistributionError::Registry { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

fn connect_error(method: &str, url: &Url, e: &reqwest::Error) -> DistributionError {
    DistributionError::Connect {
        method: method.to_string(),
        url: url.to_string(),
        reason: describe_transport(e),
    }
}

fn challenge_of(resp: &Response) -> Option<Challenge> {
    let challenges: Vec<Challenge> = resp
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .collect();
    // Bearer is preferred: it is what a registry that offers both means for clients.
    challenges
        .iter()
        .find(|c| matches!(c, Challenge::Bearer { .. }))
        .or(challenges.first())
        .cloned()
}

fn basic_header(username: &str, password: &str) -> HeaderValue {
    use base64::Engine;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut v =
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value");
    v.set_sensitive(true);
    v
}

/// The registry's error codes and messages (`errors[].code: message`), or the start of the
/// body, or the status.
pub(crate) fn error_detail(resp: Response) -> String {
    let status = resp.status();
    let body = read_limited(resp, 64 << 10, "error body").unwrap_or_default();
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(&body)
        && !parsed.errors.is_empty()
    {
        return parsed
            .errors
            .iter()
            .map(|e| {
                // Docker's words: `manifest unknown: manifest unknown` when the message
                // repeats the code, as the docker CLI prints it against dockerd.
                let code = e.code.to_ascii_lowercase().replace('_', " ");
                if e.message.is_empty() {
                    code
                } else {
                    format!("{code}: {}", e.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.is_empty() {
        status.to_string()
    } else {
        text.chars().take(200).collect()
    }
}

fn registry_error(method: &str, url: &Url, resp: Response) -> DistributionError {
    let status = resp.status().as_u16();
    DistributionError::Registry {
        method: method.to_string(),
        url: url.to_string(),
        status,
        detail: error_detail(resp),
    }
}

/// Reads a response body of at most `limit` bytes.
fn read_limited(resp: Response, limit: u64, what: &str) -> Result<Vec<u8>> {
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(too_large(what, limit));
    }
    read_up_to(resp, limit, what)
}

/// Reads a stream of at most `limit` bytes; more is an error.
fn read_up_to(r: impl Read, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    r.take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|e| unwrap_io(e, what))?;
    if data.len() as u64 > limit {
        return Err(too_large(what, limit));
    }
    Ok(data)
}

fn too_large(what: &str, limit: u64) -> DistributionError {
    DistributionError::bad(what.to_string(), format!("larger than {limit} bytes"))
}

/// An I/O error from a body read, as the error it carries (a DistributionError from a
/// resumed request) or a transport failure.
fn unwrap_io(e: io::Error, what: &str) -> DistributionError {
    DistributionError::Connect {
        method: "read".into(),
        url: what.to_string(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        io::{BufRead, BufReader, Write},
        net::TcpListener,
        sync::{Arc, Mutex},
    };

    /// A registry that answers one request per connection from a script: the ping, then
    /// blob GETs answered in turn by `answers` (status line, extra headers, body bytes).
    fn scripted_registry(
        answers: Vec<(String, String, Vec<u8>)>,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let mut answers = answers.into_iter();
            for conn in listener.incoming() {
                let mut conn = conn.unwrap();
                let mut first = [0u8; 1];
                if conn.peek(&mut first).is_err() || first[0] == 0x16 {
                    continue; // a TLS handshake (berth tries HTTPS first): not spoken here
                }
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                log.lock().unwrap().push(head.clone());
                let (status, headers, body) = if head.starts_with("GET /v2/ ") {
                    ("200 OK".to_string(), String::new(), b"{}".to_vec())
                } else {
                    answers.next().expect("no more scripted answers")
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nConnection: close\r\n{headers}\r\n"
                );
                let _ = conn.write_all(&body);
            }
        });
        (host, seen)
    }

    #[test]
    fn a_cut_blob_resumes_past_a_failed_attempt() {
        let blob: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let digest = Digest::sha256_of(&blob);
        let half = blob.len() / 2;
        let (host, seen) = scripted_registry(vec![
            (
                "200 OK".into(),
                format!("Content-Length: {}\r\n", blob.len()),
                blob[..half].to_vec(),
            ),
            (
                "503 Service Unavailable".into(),
                "Content-Length: 0\r\n".into(),
                Vec::new(),
            ),
            (
                "206 Partial Content".into(),
                format!(
                    "Content-Length: {}\r\nContent-Range: bytes {half}-{}/{}\r\n",
                    blob.len() - half,
                    blob.len() - 1,
                    blob.len()
                ),
                blob[half..].to_vec(),
            ),
        ]);
        let repo = Repository::open(
            &RegistryConfig::default(),
            &host,
            "test/blob",
            Access::Pull,
            &[],
            None,
        )
        .unwrap();
        let mut got = Vec::new();
        repo.blob_reader(&digest, Some(blob.len() as u64), |_| {})
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, blob);
        let seen = seen.lock().unwrap();
        let ranged: Vec<&String> = seen.iter().filter(|h| h.contains("range:")).collect();
        assert_eq!(ranged.len(), 2, "two ranged attempts: {seen:#?}");
        assert!(
            ranged
                .iter()
                .all(|h| h.contains(&format!("range: bytes={half}-")))
        );
    }
}
