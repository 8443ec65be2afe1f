//! The store's error type: one enum whose variants callers branch on.

use std::{io, path::PathBuf};

use berth_reference::{Digest, ReferenceError};

use crate::{compression::CompressionError, unpack::UnpackError};

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No blob with this digest is in the store.
    #[error("blob {0} not found")]
    BlobNotFound(Digest),
    /// Content did not hash to the digest it was announced with.
    #[error("content announced as {expected} hashed to {actual}")]
    DigestMismatch {
        /// The digest the content claimed.
        expected: Digest,
        /// What it actually hashed to.
        actual: Digest,
    },
    /// Content had another size than its descriptor said.
    #[error("{digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// What was read.
        actual: u64,
    },
    /// No image matches what the user named.
    #[error("No such image: {0}")]
    ImageNotFound(String),
    /// A short ID prefix matched more than one image.
    #[error("image ID prefix {0} is ambiguous")]
    AmbiguousImage(String),
    /// The operation would break something unless forced.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Stored or supplied data is malformed.
    #[error("{what}: {reason}")]
    Corrupt {
        /// Which document or object.
        what: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A media type berth does not know how to handle.
    #[error("unsupported media type {0}")]
    UnsupportedMediaType(String),
    /// Something an archive refers to is not in it.
    #[error("archive is missing {0}")]
    MissingInArchive(String),
    /// A bad reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A filter that cannot be used.
    #[error(transparent)]
    Filter(#[from] crate::FilterError),
    /// A layer failed to unpack.
    #[error("layer {layer}: {source}")]
    Unpack {
        /// The layer (its blob digest, or where it came from).
        layer: String,
        /// Why.
        #[source]
        source: UnpackError,
    },
    /// A compressed stream that can't be read.
    #[error(transparent)]
    Compression(#[from] CompressionError),
    /// The metadata database failed.
    #[error("metadata database: {0}")]
    Db(#[from] rusqlite::Error),
    /// A filesystem operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Reading an input stream (archive, tarball) failed.
    #[error("reading {what}: {source}")]
    Read {
        /// What was being read.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches an operation and a path to an io::Error.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            op,
            path: path.into(),
            source,
        })
    }
}

impl StoreError {
    pub(crate) fn corrupt(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
