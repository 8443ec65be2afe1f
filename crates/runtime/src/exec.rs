//! One more process in a running container (`exec`).
//!
//! ```text
//! host: exec() ── clone (no new namespaces) ──> C: fexecve(berth init)
//!       send Exec, the pidfd of the container's init ──>
//!       put C in the container's cgroup
//!       send Joined ──────────────────────────────>  setns(pidfd, all the container's
//!                                                    namespaces), clone(CLONE_PARENT) = G
//!       <──────────────────────────── Forked(G)      C exits; G is the host's child, in
//!       reap C, send Start ───────────────────────>  G: the container's pid namespace and
//!                                                    cgroup: setsid, pty, user, caps,
//!       <──────────────── EOF, or ExecError          seccomp, execve(command)
//! ```
//!
//! Joining the pid namespace takes a fork (`setns` only moves a process's future children),
//! and `CLONE_PARENT` makes the forked process the host's own child, so the host waits for it
//! directly instead of through a subreaper. The pidfd names the container's init without a
//! race against pid reuse; `setns` with a pidfd joins every namespace in one call.

use std::{
    convert::Infallible,
    os::{
        fd::{AsFd, AsRawFd, OwnedFd},
        unix::net::UnixStream,
    },
};

use nix::{
    sched::CloneFlags,
    sys::{
        signal::{Signal, kill},
        wait::waitpid,
    },
    unistd::Pid,
};
use oci_spec::runtime::LinuxNamespaceType;

use crate::{
    Exit, RuntimeError, Stdio,
    cgroups::Cgroup,
    console, exe,
    init::{self, Failure, Seccomp},
    protocol::{self, ExecConfig, FromInit, ToInit},
    spawn,
};

/// What [`exec`] needs.
#[derive(Debug)]
pub struct ExecOptions {
    /// The process and what of the container it joins.
    pub config: ExecConfig,
    /// A pidfd of the container's init (whose namespaces are joined).
    pub target: OwnedFd,
    /// The container's cgroup, which the process joins.
    pub cgroup_path: Option<String>,
    /// The process's stdio (ignored with `process.terminal`: a pty is its stdio then).
    pub stdio: Stdio,
    /// With `process.terminal`: the window size (rows, columns) to give the pty.
    pub console_size: Option<(u16, u16)>,
}

/// A process started in a running container.
#[derive(Debug)]
pub struct ExecProcess {
    pid: Pid,
    console: Option<OwnedFd>,
    reaped: bool,
}

impl ExecProcess {
    /// Its pid on the host.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The master side of its pty (with `process.terminal`), once.
    pub fn take_console(&mut self) -> Option<OwnedFd> {
        self.console.take()
    }

    /// Waits for it to exit.
    pub fn wait(&mut self) -> Result<Exit, RuntimeError> {
        let (code, signal) = spawn::wait_exit(self.pid)?;
        self.reaped = true;
        Ok(Exit {
            code,
            signal,
            oom_killed: false,
        })
    }

    /// Leaves it running unwaited for (`exec -d`): once this process exits, the system's init
    /// reaps it.
    pub fn detach(mut self) {
        self.reaped = true;
    }
}

/// Starts `opts.config.process` in the container whose init `opts.target` names: in its
/// namespaces and cgroup, with its identity, capabilities and seccomp filter. Returns once the
/// command runs, or with [`RuntimeError::Exec`] when it could not be executed.
pub fn exec(opts: ExecOptions) -> Result<ExecProcess, RuntimeError> {
    let exe = exe::sealed_self().map_err(|e| RuntimeError::host("open berth's binary", e))?;
    let (host_sock, init_sock) =
        UnixStream::pair().map_err(|e| RuntimeError::host("socketpair", e))?;
    let joiner = spawn::clone_init(
        exe.as_raw_fd(),
        CloneFlags::empty(),
        -1,
        [
            opts.stdio.stdin.as_raw_fd(),
            opts.stdio.stdout.as_raw_fd(),
            opts.stdio.stderr.as_raw_fd(),
            init_sock.as_raw_fd(),
        ],
    )?;
    drop(init_sock);
    drop(opts.stdio);
    let mut process = None;
    let result = start(
        &host_sock,
        joiner,
        &opts.config,
        opts.target.as_fd(),
        opts.cgroup_path.as_deref(),
        opts.console_size,
        &mut process,
    );
    // The joiner exits right after the fork (or failed before it): never left a zombie.
    let _ = kill(joiner, Signal::SIGKILL);
    let _ = waitpid(joiner, None);
    match result {
        Ok(p) => Ok(p),
        Err(e) => {
            if let Some(pid) = process {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
            }
            Err(e)
        }
    }
}

fn start(
    sock: &UnixStream,
    joiner: Pid,
    config: &ExecConfig,
    target: std::os::fd::BorrowedFd<'_>,
    cgroup_path: Option<&str>,
    console_size: Option<(u16, u16)>,
    process: &mut Option<Pid>,
) -> Result<ExecProcess, RuntimeError> {
    let gone = |what: &str, e: std::io::Error| match protocol::recv::<FromInit>(sock) {
        Ok(Some(FromInit::Error(message))) => RuntimeError::Init(message),
        _ => RuntimeError::host(what, e),
    };
    protocol::send(sock, &ToInit::Exec(Box::new(config.clone())))
        .map_err(|e| gone("send the process's configuration", e))?;
    console::send_fd(sock, target).map_err(|e| gone("send the container's pidfd", e))?;
    if let Some(path) = cgroup_path {
        Cgroup::open(path)?.add_process(joiner.as_raw())?;
    }
    protocol::send(sock, &ToInit::Joined).map_err(|e| gone("join the container's cgroup", e))?;
    let pid = match recv(sock)? {
        FromInit::Forked(pid) => Pid::from_raw(pid),
        other => return Err(other.into_error()),
    };
    *process = Some(pid);
    protocol::send(sock, &ToInit::Start).map_err(|e| RuntimeError::host("start the process", e))?;
    let mut console = None;
    if config.process.terminal().unwrap_or(false) {
        match console::recv_fd(sock) {
            Ok(master) => {
                if let Some((rows, cols)) = console_size {
                    let _ = console::set_window_size(&master, rows, cols);
                }
                console = Some(master);
            }
            // It failed first: its error follows.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(RuntimeError::host("receive the process's pty", e)),
        }
    }
    match protocol::recv::<FromInit>(sock) {
        // Its copy of the socket closed on exec.
        Ok(None) => Ok(ExecProcess {
            pid,
            console,
            reaped: false,
        }),
        Ok(Some(other)) => Err(other.into_error()),
        Err(e) => Err(RuntimeError::host("read from the process", e)),
    }
}

fn recv(sock: &UnixStream) -> Result<FromInit, RuntimeError> {
    match protocol::recv::<FromInit>(sock) {
        Ok(Some(msg)) => Ok(msg),
        Ok(None) => Err(RuntimeError::Init(
            "berth init exited while joining the container".into(),
        )),
        Err(e) => Err(RuntimeError::host("read from berth init", e)),
    }
}

/// Init's side, in the process the host cloned: joins the container and forks the process
/// that becomes the command; this one exits.
pub(crate) fn join_and_fork(sock: &UnixStream, config: ExecConfig) -> Result<Infallible, Failure> {
    let target = console::recv_fd(sock).map_err(|e| format!("receive the pidfd: {e}"))?;
    match protocol::recv::<ToInit>(sock) {
        Ok(Some(ToInit::Joined)) => {}
        Ok(_) | Err(_) => std::process::exit(1),
    }
    let mut flags = CloneFlags::empty();
    for ns in &config.namespaces {
        flags |= match ns {
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
            LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
        };
    }
    nix::sched::setns(&target, flags).map_err(|e| format!("join the container: {e}"))?;
    drop(target);
    match fork_sibling().map_err(|e| format!("fork: {e}"))? {
        0 => run_command(sock, &config),
        pid => {
            protocol::send(sock, &FromInit::Forked(pid))
                .map_err(|e| format!("report the fork: {e}"))?;
            std::process::exit(0)
        }
    }
}

/// `clone(CLONE_PARENT | SIGCHLD)`: a fork whose child is the caller's parent's child, and
/// (after `setns` into a pid namespace) in that namespace. Returns 0 in the child.
#[allow(unsafe_code)]
fn fork_sibling() -> std::io::Result<i32> {
    // SAFETY: berth init is single-threaded, so the child may go on running Rust code as a
    // plain fork's would; with no new stack, clone() returns in both processes like fork().
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::CLONE_PARENT | libc::SIGCHLD,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc as i32)
}

/// The forked process: waits for the host's go, then becomes the command.
fn run_command(sock: &UnixStream, config: &ExecConfig) -> Result<Infallible, Failure> {
    match protocol::recv::<ToInit>(sock) {
        Ok(Some(ToInit::Start)) => {}
        Ok(_) | Err(_) => std::process::exit(1),
    }
    rustix::process::setsid().map_err(|e| format!("setsid: {e}"))?;
    let process = &config.process;
    if process.terminal().unwrap_or(false) {
        // On the container's devpts: its /dev/ptmx, now that its mounts are ours.
        let pty = console::open_pty().map_err(|e| format!("allocate a pty: {e}"))?;
        init::use_pty(sock, &pty)?;
    }
    let user = init::resolve_user(config.user.as_deref(), &config.group_add, process)?;
    let seccomp = Seccomp {
        compiled: config.seccomp.as_ref(),
        spec: None,
    };
    let command = init::become_process(process, &user, &seccomp, false)?;
    Err(command.exec())
}
