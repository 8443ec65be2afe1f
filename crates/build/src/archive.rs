//! `ADD`'s local archives: recognising one by its content, as BuildKit does (a regular file
//! that, once decompressed by its magic bytes, gzip, bzip2, xz or zstd, starts with a valid
//! tar header; the name does not matter), and reading its members into a tree relative to
//! the destination, from which the step's layer is written.
//!
//! The members are placed as BuildKit's extractor places them in the destination: names
//! lose a leading `/` and are cleaned; one whose `..` climbs out is refused; parents that
//! are symlinks of the archive are followed inside the destination (an absolute target
//! from the destination, a relative one that climbs out refused); a later member replaces
//! an earlier one (two directories merge); hard links point at their member's new path;
//! devices and FIFOs are skipped. So every member lands under the destination. Regular
//! files' bytes are copied into a spool file, which the layer is written from.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::ops::Deref;
use std::os::unix::fs::FileExt;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b, 0x08];
const BZIP2_MAGIC: &[u8] = b"BZh";
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Symlinks followed while placing one member, at most (BuildKit's limit).
const MAX_LINKS: usize = 255;

/// Why an archive cannot be unpacked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArchiveError {
    /// Reading or decompressing the archive, or writing the spool, failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A member's name, hard link target or parent symlink leads out of the destination.
    #[error("archive path {0:?} is outside the destination")]
    Outside(String),
    /// A member's parent is a file of the archive.
    #[error("archive path {0:?}: a parent is not a directory")]
    NotADirectory(String),
    /// Too many symlinks to follow for a member's parents.
    #[error("archive path {0:?}: too many symlinks")]
    Loop(String),
    /// A hard link names nothing of the archive, or a directory.
    #[error("archive hard link {name:?} to {target:?}: {reason}")]
    BadLink {
        /// The link.
        name: String,
        /// What it links to.
        target: String,
        /// Why it cannot be made.
        reason: &'static str,
    },
    /// An entry type BuildKit does not extract either.
    #[error("archive member {name:?} has an unsupported type {kind:?}")]
    Unsupported {
        /// The member.
        name: String,
        /// Its tar type flag.
        kind: char,
    },
}

/// The compression of an archive, told by its first bytes (Docker's `DetectCompression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    pub(crate) fn detect(head: &[u8]) -> Compression {
        let zstd_skippable = head
            .get(..4)
            .is_some_and(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]) & !0xf == 0x184d_2a50);
        if head.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(BZIP2_MAGIC) {
            Compression::Bzip2
        } else if head.starts_with(XZ_MAGIC) {
            Compression::Xz
        } else if head.starts_with(ZSTD_MAGIC) || zstd_skippable {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Reads a file from an offset up to an end without moving its position (so several
/// readers may share it).
pub(crate) struct ReadAt<F> {
    file: F,
    pos: u64,
    end: u64,
}

impl<F: Deref<Target = File>> ReadAt<F> {
    pub(crate) fn new(file: F, pos: u64, len: u64) -> ReadAt<F> {
        ReadAt {
            file,
            pos,
            end: pos + len,
        }
    }
}

impl<F: Deref<Target = File>> Read for ReadAt<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Whether `head` (a stream's first bytes) starts a compressed stream this reads.
pub fn is_compressed(head: &[u8]) -> bool {
    Compression::detect(head) != Compression::None
}

/// The decompressed bytes of `raw`, by its magic bytes (gzip, bzip2, xz, zstd); plain when
/// none match. Concatenated streams are read through, as Go's readers and the `xz` tool do.
/// For `ADD`'s archives and `build -`'s context.
pub fn decompressed<'a>(raw: impl Read + Send + 'a) -> io::Result<Box<dyn Read + Send + 'a>> {
    let mut raw = BufReader::new(raw);
    Ok(match Compression::detect(raw.fill_buf()?) {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(raw)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(raw)),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(raw)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(raw)?),
    })
}

/// Whether `file` (a regular file) is a tar archive, plain or compressed: its first header
/// reads. Anything else, an empty tar included, is copied as it is.
pub(crate) fn is_archive(file: &File) -> bool {
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return false;
    };
    let Ok(reader) = decompressed(ReadAt::new(file, 0, len)) else {
        return false;
    };
    let mut archive = tar::Archive::new(reader);
    archive
        .entries()
        .ok()
        .and_then(|mut entries| entries.next())
        .is_some_and(|first| first.is_ok())
}

/// What one member of an archive becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MemberKind {
    Dir,
    /// A regular file: its bytes at `offset` in the spool.
    File {
        offset: u64,
        len: u64,
    },
    Symlink(Vec<u8>),
    /// A hard link to the regular file at `target` (a key of the tree), whose bytes it
    /// shares: written as a copy if `target` is replaced later.
    HardLink {
        target: String,
        offset: u64,
        len: u64,
    },
}

/// One member, placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) mtime: u64,
    pub(crate) kind: MemberKind,
    /// A parent directory the archive implies but does not hold: it does not replace one
    /// that is there already.
    pub(crate) implied: bool,
}

/// An archive's members by path relative to the destination (cleaned, no leading `/`).
pub(crate) type Tree = BTreeMap<String, Member>;

/// Reads the archive `file` into a tree, regular files' bytes appended to `spool`. `owner`
/// (`--chown`) replaces every member's owner; implied parents are `0:0`, mode 0755 and
/// `now`, as BuildKit makes them.
pub(crate) fn unpack(
    file: &File,
    mut spool: &File,
    owner: Option<(u64, u64)>,
    now: u64,
) -> Result<Tree, ArchiveError> {
    let len = file.metadata()?.len();
    let mut archive = tar::Archive::new(decompressed(ReadAt::new(file, 0, len))?);
    let mut spool_end = spool.seek(SeekFrom::End(0))?;
    let mut tree = Tree::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(name) = clean(&raw_name)? else {
            continue;
        };
        use tar::EntryType as T;
        match kind {
            T::Char | T::Block | T::Fifo => continue,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            T::Regular | T::Continuous | T::GNUSparse | T::Directory | T::Symlink | T::Link => {}
            other => {
                return Err(ArchiveError::Unsupported {
                    name: raw_name,
                    kind: other.as_byte() as char,
                });
            }
        }
        let placed = resolve(&tree, &name)?;
        // A whiteout name would delete files of the image once in a layer; it cannot be a
        // file there.
        if placed
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with(".wh."))
        {
            continue;
        }
        let (uid, gid, mtime) = ids_and_mtime(&mut entry)?;
        let (uid, gid) = owner.unwrap_or((uid, gid));
        let mode = entry.header().mode()? & 0o7777;
        let member_kind = match kind {
            T::Directory => MemberKind::Dir,
            T::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                MemberKind::Symlink(target)
            }
            T::Link => {
                let raw_target =
                    String::from_utf8_lossy(&entry.link_name_bytes().unwrap_or_default())
                        .into_owned();
                link_to(&tree, &raw_name, &raw_target)?
            }
            _ => {
                let len = io::copy(&mut entry, &mut spool)?;
                let offset = spool_end;
                spool_end += len;
                MemberKind::File { offset, len }
            }
        };
        let member = Member {
            mode,
            uid,
            gid,
            mtime,
            kind: member_kind,
            implied: false,
        };
        imply_parents(&mut tree, &placed, now);
        place(&mut tree, placed, member);
    }
    Ok(tree)
}

/// A member name made relative and cleaned (`None` for the destination itself); one that
/// climbs out with `..` is refused.
pub(crate) fn clean(name: &str) -> Result<Option<String>, ArchiveError> {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ArchiveError::Outside(name.to_string()));
                }
            }
            p => parts.push(p),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// Where member `name` (cleaned) lands: its parents resolved through the tree, symlinks
/// followed within the destination; the last component is kept as it is, so that a member
/// replaces a symlink rather than writing through it.
fn resolve(tree: &Tree, name: &str) -> Result<String, ArchiveError> {
    let outside = || ArchiveError::Outside(name.to_string());
    let mut pending: Vec<String> = name.split('/').rev().map(str::to_string).collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop().ok_or_else(outside)?;
                continue;
            }
            _ => {}
        }
        resolved.push(part);
        if pending.is_empty() {
            break;
        }
        let candidate = resolved.join("/");
        match tree.get(&candidate).map(|m| &m.kind) {
            None | Some(MemberKind::Dir) => {}
            Some(MemberKind::File { .. } | MemberKind::HardLink { .. }) => {
                return Err(ArchiveError::NotADirectory(name.to_string()));
            }
            Some(MemberKind::Symlink(target)) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(ArchiveError::Loop(name.to_string()));
                }
                resolved.pop();
                let target = String::from_utf8_lossy(target);
                // An absolute target starts again from the destination, as if it were `/`.
                if target.starts_with('/') {
                    resolved.clear();
                }
                pending.extend(target.split('/').rev().map(str::to_string));
            }
        }
    }
    if resolved.is_empty() {
        return Err(outside());
    }
    Ok(resolved.join("/"))
}

/// A hard link's kind: the bytes of the regular file it names (placed as member names
/// are), or a copy of the symlink it names.
fn link_to(tree: &Tree, name: &str, raw_target: &str) -> Result<MemberKind, ArchiveError> {
    let bad = |reason| ArchiveError::BadLink {
        name: name.to_string(),
        target: raw_target.to_string(),
        reason,
    };
    let target = clean(raw_target)?.ok_or_else(|| bad("it is the destination"))?;
    let target = resolve(tree, &target)?;
    match tree.get(&target).map(|m| &m.kind) {
        Some(MemberKind::File { offset, len }) => Ok(MemberKind::HardLink {
            target,
            offset: *offset,
            len: *len,
        }),
        Some(MemberKind::HardLink { .. }) => Ok(tree[&target].kind.clone()),
        Some(MemberKind::Symlink(t)) => Ok(MemberKind::Symlink(t.clone())),
        Some(MemberKind::Dir) => Err(bad("it is a directory")),
        None => Err(bad("no such member before it")),
    }
}

/// Adds the directories above `path` that the tree does not have yet.
fn imply_parents(tree: &mut Tree, path: &str, now: u64) {
    let mut end = 0;
    while let Some(slash) = path[end..].find('/') {
        end += slash;
        tree.entry(path[..end].to_string()).or_insert(Member {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: now,
            kind: MemberKind::Dir,
            implied: true,
        });
        end += 1;
    }
}

/// Puts `member` at `path`: a directory over a directory takes its metadata and keeps what
/// is in it; anything else replaces what was there, and what was beneath it.
fn place(tree: &mut Tree, path: String, member: Member) {
    if member.kind != MemberKind::Dir || tree.get(&path).is_some_and(|m| m.kind != MemberKind::Dir)
    {
        let prefix = format!("{path}/");
        let beneath: Vec<String> = tree
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in beneath {
            tree.remove(&k);
        }
    }
    tree.insert(path, member);
}

/// A member's owner and mtime, PAX records over the header's fields (as Go's reader merges
/// them); a negative or fractional mtime is cut to whole seconds from 0.
fn ids_and_mtime<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<(u64, u64, u64)> {
    let header = entry.header();
    let (mut uid, mut gid) = (header.uid()?, header.gid()?);
    let mut mtime = header.mtime().unwrap_or(0);
    if let Some(extensions) = entry.pax_extensions()? {
        for ext in extensions.flatten() {
            let (Ok(key), Ok(value)) = (ext.key(), ext.value()) else {
                continue;
            };
            match key {
                "uid" => uid = value.parse().unwrap_or(uid),
                "gid" => gid = value.parse().unwrap_or(gid),
                "mtime" => {
                    let seconds = value.split('.').next().unwrap_or_default();
                    mtime = seconds.parse::<i64>().map_or(mtime, |s| s.max(0) as u64);
                }
                _ => {}
            }
        }
    }
    Ok((uid, gid, mtime))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A tar of `(name, type, body-or-link-target)`, built header by header so that hostile
    /// names are kept as they are.
    fn tar_of(members: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, data) in members {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory {
                0o750
            } else {
                0o640
            });
            h.set_uid(7);
            h.set_gid(8);
            h.set_mtime(1_000_000);
            let body: &[u8] = match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_link_name(data).unwrap();
                    b""
                }
                _ => data.as_bytes(),
            };
            h.set_size(body.len() as u64);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(body);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn unpack_bytes(bytes: &[u8]) -> Result<(Tree, File), ArchiveError> {
        let spool = tempfile::tempfile().unwrap();
        let tree = unpack(&file_with(bytes), &spool, None, 42)?;
        Ok((tree, spool))
    }

    fn text(spool: &File, member: &Member) -> String {
        let MemberKind::File { offset, len } = member.kind else {
            panic!("not a file: {member:?}");
        };
        io::read_to_string(ReadAt::new(spool, offset, len)).unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn archives_are_told_by_content_not_name() {
        use tar::EntryType as T;
        let plain = tar_of(&[("a.txt", T::Regular, "a\n")]);
        let bz = {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        };
        let xz = {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::encode_all(&plain[..], 1).unwrap();
        for (what, bytes, compression) in [
            ("plain", plain.clone(), Compression::None),
            ("gzip", gzip(&plain), Compression::Gzip),
            ("bzip2", bz, Compression::Bzip2),
            ("xz", xz, Compression::Xz),
            ("zstd", zst, Compression::Zstd),
        ] {
            assert_eq!(Compression::detect(&bytes), compression, "{what}");
            assert!(is_archive(&file_with(&bytes)), "{what}");
            let (tree, spool) = unpack_bytes(&bytes).unwrap();
            assert_eq!(text(&spool, &tree["a.txt"]), "a\n", "{what}");
        }
        // Not archives: text, gzip of text, an empty tar, nothing.
        assert!(!is_archive(&file_with(
            b"just some text, long enough to look at\n"
        )));
        assert!(!is_archive(&file_with(&gzip(b"compressed text\n"))));
        assert!(!is_archive(&file_with(&[0; 1024])));
        assert!(!is_archive(&file_with(b"")));
        // A skippable zstd frame first is still zstd.
        assert_eq!(
            Compression::detect(&[0x5e, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]),
            Compression::Zstd
        );
    }

    #[test]
    fn names_are_made_relative_and_cleaned() {
        assert_eq!(clean("/etc/passwd").unwrap().as_deref(), Some("etc/passwd"));
        assert_eq!(clean("./a/./b/").unwrap().as_deref(), Some("a/b"));
        assert_eq!(clean("a/../b").unwrap().as_deref(), Some("b"));
        assert_eq!(clean("./").unwrap(), None);
        assert_eq!(clean("/").unwrap(), None);
        assert!(matches!(clean("../x"), Err(ArchiveError::Outside(_))));
        assert!(matches!(clean("a/../../x"), Err(ArchiveError::Outside(_))));
    }

    #[test]
    fn members_keep_metadata_and_link_to_new_paths() {
        use tar::EntryType as T;
        let (tree, spool) = unpack_bytes(&tar_of(&[
            ("./dir/", T::Directory, ""),
            ("./dir/file", T::Regular, "content\n"),
            ("./other/hard", T::Link, "./dir/file"),
            ("./dir/sym", T::Symlink, "file"),
            ("./dev", T::Char, ""),
        ]))
        .unwrap();
        let keys: Vec<&str> = tree.keys().map(String::as_str).collect();
        assert_eq!(keys, ["dir", "dir/file", "dir/sym", "other", "other/hard"]);
        let file = &tree["dir/file"];
        assert_eq!(
            (file.mode, file.uid, file.gid, file.mtime),
            (0o640, 7, 8, 1_000_000)
        );
        assert_eq!(text(&spool, file), "content\n");
        assert_eq!(tree["dir"].mode, 0o750);
        let other = &tree["other"];
        assert!(other.implied && other.mode == 0o755 && other.uid == 0 && other.mtime == 42);
        let MemberKind::HardLink { target, .. } = &tree["other/hard"].kind else {
            panic!("{:?}", tree["other/hard"]);
        };
        assert_eq!(target, "dir/file");
        assert_eq!(tree["dir/sym"].kind, MemberKind::Symlink(b"file".to_vec()));

        // --chown replaces the owners of members, not of implied parents.
        let spool = tempfile::tempfile().unwrap();
        let archive = file_with(&tar_of(&[("a/b", T::Regular, "b")]));
        let tree = unpack(&archive, &spool, Some((1000, 1001)), 0).unwrap();
        assert_eq!((tree["a/b"].uid, tree["a/b"].gid), (1000, 1001));
        assert_eq!((tree["a"].uid, tree["a"].gid), (0, 0));
    }

    #[test]
    fn later_members_replace_earlier_ones() {
        use tar::EntryType as T;
        let (tree, spool) = unpack_bytes(&tar_of(&[
            ("d/", T::Directory, ""),
            ("d/x", T::Regular, "x"),
            ("d/", T::Directory, ""),
            ("f", T::Regular, "one"),
            ("f", T::Regular, "two"),
            ("e/y", T::Regular, "y"),
            ("e", T::Symlink, "d"),
        ]))
        .unwrap();
        assert_eq!(text(&spool, &tree["d/x"]), "x", "directories merge");
        assert_eq!(text(&spool, &tree["f"]), "two");
        assert!(!tree.contains_key("e/y"), "replaced with what was beneath");
        assert_eq!(tree["e"].kind, MemberKind::Symlink(b"d".to_vec()));
    }

    #[test]
    fn hostile_archives_stay_in_the_destination() {
        use tar::EntryType as T;
        let outside = |members: &[(&str, T, &str)]| match unpack_bytes(&tar_of(members)) {
            Err(e @ (ArchiveError::Outside(_) | ArchiveError::BadLink { .. })) => e.to_string(),
            other => panic!("{members:?}: {:?}", other.map(|(t, _)| t)),
        };
        // `..` out of the destination.
        let e = outside(&[("../evil", T::Regular, "x")]);
        assert!(e.contains("outside the destination"), "{e}");
        outside(&[("a/../../evil", T::Regular, "x")]);
        // A relative symlink that climbs out, then a file through it.
        outside(&[
            ("esc", T::Symlink, "../../../etc"),
            ("esc/passwd", T::Regular, "x"),
        ]);
        // A hard link out of it, or to nothing.
        outside(&[("h", T::Link, "../../etc/passwd")]);
        outside(&[("h", T::Link, "/etc/passwd")]);

        // Absolute names and absolute symlinks resolve inside the destination.
        let (tree, spool) = unpack_bytes(&tar_of(&[
            ("/abs/file", T::Regular, "abs"),
            ("link", T::Symlink, "/etc"),
            ("link/passwd", T::Regular, "mine"),
            ("up", T::Symlink, "sub/../.."),
            ("loop", T::Symlink, "loop"),
            (".wh.abs", T::Regular, ""),
        ]))
        .unwrap();
        assert_eq!(text(&spool, &tree["abs/file"]), "abs");
        assert_eq!(text(&spool, &tree["etc/passwd"]), "mine");
        assert_eq!(tree["link"].kind, MemberKind::Symlink(b"/etc".to_vec()));
        assert!(!tree.contains_key(".wh.abs"), "no whiteouts");
        // Every key is a clean relative path.
        for key in tree.keys() {
            assert_eq!(clean(key).unwrap().as_deref(), Some(key.as_str()));
        }
        outside(&[("up", T::Symlink, "sub/../.."), ("up/x", T::Regular, "")]);
        let looped = unpack_bytes(&tar_of(&[
            ("loop", T::Symlink, "loop"),
            ("loop/x", T::Regular, ""),
        ]));
        assert!(matches!(looped, Err(ArchiveError::Loop(_))));
        let through_file = unpack_bytes(&tar_of(&[("f", T::Regular, ""), ("f/x", T::Regular, "")]));
        assert!(matches!(through_file, Err(ArchiveError::NotADirectory(_))));
    }
}
