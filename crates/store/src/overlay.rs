//! What a container changed: its overlay upper directory compared with the image's layers,
//! as `docker diff` lists it and as the layer tar `commit` stores.
//!
//! The upper directory holds every entry the container created or changed (copied up
//! whole), a 0:0 character device for each deleted one (a whiteout), and
//! `trusted.overlay.opaque=y` on a directory that replaced a lower one (its lower entries
//! are hidden). So the upper directory alone says what changed; the lowers are consulted
//! only to tell Added from Modified, and to leave out directories overlayfs copied up just
//! to hold a changed child.
//!
//! Lower directories are read the way overlayfs stacks them, top-most first: a lookup
//! stops at a whiteout, at a non-directory, and below an opaque directory. Every lookup is
//! by file descriptor, one `O_NOFOLLOW` component at a time (`AT_SYMLINK_NOFOLLOW` for the
//! last), so a symlink in a layer is never followed; a missing or unreachable path is
//! absent. The upper directory is walked the same way, and its files are read as
//! [`pack_path`](crate::pack_path) reads them.
//!
//! Upper directories written with overlayfs's `redirect_dir` or `metacopy` features (a
//! renamed directory, or a file whose data stayed below) do not hold their own content;
//! they are refused rather than diffed wrongly. berth mounts without them (the kernel's
//! defaults are off).
//!
//! As in every OCI layer, a file the container named `.wh.<name>` cannot be told from a
//! whiteout once it is in the tar: it deletes `<name>` when the layer is unpacked.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::pack::{
    Node, PackError, PackStats, Packer, READ_DIR, Written, io_err, join_display, sorted_names,
};

/// How an entry changed, in Docker's terms (`C`, `A`, `D` in `docker diff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// `C`: present below, and changed (or replaced, or a directory with changes in it).
    Modified,
    /// `A`: absent from every lower layer.
    Added,
    /// `D`: present below, deleted.
    Deleted,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Change {
    /// Absolute in the container (`/tmp/new`); a name that is not UTF-8 is shown lossily.
    pub path: String,
    /// How it changed.
    pub kind: ChangeKind,
}

/// What the overlay upper dir `upper` changes over its read-only `lowers` (top-most
/// first), in Docker's `diff` terms, sorted by path: a whiteout (0:0 char device) is
/// Deleted; an entry absent from every lower is Added (its descendants too); an entry
/// present in a lower is Modified — except a directory that exists in a lower with the same
/// mode, uid and gid and has no reported descendant (overlay copied it up only because of a
/// child that is skipped): it is not reported. An opaque directory (xattr
/// `trusted.overlay.opaque` = `y`) is Modified (or Added), its lower children not listed.
/// `placeholders` are relative paths (e.g. `etc/hostname`, `etc/hosts`,
/// `etc/resolv.conf`) the runtime created as mount targets: skipped when they are empty
/// regular files or empty directories.
pub fn overlay_changes(
    upper: &Path,
    lowers: &[PathBuf],
    placeholders: &[&str],
) -> Result<Vec<Change>, PackError> {
    let tree = Scan::new(upper, placeholders).run(lowers)?;
    let mut out = Vec::new();
    flatten(&tree, &mut b"/".to_vec(), &mut out);
    out.sort();
    Ok(out)
}

/// The same changes as an OCI layer tar: Added and Modified entries with their content (a
/// directory entry for each reported directory), Deleted ones as empty `.wh.<name>`
/// files, opaque directories followed by a `<dir>/.wh..wh..opq` entry; entries relative
/// (no leading `/`), parents before children, each directory's entries sorted by the name
/// they are about. Sockets are left out, as `pack_path` does.
pub fn write_overlay_layer(
    upper: &Path,
    lowers: &[PathBuf],
    placeholders: &[&str],
    out: impl Write,
) -> Result<PackStats, PackError> {
    let scan = Scan::new(upper, placeholders);
    let tree = scan.run(lowers)?;
    let root = open_upper(upper)?;
    let mut packer = Packer::new(out, None);
    emit(&mut packer, root.as_fd(), &mut Vec::new(), &tree, upper)?;
    packer.finish()
}

// ---------------------------------------------------------------------------
// The scan.

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const REDIRECT_XATTR: &str = "trusted.overlay.redirect";
const METACOPY_XATTR: &str = "trusted.overlay.metacopy";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Child directories, never through a symlink.
const CHILD_DIR: OFlags = READ_DIR.union(OFlags::NOFOLLOW);

/// A reported entry of the upper directory, with its reported descendants.
struct Entry {
    name: Vec<u8>,
    kind: ChangeKind,
    /// The upper entry is a directory (to walk when writing).
    dir: bool,
    opaque: bool,
    /// A whiteout's modification time, for its tar entry.
    mtime: i64,
    /// Sorted by name.
    children: Vec<Entry>,
}

struct Scan<'a> {
    upper: &'a Path,
    /// Cleaned: no leading or trailing `/`.
    placeholders: Vec<&'a [u8]>,
}

/// An overlayfs whiteout: a character device with device number 0:0.
fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

fn is_opaque(dir: BorrowedFd<'_>) -> Result<bool, Errno> {
    let mut value = [0u8; 4];
    match rustix::fs::fgetxattr(dir, OPAQUE_XATTR, &mut value[..]) {
        Ok(n) => Ok(&value[..n] == b"y"),
        Err(Errno::NODATA | Errno::NOTSUP | Errno::RANGE) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Errors of a lookup in a lower layer that mean "not there".
fn absent(e: Errno) -> bool {
    matches!(
        e,
        Errno::NOENT | Errno::NOTDIR | Errno::ACCESS | Errno::LOOP | Errno::NAMETOOLONG
    )
}

fn open_upper(upper: &Path) -> Result<OwnedFd, PackError> {
    rustix::fs::open(upper, READ_DIR, Mode::empty()).map_err(io_err("open", upper))
}

/// What the lowers hold at one name of a directory.
struct Lower {
    /// The top-most entry, if any (a whiteout counts as none).
    stat: Option<Stat>,
    /// When it is a directory: it and the directories it is merged with below, top-most
    /// first (only when asked for).
    dirs: Vec<OwnedFd>,
}

/// Looks `name` up in the lower directories `dirs` (the stack of one directory, top-most
/// first), as overlayfs merges them.
fn lookup(dirs: &[OwnedFd], name: &[u8], want_dirs: bool) -> Result<Lower, Errno> {
    let mut found = Lower {
        stat: None,
        dirs: Vec::new(),
    };
    for dir in dirs {
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) if absent(e) => continue,
            Err(e) => return Err(e),
        };
        if is_whiteout(&st) {
            break;
        }
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if found.stat.is_none() {
            found.stat = Some(st);
        }
        // A non-directory hides everything below it; so does a whiteout.
        if !is_dir || !want_dirs {
            break;
        }
        let child = match rustix::fs::openat(dir, name, CHILD_DIR, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if absent(e) => continue,
            Err(e) => return Err(e),
        };
        let opaque = is_opaque(child.as_fd())?;
        found.dirs.push(child);
        if opaque {
            break;
        }
    }
    Ok(found)
}

impl<'a> Scan<'a> {
    fn new(upper: &'a Path, placeholders: &[&'a str]) -> Self {
        let placeholders = placeholders
            .iter()
            .map(|p| p.trim_matches('/').as_bytes())
            .filter(|p| !p.is_empty())
            .collect();
        Scan {
            upper,
            placeholders,
        }
    }

    fn run(&self, lowers: &[PathBuf]) -> Result<Vec<Entry>, PackError> {
        let root = open_upper(self.upper)?;
        // The lowers' roots, down to the first opaque one.
        let mut dirs = Vec::new();
        for lower in lowers {
            let fd = rustix::fs::open(lower, READ_DIR, Mode::empty())
                .map_err(io_err("open lower directory", lower))?;
            let opaque = is_opaque(fd.as_fd()).map_err(io_err("read attributes of", lower))?;
            dirs.push(fd);
            if opaque {
                break;
            }
        }
        let mut rel = Vec::new();
        self.scan_dir(root.as_fd(), &mut rel, &dirs)
    }

    fn path(&self, rel: &[u8]) -> PathBuf {
        join_display(self.upper, rel)
    }

    /// The reported entries of upper directory `dir` (at `rel`), whose lower stack is
    /// `lowers`.
    fn scan_dir(
        &self,
        dir: BorrowedFd<'_>,
        rel: &mut Vec<u8>,
        lowers: &[OwnedFd],
    ) -> Result<Vec<Entry>, PackError> {
        let names = sorted_names(dir).map_err(|e| io_err("read directory", &self.path(rel))(e))?;
        let mut out = Vec::new();
        let rel_len = rel.len();
        for name in names {
            rel.truncate(rel_len);
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&name);
            if let Some(entry) = self.scan_entry(dir, name, rel, lowers)? {
                out.push(entry);
            }
        }
        rel.truncate(rel_len);
        Ok(out)
    }

    fn scan_entry(
        &self,
        dir: BorrowedFd<'_>,
        name: Vec<u8>,
        rel: &mut Vec<u8>,
        lowers: &[OwnedFd],
    ) -> Result<Option<Entry>, PackError> {
        let path = || self.path(rel);
        let st = match rustix::fs::statat(dir, &name[..], AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Removed since the directory was read.
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(io_err("stat", &path())(e)),
        };
        let mut entry = Entry {
            name,
            kind: ChangeKind::Deleted,
            dir: false,
            opaque: false,
            mtime: st.st_mtime,
            children: Vec::new(),
        };
        if is_whiteout(&st) {
            return Ok(Some(entry));
        }
        let placeholder = self.placeholders.contains(&&rel[..]);
        let file_type = FileType::from_raw_mode(st.st_mode);
        if file_type != FileType::Directory {
            if placeholder && file_type == FileType::RegularFile && st.st_size == 0 {
                return Ok(None);
            }
            if file_type == FileType::RegularFile && has_xattr(dir, &entry.name, METACOPY_XATTR) {
                return Err(PackError::Unsupported {
                    path: path(),
                    reason: "its data is in a lower layer (overlayfs metacopy); \
                             mount the container's overlay with metacopy=off",
                });
            }
            let lower = lookup(lowers, &entry.name, false)
                .map_err(|e| io_err("look up in the lower layers", &path())(e))?;
            entry.kind = match lower.stat {
                Some(_) => ChangeKind::Modified,
                None => ChangeKind::Added,
            };
            return Ok(Some(entry));
        }

        let fd = match rustix::fs::openat(dir, &entry.name[..], CHILD_DIR, Mode::empty()) {
            Ok(fd) => fd,
            // Removed, or replaced by a non-directory, since the stat: as if not seen.
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(None),
            Err(e) => return Err(io_err("open directory", &path())(e)),
        };
        let mut redirect = [0u8; 1];
        match rustix::fs::fgetxattr(&fd, REDIRECT_XATTR, &mut redirect[..]) {
            Err(Errno::NODATA | Errno::NOTSUP) => {}
            Err(e) if e != Errno::RANGE => {
                return Err(io_err("read attributes of", &path())(e));
            }
            // Present (ERANGE: longer than the buffer).
            _ => {
                return Err(PackError::Unsupported {
                    path: path(),
                    reason: "it is a renamed directory whose content stayed in a lower \
                             layer (overlayfs redirect_dir); mount the container's overlay \
                             with redirect_dir=off",
                });
            }
        }
        entry.dir = true;
        entry.opaque =
            is_opaque(fd.as_fd()).map_err(|e| io_err("read attributes of", &path())(e))?;
        let lower = lookup(lowers, &entry.name, !entry.opaque)
            .map_err(|e| io_err("look up in the lower layers", &path())(e))?;
        entry.children = self.scan_dir(fd.as_fd(), rel, &lower.dirs)?;
        if placeholder
            && entry.children.is_empty()
            && sorted_names(fd.as_fd()).is_ok_and(|n| n.is_empty())
        {
            return Ok(None);
        }
        entry.kind = match &lower.stat {
            None => ChangeKind::Added,
            Some(_) if entry.opaque || !entry.children.is_empty() => ChangeKind::Modified,
            // Copied up only for a child that is not reported.
            Some(l)
                if l.st_mode == st.st_mode && l.st_uid == st.st_uid && l.st_gid == st.st_gid =>
            {
                return Ok(None);
            }
            Some(_) => ChangeKind::Modified,
        };
        Ok(Some(entry))
    }
}

/// Whether `name` in `dir` (not followed if a symlink) has extended attribute `key`.
fn has_xattr(dir: BorrowedFd<'_>, name: &[u8], key: &str) -> bool {
    // lgetxattr has no *at form; /proc/self/fd/N/name is resolved from the directory fd
    // and the last component is not followed.
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    let mut buf = [0u8; 1];
    // ERANGE: present, with a longer value.
    matches!(
        rustix::fs::lgetxattr(&path[..], key, &mut buf[..]),
        Ok(_) | Err(Errno::RANGE)
    )
}

fn flatten(entries: &[Entry], prefix: &mut Vec<u8>, out: &mut Vec<Change>) {
    let len = prefix.len();
    for e in entries {
        prefix.truncate(len);
        prefix.extend_from_slice(&e.name);
        out.push(Change {
            path: String::from_utf8_lossy(prefix).into_owned(),
            kind: e.kind,
        });
        if !e.children.is_empty() {
            prefix.push(b'/');
            flatten(&e.children, prefix, out);
        }
    }
    prefix.truncate(len);
}

// ---------------------------------------------------------------------------
// The layer tar.

/// Writes `entries` of upper directory `dir`, whose tar prefix (empty, or ending in `/`) is
/// `prefix`.
fn emit<W: Write>(
    packer: &mut Packer<W>,
    dir: BorrowedFd<'_>,
    prefix: &mut Vec<u8>,
    entries: &[Entry],
    upper: &Path,
) -> Result<(), PackError> {
    let len = prefix.len();
    for e in entries {
        prefix.truncate(len);
        if e.kind == ChangeKind::Deleted {
            prefix.extend_from_slice(WHITEOUT_PREFIX);
            prefix.extend_from_slice(&e.name);
            let mtime = u64::try_from(e.mtime).unwrap_or(0);
            packer.raw_header(
                prefix,
                tar::EntryType::Regular,
                0o600,
                (0, 0),
                mtime,
                0,
                b"",
                0,
                &[],
            )?;
            continue;
        }
        prefix.extend_from_slice(&e.name);
        let path = join_display(upper, prefix);
        let written = packer.write_node(Node::Child(dir, &e.name), prefix, &path)?;
        // What was a directory in the scan and still is; anything else changed meanwhile
        // and is written as it is now.
        if let Written::Dir(child) = written
            && e.dir
        {
            let st = rustix::fs::fstat(&child).map_err(io_err("stat", &path))?;
            prefix.push(b'/');
            if e.opaque {
                let dir_len = prefix.len();
                prefix.extend_from_slice(OPAQUE_MARKER);
                packer.raw_header(
                    prefix,
                    tar::EntryType::Regular,
                    0o600,
                    (st.st_uid, st.st_gid),
                    u64::try_from(st.st_mtime).unwrap_or(0),
                    0,
                    b"",
                    0,
                    &[],
                )?;
                prefix.truncate(dir_len);
            }
            emit(packer, child.as_fd(), prefix, &e.children, upper)?;
        }
    }
    prefix.truncate(len);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::snapshot;
    use crate::unpack::unpack_layer;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn whiteout(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .unwrap();
    }

    fn set_opaque(path: &Path) {
        rustix::fs::setxattr(path, OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty()).unwrap();
    }

    fn changes(upper: &Path, lowers: &[PathBuf], placeholders: &[&str]) -> Vec<(String, char)> {
        overlay_changes(upper, lowers, placeholders)
            .unwrap()
            .into_iter()
            .map(|c| {
                let k = match c.kind {
                    ChangeKind::Modified => 'C',
                    ChangeKind::Added => 'A',
                    ChangeKind::Deleted => 'D',
                };
                (c.path, k)
            })
            .collect()
    }

    fn expect(list: &[(&str, char)]) -> Vec<(String, char)> {
        list.iter().map(|&(p, k)| (p.to_string(), k)).collect()
    }

    #[test]
    fn changes_of_a_hand_made_upper() {
        let tmp = tempfile::tempdir().unwrap();
        let (top, bottom, upper) = (
            tmp.path().join("top"),
            tmp.path().join("bottom"),
            tmp.path().join("upper"),
        );
        // bottom: etc/{passwd,group}, var/log/old, opt/app/{a,b}, gone/x, data (file),
        // link -> /etc.
        fs::create_dir_all(bottom.join("etc")).unwrap();
        fs::write(bottom.join("etc/passwd"), b"root").unwrap();
        fs::write(bottom.join("etc/group"), b"root").unwrap();
        fs::create_dir_all(bottom.join("var/log")).unwrap();
        fs::write(bottom.join("var/log/old"), b"old").unwrap();
        fs::create_dir_all(bottom.join("opt/app")).unwrap();
        fs::write(bottom.join("opt/app/a"), b"a").unwrap();
        fs::write(bottom.join("opt/app/b"), b"b").unwrap();
        fs::create_dir_all(bottom.join("gone")).unwrap();
        fs::write(bottom.join("gone/x"), b"x").unwrap();
        fs::write(bottom.join("data"), b"file").unwrap();
        symlink("/etc", bottom.join("link")).unwrap();
        // top: deletes etc/group (whiteout), makes var opaque (hiding var/log/old).
        fs::create_dir_all(top.join("etc")).unwrap();
        whiteout(&top.join("etc/group"));
        fs::create_dir_all(top.join("var")).unwrap();
        set_opaque(&top.join("var"));
        // upper:
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/hostname"), b"").unwrap(); // placeholder: skipped
        fs::write(upper.join("etc/group"), b"new").unwrap(); // whited out below: Added
        fs::create_dir_all(upper.join("var/log")).unwrap();
        fs::write(upper.join("var/log/old"), b"again").unwrap(); // hidden below: Added
        fs::create_dir_all(upper.join("opt/app")).unwrap();
        fs::write(upper.join("opt/app/a"), b"A").unwrap(); // Modified
        whiteout(&upper.join("opt/app/b")); // Deleted
        fs::create_dir_all(upper.join("gone")).unwrap(); // rm -rf gone; mkdir gone
        set_opaque(&upper.join("gone"));
        fs::create_dir_all(upper.join("new/sub")).unwrap(); // Added, with descendants
        fs::write(upper.join("new/sub/f"), b"f").unwrap();
        fs::create_dir_all(upper.join("data")).unwrap(); // a file replaced by a directory
        fs::write(upper.join("data/inside"), b"i").unwrap();
        // Through the lower symlink "link -> /etc": an upper directory "link" replaces
        // it; its children are looked up in no lower, so "passwd" is Added, whatever the
        // host's /etc has.
        fs::create_dir_all(upper.join("link")).unwrap();
        fs::write(upper.join("link/passwd"), b"p").unwrap();
        fs::create_dir_all(upper.join("run")).unwrap(); // placeholder dir, but Added parent
        fs::create_dir_all(upper.join("run/secrets")).unwrap();

        let lowers = [top.clone(), bottom.clone()];
        let got = changes(&upper, &lowers, &["etc/hostname", "/run/secrets/"]);
        assert_eq!(
            got,
            expect(&[
                ("/data", 'C'),
                ("/data/inside", 'A'),
                ("/etc", 'C'),
                ("/etc/group", 'A'),
                ("/gone", 'C'),
                ("/link", 'C'),
                ("/link/passwd", 'A'),
                ("/new", 'A'),
                ("/new/sub", 'A'),
                ("/new/sub/f", 'A'),
                ("/opt", 'C'),
                ("/opt/app", 'C'),
                ("/opt/app/a", 'C'),
                ("/opt/app/b", 'D'),
                ("/run", 'A'),
                ("/var", 'C'),
                ("/var/log", 'A'),
                ("/var/log/old", 'A'),
            ])
        );

        // A directory copied up only for a placeholder is not reported...
        let upper2 = tmp.path().join("upper2");
        fs::create_dir_all(upper2.join("etc")).unwrap();
        fs::write(upper2.join("etc/hostname"), b"").unwrap();
        assert_eq!(changes(&upper2, &lowers, &["etc/hostname"]), expect(&[]));
        // ...unless its own mode changed (chmod on the merged view copies it up) ...
        fs::set_permissions(upper2.join("etc"), fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            changes(&upper2, &lowers, &["etc/hostname"]),
            expect(&[("/etc", 'C')])
        );
        // ...and a placeholder with content is a change like any other.
        fs::write(upper2.join("etc/hostname"), b"edited").unwrap();
        assert_eq!(
            changes(&upper2, &lowers, &["etc/hostname"]),
            expect(&[("/etc", 'C'), ("/etc/hostname", 'A')])
        );
        // No lowers: everything is Added.
        assert_eq!(
            changes(&upper2, &[], &[]),
            expect(&[("/etc", 'A'), ("/etc/hostname", 'A')])
        );
    }

    #[test]
    fn refuses_redirects_and_metacopy() {
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path().join("upper");
        fs::create_dir_all(upper.join("moved")).unwrap();
        rustix::fs::setxattr(
            upper.join("moved"),
            REDIRECT_XATTR,
            b"/orig",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let err = overlay_changes(&upper, &[], &[]).unwrap_err();
        assert!(err.to_string().contains("redirect_dir=off"), "{err}");
        fs::remove_dir(upper.join("moved")).unwrap();
        fs::write(upper.join("meta"), b"").unwrap();
        rustix::fs::setxattr(
            upper.join("meta"),
            METACOPY_XATTR,
            b"",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let err = overlay_changes(&upper, &[], &[]).unwrap_err();
        assert!(err.to_string().contains("metacopy=off"), "{err}");
    }

    /// An overlay mount, lazily detached when dropped.
    struct Mount(PathBuf);

    impl Mount {
        fn overlay(lowers: &[&Path], upper: Option<(&Path, &Path)>, target: &Path) -> Mount {
            let lowers: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
            let mut data = format!("lowerdir={}", lowers.join(":"));
            if let Some((upper, work)) = upper {
                data += &format!(",upperdir={},workdir={}", upper.display(), work.display());
            }
            // Fixed, whatever the kernel's defaults: berth's diff refuses these.
            data += ",redirect_dir=off,metacopy=off";
            fs::create_dir_all(target).unwrap();
            rustix::mount::mount(
                "overlay",
                target,
                "overlay",
                rustix::mount::MountFlags::empty(),
                std::ffi::CString::new(data.clone()).unwrap().as_c_str(),
            )
            .unwrap_or_else(|e| panic!("mount overlay ({data}): {e}"));
            Mount(target.to_path_buf())
        }
    }

    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }

    /// A layer tar, built entry by entry.
    fn layer_tar(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn add(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    }

    #[test]
    fn a_real_overlay_round_trips_through_a_layer() {
        use tar::EntryType as E;
        let tmp = tempfile::tempdir().unwrap();
        let d = |name: &str| tmp.path().join(name);
        for dir in ["l1", "l2", "upper", "work", "merged", "new", "check"] {
            fs::create_dir(d(dir)).unwrap();
        }
        // Two image layers, made as berth makes them.
        let bottom = layer_tar(|b| {
            add(b, E::Directory, "etc/", b"");
            add(b, E::Regular, "etc/passwd", b"root:x:0:0");
            add(b, E::Regular, "etc/group", b"root:x:0");
            add(b, E::Directory, "usr/", b"");
            add(b, E::Directory, "usr/share/", b"");
            add(b, E::Regular, "usr/share/doc", b"doc");
            add(b, E::Directory, "var/", b"");
            add(b, E::Directory, "var/cache/", b"");
            add(b, E::Regular, "var/cache/a", b"a");
            add(b, E::Regular, "var/cache/b", b"b");
            add(b, E::Directory, "srv/", b"");
            add(b, E::Regular, "srv/keep", b"keep");
            add(b, E::Regular, "srv/drop", b"drop");
            add(b, E::Regular, "bin", b"was a file");
        });
        let top = layer_tar(|b| {
            add(b, E::Directory, "etc/", b"");
            add(b, E::Regular, "etc/.wh.group", b"");
            add(b, E::Regular, "etc/motd", b"hello");
            add(b, E::Directory, "usr/", b"");
            add(b, E::Regular, "usr/.wh..wh..opq", b"");
            add(b, E::Directory, "usr/lib/", b"");
            add(b, E::Regular, "usr/lib/libc", b"libc");
        });
        unpack_layer(&bottom[..], &d("l2")).unwrap();
        unpack_layer(&top[..], &d("l1")).unwrap();
        let lowers = [d("l1"), d("l2")];

        let before;
        let after;
        {
            let _m = Mount::overlay(
                &[&d("l1"), &d("l2")],
                Some((&d("upper"), &d("work"))),
                &d("merged"),
            );
            let m = |p: &str| d("merged").join(p);
            before = snapshot(&d("merged"));
            // The runtime's mount targets.
            fs::write(m("etc/hostname"), b"").unwrap();
            fs::write(m("etc/resolv.conf"), b"").unwrap();
            // Changes.
            fs::write(m("etc/passwd"), b"root:x:0:0\nu:x:1:1").unwrap();
            fs::remove_file(m("etc/motd")).unwrap();
            fs::write(m("etc/group"), b"back").unwrap();
            fs::remove_dir_all(m("var/cache")).unwrap();
            fs::create_dir(m("var/cache")).unwrap();
            fs::write(m("var/cache/c"), b"c").unwrap();
            fs::remove_file(m("srv/drop")).unwrap();
            fs::create_dir_all(m("home/user/.config")).unwrap();
            fs::write(m("home/user/.config/x"), b"x".repeat(5000)).unwrap();
            fs::hard_link(m("home/user/.config/x"), m("home/user/x-link")).unwrap();
            symlink("/etc/passwd", m("home/user/passwd")).unwrap();
            rustix::fs::mknodat(
                rustix::fs::CWD,
                m("home/user/fifo"),
                FileType::Fifo,
                Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap();
            fs::remove_file(m("bin")).unwrap();
            fs::create_dir(m("bin")).unwrap();
            fs::write(m("bin/sh"), b"#!").unwrap();
            fs::set_permissions(m("bin/sh"), fs::Permissions::from_mode(0o4755)).unwrap();
            // VFS_CAP_REVISION_2, cap_net_bind_service permitted.
            let mut cap = Vec::new();
            cap.extend_from_slice(&0x0200_0000u32.to_le_bytes());
            cap.extend_from_slice(&(1u32 << 10).to_le_bytes());
            cap.extend_from_slice(&[0; 12]);
            fs::write(m("bin/ping"), b"ping").unwrap();
            rustix::fs::setxattr(
                m("bin/ping"),
                "security.capability",
                &cap,
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
            fs::set_permissions(m("usr/lib"), fs::Permissions::from_mode(0o700)).unwrap();
            let long = format!("{}/{}", "n".repeat(120), "m".repeat(120));
            fs::create_dir_all(m(&long).parent().unwrap()).unwrap();
            fs::write(m(&long), b"long").unwrap();
            after = snapshot(&d("merged"));
        }
        assert_ne!(before, after);
        let placeholders = ["etc/hostname", "etc/resolv.conf", "etc/hosts"];
        let long_dir = format!("/{}", "n".repeat(120));
        let got = changes(&d("upper"), &lowers, &placeholders);
        let mut want = expect(&[
            ("/bin", 'C'),
            ("/bin/ping", 'A'),
            ("/bin/sh", 'A'),
            ("/etc", 'C'),
            ("/etc/group", 'A'),
            ("/etc/motd", 'D'),
            ("/etc/passwd", 'C'),
            ("/home", 'A'),
            ("/home/user", 'A'),
            ("/home/user/.config", 'A'),
            ("/home/user/.config/x", 'A'),
            ("/home/user/fifo", 'A'),
            ("/home/user/passwd", 'A'),
            ("/home/user/x-link", 'A'),
            ("/srv", 'C'),
            ("/srv/drop", 'D'),
            ("/usr", 'C'),
            ("/usr/lib", 'C'),
            ("/var", 'C'),
            ("/var/cache", 'C'),
            ("/var/cache/c", 'A'),
        ]);
        want.push((long_dir.clone(), 'A'));
        want.push((format!("{long_dir}/{}", "m".repeat(120)), 'A'));
        want.sort();
        assert_eq!(got, want);

        let mut tar = Vec::new();
        let stats = write_overlay_layer(&d("upper"), &lowers, &placeholders, &mut tar).unwrap();
        assert_eq!(stats.bytes, tar.len() as u64);
        let names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
            .collect();
        assert!(
            names.contains(&"var/cache/.wh..wh..opq".to_string()),
            "{names:?}"
        );
        assert!(names.contains(&"etc/.wh.motd".to_string()), "{names:?}");
        assert!(
            !names
                .iter()
                .any(|n| n.contains("hostname") || n.contains("resolv"))
        );
        let cache = names.iter().position(|n| n == "var/cache/").unwrap();
        assert_eq!(names[cache + 1], "var/cache/.wh..wh..opq");
        assert!(names.iter().all(|n| !n.starts_with('/')));

        // The layer, unpacked as berth unpacks layers and stacked on the image, shows what
        // the container saw, less the runtime's mount targets.
        unpack_layer(&tar[..], &d("new")).unwrap();
        let _m = Mount::overlay(&[&d("new"), &d("l1"), &d("l2")], None, &d("check"));
        let mut want = after;
        want.retain(|s| s.0 != "etc/hostname" && s.0 != "etc/resolv.conf");
        assert_eq!(snapshot(&d("check")), want);
    }
}
