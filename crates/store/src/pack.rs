//! Reading paths of a container's filesystem safely, and writing trees as tar streams
//! (`cp` out of a container, and the content of committed layers).
//!
//! # Safety against hostile trees
//!
//! The tree being read belongs to a container, whose processes may change it while berth
//! reads it. Nothing outside the root may ever be read:
//! - a path given by the user is resolved with `openat2(RESOLVE_IN_ROOT |
//!   RESOLVE_NO_MAGICLINKS)` relative to the root's fd, so symlinks are followed as the
//!   container would see them (`link -> /` leads to the root, `../../..` stops at the
//!   root), never out of it;
//! - below that, the walk goes by file descriptors: each child is opened relative to its
//!   parent's fd with `O_NOFOLLOW`, a symlink met there is stored as a symlink, and no path
//!   string is ever resolved again, so a symlink swapped in concurrently cannot redirect
//!   it;
//! - every node is first opened `O_PATH` (which has no side effects) and checked with
//!   `fstat`; only a regular file is then opened for reading, through its
//!   `/proc/self/fd` magic link, which reopens that very inode. A device node swapped in
//!   between the two steps is never opened (opening some devices, such as a watchdog, acts).
//!
//! # Format
//!
//! GNU tar headers (base-256 numbers where octal does not fit), PAX extended headers for
//! names and link names over 100 bytes and for the `security.capability` attribute (the
//! only one Docker carries in layers), directories named with a trailing `/`, times in
//! whole seconds. Entries of a directory are sorted by name, so the same tree gives the same
//! bytes. Layers carry no user or group names (a layer's bytes must not depend on the
//! machine that wrote it, nor carry its accounts); `cp` and `export` archives carry the
//! host's names, as dockerd's do.

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

/// What a path is, as `cp` needs to know before copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    /// Its type.
    pub kind: PathKind,
    /// Permission bits, with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Size in bytes (of the link text, for a symlink).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// What a symlink contains, verbatim; `None` for anything else.
    pub link_target: Option<PathBuf>,
}

/// The type of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (only when not followed).
    Symlink,
    /// A device, FIFO or socket.
    Other,
}

/// What [`pack_path`] writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackOptions {
    /// Name of the top entry in the tar; empty = a directory's contents, entries relative
    /// to it (berth cp's `SRC/.`). A leading `/`, leading `./` and trailing `/` are
    /// dropped, except that `.` alone names the top `./` and its entries `./NAME`, as
    /// dockerd's archive of `SRC/.` has them.
    pub name: PathBuf,
    /// Follow a symlink at `path` itself (`cp -L`); symlinks below are always stored as
    /// symlinks. The contents mode (empty `name`) always follows it.
    pub follow_top: bool,
    /// Record this uid/gid instead of the files' own.
    pub owner: Option<(u32, u32)>,
    /// Headers carry the host's user and group names for the ids, as dockerd's archives
    /// for `cp` and `export` do (read from `/etc/passwd` and `/etc/group` once).
    pub owner_names: bool,
}

/// What was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackStats {
    /// Tar entries (files, directories, links, whiteouts; not the PAX headers).
    pub entries: u64,
    /// Tar bytes written, the end-of-archive blocks included.
    pub bytes: u64,
}

/// Why a tree could not be packed (or its changes not computed).
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// A filesystem operation on `path` failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "read".
        op: &'static str,
        /// The path it was done to (as the caller named the tree, plus the entry's name).
        path: PathBuf,
        /// The kernel's error.
        #[source]
        source: io::Error,
    },
    /// The contents of something other than a directory were asked for.
    #[error("{}: not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The path is of a kind that cannot be written to a tar, or a tree berth cannot read.
    #[error("{}: {reason}", path.display())]
    Unsupported {
        /// The path.
        path: PathBuf,
        /// Why, e.g. "is a socket".
        reason: &'static str,
    },
    /// Writing the tar stream failed (the reader went away, the disk is full).
    #[error("write tar stream: {0}")]
    Write(#[source] io::Error),
}

impl PackError {
    /// Whether the error is that the path (or the one asked for) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, PackError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Stats `path` inside the tree rooted at `root` (a directory fd that acts as `/`): parent
/// components are resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
/// (symlinks followed but never out of root); the last component is followed only with
/// `follow`, or when `path` ends with `/` (as POSIX has it). `io::ErrorKind::NotFound`
/// when absent.
pub fn stat_in_root(root: BorrowedFd<'_>, path: &Path, follow: bool) -> io::Result<PathStat> {
    let node = resolve_in_root(root, path, follow)?;
    let st = rustix::fs::fstat(&node)?;
    let kind = path_kind(&st);
    let link_target = match kind {
        PathKind::Symlink => {
            let target = rustix::fs::readlinkat(&node, "", Vec::new())?;
            Some(PathBuf::from(std::ffi::OsStr::from_bytes(
                target.as_bytes(),
            )))
        }
        _ => None,
    };
    Ok(PathStat {
        kind,
        mode: st.st_mode & 0o7777,
        size: st.st_size as u64,
        mtime: st.st_mtime,
        link_target,
    })
}

/// Opens the directory `path` inside `root` (same resolution as [`stat_in_root`],
/// following the last component too), for extracting into.
pub fn open_dir_in_root(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    let bytes = nonempty(path.as_os_str().as_bytes());
    Ok(openat2_in_root(root, bytes, READ_DIR)?)
}

/// Opens the regular file `path` inside `root` for reading (same resolution as
/// [`stat_in_root`], following the last component too).
pub fn open_file_in_root(root: BorrowedFd<'_>, path: &Path) -> io::Result<std::fs::File> {
    let bytes = nonempty(path.as_os_str().as_bytes());
    // NONBLOCK: a FIFO under the name must not hang the open (it is refused below); it
    // changes nothing for a regular file.
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let fd = openat2_in_root(root, bytes, flags)?;
    let file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// Writes `path` (resolved inside `root` as [`stat_in_root`] does) and, for a directory,
/// everything beneath it, as a tar stream; see the module documentation for the format
/// and the safety rules. Hard links within the tree become `Link` entries naming the
/// first path written; sockets are skipped (the top one is an error). A file that
/// shrinks while it is read is padded with zeros (as GNU tar does) and one that grows is
/// cut at the size it had when opened; an entry that disappears while the tree is walked
/// is left out.
pub fn pack_path(
    root: BorrowedFd<'_>,
    path: &Path,
    opts: &PackOptions,
    out: impl Write,
) -> Result<PackStats, PackError> {
    let name = top_name(&opts.name);
    let contents = name.is_empty();
    let top =
        resolve_in_root(root, path, opts.follow_top || contents).map_err(|e| PackError::Io {
            op: "open",
            path: path.to_path_buf(),
            source: e,
        })?;
    let mut packer = Packer::new(out, opts.owner);
    packer.owner_names = opts.owner_names;
    let err_path = |rel: &[u8]| join_display(path, rel);
    if contents {
        let st = rustix::fs::fstat(&top).map_err(io_err("stat", path))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(PackError::NotADirectory {
                path: path.to_path_buf(),
            });
        }
        let dir = rustix::fs::openat(&top, ".", READ_DIR, Mode::empty())
            .map_err(io_err("open directory", path))?;
        packer.walk(dir, &mut Vec::new(), &mut Vec::new(), &err_path)?;
    } else {
        let node = Node::Top(top.as_fd());
        match packer.write_node(node, &name, &err_path(b""))? {
            Written::Dir(dir) => {
                let mut tar_name = name.clone();
                tar_name.push(b'/');
                packer.walk(dir, &mut tar_name, &mut Vec::new(), &err_path)?;
            }
            Written::Entry => {}
            Written::Gone => {
                return Err(PackError::Io {
                    op: "open",
                    path: path.to_path_buf(),
                    source: io::ErrorKind::NotFound.into(),
                });
            }
            Written::Socket => {
                return Err(PackError::Unsupported {
                    path: path.to_path_buf(),
                    reason: "is a socket",
                });
            }
        }
    }
    packer.finish()
}

// ---------------------------------------------------------------------------
// Resolution inside a root.

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
/// An `O_PATH` handle: no permission needed, no side effects, not even for a device.
const PATH_FLAGS: OFlags = OFlags::PATH.union(OFlags::CLOEXEC);
pub(crate) const READ_DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

/// `.` for an empty path: openat2 refuses an empty one.
fn nonempty(path: &[u8]) -> &[u8] {
    if path.is_empty() { b"." } else { path }
}

fn openat2_in_root(root: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    // EAGAIN: a concurrent rename raced the lookup, and the kernel asks for a retry.
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(root, path, flags, Mode::empty(), IN_ROOT) {
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            result => return result,
        }
    }
}

/// An `O_PATH` fd of `path` inside `root`: everything but the last component is followed
/// (inside the root); the last one too with `follow` or a trailing `/`, and always when it
/// is `.` or `..`, which are never symlinks.
fn resolve_in_root(root: BorrowedFd<'_>, path: &Path, follow: bool) -> io::Result<OwnedFd> {
    let bytes = path.as_os_str().as_bytes();
    let trimmed = trim_trailing_slashes(bytes);
    let trailing_slash = trimmed.len() < bytes.len() && !trimmed.is_empty();
    let (parent, last) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    if trimmed.is_empty() {
        return Ok(openat2_in_root(root, b".", PATH_FLAGS)?);
    }
    if follow || trailing_slash || last == b"." || last == b".." {
        let flags = if trailing_slash {
            PATH_FLAGS | OFlags::DIRECTORY
        } else {
            PATH_FLAGS
        };
        return Ok(openat2_in_root(root, trimmed, flags)?);
    }
    let dir = openat2_in_root(root, nonempty(parent), PATH_FLAGS | OFlags::DIRECTORY)?;
    Ok(rustix::fs::openat(
        &dir,
        last,
        PATH_FLAGS | OFlags::NOFOLLOW,
        Mode::empty(),
    )?)
}

fn trim_trailing_slashes(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b'/'] = b {
        if rest.is_empty() {
            // "/" itself: the root.
            return b"";
        }
        b = rest;
    }
    b
}

/// The tar name of the top entry: without a leading `/` or `./`, or a trailing `/`.
fn top_name(name: &Path) -> Vec<u8> {
    let mut b = name.as_os_str().as_bytes();
    loop {
        if let Some(rest) = b.strip_prefix(b"/") {
            b = rest;
        } else if let Some(rest) = b.strip_prefix(b"./") {
            b = rest;
        } else {
            break;
        }
    }
    trim_trailing_slashes(b).to_vec()
}

fn path_kind(st: &Stat) -> PathKind {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => PathKind::File,
        FileType::Directory => PathKind::Dir,
        FileType::Symlink => PathKind::Symlink,
        _ => PathKind::Other,
    }
}

/// `base` joined with a relative tar-style path, for error messages.
pub(crate) fn join_display(base: &Path, rel: &[u8]) -> PathBuf {
    let rel = trim_trailing_slashes(rel);
    if rel.is_empty() {
        base.to_path_buf()
    } else {
        base.join(std::ffi::OsStr::from_bytes(rel))
    }
}

pub(crate) fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> PackError + 'a {
    move |e| PackError::Io {
        op,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Every name in a directory but `.` and `..`, sorted bytewise.
pub(crate) fn sorted_names(dir: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>, Errno> {
    // Dir reads from its own fd (opened at "."), so the caller's offset is untouched.
    let mut reader = rustix::fs::Dir::read_from(dir)?;
    let mut names = Vec::new();
    while let Some(entry) = reader.read() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

// ---------------------------------------------------------------------------
// The tar writer.

const BLOCK: usize = 512;
const NAME_FIELD: usize = 100;
/// Docker carries this one extended attribute in layers (file capabilities); others, such
/// as `trusted.overlay.*` or SELinux labels, belong to the host.
const CAPABILITY_XATTR: &str = "security.capability";

/// Counts what goes through to the output.
struct Counting<W: Write> {
    inner: BufWriter<W>,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What [`Packer::write_node`] found and wrote.
pub(crate) enum Written {
    /// A directory entry; here is the directory, to walk.
    Dir(OwnedFd),
    /// Any other entry.
    Entry,
    /// Nothing: the node disappeared (or became something else) meanwhile.
    Gone,
    /// Nothing: sockets cannot be archived.
    Socket,
}

/// Where a node is: a child name in a directory, or an `O_PATH` fd already resolved.
#[derive(Clone, Copy)]
pub(crate) enum Node<'a> {
    Child(BorrowedFd<'a>, &'a [u8]),
    Top(BorrowedFd<'a>),
}

/// Writes tar entries for nodes read through fds.
pub(crate) struct Packer<W: Write> {
    out: Counting<W>,
    entries: u64,
    owner: Option<(u32, u32)>,
    /// (device, inode) of each multiply-linked non-directory written, and its tar name.
    links: HashMap<(u64, u64), Vec<u8>>,
    buf: Vec<u8>,
    /// Whether reopening through /proc/self/fd works here.
    proc_fd: bool,
    /// Whether headers carry the host's user and group names ([`PackOptions::owner_names`];
    /// never for layers).
    owner_names: bool,
    /// Those names, read at the first entry that needs them.
    names: Option<OwnerNames>,
}

impl<W: Write> Packer<W> {
    pub(crate) fn new(out: W, owner: Option<(u32, u32)>) -> Self {
        Packer {
            out: Counting {
                inner: BufWriter::with_capacity(256 << 10, out),
                count: 0,
            },
            entries: 0,
            owner,
            links: HashMap::new(),
            buf: vec![0; 256 << 10],
            proc_fd: true,
            owner_names: false,
            names: None,
        }
    }

    /// Writes the end-of-archive blocks and flushes.
    pub(crate) fn finish(mut self) -> Result<PackStats, PackError> {
        self.out
            .write_all(&[0; 2 * BLOCK])
            .and_then(|()| self.out.flush())
            .map_err(PackError::Write)?;
        Ok(PackStats {
            entries: self.entries,
            bytes: self.out.count,
        })
    }

    /// Writes every entry below directory `dir`, whose tar name (with its trailing `/`, or
    /// empty for the contents mode) is `prefix` and whose path relative to the top is
    /// `rel`, depth first, each directory's names sorted.
    fn walk(
        &mut self,
        dir: OwnedFd,
        prefix: &mut Vec<u8>,
        rel: &mut Vec<u8>,
        err_path: &dyn Fn(&[u8]) -> PathBuf,
    ) -> Result<(), PackError> {
        let names = match sorted_names(dir.as_fd()) {
            Ok(names) => names,
            // Removed while we were in it.
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(io_err("read directory", &err_path(rel))(e)),
        };
        let (prefix_len, rel_len) = (prefix.len(), rel.len());
        for name in names {
            prefix.truncate(prefix_len);
            prefix.extend_from_slice(&name);
            rel.truncate(rel_len);
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&name);
            let node = Node::Child(dir.as_fd(), &name);
            if let Written::Dir(child) = self.write_node(node, prefix, &err_path(rel))? {
                prefix.push(b'/');
                self.walk(child, prefix, rel, err_path)?;
            }
        }
        prefix.truncate(prefix_len);
        rel.truncate(rel_len);
        Ok(())
    }

    /// Writes the entry of one node under `tar_name` (without a trailing `/`), with its
    /// content. `path` names it in errors.
    pub(crate) fn write_node(
        &mut self,
        node: Node<'_>,
        tar_name: &[u8],
        path: &Path,
    ) -> Result<Written, PackError> {
        // The node may be replaced between our steps; after a few tries the tree is
        // being churned on purpose.
        for _ in 0..8 {
            if let Some(written) = self.try_write_node(node, tar_name, path)? {
                return Ok(written);
            }
        }
        Err(PackError::Unsupported {
            path: path.to_path_buf(),
            reason: "keeps changing while it is read",
        })
    }

    /// One attempt; `None` when the node changed type under us.
    fn try_write_node(
        &mut self,
        node: Node<'_>,
        tar_name: &[u8],
        path: &Path,
    ) -> Result<Option<Written>, PackError> {
        let handle;
        let fd = match node {
            Node::Top(fd) => fd,
            Node::Child(dir, name) => {
                match rustix::fs::openat(dir, name, PATH_FLAGS | OFlags::NOFOLLOW, Mode::empty()) {
                    Ok(fd) => handle = fd,
                    Err(Errno::NOENT) => return Ok(Some(Written::Gone)),
                    Err(e) => return Err(io_err("open", path)(e)),
                }
                handle.as_fd()
            }
        };
        let st = rustix::fs::fstat(fd).map_err(io_err("stat", path))?;
        let file_type = FileType::from_raw_mode(st.st_mode);
        if file_type == FileType::Directory {
            // An O_PATH fd can be the base of openat; "." reopens that very directory.
            let dir = match rustix::fs::openat(fd, ".", READ_DIR, Mode::empty()) {
                Ok(dir) => dir,
                Err(Errno::NOENT) => return Ok(Some(Written::Gone)),
                Err(e) => return Err(io_err("open directory", path)(e)),
            };
            let st = rustix::fs::fstat(&dir).map_err(io_err("stat", path))?;
            let mut name = tar_name.to_vec();
            name.push(b'/');
            self.header(&name, tar::EntryType::Directory, &st, 0, b"", &[])?;
            return Ok(Some(Written::Dir(dir)));
        }
        if file_type == FileType::Socket {
            tracing::debug!(path = %path.display(), "skipping socket");
            return Ok(Some(Written::Socket));
        }
        if st.st_nlink > 1
            && let Some(first) = self.links.get(&(st.st_dev, st.st_ino))
        {
            let first = first.clone();
            self.header(tar_name, tar::EntryType::Link, &st, 0, &first, &[])?;
            return Ok(Some(Written::Entry));
        }
        match file_type {
            FileType::RegularFile => {
                let Some(file) = self.reopen_file(node, fd, &st, path)? else {
                    return Ok(None);
                };
                let st = rustix::fs::fstat(&file).map_err(io_err("stat", path))?;
                let mut xattrs = Vec::new();
                let mut cap = [0u8; 64];
                match rustix::fs::fgetxattr(&file, CAPABILITY_XATTR, &mut cap[..]) {
                    Ok(n) => xattrs.push((CAPABILITY_XATTR, cap[..n].to_vec())),
                    Err(Errno::NODATA | Errno::NOTSUP) => {}
                    Err(e) => return Err(io_err("read extended attributes of", path)(e)),
                }
                let size = st.st_size as u64;
                self.header(tar_name, tar::EntryType::Regular, &st, size, b"", &xattrs)?;
                self.copy_data(&file, size, path)?;
            }
            FileType::Symlink => {
                let target = match rustix::fs::readlinkat(fd, "", Vec::new()) {
                    Ok(t) => t.into_bytes(),
                    Err(Errno::NOENT) => return Ok(Some(Written::Gone)),
                    Err(e) => return Err(io_err("read symlink", path)(e)),
                };
                self.header(tar_name, tar::EntryType::Symlink, &st, 0, &target, &[])?;
            }
            FileType::CharacterDevice => {
                self.header(tar_name, tar::EntryType::Char, &st, 0, b"", &[])?;
            }
            FileType::BlockDevice => {
                self.header(tar_name, tar::EntryType::Block, &st, 0, b"", &[])?;
            }
            FileType::Fifo => {
                self.header(tar_name, tar::EntryType::Fifo, &st, 0, b"", &[])?;
            }
            _ => {
                return Err(PackError::Unsupported {
                    path: path.to_path_buf(),
                    reason: "is of an unknown file type",
                });
            }
        }
        if st.st_nlink > 1 {
            self.links.insert((st.st_dev, st.st_ino), tar_name.to_vec());
        }
        Ok(Some(Written::Entry))
    }

    /// Opens for reading the regular file that `fd` (`O_PATH`) is; `None` if what is there
    /// now is not that file.
    fn reopen_file(
        &mut self,
        node: Node<'_>,
        fd: BorrowedFd<'_>,
        st: &Stat,
        path: &Path,
    ) -> Result<Option<OwnedFd>, PackError> {
        const FLAGS: OFlags = OFlags::RDONLY
            .union(OFlags::CLOEXEC)
            .union(OFlags::NOCTTY)
            .union(OFlags::NONBLOCK);
        if self.proc_fd {
            let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
            match rustix::fs::open(proc.as_str(), FLAGS, Mode::empty()) {
                // The magic link opens the inode the O_PATH fd holds, not a name.
                Ok(file) => return Ok(Some(file)),
                Err(Errno::NOENT) if rustix::fs::fstat(fd).is_ok() => self.proc_fd = false,
                Err(e) => return Err(io_err("open", path)(e)),
            }
        }
        // No /proc: open by name without following a symlink, and check it is the same
        // file; only a writer racing us could have put something else (a device) there.
        let Node::Child(dir, name) = node else {
            return Err(PackError::Unsupported {
                path: path.to_path_buf(),
                reason: "cannot be reopened for reading without /proc",
            });
        };
        match rustix::fs::openat(dir, name, FLAGS | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(file) => {
                let now = rustix::fs::fstat(&file).map_err(io_err("stat", path))?;
                Ok((now.st_dev == st.st_dev && now.st_ino == st.st_ino).then_some(file))
            }
            Err(Errno::NOENT | Errno::LOOP) => Ok(None),
            Err(e) => Err(io_err("open", path)(e)),
        }
    }

    /// Copies exactly `size` bytes of `file`: zeros after an early end, nothing past it.
    fn copy_data(&mut self, file: &OwnedFd, size: u64, path: &Path) -> Result<(), PackError> {
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match rustix::io::read(file, &mut self.buf[..want]) {
                Ok(0) => {
                    tracing::warn!(path = %path.display(), missing = left, "file shrank while being read; padded with zeros");
                    self.buf[..want].fill(0);
                    want
                }
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(io_err("read", path)(e)),
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(PackError::Write)?;
            left -= n as u64;
        }
        self.pad(size)
    }

    fn pad(&mut self, len: u64) -> Result<(), PackError> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out
                .write_all(&[0; BLOCK][..BLOCK - rem])
                .map_err(PackError::Write)?;
        }
        Ok(())
    }

    /// Writes one entry's header, preceded by a PAX header when a name does not fit or
    /// there are extended attributes. The caller writes the data.
    pub(crate) fn header(
        &mut self,
        name: &[u8],
        kind: tar::EntryType,
        st: &Stat,
        size: u64,
        link: &[u8],
        xattrs: &[(&str, Vec<u8>)],
    ) -> Result<(), PackError> {
        let (uid, gid) = self.owner.unwrap_or((st.st_uid, st.st_gid));
        let mtime = u64::try_from(st.st_mtime).unwrap_or(0);
        self.raw_header(
            name,
            kind,
            st.st_mode & 0o7777,
            (uid, gid),
            mtime,
            size,
            link,
            st.st_rdev,
            xattrs,
        )
    }

    /// Writes a header from explicit fields (for whiteouts, which have no node of their
    /// own in the tree).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn raw_header(
        &mut self,
        name: &[u8],
        kind: tar::EntryType,
        mode: u32,
        (uid, gid): (u32, u32),
        mtime: u64,
        size: u64,
        link: &[u8],
        rdev: u64,
        xattrs: &[(&str, Vec<u8>)],
    ) -> Result<(), PackError> {
        let mut records = Vec::new();
        if name.len() > NAME_FIELD {
            pax_record(&mut records, "path", name);
        }
        if link.len() > NAME_FIELD {
            pax_record(&mut records, "linkpath", link);
        }
        for (key, value) in xattrs {
            pax_record(&mut records, &format!("SCHILY.xattr.{key}"), value);
        }
        if !records.is_empty() {
            let base = name
                .strip_suffix(b"/")
                .unwrap_or(name)
                .rsplit(|&b| b == b'/')
                .next()
                .unwrap_or(b"");
            let mut pax_name = b"PaxHeaders/".to_vec();
            pax_name.extend_from_slice(base);
            let mut h = tar::Header::new_ustar();
            put_field(&mut h.as_old_mut().name, &pax_name);
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(mtime);
            h.set_size(records.len() as u64);
            h.set_cksum();
            self.out.write_all(h.as_bytes()).map_err(PackError::Write)?;
            self.out.write_all(&records).map_err(PackError::Write)?;
            self.pad(records.len() as u64)?;
        }
        let mut h = tar::Header::new_gnu();
        put_field(&mut h.as_old_mut().name, name);
        put_field(&mut h.as_old_mut().linkname, link);
        h.set_entry_type(kind);
        // Docker's archives carry the file type in the mode too (`100644`), and the owners'
        // names as the host's user database has them.
        h.set_mode(mode | type_bits(kind));
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        if self.owner_names {
            let names = self.names.get_or_insert_with(OwnerNames::read);
            if let Some(user) = names.users.get(&uid) {
                // Only fails for a name longer than the field, which is then left empty.
                let _ = h.set_username(user);
            }
            if let Some(group) = names.groups.get(&gid) {
                let _ = h.set_groupname(group);
            }
        }
        h.set_mtime(mtime);
        h.set_size(size);
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            // Only fails for a header format without device fields, which GNU's is not.
            h.set_device_major(rustix::fs::major(rdev))
                .map_err(PackError::Write)?;
            h.set_device_minor(rustix::fs::minor(rdev))
                .map_err(PackError::Write)?;
        }
        h.set_cksum();
        self.out.write_all(h.as_bytes()).map_err(PackError::Write)?;
        self.entries += 1;
        Ok(())
    }
}

/// The `S_IFMT` bits of an entry's mode (Go's `c_ISREG` and kin, which Docker's archives
/// set); a hard link has its target's.
fn type_bits(kind: tar::EntryType) -> u32 {
    match kind {
        tar::EntryType::Regular | tar::EntryType::Link | tar::EntryType::Continuous => 0o100000,
        tar::EntryType::Directory => 0o040000,
        tar::EntryType::Symlink => 0o120000,
        tar::EntryType::Char => 0o020000,
        tar::EntryType::Block => 0o060000,
        tar::EntryType::Fifo => 0o010000,
        _ => 0,
    }
}

/// The host's user and group names by ID, from `/etc/passwd` and `/etc/group` (what Go's
/// `tar.FileInfoHeader` looks up for Docker). A missing or unreadable file names no one.
#[derive(Debug, Default)]
struct OwnerNames {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl OwnerNames {
    fn read() -> OwnerNames {
        let table = |path: &str| {
            let mut map = HashMap::new();
            for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
                let mut fields = line.split(':');
                let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next())
                else {
                    continue;
                };
                if let Ok(id) = id.parse() {
                    // The first name of an ID wins, as getpwuid's does.
                    map.entry(id).or_insert_with(|| name.to_string());
                }
            }
            map
        };
        OwnerNames {
            users: table("/etc/passwd"),
            groups: table("/etc/group"),
        }
    }
}

/// Copies as much of `value` as fits (a longer one is in a PAX record too).
fn put_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field.fill(0);
    field[..n].copy_from_slice(&value[..n]);
}

/// Appends `"<len> <key>=<value>\n"`, where `len` counts the whole record, itself included.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = 3 + key.len() + value.len(); // space, '=', newline
    let mut len = rest + 1;
    while rest + len.to_string().len() != len {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::snapshot;
    use crate::unpack::{UnpackOptions, unpack_into};
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    fn open_dir(path: &Path) -> OwnedFd {
        rustix::fs::open(path, READ_DIR, Mode::empty()).unwrap()
    }

    fn pack(root: &Path, path: &str, opts: &PackOptions) -> Result<Vec<u8>, PackError> {
        let mut out = Vec::new();
        let stats = pack_path(open_dir(root).as_fd(), Path::new(path), opts, &mut out)?;
        assert_eq!(stats.bytes, out.len() as u64);
        assert_eq!(out.len() % BLOCK, 0);
        Ok(out)
    }

    #[test]
    fn a_dot_name_prefixes_entries_as_dockerd_does() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("d/sub")).unwrap();
        fs::write(dir.path().join("d/a"), b"a").unwrap();
        let names = |name: &str| -> Vec<String> {
            let tar = pack(dir.path(), "d/.", &named(name)).unwrap();
            listing(&tar).into_iter().map(|(n, _)| n).collect()
        };
        assert_eq!(names("."), ["./", "./a", "./sub/"]);
        assert_eq!(names(""), ["a", "sub/"]);
        assert_eq!(names("./"), ["a", "sub/"]);
    }

    fn named(name: &str) -> PackOptions {
        PackOptions {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Entry names and types, in order, as the tar crate reads them.
    fn listing(tar: &[u8]) -> Vec<(String, tar::EntryType)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                    e.header().entry_type(),
                )
            })
            .collect()
    }

    fn unpack_to(tar: &[u8], dest: &Path, owner: Option<(u32, u32)>) {
        let opts = UnpackOptions {
            whiteouts: false,
            owner,
        };
        unpack_into(tar, open_dir(dest).as_fd(), dest, &opts).unwrap();
    }

    /// A tree with one of everything: file, setuid file, directory, symlinks, hard links,
    /// a FIFO, a long name, a long symlink target, a `.wh.` name and a socket.
    fn sample_tree(dir: &Path) -> String {
        fs::create_dir_all(dir.join("sub/deeper")).unwrap();
        fs::write(dir.join("file"), b"content").unwrap();
        fs::set_permissions(dir.join("file"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::write(dir.join("sub/suid"), b"#!").unwrap();
        fs::set_permissions(dir.join("sub/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::set_permissions(dir.join("sub/deeper"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::hard_link(dir.join("file"), dir.join("sub/hardlink")).unwrap();
        symlink("/etc/passwd", dir.join("passwd-link")).unwrap();
        symlink("../file", dir.join("sub/rel-link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o620),
            0,
        )
        .unwrap();
        let long = format!("{}/{}", "d".repeat(80), "f".repeat(90));
        fs::create_dir(dir.join("d".repeat(80))).unwrap();
        fs::write(dir.join(&long), b"long").unwrap();
        symlink("t".repeat(150), dir.join("long-target")).unwrap();
        fs::write(dir.join(".wh.plain"), b"not a whiteout for cp").unwrap();
        std::os::unix::net::UnixListener::bind(dir.join("socket")).unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            dir.join("sub/suid"),
            Some(rustix::fs::Uid::from_raw(1000)),
            Some(rustix::fs::Gid::from_raw(1001)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        // chown clears setuid.
        fs::set_permissions(dir.join("sub/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        long
    }

    #[test]
    fn round_trip_through_unpack_into() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let long = sample_tree(&src);
        let tar = pack(tmp.path(), "src", &named("copy")).unwrap();
        let names: Vec<String> = listing(&tar).into_iter().map(|(n, _)| n).collect();
        assert!(names.iter().all(|n| n.starts_with("copy")), "{names:?}");
        assert!(names.contains(&format!("copy/{long}")));
        assert!(!names.iter().any(|n| n.contains("socket")));
        // Sorted, parents first.
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);

        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        unpack_to(&tar, &dest, None);
        let mut expected = snapshot(&src);
        expected.retain(|e| e.0 != "socket");
        assert_eq!(snapshot(&dest.join("copy")), expected);
        let md = dest.join("copy/file").metadata().unwrap();
        assert_eq!(
            md.ino(),
            dest.join("copy/sub/hardlink").metadata().unwrap().ino()
        );
        assert_eq!(
            fs::read_link(dest.join("copy/passwd-link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            dest.join("copy/sub/suid").metadata().unwrap().mode(),
            0o104755
        );
        // The same tree gives the same bytes.
        assert_eq!(pack(tmp.path(), "src", &named("copy")).unwrap(), tar);
    }

    #[test]
    fn contents_mode_and_renaming() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        sample_tree(&src);
        let tar = pack(tmp.path(), "/src", &PackOptions::default()).unwrap();
        let list = listing(&tar);
        assert_eq!(list[0].0, ".wh.plain");
        assert!(list.iter().any(|(n, _)| n == "sub/deeper/"));
        assert!(list.iter().all(|(n, _)| !n.starts_with("src")));
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        unpack_to(&tar, &dest, None);
        let mut expected = snapshot(&src);
        expected.retain(|e| e.0 != "socket");
        assert_eq!(snapshot(&dest), expected);

        // A single file, renamed; "./x/" is cleaned to "x".
        let tar = pack(tmp.path(), "src/file", &named("./renamed/")).unwrap();
        assert_eq!(
            listing(&tar),
            [("renamed".to_string(), tar::EntryType::Regular)]
        );
        // The contents of a file make no sense.
        let err = pack(tmp.path(), "src/file", &PackOptions::default()).unwrap_err();
        assert!(matches!(err, PackError::NotADirectory { .. }), "{err}");
        // Nor does a socket.
        let err = pack(tmp.path(), "src/socket", &named("s")).unwrap_err();
        assert!(matches!(err, PackError::Unsupported { .. }), "{err}");
        let err = pack(tmp.path(), "src/missing", &named("m")).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(
            err.to_string(),
            "open src/missing: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn owner_override() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        sample_tree(&src);
        let opts = PackOptions {
            name: "x".into(),
            owner: Some((123, 456)),
            ..Default::default()
        };
        let tar = pack(tmp.path(), "src", &opts).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(
                (e.header().uid().unwrap(), e.header().gid().unwrap()),
                (123, 456)
            );
        }
        // Unpacking with an owner override gives everything that owner.
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        unpack_to(&tar, &dest, Some((7, 8)));
        for (path, _, uid, gid, ..) in snapshot(&dest) {
            assert_eq!((uid, gid), (7, 8), "{path}");
        }
        // Setuid survives the chown.
        assert_eq!(dest.join("x/sub/suid").metadata().unwrap().mode(), 0o104755);
    }

    #[test]
    fn follow_top_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("real/inner")).unwrap();
        fs::write(root.join("real/f"), b"f").unwrap();
        symlink("real", root.join("link")).unwrap();
        symlink("f", root.join("real/flink")).unwrap();
        let tar = pack(root, "link", &named("link")).unwrap();
        assert_eq!(
            listing(&tar),
            [("link".to_string(), tar::EntryType::Symlink)]
        );
        let opts = PackOptions {
            name: "link".into(),
            follow_top: true,
            ..Default::default()
        };
        let names = listing(&pack(root, "link", &opts).unwrap());
        assert_eq!(
            names,
            [
                ("link/".to_string(), tar::EntryType::Directory),
                ("link/f".to_string(), tar::EntryType::Regular),
                ("link/flink".to_string(), tar::EntryType::Symlink),
                ("link/inner/".to_string(), tar::EntryType::Directory),
            ]
        );
        // A trailing slash follows, as POSIX has it.
        let st = stat_in_root(open_dir(root).as_fd(), Path::new("link/"), false).unwrap();
        assert_eq!(st.kind, PathKind::Dir);
        let st = stat_in_root(open_dir(root).as_fd(), Path::new("link"), false).unwrap();
        assert_eq!(st.kind, PathKind::Symlink);
        assert_eq!(st.link_target.as_deref(), Some(Path::new("real")));
        assert_eq!(st.size, 4);
    }

    #[test]
    fn stat_in_root_kinds() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::write(root.join("f"), b"12345").unwrap();
        fs::set_permissions(root.join("f"), fs::Permissions::from_mode(0o4750)).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("p"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let fd = open_dir(root);
        let st = stat_in_root(fd.as_fd(), Path::new("/f"), false).unwrap();
        assert_eq!(
            (st.kind, st.mode, st.size, st.link_target),
            (PathKind::File, 0o4750, 5, None)
        );
        assert_eq!(st.mtime, root.join("f").metadata().unwrap().mtime());
        let st = stat_in_root(fd.as_fd(), Path::new("p"), true).unwrap();
        assert_eq!(st.kind, PathKind::Other);
        for root_path in ["", "/", ".", "..", "/../..", "//"] {
            let st = stat_in_root(fd.as_fd(), Path::new(root_path), false).unwrap();
            assert_eq!(st.kind, PathKind::Dir, "{root_path:?}");
        }
        let err = stat_in_root(fd.as_fd(), Path::new("nope/x"), false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let dir = open_dir_in_root(fd.as_fd(), Path::new("")).unwrap();
        assert_eq!(
            rustix::fs::fstat(&dir).unwrap().st_ino,
            root.metadata().unwrap().ino()
        );
        assert!(open_dir_in_root(fd.as_fd(), Path::new("f")).is_err());
    }

    /// A root whose symlinks all point out of it, at the top and in the middle of paths,
    /// beside an `outside` directory holding a secret.
    fn hostile_root() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"host secret").unwrap();
        fs::create_dir_all(outside.join("etc")).unwrap();
        fs::write(outside.join("etc/hostname"), b"host").unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("/", root.join("link")).unwrap();
        symlink("/etc", root.join("evil")).unwrap();
        symlink("../../..", root.join("a/b/up")).unwrap();
        symlink(&outside, root.join("abs-outside")).unwrap();
        symlink("../outside", root.join("rel-outside")).unwrap();
        (tmp, root)
    }

    #[test]
    fn never_reads_outside_the_root() {
        let (_tmp, root) = hostile_root();
        let fd = open_dir(&root);
        // Through "link -> /": the root's own /etc, which has no hostname.
        let err = stat_in_root(fd.as_fd(), Path::new("link/etc/hostname"), true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        for path in [
            "link/etc/hostname",
            "link/etc/passwd",
            "link/../etc/passwd",
            "evil/passwd",
            "evil/hostname",
            "a/b/up/outside/secret",
            "a/b/up/etc/passwd",
            "abs-outside/secret",
            "rel-outside/secret",
            "../outside/secret",
            "/../../outside/secret",
        ] {
            for follow in [false, true] {
                let err = stat_in_root(fd.as_fd(), Path::new(path), follow).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::NotFound, "{path}");
            }
            let err = pack(&root, path, &named("x")).unwrap_err();
            assert!(err.is_not_found(), "{path}: {err}");
            assert!(open_dir_in_root(fd.as_fd(), Path::new(path)).is_err());
        }
        // Followed at the top, an escaping symlink leads to the root's own directories.
        fs::create_dir(root.join("etc")).unwrap();
        fs::write(root.join("etc/hostname"), b"container").unwrap();
        let st = stat_in_root(fd.as_fd(), Path::new("link/etc/hostname"), false).unwrap();
        assert_eq!(st.size, "container".len() as u64);
        let opts = PackOptions {
            name: "x".into(),
            follow_top: true,
            ..Default::default()
        };
        for path in ["evil", "a/b/up/etc", "link/etc", "link/etc/../etc"] {
            let tar = pack(&root, path, &opts).unwrap();
            let mut archive = tar::Archive::new(&tar[..]);
            let mut seen = Vec::new();
            for e in archive.entries().unwrap() {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                io::Read::read_to_end(&mut e, &mut data).unwrap();
                seen.push((
                    String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                    data,
                ));
            }
            assert_eq!(
                seen,
                [
                    ("x/".to_string(), vec![]),
                    ("x/hostname".to_string(), b"container".to_vec())
                ],
                "{path}"
            );
        }
        // Packing the whole root stores the symlinks as symlinks and reads nothing else.
        let tar = pack(&root, "/", &PackOptions::default()).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            io::Read::read_to_end(&mut e, &mut data).unwrap();
            assert_ne!(data, b"host secret");
            assert_ne!(data, b"host");
        }
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_is_not_followed() {
        // The walk holds each directory's fd: replacing a directory already listed by a
        // symlink out of the root makes the child vanish (or be stored as a symlink), and
        // nothing outside is read.
        let (_tmp, root) = hostile_root();
        fs::create_dir(root.join("d")).unwrap();
        fs::write(root.join("d/x"), b"x").unwrap();
        let fd = open_dir(&root);
        let mut out = Vec::new();
        let mut packer = Packer::new(&mut out, None);
        let names = sorted_names(fd.as_fd()).unwrap();
        assert!(names.contains(&b"d".to_vec()));
        fs::remove_dir_all(root.join("d")).unwrap();
        symlink(root.parent().unwrap().join("outside"), root.join("d")).unwrap();
        let written = packer
            .write_node(Node::Child(fd.as_fd(), b"d"), b"d", Path::new("d"))
            .unwrap();
        assert!(matches!(written, Written::Entry));
        packer.finish().unwrap();
        assert_eq!(listing(&out), [("d".to_string(), tar::EntryType::Symlink)]);
    }

    #[test]
    fn long_names_and_big_ids() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let deep: PathBuf = (0..30).map(|i| format!("dir{i:02}")).collect();
        fs::create_dir_all(src.join(&deep)).unwrap();
        fs::write(src.join(&deep).join("leaf"), b"leaf").unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            src.join(&deep).join("leaf"),
            Some(rustix::fs::Uid::from_raw(3_000_000)),
            Some(rustix::fs::Gid::from_raw(4_000_000)),
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
        let tar = pack(tmp.path(), "src", &PackOptions::default()).unwrap();
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        unpack_to(&tar, &dest, None);
        let md = dest.join(&deep).join("leaf").metadata().unwrap();
        assert_eq!((md.uid(), md.gid()), (3_000_000, 4_000_000));
        assert_eq!(fs::read(dest.join(&deep).join("leaf")).unwrap(), b"leaf");
    }

    #[test]
    fn pax_record_lengths() {
        for (key, len) in [
            ("path", 1usize),
            ("path", 90),
            ("linkpath", 95),
            ("path", 990),
        ] {
            let mut out = Vec::new();
            pax_record(&mut out, key, &vec![b'a'; len]);
            let s = String::from_utf8(out.clone()).unwrap();
            let (n, _) = s.split_once(' ').unwrap();
            assert_eq!(n.parse::<usize>().unwrap(), out.len(), "{s}");
        }
    }
}
