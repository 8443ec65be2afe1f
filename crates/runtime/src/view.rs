//! A container's filesystem seen from the host, for `cp`, `export` and the like: its overlay
//! mounted detached (the new mount API: `fsopen`, `fsmount`), reachable only through the
//! returned fd and gone when the last fd of it closes. Nothing is mounted anywhere a process
//! could stumble on, and nothing needs unmounting after a crash.

use std::{
    io,
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
};

use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

/// Mounts an overlay of `lower` (top-most first) with `upper` and its work directory, or
/// read-only without them, and returns the mount's root as a directory fd. One `lowerdir+`
/// per layer (kernel 6.8+): no limit on the number of layers. EINVAL or ENOSYS means the
/// kernel lacks that API.
pub fn overlay_view(lower: &[PathBuf], upper: Option<(&Path, &Path)>) -> io::Result<OwnedFd> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for dir in lower {
        rustix::mount::fsconfig_set_string(fs.as_fd(), "lowerdir+", dir)?;
    }
    let mut attrs = MountAttrFlags::empty();
    match upper {
        Some((upper, work)) => {
            rustix::mount::fsconfig_set_string(fs.as_fd(), "upperdir", upper)?;
            rustix::mount::fsconfig_set_string(fs.as_fd(), "workdir", work)?;
            // Renamed directories and metadata-only copy-ups would be recorded in xattrs that
            // an OCI layer cannot carry (`diff` and `commit` read the upper directory as it
            // is). A kernel that does not know the options has neither feature.
            for feature in ["redirect_dir", "metacopy"] {
                let _ = rustix::mount::fsconfig_set_string(fs.as_fd(), feature, "off");
            }
        }
        None => attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY,
    }
    rustix::mount::fsconfig_create(fs.as_fd())?;
    Ok(rustix::mount::fsmount(
        fs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        attrs,
    )?)
}

/// A filesystem mounted as `mount -t KIND -o OPTIONS DEVICE` would, detached, as a directory
/// fd of its root: what a volume with driver options (`--opt type=... device=... o=...`)
/// holds, for filling it. `options` are `key=value` or flags, comma-separated.
pub fn device_view(kind: &str, device: &str, options: &str) -> io::Result<OwnedFd> {
    let fs = rustix::mount::fsopen(kind, FsOpenFlags::FSOPEN_CLOEXEC)?;
    if !device.is_empty() {
        rustix::mount::fsconfig_set_string(fs.as_fd(), "source", device)?;
    }
    // Mount flags (`ro`, `noexec`, `noatime`...) are attributes of the mount, split from
    // the filesystem's own options as the runtime's mounts split them.
    let options: Vec<String> = options
        .split(',')
        .filter(|o| !o.is_empty() && *o != "defaults")
        .map(str::to_string)
        .collect();
    let (flags, _propagation, data) = crate::mounts::parse_options(&options);
    use nix::mount::MsFlags;
    let mut attrs = MountAttrFlags::empty();
    for (flag, attr) in [
        (MsFlags::MS_RDONLY, MountAttrFlags::MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MountAttrFlags::MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MountAttrFlags::MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MountAttrFlags::MOUNT_ATTR_NOEXEC),
        (MsFlags::MS_NOATIME, MountAttrFlags::MOUNT_ATTR_NOATIME),
        (
            MsFlags::MS_NODIRATIME,
            MountAttrFlags::MOUNT_ATTR_NODIRATIME,
        ),
        (
            MsFlags::MS_STRICTATIME,
            MountAttrFlags::MOUNT_ATTR_STRICTATIME,
        ),
    ] {
        if flags.contains(flag) {
            attrs |= attr;
        }
    }
    for option in &data {
        match option.split_once('=') {
            Some((key, value)) => rustix::mount::fsconfig_set_string(fs.as_fd(), key, value)?,
            None => rustix::mount::fsconfig_set_flag(fs.as_fd(), option)?,
        }
    }
    rustix::mount::fsconfig_create(fs.as_fd())?;
    Ok(rustix::mount::fsmount(
        fs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        attrs,
    )?)
}

/// The directory `dir` itself as a read-only view's root, for a filesystem of one layer
/// (overlayfs needs two lower layers, or an upper one).
pub fn dir_view(dir: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_view_mounts_with_the_options_given() {
        let fd = device_view("tmpfs", "tmpfs", "size=1m,mode=0700").unwrap();
        let st = rustix::fs::fstat(&fd).unwrap();
        assert_eq!(st.st_mode & 0o7777, 0o700);
        let fs = rustix::fs::fstatfs(&fd).unwrap();
        assert_eq!(fs.f_blocks as u64 * fs.f_bsize as u64, 1 << 20);
        let ro = device_view("tmpfs", "tmpfs", "ro").unwrap();
        assert!(
            rustix::fs::mkdirat(&ro, "x", rustix::fs::Mode::from_raw_mode(0o755)).is_err(),
            "ro was not applied"
        );
        // Mount flags are attributes, not options tmpfs would refuse.
        let flagged = device_view("tmpfs", "tmpfs", "size=1m,noexec,nosuid,nodev,noatime").unwrap();
        let st = rustix::fs::fstatvfs(&flagged).unwrap();
        assert!(st.f_flag.contains(rustix::fs::StatVfsMountFlags::NOEXEC));
        let err = device_view("tmpfs", "tmpfs", "nosuchoption=1").unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::INVAL.raw_os_error())
        );
    }

    #[test]
    fn a_detached_overlay_merges_its_layers_and_writes_to_its_upper() {
        let tmp = tempfile::tempdir().unwrap();
        let d = |n: &str| {
            let p = tmp.path().join(n);
            std::fs::create_dir(&p).unwrap();
            p
        };
        let (low1, low2, upper, work) = (d("l1"), d("l2"), d("upper"), d("work"));
        std::fs::write(low1.join("top"), "1").unwrap();
        std::fs::write(low2.join("top"), "2").unwrap();
        std::fs::write(low2.join("bottom"), "b").unwrap();
        let read = |fd: &OwnedFd, name: &str| {
            let f = rustix::fs::openat(
                fd,
                name,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
            std::io::read_to_string(std::fs::File::from(f)).unwrap()
        };
        let ro = overlay_view(&[low1.clone(), low2.clone()], None).unwrap();
        assert_eq!(read(&ro, "top"), "1");
        assert_eq!(read(&ro, "bottom"), "b");
        assert!(
            rustix::fs::openat(
                &ro,
                "new",
                rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CREATE,
                rustix::fs::Mode::from_raw_mode(0o644),
            )
            .is_err(),
            "a read-only view took a write"
        );
        let rw = overlay_view(&[low1, low2], Some((&upper, &work))).unwrap();
        let f = rustix::fs::openat(
            &rw,
            "new",
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CREATE | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
        drop(f);
        drop(rw);
        assert!(upper.join("new").exists());
    }
}
