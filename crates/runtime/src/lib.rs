//! berth-runtime: one Linux container from an OCI runtime-spec configuration.
//!
//! The host side ([`create`]) clones a child into new namespaces and re-executes the berth
//! binary in it as `berth init` from a read-only copy of itself (see [`exe`]); the child reads
//! its [`InitConfig`] over a socket, builds the root filesystem, drops privileges and waits
//! for [`Container::start`] before it executes the container's command. Everything here talks
//! to the kernel only: images, names and Docker's defaults live in `berth-engine`.
//!
//! ```text
//! host: create() ── clone(NEWNS|NEWPID|...) ──> child: [uid maps] fexecve(berth init)
//!       send InitConfig ───────────────────────>  overlay, spec mounts (not cgroups yet)
//!       make the cgroup, attach (v1: an RCU wait)
//!       send Joined ───────────────────────────>  unshare cgroup ns, cgroup views, /dev,
//!                                                 pivot_root, pty, hostname, user, caps, seccomp
//!       <─────────────────────────────── Ready
//!       start(): send Start ───────────────────>  execve(command)   (socket is CLOEXEC:
//!       <──────────────────── EOF, or ExecError    EOF means the exec happened)
//! ```
//!
//! [`exec`] runs one more process in a running container the same way (see its module).

pub mod cgroups;
pub mod console;
mod error;
mod exe;
mod exec;
mod init;
mod mounts;
mod privileges;
mod protocol;
pub mod seccomp;
mod spawn;
pub mod user;
pub mod view;

pub use error::{ExecFailure, RuntimeError};
pub use exec::{ExecOptions, ExecProcess, exec};
pub use init::{INIT_ARG, init_main};
pub use protocol::{ExecConfig, InitConfig, Rootfs};
pub use spawn::{Container, CreateOptions, Exit, Stdio, create};

/// The OCI runtime-spec types berth-runtime takes.
pub use oci_spec::runtime as spec;
