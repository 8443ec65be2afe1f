//! What pulls and pushes report while they work, in Docker's terms; the CLI draws it.

use berth_reference::Digest;

/// The state of one layer (or config blob) in a pull or push, as Docker names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerState {
    /// Pull: queued for download.
    Waiting,
    /// Pull: about to download.
    PullingFsLayer,
    /// Pull: bytes so far, of the total when known.
    Downloading {
        /// Bytes received.
        done: u64,
        /// The blob's size.
        total: Option<u64>,
    },
    /// Pull: the download is retried after a failure.
    Retrying {
        /// Seconds until the next attempt.
        in_secs: u64,
    },
    /// Pull: all bytes arrived; the digest is being checked.
    VerifyingChecksum,
    /// Pull: the blob is verified.
    DownloadComplete,
    /// Pull: unpacked and ready.
    PullComplete,
    /// Pull: the layer was there already.
    AlreadyExists,
    /// Push: looking at what the registry has.
    Preparing,
    /// Push: queued.
    PushWaiting,
    /// Push: bytes sent so far, of the total when known.
    Pushing {
        /// Bytes sent.
        done: u64,
        /// The blob's size, when known before it is compressed.
        total: Option<u64>,
    },
    /// Push: sent.
    Pushed,
    /// Push: the registry had it.
    LayerAlreadyExists,
    /// Push: the registry mounted it from another repository.
    MountedFrom(String),
}

impl LayerState {
    /// Docker's words for the state, without a progress bar.
    pub fn label(&self) -> String {
        match self {
            LayerState::Waiting => "Waiting".into(),
            LayerState::PullingFsLayer => "Pulling fs layer".into(),
            LayerState::Downloading { .. } => "Downloading".into(),
            LayerState::Retrying { in_secs } => format!("Retrying in {in_secs} seconds"),
            LayerState::VerifyingChecksum => "Verifying Checksum".into(),
            LayerState::DownloadComplete => "Download complete".into(),
            LayerState::PullComplete => "Pull complete".into(),
            LayerState::AlreadyExists => "Already exists".into(),
            LayerState::Preparing => "Preparing".into(),
            LayerState::PushWaiting => "Waiting".into(),
            LayerState::Pushing { .. } => "Pushing".into(),
            LayerState::Pushed => "Pushed".into(),
            LayerState::LayerAlreadyExists => "Layer already exists".into(),
            LayerState::MountedFrom(repo) => format!("Mounted from {repo}"),
        }
    }

    /// Whether the state is a byte count that changes often (drawn as a bar on a terminal,
    /// not printed as a line otherwise).
    pub fn is_transfer(&self) -> bool {
        matches!(
            self,
            LayerState::Downloading { .. } | LayerState::Pushing { .. }
        )
    }
}

/// Where a pull or push reports. Called from several threads at once.
pub trait Progress: Send + Sync {
    /// A line of its own: "latest: Pulling from library/busybox", "The push refers to …".
    fn message(&self, line: &str);
    /// A layer's new state; `id` is its blob digest (shown as 12 hex digits).
    fn layer(&self, id: &Digest, state: LayerState);
}

/// Reports nothing (`-q`, and library callers that do not care).
pub struct Silent;

impl Progress for Silent {
    fn message(&self, _: &str) {}
    fn layer(&self, _: &Digest, _: LayerState) {}
}
