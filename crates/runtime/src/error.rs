//! Errors of the runtime.

use std::io;

/// Why a container's command could not be executed; the engine maps these to Docker's exit
/// codes (127 for not found, 126 for cannot be invoked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExecFailure {
    /// The executable does not exist (exit 127).
    NotFound,
    /// It exists but cannot be executed: permissions, a directory, a bad format (exit 126).
    CannotInvoke,
}

impl ExecFailure {
    /// Docker's exit status for it: 127 not found, 126 cannot be invoked.
    pub fn exit_code(self) -> u8 {
        match self {
            ExecFailure::NotFound => 127,
            ExecFailure::CannotInvoke => 126,
        }
    }
}

/// An error creating, starting or managing a container.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A system call on the host side failed.
    #[error("{what}: {source}")]
    Host {
        /// What was being done.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// The container's init process reported an error while it set the container up.
    #[error("{0}")]
    Init(String),
    /// The container's command could not be executed.
    #[error("{message}")]
    Exec {
        /// Which kind of failure (for the exit code).
        failure: ExecFailure,
        /// Docker's wording, e.g. `exec: "nope": executable file not found in $PATH`.
        message: String,
    },
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
}

impl RuntimeError {
    pub(crate) fn host(what: impl Into<String>, source: impl Into<io::Error>) -> RuntimeError {
        RuntimeError::Host {
            what: what.into(),
            source: source.into(),
        }
    }
}
