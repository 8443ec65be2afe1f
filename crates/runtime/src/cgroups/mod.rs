//! Control groups for one container, cgroup v1 and v2 behind one [`Cgroup`] type.
//!
//! Written on plain file I/O (std::fs, rustix for mounts and signals), no cgroup library.
//! The hierarchies are found in `/proc/thread-self/mountinfo`, never at hard-coded paths:
//!
//! - **v1** (also "hybrid": v1 controllers plus a cgroup2 mount such as
//!   `/sys/fs/cgroup/unified`, which is ignored): every mounted v1 hierarchy, co-mounted
//!   ones like `cpu,cpuacct` and named ones like `name=systemd` included. A container's
//!   cgroup is `<mountpoint>/<path>` in each of them.
//! - **v2**: one unified mount (chosen only when no v1 hierarchy carries a controller); a
//!   container's cgroup is `<mountpoint>/<path>`, and each ancestor gets the controllers
//!   enabled in its `cgroup.subtree_control`.
//!
//! # Order of operations for a container
//!
//! 1. [`Cgroup::create`] from the parent (runtime/monitor), before the container's init runs
//!    user code.
//! 2. [`Cgroup::add_process`] with the init's pid, **before** the init calls
//!    `unshare(CLONE_NEWCGROUP)`: a cgroup namespace is rooted at the cgroups the process is
//!    in when it unshares. So the init must not be cloned with `CLONE_NEWCGROUP`; it waits on
//!    the sync socket until the parent has added it, then unshares.
//! 3. In the init, after the unshare and while the host's cgroup mounts are still visible
//!    in its (new, private) mount namespace, i.e. before `pivot_root`:
//!    [`mount_container_view`] on `<rootfs>/sys/fs/cgroup`.
//! 4. Later, from any process: [`Cgroup::open`] for stats, freeze, OOM counts and
//!    [`Cgroup::destroy`], which kills whatever is left and removes the directories.
//! 5. At engine start after a crash: [`remove_stale`].
//!
//! # What is not enforced
//!
//! On cgroup v2, device rules need an eBPF program attached to the cgroup; berth does not
//! load one yet, so **v2 device rules are not enforced**. [`Cgroup::create`] and
//! [`Cgroup::update`] accept them, log a `tracing::warn!` once per process, and go on.
//! Kernel memory limits (`memory.kernel`, `memory.kernelTCP`, obsolete since Linux 5.4) are
//! ignored with a warning, as are `memory.swappiness` and `disableOOMKiller` on v2, which has
//! no such files.

mod v1;
mod v2;

use std::{
    collections::BTreeSet,
    ffi::CString,
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use oci_spec::runtime::LinuxResources;
use rustix::{
    io::Errno,
    mount::MountFlags,
    process::{Pid, Signal},
};

/// Which cgroup version the host runs (hybrid hosts count as v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Legacy: one hierarchy per controller (or per group of co-mounted controllers).
    V1,
    /// Unified: one hierarchy for all controllers.
    V2,
}

/// Everything that can go wrong with cgroups. File errors name the file and the value.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `/proc/thread-self/mountinfo` shows no cgroup hierarchy at all.
    #[error("no cgroup hierarchy is mounted (none in /proc/thread-self/mountinfo)")]
    NotMounted,
    /// [`Cgroup::open`] found the cgroup in no hierarchy.
    #[error("cgroup {path} does not exist")]
    NotFound {
        /// The cgroup path, relative to the hierarchy roots.
        path: String,
    },
    /// A cgroup path that is empty or has `.`/`..`/empty components.
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath {
        /// What was given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A resource was asked for whose controller the host does not have (v1: no hierarchy
    /// for it; v2: not in the cgroup's `cgroup.controllers`).
    #[error(
        "{resource} needs the {controller} cgroup controller, which this host does not provide"
    )]
    MissingController {
        /// The controller (`memory`, `pids`, ...).
        controller: String,
        /// The resource that needed it (`memory.limit`, ...).
        resource: String,
    },
    /// A resource value that cannot be applied.
    #[error("invalid {resource}: {reason}")]
    InvalidResource {
        /// The resource (`memory.swap`, ...).
        resource: String,
        /// Why.
        reason: String,
    },
    /// Reading a cgroup file or directory failed.
    #[error("read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Writing a value to a cgroup file failed.
    #[error("write {value} to {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Creating a cgroup directory (or a directory or link of the container view) failed.
    #[error("create {}: {source}", path.display())]
    Create {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Removing a cgroup directory failed (`Device or resource busy`: processes are left).
    #[error("remove {}: {source}", path.display())]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A cgroup file had content berth does not understand.
    #[error("parse {}: unexpected content {content:?}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held.
        content: String,
    },
    /// A state change (freeze, thaw, exit of killed processes) did not settle in time.
    #[error("{} did not become {want} within {waited:?} (last read {last:?})", path.display())]
    Timeout {
        /// The file that was polled.
        path: PathBuf,
        /// The state waited for.
        want: String,
        /// How long.
        waited: Duration,
        /// What it read last.
        last: String,
    },
    /// Sending SIGKILL to a process of the cgroup failed.
    #[error("kill process {pid} of {}: {source}", path.display())]
    Kill {
        /// The process.
        pid: i32,
        /// The cgroup directory it was listed in.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A mount of the container's cgroup view failed.
    #[error("mount {what} on {}: {source}", target.display())]
    Mount {
        /// The file system and options (`cgroup (memory)`, `tmpfs (mode=755)`).
        what: String,
        /// The mount point.
        target: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

type Result<T, E = CgroupError> = std::result::Result<T, E>;

/// A snapshot of a cgroup's usage. A figure whose controller the host lacks reads 0/`None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Memory in use, in bytes, without the inactive file cache (what `docker stats`
    /// shows: v1 `memory.usage_in_bytes` minus `total_inactive_file`, v2 `memory.current`
    /// minus `inactive_file`).
    pub memory_usage: u64,
    /// The memory limit in bytes; `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// CPU time used by all processes, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Processes (tasks) in the cgroup now.
    pub pids_current: u64,
    /// `pids.max`; `None` when unlimited.
    pub pids_limit: Option<u64>,
}

/// Bytes the cgroup's processes read from and wrote to block devices, per device (what
/// `docker stats` sums as `BLOCK I/O`, and the Engine API lists per device). Empty when the
/// host has no block I/O controller for the cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoStats {
    /// One entry per device, in the order the kernel lists them.
    pub devices: Vec<DeviceIo>,
}

/// One block device's counts in [`IoStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceIo {
    /// The device's major number.
    pub major: u64,
    /// The device's minor number.
    pub minor: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
}

impl IoStats {
    /// Bytes read, over all devices.
    pub fn read_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.read_bytes).sum()
    }

    /// Bytes written, over all devices.
    pub fn write_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.write_bytes).sum()
    }

    /// The entry of device `major:minor` (`8:0`), added if new; `None` for a malformed one.
    fn device(&mut self, name: &str) -> Option<&mut DeviceIo> {
        let (major, minor) = name.split_once(':')?;
        let (major, minor) = (major.parse().ok()?, minor.parse().ok()?);
        let at = match self
            .devices
            .iter()
            .position(|d| d.major == major && d.minor == minor)
        {
            Some(at) => at,
            None => {
                self.devices.push(DeviceIo {
                    major,
                    minor,
                    ..DeviceIo::default()
                });
                self.devices.len() - 1
            }
        };
        Some(&mut self.devices[at])
    }
}

/// Which cgroup version this host runs, from `/proc/thread-self/mountinfo`.
pub fn detect() -> Result<CgroupVersion> {
    Ok(match Layout::current()? {
        Layout::V1(_) => CgroupVersion::V1,
        Layout::V2(_) => CgroupVersion::V2,
    })
}

/// One container's cgroup: a directory in every v1 hierarchy, or the one v2 directory.
#[derive(Debug)]
pub struct Cgroup {
    path: String,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    V1(v1::V1Cgroup),
    V2(v2::V2Cgroup),
}

impl Cgroup {
    /// Creates `<hierarchy>/<path>` (path like `berth/<64-hex id>`; a leading `/` is
    /// ignored) and applies `resources`. Missing parents are created with what they need:
    /// on v2 each ancestor gets the available controllers in `cgroup.subtree_control`; on
    /// v1 `cpuset.cpus` and `cpuset.mems` are copied down from the parent into each new
    /// level (an empty cpuset refuses processes). An existing directory is reused. If
    /// applying fails, the leaf directories this call made are removed again.
    pub fn create(path: &str, resources: &LinuxResources) -> Result<Cgroup> {
        Self::create_in(&Layout::current()?, path, resources)
    }

    /// An existing cgroup, e.g. to kill, inspect or remove it from another process.
    pub fn open(path: &str) -> Result<Cgroup> {
        Self::open_in(&Layout::current()?, path)
    }

    fn create_in(layout: &Layout, path: &str, resources: &LinuxResources) -> Result<Cgroup> {
        let comps = split_path(path)?;
        let inner = match layout {
            Layout::V1(hierarchies) => {
                Inner::V1(v1::V1Cgroup::create(hierarchies, &comps, resources)?)
            }
            Layout::V2(root) => Inner::V2(v2::V2Cgroup::create(root, &comps, resources)?),
        };
        Ok(Cgroup {
            path: comps.join("/"),
            inner,
        })
    }

    fn open_in(layout: &Layout, path: &str) -> Result<Cgroup> {
        let comps = split_path(path)?;
        let rel = comps.join("/");
        let inner = match layout {
            Layout::V1(hierarchies) => v1::V1Cgroup::open(hierarchies, &rel).map(Inner::V1),
            Layout::V2(root) => v2::V2Cgroup::open(root, &rel).map(Inner::V2),
        };
        Ok(Cgroup {
            inner: inner.ok_or_else(|| CgroupError::NotFound { path: rel.clone() })?,
            path: rel,
        })
    }

    /// The cgroup path this was created or opened with (without a leading `/`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The cgroup version of the hierarchies this cgroup lives in.
    pub fn version(&self) -> CgroupVersion {
        match self.inner {
            Inner::V1(_) => CgroupVersion::V1,
            Inner::V2(_) => CgroupVersion::V2,
        }
    }

    /// Moves process `pid` (its whole thread group) into the cgroup: `cgroup.procs` of
    /// every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        match &self.inner {
            Inner::V1(c) => c.add_process(pid),
            Inner::V2(c) => c.add_process(pid),
        }
    }

    /// Applies `resources` to a cgroup that may already hold processes. Only what
    /// `resources` sets is written; what it leaves out stays as it is. v1 device rules are
    /// written in their order, so a leading deny-all briefly denies every device to the
    /// running processes until the allow rules that follow are written.
    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        match &self.inner {
            Inner::V1(c) => c.apply(resources),
            Inner::V2(c) => c.apply(resources),
        }
    }

    /// How many times the kernel's OOM killer killed a process of this cgroup: v1 the
    /// `oom_kill` line of `memory.oom_control` (Linux 4.13 and later), v2 `oom_kill` in
    /// `memory.events`.
    pub fn oom_kill_count(&self) -> Result<u64> {
        match &self.inner {
            Inner::V1(c) => c.oom_kill_count(),
            Inner::V2(c) => c.oom_kill_count(),
        }
    }

    /// The processes in the cgroup and its descendants (in every v1 hierarchy), sorted,
    /// as pids of the caller's pid namespace.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut set = BTreeSet::new();
        for dir in self.paths() {
            procs_recursive(&dir, &mut set)?;
        }
        Ok(set.into_iter().collect())
    }

    /// Freezes every process, waiting until the kernel reports the cgroup frozen (v1
    /// `freezer.state` FROZEN, v2 `cgroup.events` `frozen 1`).
    pub fn freeze(&self) -> Result<()> {
        match &self.inner {
            Inner::V1(c) => c.freeze(),
            Inner::V2(c) => c.freeze(),
        }
    }

    /// Thaws a frozen cgroup, waiting until the kernel reports it thawed.
    pub fn thaw(&self) -> Result<()> {
        match &self.inner {
            Inner::V1(c) => c.thaw(),
            Inner::V2(c) => c.thaw(),
        }
    }

    /// Memory, CPU and pids usage now.
    pub fn stats(&self) -> Result<CgroupStats> {
        match &self.inner {
            Inner::V1(c) => c.stats(),
            Inner::V2(c) => c.stats(),
        }
    }

    /// Block I/O so far: v1 the first of `blkio.io_service_bytes_recursive` (CFQ),
    /// `blkio.bfq.io_service_bytes_recursive` (BFQ) and
    /// `blkio.throttle.io_service_bytes_recursive` that lists a device, as runc reads them;
    /// v2 `rbytes` and `wbytes` of `io.stat`.
    pub fn io_stats(&self) -> Result<IoStats> {
        match &self.inner {
            Inner::V1(c) => c.io_stats(),
            Inner::V2(c) => c.io_stats(),
        }
    }

    /// Kills every process left (SIGKILL; the cgroup is frozen first, or on v2 killed
    /// through `cgroup.kill`, so none can fork meanwhile), waits for them to leave, then
    /// removes the directories (child cgroups first), retrying `rmdir` on EBUSY for up to
    /// [`DESTROY_TIMEOUT`]. Needs no more than [`Cgroup::open`] gives: any process with the
    /// right to write the cgroup files can destroy it. The caller should still `wait` for
    /// its own children among the killed processes; zombies do not keep the cgroup busy.
    /// The parent directories (`berth/`) stay.
    pub fn destroy(self) -> Result<()> {
        // The usual case: the container's init has exited and took every process of its pid
        // namespace with it, and nothing made a cgroup below: one rmdir per directory (the
        // kernel refuses it while a process or a child cgroup is left, and the walk below
        // deals with those).
        let mut left_over = false;
        for dir in self.paths() {
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => left_over = true,
            }
        }
        if !left_over {
            return Ok(());
        }
        // Freezing and killing an empty cgroup is wasted work.
        if !self.pids()?.is_empty() {
            match &self.inner {
                Inner::V1(c) => c.kill_all()?,
                Inner::V2(c) => c.kill_all()?,
            }
        }
        let deadline = Instant::now() + DESTROY_TIMEOUT;
        // Killed processes take a moment to exit; kill again whatever is still listed
        // (without a freezer, something may have forked in between).
        loop {
            let left = self.pids()?;
            if left.is_empty() || Instant::now() >= deadline {
                break;
            }
            kill_pids(&left, &self.paths()[0])?;
            thread::sleep(Duration::from_millis(5));
        }
        let mut first_err = None;
        for dir in self.paths() {
            if let Err(e) = remove_dir_retrying(&dir, deadline) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The cgroup's directories: one per v1 hierarchy, or the one v2 directory.
    pub fn paths(&self) -> Vec<PathBuf> {
        match &self.inner {
            Inner::V1(c) => c.paths(),
            Inner::V2(c) => vec![c.dir().to_owned()],
        }
    }
}

/// On cgroup v1, moving a process into a cgroup first waits for an RCU grace period (the
/// kernel switches `cgroup_threadgroup_rwsem` to its slow mode; 10 ms or more), and stays
/// fast for about one grace period after. This starts that wait early, on a thread, with a
/// no-op move of this process into the cgroup it is already in, so that a container's attach
/// a few milliseconds later finds the lock already switched. Errors are ignored: it only
/// saves time.
pub fn prewarm_attach() {
    let spawned = std::thread::Builder::new()
        .name("cgroup-prewarm".into())
        .spawn(|| {
            let Ok(Layout::V1(hierarchies)) = Layout::current() else {
                return;
            };
            let Some(h) = hierarchies.iter().find(|h| h.has("pids")) else {
                return;
            };
            let Ok(own) = fs::read_to_string("/proc/self/cgroup") else {
                return;
            };
            let Some(rel) = own.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
                ctrls.split(',').any(|c| c == "pids").then_some(path)
            }) else {
                return;
            };
            let procs = h
                .mountpoint
                .join(rel.trim_start_matches('/'))
                .join("cgroup.procs");
            // Only a true no-op: under a cgroup namespace the path may name another cgroup.
            let me = std::process::id().to_string();
            let listed = fs::read_to_string(&procs).is_ok_and(|l| l.lines().any(|p| p == me));
            if listed {
                let _ = fs::write(procs, me);
            }
        });
    if let Ok(handle) = spawned {
        *PREWARM.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    }
}

static PREWARM: std::sync::Mutex<Option<std::thread::JoinHandle<()>>> = std::sync::Mutex::new(None);

/// Waits for the thread [`prewarm_attach`] started, if any, to end.
pub(crate) fn finish_prewarm() {
    let handle = PREWARM.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(handle) = handle {
        let _ = handle.join();
    }
}

/// How long [`Cgroup::destroy`] waits for killed processes to leave and `rmdir` to succeed.
pub const DESTROY_TIMEOUT: Duration = Duration::from_secs(5);

/// Mounts the container's read-only view of its cgroups at `target`, an existing directory
/// such as `<rootfs>/sys/fs/cgroup`.
///
/// Call it inside the container's own mount namespace, after the process has joined its
/// cgroup and unshared its cgroup namespace (so the mounts are rooted at the container's
/// cgroup), and before `pivot_root` (the host's cgroup mounts are read from
/// `/proc/thread-self/mountinfo`).
///
/// - v2: one `cgroup2` mount, `ro,nosuid,nodev,noexec`.
/// - v1: a `tmpfs` (`mode=755`, `nosuid,nodev,noexec`), in it one read-only `cgroup` mount
///   per v1 hierarchy named like the host's mount point (`memory`, `cpu,cpuacct`,
///   `systemd`), symlinks for co-mounted controllers (`cpu -> cpu,cpuacct`), and finally the
///   tmpfs made read-only, as runc does for Docker.
pub fn mount_container_view(target: &Path) -> Result<()> {
    let layout = Layout::current()?;
    let base = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    match layout {
        Layout::V2(_) => mount(
            c"cgroup2",
            target,
            c"cgroup2",
            base | MountFlags::RDONLY,
            None,
            "cgroup2",
        ),
        Layout::V1(hierarchies) => {
            mount(
                c"tmpfs",
                target,
                c"tmpfs",
                base,
                Some(c"mode=755"),
                "tmpfs (mode=755)",
            )?;
            for entry in v1::view_entries(&hierarchies) {
                let dir = target.join(&entry.dir);
                create_dir(&dir)?;
                let data =
                    CString::new(entry.options.clone()).map_err(|_| CgroupError::InvalidPath {
                        path: entry.options.clone(),
                        reason: "contains a NUL byte",
                    })?;
                let what = format!("cgroup ({})", entry.options);
                mount(
                    c"cgroup",
                    &dir,
                    c"cgroup",
                    base | MountFlags::RDONLY,
                    Some(&data),
                    &what,
                )?;
                for link in &entry.links {
                    let at = target.join(link);
                    std::os::unix::fs::symlink(&entry.dir, &at)
                        .map_err(|source| CgroupError::Create { path: at, source })?;
                }
            }
            rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY | base, "")
                .map_err(|e| CgroupError::Mount {
                    what: "remount read-only tmpfs".into(),
                    target: target.to_owned(),
                    source: e.into(),
                })
        }
    }
}

fn mount(
    source: &std::ffi::CStr,
    target: &Path,
    fstype: &std::ffi::CStr,
    flags: MountFlags,
    data: Option<&std::ffi::CStr>,
    what: &str,
) -> Result<()> {
    rustix::mount::mount(source, target, fstype, flags, data).map_err(|e| CgroupError::Mount {
        what: what.to_owned(),
        target: target.to_owned(),
        source: e.into(),
    })
}

/// Removes the cgroups under `parent` (e.g. `berth`) whose name `keep` rejects and that
/// hold no processes (in any hierarchy, child cgroups included): the cleanup after a crash.
/// Returns the names removed, sorted. A cgroup that still has processes is left alone, and
/// so is one that becomes busy while it is removed.
pub fn remove_stale(parent: &str, keep: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
    remove_stale_in(&Layout::current()?, parent, keep)
}

fn remove_stale_in(
    layout: &Layout,
    parent: &str,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>> {
    let rel = split_path(parent)?.join("/");
    let roots: Vec<PathBuf> = match layout {
        Layout::V1(hierarchies) => hierarchies
            .iter()
            .map(|h| h.mountpoint.join(&rel))
            .collect(),
        Layout::V2(root) => vec![root.join(&rel)],
    };
    let mut names = BTreeSet::new();
    for root in &roots {
        let entries = match fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(CgroupError::Read {
                    path: root.clone(),
                    source,
                });
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| CgroupError::Read {
                path: root.clone(),
                source,
            })?;
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if let (true, Some(name)) = (is_dir, entry.file_name().to_str())
                && !keep(name)
            {
                names.insert(name.to_owned());
            }
        }
    }
    let mut removed = Vec::new();
    'names: for name in names {
        let dirs: Vec<PathBuf> = roots
            .iter()
            .map(|r| r.join(&name))
            .filter(|d| d.is_dir())
            .collect();
        let mut procs = BTreeSet::new();
        for dir in &dirs {
            procs_recursive(dir, &mut procs)?;
        }
        if !procs.is_empty() {
            tracing::debug!(cgroup = %name, ?procs, "stale cgroup still has processes; left alone");
            continue;
        }
        for dir in &dirs {
            match rmdir_tree(dir) {
                Ok(()) => {}
                Err((_, e)) if e.raw_os_error() == Some(Errno::BUSY.raw_os_error()) => {
                    tracing::warn!(cgroup = %name, dir = %dir.display(), "stale cgroup became busy; left alone");
                    continue 'names;
                }
                Err((path, source)) => return Err(CgroupError::Remove { path, source }),
            }
        }
        removed.push(name);
    }
    Ok(removed)
}

// ---- hierarchies -------------------------------------------------------------------------

/// Where the cgroup hierarchies are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// The v1 hierarchies (cgroup2 mounts, if any, ignored).
    V1(Vec<Hierarchy>),
    /// The unified mount point.
    V2(PathBuf),
}

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    mountpoint: PathBuf,
    /// Controllers bound to it, in mount-option order (`cpu`, `cpuacct`), or a name
    /// (`name=systemd`) for a named hierarchy.
    controllers: Vec<String>,
}

impl Hierarchy {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The v1 controllers the kernel knows (`/proc/cgroups`); anything else in a `cgroup`
/// mount's options is a mount option, except `name=`.
const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

impl Layout {
    fn current() -> Result<Layout> {
        // thread-self: a thread that unshared its mount namespace sees its own mounts.
        let path = Path::new("/proc/thread-self/mountinfo");
        let text = fs::read_to_string(path).map_err(|source| CgroupError::Read {
            path: path.to_owned(),
            source,
        })?;
        Layout::from_mountinfo(&text)
    }

    /// v1 if any `cgroup` mount carries a real controller; otherwise v2 if there is a
    /// `cgroup2` mount (`/sys/fs/cgroup` preferred). A hierarchy mounted twice counts once
    /// (the first mount wins).
    fn from_mountinfo(text: &str) -> Result<Layout> {
        let mut v1: Vec<Hierarchy> = Vec::new();
        let mut v2: Vec<PathBuf> = Vec::new();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mountpoint) = left.split(' ').nth(4) else {
                continue;
            };
            let mut fields = right.split(' ');
            let (fstype, super_opts) = (fields.next().unwrap_or(""), fields.nth(1).unwrap_or(""));
            let mountpoint = PathBuf::from(unescape_mountinfo(mountpoint));
            match fstype {
                "cgroup" => {
                    let controllers: Vec<String> = super_opts
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                        .map(str::to_owned)
                        .collect();
                    if !controllers.is_empty() && !v1.iter().any(|h| h.controllers == controllers) {
                        v1.push(Hierarchy {
                            mountpoint,
                            controllers,
                        });
                    }
                }
                "cgroup2" => v2.push(mountpoint),
                _ => {}
            }
        }
        if v1
            .iter()
            .any(|h| h.controllers.iter().any(|c| !c.starts_with("name=")))
        {
            return Ok(Layout::V1(v1));
        }
        let preferred = v2
            .iter()
            .position(|p| p == Path::new("/sys/fs/cgroup"))
            .unwrap_or(0);
        v2.into_iter()
            .nth(preferred)
            .map(Layout::V2)
            .ok_or(CgroupError::NotMounted)
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a cgroup path into components, refusing empty, `.` and `..` ones.
fn split_path(path: &str) -> Result<Vec<&str>> {
    let trimmed = path.trim_start_matches('/');
    let invalid = |reason| CgroupError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    let comps: Vec<&str> = trimmed.split('/').collect();
    if comps
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err(invalid("it has an empty, `.` or `..` component"));
    }
    Ok(comps)
}

// ---- file helpers ------------------------------------------------------------------------

/// Writes `value` to an existing cgroup file in one `write` (never creates the file).
fn write_value(path: &Path, value: &str) -> Result<()> {
    let attempt = || -> io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)?;
        file.write_all(value.as_bytes())
    };
    attempt().map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

fn read_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The file's content, or `None` if it does not exist.
fn read_opt(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn parse_u64(path: &Path, text: &str) -> Result<u64> {
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_owned(),
        content: text.to_owned(),
    })
}

/// A single-number file; `None` if the file does not exist.
fn read_u64_opt(path: &Path) -> Result<Option<u64>> {
    read_opt(path)?.map(|t| parse_u64(path, &t)).transpose()
}

/// A `max`-or-number file (`pids.max`, `memory.max`): `None` for `max` or a missing file.
fn read_max_opt(path: &Path) -> Result<Option<u64>> {
    match read_opt(path)? {
        Some(t) if t.trim() == "max" => Ok(None),
        Some(t) => parse_u64(path, &t).map(Some),
        None => Ok(None),
    }
}

/// The number after `key` in a flat keyed file (`memory.stat`, `memory.events`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

fn create_dir(path: &Path) -> Result<bool> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(CgroupError::Create {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Adds the pids in `dir/cgroup.procs` and those of every child cgroup to `out`.
/// A directory that vanished adds nothing.
fn procs_recursive(dir: &Path, out: &mut BTreeSet<i32>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    let text = read_opt(&procs)?.unwrap_or_default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let pid = line.trim().parse().map_err(|_| CgroupError::Parse {
            path: procs.clone(),
            content: text.clone(),
        })?;
        out.insert(pid);
    }
    for sub in subdirs(dir)? {
        procs_recursive(&sub, out)?;
    }
    Ok(())
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::Read {
            path: dir.to_owned(),
            source,
        })?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Sends SIGKILL to each pid, ignoring ones already gone and never the caller itself.
fn kill_pids(pids: &[i32], dir: &Path) -> Result<()> {
    let me = i32::try_from(std::process::id()).unwrap_or(-1);
    for &pid in pids {
        if pid == me {
            tracing::warn!(dir = %dir.display(), "the calling process is in the cgroup it destroys; not killing itself");
            continue;
        }
        let Some(p) = Pid::from_raw(pid) else {
            continue;
        };
        match rustix::process::kill_process(p, Signal::KILL) {
            Ok(()) | Err(Errno::SRCH) => {}
            Err(e) => {
                return Err(CgroupError::Kill {
                    pid,
                    path: dir.to_owned(),
                    source: e.into(),
                });
            }
        }
    }
    Ok(())
}

/// Removes `dir` and its child cgroups (deepest first); a missing directory is fine.
/// On failure, the directory that failed and why.
fn rmdir_tree(dir: &Path) -> std::result::Result<(), (PathBuf, io::Error)> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err((dir.to_owned(), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| (dir.to_owned(), e))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            rmdir_tree(&entry.path())?;
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err((dir.to_owned(), e)),
    }
}

/// [`rmdir_tree`], retried on EBUSY until `deadline`.
fn remove_dir_retrying(dir: &Path, deadline: Instant) -> Result<()> {
    loop {
        match rmdir_tree(dir) {
            Ok(()) => return Ok(()),
            Err((_, e))
                if e.raw_os_error() == Some(Errno::BUSY.raw_os_error())
                    && Instant::now() < deadline =>
            {
                thread::sleep(Duration::from_millis(10));
            }
            Err((path, source)) => return Err(CgroupError::Remove { path, source }),
        }
    }
}

/// Polls `path` until `done(content)` holds, for at most `limit`; a short sleep between
/// reads, growing from 1 ms to 10 ms.
fn poll_until(path: &Path, want: &str, limit: Duration, done: impl Fn(&str) -> bool) -> Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let text = read_string(path)?;
        if done(&text) {
            return Ok(());
        }
        if start.elapsed() >= limit {
            return Err(CgroupError::Timeout {
                path: path.to_owned(),
                want: want.to_owned(),
                waited: start.elapsed(),
                last: text.trim().to_owned(),
            });
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

fn missing(controller: &str, resource: &str) -> CgroupError {
    CgroupError::MissingController {
        controller: controller.to_owned(),
        resource: resource.to_owned(),
    }
}

fn invalid(resource: &str, reason: impl Into<String>) -> CgroupError {
    CgroupError::InvalidResource {
        resource: resource.to_owned(),
        reason: reason.into(),
    }
}

/// Warnings about resources berth accepts but does not apply.
fn warn_ignored(resources: &LinuxResources) {
    if let Some(m) = resources.memory() {
        #[allow(deprecated)]
        let kernel = m.kernel().is_some() || m.kernel_tcp().is_some();
        if kernel {
            tracing::warn!(
                "kernel memory limits (memory.kernel, memory.kernelTCP) are obsolete and not applied"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write as _,
        os::unix::process::ExitStatusExt,
        process::{Child, Command, Stdio},
        sync::atomic::{AtomicUsize, Ordering},
    };

    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
        LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn h(mountpoint: &str, controllers: &[&str]) -> Hierarchy {
        Hierarchy {
            mountpoint: mountpoint.into(),
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn mountinfo_hybrid_is_v1_without_unified() {
        let Layout::V1(hs) = Layout::from_mountinfo(HYBRID).unwrap() else {
            panic!("not v1")
        };
        assert_eq!(hs.len(), 9);
        assert_eq!(hs[0], h("/sys/fs/cgroup/cpu", &["cpu"]));
        assert_eq!(hs[8], h("/sys/fs/cgroup/systemd", &["name=systemd"]));
        assert!(!hs.iter().any(|h| h.mountpoint.ends_with("unified")));
    }

    #[test]
    fn mountinfo_comounted_named_escaped_and_duplicate() {
        let text = "\
25 24 0:22 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,release_agent=/lib/systemd/x,name=systemd
26 24 0:23 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:8 - cgroup cgroup rw,cpu,cpuacct
27 24 0:24 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
28 24 0:25 / /mnt/my\\040cgroups rw - cgroup cgroup rw,memory,clone_children
99 24 0:25 / /var/lib/x/sys/fs/cgroup/memory rw - cgroup cgroup rw,memory,clone_children
";
        let Layout::V1(hs) = Layout::from_mountinfo(text).unwrap() else {
            panic!("not v1")
        };
        assert_eq!(
            hs,
            vec![
                h("/sys/fs/cgroup/systemd", &["name=systemd"]),
                h("/sys/fs/cgroup/cpu,cpuacct", &["cpu", "cpuacct"]),
                h("/sys/fs/cgroup/net_cls,net_prio", &["net_cls", "net_prio"]),
                h("/mnt/my cgroups", &["memory"]),
            ]
        );
    }

    #[test]
    fn mountinfo_v2_and_nothing() {
        let pure = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(
            Layout::from_mountinfo(pure).unwrap(),
            Layout::V2("/sys/fs/cgroup".into())
        );
        // Only a named v1 hierarchy: the controllers are all in cgroup2.
        let named_only = "\
30 23 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
31 23 0:27 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
";
        assert_eq!(
            Layout::from_mountinfo(named_only).unwrap(),
            Layout::V2("/sys/fs/cgroup/unified".into())
        );
        let none = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n";
        assert!(matches!(
            Layout::from_mountinfo(none),
            Err(CgroupError::NotMounted)
        ));
    }

    #[test]
    fn paths_are_checked() {
        assert_eq!(split_path("berth/abc").unwrap(), vec!["berth", "abc"]);
        assert_eq!(split_path("/berth/abc").unwrap(), vec!["berth", "abc"]);
        for bad in ["", "/", "berth//x", "berth/../x", "./x", "berth/"] {
            assert!(
                matches!(split_path(bad), Err(CgroupError::InvalidPath { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(unescape_mountinfo("a\\040b\\134c\\011"), "a b\\c\t");
        assert_eq!(unescape_mountinfo("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn stale_cgroups_on_a_fake_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("memory");
        // (Plain directories cannot be removed with files in them, so only "busy" gets a
        // cgroup.procs; a missing one reads as no processes.)
        for name in ["keep", "stale", "busy"] {
            fs::create_dir_all(root.join("berth").join(name).join("child")).unwrap();
        }
        fs::write(root.join("berth/busy/child/cgroup.procs"), "42\n").unwrap();
        let layout = Layout::V1(vec![h(root.to_str().unwrap(), &["memory"])]);
        let removed = remove_stale_in(&layout, "berth", &|name| name == "keep").unwrap();
        assert_eq!(removed, vec!["stale".to_owned()]);
        assert!(!root.join("berth/stale").exists());
        assert!(root.join("berth/keep").exists() && root.join("berth/busy").exists());
        // A missing parent is nothing to clean.
        assert_eq!(
            remove_stale_in(&layout, "nothing-here", &|_| false).unwrap(),
            Vec::<String>::new()
        );
    }

    // ---- on the real host (root needed; cgroups must be there: these fail, never skip) ----

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A unique test prefix in every hierarchy, and children to kill; all removed on drop,
    /// whether the test passed or panicked.
    struct Scratch {
        prefix: String,
        children: Vec<Child>,
    }

    impl Scratch {
        fn new() -> Scratch {
            let prefix = format!(
                "berth-test-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            );
            Scratch {
                prefix,
                children: Vec::new(),
            }
        }

        fn path(&self, name: &str) -> String {
            format!("{}/{name}", self.prefix)
        }

        fn roots(&self) -> Vec<PathBuf> {
            match Layout::current().expect("cgroups must be mounted") {
                Layout::V1(hs) => hs.iter().map(|h| h.mountpoint.join(&self.prefix)).collect(),
                Layout::V2(root) => vec![root.join(&self.prefix)],
            }
        }

        fn spawn(&mut self, program: &str, args: &[&str]) -> u32 {
            let child = Command::new(program)
                .args(args)
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            let pid = child.id();
            self.children.push(child);
            pid
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            // Destroy first: it thaws a cgroup a failed test left frozen (a frozen child
            // would never die, and waiting for it would hang), then kill and reap.
            let mut names = BTreeSet::new();
            for root in self.roots() {
                for sub in subdirs(&root).unwrap_or_default() {
                    names.extend(sub.file_name().and_then(|n| n.to_str()).map(str::to_owned));
                }
            }
            for name in names {
                if let Ok(cg) = Cgroup::open(&self.path(&name)) {
                    let _ = cg.destroy();
                }
            }
            for child in &mut self.children {
                let _ = child.kill();
                let _ = child.wait();
            }
            for root in self.roots() {
                let _ = remove_dir_retrying(&root, Instant::now() + Duration::from_secs(2));
            }
        }
    }

    fn id64(n: u64) -> String {
        format!(
            "{:016x}{:016x}{:016x}{:016x}",
            std::process::id(),
            n,
            0xb3e7_u64,
            n.wrapping_mul(31)
        )
    }

    fn read(path: impl AsRef<Path>) -> String {
        let path = path.as_ref();
        fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    fn dir_of(cg: &Cgroup, file: &str) -> PathBuf {
        cg.paths()
            .into_iter()
            .find(|d| d.join(file).exists())
            .unwrap_or_else(|| panic!("no hierarchy of {} has {file}", cg.path()))
    }

    fn mib(n: i64) -> i64 {
        n << 20
    }

    fn memory(limit: i64, swap: i64) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(limit)
                    .swap(swap)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn device(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
    ) -> oci_spec::runtime::LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access("rwm");
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    #[test]
    fn real_cgroup_lifecycle() {
        let version = detect().expect("this test needs cgroups mounted");
        let mut scratch = Scratch::new();
        let path = scratch.path(&id64(1));
        let resources = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(mib(32))
                    .swap(mib(64))
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(10i64).build().unwrap())
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50000i64)
                    .period(100000u64)
                    .cpus("0")
                    .shares(512u64)
                    .build()
                    .unwrap(),
            )
            .devices(vec![
                LinuxDeviceCgroupBuilder::default()
                    .allow(false)
                    .access("rwm")
                    .build()
                    .unwrap(),
                device(true, LinuxDeviceType::C, Some(1), Some(3)),
                device(true, LinuxDeviceType::C, Some(1), Some(5)),
                device(true, LinuxDeviceType::C, Some(136), None),
            ])
            .build()
            .unwrap();
        let cg = Cgroup::create(&path, &resources).unwrap();
        assert_eq!(cg.version(), version);
        match version {
            CgroupVersion::V1 => {
                let mem = dir_of(&cg, "memory.limit_in_bytes");
                assert_eq!(read(mem.join("memory.limit_in_bytes")), "33554432");
                assert_eq!(read(mem.join("memory.memsw.limit_in_bytes")), "67108864");
                let cpu = dir_of(&cg, "cpu.shares");
                assert_eq!(read(cpu.join("cpu.shares")), "512");
                assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
                assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
                let cpuset = dir_of(&cg, "cpuset.cpus");
                assert_eq!(read(cpuset.join("cpuset.cpus")), "0");
                let parent_mems = read(cpuset.parent().unwrap().join("cpuset.mems"));
                assert!(
                    !parent_mems.is_empty(),
                    "cpuset.mems copied into the prefix"
                );
                assert_eq!(read(cpuset.join("cpuset.mems")), parent_mems);
                assert_eq!(read(dir_of(&cg, "pids.max").join("pids.max")), "10");
                assert_eq!(
                    read(dir_of(&cg, "devices.list").join("devices.list")),
                    "c 1:3 rwm\nc 1:5 rwm\nc 136:* rwm"
                );
            }
            CgroupVersion::V2 => {
                let d = &cg.paths()[0];
                assert_eq!(read(d.join("memory.max")), "33554432");
                assert_eq!(read(d.join("memory.swap.max")), "33554432");
                assert_eq!(read(d.join("cpu.weight")), "20");
                assert_eq!(read(d.join("cpu.max")), "50000 100000");
                assert_eq!(read(d.join("cpuset.cpus")), "0");
                assert_eq!(read(d.join("pids.max")), "10");
            }
        }

        // Raising (memsw first) and lowering (memory first) both work on the real kernel.
        cg.update(&memory(mib(64), mib(128))).unwrap();
        cg.update(&memory(mib(16), mib(32))).unwrap();
        cg.update(&memory(mib(32), mib(64))).unwrap();
        if version == CgroupVersion::V1 {
            let mem = dir_of(&cg, "memory.limit_in_bytes");
            assert_eq!(read(mem.join("memory.limit_in_bytes")), "33554432");
            assert_eq!(read(mem.join("memory.memsw.limit_in_bytes")), "67108864");
        }

        let pid = scratch.spawn("sleep", &["1000"]);
        let pid = i32::try_from(pid).unwrap();
        cg.add_process(pid).unwrap();
        assert_eq!(cg.pids().unwrap(), vec![pid]);
        let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(
            own.lines().any(|l| l.ends_with(&format!(":/{path}"))),
            "{own}"
        );
        let stats = cg.stats().unwrap();
        assert_eq!(stats.pids_current, 1);
        assert_eq!(stats.pids_limit, Some(10));
        assert_eq!(stats.memory_limit, Some(33554432));
        assert!(stats.memory_usage < 33554432);
        assert_eq!(cg.oom_kill_count().unwrap(), 0);

        cg.freeze().unwrap();
        match version {
            CgroupVersion::V1 => assert_eq!(
                read(dir_of(&cg, "freezer.state").join("freezer.state")),
                "FROZEN"
            ),
            CgroupVersion::V2 => {
                assert!(read(cg.paths()[0].join("cgroup.events")).contains("frozen 1"))
            }
        }
        cg.thaw().unwrap();
        match version {
            CgroupVersion::V1 => assert_eq!(
                read(dir_of(&cg, "freezer.state").join("freezer.state")),
                "THAWED"
            ),
            CgroupVersion::V2 => {
                assert!(read(cg.paths()[0].join("cgroup.events")).contains("frozen 0"))
            }
        }

        // Opened from scratch (as another process would), then destroyed.
        let paths = cg.paths();
        assert_eq!(Cgroup::open(&path).unwrap().paths(), paths);
        Cgroup::open(&path).unwrap().destroy().unwrap();
        for dir in &paths {
            assert!(!dir.exists(), "{} left behind", dir.display());
        }
        let status = scratch.children[0].wait().unwrap();
        assert_eq!(status.signal(), Some(9), "sleep was SIGKILLed: {status:?}");
        assert!(matches!(
            Cgroup::open(&path),
            Err(CgroupError::NotFound { .. })
        ));
    }

    #[test]
    fn real_missing_controller_names_it_and_busy_rmdir_is_reported() {
        let mut scratch = Scratch::new();
        let path = scratch.path(&id64(2));
        let cg = Cgroup::create(&path, &LinuxResources::default()).unwrap();
        // A bad value: the error names the file and the value.
        let err = cg.update(&memory(mib(16), mib(8))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid memory.swap: the memory+swap limit 8388608 is below the memory limit 16777216"
        );
        let cpus = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().cpus("4095").build().unwrap())
            .build()
            .unwrap();
        let err = cg.update(&cpus).unwrap_err().to_string();
        assert!(
            err.starts_with("write 4095 to /") && err.contains("cpuset.cpus: "),
            "{err}"
        );
        // rmdir of a populated cgroup is EBUSY; destroy handles it by killing first.
        let pid = i32::try_from(scratch.spawn("sleep", &["1000"])).unwrap();
        cg.add_process(pid).unwrap();
        let err = remove_dir_retrying(&cg.paths()[0], Instant::now()).unwrap_err();
        assert!(
            err.to_string().starts_with("remove /") && err.to_string().contains("busy"),
            "{err}"
        );
        cg.destroy().unwrap();
    }

    #[test]
    fn real_oom_kill_is_counted() {
        let mut scratch = Scratch::new();
        let path = scratch.path(&id64(3));
        let cg = Cgroup::create(&path, &memory(mib(16), mib(16))).unwrap();
        let pid = scratch.spawn(
            "sh",
            &[
                "-c",
                "read go; head -c 200000000 /dev/zero | tail > /dev/null",
            ],
        );
        cg.add_process(i32::try_from(pid).unwrap()).unwrap();
        let child = scratch.children.last_mut().unwrap();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "tail should have been OOM-killed: {status:?}"
        );
        assert!(cg.oom_kill_count().unwrap() >= 1);
        cg.destroy().unwrap();
    }

    #[test]
    fn real_remove_stale_keeps_named_and_busy() {
        let mut scratch = Scratch::new();
        for name in ["keep", "stale1", "stale2", "busy"] {
            Cgroup::create(&scratch.path(name), &LinuxResources::default()).unwrap();
        }
        let pid = i32::try_from(scratch.spawn("sleep", &["1000"])).unwrap();
        Cgroup::open(&scratch.path("busy"))
            .unwrap()
            .add_process(pid)
            .unwrap();
        let removed = remove_stale(&scratch.prefix, &|name| name == "keep").unwrap();
        assert_eq!(removed, vec!["stale1".to_owned(), "stale2".to_owned()]);
        assert!(Cgroup::open(&scratch.path("keep")).is_ok());
        assert!(Cgroup::open(&scratch.path("busy")).is_ok());
        assert!(matches!(
            Cgroup::open(&scratch.path("stale1")),
            Err(CgroupError::NotFound { .. })
        ));
    }

    const VIEW_CHILD: &str = "BERTH_CGROUP_VIEW_CHILD";

    /// Runs itself again as a child process which joins a fresh cgroup, unshares its mount
    /// and cgroup namespaces and mounts the container view; the child checks the view.
    #[test]
    fn real_container_view_is_rooted_at_the_container_cgroup() {
        if let Ok(path) = std::env::var(VIEW_CHILD) {
            return view_child(&path);
        }
        let scratch = Scratch::new();
        let path = scratch.path(&id64(4));
        let cg = Cgroup::create(&path, &memory(mib(48), mib(96))).unwrap();
        let module = module_path!()
            .split_once("::")
            .map_or(module_path!(), |(_, rest)| rest);
        let name = format!("{module}::real_container_view_is_rooted_at_the_container_cgroup");
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &name, "--test-threads=1", "--nocapture"])
            .env(VIEW_CHILD, &path)
            .output()
            .unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "child failed: {log}");
        assert!(log.contains("1 passed"), "the child ran no test: {log}");
        cg.destroy().unwrap();
    }

    fn view_child(path: &str) {
        use nix::sched::{CloneFlags, unshare};
        let cg = Cgroup::open(path).unwrap();
        cg.add_process(i32::try_from(std::process::id()).unwrap())
            .unwrap();
        unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP).unwrap();
        rustix::mount::mount_change(
            "/",
            rustix::mount::MountPropagationFlags::PRIVATE
                | rustix::mount::MountPropagationFlags::REC,
        )
        .unwrap();
        let target = tempfile::tempdir().unwrap();
        mount_container_view(target.path()).unwrap();
        // /proc/thread-self: unshare changed this thread only.
        let own = fs::read_to_string("/proc/thread-self/cgroup").unwrap();
        let view = target.path();
        match cg.version() {
            CgroupVersion::V1 => {
                assert!(
                    own.lines()
                        .filter(|l| !l.starts_with("0::"))
                        .all(|l| l.ends_with(":/")),
                    "{own}"
                );
                assert_eq!(read(view.join("memory/memory.limit_in_bytes")), "50331648");
                assert_eq!(
                    read(view.join("memory/memory.memsw.limit_in_bytes")),
                    "100663296"
                );
                let Layout::V1(hs) = Layout::current().unwrap() else {
                    unreachable!()
                };
                for entry in v1::view_entries(&hs) {
                    assert!(
                        view.join(&entry.dir).join("cgroup.procs").exists(),
                        "{}",
                        entry.dir
                    );
                    for link in entry.links {
                        assert_eq!(
                            fs::read_link(view.join(&link)).unwrap(),
                            Path::new(&entry.dir)
                        );
                    }
                }
                let err = fs::write(view.join("memory/memory.limit_in_bytes"), "1").unwrap_err();
                assert_eq!(
                    err.raw_os_error(),
                    Some(Errno::ROFS.raw_os_error()),
                    "{err}"
                );
                let err = fs::create_dir(view.join("extra")).unwrap_err();
                assert_eq!(
                    err.raw_os_error(),
                    Some(Errno::ROFS.raw_os_error()),
                    "{err}"
                );
                let procs = read(view.join("memory/cgroup.procs"));
                assert!(
                    procs.lines().any(|p| p == std::process::id().to_string()),
                    "{procs}"
                );
                assert!(
                    !view.join("memory/berth").exists() && !view.join("memory").join(path).exists()
                );
            }
            CgroupVersion::V2 => {
                assert!(own.lines().any(|l| l == "0::/"), "{own}");
                assert_eq!(read(view.join("memory.max")), "50331648");
                let err = fs::write(view.join("memory.max"), "1").unwrap_err();
                assert_eq!(
                    err.raw_os_error(),
                    Some(Errno::ROFS.raw_os_error()),
                    "{err}"
                );
            }
        }
    }
}
