//! The host side: clone the container's init into its namespaces, configure it, start it,
//! wait for it.

use std::{
    ffi::CString,
    os::{
        fd::{AsRawFd, OwnedFd, RawFd},
        unix::net::UnixStream,
    },
    time::{Duration, Instant},
};

use nix::{
    sched::CloneFlags,
    sys::{
        signal::{Signal, kill},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::Pid,
};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType};

use crate::{
    InitConfig, RuntimeError,
    cgroups::Cgroup,
    exe,
    init::INIT_ARG,
    protocol::{self, FromInit, ToInit},
};

/// The fds the container's process gets as 0, 1 and 2.
#[derive(Debug)]
pub struct Stdio {
    /// Standard input.
    pub stdin: OwnedFd,
    /// Standard output.
    pub stdout: OwnedFd,
    /// Standard error.
    pub stderr: OwnedFd,
}

/// What [`create`] needs.
#[derive(Debug)]
pub struct CreateOptions {
    /// Everything init needs; `config.spec` says which namespaces to create.
    pub config: InitConfig,
    /// The process's stdio.
    pub stdio: Stdio,
    /// The cgroup to create and put the container in (e.g. `berth/<id>`), with
    /// `spec.linux.resources`; `None` leaves it in the caller's cgroups.
    pub cgroup_path: Option<String>,
    /// With `process.terminal`: the window size (rows, columns) to give the pty.
    pub console_size: Option<(u16, u16)>,
}

/// How a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Docker's exit code: the process's own, or 128 + the signal that killed it.
    pub code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
}

/// A created container: its init process is set up and waits for [`Container::start`], or is
/// running the container's command.
#[derive(Debug)]
pub struct Container {
    pid: Pid,
    sock: Option<UnixStream>,
    cgroup: Option<Cgroup>,
    console: Option<OwnedFd>,
    reaped: bool,
}

/// Clones the container's init into new namespaces, puts it in its cgroup, and has it build
/// the container. Returns when the container is ready to start.
pub fn create(opts: CreateOptions) -> Result<Container, RuntimeError> {
    let (host_sock, init_sock) =
        UnixStream::pair().map_err(|e| RuntimeError::host("socketpair", e))?;

    let spec = &opts.config.spec;
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let mut flags = CloneFlags::empty();
    for ns in &namespaces {
        if ns.path().is_some() {
            continue; // joined by init with setns
        }
        flags |= match ns.typ() {
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
            // Unshared by init after it is in its cgroup, so the namespace is rooted there.
            LinuxNamespaceType::Cgroup => CloneFlags::empty(),
            LinuxNamespaceType::Time => CloneFlags::empty(),
        };
    }
    let user_ns = flags.contains(CloneFlags::CLONE_NEWUSER);
    let fds = [
        opts.stdio.stdin.as_raw_fd(),
        opts.stdio.stdout.as_raw_fd(),
        opts.stdio.stderr.as_raw_fd(),
        init_sock.as_raw_fd(),
    ];
    let in_process = may_init_in_process(&opts.config, flags);
    let pid = if in_process {
        clone_in_process(flags, fds, &opts.config)?
    } else {
        let exe = exe::sealed_self().map_err(|e| RuntimeError::host("open berth's binary", e))?;
        // In a new user namespace the child must not exec before its uid and gid maps
        // exist: exec as an unmapped uid would drop every capability. It waits on this pipe.
        let maps_ready = if user_ns {
            Some(std::io::pipe().map_err(|e| RuntimeError::host("pipe", e))?)
        } else {
            None
        };
        let pid = clone_init(
            exe.as_raw_fd(),
            flags,
            maps_ready.as_ref().map_or(-1, |(r, _)| r.as_raw_fd()),
            fds,
        )?;
        if let Some((reader, writer)) = maps_ready {
            drop(reader);
            write_id_maps(pid, &opts.config, writer)?;
        }
        pid
    };
    drop(init_sock);
    drop(opts.stdio);
    let mut container = Container {
        pid,
        sock: Some(host_sock),
        cgroup: None,
        console: None,
        reaped: false,
    };
    let configured = container.configure(
        (!in_process).then_some(&opts.config),
        &opts.config,
        opts.cgroup_path.as_deref(),
        opts.console_size,
    );
    match configured {
        Ok(()) => Ok(container),
        Err(e) => {
            container.abort();
            // The caller never gets this container to delete: remove its cgroup here.
            if let Some(cgroup) = container.cgroup.take() {
                let _ = cgroup.destroy();
            }
            Err(e)
        }
    }
}

/// Writes the uid and gid maps of a child cloned into a new user namespace, then lets it go
/// on through `writer`; kills and reaps it when that fails.
fn write_id_maps(
    pid: Pid,
    config: &InitConfig,
    mut writer: std::io::PipeWriter,
) -> Result<(), RuntimeError> {
    let linux = config.spec.linux().as_ref();
    let uid = linux
        .and_then(|l| l.uid_mappings().clone())
        .unwrap_or_default();
    let gid = linux
        .and_then(|l| l.gid_mappings().clone())
        .unwrap_or_default();
    let mapped = write_id_map(pid, "uid_map", &uid)
        .and_then(|()| write_id_map(pid, "gid_map", &gid))
        .and_then(|()| {
            use std::io::Write;
            writer
                .write_all(b"m")
                .map_err(|e| RuntimeError::host("release init", e))
        });
    if let Err(e) = mapped {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        return Err(e);
    }
    Ok(())
}

/// Whether the container's init may run in the cloned copy of this process instead of a
/// fresh `berth init` executed from a sealed copy of the binary, which saves the
/// milliseconds an exec of berth costs. Only when all of these hold:
/// - this process has a single thread: the child of a `clone` has only the calling thread,
///   and a lock another thread held at that moment (the allocator's, stdio's) would stay
///   held in the child for ever; with one thread there is no such lock;
/// - the container gets its own PID namespace and no `--init`: until init executes the
///   command, it is the only process in there, so nothing in the container can open
///   `/proc/<pid>/exe` and reach berth's binary on the host (CVE-2019-5736); with `--init`
///   berth's code would stay PID 1 for the container's whole life;
/// - no new user namespace (its id maps are written between clone and exec).
fn may_init_in_process(config: &InitConfig, flags: CloneFlags) -> bool {
    if config.init
        || !flags.contains(CloneFlags::CLONE_NEWPID)
        || flags.contains(CloneFlags::CLONE_NEWUSER)
    {
        return false;
    }
    // A thread berth started for itself (the cgroup pre-warm) is waited for here.
    crate::cgroups::finish_prewarm();
    thread_count() == Some(1)
}

/// This process's number of threads, from `/proc/self/stat` (field 20).
fn thread_count() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(17)?.parse().ok()
}

impl Container {
    /// The init process's pid on the host.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The master side of the container's pty (with `process.terminal`), once.
    pub fn take_console(&mut self) -> Option<OwnedFd> {
        self.console.take()
    }

    /// The container's cgroup, if it has its own.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// Sends init `send` (an init running in a copy of this process has its configuration
    /// already), makes the cgroup and puts init in it, takes the pty, and waits until init
    /// is ready to start the command.
    fn configure(
        &mut self,
        send: Option<&InitConfig>,
        config: &InitConfig,
        cgroup_path: Option<&str>,
        console_size: Option<(u16, u16)>,
    ) -> Result<(), RuntimeError> {
        let sock = self.sock.as_ref().expect("socket");
        if let Some(config) = send
            && let Err(e) = protocol::send(sock, &ToInit::Config(Box::new(config.clone())))
        {
            return Err(self.init_gone("send the container's configuration to init", e));
        }
        // Made while init starts up and builds the rootfs (it waits for `Joined` only before
        // it unshares its cgroup namespace): making a v1 cgroup in every hierarchy, and the
        // attach, which waits for an RCU grace period, cost milliseconds each.
        if let Some(path) = cgroup_path {
            let resources = config
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.resources().clone())
                .unwrap_or_default();
            let cgroup = self.cgroup.insert(Cgroup::create(path, &resources)?);
            cgroup.add_process(self.pid.as_raw())?;
        }
        let sock = self.sock.as_ref().expect("socket");
        if let Err(e) = protocol::send(sock, &ToInit::Joined) {
            return Err(self.init_gone("tell init it is in its cgroup", e));
        }
        let terminal = config
            .spec
            .process()
            .as_ref()
            .is_some_and(|p| p.terminal().unwrap_or(false));
        if terminal {
            match crate::console::recv_fd(sock) {
                Ok(master) => {
                    if let Some((rows, cols)) = console_size {
                        let _ = crate::console::set_window_size(&master, rows, cols);
                    }
                    self.console = Some(master);
                }
                // Init failed first: its error follows.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
                Err(e) => return Err(RuntimeError::host("receive the container's pty", e)),
            }
        }
        match protocol::recv::<FromInit>(sock) {
            Ok(Some(FromInit::Ready)) => Ok(()),
            Ok(Some(other)) => Err(other.into_error()),
            Ok(None) => Err(RuntimeError::Init(
                "the container's init exited while setting up".into(),
            )),
            // Reset: init is gone without reading what was sent to it; say how it ended.
            Err(e) => Err(self.init_gone("read from the container's init", e)),
        }
    }

    /// Explains a socket error while configuring init: init's own error message when it sent
    /// one before it exited, else how it ended.
    fn init_gone(&mut self, what: &str, e: std::io::Error) -> RuntimeError {
        if let Some(sock) = &self.sock
            && let Ok(Some(FromInit::Error(message))) = protocol::recv::<FromInit>(sock)
        {
            return RuntimeError::Init(message);
        }
        self.sock = None;
        // Its socket failed, so init is ending or has ended; one that is somehow still there
        // after a moment is killed, so that this never waits forever.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut waited = None;
        while Instant::now() < deadline {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(5)),
                other => {
                    waited = Some(other);
                    break;
                }
            }
        }
        let killed_here = waited.is_none();
        let waited = waited.unwrap_or_else(|| {
            let _ = kill(self.pid, Signal::SIGKILL);
            waitpid(self.pid, None)
        });
        let status = match waited {
            Ok(_) if killed_here => {
                self.reaped = true;
                "did not exit within 3 s, so berth killed it".to_string()
            }
            Ok(WaitStatus::Exited(_, code)) => {
                self.reaped = true;
                let why = match code {
                    CHILD_FD_SETUP_FAILED => " (placing its fds failed)",
                    CHILD_EXEC_FAILED => " (executing berth init failed)",
                    CHILD_ID_SETUP_FAILED => " (becoming root of its user namespace failed)",
                    _ => "",
                };
                format!("exited with status {code}{why}")
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                self.reaped = true;
                format!("was killed by {sig}")
            }
            Ok(other) => format!("is in state {other:?}"),
            Err(err) => format!("cannot be waited for: {err}"),
        };
        RuntimeError::Init(format!("{what}: {e}: the container's init {status}"))
    }

    /// Lets the container execute its command. Returns once the command runs (the exec
    /// succeeded) or with [`RuntimeError::Exec`] when it could not be executed.
    pub fn start(&mut self) -> Result<(), RuntimeError> {
        self.release()?;
        self.confirm_start()
    }

    /// Tells init to execute the command, without waiting to learn whether it could:
    /// [`Container::confirm_start`] says that. The caller may record the start meanwhile, while
    /// the kernel executes the command.
    pub fn release(&mut self) -> Result<(), RuntimeError> {
        let Some(sock) = &self.sock else {
            return Err(RuntimeError::Init(
                "the container was already started".into(),
            ));
        };
        if let Err(e) = protocol::send(sock, &ToInit::Start) {
            self.abort();
            return Err(RuntimeError::host("start the container", e));
        }
        Ok(())
    }

    /// After [`Container::release`]: returns once the command runs, or with
    /// [`RuntimeError::Exec`] when it could not be executed.
    pub fn confirm_start(&mut self) -> Result<(), RuntimeError> {
        let Some(sock) = self.sock.take() else {
            return Err(RuntimeError::Init(
                "the container was already started".into(),
            ));
        };
        let result = match protocol::recv::<FromInit>(&sock) {
            Ok(None) => Ok(()),
            Ok(Some(other)) => Err(other.into_error()),
            Err(e) => {
                self.sock = Some(sock);
                Err(self.init_gone("read from the container's init", e))
            }
        };
        if result.is_err() {
            self.abort();
        }
        result
    }

    /// Sends `signal` to the container's init process.
    pub fn signal(&self, signal: Signal) -> Result<(), RuntimeError> {
        if self.reaped {
            return Ok(());
        }
        kill(self.pid, signal).map_err(|e| RuntimeError::host(format!("send {signal}"), e))
    }

    /// Waits for the container's init to exit (every other process of a container with its
    /// own pid namespace is killed with it).
    pub fn wait(&mut self) -> Result<Exit, RuntimeError> {
        let (code, signal) = wait_exit(self.pid)?;
        self.reaped = true;
        let oom_killed = match &self.cgroup {
            Some(cgroup) => cgroup.oom_kill_count().unwrap_or(0) > 0,
            None => false,
        };
        Ok(Exit {
            code,
            signal,
            oom_killed,
        })
    }

    /// Kills whatever is left of the container and removes its cgroup.
    pub fn delete(mut self) -> Result<(), RuntimeError> {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = self.wait();
        }
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.destroy()?;
        }
        Ok(())
    }

    /// Kills and reaps init after a failure; the cgroup stays for `delete`.
    fn abort(&mut self) {
        self.sock = None;
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
            self.reaped = true;
        }
    }
}

/// Waits for the child `pid` to end: Docker's exit code (the status, or 128 + the signal)
/// and the signal that killed it.
pub(crate) fn wait_exit(pid: Pid) -> Result<(i32, Option<i32>), RuntimeError> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok((code, None)),
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Ok((128 + sig as i32, Some(sig as i32)));
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RuntimeError::host("wait for the container's process", e)),
        }
    }
}

fn write_id_map(pid: Pid, file: &str, map: &[LinuxIdMapping]) -> Result<(), RuntimeError> {
    let text: String = map
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    let path = format!("/proc/{pid}/{file}");
    std::fs::write(&path, text).map_err(|e| RuntimeError::host(format!("write {path}"), e))
}

/// Exit statuses of the cloned child before it runs berth init, to tell the failures apart.
const CHILD_FD_SETUP_FAILED: i32 = 121;
const CHILD_EXEC_FAILED: i32 = 122;
const CHILD_ID_SETUP_FAILED: i32 = 123;

/// Clones a child into `flags`' new namespaces that puts `fds` at 0, 1, 2 and 3 and executes
/// `exe` as `berth init`; with `wait_fd` >= 0 it first waits for a byte on it.
#[allow(unsafe_code)]
pub(crate) fn clone_init(
    exe: RawFd,
    flags: CloneFlags,
    wait_fd: RawFd,
    fds: [RawFd; 4],
) -> Result<Pid, RuntimeError> {
    // Everything the child touches is made here: after clone() in a process that may have
    // other threads, the child may only make async-signal-safe calls (no allocation).
    let argv: [CString; 2] = [c"berth".into(), CString::new(INIT_ARG).expect("no NUL")];
    let argv_ptrs: [*const libc::c_char; 3] =
        [argv[0].as_ptr(), argv[1].as_ptr(), std::ptr::null()];
    let envp_ptrs: [*const libc::c_char; 1] = [std::ptr::null()];
    let mut stack = vec![0u8; 64 * 1024];
    let child = Box::new(move || -> isize {
        // SAFETY: only async-signal-safe libc calls on memory prepared before the clone.
        unsafe {
            if wait_fd >= 0 {
                let mut byte = 0u8;
                if libc::read(wait_fd, (&mut byte as *mut u8).cast(), 1) != 1 {
                    libc::_exit(CHILD_ID_SETUP_FAILED);
                }
                // Still the caller's (host) uid, unmapped in the new namespace: become its
                // root, so that the exec keeps the namespace's capabilities. Raw system
                // calls: glibc's wrappers would signal threads this process does not have.
                if libc::syscall(libc::SYS_setresgid, 0, 0, 0) != 0
                    || libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
                    || libc::syscall(libc::SYS_setresuid, 0, 0, 0) != 0
                {
                    libc::_exit(CHILD_ID_SETUP_FAILED);
                }
            }
            if !place_fds(&fds) {
                libc::_exit(CHILD_FD_SETUP_FAILED);
            }
            // Die with the process that created us rather than linger unsupervised.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::fexecve(exe, argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
            libc::_exit(CHILD_EXEC_FAILED)
        }
    });
    // SAFETY: the child runs only the closure above, which execs or exits; CLONE_VM is not
    // set, so it has its own copy of memory, including `stack`.
    let pid = unsafe { nix::sched::clone(child, &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(|e| RuntimeError::host("clone the container's init", e))?;
    Ok(pid)
}

/// Puts `fds` at 0, 1, 2 and 3 in a freshly cloned child; false when a `dup` failed.
///
/// # Safety
/// Only async-signal-safe calls: it runs in a child cloned from a process that may have other
/// threads.
#[allow(unsafe_code)]
unsafe fn place_fds(fds: &[RawFd; 4]) -> bool {
    // Move the fds above 3 first, so that placing one cannot clobber another.
    let mut high = [0; 4];
    for (i, fd) in fds.iter().enumerate() {
        // SAFETY: fcntl on an fd number; no pointers.
        high[i] = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10) };
        if high[i] < 0 {
            return false;
        }
    }
    for (target, fd) in high.iter().enumerate() {
        // SAFETY: dup2 on fd numbers; no pointers.
        if unsafe { libc::dup2(*fd, target as libc::c_int) } < 0 {
            return false;
        }
    }
    true
}

/// The stack the child of [`clone_in_process`] runs init on: its own mapping with a guard
/// page below it, so that an overflow faults instead of writing over the heap.
struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

impl ChildStack {
    const SIZE: usize = 8 << 20;
    const GUARD: usize = 64 << 10;

    #[allow(unsafe_code)]
    fn new() -> Result<ChildStack, RuntimeError> {
        let len = Self::SIZE + Self::GUARD;
        // SAFETY: a fresh anonymous private mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(RuntimeError::host(
                "map the container init's stack",
                std::io::Error::last_os_error(),
            ));
        }
        let stack = ChildStack { base, len };
        // SAFETY: the lowest GUARD bytes of the mapping just made.
        if unsafe { libc::mprotect(base, Self::GUARD, libc::PROT_NONE) } != 0 {
            return Err(RuntimeError::host(
                "guard the container init's stack",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(stack)
    }

    #[allow(unsafe_code)]
    fn usable(&mut self) -> &mut [u8] {
        // SAFETY: the mapping above the guard is readable and writable, owned by self, and
        // SIZE bytes long.
        unsafe {
            std::slice::from_raw_parts_mut(self.base.cast::<u8>().add(Self::GUARD), Self::SIZE)
        }
    }
}

impl Drop for ChildStack {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the mapping made in new(), unmapped once. The child has its own copy.
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

/// Clones a child into `flags`' new namespaces that puts `fds` at 0, 1, 2 and 3 and runs
/// the container's init on its copy of `config`, without executing anything (see
/// `may_init_in_process` for when this is allowed).
#[allow(unsafe_code)]
fn clone_in_process(
    flags: CloneFlags,
    fds: [RawFd; 4],
    config: &InitConfig,
) -> Result<Pid, RuntimeError> {
    let mut stack = ChildStack::new()?;
    let child = Box::new(move || -> isize {
        // SAFETY: fd placement and prctl take no pointers into shared state; this process
        // has only this thread (checked before the clone), so what follows may allocate.
        unsafe {
            if !place_fds(&fds) {
                libc::_exit(CHILD_FD_SETUP_FAILED);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        crate::init::run_in_process(config)
    });
    // SAFETY: CLONE_VM is not set, so the child runs the closure on its own copy of `stack`
    // and of everything the closure borrows; it never returns (init execs or exits).
    let pid = unsafe { nix::sched::clone(child, stack.usable(), flags, Some(libc::SIGCHLD)) }
        .map_err(|e| RuntimeError::host("clone the container's init", e))?;
    Ok(pid)
}
