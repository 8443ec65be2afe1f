//! The messages between the host side and `berth init`, as length-prefixed JSON frames on a
//! socketpair. The socket is close-on-exec in the child, so a successful `execve` reads as
//! end-of-file on the host side.

use std::{
    io::{self, Read, Write},
    os::unix::net::UnixStream,
    path::PathBuf,
};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use serde::{Deserialize, Serialize};

use crate::ExecFailure;

/// The most a frame may carry: a spec with a seccomp profile is about 60 KiB.
const MAX_FRAME: u32 = 16 << 20;

/// The container's root filesystem.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Rootfs {
    /// An existing directory, bind-mounted onto itself.
    Dir(PathBuf),
    /// An overlay mounted by init inside the container's mount namespace (so it disappears
    /// with the container): `lower` top-most first.
    Overlay {
        /// Read-only layers, top-most first.
        lower: Vec<PathBuf>,
        /// The container's own writable layer.
        upper: PathBuf,
        /// overlayfs' work directory (same filesystem as `upper`).
        work: PathBuf,
        /// An empty directory to mount it on.
        target: PathBuf,
    },
}

impl Rootfs {
    /// The directory the root filesystem is (or will be) visible at before `pivot_root`.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Rootfs::Dir(dir) => dir,
            Rootfs::Overlay { target, .. } => target,
        }
    }
}

/// Everything init needs besides the OCI spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitConfig {
    /// The container's OCI runtime spec. `root.path` is ignored in favour of `rootfs`.
    pub spec: Spec,
    /// The root filesystem.
    pub rootfs: Rootfs,
    /// Docker's `-u` value, resolved inside the container against its `/etc/passwd` and
    /// `/etc/group`; when `None`, `spec.process.user` is used as it is.
    pub user: Option<String>,
    /// `--group-add` values (names or numbers).
    pub group_add: Vec<String>,
    /// Run a minimal init as PID 1 that reaps zombies and forwards signals (`--init`).
    pub init: bool,
    /// Create `process.cwd` if it is missing (Docker does for `-w` and `WORKDIR`).
    pub create_cwd: bool,
    /// The seccomp filter, compiled; when set, `spec.linux.seccomp` is not compiled again.
    pub seccomp: Option<crate::seccomp::CompiledFilter>,
}

/// What `berth init` needs to run one more process in a running container (`exec`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecConfig {
    /// The process: args, env, cwd, terminal, user, capabilities, no_new_privileges,
    /// rlimits.
    pub process: Process,
    /// The container's namespaces to join (its init's, through a pidfd).
    pub namespaces: Vec<LinuxNamespaceType>,
    /// Docker's `-u` value, resolved against the container's `/etc/passwd` and `/etc/group`;
    /// when `None`, `process.user` is used as it is.
    pub user: Option<String>,
    /// `--group-add` values of the container.
    pub group_add: Vec<String>,
    /// The container's seccomp filter, compiled.
    pub seccomp: Option<crate::seccomp::CompiledFilter>,
}

/// Host to init.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToInit {
    Config(Box<InitConfig>),
    /// Join a running container and run a process there; the pidfd of the container's init
    /// follows as an fd.
    Exec(Box<ExecConfig>),
    /// The host has put init in its cgroup (sent after `Config`, so that init builds the
    /// rootfs while the host waits out the kernel's cgroup attach).
    Joined,
    Start,
}

/// Init to host.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromInit {
    /// Set up; waiting for `Start`.
    Ready,
    /// (exec) The process that will run the command was forked: its host pid. It is the
    /// host's child and waits for `Start`.
    Forked(i32),
    /// Setting up failed.
    Error(String),
    /// `execve` failed.
    ExecError {
        failure: ExecFailure,
        message: String,
    },
}

impl FromInit {
    /// The error a message means where it was not the expected one.
    pub(crate) fn into_error(self) -> crate::RuntimeError {
        use crate::RuntimeError;
        match self {
            FromInit::Error(message) => RuntimeError::Init(message),
            FromInit::ExecError { failure, message } => RuntimeError::Exec { failure, message },
            other => RuntimeError::Init(format!("berth init answered out of turn: {other:?}")),
        }
    }
}

pub(crate) fn send<T: Serialize>(mut sock: &UnixStream, msg: &T) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    sock.write_all(&frame)
}

/// Reads one frame; `Ok(None)` at end of file.
pub(crate) fn recv<T: for<'de> Deserialize<'de>>(mut sock: &UnixStream) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match sock.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(io::Error::other(format!(
            "message of {len} bytes is too large"
        )));
    }
    let mut body = vec![0u8; len as usize];
    sock.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(io::Error::other)
}
