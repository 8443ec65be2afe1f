//! The registry client's error type: what went wrong, said the way a user can act on it.

use berth_reference::Digest;
use berth_store::StoreError;

use crate::credentials::CredentialsError;

/// Everything a pull, push or login can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DistributionError {
    /// The registry could not be reached (DNS, connection, TLS).
    #[error("{method} \"{url}\": {reason}")]
    Connect {
        /// The request's method.
        method: String,
        /// The URL asked for.
        url: String,
        /// The transport's explanation, with its causes.
        reason: String,
    },
    /// The registry wants credentials that berth does not have, or refused them.
    #[error("{registry}: unauthorized: {detail}")]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The registry's words, and what to do.
        detail: String,
    },
    /// The credentials are fine but do not allow this.
    #[error("{registry}: denied: {detail}")]
    Denied {
        /// The registry host.
        registry: String,
        /// The registry's words.
        detail: String,
    },
    /// A pull the registry refused: a repository that does not exist looks the same as a
    /// private one (Docker's words).
    #[error(
        "pull access denied for {repository}, repository does not exist or may require 'berth login': {detail}"
    )]
    PullAccessDenied {
        /// The repository (familiar form).
        repository: String,
        /// The registry's words.
        detail: String,
    },
    /// A manifest or tag is not in the repository.
    #[error("manifest for {reference} not found: {detail}")]
    ManifestNotFound {
        /// The reference asked for (familiar form).
        reference: String,
        /// The registry's words.
        detail: String,
    },
    /// The repository itself does not exist (or is hidden from this user).
    #[error("repository {repository} not found: {detail}")]
    RepositoryNotFound {
        /// The repository name.
        repository: String,
        /// The registry's words.
        detail: String,
    },
    /// Any other error answer of the registry.
    #[error("{method} \"{url}\": {status}: {detail}")]
    Registry {
        /// The request's method.
        method: String,
        /// The URL asked for.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error codes and messages, or the body's start.
        detail: String,
    },
    /// Content that did not hash to the digest it was asked for by.
    #[error("{what}: the registry sent content that hashes to {actual}, not {expected}")]
    DigestMismatch {
        /// What was fetched.
        what: String,
        /// The digest asked for.
        expected: Digest,
        /// What the bytes hashed to.
        actual: Digest,
    },
    /// A document that berth refuses to read (too large, malformed, unknown type).
    #[error("{what}: {reason}")]
    BadDocument {
        /// Which document.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// An index without an image for the platform asked for.
    #[error("no matching manifest for {platform} in the manifest list entries")]
    NoMatchingPlatform {
        /// The platform asked for.
        platform: String,
    },
    /// A malformed `--platform`, registry address or mirror.
    #[error("{0}")]
    Usage(String),
    /// Credentials could not be read or written.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The registry client's result type.
pub type Result<T, E = DistributionError> = std::result::Result<T, E>;

impl DistributionError {
    pub(crate) fn bad(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        DistributionError::BadDocument {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// A transport error with its chain of causes, which reqwest keeps out of its own message
/// ("error sending request" says nothing without "connection refused").
pub(crate) fn describe_transport(e: &reqwest::Error) -> String {
    // reqwest's own top line repeats the URL that the caller already names.
    let mut out = if e.is_connect() || e.is_request() {
        String::new()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        // hyper-util's wrappers ("client error (Connect)") say nothing of their own.
        if !out.contains(&text) && !text.starts_with("client error (") {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        source = s.source();
    }
    if out.contains("InvalidContentType") {
        // What rustls says when the server answers TLS in plain HTTP.
        return "http: server gave HTTP response to HTTPS client (a registry served over plain HTTP must be listed in insecure-registries, /etc/berth/daemon.json)".into();
    }
    if out.is_empty() { e.to_string() } else { out }
}
