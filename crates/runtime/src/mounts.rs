//! The container's root filesystem, built by init inside its own mount namespace: the
//! overlay, the spec's mounts (each target resolved inside the rootfs, never through a
//! symlink out of it), `/dev`, `pivot_root`, masked and read-only paths.

use std::{
    ffi::OsStr,
    fs, io,
    os::{
        fd::{AsFd, AsRawFd, OwnedFd},
        unix::fs::symlink,
    },
    path::{Component, Path, PathBuf},
};

use nix::mount::{MntFlags, MsFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use rustix::fs::{CWD, FileType, Mode, OFlags, ResolveFlags};

use crate::{InitConfig, Rootfs};

type Result<T> = std::result::Result<T, String>;

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Everything up to and including `pivot_root` and the masked paths. `joined` is called once
/// init is in its cgroup, before the cgroup filesystem views are mounted.
pub(crate) fn setup(
    config: &InitConfig,
    user_ns: bool,
    joined: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    let spec = &config.spec;
    // Mounts made here must not reach the host, while the host's later unmounts still reach us.
    mount(None, "/", None, MsFlags::MS_REC | MsFlags::MS_SLAVE, None)
        .map_err(|e| err("make / a slave mount", e))?;
    let root = config.rootfs.path().to_path_buf();
    mount_rootfs(&config.rootfs)?;
    let root_fd = rustix::fs::open(
        &root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(format!("open rootfs {}", root.display()), e))?;

    let mut dev_is_tmpfs = false;
    let mut cgroup_mounts = Vec::new();
    for m in spec.mounts().as_deref().unwrap_or_default() {
        let dest = m.destination();
        if dest == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs") {
            dev_is_tmpfs = true;
        }
        if matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            cgroup_mounts.push(m);
            continue;
        }
        mount_one(&root, &root_fd, m).map_err(|e| {
            err(
                format!("mount {} on {}", describe_source(m), dest.display()),
                e,
            )
        })?;
    }
    joined()?;
    for m in cgroup_mounts {
        mount_one(&root, &root_fd, m)
            .map_err(|e| err(format!("mount cgroups on {}", m.destination().display()), e))?;
    }
    if dev_is_tmpfs {
        let devices = spec
            .linux()
            .as_ref()
            .and_then(|l| l.devices().clone())
            .unwrap_or_default();
        populate_dev(&root.join("dev"), &devices, user_ns)?;
    }
    drop(root_fd);

    pivot_root(&root)?;

    if let Some(linux) = spec.linux() {
        for path in linux.masked_paths().as_deref().unwrap_or_default() {
            mask_path(Path::new(path)).map_err(|e| err(format!("mask {path}"), e))?;
        }
    }
    Ok(())
}

/// Binds the container's pty slave at `/dev/console`, as runc does (after `pivot_root`).
pub(crate) fn bind_console(slave: &Path) -> Result<()> {
    let target = Path::new("/dev/console");
    create_file(target).map_err(|e| err("create /dev/console", e))?;
    mount(Some(slave), target, None, MsFlags::MS_BIND, None)
        .map_err(|e| err(format!("bind {} at /dev/console", slave.display()), e))
}

/// After sysctls are written: the read-only paths and a read-only root.
pub(crate) fn finish(spec: &Spec) -> Result<()> {
    if let Some(linux) = spec.linux() {
        for path in linux.readonly_paths().as_deref().unwrap_or_default() {
            readonly_path(Path::new(path)).map_err(|e| err(format!("make {path} read-only"), e))?;
        }
    }
    if spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly().unwrap_or(false))
    {
        mount(
            None,
            "/",
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None,
        )
        .map_err(|e| err("make the root filesystem read-only", e))?;
    }
    Ok(())
}

fn mount(
    source: Option<&Path>,
    target: impl AsRef<Path>,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    nix::mount::mount(source, target.as_ref(), fstype, flags, data)
}

fn describe_source(m: &Mount) -> String {
    match (m.source(), m.typ()) {
        (Some(s), _) => s.display().to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "none".into(),
    }
}

fn mount_rootfs(rootfs: &Rootfs) -> Result<()> {
    match rootfs {
        Rootfs::Dir(dir) => mount(
            Some(dir),
            dir,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(|e| err(format!("bind rootfs {}", dir.display()), e)),
        Rootfs::Overlay {
            lower,
            upper,
            work,
            target,
        } => mount_overlay(lower, upper, work, target),
    }
}

/// The new mount API takes one `lowerdir+` per layer (kernel 6.8+), which has no limit on
/// the number of layers; older kernels get the classic option string.
fn mount_overlay(lower: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    use rustix::mount::MoveMountFlags;
    let new_api = || -> io::Result<()> {
        let mnt = crate::view::overlay_view(lower, Some((upper, work)))?;
        rustix::mount::move_mount(
            mnt.as_fd(),
            "",
            CWD,
            target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )?;
        Ok(())
    };
    match new_api() {
        Ok(()) => Ok(()),
        Err(e)
            if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::ENOSYS) =>
        {
            let lowers: Vec<_> = lower.iter().map(|p| p.display().to_string()).collect();
            let data = format!(
                "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
                lowers.join(":"),
                upper.display(),
                work.display()
            );
            mount(
                Some(Path::new("overlay")),
                target,
                Some("overlay"),
                MsFlags::empty(),
                Some(&data),
            )
            .map_err(|e| {
                err(
                    format!("mount the overlay rootfs on {}", target.display()),
                    e,
                )
            })
        }
        Err(e) => Err(err(
            format!("mount the overlay rootfs on {}", target.display()),
            e,
        )),
    }
}

/// Mount flags and the filesystem data string from OCI mount options.
pub(crate) fn parse_options(options: &[String]) -> (MsFlags, MsFlags, Vec<String>) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" | "unbindable"
            | "runbindable" => {
                let rec = if o.starts_with('r') {
                    MsFlags::MS_REC
                } else {
                    MsFlags::empty()
                };
                propagation |= rec
                    | match o.trim_start_matches('r') {
                        "private" => MsFlags::MS_PRIVATE,
                        "slave" => MsFlags::MS_SLAVE,
                        "shared" => MsFlags::MS_SHARED,
                        _ => MsFlags::MS_UNBINDABLE,
                    };
                continue;
            }
            _ => {
                data.push(o.clone());
                continue;
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, propagation, data)
}

fn mount_one(root: &Path, root_fd: &OwnedFd, m: &Mount) -> io::Result<()> {
    let options = m.options().clone().unwrap_or_default();
    let (flags, propagation, data) = parse_options(&options);
    let typ = m.typ().as_deref().unwrap_or("");
    let bind = typ == "bind" || flags.contains(MsFlags::MS_BIND);
    let source = m.source().as_deref();
    let dest = m.destination();

    // A bind of a file needs a file to mount on; everything else a directory.
    let source_is_file =
        bind && source.is_some_and(|s| fs::metadata(s).is_ok_and(|md| !md.is_dir()));
    let target = ensure_target(root_fd, dest, source_is_file)?;
    let target_path = PathBuf::from(format!("/proc/self/fd/{}", target.as_raw_fd()));

    if typ == "cgroup" || typ == "cgroup2" {
        // The fresh sysfs under it holds no links an image could have planted.
        let path = root.join(relative(dest));
        return crate::cgroups::mount_container_view(&path).map_err(io::Error::other);
    }
    if bind {
        let source = source.ok_or_else(|| io::Error::other("a bind mount needs a source"))?;
        mount(
            Some(source),
            &target_path,
            None,
            MsFlags::MS_BIND | (flags & MsFlags::MS_REC),
            None,
        )?;
    } else {
        let data = data.join(",");
        let data = (!data.is_empty()).then_some(data.as_str());
        let source = Path::new(source.map_or(OsStr::new(typ), |s| s.as_os_str()));
        mount(Some(source), &target_path, Some(typ), flags, data)?;
    }
    let extra = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    if (bind && !extra.is_empty()) || !propagation.is_empty() {
        // `target` still names the directory under the new mount; reopen to reach the mount.
        let top = open_in_root(root_fd, dest, OFlags::PATH)?;
        let top_path = PathBuf::from(format!("/proc/self/fd/{}", top.as_raw_fd()));
        if bind && !extra.is_empty() {
            // A bind mount takes its flags only on a remount; keep the locked ones it has.
            let locked = locked_flags(&top_path)?;
            mount(
                None,
                &top_path,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra | locked,
                None,
            )?;
        }
        if !propagation.is_empty() {
            mount(None, &top_path, None, propagation, None)?;
        }
    }
    Ok(())
}

/// The flags of the mount at `path` that an unprivileged remount may not clear.
fn locked_flags(path: &Path) -> io::Result<MsFlags> {
    let st = nix::sys::statvfs::statvfs(path)?;
    let f = st.flags();
    use nix::sys::statvfs::FsFlags;
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    // Read-only is only kept when the caller asks for it.
    Ok(out & !MsFlags::MS_RDONLY)
}

fn relative(dest: &Path) -> PathBuf {
    dest.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

fn open_in_root(root_fd: &OwnedFd, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    };
    Ok(rustix::fs::openat2(
        root_fd,
        &rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?)
}

/// Opens (creating as needed) a mount target inside the rootfs; symlinks in the image are
/// followed as if the rootfs were `/`, so none leads outside it.
fn ensure_target(root_fd: &OwnedFd, dest: &Path, file: bool) -> io::Result<OwnedFd> {
    if let Ok(fd) = open_in_root(root_fd, dest, OFlags::PATH) {
        return Ok(fd);
    }
    let rel = relative(dest);
    let mut parent = PathBuf::new();
    let components: Vec<_> = rel.components().collect();
    for (i, c) in components.iter().enumerate() {
        let last = i + 1 == components.len();
        let dir = open_in_root(root_fd, &parent, OFlags::PATH | OFlags::DIRECTORY)?;
        let name = c.as_os_str();
        if last && file {
            match rustix::fs::openat(
                &dir,
                name,
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(_) => {}
                Err(e) if e == rustix::io::Errno::EXIST => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::EXIST => {}
                Err(e) => return Err(e.into()),
            }
        }
        parent.push(name);
    }
    open_in_root(root_fd, dest, OFlags::PATH)
}

fn create_file(path: &Path) -> io::Result<()> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map(drop)
}

/// The nodes every container has, as runc creates them.
fn default_devices() -> [(&'static str, u64, u64); 6] {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
}

fn populate_dev(dev: &Path, devices: &[LinuxDevice], user_ns: bool) -> Result<()> {
    let mut nodes: Vec<(PathBuf, FileType, u64, u64, u32, u32, u32)> = default_devices()
        .iter()
        .map(|(name, maj, min)| {
            (
                dev.join(name),
                FileType::CharacterDevice,
                *maj,
                *min,
                0o666,
                0,
                0,
            )
        })
        .collect();
    for d in devices {
        let kind = match d.typ() {
            LinuxDeviceType::B => FileType::BlockDevice,
            LinuxDeviceType::P => FileType::Fifo,
            _ => FileType::CharacterDevice,
        };
        let rel = relative(d.path());
        let Ok(rel) = rel.strip_prefix("dev") else {
            continue;
        };
        nodes.retain(|n| n.0 != dev.join(rel));
        nodes.push((
            dev.join(rel),
            kind,
            d.major() as u64,
            d.minor() as u64,
            d.file_mode().unwrap_or(0o666),
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        ));
    }
    for (path, kind, major, minor, mode, uid, gid) in nodes {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| err(format!("create {}", parent.display()), e))?;
        }
        if user_ns {
            // mknod is not allowed in a user namespace: bind the host's node instead.
            let host = Path::new("/dev").join(path.strip_prefix(dev).unwrap_or(&path));
            create_file(&path).map_err(|e| err(format!("create {}", path.display()), e))?;
            mount(Some(&host), &path, None, MsFlags::MS_BIND, None)
                .map_err(|e| err(format!("bind {}", host.display()), e))?;
            continue;
        }
        let dev_t = rustix::fs::makedev(major as u32, minor as u32);
        rustix::fs::mknodat(CWD, &path, kind, Mode::from_raw_mode(mode & 0o7777), dev_t)
            .map_err(|e| err(format!("mknod {}", path.display()), e))?;
        // mknod honours the umask; the spec's mode is exact.
        rustix::fs::chmod(&path, Mode::from_raw_mode(mode & 0o7777))
            .map_err(|e| err(format!("chmod {}", path.display()), e))?;
        if uid != 0 || gid != 0 {
            rustix::fs::chown(
                &path,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(|e| err(format!("chown {}", path.display()), e))?;
        }
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        match symlink(target, dev.join(link)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(format!("symlink /dev/{link}"), e)),
        }
    }
    if Path::new("/proc/kcore").exists() {
        let _ = symlink("/proc/kcore", dev.join("core"));
    }
    Ok(())
}

fn pivot_root(root: &Path) -> Result<()> {
    nix::unistd::chdir(root).map_err(|e| err(format!("chdir {}", root.display()), e))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; unmounting "." then
    // removes it, without needing a directory for it inside the container.
    rustix::process::pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
    mount(None, ".", None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None)
        .map_err(|e| err("make the old root a slave", e))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("unmount the old root", e))?;
    nix::unistd::chdir("/").map_err(|e| err("chdir /", e))?;
    Ok(())
}

fn mask_path(path: &Path) -> io::Result<()> {
    let md = match fs::metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if md.is_dir() {
        mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        )?;
    } else {
        mount(
            Some(Path::new("/dev/null")),
            path,
            None,
            MsFlags::MS_BIND,
            None,
        )?;
    }
    Ok(())
}

fn readonly_path(path: &Path) -> io::Result<()> {
    match mount(
        Some(path),
        path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let locked = locked_flags(path)?;
    mount(
        None,
        path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked,
        None,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let opts: Vec<String> = [
            "nosuid",
            "strictatime",
            "mode=755",
            "size=65536k",
            "rprivate",
            "ro",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (flags, prop, data) = parse_options(&opts);
        assert_eq!(
            flags,
            MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME | MsFlags::MS_RDONLY
        );
        assert_eq!(prop, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(
            data,
            vec!["mode=755".to_string(), "size=65536k".to_string()]
        );
        let (flags, _, _) = parse_options(&["ro".into(), "rw".into()]);
        assert!(flags.is_empty());
    }

    #[test]
    fn targets_never_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        // An image's symlink that points out of the rootfs, absolutely and relatively.
        symlink(&outside, root.join("abs")).unwrap();
        symlink("../../outside", root.join("etc/rel")).unwrap();
        let root_fd =
            rustix::fs::open(&root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        // Each either fails or lands inside the root; none writes outside.
        let _ = ensure_target(&root_fd, Path::new("/abs/sub"), false);
        let _ = ensure_target(&root_fd, Path::new("/etc/rel/file"), true);
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "wrote outside the root"
        );
        // A link that stays inside the root is followed there.
        symlink("/etc", root.join("link")).unwrap();
        ensure_target(&root_fd, Path::new("/link/made"), false).unwrap();
        assert!(root.join("etc/made").is_dir());
    }
}
