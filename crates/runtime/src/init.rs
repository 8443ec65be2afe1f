//! The container side: the first process of the container's new namespaces, with stdio at
//! 0-2 and the socket to the host at 3. Either the cloned copy of the host side's process
//! ([`run_in_process`], when `spawn::may_init_in_process` allows it) or `berth init`
//! executed from a read-only copy of the berth binary ([`init_main`]).

use std::{
    convert::Infallible,
    ffi::{CString, OsStr},
    fs,
    os::{
        fd::{FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::PermissionsExt, net::UnixStream},
    },
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    sched::CloneFlags,
    sys::{
        signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::{ForkResult, Pid},
};
use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Process, Spec};
use rustix::process::{Resource, Rlimit};

use crate::{
    ExecFailure, InitConfig, mounts,
    protocol::{self, FromInit, ToInit},
    user::{self, ExecUser},
};

/// The argument that makes the berth binary run as a container's init.
pub const INIT_ARG: &str = "init";

/// The fd init finds its socket to the host at.
const SOCKET_FD: i32 = 3;

pub(crate) enum Failure {
    Setup(String),
    Exec(ExecFailure, String),
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Setup(s)
    }
}

/// Runs as the container's init; never returns. The caller must call it before it starts
/// any thread.
#[allow(unsafe_code)]
pub fn init_main() -> ! {
    // SAFETY: the host side placed the socket at fd 3 before executing us, and nothing else
    // in this fresh process owns that fd.
    let sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(SOCKET_FD) });
    let result = run(&sock);
    report_and_quit(&sock, result)
}

/// Runs as the container's init in the child that `clone` made of the host side's process,
/// without executing anything first (see `spawn::clone_in_process` for when that is safe):
/// the configuration is this process's copy of the host side's, and the socket to the host
/// is at fd 3. Never returns.
#[allow(unsafe_code)]
pub(crate) fn run_in_process(config: &InitConfig) -> ! {
    // The host side's signal handlers (berth run forwards signals) mean nothing here.
    reset_signals();
    // SAFETY: the clone placed the socket at fd 3; this process's copy of whatever the host
    // side had there was closed by that dup2, so nothing else owns the fd.
    let sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(SOCKET_FD) });
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rustix::io::fcntl_setfd(&sock, rustix::io::FdFlags::CLOEXEC)
            .map_err(|e| Failure::Setup(format!("socket: {e}")))?;
        run_container(&sock, config.clone())
    }))
    .unwrap_or_else(|_| Err(Failure::Setup("the container's init panicked".into())));
    report_and_quit(&sock, result)
}

/// Tells the host why init failed and exits with the matching status.
fn report_and_quit(sock: &UnixStream, result: Result<Infallible, Failure>) -> ! {
    let failure = match result {
        Ok(never) => match never {},
        Err(f) => f,
    };
    let (msg, code) = match failure {
        Failure::Setup(message) => (FromInit::Error(message), 1),
        Failure::Exec(failure, message) => (
            FromInit::ExecError { failure, message },
            i32::from(failure.exit_code()),
        ),
    };
    let _ = protocol::send(sock, &msg);
    quit(code)
}

/// Ends init at once: `_exit`, because an init running in a copy of the host side's process
/// must not run that process's exit handlers or flush its buffers.
#[allow(unsafe_code)]
pub(crate) fn quit(code: i32) -> ! {
    // SAFETY: _exit takes no pointers and never returns.
    unsafe { libc::_exit(code) }
}

/// Every signal back to its default action and none blocked, as a new container process
/// expects (Docker's and crun's processes start so): berth's own handlers and the signals
/// ignored by berth or its caller (Rust ignores SIGPIPE) would otherwise carry over to the
/// command, since an ignored signal stays ignored across `execve`. The raw system call,
/// because glibc's wrappers refuse the two real-time signals it keeps for itself.
#[allow(unsafe_code)]
pub(crate) fn reset_signals() {
    /// The kernel's `struct sigaction` (x86-64 and arm64 alike); a zero handler is SIG_DFL.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `default` is a valid kernel sigaction that outlives the call; the old action
        // is not asked for; the size is that of the kernel's signal set.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                std::mem::size_of::<u64>(),
            );
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

fn run(sock: &UnixStream) -> Result<Infallible, Failure> {
    rustix::io::fcntl_setfd(sock, rustix::io::FdFlags::CLOEXEC)
        .map_err(|e| format!("socket: {e}"))?;
    match protocol::recv::<ToInit>(sock) {
        Ok(Some(ToInit::Config(c))) => run_container(sock, *c),
        Ok(Some(ToInit::Exec(c))) => crate::exec::join_and_fork(sock, *c),
        Ok(Some(_)) => Err("expected the configuration first".to_string().into()),
        Ok(None) => quit(1),
        Err(e) => Err(format!("read the configuration: {e}").into()),
    }
}

fn run_container(sock: &UnixStream, config: InitConfig) -> Result<Infallible, Failure> {
    let spec = &config.spec;
    let process = spec
        .process()
        .clone()
        .ok_or_else(|| "the spec has no process".to_string())?;

    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let has_ns = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    join_namespaces(spec)?;
    let new_cgroup_ns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Cgroup && n.path().is_none());
    let user_ns = has_ns(LinuxNamespaceType::User);
    // Its own session: no signals from berth's terminal, and room for a controlling tty.
    rustix::process::setsid().map_err(|e| format!("setsid: {e}"))?;

    let mut joined = || -> Result<(), String> {
        match protocol::recv::<ToInit>(sock) {
            Ok(Some(ToInit::Joined)) => {}
            Ok(_) | Err(_) => quit(1),
        }
        if new_cgroup_ns {
            // Rooted at the cgroup the host just put us in.
            nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| format!("unshare the cgroup namespace: {e}"))?;
        }
        Ok(())
    };
    mounts::setup(&config, user_ns, &mut joined)?;
    if process.terminal().unwrap_or(false) {
        set_up_console(sock)?;
    }
    if has_ns(LinuxNamespaceType::Uts)
        && let Some(hostname) = spec.hostname()
    {
        rustix::system::sethostname(hostname.as_bytes())
            .map_err(|e| format!("set hostname {hostname}: {e}"))?;
    }
    if let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().clone()) {
        for (key, value) in sysctl {
            let path = Path::new("/proc/sys").join(key.replace('.', "/"));
            fs::write(&path, value.as_bytes())
                .map_err(|e| format!("set sysctl {key}={value}: {e}"))?;
        }
    }
    if namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none())
    {
        loopback_up().map_err(|e| format!("bring up the loopback interface: {e}"))?;
    }
    mounts::finish(spec)?;

    let exec_user = resolve_user(config.user.as_deref(), &config.group_add, &process)?;
    if config.create_cwd {
        let cwd = process.cwd();
        fs::create_dir_all(cwd).map_err(|e| format!("create workdir {}: {e}", cwd.display()))?;
    }
    if let Some(adj) = process.oom_score_adj() {
        fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| format!("set oom_score_adj {adj}: {e}"))?;
    }
    let seccomp_spec = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let seccomp = Seccomp {
        compiled: config.seccomp.as_ref(),
        spec: seccomp_spec.as_ref(),
    };
    let command = become_process(&process, &exec_user, &seccomp, true)?;

    protocol::send(sock, &FromInit::Ready).map_err(|e| format!("report ready: {e}"))?;
    match protocol::recv::<ToInit>(sock) {
        Ok(Some(ToInit::Start)) => {}
        Ok(_) | Err(_) => quit(1),
    }
    if config.init {
        return reaper(sock, &command.program, &command.argv, &command.envp);
    }
    Err(command.exec())
}

/// The seccomp filter a process gets, compiled by the engine or as the spec has it.
pub(crate) struct Seccomp<'a> {
    pub compiled: Option<&'a crate::seccomp::CompiledFilter>,
    pub spec: Option<&'a oci_spec::runtime::LinuxSeccomp>,
}

impl Seccomp<'_> {
    fn load(&self) -> Result<(), String> {
        match (self.compiled, self.spec) {
            (Some(compiled), _) => crate::seccomp::load_compiled(compiled)
                .map_err(|e| format!("load the seccomp profile: {e}")),
            (None, Some(s)) => {
                crate::seccomp::apply(s).map_err(|e| format!("load the seccomp profile: {e}"))
            }
            (None, None) => Ok(()),
        }
    }
}

/// A command ready for `execve`.
pub(crate) struct Command {
    program: CString,
    arg0: String,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

impl Command {
    /// Executes the command; returns only when that failed.
    pub(crate) fn exec(&self) -> Failure {
        exec(&self.program, &self.arg0, &self.argv, &self.envp)
    }
}

/// The last steps before a process (a container's or an exec's) becomes its command:
/// rlimits, no_new_privs, seccomp, identity and capabilities, the working directory, and
/// the lookup of the executable. Seccomp is loaded as late as it can be, so that the filter
/// does not apply to berth's own system calls. `death_signal` keeps the parent-death signal
/// the clone set across the change of credentials.
pub(crate) fn become_process(
    process: &Process,
    user: &ExecUser,
    seccomp: &Seccomp<'_>,
    death_signal: bool,
) -> Result<Command, Failure> {
    let mut env = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    let cwd = process.cwd();
    set_rlimits(process)?;
    let args = process.args().clone().unwrap_or_default();
    let Some(arg0) = args.first() else {
        return Err("no command specified".to_string().into());
    };
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    if no_new_privs {
        rustix::thread::set_no_new_privs(true).map_err(|e| format!("set no_new_privs: {e}"))?;
    } else {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, so before caps drop.
        seccomp.load()?;
    }
    crate::privileges::apply(user, process.capabilities().as_ref())?;
    if death_signal {
        // A change of credentials clears the parent-death signal the clone set: set it
        // again, so that the container still dies with the process that looks after it.
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .map_err(|e| format!("set the parent death signal: {e}"))?;
    }
    nix::unistd::chdir(cwd).map_err(|e| {
        Failure::Exec(
            ExecFailure::CannotInvoke,
            format!(
                "chdir to cwd (\"{}\") set in config.json failed: {}",
                cwd.display(),
                e.desc().to_lowercase()
            ),
        )
    })?;
    let program = find_executable(arg0, &env)?;
    let argv: Vec<CString> = args.iter().map(|a| cstring(a)).collect::<Result<_, _>>()?;
    let envp: Vec<CString> = env.iter().map(|e| cstring(e)).collect::<Result<_, _>>()?;
    if no_new_privs {
        seccomp.load()?;
    }
    mark_fds_cloexec()?;
    reset_signals();
    Ok(Command {
        program,
        arg0: arg0.clone(),
        argv,
        envp,
    })
}

/// Allocates the container's pty on its own devpts, makes it stdio and the controlling
/// terminal, binds it at /dev/console, and hands the master to the host.
fn set_up_console(sock: &UnixStream) -> Result<(), String> {
    let pty = crate::console::open_pty().map_err(|e| format!("allocate a pty: {e}"))?;
    mounts::bind_console(&pty.slave_path)?;
    use_pty(sock, &pty)
}

/// Makes the pty's slave stdio and the controlling terminal, and hands the master to the
/// host.
pub(crate) fn use_pty(sock: &UnixStream, pty: &crate::console::Pty) -> Result<(), String> {
    nix::unistd::dup2_stdin(&pty.slave)
        .and_then(|()| nix::unistd::dup2_stdout(&pty.slave))
        .and_then(|()| nix::unistd::dup2_stderr(&pty.slave))
        .map_err(|e| format!("make the pty stdio: {e}"))?;
    rustix::process::ioctl_tiocsctty(&pty.slave)
        .map_err(|e| format!("make the pty the controlling terminal: {e}"))?;
    crate::console::send_fd(sock, &pty.master)
        .map_err(|e| format!("send the pty to berth: {e}"))?;
    Ok(())
}

fn cstring(s: &str) -> Result<CString, Failure> {
    CString::new(s).map_err(|_| Failure::Setup(format!("{s:?} contains a NUL byte")))
}

fn join_namespaces(spec: &Spec) -> Result<(), String> {
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in namespaces {
        let Some(path) = ns.path() else { continue };
        let flag = match ns.typ() {
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
            other => {
                return Err(format!(
                    "joining a {other:?} namespace by path is not supported"
                ));
            }
        };
        let file =
            fs::File::open(path).map_err(|e| format!("open namespace {}: {e}", path.display()))?;
        nix::sched::setns(file, flag)
            .map_err(|e| format!("join namespace {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The identity of the process: Docker's `-u` value resolved against the container's
/// `/etc/passwd` and `/etc/group`, or the spec's user as it is.
pub(crate) fn resolve_user(
    spec_user: Option<&str>,
    group_add: &[String],
    process: &Process,
) -> Result<ExecUser, String> {
    match spec_user {
        Some(spec) => {
            let passwd = fs::read_to_string("/etc/passwd").ok();
            let group = fs::read_to_string("/etc/group").ok();
            user::resolve(spec, passwd.as_deref(), group.as_deref(), group_add)
                .map_err(|e| e.to_string())
        }
        None => {
            let u = process.user();
            Ok(ExecUser {
                uid: u.uid(),
                gid: u.gid(),
                additional_gids: u.additional_gids().clone().unwrap_or_default(),
                home: "/".into(),
            })
        }
    }
}

fn set_rlimits(process: &Process) -> Result<(), String> {
    for rl in process.rlimits().as_deref().unwrap_or_default() {
        let resource = match rl.typ() {
            PosixRlimitType::RlimitCpu => Resource::Cpu,
            PosixRlimitType::RlimitFsize => Resource::Fsize,
            PosixRlimitType::RlimitData => Resource::Data,
            PosixRlimitType::RlimitStack => Resource::Stack,
            PosixRlimitType::RlimitCore => Resource::Core,
            PosixRlimitType::RlimitRss => Resource::Rss,
            PosixRlimitType::RlimitNproc => Resource::Nproc,
            PosixRlimitType::RlimitNofile => Resource::Nofile,
            PosixRlimitType::RlimitMemlock => Resource::Memlock,
            PosixRlimitType::RlimitAs => Resource::As,
            PosixRlimitType::RlimitLocks => Resource::Locks,
            PosixRlimitType::RlimitSigpending => Resource::Sigpending,
            PosixRlimitType::RlimitMsgqueue => Resource::Msgqueue,
            PosixRlimitType::RlimitNice => Resource::Nice,
            PosixRlimitType::RlimitRtprio => Resource::Rtprio,
            PosixRlimitType::RlimitRttime => Resource::Rttime,
        };
        let limit = |v: u64| (v != u64::MAX).then_some(v);
        rustix::process::setrlimit(
            resource,
            Rlimit {
                current: limit(rl.soft()),
                maximum: limit(rl.hard()),
            },
        )
        .map_err(|e| format!("setrlimit {:?} {}:{}: {e}", rl.typ(), rl.soft(), rl.hard()))?;
    }
    Ok(())
}

/// Marks every fd above the socket close-on-exec, so nothing of berth's leaks into the
/// container's process: one `close_range(CLOSE_RANGE_CLOEXEC)` (Linux 5.11).
#[allow(unsafe_code)]
fn mark_fds_cloexec() -> Result<(), String> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags; it takes no pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (SOCKET_FD + 1) as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc < 0 {
        return Err(format!(
            "close_range(CLOEXEC): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Looks `arg0` up in the container's `PATH` as Docker (runc) does.
fn find_executable(arg0: &str, env: &[String]) -> Result<CString, Failure> {
    if arg0.contains('/') {
        return match fs::metadata(arg0) {
            Ok(_) => cstring(arg0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::Exec(
                ExecFailure::NotFound,
                format!("exec: \"{arg0}\": stat {arg0}: no such file or directory"),
            )),
            Err(e) => Err(Failure::Exec(
                ExecFailure::CannotInvoke,
                format!("exec: \"{arg0}\": stat {arg0}: {e}"),
            )),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = PathBuf::from(dir).join(arg0);
        if let Ok(md) = fs::metadata(&candidate)
            && !md.is_dir()
            && md.permissions().mode() & 0o111 != 0
        {
            return CString::new(candidate.as_os_str().as_bytes())
                .map_err(|_| Failure::Setup("NUL in path".into()));
        }
    }
    Err(Failure::Exec(
        ExecFailure::NotFound,
        format!("exec: \"{arg0}\": executable file not found in $PATH"),
    ))
}

fn exec(program: &CString, arg0: &str, argv: &[CString], envp: &[CString]) -> Failure {
    let errno = match nix::unistd::execve(program, argv, envp) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let shown = OsStr::from_bytes(program.as_bytes()).to_string_lossy();
    match errno {
        Errno::ENOENT => Failure::Exec(
            ExecFailure::NotFound,
            format!("exec {shown}: no such file or directory"),
        ),
        Errno::EACCES | Errno::EISDIR | Errno::ENOEXEC | Errno::EPERM | Errno::ETXTBSY => {
            Failure::Exec(
                ExecFailure::CannotInvoke,
                format!("exec: \"{arg0}\": {}", errno.desc().to_lowercase()),
            )
        }
        e => Failure::Exec(
            ExecFailure::CannotInvoke,
            format!("exec {shown}: {}", e.desc()),
        ),
    }
}

/// `--init`: PID 1 stays, reaps every zombie and forwards signals to the command, and exits
/// with the command's status, like tini.
#[allow(unsafe_code)]
fn reaper(
    sock: &UnixStream,
    program: &CString,
    argv: &[CString],
    envp: &[CString],
) -> Result<Infallible, Failure> {
    let all = SigSet::all();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&all), None)
        .map_err(|e| format!("block signals: {e}"))?;
    // SAFETY: init is single-threaded, so the child may do anything after fork.
    let child = match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
            let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
            if rustix::termios::isatty(std::io::stdin()) {
                let _ = rustix::termios::tcsetpgrp(std::io::stdin(), rustix::process::getpid());
            }
            let arg0 = argv
                .first()
                .map(|a| a.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Err(exec(program, &arg0, argv, envp));
        }
        ForkResult::Parent { child } => child,
    };
    // Only the command's copy of the socket may stay open, so that its exec reads as EOF.
    drop_socket(sock);
    loop {
        let signal = all.wait().map_err(|e| format!("sigwait: {e}"))?;
        if signal != Signal::SIGCHLD {
            let _ = kill(child, signal);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => std::process::exit(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                    std::process::exit(128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

#[allow(unsafe_code)]
fn drop_socket(_sock: &UnixStream) {
    // SAFETY: PID 1 never uses the socket again (it only exits from here on); closing the fd
    // under the borrowed UnixStream is sound because init_main's copy is never read again
    // on this path.
    unsafe {
        libc::close(SOCKET_FD);
    }
}

/// `ip link set lo up` without netlink: SIOCSIFFLAGS on a datagram socket.
#[allow(unsafe_code)]
fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq passed, which lives on our
    // stack for the duration of each call.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
