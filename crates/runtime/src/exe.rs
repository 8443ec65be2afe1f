//! A copy of the berth binary that a container cannot write to (CVE-2019-5736).
//!
//! `berth init` runs inside the container's namespaces; were it executed from the host's
//! binary, a process in the container could open `/proc/<init>/exe` and, once berth no longer
//! runs, write through it to the host's `berth`. So init is executed from a detached,
//! read-only bind mount of the binary (`open_tree(OPEN_TREE_CLONE)` + `mount_setattr(RDONLY)`:
//! two system calls, nothing copied); where that is not allowed, from a sealed memfd copy, as
//! runc does.

use std::{
    fs::File,
    io,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    sync::OnceLock,
};

use rustix::{
    fs::{CWD, MemfdFlags, OFlags, SealFlags},
    mount::OpenTreeFlags,
};

static SEALED: OnceLock<OwnedFd> = OnceLock::new();

/// An fd of the running binary that cannot be written through, for `fexecve`; made once per
/// process.
pub(crate) fn sealed_self() -> io::Result<&'static OwnedFd> {
    if let Some(fd) = SEALED.get() {
        return Ok(fd);
    }
    let fd = match read_only_mount() {
        Ok(fd) => fd,
        Err(e) => {
            tracing::debug!("read-only mount of /proc/self/exe: {e}; copying to a sealed memfd");
            sealed_memfd()?
        }
    };
    Ok(SEALED.get_or_init(|| fd))
}

fn read_only_mount() -> io::Result<OwnedFd> {
    let tree = rustix::mount::open_tree(
        CWD,
        "/proc/self/exe",
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    set_read_only(&tree)?;
    let path = format!("/proc/self/fd/{}", tree.as_raw_fd());
    let fd = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, 0.into())?;
    // The file is held by `fd`; the detached mount lives as long as it does.
    Ok(fd)
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH, {attr_set: MOUNT_ATTR_RDONLY})`: rustix has no
/// wrapper yet.
#[allow(unsafe_code)]
fn set_read_only(tree: &OwnedFd) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 1;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a valid NUL-terminated string, `attr` is a live mount_attr of the
    // size passed, and the fd is open for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sealed_memfd() -> io::Result<OwnedFd> {
    let memfd = rustix::fs::memfd_create(
        "berth-init",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut exe = File::open("/proc/self/exe")?;
    let mut out = File::from(memfd.try_clone()?);
    io::copy(&mut exe, &mut out)?;
    rustix::fs::fcntl_add_seals(
        memfd.as_fd(),
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?;
    Ok(memfd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sealed_binary_cannot_be_opened_for_writing() {
        let fd = sealed_self().unwrap();
        // While it runs, writes fail with ETXTBSY anyway; what matters is the mount, which
        // keeps refusing writes once nothing executes the file any more.
        let st = rustix::fs::fstatvfs(fd).unwrap();
        assert!(
            st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY),
            "the detached mount of berth's binary is writable"
        );
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        assert!(std::fs::OpenOptions::new().write(true).open(&path).is_err());
        // Same content as the binary.
        let a = std::fs::read(&path).unwrap();
        let b = std::fs::read("/proc/self/exe").unwrap();
        assert!(a == b);
    }

    #[test]
    fn the_memfd_fallback_is_sealed() {
        let fd = sealed_memfd().unwrap();
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        use std::io::Write;
        assert!(f.write_all(b"x").is_err());
    }
}
